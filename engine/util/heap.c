#include "engine/util/heap.h"

#include "engine/util/mem.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct fr_heap {
    unsigned char *v;
    unsigned char *tmp; /* one element, for swaps */
    size_t size, n, cap;
    fr_heap_before_fn before;
    void *ud;
};

fr_heap *fr_heap_new(size_t size, fr_heap_before_fn before, void *ud)
{
    assert(size > 0);
    fr_heap *h = fr_xcalloc(1, sizeof *h);
    h->size = size;
    h->tmp = fr_xmalloc(size);
    h->before = before;
    h->ud = ud;
    return h;
}

void fr_heap_free(fr_heap *h)
{
    if (!h)
        return;
    free(h->v);
    free(h->tmp);
    free(h);
}

static void *at(const fr_heap *h, size_t i)
{
    return h->v + i * h->size;
}

static void swap(fr_heap *h, size_t i, size_t k)
{
    memcpy(h->tmp, at(h, i), h->size);
    memcpy(at(h, i), at(h, k), h->size);
    memcpy(at(h, k), h->tmp, h->size);
}

void fr_heap_push(fr_heap *h, const void *elem)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->v = fr_xrealloc(h->v, h->cap * h->size);
    }
    size_t i = h->n++;
    memcpy(at(h, i), elem, h->size);
    while (i > 0 && h->before(h->ud, at(h, i), at(h, (i - 1) / 2))) {
        swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

bool fr_heap_pop(fr_heap *h, void *out)
{
    if (h->n == 0)
        return false;
    memcpy(out, at(h, 0), h->size);
    if (--h->n > 0)
        memcpy(at(h, 0), at(h, h->n), h->size);
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        if (l < h->n && h->before(h->ud, at(h, l), at(h, best)))
            best = l;
        if (r < h->n && h->before(h->ud, at(h, r), at(h, best)))
            best = r;
        if (best == i)
            break;
        swap(h, i, best);
        i = best;
    }
    return true;
}

size_t fr_heap_count(const fr_heap *h)
{
    return h->n;
}

const void *fr_heap_at(const fr_heap *h, size_t i)
{
    return at(h, i);
}

void fr_heap_clear(fr_heap *h)
{
    h->n = 0;
}
