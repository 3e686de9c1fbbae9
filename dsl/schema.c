/* Task schemas: a strict Lua table -> JSON copy and a check that the result
 * looks like a JSON Schema. Unlike the lenient bridge in dsl/luajson.c,
 * anything without a JSON form is an error naming its path, and object keys
 * come out sorted so the JSON does not depend on Lua's hash order (schemas
 * are part of the result cache key). */

#include "dsl/load_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define N(a)      (sizeof(a) / sizeof *(a))

typedef struct conv {
    lua_State *L;
    char *why;
    size_t whylen;
    char path[256];
} conv;

static int fail(conv *c, const char *fmt, const char *detail)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, detail);
    if (c->path[0])
        snprintf(c->why, c->whylen, "%s: %s", c->path, msg);
    else
        snprintf(c->why, c->whylen, "%s", msg);
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Classifies the table at `idx`: 1 array (keys exactly 1..n, *n set), 0
 * object (string keys or empty; *n = key count), -1 neither. */
static int classify(lua_State *L, int idx, size_t *n)
{
    size_t total = 0, nstr = 0, nint = 0;
    lua_Integer max = 0;
    lua_pushnil(L); /* [nil] */
    while (lua_next(L, idx)) {
        /* [k, v] */
        total++;
        if (lua_type(L, -2) == LUA_TSTRING) {
            nstr++;
        } else if (lua_isinteger(L, -2)) {
            lua_Integer k = lua_tointeger(L, -2);
            if (k >= 1) {
                nint++;
                if (k > max)
                    max = k;
            }
        }
        lua_pop(L, 1); /* [k] */
    }
    *n = total;
    if (total == 0 || nstr == total)
        return 0;
    if (nint == total && (size_t)max == total)
        return 1;
    return -1;
}

static int fill(conv *c, int idx, json_t *dst, int depth);

/* Converts the value at `vidx` and attaches it to `parent` under `key`
 * (NULL: appended to the array `parent`). */
static int put(conv *c, json_t *parent, const char *key, int vidx, int depth)
{
    lua_State *L = c->L;
    json_t *v = NULL;
    int t = lua_type(L, vidx);
    switch (t) {
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, vidx, &len);
        v = json_stringn(s, len);
        if (!v)
            return fail(c, "%s", "string is not valid UTF-8");
        break;
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, vidx)) {
            v = json_integer((json_int_t)lua_tointeger(L, vidx));
        } else {
            double d = (double)lua_tonumber(L, vidx);
            if (!isfinite(d))
                return fail(c, "%s", "number is not finite");
            v = json_real(d);
        }
        break;
    case LUA_TBOOLEAN:
        v = json_boolean(lua_toboolean(L, vidx));
        break;
    case LUA_TTABLE: {
        size_t n;
        int kind = classify(L, vidx, &n);
        if (kind < 0)
            return fail(c, "%s",
                        "table mixes list items and named fields (or has a gap or "
                        "non-string keys)");
        v = kind == 1 ? json_array() : json_object();
        break;
    }
    default:
        return fail(c, "a %s has no JSON form", lua_typename(L, t));
    }
    if (!v)
        return fail(c, "%s", "out of memory");
    json_t *child = v;
    int rc = key ? json_object_set_new(parent, key, v) : json_array_append_new(parent, v);
    if (rc != 0)
        return fail(c, "%s", "key is not valid UTF-8");
    if (t == LUA_TTABLE)
        return fill(c, vidx, child, depth + 1);
    return 0;
}

/* Fills the (attached) container `dst` from the table at `idx`. */
static int fill(conv *c, int idx, json_t *dst, int depth)
{
    lua_State *L = c->L;
    if (depth > MAX_DEPTH)
        return fail(c, "%s", "nested too deeply (a table that contains itself?)");
    luaL_checkstack(L, 4, "table nested too deeply");
    idx = lua_absindex(L, idx);
    size_t plen = strlen(c->path);
    if (json_is_array(dst)) {
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        for (lua_Integer i = 1; i <= n; i++) {
            snprintf(c->path + plen, sizeof c->path - plen, "[%lld]", (long long)i);
            lua_rawgeti(L, idx, i); /* [v] */
            int rc = put(c, dst, NULL, lua_gettop(L), depth);
            lua_pop(L, 1); /* [] */
            if (rc != 0)
                return rc;
        }
        c->path[plen] = '\0';
        return 0;
    }
    size_t n = 0;
    classify(L, idx, &n);
    /* The keys live in the table, which stays on the stack; their pointers
     * are sorted in a userdata so nothing leaks if Lua raises. */
    const char **keys = lua_newuserdatauv(L, (n ? n : 1) * sizeof *keys, 0); /* [keys] */
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* [keys, key, v] */
        if (k < n)
            keys[k++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(keys, k, sizeof *keys, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++) {
        snprintf(c->path + plen, sizeof c->path - plen, "%s%s", plen ? "." : "", keys[i]);
        lua_pushstring(L, keys[i]); /* [keys, key] */
        lua_rawget(L, idx);         /* [keys, v] */
        rc = put(c, dst, keys[i], lua_gettop(L), depth);
        lua_pop(L, 1); /* [keys] */
    }
    lua_pop(L, 1); /* [] */
    if (rc == 0)
        c->path[plen] = '\0';
    return rc;
}

/*
 * Converts the table at `idx` into a new JSON value stored in *slot (owned
 * by the caller, set before filling). Returns 0, or -1 with `why` filled;
 * *slot may then hold a partial value the caller frees. May raise a Lua
 * memory error (protected mode only).
 */
int fr_lua_table_to_json(lua_State *L, int idx, json_t **slot, char *why, size_t whylen)
{
    conv c = {.L = L, .why = why, .whylen = whylen};
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        snprintf(why, whylen, "expected a table, got %s", luaL_typename(L, idx));
        return -1;
    }
    size_t n;
    int kind = classify(L, idx, &n);
    if (kind < 0) {
        snprintf(why, whylen,
                 "table mixes list items and named fields (or has a gap or "
                 "non-string keys)");
        return -1;
    }
    *slot = kind == 1 ? json_array() : json_object();
    if (!*slot) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return fill(&c, idx, *slot, 0);
}

static bool known(const char *k, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, names[i]) == 0)
            return true;
    return false;
}

static bool is_schema_type(const json_t *v)
{
    static const char *const types[] = {"object",  "array",   "string", "number",
                                        "integer", "boolean", "null"};
    return json_is_string(v) && known(json_string_value(v), types, N(types));
}

/*
 * Checks that `s` (borrowed) looks like a JSON Schema: `type` a known type
 * name or an array of them, `required` an array of strings, `properties` a
 * table of schemas, `enum` an array, and the nested schemas (properties,
 * items, additionalProperties) likewise; keywords the quality gate cannot
 * enforce (anyOf, pattern, $ref, ...) are refused. `path`
 * (borrowed) prefixes locations. Returns 0, or -1 with `why` (`n` bytes)
 * saying where and what, e.g. "at properties.files: 'type' must be ...".
 */
int fr_schema_check(const json_t *s, const char *path, char *why, size_t n)
{
    char sub[256];
    const char *at = path[0] ? path : "the top";
    if (!json_is_object(s)) {
        snprintf(why, n, "at %s: a schema must be a table of keywords", at);
        return -1;
    }
    const json_t *type = json_object_get(s, "type");
    if (type) {
        bool ok = is_schema_type(type);
        if (json_is_array(type)) {
            size_t i;
            const json_t *v;
            ok = json_array_size(type) > 0;
            json_array_foreach(type, i, v)
            {
                ok = ok && is_schema_type(v);
            }
        }
        if (!ok) {
            snprintf(why, n,
                     "at %s: 'type' must be one of \"object\", \"array\", \"string\", "
                     "\"number\", \"integer\", \"boolean\", \"null\"",
                     at);
            return -1;
        }
    }
    const json_t *req = json_object_get(s, "required");
    if (req) {
        size_t i;
        const json_t *v;
        bool ok = json_is_array(req); /* the loop below is empty otherwise */
        json_array_foreach(req, i, v)
        {
            ok = ok && json_is_string(v);
        }
        if (!ok) {
            snprintf(why, n, "at %s: 'required' must be an array of field names", at);
            return -1;
        }
    }
    const json_t *props = json_object_get(s, "properties");
    if (props) {
        if (!json_is_object(props)) {
            snprintf(why, n, "at %s: 'properties' must be a table of schemas", at);
            return -1;
        }
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)props, k, v)
        {
            snprintf(sub, sizeof sub, "%s%sproperties.%s", path, path[0] ? "." : "", k);
            if (fr_schema_check(v, sub, why, n) != 0)
                return -1;
        }
    }
    /* The quality gate (engine/validate) enforces a subset; a keyword it
     * would ignore must not look enforced, so it is refused here. */
    static const char *const unchecked[] = {
        "anyOf", "oneOf", "allOf", "not", "$ref", "pattern", "patternProperties", "if", "then",
        "else", "contains", "uniqueItems", "multipleOf", "dependentRequired", "dependentSchemas",
        "propertyNames"};
    for (size_t i = 0; i < N(unchecked); i++)
        if (json_object_get(s, unchecked[i])) {
            snprintf(why, n,
                     "at %s: flowrun cannot check '%s' (it checks type, properties, required, "
                     "additionalProperties, items, minItems, maxItems, enum, const, minimum, "
                     "maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength)",
                     at, unchecked[i]);
            return -1;
        }
    static const char *const single[] = {"items", "additionalProperties"};
    for (size_t i = 0; i < N(single); i++) {
        const json_t *v = json_object_get(s, single[i]);
        if (!v || (i == 1 && json_is_boolean(v)))
            continue;
        snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", single[i]);
        if (fr_schema_check(v, sub, why, n) != 0)
            return -1;
    }
    const json_t *en = json_object_get(s, "enum");
    if (en && !json_is_array(en)) {
        snprintf(why, n, "at %s: 'enum' must be an array of values", at);
        return -1;
    }
    return 0;
}
