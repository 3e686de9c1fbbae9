/* Tests of dsl/load's endpoints and vars: --endpoints files (overrides,
 * errors, several, the search path), the providers' default URLs and their
 * environment variables, and --var (overrides, unused names warned of).
 * Runs from the source root (CTest's working directory). */

#include "tests/unit/support/dsl_fixture.h"

static void test_endpoints_file_overrides(void **state)
{
    (void)state;
    fr_load_opts o = {.endpoints_path = FIX "/endpoints/override.lua"};
    fr_workflow *wf = load_ok(FIX "/good_override.lua", &o);
    assert_int_equal(wf->nendpoints, 3);
    const fr_endpoint_spec *lab = &wf->endpoints[fr_workflow_find_endpoint(wf, "lab")];
    assert_string_equal(lab->url, "http://machine.example:8000/v1");
    assert_string_equal(lab->model, "machine-model");
    assert_int_equal(lab->max_parallel, 3);
    assert_string_equal(lab->file, FIX "/endpoints/override.lua");
    assert_int_equal(lab->line, 2);
    const fr_endpoint_spec *keep = &wf->endpoints[fr_workflow_find_endpoint(wf, "keep")];
    assert_string_equal(keep->model, "keep-model");
    const fr_endpoint_spec *extra = &wf->endpoints[fr_workflow_find_endpoint(wf, "extra")];
    assert_int_equal(extra->max_parallel, 4);  /* the cloud default */
    assert_string_equal(wf->baseline, "keep"); /* the workflow's baseline wins */
    fr_workflow_free(wf);

    /* Without the endpoints file, the inline endpoint stays. */
    wf = load_ok(FIX "/good_override.lua", NULL);
    assert_string_equal(wf->endpoints[0].model, "inline-model");
    fr_workflow_free(wf);

    /* A baseline from the endpoints file applies when the workflow has none. */
    o.endpoints_path = FIX "/endpoints/baseline.lua";
    wf = load_ok(FIX "/good_minimal.lua", &o);
    assert_string_equal(wf->baseline, "cloudy");
    fr_workflow_free(wf);
}

static void test_endpoints_file_errors(void **state)
{
    (void)state;
    fr_error err;
    fr_load_opts o = {.endpoints_path = FIX "/endpoints/bad_key.lua"};
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_string_equal(err.source, FIX "/endpoints/bad_key.lua");
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "keys are only read from environment variables"));
    assert_null(strstr(err.msg, "sk-proj"));

    /* Only endpoint and baseline exist in an endpoints file. */
    o.endpoints_path = FIX "/endpoints/declares_task.lua";
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "global 'task'"));

    o.endpoints_path = FIX "/endpoints/missing.lua";
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_string_equal(err.source, FIX "/endpoints/missing.lua");
    assert_non_null(strstr(err.msg, "--endpoints"));

    assert_int_equal(load_err(FIX "/does_not_exist.lua", NULL, &err), FR_ENOENT);
    assert_string_equal(err.source, FIX "/does_not_exist.lua");
}

/* Several --endpoints files are read in order; a name (endpoint or
 * baseline) in two of them is a configuration error naming both; an
 * unknown baseline in an endpoints file is configuration too. */
static void test_endpoints_several(void **state)
{
    (void)state;
    const char *two[] = {FIX "/endpoints/more.lua"};
    fr_load_opts o = {.endpoints_path = FIX "/endpoints/override.lua",
                      .more_endpoints = two,
                      .nmore_endpoints = 1};
    fr_workflow *wf = load_ok(FIX "/good_minimal.lua", &o);
    assert_int_equal(wf->nendpoints, 4);
    assert_string_equal(wf->endpoints[1].name, "lab");
    assert_string_equal(wf->endpoints[3].name, "more");
    assert_string_equal(wf->baseline, "more");
    fr_workflow_free(wf);

    fr_error err;
    const char *dup[] = {FIX "/endpoints/override.lua"};
    o.endpoints_path = FIX "/endpoints/baseline.lua";
    o.more_endpoints = dup;
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_string_equal(err.source, FIX "/endpoints/override.lua");
    assert_int_equal(err.line, 2);
    assert_non_null(
        strstr(err.msg, "endpoint 'lab' is also declared at " FIX "/endpoints/baseline.lua:1"));

    o.more_endpoints = two; /* baseline.lua and more.lua both name a baseline */
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_string_equal(err.source, FIX "/endpoints/more.lua");
    assert_int_equal(err.line, 3);
    assert_non_null(
        strstr(err.msg, "baseline is also declared at " FIX "/endpoints/baseline.lua:3"));

    o = (fr_load_opts){.endpoints_path = FIX "/endpoints/unknown_baseline.lua"};
    assert_int_equal(load_err(FIX "/good_minimal.lua", &o, &err), FR_ECONFIG);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "did you mean 'cloudy'?"));
}

/* A --var the workflow neither declares nor uses is reported through the
 * warn callback, once, with the closest declared name; others are not. */
static void record_warning(void *ud, const char *msg)
{
    char *buf = ud;
    strncat(buf, msg, 1000 - strlen(buf) - 2);
    strcat(buf, "\n");
}

static void test_unused_var_warns(void **state)
{
    (void)state;
    char seen[1000] = "";
    const char *vars[] = {"topc=x", "only_here=y"};
    fr_load_opts o = {.vars = vars, .nvars = 2, .warn = record_warning, .warn_ud = seen};
    fr_workflow *wf = load_ok(FIX "/vars_warn.lua", &o);
    assert_string_equal(seen, "--var 'topc': the workflow does not declare it in workflow { vars = "
                              "... } and no {{var.topc}} uses it; did you mean 'topic'?\n");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "topc")), "x");
    fr_workflow_free(wf);
}

static void test_endpoints_search(void **state)
{
    (void)state;
    char xdg[4600];
    snprintf(xdg, sizeof xdg, "%s/%s/xdg", g_root, FIX);
    setenv("XDG_CONFIG_HOME", xdg, 1);
    fr_workflow *wf = load_ok(FIX "/needs_endpoints.lua", NULL);
    assert_int_equal(wf->nendpoints, 1);
    assert_string_equal(wf->endpoints[0].name, "from-xdg");
    fr_workflow_free(wf);

    /* ./endpoints.lua comes before the XDG file. */
    assert_int_equal(chdir(FIX "/cwd"), 0);
    wf = load_ok("../needs_endpoints.lua", NULL);
    assert_int_equal(chdir(g_root), 0);
    assert_int_equal(wf->nendpoints, 1);
    assert_string_equal(wf->endpoints[0].name, "from-cwd");
    assert_string_equal(wf->endpoints[0].file, "endpoints.lua");
    assert_string_equal(wf->dir, "..");
    fr_workflow_free(wf);

    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-test-xdg", 1);
    fr_error err;
    assert_int_equal(load_err(FIX "/needs_endpoints.lua", NULL, &err), FR_ECONFIG);
    assert_non_null(strstr(err.msg, "/nonexistent/flowrun-test-xdg/flowrun/endpoints.lua"));
}

static void test_openai_base_url(void **state)
{
    (void)state;
    setenv("OPENAI_BASE_URL", "https://proxy.example/v1", 1);
    fr_workflow *wf = load_ok(FIX "/needs_base_url.lua", NULL);
    assert_string_equal(wf->endpoints[0].url, "https://proxy.example/v1");
    fr_workflow_free(wf);
    unsetenv("OPENAI_BASE_URL");
    fr_error err;
    assert_int_equal(load_err(FIX "/needs_base_url.lua", NULL, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "missing required field 'url'"));
}

/* Loads default_urls.lua with OLLAMA_HOST set to `host` (NULL: unset) and
 * returns the Ollama endpoint's URL (owned). */
static char *ollama_url(const char *host)
{
    if (host)
        setenv("OLLAMA_HOST", host, 1);
    else
        unsetenv("OLLAMA_HOST");
    fr_workflow *wf = load_ok(FIX "/default_urls.lua", NULL);
    char *url = strdup(wf->endpoints[0].url);
    fr_workflow_free(wf);
    unsetenv("OLLAMA_HOST");
    return url;
}

static void test_default_urls(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {NULL, "http://127.0.0.1:11434"},
        {"0.0.0.0", "http://127.0.0.1:11434"},
        {"0.0.0.0:9999", "http://127.0.0.1:9999"},
        {"gpu.lan", "http://gpu.lan:11434"},
        {"https://gpu.lan:8443/", "https://gpu.lan:8443"},
        {"http://10.0.0.4", "http://10.0.0.4:11434"},
        {"http://box/ollama", "http://box:11434/ollama"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *url = ollama_url(cases[i][0]);
        assert_string_equal(url, cases[i][1]);
        free(url);
    }
    unsetenv("ANTHROPIC_BASE_URL");
    fr_workflow *wf = load_ok(FIX "/default_urls.lua", NULL);
    assert_string_equal(wf->endpoints[2].url, "https://api.anthropic.com");
    assert_string_equal(wf->endpoints[0].keep_alive, "10m");
    assert_string_equal(wf->endpoints[1].keep_alive, "300");
    assert_null(wf->endpoints[2].keep_alive);
    assert_true(wf->tasks[0].has_seed);
    assert_int_equal(wf->tasks[0].seed, 42);
    assert_false(wf->tasks[1].has_seed);
    assert_true(json_is_string(wf->tasks[0].schema));
    assert_string_equal(json_string_value(wf->tasks[0].schema), "json");
    fr_workflow_free(wf);
    setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:4000", 1);
    wf = load_ok(FIX "/default_urls.lua", NULL);
    assert_string_equal(wf->endpoints[2].url, "http://127.0.0.1:4000");
    fr_workflow_free(wf);
    unsetenv("ANTHROPIC_BASE_URL");
}

static void test_var_override(void **state)
{
    (void)state;
    const char *vars[] = {"x=from --var", "extra=1=2"};
    fr_load_opts o = {.vars = vars, .nvars = 2};
    fr_workflow *wf = load_ok(FIX "/good_vars.lua", &o);
    assert_string_equal(json_string_value(json_object_get(wf->vars, "x")), "from --var");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "idea")), "a todo app");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "n")), "3");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "extra")), "1=2");
    json_t *ctx = json_pack("{s:O}", "var", wf->vars);
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_workflow_render_prompt(wf, 0, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "a todo app / 3 / from --var");
    free(out);
    json_decref(ctx);
    fr_workflow_free(wf);

    const char *bad[] = {"novalue"};
    o = (fr_load_opts){.vars = bad, .nvars = 1};
    assert_int_equal(load_err(FIX "/good_vars.lua", &o, &err), FR_EWORKFLOW);
    assert_string_equal(err.source, "--var");
    assert_int_equal(err.line, 0);
    assert_non_null(strstr(err.msg, "malformed --var 'novalue'"));
    const char *empty[] = {"=v"};
    o = (fr_load_opts){.vars = empty, .nvars = 1};
    assert_int_equal(load_err(FIX "/good_vars.lua", &o, &err), FR_EWORKFLOW);
    assert_string_equal(err.source, "--var");
}

/* An endpoint's slots are shared across processes when it sets
 * max_parallel, unless it says shared = false; a default max_parallel is
 * this process's alone. */
static void test_endpoint_shared(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_shared.lua", NULL);
    assert_true(wf->endpoints[fr_workflow_find_endpoint(wf, "gpu")].shared);
    assert_false(wf->endpoints[fr_workflow_find_endpoint(wf, "mine")].shared);
    assert_int_equal(wf->endpoints[fr_workflow_find_endpoint(wf, "mine")].max_parallel, 2);
    assert_false(wf->endpoints[fr_workflow_find_endpoint(wf, "plain")].shared);
    assert_false(wf->endpoints[fr_workflow_find_endpoint(wf, "cloud")].shared);
    fr_workflow_free(wf);
    /* A `shared` that is not a boolean: tests/unit/fixtures/dsl/bad_shared_type.lua
     * (test_dsl_load's bad fixtures). */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints_file_overrides),
        cmocka_unit_test(test_endpoints_file_errors),
        cmocka_unit_test(test_endpoints_search),
        cmocka_unit_test(test_endpoints_several),
        cmocka_unit_test(test_unused_var_warns),
        cmocka_unit_test(test_openai_base_url),
        cmocka_unit_test(test_default_urls),
        cmocka_unit_test(test_var_override),
        cmocka_unit_test(test_endpoint_shared),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
