#pragma once
/* Copies between JSON values and Lua values: the only way data crosses the
 * C/Lua boundary (plain tables in, plain values out). Used by the prompt
 * context and by the policy host; the strict copy, by the loader for task
 * schemas. */

#include <jansson.h>
#include <lua.h>
#include <stddef.h>

/* Pushes a Lua copy of `v` (borrowed): objects become tables, arrays
 * 1-based tables, null becomes nil, integers stay integers. Deep values
 * beyond 64 levels become nil. [-0, +1] */
void fr_lua_push_json(lua_State *L, const json_t *v);

/* Returns an owned JSON copy of the Lua value at `idx`: a table with only
 * the keys 1..n (n >= 1) becomes an array, any other table an object (keys
 * converted to strings), functions and userdata become null. Cycles, depth
 * beyond 64 and values beyond 100,000 in all become null. Never raises a Lua error. */
json_t *fr_lua_to_json(lua_State *L, int idx);

/* Converts the table at `idx` to JSON, strictly: a table whose keys are
 * exactly 1..n is an array; an empty table or one with only string keys is
 * an object (keys inserted in sorted order); mixed keys, functions,
 * userdata, non-finite numbers and invalid UTF-8 are refused. The root is
 * stored in *slot (owned by the caller) before it is filled, so a Lua
 * memory error raised midway (protected mode only) leaks nothing. Returns 0,
 * or -1 with `why` (`whylen` bytes) naming the path, e.g.
 * "properties.files: a function has no JSON form". */
int fr_lua_table_to_json(lua_State *L, int idx, json_t **slot, char *why, size_t whylen);
