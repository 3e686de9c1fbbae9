#include "providers/openai.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/sse.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO "openai"

/* How the body is read. Decided at the first byte, from the status and the
 * body itself: a server may ignore "stream": true and answer plain JSON. */

typedef struct oai {
    const fr_call *call; /* borrowed from the fr_adapter, which outlives us */
    fr_sse_reader rd;    /* the body as it arrives: stream, whole body or error */
    fr_text_acc text;    /* FR_READ_SSE: the content deltas so far */
    char *model;
    char *finish_reason;
    fr_usage usage;
    bool have_usage;
    bool refused;      /* the reply carried a `refusal` */
    bool tool_calls;   /* the reply carried `tool_calls` (none are offered) */
    bool reasoned;     /* the reply carried reasoning (`reasoning_content`, `reasoning`) */
    bool done;         /* saw data: [DONE] */
    bool server_error; /* the stream carried an error event */
    size_t events;     /* data events parsed */
    int rc;            /* sticky feed error */
    char *error;       /* owned message for rc */
} oai;

/* Records the first error and its message (takes `msg_owned`, freed when an
 * earlier error already won). Returns the sticky code. */
static int fail(oai *o, int rc, char *msg_owned)
{
    if (o->rc == FR_OK) {
        o->rc = rc;
        o->error = msg_owned;
    } else {
        free(msg_owned);
    }
    return o->rc;
}

static void *oai_create(const fr_call *call)
{
    oai *o = fr_xcalloc(1, sizeof *o);
    o->call = call;
    fr_sse_reader_init(&o->rd);
    fr_text_acc_init(&o->text);
    return o;
}

static void oai_destroy(void *self)
{
    oai *o = self;
    fr_sse_reader_close(&o->rd);
    fr_text_acc_close(&o->text);
    free(o->model);
    free(o->finish_reason);
    free(o->error);
    free(o);
}

/* ---- strict structured output ----
 *
 * OpenAI's strict mode (response_format json_schema with "strict": true)
 * accepts only a subset of JSON Schema and answers 400 to anything else
 * (platform.openai.com/docs/guides/structured-outputs, "Supported schemas").
 * A schema qualifies when the root is an object and every object, at every
 * level (nested properties, array items), lists all its properties in
 * `required` and has additionalProperties: false; every array has an items
 * schema; every node has a type (or an enum/const); only the keywords below
 * appear (so no minLength, maxLength, default, minProperties, ...); formats
 * are the ones strict mode knows; and the schema stays within strict mode's
 * limits (5 levels of objects, 5000 properties, 1000 enum values). Anything
 * else is sent with "strict": false: the model is guided by the schema and
 * flowrun's own gate still checks the reply. docs/providers.md says the same. */

#define STRICT_MAX_DEPTH 5
#define STRICT_MAX_PROPS 5000
#define STRICT_MAX_ENUM  1000

static bool in_list(const char *k, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, names[i]) == 0)
            return true;
    return false;
}

/* Whether `type` (a type name or an array of them; may be NULL) names `t`. */
static bool has_type(const json_t *type, const char *t)
{
    if (json_is_string(type))
        return strcmp(json_string_value(type), t) == 0;
    size_t i;
    const json_t *v;
    json_array_foreach(type, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), t) == 0)
            return true;
    }
    return false;
}

/* Whether the array `req` (borrowed, may be NULL) holds the string `k`. */
static bool lists(const json_t *req, const char *k)
{
    size_t i;
    const json_t *v;
    json_array_foreach(req, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), k) == 0)
            return true;
    }
    return false;
}

typedef struct strict_count {
    size_t props;
    size_t enums;
} strict_count;

/* Whether the schema node `s` (borrowed) and everything under it follows
 * the rules above; `depth` counts the objects it is nested in (the root is
 * 1); `n` adds up properties and enum values over the whole schema. */
static bool strict_node(const json_t *s, int depth, strict_count *n)
{
    static const char *const keywords[] = {"type",
                                           "description",
                                           "title",
                                           "enum",
                                           "const",
                                           "properties",
                                           "required",
                                           "additionalProperties",
                                           "items",
                                           "minItems",
                                           "maxItems",
                                           "minimum",
                                           "maximum",
                                           "exclusiveMinimum",
                                           "exclusiveMaximum",
                                           "multipleOf",
                                           "pattern",
                                           "format"};
    static const char *const formats[] = {"date-time", "time", "date", "duration", "email",
                                          "hostname",  "ipv4", "ipv6", "uuid"};
    if (!json_is_object(s))
        return false;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)s, k, v)
    {
        if (!in_list(k, keywords, sizeof keywords / sizeof *keywords))
            return false;
    }
    const json_t *format = json_object_get(s, "format");
    if (format && !(json_is_string(format) &&
                    in_list(json_string_value(format), formats, sizeof formats / sizeof *formats)))
        return false;
    const json_t *type = json_object_get(s, "type");
    const json_t *en = json_object_get(s, "enum");
    if (!type && !en && !json_object_get(s, "const"))
        return false;
    n->enums += json_array_size(en);
    const json_t *props = json_object_get(s, "properties");
    if (has_type(type, "object") || props) {
        const json_t *req = json_object_get(s, "required");
        if (depth > STRICT_MAX_DEPTH || !json_is_false(json_object_get(s, "additionalProperties")))
            return false;
        if (props && !json_is_object(props))
            return false;
        size_t i;
        json_array_foreach(req, i, v)
        {
            if (!json_is_string(v) || !json_object_get(props, json_string_value(v)))
                return false; /* required names a property that is not there */
        }
        n->props += json_object_size(props);
        json_object_foreach((json_t *)props, k, v)
        {
            if (!lists(req, k) || !strict_node(v, depth + 1, n))
                return false;
        }
    }
    const json_t *items = json_object_get(s, "items");
    if ((has_type(type, "array") || items) && !strict_node(items, depth, n))
        return false;
    return n->props <= STRICT_MAX_PROPS && n->enums <= STRICT_MAX_ENUM;
}

/* Returns true when `schema` (borrowed JSON Schema object) qualifies for
 * OpenAI's strict mode, by the rules above. */
static bool strict_ok(const json_t *schema)
{
    strict_count n = {0, 0};
    const json_t *type = json_object_get(schema, "type");
    return json_is_string(type) && strcmp(json_string_value(type), "object") == 0 &&
           strict_node(schema, 1, &n);
}

/* The field that carries the output limit: the endpoint's max_tokens_field. */
static const char *limit_field(const fr_call *c)
{
    return c->max_completion_tokens ? "max_completion_tokens" : "max_tokens";
}

/* Returns the chat.completions body (owned). max_tokens <= 0 and a negative
 * temperature are left out, so the server's defaults apply; the seed is sent
 * only when the task set one. */
static json_t *build_body(const fr_call *c)
{
    json_t *body = json_object();
    json_t *msgs = json_array();
    if (c->system && c->system[0])
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "system", "content",
                                              fr_provider_json_string(c->system)));
    json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content",
                                          fr_provider_json_string(c->prompt)));
    json_object_set_new(body, "model", fr_provider_json_string(c->model));
    json_object_set_new(body, "messages", msgs);
    if (c->max_tokens > 0)
        json_object_set_new(body, limit_field(c), json_integer(c->max_tokens));
    if (c->temperature >= 0)
        json_object_set_new(body, "temperature", json_real(c->temperature));
    if (c->has_seed)
        json_object_set_new(body, "seed", json_integer(c->seed));
    json_object_set_new(body, "stream", json_boolean(c->stream));
    if (c->stream)
        json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (c->schema && json_is_string(c->schema))
        json_object_set_new(body, "response_format", json_pack("{s:s}", "type", "json_object"));
    else if (c->schema)
        json_object_set_new(body, "response_format",
                            json_pack("{s:s,s:{s:s,s:O,s:b}}", "type", "json_schema", "json_schema",
                                      "name", "output", "schema", c->schema, "strict",
                                      strict_ok(c->schema)));
    return body;
}

static int oai_request(void *self, fr_request *out, fr_error *err)
{
    oai *o = self;
    const fr_call *c = o->call;
    json_t *body = NULL;
    int rc = fr_provider_join_url(PROTO, c->base_url, "/chat/completions", &out->url, err);
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
        fr_request_add_header(out, "Accept: text/event-stream");
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

/* Picks choices[] entry with index 0 (or the first entry without index). */
static json_t *first_choice(json_t *obj)
{
    json_t *choices = json_object_get(obj, "choices");
    size_t i;
    json_t *ch;
    json_array_foreach(choices, i, ch)
    {
        json_t *idx = json_object_get(ch, "index");
        if (!idx || json_integer_value(idx) == 0)
            return json_is_object(ch) ? ch : NULL;
    }
    return NULL;
}

static long int_field(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v))
        return (long)json_integer_value(v);
    if (json_is_real(v)) {
        /* Range-checked: converting an out-of-range double is undefined. */
        double d = json_real_value(v);
        return d >= 0 && d < (double)LONG_MAX ? (long)d : 0;
    }
    return 0;
}

/* The finish reasons of OpenAI and the servers that copy it (vLLM,
 * llama.cpp, TGI's eos_token and stop_sequence, the legacy function_call). */
static const fr_finish_word finish_words[] = {
    {"stop", FR_FINISH_STOP},
    {"eos", FR_FINISH_STOP},
    {"eos_token", FR_FINISH_STOP},
    {"stop_sequence", FR_FINISH_STOP},
    {"length", FR_FINISH_LENGTH},
    {"content_filter", FR_FINISH_REFUSED},
    {"tool_calls", FR_FINISH_TOOL_CALL},
    {"function_call", FR_FINISH_TOOL_CALL},
};

static bool nonempty_string(json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* Reads what a message or a delta (borrowed) carries besides its content:
 * a refusal, tool calls, reasoning. */
static void read_extras(oai *o, json_t *msg)
{
    if (nonempty_string(json_object_get(msg, "refusal")))
        o->refused = true;
    json_t *calls = json_object_get(msg, "tool_calls");
    if (json_array_size(calls) > 0 || json_is_object(json_object_get(msg, "function_call")))
        o->tool_calls = true;
    if (nonempty_string(json_object_get(msg, "reasoning_content")) ||
        nonempty_string(json_object_get(msg, "reasoning")))
        o->reasoned = true;
}

/* Reads what every chat.completion(.chunk) may carry: model, usage and the
 * finish reason of the first choice. */
static void read_common(oai *o, json_t *obj, json_t *choice)
{
    const char *model = json_string_value(json_object_get(obj, "model"));
    if (model && model[0]) {
        free(o->model);
        o->model = fr_xstrdup(model);
    }
    json_t *usage = json_object_get(obj, "usage");
    if (!json_is_object(usage)) /* Groq's older streams: only under x_groq */
        usage = json_object_get(json_object_get(obj, "x_groq"), "usage");
    if (json_is_object(usage)) {
        /* Later chunks win: servers that repeat usage send running totals. */
        o->usage.input = int_field(usage, "prompt_tokens");
        o->usage.output = int_field(usage, "completion_tokens");
        json_t *details = json_object_get(usage, "prompt_tokens_details");
        /* DeepSeek counts cache hits in its own field (within prompt_tokens). */
        o->usage.cached = json_is_object(details) && json_object_get(details, "cached_tokens")
                              ? int_field(details, "cached_tokens")
                              : int_field(usage, "prompt_cache_hit_tokens");
        o->have_usage = true;
    }
    const char *fin = json_string_value(json_object_get(choice, "finish_reason"));
    if (fin) {
        free(o->finish_reason);
        o->finish_reason = fr_xstrdup(fin);
    }
}

static char *server_error_msg(json_t *error)
{
    const char *m = fr_provider_error_message(error);
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "the server reported an error mid-stream: ");
    if (m) {
        fr_provider_append_line(&b, m, strlen(m), 800);
    } else {
        char *dump = json_dumps(error, JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump)
            fr_provider_append_line(&b, dump, strlen(dump), 200);
        free(dump);
    }
    return fr_buf_take(&b);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/* The terminator, tolerating stray whitespace around it. */
static bool is_done(const char *s, size_t n)
{
    while (n > 0 && blank(s, 1)) {
        s++;
        n--;
    }
    while (n > 0 && blank(s + n - 1, 1))
        n--;
    return n == 6 && memcmp(s, "[DONE]", 6) == 0;
}

static int on_event(void *ud, const fr_sse_event *ev)
{
    oai *o = ud;
    if (o->done || blank(ev->data, ev->data_len))
        return FR_OK;
    if (is_done(ev->data, ev->data_len)) {
        o->done = true;
        return FR_OK;
    }
    json_error_t je;
    json_t *obj = json_loadb(ev->data, ev->data_len, 0, &je);
    int rc = FR_OK;
    if (!json_is_object(obj)) {
        if (strcmp(ev->event, "error") == 0) {
            fr_buf b;
            fr_buf_init(&b, 0);
            fr_buf_puts(&b, "the server reported an error mid-stream: ");
            fr_provider_append_line(&b, ev->data, ev->data_len, 200);
            o->server_error = true;
            rc = fail(o, FR_EPROTO, fr_buf_take(&b));
        } else {
            fr_error e;
            char what[64];
            snprintf(what, sizeof what, "malformed JSON in stream event %zu", o->events + 1);
            if (obj)
                fr_error_set(&e, FR_EPROTO, PROTO, 0, "%s (not an object)", what);
            else
                fr_provider_json_error(&e, PROTO, &je, what);
            rc = fail(o, FR_EPROTO, fr_xstrdup(e.msg));
        }
        goto cleanup;
    }
    o->events++;
    json_t *error = json_object_get(obj, "error");
    if (!error && strcmp(ev->event, "error") == 0)
        error = obj;
    if (error && !json_is_null(error)) {
        o->server_error = true;
        rc = fail(o, FR_EPROTO, server_error_msg(error));
        goto cleanup;
    }
    json_t *choice = first_choice(obj);
    read_extras(o, json_object_get(choice, "delta"));
    const char *delta =
        json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    if (delta) {
        char *msg = NULL;
        int arc = fr_text_acc_add(&o->text, delta, strlen(delta), &msg);
        if (arc != FR_OK) {
            rc = fail(o, arc, msg);
            goto cleanup;
        }
    }
    read_common(o, obj, choice);
cleanup:
    json_decref(obj);
    return rc;
}

static int oai_feed(void *self, long http_status, const char *data, size_t len)
{
    oai *o = self;
    char *msg = NULL;
    int rc = fr_sse_reader_feed(&o->rd, o->call->stream, http_status, data, len, on_event, o, &msg);
    if (msg)
        fail(o, rc, msg);
    return rc;
}

/* Parses a whole chat.completion object from o->rd.body. */
static int parse_body(oai *o, fr_error *err)
{
    json_error_t je;
    json_t *obj = NULL;
    int rc = FR_EPROTO;
    if (o->rd.body.len == 0) {
        fr_error_set(err, rc, PROTO, 0, "the reply body is empty");
        goto cleanup;
    }
    obj = json_loadb(o->rd.body.data, o->rd.body.len, 0, &je);
    if (!obj) {
        fr_provider_json_error(err, PROTO, &je, "the reply is not valid JSON");
        goto cleanup;
    }
    if (!json_is_object(obj)) {
        fr_error_set(err, rc, PROTO, 0, "the reply is not a JSON object");
        goto cleanup;
    }
    json_t *error = json_object_get(obj, "error");
    if (error && !json_is_null(error)) {
        const char *m = fr_provider_error_message(error);
        fr_buf b;
        fr_buf_init(&b, 0);
        if (m)
            fr_provider_append_line(&b, m, strlen(m), 800);
        fr_error_set(err, rc, PROTO, 0, "the server reported an error: %s",
                     b.len ? fr_buf_str(&b) : "(no message)");
        fr_buf_close(&b);
        goto cleanup;
    }
    json_t *choice = first_choice(obj);
    if (!choice) {
        fr_error_set(err, rc, PROTO, 0, "the reply has no choices");
        goto cleanup;
    }
    /* content is null when the model only refused or called tools. */
    read_extras(o, json_object_get(choice, "message"));
    const char *content =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    /* The same cap and loop cut as a stream's text. */
    char *msg = NULL;
    fr_text_acc_close(&o->text);
    fr_text_acc_init(&o->text);
    rc = content ? fr_text_acc_add(&o->text, content, strlen(content), &msg) : FR_OK;
    if (rc != FR_OK) {
        fr_error_set(err, rc, PROTO, 0, "%s", msg);
        free(msg);
        goto cleanup;
    }
    read_common(o, obj, choice);
cleanup:
    json_decref(obj);
    return rc;
}

/* Whether `msg` (borrowed) names `field` as a whole word. */
static bool names_field(const char *msg, const char *field)
{
    size_t n = strlen(field);
    for (const char *p = strstr(msg, field); p; p = strstr(p + 1, field)) {
        char before = p == msg ? ' ' : p[-1];
        char after = p[n];
        bool word_before = before == '_' || (before >= 'a' && before <= 'z');
        bool word_after = after == '_' || (after >= 'a' && after <= 'z');
        if (!word_before && !word_after)
            return true;
    }
    return false;
}

/* A 400 that calls the limit field the request sent unsupported (OpenAI's
 * reasoning models: "Unsupported parameter: 'max_tokens' ... Use
 * 'max_completion_tokens' instead"; older servers: "Unrecognized request
 * argument supplied: max_completion_tokens"): err->msg gains the endpoint
 * setting that sends the other one. Other 400s are left as they are. */
static void hint_limit_field(const fr_call *c, fr_error *err)
{
    const char *sent = limit_field(c);
    const char *other = c->max_completion_tokens ? "max_tokens" : "max_completion_tokens";
    if (c->max_tokens <= 0 || !names_field(err->msg, sent) ||
        !(strstr(err->msg, "upported") || strstr(err->msg, "nrecognized")))
        return;
    char hint[160];
    int hn = snprintf(hint, sizeof hint,
                      " (set max_tokens_field = \"%s\" on this endpoint to send %s instead of %s)",
                      other, other, sent);
    size_t keep = strlen(err->msg);
    if (keep + (size_t)hn >= sizeof err->msg)
        keep = sizeof err->msg - (size_t)hn - 1;
    snprintf(err->msg + keep, sizeof err->msg - keep, "%s", hint);
}

static int oai_finish(void *self, long http_status, fr_reply *out, fr_error *err)
{
    oai *o = self;
    long status = http_status ? http_status : o->rd.status;
    int rc;
    if (!fr_provider_status_ok(status)) {
        const char *body = o->rd.mode == FR_READ_ERROR ? fr_buf_str(&o->rd.body) : "";
        rc = fr_provider_http_error(PROTO, status, body, strlen(body), err);
        if (status == 400)
            hint_limit_field(o->call, err);
        return rc;
    }
    if (o->rc != FR_OK)
        return fr_error_set(err, o->rc, PROTO, 0, "%s", o->error);

    if (o->rd.mode == FR_READ_BODY) {
        rc = parse_body(o, err);
        if (rc != FR_OK)
            return rc;
    } else if (o->call->stream) {
        if (o->rd.mode == FR_READ_SSE && !o->done) {
            /* A server may omit the blank line after its last event. */
            fr_sse_flush(&o->rd.sse);
            if (o->server_error)
                return fr_error_set(err, o->rc, PROTO, 0, "%s", o->error);
        }
        if (!o->done)
            return fr_error_set(err, FR_ETRUNCATED, PROTO, 0,
                                "the stream ended before 'data: [DONE]' (after %zu events)",
                                o->events);
    } else {
        return fr_error_set(err, FR_EPROTO, PROTO, 0, "the reply body is empty");
    }

    out->text = fr_buf_take(&o->text.text);
    out->finish_reason = fr_xstrdup(o->finish_reason);
    out->finish = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->finish_reason);
    if (o->refused)
        out->finish = FR_FINISH_REFUSED;
    else if (o->tool_calls && fr_finish_is_answer(out->finish))
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

static bool oai_started(const void *self)
{
    const oai *o = self;
    return o->text.text.len > 0;
}

static unsigned long oai_progress(const void *self)
{
    const oai *o = self;
    return o->rd.progress;
}

const fr_adapter_ops fr_openai_ops = {
    .name = PROTO,
    .create = oai_create,
    .request = oai_request,
    .feed = oai_feed,
    .finish = oai_finish,
    .destroy = oai_destroy,
    .started = oai_started,
    .progress = oai_progress,
};
