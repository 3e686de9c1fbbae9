/* The MCP server's tools (engine/mcpd/mcpd_int.h): their schemas, the
 * checks of a call's arguments, the child `flowrun` each call runs under
 * the guard, its progress lines turned into notifications/progress, and
 * its report turned into a compact result. */
#include "engine/mcp/jsonrpc.h"
#include "engine/mcpd/mcpd_int.h"
#include "engine/output.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum fr_mcpd_tool { TOOL_RUN_TASK, TOOL_RUN_WORKFLOW, TOOL_PLAN, TOOL_SPEND, TOOL_APPROVE };

static const char *const tool_names[] = {"run_task", "run_workflow", "plan_workflow", "spend",
                                         "approve"};
enum { NTOOLS = sizeof tool_names / sizeof *tool_names };

/* What run_task and run_workflow return as structuredContent. */
#define RUN_OUTPUT_SCHEMA                                                                          \
    "\"outputSchema\": {\"type\": \"object\", \"required\": [\"status\"], \"properties\": {"       \
    "\"status\": {\"type\": \"string\"}, \"exit_code\": {\"type\": \"integer\"},"                  \
    "\"cost_usd\": {\"type\": \"number\"}, \"tokens\": {\"type\": \"object\"},"                    \
    "\"tasks\": {\"type\": \"array\"}, \"outputs\": {\"type\": \"object\"}}}"

static const char tools_json[] =
    "["
    "{\"name\": \"run_task\", \"title\": \"Run one prompt\","
    " \"description\": \"Sends one prompt to the endpoint the user's routing policy picks (local "
    "first, the cloud where it pays), within the budget caps. Returns the output (or its JSON "
    "when a schema is given; a long one as a file path), where it ran, tokens and cost.\","
    " \"inputSchema\": {\"type\": \"object\", \"required\": [\"prompt\"], "
    "\"additionalProperties\": false, \"properties\": {"
    "\"prompt\": {\"type\": \"string\", \"description\": \"the prompt, sent as written\"},"
    "\"system\": {\"type\": \"string\", \"description\": \"a system prompt\"},"
    "\"complexity\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1, \"description\": "
    "\"how strong a model the task needs (routing hint, default 0.5)\"},"
    "\"private\": {\"type\": \"boolean\", \"description\": \"may only run on local endpoints\"},"
    "\"schema\": {\"type\": [\"object\", \"string\"], \"description\": \"a JSON Schema the "
    "reply must match, or \\\"json\\\" for any JSON object\"},"
    "\"max_tokens\": {\"type\": \"integer\", \"minimum\": 1, \"description\": \"output "
    "cap\"}}}," RUN_OUTPUT_SCHEMA "},"
    "{\"name\": \"run_workflow\", \"title\": \"Run a workflow\","
    " \"description\": \"Runs a flowrun workflow file (or the named tasks and their "
    "dependencies). Returns each task's status, endpoint, tier, cost and tokens, and the final "
    "tasks' outputs (those no other task depends on; long ones as file paths). Sends progress "
    "notifications when asked.\","
    " \"inputSchema\": {\"type\": \"object\", \"required\": [\"path\"], "
    "\"additionalProperties\": false, \"properties\": {"
    "\"path\": {\"type\": \"string\", \"description\": \"the workflow file (.lua)\"},"
    "\"vars\": {\"type\": \"object\", \"additionalProperties\": {\"type\": [\"string\", "
    "\"number\", \"boolean\"]}, \"description\": \"workflow variables, {{var.NAME}}\"},"
    "\"tasks\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}, \"description\": "
    "\"run only these tasks and their dependencies\"}}}," RUN_OUTPUT_SCHEMA "},"
    "{\"name\": \"plan_workflow\", \"title\": \"Plan a workflow\","
    " \"description\": \"What a run of the workflow would do, sending nothing: each task's "
    "endpoint, expected cost and the worst case.\","
    " \"inputSchema\": {\"type\": \"object\", \"required\": [\"path\"], "
    "\"additionalProperties\": false, \"properties\": {"
    "\"path\": {\"type\": \"string\"},"
    "\"vars\": {\"type\": \"object\", \"additionalProperties\": {\"type\": [\"string\", "
    "\"number\", \"boolean\"]}}}}},"
    "{\"name\": \"spend\", \"title\": \"Spend\","
    " \"description\": \"The cost ledger: spend by month, tier, endpoint and workflow.\","
    " \"inputSchema\": {\"type\": \"object\", \"additionalProperties\": false, \"properties\": {"
    "\"month\": {\"type\": \"string\", \"pattern\": \"^[0-9]{4}-[0-9]{2}$\", \"description\": "
    "\"YYYY-MM; all months when absent\"}}}},"
    "{\"name\": \"approve\", \"title\": \"Answer an approval\","
    " \"description\": \"Approves or rejects a workflow task that waits for an approval "
    "(approve = true); the next run of the workflow continues from there.\","
    " \"inputSchema\": {\"type\": \"object\", \"required\": [\"workflow\", \"task\", "
    "\"decision\"], \"additionalProperties\": false, \"properties\": {"
    "\"workflow\": {\"type\": \"string\", \"description\": \"the workflow file\"},"
    "\"task\": {\"type\": \"string\"},"
    "\"decision\": {\"type\": \"string\", \"enum\": [\"approve\", \"reject\"]},"
    "\"note\": {\"type\": \"string\", \"description\": \"why; a rejection's note becomes the "
    "reason its dependents are skipped\"}}}}"
    "]";

json_t *fr_mcpd_tools_list(void)
{
    json_error_t je;
    json_t *tools = json_loads(tools_json, 0, &je);
    if (!tools) { /* a bug in the literal above: say where */
        fr_log_event(FR_LOG_ERROR, "mcpd", "mcpd.error", "tools_json error=\"%s\" at=%d", je.text,
                     je.position);
        tools = json_array();
    }
    return json_pack("{s:o}", "tools", tools);
}

/* ---- results ------------------------------------------------------------ */

/* A result (owned) whose text is `sc` as compact JSON, `sc` (taken) its
 * structuredContent unless it is an error. */
static json_t *result_of(json_t *sc, bool is_error)
{
    char *text = json_dumps(sc, JSON_COMPACT);
    json_t *r = json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text",
                          text ? text : "{}", "isError", is_error);
    free(text);
    if (!is_error)
        json_object_set(r, "structuredContent", sc);
    json_decref(sc);
    return r;
}

/* An isError result (owned) whose text is `msg`. */
static json_t *error_result(const char *msg)
{
    return json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", msg, "isError", 1);
}

static void respond(fr_mcpd_peer *p, void *tag, const char *rev, const json_t *id, json_t *result)
{
    fr_mcpd_send(p, tag, rev, fr_mcp_result_response(id, result), true);
}

/* ---- argv --------------------------------------------------------------- */

typedef fr_mcpd_argv argv_b;

static void push(argv_b *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = fr_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = fr_xstrdup(s);
    a->v[a->n] = NULL;
}

static void argv_free(argv_b *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

/* The server's child options a command accepts: all of them for a run or
 * a plan; --state and --sim for spend, approve and reject, and --endpoints
 * for approve and reject (they load the workflow). */
static void push_child_args(argv_b *a, const fr_mcpd *d, int tool)
{
    for (size_t i = 0; i < d->nchild_args; i++) {
        const char *s = d->child_args[i];
        bool has_val = i + 1 < d->nchild_args && s[0] == '-' && d->child_args[i + 1][0] != '-';
        if (tool != TOOL_SPEND && tool != TOOL_APPROVE) {
            push(a, s);
        } else if (strcmp(s, "--state") == 0 && has_val) {
            push(a, s);
            push(a, d->child_args[++i]);
        } else if (strcmp(s, "--sim") == 0) {
            push(a, s);
        } else if (strcmp(s, "--endpoints") == 0 && has_val && tool == TOOL_APPROVE) {
            push(a, s);
            push(a, d->child_args[++i]);
        } else if (has_val) {
            i++;
        }
    }
}

/* ---- arguments ---------------------------------------------------------- */

/* Reads the string argument `key` of `args`: NULL when absent (an error
 * in `why` when `required`, or when it is there but not a string). */
static const char *arg_str(const json_t *args, const char *key, bool required, char *why, size_t n)
{
    const json_t *v = json_object_get(args, key);
    if (!v) {
        if (required && !*why)
            snprintf(why, n, "the argument '%s' is required", key);
        return NULL;
    }
    if (!json_is_string(v) || !*json_string_value(v)) {
        if (!*why)
            snprintf(why, n, "the argument '%s' must be a non-empty string", key);
        return NULL;
    }
    return json_string_value(v);
}

/* Adds --var NAME=VALUE for each of `vars` (an object of strings,
 * numbers or booleans). */
static void push_vars(argv_b *a, const json_t *vars, char *why, size_t n)
{
    if (!vars)
        return;
    if (!json_is_object(vars)) {
        snprintf(why, n, "the argument 'vars' must be an object of NAME: value");
        return;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)vars, k, v)
    {
        char *val = json_is_string(v) ? fr_xstrdup(json_string_value(v))
                    : (json_is_number(v) || json_is_boolean(v))
                        ? json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))
                        : NULL;
        if (!val) {
            snprintf(why, n, "vars.%.100s must be a string, a number or a boolean", k);
            return;
        }
        char *kv = fr_xasprintf("%s=%s", k, val);
        push(a, "--var");
        push(a, kv);
        free(kv);
        free(val);
    }
}

/* ---- run_task's one-task workflow --------------------------------------- */

/* `s` as a Lua string literal: printable ASCII as it is, every other byte
 * (quotes, backslashes, newlines, UTF-8) as a decimal escape. */
static void lua_quote(fr_buf *b, const char *s)
{
    fr_buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            fr_buf_append(b, p, 1);
        else
            fr_buf_printf(b, "\\%03u", *p);
    }
    fr_buf_puts(b, "\"");
}

/* A JSON value as a Lua value: objects and arrays as tables. */
static void lua_value(fr_buf *b, const json_t *v)
{
    size_t i;
    const char *k;
    const json_t *e;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        fr_buf_puts(b, "{");
        json_object_foreach((json_t *)v, k, e)
        {
            if (json_is_null(e))
                continue;
            fr_buf_puts(b, "[");
            lua_quote(b, k);
            fr_buf_puts(b, "] = ");
            lua_value(b, e);
            fr_buf_puts(b, ", ");
        }
        fr_buf_puts(b, "}");
        break;
    case JSON_ARRAY:
        fr_buf_puts(b, "{");
        json_array_foreach(v, i, e)
        {
            lua_value(b, e);
            fr_buf_puts(b, ", ");
        }
        fr_buf_puts(b, "}");
        break;
    case JSON_STRING:
        lua_quote(b, json_string_value(v));
        break;
    case JSON_INTEGER:
        fr_buf_printf(b, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL:
        fr_buf_printf(b, "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        fr_buf_puts(b, "true");
        break;
    case JSON_FALSE:
        fr_buf_puts(b, "false");
        break;
    default:
        fr_buf_puts(b, "nil");
    }
}

/* The workflow text of a run_task call, or NULL with `why` filled. The
 * prompt is a function's return value, so braces in it are never read as
 * placeholders. */
static char *task_workflow(const json_t *args, char *why, size_t n)
{
    const char *prompt = arg_str(args, "prompt", true, why, n);
    const char *system = arg_str(args, "system", false, why, n);
    const json_t *cx = json_object_get(args, "complexity");
    const json_t *priv = json_object_get(args, "private");
    const json_t *schema = json_object_get(args, "schema");
    const json_t *mt = json_object_get(args, "max_tokens");
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)args, k, v)
    {
        if (!*why && strcmp(k, "prompt") && strcmp(k, "system") && strcmp(k, "complexity") &&
            strcmp(k, "private") && strcmp(k, "schema") && strcmp(k, "max_tokens"))
            snprintf(why, n,
                     "unknown argument '%.100s' (run_task takes prompt, system, complexity, "
                     "private, schema, max_tokens)",
                     k);
    }
    if (!*why && cx &&
        (!json_is_number(cx) || json_number_value(cx) < 0 || json_number_value(cx) > 1))
        snprintf(why, n, "the argument 'complexity' must be a number from 0 to 1");
    if (!*why && priv && !json_is_boolean(priv))
        snprintf(why, n, "the argument 'private' must be true or false");
    if (!*why && mt && (!json_is_integer(mt) || json_integer_value(mt) < 1))
        snprintf(why, n, "the argument 'max_tokens' must be an integer >= 1");
    if (!*why && schema && !json_is_object(schema) &&
        !(json_is_string(schema) && strcmp(json_string_value(schema), "json") == 0))
        snprintf(why, n, "the argument 'schema' must be a JSON Schema object or \"json\"");
    if (*why)
        return NULL;
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "-- written by `flowrun mcp` for one run_task call\n"
                    "workflow { name = \"mcp-run-task\" }\n"
                    "agent \"assistant\" { ");
    if (system) {
        fr_buf_puts(&b, "system = ");
        lua_quote(&b, system);
    }
    fr_buf_puts(&b, " }\ntask \"answer\" {\n  agent = \"assistant\",\n  prompt = function() "
                    "return ");
    lua_quote(&b, prompt);
    fr_buf_puts(&b, " end,\n");
    if (cx)
        fr_buf_printf(&b, "  complexity = %.17g,\n", json_number_value(cx));
    if (priv)
        fr_buf_printf(&b, "  private = %s,\n", json_is_true(priv) ? "true" : "false");
    if (mt)
        fr_buf_printf(&b, "  max_tokens = %lld,\n", (long long)json_integer_value(mt));
    if (schema) {
        fr_buf_puts(&b, "  schema = ");
        lua_value(&b, schema);
        fr_buf_puts(&b, ",\n");
    }
    fr_buf_puts(&b, "}\n");
    return fr_buf_take(&b);
}

/* ---- the child ---------------------------------------------------------- */

static void call_free(fr_mcpd_call *c)
{
    fr_mcpd *d = c->d;
    for (fr_mcpd_call **pp = &d->calls; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    fr_proc_free(c->proc);
    argv_free(&c->argv);
    if (c->wf_path)
        unlink(c->wf_path);
    free(c->wf_path);
    free(c->out_dir);
    json_decref(c->id);
    json_decref(c->progress_token);
    fr_buf_close(&c->out);
    fr_buf_close(&c->err);
    fr_buf_close(&c->line);
    free(c);
    fr_mcpd_calls_idle(d);
}

void fr_mcpd_call_cancel(fr_mcpd_call *c)
{
    if (c->cancelled)
        return;
    c->cancelled = true;
    fr_log_event(FR_LOG_INFO, "mcpd", "mcpd.call_cancelled", "call=%s cancelled pid=%d",
                 tool_names[c->tool], c->proc ? fr_proc_pid(c->proc) : 0);
    if (c->proc)
        fr_proc_kill(c->proc); /* else it has not started: on_written ends the call */
}

static void on_out(void *ud, const char *data, size_t len)
{
    fr_mcpd_call *c = ud;
    fr_buf_append(&c->out, data, len);
}

/* The value of `key=` in a log line, up to the next space (owned), or NULL. */
static char *field(const char *line, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = strstr(line, key); p; p = strstr(p + 1, key)) {
        if (p != line && p[-1] != ' ')
            continue;
        const char *v = p + kl, *end = strchr(v, ' ');
        return fr_xstrndup(v, end ? (size_t)(end - v) : strlen(v));
    }
    return NULL;
}

/* One line of the child's stderr: `tasks=N status=started`, then a
 * `task=NAME status=S [endpoint=E]` per task that ended. */
static void progress_line(fr_mcpd_call *c, const char *line)
{
    char *task = field(line, "task="), *status = field(line, "status=");
    char *tasks = field(line, "tasks="), *ep = field(line, "endpoint=");
    bool tool_line = strstr(line, " tool=") != NULL;
    char msg[600];
    if (tasks && status && strcmp(status, "started") == 0) {
        c->total = atol(tasks);
    } else if (task && status && !tool_line) {
        c->ended++;
        snprintf(msg, sizeof msg, "%s %s%s%s", task, status, ep ? " on " : "", ep ? ep : "");
        if (c->progress_token && c->peer && !c->cancelled) {
            json_t *params = json_pack("{s:O, s:I, s:s}", "progressToken", c->progress_token,
                                       "progress", (json_int_t)c->ended, "message", msg);
            if (c->total >= c->ended)
                json_object_set_new(params, "total", json_integer(c->total));
            fr_mcpd_send(c->peer, c->tag, c->rev,
                         fr_mcp_notification("notifications/progress", params), false);
        }
    }
    free(task);
    free(status);
    free(tasks);
    free(ep);
}

static void on_err(void *ud, const char *data, size_t len)
{
    fr_mcpd_call *c = ud;
    if (c->err.len < (1u << 20))
        fr_buf_append(&c->err, data, len);
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n') {
            if (c->line.len < 65536)
                fr_buf_append(&c->line, data + i, 1);
            continue;
        }
        progress_line(c, fr_buf_str(&c->line));
        fr_buf_reset(&c->line);
    }
}

/* The child's message: its stderr without the progress lines (the last
 * 4000 bytes), and how it ended. */
static char *child_message(const fr_mcpd_call *c, int code, int sig)
{
    fr_buf b;
    fr_buf_init(&b, 0);
    const char *s = fr_buf_str(&c->err);
    while (*s) {
        const char *eol = strchr(s, '\n');
        size_t n = eol ? (size_t)(eol - s) : strlen(s);
        char *line = fr_xstrndup(s, n);
        if (!strstr(line, "task=") && !strstr(line, "tasks="))
            fr_buf_printf(&b, "%s\n", line);
        free(line);
        s += n + (eol ? 1 : 0);
    }
    if (sig)
        fr_buf_printf(&b, "(%s was killed by signal %d)", tool_names[c->tool], sig);
    else
        fr_buf_printf(&b, "(flowrun exited with %d)", code);
    char *all = fr_buf_take(&b);
    size_t n = strlen(all);
    if (n > 4000) {
        char *tail = fr_xasprintf("...%s", all + n - 4000);
        free(all);
        all = tail;
    }
    return all;
}

/* A task's output as the result carries it: the text or JSON inline, or
 * the file flowrun wrote it to when it is longer than inline_max. */
static json_t *task_output(const fr_mcpd_call *c, const json_t *t)
{
    const char *name = json_string_value(json_object_get(t, "name"));
    const json_t *js = json_object_get(t, "json");
    const char *text = json_string_value(json_object_get(t, "output"));
    bool is_json = js && !json_is_null(js);
    char *dump = is_json ? json_dumps(js, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    size_t n = dump ? strlen(dump) : text ? strlen(text) : 0;
    json_t *o;
    if (n <= c->d->inline_max) {
        o = is_json ? json_pack("{s:O}", "json", js) : json_pack("{s:s}", "text", text ? text : "");
    } else {
        char *path = fr_xasprintf("%s/%s.%s", c->out_dir, name, is_json ? "json" : "txt");
        o = json_pack("{s:s, s:I}", "file", path, "bytes", (json_int_t)n);
        free(path);
    }
    free(dump);
    return o;
}

/* A run's report (borrowed) as a compact result: per task its status,
 * endpoint, tier, cost and tokens; the outputs of the tasks nothing
 * depends on. */
static json_t *run_summary(const fr_mcpd_call *c, const json_t *rep)
{
    const json_t *tasks = json_object_get(rep, "tasks");
    json_t *list = json_array(), *outs = json_object();
    long long tin = 0, tout = 0;
    size_t i, j, k;
    const json_t *t, *u, *dep;
    json_array_foreach(tasks, i, t)
    {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *status = json_string_value(json_object_get(t, "status"));
        const json_t *tok = json_object_get(t, "tokens");
        json_int_t in = json_integer_value(json_object_get(tok, "input"));
        json_int_t out = json_integer_value(json_object_get(tok, "output"));
        tin += in;
        tout += out;
        json_t *row =
            json_pack("{s:s, s:s, s:O, s:O, s:O, s:{s:I, s:I}}", "name", name ? name : "", "status",
                      status ? status : "", "endpoint", json_object_get(t, "endpoint"), "tier",
                      json_object_get(t, "tier"), "cost_usd", json_object_get(t, "cost_usd"),
                      "tokens", "input", in, "output", out);
        if (row && status && strcmp(status, "ok") != 0)
            json_object_set(row, "reason", json_object_get(t, "reason"));
        if (row && json_object_get(t, "approval")) /* a checkpoint: pending, or who decided */
            json_object_set(row, "approval", json_object_get(t, "approval"));
        if (row)
            json_array_append_new(list, row);
        bool final = true;
        json_array_foreach(tasks, j, u)
        {
            json_array_foreach(json_object_get(u, "deps"), k, dep)
            {
                if (name && json_is_string(dep) && strcmp(json_string_value(dep), name) == 0)
                    final = false;
            }
        }
        if (final && name && status && strcmp(status, "ok") == 0)
            json_object_set_new(outs, name, task_output(c, t));
    }
    const char *status = json_string_value(json_object_get(rep, "status"));
    return json_pack("{s:s, s:O, s:O, s:{s:I, s:I}, s:o, s:o}", "status", status ? status : "",
                     "exit_code", json_object_get(rep, "exit_code"), "cost_usd",
                     json_object_get(rep, "cost_usd"), "tokens", "input", (json_int_t)tin, "output",
                     (json_int_t)tout, "tasks", list, "outputs", outs);
}

/* A plan's report (borrowed), compact. */
static json_t *plan_summary(const json_t *rep)
{
    json_t *list = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(rep, "tasks"), i, t)
    {
        json_t *row = json_pack(
            "{s:O, s:O, s:O, s:O, s:O, s:O}", "name", json_object_get(t, "name"), "status",
            json_object_get(t, "status"), "endpoint", json_object_get(t, "endpoint"), "tier",
            json_object_get(t, "tier"), "cost_usd", json_object_get(t, "cost_usd"),
            "worst_cost_usd", json_object_get(t, "worst_cost_usd"));
        if (row)
            json_array_append_new(list, row);
    }
    json_t *o = json_pack("{s:O, s:O, s:O, s:o}", "status", json_object_get(rep, "status"),
                          "cost_usd", json_object_get(rep, "cost_usd"), "makespan_ms",
                          json_object_get(rep, "makespan_ms"), "tasks", list);
    if (o)
        json_object_set(o, "worst_case_usd", json_object_get(rep, "worst_case_usd"));
    return o ? o : json_object();
}

/* The result of call `c` whose child ended with `code` / `sig` (owned). */
static json_t *call_result(fr_mcpd_call *c, int code, int sig)
{
    json_t *rep = c->out.len ? json_loadb(c->out.data, c->out.len, 0, NULL) : NULL;
    json_t *res = NULL;
    bool reported = json_is_object(rep) &&
                    (c->tool == TOOL_SPEND || json_is_array(json_object_get(rep, "tasks")));
    if (!reported && (c->tool != TOOL_APPROVE || code != 0 || sig)) {
        char *msg = child_message(c, code, sig);
        res = error_result(msg);
        free(msg);
    } else if (c->tool == TOOL_RUN_TASK || c->tool == TOOL_RUN_WORKFLOW) {
        /* 0 done, 4 waiting for an approval: a result; a failure or a
         * budget stop is one with isError, and still the whole summary. */
        res = result_of(run_summary(c, rep), code != 0 && code != 4);
    } else if (c->tool == TOOL_PLAN) {
        res = result_of(plan_summary(rep), false);
    } else if (c->tool == TOOL_SPEND) {
        res = result_of(json_incref(rep), code != 0);
    } else {
        char *msg = child_message(c, code, sig);
        char *nl = strstr(msg, "\n(flowrun exited");
        if (nl)
            *nl = '\0';
        res = result_of(json_pack("{s:b, s:s}", "recorded", 1, "message", msg), false);
        free(msg);
    }
    json_decref(rep);
    return res;
}

static void on_exit_cb(void *ud, int code, int sig)
{
    fr_mcpd_call *c = ud;
    if (c->line.len)
        progress_line(c, fr_buf_str(&c->line));
    if (!c->cancelled && c->peer)
        respond(c->peer, c->tag, c->rev, c->id, call_result(c, code, sig));
    call_free(c);
}

/* Builds the child's argv for `tool` with `args` into `a`, or fills `why`;
 * for run_task, *wf_text (owned) is the workflow to write first. */
static void build_argv(fr_mcpd_call *c, const json_t *args, argv_b *a, char **wf_text, char *why,
                       size_t n)
{
    fr_mcpd *d = c->d;
    push(a, d->exe);
    if (c->tool == TOOL_RUN_TASK) {
        *wf_text = task_workflow(args, why, n);
        if (!*wf_text)
            return;
        c->wf_path = fr_xasprintf("%s/run_task-%ld-%lu.lua", d->work_dir, (long)getpid(), d->seq);
        push(a, c->wf_path);
    } else if (c->tool == TOOL_RUN_WORKFLOW || c->tool == TOOL_PLAN) {
        const char *path = arg_str(args, "path", true, why, n);
        if (c->tool == TOOL_PLAN)
            push(a, "plan");
        if (path)
            push(a, path);
        push_vars(a, json_object_get(args, "vars"), why, n);
        const json_t *tasks = json_object_get(args, "tasks");
        size_t i;
        const json_t *t;
        if (tasks && (c->tool == TOOL_PLAN || !json_is_array(tasks)))
            snprintf(why, n, "the argument 'tasks' must be an array of task names");
        json_array_foreach(tasks, i, t)
        {
            if (!json_is_string(t) && !*why)
                snprintf(why, n, "tasks[%zu] must be a task name (a string)", i);
            else if (json_is_string(t)) {
                push(a, "--task");
                push(a, json_string_value(t));
            }
        }
    } else if (c->tool == TOOL_SPEND) {
        push(a, "spend");
        const char *m = arg_str(args, "month", false, why, n);
        if (m) {
            push(a, "--month");
            push(a, m);
        }
    } else {
        const char *wf = arg_str(args, "workflow", true, why, n);
        const char *task = arg_str(args, "task", true, why, n);
        const char *dec = arg_str(args, "decision", true, why, n);
        const char *note = arg_str(args, "note", false, why, n);
        if (dec && strcmp(dec, "approve") != 0 && strcmp(dec, "reject") != 0 && !*why)
            snprintf(why, n, "the argument 'decision' must be \"approve\" or \"reject\"");
        if (*why)
            return;
        push(a, dec);
        push(a, wf);
        push(a, task);
        if (note) {
            push(a, "--note");
            push(a, note);
        }
    }
    if (c->tool == TOOL_RUN_TASK || c->tool == TOOL_RUN_WORKFLOW) {
        c->out_dir = fr_xasprintf("%s/out-%ld-%lu", d->work_dir, (long)getpid(), d->seq);
        push(a, "--json");
        push(a, "--progress");
        push(a, "--out");
        push(a, c->out_dir);
    } else if (c->tool != TOOL_APPROVE) {
        push(a, "--json");
    }
    push_child_args(a, d, c->tool);
}

/* Ends call `c` with an isError result saying `why` (unless nobody waits). */
static void fail_call(fr_mcpd_call *c, const char *why)
{
    if (c->peer && !c->cancelled) {
        char *msg = fr_xasprintf("%s: %s", tool_names[c->tool], why);
        respond(c->peer, c->tag, c->rev, c->id, error_result(msg));
        free(msg);
    }
    call_free(c);
}

/* Starts call `c`'s child from its argv. */
static void start_child(fr_mcpd_call *c)
{
    fr_error err = {0};
    char why[600];
    fr_proc_opts o = {.argv = (const char *const *)c->argv.v, .grace_s = 5.0};
    int rc = fr_proc_spawn(c->d->loop, &o, on_out, on_err, on_exit_cb, c, &c->proc, &err);
    argv_free(&c->argv);
    memset(&c->argv, 0, sizeof c->argv);
    if (rc != FR_OK) {
        snprintf(why, sizeof why, "cannot start %.200s: %.300s", c->d->exe, err.msg);
        fail_call(c, why);
    }
}

/* run_task's workflow is written: the child can start. */
static void on_written(void *ud, int rc, const char *path)
{
    fr_mcpd_call *c = ud;
    char why[700];
    if (c->cancelled) {
        call_free(c);
    } else if (rc != FR_OK) {
        snprintf(why, sizeof why, "cannot write %.500s: %s (check --work-dir)", path,
                 fr_strerror(rc));
        fail_call(c, why);
    } else {
        start_child(c);
    }
}

void fr_mcpd_tool_call(fr_mcpd_peer *p, void *tag, const json_t *id, const json_t *params)
{
    fr_mcpd *d = p->d;
    const char *rev = p->rev;
    const char *name = json_string_value(json_object_get(params, "name"));
    const json_t *args = json_object_get(params, "arguments");
    int tool = -1;
    for (int i = 0; name && i < NTOOLS; i++)
        if (strcmp(name, tool_names[i]) == 0)
            tool = i;
    if (tool < 0) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "Unknown tool: '%.100s' (tools: run_task, run_workflow, plan_workflow, spend, "
                 "approve)",
                 name ? name : "(no name)");
        json_t *null = json_null();
        fr_mcpd_send(p, tag, rev, fr_mcp_error_response(id ? id : null, -32602, msg), true);
        json_decref(null);
        return;
    }
    char why[600] = "";
    json_t *empty = json_object();
    if (args && !json_is_object(args))
        snprintf(why, sizeof why, "the arguments must be an object");
    fr_mcpd_call *c = fr_xcalloc(1, sizeof *c);
    c->d = d;
    c->peer = p;
    c->tag = tag;
    c->id = json_incref((json_t *)id);
    c->rev = rev;
    c->tool = tool;
    c->progress_token =
        json_incref(json_object_get(json_object_get(params, "_meta"), "progressToken"));
    fr_buf_init(&c->out, 0);
    fr_buf_init(&c->err, 0);
    fr_buf_init(&c->line, 0);
    d->seq++;
    char *wf_text = NULL;
    if (!*why)
        build_argv(c, json_is_object(args) ? args : empty, &c->argv, &wf_text, why, sizeof why);
    json_decref(empty);
    c->next = d->calls;
    d->calls = c;
    if (*why)
        fail_call(c, why);
    else if (!wf_text)
        start_child(c);
    else if (fr_output_write(d->loop, c->wf_path, wf_text, strlen(wf_text), on_written, c) != FR_OK)
        fail_call(c, "cannot write the workflow into the work directory");
    free(wf_text);
}
