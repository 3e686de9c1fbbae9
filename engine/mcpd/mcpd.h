#pragma once
/* flowrun as an MCP server, the protocol core without a transport: JSON-RPC
 * requests in, responses and notifications out, for both revisions a
 * client may speak (2026-07-28, stateless: server/discover and `_meta` on
 * every request; 2025-11-25: initialize, notifications/initialized). It
 * lists the tools run_task, run_workflow, plan_workflow, spend and approve
 * with their input schemas, and runs each call as a child `flowrun`
 * process (under the guard, in its own process group) on the loop, so a
 * run never blocks the server and a crash of one never takes it down.
 * Progress notifications follow the child's task events when the request
 * carries a progressToken; notifications/cancelled (or a dropped stream)
 * stops the child. Errors of a tool are results with isError; a malformed
 * message gets a JSON-RPC error, never an exit. Transports: stdio
 * (engine/mcpd/stdio_serve.h) and Streamable HTTP
 * (engine/mcpd/http_serve.h). Used by engine/main.c (`flowrun mcp`). */

#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_mcpd fr_mcpd;
typedef struct fr_mcpd_peer fr_mcpd_peer;

typedef struct fr_mcpd_opts {
    const char *exe;                /* the flowrun binary the children run (absolute path) */
    const char *const *child_args;  /* options every child gets after its command's own:
                                       "--endpoints", "F", "--policy", "P", "--state", "DIR",
                                       "--sim", ... (borrowed, copied) */
    size_t nchild_args;
    const char *work_dir;           /* where generated one-task workflows and the outputs too
                                       large to return inline are kept (created if missing) */
    size_t inline_max;              /* bytes: a longer output comes back as a file path;
                                       0 = the default, 8192 */
} fr_mcpd_opts;

/* Sends `msg` (borrowed for the call) to a peer's client. `tag` is the tag
 * the transport gave with the client message that caused it (the request a
 * response answers or whose progress a notification reports), NULL for a
 * message tied to none. `last` is true for the final response to a
 * request: no more messages come with that tag. */
typedef void (*fr_mcpd_send_fn)(void *ud, void *tag, const json_t *msg, bool last);

/* Creates the server core on `loop` (borrowed, outlives it) with `opts`
 * (borrowed, copied). On FR_OK *out is owned (fr_mcpd_shutdown, then
 * fr_mcpd_free). FR_EIO with `err` filled when work_dir cannot be made. */
int fr_mcpd_new(uv_loop_t *loop, const fr_mcpd_opts *opts, fr_mcpd **out, fr_error *err);

/* Stops the server: every call in flight is cancelled (its child gets
 * SIGTERM, SIGKILL if it has not ended 5 s later) and `done(ud)` is called
 * on the loop once every child has ended and every handle is closed. Peers
 * are freed before (fr_mcpd_peer_free). */
void fr_mcpd_shutdown(fr_mcpd *d, void (*done)(void *ud), void *ud);

/* Frees a server after its shutdown completed; NULL is fine. */
void fr_mcpd_free(fr_mcpd *d);

/* A client's conversation: stdio has one for the process; Streamable HTTP
 * one per session (2025-11-25) or per request (2026-07-28). `send` and
 * `ud` are borrowed and must stay valid until fr_mcpd_peer_free. Owned. */
fr_mcpd_peer *fr_mcpd_peer_new(fr_mcpd *d, fr_mcpd_send_fn send, void *ud);

/* Feeds one message from the client as text (`n` bytes of `text`,
 * borrowed): a JSON-RPC request, notification, response or batch.
 * Malformed JSON gets a -32700 error response, an invalid request -32600,
 * an unknown method -32601; nothing ends the peer. What it causes goes out
 * through `send` with `tag`, possibly before this returns. */
void fr_mcpd_peer_input(fr_mcpd_peer *p, const char *text, size_t n, void *tag);

/* Tells the core the transport can no longer deliver messages with `tag`
 * (the client closed that stream): requests with that tag are cancelled
 * and nothing more is sent with it. */
void fr_mcpd_peer_drop(fr_mcpd_peer *p, void *tag);

/* The revision the peer speaks, "2026-07-28" or "2025-11-25", or NULL
 * before its first request said (borrowed, static). */
const char *fr_mcpd_peer_revision(const fr_mcpd_peer *p);

/* Frees a peer, cancelling its calls in flight; NULL is fine. */
void fr_mcpd_peer_free(fr_mcpd_peer *p);
