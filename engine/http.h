#pragma once
/* HTTP on the event loop: libcurl's multi interface driven by libuv socket
 * polls and one timer. Moves bytes only; adapters (providers/) read them.
 * The scheduler does admission control: fr_http never queues transfers. */

#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_http fr_http;
typedef struct fr_xfer fr_xfer;

typedef struct fr_http_opts {
    size_t max_response;        /* cap on body bytes; 0 = 8 MiB */
    long connect_timeout_ms;    /* 0 = 10 s */
    long first_byte_timeout_ms; /* from submit to the first body byte; 0 = none */
    long idle_timeout_ms;       /* longest gap between body bytes the data callback counts
                                   as activity, counted from the end of the response
                                   headers; 0 = none */
    long total_timeout_ms;      /* whole transfer; 0 = none */
    const char *capture_header; /* NULL, or a response header whose value the result
                                   carries in `captured` (MCP's Mcp-Session-Id) */
    const char *method;         /* NULL: POST; else this method ("DELETE") with the body */
} fr_http_opts;

typedef struct fr_http_result {
    int rc;               /* FR_OK when a full response arrived (any status) */
    long status;          /* HTTP status, 0 if none */
    double retry_after_s; /* parsed Retry-After header (seconds or date), -1 if absent */
    double ttfb_ms;       /* submit to first body byte, -1 if none arrived */
    double total_ms;      /* submit to completion */
    size_t bytes;         /* body bytes delivered */
    const char *error;    /* borrowed description when rc != FR_OK, else NULL */
    bool no_fds;          /* rc is FR_ECONNECT because this process (EMFILE) or the system
                             (ENFILE) is out of file descriptors: a local condition that says
                             nothing about the server; nothing was sent */
    const char *captured; /* borrowed: the value of opts->capture_header in the final
                             response, NULL if it was not asked for or not there */
} fr_http_result;

/* What a data callback returns for bytes that were framing only (SSE
 * keep-alive comments, blank NDJSON lines): the transfer goes on, and the
 * idle timer keeps running, as if nothing had arrived. */
#define FR_HTTP_QUIET 1

/* Called for each piece of the body, from inside curl's write callback: do
 * not call into fr_http from here. Return FR_OK to go on (the bytes count as
 * activity: the idle timeout starts again), FR_HTTP_QUIET to go on without
 * counting them, or a negative code to abort the transfer (done then reports
 * that code). */
typedef int (*fr_http_data_fn)(void *ud, long status, const char *data, size_t len);
/* Called once per transfer when it ends, from a libuv callback (never from
 * inside curl); may submit new transfers. `res` is borrowed for the call. */
typedef void (*fr_http_done_fn)(void *ud, const fr_http_result *res);

/* Returns a new HTTP engine on `loop` (borrowed, must outlive it), or NULL
 * without a loop. libcurl is loaded at its first transfer that plain HTTP
 * cannot carry (engine/curlfns.h); should it be missing, that transfer
 * fails at submit (FR_ENOENT, logged once with the package to install). */
fr_http *fr_http_new(uv_loop_t *loop);

/* Readies `h` for transfers to `url` (borrowed; NULL when it is not known
 * yet): when they will go through curl, libcurl is loaded now, at a run's
 * setup, not at the first such transfer on the running loop. FR_OK, or the
 * load's error (logged; such transfers fail at submit). */
int fr_http_prepare(fr_http *h, const char *url);

/* Starts a transfer (a POST unless opts->method says otherwise) of `req`
 * (borrowed, copied) with `opts` (borrowed, may be NULL). `ud` is passed
 * back to both callbacks. On FR_OK, *out (optional) receives a borrowed
 * handle valid until done is called or it is cancelled.
 * Errors: FR_EINVAL for a bad request, FR_ENOMEM, FR_ENOENT when the
 * transfer needs libcurl and it cannot be loaded. */
int fr_http_submit(fr_http *h, const fr_request *req, const fr_http_opts *opts,
                   fr_http_data_fn on_data, fr_http_done_fn on_done, void *ud, fr_xfer **out);

/* Aborts a transfer; its done callback is not called. Must not be called
 * from inside an fr_http_data_fn. */
void fr_http_cancel(fr_http *h, fr_xfer *x);

/* The loop it runs on (borrowed). */
uv_loop_t *fr_http_loop(const fr_http *h);
/* Number of transfers in flight. */
size_t fr_http_active(const fr_http *h);
/* Caps the connections curl keeps open, in use or idle, at `n` (0: no
 * cap): idle ones to other hosts are closed to make room, so the transfers
 * the scheduler admits (at most `n`) never wait here; and lets curl keep
 * `n` connections for reuse, so that many transfers at once do not open a
 * new connection per request. Call before the first submit. */
void fr_http_set_max_connections(fr_http *h, long n);
/* Number of new TCP connections opened so far (connection reuse keeps it low). */
long fr_http_connections(const fr_http *h);
/* Number of curl easy handles created so far: a transfer that ended cleanly
 * or was cancelled leaves its handle for the next one, so this stays near
 * the most transfers at once. */
long fr_http_handles_made(const fr_http *h);

/* Cancels every transfer (no done callbacks), cleans up curl and closes all
 * libuv handles. The memory is released in the last close callback, so the
 * caller must run the loop afterwards until it is empty. NULL is fine. */
void fr_http_free(fr_http *h);
