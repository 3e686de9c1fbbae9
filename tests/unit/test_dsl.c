/* Tests of dsl/load, dsl/sandbox and prompt rendering. Every fixture in
 * tests/unit/fixtures/dsl/ runs: good_*.lua must load, bad_*.lua must fail
 * with the code, line and words written in their header comments:
 *   -- code: FR_EWORKFLOW
 *   -- line: 7            (or "any")
 *   -- expect: text the message must contain   (repeatable)
 *   -- absent: text the message must not contain (repeatable)
 * Runs from the source root (CTest's working directory). */

#include "dsl/load_int.h"
#include "dsl/sandbox.h"
#include "dsl/workflow.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <dirent.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define FIX "tests/unit/fixtures/dsl"

static char g_root[4096];

static int setup_env(void **state)
{
    (void)state;
    /* No user configuration may leak into the tests. */
    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-test-xdg", 1);
    unsetenv("OPENAI_BASE_URL");
    unsetenv("OLLAMA_HOST");
    unsetenv("ANTHROPIC_BASE_URL");
    assert_non_null(getcwd(g_root, sizeof g_root));
    return 0;
}

static fr_workflow *load_ok(const char *path, const fr_load_opts *opts)
{
    fr_workflow *wf = NULL;
    fr_error err = {0};
    int rc = fr_workflow_load(path, opts, &wf, &err);
    if (rc != FR_OK) {
        char buf[2048];
        print_error("%s: %s: %s\n", path, fr_err_name(rc), fr_error_format(&err, buf, sizeof buf));
    }
    assert_int_equal(rc, FR_OK);
    assert_non_null(wf);
    return wf;
}

static int load_err(const char *path, const fr_load_opts *opts, fr_error *err)
{
    fr_workflow *wf = NULL;
    memset(err, 0, sizeof *err);
    int rc = fr_workflow_load(path, opts, &wf, err);
    assert_null(wf);
    return rc;
}

static int code_by_name(const char *name)
{
    static const int codes[] = {FR_EWORKFLOW, FR_ESYNTAX, FR_ECONFIG,
                                FR_ELIMIT,    FR_ENOENT,  FR_ELUA};
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++)
        if (strcmp(fr_err_name(codes[i]), name) == 0)
            return codes[i];
    return 1; /* never a valid code */
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the sorted names in FIX starting with `prefix`; *n is the count. */
static char **fixtures(const char *prefix, size_t *n)
{
    DIR *d = opendir(FIX);
    assert_non_null(d);
    char **names = NULL;
    *n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 || l < 5 ||
            strcmp(de->d_name + l - 4, ".lua") != 0)
            continue;
        names = fr_xrealloc(names, (*n + 1) * sizeof *names);
        names[(*n)++] = fr_xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, *n, sizeof *names, cmp_names);
    return names;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Checks one bad fixture against its header; returns the number of
 * mismatches, each printed. */
static int check_bad(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", FIX, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    int want_code = 0, want_line = -1, bad = 0;
    char expects[8][1024], absents[4][1024];
    int nexp = 0, nabs = 0;
    while (fgets(line, sizeof line, f) && strncmp(line, "-- ", 3) == 0) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "-- code: ", 9) == 0)
            want_code = code_by_name(line + 9);
        else if (strncmp(line, "-- line: ", 9) == 0)
            want_line = strcmp(line + 9, "any") == 0 ? -1 : atoi(line + 9);
        else if (strncmp(line, "-- expect: ", 11) == 0 && nexp < 8)
            snprintf(expects[nexp++], sizeof expects[0], "%s", line + 11);
        else if (strncmp(line, "-- absent: ", 11) == 0 && nabs < 4)
            snprintf(absents[nabs++], sizeof absents[0], "%s", line + 11);
    }
    fclose(f);
    assert_true(want_code < 0);
    assert_true(nexp > 0);

    fr_error err;
    int rc = load_err(path, NULL, &err);
    char buf[2048];
    fr_error_format(&err, buf, sizeof buf);
    if (rc != want_code) {
        print_error("%s: got %s, want %s (%s)\n", name, fr_err_name(rc), fr_err_name(want_code),
                    buf);
        bad++;
    }
    if (want_line >= 0 && err.line != want_line) {
        print_error("%s: got line %d, want %d (%s)\n", name, err.line, want_line, buf);
        bad++;
    }
    if (strcmp(err.source, path) != 0) {
        print_error("%s: got source '%s', want '%s'\n", name, err.source, path);
        bad++;
    }
    for (int i = 0; i < nexp; i++)
        if (!strstr(err.msg, expects[i])) {
            print_error("%s: message lacks \"%s\": %s\n", name, expects[i], buf);
            bad++;
        }
    for (int i = 0; i < nabs; i++)
        if (strstr(err.msg, absents[i])) {
            print_error("%s: message must not contain \"%s\": %s\n", name, absents[i], buf);
            bad++;
        }
    return bad;
}

static void test_bad_fixtures(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    size_t n;
    char **names = fixtures("bad_", &n);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += check_bad(names[i]);
    free_names(names, n);
    assert_true(n >= 60);
    assert_int_equal(bad, 0);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
    /* os.execute never ran. */
    assert_int_not_equal(access("/tmp/flowrun-dsl-escaped", F_OK), 0);
}

static void test_good_fixtures(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    size_t n;
    char **names = fixtures("good_", &n);
    for (size_t i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", FIX, names[i]);
        fr_workflow_free(load_ok(path, NULL));
    }
    free_names(names, n);
    assert_true(n >= 5);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

/* Privacy follows the data (three levels, fan-in, a private agent,
 * declassify, cycles), and --allow-save-anywhere lets a save path out. */
static void test_privacy_flow(void **state)
{
    (void)state;
    fr_error err;
    const char *path = FIX "/privacy_flow.lua";
    assert_int_equal(load_err(path, NULL, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "field 'save' ('/tmp/anywhere.txt') is an absolute path"));
    assert_int_equal(err.line, 18);
    fr_load_opts o = {.allow_save_anywhere = true};
    fr_workflow *wf = load_ok(path, &o);
    assert_true(wf->save_anywhere);
#define T(name)   (&wf->tasks[fr_workflow_find_task(wf, name)])
#define IDX(name) fr_workflow_find_task(wf, name)
    assert_false(T("pub")->is_private);
    assert_true(T("secret")->is_private);
    assert_int_equal(T("secret")->private_from, -1);
    assert_true(T("mid")->is_private);
    assert_int_equal(T("mid")->private_from, IDX("secret"));
    assert_int_equal(T("mid")->private_via, IDX("secret"));
    assert_true(T("leaf")->is_private);
    assert_int_equal(T("leaf")->private_from, IDX("secret"));
    assert_int_equal(T("leaf")->private_via, IDX("mid"));
    assert_false(T("open")->is_private); /* declassify, so it may be pinned to the cloud */
    assert_int_equal(T("open")->declassified_from, IDX("leaf"));
    assert_false(T("after_open")->is_private);
    assert_int_equal(T("after_open")->declassified_from, -1);
    assert_true(T("vaulted")->is_private); /* its agent is */
    assert_int_equal(T("vaulted")->private_from, -1);
    assert_true(T("cyc1")->is_private && T("cyc2")->is_private);
    assert_int_equal(T("cyc2")->private_from, IDX("vaulted"));
    assert_int_equal(T("cyc2")->private_via, IDX("cyc1"));
    assert_false(T("loop1")->is_private || T("loop2")->is_private);
    char buf[256];
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("pub"), buf, sizeof buf), "");
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("secret"), buf, sizeof buf),
                        "private");
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("mid"), buf, sizeof buf),
                        "private: inherited from 'secret'");
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("leaf"), buf, sizeof buf),
                        "private: inherited from 'secret' via 'mid'");
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("vaulted"), buf, sizeof buf),
                        "private: its agent 'vault' is private");
    assert_string_equal(fr_workflow_privacy_text(wf, (size_t)IDX("open"), buf, sizeof buf),
                        "declassified: receives the output of private task 'leaf'");
#undef T
#undef IDX
    fr_workflow_free(wf);
}

static void test_full_fields(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_workflow *wf = load_ok(FIX "/good_full.lua", NULL);
    assert_string_equal(wf->name, "feature-pipeline");
    assert_string_equal(wf->path, FIX "/good_full.lua");
    assert_string_equal(wf->dir, FIX);
    assert_string_equal(wf->policy, "balanced");
    assert_true(wf->budget.usd == 0.5 && wf->budget.has_usd);
    assert_true(wf->budget.alert == 0.9);
    assert_true(wf->budget.monthly_usd == 100 && wf->budget.has_monthly);
    assert_string_equal(json_string_value(json_object_get(wf->vars, "idea")), "a todo app");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "count")), "3");
    assert_string_equal(json_string_value(json_object_get(wf->vars, "ratio")), "0.25");
    assert_string_equal(wf->baseline, "sonnet");

    assert_int_equal(wf->nagents, 2);
    assert_string_equal(wf->agents[0].name, "architect");
    assert_string_equal(wf->agents[1].system, "You write small, tested functions.");
    assert_int_equal(wf->agents[1].line, 11);

    assert_int_equal(wf->nendpoints, 3);
    const fr_endpoint_spec *gpu = &wf->endpoints[fr_workflow_find_endpoint(wf, "gpu")];
    assert_int_equal(gpu->tier, FR_TIER_LOCAL);
    assert_int_equal(gpu->protocol, FR_PROTO_OPENAI);
    assert_string_equal(gpu->url, "http://10.0.0.5:8000/v1");
    assert_int_equal(gpu->max_parallel, 2);
    assert_int_equal(gpu->context, 32768);
    assert_true(gpu->quality == 0.6);
    assert_int_equal(gpu->ntags, 2);
    assert_string_equal(gpu->tags[1], "refactor");
    assert_true(gpu->timeouts.connect_s == 5 && gpu->timeouts.first_byte_s == 30 &&
                gpu->timeouts.idle_s == 20);
    assert_false(gpu->price.set);
    assert_true(gpu->stream);
    assert_int_equal(gpu->line, 13);
    const fr_endpoint_spec *studio = &wf->endpoints[fr_workflow_find_endpoint(wf, "studio")];
    assert_int_equal(studio->protocol, FR_PROTO_OLLAMA);
    assert_false(studio->stream);
    assert_int_equal(studio->max_parallel, 1);
    assert_true(studio->timeouts.connect_s == 10 && studio->timeouts.first_byte_s == 0 &&
                studio->timeouts.idle_s == 60);
    const fr_endpoint_spec *sonnet = &wf->endpoints[fr_workflow_find_endpoint(wf, "sonnet")];
    assert_int_equal(sonnet->tier, FR_TIER_CLOUD);
    assert_int_equal(sonnet->protocol, FR_PROTO_ANTHROPIC);
    assert_string_equal(sonnet->url, "https://api.anthropic.com"); /* the default */
    assert_string_equal(sonnet->api_key_env, "ANTHROPIC_API_KEY");
    assert_true(sonnet->price.set && sonnet->price.input == 3 && sonnet->price.output == 15 &&
                sonnet->price.cached_input == 0.3);
    assert_int_equal(sonnet->max_parallel, 10);

    assert_int_equal(wf->ntasks, 3);
    const fr_task_spec *design = &wf->tasks[0];
    assert_string_equal(design->name, "design");
    assert_int_equal(design->line, 26);
    assert_string_equal(design->file, FIX "/good_full.lua");
    assert_int_equal(design->agent, 0);
    assert_string_equal(design->type, "architecture"); /* from the agent */
    assert_true(design->complexity == 0.9);
    assert_int_equal(design->priority, 8);
    assert_true(design->timeout_s == 120); /* workflow defaults */
    assert_int_equal(design->retries, 3);
    assert_int_equal(design->max_tokens, 1024);
    assert_true(design->temperature == 0.7);
    assert_int_equal(design->ndeps, 0);
    assert_int_equal(design->tier, FR_TIER_ANY);

    const fr_task_spec *api = &wf->tasks[1];
    assert_null(api->prompt); /* a function */
    assert_int_equal(api->ndeps, 1);
    assert_string_equal(api->deps[0], "design");
    assert_int_equal(api->dep_index[0], 0);
    assert_string_equal(api->type, "implementation");
    assert_true(api->has_check);
    assert_true(api->min_quality == 0.7);
    assert_true(api->budget_usd == 0.05 && api->has_budget);
    assert_true(api->timeout_s == 60);
    assert_int_equal(api->retries, 1);
    assert_int_equal(api->max_tokens, 4096);
    assert_true(api->temperature == 0);
    assert_string_equal(api->endpoint, "sonnet");
    assert_non_null(api->schema);
    char *schema = json_dumps(api->schema, JSON_COMPACT);
    assert_string_equal(schema, "{\"properties\":{\"files\":{\"items\":{\"type\":\"string\"},"
                                "\"type\":\"array\"}},\"required\":[\"files\"],\"type\":"
                                "\"object\"}");
    free(schema);
    assert_int_not_equal(wf->lua->tasks[1].check_ref, LUA_NOREF);
    assert_int_equal(wf->lua->tasks[1].prompt_line, 33);

    const fr_task_spec *review = &wf->tasks[2];
    assert_true(review->is_private);
    assert_true(review->approve);
    assert_string_equal(review->save, "out/review.md");
    assert_int_equal(review->tier, FR_TIER_LOCAL);
    assert_int_equal(review->ndeps, 2);
    assert_int_equal(review->dep_index[0], 1);
    assert_int_equal(review->dep_index[1], 0);
    assert_int_equal(fr_workflow_find_task(wf, "review"), 2);
    assert_int_equal(fr_workflow_find_task(wf, "nope"), -1);
    assert_int_equal(fr_workflow_find_endpoint(wf, "nope"), -1);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

static void test_minimal_defaults(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_minimal.lua", NULL);
    assert_string_equal(wf->name, "good_minimal"); /* the file's base name */
    assert_null(wf->policy);
    assert_true(wf->budget.usd == 0 && wf->budget.alert == 0.8 && wf->budget.monthly_usd == 0);
    assert_false(wf->budget.has_usd); /* no cap, which is not a cap of 0 */
    assert_false(wf->budget.has_monthly);
    assert_int_equal(json_object_size(wf->vars), 0);
    assert_null(wf->baseline);
    const fr_task_spec *t = &wf->tasks[0];
    assert_true(t->complexity == 0.5);
    assert_int_equal(t->priority, 5);
    assert_false(t->is_private);
    assert_true(t->timeout_s == 300);
    assert_int_equal(t->retries, 2);
    assert_int_equal(t->max_tokens, 2048);
    assert_true(t->temperature == 0.2);
    assert_true(t->budget_usd == 0);
    assert_false(t->has_budget);
    assert_null(t->schema);
    assert_false(t->has_check);
    assert_true(t->min_quality == 0);
    assert_false(t->approve);
    assert_null(t->save);
    assert_null(t->endpoint);
    assert_null(t->type);
    assert_int_equal(t->tier, FR_TIER_ANY);
    assert_string_equal(t->prompt, "Say hello.");
    const fr_endpoint_spec *e = &wf->endpoints[0];
    assert_int_equal(e->protocol, FR_PROTO_OLLAMA);
    assert_string_equal(e->url, "http://127.0.0.1:11434"); /* Ollama's default */
    assert_null(e->api_key_env);
    assert_int_equal(e->max_parallel, 1);
    assert_int_equal(e->context, 0);
    assert_true(e->quality == 0.5);
    assert_true(e->stream);
    assert_false(e->price.set);
    assert_true(e->price.input == 0 && e->price.output == 0);
    fr_workflow_free(wf);
}

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

/* A workflow file at a path longer than Lua's chunk-name limit still
 * reports its full path. */
static void test_long_path(void **state)
{
    (void)state;
    char dir[] = "/tmp/flowrun-test-dsl-a-rather-long-directory-name-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = fr_xasprintf("%s/and-a-long-workflow-file-name-too.lua", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("local x = 1\nlocal y = nil\nlocal z = y.field\n", f);
    fclose(f);
    fr_error err;
    assert_int_equal(load_err(path, NULL, &err), FR_EWORKFLOW);
    assert_string_equal(err.source, path);
    assert_int_equal(err.line, 3);
    unlink(path);
    rmdir(dir);
    free(path);
}

static int write_chunk(lua_State *L, const void *p, size_t sz, void *ud)
{
    (void)L;
    return fwrite(p, 1, sz, ud) == sz ? 0 : 1;
}

static void test_bytecode_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/flowrun-test-dsl-bytecode-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    lua_State *plain = luaL_newstate();
    assert_int_equal(luaL_loadstring(plain, "workflow { name = 'bc' }"), LUA_OK);
    assert_int_equal(lua_dump(plain, write_chunk, f, 1), 0);
    lua_close(plain);
    fclose(f);
    fr_error err;
    assert_int_equal(load_err(path, NULL, &err), FR_ESYNTAX);
    assert_non_null(strstr(err.msg, "binary chunk"));
    unlink(path);
}

/* Every memory budget either loads the workflow or fails cleanly with
 * FR_ELIMIT: Lua errors raised at any allocation inside the declaration
 * functions leak nothing (run under ASan or valgrind). */
static void test_memory_budget_sweep(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    int ok = 0, limited = 0;
    for (size_t mem = 8 << 10; mem <= 512 << 10; mem += 3 << 10) {
        fr_lua_limits lim = {.mem_bytes = mem};
        fr_load_opts o = {.limits = &lim};
        fr_workflow *wf = NULL;
        fr_error err = {0};
        int rc = fr_workflow_load(FIX "/good_full.lua", &o, &wf, &err);
        if (rc == FR_OK) {
            ok++;
            assert_int_equal(wf->ntasks, 3);
        } else {
            if (rc != FR_ELIMIT)
                print_error("mem=%zu: %s %s\n", mem, fr_err_name(rc), err.msg);
            assert_int_equal(rc, FR_ELIMIT);
            assert_null(wf);
            limited++;
        }
        fr_workflow_free(wf);
        assert_int_equal(fr_sandbox_live_refs(), refs0);
    }
    assert_true(ok > 0);
    assert_true(limited > 0);
}

/* ---- the sandbox on its own ---- */

static lua_State *sandbox(long instructions)
{
    fr_lua_limits lim = {.instructions = instructions, .mem_bytes = 4 << 20};
    lua_State *L = fr_sandbox_new(&lim, "test");
    assert_non_null(L);
    return L;
}

static int run(lua_State *L, const char *code, int nresults, fr_error *err)
{
    memset(err, 0, sizeof *err);
    int rc = fr_sandbox_load_string(L, code, strlen(code), "chunk", err);
    if (rc != FR_OK)
        return rc;
    return fr_lua_call(L, 0, nresults, "test call", err);
}

static void test_sandbox_env(void **state)
{
    (void)state;
    lua_State *L = sandbox(0);
    fr_error err;
    assert_int_equal(run(L, "return getmetatable('')", 1, &err), FR_OK);
    assert_true(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 1);
    /* The env's string table is a copy: changing it leaves methods alone. */
    assert_int_equal(run(L, "string.upper = nil; return ('x'):upper()", 1, &err), FR_OK);
    assert_string_equal(lua_tostring(L, -1), "X");
    lua_pop(L, 1);
    assert_int_equal(run(L,
                         "return type(os.time()), type(os.clock()), os.getenv, os.exit, "
                         "table.unpack({7})",
                         5, &err),
                     FR_OK);
    assert_string_equal(lua_tostring(L, -5), "number");
    assert_string_equal(lua_tostring(L, -4), "number");
    assert_true(lua_isnil(L, -3) && lua_isnil(L, -2));
    assert_int_equal(lua_tointeger(L, -1), 7);
    lua_pop(L, 5);
    assert_int_equal(run(L,
                         "return io, require, load, loadstring, dofile, debug, "
                         "collectgarbage, coroutine, package, string.dump",
                         10, &err),
                     FR_OK);
    for (int i = 1; i <= 10; i++)
        assert_true(lua_isnil(L, -i));
    lua_pop(L, 10);
    assert_int_equal(lua_gettop(L), 0);

    /* xpcall and setmetatable still work as usual. */
    assert_int_equal(run(L,
                         "local ok, m = xpcall(error, function(e) return 'handled: ' .. e end, "
                         "'x', 0) local t = setmetatable({}, { __index = { k = 1 } }) "
                         "return ok, m, t.k, getmetatable(t).__index.k",
                         4, &err),
                     FR_OK);
    assert_false(lua_toboolean(L, -4));
    assert_string_equal(lua_tostring(L, -3), "handled: x");
    assert_int_equal(lua_tointeger(L, -2), 1);
    assert_int_equal(lua_tointeger(L, -1), 1);
    lua_pop(L, 4);
    assert_int_equal(run(L, "setmetatable({}, { __gc = print })", 0, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "__gc metamethods are not allowed"));

    /* print goes to the logger with component lua:<name>. */
    FILE *log = tmpfile();
    fr_log_set_stream(log);
    fr_log_level old = fr_log_get_level();
    fr_log_set_level(FR_LOG_INFO);
    assert_int_equal(run(L, "print('hello', 42, nil)", 0, &err), FR_OK);
    fr_log_set_level(old);
    fr_log_set_stream(NULL);
    char buf[256] = {0};
    rewind(log);
    assert_true(fread(buf, 1, sizeof buf - 1, log) > 0);
    fclose(log);
    assert_non_null(strstr(buf, "lua:test"));
    assert_non_null(strstr(buf, "hello\t42\tnil"));

    /* Syntax errors carry the chunk's name and line. */
    assert_int_equal(run(L, "local x =\n\n = 2", 0, &err), FR_ESYNTAX);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    fr_sandbox_free(L);
    fr_sandbox_free(NULL);
}

static void test_lua_call_limits(void **state)
{
    (void)state;
    lua_State *L = sandbox(100000);
    fr_error err;
    assert_int_equal(run(L, "\n\nwhile true do end", 0, &err), FR_ELIMIT);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "test call: instruction limit exceeded (100000"));

    /* The function caught the error and returned: the call still fails. */
    assert_int_equal(run(L,
                         "local ok = pcall(function() while true do end end)\n"
                         "return 'survived'",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);
    assert_int_equal(run(L,
                         "for i = 1, 100 do\n"
                         "  xpcall(function() while true do end end,\n"
                         "         function(m) while true do end end)\n"
                         "end\nreturn 1",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);

    /* Loops inside C functions are charged too. */
    assert_int_equal(run(L, "\nlocal s = string.rep('', 1e15)", 0, &err), FR_ELIMIT);
    assert_int_equal(err.line, 2);
    assert_int_equal(run(L,
                         "local ok = pcall(function() return ('').rep('', 1e15, '') end) "
                         "return ok",
                         1, &err),
                     FR_ELIMIT);
    assert_int_equal(run(L, "table.move({}, 1, math.maxinteger, 2)", 0, &err), FR_ELIMIT);
    assert_int_equal(run(L, "table.move({}, math.mininteger, math.maxinteger, 2)", 0, &err),
                     FR_ELIMIT);
    assert_int_equal(run(L,
                         "local t = table.move({1, 2, 3}, 1, 3, 2) "
                         "return #t .. (''):rep(2) .. ('ab'):rep(3, ',')",
                         1, &err),
                     FR_OK);
    assert_string_equal(lua_tostring(L, -1), "4ab,ab,ab");
    lua_pop(L, 1);

    /* The budget is per call: a short call after a failed one works. */
    assert_int_equal(run(L, "local n = 0 for i = 1, 1000 do n = n + i end return n", 1, &err),
                     FR_OK);
    assert_int_equal(lua_tointeger(L, -1), 500500);
    lua_pop(L, 1);

    /* Memory: refused allocations end the call with FR_ELIMIT, pcall or not. */
    assert_int_equal(run(L, "return string.rep(('x'):rep(1000), 5000)", 1, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "memory limit exceeded"));
    assert_int_equal(
        run(L, "local ok = pcall(string.rep, ('x'):rep(1000), 5000) return 'ok'", 1, &err),
        FR_ELIMIT);
    assert_int_equal(lua_gettop(L), 0);
    size_t used = fr_sandbox_mem_used(L);
    assert_true(used > 0 && used < (4 << 20));

    /* Runtime errors: ELUA with position; error objects that are not strings. */
    assert_int_equal(run(L, "\nerror('bad thing')", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.msg, "test call: bad thing");
    /* Errors whose message has no position get the innermost line. */
    assert_int_equal(run(L, "\n\nerror({})", 0, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "(error object is a table value)"));
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    assert_int_equal(run(L, "error('no position', 0)", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 1);
    assert_string_equal(err.msg, "test call: no position");
    assert_int_equal(run(L, "local function f()\n  error()\nend\nf()", 0, &err), FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "(error object is a nil value)"));
    assert_int_equal(run(L,
                         "local e = setmetatable({}, {__tostring = function() return 'told' end})\n"
                         "error(e)",
                         0, &err),
                     FR_ELUA);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.msg, "test call: told");
    /* A memory error skips the message handler; the line is still known. */
    assert_int_equal(run(L, "local s = 'x'\nfor i = 1, 40 do\n  s = s .. s\nend", 0, &err),
                     FR_ELIMIT);
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);

    /* Errors of the parser that carry no position: the line it was reading. */
    char deep[700] = "local a = 1\n\nreturn ";
    for (int i = 0; i < 300; i++)
        strcat(deep, "{");
    assert_int_equal(run(L, deep, 0, &err), FR_ESYNTAX);
    assert_non_null(strstr(err.msg, "C stack overflow"));
    assert_string_equal(err.source, "chunk");
    assert_int_equal(err.line, 3);
    size_t big = 6u << 20;
    char *huge = malloc(big + 32);
    assert_non_null(huge);
    strcpy(huge, "local a = 1\nreturn {");
    size_t at = strlen(huge);
    while (at + 3 < big) {
        memcpy(huge + at, "1,\n", 3);
        at += 3;
    }
    strcpy(huge + at, "}");
    assert_int_equal(run(L, huge, 0, &err), FR_ELIMIT);
    assert_non_null(strstr(err.msg, "memory limit exceeded while parsing"));
    assert_true(err.line > 2);
    free(huge);
    fr_sandbox_free(L);
}

static void test_refs(void **state)
{
    (void)state;
    lua_State *L = sandbox(0);
    long before = fr_sandbox_live_refs();
    lua_pushnil(L);
    assert_int_equal(fr_sandbox_ref(L), LUA_REFNIL);
    lua_newtable(L);
    int ref = fr_sandbox_ref(L);
    assert_int_equal(fr_sandbox_live_refs(), before + 1);
    fr_sandbox_unref(L, ref);
    fr_sandbox_unref(L, LUA_NOREF);
    assert_int_equal(fr_sandbox_live_refs(), before);
    fr_sandbox_free(L);
}

static void test_error_from_msg(void **state)
{
    (void)state;
    fr_error err;
    assert_int_equal(fr_lua_error_from_msg(&err, FR_ELUA, "wf/a.lua:12: oops: 3"), FR_ELUA);
    assert_string_equal(err.source, "wf/a.lua");
    assert_int_equal(err.line, 12);
    assert_string_equal(err.msg, "oops: 3");
    fr_lua_error_from_msg(&err, FR_ELUA, "c:/x:y.lua:7: m\nstack traceback:\n\t[C]: in ?");
    assert_string_equal(err.source, "c:/x:y.lua");
    assert_int_equal(err.line, 7);
    assert_string_equal(err.msg, "m");
    fr_lua_error_from_msg(&err, FR_ESYNTAX, "plain message");
    assert_string_equal(err.source, "");
    assert_int_equal(err.line, 0);
    assert_string_equal(err.msg, "plain message");
    assert_int_equal(fr_lua_error_from_msg(NULL, FR_ELUA, "x"), FR_ELUA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_fixtures),
        cmocka_unit_test(test_good_fixtures),
        cmocka_unit_test(test_privacy_flow),
        cmocka_unit_test(test_full_fields),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_endpoints_file_overrides),
        cmocka_unit_test(test_endpoints_file_errors),
        cmocka_unit_test(test_endpoints_search),
        cmocka_unit_test(test_endpoints_several),
        cmocka_unit_test(test_unused_var_warns),
        cmocka_unit_test(test_openai_base_url),
        cmocka_unit_test(test_default_urls),
        cmocka_unit_test(test_var_override),
        cmocka_unit_test(test_render_function_prompt),
        cmocka_unit_test(test_render_string_prompt),
        cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_bytecode_refused),
        cmocka_unit_test(test_memory_budget_sweep),
        cmocka_unit_test(test_sandbox_env),
        cmocka_unit_test(test_lua_call_limits),
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_error_from_msg),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
