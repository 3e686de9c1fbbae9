#pragma once
/* The tools of one run: the MCP servers its tasks use (started once,
 * shared, stopped at the end), the Lua and command tools, and for each task
 * the exact set it may call, resolved from its patterns ("fs.*") once the
 * servers have listed theirs, with legal wire names (mapped back to the
 * tool on the way in). A call is checked (offered to this task? arguments
 * valid against its schema?) before anything runs; a refused call is an
 * error result the model reads. Owned by engine/run; the attempt's tool
 * loop calls fr_toolset_call. */

#include "dsl/workflow.h"
#include "engine/http.h"
#include "engine/toolres.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_toolset fr_toolset;
typedef struct fr_toolcall fr_toolcall;

/* Called once when start ends: FR_OK, or the first error (a server that
 * would not start, a pattern that names no tool: FR_EWORKFLOW with the
 * task's file:line and a did-you-mean) in `err` (borrowed). */
typedef void (*fr_toolset_ready_fn)(void *ud, int rc, const fr_error *err);

/* What the report keeps of one call. */
typedef struct fr_toolcall_info {
    const char *name;   /* display name, "fs.read_file" (borrowed) */
    const char *source; /* "mcp", "lua" or "command"; "none" for a name not offered (static) */
    const char *server; /* the MCP server's name, or NULL (borrowed) */
    double ms;          /* from the call to its result */
    size_t arg_bytes;   /* the arguments' JSON */
    size_t result_bytes;
} fr_toolcall_info;

/* Called once per call with its result (`r`, borrowed; the receiver may
 * take its strings) and `info` (borrowed for the call). */
typedef void (*fr_toolcall_done_fn)(void *ud, fr_tool_result *r, const fr_toolcall_info *info);

/* True when some task of `wf` names tools: the run starts them first. */
bool fr_toolset_needed(const fr_workflow *wf);

/* Returns the tools of `wf` (borrowed, must outlive it) on `loop` and
 * `http` (borrowed). Starts nothing. Never NULL. */
fr_toolset *fr_toolset_new(uv_loop_t *loop, fr_http *http, fr_workflow *wf);

/* Starts the MCP servers some task names (all of them with `all`), lists
 * their tools and resolves every task's set; `ready` comes once (never from
 * inside this call). A workflow without tools is ready at once. */
void fr_toolset_start(fr_toolset *ts, bool all, fr_toolset_ready_fn ready, void *ud);

/* The tools task `task` may call, as fr_call.tools wants them (borrowed;
 * NULL when it has none), and how many. */
const json_t *fr_toolset_defs(const fr_toolset *ts, size_t task);
size_t fr_toolset_count(const fr_toolset *ts, size_t task);

/* Calls `wire_name` (borrowed) for task `task` with `args` (borrowed JSON,
 * may be NULL or not an object: then an error result). `done` comes once,
 * never from inside this call, also for a refused call. On FR_OK *out
 * (optional) is a borrowed handle valid until done or fr_toolset_cancel. */
int fr_toolset_call(fr_toolset *ts, size_t task, const char *wire_name, const json_t *args,
                    fr_toolcall_done_fn done, void *ud, fr_toolcall **out);

/* Cancels a call in flight; its done is never called. */
void fr_toolset_cancel(fr_toolset *ts, fr_toolcall *c);

/* Every tool of the workflow for `flowrun tools`, after start with `all`:
 * an owned array of {"name", "source", "server", "description",
 * "parameters", "revision" (MCP)}. */
json_t *fr_toolset_describe(const fr_toolset *ts);

/* Stops the servers, cancels calls in flight (no callbacks) and frees the
 * set once every handle is closed: run the loop. NULL is fine. */
void fr_toolset_free(fr_toolset *ts);
