#include "engine/util/jsonw.h"

#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STAGE 8192 /* bytes gathered before they go to the buffer */

struct fr_jsonw {
    fr_buf *out;
    char stage[STAGE];
    size_t staged;
    unsigned char *open; /* per open container: ITEMS | ARRAY; first `shallow` */
    size_t depth, cap;
    unsigned char shallow[16]; /* a request body's or a report's depth: no allocation */
    bool failed;
    bool compact;  /* JSON_COMPACT: no newlines, no spaces */
    int precision; /* of reals: 17, or JSON_REAL_PRECISION's */
};

fr_jsonw *fr_jsonw_new(fr_buf *out)
{
    /* malloc, not calloc: zeroing the 8 KiB stage cost more than a small
     * request body's whole writing. Every other field is set here. */
    fr_jsonw *w = fr_xmalloc(sizeof *w);
    w->out = out;
    w->staged = 0;
    w->open = w->shallow;
    w->depth = 0;
    w->cap = sizeof w->shallow;
    w->failed = false;
    w->compact = false;
    w->precision = 17;
    return w;
}

static void flush(fr_jsonw *w)
{
    if (w->staged && fr_buf_append(w->out, w->stage, w->staged) != FR_OK)
        w->failed = true;
    w->staged = 0;
}

void fr_jsonw_free(fr_jsonw *w)
{
    if (!w)
        return;
    flush(w);
    if (w->open != w->shallow)
        free(w->open);
    free(w);
}

void fr_jsonw_compact(fr_jsonw *w, int precision)
{
    w->compact = true;
    w->precision = precision > 0 && precision <= 31 ? precision : 17;
}

bool fr_jsonw_ok(fr_jsonw *w)
{
    flush(w);
    return !w->failed;
}

/* put's way when the stage is full: flush it, then stage `p` or, larger
 * than the stage, append it whole. */
static void put_slow(fr_jsonw *w, const char *p, size_t n)
{
    flush(w);
    if (n > STAGE) {
        if (fr_buf_append(w->out, p, n) != FR_OK)
            w->failed = true;
        return;
    }
    memcpy(w->stage, p, n);
    w->staged = n;
}

/* Inline: a literal's copy becomes a store or two. */
static inline void put(fr_jsonw *w, const char *p, size_t n)
{
    if (w->staged + n > STAGE) {
        put_slow(w, p, n);
        return;
    }
    memcpy(w->stage + w->staged, p, n);
    w->staged += n;
}

#define PUTS(w, lit) put((w), (lit), sizeof(lit) - 1)

/* A newline and two spaces per level. */
static void indent(fr_jsonw *w, size_t depth)
{
    static const char spaces[] = "\n                                                              "
                                 "                                                                ";
    size_t n = 2 * depth;
    put(w, spaces, 1);
    while (n > 0) {
        size_t k = n < sizeof spaces - 2 ? n : sizeof spaces - 2;
        put(w, spaces + 1, k);
        n -= k;
    }
}

/* The bytes jansson escapes in a string: '"', '\\' and the controls. */
static const unsigned char escaped[256] = {1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                           1, 1, 1, 1, 1, 1, 1, 1, 1,         1,         1, 1,
                                           1, 1, 1, 1, 1, 1, 1, 1, ['"'] = 1, ['\\'] = 1};

/* Copies the `n` bytes of `s` to `o` and returns true when none of them
 * is escaped (then `o` holds them), false at the first that is. */
static bool copy_plain(char *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (escaped[c])
            return false;
        o[i] = (char)c;
    }
    return true;
}

/* quoted's way for a string with escapes or past the stage's room. */
static void quoted_slow(fr_jsonw *w, const char *s, size_t n)
{
    PUTS(w, "\"");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(w, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"':
            PUTS(w, "\\\"");
            break;
        case '\\':
            PUTS(w, "\\\\");
            break;
        case '\b':
            PUTS(w, "\\b");
            break;
        case '\f':
            PUTS(w, "\\f");
            break;
        case '\n':
            PUTS(w, "\\n");
            break;
        case '\r':
            PUTS(w, "\\r");
            break;
        case '\t':
            PUTS(w, "\\t");
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04X", (unsigned)c);
            put(w, esc, 6);
        }
    }
    put(w, s + run, n - run);
    PUTS(w, "\"");
}

/* The bytes of `s` (valid UTF-8) quoted and escaped as jansson does:
 * copied straight into the stage when they fit and need no escape. */
static void quoted(fr_jsonw *w, const char *s, size_t n)
{
    if (w->staged + n + 2 <= STAGE) {
        char *o = w->stage + w->staged;
        if (copy_plain(o + 1, s, n)) {
            o[0] = '"';
            o[n + 1] = '"';
            w->staged += n + 2;
            return;
        }
    }
    quoted_slow(w, s, n);
}

enum { ITEMS = 1, ARRAY = 2 };

/* What comes before a value: the separator and indent inside a container,
 * then the key in an object. The key's length is `klen`. Written straight
 * into the stage when it fits and the key needs no escape (a member's
 * prefix is the most frequent piece a writer puts), else piece by piece. */
static void member_n(fr_jsonw *w, const char *key, size_t klen)
{
    if (w->depth == 0)
        return;
    unsigned char *top = &w->open[w->depth - 1];
    unsigned char was = *top;
    *top |= ITEMS;
    bool named = key && !(was & ARRAY);
    size_t ind = w->compact ? 0 : 2 * w->depth;
    size_t most = 1 + (ind ? 1 + ind : 0) + (named ? klen + 4 : 0);
    if (w->staged + most > STAGE && most <= STAGE)
        flush(w);
    if (w->staged + most <= STAGE) {
        char *o = w->stage + w->staged;
        *o = ',';
        o += (was & ITEMS) != 0;
        if (ind) {
            *o++ = '\n';
            memset(o, ' ', ind);
            o += ind;
        }
        if (!named || copy_plain(o + 1, key, klen)) {
            if (named) {
                o[0] = '"';
                o[klen + 1] = '"';
                o[klen + 2] = ':';
                o[klen + 3] = ' ';
                o += klen + 3 + !w->compact;
            }
            w->staged = (size_t)(o - w->stage);
            return;
        }
    }
    if (was & ITEMS)
        PUTS(w, ",");
    if (!w->compact)
        indent(w, w->depth);
    if (named) {
        quoted_slow(w, key, klen);
        if (w->compact)
            PUTS(w, ":");
        else
            PUTS(w, ": ");
    }
}

static void member(fr_jsonw *w, const char *key)
{
    member_n(w, key, key ? strlen(key) : 0);
}

/* push's way past the levels the writer holds: onto the heap, doubling.
 * Out of line, so that push stays small enough to be inlined. */
__attribute__((noinline)) static void deepen(fr_jsonw *w)
{
    w->cap *= 2;
    if (w->open == w->shallow)
        w->open = memcpy(fr_xmalloc(w->cap), w->shallow, sizeof w->shallow);
    else
        w->open = fr_xrealloc(w->open, w->cap);
}

/* Opens a container of `kind` where a member's prefix was written. */
static inline void push(fr_jsonw *w, unsigned char kind)
{
    put(w, kind == ARRAY ? "[" : "{", 1);
    if (w->depth == w->cap)
        deepen(w);
    w->open[w->depth++] = kind;
}

void fr_jsonw_close(fr_jsonw *w)
{
    if (w->depth == 0)
        return;
    unsigned char kind = w->open[--w->depth];
    if ((kind & ITEMS) && !w->compact)
        indent(w, w->depth);
    put(w, kind & ARRAY ? "]" : "}", 1);
}

bool fr_jsonw_str_valid(const char *s)
{
    return s && fr_utf8_valid(s, strlen(s), NULL);
}

/* The decimal digits of `v` (as %lld) ending at `end`; returns where
 * they begin. */
static char *digits(char *end, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    char *p = end;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return p;
}

/* The 8 decimal digits of `v` (below 10^8, leading zeros included) at `o`. */
static void eight_digits(char *o, uint32_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    uint32_t high = v / 10000, low = v % 10000;
    memcpy(o, pairs + 2 * (high / 100), 2);
    memcpy(o + 2, pairs + 2 * (high % 100), 2);
    memcpy(o + 4, pairs + 2 * (low / 100), 2);
    memcpy(o + 6, pairs + 2 * (low % 100), 2);
}

/* What snprintf("%.*g", precision, v) prints, computed exactly without
 * printf for the reals a run's report and request bodies hold (timings in
 * ms, dollars, temperatures): 1e-3 <= |v| < 1e15, printed in fixed
 * notation. v = m * 2^e exactly; its `precision` significant digits are
 * m * 10^s / 2^-e rounded to nearest in 128-bit integers, as glibc rounds
 * the exact value. Returns the length written into `buf` (at least 40
 * bytes), or 0 to leave the value to snprintf: out of the range, an
 * exact tie (glibc's rounding mode decides it), or a precision past 17. */
__extension__ typedef unsigned __int128 u128; /* GCC and clang: exact 128-bit products */

static size_t fixed_g(char *buf, double v, int precision)
{
    double a = fabs(v);
    if (!(a >= 1e-3 && a < 1e15) || precision < 1 || precision > 17)
        return 0;
    /* a = m * 2^e exactly, read from its bits (a is normal here), and
     * 2^e2 <= a < 2^(e2+1). */
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    int e2 = (int)(bits >> 52) - 1023, e = e2 - 52; /* -63 <= e < 0 in this range */
    unsigned long long m = (bits & ((1ull << 52) - 1)) | (1ull << 52);
    static const unsigned long long p10[] = {1ull,
                                             10ull,
                                             100ull,
                                             1000ull,
                                             10000ull,
                                             100000ull,
                                             1000000ull,
                                             10000000ull,
                                             100000000ull,
                                             1000000000ull,
                                             10000000000ull,
                                             100000000000ull,
                                             1000000000000ull,
                                             10000000000000ull,
                                             100000000000000ull,
                                             1000000000000000ull,
                                             10000000000000000ull,
                                             100000000000000000ull,
                                             1000000000000000000ull,
                                             10000000000000000000ull};
    /* floor(log10(a)) or one more: floor((e2 + 1) * log10(2)), 1233 / 4096
     * being log10(2) close enough for these exponents; checked exactly
     * below. */
    int x = ((e2 + 1) * 1233) >> 12;
    u128 den = (u128)1 << -e, q = 0, r = 0;
    for (int tries = 0; tries < 3; tries++) {
        int sc = precision - 1 - x;
        if (sc < 0 || sc > 19)
            return 0;
        u128 num = (u128)m * p10[sc];
        q = num >> -e; /* den is 2^-e: a shift, not a 128-bit division */
        r = num & (den - 1);
        if (q < p10[precision - 1])
            x--;
        else if (q >= p10[precision])
            x++;
        else
            break;
    }
    if (q < p10[precision - 1] || q >= p10[precision])
        return 0;
    if (r * 2 == den)
        return 0; /* an exact tie */
    if (r * 2 > den && ++q == p10[precision]) {
        q = p10[precision - 1];
        x++;
    }
    if (x >= precision || x < -4)
        return 0; /* %g would print an exponent */
    /* The 17 digits of q (below 10^17, leading zeros included) in three
     * pieces, the lower two of 8 digits in 32-bit arithmetic, two at a time
     * from a table; the last `precision` of them are the text's. */
    char all[17];
    unsigned long long d = (unsigned long long)q, hi = d / 100000000u;
    eight_digits(all + 9, (uint32_t)(d % 100000000u));
    eight_digits(all + 1, (uint32_t)(hi % 100000000u));
    all[0] = (char)('0' + hi / 100000000u);
    const char *dig = all + 17 - precision;
    int nd = precision; /* %g drops the fraction's trailing zeros */
    while (nd > 0 && nd > x + 1 && dig[nd - 1] == '0')
        nd--;
    char *o = buf;
    if (v < 0)
        *o++ = '-';
    if (x < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -x - 1; i++)
            *o++ = '0';
        memcpy(o, dig, (size_t)nd);
        o += nd;
    } else {
        memcpy(o, dig, (size_t)(x + 1));
        o += x + 1;
        if (nd > x + 1) {
            *o++ = '.';
            memcpy(o, dig + x + 1, (size_t)(nd - x - 1));
            o += nd - x - 1;
        } else {
            memcpy(o, ".0", 2); /* jansson adds ".0" to an integral text */
            o += 2;
        }
    }
    *o = '\0';
    return (size_t)(o - buf);
}

/* As jansson's jsonp_dtostr with `precision` digits. */
static size_t format_real(char *buf, size_t size, double v, int precision)
{
    if (!isfinite(v))
        return 0;
    /* An integral value of at most `precision` digits, below 2^53, prints
     * as its digits and ".0": %.Ng shows them all, in fixed notation. */
    static const double below[] = {1,
                                   1e1,
                                   1e2,
                                   1e3,
                                   1e4,
                                   1e5,
                                   1e6,
                                   1e7,
                                   1e8,
                                   1e9,
                                   1e10,
                                   1e11,
                                   1e12,
                                   1e13,
                                   1e14,
                                   1e15,
                                   9007199254740992.0};
    double lim = below[precision < 16 ? precision : 16];
    if (size >= 24 && fabs(v) < lim && v == (double)(long long)v) {
        char num[24];
        char *p = digits(num + sizeof num, (long long)v);
        size_t n = (size_t)(num + sizeof num - p);
        char *q = buf;
        if (v == 0 && signbit(v))
            *q++ = '-';
        memcpy(q, p, n);
        memcpy(q + n, ".0", 3);
        return (size_t)(q - buf) + n + 2;
    }
    if (size >= 40) {
        size_t n = fixed_g(buf, v, precision);
        if (n)
            return n;
    }
    int ret = snprintf(buf, size, "%.*g", precision, v);
    if (ret < 0 || (size_t)ret + 3 > size)
        return 0;
    size_t len = (size_t)ret;
    /* jansson's from_locale: the locale's decimal point becomes '.'. */
    const char *point = localeconv()->decimal_point;
    if (point && point[0] && point[0] != '.' && !point[1]) {
        char *p = strchr(buf, point[0]);
        if (p)
            *p = '.';
    }
    if (!strchr(buf, '.') && !strchr(buf, 'e')) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    /* The exponent without '+' and without leading zeros. */
    char *e = strchr(buf, 'e');
    if (e) {
        char *from = e + 1, *to = e + 1;
        if (*from == '-')
            from = ++to;
        else if (*from == '+')
            from++;
        while (*from == '0' && from[1])
            from++;
        if (from != to) {
            memmove(to, from, (size_t)(buf + len - from) + 1);
            len -= (size_t)(from - to);
        }
    }
    return len;
}

size_t fr_jsonw_format_real(char *buf, size_t size, double v)
{
    return format_real(buf, size, v, 17);
}

/* ---- members under a key known when compiling (FR_JSONW_KEY) ----------
 *
 * member_n's bytes for a name that needs no escape, its prefix rendered:
 * the separator, the indent, then the prefix by one copy. */
static void member_k(fr_jsonw *w, fr_jsonw_key k)
{
    if (w->depth == 0)
        return;
    unsigned char *top = &w->open[w->depth - 1];
    size_t ind = w->compact ? 0 : 2 * w->depth, n = k.len - w->compact; /* compact: no space */
    size_t most = 2 + ind + n;
    if ((*top & ARRAY) || most > STAGE) { /* an element has no name; a huge name, piece by piece */
        member_n(w, k.prefix + 1, k.len - 4);
        return;
    }
    if (w->staged + most > STAGE)
        flush(w);
    char *o = w->stage + w->staged;
    *o = ',';
    o += (*top & ITEMS) != 0;
    *top |= ITEMS;
    if (ind) {
        *o++ = '\n';
        memset(o, ' ', ind);
        o += ind;
    }
    memcpy(o, k.prefix, n);
    w->staged = (size_t)(o + n - w->stage);
}

/* A member's name as the writers below get it: a key to measure and scan
 * (NULL for an element), or a prefix rendered by FR_JSONW_KEY. The writers
 * are inline: each serves a public writer of either kind, and a call more
 * per member cost 4% of the report. */
typedef struct name {
    const char *key;
    fr_jsonw_key k;
} name;

static inline name by_key(const char *key)
{
    return (name){key, {NULL, 0}};
}

static inline name by_k(fr_jsonw_key k)
{
    return (name){NULL, k};
}

static inline void member_name(fr_jsonw *w, name nm)
{
    if (nm.k.prefix)
        member_k(w, nm.k);
    else
        member(w, nm.key);
}

static inline void w_open(fr_jsonw *w, name nm, unsigned char kind)
{
    member_name(w, nm);
    push(w, kind);
}

static inline void w_null(fr_jsonw *w, name nm)
{
    member_name(w, nm);
    PUTS(w, "null");
}

/* What a string's bytes hold, found by scan(): bytes past ASCII (then its
 * UTF-8 must be checked) and bytes jansson escapes. */
enum { HAS_HIGH = 1, HAS_ESC = 2 };

#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* The HIGHS bits of the bytes of `x` that are jansson's escapes: a control
 * (below 0x20), '"' or '\\'. Exact for whether there is one: the borrows of
 * the subtractions can only mark a byte above a true hit. */
static inline uint64_t esc_bits(uint64_t x)
{
    uint64_t q = x ^ (ONES * '"'), b = x ^ (ONES * '\\');
    uint64_t m = (x - ONES * 0x20) | (q - ONES) | (b - ONES);
    return m & ~x & HIGHS; /* a byte past ASCII is never an escape */
}

/* Returns HAS_HIGH and HAS_ESC as the `n` bytes of `s` have them. Eight
 * bytes a step in a 64-bit word, the last step's word overlapping the one
 * before, and a string under 8 bytes read as one word by overlapping loads
 * (padded with 'a', which is neither): a byte's two table lookups were most
 * of a prompt's writing, and a report's words are mostly under 16 bytes. */
static inline unsigned scan(const char *s, size_t n)
{
    uint64_t x, high = 0, esc = 0;
    if (n >= 8) {
        size_t i = 0;
        for (; i + 8 < n; i += 8) {
            memcpy(&x, s + i, 8);
            high |= x;
            esc |= esc_bits(x);
        }
        memcpy(&x, s + n - 8, 8);
    } else if (n >= 4) {
        uint32_t lo, hi;
        memcpy(&lo, s, 4);
        memcpy(&hi, s + n - 4, 4);
        x = lo | (uint64_t)hi << 32;
    } else if (n > 0) {
        const unsigned char *u = (const unsigned char *)s;
        x = ONES * 'a' & ~0xFFFFFFull;
        x |= u[0] | (uint64_t)u[n / 2] << 8 | (uint64_t)u[n - 1] << 16;
    } else {
        return 0;
    }
    high |= x;
    esc |= esc_bits(x);
    return ((high & HIGHS) != 0) | (unsigned)(esc != 0) << 1;
}

/* Writes the escape of the byte `c` (one jansson escapes) at `o` as
 * quoted_slow writes it and returns the end. */
static char *escape_one(char *o, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    static const char shortcut[32] = {
        ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    if (c == '"' || c == '\\') {
        *o++ = '\\';
        *o++ = (char)c;
    } else if (shortcut[c]) {
        *o++ = '\\';
        *o++ = shortcut[c];
    } else {
        memcpy(o, "\\u00", 4);
        o[4] = hex[c >> 4];
        o[5] = hex[c & 15];
        o += 6;
    }
    return o;
}

/* Writes the `n` bytes of `s` escaped as quoted_slow writes them at `o`
 * (room for 6 * n bytes) and returns the end. A word of 8 bytes is copied
 * whole, then, when it holds an escape, kept up to its first one: on a
 * little-endian machine the lowest byte esc_bits marks is a true escape
 * (a borrow only runs upwards), so a newline costs a few instructions, not
 * a loop over its word's bytes. Elsewhere a word with an escape goes a byte
 * at a time. The last bytes, under a word, go a byte at a time. */
static char *escape_into(char *o, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            uint64_t m = esc_bits(x);
            memcpy(o, &x, 8); /* room: at least 6 * 8 bytes are left */
            if (!m) {
                o += 8;
                i += 8;
                continue;
            }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            size_t k = (size_t)__builtin_ctzll(m) / 8;
            o = escape_one(o + k, (unsigned char)s[i + k]);
            i += k + 1;
            continue;
#endif
        }
        unsigned char c = (unsigned char)s[i++];
        if (escaped[c])
            o = escape_one(o, c);
        else
            *o++ = (char)c;
    }
    return o;
}

/* w_str's way for a string past ASCII or with an escape (a prompt's
 * newlines), out of line so that the plain way stays inline and small. */
__attribute__((noinline)) static bool str_odd(fr_jsonw *w, name nm, const char *s, size_t n,
                                              unsigned has)
{
    if ((has & HAS_HIGH) && !fr_utf8_valid(s, n, NULL))
        return false; /* jansson's json_string refuses it */
    member_name(w, nm);
    /* Straight into the stage when even every byte escaped would fit. */
    if (!(has & HAS_ESC) || n > (STAGE - 2) / 6 || w->staged + 6 * n + 2 > STAGE) {
        quoted(w, s, n);
        return true;
    }
    char *o = w->stage + w->staged;
    *o++ = '"';
    o = escape_into(o, s, n);
    *o++ = '"';
    w->staged = (size_t)(o - w->stage);
    return true;
}

/* Inline always: GCC's size heuristics would otherwise call it, and a call
 * more per string cost the report 3%. */
__attribute__((always_inline)) static inline bool w_str(fr_jsonw *w, name nm, const char *s)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    unsigned has = scan(s, n);
    if (has)
        return str_odd(w, nm, s, n, has);
    member_name(w, nm);
    if (w->staged + n + 2 > STAGE) {
        quoted(w, s, n);
        return true;
    }
    char *o = w->stage + w->staged;
    o[0] = '"';
    memcpy(o + 1, s, n);
    o[n + 1] = '"';
    w->staged += n + 2;
    return true;
}

static inline bool w_str_or_null(fr_jsonw *w, name nm, const char *s)
{
    if (s)
        return w_str(w, nm, s);
    w_null(w, nm);
    return true;
}

static inline void w_int(fr_jsonw *w, name nm, long long v)
{
    char num[24];
    char *p = digits(num + sizeof num, v);
    member_name(w, nm);
    put(w, p, (size_t)(num + sizeof num - p));
}

static inline bool w_real(fr_jsonw *w, name nm, double v)
{
    char num[48];
    size_t n = format_real(num, sizeof num, v, w->precision);
    if (n == 0)
        return false;
    member_name(w, nm);
    put(w, num, n);
    return true;
}

static inline bool w_real_or_null(fr_jsonw *w, name nm, double v, bool present)
{
    if (present)
        return w_real(w, nm, v);
    w_null(w, nm);
    return true;
}

static inline void w_bool(fr_jsonw *w, name nm, bool v)
{
    member_name(w, nm);
    if (v)
        PUTS(w, "true");
    else
        PUTS(w, "false");
}

void fr_jsonw_object(fr_jsonw *w, const char *key)
{
    w_open(w, by_key(key), 0);
}

void fr_jsonw_array(fr_jsonw *w, const char *key)
{
    w_open(w, by_key(key), ARRAY);
}

bool fr_jsonw_str(fr_jsonw *w, const char *key, const char *s)
{
    return w_str(w, by_key(key), s);
}

bool fr_jsonw_str_or_null(fr_jsonw *w, const char *key, const char *s)
{
    return w_str_or_null(w, by_key(key), s);
}

void fr_jsonw_int(fr_jsonw *w, const char *key, long long v)
{
    w_int(w, by_key(key), v);
}

bool fr_jsonw_real(fr_jsonw *w, const char *key, double v)
{
    return w_real(w, by_key(key), v);
}

bool fr_jsonw_real_or_null(fr_jsonw *w, const char *key, double v, bool present)
{
    return w_real_or_null(w, by_key(key), v, present);
}

void fr_jsonw_bool(fr_jsonw *w, const char *key, bool v)
{
    w_bool(w, by_key(key), v);
}

void fr_jsonw_null(fr_jsonw *w, const char *key)
{
    w_null(w, by_key(key));
}

void fr_jsonw_object_k(fr_jsonw *w, fr_jsonw_key k)
{
    w_open(w, by_k(k), 0);
}

void fr_jsonw_array_k(fr_jsonw *w, fr_jsonw_key k)
{
    w_open(w, by_k(k), ARRAY);
}

bool fr_jsonw_str_k(fr_jsonw *w, fr_jsonw_key k, const char *s)
{
    return w_str(w, by_k(k), s);
}

bool fr_jsonw_str_or_null_k(fr_jsonw *w, fr_jsonw_key k, const char *s)
{
    return w_str_or_null(w, by_k(k), s);
}

void fr_jsonw_int_k(fr_jsonw *w, fr_jsonw_key k, long long v)
{
    w_int(w, by_k(k), v);
}

bool fr_jsonw_real_k(fr_jsonw *w, fr_jsonw_key k, double v)
{
    return w_real(w, by_k(k), v);
}

bool fr_jsonw_real_or_null_k(fr_jsonw *w, fr_jsonw_key k, double v, bool present)
{
    return w_real_or_null(w, by_k(k), v, present);
}

void fr_jsonw_bool_k(fr_jsonw *w, fr_jsonw_key k, bool v)
{
    w_bool(w, by_k(k), v);
}

void fr_jsonw_null_k(fr_jsonw *w, fr_jsonw_key k)
{
    w_null(w, by_k(k));
}

char *fr_jsonw_dump_compact(const json_t *v, int precision)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_jsonw *w = fr_jsonw_new(&out);
    fr_jsonw_compact(w, precision);
    bool ok = fr_jsonw_value(w, NULL, v) && fr_jsonw_ok(w);
    fr_jsonw_free(w);
    if (!ok) {
        fr_buf_close(&out);
        return NULL;
    }
    return fr_buf_take(&out);
}

/* Writes `v` (borrowed, not NULL) under `key` of `klen` bytes. */
static void value_n(fr_jsonw *w, const char *key, size_t klen, const json_t *v)
{
    char num[48];
    size_t n;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        size_t kl;
        json_t *m;
        member_n(w, key, klen);
        push(w, 0);
        json_object_keylen_foreach((json_t *)v, k, kl, m) value_n(w, k, kl, m);
        fr_jsonw_close(w);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *m;
        member_n(w, key, klen);
        push(w, ARRAY);
        json_array_foreach(v, i, m) value_n(w, NULL, 0, m);
        fr_jsonw_close(w);
        break;
    }
    case JSON_STRING:
        member_n(w, key, klen);
        quoted(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER: {
        char *p = digits(num + sizeof num, (long long)json_integer_value(v));
        member_n(w, key, klen);
        put(w, p, (size_t)(num + sizeof num - p));
        break;
    }
    case JSON_REAL:
        n = format_real(num, sizeof num, json_real_value(v), w->precision);
        if (n) {
            member_n(w, key, klen);
            put(w, num, n);
        }
        break;
    case JSON_TRUE:
        member_n(w, key, klen);
        PUTS(w, "true");
        break;
    case JSON_FALSE:
        member_n(w, key, klen);
        PUTS(w, "false");
        break;
    case JSON_NULL:
        member_n(w, key, klen);
        PUTS(w, "null");
        break;
    }
}

bool fr_jsonw_value(fr_jsonw *w, const char *key, const json_t *v)
{
    if (!v)
        return false;
    value_n(w, key, key ? strlen(key) : 0, v);
    return true;
}

bool fr_jsonw_value_k(fr_jsonw *w, fr_jsonw_key k, const json_t *v)
{
    if (!v)
        return false;
    value_n(w, k.prefix + 1, k.len - 4, v); /* the name between the prefix's quotes */
    return true;
}
