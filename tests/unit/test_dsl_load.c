/* Tests of dsl/load. Every fixture in tests/unit/fixtures/dsl/ runs:
 * good_*.lua must load, bad_*.lua must fail with the code, line and words
 * written in their header comments:
 *   -- code: FR_EWORKFLOW
 *   -- line: 7            (or "any")
 *   -- expect: text the message must contain   (repeatable)
 *   -- absent: text the message must not contain (repeatable)
 * Then privacy, every field and the defaults, long paths, bytecode refused
 * and every memory budget. Runs from the source root (CTest's working
 * directory). */

#include "dsl/load_int.h"
#include "tests/unit/support/dsl_fixture.h"

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
    assert_true(wf->budget.daily_usd == 7.5 && wf->budget.has_daily);
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
    assert_false(wf->budget.has_daily);
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

/* Writes `text` to a fresh file under /tmp and returns its owned path. */
static char *temp_workflow(const char *text)
{
    char tmpl[] = "/tmp/flowrun-test-dsl-load-XXXXXX";
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return fr_xstrdup(tmpl);
}

/* A task with more fields than the loader remembers of a table's keys
 * (dsl/decl_field.c reads those by lookup) gets every one of them, and
 * a task of a few fields gets its defaults for the rest. */
static void test_many_fields(void **state)
{
    (void)state;
    char *path = temp_workflow(
        "endpoint 'gpu' { tier = 'local', url = 'http://127.0.0.1:9/v1', model = 'm' }\n"
        "agent 'a' {}\n"
        "task 'first' { agent = 'a', prompt = 'p' }\n"
        "task 'wide' { agent = 'a', prompt = 'Use {{first}}.', deps = { 'first' },\n"
        "  complexity = 0.25, type = 'code', priority = 9, timeout = 42, retries = 7,\n"
        "  max_tokens = 321, temperature = 1.5, budget = 0.125, min_quality = 0.75,\n"
        "  check = function() return 1 end, approve = true, allow_truncated = true,\n"
        "  save = 'out/wide.md', endpoint = 'gpu', max_turns = 4, max_tool_calls = 9,\n"
        "  cache = false, tier = 'local', seed = 1234, trigger = 'all_done',\n"
        "  when = '{{first}}', schema = 'json' }\n");
    fr_workflow *wf = load_ok(path, NULL);
    assert_int_equal(wf->ntasks, 2);
    const fr_task_spec *t = &wf->tasks[1];
    assert_string_equal(t->prompt, "Use {{first}}.");
    assert_int_equal(t->ndeps, 1);
    assert_int_equal(t->dep_index[0], 0);
    assert_true(t->complexity == 0.25);
    assert_string_equal(t->type, "code");
    assert_int_equal(t->priority, 9);
    assert_true(t->timeout_s == 42);
    assert_int_equal(t->retries, 7);
    assert_int_equal(t->max_tokens, 321);
    assert_true(t->temperature == 1.5);
    assert_true(t->has_budget && t->budget_usd == 0.125);
    assert_true(t->min_quality == 0.75 && t->has_check);
    assert_true(t->approve && t->allow_truncated);
    assert_string_equal(t->save, "out/wide.md");
    assert_string_equal(t->endpoint, "gpu");
    assert_int_equal(t->max_turns, 4);
    assert_int_equal(t->max_tool_calls, 9);
    assert_true(t->no_cache);
    assert_int_equal(t->tier, FR_TIER_LOCAL);
    assert_true(t->has_seed && t->seed == 1234);
    assert_int_equal(t->trigger, FR_TRIGGER_ALL_DONE);
    assert_string_equal(t->when, "{{first}}");
    assert_non_null(t->schema);
    const fr_task_spec *f = &wf->tasks[0];
    assert_int_equal(f->priority, 5);
    assert_int_equal(f->max_tokens, 2048);
    assert_false(f->no_cache || f->has_seed || f->approve);
    assert_null(f->save);
    fr_workflow_free(wf);
    unlink(path);
    free(path);
}

/* Bodies given later than their names, in another order: deps resolve to
 * the tasks' order of bodies, and a name declared twice is still refused
 * with the first place. */
static void test_bodies_out_of_order(void **state)
{
    (void)state;
    char *path = temp_workflow(
        "endpoint 'gpu' { tier = 'local', url = 'http://127.0.0.1:9/v1', model = 'm' }\n"
        "local a = task 'a'\n"
        "local b = task 'b'\n"
        "agent 'x' {}\n"
        "b { agent = 'x', prompt = 'B' }\n"
        "a { agent = 'x', deps = { 'b' }, prompt = '{{b}}' }\n");
    fr_workflow *wf = load_ok(path, NULL);
    assert_int_equal(wf->ntasks, 2);
    assert_string_equal(wf->tasks[0].name, "b");
    assert_string_equal(wf->tasks[1].name, "a");
    assert_int_equal(wf->tasks[1].dep_index[0], 0);
    fr_workflow_free(wf);
    unlink(path);
    free(path);

    path = temp_workflow("local a = task 'a'\nagent 'x' {}\ntask 'a' { agent = 'x' }\n");
    fr_error err;
    assert_int_equal(load_err(path, NULL, &err), FR_EWORKFLOW);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, "duplicate task 'a' (first declared at"));
    assert_non_null(strstr(err.msg, ":1)"));
    unlink(path);
    free(path);
}

/* Text fields: plain ASCII and UTF-8 pass as written; a NUL byte or a byte
 * that is not UTF-8 past the first 8 bytes is refused at its offset. */
static void test_text_fields(void **state)
{
    (void)state;
    static const struct {
        const char *prompt; /* a Lua string literal */
        const char *want;   /* the prompt loaded, or NULL for an error */
        const char *words;  /* in the error */
    } cases[] = {
        {"'plain ascii, longer than eight bytes'", "plain ascii, longer than eight bytes", NULL},
        {"'r\\195\\169sum\\195\\169 \\226\\130\\172 12345678'",
         "r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac 12345678", NULL},
        {"'abcdefghij\\0k'", NULL, "field 'prompt' holds a NUL byte at byte 10"},
        {"'abcdefghi\\255xyz'", NULL, "field 'prompt' is not valid UTF-8 at byte 9"},
        {"'1234567\\0'", NULL, "holds a NUL byte at byte 7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *text = fr_xasprintf(
            "endpoint 'gpu' { tier = 'local', url = 'http://127.0.0.1:9/v1', model = 'm' }\n"
            "agent 'a' {}\ntask 't' { agent = 'a', prompt = %s }\n",
            cases[i].prompt);
        char *path = temp_workflow(text);
        if (cases[i].want) {
            fr_workflow *wf = load_ok(path, NULL);
            assert_string_equal(wf->tasks[0].prompt, cases[i].want);
            fr_workflow_free(wf);
        } else {
            fr_error err;
            assert_int_equal(load_err(path, NULL, &err), FR_EWORKFLOW);
            if (!strstr(err.msg, cases[i].words))
                print_error("case %zu: %s\n", i, err.msg);
            assert_non_null(strstr(err.msg, cases[i].words));
            assert_int_equal(err.line, 3);
        }
        unlink(path);
        free(path);
        free(text);
    }
}

/* Every memory budget either loads the workflow or fails cleanly with
 * FR_ELIMIT: Lua errors raised at any allocation inside the declaration
 * functions leak nothing (run under ASan or valgrind). */
static void three_tasks(const fr_workflow *wf)
{
    assert_int_equal(wf->ntasks, 3);
}

static void test_memory_budget_sweep(void **state)
{
    (void)state;
    dsl_memory_sweep(FIX "/good_full.lua", 8 << 10, 512 << 10, 3 << 10, three_tasks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_fixtures),     cmocka_unit_test(test_good_fixtures),
        cmocka_unit_test(test_privacy_flow),     cmocka_unit_test(test_full_fields),
        cmocka_unit_test(test_minimal_defaults), cmocka_unit_test(test_long_path),
        cmocka_unit_test(test_bytecode_refused), cmocka_unit_test(test_memory_budget_sweep),
        cmocka_unit_test(test_many_fields),      cmocka_unit_test(test_bodies_out_of_order),
        cmocka_unit_test(test_text_fields),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
