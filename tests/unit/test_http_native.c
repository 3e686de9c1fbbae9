/* Unit tests of engine/http on what a server may do to a connection and a
 * reply beyond the common case, written for the native HTTP/1.1 client
 * (http_native.c) and run on curl too (unit/test_http_native_curl, with
 * FLOWRUN_HTTP=curl): chunked replies with extensions and trailers; 204 and
 * 304 without a body; a 100 Continue skipped; Connection: close; a
 * keep-alive connection the server closes between requests; one it closes
 * on the next request unanswered (sent again once on a new connection) and
 * one that breaks after reply bytes (never sent again); a malformed status
 * line; retry-after-ms; a name resolved (localhost); the connection cap;
 * the proxy variables (a proxied URL goes to curl); the request head as
 * sent. The scripted server (tests/unit/support/http_server.h) runs on the
 * client's loop; every test ends with fr_http_free, the loop run until
 * empty and uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/http_server.h"

static bool on_curl(void)
{
    const char *m = getenv("FLOWRUN_HTTP");
    return m && strcmp(m, "curl") == 0;
}

/* Submits `path` and runs until it is done; the result is in *r. */
static void fetch(fx *f, const char *path, rec *r)
{
    int before = f->ndone;
    memset(r, 0, sizeof *r);
    submit_opts(f, path, NULL, r);
    assert_true(run_until(f, &f->ndone, before + 1));
    assert_int_equal(r->ndone, 1);
}

static void test_chunk_extensions_and_trailers(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/chunkext", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_string_equal(r.body, "hello,world!");
    assert_int_equal(r.res.bytes, 12);
    rec_close(&r);
    /* The connection serves the next request: the trailers were read. */
    fetch(f, "/json", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(fr_http_connections(f->h), 1);
    rec_close(&r);
}

static void test_no_body_replies(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/204", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 204);
    assert_int_equal(r.res.bytes, 0);
    assert_true(r.res.ttfb_ms < 0);
    rec_close(&r);
    /* A 304's Content-Length describes what it did not send. */
    fetch(f, "/304", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 304);
    assert_int_equal(r.res.bytes, 0);
    rec_close(&r);
    fetch(f, "/continue", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_string_equal(r.body, "{}");
    rec_close(&r);
    assert_int_equal(fr_http_connections(f->h), 1);
    assert_int_equal(f->s.accepted, 1);
}

static void test_connection_close(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/close", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_string_equal(r.body, "{}");
    rec_close(&r);
    fetch(f, "/json", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.requests, 2);
    assert_int_equal(fr_http_connections(f->h), 2);
}

/* The server closes an idle keep-alive connection: the next request goes
 * on a new one, without an error. */
static void test_closed_between_requests(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/linger-close", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_true(run_until(f, &f->s.closed, 1));
    fetch(f, "/json", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.requests, 2);
}

/* The server reads the next request on a reused connection and closes it
 * unanswered (its keep-alive ran out just then): the request goes once
 * more on a new connection. */
static void test_closed_before_answer_resent(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/drop-next", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    fetch(f, "/json?again", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_non_null(strstr(r.body, "/json?again"));
    rec_close(&r);
    assert_int_equal(f->s.requests, 3); /* dropped once, answered once */
    assert_int_equal(f->s.accepted, 2);
}

/* A reused connection that breaks after bytes of the reply came: the
 * request is not sent again (its reply may have had effects). */
static void test_no_resend_after_reply_bytes(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/json", &r);
    rec_close(&r);
    fetch(f, "/reset", &r);
    assert_int_equal(r.res.rc, FR_EIO);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.res.bytes, 10);
    assert_true(strlen(r.err) > 0);
    rec_close(&r);
    assert_int_equal(f->s.requests, 2);
    assert_int_equal(f->s.accepted, 1);
}

static void test_malformed_status_line(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/badstatus", &r);
    assert_int_equal(r.res.rc, FR_EIO);
    assert_int_equal(r.res.bytes, 0);
    assert_true(strlen(r.err) > 0);
    if (!on_curl()) {
        assert_int_equal(r.res.status, 0);
        assert_string_equal(r.err, "malformed reply: malformed status line");
    } else { /* FLOWRUN_HTTP=curl: curl's own words, so curl carried it */
        assert_null(strstr(r.err, "malformed reply"));
    }
    rec_close(&r);
    /* The connection is not used again. */
    fetch(f, "/json", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_int_equal(f->s.accepted, 2);
}

static void test_retry_after_ms(void **state)
{
    fx *f = *state;
    rec r;
    fetch(f, "/429ms", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 429);
    assert_true(r.res.retry_after_s > 1.49 && r.res.retry_after_s < 1.51);
    rec_close(&r);
}

/* Submits `path` on `host` (a name or literal with the server's port). */
static void fetch_at(fx *f, const char *host, const char *path, rec *r)
{
    char url[160], body[] = "{}";
    snprintf(url, sizeof url, "http://%s:%d%s", host, f->s.port, path);
    fr_request req = {.url = url, .body = body};
    int before = f->ndone;
    memset(r, 0, sizeof *r);
    r->f = f;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, r, &r->self), FR_OK);
    assert_true(run_until(f, &f->ndone, before + 1));
}

/* localhost is resolved (it may name ::1 first, where nothing listens:
 * each address is tried in turn), once: the second request reuses. */
static void test_name_resolved(void **state)
{
    fx *f = *state;
    rec r;
    fetch_at(f, "localhost", "/json?name", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_non_null(strstr(r.body, "/json?name"));
    rec_close(&r);
    fetch_at(f, "localhost", "/json?again", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_int_equal(f->s.accepted, 1);
    /* A name that does not resolve is a connection failure. */
    fetch_at(f, "no-such-host.invalid", "/json", &r);
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_false(r.res.no_fds);
    assert_non_null(strstr(r.err, "resolve"));
    rec_close(&r);
}

/* A name resolving when the engine is freed: the loop still ends clean. */
static void test_free_while_resolving(void **state)
{
    fx *f = *state;
    char url[160], body[] = "{}";
    snprintf(url, sizeof url, "http://localhost:%d/json", f->s.port);
    fr_request req = {.url = url, .body = body};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL), FR_OK);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    fr_http_free(f->h);
    f->h = NULL;
    assert_int_equal(r.ndone, 0);
}

/* With a cap of one connection, a request to another host closes the idle
 * connection to make room. */
static void test_connection_cap(void **state)
{
    fx *f = *state;
    fr_http_set_max_connections(f->h, 1);
    rec r;
    fetch_at(f, "127.0.0.1", "/json?a", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    fetch_at(f, "localhost", "/json?b", &r);
    assert_int_equal(r.res.rc, FR_OK);
    rec_close(&r);
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(f->s.accepted, 2);
    assert_int_equal(f->s.closed, 1);
}

/* A proxy variable sends plain http:// through the proxy (curl), unless
 * no_proxy names the host. */
static void test_proxy_variables(void **state)
{
    fx *f = *state;
    char proxy[64]; /* a port that was just free: the "proxy" refuses */
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", free_port());
    setenv("http_proxy", proxy, 1);
    unsetenv("no_proxy");
    unsetenv("NO_PROXY");
    rec r;
    fetch_at(f, "127.0.0.1", "/json?proxied", &r);
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_int_equal(f->s.requests, 0);
    rec_close(&r);
    setenv("no_proxy", "example.com, 127.0.0.1", 1);
    fetch_at(f, "127.0.0.1", "/json?direct", &r);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(f->s.requests, 1);
    rec_close(&r);
    unsetenv("http_proxy");
    unsetenv("no_proxy");
}

/* The head as sent: the method, the caller's lines in order, Host,
 * Content-Type and Content-Length; no Expect. */
static void test_request_head(void **state)
{
    fx *f = *state;
    char url[160], body[] = "{\"a\":1}";
    snprintf(url, sizeof url, "http://127.0.0.1:%d/echo#frag", f->s.port);
    char h1[] = "X-One: 1", h2[] = "x-api-key: sk-secret";
    char *headers[] = {h1, h2};
    fr_request req = {.url = url, .headers = headers, .nheaders = 2, .body = body};
    fr_http_opts o = {.method = "PUT"};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, &o, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_string_equal(r.body, "{\"a\":1}");
    const char *hd = f->s.last_headers;
    assert_true(strncmp(hd, "PUT /echo HTTP/1.1\r\n", 20) == 0);
    assert_non_null(strstr(hd, "\r\nX-One: 1\r\nx-api-key: sk-secret\r\n"));
    char host[64];
    snprintf(host, sizeof host, "\r\nHost: 127.0.0.1:%d\r\n", f->s.port);
    assert_non_null(strstr(hd, host));
    assert_non_null(find_ci(hd, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(find_ci(hd, "\r\nContent-Length: 7\r\n"));
    assert_null(find_ci(hd, "Expect:"));
    rec_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chunk_extensions_and_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_body_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_between_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closed_before_answer_resent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_resend_after_reply_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_status_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_ms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_resolving, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxy_variables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_head, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
