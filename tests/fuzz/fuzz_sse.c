/* libFuzzer target for providers/sse, the Server-Sent Events framer.
 *
 * Input: [flags][mode][seed] then the stream. flags bit 0 caps an event at
 * 64 + seed bytes (else the default 1 MiB), bits 1-3 make the callback stop
 * the framer at that event (0: never), bit 4 flushes at the end. mode and
 * seed cut the stream into chunks (tests/unit/support/split.h).
 *
 * Invariants: every event is well formed (a name, an id, data NUL-terminated
 * at data_len, within the cap), an error is sticky, and the events, the
 * final code and the pending state are the same for the cut stream as for
 * the stream fed whole. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "tests/unit/support/split.h"
#include "providers/sse.h"

#include <string.h>

typedef struct run {
    fr_buf log; /* every event as name \0 id \0 len:data \x1e */
    size_t cap;
    int events;
    int stop_at;
} run;

static int on_event(void *ud, const fr_sse_event *ev)
{
    run *r = ud;
    FUZZ_CHECK(ev->event && ev->event[0]);
    FUZZ_CHECK(ev->id && ev->data);
    FUZZ_CHECK(ev->data[ev->data_len] == '\0');
    FUZZ_CHECK(ev->data_len <= r->cap);
    r->events++;
    fr_buf_puts(&r->log, ev->event);
    fr_buf_append(&r->log, "", 1);
    fr_buf_puts(&r->log, ev->id);
    fr_buf_append(&r->log, "", 1);
    fr_buf_printf(&r->log, "%zu:", ev->data_len);
    fr_buf_append(&r->log, ev->data, ev->data_len);
    fr_buf_append(&r->log, "\x1e", 1);
    return r->events == r->stop_at ? FR_EPROTO : FR_OK;
}

SPLIT_FRAMER_CALLS(fr_sse)

/* Frames `body` cut as `mode`/`seed` say; fills `r` and returns the final
 * code, with the pending state before the flush in *was_pending. */
static int frame(run *r, uint8_t flags, uint8_t mode, uint8_t seed, const uint8_t *body, size_t n,
                 bool *was_pending, long *retry)
{
    fr_sse s;
    fr_buf_init(&r->log, 0);
    r->cap = (flags & 1) ? 64 + (size_t)seed : 1024 * 1024;
    r->events = 0;
    r->stop_at = (flags >> 1) & 7;
    fr_sse_init(&s, (flags & 1) ? r->cap : 0, on_event, r);
    split sp;
    split_init(&sp, mode, seed, body, n);
    split_framer f = SPLIT_FRAMER(fr_sse, &s);
    int rc = split_frame(&sp, &f, flags & 0x10, was_pending);
    *retry = fr_sse_retry_ms(&s);
    FUZZ_CHECK(*retry >= -1);
    fr_sse_close(&s);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes) as the
 * file comment lays it out. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    const uint8_t *body = data + 3;
    size_t n = size - 3;
    run whole, cut;
    bool pw, pc;
    long rw, rcut;
    int a = frame(&whole, data[0], 0, data[2], body, n, &pw, &rw);
    int b = frame(&cut, data[0], data[1], data[2], body, n, &pc, &rcut);
    split_check_same(&(split_outcome){a, pw, whole.events, &whole.log},
                     &(split_outcome){b, pc, cut.events, &cut.log});
    FUZZ_CHECK(rw == rcut);
    fr_buf_close(&whole.log);
    fr_buf_close(&cut.log);
    return 0;
}
