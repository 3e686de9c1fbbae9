/* Unit tests of engine/http: a small scripted HTTP/1.1 server runs on the same
 * libuv loop as the client, chosen by request path, and every test ends with
 * fr_http_free, the loop run until empty and uv_loop_close() == 0. */

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
    bool parked; /* waiting at the /gate */
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

static void conn_close(conn *c);

/* memmem and strcasestr are GNU extensions; the build is plain POSIX. */
static char *find_mem(char *hay, size_t len, const char *needle, size_t n)
{
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

static const char *find_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return hay;
    return NULL;
}

static void on_conn_handle_closed(uv_handle_t *hd)
{
    conn *c = hd->data;
    if (--c->nopen == 0) {
        free(c->in);
        free(c);
    }
}

/* Closes the connection; with `reset`, aborts it with a TCP RST. */
static void conn_end(conn *c, bool reset)
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

static void conn_close(conn *c)
{
    conn_end(c, false);
}

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    if (status < 0 || w->close_after)
        conn_close(w->c);
    free(w);
}

static void conn_send(conn *c, const char *data, size_t len, bool close_after)
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

static void send_fmt(conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_fmt(conn *c, const char *fmt, ...)
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

static void reply(conn *c, int status, const char *reason, const char *extra, const char *body,
                  size_t body_len)
{
    send_fmt(c,
             "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s"
             "\r\n",
             status, reason, body_len, extra ? extra : "");
    conn_send(c, body, body_len, false);
}

static void reply_path(conn *c)
{
    char body[400];
    int n = snprintf(body, sizeof body, "{\"ok\":true,\"path\":\"%s\"}", c->path);
    reply(c, 200, "OK", NULL, body, (size_t)n);
}

static void on_tick(uv_timer_t *t)
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

static void send_huge(conn *c, bool with_length)
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

static void http_date(char *out, size_t size, time_t when)
{
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static void handle_request(conn *c, const char *body, size_t body_len)
{
    srv *s = c->s;
    const char *p = c->path;
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
    } else if (strcmp(p, "/huge") == 0) {
        send_huge(c, false);
    } else if (strcmp(p, "/hugecl") == 0) {
        send_huge(c, true);
    } else {
        reply(c, 404, "Not Found", NULL, "{}", 2);
    }
}

/* Parses every complete request in the input buffer. */
static void conn_parse(conn *c)
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

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
    (void)hd;
    buf->base = fr_xmalloc(suggested);
    buf->len = suggested;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
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

static void on_connection(uv_stream_t *listener, int status)
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

static int bound_port(uv_tcp_t *tcp)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    assert_int_equal(uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_start(srv *s, uv_loop_t *loop)
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

static void srv_close(srv *s)
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

static bool count_reached(void *ud)
{
    const count_wait *w = ud;
    return *w->counter >= w->target;
}

/* Runs the loop until *counter reaches target or WAIT_LIMIT_S pass. */
static bool run_until(fx *f, const int *counter, int target)
{
    count_wait w = {counter, target};
    return loop_wait_for(&f->loop, count_reached, &w, WAIT_LIMIT_S);
}

static void count_live(uv_handle_t *hd, void *arg)
{
    if (!uv_is_closing(hd))
        (*(int *)arg)++;
}

/* Handles not closing: the listener and fr_http's own timer when nothing
 * else is going on (a wait's watchdog is closing once the wait returns). */
static int live_handles(fx *f)
{
    int n = 0;
    uv_walk(&f->loop, count_live, &n);
    return n;
}

static int setup(void **state)
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

static int teardown(void **state)
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

static fr_xfer *submit_opts(fx *f, const char *path, const fr_http_opts *o, rec *r);

static int rec_data(void *ud, long status, const char *data, size_t len)
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

static void rec_done(void *ud, const fr_http_result *res)
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

static void rec_close(rec *r)
{
    free(r->body);
    r->body = NULL;
}

static fr_xfer *submit_body(fx *f, const char *path, const fr_http_opts *o, rec *r, char *body)
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

static fr_xfer *submit_opts(fx *f, const char *path, const fr_http_opts *o, rec *r)
{
    char body[] = "{\"model\":\"m\",\"stream\":true}";
    return submit_body(f, path, o, r, body);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_json_reply_intact(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Large enough that curl would otherwise ask for 100-continue. */
    size_t n = 1200 * 1024;
    char *body = fr_xmalloc(n + 1);
    memset(body, 'a', n);
    memcpy(body, "{\"p\":\"", 6);
    memcpy(body + n - 2, "\"}", 2);
    body[n] = '\0';
    submit_body(f, "/echo", NULL, &r, body);
    assert_int_equal(fr_http_active(f->h), 1);
    assert_true(run_until(f, &f->ndone, 1));

    assert_int_equal(r.res.rc, FR_OK);
    assert_true(r.error_null);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.data_status, 200);
    assert_true(r.res.retry_after_s == -1);
    assert_int_equal(r.len, n);
    assert_int_equal(r.res.bytes, n);
    assert_memory_equal(r.body, body, n);
    assert_true(r.res.ttfb_ms >= 0);
    assert_true(r.res.total_ms >= r.res.ttfb_ms);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(fr_http_connections(f->h), 1);

    /* What went on the wire. */
    assert_string_equal(f->s.last_method, "POST");
    assert_int_equal(f->s.last_body_len, n);
    assert_memory_equal(f->s.last_body, body, n);
    assert_non_null(strstr(f->s.last_headers, "\r\nX-Test: yes\r\n"));
    assert_non_null(strstr(f->s.last_headers, "\r\nContent-Type: application/json\r\n"));
    assert_null(find_ci(f->s.last_headers, "\r\nExpect:"));
    assert_null(find_ci(f->s.last_headers, "\r\nAccept-Encoding:"));
    free(body);
    rec_close(&r);
}

static void test_stream_in_pieces(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Deadlines that the stream keeps meeting: the first byte comes within
     * 2 s and pieces come every 20 ms, so no gap reaches 100 ms although the
     * whole stream takes longer than that: the idle deadline moves on. */
    fr_http_opts o = {.first_byte_timeout_ms = 2000, .idle_timeout_ms = 100};
    submit_opts(f, "/stream", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_string_equal(r.body, "piece-0;piece-1;piece-2;piece-3;piece-4;");
    assert_true(r.chunks >= 3); /* pieces 20 ms apart arrive as separate writes */
    assert_true(r.res.ttfb_ms >= 0);
    assert_true(r.res.total_ms > r.res.ttfb_ms);
    rec_close(&r);
}

static void test_keepalive_chain_from_done(void **state)
{
    fx *f = *state;
    rec r = {.chain_left = 4};
    submit_opts(f, "/json?chain", NULL, &r);
    assert_true(run_until(f, &f->ndone, 5));
    assert_int_equal(r.ndone, 5);
    assert_int_equal(r.res.rc, FR_OK);
    assert_string_equal(r.body, "{\"ok\":true,\"path\":\"/json?chain\"}");
    /* The finished transfer no longer counts when done runs. */
    assert_int_equal(r.active_in_done, 0);
    assert_int_equal(fr_http_active(f->h), 0);
    /* Five sequential requests, one connection. */
    assert_int_equal(f->s.requests, 5);
    assert_int_equal(f->s.accepted, 1);
    assert_int_equal(fr_http_connections(f->h), 1);
    rec_close(&r);
}

static void test_retry_after(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    submit_opts(f, "/429", NULL, &a);
    submit_opts(f, "/503date", NULL, &b);
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(a.res.rc, FR_OK);
    assert_int_equal(a.res.status, 429);
    assert_true(a.res.retry_after_s == 2.0);
    assert_string_equal(a.body, "{\"error\":\"rate limited\"}");
    assert_int_equal(b.res.rc, FR_OK);
    assert_int_equal(b.res.status, 503);
    assert_true(b.res.retry_after_s >= 8 && b.res.retry_after_s <= 10);
    rec_close(&a);
    rec_close(&b);
}

static void test_idle_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.idle_timeout_ms = 200, .total_timeout_ms = 4000};
    submit_opts(f, "/silent", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "stream idle for 200 ms");
    assert_int_equal(r.res.status, 200); /* the headers did arrive */
    assert_int_equal(r.res.bytes, 0);
    assert_true(r.res.ttfb_ms < 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 2000);
    assert_int_equal(fr_http_active(f->h), 0);
    rec_close(&r);
}

static void test_first_byte_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.first_byte_timeout_ms = 200, .idle_timeout_ms = 100};
    submit_opts(f, "/never", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "no first byte after 200 ms");
    assert_int_equal(r.res.status, 0);
    assert_true(r.res.ttfb_ms < 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 2000);
    rec_close(&r);
}

static void test_total_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    fr_http_opts o = {.idle_timeout_ms = 200, .total_timeout_ms = 300};
    submit_opts(f, "/drip", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_string_equal(r.err, "total timeout of 300 ms exceeded");
    assert_int_equal(r.res.status, 200);
    assert_true(r.res.bytes > 0);
    assert_int_equal(r.res.bytes, r.len);
    rec_close(&r);
}

static void test_too_big(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    fr_http_opts o = {.max_response = 16384};
    submit_opts(f, "/huge", &o, &a);   /* no length: stopped by the write callback */
    submit_opts(f, "/hugecl", &o, &b); /* known length: stopped by curl */
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(a.res.rc, FR_ETOOBIG);
    assert_true(a.res.bytes <= 16384);
    assert_int_equal(a.res.bytes, a.len);
    assert_string_equal(a.err, "reply larger than 16384 bytes");
    assert_int_equal(b.res.rc, FR_ETOOBIG);
    assert_true(b.res.bytes <= 16384);
    assert_string_equal(b.err, "reply larger than 16384 bytes");
    rec_close(&a);
    rec_close(&b);
}

static void test_connect_refused(void **state)
{
    fx *f = *state;
    /* A port that was just free: bind it, note it, close it. */
    uv_tcp_t probe;
    struct sockaddr_in addr;
    uv_tcp_init(&f->loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &addr);
    assert_int_equal(uv_tcp_bind(&probe, (const struct sockaddr *)&addr, 0), 0);
    int port = bound_port(&probe);
    uv_close((uv_handle_t *)&probe, NULL);

    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/json", port);
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_int_equal(r.res.status, 0);
    assert_false(r.error_null);
    assert_true(strlen(r.err) > 0);
    assert_int_equal(r.len, 0);
    rec_close(&r);
}

/* A socket that finds no descriptor (EMFILE) is a connection failure that
 * says so: no_fds is set and the message names the limit, so the engine
 * can tell it from a server that is not there. */
static void test_connect_no_fds(void **state)
{
    fx *f = *state;
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:9/json"); /* never reached */
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    rec r = {.f = f};
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    /* The lowest free descriptor becomes the limit: the next one fails. */
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit low = {.rlim_cur = (rlim_t)lowest, .rlim_max = saved.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    int rc = fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL);
    bool done = rc == FR_OK && run_until(f, &f->ndone, 1);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_int_equal(rc, FR_OK);
    assert_true(done);
    assert_int_equal(r.res.rc, FR_ECONNECT);
    assert_true(r.res.no_fds);
    assert_non_null(strstr(r.err, "out of file descriptors"));
    rec_close(&r);

    /* A refused connection is not mistaken for one. */
    rec r2 = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r2, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(r2.res.rc, FR_ECONNECT);
    assert_false(r2.res.no_fds);
    rec_close(&r2);
}

static void test_connect_timeout(void **state)
{
    fx *f = *state;
    /* A listener whose accept queue (backlog 0) is full drops further SYNs,
     * so the next connect hangs until curl's connect timeout, which fires from
     * curl's timer, not from a socket. */
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t alen = sizeof addr;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0 && filler >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&addr, &alen), 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&addr, sizeof addr), 0);

    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/json", ntohs(addr.sin_port));
    char body[] = "{}";
    fr_request req = {.url = url, .body = body};
    fr_http_opts o = {.connect_timeout_ms = 200, .first_byte_timeout_ms = 3000};
    rec r = {.f = f};
    assert_int_equal(fr_http_submit(f->h, &req, &o, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_int_equal(r.res.status, 0);
    assert_true(strlen(r.err) > 0);
    assert_true(r.res.total_ms >= 190 && r.res.total_ms < 3000);
    close(filler);
    close(lfd);
    rec_close(&r);
}

static void test_reset_mid_body(void **state)
{
    fx *f = *state;
    rec r = {0};
    submit_opts(f, "/reset", NULL, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_EIO);
    assert_int_equal(r.res.status, 200);
    assert_int_equal(r.res.bytes, 10);
    assert_string_equal(r.body, "0123456789");
    assert_true(strlen(r.err) > 0);
    rec_close(&r);
}

static void test_cancel(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec r = {0};

    /* Cancelled before the loop ever ran. */
    fr_xfer *x = submit_opts(f, "/never", NULL, &r);
    fr_http_cancel(f->h, x);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(live_handles(f), base);

    /* Cancelled while the server holds the request. */
    x = submit_opts(f, "/never", NULL, &r);
    assert_true(run_until(f, &f->s.requests, 1));
    assert_int_equal(fr_http_active(f->h), 1);
    assert_true(live_handles(f) > base);
    fr_http_cancel(f->h, x);
    assert_int_equal(fr_http_active(f->h), 0);
    /* curl dropped the connection: the server sees it close. */
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(live_handles(f), base);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(f->ndone, 0);
    rec_close(&r);
}

static void test_cancel_from_data(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec r = {.cancel_in_data = true};
    submit_opts(f, "/drip", NULL, &r);
    assert_true(run_until(f, &r.chunks, 1));
    assert_int_equal(fr_http_active(f->h), 0);
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(r.chunks, 1);
    assert_int_equal(r.ndone, 0);
    assert_int_equal(live_handles(f), base);
    rec_close(&r);
}

static void test_cancel_other_from_data(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    rec a = {0}, b = {0};
    fr_xfer *xb = submit_opts(f, "/never", NULL, &b);
    assert_true(run_until(f, &f->s.requests, 1));
    a.data_cancels = xb;
    fr_xfer *xa = submit_opts(f, "/drip", NULL, &a);
    assert_true(run_until(f, &a.chunks, 1));
    assert_int_equal(fr_http_active(f->h), 1);
    /* b's connection goes although b itself never had anything to read. */
    assert_true(run_until(f, &f->s.closed, 1));
    assert_true(run_until(f, &a.chunks, 3)); /* a goes on */
    fr_http_cancel(f->h, xa);
    assert_true(run_until(f, &f->s.closed, 2));
    assert_int_equal(f->ndone, 0);
    assert_int_equal(live_handles(f), base);
    rec_close(&a);
    rec_close(&b);
}

static void test_done_cancels_other(void **state)
{
    fx *f = *state;
    rec a = {0}, b = {0};
    fr_xfer *xb = submit_opts(f, "/never", NULL, &b);
    a.to_cancel = xb;
    submit_opts(f, "/json?a", NULL, &a);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(a.res.rc, FR_OK);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_true(run_until(f, &f->s.closed, 1));
    assert_int_equal(b.ndone, 0);
    rec_close(&a);
    rec_close(&b);
}

static void test_abort_from_data(void **state)
{
    fx *f = *state;
    rec r = {.abort_with = FR_EPROTO};
    submit_opts(f, "/stream", NULL, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_EPROTO);
    assert_int_equal(r.chunks, 1);
    assert_int_equal(r.res.status, 200);
    assert_non_null(strstr(r.err, "malformed reply"));
    rec_close(&r);
}

static void test_twenty_concurrent(void **state)
{
    fx *f = *state;
    enum { N = 20 };
    rec r[N];
    memset(r, 0, sizeof r);
    /* The server answers none until all 20 wait at once: if anything queued
     * transfers, this would never complete. */
    f->s.gate_target = N;
    for (int i = 0; i < N; i++) {
        char path[32];
        snprintf(path, sizeof path, "/gate?id=%d", i);
        submit_opts(f, path, NULL, &r[i]);
    }
    assert_int_equal(fr_http_active(f->h), N);
    assert_true(run_until(f, &f->ndone, N));
    assert_int_equal(f->s.max_gate, N);
    for (int i = 0; i < N; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"ok\":true,\"path\":\"/gate?id=%d\"}", i);
        assert_int_equal(r[i].ndone, 1);
        assert_int_equal(r[i].res.rc, FR_OK);
        assert_string_equal(r[i].body, want);
        rec_close(&r[i]);
    }
    assert_int_equal(fr_http_connections(f->h), N);
    assert_int_equal(fr_http_active(f->h), 0);
}

static void test_invalid_requests(void **state)
{
    fx *f = *state;
    int base = live_handles(f);
    char good[96], ftp[] = "ftp://127.0.0.1/x", junk[] = "not a url", body[] = "{}";
    snprintf(good, sizeof good, "http://127.0.0.1:%d/json", f->s.port);
    char crlf[] = "X-Bad: a\r\nInjected: b", nocolon[] = "NoColon", spaced[] = "Bad Name: x";
    char *bad_headers[][1] = {{crlf}, {nocolon}, {spaced}, {NULL}};
    rec r = {.f = f};

    fr_request req = {.url = NULL, .body = body};
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = ftp;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = junk;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    req.url = good;
    for (size_t i = 0; i < 4; i++) {
        req.headers = bad_headers[i];
        req.nheaders = 1;
        assert_int_equal(fr_http_submit(f->h, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    }
    assert_int_equal(fr_http_submit(NULL, &req, NULL, NULL, rec_done, &r, NULL), FR_EINVAL);
    assert_int_equal(fr_http_active(f->h), 0);
    assert_int_equal(live_handles(f), base);

    /* A NULL body is an empty POST; a caller's Content-Type is kept. */
    char ct[] = "content-type: text/plain";
    char *hdrs[] = {ct};
    req.headers = hdrs;
    req.nheaders = 1;
    req.body = NULL;
    assert_int_equal(fr_http_submit(f->h, &req, NULL, rec_data, rec_done, &r, NULL), FR_OK);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(f->s.last_body_len, 0);
    assert_non_null(strstr(f->s.last_headers, "\r\ncontent-type: text/plain\r\n"));
    assert_null(strstr(f->s.last_headers, "application/json"));
    rec_close(&r);
}

static void test_free_with_transfers_in_flight(void **state)
{
    fx *f = *state;
    rec r[3];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++)
        submit_opts(f, "/never", NULL, &r[i]);
    assert_true(run_until(f, &f->s.requests, 3));
    fr_http_free(f->h);
    f->h = NULL;
    assert_true(run_until(f, &f->s.closed, 3));
    assert_int_equal(f->ndone, 0);
    for (int i = 0; i < 3; i++)
        rec_close(&r[i]);
}

static void test_free_from_done(void **state)
{
    fx *f = *state;
    rec a = {.free_in_done = true}, b = {0};
    submit_opts(f, "/never", NULL, &b);
    assert_true(run_until(f, &f->s.requests, 1));
    submit_opts(f, "/json?a", NULL, &a);
    assert_true(run_until(f, &f->ndone, 1));
    assert_null(f->h);
    /* Both connections close: b's by the cancel, a's with the cache. */
    assert_true(run_until(f, &f->s.closed, 2));
    assert_int_equal(a.ndone, 1);
    assert_int_equal(b.ndone, 0);
    rec_close(&a);
    rec_close(&b);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server writes to clients that hung up */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_reply_intact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_in_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_chain_from_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_byte_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_no_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_mid_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_other_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_cancels_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_from_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_twenty_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_transfers_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_done, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
