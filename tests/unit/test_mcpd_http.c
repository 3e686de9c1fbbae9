/* Unit test of the MCP server's Streamable HTTP transport
 * (engine/mcpd/http_serve.h) with the real server core over a real
 * loopback socket: sessions (given at initialize, required, unknown,
 * ended by DELETE), the 2026-07-28 headers checked against the body,
 * the bearer token, foreign Origins, malformed and oversized requests;
 * after each refusal the server still answers, and every handle closes. */

#include "engine/mcpd/http_serve.h"
#include "engine/mcpd/mcpd.h"

#include "tests/unit/support/sim_client.h"
#include "tests/unit/support/tmpdir.h"

#include <unistd.h>

typedef struct server {
    fixture *fx;
    fr_mcpd *d;
    fr_mcpd_http *h;
    int port;
    char dir[64];
    bool closed;
} server;

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

static bool is_true(void *ud)
{
    return *(bool *)ud;
}

static server *server_start(const char *addr, const char *token)
{
    server *s = fr_xcalloc(1, sizeof *s);
    s->fx = fixture_new();
    snprintf(s->dir, sizeof s->dir, "/tmp/test_mcpd_http.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    fr_mcpd_opts o = {.exe = "/bin/false", .work_dir = s->dir};
    fr_error err = {0};
    assert_int_equal(fr_mcpd_new(&s->fx->loop, &o, &s->d, &err), FR_OK);
    fr_mcpd_http_opts ho = {.addr = addr, .port = 0, .token = token};
    assert_int_equal(fr_mcpd_http_start(&s->fx->loop, s->d, &ho, &s->h, &err), FR_OK);
    s->port = fr_mcpd_http_port(s->h);
    assert_true(s->port > 0);
    return s;
}

static void server_stop(server *s)
{
    bool http_done = false, core_done = false;
    fr_mcpd_http_close(s->h, on_closed, &http_done);
    loop_run_until(&s->fx->loop, is_true, &http_done, GUARD_S, "the transport closed");
    fr_mcpd_shutdown(s->d, on_closed, &core_done);
    loop_run_until(&s->fx->loop, is_true, &core_done, GUARD_S, "the core shut down");
    fr_mcpd_free(s->d);
    fixture_free(s->fx); /* fails on a handle left open */
    assert_true(tmpdir_remove(s->dir));
    free(s);
}

static client *connect_to(server *s)
{
    client *c = fr_xcalloc(1, sizeof *c);
    fr_buf_init(&c->in, 0);
    uv_tcp_init(&s->fx->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", s->port, &addr);
    assert_int_equal(
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_client_connect), 0);
    RUN_UNTIL(s->fx, is_connected, c);
    assert_int_equal(c->connect_status, 0);
    return c;
}

/* Sends raw bytes on a fresh connection and returns the first response. */
static void raw(server *s, const char *text, response *r)
{
    client *c = connect_to(s);
    client_send_raw(c, text, strlen(text));
    client_read(s->fx, c, r);
    client_close(c);
}

static void post(server *s, const char *extra, const char *body, response *r)
{
    char *text = fr_xasprintf("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Accept: application/json, text/event-stream\r\n%s"
                              "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                              extra, strlen(body), body);
    raw(s, text, r);
    free(text);
}

static const char INIT[] =
    "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
    "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"t\",\"version\":\"1\"}}}";
static const char LIST[] = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}";

/* The JSON-RPC error code of a response body, 0 for none. */
static json_int_t error_code(const response *r)
{
    json_t *doc = body_json(r);
    json_int_t code = json_integer_value(json_object_get(json_object_get(doc, "error"), "code"));
    json_decref(doc);
    return code;
}

/* Posts `body` with the `extra` headers (both borrowed) and checks the
 * refusal: HTTP `status` with JSON-RPC error `code`. */
static void expect_refused(server *s, const char *extra, const char *body, int status,
                           json_int_t code)
{
    response r;
    post(s, extra, body, &r);
    assert_int_equal(r.status, status);
    assert_int_equal(error_code(&r), code);
    response_free(&r);
}

static size_t tool_count(const response *r)
{
    json_t *doc = body_json(r);
    size_t n = json_array_size(json_object_get(json_object_get(doc, "result"), "tools"));
    json_decref(doc);
    return n;
}

/* An initialize, answered with a session; returns its id (owned). */
static char *initialize(server *s)
{
    response r = {0};
    post(s, "", INIT, &r);
    assert_int_equal(r.status, 200);
    char *sid = header(r.head, "Mcp-Session-Id");
    assert_non_null(sid);
    assert_true(strlen(sid) >= 16);
    response_free(&r);
    return sid;
}

/* The server still serves: a whole session works. */
static void assert_serves(server *s)
{
    char *sid = initialize(s);
    char *extra = fr_xasprintf("Mcp-Session-Id: %s\r\n", sid);
    response r = {0};
    post(s, extra, LIST, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(tool_count(&r), 5);
    response_free(&r);
    free(extra);
    free(sid);
}

static void test_session_lifecycle(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    char *sid = initialize(s);
    char *extra = fr_xasprintf("Mcp-Session-Id: %s\r\n", sid);
    response r = {0};

    post(s, "", LIST, &r); /* no session header */
    assert_int_equal(r.status, 400);
    response_free(&r);
    post(s, "Mcp-Session-Id: 0123456789abcdef0123456789abcdef\r\n", LIST, &r);
    assert_int_equal(r.status, 404);
    response_free(&r);

    post(s, extra, LIST, &r);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.head, "Content-Type", "application/json"));
    assert_int_equal(tool_count(&r), 5);
    response_free(&r);

    char *badver = fr_xasprintf("%sMCP-Protocol-Version: 1900-01-01\r\n", extra);
    post(s, badver, LIST, &r); /* a revision the session cannot speak */
    assert_int_equal(r.status, 400);
    response_free(&r);
    free(badver);

    /* a notification is accepted with 202 and no body */
    post(s, extra, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(r.body_len, 0);
    response_free(&r);

    /* GET: no server-initiated stream */
    char *get = fr_xasprintf("GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", extra);
    raw(s, get, &r);
    assert_int_equal(r.status, 405);
    response_free(&r);
    free(get);

    char *del = fr_xasprintf("DELETE /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", extra);
    raw(s, del, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    raw(s, del, &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    free(del);
    post(s, extra, LIST, &r); /* the ended session is unknown */
    assert_int_equal(r.status, 404);
    response_free(&r);

    free(extra);
    free(sid);
    assert_serves(s);
    server_stop(s);
}

/* Sessions a client never ends: past 64 the one idle longest goes. */
static void test_session_cap(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    char *first = initialize(s);
    for (int i = 0; i < 64; i++)
        free(initialize(s));
    char *extra = fr_xasprintf("Mcp-Session-Id: %s\r\n", first);
    response r = {0};
    post(s, extra, LIST, &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    free(extra);
    free(first);
    assert_serves(s);
    server_stop(s);
}

static void test_keep_alive(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    char *sid = initialize(s);
    char *one = fr_xasprintf("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: %s\r\n"
                             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                             sid, strlen(LIST), LIST);
    client *c = connect_to(s);
    /* two requests in one write: answered in order on the same connection */
    char *two = fr_xasprintf("%s%s", one, one);
    client_send_raw(c, two, strlen(two));
    for (int i = 0; i < 2; i++) {
        response r = {0};
        client_read(s->fx, c, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(tool_count(&r), 5);
        response_free(&r);
    }
    client_close(c);
    free(two);
    free(one);
    free(sid);
    server_stop(s);
}

static void test_stateless_headers(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    static const char body[] =
        "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
        "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
        "\"io.modelcontextprotocol/clientCapabilities\":{}}}}";
    response r = {0};
    post(s, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n", body, &r);
    assert_int_equal(r.status, 200);
    assert_null(header(r.head, "Mcp-Session-Id"));
    assert_int_equal(tool_count(&r), 5);
    response_free(&r);

    expect_refused(s, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\n", body, 400,
                   -32020);
    expect_refused(s, "MCP-Protocol-Version: 2026-07-28\r\n", body, 400,
                   -32020); /* no Mcp-Method */
    expect_refused(s, "MCP-Protocol-Version: 2025-11-25\r\nMcp-Method: tools/list\r\n", body, 400,
                   -32020);

    static const char call[] =
        "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"spend\","
        "\"arguments\":{},\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":"
        "\"2026-07-28\",\"io.modelcontextprotocol/clientCapabilities\":{}}}}";
    expect_refused(
        s, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: run_task\r\n",
        call, 400, -32020);

    /* a request without its _meta is invalid params; an unknown method 404 */
    expect_refused(s, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/list\r\n", LIST, 400,
                   -32602);
    static const char nosuch[] =
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"no/such\",\"params\":{\"_meta\":{"
        "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
        "\"io.modelcontextprotocol/clientCapabilities\":{}}}}";
    expect_refused(s, "MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: no/such\r\n", nosuch, 404,
                   -32601);

    assert_serves(s);
    server_stop(s);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    response r = {0};
    raw(s, "GARBAGE\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    raw(s, "POST /mcp HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    raw(s, "POST /mcp HTTP/1.1\r\nContent-Length: abc\r\n\r\n", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    raw(s, "POST /mcp HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", &r);
    assert_int_equal(r.status, 413);
    response_free(&r);

    /* a head over the limit, and one with too many fields */
    fr_buf big;
    fr_buf_init(&big, 0);
    fr_buf_puts(&big, "POST /mcp HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 20000; i++)
        fr_buf_puts(&big, "a");
    fr_buf_puts(&big, "\r\n\r\n");
    raw(s, fr_buf_str(&big), &r);
    assert_int_equal(r.status, 431);
    response_free(&r);
    fr_buf_reset(&big);
    fr_buf_puts(&big, "POST /mcp HTTP/1.1\r\n");
    for (int i = 0; i < 150; i++)
        fr_buf_printf(&big, "X-%d: 1\r\n", i);
    fr_buf_puts(&big, "\r\n");
    raw(s, fr_buf_str(&big), &r);
    assert_int_equal(r.status, 431);
    response_free(&r);
    fr_buf_close(&big);

    expect_refused(s, "", "{not json", 400, -32700);
    raw(s, "POST /elsewhere HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);

    assert_serves(s);
    server_stop(s);
}

static void test_token(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", "s3cret-token");
    response r = {0};
    post(s, "", INIT, &r);
    assert_int_equal(r.status, 401);
    char *www = header(r.head, "WWW-Authenticate");
    assert_non_null(www);
    assert_non_null(strstr(www, "Bearer"));
    assert_null(strstr(r.head, "s3cret"));
    assert_null(strstr(r.body, "s3cret"));
    free(www);
    response_free(&r);
    post(s, "Authorization: Bearer s3cret-tokex\r\n", INIT, &r);
    assert_int_equal(r.status, 401);
    response_free(&r);
    post(s, "Authorization: Bearer s3cret\r\n", INIT, &r);
    assert_int_equal(r.status, 401);
    response_free(&r);
    post(s, "Authorization: Bearer s3cret-token\r\n", INIT, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    server_stop(s);
}

static void test_origin(void **state)
{
    (void)state;
    server *s = server_start("127.0.0.1", NULL);
    response r = {0};
    static const char *const refused[] = {"http://evil.example", "http://localhost.evil.example",
                                          "null", "http://127.0.0.1.evil:80"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char *extra = fr_xasprintf("Origin: %s\r\n", refused[i]);
        post(s, extra, INIT, &r);
        assert_int_equal(r.status, 403);
        response_free(&r);
        free(extra);
    }
    /* a name rebound to 127.0.0.1: the Host says so */
    raw(s, "DELETE /mcp HTTP/1.1\r\nHost: evil.example:8080\r\nMcp-Session-Id: 00\r\n\r\n", &r);
    assert_int_equal(r.status, 403);
    response_free(&r);
    raw(s, "DELETE /mcp HTTP/1.1\r\nHost: localhost:8080\r\nMcp-Session-Id: 00\r\n\r\n", &r);
    assert_int_equal(r.status, 404); /* past the check: no such session */
    response_free(&r);
    post(s, "Origin: http://localhost:6274\r\n", INIT, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    post(s, "Origin: http://[::1]:8080\r\n", INIT, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_serves(s);
    server_stop(s);
}

static void test_non_loopback_needs_token(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char dir[] = "/tmp/test_mcpd_http.XXXXXX";
    assert_non_null(mkdtemp(dir));
    fr_mcpd_opts o = {.exe = "/bin/false", .work_dir = dir};
    fr_error err = {0};
    fr_mcpd *d = NULL;
    assert_int_equal(fr_mcpd_new(&loop, &o, &d, &err), FR_OK);
    fr_mcpd_http *h = NULL;
    fr_mcpd_http_opts ho = {.addr = "0.0.0.0", .port = 0, .token = NULL};
    assert_int_equal(fr_mcpd_http_start(&loop, d, &ho, &h, &err), FR_EUSAGE);
    assert_null(h);
    assert_non_null(strstr(err.msg, "token"));
    ho.addr = "not-an-address";
    assert_int_equal(fr_mcpd_http_start(&loop, d, &ho, &h, &err), FR_EUSAGE);
    bool done = false;
    fr_mcpd_shutdown(d, on_closed, &done);
    loop_run_until(&loop, is_true, &done, GUARD_S, "the core shut down");
    fr_mcpd_free(d);
    loop_drain_close(&loop, GUARD_S);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_lifecycle),
        cmocka_unit_test(test_session_cap),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_stateless_headers),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_non_loopback_needs_token),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
