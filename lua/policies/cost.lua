-- cost: the cheapest endpoint that is good enough.
--
-- Sends each task to the cheapest candidate whose quality covers the task's
-- complexity, keeping work on local endpoints while one of them fits. The
-- cloud gets a task only when every fitting local endpoint is full, or when
-- no local endpoint is strong enough for it. Pick this policy for batch work
-- where the bill matters more than how soon the run ends.
--
-- Copy it, change it, and run it with `flowrun --policy ./my-cost.lua`.

-- The quality of every endpoint seen so far, by name. An endpoint that failed
-- a task is no longer among that task's candidates, so we remember it here
-- to know what "better than what was tried" means.
local seen_quality = {}

-- Local first, then the cheapest for this task, then the smaller model (it
-- leaves the stronger one free for harder work), then the one with more room.
local function cheaper(a, b)
  if a.tier ~= b.tier then
    return a.tier == "local"
  end
  if a.est_cost ~= b.est_cost then
    return a.est_cost < b.est_cost
  end
  if a.quality ~= b.quality then
    return a.quality < b.quality
  end
  return a.free > b.free
end

-- The strongest first; among equals, one with a free slot, then the cheaper.
local function stronger(a, b)
  if a.quality ~= b.quality then
    return a.quality > b.quality
  end
  if (a.free > 0) ~= (b.free > 0) then
    return a.free > 0
  end
  return cheaper(a, b)
end

-- math.max, looked up once rather than on every call.
local max = math.max

return {
  route = function(task, candidates, run)
    -- Numeric loops rather than ipairs: the same order, and cheaper, since
    -- the policy runs for every task.
    local n = #candidates
    for i = 1, n do -- remember what each endpoint is worth
      local c = candidates[i]
      seen_quality[c.name] = c.quality
    end

    -- What "good enough" means: covering the complexity on a first try or
    -- after an error; after a quality failure, strictly better than the best
    -- endpoint that already failed (or than the complexity, when unknown).
    local bar, escalate = task.complexity, task.reason == "quality"
    if escalate then
      local tried = task.tried
      for i = 1, #tried do
        bar = max(bar, seen_quality[tried[i]] or bar)
      end
    end

    -- One pass finds the cheapest fitting candidate with a free slot (the
    -- first of the fitting ones in `cheaper` order that is free) and whether
    -- any candidate fits at all. Because locals come first in `cheaper`,
    -- this overflows to a pricier (cloud) candidate only when every fitting
    -- local one is full.
    local cheapest_free, any_fits
    for i = 1, n do
      local c = candidates[i]
      if c.quality > bar or (c.quality == bar and not escalate) then
        any_fits = true
        if c.free > 0 and (cheapest_free == nil or cheaper(c, cheapest_free)) then
          cheapest_free = c
        end
      end
    end
    if cheapest_free then
      return cheapest_free
    end

    -- Every fitting candidate is busy: wait for one (nil) rather than pay
    -- for, or fail on, a candidate too weak for the task.
    if any_fits then
      return nil
    end

    -- Nothing is strong enough: the task needs the strongest we have (the
    -- first in `stronger` order). If that one is full, returning it means
    -- "wait for this one".
    local strongest
    for i = 1, n do
      local c = candidates[i]
      if strongest == nil or stronger(c, strongest) then
        strongest = c
      end
    end
    return strongest
  end,
}
