/* The MCP server core: peers, the JSON-RPC dispatch and the two revisions
 * (engine/mcpd/mcpd.h). The tools and their children are in calls.c. */
#include "engine/mcpd/mcpd.h"

#include "engine/mcp/jsonrpc.h"
#include "engine/mcpd/mcpd_int.h"
#include "engine/util/fs.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <stdlib.h>
#include <string.h>

#ifndef FLOWRUN_VERSION
#define FLOWRUN_VERSION "0"
#endif

#define META_VERSION "io.modelcontextprotocol/protocolVersion"

static const char instructions[] =
    "flowrun runs LLM work on the user's own endpoints, local first and the cloud where it "
    "pays, within budget caps. run_task sends one prompt routed by the user's policy; "
    "run_workflow runs a workflow file (or some of its tasks) and returns each task's status, "
    "endpoint and cost with the final outputs (long ones as file paths); plan_workflow shows "
    "what a run would do and cost without sending anything; spend reads the cost ledger; "
    "approve answers a workflow's approval checkpoint.";

int fr_mcpd_new(uv_loop_t *loop, const fr_mcpd_opts *opts, fr_mcpd **out, fr_error *err)
{
    *out = NULL;
    int rc = fr_mkdir_p(opts->work_dir, 0700, err);
    if (rc != FR_OK)
        return FR_EIO;
    fr_mcpd *d = fr_xcalloc(1, sizeof *d);
    d->loop = loop;
    d->exe = fr_xstrdup(opts->exe);
    d->work_dir = fr_xstrdup(opts->work_dir);
    d->inline_max = opts->inline_max ? opts->inline_max : 8192;
    d->nchild_args = opts->nchild_args;
    d->child_args = fr_xcalloc(opts->nchild_args + 1, sizeof *d->child_args);
    for (size_t i = 0; i < opts->nchild_args; i++)
        d->child_args[i] = fr_xstrdup(opts->child_args[i]);
    *out = d;
    return FR_OK;
}

void fr_mcpd_calls_idle(fr_mcpd *d)
{
    if (d->shutting_down && !d->calls && d->done) {
        void (*done)(void *) = d->done;
        d->done = NULL;
        done(d->done_ud);
    }
}

void fr_mcpd_shutdown(fr_mcpd *d, void (*done)(void *ud), void *ud)
{
    d->shutting_down = true;
    d->done = done;
    d->done_ud = ud;
    while (d->peers)
        fr_mcpd_peer_free(d->peers);
    for (fr_mcpd_call *c = d->calls; c; c = c->next)
        fr_mcpd_call_cancel(c);
    fr_mcpd_calls_idle(d);
}

void fr_mcpd_free(fr_mcpd *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nchild_args; i++)
        free(d->child_args[i]);
    free(d->child_args);
    free(d->exe);
    free(d->work_dir);
    free(d);
}

fr_mcpd_peer *fr_mcpd_peer_new(fr_mcpd *d, fr_mcpd_send_fn send, void *ud)
{
    fr_mcpd_peer *p = fr_xcalloc(1, sizeof *p);
    p->d = d;
    p->send = send;
    p->ud = ud;
    p->next = d->peers;
    d->peers = p;
    return p;
}

void fr_mcpd_peer_free(fr_mcpd_peer *p)
{
    if (!p)
        return;
    for (fr_mcpd_peer **pp = &p->d->peers; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    for (fr_mcpd_call *c = p->d->calls; c; c = c->next)
        if (c->peer == p) {
            c->peer = NULL;
            fr_mcpd_call_cancel(c);
        }
    free(p);
}

const char *fr_mcpd_peer_revision(const fr_mcpd_peer *p)
{
    return p->rev;
}

void fr_mcpd_send(fr_mcpd_peer *p, void *tag, const char *rev, json_t *msg, bool last)
{
    json_t *res = json_object_get(msg, "result");
    if (rev && strcmp(rev, FR_MCP_REV_2026) == 0 && json_is_object(res))
        json_object_set_new(res, "resultType", json_string("complete"));
    p->send(p->ud, tag, msg, last);
    json_decref(msg);
}

static void send_error(fr_mcpd_peer *p, void *tag, const json_t *id, int code, const char *message)
{
    json_t *null = json_null();
    fr_mcpd_send(p, tag, NULL, fr_mcp_error_response(id ? id : null, code, message), true);
    json_decref(null);
}

static json_t *server_info(void)
{
    return json_pack("{s:s, s:s, s:s}", "name", "flowrun", "title", "flowrun", "version",
                     FLOWRUN_VERSION);
}

static json_t *capabilities(void)
{
    return json_pack("{s:{s:b}}", "tools", "listChanged", 0);
}

/* 2025-11-25's initialize: flowrun speaks that legacy revision only, so
 * it answers with it whatever the client asked (the client decides). */
static json_t *initialize_result(void)
{
    return json_pack("{s:s, s:o, s:o, s:s}", "protocolVersion", FR_MCP_REV_2025, "capabilities",
                     capabilities(), "serverInfo", server_info(), "instructions", instructions);
}

/* 2026-07-28 lets a client cache what does not change while the server
 * runs: its discovery and its tool list, the same for every user. */
#define CACHE_TTL_MS 600000

static json_t *cacheable(json_t *result)
{
    json_object_set_new(result, "cacheScope", json_string("public"));
    json_object_set_new(result, "ttlMs", json_integer(CACHE_TTL_MS));
    return result;
}

static json_t *discover_result(void)
{
    return cacheable(json_pack("{s:[s], s:o, s:o, s:s}", "supportedVersions", FR_MCP_REV_2026,
                               "capabilities", capabilities(), "serverInfo", server_info(),
                               "instructions", instructions));
}

/* A notification from the client: initialized, cancelled; others are
 * ignored as the spec asks. */
static void on_notification(fr_mcpd_peer *p, const json_t *msg)
{
    const char *method = json_string_value(json_object_get(msg, "method"));
    const json_t *params = json_object_get(msg, "params");
    if (strcmp(method, "notifications/initialized") == 0) {
        p->initialized = true;
    } else if (strcmp(method, "notifications/cancelled") == 0) {
        const json_t *rid = json_object_get(params, "requestId");
        for (fr_mcpd_call *c = p->d->calls; c; c = c->next)
            if (c->peer == p && rid && json_equal(c->id, rid))
                fr_mcpd_call_cancel(c);
    }
}

/* The revision a request speaks: 2026-07-28 when its _meta says so,
 * 2025-11-25 after initialize. NULL with *bad set to the version named in
 * _meta when it is one flowrun does not speak. */
static const char *request_revision(const fr_mcpd_peer *p, const json_t *params, const char **bad)
{
    *bad = NULL;
    const json_t *v = json_object_get(json_object_get(params, "_meta"), META_VERSION);
    if (v) {
        const char *s = json_string_value(v);
        if (s && strcmp(s, FR_MCP_REV_2026) == 0)
            return FR_MCP_REV_2026;
        *bad = s ? s : "(not a string)";
        return NULL;
    }
    return p->initialized || p->rev ? FR_MCP_REV_2025 : NULL;
}

static void on_request(fr_mcpd_peer *p, void *tag, const json_t *msg)
{
    const json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    const json_t *params = json_object_get(msg, "params");
    if (params && !json_is_object(params)) {
        send_error(p, tag, id, -32602, "params must be an object");
        return;
    }
    const char *bad;
    const char *rev = request_revision(p, params, &bad);
    bool stateless = rev && strcmp(rev, FR_MCP_REV_2026) == 0;
    if (stateless && (strcmp(method, "initialize") == 0 || strcmp(method, "ping") == 0)) {
        /* 2026-07-28 has neither: no handshake, no session to keep alive. */
        char text[300];
        snprintf(text, sizeof text,
                 "Method not found: '%s' is not part of %s (use server/discover)", method,
                 FR_MCP_REV_2026);
        send_error(p, tag, id, -32601, text);
        return;
    }
    if (strcmp(method, "initialize") == 0) {
        p->rev = FR_MCP_REV_2025;
        p->initialized = true;
        fr_mcpd_send(p, tag, FR_MCP_REV_2025, fr_mcp_result_response(id, initialize_result()),
                     true);
        return;
    }
    if (bad) {
        json_t *e = fr_mcp_error_response(id, FR_MCP_ERR_VERSION, "Unsupported protocol version");
        json_object_set_new(
            json_object_get(e, "error"), "data",
            json_pack("{s:[s], s:s}", "supported", FR_MCP_REV_2026, "requested", bad));
        fr_mcpd_send(p, tag, NULL, e, true);
        return;
    }
    if (rev && strcmp(rev, FR_MCP_REV_2026) == 0)
        p->rev = rev;
    if (strcmp(method, "server/discover") == 0) {
        fr_mcpd_send(p, tag, FR_MCP_REV_2026, fr_mcp_result_response(id, discover_result()), true);
    } else if (strcmp(method, "ping") == 0) {
        fr_mcpd_send(p, tag, rev, fr_mcp_result_response(id, json_object()), true);
    } else if (strcmp(method, "tools/list") != 0 && strcmp(method, "tools/call") != 0) {
        char text[300];
        snprintf(text, sizeof text, "Method not found: '%.200s'", method);
        send_error(p, tag, id, -32601, text);
    } else if (!rev) {
        send_error(p, tag, id, -32600,
                   "no protocol version: send initialize first (2025-11-25), or name the "
                   "version in params._meta[\"" META_VERSION "\"] (2026-07-28)");
    } else if (strcmp(method, "tools/list") == 0) {
        json_t *list = fr_mcpd_tools_list();
        fr_mcpd_send(p, tag, rev, fr_mcp_result_response(id, stateless ? cacheable(list) : list),
                     true);
    } else {
        fr_mcpd_tool_call(p, tag, id, params);
    }
}

void fr_mcpd_peer_input(fr_mcpd_peer *p, const char *text, size_t n, void *tag)
{
    json_error_t je;
    json_t *msg = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    char why[400];
    if (!msg) {
        /* jansson's text quotes the bytes near the error, which may not be
         * UTF-8: a JSON string cannot carry those, so it ends before them. */
        snprintf(why, sizeof why, "Parse error: %s", je.text); /* je.text: under 160 bytes */
        size_t len = strlen(why), bad = 0;
        if (!fr_utf8_valid(why, len, &bad)) {
            why[bad] = '\0';
            strcat(why, "... (bytes that are not UTF-8)");
            len = strlen(why);
        }
        snprintf(why + len, sizeof why - len, " at byte %d", je.position);
        send_error(p, tag, NULL, -32700, why);
        return;
    }
    const json_t *id = json_object_get(msg, "id");
    bool id_ok = !id || json_is_string(id) || json_is_integer(id);
    fr_mcp_msg_kind kind = fr_mcp_msg_classify(msg);
    if (json_is_array(msg)) {
        send_error(p, tag, NULL, -32600,
                   "Invalid Request: JSON-RPC batches are not part of MCP; send one message a "
                   "line");
    } else if (kind == FR_MCP_MSG_INVALID || !id_ok ||
               !json_is_string(json_object_get(msg, "jsonrpc")) ||
               strcmp(json_string_value(json_object_get(msg, "jsonrpc")), "2.0") != 0) {
        send_error(p, tag, id_ok ? id : NULL, -32600,
                   "Invalid Request: a JSON-RPC 2.0 message needs \"jsonrpc\": \"2.0\", a "
                   "\"method\" and a string or integer \"id\"");
    } else if (kind == FR_MCP_MSG_NOTIFICATION) {
        on_notification(p, msg);
    } else if (kind == FR_MCP_MSG_REQUEST) {
        on_request(p, tag, msg);
    } /* a response: flowrun sends the client no requests; ignored */
    json_decref(msg);
}

void fr_mcpd_peer_drop(fr_mcpd_peer *p, void *tag)
{
    for (fr_mcpd_call *c = p->d->calls; c; c = c->next)
        if (c->peer == p && c->tag == tag) {
            c->peer = NULL;
            fr_mcpd_call_cancel(c);
        }
}
