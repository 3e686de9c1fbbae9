/* Tests for the OpenAI-compatible adapter through the public provider API:
 * the reply a caller gets from a whole (not streamed) answer, the HTTP
 * errors, the key never in an error, a structured reply, the protocols the
 * dispatch refuses, the token estimate, and the finish reason of a whole
 * reply normalised. */

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

#define ADAPTER_UNDER_TEST FR_PROTO_OPENAI
#include "tests/unit/support/adapter_harness.h"
#include "tests/unit/support/openai_fixture.h"

/* Non-streaming */

static const char *const COMPLETION =
    "{\"id\":\"chatcmpl-9\",\"object\":\"chat.completion\",\"created\":1,"
    "\"model\":\"deepseek/deepseek-chat\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
    "\"assistant\",\"content\":\"Line one\\nLine two\"},\"logprobs\":null,"
    "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":8,"
    "\"total_tokens\":28,\"prompt_tokens_details\":{\"cached_tokens\":16}}}";

static void test_non_stream(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    adapter_want want = {
        "Line one\nLine two", "length", "deepseek/deepseek-chat", 20, 8, 16, false};
    adapter_check_whole(ADAPTER_UNDER_TEST, &c, COMPLETION, &want);
}

static void test_non_stream_edge_cases(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    fr_reply r;
    fr_error err;

    /* content null (a refusal or tool call): empty text, never NULL. */
    assert_int_equal(run_whole(&c, 200,
                               "{\"choices\":[{\"index\":0,\"message\":{\"content\":null},"
                               "\"finish_reason\":\"stop\"}]}",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.text, "");
    assert_true(r.usage.estimated);
    assert_int_equal(r.usage.output, 0);
    assert_null(r.model);
    fr_reply_close(&r);

    assert_int_equal(run_whole(&c, 200, "{\"choices\":[]}", &r, &err, NULL), FR_EPROTO);
    assert_non_null(strstr(err.msg, "no choices"));
    assert_int_equal(run_whole(&c, 200, "{\"choices\":[{\"mess", &r, &err, NULL), FR_EPROTO);
    assert_int_equal(run_whole(&c, 200, "", &r, &err, NULL), FR_EPROTO);
    assert_int_equal(
        run_whole(&c, 200, "{\"error\":{\"message\":\"model not loaded\"}}", &r, &err, NULL),
        FR_EPROTO);
    assert_non_null(strstr(err.msg, "model not loaded"));
}

static void test_non_stream_too_big(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    fr_adapter *a = fr_adapter_new(FR_PROTO_OPENAI, &c);
    size_t piece = 64 * 1024;
    char *junk = malloc(piece);
    memset(junk, ' ', piece);
    int rc = FR_OK;
    size_t fed = 0;
    /* The body may hold far more than the 8 MiB reply cap (escapes and
     * framing); past its own cap it fails saying the reply is too big. */
    while (rc == FR_OK && fed <= 70u * 1024 * 1024) {
        rc = fr_adapter_feed(a, 200, junk, piece);
        fed += piece;
    }
    assert_int_equal(rc, FR_ETOOBIG);
    assert_true(fed > 64u * 1024 * 1024);
    fr_reply r;
    fr_error err;
    assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_ETOOBIG);
    assert_non_null(strstr(err.msg, "the reply is over the 8388608-byte cap"));
    assert_null(r.text);
    free(junk);
    fr_adapter_free(a);

    /* A whole body whose text is over the cap fails as a stream would. */
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "{\"choices\":[{\"message\":{\"content\":\"");
    for (size_t i = 0; i < 9u * 1024 * 1024; i++)
        fr_buf_append(&b, "x", 1);
    fr_buf_puts(&b, "\"},\"finish_reason\":\"stop\"}]}");
    assert_int_equal(run_whole(&c, 200, fr_buf_str(&b), &r, &err, NULL), FR_ETOOBIG);
    assert_non_null(strstr(err.msg, "the reply is over the 8388608-byte cap"));
    fr_buf_close(&b);
}

/* HTTP errors */

static void test_http_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;

    assert_int_equal(run_whole(&c, 429,
                               "{\"error\":{\"message\":\"Rate limit reached for requests\","
                               "\"type\":\"requests\",\"code\":\"rate_limit_exceeded\"}}",
                               &r, &err, NULL),
                     FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 429: Rate limit reached for requests");
    assert_null(r.text);

    /* A proxy's HTML page: its first 200 bytes, on one line. */
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "<html>\r\n<head><title>500 Internal Server Error</title></head>\n");
    for (int i = 0; i < 20; i++)
        fr_buf_puts(&b, "<p>padding padding padding</p>\n");
    assert_int_equal(run_whole(&c, 500, fr_buf_str(&b), &r, &err, NULL), FR_EHTTP);
    assert_memory_equal(err.msg, "HTTP 500: <html>  <head><title>500", 34);
    assert_null(strchr(err.msg, '\n'));
    assert_true(strlen(err.msg) <= strlen("HTTP 500: ") + 200);
    assert_true(strlen(err.msg) > strlen("HTTP 500: ") + 190);
    fr_buf_close(&b);

    /* Other shapes servers use: error as a string, FastAPI's detail. */
    assert_int_equal(run_whole(&c, 404, "{\"error\":\"model 'x' not found\"}", &r, &err, NULL),
                     FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 404: model 'x' not found");
    assert_int_equal(run_whole(&c, 400, "{\"detail\":\"max_tokens too large\"}", &r, &err, NULL),
                     FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 400: max_tokens too large");
    /* An error sent as an SSE event. */
    assert_int_equal(
        run_whole(&c, 503, "data: {\"error\":{\"message\":\"overloaded\"}}\n\n", &r, &err, NULL),
        FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 503: overloaded");
    assert_int_equal(run_whole(&c, 502, "", &r, &err, NULL), FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 502: (empty body)");

    /* A cut multi-byte character is not split in the message. */
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "x");
    for (int i = 0; i < 150; i++)
        fr_buf_puts(&b, "\xc3\xa9");
    assert_int_equal(run_whole(&c, 500, fr_buf_str(&b), &r, &err, NULL), FR_EHTTP);
    json_t *valid = json_string(err.msg); /* NULL when not valid UTF-8 */
    assert_non_null(valid);
    json_decref(valid);
    fr_buf_close(&b);
}

/* The key may come back from a server (an echoing proxy, a "bad key: sk-..."
 * message); it must not reach any error message however it arrives. */
static void test_key_never_in_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    c.api_key = KEY;
    fr_reply r;
    fr_error err;
    static const adapter_key_case cases[] = {
        {401, true, "{\"error\":{\"message\":\"Incorrect API key provided: " KEY "\"}}", false},
        {500, true, "Authorization: Bearer " KEY, false},
        {200, true, "data: {\"error\":{\"message\":\"bad key " KEY "\"}}\n\n", false},
        {200, true, "data: {\"x\": " KEY "}\n\n", false},
        {200, true, "event: error\ndata: " KEY "\n\n", false},
        {200, false, "{\"error\":\"" KEY "\"}", false},
        {200, false, KEY, false},
        /* jansson quotes the token it choked on: here, part of the key. */
        {200, false, "{\"choices\": \"" KEY "\\q\"}", false},
        /* The 200-byte snippet cuts the key in half. */
        {502, true, ADAPTER_PAD180 "Bearer " KEY, false},
    };
    adapter_check_key_cases(FR_PROTO_OPENAI, &c, cases, sizeof cases / sizeof cases[0],
                            "ftp://" KEY "@host/v1");

    /* A schema reply that is not JSON quotes nothing of the key either. */
    json_t *schema = json_pack("{s:s}", "type", "object");
    c.schema = schema;
    c.stream = false;
    assert_int_equal(run_whole(&c, 200, "{\"choices\":[{\"message\":{\"content\":\"" KEY "\"}}]}",
                               &r, &err, NULL),
                     FR_EQUALITY);
    assert_null(strstr(err.msg, "SECRET"));
    json_decref(schema);
}

/* Structured output */

static void test_schema_reply_is_parsed(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s}", "type", "object");
    fr_call c = make_call(false);
    c.schema = schema;
    static const char *const contents[] = {
        "{\\\"files\\\":[\\\"a.c\\\"]}",
        "  {\\\"files\\\": [\\\"a.c\\\"]}\\n",
        "```json\\n{\\\"files\\\":[\\\"a.c\\\"]}\\n```",
        "Here you go:\\n```\\n{\\\"files\\\":[\\\"a.c\\\"]}\\n```\\nDone.",
    };
    for (size_t i = 0; i < sizeof contents / sizeof contents[0]; i++) {
        char *body = NULL;
        fr_buf b;
        fr_buf_init(&b, 0);
        fr_buf_printf(&b, "{\"choices\":[{\"message\":{\"content\":\"%s\"}}]}", contents[i]);
        body = fr_buf_take(&b);
        fr_reply r;
        fr_error err;
        int rc = run_whole(&c, 200, body, &r, &err, NULL);
        if (rc != FR_OK)
            fail_msg("content %zu: %s", i, err.msg);
        assert_non_null(r.json);
        json_t *want = json_pack("{s:[s]}", "files", "a.c");
        assert_true(json_equal(r.json, want));
        json_decref(want);
        fr_reply_close(&r);
        assert_null(r.json);
        free(body);
    }

    /* A JSON string holding a fence is parsed whole, not cut at the fence. */
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200,
                               "{\"choices\":[{\"message\":{\"content\":"
                               "\"{\\\"code\\\":\\\"```c\\\\nint x;\\\\n```\\\"}\"}}]}",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(json_string_value(json_object_get(r.json, "code")), "```c\nint x;\n```");
    fr_reply_close(&r);

    /* Not JSON: the structured output failed its quality gate; reply empty. */
    assert_int_equal(run_whole(&c, 200,
                               "{\"choices\":[{\"message\":{\"content\":\"Sorry, I can't.\"}}]}",
                               &r, &err, NULL),
                     FR_EQUALITY);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_null(r.text);
    assert_null(r.json);

    /* Without a schema the text is left alone. */
    c.schema = NULL;
    assert_int_equal(run_whole(&c, 200, COMPLETION, &r, &err, NULL), FR_OK);
    assert_null(r.json);
    fr_reply_close(&r);
    json_decref(schema);
}

/* Dispatch and helpers */

static void test_unsupported_protocols(void **state)
{
    (void)state;
    /* Every protocol a workflow can name has an adapter; a value outside
     * the enum is refused cleanly instead of crashing. */
    for (int p = FR_PROTO_OPENAI; p <= FR_PROTO_ANTHROPIC; p++) {
        fr_call c = make_call(true);
        fr_adapter *a = fr_adapter_new((fr_protocol)p, &c);
        fr_request req;
        fr_error err;
        assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
        assert_non_null(req.url);
        fr_request_close(&req);
        fr_adapter_free(a);
    }
    fr_call c = make_call(true);
    c.api_key = KEY;
    fr_adapter *a = fr_adapter_new((fr_protocol)99, &c);
    assert_non_null(a);
    fr_request req;
    fr_error err;
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
    assert_non_null(strstr(err.msg, "not supported"));
    assert_null(req.url);
    assert_int_equal(fr_adapter_feed(a, 200, "x", 1), FR_ECONFIG);
    fr_reply r;
    assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_ECONFIG);
    assert_null(r.text);
    assert_null(strstr(err.msg, "SECRET"));
    fr_adapter_free(a);
    fr_adapter_free(NULL);
    fr_reply_close(NULL);
    fr_request_close(NULL);
}

static void test_estimate_tokens(void **state)
{
    (void)state;
    assert_int_equal(fr_estimate_tokens(NULL), 0);
    assert_int_equal(fr_estimate_tokens(""), 0);
    assert_int_equal(fr_estimate_tokens("a"), 1);
    assert_int_equal(fr_estimate_tokens("abcd"), 1);
    assert_int_equal(fr_estimate_tokens("abcde"), 2);
    assert_int_equal(fr_estimate_tokens("0123456789012345678901234567890123456789"), 10);
}

/* The finish reason, normalised: the engine decides by fr_reply.finish. */

static fr_finish body_finish(const char *message, const char *fin, bool schema, char **text)
{
    char *body = NULL;
    size_t n = strlen(message) + strlen(fin) + 200;
    body = malloc(n);
    snprintf(body, n,
             "{\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
             "\"message\":%s,\"finish_reason\":%s}],\"usage\":{\"prompt_tokens\":3,"
             "\"completion_tokens\":5}}",
             message, fin);
    fr_call c = make_call(false);
    json_t *any = json_string("json");
    if (schema)
        c.schema = any;
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
    fr_finish f = r.finish;
    if (text)
        *text = strdup(r.text);
    fr_reply_close(&r);
    json_decref(any);
    free(body);
    return f;
}

static void test_finish_normalised_body(void **state)
{
    (void)state;
    const char *answer = "{\"role\":\"assistant\",\"content\":\"Hello.\"}";
    assert_int_equal(body_finish(answer, "\"stop\"", false, NULL), FR_FINISH_STOP);
    assert_int_equal(body_finish(answer, "\"eos_token\"", false, NULL), FR_FINISH_STOP);
    assert_int_equal(body_finish(answer, "\"length\"", false, NULL), FR_FINISH_LENGTH);
    assert_int_equal(body_finish(answer, "\"content_filter\"", false, NULL), FR_FINISH_REFUSED);
    assert_int_equal(body_finish(answer, "\"tool_calls\"", false, NULL), FR_FINISH_TOOL_CALL);
    assert_int_equal(body_finish(answer, "\"function_call\"", false, NULL), FR_FINISH_TOOL_CALL);
    assert_int_equal(body_finish(answer, "null", false, NULL), FR_FINISH_NONE);
    assert_int_equal(body_finish(answer, "\"abort_maybe\"", false, NULL), FR_FINISH_OTHER);
    /* A refusal (structured outputs) and tool calls say it whatever the reason. */
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":null,\"refusal\":"
                                 "\"I can't help with that.\"}",
                                 "\"stop\"", false, NULL),
                     FR_FINISH_REFUSED);
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":null,\"tool_calls\":"
                                 "[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":"
                                 "\"f\",\"arguments\":\"{}\"}}]}",
                                 "\"stop\"", false, NULL),
                     FR_FINISH_TOOL_CALL);
    /* Reasoning and no answer (DeepSeek's reasoning_content, OpenRouter's reasoning). */
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":\"\","
                                 "\"reasoning_content\":\"Let me think.\"}",
                                 "\"stop\"", false, NULL),
                     FR_FINISH_NO_ANSWER);
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":null,"
                                 "\"reasoning\":\"Hmm.\"}",
                                 "\"stop\"", false, NULL),
                     FR_FINISH_NO_ANSWER);
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":\"42\","
                                 "\"reasoning_content\":\"Let me think.\"}",
                                 "\"stop\"", false, NULL),
                     FR_FINISH_STOP);
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":\"\","
                                 "\"reasoning_content\":\"Let me think.\"}",
                                 "\"length\"", false, NULL),
                     FR_FINISH_LENGTH);
    assert_string_equal(fr_finish_name(FR_FINISH_LENGTH), "length");
    assert_string_equal(fr_finish_name(FR_FINISH_NONE), "unknown");
}

static void test_finish_cut_json_is_not_a_quality_error(void **state)
{
    (void)state;
    /* Structured output cut at max_tokens: the reply comes back with its
     * finish and no JSON, so the engine can say it was cut. */
    char *text = NULL;
    assert_int_equal(body_finish("{\"role\":\"assistant\",\"content\":\"{\\\"a\\\": [1, 2\"}",
                                 "\"length\"", true, &text),
                     FR_FINISH_LENGTH);
    assert_string_equal(text, "{\"a\": [1, 2");
    free(text);
    /* A whole answer that is not JSON is still the quality gate's. */
    fr_call c = make_call(false);
    json_t *any = json_string("json");
    c.schema = any;
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200,
                               "{\"choices\":[{\"index\":0,\"message\":{\"content\":\"nope\"},"
                               "\"finish_reason\":\"stop\"}]}",
                               &r, &err, NULL),
                     FR_EQUALITY);
    json_decref(any);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_non_stream_edge_cases),
        cmocka_unit_test(test_non_stream_too_big),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_key_never_in_errors),
        cmocka_unit_test(test_schema_reply_is_parsed),
        cmocka_unit_test(test_unsupported_protocols),
        cmocka_unit_test(test_estimate_tokens),
        cmocka_unit_test(test_finish_normalised_body),
        cmocka_unit_test(test_finish_cut_json_is_not_a_quality_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
