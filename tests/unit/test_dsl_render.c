/* Tests of dsl/'s prompt rendering: a task's prompt as a Lua function of
 * ctx or as a template string, and their errors. Runs from the source root
 * (CTest's working directory). */

#include "dsl/load_int.h"
#include "tests/unit/support/dsl_fixture.h"

/* The ctx the engine builds: design's output and the vars. */
static json_t *design_ctx(void)
{
    return json_pack("{s:{s:s, s:{s:[s,s]}}, s:{s:s}}", "design", "text", "the design", "json",
                     "files", "a.c", "b.c", "var", "x", "ex");
}

static int render(fr_workflow *wf, const char *task, char **out, fr_error *err)
{
    json_t *ctx = design_ctx();
    long i = fr_workflow_find_task(wf, task);
    assert_true(i >= 0);
    memset(err, 0, sizeof *err);
    *out = NULL;
    int rc = fr_workflow_render_prompt(wf, (size_t)i, ctx, out, err);
    json_decref(ctx);
    return rc;
}

static void test_render_function_prompt(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_lua_limits lim = {.instructions = 200000, .mem_bytes = 8 << 20};
    fr_load_opts o = {.limits = &lim};
    fr_workflow *wf = load_ok(FIX "/good_prompt_fn.lua", &o);
    char *out;
    fr_error err;
    assert_int_equal(render(wf, "api", &out, &err), FR_OK);
    assert_string_equal(out, "text=the design first=a.c n=2 var=ex");
    free(out);

    assert_int_equal(render(wf, "nonstring", &out, &err), FR_ELUA);
    assert_null(out);
    assert_string_equal(err.source, FIX "/good_prompt_fn.lua");
    assert_int_equal(err.line, 15);
    assert_non_null(strstr(err.msg, "task 'nonstring' must return a string, got number"));

    assert_int_equal(render(wf, "boom", &out, &err), FR_ELUA);
    assert_string_equal(err.source, FIX "/good_prompt_fn.lua");
    assert_int_equal(err.line, 21);
    assert_non_null(strstr(err.msg, "prompt of task 'boom': "));
    assert_non_null(strstr(err.msg, "attempt to index a nil value"));

    /* An infinite loop, even inside pcall, is stopped. */
    assert_int_equal(render(wf, "loop", &out, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "prompt of task 'loop': instruction limit exceeded"));
    assert_string_equal(err.source, FIX "/good_prompt_fn.lua");
    assert_true(err.line >= 28 && err.line <= 30);

    /* So is a memory hog, even inside pcall. */
    assert_int_equal(render(wf, "hog", &out, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "prompt of task 'hog': memory limit exceeded"));

    /* Declarations are over once the file has loaded. */
    assert_int_equal(render(wf, "declares", &out, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "task() can only be used while a workflow file loads"));
    assert_int_equal(err.line, 49);
    assert_int_equal(wf->ntasks, 8);

    /* The state is still usable after all of that. */
    assert_int_equal(render(wf, "api", &out, &err), FR_OK);
    free(out);
    assert_int_equal(lua_gettop(wf->lua->L), 0);

    /* String prompts: template errors name the task and the placeholder. */
    assert_int_equal(render(wf, "template", &out, &err), FR_EWORKFLOW);
    assert_int_equal(err.line, 54);
    assert_non_null(strstr(err.msg, "prompt of task 'template': {{design.json.missing}}: "
                                    "field 'missing' not in design's JSON output"));
    assert_int_equal(render(wf, "design", &out, &err), FR_OK);
    assert_string_equal(out, "Design it.");
    free(out);

    assert_int_equal(fr_workflow_render_prompt(wf, 99, NULL, &out, &err), FR_EINVAL);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

static void test_render_string_prompt(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_full.lua", NULL);
    json_t *ctx =
        json_pack("{s:{s:s, s:{s:[s,s]}}, s:{s:s, s:n}, s:O}", "api", "text", "code", "json",
                  "files", "a.c", "b.c", "design", "text", "d", "json", "var", wf->vars);
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_workflow_render_prompt(wf, 2, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "Review:\ncode\nFiles: [\"a.c\",\"b.c\"]\nFirst: a.c");
    free(out);
    assert_int_equal(fr_workflow_render_prompt(wf, 0, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "Design a REST API for a todo app (3 endpoints).");
    free(out);
    json_decref(ctx);
    fr_workflow_free(wf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_function_prompt),
        cmocka_unit_test(test_render_string_prompt),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
