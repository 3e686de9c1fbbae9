#pragma once
/* Sandboxed Lua states for workflow files, prompt functions and policies:
 * an allow-listed environment, text chunks only, a memory budget per state,
 * an instruction budget per call (Lua's own instructions not counted in a
 * trusted state: flowrun's built-in policies), and the one helper through
 * which C calls into Lua. Talks to nothing else. */

#include "engine/util/err.h"

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_lua_limits {
    size_t mem_bytes;  /* per state; 0 = 64 MiB */
    long instructions; /* per call through fr_lua_call; 0 = 10 million */
} fr_lua_limits;

/* Returns a new state (owned; fr_sandbox_free) whose registry holds the
 * sandbox environment: copies of string, table, math, utf8; os.time,
 * os.clock, os.date; print routed to fr_log with component `log_name`
 * (borrowed, copied); pairs, ipairs, type, tostring, tonumber, select, next,
 * error, assert, pcall, rawequal, rawlen, rawget, setmetatable,
 * getmetatable (the string metatable is protected). No io, os.execute,
 * require, load, dofile, loadfile, debug, collectgarbage. NULL on OOM. */
lua_State *fr_sandbox_new(const fr_lua_limits *lim, const char *log_name);

/* Frees a state from fr_sandbox_new; NULL is fine. */
void fr_sandbox_free(lua_State *L);

/* Pushes the sandbox environment table. [-0, +1] */
void fr_sandbox_push_env(lua_State *L);

/* Loads the text chunk in file `path` (borrowed) with the sandbox
 * environment as its _ENV, and pushes the function. Bytecode is refused.
 * Errors: FR_ENOENT (cannot read), FR_ESYNTAX (err has file and line). */
int fr_sandbox_load_file(lua_State *L, const char *path, fr_error *err);
/* fr_sandbox_load_file through the cache of compiled files (dsl/chunkcache):
 * a file of FR_CHUNKCACHE_MIN bytes or more whose text is kept compiled is
 * loaded as the bytecode it compiled to, and with `keep` one that is not is
 * kept once it compiles. The same function, errors and lines either way.
 * Blocking file I/O: for a workflow's load, before the loop runs. */
int fr_sandbox_load_file_cached(lua_State *L, const char *path, bool keep, fr_error *err);

/* Like fr_sandbox_load_file for a string `code` of `len` bytes named `name`. */
int fr_sandbox_load_string(lua_State *L, const char *code, size_t len, const char *name,
                           fr_error *err);

/* The one way C calls Lua: calls the function below `nargs` arguments on the
 * stack with a traceback handler and the instruction budget, like lua_pcall.
 * An exhausted budget cannot be swallowed by a pcall inside the callee: it
 * keeps failing until the call returns, and the call fails. On success
 * leaves `nresults` values; on failure leaves nothing and returns FR_ELUA
 * (runtime error), FR_ELIMIT (instructions or memory) with `err` carrying
 * the source:line of the failure; `what` (borrowed, may be NULL for no
 * prefix) names the call for the message, e.g. "prompt of task 'api'".
 * Nested calls share the outermost call's instruction budget. */
int fr_lua_call(lua_State *L, int nargs, int nresults, const char *what, fr_error *err);

/* Marks the code of state `L` (borrowed) as flowrun's own, such as the
 * built-in policies compiled into the binary, whose loops are bounded by
 * their arguments: from now on fr_lua_call runs it without Lua's count hook,
 * which costs every Lua instruction a call (half of a built-in policy's
 * time). The memory budget stays, and so does the instruction budget of
 * loops inside C functions (string.rep, table.concat, ...). Never for code
 * read from a file or written by a user. */
void fr_sandbox_trust(lua_State *L);

/* Returns how many times the scripts of state `L` (borrowed) called
 * setmetatable so far: a host that keeps tables it gave a script sees
 * whether their metatables may have changed. */
unsigned long fr_sandbox_metatables_set(lua_State *L);

/* Extracts "source" and line from a Lua error message "file:12: text" into
 * `err` with `code`. Returns `code`. */
int fr_lua_error_from_msg(fr_error *err, int code, const char *msg);

/* Pops the top value and returns a registry reference to it (LUA_REFNIL for
 * nil). Protected mode only (may raise a memory error). The one struct that
 * stores the reference owns it and releases it with fr_sandbox_unref. */
int fr_sandbox_ref(lua_State *L);

/* Releases a reference from fr_sandbox_ref; LUA_NOREF/LUA_REFNIL are ignored. */
void fr_sandbox_unref(lua_State *L, int ref);

/* Returns how many fr_sandbox_ref references are live over all states; tests
 * check that it returns to 0 once everything is freed. */
long fr_sandbox_live_refs(void);

/* Returns the bytes the state's allocator currently holds. */
size_t fr_sandbox_mem_used(lua_State *L);
