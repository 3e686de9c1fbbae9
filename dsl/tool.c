/* The tools of a loaded workflow: checking at load that every agent's and
 * task's tool patterns name declared tools and MCP servers, giving tasks
 * their agent's tools, looking tools up by name, calling a Lua tool's run
 * function in the workflow's sandbox, and freeing the specs. Which tools an
 * MCP server has is only known at run time (engine/toolset). */

#include "dsl/load_int.h"

#include "dsl/luajson.h"
#include "dsl/sandbox.h"
#include "dsl/suggest.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Frees what wf->mcps and wf->tools own and releases the run functions'
 * references (when the Lua state is still there). */
void fr_load_free_tools(fr_workflow *wf)
{
    for (size_t i = 0; i < wf->nmcps; i++) {
        fr_mcp_spec *m = &wf->mcps[i];
        free(m->name);
        free_strv(m->command, m->ncommand);
        free_strv(m->env, m->nenv);
        free(m->cwd);
        free(m->url);
        free_strv(m->header_names, m->nheaders);
        free_strv(m->header_envs, m->nheaders);
        free(m->file);
    }
    free(wf->mcps);
    wf->mcps = NULL;
    wf->nmcps = 0;
    for (size_t i = 0; i < wf->ntools; i++) {
        fr_tool_spec *t = &wf->tools[i];
        if (wf->lua && wf->lua->tools)
            fr_sandbox_unref(wf->lua->L, wf->lua->tools[i].run_ref);
        free(t->name);
        free(t->description);
        json_decref(t->parameters);
        free_strv(t->command, t->ncommand);
        free(t->cwd);
        free(t->file);
    }
    free(wf->tools);
    wf->tools = NULL;
    wf->ntools = 0;
    if (wf->lua) {
        free(wf->lua->tools);
        wf->lua->tools = NULL;
    }
}

/* The index of `name` among `n` specs of `size` bytes at `base`, each
 * starting with its `char *name` (fr_tool_spec, fr_mcp_spec), or -1. */
_Static_assert(offsetof(fr_tool_spec, name) == 0 && offsetof(fr_mcp_spec, name) == 0,
               "find_named reads the name first");

static long find_named(const void *base, size_t n, size_t size, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(*(char *const *)((const char *)base + i * size), name) == 0)
            return (long)i;
    return -1;
}

/* Returns the index of the Lua or command tool named `name`, or -1. */
long fr_workflow_find_tool(const fr_workflow *wf, const char *name)
{
    return find_named(wf->tools, wf->ntools, sizeof *wf->tools, name);
}

/* Returns the index of the MCP server named `name`, or -1. */
long fr_workflow_find_mcp(const fr_workflow *wf, const char *name)
{
    return find_named(wf->mcps, wf->nmcps, sizeof *wf->mcps, name);
}

/* Formats "; did you mean 'x'?" for `word` among `n` `names`, or "". */
static void suggestion(char *buf, size_t size, const char *word, const char *const *names, size_t n)
{
    const char *s = fr_suggest(word, names, n);
    if (s)
        snprintf(buf, size, "; did you mean '%s'?", s);
    else
        buf[0] = '\0';
}

/* A bare name that is no declared tool. The candidates are the tools and,
 * for a name close to a server's, "server.*". */
static int unknown_tool(const fr_workflow *wf, const char *pat, const char *where, const char *file,
                        int line, fr_error *err)
{
    if (fr_workflow_find_mcp(wf, pat) >= 0)
        return fr_error_set(err, FR_EWORKFLOW, file, line,
                            "%s: field 'tools' names '%s', which is an MCP server, not a tool: "
                            "write '%s.*' for all of its tools, or '%s.TOOL' for one",
                            where, pat, pat, pat);
    size_t n = wf->ntools + wf->nmcps, k = 0;
    const char **names = fr_xcalloc(n + 1, sizeof *names);
    char **globs = fr_xcalloc(wf->nmcps + 1, sizeof *globs);
    for (size_t i = 0; i < wf->ntools; i++)
        names[k++] = wf->tools[i].name;
    for (size_t i = 0; i < wf->nmcps; i++)
        names[k++] = globs[i] = fr_xasprintf("%s.*", wf->mcps[i].name);
    char sug[300];
    suggestion(sug, sizeof sug, pat, names, k);
    int rc = fr_error_set(err, FR_EWORKFLOW, file, line,
                          "%s: field 'tools' names unknown tool '%s'%s%s", where, pat, sug,
                          sug[0] ? ""
                                 : " (declare it with tool \"NAME\" { ... }, or name an MCP "
                                   "server's tools as 'server.TOOL' or 'server.*')");
    free_strv(globs, wf->nmcps);
    free(names);
    return rc;
}

/* "srv.x" or "srv.*" whose server is not declared. */
static int unknown_server(const fr_workflow *wf, const char *pat, const char *server,
                          const char *where, const char *file, int line, fr_error *err)
{
    const char **names = fr_xcalloc(wf->nmcps + 1, sizeof *names);
    for (size_t i = 0; i < wf->nmcps; i++)
        names[i] = wf->mcps[i].name;
    char sug[300];
    suggestion(sug, sizeof sug, server, names, wf->nmcps);
    free(names);
    return fr_error_set(err, FR_EWORKFLOW, file, line,
                        "%s: field 'tools' names '%s', but no MCP server '%s' is declared%s%s",
                        where, pat, server, sug,
                        sug[0] ? "" : " (declare it with mcp \"NAME\" { command = { ... } })");
}

/* Checks each of `n` patterns (borrowed) of the agent or task `where` at
 * file:line. The syntax was checked as the field was read. */
static int check_patterns(const fr_workflow *wf, char *const *pats, size_t n, const char *where,
                          const char *file, int line, fr_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *pat = pats[i];
        const char *dot = strchr(pat, '.');
        if (!dot) {
            if (fr_workflow_find_tool(wf, pat) < 0)
                return unknown_tool(wf, pat, where, file, line, err);
            continue;
        }
        char *server = fr_xstrndup(pat, (size_t)(dot - pat));
        int rc = fr_workflow_find_mcp(wf, server) >= 0
                     ? FR_OK
                     : unknown_server(wf, pat, server, where, file, line, err);
        free(server);
        if (rc != FR_OK)
            return rc;
    }
    return FR_OK;
}

/* A private task's tool calls carry its data (privacy follows the data):
 * it may only use the tools of servers on the local tier. */
static int check_private_servers(const fr_workflow *wf, const fr_task_spec *t, fr_error *err)
{
    if (!t->is_private)
        return FR_OK;
    for (size_t i = 0; i < t->ntools; i++) {
        const char *dot = strchr(t->tools[i], '.');
        if (!dot)
            continue;
        char *server = fr_xstrndup(t->tools[i], (size_t)(dot - t->tools[i]));
        long m = fr_workflow_find_mcp(wf, server);
        free(server);
        if (m < 0 || wf->mcps[m].tier != FR_TIER_CLOUD)
            continue;
        const fr_mcp_spec *ms = &wf->mcps[m];
        char why[400];
        fr_workflow_privacy_text(wf, (size_t)(t - wf->tasks), why, sizeof why);
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' (%s) may use '%s', a tool of MCP server '%s' "
                            "(%s:%d) at %s, which is not on this machine: what a call sends "
                            "would leave the local tier; drop the tool from the task, or write "
                            "tier = \"local\" on the server if it runs in your lab",
                            t->name, why, t->tools[i], ms->name, ms->file, ms->line, ms->url);
    }
    return FR_OK;
}

static char **copy_strv(char *const *v, size_t n)
{
    char **out = fr_xcalloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; i < n; i++)
        out[i] = fr_xstrdup(v[i]);
    return out;
}

/*
 * Checks every agent's patterns, then every task's own; a task that wrote
 * no `tools` gets its agent's (a task's list, `{}` too, replaces the
 * agent's). An empty list ends as NULL/0. A task with tools pinned to an
 * endpoint that cannot call them could never run. Returns FR_OK or
 * FR_EWORKFLOW with `err` filled.
 */
int fr_load_resolve_tools(fr_workflow *wf, fr_error *err)
{
    char where[300];
    for (size_t i = 0; i < wf->nagents; i++) {
        const fr_agent_spec *a = &wf->agents[i];
        snprintf(where, sizeof where, "agent '%s'", a->name);
        int rc = check_patterns(wf, a->tools, a->ntools, where, a->file, a->line, err);
        if (rc != FR_OK)
            return rc;
    }
    for (size_t i = 0; i < wf->ntasks; i++) {
        fr_task_spec *t = &wf->tasks[i];
        const fr_agent_spec *a = &wf->agents[t->agent];
        if (t->ntools > 0) { /* most tasks have none: no message to prepare */
            snprintf(where, sizeof where, "task '%s'", t->name);
            int rc = check_patterns(wf, t->tools, t->ntools, where, t->file, t->line, err);
            if (rc != FR_OK)
                return rc;
        }
        if (!t->tools && a->ntools > 0) {
            t->tools = copy_strv(a->tools, a->ntools);
            t->ntools = a->ntools;
        } else if (t->tools && t->ntools == 0) {
            free(t->tools);
            t->tools = NULL;
        }
        long e = t->endpoint && t->ntools ? fr_workflow_find_endpoint(wf, t->endpoint) : -1;
        if (e >= 0 && !wf->endpoints[e].tools)
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                                "task '%s' has tools but is pinned to endpoint '%s' (%s:%d), "
                                "which says tools = false: pin it to an endpoint whose model can "
                                "call tools",
                                t->name, t->endpoint, wf->endpoints[e].file, wf->endpoints[e].line);
        int rc = check_private_servers(wf, t, err);
        if (rc != FR_OK)
            return rc;
    }
    return FR_OK;
}

/* Converts the table at 3 to JSON into the slot (light userdata 1), with
 * the reason (light userdata 2, 512 bytes) on failure; returns a boolean.
 * Protected mode: the strict converter may raise a memory error. */
static int table_to_json(lua_State *L)
{
    json_t **slot = lua_touserdata(L, 1);
    char *why = lua_touserdata(L, 2);
    lua_pushboolean(L, fr_lua_table_to_json(L, 3, slot, why, 512) == 0);
    return 1;
}

/* The run function's result on top: its text into *out (owned). */
static int take_result(lua_State *L, const fr_tool_spec *t, int line, const char *what, char **out,
                       fr_error *err)
{
    int rc = FR_OK;
    switch (lua_type(L, -2)) {
    case LUA_TSTRING: {
        size_t len, at = 0;
        const char *s = lua_tolstring(L, -2, &len);
        const char *bad = fr_utf8_text(s, len, &at);
        if (bad)
            return fr_error_set(err, FR_ELUA, t->file, line,
                                "%s returned text that %s at byte %zu; a result must be UTF-8 "
                                "text",
                                what, bad, at);
        *out = fr_xstrndup(s, len);
        return FR_OK;
    }
    case LUA_TNUMBER:
    case LUA_TBOOLEAN:
        lua_pushvalue(L, -2); /* [result, reason, result] */
        *out = fr_xstrdup(luaL_tolstring(L, -1, NULL));
        return FR_OK;
    case LUA_TTABLE: {
        json_t *j = NULL;
        char why[512] = "";
        lua_pushcfunction(L, table_to_json); /* [result, reason, fn] */
        lua_pushlightuserdata(L, &j);
        lua_pushlightuserdata(L, why);
        lua_pushvalue(L, -5); /* [result, reason, fn, slot, why, result] */
        rc = fr_lua_call(L, 3, 1, what, err);
        if (rc == FR_OK && !lua_toboolean(L, -1))
            rc = fr_error_set(err, FR_ELUA, t->file, line,
                              "%s returned a table with no JSON form: %s", what, why);
        if (rc == FR_OK) {
            *out = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            if (!*out)
                rc = fr_error_set(err, FR_ENOMEM, t->file, line, "%s: out of memory", what);
        }
        json_decref(j);
        return rc;
    }
    case LUA_TNIL:
        if (lua_type(L, -1) == LUA_TSTRING) /* nil, "why": the tool failed, and why */
            return fr_error_set(err, FR_ELUA, t->file, line, "%s failed: %s", what,
                                lua_tostring(L, -1));
        return fr_error_set(err, FR_ELUA, t->file, line,
                            "%s returned nothing; return a string, a table (sent as JSON), or "
                            "nil and a reason",
                            what);
    default:
        return fr_error_set(err, FR_ELUA, t->file, line,
                            "%s must return a string, a table, or nil and a reason; got %s", what,
                            luaL_typename(L, -2));
    }
}

/*
 * Runs Lua tool `tool` of `wf` as run(args) with `args` (borrowed; NULL is
 * an empty table) under the sandbox's limits; see workflow.h. On FR_OK *out
 * is owned. FR_EINVAL for an index that is no Lua tool.
 */
int fr_workflow_call_tool(fr_workflow *wf, size_t tool, const json_t *args, char **out,
                          fr_error *err)
{
    *out = NULL;
    if (!wf || tool >= wf->ntools || wf->tools[tool].kind != FR_TOOL_LUA)
        return fr_error_set(err, FR_EINVAL, "", 0, "no Lua tool with index %zu", tool);
    const fr_tool_spec *t = &wf->tools[tool];
    const fr_tool_lua *tl = &wf->lua->tools[tool];
    lua_State *L = wf->lua->L;
    int top = lua_gettop(L);
    char what[300];
    snprintf(what, sizeof what, "tool '%s'", t->name);
    int rc = fr_load_call_json(L, tl->run_ref, args, 2, what, t->file, tl->run_line, err);
    if (rc == FR_OK) /* [result, reason] */
        rc = take_result(L, t, tl->run_line, what, out, err);
    lua_settop(L, top);
    return rc;
}
