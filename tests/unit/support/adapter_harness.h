#pragma once
/* Shared by the adapter unit tests (test_openai, test_ollama, test_anthropic,
 * test_wire): feed a reply to a fresh adapter at chosen split points, as
 * engine/http delivers it, and read a request's headers. Header-only: each
 * test executable is one translation unit. */

#include "providers/provider.h"

#include <stddef.h>
#include <string.h>

/* Returns the value of header `name` in `r` (both borrowed), or NULL. */
static inline const char *adapter_header(const fr_request *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (strncmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
            return r->headers[i] + n + 2;
    return NULL;
}

/* Feeds `len` bytes of `body` to a fresh `proto` adapter for `call` with
 * `status`, cut at `cuts` (ascending offsets), then finishes into `out`.
 * Returns finish's code; *feed_rc (may be NULL) gets the first failing
 * feed's code, or FR_OK. Feeding stops at the first error, as engine/http
 * aborts the transfer then. */
static inline int adapter_run(fr_protocol proto, const fr_call *call, long status, const char *body,
                              size_t len, const size_t *cuts, size_t ncuts, fr_reply *out,
                              fr_error *err, int *feed_rc)
{
    fr_adapter *a = fr_adapter_new(proto, call);
    int frc = FR_OK;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && frc == FR_OK; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        frc = fr_adapter_feed(a, status, body + at, next - at);
        at = next;
    }
    if (feed_rc)
        *feed_rc = frc;
    int rc = fr_adapter_finish(a, status, out, err);
    fr_adapter_free(a);
    return rc;
}
