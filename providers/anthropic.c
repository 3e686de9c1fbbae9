#include "providers/anthropic.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/provider_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO       "anthropic"
#define API_VERSION "2023-06-01"
/* The Messages API requires max_tokens; this is sent when the task set none. */
#define DEFAULT_MAX_TOKENS 4096
/* The forced tool whose input is the structured output. */
#define TOOL_NAME "output"
/* A tool's input_schema must describe an object: any other schema is sent
 * as the one required property of this name, and unwrapped from the reply. */
#define WRAP_KEY "value"

typedef struct anth {
    const fr_call *call; /* borrowed from the fr_adapter, which outlives us */
    fr_reader *rd;       /* the reply's reader, borrowed likewise; its text is
                            the text of every text block, in order */
    bool wrapped;        /* the schema was sent under WRAP_KEY */
    fr_text_acc tool;    /* a stream's input_json_delta pieces of the chosen tool block */
    json_t *tool_input;  /* the chosen tool block's `input` as given whole, or NULL */
    bool have_tool;      /* a tool_use block was chosen */
    bool tool_is_output; /* ... and it is named TOOL_NAME */
    long tool_index;     /* the chosen block's index */
    long cur_index;      /* the index of the block started last */
    long in, cache_write, cache_read, out; /* usage as Anthropic counts it */
} anth;

/* True when the schema cannot be a tool's input_schema as it is. */
static bool needs_wrap(const json_t *schema)
{
    if (!schema || json_is_string(schema))
        return false;
    const char *type = json_string_value(json_object_get(schema, "type"));
    return !type || strcmp(type, "object") != 0;
}

static void *anth_create(const fr_call *call, fr_reader *rd)
{
    anth *o = fr_xcalloc(1, sizeof *o);
    o->call = call;
    o->rd = rd;
    o->wrapped = needs_wrap(call->schema);
    o->cur_index = -1;
    fr_text_acc_init(&o->tool);
    o->tool.no_loops = true; /* a whole reply's tool input never passes one */
    return o;
}

static void anth_destroy(void *self)
{
    anth *o = self;
    fr_text_acc_close(&o->tool);
    json_decref(o->tool_input);
    free(o);
}

#define must fr_provider_must

/* Returns the input_schema of the forced tool (owned). */
static json_t *input_schema(const anth *o)
{
    const json_t *schema = o->call->schema;
    if (json_is_string(schema))
        return must(json_pack("{s:s}", "type", "object"));
    if (o->wrapped)
        return must(json_pack("{s:s,s:{s:O},s:[s]}", "type", "object", "properties", WRAP_KEY,
                              schema, "required", WRAP_KEY));
    return must(json_deep_copy(schema));
}

/* Adds the Messages members of the adapter `self` (borrowed) to `body`.
 * max_tokens is required by the API, so it is always sent; temperature is
 * clamped to Anthropic's 0..1 and left out when negative, so the server's
 * default applies. */
static void add_members(const void *self, json_t *body)
{
    const anth *o = self;
    const fr_call *c = o->call;
    json_object_set_new(body, "max_tokens",
                        json_integer(c->max_tokens > 0 ? c->max_tokens : DEFAULT_MAX_TOKENS));
    if (c->temperature >= 0)
        json_object_set_new(body, "temperature",
                            json_real(c->temperature > 1.0 ? 1.0 : c->temperature));
    if (c->schema) {
        json_object_set_new(body, "tools",
                            must(json_pack("[{s:s,s:s,s:o}]", "name", TOOL_NAME, "description",
                                           "Return the result as this tool's input.",
                                           "input_schema", input_schema(o))));
        json_object_set_new(body, "tool_choice",
                            must(json_pack("{s:s,s:s}", "type", "tool", "name", TOOL_NAME)));
    }
}

/* True when the path of `base` (borrowed) already ends with /v1, as in
 * "http://127.0.0.1:8080/v1/": then only /messages is appended. */
static bool has_v1(const char *base)
{
    const char *host = base ? strstr(base, "://") : NULL;
    const char *path = host ? strchr(host + 3, '/') : NULL;
    if (!path)
        return false;
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        n--;
    return n >= 3 && strncmp(path + n - 3, "/v1", 3) == 0;
}

static int anth_request(void *self, fr_request *out, fr_error *err)
{
    const anth *o = self;
    const fr_request_spec spec = {
        .path = has_v1(o->call->base_url) ? "/messages" : "/v1/messages",
        .accept = "text/event-stream",
        .auth = "x-api-key: ",
        .extra = "anthropic-version: " API_VERSION,
        .system_apart = true,
        .add_members = add_members,
        .self = o,
    };
    return fr_provider_request(PROTO, o->call, &spec, out, err);
}

/* Reads a non-negative count; absent, null or garbage leaves *dst alone so
 * that a later event's partial usage does not erase an earlier total. */
static void read_count(json_t *usage, const char *key, long *dst)
{
    json_t *v = json_object_get(usage, key);
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        *dst = i < 0 ? 0 : i > LONG_MAX ? LONG_MAX : (long)i;
    } else if (json_is_real(v)) {
        /* Range-checked: converting an out-of-range double is undefined. */
        double d = json_real_value(v);
        *dst = d >= 0 && d < (double)LONG_MAX ? (long)d : 0;
    }
}

/* Reads a usage object (message_start's, message_delta's or the whole
 * reply's). Counts are cumulative: the latest value of each field wins. */
static void read_usage(anth *o, json_t *usage)
{
    if (!json_is_object(usage))
        return;
    read_count(usage, "input_tokens", &o->in);
    read_count(usage, "cache_creation_input_tokens", &o->cache_write);
    read_count(usage, "cache_read_input_tokens", &o->cache_read);
    read_count(usage, "output_tokens", &o->out);
    o->rd->have_usage = true;
}

static void read_model(anth *o, json_t *msg)
{
    fr_reader_model(o->rd, json_string_value(json_object_get(msg, "model")));
}

static void read_stop_reason(anth *o, json_t *obj)
{
    fr_reader_finish_reason(o->rd, json_string_value(json_object_get(obj, "stop_reason")));
}

/* Considers a tool_use block (borrowed) at `index` as the structured output:
 * the first block named TOOL_NAME wins, else the first tool_use block. */
static void consider_tool(anth *o, json_t *block, long index)
{
    const char *name = json_string_value(json_object_get(block, "name"));
    bool is_output = name && strcmp(name, TOOL_NAME) == 0;
    if (o->have_tool && (o->tool_is_output || !is_output))
        return;
    o->have_tool = true;
    o->tool_is_output = is_output;
    o->tool_index = index;
    fr_text_acc_close(&o->tool);
    fr_text_acc_init(&o->tool);
    o->tool.no_loops = true;
    json_decref(o->tool_input);
    o->tool_input = json_incref(json_object_get(block, "input"));
}

/* Appends a text piece (borrowed JSON string, may be NULL). */
static int add_text(anth *o, fr_text_acc *acc, json_t *s)
{
    if (!json_is_string(s))
        return FR_OK;
    return fr_reader_add(o->rd, acc, json_string_value(s), json_string_length(s));
}

/* The index a content block event names, else the block started last. */
static long block_index(const anth *o, json_t *obj)
{
    json_t *v = json_object_get(obj, "index");
    return json_is_integer(v) ? (long)json_integer_value(v) : o->cur_index;
}

static int on_block_start(anth *o, json_t *obj)
{
    json_t *v = json_object_get(obj, "index");
    o->cur_index = json_is_integer(v) ? (long)json_integer_value(v) : o->cur_index + 1;
    json_t *block = json_object_get(obj, "content_block");
    const char *type = json_string_value(json_object_get(block, "type"));
    if (!type)
        return FR_OK;
    if (strcmp(type, "tool_use") == 0)
        consider_tool(o, block, o->cur_index);
    else if (strcmp(type, "text") == 0)
        return add_text(o, &o->rd->text, json_object_get(block, "text"));
    else if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0)
        o->rd->reasoned = true;
    return FR_OK;
}

static int on_block_delta(anth *o, json_t *obj)
{
    json_t *delta = json_object_get(obj, "delta");
    const char *type = json_string_value(json_object_get(delta, "type"));
    if (!type)
        return FR_OK;
    if (strcmp(type, "text_delta") == 0)
        return add_text(o, &o->rd->text, json_object_get(delta, "text"));
    if (strcmp(type, "input_json_delta") == 0 && o->have_tool &&
        block_index(o, obj) == o->tool_index)
        return add_text(o, &o->tool, json_object_get(delta, "partial_json"));
    return FR_OK; /* thinking, signatures, citations, other tools */
}

/* Returns the user's message for an Anthropic error value (borrowed; the
 * whole {"type":"error","error":{...}} or just its error), owned:
 * "<type>: <message>", or whichever of the two is there. */
static char *error_text(json_t *v)
{
    json_t *e = json_object_get(v, "error");
    if (!json_is_object(e))
        e = v;
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = fr_provider_error_message(e);
    fr_buf b;
    fr_buf_init(&b, 0);
    if (type && type[0] && strcmp(type, "error") != 0)
        fr_provider_append_line(&b, type, strlen(type), 100);
    if (msg && msg[0]) {
        if (b.len)
            fr_buf_puts(&b, ": ");
        fr_provider_append_line(&b, msg, strlen(msg), 800);
    }
    if (!b.len) {
        char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump)
            fr_provider_append_line(&b, dump, strlen(dump), 200);
        free(dump);
    }
    if (!b.len)
        fr_buf_puts(&b, "the server reported an error");
    return fr_buf_take(&b);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* Events whose data is read; any other named event (ping, content_block_stop,
 * types added to the API later) is skipped unparsed. */
static bool read_event(const char *name)
{
    static const char *const names[] = {"message_start", "content_block_start",
                                        "content_block_delta", "message_delta", "error"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static int on_event(void *ud, const fr_sse_event *ev)
{
    anth *o = ud;
    int rc = FR_OK;
    json_t *obj = NULL;
    /* Without an `event:` line the type comes from the data. */
    bool named = strcmp(ev->event, "message") != 0;
    if (o->rd->done || blank(ev->data, ev->data_len))
        goto cleanup;
    if (named && strcmp(ev->event, "message_stop") == 0) {
        o->rd->done = true;
        goto cleanup;
    }
    if (named && !read_event(ev->event))
        goto cleanup;
    json_error_t je;
    obj = json_loadb(ev->data, ev->data_len, 0, &je);
    if (!json_is_object(obj)) {
        rc = fr_reader_fail(
            o->rd, FR_EPROTO,
            fr_reader_not_object(o->rd, ev->event, ev->data, ev->data_len, obj, &je));
        goto cleanup;
    }
    o->rd->parsed++;
    const char *type = named ? ev->event : json_string_value(json_object_get(obj, "type"));
    if (!type)
        goto cleanup;
    if (strcmp(type, "message_start") == 0) {
        json_t *msg = json_object_get(obj, "message");
        read_model(o, msg);
        read_usage(o, json_object_get(msg, "usage"));
        read_stop_reason(o, msg);
    } else if (strcmp(type, "content_block_start") == 0) {
        rc = on_block_start(o, obj);
    } else if (strcmp(type, "content_block_delta") == 0) {
        rc = on_block_delta(o, obj);
    } else if (strcmp(type, "message_delta") == 0) {
        read_stop_reason(o, json_object_get(obj, "delta"));
        read_usage(o, json_object_get(obj, "usage"));
    } else if (strcmp(type, "message_stop") == 0) {
        o->rd->done = true;
    } else if (strcmp(type, "error") == 0) {
        rc = fr_reader_fail(o->rd, FR_EPROTO, error_text(obj));
    }
cleanup:
    json_decref(obj);
    return rc;
}

/* Parses a whole message object from the reader's body into the same state
 * a stream fills (the reader's on_body: `ud` is the adapter's state). */
static int parse_body(void *ud, fr_error *err)
{
    anth *o = ud;
    json_t *obj = NULL;
    int rc = fr_reader_body_object(o->rd, &obj, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_EPROTO;
    const char *type = json_string_value(json_object_get(obj, "type"));
    if ((type && strcmp(type, "error") == 0) || json_is_object(json_object_get(obj, "error"))) {
        char *m = error_text(obj);
        fr_error_set(err, rc, PROTO, 0, "the server reported an error: %s", m);
        free(m);
        goto cleanup;
    }
    json_t *content = json_object_get(obj, "content");
    if (!json_is_array(content)) {
        fr_error_set(err, rc, PROTO, 0, "the reply has no content");
        goto cleanup;
    }
    size_t i;
    json_t *block;
    json_array_foreach(content, i, block)
    {
        const char *btype = json_string_value(json_object_get(block, "type"));
        if (!btype)
            continue;
        if (strcmp(btype, "thinking") == 0 || strcmp(btype, "redacted_thinking") == 0) {
            o->rd->reasoned = true;
        } else if (strcmp(btype, "tool_use") == 0) {
            consider_tool(o, block, (long)i);
        } else if (strcmp(btype, "text") == 0) {
            /* The same cap and loop cut as a stream's text. */
            if (add_text(o, &o->rd->text, json_object_get(block, "text")) != FR_OK) {
                rc = fr_error_set(err, o->rd->rc, PROTO, 0, "%s", o->rd->error);
                goto cleanup;
            }
        }
    }
    read_model(o, obj);
    read_stop_reason(o, obj);
    read_usage(o, json_object_get(obj, "usage"));
    rc = FR_OK;
cleanup:
    json_decref(obj);
    return rc;
}

/* Fills out->json and out->text with the structured output: the chosen
 * tool block's input (compact JSON as the text), else the text parsed as
 * JSON for a model that answered in prose. Returns FR_OK, or FR_EQUALITY
 * with `err` filled when the output is not the JSON asked for. */
static int structured_reply(anth *o, fr_reply *out, fr_error *err)
{
    json_t *input = NULL;
    int rc = FR_EQUALITY; /* output that does not fit failed the quality gate */
    if (!o->have_tool) {
        out->text = fr_buf_take(&o->rd->text.text);
        return fr_provider_parse_json_text(PROTO, out->text, &out->json, err);
    }
    if (o->tool.text.len > 0) {
        json_error_t je;
        input = json_loadb(o->tool.text.data, o->tool.text.len, 0, &je);
        if (!input) {
            /* Input cut at max_tokens never counts here: its finish says so. */
            fr_provider_json_error(err, PROTO, &je, "the tool input is not valid JSON");
            if (err)
                err->code = rc; /* the model's fault, not the protocol's */
            goto cleanup;
        }
    } else {
        input = o->tool_input ? json_incref(o->tool_input) : json_object();
    }
    if (!json_is_object(input)) {
        fr_error_set(err, rc, PROTO, 0, "the tool input is not a JSON object");
        goto cleanup;
    }
    if (o->wrapped) {
        json_t *v = json_incref(json_object_get(input, WRAP_KEY));
        if (!v) {
            fr_error_set(err, rc, PROTO, 0, "the tool input has no '" WRAP_KEY "'");
            goto cleanup;
        }
        json_decref(input);
        input = v;
    }
    out->text = json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!out->text) {
        rc = fr_error_set(err, FR_ENOMEM, PROTO, 0, "cannot serialise the tool input");
        goto cleanup;
    }
    out->json = input;
    input = NULL;
    rc = FR_OK;
cleanup:
    json_decref(input);
    return rc;
}

/* Anthropic's stop_reason values. pause_turn (a server tool paused the
 * turn) is left as one flowrun does not know. */
static const fr_finish_word finish_words[] = {
    {"end_turn", FR_FINISH_STOP},     {"stop_sequence", FR_FINISH_STOP},
    {"max_tokens", FR_FINISH_LENGTH}, {"model_context_window_exceeded", FR_FINISH_LENGTH},
    {"refusal", FR_FINISH_REFUSED},   {"tool_use", FR_FINISH_TOOL_CALL},
};

/* The normalised finish: a tool_use stop is the answer when the tool is the
 * forced output tool of a structured call, and a tool call otherwise (no
 * other tool is offered); a tool_use block of another tool is a tool call
 * whatever the stop reason says. */
static fr_finish settle_finish(const anth *o)
{
    fr_finish f = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->rd->finish_reason);
    bool output_tool = o->call->schema && o->have_tool && o->tool_is_output;
    if (f == FR_FINISH_TOOL_CALL && output_tool)
        f = FR_FINISH_STOP;
    else if (o->have_tool && !output_tool && fr_finish_is_answer(f))
        f = FR_FINISH_TOOL_CALL;
    /* The answer of a structured call may be its tool block, not text. */
    return fr_provider_settle_finish(f, o->rd->reasoned,
                                     output_tool ? "tool" : fr_buf_str(&o->rd->text.text));
}

/* Returns a + b, saturated: a server's counts are not trusted not to wrap. */
static long add_sat(long a, long b)
{
    return a > LONG_MAX - b ? LONG_MAX : a + b;
}

/* Fills `err` for a non-2xx reply. Anthropic's error body is
 * {"type":"error","error":{"type":...,"message":...}}: both go in the
 * message; any other body is left to the shared reader. */
static int http_error(void *ud, long status, const char *body, size_t len, fr_error *err)
{
    json_t *root = len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *e = json_object_get(root, "error");
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    int rc;
    if (type && type[0] && msg && msg[0]) {
        char *text = error_text(root);
        rc = fr_error_set(err, FR_EHTTP, PROTO, 0, "HTTP %ld: %s", status, text);
        free(text);
    } else {
        rc = fr_provider_http_error(PROTO, status, body, len, err);
    }
    json_decref(root);
    return rc;
}

/* A reply is SSE events up to message_stop (their types named by `event:`
 * or by the data), or a whole message from a server that did not stream. */
static const fr_reader_spec reader = {
    .framing = FR_FRAME_SSE,
    .on_event = on_event,
    .on_body = parse_body,
    .http_error = http_error,
    .ended = "the stream ended before message_stop",
    .units = "events",
};

static int anth_finish(void *self, fr_reply *out, fr_error *err)
{
    anth *o = self;
    fr_reader *rd = o->rd;
    int rc;
    out->finish_reason = fr_xstrdup(o->rd->finish_reason);
    out->finish = settle_finish(o);
    out->model = fr_xstrdup(rd->model);
    if (o->call->schema) {
        rc = structured_reply(o, out, err);
        if (rc != FR_OK && fr_finish_is_answer(out->finish))
            return rc; /* fr_adapter_finish empties out */
        if (rc != FR_OK) {
            /* The finish says why: the engine reports it, with the text. */
            json_decref(out->json);
            out->json = NULL;
            if (!out->text)
                out->text =
                    fr_buf_take(o->have_tool && o->tool.text.len ? &o->tool.text : &rd->text.text);
            if (err)
                memset(err, 0, sizeof *err);
        }
    } else {
        out->text = fr_buf_take(&o->rd->text.text);
    }
    /* Anthropic's input_tokens leaves out the tokens written to and read
     * from the prompt cache; flowrun's input counts every prompt token. */
    out->usage.input = add_sat(add_sat(o->in, o->cache_write), o->cache_read);
    out->usage.cached = o->cache_read;
    out->usage.output = o->out;
    fr_provider_fill_usage(out, o->call, rd->have_usage);
    return FR_OK;
}

static bool anth_started(const void *self)
{
    const anth *o = self;
    return o->rd->text.text.len > 0 || o->tool.text.len > 0;
}

/* The vtable: the functions above, borrowed by fr_adapter for the life of
 * the program. */
const fr_adapter_ops fr_anthropic_ops = {
    .name = PROTO,
    .reader = &reader,
    .create = anth_create,
    .request = anth_request,
    .finish = anth_finish,
    .destroy = anth_destroy,
    .started = anth_started,
};
