#include "dsl/policy.h"

#include "dsl/luajson.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct fr_policy {
    lua_State *L;
    char *name;
    char *path;
    int version;
    int route_ref;
    int on_result_ref;
};

static const char *lua_dir(void)
{
    const char *d = getenv("FLOWRUN_LUA_DIR");
    return d && *d ? d : FLOWRUN_LUA_DIR;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_builtin_name(const char *s)
{
    if (!*s)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

int fr_policy_resolve(const char *spec, const char *base_dir, char **path, fr_error *err)
{
    char *p = NULL;
    if (is_builtin_name(spec)) {
        p = fr_xasprintf("%s/policies/%s.lua", lua_dir(), spec);
        if (!is_file(p)) {
            free(p);
            return fr_error_set(err, FR_ENOENT, "policy", 0,
                                "no built-in policy named '%s' (built-in: balanced, cost, speed, "
                                "local-only; or give a path to a .lua file)",
                                spec);
        }
    } else {
        if (spec[0] == '/' || !base_dir || !*base_dir)
            p = fr_xstrdup(spec);
        else
            p = fr_xasprintf("%s/%s", base_dir, spec);
        if (!is_file(p)) {
            int rc = fr_error_set(err, FR_ENOENT, p, 0, "policy file not found");
            free(p);
            return rc;
        }
    }
    *path = p;
    return FR_OK;
}

static char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 4 && strcmp(b + n - 4, ".lua") == 0)
        n -= 4;
    return fr_xstrndup(b, n);
}

int fr_policy_load(const char *path, const fr_lua_limits *lim, int version, fr_policy **out,
                   fr_error *err)
{
    int rc = FR_ENOMEM;
    fr_policy *p = fr_xcalloc(1, sizeof *p);
    p->route_ref = p->on_result_ref = LUA_NOREF;
    p->version = version;
    p->path = fr_xstrdup(path);
    p->name = base_name(path);
    char *log_name = fr_xasprintf("policy:%s", p->name);
    p->L = fr_sandbox_new(lim, log_name);
    free(log_name);
    if (!p->L)
        goto cleanup;
    lua_State *L = p->L;
    rc = fr_sandbox_load_file(L, path, err); /* [chunk] */
    if (rc != FR_OK)
        goto cleanup;
    rc = fr_lua_call(L, 0, 1, "policy file", err); /* [module] */
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_EPOLICY;
    if (!lua_istable(L, -1)) {
        fr_error_set(err, rc, path, 0, "a policy file must return a table with a route function");
        lua_pop(L, 1);
        goto cleanup;
    }
    lua_getfield(L, -1, "route"); /* [module, route] */
    if (!lua_isfunction(L, -1)) {
        fr_error_set(err, rc, path, 0, "the returned table has no function 'route'");
        lua_pop(L, 2);
        goto cleanup;
    }
    p->route_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* [module] */
    lua_getfield(L, -1, "on_result");              /* [module, on_result] */
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) {
        fr_error_set(err, rc, path, 0, "'on_result' must be a function when present");
        lua_pop(L, 2);
        goto cleanup;
    }
    if (lua_isfunction(L, -1))
        p->on_result_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* [module] */
    else
        lua_pop(L, 1);
    lua_pop(L, 1); /* [] */
    *out = p;
    p = NULL;
    rc = FR_OK;
cleanup:
    fr_policy_free(p);
    return rc;
}

void fr_policy_free(fr_policy *p)
{
    if (!p)
        return;
    if (p->L) {
        luaL_unref(p->L, LUA_REGISTRYINDEX, p->route_ref);
        luaL_unref(p->L, LUA_REGISTRYINDEX, p->on_result_ref);
        fr_sandbox_free(p->L);
    }
    free(p->name);
    free(p->path);
    free(p);
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
static long find_candidate(const json_t *candidates, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(candidates, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0)
            return (long)i;
    }
    return -1;
}

int fr_policy_route(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                    char **choice, fr_error *err)
{
    lua_State *L = p->L;
    *choice = NULL;
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->route_ref); /* [route] */
    fr_lua_push_json(L, task);                       /* [route, task] */
    fr_lua_push_json(L, candidates);                 /* [route, task, cands] */
    fr_lua_push_json(L, run);                        /* [route, task, cands, run] */
    int rc = fr_lua_call(L, 3, 1, "route", err);     /* [ret] */
    if (rc != FR_OK)
        return rc;
    const char *name = NULL;
    if (lua_type(L, -1) == LUA_TSTRING)
        name = lua_tostring(L, -1);
    else if (lua_istable(L, -1)) {
        {
            lua_pushliteral(L, "name"); /* [ret, "name"] */
            lua_rawget(L, -2);          /* [ret, name] */
            if (lua_type(L, -1) == LUA_TSTRING)
                name = lua_tostring(L, -1);
            lua_remove(L, -2); /* [name] */
        }
    } else if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return FR_OK;
    }
    rc = FR_OK;
    if (!name)
        rc = fr_error_set(err, FR_EPOLICY, p->path, 0,
                          "route returned a %s; expected a candidate, its name, or nil",
                          luaL_typename(L, -1));
    else if (find_candidate(candidates, name) < 0)
        rc = fr_error_set(err, FR_EPOLICY, p->path, 0,
                          "route returned '%s', which is not one of the candidates", name);
    else
        *choice = fr_xstrdup(name);
    lua_pop(L, 1);
    return rc;
}
