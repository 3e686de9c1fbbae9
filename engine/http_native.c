/* engine/http's native HTTP/1.1 client for plain http:// URLs no proxy
 * applies to (https and proxies stay with curl, http.c dispatches): libuv
 * TCP streams, a keep-alive pool of idle connections per host:port, one
 * read buffer shared by every connection (replies are parsed as they are
 * read, engine/util/h1resp), host names resolved once per run on libuv's
 * thread pool. A transfer's deadlines (connect, first byte, idle, total)
 * are one uv_timer; its memory goes with that timer's close callback. Done
 * callbacks run from libuv callbacks, never inside a data callback. */

#include "engine/http.h"
#include "engine/http_int.h"

#include "engine/util/err.h"
#include "engine/util/fdlimit.h"
#include "engine/util/h1resp.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_MAX_RESPONSE ((size_t)8 * 1024 * 1024)
#define DEFAULT_CONNECT_MS   10000L
#define READ_BUFFER_SIZE     65536
#define NAT_URL_MAX          64 /* distinct URLs remembered; others go to curl */
#define SPARE_MAX            4096
#define RETRY_AFTER_MAX_NAT  64

typedef struct nat_host nat_host;
typedef struct nat_conn nat_conn;
typedef struct nat_xfer nat_xfer;

enum { HOST_NEW = 0, HOST_RESOLVING, HOST_READY };

/* A host:port: its addresses once known, its idle connections. Lives as
 * long as the engine. */
struct nat_host {
    nat_host *next;
    char *name; /* without brackets */
    int port;
    char *host_line; /* "Host: name[:port]\r\n" */
    size_t host_line_len;
    int state;
    struct sockaddr_storage *addrs;
    size_t naddrs;
    uv_getaddrinfo_t gai; /* while HOST_RESOLVING */
    nat_xfer *waiting;    /* transfers waiting for the addresses, by wnext */
    nat_conn *idle;       /* idle connections, by inext (most recent first) */
    size_t good;          /* the address that connected last: new connections start there */
    size_t nidle;
};

/* One connection. Owned by the engine until uv_close; freed in its close
 * callback. */
struct nat_conn {
    uv_tcp_t tcp; /* tcp.data points back */
    uv_connect_t creq;
    uv_write_t wreq;
    fr_http *h;
    nat_host *host;
    nat_xfer *x; /* the transfer it serves, NULL when idle */
    nat_conn *inext, *iprev;
    fr_h1_resp p;
    long served; /* responses completed on it */
    bool closing, idle;
    bool writing; /* wreq in flight */
};

struct nat_xfer {
    xfer_base base; /* first: base.native is true */
    fr_http *h;
    nat_xfer *prev, *next; /* live transfers */
    nat_xfer *wnext;       /* in host->waiting */
    bool waiting;
    nat_host *host;
    nat_conn *conn;
    unsigned long id;
    char *req; /* the request: head (with the key: wiped) and body */
    size_t req_len, head_len;
    bool head_request;
    fr_http_data_fn on_data;
    fr_http_done_fn on_done;
    void *ud;

    uv_timer_t timer;   /* deadlines and deferred failures; frees the xfer on close */
    uint64_t armed_due; /* the uv_now a deadline armed the timer for, 0 for none */
    http_deadlines dl;  /* first byte, idle, total */
    uint64_t start_ns, first_ns;
    long connect_ms;
    size_t max_response, bytes;
    size_t addr_index;     /* address being tried */
    size_t tried;          /* addresses that failed for this connection */
    uint64_t connect_from; /* uv_now the connect deadline counts from */
    long status;
    bool starting;           /* submitted, not yet started: in n->starts */
    nat_xfer *sprev, *snext; /* in n->starts */
    bool connecting, retried, finished, cancelled, no_fds;
    int pending_rc; /* a failure to deliver from the timer, 0 if none */
    char retry_after[RETRY_AFTER_MAX_NAT];
    char retry_after_ms[RETRY_AFTER_MAX_NAT];
    char msg[200];
    char *capture, *captured;
};

typedef struct nat_url {
    char *url;
    bool native;
    nat_host *host;
    char *target; /* path and query, "/" at least */
} nat_url;

struct fr_nat {
    nat_host *hosts;
    nat_url urls[NAT_URL_MAX];
    size_t nurls;
    nat_xfer *xfers, *spare;
    nat_xfer *starts, *starts_tail; /* submitted, to start at the end of a callback */
    size_t nspare;
    size_t active;
    long open_conns; /* connections not closing */
    long connects, made;
    unsigned long next_id;
    nat_xfer *in_data; /* whose data callback runs */
    char rbuf[READ_BUFFER_SIZE];
};

static void xfer_connect(nat_xfer *x, bool fresh);
static void conn_close(nat_conn *c);

/* ---- URLs and proxies ------------------------------------------------------ */

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* True when a proxy variable applies to `host` (curl would use it). */
static bool proxied(const char *host)
{
    static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"};
    bool any = false;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0] && !any; i++) {
        const char *v = getenv(vars[i]);
        any = v && v[0];
    }
    if (!any)
        return false;
    const char *np = getenv("no_proxy");
    if (!np || !np[0])
        np = getenv("NO_PROXY");
    if (!np)
        return true;
    size_t hn = strlen(host);
    while (*np) {
        while (*np == ',' || *np == ' ')
            np++;
        const char *s = np;
        while (*np && *np != ',')
            np++;
        const char *e = np;
        while (e > s && e[-1] == ' ')
            e--;
        if ((e - s == 1 && *s == '*') || ((size_t)(e - s) == hn && strncasecmp(s, host, hn) == 0))
            return false;
    }
    return true;
}

static nat_host *host_get(fr_nat *n, const char *name, size_t len, int port)
{
    for (nat_host *o = n->hosts; o; o = o->next)
        if (o->port == port && strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    nat_host *o = fr_xcalloc(1, sizeof *o);
    o->name = fr_xstrndup(name, len);
    o->port = port;
    bool v6 = memchr(name, ':', len) != NULL;
    char line[300];
    int k = port == 80 ? snprintf(line, sizeof line, "Host: %s%s%s\r\n", v6 ? "[" : "", o->name,
                                  v6 ? "]" : "")
                       : snprintf(line, sizeof line, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", o->name,
                                  v6 ? "]" : "", port);
    o->host_line = fr_xstrndup(line, (size_t)k);
    o->host_line_len = (size_t)k;
    /* A numeric address needs no resolving. */
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (uv_ip4_addr(o->name, port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(o->name, port, (struct sockaddr_in6 *)&ss) == 0) {
        o->addrs = fr_xmalloc(sizeof ss);
        o->addrs[0] = ss;
        o->naddrs = 1;
        o->state = HOST_READY;
    }
    o->next = n->hosts;
    n->hosts = o;
    return o;
}

/* Parses `url` into u when it is plain http:// the native client carries:
 * host name or literal, port, a target of printable ASCII. */
static void url_parse(fr_nat *n, const char *url, nat_url *u)
{
    u->native = false;
    if (strncasecmp(url, "http://", 7) != 0)
        return;
    const char *p = url + 7, *host, *host_end;
    for (const char *q = p; *q; q++)
        if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f)
            return;
    if (*p == '[') {
        host = ++p;
        while (*p && *p != ']')
            p++;
        if (*p != ']' || p == host)
            return;
        host_end = p++;
        for (const char *q = host; q < host_end; q++)
            if (!(host_char(*q) || *q == ':'))
                return;
    } else {
        host = p;
        while (host_char(*p))
            p++;
        host_end = p;
        if (host_end == host)
            return;
    }
    long port = 80;
    if (*p == ':') {
        p++;
        if (*p < '0' || *p > '9')
            return;
        port = 0;
        while (*p >= '0' && *p <= '9' && port <= 65535)
            port = port * 10 + (*p++ - '0');
        if (port < 1 || port > 65535)
            return;
    }
    if (*p && *p != '/' && *p != '?' && *p != '#')
        return; /* userinfo and the like: curl's */
    char name[256];
    size_t hl = (size_t)(host_end - host);
    if (hl >= sizeof name)
        return;
    memcpy(name, host, hl);
    name[hl] = '\0';
    if (proxied(name))
        return;
    const char *frag = strchr(p, '#');
    size_t tl = frag ? (size_t)(frag - p) : strlen(p);
    char *target = fr_xmalloc(tl + 2);
    size_t k = 0;
    if (tl == 0 || p[0] != '/')
        target[k++] = '/';
    memcpy(target + k, p, tl);
    target[k + tl] = '\0';
    u->target = target;
    u->host = host_get(n, host, hl, (int)port);
    u->native = true;
}

/* The remembered entry of `url`, parsed at first sight; NULL when there is
 * no room (that URL then goes to curl). */
static const nat_url *url_lookup(fr_nat *n, const char *url)
{
    for (size_t i = 0; i < n->nurls; i++)
        if (strcmp(n->urls[i].url, url) == 0)
            return &n->urls[i];
    if (n->nurls == NAT_URL_MAX)
        return NULL;
    nat_url *u = &n->urls[n->nurls++];
    u->url = fr_xstrdup(url);
    url_parse(n, url, u);
    return u;
}

/* ---- memory and handles ----------------------------------------------------- */

static void xfer_drop(nat_xfer *x)
{
    if (x->req) {
        fr_wipe(x->req, x->head_len);
        free(x->req);
        x->req = NULL;
    }
    free(x->capture);
    free(x->captured);
    x->capture = x->captured = NULL;
}

static void on_xfer_timer_closed(uv_handle_t *hd)
{
    nat_xfer *x = hd->data;
    fr_http *h = x->h;
    fr_nat *n = h->nat;
    xfer_drop(x);
    if (!h->shut && n->nspare < SPARE_MAX) {
        x->next = n->spare;
        n->spare = x;
        n->nspare++;
    } else {
        free(x);
    }
    fr_http_handle_closed(h);
}

static void on_conn_closed(uv_handle_t *hd)
{
    nat_conn *c = hd->data;
    fr_http *h = c->h;
    fr_h1_free(&c->p);
    free(c);
    fr_http_handle_closed(h);
}

static void idle_remove(nat_conn *c)
{
    if (!c->idle)
        return;
    nat_host *o = c->host;
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        o->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    c->inext = c->iprev = NULL;
    c->idle = false;
    o->nidle--;
}

static void conn_close(nat_conn *c)
{
    if (c->closing)
        return;
    idle_remove(c);
    if (c->x) {
        c->x->conn = NULL;
        c->x = NULL;
    }
    c->closing = true;
    c->h->nat->open_conns--;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void xfer_unlink(fr_nat *n, nat_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        n->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

static void wait_remove(nat_xfer *x)
{
    if (!x->waiting)
        return;
    for (nat_xfer **pp = &x->host->waiting; *pp; pp = &(*pp)->wnext) {
        if (*pp == x) {
            *pp = x->wnext;
            break;
        }
    }
    x->wnext = NULL;
    x->waiting = false;
}

static void start_remove(nat_xfer *x)
{
    if (!x->starting)
        return;
    fr_nat *n = x->h->nat;
    if (x->sprev)
        x->sprev->snext = x->snext;
    else
        n->starts = x->snext;
    if (x->snext)
        x->snext->sprev = x->sprev;
    else
        n->starts_tail = x->sprev;
    x->sprev = x->snext = NULL;
    x->starting = false;
}

/* Ends x's part in everything (its connection closed when `close_conn` or
 * it is mid-reply) and closes its timer; the struct goes with the timer. */
static void xfer_release(nat_xfer *x, bool close_conn)
{
    fr_http *h = x->h;
    fr_nat *n = h->nat;
    wait_remove(x);
    start_remove(x);
    if (x->conn) {
        nat_conn *c = x->conn;
        c->x = NULL;
        x->conn = NULL;
        if (close_conn)
            conn_close(c);
    }
    xfer_unlink(n, x);
    if (!x->finished)
        n->active--;
    x->finished = true;
    if (x->req) {
        fr_wipe(x->req, x->head_len);
        free(x->req);
        x->req = NULL;
    }
    uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
}

/* ---- deadlines -------------------------------------------------------------- */

/* The shared deadlines, and the connect's (curl times its own). */
static uint64_t next_deadline(const nat_xfer *x, deadline_kind *kind)
{
    uint64_t best = fr_http_next_deadline(&x->dl, kind);
    uint64_t connect_due = x->connect_from + (uint64_t)x->connect_ms;
    if (x->connecting && connect_due < best) {
        best = connect_due;
        *kind = DEADLINE_CONNECT;
    }
    return best;
}

static void on_xfer_timer(uv_timer_t *t);

static void xfer_arm(nat_xfer *x)
{
    deadline_kind kind;
    uint64_t due = next_deadline(x, &kind);
    if (x->pending_rc || x->starting) {
        uv_timer_start(&x->timer, on_xfer_timer, 0, 0);
        x->armed_due = 0;
        return;
    }
    if (kind == DEADLINE_NONE) {
        uv_timer_stop(&x->timer);
        x->armed_due = 0;
        return;
    }
    uint64_t now = uv_now(x->h->loop);
    if (due < now)
        due = now;
    /* A deadline that moved later (each read pushes the idle one on) keeps
     * the timer armed as it is: it fires no later than needed, and
     * on_xfer_timer arms it again for what is then due. */
    if (x->armed_due && x->armed_due <= due && uv_is_active((uv_handle_t *)&x->timer))
        return;
    uv_timer_start(&x->timer, on_xfer_timer, due - now, 0);
    x->armed_due = due;
}

/* ---- completion ------------------------------------------------------------- */

/* Releases x and delivers its result; runs from a libuv callback. */
static void xfer_finish(nat_xfer *x, int rc, const char *error, bool close_conn)
{
    fr_http_result res = {
        .rc = rc,
        .status = x->status,
        .retry_after_s = fr_http_retry_after_parse(x->retry_after, x->retry_after_ms),
        .ttfb_ms = x->dl.got_body ? (double)(x->first_ns - x->start_ns) / 1e6 : -1,
        .total_ms = (double)(uv_hrtime() - x->start_ns) / 1e6,
        .bytes = x->bytes,
        .error = rc == FR_OK ? NULL : error,
        .no_fds = rc == FR_ECONNECT && x->no_fds,
        .captured = x->captured,
    };
    if (res.no_fds) {
        snprintf(x->msg, sizeof x->msg,
                 "out of file descriptors (ulimit -n %ld): no socket could be opened",
                 fr_fd_limit());
        res.error = x->msg;
    }
    xfer_release(x, close_conn);
    fr_log_event(FR_LOG_DEBUG, "http", "http.done",
                 "xfer=%lu status=%ld rc=%s bytes=%zu ttfb_ms=%.1f total_ms=%.1f", x->id,
                 res.status, fr_err_name(rc), res.bytes, res.ttfb_ms, res.total_ms);
    if (x->on_done)
        x->on_done(x->ud, &res);
}

/* A failure found where no done callback may run (inside submit): the
 * timer delivers it on the next loop turn. */
static void fail_later(nat_xfer *x, int rc)
{
    x->pending_rc = rc;
    x->connecting = false;
    xfer_arm(x);
}

static void on_xfer_timer(uv_timer_t *t)
{
    nat_xfer *x = t->data;
    fr_http *h = x->h;
    if (x->finished)
        return;
    fr_http_enter(h);
    if (x->pending_rc) {
        xfer_finish(x, x->pending_rc, x->msg, true);
        goto out;
    }
    if (x->starting) {
        start_remove(x);
        xfer_connect(x, false);
        xfer_arm(x);
        goto out;
    }
    deadline_kind kind;
    uint64_t due = next_deadline(x, &kind);
    if (kind == DEADLINE_NONE)
        goto out;
    if (due > uv_now(h->loop)) {
        xfer_arm(x);
        goto out;
    }
    if (kind == DEADLINE_CONNECT)
        snprintf(x->msg, sizeof x->msg, "Connection timed out after %ld milliseconds",
                 x->connect_ms);
    else
        fr_http_deadline_text(&x->dl, kind, x->msg, sizeof x->msg);
    xfer_finish(x, FR_ETIMEDOUT, x->msg, true);
out:
    fr_http_leave(h);
}

/* ---- reading ---------------------------------------------------------------- */

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    nat_conn *c = hd->data;
    fr_nat *n = c->h->nat;
    buf->base = n->rbuf;
    buf->len = sizeof n->rbuf;
}

static void on_header_field(nat_xfer *x, const fr_h1_event *ev)
{
    char *dst = NULL;
    if (ev->name_len == 11 && strncasecmp(ev->name, "Retry-After", 11) == 0)
        dst = x->retry_after;
    else if (ev->name_len == 14 && strncasecmp(ev->name, "Retry-After-Ms", 14) == 0)
        dst = x->retry_after_ms;
    if (dst) {
        size_t k =
            ev->value_len < RETRY_AFTER_MAX_NAT - 1 ? ev->value_len : RETRY_AFTER_MAX_NAT - 1;
        memcpy(dst, ev->value, k);
        dst[k] = '\0';
    }
    if (x->capture && !x->captured && strlen(x->capture) == ev->name_len &&
        strncasecmp(ev->name, x->capture, ev->name_len) == 0)
        x->captured = fr_xstrndup(ev->value, ev->value_len < 255 ? ev->value_len : 255);
}

/* Hands a body piece to the reader. Returns FR_OK to go on, else the code
 * that ends the transfer (x->msg says why); 1 when x was cancelled from
 * inside its data callback. */
static int deliver(nat_xfer *x, const char *data, size_t len)
{
    if (len > x->max_response - x->bytes) {
        snprintf(x->msg, sizeof x->msg, "reply larger than %zu bytes", x->max_response);
        return FR_ETOOBIG;
    }
    if (len == 0)
        return FR_OK;
    if (!x->dl.got_body) {
        x->dl.got_body = true;
        x->first_ns = uv_hrtime();
    }
    x->bytes += len;
    if (!x->on_data) {
        x->dl.activity_ms = uv_now(x->h->loop);
        return FR_OK;
    }
    fr_nat *n = x->h->nat;
    n->in_data = x;
    int rc = x->on_data(x->ud, x->status, data, len);
    n->in_data = NULL;
    if (x->cancelled)
        return 1;
    if (rc == FR_OK)
        x->dl.activity_ms = uv_now(x->h->loop);
    else if (rc == FR_HTTP_QUIET)
        rc = FR_OK;
    if (rc != FR_OK)
        snprintf(x->msg, sizeof x->msg, "reply reader stopped: %s", fr_strerror(rc));
    return rc;
}

/* The connection's reply is complete: it goes idle or closes, then done. */
static void reply_done(nat_conn *c, nat_xfer *x, bool leftover)
{
    c->served++;
    bool keep = c->p.keep_alive && !leftover && !c->writing && !c->h->closing;
    c->x = NULL;
    x->conn = NULL;
    if (keep) {
        nat_host *o = c->host;
        c->idle = true;
        c->inext = o->idle;
        c->iprev = NULL;
        if (o->idle)
            o->idle->iprev = c;
        o->idle = c;
        o->nidle++;
    } else {
        conn_close(c);
    }
    xfer_finish(x, FR_OK, NULL, false);
}

/* Parses what arrived for c's transfer. */
static void conn_parse(nat_conn *c, const char *data, size_t len)
{
    nat_xfer *x = c->x;
    while (!c->closing && c->x == x) {
        fr_h1_event ev;
        size_t used = fr_h1_feed(&c->p, data, len, &ev);
        data += used;
        len -= used;
        switch (ev.kind) {
        case FR_H1_NEED:
            return;
        case FR_H1_HEADER:
            on_header_field(x, &ev);
            break;
        case FR_H1_HEAD_END:
            x->status = c->p.status;
            x->dl.headers_done = true;
            x->dl.activity_ms = uv_now(c->h->loop);
            if (c->p.has_length && !c->p.chunked && !c->p.no_body && c->p.status != 204 &&
                c->p.status != 304 && c->p.length > x->max_response) {
                snprintf(x->msg, sizeof x->msg, "reply larger than %zu bytes", x->max_response);
                xfer_finish(x, FR_ETOOBIG, x->msg, true);
                return;
            }
            xfer_arm(x);
            break;
        case FR_H1_BODY: {
            int rc = deliver(x, ev.data, ev.len);
            if (rc == 1) { /* cancelled from its data callback */
                xfer_release(x, true);
                return;
            }
            if (rc != FR_OK) {
                xfer_finish(x, rc, x->msg, true);
                return;
            }
            break;
        }
        case FR_H1_DONE:
            reply_done(c, x, len > 0);
            return;
        default:
            snprintf(x->msg, sizeof x->msg, "malformed reply: %s", c->p.error);
            xfer_finish(x, FR_EIO, x->msg, true);
            return;
        }
    }
}

/* The connection ended under its transfer: done, retried or failed. */
static void conn_lost(nat_conn *c, ssize_t why)
{
    nat_xfer *x = c->x;
    if (why == UV_EOF && fr_h1_eof(&c->p)) {
        reply_done(c, x, false);
        return;
    }
    /* A reused connection the server closed before a byte of the reply
     * came: the request is sent once more on a new one, as curl does. */
    if (c->served > 0 && fr_h1_nothing(&c->p) && !x->retried) {
        x->retried = true;
        conn_close(c);
        x->tried = 0;
        x->connect_from = uv_now(c->h->loop);
        xfer_connect(x, true);
        xfer_arm(x);
        return;
    }
    if (fr_h1_nothing(&c->p) && why == UV_EOF)
        snprintf(x->msg, sizeof x->msg, "Empty reply from server");
    else if (why == UV_EOF && c->p.has_length && !c->p.chunked)
        snprintf(x->msg, sizeof x->msg, "transfer closed with %llu bytes remaining to read",
                 (unsigned long long)c->p.remaining);
    else if (why == UV_EOF)
        snprintf(x->msg, sizeof x->msg, "transfer closed with outstanding read data remaining");
    else
        snprintf(x->msg, sizeof x->msg, "Recv failure: %s", strerror((int)-why));
    xfer_finish(x, FR_EIO, x->msg, true);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    nat_conn *c = st->data;
    if (nread == 0 || c->closing)
        return;
    fr_http *h = c->h;
    fr_http_enter(h);
    if (!c->x) {
        conn_close(c); /* an idle connection closed, or spoke out of turn */
    } else if (nread < 0) {
        conn_lost(c, nread);
    } else {
        conn_parse(c, buf->base, (size_t)nread);
    }
    fr_http_leave(h);
}

/* ---- connecting and sending -------------------------------------------------- */

static void on_written(uv_write_t *w, int status)
{
    nat_conn *c = w->data;
    c->writing = false;
    if (status == 0 || c->closing || !c->x)
        return;
    fr_http *h = c->h;
    fr_http_enter(h);
    conn_lost(c, status == UV_EPIPE ? UV_ECONNRESET : status);
    fr_http_leave(h);
}

/* Sends x's request on c, which serves x from now on. */
static void conn_send(nat_conn *c, nat_xfer *x)
{
    c->x = x;
    x->conn = c;
    fr_h1_reset(&c->p, x->head_request);
    /* Most requests fit the socket's buffer at once: written so, they need
     * no write request, whose completion would touch epoll each time. */
    uv_buf_t b = uv_buf_init(x->req, (unsigned)x->req_len);
    int sent = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (sent == (int)x->req_len) {
        c->writing = false;
        return;
    }
    if (sent > 0)
        b = uv_buf_init(x->req + sent, (unsigned)(x->req_len - (size_t)sent));
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    c->writing = rc == 0;
    if (rc != 0) {
        snprintf(x->msg, sizeof x->msg, "Send failure: %s", uv_strerror(rc));
        conn_close(c);
        fail_later(x, FR_EIO);
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    nat_conn *c = req->data;
    if (c->closing || status == UV_ECANCELED)
        return;
    fr_http *h = c->h;
    nat_xfer *x = c->x;
    fr_http_enter(h);
    if (status < 0) {
        if (++x->tried < c->host->naddrs) {
            conn_close(c);
            x->addr_index = (x->addr_index + 1) % c->host->naddrs;
            xfer_connect(x, true);
        } else {
            snprintf(x->msg, sizeof x->msg, "Failed to connect to %s port %d after %.0f ms: %s",
                     c->host->name, c->host->port, (double)(uv_now(h->loop) - x->dl.start_ms),
                     strerror(-status));
            xfer_finish(x, FR_ECONNECT, x->msg, true);
        }
        goto out;
    }
    c->host->good = x->addr_index;
    h->nat->connects++;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, 30);
    x->connecting = false;
    xfer_arm(x);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    c->x = NULL;
    conn_send(c, x);
out:
    fr_http_leave(h);
}

/* Closes an idle connection (any host) when the cap leaves no room. */
static void make_room(fr_http *h)
{
    fr_nat *n = h->nat;
    if (h->max_conns <= 0 || n->open_conns < h->max_conns)
        return;
    for (nat_host *o = n->hosts; o; o = o->next) {
        if (o->idle) {
            nat_conn *c = o->idle;
            while (c->inext) /* the oldest */
                c = c->inext;
            conn_close(c);
            return;
        }
    }
}

/* Opens a connection for x to its host's address x->addr_index. */
static void conn_open(nat_xfer *x)
{
    fr_http *h = x->h;
    fr_nat *n = h->nat;
    make_room(h);
    nat_conn *c = fr_xcalloc(1, sizeof *c);
    c->h = h;
    c->host = x->host;
    uv_tcp_init(h->loop, &c->tcp);
    c->tcp.data = c;
    h->open_handles++;
    n->open_conns++;
    c->x = x;
    x->conn = c;
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp,
                            (const struct sockaddr *)&x->host->addrs[x->addr_index], on_connect);
    if (rc != 0) {
        if (fr_fd_exhausted(-rc))
            x->no_fds = true;
        snprintf(x->msg, sizeof x->msg, "Failed to connect to %s port %d: %s", x->host->name,
                 x->host->port, strerror(-rc));
        conn_close(c);
        fail_later(x, FR_ECONNECT);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    nat_host *o = (nat_host *)(void *)((char *)req - offsetof(nat_host, gai));
    fr_http *h = req->data;
    nat_xfer *list = o->waiting;
    o->waiting = NULL;
    size_t count = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET || a->ai_family == AF_INET6)
            count++;
    o->state = HOST_NEW; /* a failure is asked again by the next request */
    if (status == 0 && count > 0) {
        o->addrs = fr_xcalloc(count, sizeof *o->addrs);
        for (struct addrinfo *a = res; a; a = a->ai_next)
            if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
                a->ai_addrlen <= sizeof *o->addrs)
                memcpy(&o->addrs[o->naddrs++], a->ai_addr, a->ai_addrlen);
        o->state = HOST_READY;
    }
    uv_freeaddrinfo(res);
    fr_http_enter(h);
    while (list && !h->closing) {
        nat_xfer *x = list;
        list = x->wnext;
        x->wnext = NULL;
        x->waiting = false;
        if (o->state == HOST_READY) {
            x->addr_index = o->good;
            conn_open(x);
        } else {
            snprintf(x->msg, sizeof x->msg, "Could not resolve host: %s", o->name);
            xfer_finish(x, FR_ECONNECT, x->msg, true);
        }
    }
    fr_http_leave(h);
    fr_http_handle_closed(h);
}

/* Gets x a connection: an idle one of its host (unless `fresh`), else a
 * new one once the host's addresses are known. */
static void xfer_connect(nat_xfer *x, bool fresh)
{
    nat_host *o = x->host;
    fr_http *h = x->h;
    if (!fresh && o->idle) {
        nat_conn *c = o->idle;
        idle_remove(c);
        conn_send(c, x);
        return;
    }
    x->connecting = true;
    if (o->state == HOST_READY) {
        if (x->tried == 0)
            x->addr_index = o->good;
        conn_open(x);
        return;
    }
    x->wnext = o->waiting;
    o->waiting = x;
    x->waiting = true;
    if (o->state == HOST_RESOLVING)
        return;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[8];
    snprintf(port, sizeof port, "%d", o->port);
    o->gai.data = h;
    free(o->addrs);
    o->addrs = NULL;
    o->naddrs = 0;
    o->good = 0;
    /* The host owns the lookup: on_resolved finds it from its member. */
    int rc = uv_getaddrinfo(h->loop, &o->gai, on_resolved, o->name, port, &hints);
    if (rc != 0) {
        wait_remove(x);
        snprintf(x->msg, sizeof x->msg, "Could not resolve host: %s", o->name);
        fail_later(x, FR_ECONNECT);
        return;
    }
    o->state = HOST_RESOLVING;
    h->open_handles++;
}

/* ---- the interface (http.c dispatches) ---------------------------------------- */

/* True for a header line with an empty value, which curl drops. */
static bool empty_value(const char *line)
{
    const char *v = strchr(line, ':') + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v == '\0';
}

/* Which of the headers build_request writes itself the caller gave. */
enum { GAVE_HOST = 1, GAVE_CT = 2, GAVE_ACCEPT = 4, GAVE_CL = 8 };

/* The GAVE_ flags of `req`'s headers (as fr_http_has_header finds them: a
 * name, case aside, then ':'), and into *bytes their lengths plus 2 each,
 * in one pass over them instead of four scans and a strlen each. The four
 * names differ in length: a header's name is compared with the one of its
 * length at most. */
static unsigned given_headers(const fr_request *req, size_t *bytes)
{
    static const char *const name_of_len[15] = {
        [4] = "Host", [6] = "Accept", [12] = "Content-Type", [14] = "Content-Length"};
    static const unsigned flag_of_len[15] = {
        [4] = GAVE_HOST, [6] = GAVE_ACCEPT, [12] = GAVE_CT, [14] = GAVE_CL};
    unsigned gave = 0;
    size_t sum = 0;
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *h = req->headers[i];
        size_t n = strlen(h);
        sum += n + 2;
        const char *colon = memchr(h, ':', n < 15 ? n : 15);
        size_t len = colon ? (size_t)(colon - h) : 0;
        if (name_of_len[len] && strncasecmp(h, name_of_len[len], len) == 0)
            gave |= flag_of_len[len];
    }
    *bytes = sum;
    return gave;
}

/* Writes the request (head, then body) into x->req. */
static void build_request(nat_xfer *x, const nat_url *u, const fr_request *req, const char *method)
{
    const char *body = req->body ? req->body : "";
    size_t body_len = strlen(body), tl = strlen(u->target), ml = strlen(method), given;
    unsigned gave = given_headers(req, &given);
    bool host = gave & GAVE_HOST, ct = gave & GAVE_CT, accept = gave & GAVE_ACCEPT,
         cl = gave & GAVE_CL;
    size_t cap = ml + tl + 16 + u->host->host_line_len + 64 + 48 + 2 + body_len + given;
    char *p = fr_xmalloc(cap + 1), *w = p;
    memcpy(w, method, ml);
    w += ml;
    *w++ = ' ';
    memcpy(w, u->target, tl);
    w += tl;
    memcpy(w, " HTTP/1.1\r\n", 11);
    w += 11;
    if (!host) {
        memcpy(w, u->host->host_line, u->host->host_line_len);
        w += u->host->host_line_len;
    }
    if (!accept) {
        memcpy(w, "Accept: */*\r\n", 13);
        w += 13;
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        if (empty_value(req->headers[i]))
            continue;
        size_t n = strlen(req->headers[i]);
        memcpy(w, req->headers[i], n);
        w += n;
        *w++ = '\r';
        *w++ = '\n';
    }
    if (!ct) {
        static const char json[] = "Content-Type: application/json\r\n";
        memcpy(w, json, sizeof json - 1);
        w += sizeof json - 1;
    }
    if (!cl) {
        /* As sprintf's "Content-Length: %zu\r\n", without printf per request. */
        char num[24], *d = num + sizeof num;
        size_t v = body_len;
        do
            *--d = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        memcpy(w, "Content-Length: ", 16);
        w += 16;
        memcpy(w, d, (size_t)(num + sizeof num - d));
        w += num + sizeof num - d;
        *w++ = '\r';
        *w++ = '\n';
    }
    *w++ = '\r';
    *w++ = '\n';
    x->head_len = (size_t)(w - p);
    memcpy(w, body, body_len);
    w += body_len;
    x->req = p;
    x->req_len = (size_t)(w - p);
}

static nat_xfer *xfer_take(fr_http *h)
{
    fr_nat *n = h->nat;
    nat_xfer *x = n->spare;
    if (x) {
        n->spare = x->next;
        n->nspare--;
        memset(x, 0, sizeof *x);
    } else {
        x = fr_xcalloc(1, sizeof *x);
        n->made++;
    }
    x->base.native = true;
    x->h = h;
    return x;
}

bool fr_nat_carries(fr_http *h, const char *url)
{
    if (h->only_curl || !url)
        return false;
    if (!h->nat)
        h->nat = fr_xcalloc(1, sizeof *h->nat);
    nat_url u = {0};
    url_parse(h->nat, url, &u);
    free(u.target);
    return u.native;
}

int fr_nat_submit(fr_http *h, const fr_request *req, const fr_http_opts *opts,
                  fr_http_data_fn on_data, fr_http_done_fn on_done, void *ud, fr_xfer **out,
                  bool *taken)
{
    static const fr_http_opts no_opts;
    *taken = false;
    if (h->only_curl || !req->url)
        return FR_OK;
    if (!h->nat)
        h->nat = fr_xcalloc(1, sizeof *h->nat);
    fr_nat *n = h->nat;
    const nat_url *u = url_lookup(n, req->url);
    if (!u || !u->native)
        return FR_OK;
    *taken = true;
    if (n->in_data)
        return FR_EINVAL;
    if (!opts)
        opts = &no_opts;
    nat_xfer *x = xfer_take(h);
    x->host = u->host;
    x->on_data = on_data;
    x->on_done = on_done;
    x->ud = ud;
    x->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
    x->connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS;
    x->dl.first_byte_ms = opts->first_byte_timeout_ms;
    x->dl.idle_ms = opts->idle_timeout_ms;
    x->dl.total_ms = opts->total_timeout_ms;
    if (opts->capture_header)
        x->capture = fr_xstrndup(opts->capture_header, strnlen(opts->capture_header, 63));
    char method[16]; /* cut to 15 bytes, as snprintf(method, 16, "%s", ...) would */
    const char *m = opts->method ? opts->method : "POST";
    size_t mlen = strnlen(m, sizeof method - 1);
    memcpy(method, m, mlen);
    method[mlen] = '\0';
    x->head_request = strcasecmp(method, "HEAD") == 0;
    build_request(x, u, req, method);

    uv_timer_init(h->loop, &x->timer);
    x->timer.data = x;
    h->open_handles++;
    x->id = ++h->next_id;
    x->dl.start_ms = x->connect_from = uv_now(h->loop);
    x->start_ns = uv_hrtime();
    x->next = n->xfers;
    if (n->xfers)
        n->xfers->prev = x;
    n->xfers = x;
    n->active++;
    fr_log_event(FR_LOG_DEBUG, "http", "http.submit", "xfer=%lu submit body_bytes=%zu active=%zu",
                 x->id, x->req_len - x->head_len, n->active);
    /* Nothing goes out inside submit (a transfer cancelled at once opens
     * and sends nothing, as with curl): it starts at the end of the libuv
     * callback of ours that is running (fr_nat_kick), as curl starts new
     * transfers at its next socket action, else from its timer, next turn. */
    x->starting = true;
    x->sprev = n->starts_tail;
    if (n->starts_tail)
        n->starts_tail->snext = x;
    else
        n->starts = x;
    n->starts_tail = x;
    xfer_arm(x);
    if (out)
        *out = (fr_xfer *)(void *)x;
    return FR_OK;
}

void fr_nat_kick(fr_http *h)
{
    fr_nat *n = h->nat;
    while (n && n->starts && !h->closing) {
        nat_xfer *x = n->starts;
        start_remove(x);
        xfer_connect(x, false);
        xfer_arm(x);
    }
}

void fr_nat_cancel(fr_http *h, fr_xfer *xf)
{
    nat_xfer *x = (nat_xfer *)(void *)xf;
    if (x->finished || x->cancelled)
        return;
    if (h->nat->in_data == x) {
        /* Inside its own data callback: conn_parse releases it on return. */
        x->cancelled = true;
        h->nat->active--;
        x->finished = true;
        return;
    }
    xfer_release(x, true);
}

size_t fr_nat_active(const fr_http *h)
{
    return h->nat ? h->nat->active : 0;
}

long fr_nat_connections(const fr_http *h)
{
    return h->nat ? h->nat->connects : 0;
}

long fr_nat_made(const fr_http *h)
{
    return h->nat ? h->nat->made : 0;
}

bool fr_nat_in_data(const fr_http *h)
{
    return h->nat && h->nat->in_data;
}

void fr_nat_shutdown(fr_http *h)
{
    fr_nat *n = h->nat;
    if (!n)
        return;
    while (n->xfers)
        xfer_release(n->xfers, true);
    while (n->spare) {
        nat_xfer *x = n->spare;
        n->spare = x->next;
        free(x);
    }
    n->nspare = 0;
    for (nat_host *o = n->hosts; o; o = o->next) {
        while (o->idle)
            conn_close(o->idle);
        if (o->state == HOST_RESOLVING)
            uv_cancel((uv_req_t *)&o->gai);
    }
}

void fr_nat_release(fr_http *h)
{
    fr_nat *n = h->nat;
    if (!n)
        return;
    for (size_t i = 0; i < n->nurls; i++) {
        free(n->urls[i].url);
        free(n->urls[i].target);
    }
    while (n->hosts) {
        nat_host *o = n->hosts;
        n->hosts = o->next;
        free(o->name);
        free(o->host_line);
        free(o->addrs);
        free(o);
    }
    free(n);
    h->nat = NULL;
}
