/* engine/route: one routing decision for one ready task, on the fixture
 * workflow (a free local endpoint of one slot, a priced cloud endpoint of
 * two), with real endpoints, scheduler, budget, a virtual clock and the
 * built-in "cost" policy: privacy, pins, endpoints already tried, the
 * budget, cooldowns, full endpoints, retries, the policy's on_result gate,
 * the reachability check and the decision log. */
#include "engine/route.h"

#include "engine/graph.h"
#include "engine/retry.h"
#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/redact.h"
#include "support/engine_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Everything a router reads, made afresh for each test. */
typedef struct world {
    fr_workflow *wf;
    fr_graph *g;
    fr_endpoints *eps;
    fr_sched *sched;
    fr_budget *budget;
    fr_clock *clock;
    fr_policy *policy;
    fr_router *rt;
    fr_results res;
    uint64_t start_ns;
    size_t local, cloud;
    unsigned char tried[8][2]; /* per task, per endpoint */
} world;

static fr_policy *policy_of(void *ud)
{
    return ((world *)ud)->policy;
}

/* A world of the workflow at `path` (two endpoints, the first local) with
 * budget `b` (taken) and policy `p` (taken; NULL: "cost"). */
static world *world_new_of(const char *file, fr_budget *b, fr_policy *p)
{
    world *w = fr_xcalloc(1, sizeof *w);
    fr_error err = {0};
    setenv(ENGINE_KEY_ENV, "sk-unit-route-0123456789", 1);
    unsetenv("FLOWRUN_LUA_DIR");
    w->wf = engine_load_path(file);
    assert_true(w->wf->ntasks <= 8 && w->wf->nendpoints == 2);
    w->local = w->wf->endpoints[0].tier == FR_TIER_LOCAL ? 0 : 1;
    w->cloud = 1 - w->local;
    assert_int_equal(fr_graph_from_workflow(w->wf, &w->g, &err), FR_OK);
    w->eps = fr_endpoints_new(w->wf, false);
    int prio[8], slots[2];
    for (size_t t = 0; t < w->wf->ntasks; t++)
        prio[t] = w->wf->tasks[t].priority;
    for (size_t e = 0; e < 2; e++)
        slots[e] = w->wf->endpoints[e].max_parallel;
    w->sched = fr_sched_new(w->g, prio, 2, slots);
    w->budget = b ? b : fr_budget_new(false, 0, false, 0);
    w->clock = fr_clock_new(NULL);
    if (!p) {
        char *path = NULL;
        assert_int_equal(fr_policy_resolve("cost", NULL, &path, &err), FR_OK);
        assert_int_equal(fr_policy_load(path, NULL, 1, &p, &err), FR_OK);
        free(path);
    }
    w->policy = p;
    fr_results_init(&w->res, w->wf, w->g);
    fr_route_env env = {.wf = w->wf,
                        .eps = w->eps,
                        .sched = w->sched,
                        .budget = w->budget,
                        .clock = w->clock,
                        .start_ns = &w->start_ns,
                        .policy = policy_of,
                        .policy_ud = w};
    w->rt = fr_router_new(&env);
    return w;
}

/* A world of the engine fixture with budget `b` and policy `p` (both taken). */
static world *world_new(fr_budget *b, fr_policy *p)
{
    return world_new_of(ENGINE_FIXTURE, b, p);
}

static void world_free(world *w)
{
    fr_router_free(w->rt);
    fr_results_close(&w->res);
    fr_policy_free(w->policy);
    fr_clock_free(w->clock);
    fr_budget_free(w->budget);
    fr_sched_free(w->sched);
    fr_endpoints_free(w->eps);
    fr_graph_free(w->g);
    fr_workflow_free(w->wf);
    free(w);
    fr_redact_clear();
}

/* Task `name`'s routing record on its first routing, small and without a
 * deadline. */
static fr_route_task task(world *w, const char *name)
{
    size_t t = engine_task(w->wf, name);
    return (fr_route_task){.idx = t,
                           .res = &w->res.tasks[t],
                           .tried = w->tried[t],
                           .retry_ep = -1,
                           .reason = "first",
                           .est_input = 10,
                           .worst_input = 40};
}

/* Routes `t` and expects a dispatch; returns the endpoint's name. */
static const char *dispatched(world *w, fr_route_task *t)
{
    fr_route_decision d = fr_route(w->rt, t);
    if (d.kind == FR_ROUTE_END)
        print_error("ended: %s\n", d.reason);
    assert_int_equal(d.kind, FR_ROUTE_DISPATCH);
    return w->wf->endpoints[d.endpoint].name;
}

/* Routes `t` and expects an end in `state`; returns the reason (owned). */
static char *ended(world *w, fr_route_task *t, fr_task_state state)
{
    fr_route_decision d = fr_route(w->rt, t);
    assert_int_equal(d.kind, FR_ROUTE_END);
    assert_int_equal(d.state, state);
    assert_non_null(d.reason);
    return d.reason;
}

/* Makes endpoint `e` unreachable: four connection failures in a row. */
static void make_unreachable(world *w, size_t e)
{
    double now = 0;
    for (int i = 0; i < 4; i++) {
        fr_ep_failed(w->eps, e, FR_ECONNECT, 0, -1, "Connection refused", now);
        now = fr_ep_cooldown_until(w->eps, e);
    }
    assert_false(fr_ep_usable(w->eps, e));
}

static void test_privacy_keeps_off_the_cloud(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    /* As hard as "hard", which goes to the cloud: private, it stays local. */
    fr_route_task secret = task(w, "secret"), hard = task(w, "hard");
    assert_string_equal(dispatched(w, &hard), "cloud"); /* local is too weak for it */
    assert_false(fr_route_allowed(w->rt, &secret, w->cloud));
    assert_string_equal(dispatched(w, &secret), "local");
    /* With the local endpoint gone, it fails rather than leave. */
    make_unreachable(w, w->local);
    char *why = ended(w, &secret, FR_TASK_FAILED);
    assert_non_null(strstr(why, "local: it is unreachable"));
    assert_null(strstr(why, "cloud"));
    free(why);
    world_free(w);
}

static void test_pin(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    fr_route_task pinned = task(w, "pinned");
    assert_false(fr_route_allowed(w->rt, &pinned, w->local));
    assert_string_equal(dispatched(w, &pinned), "cloud"); /* though local is cheaper */
    pinned.tried[w->cloud] = 1;
    char *why = ended(w, &pinned, FR_TASK_FAILED);
    assert_string_equal(why, "no endpoint can take this task: cloud: it already failed this task");
    free(why);
    world_free(w);
}

static void test_tried_excluded(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    fr_route_task plain = task(w, "plain");
    plain.tried[w->local] = 1;
    plain.reason = "error";
    plain.last_error = "HTTP 500: boom";
    assert_false(fr_route_allowed(w->rt, &plain, w->local));
    assert_string_equal(dispatched(w, &plain), "cloud");
    const fr_decision *d = fr_declog_get(plain.res->decisions, 0);
    assert_string_equal(d->reason, "error");
    assert_true(d->has_candidates);
    assert_int_equal(d->ncands, 1);
    /* Both tried: the last error is the reason. */
    plain.tried[w->cloud] = 1;
    char *why = ended(w, &plain, FR_TASK_FAILED);
    assert_string_equal(why, "every usable endpoint failed; last error: HTTP 500: boom");
    free(why);
    world_free(w);
}

static void test_budget_never(void **state)
{
    (void)state;
    world *w = world_new(fr_budget_new(true, 0, false, 0.8), NULL);
    /* A cap of 0 lets free work through ... */
    fr_route_task plain = task(w, "plain"), pinned = task(w, "pinned");
    assert_string_equal(dispatched(w, &plain), "local");
    /* ... and nothing priced: the task ends, naming the cap. */
    char *why = ended(w, &pinned, FR_TASK_BUDGET);
    assert_non_null(strstr(why, "budget: "));
    assert_non_null(strstr(why, "'cloud'"));
    assert_non_null(strstr(why, "run cap"));
    free(why);
    world_free(w);
}

static void test_budget_wait(void **state)
{
    (void)state;
    world *w = world_new(fr_budget_new(true, 0.01, false, 0.8), NULL);
    fr_budget_reserve(w->budget, 0.009); /* requests in flight may settle lower */
    fr_route_task pinned = task(w, "pinned");
    fr_route_decision d = fr_route(w->rt, &pinned);
    assert_int_equal(d.kind, FR_ROUTE_WAIT);
    assert_float_equal(d.wake_at_ms, 0, 0);
    fr_budget_settle(w->budget, 0.009, 0);
    assert_string_equal(dispatched(w, &pinned), "cloud");
    world_free(w);
}

static void test_cooling_waits(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    fr_clock_set_ms(w->clock, 1000);
    fr_ep_failed(w->eps, w->cloud, FR_EHTTP, 429, 5, "slow down", 1000);
    fr_route_task pinned = task(w, "pinned");
    fr_route_decision d = fr_route(w->rt, &pinned);
    assert_int_equal(d.kind, FR_ROUTE_WAIT);
    assert_float_equal(d.wake_at_ms, 6000 + FR_RETRY_AFTER_MARGIN_MS, 1e-6);
    /* A cooldown past the task's timeout ends it now, saying why. */
    pinned.deadline_ms = 4000;
    pinned.last_error = "HTTP 429: slow down";
    char *why = ended(w, &pinned, FR_TASK_FAILED);
    assert_non_null(strstr(why, "before its timeout"));
    assert_non_null(strstr(why, "cloud cools down for 5 s more"));
    assert_non_null(strstr(why, "last error: HTTP 429: slow down"));
    free(why);
    /* Once it cooled down, it dispatches. */
    pinned.deadline_ms = 0;
    fr_clock_set_ms(w->clock, 7000);
    assert_string_equal(dispatched(w, &pinned), "cloud");
    world_free(w);
}

/* Returns the policy (owned) of Lua source `code` (borrowed). */
static fr_policy *policy_from(const char *code)
{
    fr_policy *p = NULL;
    fr_error err = {0};
    assert_int_equal(fr_policy_load_string("test.lua", code, strlen(code), NULL, 1, &p, &err),
                     FR_OK);
    return p;
}

/* A policy that changes everything it is given (every field of every
 * table, nested ones too, plus keys of its own) sees the same fresh
 * arguments on its next call: nothing of one decision leaks into the next.
 * The first call keeps a print of its arguments, the second compares its
 * own with it (only the run's elapsed time may differ) and fails on a
 * difference, which would leave the decision to the default. */
static const char mutating_policy[] =
    "local first\n"
    "local function print_of(v)\n"
    "  if type(v) ~= 'table' then return type(v) .. ':' .. tostring(v) end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do if k ~= 'elapsed' then keys[#keys + 1] = k end end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = tostring(k) .. '=' .. print_of(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}' .. tostring(getmetatable(v))\n"
    "end\n"
    "local function spoil(t)\n"
    "  for k, v in pairs(t) do\n"
    "    if type(v) == 'table' then spoil(v) end\n"
    "    t[k] = 'spoiled'\n"
    "  end\n"
    "  t.extra = {1, 2, 3}\n"
    "  t[#t + 1] = 'more'\n"
    "  setmetatable(t, {__index = function() return 'ghost' end})\n"
    "end\n"
    "return {route = function(task, cands, run)\n"
    "  local now = print_of({task, cands, run})\n"
    "  if first and now ~= first then error('arguments leaked: ' .. now) end\n"
    "  first = now\n"
    "  local name = cands[1].name\n"
    "  spoil(task); spoil(cands); spoil(run)\n"
    "  return name\n"
    "end}\n";

static void test_policy_mutation_does_not_leak(void **state)
{
    (void)state;
    world *w = world_new(NULL, policy_from(mutating_policy));
    fr_route_task plain = task(w, "plain");
    const char *first = dispatched(w, &plain);
    for (int i = 0; i < 3; i++) {
        plain.res->attempts = 0; /* the same question again */
        assert_string_equal(dispatched(w, &plain), first);
    }
    assert_int_equal(fr_route_policy_errors(w->rt), 0);
    assert_int_equal(fr_declog_count(plain.res->decisions), 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(fr_declog_get(plain.res->decisions, i)->policy, "test");
    world_free(w);
}

/* A policy that keeps a candidate table from one call to the next keeps a
 * copy: the next call gets a new table with the new values, and the kept
 * one still shows what its own call saw (docs/policies.md: the arguments are
 * copies). A failed check is an error, which the default would decide. */
static const char keeping_policy[] =
    "local kept\n"
    "local function on(cands, tier)\n"
    "  for i = 1, #cands do if cands[i].tier == tier then return cands[i] end end\n"
    "end\n"
    "return {route = function(task, cands, run)\n"
    "  local c = on(cands, 'local')\n"
    "  if kept then\n"
    "    if kept == c then error('the same table twice') end\n"
    "    if kept.free ~= 1 then error('the kept table changed: ' .. tostring(kept.free)) end\n"
    "    if c.free ~= 0 then error('the new table is stale: ' .. tostring(c.free)) end\n"
    "  end\n"
    "  kept = c\n"
    "  return on(cands, 'cloud')\n"
    "end}\n";

static void test_policy_kept_table_is_a_copy(void **state)
{
    (void)state;
    world *w = world_new(NULL, policy_from(keeping_policy));
    fr_route_task plain = task(w, "plain");
    assert_string_equal(dispatched(w, &plain), "cloud");
    assert_true(fr_sched_take_slot(w->sched, w->local)); /* the local one is full now */
    plain.res->attempts = 0;
    assert_string_equal(dispatched(w, &plain), "cloud");
    assert_int_equal(fr_route_policy_errors(w->rt), 0);
    assert_string_equal(fr_declog_get(plain.res->decisions, 1)->policy, "test");
    world_free(w);
}

static void test_privacy_against_the_policy(void **state)
{
    (void)state;
    /* A policy that always names the cloud cannot send private work there. */
    world *w = world_new(NULL, policy_from("return { route = function() return 'cloud' end }"));
    fr_route_task secret = task(w, "secret"), hard = task(w, "hard");
    assert_string_equal(dispatched(w, &secret), "local");
    assert_int_equal(fr_route_policy_errors(w->rt), 1); /* the default decided */
    assert_string_equal(dispatched(w, &hard), "cloud");
    world_free(w);
}

static void test_all_full_waits_without_asking(void **state)
{
    (void)state;
    /* A policy that fails whenever it is asked: each ask is counted. */
    world *w = world_new(NULL, policy_from("return { route = function() error('asked') end }"));
    assert_true(fr_sched_take_slot(w->sched, w->local));
    assert_true(fr_sched_take_slot(w->sched, w->cloud));
    assert_true(fr_sched_take_slot(w->sched, w->cloud));
    fr_route_task plain = task(w, "plain");
    fr_route_decision d = fr_route(w->rt, &plain);
    assert_int_equal(d.kind, FR_ROUTE_WAIT);
    assert_float_equal(d.wake_at_ms, 0, 0); /* a released slot wakes it */
    assert_int_equal(fr_route_policy_errors(w->rt), 0);
    assert_int_equal(fr_declog_count(plain.res->decisions), 0);
    /* A slot frees: the policy is asked, fails, and the default decides. */
    fr_sched_release_slot(w->sched, w->cloud);
    assert_string_equal(dispatched(w, &plain), "cloud");
    assert_int_equal(fr_route_policy_errors(w->rt), 1);
    assert_string_equal(fr_declog_get(plain.res->decisions, 0)->policy, "default");
    world_free(w);
}

static void test_retry_goes_back(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    /* The policy would choose local; the retry goes back to the cloud. */
    fr_route_task plain = task(w, "plain");
    plain.retry_ep = (long)w->cloud;
    plain.reason = "error";
    assert_string_equal(dispatched(w, &plain), "cloud");
    assert_int_equal(fr_declog_count(plain.res->decisions), 0); /* nobody was asked */
    /* While the cloud cools down, local takes it now instead. */
    fr_ep_failed(w->eps, w->cloud, FR_EHTTP, 503, 30, "busy", 0);
    assert_string_equal(dispatched(w, &plain), "local");
    assert_int_equal(plain.retry_ep, -1);
    assert_true(plain.tried[w->cloud]);
    /* A pinned retry has nowhere else to go: it waits for the cooldown. */
    fr_route_task pinned = task(w, "pinned");
    pinned.retry_ep = (long)w->cloud;
    fr_route_decision d = fr_route(w->rt, &pinned);
    assert_int_equal(d.kind, FR_ROUTE_WAIT);
    assert_float_equal(d.wake_at_ms, fr_ep_cooldown_until(w->eps, w->cloud), 0);
    world_free(w);
}

static void test_on_result_gate(void **state)
{
    (void)state;
    world *w = world_new(NULL, policy_from("return { route = function(t, c) return c[1] end,\n"
                                           "  on_result = function(t, r)\n"
                                           "    if r.text == 'again' then return 'retry' end\n"
                                           "    if r.text == 'more' then return 'escalate' end\n"
                                           "    if r.text == 'boom' then error('broken') end\n"
                                           "  end }"));
    fr_route_task plain = task(w, "plain");
    const struct {
        const char *text;
        int rc;
    } cases[] = {{"fine", FR_OK}, {"again", FR_ERETRY}, {"more", FR_EQUALITY}, {"boom", FR_OK}};
    for (size_t i = 0; i < 4; i++) {
        fr_reply r = engine_reply(cases[i].text, FR_FINISH_STOP, NULL);
        fr_error err = {0};
        assert_int_equal(fr_route_on_result(w->rt, &plain, w->local, &r, 10, 0, &err), cases[i].rc);
        if (cases[i].rc != FR_OK)
            assert_non_null(strstr(err.msg, "on_result of policy test asked"));
        fr_reply_close(&r);
    }
    assert_int_equal(fr_route_policy_errors(w->rt), 1); /* a failing on_result accepts */
    world_free(w);
}

static void test_check_reachable(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    fr_error err = {0};
    assert_int_equal(fr_route_check_reachable(w->wf, w->eps, &err), FR_OK);
    world_free(w);

    unsetenv(ENGINE_KEY_ENV);
    fr_workflow *wf = engine_load();
    fr_endpoints *eps = fr_endpoints_new(wf, false);
    assert_int_equal(fr_route_check_reachable(wf, eps, &err), FR_ECONFIG);
    assert_non_null(strstr(err.msg, "task 'pinned' has no usable endpoint"));
    assert_non_null(strstr(err.msg, ENGINE_KEY_ENV " is not set"));
    assert_non_null(strstr(err.source, "flow.lua"));
    assert_true(err.line > 0);
    fr_endpoints_free(eps);
    fr_workflow_free(wf);
}

static void test_decision_log(void **state)
{
    (void)state;
    world *w = world_new(NULL, NULL);
    fr_route_task plain = task(w, "plain");
    assert_string_equal(dispatched(w, &plain), "local");
    assert_int_equal(fr_declog_count(plain.res->decisions), 1);
    const fr_decision *d = fr_declog_get(plain.res->decisions, 0);
    assert_string_equal(d->policy, "cost");
    assert_int_equal(d->version, 1);
    assert_string_equal(d->reason, "first");
    assert_int_equal(d->endpoint, w->local);
    assert_int_equal(d->attempt, 1);
    assert_null(d->outcome);
    assert_null(d->error);
    assert_true(d->has_candidates);
    assert_int_equal(d->ncands, 2);
    const fr_decision_cand *c0 = fr_declog_cands(plain.res->decisions) + d->first_cand,
                           *c1 = c0 + 1;
    assert_int_equal(c0->endpoint, w->local);
    assert_int_equal(c0->free, 1);
    assert_float_equal(c0->est_cost, 0, 0);
    assert_int_equal(c1->endpoint, w->cloud);
    /* 10 tokens in at $1/M, 2048 out at $2/M. */
    assert_float_equal(c1->est_cost, 4106e-6, 1e-9);
    fr_route_set_outcome(plain.res->decisions, "error", "HTTP 500");
    assert_string_equal(d->outcome, "error");
    assert_string_equal(d->error, "HTTP 500");
    world_free(w);
}

/* A policy that prints everything it receives, as one line per call: every
 * key (sorted: pairs() follows Lua's per-state hash seed), every number with
 * its math.type and 17 digits, every string quoted, and whether a table has
 * a metatable. */
static const char view_policy[] =
    "local function dump(v, out)\n"
    "  local t = type(v)\n"
    "  if t == 'table' then\n"
    "    out[#out + 1] = getmetatable(v) and '<mt>{' or '{'\n"
    "    local keys = {}\n"
    "    for k in pairs(v) do keys[#keys + 1] = k end\n"
    "    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "    for _, k in ipairs(keys) do\n"
    "      out[#out + 1] = math.type(k) == 'integer' and '#' .. k .. '=' or k .. '='\n"
    "      dump(v[k], out)\n"
    "      out[#out + 1] = ','\n"
    "    end\n"
    "    out[#out + 1] = '}'\n"
    "  elseif t == 'number' then\n"
    "    out[#out + 1] = math.type(v) .. ':' .. string.format('%.17g', v)\n"
    "  elseif t == 'string' then\n"
    "    out[#out + 1] = string.format('%q', v)\n"
    "  else\n"
    "    out[#out + 1] = tostring(v)\n"
    "  end\n"
    "end\n"
    "local function show(what, ...)\n"
    "  local out = { 'VIEW ', what, ' n=', tostring(select('#', ...)), ' ' }\n"
    "  for i = 1, select('#', ...) do dump((select(i, ...)), out); out[#out + 1] = ' ' end\n"
    "  print(table.concat(out))\n"
    "end\n"
    "return {\n"
    "  route = function(...) show('route', ...); return (select(2, ...))[1] end,\n"
    "  on_result = function(...) show('on_result', ...) end,\n"
    "}\n";

/* What the view policy printed with the engine of before (JSON values
 * copied into Lua), for test_policy_view. */
static const char *const view_expected[] = {
    "VIEW route n=3 {agent=\"coder\",attempt=integer:1,complexity=float:0.25,draw=float:0.463"
    "05822031190857,est_input_tokens=integer:1234,max_tokens=integer:300,name=\"build\",prior"
    "ity=integer:7,private=false,reason=\"first\",tools=integer:2,tried={},type=\"code\",} {#"
    "1={context=integer:8192,est_cost=float:0,free=integer:2,history={attempts=integer:0,band"
    "_hi=float:0.40000000000000002,band_lo=float:0.20000000000000001,errors=integer:0,fails=i"
    "nteger:0,p_pass=float:0.99449853703830371,p_pass_n=integer:0,passes=integer:0,type=\"cod"
    "e\",weight=float:0,},history_all={attempts=integer:0,band_hi=float:1,band_lo=float:0,err"
    "ors=integer:0,fails=integer:0,passes=integer:0,weight=float:0,},in_flight=integer:1,max_"
    "parallel=integer:3,model=\"qwen\",name=\"gpu\",price_in=float:0,price_out=float:0,protoc"
    "ol=\"ollama\",quality=float:0.55000000000000004,queued=integer:0,tags={#1=\"code\",#2=\""
    "review\",},tier=\"local\",},#2={context=integer:200000,est_cost=float:0.0082019999999999"
    "992,free=integer:2,history={attempts=integer:0,band_hi=float:0.40000000000000002,band_lo"
    "=float:0.20000000000000001,errors=integer:0,fails=integer:0,p_pass=float:0.9998329791014"
    "2077,p_pass_n=integer:0,passes=integer:0,type=\"code\",weight=float:0,},history_all={att"
    "empts=integer:0,band_hi=float:1,band_lo=float:0,errors=integer:0,fails=integer:0,passes="
    "integer:0,weight=float:0,},in_flight=integer:0,max_parallel=integer:2,model=\"claude\",n"
    "ame=\"api\",price_in=float:3,price_out=float:15,protocol=\"anthropic\",quality=float:0.9"
    "0000000000000002,queued=integer:0,tags={},tier=\"cloud\",},} {budget=float:5,done=intege"
    "r:0,elapsed=float:0,ready=integer:5,remaining=float:5,reserved=float:0,seed=integer:0,sp"
    "ent=float:0,total=integer:2,} \n",
    "VIEW route n=3 {agent=\"coder\",attempt=integer:2,complexity=float:0.25,draw=float:0.015"
    "91507279971871,est_input_tokens=integer:1234,max_tokens=integer:300,name=\"build\",prior"
    "ity=integer:7,private=false,reason=\"quality\",tools=integer:2,tried={#1=\"api\",},type="
    "\"code\",} {#1={context=integer:8192,est_cost=float:0,free=integer:2,history={attempts=i"
    "nteger:0,band_hi=float:0.40000000000000002,band_lo=float:0.20000000000000001,errors=inte"
    "ger:0,fails=integer:0,p_pass=float:0.99449853703830371,p_pass_n=integer:0,passes=integer"
    ":0,type=\"code\",weight=float:0,},history_all={attempts=integer:0,band_hi=float:1,band_l"
    "o=float:0,errors=integer:0,fails=integer:0,passes=integer:0,weight=float:0,},in_flight=i"
    "nteger:1,latency_p50=float:100,max_parallel=integer:3,model=\"qwen\",name=\"gpu\",price_"
    "in=float:0,price_out=float:0,protocol=\"ollama\",quality=float:0.55000000000000004,queue"
    "d=integer:0,tags={#1=\"code\",#2=\"review\",},tier=\"local\",},} {budget=float:5,done=in"
    "teger:0,elapsed=float:0,ready=integer:5,remaining=float:5,reserved=float:0,seed=integer:"
    "0,spent=float:0,total=integer:2,} \n",
    "VIEW on_result n=3 {agent=\"coder\",attempt=integer:2,complexity=float:0.25,draw=float:0"
    ".01591507279971871,est_input_tokens=integer:1234,max_tokens=integer:300,name=\"build\",p"
    "riority=integer:7,private=false,reason=\"quality\",tools=integer:2,tried={#1=\"api\",},t"
    "ype=\"code\",} {attempt=integer:1,cost_usd=float:0.0123,endpoint=\"gpu\",json={k={#1=int"
    "eger:2,},n=float:1.5,},latency_ms=float:12.5,text=\"{\\\"n\\\": 1.5}\",tier=\"local\",to"
    "kens={input=integer:40,output=integer:7,},} {budget=float:5,done=integer:0,elapsed=float"
    ":0,ready=integer:4,remaining=float:5,reserved=float:0,seed=integer:0,spent=float:0,total"
    "=integer:2,} \n",
    "VIEW route n=3 {agent=\"coder\",attempt=integer:1,complexity=float:0.5,draw=float:0.3361"
    "5797795563729,est_input_tokens=integer:10,max_tokens=integer:2048,name=\"after\",priorit"
    "y=integer:5,private=false,reason=\"first\",tools=integer:0,tried={},} {#1={context=integ"
    "er:8192,est_cost=float:0,free=integer:3,history={attempts=integer:0,band_hi=float:0.5999"
    "9999999999998,band_lo=float:0.40000000000000002,errors=integer:0,fails=integer:0,p_pass="
    "float:0.93686267382081334,p_pass_n=integer:0,passes=integer:0,type=\"-\",weight=float:0,"
    "},history_all={attempts=integer:0,band_hi=float:1,band_lo=float:0,errors=integer:0,fails"
    "=integer:0,passes=integer:0,weight=float:0,},in_flight=integer:0,max_parallel=integer:3,"
    "model=\"qwen\",name=\"gpu\",price_in=float:0,price_out=float:0,protocol=\"ollama\",quali"
    "ty=float:0.55000000000000004,queued=integer:0,tags={#1=\"code\",#2=\"review\",},tier=\"l"
    "ocal\",},#2={context=integer:200000,est_cost=float:0.03075,free=integer:2,history={attem"
    "pts=integer:0,band_hi=float:0.59999999999999998,band_lo=float:0.40000000000000002,errors"
    "=integer:0,fails=integer:0,p_pass=float:0.99796906211513003,p_pass_n=integer:0,passes=in"
    "teger:0,type=\"-\",weight=float:0,},history_all={attempts=integer:0,band_hi=float:1,band"
    "_lo=float:0,errors=integer:0,fails=integer:0,passes=integer:0,weight=float:0,},in_flight"
    "=integer:0,max_parallel=integer:2,model=\"claude\",name=\"api\",price_in=float:3,price_o"
    "ut=float:15,protocol=\"anthropic\",quality=float:0.90000000000000002,queued=integer:0,ta"
    "gs={},tier=\"cloud\",},} {done=integer:0,elapsed=float:0,ready=integer:2,reserved=float:"
    "0,seed=integer:0,spent=float:0,total=integer:2,} \n",
    NULL,
};

/* What the view policy printed, from its first "VIEW " on (owned). */
static char *view_lines(char *log)
{
    char *v = strstr(log, "VIEW ");
    assert_non_null(v);
    fr_buf b;
    fr_buf_init(&b, 0);
    while (v) {
        char *end = strchr(v, '\n');
        fr_buf_printf(&b, "%.*s\n", (int)(end ? end - v : (long)strlen(v)), v);
        v = end ? strstr(end, "VIEW ") : NULL;
    }
    return fr_buf_take(&b);
}

/* What a policy receives, field by field and type by type (docs/policies.md
 * lists them): two decisions and an on_result, with a budget cap, a slot in
 * use, a latency median, an endpoint tried, tools and a parsed reply. The
 * expected text was printed by the engine that copied JSON values into Lua;
 * a faster way to build the tables must give the policy exactly this. */
static void test_policy_view(void **state)
{
    (void)state;
    char *log = NULL;
    size_t loglen = 0;
    FILE *mem = open_memstream(&log, &loglen);
    fr_log_set_stream(mem);
    fr_log_level old = fr_log_get_level();
    fr_log_set_level(FR_LOG_INFO);
    world *w = world_new_of("tests/unit/fixtures/engine/view.lua",
                            fr_budget_new(true, 5, false, 0.8), policy_from(view_policy));
    fr_route_task build = task(w, "build");
    build.est_input = 1234;
    build.ntools = 2;
    assert_true(fr_sched_take_slot(w->sched, w->local));
    fr_route_pass_waiting(w->rt, 3);
    assert_string_equal(dispatched(w, &build), "gpu");
    const double lat[] = {120.5, 80, 100, 95.25};
    for (size_t i = 0; i < 4; i++)
        fr_ep_succeeded(w->eps, w->local, lat[i]);
    build.res->attempts = 1;
    build.tried[w->cloud] = 1;
    build.reason = "quality";
    assert_string_equal(dispatched(w, &build), "gpu");
    fr_reply r =
        engine_reply("{\"n\": 1.5}", FR_FINISH_STOP, json_pack("{s:f, s:[i]}", "n", 1.5, "k", 2));
    r.usage.input = 40;
    r.usage.output = 7;
    fr_error err = {0};
    assert_int_equal(fr_route_on_result(w->rt, &build, w->local, &r, 12.5, 0.0123, &err), FR_OK);
    fr_reply_close(&r);
    assert_int_equal(fr_route_policy_errors(w->rt), 0);
    world_free(w);
    /* Without a budget cap: budget and remaining are nil. */
    w = world_new_of("tests/unit/fixtures/engine/view.lua", NULL, policy_from(view_policy));
    fr_route_task after = task(w, "after");
    assert_string_equal(dispatched(w, &after), "gpu");
    world_free(w);
    fr_log_set_stream(NULL);
    fr_log_set_level(old);
    fclose(mem);
    char *got = view_lines(log);
    fr_buf want; /* one literal per line: each within C's 4,095 bytes */
    fr_buf_init(&want, 0);
    for (const char *const *l = view_expected; *l; l++)
        fr_buf_puts(&want, *l);
    assert_string_equal(got, fr_buf_str(&want));
    fr_buf_close(&want);
    free(got);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_privacy_keeps_off_the_cloud),
        cmocka_unit_test(test_privacy_against_the_policy),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_tried_excluded),
        cmocka_unit_test(test_budget_never),
        cmocka_unit_test(test_budget_wait),
        cmocka_unit_test(test_cooling_waits),
        cmocka_unit_test(test_all_full_waits_without_asking),
        cmocka_unit_test(test_retry_goes_back),
        cmocka_unit_test(test_on_result_gate),
        cmocka_unit_test(test_check_reachable),
        cmocka_unit_test(test_decision_log),
        cmocka_unit_test(test_policy_view),
        cmocka_unit_test(test_policy_mutation_does_not_leak),
        cmocka_unit_test(test_policy_kept_table_is_a_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
