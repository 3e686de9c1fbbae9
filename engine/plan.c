/* flowrun plan: the event queue of a run on virtual time, and the plan as
 * a user reads it. The routing and scheduling are the run's own
 * (engine/run.c), so a plan shows what a run would do. */
#include "engine/run_int.h"

#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <stdlib.h>
#include <string.h>

static bool earlier(const plan_event *a, const plan_event *b)
{
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->seq < b->seq);
}

void fr_plan_push(fr_run *r, size_t task, double at_ms)
{
    if (r->nevents == r->capevents) {
        r->capevents = r->capevents ? r->capevents * 2 : 64;
        r->events = fr_xrealloc(r->events, r->capevents * sizeof *r->events);
    }
    size_t i = r->nevents++;
    r->events[i] = (plan_event){.at_ms = at_ms, .seq = r->event_seq++, .task = task};
    while (i > 0 && earlier(&r->events[i], &r->events[(i - 1) / 2])) {
        plan_event tmp = r->events[i];
        r->events[i] = r->events[(i - 1) / 2];
        r->events[(i - 1) / 2] = tmp;
        i = (i - 1) / 2;
    }
}

bool fr_plan_pop(fr_run *r, size_t *task, double *at_ms)
{
    if (r->nevents == 0)
        return false;
    *task = r->events[0].task;
    *at_ms = r->events[0].at_ms;
    r->events[0] = r->events[--r->nevents];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, rr = l + 1, best = i;
        if (l < r->nevents && earlier(&r->events[l], &r->events[best]))
            best = l;
        if (rr < r->nevents && earlier(&r->events[rr], &r->events[best]))
            best = rr;
        if (best == i)
            break;
        plan_event tmp = r->events[i];
        r->events[i] = r->events[best];
        r->events[best] = tmp;
        i = best;
    }
    return true;
}

static void fmt_ms(char *buf, size_t n, double ms)
{
    if (ms < 1000)
        snprintf(buf, n, "%.0fms", ms);
    else
        snprintf(buf, n, "%.2fs", ms / 1000);
}

void fr_run_print_plan(const fr_run *r, FILE *f)
{
    const fr_workflow *wf = r->wf;
    json_t *rep = fr_run_report(r);
    size_t w = 4;
    for (size_t t = 0; t < wf->ntasks; t++)
        if (strlen(wf->tasks[t].name) > w)
            w = strlen(wf->tasks[t].name);
    if (w > 32)
        w = 32;
    fprintf(f, "plan of %s: %zu tasks, policy %s; nothing is sent\n\n", wf->name, wf->ntasks,
            json_string_value(json_object_get(rep, "policy")));
    fprintf(f, "%5s  %-*s  %-16s %-5s %9s %9s %11s %11s  %s\n", "LEVEL", (int)w, "TASK", "ENDPOINT",
            "TIER", "START", "END", "EXPECTED", "WORST", "ESTIMATE");
    /* Tasks by level, then by expected start, as they would run. */
    size_t *order = fr_xmalloc((wf->ntasks ? wf->ntasks : 1) * sizeof *order);
    for (size_t i = 0; i < wf->ntasks; i++)
        order[i] = i;
    for (size_t i = 1; i < wf->ntasks; i++)
        for (size_t k = i; k > 0; k--) {
            size_t a = order[k - 1], b = order[k];
            size_t la = fr_graph_level(r->g, a), lb = fr_graph_level(r->g, b);
            if (la < lb || (la == lb && r->tasks[a].start_ns <= r->tasks[b].start_ns))
                break;
            order[k - 1] = b;
            order[k] = a;
        }
    size_t nobserved = 0;
    for (size_t i = 0; i < wf->ntasks; i++) {
        size_t t = order[i];
        const task_rt *tr = &r->tasks[t];
        char start[32], end[32];
        if (fr_sched_state(r->sched, t) != FR_TASK_OK) {
            fprintf(f, "%5zu  %-*.*s  cannot run: %s\n", fr_graph_level(r->g, t), (int)w, (int)w,
                    wf->tasks[t].name, tr->reason ? tr->reason : "?");
            continue;
        }
        const ep_rt *e = &r->eps[tr->ep];
        fmt_ms(start, sizeof start, (double)tr->start_ns / 1e6);
        fmt_ms(end, sizeof end, (double)tr->end_ns / 1e6);
        const char *basis = tr->obs_latency && tr->obs_output ? "observed"
                            : tr->obs_latency                 ? "observed latency"
                            : tr->obs_output                  ? "observed tokens"
                                                              : "default";
        nobserved += tr->obs_latency || tr->obs_output;
        char cost[FR_USD_LEN], worst[FR_USD_LEN];
        fprintf(f, "%5zu  %-*.*s  %-16.16s %-5s %9s %9s %11s %11s  %s\n", fr_graph_level(r->g, t),
                (int)w, (int)w, wf->tasks[t].name, e->spec->name, fr_tier_name(e->spec->tier),
                start, end, fr_usd_cost(cost, tr->cost), fr_usd_cost(worst, tr->worst_cost), basis);
    }
    free(order);
    char mk[32], cp[32];
    fmt_ms(mk, sizeof mk, json_real_value(json_object_get(rep, "makespan_ms")));
    fmt_ms(cp, sizeof cp, json_real_value(json_object_get(rep, "critical_path_ms")));
    fprintf(f, "\nmakespan estimate %s (critical path %s)\n", mk, cp);
    char exp[FR_USD_LEN], worst[FR_USD_LEN], cap[FR_USD_LEN], bcost[FR_USD_LEN];
    fprintf(f, "cost: expected %s, worst case %s",
            fr_usd_cost(exp, json_real_value(json_object_get(rep, "cost_usd"))),
            fr_usd_cost(worst, json_real_value(json_object_get(rep, "worst_case_usd"))));
    if (r->has_budget)
        fprintf(f, " (cap %s)", fr_usd_cap(cap, r->budget_usd));
    const json_t *base = json_object_get(rep, "baseline_cost_usd");
    if (json_is_number(base)) {
        fprintf(f, "; baseline %s %s", json_string_value(json_object_get(rep, "baseline")),
                fr_usd_cost(bcost, json_number_value(base)));
        const json_t *sav = json_object_get(rep, "savings_pct");
        if (json_is_number(sav))
            fprintf(f, " (saves %.1f%%)", json_number_value(sav));
    }
    if (nobserved > 0)
        fprintf(f,
                "\nexpected: %zu of %zu tasks as observed in %s (the median of their latest "
                "successful attempts on that endpoint);\nthe rest (\"default\"): a quarter of "
                "max_tokens out, latencies as --sim-latency and --sim-tps (or their defaults)\n",
                nobserved, wf->ntasks, r->observed_from ? r->observed_from : "the state store");
    else
        fprintf(f,
                "\nexpected: a quarter of max_tokens out per task; latencies as --sim-latency "
                "and --sim-tps (or their defaults); no attempt of this workflow recorded "
                "in %s\n",
                r->observed_from ? r->observed_from : "the state store");
    json_decref(rep);
}
