/* Unit tests of engine/store/: a real SQLite file in a fresh temporary
 * directory per test. Other processes are real forked children, each with
 * its own store opened after the fork (a store, like a SQLite connection,
 * never crosses a fork); the parent holds no open store while it forks. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/store/store.h"
#include "engine/util/err.h"

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
static void join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

/* Removes `path` and everything under it (no symlinks are followed). */
static void remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d)
            closedir(d);
    }
    remove(path);
}

static int setup(void **state)
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

static int teardown(void **state)
{
    fx *f = *state;
    fr_store_close(f->st);
    remove_tree(f->dir);
    free(f);
    return 0;
}

static time_t utc(int year, int month, int day, int hour, int min, int sec)
{
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = month - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec};
    return timegm(&tm);
}

static fr_store *open_ok(const char *path)
{
    fr_store *st = NULL;
    fr_error err = {0};
    int rc = fr_store_open(path, &st, &err);
    if (rc != FR_OK)
        fail_msg("open %s: %s: %s", path, fr_err_name(rc), err.msg);
    assert_non_null(st);
    return st;
}

static void book(fr_store *st, const char *run, const char *task, const char *endpoint,
                 const char *tier, double cost, long in, long out, long cached, bool estimated,
                 const char *outcome, const char *error)
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

static double lease(fr_store *st, const char *month, double cap, double want, const char *run)
{
    double granted = -1;
    assert_ok(fr_store_lease(st, month, cap, want, run, &granted, &e_));
    assert_true(granted >= 0 && granted <= want + EPS);
    return granted;
}

static double month_used(fr_store *st, const char *month)
{
    double used = -1;
    assert_ok(fr_store_month_used(st, month, &used, &e_));
    return used;
}

/* Runs one SQL statement (no values from outside) on its own connection. */
static void raw_exec(const char *path, const char *sql)
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

/* True when SQLite refuses to run `sql` (no values from outside) on its own
 * connection. */
static bool raw_refused(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    bool refused = sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK;
    sqlite3_close(db);
    return refused;
}

/* Returns the first column of the first row as a double (NAN when NULL). */
static double raw_num(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    double v = sqlite3_column_type(s, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Same, as text copied into `out`. */
static const char *raw_text(const char *path, const char *sql, char *out, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(s, 0);
    snprintf(out, size, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

/* Follows a dotted path of object keys. */
static json_t *jget(json_t *root, const char *path)
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

static double jnum(json_t *root, const char *path)
{
    json_t *v = jget(root, path);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

/* Waits for a child and returns its exit code, or KILLED when SIGKILL ended
 * it, or -1. */
#define KILLED 1000
static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        return KILLED;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Blocks until `fd` reaches end of file. A child waits here to be killed. */
static void wait_eof(int fd)
{
    char c;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n > 0 || (n < 0 && errno == EINTR));
}

/* Crashes a child from outside: SIGKILL leaves no chance to clean up (nor
 * for a memory checker in the child to report what a crash leaves). */
static void crash(pid_t pid)
{
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(reap(pid), KILLED);
}

/* ---- open, schema, errors ---------------------------------------------------- */

/* Books a successful (or failed) attempt of `task` with a latency and output. */
static void book_timed(fr_store *st, const char *run, const char *task, const char *outcome,
                       double latency_ms, long out)
{
    fr_attempt_rec a = {.run_id = run,
                        .task = task,
                        .endpoint = "e1",
                        .tier = "local",
                        .outcome = outcome,
                        .attempt = 1,
                        .output = out,
                        .latency_ms = latency_ms};
    assert_ok(fr_store_add_attempt(st, &a, &e_));
}

/* A reader (a plan) opens the store read-only: a missing store stays
 * missing, nothing is written or created, and it reads the medians of
 * the newest successful attempts per task and endpoint of one workflow. */
static void test_readonly_and_observed(void **state)
{
    fx *f = *state;
    fr_store *ro = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open_readonly(f->path, &ro, &err), FR_ENOENT);
    assert_null(ro);
    char dir[PATH_MAX];
    join(dir, f->dir, ".flowrun");
    struct stat sb;
    assert_int_not_equal(stat(dir, &sb), 0); /* nothing was created */

    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r1", "w", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "r2", "other", NULL, &e_));
    book_timed(f->st, "r1", "a", "ok", 100, 10);
    book_timed(f->st, "r1", "a", "ok", 300, 30);
    book_timed(f->st, "r1", "a", "ok", 200, 20);
    book_timed(f->st, "r1", "a", "error", 5000, 0); /* failures say nothing */
    book_timed(f->st, "r2", "a", "ok", 9000, 90);   /* another workflow */

    /* While the writer has it open (a -wal file exists), and after. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            fr_store_close(f->st);
            f->st = NULL;
        }
        assert_ok(fr_store_open_readonly(f->path, &ro, &e_));
        json_t *obs = NULL;
        assert_ok(fr_store_observed(ro, "w", &obs, &e_));
        assert_int_equal(json_object_size(obs), 1);
        assert_usd(jnum(obs, "a.e1.latency_ms"), 200);
        assert_usd(jnum(obs, "a.e1.output_tokens"), 20);
        assert_usd(jnum(obs, "a.e1.samples"), 3);
        json_decref(obs);
        assert_ok(fr_store_observed(ro, "none", &obs, &e_));
        assert_int_equal(json_object_size(obs), 0);
        json_decref(obs);
        /* It writes nothing. */
        assert_int_equal(fr_store_run_begin(ro, "r3", "w", NULL, &err), FR_ESTORE);
        fr_store_close(ro);
        ro = NULL;
    }
    /* No writer, no reader: no -wal or -shm file is left. */
    char side[PATH_MAX + 8];
    snprintf(side, sizeof side, "%s-wal", f->path);
    assert_int_not_equal(stat(side, &sb), 0);
    snprintf(side, sizeof side, "%s-shm", f->path);
    assert_int_not_equal(stat(side, &sb), 0);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM runs"), 2);
}

static void test_open_create_reopen(void **state)
{
    fx *f = *state;
    fr_store_close(NULL);
    f->st = open_ok(f->path);

    /* The missing directory was created, private to the user. */
    char dir[PATH_MAX];
    join(dir, f->dir, ".flowrun");
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 0777, 0700);

    assert_ok(fr_store_run_begin(f->st, "r1", "wf", "/w/wf.lua", &e_));
    fr_store_close(f->st);
    f->st = NULL;

    char buf[64];
    assert_string_equal(raw_text(f->path, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    /* The cache table a later issue fills is there already. */
    assert_usd(raw_num(f->path, "SELECT count(*) FROM cache"), 0);

    /* Reopened: the run is still there. */
    f->st = open_ok(f->path);
    fr_error err = {0};
    assert_int_equal(fr_store_run_begin(f->st, "r1", "wf", NULL, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "already recorded"));
    assert_string_equal(raw_text(f->path,
                                 "SELECT workflow || ' ' || wf_path || ' ' || status"
                                 " FROM runs WHERE id = 'r1'",
                                 buf, sizeof buf),
                        "wf /w/wf.lua running");

    /* Bad arguments. */
    fr_store *st = (fr_store *)1;
    assert_int_equal(fr_store_open("", &st, &err), FR_EINVAL);
    assert_null(st);
    assert_int_equal(fr_store_open(NULL, &st, NULL), FR_EINVAL);
}

static void test_newer_schema_refused(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_close(f->st);
    f->st = NULL;
    raw_exec(f->path, "UPDATE meta SET value = 99 WHERE key = 'schema_version'");

    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTOREVER);
    assert_null(st);
    assert_int_equal(err.code, FR_ESTOREVER);
    assert_string_equal(err.source, f->path);
    assert_non_null(strstr(err.msg, "schema version 99"));
    assert_non_null(strstr(err.msg, "upgrade flowrun"));
    assert_string_equal(fr_strerror(FR_ESTOREVER), "state database from a newer flowrun");
    /* Nothing was changed: the version is still the newer one. */
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"), 99);

    /* A version written as text is read the same way. */
    raw_exec(f->path, "UPDATE meta SET value = '7' WHERE key = 'schema_version'");
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTOREVER);
    assert_non_null(strstr(err.msg, "schema version 7"));
}

static void test_not_a_database(void **state)
{
    fx *f = *state;
    char path[PATH_MAX];
    join(path, f->dir, "notes.txt");
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 64; i++)
        fputs("this is a text file, not a database\n", fp);
    fclose(fp);

    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open(path, &st, &err), FR_ESTORE);
    assert_null(st);
    assert_string_equal(err.source, path);
    assert_non_null(strstr(err.msg, "not a SQLite database"));

    /* Someone else's SQLite database is refused and left untouched (not even
     * switched to WAL mode). */
    join(path, f->dir, "other.db");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE notes(t TEXT)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(fr_store_open(path, &st, &err), FR_ESTORE);
    assert_non_null(strstr(err.msg, "not flowrun's"));
    char buf[32];
    assert_string_equal(raw_text(path, "PRAGMA journal_mode", buf, sizeof buf), "delete");
    assert_usd(raw_num(path, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'"), 0);
}

/* Opens `path` as a user without write access to it: this user when it is
 * not root (root ignores permissions), else a child that drops to nobody.
 * Returns the code, or 1 when the test cannot be made here. */
static int open_unprivileged(const char *path, char *msg, size_t size)
{
    fr_error err = {0};
    fr_store *st = NULL;
    if (geteuid() != 0) {
        int rc = fr_store_open(path, &st, &err);
        fr_store_close(st);
        snprintf(msg, size, "%s", strcmp(err.source, path) == 0 ? err.msg : "wrong source");
        return rc;
    }
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (setgid(65534) != 0 || setuid(65534) != 0)
            _exit(1);
        int rc = fr_store_open(path, &st, &err);
        const char *out = strcmp(err.source, path) == 0 ? err.msg : "wrong source";
        if (write(fds[1], out, strlen(out) + 1) < 0)
            _exit(2);
        _exit(rc == FR_OK ? 0 : 100 - rc);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, size - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int code = reap(pid);
    return code >= 100 ? 100 - code : code == 0 ? FR_OK : 1;
}

static void test_unwritable_places(void **state)
{
    fx *f = *state;
    /* A path under a regular file: its "directory" cannot exist. */
    char file[PATH_MAX], path[PATH_MAX];
    join(file, f->dir, "plain");
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    join(path, file, "db");
    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open(path, &st, &err), FR_ESTORE);
    assert_null(st);
    assert_string_equal(err.source, path);
    assert_non_null(strstr(err.msg, "is not a directory"));
    join(path, file, "sub/db");
    assert_int_equal(fr_store_open(path, &st, &err), FR_ESTORE);

    /* A directory nobody may write to: as an unprivileged user. */
    char ro[PATH_MAX];
    join(ro, f->dir, "ro");
    assert_int_equal(mkdir(ro, 0755), 0);
    assert_int_equal(chmod(ro, 0555), 0);
    assert_int_equal(chmod(f->dir, 0755), 0);
    char msg[1024];
    join(path, ro, "state.db");
    int rc = open_unprivileged(path, msg, sizeof msg);
    if (rc == 1)
        skip();
    assert_int_equal(rc, FR_ESTORE);
    assert_non_null(strstr(msg, "cannot open the state database"));
    /* ... and one whose missing subdirectory cannot be created there. */
    join(path, ro, "sub/state.db");
    rc = open_unprivileged(path, msg, sizeof msg);
    assert_int_equal(rc, FR_ESTORE);
    assert_non_null(strstr(msg, "cannot create directory"));

    /* An existing database the user may only read. */
    join(path, f->dir, "state.db");
    f->st = open_ok(path);
    fr_store_close(f->st);
    f->st = NULL;
    assert_int_equal(chmod(path, 0444), 0);
    rc = open_unprivileged(path, msg, sizeof msg);
    assert_int_equal(rc, FR_ESTORE);
    assert_non_null(strstr(msg, "read-only"));
}

static void test_forked_child_refused(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    int res[2], hold[2];
    assert_int_equal(pipe(res), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(res[0]);
        close(hold[1]);
        fr_error err = {0};
        int rc = fr_store_run_begin(f->st, "child", "wf", NULL, &err);
        fr_store_close(f->st); /* leaves SQLite alone in a child */
        char ok = rc == FR_ESTORE && strstr(err.msg, "forked") ? 'y' : 'n';
        if (write(res[1], &ok, 1) != 1)
            _exit(1);
        wait_eof(hold[0]); /* SQLite's memory stays behind, as documented: crash */
        _exit(2);
    }
    close(res[1]);
    close(hold[0]);
    char ok = 0;
    assert_int_equal(read(res[0], &ok, 1), 1);
    crash(pid);
    close(res[0]);
    close(hold[1]);
    assert_int_equal(ok, 'y');
    /* The parent's store is unharmed. */
    assert_ok(fr_store_run_begin(f->st, "parent", "wf", NULL, &e_));
}

/* ---- runs, attempts, spend ------------------------------------------------------ */

static void test_month_and_clock(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    char m[FR_STORE_MONTH_LEN];
    fr_store_set_clock(f->st, utc(2026, 10, 31, 23, 59, 59));
    assert_string_equal(fr_store_month(f->st, m), "2026-10");
    assert_ok(fr_store_run_begin(f->st, "r", "wf", NULL, &e_));
    book(f->st, "r", "a", "e", "cloud", 0.01, 1, 1, 0, false, "ok", NULL);
    fr_store_set_clock(f->st, utc(2026, 11, 1, 0, 0, 0));
    assert_string_equal(fr_store_month(f->st, m), "2026-11");
    book(f->st, "r", "b", "e", "cloud", 0.02, 1, 1, 0, false, "ok", NULL);
    char buf[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT group_concat(month, ',') FROM"
                                 " (SELECT month FROM attempts ORDER BY id)",
                                 buf, sizeof buf),
                        "2026-10,2026-11");
    assert_usd(raw_num(f->path, "SELECT at FROM attempts WHERE task = 'b'"),
               (double)utc(2026, 11, 1, 0, 0, 0));
    /* Back to the real clock. */
    fr_store_set_clock(f->st, 0);
    char now[FR_STORE_MONTH_LEN];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m", gmtime(&t));
    assert_string_equal(fr_store_month(f->st, m), now);
}

/* Counts the entries of directory `dir` (borrowed), or -1 when it is missing. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* The read-only open of `flowrun spend`: a missing ledger is FR_ENOENT and
 * nothing is created; an existing one is read, whether a writer has it open
 * or not, and no -wal or -shm file is left behind by the reader. */
static void test_open_readonly(void **state)
{
    fx *f = *state;
    fr_store *ro = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open_readonly(f->path, &ro, &err), FR_ENOENT);
    assert_null(ro);
    assert_non_null(strstr(err.source, ".flowrun/state.db"));
    assert_int_equal(count_entries(f->dir), 0); /* not even .flowrun/ */

    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r1", "alpha", "/p/alpha.lua", &e_));
    book(f->st, "r1", "design", "sonnet", "cloud", 0.10, 100, 50, 0, false, "ok", NULL);
    /* While the writer is open (its WAL holds the attempt). */
    assert_ok(fr_store_open_readonly(f->path, &ro, &e_));
    json_t *j = NULL;
    assert_ok(fr_store_spend(ro, NULL, &j, &e_));
    assert_usd(jnum(json_array_get(json_object_get(j, "months"), 0), "cost_usd"), 0.10);
    json_decref(j);
    fr_store_close(ro);
    fr_store_close(f->st);
    f->st = NULL;

    char dir[PATH_MAX];
    join(dir, f->dir, ".flowrun");
    int files = count_entries(dir); /* state.db and its marker: the writer cleaned up */
    assert_int_equal(files, 2);
    assert_ok(fr_store_open_readonly(f->path, &ro, &e_));
    assert_ok(fr_store_spend(ro, NULL, &j, &e_));
    assert_usd(jnum(json_array_get(json_object_get(j, "months"), 0), "cost_usd"), 0.10);
    json_decref(j);
    fr_store_close(ro);
    assert_int_equal(count_entries(dir), files);
}

static void test_spend_round_trip(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *st = f->st;

    fr_store_set_clock(st, utc(2026, 10, 20, 8, 0, 0));
    assert_ok(fr_store_run_begin(st, "r1", "alpha", "/p/alpha.lua", &e_));
    book(st, "r1", "design", "sonnet", "cloud", 0.10, 100, 50, 10, false, "ok", NULL);
    book(st, "r1", "code", "studio", "local", 0.0, 1000, 500, 0, true, "ok", NULL);
    assert_ok(fr_store_run_end(st, "r1", "ok", 0, 0.10, &e_));

    fr_store_set_clock(st, utc(2026, 11, 2, 9, 0, 0));
    assert_ok(fr_store_run_begin(st, "r2", "beta", "/p/beta.lua", &e_));
    book(st, "r2", "a", "sonnet", "cloud", 0.25, 200, 100, 0, false, "ok", NULL);
    book(st, "r2", "b", "openrouter", "cloud", 0.05, 300, 0, 0, false, "timeout",
         "no reply within 300 s");
    assert_ok(fr_store_run_end(st, "r2", "failed", 1, 0.30, &e_));
    assert_ok(fr_store_run_begin(st, "r3", "alpha", "/p/alpha.lua", &e_));
    book(st, "r3", "design", "sonnet", "cloud", 0.50, 400, 200, 100, false, "quality", NULL);
    book(st, "r3", "review", "studio", "local", 0.0, 50, 25, 0, false, "ok", NULL);

    json_t *j = NULL;
    assert_ok(fr_store_spend(st, NULL, &j, &e_));
    json_t *months = json_object_get(j, "months");
    assert_int_equal(json_array_size(months), 2);
    json_t *oct = json_array_get(months, 0), *nov = json_array_get(months, 1);
    assert_string_equal(json_string_value(json_object_get(oct, "month")), "2026-10");
    assert_string_equal(json_string_value(json_object_get(nov, "month")), "2026-11");

    assert_usd(jnum(oct, "cost_usd"), 0.10);
    assert_usd(jnum(oct, "attempts"), 2);
    assert_usd(jnum(oct, "usage_estimated"), 1);
    assert_usd(jnum(oct, "tokens.input"), 1100);
    assert_usd(jnum(oct, "tokens.output"), 550);
    assert_usd(jnum(oct, "tokens.cached"), 10);
    assert_usd(jnum(oct, "by_tier.local.cost_usd"), 0);
    assert_usd(jnum(oct, "by_tier.local.attempts"), 1);
    assert_usd(jnum(oct, "by_tier.local.tokens.input"), 1000);
    assert_usd(jnum(oct, "by_tier.cloud.cost_usd"), 0.10);
    assert_usd(jnum(oct, "by_endpoint.sonnet.cost_usd"), 0.10);
    assert_usd(jnum(oct, "by_endpoint.studio.attempts"), 1);
    assert_usd(jnum(oct, "by_workflow.alpha.cost_usd"), 0.10);
    assert_null(json_object_get(jget(oct, "by_workflow"), "beta"));

    assert_usd(jnum(nov, "cost_usd"), 0.80);
    assert_usd(jnum(nov, "attempts"), 4);
    assert_usd(jnum(nov, "usage_estimated"), 0);
    assert_usd(jnum(nov, "tokens.input"), 950);
    assert_usd(jnum(nov, "tokens.output"), 325);
    assert_usd(jnum(nov, "tokens.cached"), 100);
    assert_usd(jnum(nov, "by_endpoint.sonnet.cost_usd"), 0.75);
    assert_usd(jnum(nov, "by_endpoint.sonnet.attempts"), 2);
    assert_usd(jnum(nov, "by_endpoint.sonnet.tokens.output"), 300);
    assert_usd(jnum(nov, "by_endpoint.openrouter.cost_usd"), 0.05);
    assert_usd(jnum(nov, "by_endpoint.studio.cost_usd"), 0);
    assert_usd(jnum(nov, "by_tier.cloud.cost_usd"), 0.80);
    assert_usd(jnum(nov, "by_tier.cloud.attempts"), 3);
    assert_usd(jnum(nov, "by_tier.local.attempts"), 1);
    assert_usd(jnum(nov, "by_workflow.alpha.cost_usd"), 0.50);
    assert_usd(jnum(nov, "by_workflow.alpha.attempts"), 2);
    assert_usd(jnum(nov, "by_workflow.beta.cost_usd"), 0.30);
    json_decref(j);

    /* One month by name. */
    assert_ok(fr_store_spend(st, "2026-11", &j, &e_));
    assert_int_equal(json_array_size(json_object_get(j, "months")), 1);
    assert_usd(jnum(json_array_get(json_object_get(j, "months"), 0), "cost_usd"), 0.80);
    json_decref(j);
    /* A month without attempts is all zero, with both tiers. */
    assert_ok(fr_store_spend(st, "2025-01", &j, &e_));
    json_t *empty = json_array_get(json_object_get(j, "months"), 0);
    assert_string_equal(json_string_value(json_object_get(empty, "month")), "2025-01");
    assert_usd(jnum(empty, "cost_usd"), 0);
    assert_usd(jnum(empty, "attempts"), 0);
    assert_usd(jnum(empty, "by_tier.local.cost_usd"), 0);
    assert_usd(jnum(empty, "by_tier.cloud.tokens.input"), 0);
    assert_int_equal(json_object_size(jget(empty, "by_endpoint")), 0);
    json_decref(j);
    fr_error err = {0};
    j = NULL;
    assert_int_equal(fr_store_spend(st, "2026-13", &j, &err), FR_EINVAL);
    assert_int_equal(fr_store_spend(st, "2026-1", &j, &err), FR_EINVAL);
    assert_null(j);

    /* The rows themselves. */
    char buf[128];
    assert_string_equal(raw_text(f->path,
                                 "SELECT status || ' ' || exit_code || ' ' || cost_usd"
                                 " FROM runs WHERE id = 'r2'",
                                 buf, sizeof buf),
                        "failed 1 0.3");
    assert_usd(raw_num(f->path, "SELECT ended_at - started_at FROM runs WHERE id = 'r1'"), 0);
    assert_true(isnan(raw_num(f->path, "SELECT ended_at FROM runs WHERE id = 'r3'")));
    assert_string_equal(raw_text(f->path,
                                 "SELECT error FROM attempts WHERE run_id = 'r2' AND task = 'b'",
                                 buf, sizeof buf),
                        "no reply within 300 s");
    assert_true(
        isnan(raw_num(f->path, "SELECT error FROM attempts WHERE run_id = 'r2' AND task = 'a'")));
    assert_string_equal(raw_text(f->path,
                                 "SELECT model || ' ' || usage_estimated || ' ' || latency_ms"
                                 " FROM attempts WHERE run_id = 'r1' AND task = 'code'",
                                 buf, sizeof buf),
                        "m-1 1 12.5");
    /* The ledger view is the same spend. */
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM ledger WHERE month = '2026-11'"
                                " AND workflow = 'alpha'"),
               0.50);
}

static void test_bad_records(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r", "wf", NULL, &e_));
    fr_attempt_rec good = {.run_id = "r",
                           .task = "t",
                           .endpoint = "e",
                           .tier = "cloud",
                           .outcome = "ok",
                           .attempt = 1,
                           .cost_usd = 0.5};
    fr_error err = {0};
    fr_attempt_rec a = good;
    a.tier = "edge";
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "tier"));
    a = good;
    a.outcome = "fine";
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    a = good;
    a.cost_usd = -0.01;
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    a = good;
    a.cost_usd = NAN;
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    a = good;
    a.attempt = 0;
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    a = good;
    a.output = -1;
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    a = good;
    a.task = NULL;
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    assert_int_equal(fr_store_add_attempt(f->st, NULL, &err), FR_EINVAL);
    a = good;
    a.run_id = "never-begun";
    assert_int_equal(fr_store_add_attempt(f->st, &a, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "never-begun was not begun"));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM attempts"), 0);
    /* The good one goes in. */
    assert_ok(fr_store_add_attempt(f->st, &good, &e_));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM attempts"), 1);

    assert_int_equal(fr_store_run_end(f->st, "nope", "ok", 0, 0, &err), FR_EINVAL);
    assert_int_equal(fr_store_run_end(f->st, "r", "ok", 0, -1, &err), FR_EINVAL);
    assert_int_equal(fr_store_run_begin(f->st, NULL, "wf", NULL, &err), FR_EINVAL);
    assert_int_equal(fr_store_run_begin(f->st, "x", NULL, NULL, &err), FR_EINVAL);
}

/* The store has nowhere to put a key or a prompt, and a schema change that
 * adds one fails here. */
static void test_no_secret_columns(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    static const char *const tables[] = {"runs", "attempts", "leases", "meta", "cache"};
    static const char *const banned[] = {"api",     "secret",   "auth",   "prompt",
                                         "message", "password", "header", "system"};
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int columns = 0;
    for (size_t t = 0; t < sizeof tables / sizeof *tables; t++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s')", tables[t]);
        sqlite3_stmt *s = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            const char *name = (const char *)sqlite3_column_text(s, 0);
            columns++;
            for (size_t b = 0; b < sizeof banned / sizeof *banned; b++)
                if (strstr(name, banned[b]))
                    fail_msg("column %s.%s looks like it holds a secret or a prompt", tables[t],
                             name);
            if (strcmp(name, "key") == 0 && strcmp(tables[t], "meta") != 0 &&
                strcmp(tables[t], "cache") != 0)
                fail_msg("column %s.key", tables[t]);
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    assert_true(columns > 30);
}

/* ---- leases --------------------------------------------------------------------- */

/* A booking reads its month's total, every run's, in the same transaction:
 * what the monthly alert compares; the month's spend is every run's
 * attempts, not leases. */
static void test_month_totals(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *b = open_ok(f->path); /* another connection: another run */
    fr_store_set_clock(f->st, utc(2026, 11, 5, 0, 0, 0));
    fr_store_set_clock(b, utc(2026, 11, 5, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "wf", NULL, &e_));
    fr_attempt_rec a = {.run_id = "r1",
                        .task = "t",
                        .endpoint = "e",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = 0.009};
    double total = -1, spent = -1;
    assert_ok(fr_store_add_attempt_total(f->st, &a, &total, &e_));
    assert_usd(total, 0.009);
    a.run_id = "r2";
    assert_ok(fr_store_add_attempt_total(b, &a, &total, &e_));
    assert_usd(total, 0.018);
    assert_usd(lease(b, "2026-11", 0.06, 0.02, "r2"), 0.02);
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.018); /* the lease is not spend */
    assert_ok(fr_store_month_spent(f->st, "2026-10", &spent, &e_));
    assert_usd(spent, 0);
    /* A bad record books nothing and leaves the total alone. */
    fr_error err = {0};
    a.cost_usd = -1;
    assert_int_equal(fr_store_add_attempt_total(f->st, &a, &total, &err), FR_EINVAL);
    a.cost_usd = 0.001;
    assert_int_equal(fr_store_add_attempt_total(f->st, &a, NULL, &err), FR_EINVAL);
    assert_int_equal(fr_store_month_spent(f->st, "2026-13", &spent, &err), FR_EINVAL);
    assert_ok(fr_store_month_spent(b, "2026-11", &spent, &e_));
    assert_usd(spent, 0.018);
    fr_store_close(b);
}

static void test_leases_in_one_process(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *a = f->st;
    fr_store *b = open_ok(f->path); /* a second connection, as another module might hold */
    const char *m = "2026-11";
    fr_store_set_clock(a, utc(2026, 11, 5, 0, 0, 0));
    fr_store_set_clock(b, utc(2026, 11, 5, 0, 0, 0));
    assert_ok(fr_store_run_begin(a, "r1", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "wf", NULL, &e_));

    assert_usd(lease(a, m, 1.0, 0.6, "r1"), 0.6);
    assert_usd(lease(b, m, 1.0, 0.6, "r2"), 0.4);
    assert_usd(lease(a, m, 1.0, 0.1, "r1"), 0);
    assert_usd(lease(a, m, 1.0, 0, "r1"), 0);
    /* r1 spends inside its lease: nothing more is free. */
    book(a, "r1", "t", "sonnet", "cloud", 0.5, 1, 1, 0, false, "ok", NULL);
    assert_usd(lease(b, m, 1.0, 0.5, "r2"), 0);
    /* This process's own leases are not "others'". */
    assert_usd(month_used(a, m), 0.5);
    /* Another month is untouched. */
    assert_usd(lease(a, "2026-12", 1.0, 0.3, "r1"), 0.3);
    assert_usd(month_used(a, "2026-12"), 0);

    /* r1 ends: the 0.1 it did not spend is free again, its 0.5 stays spent. */
    assert_ok(fr_store_release(a, "r1", &e_));
    assert_usd(lease(b, m, 1.0, 0.5, "r2"), 0.1);
    book(b, "r2", "t", "sonnet", "cloud", 0.3, 1, 1, 0, false, "ok", NULL);
    assert_ok(fr_store_release(b, "r2", &e_));
    assert_ok(fr_store_run_begin(a, "r3", "wf", NULL, &e_));
    assert_usd(lease(a, m, 1.0, 1.0, "r3"), 0.2);
    /* A lower cap than what is spent grants nothing, never a negative. */
    assert_usd(lease(a, m, 0.5, 1.0, "r3"), 0);
    /* The release also closed r1's December lease. */
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE run_id = 'r1'"
                                " AND closed_at IS NULL"),
               0);
    assert_usd(raw_num(f->path, "SELECT amount FROM leases WHERE run_id = 'r2'"), 0.5);

    fr_error err = {0};
    double g = -1;
    assert_int_equal(fr_store_lease(a, m, 1.0, -0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, NAN, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, INFINITY, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, "11/2026", 1.0, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, 1.0, 0.1, "ghost", &g, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "not begun"));
    assert_usd(g, -1);
    assert_int_equal(fr_store_month_used(a, "2026-00", &g, &err), FR_EINVAL);
    /* Releasing a run without a lease is fine. */
    assert_ok(fr_store_release(a, "r1", &e_));
    assert_ok(fr_store_release(a, "never", &e_));
    fr_store_close(b);
}

static void test_release_frees_unspent(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    const char *m = "2027-02";
    fr_store_set_clock(f->st, utc(2027, 2, 10, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "a", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "b", "wf", NULL, &e_));
    assert_usd(lease(f->st, m, 2.0, 1.6, "a"), 1.6);
    book(f->st, "a", "t", "e", "cloud", 0.3, 1, 1, 0, false, "ok", NULL);
    book(f->st, "a", "t", "e", "cloud", 0.2, 1, 1, 0, false, "error", "HTTP 500");
    assert_usd(lease(f->st, m, 2.0, 2.0, "b"), 0.4);
    assert_ok(fr_store_release(f->st, "a", &e_));
    assert_usd(lease(f->st, m, 2.0, 2.0, "b"), 1.1);
    char buf[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT closed_by || ' ' || spent_usd FROM leases"
                                 " WHERE run_id = 'a'",
                                 buf, sizeof buf),
                        "released 0.5");
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-02'"),
               0.5);
}

/* A child that leases, books, reports and then waits to be told to exit. */
static void child_lease_and_hold(const char *path, time_t clock, const char *run, double cap,
                                 double want, double spend, int ready_fd, int hold_fd)
{
    fr_store *st = NULL;
    double g = 0;
    fr_attempt_rec a = {.run_id = run,
                        .task = "t",
                        .endpoint = "sonnet",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = spend};
    char month[FR_STORE_MONTH_LEN];
    if (fr_store_open(path, &st, NULL) != FR_OK)
        _exit(10);
    fr_store_set_clock(st, clock);
    fr_store_month(st, month);
    if (fr_store_run_begin(st, run, "wf", NULL, NULL) != FR_OK ||
        fr_store_lease(st, month, cap, want, run, &g, NULL) != FR_OK ||
        fr_store_add_attempt(st, &a, NULL) != FR_OK)
        _exit(11);
    if (write(ready_fd, &g, sizeof g) != sizeof g)
        _exit(12);
    wait_eof(hold_fd); /* holds its lease until it is killed */
    _exit(13);
}

static void test_lease_of_dead_process_reclaimed(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    /* The database exists before the fork; no store is open across it. */
    fr_store_close(open_ok(f->path));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        child_lease_and_hold(f->path, clock, "child", 1.0, 0.5, 0.1, ready[1], hold[0]);
    }
    close(ready[1]);
    close(hold[0]);
    double child_granted = 0;
    assert_int_equal(read(ready[0], &child_granted, sizeof child_granted),
                     (ssize_t)sizeof child_granted);
    assert_usd(child_granted, 0.5);

    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "parent", "wf", NULL, &e_));
    /* The child is alive: its lease counts in full (0.1 spent + 0.4 held). */
    assert_usd(month_used(f->st, m), 0.5);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0.5);
    /* A live process's run cannot be leased for from here. */
    fr_error err = {0};
    double g = -1;
    assert_int_equal(fr_store_lease(f->st, m, 1.0, 0.1, "child", &g, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "another process"));

    /* The child crashes without releasing. As a zombie (not yet reaped) it
     * is already dead to the store. */
    assert_int_equal(kill(pid, SIGKILL), 0);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    assert_int_equal(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
    assert_usd(month_used(f->st, m), 0.1);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0.4);
    assert_int_equal(reap(pid), KILLED);
    close(hold[1]);
    close(ready[0]);

    char buf[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT closed_by || ' ' || spent_usd FROM leases"
                                 " WHERE run_id = 'child'",
                                 buf, sizeof buf),
                        "reclaimed 0.1");
    /* What the child spent stays in the ledger. */
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE run_id = 'child'"),
               0.1);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0);
}

/* ---- the result cache and damaged stores ------------------------------------------ */

/* Whether `key` is a hit; frees what the lookup returned. */
static bool cache_hit(fr_store *st, const char *key)
{
    fr_reply r = {0};
    bool hit = false;
    assert_ok(fr_store_cache_get(st, key, &r, &hit, &e_));
    if (hit)
        assert_non_null(r.text);
    fr_reply_close(&r);
    return hit;
}

/* A damaged cache row, as a disk error or a hand edit leaves it, is a miss
 * (the request is sent again), never a result without text: invalid UTF-8,
 * a NUL byte in the text, a model that is not text, JSON that does not
 * parse, a negative token count. */
static void test_damaged_cache_entry_is_a_miss(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    static const char *const damage[] = {
        "UPDATE cache SET text = CAST(x'4f4b20ff' AS TEXT)",
        "UPDATE cache SET text = CAST(x'4f4b00' AS TEXT)",
        "UPDATE cache SET text = x'c0af'",
        "UPDATE cache SET model = CAST(x'6dfe' AS TEXT)",
        "UPDATE cache SET json = '{\"a\": '",
        "UPDATE cache SET json = CAST(x'7b2261223a2022ff227d' AS TEXT)",
        "UPDATE cache SET output = -5",
        "UPDATE cache SET text = NULL",
    };
    json_t *j = json_pack("{s:s}", "a", "b");
    fr_reply good = {.text = "OK caf\xc3\xa9", .json = j, .model = "m-1", .usage = {3, 4, 0}};
    for (size_t i = 0; i < sizeof damage / sizeof *damage; i++) {
        assert_ok(fr_store_cache_put(f->st, "k1", "cloud", &good, &e_));
        assert_true(cache_hit(f->st, "k1"));
        raw_exec(f->path, damage[i]);
        if (cache_hit(f->st, "k1"))
            fail_msg("after \"%s\" the entry is still a hit", damage[i]);
    }
    json_decref(j);
}

/* Overwrites `len` bytes at `offset` of `path` with 0xff. */
static void scribble(const char *path, off_t offset, size_t len)
{
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    char buf[4096];
    memset(buf, 0xff, sizeof buf);
    while (len > 0) {
        size_t n = len < sizeof buf ? len : sizeof buf;
        assert_int_equal(pwrite(fd, buf, n, offset), (ssize_t)n);
        offset += (off_t)n;
        len -= n;
    }
    close(fd);
}

/* Damaged pages in the middle of the database are found at open (FR_ESTORE,
 * saying so), before a run could send anything on the strength of it. */
static void test_damaged_pages_refused_at_open(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    char text[3000], key[32];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    fr_reply r = {.text = text};
    for (int i = 0; i < 200; i++) {
        book(f->st, "r1", "t", "cloud", "cloud", 0.001, 1, 1, 0, false, "ok", NULL);
        snprintf(key, sizeof key, "k%d", i);
        assert_ok(fr_store_cache_put(f->st, key, "cloud", &r, &e_));
    }
    fr_store_close(f->st); /* checkpoints: every page is in the main file */
    f->st = NULL;
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    assert_true(sb.st_size > 40 * 4096);
    scribble(f->path, (sb.st_size / 2) / 4096 * 4096, 3 * 4096);
    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTORE);
    assert_null(st);
    assert_non_null(strstr(err.msg, "damaged"));
    assert_non_null(strstr(err.msg, "nothing was sent"));
}

/* A store that existed and was emptied (0 bytes) or deleted is refused,
 * saying what happened and how to start over; removing the marker (the
 * deliberate way) starts a new ledger. A brand-new folder starts one. */
static void test_emptied_store_refused(void **state)
{
    fx *f = *state;
    char marker[PATH_MAX + 8];
    snprintf(marker, sizeof marker, "%s.id", f->path);
    assert_int_not_equal(access(marker, F_OK), 0);
    f->st = open_ok(f->path); /* a brand-new folder: a new ledger */
    assert_int_equal(access(marker, F_OK), 0);
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    fr_store_close(f->st);
    f->st = NULL;
    assert_int_equal(truncate(f->path, 0), 0);
    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTORE);
    assert_non_null(strstr(err.msg, "empty (0 bytes)"));
    assert_non_null(strstr(err.msg, "remove"));
    assert_non_null(strstr(err.msg, marker));
    assert_int_equal(fr_store_open_readonly(f->path, &st, &err), FR_ESTORE);
    assert_int_equal(unlink(f->path), 0);
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTORE);
    assert_non_null(strstr(err.msg, "missing"));
    assert_int_not_equal(access(f->path, F_OK), 0); /* nothing created meanwhile */
    assert_int_equal(unlink(marker), 0);
    f->st = open_ok(f->path);
    char status[32];
    double cost;
    assert_int_equal(fr_store_run_status(f->st, "r1", status, sizeof status, &cost, &err),
                     FR_ENOENT);
}

/* ---- requests in flight and crashed runs --------------------------------------- */

static long long reserve(fr_store *st, const char *run, const char *task, double worst)
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

static void run_status(fr_store *st, const char *run, char *status, size_t size, double *cost)
{
    assert_ok(fr_store_run_status(st, run, status, size, cost, &e_));
}

/* An attempt in flight is charged its worst case from the moment it is
 * booked until it settles to what it cost; the monthly alert's total counts
 * only settled attempts; an attempt settles once. */
static void test_reserve_and_settle(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    book(f->st, "r1", "a", "cloud", "cloud", 0.1, 10, 10, 0, false, "ok", NULL);
    long long id = reserve(f->st, "r1", "b", 0.25);
    double spent = -1;
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.35);
    /* A lease sees the charge in flight as spent. */
    assert_usd(lease(f->st, m, 1.0, 1.0, "r1"), 0.65);
    fr_attempt_rec a = {.run_id = "r1",
                        .task = "b",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .input = 7,
                        .output = 3,
                        .cost_usd = 0.05,
                        .latency_ms = 40};
    double total = -1;
    assert_ok(fr_store_settle(f->st, id, &a, &total, &e_));
    assert_usd(total, 0.15);
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.15);
    assert_usd(raw_num(f->path, "SELECT output_tokens FROM attempts WHERE task = 'b'"), 3);
    /* Settled already: it cannot settle again, nor in another run's name. */
    fr_error err = {0};
    assert_int_equal(fr_store_settle(f->st, id, &a, NULL, &err), FR_EINVAL);
    long long id2 = reserve(f->st, "r1", "c", 0.2);
    a.run_id = "other";
    assert_int_equal(fr_store_settle(f->st, id2, &a, NULL, &err), FR_EINVAL);
    a.run_id = "r1";
    a.outcome = "pending";
    assert_int_equal(fr_store_settle(f->st, id2, &a, NULL, &err), FR_EINVAL);
    a.outcome = "error";
    a.cost_usd = 0;
    assert_ok(fr_store_settle(f->st, id2, &a, NULL, &e_));
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.15);
}

/* A child that begins a run, books one reply and sends two requests, then
 * says so on `ready` and waits on `hold` to be killed. With `lease_usd`,
 * it leases that much of the month first. */
static void child_in_flight(const char *path, time_t clock, double lease_usd, int ready, int hold)
{
    fr_store *st = NULL;
    fr_error err = {0};
    int ok = fr_store_open(path, &st, &err) == FR_OK;
    if (ok) {
        fr_store_set_clock(st, clock);
        ok = fr_store_run_begin(st, "victim", "wf", NULL, &err) == FR_OK;
    }
    double granted = 0;
    if (ok && lease_usd > 0)
        ok = fr_store_lease(st, "2026-11", 1.0, lease_usd, "victim", &granted, &err) == FR_OK;
    fr_attempt_rec a = {.run_id = "victim",
                        .task = "a",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = 0.1};
    long long id = 0;
    if (ok)
        ok = fr_store_add_attempt(st, &a, &err) == FR_OK;
    a.cost_usd = 0.2;
    if (ok)
        ok = fr_store_reserve(st, &a, &id, &err) == FR_OK;
    a.cost_usd = 0.05;
    if (ok)
        ok = fr_store_reserve(st, &a, &id, &err) == FR_OK;
    char c = ok ? 'y' : 'n';
    if (write(ready, &c, 1) != 1)
        _exit(3);
    wait_eof(hold);
    _exit(0);
}

/* Forks a child_in_flight, waits until it is in flight, and kills it. */
static void kill_in_flight(const char *path, time_t clock, double lease_usd)
{
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        child_in_flight(path, clock, lease_usd, ready[1], hold[0]);
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

/* A killed run stays "running" until a later run finds its process gone:
 * then it reads "crashed", its cost is its booked reply plus its requests in
 * flight at their worst case, and those stay charged to the month. */
static void test_killed_run_marked_crashed(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    fr_store_close(open_ok(f->path));
    kill_in_flight(f->path, clock, 0);
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    char status[32];
    double cost = -1;
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "running");
    assert_ok(fr_store_run_begin(f->st, "next", "wf", NULL, &e_));
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "crashed");
    assert_usd(cost, 0.35);
    double spent = -1;
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.35);
    char buf[128];
    assert_string_equal(raw_text(f->path,
                                 "SELECT group_concat(outcome, ',') FROM"
                                 " (SELECT outcome FROM attempts WHERE run_id = 'victim'"
                                 " ORDER BY id)",
                                 buf, sizeof buf),
                        "ok,cancelled,cancelled");
    /* The running run itself is left alone. */
    run_status(f->st, "next", status, sizeof status, &cost);
    assert_string_equal(status, "running");
}

/* A killed run that held a lease of the monthly cap: the run that reclaims
 * the lease marks it crashed, and the lease keeps the requests it had in
 * flight, so the month cannot be spent past its cap. */
static void test_reclaimed_lease_keeps_in_flight(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "survivor", "wf", NULL, &e_));
    fr_store_close(f->st);
    f->st = NULL;
    kill_in_flight(f->path, clock, 0.5);
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    /* The victim was charged 0.35 (0.1 booked, 0.25 in flight): 0.65 is left. */
    assert_usd(lease(f->st, m, 1.0, 1.0, "survivor"), 0.65);
    char status[32];
    double cost = -1;
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "crashed");
    assert_usd(cost, 0.35);
    char buf[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT closed_by || ' ' || spent_usd FROM leases"
                                 " WHERE run_id = 'victim'",
                                 buf, sizeof buf),
                        "reclaimed 0.35");
}

/* Leases recorded by a holder that cannot be alive: a pid from another boot,
 * and this pid with another start time (a reused pid). */
static void test_lease_of_other_boot_or_reused_pid(void **state)
{
    fx *f = *state;
    if (access("/proc/sys/kernel/random/boot_id", R_OK) != 0 || access("/proc/self/stat", R_OK))
        skip();
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2026, 11, 15, 12, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "old-boot", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "reused", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "live", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "me", "wf", NULL, &e_));
    /* A live holder for comparison: this process, as recorded by the store. */
    assert_usd(lease(f->st, "2026-11", 10, 1.0, "live"), 1.0);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
             " VALUES ('old-boot', '2026-11', 4, %ld, 0, 'another-boot', 0);"
             "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
             " SELECT 'reused', '2026-11', 4, pid, pid_start + 1, boot_id, 0 FROM leases"
             " WHERE run_id = 'live'",
             (long)getpid());
    raw_exec(f->path, sql);
    /* Neither dead lease counts, and the lease closes both. */
    assert_usd(lease(f->st, "2026-11", 10, 20, "me"), 9.0);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE closed_by = 'reclaimed'"), 2);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE closed_at IS NULL"), 2);
}

/* A child of the race: opens its own store, waits for the start, then leases
 * 25 times and spends half of each grant. Writes its total grant, waits for
 * the end (so no share is released while others still lease; the parent
 * kills some children there), and then releases its lease. */
static void child_race(const char *path, time_t clock, const char *run, double cap, int go_fd,
                       int out_fd, int end_fd)
{
    fr_store *st = NULL;
    char month[FR_STORE_MONTH_LEN];
    double total = 0;
    if (fr_store_open(path, &st, NULL) != FR_OK)
        _exit(10);
    fr_store_set_clock(st, clock);
    fr_store_month(st, month);
    if (fr_store_run_begin(st, run, "race", NULL, NULL) != FR_OK)
        _exit(11);
    wait_eof(go_fd);
    for (int i = 0; i < 25; i++) {
        double g = 0;
        if (fr_store_lease(st, month, cap, 0.07, run, &g, NULL) != FR_OK)
            _exit(12);
        total += g;
        fr_attempt_rec a = {.run_id = run,
                            .task = "t",
                            .endpoint = "e",
                            .tier = "cloud",
                            .outcome = "ok",
                            .attempt = i + 1,
                            .cost_usd = g / 2};
        if (g > 0 && fr_store_add_attempt(st, &a, NULL) != FR_OK)
            _exit(13);
    }
    if (write(out_fd, &total, sizeof total) != sizeof total)
        _exit(14);
    wait_eof(end_fd);
    int rc = fr_store_release(st, run, NULL);
    fr_store_close(st);
    _exit(rc == FR_OK ? 0 : 15);
}

static void test_concurrent_processes_respect_cap(void **state)
{
    fx *f = *state;
    enum { ROUNDS = 5, KIDS = 3 };
    const double cap = 1.0;
    fr_store_close(open_ok(f->path));
    for (int round = 0; round < ROUNDS; round++) {
        time_t clock = utc(2027, 1 + round, 3, 0, 0, 0);
        int go[2], out[2], end[2];
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(out), 0);
        assert_int_equal(pipe(end), 0);
        pid_t kids[KIDS];
        for (int k = 0; k < KIDS; k++) {
            char run[32];
            snprintf(run, sizeof run, "race-%d-%d", round, k);
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                close(go[1]);
                close(out[0]);
                close(end[1]);
                child_race(f->path, clock, run, cap, go[0], out[1], end[0]);
            }
        }
        close(go[0]);
        close(out[1]);
        close(end[0]);
        close(go[1]); /* every child starts leasing now */
        double sum = 0;
        for (int k = 0; k < KIDS; k++) {
            double total = 0;
            assert_int_equal(read(out[0], &total, sizeof total), (ssize_t)sizeof total);
            sum += total;
        }
        close(out[0]);
        /* Together never more than the cap; and since they wanted far more,
         * exactly the cap. */
        assert_true(sum <= cap + EPS);
        assert_usd(sum, cap);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT TOTAL(amount) FROM leases WHERE month = '2027-%02d'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), sum);
        /* Now the first releases, the others crash holding their leases. */
        for (int k = 1; k < KIDS; k++)
            crash(kids[k]);
        close(end[1]);
        assert_int_equal(reap(kids[0]), 0);
        snprintf(sql, sizeof sql, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-%02d'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), cap / 2);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM leases WHERE month = '2027-%02d' AND closed_by = 'released'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), 1);
    }
    /* Afterwards all children are gone: their unspent shares come back. */
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2027, 1, 20, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "after", "wf", NULL, &e_));
    double spent = raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-01'");
    assert_usd(month_used(f->st, "2027-01"), spent);
    assert_usd(lease(f->st, "2027-01", cap, 1.0, "after"), cap - spent);
}

/* A ledger written by a flowrun of schema version 1 (built by that version's
 * own migration, which never changes once released) migrates at the first
 * open: every run, attempt (whatever its outcome then), lease and cached
 * result is kept, the ledger view still joins them, and the new columns and
 * outcomes work, on the old runs too. */
static void test_migrates_v1(void **state)
{
    fx *f = *state;
    char dir[PATH_MAX];
    join(dir, f->dir, ".flowrun");
    assert_int_equal(mkdir(dir, 0700), 0);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_non_null(fr_store_migration_sql(0));
    assert_null(fr_store_migration_sql(FR_STORE_SCHEMA_VERSION));
    raw_exec(f->path, "PRAGMA journal_mode=WAL");
    raw_exec(f->path, fr_store_migration_sql(0));
    raw_exec(f->path,
             "INSERT INTO meta VALUES ('schema_version', 1);"
             "INSERT INTO runs(id, workflow, started_at, status, cost_usd)"
             "  VALUES ('old', 'wf', 1.0, 'ok', 0.25);"
             "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd, outcome, at,"
             "  month) VALUES ('old', 't', 1, 'cloud', 'cloud', 0.15, 'ok', 1.0, '2026-11');"
             "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, input_tokens,"
             "  output_tokens, cost_usd, outcome, error, at, month) VALUES ('old', 'u', 1,"
             "  'cloud', 'cloud', 10, 20, 0.10, 'quality', 'bad json', 1.0, '2026-11');"
             "INSERT INTO leases(run_id, month, amount, pid, opened_at, closed_at, closed_by,"
             "  spent_usd) VALUES ('old', '2026-11', 0.5, 1, 1.0, 2.0, 'released', 0.25);"
             "INSERT INTO cache(key, endpoint, text, created_at) VALUES ('k', 'cloud', 'hi', 1);");
    /* It is version 1's ledger: it cannot hold an outcome version 2 added. */
    assert_true(raw_refused(f->path, "INSERT INTO attempts(run_id, task, attempt, endpoint, tier,"
                                     " cost_usd, outcome, at, month) VALUES ('old', 't', 2,"
                                     " 'cloud', 'cloud', 0, 'truncated', 1.0, '2026-11')"));
    f->st = open_ok(f->path);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM ledger WHERE outcome = 'quality'"), 1);
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts"), 0.25);
    double spent = -1;
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.25);
    char status[32];
    double cost = -1;
    run_status(f->st, "old", status, sizeof status, &cost);
    assert_string_equal(status, "ok");
    assert_usd(cost, 0.25);
    assert_true(cache_hit(f->st, "k"));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases"), 1);
    fr_store_set_clock(f->st, utc(2026, 11, 15, 12, 0, 0));
    static const char *const outcomes[] = {"truncated", "refused", "tool_call", "no_answer"};
    for (size_t i = 0; i < 4; i++)
        book(f->st, "old", "t", "e", "cloud", 0.01, 1, 1, 0, false, outcomes[i], "cut");
    assert_ok(fr_store_run_begin(f->st, "new", "wf", NULL, &e_));
    reserve(f->st, "new", "t", 0.1);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM ledger"), 7);
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.39);
    json_t *j = NULL;
    assert_ok(fr_store_spend(f->st, "2026-11", &j, &e_));
    assert_usd(jnum(json_array_get(json_object_get(j, "months"), 0), "cost_usd"), 0.39);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_create_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_and_observed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_places, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forked_child_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_month_and_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spend_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_month_totals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leases_in_one_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_frees_unspent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_of_dead_process_reclaimed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_of_other_boot_or_reused_pid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_processes_respect_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reserve_and_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_run_marked_crashed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaimed_lease_keeps_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_cache_entry_is_a_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_pages_refused_at_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_emptied_store_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrates_v1, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
