#pragma once
/* Allocation that never returns NULL: out of memory inside the engine aborts
 * with a message. Lua states use their own budgeted allocator instead. */

#include <stddef.h>

/* Each returns owned memory, never NULL. */
void *fr_xmalloc(size_t n);
void *fr_xcalloc(size_t count, size_t size);
void *fr_xrealloc(void *p, size_t n);
/* Returns an owned copy of `s`, or NULL when `s` is NULL. */
char *fr_xstrdup(const char *s);
/* Returns an owned copy of the first `n` bytes of `s`, NUL-terminated. */
char *fr_xstrndup(const char *s, size_t n);
/* Returns an owned printf-formatted string. */
char *fr_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
