/* Tests for providers/sse: the framer must give the same events however the
 * stream is cut into chunks, with any line ending. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "providers/sse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/support/split.h"

/* Events are logged as "name|id|data" records separated by "\x1e", so a
 * whole run compares as one string. */
typedef split_log rec;

static int on_event(void *ud, const fr_sse_event *ev)
{
    rec *r = ud;
    r->count++;
    assert_int_equal(strlen(ev->data), ev->data_len);
    fr_buf_printf(&r->log, "%s|%s|%s\x1e", ev->event, ev->id, ev->data);
    return r->count == r->fail_at ? FR_EPROTO : FR_OK;
}

/* The stream every split test uses, written with "\n"; the variants swap
 * in other line endings. It holds comments, retry, ids, event names,
 * multi-line data, a field without a colon, an unknown field, an event
 * without data (never dispatched) and a terminator. */
static const char *const STREAM = ": OPENROUTER PROCESSING\n"
                                  "\n"
                                  "retry: 3000\n"
                                  "id: 1\n"
                                  "data: {\"a\":1}\n"
                                  "\n"
                                  "event: delta\n"
                                  "data: line one\n"
                                  "data:line two\n"
                                  "data:  two spaces\n"
                                  "\n"
                                  "foo: bar\n"
                                  "data\n"
                                  "data: x\n"
                                  "\n"
                                  ": keep-alive\n"
                                  "event: ping\n"
                                  "\n"
                                  "id: 2\n"
                                  "data: {\"b\":\"caf\xc3\xa9\"}\n"
                                  "\n"
                                  "data: [DONE]\n"
                                  "\n";

static const char *const EXPECTED = "message|1|{\"a\":1}\x1e"
                                    "delta|1|line one\nline two\n two spaces\x1e"
                                    "message|1|\nx\x1e"
                                    "message|2|{\"b\":\"caf\xc3\xa9\"}\x1e"
                                    "message|2|[DONE]\x1e";

/* Feeds one piece to the framer `ud`; every piece must be accepted. */
static int feed_piece(void *ud, const char *p, size_t len)
{
    assert_int_equal(fr_sse_feed(ud, p, len), FR_OK);
    return FR_OK;
}

/* Feeds `s` cut at the offsets in `cuts` (ascending, `ncuts` of them) and
 * checks the events, the retry value and that nothing is left pending. */
static void run_split(void *ud, const char *s, const size_t *cuts, size_t ncuts)
{
    (void)ud;
    rec r;
    split_log_init(&r);
    fr_sse sse;
    fr_sse_init(&sse, 0, on_event, &r);
    split_pieces(s, strlen(s), cuts, ncuts, feed_piece, &sse);
    assert_string_equal(fr_buf_str(&r.log), EXPECTED);
    assert_false(fr_sse_pending(&sse));
    assert_int_equal(fr_sse_retry_ms(&sse), 3000);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

static void test_split_lf(void **state)
{
    (void)state;
    split_every_eol(STREAM, "\n", run_split, NULL);
}

static void test_split_crlf(void **state)
{
    (void)state;
    split_every_eol(STREAM, "\r\n", run_split, NULL);
}

static void test_split_cr(void **state)
{
    (void)state;
    split_every_eol(STREAM, "\r", run_split, NULL);
}

static void test_byte_by_byte(void **state)
{
    (void)state;
    split_bytes_eol(STREAM, "\n", run_split, NULL);
    split_bytes_eol(STREAM, "\r\n", run_split, NULL);
    split_bytes_eol(STREAM, "\r", run_split, NULL);
}

/* Two cuts at every pair of offsets: catches state kept between feeds that
 * a single cut would not reach (a CR at the end of one feed, LF alone in
 * the next, and so on). */
static void test_split_twice_crlf(void **state)
{
    (void)state;
    split_every_pair_eol(STREAM, "\r\n", run_split, NULL);
}

/* Line endings may change from line to line; CR CR is two lines. */
static void test_mixed_line_endings(void **state)
{
    (void)state;
    const char *s = "data: a\r\ndata: b\r\r"
                    "data: c\n\r\n"
                    "data: d\r\n\n";
    for (size_t i = 0; i <= strlen(s); i++) {
        rec r;
        split_log_init(&r);
        fr_sse sse;
        fr_sse_init(&sse, 0, on_event, &r);
        assert_int_equal(fr_sse_feed(&sse, s, i), FR_OK);
        assert_int_equal(fr_sse_feed(&sse, s + i, strlen(s) - i), FR_OK);
        assert_string_equal(fr_buf_str(&r.log), "message||a\nb\x1e"
                                                "message||c\x1e"
                                                "message||d\x1e");
        fr_sse_close(&sse);
        fr_buf_close(&r.log);
    }
}

/* A UTF-8 byte order mark is dropped at the start of the stream only, even
 * when it arrives split over feeds. */
static void test_bom(void **state)
{
    (void)state;
    const char *s = "\xEF\xBB\xBF"
                    "data: one\n\n\xEF\xBB\xBF"
                    "data: two\n\n";
    for (size_t i = 0; i <= strlen(s); i++) {
        rec r;
        split_log_init(&r);
        fr_sse sse;
        fr_sse_init(&sse, 0, on_event, &r);
        fr_sse_feed(&sse, s, i);
        fr_sse_feed(&sse, s + i, strlen(s) - i);
        /* The second mark is part of an unknown field name, so ignored. */
        assert_string_equal(fr_buf_str(&r.log), "message||one\x1e");
        fr_sse_close(&sse);
        fr_buf_close(&r.log);
    }
}

static void test_fields(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    fr_sse sse;
    fr_sse_init(&sse, 0, on_event, &r);
    const char *s = "data\n\n"           /* empty data still dispatches */
                    "event: named\n"     /* the name applies to this event only */
                    "data: a:b: c\n\n"   /* only the first colon splits */
                    "data: next\n\n"     /* back to "message" */
                    "id: 7\ndata: x\n\n" /* id is kept ... */
                    "data: y\n\n"        /* ... across events */
                    "id\ndata: z\n\n"    /* and an empty id resets it */
                    "retry: 12a\n"       /* not all digits: ignored */
                    "DATA: upper\n"      /* field names are case-sensitive */
                    "data:no-space\n\n";
    assert_int_equal(fr_sse_feed(&sse, s, strlen(s)), FR_OK);
    assert_string_equal(fr_buf_str(&r.log), "message||\x1e"
                                            "named||a:b: c\x1e"
                                            "message||next\x1e"
                                            "message|7|x\x1e"
                                            "message|7|y\x1e"
                                            "message||z\x1e"
                                            "message||no-space\x1e");
    assert_int_equal(fr_sse_retry_ms(&sse), -1);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

/* Found by fuzz_sse: an event name holding a NUL must not reach adapters
 * as a shorter name ("message_stop\0x" passing for the terminator). */
static void test_event_name_with_nul(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    fr_sse sse;
    fr_sse_init(&sse, 0, on_event, &r);
    static const char s[] = "event: message_stop\0x\ndata: {}\n\n"
                            "event: \0\ndata: a\n\n";
    assert_int_equal(fr_sse_feed(&sse, s, sizeof s - 1), FR_OK);
    assert_string_equal(fr_buf_str(&r.log), "message||{}\x1e"
                                            "message||a\x1e");
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

static void test_pending_and_flush(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    fr_sse sse;
    fr_sse_init(&sse, 0, on_event, &r);
    assert_false(fr_sse_pending(&sse));
    fr_sse_feed(&sse, "data: ab", 8);
    assert_true(fr_sse_pending(&sse)); /* an unterminated line */
    fr_sse_feed(&sse, "c\n", 2);
    assert_true(fr_sse_pending(&sse)); /* a field, no blank line yet */
    assert_int_equal(r.count, 0);
    fr_sse_feed(&sse, "\n", 1);
    assert_false(fr_sse_pending(&sse));
    assert_int_equal(r.count, 1);

    fr_sse_feed(&sse, ": only a comment\n", 17);
    assert_false(fr_sse_pending(&sse));
    fr_sse_feed(&sse, "event: x\n", 9);
    assert_true(fr_sse_pending(&sse));

    /* Flush hands out complete lines and drops a cut-off one. */
    fr_sse_feed(&sse, "data: whole\ndata: cut", 21);
    assert_int_equal(fr_sse_flush(&sse), FR_OK);
    assert_false(fr_sse_pending(&sse));
    assert_string_equal(fr_buf_str(&r.log), "message||abc\x1e"
                                            "x||whole\x1e");
    /* Nothing pending: flush dispatches nothing. */
    assert_int_equal(fr_sse_flush(&sse), FR_OK);
    fr_sse_feed(&sse, "data: cut", 9);
    assert_int_equal(fr_sse_flush(&sse), FR_OK);
    assert_int_equal(r.count, 2);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

/* Feeds `s` whole, then byte by byte, into a framer capped at `cap`, and
 * returns the first error of each (they must agree). */
static int feed_capped(const char *s, size_t cap, int *events)
{
    int rc_whole, rc_bytes = FR_OK;
    rec r;
    fr_sse sse;
    split_log_init(&r);
    fr_sse_init(&sse, cap, on_event, &r);
    rc_whole = fr_sse_feed(&sse, s, strlen(s));
    *events = r.count;
    fr_sse_close(&sse);
    fr_buf_close(&r.log);

    split_log_init(&r);
    fr_sse_init(&sse, cap, on_event, &r);
    for (size_t i = 0; s[i] && rc_bytes == FR_OK; i++)
        rc_bytes = fr_sse_feed(&sse, s + i, 1);
    assert_int_equal(rc_whole, rc_bytes);
    assert_int_equal(*events, r.count);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
    return rc_whole;
}

static void test_oversize(void **state)
{
    (void)state;
    char line[200];
    int events;

    /* One line of exactly the cap fits, one byte more does not. */
    memset(line, 0, sizeof line);
    memcpy(line, "data: ", 6);
    memset(line + 6, 'x', 58);
    strcat(line, "\n\n");
    assert_int_equal(feed_capped(line, 64, &events), FR_OK);
    assert_int_equal(events, 1);
    memset(line + 6, 'x', 59);
    strcpy(line + 65, "\n\n");
    assert_int_equal(feed_capped(line, 64, &events), FR_ETOOBIG);
    assert_int_equal(events, 0);

    /* Many short data lines add up to the same cap. */
    assert_int_equal(feed_capped("data: 0123456789\ndata: 0123456789\ndata: 0123456789\n"
                                 "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n\n",
                                 64, &events),
                     FR_ETOOBIG);
    /* A line that never ends is capped too, comment or not. */
    memset(line, ':', 150);
    line[150] = '\0';
    assert_int_equal(feed_capped(line, 64, &events), FR_ETOOBIG);
    /* The cap is per event: many small events are fine. */
    assert_int_equal(feed_capped("data: 0123456789\n\ndata: 0123456789\n\n"
                                 "data: 0123456789\n\ndata: 0123456789\n\n"
                                 "data: 0123456789\n\ndata: 0123456789\n\n",
                                 64, &events),
                     FR_OK);
    assert_int_equal(events, 6);

    /* The error is sticky. */
    rec r;
    split_log_init(&r);
    fr_sse sse;
    fr_sse_init(&sse, 16, on_event, &r);
    assert_int_equal(fr_sse_feed(&sse, "data: 0123456789abcdef", 22), FR_ETOOBIG);
    assert_int_equal(fr_sse_feed(&sse, "\n\ndata: ok\n\n", 12), FR_ETOOBIG);
    assert_int_equal(fr_sse_flush(&sse), FR_ETOOBIG);
    assert_int_equal(r.count, 0);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

/* A callback's error stops the framer in the middle of a chunk. */
static void test_callback_stops(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    r.fail_at = 2;
    fr_sse sse;
    fr_sse_init(&sse, 0, on_event, &r);
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(fr_sse_feed(&sse, s, strlen(s)), FR_EPROTO);
    assert_int_equal(fr_sse_feed(&sse, "data: 4\n\n", 9), FR_EPROTO);
    assert_int_equal(r.count, 2);
    fr_sse_close(&sse);
    fr_buf_close(&r.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_lf),
        cmocka_unit_test(test_split_crlf),
        cmocka_unit_test(test_split_cr),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_split_twice_crlf),
        cmocka_unit_test(test_mixed_line_endings),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_event_name_with_nul),
        cmocka_unit_test(test_pending_and_flush),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_callback_stops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
