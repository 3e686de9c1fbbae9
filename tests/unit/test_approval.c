/* Unit tests of engine/approval: where a checkpoint's decision comes from,
 * in order (the command line, a decision stored for this very output, the
 * terminal, a pending row), that a changed output asks again, the
 * terminal's answers, and `flowrun approve|reject`'s record. A real store
 * in a fresh temporary directory per test; the workflow is built by hand. */

#include "tests/unit/support/store_fixture.h"

#include "engine/approval.h"

static fr_task_spec specs[2] = {{.name = "design", .approve = true}, {.name = "build"}};
static fr_workflow wf = {.name = "wf", .tasks = specs, .ntasks = 2};

static fr_approvals *new_set(fx *f, const char *const *approve, size_t n, bool all)
{
    if (!f->st)
        f->st = open_ok(f->path);
    fr_approvals_opts o = {.wf = &wf,
                           .store = f->st,
                           .run_id = "r1",
                           .out_dir = "out",
                           .approve = approve,
                           .napprove = n,
                           .approve_all = all};
    return fr_approvals_new(&o);
}

static char *row_state(fx *f)
{
    fr_store_approval row;
    bool found = false;
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &row, &found, &e_));
    static char buf[64];
    snprintf(buf, sizeof buf, "%s", found ? row.state : "none");
    fr_store_approval_clear(&row);
    return buf;
}

/* No decision anywhere: with a terminal the caller asks (NONE); without,
 * a pending row is recorded with the output's path and hash. */
static void test_ask_or_pending(void **state)
{
    fx *f = *state;
    fr_approvals *a = new_set(f, NULL, 0, false);
    fr_reply reply = {.text = "the design"};
    fr_approval out = {0};
    assert_ok(fr_approvals_decide(a, 0, &reply, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_NONE);
    assert_string_equal(row_state(f), "none");
    assert_ok(fr_approvals_decide(a, 0, &reply, false, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    assert_non_null(out.at);
    assert_null(out.by);
    assert_string_equal(row_state(f), "pending");
    fr_store_approval row;
    bool found;
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &row, &found, &e_));
    assert_string_equal(row.output_path, "out/design.txt");
    assert_string_equal(row.run_id, "r1");
    assert_int_equal(strlen(row.output_hash), 16);
    fr_store_approval_clear(&row);
    char *path = fr_approvals_output_path(a, 0, &reply);
    assert_string_equal(path, "out/design.txt");
    free(path);
    fr_approval_clear(&out);
    fr_approvals_free(a);
}

/* A decision recorded for this output holds; for another output it does
 * not, and the new output is asked again. */
static void test_stored_decision_follows_the_output(void **state)
{
    fx *f = *state;
    fr_approvals *a = new_set(f, NULL, 0, false);
    fr_reply reply = {.text = "the design"};
    fr_approval out = {0};
    assert_ok(fr_approvals_decide(a, 0, &reply, false, &out, &e_));
    assert_ok(fr_approval_record(f->st, "wf", "design", FR_APPROVAL_REJECTED, "too vague", &e_));
    assert_ok(fr_approvals_decide(a, 0, &reply, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_REJECTED);
    assert_string_equal(out.note, "too vague");
    char user[128];
    assert_string_equal(out.by, fr_approval_user(user, sizeof user));
    assert_true(strlen(out.at) == 20 && out.at[10] == 'T' && out.at[19] == 'Z');
    fr_reply changed = {.text = "the design, rewritten"};
    assert_ok(fr_approvals_decide(a, 0, &changed, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_NONE);
    assert_ok(fr_approvals_decide(a, 0, &changed, false, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    assert_string_equal(row_state(f), "pending");
    fr_approval_clear(&out);
    fr_approvals_free(a);
}

/* --approve TASK and --approve-all come first, over a stored rejection,
 * and are recorded for the output. */
static void test_command_line_first(void **state)
{
    fx *f = *state;
    fr_reply reply = {.text = "the design"};
    fr_approval out = {0};
    fr_approvals *a = new_set(f, NULL, 0, false);
    assert_ok(fr_approvals_decide(a, 0, &reply, false, &out, &e_));
    assert_ok(fr_approval_record(f->st, "wf", "design", FR_APPROVAL_REJECTED, NULL, &e_));
    fr_approvals_free(a);
    const char *names[] = {"other", "design"};
    a = new_set(f, names, 2, false);
    assert_ok(fr_approvals_decide(a, 0, &reply, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    assert_string_equal(out.note, "--approve");
    assert_string_equal(row_state(f), "approved");
    fr_approvals_free(a);
    const char *none[] = {"other"};
    a = new_set(f, none, 1, true);
    fr_reply changed = {.text = "new"};
    assert_ok(fr_approvals_decide(a, 0, &changed, false, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    assert_string_equal(out.note, "--approve-all");
    fr_approval_clear(&out);
    fr_approvals_free(a);
}

/* The terminal's answers are recorded: approved with a note, or pending
 * when the input ended. A JSON output is hashed and named as its file. */
static void test_answers(void **state)
{
    fx *f = *state;
    fr_approvals *a = new_set(f, NULL, 0, false);
    fr_reply reply = {.text = "{}", .json = json_pack("{s:i}", "n", 1)};
    fr_approval out = {0};
    assert_ok(fr_approvals_decide(a, 0, &reply, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_NONE);
    assert_ok(fr_approvals_answer(a, 0, FR_APPROVAL_PENDING, NULL, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    assert_string_equal(row_state(f), "pending");
    assert_ok(fr_approvals_answer(a, 0, FR_APPROVAL_APPROVED, "fine", &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    assert_string_equal(out.note, "fine");
    assert_string_equal(row_state(f), "approved");
    fr_store_approval row;
    bool found;
    assert_ok(fr_store_approval_get(f->st, "wf", "design", &row, &found, &e_));
    assert_string_equal(row.output_path, "out/design.json");
    assert_string_equal(row.note, "fine");
    fr_store_approval_clear(&row);
    /* The same output decides from the store next time. */
    assert_ok(fr_approvals_decide(a, 0, &reply, true, &out, &e_));
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    json_decref(reply.json);
    fr_approval_clear(&out);
    fr_approvals_free(a);
}

/* `flowrun approve` on a task never asked: FR_ENOENT saying how to get one. */
static void test_record_without_pending(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_error err = {0};
    assert_int_equal(fr_approval_record(f->st, "wf", "design", FR_APPROVAL_APPROVED, NULL, &err),
                     FR_ENOENT);
    assert_non_null(strstr(err.msg, "no approval of task 'design' is pending"));
    assert_non_null(strstr(err.msg, "run the workflow first"));
    assert_string_equal(fr_approval_state_name(FR_APPROVAL_PENDING), "pending");
    assert_null(fr_approval_state_name(FR_APPROVAL_NONE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_ask_or_pending),
        STORE_TEST(test_stored_decision_follows_the_output),
        STORE_TEST(test_command_line_first),
        STORE_TEST(test_answers),
        STORE_TEST(test_record_without_pending),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
