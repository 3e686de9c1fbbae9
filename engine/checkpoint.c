#include "engine/checkpoint.h"

#include "engine/prompt.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdlib.h>

struct fr_checkpoints {
    fr_checkpoint_env env;
    fr_checkpoint_hooks hooks;
    fr_approvals *approvals; /* the decisions */
    fr_prompt *prompt;       /* the terminal that answers, NULL without one */
    bool *held;
    size_t nheld;
    size_t deciding; /* reads of the shared store still due */
    uv_loop_t *loop; /* the run's, once started */
    bool stopped;
};

fr_checkpoints *fr_checkpoints_new(const fr_checkpoint_env *env, const fr_checkpoint_hooks *hooks)
{
    fr_checkpoints *c = fr_xcalloc(1, sizeof *c);
    size_t cap = env->wf->tasks_cap > env->wf->ntasks ? env->wf->tasks_cap : env->wf->ntasks;
    c->env = *env;
    c->hooks = *hooks;
    c->approvals = fr_approvals_new(&env->decide);
    c->held = fr_xcalloc(cap ? cap : 1, sizeof *c->held);
    return c;
}

/* Follows the decision on approval task `task`: approved, its dependents
 * go on; rejected, it fails with the note as its reason; otherwise it is
 * held, asked at the terminal (NONE) or pending in the store. */
static void follow(fr_checkpoints *c, size_t task)
{
    fr_task_result *res = &c->env.res->tasks[task];
    const fr_approval *ap = &res->approval;
    c->nheld -= c->held[task];
    c->held[task] = false;
    if (ap->state == FR_APPROVAL_APPROVED) {
        c->hooks.approved(c->hooks.ud, task);
    } else if (ap->state == FR_APPROVAL_REJECTED) {
        char *why = fr_xasprintf("rejected by %s%s%s", ap->by ? ap->by : "?", ap->note ? ": " : "",
                                 ap->note ? ap->note : "");
        c->hooks.rejected(c->hooks.ud, task, why);
        free(why);
    } else {
        c->held[task] = true;
        c->nheld++;
        if (ap->state == FR_APPROVAL_NONE) {
            char *path = fr_approvals_output_path(c->approvals, task, &res->reply);
            char *json = res->reply.json
                             ? json_dumps(res->reply.json, JSON_INDENT(2) | JSON_ENCODE_ANY)
                             : NULL;
            fr_prompt_ask(c->prompt, task, c->env.wf->tasks[task].name,
                          json ? json : res->reply.text, path);
            free(json);
            free(path);
        }
    }
}

/* The terminal answered for `task` (engine/prompt). */
static void on_answer(void *ud, size_t task, fr_approval_state state, const char *note)
{
    fr_checkpoints *c = ud;
    fr_error err = {0};
    if (c->stopped || !c->held[task])
        return;
    if (fr_approvals_answer(c->approvals, task, state, note, &c->env.res->tasks[task].approval,
                            &err) != FR_OK)
        fr_booking_write_failed(c->env.books, &err);
    follow(c, task);
    c->hooks.answered(c->hooks.ud);
}

void fr_checkpoints_start(fr_checkpoints *c, uv_loop_t *loop)
{
    c->loop = loop;
    if (fr_prompt_possible())
        c->prompt = fr_prompt_new(loop, on_answer, c);
}

/* The shared store's row of `task` was read and decided from. */
static void on_decided(void *ud, size_t task, int rc, const fr_error *err)
{
    fr_checkpoints *c = ud;
    c->deciding--;
    if (rc == FR_ETIMEDOUT) /* pending in this run: the run goes on */
        fr_log_event(FR_LOG_WARN, "checkpoint", "approval.timeout", "task=%s error=\"%s\"",
                     c->env.wf->tasks[task].name, err->msg);
    else if (rc != FR_OK)
        fr_booking_write_failed(c->env.books, err);
    if (c->stopped)
        return;
    follow(c, task);
    c->hooks.answered(c->hooks.ud);
}

/* A write of a checkpoint's row to the shared store came back. */
static void on_put(void *ud, int rc, const fr_error *err)
{
    if (rc != FR_OK && rc != FR_ECANCELED)
        fr_booking_write_failed(ud, err);
}

void fr_checkpoints_reached(fr_checkpoints *c, size_t task)
{
    fr_error err = {0};
    fr_task_result *res = &c->env.res->tasks[task];
    /* The books' shared store as it is now: they may reach it once the loop runs. */
    fr_pgstore *pg = fr_booking_pgstore(c->env.books);
    fr_approvals_share(c->approvals, pg, c->loop);
    if (pg) {
        bool waiting = false;
        if (fr_approvals_decide_shared(c->approvals, task, &res->reply, fr_prompt_open(c->prompt),
                                       &res->approval, on_decided, c, &waiting, &err) != FR_OK)
            fr_booking_write_failed(c->env.books, &err);
        if (waiting) {
            c->deciding++;
            return;
        }
        follow(c, task);
        return;
    }
    if (fr_approvals_decide(c->approvals, task, &res->reply, fr_prompt_open(c->prompt),
                            &res->approval, &err) != FR_OK)
        fr_booking_write_failed(c->env.books, &err);
    follow(c, task);
}

size_t fr_checkpoints_deciding(const fr_checkpoints *c)
{
    return c ? c->deciding : 0;
}

bool fr_checkpoints_held(const fr_checkpoints *c, size_t task)
{
    return c && c->held[task];
}

size_t fr_checkpoints_count(const fr_checkpoints *c)
{
    return c ? c->nheld : 0;
}

size_t fr_checkpoints_asking(const fr_checkpoints *c)
{
    return c ? fr_prompt_waiting(c->prompt) : 0;
}

fr_checkpoints *fr_checkpoints_for_run(const fr_workflow *wf, fr_results *res, const fr_graph *g,
                                       const fr_sched *sched, fr_booking *books, const char *run_id,
                                       const char *out_dir, const char *const *approve,
                                       size_t napprove, bool approve_all,
                                       const fr_checkpoint_hooks *hooks)
{
    fr_store *store = fr_booking_store(books);
    fr_approvals_opts decide = {.wf = wf,
                                .store = store,
                                .run_id = run_id,
                                .out_dir = out_dir,
                                .approve = approve,
                                .napprove = napprove,
                                .approve_all = approve_all,
                                .pg_put_done = on_put, /* the shared store is set when used */
                                .pg_put_ud = books};
    fr_checkpoint_env env = {wf, res, g, sched, books, decide};
    return fr_checkpoints_new(&env, hooks);
}

bool fr_checkpoints_only_left(const fr_checkpoints *c, bool pending)
{
    size_t held = fr_checkpoints_count(c);
    if (held == 0 || fr_checkpoints_asking(c) > 0 || pending || fr_sched_ready(c->env.sched) > 0)
        return false;
    size_t running = 0;
    for (size_t t = 0; t < c->env.wf->ntasks; t++)
        running += fr_sched_state(c->env.sched, t) == FR_TASK_RUNNING;
    return running == held;
}

char *fr_checkpoints_waiting_reason(const fr_checkpoints *c, size_t task)
{
    size_t n;
    const size_t *deps = fr_graph_deps(c->env.g, task, &n);
    for (size_t i = 0; i < n; i++) {
        if (c->held[deps[i]])
            return fr_xasprintf("waiting for approval of '%s'", c->env.wf->tasks[deps[i]].name);
        if (fr_sched_state(c->env.sched, deps[i]) == FR_TASK_PENDING)
            return fr_checkpoints_waiting_reason(c, deps[i]);
    }
    return fr_xstrdup("waiting for an approval");
}

void fr_checkpoints_stop(fr_checkpoints *c)
{
    if (!c)
        return;
    c->stopped = true;
    fr_approvals_drop_reads(c->approvals); /* their answers, when they come, find nothing */
    c->deciding = 0;
    fr_prompt_close(c->prompt);
    c->prompt = NULL;
}

void fr_checkpoints_free(fr_checkpoints *c)
{
    if (!c)
        return;
    fr_approvals_free(c->approvals);
    free(c->held); /* the prompt was closed by fr_checkpoints_stop; the loop freed it */
    free(c);
}
