/* The tool calls of one reply (toolcall.h). */

#include "providers/toolcall.h"

#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fr_toolcalls_init(fr_toolcalls *t, fr_reader *rd)
{
    memset(t, 0, sizeof *t);
    t->rd = rd;
}

void fr_toolcalls_close(fr_toolcalls *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].id);
        free(t->v[i].name);
        fr_buf_close(&t->v[i].args);
        json_decref(t->v[i].input);
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}

fr_toolcall *fr_toolcalls_find(fr_toolcalls *t, long key)
{
    if (t->n > 0 && t->v[t->n - 1].key == key)
        return &t->v[t->n - 1];
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].key == key)
            return &t->v[i];
    return NULL;
}

int fr_toolcalls_open(fr_toolcalls *t, long key, fr_toolcall **out)
{
    *out = NULL;
    if (t->n >= FR_PROVIDER_MAX_TOOL_CALLS)
        return fr_reader_fail(
            t->rd, FR_EPROTO,
            fr_xasprintf("the reply asks for more than %d tool calls", FR_PROVIDER_MAX_TOOL_CALLS));
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 4;
        t->v = fr_xrealloc(t->v, t->cap * sizeof *t->v);
    }
    fr_toolcall *c = &t->v[t->n++];
    memset(c, 0, sizeof *c);
    c->key = key;
    fr_buf_init(&c->args, 0); /* the shared cap is checked before every append */
    *out = c;
    return FR_OK;
}

void fr_toolcall_names(fr_toolcall *c, const char *id, const char *name)
{
    if (!c->id && id && id[0])
        c->id = fr_xstrdup(id);
    if (!c->name && name && name[0])
        c->name = fr_xstrdup(name);
}

/* Counts `n` more bytes of the reply held as arguments; FR_ETOOBIG (sticky)
 * when text and arguments together pass the cap. */
static int count(fr_toolcalls *t, size_t n)
{
    fr_text_acc *text = &t->rd->text;
    size_t used = text->text.len + text->others;
    if (used > FR_PROVIDER_MAX_REPLY || n > FR_PROVIDER_MAX_REPLY - used)
        return fr_reader_fail(t->rd, FR_ETOOBIG, fr_provider_cap_msg());
    text->others += n;
    return FR_OK;
}

int fr_toolcalls_append(fr_toolcalls *t, fr_toolcall *c, const char *s, size_t n)
{
    if (n == 0)
        return FR_OK;
    int rc = count(t, n);
    if (rc == FR_OK)
        fr_buf_append(&c->args, s, n);
    return rc;
}

int fr_toolcalls_set_input(fr_toolcalls *t, fr_toolcall *c, json_t *input)
{
    int rc = count(t, json_dumpb(input, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY));
    if (rc == FR_OK) {
        json_decref(c->input);
        c->input = json_incref(input);
    }
    return rc;
}

/* Parses `n` bytes of `s` (borrowed) as the arguments: the object, or
 * NULL and *raw (owned) the text when it is not one. */
static json_t *parse_args(const char *s, size_t n, char **raw)
{
    json_t *v = json_loadb(s, n, 0, NULL);
    if (json_is_object(v))
        return v;
    json_decref(v);
    /* Keep the text readable as JSON for the engine: invalid UTF-8
     * becomes U+FFFD as in every other string of the reply. */
    char *copy = fr_xmalloc(n + 1);
    memcpy(copy, s, n);
    copy[n] = '\0';
    json_t *str = fr_provider_json_string(copy);
    free(copy);
    *raw = fr_xstrdup(json_string_value(str));
    json_decref(str);
    return NULL;
}

void fr_toolcall_arguments(const fr_toolcall *c, json_t **args, char **raw)
{
    *args = NULL;
    *raw = NULL;
    if (c->args.len > 0) {
        *args = parse_args(c->args.data, c->args.len, raw);
    } else if (json_is_object(c->input)) {
        *args = json_incref(c->input);
    } else if (json_is_string(c->input)) {
        /* A server that sends the arguments as a JSON string inside. */
        *args = parse_args(json_string_value(c->input), json_string_length(c->input), raw);
    } else if (c->input) {
        *raw = json_dumps(c->input, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!*raw)
            *raw = fr_xstrdup("");
    } else {
        *args = fr_provider_must(json_object());
    }
}

int fr_toolcalls_json(const fr_toolcalls *t, const fr_toolcall *skip, const char *proto,
                      json_t **out, fr_error *err)
{
    *out = NULL;
    json_t *calls = fr_provider_must(json_array());
    for (size_t i = 0; i < t->n; i++) {
        const fr_toolcall *c = &t->v[i];
        if (c == skip)
            continue;
        if (!c->name) {
            json_decref(calls);
            return fr_error_set(err, FR_EPROTO, proto, 0, "tool call %zu of the reply has no name",
                                i + 1);
        }
        json_t *args;
        char *raw;
        fr_toolcall_arguments(c, &args, &raw);
        char made[32];
        snprintf(made, sizeof made, "call_%zu", i);
        json_t *call = fr_provider_must(
            json_pack("{s:o,s:o,s:o}", "id", fr_provider_json_string(c->id ? c->id : made), "name",
                      fr_provider_json_string(c->name), "arguments", args ? args : json_null()));
        if (raw)
            json_object_set_new(call, "raw_arguments", fr_provider_json_string(raw));
        free(raw);
        json_array_append_new(calls, call);
    }
    *out = calls;
    return FR_OK;
}

int fr_gathering_reply(fr_gathering *g, const char *proto, fr_finish f, fr_reply *out,
                       fr_error *err)
{
    if (g->tool_calls && fr_finish_is_answer(f))
        f = FR_FINISH_TOOL_CALL;
    if (f == FR_FINISH_TOOL_CALL && g->offers && g->calls.n > 0) {
        int rc = fr_toolcalls_json(&g->calls, NULL, proto, &out->tool_calls, err);
        if (rc != FR_OK)
            return rc;
    }
    return fr_reader_reply(g->rd, g->call, f, out, err);
}

void *fr_gathering_new(size_t size, const fr_call *call, fr_reader *rd)
{
    fr_gathering *g = fr_xcalloc(1, size);
    g->call = call;
    g->rd = rd;
    g->offers = fr_provider_offers_tools(call);
    fr_toolcalls_init(&g->calls, rd);
    return g;
}

void fr_gathering_free(void *self)
{
    fr_gathering *g = self;
    fr_toolcalls_close(&g->calls);
    free(g);
}
