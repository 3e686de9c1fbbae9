/* Tests for the OpenAI-compatible adapter through the public provider API:
 * the request a server receives (URL, headers and the key, the body's
 * fields, response_format and strict, seed, the max tokens field). */

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
