/* Unit tests of engine/store/'s ledger: runs, attempts and the month's
 * clock, the spend report, bad records refused, no column for a secret,
 * and a damaged row of the result cache read as a miss. A real SQLite
 * file in a fresh temporary directory per test. */

#include "tests/unit/support/store_fixture.h"

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

/* Opens a store at `path` (borrowed) as user `user` on host `host` (the
 * labels FLOWRUN_USER and FLOWRUN_HOST give). */
static fr_store *open_as(const char *path, const char *user, const char *host)
{
    setenv("FLOWRUN_USER", user, 1);
    setenv("FLOWRUN_HOST", host, 1);
    fr_store *st = open_ok(path);
    unsetenv("FLOWRUN_USER");
    unsetenv("FLOWRUN_HOST");
    return st;
}

/* Who booked and from where, captured when the books open, split out in
 * the spend report by month and by day; a row booked before schema 10 has
 * neither and shows "-". */
static void test_spend_by_user_host_and_day(void **state)
{
    fx *f = *state;
    f->st = open_as(f->path, "alice", "build1");
    fr_store *b = open_as(f->path, "bob", "build2");
    fr_store_set_clock(f->st, utc(2026, 11, 2, 9, 0, 0));
    fr_store_set_clock(b, utc(2026, 11, 2, 9, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "r1", "alpha", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "alpha", NULL, &e_));
    book(f->st, "r1", "a", "sonnet", "cloud", 0.10, 100, 50, 0, false, "ok", NULL);
    book(b, "r2", "a", "sonnet", "cloud", 0.25, 100, 50, 0, false, "ok", NULL);
    fr_store_set_clock(f->st, utc(2026, 11, 3, 10, 0, 0));
    book(f->st, "r1", "b", "sonnet", "cloud", 0.05, 100, 50, 0, false, "ok", NULL);
    assert_ok(fr_store_flush(f->st, &e_));
    raw_exec(f->path, "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd,"
                      " outcome, at, month, day) VALUES ('r1', 'old', 1, 'sonnet', 'cloud', 0.01,"
                      " 'ok', 0, '2026-11', '2026-11-02')");
    char buf[128];
    assert_string_equal(raw_text(f->path,
                                 "SELECT user_name || '@' || host FROM runs WHERE id = 'r2'", buf,
                                 sizeof buf),
                        "bob@build2");

    json_t *j = NULL;
    assert_ok(fr_store_spend(f->st, "2026-11", &j, &e_));
    json_t *nov = json_array_get(json_object_get(j, "months"), 0);
    assert_usd(jnum(nov, "cost_usd"), 0.41);
    assert_usd(jnum(nov, "by_user.alice.cost_usd"), 0.15);
    assert_usd(jnum(nov, "by_user.alice.attempts"), 2);
    assert_usd(jnum(nov, "by_user.bob.cost_usd"), 0.25);
    assert_usd(jnum(nov, "by_user.-.cost_usd"), 0.01);
    assert_usd(jnum(nov, "by_host.build1.cost_usd"), 0.15);
    assert_usd(jnum(nov, "by_host.build2.tokens.input"), 100);
    assert_usd(jnum(nov, "by_host.-.attempts"), 1);
    json_decref(j);

    assert_ok(fr_store_spend_days(f->st, NULL, &j, &e_));
    json_t *days = json_object_get(j, "days");
    assert_int_equal(json_array_size(days), 2);
    json_t *d2 = json_array_get(days, 0), *d3 = json_array_get(days, 1);
    assert_string_equal(json_string_value(json_object_get(d2, "day")), "2026-11-02");
    assert_usd(jnum(d2, "cost_usd"), 0.36);
    assert_usd(jnum(d2, "by_user.bob.cost_usd"), 0.25);
    assert_string_equal(json_string_value(json_object_get(d3, "day")), "2026-11-03");
    assert_usd(jnum(d3, "cost_usd"), 0.05);
    assert_null(json_object_get(jget(d3, "by_user"), "bob"));
    json_decref(j);
    assert_ok(fr_store_spend_days(f->st, "2026-11-04", &j, &e_));
    assert_usd(jnum(json_array_get(json_object_get(j, "days"), 0), "cost_usd"), 0);
    json_decref(j);
    j = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_spend_days(f->st, "2026-11", &j, &err), FR_EINVAL);
    assert_int_equal(fr_store_spend_days(f->st, "2026-11-3", &j, &err), FR_EINVAL);
    assert_null(j);
    fr_store_close(b);
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

/* ---- processes booking the first attempts of the same keys ----------------- */

enum { BOOKERS = 4, KEYS = 150 };

/* A child that books, outside any batch, one attempt of each of KEYS new
 * routing-history keys (endpoints "e0".."e149"), in order, once `go`
 * closes; exits 0, or 1 naming the write that failed. */
static _Noreturn void child_books(const char *path, int k, int go_fd)
{
    fr_store *st = NULL;
    fr_error err = {0};
    if (fr_store_open(path, &st, &err) != FR_OK)
        goto failed;
    char run[16];
    snprintf(run, sizeof run, "r%d", k);
    if (fr_store_run_begin(st, run, "wf", NULL, &err) != FR_OK)
        goto failed;
    wait_eof(go_fd);
    for (int i = 0; i < KEYS; i++) {
        char ep[16];
        snprintf(ep, sizeof ep, "e%d", i);
        fr_attempt_rec a = {.run_id = run,
                            .task = "t",
                            .endpoint = ep,
                            .tier = "local",
                            .outcome = i % 3 ? "ok" : "quality",
                            .attempt = i + 1,
                            .latency_ms = 100 + i,
                            .has_ttft = true,
                            .ttft_ms = 10};
        if (fr_store_add_attempt(st, &a, &err) != FR_OK)
            goto failed;
    }
    fr_store_close(st);
    _exit(0);
failed:
    fprintf(stderr, "booking child %d: %s\n", k, err.msg);
    _exit(1);
}

/* Processes that book the first attempts of the same keys at once, each
 * in a transaction of its own, all succeed (one adding a key's row while
 * another found none did fail on the row's key), and every key's summary
 * counts every process's attempt, with its latency bins. */
static void test_first_attempts_of_a_key_at_once(void **state)
{
    fx *f = *state;
    fr_store_close(open_ok(f->path));
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t kids[BOOKERS];
    for (int k = 0; k < BOOKERS; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            close(go[1]);
            child_books(f->path, k, go[0]);
        }
    }
    close(go[0]);
    close(go[1]); /* every child books now */
    for (int k = 0; k < BOOKERS; k++)
        assert_int_equal(reap(kids[k]), 0);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM routing_history"), KEYS);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM routing_history WHERE settled = 4"
                                      " AND passes + fails = 4"),
                     KEYS);
    assert_int_equal(raw_num(f->path, "SELECT TOTAL(n) FROM routing_bins"), BOOKERS * KEYS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_month_and_clock),
        STORE_TEST(test_spend_round_trip),
        STORE_TEST(test_spend_by_user_host_and_day),
        STORE_TEST(test_bad_records),
        STORE_TEST(test_no_secret_columns),
        STORE_TEST(test_damaged_cache_entry_is_a_miss),
        STORE_TEST(test_first_attempts_of_a_key_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
