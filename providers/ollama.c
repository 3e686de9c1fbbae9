#include "providers/ollama.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/ndjson.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO "ollama"

/* How the body is read, decided at the first byte from the status and the
 * call: a stream is framed as it arrives, a non-streamed reply is read
 * whole at the end (it may still turn out to be NDJSON). */
typedef enum { MODE_UNKNOWN = 0, MODE_STREAM, MODE_BODY, MODE_ERROR } read_mode;

typedef struct oll {
    const fr_call *call; /* borrowed from the fr_adapter, which outlives us */
    long status;         /* the status seen by the first feed */
    read_mode mode;
    fr_ndjson nd;
    fr_buf body;      /* MODE_BODY: the whole reply; MODE_ERROR: its first bytes */
    fr_text_acc text; /* the message content so far */
    char *model;
    char *finish_reason;
    fr_usage usage;
    bool have_usage;
    bool tool_calls;        /* a message carried `tool_calls` (none are offered) */
    bool reasoned;          /* a message carried `thinking` */
    bool done;              /* saw the final object ("done": true) */
    bool at_end;            /* the framer is handing out an unterminated last line */
    size_t lines;           /* JSON objects read */
    unsigned long progress; /* lines, and body chunks with more than whitespace */
    int rc;                 /* sticky feed error */
    char *error;            /* owned message for rc */
} oll;

/* Records the first error and its message (takes `msg_owned`, freed when an
 * earlier error already won). Returns the sticky code. */
static int fail(oll *o, int rc, char *msg_owned)
{
    if (o->rc == FR_OK) {
        o->rc = rc;
        o->error = msg_owned;
    } else {
        free(msg_owned);
    }
    return o->rc;
}

static int on_line(void *ud, const char *line, size_t len);

static void *oll_create(const fr_call *call)
{
    oll *o = fr_xcalloc(1, sizeof *o);
    o->call = call;
    fr_ndjson_init(&o->nd, FR_PROVIDER_MAX_BODY, on_line, o);
    fr_buf_init(&o->body, FR_PROVIDER_MAX_BODY);
    fr_text_acc_init(&o->text);
    return o;
}

static void oll_destroy(void *self)
{
    oll *o = self;
    fr_ndjson_close(&o->nd);
    fr_buf_close(&o->body);
    fr_text_acc_close(&o->text);
    free(o->model);
    free(o->finish_reason);
    free(o->error);
    free(o);
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

/* Returns the /api/chat body (owned). Settings the call leaves unset
 * (max_tokens <= 0, a negative temperature, an unknown context, no seed)
 * are left out, so the model's own defaults apply. */
static json_t *build_body(const fr_call *c)
{
    json_t *body = json_object();
    json_t *msgs = json_array();
    json_t *options = json_object();
    if (c->system && c->system[0])
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "system", "content",
                                              fr_provider_json_string(c->system)));
    json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content",
                                          fr_provider_json_string(c->prompt)));
    json_object_set_new(body, "model", fr_provider_json_string(c->model));
    json_object_set_new(body, "messages", msgs);
    json_object_set_new(body, "stream", json_boolean(c->stream));
    if (c->max_tokens > 0)
        json_object_set_new(options, "num_predict", json_integer(c->max_tokens));
    if (c->temperature >= 0)
        json_object_set_new(options, "temperature", json_real(c->temperature));
    if (c->context > 0)
        json_object_set_new(options, "num_ctx", json_integer(c->context));
    if (c->has_seed)
        json_object_set_new(options, "seed", json_integer(c->seed));
    if (json_object_size(options) > 0)
        json_object_set_new(body, "options", options);
    else
        json_decref(options);
    /* A string schema asks for any JSON object; Ollama calls that "json". */
    if (c->schema && json_is_string(c->schema))
        json_object_set_new(body, "format", json_string("json"));
    else if (c->schema) /* the adapter's own copy: sharing a reference is safe */
        json_object_set_new(body, "format", json_incref((json_t *)c->schema));
    if (c->keep_alive && c->keep_alive[0])
        json_object_set_new(body, "keep_alive", keep_alive_value(c->keep_alive));
    return body;
}

static int oll_request(void *self, fr_request *out, fr_error *err)
{
    oll *o = self;
    const fr_call *c = o->call;
    json_t *body = NULL;
    int rc = fr_provider_join_url(PROTO, c->base_url, "/api/chat", &out->url, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_ECONFIG;
    if (!c->model || !c->model[0]) {
        fr_error_set(err, rc, PROTO, 0, "the endpoint has no model");
        goto cleanup;
    }
    if (fr_provider_has_ctl(c->api_key)) {
        /* Never echo the key, not even part of it. */
        fr_error_set(err, rc, PROTO, 0, "the API key contains a line break or control character");
        goto cleanup;
    }
    fr_request_add_header(out, "Content-Type: application/json");
    if (c->stream)
        fr_request_add_header(out, "Accept: application/x-ndjson");
    /* Ollama itself takes no key; a proxy in front of it may. */
    if (c->api_key && c->api_key[0])
        fr_request_add_header(out, "Authorization: Bearer %s", c->api_key);
    body = build_body(c);
    out->body = json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15));
    rc = out->body ? FR_OK : FR_ENOMEM;
    if (rc != FR_OK)
        fr_error_set(err, rc, PROTO, 0, "cannot serialise the request body");
cleanup:
    json_decref(body);
    return rc;
}

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

/* Reads one reply object: a chunk of a stream, its final object, or the
 * whole non-streamed reply. Returns FR_OK or the sticky error. */
static int read_object(oll *o, json_t *obj)
{
    o->lines++;
    json_t *error = json_object_get(obj, "error");
    if (error && !json_is_null(error))
        return fail(o, FR_EPROTO, server_error_msg(error));
    json_t *message = json_object_get(obj, "message");
    if (json_array_size(json_object_get(message, "tool_calls")) > 0)
        o->tool_calls = true;
    json_t *thinking = json_object_get(message, "thinking");
    if (json_is_string(thinking) && json_string_length(thinking) > 0)
        o->reasoned = true;
    const char *content = json_string_value(json_object_get(message, "content"));
    if (content) {
        char *msg = NULL;
        int rc = fr_text_acc_add(&o->text, content, strlen(content), &msg);
        if (rc != FR_OK)
            return fail(o, rc, msg);
    }
    const char *model = json_string_value(json_object_get(obj, "model"));
    if (model && model[0]) {
        free(o->model);
        o->model = fr_xstrdup(model);
    }
    /* The counts come with the final object; later ones win. */
    bool seen = false;
    long in = count_field(obj, "prompt_eval_count", &seen);
    long out = count_field(obj, "eval_count", &seen);
    if (seen) {
        o->usage.input = in;
        o->usage.output = out;
        o->have_usage = true;
    }
    if (json_is_true(json_object_get(obj, "done"))) {
        const char *reason = json_string_value(json_object_get(obj, "done_reason"));
        if (reason && reason[0]) {
            free(o->finish_reason);
            o->finish_reason = fr_xstrdup(reason);
        }
        o->done = true;
    }
    return FR_OK;
}

static int on_line(void *ud, const char *line, size_t len)
{
    oll *o = ud;
    o->progress++; /* the framer hands out no blank line */
    if (o->done)
        return FR_OK; /* nothing after the final object counts */
    json_error_t je;
    json_t *obj = json_loadb(line, len, 0, &je);
    int rc = FR_OK;
    if (!json_is_object(obj)) {
        /* A last line without its newline that does not parse was cut
         * short: finish reports the stream as truncated, not malformed. */
        if (o->at_end)
            goto cleanup;
        fr_error e;
        char what[64];
        snprintf(what, sizeof what, "malformed JSON in stream line %zu", o->lines + 1);
        if (obj)
            fr_error_set(&e, FR_EPROTO, PROTO, 0, "%s (not an object)", what);
        else
            fr_provider_json_error(&e, PROTO, &je, what);
        rc = fail(o, FR_EPROTO, fr_xstrdup(e.msg));
        goto cleanup;
    }
    rc = read_object(o, obj);
cleanup:
    json_decref(obj);
    return rc;
}

/* Runs `len` bytes of NDJSON through the framer; a stopped framer's code is
 * sticky in o->rc with a message. */
static int feed_lines(oll *o, const char *data, size_t len)
{
    int rc = fr_ndjson_feed(&o->nd, data, len);
    if (rc == FR_ETOOBIG)
        fail(o, rc,
             fr_xasprintf("the reply is over the %u-byte cap (one stream line exceeds %u bytes)",
                          (unsigned)FR_PROVIDER_MAX_REPLY, (unsigned)FR_PROVIDER_MAX_BODY));
    return rc;
}

static bool is_json_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int oll_feed(void *self, long http_status, const char *data, size_t len)
{
    oll *o = self;
    if (o->mode == MODE_UNKNOWN) {
        o->status = http_status;
        if (!fr_provider_status_ok(http_status)) {
            o->mode = MODE_ERROR;
            o->body.limit = FR_PROVIDER_MAX_ERROR_BODY;
        } else {
            o->mode = o->call->stream ? MODE_STREAM : MODE_BODY;
        }
    }
    if (o->mode != MODE_STREAM)
        for (size_t i = 0; i < len; i++)
            if (!is_json_space(data[i])) {
                o->progress++;
                break;
            }
    switch (o->mode) {
    case MODE_STREAM:
        return feed_lines(o, data, len);
    case MODE_ERROR: {
        /* Only the start of an error body matters; the rest is dropped. */
        size_t room = o->body.limit - o->body.len;
        fr_buf_append(&o->body, data, len < room ? len : room);
        return FR_OK;
    }
    case MODE_BODY:
    case MODE_UNKNOWN: /* decided above */
    default:
        if (fr_buf_append(&o->body, data, len) != FR_OK)
            return fail(
                o, FR_ETOOBIG,
                fr_xasprintf("the reply is over the %u-byte cap (its body exceeds %u bytes)",
                             (unsigned)FR_PROVIDER_MAX_REPLY, (unsigned)FR_PROVIDER_MAX_BODY));
        return FR_OK;
    }
}

/* Ends framed input: a server may omit the newline after its final object,
 * so an unterminated last line is read too. Returns FR_OK once the final
 * object was read, else the error (err filled). */
static int end_lines(oll *o, fr_error *err)
{
    if (!o->done && o->rc == FR_OK && fr_ndjson_pending(&o->nd)) {
        o->at_end = true;
        fr_ndjson_flush(&o->nd);
    }
    if (o->rc != FR_OK)
        return fr_error_set(err, o->rc, PROTO, 0, "%s", o->error);
    if (!o->done)
        return fr_error_set(err, FR_ETRUNCATED, PROTO, 0,
                            "the reply ended before its final \"done\": true object (after %zu "
                            "objects)",
                            o->lines);
    return FR_OK;
}

/* Reads a non-streamed reply from o->body: one JSON object (compact or
 * not), or NDJSON from a server that streamed anyway. */
static int read_body(oll *o, fr_error *err)
{
    json_error_t je;
    json_t *obj = NULL;
    int rc = FR_EPROTO;
    size_t n = o->body.len;
    while (n > 0 && is_json_space(o->body.data[n - 1]))
        n--;
    if (n == 0) {
        fr_error_set(err, rc, PROTO, 0, "the reply body is empty");
        goto cleanup;
    }
    obj = json_loadb(o->body.data, o->body.len, 0, &je);
    if (json_is_object(obj)) {
        read_object(o, obj);
        rc = end_lines(o, err);
    } else if (obj) {
        fr_error_set(err, rc, PROTO, 0, "the reply is not a JSON object");
    } else if (memchr(o->body.data, '\n', n)) {
        feed_lines(o, o->body.data, o->body.len);
        rc = end_lines(o, err);
    } else {
        fr_provider_json_error(err, PROTO, &je, "the reply is not valid JSON");
    }
cleanup:
    json_decref(obj);
    return rc;
}

static int oll_finish(void *self, long http_status, fr_reply *out, fr_error *err)
{
    oll *o = self;
    long status = http_status ? http_status : o->status;
    int rc;
    if (!fr_provider_status_ok(status)) {
        const char *body = o->mode == MODE_ERROR ? fr_buf_str(&o->body) : "";
        return fr_provider_http_error(PROTO, status, body, strlen(body), err);
    }
    if (o->rc != FR_OK)
        return fr_error_set(err, o->rc, PROTO, 0, "%s", o->error);

    if (o->mode == MODE_BODY || (o->mode == MODE_UNKNOWN && !o->call->stream))
        rc = read_body(o, err);
    else
        rc = end_lines(o, err);
    if (rc != FR_OK)
        return rc;

    out->text = fr_buf_take(&o->text.text);
    out->finish_reason = fr_xstrdup(o->finish_reason);
    /* Ollama ends a tool call with done_reason "stop": the message says it. */
    out->finish = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->finish_reason);
    if (o->tool_calls && fr_finish_is_answer(out->finish))
        out->finish = FR_FINISH_TOOL_CALL;
    out->finish = fr_provider_settle_finish(out->finish, o->reasoned, out->text);
    out->model = fr_xstrdup(o->model);
    out->usage = o->usage;
    fr_provider_fill_usage(out, o->call, o->have_usage);
    if (o->call->schema) {
        rc = fr_provider_parse_json_text(PROTO, out->text, &out->json, err);
        if (rc != FR_OK && fr_finish_is_answer(out->finish))
            return rc; /* fr_adapter_finish empties out */
        if (rc != FR_OK && err)
            memset(err, 0, sizeof *err); /* the finish says why: the engine reports it */
    }
    return FR_OK;
}

static bool oll_started(const void *self)
{
    const oll *o = self;
    return o->text.text.len > 0;
}

static unsigned long oll_progress(const void *self)
{
    const oll *o = self;
    return o->progress;
}

const fr_adapter_ops fr_ollama_ops = {
    .name = PROTO,
    .create = oll_create,
    .request = oll_request,
    .feed = oll_feed,
    .finish = oll_finish,
    .destroy = oll_destroy,
    .started = oll_started,
    .progress = oll_progress,
};
