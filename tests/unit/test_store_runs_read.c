/* Unit tests of engine/store/runs_read.c (fr_store_run_tasks, what
 * `flowrun graph --run` reads): a run by id and the newest run of a
 * workflow, each task's last attempt's outcome and endpoint and its summed
 * cost, a run that made no request, unknown runs, and a read-only store.
 * A real SQLite file in a fresh temporary directory per test. */

#include "tests/unit/support/store_fixture.h"

#include <jansson.h>

static json_t *tasks_ok(fr_store *st, const char *workflow, const char *run)
{
    json_t *out = NULL;
    assert_ok(fr_store_run_tasks(st, workflow, run, &out, &e_));
    assert_non_null(out);
    return out;
}

static const char *field(const json_t *doc, const char *task, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get(doc, "tasks"), task), key));
}

static void test_run_by_id_and_last(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *st = f->st;
    fr_store_set_clock(st, utc(2026, 11, 1, 8, 0, 0));
    assert_ok(fr_store_run_begin(st, "r1", "alpha", NULL, &e_));
    book(st, "r1", "plan", "local-a", "local", 0.0, 1, 1, 0, false, "ok", NULL);
    book(st, "r1", "code", "cloud-b", "cloud", 0.25, 1, 1, 0, false, "error", "HTTP 500");
    book(st, "r1", "code", "cloud-c", "cloud", 0.5, 1, 1, 0, false, "ok", NULL);
    assert_ok(fr_store_run_end(st, "r1", "ok", 0, 0.75, &e_));
    fr_store_set_clock(st, utc(2026, 11, 1, 9, 0, 0));
    assert_ok(fr_store_run_begin(st, "r2", "alpha", NULL, &e_));
    book(st, "r2", "plan", "local-a", "local", 0.0, 1, 1, 0, false, "timeout", "slow");
    assert_ok(fr_store_run_end(st, "r2", "failed", 1, 0, &e_));
    fr_store_set_clock(st, utc(2026, 11, 1, 10, 0, 0));
    assert_ok(fr_store_run_begin(st, "r3", "beta", NULL, &e_)); /* newer, another workflow */
    assert_ok(fr_store_run_end(st, "r3", "ok", 0, 0, &e_));

    json_t *r1 = tasks_ok(st, "alpha", "r1");
    assert_string_equal(json_string_value(json_object_get(r1, "run")), "r1");
    assert_string_equal(json_string_value(json_object_get(r1, "status")), "ok");
    assert_string_equal(field(r1, "code", "outcome"), "ok");
    assert_string_equal(field(r1, "code", "endpoint"), "cloud-c");
    json_t *code = json_object_get(json_object_get(r1, "tasks"), "code");
    assert_int_equal(json_integer_value(json_object_get(code, "attempts")), 2);
    assert_usd(json_number_value(json_object_get(code, "cost_usd")), 0.75);
    assert_string_equal(field(r1, "plan", "outcome"), "ok");
    json_decref(r1);

    json_t *last = tasks_ok(st, "alpha", "last");
    assert_string_equal(json_string_value(json_object_get(last, "run")), "r2");
    assert_string_equal(field(last, "plan", "outcome"), "timeout");
    assert_null(json_object_get(json_object_get(last, "tasks"), "code"));
    json_decref(last);

    json_t *beta = tasks_ok(st, "beta", NULL);
    assert_string_equal(json_string_value(json_object_get(beta, "run")), "r3");
    assert_int_equal(json_object_size(json_object_get(beta, "tasks")), 0);
    json_decref(beta);
}

static void test_unknown_runs(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    json_t *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_store_run_tasks(f->st, "alpha", "last", &out, &err), FR_ENOENT);
    assert_non_null(strstr(err.msg, "no run of workflow 'alpha'"));
    assert_null(out);
    assert_int_equal(fr_store_run_tasks(f->st, "alpha", "nope", &out, &err), FR_ENOENT);
    assert_non_null(strstr(err.msg, "no run 'nope'"));
    assert_int_equal(fr_store_run_tasks(f->st, NULL, "last", &out, &err), FR_EINVAL);
    assert_null(out);
}

static void test_read_only_store(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "r1", "alpha", NULL, &e_));
    book(f->st, "r1", "plan", "local-a", "local", 0.0, 1, 1, 0, false, "ok", NULL);
    fr_store_close(f->st);
    f->st = NULL;
    fr_store *ro = NULL;
    assert_ok(fr_store_open_readonly(f->path, &ro, &e_));
    json_t *doc = tasks_ok(ro, "alpha", "last");
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "running");
    assert_string_equal(field(doc, "plan", "endpoint"), "local-a");
    json_decref(doc);
    fr_store_close(ro);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_run_by_id_and_last),
        STORE_TEST(test_unknown_runs),
        STORE_TEST(test_read_only_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
