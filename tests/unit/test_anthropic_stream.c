/* Tests for the Anthropic Messages adapter through the public provider API:
 * the reply a caller gets from a streamed answer however the body is cut
 * into pieces, for text and for structured output (a forced tool), and
 * what a stream may do wrong. */

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

/* Streaming: text */

/* A stream as Anthropic sends it: a ping between blocks, text split over
 * deltas (one with a raw multi-byte character, one with an escape), usage
 * at the start with cache counts and the output total in message_delta. */
// clang-format off
static const char *const STREAM =
    MESSAGE_START(USAGE_START)
    TEXT_START
    EV("ping", "{\"type\": \"ping\"}")
    TEXT_DELTA("Hello")
    TEXT_DELTA(", w\xc3\xb6rld")
    TEXT_DELTA("! \\u2603")
    BLOCK_STOP("0")
    MESSAGE_DELTA("end_turn", ",\"usage\":{\"output_tokens\":15}")
    MESSAGE_STOP;
// clang-format on

#define TEXT "Hello, w\xc3\xb6rld! \xe2\x98\x83"

static void check_stream_reply(const fr_reply *r)
{
    /* Anthropic's input_tokens excludes the cache: every prompt token
     * counts as input, the cache reads also as cached. */
    adapter_check_reply(r, &(adapter_want){TEXT, "end_turn", "claude-sonnet-4-5-20250929",
                                           25 + 100 + 2000, 15, 2000, false});
    assert_null(r->json);
}

typedef adapter_reply_check reply_check;

/* Runs `s` through `c` whole, at every split and byte by byte; every run
 * must pass `check` (adapter_harness.h). */
static void check_every_split(const fr_call *c, const char *s, reply_check check)
{
    adapter_every_split(FR_PROTO_ANTHROPIC, c, s, check);
}

static void test_stream_every_split(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    check_every_split(&c, STREAM, check_stream_reply);
    char *s = adapter_crlf(STREAM);
    check_every_split(&c, s, check_stream_reply);
    free(s);
}

/* Keep-alives (comments, Anthropic's ping events) are no progress for the
 * idle timer; an event of content is. */
static void test_progress(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_check_progress(FR_PROTO_ANTHROPIC, &c,
                           ": keep-alive\n\n" EV("ping", "{\"type\":\"ping\"}"), TEXT_DELTA("hi"));
}

/* Time to first token: started turns true with the first text, not with
 * message_start or a ping. */
static void test_stream_started(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_adapter *a = fr_adapter_new(FR_PROTO_ANTHROPIC, &c);
    const char *first = strstr(STREAM, "event: content_block_delta");
    assert_int_equal(fr_adapter_feed(a, 200, STREAM, (size_t)(first - STREAM)), FR_OK);
    assert_false(fr_adapter_started(a));
    assert_int_equal(fr_adapter_feed(a, 200, first, strlen(first)), FR_OK);
    assert_true(fr_adapter_started(a));
    fr_adapter_free(a);
}

static void test_stream_without_usage_is_estimated(void **state)
{
    (void)state;
    const char *s = MESSAGE_START("") TEXT_START TEXT_DELTA("A reply of some length.")
        BLOCK_STOP("0") MESSAGE_DELTA("end_turn", "") MESSAGE_STOP;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    adapter_check_reply(&r,
                        &(adapter_want){"A reply of some length.", NULL, NULL,
                                        fr_estimate_tokens(c.system) + fr_estimate_tokens(c.prompt),
                                        fr_estimate_tokens("A reply of some length."), 0, true});
    fr_reply_close(&r);

    /* Usage only in message_delta, without cache fields: read as is. */
    s = MESSAGE_START("") TEXT_START TEXT_DELTA("Hi")
        MESSAGE_DELTA("max_tokens", ",\"usage\":{\"input_tokens\":7,\"output_tokens\":3}")
            MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    adapter_check_reply(&r, &(adapter_want){NULL, "max_tokens", NULL, 7, 3, 0, false});
    fr_reply_close(&r);
}

static void test_stream_missing_stop_is_truncated(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    /* message_stop counts once its data line is complete (the blank line
     * after it may be missing); every shorter stream is cut short, even
     * one that already carries stop_reason "end_turn". */
    const char *stop = strstr(STREAM, "event: message_stop");
    const char *line_end = strchr(strstr(stop, "data:"), '\n');
    size_t complete = (size_t)(line_end - STREAM) + 1;
    for (size_t n = 0; n < complete; n++) {
        fr_reply r;
        fr_error err;
        int frc;
        int rc = run(&c, 200, STREAM, n, NULL, 0, &r, &err, &frc);
        assert_int_equal(frc, FR_OK);
        if (rc != FR_ETRUNCATED)
            fail_msg("cut at %zu gave %s", n, fr_err_name(rc));
        assert_int_equal(err.code, FR_ETRUNCATED);
        assert_string_equal(err.source, "anthropic");
        assert_null(r.text);
        assert_null(r.model);
    }
    fr_reply r;
    fr_error err;
    assert_int_equal(run(&c, 200, STREAM, complete, NULL, 0, &r, &err, NULL), FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);

    /* An empty 200 reply to a streaming request is cut short too. */
    assert_int_equal(run_whole(&c, 200, "", &r, &err, NULL), FR_ETRUNCATED);
    assert_non_null(strstr(err.msg, "message_stop"));
}

/* The error event from the API reference, after some text. */
#define OVERLOADED                                                                                 \
    EV("error", "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","                    \
                "\"message\":\"Overloaded\"}}")

static void test_stream_error_event(void **state)
{
    (void)state;
    const char *s = MESSAGE_START(USAGE_START) TEXT_START TEXT_DELTA("Hel")
        OVERLOADED TEXT_DELTA("lo") MESSAGE_DELTA("end_turn", "") MESSAGE_STOP;
    fr_call c = make_call(true);
    fr_adapter *a = fr_adapter_new(FR_PROTO_ANTHROPIC, &c);
    assert_int_equal(fr_adapter_feed(a, 200, s, strlen(s)), FR_EPROTO);
    /* Sticky until the caller aborts. */
    assert_int_equal(fr_adapter_feed(a, 200, MESSAGE_STOP, strlen(MESSAGE_STOP)), FR_EPROTO);
    fr_reply r;
    fr_error err;
    assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_EPROTO);
    assert_string_equal(err.msg, "overloaded_error: Overloaded");
    char line[256];
    assert_string_equal(fr_error_format(&err, line, sizeof line),
                        "anthropic: overloaded_error: Overloaded");
    assert_null(r.text);
    fr_adapter_free(a);

    /* The same at every split point. */
    size_t len = strlen(s);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        int frc;
        assert_int_equal(run(&c, 200, s, len, cut, 1, &r, &err, &frc), FR_EPROTO);
        assert_int_equal(frc, FR_EPROTO);
        assert_string_equal(err.msg, "overloaded_error: Overloaded");
    }

    /* The last event, without its blank line, still counts. */
    s = MESSAGE_START(USAGE_START) "event: error\ndata: {\"type\":\"error\",\"error\":"
                                   "{\"type\":\"api_error\",\"message\":\"Internal\"}}\n";
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "api_error: Internal");

    /* Without an `event:` line the data's type decides. */
    s = "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
        "\"message\":\"Overloaded\"}}\n\n";
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "overloaded_error: Overloaded");

    /* A plain-text error payload. */
    int frc;
    s = "event: error\ndata: upstream overloaded\n\n";
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "upstream overloaded"));
}

/* Event types this adapter does not know (newer API features, a thinking
 * block, a nameless event of an unknown type) change nothing. */
static void test_stream_unknown_events_ignored(void **state)
{
    (void)state;
    // clang-format off
    const char *s =
        ": a comment\n\n"
        MESSAGE_START(USAGE_START)
        EV("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,"
           "\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,"
           "\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Hmm.\"}}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,"
           "\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}")
        BLOCK_STOP("0")
        EV("some_future_event", "not even JSON")
        "data: {\"type\":\"another_future_event\",\"x\":1}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,"
           "\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello, w\xc3\xb6rld\"}}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,"
           "\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}")
        EV("ping", "{\"type\": \"ping\"}")
        EV("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":1,"
           "\"delta\":{\"type\":\"text_delta\",\"text\":\"! \\u2603\"}}")
        BLOCK_STOP("1")
        MESSAGE_DELTA("end_turn", ",\"usage\":{\"output_tokens\":15}")
        MESSAGE_STOP
        TEXT_DELTA("after the end");
    // clang-format on
    fr_call c = make_call(true);
    check_every_split(&c, s, check_stream_reply);
}

static void test_stream_malformed_json(void **state)
{
    (void)state;
    const char *s = MESSAGE_START(USAGE_START)
        TEXT_START EV("content_block_delta", "{\"type\":\"content_block_delta\",\"delta\":")
            MESSAGE_STOP;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    int frc;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "malformed JSON in stream event 3"));

    s = MESSAGE_START(USAGE_START) EV("message_delta", "[1,2]") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_non_null(strstr(err.msg, "not an object"));
}

/* A model stuck on one word is cut at FR_PROVIDER_MAX_REPEATS, not at
 * the reply cap; one fewer is still a reply. */
static void test_stream_repeated_chunk(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    for (int n = 255; n <= 256; n++) {
        fr_buf b;
        fr_buf_init(&b, 0);
        fr_buf_puts(&b, MESSAGE_START(USAGE_START) TEXT_START);
        for (int i = 0; i < n; i++)
            fr_buf_puts(&b, TEXT_DELTA("la "));
        fr_buf_puts(&b, MESSAGE_DELTA("end_turn", "") MESSAGE_STOP);
        fr_reply r;
        fr_error err;
        int frc;
        int rc = run_whole(&c, 200, fr_buf_str(&b), &r, &err, &frc);
        if (n == 255) {
            assert_int_equal(rc, FR_OK);
            assert_int_equal(strlen(r.text), 3 * 255);
            fr_reply_close(&r);
        } else {
            assert_int_equal(frc, FR_EPROTO);
            assert_int_equal(rc, FR_EPROTO);
            assert_non_null(strstr(err.msg, "repeats the same word 256 times"));
            assert_null(r.text);
        }
        fr_buf_close(&b);
    }
}

/* A server that ignores "stream": true and answers one message object. */
static void test_stream_answered_as_json(void **state)
{
    (void)state;
    const char *s = "\n{\"type\":\"message\",\"model\":\"m\",\"content\":[{\"type\":\"text\","
                    "\"text\":\"plain\"}],\"stop_reason\":\"end_turn\","
                    "\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}";
    fr_call c = make_call(true);
    adapter_check_stream_answered_whole(ADAPTER_UNDER_TEST, &c, s);
}

/* Streaming: structured output */

// clang-format off
static const char *const TOOL_STREAM =
    MESSAGE_START(USAGE_START)
    TOOL_START("0", "output")
    EV("ping", "{\"type\": \"ping\"}")
    JSON_DELTA("0", "")
    JSON_DELTA("0", "{\\\"files\\\": [")
    JSON_DELTA("0", "\\\"a.c\\\", \\\"b")
    JSON_DELTA("0", ".c\\\"], \\\"n\\\": 2}")
    BLOCK_STOP("0")
    MESSAGE_DELTA("tool_use", ",\"usage\":{\"output_tokens\":30}")
    MESSAGE_STOP;
// clang-format on

static void test_stream_tool_use(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s}", "type", "object");
    fr_call c = make_call(true);
    c.schema = schema;
    check_every_split(&c, TOOL_STREAM, check_tool_reply);

    /* The same with "json" for any object. */
    json_t *any = json_string("json");
    c.schema = any;
    check_every_split(&c, TOOL_STREAM, check_tool_reply);

    /* Tool input counts as the first content. */
    fr_adapter *a = fr_adapter_new(FR_PROTO_ANTHROPIC, &c);
    const char *first = strstr(TOOL_STREAM, "{\\\"files");
    first = strstr(first, "\n\n") + 2;
    assert_int_equal(fr_adapter_feed(a, 200, TOOL_STREAM, (size_t)(first - TOOL_STREAM) - 2),
                     FR_OK);
    assert_false(fr_adapter_started(a));
    assert_int_equal(fr_adapter_feed(a, 200, "\n\n", 2), FR_OK);
    assert_true(fr_adapter_started(a));
    fr_adapter_free(a);

    json_decref(any);
    json_decref(schema);
}

static void test_stream_tool_use_variants(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s}", "type", "object");
    fr_call c = make_call(true);
    c.schema = schema;
    fr_reply r;
    fr_error err;

    /* Text before the tool, and another tool first: the tool named
     * "output" is the answer, whatever block index it has. */
    // clang-format off
    const char *s =
        MESSAGE_START(USAGE_START)
        TEXT_START TEXT_DELTA("Let me answer.") BLOCK_STOP("0")
        TOOL_START("1", "scratch") JSON_DELTA("1", "{\\\"x\\\":1}") BLOCK_STOP("1")
        TOOL_START("2", "output") JSON_DELTA("2", "{\\\"files\\\":[\\\"a.c\\\",")
        JSON_DELTA("1", "{\\\"ignored\\\":true}")
        JSON_DELTA("2", "\\\"b.c\\\"],\\\"n\\\":2}") BLOCK_STOP("2")
        MESSAGE_DELTA("tool_use", ",\"usage\":{\"output_tokens\":30}")
        MESSAGE_STOP;
    // clang-format on
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    check_tool_reply(&r);
    fr_reply_close(&r);

    /* A tool called with no input deltas: its input as it started ({}). */
    s = MESSAGE_START(USAGE_START) TOOL_START("0", "output") BLOCK_STOP("0")
        MESSAGE_DELTA("tool_use", ",\"usage\":{\"output_tokens\":3}") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_true(json_is_object(r.json));
    assert_int_equal(json_object_size(r.json), 0);
    assert_string_equal(r.text, "{}");
    fr_reply_close(&r);

    /* Input cut at max_tokens: the reply says it was cut (the engine fails
     * the attempt as truncated), with the cut input as its text. */
    s = MESSAGE_START(USAGE_START) TOOL_START("0", "output")
        JSON_DELTA("0", "{\\\"files\\\": [\\\"a.c")
            MESSAGE_DELTA("max_tokens", ",\"usage\":{\"output_tokens\":64}") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_int_equal(r.finish, FR_FINISH_LENGTH);
    assert_string_equal(r.text, "{\"files\": [\"a.c");
    assert_null(r.json);
    fr_reply_close(&r);

    /* An input that is JSON but not an object. */
    s = MESSAGE_START(USAGE_START) TOOL_START("0", "output") JSON_DELTA("0", "[1, 2]")
        MESSAGE_DELTA("tool_use", "") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "not a JSON object"));

    /* A model (or server) that answered in text: the text is parsed. */
    s = MESSAGE_START(USAGE_START) TEXT_START TEXT_DELTA("```json\\n{\\\"files\\\":")
        TEXT_DELTA("[\\\"a.c\\\",\\\"b.c\\\"],\\\"n\\\":2}\\n```") MESSAGE_DELTA("end_turn", "")
            MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    json_t *want = json_loads(TOOL_JSON, 0, NULL);
    assert_true(json_equal(r.json, want));
    json_decref(want);
    assert_string_equal(r.finish_reason, "end_turn");
    fr_reply_close(&r);

    s = MESSAGE_START(USAGE_START) TEXT_START TEXT_DELTA("Sorry, I can't.")
        MESSAGE_DELTA("end_turn", "") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_null(r.text);

    /* Without a schema, text is text and a tool block changes nothing. */
    c.schema = NULL;
    s = MESSAGE_START(USAGE_START) TEXT_START TEXT_DELTA("{\\\"a\\\":1}") BLOCK_STOP("0")
        TOOL_START("1", "output") JSON_DELTA("1", "{}") MESSAGE_DELTA("end_turn", "") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_string_equal(r.text, "{\"a\":1}");
    assert_null(r.json);
    fr_reply_close(&r);
    json_decref(schema);
}

/* A schema for an array goes out wrapped and comes back unwrapped. */
static void test_stream_wrapped_schema(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s,s:{s:s}}", "type", "array", "items", "type", "integer");
    fr_call c = make_call(true);
    c.schema = schema;
    fr_reply r;
    fr_error err;
    const char *s = MESSAGE_START(USAGE_START) TOOL_START("0", "output")
        JSON_DELTA("0", "{\\\"value\\\": [1, ") JSON_DELTA("0", "2, 3]}") BLOCK_STOP("0")
            MESSAGE_DELTA("tool_use", ",\"usage\":{\"output_tokens\":9}") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    json_t *want = json_pack("[i,i,i]", 1, 2, 3);
    assert_true(json_equal(r.json, want));
    json_decref(want);
    assert_string_equal(r.text, "[1,2,3]");
    fr_reply_close(&r);

    s = MESSAGE_START(USAGE_START) TOOL_START("0", "output") JSON_DELTA("0", "[1, 2, 3]")
        MESSAGE_DELTA("tool_use", "") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EQUALITY);
    s = MESSAGE_START(USAGE_START) TOOL_START("0", "output") JSON_DELTA("0", "{\\\"v\\\": 1}")
        MESSAGE_DELTA("tool_use", "") MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "no 'value'"));
    json_decref(schema);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_started),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_stream_without_usage_is_estimated),
        cmocka_unit_test(test_stream_missing_stop_is_truncated),
        cmocka_unit_test(test_stream_error_event),
        cmocka_unit_test(test_stream_unknown_events_ignored),
        cmocka_unit_test(test_stream_malformed_json),
        cmocka_unit_test(test_stream_repeated_chunk),
        cmocka_unit_test(test_stream_answered_as_json),
        cmocka_unit_test(test_stream_tool_use),
        cmocka_unit_test(test_stream_tool_use_variants),
        cmocka_unit_test(test_stream_wrapped_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
