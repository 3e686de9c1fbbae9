#include "engine/toolset.h"

#include "dsl/schema.h"
#include "dsl/suggest.h"
#include "engine/cmdtool.h"
#include "engine/mcp/mcp.h"
#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest wire name every API accepts, and the suffix that keeps a
 * cut or colliding name unique: "_" + 6 hex digits. */
enum { WIRE_MAX = 64, WIRE_SUFFIX = 7 };

/* One MCP server of the workflow: started when some task names it. */
typedef struct ts_server {
    fr_toolset *ts;
    const fr_mcp_spec *spec; /* borrowed from the workflow */
    fr_mcp *mcp;             /* owned; NULL until started */
    bool ready;              /* listed its tools */
} ts_server;

/* One tool offered to one task. */
typedef struct ts_tool {
    char *display;           /* owned: "fs.read_file", "word_count" */
    char *wire;              /* owned: what the model sees */
    fr_tool_kind kind;       /* FR_TOOL_MCP, FR_TOOL_LUA or FR_TOOL_COMMAND */
    size_t index;            /* wf->mcps for MCP, else wf->tools */
    const char *remote;      /* MCP: the tool's name on its server (borrowed from its listing) */
    const char *description; /* MCP: borrowed from the listing, may be NULL */
    const json_t *schema;    /* borrowed: the arguments' schema, or NULL */
} ts_tool;

/* The tools of one task and their definitions for fr_call.tools. */
typedef struct ts_task {
    ts_tool *tools;
    size_t n;
    json_t *defs; /* owned, NULL without tools */
} ts_task;

struct fr_toolcall {
    fr_toolset *ts;
    fr_toolcall *prev, *next; /* the calls in flight */
    const ts_tool *tool;      /* NULL for a refused call */
    char *refused;            /* owned: the name a refused call asked for */
    uv_timer_t timer;         /* delivers a result that is known at once */
    fr_tool_result res;       /* the result the timer delivers */
    fr_mcp_call *mcp;         /* in flight on a server */
    fr_cmdtool *cmd;          /* in flight as a command */
    uint64_t start_ns;
    size_t arg_bytes;
    fr_toolcall_done_fn done;
    void *ud;
};

struct fr_toolset {
    uv_loop_t *loop;
    fr_http *http;
    fr_workflow *wf;
    ts_server *servers; /* one per wf->mcps */
    ts_task *tasks;     /* one per task the workflow had when the set was made ... */
    size_t ntasks;      /* ... this many; a fan-out's instance uses its template's */
    size_t starting;    /* servers not yet ready */
    bool started, reported;
    int rc;
    fr_error err;
    fr_toolset_ready_fn ready;
    void *ud;
    uv_timer_t ready_timer; /* ready never comes from inside start */
    fr_toolcall *calls;
    size_t handles; /* open libuv handles of the set and its calls */
    bool freeing;
};

/* ---- names ---- */

/* The six hex digits of `display`'s FNV-1a that make a wire name unique. */
static void name_suffix(const char *display, char out[WIRE_SUFFIX + 1])
{
    uint64_t h = fr_fnv1a64(display, strlen(display), FR_FNV1A64_BASIS);
    snprintf(out, WIRE_SUFFIX + 1, "_%06" PRIx64, h & 0xffffff);
}

/* Returns owned: `display` with every character outside [A-Za-z0-9_-]
 * replaced by '_', not yet cut. */
static char *sanitize(const char *display)
{
    char *s = fr_xstrdup(display);
    for (char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            *p = '_';
    }
    return s;
}

/* Returns owned: the sanitized `base` cut to leave room for the suffix of
 * `display`, then the suffix. */
static char *with_suffix(const char *base, const char *display)
{
    char suf[WIRE_SUFFIX + 1];
    name_suffix(display, suf);
    size_t n = strlen(base);
    if (n > WIRE_MAX - WIRE_SUFFIX)
        n = WIRE_MAX - WIRE_SUFFIX;
    return fr_xasprintf("%.*s%s", (int)n, base, suf);
}

/* Gives every tool of `tt` its wire name: the sanitized display name; a
 * name longer than 64, or one another tool of the set shares, gets the
 * suffix (every member of a collision does, so no tool's name depends on
 * the order of the patterns). */
static void assign_wire_names(ts_task *tt)
{
    char **base = fr_xcalloc(tt->n + 1, sizeof *base);
    for (size_t i = 0; i < tt->n; i++)
        base[i] = sanitize(tt->tools[i].display);
    for (size_t i = 0; i < tt->n; i++) {
        bool clash = strlen(base[i]) > WIRE_MAX;
        for (size_t j = 0; j < tt->n && !clash; j++)
            clash = j != i && strcmp(base[i], base[j]) == 0;
        tt->tools[i].wire =
            clash ? with_suffix(base[i], tt->tools[i].display) : fr_xstrdup(base[i]);
    }
    /* A plain name can still equal another's hashed one (a Lua tool named
     * "fs_read_file_3f2a9c"): the later one is hashed again until unique. */
    for (size_t i = 0; i < tt->n; i++)
        for (size_t j = 0; j < i; j++)
            if (strcmp(tt->tools[i].wire, tt->tools[j].wire) == 0) {
                char *again = with_suffix(tt->tools[i].wire, tt->tools[i].wire);
                free(tt->tools[i].wire);
                tt->tools[i].wire = again;
                j = (size_t)-1; /* compare with every earlier name again */
            }
    for (size_t i = 0; i < tt->n; i++)
        free(base[i]);
    free(base);
}

/* ---- resolution ---- */

/* The Lua and command tools' names, for a did-you-mean (owned array of
 * borrowed names). */
static const char **local_names(const fr_workflow *wf)
{
    const char **names = fr_xcalloc(wf->ntools + 1, sizeof *names);
    for (size_t i = 0; i < wf->ntools; i++)
        names[i] = wf->tools[i].name;
    return names;
}

/* Fails with a pattern of task `t` that names no tool. */
static int no_such_tool(const fr_workflow *wf, size_t t, const char *pattern, const char *what,
                        const char *near, fr_error *err)
{
    const fr_task_spec *ts = &wf->tasks[t];
    if (near)
        return fr_error_set(err, FR_EWORKFLOW, ts->file, ts->line,
                            "task '%s': tools: '%s': %s; did you mean '%s'?", ts->name, pattern,
                            what, near);
    return fr_error_set(err, FR_EWORKFLOW, ts->file, ts->line, "task '%s': tools: '%s': %s",
                        ts->name, pattern, what);
}

/* The server a pattern "srv.x" names, or -1 with `err` filled. */
static long pattern_server(const fr_workflow *wf, size_t t, const char *pattern, fr_error *err)
{
    const char *dot = strchr(pattern, '.');
    char *srv = fr_xstrndup(pattern, (size_t)(dot - pattern));
    long s = fr_workflow_find_mcp(wf, srv);
    if (s < 0) {
        const char **names = fr_xcalloc(wf->nmcps + 1, sizeof *names);
        for (size_t i = 0; i < wf->nmcps; i++)
            names[i] = wf->mcps[i].name;
        const char *near = fr_suggest(srv, names, wf->nmcps);
        char *what = fr_xasprintf("the workflow has no MCP server '%s'", srv);
        char *hint = near ? fr_xasprintf("%s%s", near, dot) : NULL;
        no_such_tool(wf, t, pattern, what, hint, err);
        free(hint);
        free(what);
        free(names);
    }
    free(srv);
    return s;
}

/* Checks what can be checked before any server has listed its tools: the
 * bare names and the servers the patterns name. Marks the servers used. */
static int precheck(fr_toolset *ts, bool all, bool *used, fr_error *err)
{
    const fr_workflow *wf = ts->wf;
    int rc = FR_OK;
    const char **names = local_names(wf);
    for (size_t s = 0; s < wf->nmcps; s++)
        used[s] = all;
    for (size_t t = 0; t < ts->ntasks && rc == FR_OK; t++) {
        const fr_task_spec *task = &wf->tasks[t];
        for (size_t p = 0; p < task->ntools && rc == FR_OK; p++) {
            const char *pat = task->tools[p];
            if (strchr(pat, '.')) {
                long s = pattern_server(wf, t, pat, err);
                if (s < 0)
                    rc = FR_EWORKFLOW;
                else
                    used[s] = true;
            } else if (fr_workflow_find_tool(wf, pat) < 0) {
                rc = no_such_tool(wf, t, pat, "the workflow declares no such tool",
                                  fr_suggest(pat, names, wf->ntools), err);
            }
        }
    }
    free(names);
    return rc;
}

/* Appends a tool to `tt` unless the set has it already ("fs.*" and
 * "fs.read_file" together name it once). Takes `display`. */
static void add_tool(ts_task *tt, char *display, fr_tool_kind kind, size_t index,
                     const json_t *listed, const json_t *schema)
{
    for (size_t i = 0; i < tt->n; i++)
        if (strcmp(tt->tools[i].display, display) == 0) {
            free(display);
            return;
        }
    tt->tools = fr_xrealloc(tt->tools, (tt->n + 1) * sizeof *tt->tools);
    tt->tools[tt->n++] = (ts_tool){
        .display = display,
        .kind = kind,
        .index = index,
        .remote = json_string_value(json_object_get(listed, "name")),
        .description = json_string_value(json_object_get(listed, "description")),
        .schema = schema,
    };
}

/* Adds server `s`'s tools that `want` names (every one when `want` is NULL);
 * fails when `want` names none of them. */
static int add_server_tools(fr_toolset *ts, size_t t, size_t s, const char *pattern,
                            const char *want, fr_error *err)
{
    const json_t *list = fr_mcp_tools(ts->servers[s].mcp);
    const char *srv = ts->wf->mcps[s].name;
    size_t i, n = json_array_size(list);
    const json_t *tool;
    json_array_foreach(list, i, tool)
    {
        const char *name = json_string_value(json_object_get(tool, "name"));
        if (!name || (want && strcmp(name, want) != 0))
            continue;
        const json_t *schema = json_object_get(tool, "inputSchema");
        add_tool(&ts->tasks[t], fr_xasprintf("%s.%s", srv, name), FR_TOOL_MCP, s, tool,
                 json_is_object(schema) ? schema : NULL);
        if (want)
            return FR_OK;
    }
    if (!want)
        return FR_OK;
    const char **names = fr_xcalloc(n + 1, sizeof *names);
    json_array_foreach(list, i, tool) names[i] = json_string_value(json_object_get(tool, "name"));
    const char *near = fr_suggest(want, names, n);
    char *hint = near ? fr_xasprintf("%s.%s", srv, near) : NULL;
    char *what = fr_xasprintf("MCP server '%s' lists no tool '%s'", srv, want);
    int rc = no_such_tool(ts->wf, t, pattern, what, hint, err);
    free(what);
    free(hint);
    free(names);
    return rc;
}

/* The definition of one tool for fr_call.tools. */
static json_t *tool_def(const fr_toolset *ts, const ts_tool *tool)
{
    const char *desc =
        tool->kind == FR_TOOL_MCP ? tool->description : ts->wf->tools[tool->index].description;
    json_t *p = tool->schema ? json_deep_copy(tool->schema) : json_pack("{s:s}", "type", "object");
    return json_pack("{s:s, s:s, s:o}", "name", tool->wire, "description", desc ? desc : "",
                     "parameters", p);
}

/* Resolves every task's patterns once the servers have listed their tools. */
static int resolve(fr_toolset *ts, fr_error *err)
{
    const fr_workflow *wf = ts->wf;
    for (size_t t = 0; t < ts->ntasks; t++) {
        const fr_task_spec *task = &wf->tasks[t];
        ts_task *tt = &ts->tasks[t];
        for (size_t p = 0; p < task->ntools; p++) {
            const char *pat = task->tools[p];
            const char *dot = strchr(pat, '.');
            if (!dot) {
                long i = fr_workflow_find_tool(wf, pat);
                add_tool(tt, fr_xstrdup(pat), wf->tools[i].kind, (size_t)i, NULL,
                         wf->tools[i].parameters);
                continue;
            }
            long s = pattern_server(wf, t, pat, err);
            if (s < 0)
                return FR_EWORKFLOW;
            const char *want = strcmp(dot + 1, "*") == 0 ? NULL : dot + 1;
            int rc = add_server_tools(ts, t, (size_t)s, pat, want, err);
            if (rc != FR_OK)
                return rc;
        }
        if (tt->n == 0)
            continue;
        assign_wire_names(tt);
        tt->defs = json_array();
        for (size_t i = 0; i < tt->n; i++)
            json_array_append_new(tt->defs, tool_def(ts, &tt->tools[i]));
    }
    return FR_OK;
}

/* ---- start ---- */

/* The directory a server or command is started from: its cwd is already
 * resolved against the workflow's directory (dsl/workflow.h), and engine/mcp
 * and engine/cmdtool put a relative cwd under the directory they are given,
 * so a spec with a cwd gets flowrun's own. */
static const char *start_dir(const fr_workflow *wf, const char *cwd)
{
    return cwd ? "." : wf->dir;
}

static void ready_fire(uv_timer_t *h)
{
    fr_toolset *ts = h->data;
    if (ts->reported)
        return;
    ts->reported = true;
    ts->ready(ts->ud, ts->rc, ts->rc == FR_OK ? NULL : &ts->err);
}

/* Ends start with `rc` (the first error wins): ready comes from the timer. */
static void finish_start(fr_toolset *ts, int rc)
{
    if (ts->rc == FR_OK)
        ts->rc = rc;
    uv_timer_start(&ts->ready_timer, ready_fire, 0, 0);
}

static void server_ready(void *ud, int rc, const fr_error *err)
{
    ts_server *sv = ud;
    fr_toolset *ts = sv->ts;
    ts->starting--;
    if (ts->reported || ts->rc != FR_OK)
        return;
    if (rc != FR_OK) {
        /* The first server that fails ends start; the others are stopped
         * with the set. */
        if (err)
            ts->err = *err;
        else
            fr_error_set(&ts->err, rc, sv->spec->file, sv->spec->line,
                         "MCP server '%s' did not start: %s", sv->spec->name, fr_strerror(rc));
        ts->err.code = rc;
        finish_start(ts, rc);
        return;
    }
    sv->ready = true;
    if (ts->starting == 0)
        finish_start(ts, resolve(ts, &ts->err));
}

bool fr_toolset_needed(const fr_workflow *wf)
{
    for (size_t t = 0; t < wf->ntasks; t++)
        if (wf->tasks[t].ntools > 0)
            return true;
    return false;
}

fr_toolset *fr_toolset_new(uv_loop_t *loop, fr_http *http, fr_workflow *wf)
{
    fr_toolset *ts = fr_xcalloc(1, sizeof *ts);
    ts->loop = loop;
    ts->http = http;
    ts->wf = wf;
    ts->servers = fr_xcalloc(wf->nmcps + 1, sizeof *ts->servers);
    for (size_t s = 0; s < wf->nmcps; s++)
        ts->servers[s] = (ts_server){.ts = ts, .spec = &wf->mcps[s]};
    ts->tasks = fr_xcalloc(wf->ntasks + 1, sizeof *ts->tasks);
    ts->ntasks = wf->ntasks;
    uv_timer_init(loop, &ts->ready_timer);
    ts->ready_timer.data = ts;
    ts->handles = 1;
    return ts;
}

void fr_toolset_start(fr_toolset *ts, bool all, fr_toolset_ready_fn ready, void *ud)
{
    ts->ready = ready;
    ts->ud = ud;
    if (ts->started) {
        finish_start(ts, fr_error_set(&ts->err, FR_EINVAL, "toolset", 0, "started twice"));
        return;
    }
    ts->started = true;
    bool *used = fr_xcalloc(ts->wf->nmcps + 1, sizeof *used);
    int rc = precheck(ts, all, used, &ts->err);
    if (rc == FR_OK) {
        for (size_t s = 0; s < ts->wf->nmcps; s++)
            if (used[s]) {
                ts_server *sv = &ts->servers[s];
                sv->mcp =
                    fr_mcp_new(ts->loop, ts->http, sv->spec, start_dir(ts->wf, sv->spec->cwd));
                ts->starting++;
            }
        /* Every server starts at once; each one's ready is counted down. */
        for (size_t s = 0; s < ts->wf->nmcps; s++)
            if (ts->servers[s].mcp)
                fr_mcp_start(ts->servers[s].mcp, server_ready, &ts->servers[s]);
        if (ts->starting == 0)
            rc = resolve(ts, &ts->err);
    }
    free(used);
    if (rc != FR_OK || ts->starting == 0)
        finish_start(ts, rc);
}

/* The entry of `task`: its own, or for a fan-out's instance added after
 * the set was made its template's; NULL for no task. */
static ts_task *entry(const fr_toolset *ts, size_t task)
{
    const fr_workflow *wf = ts->wf;
    if (task >= ts->ntasks && task < wf->ntasks && wf->tasks[task].is_instance)
        task = wf->tasks[task].instance_of;
    return task < ts->ntasks ? &ts->tasks[task] : NULL;
}

const json_t *fr_toolset_defs(const fr_toolset *ts, size_t task)
{
    const ts_task *tt = entry(ts, task);
    return tt ? tt->defs : NULL;
}

size_t fr_toolset_count(const fr_toolset *ts, size_t task)
{
    const ts_task *tt = entry(ts, task);
    return tt ? tt->n : 0;
}

/* ---- calls ---- */

static void call_unlink(fr_toolcall *c)
{
    fr_toolset *ts = c->ts;
    if (c->prev)
        c->prev->next = c->next;
    else if (ts->calls == c)
        ts->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void toolset_release(fr_toolset *ts);

static void call_closed(uv_handle_t *h)
{
    fr_toolcall *c = h->data;
    fr_toolset *ts = c->ts;
    fr_tool_result_close(&c->res);
    free(c->refused);
    free(c);
    if (--ts->handles == 0 && ts->freeing)
        toolset_release(ts);
}

/* Ends call `c` with result `r` (borrowed): unlinked first, so a done that
 * frees the set does not cancel it, then done, then its timer closed. */
static void call_finish(fr_toolcall *c, fr_tool_result *r)
{
    call_unlink(c);
    c->mcp = NULL;
    c->cmd = NULL;
    const ts_tool *tool = c->tool;
    const fr_workflow *wf = c->ts->wf;
    fr_toolcall_info info = {
        .name = tool ? tool->display : c->refused,
        .source = !tool                       ? "none"
                  : tool->kind == FR_TOOL_MCP ? "mcp"
                  : tool->kind == FR_TOOL_LUA ? "lua"
                                              : "command",
        .server = tool && tool->kind == FR_TOOL_MCP ? wf->mcps[tool->index].name : NULL,
        .ms = (double)(uv_hrtime() - c->start_ns) / 1e6,
        .arg_bytes = c->arg_bytes,
        .result_bytes = r->text ? strlen(r->text) : 0,
    };
    c->done(c->ud, r, &info);
    uv_close((uv_handle_t *)&c->timer, call_closed);
}

static void call_fire(uv_timer_t *h)
{
    fr_toolcall *c = h->data;
    call_finish(c, &c->res);
}

static void call_result(void *ud, fr_tool_result *r)
{
    call_finish(ud, r);
}

/* Delivers c->res from the loop, after the call that started it returns. */
static void call_later(fr_toolcall *c)
{
    uv_timer_start(&c->timer, call_fire, 0, 0);
}

static const ts_tool *find_offered(const ts_task *tt, const char *wire)
{
    for (size_t i = 0; wire && i < tt->n; i++)
        if (strcmp(tt->tools[i].wire, wire) == 0)
            return &tt->tools[i];
    return NULL;
}

/* Starts `c` for its tool with `args` (an object that passed its schema):
 * on the server, as a command, or the Lua function now, its result kept
 * for the timer. */
static void call_run(fr_toolcall *c, const json_t *args)
{
    fr_toolset *ts = c->ts;
    const ts_tool *tool = c->tool;
    if (tool->kind == FR_TOOL_MCP) {
        ts_server *sv = &ts->servers[tool->index];
        int rc = fr_mcp_call_tool(sv->mcp, tool->remote, args, sv->spec->call_timeout_s,
                                  call_result, c, &c->mcp);
        if (rc != FR_OK) {
            fr_tool_result_fail(&c->res, "MCP server '%s' could not take the call: %s",
                                sv->spec->name, fr_strerror(rc));
            call_later(c);
        }
        return;
    }
    fr_error err = {0};
    char msg[1600];
    if (tool->kind == FR_TOOL_COMMAND) {
        const fr_tool_spec *spec = &ts->wf->tools[tool->index];
        int rc = fr_cmdtool_run(ts->loop, spec, start_dir(ts->wf, spec->cwd), args, call_result, c,
                                &c->cmd, &err);
        if (rc != FR_OK) {
            fr_tool_result_fail(
                &c->res, "%s", err.code ? fr_error_format(&err, msg, sizeof msg) : fr_strerror(rc));
            call_later(c);
        }
        return;
    }
    /* A Lua tool runs synchronously, bounded by the sandbox's limits; its
     * result still arrives from the loop. */
    char *out = NULL;
    int rc = fr_workflow_call_tool(ts->wf, tool->index, args, &out, &err);
    if (rc == FR_OK)
        fr_tool_result_ok(&c->res, out);
    else
        fr_tool_result_fail(&c->res, "%s",
                            err.code ? fr_error_format(&err, msg, sizeof msg) : fr_strerror(rc));
    free(out);
    call_later(c);
}

int fr_toolset_call(fr_toolset *ts, size_t task, const char *wire_name, const json_t *args,
                    fr_toolcall_done_fn done, void *ud, fr_toolcall **out)
{
    ts_task *offered = entry(ts, task);
    if (!offered || !done || ts->freeing)
        return FR_EINVAL;
    fr_toolcall *c = fr_xcalloc(1, sizeof *c);
    c->ts = ts;
    c->done = done;
    c->ud = ud;
    c->start_ns = uv_hrtime();
    uv_timer_init(ts->loop, &c->timer);
    c->timer.data = c;
    ts->handles++;
    c->next = ts->calls;
    if (ts->calls)
        ts->calls->prev = c;
    ts->calls = c;
    if (args) {
        char *s = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        c->arg_bytes = s ? strlen(s) : 0;
        free(s);
    }
    if (out)
        *out = c;

    c->tool = find_offered(offered, wire_name);
    if (!c->tool) {
        c->refused = fr_xstrdup(wire_name ? wire_name : "");
        fr_tool_result_fail(&c->res, "tool '%s' was not offered to this task", c->refused);
        call_later(c);
        return FR_OK;
    }
    if (!json_is_object(args)) {
        fr_tool_result_fail(&c->res, "invalid arguments for '%s': expected a JSON object",
                            c->tool->display);
        call_later(c);
        return FR_OK;
    }
    char why[512];
    if (c->tool->schema && fr_schema_validate(c->tool->schema, args, why, sizeof why) != FR_OK) {
        fr_tool_result_fail(&c->res, "invalid arguments for '%s': %s", c->tool->display, why);
        call_later(c);
        return FR_OK;
    }
    call_run(c, args);
    return FR_OK;
}

void fr_toolset_cancel(fr_toolset *ts, fr_toolcall *c)
{
    if (!c)
        return;
    if (c->mcp)
        fr_mcp_cancel(ts->servers[c->tool->index].mcp, c->mcp);
    if (c->cmd)
        fr_cmdtool_cancel(c->cmd);
    c->mcp = NULL;
    c->cmd = NULL;
    call_unlink(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, call_closed);
}

/* ---- describe, free ---- */

json_t *fr_toolset_describe(const fr_toolset *ts)
{
    const fr_workflow *wf = ts->wf;
    json_t *all = json_array();
    for (size_t i = 0; i < wf->ntools; i++) {
        const fr_tool_spec *t = &wf->tools[i];
        json_t *p =
            t->parameters ? json_deep_copy(t->parameters) : json_pack("{s:s}", "type", "object");
        json_array_append_new(all, json_pack("{s:s, s:s, s:n, s:s, s:o}", "name", t->name, "source",
                                             t->kind == FR_TOOL_LUA ? "lua" : "command", "server",
                                             "description", t->description ? t->description : "",
                                             "parameters", p));
    }
    for (size_t s = 0; s < wf->nmcps; s++) {
        const ts_server *sv = &ts->servers[s];
        if (!sv->ready)
            continue;
        size_t i;
        const json_t *tool;
        json_array_foreach(fr_mcp_tools(sv->mcp), i, tool)
        {
            const char *name = json_string_value(json_object_get(tool, "name"));
            if (!name)
                continue;
            const char *desc = json_string_value(json_object_get(tool, "description"));
            const json_t *schema = json_object_get(tool, "inputSchema");
            json_t *p = json_is_object(schema) ? json_deep_copy(schema)
                                               : json_pack("{s:s}", "type", "object");
            char *full = fr_xasprintf("%s.%s", sv->spec->name, name);
            json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "name", full,
                                                 "source", "mcp", "server", sv->spec->name,
                                                 "description", desc ? desc : "", "parameters", p,
                                                 "revision", fr_mcp_revision(sv->mcp)));
            free(full);
        }
    }
    return all;
}

/* Frees the set once its last handle has closed. */
static void toolset_release(fr_toolset *ts)
{
    for (size_t t = 0; t < ts->ntasks; t++) {
        ts_task *tt = &ts->tasks[t];
        for (size_t i = 0; i < tt->n; i++) {
            free(tt->tools[i].display);
            free(tt->tools[i].wire);
        }
        free(tt->tools);
        json_decref(tt->defs);
    }
    free(ts->tasks);
    free(ts->servers);
    free(ts);
}

static void ready_closed(uv_handle_t *h)
{
    fr_toolset *ts = h->data;
    if (--ts->handles == 0)
        toolset_release(ts);
}

void fr_toolset_free(fr_toolset *ts)
{
    if (!ts || ts->freeing)
        return;
    ts->freeing = true;
    while (ts->calls)
        fr_toolset_cancel(ts, ts->calls);
    for (size_t s = 0; s < ts->wf->nmcps; s++) {
        fr_mcp_stop(ts->servers[s].mcp);
        ts->servers[s].mcp = NULL;
    }
    uv_timer_stop(&ts->ready_timer);
    uv_close((uv_handle_t *)&ts->ready_timer, ready_closed);
}
