/* The JSON Schema subset behind a task's `schema` (see validate.h). One
 * recursive walk over schema and value together, which stops at the first
 * failure and describes it with the path it was found at. */

#include "engine/validate.h"

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a value, name or path key shown in a message before "...". */
#define SHOW_MAX 40
/* Enum values listed in a message before ", ...". */
#define ENUM_SHOWN 5

/* Type names as bits, in the order messages list them. */
enum {
    T_OBJECT = 1 << 0,
    T_ARRAY = 1 << 1,
    T_STRING = 1 << 2,
    T_NUMBER = 1 << 3,
    T_INTEGER = 1 << 4,
    T_BOOLEAN = 1 << 5,
    T_NULL = 1 << 6,
};

static const struct {
    const char *name;
    const char *phrase; /* as in "expected <phrase>" */
} type_names[] = {
    {"object", "an object"}, {"array", "an array"},     {"string", "a string"},
    {"number", "a number"},  {"integer", "an integer"}, {"boolean", "a boolean"},
    {"null", "null"},
};

#define NTYPES (sizeof type_names / sizeof type_names[0])

typedef struct vctx {
    fr_buf path; /* the JSONPath of the value being checked */
    fr_buf why;  /* the failure, without its path */
} vctx;

static int validate(vctx *c, const json_t *schema, const json_t *value, int depth);

/* ---- Showing values ---------------------------------------------------- */

/* Returns the length of the UTF-8 sequence that starts with byte `b`.
 * Jansson only holds valid UTF-8, so the lead byte says it all. */
static size_t utf8_seq_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xF0)
        return 4;
    if (b >= 0xE0)
        return 3;
    return 2;
}

/* Appends `s` (`n` bytes) between `quote` characters, escaped so that the
 * message stays on one line: the quote, backslash and control characters
 * are escaped JSON-style. Stops before `end` (an absolute length of `b`),
 * writing "..." before the closing quote. Returns false when it was cut. */
static bool put_quoted(fr_buf *b, const char *s, size_t n, char quote, size_t end)
{
    bool whole = true;
    fr_buf_append(b, &quote, 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        const char *unit = esc;
        size_t ulen = 2;
        esc[0] = '\\';
        if (ch == (unsigned char)quote || ch == '\\') {
            esc[1] = (char)ch;
        } else if (ch == '\n') {
            esc[1] = 'n';
        } else if (ch == '\t') {
            esc[1] = 't';
        } else if (ch == '\r') {
            esc[1] = 'r';
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            ulen = 6;
        } else {
            unit = s + i;
            ulen = utf8_seq_len(ch);
            if (ulen > n - i)
                ulen = n - i;
        }
        if (b->len + ulen > end) {
            whole = false;
            break;
        }
        fr_buf_append(b, unit, ulen);
        i += unit == esc ? 1 : ulen;
    }
    if (!whole)
        fr_buf_puts(b, "...");
    fr_buf_append(b, &quote, 1);
    return whole;
}

/* Appends a real number the way it reads best: the shortest of %.15g and
 * %.17g that gives the same double back, with ".0" when it would otherwise
 * look like an integer. */
static void put_real(fr_buf *b, double d)
{
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    if (!strpbrk(tmp, ".eEni"))
        strcat(tmp, ".0");
    fr_buf_puts(b, tmp);
}

/* Appends `v` (borrowed) as compact JSON until the buffer reaches `end`.
 * Returns false when it was cut (a "..." is then already written, once). */
static bool put_value(fr_buf *b, const json_t *v, size_t end)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        bool first = true;
        fr_buf_puts(b, "{");
        json_object_foreach((json_t *)v, k, m)
        {
            if (b->len >= end) {
                fr_buf_puts(b, first ? "..." : ",...");
                return false;
            }
            if (!first)
                fr_buf_puts(b, ",");
            first = false;
            if (!put_quoted(b, k, strlen(k), '"', end))
                return false;
            fr_buf_puts(b, ":");
            if (!put_value(b, m, end))
                return false;
        }
        fr_buf_puts(b, "}");
        return true;
    }
    case JSON_ARRAY: {
        fr_buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (b->len >= end) {
                fr_buf_puts(b, i > 0 ? ",..." : "...");
                return false;
            }
            if (i > 0)
                fr_buf_puts(b, ",");
            if (!put_value(b, json_array_get(v, i), end))
                return false;
        }
        fr_buf_puts(b, "]");
        return true;
    }
    case JSON_STRING:
        return put_quoted(b, json_string_value(v), json_string_length(v), '"', end);
    case JSON_INTEGER:
        fr_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        return true;
    case JSON_TRUE:
        fr_buf_puts(b, "true");
        return true;
    case JSON_FALSE:
        fr_buf_puts(b, "false");
        return true;
    case JSON_NULL:
    default:
        fr_buf_puts(b, "null");
        return true;
    }
}

/* Appends `v` (borrowed) to the failure, cut to about SHOW_MAX bytes. */
static void show(vctx *c, const json_t *v)
{
    put_value(&c->why, v, c->why.len + SHOW_MAX);
}

/* Appends the name `k` (borrowed) to the failure in single quotes, cut. */
static void show_name(vctx *c, const char *k)
{
    put_quoted(&c->why, k, strlen(k), '\'', c->why.len + 1 + SHOW_MAX);
}

/* Starts a failure message; always returns FR_EQUALITY. */
static int fail(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(vctx *c, const char *fmt, ...)
{
    va_list ap;
    fr_buf_reset(&c->why);
    va_start(ap, fmt);
    fr_buf_vprintf(&c->why, fmt, ap);
    va_end(ap);
    return FR_EQUALITY;
}

/* ---- Paths ------------------------------------------------------------- */

static bool is_identifier(const char *k)
{
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_'))
        return false;
    for (const char *p = k + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

/* Appends ".key" or ["key"] to the path; returns the length to restore. */
static size_t path_push_key(vctx *c, const char *k)
{
    size_t mark = c->path.len;
    size_t n = strlen(k);
    if (n <= SHOW_MAX && is_identifier(k)) {
        fr_buf_printf(&c->path, ".%s", k);
    } else {
        fr_buf_puts(&c->path, "[");
        put_quoted(&c->path, k, n, '"', c->path.len + 1 + SHOW_MAX);
        fr_buf_puts(&c->path, "]");
    }
    return mark;
}

/* Appends "[i]" to the path; returns the length to restore. */
static size_t path_push_index(vctx *c, size_t i)
{
    size_t mark = c->path.len;
    fr_buf_printf(&c->path, "[%zu]", i);
    return mark;
}

static void path_pop(vctx *c, size_t mark)
{
    c->path.len = mark;
    if (c->path.data)
        c->path.data[mark] = '\0';
}

/* ---- Numbers ----------------------------------------------------------- */

/* Compares an integer with a double exactly (no rounding of big integers).
 * Returns <0, 0 or >0. Jansson reals are always finite. */
static int cmp_int_real(json_int_t i, double d)
{
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    double t = trunc(d);
    json_int_t ti = (json_int_t)t;
    if (i != ti)
        return i < ti ? -1 : 1;
    if (d == t)
        return 0;
    return d > t ? -1 : 1;
}

/* Compares two JSON numbers (borrowed) by value. */
static int cmp_number(const json_t *a, const json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    if (json_is_integer(a))
        return cmp_int_real(json_integer_value(a), json_real_value(b));
    if (json_is_integer(b))
        return -cmp_int_real(json_integer_value(b), json_real_value(a));
    double x = json_real_value(a), y = json_real_value(b);
    return x < y ? -1 : x > y;
}

/* Reads a count keyword (minItems, maxLength, ...): a non-negative integer,
 * or a real with no fraction. Returns false when `v` is not one. */
static bool count_value(const json_t *v, size_t *out)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (size_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d == trunc(d)) {
            *out = d < 1e18 ? (size_t)d : (size_t)-1;
            return true;
        }
    }
    return false;
}

/* ---- Equality (enum, const) -------------------------------------------- */

/* Deep equality, with numbers compared by value (1 equals 1.0, as JSON
 * Schema asks; json_equal would say no). */
static bool equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return cmp_number(a, b) == 0;
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        size_t n = json_array_size(a);
        if (n != json_array_size(b))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)a, k, m)
        {
            const json_t *o = json_object_get(b, k);
            if (!o || !equal(m, o))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* ---- Keywords ---------------------------------------------------------- */

/* Returns the type bits of `t`, the `type` keyword (borrowed), or 0 when it
 * is absent or names no known type. */
static unsigned type_mask(const json_t *t)
{
    unsigned mask = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_is_array(t) ? json_array_get(t, i) : t);
        for (size_t k = 0; s && k < NTYPES; k++)
            if (strcmp(s, type_names[k].name) == 0)
                mask |= 1u << k;
    }
    return mask;
}

/* Returns the type bits `v` (borrowed) satisfies. */
static unsigned value_mask(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return T_OBJECT;
    case JSON_ARRAY:
        return T_ARRAY;
    case JSON_STRING:
        return T_STRING;
    case JSON_INTEGER:
        return T_NUMBER | T_INTEGER;
    case JSON_REAL: {
        double d = json_real_value(v);
        return T_NUMBER | (d == trunc(d) ? T_INTEGER : 0);
    }
    case JSON_TRUE:
    case JSON_FALSE:
        return T_BOOLEAN;
    case JSON_NULL:
    default:
        return T_NULL;
    }
}

static int check_type(vctx *c, unsigned want, const json_t *value)
{
    if (want == 0 || (value_mask(value) & want))
        return FR_OK;
    if (want & T_NUMBER)
        want &= ~(unsigned)T_INTEGER; /* "a number or an integer" says nothing more */
    fail(c, "expected ");
    unsigned left = want;
    for (size_t k = 0; k < NTYPES; k++) {
        if (!(want & (1u << k)))
            continue;
        left &= ~(1u << k);
        fr_buf_puts(&c->why, type_names[k].phrase);
        if (left)
            fr_buf_puts(&c->why, (left & (left - 1)) ? ", " : " or ");
    }
    fr_buf_puts(&c->why, ", got ");
    show(c, value);
    return FR_EQUALITY;
}

static int check_enum(vctx *c, const json_t *en, const json_t *value)
{
    size_t n = json_array_size(en);
    for (size_t i = 0; i < n; i++)
        if (equal(json_array_get(en, i), value))
            return FR_OK;
    if (n == 0) {
        fail(c, "no value is allowed (the enum is empty), got ");
    } else {
        fail(c, "expected one of ");
        for (size_t i = 0; i < n && i < ENUM_SHOWN; i++) {
            if (i > 0)
                fr_buf_puts(&c->why, ", ");
            show(c, json_array_get(en, i));
        }
        if (n > ENUM_SHOWN)
            fr_buf_puts(&c->why, ", ...");
        fr_buf_puts(&c->why, ", got ");
    }
    show(c, value);
    return FR_EQUALITY;
}

/* One bound: `value` must compare to `bound` (a number, else ignored) as
 * `op` says: ">=", ">", "<=" or "<". */
static int check_bound(vctx *c, const json_t *bound, const char *op, const json_t *value)
{
    if (!json_is_number(bound))
        return FR_OK;
    int r = cmp_number(value, bound);
    bool ok =
        (op[0] == '>' && (op[1] ? r >= 0 : r > 0)) || (op[0] == '<' && (op[1] ? r <= 0 : r < 0));
    if (ok)
        return FR_OK;
    fail(c, "expected a number %s ", op);
    show(c, bound);
    fr_buf_puts(&c->why, ", got ");
    show(c, value);
    return FR_EQUALITY;
}

static int check_number(vctx *c, const json_t *schema, const json_t *value)
{
    const json_t *min = json_object_get(schema, "minimum");
    const json_t *max = json_object_get(schema, "maximum");
    const json_t *xmin = json_object_get(schema, "exclusiveMinimum");
    const json_t *xmax = json_object_get(schema, "exclusiveMaximum");
    int rc = check_bound(c, min, json_is_true(xmin) ? ">" : ">=", value);
    if (rc == FR_OK)
        rc = check_bound(c, xmin, ">", value);
    if (rc == FR_OK)
        rc = check_bound(c, max, json_is_true(xmax) ? "<" : "<=", value);
    if (rc == FR_OK)
        rc = check_bound(c, xmax, "<", value);
    return rc;
}

/* A count against a minimum or maximum keyword: "at least 2 items". */
static int check_count(vctx *c, const json_t *kw, bool is_min, size_t have, const char *unit)
{
    size_t limit;
    if (!kw || !count_value(kw, &limit))
        return FR_OK;
    if (is_min ? have >= limit : have <= limit)
        return FR_OK;
    return fail(c, "expected at %s %zu %s%s, got %zu", is_min ? "least" : "most", limit, unit,
                limit == 1 ? "" : "s", have);
}

static int check_string(vctx *c, const json_t *schema, const json_t *value)
{
    const json_t *min = json_object_get(schema, "minLength");
    const json_t *max = json_object_get(schema, "maxLength");
    if (!min && !max)
        return FR_OK;
    /* Code points: every byte that does not continue a UTF-8 sequence. */
    const unsigned char *s = (const unsigned char *)json_string_value(value);
    size_t n = json_string_length(value), cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += (s[i] & 0xC0) != 0x80;
    int rc = check_count(c, min, true, cps, "character");
    if (rc == FR_OK)
        rc = check_count(c, max, false, cps, "character");
    return rc;
}

/* Validates `value` (a member or element of the value at depth `depth`)
 * with the path already extended. */
static int descend(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    if (depth + 1 > FR_VALIDATE_MAX_DEPTH)
        return fail(c, "too deeply nested (more than %d levels)", FR_VALIDATE_MAX_DEPTH);
    return validate(c, schema, value, depth + 1);
}

static int check_array(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    size_t n = json_array_size(value);
    int rc = check_count(c, json_object_get(schema, "minItems"), true, n, "item");
    if (rc == FR_OK)
        rc = check_count(c, json_object_get(schema, "maxItems"), false, n, "item");
    const json_t *items = json_object_get(schema, "items");
    if (rc != FR_OK || !(json_is_object(items) || json_is_boolean(items)))
        return rc;
    for (size_t i = 0; i < n && rc == FR_OK; i++) {
        size_t mark = path_push_index(c, i);
        rc = descend(c, items, json_array_get(value, i), depth);
        if (rc == FR_OK)
            path_pop(c, mark);
    }
    return rc;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Returns the keys of `obj` (borrowed) sorted, in an owned array of
 * borrowed strings; *n gets the count. */
static const char **sorted_keys(const json_t *obj, size_t *n)
{
    size_t cap = json_object_size(obj), k = 0;
    const char **keys = fr_xmalloc((cap ? cap : 1) * sizeof *keys);
    const char *key;
    json_t *m;
    json_object_foreach((json_t *)obj, key, m)
    {
        if (k < cap)
            keys[k++] = key;
    }
    qsort(keys, k, sizeof *keys, cmp_key);
    *n = k;
    return keys;
}

static int check_object(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    int rc = FR_OK;
    const char **pkeys = NULL, **vkeys = NULL;
    size_t np = 0, nv = 0;
    const json_t *req = json_object_get(schema, "required");
    for (size_t i = 0; i < json_array_size(req); i++) {
        const char *k = json_string_value(json_array_get(req, i));
        if (k && !json_object_get(value, k)) {
            fail(c, "missing required property ");
            show_name(c, k);
            rc = FR_EQUALITY;
            goto cleanup;
        }
    }
    const json_t *props = json_object_get(schema, "properties");
    if (!json_is_object(props))
        props = NULL;
    if (props) {
        pkeys = sorted_keys(props, &np);
        for (size_t i = 0; i < np; i++) {
            const json_t *v = json_object_get(value, pkeys[i]);
            if (!v)
                continue;
            size_t mark = path_push_key(c, pkeys[i]);
            rc = descend(c, json_object_get(props, pkeys[i]), v, depth);
            if (rc != FR_OK)
                goto cleanup;
            path_pop(c, mark);
        }
    }
    const json_t *extra = json_object_get(schema, "additionalProperties");
    if (!(json_is_object(extra) || json_is_false(extra)))
        goto cleanup;
    vkeys = sorted_keys(value, &nv);
    for (size_t i = 0; i < nv; i++) {
        if (props && json_object_get(props, vkeys[i]))
            continue;
        if (json_is_false(extra)) {
            fail(c, "unexpected property ");
            show_name(c, vkeys[i]);
            rc = FR_EQUALITY;
            goto cleanup;
        }
        size_t mark = path_push_key(c, vkeys[i]);
        rc = descend(c, extra, json_object_get(value, vkeys[i]), depth);
        if (rc != FR_OK)
            goto cleanup;
        path_pop(c, mark);
    }
cleanup:
    free(pkeys);
    free(vkeys);
    return rc;
}

/* Validates `value` against `schema` (both borrowed) at `depth` levels
 * below the root. A schema that is neither an object nor a boolean accepts
 * everything, like an unknown keyword. */
static int validate(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    if (json_is_false(schema)) {
        fail(c, "no value is allowed here, got ");
        show(c, value);
        return FR_EQUALITY;
    }
    if (!json_is_object(schema))
        return FR_OK;
    int rc = check_type(c, type_mask(json_object_get(schema, "type")), value);
    if (rc != FR_OK)
        return rc;
    const json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en)) {
        rc = check_enum(c, en, value);
        if (rc != FR_OK)
            return rc;
    }
    const json_t *cst = json_object_get(schema, "const");
    if (cst && !equal(cst, value)) {
        fail(c, "expected ");
        show(c, cst);
        fr_buf_puts(&c->why, ", got ");
        show(c, value);
        return FR_EQUALITY;
    }
    switch (json_typeof(value)) {
    case JSON_INTEGER:
    case JSON_REAL:
        return check_number(c, schema, value);
    case JSON_STRING:
        return check_string(c, schema, value);
    case JSON_ARRAY:
        return check_array(c, schema, value, depth);
    case JSON_OBJECT:
        return check_object(c, schema, value, depth);
    default:
        return FR_OK;
    }
}

/* Copies "<path>: <why>" into msg, cut on a UTF-8 boundary. */
static void write_msg(const vctx *c, char *msg, size_t size)
{
    if (!msg || size == 0)
        return;
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out, "%s: %s", fr_buf_str(&c->path), fr_buf_str(&c->why));
    size_t n = out.len;
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)out.data[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(msg, out.data, n);
    msg[n] = '\0';
    fr_buf_close(&out);
}

/*
 * Validates `value` against `schema` (both borrowed) and writes the first
 * failure into `msg`; see validate.h for the messages. Returns FR_OK,
 * FR_EQUALITY, or FR_EINVAL for a NULL argument or a schema that is not
 * one.
 */
int fr_validate_json(const json_t *schema, const json_t *value, char *msg, size_t size)
{
    vctx c;
    int rc;
    fr_buf_init(&c.path, 0);
    fr_buf_init(&c.why, 0);
    fr_buf_puts(&c.path, "$");
    if (msg && size > 0)
        msg[0] = '\0';
    if (!schema || !value) {
        fail(&c, "nothing to validate (%s is missing)", schema ? "the value" : "the schema");
        rc = FR_EINVAL;
    } else if (json_is_string(schema)) {
        rc = FR_OK;
        if (strcmp(json_string_value(schema), "json") != 0) {
            fail(&c, "the schema is the string ");
            show(&c, schema);
            fr_buf_puts(&c.why, "; only \"json\" (any JSON object) is allowed");
            rc = FR_EINVAL;
        } else if (!json_is_object(value)) {
            fail(&c, "expected a JSON object, got ");
            show(&c, value);
            rc = FR_EQUALITY;
        }
    } else if (!json_is_object(schema) && !json_is_boolean(schema)) {
        fail(&c, "the schema is not a JSON Schema object");
        rc = FR_EINVAL;
    } else {
        rc = validate(&c, schema, value, 0);
    }
    if (rc != FR_OK)
        write_msg(&c, msg, size);
    fr_buf_close(&c.path);
    fr_buf_close(&c.why);
    return rc;
}
