/* Route's and on_result's arguments as Lua tables (dsl/policy_int.h): set
 * field by field from C views, or copied from JSON; for a policy that keeps
 * them (fr_policy_keep_args) the same tables from decision to decision, and
 * for a trusted built-in only the fields that changed written again. */
#include "dsl/policy_int.h"

#include "dsl/luajson.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const key_names[] = {"", KEY_LIST(KEY_NAME)};

int fr_policy_push_keys(lua_State *L)
{
    luaL_checkstack(L, KEY_COUNT, "policy keys");
    for (int k = 1; k < KEY_COUNT; k++)
        lua_pushstring(L, key_names[k]); /* [keys...] */
    return KEY_COUNT - 1;
}

/* The fields below are set on a table preallocated for all of them, in the
 * order of the JSON objects they replace, so a policy sees the same table
 * (pairs() included). Each pushes key `k` (a K_ index: call_protected's
 * upvalue k) and its value and sets them raw: no metamethod runs, on a
 * new table or a kept one. [-0, +0] on a table at the top. */
static void set_key(lua_State *L, int k)
{
    lua_pushvalue(L, lua_upvalueindex(k)); /* [t, k] */
}

static void set_str(lua_State *L, int k, const char *v)
{
    set_key(L, k);
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
}

static void set_int(lua_State *L, int k, lua_Integer v)
{
    set_key(L, k);
    lua_pushinteger(L, v);
    lua_rawset(L, -3);
}

static void set_num(lua_State *L, int k, double v)
{
    set_key(L, k);
    lua_pushnumber(L, v);
    lua_rawset(L, -3);
}

/* Sets field `k` to `v` when `has`, else to nil (as a JSON null did). */
static void set_opt_num(lua_State *L, int k, bool has, double v)
{
    set_key(L, k);
    if (has)
        lua_pushnumber(L, v);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
}

/* Sets field `k` to an array of the `n` strings `v`. */
static void set_names(lua_State *L, int k, const char *const *v, size_t n)
{
    set_key(L, k);                 /* [t, k] */
    lua_createtable(L, (int)n, 0); /* [t, k, a] */
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_rawset(L, -3); /* [t] */
}

/* Sets field `k` to the array at stack index `arr` (absolute), or, when
 * `arr` is 0, to a new array of the `n` strings `v`. */
static void set_list(lua_State *L, int k, int arr, const char *const *v, size_t n)
{
    if (!arr) {
        set_names(L, k, v, n);
        return;
    }
    set_key(L, k);
    lua_pushvalue(L, arr);
    lua_rawset(L, -3);
}

/* Sets the fields of task `t` on the table at the top; `tried` is the stack
 * index (absolute) of the array to set as `tried`, 0: a new one. */
static void fill_task(lua_State *L, const fr_policy_task *t, int tried)
{
    set_str(L, K_NAME, t->name);
    set_str(L, K_AGENT, t->agent);
    set_str(L, K_TYPE, t->type);
    set_num(L, K_COMPLEXITY, t->complexity);
    set_int(L, K_PRIORITY, t->priority);
    set_key(L, K_PRIVATE);
    lua_pushboolean(L, t->is_private);
    lua_rawset(L, -3);
    set_int(L, K_ATTEMPT, t->attempt);
    set_str(L, K_REASON, t->reason);
    set_list(L, K_TRIED, tried, t->tried, t->ntried);
    set_int(L, K_EST_INPUT_TOKENS, t->est_input_tokens);
    set_int(L, K_MAX_TOKENS, t->max_tokens);
    set_int(L, K_TOOLS, t->tools);
    set_opt_num(L, K_DRAW, t->has_draw, t->draw);
}

static void push_task(lua_State *L, const fr_policy_task *t)
{
    lua_createtable(L, 0, 13); /* [task] */
    fill_task(L, t, 0);
}

/* An endpoint's record without evidence, for a view that has none. */
static const fr_policy_hist no_history = {
    .pass_rate = -1,
    .score_mean = -1,
    .latency_p50_ms = -1,
    .ttft_p50_ms = -1,
    .tokens_per_s = -1,
    .cost_mean_usd = -1,
    .age_s = -1,
    .band_hi = 1,
};

/* The log-odds of adaptive.lua's TARGET, as the file computes it once. */
static double target_logit(void)
{
    volatile double target = 0.9; /* log() at run time, as Lua calls it */
    return log(target / (1 - target));
}

/* lua/policies/adaptive.lua's estimate of p(pass) for candidate `c` on a
 * task of `complexity`, with that file's constants (TARGET 0.9,
 * PRIOR_SLOPE 10, QUALITY_STRENGTH 2, ALL_CAP 1, BAND_STRENGTH 4): the
 * prior from quality, blended with the record over all work, then with the
 * record of the task's type and band. The operations of the file, in its
 * order, so the figure is the one it computes, bit for bit; `logit` is
 * target_logit()'s. */
static double p_pass_of(const fr_policy_cand *c, double complexity, double logit)
{
    const fr_policy_hist *all = c->history_all ? c->history_all : &no_history;
    const fr_policy_hist *h = c->history ? c->history : &no_history;
    double e = 1 / (1 + exp(-(logit + 10 * (c->quality - complexity))));
    if (all->pass_rate >= 0) {
        double a = all->weight;
        if (a > 1)
            a = 1;
        e = (2 * e + a * all->pass_rate) / (2 + a);
    }
    if (h->pass_rate >= 0)
        return (4 * e + h->weight * h->pass_rate) / (4 + h->weight);
    return e;
}

/* Sets p_pass (`pp`) and p_pass_n, the attempts behind it, on the record
 * table at the top for record `h` (NULL: none). */
static void set_p_pass(lua_State *L, const fr_policy_hist *h, double pp)
{
    if (!h)
        h = &no_history;
    set_num(L, K_P_PASS, pp);
    set_int(L, K_P_PASS_N, h->pass_rate >= 0 ? h->attempts : 0);
}

/* Sets the fields of history record `h` on the table at the top. */
static void fill_hist(lua_State *L, const fr_policy_hist *h)
{
    set_int(L, K_ATTEMPTS, h->attempts);
    set_int(L, K_PASSES, h->passes);
    set_int(L, K_FAILS, h->fails);
    set_int(L, K_ERRORS, h->errors);
    set_num(L, K_WEIGHT, h->weight);
    set_opt_num(L, K_PASS_RATE, h->pass_rate >= 0, h->pass_rate);
    set_opt_num(L, K_SCORE_MEAN, h->score_mean >= 0, h->score_mean);
    set_opt_num(L, K_LATENCY_P50_MS, h->latency_p50_ms >= 0, h->latency_p50_ms);
    set_opt_num(L, K_TTFT_P50_MS, h->ttft_p50_ms >= 0, h->ttft_p50_ms);
    set_opt_num(L, K_TOKENS_PER_S, h->tokens_per_s >= 0, h->tokens_per_s);
    set_opt_num(L, K_COST_MEAN_USD, h->cost_mean_usd >= 0, h->cost_mean_usd);
    set_opt_num(L, K_AGE_S, h->age_s >= 0, h->age_s);
    set_num(L, K_BAND_LO, h->band_lo);
    set_num(L, K_BAND_HI, h->band_hi);
    set_str(L, K_TYPE, h->type);
}

/* Sets field `k` to the table at stack index `t` (absolute), or, when `t`
 * is 0, to a new table of record `h`. */
static void set_hist(lua_State *L, int k, int t, const fr_policy_hist *h)
{
    set_key(L, k); /* [c, k] */
    if (t) {
        lua_pushvalue(L, t);
    } else {
        lua_createtable(L, 0, 17); /* [c, k, h] */
        fill_hist(L, h ? h : &no_history);
    }
    lua_rawset(L, -3); /* [c] */
}

/* Sets the fields of candidate `c` on the table at the top; `tags` as
 * fill_task's `tried`; with `hist`, its history and history_all: the
 * tables at stack indexes `hist` and `hist` + 1 (absolute), or new ones
 * when `hist` is -1. */
static void fill_cand(lua_State *L, const fr_policy_cand *c, int tags, int hist, double complexity)
{
    set_str(L, K_NAME, c->name);
    set_str(L, K_TIER, c->tier);
    set_str(L, K_PROTOCOL, c->protocol);
    set_str(L, K_MODEL, c->model);
    set_int(L, K_IN_FLIGHT, c->in_flight);
    set_int(L, K_MAX_PARALLEL, c->max_parallel);
    set_int(L, K_FREE, c->free);
    set_int(L, K_QUEUED, c->queued);
    set_num(L, K_QUALITY, c->quality);
    set_num(L, K_PRICE_IN, c->price_in);
    set_num(L, K_PRICE_OUT, c->price_out);
    set_num(L, K_EST_COST, c->est_cost);
    set_opt_num(L, K_LATENCY_P50, c->latency_p50 >= 0, c->latency_p50);
    set_list(L, K_TAGS, tags, c->tags, c->ntags);
    set_int(L, K_CONTEXT, c->context);
    if (hist) {
        set_hist(L, K_HISTORY, hist > 0 ? hist : 0, c->history);
        if (hist < 0) { /* a new table: its estimate too */
            set_key(L, K_HISTORY);
            lua_rawget(L, -2); /* [c, h] */
            set_p_pass(L, c->history, p_pass_of(c, complexity, target_logit()));
            lua_pop(L, 1); /* [c] */
        }
        set_hist(L, K_HISTORY_ALL, hist > 0 ? hist + 1 : 0, c->history_all);
    }
}

static void push_cands(lua_State *L, const fr_policy_cands *cs, double complexity)
{
    lua_createtable(L, (int)cs->n, 0); /* [cands] */
    for (size_t i = 0; i < cs->n; i++) {
        lua_createtable(L, 0, 17); /* [cands, c] */
        fill_cand(L, &cs->view[i], 0, -1, complexity);
        lua_rawseti(L, -2, (lua_Integer)i + 1); /* [cands] */
    }
}

static void push_result(lua_State *L, const fr_policy_result *r)
{
    lua_createtable(L, 0, 8); /* [result] */
    set_str(L, K_ENDPOINT, r->endpoint);
    set_str(L, K_TIER, r->tier);
    set_str(L, K_TEXT, r->text);
    set_key(L, K_JSON);           /* [result, "json"] */
    fr_lua_push_json(L, r->json); /* [result, "json", json] */
    lua_rawset(L, -3);
    set_num(L, K_LATENCY_MS, r->latency_ms);
    set_key(L, K_TOKENS);     /* [result, "tokens"] */
    lua_createtable(L, 0, 2); /* [result, "tokens", tokens] */
    set_int(L, K_INPUT, r->input_tokens);
    set_int(L, K_OUTPUT, r->output_tokens);
    lua_rawset(L, -3);
    set_num(L, K_COST_USD, r->cost_usd);
    set_int(L, K_ATTEMPT, r->attempt);
}

/* Sets the fields of run `r` on the table at the top. */
static void fill_run(lua_State *L, const fr_policy_run *r)
{
    set_opt_num(L, K_BUDGET, r->capped, r->budget);
    set_num(L, K_SPENT, r->spent);
    set_num(L, K_RESERVED, r->reserved);
    set_opt_num(L, K_REMAINING, r->capped, r->remaining);
    set_num(L, K_ELAPSED, r->elapsed);
    set_int(L, K_DONE, r->done);
    set_int(L, K_TOTAL, r->total);
    set_int(L, K_READY, r->ready);
    set_int(L, K_SEED, (lua_Integer)r->seed);
}

static void push_run(lua_State *L, const fr_policy_run *r)
{
    lua_createtable(L, 0, 9); /* [run] */
    fill_run(L, r);
}

/* ---- the kept route arguments (fr_policy_keep_args) ----
 * Building route's tables (a task, its tried list, the run, the candidates
 * and each one's tags: 19 tables and 140 fields for 8 candidates) costs
 * more than a built-in policy's own Lua. Kept, they are built once and
 * stay in the registry (under &args_key, out of the policy's reach); each
 * decision writes every field and element again, so what a policy changed
 * in one decision is overwritten before the next. Keys it adds are not:
 * each kept table has a metatable whose __newindex sets them raw and marks
 * the tables dirty, and the next decision builds all of them anew. So does
 * a call of setmetatable since the last decision (the policy may have
 * replaced or removed a kept table's metatable) and a change to the
 * metatable itself (getmetatable(task).__index = ...). A call that fails
 * makes them new too (its writes may have stopped half way). What stays
 * visible: a table kept past its call shows the next call's values, and
 * getmetatable(task) is not nil. */

/* The registry key of the table of kept arguments, whose slots are: */
static const char args_key = 'A';
enum { AC_MT = 1, AC_NEWINDEX, AC_TASK, AC_TRIED, AC_RUN, AC_CANDS, AC_SLOT0 };
/* candidate i (0-based) at AC_SLOT0 + AC_STRIDE i, its tags at + 1, its
 * record tables (history_all, then the variants of history) at + 2 ... */
#define AC_STRIDE (2 + FR_POLICY_NREC)

/* __newindex of the kept tables (upvalues: the policy, the metatable): a
 * key the policy adds to one of them. */
static int args_newindex(lua_State *L)
{
    fr_policy *p = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(2)))
        return luaL_error(L, "this __newindex sets fields of route's own arguments only");
    lua_settop(L, 3);
    p->args_dirty = true;
    lua_rawset(L, 1);
    return 0;
}

/* Returns true when the metatable at `mt` holds only __newindex, the
 * function at `fn` (both absolute). */
static bool mt_intact(lua_State *L, int mt, int fn)
{
    int top = lua_gettop(L);
    bool ok = false;
    lua_pushnil(L);        /* [nil] */
    if (lua_next(L, mt)) { /* [k, v] */
        ok = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "__newindex") == 0 &&
             lua_rawequal(L, -1, fn);
        lua_pop(L, 1); /* [k] */
        if (lua_next(L, mt))
            ok = false; /* a second key */
    }
    lua_settop(L, top);
    return ok;
}

/* Pushes the table of kept arguments and its metatable: the kept ones, or
 * new ones when there are none yet or they are no longer clean. Returns
 * the index (absolute) of the table; the metatable is just above. */
static int push_arg_cache(lua_State *L, fr_policy *p)
{
    int cache = lua_gettop(L) + 1;
    unsigned long set = fr_sandbox_metatables_set(L);
    bool clean = !p->args_dirty && set == p->metatables_set;
    p->metatables_set = set;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &args_key) == LUA_TTABLE && clean) {
        lua_rawgeti(L, cache, AC_MT);       /* [cache, mt] */
        lua_rawgeti(L, cache, AC_NEWINDEX); /* [cache, mt, fn] */
        bool ok = mt_intact(L, cache + 1, cache + 2);
        lua_settop(L, cache + 1);
        if (ok)
            return cache; /* [cache, mt] */
    }
    lua_settop(L, cache - 1);
    lua_createtable(L, AC_SLOT0 + 8 * AC_STRIDE, 0); /* [cache] */
    lua_createtable(L, 0, 1);                        /* [cache, mt] */
    lua_pushlightuserdata(L, p);
    lua_pushvalue(L, cache + 1);
    lua_pushcclosure(L, args_newindex, 2); /* [cache, mt, fn] */
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, AC_NEWINDEX);
    lua_setfield(L, cache + 1, "__newindex"); /* [cache, mt] */
    lua_pushvalue(L, cache + 1);
    lua_rawseti(L, cache, AC_MT);
    lua_pushvalue(L, cache);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &args_key);
    p->args_dirty = false;
    p->ntried = p->ncands = 0;
    if (p->nslots) {
        memset(p->ntags, 0, p->nslots * sizeof *p->ntags);
        memset(p->hist_ok, 0, FR_POLICY_NREC * p->nslots * sizeof *p->hist_ok);
        memset(p->hist_p_ok, 0, FR_POLICY_NREC * p->nslots * sizeof *p->hist_p_ok);
        for (size_t i = 0; i < p->nslots; i++)
            p->hist_cur[i] = -1;
        for (size_t i = 0; i < p->nslots; i++)
            p->cand_seen[i].ok = false;
    }
    p->task_seen.ok = p->run_seen.ok = false;
    return cache;
}

/* Pushes the kept table in `slot` of the cache at `cache` (its metatable
 * just above), or a new one with `narr` and `nrec` slots when there is none
 * yet. Returns true when new. */
static bool kept_table(lua_State *L, int cache, int slot, int narr, int nrec)
{
    if (lua_rawgeti(L, cache, slot) == LUA_TTABLE) /* [t] */
        return false;
    lua_pop(L, 1);
    lua_createtable(L, narr, nrec); /* [t] */
    lua_pushvalue(L, cache + 1);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, slot);
    return true;
}

/* Writes the `n` strings `v` into the array at the top, and nil over the
 * rest of the `*was` it held; *was becomes n (and covers every element
 * written if an error stops it half way). */
static void fill_names(lua_State *L, const char *const *v, size_t n, size_t *was)
{
    if (n > *was)
        *was = n;
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (size_t i = n; i < *was; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    *was = n;
}

/* Pushes the kept record table in slot `slot` of the cache at `cache`,
 * record `at` of hist_seen, writing `h` (NULL: none) into it unless it
 * holds that already: `held`, hist_same's answer for a trusted built-in
 * (false for any other policy). Returns true when the table is new. */
static bool kept_hist(lua_State *L, fr_policy *p, int cache, int slot, size_t at,
                      const fr_policy_hist *h, bool held)
{
    if (!h)
        h = &no_history;
    bool fresh = kept_table(L, cache, slot, 0, 17); /* [.., h] */
    if (fresh)
        p->hist_ok[at] = false;
    else if (held)
        return false;
    p->hist_ok[at] = false; /* until written whole */
    p->hist_p_ok[at] = false;
    fill_hist(L, h);
    p->hist_seen[at] = *h;
    p->hist_ok[at] = true;
    return fresh;
}

/* The variant of slot `i`'s history tables for record `h` (NULL: none):
 * one that holds it already (*held set), else the one used longest ago
 * (rewritten). Always 0 for a policy that is not trusted (written every
 * call, *held false). */
static int hist_variant(fr_policy *p, size_t i, const fr_policy_hist *h, bool *held)
{
    *held = false;
    if (!p->trusted)
        return 0;
    if (!h)
        h = &no_history;
    size_t base = i * FR_POLICY_NREC + 1;
    int v = 0;
    for (int k = 0; k < FR_POLICY_HIST_VARIANTS; k++) {
        size_t at = base + (size_t)k;
        if (p->hist_ok[at] && memcmp(&p->hist_seen[at], h, sizeof *h) == 0) {
            v = k;
            *held = true;
            break;
        }
        if (!p->hist_ok[at] ? p->hist_ok[base + (size_t)v]
                            : p->hist_tick[at] < p->hist_tick[base + (size_t)v])
            v = k; /* unused, or used longer ago */
    }
    p->hist_tick[base + (size_t)v] = ++p->tick;
    return v;
}

/* Makes room in `p` for `n` candidate slots. */
static void grow_slots(fr_policy *p, size_t n)
{
    if (n <= p->nslots)
        return;
    p->ntags = fr_xrealloc(p->ntags, n * sizeof *p->ntags);
    memset(p->ntags + p->nslots, 0, (n - p->nslots) * sizeof *p->ntags);
    size_t was = FR_POLICY_NREC * p->nslots, now = FR_POLICY_NREC * n;
    p->hist_seen = fr_xrealloc(p->hist_seen, now * sizeof *p->hist_seen);
    p->hist_ok = fr_xrealloc(p->hist_ok, now * sizeof *p->hist_ok);
    memset(p->hist_ok + was, 0, (now - was) * sizeof *p->hist_ok);
    p->hist_tick = fr_xrealloc(p->hist_tick, now * sizeof *p->hist_tick);
    memset(p->hist_tick + was, 0, (now - was) * sizeof *p->hist_tick);
    p->hist_p = fr_xrealloc(p->hist_p, now * sizeof *p->hist_p);
    p->hist_p_ok = fr_xrealloc(p->hist_p_ok, now * sizeof *p->hist_p_ok);
    memset(p->hist_p_ok + was, 0, (now - was) * sizeof *p->hist_p_ok);
    p->hist_cur = fr_xrealloc(p->hist_cur, n * sizeof *p->hist_cur);
    for (size_t i = p->nslots; i < n; i++)
        p->hist_cur[i] = -1;
    p->cand_seen = fr_xrealloc(p->cand_seen, n * sizeof *p->cand_seen);
    memset(p->cand_seen + p->nslots, 0, (n - p->nslots) * sizeof *p->cand_seen);
    p->nslots = n;
}

/* ---- a trusted built-in's kept tables: only what changed ----
 * A trusted built-in does not change its arguments (test_policy_builtins
 * checks it decides as its code with fresh tables does), so a kept table
 * still holds what the decision before wrote into it; each field is
 * written again only when its value changed (seen_task, seen_run,
 * seen_cand). A policy file, or one kept by fr_policy_keep_args alone,
 * gets every field written every decision (fill_task etc.). */

/* Whether `v` (may be NULL) differs from the copy `*seen`, which then
 * becomes a copy of `v`. */
static bool str_changed(char **seen, const char *v)
{
    if (*seen ? v && strcmp(*seen, v) == 0 : !v)
        return false;
    free(*seen);
    *seen = v ? fr_xstrdup(v) : NULL;
    return true;
}

/* str_changed for a text that, when `stable`, stays at its address
 * unchanged (fr_policy_cand.stable_strings): one at the address `*at` seen
 * last is the same without a comparison. *at becomes `v`'s address when
 * stable, else NULL. */
static bool str_changed_at(char **seen, const char **at, const char *v, bool stable)
{
    if (stable && v && v == *at)
        return false;
    bool changed = str_changed(seen, v);
    *at = stable ? v : NULL;
    return changed;
}

/* The same for numbers, bit for bit (0.0 and -0.0 differ; a NaN equals
 * itself). */
static bool num_changed(double *seen, double v)
{
    if (memcmp(seen, &v, sizeof v) == 0)
        return false;
    *seen = v;
    return true;
}

static void seen_free(fr_policy *p)
{
    char **t[] = {&p->task_seen.name, &p->task_seen.agent, &p->task_seen.type,
                  &p->task_seen.reason};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        free(*t[i]);
        *t[i] = NULL;
    }
    for (size_t i = 0; i < p->nslots; i++) {
        seen_cand *c = &p->cand_seen[i];
        char **cs[] = {&c->name, &c->tier, &c->protocol, &c->model};
        for (size_t j = 0; j < sizeof cs / sizeof *cs; j++) {
            free(*cs[j]);
            *cs[j] = NULL;
        }
    }
    free(p->cand_seen);
    p->cand_seen = NULL;
}

/* Field `f` of the view `v` against the seen copy `s` (all: written
 * whatever it was). The non-short-circuit | updates the copy either way. */
#define CHG_STR(f) ((int)all | (int)str_changed(&s->f, v->f))
#define CHG_TXT(f) ((int)all | (int)str_changed_at(&s->f, &s->f##_at, v->f, v->stable_strings))
#define CHG_NUM(f) ((int)all | (int)num_changed(&s->v.f, v->f))
#define CHG_INT(f) ((int)all | (s->v.f != v->f ? (s->v.f = v->f, 1) : 0))

/* fill_task for a trusted built-in's kept task table (at the top), its
 * tried list the kept array at `tried` (absolute). */
static void refill_task(lua_State *L, const fr_policy_task *v, int tried, seen_task *s)
{
    bool all = !s->ok;
    s->ok = false; /* until every field is written */
    if (CHG_STR(name))
        set_str(L, K_NAME, v->name);
    if (CHG_STR(agent))
        set_str(L, K_AGENT, v->agent);
    if (CHG_STR(type))
        set_str(L, K_TYPE, v->type);
    if (CHG_NUM(complexity))
        set_num(L, K_COMPLEXITY, v->complexity);
    if (CHG_INT(priority))
        set_int(L, K_PRIORITY, v->priority);
    if (CHG_INT(is_private)) {
        set_key(L, K_PRIVATE);
        lua_pushboolean(L, v->is_private);
        lua_rawset(L, -3);
    }
    if (CHG_INT(attempt))
        set_int(L, K_ATTEMPT, v->attempt);
    if (CHG_STR(reason))
        set_str(L, K_REASON, v->reason);
    if (all)
        set_list(L, K_TRIED, tried, NULL, 0);
    if (CHG_INT(est_input_tokens))
        set_int(L, K_EST_INPUT_TOKENS, v->est_input_tokens);
    if (CHG_INT(max_tokens))
        set_int(L, K_MAX_TOKENS, v->max_tokens);
    if (CHG_INT(tools))
        set_int(L, K_TOOLS, v->tools);
    bool has_draw = CHG_INT(has_draw);
    if (CHG_NUM(draw) | has_draw)
        set_opt_num(L, K_DRAW, v->has_draw, v->draw);
    s->ok = true;
}

/* fill_run for a trusted built-in's kept run table (at the top). */
static void refill_run(lua_State *L, const fr_policy_run *v, seen_run *s)
{
    bool all = !s->ok;
    s->ok = false;
    bool capped = CHG_INT(capped);
    if (CHG_NUM(budget) | capped)
        set_opt_num(L, K_BUDGET, v->capped, v->budget);
    if (CHG_NUM(spent))
        set_num(L, K_SPENT, v->spent);
    if (CHG_NUM(reserved))
        set_num(L, K_RESERVED, v->reserved);
    if (CHG_NUM(remaining) | capped)
        set_opt_num(L, K_REMAINING, v->capped, v->remaining);
    if (CHG_NUM(elapsed))
        set_num(L, K_ELAPSED, v->elapsed);
    if (CHG_INT(done))
        set_int(L, K_DONE, v->done);
    if (CHG_INT(total))
        set_int(L, K_TOTAL, v->total);
    if (CHG_INT(ready))
        set_int(L, K_READY, v->ready);
    if (CHG_INT(seed))
        set_int(L, K_SEED, (lua_Integer)v->seed);
    s->ok = true;
}

/* fill_cand for a trusted built-in's kept candidate table (at the top):
 * `tags`, `hist` and `hist_all` the stack indexes (absolute) of its kept
 * tables, 0 for one not pushed (the field holds it already). */
static void refill_cand(lua_State *L, const fr_policy_cand *v, int tags, int hist, int hist_all,
                        bool hist_moved, seen_cand *s)
{
    bool all = !s->ok;
    s->ok = false;
    if (CHG_TXT(name))
        set_str(L, K_NAME, v->name);
    if (CHG_TXT(tier))
        set_str(L, K_TIER, v->tier);
    if (CHG_TXT(protocol))
        set_str(L, K_PROTOCOL, v->protocol);
    if (CHG_TXT(model))
        set_str(L, K_MODEL, v->model);
    if (CHG_INT(in_flight))
        set_int(L, K_IN_FLIGHT, v->in_flight);
    if (CHG_INT(max_parallel))
        set_int(L, K_MAX_PARALLEL, v->max_parallel);
    if (CHG_INT(free))
        set_int(L, K_FREE, v->free);
    if (CHG_INT(queued))
        set_int(L, K_QUEUED, v->queued);
    if (CHG_NUM(quality))
        set_num(L, K_QUALITY, v->quality);
    if (CHG_NUM(price_in))
        set_num(L, K_PRICE_IN, v->price_in);
    if (CHG_NUM(price_out))
        set_num(L, K_PRICE_OUT, v->price_out);
    if (CHG_NUM(est_cost))
        set_num(L, K_EST_COST, v->est_cost);
    if (CHG_NUM(latency_p50))
        set_opt_num(L, K_LATENCY_P50, v->latency_p50 >= 0, v->latency_p50);
    if (all)
        set_list(L, K_TAGS, tags, NULL, 0);
    if (CHG_INT(context))
        set_int(L, K_CONTEXT, v->context);
    if ((all || hist_moved) && hist)
        set_hist(L, K_HISTORY, hist, NULL);
    if (all && hist_all)
        set_hist(L, K_HISTORY_ALL, hist_all, NULL);
    s->ok = true;
}

static bool same_str(const char *seen, const char *v)
{
    return seen ? v && strcmp(seen, v) == 0 : !v;
}

/* same_str for a text seen last at `at` (see str_changed_at). */
static bool same_txt(const char *seen, const char *at, const char *v, bool stable)
{
    return (stable && v && v == at) || same_str(seen, v);
}

static bool same_num(double seen, double v)
{
    return memcmp(&seen, &v, sizeof v) == 0;
}

/* Whether record `at` (2i + 0 or 1) of candidate slot i holds `h` (NULL:
 * none) already. */
static bool hist_same(const fr_policy *p, size_t at, const fr_policy_hist *h)
{
    return p->hist_ok[at] && memcmp(&p->hist_seen[at], h ? h : &no_history, sizeof *h) == 0;
}

/* Whether a trusted built-in's candidate slot `i`, element i + 1 of the
 * kept candidates array (`was` of them written), holds candidate `c`
 * whole already (its records included): then nothing of it is pushed. */
static bool cand_unchanged(const fr_policy *p, size_t i, const fr_policy_cand *c, size_t was,
                           double pp)
{
    const seen_cand *s = &p->cand_seen[i];
    if (!p->trusted || i >= was || !s->ok || c->ntags > 0 || p->ntags[i] > 0)
        return false;
    size_t base = i * FR_POLICY_NREC;
    if (p->reads_history &&
        !(p->hist_cur[i] >= 0 && hist_same(p, base + 1 + (size_t)p->hist_cur[i], c->history) &&
          hist_same(p, base, c->history_all) && p->hist_p_ok[base + 1 + (size_t)p->hist_cur[i]] &&
          same_num(p->hist_p[base + 1 + (size_t)p->hist_cur[i]], pp)))
        return false;
    bool st = c->stable_strings;
    return same_txt(s->name, s->name_at, c->name, st) &&
           same_txt(s->tier, s->tier_at, c->tier, st) &&
           same_txt(s->protocol, s->protocol_at, c->protocol, st) &&
           same_txt(s->model, s->model_at, c->model, st) && s->v.in_flight == c->in_flight &&
           s->v.max_parallel == c->max_parallel && s->v.free == c->free &&
           s->v.queued == c->queued && s->v.context == c->context &&
           same_num(s->v.quality, c->quality) && same_num(s->v.price_in, c->price_in) &&
           same_num(s->v.price_out, c->price_out) && same_num(s->v.est_cost, c->est_cost) &&
           same_num(s->v.latency_p50, c->latency_p50);
}

/* Pushes the kept table of candidate `c` (p_pass `pp` when the policy reads
 * history), slot `i` of the cache at `cache`, its fields written as
 * fill_cand or, for a trusted built-in, refill_cand does. A trusted
 * built-in's slot that holds a candidate whole already (cand_seen[i].ok)
 * does not push a record or tags table its field holds as it should; should
 * one of its tables turn out new, it is pushed again whole. Returns true
 * when the candidate's table is new. [-0, +1] */
static bool push_kept_cand(lua_State *L, fr_policy *p, int cache, int i, const fr_policy_cand *c,
                           double pp)
{
    int top = lua_gettop(L), slot = AC_SLOT0 + AC_STRIDE * i;
    seen_cand *seen = &p->cand_seen[i];
    size_t base = (size_t)i * FR_POLICY_NREC, at = 0;
    int v = 0;
    bool hist_moved = false, held = false, fresh;
    if (p->reads_history) {
        v = hist_variant(p, (size_t)i, c->history, &held);
        at = base + 1 + (size_t)v;
        hist_moved = v != p->hist_cur[i];
        p->hist_cur[i] = -1; /* until the field is set */
    }
    int hist, hist_all, tags;
    for (;;) {
        bool whole = p->trusted && seen->ok;
        hist = hist_all = tags = 0;
        if (p->reads_history) {
            bool p_same = p->trusted && p->hist_p_ok[at] && same_num(p->hist_p[at], pp);
            if (!whole || hist_moved || !p_same || !held) {
                if (kept_hist(L, p, cache, slot + 3 + v, at, c->history, held)) /* [.., h] */
                    seen->ok = false;
                held = true; /* written: the loop's second round finds it */
                /* p_pass_n is the record's: written with it (which
                 * unsets hist_p_ok); p_pass where it changed. */
                if (!p->trusted || !p->hist_p_ok[at]) {
                    set_p_pass(L, c->history, pp);
                } else if (!same_num(p->hist_p[at], pp)) {
                    set_num(L, K_P_PASS, pp);
                }
                p->hist_p[at] = pp;
                p->hist_p_ok[at] = true;
                hist = lua_gettop(L);
            }
            bool all_held = p->trusted && hist_same(p, base, c->history_all);
            if (!whole || !all_held) {
                if (kept_hist(L, p, cache, slot + 2, base, c->history_all, all_held)) /* [.., ha] */
                    seen->ok = false;
                hist_all = lua_gettop(L);
            }
        }
        if (!whole || c->ntags > 0 || p->ntags[i] > 0) {
            if (kept_table(L, cache, slot + 1, (int)c->ntags, 0)) { /* [.., tags] */
                p->ntags[i] = 0;
                seen->ok = false;
            }
            fill_names(L, c->tags, c->ntags, &p->ntags[i]);
            tags = lua_gettop(L);
        }
        fresh = kept_table(L, cache, slot, 0, 17); /* [.., c] */
        if (fresh)
            seen->ok = false;
        if (!whole || seen->ok)
            break;
        lua_settop(L, top); /* a table was new: every one, every field */
    }
    if (p->reads_history)
        p->hist_cur[i] = v; /* set below: refill_cand on a move, else with all fields */
    if (p->trusted)
        refill_cand(L, c, tags, hist, hist_all, hist_moved, seen);
    else
        fill_cand(L, c, tags, hist, 0); /* hist_all is hist + 1 */
    if (lua_gettop(L) > top + 1) {
        lua_replace(L, top + 1); /* [.., c, ...] */
        lua_settop(L, top + 1);  /* [.., c] */
    }
    return fresh;
}

/* Pushes route's three arguments for `a`, as the kept tables of `p`. The
 * cache and its metatable are at `cache`. [-0, +3] */
static void push_kept_args(lua_State *L, fr_policy *p, int cache, const fr_policy_args *a)
{
    const fr_policy_cands *cs = a->cands;
    int n = (int)cs->n;
    grow_slots(p, cs->n);
    if (kept_table(L, cache, AC_TRIED, (int)a->task->ntried, 0)) /* [tried] */
        p->ntried = 0;
    fill_names(L, a->task->tried, a->task->ntried, &p->ntried);
    if (kept_table(L, cache, AC_TASK, 0, 13)) /* [tried, task] */
        p->task_seen.ok = false;
    if (p->trusted)
        refill_task(L, a->task, lua_gettop(L) - 1, &p->task_seen);
    else
        fill_task(L, a->task, lua_gettop(L) - 1);
    lua_remove(L, -2); /* [task] */

    if (kept_table(L, cache, AC_CANDS, n, 0)) /* [task, cands] */
        p->ncands = 0;
    int cands = lua_gettop(L);
    size_t was = p->ncands;
    double logit = p->reads_history ? target_logit() : 0;
    if (cs->n > p->ncands)
        p->ncands = cs->n; /* every slot written, should this stop half way */
    for (int i = 0; i < n; i++) {
        const fr_policy_cand *c = &cs->view[i];
        double pp = p->reads_history ? p_pass_of(c, a->task->complexity, logit) : 0;
        if (cand_unchanged(p, (size_t)i, c, was, pp))
            continue;
        bool fresh = push_kept_cand(L, p, cache, i, c, pp); /* [.., cands, c] */
        /* A trusted built-in's element i + 1 holds slot i's table already,
         * once written and while the slot is not new. */
        if (!p->trusted || (size_t)i >= was || fresh)
            lua_rawseti(L, cands, (lua_Integer)i + 1); /* [.., cands] */
        else
            lua_pop(L, 1);
    }
    for (size_t i = cs->n; i < was; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    p->ncands = cs->n;

    if (kept_table(L, cache, AC_RUN, 0, 9)) /* [task, cands, run] */
        p->run_seen.ok = false;
    if (p->trusted)
        refill_run(L, a->run, &p->run_seen);
    else
        fill_run(L, a->run);
}

/* Pushes the three arguments of the fr_policy_args `a`. [-0, +3] */
static void push_args(lua_State *L, const fr_policy_args *a)
{
    if (!a->task) {
        for (int i = 0; i < 3; i++)
            fr_lua_push_json(L, a->json[i]); /* [..., v...] */
        return;
    }
    push_task(L, a->task); /* [fn, task] */
    if (a->cands)
        push_cands(L, a->cands, a->task->complexity);
    else
        push_result(L, a->result);
    push_run(L, a->run); /* [fn, task, cands|result, run] */
}

void fr_policy_push_call(lua_State *L, int ref, const fr_policy_args *a)
{
    if (a->keep) {
        int cache = push_arg_cache(L, a->keep); /* [cache, mt] */
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* [cache, mt, fn] */
        push_kept_args(L, a->keep, cache, a);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* [fn] */
        push_args(L, a);                        /* [fn, a, b, c] */
    }
}

void fr_policy_args_free(fr_policy *p)
{
    free(p->ntags);
    free(p->hist_seen);
    free(p->hist_ok);
    free(p->hist_tick);
    free(p->hist_cur);
    free(p->hist_p);
    free(p->hist_p_ok);
    seen_free(p);
}

/* Sets member `k` of `o` to `v` when >= 0 (nil otherwise). */
static void put_opt(json_t *o, const char *k, double v)
{
    if (v >= 0)
        json_object_set_new(o, k, json_real(v));
}

json_t *fr_policy_hist_json(const fr_policy_hist *h)
{
    if (!h)
        h = &no_history;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:f}", "attempts", (json_int_t)h->attempts,
                          "passes", (json_int_t)h->passes, "fails", (json_int_t)h->fails, "errors",
                          (json_int_t)h->errors, "weight", h->weight);
    put_opt(o, "pass_rate", h->pass_rate);
    put_opt(o, "score_mean", h->score_mean);
    put_opt(o, "latency_p50_ms", h->latency_p50_ms);
    put_opt(o, "ttft_p50_ms", h->ttft_p50_ms);
    put_opt(o, "tokens_per_s", h->tokens_per_s);
    put_opt(o, "cost_mean_usd", h->cost_mean_usd);
    put_opt(o, "age_s", h->age_s);
    json_object_set_new(o, "band_lo", json_real(h->band_lo));
    json_object_set_new(o, "band_hi", json_real(h->band_hi));
    if (h->type)
        json_object_set_new(o, "type", json_string(h->type));
    return o;
}
