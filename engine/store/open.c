/* Opening and closing the state store: the state folder, the connection
 * (read-write and WAL, or read-only for reports), the damage check, the
 * schema (the current one, that a new store is created from, and the
 * versioned migrations that bring an older one to it), and the store's
 * clock. The marker
 * beside the database is marker.c's; the rows are read and written by the
 * other files of engine/store/, whose statements (db.c) are prepared here,
 * at open. */

#include "engine/store/pgread.h"
#include "engine/store/pgurl.h"
#include "engine/store/store_int.h"
#include "engine/util/fs.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- the schema and its migrations -------------------------------------------- */

/* A migration, once released, never changes: a database written by a flowrun
 * of version v is exactly what migrations 0 .. v-1 made. The two pieces both
 * versions write (the attempts table, and the ledger view that names it) are
 * written once here; a change to either is a new migration, never an edit. */

/* The attempts table, created as `name`, its outcome limited by the SQL
 * expression `outcome_check`, with `more` (SQL text: ", column type ...")
 * after its last column. */
#define ATTEMPTS_TABLE_AS(name, outcome_check, more)                                               \
    "CREATE TABLE " name " ("                                                                      \
    "  id              INTEGER PRIMARY KEY,"                                                       \
    "  run_id          TEXT NOT NULL REFERENCES runs(id),"                                         \
    "  task            TEXT NOT NULL,"                                                             \
    "  attempt         INTEGER NOT NULL CHECK (attempt >= 1),"                                     \
    "  endpoint        TEXT NOT NULL,"                                                             \
    "  tier            TEXT NOT NULL CHECK (tier IN ('local', 'cloud')),"                          \
    "  model           TEXT,"                                                                      \
    "  input_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),"                      \
    "  output_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),"                     \
    "  cached_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),"                     \
    "  usage_estimated INTEGER NOT NULL DEFAULT 0 CHECK (usage_estimated IN (0, 1)),"              \
    "  cost_usd        REAL NOT NULL CHECK (cost_usd >= 0),"                                       \
    "  latency_ms      REAL NOT NULL DEFAULT 0,"                                                   \
    "  outcome         TEXT NOT NULL CHECK (" outcome_check "),"                                   \
    "  error           TEXT,"                                                                      \
    "  at              REAL NOT NULL,"                                                             \
    "  month           TEXT NOT NULL" more ");"

/* The attempts table of versions 1 and 2: its outcome one of `outcomes`
 * (an SQL list in parentheses). */
#define ATTEMPTS_TABLE(name, outcomes) ATTEMPTS_TABLE_AS(name, "outcome IN" outcomes, "")

/* The cost ledger: every attempt with its workflow. Monthly caps and the
 * spend report read it. */
#define LEDGER_VIEW                                                                                \
    "CREATE VIEW ledger AS"                                                                        \
    "  SELECT a.month, a.at, r.workflow, a.run_id, a.task, a.attempt, a.endpoint, a.tier,"         \
    "         a.model, a.input_tokens, a.output_tokens, a.cached_tokens, a.usage_estimated,"       \
    "         a.cost_usd, a.outcome"                                                               \
    "  FROM attempts a JOIN runs r ON r.id = a.run_id;"

/* The ledger view from version 10: with the attempt's day, user and host. */
#define LEDGER_VIEW_V9                                                                             \
    "CREATE VIEW ledger AS"                                                                        \
    "  SELECT a.month, a.day, a.at, r.workflow, a.run_id, a.task, a.attempt, a.endpoint, a.tier,"  \
    "         a.model, a.input_tokens, a.output_tokens, a.cached_tokens, a.usage_estimated,"       \
    "         a.cost_usd, a.outcome, a.user_name, a.host"                                          \
    "  FROM attempts a JOIN runs r ON r.id = a.run_id;"

/* The tables, each written once here: a migration and the current schema
 * (schema_current) name the same text. */

/* The store's own facts (its schema version). */
#define META_TABLE                                                                                 \
    "CREATE TABLE meta ("                                                                          \
    "  key   TEXT PRIMARY KEY,"                                                                    \
    "  value"                                                                                      \
    ");"
/* The runs, with `more` (SQL text: ", column type ...") after cost_usd. */
#define RUNS_TABLE(more)                                                                           \
    "CREATE TABLE runs ("                                                                          \
    "  id         TEXT PRIMARY KEY,"                                                               \
    "  workflow   TEXT NOT NULL,"                                                                  \
    "  wf_path    TEXT,"                                                                           \
    "  started_at REAL NOT NULL,"                                                                  \
    "  ended_at   REAL,"                                                                           \
    "  status     TEXT NOT NULL DEFAULT 'running',"                                                \
    "  exit_code  INTEGER,"                                                                        \
    "  cost_usd   REAL NOT NULL DEFAULT 0 CHECK (cost_usd >= 0)" more ");"
/* A lease is a share of one month's cap held by one process for one run.
 * pid_start (the process's start time in clock ticks after boot, 0 when
 * unknown) and boot_id tell a live holder from a reused pid or a holder
 * from before a reboot. spent_usd is what the run had spent when the
 * lease was closed. With its indexes. */
#define LEASES_TABLE                                                                               \
    "CREATE TABLE leases ("                                                                        \
    "  id        INTEGER PRIMARY KEY,"                                                             \
    "  run_id    TEXT NOT NULL REFERENCES runs(id),"                                               \
    "  month     TEXT NOT NULL,"                                                                   \
    "  amount    REAL NOT NULL CHECK (amount >= 0),"                                               \
    "  pid       INTEGER NOT NULL,"                                                                \
    "  pid_start INTEGER NOT NULL DEFAULT 0,"                                                      \
    "  boot_id   TEXT NOT NULL DEFAULT '',"                                                        \
    "  opened_at REAL NOT NULL,"                                                                   \
    "  closed_at REAL,"                                                                            \
    "  closed_by TEXT CHECK (closed_by IN ('released', 'reclaimed')),"                             \
    "  spent_usd REAL"                                                                             \
    ");"                                                                                           \
    "CREATE INDEX leases_open ON leases(month) WHERE closed_at IS NULL;"                           \
    "CREATE UNIQUE INDEX leases_one_open ON leases(run_id, month) WHERE closed_at IS NULL;"
/* The result cache, keyed by a hash of everything that shapes a result. */
#define CACHE_TABLE                                                                                \
    "CREATE TABLE cache ("                                                                         \
    "  key        TEXT PRIMARY KEY,"                                                               \
    "  endpoint   TEXT NOT NULL,"                                                                  \
    "  model      TEXT,"                                                                           \
    "  text       TEXT,"                                                                           \
    "  json       TEXT,"                                                                           \
    "  input      INTEGER NOT NULL DEFAULT 0,"                                                     \
    "  output     INTEGER NOT NULL DEFAULT 0,"                                                     \
    "  cached     INTEGER NOT NULL DEFAULT 0,"                                                     \
    "  created_at REAL NOT NULL"                                                                   \
    ");"
/* Human approvals (schema 3). */
#define APPROVALS_TABLE                                                                            \
    "CREATE TABLE approvals ("                                                                     \
    "  workflow    TEXT NOT NULL,"                                                                 \
    "  task        TEXT NOT NULL,"                                                                 \
    "  output_hash TEXT NOT NULL,"                                                                 \
    "  state       TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),"            \
    "  run_id      TEXT,"                                                                          \
    "  output_path TEXT,"                                                                          \
    "  asked_at    REAL NOT NULL,"                                                                 \
    "  decided_by  TEXT,"                                                                          \
    "  decided_at  REAL,"                                                                          \
    "  note        TEXT,"                                                                          \
    "  PRIMARY KEY (workflow, task)"                                                               \
    ");"
/* Each month's totals (schema 4). */
#define MONTH_TOTALS_TABLE                                                                         \
    "CREATE TABLE month_totals ("                                                                  \
    "  month        TEXT PRIMARY KEY,"                                                             \
    "  charged_pusd INTEGER NOT NULL DEFAULT 0,"                                                   \
    "  booked_pusd  INTEGER NOT NULL DEFAULT 0"                                                    \
    ") WITHOUT ROWID;"
/* The stored reports as `name`, their JSON the last column (schema 7). */
#define REPORTS_TABLE(name)                                                                        \
    "CREATE TABLE " name " ("                                                                      \
    "  run_id    TEXT PRIMARY KEY REFERENCES runs(id),"                                            \
    "  summary   TEXT NOT NULL,"                                                                   \
    "  stored_at REAL NOT NULL,"                                                                   \
    "  json      BLOB NOT NULL"                                                                    \
    ");"

/* The schema's text is laid out as SQL, one column a line. */
// clang-format off

/* Schema version 1. Later versions append a migration to `migrations`. */
static const char schema_v1[] =
    META_TABLE
    RUNS_TABLE("")
    "CREATE INDEX runs_started ON runs(started_at);"
    ATTEMPTS_TABLE("attempts", "                    ('ok', 'quality', 'error', 'timeout', "
                               "'cancelled', 'budget')")
    "CREATE INDEX attempts_month ON attempts(month);"
    "CREATE INDEX attempts_run ON attempts(run_id, month);"
    LEASES_TABLE
    LEDGER_VIEW
    CACHE_TABLE;

/* Schema version 2: an attempt whose reply did not finish as an answer has
 * its own outcome (truncated, refused, tool_call, no_answer); an attempt is
 * booked when its request is sent, as 'pending' with its worst case as its
 * cost, and settles to what it cost when its reply is booked; a run records
 * the process that runs it, so a later one can tell it died and mark it
 * 'crashed'. SQLite cannot change a CHECK constraint in place: the attempts
 * table is rebuilt with its rows (the ledger view goes first, as it names
 * the table, and comes back after). */
static const char schema_v2[] =
    "DROP VIEW ledger;"
    ATTEMPTS_TABLE("attempts_v2", "                    ('ok', 'quality', 'error', 'timeout', "
                                  "'cancelled', 'budget',"
                                  "                     'truncated', 'refused', 'tool_call', "
                                  "'no_answer', 'pending')")
    "INSERT INTO attempts_v2 SELECT * FROM attempts;"
    "DROP TABLE attempts;"
    "ALTER TABLE attempts_v2 RENAME TO attempts;"
    /* Covers the month's totals (all charges, booked only): read from the
     * index alone, at every lease and, until a run alerts, every booking. */
    "CREATE INDEX attempts_month ON attempts(month, outcome, cost_usd);"
    "CREATE INDEX attempts_run ON attempts(run_id, month);"
    LEDGER_VIEW
    "ALTER TABLE runs ADD COLUMN pid INTEGER;"
    "ALTER TABLE runs ADD COLUMN pid_start INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE runs ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX runs_running ON runs(id) WHERE status = 'running';";

/* Schema version 3: human approvals (approve = true). One row per workflow
 * and task, the latest checkpoint: the hash of the output it was shown
 * (a decision holds for that output only), the run that asked, where the
 * whole output is, and who decided, when and why. */
static const char schema_v3[] =
    APPROVALS_TABLE;

/* What a row's cost adds to its month's totals, in whole pico-dollars
 * (exact integer sums: a reservation settled to its cost leaves no
 * rounding behind). */
#define PUSD(r) "CAST(round(" r ".cost_usd * 1e12) AS INTEGER)"
#define BOOKED_PUSD(r) "CASE WHEN " r ".outcome != 'pending' THEN " PUSD(r) " ELSE 0 END"
#define ADD_TOTALS(r)                                                                              \
    "INSERT INTO month_totals(month, charged_pusd, booked_pusd)"                                   \
    " VALUES (" r ".month, " PUSD(r) ", " BOOKED_PUSD(r) ")"                                       \
    " ON CONFLICT(month) DO UPDATE SET charged_pusd = charged_pusd + excluded.charged_pusd,"      \
    " booked_pusd = booked_pusd + excluded.booked_pusd;"
#define SUB_TOTALS(r)                                                                              \
    "UPDATE month_totals SET charged_pusd = charged_pusd - " PUSD(r) ","                          \
    " booked_pusd = booked_pusd - " BOOKED_PUSD(r) " WHERE month = " r ".month;"

/* The triggers that keep month_totals: on insert and delete (version 4), on
 * a settle that keeps its month and on a row that changes month (version 6). */
#define TOTALS_INSERT_TRIGGER                                                                      \
    "CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts BEGIN " ADD_TOTALS("NEW")      \
    " END;"
#define TOTALS_DELETE_TRIGGER                                                                      \
    "CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts BEGIN " SUB_TOTALS("OLD")      \
    " END;"
#define TOTALS_SETTLE_TRIGGER                                                                      \
    "CREATE TRIGGER attempts_totals_settle AFTER UPDATE OF cost_usd, outcome ON attempts"          \
    " WHEN OLD.month = NEW.month BEGIN"                                                            \
    " UPDATE month_totals SET charged_pusd = charged_pusd - " PUSD("OLD") " + " PUSD("NEW") ","   \
    " booked_pusd = booked_pusd - " BOOKED_PUSD("OLD") " + " BOOKED_PUSD("NEW")                   \
    " WHERE month = NEW.month;"                                                                    \
    " END;"
#define TOTALS_MOVE_TRIGGER                                                                        \
    "CREATE TRIGGER attempts_totals_move AFTER UPDATE OF cost_usd, outcome, month ON attempts"     \
    " WHEN OLD.month IS NOT NEW.month BEGIN " SUB_TOTALS("OLD") ADD_TOTALS("NEW") " END;"

/* Schema version 4: each month's totals (every charge, the booked replies
 * only), kept by triggers on attempts in the writing transaction, so a
 * booking or a lease reads one row instead of the month's attempts. Built
 * from the rows an older flowrun booked. */
static const char schema_v4[] =
    MONTH_TOTALS_TABLE
    "INSERT INTO month_totals(month, charged_pusd, booked_pusd)"
    " SELECT a.month, SUM(" PUSD("a") "), SUM(" BOOKED_PUSD("a") ") FROM attempts a"
    " GROUP BY a.month;"
    TOTALS_INSERT_TRIGGER
    "CREATE TRIGGER attempts_totals_update AFTER UPDATE OF cost_usd, outcome, month ON attempts"
    " BEGIN " SUB_TOTALS("OLD") ADD_TOTALS("NEW") " END;"
    TOTALS_DELETE_TRIGGER;

/* Schema version 5: each finished run's report as the run printed it (the
 * JSON report and the uncoloured summary, for `flowrun report`), and what
 * `flowrun stats` groups and measures that the attempts lacked: the task's
 * type and the attempt's time to first content (NULL: none, or booked by
 * an older flowrun). */
static const char schema_v5[] =
    "CREATE TABLE reports ("
    "  run_id    TEXT PRIMARY KEY REFERENCES runs(id),"
    "  json      TEXT NOT NULL,"
    "  summary   TEXT NOT NULL,"
    "  stored_at REAL NOT NULL"
    ");"
    "ALTER TABLE attempts ADD COLUMN task_type TEXT;"
    "ALTER TABLE attempts ADD COLUMN ttft_ms REAL;"
    "CREATE INDEX runs_workflow ON runs(workflow, started_at);";
/* Schema version 6: fewer writes per attempt. attempts_month served the
 * month's totals, which month_totals (version 4) keeps now: no query needs
 * it, and every booking and settle wrote it. A settle keeps its month: its
 * totals change in one UPDATE (a month that changes still takes the old
 * row's cost off one month and adds the new one's to the other). It drops
 * what it replaces only if there: a store an older version's tests made by
 * undoing later migrations migrates too. */
static const char schema_v6[] =
    "DROP INDEX IF EXISTS attempts_month;"
    "DROP TRIGGER IF EXISTS attempts_totals_update;"
    "DROP TRIGGER IF EXISTS attempts_totals_settle;"
    "DROP TRIGGER IF EXISTS attempts_totals_move;"
    TOTALS_SETTLE_TRIGGER
    TOTALS_MOVE_TRIGGER;

/* Schema version 7: a report's JSON is its row's last column, so that it
 * is written in place (a zeroblob the text is then written into, SQLite's
 * incremental blob I/O) and SQLite holds no record-sized copy of it. The
 * table is rebuilt with the same columns in that order and its reports
 * copied as they are: older rows keep their TEXT, newer ones are BLOBs of
 * the same UTF-8 bytes (readers CAST them to TEXT). */
static const char schema_v7[] =
    REPORTS_TABLE("reports_v7")
    "INSERT INTO reports_v7(run_id, summary, stored_at, json)"
    " SELECT run_id, summary, stored_at, json FROM reports;"
    "DROP TABLE reports;"
    "ALTER TABLE reports_v7 RENAME TO reports;";

/* Schema version 8: a cheaper check of an attempt's outcome. SQLite (3.40)
 * evaluates a CHECK's `outcome IN (...)` of more than two values by filling
 * a temporary b-tree with the list at every INSERT and every settle: about
 * half of an attempt's INSERT. The same set as comparisons, the outcomes
 * written most often first, costs a few instructions. The table is rebuilt
 * with its rows as in version 2 (its index, the ledger view and the totals'
 * triggers go with it and come back); month_totals keeps its rows. */
#define ATTEMPTS_OUTCOME_V8                                                                        \
    "outcome = 'pending' OR outcome = 'ok' OR outcome = 'error'"                                   \
    " OR outcome = 'timeout' OR outcome = 'cancelled' OR outcome = 'budget'"                       \
    " OR outcome = 'quality' OR outcome = 'truncated' OR outcome = 'refused'"                      \
    " OR outcome = 'tool_call' OR outcome = 'no_answer'"
#define ATTEMPTS_MORE_V8                                                                           \
    ","                                                                                            \
    "  task_type       TEXT,"                                                                      \
    "  ttft_ms         REAL"
#define ATTEMPTS_TABLE_V8(name) ATTEMPTS_TABLE_AS(name, ATTEMPTS_OUTCOME_V8, ATTEMPTS_MORE_V8)
static const char schema_v8[] =
    "DROP VIEW ledger;"
    ATTEMPTS_TABLE_V8("attempts_v8")
    "INSERT INTO attempts_v8 SELECT * FROM attempts;"
    "DROP TABLE attempts;"
    "ALTER TABLE attempts_v8 RENAME TO attempts;"
    "CREATE INDEX attempts_run ON attempts(run_id, month);"
    LEDGER_VIEW
    TOTALS_INSERT_TRIGGER
    TOTALS_DELETE_TRIGGER
    TOTALS_SETTLE_TRIGGER
    TOTALS_MOVE_TRIGGER;

/* The flowrun processes using the store (schema 9): an id the process
 * made, its pid, start time and boot id (as runs have them), user, host,
 * and in unix seconds when it started, its last heartbeat and when its
 * lease runs out. An owner whose `expires` has passed, or whose process is
 * gone on this host, is dead: its in-flight attempts hold no slot. */
#define OWNERS_TABLE                                                                               \
    "CREATE TABLE owners ("                                                                        \
    "  id        TEXT PRIMARY KEY,"                                                                \
    "  pid       INTEGER NOT NULL,"                                                                \
    "  pid_start INTEGER NOT NULL DEFAULT 0,"                                                      \
    "  boot_id   TEXT NOT NULL DEFAULT '',"                                                        \
    "  user_name TEXT NOT NULL DEFAULT '',"                                                        \
    "  host      TEXT NOT NULL DEFAULT '',"                                                        \
    "  started   REAL NOT NULL,"                                                                   \
    "  heartbeat REAL NOT NULL,"                                                                   \
    "  expires   REAL NOT NULL"                                                                    \
    ");"
/* The slots held: an in-flight attempt of a shared endpoint names its
 * owner; the count before a conditional reservation reads this index. */
#define ATTEMPTS_IN_FLIGHT_INDEX                                                                   \
    "CREATE INDEX attempts_in_flight ON attempts(endpoint, owner_id) WHERE outcome = 'pending';"

/* Schema version 9: endpoint capacity held across the processes sharing a
 * store. The owners of in-flight attempts with their heartbeats, and the
 * owner of an attempt of a shared endpoint (NULL for every other attempt:
 * it holds no slot across processes). */
static const char schema_v9[] =
    OWNERS_TABLE
    "ALTER TABLE attempts ADD COLUMN owner_id TEXT;"
    ATTEMPTS_IN_FLIGHT_INDEX;

/* Schema version 10: a daily cap beside the monthly one, and who booked what
 * from where. An attempt books into the UTC day it is reserved in (`day`,
 * "YYYY-MM-DD"), as into its month. The totals are kept per day in
 * day_totals, by the same four triggers as month_totals' (one row written a
 * booking, as before); a month's total is the sum of its days' rows (at
 * most 32, one range of the key: read at a lease and at a booking that asks
 * for it). A row without a day (none that flowrun writes) counts in its
 * month under the key "YYYY-MM-00", on no day; so does a row of an older
 * version whose time (`at`, its settle's) is not in its month: the others
 * get the day of their `at`. A lease's `month` column holds its period, a
 * month or a day (the keys never collide: their lengths differ). Runs and
 * attempts get the user and the host that booked them (NULL in rows booked
 * before: `flowrun spend` shows "-"). */
#define DAY_TOTALS_TABLE                                                                           \
    "CREATE TABLE day_totals ("                                                                    \
    "  day          TEXT PRIMARY KEY,"                                                             \
    "  charged_pusd INTEGER NOT NULL DEFAULT 0,"                                                   \
    "  booked_pusd  INTEGER NOT NULL DEFAULT 0"                                                    \
    ") WITHOUT ROWID;"
/* The key of a row's totals: its day, or its month's "YYYY-MM-00". */
#define DAY_KEY(r) "coalesce(" r ".day, " r ".month || '-00')"
#define ADD_DAY(r)                                                                                 \
    "INSERT INTO day_totals(day, charged_pusd, booked_pusd)"                                       \
    " VALUES (" DAY_KEY(r) ", " PUSD(r) ", " BOOKED_PUSD(r) ")"                                    \
    " ON CONFLICT(day) DO UPDATE SET charged_pusd = charged_pusd + excluded.charged_pusd,"        \
    " booked_pusd = booked_pusd + excluded.booked_pusd;"
#define SUB_DAY(r)                                                                                 \
    "UPDATE day_totals SET charged_pusd = charged_pusd - " PUSD(r) ","                            \
    " booked_pusd = booked_pusd - " BOOKED_PUSD(r) " WHERE day = " DAY_KEY(r) ";"
#define DAYS_INSERT_TRIGGER                                                                        \
    "CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts BEGIN " ADD_DAY("NEW")         \
    " END;"
#define DAYS_DELETE_TRIGGER                                                                        \
    "CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts BEGIN " SUB_DAY("OLD")         \
    " END;"
/* The settle trigger's body: the day's totals take the row's new cost and
 * booking for its old ones. */
#define DAYS_SETTLE_BODY                                                                           \
    " BEGIN"                                                                                       \
    " UPDATE day_totals SET charged_pusd = charged_pusd - " PUSD("OLD") " + " PUSD("NEW") ","     \
    " booked_pusd = booked_pusd - " BOOKED_PUSD("OLD") " + " BOOKED_PUSD("NEW")                   \
    " WHERE day = " DAY_KEY("NEW") ";"                                                             \
    " END;"
/* The move trigger's condition and body: the old day's totals lose the
 * row, the new day's take it. */
#define DAYS_MOVE_BODY                                                                             \
    " WHEN OLD.month IS NOT NEW.month OR OLD.day IS NOT NEW.day BEGIN " SUB_DAY("OLD")             \
    ADD_DAY("NEW") " END;"
#define DAYS_SETTLE_TRIGGER                                                                        \
    "CREATE TRIGGER attempts_totals_settle AFTER UPDATE OF cost_usd, outcome ON attempts"          \
    " WHEN OLD.month = NEW.month AND OLD.day IS NEW.day" DAYS_SETTLE_BODY
#define DAYS_MOVE_TRIGGER                                                                          \
    "CREATE TRIGGER attempts_totals_move AFTER UPDATE OF cost_usd, outcome, month, day ON attempts"\
    DAYS_MOVE_BODY
static const char schema_v10[] =
    "DROP TRIGGER attempts_totals_insert;"
    "DROP TRIGGER attempts_totals_delete;"
    "DROP TRIGGER attempts_totals_settle;"
    "DROP TRIGGER attempts_totals_move;"
    "ALTER TABLE attempts ADD COLUMN day TEXT;"
    "ALTER TABLE attempts ADD COLUMN user_name TEXT;"
    "ALTER TABLE attempts ADD COLUMN host TEXT;"
    "UPDATE attempts SET day = strftime('%Y-%m-%d', at, 'unixepoch')"
    " WHERE strftime('%Y-%m', at, 'unixepoch') = month;"
    "ALTER TABLE runs ADD COLUMN user_name TEXT;"
    "ALTER TABLE runs ADD COLUMN host TEXT;"
    DAY_TOTALS_TABLE
    "INSERT INTO day_totals(day, charged_pusd, booked_pusd)"
    " SELECT " DAY_KEY("a") ", SUM(" PUSD("a") "), SUM(" BOOKED_PUSD("a") ") FROM attempts a"
    " GROUP BY 1;"
    "DROP TABLE month_totals;"
    "DROP VIEW ledger;"
    LEDGER_VIEW_V9
    DAYS_INSERT_TRIGGER
    DAYS_DELETE_TRIGGER
    DAYS_SETTLE_TRIGGER
    DAYS_MOVE_TRIGGER;

/* Schema version 11: what a routing policy learns from (candidate.history,
 * engine/history). An attempt keeps its task's complexity and its check's
 * score (NULL: none, or booked by an older flowrun). routing_evidence is
 * each settled attempt as evidence: its key (endpoint, task type, '-' for
 * none, complexity band 0.2 wide, 0..4, NULL complexity in 0.5's),
 * whether it passed, was gated (a reply that passed or failed its gates)
 * or had no reply (error, timeout), and the bins of its latency and time
 * to first content (a quarter of an octave of milliseconds each, bin =
 * floor(4 log2(max(ms, 1))), 0..127; -1 without one). routing_history sums
 * it per key: raw counts, the gated passes and fails decayed (a half-life
 * of 30 days) as sums of 2^((at - w_ref) / half-life) relative to w_ref,
 * the key's first gated attempt (a double holds them for some eighty
 * years), the newest gated attempt, and the sums the means are read from;
 * routing_bins counts the gated attempts per pair of bins, the medians read
 * from its two margins. The ledger (history_table.c) adds each attempt it
 * books or settles in the same transaction, one row of each updated (a
 * trigger cost twice as much per attempt); this migration sums the
 * attempts booked before it, with SQLite's math functions (Debian's
 * libsqlite3 has them). */
#define HIST_GATED(r)                                                                              \
    "(" r ".outcome = 'ok' OR " r ".outcome = 'quality' OR " r ".outcome = 'truncated' OR "        \
    r ".outcome = 'refused' OR " r ".outcome = 'no_answer' OR " r ".outcome = 'tool_call')"
#define HIST_BIN(v) "MIN(127, CAST(floor(4 * log2(MAX(" v ", 1))) AS INTEGER))"
#define HISTORY_VIEW                                                                               \
    "CREATE VIEW routing_evidence AS"                                                              \
    " SELECT a.id, a.endpoint AS ep, COALESCE(a.task_type, '-') AS ty,"                            \
    " MIN(4, MAX(0, CAST(COALESCE(a.complexity, 0.5) * 5 AS INTEGER))) AS band,"                   \
    " a.outcome = 'ok' AS pass, " HIST_GATED("a") " AS gated,"                                     \
    " a.outcome = 'error' OR a.outcome = 'timeout' AS err, a.at, a.score, a.cost_usd,"             \
    " a.output_tokens, a.latency_ms, " HIST_BIN("a.latency_ms") " AS lat_bin,"                     \
    " CASE WHEN a.ttft_ms IS NOT NULL THEN " HIST_BIN("a.ttft_ms") " ELSE -1 END AS ttft_bin"      \
    " FROM attempts a WHERE a.outcome != 'pending';"
#define HISTORY_TABLES                                                                             \
    "CREATE TABLE routing_history ("                                                               \
    "endpoint TEXT NOT NULL,"                                                                  \
    "task_type TEXT NOT NULL,"                                                                  \
    "band INTEGER NOT NULL,"                                                               \
    "settled INTEGER NOT NULL DEFAULT 0,"                                                     \
    "passes INTEGER NOT NULL DEFAULT 0,"                                                     \
    "fails INTEGER NOT NULL DEFAULT 0,"                                                     \
    "errors INTEGER NOT NULL DEFAULT 0,"                                                     \
    "w_pass REAL NOT NULL DEFAULT 0,"                                                        \
    "w_fail REAL NOT NULL DEFAULT 0,"                                                        \
    "w_ref REAL,"                                                                           \
    "last_at REAL,"                                                                           \
    "score_sum REAL NOT NULL DEFAULT 0,"                                                        \
    "score_n INTEGER NOT NULL DEFAULT 0,"                                                     \
    "cost_sum REAL NOT NULL DEFAULT 0,"                                                        \
    "out_tokens INTEGER NOT NULL DEFAULT 0,"                                                     \
    "reply_ms REAL NOT NULL DEFAULT 0,"                                                        \
    "PRIMARY KEY (endpoint, task_type, band)"                                                    \
    ") WITHOUT ROWID;"                                                                             \
    "CREATE TABLE routing_bins ("                                                                  \
    "endpoint TEXT NOT NULL,"                                                                  \
    "task_type TEXT NOT NULL,"                                                                  \
    "band INTEGER NOT NULL,"                                                               \
    "lat_bin INTEGER NOT NULL,"                                                               \
    "ttft_bin INTEGER NOT NULL,"                                                               \
    "n INTEGER NOT NULL DEFAULT 0,"                                                     \
    "PRIMARY KEY (endpoint, task_type, band, lat_bin, ttft_bin)"                                       \
    ") WITHOUT ROWID;"
/* The attempts of an older flowrun, summed once (each key's decayed sums
 * relative to its first gated attempt). */
#define HISTORY_BACKFILL                                                                           \
    "INSERT INTO routing_history SELECT ep, ty, band, COUNT(*), SUM(pass), SUM(gated AND NOT pass)," \
    " SUM(err), TOTAL(CASE WHEN pass THEN pow(2, (at - ref) / 2592000.0) END),"                   \
    " TOTAL(CASE WHEN gated AND NOT pass THEN pow(2, (at - ref) / 2592000.0) END), MIN(ref),"     \
    " MAX(CASE WHEN gated THEN at END), TOTAL(CASE WHEN gated THEN score END),"                    \
    " SUM(gated AND score IS NOT NULL), TOTAL(cost_usd),"                                          \
    " SUM(CASE WHEN gated THEN output_tokens ELSE 0 END), TOTAL(CASE WHEN gated THEN latency_ms END)" \
    " FROM (SELECT *, MIN(CASE WHEN gated THEN at END) OVER (PARTITION BY ep, ty, band) AS ref"    \
    " FROM routing_evidence) GROUP BY ep, ty, band;"                                               \
    "INSERT INTO routing_bins SELECT ep, ty, band, lat_bin, ttft_bin, COUNT(*) FROM routing_evidence" \
    " WHERE gated GROUP BY 1, 2, 3, 4, 5;"
static const char schema_v11[] =
    "ALTER TABLE attempts ADD COLUMN complexity REAL;"
    "ALTER TABLE attempts ADD COLUMN score REAL;"
    HISTORY_VIEW
    HISTORY_TABLES
    HISTORY_BACKFILL;

/* Schema version 12: the slots held counted from the index alone. A
 * conditional reservation counts an endpoint and model's in-flight attempts
 * by owner; version 9's index (endpoint, owner_id) left SQLite reading each
 * row for its model and outcome and grouping them in a temporary b-tree:
 * 157k instructions a reservation at 64 in flight. This one holds every
 * column the count reads, so the count is a walk of one range of it. */
#define ATTEMPTS_SLOTS_INDEX                                                                       \
    "CREATE INDEX attempts_slots ON attempts(endpoint, model, owner_id, outcome)"                  \
    " WHERE outcome = 'pending';"
/* And the day totals' triggers run only for a change of what they sum: a
 * $0 attempt (a local endpoint's, each a slot of a shared one reserved at
 * dispatch and settled at its reply) wrote its day's row twice to add
 * nothing, about a third of its settle. A day with no charge has no row,
 * which reads as 0 ($0) like every total (TOTAL over its rows). */
#define DAYS_INSERT_TRIGGER_V12                                                                    \
    "CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts"                               \
    " WHEN " PUSD("NEW") " != 0 BEGIN " ADD_DAY("NEW") " END;"
#define DAYS_DELETE_TRIGGER_V12                                                                    \
    "CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts"                               \
    " WHEN " PUSD("OLD") " != 0 BEGIN " SUB_DAY("OLD") " END;"
/* Whether an attempt's charge or booking changed. */
#define DAYS_TOTALS_CHANGE                                                                         \
    "(" PUSD("OLD") " != " PUSD("NEW") " OR " BOOKED_PUSD("OLD") " != " BOOKED_PUSD("NEW") ")"
#define DAYS_SETTLE_TRIGGER_V12                                                                    \
    "CREATE TRIGGER attempts_totals_settle AFTER UPDATE OF cost_usd, outcome ON attempts"          \
    " WHEN OLD.month = NEW.month AND OLD.day IS NEW.day AND " DAYS_TOTALS_CHANGE DAYS_SETTLE_BODY
static const char schema_v12[] = "DROP INDEX attempts_in_flight;" ATTEMPTS_SLOTS_INDEX
                                 "DROP TRIGGER attempts_totals_insert;"
                                 "DROP TRIGGER attempts_totals_delete;"
                                 "DROP TRIGGER attempts_totals_settle;"
                                 DAYS_INSERT_TRIGGER_V12 DAYS_DELETE_TRIGGER_V12
                                 DAYS_SETTLE_TRIGGER_V12;

/* Schema version 13: the day totals' triggers cheaper for an attempt of
 * $0 (each a slot of a shared endpoint, reserved at dispatch and settled
 * at its reply, when its endpoint is free), with the same sums for every
 * write. SQLite runs an UPDATE's trigger program for each row when the
 * statement sets a column of its list, and the program tests the WHEN: two
 * triggers that did nothing cost a $0 settle 17k instructions of its 42k.
 * - The move trigger lists month and day only: it sums their change (cost
 *   and outcome changes that come with it included; the settle trigger's
 *   WHEN leaves those rows to it), and no other write can change them.
 * - The WHEN of the insert, delete and settle triggers first compares the
 *   cost itself with 0: an attempt of $0 before and after is charged and
 *   booked $0, and round() is not called for it. */
#define COST_NONZERO(r) r ".cost_usd != 0"
#define DAYS_INSERT_TRIGGER_V13                                                                    \
    "CREATE TRIGGER attempts_totals_insert AFTER INSERT ON attempts"                               \
    " WHEN " COST_NONZERO("NEW") " AND " PUSD("NEW") " != 0 BEGIN " ADD_DAY("NEW") " END;"
#define DAYS_DELETE_TRIGGER_V13                                                                    \
    "CREATE TRIGGER attempts_totals_delete AFTER DELETE ON attempts"                               \
    " WHEN " COST_NONZERO("OLD") " AND " PUSD("OLD") " != 0 BEGIN " SUB_DAY("OLD") " END;"
#define DAYS_SETTLE_TRIGGER_V13                                                                    \
    "CREATE TRIGGER attempts_totals_settle AFTER UPDATE OF cost_usd, outcome ON attempts"          \
    " WHEN (" COST_NONZERO("OLD") " OR " COST_NONZERO("NEW") ") AND OLD.month = NEW.month"         \
    " AND OLD.day IS NEW.day AND " DAYS_TOTALS_CHANGE DAYS_SETTLE_BODY
#define DAYS_MOVE_TRIGGER_V13                                                                      \
    "CREATE TRIGGER attempts_totals_move AFTER UPDATE OF month, day ON attempts" DAYS_MOVE_BODY
static const char schema_v13[] = "DROP TRIGGER attempts_totals_insert;"
                                 "DROP TRIGGER attempts_totals_delete;"
                                 "DROP TRIGGER attempts_totals_settle;"
                                 "DROP TRIGGER attempts_totals_move;"
                                 DAYS_INSERT_TRIGGER_V13 DAYS_DELETE_TRIGGER_V13
                                 DAYS_SETTLE_TRIGGER_V13 DAYS_MOVE_TRIGGER_V13;

/* Schema version 14: the slots of a shared endpoint's $0 requests
 * counted per owner. Such a request has no charge to keep, so it is booked
 * once, when it ends, like any $0 attempt: its slot is one in its owner's
 * count of the endpoint and model (written with the turn's commit, the
 * count of the turn's end), not an in-flight row inserted at dispatch and
 * updated at its reply (62k instructions of SQLite a request, and the pages
 * of both rows and of the slots index written by two commits). A priced
 * request's slot is still its in-flight row, the charge a crash keeps. An
 * owner's counts go with its row. */
#define OWNER_SLOTS_TABLE_AS(more)                                                                 \
    "CREATE TABLE owner_slots ("                                                                   \
    "  owner_id TEXT NOT NULL,"                                                                    \
    "  endpoint TEXT NOT NULL,"                                                                    \
    "  model    TEXT NOT NULL," /* '' for none */                                                  \
    "  held     INTEGER NOT NULL CHECK (held >= 0)," more                                          \
    "  PRIMARY KEY (owner_id, endpoint, model)) WITHOUT ROWID;"                                    \
    "CREATE TRIGGER owners_slots_end AFTER DELETE ON owners"                                       \
    " BEGIN DELETE FROM owner_slots WHERE owner_id = OLD.id; END;"
static const char schema_v14[] = OWNER_SLOTS_TABLE_AS("");
/* Schema 15: when the owner's oldest request waiting for a slot of the
 * endpoint and model began to wait (unix seconds), NULL while none waits.
 * A process taking a slot leaves it to an owner that waits and holds fewer
 * (fr_store_reserve_slot), so that one run's queue does not keep every slot
 * it frees from another process. */
#define OWNER_SLOTS_WAITING " waiting_since REAL,"
static const char schema_v15[] = "ALTER TABLE owner_slots ADD COLUMN waiting_since REAL;";

/* The current schema (version FR_STORE_SCHEMA_VERSION) as one set of
 * statements: what a new store is created from, instead of running every
 * migration (SQLite parsing eight migrations, tables built and rebuilt, was
 * most of a new store's open). It is the database migrations 0 .. v-1 make,
 * table for table, column for column, index, view and trigger for each
 * (tests/unit/test_store_open.c compares the two, so they cannot drift): a
 * new migration changes it too, in the same change. */
static const char *const schema_current[] = {
    META_TABLE
    RUNS_TABLE(","
               "  pid        INTEGER,"
               "  pid_start  INTEGER NOT NULL DEFAULT 0,"
               "  boot_id    TEXT NOT NULL DEFAULT '',"
               "  user_name  TEXT,"
               "  host       TEXT")
    "CREATE INDEX runs_started ON runs(started_at);"
    "CREATE INDEX runs_running ON runs(id) WHERE status = 'running';"
    "CREATE INDEX runs_workflow ON runs(workflow, started_at);"
    ATTEMPTS_TABLE_AS("attempts", ATTEMPTS_OUTCOME_V8, ATTEMPTS_MORE_V8 ","
                      "  owner_id        TEXT,"
                      "  day             TEXT,"
                      "  user_name       TEXT,"
                      "  host            TEXT,"
                      "  complexity      REAL,"
                      "  score           REAL")
    "CREATE INDEX attempts_run ON attempts(run_id, month);",
    /* (in parts: a C string literal stays within 4,095 bytes) */
    LEASES_TABLE
    LEDGER_VIEW_V9
    CACHE_TABLE
    APPROVALS_TABLE
    DAY_TOTALS_TABLE,
    DAYS_INSERT_TRIGGER_V13
    DAYS_DELETE_TRIGGER_V13
    DAYS_SETTLE_TRIGGER_V13
    DAYS_MOVE_TRIGGER_V13
    REPORTS_TABLE("reports"),
    OWNERS_TABLE
    ATTEMPTS_SLOTS_INDEX,
    HISTORY_VIEW
    HISTORY_TABLES,
    OWNER_SLOTS_TABLE_AS(OWNER_SLOTS_WAITING),
    NULL};
// clang-format on

/* How many parts schema_current has. */
#define SCHEMA_PARTS (sizeof schema_current / sizeof *schema_current - 1)

/* migrations[v] takes a database from version v to v + 1. */
static const char *const migrations[FR_STORE_SCHEMA_VERSION] = {
    schema_v1, schema_v2,  schema_v3,  schema_v4,  schema_v5,  schema_v6,  schema_v7, schema_v8,
    schema_v9, schema_v10, schema_v11, schema_v12, schema_v13, schema_v14, schema_v15};

/* One part of the current schema's SQL; see store.h. */
const char *fr_store_schema_sql(int part)
{
    return part >= 0 && (size_t)part < SCHEMA_PARTS ? schema_current[part] : NULL;
}

/* The SQL of one migration; see store.h. */
const char *fr_store_migration_sql(int from)
{
    return from >= 0 && from < FR_STORE_SCHEMA_VERSION ? migrations[from] : NULL;
}

/* ---- open and close ----------------------------------------------------------- */

/* Runs a one-row query without parameters; *value is its first column as an
 * integer. Returns SQLite's code: SQLITE_ROW, SQLITE_DONE (no row) or an error. */
static int query_int(sqlite3 *db, const char *sql, sqlite3_int64 *value)
{
    sqlite3_stmt *s = NULL;
    int src = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (src == SQLITE_OK) {
        src = sqlite3_step(s);
        if (src == SQLITE_ROW) {
            int type = sqlite3_column_type(s, 0);
            const unsigned char *t = sqlite3_column_text(s, 0);
            char *end = NULL;
            *value = type == SQLITE_INTEGER ? sqlite3_column_int64(s, 0)
                     : t                    ? strtoll((const char *)t, &end, 10)
                                            : 0;
            if (type != SQLITE_INTEGER && (!t || !*t || !end || *end))
                src = SQLITE_MISMATCH;
        }
    }
    sqlite3_finalize(s);
    return src;
}

/* Reads the schema version inside the open transaction: 0 for an empty
 * database; refuses a database that is not flowrun's. */
static int schema_version(fr_store *st, sqlite3_int64 *version, fr_error *err)
{
    sqlite3_int64 n = 0;
    *version = 0;
    if (query_int(st->db,
                  "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                  &n) != SQLITE_ROW)
        return fr_store_db_error(st, err, "cannot read the state database's schema");
    if (n == 0) {
        if (query_int(st->db, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                      &n) != SQLITE_ROW)
            return fr_store_db_error(st, err, "cannot read the state database's schema");
        if (n > 0)
            return fr_error_set(err, FR_ESTORE, st->path, 0,
                                "a SQLite database, but not flowrun's state: is the state path "
                                "right?");
        return FR_OK;
    }
    int src = query_int(st->db, "SELECT value FROM meta WHERE key = 'schema_version'", version);
    if (src == SQLITE_ROW && *version >= 1)
        return FR_OK;
    if (src == SQLITE_ROW || src == SQLITE_DONE || src == SQLITE_MISMATCH)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "the state database has no valid schema version: is it flowrun's?");
    return fr_store_db_error(st, err, "cannot read the state database's schema version");
}

/* Checks the database's pages (PRAGMA quick_check: every b-tree page well
 * formed, no page used twice or lost) before anything is read from it or
 * sent on its strength: a damaged store stops the run at open, not midway.
 * Bounded: a database up to FR_STORE_CHECK_BYTES is checked whole (about a
 * tenth of a second per 100 MB when the file is in the page cache); a
 * bigger one has its ledger tables checked and the result cache left to the
 * reads, where a damaged entry is a miss. */
static int check_pages(fr_store *st, fr_error *err)
{
    static const char *const whole[] = {"PRAGMA quick_check", NULL};
    static const char *const ledger[] = {"PRAGMA quick_check('meta')", "PRAGMA quick_check('runs')",
                                         "PRAGMA quick_check('attempts')",
                                         "PRAGMA quick_check('leases')", NULL};
    struct stat sb;
    const char *const *checks =
        stat(st->path, &sb) == 0 && sb.st_size > FR_STORE_CHECK_BYTES ? ledger : whole;
    int rc = FR_OK;
    for (; rc == FR_OK && *checks; checks++) {
        sqlite3_stmt *s = NULL;
        char first[200] = "";
        int step = sqlite3_prepare_v2(st->db, *checks, -1, &s, NULL);
        if (step == SQLITE_OK)
            step = sqlite3_step(s);
        if (step == SQLITE_ROW)
            fr_store_column_copy(s, 0, first, sizeof first);
        else
            snprintf(first, sizeof first, "%s", sqlite3_errmsg(st->db));
        if (strcmp(first, "ok") != 0)
            rc = fr_error_set(err, FR_ESTORE, st->path, 0,
                              "the state database is damaged (SQLite's check says: %s); nothing "
                              "was sent. Restore it from a backup; or, to start a new ledger on "
                              "purpose, remove it and %s.id (or the whole state folder)",
                              first, st->path);
        sqlite3_finalize(s);
    }
    return rc;
}

/* Reads the schema version from one snapshot of the database (its two
 * queries in one read transaction, unless one is open already): a store
 * another process creates meanwhile is seen whole or not at all. */
static int schema_snapshot(fr_store *st, sqlite3_int64 *version, fr_error *err)
{
    bool own = sqlite3_get_autocommit(st->db) != 0;
    if (own && sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return fr_store_db_error(st, err, "cannot read the state database");
    int rc = schema_version(st, version, err);
    if (own)
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL); /* a read: nothing to lose */
    return rc;
}

/* Opens the connection and sets it up: read-write, WAL, pragmas. `marked`:
 * the store's marker existed before the database was read. */
static int connect_db(fr_store *st, bool marked, fr_error *err)
{
    int rc = FR_OK;
    sqlite3_stmt *s = NULL;
    sqlite3_int64 version = 0;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(st->path, &st->db, flags, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot open the state database");
        goto cleanup;
    }
    sqlite3_extended_result_codes(st->db, 1);
    if (sqlite3_db_readonly(st->db, "main") != 0) {
        rc = fr_error_set(err, FR_ESTORE, st->path, 0,
                          "cannot open the state database for writing: it is read-only");
        goto cleanup;
    }
    sqlite3_busy_timeout(st->db, FR_STORE_BUSY_MS);
    /* Read before anything is written, WAL mode included: a file that is not
     * a database, or someone else's database, is refused untouched. */
    rc = schema_snapshot(st, &version, err);
    if (rc == FR_OK && version == 0 && marked)
        rc = fr_store_marker_refusal(st->path,
                                     err); /* a 0-byte file, or one emptied of the tables */
    if (rc == FR_OK && version > 0)
        rc = check_pages(st, err);
    if (rc != FR_OK)
        goto cleanup;
    /* Switching to WAL needs a moment alone with a new database, and SQLite
     * does not wait for it (the busy handler is not called): when another
     * flowrun opens the same new file at once, retry for the busy timeout.
     * This runs before the loop starts, so the wait blocks nothing. */
    int step = SQLITE_BUSY;
    for (int waited = 0; waited <= FR_STORE_BUSY_MS; waited += 10) {
        if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK)
            break;
        step = sqlite3_step(s);
        if ((step & 0xff) != SQLITE_BUSY && (step & 0xff) != SQLITE_LOCKED)
            break;
        sqlite3_finalize(s);
        s = NULL;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!s || step != SQLITE_ROW) {
        rc = fr_store_db_error(st, err, "cannot switch the state database to WAL mode");
        goto cleanup;
    }
    char mode[16];
    fr_store_column_copy(s, 0, mode, sizeof mode);
    sqlite3_finalize(s); /* done with it before the next statement */
    s = NULL;
    if (strcmp(mode, "wal") != 0) {
        rc = fr_error_set(err, FR_ESTORE, st->path, 0,
                          "cannot use WAL mode on the state database (journal mode is %s): "
                          "is it on a network file system?",
                          mode);
        goto cleanup;
    }
    if (sqlite3_exec(st->db, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL,
                     NULL) != SQLITE_OK)
        rc = fr_store_db_error(st, err, "cannot set up the state database");
cleanup:
    sqlite3_finalize(s);
    return rc;
}

/* Creates or migrates the schema in one transaction. */
static int migrate(fr_store *st, fr_error *err)
{
    int rc = FR_OK;
    sqlite3_stmt *s = NULL;
    sqlite3_int64 version = 0;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot lock the state database");
        goto cleanup;
    }
    rc = schema_version(st, &version, err);
    if (rc != FR_OK)
        goto cleanup;
    if (version > FR_STORE_SCHEMA_VERSION) {
        rc = fr_error_set(err, FR_ESTOREVER, st->path, 0,
                          "the state database has schema version %lld, but this flowrun knows "
                          "versions up to %d: upgrade flowrun to use it",
                          (long long)version, FR_STORE_SCHEMA_VERSION);
        goto cleanup;
    }
    if (version == FR_STORE_SCHEMA_VERSION)
        goto cleanup;
    /* A new store is made as the current schema at once; an older one is
     * taken through each migration it lacks. */
    const char *const *steps = version == 0 ? schema_current : migrations + version;
    size_t nsteps = version == 0 ? SCHEMA_PARTS : (size_t)(FR_STORE_SCHEMA_VERSION - version);
    for (size_t i = 0; i < nsteps; i++) {
        if (sqlite3_exec(st->db, steps[i], NULL, NULL, NULL) != SQLITE_OK) {
            rc = fr_store_db_error(st, err, "cannot create the state database's schema");
            goto cleanup;
        }
    }
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot write the schema version");
        goto cleanup;
    }
    sqlite3_bind_int(s, 1, FR_STORE_SCHEMA_VERSION);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = fr_store_db_error(st, err, "cannot write the schema version");
        goto cleanup;
    }
cleanup:
    sqlite3_finalize(s);
    if (rc == FR_OK && !sqlite3_get_autocommit(st->db) &&
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = fr_store_db_error(st, err, "cannot commit the state database's schema");
    if (rc != FR_OK && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Creates the state folder, the directory of the database at `path`, and
 * every missing one above it, mode 0700 (the cache will hold replies).
 * Errors name the database as their source. */
static int make_state_dir(const char *path, fr_error *err)
{
    int rc = FR_OK;
    char *dir = fr_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        goto cleanup;
    *slash = '\0';
    fr_error made = {0};
    int mrc = fr_mkdir_p(dir, 0700, &made);
    int why = mrc == FR_OK ? 0 : errno;
    if (mrc == FR_OK || why == ENOTDIR) {
        /* A file where a directory should be: the deepest name of `dir`
         * that exists is the one to blame. */
        struct stat sb;
        bool found;
        while (!(found = stat(dir, &sb) == 0) && (slash = strrchr(dir, '/')) && slash != dir)
            *slash = '\0';
        if (found && !S_ISDIR(sb.st_mode)) {
            rc = fr_error_set(err, FR_ESTORE, path, 0,
                              "cannot create the state database: %s "
                              "is not a directory",
                              dir);
            goto cleanup;
        }
    }
    if (mrc != FR_OK)
        rc = fr_error_set(err, FR_ESTORE, path, 0, "cannot create directory %s: %s", made.source,
                          strerror(why));
cleanup:
    free(dir);
    return rc;
}

/* What both opens check first: a path and a place for the store, and, when
 * the marker says a store existed, its database (before SQLite creates a
 * file). Sets *marked. */
static int check_open(const char *path, fr_store **out, bool *marked, fr_error *err)
{
    struct stat sb;
    if (out)
        *out = NULL;
    if (!out || !path || !*path)
        return fr_error_set(err, FR_EINVAL, path ? path : "", 0, "no state database path");
    *marked = fr_store_has_marker(path);
    if (*marked && stat(path, &sb) != 0)
        return fr_store_marker_refusal(path, err);
    return FR_OK;
}

/* SQLite's process-wide settings, made once before its first connection:
 * no memory statistics (nothing reads them, and keeping them takes a mutex
 * around every allocation SQLite makes). Refused harmlessly when SQLite is
 * in use already. */
static pthread_once_t sqlite_configured = PTHREAD_ONCE_INIT;

static void configure_sqlite(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* Returns a new store for `path` (borrowed, copied), of this process. */
static fr_store *store_new(const char *path)
{
    pthread_once(&sqlite_configured, configure_sqlite);
    fr_store *st = fr_xcalloc(1, sizeof *st);
    st->path = fr_xstrdup(path);
    st->pid = getpid();
    st->fork_gen = fr_store_fork_gen();
    st->wal_frames = -1; /* not counted: SQLite checkpoints after the commits */
    return st;
}

/* fr_store_open or fr_store_open_readonly of a PostgreSQL URL: a store
 * whose readers (and an approval's decision) ask the database through
 * engine/store/pgread, named by the masked URL; see store.h. */
static int open_pg(const char *url, fr_store **out, fr_error *err)
{
    *out = NULL;
    fr_pgread *pg = NULL;
    int rc = fr_pgread_open(url, &pg, err);
    if (rc != FR_OK)
        return rc;
    fr_store *st = store_new(fr_pgread_source(pg));
    st->pg = pg;
    *out = st;
    return FR_OK;
}

/* Opens, creates or migrates the state database; see store.h. */
int fr_store_open(const char *path, fr_store **out, fr_error *err)
{
    fr_store *st = NULL;
    bool marked = false;
    if (fr_pgurl_is_url(path) && out)
        return open_pg(path, out, err);
    int rc = check_open(path, out, &marked, err);
    if (rc == FR_OK)
        rc = make_state_dir(path, err);
    if (rc != FR_OK)
        goto cleanup;
    st = store_new(path);
    fr_store_identify(st);
    rc = connect_db(st, marked, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = migrate(st, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = fr_store_prepare_all(st, err);
    if (rc != FR_OK)
        goto cleanup;
    fr_store_write_marker(st);
    *out = st;
    st = NULL;
cleanup:
    fr_store_close(st);
    return rc;
}

/* Returns an owned "file:" URI for `path`, read-only, and immutable when
 * `immutable`: '%', '?' and '#' of the path are percent-encoded. */
static char *uri_for(const char *path, bool immutable)
{
    size_t n = strlen(path);
    char *u = fr_xmalloc(n * 3 + 40), *o = u;
    o += sprintf(o, "file:");
    for (const char *p = path; *p; p++) {
        if (*p == '%' || *p == '?' || *p == '#')
            o += sprintf(o, "%%%02X", (unsigned char)*p);
        else
            *o++ = *p;
    }
    sprintf(o, "?mode=ro%s", immutable ? "&immutable=1" : "");
    return u;
}

/* Opens an existing database for reading only; see store.h. */
int fr_store_open_readonly(const char *path, fr_store **out, fr_error *err)
{
    fr_store *st = NULL;
    sqlite3_int64 version = 0;
    struct stat sb;
    bool marked = false;
    if (fr_pgurl_is_url(path) && out)
        return open_pg(path, out, err);
    int rc = check_open(path, out, &marked, err);
    if (rc != FR_OK)
        goto cleanup;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = fr_error_set(err, FR_ENOENT, path, 0, "no state database");
        goto cleanup;
    }
    st = store_new(path);
    /* A read-only connection to a WAL database creates its -wal and -shm
     * files when they are missing, and leaves them. They are missing only
     * when no connection is open and the last one checkpointed everything
     * into the main file: then that file is the whole database, and reading
     * it as immutable creates nothing. (A run starting meanwhile writes its
     * WAL for far longer than this read before it checkpoints.) */
    char *wal = fr_xasprintf("%s-wal", path);
    bool no_wal = stat(wal, &sb) != 0;
    free(wal);
    char *uri = uri_for(path, no_wal);
    int orc = sqlite3_open_v2(uri, &st->db,
                              SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI, NULL);
    free(uri);
    if (orc != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot open the state database");
        goto cleanup;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, FR_STORE_BUSY_MS);
    rc = schema_snapshot(st, &version, err);
    if (rc != FR_OK)
        goto cleanup;
    if (version > FR_STORE_SCHEMA_VERSION) {
        rc = fr_error_set(err, FR_ESTOREVER, path, 0,
                          "the state database has schema version %lld, but this flowrun knows "
                          "versions up to %d: upgrade flowrun to read it",
                          (long long)version, FR_STORE_SCHEMA_VERSION);
        goto cleanup;
    }
    if (version == 0) {
        rc = marked ? fr_store_marker_refusal(path, err)
                    : fr_error_set(err, FR_ENOENT, path, 0, "the state database is empty");
        goto cleanup;
    }
    if (version < FR_STORE_SCHEMA_VERSION) {
        rc = fr_error_set(err, FR_ESTORE, path, 0,
                          "the state database has schema version %lld, older than this "
                          "flowrun's %d: a run with this flowrun updates it",
                          (long long)version, FR_STORE_SCHEMA_VERSION);
        goto cleanup;
    }
    rc = fr_store_prepare_all(st, err);
    if (rc != FR_OK)
        goto cleanup;
    *out = st;
    st = NULL;
cleanup:
    fr_store_close(st);
    return rc;
}

/* Closes and frees; see store.h. */
void fr_store_close(fr_store *st)
{
    if (!st)
        return;
    if (st->pg) {
        fr_pgread_close(st->pg);
    } else if (fr_store_fork_gen() == st->fork_gen) {
        fr_error err = {0};
        if (fr_store_flush(st, &err) != FR_OK) {
            /* Nobody left to tell but the log: the caller flushes first. */
            char msg[1400];
            fr_log_event(FR_LOG_ERROR, "store", "store.error", "error=\"%s\"",
                         fr_error_format(&err, msg, sizeof msg));
        }
        for (int i = 0; i < S_COUNT; i++)
            sqlite3_finalize(st->stmt[i]);
        sqlite3_close(st->db);
    }
    fr_store_history_forget(st, true);
    fr_store_slots_forget(st, true);
    free(st->path);
    free(st);
}

/* Sets the store's clock; see store.h. */
void fr_store_set_clock(fr_store *st, time_t now)
{
    st->clock = now;
}

/* Writes the current UTC month; see store.h. */
char *fr_store_month(const fr_store *st, char out[FR_STORE_MONTH_LEN])
{
    fr_store_month_of(st->clock ? st->clock : time(NULL), out);
    return out;
}

/* Writes the current UTC day; see store.h. */
char *fr_store_day(const fr_store *st, char out[FR_STORE_DAY_LEN])
{
    fr_store_day_of(st->clock ? st->clock : time(NULL), out);
    return out;
}
