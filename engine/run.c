#include "engine/run_int.h"

#include "engine/output.h"
#include "engine/cache.h"
#include "engine/validate.h"
#include "engine/watch.h"
#include "engine/util/buf.h"
#include "engine/util/fdlimit.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"
#include "engine/util/redact.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A hard cap on attempts per task, over all endpoints: ends ping-pong. */
#define MAX_ATTEMPTS 10
/* How many waiting tasks one pass over the ready queue may look at. */
#define MAX_WAITERS_PER_PASS 256
/* Backoff between retries on one endpoint. */
#define BACKOFF_BASE_MS 250.0
#define BACKOFF_MAX_MS  8000.0
/* The transport's cap on body bytes, framing included. The reply cap (8 MiB
 * of text, providers/) is the one a reply meets: SSE framing can be 50 times
 * the text it carries. */
#define MAX_RESPONSE_BYTES ((size_t)1 << 30)
/* Retry-After means "not before": a wait it asks for is kept a little
 * longer, so clock granularity never sends a request a moment early. */
#define RETRY_AFTER_MARGIN_MS 20
/* Connection failures in a row (each after the cooldown of the one
 * before: 1 + 2 + 4 s) after which an endpoint counts as unreachable for
 * the rest of the run, so its tasks move elsewhere or fail with the reason
 * instead of waiting out ever longer cooldowns. */
#define DOWN_AFTER_FAILURES 4
/* Tokens a chat template may add around the messages (role markers). */
#define TEMPLATE_TOKENS 32
/* How long a task that found no file descriptor waits before it tries again. */
#define FD_WAIT_MS 50

static void pump(fr_run *r);
static void maybe_finish(fr_run *r);
static json_t *check_candidates(const fr_run *r);

/* The run's clock: real time, or the virtual time of a plan. */
static uint64_t now_ns(const fr_run *r)
{
    return r && r->plan ? (uint64_t)(r->vnow_ms * 1e6) : uv_hrtime();
}

/* The loop's millisecond clock for scheduling (cooldowns), or the plan's. */
static double clock_ms(fr_run *r)
{
    return r->plan ? r->vnow_ms : (double)uv_now(&r->loop);
}

double fr_run_cost(const fr_endpoint_spec *spec, const fr_usage *u)
{
    const fr_price *p = &spec->price;
    long cached = u->cached > u->input ? u->input : u->cached;
    double cached_price = p->cached_input > 0 ? p->cached_input : p->input;
    return ((double)(u->input - cached) * p->input + (double)cached * cached_price +
            (double)u->output * p->output) /
           1e6;
}

/* ---- setup ------------------------------------------------------------ */

static char *make_run_id(void)
{
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    unsigned suffix = (unsigned)((now_ns(NULL) ^ ((uint64_t)getpid() << 16)) & 0xffff);
    return fr_xasprintf("%s-%04x", stamp, suffix);
}

/* Sets up the runtime view of endpoint `i`: in a rehearsal the simulator
 * stands in with the same tier, capacity and price. */
static void init_endpoint(fr_run *r, size_t i)
{
    ep_rt *e = &r->eps[i];
    const fr_endpoint_spec *s = &r->wf->endpoints[i];
    e->spec = s;
    e->usable = true;
    if (r->opts.sim || r->opts.plan) {
        e->protocol = s->protocol;
        e->model = fr_xstrdup(s->name);
        e->url = NULL; /* set once the simulator listens */
        return;
    }
    e->protocol = s->protocol;
    e->url = fr_xstrdup(s->url);
    e->model = fr_xstrdup(s->model);
    if (s->api_key_env) {
        const char *key = getenv(s->api_key_env);
        if (key && *key) {
            e->api_key = fr_xstrdup(key);
            fr_redact_add(key); /* never in any log, report or row */
        } else {
            e->usable = false;
            e->unusable = fr_xasprintf("environment variable %s is not set", s->api_key_env);
        }
    }
}

/* Save paths stay inside the workflow's folder (dsl/load checked the
 * text): here no symbolic link on the way may lead out. Checked again when
 * each output is written (fr_output_write_inside). */
static int confine_saves(fr_run *r, fr_error *err)
{
    const fr_workflow *wf = r->wf;
    if (wf->save_anywhere)
        return FR_OK;
    r->save_root = realpath(wf->dir, NULL);
    if (!r->save_root)
        return fr_error_set(err, FR_EIO, wf->dir, 0, "cannot resolve the workflow's folder: %s",
                            strerror(errno));
    for (size_t t = 0; t < wf->ntasks; t++) {
        const fr_task_spec *ts = &wf->tasks[t];
        if (!ts->save)
            continue;
        char *p = fr_xasprintf("%s/%s", wf->dir, ts->save);
        fr_error why = {0};
        int rc = fr_output_check_inside(r->save_root, p, &why);
        free(p);
        if (rc != FR_OK)
            return fr_error_set(err, FR_EWORKFLOW, ts->file, ts->line,
                                "task '%s': field 'save' ('%.200s') %s; save into the workflow's "
                                "folder itself (remove or replace the symbolic link), or run "
                                "with --allow-save-anywhere to allow it",
                                ts->name, ts->save, why.msg);
    }
    return FR_OK;
}

/* Checks that every task has at least one endpoint it could ever use, so a
 * configuration problem stops the run before anything is sent. */
static int check_reachable(fr_run *r, fr_error *err)
{
    const fr_workflow *wf = r->wf;
    for (size_t t = 0; t < wf->ntasks; t++) {
        const fr_task_spec *ts = &wf->tasks[t];
        const char *why = NULL;
        bool any = false;
        for (size_t e = 0; e < r->neps && !any; e++) {
            const fr_endpoint_spec *es = &wf->endpoints[e];
            if (ts->endpoint && strcmp(ts->endpoint, es->name) != 0)
                continue;
            if (ts->tier != FR_TIER_ANY && es->tier != ts->tier)
                continue;
            if (ts->is_private && es->tier != FR_TIER_LOCAL)
                continue;
            if (!r->eps[e].usable) {
                why = r->eps[e].unusable;
                continue;
            }
            any = true;
        }
        if (any)
            continue;
        if (why)
            return fr_error_set(err, FR_ECONFIG, ts->file, ts->line,
                                "task '%s' has no usable endpoint: %s", ts->name, why);
        /* Private tasks without a local endpoint fail at run time with a
         * clear reason; the rest of the workflow still runs. */
    }
    return FR_OK;
}

/* A plan reads what earlier runs observed (latencies, output tokens) from
 * the state store the run it plans would write: sim.db for --sim, else
 * state.db. Opened read-only and never created; without one, or when it
 * cannot be read (a warning), the plan uses its defaults. */
static void load_observed(fr_run *r)
{
    char *state = fr_run_state_path(r->opts.state_dir);
    if (r->opts.sim) {
        size_t n = strlen(state);
        char *sim = fr_xasprintf("%.*ssim.db", (int)(n - strlen("state.db")), state);
        free(state);
        state = sim;
    }
    fr_store *st = NULL;
    fr_error err = {0};
    int rc = fr_store_open_readonly(state, &st, &err);
    if (rc == FR_OK)
        rc = fr_store_observed(st, r->wf->name, &r->observed, &err);
    r->observed_from = state; /* said in the plan, with history or without */
    state = NULL;
    if (rc != FR_OK && rc != FR_ENOENT) {
        char msg[1400];
        fr_log(FR_LOG_WARN, "plan", "error=\"%s\"; the plan uses its default estimates",
               fr_error_format(&err, msg, sizeof msg));
    }
    fr_store_close(st);
    free(state);
}

int fr_run_new(fr_workflow *wf, const fr_run_opts *opts, fr_run **out, fr_error *err)
{
    int rc;
    char *policy_path = NULL;
    if (opts->sim && !opts->standin)
        return fr_error_set(err, FR_EINVAL, "--sim", 0,
                            "a rehearsal needs a stand-in server (fr_run_opts.standin)");
    fr_run *r = fr_xcalloc(1, sizeof *r);
    r->wf = wf;
    r->opts = *opts;
    r->baseline = -1;
    r->policy_sites = json_object();
    r->run_id = make_run_id();
    rc = fr_graph_from_workflow(wf, &r->g, err);
    if (rc != FR_OK)
        goto cleanup;
    r->neps = wf->nendpoints;
    r->eps = fr_xcalloc(r->neps ? r->neps : 1, sizeof *r->eps);
    for (size_t i = 0; i < r->neps; i++)
        init_endpoint(r, i);
    rc = check_reachable(r, err);
    if (rc != FR_OK)
        goto cleanup;
    const char *baseline = opts->baseline ? opts->baseline : wf->baseline;
    if (baseline) {
        r->baseline = fr_workflow_find_endpoint(wf, baseline);
        if (r->baseline < 0) {
            rc = fr_error_set(err, FR_ECONFIG, "--baseline", 0, "no endpoint named '%s'", baseline);
            goto cleanup;
        }
    }
    /* --budget replaces the workflow's run cap, whatever either says; 0 is a
     * cap like any other. */
    r->has_budget = opts->has_budget || wf->budget.has_usd;
    r->budget_usd = opts->has_budget ? opts->budget_usd : wf->budget.has_usd ? wf->budget.usd : 0;
    r->budget = fr_budget_new(r->has_budget, r->budget_usd, false, wf->budget.alert);
    r->alerts = json_array();

    const char *spec = opts->policy ? opts->policy : wf->policy ? wf->policy : "balanced";
    rc = fr_policy_resolve(spec, opts->policy ? NULL : wf->dir, &policy_path, err);
    if (rc == FR_OK)
        rc = fr_policy_load(policy_path, NULL, 1, &r->policy, err);
    if (rc != FR_OK)
        goto cleanup;
    r->policy_path = policy_path;
    policy_path = NULL;
    r->policy_versions = 1;
    r->reloads = json_array();

    int *prio = fr_xcalloc(wf->ntasks ? wf->ntasks : 1, sizeof *prio);
    int *cap = fr_xcalloc(r->neps ? r->neps : 1, sizeof *cap);
    for (size_t t = 0; t < wf->ntasks; t++)
        prio[t] = wf->tasks[t].priority;
    for (size_t e = 0; e < r->neps; e++)
        cap[e] = wf->endpoints[e].max_parallel;
    r->sched = fr_sched_new(r->g, prio, r->neps, cap);
    /* Two descriptors per transfer, a reserve for the rest: at ulimit -n
     * 1024, max_parallel = 1000 runs as many as fit instead of failing
     * sockets (engine/util/fdlimit.h). */
    r->fd_cap = r->fd_cap_now = fr_fd_transfer_cap(fr_fd_limit());
    fr_sched_set_total_cap(r->sched, r->fd_cap);
    long slots = 0;
    for (size_t e = 0; e < r->neps; e++)
        slots += cap[e] > 0 ? cap[e] : 1;
    if (r->fd_cap > 0 && slots > r->fd_cap)
        fr_log(FR_LOG_INFO, "sched",
               "max_parallel_total=%ld fd_limit=%ld transfers_at_once=%d (file descriptors "
               "allow no more; raise ulimit -n for more)",
               slots, fr_fd_limit(), r->fd_cap);
    free(prio);
    free(cap);
    r->queued = fr_xcalloc(r->neps ? r->neps : 1, sizeof *r->queued);
    /* The self-check offers the run's own endpoints, as route will see them. */
    json_t *check_cands = check_candidates(r);
    rc = fr_policy_check(r->policy, check_cands, err);
    json_decref(check_cands);
    if (rc != FR_OK)
        goto cleanup;

    r->tasks = fr_xcalloc(wf->ntasks ? wf->ntasks : 1, sizeof *r->tasks);
    for (size_t t = 0; t < wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        tr->run = r;
        tr->idx = t;
        tr->ep = tr->retry_ep = -1;
        tr->unreached = tr->moved_from = -1;
        tr->route_reason = "first";
        tr->check_score = -1;
        tr->tried = fr_xcalloc(r->neps ? r->neps : 1, 1);
        tr->decisions = json_array();
    }

    r->plan = opts->plan;
    if (r->plan)
        load_observed(r);
    if (!r->plan) {
        char *state = fr_run_state_path(opts->state_dir);
        if (opts->sim) {
            /* A rehearsal spends nothing: it keeps its own ledger, so its
             * pretend costs never count against a monthly cap. */
            size_t n = strlen(state);
            char *sim = fr_xasprintf("%.*ssim.db", (int)(n - strlen("state.db")), state);
            free(state);
            state = sim;
        }
        rc = fr_store_open(state, &r->store, err);
        free(state);
        if (rc != FR_OK)
            goto cleanup;
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(r->month, sizeof r->month, "%Y-%m", &tm);
        if (wf->budget.has_monthly) {
            fr_budget_free(r->budget);
            r->budget = fr_budget_new(r->has_budget, r->budget_usd, true, wf->budget.alert);
        }
    }
    r->out_dir =
        opts->out_dir ? fr_xstrdup(opts->out_dir) : fr_xasprintf(".flowrun/out/%s", r->run_id);
    rc = r->plan ? FR_OK : fr_output_mkdirs(r->out_dir, err);
    if (rc == FR_OK)
        rc = confine_saves(r, err);
    for (size_t t = 0; rc == FR_OK && !r->plan && t < wf->ntasks; t++)
        if (wf->tasks[t].save) {
            char *p = wf->tasks[t].save[0] == '/'
                          ? fr_xstrdup(wf->tasks[t].save)
                          : fr_xasprintf("%s/%s", wf->dir, wf->tasks[t].save);
            rc = fr_output_mkparents(p, err);
            free(p);
        }
    if (rc != FR_OK)
        goto cleanup;
    *out = r;
    r = NULL;
cleanup:
    free(policy_path);
    fr_run_free(r);
    return rc;
}

char *fr_run_state_path(const char *state_dir)
{
    const char *env = getenv("FLOWRUN_STATE");
    if (state_dir && *state_dir)
        return fr_xasprintf("%s/state.db", state_dir);
    if (env && *env)
        return fr_xasprintf("%s/state.db", env);
    return fr_xstrdup(".flowrun/state.db");
}

const char *fr_run_id(const fr_run *r)
{
    return r->run_id;
}

const char *fr_run_out_dir(const fr_run *r)
{
    return r->out_dir;
}

/* ---- task ends ---------------------------------------------------------- */

static void on_skip(void *ud, size_t task, size_t cause)
{
    fr_run *r = ud;
    task_rt *t = &r->tasks[task];
    free(t->reason);
    t->reason = fr_xasprintf("dependency '%s' did not succeed", r->wf->tasks[cause].name);
    t->end_ns = now_ns(t->run);
    if (r->opts.progress)
        fr_log(FR_LOG_WARN, "sched", "task=%s status=skipped reason=\"%s\"",
               r->wf->tasks[task].name, t->reason);
}

static void stop_task_timers(task_rt *t)
{
    if (!t->timers_init)
        return;
    uv_timer_stop(&t->deadline);
    if (t->retry_armed) {
        uv_timer_stop(&t->retry_timer);
        t->retry_armed = false;
        t->run->retries_armed--;
    }
}

/* Ends task `t` without success: records why, skips its dependents. */
static void task_end(task_rt *t, fr_task_state state, const char *reason)
{
    fr_run *r = t->run;
    stop_task_timers(t);
    free(t->reason);
    t->reason = reason ? fr_xstrdup(reason) : NULL;
    t->end_ns = now_ns(t->run);
    if (r->opts.progress)
        fr_log(FR_LOG_WARN, "sched", "task=%s status=%s reason=\"%s\"", r->wf->tasks[t->idx].name,
               fr_task_state_name(state), reason ? reason : "");
    fr_sched_finish(r->sched, t->idx, state, on_skip, r);
}

static void on_written(void *ud, int rc, const char *path)
{
    fr_run *r = ud;
    if (rc != FR_OK) {
        r->write_errors++;
        if (rc == FR_EINVAL)
            fr_log(FR_LOG_ERROR, "output",
                   "path=%s error=\"refused: the save path now leads outside the workflow's "
                   "folder (a symbolic link); remove the link, or run with "
                   "--allow-save-anywhere\"",
                   path);
        else
            fr_log(FR_LOG_ERROR, "output", "path=%s error=\"cannot write the output\"", path);
    }
}

static void write_outputs(task_rt *t)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    char *json_text = NULL;
    const char *data = t->reply.text;
    if (t->reply.json) {
        json_text = json_dumps(t->reply.json, JSON_INDENT(2) | JSON_ENCODE_ANY);
        data = json_text;
    }
    char *path = fr_xasprintf("%s/%s.%s", r->out_dir, ts->name, json_text ? "json" : "txt");
    if (fr_output_write(&r->loop, path, data, strlen(data), on_written, r) != FR_OK)
        on_written(r, FR_EIO, path);
    free(path);
    if (ts->save) {
        path =
            ts->save[0] == '/' ? fr_xstrdup(ts->save) : fr_xasprintf("%s/%s", r->wf->dir, ts->save);
        if (fr_output_write_inside(&r->loop, r->save_root, path, data, strlen(data), on_written,
                                   r) != FR_OK)
            on_written(r, FR_EIO, path);
        free(path);
    }
    free(json_text);
}

static void task_ok(task_rt *t)
{
    fr_run *r = t->run;
    stop_task_timers(t);
    t->end_ns = now_ns(t->run);
    if (!r->plan)
        write_outputs(t);
    if (r->opts.progress) {
        const ep_rt *e = &r->eps[t->ep];
        fr_log(FR_LOG_WARN, "sched",
               "task=%s status=ok endpoint=%s tier=%s latency_ms=%.0f tokens_in=%ld "
               "tokens_out=%ld",
               r->wf->tasks[t->idx].name, e->spec->name, fr_tier_name(e->spec->tier), t->latency_ms,
               t->usage.input, t->usage.output);
    }
    fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
}

/* ---- routing ------------------------------------------------------------ */

/* The median of the endpoint's recent latencies, -1 before any. */
static double p50(const ep_rt *e)
{
    size_t cap = sizeof e->lat / sizeof *e->lat;
    size_t n = e->nlat < cap ? e->nlat : cap;
    if (n == 0)
        return -1;
    double v[sizeof e->lat / sizeof *e->lat];
    memcpy(v, e->lat, n * sizeof *v);
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && v[k - 1] > v[k]; k--) {
            double tmp = v[k];
            v[k] = v[k - 1];
            v[k - 1] = tmp;
        }
    return v[n / 2];
}

static double est_cost(const fr_endpoint_spec *s, long input, int max_tokens)
{
    return ((double)input * s->price.input + (double)max_tokens * s->price.output) / 1e6;
}

/* What keeps task `t` off endpoint `e` (ignoring capacity and cooldown):
 * nothing, the task's own constraints (privacy, a pinned endpoint or
 * tier), or the endpoint (no key, too small a context, failed already). */
enum { EXCL_NONE = 0, EXCL_TASK, EXCL_ENDPOINT };

static int exclusion(const fr_run *r, const task_rt *t, size_t e, const char **why)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    const ep_rt *ep = &r->eps[e];
    if (ts->is_private && ep->spec->tier != FR_TIER_LOCAL)
        return *why = "the task is private and may only run on a local endpoint", EXCL_TASK;
    if (ts->endpoint && strcmp(ts->endpoint, ep->spec->name) != 0)
        return *why = "the task is pinned to another endpoint", EXCL_TASK;
    if (ts->tier != FR_TIER_ANY && ts->tier != ep->spec->tier)
        return *why = "the task is pinned to another tier", EXCL_TASK;
    if (!ep->usable)
        return *why = ep->unusable ? ep->unusable : "it is not usable", EXCL_ENDPOINT;
    if (ep->spec->context > 0 && t->est_input + ts->max_tokens > ep->spec->context)
        return *why = "the prompt and max_tokens exceed its context window", EXCL_ENDPOINT;
    if (t->tried[e])
        return *why = "it already failed this task", EXCL_ENDPOINT;
    return EXCL_NONE;
}

/* Whether task `t` may ever use endpoint `e` (ignoring capacity and
 * cooldown); when not, *why says so. */
static bool allowed(const fr_run *r, const task_rt *t, size_t e, const char **why)
{
    return exclusion(r, t, e, why) == EXCL_NONE;
}

/* Why no endpoint can take task `t`, every one being excluded: the
 * endpoints the task itself would accept, each with what keeps it out ("the
 * prompt (~1000 tokens) + max_tokens 512 exceeds small's context of 1000"),
 * and only when there is none, the task's own constraint. Returns owned. */
static char *no_endpoint_reason(const fr_run *r, const task_rt *t)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "no endpoint can take this task: ");
    size_t head = b.len;
    const char *task_why = "no endpoint is declared";
    for (size_t e = 0; e < r->neps; e++) {
        const char *why;
        const ep_rt *ep = &r->eps[e];
        int ex = exclusion(r, t, e, &why);
        if (ex == EXCL_TASK)
            task_why = why;
        if (ex != EXCL_ENDPOINT)
            continue;
        if (b.len > head)
            fr_buf_puts(&b, "; ");
        if (!ep->usable)
            fr_buf_printf(&b, "%s: %s", ep->spec->name, ep->unusable ? ep->unusable : why);
        else if (ep->spec->context > 0 && t->est_input + ts->max_tokens > ep->spec->context)
            fr_buf_printf(&b,
                          "the prompt (~%ld tokens) + max_tokens %d exceeds %s's context of %ld",
                          t->est_input, ts->max_tokens, ep->spec->name, ep->spec->context);
        else
            fr_buf_printf(&b, "%s: %s", ep->spec->name, why);
    }
    if (b.len == head && ts->is_private) {
        char privacy[700];
        /* "private: inherited from 'x'" reads "private task (inherited from 'x')". */
        const char *why_private = fr_workflow_privacy_text(r->wf, t->idx, privacy, sizeof privacy);
        why_private += strncmp(why_private, "private: ", 9) == 0 ? 9 : strlen(why_private);
        fr_buf_close(&b);
        return fr_xasprintf("private task%s%s%s: no usable local endpoint (private work never "
                            "leaves the local tier)",
                            *why_private ? " (" : "", why_private, *why_private ? ")" : "");
    }
    if (b.len == head)
        fr_buf_puts(&b, task_why);
    return fr_buf_take(&b);
}

enum { BUDGET_FITS = 0, BUDGET_WAIT, BUDGET_NEVER };

/* Whether the worst case of task `t` on endpoint `e` fits the caps now
 * (BUDGET_FITS), may fit once requests in flight settle (BUDGET_WAIT), or
 * never will (BUDGET_NEVER, with *why). An endpoint without a price cannot
 * be checked, so it is kept out under a cap unless the workflow allows it. */
/* Takes more of the monthly cap from the state store when `amount` does not
 * fit this run's share of the month: the shortfall, or a tenth of the cap
 * when that is more, so the store is not asked at every request. */
static void grow_month_lease(fr_run *r, double amount)
{
    double need = fr_budget_month_shortfall(r->budget, amount);
    if (need <= 0 || !r->store || !r->wf->budget.has_monthly)
        return;
    double want = need > r->wf->budget.monthly_usd / 10 ? need : r->wf->budget.monthly_usd / 10;
    double granted = 0;
    fr_error err = {0};
    fr_store_month(r->store, r->month); /* a run may cross into a new month */
    if (fr_store_lease(r->store, r->month, r->wf->budget.monthly_usd, want, r->run_id, &granted,
                       &err) != FR_OK) {
        if (!r->lease_failed) {
            char msg[1400];
            fr_log(FR_LOG_ERROR, "budget", "error=\"%s\"; no more of the monthly cap is taken",
                   fr_error_format(&err, msg, sizeof msg));
            r->lease_failed = true;
        }
        return;
    }
    fr_budget_add_allowance(r->budget, granted);
}

/* Returns why a worst case of `worst` on endpoint `ep` (borrowed) does not
 * fit the monthly cap, owned, with the month's figures from the ledger: the
 * month's cap, what every run spent in it so far, and what runs in progress
 * elsewhere hold of it. */
static char *month_refusal(fr_run *r, const char *ep, double worst)
{
    char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN], held[FR_USD_LEN];
    double s = 0, used = 0;
    fr_error err = {0};
    fr_usd_cost(w, worst);
    fr_usd_cap(cap, r->wf->budget.monthly_usd);
    if (!r->store || fr_store_month_spent(r->store, r->month, &s, &err) != FR_OK)
        return fr_xasprintf("the worst case on '%s' (%s) does not fit the monthly cap (%s)", ep, w,
                            cap);
    fr_usd_cost(spent, s);
    if (fr_store_month_used(r->store, r->month, &used, &err) == FR_OK && used - s > 1e-9)
        return fr_xasprintf("the worst case on '%s' (%s) does not fit the monthly cap (%s; %s "
                            "spent this month, %s held by other runs in progress)",
                            ep, w, cap, spent, fr_usd_cost(held, used - s));
    return fr_xasprintf("the worst case on '%s' (%s) does not fit the monthly cap (%s; %s spent "
                        "this month)",
                        ep, w, cap, spent);
}

static int budget_check(fr_run *r, const task_rt *t, size_t e, char **why)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    const fr_endpoint_spec *s = r->eps[e].spec;
    double worst = est_cost(s, t->worst_input, ts->max_tokens);
    bool capped = fr_budget_capped(r->budget) || ts->has_budget;
    if (capped && s->tier == FR_TIER_CLOUD && !s->price.set && !r->wf->budget.allow_unpriced) {
        if (why && !*why)
            *why = fr_xasprintf("endpoint '%s' has no price, so a cap cannot be checked on it "
                                "(give it a price, or set budget.allow_unpriced)",
                                s->name);
        return BUDGET_NEVER;
    }
    if (ts->has_budget && t->cost + worst > ts->budget_usd + 1e-8) {
        char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN];
        if (why && !*why)
            *why = fr_xasprintf("the worst case on '%s' (%s) does not fit the task's cap "
                                "(%s; %s spent)",
                                s->name, fr_usd_cost(w, worst), fr_usd_cap(cap, ts->budget_usd),
                                fr_usd_cost(spent, t->cost));
        return BUDGET_NEVER;
    }
    if (!fr_budget_fits(r->budget, worst))
        grow_month_lease(r, worst);
    if (fr_budget_fits(r->budget, worst))
        return BUDGET_FITS;
    if (fr_budget_may_fit(r->budget, worst))
        return BUDGET_WAIT;
    if (why && !*why) {
        bool run_cap = fr_budget_has_cap(r->budget, FR_CAP_RUN) &&
                       fr_budget_spent(r->budget) + worst > r->budget_usd + 1e-8;
        char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN];
        if (run_cap || !fr_budget_has_cap(r->budget, FR_CAP_MONTH))
            *why = fr_xasprintf("the worst case on '%s' (%s) does not fit the run cap (%s; %s "
                                "spent)",
                                s->name, fr_usd_cost(w, worst), fr_usd_cap(cap, r->budget_usd),
                                fr_usd_cost(spent, fr_budget_spent(r->budget)));
        else
            *why = month_refusal(r, s->name, worst);
    }
    return BUDGET_NEVER;
}

/* Reports that spend of `spent` USD crossed the alert fraction of the cap
 * of `kind` of `cap` USD: on the terminal and in the report. */
static void add_alert(fr_run *r, fr_cap_kind kind, double cap, double spent)
{
    char c[FR_USD_LEN], s[FR_USD_LEN];
    bool month = kind == FR_CAP_MONTH;
    fr_log(FR_LOG_WARN, "budget", "alert: %s spent%s, %g%% of the %s cap of %s",
           fr_usd_cost(s, spent), month ? " this month" : "", 100 * fr_budget_alert(r->budget),
           month ? "monthly" : "run", fr_usd_cap(c, cap));
    json_array_append_new(r->alerts, json_pack("{s:s, s:f, s:f, s:f, s:f}", "cap",
                                               fr_cap_name(kind), "cap_usd", cap, "fraction",
                                               fr_budget_alert(r->budget), "spent_usd", spent,
                                               "at_ms", (double)(now_ns(r) - r->start_ns) / 1e6));
}

/* Books what an attempt cost (`charge`, USD) and releases its reservation;
 * reports the run cap's alert threshold the first time spend crosses it
 * (the monthly one is reported where attempts are booked). */
static void settle(task_rt *t, double charge)
{
    fr_run *r = t->run;
    fr_budget_settle(r->budget, t->reserved, charge);
    t->reserved = 0;
    t->cost += charge;
    r->spent_usd += charge;
    if (!r->plan && fr_budget_next_alert(r->budget) == FR_CAP_RUN)
        add_alert(r, FR_CAP_RUN, r->budget_usd,
                  fr_budget_spent(r->budget)); /* a plan spends nothing */
}

/* Endpoint `e` as a policy sees it, for a task of `est_input` tokens in and
 * at most `max_tokens` out. `queued` counts the ready tasks ahead of this one
 * (in this pass over the ready queue) that wait for this endpoint. */
static json_t *endpoint_json(const fr_run *r, size_t e, long est_input, int max_tokens)
{
    const ep_rt *ep = &r->eps[e];
    const fr_endpoint_spec *s = ep->spec;
    json_t *tags = json_array();
    for (size_t i = 0; i < s->ntags; i++)
        json_array_append_new(tags, json_string(s->tags[i]));
    double lat = p50(ep);
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:o, s:o, s:I}", "name",
        s->name, "tier", fr_tier_name(s->tier), "protocol", fr_protocol_name(ep->protocol), "model",
        ep->model, "in_flight", fr_sched_in_flight(r->sched, e), "max_parallel",
        fr_sched_capacity(r->sched, e), "free", fr_sched_free_slots(r->sched, e), "queued",
        (json_int_t)(r->queued ? r->queued[e] : 0), "quality", s->quality, "price_in",
        s->price.input, "price_out", s->price.output, "est_cost",
        est_cost(s, est_input, max_tokens), "latency_p50", lat >= 0 ? json_real(lat) : json_null(),
        "tags", tags, "context", (json_int_t)s->context);
}

static json_t *candidate_json(const fr_run *r, const task_rt *t, size_t e)
{
    return endpoint_json(r, e, t->est_input, r->wf->tasks[t->idx].max_tokens);
}

/* The candidates of the policy self-check: every usable endpoint of the run,
 * for a made-up task of 100 tokens in and 256 out (fr_policy_check). */
static json_t *check_candidates(const fr_run *r)
{
    json_t *cj = json_array();
    for (size_t e = 0; e < r->neps; e++)
        if (r->eps[e].usable)
            json_array_append_new(cj, endpoint_json(r, e, 100, 256));
    return cj;
}

static json_t *task_json(const fr_run *r, const task_rt *t)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    json_t *tried = json_array();
    for (size_t e = 0; e < r->neps; e++)
        if (t->tried[e])
            json_array_append_new(tried, json_string(r->eps[e].spec->name));
    return json_pack("{s:s, s:s, s:o, s:f, s:i, s:b, s:i, s:s, s:o, s:I, s:i}", "name", ts->name,
                     "agent", r->wf->agents[ts->agent].name, "type",
                     ts->type ? json_string(ts->type) : json_null(), "complexity", ts->complexity,
                     "priority", ts->priority, "private", ts->is_private, "attempt",
                     t->attempts + 1, "reason", t->route_reason, "tried", tried, "est_input_tokens",
                     (json_int_t)t->est_input, "max_tokens", ts->max_tokens);
}

static json_t *run_json(const fr_run *r)
{
    size_t done = r->wf->ntasks - fr_sched_unfinished(r->sched);
    double s = fr_budget_spent(r->budget);
    return json_pack("{s:o, s:f, s:f, s:o, s:f, s:I, s:I, s:I}", "budget",
                     r->has_budget ? json_real(r->budget_usd) : json_null(), "spent", s, "reserved",
                     fr_budget_reserved(r->budget), "remaining",
                     r->has_budget ? json_real(fr_budget_remaining(r->budget, FR_CAP_RUN))
                                   : json_null(),
                     "elapsed", (double)(now_ns(r) - r->start_ns) / 1e9, "done", (json_int_t)done,
                     "total", (json_int_t)r->wf->ntasks, "ready",
                     (json_int_t)(fr_sched_ready(r->sched) + r->pass_waiters));
}

/* The built-in choice when the policy cannot decide: a free candidate that
 * covers the task's complexity, local before cloud, then the cheapest. */
static long default_choice(const fr_run *r, const task_rt *t, const long *cands, size_t n)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    long best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        const ep_rt *e = &r->eps[cands[i]];
        if (fr_sched_free_slots(r->sched, (size_t)cands[i]) <= 0)
            continue;
        double score = -est_cost(e->spec, t->est_input, ts->max_tokens) * 100;
        if (e->spec->quality < ts->complexity)
            score -= (ts->complexity - e->spec->quality) * 10;
        if (e->spec->tier == FR_TIER_LOCAL)
            score += 2;
        if (best < 0 || score > best_score) {
            best = cands[i];
            best_score = score;
        }
    }
    return best;
}

/* Appends a routing decision to the task's log: who decided (the policy,
 * or "default"), its version, why it was asked, the endpoint, and the
 * candidates it saw (`cands`, borrowed: their free slots and estimated
 * costs). With --explain it is printed as it happens. */
static void record_decision(task_rt *t, const char *policy, int version, const char *reason,
                            size_t ep, const json_t *cands)
{
    fr_run *r = t->run;
    json_t *seen = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(cands, i, c)
    {
        json_array_append_new(seen, json_pack("{s:O, s:O, s:O}", "name", json_object_get(c, "name"),
                                              "free", json_object_get(c, "free"), "est_cost",
                                              json_object_get(c, "est_cost")));
    }
    json_t *d = json_pack("{s:s, s:i, s:s, s:s, s:i, s:n, s:o}", "policy", policy, "version",
                          version, "reason", reason, "endpoint", r->eps[ep].spec->name, "attempt",
                          t->attempts + 1, "outcome", "candidates", seen);
    json_array_append_new(t->decisions, d);
    if (!r->opts.explain)
        return;
    fr_buf line;
    fr_buf_init(&line, 0);
    fr_buf_printf(&line, "explain: %s -> %s  (%s v%d, %s; candidates:", r->wf->tasks[t->idx].name,
                  r->eps[ep].spec->name, policy, version, reason);
    json_array_foreach(seen, i, c)
    {
        char est[FR_USD_LEN];
        fr_buf_printf(&line, " %s free=%lld est=%s", json_string_value(json_object_get(c, "name")),
                      (long long)json_integer_value(json_object_get(c, "free")),
                      fr_usd_cost(est, json_number_value(json_object_get(c, "est_cost"))));
    }
    fr_buf_puts(&line, ")");
    char privacy[700];
    if (*fr_workflow_privacy_text(r->wf, t->idx, privacy, sizeof privacy))
        fr_buf_printf(&line, "  %s", privacy);
    fprintf(stderr, "%s\n", fr_buf_str(&line));
    fr_buf_close(&line);
}

/* Counts a decision the policy failed to make and logs its failure site
 * once, however many decisions it costs. */
static void policy_failed(fr_run *r, const char *task, const fr_error *perr)
{
    char msg[1400], site[700];
    fr_error_format(perr, msg, sizeof msg);
    r->policy_errors++;
    snprintf(site, sizeof site, "%s:%d:%d", perr->source, perr->line, perr->code);
    if (json_object_get(r->policy_sites, site))
        return;
    json_object_set_new(r->policy_sites, site, json_true());
    fr_log(FR_LOG_WARN, "policy", "task=%s error=\"%s\"; the built-in default decides", task, msg);
}

/* Logs a failed write to the state store once; the run then stops
 * admitting work: a run never goes on without durability. */
static void store_write_failed(fr_run *r, const fr_error *err)
{
    if (r->store_failed)
        return;
    char msg[1400];
    fr_log(FR_LOG_ERROR, "store", "error=\"%s\"", fr_error_format(err, msg, sizeof msg));
    r->store_failed = true;
}

/* Books the attempt task `t` is about to send in the state store, in flight
 * at its worst case (t->reserved), before a byte goes out: should the
 * process die, that charge stays (fr_store_reserve). Returns false, logged,
 * when it cannot be written: then the request must not be sent. */
static bool reserve_attempt(task_rt *t)
{
    fr_run *r = t->run;
    t->row = 0;
    if (!r->store || t->ep < 0)
        return true;
    const ep_rt *e = &r->eps[t->ep];
    fr_attempt_rec a = {
        .run_id = r->run_id,
        .task = r->wf->tasks[t->idx].name,
        .endpoint = e->spec->name,
        .tier = fr_tier_name(e->spec->tier),
        .model = e->model,
        .attempt = t->attempts,
        .cost_usd = t->reserved,
    };
    fr_error err = {0};
    if (fr_store_reserve(r->store, &a, &t->row, &err) == FR_OK)
        return true;
    t->row = 0;
    store_write_failed(r, &err);
    return false;
}

/* Books one attempt in the state store: what it used, cost and how it
 * ended; an attempt booked in flight settles to that. A failure to write is
 * logged once and the run stops admitting work. */
static void book_attempt(task_rt *t, const char *outcome, const char *error, const fr_usage *u,
                         double cost, double latency_ms)
{
    fr_run *r = t->run;
    if (!r->store || t->ep < 0)
        return;
    const ep_rt *e = &r->eps[t->ep];
    static const fr_usage none = {0};
    if (!u)
        u = &none;
    fr_attempt_rec a = {
        .run_id = r->run_id,
        .task = r->wf->tasks[t->idx].name,
        .endpoint = e->spec->name,
        .tier = fr_tier_name(e->spec->tier),
        .model = e->model,
        .outcome = strcmp(outcome, "retry") == 0 ? "quality" : outcome,
        .error = error,
        .attempt = t->attempts,
        .input = u->input,
        .output = u->output,
        .cached = u->cached,
        .estimated = u->estimated,
        .cost_usd = cost,
        .latency_ms = latency_ms,
    };
    char *clean_error = fr_redact(error); /* a server may echo the key */
    a.error = clean_error;
    fr_error err = {0};
    int rc;
    long long row = t->row;
    t->row = 0;
    if (r->wf->budget.has_monthly && cost > 0 && !r->month_alerted) {
        /* The monthly alert fires once for the whole ledger: in the one
         * booking, of any run or process, that takes the month's total
         * across the threshold. A run that starts past it never alerts. */
        double total = 0, at = fr_budget_alert(r->budget) * r->wf->budget.monthly_usd;
        rc = row ? fr_store_settle(r->store, row, &a, &total, &err)
                 : fr_store_add_attempt_total(r->store, &a, &total, &err);
        if (rc == FR_OK && r->wf->budget.monthly_usd > 0 && total >= at - 1e-8 &&
            total - cost < at - 1e-8) {
            r->month_alerted = true;
            add_alert(r, FR_CAP_MONTH, r->wf->budget.monthly_usd, total);
        }
    } else {
        rc = row ? fr_store_settle(r->store, row, &a, NULL, &err)
                 : fr_store_add_attempt(r->store, &a, &err);
    }
    free(clean_error);
    if (rc != FR_OK)
        store_write_failed(r, &err);
}

/* Sets the outcome of the task's latest decision: "ok", "quality", "error",
 * "timeout" or "cancelled", with the error message (borrowed, may be NULL). */
static void set_decision_outcome(task_rt *t, const char *outcome, const char *error)
{
    size_t n = json_array_size(t->decisions);
    if (!n)
        return;
    json_t *d = json_array_get(t->decisions, n - 1);
    json_object_set_new(d, "outcome", json_string(outcome));
    if (error)
        json_object_set_new(d, "error", json_string(error));
}

static void on_wake(uv_timer_t *timer)
{
    pump(timer->data);
}

static void arm_wake(fr_run *r, double at_ms)
{
    double now = clock_ms(r);
    uint64_t delay = at_ms > now ? (uint64_t)(at_ms - now) + 1 : 1;
    uint64_t due = uv_timer_get_due_in(&r->wake);
    if (!uv_is_active((uv_handle_t *)&r->wake) || delay < due)
        uv_timer_start(&r->wake, on_wake, delay, 0);
}

/* ---- attempts ----------------------------------------------------------- */

static void dispatch(task_rt *t, size_t ep);
static bool other_endpoint(const fr_run *r, const task_rt *t);

static bool retryable(int rc, long status)
{
    switch (rc) {
    case FR_ECONNECT:
    case FR_ETIMEDOUT:
    case FR_ETRUNCATED:
    case FR_EIO:
    case FR_EPROTO:
    case FR_ERETRY:
        return true;
    case FR_EHTTP:
        return status == 408 || status == 409 || status == 425 || status == 429 || status >= 500;
    default:
        return false;
    }
}

static void on_retry_timer(uv_timer_t *timer)
{
    task_rt *t = timer->data;
    t->retry_armed = false;
    t->run->retries_armed--;
    fr_sched_requeue(t->run->sched, t->idx);
    pump(t->run);
}

static void on_deadline(uv_timer_t *timer)
{
    task_rt *t = timer->data;
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    if (t->xfer) {
        fr_http_cancel(r->http, t->xfer);
        t->xfer = NULL;
        fr_sched_release_slot(r->sched, (size_t)t->ep);
        double charge = t->reserved;
        settle(t, charge); /* it may have been billed: keep the worst case */
        book_attempt(t, "timeout", "task timeout", NULL, charge,
                     (double)(now_ns(r) - t->attempt_ns) / 1e6);
        set_decision_outcome(t, "timeout", "task timeout");
    }
    fr_adapter_free(t->adapter);
    t->adapter = NULL;
    char *why = t->fd_wait ? fr_xasprintf("timed out after %g s (task timeout) while waiting for "
                                          "a file descriptor; last error: %s; raise ulimit -n",
                                          ts->timeout_s, t->last_error)
                           : fr_xasprintf("timed out after %g s (task timeout)", ts->timeout_s);
    task_end(t, FR_TASK_FAILED, why);
    free(why);
    maybe_finish(r);
    pump(r);
}

/* A 429 that says the account's quota or spending limit is used up: waiting
 * does not help, so it is not retried. */
static bool quota_exhausted(long status, const char *msg)
{
    return status == 429 && msg &&
           (strstr(msg, "insufficient_quota") || strstr(msg, "quota") ||
            strstr(msg, "spending limit") || strstr(msg, "billing"));
}

/* Endpoint health after a failed attempt, for every task: a refused key or
 * an exhausted quota takes the endpoint out of the run (the message names
 * the key's variable, never the key); a 429/503 cools it down for its
 * Retry-After, and one without it, or a connection failure, for a cooldown
 * that doubles with each failure in a row (1 s up to 60 s), so a saturated
 * or rebooting server is not hammered and no policy is offered it meanwhile. */
static void cool_down(fr_run *r, ep_rt *e, int rc, long status, double retry_after_s,
                      const char *msg)
{
    if (rc == FR_EHTTP && (status == 401 || status == 403 || quota_exhausted(status, msg))) {
        if (!e->usable)
            return;
        e->usable = false;
        free(e->unusable);
        if (status == 401 || status == 403)
            e->unusable = fr_xasprintf("HTTP %ld: its key was refused; check the key in %s", status,
                                       e->spec->api_key_env ? e->spec->api_key_env
                                                            : "(no api_key_env is set)");
        else
            e->unusable = fr_xstrdup("its quota or spending limit is used up (HTTP 429)");
        fr_log(FR_LOG_ERROR, "endpoint", "endpoint=%s disabled for this run: %s", e->spec->name,
               e->unusable);
        return;
    }
    bool overload = rc == FR_EHTTP && (status == 429 || status == 503);
    if (!overload && rc != FR_ECONNECT)
        return;
    double wait_ms;
    if (!r->plan)
        uv_update_time(&r->loop); /* the cached loop time may lag this reply */
    bool cooling = e->cooldown_until > clock_ms(r);
    if (rc == FR_ECONNECT && !cooling && ++e->conn_failures >= DOWN_AFTER_FAILURES && e->usable) {
        /* Requests sent while it was already cooling down tell nothing
         * new; this is the Nth probe in a row that found nothing there. */
        e->usable = false;
        free(e->unusable);
        e->unusable = fr_xasprintf("it is unreachable (%d connection failures in a row: %s); "
                                   "check that the server at %s is running",
                                   e->conn_failures, msg, e->spec->url ? e->spec->url : "its url");
        fr_log(FR_LOG_ERROR, "endpoint", "endpoint=%s disabled for this run: %s", e->spec->name,
               e->unusable);
        return;
    }
    if (overload && retry_after_s >= 0) {
        wait_ms = retry_after_s * 1000.0 + RETRY_AFTER_MARGIN_MS;
    } else if (cooling) {
        return; /* sent before the endpoint cooled down: no new evidence */
    } else {
        wait_ms = 1000.0 * pow(2.0, e->strikes);
        if (wait_ms > 60000)
            wait_ms = 60000;
        e->strikes++;
    }
    double until = clock_ms(r) + wait_ms;
    if (until > e->cooldown_until) {
        e->cooldowns++;
        e->cooldown_ms +=
            until - (e->cooldown_until > clock_ms(r) ? e->cooldown_until : clock_ms(r));
        e->cooldown_until = until;
    }
    fr_log(FR_LOG_INFO, "endpoint", "endpoint=%s cooldown_ms=%.0f", e->spec->name, wait_ms);
}

/* After a failed attempt: retry on the same endpoint, fall back to another
 * through the policy, or give up. */
static void attempt_failed(task_rt *t, int rc, long status, double retry_after_s, const char *msg)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    ep_rt *e = &r->eps[t->ep];
    e->failures++;
    if (rc == FR_ECONNECT) {
        e->connect_failures++;
        e->down = true;
        free(e->connect_error);
        e->connect_error = fr_xstrdup(msg);
        if (e->spec->tier == FR_TIER_LOCAL)
            t->unreached = t->ep;
    }
    free(t->last_error);
    t->last_error = fr_xasprintf("%s: %s", e->spec->name, msg);
    fr_log(FR_LOG_INFO, "sched", "task=%s endpoint=%s attempt=%d error=\"%s\"", ts->name,
           e->spec->name, t->attempts, msg);
    cool_down(r, e, rc, status, retry_after_s, msg);
    if (t->attempts >= MAX_ATTEMPTS) {
        char *why =
            fr_xasprintf("gave up after %d attempts; last error: %s", t->attempts, t->last_error);
        task_end(t, FR_TASK_FAILED, why);
        free(why);
        return;
    }
    if (rc == FR_ERETRY && t->ep_attempts > ts->retries)
        rc = FR_EQUALITY; /* no retries left here: escalate instead */
    if (rc == FR_EQUALITY || rc == FR_EFINISH) {
        /* The endpoint answered, but not well enough, or not to the end: ask
         * the policy for another one rather than asking the same model
         * again (a cut at the same max_tokens on the same model recurs). */
        const char *why = rc == FR_EFINISH ? t->finish_outcome : "quality";
        free(t->last_error);
        t->last_error = fr_xasprintf("%s: %s: %s", why, e->spec->name, msg);
        t->tried[t->ep] = 1;
        t->retry_ep = -1;
        t->route_reason = why;
        fr_sched_requeue(r->sched, t->idx);
        return;
    }
    if (e->usable && retryable(rc, status) && !quota_exhausted(status, msg) &&
        t->ep_attempts <= ts->retries) {
        /* Exponential backoff with full jitter: a random wait up to the
         * exponential bound, so retries of many tasks do not line up. */
        double bound = BACKOFF_BASE_MS * pow(2.0, t->ep_attempts);
        if (bound > BACKOFF_MAX_MS)
            bound = BACKOFF_MAX_MS;
        double delay = bound * ((double)rand() / RAND_MAX);
        if (retry_after_s >= 0 && retry_after_s * 1000.0 + RETRY_AFTER_MARGIN_MS > delay)
            delay = retry_after_s * 1000.0 + RETRY_AFTER_MARGIN_MS;
        uv_update_time(&r->loop);
        if (!r->plan && clock_ms(r) + delay >= t->deadline_ms) {
            /* Waiting here would outlast the task: another endpoint may take
             * it now; without one it fails now, saying why. */
            t->tried[t->ep] = 1;
            t->retry_ep = -1;
            t->route_reason = "error";
            if (!other_endpoint(r, t)) {
                char *why = fr_xasprintf("%s asks to wait %.0f s before a retry, past the "
                                         "task's timeout of %g s; last error: %s",
                                         e->spec->name, delay / 1000.0, ts->timeout_s, msg);
                task_end(t, FR_TASK_FAILED, why);
                free(why);
                return;
            }
            fr_sched_requeue(r->sched, t->idx);
            return;
        }
        t->retry_ep = t->ep;
        t->retry_armed = true;
        r->retries_armed++;
        uv_timer_start(&t->retry_timer, on_retry_timer, (uint64_t)delay, 0);
        return;
    }
    /* This endpoint is spent for the task: ask the policy for another. */
    t->tried[t->ep] = 1;
    t->retry_ep = -1;
    t->route_reason = "error";
    fr_sched_requeue(r->sched, t->idx);
}

static int on_data(void *ud, long status, const char *data, size_t len)
{
    task_rt *t = ud;
    unsigned long before = fr_adapter_progress(t->adapter);
    int rc = fr_adapter_feed(t->adapter, status, data, len);
    if (t->attempt_ttft_ms < 0 && fr_adapter_started(t->adapter))
        t->attempt_ttft_ms = (double)(now_ns(t->run) - t->attempt_ns) / 1e6;
    /* Keep-alive comments and blank lines do not hold the idle timer off. */
    if (rc == FR_OK && fr_adapter_progress(t->adapter) == before)
        return FR_HTTP_QUIET;
    return rc;
}

/* An answer with no text (empty, blank, or `content: null`) and no JSON is
 * no answer: a failed attempt, whatever the finish reason said. Returns
 * FR_OK, or FR_EFINISH with *outcome "no_answer" and `err` filled. */
static int check_empty(const fr_reply *reply, const char **outcome, fr_error *err)
{
    if (reply->json)
        return FR_OK;
    for (const char *p = reply->text ? reply->text : ""; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return FR_OK;
    *outcome = "no_answer";
    return fr_error_set(err, FR_EFINISH, NULL, 0,
                        "the reply is empty: no text and no tool call (finish reason '%s')",
                        reply->finish_reason ? reply->finish_reason
                                             : fr_finish_name(reply->finish));
}

/* The gate of the finish reason: a reply cut at max_tokens (unless the task
 * allows cut text), refused, stopped to call a tool nobody offered, or
 * holding reasoning and no answer is a failed attempt and never reaches a
 * dependent. Returns FR_OK, or FR_EFINISH with *outcome (static) and `err`
 * filled. */
static int check_finish(const fr_task_spec *ts, const fr_reply *reply, const char **outcome,
                        fr_error *err)
{
    const char *said = reply->finish_reason ? reply->finish_reason : fr_finish_name(reply->finish);
    bool text = reply->text && reply->text[0];
    *outcome = NULL;
    switch (reply->finish) {
    case FR_FINISH_LENGTH:
        if (ts->allow_truncated && text)
            return FR_OK;
        *outcome = "truncated";
        if (!text)
            return fr_error_set(err, FR_EFINISH, NULL, 0,
                                "the reply was cut at max_tokens %d before any answer (finish "
                                "reason '%s'); raise max_tokens",
                                ts->max_tokens, said);
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the reply was cut at max_tokens %d (finish reason '%s'); raise "
                            "max_tokens, or set allow_truncated = true to accept cut text",
                            ts->max_tokens, said);
    case FR_FINISH_REFUSED:
        *outcome = "refused";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the model refused, or a content filter stopped the reply (finish "
                            "reason '%s')",
                            said);
    case FR_FINISH_TOOL_CALL:
        *outcome = "tool_call";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the model stopped to call a tool, and the task offers none (finish "
                            "reason '%s')",
                            said);
    case FR_FINISH_NO_ANSWER:
        *outcome = "no_answer";
        return fr_error_set(err, FR_EFINISH, NULL, 0,
                            "the reply holds reasoning (thinking) but no answer (finish reason "
                            "'%s'); raise max_tokens or use a model that answers after thinking",
                            said);
    default:
        return check_empty(reply, outcome, err);
    }
}

/* The quality gate of structured output: a reply whose JSON does not match
 * the task's schema failed, and is never passed to dependents. */
static int check_quality(const fr_task_spec *ts, const fr_reply *reply, fr_error *err)
{
    if (!ts->schema)
        return FR_OK;
    char msg[600];
    if (!reply->json && reply->finish == FR_FINISH_LENGTH) /* accepted by allow_truncated */
        return fr_error_set(err, FR_EQUALITY, NULL, 0,
                            "the reply was cut at max_tokens %d and its JSON is incomplete; raise "
                            "max_tokens",
                            ts->max_tokens);
    if (!reply->json)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "the reply carries no JSON");
    if (fr_validate_json(ts->schema, reply->json, msg, sizeof msg) != FR_OK)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "the reply does not match the schema: %s",
                            msg);
    return FR_OK;
}

/* The task's own check function and min_quality: a low score is a quality
 * failure, like a schema mismatch. */
static int run_check(fr_run *r, task_rt *t, const fr_reply *reply, fr_error *err)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    if (!ts->has_check)
        return FR_OK;
    double score;
    char *why = NULL;
    fr_error cerr = {0};
    int rc = fr_workflow_check(r->wf, t->idx, reply->text, reply->json, &score, &why, &cerr);
    if (rc != FR_OK) {
        char msg[1400];
        rc = fr_error_set(err, FR_EQUALITY, NULL, 0, "the check did not score the reply: %s",
                          fr_error_format(&cerr, msg, sizeof msg));
    } else if (score < ts->min_quality || (score <= 0 && ts->min_quality <= 0)) {
        rc = fr_error_set(err, FR_EQUALITY, NULL, 0, "the check scored %.2f (min_quality %.2f)%s%s",
                          score, ts->min_quality, why ? ": " : "", why ? why : "");
    } else {
        t->check_score = score;
    }
    free(why);
    return rc;
}

/* Asks the policy's on_result about a reply that passed its gates: FR_OK
 * to accept, FR_ERETRY to ask the same endpoint again, FR_EQUALITY to
 * escalate. A policy that fails here accepts (and is counted). */
static int ask_on_result(fr_run *r, task_rt *t, const fr_reply *reply, const fr_http_result *res,
                         double cost, fr_error *err)
{
    if (!fr_policy_has_on_result(r->policy))
        return FR_OK;
    const ep_rt *e = &r->eps[t->ep];
    json_t *tj = task_json(r, t);
    json_t *rj = run_json(r);
    json_t *result =
        json_pack("{s:s, s:s, s:s, s:O, s:f, s:{s:I, s:I}, s:f, s:i}", "endpoint", e->spec->name,
                  "tier", fr_tier_name(e->spec->tier), "text", reply->text, "json",
                  reply->json ? reply->json : json_null(), "latency_ms", res->total_ms, "tokens",
                  "input", (json_int_t)reply->usage.input, "output",
                  (json_int_t)reply->usage.output, "cost_usd", cost, "attempt", t->attempts);
    fr_verdict v = FR_VERDICT_ACCEPT;
    fr_error perr = {0};
    if (fr_policy_on_result(r->policy, tj, result, rj, &v, &perr) != FR_OK) {
        policy_failed(r, r->wf->tasks[t->idx].name, &perr);
        v = FR_VERDICT_ACCEPT;
    }
    json_decref(tj);
    json_decref(rj);
    json_decref(result);
    if (v == FR_VERDICT_RETRY)
        return fr_error_set(err, FR_ERETRY, NULL, 0, "on_result of policy %s asked for a retry",
                            fr_policy_name(r->policy));
    if (v == FR_VERDICT_ESCALATE)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "on_result of policy %s asked to escalate",
                            fr_policy_name(r->policy));
    return FR_OK;
}

/* Redacts the known keys in every string of `v` (borrowed, changed in
 * place): values and member names. */
static void redact_json(json_t *v)
{
    if (json_is_string(v)) {
        size_t len = json_string_length(v);
        char *s = fr_xstrndup(json_string_value(v), len);
        if (fr_redact_secrets(&s, &len))
            json_string_setn_nocheck(v, s, len);
        free(s); /* no key left in it either way */
    } else if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            redact_json(item);
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, member)
        {
            redact_json(member);
            size_t len = strlen(key);
            char *k = fr_xstrndup(key, len);
            if (fr_redact_secrets(&k, &len)) {
                json_object_set(v, k, member); /* the new name; the old one goes */
                json_object_del(v, key);
            }
            free(k);
        }
    }
}

/* A model may repeat a key it was shown (in a prompt, a file, a previous
 * reply). on_done calls this where a reply is accepted, before any check,
 * hook, output, report, cache row or dependent sees it (and try_cache on a
 * hit, for rows an older flowrun stored): every registered key in its text,
 * its JSON and the model name becomes [REDACTED], so none of those can. */
static void redact_reply(const task_rt *t, const char *endpoint, fr_reply *reply)
{
    size_t len = reply->text ? strlen(reply->text) : 0;
    bool hit = fr_redact_secrets(&reply->text, &len);
    if (reply->json)
        redact_json(reply->json);
    len = reply->model ? strlen(reply->model) : 0;
    fr_redact_secrets(&reply->model, &len);
    if (hit)
        fr_log(FR_LOG_WARN, "run",
               "task=%s endpoint=%s reply=redacted why=\"the reply repeats an API key\"",
               t->run->wf->tasks[t->idx].name, endpoint);
}

/* Slots in use over all endpoints. */
static int slots_in_use(const fr_run *r)
{
    int n = 0;
    for (size_t e = 0; e < r->neps; e++)
        n += fr_sched_in_flight(r->sched, e);
    return n;
}

/* An attempt found no file descriptor for its socket (EMFILE, ENFILE):
 * nothing was sent and the server is not to blame, so the endpoint keeps
 * its health (no cooldown, no failure counted) and the attempt does not
 * count. The transfers at once are capped at what is in flight now, so the
 * next one starts when one of them ends and frees its descriptors, and the
 * task tries again after a short wait on its retry timer (its timeout still
 * bounds it). */
static void attempt_no_fds(task_rt *t, const fr_http_result *res)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    ep_rt *e = &r->eps[t->ep];
    fr_adapter_free(t->adapter);
    t->adapter = NULL;
    settle(t, 0);
    t->attempts--;
    t->ep_attempts--;
    e->requests--;
    r->fd_waits++;
    t->fd_wait = true;
    free(t->last_error);
    t->last_error = fr_xasprintf("%s: %s", e->spec->name, res->error);
    set_decision_outcome(t, "error", res->error);
    int in_use = slots_in_use(r);
    int cap = in_use > 1 ? in_use : 1;
    if (r->fd_cap_now == 0 || cap < r->fd_cap_now) {
        r->fd_cap_now = cap;
        fr_sched_set_total_cap(r->sched, cap);
    }
    fr_log(r->fd_waits == 1 ? FR_LOG_WARN : FR_LOG_INFO, "sched",
           "task=%s endpoint=%s error=\"%s\" transfers_at_once=%d (a local limit: the endpoint "
           "is not cooled down; the task tries again)",
           ts->name, e->spec->name, res->error, r->fd_cap_now);
    t->retry_ep = t->ep;
    t->retry_armed = true;
    r->retries_armed++;
    uv_timer_start(&t->retry_timer, on_retry_timer, FD_WAIT_MS, 0);
}

static void on_done(void *ud, const fr_http_result *res)
{
    task_rt *t = ud;
    fr_run *r = t->run;
    ep_rt *e = &r->eps[t->ep];
    t->xfer = NULL;
    fr_sched_release_slot(r->sched, (size_t)t->ep);
    if (res->no_fds) {
        attempt_no_fds(t, res);
        maybe_finish(r);
        pump(r);
        return;
    }
    if (r->fd_cap_now < r->fd_cap && res->rc == FR_OK) {
        /* Descriptors came back: one more transfer at once, up to the cap. */
        r->fd_cap_now++;
        fr_sched_set_total_cap(r->sched, r->fd_cap_now);
    }

    fr_error err = {0};
    fr_reply reply = {0};
    int rc = res->rc;
    if (rc == FR_OK || rc == FR_EPROTO || rc == FR_ETOOBIG) {
        int frc = fr_adapter_finish(t->adapter, res->status, &reply, &err);
        if (rc == FR_OK)
            rc = frc;
    } else if (rc == FR_EIO && res->status >= 200 && res->status < 300 && res->bytes > 0) {
        /* The connection broke mid-reply: the adapter can say what was
         * missing ("the stream ended before 'data: [DONE]'"). */
        int frc = fr_adapter_finish(t->adapter, res->status, &reply, &err);
        if (frc == FR_OK)
            fr_reply_close(&reply); /* a reply cut in transit is never accepted */
        if (frc == FR_ETRUNCATED)
            rc = frc;
        else
            fr_error_set(&err, rc, NULL, 0, "the connection closed before the reply ended (%s)",
                         res->error ? res->error : fr_strerror(rc));
    } else if (rc == FR_ETIMEDOUT && t->attempt_limited && res->error &&
               strncmp(res->error, "total timeout", 13) == 0) {
        fr_error_set(&err, rc, NULL, 0, "attempt timeout: no complete reply after %g s",
                     e->spec->timeouts.attempt_s);
    } else {
        fr_error_set(&err, rc, NULL, 0, "%s", res->error ? res->error : fr_strerror(rc));
    }
    double cost = 0;
    fr_usage used = {0};
    t->finish_outcome = NULL;
    if (rc == FR_OK) {
        redact_reply(t, e->spec->name, &reply);
        /* Whatever happens next, this reply was billed. */
        used = reply.usage;
        cost = fr_run_cost(e->spec, &reply.usage);
        settle(t, cost);
        rc = check_finish(&r->wf->tasks[t->idx], &reply, &t->finish_outcome, &err);
        if (rc == FR_OK)
            rc = check_quality(&r->wf->tasks[t->idx], &reply, &err);
        if (rc == FR_OK)
            rc = run_check(r, t, &reply, &err);
        if (rc == FR_OK)
            rc = ask_on_result(r, t, &reply, res, cost, &err);
        if (rc != FR_OK)
            fr_reply_close(&reply);
    }
    if (rc != FR_OK && !err.msg[0])
        fr_error_set(&err, rc, NULL, 0, "%s", res->error ? res->error : fr_strerror(rc));
    fr_adapter_free(t->adapter);
    t->adapter = NULL;
    if (t->reserved > 0) {
        /* A reply that broke off after the server started answering may
         * have been billed: it keeps its worst case, a conservative charge.
         * One refused before any answer (a status error, no connection)
         * costs nothing. */
        bool billed = res->status >= 200 && res->status < 300 && res->bytes > 0;
        cost = billed ? t->reserved : 0;
        settle(t, cost);
    }

    const char *outcome = rc == FR_OK         ? "ok"
                          : rc == FR_EFINISH  ? t->finish_outcome
                          : rc == FR_EQUALITY ? "quality"
                          : rc == FR_ERETRY   ? "retry"
                                              : "error";
    book_attempt(t, outcome, rc == FR_OK ? NULL : err.msg, &used, cost, res->total_ms);
    /* Only a whole answer is cached: cut text a task accepted is not. */
    if (rc == FR_OK && r->store && t->cache_key && fr_finish_is_answer(reply.finish)) {
        fr_error cerr = {0};
        if (fr_store_cache_put(r->store, t->cache_key, e->spec->name, &reply, &cerr) != FR_OK &&
            !r->store_failed) {
            char msg[1400];
            fr_log(FR_LOG_ERROR, "store", "error=\"%s\"", fr_error_format(&cerr, msg, sizeof msg));
            r->store_failed = true;
        }
    }
    if (rc == FR_OK) {
        set_decision_outcome(t, "ok", NULL);
        fr_reply_close(&t->reply);
        t->reply = reply;
        t->usage = reply.usage;
        t->latency_ms = res->total_ms;
        t->ttft_ms = t->attempt_ttft_ms >= 0 ? t->attempt_ttft_ms : res->total_ms;
        e->lat[e->nlat++ % (sizeof e->lat / sizeof *e->lat)] = res->total_ms;
        e->strikes = 0;
        e->conn_failures = 0;
        e->down = false;
        task_ok(t);
    } else {
        set_decision_outcome(t, outcome, err.msg);
        attempt_failed(t, rc, res->status, res->retry_after_s, err.msg);
    }
    maybe_finish(r);
    pump(r);
}

/* The call task `t` makes to endpoint `ep`: the one place it is built, so
 * the request and its cache key always agree. Borrows from r and t. */
static fr_call make_call(const fr_run *r, const task_rt *t, size_t ep)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    const ep_rt *e = &r->eps[ep];
    return (fr_call){
        .base_url = e->url,
        .model = e->model,
        .system = r->wf->agents[ts->agent].system,
        .prompt = t->prompt,
        .max_tokens = ts->max_tokens,
        .temperature = ts->temperature,
        .stream = e->spec->stream,
        .schema = ts->schema,
        .api_key = e->api_key,
        .context = e->spec->context,
        .has_seed = ts->has_seed,
        .seed = ts->seed,
        .keep_alive = e->spec->keep_alive,
        .max_completion_tokens = e->spec->max_completion_tokens,
    };
}

/* Whether the cache may answer task `t`: not for plans, --no-cache, or a
 * task named by --fresh. */
static bool cache_allowed(const fr_run *r, const task_rt *t)
{
    if (r->plan || !r->store || r->opts.no_cache)
        return false;
    for (size_t i = 0; i < r->opts.nfresh; i++)
        if (strcmp(r->opts.fresh[i], r->wf->tasks[t->idx].name) == 0)
            return false;
    return true;
}

/* A cached reply of endpoint `e` failed the task's gates; `msg` (borrowed)
 * says why. One that fails the check or min_quality is a quality failure
 * like any other: the endpoint counts as tried and the policy is asked with
 * reason "quality", so it may escalate. One that no longer fits the schema
 * (`stale`: the schema changed, or the row was damaged) is a miss: the
 * request is sent as if nothing were stored. */
static void cache_failed(fr_run *r, task_rt *t, size_t e, const char *msg, bool stale)
{
    const char *name = r->eps[e].spec->name;
    json_array_append_new(t->decisions,
                          json_pack("{s:s, s:i, s:s, s:s, s:i, s:s, s:s}", "policy", "cache",
                                    "version", fr_policy_version(r->policy), "reason",
                                    t->route_reason, "endpoint", name, "attempt", t->attempts + 1,
                                    "outcome", "quality", "error", msg));
    if (r->opts.explain)
        fprintf(stderr, "explain: %s -> %s  (cached result failed its gates: %s)\n",
                r->wf->tasks[t->idx].name, name, msg);
    fr_log(FR_LOG_INFO, "cache", "task=%s endpoint=%s error=\"%s\"", r->wf->tasks[t->idx].name,
           name, msg);
    free(t->last_error);
    t->last_error = fr_xasprintf("quality: %s: %s (a cached reply; --fresh %s asks again)", name,
                                 msg, r->wf->tasks[t->idx].name);
    if (stale)
        return; /* a stored reply that no longer fits the schema is a miss: ask again */
    t->tried[e] = 1;
    t->route_reason = "quality";
}

/* Looks for a stored result of this exact request on any endpoint the task
 * may use; on a hit the task is done without a request and without cost.
 * Returns true on a hit. This is how a run resumes after a crash. */
static bool try_cache(fr_run *r, task_rt *t)
{
    if (!cache_allowed(r, t))
        return false;
    for (size_t e = 0; e < r->neps; e++) {
        const char *why;
        if (!allowed(r, t, e, &why))
            continue;
        fr_call call = make_call(r, t, e);
        char *key = fr_cache_key(r->wf->name, r->wf->tasks[t->idx].name, r->eps[e].spec->name,
                                 r->eps[e].protocol, &call);
        fr_reply reply = {0};
        bool hit = false;
        fr_error err = {0};
        if (fr_store_cache_get(r->store, key, &reply, &hit, &err) != FR_OK) {
            char msg[1400];
            fr_log(FR_LOG_WARN, "cache", "error=\"%s\"", fr_error_format(&err, msg, sizeof msg));
        }
        free(key);
        if (!hit)
            continue;
        redact_reply(t, r->eps[e].spec->name, &reply); /* a row an older flowrun stored */
        /* A cached reply passes the task's gates as they are now: a schema
         * or check changed since it was stored applies to it too. */
        fr_error gerr = {0};
        const char *empty;
        int grc = check_empty(&reply, &empty, &gerr);
        if (grc == FR_OK)
            grc = check_quality(&r->wf->tasks[t->idx], &reply, &gerr);
        bool stale = grc != FR_OK; /* empty, or no longer fits the schema: a miss */
        if (grc == FR_OK)
            grc = run_check(r, t, &reply, &gerr);
        if (grc != FR_OK) {
            fr_reply_close(&reply);
            cache_failed(r, t, e, gerr.msg, stale);
            continue;
        }
        t->ep = (long)e;
        t->cached = true;
        fr_reply_close(&t->reply);
        t->reply = reply;
        t->usage = reply.usage;
        t->latency_ms = t->ttft_ms = 0;
        t->start_ns = now_ns(r);
        json_array_append_new(t->decisions,
                              json_pack("{s:s, s:i, s:s, s:s, s:i, s:s}", "policy", "cache",
                                        "version", fr_policy_version(r->policy), "reason",
                                        t->route_reason, "endpoint", r->eps[e].spec->name,
                                        "attempt", t->attempts + 1, "outcome", "cached"));
        if (r->opts.explain) {
            char privacy[700];
            fr_workflow_privacy_text(r->wf, t->idx, privacy, sizeof privacy);
            fprintf(stderr, "explain: %s -> %s  (cached result, no request)%s%s\n",
                    r->wf->tasks[t->idx].name, r->eps[e].spec->name, *privacy ? "  " : "", privacy);
        }
        task_ok(t);
        return true;
    }
    return false;
}

/* A plan's attempt: the slot is taken for the expected latency, and the
 * reply is what the plan expects (input as estimated, a quarter of
 * max_tokens out). */
static void plan_dispatch(task_rt *t, size_t ep)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    ep_rt *e = &r->eps[ep];
    bool taken = fr_sched_take_slot(r->sched, ep);
    (void)taken;
    assert(taken);
    t->ep = (long)ep;
    t->attempts++;
    e->requests++;
    t->start_ns = now_ns(r);
    t->reserved = est_cost(e->spec, t->worst_input, ts->max_tokens);
    fr_budget_reserve(r->budget, t->reserved);
    double latency, tps;
    fr_run_expected_speed(r, e, &latency, &tps);
    long out = fr_plan_expected_output(ts);
    /* What earlier runs observed wins over the defaults: this task on this
     * endpoint for its latency; for its output, on any endpoint. */
    const json_t *seen = json_object_get(r->observed, ts->name);
    const json_t *here = json_object_get(seen, e->spec->name);
    const json_t *any = here;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)seen, k, v)
    {
        if (!any)
            any = v;
    }
    t->obs_output = any != NULL;
    if (any)
        out = (long)json_integer_value(json_object_get(any, "output_tokens"));
    t->usage = (fr_usage){.input = t->est_input, .output = out, .estimated = true};
    t->obs_latency = here != NULL;
    t->latency_ms = here ? json_number_value(json_object_get(here, "latency_ms"))
                         : latency + (tps > 0 ? (double)out / tps * 1000.0 : 0);
    t->worst_cost = est_cost(e->spec, t->worst_input, ts->max_tokens);
    fr_plan_push(r, t->idx, r->vnow_ms + t->latency_ms);
}

/* A plan's attempt ends as expected. */
static void plan_complete(fr_run *r, size_t task)
{
    task_rt *t = &r->tasks[task];
    ep_rt *e = &r->eps[t->ep];
    fr_sched_release_slot(r->sched, (size_t)t->ep);
    /* The latency a policy sees, as a run records it on each success. */
    e->lat[e->nlat++ % (sizeof e->lat / sizeof *e->lat)] = t->latency_ms;
    settle(t, fr_run_cost(r->eps[t->ep].spec, &t->usage));
    t->ttft_ms = t->latency_ms;
    fr_reply_close(&t->reply);
    t->reply.text = fr_xstrdup("");
    set_decision_outcome(t, "ok", NULL);
    task_ok(t);
}

/* The local endpoint task `t` would have used but could not reach: the one
 * it failed to connect to, else one that is down and that the task could
 * otherwise use; -1 for none. For the summary's "ran on the cloud instead". */
static long down_local(const fr_run *r, const task_rt *t)
{
    if (t->unreached >= 0)
        return t->unreached;
    for (size_t e = 0; e < r->neps; e++) {
        const char *why;
        if (r->eps[e].spec->tier == FR_TIER_LOCAL && r->eps[e].down &&
            exclusion(r, t, e, &why) == EXCL_NONE)
            return (long)e;
    }
    return -1;
}

static void dispatch(task_rt *t, size_t ep)
{
    fr_run *r = t->run;
    if (r->plan) {
        plan_dispatch(t, ep);
        return;
    }
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    ep_rt *e = &r->eps[ep];
    bool taken = fr_sched_take_slot(r->sched, ep);
    (void)taken;
    assert(taken);
    if ((long)ep != t->ep)
        t->ep_attempts = 0;
    t->moved_from = e->spec->tier == FR_TIER_CLOUD ? down_local(r, t) : -1;
    /* The worst case is held against every cap until the attempt settles. */
    t->reserved = est_cost(e->spec, t->worst_input, ts->max_tokens);
    fr_budget_reserve(r->budget, t->reserved);
    t->ep = (long)ep;
    t->retry_ep = -1;
    t->fd_wait = false;
    t->attempts++;
    t->ep_attempts++;
    e->requests++;
    if (t->start_ns == 0)
        t->start_ns = now_ns(t->run);
    fr_call call = make_call(r, t, ep);
    free(t->cache_key);
    t->cache_key = fr_cache_key(r->wf->name, ts->name, e->spec->name, e->protocol, &call);
    t->attempt_ns = now_ns(t->run);
    t->attempt_ttft_ms = -1;
    fr_log(FR_LOG_INFO, "sched", "task=%s endpoint=%s tier=%s attempt=%d dispatch", ts->name,
           e->spec->name, fr_tier_name(e->spec->tier), t->attempts);
    t->adapter = fr_adapter_new(e->protocol, &call);
    fr_request req = {0};
    fr_error err = {0};
    int rc = fr_adapter_request(t->adapter, &req, &err);
    if (rc == FR_OK) {
        uv_update_time(&r->loop);
        double left_ms = t->deadline_ms - clock_ms(r);
        fr_http_opts ho = {
            .max_response = MAX_RESPONSE_BYTES,
            .connect_timeout_ms = (long)(e->spec->timeouts.connect_s * 1000.0),
            .first_byte_timeout_ms = (long)(e->spec->timeouts.first_byte_s * 1000.0),
            .idle_timeout_ms = (long)(e->spec->timeouts.idle_s * 1000.0),
            .total_timeout_ms = left_ms > 1 ? (long)left_ms : 1,
        };
        double attempt_ms = e->spec->timeouts.attempt_s * 1000.0;
        t->attempt_limited = attempt_ms > 0 && attempt_ms < (double)ho.total_timeout_ms;
        if (t->attempt_limited)
            ho.total_timeout_ms = (long)attempt_ms;
        if (!reserve_attempt(t))
            rc = fr_error_set(&err, FR_ESTORE, NULL, 0,
                              "the state store cannot be written; the request was not sent");
        else
            rc = fr_http_submit(r->http, &req, &ho, on_data, on_done, t, &t->xfer);
        if (rc != FR_OK && rc != FR_ESTORE)
            fr_error_set(&err, rc, NULL, 0, "could not start the request: %s", fr_strerror(rc));
    }
    fr_request_close(&req);
    if (rc == FR_ESTORE) {
        /* Without a durable reservation nothing is sent, and no new work
         * starts (pump): the task fails. */
        fr_adapter_free(t->adapter);
        t->adapter = NULL;
        fr_sched_release_slot(r->sched, ep);
        settle(t, 0);
        set_decision_outcome(t, "error", err.msg);
        task_end(t, FR_TASK_FAILED, err.msg);
        return;
    }
    if (rc != FR_OK) {
        fr_adapter_free(t->adapter);
        t->adapter = NULL;
        fr_sched_release_slot(r->sched, ep);
        settle(t, 0); /* nothing was sent */
        book_attempt(t, "error", err.msg, NULL, 0, 0);
        set_decision_outcome(t, "error", err.msg);
        attempt_failed(t, rc, 0, -1, err.msg);
    }
}

/* Renders the task's prompt from its dependencies' outputs, once. */
static int render_prompt(fr_run *r, task_rt *t, fr_error *err)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    if (r->plan) {
        /* No outputs exist yet: the prompt is its template plus what the
         * dependencies are expected to produce. */
        const char *sys = r->wf->agents[ts->agent].system;
        t->est_input = (ts->prompt ? fr_estimate_tokens(ts->prompt) : 16) +
                       (sys ? fr_estimate_tokens(sys) : 0);
        for (size_t d = 0; d < ts->ndeps; d++)
            t->est_input += r->tasks[ts->dep_index[d]].usage.output; /* as the plan expects */
        t->worst_input = 4 * t->est_input + TEMPLATE_TOKENS;
        return FR_OK;
    }
    if (t->prompt)
        return FR_OK;
    json_t *ctx = json_object();
    for (size_t d = 0; d < ts->ndeps; d++) {
        const task_rt *dep = &r->tasks[ts->dep_index[d]];
        json_object_set_new(ctx, ts->deps[d],
                            json_pack("{s:s, s:O}", "text", dep->reply.text ? dep->reply.text : "",
                                      "json", dep->reply.json ? dep->reply.json : json_null()));
    }
    json_object_set_new(ctx, "var", r->wf->vars ? json_incref(r->wf->vars) : json_object());
    int rc = fr_workflow_render_prompt(r->wf, t->idx, ctx, &t->prompt, err);
    json_decref(ctx);
    if (rc != FR_OK)
        return rc;
    const char *sys = r->wf->agents[ts->agent].system;
    t->est_input = fr_estimate_tokens(t->prompt) + (sys ? fr_estimate_tokens(sys) : 0);
    t->worst_input = (long)(strlen(t->prompt) + (sys ? strlen(sys) : 0)) + TEMPLATE_TOKENS;
    return FR_OK;
}

/* Whether an endpoint other than the task's retry endpoint could take it
 * now: allowed, not tried, not cooling down. */
static bool other_endpoint(const fr_run *r, const task_rt *t)
{
    double now = r->plan ? r->vnow_ms : (double)uv_now((uv_loop_t *)&r->loop);
    for (size_t e = 0; e < r->neps; e++) {
        const char *why;
        if ((long)e != t->retry_ep && allowed(r, t, e, &why) && r->eps[e].cooldown_until <= now)
            return true;
    }
    return false;
}

/* Starts the task's timeout when it first becomes ready, so that waiting
 * for an endpoint counts against it as much as talking to one. */
static void arm_deadline(task_rt *t)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    if (!t->timers_init) {
        uv_timer_init(&r->loop, &t->deadline);
        uv_timer_init(&r->loop, &t->retry_timer);
        t->deadline.data = t->retry_timer.data = t;
        t->timers_init = true;
    }
    uv_update_time(&r->loop);
    t->deadline_ms = clock_ms(r) + ts->timeout_s * 1000.0;
    uv_timer_start(&t->deadline, on_deadline, (uint64_t)(ts->timeout_s * 1000.0), 0);
}

/* Ends task `t` now because endpoint `ep`, the soonest it could use, cools
 * down past the task's timeout: waiting could only end in a timeout. */
static void fail_wait(task_rt *t, size_t ep)
{
    fr_run *r = t->run;
    const ep_rt *e = &r->eps[ep];
    char *why = fr_xasprintf(
        "no endpoint can take the task before its timeout of %g s: %s cools "
        "down for %.0f s more%s%s",
        r->wf->tasks[t->idx].timeout_s, e->spec->name, (e->cooldown_until - clock_ms(r)) / 1000.0,
        t->last_error ? "; last error: " : "", t->last_error ? t->last_error : "");
    task_end(t, FR_TASK_FAILED, why);
    free(why);
}

/* Tries to place one ready task. Returns true when the task left the
 * queue (dispatched or ended), false when it must wait. */
static bool place(fr_run *r, task_rt *t)
{
    const fr_task_spec *ts = &r->wf->tasks[t->idx];
    double now = clock_ms(r);
    if (!r->plan && t->deadline_ms == 0)
        arm_deadline(t);
    if (t->retry_ep >= 0 && r->eps[t->retry_ep].cooldown_until > now && other_endpoint(r, t)) {
        /* The endpoint of the retry is cooling down (overloaded or down):
         * another endpoint may take the task now rather than wait for it. */
        t->tried[t->retry_ep] = 1;
        t->retry_ep = -1;
        t->route_reason = "error";
    }
    if (t->retry_ep >= 0) {
        size_t ep = (size_t)t->retry_ep;
        if (r->eps[ep].cooldown_until > now) {
            if (!r->plan && r->eps[ep].cooldown_until >= t->deadline_ms) {
                fail_wait(t, ep);
                return true;
            }
            arm_wake(r, r->eps[ep].cooldown_until);
            return false;
        }
        if (fr_sched_free_slots(r->sched, ep) <= 0) {
            r->queued[ep]++;
            return false;
        }
        char *why = NULL;
        int b = budget_check(r, t, ep, &why);
        if (b == BUDGET_FITS)
            dispatch(t, ep);
        else if (b == BUDGET_NEVER)
            task_end(t, FR_TASK_BUDGET, why);
        free(why);
        return b != BUDGET_WAIT;
    }
    fr_error err = {0};
    if (render_prompt(r, t, &err) != FR_OK) {
        char msg[1400];
        task_end(t, FR_TASK_FAILED, fr_error_format(&err, msg, sizeof msg));
        return true;
    }
    if (t->attempts == 0 && try_cache(r, t))
        return true;
    long *cands = fr_xmalloc((r->neps ? r->neps : 1) * sizeof *cands);
    size_t n = 0, nfree = 0;
    const char *why = "no endpoint is declared";
    double soonest = 0;
    bool cooling = false, budget_wait = false;
    char *budget_why = NULL;
    for (size_t e = 0; e < r->neps; e++) {
        if (!allowed(r, t, e, &why))
            continue;
        int b = budget_check(r, t, e, &budget_why);
        if (b != BUDGET_FITS) {
            budget_wait |= b == BUDGET_WAIT;
            continue;
        }
        if (r->eps[e].cooldown_until > now) {
            if (!cooling || r->eps[e].cooldown_until < soonest)
                soonest = r->eps[e].cooldown_until;
            cooling = true;
            continue;
        }
        cands[n++] = (long)e;
        nfree += fr_sched_free_slots(r->sched, e) > 0;
    }
    bool placed = false;
    if (n == 0 && !cooling && budget_wait)
        goto done; /* requests in flight may settle below their worst case */
    if (n == 0 && !cooling && budget_why) {
        char *msg = fr_xasprintf("budget: %s", budget_why);
        task_end(t, FR_TASK_BUDGET, msg);
        free(msg);
        placed = true;
        goto done;
    }
    if (n == 0 && !cooling) {
        char *msg;
        if (t->last_error && strcmp(t->route_reason, "quality") == 0)
            msg = fr_xasprintf("no endpoint left after a failed quality gate; %s", t->last_error);
        else if (t->last_error && t->finish_outcome &&
                 strcmp(t->route_reason, t->finish_outcome) == 0)
            msg = fr_xasprintf("no endpoint left after a reply that did not finish; %s",
                               t->last_error);
        else if (t->last_error)
            msg = fr_xasprintf("every usable endpoint failed; last error: %s", t->last_error);
        else
            msg = no_endpoint_reason(r, t);
        task_end(t, FR_TASK_FAILED, msg);
        free(msg);
        placed = true;
        goto done;
    }
    if (n == 0 && !r->plan && soonest >= t->deadline_ms) {
        /* Every endpoint it may use cools down past its timeout. */
        for (size_t e = 0; e < r->neps; e++)
            if (r->eps[e].cooldown_until == soonest) {
                fail_wait(t, e);
                break;
            }
        placed = true;
        goto done;
    }
    if (n == 0) {
        arm_wake(r, soonest);
        goto done;
    }
    if (nfree == 0)
        goto done; /* every candidate is full: wait without asking */

    json_t *cj = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(cj, candidate_json(r, t, (size_t)cands[i]));
    json_t *tj = task_json(r, t);
    json_t *rj = run_json(r);
    /* The ready tasks waiting for an endpoint, this one included. */
    json_object_set_new(rj, "ready",
                        json_integer((json_int_t)(fr_sched_ready(r->sched) + r->pass_waiters + 1)));
    char *choice = NULL;
    fr_error perr = {0};
    int rc = fr_policy_route(r->policy, tj, cj, rj, &choice, &perr);
    json_decref(tj);
    json_decref(rj);
    long ep = -1;
    const char *decided_by = fr_policy_name(r->policy);
    if (rc != FR_OK) {
        policy_failed(r, ts->name, &perr);
        ep = default_choice(r, t, cands, n);
        decided_by = "default";
    } else if (choice) {
        ep = fr_workflow_find_endpoint(r->wf, choice);
        free(choice);
        if (ep >= 0 && fr_sched_free_slots(r->sched, (size_t)ep) <= 0) {
            r->queued[ep]++; /* the policy chose a full endpoint: wait for it */
            ep = -1;
        }
    }
    if (ep >= 0) {
        record_decision(t, decided_by, fr_policy_version(r->policy), t->route_reason, (size_t)ep,
                        cj);
        dispatch(t, (size_t)ep);
        placed = true;
    }
    json_decref(cj);
done:
    free(budget_why);
    free(cands);
    return placed;
}

/* Places ready tasks while endpoints have free slots. When nothing is in
 * flight and nothing is scheduled, a task the policy still keeps waiting
 * would stall the run forever: it fails with that reason instead. */
static void pump(fr_run *r)
{
    if (r->stopping)
        return;
    size_t t;
    if (r->store_failed) {
        /* No durability, no new work: what runs finishes, the rest fails. */
        while (fr_sched_pop(r->sched, &t))
            task_end(&r->tasks[t], FR_TASK_FAILED,
                     "the state store cannot be written; no new work is started");
        maybe_finish(r);
        return;
    }
    size_t waiters_cap = MAX_WAITERS_PER_PASS;
    size_t *waiters = fr_xmalloc(waiters_cap * sizeof *waiters);
    size_t nw = 0;
    memset(r->queued, 0, (r->neps ? r->neps : 1) * sizeof *r->queued);
    while (nw < waiters_cap && fr_sched_total_free(r->sched) > 0 && fr_sched_pop(r->sched, &t)) {
        r->pass_waiters = nw;
        if (!place(r, &r->tasks[t]))
            waiters[nw++] = t;
    }
    r->pass_waiters = 0;
    memset(r->queued, 0, (r->neps ? r->neps : 1) * sizeof *r->queued);
    for (size_t i = 0; i < nw; i++)
        fr_sched_requeue(r->sched, waiters[i]);
    free(waiters);

    /* Nothing runs and nothing is scheduled, so nothing the policy sees
     * will change: a task it keeps waiting is a task it refuses, and so is
     * every other one it keeps waiting. A retry waiting for its endpoint
     * goes ahead (all slots are free), which ends the stall. */
    while (!r->stopping && (r->plan ? r->nevents : fr_http_active(r->http)) == 0 &&
           r->retries_armed == 0 && !(!r->plan && uv_is_active((uv_handle_t *)&r->wake)) &&
           fr_sched_ready(r->sched) > 0 && fr_sched_pop(r->sched, &t)) {
        task_rt *tr = &r->tasks[t];
        if (tr->retry_ep >= 0) {
            dispatch(tr, (size_t)tr->retry_ep);
            if (!r->plan && fr_http_active(r->http) == 0 && r->retries_armed == 0)
                arm_wake(r, clock_ms(r)); /* it failed at once: place again from the loop */
            break;
        } else {
            char *why = fr_xasprintf("policy %s keeps the task waiting while nothing else runs: "
                                     "it accepts none of the endpoints the task may use",
                                     fr_policy_name(r->policy));
            task_end(tr, FR_TASK_FAILED, why);
            free(why);
        }
    }
    maybe_finish(r);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void close_all(fr_run *r)
{
    r->stopping = true;
    r->end_ns = now_ns(r);
    if (r->plan)
        return; /* a plan opens no handles */
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        if (tr->timers_init) {
            stop_task_timers(tr);
            uv_close((uv_handle_t *)&tr->deadline, NULL);
            uv_close((uv_handle_t *)&tr->retry_timer, NULL);
            tr->timers_init = false;
        }
    }
    fr_watch_free(r->watch);
    r->watch = NULL;
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    fr_http_free(r->http);
    r->http = NULL;
    if (r->opts.standin)
        r->opts.standin->stop(r->opts.standin->ud);
}

static void maybe_finish(fr_run *r)
{
    if (!r->stopping && fr_sched_unfinished(r->sched) == 0)
        close_all(r);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    fr_run *r = sig->data;
    if (r->stopping)
        return;
    fr_log(FR_LOG_WARN, "run", "signal=%d stopping: running tasks are cancelled", signum);
    r->interrupted = true;
    r->signum = signum;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        if (fr_task_state_terminal(fr_sched_state(r->sched, t)))
            continue;
        if (tr->xfer) {
            fr_http_cancel(r->http, tr->xfer);
            tr->xfer = NULL;
            fr_sched_release_slot(r->sched, (size_t)tr->ep);
            double charge = tr->reserved;
            settle(tr, charge); /* it may have been billed: keep the worst case */
            book_attempt(tr, "cancelled", "interrupted", NULL, charge,
                         (double)(now_ns(r) - tr->attempt_ns) / 1e6);
            set_decision_outcome(tr, "cancelled", NULL);
        }
        fr_adapter_free(tr->adapter);
        tr->adapter = NULL;
        stop_task_timers(tr);
        free(tr->reason);
        tr->reason = fr_xstrdup("interrupted");
        tr->end_ns = now_ns(r);
        fr_sched_abandon(r->sched, t, FR_TASK_CANCELLED);
    }
    close_all(r);
}

/* The policy file changed on disk: the new version is loaded into a fresh
 * state beside the live one and swapped in only if it loads and passes its
 * self-check. Tasks already routed keep their decision; every decision
 * records the version that made it. */
static void on_policy_change(void *ud, const char *content, size_t len, const char *error)
{
    fr_run *r = ud;
    double at_ms = (double)(now_ns(r) - r->start_ns) / 1e6;
    fr_error err = {0};
    char msg[1400];
    if (error) {
        fr_log(FR_LOG_WARN, "policy", "path=%s reload=refused error=\"%s\"; version %d stays",
               r->policy_path, error, fr_policy_version(r->policy));
        json_array_append_new(r->reloads, json_pack("{s:n, s:b, s:f, s:s}", "version", "ok", 0,
                                                    "at_ms", at_ms, "error", error));
        return;
    }
    int version = ++r->policy_versions;
    fr_policy *next = NULL;
    int rc = fr_policy_load_string(r->policy_path, content, len, NULL, version, &next, &err);
    if (rc == FR_OK) {
        json_t *check_cands = check_candidates(r);
        rc = fr_policy_check(next, check_cands, &err);
        json_decref(check_cands);
    }
    if (rc != FR_OK) {
        fr_policy_free(next);
        fr_error_format(&err, msg, sizeof msg);
        fr_log(FR_LOG_WARN, "policy", "version=%d reload=refused error=\"%s\"; version %d stays",
               version, msg, fr_policy_version(r->policy));
        json_array_append_new(r->reloads, json_pack("{s:i, s:b, s:f, s:s}", "version", version,
                                                    "ok", 0, "at_ms", at_ms, "error", msg));
        return;
    }
    fr_policy_free(r->policy);
    r->policy = next;
    fr_log(FR_LOG_INFO, "policy", "version=%d reload=ok path=%s", version, r->policy_path);
    json_array_append_new(r->reloads, json_pack("{s:i, s:b, s:f, s:n}", "version", version, "ok", 1,
                                                "at_ms", at_ms, "error"));
    pump(r); /* the new version may place tasks the old one kept waiting */
}

static int start_sim(fr_run *r)
{
    fr_error err = {0};
    const fr_standin *si = r->opts.standin;
    fr_standin_model *models = fr_xcalloc(r->neps ? r->neps : 1, sizeof *models);
    char **urls = fr_xcalloc(r->neps ? r->neps : 1, sizeof *urls);
    for (size_t i = 0; i < r->neps; i++) {
        ep_rt *e = &r->eps[i];
        models[i] = (fr_standin_model){
            .name = e->model, .protocol = e->protocol, .max_concurrent = e->spec->max_parallel};
        fr_run_expected_speed(r, e, &models[i].latency_ms, &models[i].tokens_per_s);
    }
    int rc = si->start(si->ud, &r->loop, models, r->neps, urls, &err);
    if (rc != FR_OK) {
        char msg[1400];
        fr_log(FR_LOG_ERROR, "sim", "error=\"%s\"", fr_error_format(&err, msg, sizeof msg));
        rc = FR_EIO;
    }
    for (size_t i = 0; rc == FR_OK && i < r->neps; i++) {
        free(r->eps[i].url);
        r->eps[i].url = urls[i];
    }
    free(urls);
    free(models);
    return rc;
}

void fr_run_expected_speed(const fr_run *r, const ep_rt *e, double *latency_ms, double *tps)
{
    bool local = e->spec->tier == FR_TIER_LOCAL;
    *latency_ms = r->opts.sim_latency_ms >= 0 ? r->opts.sim_latency_ms : (local ? 150 : 300);
    *tps = r->opts.sim_tps >= 0 ? r->opts.sim_tps : (local ? 400 : 800);
}

long fr_plan_expected_output(const fr_task_spec *ts)
{
    return ts->max_tokens / 4 > 0 ? ts->max_tokens / 4 : 1;
}

/* Runs a plan: the same routing and scheduling as a run, on a virtual
 * clock that jumps from one expected completion to the next. */
static int execute_plan(fr_run *r)
{
    size_t task;
    double at;
    r->start_ns = 0;
    maybe_finish(r);
    pump(r);
    while (!r->stopping && fr_plan_pop(r, &task, &at)) {
        r->vnow_ms = at;
        plan_complete(r, task);
        maybe_finish(r);
        pump(r);
    }
    r->end_ns = now_ns(r);
    bool failed = false, budget = false;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        failed |= fr_sched_state(r->sched, t) != FR_TASK_OK;
        budget |= fr_sched_state(r->sched, t) == FR_TASK_BUDGET;
    }
    r->exit_code = budget ? 3 : failed ? 1 : 0; /* as the run would end */
    return r->exit_code;
}

int fr_run_execute(fr_run *r)
{
    if (r->plan)
        return execute_plan(r);
    if (uv_loop_init(&r->loop) != 0) {
        fr_log(FR_LOG_ERROR, "run", "error=\"cannot start the event loop\"");
        return 1;
    }
    r->handles_init = true;
    uv_timer_init(&r->loop, &r->wake);
    r->wake.data = r;
    uv_signal_init(&r->loop, &r->sigint);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigint.data = r->sigterm.data = r;
    uv_signal_start(&r->sigint, on_signal, SIGINT);
    uv_signal_start(&r->sigterm, on_signal, SIGTERM);
    uv_unref((uv_handle_t *)&r->sigint);
    uv_unref((uv_handle_t *)&r->sigterm);
    r->http = fr_http_new(&r->loop);
    if (r->http && r->fd_cap > 0)
        fr_http_set_max_connections(r->http, r->fd_cap);
    r->start_ns = now_ns(r);
    fr_error serr = {0};
    if (fr_store_run_begin(r->store, r->run_id, r->wf->name, r->wf->path, &serr) != FR_OK) {
        char msg[1400];
        fr_log(FR_LOG_ERROR, "store", "error=\"%s\"", fr_error_format(&serr, msg, sizeof msg));
        r->store_failed = true;
    }
    fr_error werr = {0};
    /* An embedded built-in has no file that could change. */
    if (!fr_policy_path_is_builtin(r->policy_path))
        r->watch = fr_watch_new(&r->loop, r->policy_path, 0, on_policy_change, r, &werr);
    if (!r->watch && !fr_policy_path_is_builtin(r->policy_path)) {
        char msg[1400];
        fr_log(FR_LOG_WARN, "policy", "error=\"%s\"; the policy will not be reloaded",
               fr_error_format(&werr, msg, sizeof msg));
    }
    if (!r->http || (r->opts.sim && start_sim(r) != FR_OK)) {
        for (size_t t = 0; t < r->wf->ntasks; t++)
            if (!fr_task_state_terminal(fr_sched_state(r->sched, t))) {
                r->tasks[t].reason = fr_xstrdup("the run could not start");
                fr_sched_abandon(r->sched, t, FR_TASK_FAILED);
            }
        close_all(r);
    } else {
        maybe_finish(r); /* an empty workflow ends at once */
        pump(r);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&r->loop) != 0)
        fr_log(FR_LOG_ERROR, "run", "error=\"handles left open at exit\"");
    r->handles_init = false;

    bool failed = false, budget = false;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        failed |= fr_sched_state(r->sched, t) != FR_TASK_OK;
        budget |= fr_sched_state(r->sched, t) == FR_TASK_BUDGET;
    }
    if (r->interrupted)
        r->exit_code = 128 + (r->signum ? r->signum : SIGINT); /* 130 SIGINT, 143 SIGTERM */
    else if (r->store_failed)
        r->exit_code = 74;
    else if (budget)
        r->exit_code = 3;
    else if (failed || r->write_errors)
        r->exit_code = 1;
    else
        r->exit_code = 0;
    if (r->store) {
        fr_error err = {0};
        char msg[1400];
        const char *status = r->exit_code == 0   ? "ok"
                             : r->exit_code == 3 ? "budget"
                             : r->interrupted    ? "interrupted"
                                                 : "failed";
        if (fr_store_run_end(r->store, r->run_id, status, r->exit_code, r->spent_usd, &err) !=
                FR_OK ||
            fr_store_release(r->store, r->run_id, &err) != FR_OK) {
            fr_log(FR_LOG_ERROR, "store", "error=\"%s\"", fr_error_format(&err, msg, sizeof msg));
            if (r->exit_code == 0)
                r->exit_code = 74;
        }
    }
    return r->exit_code;
}

void fr_run_free(fr_run *r)
{
    if (!r)
        return;
    for (size_t i = 0; r->eps && i < r->neps; i++) {
        ep_rt *e = &r->eps[i];
        if (e->api_key) {
            fr_wipe(e->api_key, strlen(e->api_key));
            free(e->api_key);
        }
        free(e->url);
        free(e->model);
        free(e->unusable);
        free(e->connect_error);
    }
    free(r->eps);
    free(r->queued);
    json_decref(r->observed);
    free(r->observed_from);
    fr_redact_clear();
    for (size_t t = 0; r->tasks && t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        free(tr->reason);
        free(tr->tried);
        free(tr->prompt);
        free(tr->last_error);
        free(tr->cache_key);
        fr_adapter_free(tr->adapter);
        fr_reply_close(&tr->reply);
        json_decref(tr->decisions);
    }
    free(r->tasks);
    free(r->events);
    fr_budget_free(r->budget);
    fr_store_close(r->store);
    json_decref(r->alerts);
    fr_sched_free(r->sched);
    fr_graph_free(r->g);
    fr_policy_free(r->policy);
    free(r->run_id);
    free(r->policy_path);
    json_decref(r->reloads);
    free(r->out_dir);
    free(r->save_root);
    json_decref(r->policy_sites);
    free(r);
}
