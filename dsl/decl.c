/* The declaration functions a workflow file calls: workflow{}, agent, task,
 * endpoint, baseline, mcp and tool (whose bodies are in dsl/decl_tool.c).
 * Each checks its fields as it runs (unknown names, types, ranges) and
 * copies them into the fr_workflow being built; checks that need the whole
 * file (agents, deps, pins, tool patterns) run afterwards in load.c.
 *
 * Errors are sticky: the first one is kept in the load context and every
 * later declaration raises again, so a script that wraps a declaration in
 * pcall cannot hide it. */

#include "dsl/decl_int.h"

#include "dsl/fields_def.h"
#include "dsl/luajson.h"
#include "dsl/sandbox.h"
#include "dsl/schema.h"
#include "dsl/suggest.h"
#include "engine/util/mem.h"
#include "engine/util/strmap.h"

#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define N(a) (sizeof(a) / sizeof *(a))

static const char ctx_key = 'C';

static const char *const kind_names[] = {"task", "agent", "endpoint", "mcp", "tool"};

/* The known fields of each declaration and sub-table: the names of the
 * rows of dsl/fields_def.h (which documents them for `flowrun defs`). */
#define FIELD_NAME(name, type, desc) name,
static const char *const task_fields[] = {FR_TASK_FIELDS(FIELD_NAME)};
static const char *const agent_fields[] = {FR_AGENT_FIELDS(FIELD_NAME)};
static const char *const endpoint_fields[] = {FR_ENDPOINT_FIELDS(FIELD_NAME)};
static const char *const price_fields[] = {FR_PRICE_FIELDS(FIELD_NAME)};
static const char *const timeouts_fields[] = {FR_TIMEOUTS_FIELDS(FIELD_NAME)};
static const char *const workflow_fields[] = {FR_WORKFLOW_FIELDS(FIELD_NAME)};
static const char *const budget_fields[] = {FR_BUDGET_FIELDS(FIELD_NAME)};
static const char *const defaults_fields[] = {FR_DEFAULTS_FIELDS(FIELD_NAME)};
static const char *const mcp_fields[] = {FR_MCP_FIELDS(FIELD_NAME)};
static const char *const tool_fields[] = {FR_TOOL_FIELDS(FIELD_NAME)};
#undef FIELD_NAME

/*
 * Initialises `c` to run `file` (borrowed, must outlive the context) into
 * `wf` (borrowed). Declaration errors get `code`; `endpoints_only` limits
 * the file to endpoint and baseline. Task defaults start at the documented
 * values (300 s, 2 retries, 2048 tokens, temperature 0.2).
 */
void fr_load_ctx_init(fr_load_ctx *c, fr_workflow *wf, const char *file, int code,
                      bool endpoints_only)
{
    memset(c, 0, sizeof *c);
    c->wf = wf;
    c->file = file;
    c->code = code;
    c->endpoints_only = endpoints_only;
    c->defaults.timeout_s = 300;
    c->defaults.retries = 2;
    c->defaults.max_tokens = 2048;
    c->defaults.temperature = 0.2;
    c->defaults.max_turns = 10;
    c->defaults.max_tool_calls = 50;
}

/* Frees what the context owns (agent names of tasks, pending names), not
 * the workflow; the context can be initialised again afterwards. */
void fr_load_ctx_close(fr_load_ctx *c)
{
    for (size_t i = 0; i < c->ntask_agents; i++)
        free(c->task_agents[i]);
    free(c->task_agents);
    free(c->task_private_given);
    c->task_private_given = NULL;
    for (size_t i = 0; i < c->npending; i++)
        if (!c->pending[i].moved)
            free(c->pending[i].name);
    free(c->pending);
    for (size_t k = 0; k < sizeof c->pending_names / sizeof c->pending_names[0]; k++) {
        fr_strmap_free(c->pending_names[k]);
        c->pending_names[k] = NULL;
    }
    c->task_agents = NULL;
    c->pending = NULL;
    c->ntask_agents = c->npending = c->pending_room = c->task_room = 0;
}

/* Returns true when `s` (borrowed, may be NULL) is non-empty and made only
 * of letters, digits, '_', '.' and '-'. */
bool fr_load_valid_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return true;
}

/* Returns the load context, or raises when the file is no longer loading
 * (a function kept in a prompt and called at run time). */
static fr_load_ctx *ctx_get(lua_State *L, const char *fname)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key); /* [ctx?] */
    fr_load_ctx *c = lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (!c) {
        luaL_where(L, 1); /* [where] the Lua caller of the declaration */
        lua_pushfstring(L, "%s() can only be used while a workflow file loads", fname);
        lua_concat(L, 2); /* [msg] */
        lua_error(L);
    }
    if (c->err.code != 0)
        fr_decl_raise(L, c);
    return c;
}

/* The line of the nearest Lua function up the stack. */
static int caller_line(lua_State *L)
{
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++)
        if (lua_getinfo(L, "l", &ar) && ar.currentline > 0)
            return ar.currentline;
    return 0;
}

/* Returns the index of the first pending declaration of `kind` named
 * `name`, or -1. */
static long find_pending(const fr_load_ctx *c, int kind, const char *name)
{
    return c->pending_names[kind] ? fr_strmap_get(c->pending_names[kind], name) : -1;
}

/* Validates the name at stack index 1 and records it as pending. */
static size_t declare(lua_State *L, fr_load_ctx *c, int kind, int line)
{
    const char *kn = kind_names[kind];
    if (lua_type(L, 1) != LUA_TSTRING)
        fr_decl_failc(L, c, line, "%s needs a name first, as in %s \"name\" { ... }, got %s", kn,
                      kn, luaL_typename(L, 1));
    size_t len;
    const char *name = lua_tolstring(L, 1, &len);
    if (!*name)
        fr_decl_failc(L, c, line, "%s name must not be empty", kn);
    if (strlen(name) != len)
        fr_decl_failc(L, c, line, "%s name '%s' holds a NUL byte at byte %zu; remove it", kn, name,
                      strlen(name));
    bool tool_like = kind == FR_DECL_MCP || kind == FR_DECL_TOOL;
    if (tool_like && !fr_decl_is_tool_name(name))
        fr_decl_failc(L, c, line,
                      "invalid %s name '%.80s': start with a letter, then use letters, digits, "
                      "'_' and '-'%s",
                      kn, name,
                      kind == FR_DECL_TOOL && strchr(name, '.')
                          ? " (a dot names an MCP server's tool: \"server.tool\")"
                          : "");
    if (!tool_like && !fr_load_valid_name(name))
        fr_decl_failc(L, c, line, "invalid %s name '%.80s': use letters, digits, '_', '.' and '-'",
                      kn, name);
    if (kind == FR_DECL_TASK && (strcmp(name, "var") == 0 || strncmp(name, "var.", 4) == 0))
        fr_decl_failc(L, c, line,
                      "task name '%s' is reserved: {{var.NAME}} refers to workflow vars", name);
    /* A bare name in tools = { ... } must say one thing: a tool, or a server. */
    long other =
        !tool_like ? -1 : find_pending(c, kind == FR_DECL_MCP ? FR_DECL_TOOL : FR_DECL_MCP, name);
    if (other >= 0)
        fr_decl_failc(L, c, line,
                      "%s '%s' has the name of the %s declared at %s:%d; give tools and MCP "
                      "servers different names",
                      kn, name, kind == FR_DECL_MCP ? "tool" : "MCP server", c->file,
                      c->pending[other].line);
    if (c->npending == c->pending_room) {
        c->pending_room = c->pending_room ? 2 * c->pending_room : 16;
        c->pending = fr_xrealloc(c->pending, c->pending_room * sizeof *c->pending);
    }
    if (!c->pending_names[kind])
        c->pending_names[kind] = fr_strmap_new(0);
    /* One probe finds a duplicate or records the name: the entry is
     * filled first, since the map borrows its name. */
    fr_pending *pe = &c->pending[c->npending];
    *pe = (fr_pending){kind, fr_xstrdup(name), line, false, 0, false};
    long prev = fr_strmap_put(c->pending_names[kind], pe->name, c->npending);
    if (prev >= 0) {
        free(pe->name); /* the entry was not counted: nothing else holds it */
        fr_decl_failc(L, c, line, "duplicate %s '%s' (first declared at %s:%d)", kn, name, c->file,
                      c->pending[prev].line);
    }
    return c->npending++;
}

/* Starts the body of the pending declaration `p` from the table at `t`:
 * prepares `d`, refuses anything but a table of the kind's known fields,
 * and marks the name declared. */
void fr_decl_body_begin(fr_decl *d, lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    static const struct {
        const char *const *names;
        size_t n;
    } fields[] = {
        [FR_DECL_TASK] = {task_fields, N(task_fields)},
        [FR_DECL_AGENT] = {agent_fields, N(agent_fields)},
        [FR_DECL_ENDPOINT] = {endpoint_fields, N(endpoint_fields)},
        [FR_DECL_MCP] = {mcp_fields, N(mcp_fields)},
        [FR_DECL_TOOL] = {tool_fields, N(tool_fields)},
    };
    fr_pending *pe = &c->pending[p];
    const char *kn = kind_names[pe->kind];
    /* "task 'b'": built by hand, not snprintf, as it runs once per task. */
    char where[300];
    const char *label = pe->kind == FR_DECL_MCP ? "mcp server" : kn;
    size_t ll = strlen(label), nl = strlen(pe->name);
    if (nl > sizeof where - ll - 4)
        nl = sizeof where - ll - 4;
    memcpy(where, label, ll);
    memcpy(where + ll, " '", 2);
    memcpy(where + ll + 2, pe->name, nl);
    memcpy(where + ll + 2 + nl, "'", 2);
    fr_decl_init(d, L, c, pe->line, where);
    if (lua_type(L, t) != LUA_TTABLE)
        fr_decl_fail(d, "%s: expected a table of fields, as in %s \"%s\" { ... }, got %s", where,
                     kn, pe->name, luaL_typename(L, t));
    fr_decl_check_fields(d, t, fields[pe->kind].names, fields[pe->kind].n);
    pe->done = true;
}

/* ---- task ---- */

/* Appends the task of pending declaration `p`, moving its name to the task:
 * the workflow outlives the context, and a copy would be a malloc and a
 * free per task. */
static size_t append_task(fr_load_ctx *c, fr_pending *p)
{
    fr_workflow *wf = c->wf;
    size_t i = wf->ntasks;
    if (i >= c->task_room) {
        /* Doubling: 10,000 tasks cost a few copies, not one per task. */
        size_t room = c->task_room = i < 8 ? 16 : 2 * i;
        wf->tasks = fr_xrealloc(wf->tasks, room * sizeof *wf->tasks);
        wf->lua->tasks = fr_xrealloc(wf->lua->tasks, room * sizeof *wf->lua->tasks);
        c->task_agents = fr_xrealloc(c->task_agents, room * sizeof *c->task_agents);
        c->task_private_given =
            fr_xrealloc(c->task_private_given, room * sizeof *c->task_private_given);
    }
    c->task_private_given[i] = false;
    fr_task_spec *t = &wf->tasks[i];
    memset(t, 0, sizeof *t);
    t->name = p->name; /* moved: p (and the pending names map) borrow it now */
    p->moved = true;
    t->file = fr_xstrdup(c->file);
    t->line = p->line;
    t->complexity = 0.5;
    t->priority = 5;
    t->timeout_s = -1; /* unset: workflow defaults apply after the run */
    t->retries = -1;
    t->max_tokens = -1;
    t->temperature = -1;
    t->tier = FR_TIER_ANY;
    t->max_turns = -1;
    t->max_tool_calls = -1;
    t->private_from = t->private_via = t->declassified_from = -1;
    t->plan_items = -1;
    wf->lua->tasks[i] = (fr_task_lua){LUA_NOREF, 0, LUA_NOREF, LUA_NOREF, 0};
    c->task_agents[i] = NULL;
    c->ntask_agents = i + 1;
    wf->ntasks = i + 1;
    return i;
}

/* Reads `trigger` of the table at `t` into ts->trigger: "all_ok",
 * "all_done" or "any_failed", with a did-you-mean for a near miss. */
static void trigger_field(fr_decl *d, int t, fr_task_spec *ts)
{
    static const char *const names[] = {"all_ok", "all_done", "any_failed"};
    int ty = fr_decl_push_present(d, t, "trigger"); /* [trigger?] */
    if (ty != LUA_TNIL) {
        const char *desc = "\"all_ok\", \"all_done\" or \"any_failed\"";
        if (ty != LUA_TSTRING)
            fr_decl_fail_type(d, "trigger", desc);
        const char *v = lua_tostring(d->L, -1);
        size_t k = 0;
        while (k < N(names) && strcmp(v, names[k]) != 0)
            k++;
        if (k == N(names)) {
            const char *s = fr_suggest(v, names, N(names));
            if (s)
                fr_decl_fail(d,
                             "%s: field 'trigger' must be %s, got '%.40s'; did you mean "
                             "\"%s\"?",
                             d->where, desc, v, s);
            fr_decl_fail_value(d, "trigger", desc);
        }
        ts->trigger = (fr_trigger)k; /* names[] is in the enum's order */
        lua_pop(d->L, 1);            /* [] */
    }
}

static void task_body(lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    fr_decl d;
    fr_decl_body_begin(&d, L, c, p, t);
    const char *where = d.where;
    size_t i = append_task(c, &c->pending[p]);
    c->pending[p].index = i;
    fr_task_spec *ts = &c->wf->tasks[i];
    fr_task_lua *tl = &c->wf->lua->tasks[i];

    fr_decl_str(&d, t, "agent", FR_FIELD_REQUIRED | FR_FIELD_NONEMPTY, &c->task_agents[i]);

    int ty = fr_decl_push_field(&d, t, "prompt"); /* [prompt] */
    if (ty == LUA_TNIL) {
        fr_decl_fail(&d, "%s: missing required field 'prompt'", where);
    } else if (ty == LUA_TSTRING) {
        ts->prompt = fr_xstrdup(fr_decl_text(&d, "prompt", 0));
        lua_pop(L, 1);
    } else if (ty == LUA_TFUNCTION) {
        lua_Debug ar;
        lua_pushvalue(L, -1);      /* [prompt, prompt] */
        lua_getinfo(L, ">S", &ar); /* [prompt] */
        tl->prompt_line = ar.linedefined > 0 ? ar.linedefined : ts->line;
        tl->prompt_ref = fr_sandbox_ref(L); /* [] */
    } else {
        fr_decl_fail_type(&d, "prompt", "a string or a function of ctx");
    }

    fr_decl_str_array(&d, t, "deps", &ts->deps, &ts->ndeps);
    fr_decl_num(&d, t, "complexity", 0, 1, 0, "a number from 0 to 1", &ts->complexity);
    fr_decl_str(&d, t, "type", FR_FIELD_NONEMPTY, &ts->type);
    fr_decl_int(&d, t, "priority", 1, 10, "an integer from 1 to 10", &ts->priority);
    c->task_private_given[i] = fr_decl_bool(&d, t, "private", &ts->is_private);
    fr_decl_bool(&d, t, "declassify", &ts->declassify);
    fr_decl_num(&d, t, "timeout", 0, HUGE_VAL, FR_FIELD_LO_OPEN, "a number of seconds > 0",
                &ts->timeout_s);
    fr_decl_int(&d, t, "retries", 0, 100, "an integer from 0 to 100", &ts->retries);
    fr_decl_int(&d, t, "max_tokens", 1, INT_MAX, "an integer >= 1", &ts->max_tokens);
    fr_decl_num(&d, t, "temperature", 0, 2, 0, "a number from 0 to 2", &ts->temperature);
    ts->has_budget =
        fr_decl_num(&d, t, "budget", 0, HUGE_VAL, 0, "a number of USD >= 0", &ts->budget_usd);
    bool has_min_quality =
        fr_decl_num(&d, t, "min_quality", 0, 1, 0, "a number from 0 to 1", &ts->min_quality);
    fr_decl_bool(&d, t, "approve", &ts->approve);
    fr_decl_bool(&d, t, "allow_truncated", &ts->allow_truncated);
    fr_decl_str(&d, t, "save", FR_FIELD_NONEMPTY, &ts->save);
    fr_decl_str(&d, t, "endpoint", FR_FIELD_NONEMPTY, &ts->endpoint);
    fr_decl_tools_field(&d, t, &ts->tools, &ts->ntools);
    fr_decl_int(&d, t, "max_turns", 1, 100, "an integer from 1 to 100", &ts->max_turns);
    fr_decl_int(&d, t, "max_tool_calls", 1, 1000, "an integer from 1 to 1000", &ts->max_tool_calls);
    bool cache = true;
    fr_decl_bool(&d, t, "cache", &cache);
    ts->no_cache = !cache;

    ty = fr_decl_push_present(&d, t, "tier"); /* [tier?] */
    if (ty != LUA_TNIL) {
        if (ty != LUA_TSTRING)
            fr_decl_fail_type(&d, "tier", "\"local\" or \"cloud\"");
        if (fr_tier_parse(lua_tostring(L, -1), &ts->tier) != 0)
            fr_decl_fail_value(&d, "tier", "\"local\" or \"cloud\"");
        lua_pop(L, 1); /* [] */
    }

    double seed;
    if (fr_decl_num(&d, t, "seed", -9.2e18, 9.2e18, FR_FIELD_INTEGER, "an integer", &seed)) {
        ts->has_seed = true;
        ts->seed = (long)seed;
    }

    ty = fr_decl_push_present(&d, t, "schema"); /* [schema?] */
    if (ty == LUA_TSTRING) {
        if (strcmp(lua_tostring(L, -1), "json") != 0)
            fr_decl_fail_value(&d, "schema",
                               "a table (a JSON Schema) or \"json\" (any JSON object)");
        ts->schema = json_string("json");
    } else if (ty != LUA_TNIL) {
        char why[512];
        if (ty != LUA_TTABLE)
            fr_decl_fail_type(&d, "schema", "a table (a JSON Schema) or \"json\"");
        if (fr_lua_table_to_json(L, -1, &ts->schema, why, sizeof why) != 0)
            fr_decl_fail(&d, "%s: field 'schema' cannot be converted to JSON: %s", where, why);
        if (fr_schema_check(ts->schema, "", why, sizeof why) != 0)
            fr_decl_fail(&d, "%s: field 'schema' is not a valid JSON Schema: %s", where, why);
    }
    if (ty != LUA_TNIL)
        lua_pop(L, 1); /* [] */

    trigger_field(&d, t, ts);
    fr_decl_foreach_fields(&d, t, ts);
    ty = fr_decl_push_present(&d, t, "when"); /* [when?] */
    if (ty == LUA_TFUNCTION) {
        lua_Debug ar;
        lua_pushvalue(L, -1);      /* [when, when] */
        lua_getinfo(L, ">S", &ar); /* [when] */
        tl->when_line = ar.linedefined > 0 ? ar.linedefined : ts->line;
        tl->when_ref = fr_sandbox_ref(L); /* [] */
        ts->has_when = true;
    } else if (ty == LUA_TSTRING) {
        /* Its placeholders are checked with the prompt's, once deps are known. */
        ts->when = fr_xstrdup(fr_decl_text(&d, "when", 0));
        ts->has_when = true;
        lua_pop(L, 1); /* [] */
    } else if (ty != LUA_TNIL) {
        fr_decl_fail_type(&d, "when",
                          "a function of ctx returning true or false, or a placeholder "
                          "expression such as \"{{review.json.ok}}\"");
    }

    ty = fr_decl_push_present(&d, t, "check"); /* [check?] */
    if (ty == LUA_TFUNCTION) {
        tl->check_ref = fr_sandbox_ref(L); /* [] */
        ts->has_check = true;
    } else if (ty != LUA_TNIL) {
        fr_decl_fail_type(&d, "check", "a function of the output");
    }
    /* Only a check gives a score: min_quality alone would enforce nothing. */
    if (has_min_quality && !ts->has_check)
        fr_decl_fail(&d,
                     "%s: 'min_quality' needs a 'check' that scores the output (add check = "
                     "function(output, json) return score end, from 0 to 1), or remove min_quality",
                     where);
}

/* True when `url` (borrowed) carries a credential: userinfo before the
 * host, or a key/api_key query parameter. The URL is never echoed. */
bool fr_decl_url_holds_key(const char *url)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t authority = strcspn(host, "/?#");
    if (memchr(host, '@', authority))
        return true;
    const char *q = strchr(url, '?');
    for (const char *p = q; p && *p; p = strchr(p + 1, '&')) {
        const char *name = p + 1;
        if (strncasecmp(name, "key=", 4) == 0 || strncasecmp(name, "api_key=", 8) == 0 ||
            strncasecmp(name, "apikey=", 7) == 0)
            return true;
    }
    return false;
}

/* The URL of an Ollama endpoint that names none: OLLAMA_HOST as Ollama
 * itself reads it (host, host:port or a URL; 0.0.0.0 means this machine),
 * else the local default. Returns an owned string. */
static char *ollama_default_url(void)
{
    const char *env = getenv("OLLAMA_HOST");
    if (!env || !*env)
        return fr_xstrdup("http://127.0.0.1:11434");
    const char *scheme = "http://";
    const char *rest = env;
    if (strncmp(env, "http://", 7) == 0 || strncmp(env, "https://", 8) == 0) {
        scheme = env[4] == 's' ? "https://" : "http://";
        rest = strstr(env, "://") + 3;
    }
    size_t hostlen = strcspn(rest, ":/");
    const char *tail = rest + hostlen; /* ":port/..." or "/..." or "" */
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(hostlen < 255 ? hostlen : 255), rest);
    if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
        snprintf(host, sizeof host, "127.0.0.1");
    size_t taillen = strlen(tail);
    while (taillen > 0 && tail[taillen - 1] == '/')
        taillen--;
    return fr_xasprintf("%s%s%s%.*s", scheme, host, tail[0] == ':' ? "" : ":11434", (int)taillen,
                        tail);
}

/* ---- agent ---- */

static void agent_body(lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    fr_decl d;
    fr_decl_body_begin(&d, L, c, p, t);
    fr_workflow *wf = c->wf;
    wf->agents = fr_xrealloc(wf->agents, (wf->nagents + 1) * sizeof *wf->agents);
    fr_agent_spec *a = &wf->agents[wf->nagents];
    memset(a, 0, sizeof *a);
    a->name = fr_xstrdup(c->pending[p].name);
    a->file = fr_xstrdup(c->file);
    a->line = c->pending[p].line;
    wf->nagents++;
    fr_decl_str(&d, t, "system", 0, &a->system);
    fr_decl_str(&d, t, "type", FR_FIELD_NONEMPTY, &a->type);
    fr_decl_bool(&d, t, "private", &a->is_private);
    fr_decl_tools_field(&d, t, &a->tools, &a->ntools);
}

/* ---- endpoint ---- */

/* Returns true when `s` (borrowed) is a C-style variable name. */
bool fr_decl_is_var_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* True when `s` looks like a secret rather than the name of a variable:
 * a known key prefix, not a variable name at all, or a long token mixing
 * cases or without any underscore (names of variables are SNAKE_CASE). */
bool fr_decl_looks_like_key(const char *s)
{
    size_t len = strlen(s);
    if (strncmp(s, "sk-", 3) == 0 || strncmp(s, "sk_", 3) == 0 || !fr_decl_is_var_name(s))
        return true;
    if (len <= 40)
        return false;
    bool lower = false, upper = false, underscore = false;
    for (const char *p = s; *p; p++) {
        lower |= *p >= 'a' && *p <= 'z';
        upper |= *p >= 'A' && *p <= 'Z';
        underscore |= *p == '_';
    }
    return (lower && upper) || !underscore;
}

/* Returns true when `s` (borrowed) starts with http:// or https:// and has
 * something after it. */
bool fr_decl_is_http_url(const char *s)
{
    return (strncmp(s, "http://", 7) == 0 && s[7]) || (strncmp(s, "https://", 8) == 0 && s[8]);
}

static void endpoint_body(lua_State *L, fr_load_ctx *c, size_t p, int t)
{
    fr_decl d;
    fr_decl_body_begin(&d, L, c, p, t);
    const char *where = d.where;
    fr_workflow *wf = c->wf;
    wf->endpoints = fr_xrealloc(wf->endpoints, (wf->nendpoints + 1) * sizeof *wf->endpoints);
    fr_endpoint_spec *e = &wf->endpoints[wf->nendpoints];
    memset(e, 0, sizeof *e);
    e->name = fr_xstrdup(c->pending[p].name);
    e->file = fr_xstrdup(c->file);
    e->line = c->pending[p].line;
    e->protocol = FR_PROTO_OPENAI;
    e->quality = 0.5;
    e->stream = true;
    e->tools = true;
    e->timeouts = (fr_timeouts){10, 0, 60, 0};
    wf->nendpoints++;

    int ty = fr_decl_push_field(&d, t, "tier"); /* [tier] */
    if (ty == LUA_TNIL)
        fr_decl_fail(&d, "%s: missing required field 'tier' (\"local\" or \"cloud\")", where);
    if (ty != LUA_TSTRING)
        fr_decl_fail_type(&d, "tier", "\"local\" or \"cloud\"");
    if (fr_tier_parse(lua_tostring(L, -1), &e->tier) != 0)
        fr_decl_fail_value(&d, "tier", "\"local\" or \"cloud\"");
    lua_pop(L, 1); /* [] */

    ty = fr_decl_push_field(&d, t, "protocol"); /* [protocol] */
    if (ty != LUA_TNIL) {
        const char *desc = "\"openai\", \"ollama\" or \"anthropic\"";
        if (ty != LUA_TSTRING)
            fr_decl_fail_type(&d, "protocol", desc);
        if (fr_protocol_parse(lua_tostring(L, -1), &e->protocol) != 0)
            fr_decl_fail_value(&d, "protocol", desc);
    }
    lua_pop(L, 1); /* [] */

    if (fr_decl_str(&d, t, "url", FR_FIELD_NONEMPTY, &e->url)) {
        if (!fr_decl_is_http_url(e->url)) {
            fr_decl_push_field(&d, t, "url"); /* [url] for the message */
            fr_decl_fail_value(&d, "url", "a URL starting with http:// or https://");
        }
        if (fr_decl_url_holds_key(e->url))
            fr_decl_fail(
                &d,
                "%s: field 'url' carries a credential (user:password@ or a key= parameter); "
                "keys are only read from environment variables: use api_key_env",
                where);
    } else if (e->protocol == FR_PROTO_OLLAMA) {
        e->url = ollama_default_url();
    } else if (e->protocol == FR_PROTO_ANTHROPIC) {
        const char *env = getenv("ANTHROPIC_BASE_URL");
        if (env && *env && !fr_decl_is_http_url(env))
            fr_decl_fail(&d, "%s: ANTHROPIC_BASE_URL must start with http:// or https://", where);
        e->url = fr_xstrdup(env && *env ? env : "https://api.anthropic.com");
    } else if (e->protocol == FR_PROTO_OPENAI) {
        const char *env = getenv("OPENAI_BASE_URL");
        if (!env || !*env)
            fr_decl_fail(
                &d,
                "%s: missing required field 'url' (protocol \"openai\" has no default; set url "
                "or the OPENAI_BASE_URL environment variable)",
                where);
        if (!fr_decl_is_http_url(env))
            fr_decl_fail(&d, "%s: OPENAI_BASE_URL must start with http:// or https://", where);
        e->url = fr_xstrdup(env);
    }
    fr_decl_str(&d, t, "model", FR_FIELD_REQUIRED | FR_FIELD_NONEMPTY, &e->model);

    ty = fr_decl_push_field(&d, t, "api_key_env"); /* [name] */
    if (ty != LUA_TNIL) {
        if (ty != LUA_TSTRING)
            fr_decl_fail_type(&d, "api_key_env", "the name of an environment variable");
        /* Never echo the value: it may be a secret. */
        if (fr_decl_looks_like_key(lua_tostring(L, -1)))
            fr_decl_fail(
                &d,
                "%s: field 'api_key_env' must be the NAME of an environment variable (such as "
                "OPENROUTER_API_KEY), not a key; keys are only read from environment variables",
                where);
        e->api_key_env = fr_xstrdup(lua_tostring(L, -1));
    }
    lua_pop(L, 1); /* [] */

    e->max_parallel = e->tier == FR_TIER_CLOUD ? 4 : 1;
    e->shared = fr_decl_int(&d, t, "max_parallel", 1, 1000000, "an integer >= 1", &e->max_parallel);
    bool shared = true;
    if (fr_decl_bool(&d, t, "shared", &shared) && !shared)
        e->shared = false;
    double ctxlen;
    if (fr_decl_num(&d, t, "context", 0, 1e12, FR_FIELD_INTEGER, "an integer number of tokens >= 0",
                    &ctxlen))
        e->context = (long)ctxlen;
    fr_decl_num(&d, t, "quality", 0, 1, 0, "a number from 0 to 1", &e->quality);
    fr_decl_str_array(&d, t, "tags", &e->tags, &e->ntags);
    fr_decl_bool(&d, t, "stream", &e->stream);
    fr_decl_bool(&d, t, "tools", &e->tools);

    ty = fr_decl_push_field(&d, t, "keep_alive"); /* [keep_alive] */
    if (ty == LUA_TSTRING && lua_rawlen(L, -1) > 0)
        e->keep_alive = fr_xstrdup(lua_tostring(L, -1));
    else if (ty == LUA_TNUMBER && lua_isinteger(L, -1))
        e->keep_alive = fr_xasprintf("%lld", (long long)lua_tointeger(L, -1));
    else if (ty != LUA_TNIL)
        fr_decl_fail_type(&d, "keep_alive", "a duration such as \"5m\" or an integer of seconds");
    lua_pop(L, 1); /* [] */

    /* Which field carries the output limit: OpenAI's reasoning models refuse
     * max_tokens and want max_completion_tokens. */
    ty = fr_decl_push_field(&d, t, "max_tokens_field"); /* [field] */
    if (ty != LUA_TNIL) {
        const char *desc = "\"max_tokens\" or \"max_completion_tokens\"";
        if (ty != LUA_TSTRING)
            fr_decl_fail_type(&d, "max_tokens_field", desc);
        const char *v = lua_tostring(L, -1);
        if (strcmp(v, "max_completion_tokens") == 0)
            e->max_completion_tokens = true;
        else if (strcmp(v, "max_tokens") != 0)
            fr_decl_fail_value(&d, "max_tokens_field", desc);
        if (e->protocol != FR_PROTO_OPENAI)
            fr_decl_fail(
                &d,
                "%s: field 'max_tokens_field' applies to protocol \"openai\" only (protocol "
                "\"%s\" has one limit field, %s): remove it",
                where, fr_protocol_name(e->protocol),
                e->protocol == FR_PROTO_OLLAMA ? "options.num_predict" : "max_tokens");
    }
    lua_pop(L, 1); /* [] */

    fr_decl sub;
    if (fr_decl_push_sub(&d, t, "price", &sub)) {
        int pt = lua_gettop(L); /* [price] */
        fr_decl_check_fields(&sub, pt, price_fields, N(price_fields));
        const char *desc = "a number of USD per million tokens >= 0";
        fr_decl_num(&sub, pt, "input", 0, HUGE_VAL, 0, desc, &e->price.input);
        fr_decl_num(&sub, pt, "output", 0, HUGE_VAL, 0, desc, &e->price.output);
        fr_decl_num(&sub, pt, "cached_input", 0, HUGE_VAL, 0, desc, &e->price.cached_input);
        e->price.set = true;
        lua_pop(L, 1); /* [] */
    }
    if (fr_decl_push_sub(&d, t, "timeouts", &sub)) {
        int tt = lua_gettop(L); /* [timeouts] */
        fr_decl_check_fields(&sub, tt, timeouts_fields, N(timeouts_fields));
        const char *desc = "a number of seconds > 0";
        fr_decl_num(&sub, tt, "connect", 0, HUGE_VAL, FR_FIELD_LO_OPEN, desc,
                    &e->timeouts.connect_s);
        fr_decl_num(&sub, tt, "first_byte", 0, HUGE_VAL, FR_FIELD_LO_OPEN, desc,
                    &e->timeouts.first_byte_s);
        fr_decl_num(&sub, tt, "idle", 0, HUGE_VAL, FR_FIELD_LO_OPEN, desc, &e->timeouts.idle_s);
        fr_decl_num(&sub, tt, "attempt", 0, HUGE_VAL, FR_FIELD_LO_OPEN, desc,
                    &e->timeouts.attempt_s);
        lua_pop(L, 1); /* [] */
    }
}

/* ---- workflow ---- */

static void read_vars(fr_decl *d, int t)
{
    lua_State *L = d->L;
    fr_workflow *wf = d->c->wf;
    lua_pushnil(L); /* [nil] */
    while (lua_next(L, t)) {
        /* [k, v] */
        if (lua_type(L, -2) != LUA_TSTRING)
            fr_decl_fail(d,
                         "workflow: field 'vars' must map names to values; found a key of type %s",
                         luaL_typename(L, -2));
        const char *k = lua_tostring(L, -2);
        if (!fr_load_valid_name(k))
            fr_decl_fail(d,
                         "workflow: invalid variable name '%.80s' in vars: use letters, digits, "
                         "'_', '.' and '-'",
                         k);
        json_t *v = NULL;
        if (lua_type(L, -1) == LUA_TSTRING) {
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            v = json_stringn(s, len);
            if (!v)
                fr_decl_fail(d, "workflow: field 'vars.%s' is not valid UTF-8", k);
        } else if (lua_type(L, -1) == LUA_TNUMBER) {
            char buf[64];
            if (lua_isinteger(L, -1))
                snprintf(buf, sizeof buf, "%lld", (long long)lua_tointeger(L, -1));
            else
                snprintf(buf, sizeof buf, "%.14g", (double)lua_tonumber(L, -1));
            v = json_string(buf);
        } else {
            fr_decl_fail(d, "workflow: field 'vars.%s' must be a string or a number, got %s", k,
                         luaL_typename(L, -1));
        }
        json_object_set_new(wf->vars, k, v);
        lua_pop(L, 1); /* [k] */
    }
}

static int l_workflow(lua_State *L)
{
    fr_load_ctx *c = ctx_get(L, "workflow");
    fr_decl d;
    fr_decl_init(&d, L, c, caller_line(L), "workflow");
    if (lua_type(L, 1) != LUA_TTABLE)
        fr_decl_fail(&d, "workflow takes a table, as in workflow { name = \"...\" }, got %s",
                     luaL_typename(L, 1));
    if (c->workflow_line)
        fr_decl_fail(&d, "workflow {} declared twice (first at %s:%d)", c->file, c->workflow_line);
    c->workflow_line = d.line;
    lua_settop(L, 1); /* [tbl] */
    fr_decl_check_fields(&d, 1, workflow_fields, N(workflow_fields));
    fr_workflow *wf = c->wf;
    fr_decl_str(&d, 1, "name", FR_FIELD_NONEMPTY, &wf->name);
    fr_decl_str(&d, 1, "policy", FR_FIELD_NONEMPTY, &wf->policy);
    fr_decl sub;
    if (fr_decl_push_sub(&d, 1, "budget", &sub)) {
        fr_decl_check_fields(&sub, 2, budget_fields, N(budget_fields)); /* [tbl, budget] */
        wf->budget.has_usd =
            fr_decl_num(&sub, 2, "usd", 0, HUGE_VAL, 0, "a number of USD >= 0", &wf->budget.usd);
        fr_decl_num(&sub, 2, "alert", 0, 1, 0, "a fraction from 0 to 1", &wf->budget.alert);
        wf->budget.has_monthly = fr_decl_num(&sub, 2, "monthly_usd", 0, HUGE_VAL, 0,
                                             "a number of USD >= 0", &wf->budget.monthly_usd);
        wf->budget.has_daily = fr_decl_num(&sub, 2, "daily_usd", 0, HUGE_VAL, 0,
                                           "a number of USD >= 0", &wf->budget.daily_usd);
        fr_decl_bool(&sub, 2, "allow_unpriced", &wf->budget.allow_unpriced);
        lua_pop(L, 1); /* [tbl] */
    }
    if (fr_decl_push_sub(&d, 1, "defaults", &sub)) {
        fr_decl_check_fields(&sub, 2, defaults_fields, N(defaults_fields)); /* [tbl, defaults] */
        fr_decl_num(&sub, 2, "timeout", 0, HUGE_VAL, FR_FIELD_LO_OPEN, "a number of seconds > 0",
                    &c->defaults.timeout_s);
        fr_decl_int(&sub, 2, "retries", 0, 100, "an integer from 0 to 100", &c->defaults.retries);
        fr_decl_int(&sub, 2, "max_tokens", 1, INT_MAX, "an integer >= 1", &c->defaults.max_tokens);
        fr_decl_num(&sub, 2, "temperature", 0, 2, 0, "a number from 0 to 2",
                    &c->defaults.temperature);
        fr_decl_int(&sub, 2, "max_turns", 1, 100, "an integer from 1 to 100",
                    &c->defaults.max_turns);
        fr_decl_int(&sub, 2, "max_tool_calls", 1, 1000, "an integer from 1 to 1000",
                    &c->defaults.max_tool_calls);
        lua_pop(L, 1); /* [tbl] */
    }
    if (fr_decl_push_sub(&d, 1, "vars", &sub)) {
        read_vars(&sub, 2); /* [tbl, vars] */
        lua_pop(L, 1);      /* [tbl] */
    }
    return 0;
}

/* ---- baseline ---- */

static int l_baseline(lua_State *L)
{
    fr_load_ctx *c = ctx_get(L, "baseline");
    int line = caller_line(L);
    if (lua_type(L, 1) != LUA_TSTRING || !*lua_tostring(L, 1))
        fr_decl_failc(L, c, line,
                      "baseline needs an endpoint name, as in baseline \"sonnet\", got %s",
                      luaL_typename(L, 1));
    if (c->baseline_line)
        fr_decl_failc(L, c, line, "baseline declared twice (first at %s:%d)", c->file,
                      c->baseline_line);
    c->baseline_line = line;
    free(c->wf->baseline);
    c->wf->baseline = fr_xstrdup(lua_tostring(L, 1));
    return 0;
}

/* ---- the curried declarations: kind "name" { ... } ---- */

static void body(lua_State *L, fr_load_ctx *c, int kind, size_t p, int t)
{
    if (kind == FR_DECL_TASK)
        task_body(L, c, p, t);
    else if (kind == FR_DECL_AGENT)
        agent_body(L, c, p, t);
    else if (kind == FR_DECL_MCP)
        fr_decl_mcp_body(L, c, p, t);
    else if (kind == FR_DECL_TOOL)
        fr_decl_tool_body(L, c, p, t);
    else
        endpoint_body(L, c, p, t);
}

/* The function that `kind "name"` returns; upvalues: pending index, kind,
 * the name (returned as it is, not made again from C). */
static int l_body(lua_State *L)
{
    size_t p = (size_t)lua_tointeger(L, lua_upvalueindex(1));
    int kind = (int)lua_tointeger(L, lua_upvalueindex(2));
    fr_load_ctx *c = ctx_get(L, kind_names[kind]);
    if (c->pending[p].done)
        fr_decl_failc(L, c, caller_line(L), "duplicate %s '%s' (first declared at %s:%d)",
                      kind_names[kind], c->pending[p].name, c->file, c->pending[p].line);
    lua_settop(L, 1); /* [tbl] */
    body(L, c, kind, p, 1);
    lua_pushvalue(L, lua_upvalueindex(3)); /* [tbl, name] */
    return 1;
}

/* kind("name") returns the body function; kind("name", tbl) declares at
 * once. Both return the name, so `local d = task "d" {...}` works. */
static int declare_kind(lua_State *L, int kind)
{
    fr_load_ctx *c = ctx_get(L, kind_names[kind]);
    size_t p = declare(L, c, kind, caller_line(L));
    if (lua_gettop(L) >= 2) {
        lua_settop(L, 2); /* [name, tbl] */
        body(L, c, kind, p, 2);
        lua_settop(L, 1); /* [name] */
        return 1;
    }
    lua_settop(L, 1);                   /* [name] */
    lua_pushinteger(L, (lua_Integer)p); /* [name, p] */
    lua_pushinteger(L, kind);           /* [name, p, kind] */
    lua_pushvalue(L, 1);                /* [name, p, kind, name] */
    lua_pushcclosure(L, l_body, 3);     /* [name, body] */
    return 1;
}

static int l_task(lua_State *L)
{
    return declare_kind(L, FR_DECL_TASK);
}

static int l_agent(lua_State *L)
{
    return declare_kind(L, FR_DECL_AGENT);
}

static int l_endpoint(lua_State *L)
{
    return declare_kind(L, FR_DECL_ENDPOINT);
}

static int l_mcp(lua_State *L)
{
    return declare_kind(L, FR_DECL_MCP);
}

static int l_tool(lua_State *L)
{
    return declare_kind(L, FR_DECL_TOOL);
}

/* Installs the context (arg 1, light userdata) and the declaration
 * functions into the sandbox environment. */
static int install(lua_State *L)
{
    fr_load_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 1);                            /* [ctx] */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key); /* [] */
    fr_sandbox_push_env(L);                      /* [env] */
    static const luaL_Reg all[] = {
        {"workflow", l_workflow}, {"agent", l_agent}, {"task", l_task}, {"endpoint", l_endpoint},
        {"baseline", l_baseline}, {"mcp", l_mcp},     {"tool", l_tool}, {NULL, NULL}};
    for (const luaL_Reg *r = all; r->name; r++) {
        if (c->endpoints_only && strcmp(r->name, "endpoint") != 0 &&
            strcmp(r->name, "baseline") != 0)
            continue;
        lua_pushcfunction(L, r->func); /* [env, fn] */
        lua_setfield(L, -2, r->name);  /* [env] */
    }
    return 0;
}

/*
 * Runs c->file in `L` with the declarations installed. The context is
 * detached afterwards, so a declaration function kept by the script fails
 * cleanly if called later. Returns FR_OK or an error with `err` filled:
 * the stored declaration error first, else the Lua error mapped to c->code
 * (FR_ELIMIT, FR_ESYNTAX and FR_ENOENT are kept).
 */
int fr_load_run(lua_State *L, fr_load_ctx *c, fr_error *err)
{
    int rc;
    lua_pushcfunction(L, install);        /* [install] */
    lua_pushlightuserdata(L, c);          /* [install, ctx] */
    rc = fr_lua_call(L, 1, 0, NULL, err); /* [] */
    if (rc != FR_OK)
        goto cleanup;
    rc = fr_sandbox_load_file_cached(L, c->file, c->keep_compiled, err); /* [chunk] */
    if (rc != FR_OK)
        goto cleanup;
    rc = fr_lua_call(L, 0, 0, NULL, err); /* [] */
    if (c->err.code != 0) {
        rc = c->err.code;
        if (err)
            *err = c->err;
        goto cleanup;
    }
    if (rc == FR_ELUA) {
        rc = c->code;
        if (err)
            err->code = rc;
    }
    if (rc != FR_OK) {
        if (err && !err->source[0])
            snprintf(err->source, sizeof err->source, "%s", c->file);
        goto cleanup;
    }
    for (size_t i = 0; i < c->npending; i++) {
        const fr_pending *p = &c->pending[i];
        if (!p->done) {
            rc = fr_error_set(err, c->code, c->file, p->line,
                              "%s '%s' has no body; write %s \"%s\" { ... }", kind_names[p->kind],
                              p->name, kind_names[p->kind], p->name);
            goto cleanup;
        }
    }
cleanup:
    lua_pushnil(L);                              /* [nil] */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key); /* [] */
    return rc;
}
