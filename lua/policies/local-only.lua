-- local-only: never leave your own hardware.
--
-- Routes every task to a local endpoint and waits when they are all busy,
-- even when a cloud endpoint is free. Pick it for offline work, for data
-- that must stay on the machine, or to try a workflow without spending.
--
-- A task with no local candidate waits; once nothing else runs, flowrun
-- ends it with the reason. For a guarantee that holds whatever the policy,
-- mark tasks `private = true`: the engine then never offers them a cloud
-- endpoint.
--
-- Copy it, change it, and run it with `flowrun --policy ./my-local.lua`.

-- Whether local candidate `a` suits the task better than `b`.
local function better(task, a, b)
  -- After a reply failed its quality gate, the strongest model left wins.
  if task.reason == "quality" and a.quality ~= b.quality then
    return a.quality > b.quality
  end
  -- Otherwise a model strong enough for the task beats one that is not...
  local a_fits = a.quality >= task.complexity
  local b_fits = b.quality >= task.complexity
  if a_fits ~= b_fits then
    return a_fits
  end
  -- ...then the emptier endpoint, to spread the load...
  if a.free ~= b.free then
    return a.free > b.free
  end
  -- ...then the stronger one.
  return a.quality > b.quality
end

return {
  route = function(task, candidates, run)
    local best
    -- A numeric loop rather than ipairs: the same order, and cheaper, since
    -- the policy runs for every task.
    for i = 1, #candidates do
      local c = candidates[i]
      -- Skip the cloud, and local endpoints without a free slot.
      if c.tier == "local" and c.free > 0 then
        if best == nil or better(task, c, best) then
          best = c
        end
      end
    end
    -- nil when every local endpoint is busy (the task waits and we are asked
    -- again when a slot frees), and nil too when there is no local candidate
    -- at all: this policy never picks the cloud.
    return best
  end,
}
