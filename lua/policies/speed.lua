-- speed: the endpoint expected to finish the task soonest.
--
-- For each candidate it estimates when the task would be done there: the
-- time until a slot frees up, plus how long the endpoint usually takes to
-- answer. It ignores price and quality, so pick it when every endpoint is
-- good enough for the work and the wall clock is what you pay for
-- (interactive runs, a deadline). After a failure the engine has already
-- removed the endpoints that failed this task from the candidates.
--
-- Copy it, change it, and run it with `flowrun --policy ./my-speed.lua`.

-- What we assume before an endpoint has answered once (latency_p50 is nil
-- until then), in milliseconds. Local models are usually close but slower per
-- token; adjust these to your hardware.
local PRIOR_MS = { ["local"] = 2000, cloud = 4000 }

-- How long one answer takes on `c`: the observed median, else the prior.
local function latency(c)
  return c.latency_p50 or PRIOR_MS[c.tier] or PRIOR_MS.cloud
end

-- How long the task would queue on `c` before it starts. A free slot means
-- no wait. A full endpoint frees a slot every latency / max_parallel ms on
-- average, and in_flight - max_parallel + 1 slots must free before ours.
local function queue_wait(c, lat)
  if c.free > 0 then
    return 0
  end
  local slots = math.max(c.max_parallel, 1)
  return math.max(c.in_flight - slots + 1, 1) * lat / slots
end

return {
  route = function(task, candidates, run)
    local best, best_finish
    for _, c in ipairs(candidates) do
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
    -- queue can beat an idle slow one): returning it means "wait for it".
    -- nil only when there is no candidate at all.
    return best
  end,
}
