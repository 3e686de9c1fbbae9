#pragma once
/* MCP's stdio transport for engine/mcp: the server a child under
 * engine/proc, newline-delimited JSON-RPC on its stdin and stdout, its
 * stderr its log (the last lines are kept for error messages). */

#include "dsl/workflow.h"
#include "engine/mcp/jsonrpc.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <uv.h>

typedef struct fr_mcp_stdio fr_mcp_stdio;

/* Called once when the server has exited: `why` (borrowed) says how, with
 * its last line of stderr ("(exit code 1): Error: no such directory"). */
typedef void (*fr_mcp_exit_fn)(void *ud, const char *why);

/* Starts the server of `spec` (borrowed; its command, env and cwd, a
 * relative cwd taken against `wf_dir`, borrowed) on `loop`. On FR_OK *out
 * is owned (fr_mcp_stdio_free). FR_ENOENT when the command is not found,
 * FR_EIO when it cannot start; err says which. */
int fr_mcp_stdio_start(uv_loop_t *loop, const fr_mcp_spec *spec, const char *wf_dir,
                       fr_mcp_msg_fn on_msg, fr_mcp_exit_fn on_exit, void *ud, fr_mcp_stdio **out,
                       fr_error *err);

/* Writes `msg` (borrowed) as one line. FR_EIO once its stdin is closed. */
int fr_mcp_stdio_send(fr_mcp_stdio *s, const json_t *msg);

/* The last non-empty line the server wrote to stderr (borrowed), "" if none. */
const char *fr_mcp_stdio_last_err(const fr_mcp_stdio *s);

/* Closes the server's stdin, ends its process group and frees the
 * transport; no callback comes after this. NULL is fine. */
void fr_mcp_stdio_free(fr_mcp_stdio *s);
