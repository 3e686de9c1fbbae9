#pragma once
/* A run's routing history in memory: per endpoint of the workflow, task
 * type and complexity band, what its settled attempts showed (counts,
 * passes and fails decayed with a half-life of 30 days, means, median
 * latencies from log-spaced bins), loaded once from the state store's
 * summary (fr_store_history: one query) at the run's start and updated
 * with each attempt the run settles. engine/booking owns it (loads it,
 * tells it each settled attempt); engine/route reads it into the
 * policy's candidate.history and candidate.history_all (dsl/policy's
 * fr_policy_hist); `flowrun stats --routing` reads a store's whole. */

#include "dsl/policy.h"
#include "dsl/workflow.h"
#include "engine/store/store.h"
#include "engine/util/err.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct fr_history fr_history;

/* How many complexity bands there are: [0, 0.2), ..., [0.8, 1.0]. */
#define FR_HISTORY_BANDS 5

/* The band (0 .. FR_HISTORY_BANDS - 1) of `complexity`; 1.0 and above in
 * the last, below 0 in the first, NaN in 0.5's (as none). */
int fr_history_band(double complexity);

/* A new empty history (owned; fr_history_free) for the `n` endpoints named
 * `names` (borrowed, copied; the index of a name is the endpoint's index
 * in fr_history_view), or, with `names` NULL, for every endpoint it is
 * told of (flowrun stats). */
fr_history *fr_history_new(const char *const *names, size_t n);
/* The same for the endpoints of `wf` (borrowed), in its order. */
fr_history *fr_history_for_workflow(const fr_workflow *wf);
void fr_history_free(fr_history *h);

/* Adds the store's summary rows of h's endpoints (every endpoint for a
 * history made without names) to `h`: one query (fr_store_history).
 * FR_OK or the store's error. */
int fr_history_load(fr_history *h, fr_store *st, fr_error *err);

/* Adds the routing history of h's endpoints from the state store `state`
 * (borrowed: a PostgreSQL URL, the shared store, or a SQLite database's
 * path) to `h`, as fr_history_load does from an open store: it opens the
 * store for reading (fr_store_open_readonly), runs its one query and closes
 * it, blocking the caller meanwhile. A run on the shared store calls it once
 * at its start, before its loop runs, never on it. A store without
 * flowrun's schema yet is an empty history (FR_OK); else FR_OK or the
 * store's error (FR_ECONNECT, the URL masked, when the server cannot be
 * reached). */
int fr_history_load_from(fr_history *h, const char *state, fr_error *err);

/* Adds attempt `a` (borrowed), settled at `at` (unix seconds), as the
 * ledger adds it to the store's summary: in flight ("pending") and
 * unknown endpoints are left out. */
void fr_history_add(fr_history *h, const fr_attempt_rec *a, double at);

/* Fills `key` with endpoint `ep`'s record for task type `type` (borrowed,
 * NULL: "-") and the band of `complexity`, and `all` with its record over
 * every type and band, both as of `now` (unix seconds). The strings stay
 * valid while `h` lives. An endpoint out of range gets empty records. */
void fr_history_view(fr_history *h, size_t ep, const char *type, double complexity, double now,
                     fr_policy_hist *key, fr_policy_hist *all);

/* Sets the clock fr_history_now reads: `now` unix seconds, or 0 for the
 * real clock (the default). For tests. */
void fr_history_set_clock(fr_history *h, double now);
/* The time a decision reads `h` at: whole unix seconds (so a record read
 * twice in one second is the same), by its clock. */
double fr_history_now(const fr_history *h);

/* Calls `each(ud, endpoint, rec, all)` for every key of `h` (endpoint by
 * endpoint, keys in the order first seen): its record and its endpoint's
 * over all keys, as of `now` (all borrowed for the call). For flowrun
 * stats --routing. */
void fr_history_each(fr_history *h, double now,
                     void (*each)(void *ud, const char *endpoint, const fr_policy_hist *rec,
                                  const fr_policy_hist *all),
                     void *ud);
