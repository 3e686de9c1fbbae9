#include "providers/ollama.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/provider_int.h"
#include "providers/toolcall.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO "ollama"

typedef struct oll {
    fr_gathering g; /* first: the call, the reader, the tool calls */
} oll;

static void *oll_create(const fr_call *call, fr_reader *rd)
{
    return fr_gathering_new(sizeof(oll), call, rd);
}

/* Returns keep_alive as Ollama reads it (owned): a whole integer ("300",
 * "-1") is a number of seconds, anything else ("5m", "1h30m") a duration
 * string the server parses. */
static json_t *keep_alive_value(const char *s)
{
    const char *p = s + (s[0] == '-');
    bool digits = *p != '\0';
    for (; *p && digits; p++)
        digits = *p >= '0' && *p <= '9';
    if (digits) {
        errno = 0;
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (errno == 0 && end && *end == '\0')
            return json_integer(v);
    }
    return fr_provider_json_string(s);
}

/* Writes the /api/chat members of the call `self` (borrowed) into `w`.
 * Settings the call leaves unset (max_tokens <= 0, a negative temperature,
 * an unknown context, no seed) are left out, so the model's own defaults
 * apply; "options" only when it has one (a temperature that is not finite
 * is left out, as json_real refused it). */
static void add_members(const void *self, fr_jsonw *w)
{
    const fr_call *c = self;
    bool temp = c->temperature >= 0 && isfinite(c->temperature);
    if (c->max_tokens > 0 || temp || c->context > 0 || c->has_seed) {
        fr_jsonw_object_k(w, FR_JSONW_KEY("options"));
        if (c->max_tokens > 0)
            fr_jsonw_int_k(w, FR_JSONW_KEY("num_predict"), c->max_tokens);
        if (temp)
            fr_jsonw_real_k(w, FR_JSONW_KEY("temperature"), c->temperature);
        if (c->context > 0)
            fr_jsonw_int_k(w, FR_JSONW_KEY("num_ctx"), c->context);
        if (c->has_seed)
            fr_jsonw_int_k(w, FR_JSONW_KEY("seed"), c->seed);
        fr_jsonw_close(w);
    }
    /* A string schema asks for any JSON object; Ollama calls that "json". */
    if (c->schema && json_is_string(c->schema))
        fr_jsonw_str(w, "format", "json");
    else if (c->schema)
        fr_jsonw_value(w, "format", c->schema);
    if (c->keep_alive && c->keep_alive[0])
        fr_provider_write_tree(w, "keep_alive", keep_alive_value(c->keep_alive));
    if (fr_provider_offers_tools(c))
        fr_provider_write_tree(w, "tools", fr_provider_function_tools(c));
}

/* A neutral tool call (borrowed) as /api/chat takes it (owned). */
static json_t *wire_call(const json_t *tc)
{
    return fr_provider_must(json_pack("{s:{s:O,s:o}}", "function", "name",
                                      json_object_get(tc, "name"), "arguments",
                                      fr_provider_call_input(tc)));
}

/* Appends the neutral message `m` (borrowed) to `msgs` as /api/chat takes
 * it (the request spec's add_message; `self` is the call): an assistant
 * turn's calls as tool_calls with their arguments as an object (Ollama
 * has no call ids), a tool result as a `tool` message naming its tool. */
static void add_message(const void *self, json_t *msgs, const json_t *m)
{
    (void)self;
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *out = fr_provider_must(
        json_pack("{s:s,s:o}", "role", role, "content",
                  fr_provider_json_string(json_string_value(json_object_get(m, "content")))));
    const json_t *name = json_object_get(m, "name");
    if (strcmp(role, "tool") == 0 && json_is_string(name))
        json_object_set_new(out, "tool_name", json_incref((json_t *)name));
    const json_t *calls = json_object_get(m, "tool_calls");
    if (strcmp(role, "assistant") == 0 && json_array_size(calls) > 0) {
        json_object_set_new(
            out, "tool_calls",
            fr_provider_append_calls(fr_provider_must(json_array()), calls, wire_call));
    }
    json_array_append_new(msgs, out);
}

/* Ollama itself takes no key; a proxy in front of it may. */
static const fr_request_spec SPEC = {
    .path = "/api/chat",
    .accept = "application/x-ndjson",
    .auth = "Authorization: Bearer ",
    .add_members = add_members,
    .add_message = add_message,
};

/* Returns a count field, 0 when it is missing or not a sane number; sets
 * *seen when the field is there at all. */
static long count_field(json_t *obj, const char *key, bool *seen)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return 0;
    *seen = true;
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        return i >= 0 && i <= LONG_MAX ? (long)i : 0;
    }
    /* Range-checked: converting an out-of-range double is undefined. */
    double d = json_real_value(v);
    return d >= 0 && d < (double)LONG_MAX ? (long)d : 0;
}

/* "ollama: <message>" (owned) for an error object the server sent. */
static char *server_error_msg(json_t *error)
{
    const char *m = fr_provider_error_message(error);
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, PROTO ": ");
    size_t start = b.len;
    if (m) {
        fr_provider_append_line(&b, m, strlen(m), 800);
    } else {
        char *dump = json_dumps(error, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump)
            fr_provider_append_line(&b, dump, strlen(dump), 200);
        free(dump);
    }
    if (b.len == start)
        fr_buf_puts(&b, "(no message)");
    return fr_buf_take(&b);
}

/* Ollama's done_reason values; "load" and "unload" answer no chat. */
static const fr_finish_word finish_words[] = {
    {"stop", FR_FINISH_STOP},
    {"length", FR_FINISH_LENGTH},
};

/* Reads the tool calls (borrowed array, may be NULL) of one message: each
 * whole, with its arguments as an object; a stream sends them in one
 * chunk or several, each call whole. Returns FR_OK or the sticky error. */
static int read_tool_calls(oll *o, json_t *calls)
{
    size_t i;
    json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        if (!json_is_object(fn))
            return fr_reader_fail(o->g.rd, FR_EPROTO,
                                  fr_xstrdup("a tool call in the reply has no function"));
        fr_toolcall *c;
        int rc = fr_toolcalls_open(&o->g.calls, (long)o->g.calls.n, &c);
        if (rc != FR_OK)
            return rc;
        /* Newer servers give each call an id; older ones none. */
        fr_toolcall_names(c, json_string_value(json_object_get(tc, "id")),
                          json_string_value(json_object_get(fn, "name")));
        json_t *args = json_object_get(fn, "arguments");
        rc = args && !json_is_null(args) ? fr_toolcalls_set_input(&o->g.calls, c, args) : FR_OK;
        if (rc != FR_OK)
            return rc;
    }
    return FR_OK;
}

/* Reads one reply object: a chunk of a stream, its final object, or the
 * whole non-streamed reply. Returns FR_OK or the sticky error. */
static int read_object(oll *o, json_t *obj)
{
    fr_reader *rd = o->g.rd;
    rd->parsed++;
    json_t *error = json_object_get(obj, "error");
    if (error && !json_is_null(error))
        return fr_reader_fail(rd, FR_EPROTO, server_error_msg(error));
    json_t *message = json_object_get(obj, "message");
    json_t *calls = json_object_get(message, "tool_calls");
    if (json_array_size(calls) > 0)
        o->g.tool_calls = true;
    if (o->g.offers && read_tool_calls(o, calls) != FR_OK)
        return rd->rc;
    json_t *thinking = json_object_get(message, "thinking");
    if (json_is_string(thinking) && json_string_length(thinking) > 0)
        rd->reasoned = true;
    const char *content = json_string_value(json_object_get(message, "content"));
    if (content && fr_reader_add(rd, &rd->text, content, strlen(content)) != FR_OK)
        return rd->rc;
    fr_reader_model(rd, json_string_value(json_object_get(obj, "model")));
    /* The counts come with the final object; later ones win. */
    bool seen = false;
    long in = count_field(obj, "prompt_eval_count", &seen);
    long out = count_field(obj, "eval_count", &seen);
    if (seen) {
        rd->usage.input = in;
        rd->usage.output = out;
        rd->have_usage = true;
    }
    if (json_is_true(json_object_get(obj, "done"))) {
        const char *reason = json_string_value(json_object_get(obj, "done_reason"));
        fr_reader_finish_reason(rd, reason && reason[0] ? reason : NULL);
        rd->done = true;
    }
    return FR_OK;
}

/* A chunk of /api/chat read without a tree, by the path scanner
 * (engine/util/jscan.h): the message's content and thinking, the model,
 * the counts, done and done_reason. */
typedef struct scan_line {
    fr_jval content, model, reason;
    bool reasoned, done, seen;
    long in, out;
} scan_line;

/* Reads a count as count_field does; a real sends the line to the tree
 * code. */
static bool scan_count(fr_jscan *s, long *out, bool *seen)
{
    fr_jval v;
    if (!fr_jscan_value(s, &v) || v.kind == FR_JREAL)
        return false;
    fr_jscan_skip(s, &v);
    if (v.kind == FR_JINT) {
        *seen = true;
        *out = v.i >= 0 ? (long)v.i : 0;
    }
    return true;
}

/* Reads the message object just opened into *l; false on tool calls (the
 * tree code reads them), a key named twice or a bad scan. */
static bool scan_message(fr_jscan *s, scan_line *l)
{
    fr_jval k, v;
    unsigned seen = 0;
    while (fr_jscan_member(s, &k)) {
        unsigned bit = fr_jscan_is(&k, "content")      ? 1
                       : fr_jscan_is(&k, "thinking")   ? 2
                       : fr_jscan_is(&k, "tool_calls") ? 4
                                                       : 0;
        if ((seen & bit) || !fr_jscan_value(s, &v))
            return false;
        seen |= bit;
        if (bit == 1)
            l->content = v;
        else if (bit == 2 && v.kind == FR_JSTRING && v.n > 0)
            l->reasoned = true;
        else if (bit == 4 && v.kind == FR_JARRAY && fr_jscan_element(s))
            return false;
        fr_jscan_skip(s, &v);
    }
    return !s->bad;
}

/* Scans one line into *l; false sends it to json_loadb and the tree code
 * (an error member, tool calls, a real count, a key named twice, a text
 * the scanner is not sure of). */
static bool scan_line_text(const char *line, size_t len, scan_line *l)
{
    fr_jscan s;
    fr_jval k, v;
    unsigned seen = 0;
    if (!fr_jscan_object(&s, line, len))
        return false;
    while (fr_jscan_member(&s, &k)) {
        unsigned bit = fr_jscan_is(&k, "error")               ? 1
                       : fr_jscan_is(&k, "message")           ? 2
                       : fr_jscan_is(&k, "model")             ? 4
                       : fr_jscan_is(&k, "prompt_eval_count") ? 8
                       : fr_jscan_is(&k, "eval_count")        ? 16
                       : fr_jscan_is(&k, "done")              ? 32
                       : fr_jscan_is(&k, "done_reason")       ? 64
                                                              : 0;
        if (bit == 1 || (seen & bit))
            return false;
        seen |= bit;
        bool ok = true;
        if (bit == 8)
            ok = scan_count(&s, &l->in, &l->seen);
        else if (bit == 16)
            ok = scan_count(&s, &l->out, &l->seen);
        else if (!fr_jscan_value(&s, &v))
            ok = false;
        else if (bit == 2 && v.kind == FR_JOBJECT)
            ok = scan_message(&s, l);
        else {
            if (bit == 4)
                l->model = v;
            else if (bit == 32)
                l->done = v.kind == FR_JTRUE;
            else if (bit == 64)
                l->reason = v;
            fr_jscan_skip(&s, &v);
        }
        if (!ok)
            return false;
    }
    return fr_jscan_done(&s);
}

/* Applies a scanned line as read_object would. */
static int apply_line(oll *o, const scan_line *l)
{
    fr_reader *rd = o->g.rd;
    rd->parsed++;
    if (l->reasoned)
        rd->reasoned = true;
    fr_jtext t;
    if (l->content.kind == FR_JSTRING && l->content.n > 0) {
        fr_jtext_open(&t, &l->content, false);
        int rc = fr_reader_add(rd, &rd->text, t.text, t.len);
        fr_jtext_close(&t);
        if (rc != FR_OK)
            return rd->rc;
    }
    if (l->model.kind == FR_JSTRING) {
        fr_jtext_open(&t, &l->model, true);
        fr_reader_model(rd, t.text);
        fr_jtext_close(&t);
    }
    if (l->seen) {
        rd->usage.input = l->in;
        rd->usage.output = l->out;
        rd->have_usage = true;
    }
    if (l->done) {
        if (l->reason.kind == FR_JSTRING && l->reason.n > 0) {
            fr_jtext_open(&t, &l->reason, true);
            fr_reader_finish_reason(rd, t.text);
            fr_jtext_close(&t);
        }
        rd->done = true;
    }
    return FR_OK;
}

static int on_line(void *ud, const char *line, size_t len)
{
    oll *o = ud;
    if (o->g.rd->done)
        return FR_OK; /* nothing after the final object counts */
    scan_line l;
    memset(&l, 0, sizeof l);
    if (!fr_provider_tree_only && scan_line_text(line, len, &l))
        return apply_line(o, &l);
    json_error_t je;
    json_t *obj = json_loadb(line, len, 0, &je);
    int rc = FR_OK;
    if (!json_is_object(obj)) {
        /* A last line without its newline that does not parse was cut
         * short: finish reports the stream as truncated, not malformed. */
        if (o->g.rd->at_end)
            goto cleanup;
        rc = fr_reader_fail(o->g.rd, FR_EPROTO,
                            fr_reader_not_object(o->g.rd, NULL, line, len, obj, &je));
        goto cleanup;
    }
    rc = read_object(o, obj);
cleanup:
    json_decref(obj);
    return rc;
}

static bool is_json_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Reads a non-streamed reply from the reader's body (its on_body: `ud` is
 * the adapter's state): one JSON object (compact or not), or NDJSON from a
 * server that streamed anyway. */
static int read_body(void *ud, fr_error *err)
{
    oll *o = ud;
    const fr_buf *body = &o->g.rd->body;
    json_error_t je;
    json_t *obj = NULL;
    int rc = FR_EPROTO;
    size_t n = body->len;
    while (n > 0 && is_json_space(body->data[n - 1]))
        n--;
    if (n == 0) {
        fr_error_set(err, rc, PROTO, 0, "the reply body is empty");
        goto cleanup;
    }
    obj = json_loadb(body->data, body->len, 0, &je);
    if (json_is_object(obj)) {
        read_object(o, obj);
        rc = fr_reader_end_stream(o->g.rd, err);
    } else if (obj) {
        fr_error_set(err, rc, PROTO, 0, "the reply is not a JSON object");
    } else if (memchr(body->data, '\n', n)) {
        fr_reader_frame(o->g.rd, body->data, body->len);
        rc = fr_reader_end_stream(o->g.rd, err);
    } else {
        fr_provider_json_error(err, PROTO, &je, "the reply is not valid JSON");
    }
cleanup:
    json_decref(obj);
    return rc;
}

/* A reply is NDJSON objects up to the one with "done": true, or a whole
 * object (or NDJSON anyway) when streaming was not asked. */
static const fr_reader_spec reader = {
    .framing = FR_FRAME_NDJSON,
    .on_line = on_line,
    .on_body = read_body,
    .ended = "the reply ended before its final \"done\": true object",
    .units = "objects",
};

static int oll_finish(void *self, fr_reply *out, fr_error *err)
{
    oll *o = self;
    /* Ollama ends a tool call with done_reason "stop": the message says it. */
    fr_finish f = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->g.rd->finish_reason);
    return fr_gathering_reply(&o->g, PROTO, f, out, err);
}

/* The vtable: the functions above, borrowed by fr_adapter for the life of
 * the program. */
const fr_adapter_ops fr_ollama_ops = {
    .name = PROTO,
    .reader = &reader,
    .create = oll_create,
    .request_spec = &SPEC,
    .finish = oll_finish,
    .destroy = fr_gathering_free,
};
