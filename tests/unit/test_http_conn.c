/* Unit tests of engine/http, connections and the life of a transfer: a
 * refused connection, no descriptors left, a connect timeout, a reset in
 * the middle of a body, cancelling and aborting from every callback, twenty
 * transfers at once, invalid requests and fr_http_free with transfers in
 * flight. The scripted server (tests/unit/support/http_server.h) runs on
 * the same libuv loop as the client, and every test ends with fr_http_free,
 * the loop run until empty and uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/http_server.h"

/* ---- tests ------------------------------------------------------------------ */

static void test_connect_refused(void **state)
{
    fx *f = *state;
    int port = free_port();

    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/json", port);
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_int_equal(r.res.status, 0);
    assert_false(r.error_null);
    assert_true(strlen(r.err) > 0);
    assert_int_equal(r.len, 0);
    rec_close(&r);
}

/* A socket that finds no descriptor (EMFILE) is a connection failure that
 * says so: no_fds is set and the message names the limit, so the engine
 * can tell it from a server that is not there. */
static void test_connect_no_fds(void **state)
{
    fx *f = *state;
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:9/json"); /* never reached */
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    rec r = {.f = f};
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    /* The lowest free descriptor becomes the limit: the next one fails. */
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit low = {.rlim_cur = (rlim_t)lowest, .rlim_max = saved.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL);
    bool done = rc == FR_OK && run_until(f, &f->ndone, 1);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(rc, FR_OK);
    assert_true(done);
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_true(r.res.no_fds);
    assert_non_null(strstr(r.err, "out of file descriptors"));
    rec_close(&r);

    /* A refused connection is not mistaken for one. */
    rec r2 = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r2, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(r2.res.rc, FR_ECONNECT);
    assert_false(r2.res.no_fds);
    rec_close(&r2);
}

static void test_connect_timeout(void **state)
{
    fx *f = *state;
    /* A listener whose accept queue (backlog 0) is full drops further SYNs,
     * so the next connect hangs until curl's connect timeout, which fires from
     * curl's timer, not from a socket. */
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof addr;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0 && filler >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&addr, sizeof addr), 0);

    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/json", ntohs(addr.sin_port));
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    fr_http_opts o = {.connect_timeout_ms = 200, .first_byte_timeout_ms = 3000};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, &o, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_int_equal(r.res.status, 0);
    assert_true(strlen(r.err) > 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 3000);
    close(filler);
    close(lfd);
    rec_close(&r);
}

static void test_reset_mid_body(void **state)
{
    fx *f = *state;
    rec r = {0};
    submit_opts(f, "/reset", NULL, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_EIO);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.res.bytes, 10);
    assert_string_equal(r.body, "0123456789");
    assert_true(strlen(r.err) > 0);
    rec_close(&r);
}

static void test_cancel(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec r = {0};

    /* Cancelled before the loop ever ran. */
    fr_xfer *x = submit_opts(f, "/never", NULL, &r);
    fr_http_cancel(f->h, x);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(live_handles(f), base);

    /* Cancelled while the server holds the request. */
    x = submit_opts(f, "/never", NULL, &r);
    assert_true(run_until(f, &f->s.requests, 1));
    assert_int_equal(fr_http_active(f->h), 1);
    assert_true(live_handles(f) > base);
    fr_http_cancel(f->h, x);
    assert_int_equal(fr_http_active(f->h), 0);
    /* curl dropped the connection: the server sees it close. */
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(live_handles(f), base);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(f->ndone, 0);
    rec_close(&r);
}

static void test_cancel_from_data(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec r = {.cancel_in_data = true};
    submit_opts(f, "/drip", NULL, &r);
    assert_true(run_until(f, &r.chunks, 1));
    assert_int_equal(fr_http_active(f->h), 0);
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(r.chunks, 1);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(live_handles(f), base);
    rec_close(&r);
}

static void test_cancel_other_from_data(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec a = {0}, b = {0};
    fr_xfer *xb = submit_opts(f, "/never", NULL, &b);
    assert_true(run_until(f, &f->s.requests, 1));
    a.data_cancels = xb;
    fr_xfer *xa = submit_opts(f, "/drip", NULL, &a);
    assert_true(run_until(f, &a.chunks, 1));
    assert_int_equal(fr_http_active(f->h), 1);
    /* b's connection goes although b itself never had anything to read. */
    assert_true(run_until(f, &f->s.closed, 1));
    assert_true(run_until(f, &a.chunks, 3)); /* a goes on */
    fr_http_cancel(f->h, xa);
    assert_true(run_until(f, &f->s.closed, 2));
    assert_int_equal(f->ndone, 0);
    assert_int_equal(live_handles(f), base);
    rec_close(&a);
    rec_close(&b);
}

static void test_done_cancels_other(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    fr_xfer *xb = submit_opts(f, "/never", NULL, &b);
    a.to_cancel = xb;
    submit_opts(f, "/json?a", NULL, &a);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(a.res.rc, FR_OK);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(b.ndone, 0);
    rec_close(&a);
    rec_close(&b);
}

static void test_abort_from_data(void **state)
{
    fx *f = *state;
    rec r = {.abort_with = FR_EPROTO};
    submit_opts(f, "/stream", NULL, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_EPROTO);
    assert_int_equal(r.chunks, 1);
    assert_int_equal(r.res.status, 200);
    assert_non_null(strstr(r.err, "malformed reply"));
    rec_close(&r);
}

static void test_twenty_concurrent(void **state)
{
    fx *f = *state;
    enum { N = 20 };
    rec r[N];
    memset(r, 0, sizeof r);
    /* The server answers none until all 20 wait at once: if anything queued
     * transfers, this would never complete. */
    f->s.gate_target = N;
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "/gate?id=%d", i);
        submit_opts(f, path, NULL, &r[i]);
    }
    assert_int_equal(fr_http_active(f->h), N);
    assert_true(run_until(f, &f->ndone, N));
    assert_int_equal(f->s.max_gate, N);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"ok\":true,\"path\":\"/gate?id=%d\"}", i);
        assert_int_equal(r[i].ndone, 1);
        assert_int_equal(r[i].res.rc, FR_OK);
        assert_string_equal(r[i].body, want);
        rec_close(&r[i]);
    }
    assert_int_equal(fr_http_connections(f->h), N);
    assert_int_equal(fr_http_active(f->h), 0);
}

static void test_invalid_requests(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    char good[96], ftp[] = "ftp://127.0.0.1/x", junk[] = "not a url", body[] = "{}";
    snprintf(good, sizeof good, "http://127.0.0.1:%d/json", f->s.port);
    char crlf[] = "X-Bad: a\r\nInjected: b", nocolon[] = "NoColon", spaced[] = "Bad Name: x";
    char *bad_headers[][1] = {{crlf}, {nocolon}, {spaced}, {NULL}};
    rec r = {.f = f};

    fr_request req = {.url = NULL, .body = body};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = ftp;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = junk;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = good;
    for (size_t i = 0; i < 4; i++) {
        req.headers = bad_headers[i];
        req.nheaders = 1;
        assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    }
    assert_int_equal(fr_http_submit(NULL, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(live_handles(f), base);

    /* A NULL body is an empty POST; a caller's Content-Type is kept. */
    char ct[] = "content-type: text/plain";
    char *hdrs[] = {ct};
    req.headers = hdrs;
    req.nheaders = 1;
    req.body = NULL;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(f->s.last_body_len, 0);
    assert_non_null(strstr(f->s.last_headers, "\r\ncontent-type: text/plain\r\n"));
    assert_null(strstr(f->s.last_headers, "application/json"));
    rec_close(&r);
}

static void test_free_with_transfers_in_flight(void **state)
{
    fx *f = *state;
    rec r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        submit_opts(f, "/never", NULL, &r[i]);
    assert_true(run_until(f, &f->s.requests, 3));
    fr_http_free(f->h);
    f->h = NULL;
    assert_true(run_until(f, &f->s.closed, 3));
    assert_int_equal(f->ndone, 0);
    for (int i = 0; i < 3; i++)
        rec_close(&r[i]);
}

static void test_free_from_done(void **state)
{
    fx *f = *state;
    rec a = {.free_in_done = true}, b = {0};
    submit_opts(f, "/never", NULL, &b);
    assert_true(run_until(f, &f->s.requests, 1));
    submit_opts(f, "/json?a", NULL, &a);
    assert_true(run_until(f, &f->ndone, 1));
    assert_null(f->h);
    /* Both connections close: b's by the cancel, a's with the cache. */
    assert_true(run_until(f, &f->s.closed, 2));
    assert_int_equal(a.ndone, 1);
    assert_int_equal(b.ndone, 0);
    rec_close(&a);
    rec_close(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server writes to clients that hung up */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connect_no_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_other_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_cancels_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twenty_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_transfers_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_done, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
