/* engine/toolset: each task's tools resolved from its patterns, their wire
 * names (a collision, a name cut at 64), calls refused before anything runs
 * (a name not offered, arguments that fail the schema), results that arrive
 * from the loop (never from inside the call), and MCP tools from the real
 * server-everything over stdio (skipped when tests/deps.sh has not
 * installed it). main hands FR_GUARD_ARG to fr_guard_main as
 * flowrun's does, since command tools and servers run under that guard. */

#include "dsl/workflow.h"
#include "engine/http.h"
#include "engine/guard.h"
#include "engine/proc.h"
#include "engine/toolset.h"
#include "engine/util/hash.h"
#include "support/loop_harness.h"

#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <unistd.h>

#define FIX        "tests/unit/fixtures/toolset"
#define EVERYTHING "tests/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
#define LONG_X     "a_tool_name_that_is_far_too_long_for_any_api_of_the_three_providers_x"
#define LONG_Y     "a_tool_name_that_is_far_too_long_for_any_api_of_the_three_providers_y"

typedef struct fixture {
    uv_loop_t loop;
    fr_http *http;
    fr_workflow *wf;
    fr_toolset *ts;
    bool ready;
    int rc;
    fr_error err;
} fixture;

typedef struct result {
    bool done;
    bool is_error;
    char *text;
    char name[128];
    char source[16];
    char server[32];
    size_t arg_bytes, result_bytes;
} result;

static void on_ready(void *ud, int rc, const fr_error *err)
{
    fixture *f = ud;
    f->ready = true;
    f->rc = rc;
    if (err)
        f->err = *err;
}

static bool is_ready(void *ud)
{
    return ((fixture *)ud)->ready;
}

static bool is_done(void *ud)
{
    return ((result *)ud)->done;
}

static void on_result(void *ud, fr_tool_result *r, const fr_toolcall_info *info)
{
    result *res = ud;
    res->done = true;
    res->is_error = r->is_error;
    res->text = r->text; /* taken */
    r->text = NULL;
    snprintf(res->name, sizeof res->name, "%s", info->name ? info->name : "");
    snprintf(res->source, sizeof res->source, "%s", info->source);
    snprintf(res->server, sizeof res->server, "%s", info->server ? info->server : "");
    res->arg_bytes = info->arg_bytes;
    res->result_bytes = info->result_bytes;
}

/* Waits for `cond`. A result delivered by a zero timer fires at the top of
 * a turn, after which UV_RUN_ONCE would sleep in its poll until the
 * harness's watchdog: one turn that does not sleep comes first. */
static void wait_for(uv_loop_t *loop, loop_cond_fn cond, void *ud, const char *what)
{
    uv_run(loop, UV_RUN_NOWAIT);
    loop_run_until(loop, cond, ud, 60, what);
}

/* Loads `path` and starts its tool set; the fixture holds whatever start gave. */
static fixture *start(const char *path, bool all)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->http = fr_http_new(&f->loop);
    fr_error err = {0};
    int rc = fr_workflow_load(path, NULL, &f->wf, &err);
    if (rc != FR_OK)
        print_error("%s: %s\n", path, err.msg);
    assert_int_equal(rc, FR_OK);
    f->ts = fr_toolset_new(&f->loop, f->http, f->wf);
    fr_toolset_start(f->ts, all, on_ready, f);
    assert_false(f->ready); /* never from inside start */
    wait_for(&f->loop, is_ready, f, "the tool set to start");
    return f;
}

static void finish(fixture *f)
{
    fr_toolset_free(f->ts);
    fr_http_free(f->http);
    loop_drain_close(&f->loop, 10);
    fr_workflow_free(f->wf);
    free(f);
}

static long task_index(const fixture *f, const char *name)
{
    long t = fr_workflow_find_task(f->wf, name);
    assert_true(t >= 0);
    return t;
}

/* The wire name of display name `display` in task `t`'s definitions, by
 * its description (unique in the fixtures). */
static const char *wire_of(const fixture *f, size_t t, const char *desc)
{
    size_t i;
    const json_t *d;
    json_array_foreach(fr_toolset_defs(f->ts, t), i, d)
    {
        if (strcmp(json_string_value(json_object_get(d, "description")), desc) == 0)
            return json_string_value(json_object_get(d, "name"));
    }
    fail_msg("no tool described as '%s'", desc);
    return NULL;
}

/* Calls `wire` of task `t` with `args` (JSON text, or NULL) and waits. */
static void call(fixture *f, size_t t, const char *wire, const char *args, result *res)
{
    json_t *a = args ? json_loads(args, JSON_DECODE_ANY, NULL) : NULL;
    assert_true(!args || a);
    *res = (result){0};
    assert_int_equal(fr_toolset_call(f->ts, t, wire, a, on_result, res, NULL), FR_OK);
    json_decref(a);
    assert_false(res->done); /* never from inside the call */
    wait_for(&f->loop, is_done, res, "the tool call's result");
    assert_non_null(res->text);
}

static void suffix_of(const char *display, char out[8])
{
    uint64_t h = fr_fnv1a64(display, strlen(display), FR_FNV1A64_BASIS);
    snprintf(out, 8, "_%06" PRIx64, h & 0xffffff);
}

/* Each task gets exactly the tools its patterns (or its agent's) name, in
 * order, with definitions as fr_call.tools wants them. */
static void test_resolution(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    assert_int_equal(f->rc, FR_OK);
    size_t counter = task_index(f, "counter"), maker = task_index(f, "maker");
    size_t plain = task_index(f, "plain");
    assert_int_equal(fr_toolset_count(f->ts, counter), 1); /* its agent's */
    assert_int_equal(fr_toolset_count(f->ts, maker), 5);
    assert_int_equal(fr_toolset_count(f->ts, plain), 0);
    assert_null(fr_toolset_defs(f->ts, plain));
    const json_t *d = json_array_get(fr_toolset_defs(f->ts, counter), 0);
    assert_string_equal(json_string_value(json_object_get(d, "name")), "word_count");
    assert_string_equal(json_string_value(json_object_get(d, "description")),
                        "Counts the words of a text.");
    const json_t *props = json_object_get(json_object_get(d, "parameters"), "properties");
    assert_string_equal(json_string_value(json_object_get(json_object_get(props, "text"), "type")),
                        "string");
    assert_string_equal(wire_of(f, maker, "Creates a file of the workflow's folder."), "touch_it");
    json_t *all = fr_toolset_describe(f->ts);
    assert_int_equal(json_array_size(all), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(all, 2), "source")),
                        "command");
    assert_true(json_is_null(json_object_get(json_array_get(all, 0), "server")));
    json_decref(all);
    finish(f);
}

/* A 70-character name is cut to 64 with its hash; two that share their
 * first 57 characters stay apart. */
static void test_long_names(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    size_t maker = task_index(f, "maker");
    const char *x = wire_of(f, maker, "Seventy characters.");
    const char *y = wire_of(f, maker, "Seventy characters too.");
    char sx[8], sy[8];
    suffix_of(LONG_X, sx);
    suffix_of(LONG_Y, sy);
    assert_int_equal(strlen(x), 64);
    assert_int_equal(strlen(y), 64);
    assert_memory_equal(x, LONG_X, 57);
    assert_string_equal(x + 57, sx);
    assert_string_equal(y + 57, sy);
    assert_string_not_equal(x, y);
    result r;
    call(f, maker, y, "{}", &r);
    assert_false(r.is_error);
    assert_string_equal(r.text, "longer");
    assert_string_equal(r.name, LONG_Y); /* the report keeps the display name */
    free(r.text);
    finish(f);
}

/* A Lua tool's result arrives from the loop; the report's figures. */
static void test_lua_result(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    size_t counter = task_index(f, "counter");
    result r;
    call(f, counter, "word_count", "{\"text\":\"one two three\"}", &r);
    assert_false(r.is_error);
    assert_string_equal(r.text, "3");
    assert_string_equal(r.source, "lua");
    assert_string_equal(r.server, "");
    assert_int_equal(r.arg_bytes, strlen("{\"text\":\"one two three\"}"));
    assert_int_equal(r.result_bytes, 1);
    free(r.text);
    /* nil, "reason" is an error result the model reads. */
    call(f, task_index(f, "maker"), "fails", "{}", &r);
    assert_true(r.is_error);
    assert_non_null(strstr(r.text, "the disk is on fire"));
    free(r.text);
    finish(f);
}

/* Calls `wire` of task `t` with `args` and expects an error result whose
 * text holds `want`. */
static void expect_refusal(fixture *f, size_t t, const char *wire, const char *args,
                           const char *want)
{
    result r;
    call(f, t, wire, args, &r);
    assert_true(r.is_error);
    if (!strstr(r.text, want))
        fail_msg("'%s' lacks '%s'", r.text, want);
    free(r.text);
}

/* A name the task was not offered (one of another task's tools included)
 * is an error result, and nothing runs. */
static void test_refused(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    size_t counter = task_index(f, "counter");
    unlink(FIX "/made_by_refused");
    result r;
    call(f, counter, "touch_it", "{\"path\":\"made_by_refused\"}", &r);
    assert_true(r.is_error);
    assert_string_equal(r.text, "error: tool 'touch_it' was not offered to this task");
    assert_string_equal(r.name, "touch_it");
    assert_string_equal(r.source, "none");
    free(r.text);
    expect_refusal(f, counter, "rm_rf", "{}", "tool 'rm_rf' was not offered to this task");
    /* The display name is not a wire name either. */
    expect_refusal(f, task_index(f, "maker"), LONG_X, "{}", "was not offered to this task");
    assert_int_equal(access(FIX "/made_by_refused", F_OK), -1);
    finish(f);
}

/* Arguments that are not an object or fail the schema name the field, and
 * nothing runs. */
static void test_bad_arguments(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    size_t maker = task_index(f, "maker");
    unlink(FIX "/made_by_bad");
    expect_refusal(f, maker, "word_count", "{}", "missing required property 'text'");
    expect_refusal(f, maker, "word_count", "{\"text\": 42}", "$.text: expected a string");
    expect_refusal(f, maker, "touch_it", "{\"path\":\"made_by_bad\",\"mode\":\"x\"}",
                   "unexpected property 'mode'");
    expect_refusal(f, maker, "touch_it", "[\"made_by_bad\"]", "expected a JSON object");
    expect_refusal(f, maker, "touch_it", NULL, "expected a JSON object");
    assert_int_equal(access(FIX "/made_by_bad", F_OK), -1);
    finish(f);
}

/* A command tool runs the author's argv with the argument as one item. */
static void test_command(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    const char *made = FIX "/made by a command; echo x";
    unlink(made);
    result r;
    call(f, task_index(f, "maker"), "touch_it", "{\"path\":\"made by a command; echo x\"}", &r);
    assert_false(r.is_error);
    assert_non_null(strstr(r.text, "exit code 0"));
    assert_string_equal(r.source, "command");
    free(r.text);
    assert_int_equal(access(made, F_OK), 0);
    unlink(made);
    finish(f);
}

/* A call cancelled before its result never calls done. */
static void test_cancel(void **state)
{
    (void)state;
    fixture *f = start(FIX "/local.lua", false);
    result r = {0};
    json_t *a = json_pack("{s:s}", "text", "a b");
    fr_toolcall *c = NULL;
    assert_int_equal(
        fr_toolset_call(f->ts, task_index(f, "counter"), "word_count", a, on_result, &r, &c),
        FR_OK);
    json_decref(a);
    fr_toolset_cancel(f->ts, c);
    /* A call left in flight is cancelled by free, without its callback. */
    a = json_pack("{s:s}", "text", "a b");
    assert_int_equal(
        fr_toolset_call(f->ts, task_index(f, "counter"), "word_count", a, on_result, &r, NULL),
        FR_OK);
    json_decref(a);
    finish(f);
    assert_false(r.done);
}

static bool have_everything(void)
{
    if (access(EVERYTHING, R_OK) == 0)
        return true;
    print_message("server-everything is not installed (run tests/deps.sh): skipped\n");
    return false;
}

/* server-everything's tools by "ev.*": its echo's wire name collides with
 * the Lua tool "ev_echo", so both carry their hash; a call reaches the
 * server and its text comes back; describe says the revision. */
static void test_mcp_everything(void **state)
{
    (void)state;
    if (!have_everything()) {
        skip();
        return;
    }
    fixture *f = start(FIX "/mcp.lua", false);
    if (f->rc != FR_OK)
        print_error("start: %s\n", f->err.msg);
    assert_int_equal(f->rc, FR_OK);
    size_t all = task_index(f, "all"), one = task_index(f, "one");
    assert_true(fr_toolset_count(f->ts, all) > 5);
    assert_int_equal(fr_toolset_count(f->ts, one), 1);
    char se[8], sl[8];
    suffix_of("ev.echo", se);
    suffix_of("ev_echo", sl);
    char want_server[32], want_lua[32];
    snprintf(want_server, sizeof want_server, "ev_echo%s", se);
    snprintf(want_lua, sizeof want_lua, "ev_echo%s", sl);
    assert_string_equal(wire_of(f, all, "Echoes back the input string"), want_server);
    assert_string_equal(wire_of(f, all, "Not the server's echo."), want_lua);
    /* A plain name equal to another's hashed one: still three names. */
    assert_int_equal(fr_toolset_count(f->ts, task_index(f, "three")), 3);
    size_t three = task_index(f, "three");
    const char *w1 = wire_of(f, three, "Echoes back the input string");
    const char *w2 = wire_of(f, three, "Not the server's echo.");
    const char *w3 = wire_of(f, three, "A name that looks hashed.");
    assert_string_equal(w1, want_server);
    assert_memory_equal(w3, "ev_echo_6db0e5_", 15); /* the later one is hashed again */
    assert_string_not_equal(w1, w3);
    assert_string_not_equal(w2, w3);
    result r3;
    call(f, three, w3, "{}", &r3);
    assert_string_equal(r3.text, "look-alike");
    free(r3.text);
    /* Without the Lua tool there is no collision. */
    assert_string_equal(wire_of(f, one, "Echoes back the input string"), "ev_echo");
    /* The inputSchema is the parameters. */
    const json_t *d = json_array_get(fr_toolset_defs(f->ts, one), 0);
    assert_non_null(json_object_get(json_object_get(json_object_get(d, "parameters"), "properties"),
                                    "message"));
    result r;
    call(f, one, "ev_echo", "{\"message\":\"hello from the test\"}", &r);
    assert_false(r.is_error);
    assert_non_null(strstr(r.text, "hello from the test"));
    assert_string_equal(r.name, "ev.echo");
    assert_string_equal(r.source, "mcp");
    assert_string_equal(r.server, "ev");
    free(r.text);
    /* Checked against the server's schema before it is sent. */
    call(f, one, "ev_echo", "{\"message\": 7}", &r);
    assert_true(r.is_error);
    assert_non_null(strstr(r.text, "$.message: expected a string"));
    free(r.text);
    call(f, all, want_lua, "{}", &r);
    assert_string_equal(r.text, "lua echo");
    free(r.text);
    json_t *desc = fr_toolset_describe(f->ts);
    size_t i;
    const json_t *t;
    bool seen = false;
    json_array_foreach(desc, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), "ev.echo") == 0) {
            seen = true;
            assert_string_equal(json_string_value(json_object_get(t, "server")), "ev");
            const char *rev = json_string_value(json_object_get(t, "revision"));
            assert_true(strcmp(rev, "2025-11-25") == 0 || strcmp(rev, "2026-07-28") == 0);
        }
    }
    assert_true(seen);
    json_decref(desc);
    finish(f);
}

/* Two servers that each take two seconds to answer both start and list
 * their tools. They start at once (engine/toolset starts every server
 * before waiting for any); how long that takes is a timing, for a
 * benchmark, not for a pass/fail test on a loaded machine. */
static void test_mcp_parallel(void **state)
{
    (void)state;
    if (!have_everything()) {
        skip();
        return;
    }
    fixture *f = start(FIX "/mcp_two.lua", false);
    assert_int_equal(f->rc, FR_OK);
    assert_int_equal(fr_toolset_count(f->ts, 0), 2);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(fr_toolset_defs(f->ts, 0), 1), "name")),
        "two_echo");
    finish(f);
}

/* A set freed while its servers are still starting never calls ready, and
 * leaves no handle behind (the drain checks). */
static void test_free_while_starting(void **state)
{
    (void)state;
    if (!have_everything()) {
        skip();
        return;
    }
    fixture f = {0};
    assert_int_equal(uv_loop_init(&f.loop), 0);
    f.http = fr_http_new(&f.loop);
    fr_error err = {0};
    assert_int_equal(fr_workflow_load(FIX "/mcp_two.lua", NULL, &f.wf, &err), FR_OK);
    f.ts = fr_toolset_new(&f.loop, f.http, f.wf);
    fr_toolset_start(f.ts, false, on_ready, &f);
    uv_run(&f.loop, UV_RUN_NOWAIT);
    fr_toolset_free(f.ts);
    fr_http_free(f.http);
    loop_drain_close(&f.loop, 20);
    assert_false(f.ready);
    fr_workflow_free(f.wf);
}

/* A pattern naming no tool of the server fails start with the task's
 * file:line and the nearest name. */
static void test_mcp_typo(void **state)
{
    (void)state;
    if (!have_everything()) {
        skip();
        return;
    }
    fixture *f = start(FIX "/mcp_typo.lua", false);
    assert_int_equal(f->rc, FR_EWORKFLOW);
    assert_int_equal(f->err.line, 17);
    assert_non_null(strstr(f->err.source, "mcp_typo.lua"));
    assert_non_null(strstr(f->err.msg, "'ev.ech'"));
    assert_non_null(strstr(f->err.msg, "did you mean 'ev.echo'?"));
    finish(f);
}

/* A server that cannot start fails start with its error; a server no task
 * names is not started, unless every server is asked for. */
static void test_mcp_no_server(void **state)
{
    (void)state;
    fixture *f = start(FIX "/mcp_missing.lua", false);
    assert_int_equal(f->rc, FR_OK); /* only "idle", which no task names, is missing */
    assert_int_equal(fr_toolset_count(f->ts, 0), 1);
    finish(f);
    f = start(FIX "/mcp_missing.lua", true);
    assert_true(f->rc != FR_OK);
    assert_non_null(strstr(f->err.msg, "idle"));
    finish(f);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_GUARD_ARG) == 0)
        return fr_guard_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolution),    cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_lua_result),    cmocka_unit_test(test_refused),
        cmocka_unit_test(test_bad_arguments), cmocka_unit_test(test_command),
        cmocka_unit_test(test_cancel),        cmocka_unit_test(test_mcp_everything),
        cmocka_unit_test(test_mcp_parallel),  cmocka_unit_test(test_free_while_starting),
        cmocka_unit_test(test_mcp_typo),      cmocka_unit_test(test_mcp_no_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
