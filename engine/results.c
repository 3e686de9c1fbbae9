#include "engine/results.h"

#include "engine/util/mem.h"

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
        fr_approval_clear(&r->tasks[i].approval);
    }
    free(r->tasks);
    free(r->endpoints);
    r->tasks = NULL;
    r->endpoints = NULL;
}
