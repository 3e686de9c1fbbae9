#pragma once
/* An HTTP/1.x response parser fed bytes as they arrive, in pieces of any
 * size: the status line, the header fields of the final response (1xx
 * interim responses are skipped), and the body framed by Content-Length,
 * chunked transfer-encoding (extensions and trailers skipped) or the end of
 * the connection. Body pieces borrow the caller's input (no copy); only a
 * line split across two pieces is copied into the parser's small line
 * buffer. No I/O. Used by engine/http's native client (http_native.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest line (status, header field, chunk size) and whole head accepted. */
#define FR_H1_LINE_MAX (64 * 1024)
#define FR_H1_HEAD_MAX (256 * 1024)

typedef enum {
    FR_H1_NEED = 0, /* every byte given was used: feed more */
    FR_H1_HEADER,   /* a header field of the final response: name, value */
    FR_H1_HEAD_END, /* the final response's head is complete: status, framing known */
    FR_H1_BODY,     /* a piece of the body: data, len */
    FR_H1_DONE,     /* the response is complete */
    FR_H1_ERROR     /* malformed: error says why; the connection is unusable */
} fr_h1_kind;

/* One event. Pointers borrow the input or the parser's line buffer and are
 * valid until the next call on the parser. */
typedef struct fr_h1_event {
    fr_h1_kind kind;
    const char *data; /* BODY */
    size_t len;
    const char *name; /* HEADER: name (not terminated) */
    size_t name_len;
    const char *value; /* HEADER: value, spaces around it trimmed */
    size_t value_len;
} fr_h1_event;

typedef struct fr_h1_resp {
    int state;
    long status;        /* the final status, once HEAD_END was given */
    int minor;          /* HTTP/1.<minor> */
    bool no_body;       /* the request was HEAD: no body whatever the head says */
    bool chunked;       /* Transfer-Encoding: chunked */
    bool has_length;    /* Content-Length given */
    bool keep_alive;    /* the connection may serve another request once DONE */
    bool got_bytes;     /* any byte of a response arrived */
    uint64_t length;    /* Content-Length */
    uint64_t remaining; /* of the body with a length, or of the current chunk */
    size_t head_bytes;
    char *line; /* a line split across inputs (owned), NULL until one is */
    size_t line_len, line_cap;
    bool line_used;    /* the buffered line was handed out: drop it on the next call */
    const char *error; /* static text, once ERROR was given */
} fr_h1_resp;

/* Prepares p for a response to a request (`head`: a HEAD request, whose
 * response has no body). Keeps the line buffer of an earlier response. */
void fr_h1_reset(fr_h1_resp *p, bool head);
/* Frees the line buffer. */
void fr_h1_free(fr_h1_resp *p);
/* Parses from data[0..len) up to the next event, stored in *ev; returns the
 * bytes used (all of them when the event is NEED). Call again with the rest
 * until NEED, DONE or ERROR; after DONE or ERROR, it gives the same again
 * and uses nothing. */
size_t fr_h1_feed(fr_h1_resp *p, const char *data, size_t len, fr_h1_event *ev);
/* The connection ended (orderly). Returns true when that completes the
 * response (a body delimited by the close); false otherwise (it was cut). */
bool fr_h1_eof(fr_h1_resp *p);
/* True when the body is being read and it ends with the connection. */
bool fr_h1_until_close(const fr_h1_resp *p);
/* True while nothing at all of the response arrived. */
bool fr_h1_nothing(const fr_h1_resp *p);
