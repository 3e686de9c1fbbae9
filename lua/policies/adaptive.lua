-- adaptive: the cheapest endpoint that has been passing tasks like this one.
--
-- Learns from the record. For every candidate, flowrun passes what the state
-- store knows of it: its passes and fails on tasks of this task's type and
-- complexity band (`candidate.history`) and over all its work
-- (`candidate.history_all`), from every earlier run that shares the store
-- and from this run's attempts as they settle. From that record this policy
-- estimates p(pass), the chance that the candidate's reply passes the task's
-- gates, and sends the task to the cheapest candidate whose estimate reaches
-- TARGET. Where the record is thin the estimate leans on the endpoint's
-- declared `quality`; with no record at all the policy decides exactly as
-- `cost` does. A small share of tasks, picked reproducibly, tries a cheaper
-- endpoint whose record is still thin, so the record grows where it can save
-- money. Pick it for work you run again and again (the same pipeline on new
-- input) where the bill matters.
--
-- Copy it, change the constants, and run it with `--policy ./my-adaptive.lua`.

-- The p(pass) a candidate needs to get the task. Higher means fewer failed
-- attempts (and escalations) but more work on dearer endpoints.
local TARGET <const> = 0.9

-- The prior, before any record: p(pass) from how far the endpoint's quality
-- is above the task's complexity. An endpoint whose quality equals the
-- complexity gets exactly TARGET (so, with no record, the candidates that
-- reach TARGET are the ones `cost` calls good enough); each 0.1 of quality
-- above or below moves the log-odds by PRIOR_SLOPE / 10 (0.1 below: 0.77,
-- 0.3 below: 0.31, 0.1 above: 0.96).
local PRIOR_SLOPE <const> = 10

-- How many attempts the prior from quality is worth against the endpoint's
-- overall record (history_all), and how many attempts of that overall record
-- count at most: it tells how reliable an endpoint is, not how it does on
-- tasks this hard, so it only nudges the prior.
local QUALITY_STRENGTH <const> = 2
local ALL_CAP <const> = 1

-- How many attempts that blended prior is worth against the record of this
-- type and band. With 4, an endpoint whose blended prior is 0.7 needs 8
-- straight passes in a band to reach 0.9; a failure or two among them takes
-- it back below. Lower learns faster and errs more on a few lucky passes.
local BAND_STRENGTH <const> = 4

-- A failed attempt costs what it cost and a retry on the endpoint that would
-- have been sure enough. So a cheaper candidate whose record here holds at
-- least MIN_RECORD attempts is tried first when its expected spend is lower:
-- its est_cost + (1 - p(pass)) x (the sure one's est_cost) x (1 +
-- RETRY_WEIGHT), RETRY_WEIGHT pricing the time a retry takes. A free local
-- endpoint is then worth a try before a paid one from p(pass) 0.5 on (with
-- RETRY_WEIGHT 1), and worth waiting for when it is full: a slot frees
-- sooner than a failure costs. Only on a record, never on the prior alone.
local RETRY_WEIGHT <const> = 1
local MIN_RECORD <const> = 3

-- Exploration: this share of tasks (first attempts whose choice costs
-- money) tries a candidate cheaper than the one chosen, whose record in this
-- band holds fewer than UNCERTAIN attempts and whose estimate is at least
-- EXPLORE_FLOOR (hopeless ones are not worth the failed attempt).
local EXPLORE_SHARE <const> = 0.1
local UNCERTAIN <const> = 5
local EXPLORE_FLOOR <const> = 0.5

-- Comparing an estimate with TARGET tolerates this rounding, so that a
-- quality equal to the complexity reaches it as in `cost`.
local EPSILON <const> = 1e-9

local exp, log, max, floor, math_type = math.exp, math.log, math.max, math.floor, math.type
local format, byte = string.format, string.byte
local LOGIT_TARGET = log(TARGET / (1 - TARGET))

-- The quality of every endpoint seen so far, by name. An endpoint that failed
-- a task is no longer among that task's candidates, so we remember it here
-- to know what "stronger than what was tried" means.
local seen_quality = {}

-- Per decision, for the k-th usable candidate: the candidate, its estimate,
-- the attempts behind it, whether it is in the pool. Reused by every call,
-- so a decision makes no new table.
local cs, p, ev, pooled = {}, {}, {}, {}

-- Local first, then the cheapest for this task, then the smaller model (it
-- leaves the stronger one free for harder work), then the one with more room:
-- the order of `cost`.
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

-- The likeliest to pass first (`pa`, `pb` their estimates), then the one of
-- higher quality; among equals, one with a free slot, then the cheaper.
local function stronger(a, pa, b, pb)
  if pa ~= pb then
    return pa > pb
  end
  if a.quality ~= b.quality then
    return a.quality > b.quality
  end
  if (a.free > 0) ~= (b.free > 0) then
    return a.free > 0
  end
  return cheaper(a, b)
end

-- Whether a task explores is decided by task.draw, a number in [0, 1) that
-- flowrun draws for each attempt of each task from run.seed (the same seed,
-- the same draws: docs/policies.md). A host that gives none (candidates as
-- JSON) gets the same number from here: the bytes of run.seed, task.name
-- and task.attempt joined by "\0", hashed by FNV-1a, then a 64-bit
-- finaliser so that names one letter apart land far apart. Integer
-- arithmetic wraps in Lua 5.4, as the hash needs; no random state.
local FNV_OFFSET <const>, FNV_PRIME <const> = 0xcbf29ce484222325, 0x100000001b3

-- FNV-1a state `h` carried over the bytes of `s`, four a call (string.byte
-- is a C call).
local function fnv(h, s)
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    h = (h ~ a) * FNV_PRIME
    if d then
      h = (((h ~ b) * FNV_PRIME ~ c) * FNV_PRIME ~ d) * FNV_PRIME
    elseif b then
      h = (h ~ b) * FNV_PRIME
      if c then
        h = (h ~ c) * FNV_PRIME
      end
    end
  end
  return h
end

-- The seed last hashed, its math.type, and the state after its text and
-- "\0": the same for a whole run, so hashed once.
local hashed_seed, hashed_seed_type, seed_state

-- Whether this attempt of this task explores: EXPLORE_SHARE of the draws.
local function explores(task, run)
  local draw = task.draw
  if draw then
    return draw < EXPLORE_SHARE
  end
  local seed = run.seed or 0
  local seed_type = math_type(seed)
  if seed ~= hashed_seed or seed_type ~= hashed_seed_type then
    hashed_seed, hashed_seed_type = seed, seed_type
    seed_state = fnv(FNV_OFFSET, tostring(seed)) * FNV_PRIME -- and "\0"
  end
  local h, attempt = fnv(seed_state, task.name) * FNV_PRIME, task.attempt
  if math_type(attempt) == "integer" and attempt >= 0 and attempt <= 9 then
    h = (h ~ (48 + attempt)) * FNV_PRIME -- its one digit, without tostring
  else
    h = fnv(h, tostring(attempt))
  end
  h = (h ~ (h >> 33)) * 0xff51afd7ed558ccd
  h = h ~ (h >> 33)
  return (h >> 11) / 9007199254740992.0 < EXPLORE_SHARE
end

-- The band of the task, as the record has it ("0.4-0.6"). Its text is
-- formatted once per band (`band_text`, by its lo; `band_hi`, its hi): a few
-- bands, which every explanation names.
local band_text, band_hi = {}, {}
local function band(c, complexity)
  local h = c.history
  local lo = h and h.band_lo
  local hi = lo and h.band_hi
  if not hi then
    lo = floor(complexity * 5) / 5
    if lo > 0.8 then
      lo = 0.8
    end
    hi = lo + 0.2
  end
  local text = band_text[lo]
  if text and band_hi[lo] == hi then
    return text
  end
  text = format("%.1f-%.1f", lo, hi)
  if band_hi[lo] == nil and lo == lo then -- the first seen (not NaN): kept
    band_text[lo], band_hi[lo] = text, hi
  end
  return text
end

-- string.format("%.2f", x), for less work when x is in (0, 1] (estimates,
-- qualities): the nearest hundredth's text read from a table of them. x *
-- 100 is within 2^-46 of its exact value, so the nearest integer to it is
-- the exact value's, which "%.2f" prints, unless it lies that close to a
-- half; those, and anything else (0 and -0.0 included), go to
-- string.format. The same text either way.
local HUNDREDTHS = {}
for q = 0, 100 do
  HUNDREDTHS[q] = format("%.2f", q / 100)
end
local function hundredths(x)
  if x > 0 and x <= 1 then
    local y = x * 100
    local q = (y + 0.5) // 1
    local d = y - q
    if d > -0.4999999 and d < 0.4999999 then
      return HUNDREDTHS[q]
    end
  end
  return format("%.2f", x)
end

-- string.format("%d", n), the texts of the counts up to 4095 kept.
local COUNT_TEXTS = {}
local function count_text(n)
  local s = COUNT_TEXTS[n]
  if not s then
    s = format("%d", n)
    if n >= 0 and n < 4096 then
      COUNT_TEXTS[n] = s
    end
  end
  return s
end

-- The explanation of a choice: "gpu: p(pass) 0.93 from 41 attempts of type
-- code, complexity 0.4-0.6", or "... from its quality 0.70 (no attempts of
-- ...)" when the band has no record yet; `what` goes before (may be nil),
-- `note` and `other` after (both nil, or both strings).
--
-- The last explanation made, and what it was made of: a decision like the one
-- before (a task that waits and is asked again, the next task of the same
-- kind to the same endpoint) reuses its text rather than format it again.
local last_text, last_name, last_pp, last_n, last_type, last_band, last_quality
local last_what, last_note, last_other
local function why(c, pp, n, task, complexity, what, note, other)
  local name, t, b = c.name, task.type or "-", band(c, complexity)
  local quality = n > 0 or c.quality -- only shown without attempts
  if name == last_name and pp == last_pp and n == last_n and t == last_type and b == last_band
      and quality == last_quality and what == last_what and note == last_note
      and other == last_other then
    return last_text
  end
  -- Joined with `..` (one concatenation), the numbers' texts mostly read
  -- from tables: the same text as a single format for less work.
  local text
  if n > 0 then
    text = (what or "") .. name .. ": p(pass) " .. hundredths(pp) .. " from " .. count_text(n)
      .. (n == 1 and " attempt" or " attempts") .. " of type " .. t .. ", complexity " .. b
      .. (note or "") .. (other or "")
  else
    text = (what or "") .. name .. ": p(pass) " .. hundredths(pp) .. " from its quality "
      .. hundredths(quality)
      .. " (no attempts of type " .. t .. ", complexity " .. b .. ")" .. (note or "")
      .. (other or "")
  end
  last_text, last_name, last_pp, last_n, last_type, last_band = text, name, pp, n, t, b
  last_quality, last_what, last_note, last_other = quality, what, note, other
  return text
end

-- The estimate of p(pass) for candidate `c` (its `quality`) on a task of
-- `complexity`, and the attempts of its type and band behind it: a
-- Beta-style update. The prior from quality and complexity (see
-- PRIOR_SLOPE) counts as QUALITY_STRENGTH attempts against the overall
-- record, and the result as BAND_STRENGTH attempts against the record of
-- this type and band. Records are decayed (`weight`: recent attempts count
-- more), so an endpoint that got better or worse is followed.
--
-- flowrun computes this same figure in C, with this file's constants, when
-- a candidate's record is read (candidate.history.p_pass, and p_pass_n the
-- attempts behind it: docs/policies.md), so a decision only reads it. A
-- copy that changes TARGET, PRIOR_SLOPE, QUALITY_STRENGTH, ALL_CAP or
-- BAND_STRENGTH gets its own from this function, from the raw fields.
local function estimate(c, quality, complexity)
  local all, h = c.history_all, c.history
  local e = 1 / (1 + exp(-(LOGIT_TARGET + PRIOR_SLOPE * (quality - complexity))))
  if all then
    local rate = all.pass_rate
    if rate then
      local a = all.weight or 0
      if a > ALL_CAP then
        a = ALL_CAP
      end
      e = (QUALITY_STRENGTH * e + a * rate) / (QUALITY_STRENGTH + a)
    end
  end
  local rate = h and h.pass_rate
  if rate then
    local w = h.weight or 0
    return (BAND_STRENGTH * e + w * rate) / (BAND_STRENGTH + w), h.attempts or 0
  end
  return e, 0
end

-- Whether flowrun's p_pass is this file's estimate: its constants unchanged.
local FLOWRUN_ESTIMATE = TARGET == 0.9 and PRIOR_SLOPE == 10 and QUALITY_STRENGTH == 2
    and ALL_CAP == 1 and BAND_STRENGTH == 4

-- Whether the store holds a record of any of the m usable candidates (cs).
local function recorded(m)
  for k = 1, m do
    local all = cs[k].history_all
    if all and (all.attempts or 0) > 0 then
      return true
    end
  end
  return false
end

return {
  route = function(task, candidates, run)
    -- Numeric loops rather than ipairs: the same order, and cheaper, since
    -- the policy runs for every task.
    local n = #candidates
    local complexity, escalate = task.complexity, task.reason == "quality"
    -- Locals are faster than upvalues in the loops below.
    local cs, p, ev, seen, estimate = cs, p, ev, seen_quality, estimate
    local flowrun_estimate = FLOWRUN_ESTIMATE

    -- The estimate of every candidate, in arrays kept from call to call
    -- (no new tables per decision): the k-th usable candidate is cs[k], with
    -- estimate p[k] and ev[k] attempts behind it. A private task never goes
    -- to the cloud: the engine already leaves cloud endpoints out of its
    -- candidates, and this rule says so here too.
    --
    -- The same loop finds, on a first attempt or a retry (every candidate in
    -- the pool), the cheapest candidate likely enough to pass and free, and
    -- whether any is likely enough at all. Locals come first in `cheaper`,
    -- so this goes to a pricier (cloud) candidate only when every good
    -- local one is full. After a quality failure the pool is narrowed first
    -- (below) and a loop of its own does the same.
    local private = task.private == true
    local m = 0
    local choice, any_fits -- choice: an index k
    for i = 1, n do
      local c = candidates[i]
      local quality = c.quality
      seen[c.name] = quality -- remember what each endpoint is worth
      if not private or c.tier == "local" then
        m = m + 1
        cs[m] = c
        -- The estimate (see `estimate` above): flowrun's, computed with
        -- this file's constants, else this file's own.
        local h = c.history
        local pp = h and flowrun_estimate and h.p_pass
        if pp then
          p[m], ev[m] = pp, h.p_pass_n
        else
          pp, ev[m] = estimate(c, quality, complexity)
          p[m] = pp
        end
        if not escalate and pp >= TARGET - EPSILON then
          any_fits = true
          if c.free > 0 and (choice == nil or cheaper(c, cs[choice])) then
            choice = m
          end
        end
      end
    end
    if m == 0 then
      return nil, "no candidate may take this private task"
    end

    -- After a quality failure, like `cost`: only candidates strictly
    -- stronger than the best endpoint that already failed (or than the
    -- complexity, when unknown) are worth asking; among them the record
    -- decides.
    -- Candidate k is in the pool when `everyone` or pooled[k].
    local everyone, stuck = not escalate, false
    if escalate then
      local bar, tried = complexity, task.tried
      for i = 1, #tried do
        bar = max(bar, seen_quality[tried[i]] or bar)
      end
      local npool = 0
      for k = 1, m do
        pooled[k] = cs[k].quality > bar
        if pooled[k] then
          npool = npool + 1
        end
      end
      stuck = npool == 0
      everyone = stuck -- nothing stronger than what failed: the likeliest of all
    end

    -- After a quality failure, the cheapest candidate of the pool likely
    -- enough to pass and free, and whether any is likely enough at all (as
    -- the loop above does for every candidate otherwise).
    for k = 1, escalate and m or 0 do
      if (everyone or pooled[k]) and not stuck and p[k] >= TARGET - EPSILON then
        any_fits = true
        local c = cs[k]
        if c.free > 0 and (choice == nil or cheaper(c, cs[choice])) then
          choice = k
        end
      end
    end

    -- Worth a try first: a cheaper candidate with a record whose expected
    -- spend, a retry on the sure one included, is lower (see RETRY_WEIGHT).
    if choice and cs[choice].est_cost > 0 then
      local sure = cs[choice]
      local best, try = sure.est_cost, nil
      for k = 1, m do
        local c = cs[k]
        if (everyone or pooled[k]) and k ~= choice and ev[k] >= MIN_RECORD then
          local spend = c.est_cost + (1 - p[k]) * sure.est_cost * (1 + RETRY_WEIGHT)
          if spend < best and cheaper(c, sure) then
            best, try = spend, k
          end
        end
      end
      if try then -- full, it means "wait for it"
        local c = cs[try]
        return c, why(c, p[try], ev[try], task, complexity, c.free > 0 and "" or "wait for ",
          "; worth a try before ", sure.name)
      end
    end
    if not choice and any_fits then
      -- Every likely candidate is busy: wait for one rather than pay for,
      -- or fail on, a worse one.
      return nil, "waiting for an endpoint likely to pass"
    end
    if not choice then
      -- None is likely enough: the likeliest (waiting for it if it is full).
      for k = 1, m do
        if everyone or pooled[k] then
          local pk, pc = p[k], choice and p[choice]
          if choice == nil or (pk ~= pc and pk > pc)
              or (pk == pc and stronger(cs[k], pk, cs[choice], pc)) then
            choice = k
          end
        end
      end
      local c = cs[choice]
      if c.free == 0 then
        return c, why(c, p[choice], ev[choice], task, complexity, "wait for ")
      end
    end
    local c = cs[choice]

    -- Exploration, on first attempts only, once the store holds a record of
    -- any candidate (so that with no record at all this is `cost`), and only
    -- when the choice costs something (a free choice leaves nothing to
    -- save, and a failed try would cost time): a cheaper candidate whose
    -- record here is thin, never a dearer one (so never past a budget the
    -- choice fits), never the cloud for a private task (see the pool), never
    -- beyond what the run has left.
    if c.est_cost > 0 and task.reason == "first" and explores(task, run) and recorded(m) then
      local pick
      for k = 1, m do
        local x = cs[k]
        if (everyone or pooled[k]) and k ~= choice and x.free > 0 and cheaper(x, c) and x.est_cost <= c.est_cost
            and (run.remaining == nil or x.est_cost <= run.remaining)
            and ev[k] < UNCERTAIN and p[k] >= EXPLORE_FLOOR
            and (pick == nil or stronger(x, p[k], cs[pick], p[pick])) then
          pick = k
        end
      end
      if pick then
        return cs[pick],
            why(cs[pick], p[pick], ev[pick], task, complexity, "explore ",
                "; instead of ", c.name)
      end
    end
    return c, why(c, p[choice], ev[choice], task, complexity)
  end,
}
