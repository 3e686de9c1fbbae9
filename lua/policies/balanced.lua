-- balanced: the default routing policy.
--
-- Scores every candidate on three things at once: keeping work on local
-- hardware, a model strong enough for the task, and the money it may cost;
-- the highest score wins. Routine work stays local while local endpoints
-- have room, work beyond the local models goes to a stronger endpoint, and
-- a reply that failed its quality gate is retried on a stronger model.
-- Pick it when you want all three traded off without thinking about it.
--
-- Copy it, change the weights, and run it with `--policy ./my-policy.lua`.

-- Scores are in "cents": a cent of worst-case spend (est_cost) lowers the
-- score by 1, and every weight below is what that preference is worth.
local CENTS_PER_USD <const> = 100
-- Keeping a task on your own hardware is worth 2 cents.
local LOCAL_BONUS <const> = 2
-- Each 0.05 that a model's quality falls short of the task's complexity
-- costs 2 cents: a local model 0.05 short has already lost its bonus, since
-- a weak answer costs a retry (time, and maybe a cloud call after all).
local SHORTFALL_WEIGHT <const> = 40
-- An endpoint with all its slots free earns 0.5, so load spreads evenly.
local FREE_WEIGHT <const> = 0.5
-- An endpoint tagged with the task's type ("code", "review", ...) earns 0.5.
local TAG_BONUS <const> = 0.5
-- Waiting for a full endpoint costs 3 cents: worth it for a much better
-- fit, not to save a cloud call on routine work.
local WAIT_PENALTY <const> = 3
-- After a quality failure, a model no stronger than the one that failed
-- would likely fail again: 10 cents against it.
local NO_STEP_UP_PENALTY <const> = 10

-- The quality of every endpoint seen so far, by name. An endpoint that failed
-- a task is no longer among its candidates, so we remember it here.
local seen_quality = {}

-- math.max, looked up once rather than on every call (the policy runs for
-- every task, so its loops are numeric `for`s rather than ipairs, too).
local max = math.max

-- The score of candidate `c` for `task`; `floor` is set after a quality
-- failure (the quality to beat). Higher is better.
local function score(task, c, floor)
  local s = -c.est_cost * CENTS_PER_USD -- what it may cost, in cents
  if c.tier == "local" then
    s = s + LOCAL_BONUS
  end
  -- Falling short of the complexity costs; exceeding it earns nothing.
  local shortfall = task.complexity - c.quality
  if shortfall > 0 then
    s = s - shortfall * SHORTFALL_WEIGHT
  end
  if floor and c.quality <= floor then
    s = s - NO_STEP_UP_PENALTY
  end
  if c.free > 0 then -- the share of free slots, so load spreads
    s = s + FREE_WEIGHT * c.free / max(c.max_parallel, 1)
  else
    s = s - WAIT_PENALTY
  end
  local tags = c.tags or {}
  for i = 1, #tags do
    if tags[i] == task.type then
      s = s + TAG_BONUS
    end
  end
  return s
end

return {
  route = function(task, candidates, run)
    local n = #candidates
    for i = 1, n do -- remember what each endpoint is worth
      local c = candidates[i]
      seen_quality[c.name] = c.quality
    end
    -- After a quality failure, the quality to beat: the best that failed, or
    -- the complexity when we never saw the endpoints that were tried.
    local floor
    if task.reason == "quality" then
      floor = task.complexity
      local tried = task.tried
      for i = 1, #tried do
        floor = max(floor, seen_quality[tried[i]] or floor)
      end
    end
    local best, best_score
    for i = 1, n do
      local c = candidates[i]
      local s = score(task, c, floor)
      if best == nil or s > best_score then
        best, best_score = c, s
      end
    end
    -- The best may be full: then wait (nil) and decide again when a slot
    -- frees, rather than settle for a worse fit now.
    if best and best.free == 0 then
      return nil
    end
    return best
  end,
}
