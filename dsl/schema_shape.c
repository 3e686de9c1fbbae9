/* The shape check of a task's schema at load (fr_schema_check in
 * dsl/schema.h): each keyword of the table in dsl/schema.c says what its
 * value must look like, so that a workflow file is refused for a schema the
 * quality gate would read differently than its author. */

#include "dsl/schema.h"

#include "dsl/schema_int.h"
#include "engine/util/buf.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *where(const char *path)
{
    return path[0] ? path : "the top";
}

static bool is_type_name(const json_t *v)
{
    return json_is_string(v) && fr_schema_type_bit(json_string_value(v)) != 0;
}

/* True when `v` (borrowed) is an array whose every element passes `ok`
 * (and, when `nonempty`, has one at least). */
static bool all_of(const json_t *v, bool (*ok)(const json_t *), bool nonempty)
{
    size_t i;
    const json_t *e;
    bool good = json_is_array(v) && (!nonempty || json_array_size(v) > 0);
    json_array_foreach(v, i, e)
    {
        good = good && ok(e);
    }
    return good;
}

static bool is_string(const json_t *v)
{
    return json_is_string(v);
}

/* Checks the value `v` (borrowed) of keyword `k` in the schema at `path`.
 * Returns 0, or -1 with `why` (`n` bytes) filled. */
static int check_shape(const fr_schema_keyword *k, const json_t *v, const char *path, char *why,
                       size_t n)
{
    char sub[256];
    const char *sep = path[0] ? "." : "";
    switch (k->shape) {
    case FR_SHAPE_TYPE: {
        if (is_type_name(v) || all_of(v, is_type_name, true))
            return 0;
        fr_buf list;
        fr_buf_init(&list, 0);
        fr_schema_type_list(&list);
        snprintf(why, n, "at %s: '%s' must be one of %s", where(path), k->name, fr_buf_str(&list));
        fr_buf_close(&list);
        return -1;
    }
    case FR_SHAPE_NAMES:
        if (all_of(v, is_string, false))
            return 0;
        snprintf(why, n, "at %s: '%s' must be an array of field names", where(path), k->name);
        return -1;
    case FR_SHAPE_SCHEMAS: {
        if (!json_is_object(v)) {
            snprintf(why, n, "at %s: '%s' must be a table of schemas", where(path), k->name);
            return -1;
        }
        const char *key;
        const json_t *m;
        json_object_foreach((json_t *)v, key, m)
        {
            snprintf(sub, sizeof sub, "%s%s%s.%s", path, sep, k->name, key);
            if (fr_schema_check(m, sub, why, n) != 0)
                return -1;
        }
        return 0;
    }
    case FR_SHAPE_SCHEMA_OR_BOOL:
        if (json_is_boolean(v))
            return 0;
        /* fall through */
    case FR_SHAPE_SCHEMA:
        snprintf(sub, sizeof sub, "%s%s%s", path, sep, k->name);
        return fr_schema_check(v, sub, why, n);
    case FR_SHAPE_ARRAY:
        if (json_is_array(v))
            return 0;
        snprintf(why, n, "at %s: '%s' must be an array of values", where(path), k->name);
        return -1;
    case FR_SHAPE_REFUSED:
        /* The list names the keywords of the table that judge values, in
         * the order the documentation gives them. */
        snprintf(why, n,
                 "at %s: flowrun cannot check '%s' (it checks type, properties, required, "
                 "additionalProperties, items, minItems, maxItems, enum, const, minimum, "
                 "maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength)",
                 where(path), k->name);
        return -1;
    case FR_SHAPE_ANY:
    default:
        return 0;
    }
}

/*
 * Checks that the schema `s` (borrowed) at `path` (borrowed) has only
 * keywords of the right shape (see schema.h): the table's keywords in its
 * order, recursing into nested schemas. Returns 0, or -1 with `why` (`n`
 * bytes) filled.
 */
int fr_schema_check(const json_t *s, const char *path, char *why, size_t n)
{
    if (!json_is_object(s)) {
        snprintf(why, n, "at %s: a schema must be a table of keywords", where(path));
        return -1;
    }
    size_t nk = 0;
    const fr_schema_keyword *kw = fr_schema_keywords(&nk);
    for (size_t i = 0; i < nk; i++) {
        const json_t *v = json_object_get(s, kw[i].name);
        if (v && check_shape(&kw[i], v, path, why, n) != 0)
            return -1;
    }
    return 0;
}
