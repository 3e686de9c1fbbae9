/* One asynchronous libpq connection on the loop (pgconn.h).
 *
 * States: RESOLVE (uv_getaddrinfo of each host name) -> CONNECT
 * (PQconnectPoll, driven by the socket's poll) -> UP (pipeline mode: the
 * socket is always watched for reading, and for writing while requests wait
 * or libpq's buffer holds bytes) -> on a loss, BACKOFF (the timer) and
 * RESOLVE again; FAILED when the first connection never came up; CLOSING.
 * Requests live in one FIFO: the first n_flight are sent (each one pipeline
 * segment: its statements, then a Sync), the rest wait. Results come back
 * per statement (its results, then NULL), then PGRES_PIPELINE_SYNC ends the
 * request. A PGconn belongs to the poll record watching its socket and is
 * PQfinish'ed in that record's close callback. */

#include "engine/store/pgconn.h"
#include "engine/store/pgurl.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/store/pqfns.h"
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

typedef enum { ST_RESOLVE, ST_CONNECT, ST_UP, ST_BACKOFF, ST_FAILED, ST_CLOSING } conn_state;

typedef struct request {
    struct request *next;
    int n;       /* statements */
    int seen;    /* statements whose results have all come back */
    char **sql;  /* n, owned */
    int *np;     /* parameters per statement */
    char ***par; /* n arrays of np[i] (NULL for SQL NULL), owned */
    PGresult *last;
    PGresult **parts; /* with fr_pgconn_transaction_each: each statement's last result */
    int failed;       /* the statement whose error rc is, -1 */
    int rc;           /* the first error of the request, FR_OK so far */
    char sqlstate[6];
    char *msg; /* owned, with rc */
    fr_pgconn_done_fn done;
    void *ud;
} request;

/* A socket's poll; `pg` (owned, may be NULL) is PQfinish'ed in the close
 * callback, after libuv has stopped watching its descriptor. */
typedef struct watch {
    uv_poll_t poll; /* first: the handle is the struct */
    fr_pgconn *c;
    PGconn *pg;
    int fd;
    int events;
} watch;

struct fr_pgconn {
    uv_loop_t *loop;
    conn_state st;
    char *url;      /* owned, wiped at the end */
    char *masked;   /* the URL as messages show it */
    char *password; /* the URL's or PGPASSWORD's, to scrub from libpq's messages */
    char **hosts;   /* the host list as libpq will read it (may be 0 entries) */
    int nhosts;
    bool user_hostaddr; /* the URL gives hostaddr itself: nothing to resolve */
    char **ports;       /* the port list: none, one for all, or one per host */
    int nports;
    int resolving; /* index of the host being resolved */
    /* The lists given to libpq, one entry per address (a name that resolves
     * to several is tried at each, as libpq itself would). */
    fr_buf hostlist, addrs, portlist;
    int nentries;
    uv_getaddrinfo_t gai;
    bool gai_busy;
    uv_timer_t timer; /* backoff, or an attempt's deadline */
    watch *w;         /* the current socket's, NULL between connections */
    int live;         /* handles and requests of libuv not yet called back */
    bool ever_up;
    bool lost_reported;
    uint64_t backoff_ms;
    request *head, *tail; /* the FIFO: the first n_flight were sent */
    size_t n_flight, n_wait;
    fr_pgconn_state_fn on_state;
    void *ud;
    fr_pgconn_notify_fn on_notify;
    void *notify_ud;
};

struct fr_pgres {
    int code;
    char sqlstate[6];
    char *msg;
    int rows, cols;
    char **names;  /* cols */
    char **cells;  /* rows * cols, NULL for SQL NULL */
    char *storage; /* the names' and cells' bytes */
    int64_t affected;
    int nparts;       /* with fr_pgconn_transaction_each: one result per statement */
    fr_pgres **parts; /* owned, an entry NULL for a statement without a result */
    int failed;       /* the statement the error is of, -1 */
};

static void connect_begin(fr_pgconn *c);
static void pump(fr_pgconn *c);

/* Returns an owned copy of libpq's message `msg` on one line (its line
 * breaks and the indents after them become one space, the last dropped)
 * with `c`'s password, if it ever appears, replaced. */
static char *scrubbed(const fr_pgconn *c, const char *msg)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    const char *p = msg ? msg : "";
    size_t plen = c->password ? strlen(c->password) : 0;
    while (*p) {
        if (plen && strncmp(p, c->password, plen) == 0) {
            fr_buf_puts(&out, "***");
            p += plen;
        } else if (*p == '\n') {
            while (*p == '\n' || *p == '\t' || *p == ' ')
                p++;
            fr_buf_puts(&out, " ");
        } else {
            fr_buf_append(&out, p++, 1);
        }
    }
    while (out.len && (out.data[out.len - 1] == '\n' || out.data[out.len - 1] == ' '))
        out.data[--out.len] = '\0';
    return fr_buf_take(&out);
}

/* ---- results ---- */

static fr_pgres *res_error(int code, const char *sqlstate, const char *msg)
{
    fr_pgres *r = fr_xcalloc(1, sizeof *r);
    r->code = code;
    r->failed = -1;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate ? sqlstate : "");
    r->msg = fr_xstrdup(msg ? msg : fr_strerror(code));
    return r;
}

static fr_pgres *res_rows(const PGresult *pr)
{
    fr_pgres *r = fr_xcalloc(1, sizeof *r);
    r->msg = fr_xstrdup("");
    r->failed = -1;
    if (!pr)
        return r;
    r->rows = fr_pq.ntuples(pr);
    r->cols = fr_pq.nfields(pr);
    r->affected = strtoll(fr_pq.cmdTuples((PGresult *)pr), NULL, 10);
    size_t bytes = 0;
    for (int j = 0; j < r->cols; j++)
        bytes += strlen(fr_pq.fname(pr, j)) + 1;
    for (int i = 0; i < r->rows; i++)
        for (int j = 0; j < r->cols; j++)
            if (!fr_pq.getisnull(pr, i, j))
                bytes += (size_t)fr_pq.getlength(pr, i, j) + 1;
    r->storage = fr_xmalloc(bytes ? bytes : 1);
    r->names = fr_xcalloc((size_t)r->cols + 1, sizeof *r->names);
    r->cells = fr_xcalloc((size_t)r->rows * (size_t)r->cols + 1, sizeof *r->cells);
    char *p = r->storage;
    for (int j = 0; j < r->cols; j++) {
        size_t n = strlen(fr_pq.fname(pr, j)) + 1;
        memcpy(p, fr_pq.fname(pr, j), n);
        r->names[j] = p;
        p += n;
    }
    for (int i = 0; i < r->rows; i++)
        for (int j = 0; j < r->cols; j++) {
            if (fr_pq.getisnull(pr, i, j))
                continue;
            size_t n = (size_t)fr_pq.getlength(pr, i, j);
            memcpy(p, fr_pq.getvalue(pr, i, j), n);
            p[n] = '\0';
            r->cells[(size_t)i * (size_t)r->cols + (size_t)j] = p;
            p += n + 1;
        }
    return r;
}

int fr_pgres_code(const fr_pgres *r)
{
    return r->code;
}

const char *fr_pgres_sqlstate(const fr_pgres *r)
{
    return r->sqlstate;
}

const char *fr_pgres_message(const fr_pgres *r)
{
    return r->msg;
}

int fr_pgres_rows(const fr_pgres *r)
{
    return r->rows;
}

int fr_pgres_cols(const fr_pgres *r)
{
    return r->cols;
}

const char *fr_pgres_name(const fr_pgres *r, int col)
{
    return col >= 0 && col < r->cols ? r->names[col] : NULL;
}

const char *fr_pgres_value(const fr_pgres *r, int row, int col)
{
    if (row < 0 || row >= r->rows || col < 0 || col >= r->cols)
        return NULL;
    return r->cells[(size_t)row * (size_t)r->cols + (size_t)col];
}

int64_t fr_pgres_affected(const fr_pgres *r)
{
    return r->affected;
}

int fr_pgres_parts(const fr_pgres *r)
{
    return r->nparts;
}

const fr_pgres *fr_pgres_part(const fr_pgres *r, int i)
{
    return i >= 0 && i < r->nparts ? r->parts[i] : NULL;
}

int fr_pgres_failed(const fr_pgres *r)
{
    return r->failed;
}

void fr_pgres_free(fr_pgres *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->nparts; i++)
        fr_pgres_free(r->parts[i]);
    free(r->parts);
    free(r->msg);
    free(r->names);
    free(r->cells);
    free(r->storage);
    free(r);
}

/* ---- requests ---- */

static void request_free(request *q)
{
    for (int i = 0; i < q->n; i++) {
        for (int k = 0; k < q->np[i]; k++)
            free(q->par[i][k]);
        free(q->par[i]);
        free(q->sql[i]);
    }
    free(q->sql);
    free(q->np);
    free(q->par);
    if (q->parts)
        for (int i = 0; i < q->n; i++)
            fr_pq.clear(q->parts[i]);
    free(q->parts);
    fr_pq.clear(q->last);
    free(q->msg);
    free(q);
}

/* Takes the FIFO's first request off and calls its callback with `res`
 * (taken), or with its own outcome when `res` is NULL. */
static void request_finish(fr_pgconn *c, fr_pgres *res)
{
    request *q = c->head;
    c->head = q->next;
    if (!c->head)
        c->tail = NULL;
    if (c->n_flight)
        c->n_flight--;
    else
        c->n_wait--;
    if (!res && q->rc != FR_OK) {
        res = res_error(q->rc, q->sqlstate, q->msg);
        res->failed = q->failed;
    } else if (!res) {
        res = res_rows(q->parts ? q->parts[q->n - 1] : q->last);
        if (q->parts) {
            res->nparts = q->n;
            res->parts = fr_xcalloc((size_t)q->n, sizeof *res->parts);
            for (int i = 0; i < q->n; i++)
                res->parts[i] = q->parts[i] ? res_rows(q->parts[i]) : NULL;
        }
    }
    fr_pgconn_done_fn done = q->done;
    void *ud = q->ud;
    request_free(q);
    done(ud, res);
}

/* Fails every request in flight with FR_EOUTCOME, and, when `waiting_rc` is
 * not FR_OK, the waiting ones too with that code and `why`. */
static void fail_requests(fr_pgconn *c, const char *why, int waiting_rc)
{
    while (c->n_flight) {
        char *msg = fr_xasprintf("the connection to %s broke while the request was in flight "
                                 "(it may or may not have been committed): %s",
                                 c->masked, why);
        request_finish(c, res_error(FR_EOUTCOME, NULL, msg));
        free(msg);
    }
    while (waiting_rc != FR_OK && c->head)
        request_finish(c, res_error(waiting_rc, NULL, why));
}

/* ---- the socket ---- */

/* Frees `c` once it is closing and the last of its handles and requests has
 * been called back. */
static void release(fr_pgconn *c)
{
    if (--c->live > 0 || c->st != ST_CLOSING)
        return;
    fr_wipe(c->url, strlen(c->url));
    free(c->url);
    if (c->password)
        fr_wipe(c->password, strlen(c->password));
    free(c->password);
    free(c->masked);
    for (int i = 0; i < c->nhosts; i++)
        free(c->hosts[i]);
    free(c->hosts);
    for (int i = 0; i < c->nports; i++)
        free(c->ports[i]);
    free(c->ports);
    fr_buf_close(&c->hostlist);
    fr_buf_close(&c->addrs);
    fr_buf_close(&c->portlist);
    free(c);
}

static void watch_closed(uv_handle_t *h)
{
    watch *w = (watch *)(void *)h;
    fr_pgconn *c = w->c;
    fr_pq.finish(w->pg);
    free(w);
    release(c);
}

static void timer_closed(uv_handle_t *h)
{
    release(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events);

/* Drops the current socket's poll; `finish` says whether its PGconn goes
 * with it (not when libpq moved the same connection to a new socket). */
static PGconn *watch_drop(fr_pgconn *c, bool finish)
{
    watch *w = c->w;
    if (!w)
        return NULL;
    c->w = NULL;
    PGconn *pg = w->pg;
    if (!finish)
        w->pg = NULL;
    uv_close((uv_handle_t *)&w->poll, watch_closed);
    return finish ? NULL : pg;
}

/* Watches `pg`'s socket for `events`, on a new poll when the socket changed
 * (libpq may move to another socket while it connects). Takes `pg`: on
 * failure it is finished, or left to the watch that c->w still is, so the
 * caller must not use it after an error. */
static int watch_set(fr_pgconn *c, PGconn *pg, int events)
{
    int fd = fr_pq.socket(pg);
    if (c->w && c->w->fd != fd)
        watch_drop(c, false);
    if (fd < 0) {
        fr_pq.finish(pg);
        return FR_ECONNECT;
    }
    if (!c->w) {
        watch *w = fr_xcalloc(1, sizeof *w);
        w->c = c;
        w->pg = pg;
        w->fd = fd;
        if (uv_poll_init(c->loop, &w->poll, fd) != 0) {
            free(w);
            fr_pq.finish(pg);
            return FR_ECONNECT;
        }
        c->live++;
        c->w = w;
    }
    if (c->w->events != events) {
        c->w->events = events;
        if (uv_poll_start(&c->w->poll, events, on_poll) != 0)
            return FR_ECONNECT;
    }
    return FR_OK;
}

static PGconn *current(const fr_pgconn *c)
{
    return c->w ? c->w->pg : NULL;
}

static void report(fr_pgconn *c, fr_pgconn_event ev, const char *why)
{
    fr_error err;
    if (why)
        fr_error_set(&err, FR_ECONNECT, "postgresql", 0, "%s: %s", c->masked, why);
    if (c->on_state)
        c->on_state(c->ud, ev, why ? &err : NULL);
}

static void on_backoff(uv_timer_t *t)
{
    fr_pgconn *c = t->data;
    if (c->st != ST_BACKOFF)
        return;
    if (c->gai_busy) /* the last attempt's resolution has not been called back yet */
        uv_timer_start(&c->timer, on_backoff, c->backoff_ms, 0);
    else
        connect_begin(c);
}

/* The current connection attempt, or the connection, is over: `why` says
 * why (libpq's words, scrubbed here). */
static void conn_broken(fr_pgconn *c, const char *why_raw)
{
    char *why = scrubbed(c, why_raw && *why_raw ? why_raw : "the connection was lost");
    watch_drop(c, true);
    if (c->gai_busy)
        uv_cancel((uv_req_t *)&c->gai);
    uv_timer_stop(&c->timer);
    if (!c->ever_up) {
        c->st = ST_FAILED;
        fr_log(FR_LOG_DEBUG, "pgconn", "cannot connect to %s: %s", c->masked, why);
        char *msg = fr_xasprintf("cannot connect to %s: %s", c->masked, why);
        fail_requests(c, msg, FR_ECONNECT);
        free(msg);
        if (c->st == ST_FAILED)
            report(c, FR_PGCONN_FAILED, why);
        free(why);
        return;
    }
    bool was_up = c->st == ST_UP;
    c->st = ST_BACKOFF;
    if (was_up && !c->lost_reported) {
        c->lost_reported = true;
        fr_log(FR_LOG_WARN, "pgconn", "lost the connection to %s: %s", c->masked, why);
        fail_requests(c, why, FR_OK);
        if (c->st == ST_BACKOFF)
            report(c, FR_PGCONN_LOST, why);
    } else {
        c->backoff_ms = c->backoff_ms * 2 > FR_PGCONN_BACKOFF_MAX_MS ? FR_PGCONN_BACKOFF_MAX_MS
                                                                     : c->backoff_ms * 2;
    }
    free(why);
    if (c->st == ST_BACKOFF)
        uv_timer_start(&c->timer, on_backoff, c->backoff_ms, 0);
}

static void on_deadline(uv_timer_t *t)
{
    fr_pgconn *c = t->data;
    if (c->st == ST_RESOLVE || c->st == ST_CONNECT)
        conn_broken(c, "the connection attempt timed out");
}

static void conn_up(fr_pgconn *c, PGconn *pg)
{
    uv_timer_stop(&c->timer);
    if (fr_pq.setnonblocking(pg, 1) != 0 || fr_pq.enterPipelineMode(pg) != 1) {
        conn_broken(c, fr_pq.errorMessage(pg));
        return;
    }
    c->st = ST_UP;
    c->ever_up = true;
    c->lost_reported = false;
    c->backoff_ms = FR_PGCONN_BACKOFF_MIN_MS;
    fr_log(FR_LOG_DEBUG, "pgconn", "connected to %s", c->masked);
    report(c, FR_PGCONN_UP, NULL);
    if (c->st == ST_UP)
        pump(c);
}

/* One step of PQconnectPoll, when the socket is ready for what it waited. */
static void connect_step(fr_pgconn *c)
{
    PGconn *pg = current(c);
    PostgresPollingStatusType r = fr_pq.connectPoll(pg);
    switch (r) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        /* A new poll at each step: libpq may have closed the socket and
         * opened another that took the same number, which libuv's watch of
         * the old one would not see. */
        watch_drop(c, false);
        if (watch_set(c, pg, r == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE) != FR_OK)
            conn_broken(c, "cannot watch the connection's socket");
        return;
    case PGRES_POLLING_OK:
        conn_up(c, pg);
        return;
    default:
        conn_broken(c, fr_pq.errorMessage(pg));
        return;
    }
}

static void notice_quiet(void *arg, const char *message)
{
    (void)arg;
    fr_log(FR_LOG_DEBUG, "pgconn", "%s", message);
}

static void connect_start(fr_pgconn *c)
{
    /* The expanded URL first: the lists after it override its host and port. */
    const char *keys[6] = {"dbname", "fallback_application_name", NULL, NULL, NULL, NULL};
    const char *vals[6] = {c->url, "flowrun", NULL, NULL, NULL, NULL};
    if (!c->user_hostaddr && c->addrs.len) {
        keys[2] = "host";
        vals[2] = fr_buf_str(&c->hostlist);
        keys[3] = "hostaddr";
        vals[3] = fr_buf_str(&c->addrs);
        if (c->nports > 1) {
            keys[4] = "port";
            vals[4] = fr_buf_str(&c->portlist);
        }
    }
    PGconn *pg = fr_pq.connectStartParams(keys, vals, 1);
    if (!pg) {
        conn_broken(c, "out of memory");
        return;
    }
    fr_pq.setNoticeProcessor(pg, notice_quiet, NULL);
    c->st = ST_CONNECT;
    if (fr_pq.status(pg) == CONNECTION_BAD) {
        char *why = fr_xstrdup(fr_pq.errorMessage(pg));
        fr_pq.finish(pg);
        conn_broken(c, why);
        free(why);
    } else if (watch_set(c, pg, UV_WRITABLE) != FR_OK) {
        conn_broken(c, "cannot watch the connection's socket");
    }
}

/* Adds one entry to the lists given to libpq: host `i` at `addr`. */
static void add_entry(fr_pgconn *c, int i, const char *addr)
{
    const char *sep = c->nentries++ ? "," : "";
    fr_buf_printf(&c->hostlist, "%s%s", sep, c->hosts[i]);
    fr_buf_printf(&c->addrs, "%s%s", sep, addr);
    if (c->nports > 1)
        fr_buf_printf(&c->portlist, "%s%s", sep, c->ports[i < c->nports ? i : 0]);
}

static bool is_name(const char *h)
{
    return h[0] != '\0' && h[0] != '/' && h[0] != '@';
}

static void resolve_next(fr_pgconn *c);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    fr_pgconn *c = req->data;
    c->gai_busy = false;
    if (c->st != ST_RESOLVE) { /* closed, or the attempt timed out meanwhile */
        uv_freeaddrinfo(res);
        release(c);
        return;
    }
    c->live--;
    int n = 0;
    for (struct addrinfo *a = res; a && status == 0 && n < 8; a = a->ai_next) {
        char ip[64] = "";
        if (a->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)(void *)a->ai_addr, ip, sizeof ip);
        else if (a->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)(void *)a->ai_addr, ip, sizeof ip);
        if (ip[0]) {
            add_entry(c, c->resolving, ip);
            n++;
        }
    }
    uv_freeaddrinfo(res);
    if (n == 0) {
        char *why = fr_xasprintf("cannot resolve host \"%s\": %s", c->hosts[c->resolving],
                                 status ? uv_strerror(status) : "no address");
        conn_broken(c, why);
        free(why);
        return;
    }
    c->resolving++;
    resolve_next(c);
}

/* Resolves the host names from c->resolving on, one after the other (a
 * socket's folder needs none), then starts libpq on the addresses. */
static void resolve_next(fr_pgconn *c)
{
    for (; c->resolving < c->nhosts; c->resolving++) {
        const char *h = c->hosts[c->resolving];
        if (!is_name(h)) {
            add_entry(c, c->resolving, "");
            continue;
        }
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->gai.data = c;
        int rc = uv_getaddrinfo(c->loop, &c->gai, on_resolved, h, NULL, &hints);
        if (rc != 0) {
            char *why = fr_xasprintf("cannot resolve host \"%s\": %s", h, uv_strerror(rc));
            conn_broken(c, why);
            free(why);
            return;
        }
        c->gai_busy = true;
        c->live++;
        return;
    }
    bool any_name = false;
    for (int i = 0; i < c->nhosts; i++)
        any_name = any_name || is_name(c->hosts[i]);
    if (!any_name) /* sockets only: libpq's own reading of the URL is right */
        fr_buf_reset(&c->addrs);
    connect_start(c);
}

static void connect_begin(fr_pgconn *c)
{
    c->st = ST_RESOLVE;
    c->resolving = 0;
    c->nentries = 0;
    fr_buf_reset(&c->hostlist);
    fr_buf_reset(&c->addrs);
    fr_buf_reset(&c->portlist);
    uv_timer_start(&c->timer, on_deadline, FR_PGCONN_CONNECT_TIMEOUT_MS, 0);
    if (c->user_hostaddr)
        connect_start(c);
    else
        resolve_next(c);
}

/* ---- the pipeline ---- */

/* Ends a request's pipeline segment. libpq 17's PQsendPipelineSync only
 * buffers, so a pass's requests go out in the one PQflush after them; before
 * 17 PQpipelineSync flushes at each request (one write each, still without
 * waiting for any reply), and the socket is corked meanwhile (cork below) so
 * that the requests still leave in full packets. */
static int pipeline_sync(PGconn *pg)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
    return fr_pq.sendPipelineSync(pg);
#else
    return fr_pq.pipelineSync(pg);
#endif
}

/* Corks (`on`) or uncorks a TCP socket for the flushes of one pass, where
 * they are one write each (pipeline_sync). A unix socket refuses: nothing
 * to do there. */
static void cork(PGconn *pg, int on)
{
#if defined(TCP_CORK) && !defined(LIBPQ_HAS_SEND_PIPELINE_SYNC)
    setsockopt(fr_pq.socket(pg), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
#else
    (void)pg;
    (void)on;
#endif
}

/* Sends what waits, up to the in-flight bound, then flushes. */
static void send_waiting(fr_pgconn *c, PGconn *pg)
{
    request *q = c->head;
    for (size_t i = 0; i < c->n_flight; i++)
        q = q->next;
    bool corked = q && q->next && c->n_flight + 1 < FR_PGCONN_MAX_IN_FLIGHT;
    if (corked)
        cork(pg, 1);
    for (; q && c->n_flight < FR_PGCONN_MAX_IN_FLIGHT; q = q->next) {
        /* In flight from its first statement on: a COMMIT of its own may
         * take effect before the Sync that ends it is written. */
        c->n_flight++;
        c->n_wait--;
        for (int i = 0; i < q->n; i++)
            if (!fr_pq.sendQueryParams(pg, q->sql[i], q->np[i], NULL,
                                       (const char *const *)q->par[i], NULL, NULL, 0))
                goto broken;
        if (!pipeline_sync(pg))
            goto broken;
    }
    int f = fr_pq.flush(pg);
    if (corked)
        cork(pg, 0);
    if (f < 0)
        goto broken;
    /* Writable only while libpq holds unsent bytes: requests still waiting
     * here wait for room (FR_PGCONN_MAX_IN_FLIGHT), which results make, and
     * a socket always writable would wake the loop in a busy spin. */
    int want = UV_READABLE | (f > 0 ? UV_WRITABLE : 0);
    if (watch_set(c, pg, want) != FR_OK)
        conn_broken(c, "cannot watch the connection's socket");
    return;
broken:
    conn_broken(c, fr_pq.errorMessage(pg));
}

static void request_error(request *q, const PGresult *r)
{
    if (q->rc != FR_OK)
        return;
    q->failed = q->seen;
    const char *state = fr_pq.resultErrorField(r, PG_DIAG_SQLSTATE);
    const char *primary = fr_pq.resultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    q->rc = FR_ESTORE;
    snprintf(q->sqlstate, sizeof q->sqlstate, "%s", state ? state : "");
    q->msg = fr_xasprintf("SQLSTATE %s: %s", state ? state : "?????",
                          primary ? primary : fr_pq.resultErrorMessage(r));
}

/* Reads what has come: each request's statements' results, then its Sync.
 * Stops at what has not come yet, at a loss, or when a callback closed `c`. */
static void read_results(fr_pgconn *c, PGconn *pg)
{
    while (c->n_flight && c->st == ST_UP && fr_pq.status(pg) == CONNECTION_OK &&
           !fr_pq.isBusy(pg)) {
        request *q = c->head;
        PGresult *r = fr_pq.getResult(pg);
        if (q->seen < q->n) {
            if (!r) {
                q->seen++;
                continue;
            }
            switch (fr_pq.resultStatus(r)) {
            case PGRES_TUPLES_OK:
            case PGRES_COMMAND_OK:
            case PGRES_EMPTY_QUERY:
                if (q->parts) {
                    fr_pq.clear(q->parts[q->seen]);
                    q->parts[q->seen] = r;
                } else {
                    fr_pq.clear(q->last);
                    q->last = r;
                }
                continue;
            case PGRES_PIPELINE_ABORTED:
                break;
            default:
                request_error(q, r);
                break;
            }
            fr_pq.clear(r);
            continue;
        }
        if (!r)
            return; /* the Sync has not been read yet */
        ExecStatusType st = fr_pq.resultStatus(r);
        if (st != PGRES_PIPELINE_SYNC) { /* out of step: nothing is certain any more */
            fr_pq.clear(r);
            conn_broken(c, "the server's replies are out of step with the requests");
            return;
        }
        fr_pq.clear(r);
        request_finish(c, NULL);
    }
}

/* Hands the notifications read to the notify callback, each once; stops
 * when a callback closed `c`. Without a callback they are dropped. */
static void deliver_notifies(fr_pgconn *c, PGconn *pg)
{
    PGnotify *n;
    while (c->st == ST_UP && (n = fr_pq.notifies(pg)) != NULL) {
        if (c->on_notify)
            c->on_notify(c->notify_ud, n->relname, n->extra ? n->extra : "");
        fr_pq.freemem(n);
    }
}

static void pump(fr_pgconn *c)
{
    PGconn *pg = current(c);
    if (c->st != ST_UP || !pg)
        return;
    send_waiting(c, pg);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    watch *w = (watch *)(void *)h;
    fr_pgconn *c = w->c;
    PGconn *pg = w->pg;
    if (c->w != w || !pg)
        return;
    if (c->st == ST_CONNECT) {
        connect_step(c);
        return;
    }
    if (c->st != ST_UP)
        return;
    if (status < 0 || fr_pq.socket(pg) != w->fd) { /* libpq dropped the socket, or it failed */
        if (fr_pq.socket(pg) == w->fd)
            fr_pq.consumeInput(pg); /* libpq's words for the socket's error */
        const char *why = fr_pq.errorMessage(pg);
        conn_broken(c, why && *why ? why : uv_strerror(status));
        return;
    }
    if (events & UV_READABLE) {
        if (!fr_pq.consumeInput(pg)) {
            conn_broken(c, fr_pq.errorMessage(pg));
            return;
        }
        read_results(c, pg);
        if (c->st != ST_UP)
            return;
        deliver_notifies(c, pg);
        if (c->st != ST_UP)
            return;
        if (fr_pq.status(pg) == CONNECTION_BAD) {
            conn_broken(c, fr_pq.errorMessage(pg));
            return;
        }
    }
    /* Results make room for what waits; a callback may have queued more. */
    send_waiting(c, pg);
}

/* ---- the interface ---- */

/* Splits the comma-separated `s` (borrowed; NULL or "" gives none) into
 * *out (owned). Returns the count. */
static int split_list(const char *s, char ***out)
{
    int n = 0;
    *out = NULL;
    for (const char *p = s; p && *s;) {
        size_t len = strcspn(p, ",");
        *out = fr_xrealloc(*out, (size_t)(n + 1) * sizeof **out);
        (*out)[n++] = fr_xstrndup(p, len);
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    return n;
}

/* Fills c->hosts and c->ports from the URL (else PGHOST, PGPORT), c->password from its
 * password (else PGPASSWORD). FR_ECONFIG when the URL does not parse. */
static int read_url(fr_pgconn *c, fr_error *err)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = NULL;
    if (c->url[0] != '\0')
        opts = fr_pq.conninfoParse(c->url, &errmsg);
    if (c->url[0] != '\0' && !opts) {
        char *why = scrubbed(c, errmsg ? errmsg : "out of memory");
        fr_error_set(err, FR_ECONFIG, "postgresql", 0, "%s: %s", c->masked, why);
        free(why);
        fr_pq.freemem(errmsg);
        return FR_ECONFIG;
    }
    const char *host = NULL, *port = NULL, *password = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0 && o->val[0])
            c->user_hostaddr = true;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if (strcmp(o->keyword, "password") == 0)
            password = o->val;
    }
    if (!port || !port[0])
        port = getenv("PGPORT");
    if (!host || !host[0])
        host = getenv("PGHOST");
    if (!password || !password[0])
        password = getenv("PGPASSWORD");
    if (password && password[0])
        c->password = fr_xstrdup(password);
    c->nhosts = split_list(host, &c->hosts);
    c->nports = split_list(port, &c->ports);
    if (opts) {
        for (PQconninfoOption *o = opts; o->keyword; o++)
            if (o->val)
                fr_wipe(o->val, strlen(o->val));
        fr_pq.conninfoFree(opts);
    }
    return FR_OK;
}

/* How messages name a connection made from libpq's environment alone:
 * a URL of what it holds (PGUSER, PGHOST, PGPORT, PGDATABASE; never
 * PGPASSWORD). Owned. */
static char *env_url(void)
{
    const char *user = getenv("PGUSER"), *host = getenv("PGHOST"), *port = getenv("PGPORT");
    const char *db = getenv("PGDATABASE");
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_printf(&b, "postgresql://%s%s%s", user ? user : "", user ? "@" : "", host ? host : "");
    if (port)
        fr_buf_printf(&b, ":%s", port);
    fr_buf_printf(&b, "/%s", db ? db : "");
    return fr_buf_take(&b);
}

int fr_pgconn_open(uv_loop_t *loop, const char *url, fr_pgconn_state_fn on_state, void *ud,
                   fr_pgconn **out, fr_error *err)
{
    if (!loop || !url || !out)
        return fr_error_set(err, FR_EINVAL, "postgresql", 0, "no loop, URL or result");
    int rc = fr_pq_load(err);
    if (rc != FR_OK)
        return rc;
    fr_pgconn *c = fr_xcalloc(1, sizeof *c);
    c->loop = loop;
    c->url = fr_xstrdup(url);
    c->masked = url[0] ? fr_pgurl_mask(url) : env_url();
    c->on_state = on_state;
    c->ud = ud;
    c->backoff_ms = FR_PGCONN_BACKOFF_MIN_MS;
    fr_buf_init(&c->hostlist, 0);
    fr_buf_init(&c->addrs, 0);
    fr_buf_init(&c->portlist, 0);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->live = 1;
    rc = read_url(c, err);
    if (rc != FR_OK) {
        c->st = ST_CLOSING;
        uv_close((uv_handle_t *)&c->timer, timer_closed);
        return rc;
    }
    connect_begin(c);
    *out = c;
    return FR_OK;
}

static char *dup_or_null(const char *s)
{
    return s ? fr_xstrdup(s) : NULL;
}

static int transaction(fr_pgconn *c, int n, const fr_pgstmt *stmts, bool each,
                       fr_pgconn_done_fn done, void *ud)
{
    if (!c || n < 1 || !stmts || !done)
        return FR_EINVAL;
    for (int i = 0; i < n; i++)
        if (!stmts[i].sql || stmts[i].nparams < 0 || stmts[i].nparams > 65535 ||
            (stmts[i].nparams && !stmts[i].params))
            return FR_EINVAL;
    if (c->st == ST_CLOSING)
        return FR_ECANCELED;
    if (c->st == ST_FAILED)
        return FR_ECONNECT;
    request *q = fr_xcalloc(1, sizeof *q);
    q->n = n;
    q->sql = fr_xcalloc((size_t)n, sizeof *q->sql);
    q->np = fr_xcalloc((size_t)n, sizeof *q->np);
    q->par = fr_xcalloc((size_t)n, sizeof *q->par);
    for (int i = 0; i < n; i++) {
        q->sql[i] = fr_xstrdup(stmts[i].sql);
        q->np[i] = stmts[i].nparams;
        q->par[i] = fr_xcalloc((size_t)stmts[i].nparams + 1, sizeof *q->par[i]);
        for (int k = 0; k < stmts[i].nparams; k++)
            q->par[i][k] = dup_or_null(stmts[i].params[k]);
    }
    q->failed = -1;
    if (each)
        q->parts = fr_xcalloc((size_t)n, sizeof *q->parts);
    q->done = done;
    q->ud = ud;
    if (c->tail)
        c->tail->next = q;
    else
        c->head = q;
    c->tail = q;
    c->n_wait++;
    /* Sent when the socket is writable: on this turn's poll phase, with
     * whatever else this turn queues. */
    if (c->st == ST_UP && c->w && !(c->w->events & UV_WRITABLE))
        if (watch_set(c, c->w->pg, c->w->events | UV_WRITABLE) != FR_OK)
            conn_broken(c, "cannot watch the socket");
    return FR_OK;
}

int fr_pgconn_transaction(fr_pgconn *c, int n, const fr_pgstmt *stmts, fr_pgconn_done_fn done,
                          void *ud)
{
    return transaction(c, n, stmts, false, done, ud);
}

int fr_pgconn_transaction_each(fr_pgconn *c, int n, const fr_pgstmt *stmts, fr_pgconn_done_fn done,
                               void *ud)
{
    return transaction(c, n, stmts, true, done, ud);
}

void fr_pgconn_on_notify(fr_pgconn *c, fr_pgconn_notify_fn fn, void *ud)
{
    c->on_notify = fn;
    c->notify_ud = ud;
}

int fr_pgconn_query(fr_pgconn *c, const char *sql, int nparams, const char *const *params,
                    fr_pgconn_done_fn done, void *ud)
{
    fr_pgstmt one = {sql, nparams, params};
    return fr_pgconn_transaction(c, 1, &one, done, ud);
}

size_t fr_pgconn_in_flight(const fr_pgconn *c)
{
    return c->n_flight;
}

size_t fr_pgconn_waiting(const fr_pgconn *c)
{
    return c->n_wait;
}

void fr_pgconn_close(fr_pgconn *c)
{
    if (!c || c->st == ST_CLOSING)
        return;
    c->st = ST_CLOSING;
    fail_requests(c, "the connection was closed", FR_ECANCELED);
    watch_drop(c, true);
    if (c->gai_busy)
        uv_cancel((uv_req_t *)&c->gai);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}
