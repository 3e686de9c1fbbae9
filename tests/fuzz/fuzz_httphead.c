/* libFuzzer target for engine/util/httphead, the HTTP request head parser
 * both of flowrun's HTTP servers (flowrun-sim, `flowrun mcp --http`) read
 * untrusted bytes with.
 *
 * Input: [step] then the bytes a client sent. The head's end is looked for
 * once over the whole input and once over a buffer growing by 1 + step
 * bytes a read, with the scan position kept between calls, as a server
 * does.
 *
 * Invariants: both searches find the same end, within the input; a head
 * parses to 0, 400 or 431; a parsed head's method, target and every field
 * lie inside the head, with at most FR_HTTPHEAD_MAX_FIELDS fields; the
 * Content-Length reading gives 0 or 400; token lookups on every field end. */

#include "engine/util/httphead.h"
#include "tests/unit/support/split.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int inside(const char *base, size_t n, const char *p, size_t len)
{
    return p >= base && len <= n && (size_t)(p - base) <= n - len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = 1 + data[0];
    size_t n = size - 1;
    char *buf = malloc(n + 1);
    memcpy(buf, data + 1, n);
    buf[n] = '\0';

    size_t scan = 0;
    size_t whole = fr_httphead_end(buf, n, &scan);
    FUZZ_CHECK(whole <= n);
    size_t grown = 0, have = 0;
    scan = 0;
    while (have < n && grown == 0) {
        have = have + step < n ? have + step : n;
        grown = fr_httphead_end(buf, have, &scan);
    }
    FUZZ_CHECK(grown == whole);

    if (whole > 0) {
        fr_httphead *h = malloc(sizeof *h);
        int rc = fr_httphead_parse(buf, whole, h);
        FUZZ_CHECK(rc == 0 || rc == 400 || rc == 431);
        if (rc == 0) {
            FUZZ_CHECK(h->method_len > 0 && inside(buf, whole, h->method, h->method_len));
            FUZZ_CHECK(inside(buf, whole, h->target, h->target_len));
            FUZZ_CHECK(h->minor == 0 || h->minor == 1);
            FUZZ_CHECK(h->nfields <= FR_HTTPHEAD_MAX_FIELDS);
            for (size_t i = 0; i < h->nfields; i++) {
                const fr_httphead_field *f = &h->fields[i];
                FUZZ_CHECK(f->name_len > 0 && inside(buf, whole, f->name, f->name_len));
                FUZZ_CHECK(inside(buf, whole, f->value, f->value_len));
                (void)fr_httphead_has_token(f->value, f->value_len, "keep-alive");
                (void)fr_httphead_is(f, "content-length");
            }
            bool has_len = false;
            unsigned long long len = 0;
            int lrc = fr_httphead_length(h, &has_len, &len);
            FUZZ_CHECK(lrc == 0 || lrc == 400);
            (void)fr_httphead_get(h, "Host");
        }
        free(h);
    }
    free(buf);
    return 0;
}
