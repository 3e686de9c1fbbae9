/* Tests for the Anthropic Messages adapter through the public provider API:
 * the request a server receives (URL, headers and the key, the body's
 * fields, the forced tool of structured output). */

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_joining),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_body_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
