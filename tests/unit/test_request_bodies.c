/* The request bodies of the three adapters, byte for byte, over varied
 * calls: stream or not, a system prompt or none, prompts with escapes,
 * every UTF-8 length and bytes that are not UTF-8, the limits, a
 * temperature, a seed, structured output (any JSON, a schema strict mode
 * takes and one it does not), tools, a conversation with tool calls and
 * results, Ollama's keep_alive and context. The fixture holds what the
 * jansson tree path (a body built as a tree, then json_dumps'd) sent;
 * bodies are now written without a tree, and must not change. Run with
 * FLOWRUN_UPDATE_GOLDEN set to write the fixture again. */

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

#define GOLDEN   "tests/unit/fixtures/wire/request_bodies.txt"
#define VARIANTS 96

static const char *const SYSTEMS[] = {NULL, "You are terse.", "",
                                      "sys \"quoted\" \\ /\n\t\x01\x1f é € \xf0\x9f\x98\x80"};
static const char *const PROMPTS[] = {"hi", "line\nbreak \"q\" \\ / é € \xf0\x9f\x98\x80",
                                      "not UTF-8: \xff\xfe \xc3 end", "", NULL};
static const char *const MODELS[] = {"qwen2.5-coder", "m\xff", "llama3.1:8b"};
static const int MAX_TOKENS[] = {0, 256, -1, 4096};
static const double TEMPS[] = {-1, 0, 0.7, 1.5, 0.1 + 0.2, 1e-5};
static const char *const KEEP[] = {NULL, "5m", "-1", "0", "", "300"};

/* The schemas, tools and conversations the variants pick from (owned by
 * the test; freed at the end). */
typedef struct material {
    json_t *schemas[4]; /* NULL, "json", strict-ok, not strict-ok */
    json_t *tools[3];   /* NULL, two tools, [] */
    json_t *convos[3];  /* NULL, with tool calls and results, a plain exchange */
} material;

static material make_material(void)
{
    material m = {0};
    m.schemas[1] = json_string("json");
    m.schemas[2] = json_loads("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                              "\"n\":{\"type\":[\"number\",\"null\"]}},\"required\":[\"a\",\"n\"],"
                              "\"additionalProperties\":false}",
                              0, NULL);
    m.schemas[3] = json_loads("{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\","
                              "\"minimum\":0.5}},\"description\":\"é \\\"q\\\"\"}",
                              0, NULL);
    m.tools[1] = json_loads(
        "[{\"name\":\"read_file\",\"description\":\"Reads a file.\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},\"required\":[\"path\"]}},"
        "{\"name\":\"now\"}]",
        0, NULL);
    m.tools[2] = json_array();
    m.convos[1] = json_loads(
        "[{\"role\":\"user\",\"content\":\"read a.txt and b.txt\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
        "{\"id\":\"c1\",\"name\":\"read_file\",\"arguments\":{\"path\":\"a.txt\",\"n\":1.25}},"
        "{\"id\":\"c2\",\"name\":\"read_file\",\"raw_arguments\":\"{\\\"path\\\": \\\"b\"}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"name\":\"read_file\",\"content\":\"A\\n\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"bad\",\"is_error\":true},"
        "{\"role\":\"assistant\",\"content\":\"done \\\"é\\\"\"}]",
        0, NULL);
    m.convos[2] = json_loads("[{\"role\":\"user\",\"content\":\"one\"},{\"role\":\"assistant\","
                             "\"content\":\"two\"},{\"role\":\"user\",\"content\":\"three\"}]",
                             0, NULL);
    assert_non_null(m.schemas[2]);
    assert_non_null(m.schemas[3]);
    assert_non_null(m.tools[1]);
    assert_non_null(m.convos[1]);
    assert_non_null(m.convos[2]);
    return m;
}

static void free_material(material *m)
{
    for (size_t i = 0; i < 4; i++)
        json_decref(m->schemas[i]);
    for (size_t i = 0; i < 3; i++) {
        json_decref(m->tools[i]);
        json_decref(m->convos[i]);
    }
}

#define PICK(arr, i) (arr[(i) % (sizeof arr / sizeof arr[0])])

/* Variant `i`: each field cycles with its own period, so the 96 variants
 * cover the fields' pairs. */
static fr_call variant(const material *m, unsigned i)
{
    fr_call c;
    memset(&c, 0, sizeof c);
    c.base_url = "http://127.0.0.1:8000/v1";
    c.model = PICK(MODELS, i / 7);
    c.system = PICK(SYSTEMS, i);
    c.prompt = PICK(PROMPTS, i / 3);
    c.max_tokens = PICK(MAX_TOKENS, i / 2);
    c.temperature = PICK(TEMPS, i / 5);
    c.stream = i % 2 == 0;
    c.schema = PICK(m->schemas, i / 4);
    c.api_key = i % 3 ? "sk-test" : NULL;
    c.context = i % 5 == 1 ? 8192 : 0;
    c.has_seed = i % 7 < 3;
    c.seed = i % 7 == 1 ? -7 : (long)i * 1000003L;
    c.keep_alive = PICK(KEEP, i / 11);
    c.max_completion_tokens = i % 9 < 4;
    c.tools = PICK(m->tools, i / 6);
    c.messages = PICK(m->convos, i / 8);
    return c;
}

/* Every body as lines "PROTO VARIANT BODY" (or the error code). */
static char *all_bodies(void)
{
    static const fr_protocol protos[] = {FR_PROTO_OPENAI, FR_PROTO_ANTHROPIC, FR_PROTO_OLLAMA};
    static const char *const names[] = {"openai", "anthropic", "ollama"};
    material m = make_material();
    fr_buf out;
    fr_buf_init(&out, 0);
    for (size_t p = 0; p < 3; p++)
        for (unsigned i = 0; i < VARIANTS; i++) {
            fr_call c = variant(&m, i);
            fr_adapter *a = fr_adapter_new(protos[p], &c);
            assert_non_null(a);
            fr_request req;
            fr_error err;
            int rc = fr_adapter_request(a, &req, &err);
            if (rc == FR_OK)
                fr_buf_printf(&out, "%s %u %s\n", names[p], i, req.body);
            else
                fr_buf_printf(&out, "%s %u error %d\n", names[p], i, rc);
            if (rc == FR_OK)
                fr_request_close(&req);
            fr_adapter_free(a);
        }
    free_material(&m);
    return fr_buf_take(&out);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fr_buf b;
    fr_buf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fr_buf_append(&b, chunk, n);
    fclose(f);
    return fr_buf_take(&b);
}

static void test_bodies_as_the_tree_path_wrote(void **state)
{
    (void)state;
    char *got = all_bodies();
    if (getenv("FLOWRUN_UPDATE_GOLDEN")) {
        FILE *f = fopen(GOLDEN, "wb");
        assert_non_null(f);
        fputs(got, f);
        assert_int_equal(fclose(f), 0);
        print_message("rewrote %s\n", GOLDEN);
    }
    char *want = read_file(GOLDEN);
    /* Line by line, so a failure names the protocol and the variant. */
    const char *g = got, *w = want;
    while (*g && *w) {
        size_t gl = strcspn(g, "\n"), wl = strcspn(w, "\n");
        if (gl != wl || memcmp(g, w, gl) != 0)
            print_error("want %.*s\n got %.*s\n", (int)wl, w, (int)gl, g);
        assert_int_equal(gl, wl);
        assert_memory_equal(g, w, gl);
        g += gl + (g[gl] == '\n');
        w += wl + (w[wl] == '\n');
    }
    assert_string_equal(g, w);
    assert_true(strlen(want) > 20000); /* the fixture is there, whole */
    free(want);
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bodies_as_the_tree_path_wrote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
