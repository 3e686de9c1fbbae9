#pragma once
/* A growable byte buffer, always NUL-terminated, optionally capped. Used for
 * response bodies, rendered prompts and report text. Embedded by value. */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
    size_t limit; /* 0 = unlimited; appends past it fail with FR_ETOOBIG */
} fr_buf;

/* Initialises an empty buffer with a byte limit (0 = none). */
void fr_buf_init(fr_buf *b, size_t limit);
/* Releases the buffer's memory and leaves it empty and reusable. */
void fr_buf_close(fr_buf *b);
/* Empties the buffer, keeping its memory. */
void fr_buf_reset(fr_buf *b);
/* Appends `n` bytes of `p` (borrowed). Returns FR_OK, or FR_ETOOBIG when the
 * limit would be passed (the buffer is then unchanged). */
int fr_buf_append(fr_buf *b, const void *p, size_t n);
/* Makes room for `extra` more bytes at once, so that appends up to them do
 * not grow the buffer by doubling (each growth a copy). Returns FR_OK, or
 * FR_ETOOBIG when the limit would be passed (the buffer is then unchanged;
 * appends still work up to the limit). */
int fr_buf_reserve(fr_buf *b, size_t extra);
/* Appends a NUL-terminated string. Same returns as fr_buf_append. */
int fr_buf_puts(fr_buf *b, const char *s);
/* Appends printf-formatted text. Same returns as fr_buf_append. */
int fr_buf_printf(fr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int fr_buf_vprintf(fr_buf *b, const char *fmt, va_list ap);
/* Returns the buffer's contents as an owned string ("" if empty) and leaves
 * the buffer empty. */
char *fr_buf_take(fr_buf *b);
/* Returns the contents as a borrowed string, "" if empty. */
const char *fr_buf_str(const fr_buf *b);
