#pragma once
/* Copies between JSON values and Lua values: the only way data crosses the
 * C/Lua boundary (plain tables in, plain values out). Used by the prompt
 * context and by the policy host. */

#include <jansson.h>
#include <lua.h>

/* Pushes a Lua copy of `v` (borrowed): objects become tables, arrays
 * 1-based tables, null becomes nil, integers stay integers. Deep values
 * beyond 64 levels become nil. [-0, +1] */
void fr_lua_push_json(lua_State *L, const json_t *v);

/* Returns an owned JSON copy of the Lua value at `idx`: a table with only
 * the keys 1..n (n >= 1) becomes an array, any other table an object (keys
 * converted to strings), functions and userdata become null. Cycles, depth
 * beyond 64 and values beyond 100,000 in all become null. Never raises a Lua error. */
json_t *fr_lua_to_json(lua_State *L, int idx);
