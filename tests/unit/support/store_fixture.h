#pragma once
/* Shared by the unit tests of engine/store/ (test_store_open,
 * test_store_ledger, test_store_lease): a real SQLite file in a fresh
 * temporary directory per test (setup, teardown), booking and leasing
 * helpers, raw SQLite reads that bypass the store, and the reaping of
 * forked children. Header-only (static functions), since every test
 * executable is one translation unit. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/store/store.h"
#include "engine/util/err.h"
#include "tests/unit/support/tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EPS 1e-9

#define assert_usd(a, b)                                                                           \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (fabs(a_ - b_) > EPS)                                                                   \
            fail_msg("%s = %.12f, expected %.12f", #a, a_, b_);                                    \
    } while (0)

#define assert_ok(call)                                                                            \
    do {                                                                                           \
        fr_error e_ = {0};                                                                         \
        int rc_ = (call);                                                                          \
        if (rc_ != FR_OK)                                                                          \
            fail_msg("%s: %s: %s", #call, fr_err_name(rc_), e_.msg);                               \
    } while (0)

typedef struct fx {
    char dir[PATH_MAX];
    char path[PATH_MAX]; /* <dir>/.flowrun/state.db */
    fr_store *st;
} fx;

/* ---- helpers --------------------------------------------------------------- */

/* Writes "<dir>/<name>" into `out` (PATH_MAX bytes). */
static inline void join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static inline int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/fr_store_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    join(f->path, f->dir, ".flowrun/state.db");
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fx *f = *state;
    fr_store_close(f->st);
    tmpdir_remove(f->dir);
    free(f);
    return 0;
}

/* One test of a main()'s list, run in its own fresh directory (setup,
 * teardown). */
#define STORE_TEST(test) cmocka_unit_test_setup_teardown(test, setup, teardown)

static inline time_t utc(int year, int month, int day, int hour, int min, int sec)
{
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec};
    return timegm(&tm);
}

static inline fr_store *open_ok(const char *path)
{
    fr_store *st = NULL;
    fr_error err = {0};
    int rc = fr_store_open(path, &st, &err);
    if (rc != FR_OK)
        fail_msg("open %s: %s: %s", path, fr_err_name(rc), err.msg);
    assert_non_null(st);
    return st;
}

static inline void book(fr_store *st, const char *run, const char *task, const char *endpoint,
                        const char *tier, double cost, long in, long out, long cached,
                        bool estimated, const char *outcome, const char *error)
{
    fr_attempt_rec a = {.run_id = run,
                        .task = task,
                        .endpoint = endpoint,
                        .tier = tier,
                        .model = "m-1",
                        .outcome = outcome,
                        .error = error,
                        .attempt = 1,
                        .input = in,
                        .output = out,
                        .cached = cached,
                        .estimated = estimated,
                        .cost_usd = cost,
                        .latency_ms = 12.5};
    assert_ok(fr_store_add_attempt(st, &a, &e_));
}

static inline double lease(fr_store *st, const char *month, double cap, double want,
                           const char *run)
{
    double granted = -1;
    assert_ok(fr_store_lease(st, month, cap, want, run, &granted, &e_));
    assert_true(granted >= 0 && granted <= want + EPS);
    return granted;
}

static inline double month_used(fr_store *st, const char *month)
{
    double used = -1;
    assert_ok(fr_store_month_used(st, month, &used, &e_));
    return used;
}

/* Runs one SQL statement (no values from outside) on its own connection. */
static inline void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_free(msg);
    sqlite3_close(db);
}

/* Makes f->path a store of schema `version` as the released migrations
 * 0 .. version - 1 left it (its folder created), its meta's schema_version
 * set and `rows` (SQL, borrowed, NULL for none) run on it. */
static inline void old_store(fx *f, int version, const char *rows)
{
    char dir[PATH_MAX], meta[100];
    join(dir, f->dir, ".flowrun");
    assert_int_equal(mkdir(dir, 0700), 0);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    for (int v = 0; v < version; v++)
        assert_int_equal(sqlite3_exec(db, fr_store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK);
    snprintf(meta, sizeof meta, "INSERT INTO meta(key, value) VALUES ('schema_version', %d)",
             version);
    assert_int_equal(sqlite3_exec(db, meta, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, rows ? rows : "", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* True when SQLite refuses to run `sql` (no values from outside) on its own
 * connection. */
static inline bool raw_refused(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    bool refused = sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK;
    sqlite3_close(db);
    return refused;
}

/* Opens the database at `path` read-only and steps `sql` (both borrowed) to
 * its first row, which must exist; returns the statement, the connection in
 * *db (both for raw_done). */
static inline sqlite3_stmt *raw_row(const char *path, const char *sql, sqlite3 **db)
{
    sqlite3_stmt *s = NULL;
    *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(*db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(*db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    return s;
}

/* Returns the first column of the first row as a double (NAN when NULL). */
static inline double raw_num(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *s = raw_row(path, sql, &db);
    double v = sqlite3_column_type(s, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Same, as text copied into `out`. */
static inline const char *raw_text(const char *path, const char *sql, char *out, size_t size)
{
    sqlite3 *db;
    sqlite3_stmt *s = raw_row(path, sql, &db);
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, size, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

/* Follows a dotted path of object keys. */
static inline json_t *jget(json_t *root, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *cur = root;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k; k = strtok_r(NULL, ".", &save)) {
        cur = json_object_get(cur, k);
        if (!cur)
            fail_msg("no %s in the spend report", path);
    }
    return cur;
}

static inline double jnum(json_t *root, const char *path)
{
    json_t *v = jget(root, path);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

/* Waits for a child and returns its exit code, or KILLED when SIGKILL ended
 * it, or -1. */
#define KILLED 1000
static inline int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return KILLED;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Blocks until `fd` reaches end of file. A child waits here to be killed. */
static inline void wait_eof(int fd)
{
    char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n > 0 || (n < 0 && errno == EINTR));
}

/* Crashes a child from outside: SIGKILL leaves no chance to clean up (nor
 * for a memory checker in the child to report what a crash leaves). */
static inline void crash(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(reap(pid), KILLED);
}

/* Forks a child that runs `work(ud)`, which leaves the store as a process
 * killed at that point would (true when it got there), waits until it
 * has, and kills it (crash). */
static inline void kill_when_ready(bool (*work)(void *ud), void *ud)
{
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        char c = work(ud) ? 'y' : 'n';
        if (write(ready[1], &c, 1) != 1)
            _exit(3);
        wait_eof(hold[0]);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c = 0;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'y');
    crash(pid);
    close(ready[0]);
    close(hold[1]);
}

/* Whether `key` is a hit; frees what the lookup returned. */
static inline bool cache_hit(fr_store *st, const char *key)
{
    fr_reply r = {0};
    bool hit = false;
    assert_ok(fr_store_cache_get(st, key, &r, &hit, &e_));
    if (hit)
        assert_non_null(r.text);
    fr_reply_close(&r);
    return hit;
}

static inline long long reserve(fr_store *st, const char *run, const char *task, double worst)
{
    fr_attempt_rec a = {.run_id = run,
                        .task = task,
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .model = "m-1",
                        .attempt = 1,
                        .cost_usd = worst};
    long long id = 0;
    assert_ok(fr_store_reserve(st, &a, &id, &e_));
    assert_true(id > 0);
    return id;
}

static inline void run_status(fr_store *st, const char *run, char *status, size_t size,
                              double *cost)
{
    assert_ok(fr_store_run_status(st, run, status, size, cost, &e_));
}

/* The slots of shared endpoints the table at `path` records as held by
 * owner `owner` (NULL: by any): priced in-flight rows and $0 counts. */
static inline long long slots_recorded(const char *path, const char *owner)
{
    char sql[400];
    snprintf(sql, sizeof sql,
             "SELECT (SELECT count(*) FROM attempts WHERE outcome = 'pending' AND"
             " owner_id IS NOT NULL AND (%d OR owner_id = '%s'))"
             " + (SELECT TOTAL(held) FROM owner_slots WHERE %d OR owner_id = '%s')",
             !owner, owner ? owner : "", !owner, owner ? owner : "");
    return (long long)raw_num(path, sql);
}
