/* The stored reports, the list of runs and the statistics across them
 * (engine/store/reports.c): a report comes back as it was put; `last` is
 * the newest run with a report; a unique prefix finds a run, an ambiguous
 * one is refused naming two; runs come newest first, per workflow, with
 * the runs table's figures where there is no report; p50/p95 are exact at
 * the report's index round(q * (n - 1)); a store of schema 4 (made by the
 * released migrations) is upgraded with its runs and attempts, one of
 * schema 6 with its reports (stored in place since schema 7). */

#include "engine/util/mem.h"
#include "tests/unit/support/store_fixture.h"

static void begin(fr_store *st, const char *run, const char *wf, time_t at)
{
    fr_store_set_clock(st, at);
    assert_ok(fr_store_run_begin(st, run, wf, NULL, &e_));
}

/* Books one attempt of `task` (of `type`) on `endpoint` with its latency and
 * time to first content (< 0: none). */
static void attempt(fr_store *st, const char *run, const char *task, const char *type,
                    const char *endpoint, const char *tier, const char *outcome, double latency,
                    double ttft)
{
    fr_attempt_rec a = {.run_id = run,
                        .task = task,
                        .type = type,
                        .endpoint = endpoint,
                        .tier = tier,
                        .outcome = outcome,
                        .attempt = 1,
                        .input = 10,
                        .output = 5,
                        .cost_usd = 0.001,
                        .latency_ms = latency,
                        .has_ttft = ttft >= 0,
                        .ttft_ms = ttft};
    assert_ok(fr_store_add_attempt(st, &a, &e_));
}

static void test_report_round_trip_and_lookup(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    begin(f->st, "2027-01-01T00:00:00Z-aaaa0001", "alpha", utc(2027, 1, 1, 0, 0, 0));
    begin(f->st, "2027-01-01T00:00:00Z-aaaa0002", "beta", utc(2027, 1, 1, 0, 0, 1));
    begin(f->st, "2027-01-02T00:00:00Z-bbbb0003", "alpha", utc(2027, 1, 2, 0, 0, 0));
    const char *json = "{\n  \"run\": \"x\",\n  \"makespan_ms\": 1250,\n  \"cost_usd\": 0.5,\n"
                       "  \"local_token_share\": 0.25\n}\n";
    assert_ok(fr_store_report_put(f->st, "2027-01-01T00:00:00Z-aaaa0001", json, "\nsum\n", &e_));
    assert_ok(fr_store_report_put(f->st, "2027-01-01T00:00:00Z-aaaa0002", "{}\n", "b\n", &e_));
    fr_error err = {0};
    assert_int_equal(fr_store_report_put(f->st, "no-such-run", "{}\n", "", &err), FR_EINVAL);

    fr_store_report r = {0};
    /* last: the newest run with a report (the third has none). */
    assert_ok(fr_store_report_get(f->st, "last", NULL, &r, &e_));
    assert_string_equal(r.run_id, "2027-01-01T00:00:00Z-aaaa0002");
    fr_store_report_clear(&r);
    assert_ok(fr_store_report_get(f->st, "last", "alpha", &r, &e_));
    assert_string_equal(r.run_id, "2027-01-01T00:00:00Z-aaaa0001");
    assert_string_equal(r.json, json);
    assert_string_equal(r.summary, "\nsum\n");
    fr_store_report_clear(&r);
    /* A unique prefix; a run without a report is found, without texts. */
    assert_ok(fr_store_report_get(f->st, "2027-01-02", NULL, &r, &e_));
    assert_string_equal(r.run_id, "2027-01-02T00:00:00Z-bbbb0003");
    assert_string_equal(r.status, "running");
    assert_null(r.json);
    assert_null(r.summary);
    fr_store_report_clear(&r);
    err = (fr_error){0};
    assert_int_equal(fr_store_report_get(f->st, "2027-01-01", NULL, &r, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "aaaa0001"));
    assert_non_null(strstr(err.msg, "aaaa0002"));
    assert_null(r.run_id);
    /* The workflow narrows a prefix to one. */
    assert_ok(fr_store_report_get(f->st, "2027-01-01", "beta", &r, &e_));
    assert_string_equal(r.run_id, "2027-01-01T00:00:00Z-aaaa0002");
    fr_store_report_clear(&r);
    assert_int_equal(fr_store_report_get(f->st, "2028", NULL, &r, &err), FR_ENOENT);
    assert_int_equal(fr_store_report_get(f->st, "last", "gamma", &r, &err), FR_ENOENT);

    json_t *runs = NULL;
    assert_ok(fr_store_runs(f->st, NULL, 0, &runs, &e_));
    assert_int_equal(json_array_size(runs), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(runs, 0), "id")),
                        "2027-01-02T00:00:00Z-bbbb0003");
    json_t *a1 = json_array_get(runs, 2);
    assert_usd(json_number_value(json_object_get(a1, "makespan_ms")), 1250);
    assert_usd(json_number_value(json_object_get(a1, "cost_usd")), 0.5);
    assert_usd(json_number_value(json_object_get(a1, "local_token_share")), 0.25);
    assert_true(json_is_true(json_object_get(a1, "has_report")));
    json_t *b3 = json_array_get(runs, 0);
    assert_true(json_is_null(json_object_get(b3, "makespan_ms")));
    assert_usd(json_number_value(json_object_get(b3, "cost_usd")), 0); /* the runs table's */
    json_decref(runs);
    assert_ok(fr_store_runs(f->st, "alpha", 1, &runs, &e_));
    assert_int_equal(json_array_size(runs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(runs, 0), "id")),
                        "2027-01-02T00:00:00Z-bbbb0003");
    json_decref(runs);
}

static void test_stats_exact_quantiles(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    begin(f->st, "r1", "wf", utc(2027, 2, 1, 0, 0, 0));
    /* Ten replies of type "code" on "e", 10 .. 100 ms, in a shuffled order;
     * ttft only for the first five. */
    static const int order[] = {70, 10, 100, 40, 20, 90, 30, 60, 50, 80};
    for (int i = 0; i < 10; i++)
        attempt(f->st, "r1", "t", "code", "e", "local", i == 3 ? "quality" : "ok", order[i],
                i < 5 ? order[i] / 10.0 : -1);
    /* An error (no reply) and a task without a type on the cloud. */
    attempt(f->st, "r1", "u", NULL, "c", "cloud", "error", 5000, -1);
    attempt(f->st, "r1", "u", NULL, "c", "cloud", "ok", 7, 3);
    fr_store_set_clock(f->st, utc(2027, 3, 1, 0, 0, 0));
    attempt(f->st, "r1", "late", "code", "e", "local", "ok", 1, 1);
    json_t *s = NULL;
    assert_ok(fr_store_run_stats(f->st, (double)utc(2027, 2, 15, 0, 0, 0), &s, &e_));
    assert_usd(jnum(s, "by_endpoint.e.requests"), 1); /* --since left the rest out */
    json_decref(s);
    assert_ok(fr_store_run_stats(f->st, 0, &s, &e_));
    assert_usd(jnum(s, "runs"), 1);
    assert_usd(jnum(s, "by_endpoint.e.requests"), 11);
    assert_usd(jnum(s, "by_endpoint.e.quality_pass_rate"), 10.0 / 11);
    /* 11 values 1, 10 .. 100: index round(0.5 * 10) = 5 -> 50; round(9.5) = 10 -> 100. */
    assert_usd(jnum(s, "by_endpoint.e.latency_ms.p50"), 50);
    assert_usd(jnum(s, "by_endpoint.e.latency_ms.p95"), 100);
    /* ttft: 1, 7, 1, 10, 4, 2 -> sorted 1 1 2 4 7 10: index round(2.5) = 3 -> 4; round(5.25) = 5.
     */
    assert_usd(jnum(s, "by_endpoint.e.ttft_ms.p50"), 4);
    assert_usd(jnum(s, "by_endpoint.e.ttft_ms.p95"), 10);
    assert_usd(jnum(s, "by_endpoint.c.success_rate"), 0.5);
    assert_usd(jnum(s, "by_endpoint.c.latency_ms.p50"), 7); /* the error had no reply */
    assert_string_equal(json_string_value(jget(s, "by_endpoint.c.tier")), "cloud");
    assert_usd(jnum(s, "by_type.-.requests"), 2);
    assert_usd(jnum(s, "by_type.code.tokens.input"), 110);
    assert_usd(jnum(s, "by_type.code.local_share.attempts"), 1);
    assert_usd(jnum(s, "by_type.code.cost_usd"), 0.011);
    json_decref(s);
}

/* A store as the previous flowrun (schema 4) left it, made by the released
 * migrations, is upgraded: its runs are listed, without reports. */
static void test_schema_4_upgrades(void **state)
{
    fx *f = *state;
    old_store(f, 4,
              "INSERT INTO runs(id, workflow, started_at, status, cost_usd)"
              " VALUES ('old1', 'wf', 100, 'ok', 0.25), ('old2', 'wf', 200, 'failed', 0);"
              "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd,"
              " latency_ms, outcome, at, month)"
              " VALUES ('old1', 't', 1, 'e', 'cloud', 0.25, 40, 'ok', 100, '1970-01');");
    f->st = open_ok(f->path);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    json_t *runs = NULL;
    assert_ok(fr_store_runs(f->st, NULL, 0, &runs, &e_));
    assert_int_equal(json_array_size(runs), 2);
    json_t *old1 = json_array_get(runs, 1);
    assert_string_equal(json_string_value(json_object_get(old1, "id")), "old1");
    assert_string_equal(json_string_value(json_object_get(old1, "status")), "ok");
    assert_usd(json_number_value(json_object_get(old1, "cost_usd")), 0.25);
    assert_true(json_is_false(json_object_get(old1, "has_report")));
    json_decref(runs);
    json_t *s = NULL;
    assert_ok(fr_store_run_stats(f->st, 0, &s, &e_));
    assert_usd(jnum(s, "by_type.-.requests"), 1);
    assert_usd(jnum(s, "by_endpoint.e.latency_ms.p50"), 40);
    assert_true(json_is_null(jget(s, "by_endpoint.e.ttft_ms.p50")));
    json_decref(s);
    fr_store_report r = {0};
    assert_ok(fr_store_report_get(f->st, "old1", NULL, &r, &e_));
    assert_null(r.json);
    fr_store_report_clear(&r);
}

/* A store of schema 6 (its reports' JSON a TEXT column in the middle of
 * the row) upgrades with its report as it was: read back, listed and
 * replaced; a report stored now is a BLOB of the same bytes (written in
 * place), read back and listed the same. */
static void test_schema_6_reports_upgrade(void **state)
{
    fx *f = *state;
    const char *old = "{\n  \"makespan_ms\": 99,\n  \"cost_usd\": 0.125,\n"
                      "  \"local_token_share\": 1.0\n}\n";
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO runs(id, workflow, started_at, status, cost_usd)"
             " VALUES ('old1', 'wf', 100, 'ok', 0.25);"
             "INSERT INTO reports(run_id, json, summary, stored_at) VALUES ('old1', '%s', 's', 1);",
             old);
    old_store(f, 6, sql);
    f->st = open_ok(f->path);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_usd(raw_num(f->path, "SELECT typeof(json) = 'text' FROM reports"), 1);
    fr_store_report r = {0};
    assert_ok(fr_store_report_get(f->st, "old1", NULL, &r, &e_));
    assert_string_equal(r.json, old);
    assert_string_equal(r.summary, "s");
    fr_store_report_clear(&r);

    begin(f->st, "new1", "wf", utc(2027, 1, 1, 0, 0, 0));
    /* Larger than a page and than one write: every byte lands. */
    size_t n = (3u << 20) + 17;
    char *big = fr_xcalloc(n + 1, 1);
    int k = snprintf(big, n + 1, "{\"makespan_ms\": 1250, \"cost_usd\": 0.5, \"pad\": \"");
    for (size_t i = (size_t)k; i < n - 3; i++)
        big[i] = (char)('a' + i % 26);
    memcpy(big + n - 3, "\"}\n", 3);
    assert_ok(fr_store_report_put(f->st, "new1", big, "sum", &e_));
    assert_usd(raw_num(f->path, "SELECT typeof(json) = 'blob' FROM reports WHERE run_id = 'new1'"),
               1);
    assert_usd(raw_num(f->path, "SELECT length(json) FROM reports WHERE run_id = 'new1'"),
               (double)n);
    assert_ok(fr_store_report_get(f->st, "new1", NULL, &r, &e_));
    assert_string_equal(r.json, big);
    fr_store_report_clear(&r);
    json_t *runs = NULL;
    assert_ok(fr_store_runs(f->st, NULL, 0, &runs, &e_));
    assert_int_equal(json_array_size(runs), 2);
    json_t *first = json_array_get(runs, 0), *second = json_array_get(runs, 1);
    assert_string_equal(json_string_value(json_object_get(first, "id")), "new1");
    assert_usd(json_number_value(json_object_get(first, "makespan_ms")), 1250);
    assert_usd(json_number_value(json_object_get(first, "cost_usd")), 0.5);
    assert_usd(json_number_value(json_object_get(second, "makespan_ms")), 99);
    assert_usd(json_number_value(json_object_get(second, "local_token_share")), 1.0);
    json_decref(runs);
    /* A second report of the run replaces the first; an old one too. */
    assert_ok(fr_store_report_put(f->st, "new1", "{}\n", "b", &e_));
    assert_ok(fr_store_report_put(f->st, "old1", "{\"cost_usd\": 2}\n", "c", &e_));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM reports"), 2);
    assert_ok(fr_store_report_get(f->st, "new1", NULL, &r, &e_));
    assert_string_equal(r.json, "{}\n");
    fr_store_report_clear(&r);
    assert_ok(fr_store_report_get(f->st, "old1", NULL, &r, &e_));
    assert_string_equal(r.json, "{\"cost_usd\": 2}\n");
    assert_string_equal(r.summary, "c");
    fr_store_report_clear(&r);
    free(big);
}

static void pending(void *ud)
{
    (void)ud;
}

/* A report whose text cannot be written after its row went in (here: an
 * index on the column, which SQLite's blob I/O refuses) is taken back whole:
 * the batch's commit keeps the run's earlier report, not a half-written
 * row, and the batch's other writes. */
static void test_report_not_written_is_taken_back(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    begin(f->st, "r1", "wf", utc(2027, 1, 1, 0, 0, 0));
    assert_ok(fr_store_report_put(f->st, "r1", "{\"old\": 1}\n", "old\n", &e_));
    raw_exec(f->path, "CREATE INDEX reports_json ON reports(json)");
    fr_store_batch(f->st, pending, NULL);
    fr_error err = {0};
    assert_int_equal(fr_store_report_put(f->st, "r1", "{\"new\": 2}\n", "new\n", &err), FR_ESTORE);
    assert_non_null(strstr(err.msg, "cannot store the run's report"));
    attempt(f->st, "r1", "t", "chat", "e", "local", "ok", 10, -1);
    assert_ok(fr_store_flush(f->st, &e_));
    fr_store_batch(f->st, NULL, NULL);
    fr_store_report r = {0};
    assert_ok(fr_store_report_get(f->st, "r1", NULL, &r, &e_));
    assert_string_equal(r.json, "{\"old\": 1}\n");
    assert_string_equal(r.summary, "old\n");
    fr_store_report_clear(&r);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM attempts WHERE run_id = 'r1'"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_report_round_trip_and_lookup),
        STORE_TEST(test_stats_exact_quantiles),
        STORE_TEST(test_schema_4_upgrades),
        STORE_TEST(test_schema_6_reports_upgrade),
        STORE_TEST(test_report_not_written_is_taken_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
