#pragma once
/* The one FNV-1a (64-bit), for identity, not security: the result cache's
 * key (engine/cache), the policy file watch's change test, the reply loop
 * detector's word hash (providers/) and the simulator's reply seed. */

#include <stddef.h>
#include <stdint.h>

/* FNV-1a's 64-bit offset basis: the `h` that starts a fresh hash. */
#define FR_FNV1A64_BASIS UINT64_C(14695981039346656037)

/* Returns `h` (FR_FNV1A64_BASIS to start, or an earlier result to go on, so
 * hashing two spans in turn equals hashing them joined) folded with the `n`
 * bytes at `p` (borrowed; may be NULL when `n` is 0). */
uint64_t fr_fnv1a64(const void *p, size_t n, uint64_t h);

/* Folds the `n` bytes at `p` (borrowed; may be NULL when `n` is 0) into
 * both h[0] and h[1] at once, as two calls of fr_fnv1a64 would: one pass
 * for a key of two independent 64-bit halves. */
void fr_fnv1a64_pair(const void *p, size_t n, uint64_t h[2]);
