/* Unit tests of engine/mcpd, the MCP server core, driven through its
 * header: text in, the messages it sends captured. Both revisions'
 * discovery, tools/list, the JSON-RPC errors (each followed by a request
 * that still works), and tools/call with real children on a real loop:
 * the children are this binary (`exe`), which plays a flowrun that prints
 * a report and progress lines, fails to load, or runs until killed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/guard.h"
#include "engine/mcpd/mcpd.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/tmpdir.h"

#define WAIT_S 20.0

static char g_exe[4096];

typedef struct fx {
    uv_loop_t loop;
    char dir[64];
    fr_mcpd *d;
    fr_mcpd_peer *p;
    json_t *sent; /* every message sent, in order */
    int lasts;    /* how many had last = true */
    bool down;
    /* Wakes the loop every 10 ms, so a wait for what no handle reports (a
     * pid file written, a process gone) looks again soon rather than at
     * the watchdog. */
    uv_timer_t tick;
} fx;

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void capture(void *ud, void *tag, const json_t *msg, bool last)
{
    fx *f = ud;
    (void)tag;
    json_array_append_new(f->sent, json_deep_copy(msg));
    f->lasts += last;
}

static int make_fx(void **state, size_t inline_max)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->tick);
    uv_timer_start(&f->tick, on_tick, 10, 10);
    strcpy(f->dir, "/tmp/test_mcpd.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char *work = fr_xasprintf("%s/work", f->dir);
    const char *child_args[] = {"--sim"};
    fr_mcpd_opts o = {.exe = g_exe,
                      .child_args = child_args,
                      .nchild_args = 1,
                      .work_dir = work,
                      .inline_max = inline_max};
    fr_error err = {0};
    assert_int_equal(fr_mcpd_new(&f->loop, &o, &f->d, &err), FR_OK);
    free(work);
    f->sent = json_array();
    f->p = fr_mcpd_peer_new(f->d, capture, f);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return make_fx(state, 0);
}

static int setup_small_inline(void **state)
{
    return make_fx(state, 16);
}

static void on_down(void *ud)
{
    ((fx *)ud)->down = true;
}

static int teardown(void **state)
{
    fx *f = *state;
    fr_mcpd_peer_free(f->p);
    if (!f->down) {
        fr_mcpd_shutdown(f->d, on_down, f);
        LOOP_RUN_UNTIL(&f->loop, f->down, WAIT_S);
    }
    fr_mcpd_free(f->d);
    uv_close((uv_handle_t *)&f->tick, NULL);
    loop_drain_close(&f->loop, WAIT_S);
    json_decref(f->sent);
    assert_true(tmpdir_remove(f->dir));
    free(f);
    return 0;
}

static void feed(fx *f, const char *text)
{
    fr_mcpd_peer_input(f->p, text, strlen(text), NULL);
}

/* The last message sent. */
static const json_t *last_msg(const fx *f)
{
    size_t n = json_array_size(f->sent);
    assert_true(n > 0);
    return json_array_get(f->sent, n - 1);
}

static int error_code(const json_t *m)
{
    return (int)json_integer_value(json_object_get(json_object_get(m, "error"), "code"));
}

static const json_t *result(const json_t *m)
{
    const json_t *r = json_object_get(m, "result");
    assert_non_null(r);
    return r;
}

#define INIT_2025                                                                                  \
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"     \
    "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}"
#define META_2026 "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}"

/* tools/list answers with id 2 and five tools, each with an object schema. */
static void assert_tools_listed(fx *f)
{
    const json_t *tools = json_object_get(result(last_msg(f)), "tools");
    assert_int_equal(json_integer_value(json_object_get(last_msg(f), "id")), 2);
    assert_int_equal(json_array_size(tools), 5);
    const char *want[] = {"run_task", "run_workflow", "plan_workflow", "spend", "approve"};
    for (size_t i = 0; i < 5; i++) {
        const json_t *t = json_array_get(tools, i);
        assert_string_equal(json_string_value(json_object_get(t, "name")), want[i]);
        const json_t *s = json_object_get(t, "inputSchema");
        assert_string_equal(json_string_value(json_object_get(s, "type")), "object");
        assert_true(json_is_object(json_object_get(s, "properties")));
        assert_true(json_is_string(json_object_get(t, "description")));
    }
    const json_t *rt = json_object_get(json_array_get(tools, 0), "inputSchema");
    assert_string_equal(json_string_value(json_array_get(json_object_get(rt, "required"), 0)),
                        "prompt");
}

static void test_initialize_2025(void **state)
{
    fx *f = *state;
    assert_null(fr_mcpd_peer_revision(f->p));
    /* Before initialize, a request with no version is refused, not run. */
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/list\"}");
    assert_int_equal(error_code(last_msg(f)), -32600);
    feed(f, INIT_2025);
    const json_t *r = result(last_msg(f));
    assert_string_equal(json_string_value(json_object_get(r, "protocolVersion")), "2025-11-25");
    assert_true(json_is_object(json_object_get(json_object_get(r, "capabilities"), "tools")));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r, "serverInfo"), "name")), "flowrun");
    assert_true(json_is_string(json_object_get(r, "instructions")));
    assert_null(json_object_get(r, "resultType"));
    assert_string_equal(fr_mcpd_peer_revision(f->p), "2025-11-25");
    size_t before = json_array_size(f->sent);
    feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}");
    assert_int_equal(json_array_size(f->sent), before); /* a notification gets no answer */
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}");
    assert_string_equal(json_string_value(json_object_get(last_msg(f), "id")), "p");
    assert_int_equal(json_object_size(result(last_msg(f))), 0);
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
    assert_tools_listed(f);
}

static void test_discover_2026(void **state)
{
    fx *f = *state;
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"server/discover\",\"params\":{" META_2026
            "}}");
    const json_t *r = result(last_msg(f));
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r, "supportedVersions"), 0)),
        "2026-07-28");
    assert_string_equal(json_string_value(json_object_get(r, "resultType")), "complete");
    assert_true(json_is_object(json_object_get(json_object_get(r, "capabilities"), "tools")));
    assert_string_equal(fr_mcpd_peer_revision(f->p), "2026-07-28");
    /* No initialize: every request names its version. */
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}");
    assert_tools_listed(f);
    assert_string_equal(json_string_value(json_object_get(result(last_msg(f)), "resultType")),
                        "complete");
    /* A version flowrun does not speak: -32022 with the ones it does. */
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
            "\"io.modelcontextprotocol/protocolVersion\":\"2099-01-01\"}}}");
    const json_t *e = json_object_get(last_msg(f), "error");
    assert_int_equal(error_code(last_msg(f)), -32022);
    const json_t *data = json_object_get(e, "data");
    assert_string_equal(json_string_value(json_array_get(json_object_get(data, "supported"), 0)),
                        "2026-07-28");
    assert_string_equal(json_string_value(json_object_get(data, "requested")), "2099-01-01");
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}");
    assert_tools_listed(f);
}

/* Each bad message gets its error, and the next request still works. */
static void test_errors_survived(void **state)
{
    fx *f = *state;
    struct {
        const char *text;
        int code;
        bool id_null;
    } cases[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":1,", -32700, true},
        {"not json at all", -32700, true},
        /* jansson's message quotes the bytes near the error: here not UTF-8 */
        {"{\"jsonr\\"
         "\xdd\x92\x9a"
         "thod\":a0\x1c"
         "\xe0"
         "@ist\"}",
         -32700, true},
        {"[]", -32600, true},
        {"{\"jsonrpc\":\"2.0\",\"id\":5}", -32600, false},
        {"{\"jsonrpc\":\"1.0\",\"id\":5,\"method\":\"ping\"}", -32600, false},
        {"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"ping\"}", -32600, true},
        {"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resources/list\",\"params\":{" META_2026 "}}",
         -32601, false},
        {"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"nope\","
         "\"arguments\":{}," META_2026 "}}",
         -32602, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t before = json_array_size(f->sent);
        feed(f, cases[i].text);
        assert_int_equal(json_array_size(f->sent), before + 1);
        const json_t *m = last_msg(f);
        if (error_code(m) != cases[i].code)
            fail_msg("case %zu (%s): code %d, want %d", i, cases[i].text, error_code(m),
                     cases[i].code);
        assert_true(json_is_string(json_object_get(json_object_get(m, "error"), "message")));
        if (cases[i].id_null)
            assert_true(json_is_null(json_object_get(m, "id")));
        else
            assert_int_equal(json_integer_value(json_object_get(m, "id")), 5);
        feed(f,
             "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}");
        assert_tools_listed(f);
    }
}

/* tools/call with `args` (JSON text) for tool `name`, 2026-07-28, id 7,
 * a progress token when `progress`; runs the loop to its response. */
static const json_t *call(fx *f, const char *name, const char *args, bool progress)
{
    char *text = fr_xasprintf("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":"
                              "{\"name\":\"%s\",\"arguments\":%s,\"_meta\":{\"io."
                              "modelcontextprotocol/protocolVersion\":\"2026-07-28\"%s}}}",
                              name, args, progress ? ",\"progressToken\":\"tok\"" : "");
    int lasts = f->lasts;
    feed(f, text);
    free(text);
    LOOP_RUN_UNTIL(&f->loop, f->lasts > lasts, WAIT_S);
    const json_t *m = last_msg(f);
    assert_int_equal(json_integer_value(json_object_get(m, "id")), 7);
    return result(m);
}

static const char *text_of(const json_t *r)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r, "content"), 0), "text"));
}

static void test_tool_errors_are_results(void **state)
{
    fx *f = *state;
    /* Arguments the schema refuses, before any child starts. */
    const json_t *r = call(f, "run_task", "{}", false);
    assert_true(json_is_true(json_object_get(r, "isError")));
    assert_non_null(strstr(text_of(r), "'prompt' is required"));
    r = call(f, "run_task", "{\"prompt\":\"x\",\"complexity\":7}", false);
    assert_true(json_is_true(json_object_get(r, "isError")));
    assert_non_null(strstr(text_of(r), "complexity"));
    r = call(f, "approve", "{\"workflow\":\"w.lua\",\"task\":\"t\",\"decision\":\"maybe\"}", false);
    assert_true(json_is_true(json_object_get(r, "isError")));
    /* A workflow that does not load: the child's message, isError. */
    r = call(f, "run_workflow", "{\"path\":\"broken.lua\"}", false);
    assert_true(json_is_true(json_object_get(r, "isError")));
    assert_non_null(strstr(text_of(r), "broken.lua:3: syntax error near 'end'"));
    assert_non_null(strstr(text_of(r), "exited with 65"));
    /* Still serving. */
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}");
    assert_tools_listed(f);
}

/* The fake child's report: design -> code, code's output 40 bytes. */
static void test_run_workflow_result_and_progress(void **state)
{
    fx *f = *state;
    const json_t *r = call(f, "run_workflow",
                           "{\"path\":\"ok.lua\",\"vars\":{\"n\":3},\"tasks\":[\"code\"]}", true);
    assert_false(json_is_true(json_object_get(r, "isError")));
    assert_string_equal(json_string_value(json_object_get(r, "resultType")), "complete");
    const json_t *sc = json_object_get(r, "structuredContent");
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "ok");
    const json_t *tasks = json_object_get(sc, "tasks");
    assert_int_equal(json_array_size(tasks), 2);
    const json_t *t0 = json_array_get(tasks, 0);
    assert_string_equal(json_string_value(json_object_get(t0, "endpoint")), "local-qwen");
    assert_string_equal(json_string_value(json_object_get(t0, "tier")), "local");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t0, "tokens"), "output")),
                     20);
    /* Only the final task's output, and the design's is not repeated. */
    const json_t *outs = json_object_get(sc, "outputs");
    assert_int_equal(json_object_size(outs), 1);
    assert_string_equal(json_string_value(json_object_get(json_object_get(outs, "code"), "text")),
                        "int main(void) { return 0; } /* 40 b */");
    assert_null(strstr(text_of(r), "design text"));
    /* The fake child exits 71 (no report: isError) unless it got --task code
     * and --var n=3, and 70 unless it got the server's --sim. */
    /* Two progress notifications, before the response, from its task lines. */
    size_t n = json_array_size(f->sent);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *m = json_array_get(f->sent, i);
        const char *method = json_string_value(json_object_get(m, "method"));
        if (!method || strcmp(method, "notifications/progress") != 0)
            continue;
        const json_t *p = json_object_get(m, "params");
        seen++;
        assert_string_equal(json_string_value(json_object_get(p, "progressToken")), "tok");
        assert_int_equal(json_integer_value(json_object_get(p, "progress")), seen);
        assert_int_equal(json_integer_value(json_object_get(p, "total")), 2);
        if (seen == 1)
            assert_string_equal(json_string_value(json_object_get(p, "message")),
                                "design ok on local-qwen");
    }
    assert_int_equal(seen, 2);
}

static void test_long_output_is_a_path(void **state)
{
    fx *f = *state;
    const json_t *r = call(f, "run_workflow", "{\"path\":\"ok.lua\"}", false);
    const json_t *o = json_object_get(
        json_object_get(json_object_get(r, "structuredContent"), "outputs"), "code");
    assert_null(json_object_get(o, "text"));
    const char *file = json_string_value(json_object_get(o, "file"));
    assert_non_null(file);
    assert_non_null(strstr(file, "/work/out-"));
    assert_non_null(strstr(file, "/code.txt"));
    assert_int_equal(json_integer_value(json_object_get(o, "bytes")),
                     strlen("int main(void) { return 0; } /* 40 b */"));
}

static void test_run_task_writes_a_safe_workflow(void **state)
{
    fx *f = *state;
    const json_t *r = call(f, "run_task",
                           "{\"prompt\":\"say \\\"hi\\\" ]] {{x}} \\\\ \\n end\",\"system\":\"s\","
                           "\"complexity\":0.2,\"private\":true,\"max_tokens\":9,"
                           "\"schema\":{\"type\":\"object\",\"required\":[\"a\"]}}",
                           false);
    assert_false(json_is_true(json_object_get(r, "isError")));
    /* The fake child checked the workflow's text and echoed it back as the output. */
    const char *out = json_string_value(json_object_get(
        json_object_get(json_object_get(json_object_get(r, "structuredContent"), "outputs"),
                        "code"),
        "text"));
    assert_non_null(out);
    assert_non_null(strstr(out, "prompt = function() return \"say \\034hi\\034 ]] {{x}} \\092 "
                                "\\010 end\" end"));
    assert_non_null(strstr(out, "private = true"));
    assert_non_null(strstr(out, "max_tokens = 9"));
    assert_non_null(
        strstr(out, "schema = {[\"type\"] = \"object\", [\"required\"] = {\"a\", }, }"));
}

static bool pid_alive(int pid)
{
    return kill(pid, 0) == 0;
}

static bool read_pid(const char *path, int *pid)
{
    FILE *pf = fopen(path, "r");
    if (pf) {
        if (fscanf(pf, "%d", pid) != 1)
            *pid = 0;
        fclose(pf);
    }
    return *pid > 0;
}

static void test_cancel_stops_the_child(void **state)
{
    fx *f = *state;
    setenv("TEST_MCPD_DIR", f->dir, 1);
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":"
            "\"run_workflow\",\"arguments\":{\"path\":\"slow.lua\"}," META_2026 "}}");
    /* The child writes its pid where the test can read it. */
    char *pidfile = fr_xasprintf("%s/slow.pid", f->dir);
    int pid = 0;
    LOOP_RUN_UNTIL(&f->loop, read_pid(pidfile, &pid), WAIT_S);
    assert_true(pid_alive(pid));
    size_t before = json_array_size(f->sent);
    feed(f, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{"
            "\"requestId\":8,\"reason\":\"user\"}}");
    LOOP_RUN_UNTIL(&f->loop, !pid_alive(pid), WAIT_S);
    /* A few more turns: no response comes for a cancelled request. */
    loop_spin(&f->loop, 20);
    assert_int_equal(json_array_size(f->sent), before);
    free(pidfile);
}

/* Starts slow.lua's run with tag `tag` and returns its child's pid. */
static int start_slow(fx *f, void *tag)
{
    setenv("TEST_MCPD_DIR", f->dir, 1);
    char *pidfile = fr_xasprintf("%s/slow.pid", f->dir);
    unlink(pidfile);
    const char *text =
        "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{"
        "\"name\":\"run_workflow\",\"arguments\":{\"path\":\"slow.lua\"}," META_2026 "}}";
    fr_mcpd_peer_input(f->p, text, strlen(text), tag);
    int pid = 0;
    LOOP_RUN_UNTIL(&f->loop, read_pid(pidfile, &pid), WAIT_S);
    free(pidfile);
    assert_true(pid_alive(pid));
    return pid;
}

/* A transport that lost a request's stream drops its tag: the child stops,
 * nothing more goes out with that tag, and the other requests go on. */
static void test_drop_tag_stops_its_call(void **state)
{
    fx *f = *state;
    static char tag_a, tag_b;
    int pid = start_slow(f, &tag_a);
    size_t before = json_array_size(f->sent);
    fr_mcpd_peer_drop(f->p, &tag_b); /* another tag: nothing happens */
    loop_spin(&f->loop, 20);
    assert_true(pid_alive(pid));
    fr_mcpd_peer_drop(f->p, &tag_a);
    LOOP_RUN_UNTIL(&f->loop, !pid_alive(pid), WAIT_S);
    loop_spin(&f->loop, 20);
    assert_int_equal(json_array_size(f->sent), before);
    feed(f, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{" META_2026 "}}");
    assert_tools_listed(f);
}

/* Shutdown with a call in flight: done comes once its child has ended. */
static void test_shutdown_ends_the_children(void **state)
{
    fx *f = *state;
    int pid = start_slow(f, NULL);
    fr_mcpd_shutdown(f->d, on_down, f); /* frees the peer too */
    f->p = NULL;
    assert_false(f->down);
    LOOP_RUN_UNTIL(&f->loop, f->down, WAIT_S);
    assert_false(pid_alive(pid));
}

/* ---- the fake child ------------------------------------------------------ */

static int fake_report(const char *code_text)
{
    fprintf(stderr, "flowrun: run: tasks=2 status=started\n");
    fprintf(stderr, "flowrun: sched: task=design status=ok endpoint=local-qwen tier=local\n");
    fprintf(stderr, "flowrun: tool: task=code tool=fs.read status=ok ms=1\n");
    fprintf(stderr, "flowrun: sched: task=code status=ok endpoint=local-qwen tier=local\n");
    json_t *rep = json_pack(
        "{s:s, s:i, s:f, s:[{s:s, s:s, s:[], s:s, s:s, s:f, s:{s:i, s:i}, s:s, s:n},"
        "{s:s, s:s, s:[s], s:s, s:s, s:f, s:{s:i, s:i}, s:s, s:n}]}",
        "status", "ok", "exit_code", 0, "cost_usd", 0.0, "tasks", "name", "design", "status", "ok",
        "deps", "endpoint", "local-qwen", "tier", "local", "cost_usd", 0.0, "tokens", "input", 10,
        "output", 20, "output", "design text", "json", "name", "code", "status", "ok", "deps",
        "design", "endpoint", "local-qwen", "tier", "local", "cost_usd", 0.0, "tokens", "input", 30,
        "output", 40, "output", code_text, "json");
    char *s = json_dumps(rep, JSON_INDENT(2));
    puts(s);
    free(s);
    json_decref(rep);
    return 0;
}

/* Plays `flowrun WORKFLOW --json --progress ...`: argv[1] the workflow. */
static int fake_child(int argc, char **argv)
{
    const char *wf = argv[1];
    bool sim = false, task = false, var = false;
    for (int i = 2; i < argc; i++) {
        sim |= strcmp(argv[i], "--sim") == 0;
        task |= strcmp(argv[i], "--task") == 0 && i + 1 < argc && strcmp(argv[i + 1], "code") == 0;
        var |= strcmp(argv[i], "--var") == 0 && i + 1 < argc && strcmp(argv[i + 1], "n=3") == 0;
    }
    if (!sim)
        return 70; /* the server's child options must reach every run */
    if (strcmp(wf, "broken.lua") == 0) {
        fprintf(stderr, "flowrun: broken.lua:3: syntax error near 'end'\n");
        return 65;
    }
    if (strcmp(wf, "slow.lua") == 0) {
        const char *dir = getenv("TEST_MCPD_DIR");
        char *path = fr_xasprintf("%s/slow.pid", dir ? dir : "/tmp");
        FILE *pf = fopen(path, "w");
        fprintf(pf, "%d\n", (int)getpid());
        fclose(pf);
        free(path);
        for (;;)
            pause();
    }
    if (strcmp(wf, "ok.lua") == 0) {
        bool asked = false;
        for (int i = 2; i < argc; i++)
            asked |= strcmp(argv[i], "--task") == 0;
        if (asked && !(task && var))
            return 71;
        return fake_report("int main(void) { return 0; } /* 40 b */");
    }
    if (strstr(wf, "/run_task-")) {
        FILE *in = fopen(wf, "r");
        char text[4096] = "";
        size_t n = in ? fread(text, 1, sizeof text - 1, in) : 0;
        text[n] = '\0';
        if (in)
            fclose(in);
        return fake_report(text);
    }
    return 72;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_GUARD_ARG) == 0)
        return fr_guard_main(argc, argv);
    if (argc > 2 && strstr(argv[1], ".lua"))
        return fake_child(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    ssize_t n = readlink("/proc/self/exe", g_exe, sizeof g_exe - 1);
    assert_true(n > 0);
    g_exe[n] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_initialize_2025, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discover_2026, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_survived, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tool_errors_are_results, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_workflow_result_and_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_output_is_a_path, setup_small_inline, teardown),
        cmocka_unit_test_setup_teardown(test_run_task_writes_a_safe_workflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_stops_the_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drop_tag_stops_its_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_ends_the_children, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
