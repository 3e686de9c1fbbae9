#pragma once
/* Placing one ready task: its condition (`when`) evaluated once, when the
 * task would first run; a fan-out recognised; its prompt rendered; the
 * result cache asked (before a first attempt: a hit is how a run resumes
 * after a crash); then the one routing decision (engine/route). Returns
 * what the conductor does; it never acts on the run. Used by engine/run. */
#include "engine/cache.h"
#include "engine/route.h"
#include "engine/task.h"

#include <stdbool.h>
#include <stddef.h>

/* What placing reads, borrowed from the conductor. */
typedef struct fr_place_env {
    fr_task_env *tasks;       /* what the tasks share (wf, router, books, tools, plan) */
    fr_cache_ctx cache;       /* the cache's reading (its tools, clock and shared store set
                                 per task: the books' shared store as it is then) */
    bool no_cache;            /* --no-cache */
    const char *const *fresh; /* --fresh TASK names */
    size_t nfresh;
} fr_place_env;

typedef enum {
    FR_PLACED_ROUTED = 0, /* *d says what follows: dispatch, wait, or end */
    FR_PLACED_CACHED,     /* a stored result answered: the task is done */
    FR_PLACED_FANOUT,     /* a fan-out: the conductor expands it (engine/fanout) */
    FR_PLACED_LOOKUP      /* the shared store is asked: lk->wait says when (engine/cache) */
} fr_placed;

/* A task's lookup in the result cache, the conductor's (one per task). */
typedef struct fr_place_lookup {
    bool asked;            /* the shared store was asked: once per task, then it routes */
    fr_cache_wait *wait;   /* while LOOKUP waits: cancel it when the task ends first */
    fr_cache_done_fn done; /* called with `ud` when the wait is over (hit: the task is done; */
    void *ud;              /* miss: requeue it, and it is routed) */
} fr_place_lookup;

/* Places ready task `idx` (`t`, its attempts). `*cleared` is true once its
 * condition let it run (set here). A condition that fails or is false, and
 * a prompt that cannot be rendered, end it: ROUTED with d->kind END (a false
 * condition marks its result decided). d->reason is the caller's to free.
 * The shared store's cache is asked once per task (`lk`, borrowed, the
 * caller's): that is LOOKUP, with lk->wait set until lk->done is called. */
fr_placed fr_place(const fr_place_env *env, size_t idx, fr_task *t, bool *cleared,
                   fr_place_lookup *lk, fr_route_decision *d);
