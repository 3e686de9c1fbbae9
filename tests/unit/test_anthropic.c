/* Tests for the Anthropic Messages adapter through the public provider API:
 * the request a server receives, and the reply a caller gets however the
 * body is cut into pieces, for text and for structured output (a forced
 * tool). */

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

#define KEY "FAKE-ant-api03-SECRET-0123456789abcdef"

static fr_call make_call(bool stream)
{
    fr_call c = {
        .base_url = "https://api.anthropic.com",
        .model = "claude-sonnet-4-5",
        .system = "You are terse.",
        .prompt = "Say hello to the world.",
        .max_tokens = 64,
        .temperature = 0.2,
        .stream = stream,
    };
    return c;
}

static const adapter_proto PROTO = {
    .proto = FR_PROTO_ANTHROPIC,
    .name = "anthropic",
    .accept = "text/event-stream",
    .auth = "x-api-key",
    .auth_prefix = "",
    .never = "Authorization",
    .extra = {"anthropic-version", "2023-06-01"},
    .stream_headers = 3,
};

/* Request building */

static void test_url_joining(void **state)
{
    (void)state;
    static const adapter_url urls[] = {
        {"https://api.anthropic.com", "https://api.anthropic.com/v1/messages"},
        {"https://api.anthropic.com/", "https://api.anthropic.com/v1/messages"},
        {"http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/messages"},
        {"http://127.0.0.1:8080/v1//", "http://127.0.0.1:8080/v1/messages"},
        {"https://gateway.example/proxy/anthropic",
         "https://gateway.example/proxy/anthropic/v1/messages"},
        {"https://gateway.example/anthropic/v1/", "https://gateway.example/anthropic/v1/messages"},
        /* Neither a host called v1 nor /v10 is the /v1 prefix. */
        {"http://v1", "http://v1/v1/messages"},
        {"http://host/v10", "http://host/v10/v1/messages"},
        {"ftp://api.anthropic.com", NULL},
        {"api.anthropic.com", NULL},
        {"", NULL},
        {NULL, NULL},
        {"http://", NULL},
        {"http://host /v1", NULL},
    };
    fr_call c = make_call(true);
    adapter_check_urls(&PROTO, &c, urls, sizeof urls / sizeof urls[0]);
}

static void test_headers(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_check_headers(&PROTO, &c, KEY);
}

static json_t *request_body(const fr_call *c)
{
    return adapter_request_body(FR_PROTO_ANTHROPIC, c);
}

static void test_body_fields(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    json_t *b = request_body(&c);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "claude-sonnet-4-5");
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 64);
    /* The system prompt is top-level; messages hold only the user turn. */
    assert_string_equal(json_string_value(json_object_get(b, "system")), "You are terse.");
    json_t *msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    json_t *m0 = json_array_get(msgs, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "role")), "user");
    assert_string_equal(json_string_value(json_object_get(m0, "content")),
                        "Say hello to the world.");
    assert_float_equal(json_number_value(json_object_get(b, "temperature")), 0.2, 1e-12);
    assert_true(json_is_true(json_object_get(b, "stream")));
    assert_null(json_object_get(b, "tools"));
    assert_null(json_object_get(b, "tool_choice"));
    assert_null(json_object_get(b, "response_format"));
    assert_null(json_object_get(b, "stream_options"));
    json_decref(b);

    /* No system field without a system prompt; max_tokens is required by
     * the API, so a task without one still sends the default; temperature
     * above Anthropic's range is clamped; temperature 0 is sent. */
    static const struct {
        const char *system;
        int max_tokens;
        double temperature;
        long want_max;
        double want_temp; /* -1: absent */
    } cases[] = {
        {"", 0, 1.7, 4096, 1.0},      {NULL, -5, 0.0, 4096, 0.0}, {"", 1, 1.0, 1, 1.0},
        {"", 8192, -1.0, 8192, -1.0}, {"", 100, 0.99, 100, 0.99},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        c.system = cases[i].system;
        c.max_tokens = cases[i].max_tokens;
        c.temperature = cases[i].temperature;
        c.stream = false;
        b = request_body(&c);
        assert_null(json_object_get(b, "system"));
        assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), cases[i].want_max);
        json_t *t = json_object_get(b, "temperature");
        if (cases[i].want_temp < 0) {
            assert_null(t);
        } else {
            assert_true(json_is_number(t));
            assert_float_equal(json_number_value(t), cases[i].want_temp, 1e-12);
        }
        assert_true(json_is_false(json_object_get(b, "stream")));
        json_decref(b);
    }

    /* Invalid UTF-8 in the prompt still gives a valid message. */
    c.prompt = "caf\xe9 ok";
    b = request_body(&c);
    msgs = json_object_get(b, "messages");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "caf\xef\xbf\xbd ok");
    json_decref(b);

    /* The Messages API has no seed (an unknown field is a 400): a task's seed
     * is not sent; and max_tokens is its one limit field whatever
     * max_completion_tokens says (that setting is OpenAI-compatible only). */
    c.has_seed = true;
    c.seed = 42;
    c.max_completion_tokens = true;
    c.max_tokens = 64;
    b = request_body(&c);
    assert_null(json_object_get(b, "seed"));
    assert_null(json_object_get(b, "max_completion_tokens"));
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 64);
    json_decref(b);
}

/* Checks that `b` forces the tool "output" whose input_schema is `want`. */
static void check_forced_tool(json_t *b, const json_t *want)
{
    json_t *tools = json_object_get(b, "tools");
    assert_int_equal(json_array_size(tools), 1);
    json_t *t = json_array_get(tools, 0);
    assert_string_equal(json_string_value(json_object_get(t, "name")), "output");
    assert_string_equal(json_string_value(json_object_get(t, "description")),
                        "Return the result as this tool's input.");
    assert_true(json_equal(json_object_get(t, "input_schema"), (json_t *)want));
    json_t *choice = json_object_get(b, "tool_choice");
    assert_int_equal(json_object_size(choice), 2);
    assert_string_equal(json_string_value(json_object_get(choice, "type")), "tool");
    assert_string_equal(json_string_value(json_object_get(choice, "name")), "output");
    assert_null(json_object_get(b, "response_format"));
}

static void test_body_tools(void **state)
{
    (void)state;
    fr_call c = make_call(true);

    json_t *schema = json_loads("{\"type\":\"object\",\"required\":[\"files\"],"
                                "\"properties\":{\"files\":{\"type\":\"array\","
                                "\"items\":{\"type\":\"string\"}}}}",
                                0, NULL);
    c.schema = schema;
    json_t *b = request_body(&c);
    check_forced_tool(b, schema);
    json_decref(b);

    /* "json": any object. */
    json_t *any = json_string("json");
    c.schema = any;
    b = request_body(&c);
    json_t *want = json_pack("{s:s}", "type", "object");
    check_forced_tool(b, want);
    json_decref(want);
    json_decref(b);

    /* A schema for something other than an object is wrapped, because a
     * tool's input is always an object. */
    json_t *arr = json_pack("{s:s,s:{s:s}}", "type", "array", "items", "type", "integer");
    c.schema = arr;
    b = request_body(&c);
    want = json_pack("{s:s,s:{s:O},s:[s]}", "type", "object", "properties", "value", arr,
                     "required", "value");
    check_forced_tool(b, want);
    json_decref(want);
    json_decref(b);

    json_decref(arr);
    json_decref(any);
    json_decref(schema);
}

/* Streaming: text */

// clang-format off
#define EV(name, data) "event: " name "\ndata: " data "\n\n"
#define TEXT_DELTA(t)                                                                              \
    EV("content_block_delta",                                                                      \
       "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","         \
       "\"text\":\"" t "\"}}")
#define MESSAGE_START(usage)                                                                       \
    EV("message_start",                                                                            \
       "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\","         \
       "\"type\":\"message\",\"role\":\"assistant\",\"content\":[],"                               \
       "\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null"      \
       usage "}}")
#define USAGE_START                                                                                \
    ",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":100,"                         \
    "\"cache_read_input_tokens\":2000,\"output_tokens\":1}"
#define TEXT_START                                                                                 \
    EV("content_block_start",                                                                      \
       "{\"type\":\"content_block_start\",\"index\":0,"                                            \
       "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
#define BLOCK_STOP(i) EV("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":" i "}")
#define MESSAGE_DELTA(stop, usage)                                                                 \
    EV("message_delta",                                                                            \
       "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"" stop "\","                      \
       "\"stop_sequence\":null}" usage "}")
#define MESSAGE_STOP EV("message_stop", "{\"type\":\"message_stop\"}")

/* A stream as Anthropic sends it: a ping between blocks, text split over
 * deltas (one with a raw multi-byte character, one with an escape), usage
 * at the start with cache counts and the output total in message_delta. */
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
    assert_string_equal(r->text, TEXT);
    assert_string_equal(r->finish_reason, "end_turn");
    assert_string_equal(r->model, "claude-sonnet-4-5-20250929");
    /* Anthropic's input_tokens excludes the cache: every prompt token
     * counts as input, the cache reads also as cached. */
    assert_int_equal(r->usage.input, 25 + 100 + 2000);
    assert_int_equal(r->usage.cached, 2000);
    assert_int_equal(r->usage.output, 15);
    assert_false(r->usage.estimated);
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
    assert_string_equal(r.text, "A reply of some length.");
    assert_true(r.usage.estimated);
    assert_int_equal(r.usage.input, fr_estimate_tokens(c.system) + fr_estimate_tokens(c.prompt));
    assert_int_equal(r.usage.output, fr_estimate_tokens("A reply of some length."));
    assert_int_equal(r.usage.cached, 0);
    fr_reply_close(&r);

    /* Usage only in message_delta, without cache fields: read as is. */
    s = MESSAGE_START("") TEXT_START TEXT_DELTA("Hi")
        MESSAGE_DELTA("max_tokens", ",\"usage\":{\"input_tokens\":7,\"output_tokens\":3}")
            MESSAGE_STOP;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_string_equal(r.finish_reason, "max_tokens");
    assert_int_equal(r.usage.input, 7);
    assert_int_equal(r.usage.output, 3);
    assert_int_equal(r.usage.cached, 0);
    assert_false(r.usage.estimated);
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
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_string_equal(r.text, "plain");
    assert_int_equal(r.usage.output, 1);
    fr_reply_close(&r);
}

/* Streaming: structured output */

// clang-format off
#define TOOL_START(i, name)                                                                        \
    EV("content_block_start",                                                                      \
       "{\"type\":\"content_block_start\",\"index\":" i ",\"content_block\":{\"type\":"            \
       "\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"" name "\","             \
       "\"input\":{}}}")
#define JSON_DELTA(i, j)                                                                           \
    EV("content_block_delta",                                                                      \
       "{\"type\":\"content_block_delta\",\"index\":" i ",\"delta\":{\"type\":"                    \
       "\"input_json_delta\",\"partial_json\":\"" j "\"}}")

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

#define TOOL_JSON "{\"files\":[\"a.c\",\"b.c\"],\"n\":2}"

static void check_tool_reply(const fr_reply *r)
{
    json_t *want = json_loads(TOOL_JSON, 0, NULL);
    assert_non_null(r->json);
    assert_true(json_equal(r->json, want));
    json_decref(want);
    /* The text is the structured output as compact JSON. */
    assert_string_equal(r->text, TOOL_JSON);
    assert_string_equal(r->finish_reason, "tool_use");
    assert_string_equal(r->model, "claude-sonnet-4-5-20250929");
    assert_int_equal(r->usage.input, 2125);
    assert_int_equal(r->usage.cached, 2000);
    assert_int_equal(r->usage.output, 30);
    assert_false(r->usage.estimated);
}

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
    size_t len = strlen(MESSAGE);
    for (size_t i = 0; i <= len; i += 7) {
        size_t cut[1] = {i};
        fr_reply r;
        fr_error err;
        assert_int_equal(run(&c, 200, MESSAGE, len, cut, 1, &r, &err, NULL), FR_OK);
        assert_string_equal(r.text, "Line one\nLine two");
        assert_string_equal(r.finish_reason, "max_tokens");
        assert_string_equal(r.model, "claude-haiku-4-5-20251001");
        assert_int_equal(r.usage.input, 36);
        assert_int_equal(r.usage.output, 8);
        assert_int_equal(r.usage.cached, 16);
        assert_false(r.usage.estimated);
        assert_null(r.json);
        fr_reply_close(&r);
    }
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
        cmocka_unit_test(test_url_joining),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_body_tools),
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
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_non_stream_tool_use),
        cmocka_unit_test(test_non_stream_edge_cases),
        cmocka_unit_test(test_finish_normalised),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_key_never_in_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
