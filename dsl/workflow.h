#pragma once
/* A loaded, validated workflow: agents, tasks and endpoints as plain C data
 * (read-only once loaded), plus the sandboxed Lua state that keeps the
 * workflow's prompt, check and condition functions alive. Produced by
 * dsl/load; read by engine. */

#include "engine/util/err.h"
#include "engine/util/kinds.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_price {
    double input;        /* USD per million input tokens */
    double output;       /* USD per million output tokens */
    double cached_input; /* USD per million cached input tokens */
    bool set;            /* false when the file gave no price */
} fr_price;

typedef struct fr_timeouts {
    double connect_s;    /* default 10 */
    double first_byte_s; /* default 0 = none */
    double idle_s;       /* stream idle; default 60 */
    double attempt_s;    /* one attempt, first byte to last; default 0 = the task's timeout */
} fr_timeouts;

typedef struct fr_endpoint_spec {
    char *name;
    fr_tier tier; /* FR_TIER_LOCAL or FR_TIER_CLOUD, never ANY */
    fr_protocol protocol;
    char *url; /* may be NULL only when the protocol has a default */
    char *model;
    char *api_key_env; /* name of the variable, NULL for none; never the key */
    int max_parallel;  /* >= 1; default 1 local, 4 cloud */
    bool shared;       /* max_parallel given, and no `shared = false`: its slots are held
                          across every process sharing the state store */
    long context;      /* tokens; 0 = unknown */
    double quality;    /* 0..1; default 0.5 */
    char **tags;
    size_t ntags;
    fr_price price;
    bool stream;      /* default true */
    char *keep_alive; /* Ollama keep_alive ("5m", or seconds), NULL for the server's default */
    bool max_completion_tokens; /* max_tokens_field = "max_completion_tokens" (openai only) */
    bool tools;       /* the model can call tools (default true); false: never a candidate
                         for a task with tools */
    fr_timeouts timeouts;
    char *file; /* where it was declared */
    int line;
} fr_endpoint_spec;

/* An MCP server the workflow's tools come from: `mcp "fs" { ... }`. Exactly
 * one of command (stdio) and url (Streamable HTTP) is set. */
typedef struct fr_mcp_spec {
    char *name;            /* [A-Za-z][A-Za-z0-9_-]*: tools are "<name>.<tool>" */
    char **command;        /* argv (argv[0] looked up in PATH, never a shell), or NULL */
    size_t ncommand;
    char **env;            /* "NAME=value" added to the server's environment */
    size_t nenv;
    char *cwd;             /* the server's working directory, resolved against the workflow's
                              directory; NULL = the workflow's directory */
    char *url;             /* Streamable HTTP endpoint, or NULL */
    char **header_names;   /* headers_env = { Header = "ENV_VAR" }: the header's name ... */
    char **header_envs;    /* ... and the variable its value is read from (never a value) */
    size_t nheaders;
    fr_tier tier;           /* where what a call sends goes: FR_TIER_LOCAL for a server over
                               stdio or at a loopback URL unless `tier` says otherwise,
                               FR_TIER_CLOUD for any other URL; a private task may only use
                               local servers' tools */
    double start_timeout_s; /* start, handshake and listing; default 60 */
    double call_timeout_s;  /* one tools/call; default 60 */
    char *file;
    int line;
} fr_mcp_spec;

typedef enum fr_tool_kind { FR_TOOL_MCP, FR_TOOL_LUA, FR_TOOL_COMMAND } fr_tool_kind;

/* A tool the workflow declares itself: `tool "name" { ... }`, with a Lua
 * `run` function (FR_TOOL_LUA) or a `command` (FR_TOOL_COMMAND). */
typedef struct fr_tool_spec {
    char *name;          /* [A-Za-z][A-Za-z0-9_-]*, no dot (dots are MCP tools) */
    fr_tool_kind kind;   /* FR_TOOL_LUA or FR_TOOL_COMMAND */
    char *description;   /* required */
    json_t *parameters;  /* owned JSON Schema subset for the arguments (an object schema);
                            default {"type":"object"} */
    char **command;      /* FR_TOOL_COMMAND: argv templates; an item that is exactly
                            "{{args.NAME}}" becomes that argument as one argv item, other
                            items are literal (checked at load) */
    size_t ncommand;
    char *cwd;           /* FR_TOOL_COMMAND: resolved against the workflow's directory;
                            NULL = the workflow's directory */
    double timeout_s;    /* one call; default 60 */
    long output_cap;     /* FR_TOOL_COMMAND: bytes of stdout+stderr kept; default 65536 */
    char *file;
    int line;
} fr_tool_spec;

typedef struct fr_agent_spec {
    char *name;
    char *system; /* may be NULL */
    char *type;   /* may be NULL */
    bool is_private; /* every task of this agent is private */
    char **tools;    /* tool patterns as written: "word_count", "fs.read_file", "fs.*" */
    size_t ntools;
    char *file;
    int line;
} fr_agent_spec;

/* When a task runs given how its dependencies ended (`trigger`). A
 * dependency that did not succeed (failed, budget, skipped, cancelled) is
 * "not ok". */
typedef enum fr_trigger {
    FR_TRIGGER_ALL_OK = 0, /* every dependency succeeded (the default); else skipped */
    FR_TRIGGER_ALL_DONE,   /* every dependency ended, whatever its state */
    FR_TRIGGER_ANY_FAILED  /* every dependency ended and at least one is not ok; else skipped */
} fr_trigger;

typedef struct fr_task_spec {
    char *name;
    size_t agent;      /* index into fr_workflow.agents */
    char *prompt;      /* template text; NULL when the prompt is a function */
    char **deps;       /* names, in the order written */
    size_t *dep_index; /* indices into fr_workflow.tasks, same order */
    size_t ndeps;
    double complexity;  /* 0..1; default 0.5 */
    char *type;         /* the task's or else its agent's, may be NULL */
    int priority;       /* 1..10; default 5; higher runs first */
    bool is_private;    /* never leaves the local tier: set by the task, by its agent, or
                           inherited from a dependency (privacy follows the data) */
    long private_from;  /* when inherited: the index of the task that is private by itself
                           (nearest in hops); -1 when private by itself or not private */
    long private_via;   /* when inherited: the dependency it came through; else -1 */
    bool declassify;    /* declassify = true: inherits no privacy from its dependencies */
    long declassified_from; /* with declassify: a private dependency whose output it receives
                               (the first found); else -1 */
    double timeout_s;   /* whole task; default workflow.defaults.timeout (300) */
    int retries;        /* per endpoint; default workflow.defaults.retries (2) */
    int max_tokens;     /* default workflow.defaults.max_tokens (2048) */
    double temperature; /* default workflow.defaults.temperature (0.2) */
    bool has_budget;    /* a task cap was given; false = none */
    double budget_usd;  /* the task cap when has_budget: 0 allows only free work */
    json_t *schema;     /* owned JSON Schema subset, the string "json" (any JSON object),
                           or NULL */
    bool has_seed;      /* a sampling seed was given */
    long seed;
    bool has_check;     /* a check function was given */
    double min_quality; /* 0..1; default 0 */
    bool approve;
    /* A reply cut at max_tokens is accepted as it is (allow_truncated). */
    bool allow_truncated;
    char *save;     /* path relative to the workflow's directory that stays inside it
                       (checked at load), or NULL; anything with save_anywhere */
    char *endpoint; /* pin by name, or NULL */
    fr_tier tier;   /* pin by tier, FR_TIER_ANY if none */
    char **tools;   /* tool patterns: the task's `tools`, else its agent's; NULL/0 for none */
    size_t ntools;
    int max_turns;      /* model turns in the tool loop; default 10 */
    int max_tool_calls; /* tool calls in the whole loop; default 50 */
    bool no_cache;      /* cache = false: never answered from, nor written to, the cache */
    fr_trigger trigger; /* default FR_TRIGGER_ALL_OK */
    bool has_when;      /* a condition was given: a function (when == NULL) or ... */
    char *when;         /* ... a placeholder expression ("{{review.json.ok}}"), checked at load */
    /* Fan-out (`foreach`): one instance of this task per item of a JSON
     * array that a dependency produced, added when that dependency is done
     * (fr_workflow_add_instance). */
    char *foreach;       /* "plan.json.modules" as written; NULL for a plain task */
    size_t foreach_dep;  /* the index into wf->tasks of the dependency it reads */
    char *foreach_path;  /* the walk into that dependency's JSON after "json." ("" = the
                            whole value) */
    char *instance_name; /* `name`: a template over {{item...}} and {{index}}; NULL =
                            "<task>[<index>]" */
    int max_items;       /* default 100: a longer list fails the fan-out */
    int plan_items;      /* the instances a plan estimates; -1 = unknown (one is planned) */
    /* An instance of a fan-out (added at run time): its template, its item
     * (owned) and its 1-based position in the list. */
    bool is_instance;
    size_t instance_of;
    json_t *item;
    size_t index;
    char *file;
    int line;
} fr_task_spec;

typedef struct fr_workflow_lua fr_workflow_lua;

typedef struct fr_workflow {
    char *name;   /* workflow{name=}, else the file's base name without .lua */
    char *path;   /* the workflow file as given */
    char *dir;    /* its directory: relative paths (save, policy) resolve here */
    char *policy; /* workflow{policy=}: a built-in name or a path; NULL = default */
    struct {
        bool has_usd;        /* a run cap was given; false = none */
        double usd;          /* the run cap when has_usd: 0 allows only free work */
        double alert;        /* fraction, default 0.8 */
        bool has_monthly;    /* a monthly cap was given; false = none */
        double monthly_usd;  /* the monthly cap when has_monthly: 0 allows only free work */
        bool has_daily;      /* a daily cap (UTC day, all runs of the store) was given */
        double daily_usd;    /* the daily cap when has_daily: 0 allows only free work */
        bool allow_unpriced; /* a cloud endpoint without a price may be used under a cap */
    } budget;
    json_t *vars; /* object name -> string: workflow{vars=} overridden by --var */
    fr_agent_spec *agents;
    size_t nagents;
    fr_task_spec *tasks;
    size_t ntasks;
    size_t tasks_cap;     /* room reserved in `tasks` (and the engine's per-task arrays):
                             ntasks at load plus the max_items of every fan-out, so that
                             instances are appended at run time without moving a task */
    fr_endpoint_spec *endpoints;
    size_t nendpoints;
    fr_mcp_spec *mcps;    /* MCP servers, in the order declared */
    size_t nmcps;
    fr_tool_spec *tools;  /* Lua and command tools, in the order declared */
    size_t ntools;
    char *baseline;       /* endpoint name or NULL */
    bool save_anywhere;   /* --allow-save-anywhere: save paths are not confined */
    fr_workflow_lua *lua; /* private to dsl/ */
} fr_workflow;

typedef struct fr_load_opts {
    const char *endpoints_path; /* --endpoints; NULL: ./endpoints.lua, then
                                   $XDG_CONFIG_HOME/flowrun/endpoints.lua, if present */
    const char *const *vars;    /* "name=value" strings from --var */
    size_t nvars;
    const struct fr_lua_limits *limits; /* per-state memory and per-call
                                           instruction budgets (dsl/sandbox.h);
                                           NULL = defaults */
    bool allow_save_anywhere;           /* --allow-save-anywhere: accept absolute save paths and
                                           ones that leave the workflow's folder */
    const char *const *more_endpoints; /* further --endpoints files, read in order
                                          after endpoints_path; an endpoint name
                                          declared in two files is an error */
    size_t nmore_endpoints;
    /* Called with each warning of the load (a --var the workflow neither
     * declares nor uses), a borrowed message without "warning:"; NULL logs
     * it at warn level. */
    void (*warn)(void *ud, const char *msg);
    void *warn_ud;
    bool keep_compiled; /* a run's load: keep a workflow file of 64 KiB or more compiled for
                           the next load (dsl/chunkcache); every load reads what is kept */
} fr_load_opts;

/* Loads and validates the workflow at `path` (borrowed) with `opts`
 * (borrowed, may be NULL). On FR_OK *out receives an owned workflow
 * (fr_workflow_free). On failure returns FR_EWORKFLOW (or FR_ESYNTAX,
 * FR_ENOENT, FR_ECONFIG) with `err` naming the file and line. Checks names,
 * types, ranges, unknown fields (with a did-you-mean), unknown agents and
 * dependencies, duplicates and placeholders; it does not look for cycles
 * (engine/graph does). Sends nothing. */
int fr_workflow_load(const char *path, const fr_load_opts *opts, fr_workflow **out, fr_error *err);

/* Frees a workflow and its Lua state; NULL is fine. */
void fr_workflow_free(fr_workflow *wf);

/* Keeps only the tasks named in `names` (`n` borrowed strings) and every
 * task they depend on, directly or not (`flowrun --task NAME`); the kept
 * tasks stay in their order and every index between them is renumbered.
 * FR_EUSAGE with `err` naming the unknown task (and the closest name)
 * when a name is no task of `wf`; `wf` is then unchanged. */
int fr_workflow_subset(fr_workflow *wf, const char *const *names, size_t n, fr_error *err);

/* Renders the prompt of task `task` with `ctx` (borrowed), an object
 * { "<dep>": { "text": "...", "json": <value or null>, "status": "ok",
 * "reason": "" }, ..., "var": {...} } (status and reason may be absent).
 * String prompts expand {{dep}}, {{dep.text}}, {{dep.json.a.b}},
 * {{dep.status}}, {{dep.reason}} and {{var.name}}; function prompts are called with ctx as a Lua table, under
 * the sandbox's limits. On FR_OK *out is an owned string. Errors (a missing
 * JSON field, a function that fails or returns a non-string) return FR_ELUA
 * or FR_EWORKFLOW with `err` filled. `ctx` may be NULL when
 * fr_workflow_prompt_uses_ctx says the prompt does not read it. */
int fr_workflow_render_prompt(fr_workflow *wf, size_t task, const json_t *ctx, char **out,
                              fr_error *err);
/* Whether task `task`'s prompt reads the context: false for a template
 * without placeholders, which renders as itself; true for a function. */
bool fr_workflow_prompt_uses_ctx(const fr_workflow *wf, size_t task);

/* Runs task `task`'s check function on its output: check(text, json) with
 * `text` and `json` (borrowed; json may be NULL), under the sandbox's
 * limits. The check returns a score from 0 to 1, true (1), or false (0),
 * optionally followed by a reason (nil followed by a reason is 0 too). On
 * FR_OK *score is set and *reason is an owned string or NULL; a task without
 * a check scores 1. A check that fails, returns nothing (nil without a
 * reason) or something else is FR_ELUA/FR_ELIMIT with `err` at its file:line. */
int fr_workflow_check(fr_workflow *wf, size_t task, const char *text, const json_t *json,
                      double *score, char **reason, fr_error *err);

/* Evaluates task `task`'s condition (`when`) with `ctx` (borrowed; the
 * object fr_workflow_render_prompt gets, each dependency also carrying
 * "status" ("ok", "failed", "skipped", ...) and "reason" (a string, "" when
 * it succeeded)). A function is called with ctx as a Lua table under the
 * sandbox's limits and must return a boolean; an expression is rendered as
 * a prompt template and is true unless it renders, spaces trimmed, to "",
 * "false", "0", "null" or "nil" (in any case). A task without a condition
 * is true. On FR_OK *result is set; a function that fails, passes a limit
 * or returns something else is FR_ELUA/FR_ELIMIT, an expression that cannot
 * be rendered FR_EWORKFLOW, with `err` at the task's (or the failing
 * line's) file:line. FR_EINVAL for a bad index. */
int fr_workflow_when(fr_workflow *wf, size_t task, const json_t *ctx, bool *result,
                     fr_error *err);

/* Appends an instance of fan-out task `tmpl` for item `item` (borrowed,
 * copied) at 1-based position `index`, named `name` (borrowed; see
 * fr_workflow_instance_name), as task wf->ntasks within the room the load
 * reserved (wf->tasks_cap), so no task moves. The instance is a copy of
 * the template (its prompt, when and check functions too) without its
 * foreach fields, with is_instance, instance_of, item and index set. On
 * FR_OK *out is its index; FR_ELIMIT when the room is used up, FR_EINVAL
 * when `tmpl` is not a fan-out. Called by engine/fanout. */
int fr_workflow_add_instance(fr_workflow *wf, size_t tmpl, const json_t *item, size_t index,
                             const char *name, size_t *out, fr_error *err);

/* Renders the name of the instance of fan-out task `tmpl` for `item`
 * (borrowed) at 1-based `index`: its `name` template over {{item...}} and
 * {{index}}, else "<task>[<index>]". On FR_OK *out is owned; FR_EWORKFLOW
 * (a missing field, an empty or invalid name) with `err` at the task's
 * file:line. */
int fr_workflow_instance_name(const fr_workflow *wf, size_t tmpl, const json_t *item,
                              size_t index, char **out, fr_error *err);

/* Returns the static name of `t`: "all_ok", "all_done" or "any_failed". */
const char *fr_trigger_name(fr_trigger t);

/* Writes to `buf` (`n` bytes) what a user reads about task `task`'s
 * privacy: "" (not private, nothing declassified), "private", "private: its
 * agent 'vault' is private", "private: inherited from 'secret'" (plus " via
 * 'mid'" when it came through another task) or "declassified: receives the
 * output of private task 'secret'". Returns `buf`. */
const char *fr_workflow_privacy_text(const fr_workflow *wf, size_t task, char *buf, size_t n);

/* Runs Lua tool `tool` (an index into wf->tools, kind FR_TOOL_LUA) as
 * run(args) with `args` (borrowed JSON object, as a Lua table), under the
 * sandbox's limits. A string result is the tool's text; a table is encoded
 * as JSON (keys sorted); a number or boolean becomes its text; `nil,
 * "reason"` or an error is FR_ELUA (FR_ELIMIT past a limit) with `err`
 * naming the tool's file:line. On FR_OK *out is owned. */
int fr_workflow_call_tool(fr_workflow *wf, size_t tool, const json_t *args, char **out,
                          fr_error *err);

/* Returns the index of the tool/MCP server named `name`, or -1. */
long fr_workflow_find_tool(const fr_workflow *wf, const char *name);
long fr_workflow_find_mcp(const fr_workflow *wf, const char *name);

/* Returns the index of the task/endpoint/agent named `name`, or -1. */
long fr_workflow_find_task(const fr_workflow *wf, const char *name);
long fr_workflow_find_endpoint(const fr_workflow *wf, const char *name);
