/* The JSON Schema subset (see schema.h). One keyword table says, for each
 * keyword, the JSON types it judges, how its value must look in a workflow
 * file (the shape check at load) and how it judges a value (the quality
 * gate). Validation is one recursive walk over schema and value together
 * that stops at the first failure; dsl/schema_text.c words it, and
 * dsl/schema_shape.c runs the shape checks the table names. */

#include "dsl/schema.h"

#include "dsl/schema_int.h"
#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Enum values listed in a message before ", ...". */
#define ENUM_SHOWN 5

/* The type names, in the order of the T_ bits (schema_int.h). */
static const struct {
    const char *name;
    const char *phrase; /* as in "expected <phrase>" */
} type_names[] = {
    {"object", "an object"}, {"array", "an array"},     {"string", "a string"},
    {"number", "a number"},  {"integer", "an integer"}, {"boolean", "a boolean"},
    {"null", "null"},
};

#define NTYPES (sizeof type_names / sizeof type_names[0])

typedef fr_schema_ctx vctx;

static int validate(vctx *c, const json_t *schema, const json_t *value, int depth);

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

/* ---- Types ------------------------------------------------------------- */

/* Returns the bit of the type named `s` (borrowed, may be NULL), or 0 when
 * it names no type of the subset. */
unsigned fr_schema_type_bit(const char *s)
{
    for (size_t k = 0; s && k < NTYPES; k++)
        if (strcmp(s, type_names[k].name) == 0)
            return 1u << k;
    return 0;
}

/* Returns the type bits of `t`, the `type` keyword (borrowed), or 0 when it
 * names no known type. */
static unsigned type_mask(const json_t *t)
{
    unsigned mask = 0;
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    for (size_t i = 0; i < n; i++)
        mask |= fr_schema_type_bit(json_string_value(json_is_array(t) ? json_array_get(t, i) : t));
    return mask;
}

/* Appends the type names to `out` (borrowed) as messages list them:
 * "object", "array", ... */
void fr_schema_type_list(fr_buf *out)
{
    for (size_t k = 0; k < NTYPES; k++)
        fr_buf_printf(out, "%s\"%s\"", k ? ", " : "", type_names[k].name);
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

/* ---- Value checks (the quality gate) ----------------------------------- */

static int check_type(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                      int depth)
{
    unsigned want = type_mask(kw);
    if (want == 0 || (value_mask(value) & want))
        return FR_OK;
    if (want & T_NUMBER)
        want &= ~(unsigned)T_INTEGER; /* "a number or an integer" says nothing more */
    fr_schema_fail(c, "expected ");
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
    fr_schema_show(c, value);
    return FR_EQUALITY;
}

static int check_enum(vctx *c, const json_t *schema, const json_t *en, const json_t *value,
                      int depth)
{
    if (!json_is_array(en))
        return FR_OK;
    size_t n = json_array_size(en);
    for (size_t i = 0; i < n; i++)
        if (equal(json_array_get(en, i), value))
            return FR_OK;
    if (n == 0) {
        fr_schema_fail(c, "no value is allowed (the enum is empty), got ");
    } else {
        fr_schema_fail(c, "expected one of ");
        for (size_t i = 0; i < n && i < ENUM_SHOWN; i++) {
            if (i > 0)
                fr_buf_puts(&c->why, ", ");
            fr_schema_show(c, json_array_get(en, i));
        }
        if (n > ENUM_SHOWN)
            fr_buf_puts(&c->why, ", ...");
        fr_buf_puts(&c->why, ", got ");
    }
    fr_schema_show(c, value);
    return FR_EQUALITY;
}

static int check_const(vctx *c, const json_t *schema, const json_t *cst, const json_t *value,
                       int depth)
{
    if (equal(cst, value))
        return FR_OK;
    fr_schema_fail(c, "expected ");
    fr_schema_show(c, cst);
    fr_buf_puts(&c->why, ", got ");
    fr_schema_show(c, value);
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
    fr_schema_fail(c, "expected a number %s ", op);
    fr_schema_show(c, bound);
    fr_buf_puts(&c->why, ", got ");
    fr_schema_show(c, value);
    return FR_EQUALITY;
}

/* minimum and maximum are exclusive when their draft-4 boolean sibling
 * says so; exclusiveMinimum/Maximum as numbers are bounds of their own. */
static int check_minimum(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                         int depth)
{
    bool x = json_is_true(json_object_get(schema, "exclusiveMinimum"));
    return check_bound(c, kw, x ? ">" : ">=", value);
}

static int check_maximum(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                         int depth)
{
    bool x = json_is_true(json_object_get(schema, "exclusiveMaximum"));
    return check_bound(c, kw, x ? "<" : "<=", value);
}

static int check_xminimum(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                          int depth)
{
    return check_bound(c, kw, ">", value);
}

static int check_xmaximum(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                          int depth)
{
    return check_bound(c, kw, "<", value);
}

/* A count against a minimum or maximum keyword: "at least 2 items". */
static int check_count(vctx *c, const json_t *kw, bool is_min, size_t have, const char *unit)
{
    size_t limit;
    if (!count_value(kw, &limit))
        return FR_OK;
    if (is_min ? have >= limit : have <= limit)
        return FR_OK;
    return fr_schema_fail(c, "expected at %s %zu %s%s, got %zu", is_min ? "least" : "most", limit,
                          unit, limit == 1 ? "" : "s", have);
}

/* Code points: every byte that does not continue a UTF-8 sequence. */
static size_t code_points(const json_t *s)
{
    const unsigned char *p = (const unsigned char *)json_string_value(s);
    size_t n = json_string_length(s), cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += (p[i] & 0xC0) != 0x80;
    return cps;
}

static int check_min_length(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                            int depth)
{
    return check_count(c, kw, true, code_points(value), "character");
}

static int check_max_length(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                            int depth)
{
    return check_count(c, kw, false, code_points(value), "character");
}

static int check_min_items(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                           int depth)
{
    return check_count(c, kw, true, json_array_size(value), "item");
}

static int check_max_items(vctx *c, const json_t *schema, const json_t *kw, const json_t *value,
                           int depth)
{
    return check_count(c, kw, false, json_array_size(value), "item");
}

/* Validates `value` (a member or element of the value at depth `depth`)
 * with the path already extended. */
static int descend(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    if (depth + 1 > FR_SCHEMA_MAX_DEPTH)
        return fr_schema_fail(c, "too deeply nested (more than %d levels)", FR_SCHEMA_MAX_DEPTH);
    return validate(c, schema, value, depth + 1);
}

static int check_items(vctx *c, const json_t *schema, const json_t *items, const json_t *value,
                       int depth)
{
    int rc = FR_OK;
    if (!(json_is_object(items) || json_is_boolean(items)))
        return rc;
    for (size_t i = 0; i < json_array_size(value) && rc == FR_OK; i++) {
        size_t mark = fr_schema_path_index(c, i);
        rc = descend(c, items, json_array_get(value, i), depth);
        if (rc == FR_OK)
            fr_schema_path_pop(c, mark);
    }
    return rc;
}

static int check_required(vctx *c, const json_t *schema, const json_t *req, const json_t *value,
                          int depth)
{
    for (size_t i = 0; i < json_array_size(req); i++) {
        const char *k = json_string_value(json_array_get(req, i));
        if (k && !json_object_get(value, k)) {
            fr_schema_fail(c, "missing required property ");
            fr_schema_show_name(c, k);
            return FR_EQUALITY;
        }
    }
    return FR_OK;
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

/* Validates the members of `value` that `props` (an object) or, with
 * `extra` (a schema or false), those it does not name, in sorted order. */
static int check_members(vctx *c, const json_t *props, const json_t *extra, const json_t *value,
                         int depth)
{
    int rc = FR_OK;
    size_t n = 0;
    const char **keys = sorted_keys(extra ? value : props, &n);
    for (size_t i = 0; i < n && rc == FR_OK; i++) {
        const json_t *sub = extra ? extra : json_object_get(props, keys[i]);
        const json_t *v = json_object_get(value, keys[i]);
        if (!v || (extra && props && json_object_get(props, keys[i])))
            continue;
        if (extra && json_is_false(extra)) {
            fr_schema_fail(c, "unexpected property ");
            fr_schema_show_name(c, keys[i]);
            rc = FR_EQUALITY;
            break;
        }
        size_t mark = fr_schema_path_key(c, keys[i]);
        rc = descend(c, sub, v, depth);
        if (rc == FR_OK)
            fr_schema_path_pop(c, mark);
    }
    free(keys);
    return rc;
}

static int check_properties(vctx *c, const json_t *schema, const json_t *props, const json_t *value,
                            int depth)
{
    return json_is_object(props) ? check_members(c, props, NULL, value, depth) : FR_OK;
}

static int check_additional(vctx *c, const json_t *schema, const json_t *extra, const json_t *value,
                            int depth)
{
    const json_t *props = json_object_get(schema, "properties");
    if (!(json_is_object(extra) || json_is_false(extra)))
        return FR_OK;
    return check_members(c, json_is_object(props) ? props : NULL, extra, value, depth);
}

/* ---- The keyword table ------------------------------------------------- */

/* Every keyword flowrun knows. At load, the shape checks run in this order
 * on the keywords a schema has (dsl/schema_shape.c); in validation, the
 * keywords of every type run first, then those of the value's type, each in
 * this order, and the first failure ends the walk. A keyword not in the
 * table (format, description, ...) is ignored by both. */
static const fr_schema_keyword keywords[] = {
    {"type", T_ANY, FR_SHAPE_TYPE, check_type},
    {"required", T_OBJECT, FR_SHAPE_NAMES, check_required},
    {"properties", T_OBJECT, FR_SHAPE_SCHEMAS, check_properties},
    {"anyOf", 0, FR_SHAPE_REFUSED, NULL},
    {"oneOf", 0, FR_SHAPE_REFUSED, NULL},
    {"allOf", 0, FR_SHAPE_REFUSED, NULL},
    {"not", 0, FR_SHAPE_REFUSED, NULL},
    {"$ref", 0, FR_SHAPE_REFUSED, NULL},
    {"pattern", 0, FR_SHAPE_REFUSED, NULL},
    {"patternProperties", 0, FR_SHAPE_REFUSED, NULL},
    {"if", 0, FR_SHAPE_REFUSED, NULL},
    {"then", 0, FR_SHAPE_REFUSED, NULL},
    {"else", 0, FR_SHAPE_REFUSED, NULL},
    {"contains", 0, FR_SHAPE_REFUSED, NULL},
    {"uniqueItems", 0, FR_SHAPE_REFUSED, NULL},
    {"multipleOf", 0, FR_SHAPE_REFUSED, NULL},
    {"dependentRequired", 0, FR_SHAPE_REFUSED, NULL},
    {"dependentSchemas", 0, FR_SHAPE_REFUSED, NULL},
    {"propertyNames", 0, FR_SHAPE_REFUSED, NULL},
    {"minItems", T_ARRAY, FR_SHAPE_ANY, check_min_items},
    {"maxItems", T_ARRAY, FR_SHAPE_ANY, check_max_items},
    {"items", T_ARRAY, FR_SHAPE_SCHEMA, check_items},
    {"additionalProperties", T_OBJECT, FR_SHAPE_SCHEMA_OR_BOOL, check_additional},
    {"enum", T_ANY, FR_SHAPE_ARRAY, check_enum},
    {"const", T_ANY, FR_SHAPE_ANY, check_const},
    {"minimum", T_NUMBER, FR_SHAPE_ANY, check_minimum},
    {"exclusiveMinimum", T_NUMBER, FR_SHAPE_ANY, check_xminimum},
    {"maximum", T_NUMBER, FR_SHAPE_ANY, check_maximum},
    {"exclusiveMaximum", T_NUMBER, FR_SHAPE_ANY, check_xmaximum},
    {"minLength", T_STRING, FR_SHAPE_ANY, check_min_length},
    {"maxLength", T_STRING, FR_SHAPE_ANY, check_max_length},
};

/* Returns the keyword table (static) and its length in *n. */
const fr_schema_keyword *fr_schema_keywords(size_t *n)
{
    *n = sizeof keywords / sizeof keywords[0];
    return keywords;
}

/* Validates `value` against `schema` (both borrowed) at `depth` levels
 * below the root. A schema that is neither an object nor a boolean accepts
 * everything, like an unknown keyword. */
static int validate(vctx *c, const json_t *schema, const json_t *value, int depth)
{
    if (json_is_false(schema)) {
        fr_schema_fail(c, "no value is allowed here, got ");
        fr_schema_show(c, value);
        return FR_EQUALITY;
    }
    if (!json_is_object(schema))
        return FR_OK;
    unsigned have = value_mask(value);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++) {
            const fr_schema_keyword *k = &keywords[i];
            if (!k->check || (k->types == T_ANY) != (pass == 0) || !(k->types & have))
                continue;
            const json_t *v = json_object_get(schema, k->name);
            int rc = v ? k->check(c, schema, v, value, depth) : FR_OK;
            if (rc != FR_OK)
                return rc;
        }
    return FR_OK;
}

/*
 * Validates `value` against `schema` (both borrowed) and writes the first
 * failure into `msg`; see schema.h for the messages. Returns FR_OK,
 * FR_EQUALITY, or FR_EINVAL for a NULL argument or a schema that is not
 * one.
 */
int fr_schema_validate(const json_t *schema, const json_t *value, char *msg, size_t size)
{
    vctx c;
    int rc;
    fr_buf_init(&c.path, 0);
    fr_buf_init(&c.why, 0);
    fr_buf_puts(&c.path, "$");
    if (msg && size > 0)
        msg[0] = '\0';
    if (!schema || !value) {
        fr_schema_fail(&c, "nothing to validate (%s is missing)",
                       schema ? "the value" : "the schema");
        rc = FR_EINVAL;
    } else if (json_is_string(schema)) {
        rc = FR_OK;
        if (strcmp(json_string_value(schema), "json") != 0) {
            fr_schema_fail(&c, "the schema is the string ");
            fr_schema_show(&c, schema);
            fr_buf_puts(&c.why, "; only \"json\" (any JSON object) is allowed");
            rc = FR_EINVAL;
        } else if (!json_is_object(value)) {
            fr_schema_fail(&c, "expected a JSON object, got ");
            fr_schema_show(&c, value);
            rc = FR_EQUALITY;
        }
    } else if (!json_is_object(schema) && !json_is_boolean(schema)) {
        fr_schema_fail(&c, "the schema is not a JSON Schema object");
        rc = FR_EINVAL;
    } else {
        rc = validate(&c, schema, value, 0);
    }
    if (rc != FR_OK)
        fr_schema_write_msg(&c, msg, size);
    fr_buf_close(&c.path);
    fr_buf_close(&c.why);
    return rc;
}
