/* Tests for the native Ollama adapter through the public provider API: the
 * request an Ollama server receives, and the reply a caller gets however the
 * NDJSON body is cut into pieces. */

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

#define ADAPTER_UNDER_TEST FR_PROTO_OLLAMA
#include "tests/unit/support/adapter_harness.h"

#define KEY "sk-test-SECRET-0123456789abcdef"

static fr_call make_call(bool stream)
{
    fr_call c = adapter_call("http://127.0.0.1:11434", "qwen2.5:7b", stream);
    c.context = 8192; /* Ollama's options: num_ctx, seed, keep_alive */
    c.has_seed = true;
    c.seed = 42;
    c.keep_alive = "5m";
    return c;
}

static const adapter_proto PROTO = {
    .proto = FR_PROTO_OLLAMA,
    .name = "ollama",
    .accept = "application/x-ndjson",
    .auth = "Authorization",
    .auth_prefix = "Bearer ",
    .stream_headers = 2,
};

/* Request building */

static void test_url_joining(void **state)
{
    (void)state;
    static const adapter_url urls[] = {
        {"http://127.0.0.1:11434", "http://127.0.0.1:11434/api/chat"},
        {"http://127.0.0.1:11434/", "http://127.0.0.1:11434/api/chat"},
        {"http://gpu-box:11434//", "http://gpu-box:11434/api/chat"},
        {"https://proxy.example.com/ollama/", "https://proxy.example.com/ollama/api/chat"},
        {"127.0.0.1:11434", NULL},
        {"", NULL},
        {NULL, NULL},
        {"http://", NULL},
        {"http://host /x", NULL},
        {"ftp://host", NULL},
        {"http://h\r\n", NULL},
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
    return adapter_request_body(FR_PROTO_OLLAMA, c);
}

static const char *msg_field(json_t *body, size_t i, const char *key)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(body, "messages"), i), key));
}

static void test_body_fields(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    json_t *b = request_body(&c);
    assert_string_equal(json_string_value(json_object_get(b, "model")), "qwen2.5:7b");
    assert_int_equal(json_array_size(json_object_get(b, "messages")), 2);
    assert_string_equal(msg_field(b, 0, "role"), "system");
    assert_string_equal(msg_field(b, 0, "content"), "You are terse.");
    assert_string_equal(msg_field(b, 1, "role"), "user");
    assert_string_equal(msg_field(b, 1, "content"), "Say hello to the world.");
    assert_true(json_is_true(json_object_get(b, "stream")));
    json_t *opt = json_object_get(b, "options");
    assert_int_equal(json_object_size(opt), 4);
    assert_int_equal(json_integer_value(json_object_get(opt, "num_predict")), 64);
    assert_float_equal(json_number_value(json_object_get(opt, "temperature")), 0.2, 1e-12);
    assert_int_equal(json_integer_value(json_object_get(opt, "num_ctx")), 8192);
    assert_int_equal(json_integer_value(json_object_get(opt, "seed")), 42);
    assert_string_equal(json_string_value(json_object_get(b, "keep_alive")), "5m");
    assert_null(json_object_get(b, "format"));
    /* OpenAI's fields have no place here. */
    assert_null(json_object_get(b, "max_tokens"));
    assert_null(json_object_get(b, "stream_options"));
    json_decref(b);

    /* Nothing set: no options object, no system message, no keep_alive;
     * stream false is sent explicitly (Ollama streams by default). */
    c.system = NULL;
    c.stream = false;
    c.max_tokens = 0;
    c.temperature = -1;
    c.context = 0;
    c.has_seed = false;
    c.keep_alive = NULL;
    b = request_body(&c);
    assert_int_equal(json_array_size(json_object_get(b, "messages")), 1);
    assert_string_equal(msg_field(b, 0, "role"), "user");
    assert_true(json_is_false(json_object_get(b, "stream")));
    assert_null(json_object_get(b, "options"));
    assert_null(json_object_get(b, "keep_alive"));
    json_decref(b);

    /* Zero is a value: temperature 0 and seed 0 are sent; an empty system
     * and an empty keep_alive are not. Invalid UTF-8 becomes U+FFFD. */
    c.system = "";
    c.temperature = 0.0;
    c.has_seed = true;
    c.seed = 0;
    c.keep_alive = "";
    c.prompt = "caf\xe9 ok";
    b = request_body(&c);
    assert_int_equal(json_array_size(json_object_get(b, "messages")), 1);
    assert_string_equal(msg_field(b, 0, "content"), "caf\xef\xbf\xbd ok");
    opt = json_object_get(b, "options");
    assert_int_equal(json_object_size(opt), 2);
    assert_true(json_is_number(json_object_get(opt, "temperature")));
    assert_float_equal(json_number_value(json_object_get(opt, "temperature")), 0.0, 0);
    assert_true(json_is_integer(json_object_get(opt, "seed")));
    assert_int_equal(json_integer_value(json_object_get(opt, "seed")), 0);
    assert_null(json_object_get(b, "keep_alive"));
    json_decref(b);
}

static void test_body_format(void **state)
{
    (void)state;
    json_t *schema = json_loads("{\"type\":\"object\",\"required\":[\"files\"],"
                                "\"properties\":{\"files\":{\"type\":\"array\","
                                "\"items\":{\"type\":\"string\"}}}}",
                                0, NULL);
    fr_call c = make_call(true);
    c.schema = schema;
    json_t *b = request_body(&c);
    assert_true(json_equal(json_object_get(b, "format"), schema));
    json_decref(b);

    json_t *any = json_string("json");
    c.schema = any;
    b = request_body(&c);
    assert_true(json_is_string(json_object_get(b, "format")));
    assert_string_equal(json_string_value(json_object_get(b, "format")), "json");
    json_decref(b);
    json_decref(any);
    json_decref(schema);
}

static void test_body_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        bool number;
        long long seconds;
    } cases[] = {
        {"5m", false, 0},  {"1h30m", false, 0}, {"300", true, 300},
        {"-1", true, -1},  {"0", true, 0},      {"007", true, 7},
        {"10 ", false, 0}, {" 10", false, 0},   {"+10", false, 0},
        {"1e3", false, 0}, {"1.5", false, 0},   {"-", false, 0},
        {"--1", false, 0}, {"24h", false, 0},   {"99999999999999999999", false, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fr_call c = make_call(true);
        c.keep_alive = cases[i].in;
        json_t *b = request_body(&c);
        json_t *ka = json_object_get(b, "keep_alive");
        if (cases[i].number) {
            if (!json_is_integer(ka))
                fail_msg("keep_alive \"%s\" was not sent as a number", cases[i].in);
            assert_int_equal(json_integer_value(ka), cases[i].seconds);
        } else {
            if (!json_is_string(ka))
                fail_msg("keep_alive \"%s\" was not sent as a string", cases[i].in);
            assert_string_equal(json_string_value(ka), cases[i].in);
        }
        json_decref(b);
    }
}

/* Streaming */

/* A stream as Ollama 0.5 sends it: content split over lines (one with a
 * raw multi-byte character, one with escapes), then the final object with
 * an empty content, the reason, the counts and the durations. */
// clang-format off
#define LINE(content)                                                                       \
    "{\"model\":\"qwen2.5:7b\",\"created_at\":\"2025-01-10T09:41:07.1Z\","                \
    "\"message\":{\"role\":\"assistant\",\"content\":\"" content "\"},\"done\":false}\n"

#define FINAL                                                                               \
    "{\"model\":\"qwen2.5:7b\",\"created_at\":\"2025-01-10T09:41:07.9Z\","                \
    "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\","       \
    "\"done\":true,\"total_duration\":812034167,\"load_duration\":20914209,"                \
    "\"prompt_eval_count\":26,\"prompt_eval_duration\":103000000,"                          \
    "\"eval_count\":5,\"eval_duration\":688000000}\n"

#define STREAM_BODY                                                                         \
    LINE("Hello")                                                                           \
    LINE(", w\xc3\xb6rld")                                                                  \
    LINE("!\\n\\u2603")                                                                     \
    FINAL

static const char *const STREAM = STREAM_BODY;
// clang-format on

#define TEXT "Hello, w\xc3\xb6rld!\n\xe2\x98\x83"

static void check_stream_reply(const fr_reply *r)
{
    adapter_check_reply(r, &(adapter_want){TEXT, "stop", "qwen2.5:7b", 26, 5, 0, false});
    assert_null(r->json);
}

/* Runs `s` whole, at every split and byte by byte (adapter_harness.h). */
static void check_every_split(const char *s)
{
    fr_call c = make_call(true);
    adapter_every_split(FR_PROTO_OLLAMA, &c, s, check_stream_reply);
}

static void test_stream_every_split(void **state)
{
    (void)state;
    check_every_split(STREAM);
    char *s = adapter_crlf(STREAM);
    check_every_split(s);
    free(s);
    /* Blank lines between objects change nothing. */
    check_every_split("\n" LINE("Hello") "\n\n" LINE(", w\xc3\xb6rld") LINE("!\\n\\u2603") FINAL
                      "\n");
}

/* The final object without its newline is still the end of the stream. */
static void test_stream_final_without_newline(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    size_t len = strlen(STREAM) - 1;
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        fr_reply r;
        fr_error err;
        int rc = run(&c, 200, STREAM, len, cut, 1, &r, &err, NULL);
        if (rc != FR_OK)
            fail_msg("split at %zu: %s", i, err.msg);
        check_stream_reply(&r);
        fr_reply_close(&r);
    }
}

static void test_stream_missing_done_is_truncated(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    /* Cut anywhere before the final object is complete, even right after
     * "done_reason":"stop": never a short answer. */
    size_t upto = strlen(STREAM) - 1; /* the final object's closing brace */
    for (size_t n = 0; n < upto; n++) {
        fr_reply r;
        fr_error err;
        int frc;
        int rc = run(&c, 200, STREAM, n, NULL, 0, &r, &err, &frc);
        assert_int_equal(frc, FR_OK);
        if (rc != FR_ETRUNCATED)
            fail_msg("cut at %zu gave %s: %s", n, fr_err_name(rc), err.msg);
        assert_int_equal(err.code, FR_ETRUNCATED);
        assert_string_equal(err.source, "ollama");
        assert_null(r.text);
        assert_null(r.model);
    }

    /* Whole lines, but the last one says done: false. */
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, LINE("Hello") LINE(" there"), &r, &err, NULL),
                     FR_ETRUNCATED);
    assert_non_null(strstr(err.msg, "after 2 objects"));
    /* A final-looking object whose done is not true is not final. */
    assert_int_equal(run_whole(&c, 200,
                               LINE("Hi") "{\"done_reason\":\"stop\",\"done\":\"true\","
                                          "\"eval_count\":1}\n",
                               &r, &err, NULL),
                     FR_ETRUNCATED);
}

/* Anything after the final object is ignored, even what would be an error
 * before it. */
static void test_stream_after_done(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    int frc;
    assert_int_equal(
        run_whole(&c, 200, STREAM_BODY "{\"error\":\"late\"}\nnot json\n{\"x\"", &r, &err, &frc),
        FR_OK);
    assert_int_equal(frc, FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);
}

static void test_stream_error_line(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    int frc;

    /* Before any content, as Ollama reports a model it cannot load. */
    const char *s = "{\"error\":\"model requires more system memory (5.2 GiB) than is "
                    "available (3.1 GiB)\"}\n";
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_string_equal(err.msg, "ollama: model requires more system memory (5.2 GiB) than is "
                                 "available (3.1 GiB)");
    assert_string_equal(err.source, "ollama");
    assert_null(r.text);

    /* Mid-stream: feed stops there and stays stopped. */
    s = LINE("Hel") "{\"error\":\"an error was encountered while running the model: "
                    "unexpected EOF\"}\n" LINE("lo") FINAL;
    fr_adapter *a = fr_adapter_new(FR_PROTO_OLLAMA, &c);
    assert_int_equal(fr_adapter_feed(a, 200, s, strlen(s)), FR_EPROTO);
    assert_int_equal(fr_adapter_feed(a, 200, FINAL, strlen(FINAL)), FR_EPROTO);
    assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_EPROTO);
    assert_string_equal(err.msg, "ollama: an error was encountered while running the model: "
                                 "unexpected EOF");
    assert_null(r.text);
    fr_adapter_free(a);

    /* At every split point. */
    size_t len = strlen(s);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        assert_int_equal(run(&c, 200, s, len, cut, 1, &r, &err, &frc), FR_EPROTO);
        assert_int_equal(frc, FR_EPROTO);
        assert_non_null(strstr(err.msg, "unexpected EOF"));
    }

    /* The last line, without a newline; an error object; no message. */
    assert_int_equal(run_whole(&c, 200, LINE("Hi") "{\"error\":\"boom\"}", &r, &err, &frc),
                     FR_EPROTO);
    assert_string_equal(err.msg, "ollama: boom");
    assert_int_equal(
        run_whole(&c, 200, "{\"error\":{\"message\":\"out of memory\"}}\n", &r, &err, NULL),
        FR_EPROTO);
    assert_string_equal(err.msg, "ollama: out of memory");
    assert_int_equal(run_whole(&c, 200, "{\"error\":\"\"}\n", &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "ollama: (no message)");
    /* A message with line breaks stays on one line. */
    assert_int_equal(run_whole(&c, 200, "{\"error\":\"line one\\nline two\"}\n", &r, &err, NULL),
                     FR_EPROTO);
    assert_string_equal(err.msg, "ollama: line one line two");
    /* "error": null is no error. */
    assert_int_equal(run_whole(&c, 200,
                               "{\"error\":null,\"message\":{\"content\":\"ok\"},"
                               "\"done\":true}\n",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.text, "ok");
    fr_reply_close(&r);
}

static void test_stream_malformed_line(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    int frc;
    const char *s = LINE("ok") "{\"message\": {\"content\": \"x\"\n" FINAL;
    assert_int_equal(run_whole(&c, 200, s, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "malformed JSON in stream line 2"));
    assert_null(r.text);

    /* JSON that is not an object, and a proxy's HTML, are malformed too. */
    assert_int_equal(run_whole(&c, 200, "[1,2]\n" FINAL, &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "not an object"));
    assert_int_equal(run_whole(&c, 200, "<html>\n<body>502</body>\n", &r, &err, &frc), FR_EPROTO);
    assert_int_equal(frc, FR_EPROTO);
    assert_non_null(strstr(err.msg, "malformed JSON in stream line 1"));
}

static void test_stream_without_counts_is_estimated(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    long in = fr_estimate_tokens(c.system) + fr_estimate_tokens(c.prompt);

    assert_int_equal(run_whole(&c, 200,
                               LINE("A reply of some length.") "{\"model\":\"m\",\"done\":true,"
                                                               "\"done_reason\":\"stop\"}\n",
                               &r, &err, NULL),
                     FR_OK);
    assert_true(r.usage.estimated);
    assert_int_equal(r.usage.input, in);
    assert_int_equal(r.usage.output, fr_estimate_tokens("A reply of some length."));
    assert_true(r.usage.output > 0);
    assert_string_equal(r.model, "m");
    fr_reply_close(&r);

    /* Ollama leaves prompt_eval_count out when the whole prompt was
     * cached: that side is estimated, the reported side kept. */
    assert_int_equal(
        run_whole(&c, 200, LINE("Some text") "{\"done\":true,\"eval_count\":3}\n", &r, &err, NULL),
        FR_OK);
    assert_int_equal(r.usage.input, in);
    assert_int_equal(r.usage.output, 3);
    assert_true(r.usage.estimated);
    assert_null(r.finish_reason);
    fr_reply_close(&r);

    /* Counts that book a non-empty reply as free are not trusted. */
    assert_int_equal(run_whole(&c, 200,
                               LINE("Some text") "{\"done\":true,\"prompt_eval_count\":9,"
                                                 "\"eval_count\":0}\n",
                               &r, &err, NULL),
                     FR_OK);
    assert_int_equal(r.usage.input, 9);
    assert_int_equal(r.usage.output, fr_estimate_tokens("Some text"));
    assert_true(r.usage.estimated);
    fr_reply_close(&r);

    /* Nonsense counts are treated as missing, never as huge spend. */
    assert_int_equal(run_whole(&c, 200,
                               LINE("Some text") "{\"done\":true,\"prompt_eval_count\":-5,"
                                                 "\"eval_count\":1e300}\n",
                               &r, &err, NULL),
                     FR_OK);
    assert_int_equal(r.usage.input, in);
    assert_int_equal(r.usage.output, fr_estimate_tokens("Some text"));
    fr_reply_close(&r);
}

/* done_reason is passed on as it is ("length" when num_predict ran out). */
static void test_stream_finish_reason(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200,
                               LINE("cut") "{\"done\":true,\"done_reason\":\"length\","
                                           "\"prompt_eval_count\":10,\"eval_count\":64}\n",
                               &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.finish_reason, "length");
    assert_string_equal(r.text, "cut");
    assert_int_equal(r.usage.output, 64);
    assert_false(r.usage.estimated);
    fr_reply_close(&r);
}

/* A model stuck in a loop is cut at the 256th identical chunk in a row;
 * 255 are still a (strange) answer. */
static void test_stream_repeated_chunk(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    for (int times = 255; times <= 256; times++) {
        fr_buf b;
        fr_buf_init(&b, 0);
        fr_buf_puts(&b, LINE("start "));
        for (int i = 0; i < times; i++)
            fr_buf_puts(&b, LINE("la "));
        fr_buf_puts(&b, FINAL);
        fr_reply r;
        fr_error err;
        int frc;
        int rc = run_whole(&c, 200, fr_buf_str(&b), &r, &err, &frc);
        if (times == 255) {
            assert_int_equal(rc, FR_OK);
            assert_int_equal(strlen(r.text), strlen("start ") + 255 * 3);
            fr_reply_close(&r);
        } else {
            assert_int_equal(rc, FR_EPROTO);
            assert_int_equal(frc, FR_EPROTO);
            assert_non_null(strstr(err.msg, "repeats the same word 256 times"));
            assert_null(r.text);
        }
        fr_buf_close(&b);
    }
}

static void test_started(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_adapter *a = fr_adapter_new(FR_PROTO_OLLAMA, &c);
    assert_false(fr_adapter_started(a));
    /* An empty content (a role-only first chunk) is no content yet. */
    const char *first = LINE("");
    assert_int_equal(fr_adapter_feed(a, 200, first, strlen(first)), FR_OK);
    assert_false(fr_adapter_started(a));
    /* Half a line is not content either. */
    const char *second = LINE("Hi");
    assert_int_equal(fr_adapter_feed(a, 200, second, 40), FR_OK);
    assert_false(fr_adapter_started(a));
    assert_int_equal(fr_adapter_feed(a, 200, second + 40, strlen(second) - 40), FR_OK);
    assert_true(fr_adapter_started(a));
    fr_adapter_free(a);
}

/* Non-streaming */

static const char *const REPLY =
    "{\"model\":\"llama3.2:3b\",\"created_at\":\"2025-01-10T09:41:07.9Z\","
    "\"message\":{\"role\":\"assistant\",\"content\":\"Line one\\nLine two\"},"
    "\"done_reason\":\"length\",\"done\":true,\"total_duration\":5191566416,"
    "\"load_duration\":2154458,\"prompt_eval_count\":20,\"prompt_eval_duration\":383809000,"
    "\"eval_count\":8,\"eval_duration\":4799921000}";

static void check_reply(const fr_reply *r)
{
    adapter_check_reply(
        r, &(adapter_want){"Line one\nLine two", "length", "llama3.2:3b", 20, 8, 0, false});
}

static void test_non_stream(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    size_t len = strlen(REPLY);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        fr_reply r;
        fr_error err;
        int rc = run(&c, 200, REPLY, len, cut, 1, &r, &err, NULL);
        if (rc != FR_OK)
            fail_msg("split at %zu: %s", i, err.msg);
        check_reply(&r);
        fr_reply_close(&r);
    }

    /* Pretty-printed, with a trailing newline. */
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200,
                               "{\n  \"model\": \"llama3.2:3b\",\n  \"message\": {\n"
                               "    \"role\": \"assistant\",\n    \"content\": \"Line one\\n"
                               "Line two\"\n  },\n  \"done_reason\": \"length\",\n"
                               "  \"done\": true,\n  \"prompt_eval_count\": 20,\n"
                               "  \"eval_count\": 8\n}\n",
                               &r, &err, NULL),
                     FR_OK);
    check_reply(&r);
    fr_reply_close(&r);
}

/* A server (or proxy) that streams although "stream": false was asked. */
static void test_non_stream_answered_as_ndjson(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, STREAM, &r, &err, NULL), FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);
    char *s = adapter_crlf(STREAM);
    assert_int_equal(run_whole(&c, 200, s, &r, &err, NULL), FR_OK);
    check_stream_reply(&r);
    fr_reply_close(&r);
    free(s);

    /* Cut before its final object: truncated, as when streaming. */
    size_t upto = strlen(STREAM) - 1;
    for (size_t n = 1; n < upto; n += 5) {
        int rc = run(&c, 200, STREAM, n, NULL, 0, &r, &err, NULL);
        if (memchr(STREAM, '\n', n) && rc != FR_ETRUNCATED)
            fail_msg("cut at %zu gave %s: %s", n, fr_err_name(rc), err.msg);
        /* One partial line alone is not NDJSON at all: malformed. */
        if (!memchr(STREAM, '\n', n))
            assert_int_equal(rc, FR_EPROTO);
    }
    /* An error line in it is the server's error. */
    assert_int_equal(run_whole(&c, 200, LINE("a") "{\"error\":\"gone\"}\n", &r, &err, NULL),
                     FR_EPROTO);
    assert_string_equal(err.msg, "ollama: gone");
}

static void test_non_stream_edge_cases(void **state)
{
    (void)state;
    fr_call c = make_call(false);
    fr_reply r;
    fr_error err;

    /* No content at all: empty text, never NULL; zero-token output. */
    assert_int_equal(
        run_whole(&c, 200, "{\"message\":{\"role\":\"assistant\"},\"done\":true}", &r, &err, NULL),
        FR_OK);
    assert_string_equal(r.text, "");
    assert_null(r.model);
    assert_int_equal(r.usage.output, 0);
    assert_true(r.usage.estimated);
    fr_reply_close(&r);

    /* Complete but not final: the answer is not all there. */
    assert_int_equal(
        run_whole(&c, 200, "{\"message\":{\"content\":\"par\"},\"done\":false}", &r, &err, NULL),
        FR_ETRUNCATED);
    assert_int_equal(run_whole(&c, 200, "{\"message\":{\"content\":\"par\"}}", &r, &err, NULL),
                     FR_ETRUNCATED);

    assert_int_equal(run_whole(&c, 200, "", &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "the reply body is empty");
    assert_int_equal(run_whole(&c, 200, " \r\n", &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "the reply body is empty");
    assert_int_equal(run_whole(&c, 200, "{\"message\":{\"con", &r, &err, NULL), FR_EPROTO);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_int_equal(run_whole(&c, 200, "[1]", &r, &err, NULL), FR_EPROTO);
    assert_string_equal(err.msg, "the reply is not a JSON object");
    assert_int_equal(run_whole(&c, 200, "{\"error\":\"model 'x' not found, try pulling it first\"}",
                               &r, &err, NULL),
                     FR_EPROTO);
    assert_string_equal(err.msg, "ollama: model 'x' not found, try pulling it first");
    assert_null(r.text);
}

static void test_too_big(void **state)
{
    (void)state;
    size_t piece = 64 * 1024;
    char *junk = malloc(piece);
    memset(junk, 'x', piece);
    for (int stream = 0; stream <= 1; stream++) {
        fr_call c = make_call(stream);
        fr_adapter *a = fr_adapter_new(FR_PROTO_OLLAMA, &c);
        const char *head = "{\"message\":{\"content\":\"";
        int rc = fr_adapter_feed(a, 200, head, strlen(head));
        size_t fed = 0;
        while (rc == FR_OK && fed <= 70u * 1024 * 1024) {
            rc = fr_adapter_feed(a, 200, junk, piece);
            fed += piece;
        }
        assert_int_equal(rc, FR_ETOOBIG);
        assert_true(fed > 8u * 1024 * 1024 - piece);
        fr_reply r;
        fr_error err;
        assert_int_equal(fr_adapter_finish(a, 200, &r, &err), FR_ETOOBIG);
        assert_non_null(strstr(err.msg, "the reply is over the 8388608-byte cap"));
        assert_null(r.text);
        fr_adapter_free(a);
    }
    free(junk);
}

/* Blank lines are not content: only JSON lines move the progress the
 * engine's idle timer reads. */
static void test_progress(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    adapter_check_progress(FR_PROTO_OLLAMA, &c, "\n\r\n \n",
                           "{\"message\":{\"content\":\"hi\"},\"done\":false}\n");
}

/* HTTP errors */

static void test_http_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    fr_reply r;
    fr_error err;

    assert_int_equal(run_whole(&c, 404, "{\"error\":\"model 'x' not found\"}", &r, &err, NULL),
                     FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 404: model 'x' not found");
    assert_string_equal(err.source, "ollama");
    assert_null(r.text);

    /* Split, with the newline Ollama's streaming handler adds. */
    const char *s = "{\"error\":\"model 'x' not found\"}\n";
    for (size_t i = 0; i <= strlen(s); i++) {
        size_t cut[1] = {i};
        int frc;
        assert_int_equal(run(&c, 404, s, strlen(s), cut, 1, &r, &err, &frc), FR_EHTTP);
        assert_int_equal(frc, FR_OK);
        assert_string_equal(err.msg, "HTTP 404: model 'x' not found");
    }

    assert_int_equal(
        run_whole(&c, 400, "{\"error\":\"invalid format: expected \\\"json\\\" or a JSON schema\"}",
                  &r, &err, NULL),
        FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 400: invalid format: expected \"json\" or a JSON schema");
    assert_int_equal(run_whole(&c, 502, "", &r, &err, NULL), FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 502: (empty body)");
    assert_int_equal(run_whole(&c, 500, "upstream connect error\n", &r, &err, NULL), FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 500: upstream connect error");

    /* The status may only be known at finish. */
    fr_adapter *a = fr_adapter_new(FR_PROTO_OLLAMA, &c);
    assert_int_equal(fr_adapter_finish(a, 503, &r, &err), FR_EHTTP);
    assert_string_equal(err.msg, "HTTP 503: (empty body)");
    fr_adapter_free(a);
}

/* A proxy in front of Ollama may echo the key; it must not reach any
 * error message however it arrives. */
static void test_key_never_in_errors(void **state)
{
    (void)state;
    fr_call c = make_call(true);
    c.api_key = KEY;
    fr_reply r;
    fr_error err;
    static const adapter_key_case cases[] = {
        {401, true, "{\"error\":\"invalid key: " KEY "\"}", false},
        {500, true, "Authorization: Bearer " KEY, false},
        {502, true, ADAPTER_PAD180 "Bearer " KEY, false},
        {200, true, "{\"error\":\"bad key " KEY "\"}\n", false},
        {200, true, "{\"error\":{\"message\":\"bad key " KEY "\"}}\n", false},
        {200, true, "{\"x\": " KEY "}\n", false},
        {200, true, KEY "\n", false},
        {200, true, "{\"message\": \"" KEY "\\q\"}\n", false},
        {200, false, "{\"error\":\"" KEY "\"}", false},
        {200, false, KEY, false},
        {200, false, "{\"message\": \"" KEY "\\q\"}", false},
        {200, false, "{\"a\":1}\n" KEY "\n", false},
    };
    adapter_check_key_cases(FR_PROTO_OLLAMA, &c, cases, sizeof cases / sizeof cases[0],
                            "ftp://" KEY "@host");

    /* A schema reply that is not JSON quotes nothing of the key either. */
    json_t *schema = json_pack("{s:s}", "type", "object");
    c.schema = schema;
    c.stream = false;
    int rc =
        run_whole(&c, 200, "{\"message\":{\"content\":\"" KEY "\"},\"done\":true}", &r, &err, NULL);
    assert_true(rc < 0);
    assert_null(strstr(err.msg, "SECRET"));
    json_decref(schema);
}

/* Structured output */

static void test_schema_reply_is_parsed(void **state)
{
    (void)state;
    json_t *schema = json_pack("{s:s}", "type", "object");
    json_t *want = json_pack("{s:[s]}", "files", "a.c");
    fr_reply r;
    fr_error err;

    /* Streamed in pieces that are not JSON on their own. */
    fr_call c = make_call(true);
    c.schema = schema;
    const char *s = LINE("{\\\"fil") LINE("es\\\": [\\\"a") LINE(".c\\\"]}") FINAL;
    for (size_t i = 0; i <= strlen(s); i += 3) {
        size_t cut[1] = {i};
        assert_int_equal(run(&c, 200, s, strlen(s), cut, 1, &r, &err, NULL), FR_OK);
        assert_true(json_equal(r.json, want));
        assert_string_equal(r.text, "{\"files\": [\"a.c\"]}");
        fr_reply_close(&r);
        assert_null(r.json);
    }

    /* "json" mode, not streamed, in a fence. */
    json_t *any = json_string("json");
    c.schema = any;
    c.stream = false;
    assert_int_equal(run_whole(&c, 200,
                               "{\"message\":{\"content\":\"```json\\n{\\\"files\\\":"
                               "[\\\"a.c\\\"]}\\n```\"},\"done\":true}",
                               &r, &err, NULL),
                     FR_OK);
    assert_true(json_equal(r.json, want));
    fr_reply_close(&r);

    /* Not JSON: the structured output failed; the reply stays empty. */
    int rc = run_whole(&c, 200, "{\"message\":{\"content\":\"Sorry, I can't.\"},\"done\":true}", &r,
                       &err, NULL);
    assert_int_equal(rc, FR_EQUALITY);
    assert_int_equal(err.code, rc);
    assert_non_null(strstr(err.msg, "not valid JSON"));
    assert_null(r.text);
    assert_null(r.json);

    /* Without a schema the text is left alone. */
    c.schema = NULL;
    assert_int_equal(run_whole(&c, 200, REPLY, &r, &err, NULL), FR_OK);
    assert_null(r.json);
    fr_reply_close(&r);
    json_decref(any);
    json_decref(want);
    json_decref(schema);
}

/* The finish reason, normalised: the engine decides by fr_reply.finish. */

static fr_finish ollama_finish(bool stream, const char *body, bool schema)
{
    fr_call c = make_call(stream);
    json_t *any = json_string("json");
    if (schema)
        c.schema = any;
    fr_reply r;
    fr_error err;
    assert_int_equal(run_whole(&c, 200, body, &r, &err, NULL), FR_OK);
    fr_finish f = r.finish;
    fr_reply_close(&r);
    json_decref(any);
    return f;
}

static void test_finish_normalised(void **state)
{
    (void)state;
    assert_int_equal(ollama_finish(false,
                                   "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
                                   "\"done\":true,\"done_reason\":\"stop\"}",
                                   false),
                     FR_FINISH_STOP);
    assert_int_equal(ollama_finish(false,
                                   "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
                                   "\"done\":true,\"done_reason\":\"length\"}",
                                   false),
                     FR_FINISH_LENGTH);
    assert_int_equal(ollama_finish(false,
                                   "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},"
                                   "\"done\":true}",
                                   false),
                     FR_FINISH_NONE);
    /* A tool call ends with "stop": the message says it. */
    assert_int_equal(ollama_finish(false,
                                   "{\"message\":{\"role\":\"assistant\",\"content\":\"\","
                                   "\"tool_calls\":[{\"function\":{\"name\":\"f\","
                                   "\"arguments\":{}}}]},\"done\":true,\"done_reason\":\"stop\"}",
                                   false),
                     FR_FINISH_TOOL_CALL);
    /* Thinking and no answer, streamed: message.thinking pieces, empty content. */
    assert_int_equal(
        ollama_finish(true,
                      "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hm\"},"
                      "\"done\":false}\n"
                      "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
                      "\"done_reason\":\"stop\"}\n",
                      false),
        FR_FINISH_NO_ANSWER);
    assert_int_equal(
        ollama_finish(true,
                      "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hm\"},"
                      "\"done\":false}\n"
                      "{\"message\":{\"role\":\"assistant\",\"content\":\"42\"},\"done\":true,"
                      "\"done_reason\":\"stop\"}\n",
                      false),
        FR_FINISH_STOP);
    /* Structured output cut by num_predict: its finish, not a quality error. */
    assert_int_equal(ollama_finish(false,
                                   "{\"message\":{\"role\":\"assistant\",\"content\":\"{\\\"a\\\":"
                                   "\"},\"done\":true,\"done_reason\":\"length\"}",
                                   true),
                     FR_FINISH_LENGTH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_joining),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_body_format),
        cmocka_unit_test(test_body_keep_alive),
        cmocka_unit_test(test_stream_every_split),
        cmocka_unit_test(test_stream_final_without_newline),
        cmocka_unit_test(test_stream_missing_done_is_truncated),
        cmocka_unit_test(test_stream_after_done),
        cmocka_unit_test(test_stream_error_line),
        cmocka_unit_test(test_stream_malformed_line),
        cmocka_unit_test(test_stream_without_counts_is_estimated),
        cmocka_unit_test(test_stream_finish_reason),
        cmocka_unit_test(test_finish_normalised),
        cmocka_unit_test(test_stream_repeated_chunk),
        cmocka_unit_test(test_started),
        cmocka_unit_test(test_non_stream),
        cmocka_unit_test(test_non_stream_answered_as_ndjson),
        cmocka_unit_test(test_non_stream_edge_cases),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_http_errors),
        cmocka_unit_test(test_key_never_in_errors),
        cmocka_unit_test(test_schema_reply_is_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
