#pragma once
/* The Streamable HTTP transport of flowrun's MCP server (`flowrun mcp
 * --http ADDR:PORT`): one uv_tcp listener; POST of a JSON-RPC message,
 * answered with application/json or a text/event-stream carrying its
 * progress notifications and response; GET (2025-11-25 sessions), DELETE
 * of a session; Mcp-Session-Id for 2025-11-25 sessions; the 2026-07-28
 * headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name) checked against the
 * body. Bound to a non-loopback address it requires
 * `Authorization: Bearer <token>` with the token read from an environment
 * variable, and refuses a request without it (401); Origin headers that
 * are not loopback are refused (403). Feeds messages to engine/mcpd/mcpd.h.
 * Used by engine/main.c. */

#include "engine/mcpd/mcpd.h"
#include "engine/util/err.h"

#include <uv.h>

typedef struct fr_mcpd_http fr_mcpd_http;

typedef struct fr_mcpd_http_opts {
    const char *addr;  /* IPv4 or IPv6 literal to bind; "127.0.0.1" for loopback */
    int port;          /* 0: any free port (fr_mcpd_http_port tells which) */
    const char *token; /* the bearer token every request must carry, or NULL for none (only
                          allowed on a loopback address); borrowed, copied; never logged */
} fr_mcpd_http_opts;

/* Starts listening on `loop` (borrowed) for server `d` (borrowed, outlives
 * it) with `opts` (borrowed, copied). FR_EUSAGE when addr is not loopback
 * and there is no token; FR_EIO when the address cannot be bound; `err`
 * says which and what to do. On FR_OK *out is owned (fr_mcpd_http_close). */
int fr_mcpd_http_start(uv_loop_t *loop, fr_mcpd *d, const fr_mcpd_http_opts *opts,
                       fr_mcpd_http **out, fr_error *err);

/* The port it listens on. */
int fr_mcpd_http_port(const fr_mcpd_http *h);

/* Stops listening, closes every connection (dropping their tags and freeing
 * their peers) and calls `done(ud)` once every handle is closed; then frees
 * itself. */
void fr_mcpd_http_close(fr_mcpd_http *h, void (*done)(void *ud), void *ud);
