/* The conductor: sets a run up, places each ready task (engine/route
 * decides where; engine/cache may answer first; engine/fanout expands a
 * foreach), dispatches it (engine/task carries its attempts out and says
 * what follows each), ends tasks (engine/checkpoint holds approval tasks,
 * engine/timers keeps their deadlines and retry waits), handles signals
 * and ends with engine/exitcode's exit code. */
#include "engine/run.h"

#include "dsl/policy.h"
#include "engine/approval.h"
#include "engine/booking.h"
#include "engine/budget.h"
#include "engine/cache.h"
#include "engine/checkpoint.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/fanout.h"
#include "engine/graph.h"
#include "engine/http.h"
#include "engine/output.h"
#include "engine/place.h"
#include "engine/plan.h"
#include "engine/progress.h"
#include "engine/route.h"
#include "engine/task.h"
#include "engine/timers.h"
#include "engine/toolset.h"
#include "engine/sched.h"
#include "engine/signals.h"
#include "engine/exitcode.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"
#include "dsl/reload.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* How many waiting tasks one pass over the ready queue may look at. */
#define MAX_WAITERS_PER_PASS 256
/* How many ready tasks one turn of the loop places before the loop runs
 * (curl sends what they started) and the pump goes on in the next turn:
 * with 10,000 ready tasks the first request is on the wire at once, not
 * after the last one is routed. A plan (no loop) places all at once. */
#define PLACE_PER_TURN 64
/* A task as the conductor sees it: its attempts (engine/task), its
 * routing record and its results entry. */
typedef struct task_rt {
    struct fr_run *run;
    size_t idx;
    fr_task *task;
    fr_route_task *route;   /* the task's routing record (borrowed from it) */
    fr_task_result *res;    /* its entry in the results */
    bool cleared;           /* its condition was evaluated and lets it run */
    fr_place_lookup lookup; /* its result cache lookup (a wait on the shared store) */
} task_rt;

struct fr_run {
    fr_live *live; /* the live block, or NULL */
    fr_workflow *wf;
    fr_run_opts opts;
    fr_graph *g;
    fr_sched *sched;
    fr_reload *policy; /* the live policy, reloaded when its file changes */
    uv_loop_t loop;
    fr_clock *clock;
    fr_http *http;
    fr_toolset *tools; /* the run's tools (MCP servers, Lua, commands); NULL without */
    int start_rc;      /* the tools could not start: FR_EWORKFLOW (a tool no server has) or
                          the server's error; FR_OK otherwise */
    fr_plan *plan;     /* a plan's virtual-time backend, NULL for a run */
    bool standin_started;
    fr_signals *signals;
    fr_endpoints *eps;
    fr_router *router;
    fr_timers *timers;    /* each task's deadline and retry wait */
    fr_fanout_env fanout; /* what a fan-out touches */
    fr_fanout_hooks fanout_hooks;
    fr_place_env placer; /* what placing a task reads (engine/place) */
    fr_task_env env;     /* what the tasks share */
    task_rt *tasks;
    fr_results res;
    char *run_id;
    char *out_dir;
    char *save_root; /* the workflow folder's real path that save paths stay in; NULL with
                        --allow-save-anywhere */
    bool stopping;
    int write_errors;
    fr_budget *budget;
    fr_booking *books;      /* the run's books in the state store; NULL for a plan */
    fr_checkpoints *checks; /* the tasks held at their checkpoints; NULL for a plan */
    size_t lookups;         /* tasks waiting for the shared store's cache */
};

static void pump(fr_run *r);
static void maybe_finish(fr_run *r);
static void on_looked_up(void *ud, bool hit);

static uint64_t now_ns(const fr_run *r)
{
    return fr_clock_ns(r->clock);
}

static const char *task_name(const task_rt *t)
{
    return t->run->wf->tasks[t->idx].name;
}

static fr_policy *live_policy(void *ud)
{
    return fr_reload_live(((fr_run *)ud)->policy);
}

static void reload_swapped(void *ud)
{
    pump(ud); /* the new version may place tasks the old one kept waiting */
}

/* ---- a task's runtime ----------------------------------------------- */

static void init_task(fr_run *r, size_t i)
{
    task_rt *t = &r->tasks[i];
    t->run = r;
    t->idx = i;
    t->task = fr_task_new(&r->env, i);
    t->route = fr_task_route(t->task);
    t->res = &r->res.tasks[i];
    t->lookup = (fr_place_lookup){.done = on_looked_up, .ud = t};
}

/* Takes back `t`'s cache lookup while it waits (the task ended first). */
static void drop_lookup(task_rt *t)
{
    if (!t->lookup.wait)
        return;
    fr_cache_wait_cancel(t->lookup.wait);
    t->lookup.wait = NULL;
    t->run->lookups--;
}

/* ---- task ends ---------------------------------------------------------- */

/* A dependent skipped by its trigger (sched.h); engine/results says why. */
static void on_skip(void *ud, size_t task, size_t cause)
{
    fr_run *r = ud;
    fr_results_skip(&r->res, task, cause, fr_sched_state(r->sched, cause), now_ns(r));
    if (r->opts.progress)
        fr_progress_ended(r->wf->tasks[task].name, FR_TASK_SKIPPED, r->res.tasks[task].reason);
}

/* Records task `t`'s end in `state` for `reason` (borrowed, may be NULL). */
static void end_record(task_rt *t, fr_task_state state, const char *reason)
{
    drop_lookup(t);
    fr_timers_stop(t->run->timers, t->idx);
    free(t->res->reason);
    t->res->reason = reason ? fr_xstrdup(reason) : NULL;
    t->res->state = state;
    t->res->end_ns = now_ns(t->run);
}

/* Ends task `t` without success: records why, skips its dependents. */
static void task_end(task_rt *t, fr_task_state state, const char *reason)
{
    fr_run *r = t->run;
    end_record(t, state, reason);
    if (r->opts.progress)
        fr_progress_ended(task_name(t), state, reason);
    fr_sched_finish(r->sched, t->idx, state, on_skip, r);
    fr_fanout_instance_ended(&r->fanout, t->idx, &r->fanout_hooks);
}

static void on_written(void *ud, int rc, const char *path)
{
    if (rc != FR_OK)
        ((fr_run *)ud)->write_errors++; /* engine/output logged it */
}

/* engine/checkpoint's hooks: an approved checkpoint lets its dependents
 * go on, a rejected one fails, a terminal answer may start or end work. */
static void on_approved(void *ud, size_t task)
{
    fr_run *r = ud;
    fr_sched_finish(r->sched, task, FR_TASK_OK, on_skip, r);
}

static void on_rejected(void *ud, size_t task, const char *why)
{
    task_end(&((fr_run *)ud)->tasks[task], FR_TASK_FAILED, why);
}

static void on_answered(void *ud)
{
    maybe_finish(ud);
    pump(ud);
}

static void task_ok(task_rt *t)
{
    fr_run *r = t->run;
    fr_timers_stop(r->timers, t->idx);
    t->res->state = FR_TASK_OK;
    t->res->end_ns = now_ns(r);
    if (!r->plan)
        fr_output_task(&r->loop, r->wf, t->idx, r->out_dir, r->save_root, &t->res->reply,
                       on_written, r);
    if (r->opts.progress)
        fr_progress_ok(task_name(t), t->res, r->eps);
    if (r->checks && r->wf->tasks[t->idx].approve)
        fr_checkpoints_reached(r->checks, t->idx);
    else
        fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
    fr_fanout_instance_ended(&r->fanout, t->idx, &r->fanout_hooks);
}

/* ---- fan-out (engine/fanout) -------------------------------------------- */

/* Ends fan-out `fanout` in `state`: ok without an output of its own (`note`,
 * borrowed, may be NULL), else as any task that did not succeed. */
static void fanout_end(void *ud, size_t fanout, fr_task_state state, const char *note)
{
    fr_run *r = ud;
    task_rt *t = &r->tasks[fanout];
    if (state != FR_TASK_OK) {
        task_end(t, state, note);
        return;
    }
    end_record(t, FR_TASK_OK, note);
    if (r->opts.progress)
        fr_progress_fanout_ok(task_name(t), t->res->instances, note);
    fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
}

/* Fan-out `fanout`'s instances joined the run: each gets its runtime. */
static void fanout_started(void *ud, size_t fanout, size_t first, size_t n)
{
    fr_run *r = ud;
    fr_timers_stop(r->timers, fanout); /* each instance has its own timeout */
    for (size_t i = first; i < first + n; i++)
        init_task(r, i);
}

/* ---- attempts ----------------------------------------------------------- */

/* The earliest time a waiting task may be placed came (engine/timers). */
static void on_wake(void *ud, size_t unused)
{
    (void)unused;
    pump(ud);
}

static void arm_wake(fr_run *r, double at_ms)
{
    fr_timers_wake_at(r->timers, at_ms, fr_clock_ms(r->clock));
}

/* Task `task`'s wait before its next attempt is over (engine/timers). */
static void on_retry(void *ud, size_t task)
{
    fr_run *r = ud;
    fr_sched_requeue(r->sched, task);
    pump(r);
}

/* Does what engine/task says follows an attempt of `t` (`n`'s reason is
 * freed here). */
static void apply(task_rt *t, fr_task_next *n)
{
    switch (n->kind) {
    case FR_NEXT_DONE:
        task_ok(t);
        break;
    case FR_NEXT_RETRY:
        fr_timers_retry(t->run->timers, t->idx, (uint64_t)n->delay_ms);
        break;
    case FR_NEXT_REQUEUE:
        fr_sched_requeue(t->run->sched, t->idx);
        break;
    case FR_NEXT_END:
        task_end(t, n->state, n->reason);
        break;
    }
    free(n->reason);
    n->reason = NULL;
}

/* An attempt ended (engine/task's hook). */
static void on_next(void *ud, size_t task, fr_task_next *n)
{
    fr_run *r = ud;
    apply(&r->tasks[task], n);
    maybe_finish(r);
    pump(r);
}

static void dispatch(task_rt *t, size_t ep)
{
    fr_task_next now;
    if (!fr_task_dispatch(t->task, ep, &now))
        apply(t, &now);
}

/* Task `task`'s timeout passed (engine/timers). */
static void on_deadline(void *ud, size_t task)
{
    fr_run *r = ud;
    task_rt *t = &r->tasks[task];
    fr_task_cancel(t->task, "timeout", "task timeout");
    char *why = fr_task_timeout_reason(t->task);
    task_end(t, FR_TASK_FAILED, why);
    free(why);
    maybe_finish(r);
    pump(r);
}

/* Starts the task's timeout when it first becomes ready, so that waiting
 * for an endpoint counts against it as much as talking to one. */
static void arm_deadline(task_rt *t)
{
    fr_run *r = t->run;
    double ms = r->wf->tasks[t->idx].timeout_s * 1000.0;
    fr_clock_refresh(r->clock);
    t->route->deadline_ms = fr_clock_ms(r->clock) + ms;
    fr_timers_deadline(r->timers, t->idx, (uint64_t)ms);
}

/* Acts on route's decision `d` for `t` (its reason freed here). Returns true
 * when the task left the queue (dispatched or ended), false when it waits. */
static bool act(task_rt *t, fr_route_decision *d)
{
    switch (d->kind) {
    case FR_ROUTE_DISPATCH:
        dispatch(t, d->endpoint);
        return true;
    case FR_ROUTE_END:
        task_end(t, d->state, d->reason);
        free(d->reason);
        return true;
    default:
        if (d->wake_at_ms > 0)
            arm_wake(t->run, d->wake_at_ms);
        return false;
    }
}

/* Tries to place one ready task. Returns true when the task left the
 * queue (dispatched or ended), false when it must wait. */
static bool place(fr_run *r, task_rt *t)
{
    if (!r->plan && t->route->deadline_ms == 0)
        arm_deadline(t);
    fr_route_decision d;
    switch (fr_place(&r->placer, t->idx, t->task, &t->cleared, &t->lookup, &d)) {
    case FR_PLACED_CACHED:
        task_ok(t); /* done without a request and without cost */
        return true;
    case FR_PLACED_LOOKUP:
        r->lookups++; /* out of the queue until the shared store answers */
        return true;
    case FR_PLACED_FANOUT:
        t->res->start_ns = now_ns(r);
        fr_fanout_place(&r->fanout, t->idx, &r->fanout_hooks);
        return true;
    default:
        break;
    }
    return act(t, &d);
}

/* The shared store answered `ud`'s lookup (engine/cache): a hit is done as
 * on SQLite, a miss goes back to the queue to be routed. */
static void on_looked_up(void *ud, bool hit)
{
    task_rt *t = ud;
    fr_run *r = t->run;
    t->lookup.wait = NULL;
    r->lookups--;
    if (hit)
        task_ok(t);
    else
        fr_sched_requeue(r->sched, t->idx);
    maybe_finish(r);
    pump(r);
}

/* True while something in flight or scheduled may still change what the
 * policy sees. */
static bool anything_pending(fr_run *r)
{
    if (r->plan)
        return fr_plan_pending(r->plan) > 0;
    return fr_http_active(r->http) > 0 || r->env.in_flight > 0 || r->lookups > 0 ||
           fr_checkpoints_deciding(r->checks) > 0 || fr_timers_retries(r->timers) > 0 ||
           fr_timers_waking(r->timers) || fr_booking_busy(r->books);
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
    size_t nw = 0, turn = r->plan ? SIZE_MAX : PLACE_PER_TURN;
    fr_route_pass_begin(r->router);
    while (nw < MAX_WAITERS_PER_PASS && turn > 0 && fr_sched_total_free(r->sched) > 0 &&
           fr_sched_pop(r->sched, &t)) {
        fr_route_pass_waiting(r->router, nw);
        if (!place(r, &r->tasks[t]))
            waiters[nw++] = t;
        else
            turn--; /* a waiting task costs a look, not a place in this turn */
    }
    fr_route_pass_begin(r->router);
    for (size_t i = 0; i < nw; i++)
        fr_sched_requeue(r->sched, waiters[i]);
    if (turn == 0 && !r->stopping && fr_sched_ready(r->sched) > nw)
        fr_timers_next_turn(r->timers); /* the rest after the loop has sent these */

    /* Nothing runs and nothing is scheduled, so nothing the policy sees
     * will change: route's stall rule says what follows. */
    while (!r->stopping && !anything_pending(r) && fr_sched_ready(r->sched) > 0 &&
           fr_sched_pop(r->sched, &t)) {
        task_rt *tr = &r->tasks[t];
        /* A task made ready by an end in this loop (all_done, any_failed)
         * has not been placed yet: its condition and the policy come first. */
        if (!tr->cleared && place(r, tr))
            continue;
        fr_route_decision d = fr_route_stalled(r->router, tr->route);
        if (act(tr, &d) && d.kind == FR_ROUTE_DISPATCH) {
            if (!r->plan && fr_http_active(r->http) == 0 && r->env.in_flight == 0 &&
                fr_timers_retries(r->timers) == 0)
                arm_wake(r, fr_clock_ms(r->clock)); /* it failed at once: place again */
            break;
        }
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
    for (size_t t = 0; r->lookups > 0 && t < r->wf->ntasks; t++)
        drop_lookup(&r->tasks[t]); /* their answers, when they come, find nothing */
    fr_timers_close(r->timers);
    fr_reload_stop(r->policy);
    fr_checkpoints_stop(r->checks);
    fr_signals_close(r->signals);
    r->signals = NULL;
    fr_toolset_free(r->tools); /* stops the MCP servers: before the transport they use */
    r->tools = r->env.tools = NULL;
    fr_http_free(r->http);
    r->http = NULL;
    if (r->standin_started)
        r->opts.standin->stop(r->opts.standin->ud);
    r->standin_started = false;
    fr_booking_detach(r->books); /* what the shared store still owes completes at the end */
}

static void maybe_finish(fr_run *r)
{
    if (!r->stopping && (fr_sched_unfinished(r->sched) == 0 ||
                         fr_checkpoints_only_left(r->checks, anything_pending(r))))
        close_all(r);
}

/* Every task not yet ended ends in `state` for `reason` (borrowed): with
 * FR_TASK_CANCELLED (a signal) a running one is cancelled and ends now;
 * with FR_TASK_FAILED the run could not start. */
static void end_unfinished(fr_run *r, fr_task_state state, const char *reason)
{
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        if (fr_task_state_terminal(fr_sched_state(r->sched, t)))
            continue;
        drop_lookup(tr);
        if (state == FR_TASK_CANCELLED) {
            fr_task_cancel(tr->task, "cancelled", reason);
            fr_timers_stop(r->timers, t);
            tr->res->end_ns = now_ns(r);
        }
        free(tr->res->reason);
        tr->res->reason = fr_xstrdup(reason);
        fr_sched_abandon(r->sched, t, state);
    }
}

/* SIGINT or SIGTERM (engine/signals): running tasks are cancelled. */
static void on_signal(void *ud, int signum)
{
    fr_run *r = ud;
    if (r->stopping)
        return;
    fr_log_event(FR_LOG_WARN, "run", "run.signal",
                 "signal=%d stopping: running tasks are cancelled", signum);
    r->res.interrupted = true;
    r->res.exit_code = 128 + signum;
    end_unfinished(r, FR_TASK_CANCELLED, "interrupted");
    close_all(r);
}

/* Fills what the report reads and the run's exit code (engine/exitcode). */
static int publish(fr_run *r)
{
    fr_results_endpoints(&r->res, r->eps, r->sched);
    r->res.policy = fr_policy_name(fr_reload_live(r->policy));
    r->res.policy_errors = fr_route_policy_errors(r->router);
    r->res.alerts = fr_budget_alerts(r->budget);
    r->res.reloads = fr_reload_log(r->policy);
    fr_exit_in in = {.start_rc = r->start_rc,
                     .store_failed = r->books && fr_booking_failed(r->books),
                     .write_errors = r->write_errors,
                     .plan = r->plan != NULL};
    return fr_exit_settle(&r->res, r->sched, r->checks, &in);
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

/* The tools are ready (their servers started and listed): the run begins;
 * or they are not, and nothing is sent. */
static void on_tools_ready(void *ud, int rc, const fr_error *err)
{
    fr_run *r = ud;
    if (r->stopping)
        return;
    if (rc != FR_OK) {
        r->start_rc = fr_exit_tools_failed(rc, err);
        end_unfinished(r, FR_TASK_FAILED, "the run could not start: its tools did not start");
        close_all(r);
        return;
    }
    r->env.tools = r->tools;
    maybe_finish(r); /* an empty workflow ends at once */
    pump(r);
}

/* The run is over and published: what only its tasks' attempts used (each
 * task's runtime with its prompt and conversation, and the timers once the
 * loop has closed their handles) goes before the report is rendered and
 * stored, so that its text does not come on top of them. The results stay
 * (the report reads them). */
static void release_runtimes(fr_run *r, bool loop_closed)
{
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        fr_task_free(r->tasks[t].task);
        r->tasks[t].task = NULL;
        r->tasks[t].route = NULL;
    }
    if (loop_closed) {
        fr_timers_free(r->timers);
        r->timers = NULL;
    }
}

/* ---- setup -------------------------------------------------------------- */

static void init_tasks(fr_run *r)
{
    fr_workflow *wf = r->wf;
    fr_results_for_run(&r->res, wf, r->g, r->run_id, r->opts.sim, r->opts.plan);
    r->env = fr_task_env_for_run(
        wf, &r->res, r->clock, r->run_id, r->opts.plan,
        (r->opts.progress && !r->opts.progress_fallback) || r->opts.explain, on_next, r);
    /* Room for the fan-outs' instances too (wf->tasks_cap): none moves. */
    size_t cap = wf->tasks_cap > wf->ntasks ? wf->tasks_cap : wf->ntasks;
    r->tasks = fr_xcalloc(cap ? cap : 1, sizeof *r->tasks);
    r->timers =
        fr_timers_new(&r->loop, cap, &(fr_timer_hooks){r, on_deadline, on_retry, on_wake, on_wake});
    for (size_t i = 0; i < wf->ntasks; i++)
        init_task(r, i);
}

/* The shared store answered what the run may wait for (a lease). */
static void on_books_wake(void *ud)
{
    pump(ud);
}

int fr_run_new(fr_workflow *wf, const fr_run_opts *opts, fr_run **out, fr_error *err)
{
    int rc;
    fr_run *r = fr_xcalloc(1, sizeof *r);
    r->wf = wf;
    r->opts = *opts;
    r->run_id = fr_booking_run_id(time(NULL));
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
    rc = fr_results_set_baseline(&r->res, wf, opts->baseline ? opts->baseline : wf->baseline, err);
    if (rc != FR_OK)
        goto cleanup;
    r->budget = fr_budget_for_run(wf, opts->has_budget, opts->budget_usd, !opts->plan);
    r->res.has_budget = fr_budget_has_cap(r->budget, FR_CAP_RUN);
    r->res.budget_usd = r->res.has_budget ? fr_budget_cap(r->budget, FR_CAP_RUN) : 0;
    r->sched = r->env.sched = fr_sched_for_run(r->g, wf, &r->env.fd_cap);
    r->env.fd_cap_now = r->env.fd_cap;
    r->fanout = (fr_fanout_env){wf, r->g, r->sched, &r->res, opts->plan};
    r->fanout_hooks = (fr_fanout_hooks){r, fanout_started, fanout_end};
    r->router = r->env.router = fr_router_for_run(wf, r->eps, r->sched, r->budget, r->clock,
                                                  &r->res.start_ns, live_policy, r, opts->explain);
    fr_route_set_seed(r->router, opts->has_seed, opts->seed, r->run_id);
    r->res.has_seed = opts->has_seed;
    r->res.seed = fr_route_seed(r->router);
    const char *spec = opts->policy ? opts->policy : wf->policy ? wf->policy : "balanced";
    fr_reload_hooks hooks = fr_route_reload_hooks(r->router, reload_swapped, r);
    rc = fr_reload_open(spec, opts->policy ? NULL : wf->dir, &hooks, &r->policy, err);
    if (rc != FR_OK)
        goto cleanup;
    r->env.eps = r->eps;
    r->env.budget = r->budget;
    rc = fr_route_check_policy(r->router, err);
    if (rc != FR_OK)
        goto cleanup;
    if (opts->plan) {
        r->plan =
            fr_plan_for_run(r->clock, opts->state_dir, opts->sim, wf->name, opts->sim_latency_ms,
                            opts->sim_tps, &r->res, r->budget, &r->env.backend);
    } else {
        rc = fr_booking_open_run(opts->state_dir, opts->sim, r->run_id, r->budget, &r->books, err);
        if (rc != FR_OK)
            goto cleanup;
        r->env.books = r->books;
        fr_booking_on_wake(r->books, on_books_wake, r);
        fr_route_set_history(r->router, fr_booking_history(r->books, wf));
    }
    r->out_dir =
        opts->out_dir ? fr_xstrdup(opts->out_dir) : fr_xasprintf(".flowrun/out/%s", r->run_id);
    r->res.out_dir = r->out_dir;
    rc = opts->out_dir || r->plan ? FR_OK : fr_output_runs_folder(".flowrun/out", err);
    if (rc == FR_OK)
        rc = fr_output_prepare(wf, r->plan ? NULL : r->out_dir, &r->save_root, err);
    if (rc != FR_OK)
        goto cleanup;
    fr_store *store = r->books ? fr_booking_store(r->books) : NULL;
    /* The shared store is read at each lookup (engine/place): the books
     * may reach it only once the loop runs. */
    r->placer = (fr_place_env){&r->env,
                               {.store = store,
                                .loop = &r->loop,
                                .clock = r->clock,
                                .wf = wf,
                                .eps = r->eps,
                                .router = r->router},
                               opts->no_cache,
                               opts->fresh,
                               opts->nfresh};
    if (!r->plan)
        r->checks = fr_checkpoints_for_run(
            wf, &r->res, r->g, r->sched, r->books, r->run_id, r->out_dir, opts->approve,
            opts->napprove, opts->approve_all,
            &(fr_checkpoint_hooks){r, on_approved, on_rejected, on_answered});
    *out = r;
    r = NULL;
cleanup:
    fr_run_free(r);
    return rc;
}

const fr_results *fr_run_results(const fr_run *r)
{
    return &r->res;
}

fr_booking *fr_run_books(const fr_run *r)
{
    return r->books;
}

int fr_run_execute(fr_run *r)
{
    if (r->plan)
        return execute_plan(r);
    if (uv_loop_init(&r->loop) != 0) {
        fr_log_event(FR_LOG_ERROR, "run", "run.error", "error=\"cannot start the event loop\"");
        return 1;
    }
    if (r->checks)
        fr_checkpoints_start(r->checks, &r->loop);
    r->signals = fr_signals_start(&r->loop, on_signal, r);
    r->http = fr_attempt_wire_for_run(&r->loop, r->env.fd_cap, &r->env.backend);
    r->res.start_ns = now_ns(r);
    fr_booking_attach(r->books, &r->loop); /* one commit per loop turn */
    fr_booking_begin(r->books, r->wf->name, r->wf->path);
    fr_reload_watch(r->policy, &r->loop, NULL); /* a failure is a warning, logged */
    r->standin_started = r->opts.sim && r->http;
    if (r->opts.progress) /* what a progress reader counts the ended tasks against */
        fr_progress_started(r->wf->ntasks);
    if (r->opts.live)
        r->live = fr_live_start(&r->loop, &r->res, r->sched, r->eps, r->clock);
    bool started =
        r->http &&
        (!r->opts.sim || fr_endpoints_standin(r->eps, r->opts.standin, &r->loop,
                                              r->opts.sim_latency_ms, r->opts.sim_tps) == FR_OK);
    /* libcurl, should an endpoint need it, loaded now rather than at its
     * first request on the running loop. */
    for (size_t e = 0; started && e < fr_endpoints_count(r->eps); e++)
        (void)fr_http_prepare(r->http, fr_ep_url(r->eps, e));
    if (!started) {
        end_unfinished(r, FR_TASK_FAILED, "the run could not start");
        close_all(r);
    } else if (fr_toolset_needed(r->wf)) {
        r->tools = fr_toolset_new(&r->loop, r->http, r->wf);
        fr_toolset_start(r->tools, false, on_tools_ready, r);
    } else {
        maybe_finish(r); /* an empty workflow ends at once */
        pump(r);
    }
    uv_run(&r->loop, UV_RUN_DEFAULT);
    fr_live_stop(r->live); /* clears the block: the summary follows */
    bool closed = uv_loop_close(&r->loop) == 0;
    if (!closed)
        fr_log_event(FR_LOG_ERROR, "run", "run.error", "error=\"handles left open at exit\"");
    fr_booking_store_info(r->books, &r->res.store);
    int code = publish(r);
    release_runtimes(r, closed);
    const char *status = fr_exit_status(code, r->res.interrupted);
    if (r->books && fr_booking_end(r->books, status, code, r->env.spent_usd) != FR_OK && code == 0)
        r->res.exit_code = 74;
    return r->res.exit_code;
}

void fr_run_free(fr_run *r)
{
    if (!r)
        return;
    fr_endpoints_free(r->eps);
    fr_redact_clear();
    for (size_t t = 0; r->tasks && t < r->wf->ntasks; t++)
        fr_task_free(r->tasks[t].task);
    free(r->tasks);
    fr_timers_free(r->timers);
    fr_checkpoints_free(r->checks);
    fr_results_close(&r->res);
    fr_router_free(r->router);
    fr_plan_free(r->plan);
    fr_budget_free(r->budget);
    fr_booking_free(r->books);
    fr_sched_free(r->sched);
    fr_graph_free(r->g);
    fr_reload_free(r->policy);
    fr_clock_free(r->clock);
    free(r->run_id);
    free(r->out_dir);
    free(r->save_root);
    free(r);
}
