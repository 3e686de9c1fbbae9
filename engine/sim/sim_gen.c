/* flowrun-sim: the deterministic content. Reply text and JSON values come
 * from a PRNG seeded by an FNV-1a hash of the model and every message, so
 * the same request gives the same reply under every protocol. */

#include "engine/sim/sim_int.h"

#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_PREFIX  "REPLY: "
#define DIFF_PREFIX   "@@difficulty"
#define MIN_GEN_WORDS 12
#define MAX_GEN_WORDS 40
#define MAX_DEPTH     16 /* schema nesting (and $ref chains) followed */
#define MAX_ITEMS     64 /* array length generated at most */
#define INT_SPAN      1000000000000000LL

static const char *const vocabulary[] = {
    "amber",   "anchor",  "apple",  "arrow",  "basil",  "beacon", "birch",   "bridge",
    "cable",   "candle",  "canyon", "cedar",  "cipher", "cloud",  "comet",   "copper",
    "coral",   "delta",   "drift",  "ember",  "falcon", "fern",   "flint",   "forest",
    "garden",  "glacier", "harbor", "hazel",  "island", "ivory",  "jasper",  "kernel",
    "lantern", "lemon",   "linen",  "maple",  "meadow", "mirror", "nectar",  "orbit",
    "pebble",  "pepper",  "pillar", "planet", "prism",  "quartz", "raven",   "ribbon",
    "river",   "saddle",  "signal", "silver", "spruce", "stone",  "thistle", "timber",
    "tunnel",  "valley",  "velvet", "willow", "window", "yarrow", "zephyr",  "summit",
};
#define NVOCAB (sizeof vocabulary / sizeof vocabulary[0])

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Returns a number in [0, n) (n > 0). */
static uint64_t pick(uint64_t *state, uint64_t n)
{
    return splitmix64(state) % n;
}

/* Appends the text of a content value; see sim_int.h. */
size_t fr_sim_content_text(const json_t *content, fr_buf *out)
{
    if (json_is_string(content)) {
        if (out)
            fr_buf_append(out, json_string_value(content), json_string_length(content));
        return json_string_length(content);
    }
    size_t n = 0;
    if (json_is_array(content)) {
        size_t i;
        const json_t *part;
        json_array_foreach(content, i, part)
        {
            const json_t *text = json_object_get(part, "text");
            if (json_is_string(text)) {
                if (out)
                    fr_buf_append(out, json_string_value(text), json_string_length(text));
                n += json_string_length(text);
            }
        }
    }
    return n;
}

/* Returns the first `prefix` line of the last user message (tool results
 * aside, so a FAULT: line holds for every turn of a tool loop under every
 * protocol); see sim_int.h. */
char *fr_sim_prompt_line(const json_t *messages, const char *prefix)
{
    const json_t *last = NULL;
    size_t i;
    const json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (role && strcmp(role, "user") == 0 && !fr_sim_is_tool_result(msg))
            last = msg;
    }
    if (!last)
        return NULL;
    fr_buf text;
    fr_buf_init(&text, 0);
    fr_sim_content_text(json_object_get(last, "content"), &text);
    char *found = NULL;
    const char *p = fr_buf_str(&text);
    const char *end = p + text.len;
    size_t plen = strlen(prefix);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        if ((size_t)(line_end - p) >= plen && memcmp(p, prefix, plen) == 0) {
            const char *r = p + plen;
            const char *re = line_end;
            if (re > r && re[-1] == '\r')
                re--;
            found = fr_xstrndup(r, (size_t)(re - r));
            break;
        }
        p = eol ? eol + 1 : end;
    }
    fr_buf_close(&text);
    return found;
}

static uint64_t seed_of(const char *model, const json_t *messages)
{
    uint64_t h = fr_fnv1a64(model, strlen(model), FR_FNV1A64_BASIS);
    size_t i;
    const json_t *msg;
    fr_buf scratch;
    fr_buf_init(&scratch, 0);
    json_array_foreach(messages, i, msg)
    {
        fr_buf_reset(&scratch);
        fr_sim_content_text(json_object_get(msg, "content"), &scratch);
        h = fr_fnv1a64("", 1, h); /* separator, so ["ab"] and ["a","b"] differ */
        h = fr_fnv1a64(fr_buf_str(&scratch), scratch.len, h);
    }
    fr_buf_close(&scratch);
    return h;
}

/* Reads the @@difficulty line; see sim_int.h. */
int fr_sim_difficulty(const json_t *messages, double *d, char *msg, size_t msg_size)
{
    char *line = fr_sim_prompt_line(messages, DIFF_PREFIX);
    if (!line)
        return 0;
    char *end;
    errno = 0;
    double v = strtod(line, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    int rc = 1;
    if (end == line || *end || errno || !isfinite(v) || v < 0 || v > 1) {
        snprintf(msg, msg_size, "Difficulty: '%.64s' is not a number from 0 to 1.", line);
        rc = -1;
    } else
        *d = v;
    free(line);
    return rc;
}

/* The verdict of a model with a skill; see sim.h. */
int fr_sim_verdict(const char *model, bool has_skill, double skill, double noise,
                   const json_t *messages)
{
    double d;
    char msg[128];
    if (!has_skill || fr_sim_difficulty(messages, &d, msg, sizeof msg) != 1)
        return -1;
    uint64_t state = seed_of(model, messages) ^ 0xd1ff1c017ull;         /* not the words' stream */
    double u = (double)(splitmix64(&state) >> 11) / 9007199254740992.0; /* [0, 1) */
    return skill + noise * (2 * u - 1) >= d ? 1 : 0;
}

/* The generated text: "<model> says: " and 12..40 words from a PRNG seeded by
 * an FNV-1a hash of the model and every message content. */
char *fr_sim_reply_text(const char *model, const json_t *messages)
{
    char *scripted = fr_sim_prompt_line(messages, REPLY_PREFIX);
    if (scripted)
        return scripted;
    uint64_t state = seed_of(model, messages);
    int nwords = MIN_GEN_WORDS + (int)pick(&state, MAX_GEN_WORDS - MIN_GEN_WORDS + 1);
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out, "%s says:", model);
    for (int w = 0; w < nwords; w++)
        fr_buf_printf(&out, " %s", vocabulary[pick(&state, NVOCAB)]);
    fr_buf_puts(&out, ".");
    return fr_buf_take(&out);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Scans words; see sim_int.h. */
size_t fr_sim_scan_words(const char *text, size_t len, size_t pos, long max_words, long *words)
{
    size_t i = pos;
    long n = 0;
    while (n < max_words) {
        while (i < len && is_ws(text[i]))
            i++;
        if (i == len)
            break;
        while (i < len && !is_ws(text[i]))
            i++;
        n++;
    }
    size_t j = i;
    while (j < len && is_ws(text[j]))
        j++;
    if (j == len)
        i = len;
    *words = n;
    return i;
}

/* ---- JSON from a schema ---------------------------------------------------- */

typedef struct gen {
    uint64_t state;
    const json_t *root; /* for "#/..." references */
} gen;

/* Follows a local "$ref" ("#" or "#/a/b" with ~0 and ~1 escapes); returns
 * the target (borrowed) or NULL. */
static const json_t *resolve_ref(const gen *g, const char *ref)
{
    if (ref[0] != '#')
        return NULL;
    const json_t *at = g->root;
    const char *p = ref + 1;
    while (*p == '/' && at) {
        p++;
        size_t n = strcspn(p, "/");
        char *key = fr_xstrndup(p, n);
        char *w = key;
        for (const char *r = key; *r; r++) {
            if (r[0] == '~' && (r[1] == '0' || r[1] == '1')) {
                *w++ = r[1] == '0' ? '~' : '/';
                r++;
            } else {
                *w++ = *r;
            }
        }
        *w = '\0';
        if (json_is_array(at)) {
            char *end;
            unsigned long idx = strtoul(key, &end, 10);
            at = *key && !*end ? json_array_get(at, idx) : NULL;
        } else {
            at = json_object_get(at, key);
        }
        free(key);
        p += n;
    }
    return *p ? NULL : at;
}

/* Returns the schema with references followed (borrowed). */
static const json_t *deref(const gen *g, const json_t *schema)
{
    for (int hops = 0; hops < MAX_DEPTH && json_is_object(schema); hops++) {
        const char *ref = json_string_value(json_object_get(schema, "$ref"));
        if (!ref)
            break;
        schema = resolve_ref(g, ref);
    }
    return schema;
}

/* The type a value for `schema` takes: its "type" (the first that is not
 * "null" of a list), else one implied by its keywords, else "string". */
static const char *type_of(const json_t *schema)
{
    const json_t *t = json_object_get(schema, "type");
    if (json_is_string(t))
        return json_string_value(t);
    if (json_is_array(t)) {
        size_t i;
        const json_t *v;
        json_array_foreach(t, i, v)
        {
            if (json_is_string(v) && strcmp(json_string_value(v), "null") != 0)
                return json_string_value(v);
        }
        if (json_array_size(t) > 0)
            return "null";
    }
    if (json_object_get(schema, "properties") || json_object_get(schema, "required"))
        return "object";
    if (json_object_get(schema, "items"))
        return "array";
    if (json_object_get(schema, "minimum") || json_object_get(schema, "maximum"))
        return "number";
    return "string";
}

static bool number_member(const json_t *schema, const char *key, double *out)
{
    const json_t *v = json_object_get(schema, key);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

static bool count_member(const json_t *schema, const char *key, long long *out)
{
    const json_t *v = json_object_get(schema, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = json_integer_value(v);
    return true;
}

/* Reads the bounds of a number schema: inclusive `minimum`/`maximum`, and
 * `exclusiveMinimum`/`exclusiveMaximum` as numbers (draft 6+) or as flags
 * on the inclusive ones (draft 4). */
static void bounds_of(const json_t *schema, bool *has_lo, double *lo, bool *lo_excl, bool *has_hi,
                      double *hi, bool *hi_excl)
{
    double v;
    *has_lo = number_member(schema, "minimum", lo);
    *lo_excl = *has_lo && json_is_true(json_object_get(schema, "exclusiveMinimum"));
    if (number_member(schema, "exclusiveMinimum", &v) && (!*has_lo || v >= *lo)) {
        *has_lo = true;
        *lo = v;
        *lo_excl = true;
    }
    *has_hi = number_member(schema, "maximum", hi);
    *hi_excl = *has_hi && json_is_true(json_object_get(schema, "exclusiveMaximum"));
    if (number_member(schema, "exclusiveMaximum", &v) && (!*has_hi || v <= *hi)) {
        *has_hi = true;
        *hi = v;
        *hi_excl = true;
    }
}

static json_t *gen_integer(gen *g, const json_t *schema)
{
    bool has_lo, has_hi, lo_excl, hi_excl;
    double dlo = 0, dhi = 0;
    bounds_of(schema, &has_lo, &dlo, &lo_excl, &has_hi, &dhi, &hi_excl);
    dlo = fmax(fmin(dlo, (double)INT_SPAN), -(double)INT_SPAN);
    dhi = fmax(fmin(dhi, (double)INT_SPAN), -(double)INT_SPAN);
    long long lo = (long long)ceil(dlo);
    long long hi = (long long)floor(dhi);
    if (has_lo && lo_excl && (double)lo == dlo)
        lo++;
    if (has_hi && hi_excl && (double)hi == dhi)
        hi--;
    if (!has_lo && !has_hi) {
        lo = 1;
        hi = 100;
    } else if (!has_hi) {
        hi = lo + 100;
    } else if (!has_lo) {
        lo = hi - 100;
    }
    if (lo >= hi)
        return json_integer(lo);
    long long step = 1;
    const json_t *mult = json_object_get(schema, "multipleOf");
    if (json_is_integer(mult) && json_integer_value(mult) > 0)
        step = json_integer_value(mult);
    long long first = lo;
    if (step > 1) {
        long long r = ((lo % step) + step) % step;
        first = r ? lo + (step - r) : lo;
        if (first > hi)
            return json_integer(first); /* no multiple in range: the schema cannot be met */
    }
    long long count = (hi - first) / step + 1;
    return json_integer(first + step * (long long)pick(&g->state, (uint64_t)count));
}

static json_t *gen_number(gen *g, const json_t *schema)
{
    bool has_lo, has_hi, lo_excl, hi_excl;
    double lo = 0, hi = 0;
    bounds_of(schema, &has_lo, &lo, &lo_excl, &has_hi, &hi, &hi_excl);
    if (!has_lo && !has_hi)
        return json_real((double)pick(&g->state, 401) / 4.0); /* 0 .. 100 in quarters */
    if (!has_hi)
        hi = lo + 100;
    else if (!has_lo)
        lo = hi - 100;
    if (lo >= hi)
        return json_real(lo);
    /* Strictly inside, so exclusive bounds hold too. */
    return json_real(lo + (hi - lo) * (double)(1 + pick(&g->state, 7)) / 8.0);
}

static json_t *gen_string(gen *g, const json_t *schema)
{
    const char *format = json_string_value(json_object_get(schema, "format"));
    const char *word = vocabulary[pick(&g->state, NVOCAB)];
    fr_buf s;
    fr_buf_init(&s, 0);
    if (format && strcmp(format, "date-time") == 0)
        fr_buf_puts(&s, "2024-05-17T09:30:00Z");
    else if (format && strcmp(format, "date") == 0)
        fr_buf_puts(&s, "2024-05-17");
    else if (format && strcmp(format, "time") == 0)
        fr_buf_puts(&s, "09:30:00");
    else if (format && strcmp(format, "email") == 0)
        fr_buf_printf(&s, "%s@example.com", word);
    else if (format && (strcmp(format, "uri") == 0 || strcmp(format, "url") == 0))
        fr_buf_printf(&s, "https://example.com/%s", word);
    else if (format && strcmp(format, "uuid") == 0)
        fr_buf_puts(&s, "3f2b8a1e-5c4d-4e6f-8a9b-0c1d2e3f4a5b");
    else {
        fr_buf_puts(&s, word);
        int extra = (int)pick(&g->state, 3); /* 1..3 words */
        for (int i = 0; i < extra; i++)
            fr_buf_printf(&s, " %s", vocabulary[pick(&g->state, NVOCAB)]);
    }
    long long min_len = 0, max_len = -1;
    count_member(schema, "minLength", &min_len);
    count_member(schema, "maxLength", &max_len);
    if (min_len > 4096)
        min_len = 4096;
    while ((long long)s.len < min_len)
        fr_buf_printf(&s, "%s%s", s.len ? " " : "", vocabulary[pick(&g->state, NVOCAB)]);
    if (max_len >= 0 && (long long)s.len > max_len) {
        s.len = (size_t)max_len;
        s.data[s.len] = '\0';
        if (s.len > 0 && s.data[s.len - 1] == ' ')
            s.data[s.len - 1] = 'a'; /* no trailing blank where a word was cut */
    }
    json_t *v = json_stringn(fr_buf_str(&s), s.len);
    fr_buf_close(&s);
    return v;
}

static json_t *gen_value(gen *g, const json_t *schema, int depth);

/* A free-form object: {"result": "<3..8 words>"}. OpenAI json_object, Ollama
 * "json" and a tool whose schema is just {"type": "object"} all get it, so
 * "any JSON" looks the same under every protocol. */
static json_t *any_object(gen *g)
{
    fr_buf words;
    fr_buf_init(&words, 0);
    int n = 3 + (int)pick(&g->state, 6);
    for (int i = 0; i < n; i++)
        fr_buf_printf(&words, "%s%s", i ? " " : "", vocabulary[pick(&g->state, NVOCAB)]);
    json_t *v = json_pack("{s:s}", "result", fr_buf_str(&words));
    fr_buf_close(&words);
    return v;
}

static json_t *gen_object(gen *g, const json_t *schema, int depth)
{
    const json_t *props = json_object_get(schema, "properties");
    if (json_object_size(props) == 0 && json_array_size(json_object_get(schema, "required")) == 0 &&
        !json_is_false(json_object_get(schema, "additionalProperties")))
        return any_object(g);
    json_t *obj = json_object();
    const char *key;
    const json_t *sub;
    json_object_foreach((json_t *)props, key, sub)
    {
        json_object_set_new(obj, key, gen_value(g, sub, depth + 1));
    }
    size_t i;
    const json_t *name;
    json_array_foreach(json_object_get(schema, "required"), i, name)
    {
        if (json_is_string(name) && !json_object_get(obj, json_string_value(name)))
            json_object_set_new(obj, json_string_value(name), gen_value(g, NULL, depth + 1));
    }
    return obj;
}

static json_t *gen_array(gen *g, const json_t *schema, int depth)
{
    long long lo = 1, hi = 3;
    bool has_lo = count_member(schema, "minItems", &lo);
    bool has_hi = count_member(schema, "maxItems", &hi);
    if (lo > hi) {
        if (!has_hi)
            hi = lo;
        else if (!has_lo)
            lo = hi;
        else
            lo = hi; /* the schema cannot be met; stay at its maximum */
    }
    if (hi > MAX_ITEMS)
        hi = MAX_ITEMS;
    if (lo > hi)
        lo = hi;
    long long n = lo + (long long)pick(&g->state, (uint64_t)(hi - lo + 1));
    const json_t *items = json_object_get(schema, "items");
    bool unique = json_is_true(json_object_get(schema, "uniqueItems"));
    json_t *arr = json_array();
    for (long long k = 0; k < n; k++) {
        json_t *v = NULL;
        for (int attempt = 0; attempt < 8; attempt++) {
            json_decref(v);
            v = gen_value(g, json_is_object(items) ? items : NULL, depth + 1);
            bool dup = false;
            size_t i;
            const json_t *have;
            json_array_foreach(arr, i, have)
            {
                dup = dup || (unique && json_equal(have, v));
            }
            if (!dup)
                break;
        }
        json_array_append_new(arr, v);
    }
    return arr;
}

/* Returns a new value that conforms to `schema` (borrowed; NULL = anything). */
static json_t *gen_value(gen *g, const json_t *schema, int depth)
{
    schema = deref(g, schema);
    if (!json_is_object(schema) || depth > MAX_DEPTH)
        return gen_string(g, NULL);
    const json_t *v = json_object_get(schema, "const");
    if (v)
        return json_deep_copy(v);
    v = json_object_get(schema, "enum");
    if (json_is_array(v) && json_array_size(v) > 0)
        return json_deep_copy(json_array_get(v, pick(&g->state, json_array_size(v))));
    const char *alts[] = {"anyOf", "oneOf", "allOf"};
    for (size_t a = 0; a < sizeof alts / sizeof alts[0]; a++) {
        v = json_object_get(schema, alts[a]);
        if (!json_is_array(v) || json_array_size(v) == 0)
            continue;
        size_t i;
        const json_t *alt;
        json_array_foreach(v, i, alt)
        {
            if (strcmp(type_of(deref(g, alt)), "null") != 0)
                return gen_value(g, alt, depth + 1);
        }
        return gen_value(g, json_array_get(v, 0), depth + 1);
    }
    const char *type = type_of(schema);
    if (strcmp(type, "object") == 0)
        return gen_object(g, schema, depth);
    if (strcmp(type, "array") == 0)
        return gen_array(g, schema, depth);
    if (strcmp(type, "integer") == 0)
        return gen_integer(g, schema);
    if (strcmp(type, "number") == 0)
        return gen_number(g, schema);
    if (strcmp(type, "boolean") == 0)
        return json_boolean(pick(&g->state, 2));
    if (strcmp(type, "null") == 0)
        return json_null();
    return gen_string(g, schema);
}

/* Turns `v` (taken), which conforms to `schema`, into valid JSON that does
 * not: an object loses its first required property, anything else gets a
 * value of another type. Returns the new value. */
static json_t *violate(const gen *g, json_t *v, const json_t *schema)
{
    schema = deref(g, schema);
    if (json_is_object(v)) {
        size_t i;
        const json_t *name;
        json_array_foreach(json_object_get(schema, "required"), i, name)
        {
            if (json_is_string(name) && json_object_get(v, json_string_value(name))) {
                json_object_del(v, json_string_value(name));
                return v;
            }
        }
    }
    bool was_string = json_is_string(v);
    json_decref(v);
    if (schema && !was_string)
        return json_string("not what the schema asks for");
    return json_integer(42);
}

/* Returns compact JSON for `schema`; see sim_int.h. */
char *fr_sim_gen_json(const char *model, const json_t *messages, const json_t *schema, bool bad)
{
    gen g = {seed_of(model, messages), schema};
    json_t *v;
    if (schema) {
        v = gen_value(&g, schema, 0);
        if (bad)
            v = violate(&g, v, schema);
    } else {
        v = any_object(&g);
        if (bad) { /* an array where an object was asked */
            json_t *arr = json_pack("[O]", json_object_get(v, "result"));
            json_decref(v);
            v = arr;
        }
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    json_decref(v);
    return text ? text : fr_xstrdup("{}");
}

/* Returns the structured reply for a request; see sim.h. */
char *fr_sim_reply_json(const char *model, const json_t *messages, const json_t *schema)
{
    char *scripted = fr_sim_prompt_line(messages, REPLY_PREFIX);
    if (scripted)
        return scripted;
    return fr_sim_gen_json(model, messages, json_is_object(schema) ? schema : NULL, false);
}
