/* The Streamable HTTP transport of flowrun's MCP server; see http_serve.h.
 *
 * One uv_tcp listener; per connection a uv_tcp, an input buffer and at most
 * one request in flight (HTTP/1.1 without pipelined answers: the next
 * request waits for the answer to this one). A request's tag, given to the
 * core with its message, is its `req`: the core's send callback finds the
 * connection there. A 2025-11-25 session (created by initialize, named by
 * Mcp-Session-Id) keeps its peer until DELETE or close; a 2026-07-28
 * request gets a peer of its own, freed once answered. */

#include "engine/mcpd/http_serve.h"

#include "engine/util/buf.h"
#include "engine/util/httphead.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <strings.h>

#define MAX_HEAD     (16u * 1024u)        /* request line and header fields */
#define MAX_BODY     (4u * 1024u * 1024u) /* one JSON-RPC message */
#define MAX_SESSIONS 64
#define MAX_CONNS    256
#define READ_BUF     (64u * 1024u)
#define IDLE_MS      60000u /* a connection with no request in flight closes after this */
#define REV_2026     "2026-07-28"
#define ERR_HEADERS  (-32020) /* HeaderMismatch (2026-07-28) */
#define ERR_SESSION  (-32001) /* session not found, as the SDKs answer */

typedef struct conn conn;
typedef struct req req;

/* A peer and what owns it: a session, or one stateless request. */
typedef struct holder {
    struct holder *prev, *next; /* the server's sessions (sessions only) */
    fr_mcpd_http *h;
    fr_mcpd_peer *peer;
    char id[33];     /* the Mcp-Session-Id; "" for a stateless peer */
    bool freeing;    /* the peer is being freed: its messages go nowhere */
    bool reap;       /* a stateless peer whose request is answered */
    size_t inflight; /* requests of a session not answered yet */
    uint64_t used;   /* when its last request came (h->uses): the oldest idle one goes first */
} holder;

struct req {
    conn *c;
    holder *owner;
    bool sse;    /* answered as text/event-stream (head already sent) */
    char *extra; /* header lines of the answer ("Mcp-Session-Id: ...\r\n") */
};

struct conn {
    conn *prev, *next;
    fr_mcpd_http *h;
    uv_tcp_t tcp;
    uv_shutdown_t shut;
    fr_buf in;
    size_t scan;
    bool closing, draining, in_process, keep_alive;
    uint64_t active; /* uv_now of its last read */
    req *r;          /* the request in flight, or NULL */
};

struct fr_mcpd_http {
    uv_loop_t *loop;
    fr_mcpd *d;
    uv_tcp_t listener;
    uv_timer_t reaper;  /* frees answered stateless peers outside the core's callbacks */
    uv_timer_t sweeper; /* closes idle connections (IDLE_MS) */
    char *token;
    int port;
    bool loopback; /* bound to a loopback address */
    conn *conns;
    size_t nconns;
    holder *sessions;
    size_t nsessions;
    uint64_t uses; /* requests to sessions so far: their order of use */
    holder **reaped;
    size_t nreaped;
    int open_handles;
    bool closing;
    void (*done)(void *);
    void *done_ud;
    char rbuf[READ_BUF];
};

/* ---- connections -------------------------------------------------------- */

static void maybe_done(fr_mcpd_http *h)
{
    if (!h->closing || h->open_handles > 0 || h->conns)
        return;
    void (*done)(void *) = h->done;
    void *ud = h->done_ud;
    if (h->token)
        fr_wipe(h->token, strlen(h->token));
    free(h->token);
    free(h->reaped);
    free(h);
    if (done)
        done(ud);
}

static void on_conn_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    fr_mcpd_http *h = c->h;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    h->nconns--;
    fr_buf_close(&c->in);
    free(c);
    maybe_done(h);
}

static void holder_free(holder *o);

static void req_free(req *r)
{
    if (!r)
        return;
    if (r->owner)
        r->owner->inflight--;
    free(r->extra);
    free(r);
}

static void on_reap(uv_timer_t *t);

/* Frees a stateless peer on the next loop turn, never inside the core's
 * call that answered it. */
static void queue_reap(holder *o)
{
    if (o->reap)
        return;
    o->reap = true;
    fr_mcpd_http *h = o->h;
    h->reaped = fr_xrealloc(h->reaped, (h->nreaped + 1) * sizeof *h->reaped);
    h->reaped[h->nreaped++] = o;
    if (!h->closing)
        uv_timer_start(&h->reaper, on_reap, 0, 0);
}

/* The request of `c` will not be answered: the core is told (its run
 * stops) and a stateless peer goes with it. */
static void abandon_req(conn *c)
{
    req *r = c->r;
    if (!r)
        return;
    c->r = NULL;
    holder *o = r->owner;
    if (o && !o->freeing) {
        fr_mcpd_peer_drop(o->peer, r);
        if (!o->id[0])
            queue_reap(o);
    }
    req_free(r);
}

static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    abandon_req(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

typedef struct wreq {
    uv_write_t w;
    char *data;
} wreq;

static void on_write(uv_write_t *w, int status)
{
    wreq *q = (wreq *)w;
    conn *c = w->data;
    free(q->data);
    free(q);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
}

/* Queues the contents of `b` (left empty). */
static void conn_write(conn *c, fr_buf *b)
{
    size_t len = b->len;
    char *data = fr_buf_take(b);
    if (c->closing || len == 0) {
        free(data);
        return;
    }
    wreq *q = fr_xmalloc(sizeof *q);
    q->data = data;
    q->w.data = c;
    uv_buf_t ub = uv_buf_init(data, (unsigned int)len);
    if (uv_write(&q->w, (uv_stream_t *)&c->tcp, &ub, 1, on_write) < 0) {
        free(data);
        free(q);
        conn_close(c);
    }
}

static void on_shutdown(uv_shutdown_t *s, int status)
{
    (void)status;
    conn_close(s->data);
}

/* Flushes what is queued, then closes. */
static void conn_drain(conn *c)
{
    if (c->closing || c->draining)
        return;
    c->draining = true;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* ---- answers ------------------------------------------------------------ */

static void send_answer(conn *c, int status, const char *extra, const char *type, const char *body)
{
    fr_buf b;
    fr_buf_init(&b, 0);
    size_t len = body ? strlen(body) : 0;
    fr_buf_printf(&b, "HTTP/1.1 %d %s\r\nServer: flowrun\r\nConnection: %s\r\n", status,
                  fr_http_status_text(status), c->keep_alive ? "keep-alive" : "close");
    if (type)
        fr_buf_printf(&b, "Content-Type: %s\r\n", type);
    fr_buf_printf(&b, "Content-Length: %zu\r\n%s\r\n", len, extra ? extra : "");
    fr_buf_append(&b, body, len);
    conn_write(c, &b);
    if (!c->keep_alive)
        conn_drain(c);
}

/* An answer carrying a JSON-RPC error with `id` (borrowed; NULL: null). */
static void send_rpc_error(conn *c, int status, const char *extra, const json_t *id, int code,
                           const char *message)
{
    json_t *doc = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                            id ? id : json_null(), "error", "code", code, "message", message);
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    send_answer(c, status, extra, "application/json", body);
    free(body);
}

/* A broken request: the framing cannot be trusted, so the connection closes. */
static void send_fatal(conn *c, int status)
{
    c->keep_alive = false;
    send_rpc_error(c, status, NULL, NULL, -32600, fr_http_status_text(status));
}

static void sse_chunk(fr_buf *b, const char *json)
{
    size_t n = strlen(json) + sizeof "event: message\ndata: \n\n" - 1;
    fr_buf_printf(b, "%zx\r\nevent: message\ndata: %s\n\n\r\n", n, json);
}

static void conn_process(conn *c);

/* The HTTP status of a 2026-07-28 answer: its JSON-RPC error says it
 * (method not found 404; invalid params, an unsupported version, header
 * mismatch or a missing client capability 400; internal 500). */
static int stateless_status(const json_t *msg)
{
    json_t *e = json_object_get(msg, "error");
    if (!e)
        return 200;
    switch (json_integer_value(json_object_get(e, "code"))) {
    case -32601:
        return 404;
    case -32700:
    case -32600:
    case -32602:
    case ERR_HEADERS:
    case -32021: /* MissingRequiredClientCapability */
    case -32022: /* UnsupportedProtocolVersion */
        return 400;
    case -32603:
        return 500;
    default:
        return 200;
    }
}

/* The core's send callback: `tag` is the req of the message. */
static void on_send(void *ud, void *tag, const json_t *msg, bool last)
{
    holder *o = ud;
    req *r = tag;
    if (o->freeing || !r || r->owner != o)
        return; /* tied to no request: there is no stream to carry it */
    conn *c = r->c;
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    fr_buf b;
    fr_buf_init(&b, 0);
    if (r->sse) {
        sse_chunk(&b, text);
        if (last)
            fr_buf_puts(&b, "0\r\n\r\n");
        conn_write(c, &b);
    } else if (last) {
        send_answer(c, o->id[0] ? 200 : stateless_status(msg), r->extra, "application/json", text);
    }
    free(text);
    fr_buf_close(&b);
    if (!last)
        return;
    c->r = NULL;
    req_free(r);
    if (!o->id[0])
        queue_reap(o);
    if (!c->keep_alive)
        conn_drain(c);
    else if (!c->in_process)
        conn_process(c);
}

/* ---- peers -------------------------------------------------------------- */

static holder *holder_new(fr_mcpd_http *h, bool session)
{
    holder *o = fr_xcalloc(1, sizeof *o);
    o->h = h;
    o->peer = fr_mcpd_peer_new(h->d, on_send, o);
    if (session) {
        unsigned char raw[16];
        if (uv_random(NULL, NULL, raw, sizeof raw, 0, NULL) != 0) {
            uint64_t x = uv_hrtime() ^ (uint64_t)(uintptr_t)o;
            for (size_t i = 0; i < sizeof raw; i++, x = x * 6364136223846793005u + 1)
                raw[i] = (unsigned char)(x >> 56);
        }
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(o->id + 2 * i, 3, "%02x", raw[i]);
        o->used = ++h->uses;
        o->next = h->sessions;
        if (h->sessions)
            h->sessions->prev = o;
        h->sessions = o;
        h->nsessions++;
    }
    return o;
}

/* Frees a peer holder; a session's requests in flight end with their
 * connections. */
static void holder_free(holder *o)
{
    fr_mcpd_http *h = o->h;
    o->freeing = true;
    if (o->id[0]) {
        for (conn *c = h->conns; c; c = c->next)
            if (c->r && c->r->owner == o)
                conn_close(c);
        if (o->prev)
            o->prev->next = o->next;
        else
            h->sessions = o->next;
        if (o->next)
            o->next->prev = o->prev;
        h->nsessions--;
    }
    fr_mcpd_peer_free(o->peer);
    free(o);
}

static void on_reap(uv_timer_t *t)
{
    fr_mcpd_http *h = t->data;
    for (size_t i = 0; i < h->nreaped; i++)
        holder_free(h->reaped[i]);
    h->nreaped = 0;
}

static holder *find_session(fr_mcpd_http *h, const char *id, size_t n)
{
    for (holder *o = h->sessions; o; o = o->next)
        if (strlen(o->id) == n && memcmp(o->id, id, n) == 0)
            return o;
    return NULL;
}

/* ---- checks ------------------------------------------------------------- */

/* Compares in time that depends on the lengths only, never on where the
 * bytes differ. */
static bool same_secret(const char *a, size_t an, const char *b, size_t bn)
{
    unsigned char diff = an != bn;
    for (size_t i = 0; i < an; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (bn ? bn : 1)]);
    return diff == 0 && bn > 0;
}

static bool authorized(const fr_mcpd_http *h, const fr_httphead *hd)
{
    if (!h->token)
        return true;
    const fr_httphead_field *f = fr_httphead_get(hd, "Authorization");
    if (!f || f->value_len < 7 || strncasecmp(f->value, "Bearer ", 7) != 0)
        return false;
    return same_secret(f->value + 7, f->value_len - 7, h->token, strlen(h->token));
}

static bool host_is_loopback(const char *host, size_t n)
{
    static const char *const names[] = {"localhost", "127.0.0.1", "[::1]"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && strncasecmp(host, names[i], n) == 0)
            return true;
    return false;
}

/* Whether "host[:port]" (`n` bytes of `v`) names this machine:
 * localhost, 127.0.0.1 or [::1], with any port. */
static bool authority_is_loopback(const char *v, size_t n)
{
    size_t hn = 0;
    if (n > 0 && v[0] == '[') {
        const char *rb = memchr(v, ']', n);
        hn = rb ? (size_t)(rb - v) + 1 : n;
    } else {
        while (hn < n && v[hn] != ':' && v[hn] != '/')
            hn++;
    }
    if (!host_is_loopback(v, hn))
        return false;
    for (size_t i = hn; i < n; i++)
        if (i == hn ? v[i] != ':' : (v[i] < '0' || v[i] > '9'))
            return false;
    return true;
}

/* Whether a request may come from where its headers say: an Origin must
 * be a page on this machine (http(s)://localhost, 127.0.0.1, [::1]); on a
 * loopback listener the Host must name this machine too, so a page whose
 * name was rebound to 127.0.0.1 (DNS rebinding) is refused either way. */
static bool origin_allowed(const fr_mcpd_http *h, const fr_httphead *hd)
{
    const fr_httphead_field *host = fr_httphead_get(hd, "Host");
    if (h->loopback && host && !authority_is_loopback(host->value, host->value_len))
        return false;
    const fr_httphead_field *f = fr_httphead_get(hd, "Origin");
    if (!f)
        return true;
    const char *v = f->value;
    size_t n = f->value_len;
    size_t skip = n >= 7 && strncasecmp(v, "http://", 7) == 0    ? 7
                  : n >= 8 && strncasecmp(v, "https://", 8) == 0 ? 8
                                                                 : 0;
    return skip && authority_is_loopback(v + skip, n - skip);
}

static bool field_equals(const fr_httphead_field *f, const char *s)
{
    return f && s && f->value_len == strlen(s) && memcmp(f->value, s, f->value_len) == 0;
}

/* The revision a 2026-07-28 request states in its _meta, or NULL. */
static const char *body_revision(const json_t *msg)
{
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    return json_string_value(json_object_get(meta, "io.modelcontextprotocol/protocolVersion"));
}

/* The name Mcp-Name must carry for `method`, or NULL when there is none. */
static const char *body_name(const json_t *msg, const char *method)
{
    json_t *params = json_object_get(msg, "params");
    if (strcmp(method, "tools/call") == 0 || strcmp(method, "prompts/get") == 0)
        return json_string_value(json_object_get(params, "name"));
    if (strcmp(method, "resources/read") == 0)
        return json_string_value(json_object_get(params, "uri"));
    return NULL;
}

/* Checks the 2026-07-28 headers and _meta against the body: NULL when they
 * agree, else what is wrong (*invalid: the _meta, not a header). */
static const char *stateless_mismatch(const fr_httphead *hd, const json_t *msg, char *why, size_t n,
                                      bool *invalid)
{
    *invalid = false;
    const char *method = json_string_value(json_object_get(msg, "method"));
    const char *rev = body_revision(msg);
    const fr_httphead_field *pv = fr_httphead_get(hd, "MCP-Protocol-Version");
    if (rev && !field_equals(pv, rev)) {
        snprintf(why, n, "the MCP-Protocol-Version header must be %s, as the body's _meta says",
                 rev);
        return why;
    }
    if (!method)
        return NULL;
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    if (json_object_get(msg, "id") &&
        (!rev || !json_object_get(meta, "io.modelcontextprotocol/clientCapabilities"))) {
        *invalid = true;
        snprintf(why, n,
                 "Invalid params: a 2026-07-28 request carries params._meta with "
                 "io.modelcontextprotocol/protocolVersion and "
                 "io.modelcontextprotocol/clientCapabilities");
        return why;
    }
    const fr_httphead_field *mm = fr_httphead_get(hd, "Mcp-Method");
    if (!field_equals(mm, method)) {
        snprintf(why, n, "the Mcp-Method header must be '%s', the body's method", method);
        return why;
    }
    const char *name = body_name(msg, method);
    if (name && !field_equals(fr_httphead_get(hd, "Mcp-Name"), name)) {
        snprintf(why, n, "the Mcp-Name header must be '%s', as in the body", name);
        return why;
    }
    return NULL;
}

/* ---- requests ----------------------------------------------------------- */

static bool wants_progress(const json_t *msg)
{
    json_t *meta = json_object_get(json_object_get(msg, "params"), "_meta");
    return json_object_get(meta, "progressToken") != NULL;
}

static bool accepts(const fr_httphead *hd, const char *type)
{
    const fr_httphead_field *f = fr_httphead_get(hd, "Accept");
    return !f || fr_httphead_has_token(f->value, f->value_len, type) ||
           fr_httphead_has_token(f->value, f->value_len, "*/*");
}

static void handle_delete(conn *c, const fr_httphead *hd)
{
    const fr_httphead_field *sid = fr_httphead_get(hd, "Mcp-Session-Id");
    if (!sid) {
        send_rpc_error(c, 400, NULL, NULL, -32600,
                       "DELETE ends a session: send its Mcp-Session-Id header");
        return;
    }
    holder *o = find_session(c->h, sid->value, sid->value_len);
    if (!o) {
        send_rpc_error(c, 404, NULL, NULL, ERR_SESSION, "Session not found");
        return;
    }
    fr_log_event(FR_LOG_DEBUG, "mcpd", "mcpd.session_ended", "http session=ended");
    holder_free(o);
    send_answer(c, 200, NULL, NULL, NULL);
}

/* Makes room for a session: ends the one idle longest (no request in
 * flight; clients that never DELETE leave such sessions behind). Returns
 * false when every session has a request in flight. */
static bool evict_idle_session(fr_mcpd_http *h)
{
    holder *oldest = NULL;
    for (holder *o = h->sessions; o; o = o->next)
        if (o->inflight == 0 && (!oldest || o->used < oldest->used))
            oldest = o;
    if (!oldest)
        return false;
    fr_log_event(FR_LOG_INFO, "mcpd", "mcpd.session_evicted",
                 "http session=evicted reason=\"%d sessions\"", MAX_SESSIONS);
    holder_free(oldest);
    return true;
}

/* Chooses the peer of a POST: its session, a new session (initialize), or
 * a stateless peer of its own (2026-07-28). Returns NULL after answering
 * the error itself. */
static holder *post_peer(conn *c, const fr_httphead *hd, const json_t *msg, const json_t *id,
                         bool *created)
{
    fr_mcpd_http *h = c->h;
    const char *method = json_string_value(json_object_get(msg, "method"));
    const fr_httphead_field *sid = fr_httphead_get(hd, "Mcp-Session-Id");
    const fr_httphead_field *pv = fr_httphead_get(hd, "MCP-Protocol-Version");
    *created = false;
    if (sid) {
        holder *o = find_session(h, sid->value, sid->value_len);
        if (o)
            o->used = ++h->uses;
        if (!o)
            send_rpc_error(c, 404, NULL, id, ERR_SESSION,
                           "Session not found: it ended; initialize a new one");
        else if (pv && !field_equals(pv, "2025-11-25") && !field_equals(pv, "2025-06-18") &&
                 !field_equals(pv, "2025-03-26")) {
            send_rpc_error(c, 400, NULL, id, -32600,
                           "Bad Request: unsupported MCP-Protocol-Version for a session "
                           "(2025-11-25, 2025-06-18 or 2025-03-26)");
            o = NULL;
        }
        return o;
    }
    bool stateless = body_revision(msg) || field_equals(pv, REV_2026);
    if (stateless) {
        char why[256];
        bool invalid = false;
        if (stateless_mismatch(hd, msg, why, sizeof why, &invalid)) {
            send_rpc_error(c, 400, NULL, id, invalid ? -32602 : ERR_HEADERS, why);
            return NULL;
        }
        *created = true;
        return holder_new(h, false);
    }
    if (method && strcmp(method, "initialize") == 0) {
        if (h->nsessions >= MAX_SESSIONS && !evict_idle_session(h)) {
            send_rpc_error(c, 503, NULL, id, -32000,
                           "too many sessions, each with a call in flight: end one (DELETE) "
                           "or try again later");
            return NULL;
        }
        *created = true;
        return holder_new(h, true);
    }
    send_rpc_error(c, 400, NULL, id, -32600,
                   "Bad Request: Mcp-Session-Id header is required (initialize first, or "
                   "speak 2026-07-28 with MCP-Protocol-Version)");
    return NULL;
}

static void handle_post(conn *c, const fr_httphead *hd, const char *body, size_t len)
{
    const fr_httphead_field *ct = fr_httphead_get(hd, "Content-Type");
    if (!ct || !fr_httphead_has_token(ct->value, ct->value_len, "application/json")) {
        send_rpc_error(c, 415, NULL, NULL, -32600, "Content-Type must be application/json");
        return;
    }
    if (!accepts(hd, "application/json") && !accepts(hd, "text/event-stream")) {
        send_rpc_error(c, 406, NULL, NULL, -32600,
                       "Accept must allow application/json or text/event-stream");
        return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb(body, len, 0, &jerr);
    if (!msg) {
        send_rpc_error(c, 400, NULL, NULL, -32700, "Parse error: the body is not JSON");
        return;
    }
    if (!json_is_object(msg)) {
        send_rpc_error(c, 400, NULL, NULL, -32600,
                       "Invalid Request: one JSON-RPC message per POST (no batches over HTTP)");
        json_decref(msg);
        return;
    }
    const json_t *id = json_object_get(msg, "id");
    bool is_request = json_object_get(msg, "method") && id && !json_is_null(id);
    bool created = false;
    holder *o = post_peer(c, hd, msg, id, &created);
    if (!o) {
        json_decref(msg);
        return;
    }
    if (!is_request) {
        /* a notification or a response: accepted, nothing comes back */
        fr_mcpd_peer_input(o->peer, body, len, NULL);
        send_answer(c, 202, NULL, NULL, NULL);
        if (created)
            holder_free(o); /* nothing stays open for a message that is not a request */
        json_decref(msg);
        return;
    }
    req *r = fr_xcalloc(1, sizeof *r);
    r->c = c;
    r->owner = o;
    o->inflight++;
    if (created && o->id[0])
        r->extra = fr_xasprintf("Mcp-Session-Id: %s\r\n", o->id);
    r->sse = wants_progress(msg) && accepts(hd, "text/event-stream") && c->keep_alive;
    json_decref(msg);
    c->r = r;
    if (r->sse) {
        fr_buf b;
        fr_buf_init(&b, 0);
        fr_buf_printf(&b,
                      "HTTP/1.1 200 OK\r\nServer: flowrun\r\nContent-Type: text/event-stream\r\n"
                      "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: keep-alive\r\n%s\r\n",
                      r->extra ? r->extra : "");
        conn_write(c, &b);
    }
    fr_mcpd_peer_input(o->peer, body, len, r);
}

static void dispatch(conn *c, const fr_httphead *hd, const char *body, size_t len)
{
    fr_mcpd_http *h = c->h;
    if (!authorized(h, hd)) {
        fr_log_event(FR_LOG_INFO, "mcpd", "mcpd.refused", "http refused=unauthorized");
        send_rpc_error(c, 401, "WWW-Authenticate: Bearer realm=\"flowrun\"\r\n", NULL, -32600,
                       "Unauthorized: send Authorization: Bearer <token>");
        return;
    }
    if (!origin_allowed(h, hd)) {
        fr_log_event(FR_LOG_INFO, "mcpd", "mcpd.refused", "http refused=origin");
        send_rpc_error(c, 403, NULL, NULL, -32600,
                       "Forbidden: only pages and hosts on this machine (localhost) may call this "
                       "server");
        return;
    }
    size_t tlen = hd->target_len;
    const char *q = memchr(hd->target, '?', tlen);
    if (q)
        tlen = (size_t)(q - hd->target);
    if (tlen != 4 || memcmp(hd->target, "/mcp", 4) != 0) {
        send_rpc_error(c, 404, NULL, NULL, -32600, "Not Found: the MCP endpoint is /mcp");
        return;
    }
    if (hd->method_len == 4 && memcmp(hd->method, "POST", 4) == 0)
        handle_post(c, hd, body, len);
    else if (hd->method_len == 6 && memcmp(hd->method, "DELETE", 6) == 0)
        handle_delete(c, hd);
    else
        send_rpc_error(c, 405, "Allow: POST, DELETE\r\n", NULL, -32600,
                       "Method Not Allowed: POST a JSON-RPC message (no server-initiated stream)");
}

/* Serves the requests at the front of the input, one at a time. */
static void conn_process(conn *c)
{
    c->in_process = true;
    while (!c->closing && !c->draining && !c->r) {
        size_t skip = 0; /* stray CRLFs between requests are allowed */
        while (skip < c->in.len && (c->in.data[skip] == '\r' || c->in.data[skip] == '\n'))
            skip++;
        if (skip) {
            memmove(c->in.data, c->in.data + skip, c->in.len - skip);
            c->in.len -= skip;
            c->scan = 0;
        }
        size_t head = fr_httphead_end(fr_buf_str(&c->in), c->in.len, &c->scan);
        if (!head) {
            if (c->in.len > MAX_HEAD)
                send_fatal(c, 431);
            break;
        }
        if (head > MAX_HEAD) {
            send_fatal(c, 431);
            break;
        }
        fr_httphead *hd = fr_xmalloc(sizeof *hd);
        int status = fr_httphead_parse(c->in.data, head, hd);
        bool have = false;
        unsigned long long blen = 0;
        if (!status)
            status = fr_httphead_length(hd, &have, &blen);
        if (!status && fr_httphead_get(hd, "Transfer-Encoding"))
            status = 411;
        if (!status && blen > MAX_BODY)
            status = 413;
        if (status) {
            free(hd);
            send_fatal(c, status);
            break;
        }
        if (c->in.len - head < blen) {
            free(hd);
            break; /* the body is still coming */
        }
        c->keep_alive = hd->minor >= 1;
        const fr_httphead_field *cn = fr_httphead_get(hd, "Connection");
        if (cn && fr_httphead_has_token(cn->value, cn->value_len, "close"))
            c->keep_alive = false;
        else if (cn && fr_httphead_has_token(cn->value, cn->value_len, "keep-alive"))
            c->keep_alive = true;
        size_t total = head + (size_t)blen;
        char *body = fr_xstrndup(c->in.data + head, (size_t)blen);
        dispatch(c, hd, body, (size_t)blen);
        free(body);
        free(hd);
        if (c->closing)
            break;
        memmove(c->in.data, c->in.data + total, c->in.len - total);
        c->in.len -= total;
        c->in.data[c->in.len] = '\0';
        c->scan = 0;
    }
    c->in_process = false;
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = hd->data;
    *buf = uv_buf_init(c->h->rbuf, sizeof c->h->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread < 0) {
        if (c->r)
            fr_log_event(FR_LOG_DEBUG, "mcpd", "mcpd.client_gone",
                         "http client=gone request=dropped");
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing || c->draining)
        return;
    c->active = uv_now(c->h->loop);
    if (fr_buf_append(&c->in, buf->base, (size_t)nread) != FR_OK) {
        if (c->r)
            conn_close(c);
        else
            send_fatal(c, 413);
        return;
    }
    if (!c->r)
        conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    fr_mcpd_http *h = server->data;
    if (status < 0 || h->closing)
        return;
    conn *c = fr_xcalloc(1, sizeof *c);
    c->h = h;
    fr_buf_init(&c->in, MAX_HEAD + MAX_BODY + READ_BUF);
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    c->next = h->conns;
    if (h->conns)
        h->conns->prev = c;
    h->conns = c;
    h->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || h->nconns > MAX_CONNS) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->active = uv_now(h->loop);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* ---- lifecycle ---------------------------------------------------------- */

static bool addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return a->s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(a);
}

/* Closes the connections that have sat IDLE_MS with no request in
 * flight: a client that opens one and sends nothing holds no slot. */
static void on_sweep(uv_timer_t *t)
{
    fr_mcpd_http *h = t->data;
    uint64_t now = uv_now(h->loop);
    for (conn *c = h->conns; c; c = c->next)
        if (!c->r && now - c->active >= IDLE_MS)
            conn_close(c);
}

static void on_handle_closed(uv_handle_t *hd)
{
    fr_mcpd_http *h = hd->data;
    h->open_handles--;
    maybe_done(h);
}

/* Starts listening; see http_serve.h. */
int fr_mcpd_http_start(uv_loop_t *loop, fr_mcpd *d, const fr_mcpd_http_opts *opts,
                       fr_mcpd_http **out, fr_error *err)
{
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    const char *addr = opts->addr ? opts->addr : "127.0.0.1";
    if (opts->port < 0 || opts->port > 65535)
        return fr_error_set(err, FR_EUSAGE, "--http", 0, "port %d is not in 0..65535", opts->port);
    if (uv_ip4_addr(addr, opts->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, opts->port, (struct sockaddr_in6 *)&ss) != 0)
        return fr_error_set(err, FR_EUSAGE, "--http", 0,
                            "'%s' is not an IPv4 or IPv6 address: give one such as 127.0.0.1",
                            addr);
    bool has_token = opts->token && opts->token[0];
    if (!addr_is_loopback(&ss) && !has_token)
        return fr_error_set(err, FR_EUSAGE, "--http", 0,
                            "%s is not a loopback address: a bearer token is required there", addr);

    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    fr_mcpd_http *h = fr_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->d = d;
    h->token = has_token ? fr_xstrdup(opts->token) : NULL;
    h->loopback = addr_is_loopback(&ss);
    uv_tcp_init(loop, &h->listener);
    uv_timer_init(loop, &h->reaper);
    uv_timer_init(loop, &h->sweeper);
    h->listener.data = h;
    h->reaper.data = h;
    h->sweeper.data = h;
    h->open_handles = 3;
    int rc = uv_tcp_bind(&h->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
    if (rc < 0) {
        fr_error_set(err, FR_EIO, "--http", 0, "cannot listen on %s:%d: %s (is the port in use?)",
                     addr, opts->port, uv_strerror(rc));
        h->closing = true;
        uv_close((uv_handle_t *)&h->listener, on_handle_closed);
        uv_close((uv_handle_t *)&h->reaper, on_handle_closed);
        uv_close((uv_handle_t *)&h->sweeper, on_handle_closed);
        return FR_EIO;
    }
    struct sockaddr_storage bound;
    int alen = sizeof bound;
    uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound, &alen);
    h->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    uv_timer_start(&h->sweeper, on_sweep, IDLE_MS / 4, IDLE_MS / 4);
    fr_log_event(FR_LOG_DEBUG, "mcpd", "mcpd.listening", "http listening port=%d token=%s", h->port,
                 h->token ? "required" : "none");
    *out = h;
    return FR_OK;
}

/* The port; see http_serve.h. */
int fr_mcpd_http_port(const fr_mcpd_http *h)
{
    return h->port;
}

/* Stops and frees; see http_serve.h. */
void fr_mcpd_http_close(fr_mcpd_http *h, void (*done)(void *ud), void *ud)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    h->done = done;
    h->done_ud = ud;
    for (conn *c = h->conns; c; c = c->next)
        conn_close(c);
    on_reap(&h->reaper);
    while (h->sessions)
        holder_free(h->sessions);
    uv_close((uv_handle_t *)&h->listener, on_handle_closed);
    uv_close((uv_handle_t *)&h->reaper, on_handle_closed);
    uv_close((uv_handle_t *)&h->sweeper, on_handle_closed);
}
