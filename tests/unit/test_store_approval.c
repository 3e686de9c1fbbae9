/* Unit tests of engine/store/approval.c: the approvals table's rows (a
 * pending checkpoint, a decision on it, a new output replacing it), its
 * refusals, and the migration that adds it to a version 2 store. A real
 * SQLite file in a fresh temporary directory per test. */

#include "tests/unit/support/store_fixture.h"

static fr_store_approval pending_row(const char *hash)
{
    return (fr_store_approval){.workflow = "wf",
                               .task = "design",
                               .output_hash = (char *)hash,
                               .state = "pending",
                               .run_id = "r1",
                               .output_path = "out/design.txt"};
}

/* A pending row reads back whole; a decision keeps its hash and records who,
 * when and why; a new output's row replaces it. */
static void test_put_get_decide(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2026, 12, 1, 10, 0, 0));
    fr_store_approval row = pending_row("00aa");
    assert_ok(fr_store_approval_put(f->st, &row, &e_));
    fr_store_approval got;
    bool found = false;
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &got, &found, &e_));
    assert_true(found);
    assert_string_equal(got.state, "pending");
    assert_string_equal(got.output_hash, "00aa");
    assert_string_equal(got.run_id, "r1");
    assert_string_equal(got.output_path, "out/design.txt");
    assert_usd(got.asked_at, (double)utc(2026, 12, 1, 10, 0, 0));
    assert_null(got.by);
    assert_usd(got.decided_at, 0);
    fr_store_approval_clear(&got);

    fr_store_set_clock(f->st, utc(2026, 12, 1, 11, 0, 0));
    assert_ok(fr_store_approval_decide(f->st, "wf", "design", "rejected", "ann", "too vague", &e_));
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &got, &found, &e_));
    assert_string_equal(got.state, "rejected");
    assert_string_equal(got.by, "ann");
    assert_string_equal(got.note, "too vague");
    assert_string_equal(got.output_hash, "00aa");
    assert_usd(got.decided_at, (double)utc(2026, 12, 1, 11, 0, 0));
    fr_store_approval_clear(&got);

    row = pending_row("11bb");
    assert_ok(fr_store_approval_put(f->st, &row, &e_));
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &got, &found, &e_));
    assert_string_equal(got.state, "pending");
    assert_string_equal(got.output_hash, "11bb");
    assert_null(got.note);
    fr_store_approval_clear(&got);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM approvals"), 1);
}

/* No row: not found, and a decision on it is FR_ENOENT; bad input is
 * FR_EINVAL; the table refuses a state it does not know. */
static void test_refusals(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store_approval got;
    bool found = true;
    fr_error err = {0};
    assert_ok(fr_store_approval_get(f->st, "wf", "nothing", &got, &found, &e_));
    assert_false(found);
    assert_null(got.state);
    assert_int_equal(
        fr_store_approval_decide(f->st, "wf", "nothing", "approved", "ann", NULL, &err), FR_ENOENT);
    assert_int_equal(fr_store_approval_decide(f->st, "wf", "design", "pending", "ann", NULL, &err),
                     FR_EINVAL);
    fr_store_approval bad = pending_row(NULL);
    assert_int_equal(fr_store_approval_put(f->st, &bad, &err), FR_EINVAL);
    bad = pending_row("00");
    bad.state = "maybe";
    assert_int_equal(fr_store_approval_put(f->st, &bad, &err), FR_EINVAL);
    fr_store_close(f->st);
    f->st = NULL;
    assert_true(raw_refused(f->path, "INSERT INTO approvals (workflow, task, output_hash, state, "
                                     "asked_at) VALUES ('w', 't', 'h', 'maybe', 1)"));
}

/* A version 2 store (made by its migrations) gains the table when a run
 * opens it, keeping its ledger. */
static void test_migration_from_v2(void **state)
{
    fx *f = *state;
    char dir[PATH_MAX];
    join(dir, f->dir, ".flowrun");
    assert_int_equal(mkdir(dir, 0700), 0);
    int fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    close(fd);
    raw_exec(f->path, "PRAGMA journal_mode=WAL");
    raw_exec(f->path, fr_store_migration_sql(0));
    raw_exec(f->path, fr_store_migration_sql(1));
    raw_exec(f->path, "INSERT INTO meta VALUES ('schema_version', 2);"
                      "INSERT INTO runs(id, workflow, started_at, status, cost_usd)"
                      "  VALUES ('old', 'wf', 1.0, 'ok', 0.25);");
    assert_true(raw_refused(f->path, "SELECT count(*) FROM approvals"));
    f->st = open_ok(f->path);
    assert_usd(raw_num(f->path, "SELECT value FROM meta WHERE key = 'schema_version'"),
               FR_STORE_SCHEMA_VERSION);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM runs"), 1);
    fr_store_approval row = pending_row("00aa");
    assert_ok(fr_store_approval_put(f->st, &row, &e_));
    assert_usd(raw_num(f->path, "SELECT count(*) FROM approvals"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_put_get_decide),
        STORE_TEST(test_refusals),
        STORE_TEST(test_migration_from_v2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
