#pragma once
/* Allocation that never returns NULL: out of memory inside the engine aborts
 * with a message. Lua states use their own budgeted allocator instead. Also
 * the wipe every folder uses before a secret's memory is given back. */

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

/* Overwrites the `n` bytes at `p` (borrowed; may be NULL when `n` is 0) with
 * zeros in a way the compiler cannot drop as a dead store, as a memset
 * before free may be: the one way a key or other secret is wiped. */
void fr_wipe(void *p, size_t n);
