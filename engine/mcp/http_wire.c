#include "engine/mcp/http_wire_int.h"

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "providers/sse.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPLY (16u << 20)

struct fr_mcp_post {
    fr_mcp_http *w;
    fr_mcp_post *prev, *next;
    fr_xfer *x;
    long long id; /* the request's id, -1 for a notification or a response */
    fr_buf body;
    bool delivering;
    bool abandoned;
};

struct fr_mcp_http {
    fr_http *http;
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

fr_mcp_http *fr_mcp_http_new(fr_http *http, const char *url, char **headers, size_t nheaders,
                             fr_mcp_msg_fn on_msg, void *ud)
{
    fr_mcp_http *w = fr_xcalloc(1, sizeof *w);
    w->http = http;
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

static void post_free(fr_mcp_post *p)
{
    fr_buf_close(&p->body);
    free(p);
}

static void wire_free_now(fr_mcp_http *w)
{
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

static int on_data(void *ud, long status, const char *data, size_t len)
{
    fr_mcp_post *p = ud;
    return fr_buf_append(&p->body, data, len);
}

/* Collects each SSE event's JSON message into the array `ud`. */
static int on_event(void *ud, const fr_sse_event *ev)
{
    if (ev->data_len == 0)
        return FR_OK; /* a priming event */
    json_t *msg = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (msg)
        json_array_append_new(ud, msg);
    return FR_OK;
}

/* Returns the messages of a 2xx reply (new array): one JSON value (an
 * object or a batch) or an event stream, told apart by the first byte. */
static json_t *parse_reply(const fr_buf *body)
{
    json_t *out = json_array();
    const char *s = fr_buf_str(body);
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '{' || *s == '[') {
        json_t *v = json_loads(s, 0, NULL);
        if (json_is_array(v))
            json_array_extend(out, v);
        else if (v)
            json_array_append(out, v);
        json_decref(v);
    } else if (*s) {
        fr_sse sse;
        fr_sse_init(&sse, MAX_REPLY, on_event, out);
        fr_sse_feed(&sse, body->data, body->len);
        fr_sse_flush(&sse);
        fr_sse_close(&sse);
    }
    return out;
}

/* The one-line reason an HTTP error reply gives: its JSON-RPC error's
 * message, else the start of its body. */
static json_t *http_error(const fr_mcp_post *p, long status)
{
    json_t *v = json_loads(fr_buf_str(&p->body), 0, NULL);
    json_t *e = json_object_get(v, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    json_t *code = json_object_get(e, "code");
    char text[300];
    if (msg)
        snprintf(text, sizeof text, "HTTP %ld: %s", status, msg);
    else
        snprintf(text, sizeof text, "HTTP %ld: %.200s", status, fr_buf_str(&p->body));
    for (char *c = text; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    json_t *data = json_is_object(json_object_get(e, "data"))
                       ? json_deep_copy(json_object_get(e, "data"))
                       : json_object();
    json_object_set_new(data, "http_status", json_integer(status));
    json_t *r = json_pack("{s:s, s:I, s:{s:I, s:s, s:o}}", "jsonrpc", "2.0", "id",
                          (json_int_t)p->id, "error", "code",
                          json_is_integer(code) ? json_integer_value(code) : FR_MCP_ERR_HTTP,
                          "message", text, "data", data);
    json_decref(v);
    return r;
}

static void on_done(void *ud, const fr_http_result *res)
{
    fr_mcp_post *p = ud;
    fr_mcp_http *w = p->w;
    post_unlink(p);
    p->x = NULL;
    p->delivering = true;
    w->depth++;
    if (res->captured && !w->session)
        w->session = fr_xstrdup(res->captured);
    json_t *msgs = json_array();
    bool answered = false;
    if (res->rc == FR_OK && res->status >= 200 && res->status < 300) {
        json_decref(msgs);
        msgs = parse_reply(&p->body);
    } else if (p->id >= 0 && res->rc == FR_OK) {
        json_array_append_new(msgs, http_error(p, res->status));
    } else if (p->id >= 0) {
        char text[300];
        snprintf(text, sizeof text, "cannot reach %s: %s", w->url,
                 res->error ? res->error : fr_strerror(res->rc));
        json_array_append_new(msgs, json_pack("{s:s, s:I, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                                              (json_int_t)p->id, "error", "code",
                                              FR_MCP_ERR_TRANSPORT, "message", text));
    }
    size_t i;
    json_t *msg;
    json_array_foreach(msgs, i, msg)
    {
        if (w->free_asked || p->abandoned)
            break;
        if (p->id >= 0 && fr_mcp_msg_id(msg) == p->id &&
            fr_mcp_msg_classify(msg) == FR_MCP_MSG_RESPONSE)
            answered = true;
        w->on_msg(w->ud, msg);
    }
    if (p->id >= 0 && !answered && !w->free_asked && !p->abandoned) {
        json_t *e = json_pack("{s:s, s:I, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", (json_int_t)p->id,
                              "error", "code", FR_MCP_ERR_TRANSPORT, "message",
                              "the server's reply carried no response to the request");
        w->on_msg(w->ud, e);
        json_decref(e);
    }
    json_decref(msgs);
    post_free(p);
    if (--w->depth == 0 && w->free_asked)
        wire_free_now(w);
}

/* The request's lines: the user's, then the protocol's. */
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
    fr_buf_init(&p->body, MAX_REPLY);
    fr_http_opts opts = {.max_response = MAX_REPLY, .capture_header = "Mcp-Session-Id"};
    int rc = fr_http_submit(w->http, &req, &opts, on_data, on_done, p, &p->x);
    close_request(w, &req);
    if (rc != FR_OK) {
        post_free(p);
        return rc;
    }
    p->next = w->posts;
    if (w->posts)
        w->posts->prev = p;
    w->posts = p;
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
    fr_http_cancel(w->http, p->x);
    post_unlink(p);
    post_free(p);
}

void fr_mcp_http_free(fr_mcp_http *w)
{
    if (!w)
        return;
    while (w->posts)
        fr_mcp_http_cancel(w, w->posts);
    if (w->session) {
        /* The session ends with the client: a DELETE nobody waits for. */
        fr_request req;
        open_request(w, &req);
        fr_http_opts opts = {.method = "DELETE", .total_timeout_ms = 5000};
        fr_http_submit(w->http, &req, &opts, NULL, NULL, NULL, NULL);
        close_request(w, &req);
    }
    if (w->depth > 0)
        w->free_asked = true;
    else
        wire_free_now(w);
}
