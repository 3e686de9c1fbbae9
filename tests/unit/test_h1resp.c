/* Unit test of the HTTP/1.x response parser (engine/util/h1resp.h) of
 * engine/http's native client: every response fed whole, byte by byte and
 * cut at every pair of points gives the same status, fields, body and end;
 * chunked bodies with extensions and trailers; 1xx skipped; 204, 304 and
 * HEAD without a body; Content-Length; a body read until the close;
 * keep-alive and Connection: close; malformed heads and chunks. */

#include "engine/util/h1resp.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What one parse gave. */
typedef struct out {
    long status;
    char body[512];
    size_t body_len;
    char fields[512]; /* "name=value;" for each field */
    bool head_end, done, error, keep_alive;
    const char *why;
    size_t rest; /* bytes after the response's end */
} out;

/* Feeds `text` (length n) in pieces cut at `cuts` (ascending, ncut of them);
 * `eof` ends the input with the close of the connection. */
static void run_cuts(const char *text, size_t n, const size_t *cuts, int ncut, bool head, bool eof,
                     out *o)
{
    fr_h1_resp p = {0};
    fr_h1_reset(&p, head);
    memset(o, 0, sizeof *o);
    size_t start = 0;
    for (int k = 0; k <= ncut && !o->done && !o->error; k++) {
        size_t end = k < ncut ? cuts[k] : n;
        const char *d = text + start;
        size_t len = end - start;
        for (;;) {
            fr_h1_event ev;
            size_t used = fr_h1_feed(&p, d, len, &ev);
            assert_true(used <= len);
            d += used;
            len -= used;
            if (ev.kind == FR_H1_NEED) {
                assert_int_equal(len, 0);
                break;
            }
            if (ev.kind == FR_H1_HEADER) {
                size_t f = strlen(o->fields);
                snprintf(o->fields + f, sizeof o->fields - f, "%.*s=%.*s;", (int)ev.name_len,
                         ev.name, (int)ev.value_len, ev.value);
            } else if (ev.kind == FR_H1_HEAD_END) {
                o->head_end = true;
                o->status = p.status;
            } else if (ev.kind == FR_H1_BODY) {
                assert_true(ev.len > 0);
                assert_true(o->body_len + ev.len < sizeof o->body);
                memcpy(o->body + o->body_len, ev.data, ev.len);
                o->body_len += ev.len;
            } else if (ev.kind == FR_H1_DONE) {
                o->done = true;
                o->rest = len + (n - end);
                break;
            } else {
                o->error = true;
                o->why = p.error;
                break;
            }
        }
        start = end;
    }
    if (!o->done && !o->error && eof)
        o->done = fr_h1_eof(&p);
    o->keep_alive = p.keep_alive;
    fr_h1_free(&p);
}

static void same(const out *a, const out *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->body_len, b->body_len);
    assert_memory_equal(a->body, b->body, a->body_len);
    assert_string_equal(a->fields, b->fields);
    assert_int_equal(a->done, b->done);
    assert_int_equal(a->error, b->error);
    assert_int_equal(a->keep_alive, b->keep_alive);
    assert_int_equal(a->rest, b->rest);
}

/* Parses `text` whole, then byte by byte, then cut at every pair of points;
 * all must agree. Returns the whole parse in *o. */
static void parse_all_ways(const char *text, bool head, bool eof, out *o)
{
    size_t n = strlen(text);
    run_cuts(text, n, NULL, 0, head, eof, o);
    size_t *every = malloc((n ? n : 1) * sizeof *every);
    for (size_t i = 0; i + 1 < n; i++)
        every[i] = i + 1;
    out b;
    run_cuts(text, n, every, n > 1 ? (int)(n - 1) : 0, head, eof, &b);
    same(o, &b);
    for (size_t i = 1; i < n; i++) {
        for (size_t j = i; j < n; j++) {
            size_t cuts[2] = {i, j};
            run_cuts(text, n, cuts, 2, head, eof, &b);
            same(o, &b);
        }
    }
    free(every);
}

static void test_content_length(void **state)
{
    (void)state;
    out o;
    parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nRetry-After:  2 \r\n\r\nhelloEXTRA",
                   false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.status, 200);
    assert_string_equal(o.fields, "Content-Length=5;Retry-After=2;");
    assert_int_equal(o.body_len, 5);
    assert_memory_equal(o.body, "hello", 5);
    assert_true(o.keep_alive);
    assert_int_equal(o.rest, 5); /* "EXTRA" is not the body's */
}

static void test_chunked_extensions_trailers(void **state)
{
    (void)state;
    out o;
    parse_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
                   "5;name=value;q=\"x\"\r\nhello\r\n"
                   "1 ; ext\r\n,\r\n"
                   "A\r\n0123456789\r\n"
                   "0;last\r\nX-Trailer: t\r\nOther: u\r\n\r\n",
                   false, false, &o);
    assert_true(o.done);
    assert_false(o.error);
    assert_int_equal(o.body_len, 16);
    assert_memory_equal(o.body, "hello,0123456789", 16);
    assert_true(o.keep_alive);
    assert_int_equal(o.rest, 0);
}

static void test_interim_skipped(void **state)
{
    (void)state;
    out o;
    parse_all_ways("HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
                   "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                   "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
                   false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.status, 201);
    assert_string_equal(o.fields, "Content-Length=2;"); /* none of the interim ones */
    assert_int_equal(o.body_len, 2);
}

static void test_no_body(void **state)
{
    (void)state;
    out o;
    /* 204 and 304 have no body whatever the head says; nor has a HEAD's reply. */
    parse_all_ways("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1", false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.status, 204);
    assert_int_equal(o.body_len, 0);
    assert_true(o.keep_alive);
    assert_int_equal(o.rest, 8);
    parse_all_ways("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.body_len, 0);
    parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, false, &o);
    assert_true(o.done);
    assert_int_equal(o.body_len, 0);
    parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.body_len, 0);
}

static void test_until_close(void **state)
{
    (void)state;
    out o;
    /* No length, not chunked: the body ends with the connection. */
    parse_all_ways("HTTP/1.0 200 OK\nContent-Type: text/plain\n\nall of it", false, true, &o);
    assert_true(o.done);
    assert_int_equal(o.body_len, 9);
    assert_false(o.keep_alive);
    /* A length cut short is not complete at the close. */
    parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nall", false, true, &o);
    assert_false(o.done);
    assert_false(o.error);
    /* Nor is a chunked body without its last chunk. */
    parse_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", false, true,
                   &o);
    assert_false(o.done);
    assert_int_equal(o.body_len, 3);
}

static void test_connection_header(void **state)
{
    (void)state;
    out o;
    parse_all_ways("HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\nx", false,
                   false, &o);
    assert_true(o.done);
    assert_false(o.keep_alive);
    parse_all_ways("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", false,
                   false, &o);
    assert_true(o.keep_alive);
    parse_all_ways("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, false, &o);
    assert_false(o.keep_alive);
    /* Both framings: chunked wins, and the connection is not reused. */
    parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "1\r\nx\r\n0\r\n\r\n",
                   false, false, &o);
    assert_true(o.done);
    assert_int_equal(o.body_len, 1);
    assert_false(o.keep_alive);
}

static void expect_error(const char *text, const char *why)
{
    out o;
    parse_all_ways(text, false, false, &o);
    assert_true(o.error);
    assert_false(o.done);
    assert_string_equal(o.why, why);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error("HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line");
    expect_error("HTTP/2 200\r\n\r\n", "malformed status line");
    expect_error("<html>hello</html>\r\n", "malformed status line");
    expect_error("HTTP/1.1 20\r\n\r\n", "malformed status line");
    expect_error("HTTP/1.1 200OK\r\n\r\n", "malformed status line");
    expect_error("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\n", "malformed Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                 "malformed Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                 "malformed Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                 "malformed chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
                 "malformed chunk end");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n",
                 "malformed chunk size");
}

static void test_limits(void **state)
{
    (void)state;
    /* A head that never ends is refused, not buffered without bound. */
    fr_h1_resp p = {0};
    fr_h1_reset(&p, false);
    fr_h1_event ev;
    const char *start = "HTTP/1.1 200 OK\r\n";
    assert_int_equal(fr_h1_feed(&p, start, strlen(start), &ev), strlen(start));
    assert_int_equal(ev.kind, FR_H1_NEED);
    char *junk = malloc(4096);
    memset(junk, 'a', 4096);
    size_t fed = 0;
    while (fed < (size_t)2 * FR_H1_HEAD_MAX) {
        fr_h1_feed(&p, junk, 4096, &ev);
        fed += 4096;
        if (ev.kind == FR_H1_ERROR)
            break;
    }
    assert_int_equal(ev.kind, FR_H1_ERROR);
    assert_true(p.line_cap <= FR_H1_LINE_MAX);
    /* After the error it stays there and takes nothing. */
    assert_int_equal(fr_h1_feed(&p, junk, 10, &ev), 0);
    assert_int_equal(ev.kind, FR_H1_ERROR);
    free(junk);
    /* The next response on a reset parser is read afresh. */
    fr_h1_reset(&p, false);
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    size_t used = fr_h1_feed(&p, ok, strlen(ok), &ev);
    assert_int_equal(ev.kind, FR_H1_HEADER);
    used += fr_h1_feed(&p, ok + used, strlen(ok) - used, &ev);
    assert_int_equal(ev.kind, FR_H1_HEAD_END);
    fr_h1_feed(&p, ok + used, strlen(ok) - used, &ev);
    assert_int_equal(ev.kind, FR_H1_DONE);
    assert_false(fr_h1_nothing(&p));
    fr_h1_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),  cmocka_unit_test(test_chunked_extensions_trailers),
        cmocka_unit_test(test_interim_skipped), cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_until_close),     cmocka_unit_test(test_connection_header),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
