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
