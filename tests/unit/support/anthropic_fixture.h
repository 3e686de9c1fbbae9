#pragma once
/* Shared by the Anthropic adapter tests (test_anthropic_request,
 * test_anthropic_stream, test_anthropic_reply): the call they make, a fake
 * key, the builders of the Messages API's stream events, and the check of a
 * structured reply (the forced tool's input). Header-only, as
 * adapter_harness.h: include it after cmocka.h and adapter_harness.h (with
 * ADAPTER_UNDER_TEST). */

#include "providers/provider.h"
#include "tests/unit/support/adapter_harness.h"

#include <jansson.h>
#include <stdbool.h>

#define KEY "FAKE-ant-api03-SECRET-0123456789abcdef"

static inline fr_call make_call(bool stream)
{
    return adapter_call("https://api.anthropic.com", "claude-sonnet-4-5", stream);
}

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
#define TOOL_START(i, name)                                                                        \
    EV("content_block_start",                                                                      \
       "{\"type\":\"content_block_start\",\"index\":" i ",\"content_block\":{\"type\":"            \
       "\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"" name "\","             \
       "\"input\":{}}}")
#define JSON_DELTA(i, j)                                                                           \
    EV("content_block_delta",                                                                      \
       "{\"type\":\"content_block_delta\",\"index\":" i ",\"delta\":{\"type\":"                    \
       "\"input_json_delta\",\"partial_json\":\"" j "\"}}")
// clang-format on

#define TOOL_JSON "{\"files\":[\"a.c\",\"b.c\"],\"n\":2}"

static inline void check_tool_reply(const fr_reply *r)
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
