/* Unit tests of engine/store/ opening its file: creating, reopening and the
 * schema, the read-only open of a plan and of `flowrun spend`, refusals
 * (a newer schema, not a database, unwritable places, a forked child),
 * damaged or emptied stores, and the migration of a version 1 ledger.
 * A real SQLite file in a fresh temporary directory per test; another
 * process is a real forked child with its own store opened after the fork. */

#include "engine/util/buf.h"
#include "tests/unit/support/store_fixture.h"

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

/* SQLite keeps no memory statistics once a store is open (the first open
 * of the process turns them off: they take a mutex around every allocation
 * SQLite makes): the memory in use reads 0 while a connection holds some.
 * First in the list, before anything else here starts SQLite. */
static void test_sqlite_keeps_no_memory_statistics(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_int_equal(sqlite3_memory_used(), 0);
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
    char sql[120], said[40];
    snprintf(sql, sizeof sql, "UPDATE meta SET value = '%d' WHERE key = 'schema_version'",
             FR_STORE_SCHEMA_VERSION + 1);
    snprintf(said, sizeof said, "schema version %d", FR_STORE_SCHEMA_VERSION + 1);
    raw_exec(f->path, sql);
    assert_int_equal(fr_store_open(f->path, &st, &err), FR_ESTOREVER);
    assert_non_null(strstr(err.msg, said));
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

/* ---- the current schema and the migrations ------------------------------------ */

/* Appends `sql` (borrowed, may be NULL) to `out` normalised: runs of white
 * space as one space, none beside a parenthesis, a comma or a semicolon,
 * and no double quotes (SQLite quotes a table's name in its CREATE text
 * once an ALTER TABLE renamed it). */
static void append_normal(fr_buf *out, const char *sql)
{
    bool space = false;
    for (const char *p = sql ? sql : ""; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == '\n') {
            space = true;
            continue;
        }
        if (*p == '"')
            continue;
        size_t n = out->len;
        char prev = n ? out->data[n - 1] : '\0';
        if (space && !strchr("(),;", *p) && !strchr("(,;", prev) && n)
            fr_buf_append(out, " ", 1);
        space = false;
        fr_buf_append(out, p, 1);
    }
}

/* The database at `path` (borrowed) as text (owned): every schema row
 * (type, name, table, normalised SQL; not the root page) by type and name,
 * then meta's rows. */
static char *schema_dump(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    fr_buf out;
    fr_buf_init(&out, 0);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    static const char *const queries[] = {
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
        "SELECT 'meta', key, typeof(value), value FROM meta ORDER BY key",
        "SELECT 'pragma', 'user_version', '', user_version FROM pragma_user_version"};
    for (size_t q = 0; q < sizeof queries / sizeof *queries; q++) {
        assert_int_equal(sqlite3_prepare_v2(db, queries[q], -1, &s, NULL), SQLITE_OK);
        while (sqlite3_step(s) == SQLITE_ROW) {
            for (int c = 0; c < 4; c++) {
                append_normal(&out, (const char *)sqlite3_column_text(s, c));
                fr_buf_append(&out, c < 3 ? "|" : "\n", 1);
            }
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return fr_buf_take(&out);
}

/* Makes the database at `path` (borrowed) as migrations 0 .. `version` - 1
 * make it, with meta's schema_version as fr_store_open writes it. */
static void migrated_db(const char *path, int version)
{
    sqlite3 *db = NULL;
    char meta[100];
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    for (int v = 0; v < version; v++)
        assert_int_equal(sqlite3_exec(db, fr_store_migration_sql(v), NULL, NULL, NULL), SQLITE_OK);
    snprintf(meta, sizeof meta, "INSERT INTO meta(key, value) VALUES ('schema_version', %d)",
             version);
    assert_int_equal(sqlite3_exec(db, meta, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* A new store is created from the current schema in one set of statements,
 * not through the migrations: it is the same database the migrations make
 * (every table, column, index, view and trigger, and meta), whether they
 * run alone or through fr_store_open from version 1; and the comparison
 * tells a schema one migration short from the current one. */
static void test_new_store_is_what_migrations_make(void **state)
{
    fx *f = *state;
    char chain[PATH_MAX], short_one[PATH_MAX];
    assert_non_null(fr_store_schema_sql(0));
    assert_null(fr_store_schema_sql(-1));
    f->st = open_ok(f->path);
    fr_store_close(f->st);
    f->st = NULL;
    join(chain, f->dir, "chain.db");
    migrated_db(chain, FR_STORE_SCHEMA_VERSION);
    join(short_one, f->dir, "short.db");
    migrated_db(short_one, FR_STORE_SCHEMA_VERSION - 1);
    char *fresh = schema_dump(f->path), *want = schema_dump(chain);
    char *older = schema_dump(short_one);
    assert_string_equal(fresh, want);
    assert_string_not_equal(older, want);
    assert_non_null(strstr(fresh, "table|attempts|attempts|CREATE TABLE attempts("));
    free(fresh);
    free(older);
    tmpdir_remove(f->dir);
    assert_int_equal(mkdir(f->dir, 0700), 0);
    old_store(f, 1, NULL); /* version 1, taken to the current one by the open */
    f->st = open_ok(f->path);
    char *upgraded = schema_dump(f->path);
    assert_string_equal(upgraded, want);
    free(upgraded);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_sqlite_keeps_no_memory_statistics),
        STORE_TEST(test_open_create_reopen),
        STORE_TEST(test_readonly_and_observed),
        STORE_TEST(test_open_readonly),
        STORE_TEST(test_newer_schema_refused),
        STORE_TEST(test_not_a_database),
        STORE_TEST(test_unwritable_places),
        STORE_TEST(test_forked_child_refused),
        STORE_TEST(test_damaged_pages_refused_at_open),
        STORE_TEST(test_emptied_store_refused),
        STORE_TEST(test_migrates_v1),
        STORE_TEST(test_new_store_is_what_migrations_make),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
