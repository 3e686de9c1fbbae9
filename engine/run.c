/* The conductor: sets a run up, places ready tasks (engine/route decides
 * where), starts attempts (engine/attempt carries them out), and from each
 * attempt's outcome decides: charge, gate, book, retry, escalate, finish.
 * It alone writes the results view (engine/results.h) and the ledger. */
#include "engine/run.h"

#include "dsl/policy.h"
#include "engine/attempt.h"
#include "engine/booking.h"
#include "engine/budget.h"
#include "engine/cache.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/gate.h"
#include "engine/graph.h"
#include "engine/http.h"
#include "engine/output.h"
#include "engine/plan.h"
#include "engine/retry.h"
#include "engine/route.h"
#include "engine/sched.h"
#include "engine/util/fdlimit.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"
#include "engine/watch.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* How many waiting tasks one pass over the ready queue may look at. */
#define MAX_WAITERS_PER_PASS 256
/* Tokens a chat template may add around the messages (role markers). */
#define TEMPLATE_TOKENS 32
/* How long a task that found no file descriptor waits before it tries again. */
#define FD_WAIT_MS 50

typedef struct task_rt {
    struct fr_run *run;
    fr_route_task route; /* its routing record */
    fr_task_result *res; /* its entry in the results */
    char *last_error;    /* owned; route.last_error points at it */
    long unreached;      /* the local endpoint it could not connect to, -1 */
    int ep_attempts;     /* attempts on its current endpoint in a row */
    char *prompt;
    void *attempt; /* the attempt in flight (its backend's handle), NULL for none */
    uv_timer_t retry_timer;
    uv_timer_t deadline;
    bool timers_init;
    bool retry_armed;
    uint64_t attempt_ns; /* when the current attempt was sent */
    double reserved;     /* the worst case held against the caps while an attempt is out */
    long long row;       /* its attempt in the state store, booked in flight; 0 for none */
    char *cache_key;     /* the cache key of the current attempt's request */
    bool fd_wait;        /* its latest attempt found no file descriptor: it waits to try again */
} task_rt;

struct fr_run {
    fr_workflow *wf;
    fr_run_opts opts;
    fr_graph *g;
    fr_sched *sched;
    fr_policy *policy;
    char *policy_path;
    struct fr_watch *watch; /* the policy file, for hot reload */
    json_t *reloads;        /* the report's policy_reloads */
    int policy_versions;    /* versions seen, the live one included */
    uv_loop_t loop;
    fr_clock *clock;
    fr_http *http;
    fr_plan *plan; /* a plan's virtual-time backend, NULL for a run */
    fr_attempt_backend backend;
    bool standin_started;
    uv_signal_t sigint, sigterm;
    uv_timer_t wake;
    bool handles_init;
    fr_endpoints *eps;
    fr_router *router;
    task_rt *tasks;
    fr_results res;
    char *run_id;
    char *out_dir;
    char *save_root; /* the workflow folder's real path that save paths stay in; NULL with
                        --allow-save-anywhere */
    bool stopping;
    int retries_armed;
    /* Transfers in flight at once that the file descriptors allow (0: no
     * cap), and the cap in force now: lowered when a socket finds none
     * left, raised back one at a time by successes. */
    int fd_cap;
    int fd_cap_now;
    long fd_waits; /* attempts that found no descriptor and waited */
    int write_errors;
    double spent_usd; /* sum of the cost of every settled attempt */
    fr_budget *budget;
    fr_booking *books; /* the run's books in the state store; NULL for a plan */
    char *observed_from;
};

static void pump(fr_run *r);
static void maybe_finish(fr_run *r);

static uint64_t now_ns(const fr_run *r)
{
    return fr_clock_ns(r->clock);
}

static double elapsed_ms(const fr_run *r)
{
    return (double)(now_ns(r) - r->res.start_ns) / 1e6;
}

static const char *task_name(const task_rt *t)
{
    return t->run->wf->tasks[t->route.idx].name;
}

static size_t task_ep(const task_rt *t)
{
    return (size_t)t->res->endpoint;
}

static const fr_endpoint_spec *ep_spec(const task_rt *t)
{
    return fr_ep_spec(t->run->eps, task_ep(t));
}

/* Replaces the task's last error by `msg` (taken). */
static void set_last_error(task_rt *t, char *msg)
{
    free(t->last_error);
    t->last_error = msg;
    t->route.last_error = msg;
}

static fr_policy *live_policy(void *ud)
{
    return ((fr_run *)ud)->policy;
}

/* ---- setup ------------------------------------------------------------ */

static char *make_run_id(void)
{
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    unsigned suffix = (unsigned)((uv_hrtime() ^ ((uint64_t)getpid() << 16)) & 0xffff);
    return fr_xasprintf("%s-%04x", stamp, suffix);
}

static void init_tasks(fr_run *r)
{
    const fr_workflow *wf = r->wf;
    fr_results_init(&r->res, wf, r->g);
    r->res.run_id = r->run_id;
    r->res.sim = r->opts.sim;
    r->res.plan = r->opts.plan;
    r->tasks = fr_xcalloc(wf->ntasks ? wf->ntasks : 1, sizeof *r->tasks);
    for (size_t i = 0; i < wf->ntasks; i++) {
        fr_task_result *res = &r->res.tasks[i];
        task_rt *t = &r->tasks[i];
        t->run = r;
        t->res = res;
        t->unreached = -1;
        t->route = (fr_route_task){.idx = i, .res = res, .retry_ep = -1, .reason = "first"};
        t->route.tried = fr_xcalloc(wf->nendpoints ? wf->nendpoints : 1, 1);
    }
}

/* The scheduler over the graph, with the endpoints' slots, capped at the
 * transfers the file descriptors allow. */
static void init_sched(fr_run *r)
{
    const fr_workflow *wf = r->wf;
    size_t neps = wf->nendpoints;
    int *prio = fr_xcalloc(wf->ntasks ? wf->ntasks : 1, sizeof *prio);
    int *cap = fr_xcalloc(neps ? neps : 1, sizeof *cap);
    for (size_t t = 0; t < wf->ntasks; t++)
        prio[t] = wf->tasks[t].priority;
    long slots = 0;
    for (size_t e = 0; e < neps; e++) {
        cap[e] = wf->endpoints[e].max_parallel;
        slots += cap[e] > 0 ? cap[e] : 1;
    }
    r->sched = fr_sched_new(r->g, prio, neps, cap);
    /* Two descriptors per transfer, a reserve for the rest: at ulimit -n
     * 1024, max_parallel = 1000 runs as many as fit instead of failing
     * sockets (engine/util/fdlimit.h). */
    r->fd_cap = r->fd_cap_now = fr_fd_transfer_cap(fr_fd_limit());
    fr_sched_set_total_cap(r->sched, r->fd_cap);
    if (r->fd_cap > 0 && slots > r->fd_cap)
        fr_log(FR_LOG_INFO, "sched",
               "max_parallel_total=%ld fd_limit=%ld transfers_at_once=%d (file descriptors "
               "allow no more; raise ulimit -n for more)",
               slots, fr_fd_limit(), r->fd_cap);
    free(prio);
    free(cap);
}

/* The budget: --budget replaces the workflow's run cap, whatever either
 * says (0 is a cap like any other); a run that books also has the month's,
 * whose ledger it is given once the books are open. */
static void init_budget(fr_run *r, bool books)
{
    const fr_workflow *wf = r->wf;
    r->res.has_budget = r->opts.has_budget || wf->budget.has_usd;
    r->res.budget_usd = r->opts.has_budget   ? r->opts.budget_usd
                        : wf->budget.has_usd ? wf->budget.usd
                                             : 0;
    bool month = books && wf->budget.has_monthly;
    r->budget = fr_budget_new(r->res.has_budget, r->res.budget_usd, month, wf->budget.alert);
}

/* Opens the run's books (state.db, or sim.db for a rehearsal) and gives
 * the budget the month's ledger. */
static int open_books(fr_run *r, fr_error *err)
{
    char *path = fr_booking_state_path(r->opts.state_dir, r->opts.sim);
    int rc = fr_booking_open(path, r->run_id, &r->books, err);
    free(path);
    if (rc == FR_OK && r->wf->budget.has_monthly) {
        fr_budget_ledger ledger = fr_booking_ledger(r->books);
        fr_budget_set_month(r->budget, r->wf->budget.monthly_usd, &ledger);
    }
    return rc;
}

int fr_run_new(fr_workflow *wf, const fr_run_opts *opts, fr_run **out, fr_error *err)
{
    int rc;
    char *policy_path = NULL;
    fr_run *r = fr_xcalloc(1, sizeof *r);
    r->wf = wf;
    r->opts = *opts;
    r->run_id = make_run_id();
    r->clock = fr_clock_new(opts->plan ? NULL : &r->loop);
    rc = fr_graph_from_workflow(wf, &r->g, err);
    if (rc != FR_OK)
        goto cleanup;
    init_tasks(r);
    if (opts->sim && !opts->standin && !opts->plan) {
        rc = fr_error_set(err, FR_EINVAL, "--sim", 0, "a rehearsal needs a stand-in server");
        goto cleanup;
    }
    r->eps = fr_endpoints_new(wf, opts->sim || opts->plan);
    rc = fr_route_check_reachable(wf, r->eps, err);
    if (rc != FR_OK)
        goto cleanup;
    const char *baseline = opts->baseline ? opts->baseline : wf->baseline;
    if (baseline) {
        r->res.baseline = fr_workflow_find_endpoint(wf, baseline);
        if (r->res.baseline < 0) {
            rc = fr_error_set(err, FR_ECONFIG, "--baseline", 0, "no endpoint named '%s'", baseline);
            goto cleanup;
        }
    }
    init_budget(r, !opts->plan);
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
    init_sched(r);
    fr_route_env env = {
        .wf = wf,
        .eps = r->eps,
        .sched = r->sched,
        .budget = r->budget,
        .clock = r->clock,
        .start_ns = &r->res.start_ns,
        .policy = live_policy,
        .policy_ud = r,
        .explain = opts->explain,
    };
    r->router = fr_router_new(&env);
    /* The self-check offers the run's own endpoints, as route will see them. */
    json_t *check_cands = fr_route_check_candidates(r->router);
    rc = fr_policy_check(r->policy, check_cands, err);
    json_decref(check_cands);
    if (rc != FR_OK)
        goto cleanup;
    if (opts->plan) {
        r->observed_from = fr_booking_state_path(opts->state_dir, opts->sim);
        json_t *observed = fr_booking_observed(r->observed_from, wf->name);
        r->plan = fr_plan_new(r->clock, observed, opts->sim_latency_ms, opts->sim_tps);
        r->backend = fr_plan_backend(r->plan);
        r->res.observed = fr_plan_observed(r->plan);
        r->res.observed_from = r->observed_from;
        fr_budget_mute_alerts(r->budget); /* a plan spends nothing */
    } else {
        rc = open_books(r, err);
        if (rc != FR_OK)
            goto cleanup;
    }
    r->out_dir =
        opts->out_dir ? fr_xstrdup(opts->out_dir) : fr_xasprintf(".flowrun/out/%s", r->run_id);
    r->res.out_dir = r->out_dir;
    rc = r->plan ? FR_OK : fr_output_mkdirs(r->out_dir, err);
    if (rc == FR_OK)
        rc = fr_output_confine_saves(wf, &r->save_root, err);
    for (size_t t = 0; rc == FR_OK && !r->plan && t < wf->ntasks; t++)
        rc = fr_output_save_parents(wf, t, err);
    if (rc != FR_OK)
        goto cleanup;
    *out = r;
    r = NULL;
cleanup:
    free(policy_path);
    fr_run_free(r);
    return rc;
}

const char *fr_run_id(const fr_run *r)
{
    return r->run_id;
}

const char *fr_run_out_dir(const fr_run *r)
{
    return r->out_dir;
}

const fr_results *fr_run_results(const fr_run *r)
{
    return &r->res;
}

/* ---- task ends ---------------------------------------------------------- */

static void on_skip(void *ud, size_t task, size_t cause)
{
    fr_run *r = ud;
    fr_task_result *res = r->tasks[task].res;
    free(res->reason);
    res->reason = fr_xasprintf("dependency '%s' did not succeed", r->wf->tasks[cause].name);
    res->state = FR_TASK_SKIPPED;
    res->end_ns = now_ns(r);
    if (r->opts.progress)
        fr_log(FR_LOG_WARN, "sched", "task=%s status=skipped reason=\"%s\"",
               r->wf->tasks[task].name, res->reason);
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
    free(t->res->reason);
    t->res->reason = reason ? fr_xstrdup(reason) : NULL;
    t->res->state = state;
    t->res->end_ns = now_ns(r);
    if (r->opts.progress)
        fr_log(FR_LOG_WARN, "sched", "task=%s status=%s reason=\"%s\"", task_name(t),
               fr_task_state_name(state), reason ? reason : "");
    fr_sched_finish(r->sched, t->route.idx, state, on_skip, r);
}

static void on_written(void *ud, int rc, const char *path)
{
    if (rc != FR_OK)
        ((fr_run *)ud)->write_errors++; /* engine/output logged it */
}

static void task_ok(task_rt *t)
{
    fr_run *r = t->run;
    stop_task_timers(t);
    t->res->state = FR_TASK_OK;
    t->res->end_ns = now_ns(r);
    if (!r->plan)
        fr_output_task(&r->loop, r->wf, t->route.idx, r->out_dir, r->save_root, &t->res->reply,
                       on_written, r);
    if (r->opts.progress) {
        const fr_endpoint_spec *s = ep_spec(t);
        fr_log(FR_LOG_WARN, "sched",
               "task=%s status=ok endpoint=%s tier=%s latency_ms=%.0f tokens_in=%ld "
               "tokens_out=%ld",
               task_name(t), s->name, fr_tier_name(s->tier), t->res->latency_ms,
               t->res->usage.input, t->res->usage.output);
    }
    fr_sched_finish(r->sched, t->route.idx, FR_TASK_OK, on_skip, r);
}

/* ---- charging and booking ------------------------------------------------ */

/* Settles what an attempt cost (`charge`, USD) against its reservation. */
static void settle(task_rt *t, double charge)
{
    fr_run *r = t->run;
    fr_budget_charge(r->budget, t->reserved, charge, elapsed_ms(r));
    t->reserved = 0;
    t->res->cost += charge;
    r->spent_usd += charge;
}

static fr_attempt_rec attempt_rec(const task_rt *t)
{
    const fr_run *r = t->run;
    const fr_endpoint_spec *s = ep_spec(t);
    return (fr_attempt_rec){
        .run_id = r->run_id,
        .task = task_name(t),
        .endpoint = s->name,
        .tier = fr_tier_name(s->tier),
        .model = fr_ep_model(r->eps, task_ep(t)),
        .attempt = t->res->attempts,
    };
}

/* Books attempt `t` is about to send in flight at its worst case, before a
 * byte goes out: should the process die, that charge stays. False (logged)
 * when it cannot be written: then the request must not be sent. */
static bool reserve_attempt(task_rt *t)
{
    t->row = 0;
    if (!t->run->books)
        return true;
    fr_attempt_rec a = attempt_rec(t);
    a.cost_usd = t->reserved;
    return fr_booking_reserve(t->run->books, &a, &t->row);
}

/* Books how an attempt ended: what it used (`u`, may be NULL), cost and
 * latency, its outcome and error (borrowed). */
static void book_attempt(task_rt *t, const char *outcome, const char *error, const fr_usage *u,
                         double cost, double latency_ms)
{
    fr_run *r = t->run;
    if (!r->books || t->res->endpoint < 0)
        return;
    static const fr_usage none = {0};
    if (!u)
        u = &none;
    fr_attempt_rec a = attempt_rec(t);
    a.outcome = strcmp(outcome, "retry") == 0 ? "quality" : outcome;
    a.error = error;
    a.input = u->input;
    a.output = u->output;
    a.cached = u->cached;
    a.estimated = u->estimated;
    a.cost_usd = cost;
    a.latency_ms = latency_ms;
    long long row = t->row;
    t->row = 0;
    fr_booking_settle(r->books, row, &a, r->budget, elapsed_ms(r));
}

/* ---- attempts ----------------------------------------------------------- */

static void dispatch(task_rt *t, size_t ep);

static void on_wake(uv_timer_t *timer)
{
    pump(timer->data);
}

static void arm_wake(fr_run *r, double at_ms)
{
    double now = fr_clock_ms(r->clock);
    uint64_t delay = at_ms > now ? (uint64_t)(at_ms - now) + 1 : 1;
    uint64_t due = uv_timer_get_due_in(&r->wake);
    if (!uv_is_active((uv_handle_t *)&r->wake) || delay < due)
        uv_timer_start(&r->wake, on_wake, delay, 0);
}

static void on_retry_timer(uv_timer_t *timer)
{
    task_rt *t = timer->data;
    t->retry_armed = false;
    t->run->retries_armed--;
    fr_sched_requeue(t->run->sched, t->route.idx);
    pump(t->run);
}

static void arm_retry(task_rt *t, double delay_ms)
{
    t->route.retry_ep = t->res->endpoint;
    t->retry_armed = true;
    t->run->retries_armed++;
    uv_timer_start(&t->retry_timer, on_retry_timer, (uint64_t)delay_ms, 0);
}

/* Cancels the attempt in flight (a deadline, a signal): it may have been
 * billed, so it keeps its worst case, booked as `outcome`. */
static void cancel_attempt(task_rt *t, const char *outcome, const char *error)
{
    fr_run *r = t->run;
    if (!t->attempt)
        return;
    r->backend.cancel(r->backend.ud, t->attempt);
    t->attempt = NULL;
    fr_sched_release_slot(r->sched, task_ep(t));
    double charge = t->reserved;
    settle(t, charge);
    book_attempt(t, outcome, error, NULL, charge, (double)(now_ns(r) - t->attempt_ns) / 1e6);
    fr_route_set_outcome(t->res->decisions, outcome, strcmp(outcome, "cancelled") ? error : NULL);
}

static void on_deadline(uv_timer_t *timer)
{
    task_rt *t = timer->data;
    fr_run *r = t->run;
    double timeout_s = r->wf->tasks[t->route.idx].timeout_s;
    cancel_attempt(t, "timeout", "task timeout");
    char *why = t->fd_wait ? fr_xasprintf("timed out after %g s (task timeout) while waiting for "
                                          "a file descriptor; last error: %s; raise ulimit -n",
                                          timeout_s, t->last_error)
                           : fr_xasprintf("timed out after %g s (task timeout)", timeout_s);
    task_end(t, FR_TASK_FAILED, why);
    free(why);
    maybe_finish(r);
    pump(r);
}

/* After a failed attempt: endpoint health, then what the failure means
 * (engine/retry): the same endpoint after a wait, another one through the
 * policy, or the end. */
static void attempt_failed(task_rt *t, int rc, long status, double retry_after_s, const char *msg)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->route.idx];
    size_t e = task_ep(t);
    const char *name = ep_spec(t)->name;
    if (rc == FR_ECONNECT && ep_spec(t)->tier == FR_TIER_LOCAL)
        t->unreached = t->res->endpoint;
    set_last_error(t, fr_xasprintf("%s: %s", name, msg));
    fr_log(FR_LOG_INFO, "sched", "task=%s endpoint=%s attempt=%d error=\"%s\"", ts->name, name,
           t->res->attempts, msg);
    fr_clock_refresh(r->clock); /* the cached loop time may lag this reply */
    fr_ep_failed(r->eps, e, rc, status, retry_after_s, msg, fr_clock_ms(r->clock));
    fr_failure f = {rc, status, retry_after_s, msg, t->route.finish_outcome};
    fr_retry_state s = {
        .attempts = t->res->attempts,
        .ep_attempts = t->ep_attempts,
        .retries = ts->retries,
        .ep_usable = fr_ep_usable(r->eps, e),
        .now_ms = fr_clock_ms(r->clock),
        .deadline_ms = r->plan ? 0 : t->route.deadline_ms,
        .jitter = (double)rand() / RAND_MAX,
    };
    fr_retry_decision d = fr_retry_decide(&f, &s);
    if (d.kind == FR_RETRY_GIVE_UP) {
        char *why = fr_xasprintf("gave up after %d attempts; last error: %s", t->res->attempts,
                                 t->last_error);
        task_end(t, FR_TASK_FAILED, why);
        free(why);
        return;
    }
    if (d.kind == FR_RETRY_SAME) {
        arm_retry(t, d.delay_ms);
        return;
    }
    if (strcmp(d.reason, "error") != 0) /* escalation: say which gate */
        set_last_error(t, fr_xasprintf("%s: %s: %s", d.reason, name, msg));
    t->route.tried[e] = 1;
    t->route.retry_ep = -1;
    t->route.reason = d.reason;
    if (d.past_deadline && !fr_route_other_endpoint(r->router, &t->route)) {
        char *why = fr_xasprintf("%s asks to wait %.0f s before a retry, past the task's timeout "
                                 "of %g s; last error: %s",
                                 name, d.delay_ms / 1000.0, ts->timeout_s, msg);
        task_end(t, FR_TASK_FAILED, why);
        free(why);
        return;
    }
    fr_sched_requeue(r->sched, t->route.idx);
}

/* Slots in use over all endpoints. */
static int slots_in_use(const fr_run *r)
{
    int n = 0;
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        n += fr_sched_in_flight(r->sched, e);
    return n;
}

/* An attempt found no file descriptor for its socket (EMFILE, ENFILE):
 * nothing was sent and the server is not to blame, so the endpoint keeps
 * its health and the attempt does not count. The transfers at once are
 * capped at what is in flight now, and the task tries again after a short
 * wait on its retry timer (its timeout still bounds it). */
static void attempt_no_fds(task_rt *t, const fr_outcome *o)
{
    fr_run *r = t->run;
    const char *name = ep_spec(t)->name;
    settle(t, 0);
    t->res->attempts--;
    t->ep_attempts--;
    fr_ep_unsent(r->eps, task_ep(t));
    r->fd_waits++;
    t->fd_wait = true;
    set_last_error(t, fr_xasprintf("%s: %s", name, o->err.msg));
    fr_route_set_outcome(t->res->decisions, "error", o->err.msg);
    int in_use = slots_in_use(r);
    int cap = in_use > 1 ? in_use : 1;
    if (r->fd_cap_now == 0 || cap < r->fd_cap_now) {
        r->fd_cap_now = cap;
        fr_sched_set_total_cap(r->sched, cap);
    }
    fr_log(r->fd_waits == 1 ? FR_LOG_WARN : FR_LOG_INFO, "sched",
           "task=%s endpoint=%s error=\"%s\" transfers_at_once=%d (a local limit: the endpoint "
           "is not cooled down; the task tries again)",
           task_name(t), name, o->err.msg, r->fd_cap_now);
    arm_retry(t, FD_WAIT_MS);
}

/* Accepts the reply of an attempt as the task's answer (taken from `o`). */
static void accept_reply(task_rt *t, fr_outcome *o)
{
    fr_task_result *res = t->res;
    fr_route_set_outcome(res->decisions, "ok", NULL);
    fr_reply_close(&res->reply);
    res->reply = o->reply;
    memset(&o->reply, 0, sizeof o->reply);
    res->usage = res->reply.usage;
    res->latency_ms = o->total_ms;
    res->ttft_ms = o->ttft_ms >= 0 ? o->ttft_ms : o->total_ms;
    res->obs_latency = o->obs_latency;
    res->obs_output = o->obs_output;
    fr_ep_succeeded(t->run->eps, task_ep(t), o->total_ms);
    task_ok(t);
}

/* Runs the gates on a reply that arrived whole: it is charged first (it was
 * billed whatever happens next). Returns FR_OK or the first gate's error. */
static int gate_reply(task_rt *t, fr_outcome *o, double *cost, fr_error *err)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->route.idx];
    size_t e = task_ep(t);
    fr_gate_redact(&o->reply, ts->name, ep_spec(t)->name);
    *cost = fr_price_cost(ep_spec(t), &o->reply.usage);
    settle(t, *cost);
    int rc = fr_gate_finish(ts, &o->reply, &t->route.finish_outcome, err);
    if (rc == FR_OK)
        rc = fr_gate_schema(ts, &o->reply, err);
    if (rc == FR_OK)
        rc = fr_gate_check(r->wf, t->route.idx, &o->reply, &t->res->check_score, err);
    if (rc == FR_OK)
        rc = fr_route_on_result(r->router, &t->route, e, &o->reply, o->total_ms, *cost, err);
    return rc;
}

/* The outcome of an attempt: the conductor charges, gates, books, caches,
 * and accepts the reply or decides what the failure means. */
static void on_outcome(void *ud, fr_outcome *o)
{
    task_rt *t = ud;
    fr_run *r = t->run;
    t->attempt = NULL;
    fr_sched_release_slot(r->sched, task_ep(t));
    if (o->planned) {
        settle(t, fr_price_cost(ep_spec(t), &o->reply.usage));
        accept_reply(t, o);
    } else if (o->no_fds) {
        attempt_no_fds(t, o);
    } else {
        if (r->fd_cap_now < r->fd_cap && o->delivered) {
            /* Descriptors came back: one more transfer at once, up to the cap. */
            r->fd_cap_now++;
            fr_sched_set_total_cap(r->sched, r->fd_cap_now);
        }
        fr_error *err = &o->err;
        int rc = o->rc;
        double cost = 0;
        fr_usage used = rc == FR_OK ? o->reply.usage : (fr_usage){0};
        t->route.finish_outcome = NULL;
        if (rc == FR_OK)
            rc = gate_reply(t, o, &cost, err);
        if (rc != FR_OK && !err->msg[0])
            fr_error_set(err, rc, NULL, 0, "%s", fr_strerror(rc));
        if (t->reserved > 0) {
            /* A reply that broke off after the server started answering may
             * have been billed: it keeps its worst case. One refused before
             * any answer costs nothing. */
            cost = o->billed ? t->reserved : 0;
            settle(t, cost);
        }
        const char *outcome = rc == FR_OK         ? "ok"
                              : rc == FR_EFINISH  ? t->route.finish_outcome
                              : rc == FR_EQUALITY ? "quality"
                              : rc == FR_ERETRY   ? "retry"
                                                  : "error";
        book_attempt(t, outcome, rc == FR_OK ? NULL : err->msg, &used, cost, o->total_ms);
        fr_error cerr = {0};
        if (rc == FR_OK && r->books && t->cache_key &&
            fr_cache_put(fr_booking_store(r->books), t->cache_key, ep_spec(t)->name, &o->reply,
                         &cerr) != FR_OK)
            fr_booking_write_failed(r->books, &cerr);
        if (rc == FR_OK) {
            accept_reply(t, o);
        } else {
            fr_reply_close(&o->reply);
            fr_route_set_outcome(t->res->decisions, outcome, err->msg);
            attempt_failed(t, rc, o->status, o->retry_after_s, err->msg);
        }
    }
    maybe_finish(r);
    pump(r);
}

/* Sends an attempt of task `t` to endpoint `ep` (a slot is free). */
static void dispatch(task_rt *t, size_t ep)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->route.idx];
    const fr_endpoint_spec *s = fr_ep_spec(r->eps, ep);
    bool taken = fr_sched_take_slot(r->sched, ep);
    (void)taken;
    assert(taken);
    if ((long)ep != t->res->endpoint)
        t->ep_attempts = 0;
    t->res->moved_from =
        s->tier == FR_TIER_CLOUD ? fr_route_down_local(r->router, &t->route, t->unreached) : -1;
    /* The worst case is held against every cap until the attempt settles. */
    t->reserved = fr_price_worst(s, t->route.worst_input, ts->max_tokens);
    t->res->worst_cost = t->reserved;
    fr_budget_reserve(r->budget, t->reserved);
    t->res->endpoint = (long)ep;
    t->route.retry_ep = -1;
    t->fd_wait = false;
    t->res->attempts++;
    t->ep_attempts++;
    fr_ep_sent(r->eps, ep);
    if (t->res->start_ns == 0 || r->plan)
        t->res->start_ns = now_ns(r);
    fr_attempt_req req = {
        .call = fr_attempt_call(r->wf, t->route.idx, r->eps, ep, t->prompt),
        .protocol = fr_ep_protocol(r->eps, ep),
        .task = ts,
        .endpoint = s,
        .est_input = t->route.est_input,
    };
    if (!r->plan) {
        free(t->cache_key);
        t->cache_key = fr_cache_key(r->wf->name, ts->name, s->name, req.protocol, &req.call);
        fr_log(FR_LOG_INFO, "sched", "task=%s endpoint=%s tier=%s attempt=%d dispatch", ts->name,
               s->name, fr_tier_name(s->tier), t->res->attempts);
        fr_clock_refresh(r->clock);
        req.left_ms = t->route.deadline_ms - fr_clock_ms(r->clock);
    }
    t->attempt_ns = now_ns(r);
    fr_error err = {0};
    int rc = FR_OK;
    if (!reserve_attempt(t))
        rc = fr_error_set(&err, FR_ESTORE, NULL, 0,
                          "the state store cannot be written; the request was not sent");
    else
        rc = r->backend.start(r->backend.ud, &req, on_outcome, t, &t->attempt, &err);
    if (rc == FR_OK)
        return;
    t->attempt = NULL;
    fr_sched_release_slot(r->sched, ep);
    settle(t, 0); /* nothing was sent */
    fr_route_set_outcome(t->res->decisions, "error", err.msg);
    if (rc == FR_ESTORE) {
        /* Without a durable reservation nothing is sent, and no new work
         * starts (pump): the task fails. */
        task_end(t, FR_TASK_FAILED, err.msg);
        return;
    }
    book_attempt(t, "error", err.msg, NULL, 0, 0);
    attempt_failed(t, rc, 0, -1, err.msg);
}

/* Renders the task's prompt from its dependencies' outputs, once. A plan
 * has no outputs: its prompt is the template plus what the dependencies are
 * expected to produce. */
static int render_prompt(fr_run *r, task_rt *t, fr_error *err)
{
    const fr_task_spec *ts = &r->wf->tasks[t->route.idx];
    const char *sys = r->wf->agents[ts->agent].system;
    if (r->plan) {
        t->route.est_input = (ts->prompt ? fr_estimate_tokens(ts->prompt) : 16) +
                             (sys ? fr_estimate_tokens(sys) : 0);
        for (size_t d = 0; d < ts->ndeps; d++)
            t->route.est_input += r->res.tasks[ts->dep_index[d]].usage.output;
        t->route.worst_input = 4 * t->route.est_input + TEMPLATE_TOKENS;
        return FR_OK;
    }
    if (t->prompt)
        return FR_OK;
    json_t *ctx = json_object();
    for (size_t d = 0; d < ts->ndeps; d++) {
        const fr_reply *dep = &r->res.tasks[ts->dep_index[d]].reply;
        json_object_set_new(ctx, ts->deps[d],
                            json_pack("{s:s, s:O}", "text", dep->text ? dep->text : "", "json",
                                      dep->json ? dep->json : json_null()));
    }
    json_object_set_new(ctx, "var", r->wf->vars ? json_incref(r->wf->vars) : json_object());
    int rc = fr_workflow_render_prompt(r->wf, t->route.idx, ctx, &t->prompt, err);
    json_decref(ctx);
    if (rc != FR_OK)
        return rc;
    t->route.est_input = fr_estimate_tokens(t->prompt) + (sys ? fr_estimate_tokens(sys) : 0);
    t->route.worst_input = (long)(strlen(t->prompt) + (sys ? strlen(sys) : 0)) + TEMPLATE_TOKENS;
    return FR_OK;
}

/* Looks for a stored result of this exact request (engine/cache); on a
 * hit the task is done without a request and without cost. This is how a
 * run resumes after a crash. */
static bool try_cache(fr_run *r, task_rt *t)
{
    if (r->plan || !fr_cache_may_answer(r->books != NULL, r->opts.no_cache, r->opts.fresh,
                                        r->opts.nfresh, task_name(t)))
        return false;
    fr_cache_ctx c = {
        .store = fr_booking_store(r->books), .wf = r->wf, .eps = r->eps, .router = r->router};
    fr_reply reply = {0};
    long e =
        fr_cache_lookup(&c, &t->route, t->prompt, &reply, &t->res->check_score, &t->last_error);
    if (e < 0)
        return false;
    fr_task_result *res = t->res;
    res->endpoint = e;
    res->cached = true;
    fr_reply_close(&res->reply);
    res->reply = reply;
    res->usage = reply.usage;
    res->latency_ms = res->ttft_ms = 0;
    res->start_ns = now_ns(r);
    task_ok(t);
    return true;
}

/* Starts the task's timeout when it first becomes ready, so that waiting
 * for an endpoint counts against it as much as talking to one. */
static void arm_deadline(task_rt *t)
{
    fr_run *r = t->run;
    const fr_task_spec *ts = &r->wf->tasks[t->route.idx];
    if (!t->timers_init) {
        uv_timer_init(&r->loop, &t->deadline);
        uv_timer_init(&r->loop, &t->retry_timer);
        t->deadline.data = t->retry_timer.data = t;
        t->timers_init = true;
    }
    fr_clock_refresh(r->clock);
    t->route.deadline_ms = fr_clock_ms(r->clock) + ts->timeout_s * 1000.0;
    uv_timer_start(&t->deadline, on_deadline, (uint64_t)(ts->timeout_s * 1000.0), 0);
}

/* Tries to place one ready task. Returns true when the task left the
 * queue (dispatched or ended), false when it must wait. */
static bool place(fr_run *r, task_rt *t)
{
    if (!r->plan && t->route.deadline_ms == 0)
        arm_deadline(t);
    if (t->route.retry_ep < 0) {
        fr_error err = {0};
        if (render_prompt(r, t, &err) != FR_OK) {
            char msg[1400];
            task_end(t, FR_TASK_FAILED, fr_error_format(&err, msg, sizeof msg));
            return true;
        }
        if (t->res->attempts == 0 && try_cache(r, t))
            return true;
    }
    fr_route_decision d = fr_route(r->router, &t->route);
    switch (d.kind) {
    case FR_ROUTE_DISPATCH:
        dispatch(t, d.endpoint);
        return true;
    case FR_ROUTE_END:
        task_end(t, d.state, d.reason);
        free(d.reason);
        return true;
    default:
        if (d.wake_at_ms > 0)
            arm_wake(r, d.wake_at_ms);
        return false;
    }
}

/* True while something in flight or scheduled may still change what the
 * policy sees. */
static bool anything_pending(fr_run *r)
{
    if (r->plan)
        return fr_plan_pending(r->plan) > 0;
    return fr_http_active(r->http) > 0 || r->retries_armed > 0 ||
           uv_is_active((uv_handle_t *)&r->wake);
}

/* Places ready tasks while endpoints have free slots. When nothing is in
 * flight and nothing is scheduled, a task the policy still keeps waiting
 * would stall the run forever: it fails with that reason instead. */
static void pump(fr_run *r)
{
    if (r->stopping)
        return;
    size_t t;
    if (r->books && fr_booking_failed(r->books)) {
        /* No durability, no new work: what runs finishes, the rest fails. */
        while (fr_sched_pop(r->sched, &t))
            task_end(&r->tasks[t], FR_TASK_FAILED,
                     "the state store cannot be written; no new work is started");
        maybe_finish(r);
        return;
    }
    size_t waiters[MAX_WAITERS_PER_PASS];
    size_t nw = 0;
    fr_route_pass_begin(r->router);
    while (nw < MAX_WAITERS_PER_PASS && fr_sched_total_free(r->sched) > 0 &&
           fr_sched_pop(r->sched, &t)) {
        fr_route_pass_waiting(r->router, nw);
        if (!place(r, &r->tasks[t]))
            waiters[nw++] = t;
    }
    fr_route_pass_begin(r->router);
    for (size_t i = 0; i < nw; i++)
        fr_sched_requeue(r->sched, waiters[i]);

    /* Nothing runs and nothing is scheduled, so nothing the policy sees
     * will change: a task it keeps waiting is a task it refuses. A retry
     * waiting for its endpoint goes ahead (all slots are free). */
    while (!r->stopping && !anything_pending(r) && fr_sched_ready(r->sched) > 0 &&
           fr_sched_pop(r->sched, &t)) {
        task_rt *tr = &r->tasks[t];
        if (tr->route.retry_ep >= 0) {
            dispatch(tr, (size_t)tr->route.retry_ep);
            if (!r->plan && fr_http_active(r->http) == 0 && r->retries_armed == 0)
                arm_wake(r, fr_clock_ms(r->clock)); /* it failed at once: place again */
            break;
        }
        char *why = fr_xasprintf("policy %s keeps the task waiting while nothing else runs: it "
                                 "accepts none of the endpoints the task may use",
                                 fr_policy_name(r->policy));
        task_end(tr, FR_TASK_FAILED, why);
        free(why);
    }
    maybe_finish(r);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void close_all(fr_run *r)
{
    r->stopping = true;
    r->res.end_ns = now_ns(r);
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
    if (r->standin_started)
        r->opts.standin->stop(r->opts.standin->ud);
    r->standin_started = false;
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
    r->res.interrupted = true;
    r->res.exit_code = 128 + signum;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        if (fr_task_state_terminal(fr_sched_state(r->sched, t)))
            continue;
        cancel_attempt(tr, "cancelled", "interrupted");
        stop_task_timers(tr);
        free(tr->res->reason);
        tr->res->reason = fr_xstrdup("interrupted");
        tr->res->end_ns = now_ns(r);
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
    double at_ms = elapsed_ms(r);
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
        json_t *check_cands = fr_route_check_candidates(r->router);
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

/* Starts the stand-in server of a rehearsal (--sim) on the run's loop, one
 * model per endpoint with its capacity and the expected speed. */
static int start_standin(fr_run *r)
{
    size_t n = r->wf->nendpoints;
    fr_standin_model *m = fr_xcalloc(n ? n : 1, sizeof *m);
    char **urls = fr_xcalloc(n ? n : 1, sizeof *urls);
    for (size_t e = 0; e < n; e++) {
        const fr_endpoint_spec *s = fr_ep_spec(r->eps, e);
        m[e] = (fr_standin_model){.name = fr_ep_model(r->eps, e),
                                  .protocol = s->protocol,
                                  .max_concurrent = s->max_parallel};
        fr_expected_speed(s->tier, r->opts.sim_latency_ms, r->opts.sim_tps, &m[e].latency_ms,
                          &m[e].tokens_per_s);
    }
    fr_error err = {0};
    const fr_standin *si = r->opts.standin;
    int rc = si->start(si->ud, &r->loop, m, n, urls, &err);
    if (rc == FR_OK) {
        r->standin_started = true;
        for (size_t e = 0; e < n; e++)
            fr_ep_set_url(r->eps, e, urls[e]);
    } else {
        char msg[1400];
        fr_log(FR_LOG_ERROR, "sim", "error=\"%s\"", fr_error_format(&err, msg, sizeof msg));
        rc = FR_EIO;
    }
    for (size_t e = 0; e < n; e++)
        free(urls[e]);
    free(urls);
    free(m);
    return rc;
}

/* Fills what the report reads and the run's exit code (DESIGN.md section 7). */
static int publish(fr_run *r)
{
    bool failed = false, budget = false;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        fr_task_state st = fr_sched_state(r->sched, t);
        r->res.tasks[t].state = st;
        failed |= st != FR_TASK_OK;
        budget |= st == FR_TASK_BUDGET;
    }
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        r->res.endpoints[e] = (fr_endpoint_result){
            .stats = fr_ep_stats_of(r->eps, e),
            .model = fr_ep_model(r->eps, e),
            .peak_in_flight = fr_sched_peak(r->sched, e),
            .max_parallel = fr_sched_capacity(r->sched, e),
        };
    r->res.policy = fr_policy_name(r->policy);
    r->res.policy_errors = fr_route_policy_errors(r->router);
    r->res.alerts = fr_budget_alerts(r->budget);
    r->res.reloads = r->reloads;
    int code = r->res.interrupted ? r->res.exit_code /* 130 SIGINT, 143 SIGTERM */
               : r->books && fr_booking_failed(r->books) ? 74
               : budget                                  ? 3
               : failed || r->write_errors               ? 1
                                                         : 0;
    if (r->plan)
        code = budget ? 3 : failed ? 1 : 0; /* as the run would end */
    r->res.exit_code = code;
    return code;
}

/* Runs a plan: the same routing and scheduling as a run, on a virtual
 * clock that jumps from one expected completion to the next. */
static int execute_plan(fr_run *r)
{
    r->res.start_ns = 0;
    maybe_finish(r);
    pump(r);
    while (!r->stopping && fr_plan_step(r->plan))
        ;
    r->res.end_ns = now_ns(r);
    return publish(r);
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
    if (r->http)
        r->backend = fr_attempt_wire(r->http);
    r->res.start_ns = now_ns(r);
    fr_booking_begin(r->books, r->wf->name, r->wf->path);
    fr_error werr = {0};
    /* An embedded built-in has no file that could change. */
    if (!fr_policy_path_is_builtin(r->policy_path)) {
        r->watch = fr_watch_new(&r->loop, r->policy_path, 0, on_policy_change, r, &werr);
        if (!r->watch) {
            char msg[1400];
            fr_log(FR_LOG_WARN, "policy", "error=\"%s\"; the policy will not be reloaded",
                   fr_error_format(&werr, msg, sizeof msg));
        }
    }
    if (!r->http || (r->opts.sim && start_standin(r) != FR_OK)) {
        for (size_t t = 0; t < r->wf->ntasks; t++)
            if (!fr_task_state_terminal(fr_sched_state(r->sched, t))) {
                r->tasks[t].res->reason = fr_xstrdup("the run could not start");
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
    int code = publish(r);
    const char *status = code == 0            ? "ok"
                         : code == 3          ? "budget"
                         : r->res.interrupted ? "interrupted"
                                              : "failed";
    if (r->books && fr_booking_end(r->books, status, code, r->spent_usd) != FR_OK && code == 0)
        r->res.exit_code = 74;
    return r->res.exit_code;
}

void fr_run_free(fr_run *r)
{
    if (!r)
        return;
    fr_endpoints_free(r->eps);
    fr_redact_clear();
    for (size_t t = 0; r->tasks && t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        free(tr->route.tried);
        free(tr->prompt);
        free(tr->last_error);
        free(tr->cache_key);
    }
    free(r->tasks);
    fr_results_close(&r->res);
    fr_router_free(r->router);
    fr_plan_free(r->plan);
    fr_budget_free(r->budget);
    fr_booking_free(r->books);
    fr_sched_free(r->sched);
    fr_graph_free(r->g);
    fr_policy_free(r->policy);
    fr_clock_free(r->clock);
    free(r->run_id);
    free(r->policy_path);
    json_decref(r->reloads);
    free(r->out_dir);
    free(r->save_root);
    free(r->observed_from);
    free(r);
}
