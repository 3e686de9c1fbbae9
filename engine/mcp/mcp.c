#include "engine/mcp/mcp.h"

#include "engine/mcp/http_wire_int.h"
#include "engine/mcp/jsonrpc.h"
#include "engine/mcp/stdio_wire_int.h"
#include "engine/mcp/xheader_int.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAGES 100

typedef enum { ST_IDLE, ST_STARTING, ST_READY, ST_DEAD, ST_STOPPED } mcp_state;
typedef enum { PH_DISCOVER, PH_INIT, PH_LIST } mcp_phase;

struct fr_mcp_call {
    fr_mcp *m;
    fr_mcp_call *prev, *next;
    long long id;
    char *tool;
    json_t *args;
    double timeout_s;
    fr_tool_done_fn done;
    void *ud;
    uv_timer_t timer; /* the timeout, or 0 ms to deliver `result` outside the caller */
    fr_mcp_post *post;
    json_t *retry; /* inputResponses and requestState for the next round, or NULL */
    int rounds;    /* input_required answers so far */
    bool sent;
    bool deferred;
    fr_tool_result result;
};

struct fr_mcp {
    uv_loop_t *loop;
    fr_http *http;
    const fr_mcp_spec *spec;
    char *wf_dir;
    fr_mcp_ready_fn ready;
    void *ready_ud;

    mcp_state state;
    mcp_phase phase;
    bool started_once; /* ready was called */
    bool restarting;
    int restarts;
    const char *rev;
    long long next_id;
    long long start_id; /* the request of the start sequence awaiting its answer */
    json_t *tools;
    json_t *cursors; /* the cursors seen, as keys */
    int pages;
    bool discover_retried;
    char *dead_reason;

    fr_mcp_stdio *stdio;
    fr_mcp_http *wire;
    fr_mcp_call *calls; /* in flight or waiting for a restart */

    uv_timer_t start_timer;
    uv_timer_t defer_timer; /* a start failure found before any I/O, or the wait for
                               server/discover */
    int rc_pending;
    fr_error err_pending;
    int open_handles;
};

static void start_sequence(fr_mcp *m);

/* Frees the client once its last handle closed. */
static void release(fr_mcp *m)
{
    if (--m->open_handles > 0 || m->state != ST_STOPPED)
        return;
    json_decref(m->tools);
    json_decref(m->cursors);
    free(m->dead_reason);
    free(m->wf_dir);
    free(m);
}
static void send_call(fr_mcp *m, fr_mcp_call *c);

fr_mcp *fr_mcp_new(uv_loop_t *loop, fr_http *http, const fr_mcp_spec *spec, const char *wf_dir)
{
    fr_mcp *m = fr_xcalloc(1, sizeof *m);
    m->loop = loop;
    m->http = http;
    m->spec = spec;
    m->wf_dir = wf_dir ? fr_xstrdup(wf_dir) : NULL;
    m->tools = json_array();
    m->cursors = json_object();
    m->next_id = 1;
    m->start_id = -1;
    m->rev = FR_MCP_REV_2026;
    uv_timer_init(loop, &m->start_timer);
    uv_timer_init(loop, &m->defer_timer);
    m->start_timer.data = m;
    m->defer_timer.data = m;
    m->open_handles = 2;
    return m;
}

const json_t *fr_mcp_tools(const fr_mcp *m)
{
    return m->tools;
}

const char *fr_mcp_revision(const fr_mcp *m)
{
    return m->rev;
}

/* ---- sending ---- */

/* Sends `msg` (taken) on the server's transport, with `extra` header lines
 * (borrowed) over HTTP. */
static int send_msg_with(fr_mcp *m, json_t *msg, const char *name, char **extra, size_t nextra,
                         fr_mcp_post **post)
{
    int rc = FR_EIO;
    if (m->wire)
        rc = fr_mcp_http_send(m->wire, msg, name, extra, nextra, post);
    else if (m->stdio)
        rc = fr_mcp_stdio_send(m->stdio, msg);
    json_decref(msg);
    return rc;
}

static int send_msg(fr_mcp *m, json_t *msg, const char *name, fr_mcp_post **post)
{
    return send_msg_with(m, msg, name, NULL, 0, post);
}

static const json_t *tool_schema(const fr_mcp *m, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(m->tools, i,
                       t) if (strcmp(json_string_value(json_object_get(t, "name")), name) ==
                              0) return json_object_get(t, "inputSchema");
    return NULL;
}

/* Sends a request of the start sequence; its answer goes to on_start_reply. */
static int send_start_request(fr_mcp *m, const char *method, json_t *params)
{
    m->start_id = m->next_id++;
    const char *rev = m->phase == PH_INIT ? NULL : m->rev;
    return send_msg(m, fr_mcp_request(m->start_id, method, params, rev), NULL, NULL);
}

/* ---- calls ---- */

static void on_call_closed(uv_handle_t *h)
{
    fr_mcp_call *c = h->data;
    fr_mcp *m = c->m;
    fr_tool_result_close(&c->result);
    free(c->tool);
    json_decref(c->args);
    json_decref(c->retry);
    free(c);
    release(m);
}

static void call_unlink(fr_mcp_call *c)
{
    fr_mcp *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else if (m->calls == c)
        m->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Ends a call: its done gets `r` (then closed), and the call is freed. */
static void call_finish(fr_mcp_call *c, fr_tool_result *r)
{
    fr_mcp *m = c->m;
    call_unlink(c);
    uv_timer_stop(&c->timer);
    if (m->wire)
        fr_mcp_http_cancel(m->wire, c->post);
    c->post = NULL;
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
    c->done(c->ud, r);
    fr_tool_result_close(r);
}

static void on_call_deferred(uv_timer_t *t)
{
    fr_mcp_call *c = t->data;
    fr_tool_result r = c->result;
    c->result = (fr_tool_result){0};
    call_finish(c, &r);
}

/* Ends the call on the next loop turn with `r` (taken). */
static void call_defer(fr_mcp_call *c, fr_tool_result *r)
{
    c->result = *r;
    *r = (fr_tool_result){0};
    c->deferred = true;
    uv_timer_stop(&c->timer);
    uv_timer_start(&c->timer, on_call_deferred, 0, 0);
}

/* Tells the server a request is abandoned. Over stateless HTTP the aborted
 * POST says it; elsewhere notifications/cancelled does. */
static void send_cancelled(fr_mcp *m, fr_mcp_call *c, const char *reason)
{
    if (!c->sent)
        return;
    if (m->wire)
        fr_mcp_http_cancel(m->wire, c->post);
    c->post = NULL;
    if (m->wire && strcmp(m->rev, FR_MCP_REV_2026) == 0)
        return;
    json_t *p = json_pack("{s:I, s:s}", "requestId", (json_int_t)c->id, "reason", reason);
    send_msg(m, fr_mcp_notification("notifications/cancelled", p), NULL, NULL);
}

static void on_call_timeout(uv_timer_t *t)
{
    fr_mcp_call *c = t->data;
    fr_mcp *m = c->m;
    send_cancelled(m, c, "timed out");
    fr_tool_result r;
    fr_tool_result_fail(&r, "timed out after %g s", c->timeout_s);
    call_finish(c, &r);
}

static void send_call(fr_mcp *m, fr_mcp_call *c)
{
    c->id = m->next_id++;
    json_t *params = json_pack("{s:s, s:O}", "name", c->tool, "arguments", c->args);
    if (c->retry)
        json_object_update(params, c->retry);
    json_t *req = fr_mcp_request(c->id, "tools/call", params, m->rev);
    char **lines = NULL;
    size_t n = 0;
    if (m->wire && strcmp(m->rev, FR_MCP_REV_2026) == 0)
        n = fr_mcp_xheader_lines(tool_schema(m, c->tool), c->args, &lines);
    int rc = send_msg_with(m, req, c->tool, lines, n, &c->post);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    c->sent = true;
    if (rc != FR_OK) {
        fr_tool_result r;
        fr_tool_result_fail(&r, "server '%s' could not be sent the call: %s", m->spec->name,
                            fr_strerror(rc));
        call_defer(c, &r);
    }
}

/* Fails every call: those sent (or all, with `all`) get `reason`. */
static void fail_calls(fr_mcp *m, bool all, const char *reason)
{
    fr_mcp_call *c = m->calls, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->deferred || (!all && !c->sent))
            continue;
        fr_tool_result r;
        fr_tool_result_fail(&r, "%s", reason);
        call_defer(c, &r);
    }
}

/* The answers to a 2026-07-28 input_required result (new object), or NULL
 * with `why` filled when flowrun cannot give one: it has no user to ask
 * (elicitation is declined) and no model of its own to lend (sampling). */
static json_t *input_responses(const json_t *requests, char *why, size_t n)
{
    json_t *out = json_object();
    const char *key;
    const json_t *r;
    json_object_foreach((json_t *)requests, key, r)
    {
        const char *method = json_string_value(json_object_get(r, "method"));
        if (method && strcmp(method, "elicitation/create") == 0)
            json_object_set_new(out, key, json_pack("{s:s}", "action", "decline"));
        else if (method && strcmp(method, "roots/list") == 0)
            json_object_set_new(out, key, json_pack("{s:[]}", "roots"));
        else {
            snprintf(why, n, "the server asked for %s, which flowrun does not provide",
                     method ? method : "an unnamed input");
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

/* A round of a multi-round call: the same call again under a new id, with
 * the answers and the server's requestState (verbatim). */
static bool retry_with_input(fr_mcp *m, fr_mcp_call *c, const json_t *res, fr_tool_result *r)
{
    char why[300];
    if (++c->rounds > 10) {
        fr_tool_result_fail(r, "server '%s' asked for input more than 10 times", m->spec->name);
        return false;
    }
    json_t *answers = input_responses(json_object_get(res, "inputRequests"), why, sizeof why);
    if (!answers) {
        fr_tool_result_fail(r, "%s", why);
        return false;
    }
    json_decref(c->retry);
    c->retry = json_pack("{s:o}", "inputResponses", answers);
    if (json_object_get(res, "requestState"))
        json_object_set(c->retry, "requestState", json_object_get(res, "requestState"));
    c->post = NULL; /* the reply being delivered was its post's */
    send_call(m, c);
    return true;
}

static void on_call_reply(fr_mcp *m, fr_mcp_call *c, const json_t *msg)
{
    fr_tool_result r;
    const json_t *e = json_object_get(msg, "error");
    const json_t *res = json_object_get(msg, "result");
    if (e) {
        fr_tool_result_fail(&r, "MCP error %lld: %s",
                            (long long)json_integer_value(json_object_get(e, "code")),
                            json_string_value(json_object_get(e, "message"))
                                ? json_string_value(json_object_get(e, "message"))
                                : "(no message)");
    } else if (json_is_string(json_object_get(res, "resultType")) &&
               strcmp(json_string_value(json_object_get(res, "resultType")), "input_required") ==
                   0) {
        if (retry_with_input(m, c, res, &r))
            return;
    } else if (json_is_string(json_object_get(res, "resultType")) &&
               strcmp(json_string_value(json_object_get(res, "resultType")), "complete") != 0) {
        fr_tool_result_fail(&r,
                            "server '%s' answered with resultType '%s', which flowrun does "
                            "not support",
                            m->spec->name, json_string_value(json_object_get(res, "resultType")));
    } else {
        bool is_error = false;
        char *text = fr_mcp_content_text(res, &is_error);
        r = (fr_tool_result){.is_error = is_error, .text = text};
        if (is_error)
            r.reason = fr_xstrdup("the tool reported an error");
    }
    c->post = NULL; /* the reply being delivered was its post's */
    call_finish(c, &r);
}

int fr_mcp_call_tool(fr_mcp *m, const char *tool, const json_t *args, double timeout_s,
                     fr_tool_done_fn done, void *ud, fr_mcp_call **out)
{
    if (!m || !tool || !done || m->state == ST_IDLE || m->state == ST_STOPPED)
        return FR_EINVAL;
    fr_mcp_call *c = fr_xcalloc(1, sizeof *c);
    c->m = m;
    c->tool = fr_xstrdup(tool);
    c->args = json_is_object(args) ? json_deep_copy(args) : json_object();
    c->timeout_s = timeout_s > 0                 ? timeout_s
                   : m->spec->call_timeout_s > 0 ? m->spec->call_timeout_s
                                                 : 60;
    c->done = done;
    c->ud = ud;
    uv_timer_init(m->loop, &c->timer);
    c->timer.data = c;
    m->open_handles++;
    c->next = m->calls;
    if (m->calls)
        m->calls->prev = c;
    m->calls = c;
    if (out)
        *out = c;
    if (m->state == ST_DEAD) {
        fr_tool_result r;
        fr_tool_result_fail(&r, "%s", m->dead_reason ? m->dead_reason : "server stopped");
        call_defer(c, &r);
        return FR_OK;
    }
    uv_timer_start(&c->timer, on_call_timeout, (uint64_t)(c->timeout_s * 1000), 0);
    if (m->state == ST_READY)
        send_call(m, c); /* else it waits for the restart */
    return FR_OK;
}

void fr_mcp_cancel(fr_mcp *m, fr_mcp_call *c)
{
    if (!m || !c)
        return;
    if (!c->deferred)
        send_cancelled(m, c, "cancelled by flowrun");
    call_unlink(c);
    uv_timer_stop(&c->timer);
    if (m->wire)
        fr_mcp_http_cancel(m->wire, c->post);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

/* ---- start ---- */

static void close_transport(fr_mcp *m)
{
    fr_mcp_stdio_free(m->stdio);
    m->stdio = NULL;
}

/* The start (or restart) ended with `rc`; `err` says why when it failed. */
static void start_done(fr_mcp *m, int rc, const fr_error *err)
{
    uv_timer_stop(&m->start_timer);
    uv_timer_stop(&m->defer_timer);
    m->start_id = -1;
    bool first = !m->started_once;
    m->started_once = true;
    if (rc == FR_OK) {
        m->state = ST_READY;
        fr_log_event(FR_LOG_INFO, "mcp", "tool.server_ready", "server=%s revision=%s tools=%zu%s",
                     m->spec->name, m->rev, json_array_size(m->tools),
                     m->restarting ? " restarted=1" : "");
        m->restarting = false;
        for (fr_mcp_call *c = m->calls; c; c = c->next)
            if (!c->sent && !c->deferred)
                send_call(m, c);
    } else {
        close_transport(m);
        m->state = ST_DEAD;
        free(m->dead_reason);
        m->dead_reason = m->restarting ? fr_xasprintf("server '%s' could not be restarted: %s",
                                                      m->spec->name, err->msg)
                                       : fr_xstrdup(err->msg);
        fail_calls(m, true, m->dead_reason);
    }
    if (first && m->ready)
        m->ready(m->ready_ud, rc, err);
}

static void start_fail(fr_mcp *m, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void start_fail(fr_mcp *m, int rc, const char *fmt, ...)
{
    fr_error err = {.code = rc};
    snprintf(err.source, sizeof err.source, "%s", m->spec->file ? m->spec->file : "");
    err.line = m->spec->line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    if (m->stdio && fr_mcp_stdio_last_err(m->stdio)[0]) {
        size_t n = strlen(err.msg);
        snprintf(err.msg + n, sizeof err.msg - n, " (its last log line: %s)",
                 fr_mcp_stdio_last_err(m->stdio));
    }
    start_done(m, rc, &err);
}

static void on_defer(uv_timer_t *t)
{
    fr_mcp *m = t->data;
    fr_error err = m->err_pending;
    start_done(m, m->rc_pending, &err);
}

static const char *phase_name(mcp_phase p)
{
    return p == PH_DISCOVER ? "server/discover" : p == PH_INIT ? "initialize" : "tools/list";
}

static void on_start_timeout(uv_timer_t *t)
{
    fr_mcp *m = t->data;
    start_fail(m, FR_ETIMEDOUT,
               "MCP server '%s' did not start within %g s (no answer to %s); raise its "
               "start_timeout or check that it speaks MCP",
               m->spec->name, m->spec->start_timeout_s > 0 ? m->spec->start_timeout_s : 60,
               phase_name(m->phase));
}

static void list_page(fr_mcp *m, const char *cursor)
{
    m->phase = PH_LIST;
    json_t *params = cursor ? json_pack("{s:s}", "cursor", cursor) : json_object();
    send_start_request(m, "tools/list", params);
}

static bool lists_version(const json_t *versions, const char *v)
{
    size_t i;
    const json_t *it;
    json_array_foreach(versions, i, it) if (json_is_string(it) &&
                                            strcmp(json_string_value(it), v) == 0) return true;
    return false;
}

static void send_initialize(fr_mcp *m)
{
    m->phase = PH_INIT;
    m->rev = FR_MCP_REV_2025;
    if (m->wire)
        fr_mcp_http_set_version(m->wire, NULL);
    json_t *params =
        json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", FR_MCP_REV_2025, "capabilities",
                  "clientInfo", "name", "flowrun", "version", FLOWRUN_VERSION);
    send_start_request(m, "initialize", params);
}

static const char *error_text(const json_t *msg, char *buf, size_t size)
{
    const json_t *e = json_object_get(msg, "error");
    const char *s = json_string_value(json_object_get(e, "message"));
    snprintf(buf, size, "MCP error %lld: %s",
             (long long)json_integer_value(json_object_get(e, "code")), s ? s : "(no message)");
    return buf;
}

/* A server that leaves server/discover unanswered (some older ones ignore
 * what they do not know) gets the handshake after a while. */
static void on_probe_timeout(uv_timer_t *t)
{
    fr_mcp *m = t->data;
    if (m->state != ST_STARTING || m->phase != PH_DISCOVER)
        return;
    fr_log_event(FR_LOG_DEBUG, "mcp", "tool.server_discover",
                 "server=%s discover=unanswered fallback=%s", m->spec->name, FR_MCP_REV_2025);
    send_initialize(m);
}

static void on_start_reply(fr_mcp *m, const json_t *msg)
{
    const json_t *res = json_object_get(msg, "result");
    const json_t *e = json_object_get(msg, "error");
    char why[600];
    m->start_id = -1;
    if (m->phase == PH_DISCOVER) {
        uv_timer_stop(&m->defer_timer);
        /* A server that rejects the version but names ours among those it
         * supports (-32022) is asked once more; any other refusal (an
         * error, an HTTP 4xx, a version list without ours) means the
         * server speaks the handshake revision. */
        const json_t *supported = json_object_get(json_object_get(e, "data"), "supported");
        if (e && json_integer_value(json_object_get(e, "code")) == FR_MCP_ERR_VERSION &&
            lists_version(supported, FR_MCP_REV_2026) && !m->discover_retried) {
            m->discover_retried = true;
            send_start_request(m, "server/discover", NULL);
            return;
        }
        if (e || !lists_version(json_object_get(res, "supportedVersions"), FR_MCP_REV_2026)) {
            fr_log_event(FR_LOG_DEBUG, "mcp", "tool.server_discover",
                         "server=%s discover=refused fallback=%s", m->spec->name, FR_MCP_REV_2025);
            send_initialize(m);
            return;
        }
        m->rev = FR_MCP_REV_2026;
        list_page(m, NULL);
    } else if (m->phase == PH_INIT) {
        const char *v = json_string_value(json_object_get(res, "protocolVersion"));
        if (e || !v) {
            start_fail(m, FR_EMCP, "MCP server '%s' refused the initialize handshake: %s",
                       m->spec->name, e ? error_text(msg, why, sizeof why) : "no protocolVersion");
            return;
        }
        if (m->wire)
            fr_mcp_http_set_version(m->wire, v);
        send_msg(m, fr_mcp_notification("notifications/initialized", NULL), NULL, NULL);
        list_page(m, NULL);
    } else {
        const json_t *tools = json_object_get(res, "tools");
        if (e || !json_is_array(tools)) {
            start_fail(m, FR_EMCP, "MCP server '%s' could not list its tools: %s", m->spec->name,
                       e ? error_text(msg, why, sizeof why) : "the reply has no tools array");
            return;
        }
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            if (!json_is_string(json_object_get(t, "name")))
                continue;
            json_t *schema = json_object_get(t, "inputSchema");
            char bad[300];
            if (!fr_mcp_xheader_valid(schema, bad, sizeof bad)) {
                fr_log_event(FR_LOG_WARN, "mcp", "tool.left_out",
                             "server=%s tool=%s left-out=\"%s\"", m->spec->name,
                             json_string_value(json_object_get(t, "name")), bad);
                continue;
            }
            json_t *d = json_object_get(t, "description");
            json_array_append_new(
                m->tools, json_pack("{s:O, s:O, s:O}", "name", json_object_get(t, "name"),
                                    "description", d ? d : json_string(""), "inputSchema",
                                    schema ? schema : json_pack("{s:s}", "type", "object")));
        }
        m->pages++;
        const char *cursor = json_string_value(json_object_get(res, "nextCursor"));
        if (!cursor || !cursor[0]) {
            start_done(m, FR_OK, NULL);
            return;
        }
        if (json_object_get(m->cursors, cursor)) {
            start_fail(m, FR_EMCP, "MCP server '%s' repeated the tools/list cursor '%.100s'",
                       m->spec->name, cursor);
            return;
        }
        if (m->pages >= MAX_PAGES) {
            start_fail(m, FR_EMCP, "MCP server '%s' listed more than %d pages of tools",
                       m->spec->name, MAX_PAGES);
            return;
        }
        json_object_set_new(m->cursors, cursor, json_true());
        list_page(m, cursor);
    }
}

/* ---- what the server sends ---- */

static void on_msg(void *ud, json_t *msg)
{
    fr_mcp *m = ud;
    if (m->state == ST_STOPPED)
        return;
    switch (fr_mcp_msg_classify(msg)) {
    case FR_MCP_MSG_RESPONSE: {
        long long id = fr_mcp_msg_id(msg);
        if (id >= 0 && id == m->start_id) {
            on_start_reply(m, msg);
            return;
        }
        for (fr_mcp_call *c = m->calls; c; c = c->next)
            if (c->sent && !c->deferred && c->id == id) {
                on_call_reply(m, c, msg);
                return;
            }
        return; /* a late reply to a call that timed out or was cancelled */
    }
    case FR_MCP_MSG_REQUEST: {
        /* flowrun declares no client capabilities: it answers ping, and
         * refuses sampling, roots, elicitation and the rest. */
        const char *method = json_string_value(json_object_get(msg, "method"));
        const json_t *id = json_object_get(msg, "id");
        json_t *reply = strcmp(method, "ping") == 0
                            ? fr_mcp_result_response(id, json_object())
                            : fr_mcp_error_response(id, -32601, "Method not found");
        send_msg(m, reply, NULL, NULL);
        return;
    }
    default:
        return; /* notifications: progress, logging, list changes */
    }
}

static void on_server_exit(void *ud, const char *why)
{
    fr_mcp *m = ud;
    char reason[900];
    snprintf(reason, sizeof reason, "server '%s' stopped %s", m->spec->name, why);
    fr_log_event(FR_LOG_WARN, "mcp", "tool.server_stopped", "server=%s stopped=\"%s\" restarts=%d",
                 m->spec->name, why, m->restarts);
    fr_mcp_stdio_free(m->stdio); /* takes effect when this callback returns */
    m->stdio = NULL;
    if (m->state == ST_STARTING) {
        fr_error err = {.code = FR_EMCP};
        snprintf(err.msg, sizeof err.msg, "MCP server '%s' exited during start %s", m->spec->name,
                 why);
        snprintf(err.source, sizeof err.source, "%s", m->spec->file ? m->spec->file : "");
        err.line = m->spec->line;
        start_done(m, FR_EMCP, &err);
        return;
    }
    if (m->state != ST_READY)
        return;
    fail_calls(m, false, reason);
    if (m->restarts >= 1) {
        m->state = ST_DEAD;
        free(m->dead_reason);
        m->dead_reason =
            fr_xasprintf("server '%s' stopped again %s; it was restarted once in this run, so "
                         "its tools are unavailable",
                         m->spec->name, why);
        fail_calls(m, true, m->dead_reason);
        return;
    }
    m->restarts++;
    m->restarting = true;
    start_sequence(m);
}

/* Resolves headers_env into header lines (owned, with the array); a
 * missing variable fails the start, naming it (never a value). */
static int resolve_headers(fr_mcp *m, char ***out, size_t *n, fr_error *err)
{
    char **lines = fr_xcalloc(m->spec->nheaders + 1, sizeof *lines);
    for (size_t i = 0; i < m->spec->nheaders; i++) {
        const char *v = getenv(m->spec->header_envs[i]);
        if (!v) {
            for (size_t k = 0; k < i; k++) {
                fr_wipe(lines[k], strlen(lines[k]));
                free(lines[k]);
            }
            free(lines);
            return fr_error_set(err, FR_ECONFIG, m->spec->file, m->spec->line,
                                "MCP server '%s': environment variable %s (for header %s) is "
                                "not set",
                                m->spec->name, m->spec->header_envs[i], m->spec->header_names[i]);
        }
        if (v[0])
            fr_redact_add(v);
        lines[i] = fr_xasprintf("%s: %s", m->spec->header_names[i], v);
    }
    *out = lines;
    *n = m->spec->nheaders;
    return FR_OK;
}

static void start_sequence(fr_mcp *m)
{
    fr_error err = {0};
    int rc = FR_OK;
    m->state = ST_STARTING;
    m->phase = PH_DISCOVER;
    m->rev = FR_MCP_REV_2026;
    m->pages = 0;
    m->discover_retried = false;
    json_array_clear(m->tools);
    json_object_clear(m->cursors);
    double start_s = m->spec->start_timeout_s > 0 ? m->spec->start_timeout_s : 60;
    uv_timer_start(&m->start_timer, on_start_timeout, (uint64_t)(start_s * 1000), 0);
    if (m->spec->url && !m->wire) {
        char **lines = NULL;
        size_t n = 0;
        rc = resolve_headers(m, &lines, &n, &err);
        if (rc == FR_OK)
            m->wire = fr_mcp_http_new(m->loop, m->http, m->spec->url, lines, n, on_msg, m);
    } else if (!m->spec->url) {
        rc = fr_mcp_stdio_start(m->loop, m->spec, m->wf_dir, on_msg, on_server_exit, m, &m->stdio,
                                &err);
        if (rc != FR_OK) {
            char msg[sizeof err.msg];
            snprintf(msg, sizeof msg, "%s", err.msg);
            fr_error_set(&err, rc, m->spec->file, m->spec->line, "MCP server '%s': %s",
                         m->spec->name, msg);
        }
    }
    if (rc == FR_OK) {
        if (m->wire)
            fr_mcp_http_set_version(m->wire, FR_MCP_REV_2026);
        rc = send_start_request(m, "server/discover", NULL);
        double probe_s = start_s / 3 < 10 ? start_s / 3 : 10;
        if (rc == FR_OK)
            uv_timer_start(&m->defer_timer, on_probe_timeout, (uint64_t)(probe_s * 1000), 0);
        if (rc != FR_OK)
            fr_error_set(&err, rc, m->spec->file, m->spec->line,
                         "MCP server '%s': the first request could not be sent: %s", m->spec->name,
                         fr_strerror(rc));
    }
    if (rc != FR_OK) {
        /* Reported from the loop: ready never comes from inside start. */
        uv_timer_stop(&m->start_timer);
        m->rc_pending = rc;
        m->err_pending = err;
        uv_timer_start(&m->defer_timer, on_defer, 0, 0);
    }
}

void fr_mcp_start(fr_mcp *m, fr_mcp_ready_fn ready, void *ud)
{
    if (!m || m->state != ST_IDLE)
        return;
    m->ready = ready;
    m->ready_ud = ud;
    start_sequence(m);
}

/* ---- stop ---- */

static void on_mcp_timer_closed(uv_handle_t *h)
{
    release(h->data);
}

void fr_mcp_stop(fr_mcp *m)
{
    if (!m || m->state == ST_STOPPED)
        return;
    m->state = ST_STOPPED;
    while (m->calls)
        fr_mcp_cancel(m, m->calls);
    close_transport(m);
    fr_mcp_http_free(m->wire);
    m->wire = NULL;
    uv_close((uv_handle_t *)&m->start_timer, on_mcp_timer_closed);
    uv_close((uv_handle_t *)&m->defer_timer, on_mcp_timer_closed);
}
