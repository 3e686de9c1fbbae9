/* Unit tests of engine/http, what a transfer delivers: a JSON reply intact,
 * a stream in pieces, a chained transfer from a done callback, Retry-After,
 * the idle, first-byte and total timeouts and the size cap. The scripted
 * server (tests/unit/support/http_server.h) runs on the same libuv loop as
 * the client, and every test ends with fr_http_free, the loop run until
 * empty and uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/http_server.h"

/* ---- tests ------------------------------------------------------------------ */

static void test_json_reply_intact(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Large enough that curl would otherwise ask for 100-continue. */
    size_t n = 1200 * 1024;
    char *body = fr_xmalloc(n + 1);
    memset(body, 'a', n);
    memcpy(body, "{\"p\":\"", 6);
    memcpy(body + n - 2, "\"}", 2);
    body[n] = '\0';
    submit_body(f, "/echo", NULL, &r, body);
    assert_int_equal(fr_http_active(f->h), 1);
    assert_true(run_until(f, &f->ndone, 1));

    assert_int_equal(r.res.rc, FR_OK);
    assert_true(r.error_null);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.data_status, 200);
    assert_true(r.res.retry_after_s == -1);
    assert_int_equal(r.len, n);
    assert_int_equal(r.res.bytes, n);
    assert_memory_equal(r.body, body, n);
    assert_true(r.res.ttfb_ms >= 0);
    assert_true(r.res.total_ms >= r.res.ttfb_ms);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(fr_http_connections(f->h), 1);

    /* What went on the wire. */
    assert_string_equal(f->s.last_method, "POST");
    assert_int_equal(f->s.last_body_len, n);
    assert_memory_equal(f->s.last_body, body, n);
    assert_non_null(strstr(f->s.last_headers, "\r\nX-Test: yes\r\n"));
    assert_non_null(strstr(f->s.last_headers, "\r\nContent-Type: application/json\r\n"));
    assert_null(find_ci(f->s.last_headers, "\r\nExpect:"));
    assert_null(find_ci(f->s.last_headers, "\r\nAccept-Encoding:"));
    free(body);
    rec_close(&r);
}

static void test_stream_in_pieces(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Deadlines that the stream keeps meeting: the first byte comes within
     * 2 s and pieces come every 20 ms, so no gap reaches 100 ms although the
     * whole stream takes longer than that: the idle deadline moves on. */
    fr_http_opts o = {.first_byte_timeout_ms = 2000, .idle_timeout_ms = 100};
    submit_opts(f, "/stream", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_string_equal(r.body, "piece-0;piece-1;piece-2;piece-3;piece-4;");
    assert_true(r.chunks >= 3); /* pieces 20 ms apart arrive as separate writes */
    assert_true(r.res.ttfb_ms >= 0);
    assert_true(r.res.total_ms > r.res.ttfb_ms);
    rec_close(&r);
}

static void test_keepalive_chain_from_done(void **state)
{
    fx *f = *state;
    rec r = {.chain_left = 4};
    submit_opts(f, "/json?chain", NULL, &r);
    assert_true(run_until(f, &f->ndone, 5));
    assert_int_equal(r.ndone, 5);
    assert_int_equal(r.res.rc, FR_OK);
    assert_string_equal(r.body, "{\"ok\":true,\"path\":\"/json?chain\"}");
    /* The finished transfer no longer counts when done runs. */
    assert_int_equal(r.active_in_done, 0);
    assert_int_equal(fr_http_active(f->h), 0);
    /* Five sequential requests, one connection. */
    assert_int_equal(f->s.requests, 5);
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(fr_http_connections(f->h), 1);
    rec_close(&r);
}

static void test_retry_after(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    submit_opts(f, "/429", NULL, &a);
    submit_opts(f, "/503date", NULL, &b);
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(a.res.rc, FR_OK);
    assert_int_equal(a.res.status, 429);
    assert_true(a.res.retry_after_s == 2.0);
    assert_string_equal(a.body, "{\"error\":\"rate limited\"}");
    assert_int_equal(b.res.rc, FR_OK);
    assert_int_equal(b.res.status, 503);
    assert_true(b.res.retry_after_s >= 8 && b.res.retry_after_s <= 10);
    rec_close(&a);
    rec_close(&b);
}

static void test_idle_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.idle_timeout_ms = 200, .total_timeout_ms = 4000};
    submit_opts(f, "/silent", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "stream idle for 200 ms");
    assert_int_equal(r.res.status, 200); /* the headers did arrive */
    assert_int_equal(r.res.bytes, 0);
    assert_true(r.res.ttfb_ms < 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 2000);
    assert_int_equal(fr_http_active(f->h), 0);
    rec_close(&r);
}

static void test_first_byte_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.first_byte_timeout_ms = 200, .idle_timeout_ms = 100};
    submit_opts(f, "/never", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "no first byte after 200 ms");
    assert_int_equal(r.res.status, 0);
    assert_true(r.res.ttfb_ms < 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 2000);
    rec_close(&r);
}

static void test_total_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.idle_timeout_ms = 200, .total_timeout_ms = 300};
    submit_opts(f, "/drip", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "total timeout of 300 ms exceeded");
    assert_int_equal(r.res.status, 200);
    assert_true(r.res.bytes > 0);
    assert_int_equal(r.res.bytes, r.len);
    rec_close(&r);
}

static void test_too_big(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    fr_http_opts o = {.max_response = 16384};
    submit_opts(f, "/huge", &o, &a);   /* no length: stopped by the write callback */
    submit_opts(f, "/hugecl", &o, &b); /* known length: stopped by curl */
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(a.res.rc, FR_ETOOBIG);
    assert_true(a.res.bytes <= 16384);
    assert_int_equal(a.res.bytes, a.len);
    assert_string_equal(a.err, "reply larger than 16384 bytes");
    assert_int_equal(b.res.rc, FR_ETOOBIG);
    assert_true(b.res.bytes <= 16384);
    assert_string_equal(b.err, "reply larger than 16384 bytes");
    rec_close(&a);
    rec_close(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server writes to clients that hung up */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_reply_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_chain_from_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
