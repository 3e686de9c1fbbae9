/* engine/mcp against real MCP servers: @modelcontextprotocol/server-everything
 * over stdio and Streamable HTTP and @modelcontextprotocol/server-filesystem
 * over stdio (both speak 2025-11-25: the initialize handshake), and
 * tests/mcp/tiny_server.mjs (2026-07-28 only: server/discover, `_meta`;
 * paginated tools, errors, a crash, a slow tool) over stdio and HTTP. The
 * npm servers come from tests/mcp/node_modules (tests/deps.sh). main hands
 * FR_PROC_GUARD_ARG to the guard, as flowrun's does. */
#include "engine/http.h"
#include "engine/mcp/mcp.h"
#include "engine/proc.h"
#include "tests/unit/support/loop_harness.h"

#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define NM         "tests/mcp/node_modules/@modelcontextprotocol/"
#define EVERYTHING NM "server-everything/dist/index.js"
#define FILESYSTEM NM "server-filesystem/dist/index.js"
#define TINY       "tests/mcp/tiny_server.mjs"

typedef struct fixture {
    uv_loop_t loop;
    fr_http *http;
    fr_mcp_spec spec;
    char *argv[8];
    char *names[2], *envs[2];
    fr_mcp *m;
    bool ready;
    int rc;
    fr_error err;
    fr_proc *server; /* an HTTP server the test started */
    char port[16];
    bool server_gone;
    bool session_deleted; /* server-everything logged a session's DELETE */
    char cwd[PATH_MAX];
} fixture;

typedef struct call_box {
    bool done;
    fr_tool_result r;
} call_box;

static bool have_node(void)
{
    return system("command -v node >/dev/null 2>&1") == 0 && access(EVERYTHING, R_OK) == 0 &&
           access(FILESYSTEM, R_OK) == 0;
}

static int setup(void **state)
{
    if (!have_node()) {
        fprintf(stderr, "test_mcp: node or tests/mcp/node_modules missing (run tests/deps.sh): "
                        "skipped\n");
        *state = NULL;
        return 0;
    }
    fixture *f = calloc(1, sizeof *f);
    uv_loop_init(&f->loop);
    f->http = fr_http_new(&f->loop);
    f->spec.name = "tiny";
    f->spec.start_timeout_s = 30;
    f->spec.call_timeout_s = 30;
    f->spec.file = "test.lua";
    f->spec.line = 1;
    assert_non_null(getcwd(f->cwd, sizeof f->cwd));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    if (!f)
        return 0;
    fr_mcp_stop(f->m);
    fr_proc_free(f->server);
    fr_http_free(f->http);
    loop_drain_close(&f->loop, 10);
    free(f);
    return 0;
}

/* The fixture, or a skip when node is missing. */
static fixture *need(void **state)
{
    if (!*state)
        skip();
    return *state;
}

static void set_command(fixture *f, const char *const *argv)
{
    size_t n = 0;
    for (; argv[n]; n++)
        f->argv[n] = (char *)argv[n];
    f->argv[n] = NULL;
    f->spec.command = f->argv;
    f->spec.ncommand = n;
}

static void on_ready(void *ud, int rc, const fr_error *err)
{
    fixture *f = ud;
    f->ready = true;
    f->rc = rc;
    if (err)
        f->err = *err;
}

/* Starts the client on f->spec and waits for ready; returns its rc. */
static int start(fixture *f)
{
    f->m = fr_mcp_new(&f->loop, f->http, &f->spec, f->cwd);
    fr_mcp_start(f->m, on_ready, f);
    assert_false(f->ready); /* never from inside start */
    LOOP_RUN_UNTIL(&f->loop, f->ready, 60);
    return f->rc;
}

static void on_done(void *ud, fr_tool_result *r)
{
    call_box *b = ud;
    b->done = true;
    b->r = *r;
    *r = (fr_tool_result){0};
}

static void call(fixture *f, const char *tool, const char *args, double timeout_s, call_box *b)
{
    json_t *a = json_loads(args, 0, NULL);
    assert_non_null(a);
    *b = (call_box){0};
    assert_int_equal(fr_mcp_call_tool(f->m, tool, a, timeout_s, on_done, b, NULL), FR_OK);
    json_decref(a);
    assert_false(b->done);
}

/* Calls and waits; the result stays in b (fr_tool_result_close it). */
static void call_wait(fixture *f, const char *tool, const char *args, double timeout_s, call_box *b)
{
    call(f, tool, args, timeout_s, b);
    LOOP_RUN_UNTIL(&f->loop, b->done, 60);
}

static bool has_tool(const fixture *f, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(fr_mcp_tools(f->m), i,
                       t) if (strcmp(json_string_value(json_object_get(t, "name")), name) ==
                              0) return true;
    return false;
}

/* ---- an HTTP server of the test's own ---- */

static void server_err(void *ud, const char *data, size_t len)
{
    fixture *f = ud;
    const char *key = "listening on port ";
    char buf[512];
    snprintf(buf, sizeof buf, "%.*s", (int)len, data);
    char *p = strstr(buf, key);
    if (p && !f->port[0])
        snprintf(f->port, sizeof f->port, "%d", atoi(p + strlen(key)));
}

static void server_out(void *ud, const char *data, size_t len)
{
    fixture *f = ud;
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)len, data);
    if (strstr(buf, "session termination request"))
        f->session_deleted = true;
}

static void server_exit(void *ud, int code, int sig)
{
    ((fixture *)ud)->server_gone = true;
}

/* A free loopback port, for a server that takes its port from PORT. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &n), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void start_http_server(fixture *f, const char *const *argv, const char *const *env)
{
    fr_proc_opts o = {.argv = argv, .env = env};
    fr_error err = {0};
    assert_int_equal(
        fr_proc_spawn(&f->loop, &o, server_out, server_err, server_exit, f, &f->server, &err),
        FR_OK);
    LOOP_RUN_UNTIL(&f->loop, f->port[0] || f->server_gone, 30);
    assert_false(f->server_gone);
}

/* ---- the npm servers: 2025-11-25 ---- */

static void test_everything_stdio(void **state)
{
    fixture *f = need(state);
    f->spec.name = "every";
    set_command(f, (const char *[]){"node", EVERYTHING, "stdio", NULL});
    assert_int_equal(start(f), FR_OK);
    assert_string_equal(fr_mcp_revision(f->m), "2025-11-25");
    assert_true(has_tool(f, "echo"));
    assert_true(has_tool(f, "get-sum"));
    assert_true(has_tool(f, "trigger-long-running-operation"));
    json_t *echo = json_array_get(fr_mcp_tools(f->m), 0);
    assert_non_null(json_object_get(echo, "inputSchema"));

    /* Many at once, each answer matched to its call by id. */
    call_box b[3];
    call(f, "echo", "{\"message\": \"one\"}", 0, &b[0]);
    call(f, "get-sum", "{\"a\": 2, \"b\": 40}", 0, &b[1]);
    call(f, "echo", "{\"message\": \"three\"}", 0, &b[2]);
    LOOP_RUN_UNTIL(&f->loop, b[0].done && b[1].done && b[2].done, 30);
    assert_string_equal(b[0].r.text, "Echo: one");
    assert_string_equal(b[1].r.text, "The sum of 2 and 40 is 42.");
    assert_string_equal(b[2].r.text, "Echo: three");
    for (int i = 0; i < 3; i++) {
        assert_false(b[i].r.is_error);
        fr_tool_result_close(&b[i].r);
    }

    /* A long-running tool past its timeout: an error result, and the
     * server goes on serving. */
    call_box slow;
    call_wait(f, "trigger-long-running-operation", "{\"duration\": 30, \"steps\": 30}", 0.5, &slow);
    assert_true(slow.r.is_error);
    assert_string_equal(slow.r.text, "error: timed out after 0.5 s");
    assert_string_equal(slow.r.reason, "timed out after 0.5 s");
    fr_tool_result_close(&slow.r);

    /* Arguments the tool's schema refuses: what the server says. */
    call_box bad;
    call_wait(f, "get-sum", "{\"a\": \"x\"}", 0, &bad);
    assert_true(bad.r.is_error);
    assert_non_null(strstr(bad.r.text, "error"));
    fr_tool_result_close(&bad.r);

    call_box again;
    call_wait(f, "echo", "{\"message\": \"still here\"}", 0, &again);
    assert_string_equal(again.r.text, "Echo: still here");
    fr_tool_result_close(&again.r);
}

static void test_everything_http(void **state)
{
    fixture *f = need(state);
    char port[16], portenv[32], url[64];
    snprintf(port, sizeof port, "%d", free_port());
    snprintf(portenv, sizeof portenv, "PORT=%s", port);
    start_http_server(f, (const char *[]){"node", EVERYTHING, "streamableHttp", NULL},
                      (const char *[]){portenv, NULL});
    assert_string_equal(f->port, port);
    snprintf(url, sizeof url, "http://127.0.0.1:%s/mcp", port);
    f->spec.name = "every";
    f->spec.url = url;
    assert_int_equal(start(f), FR_OK);
    /* It refused server/discover (HTTP 400): the handshake, with a session. */
    assert_string_equal(fr_mcp_revision(f->m), "2025-11-25");
    assert_true(has_tool(f, "get-sum"));
    call_box b[2];
    call(f, "get-sum", "{\"a\": 1, \"b\": 2}", 0, &b[0]);
    call(f, "echo", "{\"message\": \"over http\"}", 0, &b[1]);
    LOOP_RUN_UNTIL(&f->loop, b[0].done && b[1].done, 30);
    assert_string_equal(b[0].r.text, "The sum of 1 and 2 is 3.");
    assert_string_equal(b[1].r.text, "Echo: over http");
    fr_tool_result_close(&b[0].r);
    fr_tool_result_close(&b[1].r);
    call_box slow;
    call_wait(f, "trigger-long-running-operation", "{\"duration\": 30, \"steps\": 30}", 0.3, &slow);
    assert_string_equal(slow.r.text, "error: timed out after 0.3 s");
    fr_tool_result_close(&slow.r);
    /* Stopping ends the session the server opened. */
    assert_false(f->session_deleted);
    fr_mcp_stop(f->m);
    f->m = NULL;
    LOOP_RUN_UNTIL(&f->loop, f->session_deleted, 10);
}

static void test_filesystem_stdio(void **state)
{
    fixture *f = need(state);
    char dir[] = "/tmp/test_mcp_fsXXXXXX", file[PATH_MAX], args[PATH_MAX + 64];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/hello.txt", dir);
    FILE *fp = fopen(file, "w");
    fputs("hello from the disk\n", fp);
    fclose(fp);
    f->spec.name = "fs";
    set_command(f, (const char *[]){"node", FILESYSTEM, dir, NULL});
    assert_int_equal(start(f), FR_OK);
    assert_string_equal(fr_mcp_revision(f->m), "2025-11-25");
    assert_true(has_tool(f, "read_text_file"));
    assert_true(has_tool(f, "list_directory"));
    call_box b;
    snprintf(args, sizeof args, "{\"path\": \"%s\"}", file);
    call_wait(f, "read_text_file", args, 0, &b);
    assert_false(b.r.is_error);
    assert_string_equal(b.r.text, "hello from the disk\n");
    fr_tool_result_close(&b.r);
    snprintf(args, sizeof args, "{\"path\": \"%s/missing.txt\"}", dir);
    call_wait(f, "read_text_file", args, 0, &b);
    assert_true(b.r.is_error); /* isError: the model reads why */
    assert_non_null(strstr(b.r.text, "missing.txt"));
    fr_tool_result_close(&b.r);
    unlink(file);
    rmdir(dir);
}

/* ---- the tiny server: 2026-07-28 ---- */

static void test_tiny_stdio(void **state)
{
    fixture *f = need(state);
    set_command(f, (const char *[]){"node", TINY, NULL});
    assert_int_equal(start(f), FR_OK);
    assert_string_equal(fr_mcp_revision(f->m), "2026-07-28");
    /* Three pages, every tool of each. */
    assert_int_equal(json_array_size(fr_mcp_tools(f->m)), 11);
    assert_true(has_tool(f, "echo"));
    assert_true(has_tool(f, "cancelled"));

    struct {
        const char *tool, *args, *text;
        bool is_error;
    } cases[] = {
        {"echo", "{\"text\": \"hi\"}", "echo: hi", false},
        {"add", "{\"a\": 2, \"b\": 3}", "5", false},
        {"fail", "{}", "the tool failed on purpose", true},
        {"rpc_error", "{}", "error: MCP error -32602: bad arguments for rpc_error", true},
        {"media", "{}",
         "[image: image/png, 6 bytes]\n[audio: audio/wav, 3 bytes]\n"
         "[resource: file:///notes.txt, text/plain, 9 bytes]\nthe notes",
         false},
        {"structured", "{}", "{\"answer\":42}", false},
        /* A server-to-client request flowrun does not support: refused. */
        {"ask", "{}", "client said: error -32601", false},
        {"nosuch", "{}", "error: MCP error -32602: Unknown tool: nosuch", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        call_box b;
        call_wait(f, cases[i].tool, cases[i].args, 0, &b);
        assert_string_equal(b.r.text, cases[i].text);
        assert_int_equal(b.r.is_error, cases[i].is_error);
        fr_tool_result_close(&b.r);
    }

    /* A timeout tells the server (notifications/cancelled). */
    call_box slow, seen;
    call_wait(f, "sleep", "{\"ms\": 20000}", 0.2, &slow);
    assert_string_equal(slow.r.text, "error: timed out after 0.2 s");
    fr_tool_result_close(&slow.r);
    call_wait(f, "cancelled", "{}", 0, &seen);
    json_t *ids = json_loads(seen.r.text, 0, NULL);
    assert_int_equal(json_array_size(ids), 1);
    json_decref(ids);
    fr_tool_result_close(&seen.r);

    /* A call cancelled by its caller: no callback, the server is told. */
    call_box never = {0};
    fr_mcp_call *c = NULL;
    json_t *a = json_pack("{s:i}", "ms", 20000);
    assert_int_equal(fr_mcp_call_tool(f->m, "sleep", a, 0, on_done, &never, &c), FR_OK);
    json_decref(a);
    fr_mcp_cancel(f->m, c);
    call_wait(f, "cancelled", "{}", 0, &seen);
    ids = json_loads(seen.r.text, 0, NULL);
    assert_int_equal(json_array_size(ids), 2);
    json_decref(ids);
    fr_tool_result_close(&seen.r);
    assert_false(never.done);
}

static void test_tiny_http_headers_env(void **state)
{
    fixture *f = need(state);
    start_http_server(f, (const char *[]){"node", TINY, "--http", NULL}, NULL);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%s/mcp", f->port);
    f->spec.url = url;
    f->names[0] = "Authorization";
    f->envs[0] = "TEST_MCP_TOKEN";
    f->spec.header_names = f->names;
    f->spec.header_envs = f->envs;
    f->spec.nheaders = 1;

    unsetenv("TEST_MCP_TOKEN");
    assert_int_equal(start(f), FR_ECONFIG);
    assert_non_null(strstr(f->err.msg, "TEST_MCP_TOKEN"));
    assert_non_null(strstr(f->err.msg, "Authorization"));
    fr_mcp_stop(f->m);
    f->ready = false;

    setenv("TEST_MCP_TOKEN", "Bearer s3cret-value", 1);
    assert_int_equal(start(f), FR_OK);
    assert_string_equal(fr_mcp_revision(f->m), "2026-07-28");
    assert_int_equal(json_array_size(fr_mcp_tools(f->m)), 11);
    call_box b;
    call_wait(f, "headers", "{}", 0, &b);
    assert_string_equal(b.r.text,
                        "{\"authorization\":\"Bearer s3cret-value\",\"name\":\"headers\"}");
    fr_tool_result_close(&b.r);
    call_wait(f, "add", "{\"a\": 20, \"b\": 22}", 0, &b);
    assert_string_equal(b.r.text, "42");
    fr_tool_result_close(&b.r);
    call_wait(f, "fail", "{}", 0, &b);
    assert_true(b.r.is_error);
    assert_string_equal(b.r.text, "the tool failed on purpose");
    fr_tool_result_close(&b.r);
    call_wait(f, "sleep", "{\"ms\": 20000}", 0.2, &b);
    assert_string_equal(b.r.text, "error: timed out after 0.2 s");
    fr_tool_result_close(&b.r);
    /* An HTTP error status: the call fails with what the server said. */
    call_wait(f, "http500", "{}", 0, &b);
    assert_true(b.r.is_error);
    assert_string_equal(b.r.text, "error: MCP error -32603: HTTP 500: internal failure");
    fr_tool_result_close(&b.r);
    unsetenv("TEST_MCP_TOKEN");
}

static void test_restarted_once(void **state)
{
    fixture *f = need(state);
    set_command(f, (const char *[]){"node", TINY, NULL});
    assert_int_equal(start(f), FR_OK);
    call_box b;
    call_wait(f, "crash", "{}", 0, &b);
    assert_true(b.r.is_error);
    assert_string_equal(b.r.reason,
                        "server 'tiny' stopped (exit code 3): tiny: crashing on purpose");
    fr_tool_result_close(&b.r);
    /* Restarted: the next call is answered. */
    call_wait(f, "echo", "{\"text\": \"back\"}", 0, &b);
    assert_false(b.r.is_error);
    assert_string_equal(b.r.text, "echo: back");
    fr_tool_result_close(&b.r);
    call_wait(f, "crash", "{}", 0, &b);
    assert_true(b.r.is_error);
    fr_tool_result_close(&b.r);
    /* Not again: calls fail at once, saying why. */
    call_wait(f, "echo", "{\"text\": \"gone\"}", 0, &b);
    assert_true(b.r.is_error);
    assert_string_equal(b.r.reason,
                        "server 'tiny' stopped again (exit code 3): tiny: crashing on purpose; it "
                        "was restarted once in this run, so its tools are unavailable");
    fr_tool_result_close(&b.r);
}

static void test_start_failures(void **state)
{
    fixture *f = need(state);
    set_command(f, (const char *[]){"node", TINY, "--die-at-start", NULL});
    assert_int_equal(start(f), FR_EMCP);
    assert_string_equal(f->err.msg, "MCP server 'tiny' exited during start (exit code 2): tiny: "
                                    "the configuration file is missing");
    fr_mcp_stop(f->m);
    f->ready = false;

    set_command(f, (const char *[]){"node", TINY, "--repeat-cursor", NULL});
    assert_int_equal(start(f), FR_EMCP);
    assert_string_equal(f->err.msg, "MCP server 'tiny' repeated the tools/list cursor 'page1'");
    fr_mcp_stop(f->m);
    f->ready = false;

    set_command(f, (const char *[]){"no-such-mcp-server-command", NULL});
    assert_int_equal(start(f), FR_ENOENT);
    assert_non_null(strstr(f->err.msg, "no-such-mcp-server-command"));
    fr_mcp_stop(f->m);
    f->ready = false;

    /* A command that never answers: the start timeout. */
    set_command(f, (const char *[]){"sleep", "30", NULL});
    f->spec.start_timeout_s = 0.3;
    assert_int_equal(start(f), FR_ETIMEDOUT);
    assert_non_null(strstr(f->err.msg, "did not start within 0.3 s"));
    fr_mcp_stop(f->m);
    f->ready = false;

    /* Nobody listening. */
    f->spec.command = NULL;
    f->spec.url = "http://127.0.0.1:1/mcp";
    f->spec.start_timeout_s = 10;
    assert_int_equal(start(f), FR_EMCP);
    assert_non_null(strstr(f->err.msg, "cannot reach http://127.0.0.1:1/mcp"));
}

/* A server that never answers server/discover still gets the handshake. */
static void test_discover_unanswered(void **state)
{
    fixture *f = need(state);
    set_command(f, (const char *[]){"node", TINY, "--legacy-silent", NULL});
    f->spec.start_timeout_s = 9; /* discover waits a third of it */
    assert_int_equal(start(f), FR_OK);
    assert_string_equal(fr_mcp_revision(f->m), "2025-11-25");
    assert_int_equal(json_array_size(fr_mcp_tools(f->m)), 2);
    call_box b;
    call_wait(f, "add", "{\"a\": 1, \"b\": 1}", 0, &b);
    assert_string_equal(b.r.text, "2");
    fr_tool_result_close(&b.r);
}

static void test_stop_with_calls_in_flight(void **state)
{
    fixture *f = need(state);
    set_command(f, (const char *[]){"node", TINY, NULL});
    assert_int_equal(start(f), FR_OK);
    call_box b[3];
    for (int i = 0; i < 3; i++)
        call(f, "sleep", "{\"ms\": 20000}", 0, &b[i]);
    fr_mcp_stop(f->m); /* no callback; every handle closes (teardown drains) */
    f->m = NULL;
    for (int i = 0; i < 3; i++)
        assert_false(b[i].done);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_PROC_GUARD_ARG) == 0)
        return fr_proc_guard_main(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_everything_stdio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_everything_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filesystem_stdio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiny_stdio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tiny_http_headers_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restarted_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discover_unanswered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_calls_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
