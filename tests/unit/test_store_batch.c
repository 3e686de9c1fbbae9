/* The state store's write batching (fr_store_batch, fr_store_flush): the
 * writes of one loop turn are one transaction, visible to another process
 * once the turn's commit is done and not before; a reservation commits the
 * batch with it; a process killed before the commit loses that turn only;
 * every statement is prepared once at open; the month's totals (kept by
 * triggers) match the ledger's rows, and an older store is upgraded. */

#include "tests/unit/support/store_fixture.h"

static int pending_calls;

static void on_pending(void *ud)
{
    (void)ud;
    pending_calls++;
}

static long count_rows(const char *path, const char *sql)
{
    return (long)raw_num(path, sql);
}

static fr_attempt_rec rec(const char *task, int attempt, const char *outcome, double cost)
{
    return (fr_attempt_rec){.run_id = "r1",
                            .task = task,
                            .endpoint = "e1",
                            .tier = "cloud",
                            .model = "m",
                            .outcome = outcome,
                            .attempt = attempt,
                            .input = 10,
                            .output = 5,
                            .cost_usd = cost,
                            .latency_ms = 100};
}

static void batched_store(fx *f)
{
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2027, 3, 10, 12, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    pending_calls = 0;
    fr_store_batch(f->st, on_pending, NULL);
}

/* A turn's writes are one transaction: another connection sees none of
 * them before the flush, all of them after, and the turn opened it once. */
static void test_rows_visible_after_the_turns_commit(void **state)
{
    fx *f = *state;
    batched_store(f);
    fr_store_stats before, after;
    fr_store_stats_get(f->st, &before);
    fr_reply r = {.text = "hello", .model = "m"};
    for (int i = 0; i < 20; i++) {
        fr_attempt_rec a = rec("t", i + 1, "ok", 0.001);
        assert_ok(fr_store_add_attempt(f->st, &a, &e_));
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_ok(fr_store_cache_put(f->st, key, "e1", &r, &e_));
    }
    assert_ok(fr_store_run_end(f->st, "r1", "ok", 0, 0.02, &e_));
    assert_int_equal(pending_calls, 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts"), 0);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM cache"), 0);
    /* The store itself reads what its batch holds. */
    double spent = 0;
    assert_ok(fr_store_month_spent(f->st, "2027-03", &spent, &e_));
    assert_usd(spent, 0.02);
    fr_reply got;
    bool hit = false;
    assert_ok(fr_store_cache_get(f->st, "k3", &got, &hit, &e_));
    assert_true(hit);
    fr_reply_close(&got);
    assert_ok(fr_store_flush(f->st, &e_));
    fr_store_stats_get(f->st, &after);
    assert_int_equal(after.commits - before.commits, 1);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts"), 20);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM cache"), 20);
    char status[32];
    assert_string_equal(raw_text(f->path, "SELECT status FROM runs", status, sizeof status), "ok");
    /* The next write opens the next turn's transaction. */
    fr_attempt_rec a = rec("t", 99, "ok", 0.001);
    assert_ok(fr_store_add_attempt(f->st, &a, &e_));
    assert_int_equal(pending_calls, 2);
}

/* A request in flight is durable at once: the reservation commits the
 * batch with it (the turn's earlier writes too). */
static void test_reserve_commits_at_once(void **state)
{
    fx *f = *state;
    batched_store(f);
    fr_attempt_rec done = rec("a", 1, "ok", 0.001);
    assert_ok(fr_store_add_attempt(f->st, &done, &e_));
    fr_attempt_rec b = rec("b", 1, "ok", 0.5);
    long long id = 0;
    assert_ok(fr_store_reserve(f->st, &b, &id, &e_));
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts"), 2);
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE outcome = 'pending'"),
               0.5);
    /* Its settle joins the next batch; a lease commits that batch first. */
    b.cost_usd = 0.1;
    double total = 0;
    assert_ok(fr_store_settle(f->st, id, &b, &total, &e_));
    assert_usd(total, 0.101);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     1);
    double granted = 0;
    assert_ok(fr_store_lease(f->st, "2027-03", 1.0, 2.0, "r1", &granted, &e_));
    assert_usd(granted, 1.0 - 0.101);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     0);
}

/* A process killed before its turn's commit loses that turn, and nothing
 * that an earlier turn committed. */
static void test_crash_loses_at_most_the_last_turn(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    fr_store_close(f->st);
    f->st = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fr_store *st = NULL;
        fr_error err = {0};
        if (fr_store_open(f->path, &st, &err) != FR_OK)
            _exit(2);
        fr_store_batch(st, on_pending, NULL);
        for (int turn = 0; turn < 3; turn++) {
            for (int i = 0; i < 5; i++) {
                fr_attempt_rec a = rec("t", turn * 5 + i + 1, "ok", 0.01);
                if (fr_store_add_attempt(st, &a, &err) != FR_OK)
                    _exit(3);
            }
            if (turn < 2 && fr_store_flush(st, &err) != FR_OK) /* the last turn never ends */
                _exit(4);
        }
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(count_rows(f->path, "SELECT count(*) FROM attempts"), 10);
    f->st = open_ok(f->path);
    double spent = 0;
    assert_ok(fr_store_month_spent(f->st, fr_store_month(f->st, (char[FR_STORE_MONTH_LEN]){0}),
                                   &spent, &e_));
    assert_usd(spent, 0.10);
}

/* Every statement is prepared once, at open: thousands of calls prepare
 * nothing more, and the same statements stay alive. */
static void test_statements_reused(void **state)
{
    fx *f = *state;
    batched_store(f);
    fr_store_stats before, after;
    fr_store_stats_get(f->st, &before);
    assert_true(before.prepares > 0);
    fr_reply r = {.text = "x", .model = "m"};
    for (int i = 0; i < 200; i++) {
        fr_attempt_rec a = rec("t", i + 1, "ok", 0.001);
        long long id = 0;
        double total = 0, spent = 0;
        char status[32];
        bool hit = false;
        fr_reply got;
        assert_ok(fr_store_reserve(f->st, &a, &id, &e_));
        assert_ok(fr_store_settle(f->st, id, &a, i % 2 ? &total : NULL, &e_));
        assert_ok(fr_store_cache_put(f->st, "k", "e1", &r, &e_));
        assert_ok(fr_store_cache_get(f->st, "k", &got, &hit, &e_));
        fr_reply_close(&got);
        assert_ok(fr_store_run_status(f->st, "r1", status, sizeof status, &spent, &e_));
        assert_ok(fr_store_month_spent(f->st, "2027-03", &spent, &e_));
    }
    assert_ok(fr_store_flush(f->st, &e_));
    fr_store_stats_get(f->st, &after);
    assert_int_equal(after.prepares, before.prepares);
    assert_int_equal(after.statements, before.statements);
}

/* The month's totals follow every insert, settle and crash charge, and a
 * store of schema version 3 gets them from its rows when it is upgraded. */
static void test_month_totals_follow_the_rows(void **state)
{
    fx *f = *state;
    old_store(f, 3,
              "INSERT INTO runs(id, workflow, started_at) VALUES ('old', 'wf', 0);"
              "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd,"
              " outcome, at, month) VALUES ('old', 't', 1, 'e', 'cloud', 0.1, 'ok', 0,"
              " '2027-03'), ('old', 't', 2, 'e', 'cloud', 0.2, 'pending', 0, '2027-03');");
    batched_store(f);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    double spent = 0, total = 0;
    assert_ok(fr_store_month_spent(f->st, "2027-03", &spent, &e_));
    assert_usd(spent, 0.3);
    fr_attempt_rec a = rec("t", 1, "ok", 0.05);
    long long id = 0;
    assert_ok(fr_store_reserve(f->st, &a, &id, &e_));
    a.cost_usd = 0.01;
    assert_ok(fr_store_settle(f->st, id, &a, &total, &e_));
    assert_usd(total, 0.11); /* booked only: the old run's request in flight is left out */
    assert_ok(fr_store_month_spent(f->st, "2027-03", &spent, &e_));
    assert_usd(spent, 0.31);
    assert_ok(fr_store_flush(f->st, &e_));
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"),
               raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts"));
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"),
               raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE outcome != 'pending'"));
}

/* Schema version 6: a store of version 5 loses the index no query uses
 * (attempts_month), and a settle changes its month's totals in one UPDATE:
 * the totals still follow every settle and a row moved to another month. */
static void test_v6_drops_the_month_index(void **state)
{
    fx *f = *state;
    old_store(f, 5, NULL);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'attempts_month'"),
               1);
    batched_store(f);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'attempts_month'"),
               0);
    for (int i = 0; i < 10; i++) {
        fr_attempt_rec a = rec("t", i + 1, "ok", 0.05);
        long long id = 0;
        double total = 0;
        assert_ok(fr_store_reserve(f->st, &a, &id, &e_));
        a.cost_usd = 0.01 * (i + 1);
        a.outcome = i % 3 ? "ok" : "error";
        assert_ok(fr_store_settle(f->st, id, &a, i % 2 ? &total : NULL, &e_));
    }
    assert_ok(fr_store_flush(f->st, &e_));
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.55);
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"), 0.55);
    raw_exec(f->path, "UPDATE attempts SET month = '2027-04', day = '2027-04-01', cost_usd = 0.5"
                      " WHERE attempt = 10");
    assert_usd(
        raw_num(f->path,
                "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals WHERE substr(day, 1, 7) = "
                "'2027-03'"),
        0.45);
    assert_usd(raw_num(f->path,
                       "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals WHERE substr(day, 1, 7) = "
                       "'2027-04'"),
               0.5);
    raw_exec(f->path, "UPDATE attempts SET outcome = 'pending' WHERE attempt = 1");
    assert_usd(
        raw_num(f->path,
                "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals WHERE substr(day, 1, 7) = "
                "'2027-03'"),
        0.45);
    assert_usd(raw_num(f->path,
                       "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals WHERE substr(day, 1, 7) = "
                       "'2027-03'"),
               0.44);
}

/* How many instructions `op` the program of statement `sql` of the store
 * at `path` (both borrowed) holds, as EXPLAIN lists them. */
static long count_ops(const char *path, const char *sql, const char *op)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long n = 0;
    char *explain = sqlite3_mprintf("EXPLAIN %s", sql);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &s, NULL), SQLITE_OK);
    while (sqlite3_step(s) == SQLITE_ROW)
        n += strcmp((const char *)sqlite3_column_text(s, 1), op) == 0;
    sqlite3_finalize(s);
    sqlite3_close(db);
    sqlite3_free(explain);
    return n;
}

/* True when statement `sql` of the store at `path` (both borrowed) compiles
 * to a program that opens a temporary b-tree (EXPLAIN's OpenEphemeral). */
static bool opens_ephemeral(const char *path, const char *sql)
{
    return count_ops(path, sql, "OpenEphemeral") > 0;
}

/* Schema version 8: a store of version 6 keeps every attempt (its id, its
 * outcome, the month's totals) when its attempts table is rebuilt with the
 * outcome checked by comparisons: an attempt's INSERT and settle no longer
 * fill a temporary b-tree with the list of outcomes, every outcome is still
 * taken and anything else refused, and the totals follow the new rows. */
static void test_v8_checks_the_outcome_without_a_temporary_table(void **state)
{
    fx *f = *state;
    old_store(f, 6,
              "INSERT INTO runs(id, workflow, started_at) VALUES ('old', 'wf', 0);"
              "INSERT INTO attempts(id, run_id, task, attempt, endpoint, tier, cost_usd,"
              " outcome, at, month, task_type, ttft_ms) VALUES"
              " (7, 'old', 't', 1, 'e1', 'cloud', 0.1, 'ok', 0, '2027-03', 'chat', 12.5),"
              " (9, 'old', 't', 2, 'e1', 'cloud', 0.2, 'pending', 0, '2027-03', NULL, NULL);");
    static const char insert[] = "INSERT INTO attempts(run_id, task, attempt, endpoint, tier,"
                                 " cost_usd, outcome, at, month) VALUES ('r1', 'u', 1, 'e1',"
                                 " 'cloud', 0, 'ok', 0, '2027-03')";
    static const char settle[] = "UPDATE attempts SET outcome = 'ok' WHERE id = 9";
    assert_true(opens_ephemeral(f->path, insert)); /* version 6's IN list */
    batched_store(f);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_false(opens_ephemeral(f->path, insert));
    assert_false(opens_ephemeral(f->path, settle));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM attempts"), 2);
    assert_usd(raw_num(f->path, "SELECT ttft_ms FROM attempts WHERE id = 7 AND task_type = 'chat'"),
               12.5);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM ledger WHERE outcome = 'pending'"), 1);
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.3);
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"), 0.1);
    /* Schema 10 keeps the totals by day: these rows' time (0) is not in their
     * month, so they count in the month on no day; and they have no user. */
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"
                                " WHERE day = '2027-03-00'"),
               0.3);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM attempts WHERE day IS NULL"
                                " AND user_name IS NULL"),
               2);
    /* Every outcome a row may hold is taken; anything else is refused. */
    static const char *const outcomes[] = {"ok",        "quality",  "error",     "timeout",
                                           "cancelled", "budget",   "truncated", "refused",
                                           "tool_call", "no_answer"};
    for (size_t i = 0; i < sizeof outcomes / sizeof *outcomes; i++) {
        fr_attempt_rec a = rec("t", (int)i + 3, "ok", 0.01);
        long long id = 0;
        assert_ok(fr_store_reserve(f->st, &a, &id, &e_));
        a.outcome = outcomes[i];
        assert_ok(fr_store_settle(f->st, id, &a, NULL, &e_));
    }
    assert_ok(fr_store_flush(f->st, &e_));
    assert_true(raw_refused(f->path, "UPDATE attempts SET outcome = 'maybe' WHERE id = 7"));
    assert_true(raw_refused(f->path, "INSERT INTO attempts(run_id, task, attempt, endpoint, tier,"
                                     " cost_usd, outcome, at, month) VALUES ('r1', 'v', 1, 'e1',"
                                     " 'cloud', 0, 'OK', 0, '2027-03')"));
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.4);
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"), 0.2);
    raw_exec(f->path, "DELETE FROM attempts WHERE id = 9");
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.2);
}

/* Schema version 13: a settle (cost and outcome set) runs the day totals'
 * settle trigger only, not the move trigger too (it lists month and day
 * now); and the totals still follow a settle of $0, one at a cost, a row
 * moved to another day and a deleted one. */
static void test_v13_settle_runs_one_trigger(void **state)
{
    fx *f = *state;
    old_store(f, 12, NULL);
    static const char settle[] = "UPDATE attempts SET cost_usd = 0.5, outcome = 'ok' WHERE id = 1";
    assert_int_equal(count_ops(f->path, settle, "Program"), 2);
    batched_store(f);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_int_equal(count_ops(f->path, settle, "Program"), 1);
    double costs[][2] = {{0, 0}, {0.05, 0.01}, {0.02, 0}, {0, 0}};
    for (size_t i = 0; i < sizeof costs / sizeof *costs; i++) {
        fr_attempt_rec a = rec("t", (int)i + 1, "ok", costs[i][0]);
        long long id = 0;
        assert_ok(fr_store_reserve(f->st, &a, &id, &e_));
        a.cost_usd = costs[i][1];
        assert_ok(fr_store_settle(f->st, id, &a, NULL, &e_));
    }
    fr_attempt_rec p = rec("t", 9, "ok", 0.3);
    long long id = 0;
    assert_ok(fr_store_reserve(f->st, &p, &id, &e_));
    assert_ok(fr_store_flush(f->st, &e_));
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.31);
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"), 0.01);
    raw_exec(f->path, "UPDATE attempts SET day = '2027-03-11' WHERE attempt = 9");
    raw_exec(f->path, "DELETE FROM attempts WHERE attempt = 2");
    assert_usd(raw_num(f->path, "SELECT TOTAL(charged_pusd) / 1e12 FROM day_totals"), 0.3);
    assert_usd(raw_num(f->path, "SELECT charged_pusd / 1e12 FROM day_totals"
                                " WHERE day = '2027-03-11'"),
               0.3);
    assert_usd(raw_num(f->path, "SELECT TOTAL(booked_pusd) / 1e12 FROM day_totals"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_rows_visible_after_the_turns_commit),
        STORE_TEST(test_reserve_commits_at_once),
        STORE_TEST(test_crash_loses_at_most_the_last_turn),
        STORE_TEST(test_statements_reused),
        STORE_TEST(test_month_totals_follow_the_rows),
        STORE_TEST(test_v6_drops_the_month_index),
        STORE_TEST(test_v8_checks_the_outcome_without_a_temporary_table),
        STORE_TEST(test_v13_settle_runs_one_trigger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
