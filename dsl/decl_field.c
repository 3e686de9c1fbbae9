/* Reading one declaration's fields: each reader checks a field's type and
 * range as it copies it, and a failure is a message naming the field, its
 * declaration and the line (dsl/decl_int.h). Every failure raises a Lua
 * error, so the readers run inside the file's protected call. */

#include "dsl/decl_int.h"

#include "dsl/suggest.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <lauxlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Raises the context's stored error (borrowed `c`) as a Lua error. */
_Noreturn void fr_decl_raise(lua_State *L, fr_load_ctx *c)
{
    lua_pushstring(L, c->err.msg);
    lua_error(L);
    abort(); /* lua_error does not return */
}

/* Records the first error of `c` (borrowed) at `line`, from `fmt`, and
 * raises the stored one. */
_Noreturn void fr_decl_failc(lua_State *L, fr_load_ctx *c, int line, const char *fmt, ...)
{
    if (c->err.code == 0) {
        char msg[sizeof c->err.msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fr_error_set(&c->err, c->code, c->file, line, "%s", msg);
    }
    fr_decl_raise(L, c);
}

/* Prepares `d` for the declaration named `where` (borrowed, copied) at
 * `line` of the file `c` (borrowed) runs in `L`. */
void fr_decl_init(fr_decl *d, lua_State *L, fr_load_ctx *c, int line, const char *where)
{
    d->L = L;
    d->c = c;
    d->line = line;
    /* Copies, not snprintf: this runs once per declaration, 10,000 times
     * for a workflow of 10,000 tasks. */
    size_t n = strlen(where);
    if (n >= sizeof d->where)
        n = sizeof d->where - 1;
    memcpy(d->where, where, n);
    d->where[n] = '\0';
    memcpy(d->in, d->where, n + 1);
    d->prefix[0] = '\0';
    d->keys_t = 0;
    d->nkeys = -1;
    d->keyset = 0;
}

/* Describes the value on top for "got ...": its value for scalars. */
static const char *got_value(lua_State *L, char *buf, size_t n)
{
    switch (lua_type(L, -1)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, -1))
            snprintf(buf, n, "%lld", (long long)lua_tointeger(L, -1));
        else
            snprintf(buf, n, "%.14g", (double)lua_tonumber(L, -1));
        return buf;
    case LUA_TSTRING:
        snprintf(buf, n, "'%.60s'", lua_tostring(L, -1));
        return buf;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, -1) ? "true" : "false";
    default:
        return luaL_typename(L, -1);
    }
}

/* The value on top has the wrong type. */
_Noreturn void fr_decl_fail_type(fr_decl *d, const char *f, const char *desc)
{
    fr_decl_fail(d, "%s: field '%s%s' must be %s, got %s", d->where, d->prefix, f, desc,
                 luaL_typename(d->L, -1));
}

/* The value on top has the right type but a bad value. */
_Noreturn void fr_decl_fail_value(fr_decl *d, const char *f, const char *desc)
{
    char buf[96];
    fr_decl_fail(d, "%s: field '%s%s' must be %s, got %s", d->where, d->prefix, f, desc,
                 got_value(d->L, buf, sizeof buf));
}

/* Whether the `len` bytes at `s` are ASCII without a NUL byte, the common
 * case, which is valid UTF-8: checked 8 bytes at a time. */
static bool plain_ascii(const char *s, size_t len)
{
    const uint64_t high = 0x8080808080808080u, ones = 0x0101010101010101u;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w & high) || ((w - ones) & ~w & high)) /* a byte >= 0x80, or a zero byte */
            return false;
    }
    for (; i < len; i++)
        if ((unsigned char)s[i] - 1u >= 0x7fu) /* 0 or >= 0x80 */
            return false;
    return true;
}

/* Returns the string on top after checking it is text flowrun can carry
 * (valid UTF-8, no NUL byte, which C would silently cut at); fails naming
 * field `f` (or, at `pos` > 0, its item) otherwise. */
const char *fr_decl_text(fr_decl *d, const char *f, size_t pos)
{
    size_t len, at = 0;
    const char *s = lua_tolstring(d->L, -1, &len);
    if (plain_ascii(s, len))
        return s;
    const char *what = fr_utf8_text(s, len, &at);
    if (!what)
        return s;
    char item[32] = "";
    if (pos)
        snprintf(item, sizeof item, " (item %zu)", pos);
    fr_decl_fail(d, "%s: field '%s%s'%s %s at byte %zu; %s", d->where, d->prefix, f, item, what, at,
                 *what == 'h' ? "remove it" : "save the file as UTF-8");
}

/* Whether `k` is one of the `n` `names`; the first byte is compared
 * before any call, since most names differ there. */
static bool known(const char *k, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (names[i][0] == k[0] && strcmp(k, names[i]) == 0)
            return true;
    return false;
}

/* Fails on a key of the table at `t` that is not a string in `names`,
 * suggesting the closest one; the alphabetically first offender is named so
 * the message does not depend on Lua's hash order. */
void fr_decl_check_fields(fr_decl *d, int t, const char *const *names, size_t n)
{
    lua_State *L = d->L;
    const char *bad = NULL;
    bool unnamed = false;
    t = lua_absindex(L, t);
    d->keys_t = t;
    d->nkeys = 0;
    d->keyset = 0;
    lua_pushnil(L); /* [nil] */
    while (lua_next(L, t)) {
        /* [k, v] */
        if (lua_type(L, -2) != LUA_TSTRING) {
            unnamed = true;
        } else {
            const char *k = lua_tostring(L, -2); /* stays alive: the table holds it */
            if (!known(k, names, n)) {
                if (!bad || strcmp(k, bad) < 0)
                    bad = k;
            } else if (d->nkeys >= 0 && d->nkeys < FR_DECL_KEYS) {
                d->keys[d->nkeys++] = k;
                d->keyset |= fr_decl_key_bit(k);
            } else {
                d->nkeys = -1;
            }
        }
        lua_pop(L, 1); /* [k] */
    }
    if (bad) {
        const char *s = fr_suggest(bad, names, n);
        fr_decl_fail(d, "unknown field '%s' in %s%s%s%s", bad, d->in, s ? "; did you mean '" : "",
                     s ? s : "", s ? "'?" : "");
    }
    if (unnamed)
        fr_decl_fail(d, "%s: found a value without a field name; write name = value", d->in);
}

/* Whether `f` is not among the keys fr_decl_check_fields remembered. */
bool fr_decl_absent_named(const fr_decl *d, const char *f)
{
    for (int i = 0; i < d->nkeys; i++)
        if (d->keys[i][0] == f[0] && strcmp(d->keys[i], f) == 0)
            return false;
    return true;
}

/* Pushes t[f] without metamethods and returns its type. [-0, +1] A field
 * of the table fr_decl_check_fields scanned is looked up only when it was
 * among its keys: most of a declaration's known fields are absent. */
int fr_decl_push_field(fr_decl *d, int t, const char *f)
{
    lua_State *L = d->L;
    if (fr_decl_absent(d, t, f)) {
        lua_pushnil(L); /* [nil] */
        return LUA_TNIL;
    }
    lua_pushstring(L, f);    /* [f] */
    return lua_rawget(L, t); /* [v] */
}

/* Pushes field `f` when it is present, failing with `desc` unless it has
 * the Lua type `want`; returns false, pushing nothing, when it is absent.
 * [-0, +(0|1)] */
static inline bool push_typed(fr_decl *d, int t, const char *f, int want, const char *desc)
{
    int ty = fr_decl_push_present(d, t, f); /* [v?] */
    if (ty == LUA_TNIL)
        return false;
    if (ty != want)
        fr_decl_fail_type(d, f, desc);
    return true;
}

/* The readers' bodies, once fr_decl_absent (inline, in dsl/decl_int.h)
 * did not rule the field out. */

/* Reads string field `f` into *out (freeing what was there). Returns false
 * when absent. */
bool fr_decl_read_str(fr_decl *d, int t, const char *f, int flags, char **out)
{
    lua_State *L = d->L;
    int ty = fr_decl_push_present(d, t, f); /* [v?] */
    if (ty == LUA_TNIL) {
        if (flags & FR_FIELD_REQUIRED)
            fr_decl_fail(d, "%s: missing required field '%s%s'", d->where, d->prefix, f);
        return false;
    }
    const char *desc = flags & FR_FIELD_NONEMPTY ? "a non-empty string" : "a string";
    if (ty != LUA_TSTRING)
        fr_decl_fail_type(d, f, desc);
    const char *s = fr_decl_text(d, f, 0);
    if ((flags & FR_FIELD_NONEMPTY) && !*s)
        fr_decl_fail_value(d, f, desc);
    free(*out);
    *out = fr_xstrdup(s);
    lua_pop(L, 1); /* [] */
    return true;
}

/* Reads number field `f` into *out when it is in [lo, hi] (lo excluded with
 * FR_FIELD_LO_OPEN, integral with FR_FIELD_INTEGER). `desc` says so in the message. */
bool fr_decl_read_num(fr_decl *d, int t, const char *f, double lo, double hi, int flags,
                      const char *desc, double *out)
{
    lua_State *L = d->L;
    if (!push_typed(d, t, f, LUA_TNUMBER, desc))
        return false; /* [v] */
    double v = (double)lua_tonumber(L, -1);
    if ((flags & FR_FIELD_INTEGER) && !lua_isinteger(L, -1) && v != floor(v))
        fr_decl_fail_value(d, f, desc);
    if (!isfinite(v) || v < lo || ((flags & FR_FIELD_LO_OPEN) && v <= lo) || v > hi)
        fr_decl_fail_value(d, f, desc);
    *out = v;
    lua_pop(L, 1); /* [] */
    return true;
}

/* fr_decl_read_num for an integer field that fits an int. */
bool fr_decl_read_int(fr_decl *d, int t, const char *f, int lo, int hi, const char *desc, int *out)
{
    double v;
    if (!fr_decl_read_num(d, t, f, lo, hi, FR_FIELD_INTEGER, desc, &v))
        return false;
    *out = (int)v;
    return true;
}

/* Reads boolean field `f` into *out. Returns false when absent. */
bool fr_decl_read_bool(fr_decl *d, int t, const char *f, bool *out)
{
    if (!push_typed(d, t, f, LUA_TBOOLEAN, "a boolean (true or false)"))
        return false; /* [v] */
    *out = lua_toboolean(d->L, -1);
    lua_pop(d->L, 1);
    return true;
}

/* Copies the items of the array at `a` of `len` items into `items` (NULL
 * entries) in one walk when it is the common array: only the keys 1..len,
 * each a non-empty string of plain ASCII. Returns false at anything else,
 * with what it copied left in `items`. */
static bool read_plain_items(lua_State *L, int a, size_t len, char **items)
{
    size_t count = 0;
    lua_pushnil(L); /* [arr, nil] */
    while (lua_next(L, a)) {
        /* [arr, k, v] */
        lua_Integer k = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
        size_t n = 0;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        if (k < 1 || (size_t)k > len || n == 0 || !plain_ascii(s, n)) {
            lua_pop(L, 2); /* [arr] */
            return false;
        }
        items[k - 1] = fr_xmalloc(n + 1);
        memcpy(items[k - 1], s, n + 1);
        count++;
        lua_pop(L, 1); /* [arr, k] */
    }
    return count == len; /* [arr] */
}

/* Reads an array of strings; *out is attached (with NULL entries) before it
 * is filled. */
bool fr_decl_read_str_array(fr_decl *d, int t, const char *f, char ***out, size_t *n)
{
    lua_State *L = d->L;
    const char *desc = "an array of strings, as in { \"a\", \"b\" }";
    if (!push_typed(d, t, f, LUA_TTABLE, desc))
        return false; /* [arr] */
    int a = lua_gettop(L);
    size_t len = lua_rawlen(L, a), count = 0;
    *out = fr_xcalloc(len ? len : 1, sizeof **out);
    *n = len;
    /* The common array in one walk (a task's deps: 2,000 items on the
     * layered DAG of 1,000 tasks); anything else drops those copies and
     * takes the checks below, which name the first problem as they always
     * did: a gap or a named field first, then the first bad item. */
    if (read_plain_items(L, a, len, *out)) {
        lua_pop(L, 1); /* [] */
        return true;
    }
    for (size_t i = 0; i < len; i++) {
        free((*out)[i]);
        (*out)[i] = NULL;
    }
    bool seq = true;
    lua_pushnil(L); /* [arr, nil] */
    while (lua_next(L, a)) {
        /* [arr, k, v] */
        count++;
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || (size_t)lua_tointeger(L, -2) > len)
            seq = false;
        lua_pop(L, 1); /* [arr, k] */
    }
    if (!seq || count != len)
        fr_decl_fail(d, "%s: field '%s%s' must be %s, got a table with named fields or gaps",
                     d->where, d->prefix, f, desc);
    for (size_t i = 0; i < len; i++) {
        lua_rawgeti(L, a, (lua_Integer)i + 1); /* [arr, v] */
        if (lua_type(L, -1) != LUA_TSTRING || !*lua_tostring(L, -1))
            fr_decl_fail(d, "%s: field '%s%s' must be %s, got %s at position %zu", d->where,
                         d->prefix, f, desc,
                         lua_type(L, -1) == LUA_TSTRING ? "an empty string" : luaL_typename(L, -1),
                         i + 1);
        (*out)[i] = fr_xstrdup(fr_decl_text(d, f, i + 1));
        lua_pop(L, 1); /* [arr] */
    }
    lua_pop(L, 1); /* [] */
    return true;
}

/* Pushes sub-table field `f` and prepares `sub` for its fields, returning
 * true, or pushes nothing and returns false when absent. [-0, +(0|1)] */
bool fr_decl_push_sub(fr_decl *d, int t, const char *f, fr_decl *sub)
{
    if (!push_typed(d, t, f, LUA_TTABLE, "a table"))
        return false; /* [v] */
    *sub = *d;
    sub->nkeys = -1; /* its own fr_decl_check_fields scans its keys */
    snprintf(sub->prefix, sizeof sub->prefix, "%s.", f);
    snprintf(sub->in, sizeof sub->in, "%s %s", d->where, f);
    return true;
}
