#pragma once
/* Shared by the unit tests of flowrun-sim that speak its three wire
 * protocols (test_sim_protocols, test_sim_faults): the request body of each
 * protocol, a client that reads any reply, streamed or not, into one result
 * while checking its framing, and the JSON schema the structured-output
 * tests ask for with a small validator for it. Header-only, on top of
 * sim_client.h. */

#include "tests/unit/support/sim_client.h"

/* ---- the three protocols ------------------------------------------------------ */

typedef enum proto { P_OPENAI, P_OLLAMA, P_ANTHROPIC } proto;
static const char *const proto_paths[] = {"/v1/chat/completions", "/api/chat", "/v1/messages"};

/* What a client gets from one request, whatever the protocol. */
typedef struct result {
    int status;
    char *head;
    char *raw;    /* the body as received (de-chunked) */
    char *text;   /* assembled content; a tool_use block's input as compact JSON */
    long in, out; /* usage as reported; -1 when absent */
    char *finish; /* finish_reason, done_reason or stop_reason */
    bool tool;    /* the content was an Anthropic tool_use block */
    int pieces;   /* streamed content pieces */
} result;

static inline void result_free(result *r)
{
    free(r->head);
    free(r->raw);
    free(r->text);
    free(r->finish);
    memset(r, 0, sizeof *r);
}

/* Returns an owned request body for `p`: the system prompt (may be NULL)
 * where the protocol carries it, one user message, `stream` set explicitly,
 * Anthropic's required max_tokens, and `extra` (JSON text, may be NULL)
 * merged on top. */
static inline char *proto_body(proto p, const char *model, const char *system, const char *user,
                               bool stream, const char *extra)
{
    json_t *msgs = json_array();
    json_t *doc = json_pack("{s:s,s:b}", "model", model, "stream", stream);
    if (system && p == P_ANTHROPIC)
        json_object_set_new(doc, "system", json_string(system));
    else if (system)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", user));
    json_object_set_new(doc, "messages", msgs);
    if (p == P_ANTHROPIC)
        json_object_set_new(doc, "max_tokens", json_integer(400));
    if (p == P_OPENAI && stream)
        json_object_set_new(doc, "stream_options", json_pack("{s:b}", "include_usage", 1));
    return body_with(doc, extra);
}

static inline long int_member(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

static inline void set_finish(result *out, const json_t *v)
{
    if (json_is_string(v)) {
        free(out->finish);
        out->finish = fr_xstrdup(json_string_value(v));
    }
}

/* One SSE event: its "event:" name (NULL when none) and its data. */
typedef struct sse_event {
    char *name;
    char *data;
} sse_event;

typedef struct sse_events {
    sse_event *items;
    int n;
} sse_events;

static inline void parse_sse(const char *body, sse_events *ev)
{
    ev->items = NULL;
    ev->n = 0;
    const char *p = body;
    while (*p) {
        const char *sep = strstr(p, "\n\n");
        assert_non_null(sep); /* every event ends with a blank line */
        sse_event e = {NULL, NULL};
        if (strncmp(p, "event: ", 7) == 0) {
            const char *nl = strchr(p, '\n');
            e.name = fr_xstrndup(p + 7, (size_t)(nl - p - 7));
            p = nl + 1;
        }
        assert_memory_equal(p, "data: ", 6);
        e.data = fr_xstrndup(p + 6, (size_t)(sep - p - 6));
        ev->items = fr_xrealloc(ev->items, (size_t)(ev->n + 1) * sizeof *ev->items);
        ev->items[ev->n++] = e;
        p = sep + 2;
    }
}

static inline void sse_free(sse_events *ev)
{
    for (int i = 0; i < ev->n; i++) {
        free(ev->items[i].name);
        free(ev->items[i].data);
    }
    free(ev->items);
    ev->n = 0;
}

static inline json_t *must_parse(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (!doc)
        fail_msg("not JSON (%s): %s", jerr.text, text);
    return doc;
}

static inline void parse_openai_stream(const char *body, result *out)
{
    sse_events ev;
    parse_sse(body, &ev);
    fr_buf text;
    fr_buf_init(&text, 0);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.items[ev.n - 1].data, "[DONE]");
    for (int i = 0; i < ev.n - 1; i++) {
        assert_null(ev.items[i].name);
        json_t *doc = must_parse(ev.items[i].data);
        assert_string_equal(json_string_value(json_object_get(doc, "object")),
                            "chat.completion.chunk");
        json_t *usage = json_object_get(doc, "usage");
        if (json_is_object(usage)) {
            out->in = int_member(usage, "prompt_tokens");
            out->out = int_member(usage, "completion_tokens");
        }
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        const char *piece =
            json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
        if (piece) {
            fr_buf_puts(&text, piece);
            out->pieces++;
        }
        set_finish(out, json_object_get(choice, "finish_reason"));
        json_decref(doc);
    }
    out->text = fr_buf_take(&text);
    sse_free(&ev);
}

static inline void parse_ollama_stream(const char *body, result *out)
{
    fr_buf text;
    fr_buf_init(&text, 0);
    bool done = false;
    for (const char *p = body; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every object is one line */
        assert_false(done);  /* nothing after the done line */
        char *line = fr_xstrndup(p, (size_t)(nl - p));
        json_t *doc = must_parse(line);
        free(line);
        assert_non_null(json_string_value(json_object_get(doc, "model")));
        assert_non_null(json_string_value(json_object_get(doc, "created_at")));
        json_t *msg = json_object_get(doc, "message");
        assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
        const char *piece = json_string_value(json_object_get(msg, "content"));
        assert_non_null(piece);
        done = json_is_true(json_object_get(doc, "done"));
        if (done) {
            assert_string_equal(piece, "");
            set_finish(out, json_object_get(doc, "done_reason"));
            out->in = int_member(doc, "prompt_eval_count");
            out->out = int_member(doc, "eval_count");
            assert_true(int_member(doc, "total_duration") > 0);
        } else {
            assert_true(json_is_false(json_object_get(doc, "done")));
            fr_buf_puts(&text, piece);
            out->pieces++;
        }
        json_decref(doc);
        p = nl + 1;
    }
    assert_true(done);
    out->text = fr_buf_take(&text);
}

/* Checks the Anthropic event order: message_start, content_block_start,
 * ping, content_block_delta..., content_block_stop, message_delta,
 * message_stop, each event named as its data's type. */
static inline void parse_anthropic_stream(const char *body, result *out)
{
    static const char *const order[] = {
        "message_start",      "content_block_start", "ping",        "content_block_delta",
        "content_block_stop", "message_delta",       "message_stop"};
    sse_events ev;
    parse_sse(body, &ev);
    fr_buf text;
    fr_buf_init(&text, 0);
    size_t stage = 0;
    for (int i = 0; i < ev.n; i++) {
        json_t *doc = must_parse(ev.items[i].data);
        const char *type = json_string_value(json_object_get(doc, "type"));
        assert_non_null(ev.items[i].name);
        assert_string_equal(ev.items[i].name, type);
        while (stage < 7 && strcmp(order[stage], type) != 0) {
            assert_int_equal(stage, 3); /* only the deltas may be absent */
            stage++;
        }
        assert_true(stage < 7);
        if (stage == 0) {
            json_t *msg = json_object_get(doc, "message");
            assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
            assert_int_equal(json_array_size(json_object_get(msg, "content")), 0);
            json_t *usage = json_object_get(msg, "usage");
            if (usage) {
                out->in = int_member(usage, "input_tokens");
                assert_int_equal(int_member(usage, "output_tokens"), 1);
            }
        } else if (stage == 1) {
            json_t *block = json_object_get(doc, "content_block");
            out->tool = strcmp(json_string_value(json_object_get(block, "type")), "tool_use") == 0;
            if (out->tool)
                assert_int_equal(json_object_size(json_object_get(block, "input")), 0);
        } else if (stage == 3) {
            json_t *delta = json_object_get(doc, "delta");
            const char *dt = json_string_value(json_object_get(delta, "type"));
            assert_string_equal(dt, out->tool ? "input_json_delta" : "text_delta");
            fr_buf_puts(&text, json_string_value(
                                   json_object_get(delta, out->tool ? "partial_json" : "text")));
            out->pieces++;
        } else if (stage == 5) {
            set_finish(out, json_object_get(json_object_get(doc, "delta"), "stop_reason"));
            json_t *usage = json_object_get(doc, "usage");
            if (usage)
                out->out = int_member(usage, "output_tokens");
        }
        if (stage != 3) /* every other event comes once */
            stage++;
        json_decref(doc);
    }
    assert_int_equal(stage, 7);
    out->text = fr_buf_take(&text);
    sse_free(&ev);
}

static inline void parse_full(proto p, const json_t *doc, result *out)
{
    if (p == P_OPENAI) {
        out->text = fr_xstrdup(content_of(doc));
        set_finish(out, json_object_get(json_array_get(json_object_get(doc, "choices"), 0),
                                        "finish_reason"));
        json_t *usage = json_object_get(doc, "usage");
        out->in = int_member(usage, "prompt_tokens");
        out->out = int_member(usage, "completion_tokens");
    } else if (p == P_OLLAMA) {
        assert_true(json_is_true(json_object_get(doc, "done")));
        json_t *msg = json_object_get(doc, "message");
        assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
        out->text = fr_xstrdup(json_string_value(json_object_get(msg, "content")));
        set_finish(out, json_object_get(doc, "done_reason"));
        out->in = int_member(doc, "prompt_eval_count");
        out->out = int_member(doc, "eval_count");
    } else {
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "message");
        assert_true(strncmp(json_string_value(json_object_get(doc, "id")), "msg_", 4) == 0);
        assert_true(json_is_null(json_object_get(doc, "stop_sequence")));
        json_t *content = json_object_get(doc, "content");
        assert_int_equal(json_array_size(content), 1);
        json_t *block = json_array_get(content, 0);
        const char *type = json_string_value(json_object_get(block, "type"));
        if (strcmp(type, "tool_use") == 0) {
            out->tool = true;
            assert_true(strncmp(json_string_value(json_object_get(block, "id")), "toolu_", 6) == 0);
            out->text = json_dumps(json_object_get(block, "input"), JSON_COMPACT);
        } else {
            assert_string_equal(type, "text");
            out->text = fr_xstrdup(json_string_value(json_object_get(block, "text")));
        }
        set_finish(out, json_object_get(doc, "stop_reason"));
        json_t *usage = json_object_get(doc, "usage");
        out->in = int_member(usage, "input_tokens");
        out->out = int_member(usage, "output_tokens");
        if (usage) {
            assert_int_equal(int_member(usage, "cache_creation_input_tokens"), 0);
            assert_int_equal(int_member(usage, "cache_read_input_tokens"), 0);
        }
    }
}

/* Sends one request of protocol `p` on a fresh connection and reads the
 * reply into `out`, checking its framing; error replies keep only status,
 * head and raw body. */
static inline void ask_body(fixture *fx, proto p, bool stream, const char *body, result *out)
{
    memset(out, 0, sizeof *out);
    out->in = out->out = -1;
    response r = {0};
    roundtrip(fx, "POST", proto_paths[p], body, &r);
    out->status = r.status;
    out->head = r.head;
    out->raw = r.body;
    if (r.status != 200)
        return;
    if (!stream) {
        assert_true(header_is(r.head, "Content-Type", "application/json"));
        json_t *doc = body_json(&r);
        parse_full(p, doc, out);
        json_decref(doc);
        return;
    }
    assert_true(header_is(r.head, "Transfer-Encoding", "chunked"));
    if (p == P_OLLAMA) {
        assert_true(header_is(r.head, "Content-Type", "application/x-ndjson"));
        parse_ollama_stream(r.body, out);
    } else {
        assert_true(header_is(r.head, "Content-Type", "text/event-stream"));
        if (p == P_OPENAI)
            parse_openai_stream(r.body, out);
        else
            parse_anthropic_stream(r.body, out);
    }
}

static inline void ask(fixture *fx, proto p, bool stream, const char *model, const char *system,
                       const char *user, const char *extra, result *out)
{
    char *body = proto_body(p, model, system, user, stream, extra);
    ask_body(fx, p, stream, body, out);
    free(body);
}

/* ---- structured output ----------------------------------------------------------- */

static const char *const test_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"title\":{\"type\":\"string\",\"minLength\":5,\"maxLength\":12},"
    "\"level\":{\"type\":\"string\",\"enum\":[\"low\",\"mid\",\"high\"]},"
    "\"score\":{\"type\":\"integer\",\"minimum\":3,\"maximum\":7},"
    "\"ratio\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},"
    "\"minItems\":2,\"maxItems\":4},"
    "\"points\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-5,"
    "\"maximum\":-1}},"
    "\"flag\":{\"type\":\"boolean\"},"
    "\"owner\":{\"$ref\":\"#/$defs/person\"}},"
    "\"required\":[\"title\",\"level\",\"score\",\"tags\"],"
    "\"additionalProperties\":false,"
    "\"$defs\":{\"person\":{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\",\"minimum\":18,"
    "\"maximum\":99}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}";

static inline bool type_matches(const json_t *v, const char *type)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    return json_is_null(v);
}

/* A small validator for the keywords test_schema uses. */
static inline bool conforms(const json_t *v, const json_t *schema, const json_t *root)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    if (ref) {
        assert_true(strncmp(ref, "#/$defs/", 8) == 0);
        return conforms(v, json_object_get(json_object_get(root, "$defs"), ref + 8), root);
    }
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type && !type_matches(v, type))
        return false;
    const json_t *en = json_object_get(schema, "enum");
    if (en) {
        bool found = false;
        size_t i;
        const json_t *e;
        json_array_foreach(en, i, e)
        {
            found = found || json_equal(e, v);
        }
        if (!found)
            return false;
    }
    const json_t *k;
    if (json_is_string(v)) {
        long len = (long)json_string_length(v);
        if ((k = json_object_get(schema, "minLength")) && len < json_integer_value(k))
            return false;
        if ((k = json_object_get(schema, "maxLength")) && len > json_integer_value(k))
            return false;
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if ((k = json_object_get(schema, "minimum")) && x < json_number_value(k))
            return false;
        if ((k = json_object_get(schema, "maximum")) && x > json_number_value(k))
            return false;
        if ((k = json_object_get(schema, "exclusiveMinimum")) && x <= json_number_value(k))
            return false;
    }
    if (json_is_array(v)) {
        long n = (long)json_array_size(v);
        if ((k = json_object_get(schema, "minItems")) && n < json_integer_value(k))
            return false;
        if ((k = json_object_get(schema, "maxItems")) && n > json_integer_value(k))
            return false;
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!conforms(item, json_object_get(schema, "items"), root))
                return false;
        }
    }
    if (json_is_object(v)) {
        const json_t *props = json_object_get(schema, "properties");
        size_t i;
        const json_t *name;
        json_array_foreach(json_object_get(schema, "required"), i, name)
        {
            if (!json_object_get(v, json_string_value(name)))
                return false;
        }
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            const json_t *sub = json_object_get(props, key);
            if (!sub && json_is_false(json_object_get(schema, "additionalProperties")))
                return false;
            if (sub && !conforms(val, sub, root))
                return false;
        }
    }
    return true;
}

/* The structured-output part of a request for `p` (schema NULL: any JSON object). */
static inline char *structured_extra(proto p, const char *schema)
{
    if (p == P_OPENAI)
        return schema ? fr_xasprintf("{\"response_format\":{\"type\":\"json_schema\","
                                     "\"json_schema\":{\"name\":\"out\",\"strict\":true,"
                                     "\"schema\":%s}}}",
                                     schema)
                      : fr_xstrdup("{\"response_format\":{\"type\":\"json_object\"}}");
    if (p == P_OLLAMA)
        return schema ? fr_xasprintf("{\"format\":%s}", schema)
                      : fr_xstrdup("{\"format\":\"json\"}");
    return fr_xasprintf("{\"tools\":[{\"name\":\"other\",\"input_schema\":{\"type\":\"object\"}},"
                        "{\"name\":\"emit\",\"description\":\"d\",\"input_schema\":%s}],"
                        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"emit\"}}",
                        schema ? schema : "{\"type\":\"object\"}");
}
