#pragma once
/* A binary min-heap of fixed-size elements, ordered by a callback: the
 * scheduler's ready queue and a plan's completions to come. */

#include <stdbool.h>
#include <stddef.h>

/* True when element `a` comes out before element `b` (both borrowed). */
typedef bool (*fr_heap_before_fn)(void *ud, const void *a, const void *b);

typedef struct fr_heap fr_heap;

/* Returns an empty heap (owned; fr_heap_free) of elements of `size` bytes
 ordered by `before` called with `ud` (borrowed). */
fr_heap *fr_heap_new(size_t size, fr_heap_before_fn before, void *ud);
/* Frees a heap; NULL is fine. */
void fr_heap_free(fr_heap *h);

/* Adds a copy of the element at `elem` (borrowed). */
void fr_heap_push(fr_heap *h, const void *elem);
/* Copies the first element out to `out` and removes it; false when empty. */
bool fr_heap_pop(fr_heap *h, void *out);
/* The number of elements, and the i-th in storage order (borrowed, until
 * the next change): for a scan that does not care about order. */
size_t fr_heap_count(const fr_heap *h);
const void *fr_heap_at(const fr_heap *h, size_t i);
/* Removes every element. */
void fr_heap_clear(fr_heap *h);
