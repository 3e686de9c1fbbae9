/* Tests for providers/ndjson: the framer must hand out the same lines
 * however the stream is cut into chunks, with LF or CRLF endings. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "providers/ndjson.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/support/split.h"

/* Lines are logged as records ending in "\x1e", so a whole run compares as
 * one string. */
typedef split_log rec;

static int on_line(void *ud, const char *line, size_t len)
{
    rec *r = ud;
    r->count++;
    assert_true(len > 0);
    assert_null(memchr(line, '\n', len));
    fr_buf_append(&r->log, line, len);
    fr_buf_puts(&r->log, "\x1e");
    return r->count == r->fail_at ? FR_EPROTO : FR_OK;
}

/* Written with "\n"; the variants swap in CRLF. It holds blank lines (empty
 * and whitespace-only), a line with inner and trailing spaces, a lone CR
 * inside a line (kept: only the CR of a CRLF goes), and multi-byte text. */
static const char *const STREAM = "{\"a\":1}\n"
                                  "\n"
                                  "  \t \n"
                                  "{\"b\": \"caf\xc3\xa9\"}  \n"
                                  "{\"c\":\r2}\n"
                                  "\n"
                                  "[3]\n";

static const char *const EXPECTED = "{\"a\":1}\x1e"
                                    "{\"b\": \"caf\xc3\xa9\"}  \x1e"
                                    "{\"c\":\r2}\x1e"
                                    "[3]\x1e";

/* Feeds one piece to the framer `ud`; every piece must be accepted. */
static int feed_piece(void *ud, const char *p, size_t len)
{
    assert_int_equal(fr_ndjson_feed(ud, p, len), FR_OK);
    return FR_OK;
}

/* Feeds `s` cut at the offsets in `cuts` (ascending, `ncuts` of them) and
 * checks the lines and that nothing is left pending. */
static void run_split(void *ud, const char *s, const size_t *cuts, size_t ncuts)
{
    (void)ud;
    rec r;
    split_log_init(&r);
    fr_ndjson j;
    fr_ndjson_init(&j, 0, on_line, &r);
    split_pieces(s, strlen(s), cuts, ncuts, feed_piece, &j);
    assert_string_equal(fr_buf_str(&r.log), EXPECTED);
    assert_int_equal(r.count, 4);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_flush(&j), FR_OK);
    assert_int_equal(r.count, 4);
    fr_ndjson_close(&j);
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

static void test_byte_by_byte(void **state)
{
    (void)state;
    split_bytes_eol(STREAM, "\n", run_split, NULL);
    split_bytes_eol(STREAM, "\r\n", run_split, NULL);
}

/* Two cuts at every pair of offsets, so a CR ends one feed and its LF
 * comes alone in the next, among other states kept between feeds. */
static void test_split_twice_crlf(void **state)
{
    (void)state;
    split_every_pair_eol(STREAM, "\r\n", run_split, NULL);
}

/* Line endings may change from line to line; only the one CR right before
 * an LF is part of the ending. */
static void test_mixed_line_endings(void **state)
{
    (void)state;
    const char *s = "a\r\nb\nc\r\r\n\r\nd\n";
    for (size_t i = 0; i <= strlen(s); i++) {
        rec r;
        split_log_init(&r);
        fr_ndjson j;
        fr_ndjson_init(&j, 0, on_line, &r);
        assert_int_equal(fr_ndjson_feed(&j, s, i), FR_OK);
        assert_int_equal(fr_ndjson_feed(&j, s + i, strlen(s) - i), FR_OK);
        assert_string_equal(fr_buf_str(&r.log), "a\x1e"
                                                "b\x1e"
                                                "c\r\x1e"
                                                "d\x1e");
        fr_ndjson_close(&j);
        fr_buf_close(&r.log);
    }
}

static void test_pending_and_flush(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    fr_ndjson j;
    fr_ndjson_init(&j, 0, on_line, &r);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_feed(&j, "{\"x\":", 5), FR_OK);
    assert_true(fr_ndjson_pending(&j));
    assert_int_equal(r.count, 0);
    assert_int_equal(fr_ndjson_feed(&j, "1}\r", 3), FR_OK);
    assert_true(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_feed(&j, "\n", 1), FR_OK);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(r.count, 1);

    /* Whitespace alone is nothing pending, and flush hands nothing out. */
    assert_int_equal(fr_ndjson_feed(&j, " \t\r", 3), FR_OK);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_flush(&j), FR_OK);
    assert_int_equal(r.count, 1);

    /* A last line without its newline: flush hands it out, CR dropped. */
    assert_int_equal(fr_ndjson_feed(&j, "  {\"y\":2}\r", 10), FR_OK);
    assert_true(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_flush(&j), FR_OK);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(r.count, 2);
    /* Flushing again dispatches nothing. */
    assert_int_equal(fr_ndjson_flush(&j), FR_OK);
    assert_int_equal(r.count, 2);
    /* The framer goes on after a flush. */
    assert_int_equal(fr_ndjson_feed(&j, "[3]\n", 4), FR_OK);
    assert_string_equal(fr_buf_str(&r.log), "{\"x\":1}\x1e"
                                            "  {\"y\":2}\x1e"
                                            "[3]\x1e");
    fr_ndjson_close(&j);
    fr_buf_close(&r.log);
}

/* Feeds `s` whole, then at every single cut, then byte by byte, into a
 * framer capped at `cap`, flushing at the end; every run must agree on the
 * code and the lines handed out. Returns the code. */
static int feed_capped(const char *s, size_t cap, int *lines)
{
    size_t len = strlen(s);
    int want = 0;
    *lines = -1;
    for (size_t step = 0; step <= len + 1; step++) {
        rec r;
        split_log_init(&r);
        fr_ndjson j;
        fr_ndjson_init(&j, cap, on_line, &r);
        int rc = FR_OK;
        if (step <= len) {
            /* One cut at `step`. */
            rc = fr_ndjson_feed(&j, s, step);
            if (rc == FR_OK)
                rc = fr_ndjson_feed(&j, s + step, len - step);
        } else {
            for (size_t i = 0; i < len && rc == FR_OK; i++)
                rc = fr_ndjson_feed(&j, s + i, 1);
        }
        if (rc == FR_OK)
            rc = fr_ndjson_flush(&j);
        if (*lines < 0) {
            want = rc;
            *lines = r.count;
        }
        if (rc != want || r.count != *lines)
            fail_msg("cut %zu: %s with %d lines, expected %s with %d", step, fr_err_name(rc),
                     r.count, fr_err_name(want), *lines);
        fr_ndjson_close(&j);
        fr_buf_close(&r.log);
    }
    return want;
}

static void test_oversize(void **state)
{
    (void)state;
    char line[200];
    int lines;

    /* A line of exactly the cap fits, with either ending or none. */
    memset(line, 'x', 64);
    strcpy(line + 64, "\n");
    assert_int_equal(feed_capped(line, 64, &lines), FR_OK);
    assert_int_equal(lines, 1);
    strcpy(line + 64, "\r\n");
    assert_int_equal(feed_capped(line, 64, &lines), FR_OK);
    assert_int_equal(lines, 1);
    line[64] = '\0';
    assert_int_equal(feed_capped(line, 64, &lines), FR_OK);
    assert_int_equal(lines, 1);

    /* One byte more does not, ended or not, even when the byte is a CR
     * that is not part of a CRLF. */
    memset(line, 'x', 65);
    strcpy(line + 65, "\n");
    assert_int_equal(feed_capped(line, 64, &lines), FR_ETOOBIG);
    assert_int_equal(lines, 0);
    line[65] = '\0';
    assert_int_equal(feed_capped(line, 64, &lines), FR_ETOOBIG);
    memset(line, 'x', 64);
    strcpy(line + 64, "\rx\n");
    assert_int_equal(feed_capped(line, 64, &lines), FR_ETOOBIG);

    /* The cap is per line: many lines are fine, and lines before the long
     * one are handed out. */
    assert_int_equal(
        feed_capped("0123456789\n0123456789\n0123456789\n0123456789\n0123456789\n", 16, &lines),
        FR_OK);
    assert_int_equal(lines, 5);
    assert_int_equal(feed_capped("[1]\n[2]\n01234567890123456789\n[4]\n", 16, &lines), FR_ETOOBIG);
    assert_int_equal(lines, 2);
    /* A line that never ends is capped too. */
    memset(line, ' ', 150);
    line[150] = '\0';
    assert_int_equal(feed_capped(line, 64, &lines), FR_ETOOBIG);

    /* The error is sticky. */
    rec r;
    split_log_init(&r);
    fr_ndjson j;
    fr_ndjson_init(&j, 8, on_line, &r);
    assert_int_equal(fr_ndjson_feed(&j, "0123456789", 10), FR_ETOOBIG);
    assert_int_equal(fr_ndjson_feed(&j, "\n[1]\n", 5), FR_ETOOBIG);
    assert_int_equal(fr_ndjson_flush(&j), FR_ETOOBIG);
    assert_int_equal(r.count, 0);
    fr_ndjson_close(&j);
    fr_buf_close(&r.log);
}

/* A callback's error stops the framer in the middle of a chunk, and in a
 * flush. */
static void test_callback_stops(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    r.fail_at = 2;
    fr_ndjson j;
    fr_ndjson_init(&j, 0, on_line, &r);
    const char *s = "[1]\n[2]\n[3]\n";
    assert_int_equal(fr_ndjson_feed(&j, s, strlen(s)), FR_EPROTO);
    assert_int_equal(fr_ndjson_feed(&j, "[4]\n", 4), FR_EPROTO);
    assert_int_equal(fr_ndjson_flush(&j), FR_EPROTO);
    assert_int_equal(r.count, 2);
    assert_string_equal(fr_buf_str(&r.log), "[1]\x1e[2]\x1e");
    fr_ndjson_close(&j);
    fr_buf_close(&r.log);

    split_log_init(&r);
    r.fail_at = 1;
    fr_ndjson_init(&j, 0, on_line, &r);
    assert_int_equal(fr_ndjson_feed(&j, "[1]", 3), FR_OK);
    assert_int_equal(fr_ndjson_flush(&j), FR_EPROTO);
    assert_int_equal(fr_ndjson_feed(&j, "[2]\n", 4), FR_EPROTO);
    assert_int_equal(r.count, 1);
    fr_ndjson_close(&j);
    fr_buf_close(&r.log);
}

/* Feeding nothing is harmless, and a closed framer can be used again. */
static void test_empty_and_reinit(void **state)
{
    (void)state;
    rec r;
    split_log_init(&r);
    fr_ndjson j;
    fr_ndjson_init(&j, 0, on_line, &r);
    assert_int_equal(fr_ndjson_feed(&j, "", 0), FR_OK);
    assert_int_equal(fr_ndjson_feed(&j, "\n\n\r\n", 4), FR_OK);
    assert_int_equal(fr_ndjson_feed(&j, "[1", 2), FR_OK);
    fr_ndjson_close(&j);
    fr_ndjson_init(&j, 0, on_line, &r);
    assert_false(fr_ndjson_pending(&j));
    assert_int_equal(fr_ndjson_feed(&j, "[2]\n", 4), FR_OK);
    assert_string_equal(fr_buf_str(&r.log), "[2]\x1e");
    fr_ndjson_close(&j);
    fr_buf_close(&r.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_lf),           cmocka_unit_test(test_split_crlf),
        cmocka_unit_test(test_byte_by_byte),       cmocka_unit_test(test_split_twice_crlf),
        cmocka_unit_test(test_mixed_line_endings), cmocka_unit_test(test_pending_and_flush),
        cmocka_unit_test(test_oversize),           cmocka_unit_test(test_callback_stops),
        cmocka_unit_test(test_empty_and_reinit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
