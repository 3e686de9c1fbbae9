/* Tests for the Anthropic Messages adapter through the public provider API:
 * the reply a caller gets from a whole (not streamed) answer, the HTTP
 * errors, the key never in an error, and the finish reason normalised. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define ADAPTER_UNDER_TEST FR_PROTO_ANTHROPIC
#include "tests/unit/support/adapter_harness.h"
#include "tests/unit/support/anthropic_fixture.h"

/* Non-streaming */

static const char *const MESSAGE =
    "{\"id\":\"msg_013Zva2CMHLNnXjNJJKqJ2EF\",\"type\":\"message\",\"role\":\"assistant\","
    "\"model\":\"claude-haiku-4-5-20251001\",\"content\":[{\"type\":\"text\","
    "\"text\":\"Line one\\nLine two\"}],\"stop_reason\":\"max_tokens\",\"stop_sequence\":null,"
    "\"usage\":{\"input_tokens\":20,\"cache_creation_input_tokens\":0,"
    "\"cache_read_input_tokens\":16,\"output_tokens\":8,\"service_tier\":\"standard\"}}";

static void test_non_stream(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    adapter_want want = {
        "Line one\nLine two", "max_tokens", "claude-haiku-4-5-20251001", 36, 8, 16, false};
    adapter_check_whole(ADAPTER_UNDER_TEST, &c, MESSAGE, &want);
}

static void test_non_stream_tool_use(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s}", "type", "object");
    fr_call c = make_call(false);
    c.schema = schema;
    const char *body =
        "{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\","
        "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\","
        "\"text\":\"Here it is.\"},{\"type\":\"tool_use\",\"id\":\"toolu_01\","
        "\"name\":\"output\",\"input\":{\"files\":[\"a.c\",\"b.c\"],\"n\":2}}],"
        "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
        "\"cache_creation_input_tokens\":100,\"cache_read_input_tokens\":2000,"
        "\"output_tokens\":30}}";
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
    check_tool_reply(&r);
    fr_reply_close(&r);

    /* No tool, text only: the text is parsed. */
    body = "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"{\\\"ok\\\":true}\"}],"
           "\"stop_reason\":\"end_turn\"}";
    assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
    assert_true(json_is_true(json_object_get(r.json, "ok")));
    assert_true(r.usage.estimated);
    fr_reply_close(&r);
    json_decref(schema);
}

static void test_non_stream_edge_cases(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    fr_reply r;
    fr_error err;

    /* No content blocks (a refusal): empty text, never NULL. */
    assert_int_equal(run_whole(&c, 200,
                               "{\"type\":\"message\",\"content\":[],\"stop_reason\":\"refusal\"}",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.text, "");
    assert_string_equal(r.finish_reason, "refusal");
    assert_true(r.usage.estimated);
    assert_int_equal(r.usage.output, 0);
    assert_null(r.model);
    fr_reply_close(&r);

    /* Several text blocks are joined. */
    assert_int_equal(run_whole(&c, 200,
                               "{\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                               "{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"b\"}]}",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.text, "ab");
    fr_reply_close(&r);

    assert_int_equal(run_whole(&c, 200, "{\"type\":\"message\"}", &r, &err, NULL), FR_EPROTO);
    assert_non_null(strstr(err.msg, "no content"));
    assert_int_equal(run_whole(&c, 200, "{\"content\":[{\"ty", &r, &err, NULL), FR_EPROTO);
    assert_int_equal(run_whole(&c, 200, "", &r, &err, NULL), FR_EPROTO);
    assert_int_equal(run_whole(&c, 200, "[]", &r, &err, NULL), FR_EPROTO);
    assert_int_equal(run_whole(&c, 200,
                               "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                               "\"message\":\"Internal server error\"}}",
                               &r, &err, NULL),
                     FR_EPROTO);
    assert_string_equal(err.msg, "the server reported an error: api_error: Internal server error");
    assert_null(r.text);
}

/* HTTP errors */

static void test_http_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    static const struct {
        long status;
        const char *body;
        const char *msg;
    } cases[] = {
        {529,
         "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"},"
         "\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}",
         "HTTP 529: overloaded_error: Overloaded"},
        {400,
         "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
         "\"max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens "
         "for claude-sonnet-4-5-20250929\"}}",
         "HTTP 400: invalid_request_error: max_tokens: 100000 > 64000, which is the maximum "
         "allowed number of output tokens for claude-sonnet-4-5-20250929"},
        {401,
         "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
         "\"message\":\"invalid x-api-key\"}}",
         "HTTP 401: authentication_error: invalid x-api-key"},
        {429,
         "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"Number of "
         "request tokens has exceeded your per-minute rate limit\"}}",
         "HTTP 429: rate_limit_error: Number of request tokens has exceeded your per-minute rate "
         "limit"},
        {404,
         "{\"type\":\"error\",\"error\":{\"type\":\"not_found_error\",\"message\":"
         "\"model: claude-nope\"}}",
         "HTTP 404: not_found_error: model: claude-nope"},
        /* Other shapes, from proxies and compatible servers. */
        {500, "{\"error\":{\"message\":\"upstream failed\"}}", "HTTP 500: upstream failed"},
        {403, "{\"detail\":\"forbidden\"}", "HTTP 403: forbidden"},
        {502, "", "HTTP 502: (empty body)"},
        {503, "<html>\r\n<body>Service Unavailable</body></html>",
         "HTTP 503: <html>  <body>Service Unavailable</body></html>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_whole(&c, cases[i].status, cases[i].body, &r, &err, NULL);
        assert_int_equal(rc, FR_EHTTP);
        assert_int_equal(err.code, FR_EHTTP);
        assert_string_equal(err.msg, cases[i].msg);
        assert_string_equal(err.source, "anthropic");
        assert_null(r.text);
    }

    /* The status known at the first feed decides even if finish gets 0. */
    fr_adapter *a = fr_adapter_new(FR_PROTO_ANTHROPIC, &c);
    assert_int_equal(fr_adapter_feed(a, 529, cases[0].body, strlen(cases[0].body)), FR_OK);
    assert_int_equal(fr_adapter_finish(a, 0, &r, &err), FR_EHTTP);
    assert_string_equal(err.msg, cases[0].msg);
    fr_adapter_free(a);
}

/* The key may come back from a server (an echoing proxy, a message quoting
 * it); it must not reach any error message however it arrives. */
static void test_key_never_in_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    c.api_key = KEY;
    static const adapter_key_case cases[] = {
        {401, true,
         "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
         "\"message\":\"invalid x-api-key: " KEY "\"}}",
         false},
        {401, true, "{\"error\":{\"type\":\"" KEY "\",\"message\":\"bad key\"}}", false},
        {500, true, "x-api-key: " KEY, false},
        {502, true, ADAPTER_PAD180 "key: " KEY, false}, /* the snippet cuts the key */
        {200, true,
         "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
         "\"message\":\"" KEY "\"}}\n\n",
         false},
        {200, true, "event: error\ndata: " KEY "\n\n", false},
        {200, true, "event: message_start\ndata: {\"x\": " KEY "}\n\n", false},
        {200, false, "{\"type\":\"error\",\"error\":\"" KEY "\"}", false},
        {200, false, KEY, false},
        /* jansson quotes the token it choked on: here, part of the key. */
        {200, false, "{\"content\": \"" KEY "\\q\"}", false},
        {200, true,
         EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"
                                   "\"content_block\":{\"type\":\"tool_use\",\"name\":\"output\","
                                   "\"input\":{}}}") JSON_DELTA("0", "{\\\"k\\\": " KEY "}")
             MESSAGE_STOP,
         true},
        {200, false,
         "{\"content\":[{\"type\":\"text\",\"text\":\"" KEY "\"}],\"stop_reason\":\"end_turn\"}",
         true},
    };
    adapter_check_key_cases(FR_PROTO_ANTHROPIC, &c, cases, sizeof cases / sizeof cases[0],
                            "ftp://" KEY "@host");
}

/* The finish reason, normalised: the engine decides by fr_reply.finish. */

static fr_finish anth_finish(bool stream, const char *body, const json_t *schema)
{
    fr_call c = make_call(stream);
    c.schema = schema;
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
    fr_finish f = r.finish;
    fr_reply_close(&r);
    return f;
}

#define ANTH_BODY(content, stop)                                                                   \
    "{\"type\":\"message\",\"content\":" content ",\"stop_reason\":" stop "}"

static void test_finish_normalised(void **state)
{
    (void)state;
    const char *text = "[{\"type\":\"text\",\"text\":\"Hi\"}]";
    char body[600];
#define CASE(content, stop, want)                                                                  \
    do {                                                                                           \
        snprintf(body, sizeof body, ANTH_BODY("%s", "%s"), content, stop);                         \
        assert_int_equal(anth_finish(false, body, NULL), want);                                    \
    } while (0)
    CASE(text, "\"end_turn\"", FR_FINISH_STOP);
    CASE(text, "\"stop_sequence\"", FR_FINISH_STOP);
    CASE(text, "\"max_tokens\"", FR_FINISH_LENGTH);
    CASE(text, "\"model_context_window_exceeded\"", FR_FINISH_LENGTH);
    CASE(text, "\"refusal\"", FR_FINISH_REFUSED);
    CASE(text, "\"pause_turn\"", FR_FINISH_OTHER);
    CASE(text, "null", FR_FINISH_NONE);
    /* tool_use without a structured call: a tool nobody offered. */
    CASE("[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"lookup\",\"input\":{}}]", "\"tool_use\"",
         FR_FINISH_TOOL_CALL);
    /* Thinking and no text. */
    CASE("[{\"type\":\"thinking\",\"thinking\":\"Hm\",\"signature\":\"s\"}]", "\"end_turn\"",
         FR_FINISH_NO_ANSWER);
    CASE("[{\"type\":\"redacted_thinking\",\"data\":\"x\"}]", "\"end_turn\"", FR_FINISH_NO_ANSWER);
    CASE("[{\"type\":\"thinking\",\"thinking\":\"Hm\",\"signature\":\"s\"},"
         "{\"type\":\"text\",\"text\":\"42\"}]",
         "\"end_turn\"", FR_FINISH_STOP);
#undef CASE

    /* The forced output tool is the answer of a structured call; another
     * tool is a tool call, whatever the stop reason. */
    json_t *schema = json_pack("{s:s}", "type", "object");
    assert_int_equal(anth_finish(false,
                                 ANTH_BODY("[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
                                           "\"output\",\"input\":{\"a\":1}}]",
                                           "\"tool_use\""),
                                 schema),
                     FR_FINISH_STOP);
    assert_int_equal(anth_finish(false,
                                 ANTH_BODY("[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":"
                                           "\"lookup\",\"input\":{\"a\":1}}]",
                                           "\"tool_use\""),
                                 schema),
                     FR_FINISH_TOOL_CALL);
    /* Thinking only, in a structured call: no answer, not a quality error. */
    assert_int_equal(
        anth_finish(false,
                    ANTH_BODY("[{\"type\":\"thinking\",\"thinking\":\"Hm\"}]", "\"end_turn\""),
                    schema),
        FR_FINISH_NO_ANSWER);
    json_decref(schema);

    /* Streamed: a thinking block, its signature, and no text. */
    const char *stream =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\","
        "\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me see\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"end_turn\"},\"usage\":{\"output_tokens\":9}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_int_equal(anth_finish(true, stream, NULL), FR_FINISH_NO_ANSWER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_non_stream_tool_use),
        cmocka_unit_test(test_non_stream_edge_cases),
        cmocka_unit_test(test_finish_normalised),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_key_never_in_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
