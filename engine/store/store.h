#pragma once
/* The state store: one SQLite database holding runs, attempts (which are the
 * cost ledger), the leases that make a monthly cap hold across processes, and
 * the result cache table. engine/run and engine/main talk to it; it talks
 * to nothing else. Calls are synchronous and short (one small transaction
 * each, or, with batching on, one transaction per loop turn: fr_store_batch). Defined by
 * engine/store/: open.c (open, schema, close), ledger.c (runs, attempts), owners.c (the
 * processes sharing the store and the slots their in-flight attempts hold), lease.c (leases),
 * spend.c (what was spent and observed), cache_table.c (the result cache's rows), reports.c (the
 * stored reports, the list of runs and the statistics across them, for engine/cli/runs_cmd), wal.c
 * (the write-ahead log's checkpoints, made apart from the connection that writes). */

#include "engine/util/err.h"

#include "providers/provider.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* The schema version this build writes and understands. */
#define FR_STORE_SCHEMA_VERSION 15

/* Returns the SQL (static) that takes a database from schema version `from`
 * to `from` + 1 (from 0: an empty database to version 1), or NULL for a
 * version out of range. A released migration never changes: what a flowrun
 * of schema version v wrote is what migrations 0 .. v-1 make, so a test
 * builds an old ledger from them. fr_store_open runs them itself. */
const char *fr_store_migration_sql(int from);

/* Returns part `part` (from 0) of the SQL (static) of the current schema,
 * version FR_STORE_SCHEMA_VERSION, or NULL past its last part: run in
 * order, the parts are what fr_store_open creates a new store from, one set
 * of statements instead of every migration. They make the same database as
 * migrations 0 .. FR_STORE_SCHEMA_VERSION - 1 (a test compares them); meta's
 * schema_version is written apart, as after the migrations. */
const char *fr_store_schema_sql(int part);

/* How long a call waits for another process's write lock, in milliseconds. */
#define FR_STORE_BUSY_MS 5000

/* A database up to this size is checked whole at every open (see
 * fr_store_open); a bigger one has its ledger tables checked. */
#define FR_STORE_CHECK_BYTES (256LL * 1024 * 1024)

/* Who books and from where, as every store labels runs and attempts: the
 * real uid's name (else $USER, else "") into `user` and the host's name
 * (else "") into `host`, of `usize` and `hsize` bytes; FLOWRUN_USER and
 * FLOWRUN_HOST, when set and not empty, replace them (labels, for shared
 * CI accounts; nothing is checked against them). */
void fr_store_identity(char *user, size_t usize, char *host, size_t hsize);

/* Size of a month buffer: "YYYY-MM" and its NUL. */
#define FR_STORE_MONTH_LEN 8
/* Size of a day buffer, "YYYY-MM-DD" and its NUL; it holds a month too. A
 * period of a cap is a month or a day: the leases, the totals and
 * fr_store_month_spent and fr_store_month_used take either. */
#define FR_STORE_DAY_LEN 11

typedef struct fr_store fr_store;

/* One attempt of a task, as booked in the ledger. Every string is borrowed
 * for the call. `run_id`, `task`, `endpoint`, `tier` ("local" or "cloud") and
 * `outcome` ("ok", "quality", "error", "timeout", "cancelled", "budget") are
 * required; `model`, `error` and `type` (the task's type, for `flowrun
 * stats`) may be NULL. `attempt` counts from 1, tokens and costs are >= 0,
 * `estimated` says the usage was estimated rather than reported by the
 * provider; `ttft_ms` (time to first content) is stored only with
 * `has_ttft`; the task's `complexity` (0..1) only with `has_complexity`
 * and the check's `score` of the reply (0..1) only with `has_score`
 * (both for the routing history, engine/history). There is deliberately
 * no field for a prompt, a reply or a key: none of them is ever stored
 * here. */
typedef struct fr_attempt_rec {
    const char *run_id, *task, *endpoint, *tier, *model, *outcome, *error, *type;
    int attempt;
    int turn; /* the request's turn in its attempt's tool loop, 0 for the first (a key
                 on the shared store; SQLite's rows have ids of their own) */
    long input, output, cached;
    bool estimated, has_ttft, has_complexity, has_score;
    double cost_usd, latency_ms, ttft_ms, complexity, score;
} fr_attempt_rec;

/* Opens the database at `path` (borrowed, copied), creating it and any missing
 * directory of its path (mode 0700: the cache will hold replies). Sets WAL
 * mode, synchronous=NORMAL, foreign keys and a busy timeout of
 * FR_STORE_BUSY_MS, then creates or migrates the schema in one transaction
 * (a new database is created as the current schema, fr_store_schema_sql; an
 * older one runs the migrations it lacks). On FR_OK *out is the owned store (fr_store_close).
 *
 * Errors, each with `path` as err->source: FR_EINVAL for a NULL or empty path;
 * FR_ESTOREVER when the database was written by a newer flowrun (err says both
 * versions and to upgrade); FR_ESTORE for a directory that cannot be created,
 * a file that cannot be opened for writing (read-only file or directory, disk
 * full), a file that is not a SQLite database or a SQLite database that is not
 * flowrun's, a database whose pages are damaged (PRAGMA quick_check, of the
 * whole file up to FR_STORE_CHECK_BYTES, else of the ledger's tables), a
 * database that is missing or empty while its marker "<path>.id" says a
 * store existed (the marker is written when the schema is created; err says
 * how to start a new ledger on purpose), and any other SQLite failure (err
 * carries sqlite3_errmsg).
 *
 * A store belongs to the process that opened it: after fork(), the child opens
 * its own; a parent's store used in a child fails with FR_ESTORE.
 *
 * A `path` that is a PostgreSQL URL (fr_pgurl_is_url) opens the shared
 * store for the commands instead (engine/store/pgread: one synchronous
 * connection, never for a run's loop): fr_store_spend, fr_store_spend_days,
 * fr_store_observed, fr_store_run_tasks, fr_store_history, fr_store_runs,
 * fr_store_report_get, fr_store_run_stats (the same documents as from
 * SQLite) and fr_store_approval_decide (a write) ask the database; every
 * other call fails with FR_ESTORE. Its errors name the URL with the password masked:
 * FR_ECONNECT when the server cannot be reached, FR_ENOENT for a database
 * without flowrun's schema, FR_ESTOREVER for a newer one. */
int fr_store_open(const char *path, fr_store **out, fr_error *err);

/* Opens the existing database at `path` (borrowed, copied) for reading only,
 * for reports such as `flowrun spend`: it creates no file or directory,
 * changes no mode and migrates nothing. On FR_OK *out is the owned store
 * (fr_store_close); only the reading calls (fr_store_spend, fr_store_observed) work on it;
 * a write through it fails with FR_ESTORE.
 *
 * Errors, each with `path` as err->source: FR_EINVAL for a NULL or empty
 * path; FR_ENOENT when there is no such file (or one without flowrun's schema yet); FR_ESTOREVER
 * for a newer schema; FR_ESTORE for an older schema (a run migrates it), a file that is not
 * flowrun's database, and any other SQLite failure.
 * A PostgreSQL URL opens the shared store as fr_store_open does. */
int fr_store_open_readonly(const char *path, fr_store **out, fr_error *err);

/* Closes the database and frees the store; NULL is fine. Called in a forked
 * child on its parent's store, it frees only the store's own memory and leaves
 * SQLite alone, which would not be safe there. */
void fr_store_close(fr_store *st);

/* Turns write batching on for `st` (its own loop's; `ud` borrowed): from
 * now on the writes that no other process must see at once (settled and
 * booked attempts, cache entries, a run's end, approvals) join one write
 * transaction, opened by the first of them (BEGIN IMMEDIATE) and committed
 * by fr_store_flush; `on_pending(ud)` is called each time that transaction
 * opens, so that the caller commits it before its loop blocks again.
 * Reading calls on `st` see what the batch holds. The calls that another
 * process must see at once commit the batch first, then run in their own
 * transaction as without batching: fr_store_reserve (a request in flight
 * is durable before it can be sent: it commits the batch with it; its
 * batched form, fr_store_reserve_batched, leaves that commit to the
 * turn's flush),
 * fr_store_lease, fr_store_release, fr_store_run_begin, fr_store_month_used.
 * A booking that reads its month's total (fr_store_add_attempt_total,
 * fr_store_settle with a total) reads it inside the batch, which holds the
 * write lock: bookings stay serialised across processes. A process killed
 * before the flush loses the batch's writes, and only those. With
 * `on_pending` NULL batching ends (flush first: a batch still open is
 * committed by the next flush). */
void fr_store_batch(fr_store *st, void (*on_pending)(void *ud), void *ud);

/* Commits the batch's open transaction; nothing to do is FR_OK. FR_ESTORE
 * for a database failure (the batch is rolled back: its writes are lost,
 * and the caller must stop as after any failed write). fr_store_close
 * flushes too. */
int fr_store_flush(fr_store *st, fr_error *err);

/* ---- engine/store/wal.c: checkpoints apart from the writing connection --- */

/* Frames (pages) the write-ahead log may gain past its last checkpoint
 * before the next is due: SQLite's own automatic threshold. */
#define FR_STORE_CKPT_FRAMES 1000
/* Frames past which a writer that outpaces the checkpoints apart
 * checkpoints itself (engine/walckpt): the log's bound, 16 MiB of pages. */
#define FR_STORE_WAL_LIMIT (4 * FR_STORE_CKPT_FRAMES)

/* From now on, st's commits no longer checkpoint the write-ahead log
 * themselves (SQLite would, on the committing thread, once the log holds
 * FR_STORE_CKPT_FRAMES frames: page writes and two fdatasyncs in a commit);
 * they only count its frames (fr_store_wal_frames), and the caller has them
 * checkpointed by a fr_store_ckpt, off its thread. Closing st still
 * checkpoints all and removes the log, as before. Nothing to do for a store
 * on PostgreSQL. */
void fr_store_checkpoint_apart(fr_store *st);

/* Frames in st's write-ahead log after its last commit (0 before the first,
 * and after a commit that started the log again from its beginning). Counted
 * only once fr_store_checkpoint_apart is on: -1 before. */
long fr_store_wal_frames(const fr_store *st);

/* Checkpoints st's log on st's own connection, in the caller's thread
 * (blocking: the page copies and the fdatasyncs happen here), without
 * waiting for anyone: one passive pass, `*log` and `*done` as
 * fr_store_ckpt_run sets them. Called after a commit, with no transaction
 * open, the next commit starts the log again. FR_OK (another connection
 * checkpointing at the moment included: nothing done), or FR_ESTORE.
 * Nothing to do (FR_OK, zeros) for a store on PostgreSQL. */
int fr_store_checkpoint(fr_store *st, long *log, long *done, fr_error *err);

/* A second connection to st's database that only checkpoints its
 * write-ahead log. */
typedef struct fr_store_ckpt fr_store_ckpt;

/* Opens a checkpointer for `st`'s database into `*out` (owned by the caller:
 * fr_store_ckpt_close); `st` is borrowed for the call only. FR_EINVAL for a
 * store on PostgreSQL or one opened read-only, FR_ESTORE when the database
 * cannot be opened again. */
int fr_store_ckpt_open(const fr_store *st, fr_store_ckpt **out, fr_error *err);

/* Copies the log's committed frames into the database without waiting for
 * anyone (SQLite's passive checkpoint: writers go on meanwhile; the log
 * starts again from its beginning at the first commit after a checkpoint
 * that left nothing behind), again while frames committed during the pass
 * remain, up to `passes` passes. Sets `*log` to the frames in the log and
 * `*done` to those checkpointed, as of the last pass. FR_OK, or FR_ESTORE
 * (`err` set) when a pass failed. Safe on any one thread at a time while
 * the store's own connection writes on another: it touches only its own
 * connection. */
int fr_store_ckpt_run(fr_store_ckpt *c, int passes, long *log, long *done, fr_error *err);

/* Closes the checkpointer; NULL is fine. Not while fr_store_ckpt_run runs. */
void fr_store_ckpt_close(fr_store_ckpt *c);

/* What a store has done since it was opened, for tests and benchmarks. */
typedef struct fr_store_stats {
    long commits;   /* transactions committed, single-statement ones included */
    long lost;      /* batches rolled back (a failed write or commit): their writes are gone */
    long prepares;  /* statements prepared (all at open: each is reused) */
    int statements; /* prepared statements alive on the connection now */
} fr_store_stats;

/* Fills `out` with st's counters. */
void fr_store_stats_get(const fr_store *st, fr_store_stats *out);

/* The batches st has rolled back so far (fr_store_stats' `lost`), read
 * without walking the connection's statements: cheap enough to ask before
 * every write that relies on the earlier ones. */
long fr_store_lost(const fr_store *st);

/* Sets the clock every timestamp and month is taken from: `now` in unix
 * seconds, or 0 to go back to the real clock (the default). For tests, which
 * book attempts in chosen months. */
void fr_store_set_clock(fr_store *st, time_t now);

/* Writes the current month ("YYYY-MM", UTC, by the store's clock) into `out`,
 * which holds FR_STORE_MONTH_LEN bytes. Returns `out`. */
char *fr_store_month(const fr_store *st, char out[FR_STORE_MONTH_LEN]);
/* Writes the current day ("YYYY-MM-DD", UTC, by the store's clock) into
 * `out`, which holds FR_STORE_DAY_LEN bytes. Returns `out`. */
char *fr_store_day(const fr_store *st, char out[FR_STORE_DAY_LEN]);
/* Now in unix seconds: `clock` when it is set (not 0: a store's test
 * clock), else the real time. Both stores' clocks read it. */
double fr_store_unix_now(time_t clock);

/* Writes the UTC month of `t` ("YYYY-MM") into `out`; "0000-01" when `t`
 * falls outside the years 1000-9999, which four digits hold. */
void fr_store_month_of(time_t t, char out[FR_STORE_MONTH_LEN]);

/* Writes the UTC day of `t` ("YYYY-MM-DD") into `out`; "0000-01-01" when
 * `t` falls outside the years 1000-9999. */
void fr_store_day_of(time_t t, char out[FR_STORE_DAY_LEN]);

/* Records the start of run `run_id` of `workflow`, loaded from `wf_path`
 * (all borrowed; wf_path may be NULL), status "running", started now, by
 * this process. In the same transaction, every run still "running" whose
 * process is gone is marked "crashed" with its spend: its booked attempts
 * and its requests in flight at their worst case (see fr_store_reserve).
 * FR_EINVAL for a missing argument or a run id already recorded, FR_ESTORE
 * for a database failure. */
int fr_store_run_begin(fr_store *st, const char *run_id, const char *workflow, const char *wf_path,
                       fr_error *err);

/* Records the end of run `run_id` (borrowed): now, `status` (borrowed, e.g.
 * "ok", "failed", "budget", "cancelled"), the process exit code and the run's
 * cost. Does not release the run's lease (fr_store_release does). FR_EINVAL
 * for a missing argument, a negative or non-finite cost, or an unknown run;
 * FR_ESTORE for a database failure. */
int fr_store_run_end(fr_store *st, const char *run_id, const char *status, int exit_code,
                     double cost_usd, fr_error *err);

/* Books attempt `a` (borrowed) at the store's clock, in its UTC month. Its
 * cost counts against the month from now on, inside or outside a lease.
 * FR_EINVAL for a missing or invalid field (see fr_attempt_rec) or a run that
 * was not begun; FR_ESTORE for a database failure. */
int fr_store_add_attempt(fr_store *st, const fr_attempt_rec *a, fr_error *err);

/* Books attempt `a` (borrowed) like fr_store_add_attempt and, in the same
 * transaction (BEGIN IMMEDIATE), sets *month_total to the cost of every
 * attempt booked in the attempt's month, this one included, by every run and
 * process (attempts still in flight left out). Bookings are serialised, so for any amount X at most
 * one booking takes the month across it (its total minus its own cost below X, its total at or
 * above X): that is how a monthly alert fires once for the whole ledger. Errors as
 * fr_store_add_attempt, and FR_EINVAL for a NULL month_total; on an error nothing is booked. */
int fr_store_add_attempt_total(fr_store *st, const fr_attempt_rec *a, double *month_total,
                               fr_error *err);

/* Books attempt `a` (borrowed) as in flight, before its request is sent:
 * outcome "pending" (a->outcome is not read), a->cost_usd its worst case, no
 * usage. Committed when it returns (SQLite WAL, synchronous=NORMAL: it
 * survives the process being killed, not a power cut), it counts against
 * its month and its run's lease like any booked attempt, so a crash can
 * never free money the request may have cost. Sets *id to the attempt's id
 * for fr_store_settle. When the process dies first, the next run or lease to
 * find it gone keeps the worst case as a charge (outcome "cancelled") and
 * marks the run "crashed". One INSERT. Errors as fr_store_add_attempt, and
 * FR_EINVAL for a NULL id. */
int fr_store_reserve(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err);
/* Books attempt `a` in flight as fr_store_reserve does, but inside the
 * batch when batching is on: it is durable only once the fr_store_flush
 * that commits the batch returns FR_OK, and the caller must not send its
 * request before that (engine/booking parks the request until then; a
 * flush that fails loses it with the batch, and its request is never
 * sent). Without batching it commits at once, as fr_store_reserve. One
 * INSERT; errors as fr_store_reserve. */
int fr_store_reserve_batched(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err);

/* ---- engine/store/owners.c: the processes sharing the store, their slots -- */

/* An owner's lease: a process pushes its owner row's expiry to now +
 * FR_STORE_OWNER_LEASE_S every FR_STORE_OWNER_BEAT_MS while it holds or
 * waits for a slot of a shared endpoint; an owner past its expiry is dead
 * and its in-flight attempts hold no slot. */
#define FR_STORE_OWNER_LEASE_S 5
#define FR_STORE_OWNER_BEAT_MS 1000

/* Registers this process as an owner of the store: a row with an id it
 * makes (random), its pid, start time and boot id, user ($USER), host,
 * started and heartbeat now and expires at now + FR_STORE_OWNER_LEASE_S,
 * by the store's clock, committed at once (the batch first); owners
 * expired a day ago are removed in the same transaction. A second call
 * keeps the first owner. FR_ESTORE for a database failure. */
int fr_store_owner_begin(fr_store *st, fr_error *err);

/* Pushes this process's owner's heartbeat to now and its expiry to now +
 * FR_STORE_OWNER_LEASE_S (the store's clock); it joins the batch when
 * batching is on. Nothing to do before fr_store_owner_begin. FR_ESTORE for
 * a database failure. */
int fr_store_owner_beat(fr_store *st, fr_error *err);

/* Removes this process's owner row (its slots are free from the commit
 * on); it joins the batch when batching is on. Nothing to do without one.
 * FR_ESTORE for a database failure. */
int fr_store_owner_end(fr_store *st, fr_error *err);

/* This process's owner id (borrowed from `st`), "" before
 * fr_store_owner_begin. */
const char *fr_store_owner_id(const fr_store *st);

/* Books attempt `a` (borrowed) in flight as fr_store_reserve_batched does,
 * as a slot of its endpoint held by this process's owner, only while the
 * slots of that endpoint held now are fewer than `max` (>= 1): `own` plus
 * the other owners' slots. `own` (>= 0) is the slots of `a`'s endpoint
 * and model this store's owner holds, as its caller counts them (the slots
 * it reserved here and has not settled yet); the store does not count this
 * owner's rows itself. The other owners' slots are their in-flight
 * attempts of a shared endpoint of the same name and model (one endpoint
 * name serving two models is two servers' slots) whose owner lives (not
 * expired by the store's clock; on this host, its process is there). A
 * caller whose count is larger than the table's (its rows cancelled by
 * another process that took it for dead) is refused early, the safe side;
 * one whose count is smaller would let more than `max` be held. The count
 * and the INSERT run under the write lock (the batch's, else a BEGIN
 * IMMEDIATE of its own, committed before it returns), so processes
 * reserving at once are served one after the other. A priced attempt's
 * slot (a's cost_usd, its worst case, > 0) is its in-flight row: sets *id
 * to the attempt's id. A $0 one has no charge to keep in flight: its slot
 * is one more in this owner's count of the endpoint and model (the
 * owner_slots row other owners count, written with the transaction), *id
 * is the slot's handle (< 0), and the attempt is booked once, by its
 * settle. *id is 0 when every slot is held, or when a free one goes to
 * another owner: one that waits for a slot (fr_store_slot_waiting) and
 * holds fewer than `own`, or as many and has waited since before `since`
 * (unix seconds: when this request began to wait; 0 for now). Nothing is
 * written then but this owner's heartbeat, when due. Needs
 * fr_store_owner_begin first. Errors
 * as fr_store_reserve, and FR_EINVAL for `max` < 1, `own` < 0 or no
 * owner. */
int fr_store_reserve_slot(fr_store *st, const fr_attempt_rec *a, int max, long own, double since,
                          long long *id, fr_error *err);

/* Tells the other owners since when this owner's oldest request for a slot
 * of `endpoint` and `model` (borrowed; model NULL for none) waits, in unix
 * seconds (0: none waits any more). Written with the batch's commit, else
 * at once. A slot an owner frees while another waits and holds fewer goes
 * to that one (fr_store_reserve_slot). FR_OK, FR_ELIMIT past 65,535
 * endpoints and models, FR_ESTORE. */
int fr_store_slot_waiting(fr_store *st, const char *endpoint, const char *model, double since,
                          fr_error *err);

/* Settles attempt `id`, booked in flight by fr_store_reserve, to `a`
 * (borrowed: what it used and cost, its outcome, error and latency; `a`'s
 * run id must be the attempt's). It keeps its month. A $0 slot's handle
 * (< 0, fr_store_reserve_slot) books `a` as fr_store_add_attempt does and
 * frees the slot. With `month_total`
 * NULL it is one write; otherwise, like fr_store_add_attempt_total, it runs
 * in a BEGIN IMMEDIATE transaction that sets *month_total to the cost of
 * every booked attempt of the attempt's month, this one included and those
 * still in flight left out. FR_EINVAL for an invalid `a`, a "pending"
 * outcome, or an attempt that is not in flight (settled already, or of
 * another run; a handle that holds no slot); FR_ESTORE for a database
 * failure. */
int fr_store_settle(fr_store *st, long long id, const fr_attempt_rec *a, double *month_total,
                    fr_error *err);

/* Copies run `run_id`'s status ("running", "ok", "failed", "budget",
 * "interrupted", "crashed") into `status` (`size` bytes, truncated) and sets
 * *cost_usd to its recorded cost. All borrowed. FR_ENOENT for an unknown
 * run, FR_EINVAL for a missing argument, FR_ESTORE for a database failure. */
int fr_store_run_status(fr_store *st, const char *run_id, char *status, size_t size,
                        double *cost_usd, fr_error *err);

/* Sets *spent to the cost of every attempt booked in period `month` (a
 * month "YYYY-MM" or a day "YYYY-MM-DD", borrowed), by every run and
 * process, those in flight at their worst case (leases not included).
 * FR_EINVAL for a malformed period or a NULL spent, FR_ESTORE for a
 * database failure. */
int fr_store_month_spent(fr_store *st, const char *month, double *spent, fr_error *err);

/* What period `month` (a month "YYYY-MM" or a day "YYYY-MM-DD", borrowed)
 * of its cap is used, as other processes see it from here: the cost of
 * every attempt booked in the period
 * (those in flight at their worst case), plus the unspent part of each open
 * lease held by another live process (this process's leases are its own
 * business; leases of dead processes count only what their attempts were
 * charged). Sets *used. FR_EINVAL for a malformed month,
 * FR_ESTORE for a database failure. */
int fr_store_month_used(fr_store *st, const char *month, double *used, fr_error *err);

/* Leases up to `want` USD more of period `month`'s cap `cap` (a monthly cap
 * for a month "YYYY-MM", a daily cap for a day "YYYY-MM-DD"; an attempt
 * counts in the month and the day it was booked in) for run `run_id` (both
 * borrowed) and this process, in one BEGIN IMMEDIATE transaction, so two
 * processes leasing at once are served one after the other. First closes the
 * open leases of dead processes (the pid is gone or a zombie, its start time
 * differs, or it was recorded in another boot of the host): they keep only
 * what their attempts were charged, those in flight at their worst case, and
 * their runs are marked "crashed" (as fr_store_run_begin does). Then
 *   granted = min(want, cap - spent - outstanding), never negative,
 * where spent is every attempt of the month and outstanding the unspent part
 * (lease minus what its run spent in the month) of every open lease, this
 * run's own included. The grant is added to the run's open lease for the
 * month, which is created when there is none. Sets *granted (0 when the cap
 * is used up). The run may then spend up to its whole lease.
 * FR_EINVAL for a malformed month, a negative or non-finite cap or want, a run
 * that was not begun, or a run whose lease is held by another live process;
 * FR_ESTORE for a database failure (the transaction is rolled back). */
int fr_store_lease(fr_store *st, const char *month, double cap, double want, const char *run_id,
                   double *granted, fr_error *err);

/* Closes every open lease this process holds for run `run_id` (borrowed):
 * what the run spent stays in the ledger, the unspent rest is free for others.
 * A run without an open lease is fine (FR_OK). FR_EINVAL for a NULL run id,
 * FR_ESTORE for a database failure. */
int fr_store_release(fr_store *st, const char *run_id, fr_error *err);

/* Spend by month, endpoint, tier, workflow, user and host, for `month`
 * ("YYYY-MM", borrowed) or every month with attempts when `month` is NULL,
 * oldest first.
 * On FR_OK *out is an owned JSON object:
 *   {"months": [{"month": "2026-11", "cost_usd": 1.25, "attempts": 12,
 *                "usage_estimated": 1,
 *                "tokens": {"input": .., "output": .., "cached": ..},
 *                "by_endpoint": {"<endpoint>": GROUP, ...},
 *                "by_tier": {"local": GROUP, "cloud": GROUP},
 *                "by_workflow": {"<workflow>": GROUP, ...},
 *                "by_user": {"<user>": GROUP, ...},
 *                "by_host": {"<host>": GROUP, ...}}]}
 * where GROUP is {"cost_usd", "attempts", "tokens": {...}}; the user and the
 * host are "-" for attempts booked before schema 10 or without a name. A month
 * asked for by name is listed even without attempts (all zero); by_tier
 * always has both tiers. FR_EINVAL for a malformed month, FR_ESTORE for a
 * database failure. */
int fr_store_spend(fr_store *st, const char *month, json_t **out, fr_error *err);
/* The same by UTC day (each attempt in the day it was booked in), for `day`
 * ("YYYY-MM-DD", borrowed) or every day when NULL: {"days": [{"day":
 * "2026-11-30", ... as a month's entry}]}. FR_EINVAL for a malformed day. */
int fr_store_spend_days(fr_store *st, const char *day, json_t **out, fr_error *err);

/* What earlier runs of `workflow` (borrowed) observed: for each task and
 * endpoint with successful attempts, the median latency and output tokens of
 * the newest five. On FR_OK *out is an owned JSON object
 *   {"<task>": {"<endpoint>": {"latency_ms": 912.5, "output_tokens": 61,
 *                              "samples": 2}, ...}, ...}
 * (empty without history). Cached results, which made no request, are not
 * attempts and count for nothing. FR_EINVAL for a missing argument,
 * FR_ESTORE for a database failure. */
int fr_store_observed(fr_store *st, const char *workflow, json_t **out, fr_error *err);

/* ---- engine/store/history_table.c: the routing history (schema 11) ------- */

/* The routing history's decay: evidence halves every 30 days. */
#define FR_STORE_HISTORY_HALF_LIFE_S 2592000.0
/* Its bins: a quarter of an octave of milliseconds each, bin b holding
 * the values v with floor(4 log2(max(v, 1))) = b, the last one everything
 * above. */
#define FR_STORE_HISTORY_BINS 128

/* One row of the routing history as read (strings borrowed for the
 * callback): the sums of one key (endpoint, task type, complexity band
 * 0..4), or (`is_bin`) `n` of the key's gated attempts whose latency was
 * in bin `lat_bin` and time to first content in `ttft_bin` (-1: none).
 * The sums: `settled` attempts (all outcomes but in flight), of which
 * `passes` and `fails` were gated (replies that passed or failed) and
 * `errors` had no reply (error, timeout); `w_pass` and `w_fail` the gated
 * ones as sums of 2^((at - w_ref) / FR_STORE_HISTORY_HALF_LIFE_S), `w_ref`
 * the key's first gated attempt and `last_at` its newest (unix seconds;
 * `has_w_ref` false: none gated); `score_sum` over `score_n` gated
 * attempts with a check score; `cost_sum` over all settled attempts;
 * `out_tokens` and `reply_ms` (latency) summed over the gated ones. */
typedef struct fr_store_history_row {
    const char *endpoint, *type;
    int band;
    bool is_bin;
    int lat_bin, ttft_bin;
    long n;
    long settled, passes, fails, errors, score_n, out_tokens;
    bool has_w_ref;
    double w_pass, w_fail, w_ref, last_at, score_sum, cost_sum, reply_ms;
} fr_store_history_row;

/* Reads the routing history of the `n` endpoints `endpoints` (borrowed;
 * NULL: every endpoint) in one query, calling `each(ud, row)` per row
 * (a key's sums before its bins is not promised). FR_ESTORE for a database
 * failure. */
int fr_store_history(fr_store *st, const char *const *endpoints, size_t n,
                     void (*each)(void *ud, const fr_store_history_row *row), void *ud,
                     fr_error *err);

/* Whether `outcome` (borrowed) is gated evidence: a reply that passed its
 * gates ("ok") or failed one or did not finish ("quality", "truncated",
 * "refused", "no_answer", "tool_call"). */
bool fr_store_outcome_gated(const char *outcome);
/* The complexity band (0..4, 0.2 wide, 1.0 in the last) of `complexity`,
 * 0.5's without `has_complexity`. */
int fr_store_history_band(bool has_complexity, double complexity);
/* The bin (0 .. FR_STORE_HISTORY_BINS - 1) of a latency of `ms`. */
int fr_store_history_bin(double ms);

/* The store's clock (fr_store_set_clock), or the real one: unix seconds. */
double fr_store_clock(const fr_store *st);

/* Looks up the result stored under `key` (borrowed). On a hit fills `out`
 * (owned by the caller: fr_reply_close) with the text, JSON, model and
 * usage, and sets *hit. A damaged entry is a miss: text or a model that is
 * not valid UTF-8 or holds a NUL byte, JSON that does not parse, a negative
 * token count. The caller still runs the task's gates on a hit (a schema
 * may have been edited by hand since). FR_ESTORE on a database failure. */
int fr_store_cache_get(fr_store *st, const char *key, fr_reply *out, bool *hit, fr_error *err);

/* Stores the successful reply `r` (borrowed) of endpoint `endpoint` under
 * `key`, replacing any entry. Only replies that passed every gate are
 * stored. FR_ESTORE on a database failure. */
int fr_store_cache_put(fr_store *st, const char *key, const char *endpoint, const fr_reply *r,
                       fr_error *err);

/* A human approval (approve = true) as stored: one row per workflow and
 * task, the latest checkpoint. `state` is "pending", "approved" or
 * "rejected"; `output_hash` names the output the decision was shown (a
 * decision holds for that output only). Times are unix seconds (0: none).
 * Strings read back are owned by the row (fr_store_approval_clear); those
 * passed to fr_store_approval_put are borrowed (by and note may be NULL). */
typedef struct fr_store_approval {
    char *workflow, *task, *output_hash, *state, *run_id, *output_path, *by, *note;
    double asked_at, decided_at;
} fr_store_approval;

/* Frees the strings of `a` and zeroes it; NULL is fine. */
void fr_store_approval_clear(fr_store_approval *a);

/* Writes `a` (borrowed) as the row of its workflow and task, replacing any
 * (asked_at 0: now by the store's clock). FR_EINVAL for a missing workflow,
 * task, hash or state; FR_ESTORE for a database failure. */
int fr_store_approval_put(fr_store *st, const fr_store_approval *a, fr_error *err);

/* Reads the row of `workflow` and `task` (borrowed) into `out` (owned by the
 * caller: fr_store_approval_clear) and sets *found; without a row *found is
 * false and `out` zeroed. FR_ESTORE for a database failure. */
int fr_store_approval_get(fr_store *st, const char *workflow, const char *task,
                          fr_store_approval *out, bool *found, fr_error *err);

/* Records a decision on the row of `workflow` and `task`: `state`
 * ("approved" or "rejected"), `by` and `note` (may be NULL), at the store's
 * clock; the output hash stays the row's. All borrowed. FR_ENOENT when the
 * task has no row (nothing was ever asked), FR_EINVAL for another state,
 * FR_ESTORE for a database failure. */
int fr_store_approval_decide(fr_store *st, const char *workflow, const char *task,
                             const char *state, const char *by, const char *note, fr_error *err);

/* What run `run_id` (borrowed) did, task by task, for `flowrun graph --run`
 * (runs_read.c): `run_id` "last" or NULL is the newest run of `workflow`
 * (borrowed). Reads only. On FR_OK *out is an owned JSON object
 *   {"run": "<id>", "workflow": "...", "status": "ok", "cost_usd": 0.012,
 *    "tasks": {"<task>": {"outcome": "<its last attempt's>", "endpoint":
 *              "<its last attempt's>", "attempts": 2, "cost_usd": 0.004}}}
 * (a task that made no request, cached or skipped, is not in "tasks").
 * FR_ENOENT when there is no such run, FR_ESTORE for a database failure. */
int fr_store_run_tasks(fr_store *st, const char *workflow, const char *run_id, json_t **out,
                       fr_error *err);

/* ---- engine/store/reports.c: stored reports, the runs, statistics -------- */

/* Stores the report of finished run `run_id` as the run printed it: `json`
 * (its `--json` text, final newline included) and `summary` (its summary,
 * uncoloured), all borrowed; a second call for the run replaces the first.
 * It joins the batch when batching is on (fr_store_flush commits it), else
 * it is its own transaction. FR_EINVAL for a missing argument or a run that
 * was not begun, FR_ESTORE for a database failure. */
int fr_store_report_put(fr_store *st, const char *run_id, const char *json, const char *summary,
                        fr_error *err);

/* The runs, newest first (by start), of `workflow` (borrowed) or of every
 * workflow when it is NULL, at most `limit` of them (<= 0: all). On FR_OK
 * *out is an owned JSON array of
 *   {"id", "workflow", "started_at" and "ended_at" (unix seconds; ended_at
 *    null while running or crashed), "status" (the runs table's, and
 *    "crashed" for a run still "running" whose process is gone),
 *    "exit_code" (null),
 *    "cost_usd" (the stored report's, else the runs table's),
 *    "makespan_ms" and "local_token_share" (from the stored report, null
 *    without one), "has_report"}.
 * FR_ESTORE for a database failure. */
int fr_store_runs(fr_store *st, const char *workflow, long limit, json_t **out, fr_error *err);

/* A run found by fr_store_report_get; every string owned by the record
 * (fr_store_report_clear). `json` and `summary` are NULL when the run has
 * no stored report (it was killed, is still running, or was run by a
 * flowrun of an older schema). */
typedef struct fr_store_report {
    char *run_id, *workflow, *status, *json, *summary;
} fr_store_report;

/* Frees what `r` holds and zeroes it; NULL is fine. */
void fr_store_report_clear(fr_store_report *r);

/* Finds the run `ref` (borrowed) names into `out` (owned by the caller:
 * fr_store_report_clear): "last" is the newest run with a stored report;
 * anything else is a run id, or a prefix of exactly one run's id. With
 * `workflow` (borrowed, may be NULL) only that workflow's runs count.
 * FR_ENOENT when no run matches (or, for "last", none has a report),
 * FR_EINVAL for a prefix that matches more than one run (err names two),
 * FR_ESTORE for a database failure. */
int fr_store_report_get(fr_store *st, const char *ref, const char *workflow, fr_store_report *out,
                        fr_error *err);

/* Statistics over the attempts booked at or after `since` (unix seconds; 0:
 * all), requests in flight left out. On FR_OK *out is an owned JSON object
 *   {"since": null or seconds, "runs": N,
 *    "by_endpoint": {"<endpoint>": GROUP + "tier"}, "by_type": {"<type>": GROUP}}
 * where a task without a type is "-" and GROUP is
 *   {"requests", "ok", "success_rate" (ok / requests), "replies" (attempts
 *    that got a reply: ok, quality, truncated, refused, tool_call,
 *    no_answer), "quality_pass_rate" (replies not failed by a quality gate
 *    / replies), "latency_ms" and "ttft_ms": {"p50", "p95"} over the
 *    replies (exact: the sorted value at index round(q * (n - 1)), as a
 *    report's; null without values; ttft only where it was recorded),
 *    "tokens": {"input", "output", "cached"}, "cost_usd",
 *    "local_share": {"attempts", "tokens"} (the local tier's share; the
 *    rest is the cloud's; null for none)}.
 * FR_ESTORE for a database failure. */
int fr_store_run_stats(fr_store *st, double since, json_t **out, fr_error *err);
