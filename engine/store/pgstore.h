#pragma once
/* The state store's operations on PostgreSQL, shared by many flowrun
 * processes on many hosts: runs, the attempts ledger with reservations
 * that share an endpoint's capacity across processes, settles, budget
 * leases by month or day, the result cache, approvals and reports. One
 * fr_pgstore is one fr_pgconn (pgconn.h) on the loop for its operations,
 * and one more for its heartbeat (see Owners), loop thread only;
 * every operation is asynchronous: it queues its SQL and returns, and its
 * completion is called once, on a later turn of the loop, never blocking
 * it. The contracts are those of the SQLite store's functions (store.h)
 * named at each operation; what differs is said there.
 *
 * Writes of a turn (run begin and end, reservations, settles, cache and
 * approval puts, report puts) are queued and go out as ONE pipelined
 * transaction at fr_pgstore_flush (the books flush once per turn); each
 * completion is called when that transaction's COMMIT is back (durable) or
 * with its error. A batch refused by the server (a constraint, say) fails
 * the faulty write only: the others are sent again as one batch.
 * Other operations (leases, release, decide, the reads) are sent at once,
 * each its own transaction.
 *
 * Faults. Every write is idempotent (leases: safe, see fr_pgstore_lease),
 * so a transaction in flight when the connection broke (FR_EOUTCOME: committed or not, nobody
 * knows) is sent again once the connection is back, and a deadlock (SQLSTATE 40P01) or a
 * serialization failure (40001) is retried a few times. Each transaction
 * runs with SET LOCAL lock_timeout and statement_timeout, so a row lock held
 * by another session ends as FR_ETIMEDOUT instead of waiting for ever (the
 * loop never waits in any case: a wait only delays this connection's later
 * results). The state callback says when the database is unreachable, so
 * that the caller stops admitting paid work while admitted work finishes.
 *
 * Owners. At open the process registers as an owner (a client-made id,
 * user, host, pid) whose `expires`, on the server's clock, a heartbeat
 * pushes on. An owner whose `expires` has passed is dead: its pending
 * attempts stop holding its endpoints' slots and its open leases stop
 * counting (beyond what their attempts were charged), whoever looks next.
 * The heartbeat has a connection of its own, one statement at a time: on
 * the operations' connection it would wait behind every transaction sent
 * before it, and one waiting on another session's row lock (up to its lock
 * and statement timeouts, with more behind it) could make it later than
 * the lease, so that others found a live owner dead and reclaimed its
 * slots and leases while it still spent them. A heartbeat that comes back
 * after the owner was found dead makes it live again; what others
 * reclaimed meanwhile stays reclaimed. An owner ended at close stays ended:
 * a heartbeat still in flight then, run by the server after the end,
 * leaves it so. */

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <uv.h>

#include "engine/store/store.h"
#include "engine/util/err.h"
#include "providers/provider.h"

/* The defaults of fr_pgstore_opts. */
#define FR_PGSTORE_HEARTBEAT_MS     1000
#define FR_PGSTORE_LEASE_MS         5000
#define FR_PGSTORE_LOCK_TIMEOUT_MS  2000
#define FR_PGSTORE_STMT_TIMEOUT_MS  4000
#define FR_PGSTORE_WAKE_FALLBACK_MS 5000
/* How many times a transaction is sent again after a deadlock or a
 * serialization failure before its error is the caller's. */
#define FR_PGSTORE_MAX_RETRIES 5
/* How many times a transaction in flight when the connection broke is sent
 * again (each time the connection is back) before FR_EOUTCOME is the
 * caller's: a transaction that itself breaks the connection ends. */
#define FR_PGSTORE_MAX_RESENDS 16

typedef struct fr_pgstore fr_pgstore;

/* What the state callback reports. */
typedef enum {
    FR_PGSTORE_UP,   /* reachable again after FR_PGSTORE_DOWN (not called at open) */
    FR_PGSTORE_DOWN, /* unreachable: transactions wait, or fail when closed */
} fr_pgstore_state;

/* Called with a state change; `err` (borrowed for the call) says why for
 * DOWN (the URL masked), NULL for UP. */
typedef void (*fr_pgstore_state_fn)(void *ud, fr_pgstore_state st, const fr_error *err);

/* Called when a slot of `endpoint` (borrowed for the call), one that
 * fr_pgstore_wait asked for, may have freed: a notification of a settle,
 * the fallback timer, or the connection back after a loss. A hint: the
 * caller reserves again, which may still be refused. */
typedef void (*fr_pgstore_wake_fn)(void *ud, const char *endpoint);

/* A completion: `rc` FR_OK or the error, `err` (borrowed for the call)
 * saying why when rc is not FR_OK, NULL otherwise. */
typedef void (*fr_pgstore_done_fn)(void *ud, int rc, const fr_error *err);
/* A completion with a number (a month's total, a lease's grant, a period's
 * use), meaningful with FR_OK. */
typedef void (*fr_pgstore_value_fn)(void *ud, int rc, double value, const fr_error *err);
/* A cache lookup's completion: `reply` (taken: fr_reply_close and free it)
 * on a hit, NULL on a miss or an error. */
typedef void (*fr_pgstore_reply_fn)(void *ud, int rc, fr_reply *reply, const fr_error *err);
/* An approval lookup's completion: `a` (borrowed for the call) the row,
 * NULL when there is none or on an error. */
typedef void (*fr_pgstore_approval_fn)(void *ud, int rc, const fr_store_approval *a,
                                       const fr_error *err);
/* A run status's completion: `status` (borrowed for the call) and its cost. */
typedef void (*fr_pgstore_status_fn)(void *ud, int rc, const char *status, double cost_usd,
                                     const fr_error *err);

/* Options of fr_pgstore_open; zeroes take the defaults. Callbacks may be
 * NULL; they and `ud` are borrowed until the store is closed. */
typedef struct fr_pgstore_opts {
    int heartbeat_ms;        /* how often the owner's expires is pushed on */
    int lease_ms;            /* how far: expires = server now() + lease_ms */
    int lock_timeout_ms;     /* SET LOCAL lock_timeout of every transaction but heartbeats */
    int stmt_timeout_ms;     /* SET LOCAL statement_timeout of the same */
    int wake_fallback_ms;    /* the wake callback at least this often while waiting */
    const char *user, *host; /* the owner's (borrowed, copied); NULL: fr_store_identity's */
    fr_pgstore_state_fn on_state;
    fr_pgstore_wake_fn on_wake;
    void *ud;
} fr_pgstore_opts;

/* Opens the store at `url` (borrowed, a copy kept for the heartbeat's
 * connection and wiped at the end; see fr_pgconn_open for its forms) on
 * `loop`: connects, applies the schema (fr_pg_schema_apply), registers
 * this process as an owner and starts the heartbeat. On FR_OK *out is set
 * (owned: fr_pgstore_close it, also after a failed open) and `done` will
 * be called once: FR_OK when the store is usable, else FR_ECONNECT
 * (unreachable: err names the URL masked, never its password),
 * FR_ESTOREVER, FR_ESTORE, FR_ECANCELED (closed first). Operations may be
 * queued before `done`: they go out after the owner's row (or fail with
 * the open's error); after a failed open they are refused with it.
 * Returns FR_OK, or without calling `done` and with nothing to close (the
 * loop must still run once for the handles made): FR_EINVAL (a NULL
 * argument), FR_ECONFIG (a URL that does not parse; err says why, masked). */
int fr_pgstore_open(uv_loop_t *loop, const char *url, const fr_pgstore_opts *opts,
                    fr_pgstore_done_fn done, void *ud, fr_pgstore **out, fr_error *err);

/* Closes `s` (taken; NULL is fine): stops the heartbeat (closing its
 * connection) and the wake timer, flushes the writes queued, ends the owner
 * (expires = now(): its slots and leases free at once; no heartbeat undoes
 * it) when the connection is up, then closes the connection; completions
 * still due are called (FR_ECANCELED for what was not sent, FR_EOUTCOME
 * for what was in flight) before the memory goes. The loop must run on
 * until its handles are closed. */
void fr_pgstore_close(fr_pgstore *s);

/* The owner id this process registered as (borrowed from `s`). */
const char *fr_pgstore_owner(const fr_pgstore *s);

/* Stops the heartbeat (for tests: the owner dies once its expires passes,
 * as when the process is stuck or partitioned). */
void fr_pgstore_stop_heartbeat(fr_pgstore *s);

/* Sets the clock attempts and leases are timed by (`now` unix seconds, 0:
 * the real clock), as fr_store_set_clock. Owners' expiry is always the
 * server's clock. */
void fr_pgstore_set_clock(fr_pgstore *s, time_t now);

/* Sends the writes queued since the last flush as one transaction; nothing
 * queued is fine. Call once per loop turn (from a uv_prepare). */
void fr_pgstore_flush(fr_pgstore *s);

/* Writes queued and not yet flushed, and transactions sent and not yet
 * answered (borrowed `s`), for tests and the books. */
size_t fr_pgstore_queued(const fr_pgstore *s);
size_t fr_pgstore_in_flight(const fr_pgstore *s);

/* What a store has done since it was opened, for tests and benchmarks. */
typedef struct fr_pgstore_stats {
    long flushes;    /* batches sent */
    long retries;    /* transactions sent again (a lost connection, a deadlock) */
    long heartbeats; /* heartbeats committed */
    long notifies;   /* notifications received */
} fr_pgstore_stats;

/* Fills `out` with the counters of `s` (both borrowed). */
void fr_pgstore_stats_get(const fr_pgstore *s, fr_pgstore_stats *out);

/* ---- batched writes: each queued until fr_pgstore_flush -------------------
 * Each returns FR_OK (then its completion will be called), or, without
 * calling it: FR_EINVAL for a missing or invalid argument (as store.h's
 * checks), FR_ECANCELED when `s` is closing. All arguments borrowed
 * (copied); completions and `ud` borrowed until called. */

/* fr_store_run_begin: run `run_id` of `workflow` (wf_path may be NULL),
 * status "running", owned by this process; in the same transaction, runs
 * still "running" whose owner is dead or gone become "crashed" with their
 * spend. FR_EINVAL (at completion) for a run id already recorded.
 * Idempotent: INSERT ... ON CONFLICT DO NOTHING, and a repeat after a lost
 * connection that finds the run ours counts as done. */
int fr_pgstore_run_begin(fr_pgstore *s, const char *run_id, const char *workflow,
                         const char *wf_path, fr_pgstore_done_fn done, void *ud);

/* fr_store_run_end: FR_EINVAL (at completion) for an unknown run.
 * Idempotent: an UPDATE to the same values. */
int fr_pgstore_run_end(fr_pgstore *s, const char *run_id, const char *status, int exit_code,
                       double cost_usd, fr_pgstore_done_fn done, void *ud);

/* fr_store_reserve: books `a` as in flight ("pending" at a->cost_usd, its
 * worst case; a->outcome not read) in the store clock's month and day, held
 * by this owner. With `max_parallel` > 0 the endpoint's row is locked
 * (endpoints, created on demand; SELECT ... FOR UPDATE) and the attempt is
 * booked only while fewer than max_parallel attempts of a->endpoint are
 * pending among live owners (view in_flight), across every process, and
 * no other live owner that waits for a slot (fr_pgstore_slot_waiting)
 * holds fewer, or as many and has waited longer.
 * Completion: FR_OK reserved (durable), FR_ELIMIT refused for capacity
 * (nothing booked: reserve again later, on the wake callback), FR_EINVAL
 * for a run not begun, FR_ETIMEDOUT when the endpoint's row stayed locked
 * past the lock timeout, or another error. Idempotent: INSERT ... ON
 * CONFLICT (run_id, task, attempt, turn) DO NOTHING, and the completion says
 * reserved whenever the key is booked, so a repeat books once and never
 * undoes a later settle. */
int fr_pgstore_reserve(fr_pgstore *s, const fr_attempt_rec *a, int max_parallel,
                       fr_pgstore_done_fn done, void *ud);

/* The periods whose caps fence a reservation (fr_pgstore_reserve_fenced). */
#define FR_PGSTORE_FENCE_MONTH 1
#define FR_PGSTORE_FENCE_DAY   2

/* fr_pgstore_reserve, fenced by the run's shares of the caps of the
 * periods in `fence` (FR_PGSTORE_FENCE_MONTH | _DAY, 0 for none): the
 * attempt is booked only while this owner holds an open lease of each
 * (fr_pgstore_lease) covering what the run spent in it plus a->cost_usd,
 * checked under the periods' row locks, so a share another process
 * reclaimed while this one looked dead is never spent again; else
 * FR_EBUDGET at completion and nothing is booked (lease again, then book).
 * A repeat of a key already booked stays booked. */
int fr_pgstore_reserve_fenced(fr_pgstore *s, const fr_attempt_rec *a, int max_parallel, int fence,
                              fr_pgstore_done_fn done, void *ud);

/* fr_store_settle of the attempt keyed (a->run_id, a->task, a->attempt): its
 * usage, cost, outcome (not "pending"), error and latency; it keeps its
 * month and day. When its endpoint has a row (it is capped) a freed slot
 * is notified. With `want_total` the completion's value is the cost of
 * every settled attempt of its month (in flight left out), read after the
 * settle inside its transaction: the period's row lock serialises it with
 * every other settle of the month, so an alert crosses once. FR_EINVAL (at
 * completion) for an attempt not in flight. Idempotent: UPDATE ... WHERE
 * outcome = 'pending'; a repeat after a lost connection that finds it
 * settled counts as done, and it never books twice. */
int fr_pgstore_settle(fr_pgstore *s, const fr_attempt_rec *a, bool want_total,
                      fr_pgstore_value_fn done, void *ud);

/* fr_store_cache_put: replaces the entry. Idempotent (an upsert). */
int fr_pgstore_cache_put(fr_pgstore *s, const char *key, const char *endpoint, const fr_reply *r,
                         fr_pgstore_done_fn done, void *ud);

/* fr_store_approval_put: replaces the row. Idempotent (an upsert). */
int fr_pgstore_approval_put(fr_pgstore *s, const fr_store_approval *a, fr_pgstore_done_fn done,
                            void *ud);

/* fr_store_report_put: FR_EINVAL (at completion) for a run not begun.
 * Idempotent (an upsert). */
int fr_pgstore_report_put(fr_pgstore *s, const char *run_id, const char *json, const char *summary,
                          fr_pgstore_done_fn done, void *ud);

/* ---- operations sent at once, each its own transaction -------------------- */

/* fr_store_lease for `period`, a month "YYYY-MM" or a day "YYYY-MM-DD": the
 * period's totals row is locked (FOR UPDATE) first, so leasers on every
 * host are served one after the other; open leases of dead owners are
 * reclaimed (closed, keeping what their attempts were charged; their runs
 * crashed); then granted = min(want, cap - spent - outstanding), never
 * negative, is added to the run's open lease of the period (a new lease,
 * as after one reclaimed, starts at what the run already spent in the
 * period, so that it covers the grant and no more). The value is the grant. FR_EINVAL (at
 * completion) for a run not begun, or a run whose lease is held by another live owner. Safe to
 * repeat though not idempotent: sent again after a lost connection it may grant a second time, but
 * every grant is taken under the lock from what the cap has left, so the cap still holds; the run's
 * lease may then hold more than the completion said, which its release frees. */
int fr_pgstore_lease(fr_pgstore *s, const char *period, double cap, double want, const char *run_id,
                     fr_pgstore_value_fn done, void *ud);

/* fr_store_release: closes this owner's open leases of `run_id`.
 * Idempotent. */
int fr_pgstore_release(fr_pgstore *s, const char *run_id, fr_pgstore_done_fn done, void *ud);

/* fr_store_month_used for `period` (a month or a day): its charges (in
 * flight at their worst case) plus the unspent part of other live owners'
 * open leases. */
int fr_pgstore_period_used(fr_pgstore *s, const char *period, fr_pgstore_value_fn done, void *ud);

/* The figures of `period` (borrowed) as the last lease of it read them,
 * without a query (a refusal quotes them): *spent as fr_store_month_spent,
 * *used as fr_store_month_used. FR_OK, FR_ENOENT when no lease of it has
 * come back yet, FR_EINVAL for a NULL argument. */
int fr_pgstore_period_figures(const fr_pgstore *s, const char *period, double *spent, double *used);

/* fr_store_cache_get: a damaged entry (text or model not valid UTF-8, JSON
 * that does not parse, a negative count) is a miss. */
int fr_pgstore_cache_get(fr_pgstore *s, const char *key, fr_pgstore_reply_fn done, void *ud);

/* fr_store_approval_get. */
int fr_pgstore_approval_get(fr_pgstore *s, const char *workflow, const char *task,
                            fr_pgstore_approval_fn done, void *ud);

/* fr_store_approval_decide: FR_ENOENT (at completion) without a row.
 * Idempotent (an UPDATE to the same values, timed when sent). */
int fr_pgstore_approval_decide(fr_pgstore *s, const char *workflow, const char *task,
                               const char *state, const char *by, const char *note,
                               fr_pgstore_done_fn done, void *ud);

/* fr_store_run_status: FR_ENOENT (at completion) for an unknown run. */
int fr_pgstore_run_status(fr_pgstore *s, const char *run_id, fr_pgstore_status_fn done, void *ud);

/* Asks for the wake callback of `endpoint` (borrowed, copied): LISTEN on
 * its channel (again after each reconnection), and the fallback timer.
 * Asking twice is once. FR_EINVAL, FR_ECANCELED as the writes. */
int fr_pgstore_wait(fr_pgstore *s, const char *endpoint);

/* Tells the other processes since when this owner's oldest request for a
 * slot of `endpoint` (borrowed) waits, in unix seconds of the store's clock
 * (fr_pgstore_clock), or that none does (0); waits on it as
 * fr_pgstore_wait does. Written at once when it changed (slot_waits, one
 * row per owner and endpoint), again after a reconnection; the owner's
 * rows go at its end. A reservation of a capped endpoint leaves a free
 * slot to a live owner that waits and holds fewer, or as many and waited
 * longer (fr_pgstore_reserve). FR_EINVAL, FR_ECANCELED as the writes. */
int fr_pgstore_slot_waiting(fr_pgstore *s, const char *endpoint, double since);

/* The store's clock (fr_pgstore_set_clock), or the real one: unix seconds. */
double fr_pgstore_clock(const fr_pgstore *s);
