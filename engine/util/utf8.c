#include "engine/util/utf8.h"

#include <stdint.h>
#include <string.h>

bool fr_utf8_valid(const char *s, size_t n, size_t *bad)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        /* Eight ASCII bytes a step (prompts and names are mostly ASCII): a
         * word without a high bit holds no sequence to check. */
        if (n - i >= 8) {
            uint64_t x;
            memcpy(&x, p + i, 8);
            if (!(x & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        unsigned c = p[i];
        size_t len;
        unsigned min, cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2, min = 0x80, cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, min = 0x800, cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            goto invalid;
        }
        if (n - i < len)
            goto invalid;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                goto invalid;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            goto invalid;
        i += len;
    }
    return true;
invalid:
    if (bad)
        *bad = i;
    return false;
}

const char *fr_utf8_text(const char *s, size_t n, size_t *bad)
{
    const char *nul = memchr(s, '\0', n);
    size_t at = 0;
    bool ok = fr_utf8_valid(s, nul ? (size_t)(nul - s) : n, &at);
    if (!ok) {
        if (bad)
            *bad = at;
        return "is not valid UTF-8";
    }
    if (nul) {
        if (bad)
            *bad = (size_t)(nul - s);
        return "holds a NUL byte";
    }
    return NULL;
}
