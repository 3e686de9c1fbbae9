#include "engine/util/hash.h"

#define FNV1A64_PRIME UINT64_C(1099511628211)

uint64_t fr_fnv1a64(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV1A64_PRIME;
    }
    return h;
}

void fr_fnv1a64_pair(const void *p, size_t n, uint64_t h[2])
{
    const unsigned char *b = p;
    uint64_t x = h[0], y = h[1];
    for (size_t i = 0; i < n; i++) {
        x = (x ^ b[i]) * FNV1A64_PRIME;
        y = (y ^ b[i]) * FNV1A64_PRIME;
    }
    h[0] = x;
    h[1] = y;
}
