/* The state store on SQLite. Every statement is prepared once at open and
 * reused; every write is one short transaction. The multi-statement writes
 * (a lease, a run's start, which marks crashed runs, and a booking that reads
 * the month's total) run under BEGIN IMMEDIATE, which takes the write lock
 * before the first read, so two processes doing them at once are serialised
 * and the second sees what the first wrote. An attempt is booked twice: in
 * flight before its request is sent, and settled when its reply is booked. */

#include "engine/store.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* Schema version 1. Later versions append a migration to `migrations`. */
static const char schema_v1[] =
    "CREATE TABLE meta ("
    "  key   TEXT PRIMARY KEY,"
    "  value"
    ");"
    "CREATE TABLE runs ("
    "  id         TEXT PRIMARY KEY,"
    "  workflow   TEXT NOT NULL,"
    "  wf_path    TEXT,"
    "  started_at REAL NOT NULL,"
    "  ended_at   REAL,"
    "  status     TEXT NOT NULL DEFAULT 'running',"
    "  exit_code  INTEGER,"
    "  cost_usd   REAL NOT NULL DEFAULT 0 CHECK (cost_usd >= 0)"
    ");"
    "CREATE INDEX runs_started ON runs(started_at);"
    "CREATE TABLE attempts ("
    "  id              INTEGER PRIMARY KEY,"
    "  run_id          TEXT NOT NULL REFERENCES runs(id),"
    "  task            TEXT NOT NULL,"
    "  attempt         INTEGER NOT NULL CHECK (attempt >= 1),"
    "  endpoint        TEXT NOT NULL,"
    "  tier            TEXT NOT NULL CHECK (tier IN ('local', 'cloud')),"
    "  model           TEXT,"
    "  input_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),"
    "  output_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),"
    "  cached_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),"
    "  usage_estimated INTEGER NOT NULL DEFAULT 0 CHECK (usage_estimated IN (0, 1)),"
    "  cost_usd        REAL NOT NULL CHECK (cost_usd >= 0),"
    "  latency_ms      REAL NOT NULL DEFAULT 0,"
    "  outcome         TEXT NOT NULL CHECK (outcome IN"
    "                    ('ok', 'quality', 'error', 'timeout', 'cancelled', 'budget')),"
    "  error           TEXT,"
    "  at              REAL NOT NULL,"
    "  month           TEXT NOT NULL"
    ");"
    "CREATE INDEX attempts_month ON attempts(month);"
    "CREATE INDEX attempts_run ON attempts(run_id, month);"
    /* A lease is a share of one month's cap held by one process for one run.
     * pid_start (the process's start time in clock ticks after boot, 0 when
     * unknown) and boot_id tell a live holder from a reused pid or a holder
     * from before a reboot. spent_usd is what the run had spent when the
     * lease was closed. */
    "CREATE TABLE leases ("
    "  id        INTEGER PRIMARY KEY,"
    "  run_id    TEXT NOT NULL REFERENCES runs(id),"
    "  month     TEXT NOT NULL,"
    "  amount    REAL NOT NULL CHECK (amount >= 0),"
    "  pid       INTEGER NOT NULL,"
    "  pid_start INTEGER NOT NULL DEFAULT 0,"
    "  boot_id   TEXT NOT NULL DEFAULT '',"
    "  opened_at REAL NOT NULL,"
    "  closed_at REAL,"
    "  closed_by TEXT CHECK (closed_by IN ('released', 'reclaimed')),"
    "  spent_usd REAL"
    ");"
    "CREATE INDEX leases_open ON leases(month) WHERE closed_at IS NULL;"
    "CREATE UNIQUE INDEX leases_one_open ON leases(run_id, month) WHERE closed_at IS NULL;"
    /* The cost ledger: every attempt with its workflow. Monthly caps and the
     * spend report read it. */
    "CREATE VIEW ledger AS"
    "  SELECT a.month, a.at, r.workflow, a.run_id, a.task, a.attempt, a.endpoint, a.tier,"
    "         a.model, a.input_tokens, a.output_tokens, a.cached_tokens, a.usage_estimated,"
    "         a.cost_usd, a.outcome"
    "  FROM attempts a JOIN runs r ON r.id = a.run_id;"
    /* The result cache, keyed by a hash of everything that shapes a result. */
    "CREATE TABLE cache ("
    "  key        TEXT PRIMARY KEY,"
    "  endpoint   TEXT NOT NULL,"
    "  model      TEXT,"
    "  text       TEXT,"
    "  json       TEXT,"
    "  input      INTEGER NOT NULL DEFAULT 0,"
    "  output     INTEGER NOT NULL DEFAULT 0,"
    "  cached     INTEGER NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL"
    ");";

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
    "CREATE TABLE attempts_v2 ("
    "  id              INTEGER PRIMARY KEY,"
    "  run_id          TEXT NOT NULL REFERENCES runs(id),"
    "  task            TEXT NOT NULL,"
    "  attempt         INTEGER NOT NULL CHECK (attempt >= 1),"
    "  endpoint        TEXT NOT NULL,"
    "  tier            TEXT NOT NULL CHECK (tier IN ('local', 'cloud')),"
    "  model           TEXT,"
    "  input_tokens    INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),"
    "  output_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),"
    "  cached_tokens   INTEGER NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),"
    "  usage_estimated INTEGER NOT NULL DEFAULT 0 CHECK (usage_estimated IN (0, 1)),"
    "  cost_usd        REAL NOT NULL CHECK (cost_usd >= 0),"
    "  latency_ms      REAL NOT NULL DEFAULT 0,"
    "  outcome         TEXT NOT NULL CHECK (outcome IN"
    "                    ('ok', 'quality', 'error', 'timeout', 'cancelled', 'budget',"
    "                     'truncated', 'refused', 'tool_call', 'no_answer', 'pending')),"
    "  error           TEXT,"
    "  at              REAL NOT NULL,"
    "  month           TEXT NOT NULL"
    ");"
    "INSERT INTO attempts_v2 SELECT * FROM attempts;"
    "DROP TABLE attempts;"
    "ALTER TABLE attempts_v2 RENAME TO attempts;"
    /* Covers the month's totals (all charges, booked only): read from the
     * index alone, at every lease and, until a run alerts, every booking. */
    "CREATE INDEX attempts_month ON attempts(month, outcome, cost_usd);"
    "CREATE INDEX attempts_run ON attempts(run_id, month);"
    "CREATE VIEW ledger AS"
    "  SELECT a.month, a.at, r.workflow, a.run_id, a.task, a.attempt, a.endpoint, a.tier,"
    "         a.model, a.input_tokens, a.output_tokens, a.cached_tokens, a.usage_estimated,"
    "         a.cost_usd, a.outcome"
    "  FROM attempts a JOIN runs r ON r.id = a.run_id;"
    "ALTER TABLE runs ADD COLUMN pid INTEGER;"
    "ALTER TABLE runs ADD COLUMN pid_start INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE runs ADD COLUMN boot_id TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX runs_running ON runs(id) WHERE status = 'running';";

/* migrations[v] takes a database from version v to v + 1. */
static const char *const migrations[FR_STORE_SCHEMA_VERSION] = {schema_v1, schema_v2};

/* Sum of a closed or open lease's run's attempts in the lease's month. */
#define LEASE_SPENT                                                                                \
    "(SELECT TOTAL(a.cost_usd) FROM attempts a"                                                    \
    " WHERE a.run_id = leases.run_id AND a.month = leases.month)"

enum stmt_id {
    S_BEGIN,
    S_BEGIN_IMMEDIATE,
    S_COMMIT,
    S_ROLLBACK,
    S_RUN_BEGIN,
    S_RUN_END,
    S_ATTEMPT,
    S_RESERVE,
    S_SETTLE,
    S_ATTEMPT_MONTH,
    S_MONTH_SPENT,
    S_MONTH_BOOKED,
    S_RUNNING,
    S_CRASH_PENDING,
    S_CRASH_LEASES,
    S_CRASH_RUN,
    S_OPEN_LEASES,
    S_LEASE_CLOSE,
    S_LEASE_GROW,
    S_LEASE_NEW,
    S_RELEASE,
    S_SPEND,
    S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN",
    [S_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_RUN_BEGIN] = "INSERT INTO runs(id, workflow, wf_path, started_at, pid, pid_start, boot_id)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_RUN_END] = "UPDATE runs SET ended_at = ?2, status = ?3, exit_code = ?4, cost_usd = ?5"
                  " WHERE id = ?1",
    [S_ATTEMPT] = "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, model,"
                  " input_tokens, output_tokens, cached_tokens, usage_estimated, cost_usd,"
                  " latency_ms, outcome, error, at, month)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    [S_RESERVE] = "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, model, cost_usd,"
                  " outcome, at, month) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)",
    [S_SETTLE] = "UPDATE attempts SET input_tokens = ?2, output_tokens = ?3, cached_tokens = ?4,"
                 " usage_estimated = ?5, cost_usd = ?6, latency_ms = ?7, outcome = ?8, error = ?9,"
                 " at = ?10 WHERE id = ?1 AND run_id = ?11 AND outcome = 'pending'",
    [S_ATTEMPT_MONTH] = "SELECT month FROM attempts WHERE id = ?1",
    /* What the month is charged: booked attempts and those in flight at
     * their worst case. */
    [S_MONTH_SPENT] = "SELECT TOTAL(cost_usd) FROM attempts WHERE month = ?1",
    /* What the month's booked replies cost (the monthly alert's total). */
    [S_MONTH_BOOKED] =
        "SELECT TOTAL(cost_usd) FROM attempts WHERE month = ?1 AND outcome != 'pending'",
    [S_RUNNING] = "SELECT id, pid, pid_start, boot_id FROM runs"
                  " WHERE status = 'running' AND pid IS NOT NULL",
    [S_CRASH_PENDING] = "UPDATE attempts SET outcome = 'cancelled', at = ?2, error = 'the run''s"
                        " process died with the request in flight: its worst case is kept'"
                        " WHERE run_id = ?1 AND outcome = 'pending'",
    [S_CRASH_LEASES] =
        "UPDATE leases SET closed_at = ?2, closed_by = 'reclaimed', spent_usd = " LEASE_SPENT
        " WHERE run_id = ?1 AND closed_at IS NULL",
    [S_CRASH_RUN] = "UPDATE runs SET status = 'crashed', ended_at = ?2, cost_usd ="
                    " (SELECT TOTAL(cost_usd) FROM attempts WHERE run_id = ?1)"
                    " WHERE id = ?1 AND status = 'running'",
    [S_OPEN_LEASES] = "SELECT id, run_id, pid, pid_start, boot_id, amount, " LEASE_SPENT
                      " FROM leases WHERE month = ?1 AND closed_at IS NULL",
    [S_LEASE_CLOSE] = "UPDATE leases SET closed_at = ?2, closed_by = ?3, spent_usd = " LEASE_SPENT
                      " WHERE id = ?1 AND closed_at IS NULL",
    [S_LEASE_GROW] = "UPDATE leases SET amount = amount + ?2 WHERE id = ?1",
    [S_LEASE_NEW] = "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
                    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [S_RELEASE] =
        "UPDATE leases SET closed_at = ?2, closed_by = 'released', spent_usd = " LEASE_SPENT
        " WHERE run_id = ?1 AND closed_at IS NULL"
        " AND pid = ?3 AND pid_start = ?4 AND boot_id = ?5",
    [S_SPEND] = "SELECT month, workflow, endpoint, tier, COUNT(*), TOTAL(cost_usd),"
                " SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens), SUM(usage_estimated)"
                " FROM ledger WHERE ?1 IS NULL OR month = ?1"
                " GROUP BY month, workflow, endpoint, tier"
                " ORDER BY month, workflow, endpoint, tier",
};

struct fr_store {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmt[S_COUNT];
    pid_t pid;                    /* the process that opened the store */
    unsigned long long pid_start; /* its start time (clock ticks after boot), 0 unknown */
    char boot_id[64];             /* this boot of the host, "" unknown */
    time_t clock;                 /* 0: the real clock */
};

/* One open lease as read inside a lease transaction. */
typedef struct lease_row {
    sqlite3_int64 id;
    char run[256];
    sqlite3_int64 pid;
    unsigned long long start;
    char boot[64];
    double amount; /* leased */
    double spent;  /* what its run spent in the month */
    bool same_run; /* held for the run asking */
} lease_row;

/* ---- errors ------------------------------------------------------------------ */

/* FR_ESTORE with what failed and SQLite's message (never SQL text or values). */
static int db_error(const fr_store *st, fr_error *err, const char *what)
{
    if (st->db && (sqlite3_extended_errcode(st->db) & 0xff) == SQLITE_NOTADB)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "%s: not a SQLite database: is the state path right?", what);
    return fr_error_set(err, FR_ESTORE, st->path, 0, "%s: %s", what,
                        st->db ? sqlite3_errmsg(st->db) : "out of memory");
}

/* A store is bound to the process that opened it (see fr_store_open). */
static int check_usable(const fr_store *st, fr_error *err)
{
    if (!st)
        return fr_error_set(err, FR_EINVAL, "state", 0, "no state store");
    if (getpid() != st->pid)
        return fr_error_set(err, FR_ESTORE, st->path, 0,
                            "the state store was opened by process %ld: a forked process must "
                            "open its own",
                            (long)st->pid);
    return FR_OK;
}

static bool valid_month(const char *m)
{
    if (!m || strlen(m) != 7 || m[4] != '-')
        return false;
    for (int i = 0; i < 7; i++)
        if (i != 4 && (m[i] < '0' || m[i] > '9'))
            return false;
    int mon = (m[5] - '0') * 10 + (m[6] - '0');
    return mon >= 1 && mon <= 12;
}

static int check_month(const fr_store *st, const char *month, fr_error *err)
{
    if (!valid_month(month))
        return fr_error_set(err, FR_EINVAL, st->path, 0, "month must be \"YYYY-MM\", not \"%s\"",
                            month ? month : "(null)");
    return FR_OK;
}

static bool valid_usd(double v)
{
    return isfinite(v) && v >= 0;
}

/* ---- clock and processes ----------------------------------------------------- */

static double now_seconds(const fr_store *st)
{
    if (st->clock)
        return (double)st->clock;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void month_of(time_t t, char out[FR_STORE_MONTH_LEN])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, FR_STORE_MONTH_LEN, "%Y-%m", &tm) != 7)
        snprintf(out, FR_STORE_MONTH_LEN, "0000-01");
}

/* Reads this boot's id (Linux); leaves "" where there is none. */
static void read_boot_id(char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f)
        return;
    if (fgets(out, (int)size, f))
        out[strcspn(out, "\n")] = '\0';
    else
        out[0] = '\0';
    fclose(f);
}

/* Reads a process's state letter and start time (clock ticks after boot)
 * from /proc (Linux). Returns false when they cannot be read. */
static bool proc_info(long pid, char *state, unsigned long long *start)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold spaces and parentheses, so fields
     * are counted from the last ')'. The start time is field 22. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ' || !p[2])
        return false;
    *state = p[2];
    p += 3;
    for (int field = 4; field <= 22; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return false;
        if (field == 22) {
            char *end;
            errno = 0;
            *start = strtoull(p, &end, 10);
            return end != p && errno == 0;
        }
        p += strcspn(p, " ");
    }
    return false;
}

/* True unless the lease's holder is known to be gone: recorded in another boot
 * of the host, no such pid, a zombie, or a pid reused by a process that
 * started at another time. An unknown is taken as alive: a lease wrongly kept
 * blocks spending, a lease wrongly reclaimed could pass the cap. */
static bool holder_alive(const fr_store *st, const lease_row *l)
{
    if (l->boot[0] && st->boot_id[0] && strcmp(l->boot, st->boot_id) != 0)
        return false;
    if (l->pid <= 0 || l->pid > INT_MAX)
        return false;
    if (kill((pid_t)l->pid, 0) != 0 && errno == ESRCH)
        return false;
    char state;
    unsigned long long start;
    if (proc_info((long)l->pid, &state, &start)) {
        if (state == 'Z' || state == 'X')
            return false;
        if (l->start && start != l->start)
            return false;
    }
    return true;
}

/* True when the lease is held by this process. */
static bool held_here(const fr_store *st, const lease_row *l)
{
    return l->pid == st->pid && l->start == st->pid_start && strcmp(l->boot, st->boot_id) == 0;
}

/* ---- statements and transactions --------------------------------------------- */

/* Resets a statement for its next use. Its error, if any, was read already. */
static void done(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* Runs statement `id` whose parameters are bound, expecting no rows. */
static int exec_stmt(fr_store *st, enum stmt_id id, const char *what, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[id];
    int rc = sqlite3_step(s) == SQLITE_DONE ? FR_OK : db_error(st, err, what);
    done(s);
    return rc;
}

/* Rolls back the open transaction, if any. Leaves a previous error in place. */
static void rollback(fr_store *st)
{
    if (st->db && !sqlite3_get_autocommit(st->db)) {
        sqlite3_step(st->stmt[S_ROLLBACK]);
        done(st->stmt[S_ROLLBACK]);
    }
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

/* Copies column `i` as text into `out` ("" for NULL). */
static void column_copy(sqlite3_stmt *s, int i, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(out, size, "%s", t ? (const char *)t : "");
}

static int month_spent(fr_store *st, const char *month, double *spent, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_MONTH_SPENT];
    bind_text(s, 1, month);
    int rc = FR_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *spent = sqlite3_column_double(s, 0);
    else
        rc = db_error(st, err, "cannot read the month's spend");
    done(s);
    return rc;
}

/* The cost of the month's booked attempts, those in flight left out. */
static int month_booked(fr_store *st, const char *month, double *total, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_MONTH_BOOKED];
    bind_text(s, 1, month);
    int rc = FR_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *total = sqlite3_column_double(s, 0);
    else
        rc = db_error(st, err, "cannot read the month's spend");
    done(s);
    return rc;
}

/* Reads the open leases of `month` into *rows (owned by the caller, free()). */
static int open_leases(fr_store *st, const char *month, const char *run_id, lease_row **rows,
                       size_t *n, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_OPEN_LEASES];
    bind_text(s, 1, month);
    size_t cap = 0;
    int step;
    *rows = NULL;
    *n = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *rows = fr_xrealloc(*rows, cap * sizeof **rows);
        }
        lease_row *l = &(*rows)[(*n)++];
        l->id = sqlite3_column_int64(s, 0);
        const unsigned char *run = sqlite3_column_text(s, 1);
        l->same_run = run_id && run && strcmp((const char *)run, run_id) == 0;
        column_copy(s, 1, l->run, sizeof l->run);
        l->pid = sqlite3_column_int64(s, 2);
        l->start = (unsigned long long)sqlite3_column_int64(s, 3);
        column_copy(s, 4, l->boot, sizeof l->boot);
        l->amount = sqlite3_column_double(s, 5);
        l->spent = sqlite3_column_double(s, 6);
    }
    int rc = step == SQLITE_DONE ? FR_OK : db_error(st, err, "cannot read the month's leases");
    done(s);
    return rc;
}

/* ---- the marker of a store that existed ------------------------------------------ */

/* The marker beside the database: "<path>.id", written once the schema is
 * committed. It says a ledger lived here, so an emptied, truncated or
 * deleted database is refused instead of silently starting a new one. */
static char *marker_path(const char *path)
{
    return fr_xasprintf("%s.id", path);
}

/* True when the marker of the database at `path` exists. Looked at before
 * the database is read: a marker is written only after its schema was
 * committed, so a store opened at the same moment by another process is
 * never mistaken for an emptied one. */
static bool has_marker(const char *path)
{
    char *marker = marker_path(path);
    struct stat sb;
    bool found = stat(marker, &sb) == 0;
    free(marker);
    return found;
}

/* FR_ESTORE for the database at `path`, missing or without flowrun's
 * schema while its marker says a store existed: what happened, and how to
 * start over on purpose. */
static int marker_refusal(const char *path, fr_error *err)
{
    char *marker = marker_path(path);
    char created[64] = "";
    FILE *f = fopen(marker, "r");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "created ", 8) == 0)
                snprintf(created, sizeof created, " on %.*s", (int)strcspn(line + 8, "\n"),
                         line + 8);
        fclose(f);
    }
    struct stat sb;
    bool missing = stat(path, &sb) != 0;
    int rc = fr_error_set(err, FR_ESTORE, path, 0,
                          "the state database is %s, but a state store was created here%s (%s): "
                          "its ledger, and with it the monthly cap's memory of what was spent, "
                          "is gone. Restore the database from a backup; or, to start a new "
                          "ledger on purpose, remove %s (or the whole state folder)",
                          missing           ? "missing"
                          : sb.st_size == 0 ? "empty (0 bytes)"
                                            : "empty",
                          created, marker, marker);
    free(marker);
    return rc;
}

/* Writes the marker when there is none. A store whose marker cannot be
 * written still works (it is only less protected), so this cannot fail. */
static void write_marker(const fr_store *st)
{
    char *marker = marker_path(st->path);
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char stamp[32] = "";
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        char text[256];
        int n = snprintf(text, sizeof text,
                         "flowrun state store: %s exists while this file does.\n"
                         "created %s\n",
                         strrchr(st->path, '/') ? strrchr(st->path, '/') + 1 : st->path, stamp);
        if (n > 0 && write(fd, text, (size_t)n) != n) {
            /* A short marker still marks: its existence is what counts. */
        }
        close(fd);
    }
    free(marker);
}

/* ---- open and schema --------------------------------------------------------- */

/* Creates every missing directory above the file `path`, mode 0700. */
static int make_parent_dirs(const char *path, fr_error *err)
{
    int rc = FR_OK;
    char *dir = fr_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        goto cleanup;
    *slash = '\0';
    for (char *p = dir + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        struct stat sb;
        if (stat(dir, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                rc = fr_error_set(err, FR_ESTORE, path, 0,
                                  "cannot create the state database: %s "
                                  "is not a directory",
                                  dir);
                goto cleanup;
            }
        } else if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            rc = fr_error_set(err, FR_ESTORE, path, 0, "cannot create directory %s: %s", dir,
                              strerror(errno));
            goto cleanup;
        }
        if (last)
            break;
        *p = '/';
    }
cleanup:
    free(dir);
    return rc;
}

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
        return db_error(st, err, "cannot read the state database's schema");
    if (n == 0) {
        if (query_int(st->db, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                      &n) != SQLITE_ROW)
            return db_error(st, err, "cannot read the state database's schema");
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
    return db_error(st, err, "cannot read the state database's schema version");
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
            column_copy(s, 0, first, sizeof first);
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
        return db_error(st, err, "cannot read the state database");
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
        rc = db_error(st, err, "cannot open the state database");
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
        rc = marker_refusal(st->path, err); /* a 0-byte file, or one emptied of the tables */
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
        rc = db_error(st, err, "cannot switch the state database to WAL mode");
        goto cleanup;
    }
    char mode[16];
    column_copy(s, 0, mode, sizeof mode);
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
        rc = db_error(st, err, "cannot set up the state database");
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
        rc = db_error(st, err, "cannot lock the state database");
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
    for (sqlite3_int64 v = version; v < FR_STORE_SCHEMA_VERSION; v++) {
        if (sqlite3_exec(st->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            rc = db_error(st, err, "cannot create the state database's schema");
            goto cleanup;
        }
    }
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?1)",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "cannot write the schema version");
        goto cleanup;
    }
    sqlite3_bind_int(s, 1, FR_STORE_SCHEMA_VERSION);
    if (sqlite3_step(s) != SQLITE_DONE) {
        rc = db_error(st, err, "cannot write the schema version");
        goto cleanup;
    }
cleanup:
    sqlite3_finalize(s);
    if (rc == FR_OK && !sqlite3_get_autocommit(st->db) &&
        sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(st, err, "cannot commit the state database's schema");
    if (rc != FR_OK && !sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int prepare_all(fr_store *st, fr_error *err)
{
    for (int i = 0; i < S_COUNT; i++)
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK)
            return db_error(st, err, "cannot prepare the state database's statements");
    return FR_OK;
}

/* Opens, creates or migrates the state database; see store.h. */
int fr_store_open(const char *path, fr_store **out, fr_error *err)
{
    int rc = FR_EINVAL;
    fr_store *st = NULL;
    if (out)
        *out = NULL;
    if (!out || !path || !*path) {
        fr_error_set(err, rc, path ? path : "", 0, "no state database path");
        goto cleanup;
    }
    st = fr_xcalloc(1, sizeof *st);
    st->path = fr_xstrdup(path);
    st->pid = getpid();
    read_boot_id(st->boot_id, sizeof st->boot_id);
    char state;
    if (!proc_info((long)st->pid, &state, &st->pid_start))
        st->pid_start = 0;
    bool marked = has_marker(path);
    struct stat sb;
    if (marked && stat(path, &sb) != 0) {
        rc = marker_refusal(path, err); /* before SQLite creates a file */
        goto cleanup;
    }
    rc = make_parent_dirs(path, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = connect_db(st, marked, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = migrate(st, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = prepare_all(st, err);
    if (rc != FR_OK)
        goto cleanup;
    write_marker(st);
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
    int rc = FR_EINVAL;
    fr_store *st = NULL;
    sqlite3_int64 version = 0;
    struct stat sb;
    if (out)
        *out = NULL;
    if (!out || !path || !*path) {
        fr_error_set(err, rc, path ? path : "", 0, "no state database path");
        goto cleanup;
    }
    bool marked = has_marker(path);
    if (marked && stat(path, &sb) != 0) {
        rc = marker_refusal(path, err);
        goto cleanup;
    }
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = fr_error_set(err, FR_ENOENT, path, 0, "no state database");
        goto cleanup;
    }
    st = fr_xcalloc(1, sizeof *st);
    st->path = fr_xstrdup(path);
    st->pid = getpid();
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
        rc = db_error(st, err, "cannot open the state database");
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
        rc = marked ? marker_refusal(path, err)
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
    rc = prepare_all(st, err);
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
    if (getpid() == st->pid) {
        for (int i = 0; i < S_COUNT; i++)
            sqlite3_finalize(st->stmt[i]);
        sqlite3_close(st->db);
    }
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
    month_of(st->clock ? st->clock : time(NULL), out);
    return out;
}

/* ---- runs and attempts --------------------------------------------------------- */

/* Maps a failed insert: a constraint on the run id is the caller's mistake. */
static int insert_error(fr_store *st, fr_error *err, const char *run_id, const char *what)
{
    int ext = sqlite3_extended_errcode(st->db);
    if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "run %s was not begun in the state database", run_id);
    if (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "run %s is already recorded", run_id);
    return db_error(st, err, what);
}

/* Marks run `run_id`, whose process is gone, crashed, inside the caller's
 * write transaction: its requests in flight become charges at their worst
 * case (the provider may have billed them), its open leases close keeping
 * all of that, and the run's cost is everything it was charged. */
static int crash_run(fr_store *st, const char *run_id, fr_error *err)
{
    static const enum stmt_id steps[] = {S_CRASH_PENDING, S_CRASH_LEASES, S_CRASH_RUN};
    int rc = FR_OK;
    for (size_t i = 0; rc == FR_OK && i < sizeof steps / sizeof *steps; i++) {
        sqlite3_stmt *s = st->stmt[steps[i]];
        bind_text(s, 1, run_id);
        sqlite3_bind_double(s, 2, now_seconds(st));
        rc = exec_stmt(st, steps[i], "cannot mark a crashed run", err);
    }
    return rc;
}

/* Marks crashed, inside the caller's write transaction, every run still
 * 'running' whose process is known to be gone (see holder_alive). */
static int reclaim_runs(fr_store *st, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_RUNNING];
    lease_row *dead = NULL;
    size_t n = 0, cap = 0;
    int step, rc = FR_OK;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        lease_row l = {0};
        column_copy(s, 0, l.run, sizeof l.run);
        l.pid = sqlite3_column_int64(s, 1);
        l.start = (unsigned long long)sqlite3_column_int64(s, 2);
        column_copy(s, 3, l.boot, sizeof l.boot);
        if (holder_alive(st, &l))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            dead = fr_xrealloc(dead, cap * sizeof *dead);
        }
        dead[n++] = l;
    }
    if (step != SQLITE_DONE)
        rc = db_error(st, err, "cannot read the runs in progress");
    done(s);
    for (size_t i = 0; rc == FR_OK && i < n; i++)
        rc = crash_run(st, dead[i].run, err);
    free(dead);
    return rc;
}

/* Records a run's start; see store.h. */
int fr_store_run_begin(fr_store *st, const char *run_id, const char *workflow, const char *wf_path,
                       fr_error *err)
{
    int rc = check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !*run_id || !workflow)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a run needs an id and a workflow name");
    rc = exec_stmt(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        return rc;
    rc = reclaim_runs(st, err);
    if (rc == FR_OK) {
        sqlite3_stmt *s = st->stmt[S_RUN_BEGIN];
        bind_text(s, 1, run_id);
        bind_text(s, 2, workflow);
        bind_text(s, 3, wf_path);
        sqlite3_bind_double(s, 4, now_seconds(st));
        sqlite3_bind_int64(s, 5, st->pid);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)st->pid_start);
        bind_text(s, 7, st->boot_id);
        rc = sqlite3_step(s) == SQLITE_DONE
                 ? FR_OK
                 : insert_error(st, err, run_id, "cannot record the run");
        done(s);
    }
    if (rc == FR_OK)
        rc = exec_stmt(st, S_COMMIT, "cannot commit the run", err);
    if (rc != FR_OK)
        rollback(st);
    return rc;
}

/* Reads a run's status and cost; see store.h. */
int fr_store_run_status(fr_store *st, const char *run_id, char *status, size_t size,
                        double *cost_usd, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = check_usable(st, err);
    if (rc == FR_OK && (!run_id || !status || size == 0 || !cost_usd))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "a run id and places for its status");
    if (rc != FR_OK)
        return rc;
    if (sqlite3_prepare_v2(st->db, "SELECT status, cost_usd FROM runs WHERE id = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return db_error(st, err, "cannot read the run");
    bind_text(s, 1, run_id);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        column_copy(s, 0, status, size);
        *cost_usd = sqlite3_column_double(s, 1);
    } else if (step == SQLITE_DONE) {
        rc = fr_error_set(err, FR_ENOENT, st->path, 0, "no run %s in the state database", run_id);
    } else {
        rc = db_error(st, err, "cannot read the run");
    }
    sqlite3_finalize(s);
    return rc;
}

/* Records a run's end; see store.h. */
int fr_store_run_end(fr_store *st, const char *run_id, const char *status, int exit_code,
                     double cost_usd, fr_error *err)
{
    int rc = check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !status || !valid_usd(cost_usd))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "the end of a run needs its id, a status and a cost >= 0");
    sqlite3_stmt *s = st->stmt[S_RUN_END];
    bind_text(s, 1, run_id);
    sqlite3_bind_double(s, 2, now_seconds(st));
    bind_text(s, 3, status);
    sqlite3_bind_int(s, 4, exit_code);
    sqlite3_bind_double(s, 5, cost_usd);
    rc = exec_stmt(st, S_RUN_END, "cannot record the end of the run", err);
    if (rc == FR_OK && sqlite3_changes(st->db) == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "run %s was not begun in the state database",
                          run_id);
    return rc;
}

static bool one_of(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Checks an attempt record before it goes near the database. */
static int check_attempt(const fr_store *st, const fr_attempt_rec *a, fr_error *err)
{
    static const char *const tiers[] = {"local", "cloud", NULL};
    static const char *const outcomes[] = {"ok",        "quality",   "error",     "timeout",
                                           "cancelled", "budget",    "truncated", "refused",
                                           "tool_call", "no_answer", "pending",   NULL};
    if (!a || !a->run_id || !a->task || !a->endpoint)
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "an attempt needs a run id, a task and an endpoint");
    if (!one_of(a->tier, tiers))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: tier must be \"local\" or \"cloud\"", a->task);
    if (!one_of(a->outcome, outcomes))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: outcome must be one of ok, quality, error, "
                            "timeout, cancelled, budget, truncated, refused, tool_call, "
                            "no_answer",
                            a->task);
    if (a->attempt < 1 || a->input < 0 || a->output < 0 || a->cached < 0 ||
        !valid_usd(a->cost_usd) || !valid_usd(a->latency_ms))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: the attempt number must be >= 1 and tokens, "
                            "cost and latency >= 0",
                            a->task);
    return FR_OK;
}

/* Inserts the checked attempt `a` at the store's clock and writes its month
 * into `month`. */
static int insert_attempt(fr_store *st, const fr_attempt_rec *a, char month[FR_STORE_MONTH_LEN],
                          fr_error *err)
{
    double at = now_seconds(st);
    month_of((time_t)floor(at), month);
    sqlite3_stmt *s = st->stmt[S_ATTEMPT];
    bind_text(s, 1, a->run_id);
    bind_text(s, 2, a->task);
    sqlite3_bind_int(s, 3, a->attempt);
    bind_text(s, 4, a->endpoint);
    bind_text(s, 5, a->tier);
    bind_text(s, 6, a->model);
    sqlite3_bind_int64(s, 7, a->input);
    sqlite3_bind_int64(s, 8, a->output);
    sqlite3_bind_int64(s, 9, a->cached);
    sqlite3_bind_int(s, 10, a->estimated ? 1 : 0);
    sqlite3_bind_double(s, 11, a->cost_usd);
    sqlite3_bind_double(s, 12, a->latency_ms);
    bind_text(s, 13, a->outcome);
    bind_text(s, 14, a->error);
    sqlite3_bind_double(s, 15, at);
    bind_text(s, 16, month);
    int rc = sqlite3_step(s) == SQLITE_DONE
                 ? FR_OK
                 : insert_error(st, err, a->run_id, "cannot record the attempt");
    done(s);
    return rc;
}

/* Books an attempt; see store.h. */
int fr_store_add_attempt(fr_store *st, const fr_attempt_rec *a, fr_error *err)
{
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc != FR_OK)
        return rc;
    char month[FR_STORE_MONTH_LEN];
    return insert_attempt(st, a, month, err);
}

/* Books an attempt and reads its month's total in one transaction; see
 * store.h. */
int fr_store_add_attempt_total(fr_store *st, const fr_attempt_rec *a, double *month_total,
                               fr_error *err)
{
    bool begun = false;
    char month[FR_STORE_MONTH_LEN];
    double total = 0;
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc == FR_OK && !month_total)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's total");
    if (rc != FR_OK)
        goto cleanup;
    /* The write lock first: no other booking comes between this one and the
     * total it reads. */
    rc = exec_stmt(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    rc = insert_attempt(st, a, month, err);
    if (rc == FR_OK)
        rc = month_booked(st, month, &total, err);
    if (rc == FR_OK)
        rc = exec_stmt(st, S_COMMIT, "cannot commit the attempt", err);
    if (rc == FR_OK)
        *month_total = total;
cleanup:
    if (rc != FR_OK && begun)
        rollback(st);
    return rc;
}

/* Books an attempt in flight; see store.h. */
int fr_store_reserve(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err)
{
    fr_attempt_rec pending = a ? *a : (fr_attempt_rec){0};
    pending.outcome = "pending";
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a ? &pending : NULL, err);
    if (rc == FR_OK && !id)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the attempt's id");
    if (rc != FR_OK)
        return rc;
    double at = now_seconds(st);
    char month[FR_STORE_MONTH_LEN];
    month_of((time_t)floor(at), month);
    sqlite3_stmt *s = st->stmt[S_RESERVE];
    bind_text(s, 1, a->run_id);
    bind_text(s, 2, a->task);
    sqlite3_bind_int(s, 3, a->attempt);
    bind_text(s, 4, a->endpoint);
    bind_text(s, 5, a->tier);
    bind_text(s, 6, a->model);
    sqlite3_bind_double(s, 7, a->cost_usd);
    sqlite3_bind_double(s, 8, at);
    bind_text(s, 9, month);
    rc = sqlite3_step(s) == SQLITE_DONE
             ? FR_OK
             : insert_error(st, err, a->run_id, "cannot record the attempt in flight");
    done(s);
    if (rc == FR_OK)
        *id = (long long)sqlite3_last_insert_rowid(st->db);
    return rc;
}

/* Runs the settling UPDATE of attempt `id` to `a`. */
static int settle_row(fr_store *st, long long id, const fr_attempt_rec *a, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_SETTLE];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, a->input);
    sqlite3_bind_int64(s, 3, a->output);
    sqlite3_bind_int64(s, 4, a->cached);
    sqlite3_bind_int(s, 5, a->estimated ? 1 : 0);
    sqlite3_bind_double(s, 6, a->cost_usd);
    sqlite3_bind_double(s, 7, a->latency_ms);
    bind_text(s, 8, a->outcome);
    bind_text(s, 9, a->error);
    sqlite3_bind_double(s, 10, now_seconds(st));
    bind_text(s, 11, a->run_id);
    int rc = exec_stmt(st, S_SETTLE, "cannot book the attempt", err);
    if (rc == FR_OK && sqlite3_changes(st->db) == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0,
                          "attempt %lld of run %s is not in flight in the state database", id,
                          a->run_id);
    return rc;
}

/* Settles an attempt in flight; see store.h. */
int fr_store_settle(fr_store *st, long long id, const fr_attempt_rec *a, double *month_total,
                    fr_error *err)
{
    bool begun = false;
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc == FR_OK && strcmp(a->outcome, "pending") == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "a settled attempt is not pending");
    if (rc != FR_OK)
        return rc;
    if (!month_total)
        return settle_row(st, id, a, err); /* one statement: its own transaction */
    /* The write lock first: no other booking comes between this one and the
     * total it reads (see fr_store_add_attempt_total). */
    rc = exec_stmt(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    rc = settle_row(st, id, a, err);
    char month[FR_STORE_MONTH_LEN] = "";
    sqlite3_stmt *s = st->stmt[S_ATTEMPT_MONTH];
    if (rc == FR_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW)
            column_copy(s, 0, month, sizeof month);
        else
            rc = db_error(st, err, "cannot read the attempt's month");
        done(s);
    }
    double total = 0;
    if (rc == FR_OK)
        rc = month_booked(st, month, &total, err);
    if (rc == FR_OK)
        rc = exec_stmt(st, S_COMMIT, "cannot commit the attempt", err);
    if (rc == FR_OK)
        *month_total = total;
cleanup:
    if (rc != FR_OK && begun)
        rollback(st);
    return rc;
}

/* Reads a month's ledger total; see store.h. */
int fr_store_month_spent(fr_store *st, const char *month, double *spent, fr_error *err)
{
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_month(st, month, err);
    if (rc == FR_OK && !spent)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's spend");
    if (rc == FR_OK)
        rc = month_spent(st, month, spent, err);
    return rc;
}

/* ---- the monthly cap ------------------------------------------------------------ */

/* Reads what others use of a month; see store.h. */
int fr_store_month_used(fr_store *st, const char *month, double *used, fr_error *err)
{
    lease_row *rows = NULL;
    size_t n = 0;
    double spent = 0, outstanding = 0;
    bool begun = false;
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_month(st, month, err);
    if (rc == FR_OK && !used)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's use");
    if (rc != FR_OK)
        goto cleanup;
    /* One read transaction: the spend and the leases come from one snapshot. */
    rc = exec_stmt(st, S_BEGIN, "cannot read the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    rc = month_spent(st, month, &spent, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = open_leases(st, month, NULL, &rows, &n, err);
    if (rc != FR_OK)
        goto cleanup;
    for (size_t i = 0; i < n; i++)
        if (!held_here(st, &rows[i]) && holder_alive(st, &rows[i]))
            outstanding += fmax(0, rows[i].amount - rows[i].spent);
    rc = exec_stmt(st, S_COMMIT, "cannot read the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    *used = spent + outstanding;
cleanup:
    if (rc != FR_OK && begun)
        rollback(st);
    free(rows);
    return rc;
}

static int close_lease(fr_store *st, sqlite3_int64 id, const char *how, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_LEASE_CLOSE];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, now_seconds(st));
    bind_text(s, 3, how);
    return exec_stmt(st, S_LEASE_CLOSE, "cannot close a lease", err);
}

static int check_lease_args(const fr_store *st, const char *month, double cap, double want,
                            const char *run_id, double *granted, fr_error *err)
{
    int rc = check_month(st, month, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !*run_id || !granted)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a lease needs a run id");
    if (!valid_usd(cap) || !valid_usd(want))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "a lease needs a cap and an amount that are numbers >= 0");
    return FR_OK;
}

/* Leases a share of a month's cap; see store.h. */
int fr_store_lease(fr_store *st, const char *month, double cap, double want, const char *run_id,
                   double *granted, fr_error *err)
{
    lease_row *rows = NULL, *own = NULL;
    size_t n = 0;
    double spent = 0, outstanding = 0, grant = 0;
    bool begun = false;
    int rc = check_usable(st, err);
    if (rc == FR_OK)
        rc = check_lease_args(st, month, cap, want, run_id, granted, err);
    if (rc != FR_OK)
        goto cleanup;
    /* The write lock is taken before the first read: whoever leases next
     * waits for this commit and then sees this grant. */
    rc = exec_stmt(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    rc = month_spent(st, month, &spent, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = open_leases(st, month, run_id, &rows, &n, err);
    if (rc != FR_OK)
        goto cleanup;
    for (size_t i = 0; i < n; i++) {
        lease_row *l = &rows[i];
        if (!holder_alive(st, l)) {
            /* Its attempts stay in `spent`, those in flight at their worst
             * case; its unspent rest is free again, and its run crashed. */
            rc = crash_run(st, l->run, err);
            if (rc == FR_OK)
                rc = close_lease(st, l->id, "reclaimed", err);
            if (rc != FR_OK)
                goto cleanup;
            continue;
        }
        if (l->same_run) {
            if (!held_here(st, l)) {
                rc = fr_error_set(err, FR_EINVAL, st->path, 0,
                                  "run %s holds a lease of %s in another process (%lld)", run_id,
                                  month, (long long)l->pid);
                goto cleanup;
            }
            own = l;
        }
        outstanding += fmax(0, l->amount - l->spent);
    }
    grant = fmin(want, cap - spent - outstanding);
    if (!(grant > 0))
        grant = 0;
    sqlite3_stmt *s;
    if (own) {
        s = st->stmt[S_LEASE_GROW];
        sqlite3_bind_int64(s, 1, own->id);
        sqlite3_bind_double(s, 2, grant);
        rc = exec_stmt(st, S_LEASE_GROW, "cannot grow the lease", err);
    } else {
        s = st->stmt[S_LEASE_NEW];
        bind_text(s, 1, run_id);
        bind_text(s, 2, month);
        sqlite3_bind_double(s, 3, grant);
        sqlite3_bind_int64(s, 4, st->pid);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)st->pid_start);
        bind_text(s, 6, st->boot_id);
        sqlite3_bind_double(s, 7, now_seconds(st));
        rc = sqlite3_step(s) == SQLITE_DONE ? FR_OK
                                            : insert_error(st, err, run_id, "cannot open a lease");
        done(s);
    }
    if (rc != FR_OK)
        goto cleanup;
    rc = exec_stmt(st, S_COMMIT, "cannot commit the lease", err);
    if (rc != FR_OK)
        goto cleanup;
    *granted = grant;
cleanup:
    if (rc != FR_OK && begun)
        rollback(st);
    free(rows);
    return rc;
}

/* Ends a run's leases; see store.h. */
int fr_store_release(fr_store *st, const char *run_id, fr_error *err)
{
    int rc = check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a release needs a run id");
    sqlite3_stmt *s = st->stmt[S_RELEASE];
    bind_text(s, 1, run_id);
    sqlite3_bind_double(s, 2, now_seconds(st));
    sqlite3_bind_int64(s, 3, st->pid);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)st->pid_start);
    bind_text(s, 5, st->boot_id);
    return exec_stmt(st, S_RELEASE, "cannot release the lease", err);
}

/* ---- spend report --------------------------------------------------------------- */

static json_t *tokens_new(void)
{
    return json_pack("{sIsIsI}", "input", (json_int_t)0, "output", (json_int_t)0, "cached",
                     (json_int_t)0);
}

static json_t *group_new(void)
{
    return json_pack("{sfsIso}", "cost_usd", 0.0, "attempts", (json_int_t)0, "tokens",
                     tokens_new());
}

static void add_int(json_t *obj, const char *key, json_int_t v)
{
    json_t *n = json_object_get(obj, key);
    json_integer_set(n, json_integer_value(n) + v);
}

/* One row of the spend query: a (month, workflow, endpoint, tier) group. */
typedef struct spend_row {
    json_int_t attempts, input, output, cached, estimated;
    double cost;
} spend_row;

static void group_add(json_t *g, const spend_row *r)
{
    json_t *cost = json_object_get(g, "cost_usd");
    json_real_set(cost, json_real_value(cost) + r->cost);
    add_int(g, "attempts", r->attempts);
    json_t *tok = json_object_get(g, "tokens");
    add_int(tok, "input", r->input);
    add_int(tok, "output", r->output);
    add_int(tok, "cached", r->cached);
}

/* Adds `r` to the group `key` of `map`, creating it. */
static void map_add(json_t *map, const char *key, const spend_row *r)
{
    json_t *g = json_object_get(map, key);
    if (!g) {
        g = group_new();
        json_object_set_new(map, key, g);
    }
    group_add(g, r);
}

/* Returns a new month entry with zeros (owned). */
static json_t *month_new(const char *month)
{
    json_t *m = group_new();
    json_object_set_new(m, "month", json_string(month));
    json_object_set_new(m, "usage_estimated", json_integer(0));
    json_object_set_new(m, "by_endpoint", json_object());
    json_object_set_new(m, "by_tier",
                        json_pack("{soso}", "local", group_new(), "cloud", group_new()));
    json_object_set_new(m, "by_workflow", json_object());
    return m;
}

/* Reports spend by month; see store.h. */
int fr_store_spend(fr_store *st, const char *month, json_t **out, fr_error *err)
{
    json_t *root = NULL, *cur = NULL;
    sqlite3_stmt *s = NULL;
    int rc = check_usable(st, err);
    if (rc == FR_OK && month)
        rc = check_month(st, month, err);
    if (rc == FR_OK && !out)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the spend report");
    if (rc != FR_OK)
        goto cleanup;
    root = json_object();
    json_t *months = json_array();
    json_object_set_new(root, "months", months);
    s = st->stmt[S_SPEND];
    bind_text(s, 1, month);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *m = (const char *)sqlite3_column_text(s, 0);
        const char *wf = (const char *)sqlite3_column_text(s, 1);
        const char *ep = (const char *)sqlite3_column_text(s, 2);
        const char *tier = (const char *)sqlite3_column_text(s, 3);
        spend_row r = {
            .attempts = sqlite3_column_int64(s, 4),
            .cost = sqlite3_column_double(s, 5),
            .input = sqlite3_column_int64(s, 6),
            .output = sqlite3_column_int64(s, 7),
            .cached = sqlite3_column_int64(s, 8),
            .estimated = sqlite3_column_int64(s, 9),
        };
        if (!m || !wf || !ep || !tier)
            continue; /* NOT NULL columns: cannot happen */
        if (!cur || strcmp(json_string_value(json_object_get(cur, "month")), m) != 0) {
            cur = month_new(m);
            json_array_append_new(months, cur);
        }
        group_add(cur, &r);
        add_int(cur, "usage_estimated", r.estimated);
        map_add(json_object_get(cur, "by_endpoint"), ep, &r);
        map_add(json_object_get(cur, "by_tier"), tier, &r);
        map_add(json_object_get(cur, "by_workflow"), wf, &r);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(st, err, "cannot read the spend");
        goto cleanup;
    }
    if (month && json_array_size(months) == 0)
        json_array_append_new(months, month_new(month));
    *out = root;
    root = NULL;
cleanup:
    if (s)
        done(s);
    json_decref(root);
    return rc;
}

/* The newest samples per task and endpoint that fr_store_observed keeps. */
#define OBSERVED_SAMPLES 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the `n` numbers of the JSON array `a`. */
static double median(const json_t *a)
{
    double v[OBSERVED_SAMPLES];
    size_t n = json_array_size(a) < OBSERVED_SAMPLES ? json_array_size(a) : OBSERVED_SAMPLES;
    for (size_t i = 0; i < n; i++)
        v[i] = json_number_value(json_array_get(a, i));
    qsort(v, n, sizeof *v, cmp_double);
    return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* What earlier runs of a workflow observed; see store.h. */
int fr_store_observed(fr_store *st, const char *workflow, json_t **out, fr_error *err)
{
    json_t *root = NULL;
    sqlite3_stmt *s = NULL;
    int rc = check_usable(st, err);
    if (rc == FR_OK && (!workflow || !out))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no workflow or no place for the result");
    if (rc != FR_OK)
        goto cleanup;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT a.task, a.endpoint, a.latency_ms, a.output_tokens"
                           " FROM attempts a JOIN runs r ON r.id = a.run_id"
                           " WHERE r.workflow = ?1 AND a.outcome = 'ok' AND a.latency_ms > 0"
                           " ORDER BY a.at DESC, a.id DESC",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "cannot read the attempts");
        goto cleanup;
    }
    bind_text(s, 1, workflow);
    /* First the newest samples, as arrays: {task: {endpoint: {lat, out}}}. */
    json_t *samples = json_object();
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *task = (const char *)sqlite3_column_text(s, 0);
        const char *ep = (const char *)sqlite3_column_text(s, 1);
        if (!task || !ep)
            continue; /* NOT NULL columns: cannot happen */
        json_t *per_task = json_object_get(samples, task);
        if (!per_task) {
            per_task = json_object();
            json_object_set_new(samples, task, per_task);
        }
        json_t *pair = json_object_get(per_task, ep);
        if (!pair) {
            pair = json_pack("{s:[], s:[]}", "lat", "out");
            json_object_set_new(per_task, ep, pair);
        }
        json_t *lat = json_object_get(pair, "lat");
        if (json_array_size(lat) >= OBSERVED_SAMPLES)
            continue;
        json_array_append_new(lat, json_real(sqlite3_column_double(s, 2)));
        json_array_append_new(json_object_get(pair, "out"),
                              json_real((double)sqlite3_column_int64(s, 3)));
    }
    if (step != SQLITE_DONE) {
        json_decref(samples);
        rc = db_error(st, err, "cannot read the attempts");
        goto cleanup;
    }
    /* Then their medians. */
    root = json_object();
    const char *task, *ep;
    json_t *per_task, *pair;
    json_object_foreach(samples, task, per_task)
    {
        json_t *o = json_object();
        json_object_foreach(per_task, ep, pair)
        {
            json_t *lat = json_object_get(pair, "lat");
            json_object_set_new(o, ep,
                                json_pack("{s:f, s:I, s:I}", "latency_ms", median(lat),
                                          "output_tokens",
                                          (json_int_t)(median(json_object_get(pair, "out")) + 0.5),
                                          "samples", (json_int_t)json_array_size(lat)));
        }
        json_object_set_new(root, task, o);
    }
    json_decref(samples);
    *out = root;
    root = NULL;
cleanup:
    sqlite3_finalize(s);
    json_decref(root);
    return rc;
}

/* The result cache. A statement is prepared per call: a cache lookup is one
 * per task, far from the hot path of the ledger. */
int fr_store_cache_get(fr_store *st, const char *key, fr_reply *out, bool *hit, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = FR_OK;
    *hit = false;
    memset(out, 0, sizeof *out);
    if (sqlite3_prepare_v2(st->db,
                           "SELECT model, text, json, input, output, cached FROM cache "
                           "WHERE key = ?",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "cannot read the result cache");
        goto cleanup;
    }
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE)
        goto cleanup;
    if (step != SQLITE_ROW) {
        rc = db_error(st, err, "cannot read the result cache");
        goto cleanup;
    }
    const char *text = (const char *)sqlite3_column_text(s, 1);
    size_t text_len = (size_t)sqlite3_column_bytes(s, 1);
    const char *json = (const char *)sqlite3_column_text(s, 2);
    const char *model = (const char *)sqlite3_column_text(s, 0);
    size_t model_len = (size_t)sqlite3_column_bytes(s, 0);
    json_t *parsed = NULL;
    /* A damaged entry is a miss, never an error: the request is sent again.
     * Damaged is text flowrun could not carry (invalid UTF-8, a NUL byte: a
     * put never stores such text), JSON that does not parse, or usage that
     * is not a count. */
    if (!text || fr_utf8_text(text, text_len, NULL) ||
        (model && fr_utf8_text(model, model_len, NULL)) || sqlite3_column_int64(s, 3) < 0 ||
        sqlite3_column_int64(s, 4) < 0 || sqlite3_column_int64(s, 5) < 0 ||
        (json && !(parsed = json_loads(json, JSON_DECODE_ANY, NULL))))
        goto cleanup;
    out->text = fr_xstrdup(text);
    out->json = parsed;
    out->model = model ? fr_xstrdup(model) : NULL;
    out->finish_reason = fr_xstrdup("cached");
    out->finish = FR_FINISH_STOP; /* only answers are cached */
    out->usage.input = sqlite3_column_int64(s, 3);
    out->usage.output = sqlite3_column_int64(s, 4);
    out->usage.cached = sqlite3_column_int64(s, 5);
    *hit = true;
cleanup:
    sqlite3_finalize(s);
    return rc;
}

int fr_store_cache_put(fr_store *st, const char *key, const char *endpoint, const fr_reply *r,
                       fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = FR_OK;
    char *json = r->json ? json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO cache (key, endpoint, model, text, json, input, "
                           "output, cached, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "cannot write the result cache");
        goto cleanup;
    }
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, r->text ? r->text : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, r->usage.input);
    sqlite3_bind_int64(s, 7, r->usage.output);
    sqlite3_bind_int64(s, 8, r->usage.cached);
    sqlite3_bind_double(s, 9, (double)time(NULL));
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = db_error(st, err, "cannot write the result cache");
cleanup:
    sqlite3_finalize(s);
    free(json);
    return rc;
}
