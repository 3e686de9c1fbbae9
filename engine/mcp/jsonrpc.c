#include "engine/mcp/jsonrpc.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <string.h>

#ifndef FLOWRUN_VERSION
#define FLOWRUN_VERSION "0"
#endif

/* The `_meta` every 2026-07-28 request carries: flowrun declares no client
 * capabilities (no sampling, roots or elicitation). */
static json_t *meta_2026(void)
{
    return json_pack("{s:s, s:{}, s:{s:s, s:s}}", "io.modelcontextprotocol/protocolVersion",
                     FR_MCP_REV_2026, "io.modelcontextprotocol/clientCapabilities",
                     "io.modelcontextprotocol/clientInfo", "name", "flowrun", "version",
                     FLOWRUN_VERSION);
}

json_t *fr_mcp_request(long long id, const char *method, json_t *params, const char *rev)
{
    if (!params)
        params = json_object();
    if (rev && strcmp(rev, FR_MCP_REV_2026) == 0) {
        json_t *meta = json_object_get(params, "_meta"); /* the caller's keys stay */
        json_t *ours = meta_2026();
        if (json_is_object(meta))
            json_object_update(meta, ours);
        else
            json_object_set(params, "_meta", ours);
        json_decref(ours);
    }
    return json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)id, "method",
                     method, "params", params);
}

json_t *fr_mcp_notification(const char *method, json_t *params)
{
    json_t *n = json_pack("{s:s, s:s}", "jsonrpc", "2.0", "method", method);
    if (params)
        json_object_set_new(n, "params", params);
    return n;
}

json_t *fr_mcp_error_response(const json_t *id, int code, const char *message)
{
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", code,
                     "message", message);
}

json_t *fr_mcp_result_response(const json_t *id, json_t *result)
{
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

fr_mcp_msg_kind fr_mcp_msg_classify(const json_t *msg)
{
    if (!json_is_object(msg))
        return FR_MCP_MSG_INVALID;
    json_t *id = json_object_get(msg, "id");
    bool has_method = json_is_string(json_object_get(msg, "method"));
    if (has_method)
        return id && !json_is_null(id) ? FR_MCP_MSG_REQUEST : FR_MCP_MSG_NOTIFICATION;
    if (json_object_get(msg, "result") || json_object_get(msg, "error"))
        return FR_MCP_MSG_RESPONSE;
    return FR_MCP_MSG_INVALID;
}

long long fr_mcp_msg_id(const json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    return json_is_integer(id) ? (long long)json_integer_value(id) : -1;
}

/* The decoded size of base64 `s`. */
static size_t b64_bytes(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    while (n > 0 && (s[n - 1] == '=' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    return n * 3 / 4;
}

static void add_line(fr_buf *b, const char *s)
{
    if (b->len > 0)
        fr_buf_puts(b, "\n");
    fr_buf_puts(b, s);
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

/* One non-text content block, summarised so the model knows it was there. */
static void add_block(fr_buf *b, const json_t *blk, bool *had_text)
{
    const char *type = str_or(blk, "type", "");
    char line[512];
    if (strcmp(type, "text") == 0) {
        add_line(b, str_or(blk, "text", ""));
        *had_text = true;
    } else if (strcmp(type, "image") == 0 || strcmp(type, "audio") == 0) {
        snprintf(line, sizeof line, "[%s: %s, %zu bytes]", type,
                 str_or(blk, "mimeType", "unknown type"), b64_bytes(str_or(blk, "data", "")));
        add_line(b, line);
    } else if (strcmp(type, "resource") == 0) {
        const json_t *res = json_object_get(blk, "resource");
        const char *text = json_string_value(json_object_get(res, "text"));
        snprintf(line, sizeof line, "[resource: %s, %s, %zu bytes]", str_or(res, "uri", "?"),
                 str_or(res, "mimeType", "unknown type"),
                 text ? strlen(text) : b64_bytes(str_or(res, "blob", "")));
        add_line(b, line);
        if (text) {
            add_line(b, text);
            *had_text = true;
        }
    } else if (strcmp(type, "resource_link") == 0) {
        snprintf(line, sizeof line, "[resource link: %s%s%s]", str_or(blk, "uri", "?"),
                 json_object_get(blk, "name") ? ", " : "", str_or(blk, "name", ""));
        add_line(b, line);
    } else {
        snprintf(line, sizeof line, "[%s content]", type[0] ? type : "unknown");
        add_line(b, line);
    }
}

char *fr_mcp_content_text(const json_t *result, bool *is_error)
{
    fr_buf b;
    fr_buf_init(&b, 0);
    bool had_text = false;
    *is_error = json_is_true(json_object_get(result, "isError"));
    const json_t *content = json_object_get(result, "content");
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk) add_block(&b, blk, &had_text);
    const json_t *sc = json_object_get(result, "structuredContent");
    if (!had_text && sc) {
        char *s = json_dumps(sc, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s)
            add_line(&b, s);
        free(s);
    }
    return fr_buf_take(&b);
}
