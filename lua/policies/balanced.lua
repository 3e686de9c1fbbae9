-- balanced: the default routing policy.
--
-- Keeps routine work on local endpoints while they have free slots, sends
-- work whose complexity is beyond the local models to a stronger endpoint,
-- and overflows to the cloud only when the cheaper choice is full.
--
-- route(task, candidates, run) is called for every decision. `candidates`
-- holds only endpoints this task may use (privacy, pins and context window
-- already applied by flowrun). Return a candidate, its name, or nil to wait
-- for a slot to free up.

-- How much a shortfall of quality against the task's complexity costs.
local QUALITY_WEIGHT = 10
-- The bonus for keeping work on your own hardware.
local LOCAL_BONUS = 2
-- Dollars are scored in cents, so a cent of expected spend weighs 1.
local CENTS = 100

local function score(task, c)
  local s = 0
  local gap = task.complexity - c.quality
  if gap > 0 then
    s = s - gap * QUALITY_WEIGHT
  end
  if c.tier == "local" then
    s = s + LOCAL_BONUS
  end
  s = s - c.est_cost * CENTS
  -- Prefer the emptier endpoint, so load spreads across equals.
  s = s + 0.5 * c.free / c.max_parallel
  -- An endpoint tagged for this kind of task is a better fit.
  for _, tag in ipairs(c.tags) do
    if tag == task.type then
      s = s + 0.5
    end
  end
  return s
end

return {
  route = function(task, candidates, run)
    local best, best_score
    for _, c in ipairs(candidates) do
      if c.free > 0 then
        local s = score(task, c)
        if best_score == nil or s > best_score then
          best, best_score = c, s
        end
      end
    end
    return best -- nil when every candidate is full: wait for a slot
  end,
}
