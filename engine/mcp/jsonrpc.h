#pragma once
/* JSON-RPC 2.0 and MCP message shapes for engine/mcp: the requests the
 * client sends (with the 2026-07-28 `_meta` when asked), the kinds of
 * messages a server sends back, and a tools/call result turned into the
 * text a model reads. Pure functions over jansson; no I/O. Used by the
 * client (mcp.c), both its transports and the MCP server (engine/mcpd). */

#include <jansson.h>
#include <stdbool.h>

#define FR_MCP_REV_2026 "2026-07-28"
#define FR_MCP_REV_2025 "2025-11-25"

/* Codes the transports use for failures that never reached the server's
 * JSON-RPC layer, in the implementation-defined range. */
#define FR_MCP_ERR_HTTP      (-32090) /* an HTTP error status; data.http_status */
#define FR_MCP_ERR_TRANSPORT (-32091) /* no reply at all (connect, reset, bad body) */
/* 2026-07-28's UnsupportedProtocolVersion: data.supported lists the server's. */
#define FR_MCP_ERR_VERSION (-32022)

/* Called with each message a server sent, `msg` borrowed for the call. */
typedef void (*fr_mcp_msg_fn)(void *ud, json_t *msg);

typedef enum fr_mcp_msg_kind {
    FR_MCP_MSG_RESPONSE,     /* "id" and "result" or "error" */
    FR_MCP_MSG_REQUEST,      /* "id" and "method": the server asks the client */
    FR_MCP_MSG_NOTIFICATION, /* "method" without "id" */
    FR_MCP_MSG_INVALID,
} fr_mcp_msg_kind;

/* Returns a new request (owned) {"jsonrpc","id","method","params"}: `params`
 * is taken (NULL: an empty object); with `rev` FR_MCP_REV_2026 its `_meta`
 * carries the protocol version, client capabilities and client info. */
json_t *fr_mcp_request(long long id, const char *method, json_t *params, const char *rev);

/* Returns a new notification (owned); `params` taken, may be NULL. */
json_t *fr_mcp_notification(const char *method, json_t *params);

/* Returns a new error response (owned) to the server's request id `id`
 * (borrowed, copied). */
json_t *fr_mcp_error_response(const json_t *id, int code, const char *message);

/* Returns a new result response (owned) to `id` (borrowed); `result` taken. */
json_t *fr_mcp_result_response(const json_t *id, json_t *result);

/* Classifies `msg` (borrowed). */
fr_mcp_msg_kind fr_mcp_msg_classify(const json_t *msg);

/* Returns the response's integer id, or -1 if it has none a client sent. */
long long fr_mcp_msg_id(const json_t *msg);

/* Returns a new string (owned): a tools/call `result` (borrowed) as the text
 * a model reads: text blocks joined with newlines, images, audio and
 * resources summarised ("[image: image/png, 68 bytes]"), structuredContent
 * when there is no text. *is_error tells isError. */
char *fr_mcp_content_text(const json_t *result, bool *is_error);
