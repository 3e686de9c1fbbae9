#include "providers/provider.h"

#include "engine/util/buf.h"
#include "engine/util/hash.h"
#include "engine/util/jsonw.h"
#include "engine/util/mem.h"
#include "providers/anthropic.h"
#include "providers/ollama.h"
#include "providers/openai.h"
#include "providers/provider_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Adapters by protocol; NULL marks a protocol whose adapter is not built
 * yet, which fails cleanly with FR_ECONFIG instead of crashing. */
static const fr_adapter_ops *const adapters[] = {
    [FR_PROTO_OPENAI] = &fr_openai_ops,
    [FR_PROTO_OLLAMA] = &fr_ollama_ops,
    [FR_PROTO_ANTHROPIC] = &fr_anthropic_ops,
};

struct fr_adapter {
    fr_protocol proto;
    const fr_adapter_ops *ops; /* NULL when the protocol is not supported */
    void *impl;
    int feed_rc;       /* sticky: the first error a feed returned */
    unsigned long fed; /* bytes fed: the progress of a protocol without an adapter */
    fr_reader rd;      /* the reply body, read for the adapter (when ops is set) */
    fr_call call;      /* a view of the owned copies below, lent to the adapter */
    char *strings;     /* one block holding the five below (owned) */
    char *base_url;
    char *model;
    char *system;
    char *prompt;
    char *api_key;
    json_t *schema;
    json_t *tools;
    json_t *messages;
};

/* Overwrites a secret before its memory goes back to the allocator. */
static void wipe(char *s)
{
    if (s)
        fr_wipe(s, strlen(s));
}

/* Returns an owned copy of `v` (borrowed, may be NULL). */
static json_t *copy_json(const json_t *v)
{
    if (!v)
        return NULL;
    json_t *copy = json_deep_copy(v);
    if (!copy) {
        fprintf(stderr, "flowrun: out of memory (copying a call)\n");
        abort();
    }
    return copy;
}

fr_adapter *fr_adapter_new(fr_protocol proto, const fr_call *call)
{
    fr_adapter *a = fr_xcalloc(1, sizeof *a);
    a->proto = proto;
    a->ops = (unsigned)proto < sizeof adapters / sizeof adapters[0] ? adapters[proto] : NULL;
    /* The call's strings copied into one block: one allocation and one
     * free a turn instead of five each. NULL stays NULL. */
    const char *src[] = {call->base_url, call->model, call->system, call->prompt, call->api_key};
    char **dst[] = {&a->base_url, &a->model, &a->system, &a->prompt, &a->api_key};
    size_t len[sizeof src / sizeof src[0]], total = 0;
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        total += len[i] = src[i] ? strlen(src[i]) + 1 : 0;
    char *p = a->strings = total ? fr_xmalloc(total) : NULL;
    for (size_t i = 0; i < sizeof src / sizeof src[0]; i++)
        if (src[i]) {
            memcpy(p, src[i], len[i]);
            *dst[i] = p;
            p += len[i];
        }
    a->schema = copy_json(call->schema);
    a->tools = copy_json(call->tools);
    a->messages = copy_json(call->messages);
    a->call = *call;
    a->call.base_url = a->base_url;
    a->call.model = a->model;
    a->call.system = a->system;
    a->call.prompt = a->prompt;
    a->call.api_key = a->api_key;
    a->call.schema = a->schema;
    a->call.tools = a->tools;
    a->call.messages = a->messages;
    if (a->ops) {
        fr_reader_init(&a->rd, a->ops->name, a->ops->reader, a->call.stream);
        a->impl = a->ops->create(&a->call, &a->rd);
        a->rd.ud = a->impl;
    }
    return a;
}

/* The shortest run of the key's first bytes that counts as a leak: long
 * enough to leave a key's public prefix ("sk-proj-") alone when quoted on
 * its own, short enough to catch a key cut off at the end of a snippet. */
#define REDACT_MIN_PREFIX 12

/* Replaces in the fixed buffer `s` of `size` bytes every occurrence of `key`
 * and every run of at least REDACT_MIN_PREFIX of its first bytes (a key a
 * server echoed and a snippet then cut). No server echo or adapter slip
 * can show the key this way. */
static void redact_in(char *s, size_t size, const char *key)
{
    size_t klen = strlen(key);
    size_t min = klen < REDACT_MIN_PREFIX ? klen : REDACT_MIN_PREFIX;
    fr_buf b;
    fr_buf_init(&b, 0);
    bool hit = false;
    for (const char *p = s; *p;) {
        size_t n = 0;
        while (n < klen && p[n] == key[n])
            n++;
        if (n >= min) {
            fr_buf_puts(&b, "[REDACTED]");
            p += n;
            hit = true;
        } else {
            fr_buf_append(&b, p, 1);
            p++;
        }
    }
    if (hit)
        snprintf(s, size, "%s", fr_buf_str(&b));
    fr_buf_close(&b);
}

/* Every error leaving the layer passes here: it gets a message if the
 * adapter left none, and loses any copy of the key. */
static int seal_error(const fr_adapter *a, int rc, fr_error *err)
{
    if (rc == FR_OK || !err)
        return rc;
    if (err->code != rc || !err->msg[0])
        fr_error_set(err, rc, fr_protocol_name(a->proto), 0, "%s", fr_strerror(rc));
    if (a->api_key && a->api_key[0]) {
        redact_in(err->msg, sizeof err->msg, a->api_key);
        redact_in(err->source, sizeof err->source, a->api_key);
    }
    return rc;
}

static int unsupported(const fr_adapter *a, fr_error *err)
{
    return fr_error_set(err, FR_ECONFIG, fr_protocol_name(a->proto), 0,
                        "protocol '%s' is not supported yet", fr_protocol_name(a->proto));
}

int fr_adapter_request(fr_adapter *a, fr_request *out, fr_error *err)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (err)
        memset(err, 0, sizeof *err);
    if (!a->ops)
        rc = unsupported(a, err);
    else if (a->ops->request)
        rc = a->ops->request(a->impl, out, err);
    else
        rc = fr_provider_request(a->ops->name, &a->call, a->ops->request_spec, out, err);
    if (rc != FR_OK)
        fr_request_close(out);
    return seal_error(a, rc, err);
}

int fr_adapter_feed(fr_adapter *a, long http_status, const char *data, size_t len)
{
    if (a->feed_rc != FR_OK)
        return a->feed_rc;
    if (!a->ops)
        a->feed_rc = FR_ECONFIG;
    else if (len > 0)
        a->feed_rc = fr_reader_feed(&a->rd, http_status, data, len);
    a->fed += len;
    return a->feed_rc;
}

int fr_adapter_finish(fr_adapter *a, long http_status, fr_reply *out, fr_error *err)
{
    int rc;
    memset(out, 0, sizeof *out);
    if (err)
        memset(err, 0, sizeof *err);
    if (!a->ops)
        rc = unsupported(a, err);
    else if ((rc = fr_reader_end(&a->rd, http_status, err)) == FR_OK)
        rc = a->ops->finish(a->impl, out, err);
    if (rc != FR_OK)
        fr_reply_close(out);
    else if (!out->text)
        out->text = fr_xstrdup("");
    return seal_error(a, rc, err);
}

void fr_adapter_free(fr_adapter *a)
{
    if (!a)
        return;
    if (a->ops && a->impl)
        a->ops->destroy(a->impl);
    if (a->ops)
        fr_reader_close(&a->rd);
    wipe(a->api_key);
    free(a->strings);
    json_decref(a->schema);
    json_decref(a->tools);
    json_decref(a->messages);
    free(a);
}

const char *fr_finish_name(fr_finish f)
{
    switch (f) {
    case FR_FINISH_STOP:
        return "stop";
    case FR_FINISH_LENGTH:
        return "length";
    case FR_FINISH_REFUSED:
        return "refused";
    case FR_FINISH_TOOL_CALL:
        return "tool_call";
    case FR_FINISH_NO_ANSWER:
        return "no_answer";
    case FR_FINISH_OTHER:
        return "other";
    case FR_FINISH_NONE:
    default:
        return "unknown";
    }
}

bool fr_finish_is_answer(fr_finish f)
{
    return f == FR_FINISH_STOP || f == FR_FINISH_NONE || f == FR_FINISH_OTHER;
}

fr_finish fr_provider_finish(const fr_finish_word *words, size_t n, const char *reason)
{
    if (!reason || !reason[0])
        return FR_FINISH_NONE;
    for (size_t i = 0; i < n; i++)
        if (strcmp(words[i].word, reason) == 0)
            return words[i].finish;
    return FR_FINISH_OTHER;
}

fr_finish fr_provider_settle_finish(fr_finish f, bool reasoned, const char *text)
{
    if (!reasoned || !fr_finish_is_answer(f))
        return f;
    for (const char *p = text ? text : ""; *p; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return f;
    return FR_FINISH_NO_ANSWER;
}

void fr_reply_close(fr_reply *r)
{
    if (!r)
        return;
    free(r->text);
    json_decref(r->json);
    free(r->finish_reason);
    free(r->model);
    json_decref(r->tool_calls);
    memset(r, 0, sizeof *r);
}

void fr_request_close(fr_request *r)
{
    if (!r)
        return;
    free(r->url);
    for (size_t i = 0; i < r->nheaders; i++) {
        /* A header may carry the key: do not leave it in freed memory. */
        wipe(r->headers[i]);
        free(r->headers[i]);
    }
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

long fr_estimate_tokens(const char *text)
{
    if (!text || !text[0])
        return 0;
    size_t n = strlen(text);
    return (long)((n + 3) / 4);
}

/* Shared helpers (provider_int.h). */

bool fr_provider_status_ok(long http_status)
{
    return http_status == 0 || (http_status >= 200 && http_status < 300);
}

bool fr_provider_has_ctl(const char *s)
{
    if (!s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return true;
    return false;
}

/* The `an` bytes of `a` then the `bn` of `b` (both borrowed), as an owned
 * string: one allocation, no format to parse. */
static char *joined(const char *a, size_t an, const char *b, size_t bn)
{
    char *s = fr_xmalloc(an + bn + 1);
    memcpy(s, a, an);
    memcpy(s + an, b, bn);
    s[an + bn] = '\0';
    return s;
}

int fr_provider_join_url(const char *proto, const char *base_url, const char *path, char **out,
                         fr_error *err)
{
    *out = NULL;
    if (!base_url || !base_url[0])
        return fr_error_set(err, FR_ECONFIG, proto, 0, "the endpoint has no URL");
    for (const unsigned char *p = (const unsigned char *)base_url; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return fr_error_set(err, FR_ECONFIG, proto, 0,
                                "endpoint URL contains whitespace or control characters");
    size_t skip;
    if (strncasecmp(base_url, "http://", 7) == 0)
        skip = 7;
    else if (strncasecmp(base_url, "https://", 8) == 0)
        skip = 8;
    else
        return fr_error_set(err, FR_ECONFIG, proto, 0,
                            "endpoint URL must start with http:// or https://");
    const char *host = base_url + skip;
    if (!host[0] || strchr("/?#", host[0]))
        return fr_error_set(err, FR_ECONFIG, proto, 0, "endpoint URL has no host");
    size_t n = strlen(base_url);
    while (n > skip && base_url[n - 1] == '/')
        n--;
    *out = joined(base_url, n, path, strlen(path));
    return FR_OK;
}

json_t *fr_provider_must(json_t *v)
{
    if (!v) {
        fprintf(stderr, "flowrun: out of memory (building a request)\n");
        abort();
    }
    return v;
}

/* Whether `v` (borrowed) is NULL or a JSON string. */
static bool opt_string(const json_t *v)
{
    return !v || json_is_string(v);
}

/* Checks the neutral message `m` (borrowed; see fr_call.messages) so that
 * adapters may take its shape for granted. Returns NULL when it is
 * well-formed, else what is wrong (static). */
static const char *bad_message(const json_t *m)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!json_is_object(m) || !role)
        return "it has no role";
    if (!opt_string(json_object_get(m, "content")))
        return "its content is not a string";
    if (strcmp(role, "user") == 0)
        return NULL;
    if (strcmp(role, "tool") == 0) {
        if (!json_is_string(json_object_get(m, "tool_call_id")) ||
            !opt_string(json_object_get(m, "name")))
            return "a tool result needs a tool_call_id (and a string name)";
        return NULL;
    }
    if (strcmp(role, "assistant") != 0)
        return "its role is not user, assistant or tool";
    const json_t *calls = json_object_get(m, "tool_calls");
    if (calls && !json_is_array(calls))
        return "its tool_calls is not an array";
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        if (!json_is_string(json_object_get(tc, "id")) ||
            !json_is_string(json_object_get(tc, "name")))
            return "a tool call needs an id and a name";
        if (!opt_string(json_object_get(tc, "raw_arguments")))
            return "a tool call's raw_arguments is not a string";
    }
    return NULL;
}

/* A {"role", "content"} message of `role` (borrowed) and `content`
 * (borrowed; NULL is ""), as json_pack("{s:s,s:o}") built it. */
static void role_message(fr_jsonw *w, const char *role, const char *content)
{
    fr_jsonw_object(w, NULL);
    fr_jsonw_str_k(w, FR_JSONW_KEY("role"), role);
    fr_provider_write_string(w, FR_JSONW_KEY("content"), content);
    fr_jsonw_close(w);
}

/* Writes the body's "messages" of `c` into `w`: the system prompt first
 * unless it goes apart (or there is none), then the user's prompt, or the
 * call's conversation as spec->add_message builds it (a tree: a protocol
 * may merge a message into the one before). Returns FR_OK, or FR_ECONFIG
 * with `err` filled for a message that is not well-formed. */
static int messages(const char *proto, const fr_call *c, const fr_request_spec *spec, fr_jsonw *w,
                    fr_error *err)
{
    fr_jsonw_array_k(w, FR_JSONW_KEY("messages"));
    if (!spec->system_apart && c->system && c->system[0])
        role_message(w, "system", c->system);
    if (!c->messages) {
        role_message(w, "user", c->prompt);
        fr_jsonw_close(w);
        return FR_OK;
    }
    if (!json_is_array(c->messages) || json_array_size(c->messages) == 0)
        return fr_error_set(err, FR_ECONFIG, proto, 0, "the conversation has no messages");
    json_t *msgs = fr_provider_must(json_array());
    size_t i;
    const json_t *m;
    json_array_foreach(c->messages, i, m)
    {
        const char *bad = bad_message(m);
        if (bad) {
            json_decref(msgs);
            return fr_error_set(err, FR_ECONFIG, proto, 0,
                                "message %zu of the conversation is malformed: %s", i + 1, bad);
        }
        spec->add_message(spec->self ? spec->self : c, msgs, m);
    }
    json_array_foreach(msgs, i, m)
    {
        fr_jsonw_value(w, NULL, m);
    }
    json_decref(msgs);
    fr_jsonw_close(w);
    return FR_OK;
}

bool fr_provider_offers_tools(const fr_call *call)
{
    return json_array_size(call->tools) > 0;
}

json_t *fr_provider_function_tools(const fr_call *call)
{
    json_t *out = fr_provider_must(json_array());
    size_t i;
    const json_t *t;
    json_array_foreach(call->tools, i, t)
    {
        json_t *fn = fr_provider_must(json_object());
        json_object_set_new(fn, "name",
                            fr_provider_json_string(json_string_value(json_object_get(t, "name"))));
        const json_t *desc = json_object_get(t, "description");
        if (json_is_string(desc))
            json_object_set_new(fn, "description", json_incref((json_t *)desc));
        const json_t *params = json_object_get(t, "parameters");
        json_object_set_new(
            fn, "parameters",
            json_is_object(params)
                ? json_incref((json_t *)params)
                : fr_provider_must(json_pack("{s:s,s:{}}", "type", "object", "properties")));
        json_array_append_new(
            out, fr_provider_must(json_pack("{s:s,s:o}", "type", "function", "function", fn)));
    }
    return out;
}

json_t *fr_provider_call_input(const json_t *tool_call)
{
    json_t *args = json_object_get(tool_call, "arguments");
    return json_is_object(args) ? json_incref(args) : fr_provider_must(json_object());
}

json_t *fr_provider_append_calls(json_t *arr, const json_t *calls, json_t *(*one)(const json_t *tc))
{
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        json_array_append_new(arr, one(tc));
    }
    return arr;
}

int fr_provider_request(const char *proto, const fr_call *c, const fr_request_spec *spec,
                        fr_request *out, fr_error *err)
{
    fr_buf body;
    fr_buf_init(&body, 0);
    fr_jsonw *w = NULL;
    int rc = fr_provider_join_url(proto, c->base_url, spec->path, &out->url, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_ECONFIG;
    if (!c->model || !c->model[0]) {
        fr_error_set(err, rc, proto, 0, "the endpoint has no model");
        goto cleanup;
    }
    if (fr_provider_has_ctl(c->api_key)) {
        /* Never echo the key, not even part of it. */
        fr_error_set(err, rc, proto, 0, "the API key contains a line break or control character");
        goto cleanup;
    }
    fr_request_add_header(out, "Content-Type: application/json", NULL);
    if (spec->extra)
        fr_request_add_header(out, spec->extra, NULL);
    if (c->stream)
        fr_request_add_header(out, "Accept: ", spec->accept);
    if (c->api_key && c->api_key[0])
        fr_request_add_header(out, spec->auth, c->api_key);
    /* The bytes json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(15))
     * printed of the tree the body once was, written without it. */
    w = fr_jsonw_new(&body);
    fr_jsonw_compact(w, 15);
    fr_jsonw_object(w, NULL);
    fr_provider_write_string(w, FR_JSONW_KEY("model"), c->model);
    if (spec->system_apart && c->system && c->system[0])
        fr_provider_write_string(w, FR_JSONW_KEY("system"), c->system);
    rc = messages(proto, c, spec, w, err);
    if (rc != FR_OK)
        goto cleanup;
    spec->add_members(spec->self ? spec->self : c, w);
    fr_jsonw_bool_k(w, FR_JSONW_KEY("stream"), c->stream);
    fr_jsonw_close(w);
    rc = fr_jsonw_ok(w) ? FR_OK : FR_ENOMEM;
    if (rc == FR_OK)
        out->body = fr_buf_take(&body);
    else
        fr_error_set(err, rc, proto, 0, "cannot serialise the request body");
cleanup:
    fr_jsonw_free(w);
    fr_buf_close(&body);
    return rc;
}

/* The headers a request starts with room for: fr_provider_request adds at
 * most four, so their array is allocated once, not once a header. */
#define HEADERS_FIRST 4

void fr_request_add_header(fr_request *r, const char *head, const char *tail)
{
    /* The array's room is implicit: HEADERS_FIRST, doubled each time it is
     * full (nheaders a power of two from there); only this function grows
     * it. */
    size_t n = r->nheaders;
    if (n == 0 || (n >= HEADERS_FIRST && (n & (n - 1)) == 0))
        r->headers = fr_xrealloc(r->headers, (n ? 2 * n : HEADERS_FIRST) * sizeof *r->headers);
    r->headers[r->nheaders++] =
        joined(head, strlen(head), tail ? tail : "", tail ? strlen(tail) : 0);
}

/* Returns the length of the valid UTF-8 sequence at `p` (`n` bytes left),
 * or 0 when the bytes there are not one (overlong, surrogate, cut short). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    unsigned long cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
        return 0;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
        return 0;
    return len;
}

json_t *fr_provider_json_string(const char *s)
{
    if (!s)
        s = "";
    json_t *v = json_string(s);
    if (!v) {
        /* Not valid UTF-8: keep every valid sequence, mark the rest. */
        fr_buf b;
        fr_buf_init(&b, 0);
        const unsigned char *p = (const unsigned char *)s;
        size_t n = strlen(s);
        while (n > 0) {
            size_t k = utf8_len(p, n);
            if (k == 0) {
                fr_buf_puts(&b, "\xEF\xBF\xBD");
                k = 1;
            } else {
                fr_buf_append(&b, p, k);
            }
            p += k;
            n -= k;
        }
        v = json_stringn(fr_buf_str(&b), b.len);
        fr_buf_close(&b);
    }
    if (!v) {
        fprintf(stderr, "flowrun: out of memory (building a JSON string)\n");
        abort();
    }
    return v;
}

void fr_provider_write_string(fr_jsonw *w, fr_jsonw_key k, const char *s)
{
    if (!fr_jsonw_str_k(w, k, s ? s : "")) { /* not UTF-8: marked, as a tree */
        json_t *v = fr_provider_json_string(s);
        fr_jsonw_value_k(w, k, v);
        json_decref(v);
    }
}

void fr_provider_write_tree(fr_jsonw *w, const char *key, json_t *v)
{
    fr_jsonw_value(w, key, v);
    json_decref(v);
}

void fr_provider_append_line(fr_buf *out, const char *s, size_t n, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + n;
    size_t start = out->len;
    size_t used = 0;
    while (p < end && (*p <= 0x20 || *p == 0x7f))
        p++;
    while (p < end) {
        size_t k = utf8_len(p, (size_t)(end - p));
        if (used + (k ? k : 1) > max)
            break;
        if (k == 0) {
            fr_buf_append(out, "?", 1);
            k = 1;
        } else if (k == 1 && (*p < 0x20 || *p == 0x7f)) {
            fr_buf_append(out, " ", 1);
        } else {
            fr_buf_append(out, p, k);
        }
        p += k;
        used += k;
    }
    while (out->len > start && out->data[out->len - 1] == ' ')
        out->data[--out->len] = '\0';
}

const char *fr_provider_error_message(const json_t *v)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (!json_is_object(v))
        return NULL;
    static const char *const keys[] = {"message", "error", "detail"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const json_t *f = json_object_get(v, keys[i]);
        const char *m = json_is_object(f) ? fr_provider_error_message(f) : json_string_value(f);
        if (m && m[0])
            return m;
    }
    return NULL;
}

/* Parses an error body as JSON, or as the first `data:` line of an SSE
 * stream when a streaming server answered its error that way. */
static json_t *load_error_body(const char *body, size_t len)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root)
        return root;
    const char *end = body + len;
    for (const char *p = body; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *stop = nl ? nl : end;
        if (stop - p > 5 && memcmp(p, "data:", 5) == 0)
            return json_loadb(p + 5, (size_t)(stop - p - 5), 0, NULL);
        p = nl ? nl + 1 : end;
    }
    return NULL;
}

int fr_provider_http_error(const char *proto, long http_status, const char *body, size_t len,
                           fr_error *err)
{
    fr_buf msg;
    fr_buf_init(&msg, 0);
    json_t *root = len ? load_error_body(body, len) : NULL;
    const char *m = root ? fr_provider_error_message(root) : NULL;
    if (m)
        fr_provider_append_line(&msg, m, strlen(m), 800);
    else if (len)
        fr_provider_append_line(&msg, body, len, 200);
    fr_error_set(err, FR_EHTTP, proto, 0, "HTTP %ld: %s", http_status,
                 msg.len ? fr_buf_str(&msg) : "(empty body)");
    json_decref(root);
    fr_buf_close(&msg);
    return FR_EHTTP;
}

int fr_provider_json_error(fr_error *err, const char *proto, const json_error_t *je,
                           const char *what)
{
    /* jansson appends " near '<token>'", which quotes the server's bytes
     * (a key it echoed, say); the position is enough to find the fault. */
    const char *near = strstr(je->text, " near '");
    int n = near ? (int)(near - je->text) : (int)strlen(je->text);
    return fr_error_set(err, FR_EPROTO, proto, 0, "%s (line %d, column %d: %.*s)", what, je->line,
                        je->column, n, je->text);
}

static int load_text(const char *proto, const char *s, size_t n, json_t **out, fr_error *err)
{
    json_error_t je;
    *out = json_loadb(s, n, JSON_DECODE_ANY, &je);
    if (*out)
        return FR_OK;
    /* Structured output that does not parse failed its quality gate: the
     * protocol worked, the model did not deliver. */
    fr_provider_json_error(err, proto, &je, "the reply is not valid JSON");
    if (err)
        err->code = FR_EQUALITY;
    return FR_EQUALITY;
}

int fr_provider_parse_json_text(const char *proto, const char *text, json_t **out, fr_error *err)
{
    *out = NULL;
    /* Whole text first: a JSON string value may itself hold a ``` fence. */
    int rc = load_text(proto, text, strlen(text), out, err);
    if (rc == FR_OK)
        return rc;
    const char *open = strstr(text, "```");
    if (!open)
        return rc;
    const char *start = strchr(open + 3, '\n');
    if (!start)
        return rc;
    start++;
    const char *close = strstr(start, "```");
    size_t n = close ? (size_t)(close - start) : strlen(start);
    return load_text(proto, start, n, out, err);
}

/* Estimates the tokens of `v` (borrowed, may be NULL) from its compact
 * serialised size, as fr_estimate_tokens counts text. */
static long estimate_json(const json_t *v)
{
    size_t n = v ? json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY) : 0;
    return (long)((n + 3) / 4);
}

/* Estimates the tokens of a conversation (borrowed): each message's
 * content and the tool calls it carries. */
static long estimate_messages(const json_t *msgs)
{
    long n = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(msgs, i, m)
    {
        n += fr_estimate_tokens(json_string_value(json_object_get(m, "content")));
        n += estimate_json(json_object_get(m, "tool_calls"));
    }
    return n;
}

void fr_provider_fill_usage(fr_reply *r, const fr_call *call, bool have_usage)
{
    long in =
        fr_estimate_tokens(call->system) + estimate_json(call->tools) +
        (call->messages ? estimate_messages(call->messages) : fr_estimate_tokens(call->prompt));
    long out = fr_estimate_tokens(r->text) + estimate_json(r->tool_calls);
    if (!have_usage) {
        r->usage.input = in;
        r->usage.output = out;
        r->usage.cached = 0;
        r->usage.estimated = true;
        return;
    }
    if (r->usage.input <= 0 && in > 0) {
        r->usage.input = in;
        r->usage.estimated = true;
    }
    if (r->usage.output <= 0 && out > 0) {
        r->usage.output = out;
        r->usage.estimated = true;
    }
    if (r->usage.cached < 0)
        r->usage.cached = 0;
}

void fr_text_acc_init(fr_text_acc *a)
{
    memset(a, 0, sizeof *a);
    fr_buf_init(&a->text, FR_PROVIDER_MAX_REPLY);
}

void fr_text_acc_close(fr_text_acc *a)
{
    fr_buf_close(&a->text);
}

char *fr_provider_cap_msg(void)
{
    return fr_xasprintf("the reply is over the %u-byte cap", (unsigned)FR_PROVIDER_MAX_REPLY);
}

static bool is_word_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Ends the word being read: returns the length in words (1 to
 * FR_PROVIDER_LOOP_WORDS) of a run that has now repeated
 * FR_PROVIDER_MAX_REPEATS times in a row, else 0. */
static int end_word(fr_text_acc *a)
{
    const size_t nk = FR_PROVIDER_LOOP_WORDS;
    uint64_t h = a->word;
    int found = 0;
    for (size_t k = 1; k <= nk; k++) {
        if (a->nwords >= k && a->recent[(a->nwords - k) % nk] == h)
            a->run[k]++;
        else
            a->run[k] = 0;
        if (!found && a->run[k] >= (long)(FR_PROVIDER_MAX_REPEATS - 1) * (long)k)
            found = (int)k;
    }
    a->recent[a->nwords % nk] = h;
    a->nwords++;
    a->in_word = false;
    return found;
}

/* Runs the loop detector over `n` bytes of `s`; returns as end_word. */
static int scan_loops(fr_text_acc *a, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        if (is_word_space((unsigned char)s[i++])) {
            if (a->in_word) {
                int k = end_word(a);
                if (k)
                    return k;
            }
            continue;
        }
        if (!a->in_word) {
            a->in_word = true;
            a->word = FR_FNV1A64_BASIS;
        }
        /* The rest of the word in this chunk, hashed as one span. */
        size_t start = i - 1;
        while (i < n && !is_word_space((unsigned char)s[i]))
            i++;
        a->word = fr_fnv1a64(s + start, i - start, a->word);
    }
    return 0;
}

bool fr_provider_tree_only = false;

void fr_jtext_open(fr_jtext *t, const fr_jval *v, bool cstr)
{
    t->heap = NULL;
    if (!v->escaped && !cstr) {
        t->text = v->s;
        t->len = v->n;
        return;
    }
    char *out = v->n < sizeof t->small ? t->small : (t->heap = fr_xmalloc(v->n + 1));
    t->len = fr_jscan_unescape(v, out);
    t->text = out;
}

void fr_jtext_close(fr_jtext *t)
{
    free(t->heap);
    t->heap = NULL;
}

int fr_text_acc_add(fr_text_acc *a, const char *s, size_t n, char **err_msg)
{
    if (n == 0)
        return FR_OK;
    bool over = a->others > FR_PROVIDER_MAX_REPLY ||
                a->text.len > FR_PROVIDER_MAX_REPLY - a->others ||
                n > FR_PROVIDER_MAX_REPLY - a->others - a->text.len;
    if (over || fr_buf_append(&a->text, s, n) != FR_OK) {
        if (err_msg)
            *err_msg = fr_provider_cap_msg();
        return FR_ETOOBIG;
    }
    int k = a->no_loops ? 0 : scan_loops(a, s, n);
    if (k) {
        if (err_msg) {
            if (k == 1)
                *err_msg = fr_xasprintf("the reply repeats the same word %d times in a row (a "
                                        "model stuck in a loop); it was cut",
                                        FR_PROVIDER_MAX_REPEATS);
            else
                *err_msg = fr_xasprintf("the reply repeats the same %d words %d times in a row "
                                        "(a model stuck in a loop); it was cut",
                                        k, FR_PROVIDER_MAX_REPEATS);
        }
        return FR_EPROTO;
    }
    return FR_OK;
}

unsigned long fr_adapter_progress(const fr_adapter *a)
{
    return a->ops ? a->rd.progress : a->fed;
}

bool fr_adapter_started(const fr_adapter *a)
{
    if (!a->ops)
        return false;
    if (a->ops->started)
        return a->ops->started(a->impl);
    return a->rd.text.text.len > 0 || a->rd.text.others > 0;
}
