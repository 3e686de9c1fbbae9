#include "engine/report.h"

#include "engine/budget.h"

#include "engine/util/err.h"
#include "engine/util/fixed.h"
#include "engine/util/jsonw.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"
#include "engine/util/redact.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median and the 95th percentile of the successful tasks' latencies
 * into *p50 and *p95, -1 if none: one sort for both. */
static void latency_quantiles(const fr_results *r, double *p50, double *p95)
{
    size_t n = 0;
    double *v = fr_xmalloc((r->wf->ntasks ? r->wf->ntasks : 1) * sizeof *v);
    for (size_t t = 0; t < r->wf->ntasks; t++)
        if (r->tasks[t].state == FR_TASK_OK && r->tasks[t].endpoint >= 0)
            v[n++] = r->tasks[t].latency_ms;
    *p50 = *p95 = -1;
    if (n) {
        qsort(v, n, sizeof *v, cmp_double);
        *p50 = v[(size_t)(0.5 * (double)(n - 1) + 0.5)];
        *p95 = v[(size_t)(0.95 * (double)(n - 1) + 0.5)];
    }
    free(v);
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

static double worst_case(const fr_results *r)
{
    double worst = 0;
    for (size_t t = 0; t < r->wf->ntasks; t++)
        worst += r->tasks[t].worst_cost;
    return worst;
}

/* ---- the report's text, written without a tree --------------------------
 *
 * Byte for byte what json_dumps(tree, JSON_INDENT(2)) printed of the tree
 * the report once was, jansson's refusals included (util/jsonw.h): a member
 * whose string is not UTF-8 is left out, as json_object_set_new left out a
 * NULL value; a member set twice keeps its first place. */

/* `s` (borrowed) without secrets, or null for NULL; FR_REDACTED when the
 * cut left it invalid UTF-8. */
static void w_redacted(fr_jsonw *w, const char *key, const char *s)
{
    if (!s) {
        fr_jsonw_null(w, key);
        return;
    }
    char *clean = fr_redact(s);
    if (!fr_jsonw_str(w, key, clean))
        fr_jsonw_str(w, key, FR_REDACTED);
    free(clean);
}

/* The object `o` (borrowed) with its "error" string redacted in place. */
static void w_redacting_error(fr_jsonw *w, const char *key, const json_t *o)
{
    const char *k;
    json_t *v;
    fr_jsonw_object(w, key);
    json_object_foreach((json_t *)o, k, v)
    {
        if (strcmp(k, "error") == 0 && json_is_string(v))
            w_redacted(w, k, json_string_value(v));
        else
            fr_jsonw_value(w, k, v);
    }
    fr_jsonw_close(w);
}

/* The array `arr` (borrowed; NULL is empty) with its objects' "error"
 * strings redacted. */
static void w_redact_errors(fr_jsonw *w, const char *key, const json_t *arr)
{
    size_t i;
    json_t *o;
    fr_jsonw_array(w, key);
    json_array_foreach(arr, i, o)
    {
        if (json_is_string(json_object_get(o, "error")))
            w_redacting_error(w, NULL, o);
        else
            fr_jsonw_value(w, NULL, o);
    }
    fr_jsonw_close(w);
}

/* The decisions of log `log` (borrowed), each the object fr_declog_json
 * builds, written from the records: a string jansson refuses (not UTF-8)
 * leaves its member out, a candidate whose json_pack would fail (its name,
 * a cost that is not finite) is left out, and the error and the policy's
 * explanation (when it gave one) are redacted. */
static void w_decisions(fr_jsonw *w, const fr_results *r, const fr_declog *log)
{
    const fr_decision_cand *cands = fr_declog_cands(log);
    fr_jsonw_array_k(w, FR_JSONW_KEY("decisions"));
    for (size_t i = 0; i < fr_declog_count(log); i++) {
        const fr_decision *d = fr_declog_get(log, i);
        fr_jsonw_object(w, NULL);
        fr_jsonw_str_k(w, FR_JSONW_KEY("policy"), d->policy);
        fr_jsonw_int_k(w, FR_JSONW_KEY("version"), d->version);
        fr_jsonw_str_k(w, FR_JSONW_KEY("reason"), d->reason);
        fr_jsonw_str_k(w, FR_JSONW_KEY("endpoint"), r->wf->endpoints[d->endpoint].name);
        fr_jsonw_int_k(w, FR_JSONW_KEY("attempt"), d->attempt);
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("outcome"), d->outcome);
        if (d->has_candidates) {
            fr_jsonw_array_k(w, FR_JSONW_KEY("candidates"));
            for (size_t c = d->first_cand; c < d->first_cand + d->ncands; c++) {
                const char *name = r->wf->endpoints[cands[c].endpoint].name;
                if (!fr_jsonw_str_valid(name) || !isfinite(cands[c].est_cost))
                    continue;
                fr_jsonw_object(w, NULL);
                fr_jsonw_str_k(w, FR_JSONW_KEY("name"), name);
                fr_jsonw_int_k(w, FR_JSONW_KEY("free"), cands[c].free);
                fr_jsonw_real_k(w, FR_JSONW_KEY("est_cost"), cands[c].est_cost);
                fr_jsonw_close(w);
            }
            fr_jsonw_close(w);
        }
        if (fr_jsonw_str_valid(d->error))
            w_redacted(w, "error", d->error);
        if (d->explanation && fr_jsonw_str_valid(d->explanation))
            w_redacted(w, "explanation", d->explanation); /* the policy's, only when it gave one */
        fr_jsonw_close(w);
    }
    fr_jsonw_close(w);
}

/* Task entry `tr`'s attempt log, as the tree it once was printed (its
 * error redacted). */
static void w_attempt_log(fr_jsonw *w, const fr_task_result *tr)
{
    fr_jsonw_array_k(w, FR_JSONW_KEY("attempt_log"));
    for (size_t i = 0; i < tr->nlog; i++) {
        const fr_attempt_entry *a = &tr->log[i];
        fr_jsonw_object(w, NULL);
        fr_jsonw_int_k(w, FR_JSONW_KEY("attempt"), a->attempt);
        fr_jsonw_str_k(w, FR_JSONW_KEY("endpoint"), a->endpoint);
        fr_jsonw_real_k(w, FR_JSONW_KEY("start_ms"), a->start_ms);
        fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("end_ms"), a->end_ms, a->ended);
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("outcome"), a->outcome);
        w_redacted(w, "error", a->error);
        fr_jsonw_object_k(w, FR_JSONW_KEY("tokens"));
        fr_jsonw_int_k(w, FR_JSONW_KEY("input"), a->usage.input);
        fr_jsonw_int_k(w, FR_JSONW_KEY("output"), a->usage.output);
        fr_jsonw_int_k(w, FR_JSONW_KEY("cached"), a->usage.cached);
        fr_jsonw_close(w);
        fr_jsonw_real_k(w, FR_JSONW_KEY("cost_usd"), a->cost_usd);
        fr_jsonw_array_k(w, FR_JSONW_KEY("turns"));
        for (size_t k = 0; k < a->nturns; k++) {
            const fr_attempt_turn *turn = fr_results_turn(a, k);
            fr_jsonw_object(w, NULL);
            fr_jsonw_real_k(w, FR_JSONW_KEY("start_ms"), turn->start_ms);
            fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("end_ms"), turn->end_ms, turn->ended);
            fr_jsonw_close(w);
        }
        fr_jsonw_close(w);
        fr_jsonw_close(w);
    }
    fr_jsonw_close(w);
}

static void w_task(fr_jsonw *w, const fr_results *r, size_t t)
{
    const fr_task_result *tr = &r->tasks[t];
    const fr_task_spec *ts = &r->wf->tasks[t];
    fr_task_state st = tr->state;
    bool ok = st == FR_TASK_OK;
    const fr_endpoint_spec *e = tr->endpoint >= 0 ? &r->wf->endpoints[tr->endpoint] : NULL;
    fr_jsonw_object(w, NULL);
    fr_jsonw_str_k(w, FR_JSONW_KEY("name"), ts->name);
    fr_jsonw_str_k(w, FR_JSONW_KEY("status"), fr_task_state_name(st));
    fr_jsonw_array_k(w, FR_JSONW_KEY("deps"));
    for (size_t i = 0; i < ts->ndeps; i++)
        fr_jsonw_str(w, NULL, ts->deps[i]);
    fr_jsonw_close(w);
    w_redacted(w, "reason", tr->reason);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("endpoint"), e ? e->name : NULL);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("tier"), e ? fr_tier_name(e->tier) : NULL);
    const char *model = ok && tr->reply.model ? tr->reply.model
                        : e                   ? r->endpoints[tr->endpoint].model
                                              : NULL;
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("model"), model);
    fr_jsonw_int_k(w, FR_JSONW_KEY("attempts"), tr->attempts);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("cached"), tr->cached);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("private"), ts->is_private);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("private_from"),
                           ts->private_from >= 0 ? r->wf->tasks[ts->private_from].name : NULL);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("declassified_from"),
                           ts->declassified_from >= 0 ? r->wf->tasks[ts->declassified_from].name
                                                      : NULL);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("finish"),
                           ok && !r->plan ? fr_finish_name(tr->reply.finish) : NULL);
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("latency_ms"), tr->latency_ms, ok);
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("ttft_ms"), tr->ttft_ms, ok && tr->ttft_ms >= 0);
    fr_jsonw_real_k(w, FR_JSONW_KEY("cost_usd"), tr->cost);
    bool base = r->baseline >= 0 && ok;
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("baseline_cost_usd"),
                            base ? fr_price_cost(&r->wf->endpoints[r->baseline], &tr->usage) : 0,
                            base);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("usage_estimated"), ok && tr->usage.estimated);
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("check_score"), tr->check_score,
                            ok && tr->check_score >= 0);
    fr_jsonw_object_k(w, FR_JSONW_KEY("tokens"));
    fr_jsonw_int_k(w, FR_JSONW_KEY("input"), tr->usage.input);
    fr_jsonw_int_k(w, FR_JSONW_KEY("output"), tr->usage.output);
    fr_jsonw_int_k(w, FR_JSONW_KEY("cached"), tr->usage.cached);
    fr_jsonw_close(w);
    /* "output" once, where it was first set: a fan-out's and a plan's are
     * null; a success without text (a fan-out's) had none there. */
    bool has_output;
    if (ok && !ts->foreach && !r->plan)
        has_output = fr_jsonw_str_k(w, FR_JSONW_KEY("output"), tr->reply.text);
    else if ((has_output = !ok || fr_jsonw_str_valid(tr->reply.text)))
        fr_jsonw_null_k(w, FR_JSONW_KEY("output"));
    if (!fr_jsonw_value(w, "json", ok && tr->reply.json ? tr->reply.json : NULL))
        fr_jsonw_null_k(w, FR_JSONW_KEY("json"));
    w_decisions(w, r, tr->decisions);
    fr_jsonw_int_k(w, FR_JSONW_KEY("turns"), tr->turns);
    w_redact_errors(w, "tool_calls", tr->tool_calls);
    w_attempt_log(w, tr);
    const char *ap = fr_approval_state_name(tr->approval.state);
    const fr_approval *a = &tr->approval;
    if (ap && !r->plan && (!a->by || fr_jsonw_str_valid(a->by)) &&
        (!a->at || fr_jsonw_str_valid(a->at)) && (!a->note || fr_jsonw_str_valid(a->note))) {
        fr_jsonw_object_k(w, FR_JSONW_KEY("approval"));
        fr_jsonw_str_k(w, FR_JSONW_KEY("state"), ap);
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("by"), a->by);
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("at"), a->at);
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("note"), a->note);
        fr_jsonw_close(w);
    }
    if (ts->is_instance) {
        fr_jsonw_str_k(w, FR_JSONW_KEY("instance_of"), r->wf->tasks[ts->instance_of].name);
        fr_jsonw_int_k(w, FR_JSONW_KEY("index"), (long long)ts->index);
    }
    if (ts->foreach) {
        fr_jsonw_str_k(w, FR_JSONW_KEY("foreach"), ts->foreach);
        fr_jsonw_int_k(w, FR_JSONW_KEY("instances"), (long long)tr->instances);
        if (!has_output)
            fr_jsonw_null_k(w, FR_JSONW_KEY("output"));
        has_output = true;
        if (r->plan)
            fr_jsonw_bool_k(w, FR_JSONW_KEY("instances_known"), ts->plan_items >= 0);
    }
    if (r->plan) {
        /* A plan's estimates: when the task would run and its worst case. */
        if (!has_output)
            fr_jsonw_null_k(w, FR_JSONW_KEY("output"));
        fr_jsonw_int_k(w, FR_JSONW_KEY("level"), (long long)fr_graph_level(r->g, t));
        fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("start_ms"), (double)tr->start_ns / 1e6, ok);
        fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("end_ms"), (double)tr->end_ns / 1e6, ok);
        fr_jsonw_real_k(w, FR_JSONW_KEY("worst_cost_usd"), tr->worst_cost);
        if (ok) {
            fr_jsonw_object_k(w, FR_JSONW_KEY("estimate"));
            fr_jsonw_str_k(w, FR_JSONW_KEY("latency"), tr->obs_latency ? "observed" : "default");
            fr_jsonw_str_k(w, FR_JSONW_KEY("output_tokens"),
                           tr->obs_output ? "observed" : "default");
            fr_jsonw_close(w);
        } else {
            fr_jsonw_null_k(w, FR_JSONW_KEY("estimate"));
        }
    }
    fr_jsonw_close(w);
}

static const char *run_status(const fr_results *r)
{
    return r->interrupted      ? "interrupted"
           : r->exit_code == 3 ? "budget"
           : r->exit_code == 4 ? "waiting"
           : r->exit_code != 0 ? "failed"
           : r->plan           ? "planned"
                               : "ok";
}

/* Endpoint `e`'s counters; nothing when jansson's json_pack would have
 * failed (a cooldown that is not finite, a reason that is not UTF-8). */
static void w_endpoint(fr_jsonw *w, const fr_results *r, size_t e)
{
    const fr_endpoint_result *er = &r->endpoints[e];
    const char *why = er->stats.unusable;
    if (!fr_jsonw_str_valid(r->wf->endpoints[e].name) || !isfinite(er->stats.cooldown_ms) ||
        (why && !fr_jsonw_str_valid(why)))
        return;
    fr_jsonw_object(w, r->wf->endpoints[e].name);
    fr_jsonw_str_k(w, FR_JSONW_KEY("tier"), fr_tier_name(r->wf->endpoints[e].tier));
    fr_jsonw_int_k(w, FR_JSONW_KEY("requests"), (long long)er->stats.requests);
    fr_jsonw_int_k(w, FR_JSONW_KEY("failures"), (long long)er->stats.failures);
    fr_jsonw_int_k(w, FR_JSONW_KEY("peak_in_flight"), er->peak_in_flight);
    fr_jsonw_int_k(w, FR_JSONW_KEY("max_parallel"), er->max_parallel);
    fr_jsonw_int_k(w, FR_JSONW_KEY("cooldowns"), (long long)er->stats.cooldowns);
    fr_jsonw_real_k(w, FR_JSONW_KEY("cooldown_ms"), er->stats.cooldown_ms);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("usable"), er->stats.usable);
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("disabled_reason"), why);
    if (er->capacity_waits > 0 && isfinite(er->capacity_wait_ms)) {
        /* Only a shared endpoint whose slots other processes held. */
        fr_jsonw_int_k(w, FR_JSONW_KEY("capacity_waits"), er->capacity_waits);
        fr_jsonw_real_k(w, FR_JSONW_KEY("capacity_wait_ms"), er->capacity_wait_ms);
    }
    fr_jsonw_close(w);
}

/* About the bytes of a task's entry without its output text: a
 * successful task of one attempt is 880 compact, 1,600 indented. */
#define TASK_BYTES_COMPACT  1024
#define TASK_BYTES_INDENTED 2048

int fr_report_text(const fr_results *r, fr_buf *out, bool compact)
{
    totals tt = compute_totals(r);
    /* Room for the whole text at once (growth by doubling copied it a
     * dozen times over); a text that outgrows it grows as before. */
    size_t room = 4096;
    for (size_t t = 0; t < r->wf->ntasks; t++)
        room += (compact ? TASK_BYTES_COMPACT : TASK_BYTES_INDENTED) +
                (r->tasks[t].reply.text ? strlen(r->tasks[t].reply.text) : 0);
    fr_buf_reserve(out, room); /* past out's limit: the writer says so */
    fr_jsonw *w = fr_jsonw_new(out);
    if (compact)
        fr_jsonw_compact(w, 17); /* %.17g: every real reads back the same */
    fr_jsonw_object(w, NULL);
    fr_jsonw_str_k(w, FR_JSONW_KEY("run"), r->run_id);
    fr_jsonw_str_k(w, FR_JSONW_KEY("workflow"), r->wf->name);
    fr_jsonw_str_k(w, FR_JSONW_KEY("status"), run_status(r));
    fr_jsonw_int_k(w, FR_JSONW_KEY("exit_code"), r->exit_code);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("sim"), r->sim);
    fr_jsonw_str_k(w, FR_JSONW_KEY("policy"), r->policy);
    fr_jsonw_str_k(w, FR_JSONW_KEY("out_dir"), r->out_dir);
    fr_jsonw_real_k(w, FR_JSONW_KEY("makespan_ms"), tt.makespan_ms);
    fr_jsonw_real_k(w, FR_JSONW_KEY("critical_path_ms"), tt.critical_ms);
    fr_jsonw_real_k(w, FR_JSONW_KEY("cost_usd"), tt.cost);
    /* Always present: null when there is no run cap, 0 for a cap of 0. */
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("budget_usd"), r->budget_usd, r->has_budget);
    bool has_base = r->baseline >= 0;
    fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("baseline"),
                           has_base ? r->wf->endpoints[r->baseline].name : NULL);
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("baseline_cost_usd"), tt.baseline_cost, has_base);
    fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("savings_pct"),
                            100.0 * (tt.baseline_cost - tt.cost) / tt.baseline_cost,
                            has_base && tt.baseline_cost > 0);
    fr_jsonw_real_k(w, FR_JSONW_KEY("local_token_share"), tt.local_share);
    double p50, p95;
    latency_quantiles(r, &p50, &p95);
    if (!isinf(p50) && !isinf(p95)) { /* json_pack refused an infinite real */
        fr_jsonw_object_k(w, FR_JSONW_KEY("latency_ms"));
        fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("p50"), p50, p50 >= 0);
        fr_jsonw_real_or_null_k(w, FR_JSONW_KEY("p95"), p95, p95 >= 0);
        fr_jsonw_close(w);
    }
    fr_jsonw_int_k(w, FR_JSONW_KEY("policy_errors"), r->policy_errors);
    if (r->has_seed) /* only when asked for: other reports keep their bytes */
        fr_jsonw_int_k(w, FR_JSONW_KEY("seed"), r->seed);
    fr_jsonw_value(w, "budget_alerts", r->alerts);
    if (r->store.kind) { /* a shared store only: other reports keep their bytes */
        fr_jsonw_object_k(w, FR_JSONW_KEY("store"));
        fr_jsonw_str_k(w, FR_JSONW_KEY("kind"), r->store.kind);
        fr_jsonw_int_k(w, FR_JSONW_KEY("reconnects"), r->store.reconnects);
        fr_jsonw_real_k(w, FR_JSONW_KEY("down_ms"), r->store.down_ms);
        fr_jsonw_int_k(w, FR_JSONW_KEY("capacity_waits"), r->store.capacity_waits);
        fr_jsonw_int_k(w, FR_JSONW_KEY("lock_retries"), r->store.lock_retries);
        fr_jsonw_close(w);
    }
    fr_jsonw_bool_k(w, FR_JSONW_KEY("plan"), r->plan);
    if (r->plan) {
        fr_jsonw_real_k(w, FR_JSONW_KEY("worst_case_usd"), worst_case(r));
        fr_jsonw_str_or_null_k(w, FR_JSONW_KEY("observed_from"),
                               r->observed ? r->observed_from : NULL);
    }
    fr_jsonw_array_k(w, FR_JSONW_KEY("tasks"));
    for (size_t t = 0; t < r->wf->ntasks; t++)
        w_task(w, r, t);
    fr_jsonw_close(w);
    w_redact_errors(w, "policy_reloads", r->reloads);
    fr_jsonw_object_k(w, FR_JSONW_KEY("endpoints"));
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        w_endpoint(w, r, e);
    fr_jsonw_close(w);
    fr_jsonw_close(w);
    int rc = fr_jsonw_ok(w) ? fr_buf_append(out, "\n", 1) : FR_ETOOBIG;
    fr_jsonw_free(w);
    return rc;
}

/* ---- the indented text from the compact one, streamed --------------------
 *
 * The compact and the indented text differ only between tokens (reals have
 * 17 digits in both): jansson's JSON_INDENT(2) puts a newline and two
 * spaces a level before each member or element and before the close of a
 * container that has any, ": " after a key, and prints an empty one as {}
 * or []. Half of the indented text is that whitespace and most of the rest
 * is strings, so both go out as spans: an indent of up to 32 spaces is one
 * fixed-size copy, and a string's bytes are copied 16 (or 8) at a time while
 * the same bytes are searched for its end or an escape (a byte per byte copy with a
 * flush check each cost 7 instructions a byte). */

#define CHUNK  (64u << 10) /* bytes gathered before they are written */
#define SLACK  64u         /* room past CHUNK: what one token puts (a run of 32, an indent) */
#define INDENT 32u         /* the widest indent written by one copy */

typedef struct sink {
    FILE *f;
    bool ok; /* false once a write failed (then nothing more is written) */
    char buf[CHUNK + SLACK];
} sink;

/* Writes out the bytes gathered before `o` and returns where the next one
 * goes: the buffer's start. Every token below starts below CHUNK and puts
 * at most SLACK bytes past it, or flushes on the way. */
static char *sink_flush(sink *k, char *o)
{
    size_t n = (size_t)(o - k->buf);
    k->ok = k->ok && (n == 0 || fwrite(k->buf, 1, n, k->f) == n);
    return k->buf;
}

/* newline's way for an indent past INDENT: piece by piece, flushing. */
static char *deep_indent(sink *k, char *o, size_t n)
{
    while (n) {
        if (o >= k->buf + CHUNK)
            o = sink_flush(k, o);
        size_t m = n < INDENT ? n : INDENT;
        memset(o, ' ', m);
        o += m;
        n -= m;
    }
    return o;
}

/* A newline and the indent of `depth` levels at `o` (below CHUNK + 2);
 * returns what follows. Inline: it comes with every member. */
static inline char *newline(sink *k, char *o, size_t depth)
{
    static const char spaces[INDENT] = "                                ";
    size_t n = 2 * depth;
    *o++ = '\n';
    if (n > INDENT)
        return deep_indent(k, o, n);
    memcpy(o, spaces, INDENT); /* all of it at once; the next bytes overwrite the rest */
    return o + n;
}

/* The bytes of compact text that end a run of a number or a word (true,
 * false, null, the final newline): the tokens, and the text's end. */
enum { T_RUN, T_END, T_STR, T_OPEN, T_CLOSE, T_COMMA, T_COLON };
static const unsigned char token[256] = {
    [0] = T_END,     ['"'] = T_STR,   ['{'] = T_OPEN,  ['['] = T_OPEN,
    ['}'] = T_CLOSE, [']'] = T_CLOSE, [','] = T_COMMA, [':'] = T_COLON};

/* copy_block(o, p): copies the BLOCK bytes at `p` to `o` and returns how
 * many of them come before the first '"' or '\\' (BLOCK when none): SSE2's
 * 16 at a time where there is SSE2 (every x86-64), else 8 in a 64-bit word. */
#if defined(__SSE2__)
#define BLOCK 16
static inline size_t copy_block(char *o, const char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    _mm_storeu_si128((__m128i *)(void *)o, v);
    __m128i stop =
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    unsigned m = (unsigned)_mm_movemask_epi8(stop);
    return m ? (size_t)__builtin_ctz(m) : BLOCK;
}
#else
#define BLOCK          8
#define ONES           0x0101010101010101ull
/* A mask with the high bit of each byte of `v` equal to `b` (and maybe of
 * bytes after such a byte, never before: the first set bit is exact). */
#define BYTES_EQ(v, b) ((((v) ^ (ONES * (b))) - ONES) & ~((v) ^ (ONES * (b))) & (ONES << 7))
static inline size_t copy_block(char *o, const char *p)
{
    unsigned long long v;
    memcpy(&v, p, 8);
    memcpy(o, &v, 8);
    unsigned long long m = BYTES_EQ(v, '"') | BYTES_EQ(v, '\\');
    if (!m)
        return BLOCK;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (size_t)__builtin_clzll(m) >> 3;
#else
    return (size_t)__builtin_ctzll(m) >> 3;
#endif
}
#endif

/* Copies a string's bytes from `*pp` (just past its opening quote) to `o`
 * up to its closing quote, which it copies too, or the text's `end`;
 * escapes are copied as they are. Returns what follows in the sink. */
static char *copy_string(sink *k, char *o, const char **pp, const char *end)
{
    const char *p = *pp;
    for (;;) {
        if (o >= k->buf + CHUNK)
            o = sink_flush(k, o);
        if (end - p >= BLOCK) {
            size_t n = copy_block(o, p); /* all BLOCK; what follows overwrites the rest */
            o += n;
            p += n;
            if (n == BLOCK)
                continue;
        } else {
            while (p < end && *p != '"' && *p != '\\')
                *o++ = *p++; /* under BLOCK bytes: within SLACK */
            if (p == end)
                break;
        }
        /* At the closing quote, or an escape and the byte it escapes. */
        *o++ = *p++;
        if (p[-1] == '"')
            break;
        if (p < end)
            *o++ = *p++;
    }
    *pp = p;
    return o;
}

int fr_report_print_text(const char *compact, FILE *f)
{
    sink *k = fr_xmalloc(sizeof *k);
    k->f = f;
    k->ok = true;
    char *o = k->buf, *const full = k->buf + CHUNK;
    size_t depth = 0;
    const char *p = compact, *const end = compact + strlen(compact);
    for (;;) {
        if (o >= full)
            o = sink_flush(k, o);
        unsigned char c = (unsigned char)*p++;
        switch (token[c]) {
        case T_RUN: { /* a number, true, false, null, the final newline */
            const char *s = p - 1;
            while (token[(unsigned char)*p] == T_RUN)
                p++;
            size_t n = (size_t)(p - s);
            if (n <= 32 && end - s >= 32) {
                memcpy(o, s, 32); /* one fixed copy; the next bytes overwrite the rest */
                o += n;
            } else {
                for (; s < p; s++) {
                    if (o >= full)
                        o = sink_flush(k, o);
                    *o++ = *s;
                }
            }
            break;
        }
        case T_END:
            goto done;
        case T_STR:
            *o++ = '"';
            o = copy_string(k, o, &p, end);
            if (*p == ':') { /* a key: its colon now, not another turn */
                p++;
                *o++ = ':';
                *o++ = ' ';
            }
            break;
        case T_OPEN:
            *o++ = (char)c;
            if (*p == (c == '{' ? '}' : ']'))
                *o++ = *p++;
            else
                o = newline(k, o, ++depth);
            break;
        case T_CLOSE:
            o = newline(k, o, depth ? --depth : 0);
            if (o >= full)
                o = sink_flush(k, o);
            *o++ = (char)c;
            break;
        case T_COMMA:
            *o++ = ',';
            o = newline(k, o, depth);
            break;
        default: /* T_COLON */
            *o++ = ':';
            *o++ = ' ';
            break;
        }
    }
done:
    sink_flush(k, o);
    bool ok = k->ok;
    free(k);
    return ok ? FR_OK : FR_EIO;
}

json_t *fr_report_json(const fr_results *r)
{
    fr_buf text;
    fr_buf_init(&text, 0);
    json_t *o = NULL;
    if (fr_report_text(r, &text, true) == FR_OK)
        o = json_loadb(text.data, text.len, JSON_ALLOW_NUL, NULL);
    fr_buf_close(&text);
    return o;
}

int fr_report_reindent(const char *text, fr_buf *out)
{
    json_t *o = json_loads(text, JSON_ALLOW_NUL, NULL);
    if (!o)
        return FR_EINVAL;
    fr_jsonw *w = fr_jsonw_new(out);
    fr_jsonw_value(w, NULL, o);
    int rc = fr_jsonw_ok(w) ? fr_buf_append(out, "\n", 1) : FR_ETOOBIG;
    fr_jsonw_free(w);
    json_decref(o);
    return rc;
}

/* `ms` as a person reads it into `buf` (`n` bytes, at least FR_FIXED_LEN):
 * "-" when negative, "%.0fms" below a second, else "%.2fs" of seconds;
 * fr_fixed writes the number (a table row's printf cost more than the rest
 * of its row), snprintf what it leaves. */
static void fmt_ms(char *buf, size_t n, double ms)
{
    size_t k;
    if (ms < 0)
        snprintf(buf, n, "-");
    else if (ms < 1000) {
        if ((k = fr_fixed(buf, ms, 0)) != 0 && k + 3 <= n)
            memcpy(buf + k, "ms", 3);
        else
            snprintf(buf, n, "%.0fms", ms);
    } else if ((k = fr_fixed(buf, ms / 1000, 2)) != 0 && k + 2 <= n)
        memcpy(buf + k, "s", 2);
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

/* A line per shared endpoint whose requests waited for slots other
 * processes held: how many waited and how long in all. */
static void print_capacity_waits(const fr_results *r, FILE *f)
{
    for (size_t e = 0; e < r->wf->nendpoints; e++) {
        const fr_endpoint_result *er = &r->endpoints[e];
        if (er->capacity_waits <= 0)
            continue;
        char ms[32];
        fmt_ms(ms, sizeof ms, er->capacity_wait_ms);
        fprintf(f,
                "endpoint '%s': %d request%s waited %s in all for slots other flowrun "
                "processes held (max_parallel %d)\n",
                r->wf->endpoints[e].name, er->capacity_waits, er->capacity_waits == 1 ? "" : "s",
                ms, r->wf->endpoints[e].max_parallel);
    }
}

typedef struct hues {
    const char *bold, *red, *green, *off;
} hues;

/* Puts at `o` what printf's "%-W.Ps" (`left`) or "%W.Ps" puts for `s`: at
 * most `prec` of its bytes, padded with spaces to `width`; returns what
 * follows. The caller made room for max(width, strlen(s)) bytes. */
static char *pad(char *o, const char *s, size_t width, size_t prec, bool left)
{
    size_t n = strnlen(s, prec), fill = n < width ? width - n : 0;
    if (!left) {
        memset(o, ' ', fill);
        o += fill;
    }
    memcpy(o, s, n);
    o += n;
    if (left) {
        memset(o, ' ', fill);
        o += fill;
    }
    return o;
}

/* One row of the summary's table: task `t`, its name cut to `w`. The row is
 * put together in a buffer and written at once: the bytes of
 *   "%-*.*s  %s%-9s%s %-16.16s %-5s %3d %9s %15s %10s\n"
 * (fprintf of that format was most of the summary's cost), through fprintf
 * itself when its strings would not fit the buffer. */
static void summary_row(const fr_results *r, size_t t, FILE *f, size_t w, hues c)
{
    const fr_task_result *tr = &r->tasks[t];
    fr_task_state st = tr->state;
    bool ok = st == FR_TASK_OK;
    const fr_endpoint_spec *e = tr->endpoint >= 0 ? &r->wf->endpoints[tr->endpoint] : NULL;
    const char *hue = ok ? c.green : tr->decided ? "" : c.red; /* a decided skip is no error */
    char lat[FR_FIXED_LEN], tokens[2 * FR_FIXED_LEN], cost[FR_USD_LEN], att[FR_FIXED_LEN];
    bool sent = ok && tr->endpoint >= 0; /* a fan-out sends nothing itself */
    fmt_ms(lat, sizeof lat, sent ? tr->latency_ms : -1);
    if (sent) { /* "%ld/%ld%s" */
        size_t k = fr_fixed_int(tokens, tr->usage.input);
        tokens[k++] = '/';
        k += fr_fixed_int(tokens + k, tr->usage.output);
        if (tr->usage.estimated)
            tokens[k++] = '~';
        tokens[k] = '\0';
    } else {
        memcpy(tokens, "-", 2);
    }
    fr_fixed_int(att, tr->attempts);
    const char *name = r->wf->tasks[t].name, *state = fr_task_state_name(st);
    const char *ep = e ? e->name : "-", *tier = e ? fr_tier_name(e->tier) : "-";
    fr_usd_cost(cost, tr->cost);
    char row[512];
    size_t most = w + 2 + strlen(hue) + strlen(state) + 9 + strlen(c.off) + 17 + strlen(tier) + 5 +
                  strlen(att) + 3 + sizeof lat + sizeof tokens + sizeof cost + 40;
    if (most > sizeof row) {
        fprintf(f, "%-*.*s  %s%-9s%s %-16.16s %-5s %3s %9s %15s %10s\n", (int)w, (int)w, name, hue,
                state, c.off, ep, tier, att, lat, tokens, cost);
        return;
    }
    char *o = pad(row, name, w, w, true);
    *o++ = ' ';
    *o++ = ' ';
    o = pad(o, hue, 0, SIZE_MAX, true);
    o = pad(o, state, 9, SIZE_MAX, true);
    o = pad(o, c.off, 0, SIZE_MAX, true);
    *o++ = ' ';
    o = pad(o, ep, 16, 16, true);
    *o++ = ' ';
    o = pad(o, tier, 5, SIZE_MAX, true);
    *o++ = ' ';
    o = pad(o, att, 3, SIZE_MAX, false);
    *o++ = ' ';
    o = pad(o, lat, 9, SIZE_MAX, false);
    *o++ = ' ';
    o = pad(o, tokens, 15, SIZE_MAX, false);
    *o++ = ' ';
    o = pad(o, cost, 10, SIZE_MAX, false);
    *o++ = '\n';
    fwrite(row, 1, (size_t)(o - row), f);
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
    print_capacity_waits(r, f);
    if (r->store.kind && r->store.reconnects > 0) {
        char down[32];
        fmt_ms(down, sizeof down, r->store.down_ms);
        fprintf(f,
                "state store: the connection to the shared %s store was lost and came back %ld "
                "time%s (down %s in all); what was in flight was sent again once it was back\n",
                r->store.kind, r->store.reconnects, r->store.reconnects == 1 ? "" : "s", down);
    }
    char mk[32], cp[32], p50s[32], p95s[32];
    fmt_ms(mk, sizeof mk, tt.makespan_ms);
    fmt_ms(cp, sizeof cp, tt.critical_ms);
    double p50, p95;
    latency_quantiles(r, &p50, &p95);
    fmt_ms(p50s, sizeof p50s, p50);
    fmt_ms(p95s, sizeof p95s, p95);
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
    totals tt = compute_totals(r);
    size_t w = 4;
    for (size_t t = 0; t < wf->ntasks; t++)
        if (strlen(wf->tasks[t].name) > w)
            w = strlen(wf->tasks[t].name);
    if (w > 32)
        w = 32;
    fprintf(f, "plan of %s: %zu tasks, policy %s; nothing is sent\n\n", wf->name, wf->ntasks,
            r->policy);
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
    fmt_ms(mk, sizeof mk, tt.makespan_ms);
    fmt_ms(cp, sizeof cp, tt.critical_ms);
    fprintf(f, "\nmakespan estimate %s (critical path %s)\n", mk, cp);
    char exp[FR_USD_LEN], worst[FR_USD_LEN], cap[FR_USD_LEN], bcost[FR_USD_LEN];
    fprintf(f, "cost: expected %s, worst case %s", fr_usd_cost(exp, tt.cost),
            fr_usd_cost(worst, worst_case(r)));
    if (r->has_budget)
        fprintf(f, " (cap %s)", fr_usd_cap(cap, r->budget_usd));
    if (r->baseline >= 0) { /* as the report's baseline_cost_usd and savings_pct */
        fprintf(f, "; baseline %s %s", r->wf->endpoints[r->baseline].name,
                fr_usd_cost(bcost, tt.baseline_cost));
        if (tt.baseline_cost > 0)
            fprintf(f, " (saves %.1f%%)", 100.0 * (tt.baseline_cost - tt.cost) / tt.baseline_cost);
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
}
