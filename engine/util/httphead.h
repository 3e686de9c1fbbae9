#pragma once
/* The head of an HTTP/1.x request (request line and header fields), parsed
 * in place into slices of the caller's buffer, within fixed limits; the
 * Content-Length of a body; comma-separated header tokens; the reason
 * phrase of a status. No I/O. Used by the two HTTP servers of the product:
 * flowrun-sim (engine/sim/sim_http.c) and the MCP server's Streamable HTTP
 * transport (engine/mcpd/http_serve.c). */

#include <stdbool.h>
#include <stddef.h>

#define FR_HTTPHEAD_MAX_FIELDS 100 /* header fields of one request */

/* One header field: name and value (spaces around the value trimmed). The
 * pointers borrow the parsed buffer. */
typedef struct fr_httphead_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} fr_httphead_field;

/* A parsed request head; every pointer borrows the parsed buffer. */
typedef struct fr_httphead {
    const char *method;
    size_t method_len;
    const char *target; /* the request target, query included */
    size_t target_len;
    int minor; /* HTTP/1.<minor>: 0 or 1 */
    fr_httphead_field fields[FR_HTTPHEAD_MAX_FIELDS];
    size_t nfields;
} fr_httphead;

/* Returns the length of the head at the start of `p` (`n` bytes, borrowed),
 * its blank line included, or 0 while it is incomplete. `*scan` (0 at
 * first) remembers how far an earlier call looked, so feeding a growing
 * buffer costs linear time. */
size_t fr_httphead_end(const char *p, size_t n, size_t *scan);

/* Parses the complete head `p` of `n` bytes (from fr_httphead_end) into
 * `h`. Returns 0, 400 for a malformed request line or field, or 431 for
 * more than FR_HTTPHEAD_MAX_FIELDS fields. */
int fr_httphead_parse(const char *p, size_t n, fr_httphead *h);

/* Returns the first field named `name` (case-insensitive), or NULL. */
const fr_httphead_field *fr_httphead_get(const fr_httphead *h, const char *name);

/* Returns whether field `f` has the name `name` (case-insensitive). */
bool fr_httphead_is(const fr_httphead_field *f, const char *name);

/* Reads every Content-Length of `h`: returns 0 with *have false when there is
 * none, 0 with *have and *len set, or 400 when one is not a number or two
 * disagree. */
int fr_httphead_length(const fr_httphead *h, bool *have, unsigned long long *len);

/* Returns whether the comma-separated list `v` (`n` bytes) holds the token
 * `tok` (case-insensitive, parameters after ';' ignored). */
bool fr_httphead_has_token(const char *v, size_t n, const char *tok);

/* Returns the reason phrase of `status` (static string). */
const char *fr_http_status_text(int status);
