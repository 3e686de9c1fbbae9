/* HTTP on the event loop: one curl multi handle driven by libuv. curl tells us
 * which sockets to watch (socket callback -> one uv_poll per socket) and when
 * to call it back (timer callback -> one uv_timer); we call
 * curl_multi_socket_action from those libuv callbacks and, after every call,
 * drain curl's completion messages. Per-transfer deadlines (first byte, idle,
 * total) are one uv_timer per transfer. libcurl is never called from inside
 * one of its own callbacks: work that must touch curl from there (a cancel, a
 * shutdown) is marked and done once curl_multi_socket_action has returned. */

#include "engine/http.h"
#include "engine/http_int.h"

#include "engine/util/err.h"
#include "engine/util/fdlimit.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_MAX_RESPONSE ((size_t)8 * 1024 * 1024)
#define DEFAULT_CONNECT_MS   10000L
#define MAX_CACHED_CONNS     256L
/* Easy handles kept for reuse once their transfer ended, at most. */
#define SPARE_MAX 4096
/* curl's receive buffer per transfer (CURLOPT_BUFFERSIZE; its default is
 * 16 KiB, its least 1 KiB), allocated with the handle and kept for its life.
 * Replies arrive in pieces of at most this size, so a large one takes more
 * reads; with thousands of transfers in flight, each waiting on its reply,
 * the buffers are a large share of the memory (4,000 in flight: 17 MB more
 * at 16 KiB than at 1 KiB). */
#define RECV_BUFFER_SIZE 1024L

#ifndef CURL_WRITEFUNC_ERROR
#define CURL_WRITEFUNC_ERROR 0
#endif

static void http_shutdown(fr_http *h);

/* ---- memory and handle lifetimes ---------------------------------------- */

/* Frees what only some transfers have: kept out of the struct, which every
 * transfer in flight holds. */
static void xfer_drop_strings(fr_xfer *x)
{
    free(x->capture);
    free(x->captured);
    x->capture = x->captured = NULL;
}

static void xfer_destroy(fr_xfer *x)
{
    xfer_drop_strings(x);
    if (x->easy)
        fr_curl.easy_cleanup(x->easy);
    free(x);
}

static void http_release_memory(fr_http *h)
{
    fr_nat_release(h);
    for (size_t i = 0; i < h->nurls; i++)
        free(h->urls[i]);
    free(h->socks);
    free(h);
}

static void handle_closed(fr_http *h)
{
    h->open_handles--;
    if (h->shut && h->open_handles == 0)
        http_release_memory(h);
}

void fr_http_handle_closed(fr_http *h)
{
    handle_closed(h);
}

void fr_http_enter(fr_http *h)
{
    h->depth++;
}

void fr_http_leave(fr_http *h)
{
    h->depth--;
    if (h->depth == 0 && !h->closing)
        fr_nat_kick(h);
    if (h->closing && h->depth == 0)
        http_shutdown(h);
}

static void on_timer_closed(uv_handle_t *handle)
{
    handle_closed(handle->data);
}

static void on_sock_closed(uv_handle_t *handle)
{
    sock_ctx *c = handle->data;
    fr_http *h = c->h;
    free(c);
    handle_closed(h);
}

/* The transfer's memory is free once its timer is closed: it goes to the
 * spare list with its easy handle when that ended cleanly, else away. */
static void on_xfer_timer_closed(uv_handle_t *handle)
{
    fr_xfer *x = handle->data;
    fr_http *h = x->h;
    xfer_drop_strings(x);
    if (x->reusable && x->easy && !h->shut && h->nspare < SPARE_MAX) {
        x->next = h->spare;
        h->spare = x;
        h->nspare++;
    } else {
        xfer_destroy(x);
    }
    handle_closed(h);
}

/* ---- sockets -------------------------------------------------------------- */

static sock_ctx *sock_find(const fr_http *h, curl_socket_t fd)
{
    if (fd < 0 || (size_t)fd >= h->nsocks)
        return NULL;
    return h->socks[fd];
}

static void sock_close(fr_http *h, sock_ctx *c)
{
    /* Forget the fd first: curl may hand out the same number again for a new
     * socket before libuv has run our close callback. */
    if (h->socks[c->fd] == c)
        h->socks[c->fd] = NULL;
    c->closing = true;
    uv_close((uv_handle_t *)&c->poll, on_sock_closed);
}

static void sock_action(fr_http *h, curl_socket_t fd, int flags);

static void on_poll(uv_poll_t *p, int status, int events)
{
    sock_ctx *c = p->data;
    fr_http *h = c->h;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    /* c stays allocated until its close callback, which cannot run before we
     * return, so it is safe to look at it after sock_action. */
    sock_action(h, c->fd, flags);
    /* libuv stops a poll handle that reported an error. If curl still wants
     * the socket (it did not remove it), watch it again rather than hang. */
    if (status < 0 && !c->closing && !h->shut && c->events)
        uv_poll_start(&c->poll, c->events, on_poll);
}

static sock_ctx *sock_new(fr_http *h, curl_socket_t fd)
{
    if ((size_t)fd >= h->nsocks) {
        size_t n = h->nsocks ? h->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        h->socks = fr_xrealloc(h->socks, n * sizeof *h->socks);
        memset(h->socks + h->nsocks, 0, (n - h->nsocks) * sizeof *h->socks);
        h->nsocks = n;
    }
    sock_ctx *c = fr_xcalloc(1, sizeof *c);
    if (uv_poll_init_socket(h->loop, &c->poll, fd) != 0) {
        free(c);
        return NULL;
    }
    c->poll.data = c;
    c->h = h;
    c->fd = fd;
    h->socks[fd] = c;
    h->open_handles++;
    return c;
}

/* CURLMOPT_SOCKETFUNCTION: runs inside curl. Only libuv calls here. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    fr_http *h = userp;
    sock_ctx *c = sock_find(h, fd);
    if (what == CURL_POLL_REMOVE) {
        if (c)
            sock_close(h, c);
        return 0;
    }
    if (h->closing)
        return 0;
    if (!c) {
        c = sock_new(h, fd);
        if (!c)
            return -1;
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    c->events = events;
    if (!events)
        return uv_poll_stop(&c->poll) == 0 ? 0 : -1;
    return uv_poll_start(&c->poll, events, on_poll) == 0 ? 0 : -1;
}

/* ---- curl's timer --------------------------------------------------------- */

static void on_multi_timeout(uv_timer_t *t)
{
    fr_http *h = t->data;
    sock_action(h, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_TIMERFUNCTION: runs inside curl. Only libuv calls here. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    fr_http *h = userp;
    if (h->timer_closed)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else
        uv_timer_start(&h->timer, on_multi_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- per-transfer deadlines ----------------------------------------------- */

uint64_t fr_http_next_deadline(const http_deadlines *d, deadline_kind *kind)
{
    uint64_t best = UINT64_MAX;
    *kind = DEADLINE_NONE;
    if (d->first_byte_ms > 0 && !d->got_body && d->start_ms + (uint64_t)d->first_byte_ms < best) {
        best = d->start_ms + (uint64_t)d->first_byte_ms;
        *kind = DEADLINE_FIRST;
    }
    if (d->idle_ms > 0 && d->headers_done && d->activity_ms + (uint64_t)d->idle_ms < best) {
        best = d->activity_ms + (uint64_t)d->idle_ms;
        *kind = DEADLINE_IDLE;
    }
    if (d->total_ms > 0 && d->start_ms + (uint64_t)d->total_ms < best) {
        best = d->start_ms + (uint64_t)d->total_ms;
        *kind = DEADLINE_TOTAL;
    }
    return best;
}

void fr_http_deadline_text(const http_deadlines *d, deadline_kind kind, char *msg, size_t size)
{
    switch (kind) {
    case DEADLINE_FIRST:
        snprintf(msg, size, "no first byte after %ld ms", d->first_byte_ms);
        break;
    case DEADLINE_IDLE:
        snprintf(msg, size, "stream idle for %ld ms", d->idle_ms);
        break;
    default:
        snprintf(msg, size, "total timeout of %ld ms exceeded", d->total_ms);
        break;
    }
}

static uint64_t next_deadline(const fr_xfer *x, deadline_kind *kind)
{
    return fr_http_next_deadline(&x->dl, kind);
}

static void on_xfer_timer(uv_timer_t *t);

/* Arms the transfer's timer for its earliest deadline. Body bytes only move
 * deadlines later, so the write callback does not re-arm: the timer fires,
 * finds the deadline moved, and re-arms itself. */
static void xfer_arm(fr_xfer *x)
{
    deadline_kind kind;
    uint64_t due = next_deadline(x, &kind);
    if (kind == DEADLINE_NONE) {
        uv_timer_stop(&x->timer);
        return;
    }
    uint64_t now = uv_now(x->h->loop);
    uv_timer_start(&x->timer, on_xfer_timer, due > now ? due - now : 0, 0);
}

/* ---- transfers ------------------------------------------------------------ */

static void xfer_unlink(fr_http *h, fr_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* Removes the easy handle from curl and frees what curl used; the struct
 * itself lives until its timer's close callback. Never call from inside curl. */
static void xfer_release(fr_xfer *x)
{
    fr_http *h = x->h;
    long n = 0;
    /* Until curl has run since the submit, a reused handle's count is still
     * its last transfer's. */
    if (h->actions != x->actions_at_submit &&
        fr_curl.easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &n) == CURLE_OK && n > 0)
        h->connects += n;
    fr_curl.multi_remove_handle(h->multi, x->easy);
    if (x->reusable) {
        /* A spare handle points at no header list or body: both go now. */
        fr_curl.easy_setopt(x->easy, CURLOPT_HTTPHEADER, NULL);
        fr_curl.easy_setopt(x->easy, CURLOPT_POSTFIELDS, NULL);
    } else {
        fr_curl.easy_cleanup(x->easy);
        x->easy = NULL;
    }
    fr_http_free_headers(x->headers);
    x->headers = NULL;
    free(x->body);
    x->body = NULL;
    xfer_unlink(h, x);
    if (!x->finished && !x->cancelled)
        h->active--;
    if (x->cancelled)
        h->ncancelled--;
    x->finished = true;
    uv_close((uv_handle_t *)&x->timer, on_xfer_timer_closed);
}

/* CURLOPT_OPENSOCKETFUNCTION: runs inside curl. Opens the socket as curl
 * would, and remembers when the process is out of descriptors, which curl
 * reports only as CURLE_COULDNT_CONNECT. */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr)
{
    fr_xfer *x = ud;
    (void)purpose;
    curl_socket_t fd = socket(addr->family, addr->socktype, addr->protocol);
    if (fd == CURL_SOCKET_BAD && fr_fd_exhausted(errno))
        x->no_fds = true;
    return fd;
}

static int map_curl_error(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return FR_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
        return FR_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return FR_ETIMEDOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return FR_ETOOBIG;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        /* The server is not who it claims to be: retrying cannot help, and
         * the key must not be sent to it again. */
        return FR_ECONFIG;
    default:
        return FR_EIO;
    }
}

/* Releases the transfer and delivers its result. `rc` and `error` (borrowed,
 * may point into x) describe the outcome. Runs outside curl callbacks. */
static void xfer_finish(fr_xfer *x, int rc, const char *error)
{
    fr_http_result res = {
        .rc = rc,
        .status = 0,
        .retry_after_s = fr_http_retry_after_s(x),
        .ttfb_ms = x->dl.got_body ? (double)(x->first_ns - x->start_ns) / 1e6 : -1,
        .total_ms = (double)(uv_hrtime() - x->start_ns) / 1e6,
        .bytes = x->bytes,
        .error = rc == FR_OK ? NULL : error,
    };
    /* A reused handle still answers for its last transfer until this one
     * has a status line of its own. */
    if (x->status == 0 ||
        fr_curl.easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res.status) != CURLE_OK)
        res.status = 0;
    /* Out of descriptors: our own socket callback saw it, or curl's errno
     * says so (a descriptor curl opens itself, such as a resolver's). */
    long os_errno = 0;
    if (rc == FR_ECONNECT &&
        (x->no_fds || (fr_curl.easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno) == CURLE_OK &&
                       fr_fd_exhausted((int)os_errno)))) {
        res.no_fds = true;
        snprintf(x->msg, sizeof x->msg,
                 "out of file descriptors (ulimit -n %ld): no socket could be opened",
                 fr_fd_limit());
        res.error = x->msg;
    }
    struct curl_header *ch = NULL;
    if (x->capture && x->status != 0 &&
        fr_curl.easy_header(x->easy, x->capture, 0, CURLH_HEADER, -1, &ch) == CURLHE_OK) {
        res.captured = x->captured = fr_xstrndup(ch->value, strnlen(ch->value, 255));
    }
    /* Only a handle whose transfer ended cleanly serves another: curl keeps
     * some state of a failure (its errno) until a later one overwrites it. */
    x->reusable = rc == FR_OK;
    xfer_release(x);
    fr_log_event(FR_LOG_DEBUG, "http", "http.done",
                 "xfer=%lu status=%ld rc=%s bytes=%zu ttfb_ms=%.1f total_ms=%.1f", x->id,
                 res.status, fr_err_name(rc), res.bytes, res.ttfb_ms, res.total_ms);
    if (x->on_done)
        x->on_done(x->ud, &res);
}

static void xfer_complete(fr_xfer *x, CURLcode cc)
{
    int rc = map_curl_error(cc);
    const char *error = x->errbuf[0] ? x->errbuf : fr_curl.easy_strerror(cc);
    if (x->abort_rc != 0) {
        rc = x->abort_rc;
        error = x->msg;
    } else if (cc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(x->msg, sizeof x->msg, "reply larger than %zu bytes", x->max_response);
        error = x->msg;
    }
    xfer_finish(x, rc, error);
}

static void on_xfer_timer(uv_timer_t *t)
{
    fr_xfer *x = t->data;
    fr_http *h = x->h;
    deadline_kind kind;
    uint64_t due = next_deadline(x, &kind);
    if (kind == DEADLINE_NONE || x->finished || x->cancelled)
        return;
    if (due > uv_now(h->loop)) {
        xfer_arm(x);
        return;
    }
    fr_http_deadline_text(&x->dl, kind, x->msg, sizeof x->msg);
    h->depth++;
    xfer_finish(x, FR_ETIMEDOUT, x->msg);
    h->depth--;
    if (h->closing && h->depth == 0)
        http_shutdown(h);
}

/* CURLOPT_HEADERFUNCTION: runs inside curl. Tracks the status line, the end
 * of the final headers and Retry-After of the latest response. */
static size_t on_header(char *line, size_t size, size_t nitems, void *ud)
{
    fr_xfer *x = ud;
    size_t len = size * nitems;
    if (x->cancelled)
        return 0;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        size_t i = 5;
        while (i < len && line[i] != ' ')
            i++;
        while (i < len && line[i] == ' ')
            i++;
        long status = 0;
        for (int k = 0; k < 3 && i < len && isdigit((unsigned char)line[i]); k++, i++)
            status = status * 10 + (line[i] - '0');
        x->status = status;
        x->retry_after[0] = '\0';
        x->retry_after_ms[0] = '\0';
        x->dl.headers_done = false;
    } else if (len <= 2 && (len == 0 || line[0] == '\r' || line[0] == '\n')) {
        if (x->status >= 200 && !x->dl.headers_done) {
            x->dl.headers_done = true;
            x->dl.activity_ms = uv_now(x->h->loop);
            xfer_arm(x);
        }
    } else if ((len > 12 && strncasecmp(line, "Retry-After:", 12) == 0) ||
               (len > 15 && strncasecmp(line, "Retry-After-Ms:", 15) == 0)) {
        bool ms = line[11] != ':';
        char *dst = ms ? x->retry_after_ms : x->retry_after;
        size_t i = ms ? 15 : 12, end = len;
        while (i < end && (line[i] == ' ' || line[i] == '\t'))
            i++;
        while (end > i && isspace((unsigned char)line[end - 1]))
            end--;
        size_t n = end - i < RETRY_AFTER_MAX - 1 ? end - i : RETRY_AFTER_MAX - 1;
        memcpy(dst, line + i, n);
        dst[n] = '\0';
    }
    return len;
}

/* CURLOPT_WRITEFUNCTION: runs inside curl. Enforces the reply cap (curl does
 * not for bodies of unknown length) and hands bytes to the reader. */
static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    fr_xfer *x = ud;
    size_t len = size * nmemb;
    if (x->cancelled || x->h->closing) {
        x->abort_rc = FR_ECANCELED;
        snprintf(x->msg, sizeof x->msg, "cancelled");
        return CURL_WRITEFUNC_ERROR;
    }
    if (len > x->max_response - x->bytes) {
        x->abort_rc = FR_ETOOBIG;
        snprintf(x->msg, sizeof x->msg, "reply larger than %zu bytes", x->max_response);
        return CURL_WRITEFUNC_ERROR;
    }
    if (len == 0)
        return 0;
    if (!x->dl.got_body) {
        x->dl.got_body = true;
        x->first_ns = uv_hrtime();
    }
    x->bytes += len;
    if (!x->on_data)
        x->dl.activity_ms = uv_now(x->h->loop);
    if (x->on_data) {
        int rc = x->on_data(x->ud, x->status, data, len);
        /* Only content moves the idle deadline: a keep-alive does not. */
        if (rc == FR_OK)
            x->dl.activity_ms = uv_now(x->h->loop);
        else if (rc == FR_HTTP_QUIET)
            rc = FR_OK;
        if (rc != FR_OK) {
            x->abort_rc = rc;
            snprintf(x->msg, sizeof x->msg, "reply reader stopped: %s", fr_strerror(rc));
            return CURL_WRITEFUNC_ERROR;
        }
        if (x->cancelled) /* cancelled from inside on_data after all */
            return CURL_WRITEFUNC_ERROR;
    }
    return len;
}

/* ---- dispatch ------------------------------------------------------------- */

/* Removes transfers whose cancel arrived while curl was running. */
static void reap_cancelled(fr_http *h)
{
    fr_xfer *x = h->xfers;
    while (h->ncancelled > 0 && x) {
        fr_xfer *next = x->next;
        if (x->cancelled)
            xfer_release(x);
        x = next;
    }
}

/* Completes every finished transfer. Reads one message at a time, because a
 * done callback may cancel (which drops that transfer's message) or submit. */
static void drain(fr_http *h)
{
    CURLMsg *msg;
    int left = 0;
    while (!h->closing && (msg = fr_curl.multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode cc = msg->data.result;
        char *priv = NULL;
        fr_curl.easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        fr_xfer *x = (fr_xfer *)(void *)priv;
        if (x->cancelled)
            xfer_release(x);
        else
            xfer_complete(x, cc);
    }
}

static void sock_action(fr_http *h, curl_socket_t fd, int flags)
{
    if (h->shut)
        return;
    int running = 0;
    h->depth++;
    h->in_curl = true;
    h->actions++;
    fr_curl.multi_socket_action(h->multi, fd, flags, &running);
    h->in_curl = false;
    if (!h->closing) {
        reap_cancelled(h);
        drain(h);
    }
    h->depth--;
    if (h->depth == 0 && !h->closing)
        fr_nat_kick(h);
    if (h->closing && h->depth == 0)
        http_shutdown(h);
}

/* Cancels all transfers, closes every handle and cleans up curl. The memory
 * goes with the last close callback. */
static void http_shutdown(fr_http *h)
{
    if (h->shut)
        return;
    h->shut = true;
    fr_nat_shutdown(h);
    while (h->xfers)
        xfer_release(h->xfers); /* never calls done */
    while (h->spare) {
        fr_xfer *x = h->spare;
        h->spare = x->next;
        xfer_destroy(x);
    }
    h->nspare = 0;
    /* Stop watching before curl closes the sockets of its cached connections. */
    for (size_t fd = 0; fd < h->nsocks; fd++)
        if (h->socks[fd])
            sock_close(h, h->socks[fd]);
    h->timer_closed = true;
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
    if (h->multi)
        fr_curl.multi_cleanup(h->multi);
    h->multi = NULL;
}

/* ---- public API ----------------------------------------------------------- */

/* Returns a new engine on `loop` (borrowed; it must outlive the engine and be
 * run after fr_http_free until empty). libcurl and its global state come
 * with the first transfer through curl (curl_ready: the loop thread). */
uv_loop_t *fr_http_loop(const fr_http *h)
{
    return h->loop;
}

static int curl_ready(fr_http *h);

fr_http *fr_http_new(uv_loop_t *loop)
{
    if (!loop)
        return NULL;
    fr_http *h = fr_xcalloc(1, sizeof *h);
    h->loop = loop;
    h->cache_size = MAX_CACHED_CONNS;
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    h->open_handles = 1;
    const char *mode = getenv("FLOWRUN_HTTP");
    h->only_curl = mode && strcmp(mode, "curl") == 0;
    if (h->only_curl)
        (void)curl_ready(h); /* every transfer will need it; a failure is logged */
    return h;
}

int fr_http_prepare(fr_http *h, const char *url)
{
    if (!h || h->closing)
        return FR_EINVAL;
    return fr_nat_carries(h, url) ? FR_OK : curl_ready(h);
}

/* curl's multi handle, made at the first transfer that goes through curl
 * (libcurl loaded then: a run over plain HTTP never loads it). FR_OK, or
 * the load's error (logged once: the transfer fails with it). */
static int curl_ready(fr_http *h)
{
    if (h->multi)
        return FR_OK;
    fr_error err = {0};
    int rc = fr_curl_load(&err);
    if (rc != FR_OK) {
        if (!h->curl_refused) {
            char msg[1400];
            fr_log_event(FR_LOG_ERROR, "http", "http.curl", "error=\"%s\"",
                         fr_error_format(&err, msg, sizeof msg));
            h->curl_refused = true;
        }
        return rc;
    }
    CURLM *multi = fr_curl.multi_init();
    if (!multi)
        return FR_ENOMEM;
    h->multi = multi;
    fr_curl.multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    fr_curl.multi_setopt(multi, CURLMOPT_SOCKETDATA, h);
    fr_curl.multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    fr_curl.multi_setopt(multi, CURLMOPT_TIMERDATA, h);
    /* Admission is the scheduler's job: curl must never hold a transfer
     * back, but for the cap fr_http_set_max_connections gave. */
    fr_curl.multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, h->max_conns);
    fr_curl.multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    fr_curl.multi_setopt(multi, CURLMOPT_MAXCONNECTS, h->cache_size);
    fr_curl.multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    return FR_OK;
}

#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (cc == CURLE_OK)                                                                        \
            cc = fr_curl.easy_setopt(e, opt, val);                                                 \
    } while (0)

/* A new easy handle for `x` with what every transfer shares: set once, as
 * the callbacks' pointers to x, which keeps its handle for life. */
static int new_easy(fr_http *h, fr_xfer *x)
{
    CURL *e = x->easy = fr_curl.easy_init();
    if (!e)
        return FR_ENOMEM;
    h->easy_made++;
    CURLcode cc = CURLE_OK;
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_BUFFERSIZE, RECV_BUFFER_SIZE);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, x);
    x->set.connect_ms = -1;
    return fr_http_curl_rc(cc);
}

#undef SET

/* A transfer with an easy handle: a spare one, cleared but for its handle
 * and what that is set to, or a new one. */
static fr_xfer *xfer_take(fr_http *h, int *rc)
{
    fr_xfer *x = h->spare;
    if (x) {
        h->spare = x->next;
        h->nspare--;
        CURL *easy = x->easy;
        easy_set set = x->set;
        memset(x, 0, sizeof *x);
        x->easy = easy;
        x->set = set;
        x->h = h;
        *rc = FR_OK;
        return x;
    }
    x = fr_xcalloc(1, sizeof *x);
    x->h = h;
    *rc = new_easy(h, x);
    return x;
}

/* Keeps curl's cache of idle connections at least as large as the
 * transfers at once (above it, each transfer that ends would close one
 * that the next request could have reused). */
static void grow_cache(fr_http *h)
{
    if (h->active <= h->peak)
        return;
    h->peak = h->active;
    if ((long)h->peak <= h->cache_size)
        return;
    long n = h->cache_size * 2;
    if (n < (long)h->peak)
        n = (long)h->peak;
    h->cache_size = n;
    fr_curl.multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, n);
}

/* Starts a POST of `req` (borrowed; url, headers and body are copied) with
 * `opts` (borrowed, NULL for defaults). The transfer goes to curl at once:
 * nothing is queued here. `ud` goes back to `on_data` (may be NULL) and
 * `on_done` (may be NULL). *out (optional) receives a borrowed handle valid
 * until done is called or the transfer is cancelled. Returns FR_OK, FR_EINVAL
 * (no URL, a scheme other than http/https, a malformed header line, called
 * from inside on_data or after fr_http_free) or FR_ENOMEM. */
int fr_http_submit(fr_http *h, const fr_request *req, const fr_http_opts *opts,
                   fr_http_data_fn on_data, fr_http_done_fn on_done, void *ud, fr_xfer **out)
{
    static const fr_http_opts no_opts;
    int rc = FR_EINVAL;
    fr_xfer *x = NULL;
    const char *cached = NULL;
    if (!h || !req || h->closing || h->in_curl || fr_nat_in_data(h))
        goto cleanup;
    if (req->nheaders > 0 && !req->headers)
        goto cleanup;
    for (size_t i = 0; i < req->nheaders; i++)
        if (!fr_http_valid_header(req->headers[i]))
            goto cleanup;
    bool taken = false;
    rc = fr_nat_submit(h, req, opts, on_data, on_done, ud, out, &taken);
    if (taken)
        return rc;
    rc = curl_ready(h);
    if (rc != FR_OK)
        goto cleanup;
    rc = FR_EINVAL;
    if (!fr_http_valid_url(h, req->url, &cached))
        goto cleanup;
    if (!opts)
        opts = &no_opts;

    x = xfer_take(h, &rc);
    if (rc != FR_OK)
        goto cleanup;
    x->on_data = on_data;
    x->on_done = on_done;
    x->ud = ud;
    x->max_response = opts->max_response ? opts->max_response : DEFAULT_MAX_RESPONSE;
    x->dl.first_byte_ms = opts->first_byte_timeout_ms;
    x->dl.idle_ms = opts->idle_timeout_ms;
    x->dl.total_ms = opts->total_timeout_ms;
    if (opts->capture_header)
        x->capture = fr_xstrndup(opts->capture_header, strnlen(opts->capture_header, 63));
    if (opts->method)
        snprintf(x->method, sizeof x->method, "%s", opts->method);
    const char *body = req->body ? req->body : "";
    size_t body_len = strlen(body);
    x->body = fr_xstrndup(body, body_len);
    rc = fr_http_build_headers(req, &x->headers);
    if (rc != FR_OK)
        goto cleanup;
    long connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_MS;
    rc = fr_http_setup_easy(x, req, cached, body_len, connect_ms);
    if (rc != FR_OK)
        goto cleanup;
    CURLMcode mc = fr_curl.multi_add_handle(h->multi, x->easy);
    if (mc != CURLM_OK) {
        rc = mc == CURLM_OUT_OF_MEMORY ? FR_ENOMEM : FR_EINVAL;
        goto cleanup;
    }

    /* From here on the transfer is live and owns a uv handle. */
    uv_timer_init(h->loop, &x->timer);
    x->timer.data = x;
    h->open_handles++;
    x->id = ++h->next_id;
    x->actions_at_submit = h->actions;
    x->dl.start_ms = uv_now(h->loop);
    x->start_ns = uv_hrtime();
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    h->active++;
    grow_cache(h);
    xfer_arm(x);
    fr_log_event(FR_LOG_DEBUG, "http", "http.submit", "xfer=%lu submit body_bytes=%zu active=%zu",
                 x->id, body_len, h->active);
    if (out)
        *out = x;
    x = NULL;
    rc = FR_OK;
cleanup:
    if (x) {
        fr_http_free_headers(x->headers);
        free(x->body);
        xfer_destroy(x);
    }
    return rc;
}

/* Aborts transfer `x` (borrowed; NULL, an already finished transfer, or any
 * transfer after fr_http_free are ignored) without calling its done
 * callback. Removes the easy handle at once, or, when called from inside an
 * on_data callback, as soon as curl returns. */
void fr_http_cancel(fr_http *h, fr_xfer *x)
{
    if (!h || !x || h->closing)
        return;
    if (x->base.native) {
        fr_nat_cancel(h, x);
        return;
    }
    if (x->finished || x->cancelled)
        return;
    h->active--;
    x->reusable = true; /* removed before it ended: nothing of it is left */
    if (h->in_curl) {
        x->cancelled = true;
        h->ncancelled++;
        return;
    }
    x->finished = true;
    xfer_release(x);
}

/* Returns the number of transfers submitted and neither done nor cancelled. */
size_t fr_http_active(const fr_http *h)
{
    return h ? h->active + fr_nat_active(h) : 0;
}

/* Returns how many TCP connections the finished or cancelled transfers
 * opened (CURLINFO_NUM_CONNECTS summed); reused connections count once. */
void fr_http_set_max_connections(fr_http *h, long n)
{
    h->max_conns = n > 0 ? n : 0;
    /* curl closes a connection when a transfer ends with more than
     * MAXCONNECTS open: below the transfers at once, every request would
     * open a new one (and a peer's end of each closed one lingers). The
     * cache grows with the transfers at once (grow_cache); with a cap it
     * never needs to be larger than the cap. */
    h->cache_size = n > MAX_CACHED_CONNS ? n : MAX_CACHED_CONNS;
    if (h->multi) { /* else set when curl is first needed */
        fr_curl.multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, h->max_conns);
        fr_curl.multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, h->cache_size);
    }
}

long fr_http_connections(const fr_http *h)
{
    return h ? h->connects + fr_nat_connections(h) : 0;
}

/* Returns how many easy handles were created (spare ones reused do not count). */
long fr_http_handles_made(const fr_http *h)
{
    return h ? h->easy_made + fr_nat_made(h) : 0;
}

/* Cancels every transfer without done callbacks, cleans up curl and closes
 * every libuv handle; the struct is freed in the last close callback, so the
 * caller runs the loop until it is empty. Safe from a done callback or a uv
 * callback of ours (the work then happens when that callback returns).
 * NULL is fine; a second call does nothing. */
void fr_http_free(fr_http *h)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    if (h->depth == 0)
        http_shutdown(h);
}
