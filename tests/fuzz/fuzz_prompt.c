/* libFuzzer target for the path from a task's prompt to its request:
 * template rendering (dsl/template.h) with fuzzed dependency outputs and
 * vars, the engine's text rule (engine/util/utf8.h, as
 * fr_workflow_render_prompt applies it), the cache key (engine/cache.c) and
 * the request of every protocol's adapter (fr_adapter_new,
 * fr_adapter_request).
 *
 * Input: [flags][max_tokens][temperature] then up to six fields separated
 * by 0xFE bytes: the template, dependency a's output, dependency b's
 * output, the var "x", the system prompt, the model. A field may hold any
 * bytes, NUL and invalid UTF-8 included (a damaged cache entry or a --var
 * is where such text would come from).
 *   flags bit 0  dependency a's output is also parsed as its JSON
 *   flags bit 1  a seed is set
 *   flags bit 2  a structured-output schema is asked
 *   flags bit 3  stream
 *
 * Invariants: rendering ends FR_OK with a string or FR_EWORKFLOW with a
 * message; the cache key is 32 hex digits for any bytes and the same for
 * the same call; text that is not valid UTF-8 or holds a NUL never reaches
 * a request; every adapter builds a request whose body is a JSON object
 * that carries the prompt exactly, and whose headers are one line each. */

#include "dsl/template.h"
#include "engine/cache.h"
#include "engine/util/err.h"
#include "engine/util/utf8.h"
#include "tests/unit/support/split.h"
#include "providers/provider.h"

#include <jansson.h>
#include <string.h>

#define NFIELDS 6

static const fr_protocol protocols[] = {FR_PROTO_OPENAI, FR_PROTO_OLLAMA, FR_PROTO_ANTHROPIC};
static const char *const base_urls[] = {"http://127.0.0.1:9/v1", "http://127.0.0.1:9",
                                        "http://127.0.0.1:9"};

/* A JSON string of any bytes: jansson's checked constructors refuse what
 * is not UTF-8, but text read back from a damaged store need not be. */
static json_t *raw_string(const uint8_t *p, size_t n)
{
    return json_stringn_nocheck((const char *)p, n);
}

/* Whether `v` (borrowed) holds, anywhere, a string equal to `s`. */
static bool holds_string(const json_t *v, const char *s)
{
    if (json_is_string(v))
        return json_string_length(v) == strlen(s) &&
               memcmp(json_string_value(v), s, strlen(s)) == 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (holds_string(json_array_get(v, i), s))
                return true;
        return false;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (holds_string(x, s))
                return true;
        }
    }
    return false;
}

static bool is_hex32(const char *k)
{
    if (!k || strlen(k) != 32)
        return false;
    for (const char *p = k; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The request of protocol `i` for `call` (borrowed), checked. */
static void check_adapter(size_t i, const fr_call *call)
{
    fr_call c = *call;
    c.base_url = base_urls[i];
    fr_adapter *a = fr_adapter_new(protocols[i], &c);
    FUZZ_CHECK(a);
    fr_request req = {0};
    fr_error err = {0};
    if (fr_adapter_request(a, &req, &err) != FR_OK) {
        fprintf(stderr, "request refused: %s\n", err.msg);
        FUZZ_CHECK(!"a sendable call was refused");
    }
    FUZZ_CHECK(req.url && req.body);
    for (size_t h = 0; h < req.nheaders; h++)
        for (const unsigned char *p = (const unsigned char *)req.headers[h]; *p; p++)
            FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
    json_error_t jerr;
    json_t *body = json_loads(req.body, 0, &jerr);
    FUZZ_CHECK(json_is_object(body));
    FUZZ_CHECK(holds_string(body, call->prompt));
    json_decref(body);
    fr_request_close(&req);
    fr_adapter_free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes) as the
 * file comment lays it out. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *f[NFIELDS] = {0};
    size_t fn[NFIELDS] = {0};
    size_t nf = 0, start = 3;
    for (size_t i = 3; i <= size && nf < NFIELDS; i++)
        if (i == size || data[i] == 0xFE) {
            f[nf] = data + start;
            fn[nf++] = i - start;
            start = i + 1;
        }
    for (size_t i = nf; i < NFIELDS; i++)
        f[i] = (const uint8_t *)""; /* a field the input does not reach is empty */
    /* The template is C text, as a workflow's literal is (NUL ends it). */
    char *tmpl = strndup((const char *)f[0], fn[0]);
    json_t *ctx = json_object();
    for (size_t d = 0; d < 2; d++) {
        json_t *parsed = d == 0 && (flags & 1)
                             ? json_loadb((const char *)f[1], fn[1], JSON_DECODE_ANY, NULL)
                             : NULL;
        json_object_set_new(ctx, d == 0 ? "a" : "b",
                            json_pack("{s:o, s:o}", "text", raw_string(f[1 + d], fn[1 + d]), "json",
                                      parsed ? parsed : json_null()));
    }
    json_object_set_new(ctx, "var", json_pack("{s:o}", "x", raw_string(f[3], fn[3])));

    char *prompt = NULL;
    fr_error err = {0};
    int rc = fr_template_render(tmpl, ctx, &prompt, &err);
    FUZZ_CHECK(rc == FR_OK || rc == FR_EWORKFLOW);
    FUZZ_CHECK(rc != FR_OK || prompt);
    FUZZ_CHECK(rc == FR_OK || (!prompt && err.msg[0]));

    char *system = strndup((const char *)f[4], fn[4]);
    /* A workflow always names a model (the load refuses an empty one). */
    char *model = strndup((const char *)f[5], fn[5]);
    if (!model[0]) {
        free(model);
        model = strdup("fuzz-model");
    }
    json_t *schema = (flags & 4) ? json_pack("{s:s}", "type", "object") : NULL;
    if (rc == FR_OK) {
        fr_call call = {
            .model = model,
            .system = system,
            .prompt = prompt,
            .max_tokens = data[1] + 1,
            .temperature = data[2] / 128.0,
            .stream = flags & 8,
            .schema = schema,
            .has_seed = flags & 2,
            .seed = data[2],
        };
        /* The key carries any bytes: it never fails, and it is stable. */
        char *k1 = fr_cache_key("wf", "task", "ep", FR_PROTO_OPENAI, &call);
        char *k2 = fr_cache_key("wf", "task", "ep", FR_PROTO_OPENAI, &call);
        FUZZ_CHECK(is_hex32(k1) && strcmp(k1, k2) == 0);
        free(k1);
        free(k2);
        /* The engine's rule: text that is not valid UTF-8, or holds a NUL,
         * never reaches a request (a prompt fails its task, a literal fails
         * the load). */
        bool sendable = !fr_utf8_text(prompt, strlen(prompt), NULL) &&
                        !fr_utf8_text(system, strlen(system), NULL) &&
                        !fr_utf8_text(model, strlen(model), NULL);
        if (sendable)
            for (size_t i = 0; i < sizeof protocols / sizeof *protocols; i++)
                check_adapter(i, &call);
    }
    json_decref(schema);
    free(model);
    free(system);
    free(prompt);
    json_decref(ctx);
    free(tmpl);
    return 0;
}
