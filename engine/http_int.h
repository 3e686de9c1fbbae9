#pragma once
/* engine/http's private half, shared by its two files: http.c (the multi
 * handle on the loop, sockets, timers, transfers' lifetimes and curl's
 * callbacks) and http_easy.c (a request made into an easy handle's
 * settings: the URL checked once, the header list, what a reused handle
 * must be set again; the Retry-After a reply asked for). Nothing outside
 * engine/http*.c includes it. */

#include "engine/http.h"

#include "engine/curlfns.h"
#include <stdbool.h>
#include <time.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define RETRY_AFTER_MAX 64
/* Distinct URLs remembered as checked (endpoints, MCP servers), at most. */
#define URL_CACHE_MAX 32

/* One watched socket. Owned by fr_http while it is in `socks`; once closing it
 * belongs to libuv and is freed in its close callback. */
typedef struct sock_ctx {
    uv_poll_t poll; /* poll.data points back to this struct */
    fr_http *h;
    curl_socket_t fd;
    int events; /* UV_READABLE | UV_WRITABLE that curl asked for */
    bool closing;
} sock_ctx;

typedef enum {
    DEADLINE_NONE = 0,
    DEADLINE_FIRST,
    DEADLINE_IDLE,
    DEADLINE_TOTAL,
    DEADLINE_CONNECT /* the native path's own; curl times its connects itself */
} deadline_kind;

/* A transfer's deadlines and what moves them: the same on both paths. */
typedef struct http_deadlines {
    uint64_t start_ms;    /* uv_now at submit */
    uint64_t activity_ms; /* uv_now at the end of headers or the last body chunk of content */
    long first_byte_ms, idle_ms, total_ms;
    bool got_body;     /* at least one body byte arrived */
    bool headers_done; /* final (non-1xx) headers complete */
} http_deadlines;

/* What an easy handle was last set to, kept across its reuses so that only
 * what differs is set again. */
typedef struct easy_set {
    const char *url; /* an entry of h->urls, or NULL when not cached */
    long connect_ms;
    size_t max_response;
    bool custom_method; /* CURLOPT_CUSTOMREQUEST is set */
} easy_set;

/* What both kinds of transfer begin with: fr_http_cancel tells them apart. */
typedef struct xfer_base {
    bool native; /* a nat_xfer of http_native.c, else a curl fr_xfer */
} xfer_base;

/* The native HTTP/1.1 client's state (http_native.c), opaque here. */
typedef struct fr_nat fr_nat;

struct fr_xfer {
    xfer_base base; /* first */
    fr_http *h;
    fr_xfer *prev, *next; /* in h->xfers while the easy handle is live */
    unsigned long id;     /* for log lines only */
    CURL *easy;
    easy_set set;  /* what easy was set to: kept when the handle is reused */
    bool reusable; /* the transfer ended cleanly: its easy handle may serve another */
    unsigned long actions_at_submit; /* h->actions when submitted */
    struct curl_slist *headers;
    char *body;
    fr_http_data_fn on_data;
    fr_http_done_fn on_done;
    void *ud;

    uv_timer_t timer;  /* deadlines; timer.data points back; frees the xfer on close */
    http_deadlines dl; /* first byte, idle, total */
    uint64_t start_ns; /* uv_hrtime at submit */
    uint64_t first_ns; /* uv_hrtime at the first body byte */
    size_t max_response;

    long status;    /* parsed from the status line, for on_data */
    bool cancelled; /* cancel asked from inside curl; removed after socket_action */
    bool finished;  /* done delivered or cancelled; memory waits for the close cb */
    int abort_rc;   /* why the write callback stopped the transfer, 0 if it did not */
    bool no_fds;    /* socket() failed with EMFILE or ENFILE */
    size_t bytes;

    char retry_after[RETRY_AFTER_MAX];    /* raw header value of the latest response */
    char retry_after_ms[RETRY_AFTER_MAX]; /* retry-after-ms (OpenAI, Azure), same response */
    char errbuf[CURL_ERROR_SIZE];         /* CURLOPT_ERRORBUFFER */
    char msg[160];                        /* our own error text */
    char *capture;   /* opts->capture_header (owned, at most 63 bytes), NULL for none */
    char *captured;  /* its value in the final response (owned, at most 255 bytes) */
    char method[16]; /* opts->method, "" for POST */
};

struct fr_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer; /* curl's timeout; timer.data points back */
    bool timer_closed;

    sock_ctx **socks; /* live contexts indexed by fd; closing ones are not here */
    size_t nsocks;

    fr_xfer *xfers; /* live transfers */
    fr_xfer *spare; /* ended transfers with their easy handle, for reuse */
    size_t nspare;
    long easy_made;            /* easy handles created */
    long cache_size;           /* CURLMOPT_MAXCONNECTS now */
    size_t peak;               /* most transfers at once */
    char *urls[URL_CACHE_MAX]; /* checked URLs (owned), for valid_url */
    size_t nurls;
    size_t active;     /* transfers neither done nor cancelled */
    size_t ncancelled; /* cancelled from inside curl, still to remove */
    long connects;
    unsigned long next_id;
    unsigned long actions; /* calls of curl_multi_socket_action */

    int depth;    /* nesting of our own uv callbacks that dispatch */
    bool in_curl; /* inside curl_multi_socket_action: no curl calls now */
    bool closing; /* fr_http_free was called */
    bool shut;    /* shutdown ran; memory goes with the last close callback */
    int open_handles;
    fr_nat *nat;       /* the native client, made at the first plain http:// request */
    bool only_curl;    /* FLOWRUN_HTTP=curl */
    bool curl_refused; /* libcurl could not be loaded (logged once) */
    long max_conns;    /* fr_http_set_max_connections, 0 for none */
};

/* Frees a header list (NULL is fine), wiping each line first: the
 * credential headers carry the API key. */
void fr_http_free_headers(struct curl_slist *list);
/* True for an http or https URL. Sets *cached (borrowed, lives as long as
 * h) to the remembered copy of `url` when there is one, else NULL: a run
 * sends to a few URLs many times, and each is parsed here once. */
bool fr_http_valid_url(fr_http *h, const char *url, const char **cached);
/* A header line must be "Name: value" on one line: no CR or LF smuggling. */
bool fr_http_valid_header(const char *line);
/* Builds the curl header list of `req` (borrowed) into *out (owned by the
 * caller: fr_http_free_headers): its lines, a JSON Content-Type unless it
 * has one, no Expect. Returns FR_OK or FR_ENOMEM. */
int fr_http_build_headers(const fr_request *req, struct curl_slist **out);
/* FR_OK, FR_ENOMEM or FR_EINVAL for a curl setopt result. */
int fr_http_curl_rc(CURLcode cc);
/* Sets what request `req` (borrowed) has of its own on x's easy handle, and
 * of what a reused handle was set to only what differs: the URL (`cached`,
 * from fr_http_valid_url, or NULL), x's headers and body always, its method,
 * the connect timeout, the reply cap. Returns as fr_http_curl_rc. */
int fr_http_setup_easy(fr_xfer *x, const fr_request *req, const char *cached, size_t body_len,
                       long connect_ms);
/* The wait x's latest response asked for in seconds: retry-after-ms when
 * valid (the more precise), else Retry-After (delta-seconds or an HTTP
 * date, 0 for a date past); -1 when neither. */
double fr_http_retry_after_s(const fr_xfer *x);
/* http_easy.c: an HTTP date (IMF-fixdate, RFC 850 or asctime, GMT) as Unix
 * time, or (time_t)-1 for anything else (`v` borrowed, whole). */
time_t fr_http_date_parse(const char *v);

/* The same from the raw header values (each "" when absent): shared by
 * both paths. */
double fr_http_retry_after_parse(const char *retry_after, const char *retry_after_ms);

/* The earliest of d's deadlines (first byte, idle, total), and its kind
 * in *kind (DEADLINE_NONE and UINT64_MAX when there is none). */
uint64_t fr_http_next_deadline(const http_deadlines *d, deadline_kind *kind);
/* The error text of d's deadline of `kind` (not CONNECT) into msg. */
void fr_http_deadline_text(const http_deadlines *d, deadline_kind kind, char *msg, size_t size);
/* True when `req` (borrowed) has a header line named `name` (any case). */
bool fr_http_has_header(const fr_request *req, const char *name);

/* ---- http.c's services to http_native.c ---- */
/* One of fr_http's libuv handles was closed: the memory goes with the last. */
void fr_http_handle_closed(fr_http *h);
/* Around a libuv callback that may call done callbacks: fr_http_free from
 * one of them takes effect at the outermost leave. */
void fr_http_enter(fr_http *h);
void fr_http_leave(fr_http *h);

/* ---- http_native.c: plain http:// without a proxy, on libuv streams ---- */
/* http_native.c: whether the native client carries requests to `url`
 * (borrowed; NULL: no), as fr_nat_submit would take them. */
bool fr_nat_carries(fr_http *h, const char *url);

/* Submits `req` natively when its URL is a plain http:// one that no proxy
 * applies to (the header lines and h's state already checked): then sets
 * *taken and returns as fr_http_submit. Leaves *taken false (and returns
 * FR_OK) when the curl path must carry it. */
int fr_nat_submit(fr_http *h, const fr_request *req, const fr_http_opts *opts,
                  fr_http_data_fn on_data, fr_http_done_fn on_done, void *ud, fr_xfer **out,
                  bool *taken);
/* Starts the transfers submitted since (connect or send): at the end of
 * each libuv callback of fr_http's, outside every done and data callback. */
void fr_nat_kick(fr_http *h);
/* fr_http_cancel of a native transfer. */
void fr_nat_cancel(fr_http *h, fr_xfer *x);
/* Transfers in flight, TCP connections opened, transfer structs made. */
size_t fr_nat_active(const fr_http *h);
long fr_nat_connections(const fr_http *h);
long fr_nat_made(const fr_http *h);
/* True while a native data callback runs (no submit then). */
bool fr_nat_in_data(const fr_http *h);
/* Cancels every native transfer and closes every handle (fr_http_free). */
void fr_nat_shutdown(fr_http *h);
/* Frees what is left once every handle is closed. */
void fr_nat_release(fr_http *h);
