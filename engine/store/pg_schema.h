#pragma once
/* The PostgreSQL schema of the shared state store and its versioned
 * migrations, applied through engine/store/pgconn without blocking the loop
 * and safely when several processes start together. It mirrors the SQLite
 * schema (engine/store/open.c) plus what a team's store needs: owners
 * (processes with a heartbeat), users and hosts on runs and attempts, a
 * client-made key per attempt, daily as well as monthly totals and leases.
 * engine/store/pgstore applies it when it opens a store. */

#include "engine/store/pgconn.h"
#include "engine/util/err.h"

/* The schema version this flowrun writes. */
#define FR_PG_SCHEMA_VERSION 2

/* The key of the transaction-level advisory lock (pg_advisory_xact_lock)
 * that serialises migrations: "flowrun" in ASCII (0x666c6f7772756e), as a
 * bigint. The SQL spells the same number. */
#define FR_PG_SCHEMA_LOCK_KEY     28829673625646446
#define FR_PG_SCHEMA_LOCK_KEY_SQL "28829673625646446"

/* The SQLSTATE the apply step raises when the version it read changed
 * before it held the lock (another process migrated meanwhile): it reads
 * the version again. */
#define FR_PG_SCHEMA_RACED "FR001"

/* What the schema holds, version 1 (its statements say more):
 * - meta (schema_version) and schema_log (one row per migration applied,
 *   with the server process that applied it);
 * - owners: a flowrun process (a client-made id, user, host, pid, started,
 *   heartbeat, expires on the server's clock). An owner whose `expires` has
 *   passed is dead: its in-flight attempts stop holding capacity (view
 *   in_flight) and its open budget leases stop counting (view open_leases,
 *   `live`), whoever reclaims them next;
 * - runs and attempts: the ledger, with owner, user and host. An attempt's
 *   key is (run_id, task, attempt, turn), made by the client (turn: the
 *   request's turn in a tool loop, 0 for the first): a reservation is
 *   INSERT ... ON CONFLICT (run_id, task, attempt, turn) DO NOTHING (not an
 *   upsert: a reservation repeated after a lost connection must not undo a
 *   settle that came after it), and a settle is an UPDATE ... WHERE
 *   outcome = 'pending', so repeated it changes nothing. Each attempt has
 *   its UTC month and day (the month is the day's first seven characters);
 * - period_totals: per period (a month 'YYYY-MM' or a day 'YYYY-MM-DD') all
 *   charges and the booked replies, in integer pico-dollars (fr_pusd: as
 *   SQLite's month_totals), kept by triggers on attempts in the writing
 *   transaction, each row's periods locked in the order of their keys
 *   (no cycle between two settles) and only those whose totals change;
 * - leases: shares of a period's cap (as engine/store/lease.c's, keyed by a
 *   month or a day), held by an owner;
 * - endpoints: one row per shared endpoint, the row a capacity reservation
 *   locks (SELECT ... FOR UPDATE) while it counts in_flight;
 *   fr_slot_channel(endpoint) names the channel a settle of its attempt
 *   notifies (payload: the endpoint) and fr_slot_listen(endpoint) LISTENs
 *   on it;
 * - cache, approvals, reports and the ledger view, as in SQLite. */

/* The statements of the migration from version `from` to `from + 1`: a
 * static NULL-terminated array (each one SQL statement, as the extended
 * protocol of a pipeline takes them), or NULL when `from` is out of range.
 * A released migration never changes. */
const char *const *fr_pg_schema_sql(int from);

/* The apply step's outcome: `rc` FR_OK (the database is at
 * FR_PG_SCHEMA_VERSION), FR_ESTOREVER (a newer flowrun's database: err
 * names both versions), FR_ESTORE (the server refused: err has its
 * message; or a database with a meta table and no valid version),
 * FR_ECONNECT (the connection's first attempt failed), FR_ECANCELED (the
 * connection closed), FR_EOUTCOME (the connection kept breaking). `err` is
 * borrowed for the call only. */
typedef void (*fr_pg_schema_done_fn)(void *ud, int rc, const fr_error *err);

/* Brings the database of `c` (borrowed; it must stay open until `done`) to
 * FR_PG_SCHEMA_VERSION. It reads the version; when older, it sends one
 * transaction: pg_advisory_xact_lock(FR_PG_SCHEMA_LOCK_KEY), a check that
 * the version is still the one read (FR_PG_SCHEMA_RACED otherwise: then it
 * reads again), the missing migrations each logged in schema_log, and the
 * new version. Several processes applying at once apply each migration
 * once and all succeed. A connection lost mid-way reads again: the check
 * makes a repeat safe. Every step is a request of `c`, so the loop never
 * waits. `source` (borrowed, copied) names the store in errors: the URL
 * with its password masked (fr_pgurl_mask). Returns FR_OK, and `done`
 * is called once on a later turn of the loop with `ud`; or, without calling
 * `done`, FR_EINVAL (a NULL argument) or what fr_pgconn_query refused the
 * first request with (FR_ECANCELED, FR_ECONNECT). */
int fr_pg_schema_apply(fr_pgconn *c, const char *source, fr_pg_schema_done_fn done, void *ud);
