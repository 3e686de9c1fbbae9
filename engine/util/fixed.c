#include "engine/util/fixed.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

__extension__ typedef unsigned __int128 u128; /* GCC and clang: exact 128-bit products */

/* The decimal digits of `u` ending at `end`; returns where they begin. */
static char *digits(char *end, unsigned long long u)
{
    char *p = end;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    return p;
}

size_t fr_fixed(char *buf, double v, int decimals)
{
    static const unsigned long long p10[] = {1, 10, 100, 1000, 10000};
    if (decimals < 0 || decimals > 4 || !(fabs(v) < 1e15))
        return 0;
    /* v = ±m * 2^e exactly (below 1e15, e < 0); the text is m * 10^decimals
     * / 2^-e rounded to nearest, as glibc rounds the exact value. */
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    int x = (int)((bits >> 52) & 0x7ff);
    uint64_t m = bits & ((1ull << 52) - 1);
    int shift = x ? 1075 - x : 1074; /* -e */
    if (x)
        m |= 1ull << 52;
    u128 num = (u128)m * p10[decimals]; /* below 2^67 */
    unsigned long long q = 0;
    if (shift < 100) { /* else below a half: rounds to 0 */
        q = (unsigned long long)(num >> shift);
        u128 r = num & (((u128)1 << shift) - 1), half = (u128)1 << (shift - 1);
        if (r == half)
            return 0;
        q += r > half;
    }
    char num_text[24];
    char *end = num_text + sizeof num_text, *p = digits(end, q);
    while (end - p < decimals + 1) /* at least one digit before the point */
        *--p = '0';
    char *o = buf;
    if (bits >> 63)
        *o++ = '-'; /* printf keeps the sign of a value that rounds to 0, and of -0 */
    size_t whole = (size_t)(end - p) - (size_t)decimals;
    memcpy(o, p, whole);
    o += whole;
    if (decimals) {
        *o++ = '.';
        memcpy(o, p + whole, (size_t)decimals);
        o += decimals;
    }
    *o = '\0';
    return (size_t)(o - buf);
}

size_t fr_fixed_int(char *buf, long long v)
{
    char text[24];
    char *end = text + sizeof text;
    char *p = digits(end, v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v);
    if (v < 0)
        *--p = '-';
    size_t n = (size_t)(end - p);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}
