#include "dsl/luajson.h"

#include <lauxlib.h>
#include <stdio.h>

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
