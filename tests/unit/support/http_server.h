#pragma once
/* Shared by the unit tests of engine/http (test_http_reply, test_http_conn):
 * a small scripted HTTP/1.1 server on the same libuv loop as the client,
 * which answers by request path; the fixture (loop, server, fr_http) whose
 * teardown frees the client, runs the loop until empty and checks that
 * uv_loop_close() == 0; and a recorder of one transfer's data and result.
 * Header-only, as loop_harness.h: include it after cmocka.h. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/http.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "tests/unit/support/loop_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define WAIT_LIMIT_S  5.0
#define DRAIN_LIMIT_S 10.0

/* ---- the scripted server ---------------------------------------------------- */

typedef struct srv srv;

typedef enum { TICK_NONE = 0, TICK_STREAM, TICK_DRIP, TICK_RESET } tick_mode;

typedef struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* paces streamed replies */
    srv *s;
    struct conn *prev, *next;
    char *in;
    size_t len, cap;
    char path[256];
    int nopen; /* handles not yet closed */
    bool closing;
    bool parked;    /* waiting at the /gate */
    bool drop_next; /* the next request on it is dropped unanswered (/drop-next) */
    tick_mode mode;
    int pieces;
} conn;

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    conn *conns;
    int accepted;     /* connections accepted */
    int requests;     /* requests parsed */
    int closed;       /* connections closed */
    int gate_waiting; /* requests parked at /gate */
    int gate_target;  /* release them all when this many wait */
    int max_gate;     /* most requests parked at once */
    char *last_method;
    char *last_headers;
    char *last_body;
    size_t last_body_len;
};

typedef struct wreq {
    uv_write_t req;
    conn *c;
    bool close_after;
    char data[];
} wreq;

static inline void conn_close(conn *c);

/* memmem and strcasestr are GNU extensions; the build is plain POSIX. */
static inline char *find_mem(char *hay, size_t len, const char *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static inline const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

static inline void on_conn_handle_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    if (--c->nopen == 0) {
        free(c->in);
        free(c);
    }
}

/* Closes the connection; with `reset`, aborts it with a TCP RST. */
static inline void conn_end(conn *c, bool reset)
{
    if (c->closing)
        return;
    c->closing = true;
    srv *s = c->s;
    if (c->parked)
        s->gate_waiting--;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->closed++;
    if (!reset || uv_tcp_close_reset(&c->tcp, on_conn_handle_closed) != 0)
        uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static inline void conn_close(conn *c)
{
    conn_end(c, false);
}

static inline void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    if (status < 0 || w->close_after)
        conn_close(w->c);
    free(w);
}

static inline void conn_send(conn *c, const char *data, size_t len, bool close_after)
{
    if (c->closing)
        return;
    wreq *w = fr_xmalloc(sizeof *w + len);
    memcpy(w->data, data, len);
    w->c = c;
    w->close_after = close_after;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written) != 0) {
        free(w);
        conn_close(c);
    }
}

static inline void send_fmt(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void send_fmt(conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = fr_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    conn_send(c, p, (size_t)n, false);
    free(p);
}

static inline void reply(conn *c, int status, const char *reason, const char *extra,
                         const char *body, size_t body_len)
{
    send_fmt(c,
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
             "\r\n",
             status, reason, body_len, extra ? extra : "");
    conn_send(c, body, body_len, false);
}

static inline void reply_path(conn *c)
{
    char body[400];
    int n = snprintf(body, sizeof body, "{\"ok\":true,\"path\":\"%s\"}", c->path);
    reply(c, 200, "OK", NULL, body, (size_t)n);
}

static inline void on_tick(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->mode == TICK_RESET) {
        conn_end(c, true);
        return;
    }
    if (c->mode == TICK_DRIP) {
        send_fmt(c, "1\r\nx\r\n");
        return;
    }
    if (c->pieces < 5) {
        char piece[32];
        int n = snprintf(piece, sizeof piece, "piece-%d;", c->pieces++);
        send_fmt(c, "%x\r\n%s\r\n", n, piece);
        return;
    }
    send_fmt(c, "0\r\n\r\n");
    c->mode = TICK_NONE;
    uv_timer_stop(&c->timer);
}

static const char chunked_head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                                   "Transfer-Encoding: chunked\r\n\r\n";

static inline void send_huge(conn *c, bool with_length)
{
    enum { BLOCK = 16384, BLOCKS = 64 };
    char *block = fr_xmalloc(BLOCK);
    memset(block, 'z', BLOCK);
    if (with_length)
        send_fmt(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BLOCK * BLOCKS);
    else
        send_fmt(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < BLOCKS; i++)
        conn_send(c, block, BLOCK, i == BLOCKS - 1);
    free(block);
}

static inline void http_date(char *out, size_t size, time_t when)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static inline void on_linger(uv_timer_t *t)
{
    conn_close(t->data);
}

static inline void handle_request(conn *c, const char *body, size_t body_len)
{
    srv *s = c->s;
    const char *p = c->path;
    if (c->drop_next) {
        conn_close(c);
        return;
    }
    if (strncmp(p, "/json", 5) == 0) {
        reply_path(c);
    } else if (strcmp(p, "/echo") == 0) {
        reply(c, 200, "OK", NULL, body, body_len);
    } else if (strncmp(p, "/gate", 5) == 0) {
        c->parked = true;
        s->gate_waiting++;
        if (s->gate_waiting > s->max_gate)
            s->max_gate = s->gate_waiting;
        if (s->gate_waiting >= s->gate_target) {
            for (conn *o = s->conns; o; o = o->next) {
                if (o->parked) {
                    o->parked = false;
                    s->gate_waiting--;
                    reply_path(o);
                }
            }
        }
    } else if (strcmp(p, "/stream") == 0 || strcmp(p, "/drip") == 0) {
        conn_send(c, chunked_head, strlen(chunked_head), false);
        c->mode = p[1] == 's' ? TICK_STREAM : TICK_DRIP;
        c->pieces = 0;
        uv_timer_start(&c->timer, on_tick, 20, 20);
    } else if (strcmp(p, "/reset") == 0) {
        /* Ten of the hundred bytes promised, then a reset. */
        send_fmt(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        c->mode = TICK_RESET;
        uv_timer_start(&c->timer, on_tick, 20, 0);
    } else if (strcmp(p, "/429") == 0) {
        const char b[] = "{\"error\":\"rate limited\"}";
        reply(c, 429, "Too Many Requests", "Retry-After: 2\r\n", b, strlen(b));
    } else if (strcmp(p, "/503date") == 0) {
        char date[64], extra[96];
        http_date(date, sizeof date, time(NULL) + 10);
        snprintf(extra, sizeof extra, "Retry-After: %s\r\n", date);
        reply(c, 503, "Service Unavailable", extra, "{}", 2);
    } else if (strcmp(p, "/silent") == 0) {
        conn_send(c, chunked_head, strlen(chunked_head), false);
    } else if (strcmp(p, "/never") == 0) {
        /* Say nothing at all. */
    } else if (strcmp(p, "/close") == 0) {
        send_fmt(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n");
        conn_send(c, "{}", 2, true);
    } else if (strcmp(p, "/linger-close") == 0) {
        /* A keep-alive reply, then the server closes the idle connection. */
        reply_path(c);
        c->mode = TICK_NONE;
        uv_timer_start(&c->timer, on_linger, 10, 0);
    } else if (strcmp(p, "/drop-next") == 0) {
        reply_path(c);
        c->drop_next = true;
    } else if (strcmp(p, "/204") == 0) {
        send_fmt(c, "HTTP/1.1 204 No Content\r\n\r\n");
    } else if (strcmp(p, "/304") == 0) {
        send_fmt(c, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n");
    } else if (strcmp(p, "/badstatus") == 0) {
        send_fmt(c, "HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\n{}");
    } else if (strcmp(p, "/continue") == 0) {
        send_fmt(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                    "\r\n{}");
    } else if (strcmp(p, "/chunkext") == 0) {
        send_fmt(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;name=value\r\nhello\r\n1 ; q=\"a;b\"\r\n,\r\n6\r\nworld!\r\n"
                    "0;end\r\nX-Trailer: t\r\n\r\n");
    } else if (strcmp(p, "/429ms") == 0) {
        reply(c, 429, "Too Many Requests", "Retry-After: 9\r\nretry-after-ms: 1500\r\n", "{}", 2);
    } else if (strcmp(p, "/huge") == 0) {
        send_huge(c, false);
    } else if (strcmp(p, "/hugecl") == 0) {
        send_huge(c, true);
    } else {
        reply(c, 404, "Not Found", NULL, "{}", 2);
    }
}

/* Parses every complete request in the input buffer. */
static inline void conn_parse(conn *c)
{
    srv *s = c->s;
    for (;;) {
        char *end = c->len >= 4 ? find_mem(c->in, c->len, "\r\n\r\n", 4) : NULL;
        if (!end)
            return;
        size_t head_len = (size_t)(end - c->in) + 4;
        char *head = fr_xstrndup(c->in, head_len);
        size_t body_len = 0;
        for (char *line = strstr(head, "\r\n"); line; line = strstr(line + 2, "\r\n"))
            if (strncasecmp(line + 2, "Content-Length:", 15) == 0)
                body_len = strtoul(line + 17, NULL, 10);
        if (c->len < head_len + body_len) {
            free(head);
            return;
        }
        char method[16] = "", path[256] = "";
        sscanf(head, "%15s %255s", method, path);
        free(s->last_method);
        free(s->last_headers);
        free(s->last_body);
        s->last_method = fr_xstrdup(method);
        s->last_headers = head;
        s->last_body = fr_xstrndup(c->in + head_len, body_len);
        s->last_body_len = body_len;
        s->requests++;
        snprintf(c->path, sizeof c->path, "%s", path);
        handle_request(c, s->last_body, body_len);
        size_t used = head_len + body_len;
        memmove(c->in, c->in + used, c->len - used);
        c->len -= used;
    }
}

static inline void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)hd;
    buf->base = fr_xmalloc(suggested);
    buf->len = suggested;
}

static inline void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    conn *c = st->data;
    if (n < 0) {
        free(buf->base);
        conn_close(c);
        return;
    }
    if (c->len + (size_t)n > c->cap) {
        c->cap = (c->len + (size_t)n) * 2;
        c->in = fr_xrealloc(c->in, c->cap);
    }
    memcpy(c->in + c->len, buf->base, (size_t)n);
    c->len += (size_t)n;
    free(buf->base);
    conn_parse(c);
}

static inline void on_connection(uv_stream_t *listener, int status)
{
    srv *s = listener->data;
    if (status < 0)
        return;
    conn *c = fr_xcalloc(1, sizeof *c);
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->nopen = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    s->accepted++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static inline int bound_port(uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* A port that was just free (bound, noted, closed): a connect to it is
 * refused. */
static inline int free_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof addr;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

static inline void srv_start(srv *s, uv_loop_t *loop)
{
    struct sockaddr_in addr;
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->gate_target = 1;
    assert_int_equal(uv_tcp_init(loop, &s->listener), 0);
    s->listener.data = s;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &addr), 0);
    assert_int_equal(uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->listener, 128, on_connection), 0);
    s->port = bound_port(&s->listener);
}

static inline void srv_close(srv *s)
{
    uv_close((uv_handle_t *)&s->listener, NULL);
    while (s->conns)
        conn_close(s->conns);
    free(s->last_method);
    free(s->last_headers);
    free(s->last_body);
}

/* ---- fixture ---------------------------------------------------------------- */

typedef struct fx {
    uv_loop_t loop;
    srv s;
    fr_http *h;
    int ndone; /* done callbacks of every recorder */
} fx;

typedef struct count_wait {
    const int *counter;
    int target;
} count_wait;

static inline bool count_reached(void *ud)
{
    const count_wait *w = ud;
    return *w->counter >= w->target;
}

/* Runs the loop until *counter reaches target or WAIT_LIMIT_S pass. */
static inline bool run_until(fx *f, const int *counter, int target)
{
    count_wait w = {counter, target};
    return loop_wait_for(&f->loop, count_reached, &w, WAIT_LIMIT_S);
}

static inline void count_live(uv_handle_t *hd, void *arg)
{
    if (!uv_is_closing(hd))
        (*(int *)arg)++;
}

/* Handles not closing: the listener and fr_http's own timer when nothing
 * else is going on (a wait's watchdog is closing once the wait returns). */
static inline int live_handles(fx *f)
{
    int n = 0;
    uv_walk(&f->loop, count_live, &n);
    return n;
}

static inline int setup(void **state)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    srv_start(&f->s, &f->loop);
    f->h = fr_http_new(&f->loop);
    if (!f->h)
        return -1;
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fx *f = *state;
    fr_http_free(f->h);
    srv_close(&f->s);
    char why[384];
    bool closed = loop_drain(&f->loop, DRAIN_LIMIT_S, why, sizeof why);
    free(f);
    if (!closed)
        fail_msg("%s", why); /* a handle left open, or the loop still busy */
    return 0;
}

/* ---- a recorder of one transfer ---------------------------------------------- */

typedef struct rec {
    fx *f;
    char *body;
    size_t len;
    int chunks;
    int ndone;
    long data_status;
    fr_http_result res;
    bool error_null;
    char err[256];
    int abort_with;        /* on_data returns this on the first chunk */
    bool cancel_in_data;   /* on_data cancels its own transfer */
    fr_xfer *self;         /* this transfer */
    fr_xfer *data_cancels; /* on_data cancels this one, once */
    int chain_left;        /* done submits another /json while > 0 */
    size_t active_in_done; /* fr_http_active seen from the done callback */
    fr_xfer *to_cancel;    /* done cancels this one */
    bool free_in_done;     /* done frees the whole engine */
} rec;

static inline fr_xfer *submit_opts(fx *f, const char *path, const fr_http_opts *o, rec *r);

static inline int rec_data(void *ud, long status, const char *data, size_t len)
{
    rec *r = ud;
    r->data_status = status;
    r->body = fr_xrealloc(r->body, r->len + len + 1);
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = '\0';
    r->chunks++;
    if (r->cancel_in_data)
        fr_http_cancel(r->f->h, r->self);
    if (r->data_cancels) {
        fr_http_cancel(r->f->h, r->data_cancels);
        r->data_cancels = NULL;
    }
    return r->abort_with;
}

static inline void rec_done(void *ud, const fr_http_result *res)
{
    rec *r = ud;
    fx *f = r->f;
    r->ndone++;
    f->ndone++;
    r->res = *res;
    r->error_null = res->error == NULL;
    snprintf(r->err, sizeof r->err, "%s", res->error ? res->error : "");
    r->res.error = NULL;
    r->active_in_done = fr_http_active(f->h);
    if (r->to_cancel)
        fr_http_cancel(f->h, r->to_cancel);
    if (r->chain_left > 0) {
        r->chain_left--;
        free(r->body);
        r->body = NULL;
        r->len = 0;
        submit_opts(f, "/json?chain", NULL, r);
    }
    if (r->free_in_done) {
        fr_http_free(f->h);
        f->h = NULL;
    }
}

static inline void rec_close(rec *r)
{
    free(r->body);
    r->body = NULL;
}

static inline fr_xfer *submit_body(fx *f, const char *path, const fr_http_opts *o, rec *r,
                                   char *body)
{
    char url[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->s.port, path);
    char h1[] = "X-Test: yes";
    char h2[] = "Authorization: Bearer sk-test-not-a-secret";
    char *headers[] = {h1, h2};
    fr_request req = {.url = url, .headers = headers, .nheaders = 2, .body = body};
    fr_xfer *x = NULL;
    r->f = f;
    assert_int_equal(fr_http_submit(f->h, &req, o, rec_data, rec_done, r, &x), FR_OK);
    assert_non_null(x);
    r->self = x;
    return x;
}

static inline fr_xfer *submit_opts(fx *f, const char *path, const fr_http_opts *o, rec *r)
{
    char body[] = "{\"model\":\"m\",\"stream\":true}";
    return submit_body(f, path, o, r, body);
}
