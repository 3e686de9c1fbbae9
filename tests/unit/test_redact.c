/* Redaction: registered keys (whole or cut), credential headers and key
 * query parameters never leave in a string or a log line, while ordinary
 * text passes unchanged. */
#include "engine/util/redact.h"

#include "engine/util/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KEY  "sk-proj-Zq8V4mN2pL7xR9tK3wB6yH1c"
#define KEY2 "ant-Q3w9E1r7T5y2U8i4O6p0"

/* Asserts that redacting `in` gives `want`. */
static void check(const char *in, const char *want)
{
    char *out = fr_redact(in);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static int teardown(void **state)
{
    (void)state;
    fr_redact_clear();
    return 0;
}

static void test_null_and_plain_text(void **state)
{
    (void)state;
    assert_null(fr_redact(NULL));
    assert_false(fr_redact_needed(NULL));
    check("", "");
    /* Nothing registered: ordinary text, log lines and URLs stay as they are. */
    const char *plain[] = {
        "info sched task=review-3 tier=local endpoint=ollama model=qwen2.5 latency_ms=812",
        "warn run endpoint=cloud environment variable OPENAI_API_KEY is not set",
        "info run api_key_env=OPENAI_API_KEY keys=3 monkey=1 key=value",
        "the authorization of the run was granted by the budget",
        "GET http://127.0.0.1:8080/v1/models?limit=10&monkey=3&keyword=x",
        "openai: HTTP 401: Incorrect API key provided",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        check(plain[i], plain[i]);
    /* The cheap test lets lines without any pattern skip the copy. */
    assert_false(fr_redact_needed(plain[0]));
    assert_false(fr_redact_needed(plain[1]));
    assert_true(fr_redact_needed("x-goog-api-key: 1"));
}

static void test_registered_secret(void **state)
{
    (void)state;
    fr_redact_add(KEY);
    assert_true(fr_redact_needed("anything at all"));
    check("openai: HTTP 401: Incorrect API key provided: " KEY ". See the docs.",
          "openai: HTTP 401: Incorrect API key provided: [REDACTED]. See the docs.");
    check(KEY, "[REDACTED]");
    check("{\"error\":{\"message\":\"bad key " KEY "\"}}",
          "{\"error\":{\"message\":\"bad key [REDACTED]\"}}");
    /* Text around a key is kept byte for byte, also unrelated lookalikes. */
    check("sk-proj-abc and sk-proj-Zq8 stay", "sk-proj-abc and sk-proj-Zq8 stay");
}

static void test_prefixes(void **state)
{
    (void)state;
    fr_redact_add(KEY);
    /* A key cut off after 12 bytes or more (a truncated snippet) goes... */
    check("echo: sk-proj-Zq8V", "echo: [REDACTED]");
    check("echo: sk-proj-Zq8V4mN2pL7...", "echo: [REDACTED]...");
    check("echo: sk-proj-Zq8V4mN2pL7xR9tK3wB6yH1", "echo: [REDACTED]");
    /* ... and so does a key followed by more bytes, but only the key's part. */
    check(KEY "XYZ", "[REDACTED]XYZ");
    /* Eleven bytes of it are a public prefix, not a leak. */
    check("echo: sk-proj-Zq8", "echo: sk-proj-Zq8");
}

static void test_short_and_duplicate_secrets(void **state)
{
    (void)state;
    fr_redact_add(NULL);
    fr_redact_add("");
    fr_redact_add("short"); /* shorter than 8: would redact words */
    fr_redact_add("1234567");
    assert_false(fr_redact_needed("short 1234567"));
    check("short 1234567", "short 1234567");
    /* An 8-byte secret goes whole, never by a prefix shorter than itself. */
    fr_redact_add("Pa55w0rd");
    fr_redact_add("Pa55w0rd");
    check("x Pa55w0rd y Pa55w0r z", "x [REDACTED] y Pa55w0r z");
    fr_redact_clear();
    assert_false(fr_redact_needed("x Pa55w0rd"));
    check("x Pa55w0rd", "x Pa55w0rd");
}

static void test_multiple_and_overlapping(void **state)
{
    (void)state;
    fr_redact_add(KEY);
    fr_redact_add(KEY2);
    check(KEY " and " KEY2 " and " KEY, "[REDACTED] and [REDACTED] and [REDACTED]");
    /* Back to back, and one right after a cut copy of the other. */
    check(KEY KEY, "[REDACTED][REDACTED]");
    check("sk-proj-Zq8V4m" KEY2, "[REDACTED][REDACTED]");
    /* A secret that is a prefix of another: the longer match wins. */
    fr_redact_add("sk-proj-Zq8V4mN2");
    check(KEY "!", "[REDACTED]!");
    /* Repeating secrets do not eat the text after them. */
    fr_redact_add("aaaaaaaaaaaa");
    check("aaaaaaaaaaaaaaaa", "[REDACTED]aaaa");
}

static void test_headers(void **state)
{
    (void)state;
    /* No secret registered: the generic patterns alone. */
    check("Authorization: Bearer abc.def-123", "Authorization: Bearer [REDACTED]");
    check("authorization: bearer abc.def-123 next", "authorization: bearer [REDACTED] next");
    check("AUTHORIZATION:Basic dXNlcjpwYXNz=", "AUTHORIZATION:Basic [REDACTED]");
    check("Authorization: tok_123456", "Authorization: [REDACTED]");
    check("Proxy-Authorization: Bearer xyz", "Proxy-Authorization: Bearer [REDACTED]");
    check("x-api-key: sk-ant-api03-aaa\r\nx-other: 1", "x-api-key: [REDACTED]\r\nx-other: 1");
    check("X-Api-Key:abc", "X-Api-Key:[REDACTED]");
    check("x-goog-api-key: AIzaSyD-123", "x-goog-api-key: [REDACTED]");
    /* Quoted (JSON, key=value logs) and escaped forms. */
    check("{\"x-api-key\": \"abc\", \"n\": 1}", "{\"x-api-key\": \"[REDACTED]\", \"n\": 1}");
    check("{\"Authorization\":\"Bearer abc\"}", "{\"Authorization\":\"Bearer [REDACTED]\"}");
    check("{\\\"x-api-key\\\":\\\"abc\\\"}", "{\\\"x-api-key\\\":\\\"[REDACTED]\\\"}");
    check("header authorization=Bearer abc ok", "header authorization=Bearer [REDACTED] ok");
    /* Two in one line. */
    check("Authorization: Bearer a1; x-api-key: b2", "Authorization: Bearer [REDACTED]; x-api-key: "
                                                     "[REDACTED]");
    /* Already redacted, and names without a value, stay. */
    check("Authorization: Bearer [REDACTED]", "Authorization: Bearer [REDACTED]");
    check("x-api-key: [REDACTED]", "x-api-key: [REDACTED]");
    check("missing Authorization: ", "missing Authorization: ");
    check("send an x-api-key header", "send an x-api-key header");
    check("authorization failed", "authorization failed");
}

static void test_query(void **state)
{
    (void)state;
    check("GET https://g.example/v1/models?key=AIzaSy123&alt=sse HTTP/1.1",
          "GET https://g.example/v1/models?key=[REDACTED]&alt=sse HTTP/1.1");
    check("https://h/x?alt=sse&KEY=abc#frag", "https://h/x?alt=sse&KEY=[REDACTED]#frag");
    check("https://h/x?Api_Key=abc&key=def", "https://h/x?Api_Key=[REDACTED]&key=[REDACTED]");
    check("url=\"https://h/x?key=abc\"", "url=\"https://h/x?key=[REDACTED]\"");
    /* Not a query parameter: log fields, lookalike names, empty values. */
    check("key=abc api_key=def", "key=abc api_key=def");
    check("https://h/x?monkey=1&keys=2&key_id=3", "https://h/x?monkey=1&keys=2&key_id=3");
    check("https://h/x?key=&a=1", "https://h/x?key=&a=1");
}

static void test_secret_and_pattern(void **state)
{
    (void)state;
    /* A key with a byte that ends a header value still goes whole. */
    fr_redact_add("abc,def;ghi-jkl");
    check("x-api-key: abc,def;ghi-jkl end", "x-api-key: [REDACTED] end");
    fr_redact_add(KEY);
    check("Authorization: Bearer " KEY, "Authorization: Bearer [REDACTED]");
    check("https://h/?key=" KEY "&a=1", "https://h/?key=[REDACTED]&a=1");
}

/* Logs one line into a temporary file and returns what was written. */
static char *log_line(fr_log_format fmt, const char *msg)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    fr_log_set_stream(f);
    fr_log_set_format(fmt);
    fr_log_set_level(FR_LOG_TRACE);
    fr_log(FR_LOG_ERROR, "run", "task=t endpoint=cloud error=\"%s\"", msg);
    fr_log_set_stream(NULL);
    fr_log_set_format(FR_LOG_TEXT);
    fr_log_set_level(FR_LOG_WARN);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(fread(out, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return out;
}

static void test_log_output(void **state)
{
    (void)state;
    fr_redact_add(KEY);
    char *text = log_line(FR_LOG_TEXT, "openai: HTTP 401: Incorrect API key provided: " KEY);
    assert_null(strstr(text, "sk-proj-Zq8V"));
    assert_string_equal(text, "flowrun: error run task=t endpoint=cloud error=\"openai: HTTP 401: "
                              "Incorrect API key provided: [REDACTED]\"\n");
    free(text);

    char *json = log_line(FR_LOG_JSON, "echo sk-proj-Zq8V4mN2pL and Authorization: Bearer zzz");
    assert_null(strstr(json, "sk-proj-Zq8V"));
    assert_null(strstr(json, "zzz"));
    assert_non_null(strstr(json, ",\"task\":\"t\",\"endpoint\":\"cloud\",\"error\":\"echo "
                                 "[REDACTED] and Authorization: Bearer [REDACTED]\"}"));
    free(json);

    /* With nothing registered, the patterns still apply and plain lines pass. */
    fr_redact_clear();
    char *hdr = log_line(FR_LOG_TEXT, "x-goog-api-key: AIza-1 and https://h/?key=AIza-2");
    assert_string_equal(hdr, "flowrun: error run task=t endpoint=cloud error=\"x-goog-api-key: "
                             "[REDACTED] and https://h/?key=[REDACTED]\"\n");
    free(hdr);
    char *plain = log_line(FR_LOG_TEXT, "HTTP 500: " KEY);
    assert_non_null(strstr(plain, KEY)); /* nothing registered: nothing to find */
    free(plain);
}

/* Content redaction: only registered secrets go, in place, with NUL bytes
 * inside; text without one is left as it is, uncopied. */
static void test_secrets_in_content(void **state)
{
    (void)state;
    char *s = strdup("no key here");
    char *before = s;
    size_t len = strlen(s);
    assert_false(fr_redact_secrets(&s, &len)); /* nothing registered */
    fr_redact_add(KEY);
    assert_false(fr_redact_secrets(&s, &len));
    assert_ptr_equal(s, before);
    free(s);

    /* Header-like words stay: this is content, not a log line. */
    const char text[] = "Authorization: Bearer " KEY " and\0after " KEY;
    len = sizeof text - 1;
    s = malloc(sizeof text);
    memcpy(s, text, sizeof text);
    assert_true(fr_redact_secrets(&s, &len));
    const char want[] = "Authorization: Bearer [REDACTED] and\0after [REDACTED]";
    assert_int_equal(len, sizeof want - 1);
    assert_memory_equal(s, want, sizeof want);
    free(s);

    /* A key cut at the end, as a reply limited by max_tokens would. */
    s = strndup("ends with " KEY, 10 + FR_REDACT_MIN_PREFIX);
    len = strlen(s);
    assert_true(fr_redact_secrets(&s, &len));
    assert_string_equal(s, "ends with [REDACTED]");
    free(s);
    s = NULL;
    len = 0;
    assert_false(fr_redact_secrets(&s, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_null_and_plain_text, teardown),
        cmocka_unit_test_teardown(test_secrets_in_content, teardown),
        cmocka_unit_test_teardown(test_registered_secret, teardown),
        cmocka_unit_test_teardown(test_prefixes, teardown),
        cmocka_unit_test_teardown(test_short_and_duplicate_secrets, teardown),
        cmocka_unit_test_teardown(test_multiple_and_overlapping, teardown),
        cmocka_unit_test_teardown(test_headers, teardown),
        cmocka_unit_test_teardown(test_query, teardown),
        cmocka_unit_test_teardown(test_secret_and_pattern, teardown),
        cmocka_unit_test_teardown(test_log_output, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
