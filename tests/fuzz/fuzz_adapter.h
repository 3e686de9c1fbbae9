#pragma once
/* Shared by the protocol adapter fuzz targets (fuzz_openai.c, fuzz_ollama.c,
 * fuzz_anthropic.c): one attempt through the public fr_adapter interface,
 * from the request to the finished reply, with the reply body taken from
 * the fuzzer's input, and the invariants every adapter owes the engine.
 *
 * Input: [flags][mode][seed][status] then the reply body.
 *   flags bit 0     stream (else a plain JSON reply is asked)
 *   flags bits 1-2  structured output: 1 the string "json", 2 a schema
 *                   object, 0 or 3 none
 *   flags bit 3     the status is statuses[status & 15] (else 200)
 *   flags bit 4     finish with status 0, as when the final status is lost
 *   flags bit 7     offer two tools and send a conversation with a tool turn
 *                   (so tool-call pieces are read into reply.tool_calls)
 *   mode, seed      how the body is cut into chunks (tests/unit/support/split.h)
 *
 * Every input runs three times, body fed whole, body cut, and body cut with
 * every event read by json_loadb (fr_provider_tree_only); all must end the
 * same way, because the network decides the cut, not the server, and the
 * path scanner only ever reads faster what the tree code reads. */

#include "engine/util/err.h"
#include "engine/util/kinds.h"
#include "engine/util/mem.h"
#include "tests/unit/support/split.h"
#include "providers/provider.h"

#include <jansson.h>
#include <string.h>

/* A key that must never appear in an error message. */
#define FUZZ_KEY "sk-fuzz-0123456789abcdefSECRET"

static const long fuzz_statuses[16] = {200, 200, 201, 204, 400, 401, 403, 404,
                                       408, 429, 500, 503, 529, 0,   302, 100};

typedef struct outcome {
    int feed_rc;
    int rc;
    bool started;
    char *text; /* owned copies of the reply, NULL when absent */
    char *json;
    char *finish_reason;
    fr_finish finish;
    char *model;
    char *tool_calls;
    fr_usage usage;
    char msg[1024];
} outcome;

static void outcome_close(outcome *o)
{
    free(o->text);
    free(o->json);
    free(o->finish_reason);
    free(o->model);
    free(o->tool_calls);
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool has_ctl(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

static bool is_2xx(long status)
{
    return status >= 200 && status < 300;
}

/* Checks the request the adapter built: a URL, headers on one line each, a
 * body that is a JSON object. */
static void check_request(const fr_request *req)
{
    FUZZ_CHECK(req->url && req->body);
    for (size_t i = 0; i < req->nheaders; i++)
        FUZZ_CHECK(req->headers[i] && !has_ctl(req->headers[i]));
    json_t *body = json_loads(req->body, 0, NULL);
    FUZZ_CHECK(json_is_object(body));
    json_decref(body);
}

/* Checks a reply's tool calls (borrowed, may be NULL): only when tools
 * were offered and the finish says so, each with an id, a name and an
 * object of arguments or the raw text of ones that are not. */
static void check_tool_calls(const json_t *calls, bool offered, fr_finish finish)
{
    if (!calls)
        return;
    FUZZ_CHECK(offered && finish == FR_FINISH_TOOL_CALL && json_array_size(calls) > 0);
    size_t i;
    const json_t *c;
    json_array_foreach(calls, i, c)
    {
        FUZZ_CHECK(json_is_string(json_object_get(c, "id")));
        FUZZ_CHECK(json_is_string(json_object_get(c, "name")));
        const json_t *args = json_object_get(c, "arguments");
        FUZZ_CHECK(json_is_object(args) ||
                   (json_is_null(args) && json_is_string(json_object_get(c, "raw_arguments"))));
    }
}

/* One attempt: request, feed `n` bytes of `body` cut as `mode`/`seed` say
 * at `status`, finish at `final_status`. Fills `o` (owned by the caller,
 * released with outcome_close) and checks every invariant. */
static void attempt(fr_protocol proto, const char *base_url, uint8_t flags, long status,
                    long final_status, uint8_t mode, uint8_t seed, const uint8_t *body, size_t n,
                    outcome *o)
{
    json_t *schema = NULL;
    if (((flags >> 1) & 3) == 1)
        schema = json_string("json");
    else if (((flags >> 1) & 3) == 2)
        schema = json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties", "files",
                           "type", "array", "required", "files");
    bool tools = flags & 0x80;
    json_t *tool_defs =
        tools ? json_loads("[{\"name\":\"read_file\",\"description\":\"Read a file.\","
                           "\"parameters\":{\"type\":\"object\",\"properties\":{\"path\":"
                           "{\"type\":\"string\"}}}},{\"name\":\"output\"}]",
                           0, NULL)
              : NULL;
    json_t *conversation =
        tools ? json_loads("[{\"role\":\"user\",\"content\":\"Read a.\"},{\"role\":"
                           "\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\","
                           "\"name\":\"read_file\",\"arguments\":{\"path\":\"a\"}}]},"
                           "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"name\":"
                           "\"read_file\",\"content\":\"hi\",\"is_error\":false}]",
                           0, NULL)
              : NULL;
    FUZZ_CHECK(!tools || (tool_defs && conversation));
    fr_call call = {
        .base_url = base_url,
        .model = "fuzz-model",
        .system = "You answer briefly.",
        .prompt = "Say hello.",
        .max_tokens = 64,
        .temperature = 0.2,
        .stream = flags & 1,
        .schema = schema,
        .api_key = FUZZ_KEY,
        .tools = tool_defs,
        .messages = conversation,
    };
    memset(o, 0, sizeof *o);
    fr_adapter *a = fr_adapter_new(proto, &call);
    fr_request req;
    fr_error err;
    FUZZ_CHECK(fr_adapter_request(a, &req, &err) == FR_OK);
    check_request(&req);
    fr_request_close(&req);

    split sp;
    split_init(&sp, mode, seed, body, n);
    const uint8_t *chunk;
    size_t len;
    while (o->feed_rc == FR_OK && split_next(&sp, &chunk, &len)) {
        o->feed_rc = fr_adapter_feed(a, status, (const char *)chunk, len);
        FUZZ_CHECK(o->feed_rc <= 0);
    }
    o->started = fr_adapter_started(a);

    fr_reply r;
    o->rc = fr_adapter_finish(a, final_status, &r, &err);
    /* The status that decides: a finish without one falls back on the status
     * the feeds carried, if any byte was fed. */
    long eff = final_status ? final_status : n > 0 ? status : 0;
    switch (o->rc) {
    case FR_OK:
        FUZZ_CHECK(eff == 0 || is_2xx(eff));
        FUZZ_CHECK(r.text);
        FUZZ_CHECK(r.usage.input >= 0 && r.usage.output >= 0 && r.usage.cached >= 0);
        /* Never booked as free: text means output tokens. */
        FUZZ_CHECK(!r.text[0] || r.usage.output > 0);
        /* Structured output carries JSON, unless its finish says why not. */
        FUZZ_CHECK(!schema || r.json || !fr_finish_is_answer(r.finish));
        o->text = fr_xstrdup(r.text);
        o->json =
            r.json ? json_dumps(r.json, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        o->finish_reason = r.finish_reason ? fr_xstrdup(r.finish_reason) : NULL;
        o->finish = r.finish;
        o->model = r.model ? fr_xstrdup(r.model) : NULL;
        check_tool_calls(r.tool_calls, tools, r.finish);
        o->tool_calls =
            r.tool_calls ? json_dumps(r.tool_calls, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        o->usage = r.usage;
        break;
    case FR_EHTTP:
    case FR_ETRUNCATED:
    case FR_EPROTO:
    case FR_ETOOBIG:
    case FR_EQUALITY:
        FUZZ_CHECK(o->rc == FR_EHTTP || eff == 0 || is_2xx(eff));
        FUZZ_CHECK(err.code == o->rc && err.msg[0]);
        FUZZ_CHECK(!r.text && !r.json && !r.finish_reason && !r.model && !r.tool_calls);
        /* One line for the log, and never the key. */
        FUZZ_CHECK(!has_ctl(err.msg));
        FUZZ_CHECK(!strstr(err.msg, FUZZ_KEY) && !strstr(err.source, FUZZ_KEY));
        snprintf(o->msg, sizeof o->msg, "%s", err.msg);
        break;
    default:
        fprintf(stderr, "unexpected finish code %s: %s\n", fr_err_name(o->rc), err.msg);
        abort();
    }
    fr_reply_close(&r);
    fr_adapter_free(a);
    json_decref(schema);
    json_decref(tool_defs);
    json_decref(conversation);
}

/* Checks that outcomes `a` and `b` (borrowed) are the same; `why` is the
 * invariant's name when they are not. */
static void same_outcome(const outcome *a, const outcome *b, const char *why)
{
    if (a->rc != b->rc || a->feed_rc != b->feed_rc || !same_str(a->text, b->text) ||
        !same_str(a->json, b->json) || !same_str(a->finish_reason, b->finish_reason) ||
        a->finish != b->finish || !same_str(a->model, b->model) ||
        !same_str(a->tool_calls, b->tool_calls) || a->usage.input != b->usage.input ||
        a->usage.output != b->usage.output || a->usage.cached != b->usage.cached ||
        a->usage.estimated != b->usage.estimated || a->started != b->started ||
        strcmp(a->msg, b->msg) != 0) {
        fprintf(stderr, "a: %s feed=%s '%s'\nb: %s feed=%s '%s'\n", fr_err_name(a->rc),
                fr_err_name(a->feed_rc), a->msg, fr_err_name(b->rc), fr_err_name(b->feed_rc),
                b->msg);
        fprintf(stderr, "invariant broken: %s\n", why);
        abort();
    }
}

/* Runs one fuzz input through protocol `proto`'s adapter, whole and cut,
 * and checks both runs end the same way, and the cut the same again when
 * every event is read with json_loadb (fr_provider_tree_only). */
static int fuzz_adapter(fr_protocol proto, const char *base_url, const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t flags = data[0];
    long status = (flags & 8) ? fuzz_statuses[data[3] & 15] : 200;
    long final_status = (flags & 0x10) ? 0 : status;
    outcome whole, cut;
    attempt(proto, base_url, flags, status, final_status, 0, data[2], data + 4, size - 4, &whole);
    attempt(proto, base_url, flags, status, final_status, data[1], data[2], data + 4, size - 4,
            &cut);
    same_outcome(&whole, &cut, "the cut body ended differently from the whole body");
    /* The same cut read with json_loadb for every event (no path scanner). */
    outcome tree;
    fr_provider_tree_only = true;
    attempt(proto, base_url, flags, status, final_status, data[1], data[2], data + 4, size - 4,
            &tree);
    fr_provider_tree_only = false;
    same_outcome(&cut, &tree, "the path scanner ended the reply differently from the tree code");
    outcome_close(&tree);
    /* FUZZ_VERBOSE=1 shows how each input ends, to check what a seed reaches. */
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "[%s] %s text='%.60s' json=%.60s calls=%.80s usage=%ld/%ld%s %s\n",
                fr_protocol_name(proto), fr_err_name(whole.rc), whole.text ? whole.text : "",
                whole.json ? whole.json : "-", whole.tool_calls ? whole.tool_calls : "-",
                whole.usage.input, whole.usage.output, whole.usage.estimated ? " (estimated)" : "",
                whole.msg);
    outcome_close(&whole);
    outcome_close(&cut);
    return 0;
}
