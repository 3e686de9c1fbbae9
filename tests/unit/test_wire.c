/* Wire fidelity: replies in the shapes real servers send, kept as files in
 * tests/unit/fixtures/wire/ (each headed by '#' lines saying where the shape
 * comes from), fed to the adapter of their protocol whole, cut at every byte
 * and one byte at a time. Each must give the same text, finish reason, model
 * and the server's own usage (never an estimate). Runs from the source root
 * (CTest's working directory). */

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

/* Returns the bytes of tests/unit/fixtures/wire/`name` (owned) without the
 * leading lines that start with '#'. */
static char *fixture(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "tests/unit/fixtures/wire/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (tests run from the source root)", path);
    fr_buf b;
    fr_buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fr_buf_append(&b, chunk, n);
    fclose(f);
    char *all = fr_buf_take(&b);
    const char *p = all;
    while (*p == '#') {
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : p + strlen(p);
    }
    char *out = strdup(p);
    free(all);
    return out;
}

static fr_call make_call(fr_protocol proto, bool stream)
{
    fr_call c = {
        .base_url = proto == FR_PROTO_OLLAMA      ? "http://127.0.0.1:11434"
                    : proto == FR_PROTO_ANTHROPIC ? "https://api.anthropic.com"
                                                  : "http://127.0.0.1:8000/v1",
        .model = "m",
        .system = "You are terse.",
        .prompt = "Say hello.",
        .max_tokens = 64,
        .temperature = 0.2,
        .stream = stream,
    };
    return c;
}

typedef struct wire_case {
    const char *file;
    fr_protocol proto;
    bool stream;
    const char *text;
    const char *finish;
    const char *model;
    long input, output, cached;
} wire_case;

static void check_reply(const wire_case *w, const fr_reply *r, const char *how)
{
    if (strcmp(r->text, w->text) != 0)
        fail_msg("%s (%s): text \"%s\"", w->file, how, r->text);
    assert_non_null(r->finish_reason);
    assert_string_equal(r->finish_reason, w->finish);
    assert_non_null(r->model);
    assert_string_equal(r->model, w->model);
    if (r->usage.estimated || r->usage.input != w->input || r->usage.output != w->output ||
        r->usage.cached != w->cached)
        fail_msg("%s (%s): usage in %ld out %ld cached %ld estimated %d", w->file, how,
                 r->usage.input, r->usage.output, r->usage.cached, r->usage.estimated);
}

#define OAI FR_PROTO_OPENAI

static void test_fixtures(void **state)
{
    (void)state;
    static const wire_case cases[] = {
        {"openai_stream_usage.sse", OAI, true, "Hello, world!", "stop", "gpt-4o-mini-2024-07-18",
         19, 4, 0},
        {"openai_completion.json", OAI, false, "Paris is the capital of France.", "stop",
         "gpt-4o-2024-08-06", 1351, 8, 1280},
        {"vllm_stream.sse", OAI, true, "def add(a, b):\n    return a + b", "length",
         "Qwen/Qwen2.5-7B-Instruct", 31, 12, 0},
        {"llamacpp_stream.sse", OAI, true, "Ciao mondo \xc3\xa8 qui", "stop",
         "qwen2.5-coder-7b-instruct-q4_k_m.gguf", 27, 5, 0},
        {"openrouter_stream.sse", OAI, true, "Three words here.", "stop",
         "meta-llama/llama-3.1-8b-instruct", 42, 4, 0},
        /* Groq's older streams put usage only under x_groq. */
        {"groq_x_groq_stream.sse", OAI, true, "Welcome to Lantern Day!", "stop", "llama3-8b-8192",
         23, 19, 0},
        {"groq_include_usage_stream.sse", OAI, true, "Hello!", "length", "gemma2-9b-it", 11, 3, 0},
        /* DeepSeek's cache hits: prompt_tokens_details when present, else
         * its own prompt_cache_hit_tokens. */
        {"deepseek_stream.sse", OAI, true, "Hello there!", "stop", "deepseek-chat", 74, 3, 64},
        {"deepseek_completion.json", OAI, false, "Hello! How can I help you today?", "stop",
         "deepseek-chat", 1035, 9, 1024},
        {"mistral_stream.sse", OAI, true, "It depends.", "stop", "mistral-small-latest", 10, 4, 0},
        /* Anthropic counts input as input_tokens plus both cache fields. */
        {"anthropic_stream.sse", FR_PROTO_ANTHROPIC, true, "Hello! How can I help?", "end_turn",
         "claude-sonnet-4-5-20250929", 2073, 15, 2048},
        {"anthropic_message.json", FR_PROTO_ANTHROPIC, false, "Hi! My name is Claude.", "end_turn",
         "claude-3-5-haiku-20241022", 310, 12, 200},
        {"ollama_stream.ndjson", FR_PROTO_OLLAMA, true, "The sky is blue.", "stop", "llama3.2", 26,
         282, 0},
        {"ollama_chat.json", FR_PROTO_OLLAMA, false, "Hello! How are you today?", "stop",
         "llama3.2", 26, 298, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const wire_case *w = &cases[k];
        char *body = fixture(w->file);
        size_t len = strlen(body);
        fr_call c = make_call(w->proto, w->stream);
        fr_reply r;
        fr_error err;
        for (size_t i = 0; i <= len; i++) {
            size_t cut[1] = {i};
            int frc;
            int rc = adapter_run(w->proto, &c, 200, body, len, cut, 1, &r, &err, &frc);
            if (rc != FR_OK || frc != FR_OK)
                fail_msg("%s split at %zu: %s", w->file, i, err.msg);
            check_reply(w, &r, "split");
            fr_reply_close(&r);
        }
        size_t *cuts = calloc(len, sizeof *cuts);
        for (size_t i = 0; i + 1 < len; i++)
            cuts[i] = i + 1;
        int rc =
            adapter_run(w->proto, &c, 200, body, len, cuts, len > 0 ? len - 1 : 0, &r, &err, NULL);
        if (rc != FR_OK)
            fail_msg("%s byte by byte: %s", w->file, err.msg);
        check_reply(w, &r, "bytes");
        fr_reply_close(&r);
        free(cuts);
        free(body);
    }
}

/* OpenAI's 400 for max_tokens on a reasoning model: the error names the
 * endpoint setting that fixes it; and the other way round for a server that
 * does not know max_completion_tokens. Other 400s get no such hint. */
static void test_max_tokens_unsupported_names_the_setting(void **state)
{
    (void)state;
    char *body = fixture("openai_400_max_tokens.json");
    fr_call c = make_call(OAI, true);
    fr_reply r;
    fr_error err;
    assert_int_equal(adapter_run(OAI, &c, 400, body, strlen(body), NULL, 0, &r, &err, NULL),
                     FR_EHTTP);
    assert_non_null(strstr(err.msg, "HTTP 400: Unsupported parameter: 'max_tokens'"));
    assert_non_null(strstr(err.msg, "max_tokens_field = \"max_completion_tokens\""));
    assert_null(r.text);
    free(body);

    c.max_completion_tokens = true;
    const char *vllm_old = "{\"object\":\"error\",\"message\":\"Unrecognized request argument "
                           "supplied: max_completion_tokens\",\"type\":\"BadRequestError\","
                           "\"code\":400}";
    assert_int_equal(adapter_run(OAI, &c, 400, vllm_old, strlen(vllm_old), NULL, 0, &r, &err, NULL),
                     FR_EHTTP);
    assert_non_null(strstr(err.msg, "max_tokens_field = \"max_tokens\""));

    /* A 400 about the value, not the field, carries no hint; nor does one
     * that only names a longer parameter. */
    c.max_completion_tokens = false;
    const char *value = "{\"detail\":\"max_tokens too large\"}";
    assert_int_equal(adapter_run(OAI, &c, 400, value, strlen(value), NULL, 0, &r, &err, NULL),
                     FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 400: max_tokens too large");
    const char *longer = "{\"error\":{\"message\":\"Unsupported parameter: "
                         "'max_tokens_per_turn'\"}}";
    assert_int_equal(adapter_run(OAI, &c, 400, longer, strlen(longer), NULL, 0, &r, &err, NULL),
                     FR_EHTTP);
    assert_null(strstr(err.msg, "max_tokens_field"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_max_tokens_unsupported_names_the_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
