#pragma once
/* Internal to dsl/decl*.c: what a declaration's messages need and the
 * readers of its fields (dsl/decl_field.c), shared by the declaration
 * functions (dsl/decl.c). Every reader raises a Lua error on a bad field,
 * with the first error kept in the load context (sticky errors). */

#include "dsl/load_int.h"

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most string keys fr_decl_check_fields remembers for a table. */
#define FR_DECL_KEYS 24

/* What a declaration's messages need: where it is and how to name it. */
typedef struct fr_decl {
    lua_State *L;
    fr_load_ctx *c;
    int line;
    char where[300]; /* "task 'b'", "workflow" */
    char in[320];    /* for unknown fields: "task 'b'", "workflow budget" */
    char prefix[32]; /* "" or "budget." */
    /* The keys of the table fr_decl_check_fields scanned last, at stack
     * index keys_t, borrowed from it (it stays on the stack while its
     * fields are read): a field that is not among them is absent without a
     * lookup, so a task of 3 fields costs 3 lookups, not 35. nkeys < 0:
     * not known (no scan yet, or more than FR_DECL_KEYS keys). */
    int keys_t;
    int nkeys;
    const char *keys[FR_DECL_KEYS];
    /* fr_decl_key_bit of each of those keys: a field whose bit is not set
     * is absent without comparing a name (fr_decl_absent). */
    uint64_t keyset;
} fr_decl;

/* Flags of fr_decl_str. */
enum { FR_FIELD_REQUIRED = 1, FR_FIELD_NONEMPTY = 2 };
/* Flags of fr_decl_num. */
enum { FR_FIELD_INTEGER = 1, FR_FIELD_LO_OPEN = 2 };

/* Raises the context's stored error (borrowed `c`) as a Lua error. */
_Noreturn void fr_decl_raise(lua_State *L, fr_load_ctx *c);

/* Records the first error of `c` (borrowed) at `line`, from `fmt`, and
 * raises the stored one. */
_Noreturn void fr_decl_failc(lua_State *L, fr_load_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Fails the declaration `d` with a message from the format that follows. */
#define fr_decl_fail(d, ...) fr_decl_failc((d)->L, (d)->c, (d)->line, __VA_ARGS__)

/* Prepares `d` for the declaration named `where` (borrowed, copied) at
 * `line` of the file `c` (borrowed) runs in `L`. */
void fr_decl_init(fr_decl *d, lua_State *L, fr_load_ctx *c, int line, const char *where);

/* The value on top has the wrong type, or the right type and a bad value:
 * fails with "field 'f' must be <desc>, got ...". */
_Noreturn void fr_decl_fail_type(fr_decl *d, const char *f, const char *desc);
_Noreturn void fr_decl_fail_value(fr_decl *d, const char *f, const char *desc);

/* Returns the string on top (borrowed from the stack) after checking it is
 * text flowrun can carry (valid UTF-8, no NUL); fails naming field `f` (or,
 * at `pos` > 0, its item) otherwise. */
const char *fr_decl_text(fr_decl *d, const char *f, size_t pos);

/* Fails on a key of the table at `t` that is not one of the `n` `names`
 * (borrowed), suggesting the closest; the alphabetically first offender is
 * named so the message does not depend on Lua's hash order. Remembers the
 * table's keys in `d` for fr_decl_push_field. */
void fr_decl_check_fields(fr_decl *d, int t, const char *const *names, size_t n);

/* A bit of a 64-bit set for the name `f` (borrowed), from its first three
 * bytes (fewer when it is shorter): two names with different bits differ. */
static inline uint64_t fr_decl_key_bit(const char *f)
{
    unsigned h = (unsigned char)f[0];
    for (int i = 1; i < 3 && f[i - 1]; i++)
        h = h * 31 + (unsigned char)f[i];
    return (uint64_t)1 << (h & 63);
}

/* fr_decl_absent once `f`'s bit is among the keys': compares the names. */
bool fr_decl_absent_named(const fr_decl *d, const char *f);

/* Whether field `f` of the table at `t` is known to be absent without a
 * lookup: `t` is the table fr_decl_check_fields scanned last for `d` and `f`
 * (borrowed) is not among its keys. False when not known. Inline, and most
 * often answered by one bit test, since a declaration's readers ask it for
 * every known field (30 for a task) and most are absent. */
static inline bool fr_decl_absent(const fr_decl *d, int t, const char *f)
{
    if (d->nkeys < 0 || (t > 0 ? t : lua_absindex(d->L, t)) != d->keys_t)
        return false;
    return !(d->keyset & fr_decl_key_bit(f)) || fr_decl_absent_named(d, f);
}

/* Pushes t[f] without metamethods and returns its type. [-0, +1] */
int fr_decl_push_field(fr_decl *d, int t, const char *f);

/* Pushes t[f] and returns its type when it is present; returns LUA_TNIL,
 * pushing nothing, when it is absent, which fr_decl_absent answers first,
 * before any Lua call. [-0, +(0|1)] */
static inline int fr_decl_push_present(fr_decl *d, int t, const char *f)
{
    if (fr_decl_absent(d, t, f))
        return LUA_TNIL;
    lua_pushstring(d->L, f);      /* [f] */
    int ty = lua_rawget(d->L, t); /* [v] */
    if (ty == LUA_TNIL)
        lua_pop(d->L, 1); /* [] */
    return ty;
}

/* Each reads field `f` of the table at `t` into *out and returns true, or
 * returns false when it is absent; a wrong type or value fails.
 * fr_decl_str frees what *out held and stores an owned copy (flags:
 * FR_FIELD_REQUIRED, FR_FIELD_NONEMPTY); fr_decl_num wants [lo, hi] (lo
 * excluded with FR_FIELD_LO_OPEN, integral with FR_FIELD_INTEGER), `desc`
 * saying so in the message; fr_decl_str_array attaches an owned array of
 * owned strings to *out (with NULL entries) before filling it. They are
 * inline and ask fr_decl_absent first, in the caller: a task's readers ask
 * for 30 fields and most are absent, which then costs a bit test and no
 * call; the fr_decl_read_* bodies (dsl/decl_field.c) read the others. */
bool fr_decl_read_str(fr_decl *d, int t, const char *f, int flags, char **out);
bool fr_decl_read_num(fr_decl *d, int t, const char *f, double lo, double hi, int flags,
                      const char *desc, double *out);
bool fr_decl_read_int(fr_decl *d, int t, const char *f, int lo, int hi, const char *desc, int *out);
bool fr_decl_read_bool(fr_decl *d, int t, const char *f, bool *out);
bool fr_decl_read_str_array(fr_decl *d, int t, const char *f, char ***out, size_t *n);

static inline bool fr_decl_str(fr_decl *d, int t, const char *f, int flags, char **out)
{
    if (!(flags & FR_FIELD_REQUIRED) && fr_decl_absent(d, t, f))
        return false;
    return fr_decl_read_str(d, t, f, flags, out); /* fails on a missing required field */
}

static inline bool fr_decl_num(fr_decl *d, int t, const char *f, double lo, double hi, int flags,
                               const char *desc, double *out)
{
    return !fr_decl_absent(d, t, f) && fr_decl_read_num(d, t, f, lo, hi, flags, desc, out);
}

static inline bool fr_decl_int(fr_decl *d, int t, const char *f, int lo, int hi, const char *desc,
                               int *out)
{
    return !fr_decl_absent(d, t, f) && fr_decl_read_int(d, t, f, lo, hi, desc, out);
}

static inline bool fr_decl_bool(fr_decl *d, int t, const char *f, bool *out)
{
    return !fr_decl_absent(d, t, f) && fr_decl_read_bool(d, t, f, out);
}

static inline bool fr_decl_str_array(fr_decl *d, int t, const char *f, char ***out, size_t *n)
{
    return !fr_decl_absent(d, t, f) && fr_decl_read_str_array(d, t, f, out, n);
}

/* Pushes the sub-table field `f` and prepares `sub` for its fields
 * ("budget.usd"), returning true, or pushes nothing and returns false when
 * absent. [-0, +(0|1)] */
bool fr_decl_push_sub(fr_decl *d, int t, const char *f, fr_decl *sub);

/* Starts the body of pending declaration `p` (an index into c->pending)
 * from the table at `t`: prepares `d`, fails on anything but a table of the
 * kind's known fields (with a did-you-mean), marks the name declared. */
void fr_decl_body_begin(fr_decl *d, lua_State *L, fr_load_ctx *c, size_t p, int t);

/* Reads the fan-out fields `foreach`, `name`, `max_items` and `plan_items`
 * of the task table at `t` into `ts` (dsl/foreach.c). */
void fr_decl_foreach_fields(fr_decl *d, int t, fr_task_spec *ts);

/* Checks on values (dsl/decl.c), all of borrowed strings: a C-style
 * variable name; something that looks like a secret rather than the name of
 * a variable (never echo it); an http:// or https:// URL; a URL carrying a
 * credential (userinfo, a key= parameter). */
bool fr_decl_is_var_name(const char *s);
bool fr_decl_looks_like_key(const char *s);
bool fr_decl_is_http_url(const char *s);
bool fr_decl_url_holds_key(const char *url);

/* Returns true when `s` (borrowed) is a tool or MCP server name:
 * [A-Za-z][A-Za-z0-9_-]* (dsl/decl_tool.c). */
bool fr_decl_is_tool_name(const char *s);

/* Reads field `tools` of the table at `t` (an array of tool patterns) into
 * *out and *n as fr_decl_str_array does; the patterns are checked against the
 * declared tools once the whole file ran (fr_load_resolve_tools). */
void fr_decl_tools_field(fr_decl *d, int t, char ***out, size_t *n);

/* The bodies of `mcp "name" { ... }` and `tool "name" { ... }` for pending
 * declaration `p` from the table at `t` (dsl/decl_tool.c): append an
 * fr_mcp_spec / fr_tool_spec to c->wf and fill it, failing on a bad field. */
void fr_decl_mcp_body(lua_State *L, fr_load_ctx *c, size_t p, int t);
void fr_decl_tool_body(lua_State *L, fr_load_ctx *c, size_t p, int t);
