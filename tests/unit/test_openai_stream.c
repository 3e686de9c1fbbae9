/* Tests for the OpenAI-compatible adapter through the public provider API:
 * the reply a caller gets from a streamed answer however the body is cut
 * into pieces, what a stream may do wrong, keep-alives as no progress, and
 * the finish reason of a stream normalised. */

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

/* Streaming */

/* A stream as vLLM/OpenRouter send it: a role chunk, content split over
 * chunks (one with a raw multi-byte character, one with an escape), a
 * processing comment, a finish chunk, then usage with empty choices. */
// clang-format off
#define CHUNK(delta, fin)                                                                   \
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"      \
    "\"model\":\"qwen2.5-coder-7b\",\"choices\":[{\"index\":0,\"delta\":" delta             \
    ",\"logprobs\":null,\"finish_reason\":" fin "}]}\n\n"

static const char *const STREAM =
    ": OPENROUTER PROCESSING\n\n"
    CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null")
    CHUNK("{\"content\":\"Hello\"}", "null")
    ": keep-alive\n\n"
    CHUNK("{\"content\":\", w\xc3\xb6rld\"}", "null")
    CHUNK("{\"content\":\"! \\u2603\"}", "null")
    CHUNK("{}", "\"stop\"")
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
    "\"model\":\"qwen2.5-coder-7b\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,"
    "\"completion_tokens\":5,\"total_tokens\":17,"
    "\"prompt_tokens_details\":{\"cached_tokens\":3}}}\n\n"
    "data: [DONE]\n\n";
// clang-format on

#define TEXT "Hello, w\xc3\xb6rld! \xe2\x98\x83"

static void check_stream_reply(const fr_reply *r)
{
    adapter_check_reply(r, &(adapter_want){TEXT, "stop", "qwen2.5-coder-7b", 12, 5, 3, false});
    assert_null(r->json);
}

static void test_stream_every_split(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_every_split(FR_PROTO_OPENAI, &c, STREAM, check_stream_reply);
    char *s = adapter_crlf(STREAM);
    adapter_every_split(FR_PROTO_OPENAI, &c, s, check_stream_reply);
    free(s);
}

static void test_stream_usage_on_chunk_with_choices(void **state)
{
    (void)state;
    const char *s = CHUNK(
        "{\"content\":\"Hi\"}",
        "null") "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},"
                "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":40,"
                "\"completion_tokens\":2,\"prompt_tokens_details\":null}}\n\n"
                "data: [DONE]\n\n";
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    adapter_check_reply(&r, &(adapter_want){"Hi!", "length", "m", 40, 2, 0, false});
    fr_reply_close(&r);
}

static void test_stream_without_usage_is_estimated(void **state)
{
    (void)state;
    const char *s =
        CHUNK("{\"content\":\"A reply of some length.\"}", "\"stop\"") "data: [DONE]\n\n";
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_true(r.usage.estimated);
    assert_int_equal(r.usage.input, fr_estimate_tokens(c.system) + fr_estimate_tokens(c.prompt));
    assert_int_equal(r.usage.output, fr_estimate_tokens("A reply of some length."));
    assert_true(r.usage.output > 0);
    fr_reply_close(&r);

    /* Usage that books a non-empty reply as zero output is not trusted. */
    s = CHUNK(
        "{\"content\":\"Some text\"}",
        "\"stop\"") "data: "
                    "{\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":0}}\n\n"
                    "data: [DONE]\n\n";
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_int_equal(r.usage.input, 9);
    assert_int_equal(r.usage.output, fr_estimate_tokens("Some text"));
    assert_true(r.usage.estimated);
    fr_reply_close(&r);
}

static void test_stream_missing_done_is_truncated(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    const char *done = strstr(STREAM, "data: [DONE]");
    size_t upto = (size_t)(done - STREAM);
    /* Cut anywhere before the terminator is complete, even right after a
     * finish_reason "stop": never a short answer. */
    for (size_t n = 0; n <= upto + strlen("data: [DONE]"); n++) {
        fr_reply r;
        fr_error err;
        int frc;
        int rc = run(&c, 200, STREAM, n, NULL, 0, &r, &err, &frc);
        assert_int_equal(frc, FR_OK);
        if (rc != FR_ETRUNCATED)
            fail_msg("cut at %zu gave %s", n, fr_err_name(rc));
        assert_int_equal(err.code, FR_ETRUNCATED);
        assert_null(r.text);
        assert_null(r.model);
    }
}

/* Some servers end with "data: [DONE]\n" and no blank line. */
static void test_stream_done_without_blank_line(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    size_t len = strlen(STREAM) - 1;
    fr_reply r;
    fr_error err;
    assert_int_equal(run(&c, 200, STREAM, len, NULL, 0, &r, &err, NULL), FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);

    /* Stray spaces around the terminator, CRLF, no blank line. */
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_append(&b, STREAM, strlen(STREAM) - strlen("data: [DONE]\n\n"));
    fr_buf_puts(&b, "data:  [DONE] \r\n");
    assert_int_equal(run_whole(&c, 200, fr_buf_str(&b), &r, &err, NULL), FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);
    fr_buf_close(&b);
}

static void test_stream_error_event(void **state)
{
    (void)state;
    const char *s = CHUNK("{\"content\":\"Hel\"}",
                          "null") "data: {\"error\":{\"message\":\"Provider returned "
                                  "error\",\"code\":502}}\n\n" CHUNK("{\"content\":\"lo\"}",
                                                                     "null") "data: [DONE]\n\n";
    fr_call c = make_call(true);
    fr_adapter *a = fr_adapter_new(FR_PROTO_OPENAI, &c);
    assert_int_equal(fr_adapter_feed(a, 200, s, strlen(s)), FR_EPROTO);
    /* Sticky until the caller aborts. */
    assert_int_equal(fr_adapter_feed(a, 200, "data: [DONE]\n\n", 14), FR_EPROTO);
    fr_reply r;
    fr_error err;
    assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_EPROTO);
    assert_non_null(strstr(err.msg, "Provider returned error"));
    assert_null(r.text);
    fr_adapter_free(a);

    /* An `event: error` with a plain-text payload is an error too. */
    s = "event: error\ndata: upstream overloaded\n\n";
    int frc;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "upstream overloaded"));
}

static void test_stream_malformed_json(void **state)
{
    (void)state;
    const char *s = CHUNK("{\"content\":\"ok\"}", "null") "data: {\"choices\": [\n\n"
                                                          "data: [DONE]\n\n";
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    int frc;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "malformed JSON"));

    /* JSON that is not an object is malformed for this protocol too. */
    assert_int_equal(run_whole(&c, 200, "data: [1,2]\n\ndata: [DONE]\n\n", &r, &err, &frc),
                     FR_EPROTO);
}

/* A server that ignores "stream": true and answers one JSON object. */
static void test_stream_answered_as_json(void **state)
{
    (void)state;
    const char *s = "\n{\"object\":\"chat.completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
                    "\"message\":{\"role\":\"assistant\",\"content\":\"plain\"},"
                    "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,"
                    "\"completion_tokens\":1}}";
    fr_call c = make_call(true);
    adapter_check_stream_answered_whole(ADAPTER_UNDER_TEST, &c, s);
}

/* Keep-alive comments are not content: only events move the progress the
 * engine's idle timer reads. */
static void test_progress(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_check_progress(FR_PROTO_OPENAI, &c, ": keep-alive\n\n",
                           "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
}

/* The finish reason, normalised: the engine decides by fr_reply.finish. */

static void test_finish_normalised_stream(void **state)
{
    (void)state;
    static const struct {
        const char *delta, *fin;
        fr_finish want;
    } cases[] = {
        {"{\"content\":\"Hi\"}", "\"stop\"", FR_FINISH_STOP},
        {"{\"content\":\"Hi\"}", "\"length\"", FR_FINISH_LENGTH},
        {"{\"content\":\"Hi\"}", "\"content_filter\"", FR_FINISH_REFUSED},
        {"{\"refusal\":\"No.\"}", "\"stop\"", FR_FINISH_REFUSED},
        {"{\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"type\":\"function\","
         "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}",
         "\"tool_calls\"", FR_FINISH_TOOL_CALL},
        {"{\"content\":null,\"reasoning_content\":\"Thinking...\"}", "\"stop\"",
         FR_FINISH_NO_ANSWER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":%s,"
                 "\"finish_reason\":null}]}\n\n"
                 "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},"
                 "\"finish_reason\":%s}]}\n\ndata: [DONE]\n\n",
                 cases[i].delta, cases[i].fin);
        fr_call c = make_call(true);
        fr_reply r;
        fr_error err;
        assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
        assert_int_equal(r.finish, cases[i].want);
        fr_reply_close(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_usage_on_chunk_with_choices),
        cmocka_unit_test(test_stream_without_usage_is_estimated),
        cmocka_unit_test(test_stream_missing_done_is_truncated),
        cmocka_unit_test(test_stream_done_without_blank_line),
        cmocka_unit_test(test_stream_error_event),
        cmocka_unit_test(test_stream_malformed_json),
        cmocka_unit_test(test_stream_answered_as_json),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_finish_normalised_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
