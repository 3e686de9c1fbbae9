/* Unit tests of the PostgreSQL read side (engine/store/pgread, reached
 * through store.h: fr_store_open_readonly of a URL): one ledger of 48
 * attempts over four endpoints, two tiers, three workflows, three users,
 * two hosts, four days in two months, three task types and every kind of
 * outcome, booked in a SQLite store and copied into a real PostgreSQL
 * server (tests/unit/support/pg_fixture.h) as a run books it there (in
 * flight, then settled). What the commands print is built from the
 * documents compared here, byte for byte: the spend by month and by day,
 * a run task by task, the observed figures of a plan, and the routing
 * history (PostgreSQL's triggers against the SQLite ledger's own sums, and
 * against a recount from its attempts). Also: an unreachable server is
 * FR_ECONNECT with the password masked, a database without flowrun's
 * schema is FR_ENOENT, and a decision on an approval is written. */

#include "tests/unit/support/store_fixture.h"

#include "tests/unit/support/pg_copy.h"
#include "tests/unit/support/pg_fixture.h"

#include "engine/history.h"

static pg_server server;
static char dir[PATH_MAX], path[PATH_MAX + 16];

/* The ledger: attempt i of 48, on a day of four, by a user of three on a
 * host of two. */
static const char *const endpoints[] = {"gpu", "studio", "sonnet", "openrouter"};
static const char *const tiers[] = {"local", "local", "cloud", "cloud"};
static const char *const outcomes[] = {"ok",      "ok", "quality",   "error",     "ok",
                                       "timeout", "ok", "refused",   "truncated", "ok",
                                       "budget",  "ok", "no_answer", "cancelled"};
static const char *const types[] = {"code", "review", NULL};
static const char *const workflows[] = {"feature", "docs", "review-all"};

static PGconn *pg_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

static void book_ledger(fr_store *st)
{
    char run[6][32];
    for (int r = 0; r < 6; r++) {
        snprintf(run[r], sizeof run[r], "run-%d", r);
        fr_store_set_clock(st, utc(2026, 10, 30, 8, r, 0));
        assert_ok(fr_store_run_begin(st, run[r], workflows[r % 3], NULL, &e_));
    }
    for (int i = 0; i < 48; i++) {
        int e = i % 4, day = i / 12; /* 2026-10-30, 10-31, 11-01, 11-02 */
        fr_store_set_clock(st, utc(2026, 10, 30, 9, 0, 0) + day * 86400 + i * 37);
        char task[16];
        snprintf(task, sizeof task, "t%d", i % 7);
        fr_attempt_rec a = {
            .run_id = run[i % 6],
            .task = task,
            .endpoint = endpoints[e],
            .tier = tiers[e],
            .model = e == 1 ? NULL : "m",
            .outcome = outcomes[i % 14],
            .error = strcmp(outcomes[i % 14], "error") == 0 ? "HTTP 500" : NULL,
            .type = types[i % 3],
            .attempt = 1 + i / 7,
            .input = 100 + 13 * i,
            .output = 20 + 7 * i,
            .cached = i % 5 == 0 ? 40 : 0,
            .estimated = i % 9 == 0,
            .cost_usd = tiers[e][0] == 'c' ? 0.0013 * (i + 1) + 0.00007 * (i % 5) : 0,
            .latency_ms = 180.0 + 97.3 * i + (i % 4 == 1 ? 1024 : 0),
            .has_ttft = i % 3 != 2,
            .ttft_ms = 40.0 + 11.7 * i,
            .has_complexity = i % 8 != 7,
            .complexity = (double)(i % 11) / 10.0,
            .has_score = i % 4 == 0,
            .score = 0.25 + 0.015 * i,
        };
        if (i % 2) { /* in flight first, then settled */
            long long id = 0;
            fr_attempt_rec worst = a;
            worst.cost_usd = a.cost_usd + 0.01;
            assert_ok(fr_store_reserve(st, &worst, &id, &e_));
            assert_ok(fr_store_settle(st, id, &a, NULL, &e_));
        } else {
            assert_ok(fr_store_add_attempt(st, &a, &e_));
        }
    }
    for (int r = 0; r < 6; r++)
        assert_ok(
            fr_store_run_end(st, run[r], r == 4 ? "failed" : "ok", r == 4 ? 1 : 0, 0.01 * r, &e_));
    /* Reports as runs store them: their JSON text byte for byte. */
    assert_ok(fr_store_report_put(st, "run-1",
                                  "{\"cost_usd\": 0.0125, \"makespan_ms\": 912,"
                                  " \"local_token_share\": 0.75}\n",
                                  "run-1: ok\n", &e_));
    assert_ok(fr_store_report_put(st, "run-4",
                                  "{\"cost_usd\": 0.5, \"makespan_ms\": 1500.5,"
                                  " \"local_token_share\": null}\n",
                                  "run-4: failed\n", &e_));
    fr_store_approval a = {.workflow = "feature",
                           .task = "design",
                           .output_hash = "abc",
                           .state = "pending",
                           .run_id = "run-0"};
    assert_ok(fr_store_approval_put(st, &a, &e_));
}

/* Who booked and where: as several people on two hosts would. */
static void spread_users(const char *db_path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE attempts SET user_name = CASE id % 3 WHEN 0 THEN 'ana'"
                                  " WHEN 1 THEN 'ben' ELSE 'ci' END,"
                                  " host = CASE WHEN id % 5 < 2 THEN 'lab2' ELSE 'lab1' END;"
                                  " UPDATE attempts SET user_name = NULL WHERE id = 5",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "%s/fr_pgread_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/state.db", dir);
    fr_store *st = NULL;
    fr_error err = {0};
    if (fr_store_open(path, &st, &err) != FR_OK)
        return -1;
    book_ledger(st);
    fr_store_close(st);
    spread_users(path);
    PGconn *c = pg_connect(server.url);
    int rc = pgc_copy(path, c);
    PQfinish(c);
    return rc;
}

static int group_teardown(void **state)
{
    (void)state;
    tmpdir_remove(dir);
    return 0;
}

static fr_store *open_both(fr_store **pg)
{
    fr_store *lite = NULL;
    assert_ok(fr_store_open_readonly(path, &lite, &e_));
    assert_ok(fr_store_open_readonly(server.url, pg, &e_));
    return lite;
}

/* The document as the commands print it with --json. */
static char *dump(json_t *doc)
{
    char *s = json_dumps(doc, JSON_INDENT(2));
    json_decref(doc);
    assert_non_null(s);
    return s;
}

static void expect_same_text(char *a, char *b)
{
    if (strcmp(a, b) != 0)
        fail_msg("SQLite:\n%s\nPostgreSQL:\n%s", a, b);
    free(a);
    free(b);
}

static void test_spend_is_the_same(void **state)
{
    (void)state;
    fr_store *pg = NULL, *lite = open_both(&pg);
    static const char *const months[] = {NULL, "2026-10", "2026-11", "2026-09"};
    static const char *const days[] = {NULL, "2026-10-31", "2026-11-02", "2026-11-03"};
    for (int i = 0; i < 4; i++) {
        json_t *a = NULL, *b = NULL;
        assert_ok(fr_store_spend(lite, months[i], &a, &e_));
        assert_ok(fr_store_spend(pg, months[i], &b, &e_));
        if (i == 0) {
            assert_int_equal(json_array_size(json_object_get(a, "months")), 2);
            json_t *oct = json_array_get(json_object_get(b, "months"), 0);
            assert_int_equal(json_object_size(json_object_get(oct, "by_user")), 4); /* "-" */
            assert_int_equal(json_object_size(json_object_get(oct, "by_host")), 2);
            assert_int_equal(json_object_size(json_object_get(oct, "by_workflow")), 3);
        }
        expect_same_text(dump(a), dump(b));
        assert_ok(fr_store_spend_days(lite, days[i], &a, &e_));
        assert_ok(fr_store_spend_days(pg, days[i], &b, &e_));
        expect_same_text(dump(a), dump(b));
    }
    json_t *bad = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_spend(pg, "2026-13", &bad, &err), FR_EINVAL);
    fr_store_close(lite);
    fr_store_close(pg);
}

static void test_run_tasks_are_the_same(void **state)
{
    (void)state;
    fr_store *pg = NULL, *lite = open_both(&pg);
    static const char *const refs[][2] = {
        {"feature", "run-3"}, {"docs", "last"}, {"review-all", NULL}, {"feature", "run-5"}};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        json_t *a = NULL, *b = NULL;
        assert_ok(fr_store_run_tasks(lite, refs[i][0], refs[i][1], &a, &e_));
        assert_ok(fr_store_run_tasks(pg, refs[i][0], refs[i][1], &b, &e_));
        assert_true(json_object_size(json_object_get(b, "tasks")) >= 5);
        expect_same_text(dump(a), dump(b));
    }
    json_t *none = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_run_tasks(pg, "feature", "run-9", &none, &err), FR_ENOENT);
    fr_store_close(lite);
    fr_store_close(pg);
}

static void test_observed_is_the_same(void **state)
{
    (void)state;
    fr_store *pg = NULL, *lite = open_both(&pg);
    for (int w = 0; w < 3; w++) {
        json_t *a = NULL, *b = NULL;
        assert_ok(fr_store_observed(lite, workflows[w], &a, &e_));
        assert_ok(fr_store_observed(pg, workflows[w], &b, &e_));
        assert_true(json_object_size(b) > 0);
        expect_same_text(dump(a), dump(b));
    }
    fr_store_close(lite);
    fr_store_close(pg);
}

static void test_runs_and_reports_are_the_same(void **state)
{
    (void)state;
    fr_store *pg = NULL, *lite = open_both(&pg);
    static const char *const wfs[] = {NULL, "feature", "docs"};
    for (int w = 0; w < 3; w++)
        for (long limit = 0; limit < 3; limit += 2) {
            json_t *a = NULL, *b = NULL;
            assert_ok(fr_store_runs(lite, wfs[w], limit, &a, &e_));
            assert_ok(fr_store_runs(pg, wfs[w], limit, &b, &e_));
            assert_true(json_array_size(b) >= 2);
            expect_same_text(dump(a), dump(b));
        }
    static const char *const refs[][2] = {{"last", NULL},    {"last", "docs"},
                                          {"run-1", NULL},   {"run-2", NULL},
                                          {"run-4", "docs"}, {"run-5", "review-all"}};
    for (size_t i = 0; i < sizeof refs / sizeof *refs; i++) {
        fr_store_report a = {0}, b = {0};
        assert_ok(fr_store_report_get(lite, refs[i][0], refs[i][1], &a, &e_));
        assert_ok(fr_store_report_get(pg, refs[i][0], refs[i][1], &b, &e_));
        assert_string_equal(a.run_id, b.run_id);
        assert_string_equal(a.status, b.status);
        assert_true((a.json == NULL) == (b.json == NULL));
        if (a.json) {
            assert_string_equal(a.json, b.json);
            assert_string_equal(a.summary, b.summary);
        }
        fr_store_report_clear(&a);
        fr_store_report_clear(&b);
    }
    /* An ambiguous prefix and an unknown run, the same errors. */
    static const char *const bad[] = {"run-", "nothing"};
    for (int i = 0; i < 2; i++) {
        fr_store_report a = {0}, b = {0};
        fr_error ea = {0}, eb = {0};
        int ra = fr_store_report_get(lite, bad[i], NULL, &a, &ea);
        assert_int_equal(fr_store_report_get(pg, bad[i], NULL, &b, &eb), ra);
        assert_int_equal(ra, i == 0 ? FR_EINVAL : FR_ENOENT);
        assert_string_equal(ea.msg, eb.msg);
    }
    fr_store_close(lite);
    fr_store_close(pg);
}

static void test_stats_are_the_same(void **state)
{
    (void)state;
    fr_store *pg = NULL, *lite = open_both(&pg);
    const double since[] = {0, (double)utc(2026, 11, 1, 0, 0, 0), (double)utc(2027, 1, 1, 0, 0, 0)};
    for (int i = 0; i < 3; i++) {
        json_t *a = NULL, *b = NULL;
        assert_ok(fr_store_run_stats(lite, since[i], &a, &e_));
        assert_ok(fr_store_run_stats(pg, since[i], &b, &e_));
        if (i == 0)
            assert_int_equal(json_object_size(json_object_get(b, "by_endpoint")), 4);
        expect_same_text(dump(a), dump(b));
    }
    fr_store_close(lite);
    fr_store_close(pg);
}

/* A history's every key, its figures with every digit, as text: `ud` is
 * a growing string (a FILE of open_memstream). */
static void render(void *ud, const char *endpoint, const fr_policy_hist *r,
                   const fr_policy_hist *all)
{
    const fr_policy_hist *h[] = {r, all};
    for (int i = 0; i < 2; i++)
        fprintf(ud,
                "%s %s %ld %ld %ld %ld %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g"
                " %.17g\n",
                endpoint, h[i]->type ? h[i]->type : "(all)", h[i]->attempts, h[i]->passes,
                h[i]->fails, h[i]->errors, h[i]->weight, h[i]->pass_rate, h[i]->score_mean,
                h[i]->latency_p50_ms, h[i]->ttft_p50_ms, h[i]->tokens_per_s, h[i]->cost_mean_usd,
                h[i]->age_s, h[i]->band_lo, h[i]->band_hi);
}

/* The rendering of `h` (taken) as of a fixed day: owned text. */
static char *history_text(fr_history *h)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_non_null(f);
    fr_history_each(h, (double)utc(2026, 11, 20, 0, 0, 0), render, f);
    fclose(f);
    fr_history_free(h);
    return out;
}

static void test_history_is_the_same(void **state)
{
    (void)state;
    /* flowrun stats --routing: every endpoint. */
    fr_store *lite = NULL;
    assert_ok(fr_store_open_readonly(path, &lite, &e_));
    fr_history *a = fr_history_new(NULL, 0), *b = fr_history_new(NULL, 0);
    assert_ok(fr_history_load(a, lite, &e_));
    assert_ok(fr_history_load_from(b, server.url, &e_));
    char *ta = history_text(a), *tb = history_text(b);
    assert_true(strlen(tb) > 1000);
    expect_same_text(ta, tb);
    /* A run's: its own endpoints only. */
    static const char *const mine[] = {"sonnet", "gpu", "elsewhere"};
    a = fr_history_new(mine, 3);
    b = fr_history_new(mine, 3);
    assert_ok(fr_history_load(a, lite, &e_));
    assert_ok(fr_history_load_from(b, server.url, &e_));
    ta = history_text(a);
    tb = history_text(b);
    assert_null(strstr(tb, "studio"));
    expect_same_text(ta, tb);
    fr_store_close(lite);
}

static long long pg_int(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* The routing history as PostgreSQL's triggers keep it equals a recount
 * from its attempts table (the decayed sums relative to each key's first
 * gated attempt). */
static void test_history_equals_a_recount(void **state)
{
    (void)state;
    PGconn *c = pg_connect(server.url);
    static const char recount[] =
        "WITH e AS (SELECT endpoint AS ep, coalesce(task_type, '-') AS ty,"
        " fr_band(complexity) AS band, outcome = 'ok' AS pass,"
        " outcome IN ('ok', 'quality', 'truncated', 'refused', 'no_answer', 'tool_call') AS g,"
        " outcome IN ('error', 'timeout') AS err, * FROM attempts WHERE outcome <> 'pending'),"
        " r AS (SELECT *, min(CASE WHEN g THEN at END) OVER (PARTITION BY ep, ty, band) AS ref"
        " FROM e),"
        " c AS (SELECT ep, ty, band, count(*) AS settled, count(*) FILTER (WHERE pass) AS passes,"
        " count(*) FILTER (WHERE g AND NOT pass) AS fails, count(*) FILTER (WHERE err) AS errors,"
        " coalesce(sum(power(2::float8, (at - ref) / 2592000.0)) FILTER (WHERE pass), 0) AS wp,"
        " coalesce(sum(power(2::float8, (at - ref) / 2592000.0)) FILTER (WHERE g AND NOT pass),"
        " 0) AS wf, min(ref) AS ref, max(at) FILTER (WHERE g) AS last_at,"
        " coalesce(sum(score) FILTER (WHERE g), 0) AS ss,"
        " count(*) FILTER (WHERE g AND score IS NOT NULL) AS sn, sum(cost_usd) AS cost,"
        " coalesce(sum(output_tokens) FILTER (WHERE g), 0) AS outt,"
        " coalesce(sum(latency_ms) FILTER (WHERE g), 0) AS ms FROM r GROUP BY 1, 2, 3)"
        " SELECT (SELECT count(*) FROM c) * 1000000 + (SELECT count(*) FROM routing_history)"
        " * 1000 + (SELECT count(*) FROM c JOIN routing_history h ON h.endpoint = c.ep"
        " AND h.task_type = c.ty AND h.band = c.band AND h.settled = c.settled"
        " AND h.passes = c.passes AND h.fails = c.fails AND h.errors = c.errors"
        " AND abs(h.w_pass - c.wp) < 1e-9 AND abs(h.w_fail - c.wf) < 1e-9"
        " AND h.w_ref IS NOT DISTINCT FROM c.ref AND h.last_at IS NOT DISTINCT FROM c.last_at"
        " AND abs(h.score_sum - c.ss) < 1e-9 AND h.score_n = c.sn"
        " AND abs(h.cost_sum - c.cost) < 1e-12 AND h.out_tokens = c.outt"
        " AND abs(h.reply_ms - c.ms) < 1e-6)";
    long long v = pg_int(c, recount);
    long long keys = v / 1000000, table = v / 1000 % 1000, matching = v % 1000;
    assert_true(keys >= 20);
    assert_int_equal(table, keys);
    assert_int_equal(matching, keys);
    static const char bins[] =
        "WITH b AS (SELECT endpoint AS ep, coalesce(task_type, '-') AS ty,"
        " fr_band(complexity) AS band, fr_bin(latency_ms) AS lb,"
        " coalesce(fr_bin(ttft_ms), -1) AS tb FROM attempts"
        " WHERE outcome IN ('ok', 'quality', 'truncated', 'refused', 'no_answer', 'tool_call')),"
        " c AS (SELECT ep, ty, band, lb, tb, count(*) AS n FROM b GROUP BY 1, 2, 3, 4, 5)"
        " SELECT (SELECT count(*) FROM c) * 1000000 + (SELECT count(*) FROM routing_bins) * 1000"
        " + (SELECT count(*) FROM c JOIN routing_bins r ON r.endpoint = c.ep AND"
        " r.task_type = c.ty AND r.band = c.band AND r.lat_bin = c.lb AND r.ttft_bin = c.tb"
        " AND r.n = c.n)";
    v = pg_int(c, bins);
    keys = v / 1000000;
    assert_true(keys >= 15);
    assert_int_equal(v / 1000 % 1000, keys);
    assert_int_equal(v % 1000, keys);
    /* The bins of a power of two are exact: 8 ms is bin 12, 1024 ms 40. */
    assert_int_equal(pg_int(c, "SELECT fr_bin(8) * 1000 + fr_bin(1024)"), 12 * 1000 + 40);
    assert_int_equal(fr_store_history_bin(8) * 1000 + fr_store_history_bin(1024), 12040);
    PQfinish(c);
}

static void test_unreachable_is_masked(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "postgresql://flowrun:hunter2-secret@127.0.0.1:1/nothing",
        "postgres://127.0.0.1:1/nothing?password=hunter2-secret&connect_timeout=2"};
    for (int i = 0; i < 2; i++) {
        fr_store *st = NULL;
        fr_error err = {0};
        assert_int_equal(fr_store_open_readonly(urls[i], &st, &err), FR_ECONNECT);
        assert_null(st);
        char msg[1600];
        fr_error_format(&err, msg, sizeof msg);
        assert_null(strstr(msg, "hunter2"));
        assert_non_null(strstr(msg, "***"));
        assert_non_null(strstr(msg, "127.0.0.1:1"));
        fr_history *h = fr_history_new(NULL, 0);
        err = (fr_error){0};
        assert_int_equal(fr_history_load_from(h, urls[i], &err), FR_ECONNECT);
        assert_null(strstr(err.source, "hunter2"));
        fr_history_free(h);
    }
}

static void test_database_without_schema(void **state)
{
    (void)state;
    PGconn *c = pg_connect(server.url);
    PGresult *r = PQexec(c, "CREATE DATABASE fr_empty");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
    char url[600];
    snprintf(url, sizeof url, "postgresql://postgres@127.0.0.1:%s/fr_empty", server.port);
    fr_store *st = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_open_readonly(url, &st, &err), FR_ENOENT);
    /* A run's history from it is empty, not an error. */
    fr_history *h = fr_history_new(NULL, 0);
    assert_ok(fr_history_load_from(h, url, &e_));
    char *out = history_text(h);
    assert_string_equal(out, "");
    free(out);
}

static void test_decision_is_written(void **state)
{
    (void)state;
    fr_store *st = NULL;
    assert_ok(fr_store_open(server.url, &st, &e_));
    assert_ok(fr_store_approval_decide(st, "feature", "design", "approved", "ana", "fine", &e_));
    fr_error err = {0};
    assert_int_equal(
        fr_store_approval_decide(st, "feature", "nothing", "approved", "ana", NULL, &err),
        FR_ENOENT);
    /* What a run writes is not served here, and says so. */
    err = (fr_error){0};
    double spent = 0;
    assert_int_equal(fr_store_month_spent(st, "2026-10", &spent, &err), FR_ESTORE);
    assert_non_null(strstr(err.msg, "PostgreSQL"));
    fr_store_close(st);
    PGconn *c = pg_connect(server.url);
    assert_int_equal(pg_int(c, "SELECT count(*) FROM approvals WHERE state = 'approved'"
                               " AND decided_by = 'ana' AND note = 'fine' AND decided_at > 0"),
                     1);
    PQfinish(c);
}

int main(void)
{
    (void)pg_server_restart;
    PG_SERVER_START_OR_RETURN(&server);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spend_is_the_same),
        cmocka_unit_test(test_run_tasks_are_the_same),
        cmocka_unit_test(test_observed_is_the_same),
        cmocka_unit_test(test_runs_and_reports_are_the_same),
        cmocka_unit_test(test_stats_are_the_same),
        cmocka_unit_test(test_history_is_the_same),
        cmocka_unit_test(test_history_equals_a_recount),
        cmocka_unit_test(test_unreachable_is_masked),
        cmocka_unit_test(test_database_without_schema),
        cmocka_unit_test(test_decision_is_written),
    };
    int failed = cmocka_run_group_tests(tests, group_setup, group_teardown);
    pg_server_stop(&server);
    return failed;
}
