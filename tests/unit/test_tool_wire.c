/* Tests for tool calling on the wire in the three protocol adapters,
 * through the public provider API: the tools and the conversation each
 * request carries in its API's own shape, and the tool calls read from
 * each reply (streamed at every split, and whole) into the neutral
 * fr_reply.tool_calls; many calls, bad pieces and the reply cap. */

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

#include "tests/unit/support/adapter_harness.h"

/* The tools every call here offers. */
static const char *const TOOLS =
    "[{\"name\":\"fs_read_file\",\"description\":\"Read a file.\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}},"
    "{\"name\":\"word_count\",\"description\":\"Count words.\",\"parameters\":{\"type\":"
    "\"object\",\"properties\":{\"text\":{\"type\":\"string\"}}}}]";

/* A conversation: the user's turn, a turn with text and two calls (one
 * whose arguments were not an object), their two results (one an error),
 * and a user nudge after them. */
static const char *const CONVERSATION =
    "[{\"role\":\"user\",\"content\":\"Read a.txt and count.\"},"
    "{\"role\":\"assistant\",\"content\":\"Reading.\",\"tool_calls\":["
    "{\"id\":\"c1\",\"name\":\"fs_read_file\",\"arguments\":{\"path\":\"a.txt\"}},"
    "{\"id\":\"c2\",\"name\":\"word_count\",\"arguments\":null,\"raw_arguments\":\"{\\\"text\\\":"
    "\"}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"name\":\"fs_read_file\",\"content\":\"hello\","
    "\"is_error\":false},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"name\":\"word_count\",\"content\":\"error: bad "
    "arguments\",\"is_error\":true},"
    "{\"role\":\"user\",\"content\":\"Go on.\"}]";

static json_t *load(const char *s)
{
    json_error_t je;
    json_t *v = json_loads(s, 0, &je);
    if (!v)
        fail_msg("bad test JSON: %s", je.text);
    return v;
}

/* Fails unless `got` (borrowed) equals the JSON text `want`. */
static void assert_json(const json_t *got, const char *want)
{
    json_t *w = load(want);
    if (!json_equal(got, w)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *e = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS);
        fprintf(stderr, "got:  %s\nwant: %s\n", g ? g : "(null)", e);
        free(g);
        free(e);
        fail();
    }
    json_decref(w);
}

typedef struct fixture {
    json_t *tools;
    json_t *messages;
} fixture;

static fixture fx;

static fr_call tool_call(const char *base, bool stream)
{
    fr_call c = adapter_call(base, "m", stream);
    c.tools = fx.tools;
    return c;
}

#define OAI  "http://127.0.0.1:8000/v1"
#define OLL  "http://127.0.0.1:11434"
#define ANTH "http://127.0.0.1:8080"

/* The call offering tools that `proto`'s tests make, streamed or not. */
static fr_call proto_call(fr_protocol proto, bool stream)
{
    return tool_call(proto == FR_PROTO_OLLAMA      ? OLL
                     : proto == FR_PROTO_ANTHROPIC ? ANTH
                                                   : OAI,
                     stream);
}

/* ---- requests ---- */

static void test_openai_request(void **state)
{
    (void)state;
    fr_call c = tool_call(OAI, true);
    c.messages = fx.messages;
    json_t *schema = load("{\"type\":\"object\"}");
    c.schema = schema;
    json_t *body = adapter_request_body(FR_PROTO_OPENAI, &c);
    assert_json(
        json_object_get(body, "tools"),
        "[{\"type\":\"function\",\"function\":{\"name\":\"fs_read_file\",\"description\":\"Read a "
        "file.\",\"parameters\":{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"}"
        "}"
        ",\"required\":[\"path\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"word_count\","
        "\"description\":\"Count words.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
        "\"text\":{\"type\":\"string\"}}}}}]");
    assert_json(json_object_get(body, "messages"),
                "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                "{\"role\":\"user\",\"content\":\"Read a.txt and count.\"},"
                "{\"role\":\"assistant\",\"content\":\"Reading.\",\"tool_calls\":["
                "{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"fs_read_file\","
                "\"arguments\":\"{\\\"path\\\":\\\"a.txt\\\"}\"}},"
                "{\"id\":\"c2\",\"type\":\"function\",\"function\":{\"name\":\"word_count\","
                "\"arguments\":\"{\\\"text\\\":\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"hello\"},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"error: bad arguments\"},"
                "{\"role\":\"user\",\"content\":\"Go on.\"}]");
    /* Structured output and tools together. */
    assert_non_null(json_object_get(body, "response_format"));
    json_decref(body);

    /* A turn that only called tools has null content. */
    json_t *msgs = load("[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\","
                        "\"content\":\"\",\"tool_calls\":[{\"id\":\"a\",\"name\":\"word_count\","
                        "\"arguments\":{}}]}]");
    c.messages = msgs;
    c.schema = NULL;
    c.system = NULL;
    body = adapter_request_body(FR_PROTO_OPENAI, &c);
    assert_json(json_object_get(body, "messages"),
                "[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":null,"
                "\"tool_calls\":[{\"id\":\"a\",\"type\":\"function\",\"function\":{\"name\":"
                "\"word_count\",\"arguments\":\"{}\"}}]}]");
    json_decref(body);
    json_decref(msgs);
    json_decref(schema);
}

static void test_ollama_request(void **state)
{
    (void)state;
    fr_call c = tool_call(OLL, true);
    c.messages = fx.messages;
    json_t *body = adapter_request_body(FR_PROTO_OLLAMA, &c);
    json_t *otools = json_object_get(body, "tools");
    assert_int_equal(json_array_size(otools), 2);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(otools, 1), "function"), "name")),
                        "word_count");
    assert_string_equal(json_string_value(json_object_get(json_array_get(otools, 0), "type")),
                        "function");
    assert_json(json_object_get(body, "messages"),
                "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                "{\"role\":\"user\",\"content\":\"Read a.txt and count.\"},"
                "{\"role\":\"assistant\",\"content\":\"Reading.\",\"tool_calls\":["
                "{\"function\":{\"name\":\"fs_read_file\",\"arguments\":{\"path\":\"a.txt\"}}},"
                "{\"function\":{\"name\":\"word_count\",\"arguments\":{}}}]},"
                "{\"role\":\"tool\",\"content\":\"hello\",\"tool_name\":\"fs_read_file\"},"
                "{\"role\":\"tool\",\"content\":\"error: bad arguments\",\"tool_name\":"
                "\"word_count\"},"
                "{\"role\":\"user\",\"content\":\"Go on.\"}]");
    json_decref(body);
}

static void test_anthropic_request(void **state)
{
    (void)state;
    fr_call c = tool_call(ANTH, true);
    c.messages = fx.messages;
    json_t *body = adapter_request_body(FR_PROTO_ANTHROPIC, &c);
    assert_json(json_object_get(body, "tools"),
                "[{\"name\":\"fs_read_file\",\"description\":\"Read a file.\",\"input_schema\":{"
                "\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":"
                "[\"path\"]}},{\"name\":\"word_count\",\"description\":\"Count words.\","
                "\"input_schema\":{\"type\":\"object\",\"properties\":{\"text\":{\"type\":"
                "\"string\"}}}}]");
    assert_null(json_object_get(body, "tool_choice"));
    assert_string_equal(json_string_value(json_object_get(body, "system")), "You are terse.");
    /* Both results in one user message, the nudge after them as text. */
    assert_json(json_object_get(body, "messages"),
                "[{\"role\":\"user\",\"content\":\"Read a.txt and count.\"},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Reading.\"},"
                "{\"type\":\"tool_use\",\"id\":\"c1\",\"name\":\"fs_read_file\",\"input\":{"
                "\"path\":\"a.txt\"}},{\"type\":\"tool_use\",\"id\":\"c2\",\"name\":"
                "\"word_count\",\"input\":{}}]},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"c1\","
                "\"content\":\"hello\",\"is_error\":false},{\"type\":\"tool_result\","
                "\"tool_use_id\":\"c2\",\"content\":\"error: bad arguments\",\"is_error\":true},"
                "{\"type\":\"text\",\"text\":\"Go on.\"}]}]");
    json_decref(body);

    /* With a schema: the output tool beside the offered ones, renamed when
     * a tool is called "output", and any tool may be chosen. */
    json_t *tools = load("[{\"name\":\"output\",\"parameters\":{\"type\":\"object\"}}]");
    json_t *schema = load("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}");
    c.tools = tools;
    c.schema = schema;
    c.messages = NULL;
    body = adapter_request_body(FR_PROTO_ANTHROPIC, &c);
    json_t *t = json_object_get(body, "tools");
    assert_int_equal(json_array_size(t), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(t, 1), "name")),
                        "output_1");
    assert_json(json_object_get(body, "tool_choice"), "{\"type\":\"any\"}");
    json_decref(body);
    json_decref(tools);
    json_decref(schema);
}

/* A conversation that is not well-formed is refused before it is sent. */
static void test_bad_conversation(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "[{\"role\":\"robot\",\"content\":\"x\"}]",
        "[{\"role\":\"tool\",\"content\":\"x\"}]",
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"name\":\"a\"}]}]",
        "[{\"role\":\"user\",\"content\":7}]",
    };
    const fr_protocol protos[] = {FR_PROTO_OPENAI, FR_PROTO_OLLAMA, FR_PROTO_ANTHROPIC};
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            json_t *m = load(bad[i]);
            fr_call c = tool_call(p == 1 ? OLL : OAI, false);
            c.messages = m;
            fr_adapter *a = fr_adapter_new(protos[p], &c);
            fr_request req;
            fr_error err;
            assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
            assert_non_null(strstr(err.msg, "conversation"));
            assert_null(req.body);
            fr_adapter_free(a);
            json_decref(m);
        }
}

/* ---- replies ---- */

static const char *expect_calls; /* the tool_calls every split must give */
static const char *expect_text;

static void check_calls(const fr_reply *r)
{
    assert_int_equal(r->finish, FR_FINISH_TOOL_CALL);
    assert_string_equal(r->text, expect_text);
    assert_non_null(r->tool_calls);
    assert_json(r->tool_calls, expect_calls);
    assert_true(r->usage.output > 0);
}

/* Every split of `body` (borrowed) through `proto`, for a call offering
 * tools, streamed or not, gives the tool calls `calls` (JSON) after the
 * text `text`. */
static void every_split_gives(fr_protocol proto, bool stream, const char *body, const char *calls,
                              const char *text)
{
    fr_call c = proto_call(proto, stream);
    expect_calls = calls;
    expect_text = text;
    adapter_every_split(proto, &c, body, check_calls);
}

static const char *const TWO_CALLS =
    "[{\"id\":\"call_a\",\"name\":\"fs_read_file\",\"arguments\":{\"path\":\"a \\u2603.txt\"}},"
    "{\"id\":\"call_b\",\"name\":\"word_count\",\"arguments\":{}}]";

// clang-format off
#define OCHUNK(delta, fin)                                                                         \
    "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" fin  \
    "}]}\n\n"

static const char *const OAI_STREAM =
    OCHUNK("{\"role\":\"assistant\",\"content\":\"Let me look.\"}", "null")
    OCHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\",\"type\":\"function\",\"function\":"
           "{\"name\":\"fs_read_file\",\"arguments\":\"\"}}]}", "null")
    OCHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"pa\"}}]}", "null")
    OCHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"th\\\": \\\"a \xe2\x98\x83"
           ".txt\\\"}\"}}]}", "null")
    OCHUNK("{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":"
           "{\"name\":\"word_count\",\"arguments\":\"\"}}]}", "null")
    OCHUNK("{}", "\"tool_calls\"")
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4}}\n\n"
    "data: [DONE]\n\n";
// clang-format on

static void test_openai_stream(void **state)
{
    (void)state;
    fr_call c = tool_call(OAI, true);
    expect_calls = TWO_CALLS;
    expect_text = "Let me look.";
    adapter_every_split(FR_PROTO_OPENAI, &c, OAI_STREAM, check_calls);
    char *crlf = adapter_crlf(OAI_STREAM);
    adapter_every_split(FR_PROTO_OPENAI, &c, crlf, check_calls);
    free(crlf);

    /* A server that sends no index (Ollama's /v1): each id a new call. */
    const char *noindex =
        OCHUNK("{\"tool_calls\":[{\"id\":\"call_a\",\"function\":{\"name\":\"fs_read_file\","
               "\"arguments\":\"{\\\"path\\\":\\\"a \\u2603.txt\\\"}\"}}]}",
               "null")
            OCHUNK("{\"tool_calls\":[{\"id\":\"call_b\",\"function\":{\"name\":\"word_count\","
                   "\"arguments\":\"{}\"}}]}",
                   "\"tool_calls\"") "data: [DONE]\n\n";
    expect_text = "";
    adapter_every_split(FR_PROTO_OPENAI, &c, noindex, check_calls);
}

static void test_openai_body(void **state)
{
    (void)state;
    fr_call c = tool_call(OAI, false);
    const char *body =
        "{\"model\":\"m\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
        "\"content\":null,\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":"
        "{\"name\":\"fs_read_file\",\"arguments\":\"{\\\"path\\\":\\\"a \\u2603.txt\\\"}\"}},"
        "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"word_count\","
        "\"arguments\":\"{}\"}}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{"
        "\"prompt_tokens\":9,\"completion_tokens\":4}}";
    expect_calls = TWO_CALLS;
    expect_text = "";
    adapter_every_split(FR_PROTO_OPENAI, &c, body, check_calls);

    /* Without tools offered, as before: a tool call, no calls read. */
    c.tools = NULL;
    fr_reply r;
    fr_error err;
    assert_int_equal(
        adapter_run(FR_PROTO_OPENAI, &c, 200, body, strlen(body), NULL, 0, &r, &err, NULL), FR_OK);
    assert_int_equal(r.finish, FR_FINISH_TOOL_CALL);
    assert_null(r.tool_calls);
    fr_reply_close(&r);
}

// clang-format off
static const char *const ANTH_STREAM =
    "event: message_start\n"
    "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{"
    "\"input_tokens\":9,\"output_tokens\":1}}}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
    "\"text\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
    "\"text\":\"Let me look.\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"call_a\",\"name\":\"fs_read_file\",\"input\":{}}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"\"}}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\"{\\\"path\\\": \\\"a \xe2\x98\x83\"}}\n\n"
    "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    "event: content_block_delta\n"
    "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
    "\"partial_json\":\".txt\\\"}\"}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
    "event: content_block_start\n"
    "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\","
    "\"id\":\"call_b\",\"name\":\"word_count\",\"input\":{}}}\n\n"
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
    "event: message_delta\n"
    "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{"
    "\"output_tokens\":30}}\n\n"
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
// clang-format on

static void test_anthropic_stream(void **state)
{
    (void)state;
    every_split_gives(FR_PROTO_ANTHROPIC, true, ANTH_STREAM, TWO_CALLS, "Let me look.");
}

static const char *const ANTH_BODY =
    "{\"type\":\"message\",\"model\":\"claude\",\"content\":[{\"type\":\"text\",\"text\":"
    "\"Let me look.\"},{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"fs_read_file\","
    "\"input\":{\"path\":\"a \\u2603.txt\"}},{\"type\":\"tool_use\",\"id\":\"call_b\",\"name\":"
    "\"word_count\",\"input\":{}}],\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":9,"
    "\"output_tokens\":30}}";

static void test_anthropic_body(void **state)
{
    (void)state;
    every_split_gives(FR_PROTO_ANTHROPIC, false, ANTH_BODY, TWO_CALLS, "Let me look.");
}

/* Structured output beside tools: a call of the output tool alone is the
 * answer; beside other calls it is left out of them. */
static void test_anthropic_schema_and_tools(void **state)
{
    (void)state;
    json_t *schema = load("{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\"}}}");
    fr_call c = tool_call(ANTH, false);
    c.schema = schema;
    fr_reply r;
    fr_error err;
    const char *answer = "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"output\","
                         "\"input\":{\"n\":3}}],\"stop_reason\":\"tool_use\"}";
    assert_int_equal(
        adapter_run(FR_PROTO_ANTHROPIC, &c, 200, answer, strlen(answer), NULL, 0, &r, &err, NULL),
        FR_OK);
    assert_int_equal(r.finish, FR_FINISH_STOP);
    assert_null(r.tool_calls);
    assert_json(r.json, "{\"n\":3}");
    fr_reply_close(&r);

    const char *both =
        "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"word_count\",\"input\":{"
        "\"text\":\"a b\"}},{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"output\",\"input\":{"
        "\"n\":3}}],\"stop_reason\":\"tool_use\"}";
    assert_int_equal(
        adapter_run(FR_PROTO_ANTHROPIC, &c, 200, both, strlen(both), NULL, 0, &r, &err, NULL),
        FR_OK);
    assert_int_equal(r.finish, FR_FINISH_TOOL_CALL);
    assert_null(r.json);
    assert_json(r.tool_calls,
                "[{\"id\":\"t1\",\"name\":\"word_count\",\"arguments\":{\"text\":\"a b\"}}]");
    fr_reply_close(&r);
    json_decref(schema);
}

static const char *const OLL_CALLS =
    "[{\"id\":\"call_0\",\"name\":\"fs_read_file\",\"arguments\":{\"path\":\"a \\u2603.txt\"}},"
    "{\"id\":\"call_1\",\"name\":\"word_count\",\"arguments\":{}}]";

static void test_ollama_stream(void **state)
{
    (void)state;
    const char *s =
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Let me look.\"},"
        "\"done\":false}\n"
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"function\":{\"name\":\"fs_read_file\",\"arguments\":{\"path\":\"a \xe2\x98\x83.txt\"}}}"
        "]},\"done\":false}\n"
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"function\":{\"index\":1,\"name\":\"word_count\",\"arguments\":{}}}]},\"done\":false}\n"
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
        "\"done_reason\":\"stop\",\"prompt_eval_count\":9,\"eval_count\":20}\n";
    every_split_gives(FR_PROTO_OLLAMA, true, s, OLL_CALLS, "Let me look.");
}

static void test_ollama_body(void **state)
{
    (void)state;
    /* A newer server's ids are kept. */
    const char *s =
        "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"id\":\"call_a\",\"function\":{\"name\":\"fs_read_file\",\"arguments\":{\"path\":"
        "\"a \\u2603.txt\"}}},{\"id\":\"call_b\",\"function\":{\"name\":\"word_count\","
        "\"arguments\":{}}}]},\"done\":true,\"done_reason\":\"stop\"}";
    every_split_gives(FR_PROTO_OLLAMA, false, s, TWO_CALLS, "");
}

/* The call's tools and conversation are copied: the caller may free its
 * own as soon as the adapter exists. Ollama sends a schema and tools
 * together. */
static void test_call_copied(void **state)
{
    (void)state;
    json_t *tools = load(TOOLS);
    json_t *msgs = load(CONVERSATION);
    json_t *schema = load("{\"type\":\"object\"}");
    fr_call c = adapter_call(OLL, "m", false);
    c.tools = tools;
    c.messages = msgs;
    c.schema = schema;
    fr_adapter *a = fr_adapter_new(FR_PROTO_OLLAMA, &c);
    json_decref(tools);
    json_decref(msgs);
    json_decref(schema);
    fr_request req;
    fr_error err;
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
    json_t *body = load(req.body);
    assert_int_equal(json_array_size(json_object_get(body, "tools")), 2);
    assert_int_equal(json_array_size(json_object_get(body, "messages")), 6);
    assert_json(json_object_get(body, "format"), "{\"type\":\"object\"}");
    json_decref(body);
    fr_request_close(&req);
    fr_adapter_free(a);
}

/* Without tools offered, a tool call in any protocol is still no answer
 * and its calls are not read. */
static void test_not_offered(void **state)
{
    (void)state;
    const struct {
        fr_protocol proto;
        const char *base;
        const char *body;
    } cases[] = {
        {FR_PROTO_ANTHROPIC, ANTH, ANTH_BODY},
        {FR_PROTO_OLLAMA, OLL,
         "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{"
         "\"function\":{\"name\":\"x\",\"arguments\":{}}}]},\"done\":true,\"done_reason\":"
         "\"stop\"}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_call c = adapter_call(cases[i].base, "m", false);
        fr_reply r;
        fr_error err;
        assert_int_equal(adapter_run(cases[i].proto, &c, 200, cases[i].body, strlen(cases[i].body),
                                     NULL, 0, &r, &err, NULL),
                         FR_OK);
        assert_int_equal(r.finish, FR_FINISH_TOOL_CALL);
        assert_null(r.tool_calls);
        fr_reply_close(&r);
    }
}

/* 64 calls in one streamed reply, their pieces interleaved. */
static void test_many_calls(void **state)
{
    (void)state;
    fr_buf s, want;
    fr_buf_init(&s, 0);
    fr_buf_init(&want, 0);
    fr_buf_puts(&want, "[");
    for (int i = 0; i < 64; i++) {
        fr_buf_printf(&s,
                      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,"
                      "\"id\":\"id%d\",\"function\":{\"name\":\"word_count\",\"arguments\":"
                      "\"{\\\"text\\\":\"}}]}}]}\n\n",
                      i, i);
        fr_buf_printf(&want,
                      "%s{\"id\":\"id%d\",\"name\":\"word_count\",\"arguments\":{\"text\":"
                      "\"w%d\"}}",
                      i ? "," : "", i, i);
    }
    for (int i = 63; i >= 0; i--)
        fr_buf_printf(&s,
                      "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,"
                      "\"function\":{\"arguments\":\"\\\"w%d\\\"}\"}}]}}]}\n\n",
                      i, i);
    fr_buf_puts(&s, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
                    "\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
    fr_buf_puts(&want, "]");
    fr_call c = tool_call(OAI, true);
    fr_reply r;
    fr_error err;
    assert_int_equal(adapter_run(FR_PROTO_OPENAI, &c, 200, s.data, s.len, NULL, 0, &r, &err, NULL),
                     FR_OK);
    assert_int_equal(r.finish, FR_FINISH_TOOL_CALL);
    assert_int_equal(json_array_size(r.tool_calls), 64);
    assert_json(r.tool_calls, fr_buf_str(&want));
    fr_reply_close(&r);
    fr_buf_close(&s);
    fr_buf_close(&want);
}

/* Runs `body` (borrowed) whole through `proto` for a call offering tools. */
static int run_tools(fr_protocol proto, bool stream, const char *body, fr_reply *r, fr_error *err)
{
    fr_call c = proto_call(proto, stream);
    return adapter_run(proto, &c, 200, body, strlen(body), NULL, 0, r, err, NULL);
}

static void test_bad_pieces(void **state)
{
    (void)state;
    fr_reply r;
    fr_error err;
    /* An index that jumps past the calls started. */
    const char *jump = OCHUNK(
        "{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"x\"}}]}", "null")
        OCHUNK("{\"tool_calls\":[{\"index\":5,\"function\":{\"arguments\":\"{}\"}}]}",
               "\"tool_calls\"") "data: [DONE]\n\n";
    assert_int_equal(run_tools(FR_PROTO_OPENAI, true, jump, &r, &err), FR_EPROTO);
    assert_non_null(strstr(err.msg, "index 5"));
    const char *negative =
        OCHUNK("{\"tool_calls\":[{\"index\":-1,\"id\":\"a\",\"function\":{\"name\":\"x\"}}]}",
               "\"tool_calls\"") "data: [DONE]\n\n";
    assert_int_equal(run_tools(FR_PROTO_OPENAI, true, negative, &r, &err), FR_EPROTO);

    /* Arguments that never close: the text, for the engine to refuse. */
    const char *open =
        OCHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"x\","
               "\"arguments\":\"{\\\"path\\\": \\\"a\"}}]}",
               "\"tool_calls\"") "data: [DONE]\n\n";
    assert_int_equal(run_tools(FR_PROTO_OPENAI, true, open, &r, &err), FR_OK);
    assert_json(r.tool_calls, "[{\"id\":\"a\",\"name\":\"x\",\"arguments\":null,"
                              "\"raw_arguments\":\"{\\\"path\\\": \\\"a\"}]");
    fr_reply_close(&r);

    /* A call without a name. */
    const char *noname =
        OCHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"arguments\":\"{}\"}}]}",
               "\"tool_calls\"") "data: [DONE]\n\n";
    assert_int_equal(run_tools(FR_PROTO_OPENAI, true, noname, &r, &err), FR_EPROTO);
    assert_non_null(strstr(err.msg, "no name"));

    /* Ollama: arguments that are not an object. */
    const char *arr = "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
                      "{\"function\":{\"name\":\"x\",\"arguments\":[1]}}]},\"done\":true}";
    assert_int_equal(run_tools(FR_PROTO_OLLAMA, false, arr, &r, &err), FR_OK);
    assert_json(
        r.tool_calls,
        "[{\"id\":\"call_0\",\"name\":\"x\",\"arguments\":null,\"raw_arguments\":\"[1]\"}]");
    fr_reply_close(&r);

    /* Anthropic: a block started twice, input for a block never started. */
    const char *twice =
        "event: content_block_start\ndata: {\"index\":0,\"content_block\":{\"type\":\"tool_use\","
        "\"id\":\"a\",\"name\":\"x\",\"input\":{}}}\n\n"
        "event: content_block_start\ndata: {\"index\":0,\"content_block\":{\"type\":\"tool_use\","
        "\"id\":\"b\",\"name\":\"x\",\"input\":{}}}\n\n"
        "event: message_stop\ndata: {}\n\n";
    assert_int_equal(run_tools(FR_PROTO_ANTHROPIC, true, twice, &r, &err), FR_EPROTO);
    assert_non_null(strstr(err.msg, "started twice"));
    const char *orphan =
        "event: content_block_delta\ndata: {\"index\":3,\"delta\":{\"type\":\"input_json_delta\","
        "\"partial_json\":\"{}\"}}\n\nevent: message_stop\ndata: {}\n\n";
    assert_int_equal(run_tools(FR_PROTO_ANTHROPIC, true, orphan, &r, &err), FR_EPROTO);
    assert_non_null(strstr(err.msg, "block 3"));
}

/* Anthropic input cut before it closes, and OpenAI's legacy function_call
 * pieces, both streamed. */
static void test_more_pieces(void **state)
{
    (void)state;
    fr_reply r;
    fr_error err;
    const char *cut = "event: content_block_start\ndata: {\"index\":0,\"content_block\":{\"type\":"
                      "\"tool_use\",\"id\":\"a\",\"name\":\"x\",\"input\":{}}}\n\n"
                      "event: content_block_delta\ndata: {\"index\":0,\"delta\":{\"type\":"
                      "\"input_json_delta\",\"partial_json\":\"{\\\"p\\\": [1,\"}}\n\n"
                      "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"tool_use\"}}\n\n"
                      "event: message_stop\ndata: {}\n\n";
    assert_int_equal(run_tools(FR_PROTO_ANTHROPIC, true, cut, &r, &err), FR_OK);
    assert_int_equal(r.finish, FR_FINISH_TOOL_CALL);
    assert_json(r.tool_calls, "[{\"id\":\"a\",\"name\":\"x\",\"arguments\":null,"
                              "\"raw_arguments\":\"{\\\"p\\\": [1,\"}]");
    fr_reply_close(&r);

    const char *legacy =
        OCHUNK("{\"function_call\":{\"name\":\"word_count\",\"arguments\":\"\"}}", "null")
            OCHUNK("{\"function_call\":{\"arguments\":\"{\\\"text\\\":\\\"a\\\"}\"}}",
                   "\"function_call\"") "data: [DONE]\n\n";
    assert_int_equal(run_tools(FR_PROTO_OPENAI, true, legacy, &r, &err), FR_OK);
    assert_json(r.tool_calls,
                "[{\"id\":\"call_0\",\"name\":\"word_count\",\"arguments\":{\"text\":\"a\"}}]");
    fr_reply_close(&r);
}

/* Text and arguments share the 8 MiB reply cap. */
static void test_cap(void **state)
{
    (void)state;
    size_t half = 4u * 1024u * 1024u + 16;
    char *big = malloc(half + 1);
    assert_non_null(big);
    memset(big, 'a', half);
    big[half] = '\0';
    fr_buf s;
    fr_buf_init(&s, 0);
    fr_buf_printf(&s, OCHUNK("{\"content\":\"%s\"}", "null"), big);
    fr_buf_printf(&s,
                  OCHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"x\","
                         "\"arguments\":\"%s\"}}]}",
                         "\"tool_calls\"") "data: [DONE]\n\n",
                  big);
    fr_call c = tool_call(OAI, true);
    fr_reply r;
    fr_error err;
    int frc;
    assert_int_equal(adapter_run(FR_PROTO_OPENAI, &c, 200, s.data, s.len, NULL, 0, &r, &err, &frc),
                     FR_ETOOBIG);
    assert_int_equal(frc, FR_ETOOBIG);
    assert_non_null(strstr(err.msg, "cap"));
    /* Arguments alone over the cap, whole. */
    fr_buf_reset(&s);
    fr_buf_printf(&s,
                  "{\"choices\":[{\"index\":0,\"message\":{\"tool_calls\":[{\"id\":\"a\","
                  "\"function\":{\"name\":\"x\",\"arguments\":\"%s%s\"}}]},\"finish_reason\":"
                  "\"tool_calls\"}]}",
                  big, big);
    c.stream = false;
    assert_int_equal(adapter_run(FR_PROTO_OPENAI, &c, 200, s.data, s.len, NULL, 0, &r, &err, NULL),
                     FR_ETOOBIG);
    fr_buf_close(&s);
    free(big);
}

static int setup(void **state)
{
    (void)state;
    fx.tools = load(TOOLS);
    fx.messages = load(CONVERSATION);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    json_decref(fx.tools);
    json_decref(fx.messages);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_request),
        cmocka_unit_test(test_ollama_request),
        cmocka_unit_test(test_anthropic_request),
        cmocka_unit_test(test_bad_conversation),
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_openai_body),
        cmocka_unit_test(test_anthropic_stream),
        cmocka_unit_test(test_anthropic_body),
        cmocka_unit_test(test_anthropic_schema_and_tools),
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_ollama_body),
        cmocka_unit_test(test_call_copied),
        cmocka_unit_test(test_not_offered),
        cmocka_unit_test(test_many_calls),
        cmocka_unit_test(test_bad_pieces),
        cmocka_unit_test(test_more_pieces),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
