/* Tests for the OpenAI-compatible adapter through the public provider API:
 * the request a server receives, and the reply a caller gets however the
 * body is cut into pieces. */

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

#define KEY "sk-test-SECRET-0123456789abcdef"

static fr_call make_call(bool stream)
{
    fr_call c = {
        .base_url = "http://127.0.0.1:8000/v1",
        .model = "qwen2.5-coder",
        .system = "You are terse.",
        .prompt = "Say hello to the world.",
        .max_tokens = 64,
        .temperature = 0.2,
        .stream = stream,
    };
    return c;
}

static const adapter_proto PROTO = {
    .proto = FR_PROTO_OPENAI,
    .name = "openai",
    .accept = "text/event-stream",
    .auth = "Authorization",
    .auth_prefix = "Bearer ",
    .stream_headers = 2,
};

/* Request building */

static void test_url_joining(void **state)
{
    (void)state;
    static const adapter_url urls[] = {
        {"http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/chat/completions"},
        {"http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1/chat/completions"},
        {"https://openrouter.ai/api/v1//", "https://openrouter.ai/api/v1/chat/completions"},
        {"HTTPS://example.com/v1", "HTTPS://example.com/v1/chat/completions"},
        {"http://localhost:1234", "http://localhost:1234/chat/completions"},
        {"ftp://example.com/v1", NULL},
        {"example.com:8000/v1", NULL},
        {"", NULL},
        {NULL, NULL},
        {"http://", NULL},
        {"http:///v1", NULL},
        {"http://host /v1", NULL},
        {"http://host\r\n/v1", NULL},
        {"file:///etc/passwd", NULL},
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
    return adapter_request_body(FR_PROTO_OPENAI, c);
}

static void test_body_fields(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    json_t *b = request_body(&c);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "qwen2.5-coder");
    json_t *msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "You are terse.");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "role")),
                        "user");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "Say hello to the world.");
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 64);
    assert_float_equal(json_number_value(json_object_get(b, "temperature")), 0.2, 1e-12);
    assert_true(json_is_true(json_object_get(b, "stream")));
    assert_true(
        json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
    assert_null(json_object_get(b, "response_format"));
    json_decref(b);

    /* No system message when the agent has none; no stream_options when
     * not streaming; temperature 0 is sent, not dropped. */
    c.system = "";
    c.stream = false;
    c.temperature = 0.0;
    b = request_body(&c);
    msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")),
                        "user");
    assert_true(json_is_false(json_object_get(b, "stream")));
    assert_null(json_object_get(b, "stream_options"));
    assert_true(json_is_number(json_object_get(b, "temperature")));
    assert_float_equal(json_number_value(json_object_get(b, "temperature")), 0.0, 0);
    json_decref(b);

    /* A NULL system and invalid UTF-8 in the prompt still give a valid
     * message; the bad byte becomes U+FFFD rather than dropping the prompt. */
    c.system = NULL;
    c.prompt = "caf\xe9 ok";
    b = request_body(&c);
    msgs = json_object_get(b, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "caf\xef\xbf\xbd ok");
    json_decref(b);
}

static void test_body_response_format(void **state)
{
    (void)state;
    json_t *schema = json_loads("{\"type\":\"object\",\"required\":[\"files\"],"
                                "\"additionalProperties\":false,"
                                "\"properties\":{\"files\":{\"type\":\"array\","
                                "\"items\":{\"type\":\"string\"}}}}",
                                0, NULL);
    fr_call c = make_call(true);
    c.schema = schema;
    json_t *b = request_body(&c);
    json_t *rf = json_object_get(b, "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
    json_t *js = json_object_get(rf, "json_schema");
    assert_string_equal(json_string_value(json_object_get(js, "name")), "output");
    assert_true(json_is_true(json_object_get(js, "strict")));
    assert_true(json_equal(json_object_get(js, "schema"), schema));
    json_decref(b);
    json_decref(schema);
}

/* Returns the "strict" flag the request for `schema_text` carries: 1, 0,
 * or -1 when it is missing or not a boolean. */
static int strict_flag(const char *schema_text)
{
    json_error_t je;
    json_t *schema = json_loads(schema_text, 0, &je);
    if (!schema)
        fail_msg("bad test schema: %s: %s", je.text, schema_text);
    fr_call c = make_call(false);
    c.schema = schema;
    json_t *b = request_body(&c);
    json_t *js = json_object_get(json_object_get(b, "response_format"), "json_schema");
    json_t *strict = json_object_get(js, "strict");
    int flag = json_is_boolean(strict) ? json_is_true(strict) : -1;
    /* The schema itself is sent unchanged either way. */
    assert_true(json_equal(json_object_get(js, "schema"), schema));
    json_decref(b);
    json_decref(schema);
    return flag;
}

/* OpenAI refuses strict: true (HTTP 400) unless every object lists all its
 * properties in `required` and has additionalProperties: false, at every
 * level, and uses only the keywords strict mode supports; such a schema is
 * sent with strict: false instead. */
static void test_body_strict_only_when_it_qualifies(void **state)
{
    (void)state;
#define OBJ(props, req)                                                                            \
    "{\"type\":\"object\",\"properties\":{" props "},\"required\":[" req "],"                      \
    "\"additionalProperties\":false}"
    static const char *const qualifies[] = {
        OBJ("\"a\":{\"type\":\"string\"}", "\"a\""),
        /* Nullable emulates optional; enum, const, descriptions, numeric
         * bounds, array bounds and the supported formats are all allowed. */
        OBJ("\"a\":{\"type\":[\"string\",\"null\"],\"description\":\"maybe\"},"
            "\"b\":{\"type\":\"string\",\"enum\":[\"x\",\"y\"]},"
            "\"c\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9,\"exclusiveMaximum\":10},"
            "\"d\":{\"type\":\"array\",\"items\":{\"type\":\"number\"},\"minItems\":1,"
            "\"maxItems\":3},"
            "\"e\":{\"type\":\"string\",\"format\":\"date-time\"},"
            "\"f\":{\"const\":\"v1\"}",
            "\"a\",\"b\",\"c\",\"d\",\"e\",\"f\""),
        /* Nested objects and objects in arrays that follow the rules. */
        OBJ("\"n\":" OBJ("\"k\":{\"type\":\"boolean\"}",
                         "\"k\"") ","
                                  "\"l\":{\"type\":\"array\",\"items\":" OBJ(
                                      "\"p\":{\"type\":\"string\"}", "\"p\"") "}",
            "\"n\",\"l\""),
        "{\"type\":\"object\",\"properties\":{},\"required\":[],\"additionalProperties\":false}",
    };
    static const char *const refused[] = {
        /* An optional property (not listed in required). */
        OBJ("\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"string\"}", "\"a\""),
        /* No required at all. */
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},"
        "\"additionalProperties\":false}",
        /* additionalProperties missing, true, or a schema. */
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"]}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"],"
        "\"additionalProperties\":true}",
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"],"
        "\"additionalProperties\":{\"type\":\"string\"}}",
        /* A nested object without additionalProperties: false. */
        OBJ("\"n\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"string\"}},"
            "\"required\":[\"k\"]}",
            "\"n\""),
        /* A nested object with an optional property. */
        OBJ("\"n\":" OBJ("\"k\":{\"type\":\"string\"},\"o\":{\"type\":\"string\"}", "\"k\""),
            "\"n\""),
        /* Array items: an object without additionalProperties: false, one with
         * an optional property, and an array with no items schema. */
        OBJ("\"l\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":"
            "{\"p\":{\"type\":\"string\"}},\"required\":[\"p\"]}}",
            "\"l\""),
        OBJ("\"l\":{\"type\":\"array\",\"items\":" OBJ("\"p\":{\"type\":\"string\"},"
                                                       "\"q\":{\"type\":\"string\"}",
                                                       "\"p\"") "}",
            "\"l\""),
        OBJ("\"l\":{\"type\":\"array\"}", "\"l\""),
        /* Keywords strict mode does not support, an unsupported format. */
        OBJ("\"a\":{\"type\":\"string\",\"minLength\":1}", "\"a\""),
        OBJ("\"a\":{\"type\":\"string\",\"maxLength\":9}", "\"a\""),
        OBJ("\"a\":{\"type\":\"string\",\"default\":\"x\"}", "\"a\""),
        OBJ("\"a\":{\"type\":\"string\",\"format\":\"uri\"}", "\"a\""),
        OBJ("\"a\":{\"type\":\"object\",\"minProperties\":1,\"properties\":{},\"required\":[],"
            "\"additionalProperties\":false}",
            "\"a\""),
        /* A root that is not an object. */
        "{\"type\":\"array\",\"items\":{\"type\":\"string\"}}",
        /* Deeper than strict mode's five levels of nesting. */
        OBJ("\"a\":" OBJ(
                "\"b\":" OBJ(
                    "\"c\":" OBJ(
                        "\"d\":" OBJ("\"e\":" OBJ("\"f\":{\"type\":\"string\"}", "\"f\""), "\"e\""),
                        "\"d\""),
                    "\"c\""),
                "\"b\""),
            "\"a\""),
    };
#undef OBJ
    for (size_t i = 0; i < sizeof qualifies / sizeof *qualifies; i++)
        if (strict_flag(qualifies[i]) != 1)
            fail_msg("qualifying schema %zu not sent strict: %s", i, qualifies[i]);
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        if (strict_flag(refused[i]) != 0)
            fail_msg("schema %zu must be sent with strict: false: %s", i, refused[i]);

    /* "json" (any object) is json_object, with no strict flag at all. */
    json_t *any = json_string("json");
    fr_call c = make_call(false);
    c.schema = any;
    json_t *b = request_body(&c);
    json_t *rf = json_object_get(b, "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_object");
    assert_null(json_object_get(rf, "json_schema"));
    json_decref(b);
    json_decref(any);
}

/* A task's seed is sent when set (0 and negative seeds too), never otherwise. */
static void test_body_seed(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    json_t *b = request_body(&c);
    assert_null(json_object_get(b, "seed"));
    json_decref(b);
    static const long seeds[] = {42, 0, -7, 9007199254740993L};
    for (size_t i = 0; i < sizeof seeds / sizeof *seeds; i++) {
        c.has_seed = true;
        c.seed = seeds[i];
        b = request_body(&c);
        json_t *s = json_object_get(b, "seed");
        assert_true(json_is_integer(s));
        assert_true(json_integer_value(s) == seeds[i]);
        json_decref(b);
    }
}

/* max_tokens_field = "max_completion_tokens" sends that field instead. */
static void test_body_max_tokens_field(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    json_t *b = request_body(&c);
    assert_int_equal(json_integer_value(json_object_get(b, "max_tokens")), 64);
    assert_null(json_object_get(b, "max_completion_tokens"));
    json_decref(b);

    c.max_completion_tokens = true;
    b = request_body(&c);
    assert_int_equal(json_integer_value(json_object_get(b, "max_completion_tokens")), 64);
    assert_null(json_object_get(b, "max_tokens"));
    json_decref(b);

    /* No limit: neither field. */
    c.max_tokens = 0;
    b = request_body(&c);
    assert_null(json_object_get(b, "max_completion_tokens"));
    assert_null(json_object_get(b, "max_tokens"));
    json_decref(b);
}

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
    assert_string_equal(r->text, TEXT);
    assert_string_equal(r->finish_reason, "stop");
    assert_string_equal(r->model, "qwen2.5-coder-7b");
    assert_int_equal(r->usage.input, 12);
    assert_int_equal(r->usage.output, 5);
    assert_int_equal(r->usage.cached, 3);
    assert_false(r->usage.estimated);
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
    assert_string_equal(r.text, "Hi!");
    assert_string_equal(r.finish_reason, "length");
    assert_string_equal(r.model, "m");
    assert_int_equal(r.usage.input, 40);
    assert_int_equal(r.usage.output, 2);
    assert_int_equal(r.usage.cached, 0);
    assert_false(r.usage.estimated);
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
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    assert_string_equal(r.text, "plain");
    assert_int_equal(r.usage.output, 1);
    fr_reply_close(&r);
}

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
    size_t len = strlen(COMPLETION);
    for (size_t i = 0; i <= len; i += 7) {
        size_t cut[1] = {i};
        fr_reply r;
        fr_error err;
        assert_int_equal(run(&c, 200, COMPLETION, len, cut, 1, &r, &err, NULL), FR_OK);
        assert_string_equal(r.text, "Line one\nLine two");
        assert_string_equal(r.finish_reason, "length");
        assert_string_equal(r.model, "deepseek/deepseek-chat");
        assert_int_equal(r.usage.input, 20);
        assert_int_equal(r.usage.output, 8);
        assert_int_equal(r.usage.cached, 16);
        assert_false(r.usage.estimated);
        fr_reply_close(&r);
    }
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

/* Keep-alive comments are not content: only events move the progress the
 * engine's idle timer reads. */
static void test_progress(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_check_progress(FR_PROTO_OPENAI, &c, ": keep-alive\n\n",
                           "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
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
        cmocka_unit_test(test_url_joining),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_body_response_format),
        cmocka_unit_test(test_body_strict_only_when_it_qualifies),
        cmocka_unit_test(test_body_seed),
        cmocka_unit_test(test_body_max_tokens_field),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_usage_on_chunk_with_choices),
        cmocka_unit_test(test_stream_without_usage_is_estimated),
        cmocka_unit_test(test_stream_missing_done_is_truncated),
        cmocka_unit_test(test_stream_done_without_blank_line),
        cmocka_unit_test(test_stream_error_event),
        cmocka_unit_test(test_stream_malformed_json),
        cmocka_unit_test(test_stream_answered_as_json),
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_non_stream_edge_cases),
        cmocka_unit_test(test_non_stream_too_big),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_key_never_in_errors),
        cmocka_unit_test(test_schema_reply_is_parsed),
        cmocka_unit_test(test_unsupported_protocols),
        cmocka_unit_test(test_estimate_tokens),
        cmocka_unit_test(test_finish_normalised_body),
        cmocka_unit_test(test_finish_cut_json_is_not_a_quality_error),
        cmocka_unit_test(test_finish_normalised_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
