#pragma once
/* engine/http's private half, shared by its two files: http.c (the multi
 * handle on the loop, sockets, timers, transfers' lifetimes and curl's
 * callbacks) and http_easy.c (a request made into an easy handle's
 * settings: the URL checked once, the header list, what a reused handle
 * must be set again; the Retry-After a reply asked for). Nothing outside
 * engine/http*.c includes it. */

#include "engine/http.h"

#include <curl/curl.h>
#include <stdbool.h>
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

typedef enum { DEADLINE_NONE = 0, DEADLINE_FIRST, DEADLINE_IDLE, DEADLINE_TOTAL } deadline_kind;

/* What an easy handle was last set to, kept across its reuses so that only
 * what differs is set again. */
typedef struct easy_set {
    const char *url; /* an entry of h->urls, or NULL when not cached */
    long connect_ms;
    size_t max_response;
    bool custom_method; /* CURLOPT_CUSTOMREQUEST is set */
} easy_set;

struct fr_xfer {
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

    uv_timer_t timer;     /* deadlines; timer.data points back; frees the xfer on close */
    uint64_t start_ms;    /* uv_now at submit */
    uint64_t activity_ms; /* uv_now at the end of headers or the last body chunk of content */
    uint64_t start_ns;    /* uv_hrtime at submit */
    uint64_t first_ns;    /* uv_hrtime at the first body byte */
    long first_byte_ms, idle_ms, total_ms;
    size_t max_response;

    long status;       /* parsed from the status line, for on_data */
    bool headers_done; /* final (non-1xx) headers complete */
    bool got_body;     /* at least one body byte arrived */
    bool cancelled;    /* cancel asked from inside curl; removed after socket_action */
    bool finished;     /* done delivered or cancelled; memory waits for the close cb */
    int abort_rc;      /* why the write callback stopped the transfer, 0 if it did not */
    bool no_fds;       /* socket() failed with EMFILE or ENFILE */
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
