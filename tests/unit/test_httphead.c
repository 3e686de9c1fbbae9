/* Unit test of the HTTP/1.x request head parser (engine/util/httphead.h)
 * the simulator and the MCP server share: the head's end found across
 * growing input, the request line, fields and their limits,
 * Content-Length, tokens. */

#include "engine/util/httphead.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *text, fr_httphead *h)
{
    size_t scan = 0;
    size_t n = fr_httphead_end(text, strlen(text), &scan);
    assert_true(n > 0);
    return fr_httphead_parse(text, n, h);
}

static void test_end_across_reads(void **state)
{
    (void)state;
    const char *req = "POST /mcp HTTP/1.1\r\nHost: x\r\n\r\nBODY";
    size_t scan = 0, whole = strlen(req) - 4;
    for (size_t len = 1; len < whole; len++)
        assert_int_equal(fr_httphead_end(req, len, &scan), 0);
    assert_int_equal(fr_httphead_end(req, strlen(req), &scan), whole);
}

static void test_request_line_and_fields(void **state)
{
    (void)state;
    fr_httphead *h = malloc(sizeof *h);
    assert_int_equal(parse("DELETE /mcp?x=1 HTTP/1.0\r\nMcp-Session-Id:  ab12 \r\n"
                           "content-length: 0\r\n\r\n",
                           h),
                     0);
    assert_int_equal(h->method_len, 6);
    assert_memory_equal(h->method, "DELETE", 6);
    assert_int_equal(h->target_len, 8);
    assert_int_equal(h->minor, 0);
    const fr_httphead_field *f = fr_httphead_get(h, "mcp-session-id");
    assert_non_null(f);
    assert_int_equal(f->value_len, 4); /* trimmed */
    assert_memory_equal(f->value, "ab12", 4);
    assert_null(fr_httphead_get(h, "Origin"));
    bool have = false;
    unsigned long long len = 9;
    assert_int_equal(fr_httphead_length(h, &have, &len), 0);
    assert_true(have);
    assert_int_equal(len, 0);
    free(h);
}

static void test_malformed(void **state)
{
    (void)state;
    fr_httphead *h = malloc(sizeof *h);
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nSpace : before colon\r\n\r\n",
        "GET / HTTP/1.1\r\n: no name\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(bad[i], h), 400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", h), 0);
    bool have;
    unsigned long long len;
    assert_int_equal(fr_httphead_length(h, &have, &len), 400);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", h),
                     0);
    assert_int_equal(fr_httphead_length(h, &have, &len), 400);
    free(h);
}

static void test_too_many_fields(void **state)
{
    (void)state;
    fr_httphead *h = malloc(sizeof *h);
    char *text = malloc(64 * 1024);
    size_t n = (size_t)sprintf(text, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < FR_HTTPHEAD_MAX_FIELDS; i++)
        n += (size_t)sprintf(text + n, "X-%d: v\r\n", i);
    strcpy(text + n, "\r\n");
    assert_int_equal(parse(text, h), 0);
    assert_int_equal(h->nfields, FR_HTTPHEAD_MAX_FIELDS);
    strcpy(text + n, "X-last: v\r\n\r\n");
    assert_int_equal(parse(text, h), 431);
    free(text);
    free(h);
}

static void test_tokens(void **state)
{
    (void)state;
    const char *accept = "application/json;q=0.9 , text/event-stream";
    assert_true(fr_httphead_has_token(accept, strlen(accept), "application/json"));
    assert_true(fr_httphead_has_token(accept, strlen(accept), "TEXT/EVENT-STREAM"));
    assert_false(fr_httphead_has_token(accept, strlen(accept), "text/html"));
    assert_false(fr_httphead_has_token("keep-alive-ish", 14, "keep-alive"));
    assert_string_equal(fr_http_status_text(431), "Request Header Fields Too Large");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_end_across_reads), cmocka_unit_test(test_request_line_and_fields),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
