#pragma once
/* Human approval (approve = true): decides what follows a succeeded
 * approval task's output, from, in order, the command line (--approve TASK,
 * --approve-all), a decision recorded in the state store for that very
 * output (its hash), else the terminal (the caller asks, engine/prompt),
 * else a pending row in the store. Returns decisions and records them; it
 * never calls into the run. Used by engine/run (a run's checkpoints) and
 * engine/main.c (`flowrun approve` / `flowrun reject`); talks to
 * engine/store. */
#include "dsl/workflow.h"
#include "engine/store/pgstore.h"
#include "engine/store/store.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef enum {
    FR_APPROVAL_NONE = 0, /* not an approval task, or not decided yet: ask */
    FR_APPROVAL_PENDING,  /* recorded in the store, waiting for a decision */
    FR_APPROVAL_APPROVED,
    FR_APPROVAL_REJECTED
} fr_approval_state;

/* A task's checkpoint as the report shows it. Strings owned. */
typedef struct fr_approval {
    fr_approval_state state;
    char *by;   /* who decided (a user name), NULL while pending */
    char *at;   /* when it was decided, or asked while pending: ISO-8601 UTC */
    char *note; /* the decider's note, NULL for none */
} fr_approval;

/* Returns a static name: "pending", "approved", "rejected", NULL for none. */
const char *fr_approval_state_name(fr_approval_state st);

/* Frees the strings of `a` and zeroes it; NULL is fine. */
void fr_approval_clear(fr_approval *a);

/* Writes the user's name into `out` (`size` bytes): getpwuid's, else
 * $USER, else "unknown". Returns `out`. */
char *fr_approval_user(char *out, size_t size);

typedef struct fr_approvals fr_approvals;

typedef struct fr_approvals_opts {
    const fr_workflow *wf;      /* borrowed, outlives the set */
    fr_store *store;            /* borrowed, outlives the set */
    const char *run_id;         /* borrowed, outlives the set */
    const char *out_dir;        /* the run's output folder (borrowed, outlives the set) */
    const char *const *approve; /* --approve TASK names (borrowed, outlive the set) */
    size_t napprove;
    bool approve_all; /* --approve-all */
    /* The shared store (borrowed, outlives the set), used instead of
     * `store` when not NULL: rows are read with fr_approvals_decide_shared
     * and written with the turn's batch; each write's completion goes to
     * pg_put_done with pg_put_ud (borrowed until the store is closed). */
    fr_pgstore *pg;
    fr_pgstore_done_fn pg_put_done;
    void *pg_put_ud;
    uv_loop_t *loop;     /* pg's loop, for a read's timeout (NULL: none) */
    int read_timeout_ms; /* 0: FR_APPROVAL_READ_TIMEOUT_MS */
} fr_approvals_opts;

/* How long a checkpoint's row may take to come from the shared store: past
 * it, the checkpoint stays pending in this run (nothing is recorded) and
 * the run goes on; a slow or down database never holds it. */
#define FR_APPROVAL_READ_TIMEOUT_MS 3000

/* Returns a new set of checkpoints for one run (owned; fr_approvals_free).
 * `o` is borrowed and copied. */
fr_approvals *fr_approvals_new(const fr_approvals_opts *o);

/* Frees the set; NULL is fine. */
void fr_approvals_free(fr_approvals *a);

/* Decides about approval task `task`, whose accepted `reply` (borrowed) was
 * just written to the run's output folder. Fills `out` (owned by the
 * caller: fr_approval_clear): APPROVED or REJECTED (from the command line,
 * recorded in the store for this output; or found in the store for this
 * output's hash), PENDING (no decision and `can_ask` false: a pending row
 * was recorded), or NONE (no decision and `can_ask`: ask at the terminal
 * and give the answer to fr_approvals_answer). A store that cannot be
 * written is FR_ESTORE in `err`, with `out` PENDING. */
int fr_approvals_decide(fr_approvals *a, size_t task, const fr_reply *reply, bool can_ask,
                        fr_approval *out, fr_error *err);

/* Called when a decision on the shared store is made (`out` filled as
 * fr_approvals_decide's): `rc` FR_OK or the store's error (`err`, borrowed
 * for the call; `out` PENDING then). */
typedef void (*fr_approvals_done_fn)(void *ud, size_t task, int rc, const fr_error *err);

/* fr_approvals_decide on the shared store (o.pg): decided in advance
 * (--approve, --approve-all: the row is queued), *waiting is false and
 * `out` filled now; otherwise the store's row is read asynchronously,
 * *waiting is true, and `done(ud, ...)` is called once on a later turn with
 * `out` (borrowed, alive until then) filled; with o.loop, after
 * o.read_timeout_ms at the latest (FR_ETIMEDOUT: `out` PENDING, nothing
 * recorded). `ud` must outlive the set or the call;
 * fr_approvals_drop_reads (and fr_approvals_free) drop the reads still due
 * (done never called). FR_OK, or the store's refusal in `err` (`out`
 * PENDING, not waiting). */
int fr_approvals_decide_shared(fr_approvals *a, size_t task, const fr_reply *reply, bool can_ask,
                               fr_approval *out, fr_approvals_done_fn done, void *ud, bool *waiting,
                               fr_error *err);

/* Sets the shared store the set reads and writes from now on and its loop
 * (both borrowed, outlive the set; NULL: back to o.store), as o.pg and
 * o.loop. */
void fr_approvals_share(fr_approvals *a, fr_pgstore *pg, uv_loop_t *loop);

/* Drops the shared store's reads still due (NULL is fine): their `done` is
 * never called, their timers close (the loop must run on until they have);
 * the store's late answers free them. Before the loop ends. */
void fr_approvals_drop_reads(fr_approvals *a);

/* Records the terminal's answer for `task` (decided before with NONE):
 * `state` APPROVED, REJECTED, or PENDING (no answer: a pending row), with
 * `note` (borrowed, may be NULL), by this user. Fills `out` as
 * fr_approvals_decide. */
int fr_approvals_answer(fr_approvals *a, size_t task, fr_approval_state state, const char *note,
                        fr_approval *out, fr_error *err);

/* The path (owned) of the file holding task `task`'s whole output, as
 * engine/output writes it. */
char *fr_approvals_output_path(const fr_approvals *a, size_t task, const fr_reply *reply);

/* `flowrun approve|reject`: records `state` (APPROVED or REJECTED) with
 * `note` (borrowed, may be NULL) by this user on the checkpoint of `task`
 * of workflow `workflow` (borrowed) in `st`. FR_ENOENT when no approval of
 * that task was ever asked (err says how to get one), FR_ESTORE. */
int fr_approval_record(fr_store *st, const char *workflow, const char *task,
                       fr_approval_state state, const char *note, fr_error *err);
