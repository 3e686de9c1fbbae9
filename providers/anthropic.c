#include "providers/anthropic.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/provider_int.h"
#include "providers/toolcall.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO       "anthropic"
#define API_VERSION "2023-06-01"
/* The Messages API requires max_tokens; this is sent when the task set none. */
#define DEFAULT_MAX_TOKENS 4096
/* The forced tool whose input is the structured output; "output_<n>" when
 * the call offers a tool of that name. */
#define TOOL_NAME "output"
/* A tool's input_schema must describe an object: any other schema is sent
 * as the one required property of this name, and unwrapped from the reply. */
#define WRAP_KEY "value"

typedef struct anth {
    const fr_call *call; /* borrowed from the fr_adapter, which outlives us */
    fr_reader *rd;       /* the reply's reader, borrowed likewise; its text is
                            the text of every text block, in order */
    bool wrapped;        /* the schema was sent under WRAP_KEY */
    bool offers;         /* the call offers tools */
    char out_name[32];   /* the structured output tool's name: TOOL_NAME unless offered */
    fr_toolcalls calls;  /* every tool_use block, keyed by its block index */
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

/* Whether the call offers a tool named `name`. */
static bool offered(const fr_call *call, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(call->tools, i, t)
    {
        const char *n = json_string_value(json_object_get(t, "name"));
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

static void *anth_create(const fr_call *call, fr_reader *rd)
{
    anth *o = fr_xcalloc(1, sizeof *o);
    o->call = call;
    o->rd = rd;
    o->wrapped = needs_wrap(call->schema);
    o->offers = fr_provider_offers_tools(call);
    snprintf(o->out_name, sizeof o->out_name, "%s", TOOL_NAME);
    for (int n = 1; offered(call, o->out_name); n++)
        snprintf(o->out_name, sizeof o->out_name, "%s_%d", TOOL_NAME, n);
    o->cur_index = -1;
    fr_toolcalls_init(&o->calls, rd);
    return o;
}

static void anth_destroy(void *self)
{
    anth *o = self;
    fr_toolcalls_close(&o->calls);
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

/* Writes the Messages members of the adapter `self` (borrowed) into `w`.
 * max_tokens is required by the API, so it is always sent; temperature is
 * clamped to Anthropic's 0..1 and left out when negative, so the server's
 * default applies. */
static void add_members(const void *self, fr_jsonw *w)
{
    const anth *o = self;
    const fr_call *c = o->call;
    fr_jsonw_int_k(w, FR_JSONW_KEY("max_tokens"),
                   c->max_tokens > 0 ? c->max_tokens : DEFAULT_MAX_TOKENS);
    if (c->temperature >= 0)
        fr_jsonw_real_k(w, FR_JSONW_KEY("temperature"),
                        c->temperature > 1.0 ? 1.0 : c->temperature);
    json_t *tools = must(json_array());
    size_t i;
    const json_t *t;
    json_array_foreach(c->tools, i, t)
    {
        const json_t *params = json_object_get(t, "parameters");
        json_t *tool =
            must(json_pack("{s:O,s:o}", "name", json_object_get(t, "name"), "input_schema",
                           json_is_object(params)
                               ? json_incref((json_t *)params)
                               : must(json_pack("{s:s,s:{}}", "type", "object", "properties"))));
        const json_t *desc = json_object_get(t, "description");
        if (json_is_string(desc))
            json_object_set_new(tool, "description", json_incref((json_t *)desc));
        json_array_append_new(tools, tool);
    }
    if (c->schema) {
        json_array_append_new(tools,
                              must(json_pack("{s:s,s:s,s:o}", "name", o->out_name, "description",
                                             "Return the result as this tool's input.",
                                             "input_schema", input_schema(o))));
        /* With tools of its own, the model may call them before it answers
         * through the output tool; without, it answers at once. */
        fr_jsonw_object(w, "tool_choice");
        fr_jsonw_str(w, "type", o->offers ? "any" : "tool");
        if (!o->offers)
            fr_jsonw_str(w, "name", o->out_name);
        fr_jsonw_close(w);
    }
    if (json_array_size(tools) > 0)
        fr_jsonw_value(w, "tools", tools);
    json_decref(tools);
}

/* Returns the last message of `msgs` (borrowed) when it is a user turn
 * whose content is blocks (tool results written here), else NULL. */
static json_t *open_results(json_t *msgs)
{
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    return role && strcmp(role, "user") == 0 && json_is_array(json_object_get(last, "content"))
               ? last
               : NULL;
}

/* A neutral tool call (borrowed) as a tool_use block (owned). */
static json_t *wire_call(const json_t *tc)
{
    return must(json_pack("{s:s,s:O,s:O,s:o}", "type", "tool_use", "id", json_object_get(tc, "id"),
                          "name", json_object_get(tc, "name"), "input",
                          fr_provider_call_input(tc)));
}

/* Appends the neutral message `m` (borrowed) to `msgs` as the Messages API
 * takes it (the request spec's add_message): an assistant turn as text and
 * tool_use blocks, and consecutive tool results as tool_result blocks of
 * one user message (a user turn right after them joins it as a text
 * block, since the roles must alternate). */
static void add_message(const void *self, json_t *msgs, const json_t *m)
{
    (void)self;
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *content = fr_provider_json_string(json_string_value(json_object_get(m, "content")));
    json_t *results = open_results(msgs);
    if (strcmp(role, "tool") == 0) {
        json_t *block = must(json_pack("{s:s,s:O,s:o,s:b}", "type", "tool_result", "tool_use_id",
                                       json_object_get(m, "tool_call_id"), "content", content,
                                       "is_error", json_is_true(json_object_get(m, "is_error"))));
        if (results)
            json_array_append_new(json_object_get(results, "content"), block);
        else
            json_array_append_new(msgs,
                                  must(json_pack("{s:s,s:[o]}", "role", "user", "content", block)));
        return;
    }
    if (strcmp(role, "user") == 0 && results) {
        json_array_append_new(json_object_get(results, "content"),
                              must(json_pack("{s:s,s:o}", "type", "text", "text", content)));
        return;
    }
    const json_t *calls = json_object_get(m, "tool_calls");
    if (strcmp(role, "assistant") != 0 || json_array_size(calls) == 0) {
        json_array_append_new(msgs, must(json_pack("{s:s,s:o}", "role", role, "content", content)));
        return;
    }
    json_t *blocks = must(json_array());
    /* The API refuses an empty text block. */
    if (json_string_length(content) > 0)
        json_array_append_new(blocks,
                              must(json_pack("{s:s,s:O}", "type", "text", "text", content)));
    json_decref(content);
    fr_provider_append_calls(blocks, calls, wire_call);
    json_array_append_new(msgs,
                          must(json_pack("{s:s,s:o}", "role", "assistant", "content", blocks)));
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
        .add_message = add_message,
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

/* Records the tool_use block (borrowed) at `index`: its id, name and the
 * input it starts with. Returns FR_OK or the sticky error (FR_EPROTO for a
 * block index started twice, past the cap or the count). */
static int add_tool(anth *o, json_t *block, long index)
{
    if (fr_toolcalls_find(&o->calls, index))
        return fr_reader_fail(o->rd, FR_EPROTO,
                              fr_xasprintf("content block %ld started twice", index));
    fr_toolcall *c;
    int rc = fr_toolcalls_open(&o->calls, index, &c);
    if (rc != FR_OK)
        return rc;
    fr_toolcall_names(c, json_string_value(json_object_get(block, "id")),
                      json_string_value(json_object_get(block, "name")));
    json_t *input = json_object_get(block, "input");
    /* A stream starts every tool with {} and sends the input in pieces. */
    if (input && !(json_is_object(input) && json_object_size(input) == 0))
        rc = fr_toolcalls_set_input(&o->calls, c, input);
    return rc;
}

/* The first tool_use block named as the output tool, or NULL. */
static fr_toolcall *output_named(const anth *o)
{
    if (!o->call->schema)
        return NULL;
    for (size_t i = 0; i < o->calls.n; i++)
        if (o->calls.v[i].name && strcmp(o->calls.v[i].name, o->out_name) == 0)
            return &o->calls.v[i];
    return NULL;
}

/* The block read as the structured output: the first named as the output
 * tool, else (when no tools are offered) the first tool_use block. */
static fr_toolcall *output_call(const anth *o)
{
    fr_toolcall *c = output_named(o);
    if (!c && o->call->schema && !o->offers && o->calls.n > 0)
        c = &o->calls.v[0];
    return c;
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
        return add_tool(o, block, o->cur_index);
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
    if (strcmp(type, "input_json_delta") == 0) {
        long index = block_index(o, obj);
        fr_toolcall *c = fr_toolcalls_find(&o->calls, index);
        json_t *piece = json_object_get(delta, "partial_json");
        if (c && json_is_string(piece))
            return fr_toolcalls_append(&o->calls, c, json_string_value(piece),
                                       json_string_length(piece));
        if (!c && o->offers)
            return fr_reader_fail(o->rd, FR_EPROTO,
                                  fr_xasprintf("tool input for content block %ld, which is no "
                                               "tool_use block",
                                               index));
    }
    return FR_OK; /* thinking, signatures, citations */
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

/* Reads a content_block_delta event's text without a tree: the common
 * {"delta":{"type":"text_delta","text":"..."}} with the path scanner
 * (engine/util/jscan.h). Returns 1 when it read the event (*rc its code),
 * 0 when the event goes to json_loadb and the tree code: another delta
 * type, a key named twice, a text the scanner is not sure of. */
static int scan_text_delta(anth *o, const char *data, size_t n, int *rc)
{
    fr_jscan s;
    fr_jval k, v, type = {FR_JNONE, NULL, 0, false, 0}, text = type;
    bool delta = false, in_delta;
    if (!fr_jscan_object(&s, data, n))
        return 0;
    while (fr_jscan_member(&s, &k)) {
        in_delta = fr_jscan_is(&k, "delta");
        if ((in_delta && delta) || !fr_jscan_value(&s, &v))
            return 0;
        delta = delta || in_delta;
        if (!in_delta || v.kind != FR_JOBJECT) {
            fr_jscan_skip(&s, &v);
            continue;
        }
        while (fr_jscan_member(&s, &k)) {
            fr_jval *slot = fr_jscan_is(&k, "type")   ? &type
                            : fr_jscan_is(&k, "text") ? &text
                                                      : NULL;
            if ((slot && slot->kind != FR_JNONE) || !fr_jscan_value(&s, slot ? slot : &v))
                return 0;
            fr_jscan_skip(&s, slot ? slot : &v);
        }
    }
    if (!fr_jscan_done(&s) || (type.kind == FR_JSTRING && !fr_jscan_is(&type, "text_delta")))
        return 0;
    o->rd->parsed++;
    *rc = FR_OK;
    if (type.kind == FR_JSTRING && text.kind == FR_JSTRING) {
        fr_jtext t;
        fr_jtext_open(&t, &text, false);
        *rc = fr_reader_add(o->rd, &o->rd->text, t.text, t.len);
        fr_jtext_close(&t);
    }
    return 1;
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
    if (named && !fr_provider_tree_only && strcmp(ev->event, "content_block_delta") == 0 &&
        scan_text_delta(o, ev->data, ev->data_len, &rc))
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
            if (add_tool(o, block, (long)i) != FR_OK) {
                rc = fr_error_set(err, o->rd->rc, PROTO, 0, "%s", o->rd->error);
                goto cleanup;
            }
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
    const fr_toolcall *oc = output_call(o);
    if (!oc) {
        out->text = fr_buf_take(&o->rd->text.text);
        return fr_provider_parse_json_text(PROTO, out->text, &out->json, err);
    }
    if (oc->args.len > 0) {
        json_error_t je;
        input = json_loadb(oc->args.data, oc->args.len, 0, &je);
        if (!input) {
            /* Input cut at max_tokens never counts here: its finish says so. */
            fr_provider_json_error(err, PROTO, &je, "the tool input is not valid JSON");
            if (err)
                err->code = rc; /* the model's fault, not the protocol's */
            goto cleanup;
        }
    } else {
        input = oc->input ? json_incref(oc->input) : json_object();
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

/* The normalised finish: a call to an offered tool is a tool call; else a
 * tool_use stop is the answer when the tool is the output tool of a
 * structured call, and a tool call otherwise (a tool nobody offered); a
 * tool_use block of another tool is a tool call whatever the stop reason
 * says. */
static fr_finish settle_finish(const anth *o)
{
    fr_finish f = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->rd->finish_reason);
    const fr_toolcall *named = output_named(o);
    bool output_tool = named != NULL;
    size_t real = o->calls.n - (named ? 1 : 0);
    if (o->offers && real > 0 && (fr_finish_is_answer(f) || f == FR_FINISH_TOOL_CALL))
        f = FR_FINISH_TOOL_CALL;
    else if (f == FR_FINISH_TOOL_CALL && output_tool)
        f = FR_FINISH_STOP;
    else if (o->calls.n > 0 && !output_tool && fr_finish_is_answer(f))
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
    if (o->offers && out->finish == FR_FINISH_TOOL_CALL && o->calls.n > 0) {
        /* The calls, but a call of the output tool made beside them. */
        rc = fr_toolcalls_json(&o->calls, output_named(o), PROTO, &out->tool_calls, err);
        if (rc != FR_OK)
            return rc;
        out->text = fr_buf_take(&rd->text.text);
    } else if (o->call->schema) {
        rc = structured_reply(o, out, err);
        if (rc != FR_OK && fr_finish_is_answer(out->finish))
            return rc; /* fr_adapter_finish empties out */
        if (rc != FR_OK) {
            /* The finish says why: the engine reports it, with the text. */
            json_decref(out->json);
            out->json = NULL;
            fr_toolcall *oc = output_call(o);
            if (!out->text)
                out->text = fr_buf_take(oc && oc->args.len ? &oc->args : &rd->text.text);
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

/* The vtable: the functions above, borrowed by fr_adapter for the life of
 * the program. */
const fr_adapter_ops fr_anthropic_ops = {
    .name = PROTO,
    .reader = &reader,
    .create = anth_create,
    .request = anth_request,
    .finish = anth_finish,
    .destroy = anth_destroy,
};
