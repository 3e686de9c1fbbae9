#include "providers/ndjson.h"

#include "engine/util/err.h"

#include <assert.h>
#include <string.h>

#define NDJSON_DEFAULT_MAX (1024u * 1024u)

void fr_ndjson_init(fr_ndjson *j, size_t max_line, fr_ndjson_line_fn on_line, void *ud)
{
    memset(j, 0, sizeof *j);
    j->max_line = max_line ? max_line : NDJSON_DEFAULT_MAX;
    fr_buf_init(&j->line, 0);
    j->on_line = on_line;
    j->ud = ud;
}

void fr_ndjson_close(fr_ndjson *j)
{
    fr_buf_close(&j->line);
    j->nonblank = false;
}

/* JSON's whitespace, less the LF that ends a line. */
static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Hands out one complete line (`n` bytes, LF already removed). */
static int emit(fr_ndjson *j, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r')
        n--;
    if (n > j->max_line)
        return FR_ETOOBIG;
    if (is_blank(s, n))
        return FR_OK;
    return j->on_line(j->ud, s, n);
}

/* Buffers `n` bytes of a line whose end has not arrived. The cap leaves out
 * a trailing CR, which may yet turn out to be half of a CRLF: so a line
 * fails the cap exactly when it would whole, however it was split. */
static int hold(fr_ndjson *j, const char *s, size_t n)
{
    assert(n > 0);
    size_t total = j->line.len + n;
    if (total - (s[n - 1] == '\r') > j->max_line)
        return FR_ETOOBIG;
    fr_buf_append(&j->line, s, n); /* unlimited buffer: cannot fail */
    if (!j->nonblank && !is_blank(s, n))
        j->nonblank = true;
    return FR_OK;
}

int fr_ndjson_feed(fr_ndjson *j, const void *p, size_t len)
{
    if (len == 0)
        return j->rc;
    const char *c = p;
    const char *end = c + len;
    while (j->rc == FR_OK && c < end) {
        const char *nl = memchr(c, '\n', (size_t)(end - c));
        if (!nl) {
            j->rc = hold(j, c, (size_t)(end - c));
            break;
        }
        size_t n = (size_t)(nl - c);
        if (j->line.len == 0) {
            /* The whole line is in this chunk: read it in place. */
            j->rc = emit(j, c, n);
        } else {
            if (n > 0)
                j->rc = hold(j, c, n);
            if (j->rc == FR_OK)
                j->rc = emit(j, j->line.data, j->line.len);
            fr_buf_reset(&j->line);
            j->nonblank = false;
        }
        c = nl + 1;
    }
    return j->rc;
}

bool fr_ndjson_pending(const fr_ndjson *j)
{
    return j->nonblank;
}

int fr_ndjson_flush(fr_ndjson *j)
{
    if (j->rc != FR_OK)
        return j->rc;
    if (j->line.len > 0)
        j->rc = emit(j, j->line.data, j->line.len);
    fr_buf_reset(&j->line);
    j->nonblank = false;
    return j->rc;
}
