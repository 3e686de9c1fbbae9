#pragma once
/* Fan-out at run time: when a `foreach` task is placed (its deps done, its
 * trigger met) it reads the JSON array its source names and adds one
 * instance per item: a task of the workflow (dsl's fr_workflow_add_instance,
 * within the room reserved at load), a node of the graph, a ready task of
 * the scheduler and an entry of the results, so every module that indexes
 * tasks by position sees a real task that is routed, capped, cached,
 * retried and reported on its own. It tells the conductor when the last
 * instance of a fan-out ended and how the fan-out ends, and builds the list
 * a dependent of the fan-out receives. engine/run and engine/task call it. */

#include "dsl/workflow.h"
#include "engine/graph.h"
#include "engine/results.h"
#include "engine/sched.h"

#include <jansson.h>
#include <stdbool.h>

/* What follows a fan-out's placing and its instances' ends (ud is the
 * conductor's), for fr_fanout_place and fr_fanout_instance_ended. */
typedef struct fr_fanout_hooks {
    void *ud;
    /* Fan-out `fanout`'s instances first ... first + n - 1 joined the run. */
    void (*started)(void *ud, size_t fanout, size_t first, size_t n);
    /* Fan-out `fanout` ends in `state`: ok without an output of its own
     * (`note`, borrowed, may be NULL), else as a task that did not succeed. */
    void (*ended)(void *ud, size_t fanout, fr_task_state state, const char *note);
} fr_fanout_hooks;

/* What expanding touches, all borrowed from the conductor. */
typedef struct fr_fanout_env {
    fr_workflow *wf;
    fr_graph *g;
    fr_sched *sched;
    fr_results *res;
    bool plan; /* a plan: no list exists yet; plan_items (else one) instances with a null item */
} fr_fanout_env;

typedef enum {
    FR_FANOUT_STARTED = 0, /* instances were added (ready in the scheduler) */
    FR_FANOUT_EMPTY,       /* the list is empty: the fan-out ends ok with zero instances */
    FR_FANOUT_FAILED       /* it fails: not an array, a missing path, too many items,
                              duplicate names, no room */
} fr_fanout_outcome;

/* The note an empty fan-out ends with. */
#define FR_FANOUT_EMPTY_NOTE "foreach: the list is empty"

/* Expands fan-out task `task` (wf->tasks[task].foreach set), whose source
 * dependency has ended. On STARTED the instances are tasks
 * res->tasks[task].first_instance ... + instances - 1 (in item order), each
 * in the graph, ready in the scheduler and set up in the results; the
 * conductor then gives each its own runtime. On EMPTY and FAILED *reason is
 * owned (the empty note, or what was found); on STARTED it is NULL. */
fr_fanout_outcome fr_fanout_expand(const fr_fanout_env *env, size_t task, char **reason);

/* Task `task` ended. When it is an instance and the last of its fan-out to
 * end, returns true with *parent the fan-out, *state how it ends
 * (FR_TASK_OK when every instance succeeded or was skipped by its own
 * condition, else FR_TASK_FAILED) and *reason (owned; NULL when ok) naming
 * the instances that did not succeed. Otherwise returns false. */
bool fr_fanout_ended(const fr_fanout_env *env, size_t task, size_t *parent, fr_task_state *state,
                     char **reason);

/* Fan-out `task` is placed: expands it and calls h->started, or h->ended
 * at once (an empty list ends ok with its note; a list it cannot use
 * fails with what was found). */
void fr_fanout_place(const fr_fanout_env *env, size_t task, const fr_fanout_hooks *h);

/* Task `task` ended: when it was the last instance of its fan-out to end,
 * calls h->ended for the fan-out (fr_fanout_ended says how). */
void fr_fanout_instance_ended(const fr_fanout_env *env, size_t task, const fr_fanout_hooks *h);

/* What a dependent of fan-out `fanout` reads for it: an array (owned), in
 * item order, of one object per instance {text, json, status, reason, name,
 * index} (text "" and json null unless it succeeded). */
json_t *fr_fanout_list(const fr_workflow *wf, const fr_results *res, const fr_sched *sched,
                       size_t fanout);

/* Adds "item" and "index" of instance `task` to its ctx `ctx` (borrowed);
 * nothing for a task that is no instance. */
void fr_fanout_item_ctx(const fr_workflow *wf, size_t task, json_t *ctx);
