-- bench_route's history reader: a policy of the shape the adaptive one has
-- (each candidate's p(pass) for this task's type and band, its evidence
-- and its endpoint-wide record, weighed against the cost), to measure what
-- building candidate.history and candidate.history_all costs a decision.
-- Not a policy to use: tests/bench/bench_route.c loads it.
return {
  route = function(task, candidates, run)
    local best, best_score, why = nil, -math.huge, nil
    for i = 1, #candidates do
      local c = candidates[i]
      local h, all = c.history, c.history_all
      local p = h.pass_rate or all.pass_rate or c.quality
      local s = p * 10 - c.est_cost * 100 + (h.weight > 5 and 0.5 or 0)
      if c.free > 0 and s > best_score then
        best, best_score = c, s
        why = h.attempts
      end
    end
    return best, string.format("p(pass) from %d attempts", why or 0)
  end,
}
