#pragma once
/* One task's attempts as the run carries them out. Dispatching takes the
 * endpoint's slot, holds the request's worst case against every cap, books
 * it in flight and starts it on the attempt backend. From each outcome it
 * charges what the reply cost, runs the gates (finish, schema, check, the
 * policy's on_result), books the attempt, stores a whole answer in the
 * result cache, tells the endpoint's health, and works out what a failure
 * means (engine/retry). It never acts on the run: it returns, or hands the
 * conductor through the hook it was given, what to do next (fr_task_next):
 * the task is done, waits to retry, goes back to the ready queue, or ends.
 * The conductor (engine/run) owns one per task, and the timers. */

#include "dsl/workflow.h"
#include "engine/attempt.h"
#include "engine/booking.h"
#include "engine/budget.h"
#include "engine/cache.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/results.h"
#include "engine/route.h"
#include "engine/sched.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct fr_task fr_task;

typedef enum {
    FR_NEXT_DONE = 0, /* the reply was accepted: the task succeeded */
    FR_NEXT_RETRY,    /* try the same endpoint again after delay_ms */
    FR_NEXT_REQUEUE,  /* back to the ready queue: the policy is asked again */
    FR_NEXT_END       /* the task ends in `state`, for `reason` */
} fr_next_kind;

typedef struct fr_task_next {
    fr_next_kind kind;
    double delay_ms;     /* RETRY */
    fr_task_state state; /* END */
    char *reason;        /* END: owned by the receiver */
} fr_task_next;

/* What the tasks share, owned by the conductor (everything borrowed must
 * outlive the tasks). */
typedef struct fr_task_env {
    fr_workflow *wf;
    fr_results *results; /* each task writes its own entry and its deps' kept context entries */
    fr_endpoints *eps;
    fr_sched *sched;
    fr_budget *budget;
    fr_booking *books; /* NULL: nothing is booked (a plan) */
    fr_router *router;
    fr_clock *clock;
    fr_attempt_backend backend; /* set before the first dispatch */
    fr_toolset *tools;          /* the run's tools once started; NULL for none (a plan) */
    bool show_tools;            /* --progress / --explain: each tool call is shown */
    int in_flight;              /* attempts in flight (a tool loop may have no transfer) */
    const char *run_id;
    bool plan;
    /* Transfers at once the file descriptors allow (0: no cap), the cap in
     * force now (lowered when a socket finds none, raised back one at a
     * time by deliveries), and the attempts that found none. */
    int fd_cap, fd_cap_now;
    long fd_waits;
    /* An attempt ended: `next` says what the conductor does with task
     * `task` (its reason is the conductor's to free). */
    void (*next)(void *ud, size_t task, fr_task_next *next);
    void *ud;
    double spent_usd; /* every settled attempt of every task */
} fr_task_env;

/* A run's task env: what every run sets before its tasks (all borrowed,
 * as in fr_task_env; the rest zero, set by the conductor as the pieces
 * are made). */
fr_task_env fr_task_env_for_run(fr_workflow *wf, fr_results *results, fr_clock *clock,
                                const char *run_id, bool plan, bool show_tools,
                                void (*next)(void *ud, size_t task, fr_task_next *next), void *ud);

/* Returns task `idx` of env->wf (owned; fr_task_free). */
fr_task *fr_task_new(fr_task_env *env, size_t idx);
void fr_task_free(fr_task *t);

/* Evaluates the task's condition (`when`) from its dependencies' outcomes
 * (text, JSON, status, reason): *run is false when the task is to be
 * skipped. A task without a condition runs, and so does every task of a
 * plan (a plan cannot know a condition). FR_OK, or the condition's error
 * (dsl's fr_workflow_when) with `err` filled. */
int fr_task_decide(fr_task *t, bool *run, fr_error *err);

/* Renders the task's prompt from its dependencies' outputs, once, and
 * sets the routing record's token estimates. A plan has no outputs: its
 * estimate is the template plus what the dependencies are expected to
 * produce. FR_OK, or the template's or prompt function's error. */
int fr_task_render(fr_task *t, fr_error *err);

/* Its routing record (borrowed, changed by routing). */
fr_route_task *fr_task_route(fr_task *t);
/* Its rendered prompt (borrowed, NULL before fr_task_render). */
const char *fr_task_prompt(const fr_task *t);
/* Its last error (owned by the task; borrowed), and the slot for a new one
 * (the result cache replaces it). */
const char *fr_task_last_error(const fr_task *t);
char **fr_task_last_error_slot(fr_task *t);

/* Where the task's cache lookup leaves the key of its request (borrowed,
 * the task's), for its dispatch to the same endpoint. */
fr_cache_memo *fr_task_cache_memo(fr_task *t);

/* True while its latest attempt found no file descriptor. */
bool fr_task_fd_wait(const fr_task *t);
/* Why the task failed when its timeout passed (owned): the timeout, and
 * when it was waiting for a file descriptor, its last error and what to do. */
char *fr_task_timeout_reason(const fr_task *t);

/* Sends an attempt of the task to endpoint `ep`, whose slot is free: with
 * books attached to the loop its reservation joins the turn's commit and
 * the request goes to the transport right after it (a commit that fails
 * sends nothing: the task fails through env->next). Returns true once it
 * is in flight (its end comes through env->next); false when it could not
 * start: *now (filled) says what follows. */
bool fr_task_dispatch(fr_task *t, size_t ep, fr_task_next *now);

/* Cancels the attempt in flight, if any (a deadline, a signal): it may have
 * been billed, so it keeps its worst case, booked as `outcome` ("timeout",
 * "cancelled") with `error` (borrowed). One whose request still waited for
 * its reservation's commit (engine/booking) was never sent: it is taken
 * back and booked so at no cost. */
void fr_task_cancel(fr_task *t, const char *outcome, const char *error);
