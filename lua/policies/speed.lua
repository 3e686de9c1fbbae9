-- speed: the endpoint expected to finish the task soonest.
--
-- For each candidate it estimates when the task would be done there: the
-- time until a slot frees up for it (after the ready tasks queued ahead of
-- it for that endpoint), plus how long the endpoint usually takes to
-- answer (its median so far, or a prior for its tier before it has
-- answered once). It ignores price and quality, so pick it when every
-- endpoint is good enough for the work and the wall clock is what you pay
-- for (interactive runs, a deadline). After a failure the engine has already
-- removed the endpoints that failed this task from the candidates.
--
-- Copy it, change it, and run it with `flowrun --policy ./my-speed.lua`.

-- What we assume before an endpoint has answered once (latency_p50 is nil
-- until then), in milliseconds. Local models are usually close but slower per
-- token; adjust these to your hardware.
local PRIOR_MS = { ["local"] = 2000, cloud = 4000 }

-- math's functions, looked up once rather than on every call (the policy
-- runs for every task, so its loop is a numeric `for` rather than ipairs).
local max, ceil = math.max, math.ceil

-- How long one answer takes on `c`: the observed median, else the prior.
local function latency(c)
  return c.latency_p50 or PRIOR_MS[c.tier] or PRIOR_MS.cloud
end

-- How long the task would queue on `c` before it starts. `queued` ready
-- tasks are ahead of it waiting for this endpoint, and they take its free
-- slots first; if a slot is still free for us, no wait. Otherwise we need
-- the k-th slot to free up, k = queued - free + 1, and slots free a round
-- of max_parallel at a time, each round taking one latency: the requests in
-- flight may have just started (a run starts them all at once).
local function queue_wait(c, lat)
  local queued = c.queued or 0
  if c.free > queued then
    return 0
  end
  local slots = max(c.max_parallel, 1)
  local k = queued - max(c.free, 0) + 1
  return ceil(k / slots) * lat
end

return {
  route = function(task, candidates, run)
    local best, best_finish
    for i = 1, #candidates do
      local c = candidates[i]
      local lat = latency(c)
      local finish = queue_wait(c, lat) + lat
      -- On a tie, prefer a free endpoint, then the cheaper one.
      local better = best == nil or finish < best_finish
        or (finish == best_finish and c.free > 0 and best.free == 0)
        or (finish == best_finish and (c.free > 0) == (best.free > 0)
            and c.est_cost < best.est_cost)
      if better then
        best, best_finish = c, finish
      end
    end
    -- The fastest may be a full endpoint (a fast cloud model with a short
    -- queue can beat an idle slow one): returning it means "wait for it",
    -- and the tasks behind this one see it in that endpoint's `queued`.
    -- nil only when there is no candidate at all.
    return best
  end,
}
