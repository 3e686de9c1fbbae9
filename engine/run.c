/* The conductor: sets a run up, places each ready task (engine/route
 * decides where; engine/cache may answer first), dispatches it (engine/task
 * carries its attempts out and says what follows each), ends tasks, keeps
 * their timers, handles signals and works out the exit code. */
#include "engine/run.h"

#include "dsl/policy.h"
#include "engine/approval.h"
#include "engine/booking.h"
#include "engine/budget.h"
#include "engine/cache.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/fanout.h"
#include "engine/graph.h"
#include "engine/http.h"
#include "engine/output.h"
#include "engine/plan.h"
#include "engine/prompt.h"
#include "engine/route.h"
#include "engine/task.h"
#include "engine/toolset.h"
#include "engine/sched.h"
#include "engine/util/fdlimit.h"
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
/* A task as the conductor sees it: its attempts (engine/task) and its
 * timers: the deadline, and the wait before a retry. */
typedef struct task_rt {
    struct fr_run *run;
    size_t idx;
    fr_task *task;
    fr_route_task *route; /* the task's routing record (borrowed from it) */
    fr_task_result *res;  /* its entry in the results */
    uv_timer_t retry_timer;
    uv_timer_t deadline;
    bool timers_init;
    bool retry_armed;
    bool cleared; /* its condition was evaluated and lets it run */
    bool held;    /* an approval task that succeeded: its dependents wait for a decision */
} task_rt;

struct fr_run {
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
    uv_signal_t sigint, sigterm;
    uv_timer_t wake;
    bool handles_init;
    fr_endpoints *eps;
    fr_router *router;
    fr_task_env env; /* what the tasks share */
    task_rt *tasks;
    fr_results res;
    char *run_id;
    char *out_dir;
    char *save_root; /* the workflow folder's real path that save paths stay in; NULL with
                        --allow-save-anywhere */
    bool stopping;
    int retries_armed;
    int write_errors;
    fr_budget *budget;
    fr_booking *books; /* the run's books in the state store; NULL for a plan */
    char *observed_from;
    fr_approvals *approvals; /* the run's checkpoints (engine/approval); NULL for a plan */
    fr_prompt *prompt;       /* the terminal that answers them, NULL without one */
    size_t held;             /* tasks held at their checkpoint */
};

static void pump(fr_run *r);
static void maybe_finish(fr_run *r);
static void instance_ended(fr_run *r, size_t task);
static void on_next(void *ud, size_t task, fr_task_next *n);
static void task_end(task_rt *t, fr_task_state state, const char *reason);

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
    return t->run->wf->tasks[t->idx].name;
}

static fr_policy *live_policy(void *ud)
{
    return fr_reload_live(((fr_run *)ud)->policy);
}

static json_t *reload_candidates(void *ud)
{
    return fr_route_check_candidates(((fr_run *)ud)->router);
}

static double reload_elapsed(void *ud)
{
    return elapsed_ms(ud);
}

static void reload_swapped(void *ud)
{
    pump(ud); /* the new version may place tasks the old one kept waiting */
}

/* ---- setup ------------------------------------------------------------ */

static void init_task(fr_run *r, size_t i)
{
    task_rt *t = &r->tasks[i];
    t->run = r;
    t->idx = i;
    t->task = fr_task_new(&r->env, i);
    t->route = fr_task_route(t->task);
    t->res = &r->res.tasks[i];
}

static void init_tasks(fr_run *r)
{
    fr_workflow *wf = r->wf;
    fr_results_init(&r->res, wf, r->g);
    r->env.wf = wf;
    r->env.results = &r->res;
    r->env.clock = r->clock;
    r->env.run_id = r->run_id;
    r->env.plan = r->opts.plan;
    r->env.next = on_next;
    r->env.ud = r;
    r->res.run_id = r->run_id;
    r->res.sim = r->opts.sim;
    r->res.plan = r->opts.plan;
    /* Room for the fan-outs' instances too (wf->tasks_cap): none moves. */
    size_t cap = wf->tasks_cap > wf->ntasks ? wf->tasks_cap : wf->ntasks;
    r->tasks = fr_xcalloc(cap ? cap : 1, sizeof *r->tasks);
    for (size_t i = 0; i < wf->ntasks; i++)
        init_task(r, i);
}

/* The scheduler over the graph, with the endpoints' slots, capped at the
 * transfers the file descriptors allow. */
static void init_sched(fr_run *r)
{
    long slots = 0;
    for (size_t e = 0; e < r->wf->nendpoints; e++)
        slots += r->wf->endpoints[e].max_parallel > 0 ? r->wf->endpoints[e].max_parallel : 1;
    r->sched = fr_sched_for_workflow(r->g, r->wf);
    /* Two descriptors per transfer, a reserve for the rest: at ulimit -n
     * 1024, max_parallel = 1000 runs as many as fit instead of failing
     * sockets (engine/util/fdlimit.h). */
    int fd_cap = r->env.fd_cap = r->env.fd_cap_now = fr_fd_transfer_cap(fr_fd_limit());
    fr_sched_set_total_cap(r->sched, fd_cap);
    r->env.sched = r->sched;
    if (fd_cap > 0 && slots > fd_cap)
        fr_log(FR_LOG_INFO, "sched",
               "max_parallel_total=%ld fd_limit=%ld transfers_at_once=%d (file descriptors "
               "allow no more; raise ulimit -n for more)",
               slots, fr_fd_limit(), fd_cap);
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
    r->env.show_tools = opts->progress || opts->explain;
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
    const char *baseline = opts->baseline ? opts->baseline : wf->baseline;
    if (baseline) {
        r->res.baseline = fr_workflow_find_endpoint(wf, baseline);
        if (r->res.baseline < 0) {
            rc = fr_error_set(err, FR_ECONFIG, "--baseline", 0, "no endpoint named '%s'", baseline);
            goto cleanup;
        }
    }
    r->budget = fr_budget_for_run(wf, opts->has_budget, opts->budget_usd, !opts->plan);
    r->res.has_budget = fr_budget_has_cap(r->budget, FR_CAP_RUN);
    r->res.budget_usd = r->res.has_budget ? fr_budget_cap(r->budget, FR_CAP_RUN) : 0;
    const char *spec = opts->policy ? opts->policy : wf->policy ? wf->policy : "balanced";
    fr_policy *first = NULL;
    rc = fr_policy_resolve(spec, opts->policy ? NULL : wf->dir, &policy_path, err);
    if (rc == FR_OK)
        rc = fr_policy_load(policy_path, NULL, 1, &first, err);
    if (rc != FR_OK)
        goto cleanup;
    fr_reload_hooks hooks = {.ud = r,
                             .check_candidates = reload_candidates,
                             .elapsed_ms = reload_elapsed,
                             .swapped = reload_swapped};
    r->policy = fr_reload_new(first, policy_path, &hooks);
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
    r->env.router = r->router;
    r->env.eps = r->eps;
    r->env.budget = r->budget;
    /* The self-check offers the run's own endpoints, as route will see them. */
    json_t *check_cands = fr_route_check_candidates(r->router);
    rc = fr_policy_check(fr_reload_live(r->policy), check_cands, err);
    json_decref(check_cands);
    if (rc != FR_OK)
        goto cleanup;
    if (opts->plan) {
        r->observed_from = fr_booking_state_path(opts->state_dir, opts->sim);
        json_t *observed = fr_booking_observed(r->observed_from, wf->name);
        r->plan = fr_plan_new(r->clock, observed, opts->sim_latency_ms, opts->sim_tps);
        r->env.backend = fr_plan_backend(r->plan);
        r->res.observed = fr_plan_observed(r->plan);
        r->res.observed_from = r->observed_from;
        fr_budget_mute_alerts(r->budget); /* a plan spends nothing */
    } else {
        rc = open_books(r, err);
        if (rc != FR_OK)
            goto cleanup;
        r->env.books = r->books;
    }
    r->out_dir =
        opts->out_dir ? fr_xstrdup(opts->out_dir) : fr_xasprintf(".flowrun/out/%s", r->run_id);
    r->res.out_dir = r->out_dir;
    rc = fr_output_prepare(wf, r->plan ? NULL : r->out_dir, &r->save_root, err);
    if (rc != FR_OK)
        goto cleanup;
    if (!r->plan)
        r->approvals = fr_approvals_new(&(fr_approvals_opts){
            .wf = wf,
            .store = fr_booking_store(r->books),
            .run_id = r->run_id,
            .out_dir = r->out_dir,
            .approve = opts->approve,
            .napprove = opts->napprove,
            .approve_all = opts->approve_all,
        });
    *out = r;
    r = NULL;
cleanup:
    free(policy_path);
    fr_run_free(r);
    return rc;
}

const fr_results *fr_run_results(const fr_run *r)
{
    return &r->res;
}

/* ---- task ends ---------------------------------------------------------- */

/* A dependent skipped by its trigger (sched.h): after a dependency that
 * failed, was skipped, ran out of budget; or, under any_failed, because
 * every dependency succeeded. A skip that follows from a decision (a
 * condition, a trigger) rather than a failure is marked decided: it does
 * not fail the run. */
static void on_skip(void *ud, size_t task, size_t cause)
{
    fr_run *r = ud;
    fr_task_result *res = r->tasks[task].res;
    const fr_task_result *cr = r->tasks[cause].res;
    free(res->reason);
    if (fr_sched_state(r->sched, cause) == FR_TASK_OK) {
        res->reason = fr_xstrdup("trigger any_failed: every dependency succeeded");
        res->decided = true;
    } else if (cr->decided) {
        res->reason = fr_xasprintf("dependency '%s' was skipped", r->wf->tasks[cause].name);
        res->decided = true;
    } else if (cr->approval.state == FR_APPROVAL_REJECTED && cr->reason) {
        /* What stopped the dependents is the person's note. */
        res->reason = fr_xasprintf("dependency '%s' was %s", r->wf->tasks[cause].name, cr->reason);
    } else {
        res->reason = fr_xasprintf("dependency '%s' did not succeed", r->wf->tasks[cause].name);
    }
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
    fr_sched_finish(r->sched, t->idx, state, on_skip, r);
    instance_ended(r, t->idx);
}

static void on_written(void *ud, int rc, const char *path)
{
    if (rc != FR_OK)
        ((fr_run *)ud)->write_errors++; /* engine/output logged it */
}

/* Follows the decision on approval task `t` (engine/approval): approved,
 * its dependents go on; rejected, it fails with the note as its reason;
 * otherwise it is held, asked at the terminal (NONE) or pending in the
 * store, and the rest of the run goes on. */
static void follow_approval(task_rt *t)
{
    fr_run *r = t->run;
    const fr_approval *ap = &t->res->approval;
    r->held -= t->held;
    t->held = false;
    if (ap->state == FR_APPROVAL_APPROVED) {
        fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
    } else if (ap->state == FR_APPROVAL_REJECTED) {
        char *why = fr_xasprintf("rejected by %s%s%s", ap->by ? ap->by : "?", ap->note ? ": " : "",
                                 ap->note ? ap->note : "");
        task_end(t, FR_TASK_FAILED, why);
        free(why);
    } else {
        t->held = true;
        r->held++;
        if (ap->state == FR_APPROVAL_NONE) {
            char *path = fr_approvals_output_path(r->approvals, t->idx, &t->res->reply);
            char *json = t->res->reply.json
                             ? json_dumps(t->res->reply.json, JSON_INDENT(2) | JSON_ENCODE_ANY)
                             : NULL;
            fr_prompt_ask(r->prompt, t->idx, task_name(t), json ? json : t->res->reply.text, path);
            free(json);
            free(path);
        }
    }
}

/* Approval task `t` succeeded: the command line, the store or the
 * terminal decides what follows. */
static void checkpoint(task_rt *t)
{
    fr_run *r = t->run;
    fr_error err = {0};
    if (fr_approvals_decide(r->approvals, t->idx, &t->res->reply, fr_prompt_open(r->prompt),
                            &t->res->approval, &err) != FR_OK)
        fr_booking_write_failed(r->books, &err);
    follow_approval(t);
}

/* The terminal answered for `task` (engine/prompt). */
static void on_answer(void *ud, size_t task, fr_approval_state state, const char *note)
{
    fr_run *r = ud;
    task_rt *t = &r->tasks[task];
    fr_error err = {0};
    if (r->stopping || !t->held)
        return;
    if (fr_approvals_answer(r->approvals, task, state, note, &t->res->approval, &err) != FR_OK)
        fr_booking_write_failed(r->books, &err);
    follow_approval(t);
    maybe_finish(r);
    pump(r);
}

static void task_ok(task_rt *t)
{
    fr_run *r = t->run;
    stop_task_timers(t);
    t->res->state = FR_TASK_OK;
    t->res->end_ns = now_ns(r);
    if (!r->plan)
        fr_output_task(&r->loop, r->wf, t->idx, r->out_dir, r->save_root, &t->res->reply,
                       on_written, r);
    if (r->opts.progress) {
        const fr_endpoint_spec *s = fr_ep_spec(r->eps, (size_t)t->res->endpoint);
        fr_log(FR_LOG_WARN, "sched",
               "task=%s status=ok endpoint=%s tier=%s latency_ms=%.0f tokens_in=%ld "
               "tokens_out=%ld",
               task_name(t), s->name, fr_tier_name(s->tier), t->res->latency_ms,
               t->res->usage.input, t->res->usage.output);
    }
    if (r->approvals && r->wf->tasks[t->idx].approve)
        checkpoint(t);
    else
        fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
    instance_ended(r, t->idx);
}

/* ---- fan-out (engine/fanout) -------------------------------------------- */

static fr_fanout_env fanout_env(fr_run *r)
{
    return (fr_fanout_env){r->wf, r->g, r->sched, &r->res, r->plan != NULL};
}

/* Ends fan-out `t` in `state`: ok without an output of its own (`note`,
 * borrowed, may be NULL), else as any task that did not succeed. */
static void fanout_end(task_rt *t, fr_task_state state, const char *note)
{
    fr_run *r = t->run;
    if (state != FR_TASK_OK) {
        task_end(t, state, note);
        return;
    }
    stop_task_timers(t);
    free(t->res->reason);
    t->res->reason = note ? fr_xstrdup(note) : NULL;
    t->res->state = FR_TASK_OK;
    t->res->end_ns = now_ns(r);
    if (r->opts.progress)
        fr_log(FR_LOG_WARN, "sched", "task=%s status=ok instances=%zu%s%s", task_name(t),
               t->res->instances, note ? " note=" : "", note ? note : "");
    fr_sched_finish(r->sched, t->idx, FR_TASK_OK, on_skip, r);
}

/* Fan-out `t` is placed: its instances join the run (each a task with its
 * own runtime), or it ends at once (an empty list, or a list it cannot use). */
static bool fan_out(fr_run *r, task_rt *t)
{
    fr_fanout_env fe = fanout_env(r);
    char *reason = NULL;
    fr_fanout_outcome o = fr_fanout_expand(&fe, t->idx, &reason);
    t->res->start_ns = now_ns(r);
    if (o == FR_FANOUT_STARTED) {
        stop_task_timers(t); /* each instance has its own timeout */
        for (size_t i = t->res->first_instance; i < r->wf->ntasks; i++)
            init_task(r, i);
    } else {
        fanout_end(t, o == FR_FANOUT_EMPTY ? FR_TASK_OK : FR_TASK_FAILED, reason);
    }
    free(reason);
    return true;
}

/* Task `task` ended: when it was the last instance of its fan-out to end,
 * the fan-out ends too, and its dependents follow their triggers. */
static void instance_ended(fr_run *r, size_t task)
{
    fr_fanout_env fe = fanout_env(r);
    size_t parent;
    fr_task_state st;
    char *reason = NULL;
    if (fr_fanout_ended(&fe, task, &parent, &st, &reason))
        fanout_end(&r->tasks[parent], st, reason);
    free(reason);
}

/* ---- attempts ----------------------------------------------------------- */

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
    fr_sched_requeue(t->run->sched, t->idx);
    pump(t->run);
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
        t->retry_armed = true;
        t->run->retries_armed++;
        uv_timer_start(&t->retry_timer, on_retry_timer, (uint64_t)n->delay_ms, 0);
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

static void on_deadline(uv_timer_t *timer)
{
    task_rt *t = timer->data;
    fr_run *r = t->run;
    double timeout_s = r->wf->tasks[t->idx].timeout_s;
    fr_task_cancel(t->task, "timeout", "task timeout");
    char *why = fr_task_fd_wait(t->task)
                    ? fr_xasprintf("timed out after %g s (task timeout) while waiting for a file "
                                   "descriptor; last error: %s; raise ulimit -n",
                                   timeout_s, fr_task_last_error(t->task))
                    : fr_xasprintf("timed out after %g s (task timeout)", timeout_s);
    task_end(t, FR_TASK_FAILED, why);
    free(why);
    maybe_finish(r);
    pump(r);
}

/* Looks for a stored result of this exact request (engine/cache); on a
 * hit the task is done without a request and without cost. This is how a
 * run resumes after a crash. */
static bool try_cache(fr_run *r, task_rt *t)
{
    if (r->plan ||
        !fr_cache_may_answer(r->books != NULL, r->opts.no_cache || r->wf->tasks[t->idx].no_cache,
                             r->opts.fresh, r->opts.nfresh, task_name(t)))
        return false;
    fr_cache_ctx c = {
        .store = fr_booking_store(r->books),
        .wf = r->wf,
        .eps = r->eps,
        .router = r->router,
        .tools = r->env.tools ? fr_toolset_defs(r->env.tools, t->idx) : NULL,
    };
    if (!fr_cache_lookup(&c, t->route, fr_task_prompt(t->task), now_ns(r),
                         fr_task_last_error_slot(t->task)))
        return false;
    task_ok(t);
    return true;
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
    fr_clock_refresh(r->clock);
    t->route->deadline_ms = fr_clock_ms(r->clock) + ts->timeout_s * 1000.0;
    uv_timer_start(&t->deadline, on_deadline, (uint64_t)(ts->timeout_s * 1000.0), 0);
}

/* Tries to place one ready task. Returns true when the task left the
 * queue (dispatched or ended), false when it must wait. */
static bool place(fr_run *r, task_rt *t)
{
    if (!r->plan && t->route->deadline_ms == 0)
        arm_deadline(t);
    if (!t->cleared) {
        /* The condition is evaluated once, when the task would first run. */
        fr_error err = {0};
        bool go = true;
        if (fr_task_decide(t->task, &go, &err) != FR_OK) {
            char msg[1400];
            task_end(t, FR_TASK_FAILED, fr_error_format(&err, msg, sizeof msg));
            return true;
        }
        if (!go) {
            t->res->decided = true;
            task_end(t, FR_TASK_SKIPPED, "condition false");
            return true;
        }
        t->cleared = true;
    }
    if (r->wf->tasks[t->idx].foreach)
        return fan_out(r, t);
    if (t->route->retry_ep < 0) {
        fr_error err = {0};
        if (fr_task_render(t->task, &err) != FR_OK) {
            char msg[1400];
            task_end(t, FR_TASK_FAILED, fr_error_format(&err, msg, sizeof msg));
            return true;
        }
        if (t->res->attempts == 0 && try_cache(r, t))
            return true;
    }
    fr_route_decision d = fr_route(r->router, t->route);
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
    return fr_http_active(r->http) > 0 || r->env.in_flight > 0 || r->retries_armed > 0 ||
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
        /* A task made ready by an end in this loop (all_done, any_failed)
         * has not been placed yet: its condition and the policy come first. */
        if (!tr->cleared && place(r, tr))
            continue;
        if (tr->route->retry_ep >= 0) {
            dispatch(tr, (size_t)tr->route->retry_ep);
            if (!r->plan && fr_http_active(r->http) == 0 && r->env.in_flight == 0 &&
                r->retries_armed == 0)
                arm_wake(r, fr_clock_ms(r->clock)); /* it failed at once: place again */
            break;
        }
        char *why = fr_xasprintf("policy %s keeps the task waiting while nothing else runs: it "
                                 "accepts none of the endpoints the task may use",
                                 fr_policy_name(fr_reload_live(r->policy)));
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
    fr_reload_stop(r->policy);
    fr_prompt_close(r->prompt);
    r->prompt = NULL;
    uv_close((uv_handle_t *)&r->wake, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    fr_toolset_free(r->tools); /* stops the MCP servers: before the transport they use */
    r->tools = r->env.tools = NULL;
    fr_http_free(r->http);
    r->http = NULL;
    if (r->standin_started)
        r->opts.standin->stop(r->opts.standin->ud);
    r->standin_started = false;
}

/* True when the only tasks still to end wait behind checkpoints recorded
 * as pending: nothing runs, nothing is ready, nobody is asked. */
static bool only_checkpoints_left(fr_run *r)
{
    if (r->held == 0 || fr_prompt_waiting(r->prompt) > 0 || anything_pending(r) ||
        fr_sched_ready(r->sched) > 0)
        return false;
    size_t running = 0;
    for (size_t t = 0; t < r->wf->ntasks; t++)
        running += fr_sched_state(r->sched, t) == FR_TASK_RUNNING;
    return running == r->held;
}

static void maybe_finish(fr_run *r)
{
    if (!r->stopping && (fr_sched_unfinished(r->sched) == 0 || only_checkpoints_left(r)))
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
        fr_task_cancel(tr->task, "cancelled", "interrupted");
        stop_task_timers(tr);
        free(tr->res->reason);
        tr->res->reason = fr_xstrdup("interrupted");
        tr->res->end_ns = now_ns(r);
        fr_sched_abandon(r->sched, t, FR_TASK_CANCELLED);
    }
    close_all(r);
}

/* "waiting for approval of 'NAME'" (owned) for pending task `t`: the first
 * held checkpoint found among its dependencies, transitively. */
static char *waiting_reason(fr_run *r, size_t t)
{
    size_t n;
    const size_t *deps = fr_graph_deps(r->g, t, &n);
    for (size_t i = 0; i < n; i++) {
        if (r->tasks[deps[i]].held)
            return fr_xasprintf("waiting for approval of '%s'", task_name(&r->tasks[deps[i]]));
        if (fr_sched_state(r->sched, deps[i]) == FR_TASK_PENDING)
            return waiting_reason(r, deps[i]);
    }
    return fr_xstrdup("waiting for an approval");
}

/* Fills what the report reads and the run's exit code (DESIGN.md section 7). */
static int publish(fr_run *r)
{
    bool failed = false, budget = false, waiting = false;
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        fr_task_state st = fr_sched_state(r->sched, t);
        /* A task held at its checkpoint succeeded; those behind it wait. */
        st = r->tasks[t].held && !r->res.interrupted ? FR_TASK_OK : st;
        r->res.tasks[t].state = st;
        if (st == FR_TASK_PENDING && r->held && !r->res.interrupted) {
            waiting = true;
            free(r->res.tasks[t].reason);
            r->res.tasks[t].reason = waiting_reason(r, t);
            continue;
        }
        /* A skip that was decided (a condition, a trigger) is not a failure. */
        failed |= st != FR_TASK_OK && !(st == FR_TASK_SKIPPED && r->res.tasks[t].decided);
        budget |= st == FR_TASK_BUDGET;
    }
    fr_results_endpoints(&r->res, r->eps, r->sched);
    r->res.policy = fr_policy_name(fr_reload_live(r->policy));
    r->res.policy_errors = fr_route_policy_errors(r->router);
    r->res.alerts = fr_budget_alerts(r->budget);
    r->res.reloads = fr_reload_log(r->policy);
    int code = r->res.interrupted            ? r->res.exit_code /* 130 SIGINT, 143 SIGTERM */
               : r->start_rc == FR_EWORKFLOW ? 65
               : r->start_rc != FR_OK        ? 78
               : r->books && fr_booking_failed(r->books) ? 74
               : budget                                  ? 3
               : failed || r->write_errors               ? 1
               : waiting || r->held                      ? 4
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

/* Every task not yet ended fails for `reason` (borrowed): the run could
 * not start. */
static void fail_all(fr_run *r, const char *reason)
{
    for (size_t t = 0; t < r->wf->ntasks; t++)
        if (!fr_task_state_terminal(fr_sched_state(r->sched, t))) {
            free(r->tasks[t].res->reason);
            r->tasks[t].res->reason = fr_xstrdup(reason);
            fr_sched_abandon(r->sched, t, FR_TASK_FAILED);
        }
}

static bool has_tools(const fr_workflow *wf)
{
    for (size_t t = 0; t < wf->ntasks; t++)
        if (wf->tasks[t].ntools > 0)
            return true;
    return false;
}

/* The tools are ready (their servers started and listed): the run begins;
 * or they are not, and nothing is sent. */
static void on_tools_ready(void *ud, int rc, const fr_error *err)
{
    fr_run *r = ud;
    if (r->stopping)
        return;
    if (rc != FR_OK) {
        char msg[1400];
        fr_error_format(err, msg, sizeof msg);
        fprintf(stderr, "flowrun: %s\n", msg);
        r->start_rc = rc == FR_EWORKFLOW ? FR_EWORKFLOW : (rc != FR_OK ? rc : FR_EMCP);
        fail_all(r, "the run could not start: its tools did not start");
        close_all(r);
        return;
    }
    r->env.tools = r->tools;
    maybe_finish(r); /* an empty workflow ends at once */
    pump(r);
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
    if (r->approvals && fr_prompt_possible())
        r->prompt = fr_prompt_new(&r->loop, on_answer, r);
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
    if (r->http && r->env.fd_cap > 0)
        fr_http_set_max_connections(r->http, r->env.fd_cap);
    if (r->http)
        r->env.backend = fr_attempt_wire(r->http);
    r->res.start_ns = now_ns(r);
    fr_booking_begin(r->books, r->wf->name, r->wf->path);
    fr_reload_watch(r->policy, &r->loop, NULL); /* a failure is a warning, logged */
    r->standin_started = r->opts.sim && r->http;
    if (r->opts.progress) /* what a progress reader counts the ended tasks against */
        fr_log(FR_LOG_WARN, "run", "tasks=%zu status=started", r->wf->ntasks);
    if (!r->http ||
        (r->opts.sim && fr_endpoints_standin(r->eps, r->opts.standin, &r->loop,
                                             r->opts.sim_latency_ms, r->opts.sim_tps) != FR_OK)) {
        fail_all(r, "the run could not start");
        close_all(r);
    } else if (has_tools(r->wf)) {
        r->tools = fr_toolset_new(&r->loop, r->http, r->wf);
        fr_toolset_start(r->tools, false, on_tools_ready, r);
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
                         : code == 4          ? "waiting"
                         : r->res.interrupted ? "interrupted"
                                              : "failed";
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
    for (size_t t = 0; r->tasks && t < r->wf->ntasks; t++) {
        task_rt *tr = &r->tasks[t];
        fr_task_free(tr->task);
    }
    free(r->tasks);
    fr_results_close(&r->res);
    fr_router_free(r->router);
    fr_plan_free(r->plan);
    fr_budget_free(r->budget);
    fr_approvals_free(r->approvals);
    fr_booking_free(r->books);
    fr_sched_free(r->sched);
    fr_graph_free(r->g);
    fr_reload_free(r->policy);
    fr_clock_free(r->clock);
    free(r->run_id);
    free(r->out_dir);
    free(r->save_root);
    free(r->observed_from);
    free(r);
}
