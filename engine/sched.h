#pragma once
/* The scheduler's state, without I/O: task states, dependency counters and
 * the join rules (triggers) that make a dependent ready or skip it, the
 * ready queue (priority, then longest remaining path, then declaration
 * order) and per-endpoint slots. engine/run drives it from the loop. */

#include "dsl/workflow.h"
#include "engine/graph.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    FR_TASK_PENDING = 0, /* waiting for dependencies */
    FR_TASK_READY,       /* in the ready queue */
    FR_TASK_RUNNING,     /* routed: an attempt in flight or a retry scheduled */
    FR_TASK_OK,
    FR_TASK_FAILED,
    FR_TASK_SKIPPED,
    FR_TASK_BUDGET,
    FR_TASK_CANCELLED
} fr_task_state;

typedef struct fr_sched fr_sched;

/* Called for each task skipped, with `cause` the dependency whose end
 * decided it: one that did not succeed (all_ok), or, for an any_failed task
 * whose dependencies all succeeded, the last of them to end (its state is
 * then FR_TASK_OK). */
typedef void (*fr_sched_skip_fn)(void *ud, size_t task, size_t cause);

/* Returns a new scheduler (owned; fr_sched_free) over the sorted graph `g`
 * (borrowed, must outlive it), with task priorities `priority` (borrowed
 * array, copied; higher first) and `nendpoints` endpoints whose slot counts
 * are `max_parallel` (borrowed, copied). Tasks without deps are ready. */
fr_sched *fr_sched_new(const fr_graph *g, const int *priority, size_t nendpoints,
                       const int *max_parallel);
/* The scheduler of workflow `wf` over its graph `g` (both borrowed, must
 * outlive it): the tasks' priorities, one slot per max_parallel of each
 * endpoint. Owned; fr_sched_free. */
fr_sched *fr_sched_for_workflow(const fr_graph *g, const fr_workflow *wf);
/* fr_sched_for_workflow capped at the transfers the file descriptors allow
 * (engine/util/fdlimit.h: two a transfer, a reserve for the rest), which
 * it stores in *fd_cap (0: no cap) and logs when the endpoints' slots
 * exceed it: at ulimit -n 1024, max_parallel = 1000 runs as many as fit
 * instead of failing sockets. */
fr_sched *fr_sched_for_run(const fr_graph *g, const fr_workflow *wf, int *fd_cap);
/* Frees a scheduler; NULL is fine. */
void fr_sched_free(fr_sched *s);

/* Adds a task whose dependencies have all ended, ready at once, with
 * `priority` and `trigger`: a fan-out's instance (engine/fanout). Its node
 * must already be in the graph (fr_graph_add_like): returns its index,
 * which is the graph's last. */
size_t fr_sched_add_ready(fr_sched *s, int priority, fr_trigger trigger);

/* Takes the best ready task: returns true and sets *task, or false if none.
 * The task's state becomes RUNNING; put it back with fr_sched_requeue. */
bool fr_sched_pop(fr_sched *s, size_t *task);
/* Puts a popped (or retrying) task back in the ready queue. */
void fr_sched_requeue(fr_sched *s, size_t task);
/* Number of tasks in the ready queue. */
size_t fr_sched_ready(const fr_sched *s);

/* Takes a slot of endpoint `ep`: true on success, false when it is full. */
bool fr_sched_take_slot(fr_sched *s, size_t ep);
/* Gives a slot back. */
void fr_sched_release_slot(fr_sched *s, size_t ep);
/* Caps the slots in use over all endpoints at `cap` (0 or less: no cap),
 * whatever the endpoints' own capacities add up to: the transfers the
 * process's file descriptors allow (engine/util/fdlimit.h). Slots already
 * taken stay taken; free counts below never exceed what the cap leaves. */
void fr_sched_set_total_cap(fr_sched *s, int cap);
/* The cap set by fr_sched_set_total_cap, 0 for none. */
int fr_sched_total_cap(const fr_sched *s);
/* Slots of `ep` in use, free (never more than the total cap leaves), the
 * most ever in use, and the capacity. */
int fr_sched_in_flight(const fr_sched *s, size_t ep);
int fr_sched_free_slots(const fr_sched *s, size_t ep);
int fr_sched_peak(const fr_sched *s, size_t ep);
int fr_sched_capacity(const fr_sched *s, size_t ep);
/* Free slots over all endpoints, never more than the total cap leaves. */
int fr_sched_total_free(const fr_sched *s);

/* Sets the trigger of `task` (FR_TRIGGER_ALL_OK until set; the workflow's
 * with fr_sched_for_workflow): when it runs given how its deps ended. */
void fr_sched_set_trigger(fr_sched *s, size_t task, fr_trigger trigger);

/* Ends a task in a terminal `state`, and each dependent not yet ended
 * follows its trigger: all_ok becomes ready once every dep succeeded and is
 * SKIPPED as soon as one did not; all_done becomes ready once every dep
 * ended; any_failed becomes ready once every dep ended and one did not
 * succeed, and is SKIPPED when they all succeeded. A skip ends the
 * dependent without success, so its own dependents follow their triggers
 * in turn (transitively); `on_skip` (may be NULL) is told of each. */
void fr_sched_finish(fr_sched *s, size_t task, fr_task_state state, fr_sched_skip_fn on_skip,
                     void *ud);
/* Marks a not-yet-ended task with a terminal state (cancel, budget) without
 * touching dependents; used when a whole run stops. */
void fr_sched_abandon(fr_sched *s, size_t task, fr_task_state state);

fr_task_state fr_sched_state(const fr_sched *s, size_t task);
/* Number of tasks not in a terminal state. */
size_t fr_sched_unfinished(const fr_sched *s);
/* Returns a static name: "pending", "ready", "running", "ok", "failed",
 * "skipped", "budget", "cancelled". */
const char *fr_task_state_name(fr_task_state st);
/* True for ok, failed, skipped, budget and cancelled. */
bool fr_task_state_terminal(fr_task_state st);
