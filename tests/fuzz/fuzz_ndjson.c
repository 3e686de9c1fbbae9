/* libFuzzer target for providers/ndjson, the newline-delimited JSON framer.
 *
 * Input: [flags][mode][seed] then the stream. flags bit 0 caps a line at
 * 16 + seed bytes (else the default 1 MiB), bits 1-3 make the callback stop
 * the framer at that line (0: never), bit 4 flushes at the end. mode and
 * seed cut the stream into chunks (tests/unit/support/split.h).
 *
 * Invariants: every line handed out is non-empty, holds no LF and more than
 * whitespace, and fits the cap; an error is sticky; and the lines, the
 * final code and the pending state are the same for the cut stream as for
 * the stream fed whole. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "tests/unit/support/split.h"
#include "providers/ndjson.h"

#include <string.h>

typedef struct run {
    fr_buf log; /* every line as len:bytes \x1e */
    size_t cap;
    int lines;
    int stop_at;
} run;

static int on_line(void *ud, const char *line, size_t len)
{
    run *r = ud;
    FUZZ_CHECK(line && len > 0 && len <= r->cap);
    FUZZ_CHECK(!memchr(line, '\n', len));
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\r';
    FUZZ_CHECK(!blank);
    r->lines++;
    fr_buf_printf(&r->log, "%zu:", len);
    fr_buf_append(&r->log, line, len);
    fr_buf_append(&r->log, "\x1e", 1);
    return r->lines == r->stop_at ? FR_EPROTO : FR_OK;
}

SPLIT_FRAMER_CALLS(fr_ndjson)

/* Frames `body` cut as `mode`/`seed` say; fills `r` and returns the final
 * code, with the pending state before the flush in *was_pending. */
static int frame(run *r, uint8_t flags, uint8_t mode, uint8_t seed, const uint8_t *body, size_t n,
                 bool *was_pending)
{
    fr_ndjson j;
    fr_buf_init(&r->log, 0);
    r->cap = (flags & 1) ? 16 + (size_t)seed : 1024 * 1024;
    r->lines = 0;
    r->stop_at = (flags >> 1) & 7;
    fr_ndjson_init(&j, (flags & 1) ? r->cap : 0, on_line, r);
    split sp;
    split_init(&sp, mode, seed, body, n);
    split_framer f = SPLIT_FRAMER(fr_ndjson, &j);
    int rc = split_frame(&sp, &f, flags & 0x10, was_pending);
    fr_ndjson_close(&j);
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
    int a = frame(&whole, data[0], 0, data[2], body, n, &pw);
    int b = frame(&cut, data[0], data[1], data[2], body, n, &pc);
    split_check_same(&(split_outcome){a, pw, whole.lines, &whole.log},
                     &(split_outcome){b, pc, cut.lines, &cut.log});
    fr_buf_close(&whole.log);
    fr_buf_close(&cut.log);
    return 0;
}
