#pragma once
/* The read side of the PostgreSQL state store, for the commands that run no
 * loop (flowrun spend, runs, report, stats and stats --routing, graph --run,
 * a plan's observed figures, approve and reject, whose decision is its one
 * write) and for a run's start: one
 * synchronous libpq connection. Its readers build the same documents as the
 * SQLite store's (engine/store/spend.c, runs_read.c, history_table.c share
 * their builders with it: only the query differs), and fr_store_open_readonly
 * opens one for a "postgresql://" state, so a command reads either store
 * through store.h. Never used on a run's loop, except once at the run's
 * start to load the routing history (fr_history_load_from), which blocks
 * for one connection and one query. */

#include "engine/store/store.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_pgread fr_pgread;

/* How long a connection may take before it fails, in seconds (libpq's
 * connect_timeout; the URL's own wins). */
#define FR_PGREAD_CONNECT_S 10

/* Connects to the database `url` (borrowed: a libpq URI or key=value
 * string) and checks its flowrun schema; statements time out after 30 s. On FR_OK *out is the owned
 * reader (fr_pgread_close). Every error has the URL with its password masked (fr_pgurl_mask) as
 * err->source, never the password: FR_EINVAL for a NULL or empty URL, FR_ECONNECT when the server
 * cannot be reached or refuses the login, FR_ENOENT for a database without flowrun's schema yet (no
 * run wrote to it), FR_ESTOREVER for a newer schema, FR_ESTORE for any other failure. Blocks for
 * the connection and one query. */
int fr_pgread_open(const char *url, fr_pgread **out, fr_error *err);

/* Closes the connection and frees `r`; NULL is fine. */
void fr_pgread_close(fr_pgread *r);

/* The masked URL errors name (borrowed from `r`). */
const char *fr_pgread_source(const fr_pgread *r);

/* fr_store_spend (by_day false: month `period`, "YYYY-MM") or
 * fr_store_spend_days (by_day: day "YYYY-MM-DD"), `period` borrowed, NULL
 * for every one: the same document. Costs are summed by the server (the
 * last digits of a sum of many costs may differ from SQLite's, which sums
 * compensated). FR_EINVAL for a malformed period, FR_ESTORE for a database
 * failure. */
int fr_pgread_spend(fr_pgread *r, bool by_day, const char *period, json_t **out, fr_error *err);

/* fr_store_run_tasks: the same document for run `run_id` ("last" or NULL:
 * the newest run of `workflow`), both borrowed. FR_ENOENT for no such run,
 * FR_ESTORE for a database failure. */
int fr_pgread_run_tasks(fr_pgread *r, const char *workflow, const char *run_id, json_t **out,
                        fr_error *err);

/* fr_store_history: calls `each(ud, row)` (row borrowed for the call) per
 * row of the routing history of the `n` endpoints `endpoints` (borrowed;
 * NULL: every endpoint), in the order SQLite's store gives them (the sums
 * by endpoint, task type and band in byte order, then the bins).
 * FR_ESTORE for a database failure. */
int fr_pgread_history(fr_pgread *r, const char *const *endpoints, size_t n,
                      void (*each)(void *ud, const fr_store_history_row *row), void *ud,
                      fr_error *err);

/* fr_store_observed: the same document for `workflow` (borrowed).
 * FR_EINVAL for a NULL argument, FR_ESTORE for a database failure. */
int fr_pgread_observed(fr_pgread *r, const char *workflow, json_t **out, fr_error *err);

/* fr_store_runs: the same document for the runs of `workflow` (borrowed;
 * NULL: every workflow), newest first, at most `limit` (<= 0: all); a run
 * still "running" whose owner's lease expired is "crashed". FR_ESTORE for
 * a database failure. */
int fr_pgread_runs(fr_pgread *r, const char *workflow, long limit, json_t **out, fr_error *err);

/* fr_store_report_get: the run `ref` names ("last", an id or a prefix of
 * one), of `workflow` (may be NULL), both borrowed, into `out` (owned by
 * the caller: fr_store_report_clear). FR_ENOENT, FR_EINVAL and FR_ESTORE
 * as there. */
int fr_pgread_report_get(fr_pgread *r, const char *ref, const char *workflow, fr_store_report *out,
                         fr_error *err);

/* fr_store_run_stats: the same document over the attempts settled at or
 * after `since` (unix seconds; 0: all). FR_ESTORE for a database
 * failure. */
int fr_pgread_run_stats(fr_pgread *r, double since, json_t **out, fr_error *err);

/* fr_store_approval_decide: records `state` ("approved" or "rejected"),
 * `by` and `note` (may be NULL) at `at` (unix seconds) on the row of
 * `workflow` and `task`, all borrowed. FR_ENOENT when the task has no row,
 * FR_ESTORE for a database failure. */
int fr_pgread_approval_decide(fr_pgread *r, const char *workflow, const char *task,
                              const char *state, const char *by, const char *note, double at,
                              fr_error *err);
