#include "engine/util/jscan.h"

#include <stdint.h>
#include <string.h>

/* The longest number text taken on: beyond it jansson might overflow. */
#define MAX_NUMBER 64

static bool go_bad(fr_jscan *s)
{
    s->bad = true;
    s->p = s->end;
    return false;
}

static inline void skip_ws(fr_jscan *s)
{
    /* Compact JSON (what servers stream) has no whitespace between tokens:
     * one test settles the common case. */
    if (s->p < s->end && (unsigned char)*s->p > ' ')
        return;
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

void fr_jscan_init(fr_jscan *s, const char *text, size_t n)
{
    memset(s, 0, sizeof *s);
    s->p = text;
    s->end = text + n;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads 4 hex digits at `p` (4 bytes there) into *u; false when not hex. */
static bool hex4(const char *p, unsigned *u)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex((unsigned char)p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    *u = v;
    return true;
}

/* Length of the well-formed UTF-8 sequence at `p` (at most `left` bytes
 * there, the first >= 0x80), or 0: no overlong forms, no surrogates,
 * nothing past U+10FFFF (RFC 3629, as jansson checks). */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (left < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

/* Whether a string may hold `c` as it is: printable ASCII but '"' (the end)
 * and '\\' (an escape). Control bytes go bad; bytes >= 0x80 start a UTF-8
 * sequence, checked whole. */
static bool plain_byte(unsigned char c)
{
    return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PLAIN_BY_WORD 1
/* Bit 7 of a byte of the result is set where `w` (8 bytes, the first one
 * lowest) holds a byte that is not plain, and no other bit: each test works
 * on the low 7 bits of a byte, where adding 0x7F or 0x60 carries into bit 7
 * of that byte only (never into the next): t ^ c + 0x7F sets it unless t is
 * c, t + 0x60 sets it when t >= 0x20; bit 7 of `w` itself marks >= 0x80. */
static uint64_t not_plain8(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101u, low7 = ones * 0x7F;
    uint64_t t = w & low7;
    uint64_t not_quote = (t ^ (ones * '"')) + low7;
    uint64_t not_escape = (t ^ (ones * '\\')) + low7;
    uint64_t not_control = t + ones * 0x60;
    return ~(not_quote & not_escape & not_control & ~w) & ~low7;
}
#endif

/* The first byte at or after `p` (before `end`) that is not plain, or end.
 * Stream events are mostly plain strings: on a little-endian machine with
 * GCC's builtins (all we build on) eight bytes are tested at a time. */
static inline const char *plain_run(const char *p, const char *end)
{
#ifdef PLAIN_BY_WORD
    for (; end - p >= 8; p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        uint64_t m = not_plain8(w);
        if (m)
            return p + __builtin_ctzll(m) / 8;
    }
#endif
    while (p < end && plain_byte((unsigned char)*p))
        p++;
    return p;
}

/* Ends the string `v` at the closing quote `p`. */
static bool end_string(fr_jscan *s, fr_jval *v, const char *start, const char *p)
{
    v->kind = FR_JSTRING;
    v->s = start;
    v->n = (size_t)(p - start);
    s->p = p + 1;
    return true;
}

/* Reads on from `p`, the first byte that is not plain, of the string that
 * starts at `start`: checks each such byte as jansson does, and passes the
 * runs of plain ones between them. */
static bool read_string_rest(fr_jscan *s, fr_jval *v, const char *start, const char *p)
{
    const char *end = s->end;
    for (;;) {
        if (p >= end)
            return go_bad(s);
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return end_string(s, v, start, p);
        if (c < 0x20)
            return go_bad(s);
        if (c == '\\') {
            v->escaped = true;
            if (end - p < 2)
                return go_bad(s);
            c = (unsigned char)p[1];
            if (c != 'u') {
                if (!strchr("\"\\/bfnrt", c) || c == '\0')
                    return go_bad(s);
                p = plain_run(p + 2, end);
                continue;
            }
            unsigned u, u2;
            if (end - p < 6 || !hex4(p + 2, &u) || u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
                return go_bad(s);
            p += 6;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &u2) ||
                    u2 < 0xDC00 || u2 > 0xDFFF)
                    return go_bad(s);
                p += 6;
            }
            p = plain_run(p, end);
            continue;
        }
        /* c >= 0x80 */
        size_t n = utf8_len((const unsigned char *)p, (size_t)(end - p));
        if (!n)
            return go_bad(s);
        p = plain_run(p + n, end);
    }
}

/* Reads a string whose opening quote is behind the cursor into *v. Inline,
 * and apart from the rest: most strings are plain bytes to their quote,
 * and that case needs no registers saved for escapes and UTF-8. */
static inline bool read_string(fr_jscan *s, fr_jval *v)
{
    const char *start = s->p, *p = plain_run(s->p, s->end);
    v->escaped = false;
    if (p < s->end && *p == '"')
        return end_string(s, v, start, p);
    return read_string_rest(s, v, start, p);
}

static bool is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* Reads a number at the cursor into *v (RFC 8259's grammar, as jansson's). */
static bool read_number(fr_jscan *s, fr_jval *v)
{
    const char *start = s->p, *p = s->p, *end = s->end;
    bool neg = *p == '-';
    if (neg)
        p++;
    if (!is_digit(p, end))
        return go_bad(s);
    const char *digits = p;
    unsigned long long x = 0; /* wraps past 20 digits, but then it is not used */
    if (*p == '0') {
        p++;
        if (is_digit(p, end))
            return go_bad(s);
    } else {
        while (is_digit(p, end))
            x = x * 10 + (unsigned)(*p++ - '0');
    }
    const char *int_end = p;
    bool real = false;
    if (p < end && *p == '.') {
        p++;
        if (!is_digit(p, end))
            return go_bad(s);
        while (is_digit(p, end))
            p++;
        real = true;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        const char *exp = p;
        if (!is_digit(p, end))
            return go_bad(s);
        while (is_digit(p, end))
            p++;
        if (p - exp > 2) /* |exponent| < 100 with < 64 digits: never overflows */
            return go_bad(s);
        real = true;
    }
    if (p - start > MAX_NUMBER)
        return go_bad(s);
    v->s = start;
    v->n = (size_t)(p - start);
    s->p = p;
    if (real) {
        v->kind = FR_JREAL;
        return true;
    }
    if (int_end - digits > 18)
        return go_bad(s); /* jansson may take it or call it too big: not ours to say */
    v->kind = FR_JINT;
    v->i = neg ? -(long long)x : (long long)x;
    return true;
}

static bool literal(fr_jscan *s, const char *word, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return go_bad(s);
    s->p += n;
    return true;
}

static bool open_container(fr_jscan *s, char c)
{
    if (s->depth >= FR_JSCAN_MAX_DEPTH)
        return go_bad(s);
    s->depth++;
    s->open[s->depth] = c;
    s->first[s->depth] = true;
    s->p++;
    return true;
}

bool fr_jscan_value(fr_jscan *s, fr_jval *v)
{
    v->kind = FR_JNONE;
    v->escaped = false;
    skip_ws(s);
    if (s->bad || s->p >= s->end)
        return go_bad(s);
    char c = *s->p;
    if (s->depth == 0) {
        if (s->top || (c != '{' && c != '['))
            return go_bad(s);
        s->top = true;
    }
    bool ok;
    fr_jkind k;
    switch (c) {
    case '{':
        k = FR_JOBJECT;
        ok = open_container(s, c);
        break;
    case '[':
        k = FR_JARRAY;
        ok = open_container(s, c);
        break;
    case '"':
        s->p++;
        return read_string(s, v);
    case 't':
        k = FR_JTRUE;
        ok = literal(s, "true", 4);
        break;
    case 'f':
        k = FR_JFALSE;
        ok = literal(s, "false", 5);
        break;
    case 'n':
        k = FR_JNULL;
        ok = literal(s, "null", 4);
        break;
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return read_number(s, v);
        return go_bad(s);
    }
    if (ok)
        v->kind = k;
    return ok;
}

bool fr_jscan_object(fr_jscan *s, const char *text, size_t n)
{
    fr_jval v;
    fr_jscan_init(s, text, n);
    return fr_jscan_value(s, &v) && (v.kind == FR_JOBJECT || go_bad(s));
}

/* The common part of member and element: the separator before the next
 * item of the container `c` opened last, or its end. */
static bool next_item(fr_jscan *s, char c)
{
    if (s->bad || s->depth == 0 || s->open[s->depth] != c)
        return go_bad(s);
    skip_ws(s);
    if (s->p >= s->end)
        return go_bad(s);
    char close = c == '{' ? '}' : ']';
    if (*s->p == close) {
        s->p++;
        s->depth--;
        return false;
    }
    if (!s->first[s->depth]) {
        if (*s->p != ',')
            return go_bad(s);
        s->p++;
    }
    s->first[s->depth] = false;
    return true;
}

/* The rest of a member whose key is on the cursor: the colon after it. */
static bool member_colon(fr_jscan *s)
{
    skip_ws(s);
    if (s->p >= s->end || *s->p != ':')
        return go_bad(s);
    s->p++;
    return true;
}

/* A key that is not plain bytes to its quote: read as any string (one with
 * an escape goes bad), then the colon. Apart from fr_jscan_member so that
 * its common case makes no call but this tail call, and needs no saved
 * registers. */
__attribute__((noinline)) static bool member_rest(fr_jscan *s, fr_jval *key, const char *start,
                                                  const char *p)
{
    if (!read_string_rest(s, key, start, p) || key->escaped)
        return go_bad(s);
    return member_colon(s);
}

bool fr_jscan_member(fr_jscan *s, fr_jval *key)
{
    key->kind = FR_JNONE;
    if (!next_item(s, '{'))
        return false;
    skip_ws(s); /* "{," and "{\"a\":1,}" go bad here: a key must follow */
    if (s->p >= s->end || *s->p != '"')
        return go_bad(s);
    const char *start = s->p + 1, *p = plain_run(start, s->end);
    key->escaped = false;
    if (p >= s->end || *p != '"')
        return member_rest(s, key, start, p);
    end_string(s, key, start, p);
    return member_colon(s);
}

bool fr_jscan_element(fr_jscan *s)
{
    if (!next_item(s, '['))
        return false;
    /* A ']' right after a ',' is caught by the value read next. */
    skip_ws(s);
    if (s->p < s->end && *s->p == ']')
        return go_bad(s);
    return true;
}

void fr_jscan_skip_container(fr_jscan *s, const fr_jval *v)
{
    fr_jval k, x;
    if (v->kind == FR_JOBJECT) {
        while (fr_jscan_member(s, &k)) {
            if (fr_jscan_value(s, &x))
                fr_jscan_skip(s, &x);
        }
    } else if (v->kind == FR_JARRAY) {
        while (fr_jscan_element(s)) {
            if (fr_jscan_value(s, &x))
                fr_jscan_skip(s, &x);
        }
    }
}

bool fr_jscan_done(fr_jscan *s)
{
    skip_ws(s);
    return !s->bad && s->top && s->depth == 0 && s->p == s->end;
}

/* Writes code point `u` as UTF-8 at `out`; returns the bytes written. */
static size_t put_utf8(unsigned u, char *out)
{
    if (u < 0x80) {
        out[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        out[0] = (char)(0xC0 | u >> 6);
        out[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        out[0] = (char)(0xE0 | u >> 12);
        out[1] = (char)(0x80 | (u >> 6 & 0x3F));
        out[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | u >> 18);
    out[1] = (char)(0x80 | (u >> 12 & 0x3F));
    out[2] = (char)(0x80 | (u >> 6 & 0x3F));
    out[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

size_t fr_jscan_unescape(const fr_jval *v, char *out)
{
    size_t o = 0;
    if (!v->escaped) {
        memcpy(out, v->s, v->n);
        out[v->n] = '\0';
        return v->n;
    }
    for (size_t i = 0; i < v->n;) {
        char c = v->s[i];
        if (c != '\\') {
            out[o++] = c;
            i++;
            continue;
        }
        c = v->s[i + 1];
        i += 2;
        switch (c) {
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'u': {
            unsigned u = 0, u2 = 0;
            hex4(v->s + i, &u);
            i += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                hex4(v->s + i + 2, &u2);
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (u2 - 0xDC00);
            }
            o += put_utf8(u, out + o);
            break;
        }
        default: /* '"', '\\', '/' */
            out[o++] = c;
            break;
        }
    }
    out[o] = '\0';
    return o;
}
