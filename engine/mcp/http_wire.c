#include "engine/mcp/http_wire_int.h"

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "providers/sse.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLY        (16u << 20)
#define MAX_RECONNECTS   3
#define DEFAULT_RETRY_MS 1000

typedef enum { BODY_UNKNOWN, BODY_JSON, BODY_SSE } body_kind;

/* One POST (or, resuming its stream, one GET) and what came of it. */
struct fr_mcp_post {
    fr_mcp_http *w;
    fr_mcp_post *prev, *next;
    fr_xfer *x;   /* NULL between the end of a stream and its resumption */
    long long id; /* the request's id, -1 for a notification or a response */
    body_kind kind;
    fr_buf body;     /* a JSON reply, or an error status's body */
    fr_sse sse;      /* an event-stream reply, framed as it arrives */
    json_t *pending; /* messages framed and not yet delivered */
    char last_id[256];
    uint64_t reconnect_at; /* uv_now when the stream is resumed, 0 for never */
    int reconnects;
    bool answered; /* the response to `id` was delivered */
    bool delivering;
    bool abandoned;
};

struct fr_mcp_http {
    uv_loop_t *loop;
    fr_http *http;
    uv_timer_t timer; /* delivers what streams framed; resumes streams */
    char *url;
    char **headers;
    size_t nheaders;
    char *version;
    char *session;
    fr_mcp_msg_fn on_msg;
    void *ud;
    fr_mcp_post *posts;
    int depth; /* deliveries in progress */
    bool free_asked;
};

static void on_tick(uv_timer_t *t);

fr_mcp_http *fr_mcp_http_new(uv_loop_t *loop, fr_http *http, const char *url, char **headers,
                             size_t nheaders, fr_mcp_msg_fn on_msg, void *ud)
{
    fr_mcp_http *w = fr_xcalloc(1, sizeof *w);
    w->loop = loop;
    w->http = http;
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    w->url = fr_xstrdup(url);
    w->headers = headers;
    w->nheaders = nheaders;
    w->on_msg = on_msg;
    w->ud = ud;
    return w;
}

void fr_mcp_http_set_version(fr_mcp_http *w, const char *version)
{
    free(w->version);
    w->version = version ? fr_xstrdup(version) : NULL;
}

static void post_unlink(fr_mcp_post *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else if (p->w->posts == p)
        p->w->posts = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void post_link(fr_mcp_post *p)
{
    fr_mcp_http *w = p->w;
    p->next = w->posts;
    if (w->posts)
        w->posts->prev = p;
    w->posts = p;
}

static void post_free(fr_mcp_post *p)
{
    fr_buf_close(&p->body);
    fr_sse_close(&p->sse);
    json_decref(p->pending);
    free(p);
}

static void on_wire_closed(uv_handle_t *h)
{
    fr_mcp_http *w = h->data;
    for (size_t i = 0; i < w->nheaders; i++) {
        fr_wipe(w->headers[i], strlen(w->headers[i]));
        free(w->headers[i]);
    }
    free(w->headers);
    free(w->url);
    free(w->version);
    free(w->session);
    free(w);
}

/* Collects each event's JSON message for delivery; remembers the stream's
 * last event id, from which it can be resumed. */
static int on_event(void *ud, const fr_sse_event *ev)
{
    fr_mcp_post *p = ud;
    snprintf(p->last_id, sizeof p->last_id, "%s", ev->id);
    if (ev->data_len == 0)
        return FR_OK; /* a priming event */
    json_t *msg = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (msg)
        json_array_append_new(p->pending, msg);
    return FR_OK;
}

/* Runs inside curl: frames the body, never delivers (that would call back
 * into fr_http); messages framed wait for the next tick of the loop. */
static int on_data(void *ud, long status, const char *data, size_t len)
{
    fr_mcp_post *p = ud;
    if (p->kind == BODY_UNKNOWN && status >= 200 && status < 300) {
        size_t i = 0;
        while (i < len && isspace((unsigned char)data[i]))
            i++;
        if (i < len)
            p->kind = data[i] == '{' || data[i] == '[' ? BODY_JSON : BODY_SSE;
    }
    if (p->kind != BODY_SSE)
        return fr_buf_append(&p->body, data, len);
    int rc = fr_sse_feed(&p->sse, data, len);
    if (json_array_size(p->pending) > 0)
        uv_timer_start(&p->w->timer, on_tick, 0, 0);
    return rc;
}

/* The error response a failure below JSON-RPC stands for: an HTTP error
 * status (its JSON-RPC error's code and message when the body has one) or
 * no reply at all. */
static json_t *failure(const fr_mcp_post *p, const fr_http_result *res)
{
    char text[300];
    json_t *data = json_object();
    int code = FR_MCP_ERR_TRANSPORT;
    json_t *v = NULL;
    if (!res) {
        snprintf(text, sizeof text, "the server's reply carried no response to the request");
    } else if (res->rc != FR_OK) {
        snprintf(text, sizeof text, "cannot reach %s: %s", p->w->url,
                 res->error ? res->error : fr_strerror(res->rc));
    } else {
        v = json_loads(fr_buf_str(&p->body), 0, NULL);
        json_t *e = json_object_get(v, "error");
        const char *msg = json_string_value(json_object_get(e, "message"));
        code = json_is_integer(json_object_get(e, "code"))
                   ? (int)json_integer_value(json_object_get(e, "code"))
                   : FR_MCP_ERR_HTTP;
        if (msg)
            snprintf(text, sizeof text, "HTTP %ld: %s", res->status, msg);
        else
            snprintf(text, sizeof text, "HTTP %ld: %.200s", res->status, fr_buf_str(&p->body));
        if (json_is_object(json_object_get(e, "data")))
            json_object_update(data, json_object_get(e, "data"));
        json_object_set_new(data, "http_status", json_integer(res->status));
    }
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    json_decref(v);
    return json_pack("{s:s, s:I, s:{s:i, s:s, s:o}}", "jsonrpc", "2.0", "id", (json_int_t)p->id,
                     "error", "code", code, "message", text, "data", data);
}

/* Hands `p`'s pending messages to the client. Returns false when the post
 * or the transport went away meanwhile (the post is then freed). */
static bool deliver(fr_mcp_post *p)
{
    fr_mcp_http *w = p->w;
    json_t *msgs = p->pending;
    p->pending = json_array();
    p->delivering = true;
    w->depth++;
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg)
    {
        if (w->free_asked || p->abandoned)
            break;
        if (p->id >= 0 && fr_mcp_msg_id(msg) == p->id &&
            fr_mcp_msg_classify(msg) == FR_MCP_MSG_RESPONSE)
            p->answered = true;
        w->on_msg(w->ud, msg);
    }
    json_decref(msgs);
    w->depth--;
    p->delivering = false;
    if (p->abandoned || w->free_asked) {
        if (p->x)
            fr_http_cancel(w->http, p->x);
        post_unlink(p);
        post_free(p);
        return false;
    }
    return true;
}

static void finish_wire(fr_mcp_http *w)
{
    if (w->depth == 0 && w->free_asked && !uv_is_closing((uv_handle_t *)&w->timer))
        uv_close((uv_handle_t *)&w->timer, on_wire_closed);
}

static void on_done(void *ud, const fr_http_result *res);

static void add_header(fr_request *req, char *line)
{
    req->headers = fr_xrealloc(req->headers, (req->nheaders + 1) * sizeof *req->headers);
    req->headers[req->nheaders++] = line;
}

/* Fills `req` (owned by the caller: close_request) with the URL, the user's
 * headers, the protocol's and the session's. */
static void open_request(const fr_mcp_http *w, fr_request *req)
{
    *req = (fr_request){.url = fr_xstrdup(w->url)};
    for (size_t i = 0; i < w->nheaders; i++)
        add_header(req, fr_xstrdup(w->headers[i]));
    add_header(req, fr_xstrdup("Accept: application/json, text/event-stream"));
    add_header(req, fr_xstrdup("Content-Type: application/json"));
    if (w->version)
        add_header(req, fr_xasprintf("MCP-Protocol-Version: %s", w->version));
    if (w->session)
        add_header(req, fr_xasprintf("Mcp-Session-Id: %s", w->session));
}

/* Wipes the user's header values (credentials) and frees `req`. */
static void close_request(const fr_mcp_http *w, fr_request *req)
{
    for (size_t i = 0; i < w->nheaders && i < req->nheaders; i++)
        fr_wipe(req->headers[i], strlen(req->headers[i]));
    fr_request_close(req);
}

/* Starts `req` (borrowed) for `p`. */
static int submit(fr_mcp_post *p, const fr_request *req, const char *method)
{
    p->kind = BODY_UNKNOWN;
    fr_buf_reset(&p->body);
    fr_sse_close(&p->sse);
    fr_sse_init(&p->sse, MAX_REPLY, on_event, p);
    fr_http_opts opts = {
        .max_response = MAX_REPLY, .capture_header = "Mcp-Session-Id", .method = method};
    return fr_http_submit(p->w->http, req, &opts, on_data, on_done, p, &p->x);
}

/* Resumes a stream that ended before the response came (2025-11-25): a GET
 * with Last-Event-ID, after the wait the server asked for. */
static void resume(fr_mcp_post *p)
{
    fr_request req;
    open_request(p->w, &req);
    add_header(&req, fr_xasprintf("Last-Event-ID: %s", p->last_id));
    req.body = fr_xstrdup("");
    p->reconnect_at = 0;
    p->reconnects++;
    int rc = submit(p, &req, "GET");
    close_request(p->w, &req);
    if (rc != FR_OK) {
        fr_http_result res = {.rc = rc, .error = fr_strerror(rc)};
        json_array_append_new(p->pending, failure(p, &res));
        if (deliver(p)) {
            post_unlink(p);
            post_free(p);
        }
    }
}

/* Arms the timer for the next resumption, if any. */
static void arm(fr_mcp_http *w)
{
    uint64_t next = 0;
    for (fr_mcp_post *p = w->posts; p; p = p->next)
        if (p->reconnect_at && (!next || p->reconnect_at < next))
            next = p->reconnect_at;
    uint64_t now = uv_now(w->loop);
    if (next)
        uv_timer_start(&w->timer, on_tick, next > now ? next - now : 0, 0);
}

static void on_tick(uv_timer_t *t)
{
    fr_mcp_http *w = t->data;
    w->depth++;
    bool again = true;
    while (again && !w->free_asked) {
        again = false;
        for (fr_mcp_post *p = w->posts; p; p = p->next) {
            if (p->delivering)
                continue;
            if (json_array_size(p->pending) > 0) {
                if (deliver(p) && p->answered && p->x) {
                    /* A stream that stays open after its response. */
                    fr_http_cancel(w->http, p->x);
                    post_unlink(p);
                    post_free(p);
                }
                again = true; /* the list may have changed */
                break;
            }
            if (p->reconnect_at && p->reconnect_at <= uv_now(w->loop)) {
                resume(p);
                again = true;
                break;
            }
        }
    }
    w->depth--;
    if (!w->free_asked)
        arm(w);
    finish_wire(w);
}

static void on_done(void *ud, const fr_http_result *res)
{
    fr_mcp_post *p = ud;
    fr_mcp_http *w = p->w;
    p->x = NULL;
    if (res->captured && !w->session)
        w->session = fr_xstrdup(res->captured);
    bool ok = res->rc == FR_OK && res->status >= 200 && res->status < 300;
    if (ok && p->kind == BODY_SSE) {
        fr_sse_flush(&p->sse);
    } else if (ok && p->kind == BODY_JSON) {
        json_t *v = json_loads(fr_buf_str(&p->body), 0, NULL);
        if (json_is_array(v))
            json_array_extend(p->pending, v);
        else if (v)
            json_array_append(p->pending, v);
        json_decref(v);
    } else if (!ok && p->id >= 0) {
        json_array_append_new(p->pending, failure(p, res));
    }
    w->depth++;
    bool alive = deliver(p);
    if (alive && p->id >= 0 && !p->answered) {
        /* An event stream may be resumed when the server named its events
         * (2025-11-25; the stateless revision has no resumption). */
        bool stateless = w->version && strcmp(w->version, FR_MCP_REV_2026) == 0;
        if (ok && p->kind == BODY_SSE && p->last_id[0] && !stateless &&
            p->reconnects < MAX_RECONNECTS) {
            long retry = fr_sse_retry_ms(&p->sse);
            p->reconnect_at = uv_now(w->loop) + (uint64_t)(retry >= 0 ? retry : DEFAULT_RETRY_MS);
            if (p->reconnect_at == 0)
                p->reconnect_at = 1;
            arm(w);
            alive = false; /* kept for its resumption */
        } else {
            json_array_append_new(p->pending, failure(p, NULL));
            alive = deliver(p);
        }
    }
    if (alive) {
        post_unlink(p);
        post_free(p);
    }
    w->depth--;
    finish_wire(w);
}

int fr_mcp_http_send(fr_mcp_http *w, const json_t *msg, const char *name, char **extra,
                     size_t nextra, fr_mcp_post **out)
{
    fr_request req;
    open_request(w, &req);
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (method)
        add_header(&req, fr_xasprintf("Mcp-Method: %s", method));
    if (name)
        add_header(&req, fr_xasprintf("Mcp-Name: %s", name));
    for (size_t i = 0; i < nextra; i++)
        add_header(&req, fr_xstrdup(extra[i]));
    req.body = json_dumps(msg, JSON_COMPACT);

    fr_mcp_post *p = fr_xcalloc(1, sizeof *p);
    p->w = w;
    p->id = fr_mcp_msg_classify(msg) == FR_MCP_MSG_REQUEST ? fr_mcp_msg_id(msg) : -1;
    p->pending = json_array();
    fr_buf_init(&p->body, MAX_REPLY);
    fr_sse_init(&p->sse, MAX_REPLY, on_event, p);
    int rc = submit(p, &req, NULL);
    close_request(w, &req);
    if (rc != FR_OK) {
        post_free(p);
        return rc;
    }
    post_link(p);
    if (out)
        *out = p->id >= 0 ? p : NULL;
    return FR_OK;
}

void fr_mcp_http_cancel(fr_mcp_http *w, fr_mcp_post *p)
{
    if (!p)
        return;
    if (p->delivering) {
        p->abandoned = true;
        return;
    }
    if (p->x)
        fr_http_cancel(w->http, p->x);
    post_unlink(p);
    post_free(p);
}

void fr_mcp_http_free(fr_mcp_http *w)
{
    if (!w || w->free_asked)
        return;
    for (fr_mcp_post *p = w->posts, *next; p; p = next) {
        next = p->next;
        fr_mcp_http_cancel(w, p);
    }
    if (w->session) {
        /* The session ends with the client: a DELETE nobody waits for. */
        fr_request req;
        open_request(w, &req);
        fr_http_opts opts = {.method = "DELETE", .total_timeout_ms = 5000};
        fr_http_submit(w->http, &req, &opts, NULL, NULL, NULL, NULL);
        close_request(w, &req);
    }
    w->free_asked = true;
    uv_timer_stop(&w->timer);
    finish_wire(w);
}
