/* engine/route: one routing decision for one ready task, on the fixture
 * workflow (a free local endpoint of one slot, a priced cloud endpoint of
 * two), with real endpoints, scheduler, budget, a virtual clock and the
 * built-in "cost" policy: privacy, pins, endpoints already tried, the
 * budget, cooldowns, full endpoints, retries, the policy's on_result gate,
 * the reachability check and the decision log. */
#include "engine/route.h"

#include "engine/graph.h"
#include "engine/retry.h"
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

/* A world with budget `b` (taken) and policy `p` (taken; NULL: "cost"). */
static world *world_new(fr_budget *b, fr_policy *p)
{
    world *w = fr_xcalloc(1, sizeof *w);
    fr_error err = {0};
    setenv(ENGINE_KEY_ENV, "sk-unit-route-0123456789", 1);
    unsetenv("FLOWRUN_LUA_DIR");
    w->wf = engine_load();
    assert_true(w->wf->ntasks <= 8 && w->wf->nendpoints == 2);
    w->local = engine_ep(w->wf, "local");
    w->cloud = engine_ep(w->wf, "cloud");
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
    json_t *d = json_array_get(plain.res->decisions, 0);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "error");
    assert_int_equal(json_array_size(json_object_get(d, "candidates")), 1);
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
    assert_int_equal(json_array_size(plain.res->decisions), 0);
    /* A slot frees: the policy is asked, fails, and the default decides. */
    fr_sched_release_slot(w->sched, w->cloud);
    assert_string_equal(dispatched(w, &plain), "cloud");
    assert_int_equal(fr_route_policy_errors(w->rt), 1);
    json_t *dec = json_array_get(plain.res->decisions, 0);
    assert_string_equal(json_string_value(json_object_get(dec, "policy")), "default");
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
    assert_int_equal(json_array_size(plain.res->decisions), 0); /* nobody was asked */
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
    assert_int_equal(json_array_size(plain.res->decisions), 1);
    json_t *d = json_array_get(plain.res->decisions, 0);
    assert_string_equal(json_string_value(json_object_get(d, "policy")), "cost");
    assert_int_equal(json_integer_value(json_object_get(d, "version")), 1);
    assert_string_equal(json_string_value(json_object_get(d, "reason")), "first");
    assert_string_equal(json_string_value(json_object_get(d, "endpoint")), "local");
    assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
    assert_true(json_is_null(json_object_get(d, "outcome")));
    json_t *cands = json_object_get(d, "candidates");
    assert_int_equal(json_array_size(cands), 2);
    json_t *c0 = json_array_get(cands, 0), *c1 = json_array_get(cands, 1);
    assert_string_equal(json_string_value(json_object_get(c0, "name")), "local");
    assert_int_equal(json_integer_value(json_object_get(c0, "free")), 1);
    assert_float_equal(json_number_value(json_object_get(c0, "est_cost")), 0, 0);
    assert_string_equal(json_string_value(json_object_get(c1, "name")), "cloud");
    /* 10 tokens in at $1/M, 2048 out at $2/M. */
    assert_float_equal(json_number_value(json_object_get(c1, "est_cost")), 4106e-6, 1e-9);
    fr_route_set_outcome(plain.res->decisions, "error", "HTTP 500");
    assert_string_equal(json_string_value(json_object_get(d, "outcome")), "error");
    assert_string_equal(json_string_value(json_object_get(d, "error")), "HTTP 500");
    world_free(w);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
