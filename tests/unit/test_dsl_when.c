/* Tests of dsl/'s conditions and join rules: `trigger` and `when` as
 * loaded, and fr_workflow_when on a function (true, false, an error, a
 * result that is not a boolean, the instruction limit) and on a placeholder
 * expression (truthy and falsy texts, status and reason, a dependency that
 * did not succeed). Bad values are the bad_trigger_* and bad_when_*
 * fixtures of test_dsl_load. Runs from the source root (CTest's working
 * directory). */

#include "dsl/load_int.h"
#include "tests/unit/support/dsl_fixture.h"

/* The ctx the engine builds for a task whose dependency `review` ended in
 * `status` with JSON output {"ok": ok} (no output unless it succeeded). */
static json_t *review_ctx(const char *status, json_t *ok, const char *reason)
{
    bool good = strcmp(status, "ok") == 0;
    json_t *json = good ? json_pack("{s:o}", "ok", ok) : json_null();
    if (!good)
        json_decref(ok);
    return json_pack("{s:{s:s, s:o, s:s, s:s}, s:{s:s}}", "review", "text",
                     good ? "{\"ok\":...}" : "", "json", json, "status", status, "reason", reason,
                     "var", "mode", "strict");
}

static int when(fr_workflow *wf, const char *task, json_t *ctx, bool *result, fr_error *err)
{
    long i = fr_workflow_find_task(wf, task);
    assert_true(i >= 0);
    memset(err, 0, sizeof *err);
    *result = !*result; /* must be set either way */
    int rc = fr_workflow_when(wf, (size_t)i, ctx, result, err);
    json_decref(ctx);
    return rc;
}

static void test_fields_load(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_when.lua", NULL);
    const fr_task_spec *t = wf->tasks;
    assert_int_equal(t[0].trigger, FR_TRIGGER_ALL_OK);
    assert_false(t[0].has_when);
    assert_true(t[1].has_when);
    assert_null(t[1].when);
    assert_string_equal(t[2].when, "{{review.json.ok}}");
    assert_int_equal(t[3].trigger, FR_TRIGGER_ALL_DONE);
    assert_int_equal(t[4].trigger, FR_TRIGGER_ANY_FAILED);
    assert_string_equal(fr_trigger_name(t[3].trigger), "all_done");
    assert_string_equal(fr_trigger_name(t[4].trigger), "any_failed");
    assert_string_equal(fr_trigger_name(FR_TRIGGER_ALL_OK), "all_ok");
    fr_workflow_free(wf);
}

static void test_when_function(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_lua_limits lim = {.instructions = 200000, .mem_bytes = 8 << 20};
    fr_load_opts o = {.limits = &lim};
    fr_workflow *wf = load_ok(FIX "/good_when.lua", &o);
    bool r = false;
    fr_error err;
    assert_int_equal(when(wf, "fn", review_ctx("ok", json_false(), ""), &r, &err), FR_OK);
    assert_true(r);
    assert_int_equal(when(wf, "fn", review_ctx("ok", json_true(), ""), &r, &err), FR_OK);
    assert_false(r);

    /* An error fails with the line it happened on. */
    assert_int_equal(when(wf, "boom", review_ctx("ok", json_true(), ""), &r, &err), FR_ELUA);
    assert_string_equal(err.source, FIX "/good_when.lua");
    assert_int_equal(err.line, 13);
    assert_non_null(strstr(err.msg, "condition (when) of task 'boom': "));
    assert_non_null(strstr(err.msg, "attempt to index a nil value"));

    assert_int_equal(when(wf, "nonbool", review_ctx("ok", json_true(), ""), &r, &err), FR_ELUA);
    assert_int_equal(err.line, 16);
    assert_non_null(strstr(err.msg, "the when function of task 'nonbool' must return true or "
                                    "false, got string"));

    /* A loop is stopped by the instruction limit, like a prompt function. */
    assert_int_equal(when(wf, "loop", review_ctx("ok", json_true(), ""), &r, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "condition (when) of task 'loop': instruction limit exceeded"));
    assert_int_equal(lua_gettop(wf->lua->L), 0);

    /* Without a condition a task runs. */
    assert_int_equal(when(wf, "plain", review_ctx("ok", json_true(), ""), &r, &err), FR_OK);
    assert_true(r);
    r = false;
    assert_int_equal(fr_workflow_when(wf, 99, NULL, &r, &err), FR_EINVAL);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

static void test_when_expression(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_when.lua", NULL);
    bool r = false;
    fr_error err;
    assert_int_equal(when(wf, "expr", review_ctx("ok", json_true(), ""), &r, &err), FR_OK);
    assert_true(r);
    assert_int_equal(when(wf, "expr", review_ctx("ok", json_false(), ""), &r, &err), FR_OK);
    assert_false(r);
    /* Every falsy text, in any case and with spaces around; anything else is true. */
    const char *falsy[] = {"", "false", "FALSE", " 0 ", "null", "Nil", "\n"};
    for (size_t k = 0; k < sizeof falsy / sizeof *falsy; k++) {
        assert_int_equal(when(wf, "expr", review_ctx("ok", json_string(falsy[k]), ""), &r, &err),
                         FR_OK);
        assert_false(r);
    }
    const char *truthy[] = {"no", "00", "1", "true", "falsey", "{}"};
    for (size_t k = 0; k < sizeof truthy / sizeof *truthy; k++) {
        assert_int_equal(when(wf, "expr", review_ctx("ok", json_string(truthy[k]), ""), &r, &err),
                         FR_OK);
        assert_true(r);
    }
    assert_int_equal(when(wf, "expr", review_ctx("ok", json_integer(0), ""), &r, &err), FR_OK);
    assert_false(r);
    assert_int_equal(when(wf, "expr", review_ctx("ok", json_null(), ""), &r, &err), FR_OK);
    assert_false(r);
    /* A dependency that failed has no output: its JSON reads as "" (false). */
    assert_int_equal(when(wf, "expr", review_ctx("failed", json_true(), "HTTP 500"), &r, &err),
                     FR_OK);
    assert_false(r);
    /* Status, reason and vars. */
    assert_int_equal(when(wf, "status", review_ctx("failed", json_true(), "x"), &r, &err), FR_OK);
    assert_true(r);
    /* A missing field of a dependency that succeeded is an error at the task. */
    json_t *ctx = review_ctx("ok", json_true(), "");
    json_object_del(json_object_get(ctx, "review"), "json");
    json_object_set_new(json_object_get(ctx, "review"), "json", json_pack("{s:i}", "n", 1));
    assert_int_equal(when(wf, "expr", ctx, &r, &err), FR_EWORKFLOW);
    assert_int_equal(err.line, 7);
    assert_non_null(strstr(err.msg, "condition (when) of task 'expr': {{review.json.ok}}: field "
                                    "'ok' not in review's JSON output"));
    fr_workflow_free(wf);
}

/* {{dep.status}} and {{dep.reason}} in prompts; a failed dependency's
 * text is "". */
static void test_status_in_prompt(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_when.lua", NULL);
    json_t *ctx = review_ctx("failed", json_true(), "HTTP 500 from e1");
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_workflow_render_prompt(wf, 3, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "failed: HTTP 500 from e1 []");
    free(out);
    /* Without status in ctx (an older caller) the placeholder says so. */
    json_object_del(json_object_get(ctx, "review"), "status");
    assert_int_equal(fr_workflow_render_prompt(wf, 3, ctx, &out, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "{{review.status}}: no status for 'review'"));
    json_decref(ctx);
    fr_workflow_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_load),
        cmocka_unit_test(test_when_function),
        cmocka_unit_test(test_when_expression),
        cmocka_unit_test(test_status_in_prompt),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
