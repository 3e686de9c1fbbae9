/* flowrun-sim: the tool script. Reads the `@@call` and `@@forever` lines of
 * a conversation's first user message, the tools the request offers and the
 * calls and results the conversation already holds (OpenAI and Ollama
 * tool_calls and role "tool" messages, Anthropic tool_use and tool_result
 * blocks), and decides what a turn plays: the next calls, or the final
 * answer quoting every tool result. sim_proto.c writes the calls. */

#include "engine/sim/sim_int.h"

#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CALL_PREFIX    "@@call"
#define FOREVER_PREFIX "@@forever"
#define WIRE_MAX       64 /* what OpenAI and Anthropic accept of a tool name */
#define HASH_HEX       6

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool is_wire_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* ---- reading the script ------------------------------------------------------ */

/* Reads one `NAME {json args}` at p[0..n) into `line` (an array of
 * {"name", "args"}, args as text). Returns the bytes used, or 0 with `msg`
 * filled. */
static size_t read_call(const char *p, size_t n, json_t *line, char *msg, size_t msg_size)
{
    size_t i = 0;
    while (i < n && is_space(p[i]))
        i++;
    size_t name_at = i;
    while (i < n && !is_space(p[i]) && p[i] != '{' && p[i] != '[' && p[i] != '|')
        i++;
    if (i == name_at) {
        snprintf(msg, msg_size, "Tool script: a call without a tool name in '%.*s'.",
                 (int)(n > 80 ? 80 : n), p);
        return 0;
    }
    char *name = fr_xstrndup(p + name_at, i - name_at);
    while (i < n && is_space(p[i]))
        i++;
    char *args = NULL;
    if (i < n && (p[i] == '{' || p[i] == '[')) {
        json_error_t jerr;
        json_t *v = json_loadb(p + i, n - i, JSON_DISABLE_EOF_CHECK, &jerr);
        if (v) {
            args = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(15));
            i += (size_t)jerr.position;
            json_decref(v);
        } else { /* arguments that are not JSON go out as written, up to the next '|' */
            size_t at = i;
            while (i < n && p[i] != '|')
                i++;
            size_t end = i;
            while (end > at && is_space(p[end - 1]))
                end--;
            args = fr_xstrndup(p + at, end - at);
        }
    }
    if (!args)
        args = fr_xstrdup("{}");
    json_array_append_new(line, json_pack("{s:s,s:s}", "name", name, "args", args));
    free(name);
    free(args);
    while (i < n && is_space(p[i]))
        i++;
    if (i < n && p[i] != '|') {
        snprintf(msg, msg_size, "Tool script: '|' or the end of the line expected at '%.*s'.",
                 (int)(n - i > 40 ? 40 : n - i), p + i);
        return 0;
    }
    return i;
}

/* Reads the calls of one script line p[0..n) ("a {..} | b {..}") into a new
 * array (owned), or returns NULL with `msg` filled. */
static json_t *read_line(const char *p, size_t n, char *msg, size_t msg_size)
{
    json_t *line = json_array();
    size_t i = 0;
    for (;;) {
        size_t used = read_call(p + i, n - i, line, msg, msg_size);
        if (used == 0) {
            json_decref(line);
            return NULL;
        }
        i += used;
        if (i >= n)
            return line;
        i++; /* the '|' */
    }
}

/* Returns the text after `prefix` when the line starts with it (after
 * blanks) and a blank or the end follows; NULL otherwise. */
static const char *after_prefix(const char *p, const char *end, const char *prefix)
{
    while (p < end && is_space(*p))
        p++;
    size_t plen = strlen(prefix);
    if ((size_t)(end - p) < plen || memcmp(p, prefix, plen) != 0)
        return NULL;
    p += plen;
    return p == end || is_space(*p) ? p : NULL;
}

/* The script of the first user message: `calls` gets one array per @@call
 * line, `forever` the call of the last @@forever line (or stays NULL).
 * Returns false with `msg` filled when a line does not parse. */
static bool read_script(const json_t *messages, json_t *calls, json_t **forever, char *msg,
                        size_t msg_size)
{
    const json_t *first = NULL;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0 && !fr_sim_is_tool_result(m)) {
            first = m;
            break;
        }
    }
    if (!first)
        return true;
    fr_buf text;
    fr_buf_init(&text, 0);
    fr_sim_content_text(json_object_get(first, "content"), &text);
    bool ok = true;
    const char *p = fr_buf_str(&text), *end = p + text.len;
    while (ok && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        const char *rest;
        json_t *line = NULL;
        if ((rest = after_prefix(p, line_end, CALL_PREFIX))) {
            ok = (line = read_line(rest, (size_t)(line_end - rest), msg, msg_size)) != NULL;
            if (ok)
                json_array_append_new(calls, line);
        } else if ((rest = after_prefix(p, line_end, FOREVER_PREFIX))) {
            ok = (line = read_line(rest, (size_t)(line_end - rest), msg, msg_size)) != NULL;
            if (ok && json_array_size(line) != 1) {
                snprintf(msg, msg_size, "Tool script: @@forever takes one call.");
                ok = false;
            }
            if (ok) {
                json_decref(*forever);
                *forever = json_incref(json_array_get(line, 0));
            }
            json_decref(line);
        }
        p = eol ? eol + 1 : end;
    }
    fr_buf_close(&text);
    return ok;
}

/* ---- the conversation -------------------------------------------------------- */

/* Whether the content of a message holds a block of `type`. */
static bool has_block(const json_t *content, const char *type)
{
    size_t i;
    const json_t *b;
    json_array_foreach(content, i, b)
    {
        const char *t = json_string_value(json_object_get(b, "type"));
        if (t && strcmp(t, type) == 0)
            return true;
    }
    return false;
}

/* True for a tool_result message; see sim_int.h. */
bool fr_sim_is_tool_result(const json_t *msg)
{
    const char *role = json_string_value(json_object_get(msg, "role"));
    return role && strcmp(role, "user") == 0 &&
           has_block(json_object_get(msg, "content"), "tool_result");
}

static size_t json_bytes(const json_t *v)
{
    if (json_is_string(v))
        return json_string_length(v);
    if (!v)
        return 0;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    size_t n = text ? strlen(text) : 0;
    free(text);
    return n;
}

/* The input bytes of tool calls and results; see sim_int.h. */
size_t fr_sim_tools_bytes(const json_t *msg)
{
    size_t n = 0, i;
    const json_t *c;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, c)
    {
        const json_t *fn = json_object_get(c, "function");
        n += json_bytes(json_object_get(fn, "name")) + json_bytes(json_object_get(fn, "arguments"));
    }
    const json_t *content = json_object_get(msg, "content");
    if (!json_is_array(content))
        return n;
    json_array_foreach(content, i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        if (type && strcmp(type, "tool_use") == 0)
            n += json_bytes(json_object_get(c, "name")) + json_bytes(json_object_get(c, "input"));
        else if (type && strcmp(type, "tool_result") == 0)
            n += fr_sim_content_text(json_object_get(c, "content"), NULL);
    }
    return n;
}

/* What the conversation holds: the turns that called tools, the name of
 * every call by id, and the results in order. */
typedef struct history {
    size_t turns;
    json_t *names;   /* {"<id>": "<name>"} */
    json_t *results; /* [{"name", "text", "error"}] */
} history;

static void add_result(history *h, const char *id, const char *name, const json_t *content,
                       bool error)
{
    const char *known = id ? json_string_value(json_object_get(h->names, id)) : NULL;
    const char *shown = known ? known : name ? name : id ? id : "tool";
    fr_buf text;
    fr_buf_init(&text, 0);
    fr_sim_content_text(content, &text);
    json_array_append_new(h->results, json_pack("{s:s,s:s%,s:b}", "name", shown, "text",
                                                fr_buf_str(&text), text.len, "error", error));
    fr_buf_close(&text);
}

/* Reads the calls and results of every message, whatever the protocol:
 * the shapes of the three do not clash. */
static void read_history(const json_t *messages, history *h)
{
    size_t i, j;
    const json_t *m, *c;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!role)
            continue;
        if (strcmp(role, "assistant") == 0) {
            const json_t *calls = json_object_get(m, "tool_calls");
            bool called = json_array_size(calls) > 0 || has_block(content, "tool_use");
            json_array_foreach(calls, j, c)
            {
                const char *id = json_string_value(json_object_get(c, "id"));
                const json_t *name = json_object_get(json_object_get(c, "function"), "name");
                if (id && json_is_string(name))
                    json_object_set(h->names, id, (json_t *)name);
            }
            json_array_foreach(content, j, c)
            {
                const char *type = json_string_value(json_object_get(c, "type"));
                const char *id = json_string_value(json_object_get(c, "id"));
                const json_t *name = json_object_get(c, "name");
                if (type && strcmp(type, "tool_use") == 0 && id && json_is_string(name))
                    json_object_set(h->names, id, (json_t *)name);
            }
            h->turns += called;
        } else if (strcmp(role, "tool") == 0) {
            const char *name = json_string_value(json_object_get(m, "tool_name"));
            if (!name)
                name = json_string_value(json_object_get(m, "name"));
            add_result(h, json_string_value(json_object_get(m, "tool_call_id")), name, content,
                       json_is_true(json_object_get(m, "is_error")));
        } else if (strcmp(role, "user") == 0 && json_is_array(content)) {
            json_array_foreach(content, j, c)
            {
                const char *type = json_string_value(json_object_get(c, "type"));
                if (type && strcmp(type, "tool_result") == 0)
                    add_result(h, json_string_value(json_object_get(c, "tool_use_id")), NULL,
                               json_object_get(c, "content"),
                               json_is_true(json_object_get(c, "is_error")));
            }
        }
    }
}

/* ---- names ----------------------------------------------------------------- */

/* Whether `w` (an offered name) is `base` cut to fit, "_" and 6 hex digits. */
static bool is_hashed_form(const char *w, const char *base)
{
    size_t wl = strlen(w);
    if (wl < HASH_HEX + 2 || w[wl - HASH_HEX - 1] != '_')
        return false;
    size_t plen = wl - HASH_HEX - 1;
    if (plen > strlen(base) || strncmp(w, base, plen) != 0)
        return false;
    if (plen < strlen(base) && plen != WIRE_MAX - HASH_HEX - 1)
        return false; /* only a name cut to fit may be shorter than its base */
    for (size_t i = plen + 1; i < wl; i++)
        if (!strchr("0123456789abcdef", w[i]))
            return false;
    return true;
}

/* Returns the wire name NAME is sent as (borrowed from `offered` or `name`):
 * an offered name equal to it, else equal to its wire form (characters
 * outside [A-Za-z0-9_-] made '_', cut to 64), else that form with the "_" +
 * 6 hex of its FNV-1a a collision or a cut adds (the low or the high 24
 * bits), else NAME as it is. */
static const char *resolve(const char *name, const json_t *offered)
{
    size_t i;
    const json_t *o;
    json_array_foreach(offered, i, o)
    {
        if (strcmp(json_string_value(o), name) == 0)
            return json_string_value(o);
    }
    char base[WIRE_MAX + 1];
    size_t n = strlen(name);
    size_t k;
    for (k = 0; k < n && k < WIRE_MAX; k++)
        base[k] = is_wire_char(name[k]) ? name[k] : '_';
    base[k] = '\0';
    if (n <= WIRE_MAX) {
        json_array_foreach(offered, i, o)
        {
            if (strcmp(json_string_value(o), base) == 0)
                return json_string_value(o);
        }
    }
    uint64_t h = fr_fnv1a64(name, n, FR_FNV1A64_BASIS);
    char lo[HASH_HEX + 1], hi[HASH_HEX + 1];
    snprintf(lo, sizeof lo, "%06x", (unsigned)(h & 0xffffff));
    snprintf(hi, sizeof hi, "%06x", (unsigned)(h >> 40));
    const char *hashed = NULL;
    json_array_foreach(offered, i, o)
    {
        const char *w = json_string_value(o);
        if (!is_hashed_form(w, base))
            continue;
        const char *hex = w + strlen(w) - HASH_HEX;
        if (strcmp(hex, lo) == 0 || strcmp(hex, hi) == 0)
            return w;
        hashed = hashed ? "" : w; /* one candidate whose hash is not ours: take it */
    }
    return hashed && *hashed ? hashed : name;
}

/* The names the request offers (borrowed strings in a new array). */
static json_t *offered_names(const json_t *tools)
{
    json_t *names = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *name = json_object_get(json_object_get(t, "function"), "name");
        if (!json_is_string(name))
            name = json_object_get(t, "name");
        if (json_is_string(name))
            json_array_append(names, name);
    }
    return names;
}

/* ---- the turn ---------------------------------------------------------------- */

void fr_sim_calls_free(fr_sim_call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(calls[i].id);
        free(calls[i].name);
        free(calls[i].args);
    }
    free(calls);
}

/* Frees what `t` owns; see sim_int.h. */
void fr_sim_turn_close(fr_sim_turn *t)
{
    fr_sim_calls_free(t->calls, t->ncalls);
    free(t->text);
    memset(t, 0, sizeof *t);
}

static void make_calls(fr_sim_turn *t, const json_t *line, const json_t *offered, size_t turn,
                       fr_sim_proto proto)
{
    t->ncalls = json_array_size(line);
    t->calls = fr_xcalloc(t->ncalls, sizeof *t->calls);
    for (size_t i = 0; i < t->ncalls; i++) {
        const json_t *c = json_array_get(line, i);
        fr_sim_call *call = &t->calls[i];
        call->id = fr_xasprintf("%s_%zu_%zu", proto == FR_SIM_ANTHROPIC ? "toolu_sim" : "call",
                                turn + 1, i);
        call->name = fr_xstrdup(resolve(json_string_value(json_object_get(c, "name")), offered));
        call->args = fr_xstrdup(json_string_value(json_object_get(c, "args")));
        call->len = strlen(call->args);
        long words;
        fr_sim_scan_words(call->args, call->len, 0, LONG_MAX, &words);
        call->tokens = 1 + words;
    }
}

/* The final answer: a first line, then `tool <name>: <text>` (or
 * `tool <name> error: <text>`) per result, in order. */
static char *final_text(const char *model, const json_t *results)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out, "%s read %zu tool result%s.", model, json_array_size(results),
                  json_array_size(results) == 1 ? "" : "s");
    size_t i;
    const json_t *r;
    json_array_foreach(results, i, r)
    {
        fr_buf_printf(&out, "\ntool %s%s: %s", json_string_value(json_object_get(r, "name")),
                      json_is_true(json_object_get(r, "error")) ? " error" : "",
                      json_string_value(json_object_get(r, "text")));
    }
    return fr_buf_take(&out);
}

/* Reads the tool script of a request; see sim_int.h. */
int fr_sim_tools_turn(const fr_sim_req *q, fr_sim_proto proto, fr_sim_turn *t, char *msg,
                      size_t msg_size)
{
    memset(t, 0, sizeof *t);
    json_t *lines = json_array();
    json_t *forever = NULL;
    int rc = 0;
    history h = {0, json_object(), json_array()};
    json_t *offered = NULL;
    if (!read_script(q->messages, lines, &forever, msg, msg_size)) {
        rc = 400;
        goto cleanup;
    }
    if (json_array_size(lines) == 0 && !forever)
        goto cleanup;
    t->scripted = true;
    read_history(q->messages, &h);
    offered = offered_names(q->tools);
    const json_t *line = h.turns < json_array_size(lines) ? json_array_get(lines, h.turns) : NULL;
    json_t *one = forever ? json_pack("[O]", forever) : NULL;
    if (!line)
        line = one;
    if (line)
        make_calls(t, line, offered, h.turns, proto);
    else
        t->text = final_text(q->model, h.results);
    json_decref(one);
cleanup:
    json_decref(offered);
    json_decref(h.names);
    json_decref(h.results);
    json_decref(forever);
    json_decref(lines);
    return rc;
}
