#include "engine/task.h"

#include "engine/fanout.h"

#include "engine/cache.h"
#include "engine/gate.h"
#include "engine/retry.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* How long a task that found no file descriptor waits before it tries again. */
#define FD_WAIT_MS 50

struct fr_task {
    fr_task_env *env;
    size_t idx;
    fr_route_task route; /* its routing record */
    fr_task_result *res; /* its entry in the results */
    char *last_error;    /* owned; route.last_error points at it */
    long unreached;      /* the local endpoint it could not connect to, -1 */
    int ep_attempts;     /* attempts on its current endpoint in a row */
    char *prompt;
    void *attempt;       /* the attempt in flight (its backend's handle), NULL */
    uint64_t attempt_ns; /* when it was sent */
    double reserved;     /* its worst case, held against the caps while it is out */
    long long row;       /* its row in the state store, booked in flight; 0 for none */
    double score;        /* the check's score of the attempt's reply, < 0: none */
    /* The request of an attempt whose reservation waits for the turn's
     * commit (engine/booking): sent when the books release it. */
    fr_booking_wait wait;
    fr_attempt_req req;
    char *cache_key;    /* the cache key of its request */
    fr_cache_memo memo; /* the key its cache lookup computed, for the dispatch */
    bool fd_wait;       /* it found no file descriptor: the task waits to try again */
    /* The tool loop: how its attempts call back, the conversation a retry
     * on the same endpoint goes on with (owned, NULL for none), and what
     * the attempt's turns before its last used. */
    fr_attempt_tools loop;
    json_t *conversation;
    fr_usage turn_usage;
};

static void on_durable(void *ud, bool durable);

fr_task *fr_task_new(fr_task_env *env, size_t idx)
{
    fr_task *t = fr_xcalloc(1, sizeof *t);
    size_t neps = env->wf->nendpoints;
    t->env = env;
    t->idx = idx;
    t->res = &env->results->tasks[idx];
    t->unreached = -1;
    t->route = (fr_route_task){.idx = idx, .res = t->res, .retry_ep = -1, .reason = "first"};
    /* Until the run's tools are resolved (never, in a plan), what it names. */
    t->route.ntools = env->wf->tasks[idx].ntools;
    t->route.tried = fr_xcalloc(neps ? neps : 1, 1);
    t->wait = (fr_booking_wait){.go = on_durable, .ud = t};
    return t;
}

void fr_task_free(fr_task *t)
{
    if (!t)
        return;
    free(t->route.tried);
    free(t->prompt);
    free(t->last_error);
    free(t->cache_key);
    free(t->memo.key);
    json_decref(t->conversation);
    free(t);
}

fr_route_task *fr_task_route(fr_task *t)
{
    return &t->route;
}

const char *fr_task_prompt(const fr_task *t)
{
    return t->prompt;
}

const char *fr_task_last_error(const fr_task *t)
{
    return t->last_error;
}

fr_cache_memo *fr_task_cache_memo(fr_task *t)
{
    return &t->memo;
}

char **fr_task_last_error_slot(fr_task *t)
{
    return &t->last_error;
}

bool fr_task_fd_wait(const fr_task *t)
{
    return t->fd_wait;
}

char *fr_task_timeout_reason(const fr_task *t)
{
    double timeout_s = t->env->wf->tasks[t->idx].timeout_s;
    if (!t->fd_wait)
        return fr_xasprintf("timed out after %g s (task timeout)", timeout_s);
    return fr_xasprintf("timed out after %g s (task timeout) while waiting for a file "
                        "descriptor; last error: %s; raise ulimit -n",
                        timeout_s, fr_task_last_error(t));
}

static const char *name_of(const fr_task *t)
{
    return t->env->wf->tasks[t->idx].name;
}

static size_t ep_of(const fr_task *t)
{
    return (size_t)t->res->endpoint;
}

static const fr_endpoint_spec *spec_of(const fr_task *t)
{
    return fr_ep_spec(t->env->eps, ep_of(t));
}

/* Sets `err` to why a request the shared store's fence refused was not
 * sent, over the caps `over` (FR_OVER_*), after `prefix` (may be NULL);
 * returns FR_EBUDGET. */
static int over_error(const fr_task *t, int over, fr_error *err, const char *prefix)
{
    return fr_error_set(err, FR_EBUDGET, NULL, 0,
                        "%sthe worst case on '%s' does not fit the %s: the shared ledger has too "
                        "little left for it (this run's share was taken back while the shared "
                        "store had not heard from this process, or spent)",
                        prefix ? prefix : "", spec_of(t)->name,
                        over == (FR_OVER_MONTH | FR_OVER_DAY) ? "monthly cap or the daily cap"
                        : over == FR_OVER_DAY                 ? "daily cap"
                                                              : "monthly cap");
}

/* Replaces the task's last error by `msg` (taken). */
static void set_last_error(fr_task *t, char *msg)
{
    free(t->last_error);
    t->last_error = msg;
    t->route.last_error = msg;
}

static double elapsed_ms(const fr_task *t)
{
    return (double)(fr_clock_ns(t->env->clock) - t->env->results->start_ns) / 1e6;
}

/* The attempt in flight ended with `outcome` and `error` (borrowed), its
 * last turn having used `last` (NULL for nothing): into the attempt log,
 * with the turns before it. */
static void log_end(fr_task *t, const char *outcome, const char *error, const fr_usage *last)
{
    fr_usage u = t->turn_usage;
    if (last) {
        u.input += last->input;
        u.output += last->output;
        u.cached += last->cached;
    }
    fr_results_attempt_end(t->res, elapsed_ms(t), outcome, error, &u);
}

static fr_task_next next_end(fr_task_state state, char *reason)
{
    return (fr_task_next){.kind = FR_NEXT_END, .state = state, .reason = reason};
}

/* The bytes of `j` (borrowed) as compact JSON, counted without a copy
 * (json_dumpb into no buffer returns the size it needs; 0 on failure). */
static size_t json_bytes(const json_t *j)
{
    return json_dumpb(j, NULL, 0, JSON_COMPACT);
}

/* ---- charging and booking ------------------------------------------------ */

/* Settles what an attempt cost (`charge`, USD) against its reservation. */
static void settle(fr_task *t, double charge)
{
    fr_budget_charge(t->env->budget, t->reserved, charge, elapsed_ms(t));
    t->reserved = 0;
    t->res->cost += charge;
    t->env->spent_usd += charge;
}

static fr_attempt_rec attempt_rec(const fr_task *t)
{
    const fr_endpoint_spec *s = spec_of(t);
    return (fr_attempt_rec){
        .run_id = t->env->run_id,
        .task = name_of(t),
        .endpoint = s->name,
        .tier = fr_tier_name(s->tier),
        .model = fr_ep_model(t->env->eps, ep_of(t)),
        .type = t->env->wf->tasks[t->idx].type,
        .attempt = t->res->attempts,
        .turn = t->res->turns, /* tool turns ended: this request's turn */
        .has_complexity = true,
        .complexity = t->env->wf->tasks[t->idx].complexity,
        .has_score = t->score >= 0,
        .score = t->score,
    };
}

/* Whether the task's endpoint holds its slots across the processes sharing
 * the state store: it says so, and this is no rehearsal (whose stand-in
 * server is this process's alone). */
static bool shared_slots(const fr_task *t)
{
    return spec_of(t)->shared && !t->env->results->sim;
}

/* Books the attempt in flight at its worst case, before a byte goes out:
 * should the process die, that charge stays. False (logged) when it cannot
 * be written: then the request must not be sent. With `w` the request
 * waits for the turn's commit when w->parked (fr_booking_reserve); without,
 * the reservation is committed when this returns. An attempt whose worst
 * case is $0 (a local endpoint without a price) has no charge to keep: it
 * goes out at once and is booked once, when it ends (book_attempt), unless
 * its endpoint is shared: then every request holds a slot across processes
 * (fr_booking_reserve_slot) and may wait for one. */
static bool reserve_attempt(fr_task *t, fr_booking_wait *w)
{
    t->row = 0;
    t->score = -1; /* until its reply is checked */
    if (w)
        w->parked = false;
    if (!t->env->books)
        return true;
    const fr_endpoint_spec *s = spec_of(t);
    fr_attempt_rec a = attempt_rec(t);
    a.cost_usd = t->reserved;
    if (w && shared_slots(t)) {
        /* A shared endpoint's request always holds a slot, $0 or not: it
         * may wait for one that other processes hold (w->queued). */
        bool ok = fr_booking_reserve_slot(t->env->books, &a, s->max_parallel, &t->row, w);
        t->res->capacity_wait = w->queued;
        return ok;
    }
    if (t->reserved <= 0)
        return true;
    return fr_booking_reserve(t->env->books, &a, &t->row, w);
}

/* Books a tool loop's later turn in flight: on a shared endpoint as a
 * slot, and *held false (nothing booked yet) while other processes hold
 * every slot or, on a shared store, until its reservation is durable (the
 * caller asks again soon). False (logged) when it cannot be written. */
static bool reserve_turn(fr_task *t, bool *held)
{
    const fr_endpoint_spec *s = spec_of(t);
    *held = true;
    if (!t->env->books || !shared_slots(t)) {
        bool ok = reserve_attempt(t, NULL);
        *held = t->reserved <= 0 || t->row != 0;
        return ok;
    }
    fr_attempt_rec a = attempt_rec(t);
    a.cost_usd = t->reserved;
    t->row = 0;
    bool ok = fr_booking_reserve_slot(t->env->books, &a, s->max_parallel, &t->row, NULL);
    *held = t->row != 0;
    return ok;
}

/* Counts the time the task's request waited for a slot of its endpoint
 * held by other processes, once it has one (or was cancelled waiting). */
static void count_capacity_wait(fr_task *t)
{
    t->res->capacity_wait = false;
    if (t->wait.waited_ms <= 0 || t->res->endpoint < 0)
        return;
    fr_endpoint_result *er = &t->env->results->endpoints[ep_of(t)];
    er->capacity_wait_ms += t->wait.waited_ms;
    er->capacity_waits++;
    t->wait.waited_ms = 0;
}

/* Books how an attempt ended: what it used (`u`, may be NULL), cost,
 * latency and time to first content (< 0: no reply), its outcome and error
 * (borrowed). */
static void book_attempt(fr_task *t, const char *outcome, const char *error, const fr_usage *u,
                         double cost, double latency_ms, double ttft_ms)
{
    if (!t->env->books || t->res->endpoint < 0)
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
    a.has_ttft = ttft_ms >= 0;
    a.ttft_ms = ttft_ms;
    long long row = t->row;
    t->row = 0;
    fr_booking_settle(t->env->books, row, &a, t->env->budget, elapsed_ms(t));
}

void fr_task_cancel(fr_task *t, const char *outcome, const char *error)
{
    fr_task_env *env = t->env;
    bool parked = t->wait.parked;
    if (!t->attempt && !parked)
        return;
    if (parked) { /* its request was never sent: it costs nothing */
        if (t->wait.queued)
            t->wait.waited_ms =
                (double)(fr_clock_ns(env->clock) - t->attempt_ns) / 1e6; /* waited till now */
        fr_booking_unpark(env->books, &t->wait);
        count_capacity_wait(t);
    } else
        env->backend.cancel(env->backend.ud, t->attempt);
    t->attempt = NULL;
    t->res->attempt_ns = 0;
    env->in_flight--;
    fr_sched_release_slot(env->sched, ep_of(t));
    double charge = parked ? 0 : t->reserved;
    settle(t, charge);
    book_attempt(t, outcome, error, NULL, charge,
                 (double)(fr_clock_ns(env->clock) - t->attempt_ns) / 1e6, -1);
    fr_route_set_outcome(t->res->decisions, outcome, strcmp(outcome, "cancelled") ? error : NULL);
    log_end(t, outcome, strcmp(outcome, "cancelled") ? error : NULL, NULL);
}

/* ---- what an outcome means ---------------------------------------------- */

/* After a failed attempt: endpoint health, then what the failure means
 * (engine/retry): the same endpoint after a wait, another one through the
 * policy, or the end. */
static fr_task_next attempt_failed(fr_task *t, int rc, long status, double retry_after_s,
                                   const char *msg)
{
    fr_task_env *env = t->env;
    const fr_task_spec *ts = &env->wf->tasks[t->idx];
    size_t e = ep_of(t);
    const char *name = spec_of(t)->name;
    if (rc == FR_ECONNECT && spec_of(t)->tier == FR_TIER_LOCAL)
        t->unreached = t->res->endpoint;
    set_last_error(t, fr_xasprintf("%s: %s", name, msg));
    fr_log_event(FR_LOG_INFO, "sched", "task.attempt_failed",
                 "task=%s endpoint=%s attempt=%d error=\"%s\"", ts->name, name, t->res->attempts,
                 msg);
    fr_clock_refresh(env->clock); /* the cached loop time may lag this reply */
    fr_ep_failed(env->eps, e, rc, status, retry_after_s, msg, fr_clock_ms(env->clock));
    fr_failure f = {rc, status, retry_after_s, msg, t->route.finish_outcome};
    fr_retry_state s = {
        .attempts = t->res->attempts,
        .ep_attempts = t->ep_attempts,
        .retries = ts->retries,
        .ep_usable = fr_ep_usable(env->eps, e),
        .now_ms = fr_clock_ms(env->clock),
        .deadline_ms = env->plan ? 0 : t->route.deadline_ms,
        .jitter = (double)rand() / RAND_MAX,
    };
    fr_retry_decision d = fr_retry_decide(&f, &s);
    if (d.kind == FR_RETRY_GIVE_UP)
        return next_end(FR_TASK_FAILED, fr_xasprintf("gave up after %d attempts; last error: %s",
                                                     t->res->attempts, t->last_error));
    if (d.kind == FR_RETRY_SAME) {
        t->route.retry_ep = t->res->endpoint;
        return (fr_task_next){.kind = FR_NEXT_RETRY, .delay_ms = d.delay_ms};
    }
    if (strcmp(d.reason, "error") != 0) /* escalation: say which gate */
        set_last_error(t, fr_xasprintf("%s: %s: %s", d.reason, name, msg));
    t->route.tried[e] = 1;
    t->route.retry_ep = -1;
    t->route.reason = d.reason;
    if (d.past_deadline && !fr_route_other_endpoint(env->router, &t->route))
        return next_end(FR_TASK_FAILED,
                        fr_xasprintf("%s asks to wait %.0f s before a retry, past the task's "
                                     "timeout of %g s; last error: %s",
                                     name, d.delay_ms / 1000.0, ts->timeout_s, msg));
    return (fr_task_next){.kind = FR_NEXT_REQUEUE};
}

/* An attempt found no file descriptor for its socket (EMFILE, ENFILE):
 * nothing was sent and the server is not to blame, so the endpoint keeps
 * its health and the attempt does not count. The transfers at once are
 * capped at what is in flight now, and the task tries again after a short
 * wait (its timeout still bounds it). */
static fr_task_next attempt_no_fds(fr_task *t, const fr_outcome *o)
{
    fr_task_env *env = t->env;
    const char *name = spec_of(t)->name;
    settle(t, 0);
    if (t->row) /* booked in flight, never sent: no charge, and its slot is free again */
        book_attempt(t, "cancelled", o->err.msg, NULL, 0, 0, -1);
    fr_results_attempt_drop(t->res);
    t->res->attempts--;
    t->ep_attempts--;
    fr_ep_unsent(env->eps, ep_of(t));
    env->fd_waits++;
    t->fd_wait = true;
    set_last_error(t, fr_xasprintf("%s: %s", name, o->err.msg));
    fr_route_set_outcome(t->res->decisions, "error", o->err.msg);
    int in_use = 0;
    for (size_t e = 0; e < env->wf->nendpoints; e++)
        in_use += fr_sched_in_flight(env->sched, e);
    int cap = in_use > 1 ? in_use : 1;
    if (env->fd_cap_now == 0 || cap < env->fd_cap_now) {
        env->fd_cap_now = cap;
        fr_sched_set_total_cap(env->sched, cap);
    }
    fr_log_event(
        env->fd_waits == 1 ? FR_LOG_WARN : FR_LOG_INFO, "sched", "task.retry",
        "task=%s endpoint=%s error=\"%s\" transfers_at_once=%d (a local limit: the endpoint "
        "is not cooled down; the task tries again)",
        name_of(t), name, o->err.msg, env->fd_cap_now);
    t->route.retry_ep = t->res->endpoint;
    return (fr_task_next){.kind = FR_NEXT_RETRY, .delay_ms = FD_WAIT_MS};
}

/* Accepts the reply of an attempt as the task's answer (taken from `o`). */
static fr_task_next accept_reply(fr_task *t, fr_outcome *o)
{
    fr_task_result *res = t->res;
    fr_route_set_outcome(res->decisions, "ok", NULL);
    fr_reply_close(&res->reply);
    res->reply = o->reply;
    memset(&o->reply, 0, sizeof o->reply);
    res->usage = res->reply.usage;
    res->usage.input += t->turn_usage.input;
    res->usage.output += t->turn_usage.output;
    res->usage.cached += t->turn_usage.cached;
    res->usage.estimated |= t->turn_usage.estimated;
    res->turns = o->turns;
    res->latency_ms = o->total_ms;
    res->ttft_ms = o->ttft_ms >= 0 ? o->ttft_ms : o->total_ms;
    res->obs_latency = o->obs_latency;
    res->obs_output = o->obs_output;
    fr_ep_succeeded(t->env->eps, ep_of(t), o->total_ms);
    return (fr_task_next){.kind = FR_NEXT_DONE};
}

/* Runs the gates on a reply that arrived whole: it is charged first (it was
 * billed whatever happens next). Returns FR_OK or the first gate's error. */
static int gate_reply(fr_task *t, fr_outcome *o, double *cost, fr_error *err)
{
    fr_task_env *env = t->env;
    const fr_task_spec *ts = &env->wf->tasks[t->idx];
    fr_gate_redact(&o->reply, ts->name, spec_of(t)->name);
    *cost = fr_price_cost(spec_of(t), &o->reply.usage);
    settle(t, *cost);
    int rc = fr_gate_finish(ts, &o->reply, &t->route.finish_outcome, err);
    if (rc == FR_OK)
        rc = fr_gate_schema(ts, &o->reply, err);
    if (rc == FR_OK) {
        double score = -1;
        rc = fr_gate_check(env->wf, t->idx, &o->reply, &score, err);
        t->score = score;
        if (rc == FR_OK && score >= 0)
            t->res->check_score = score;
    }
    if (rc == FR_OK)
        rc = fr_route_on_result(env->router, &t->route, ep_of(t), &o->reply, o->total_ms, *cost,
                                err);
    return rc;
}

/* What a whole exchange's outcome means: charged, gated, booked, cached,
 * then accepted or judged as a failure. */
static fr_task_next judge(fr_task *t, fr_outcome *o)
{
    fr_task_env *env = t->env;
    if (env->fd_cap_now < env->fd_cap && o->delivered) {
        /* Descriptors came back: one more transfer at once, up to the cap. */
        env->fd_cap_now++;
        fr_sched_set_total_cap(env->sched, env->fd_cap_now);
    }
    fr_error *err = &o->err;
    int rc = o->rc;
    double cost = 0;
    /* As the report has it: a reply that was not streamed came whole. */
    double ttft = rc != FR_OK ? -1 : o->ttft_ms >= 0 ? o->ttft_ms : o->total_ms;
    fr_usage used = rc == FR_OK ? o->reply.usage : (fr_usage){0};
    t->route.finish_outcome = NULL;
    if (rc == FR_OK)
        rc = gate_reply(t, o, &cost, err);
    if (rc != FR_OK && !err->msg[0])
        fr_error_set(err, rc, NULL, 0, "%s", fr_strerror(rc));
    if (t->reserved > 0) {
        /* A reply that broke off after the server started answering may
         * have been billed: it keeps its worst case. One refused before any
         * answer costs nothing. */
        cost = o->billed ? t->reserved : 0;
        settle(t, cost);
    }
    const char *outcome = rc == FR_OK         ? "ok"
                          : rc == FR_EFINISH  ? t->route.finish_outcome
                          : rc == FR_EQUALITY ? "quality"
                          : rc == FR_ERETRY   ? "retry"
                          : rc == FR_EBUDGET  ? "budget"
                                              : "error";
    book_attempt(t, outcome, rc == FR_OK ? NULL : err->msg, &used, cost, o->total_ms, ttft);
    log_end(t, outcome, rc == FR_OK ? NULL : err->msg, &used);
    fr_error cerr = {0};
    if (rc == FR_OK && env->books && t->cache_key &&
        fr_cache_put(fr_booking_store(env->books), fr_booking_pgstore(env->books), t->cache_key,
                     spec_of(t)->name, &o->reply, &cerr) != FR_OK)
        fr_booking_write_failed(env->books, &cerr);
    if (rc == FR_OK)
        return accept_reply(t, o);
    fr_reply_close(&o->reply);
    fr_route_set_outcome(t->res->decisions, outcome, err->msg);
    if (o->rc == FR_EBUDGET || o->rc == FR_ETURNS) {
        /* The tool loop stopped at a cap or a bound: another attempt would
         * meet it again. */
        set_last_error(t, fr_xasprintf("%s: %s", spec_of(t)->name, err->msg));
        return next_end(o->rc == FR_EBUDGET ? FR_TASK_BUDGET : FR_TASK_FAILED,
                        fr_xstrdup(err->msg));
    }
    json_decref(t->conversation);
    t->conversation = o->conversation; /* a retry here goes on from there */
    o->conversation = NULL;
    return attempt_failed(t, rc, o->status, o->retry_after_s, err->msg);
}

static void on_outcome(void *ud, fr_outcome *o)
{
    fr_task *t = ud;
    fr_task_env *env = t->env;
    t->attempt = NULL;
    env->in_flight--;
    fr_sched_release_slot(env->sched, ep_of(t));
    fr_task_next next;
    if (o->planned) {
        settle(t, fr_price_cost(spec_of(t), &o->reply.usage));
        log_end(t, "ok", NULL, &o->reply.usage);
        next = accept_reply(t, o);
    } else if (o->no_fds) {
        next = attempt_no_fds(t, o);
    } else {
        next = judge(t, o);
    }
    env->next(env->ud, t->idx, &next);
}

/* ---- the tool loop's turns ------------------------------------------------ */

/* A turn after the first asks the caps to hold its worst case, like any
 * request, and is booked in flight before it goes out. */
static int turn_begin(void *ud, long est_input, long worst_input, fr_error *err)
{
    fr_task *t = ud;
    fr_task_env *env = t->env;
    const fr_task_spec *ts = &env->wf->tasks[t->idx];
    const fr_endpoint_spec *s = spec_of(t);
    (void)est_input;
    double worst = fr_price_worst(s, worst_input, ts->max_tokens);
    fr_admit_ask ask = {
        .endpoint = s,
        .worst = worst,
        .task_capped = ts->has_budget,
        .task_cap = ts->budget_usd,
        .task_spent = t->res->cost,
        .allow_unpriced = env->wf->budget.allow_unpriced,
    };
    char *why = NULL;
    fr_admit a = fr_budget_admit(env->budget, &ask, &why);
    int rc = FR_OK;
    if (a == FR_ADMIT_WAIT) {
        rc = 1;
    } else if (a == FR_ADMIT_NEVER) {
        rc = fr_error_set(err, FR_EBUDGET, NULL, 0,
                          "budget: the tool loop's turn %d does not "
                          "fit: %s",
                          t->res->turns + 1, why ? why : "over the cap");
    } else {
        t->reserved = worst;
        fr_budget_reserve(env->budget, worst);
        bool held = true;
        if (!reserve_turn(t, &held)) { /* committed now: the turn goes out next */
            settle(t, 0);
            int over = fr_booking_over_cap(env->books);
            rc = over ? over_error(t, over, err, "budget: the tool loop's turn does not fit: ")
                      : fr_error_set(err, FR_ESTORE, NULL, 0,
                                     "the state store cannot be written; the turn was not sent");
        } else if (!held) { /* its slot is held by other processes: try again soon */
            settle(t, 0);
            rc = 1;
        } else {
            fr_results_turn_begin(t->res, elapsed_ms(t));
        }
    }
    free(why);
    return rc;
}

/* A turn that asked for tools is settled and booked as what it used. */
static void turn_end(void *ud, const fr_usage *u, double ms)
{
    fr_task *t = ud;
    double cost = fr_price_cost(spec_of(t), u);
    settle(t, cost);
    book_attempt(t, "tool_call", NULL, u, cost, ms, -1);
    t->turn_usage.input += u->input;
    t->turn_usage.output += u->output;
    t->turn_usage.cached += u->cached;
    t->turn_usage.estimated |= u->estimated;
    t->res->turns++;
    fr_results_turn_end(t->res, elapsed_ms(t));
}

static void tool_done(void *ud, const fr_toolcall_info *info, const fr_tool_result *r,
                      const json_t *args)
{
    fr_task *t = ud;
    const char *task = name_of(t);
    double start_ms = elapsed_ms(t) - info->ms; /* it ends now */
    json_t *c = json_pack("{s:s, s:s, s:s?, s:f, s:b, s:s?, s:I, s:I, s:i, s:i, s:f}", "name",
                          info->name, "source", info->source, "server", info->server, "ms",
                          info->ms, "ok", !r->is_error, "error", r->is_error ? r->reason : NULL,
                          "arg_bytes", (json_int_t)info->arg_bytes, "result_bytes",
                          (json_int_t)info->result_bytes, "turn", t->res->turns, "attempt",
                          t->res->attempts, "start_ms", start_ms > 0 ? start_ms : 0);
    if (c && !t->res->tool_calls)
        t->res->tool_calls = json_array(); /* none until the first call */
    if (c)
        json_array_append_new(t->res->tool_calls, c);
    snprintf(t->res->tool, sizeof t->res->tool, "%s", info->name);
    fr_log_event(t->env->show_tools ? FR_LOG_WARN : FR_LOG_INFO, "tool", "tool.call",
                 "task=%s tool=%s source=%s status=%s ms=%.0f arg_bytes=%zu result_bytes=%zu%s%s%s",
                 task, info->name, info->source, r->is_error ? "error" : "ok", info->ms,
                 info->arg_bytes, info->result_bytes, r->is_error ? " error=\"" : "",
                 r->is_error && r->reason ? r->reason : "", r->is_error ? "\"" : "");
    if (fr_log_get_level() >= FR_LOG_DEBUG) {
        char *a = args ? json_dumps(args, JSON_COMPACT) : NULL;
        fr_log_event(FR_LOG_DEBUG, "tool", "tool.arguments", "task=%s tool=%s arguments=%s", task,
                     info->name, a ? a : "null");
        free(a);
    }
}

/* Hands the attempt's request (t->req) to the transport once its
 * reservation is durable (`rc` FR_OK), or fails it (`rc` and `err`: nothing
 * was sent). True when it is in flight; otherwise its slot is free again and
 * *now says what follows. */
static bool send_attempt(fr_task *t, int rc, fr_error *err, fr_task_next *now)
{
    fr_task_env *env = t->env;
    size_t ep = ep_of(t);
    if (rc == FR_OK)
        rc = env->backend.start(env->backend.ud, &t->req, on_outcome, t, &t->attempt, err);
    if (rc == FR_OK) {
        env->in_flight++;
        return true;
    }
    t->attempt = NULL;
    fr_sched_release_slot(env->sched, ep);
    settle(t, 0); /* nothing was sent */
    fr_route_set_outcome(t->res->decisions, "error", err->msg);
    log_end(t, "error", err->msg, NULL);
    if (rc == FR_ESTORE || rc == FR_EBUDGET) {
        /* Without a durable reservation nothing is sent, and no new work
         * starts: the task fails (a reservation its lost commit held is
         * settled at no cost, should it be there); one the shared cap
         * refused stops as a budget stop. */
        if (t->row)
            book_attempt(t, "error", err->msg, NULL, 0, 0, -1);
        if (rc == FR_EBUDGET)
            set_last_error(t, fr_xasprintf("%s: %s", spec_of(t)->name, err->msg));
        *now = next_end(rc == FR_EBUDGET ? FR_TASK_BUDGET : FR_TASK_FAILED, fr_xstrdup(err->msg));
        return false;
    }
    book_attempt(t, "error", err->msg, NULL, 0, 0, -1);
    *now = attempt_failed(t, rc, 0, -1, err->msg);
    return false;
}

bool fr_task_dispatch(fr_task *t, size_t ep, fr_task_next *now)
{
    fr_task_env *env = t->env;
    const fr_task_spec *ts = &env->wf->tasks[t->idx];
    const fr_endpoint_spec *s = fr_ep_spec(env->eps, ep);
    bool taken = fr_sched_take_slot(env->sched, ep);
    (void)taken;
    assert(taken);
    if ((long)ep != t->res->endpoint) {
        t->ep_attempts = 0;
        json_decref(t->conversation); /* another endpoint starts the conversation again */
        t->conversation = NULL;
    }
    const json_t *defs = env->tools ? fr_toolset_defs(env->tools, t->idx) : NULL;
    t->res->moved_from =
        s->tier == FR_TIER_CLOUD ? fr_route_down_local(env->router, &t->route, t->unreached) : -1;
    /* The worst case is held against every cap until the attempt settles;
     * a conversation a retry goes on with is sent whole. */
    long worst_input = t->route.worst_input;
    if (defs && t->conversation)
        worst_input += (long)json_bytes(t->conversation);
    t->reserved = fr_price_worst(s, worst_input, ts->max_tokens);
    t->res->worst_cost = t->reserved;
    fr_budget_reserve(env->budget, t->reserved);
    t->res->endpoint = (long)ep;
    t->route.retry_ep = -1;
    t->fd_wait = false;
    t->res->attempts++;
    t->ep_attempts++;
    fr_ep_sent(env->eps, ep);
    if (t->res->start_ns == 0 || env->plan)
        t->res->start_ns = fr_clock_ns(env->clock);
    t->turn_usage = (fr_usage){0};
    t->res->turns = 0;
    fr_attempt_req req = {
        .call = fr_attempt_call(env->wf, t->idx, env->eps, ep, t->prompt, defs),
        .protocol = fr_ep_protocol(env->eps, ep),
        .task = ts,
        .endpoint = s,
        .est_input = t->route.est_input,
    };
    if (defs) {
        t->loop = (fr_attempt_tools){
            .set = env->tools,
            .task = t->idx,
            .max_turns = ts->max_turns,
            .max_tool_calls = ts->max_tool_calls,
            .resume = t->conversation,
            .turn_begin = turn_begin,
            .turn_end = turn_end,
            .tool_done = tool_done,
            .ud = t,
        };
        req.tools = &t->loop;
    }
    if (!env->plan) {
        /* The key the cache lookup computed for this request, when it did. */
        free(t->cache_key);
        t->cache_key = fr_cache_memo_take(&t->memo, ep);
        if (ts->no_cache) {
            free(t->cache_key);
            t->cache_key = NULL;
        } else if (!t->cache_key) {
            t->cache_key = fr_cache_key(env->wf->name, ts->name, s->name, req.protocol, &req.call);
        }
        fr_log_event(FR_LOG_INFO, "sched", "task.dispatch",
                     "task=%s endpoint=%s tier=%s attempt=%d dispatch", ts->name, s->name,
                     fr_tier_name(s->tier), t->res->attempts);
        fr_clock_refresh(env->clock);
        req.left_ms = t->route.deadline_ms - fr_clock_ms(env->clock);
    }
    t->attempt_ns = fr_clock_ns(env->clock);
    t->res->attempt_ns = t->attempt_ns;
    t->res->streamed = 0;
    req.streamed = &t->res->streamed;
    fr_results_attempt_begin(t->res, t->res->attempts, s->name, elapsed_ms(t));
    t->req = req;
    fr_error err = {0};
    int rc = FR_OK;
    if (!reserve_attempt(t, &t->wait)) {
        rc = fr_error_set(&err, FR_ESTORE, NULL, 0,
                          "the state store cannot be written; the request was not sent");
    } else if (t->wait.parked) {
        env->in_flight++; /* in flight from here on: its request waits for the commit */
        return true;
    }
    return send_attempt(t, rc, &err, now);
}

/* The turn's commit holds the attempt's reservation (`durable`), or failed:
 * the request goes out now, or never. */
static void on_durable(void *ud, bool durable)
{
    fr_task *t = ud;
    fr_task_env *env = t->env;
    env->in_flight--; /* send_attempt counts it again */
    bool waited = t->wait.waited_ms > 0;
    count_capacity_wait(t);
    fr_error err = {0};
    int rc = durable ? FR_OK
             : t->wait.over_cap
                 ? over_error(t, t->wait.over_cap, &err, NULL)
                 : fr_error_set(&err, FR_ESTORE, NULL, 0,
                                "the state store cannot be written; the request was not sent");
    t->wait.over_cap = 0;
    if (durable && !env->plan) {
        fr_clock_refresh(env->clock);
        t->req.left_ms = t->route.deadline_ms - fr_clock_ms(env->clock);
        if (waited) { /* its latency is the exchange's, not the wait for a slot */
            t->attempt_ns = fr_clock_ns(env->clock);
            t->res->attempt_ns = t->attempt_ns;
        }
    }
    fr_task_next next;
    if (!send_attempt(t, rc, &err, &next))
        env->next(env->ud, t->idx, &next);
}

/* A dependency's entry of the template context: {text, json (borrowed,
 * referenced), status, reason}; NULL when a text is not UTF-8 (the entry is
 * left out). Built member by member: json_pack parsed its format for each
 * dependency of each task, three quarters of the context's cost. */
static json_t *dep_entry(const char *text, json_t *json, const char *status, const char *reason)
{
    /* The status is a state's static ASCII name: no UTF-8 check. */
    json_t *o = json_object(), *t = json_string(text), *s = json_string_nocheck(status),
           *r = json_string(reason);
    if (t && s && r) {
        json_object_set_new_nocheck(o, "text", t);
        json_object_set_nocheck(o, "json", json);
        json_object_set_new_nocheck(o, "status", s);
        json_object_set_new_nocheck(o, "reason", r);
        return o;
    }
    json_decref(t);
    json_decref(s);
    json_decref(r);
    json_decref(o);
    return NULL;
}

/* Dependency `dep`'s entry, borrowed: made once it has ended and kept in
 * its result for its other dependents (a layered DAG's task is read by
 * two or three; a fan-in's by all of them), NULL when its text is not
 * UTF-8. Sets *drop when it was not kept (the dependency has not ended):
 * the caller then owns it. */
static json_t *dep_ctx_entry(const fr_task_env *env, size_t dep, bool *drop)
{
    fr_task_result *dr = &env->results->tasks[dep];
    fr_task_state st = fr_sched_state(env->sched, dep);
    *drop = false;
    if (dr->as_dep && dr->as_dep_state == st)
        return dr->as_dep;
    json_decref(dr->as_dep);
    dr->as_dep = NULL;
    bool ok = st == FR_TASK_OK;
    const fr_reply *r = &dr->reply;
    json_t *e = dep_entry(ok && r->text ? r->text : "", ok && r->json ? r->json : json_null(),
                          fr_task_state_name(st), !ok && dr->reason ? dr->reason : "");
    if (e && fr_task_state_terminal(st)) {
        size_t n = 0;
        (void)fr_graph_dependents(env->results->g, dep, &n);
        dr->as_dep = e;
        dr->as_dep_state = st;
        dr->as_dep_left = n;
    } else {
        *drop = true; /* not kept: the caller's context takes the only reference */
    }
    return e;
}

/* The object a prompt and a condition read: per dependency its text and
 * JSON ("" and null unless it succeeded), its status and its reason ("" for
 * none), or for a fan-out the list of its instances' (engine/fanout); the
 * workflow's vars under "var"; an instance's item and index. Returns it
 * owned. With `last_read` (a dependent renders its prompt, the last time it
 * reads the context) a kept entry is let go once every dependent has. */
static json_t *deps_ctx(const fr_task *t, bool last_read)
{
    const fr_task_env *env = t->env;
    const fr_workflow *wf = env->wf;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    json_t *ctx = json_object();
    for (size_t d = 0; d < ts->ndeps; d++) {
        size_t di = ts->dep_index[d];
        /* _nocheck: a dependency is a task's name, which the load checked
         * (letters, digits, '_', '.', '-'): no UTF-8 check of the key. */
        if (wf->tasks[di].foreach) {
            json_object_set_new_nocheck(ctx, ts->deps[d],
                                        fr_fanout_list(wf, env->results, env->sched, di));
            continue;
        }
        bool drop;
        json_t *e = dep_ctx_entry(env, di, &drop);
        if (!e)
            continue; /* text that is not UTF-8: the entry is left out */
        if (drop) {
            json_object_set_new_nocheck(ctx, ts->deps[d], e);
            continue;
        }
        json_object_set_nocheck(ctx, ts->deps[d], e);
        fr_task_result *dr = &env->results->tasks[di];
        if (last_read && dr->as_dep_left && --dr->as_dep_left == 0) {
            json_decref(dr->as_dep); /* ctx keeps its own reference */
            dr->as_dep = NULL;
        }
    }
    json_object_set_new_nocheck(ctx, "var", wf->vars ? json_incref(wf->vars) : json_object());
    fr_fanout_item_ctx(wf, t->idx, ctx);
    return ctx;
}

int fr_task_decide(fr_task *t, bool *run, fr_error *err)
{
    *run = true;
    const fr_task_spec *ts = &t->env->wf->tasks[t->idx];
    if (t->env->plan || !ts->has_when)
        return FR_OK; /* a plan cannot know a condition: it plans the task as if it runs */
    if (ts->foreach)
        return FR_OK; /* a fan-out's condition is its instances', each with its item */
    json_t *ctx = deps_ctx(t, false);
    int rc = fr_workflow_when(t->env->wf, t->idx, ctx, run, err);
    json_decref(ctx);
    return rc;
}

int fr_task_render(fr_task *t, fr_error *err)
{
    fr_task_env *env = t->env;
    fr_workflow *wf = env->wf;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    const char *sys = wf->agents[ts->agent].system;
    if (env->plan) {
        long deps = 0;
        for (size_t d = 0; d < ts->ndeps; d++)
            deps += env->results->tasks[ts->dep_index[d]].usage.output;
        fr_route_estimate_plan(&t->route, ts->prompt, sys, deps);
        return FR_OK;
    }
    if (t->prompt)
        return FR_OK;
    /* A prompt without placeholders renders as itself: no context. */
    json_t *ctx = fr_workflow_prompt_uses_ctx(wf, t->idx) ? deps_ctx(t, true) : NULL;
    int rc = fr_workflow_render_prompt(wf, t->idx, ctx, &t->prompt, err);
    json_decref(ctx);
    if (rc == FR_OK) {
        fr_route_estimate(&t->route, t->prompt, sys);
        const json_t *defs = env->tools ? fr_toolset_defs(env->tools, t->idx) : NULL;
        if (env->tools)
            t->route.ntools = fr_toolset_count(env->tools, t->idx);
        if (defs) { /* the tool definitions go out with every turn */
            size_t b = json_bytes(defs);
            t->route.est_input += (long)(b / 4);
            t->route.worst_input += (long)b;
        }
    }
    return rc;
}

fr_task_env fr_task_env_for_run(fr_workflow *wf, fr_results *results, fr_clock *clock,
                                const char *run_id, bool plan, bool show_tools,
                                void (*next)(void *ud, size_t task, fr_task_next *next), void *ud)
{
    return (fr_task_env){.wf = wf,
                         .results = results,
                         .clock = clock,
                         .run_id = run_id,
                         .plan = plan,
                         .show_tools = show_tools,
                         .next = next,
                         .ud = ud};
}
