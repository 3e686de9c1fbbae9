#pragma once
/* Internal to dsl/: the Lua side of a loaded workflow (registry refs of
 * prompt and check functions) and the load context that the declaration
 * functions (workflow, agent, task, endpoint, baseline) fill while a
 * workflow or endpoints file runs. */

#include "dsl/workflow.h"

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* Lua references of one task; owned by fr_workflow_lua. */
typedef struct fr_task_lua {
    int prompt_ref;  /* the prompt function, LUA_NOREF for a string prompt */
    int prompt_line; /* the line where the prompt function was defined */
    int check_ref;   /* the check function, LUA_NOREF without one */
    int when_ref;    /* the when function, LUA_NOREF without one (or for an expression) */
    int when_line;   /* the line where the when function was defined */
} fr_task_lua;

/* Lua references of one tool; owned by fr_workflow_lua. */
typedef struct fr_tool_lua {
    int run_ref;  /* the run function (FR_TOOL_LUA), LUA_NOREF for a command tool */
    int run_line; /* the line where the run function was defined */
} fr_tool_lua;

/* The workflow's Lua state and the references into it. */
struct fr_workflow_lua {
    lua_State *L;       /* owned (fr_sandbox_free) */
    fr_task_lua *tasks; /* parallel to fr_workflow.tasks */
    fr_tool_lua *tools; /* parallel to fr_workflow.tools */
};

/* A name given to task/agent/endpoint whose body may not have come yet. */
typedef struct fr_pending {
    int kind;   /* FR_DECL_* */
    char *name; /* owned, unless moved */
    int line;
    bool done;
    size_t index; /* a task's index in wf->tasks, once its body ran */
    bool moved;   /* name was moved to wf->tasks[index].name (outlives the context) */
} fr_pending;

enum { FR_DECL_TASK, FR_DECL_AGENT, FR_DECL_ENDPOINT, FR_DECL_MCP, FR_DECL_TOOL };

/* Everything one file's run fills. Heap data hangs off `wf` or the context
 * as soon as it is allocated, so a Lua error raised at any point leaves
 * nothing unreachable. */
typedef struct fr_load_ctx {
    fr_workflow *wf;     /* borrowed: the workflow (or scratch) being built */
    const char *file;    /* borrowed: the file being run */
    int code;            /* FR_EWORKFLOW, or FR_ECONFIG for the endpoints file */
    bool endpoints_only; /* only endpoint and baseline exist */
    bool keep_compiled;  /* fr_load_opts.keep_compiled: the file may be kept compiled */
    fr_error err;        /* the first declaration error; err.code != 0 once set */
    int workflow_line;   /* line of workflow{}, 0 if none */
    int baseline_line;   /* line of baseline, 0 if none */
    struct {
        double timeout_s;
        int retries;
        int max_tokens;
        double temperature;
        int max_turns;
        int max_tool_calls;
    } defaults;         /* from workflow{defaults=}, else the documented ones */
    char **task_agents; /* agent name of each task, resolved after the run */
    size_t ntask_agents;
    bool *task_private_given; /* per task: `private` was written (true or false) */
    fr_pending *pending;
    size_t npending;
    size_t pending_room;                /* entries allocated in pending */
    struct fr_strmap *pending_names[5]; /* per FR_DECL_* kind: name -> index in pending;
                                           the tasks' one resolves deps after the run */
    size_t task_room; /* tasks allocated in wf->tasks, wf->lua->tasks and the two above */
} fr_load_ctx;

/* Initialises `c` for running `file` (borrowed) into `wf` (borrowed; for
 * the workflow file wf->lua must be set). `code` is the error code of
 * declaration errors. */
void fr_load_ctx_init(fr_load_ctx *c, fr_workflow *wf, const char *file, int code,
                      bool endpoints_only);

/* Frees what task `t` owns (not `t` itself): used by fr_workflow_free and
 * by fr_workflow_subset for the tasks it drops. */
void fr_load_task_close(fr_task_spec *t);

/* Releases the context's own memory (not `wf`). */
void fr_load_ctx_close(fr_load_ctx *c);

/* Runs c->file in `L` (borrowed sandbox) with the declaration functions
 * installed, then checks that every declared name got its body. Returns
 * FR_OK, the context's code or FR_ESYNTAX/FR_ELIMIT/FR_ENOENT with `err` at
 * the file and line. */
int fr_load_run(lua_State *L, fr_load_ctx *c, fr_error *err);

/* Returns true when `s` (borrowed) is a valid task/agent/endpoint/variable
 * name: non-empty, only [A-Za-z0-9_.-]. */
bool fr_load_valid_name(const char *s);

/* After the file ran and the tasks' agents are resolved (dsl/tool.c): checks
 * every agent's and task's tool patterns against the declared tools and MCP
 * servers (did-you-mean on a miss), gives each task without its own
 * `tools` its agent's, and refuses a task with tools pinned to an endpoint
 * with tools = false. Returns FR_OK or FR_EWORKFLOW with `err` at the
 * agent's or task's file:line. */
int fr_load_resolve_tools(fr_workflow *wf, fr_error *err);

/* Calls the function behind registry reference `ref` of `L` with a Lua
 * copy of `arg` (borrowed JSON; NULL is an empty table) under the
 * sandbox's limits, leaving `nresults` results (dsl/prompt.c). On failure
 * leaves nothing and returns FR_ELUA/FR_ELIMIT with `err` prefixed by
 * `what` (borrowed); an error without a position gets `file`:`line`. */
int fr_load_call_json(lua_State *L, int ref, const json_t *arg, int nresults, const char *what,
                      const char *file, int line, fr_error *err);

/* Calls task `task`'s function `ref` (defined at `line` of the task's file)
 * with `ctx` (borrowed) for one result of Lua type `type` (LUA_TSTRING,
 * LUA_TBOOLEAN). `role` names the function in messages ("prompt", "when"),
 * `what` the call ("prompt", "condition (when)"), `want` the type ("a
 * string"). On FR_OK the result is on top of wf's Lua stack: the caller
 * reads it and restores the stack's top. Else FR_ELUA/FR_ELIMIT with `err`
 * filled, the stack as it was (dsl/prompt.c). */
int fr_load_call_task(fr_workflow *wf, size_t task, int ref, int line, const json_t *ctx,
                      const char *role, const char *what, int type, const char *want,
                      fr_error *err);

/* Checks task `i`'s fan-out fields once its deps are resolved (the source
 * names a dep's JSON, the name template, the fields a fan-out cannot have,
 * the ones that need foreach) and fills max_items' default. FR_OK or
 * FR_EWORKFLOW with `err` at the task's file:line (dsl/foreach.c). */
int fr_load_check_foreach(fr_workflow *wf, size_t i, fr_error *err);

/* Sets wf->tasks_cap and reserves that room in wf->tasks and
 * wf->lua->tasks: the tasks plus every fan-out's max_items (dsl/foreach.c). */
void fr_load_reserve_instances(fr_workflow *wf);

/* Frees what the workflow's MCP servers and tools own, and releases the
 * tools' references into wf->lua (dsl/tool.c). Leaves nmcps/ntools at 0. */
void fr_load_free_tools(fr_workflow *wf);
