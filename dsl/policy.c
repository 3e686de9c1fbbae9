#include "dsl/policy_int.h"

#include "dsl/suggest.h"
#include "engine/util/hash.h"
#include "engine/util/utf8.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The registry key of the closure that runs a call (take_refs). */
static const char call_key = 'C';

/* call_protected is a C closure whose upvalue k is the key K_... = k. */
static int call_protected(lua_State *L);

/* $FLOWRUN_LUA_DIR, or NULL: the built-ins come from the binary. */
static const char *lua_dir(void)
{
    const char *d = getenv("FLOWRUN_LUA_DIR");
    return d && *d ? d : NULL;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const fr_policy_builtin *fr_policy_builtin_find(const char *name)
{
    for (size_t i = 0; name && i < fr_policy_nbuiltins; i++)
        if (strcmp(fr_policy_builtins[i].name, name) == 0)
            return &fr_policy_builtins[i];
    return NULL;
}

bool fr_policy_path_is_builtin(const char *path)
{
    size_t n = strlen(FR_POLICY_BUILTIN_PREFIX);
    return path && strncmp(path, FR_POLICY_BUILTIN_PREFIX, n) == 0 &&
           fr_policy_builtin_find(path + n) != NULL;
}

/* The policy nothing matched: names the built-ins, the file it tried and,
 * when one is close, the built-in name the user probably meant. */
static int not_found(const char *spec, const char *tried, fr_error *err)
{
    char names[256] = "";
    const char *cands[16];
    size_t n = 0;
    for (size_t i = 0; i < fr_policy_nbuiltins; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                 fr_policy_builtins[i].name);
        if (n < sizeof cands / sizeof cands[0])
            cands[n++] = fr_policy_builtins[i].name;
    }
    /* Compare the base name without .lua: "balance.lua" is close to "balanced". */
    const char *b = strrchr(spec, '/');
    b = b ? b + 1 : spec;
    size_t len = strlen(b);
    if (len > 4 && strcmp(b + len - 4, ".lua") == 0)
        len -= 4;
    char *word = fr_xstrndup(b, len);
    const char *near = fr_suggest(word, cands, n);
    char hint[128] = "";
    if (near)
        snprintf(hint, sizeof hint, "; did you mean '%s'?", near);
    int rc = fr_error_set(err, FR_ENOENT, "policy", 0,
                          "no policy '%s': it is not a built-in one (%s) and there is no file %s%s",
                          spec, names, tried, hint);
    free(word);
    return rc;
}

int fr_policy_resolve(const char *spec, const char *base_dir, char **path, fr_error *err)
{
    char *p = NULL;
    if (fr_policy_builtin_find(spec)) {
        if (lua_dir()) {
            p = fr_xasprintf("%s/policies/%s.lua", lua_dir(), spec);
            if (is_file(p))
                goto found;
            free(p);
        }
        p = fr_xasprintf("%s%s", FR_POLICY_BUILTIN_PREFIX, spec);
        goto found;
    }
    if (spec[0] == '/' || !base_dir || !*base_dir)
        p = fr_xstrdup(spec);
    else
        p = fr_xasprintf("%s/%s", base_dir, spec);
    if (fr_policy_path_is_builtin(p)) {
        /* A file that happens to be named like a built-in's path. */
        char *q = fr_xasprintf("./%s", p);
        free(p);
        p = q;
    }
    if (!is_file(p)) {
        int rc = not_found(spec, p, err);
        free(p);
        return rc;
    }
found:
    *path = p;
    return FR_OK;
}

static char *base_name(const char *path)
{
    if (fr_policy_path_is_builtin(path))
        return fr_xstrdup(path + strlen(FR_POLICY_BUILTIN_PREFIX));
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 4 && strcmp(b + n - 4, ".lua") == 0)
        n -= 4;
    return fr_xstrndup(b, n);
}

/* Stores references to route (arg 1) and on_result (arg 2, a function or
 * nil) in the policy (arg 3, light userdata). Runs protected. */
static int take_refs(lua_State *L)
{
    fr_policy *p = lua_touserdata(L, 3);
    lua_settop(L, 2); /* [route, on_result] */
    if (lua_isfunction(L, 2))
        p->on_result_ref = fr_sandbox_ref(L); /* [route] */
    else
        lua_pop(L, 1);
    p->route_ref = fr_sandbox_ref(L);           /* [] */
    int nkeys = fr_policy_push_keys(L);         /* [keys...] */
    lua_pushcclosure(L, call_protected, nkeys); /* [call] */
    /* Kept in the registry under the address of call_key, out of the
     * policy's reach, for as long as the state lives. */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &call_key); /* [] */
    return 0;
}

/* Reads the exports of the module (arg 1) and returns route, on_result.
 * Runs protected through fr_lua_call: the module may be a table whose
 * metamethods run (an __index that inherits from a base table is fine, one
 * that raises an error fails the load with its file:line). */
static int get_exports(lua_State *L)
{
    lua_getfield(L, 1, "route");     /* [module, route] */
    lua_getfield(L, 1, "on_result"); /* [module, route, on_result] */
    return 2;
}

/* Loads the chunk on top of the stack (pushed by the caller) as policy
 * `p`: runs it, checks what it returns, keeps references to its functions.
 * Every access to what the file returned runs protected. */
static int adopt_module(fr_policy *p, fr_error *err)
{
    lua_State *L = p->L;
    int rc = fr_lua_call(L, 0, 1, "policy file", err); /* [module] */
    if (rc != FR_OK)
        return rc;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "a policy file must return a table with a route function");
    }
    lua_pushcfunction(L, get_exports); /* [module, get] */
    lua_insert(L, -2);                 /* [get, module] */
    rc = fr_lua_call(L, 1, 2, "reading the table the policy file returned", err);
    if (rc != FR_OK)
        return rc; /* [] */
    /* [route, on_result] */
    if (!lua_isfunction(L, -2)) {
        lua_pop(L, 2);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "the returned table has no function 'route'");
    }
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "'on_result' must be a function when present");
    }
    /* fr_sandbox_ref may raise a memory error: it runs protected too. */
    lua_pushcfunction(L, take_refs);                 /* [route, on_result, take] */
    lua_insert(L, -3);                               /* [take, route, on_result] */
    lua_pushlightuserdata(L, p);                     /* [take, route, on_result, p] */
    return fr_lua_call(L, 3, 0, "policy file", err); /* [] */
}

static fr_policy *policy_new(const char *path, const fr_lua_limits *lim, int version)
{
    fr_policy *p = fr_xcalloc(1, sizeof *p);
    p->route_ref = p->on_result_ref = LUA_NOREF;
    p->version = version;
    p->reads_history = true; /* a built-in that never names it: fr_policy_load */
    p->path = fr_xstrdup(path);
    p->name = base_name(path);
    char *log_name = fr_xasprintf("policy:%s", p->name);
    p->L = fr_sandbox_new(lim, log_name);
    free(log_name);
    return p;
}

int fr_policy_load(const char *path, const fr_lua_limits *lim, int version, fr_policy **out,
                   fr_error *err)
{
    int rc = FR_ENOMEM;
    fr_policy *p = policy_new(path, lim, version);
    if (!p->L)
        goto cleanup;
    const fr_policy_builtin *b =
        fr_policy_path_is_builtin(path)
            ? fr_policy_builtin_find(path + strlen(FR_POLICY_BUILTIN_PREFIX))
            : NULL;
    if (b)
        rc = fr_sandbox_load_string(p->L, b->source, b->len, path, err); /* [chunk] */
    else
        rc = fr_sandbox_load_file(p->L, path, err); /* [chunk] */
    if (rc == FR_OK)
        rc = adopt_module(p, err);
    if (rc != FR_OK)
        goto cleanup;
    if (b) {
        fr_policy_trust(p);
        /* A built-in that never names `history` is spared building it. */
        p->reads_history = strstr(b->source, "history") != NULL;
    }
    *out = p;
    p = NULL;
cleanup:
    fr_policy_free(p);
    return rc;
}

int fr_policy_load_string(const char *path, const char *code, size_t len, const fr_lua_limits *lim,
                          int version, fr_policy **out, fr_error *err)
{
    int rc = FR_ENOMEM;
    fr_policy *p = policy_new(path, lim, version);
    if (!p->L)
        goto cleanup;
    rc = fr_sandbox_load_string(p->L, code, len, path, err); /* [chunk] */
    if (rc == FR_OK)
        rc = adopt_module(p, err);
    if (rc != FR_OK)
        goto cleanup;
    *out = p;
    p = NULL;
cleanup:
    fr_policy_free(p);
    return rc;
}

void fr_policy_free(fr_policy *p)
{
    if (!p)
        return;
    if (p->L) {
        fr_sandbox_unref(p->L, p->route_ref);
        fr_sandbox_unref(p->L, p->on_result_ref);
        fr_sandbox_free(p->L);
    }
    fr_policy_args_free(p);
    free(p->name);
    free(p->path);
    free(p);
}

void fr_policy_trust(fr_policy *p)
{
    /* Flowrun's own code: its loops are bounded by the candidates, and it
     * neither keeps nor changes its arguments (test_policy_builtins). */
    fr_sandbox_trust(p->L);
    fr_policy_keep_args(p);
    p->trusted = true;
}

bool fr_policy_reads_history(const fr_policy *p)
{
    return p->reads_history;
}

void fr_policy_keep_args(fr_policy *p)
{
    p->keep_args = true;
}

const char *fr_policy_name(const fr_policy *p)
{
    return p->name;
}

int fr_policy_version(const fr_policy *p)
{
    return p->version;
}

/* Returns the index (0-based) of the candidate named `name`, or -1. */
static long find_candidate(const fr_policy_cands *cs, const char *name)
{
    if (cs->view) {
        for (size_t i = 0; i < cs->n; i++)
            if (strcmp(cs->view[i].name, name) == 0)
                return (long)i;
        return -1;
    }
    size_t i;
    json_t *c;
    json_array_foreach(cs->json, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0)
            return (long)i;
    }
    return -1;
}

/* What call_protected calls: the function of registry reference `ref`
 * with the arguments `a`. */
typedef struct call_ctx {
    int ref;
    const fr_policy_args *a;
} call_ctx;

/* The whole call in one protected call (through fr_lua_call; the closure
 * take_refs made, whose upvalues are the keys): pushes the function and the
 * arguments of the call_ctx passed as light userdata, calls it and returns
 * its first two results (route's second is its explanation). Running out of memory while
 * building the arguments is an error of the call, not an abort, and the
 * instruction budget covers both. */
static int call_protected(lua_State *L)
{
    const call_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    luaL_checkstack(L, 24, "policy arguments");
    fr_policy_push_call(L, c->ref, c->a); /* [(cache, mt,) fn, a, b, c] */
    lua_call(L, 3, 2);                    /* [(cache, mt,) ret, ret2] */
    return 2;
}

/* The line where the function of registry reference `ref` is defined, for
 * a message about what it returned; 0 when unknown. */
static int defined_line(lua_State *L, int ref)
{
    lua_Debug ar;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* [fn] */
    if (!lua_getinfo(L, ">S", &ar))         /* [] */
        return 0;
    return ar.linedefined > 0 ? ar.linedefined : 0;
}

/* Calls the function of registry reference `ref` with the arguments `a`
 * (borrowed), leaving two results on FR_OK. */
static int call_with(fr_policy *p, int ref, const fr_policy_args *a, const char *what,
                     fr_error *err)
{
    lua_State *L = p->L;
    if (!lua_checkstack(L, 6))
        return fr_error_set(err, FR_ELIMIT, p->path, 0, "%s: Lua stack exhausted", what);
    call_ctx ctx = {ref, a};
    lua_rawgetp(L, LUA_REGISTRYINDEX, &call_key); /* [call] (take_refs) */
    lua_pushlightuserdata(L, &ctx);               /* [call, ctx] */
    int rc = fr_lua_call(L, 1, 2, what, err);     /* [ret, ret2] */
    if (rc != FR_OK && a->keep)
        a->keep->args_dirty = true; /* its writes may have stopped half way */
    if (rc != FR_OK && err && !err->source[0]) {
        /* Failed outside any line of the policy (copying the arguments):
         * the function's own line. */
        snprintf(err->source, sizeof err->source, "%s", p->path);
        err->line = defined_line(L, ref);
    }
    return rc;
}

/* Copies route's second result, at the top, into `why` (`size` bytes) when
 * it is a string: valid UTF-8 without a NUL byte, cut at a character's
 * start to FR_POLICY_WHY_MAX bytes. Anything else leaves "". */
static void read_why(lua_State *L, char *why, size_t size)
{
    if (!why || size == 0)
        return;
    why[0] = '\0';
    if (lua_type(L, -1) != LUA_TSTRING)
        return;
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (memchr(s, '\0', len) || !fr_utf8_valid(s, len, NULL))
        return;
    size_t max = size - 1 < FR_POLICY_WHY_MAX ? size - 1 : FR_POLICY_WHY_MAX;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--; /* not inside a character */
    }
    memcpy(why, s, len);
    why[len] = '\0';
}

/* Calls route with `a`, whose candidates are `a->cands`; see
 * fr_policy_route. On FR_OK *choice is the chosen candidate's index, -1 for
 * nil, and `why` (`size` bytes, may be NULL) its explanation ("" for
 * none). Sets *not_candidate when the answer was a name (or a table with a
 * name) that is none of the candidates. */
static int route_call(fr_policy *p, const fr_policy_args *a, long *choice, bool *not_candidate,
                      char *why, size_t size, fr_error *err)
{
    lua_State *L = p->L;
    *choice = -1;
    *not_candidate = false;
    if (why && size)
        why[0] = '\0';
    int rc = call_with(p, p->route_ref, a, "route", err); /* [ret, why] */
    if (rc != FR_OK)
        return rc;
    read_why(L, why, size);
    lua_pop(L, 1); /* [ret] */
    /* [ret] Read with raw access only: no metamethod of the answer runs. */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return FR_OK;
    }
    const char *name = NULL;
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "name"); /* [ret, "name"] */
        lua_rawget(L, -2);          /* [ret, name] */
    } else {
        lua_pushvalue(L, -1); /* [ret, ret] */
    }
    if (lua_type(L, -1) == LUA_TSTRING)
        name = lua_tostring(L, -1);
    rc = FR_OK;
    if (!name)
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned a %s%s; expected a candidate, its name, or nil",
                          luaL_typename(L, -2), lua_istable(L, -2) ? " without a name" : "");
    else if (strlen(name) != lua_rawlen(L, -1))
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned a name holding a NUL byte ('%s...'); return a "
                          "candidate or its exact name",
                          name);
    else if ((*choice = find_candidate(a->cands, name)) < 0) {
        *not_candidate = true;
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned '%s', which is not one of the candidates", name);
    }
    lua_pop(L, 2); /* [] */
    return rc;
}

/* Calls route with JSON `task`, `candidates` and `run` (borrowed); on
 * FR_OK *choice is the chosen candidate's index, -1 for nil. */
static int route_json(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                      long *choice, bool *not_candidate, fr_error *err)
{
    fr_policy_cands cs = {.json = candidates};
    fr_policy_args a = {.json = {task, candidates, run}, .cands = &cs};
    return route_call(p, &a, choice, not_candidate, NULL, 0, err);
}

int fr_policy_route(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                    char **choice, fr_error *err)
{
    bool not_candidate;
    long i;
    *choice = NULL;
    int rc = route_json(p, task, candidates, run, &i, &not_candidate, err);
    if (rc == FR_OK && i >= 0)
        *choice = fr_xstrdup(
            json_string_value(json_object_get(json_array_get(candidates, (size_t)i), "name")));
    return rc;
}

int fr_policy_route_view(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                         size_t n, const fr_policy_run *run, long *choice, fr_error *err)
{
    return fr_policy_route_explain(p, task, cands, n, run, choice, NULL, 0, err);
}

int fr_policy_route_explain(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                            size_t n, const fr_policy_run *run, long *choice, char *why,
                            size_t size, fr_error *err)
{
    bool not_candidate;
    fr_policy_cands cs = {.view = cands, .n = n};
    fr_policy_args a = {.task = task, .cands = &cs, .run = run, .keep = p->keep_args ? p : NULL};
    return route_call(p, &a, choice, &not_candidate, why, size, err);
}

bool fr_policy_has_on_result(const fr_policy *p)
{
    return p->on_result_ref != LUA_NOREF && p->on_result_ref != LUA_REFNIL;
}

/* Calls on_result with `a` (borrowed); see fr_policy_on_result. */
static int on_result_call(fr_policy *p, const fr_policy_args *a, fr_verdict *verdict, fr_error *err)
{
    *verdict = FR_VERDICT_ACCEPT;
    if (!fr_policy_has_on_result(p))
        return FR_OK;
    lua_State *L = p->L;
    int rc = call_with(p, p->on_result_ref, a, "on_result", err); /* [ret, ret2] */
    if (rc != FR_OK)
        return rc;
    lua_pop(L, 1); /* [ret] */
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (lua_isnil(L, -1) || (s && strcmp(s, "accept") == 0))
        *verdict = FR_VERDICT_ACCEPT;
    else if (s && strcmp(s, "retry") == 0)
        *verdict = FR_VERDICT_RETRY;
    else if (s && strcmp(s, "escalate") == 0)
        *verdict = FR_VERDICT_ESCALATE;
    else
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->on_result_ref),
                          "on_result returned %s; expected \"accept\", \"retry\" or \"escalate\"",
                          s ? s : luaL_typename(L, -1));
    lua_pop(L, 1);
    return rc;
}

int fr_policy_on_result(fr_policy *p, const json_t *task, const json_t *result, const json_t *run,
                        fr_verdict *verdict, fr_error *err)
{
    fr_policy_args a = {.json = {task, result, run}};
    return on_result_call(p, &a, verdict, err);
}

int fr_policy_on_result_view(fr_policy *p, const fr_policy_task *task,
                             const fr_policy_result *result, const fr_policy_run *run,
                             fr_verdict *verdict, fr_error *err)
{
    fr_policy_args a = {.task = task, .result = result, .run = run};
    return on_result_call(p, &a, verdict, err);
}

int fr_policy_check(fr_policy *p, const json_t *candidates, fr_error *err)
{
    json_t *task = json_pack("{s:s, s:s, s:s, s:f, s:i, s:b, s:i, s:s, s:[], s:i, s:i, s:i, s:f}",
                             "name", "self-check", "agent", "self-check", "type", "code",
                             "complexity", 0.5, "priority", 5, "private", 0, "attempt", 1, "reason",
                             "first", "tried", "est_input_tokens", 100, "max_tokens", 256, "tools",
                             0, "draw", fr_policy_draw(fr_policy_draw_seed(0), "self-check", 1));
    json_t *cands =
        candidates && json_array_size(candidates) > 0
            ? json_incref((json_t *)candidates)
            : json_pack("[{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:n, s:[],"
                        " s:i}, {s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:n,"
                        " s:[], s:i}]",
                        "name", "self-check-local", "tier", "local", "protocol", "openai", "model",
                        "m", "in_flight", 0, "max_parallel", 2, "free", 2, "queued", 0, "quality",
                        0.6, "price_in", 0.0, "price_out", 0.0, "est_cost", 0.0, "latency_p50",
                        "tags", "context", 32768, "name", "self-check-cloud", "tier", "cloud",
                        "protocol", "openai", "model", "m", "in_flight", 0, "max_parallel", 4,
                        "free", 4, "queued", 0, "quality", 0.9, "price_in", 3.0, "price_out", 15.0,
                        "est_cost", 0.004, "latency_p50", "tags", "context", 200000);
    if (!candidates || json_array_size(candidates) == 0) {
        size_t i;
        json_t *c;
        json_array_foreach(cands, i, c)
        {
            json_object_set_new(c, "history", fr_policy_hist_json(NULL));
            json_object_set_new(c, "history_all", fr_policy_hist_json(NULL));
        }
    }
    json_t *run = json_pack("{s:n, s:f, s:f, s:n, s:f, s:i, s:i, s:i, s:i}", "budget", "spent", 0.0,
                            "reserved", 0.0, "remaining", "elapsed", 0.0, "done", 0, "total", 1,
                            "ready", 1, "seed", 1);
    const json_t *first = json_array_get(cands, 0);
    const char *first_name = json_string_value(json_object_get(first, "name"));
    const char *first_tier = json_string_value(json_object_get(first, "tier"));
    json_t *result =
        json_pack("{s:s, s:s, s:s, s:n, s:f, s:{s:i, s:i}, s:f, s:i}", "endpoint",
                  first_name ? first_name : "self-check", "tier", first_tier ? first_tier : "local",
                  "text", "ok", "json", "latency_ms", 100.0, "tokens", "input", 100, "output", 10,
                  "cost_usd", 0.0, "attempt", 1);
    long choice;
    bool not_candidate = false;
    int rc = route_json(p, task, cands, run, &choice, &not_candidate, err);
    if (not_candidate) {
        /* A name that is not a candidate for this one made-up task is a
         * decision the default makes in a run, not a broken policy. */
        rc = FR_OK;
        if (err)
            *err = (fr_error){0};
    }
    if (rc == FR_OK) {
        fr_verdict v;
        rc = fr_policy_on_result(p, task, result, run, &v, err);
    }
    json_decref(task);
    json_decref(cands);
    json_decref(run);
    json_decref(result);
    if (rc != FR_OK && err) {
        static const char prefix[] = "self-check failed: ";
        size_t keep = sizeof err->msg - sizeof prefix; /* room left for the old message */
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        old[keep] = '\0';
        memcpy(err->msg, prefix, sizeof prefix - 1);
        memcpy(err->msg + sizeof prefix - 1, old, strlen(old) + 1);
    }
    return rc;
}

/* ---- task.draw ------------------------------------------------------------ */

uint64_t fr_policy_draw_seed(long long seed)
{
    char text[24];
    int n = snprintf(text, sizeof text, "%lld", seed);        /* Lua's tostring */
    return fr_fnv1a64(text, (size_t)n + 1, FR_FNV1A64_BASIS); /* and its "\0" */
}

double fr_policy_draw(uint64_t seed_state, const char *name, int attempt)
{
    char text[16], *at = text + sizeof text; /* "%d" of attempt, written backwards */
    unsigned long v = attempt < 0 ? 0UL - (unsigned long)attempt : (unsigned long)attempt;
    do
        *--at = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    if (attempt < 0)
        *--at = '-';
    uint64_t h = fr_fnv1a64(name, strlen(name) + 1, seed_state); /* and "\0" */
    h = fr_fnv1a64(at, (size_t)(text + sizeof text - at), h);
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL; /* names a letter apart land far apart */
    h ^= h >> 33;
    return (double)(h >> 11) / 9007199254740992.0; /* 53 bits: exact in a double */
}
