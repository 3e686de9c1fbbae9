#include "engine/report.h"

#include "engine/budget.h"

#include "engine/util/mem.h"
#include "engine/util/money.h"
#include "engine/util/redact.h"

#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile (0..1) of the successful tasks' latencies, -1 if none. */
static double latency_quantile(const fr_results *r, double q)
{
    size_t n = 0;
    double *v = fr_xmalloc((r->wf->ntasks ? r->wf->ntasks : 1) * sizeof *v);
    for (size_t t = 0; t < r->wf->ntasks; t++)
        if (r->tasks[t].state == FR_TASK_OK && r->tasks[t].endpoint >= 0)
            v[n++] = r->tasks[t].latency_ms;
    double out = -1;
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        size_t i = (size_t)(q * (double)(n - 1) + 0.5);
        out = v[i];
    }
    free(v);
    return out;
}

typedef struct totals {
    double makespan_ms, critical_ms, cost, baseline_cost, local_share;
    long tokens_local, tokens_all;
    size_t ok;
} totals;

static totals compute_totals(const fr_results *r)
{
    totals tt = {0};
    size_t n = r->wf->ntasks;
    double *w = fr_xcalloc(n ? n : 1, sizeof *w);
    for (size_t t = 0; t < n; t++) {
        const fr_task_result *tr = &r->tasks[t];
        tt.cost += tr->cost;
        if (r->tasks[t].state != FR_TASK_OK)
            continue;
        tt.ok++;
        bool began = tr->endpoint >= 0 || tr->start_ns > 0; /* a fan-out that never began */
        w[t] = began ? (double)(tr->end_ns - tr->start_ns) / 1e6 : 0;
        if (tr->endpoint < 0)
            continue; /* a fan-out: its instances sent the requests */
        long tokens = tr->usage.input + tr->usage.output;
        tt.tokens_all += tokens;
        if (r->wf->endpoints[tr->endpoint].tier == FR_TIER_LOCAL)
            tt.tokens_local += tokens;
        if (r->baseline >= 0)
            tt.baseline_cost += fr_price_cost(&r->wf->endpoints[r->baseline], &tr->usage);
    }
    tt.critical_ms = fr_graph_longest_path(r->g, w);
    free(w);
    if (r->end_ns > r->start_ns)
        tt.makespan_ms = (double)(r->end_ns - r->start_ns) / 1e6;
    tt.local_share = tt.tokens_all ? (double)tt.tokens_local / (double)tt.tokens_all : 0;
    return tt;
}

static json_t *num_or_null(double v, bool present)
{
    return present ? json_real(v) : json_null();
}

/* Returns a new JSON string of `s` (borrowed) without secrets, or null for
 * NULL. Reasons and errors quote servers, which may echo a key. */
static json_t *redacted_string(const char *s)
{
    if (!s)
        return json_null();
    char *clean = fr_redact(s);
    json_t *v = json_string(clean);
    free(clean);
    /* Not UTF-8 once a key was cut inside a character: say only that. */
    return v ? v : json_string(FR_REDACTED);
}

/* Returns a new array of the objects of `arr` (borrowed) with their "error"
 * strings redacted; everything else is shared with `arr`. */
static json_t *redact_errors(const json_t *arr)
{
    json_t *out = json_array();
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        const char *error = json_string_value(json_object_get(o, "error"));
        if (!error) {
            json_array_append(out, o);
            continue;
        }
        json_t *copy = json_copy(o);
        json_object_set_new(copy, "error", redacted_string(error));
        json_array_append_new(out, copy);
    }
    return out;
}

/* Returns a new array of the decisions of log `log` (borrowed), as the
 * report shows them: who decided, its version, why, the endpoint's name,
 * the attempt, the outcome (null until known), the candidates it saw
 * {name, free, est_cost} (not for the cache's), and its error, redacted. */
static json_t *decisions_json(const fr_results *r, const fr_declog *log)
{
    json_t *out = json_array();
    for (size_t i = 0; i < fr_declog_count(log); i++) {
        json_t *o = fr_declog_json(log, i, r->wf);
        const char *error = json_string_value(json_object_get(o, "error"));
        if (error) /* the error last, redacted */
            json_object_set_new_nocheck(o, "error", redacted_string(error));
        json_array_append_new(out, o);
    }
    return out;
}

/* A fan-out's fields (its source, its instances: counted, or in a plan
 * estimated from plan_items) and an instance's (what it is an instance of,
 * its 1-based index). */
static void fanout_fields(const fr_results *r, size_t t, json_t *o)
{
    const fr_task_spec *ts = &r->wf->tasks[t];
    const fr_task_result *tr = &r->tasks[t];
    if (ts->is_instance) {
        json_object_set_new(o, "instance_of", json_string(r->wf->tasks[ts->instance_of].name));
        json_object_set_new(o, "index", json_integer((json_int_t)ts->index));
    }
    if (!ts->foreach)
        return;
    json_object_set_new(o, "foreach", json_string(ts->foreach));
    json_object_set_new(o, "instances", json_integer((json_int_t)tr->instances));
    json_object_set_new(o, "output", json_null());
    if (r->plan)
        json_object_set_new(o, "instances_known", ts->plan_items >= 0 ? json_true() : json_false());
}

static json_t *task_report(const fr_results *r, size_t t)
{
    const fr_task_result *tr = &r->tasks[t];
    const fr_task_spec *ts = &r->wf->tasks[t];
    fr_task_state st = r->tasks[t].state;
    bool ok = st == FR_TASK_OK;
    const fr_endpoint_spec *e = tr->endpoint >= 0 ? &r->wf->endpoints[tr->endpoint] : NULL;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ts->name));
    json_object_set_new(o, "status", json_string(fr_task_state_name(st)));
    json_t *deps = json_array();
    for (size_t i = 0; i < ts->ndeps; i++)
        json_array_append_new(deps, json_string(ts->deps[i]));
    json_object_set_new(o, "deps", deps);
    json_object_set_new(o, "reason", redacted_string(tr->reason));
    json_object_set_new(o, "endpoint", e ? json_string(e->name) : json_null());
    json_object_set_new(o, "tier", e ? json_string(fr_tier_name(e->tier)) : json_null());
    const char *model = ok && tr->reply.model ? tr->reply.model
                        : e                   ? r->endpoints[tr->endpoint].model
                                              : NULL;
    json_object_set_new(o, "model", model ? json_string(model) : json_null());
    json_object_set_new(o, "attempts", json_integer(tr->attempts));
    json_object_set_new(o, "cached", json_boolean(tr->cached));
    json_object_set_new(o, "private", json_boolean(ts->is_private));
    json_object_set_new(o, "private_from",
                        ts->private_from >= 0 ? json_string(r->wf->tasks[ts->private_from].name)
                                              : json_null());
    json_object_set_new(o, "declassified_from",
                        ts->declassified_from >= 0
                            ? json_string(r->wf->tasks[ts->declassified_from].name)
                            : json_null());
    json_object_set_new(
        o, "finish", ok && !r->plan ? json_string(fr_finish_name(tr->reply.finish)) : json_null());
    json_object_set_new(o, "latency_ms", num_or_null(tr->latency_ms, ok));
    json_object_set_new(o, "ttft_ms", num_or_null(tr->ttft_ms, ok && tr->ttft_ms >= 0));
    json_object_set_new(o, "cost_usd", json_real(tr->cost));
    json_object_set_new(o, "baseline_cost_usd",
                        num_or_null(r->baseline >= 0 && ok
                                        ? fr_price_cost(&r->wf->endpoints[r->baseline], &tr->usage)
                                        : 0,
                                    r->baseline >= 0 && ok));
    json_object_set_new(o, "usage_estimated", json_boolean(ok && tr->usage.estimated));
    json_object_set_new(o, "check_score", num_or_null(tr->check_score, ok && tr->check_score >= 0));
    json_object_set_new(o, "tokens",
                        json_pack("{s:I, s:I, s:I}", "input", (json_int_t)tr->usage.input, "output",
                                  (json_int_t)tr->usage.output, "cached",
                                  (json_int_t)tr->usage.cached));
    json_object_set_new(o, "output", ok ? json_string(tr->reply.text) : json_null());
    json_object_set_new(o, "json",
                        ok && tr->reply.json ? json_incref(tr->reply.json) : json_null());
    json_object_set_new(o, "decisions", decisions_json(r, tr->decisions));
    json_object_set_new(o, "turns", json_integer(tr->turns));
    json_object_set_new(o, "tool_calls", redact_errors(tr->tool_calls));
    json_object_set_new(o, "attempt_log", redact_errors(tr->attempt_log));
    const char *ap = fr_approval_state_name(tr->approval.state);
    if (ap && !r->plan)
        json_object_set_new(
            o, "approval",
            json_pack("{s:s, s:o, s:o, s:o}", "state", ap, "by",
                      tr->approval.by ? json_string(tr->approval.by) : json_null(), "at",
                      tr->approval.at ? json_string(tr->approval.at) : json_null(), "note",
                      tr->approval.note ? json_string(tr->approval.note) : json_null()));
    fanout_fields(r, t, o);
    if (r->plan) {
        /* A plan's estimates: when the task would run and its worst case. */
        json_object_set_new(o, "output", json_null());
        json_object_set_new(o, "level", json_integer((json_int_t)fr_graph_level(r->g, t)));
        json_object_set_new(o, "start_ms", num_or_null((double)tr->start_ns / 1e6, ok));
        json_object_set_new(o, "end_ms", num_or_null((double)tr->end_ns / 1e6, ok));
        json_object_set_new(o, "worst_cost_usd", json_real(tr->worst_cost));
        json_object_set_new(o, "estimate",
                            ok ? json_pack("{s:s, s:s}", "latency",
                                           tr->obs_latency ? "observed" : "default",
                                           "output_tokens", tr->obs_output ? "observed" : "default")
                               : json_null());
    }
    return o;
}

json_t *fr_report_json(const fr_results *r)
{
    totals tt = compute_totals(r);
    json_t *o = json_object();
    const char *status = r->interrupted      ? "interrupted"
                         : r->exit_code == 3 ? "budget"
                         : r->exit_code == 4 ? "waiting"
                         : r->exit_code != 0 ? "failed"
                         : r->plan           ? "planned"
                                             : "ok";
    json_object_set_new(o, "run", json_string(r->run_id));
    json_object_set_new(o, "workflow", json_string(r->wf->name));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "exit_code", json_integer(r->exit_code));
    json_object_set_new(o, "sim", json_boolean(r->sim));
    json_object_set_new(o, "policy", json_string(r->policy));
    json_object_set_new(o, "out_dir", json_string(r->out_dir));
    json_object_set_new(o, "makespan_ms", json_real(tt.makespan_ms));
    json_object_set_new(o, "critical_path_ms", json_real(tt.critical_ms));
    json_object_set_new(o, "cost_usd", json_real(tt.cost));
    /* Always present: null when there is no run cap, 0 for a cap of 0. */
    json_object_set_new(o, "budget_usd", num_or_null(r->budget_usd, r->has_budget));
    bool has_base = r->baseline >= 0;
    json_object_set_new(o, "baseline",
                        has_base ? json_string(r->wf->endpoints[r->baseline].name) : json_null());
    json_object_set_new(o, "baseline_cost_usd", num_or_null(tt.baseline_cost, has_base));
    json_object_set_new(o, "savings_pct",
                        num_or_null(100.0 * (tt.baseline_cost - tt.cost) / tt.baseline_cost,
                                    has_base && tt.baseline_cost > 0));
    json_object_set_new(o, "local_token_share", json_real(tt.local_share));
    double p50 = latency_quantile(r, 0.5), p95 = latency_quantile(r, 0.95);
    json_object_set_new(o, "latency_ms",
                        json_pack("{s:o, s:o}", "p50", num_or_null(p50, p50 >= 0), "p95",
                                  num_or_null(p95, p95 >= 0)));
    json_object_set_new(o, "policy_errors", json_integer(r->policy_errors));
    json_object_set_new(o, "budget_alerts", json_deep_copy(r->alerts));
    json_object_set_new(o, "plan", json_boolean(r->plan));
    if (r->plan) {
        double worst = 0;
        for (size_t t = 0; t < r->wf->ntasks; t++)
            worst += r->tasks[t].worst_cost;
        json_object_set_new(o, "worst_case_usd", json_real(worst));
        json_object_set_new(o, "observed_from",
                            r->observed ? json_string(r->observed_from) : json_null());
    }
    json_t *tasks = json_array();
    for (size_t t = 0; t < r->wf->ntasks; t++)
        json_array_append_new(tasks, task_report(r, t));
    json_object_set_new(o, "tasks", tasks);
    json_object_set_new(o, "policy_reloads", redact_errors(r->reloads));
    json_t *eps = json_object();
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        json_object_set_new(
            eps, r->wf->endpoints[e].name,
            json_pack("{s:s, s:I, s:I, s:i, s:i, s:I, s:f, s:b, s:o}", "tier",
                      fr_tier_name(r->wf->endpoints[e].tier), "requests",
                      (json_int_t)r->endpoints[e].stats.requests, "failures",
                      (json_int_t)r->endpoints[e].stats.failures, "peak_in_flight",
                      r->endpoints[e].peak_in_flight, "max_parallel", r->endpoints[e].max_parallel,
                      "cooldowns", (json_int_t)r->endpoints[e].stats.cooldowns, "cooldown_ms",
                      r->endpoints[e].stats.cooldown_ms, "usable", r->endpoints[e].stats.usable,
                      "disabled_reason",
                      r->endpoints[e].stats.unusable ? json_string(r->endpoints[e].stats.unusable)
                                                     : json_null()));
    json_object_set_new(o, "endpoints", eps);
    return o;
}

static void fmt_ms(char *buf, size_t n, double ms)
{
    if (ms < 0)
        snprintf(buf, n, "-");
    else if (ms < 1000)
        snprintf(buf, n, "%.0fms", ms);
    else
        snprintf(buf, n, "%.2fs", ms / 1000);
}

/* A line per local endpoint that could not be connected to: the error,
 * and how many tasks ran on the cloud instead (tasks whose last attempt
 * went to the cloud while it was down, or after they failed to reach it). */
static void print_unreachable(const fr_results *r, FILE *f)
{
    for (size_t e = 0; e < r->wf->nendpoints; e++) {
        const fr_ep_stats *ep = &r->endpoints[e].stats;
        const char *name = r->wf->endpoints[e].name;
        if (r->wf->endpoints[e].tier != FR_TIER_LOCAL || ep->connect_failures == 0)
            continue;
        size_t moved = 0;
        for (size_t t = 0; t < r->wf->ntasks; t++) {
            const fr_task_result *tr = &r->tasks[t];
            moved += tr->moved_from == (long)e && tr->endpoint >= 0 &&
                     r->wf->endpoints[tr->endpoint].tier == FR_TIER_CLOUD;
        }
        char *why = fr_redact(ep->connect_error ? ep->connect_error : "");
        if (ep->successes == 0)
            fprintf(f, "local endpoint '%s' was unreachable (%s)", name, why);
        else
            fprintf(f, "local endpoint '%s' was unreachable %ld time%s (last: %s)", name,
                    ep->connect_failures, ep->connect_failures == 1 ? "" : "s", why);
        if (moved)
            fprintf(f, "; %zu task%s ran on the cloud instead", moved, moved == 1 ? "" : "s");
        fputc('\n', f);
        free(why);
    }
}

typedef struct hues {
    const char *bold, *red, *green, *off;
} hues;

/* One row of the summary's table: task `t`, its name cut to `w`. */
static void summary_row(const fr_results *r, size_t t, FILE *f, size_t w, hues c)
{
    const fr_task_result *tr = &r->tasks[t];
    fr_task_state st = tr->state;
    bool ok = st == FR_TASK_OK;
    const fr_endpoint_spec *e = tr->endpoint >= 0 ? &r->wf->endpoints[tr->endpoint] : NULL;
    const char *hue = ok ? c.green : tr->decided ? "" : c.red; /* a decided skip is no error */
    char lat[32], tokens[48], cost[FR_USD_LEN];
    bool sent = ok && tr->endpoint >= 0; /* a fan-out sends nothing itself */
    fmt_ms(lat, sizeof lat, sent ? tr->latency_ms : -1);
    snprintf(tokens, sizeof tokens, sent ? "%ld/%ld%s" : "-", tr->usage.input, tr->usage.output,
             tr->usage.estimated ? "~" : "");
    fprintf(f, "%-*.*s  %s%-9s%s %-16.16s %-5s %3d %9s %15s %10s\n", (int)w, (int)w,
            r->wf->tasks[t].name, hue, fr_task_state_name(st), c.off, e ? e->name : "-",
            e ? fr_tier_name(e->tier) : "-", tr->attempts, lat, tokens,
            fr_usd_cost(cost, tr->cost));
}

void fr_report_summary(const fr_results *r, FILE *f, bool color)
{
    totals tt = compute_totals(r);
    hues c = {color ? "\033[1m" : "", color ? "\033[31m" : "", color ? "\033[32m" : "",
              color ? "\033[0m" : ""};
    const char *bold = c.bold, *off = c.off;
    size_t w = 4;
    for (size_t t = 0; t < r->wf->ntasks; t++)
        if (strlen(r->wf->tasks[t].name) > w)
            w = strlen(r->wf->tasks[t].name);
    if (w > 32)
        w = 32;
    fprintf(f, "\n%s%-*s  %-9s %-16s %-5s %3s %9s %15s %10s%s\n", bold, (int)w, "TASK", "STATUS",
            "ENDPOINT", "TIER", "ATT", "LATENCY", "TOKENS IN/OUT", "COST", off);
    /* Declared tasks in order, each fan-out followed by its instances. */
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        if (r->wf->tasks[t].is_instance)
            continue;
        summary_row(r, t, f, w, c);
        const fr_task_result *tr = &r->tasks[t];
        for (size_t i = 0; i < tr->instances; i++)
            summary_row(r, tr->first_instance + i, f, w, c);
    }
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        if (!r->tasks[t].reason)
            continue;
        char *reason = fr_redact(r->tasks[t].reason);
        fprintf(f, "  %s: %s\n", r->wf->tasks[t].name, reason);
        free(reason);
    }
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        /* Each checkpoint: pending, or who decided. */
        const fr_approval *ap = &r->tasks[t].approval;
        if (ap->state == FR_APPROVAL_PENDING)
            fprintf(f, "  %s: approval pending (asked %s)\n", r->wf->tasks[t].name,
                    ap->at ? ap->at : "now");
        else if (ap->state == FR_APPROVAL_APPROVED) /* a rejection is the task's reason */
            fprintf(f, "  %s: %s by %s at %s%s%s\n", r->wf->tasks[t].name,
                    fr_approval_state_name(ap->state), ap->by ? ap->by : "?", ap->at ? ap->at : "?",
                    ap->note ? ": " : "", ap->note ? ap->note : "");
    }
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        const fr_task_spec *ts = &r->wf->tasks[t];
        const fr_task_result *tr = &r->tasks[t];
        if (!ts->foreach || tr->instances == 0)
            continue;
        const fr_task_spec *last = &r->wf->tasks[tr->first_instance + tr->instances - 1];
        fprintf(f, "  %s: foreach %s: %zu instance%s, %s%s%s\n", ts->name, ts->foreach,
                tr->instances, tr->instances == 1 ? "" : "s", r->wf->tasks[tr->first_instance].name,
                tr->instances > 1 ? " ... " : "", tr->instances > 1 ? last->name : "");
    }
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        /* Where inherited privacy came from, and what was declassified. */
        const fr_task_spec *ts = &r->wf->tasks[t];
        char privacy[700];
        if (ts->private_from >= 0 || ts->declassified_from >= 0)
            fprintf(f, "  %s: %s\n", ts->name,
                    fr_workflow_privacy_text(r->wf, t, privacy, sizeof privacy));
    }
    print_unreachable(r, f);
    char mk[32], cp[32], p50s[32], p95s[32];
    fmt_ms(mk, sizeof mk, tt.makespan_ms);
    fmt_ms(cp, sizeof cp, tt.critical_ms);
    fmt_ms(p50s, sizeof p50s, latency_quantile(r, 0.5));
    fmt_ms(p95s, sizeof p95s, latency_quantile(r, 0.95));
    fprintf(f, "\n%sdone %zu/%zu%s  makespan %s (critical path %s)  latency p50 %s p95 %s\n", bold,
            tt.ok, r->wf->ntasks, off, mk, cp, p50s, p95s);
    char spent[FR_USD_LEN], cap[FR_USD_LEN], base[FR_USD_LEN];
    fprintf(f, "spend %s", fr_usd_cost(spent, tt.cost));
    if (r->has_budget)
        fprintf(f, " of %s cap", fr_usd_cap(cap, r->budget_usd));
    if (r->sim)
        fprintf(f, " (rehearsal on flowrun-sim: nothing was spent)");
    if (r->baseline >= 0) {
        fprintf(f, "  baseline %s %s", r->wf->endpoints[r->baseline].name,
                fr_usd_cost(base, tt.baseline_cost));
        if (tt.baseline_cost > 0)
            fprintf(f, " (saves %.1f%%)", 100.0 * (tt.baseline_cost - tt.cost) / tt.baseline_cost);
    }
    fprintf(f, "  local tokens %.0f%%\n", 100.0 * tt.local_share);
    if (r->policy_errors)
        fprintf(f, "policy %s failed %d decision(s); the built-in default decided those\n",
                r->policy, r->policy_errors);
    fprintf(f, "outputs in %s/\n", r->out_dir);
}

void fr_report_plan(const fr_results *r, FILE *f)
{
    const fr_workflow *wf = r->wf;
    json_t *rep = fr_report_json(r);
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
        const fr_task_result *tr = &r->tasks[t];
        char start[32], end[32];
        if (r->tasks[t].state != FR_TASK_OK) {
            fprintf(f, "%5zu  %-*.*s  %s: %s\n", fr_graph_level(r->g, t), (int)w, (int)w,
                    wf->tasks[t].name, tr->decided ? "skipped" : "cannot run",
                    tr->reason ? tr->reason : "?");
            continue;
        }
        if (wf->tasks[t].foreach) {
            const fr_task_spec *ts = &wf->tasks[t];
            const char *src = wf->tasks[ts->foreach_dep].name;
            if (ts->plan_items >= 0)
                fprintf(f, "%5zu  %-*.*s  × %d, known when %s runs (estimated from plan_items)\n",
                        fr_graph_level(r->g, t), (int)w, (int)w, ts->name, ts->plan_items, src);
            else
                fprintf(f,
                        "%5zu  %-*.*s  × N, known when %s runs (unknown: one instance "
                        "estimated; set plan_items)\n",
                        fr_graph_level(r->g, t), (int)w, (int)w, ts->name, src);
            continue;
        }
        const fr_endpoint_spec *e = &r->wf->endpoints[tr->endpoint];
        fmt_ms(start, sizeof start, (double)tr->start_ns / 1e6);
        fmt_ms(end, sizeof end, (double)tr->end_ns / 1e6);
        const char *basis = tr->obs_latency && tr->obs_output ? "observed"
                            : tr->obs_latency                 ? "observed latency"
                            : tr->obs_output                  ? "observed tokens"
                                                              : "default";
        nobserved += tr->obs_latency || tr->obs_output;
        char cost[FR_USD_LEN], worst[FR_USD_LEN];
        fprintf(f, "%5zu  %-*.*s  %-16.16s %-5s %9s %9s %11s %11s  %s%s\n", fr_graph_level(r->g, t),
                (int)w, (int)w, wf->tasks[t].name, e->name, fr_tier_name(e->tier), start, end,
                fr_usd_cost(cost, tr->cost), fr_usd_cost(worst, tr->worst_cost), basis,
                wf->tasks[t].approve ? "; waits for approval" : "");
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
