#pragma once
/* A run's checkpoints while it runs: an approval task that succeeded is
 * held until engine/approval (the command line, the store) or the terminal
 * (engine/prompt) decides; approved, its dependents go on; rejected, it
 * fails with the decider's note; undecided, the rest of the run goes on
 * and the tasks behind it end the run waiting, with that reason. Owns the
 * held flags and the prompt; follows decisions through the hooks it was
 * given and never calls into the run by name. Used by engine/run. */
#include "dsl/workflow.h"
#include "engine/approval.h"
#include "engine/booking.h"
#include "engine/graph.h"
#include "engine/results.h"
#include "engine/sched.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_checkpoints fr_checkpoints;

/* What follows a decision, called by the checkpoints (ud is the caller's). */
typedef struct fr_checkpoint_hooks {
    void *ud;
    void (*approved)(void *ud, size_t task);                  /* its dependents go on */
    void (*rejected)(void *ud, size_t task, const char *why); /* it fails; why borrowed */
    void (*answered)(void *ud); /* the terminal answered: the run may go on or end */
} fr_checkpoint_hooks;

/* What the checkpoints read and record, all borrowed from the caller. */
typedef struct fr_checkpoint_env {
    const fr_workflow *wf;
    fr_results *res;
    const fr_graph *g;
    const fr_sched *sched;
    fr_booking *books;        /* a store write that fails is reported here */
    fr_approvals_opts decide; /* what engine/approval decides from (copied) */
} fr_checkpoint_env;

/* A run's checkpoints over `env` (copied; what it points to is borrowed,
 * with room for wf->tasks_cap tasks), with their decisions
 * (engine/approval, owned). Free with fr_checkpoints_free. */
fr_checkpoints *fr_checkpoints_new(const fr_checkpoint_env *env, const fr_checkpoint_hooks *hooks);

/* A run's checkpoints: fr_checkpoints_new over the run's pieces (all
 * borrowed, as in fr_checkpoint_env; the store is that of `books`) and its
 * --approve TASK names (`approve`, `napprove`) and --approve-all. */
fr_checkpoints *fr_checkpoints_for_run(const fr_workflow *wf, fr_results *res, const fr_graph *g,
                                       const fr_sched *sched, fr_booking *books, const char *run_id,
                                       const char *out_dir, const char *const *approve,
                                       size_t napprove, bool approve_all,
                                       const fr_checkpoint_hooks *hooks);

/* Opens the terminal prompt on `loop` when a terminal can answer. */
void fr_checkpoints_start(fr_checkpoints *c, uv_loop_t *loop);

/* Approval task `task` succeeded: decides (or asks) and follows the
 * decision through the hooks; on the shared store once its row is read
 * (the loop goes on meanwhile; `answered` is called after it). */
void fr_checkpoints_reached(fr_checkpoints *c, size_t task);

/* How many checkpoints wait for the shared store's row (their decision
 * follows when it comes): work in flight for the run. */
size_t fr_checkpoints_deciding(const fr_checkpoints *c);

/* True while `task` is held at its checkpoint. */
bool fr_checkpoints_held(const fr_checkpoints *c, size_t task);

/* How many tasks are held; how many of them the terminal is asked about. */
size_t fr_checkpoints_count(const fr_checkpoints *c);
size_t fr_checkpoints_asking(const fr_checkpoints *c);
/* True when the only tasks still to end wait behind checkpoints recorded
 * as pending: nothing runs (`pending` false: nothing in flight or
 * scheduled), nothing is ready, nobody is asked. False for NULL `c`. */
bool fr_checkpoints_only_left(const fr_checkpoints *c, bool pending);

/* "waiting for approval of 'NAME'" (owned) for pending task `task`: the
 * first held checkpoint among its dependencies, transitively. */
char *fr_checkpoints_waiting_reason(const fr_checkpoints *c, size_t task);

/* Closes the prompt; an answer after this is ignored. */
void fr_checkpoints_stop(fr_checkpoints *c);

void fr_checkpoints_free(fr_checkpoints *c);
