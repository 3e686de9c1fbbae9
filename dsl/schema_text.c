/* How a failure of the JSON Schema subset reads (dsl/schema.h): the JSONPath
 * it was found at, and values and names shown as compact, escaped JSON cut
 * to about SHOW_MAX bytes, so that a message stays one line and never
 * carries a huge reply. */

#include "dsl/schema_int.h"

#include "engine/util/buf.h"
#include "engine/util/err.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes of a value, name or path key shown in a message before "...". */
#define SHOW_MAX 40

/* ---- Showing values ---------------------------------------------------- */

/* Returns the length of the UTF-8 sequence that starts with byte `b`.
 * Jansson only holds valid UTF-8, so the lead byte says it all. */
static size_t utf8_seq_len(unsigned char b)
{
    if (b < 0x80)
        return 1;
    if (b >= 0xF0)
        return 4;
    if (b >= 0xE0)
        return 3;
    return 2;
}

/* Appends `s` (`n` bytes) between `quote` characters, escaped so that the
 * message stays on one line: the quote, backslash and control characters
 * are escaped JSON-style. Stops before `end` (an absolute length of `b`),
 * writing "..." before the closing quote. Returns false when it was cut. */
static bool put_quoted(fr_buf *b, const char *s, size_t n, char quote, size_t end)
{
    bool whole = true;
    fr_buf_append(b, &quote, 1);
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        const char *unit = esc;
        size_t ulen = 2;
        esc[0] = '\\';
        if (ch == (unsigned char)quote || ch == '\\') {
            esc[1] = (char)ch;
        } else if (ch == '\n') {
            esc[1] = 'n';
        } else if (ch == '\t') {
            esc[1] = 't';
        } else if (ch == '\r') {
            esc[1] = 'r';
        } else if (ch < 0x20 || ch == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            ulen = 6;
        } else {
            unit = s + i;
            ulen = utf8_seq_len(ch);
            if (ulen > n - i)
                ulen = n - i;
        }
        if (b->len + ulen > end) {
            whole = false;
            break;
        }
        fr_buf_append(b, unit, ulen);
        i += unit == esc ? 1 : ulen;
    }
    if (!whole)
        fr_buf_puts(b, "...");
    fr_buf_append(b, &quote, 1);
    return whole;
}

/* Appends a real number the way it reads best: the shortest of %.15g and
 * %.17g that gives the same double back, with ".0" when it would otherwise
 * look like an integer. */
static void put_real(fr_buf *b, double d)
{
    char tmp[40];
    snprintf(tmp, sizeof tmp, "%.15g", d);
    if (strtod(tmp, NULL) != d)
        snprintf(tmp, sizeof tmp, "%.17g", d);
    if (!strpbrk(tmp, ".eEni"))
        strcat(tmp, ".0");
    fr_buf_puts(b, tmp);
}

/* Appends `v` (borrowed) as compact JSON until the buffer reaches `end`.
 * Returns false when it was cut (a "..." is then already written, once). */
static bool put_value(fr_buf *b, const json_t *v, size_t end)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        bool first = true;
        fr_buf_puts(b, "{");
        json_object_foreach((json_t *)v, k, m)
        {
            if (b->len >= end) {
                fr_buf_puts(b, first ? "..." : ",...");
                return false;
            }
            if (!first)
                fr_buf_puts(b, ",");
            first = false;
            if (!put_quoted(b, k, strlen(k), '"', end))
                return false;
            fr_buf_puts(b, ":");
            if (!put_value(b, m, end))
                return false;
        }
        fr_buf_puts(b, "}");
        return true;
    }
    case JSON_ARRAY: {
        fr_buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (b->len >= end) {
                fr_buf_puts(b, i > 0 ? ",..." : "...");
                return false;
            }
            if (i > 0)
                fr_buf_puts(b, ",");
            if (!put_value(b, json_array_get(v, i), end))
                return false;
        }
        fr_buf_puts(b, "]");
        return true;
    }
    case JSON_STRING:
        return put_quoted(b, json_string_value(v), json_string_length(v), '"', end);
    case JSON_INTEGER:
        fr_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return true;
    case JSON_REAL:
        put_real(b, json_real_value(v));
        return true;
    case JSON_TRUE:
        fr_buf_puts(b, "true");
        return true;
    case JSON_FALSE:
        fr_buf_puts(b, "false");
        return true;
    case JSON_NULL:
    default:
        fr_buf_puts(b, "null");
        return true;
    }
}

/* Appends `v` (borrowed) to the failure as compact JSON, cut to about
 * SHOW_MAX bytes. */
void fr_schema_show(fr_schema_ctx *c, const json_t *v)
{
    put_value(&c->why, v, c->why.len + SHOW_MAX);
}

/* Appends the name `k` (borrowed) to the failure in single quotes, cut
 * like a value. */
void fr_schema_show_name(fr_schema_ctx *c, const char *k)
{
    put_quoted(&c->why, k, strlen(k), '\'', c->why.len + 1 + SHOW_MAX);
}

/* Starts the failure message with `fmt`; always returns FR_EQUALITY. */
int fr_schema_fail(fr_schema_ctx *c, const char *fmt, ...)
{
    va_list ap;
    fr_buf_reset(&c->why);
    va_start(ap, fmt);
    fr_buf_vprintf(&c->why, fmt, ap);
    va_end(ap);
    return FR_EQUALITY;
}

/* ---- Paths ------------------------------------------------------------- */

static bool is_identifier(const char *k)
{
    if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_'))
        return false;
    for (const char *p = k + 1; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            return false;
    return true;
}

/* Appends ".key" (or ["key"] for a key `k`, borrowed, that is no short
 * identifier) to the path; returns the length to restore. */
size_t fr_schema_path_key(fr_schema_ctx *c, const char *k)
{
    size_t mark = c->path.len;
    size_t n = strlen(k);
    if (n <= SHOW_MAX && is_identifier(k)) {
        fr_buf_printf(&c->path, ".%s", k);
    } else {
        fr_buf_puts(&c->path, "[");
        put_quoted(&c->path, k, n, '"', c->path.len + 1 + SHOW_MAX);
        fr_buf_puts(&c->path, "]");
    }
    return mark;
}

/* Appends "[i]" to the path; returns the length to restore. */
size_t fr_schema_path_index(fr_schema_ctx *c, size_t i)
{
    size_t mark = c->path.len;
    fr_buf_printf(&c->path, "[%zu]", i);
    return mark;
}

/* Cuts the path back to `mark`, a length from a push. */
void fr_schema_path_pop(fr_schema_ctx *c, size_t mark)
{
    c->path.len = mark;
    if (c->path.data)
        c->path.data[mark] = '\0';
}

/* Copies "<path>: <why>" into `msg` (`size` bytes; nothing when NULL or
 * 0), cut on a UTF-8 boundary. */
void fr_schema_write_msg(const fr_schema_ctx *c, char *msg, size_t size)
{
    if (!msg || size == 0)
        return;
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out, "%s: %s", fr_buf_str(&c->path), fr_buf_str(&c->why));
    size_t n = out.len;
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)out.data[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(msg, out.data, n);
    msg[n] = '\0';
    fr_buf_close(&out);
}
