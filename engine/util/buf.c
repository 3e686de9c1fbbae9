#include "engine/util/buf.h"

#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fr_buf_init(fr_buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit;
}

void fr_buf_close(fr_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void fr_buf_reset(fr_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static void reserve(fr_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = fr_xrealloc(b->data, cap);
    b->cap = cap;
}

int fr_buf_append(fr_buf *b, const void *p, size_t n)
{
    if (b->limit && b->len + n > b->limit)
        return FR_ETOOBIG;
    reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return FR_OK;
}

int fr_buf_reserve(fr_buf *b, size_t extra)
{
    if (b->limit && b->len + extra > b->limit)
        return FR_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need > b->cap) {
        b->data = fr_xrealloc(b->data, need);
        if (b->cap == 0)
            b->data[0] = '\0';
        b->cap = need;
    }
    return FR_OK;
}

int fr_buf_puts(fr_buf *b, const char *s)
{
    return fr_buf_append(b, s, strlen(s));
}

int fr_buf_vprintf(fr_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return FR_EINVAL;
    if (b->limit && b->len + (size_t)n > b->limit)
        return FR_ETOOBIG;
    reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return FR_OK;
}

int fr_buf_printf(fr_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fr_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

char *fr_buf_take(fr_buf *b)
{
    char *s = b->data ? b->data : fr_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

const char *fr_buf_str(const fr_buf *b)
{
    return b->data ? b->data : "";
}
