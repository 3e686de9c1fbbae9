#pragma once
/* A run's books in the state store: where the store is (state.db, or
 * sim.db for a rehearsal), the run's row (begun, ended), each attempt
 * booked in flight at its worst case before a byte goes out and settled to
 * what it cost, the month's ledger the budget leases from, and what a plan
 * reads of earlier runs. Once attached to the run's loop, the writes of one
 * loop turn go into one transaction, committed before the loop blocks
 * again (a uv_prepare handle of its own, open only while a write is
 * pending), and a request in flight is committed before it can be sent:
 * the turn's reservations commit together and their requests are released
 * right after that commit (fr_booking_reserve's wait).
 * A failed write is logged once and remembered: the
 * run then stops admitting work (a run never goes on without durability).
 * At the run's end they take its report (fr_booking_store_report).
 * Owned by engine/run; it reaches the store (engine/store/store.h) by name, the
 * budget reaches it through the callbacks of fr_booking_ledger. */

#include "dsl/workflow.h"
#include "engine/budget.h"
#include "engine/history.h"
#include "engine/store/store.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <time.h>
#include <uv.h>

typedef struct fr_booking fr_booking;

/* Returns the path (owned) of the state database for `state_dir` (borrowed,
 * may be NULL or empty: $FLOWRUN_STATE, else .flowrun/ under the current
 * directory, the project directory: wherever the workflow file is, like the
 * outputs, so runs and `flowrun spend` from one folder share one ledger);
 * with `sim`, the rehearsals' sim.db beside it (their pretend costs never
 * count against a monthly cap). */
char *fr_booking_state_path(const char *state_dir, bool sim);

/* Returns a new run id (owned): the UTC time `now` as
 * "YYYY-MM-DDTHH:MM:SSZ" and 32 random bits in hex, so that runs begun in
 * the same second, from one folder or many, get ids of their own. */
char *fr_booking_run_id(time_t now);

/* What earlier runs of workflow `workflow` observed, for a plan (owned
 * JSON, fr_store_observed's shape), read from `path` (borrowed) opened
 * read-only; NULL without a store or when it cannot be read (a warning). */
json_t *fr_booking_observed(const char *path, const char *workflow);

/* Opens the books of run `run_id` (borrowed, copied) in the store at `path`
 * (borrowed; created if missing). On FR_OK *out is owned (fr_booking_free).
 * FR_ESTORE / FR_ESTOREVER as fr_store_open. */
int fr_booking_open(const char *path, const char *run_id, fr_booking **out, fr_error *err);
/* Opens a run's books: fr_booking_open on the state store of `state_dir`
 * (borrowed; sim.db for a rehearsal, `sim`), then, with `has_monthly`,
 * gives `budget` (borrowed) its monthly cap `monthly_usd` on the books'
 * ledger. On FR_OK *out is owned (fr_booking_free). */
int fr_booking_open_run(const char *state_dir, bool sim, const char *run_id, fr_budget *budget,
                        bool has_monthly, double monthly_usd, fr_booking **out, fr_error *err);
/* Batches the books' writes per turn of `loop` (borrowed; it must run
 * until its handles are closed, as a run's does): the first write of a
 * turn starts a prepare handle of the books, which commits the turn's
 * writes before the loop blocks again and then closes itself, so it never
 * outlives the loop's work. A failed commit counts as a failed write. */
void fr_booking_attach(fr_booking *b, uv_loop_t *loop);
/* Commits the writes of the current turn now (fr_store_flush); a failure
 * is a failed write. For a point that must see them durable before the
 * turn ends. */
void fr_booking_flush(fr_booking *b);
/* Closes the books (their pending writes committed first); NULL is fine. */
void fr_booking_free(fr_booking *b);

/* The run's routing history (borrowed, owned by the books): made for the
 * endpoints of `wf` (borrowed) and loaded from the store's summary (one
 * query) at the first call; each attempt the books settle from then on
 * updates it. A store that cannot be read gives an empty one (a warning).
 * NULL for NULL books. */
fr_history *fr_booking_history(fr_booking *b, const fr_workflow *wf);
/* The store (borrowed), for the result cache. */
fr_store *fr_booking_store(const fr_booking *b);
/* The month the run books into, "YYYY-MM" (borrowed). */
const char *fr_booking_month(const fr_booking *b);
/* The callbacks through which `budget` takes its share of the monthly cap. */
fr_budget_ledger fr_booking_ledger(fr_booking *b);

/* True once a write failed. */
bool fr_booking_failed(const fr_booking *b);
/* Records that a write to the store failed (`err`, borrowed): logged the
 * first time only. */
void fr_booking_write_failed(fr_booking *b, const fr_error *err);

/* Records that the run began, for workflow `name` at `path` (borrowed). */
void fr_booking_begin(fr_booking *b, const char *name, const char *path);
/* A request waiting for its reservation to be durable (fr_booking_reserve).
 * The node is the caller's (owned by it, kept alive while `parked`); the
 * books link it in and call `go(ud, durable)` once, right after the commit
 * of the batch that holds its reservation: with `durable` true the request
 * may be sent now; false when that commit (or any write of the run) failed:
 * it must never be sent (the run stops, fr_booking_failed). */
typedef struct fr_booking_wait fr_booking_wait;
struct fr_booking_wait {
    fr_booking_wait *prev, *next; /* the books' */
    void (*go)(void *ud, bool durable);
    void *ud;
    bool parked; /* linked in: go not called yet */
};

/* Books attempt `a` (borrowed) in flight at its worst case (a->cost_usd)
 * and sets *row; false (logged) when it cannot be written: then it must not
 * be sent. With `w` NULL the reservation commits now (one transaction).
 * With `w` (its go and ud set by the caller) on books attached to a loop it
 * joins the turn's batch and `w` is parked: its request waits for
 * w->go, which the books call right after the turn's commit (one commit
 * for every reservation of the turn, in the turn it was made: the commit
 * runs before the loop blocks again), never before it. Unattached, it
 * commits now and `w` is not parked: the request may be sent at once. */
bool fr_booking_reserve(fr_booking *b, const fr_attempt_rec *a, long long *row, fr_booking_wait *w);
/* Takes parked `w` back (its request will not be sent: a cancelled task);
 * go is never called. Its reservation stays booked: the caller settles it.
 * Nothing to do when `w` is not parked. */
void fr_booking_unpark(fr_booking *b, fr_booking_wait *w);
/* Books how attempt `a` (borrowed; its error is redacted here) ended,
 * settling its in-flight `row` (0: a new row). Tells `budget` the month's
 * new total while its monthly alert has not fired, `at_ms` into the run. */
void fr_booking_settle(fr_booking *b, long long row, const fr_attempt_rec *a, fr_budget *budget,
                       double at_ms);
/* Records the run's end (`status`, exit `code`, `spent` USD) and releases
 * its leases, once the loop has ended: the pending writes are committed
 * first and batching ends. FR_OK or the store's error (logged). */
int fr_booking_end(fr_booking *b, const char *status, int code, double spent);
/* Stores the report of the books' run, once it has ended (fr_booking_end):
 * `json` (its compact JSON text) and `summary` (uncoloured), both borrowed,
 * through the books' own connection, in one transaction committed before it
 * returns (the run's store is not opened a second time). FR_OK, or
 * fr_store_report_put's and fr_store_flush's errors in `err` (not logged:
 * the caller says it). */
int fr_booking_store_report(fr_booking *b, const char *json, const char *summary, fr_error *err);
