#include "engine/util/strmap.h"

#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    const char *key; /* NULL: empty */
    uint64_t hash;
    size_t value;
} slot;

struct fr_strmap {
    slot *slots;
    size_t cap; /* a power of two */
    size_t n;
};

fr_strmap *fr_strmap_new(size_t hint)
{
    fr_strmap *m = fr_xcalloc(1, sizeof *m);
    m->cap = 16;
    while (m->cap < hint * 2)
        m->cap *= 2;
    m->slots = fr_xcalloc(m->cap, sizeof *m->slots);
    return m;
}

void fr_strmap_free(fr_strmap *m)
{
    if (!m)
        return;
    free(m->slots);
    free(m);
}

/* The slot of `key` (hash `h`), or the empty slot where it would go. */
static slot *find(const fr_strmap *m, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slots[i].key && (m->slots[i].hash != h || strcmp(m->slots[i].key, key) != 0))
        i = (i + 1) & (m->cap - 1);
    return &m->slots[i];
}

static void grow(fr_strmap *m)
{
    slot *old = m->slots;
    size_t cap = m->cap;
    m->cap *= 2;
    m->slots = fr_xcalloc(m->cap, sizeof *m->slots);
    for (size_t i = 0; i < cap; i++)
        if (old[i].key)
            *find(m, old[i].key, old[i].hash) = old[i];
    free(old);
}

long fr_strmap_put(fr_strmap *m, const char *key, size_t value)
{
    uint64_t h = fr_fnv1a64(key, strlen(key), FR_FNV1A64_BASIS);
    slot *s = find(m, key, h);
    if (s->key)
        return (long)s->value;
    *s = (slot){.key = key, .hash = h, .value = value};
    if (++m->n * 2 > m->cap) /* at most half full: short probes */
        grow(m);
    return -1;
}

long fr_strmap_get(const fr_strmap *m, const char *key)
{
    slot *s = find(m, key, fr_fnv1a64(key, strlen(key), FR_FNV1A64_BASIS));
    return s->key ? (long)s->value : -1;
}
