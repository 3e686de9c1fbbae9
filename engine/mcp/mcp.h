#pragma once
/* An MCP client for one server of a run: started once (a child over stdio
 * under engine/proc, or Streamable HTTP over engine/http), the protocol
 * revision chosen by what the server answers (2026-07-28: server/discover
 * and `_meta` on every request; else 2025-11-25: the initialize
 * handshake), its tools listed (every page), then tools/call on the loop,
 * many at once, each with a timeout. A server that dies is restarted once
 * per run; after that its calls fail with a reason. Tool errors (isError)
 * are tool results the model reads; protocol errors fail the call with a
 * readable reason. Used by engine/toolset and `flowrun tools`. */

#include "dsl/workflow.h"
#include "engine/http.h"
#include "engine/toolres.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <uv.h>

typedef struct fr_mcp fr_mcp;
typedef struct fr_mcp_call fr_mcp_call;

/* Called once when start ends: rc FR_OK with the tools listed, or an error
 * (FR_EMCP, FR_ETIMEDOUT, FR_ENOENT for a command not found, FR_ECONNECT)
 * with `err` (borrowed) naming the server and what to do. */
typedef void (*fr_mcp_ready_fn)(void *ud, int rc, const fr_error *err);

/* Returns a client (owned; fr_mcp_stop) for server `spec` (borrowed, must
 * outlive it) of a workflow in directory `wf_dir` (borrowed, copied), on
 * `loop` and `http` (borrowed, must outlive it). Starts nothing. */
fr_mcp *fr_mcp_new(uv_loop_t *loop, fr_http *http, const fr_mcp_spec *spec, const char *wf_dir);

/* Starts the server, chooses the revision and lists its tools, within the
 * spec's start timeout; `ready` is called once (never from inside start). */
void fr_mcp_start(fr_mcp *m, fr_mcp_ready_fn ready, void *ud);

/* The server's tools once ready: a borrowed array of {"name", "description",
 * "inputSchema"} as the server listed them (every page; a tool whose
 * x-mcp-header marks are invalid is left out, as 2026-07-28 asks). */
const json_t *fr_mcp_tools(const fr_mcp *m);

/* The revision spoken once ready: "2026-07-28" or "2025-11-25" (static). */
const char *fr_mcp_revision(const fr_mcp *m);

/* Calls tool `tool` (borrowed: its name on the server) with `args`
 * (borrowed JSON object). `done` comes once (never from inside this call)
 * with the result: the text content joined (other content summarised),
 * is_error for isError, for a protocol error, a timeout after `timeout_s`
 * or a dead server. On FR_OK *out (optional) is a borrowed handle valid
 * until done or fr_mcp_cancel. */
int fr_mcp_call_tool(fr_mcp *m, const char *tool, const json_t *args, double timeout_s,
                     fr_tool_done_fn done, void *ud, fr_mcp_call **out);

/* Cancels a call in flight (notifications/cancelled to the server); its
 * done is never called. */
void fr_mcp_cancel(fr_mcp *m, fr_mcp_call *c);

/* Stops the server (stdin closed, then its process group ended; over HTTP
 * the session is deleted when there is one), cancels calls in flight
 * without their callbacks, and frees the client once every handle is
 * closed: run the loop. NULL is fine. */
void fr_mcp_stop(fr_mcp *m);
