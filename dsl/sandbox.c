/* Sandboxed Lua states: a budgeted allocator, an allow-listed environment
 * kept in the registry, text-only chunk loading, and fr_lua_call, the one
 * helper through which C calls Lua (traceback, instruction budget, errors
 * turned into fr_error with the script's file:line). */

#include "dsl/sandbox.h"

#include "dsl/chunkcache.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_MEM_BYTES    ((size_t)64 << 20)
#define DEFAULT_INSTRUCTIONS 10000000L
#define HOOK_STEP            1000
#define MAX_PATHS            8

/* Lua's small blocks (strings, tables, closures, upvalues: nearly all of
 * its allocations) come from slabs the state owns, with a free list per
 * size class: malloc and free per block cost a workflow of 10,000
 * declarations more than flowrun's own reading of them, and closing the
 * state frees slabs, not every block. A freed block serves its class again
 * in the same state; the budget still counts the sizes Lua asks for. Under
 * AddressSanitizer every block is malloc'd, so a use after free in Lua's
 * memory is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_MAX 0
#endif
#endif
#ifndef POOL_MAX
#define POOL_MAX 256 /* bytes: larger blocks go to malloc */
#endif
#define POOL_STEP  16 /* size classes, a multiple of malloc's alignment */
#define SLAB_BYTES ((size_t)64 << 10)

/* The head of a slab, as aligned as malloc's blocks. */
typedef union slab_head {
    union slab_head *next;
    max_align_t align;
} slab_head;

/* Per-state bookkeeping, reached through the allocator's userdata. */
typedef struct sandbox {
    lua_State *L;
    size_t used;  /* bytes currently allocated by Lua */
    size_t limit; /* byte budget */
    long instr_limit;
    int step;                     /* instructions between hook ticks */
    long remaining;               /* instructions left in the current outermost call */
    int depth;                    /* nesting of fr_lua_call */
    bool trusted;                 /* fr_sandbox_trust: calls run without the count hook */
    unsigned long metatables_set; /* calls of setmetatable */
    bool instr_tripped;
    bool mem_tripped; /* an allocation was refused during the call */
    int trip_line;    /* where the budget ran out, 0 = unknown */
    char trip_source[512];
    int err_line; /* where the last error was raised (traceback), 0 = unknown */
    char err_source[512];
    char component[96]; /* "lua:<name>" */
    char *paths[MAX_PATHS];
    size_t npaths;
    void *free_blocks[POOL_MAX / POOL_STEP + 1]; /* per size class, linked through them */
    slab_head *slabs;                            /* every slab, newest first */
    char *slab_cur;                              /* the newest slab's unused tail */
    size_t slab_left;
} sandbox;

static const char env_key = 'E';
static long g_live_refs;

static sandbox *sandbox_of(lua_State *L)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    return ud;
}

static void hook(lua_State *L, lua_Debug *ar);
static bool innermost_position(lua_State *L, int level, char *src, size_t n, int *line);

static bool pooled(size_t n)
{
    return n > 0 && n <= POOL_MAX;
}

static size_t size_class(size_t n)
{
    return (n + POOL_STEP - 1) / POOL_STEP;
}

/* A block of `n` (pooled) bytes from its class's free list or the newest
 * slab, or NULL when a new slab cannot be had. */
static void *pool_get(sandbox *sb, size_t n)
{
    size_t c = size_class(n);
    void *p = sb->free_blocks[c];
    if (p) {
        sb->free_blocks[c] = *(void **)p;
        return p;
    }
    size_t bytes = c * POOL_STEP;
    if (sb->slab_left < bytes) {
        slab_head *s = malloc(SLAB_BYTES);
        if (!s)
            return NULL;
        s->next = sb->slabs;
        sb->slabs = s;
        sb->slab_cur = (char *)(s + 1);
        sb->slab_left = SLAB_BYTES - sizeof *s;
    }
    p = sb->slab_cur;
    sb->slab_cur += bytes;
    sb->slab_left -= bytes;
    return p;
}

/* Gives back block `p` (NULL is fine) that Lua holds as `n` bytes. */
static void release(sandbox *sb, void *p, size_t n)
{
    if (!p)
        return;
    if (!pooled(n)) {
        free(p);
        return;
    }
    size_t c = size_class(n);
    *(void **)p = sb->free_blocks[c];
    sb->free_blocks[c] = p;
}

static void free_slabs(sandbox *sb)
{
    while (sb->slabs) {
        slab_head *next = sb->slabs->next;
        free(sb->slabs);
        sb->slabs = next;
    }
}

/* Resizes block `ptr` of `old` bytes (NULL, 0: a new block) to `nsize` > 0
 * bytes, keeping its contents; NULL on failure, with `ptr` untouched. A
 * block is pooled exactly when the size Lua holds it as is. */
static void *resize(sandbox *sb, void *ptr, size_t old, size_t nsize)
{
    if (ptr && pooled(old) && pooled(nsize) && size_class(old) == size_class(nsize))
        return ptr;
    if (!pooled(nsize) && !(ptr && pooled(old)))
        return realloc(ptr, nsize);
    void *p = pooled(nsize) ? pool_get(sb, nsize) : malloc(nsize);
    if (p && ptr) {
        memcpy(p, ptr, old < nsize ? old : nsize);
        release(sb, ptr, old);
    }
    return p;
}

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    sandbox *sb = ud;
    size_t old = ptr ? osize : 0; /* without ptr, osize is a type tag */
    if (nsize == 0) {
        release(sb, ptr, old);
        sb->used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > sb->limit - sb->used) {
        if (sb->depth > 0) {
            /* The budget is spent. Make it stick even if the script catches
             * the memory error (or Lua's emergency collection frees enough
             * for a retry): the hook fails every instruction until
             * fr_lua_call returns. lua_sethook is safe to call anywhere. */
            sb->mem_tripped = true;
            /* A memory error skips the message handler, so the line is
             * taken here: the innermost Lua function allocating. */
            if (sb->trip_line == 0)
                innermost_position(sb->L, 0, sb->trip_source, sizeof sb->trip_source,
                                   &sb->trip_line);
            lua_sethook(sb->L, hook, LUA_MASKCOUNT, 1);
        }
        return NULL;
    }
    void *p = resize(sb, ptr, old, nsize);
    if (!p)
        return NULL;
    sb->used = sb->used - old + nsize;
    return p;
}

/* Copies the source of the Lua function of `ar` (filled with "Sl") into
 * `src`: the full file name, not Lua's shortened one. */
static void source_of(const lua_Debug *ar, char *src, size_t n)
{
    const char *s = ar->source[0] == '@' || ar->source[0] == '=' ? ar->source + 1 : ar->short_src;
    snprintf(src, n, "%s", s);
}

/* Finds the innermost Lua function with a known line at stack `level` or
 * above and stores its source and line; returns false (leaving them) when
 * there is none. Reads the stack only, allocates nothing: safe inside the
 * allocator and the message handler. */
static bool innermost_position(lua_State *L, int level, char *src, size_t n, int *line)
{
    lua_Debug ar;
    for (; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0)
            continue;
        source_of(&ar, src, n);
        *line = ar.currentline;
        return true;
    }
    return false;
}

/* Remembers where the budget ran out: the function of activation `ar`. */
static void record_trip(sandbox *sb, lua_State *L, lua_Debug *ar)
{
    if (sb->trip_line != 0 || !lua_getinfo(L, "Sl", ar) || ar->currentline <= 0)
        return;
    sb->trip_line = ar->currentline;
    source_of(ar, sb->trip_source, sizeof sb->trip_source);
}

static void hook(lua_State *L, lua_Debug *ar)
{
    sandbox *sb = sandbox_of(L);
    if (!sb->instr_tripped && !sb->mem_tripped) {
        sb->remaining -= sb->step;
        if (sb->remaining > 0)
            return;
        sb->instr_tripped = true;
    }
    record_trip(sb, L, ar);
    /* From now on every instruction fails, so a pcall in the callee cannot
     * swallow the error: the first instruction after it fails again. */
    lua_sethook(L, hook, LUA_MASKCOUNT, 1);
    luaL_error(L, sb->mem_tripped ? "memory limit exceeded" : "instruction limit exceeded");
}

/* Charges `n` units of work done in C (which the hook never sees) to the
 * call's instruction budget, tripping it when it runs out. */
static void charge(lua_State *L, lua_Integer n)
{
    sandbox *sb = sandbox_of(L);
    if (sb->depth == 0 || n <= 0)
        return;
    if (sb->instr_tripped || n >= sb->remaining) {
        lua_Debug ar;
        sb->instr_tripped = true;
        if (lua_getstack(L, 1, &ar))
            record_trip(sb, L, &ar);
        lua_sethook(L, hook, LUA_MASKCOUNT, 1);
        luaL_error(L, "instruction limit exceeded");
    }
    sb->remaining -= (long)n;
}

/* Calls the original function (upvalue 1) with this call's arguments and
 * returns its results. */
static int call_original(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* [args..., orig] */
    lua_insert(L, 1);                      /* [orig, args...] */
    lua_call(L, n, LUA_MULTRET);           /* [results...] */
    return lua_gettop(L);
}

/* string.rep(s, n [, sep]): its loop runs n times even for an empty
 * result, which allocates nothing, so n is charged to the budget. */
static int l_rep(lua_State *L)
{
    luaL_checkstring(L, 1);
    charge(L, luaL_checkinteger(L, 2));
    return call_original(L);
}

/* table.move(a1, f, e, t [, a2]): e - f + 1 element moves, charged. */
static int l_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2), e = luaL_checkinteger(L, 3);
    if (e >= f) {
        lua_Unsigned span = (lua_Unsigned)e - (lua_Unsigned)f;
        charge(L, span >= (lua_Unsigned)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)span + 1);
    }
    return call_original(L);
}

/* Replaces field `name` of the table at `t` by `fn`, with the original as
 * its upvalue. */
static void wrap_field(lua_State *L, int t, const char *name, lua_CFunction fn)
{
    lua_getfield(L, t, name);   /* [orig] */
    lua_pushcclosure(L, fn, 1); /* [wrapper] */
    lua_setfield(L, t, name);   /* [] */
}

static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    fr_log_event(FR_LOG_ERROR, "lua", "lua.error", "unprotected error: %s", msg ? msg : "?");
    return 0; /* Lua aborts */
}

/* print(...) routed to the logger, tab-separated like the real one. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b); /* [args..., buf?] */
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL); /* [args..., buf?, s] */
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b); /* [args..., text] */
    fr_log_event(FR_LOG_INFO, lua_tostring(L, lua_upvalueindex(1)), "lua.print", "%s",
                 lua_tostring(L, -1));
    return 0;
}

/* Pushes a shallow copy of the table at the top, minus `skip` (may be NULL),
 * replacing the original. [-1, +1] */
static void copy_table(lua_State *L, const char *skip)
{
    lua_newtable(L); /* [src, dst] */
    lua_pushnil(L);  /* [src, dst, nil] */
    while (lua_next(L, -3)) {
        /* [src, dst, k, v] */
        if (skip && lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), skip) == 0) {
            lua_pop(L, 1);
            continue;
        }
        lua_pushvalue(L, -2); /* [src, dst, k, v, k] */
        lua_insert(L, -2);    /* [src, dst, k, k, v] */
        lua_rawset(L, -4);    /* [src, dst, k] */
    }
    lua_remove(L, -2); /* [dst] */
}

static const char *const base_names[] = {
    "assert", "error",  "getmetatable", "ipairs", "next",     "pairs",    "pcall", "rawequal",
    "rawget", "rawlen", "rawset",       "select", "tonumber", "tostring", "type",  "_VERSION",
};

/* Wraps an xpcall message handler (upvalue 1). Lua runs the handler of an
 * error raised inside a hook with hooks disabled, so once the budget has
 * run out the handler is skipped: a looping handler would otherwise never
 * be stopped. */
static int guarded_handler(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    if (sb->instr_tripped || sb->mem_tripped)
        return 1; /* the message, unchanged */
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* [args..., h] */
    lua_insert(L, 1);                      /* [h, args...] */
    lua_call(L, n, 1);                     /* [ret] */
    return 1;
}

/* xpcall(f, h, ...) with h guarded; upvalue 1 is the real xpcall. */
static int l_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);                     /* [f, h, args..., h] */
    lua_pushcclosure(L, guarded_handler, 1); /* [f, h, args..., guard] */
    lua_replace(L, 2);                       /* [f, guard, args...] */
    lua_pushvalue(L, lua_upvalueindex(1));   /* [f, guard, args..., xpcall] */
    lua_insert(L, 1);                        /* [xpcall, f, guard, args...] */
    lua_call(L, n, LUA_MULTRET);             /* [results...] */
    return lua_gettop(L);
}

/* setmetatable(t, mt) refusing __gc: Lua runs finalizers with hooks
 * disabled, so a finalizer could loop beyond the instruction budget.
 * Upvalue 1 is the real setmetatable. */
static int l_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc"); /* [t, mt, ..., "__gc"] */
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "__gc metamethods are not allowed in flowrun scripts");
        lua_pop(L, 1); /* [t, mt, ...] */
    }
    sandbox_of(L)->metatables_set++;
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* [t, mt, ..., setmetatable] */
    lua_insert(L, 1);                      /* [setmetatable, t, mt, ...] */
    lua_call(L, n, 1);                     /* [t] */
    return 1;
}

/* Builds the sandbox environment; runs protected from fr_sandbox_new. */
static int setup(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    luaL_requiref(L, LUA_GNAME, luaopen_base, 1);        /* [G] */
    luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 0); /* [G, string] */
    luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 0);  /* [G, string, table] */
    luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 0);  /* [G, string, table, math] */
    luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 0);  /* [..., utf8] */
    luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 0);      /* [G, string, table, math, utf8, os] */
    lua_newtable(L);                                     /* [G, s, t, m, u, os, env] */
    int env = lua_gettop(L);

    for (size_t i = 0; i < sizeof base_names / sizeof *base_names; i++) {
        lua_getfield(L, 1, base_names[i]);
        lua_setfield(L, env, base_names[i]);
    }
    lua_pushstring(L, sb->component);
    lua_pushcclosure(L, l_print, 1);
    lua_setfield(L, env, "print");
    lua_getfield(L, 1, "xpcall");
    lua_pushcclosure(L, l_xpcall, 1);
    lua_setfield(L, env, "xpcall");
    lua_getfield(L, 1, "setmetatable");
    lua_pushcclosure(L, l_setmetatable, 1);
    lua_setfield(L, env, "setmetatable");

    /* string.dump makes bytecode; remove it from the real library too,
     * since string methods ("").dump reach it through the metatable. */
    lua_pushnil(L);
    lua_setfield(L, 2, "dump");
    /* Loops in C that allocate nothing are charged to the budget; rep is
     * wrapped in the real library since methods reach it. */
    wrap_field(L, 2, "rep", l_rep);
    wrap_field(L, 3, "move", l_move);
    lua_pushvalue(L, 2);
    copy_table(L, "dump");
    lua_setfield(L, env, "string");
    lua_pushvalue(L, 3);
    copy_table(L, NULL);
    lua_setfield(L, env, "table");
    lua_pushvalue(L, 4);
    copy_table(L, NULL);
    lua_setfield(L, env, "math");
    lua_pushvalue(L, 5);
    copy_table(L, NULL);
    lua_setfield(L, env, "utf8");
    lua_createtable(L, 0, 3); /* [..., env, os'] */
    static const char *const os_names[] = {"time", "clock", "date"};
    for (size_t i = 0; i < 3; i++) {
        lua_getfield(L, 6, os_names[i]);
        lua_setfield(L, -2, os_names[i]);
    }
    lua_setfield(L, env, "os");
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");

    /* Protect the string metatable: getmetatable("") returns false. */
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1); /* [..., env, "", mt] */
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 2); /* [..., env] */

    lua_rawsetp(L, LUA_REGISTRYINDEX, &env_key);
    return 0;
}

/*
 * Creates a sandboxed state. `lim` (borrowed, may be NULL for defaults) sets
 * the memory budget of the state and the instruction budget of each
 * fr_lua_call; `log_name` (borrowed, copied; may be NULL) names print's log
 * component "lua:<log_name>". Returns an owned state for fr_sandbox_free, or
 * NULL when the state cannot be built within the memory budget.
 */
lua_State *fr_sandbox_new(const fr_lua_limits *lim, const char *log_name)
{
    sandbox *sb = fr_xcalloc(1, sizeof *sb);
    sb->limit = lim && lim->mem_bytes ? lim->mem_bytes : DEFAULT_MEM_BYTES;
    sb->instr_limit = lim && lim->instructions > 0 ? lim->instructions : DEFAULT_INSTRUCTIONS;
    sb->step = sb->instr_limit < HOOK_STEP ? (int)sb->instr_limit : HOOK_STEP;
    snprintf(sb->component, sizeof sb->component, "lua:%s", log_name ? log_name : "script");
    lua_State *L = lua_newstate(budget_alloc, sb);
    if (!L) {
        free_slabs(sb);
        free(sb);
        return NULL;
    }
    sb->L = L;
    lua_atpanic(L, panic);
    lua_pushcfunction(L, setup);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        fr_sandbox_free(L);
        return NULL;
    }
    return L;
}

/* Closes `L` (NULL is fine) and frees its bookkeeping. */
void fr_sandbox_free(lua_State *L)
{
    if (!L)
        return;
    sandbox *sb = sandbox_of(L);
    lua_close(L); /* its pooled blocks go back to the slabs, freed here */
    free_slabs(sb);
    for (size_t i = 0; i < sb->npaths; i++)
        free(sb->paths[i]);
    free(sb);
}

/* Pushes the environment table from the registry. [-0, +1] */
void fr_sandbox_push_env(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &env_key);
}

/* Remembers a loaded file's full path, to undo Lua's truncation of long
 * chunk names ("...tail") in error messages. */
static void remember_path(sandbox *sb, const char *path)
{
    for (size_t i = 0; i < sb->npaths; i++)
        if (strcmp(sb->paths[i], path) == 0)
            return;
    if (sb->npaths < MAX_PATHS)
        sb->paths[sb->npaths++] = fr_xstrdup(path);
}

static void untruncate_source(const sandbox *sb, fr_error *err)
{
    if (!err || strncmp(err->source, "...", 3) != 0)
        return;
    const char *tail = err->source + 3;
    size_t tl = strlen(tail);
    for (size_t i = 0; i < sb->npaths; i++) {
        size_t pl = strlen(sb->paths[i]);
        if (pl >= tl && strcmp(sb->paths[i] + pl - tl, tail) == 0) {
            snprintf(err->source, sizeof err->source, "%s", sb->paths[i]);
            return;
        }
    }
}

/* Hands a chunk to lua_load one line at a time, so that an error the
 * parser raises without a position (C stack overflow in deep nesting, the
 * memory limit) can still name the line it was reading. */
typedef struct line_reader {
    const char *p;
    size_t left;
    int line; /* the line of the piece handed out last; 0 before the first */
} line_reader;

static const char *read_line(lua_State *L, void *ud, size_t *size)
{
    (void)L;
    line_reader *r = ud;
    if (r->left == 0) {
        *size = 0;
        return NULL;
    }
    const char *nl = memchr(r->p, '\n', r->left);
    size_t n = nl ? (size_t)(nl - r->p) + 1 : r->left;
    const char *piece = r->p;
    r->p += n;
    r->left -= n;
    r->line++;
    *size = n;
    return piece;
}

/* Loads `len` bytes of text `code` as chunk `chunkname`, sets its _ENV to
 * the sandbox environment and leaves the function on the stack. */
static int load_chunk(lua_State *L, const char *code, size_t len, const char *chunkname,
                      const char *source, fr_error *err)
{
    if (!lua_checkstack(L, 2))
        return fr_error_set(err, FR_ELIMIT, source, 0, "Lua stack exhausted");
    if (len >= 3 && memcmp(code, "\xEF\xBB\xBF", 3) == 0) {
        code += 3; /* a UTF-8 byte order mark, as some editors write one */
        len -= 3;
    }
    line_reader rd = {.p = code, .left = len};
    int st = lua_load(L, read_line, &rd, chunkname, "t"); /* [fn | msg] */
    int line = rd.line > 0 ? rd.line : 1;
    if (st == LUA_ERRMEM) {
        lua_pop(L, 1);
        return fr_error_set(err, FR_ELIMIT, source, line, "memory limit exceeded while parsing");
    }
    if (st != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        int rc = fr_lua_error_from_msg(err, FR_ESYNTAX, msg ? msg : "syntax error");
        if (err && !err->source[0])
            snprintf(err->source, sizeof err->source, "%s", source);
        if (err && err->line == 0) {
            err->line = line; /* where the parser was reading */
            if (strcmp(err->msg, "C stack overflow") == 0)
                snprintf(err->msg, sizeof err->msg,
                         "C stack overflow: the code nests too deeply here (Lua allows about "
                         "200 levels of tables, calls and blocks); flatten it");
        }
        untruncate_source(sandbox_of(L), err);
        lua_pop(L, 1);
        return rc;
    }
    fr_sandbox_push_env(L);   /* [fn, env] */
    lua_setupvalue(L, -2, 1); /* [fn] */
    return FR_OK;
}

/*
 * Reads the file at `path` (borrowed) and loads it as a text chunk with the
 * sandbox environment, pushing the function [-0, +1 on FR_OK]. Bytecode is
 * refused (FR_ESYNTAX). Returns FR_ENOENT when the file cannot be read,
 * FR_ESYNTAX with err's source/line at the error, FR_ELIMIT when parsing
 * runs out of memory. A first line starting with '#' is skipped. With
 * `cache`, through dsl/chunkcache (and kept there with `keep`): a file's
 * bytecode is what flowrun itself compiled from the same text, never the
 * file's own.
 */
static int load_file(lua_State *L, const char *path, bool cache, bool keep, fr_error *err)
{
    int rc = FR_OK;
    char *data = NULL;
    size_t len = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = fr_error_set(err, FR_ENOENT, path, 0, "cannot read: %s", strerror(errno));
        goto cleanup;
    }
    /* A regular file is read in one go into a buffer of its size: no
     * doubling copies of a workflow of megabytes. Anything else (a pipe)
     * grows as it comes. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        cap = (size_t)st.st_size + 4096;
        data = fr_xmalloc(cap);
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = fr_xrealloc(data, cap);
        }
        size_t n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = fr_error_set(err, FR_ENOENT, path, 0, "cannot read: %s", strerror(errno));
        goto cleanup;
    }
    size_t skip = len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* a BOM */
    if (len > skip && data[skip] == '#')
        while (skip < len && data[skip] != '\n')
            skip++;
    remember_path(sandbox_of(L), path);
    char *chunkname = fr_xasprintf("@%s", path);
    if (cache && lua_checkstack(L, 2) &&
        fr_chunkcache_load(L, path, chunkname, data + skip, len - skip)) { /* [fn] */
        fr_sandbox_push_env(L);                                            /* [fn, env] */
        lua_setupvalue(L, -2, 1);                                          /* [fn] */
    } else {
        rc = load_chunk(L, data + skip, len - skip, chunkname, path, err);
        if (rc == FR_OK && cache && keep)
            fr_chunkcache_store(L, path, chunkname, data + skip, len - skip);
    }
    free(chunkname);
cleanup:
    if (f)
        fclose(f);
    free(data);
    return rc;
}

int fr_sandbox_load_file(lua_State *L, const char *path, fr_error *err)
{
    return load_file(L, path, false, false, err);
}

int fr_sandbox_load_file_cached(lua_State *L, const char *path, bool keep, fr_error *err)
{
    return load_file(L, path, true, keep, err);
}

/*
 * Loads `len` bytes of `code` (borrowed) as a text chunk named `name`
 * (borrowed; messages read "name:LINE: ..."), pushing the function.
 * Same errors as fr_sandbox_load_file, without FR_ENOENT.
 */
int fr_sandbox_load_string(lua_State *L, const char *code, size_t len, const char *name,
                           fr_error *err)
{
    const char *n = name ? name : "?";
    char *chunkname = fr_xasprintf("=%s", n);
    int rc = load_chunk(L, code, len, chunkname, n, err);
    free(chunkname);
    return rc;
}

/* Message handler: turns any error value into a string with a traceback,
 * and remembers the innermost Lua line on the stack, for errors whose
 * message carries none (error({}), error(), error("text", 0)). An object
 * with __tostring is described by it, called protected: a failing one
 * cannot replace the error being reported. */
static int traceback(lua_State *L)
{
    sandbox *sb = sandbox_of(L);
    if (!innermost_position(L, 1, sb->err_source, sizeof sb->err_source, &sb->err_line))
        sb->err_line = 0;
    const char *msg = lua_tostring(L, 1);
    if (!msg && lua_checkstack(L, 4)) {
        bool budget_left = !sb->instr_tripped && !sb->mem_tripped;
        if (budget_left && luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
            lua_pushvalue(L, 1);            /* [err, ..., tostring, err] */
            int st = lua_pcall(L, 1, 1, 0); /* [err, ..., text | its error] */
            if (st == LUA_OK && lua_type(L, -1) == LUA_TSTRING) {
                msg = lua_tostring(L, -1);
            } else {
                /* Its own error, without the position: that one names the
                 * line where the object was raised. */
                fr_error why = {0};
                if (st == LUA_OK)
                    snprintf(why.msg, sizeof why.msg, "it returned a %s, not a string",
                             luaL_typename(L, -1));
                else if (lua_type(L, -1) == LUA_TSTRING)
                    fr_lua_error_from_msg(&why, FR_ELUA, lua_tostring(L, -1));
                else
                    snprintf(why.msg, sizeof why.msg, "it raised a %s", luaL_typename(L, -1));
                msg = lua_pushfstring(L, "(error object is a %s value; its __tostring failed: %s)",
                                      luaL_typename(L, 1), why.msg);
            }
        } else {
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
        }
    }
    if (!msg)
        return 1;                 /* no stack left: the object as it is */
    luaL_traceback(L, L, msg, 1); /* [err, ..., msg+traceback] */
    return 1;
}

unsigned long fr_sandbox_metatables_set(lua_State *L)
{
    return sandbox_of(L)->metatables_set;
}

void fr_sandbox_trust(lua_State *L)
{
    sandbox_of(L)->trusted = true;
}

/*
 * Calls the function below `nargs` arguments with the traceback handler
 * and the instruction budget (shared by nested calls: only the outermost
 * call starts a new budget). On FR_OK leaves `nresults` values. On failure
 * leaves nothing above the function's slot and returns FR_ELUA or FR_ELIMIT
 * with `err` at the script's source:line; `what` (borrowed, may be NULL)
 * prefixes the message. FR_ELIMIT is returned once a budget ran out, even if
 * the function caught the error and returned. The full traceback goes to
 * the log at debug level.
 */
int fr_lua_call(lua_State *L, int nargs, int nresults, const char *what, fr_error *err)
{
    sandbox *sb = sandbox_of(L);
    int base = lua_gettop(L) - nargs; /* the function's slot */
    if (!lua_checkstack(L, 2)) {
        lua_settop(L, base - 1);
        return fr_error_set(err, FR_ELIMIT, "", 0, "%s%sLua stack exhausted", what ? what : "",
                            what ? ": " : "");
    }
    bool outer = sb->depth == 0;
    if (outer) {
        sb->remaining = sb->instr_limit;
        sb->instr_tripped = sb->mem_tripped = false;
        sb->trip_line = 0;
        sb->trip_source[0] = '\0';
        if (!sb->trusted)
            lua_sethook(L, hook, LUA_MASKCOUNT, sb->step);
    }
    sb->err_line = 0;
    lua_pushcfunction(L, traceback); /* [fn, args..., tb] */
    lua_insert(L, base);             /* [tb, fn, args...] */
    sb->depth++;
    int st = lua_pcall(L, nargs, nresults, base);
    sb->depth--;
    if (outer)
        lua_sethook(L, NULL, 0, 0);
    bool mem = sb->mem_tripped || st == LUA_ERRMEM;
    bool instr = sb->instr_tripped && !mem;
    if (st == LUA_OK && !mem && !instr) {
        lua_remove(L, base); /* [results...] */
        return FR_OK;
    }

    int rc;
    const char *msg = st != LUA_OK ? lua_tostring(L, -1) : NULL;
    fr_log_event(FR_LOG_DEBUG, sb->component, "lua.error", "call=\"%s\" error=\"%s\"",
                 what ? what : "chunk",
                 msg ? msg : (mem ? "memory limit exceeded" : "instruction limit exceeded"));
    const char *sep = what ? ": " : "";
    what = what ? what : "";
    if (mem || instr) {
        if (mem)
            rc = fr_error_set(err, FR_ELIMIT, sb->trip_source, sb->trip_line,
                              "%s%smemory limit exceeded (%zu bytes)", what, sep, sb->limit);
        else
            rc = fr_error_set(err, FR_ELIMIT, sb->trip_source, sb->trip_line,
                              "%s%sinstruction limit exceeded (%ld instructions)", what, sep,
                              sb->instr_limit);
    } else {
        rc = fr_lua_error_from_msg(err, FR_ELUA, msg ? msg : "error");
        if (err && err->line == 0 && sb->err_line > 0) {
            /* The message has no position: the line the handler saw. */
            snprintf(err->source, sizeof err->source, "%s", sb->err_source);
            err->line = sb->err_line;
        }
        if (err && what[0]) {
            char *m = fr_xasprintf("%s%s%s", what, sep, err->msg);
            snprintf(err->msg, sizeof err->msg, "%s", m);
            free(m);
        }
    }
    untruncate_source(sb, err);
    sb->err_line = 0; /* an outer call's failure must not see this one's line */
    lua_settop(L, base - 1);
    return rc;
}

/*
 * Parses a Lua message "source:LINE: text" (a traceback after a newline is
 * dropped) into `err` (may be NULL) with `code`: source, line and the text.
 * A message without a position leaves source empty and line 0. Returns
 * `code`.
 */
int fr_lua_error_from_msg(fr_error *err, int code, const char *msg)
{
    if (!err)
        return code;
    size_t end = strcspn(msg, "\n");
    const char *tb = strstr(msg, "\nstack traceback:");
    if (tb && (size_t)(tb - msg) > end)
        end = (size_t)(tb - msg);
    /* The position is the first ":DIGITS:" in the first line. */
    for (size_t i = 0; i < end; i++) {
        if (msg[i] != ':')
            continue;
        size_t j = i + 1;
        while (j < end && msg[j] >= '0' && msg[j] <= '9')
            j++;
        if (j == i + 1 || j >= end || msg[j] != ':' || j - i > 10)
            continue;
        const char *text = msg + j + 1;
        if (*text == ' ')
            text++;
        char source[sizeof err->source];
        snprintf(source, sizeof source, "%.*s", (int)i, msg);
        return fr_error_set(err, code, source, atoi(msg + i + 1), "%.*s",
                            (int)(end - (size_t)(text - msg)), text);
    }
    return fr_error_set(err, code, "", 0, "%.*s", (int)end, msg);
}

/*
 * Pops the value on top of `L` and returns a registry reference to it,
 * counted in fr_sandbox_live_refs. Raises a Lua memory error, so call it in
 * protected mode. The caller owns the reference and releases it with
 * fr_sandbox_unref. Returns LUA_REFNIL for nil.
 */
int fr_sandbox_ref(lua_State *L)
{
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (ref != LUA_REFNIL && ref != LUA_NOREF)
        g_live_refs++;
    return ref;
}

/* Releases `ref` from fr_sandbox_ref; LUA_NOREF and LUA_REFNIL are ignored. */
void fr_sandbox_unref(lua_State *L, int ref)
{
    if (ref == LUA_REFNIL || ref == LUA_NOREF)
        return;
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    g_live_refs--;
}

/* Returns the number of references taken by fr_sandbox_ref and not yet
 * released, over all states: tests check it returns to zero. */
long fr_sandbox_live_refs(void)
{
    return g_live_refs;
}

/* Returns the bytes the state currently holds (for tests and reports). */
size_t fr_sandbox_mem_used(lua_State *L)
{
    return sandbox_of(L)->used;
}
