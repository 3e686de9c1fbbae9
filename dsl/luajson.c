#include "dsl/luajson.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

static void push_json(lua_State *L, const json_t *v, int depth)
{
    if (!v || depth > MAX_DEPTH || !lua_checkstack(L, 3)) {
        lua_pushnil(L);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        json_t *val;
        lua_createtable(L, 0, (int)json_object_size(v));
        json_object_foreach((json_t *)v, key, val)
        {
            push_json(L, val, depth + 1); /* [t, val] */
            lua_setfield(L, -2, key);     /* [t] */
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *val;
        lua_createtable(L, (int)json_array_size(v), 0);
        json_array_foreach(v, i, val)
        {
            push_json(L, val, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        break;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    case JSON_NULL:
        lua_pushnil(L);
        break;
    }
}

void fr_lua_push_json(lua_State *L, const json_t *v)
{
    push_json(L, v, 0);
}

/* Returns n when the table at idx has exactly the keys 1..n, else 0. Uses
 * raw access only, so metamethods of untrusted tables never run. */
static lua_Integer array_length(lua_State *L, int idx)
{
    lua_Integer n = 0, count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [key, val] */
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1)) {
            lua_pop(L, 1);
            return 0;
        }
        lua_Integer k = lua_tointeger(L, -1);
        if (k < 1) {
            lua_pop(L, 1);
            return 0;
        }
        if (k > n)
            n = k;
        count++;
    }
    return count == n ? n : 0;
}

/* Bounds a conversion: tables on the current path (cycles) and values past
 * a total budget (shared subtables can multiply) become null. */
typedef struct walk {
    const void *path[MAX_DEPTH + 1];
    long budget;
} walk;

static json_t *to_json(lua_State *L, int idx, int depth, walk *w)
{
    idx = lua_absindex(L, idx);
    if (--w->budget < 0)
        return json_null();
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, idx));
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            return json_integer((json_int_t)lua_tointeger(L, idx));
        return json_real(lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        json_t *j = json_stringn_nocheck(s, len);
        return j ? j : json_null();
    }
    case LUA_TTABLE:
        break;
    default:
        return json_null();
    }
    if (depth > MAX_DEPTH || !lua_checkstack(L, 4))
        return json_null();
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < depth; i++)
        if (w->path[i] == self)
            return json_null();
    w->path[depth] = self;
    lua_Integer n = array_length(L, idx);
    if (n > 0) {
        json_t *arr = json_array();
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            json_array_append_new(arr, to_json(L, -1, depth + 1, w));
            lua_pop(L, 1);
        }
        return arr;
    }
    json_t *obj = json_object();
    lua_pushnil(L);
    while (lua_next(L, idx)) { /* [key, val] */
        char num[64];
        const char *key = NULL;
        if (lua_type(L, -2) == LUA_TSTRING)
            key = lua_tostring(L, -2);
        else if (lua_type(L, -2) == LUA_TNUMBER) {
            if (lua_isinteger(L, -2))
                snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -2));
            else
                snprintf(num, sizeof num, "%.17g", lua_tonumber(L, -2));
            key = num;
        }
        if (key)
            json_object_set_new(obj, key, to_json(L, -1, depth + 1, w));
        lua_pop(L, 1); /* [key] */
    }
    return obj;
}

json_t *fr_lua_to_json(lua_State *L, int idx)
{
    walk w = {.budget = 100000};
    return to_json(L, idx, 0, &w);
}

/* ---- The strict copy of task schemas ----------------------------------- */

/* Unlike the lenient copy above, anything without a JSON form is an error
 * naming its path, and object keys come out sorted so the JSON does not
 * depend on Lua's hash order (schemas are part of the result cache key). */

#define STRICT_MAX_DEPTH 64

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
    if (depth > STRICT_MAX_DEPTH)
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
