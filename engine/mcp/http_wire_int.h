#pragma once
/* MCP's Streamable HTTP transport for engine/mcp: each message a POST on
 * engine/http, the reply read as application/json or text/event-stream,
 * the session id (2025-11-25) kept and sent back, and the MCP-Protocol-
 * Version, Mcp-Method and Mcp-Name headers set, an event stream that ends
 * before its response resumed with a GET (Last-Event-ID, after the
 * server's retry wait; 2025-11-25). Messages are delivered from the loop,
 * never from inside curl, also while a stream is still open. Failures that never reach
 * the server's JSON-RPC layer come back as error responses to the request
 * (FR_MCP_ERR_HTTP, FR_MCP_ERR_TRANSPORT), so the client sees one shape. */

#include "engine/http.h"
#include "engine/mcp/jsonrpc.h"

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_mcp_http fr_mcp_http;
typedef struct fr_mcp_post fr_mcp_post;

/* Returns a transport (owned; fr_mcp_http_free) posting to `url` (borrowed,
 * copied) on `loop` and `http` (borrowed, must outlive it) with `headers` ("Name:
 * value" lines, taken with the array; their values are wiped on free and
 * never logged). Every message a server sends goes to `on_msg`. */
fr_mcp_http *fr_mcp_http_new(uv_loop_t *loop, fr_http *http, const char *url, char **headers,
                             size_t nheaders, fr_mcp_msg_fn on_msg, void *ud);

/* Sets the MCP-Protocol-Version header sent from now on (borrowed,
 * copied; NULL: none). */
void fr_mcp_http_set_version(fr_mcp_http *w, const char *version);

/* Posts `msg` (borrowed). `name` (borrowed, may be NULL) is the Mcp-Name
 * header (the tool of a tools/call); `extra` (borrowed, `nextra` lines)
 * are more header lines (Mcp-Param-*). For a request, *out (optional) gets a
 * borrowed handle valid until its response was delivered or it is
 * cancelled. Returns FR_OK or the code fr_http_submit gave. */
int fr_mcp_http_send(fr_mcp_http *w, const json_t *msg, const char *name, char **extra,
                     size_t nextra, fr_mcp_post **out);

/* Abandons a post: its transfer is aborted and nothing of it is delivered.
 * NULL is fine; so is a post whose reply is being delivered. */
void fr_mcp_http_cancel(fr_mcp_http *w, fr_mcp_post *p);

/* Aborts every post, ends the session if the server opened one (a DELETE
 * sent, not waited for) and frees the transport once its timer is closed:
 * run the loop. NULL is fine. */
void fr_mcp_http_free(fr_mcp_http *w);
