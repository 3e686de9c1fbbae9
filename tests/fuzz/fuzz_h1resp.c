/* libFuzzer target for engine/util/h1resp, the HTTP/1.x response parser of
 * engine/http's native client, which reads whatever a server (or anything
 * listening on the port) sends.
 *
 * Input: [flags][mode][seed] then the bytes of the connection. flags bit 0
 * parses the reply to a HEAD request, bit 1 ends the input with the close
 * of the connection. mode and seed cut the bytes into pieces
 * (tests/unit/support/split.h); each piece is fed until the parser needs
 * more, is done or fails.
 *
 * Invariants: a feed never uses more than it was given, and uses all of it
 * when it asks for more; a body piece lies inside the piece fed and is never
 * empty; a header field lies inside the piece or the parser's line buffer;
 * HEAD_END comes once, with a status of 200..999, before any body; done and
 * error are sticky and use nothing; the line buffer stays within its limit;
 * and the status, the fields, the body, the end and the bytes left over are
 * the same for the cut input as for the input fed whole (the bytes left
 * over and keep-alive when it ended well). */

#include "engine/util/buf.h"
#include "engine/util/h1resp.h"
#include "tests/unit/support/split.h"

#include <string.h>

typedef struct result {
    fr_buf log;  /* H name \0 value \x1e and E status \x1e for each event */
    fr_buf body; /* the body's bytes */
    int end;     /* 0 running, 1 done, 2 error */
    size_t rest;
    bool keep_alive;
} result;

static bool inside(const char *base, size_t n, const char *p, size_t len)
{
    return p >= base && len <= n && (size_t)(p - base) <= n - len;
}

static void parse(result *r, uint8_t flags, uint8_t mode, uint8_t seed, const uint8_t *data,
                  size_t n)
{
    fr_h1_resp p = {0};
    fr_h1_reset(&p, flags & 1);
    fr_buf_init(&r->log, 0);
    fr_buf_init(&r->body, 0);
    r->end = 0;
    r->rest = 0;
    bool head_end = false;
    split sp;
    split_init(&sp, mode, seed, data, n);
    const uint8_t *chunk;
    size_t len, fed = 0;
    while (r->end == 0 && split_next(&sp, &chunk, &len)) {
        const char *d = (const char *)chunk;
        size_t left = len;
        fed += len;
        for (;;) {
            fr_h1_event ev;
            size_t used = fr_h1_feed(&p, d, left, &ev);
            FUZZ_CHECK(used <= left);
            FUZZ_CHECK(p.line_cap <= FR_H1_LINE_MAX);
            const char *base = d;
            size_t avail = left;
            d += used;
            left -= used;
            if (ev.kind == FR_H1_NEED) {
                FUZZ_CHECK(left == 0);
                break;
            }
            if (ev.kind == FR_H1_HEADER) {
                FUZZ_CHECK(!head_end);
                FUZZ_CHECK(inside(base, avail, ev.name, ev.name_len) ||
                           inside(p.line, p.line_len, ev.name, ev.name_len));
                FUZZ_CHECK(inside(base, avail, ev.value, ev.value_len) ||
                           inside(p.line, p.line_len, ev.value, ev.value_len));
                fr_buf_append(&r->log, "H", 1);
                fr_buf_append(&r->log, ev.name, ev.name_len);
                fr_buf_append(&r->log, "", 1);
                fr_buf_append(&r->log, ev.value, ev.value_len);
                fr_buf_append(&r->log, "\x1e", 1);
            } else if (ev.kind == FR_H1_HEAD_END) {
                FUZZ_CHECK(!head_end);
                FUZZ_CHECK(p.status >= 200 && p.status <= 999);
                head_end = true;
                fr_buf_printf(&r->log, "E%ld\x1e", p.status);
            } else if (ev.kind == FR_H1_BODY) {
                FUZZ_CHECK(head_end && !(flags & 1));
                FUZZ_CHECK(ev.len > 0 && inside(base, avail, ev.data, ev.len));
                fr_buf_append(&r->body, ev.data, ev.len);
            } else {
                r->end = ev.kind == FR_H1_DONE ? 1 : 2;
                FUZZ_CHECK(r->end == 1 ? head_end : p.error != NULL);
                FUZZ_CHECK(fr_h1_feed(&p, d, left, &ev) == 0);
                FUZZ_CHECK(ev.kind == (r->end == 1 ? FR_H1_DONE : FR_H1_ERROR));
                r->rest = left + (n - fed);
                break;
            }
        }
    }
    if (r->end == 0 && (flags & 2) && fr_h1_eof(&p))
        r->end = 1;
    r->keep_alive = p.keep_alive;
    fr_h1_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    uint8_t flags = data[0], mode = data[1], seed = data[2];
    result whole, cut;
    parse(&whole, flags, 0, 0, data + 3, size - 3);
    parse(&cut, flags, mode, seed, data + 3, size - 3);
    FUZZ_CHECK(whole.end == cut.end);
    FUZZ_CHECK(whole.log.len == cut.log.len);
    FUZZ_CHECK(memcmp(fr_buf_str(&whole.log), fr_buf_str(&cut.log), cut.log.len) == 0);
    FUZZ_CHECK(whole.body.len == cut.body.len);
    FUZZ_CHECK(memcmp(fr_buf_str(&whole.body), fr_buf_str(&cut.body), cut.body.len) == 0);
    if (whole.end == 1) { /* where an error is seen may depend on the cuts */
        FUZZ_CHECK(whole.rest == cut.rest);
        FUZZ_CHECK(whole.keep_alive == cut.keep_alive);
    }
    fr_buf_close(&whole.log);
    fr_buf_close(&whole.body);
    fr_buf_close(&cut.log);
    fr_buf_close(&cut.body);
    return 0;
}
