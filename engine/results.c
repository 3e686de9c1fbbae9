#include "engine/results.h"

#include "engine/util/jsonw.h"
#include "engine/util/mem.h"

#include <math.h>

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
}

/* The attempt log keeps what the tree it once was kept, jansson's refusals
 * included: a string that is not UTF-8 and a NaN or an infinity were never
 * set (json_string, json_real gave NULL), so the member kept its value. */

/* The latest attempt's entry, NULL before any. */
static fr_attempt_entry *latest(const fr_task_result *t)
{
    return t->nlog ? &t->log[t->nlog - 1] : NULL;
}

const fr_attempt_turn *fr_results_turn(const fr_attempt_entry *a, size_t i)
{
    return i == 0 ? &a->turn : &a->more[i - 1];
}

static void rec_clear(fr_attempt_entry *a)
{
    free(a->outcome);
    free(a->error);
    free(a->more);
}

/* Replaces *slot by a copy of `s` when jansson would have taken it. */
static void set_str(char **slot, const char *s)
{
    if (!fr_jsonw_str_valid(s))
        return;
    free(*slot);
    *slot = fr_xstrdup(s);
}

void fr_results_attempt_begin(fr_task_result *t, int attempt, const char *endpoint, double start_ms)
{
    t->log_cost_base = t->cost;
    if (!fr_jsonw_str_valid(endpoint) || !isfinite(start_ms))
        return; /* json_pack refused the entry */
    if (t->nlog == t->caplog) {
        t->caplog = t->caplog ? 2 * t->caplog : 1;
        t->log = fr_xrealloc(t->log, t->caplog * sizeof *t->log);
    }
    t->log[t->nlog++] = (fr_attempt_entry){.attempt = attempt,
                                           .endpoint = endpoint,
                                           .start_ms = start_ms,
                                           .turn = {.start_ms = start_ms},
                                           .nturns = 1};
}

/* The latest attempt's open turn, NULL for none. */
static fr_attempt_turn *open_turn(const fr_task_result *t)
{
    fr_attempt_entry *a = latest(t);
    if (!a)
        return NULL;
    fr_attempt_turn *last = (fr_attempt_turn *)fr_results_turn(a, a->nturns - 1);
    return last->ended ? NULL : last;
}

void fr_results_turn_end(fr_task_result *t, double end_ms)
{
    fr_attempt_turn *turn = open_turn(t);
    if (turn && isfinite(end_ms)) {
        turn->end_ms = end_ms;
        turn->ended = true;
    }
}

void fr_results_turn_begin(fr_task_result *t, double start_ms)
{
    fr_attempt_entry *a = latest(t);
    if (!a || open_turn(t) || !isfinite(start_ms))
        return;
    a->more = fr_xrealloc(a->more, a->nturns * sizeof *a->more);
    a->more[a->nturns - 1] = (fr_attempt_turn){.start_ms = start_ms};
    a->nturns++;
}

void fr_results_attempt_end(fr_task_result *t, double end_ms, const char *outcome,
                            const char *error, const fr_usage *u)
{
    fr_attempt_entry *a = latest(t);
    if (!a || a->ended)
        return;
    fr_results_turn_end(t, end_ms);
    if (isfinite(end_ms)) {
        a->end_ms = end_ms;
        a->ended = true;
    }
    set_str(&a->outcome, outcome);
    if (!error) {
        free(a->error);
        a->error = NULL;
    } else {
        set_str(&a->error, error);
    }
    static const fr_usage none = {0};
    a->usage = u ? *u : none;
    double cost = t->cost - t->log_cost_base;
    if (isfinite(cost))
        a->cost_usd = cost;
}

void fr_results_attempt_drop(fr_task_result *t)
{
    if (t->nlog)
        rec_clear(&t->log[--t->nlog]);
}

void fr_results_endpoints(fr_results *r, const fr_endpoints *eps, const fr_sched *sched)
{
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        r->endpoints[e] = (fr_endpoint_result){
            .stats = fr_ep_stats_of(eps, e),
            .model = fr_ep_model(eps, e),
            .peak_in_flight = fr_sched_peak(sched, e),
            .max_parallel = fr_sched_capacity(sched, e),
            /* engine/task counts these as the run goes */
            .capacity_wait_ms = r->endpoints[e].capacity_wait_ms,
            .capacity_waits = r->endpoints[e].capacity_waits,
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
        json_decref(r->tasks[i].as_dep);
        for (size_t a = 0; a < r->tasks[i].nlog; a++)
            rec_clear(&r->tasks[i].log[a]);
        free(r->tasks[i].log);
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
