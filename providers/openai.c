#include "providers/openai.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/provider_int.h"
#include "providers/toolcall.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROTO "openai"

typedef struct oai {
    fr_gathering g; /* first: the call, the reader, the tool calls */
    bool refused;   /* the reply carried a `refusal` */
} oai;

/* Records a failure of the stream (takes `msg_owned`). At its end, a last
 * event cut short ends as a truncated stream unless the server said why
 * (`server`). Returns the code that stops the framer. */
static int fail(oai *o, int rc, char *msg_owned, bool server)
{
    if (o->g.rd->at_end && !server) {
        free(msg_owned);
        return rc;
    }
    return fr_reader_fail(o->g.rd, rc, msg_owned);
}

static void *oai_create(const fr_call *call, fr_reader *rd)
{
    return fr_gathering_new(sizeof(oai), call, rd);
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

/* Writes the chat.completions members of the call `self` (borrowed) into
 * `w`. max_tokens <= 0 and a negative temperature are left out, so the
 * server's defaults apply; the seed is sent only when the task set one. */
static void add_members(const void *self, fr_jsonw *w)
{
    const fr_call *c = self;
    if (c->max_tokens > 0)
        fr_jsonw_int_k(w,
                       c->max_completion_tokens ? FR_JSONW_KEY("max_completion_tokens")
                                                : FR_JSONW_KEY("max_tokens"),
                       c->max_tokens); /* limit_field's name */
    if (c->temperature >= 0)
        fr_jsonw_real_k(w, FR_JSONW_KEY("temperature"), c->temperature);
    if (c->has_seed)
        fr_jsonw_int_k(w, FR_JSONW_KEY("seed"), c->seed);
    if (c->stream) {
        fr_jsonw_object_k(w, FR_JSONW_KEY("stream_options"));
        fr_jsonw_bool_k(w, FR_JSONW_KEY("include_usage"), true);
        fr_jsonw_close(w);
    }
    if (c->schema) {
        fr_jsonw_object(w, "response_format");
        if (json_is_string(c->schema)) {
            fr_jsonw_str(w, "type", "json_object");
        } else {
            fr_jsonw_str(w, "type", "json_schema");
            fr_jsonw_object(w, "json_schema");
            fr_jsonw_str(w, "name", "output");
            fr_jsonw_value(w, "schema", c->schema);
            fr_jsonw_bool(w, "strict", strict_ok(c->schema));
            fr_jsonw_close(w);
        }
        fr_jsonw_close(w);
    }
    if (fr_provider_offers_tools(c))
        fr_provider_write_tree(w, "tools", fr_provider_function_tools(c));
}

/* Returns the arguments of a neutral tool call (borrowed) as the JSON text
 * chat.completions carries (owned): the object serialised, else the text
 * the model sent when it was not one. */
static json_t *arguments_text(const json_t *tc)
{
    const json_t *args = json_object_get(tc, "arguments");
    if (json_is_object(args)) {
        char *s = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!s) {
            fprintf(stderr, "flowrun: out of memory (building a request)\n");
            abort();
        }
        json_t *v = fr_provider_json_string(s);
        free(s);
        return v;
    }
    const char *raw = json_string_value(json_object_get(tc, "raw_arguments"));
    return fr_provider_json_string(raw ? raw : "{}");
}

/* A neutral tool call (borrowed) as chat.completions takes it (owned). */
static json_t *wire_call(const json_t *tc)
{
    return fr_provider_must(json_pack(
        "{s:O,s:s,s:{s:O,s:o}}", "id", json_object_get(tc, "id"), "type", "function", "function",
        "name", json_object_get(tc, "name"), "arguments", arguments_text(tc)));
}

/* Appends the neutral message `m` (borrowed) to `msgs` as chat.completions
 * takes it (the request spec's add_message; `self` is the call): an
 * assistant turn's calls as tool_calls with their arguments as a JSON
 * string, a tool result as a `tool` message answering its tool_call_id. */
static void add_message(const void *self, json_t *msgs, const json_t *m)
{
    (void)self;
    const char *role = json_string_value(json_object_get(m, "role"));
    const char *content = json_string_value(json_object_get(m, "content"));
    json_t *out = fr_provider_must(json_pack("{s:s}", "role", role));
    if (strcmp(role, "tool") == 0) {
        json_object_set_new(out, "tool_call_id", json_incref(json_object_get(m, "tool_call_id")));
        json_object_set_new(out, "content", fr_provider_json_string(content));
        json_array_append_new(msgs, out);
        return;
    }
    const json_t *calls = json_object_get(m, "tool_calls");
    bool has_calls = strcmp(role, "assistant") == 0 && json_array_size(calls) > 0;
    /* An assistant turn that only called tools has null content. */
    json_object_set_new(out, "content",
                        has_calls && (!content || !content[0]) ? json_null()
                                                               : fr_provider_json_string(content));
    if (has_calls) {
        json_object_set_new(
            out, "tool_calls",
            fr_provider_append_calls(fr_provider_must(json_array()), calls, wire_call));
    }
    json_array_append_new(msgs, out);
}

static const fr_request_spec SPEC = {
    .path = "/chat/completions",
    .accept = "text/event-stream",
    .auth = "Authorization: Bearer ",
    .add_members = add_members,
    .add_message = add_message,
};

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

/* Fails the reply (sticky FR_EPROTO) with `msg_owned`. */
static int bad_piece(oai *o, char *msg_owned)
{
    return fail(o, FR_EPROTO, msg_owned, false);
}

/* Reads one tool call of a whole message (`whole`) or one piece of a
 * stream's: `index` (borrowed, may be NULL), `id` (may be NULL) and the
 * `function` object (borrowed) with its name and its arguments, text
 * pieces to join or an object. A stream's pieces are keyed by index, which
 * runs 0, 1, ... as calls start; a server that sends none (Ollama's /v1)
 * starts a call with every new id and continues the last one otherwise. */
static int read_piece(oai *o, json_t *index, const char *id, json_t *fn, bool whole)
{
    fr_toolcalls *t = &o->g.calls;
    fr_toolcall *c = NULL;
    int rc = FR_OK;
    fr_toolcall *last = t->n ? &t->v[t->n - 1] : NULL;
    if (json_is_null(index))
        index = NULL;
    if (!whole && index) {
        if (!json_is_integer(index))
            return bad_piece(o, fr_xstrdup("a tool call piece has an index that is not a whole "
                                           "number"));
        json_int_t k = json_integer_value(index);
        if (k < 0 || k > (json_int_t)t->n)
            return bad_piece(o, fr_xasprintf("a tool call piece has index %lld, but %zu calls "
                                             "have started (indices run 0, 1, ...)",
                                             (long long)k, t->n));
        c = fr_toolcalls_find(t, (long)k);
    } else if (!whole && last && !(id && id[0] && last->id && strcmp(last->id, id) != 0)) {
        c = last;
    }
    if (!c)
        rc = fr_toolcalls_open(t, (long)t->n, &c);
    if (rc != FR_OK)
        return rc;
    fr_toolcall_names(c, id, json_string_value(json_object_get(fn, "name")));
    json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args))
        return fr_toolcalls_append(t, c, json_string_value(args), json_string_length(args));
    if (args && !json_is_null(args))
        return fr_toolcalls_set_input(t, c, args); /* some servers send an object */
    return FR_OK;
}

/* Reads the tool calls of a message or a delta (borrowed) when the call
 * offers tools: tool_calls, or the legacy function_call. */
static int read_tool_calls(oai *o, json_t *msg, bool whole)
{
    json_t *calls = json_object_get(msg, "tool_calls");
    size_t i;
    json_t *p;
    json_array_foreach(calls, i, p)
    {
        if (!json_is_object(p))
            return bad_piece(o, fr_xstrdup("a tool call in the reply is not an object"));
        int rc =
            read_piece(o, json_object_get(p, "index"), json_string_value(json_object_get(p, "id")),
                       json_object_get(p, "function"), whole);
        if (rc != FR_OK)
            return rc;
    }
    json_t *fc = json_object_get(msg, "function_call");
    return json_is_object(fc) ? read_piece(o, NULL, NULL, fc, whole) : FR_OK;
}

/* Reads what a message or a delta (borrowed) carries besides its content:
 * a refusal, tool calls, reasoning. A whole message's tool calls are
 * `whole`; a delta's are pieces. Returns FR_OK or the sticky error. */
static int read_extras(oai *o, json_t *msg, bool whole)
{
    if (nonempty_string(json_object_get(msg, "refusal")))
        o->refused = true;
    json_t *calls = json_object_get(msg, "tool_calls");
    if (json_array_size(calls) > 0 || json_is_object(json_object_get(msg, "function_call")))
        o->g.tool_calls = true;
    if (nonempty_string(json_object_get(msg, "reasoning_content")) ||
        nonempty_string(json_object_get(msg, "reasoning")))
        o->g.rd->reasoned = true;
    return o->g.offers ? read_tool_calls(o, msg, whole) : FR_OK;
}

/* Reads what every chat.completion(.chunk) may carry: model, usage and the
 * finish reason of the first choice. */
static void read_common(oai *o, json_t *obj, json_t *choice)
{
    fr_reader *rd = o->g.rd;
    fr_reader_model(rd, json_string_value(json_object_get(obj, "model")));
    json_t *usage = json_object_get(obj, "usage");
    if (!json_is_object(usage)) /* Groq's older streams: only under x_groq */
        usage = json_object_get(json_object_get(obj, "x_groq"), "usage");
    if (json_is_object(usage)) {
        /* Later chunks win: servers that repeat usage send running totals. */
        rd->usage.input = int_field(usage, "prompt_tokens");
        rd->usage.output = int_field(usage, "completion_tokens");
        json_t *details = json_object_get(usage, "prompt_tokens_details");
        /* DeepSeek counts cache hits in its own field (within prompt_tokens). */
        rd->usage.cached = json_is_object(details) && json_object_get(details, "cached_tokens")
                               ? int_field(details, "cached_tokens")
                               : int_field(usage, "prompt_cache_hit_tokens");
        rd->have_usage = true;
    }
    fr_reader_finish_reason(rd, json_string_value(json_object_get(choice, "finish_reason")));
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

/* ---- the common chunk, read without a tree ----
 *
 * A chat.completion.chunk of text, a finish reason or usage is read with
 * the path scanner (engine/util/jscan.h); anything else it carries (an
 * error, tool calls, a real number where a count goes, a key named twice,
 * an escaped key, a text the scanner is not sure of) sends the event to
 * json_loadb and the tree code below, which decides as it always did. */

typedef struct scan_usage {
    bool object; /* the member was an object */
    long input, output, cached, hit;
    bool has_cached; /* prompt_tokens_details.cached_tokens is there */
} scan_usage;

typedef struct scan_delta {
    fr_jval content; /* FR_JSTRING, else no text */
    bool refusal, reasoned;
} scan_delta;

typedef struct scan_chunk {
    bool has_choice;  /* the first choice (as first_choice picks it) is an object */
    bool choice_done; /* first_choice has decided (an object picked, or NULL) */
    scan_delta delta;
    fr_jval finish, model;
    scan_usage usage, groq;
} scan_chunk;

/* Marks member `bit` of `*seen` read; false (a key named twice) sends the
 * event to the tree code, where the last one wins. */
static bool once(unsigned *seen, unsigned bit)
{
    if (*seen & bit)
        return false;
    *seen |= bit;
    return true;
}

/* Reads a count as int_field does; a real sends the event to the tree code. */
static bool scan_count(fr_jscan *s, long *out)
{
    fr_jval v;
    if (!fr_jscan_value(s, &v) || v.kind == FR_JREAL)
        return false;
    fr_jscan_skip(s, &v);
    *out = v.kind == FR_JINT ? (long)v.i : 0;
    return true;
}

/* Reads the usage object just opened into *u. */
static bool scan_usage_obj(fr_jscan *s, scan_usage *u)
{
    fr_jval k, v;
    unsigned seen = 0;
    u->object = true;
    while (fr_jscan_member(s, &k)) {
        bool ok = true;
        if (fr_jscan_is(&k, "prompt_tokens"))
            ok = once(&seen, 1) && scan_count(s, &u->input);
        else if (fr_jscan_is(&k, "completion_tokens"))
            ok = once(&seen, 2) && scan_count(s, &u->output);
        else if (fr_jscan_is(&k, "prompt_cache_hit_tokens"))
            ok = once(&seen, 4) && scan_count(s, &u->hit);
        else if (fr_jscan_is(&k, "prompt_tokens_details")) {
            ok = once(&seen, 8) && fr_jscan_value(s, &v);
            if (ok && v.kind == FR_JOBJECT) {
                unsigned dseen = 0;
                while (ok && fr_jscan_member(s, &k)) {
                    if (fr_jscan_is(&k, "cached_tokens")) {
                        u->has_cached = true;
                        ok = once(&dseen, 1) && scan_count(s, &u->cached);
                    } else if (fr_jscan_value(s, &v)) {
                        fr_jscan_skip(s, &v);
                    }
                }
            } else if (ok) {
                fr_jscan_skip(s, &v);
            }
        } else if (fr_jscan_value(s, &v)) {
            fr_jscan_skip(s, &v);
        }
        if (!ok)
            return false;
    }
    return !s->bad;
}

/* Reads the value of a member that may be a usage object. */
static bool scan_usage_member(fr_jscan *s, scan_usage *u)
{
    fr_jval v;
    if (!fr_jscan_value(s, &v))
        return false;
    if (v.kind == FR_JOBJECT)
        return scan_usage_obj(s, u);
    fr_jscan_skip(s, &v);
    return true;
}

/* Reads a choice's delta object just opened into *d. */
static bool scan_delta_obj(fr_jscan *s, scan_delta *d)
{
    fr_jval k, v;
    unsigned seen = 0;
    while (fr_jscan_member(s, &k)) {
        unsigned bit = 0;
        if (fr_jscan_is(&k, "content"))
            bit = 1;
        else if (fr_jscan_is(&k, "refusal"))
            bit = 2;
        else if (fr_jscan_is(&k, "reasoning_content") || fr_jscan_is(&k, "reasoning"))
            bit = fr_jscan_is(&k, "reasoning") ? 4 : 8;
        else if (fr_jscan_is(&k, "tool_calls") || fr_jscan_is(&k, "function_call"))
            bit = fr_jscan_is(&k, "tool_calls") ? 16 : 32;
        if (bit && !once(&seen, bit))
            return false;
        if (!fr_jscan_value(s, &v))
            return false;
        if (bit == 1)
            d->content = v;
        else if ((bit == 2 || bit == 4 || bit == 8) && v.kind == FR_JSTRING && v.n > 0)
            *(bit == 2 ? &d->refusal : &d->reasoned) = true;
        else if (bit == 16 && v.kind == FR_JARRAY && fr_jscan_element(s))
            return false; /* tool call pieces: the tree code reads them */
        else if (bit == 32 && v.kind == FR_JOBJECT)
            return false;
        fr_jscan_skip(s, &v);
    }
    return !s->bad;
}

/* Reads one element of choices[] (just opened, an object); *picked says
 * whether first_choice would pick it (no index, or one that is not a
 * nonzero whole number). */
static bool scan_choice_obj(fr_jscan *s, scan_chunk *c, bool *picked)
{
    fr_jval k, v;
    unsigned seen = 0;
    scan_delta d = {{FR_JNONE, NULL, 0, false, 0}, false, false};
    fr_jval finish = {FR_JNONE, NULL, 0, false, 0};
    *picked = true;
    while (fr_jscan_member(s, &k)) {
        unsigned bit = fr_jscan_is(&k, "index")           ? 1
                       : fr_jscan_is(&k, "delta")         ? 2
                       : fr_jscan_is(&k, "finish_reason") ? 4
                                                          : 0;
        if ((bit && !once(&seen, bit)) || !fr_jscan_value(s, &v))
            return false;
        if (bit == 1)
            *picked = !(v.kind == FR_JINT && v.i != 0);
        else if (bit == 2 && v.kind == FR_JOBJECT) {
            if (!scan_delta_obj(s, &d))
                return false;
            continue;
        } else if (bit == 4)
            finish = v;
        fr_jscan_skip(s, &v);
    }
    if (*picked) {
        c->delta = d;
        c->finish = finish;
    }
    return !s->bad;
}

/* Reads the choices array just opened. */
static bool scan_choices(fr_jscan *s, scan_chunk *c)
{
    fr_jval v;
    while (fr_jscan_element(s)) {
        if (!fr_jscan_value(s, &v))
            return false;
        if (c->choice_done || v.kind != FR_JOBJECT) {
            c->choice_done = true; /* first_choice stops at a non-object */
            fr_jscan_skip(s, &v);
            continue;
        }
        bool picked;
        if (!scan_choice_obj(s, c, &picked))
            return false;
        c->has_choice = c->choice_done = picked;
    }
    return !s->bad;
}

/* Scans a chunk's text `data` into *c; false sends it to the tree code. */
static bool scan_chunk_text(const char *data, size_t n, scan_chunk *c)
{
    fr_jscan s;
    fr_jval k, v;
    unsigned seen = 0;
    if (!fr_jscan_object(&s, data, n))
        return false;
    while (fr_jscan_member(&s, &k)) {
        bool ok = true;
        if (fr_jscan_is(&k, "error")) {
            return false;
        } else if (fr_jscan_is(&k, "choices")) {
            ok = once(&seen, 1) && fr_jscan_value(&s, &v);
            if (ok && v.kind == FR_JARRAY)
                ok = scan_choices(&s, c);
            else if (ok)
                fr_jscan_skip(&s, &v);
        } else if (fr_jscan_is(&k, "model")) {
            ok = once(&seen, 2) && fr_jscan_value(&s, &c->model);
            fr_jscan_skip(&s, &c->model);
        } else if (fr_jscan_is(&k, "usage")) {
            ok = once(&seen, 4) && scan_usage_member(&s, &c->usage);
        } else if (fr_jscan_is(&k, "x_groq")) {
            ok = once(&seen, 8) && fr_jscan_value(&s, &v);
            unsigned gseen = 0;
            while (ok && v.kind == FR_JOBJECT && fr_jscan_member(&s, &k)) {
                if (fr_jscan_is(&k, "usage")) {
                    ok = once(&gseen, 1) && scan_usage_member(&s, &c->groq);
                } else {
                    fr_jval x;
                    if (fr_jscan_value(&s, &x))
                        fr_jscan_skip(&s, &x);
                }
            }
            if (ok && v.kind != FR_JOBJECT)
                fr_jscan_skip(&s, &v);
        } else if (fr_jscan_value(&s, &v)) {
            fr_jscan_skip(&s, &v);
        }
        if (!ok)
            return false;
    }
    return fr_jscan_done(&s);
}

/* Calls `use(rd, text)` with the string `v` (borrowed) decoded and
 * NUL-terminated, or with NULL when it is not a string. */
static void with_string(fr_reader *rd, const fr_jval *v, void (*use)(fr_reader *, const char *))
{
    if (v->kind != FR_JSTRING) {
        use(rd, NULL);
        return;
    }
    fr_jtext t;
    fr_jtext_open(&t, v, true);
    use(rd, t.text);
    fr_jtext_close(&t);
}

/* Whether `v` (borrowed) is the model the reader holds already (every chunk
 * names it): then fr_reader_model would keep its copy, and the string need
 * not be decoded to learn that. */
static bool same_model(const fr_reader *rd, const fr_jval *v)
{
    return rd->model && v->kind == FR_JSTRING && !v->escaped && strlen(rd->model) == v->n &&
           memcmp(rd->model, v->s, v->n) == 0;
}

/* Applies a scanned chunk as the tree code would: read_extras (no tool
 * calls here), the text, then read_common. */
static int apply_chunk(oai *o, const scan_chunk *c)
{
    fr_reader *rd = o->g.rd;
    rd->parsed++;
    if (c->has_choice && c->delta.refusal)
        o->refused = true;
    if (c->has_choice && c->delta.reasoned)
        rd->reasoned = true;
    if (c->has_choice && c->delta.content.kind == FR_JSTRING && c->delta.content.n > 0) {
        fr_jtext t;
        fr_jtext_open(&t, &c->delta.content, false);
        char *msg = NULL;
        int arc = fr_text_acc_add(&rd->text, t.text, t.len, &msg);
        fr_jtext_close(&t);
        if (arc != FR_OK)
            return fail(o, arc, msg, false);
    }
    if (!same_model(rd, &c->model))
        with_string(rd, &c->model, fr_reader_model);
    const scan_usage *u = c->usage.object ? &c->usage : c->groq.object ? &c->groq : NULL;
    if (u) {
        rd->usage.input = u->input;
        rd->usage.output = u->output;
        rd->usage.cached = u->has_cached ? u->cached : u->hit;
        rd->have_usage = true;
    }
    if (c->has_choice)
        with_string(rd, &c->finish, fr_reader_finish_reason);
    return FR_OK;
}

static int on_event(void *ud, const fr_sse_event *ev)
{
    oai *o = ud;
    if (o->g.rd->done || blank(ev->data, ev->data_len))
        return FR_OK;
    if (is_done(ev->data, ev->data_len)) {
        o->g.rd->done = true;
        return FR_OK;
    }
    scan_chunk c;
    memset(&c, 0, sizeof c);
    if (!fr_provider_tree_only && strcmp(ev->event, "error") != 0 &&
        scan_chunk_text(ev->data, ev->data_len, &c))
        return apply_chunk(o, &c);
    json_error_t je;
    json_t *obj = json_loadb(ev->data, ev->data_len, 0, &je);
    int rc = FR_OK;
    if (!json_is_object(obj)) {
        rc = fail(o, FR_EPROTO,
                  fr_reader_not_object(o->g.rd, ev->event, ev->data, ev->data_len, obj, &je),
                  strcmp(ev->event, "error") == 0);
        goto cleanup;
    }
    o->g.rd->parsed++;
    json_t *error = json_object_get(obj, "error");
    if (!error && strcmp(ev->event, "error") == 0)
        error = obj;
    if (error && !json_is_null(error)) {
        rc = fail(o, FR_EPROTO, server_error_msg(error), true);
        goto cleanup;
    }
    json_t *choice = first_choice(obj);
    rc = read_extras(o, json_object_get(choice, "delta"), false);
    if (rc != FR_OK)
        goto cleanup;
    const char *delta =
        json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
    if (delta) {
        char *msg = NULL;
        int arc = fr_text_acc_add(&o->g.rd->text, delta, strlen(delta), &msg);
        if (arc != FR_OK) {
            rc = fail(o, arc, msg, false);
            goto cleanup;
        }
    }
    read_common(o, obj, choice);
cleanup:
    json_decref(obj);
    return rc;
}

/* Parses a whole chat.completion object from the reader's body (the
 * reader's on_body: `ud` is the adapter's state). */
static int parse_body(void *ud, fr_error *err)
{
    oai *o = ud;
    json_t *obj = NULL;
    int rc = fr_reader_body_object(o->g.rd, &obj, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_EPROTO;
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
    rc = read_extras(o, json_object_get(choice, "message"), true);
    if (rc != FR_OK) {
        fr_error_set(err, rc, PROTO, 0, "%s", o->g.rd->error);
        goto cleanup;
    }
    const char *content =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    /* The same cap and loop cut as a stream's text. */
    rc = content ? fr_reader_add(o->g.rd, &o->g.rd->text, content, strlen(content)) : FR_OK;
    if (rc != FR_OK) {
        fr_error_set(err, rc, PROTO, 0, "%s", o->g.rd->error);
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

/* Fills `err` for a non-2xx reply (the reader's http_error), with the
 * limit field's hint on a 400 that calls it unsupported. */
static int http_error(void *ud, long status, const char *body, size_t len, fr_error *err)
{
    const oai *o = ud;
    int rc = fr_provider_http_error(PROTO, status, body, len, err);
    if (status == 400)
        hint_limit_field(o->g.call, err);
    return rc;
}

/* A reply is SSE events up to data: [DONE], or a whole chat.completion
 * from a server that did not stream. */
static const fr_reader_spec reader = {
    .framing = FR_FRAME_SSE,
    .on_event = on_event,
    .on_body = parse_body,
    .http_error = http_error,
    .ended = "the stream ended before 'data: [DONE]'",
    .units = "events",
};

static int oai_finish(void *self, fr_reply *out, fr_error *err)
{
    oai *o = self;
    fr_finish f = fr_provider_finish(finish_words, sizeof finish_words / sizeof *finish_words,
                                     o->g.rd->finish_reason);
    if (o->refused)
        f = FR_FINISH_REFUSED; /* no answer: the tool calls do not change it */
    return fr_gathering_reply(&o->g, PROTO, f, out, err);
}

/* The vtable: the functions above, borrowed by fr_adapter for the life of
 * the program. */
const fr_adapter_ops fr_openai_ops = {
    .name = PROTO,
    .reader = &reader,
    .create = oai_create,
    .request_spec = &SPEC,
    .finish = oai_finish,
    .destroy = fr_gathering_free,
};
