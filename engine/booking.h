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
 * On SQLite the log's checkpoints run off the loop (engine/walckpt), told
 * of each commit the books make (fr_walckpt_committed).
 * A failed write is logged once and remembered: the
 * run then stops admitting work (a run never goes on without durability).
 * At the run's end they take its report (fr_booking_store_report).
 * The books register the run's process as an owner of the store at open
 * and remove it at the end; a shared endpoint's attempt holds one of its
 * slots across processes (fr_booking_reserve_slot; the books count the
 * slots the process holds, the store the other processes'), and one refused
 * waits in the books' queue of the endpoint until a slot is free.
 * The books may instead be on a team's shared PostgreSQL store (a --state
 * URL, fr_booking_state_url): the same contracts, every write asynchronous
 * (engine/booking_int.h says how), a request released once its
 * reservation's commit came back.
 * Owned by engine/run; it reaches the store (engine/store/store.h) by name, the
 * budget reaches it through the callbacks of fr_booking_ledger. */

#include "dsl/workflow.h"
#include "engine/budget.h"
#include "engine/history.h"
#include "engine/results.h"
#include "engine/store/pgstore.h"
#include "engine/store/store.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
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
/* The PostgreSQL store a run's books go to (borrowed from `state_dir` or
 * the environment): `state_dir`, else $FLOWRUN_STATE, when it is a
 * postgresql:// or postgres:// URL (fr_pgurl_is_url); NULL when the books
 * are on SQLite (a folder) and always for a rehearsal (`sim`: its sim.db
 * stays local, in .flowrun/ when the state is a URL, as
 * fr_booking_state_path says). */
const char *fr_booking_state_url(const char *state_dir, bool sim);

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
/* Opens a run's books: on the PostgreSQL store of fr_booking_state_url
 * (connected, its schema applied and this process registered as an owner
 * before it returns, on a private loop of the books run to completion; an
 * unreachable database is FR_ESTORE naming the URL with its password
 * masked), else fr_booking_open on the state store of `state_dir`
 * (borrowed; sim.db for a rehearsal, `sim`), then, when `budget`
 * (borrowed) has a monthly or a daily cap, gives it the books' ledger. On
 * FR_OK *out is owned (fr_booking_free). */
int fr_booking_open_run(const char *state_dir, bool sim, const char *run_id, fr_budget *budget,
                        fr_booking **out, fr_error *err);
/* Batches the books' writes per turn of `loop` (borrowed; it must run
 * until its handles are closed, as a run's does): the first write of a
 * turn starts a prepare handle of the books, which commits the turn's
 * writes before the loop blocks again and then closes itself, so it never
 * outlives the loop's work. A failed commit counts as a failed write. */
void fr_booking_attach(fr_booking *b, uv_loop_t *loop);
/* Books on PostgreSQL are driven from `loop` instead: its writes of a turn
 * go out as one transaction before the loop blocks, completions come on
 * later turns; the loop is referenced while an operation of the books is
 * unanswered. Until fr_booking_detach, which the run calls when it closes
 * its handles: what is still due then completes at fr_booking_end. Nothing
 * to do for books on SQLite or NULL books. */
void fr_booking_detach(fr_booking *b);
/* True while books on PostgreSQL wait for the store on the run's behalf (a
 * reservation, a settle, a lease asked and unanswered): the run is not
 * stalled. False for NULL books and books on SQLite. */
bool fr_booking_busy(const fr_booking *b);
/* Sets the hook (`fn`, `ud` borrowed while the books live) the books call
 * when an answer the run may wait for came: a lease of a period's cap on
 * PostgreSQL (the run pumps again). NULL books: nothing. */
void fr_booking_on_wake(fr_booking *b, void (*fn)(void *ud), void *ud);
/* Fills `out` with the report's store block of books on PostgreSQL
 * (reconnects, time down, capacity waits, lock retries); kind NULL for
 * books on SQLite and NULL books. */
void fr_booking_store_info(const fr_booking *b, fr_store_info *out);
/* Commits the writes of the current turn now (fr_store_flush); a failure
 * is a failed write. For a point that must see them durable before the
 * turn ends. */
void fr_booking_flush(fr_booking *b);
/* Closes the books (their pending writes committed first); NULL is fine. */
void fr_booking_free(fr_booking *b);

/* The run's routing history (borrowed, owned by the books): made for the
 * endpoints of `wf` (borrowed) and loaded from the store's summary (one
 * query) at the first call; on the shared PostgreSQL store that query is
 * synchronous (fr_history_load_from), so the first call belongs to the
 * run's setup, before its loop runs. Each attempt the books settle from
 * then on updates it. A store that cannot be read gives an empty one (a warning).
 * NULL for NULL books. */
fr_history *fr_booking_history(fr_booking *b, const fr_workflow *wf);
/* The store (borrowed), for the result cache; NULL when the books are on
 * PostgreSQL (fr_booking_pgstore). */
fr_store *fr_booking_store(const fr_booking *b);
/* The shared PostgreSQL store the books are on (borrowed), for the result
 * cache and approvals; NULL for NULL books and books on SQLite. */
fr_pgstore *fr_booking_pgstore(const fr_booking *b);
/* The month the run books into, "YYYY-MM" (borrowed). */
const char *fr_booking_month(const fr_booking *b);
/* The callbacks through which a budget takes its shares of the monthly and
 * the daily cap. */
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
    /* Set with go(ud, false) when the request was refused as over a cap,
     * not for a failed write: a shared cap had too little left for it;
     * which: FR_OVER_MONTH, FR_OVER_DAY or both. */
    int over_cap;
    /* A slot of a shared endpoint (fr_booking_reserve_slot): */
    bool queued;      /* waiting for a slot other processes hold (parked too) */
    double waited_ms; /* how long it waited for one before it got it, 0 for not at all */
    /* the books' while it is queued: */
    fr_attempt_rec rec; /* its strings the caller's, alive while it is parked */
    long long *row;
    int max;
    uint64_t since;    /* uv_now when it was queued */
    double since_unix; /* the store's clock then (unix seconds): other processes compare it */
};

/* Books attempt `a` (borrowed) in flight at its worst case (a->cost_usd)
 * and sets *row; false (logged) when it cannot be written: then it must not
 * be sent. With `w` NULL the reservation commits now (one transaction); on
 * a shared PostgreSQL store it is sent and *row stays 0 until it is durable:
 * the caller asks again later with the same attempt, and may send once *row
 * is set.
 * With `w` (its go and ud set by the caller) on books attached to a loop it
 * joins the turn's batch and `w` is parked: its request waits for
 * w->go, which the books call right after the turn's commit (one commit
 * for every reservation of the turn, in the turn it was made: the commit
 * runs before the loop blocks again), never before it. Unattached, it
 * commits now and `w` is not parked: the request may be sent at once. */
bool fr_booking_reserve(fr_booking *b, const fr_attempt_rec *a, long long *row, fr_booking_wait *w);
/* Books attempt `a` (borrowed) in flight as a slot of its shared endpoint
 * (max_parallel `max` held across every process sharing the store), with
 * `w` (its go and ud set by the caller). When fewer than `max`
 * of the endpoint's slots are held now, it reserves as fr_booking_reserve
 * does (parked until the turn's commit) a priced attempt (a->cost_usd > 0),
 * and a $0 one without parking `w` (it may go now: no other process counts
 * slots before that commit, under the write lock the batch holds; a crash
 * before it loses no charge): the slots this process holds are
 * the books' count per endpoint and model (one endpoint name serving two
 * models is two servers' slots), up at a slot's reservation and down at
 * its settle (fr_booking_settle, booked or failed), and the store adds the
 * other processes' (fr_store_reserve_slot). Otherwise `w` waits, queued
 * (w->queued, parked), in the endpoint's queue of the books, in order; the
 * books try the queue's head again on a timer (every 20-50 ms) and at once
 * when this process settles an attempt of the endpoint, and once it holds a
 * slot it is released as a reservation is (go after the commit that holds
 * it; *row set then: `row` must stay alive while `w` is parked, like `a`'s
 * strings); w->waited_ms then says how long it waited. While the books hold
 * or wait for a slot, a timer of theirs pushes this process's owner lease
 * on (fr_store_owner_beat) every FR_STORE_OWNER_BEAT_MS; it is closed when
 * they hold none and none waits. Unattached books, or books that failed,
 * reserve as fr_booking_reserve. With `w` NULL (a tool loop's later turn)
 * nothing waits: the slot is reserved and committed now, or *row is 0 when
 * every slot is held (the caller asks again later). False (logged) when it
 * cannot be written, and with `w` NULL after any failed write (the run
 * stops; the books' count may then miss a settle its batch lost). */
bool fr_booking_reserve_slot(fr_booking *b, const fr_attempt_rec *a, int max, long long *row,
                             fr_booking_wait *w);
/* The caps a request was refused over (fr_booking_wait.over_cap). */
#define FR_OVER_MONTH 1
#define FR_OVER_DAY   2

/* Non-zero (once: FR_OVER_*) when the last fr_booking_reserve_slot with `w` NULL that
 * returned false was refused as over a cap rather than for a failed write
 * (a shared PostgreSQL store's fence: docs/team.md). */
int fr_booking_over_cap(fr_booking *b);
/* Takes parked `w` back (its request will not be sent: a cancelled task);
 * go is never called. Its reservation stays booked: the caller settles it
 * (a queued `w` has none: it leaves its queue). Nothing to do when `w` is
 * not parked. */
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
