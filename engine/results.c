#include "engine/results.h"

#include "engine/util/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void fr_results_init(fr_results *r, const fr_workflow *wf, const fr_graph *g)
{
    memset(r, 0, sizeof *r);
    r->wf = wf;
    r->g = g;
    r->baseline = -1;
    size_t cap = wf->tasks_cap > wf->ntasks ? wf->tasks_cap : wf->ntasks;
    r->tasks = fr_xcalloc(cap ? cap : 1, sizeof *r->tasks);
    r->endpoints = fr_xcalloc(wf->nendpoints ? wf->nendpoints : 1, sizeof *r->endpoints);
    for (size_t i = 0; i < wf->ntasks; i++)
        fr_results_add(r, i);
}

void fr_results_add(fr_results *r, size_t idx)
{
    fr_task_result *t = &r->tasks[idx];
    memset(t, 0, sizeof *t);
    t->endpoint = t->moved_from = -1;
    t->check_score = -1;
    t->decisions = fr_declog_new();
    t->tool_calls = json_array();
    t->attempt_log = json_array();
}

/* The latest attempt's entry, NULL before any. */
static json_t *latest(const fr_task_result *t)
{
    size_t n = json_array_size(t->attempt_log);
    return n ? json_array_get(t->attempt_log, n - 1) : NULL;
}

/* Sets `key` of `obj` to `v` (taken); false when `v` is NULL (a value
 * jansson refused), as json_pack fails then. */
static bool put(json_t *obj, const char *key, json_t *v)
{
    return v && json_object_set_new(obj, key, v) == 0;
}

/* {"input": 0, "output": 0, "cached": 0} (owned) for `u` (borrowed). */
static json_t *tokens(const fr_usage *u)
{
    json_t *o = json_object();
    put(o, "input", json_integer((json_int_t)u->input));
    put(o, "output", json_integer((json_int_t)u->output));
    put(o, "cached", json_integer((json_int_t)u->cached));
    return o;
}

/* A new turn {"start_ms": start_ms, "end_ms": null} (owned), or NULL when
 * jansson takes no such real (json_pack("{s:f, s:n}") built it, without
 * its format parsing). */
static json_t *new_turn(double start_ms)
{
    json_t *turn = json_object();
    if (!put(turn, "start_ms", json_real(start_ms)) || !put(turn, "end_ms", json_null())) {
        json_decref(turn);
        return NULL;
    }
    return turn;
}

void fr_results_attempt_begin(fr_task_result *t, int attempt, const char *endpoint, double start_ms)
{
    t->log_cost_base = t->cost;
    static const fr_usage none = {0};
    /* The tree json_pack("{s:i, s:s, s:f, s:n, s:n, s:n, s:{...}, s:f, s:[o]}") built, member
     * by member: nothing is added when jansson refuses a value. */
    json_t *turn = new_turn(start_ms);
    json_t *turns = json_array();
    json_t *a = json_object();
    bool ok = turn && json_array_append_new(turns, turn) == 0 &&
              put(a, "attempt", json_integer(attempt)) &&
              put(a, "endpoint", json_string(endpoint)) &&
              put(a, "start_ms", json_real(start_ms)) && put(a, "end_ms", json_null()) &&
              put(a, "outcome", json_null()) && put(a, "error", json_null()) &&
              put(a, "tokens", tokens(&none)) && put(a, "cost_usd", json_real(0.0)) &&
              put(a, "turns", json_incref(turns));
    json_decref(turns);
    if (ok)
        json_array_append_new(t->attempt_log, a);
    else
        json_decref(a);
}

/* The latest attempt's open turn, NULL for none. */
static json_t *open_turn(const fr_task_result *t)
{
    json_t *turns = json_object_get(latest(t), "turns");
    json_t *last = json_array_get(turns, json_array_size(turns) - 1);
    return json_is_null(json_object_get(last, "end_ms")) ? last : NULL;
}

void fr_results_turn_end(fr_task_result *t, double end_ms)
{
    json_t *turn = open_turn(t);
    if (turn)
        json_object_set_new(turn, "end_ms", json_real(end_ms));
}

void fr_results_turn_begin(fr_task_result *t, double start_ms)
{
    json_t *turns = json_object_get(latest(t), "turns");
    if (turns && !open_turn(t))
        json_array_append_new(turns, new_turn(start_ms));
}

void fr_results_attempt_end(fr_task_result *t, double end_ms, const char *outcome,
                            const char *error, const fr_usage *u)
{
    json_t *a = latest(t);
    if (!a || !json_is_null(json_object_get(a, "end_ms")))
        return;
    fr_results_turn_end(t, end_ms);
    json_object_set_new(a, "end_ms", json_real(end_ms));
    json_object_set_new(a, "outcome", json_string(outcome));
    json_object_set_new(a, "error", error ? json_string(error) : json_null());
    static const fr_usage none = {0};
    if (!u)
        u = &none;
    json_object_set_new(a, "tokens", tokens(u));
    json_object_set_new(a, "cost_usd", json_real(t->cost - t->log_cost_base));
}

void fr_results_attempt_drop(fr_task_result *t)
{
    size_t n = json_array_size(t->attempt_log);
    if (n)
        json_array_remove(t->attempt_log, n - 1);
}

void fr_results_endpoints(fr_results *r, const fr_endpoints *eps, const fr_sched *sched)
{
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        r->endpoints[e] = (fr_endpoint_result){
            .stats = fr_ep_stats_of(eps, e),
            .model = fr_ep_model(eps, e),
            .peak_in_flight = fr_sched_peak(sched, e),
            .max_parallel = fr_sched_capacity(sched, e),
        };
}

void fr_results_skip(fr_results *r, size_t task, size_t cause, fr_task_state cause_state,
                     uint64_t now_ns)
{
    fr_task_result *res = &r->tasks[task];
    const fr_task_result *cr = &r->tasks[cause];
    const char *name = r->wf->tasks[cause].name;
    free(res->reason);
    if (cause_state == FR_TASK_OK) {
        res->reason = fr_xstrdup("trigger any_failed: every dependency succeeded");
        res->decided = true;
    } else if (cr->decided) {
        res->reason = fr_xasprintf("dependency '%s' was skipped", name);
        res->decided = true;
    } else if (cr->approval.state == FR_APPROVAL_REJECTED && cr->reason) {
        /* What stopped the dependents is the person's note. */
        res->reason = fr_xasprintf("dependency '%s' was %s", name, cr->reason);
    } else {
        res->reason = fr_xasprintf("dependency '%s' did not succeed", name);
    }
    res->state = FR_TASK_SKIPPED;
    res->end_ns = now_ns;
}

void fr_results_close(fr_results *r)
{
    for (size_t i = 0; r->tasks && i < r->wf->ntasks; i++) {
        free(r->tasks[i].reason);
        fr_reply_close(&r->tasks[i].reply);
        fr_declog_free(r->tasks[i].decisions);
        json_decref(r->tasks[i].tool_calls);
        json_decref(r->tasks[i].attempt_log);
        fr_approval_clear(&r->tasks[i].approval);
    }
    free(r->tasks);
    free(r->endpoints);
    r->tasks = NULL;
    r->endpoints = NULL;
}

void fr_results_for_run(fr_results *r, const fr_workflow *wf, const fr_graph *g, const char *run_id,
                        bool sim, bool plan)
{
    fr_results_init(r, wf, g);
    r->run_id = run_id;
    r->sim = sim;
    r->plan = plan;
}

int fr_results_set_baseline(fr_results *r, const fr_workflow *wf, const char *name, fr_error *err)
{
    if (!name)
        return FR_OK;
    r->baseline = fr_workflow_find_endpoint(wf, name);
    if (r->baseline < 0)
        return fr_error_set(err, FR_ECONFIG, "--baseline", 0, "no endpoint named '%s'", name);
    return FR_OK;
}
