/* The declarations of where tools come from: `mcp "name" { ... }` (an MCP
 * server over stdio or Streamable HTTP) and `tool "name" { ... }` (a Lua
 * function or a command the author wrote), and the `tools = { ... }` field
 * of agents and tasks. Like dsl/decl.c, each body checks its fields as it
 * runs and copies them into the fr_workflow being built; whether a pattern
 * names a declared tool is checked once the whole file ran (dsl/tool.c). */

#include "dsl/decl_int.h"

#include "dsl/luajson.h"
#include "dsl/sandbox.h"
#include "dsl/schema.h"
#include "dsl/suggest.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Returns true when `s` (borrowed) is [A-Za-z][A-Za-z0-9_-]*. */
bool fr_decl_is_tool_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Fails on a pattern that is neither a bare tool name, "server.tool" nor
 * "server.*"; what it names is checked after the file ran. */
static void check_pattern(fr_decl *d, const char *pat, size_t pos)
{
    const char *dot = strchr(pat, '.');
    const char *why = NULL;
    if (!dot) {
        if (!fr_decl_is_tool_name(pat))
            why = "a tool name starts with a letter and has only letters, digits, '_' and '-'";
    } else {
        char server[128];
        snprintf(server, sizeof server, "%.*s", (int)(dot - pat), pat);
        const char *tool = dot + 1;
        const char *star = strchr(tool, '*');
        if ((size_t)(dot - pat) >= sizeof server || !fr_decl_is_tool_name(server))
            why = "the part before the dot must be an MCP server's name";
        else if (!*tool)
            why = "name a tool after the dot, or write '*' for all of the server's tools";
        else if (star && strcmp(tool, "*") != 0)
            why = "'*' stands alone after the dot ('server.*'): there are no partial wildcards";
    }
    if (why)
        fr_decl_fail(d, "%s: field 'tools' (item %zu) '%.80s' is not a tool pattern: %s", d->where,
                     pos, pat, why);
}

/* Reads `tools = { ... }`: an array of patterns, each once. */
void fr_decl_tools_field(fr_decl *d, int t, char ***out, size_t *n)
{
    if (!fr_decl_str_array(d, t, "tools", out, n))
        return;
    for (size_t i = 0; i < *n; i++) {
        check_pattern(d, (*out)[i], i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp((*out)[i], (*out)[j]) == 0)
                fr_decl_fail(d, "%s: field 'tools' lists '%s' twice", d->where, (*out)[i]);
    }
}

/* Resolves `path` (borrowed) against the workflow's directory; owned. */
static char *resolve_dir(const fr_workflow *wf, const char *path)
{
    if (path[0] == '/')
        return fr_xstrdup(path);
    return fr_xasprintf("%s/%s", wf->dir, path);
}

/* Reads the argv field `f` ("command"): a non-empty array of non-empty
 * strings whose first item is a literal program. */
static void read_argv(fr_decl *d, int t, const char *f, char ***out, size_t *n)
{
    if (!fr_decl_str_array(d, t, f, out, n))
        return;
    if (*n == 0)
        fr_decl_fail(d,
                     "%s: field '%s' must not be empty: give the program first, as in { "
                     "\"pytest\", \"-q\" }",
                     d->where, f);
    if (strstr((*out)[0], "{{"))
        fr_decl_fail(d,
                     "%s: field '%s' item 1 '%.80s' must be a literal program: the model's "
                     "arguments may only fill later items",
                     d->where, f, (*out)[0]);
}

/* Returns the key of the string-keyed table at `m` that follows `prev`
 * (borrowed, NULL for the first) in byte order, borrowed from the table, or
 * NULL after the last. Keys in a fixed order keep the result independent of
 * Lua's hash order; the tables are small. */
static const char *next_key(lua_State *L, int m, const char *prev)
{
    const char *best = NULL;
    lua_pushnil(L); /* [nil] */
    while (lua_next(L, m)) {
        /* [k, v] */
        const char *k = lua_tostring(L, -2);
        if ((!prev || strcmp(k, prev) > 0) && (!best || strcmp(k, best) < 0))
            best = k;  /* stays alive: the table holds it */
        lua_pop(L, 1); /* [k] */
    }
    return best;
}

/* Pushes the map field `f` when present and checks that it maps strings to
 * strings; returns its number of entries, or -1 (pushing nothing) when it
 * is absent. `desc` says what the map holds. [-0, +(0|1)] */
static long push_map(fr_decl *d, int t, const char *f, const char *desc)
{
    lua_State *L = d->L;
    int ty = fr_decl_push_field(d, t, f); /* [m] */
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return -1;
    }
    if (ty != LUA_TTABLE)
        fr_decl_fail_type(d, f, desc);
    int m = lua_gettop(L);
    long n = 0;
    lua_pushnil(L); /* [m, nil] */
    while (lua_next(L, m)) {
        /* [m, k, v] */
        if (lua_type(L, -2) != LUA_TSTRING)
            fr_decl_fail(d, "%s: field '%s' must be %s; found a key of type %s", d->where, f, desc,
                         luaL_typename(L, -2));
        if (lua_type(L, -1) != LUA_TSTRING)
            fr_decl_fail(d, "%s: field '%s.%s' must be a string, got %s", d->where, f,
                         lua_tostring(L, -2), luaL_typename(L, -1));
        n++;
        lua_pop(L, 1); /* [m, k] */
    }
    return n;
}

/* Returns true when `s` (borrowed) is an HTTP header name (an RFC 9110
 * token). */
static bool is_header_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

/* One entry of a map: key `k` (borrowed), its value on top, index `i` in
 * key order. */
typedef void (*entry_fn)(fr_decl *d, fr_mcp_spec *m, size_t i, const char *k);

/* Calls `entry` for each entry of the map on top, in key order, and pops
 * the map. [-1, +0] */
static void each_entry(fr_decl *d, fr_mcp_spec *m, entry_fn entry)
{
    lua_State *L = d->L;
    int map = lua_gettop(L);
    const char *k = NULL;
    for (size_t i = 0; (k = next_key(L, map, k)); i++) {
        lua_pushstring(L, k); /* [map, k] */
        lua_rawget(L, map);   /* [map, v] */
        entry(d, m, i, k);
        lua_pop(L, 1); /* [map] */
    }
    lua_pop(L, 1); /* [] */
}

static void env_entry(fr_decl *d, fr_mcp_spec *m, size_t i, const char *k)
{
    if (!fr_decl_is_var_name(k))
        fr_decl_fail(d,
                     "%s: field 'env' has '%.80s', which is not an environment variable "
                     "name (letters, digits and '_', not starting with a digit)",
                     d->where, k);
    m->env[i] = fr_xasprintf("%s=%s", k, fr_decl_text(d, "env", i + 1));
}

/* env = { NAME = "value" }: "NAME=value" strings, in name order. The array
 * hangs off `m` before it is filled, so a failure leaks nothing. */
static void read_env(fr_decl *d, int t, fr_mcp_spec *m)
{
    long n = push_map(d, t, "env", "a table of NAME = \"value\"");
    if (n < 0)
        return;
    m->env = fr_xcalloc(n ? (size_t)n : 1, sizeof *m->env);
    m->nenv = (size_t)n;
    each_entry(d, m, env_entry);
}

static void header_entry(fr_decl *d, fr_mcp_spec *m, size_t i, const char *k)
{
    if (!is_header_name(k))
        fr_decl_fail(d, "%s: field 'headers_env' has '%.80s', which is not an HTTP header name",
                     d->where, k);
    /* Never echo the value: it may be a secret. */
    if (fr_decl_looks_like_key(lua_tostring(d->L, -1)))
        fr_decl_fail(d,
                     "%s: field 'headers_env.%s' must be the NAME of an environment variable "
                     "(such as SEARCH_TOKEN), not a value; header values are only read from "
                     "environment variables",
                     d->where, k);
    m->header_names[i] = fr_xstrdup(k);
    m->header_envs[i] = fr_xstrdup(lua_tostring(d->L, -1));
}

/* headers_env = { Header = "ENV_VAR" }: the header and the variable its
 * value comes from, in header order; a value is never accepted. */
static void read_headers(fr_decl *d, int t, fr_mcp_spec *m)
{
    long n = push_map(d, t, "headers_env", "a table of Header = \"ENV_VAR\"");
    if (n < 0)
        return;
    m->header_names = fr_xcalloc(n ? (size_t)n : 1, sizeof *m->header_names);
    m->header_envs = fr_xcalloc(n ? (size_t)n : 1, sizeof *m->header_envs);
    m->nheaders = (size_t)n;
    each_entry(d, m, header_entry);
}

/* Fails when field `f` is present: it belongs to the other kind. */
static void refuse_field(fr_decl *d, int t, const char *f, const char *why)
{
    int ty = fr_decl_push_field(d, t, f); /* [v] */
    lua_pop(d->L, 1);                     /* [] */
    if (ty != LUA_TNIL)
        fr_decl_fail(d, "%s: field '%s' %s", d->where, f, why);
}

/* ---- mcp ---- */

/* True when `url` (an http(s) URL) names this machine: localhost, 127.x.x.x
 * or [::1]. */
static bool url_is_loopback(const char *url)
{
    const char *h = strstr(url, "://");
    h = h ? h + 3 : url;
    size_t n = strcspn(h, ":/?#");
    if (h[0] == '[')
        return strncmp(h, "[::1]", 5) == 0;
    return (n == 9 && strncasecmp(h, "localhost", 9) == 0) || strncmp(h, "127.", 4) == 0;
}

void fr_decl_mcp_body(lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    fr_decl d;
    fr_decl_body_begin(&d, L, c, p, t);
    fr_workflow *wf = c->wf;
    wf->mcps = fr_xrealloc(wf->mcps, (wf->nmcps + 1) * sizeof *wf->mcps);
    fr_mcp_spec *m = &wf->mcps[wf->nmcps];
    memset(m, 0, sizeof *m);
    m->name = fr_xstrdup(c->pending[p].name);
    m->file = fr_xstrdup(c->file);
    m->line = c->pending[p].line;
    m->start_timeout_s = 60;
    m->call_timeout_s = 60;
    wf->nmcps++;

    read_argv(&d, t, "command", &m->command, &m->ncommand);
    if (fr_decl_str(&d, t, "url", FR_FIELD_NONEMPTY, &m->url)) {
        if (!fr_decl_is_http_url(m->url)) {
            fr_decl_push_field(&d, t, "url"); /* [url] for the message */
            fr_decl_fail_value(&d, "url", "a URL starting with http:// or https://");
        }
        if (fr_decl_url_holds_key(m->url))
            fr_decl_fail(&d,
                         "%s: field 'url' carries a credential (user:password@ or a key= "
                         "parameter); send it in a header named by an environment variable: "
                         "headers_env = { Authorization = \"TOKEN_VAR\" }",
                         d.where);
    }
    if (m->command && m->url)
        fr_decl_fail(&d,
                     "%s: give either 'command' (a server over stdio) or 'url' (over HTTP), not "
                     "both",
                     d.where);
    if (!m->command && !m->url)
        fr_decl_fail(&d,
                     "%s: missing 'command' or 'url': write command = { \"npx\", \"-y\", "
                     "\"server\" } for a server over stdio, or url = \"http://...\" for one "
                     "over HTTP",
                     d.where);
    if (m->url) {
        refuse_field(&d, t, "env", "applies to servers started with 'command' only");
        refuse_field(&d, t, "cwd", "applies to servers started with 'command' only");
    } else {
        refuse_field(&d, t, "headers_env", "applies to servers reached by 'url' only");
    }
    read_env(&d, t, m);
    read_headers(&d, t, m);
    if (fr_decl_str(&d, t, "cwd", FR_FIELD_NONEMPTY, &m->cwd)) {
        char *abs = resolve_dir(wf, m->cwd);
        free(m->cwd);
        m->cwd = abs;
    }
    m->tier = !m->url || url_is_loopback(m->url) ? FR_TIER_LOCAL : FR_TIER_CLOUD;
    int ty = fr_decl_push_field(&d, t, "tier"); /* [tier] */
    if (ty != LUA_TNIL && (ty != LUA_TSTRING || fr_tier_parse(lua_tostring(L, -1), &m->tier) != 0 ||
                           m->tier == FR_TIER_ANY))
        fr_decl_fail_value(&d, "tier", "\"local\" or \"cloud\"");
    lua_pop(L, 1); /* [] */
    const char *secs = "a number of seconds > 0";
    fr_decl_num(&d, t, "start_timeout", 0, HUGE_VAL, FR_FIELD_LO_OPEN, secs, &m->start_timeout_s);
    fr_decl_num(&d, t, "timeout", 0, HUGE_VAL, FR_FIELD_LO_OPEN, secs, &m->call_timeout_s);
}

/* ---- tool ---- */

static size_t append_tool(fr_load_ctx *c, const fr_pending *p)
{
    fr_workflow *wf = c->wf;
    size_t i = wf->ntools;
    wf->tools = fr_xrealloc(wf->tools, (i + 1) * sizeof *wf->tools);
    wf->lua->tools = fr_xrealloc(wf->lua->tools, (i + 1) * sizeof *wf->lua->tools);
    fr_tool_spec *ts = &wf->tools[i];
    memset(ts, 0, sizeof *ts);
    ts->name = fr_xstrdup(p->name);
    ts->file = fr_xstrdup(c->file);
    ts->line = p->line;
    ts->timeout_s = 60;
    ts->output_cap = 65536;
    wf->lua->tools[i] = (fr_tool_lua){LUA_NOREF, p->line};
    wf->ntools = i + 1;
    return i;
}

/* parameters = { JSON Schema }: the gates' subset, an object schema;
 * {"type":"object"} when absent. */
static void read_parameters(fr_decl *d, int t, fr_tool_spec *ts)
{
    lua_State *L = d->L;
    int ty = fr_decl_push_field(d, t, "parameters"); /* [params] */
    if (ty == LUA_TNIL) {
        lua_pop(L, 1); /* [] */
        ts->parameters = json_pack("{s:s}", "type", "object");
        return;
    }
    if (ty != LUA_TTABLE)
        fr_decl_fail_type(d, "parameters", "a table (a JSON Schema of the arguments)");
    char why[512];
    if (fr_lua_table_to_json(L, -1, &ts->parameters, why, sizeof why) != 0)
        fr_decl_fail(d, "%s: field 'parameters' cannot be converted to JSON: %s", d->where, why);
    if (fr_schema_check(ts->parameters, "", why, sizeof why) != 0)
        fr_decl_fail(d, "%s: field 'parameters' is not a valid JSON Schema: %s", d->where, why);
    const char *type = json_string_value(json_object_get(ts->parameters, "type"));
    if (!type || strcmp(type, "object") != 0)
        fr_decl_fail(d,
                     "%s: field 'parameters' must be an object schema (type = \"object\", with "
                     "the arguments under properties): a tool's arguments are named",
                     d->where);
    lua_pop(L, 1); /* [] */
}

/* Checks command item `pos` (1-based): literal, or exactly {{args.NAME}}
 * with NAME a property of the parameters. */
static void check_command_item(fr_decl *d, const fr_tool_spec *ts, size_t pos)
{
    const char *item = ts->command[pos - 1];
    if (!strstr(item, "{{"))
        return;
    size_t len = strlen(item);
    const char *pre = "{{args.";
    bool exact = len > strlen(pre) + 2 && strncmp(item, pre, strlen(pre)) == 0 &&
                 strcmp(item + len - 2, "}}") == 0 && !strstr(item + 2, "{{") &&
                 !memchr(item + strlen(pre), '}', len - strlen(pre) - 2);
    if (!exact)
        fr_decl_fail(d,
                     "%s: field 'command' item %zu '%.80s': an item with '{{' must be exactly "
                     "\"{{args.NAME}}\" (one whole argument, no spaces or other text)",
                     d->where, pos, item);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(len - strlen(pre) - 2), item + strlen(pre));
    const json_t *props = json_object_get(ts->parameters, "properties");
    if (json_object_get(props, name))
        return;
    size_t n = json_object_size(props), k = 0;
    const char **names = fr_xcalloc(n + 1, sizeof *names);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)props, key, v)
    {
        names[k++] = key;
    }
    const char *s = fr_suggest(name, names, k);
    char sug[300] = "";
    if (s)
        snprintf(sug, sizeof sug, "; did you mean '%s'?", s);
    free(names); /* before raising: the message is formatted already */
    fr_decl_fail(d,
                 "%s: field 'command' item %zu '%.80s' names '%s', which is not a property of "
                 "the tool's parameters%s",
                 d->where, pos, item, name, sug);
}

void fr_decl_tool_body(lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    fr_decl d;
    fr_decl_body_begin(&d, L, c, p, t);
    size_t i = append_tool(c, &c->pending[p]);
    fr_tool_spec *ts = &c->wf->tools[i];
    fr_tool_lua *tl = &c->wf->lua->tools[i];

    fr_decl_str(&d, t, "description", FR_FIELD_REQUIRED | FR_FIELD_NONEMPTY, &ts->description);
    read_parameters(&d, t, ts);

    int ty = fr_decl_push_field(&d, t, "run"); /* [run] */
    bool has_run = ty != LUA_TNIL;
    if (has_run && ty != LUA_TFUNCTION)
        fr_decl_fail_type(&d, "run", "a function of the arguments");
    if (has_run) {
        lua_Debug ar;
        lua_pushvalue(L, -1);      /* [run, run] */
        lua_getinfo(L, ">S", &ar); /* [run] */
        tl->run_line = ar.linedefined > 0 ? ar.linedefined : ts->line;
        tl->run_ref = fr_sandbox_ref(L); /* [] */
    } else {
        lua_pop(L, 1); /* [] */
    }
    read_argv(&d, t, "command", &ts->command, &ts->ncommand);
    if (has_run && ts->command)
        fr_decl_fail(&d, "%s: give either 'run' (a Lua function) or 'command', not both", d.where);
    if (!has_run && !ts->command)
        fr_decl_fail(&d,
                     "%s: missing 'run' or 'command': write run = function(args) ... end, or "
                     "command = { \"program\", \"{{args.NAME}}\" }",
                     d.where);
    ts->kind = has_run ? FR_TOOL_LUA : FR_TOOL_COMMAND;
    if (has_run) {
        refuse_field(&d, t, "cwd", "applies to command tools only");
        refuse_field(&d, t, "output_cap", "applies to command tools only");
    }
    for (size_t k = 0; k < ts->ncommand; k++)
        check_command_item(&d, ts, k + 1);
    if (fr_decl_str(&d, t, "cwd", FR_FIELD_NONEMPTY, &ts->cwd)) {
        char *abs = resolve_dir(c->wf, ts->cwd);
        free(ts->cwd);
        ts->cwd = abs;
    }
    fr_decl_num(&d, t, "timeout", 0, HUGE_VAL, FR_FIELD_LO_OPEN, "a number of seconds > 0",
                &ts->timeout_s);
    double cap;
    if (fr_decl_num(&d, t, "output_cap", 1, 1 << 30, FR_FIELD_INTEGER,
                    "an integer number of bytes from 1 to 1073741824", &cap))
        ts->output_cap = (long)cap;
}
