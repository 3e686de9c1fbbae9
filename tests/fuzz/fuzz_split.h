#pragma once
/* Shared by the fuzz targets: cutting a body into chunks the way a network
 * might, driven by two header bytes of the input so that the fuzzer explores
 * the cuts as it explores the bytes. Header-only (static functions), since
 * every target is one translation unit. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* How a body is cut. `mode & 3` picks the scheme:
 *   0  one chunk (the reference every split is compared with)
 *   1  one byte at a time
 *   2  pseudo-random chunks of 1..(mode >> 2) * 4 + 1 bytes, from `seed`
 *   3  three chunks, cut at seed/256 and (mode >> 2)/64 of the body */
typedef struct split {
    const uint8_t *p;
    size_t n;
    size_t off;
    unsigned mode;
    uint32_t rng;
    size_t max; /* scheme 2: the largest chunk */
    size_t cut[2];
    int ncut;
} split;

static inline void split_init(split *s, uint8_t mode, uint8_t seed, const uint8_t *p, size_t n)
{
    s->p = p;
    s->n = n;
    s->off = 0;
    s->mode = mode & 3u;
    s->rng = 0x9e3779b9u ^ ((uint32_t)seed << 8) ^ mode;
    s->max = (size_t)(mode >> 2) * 4 + 1;
    size_t a = n * seed / 256, b = n * (size_t)(mode >> 2) / 64;
    if (b > n)
        b = n;
    s->cut[0] = a < b ? a : b;
    s->cut[1] = a < b ? b : a;
    s->ncut = 0;
}

static inline uint32_t split_rand(split *s)
{
    /* xorshift32: deterministic, so a crash reproduces from its input. */
    uint32_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s->rng = x;
    return x;
}

/* Hands out the next chunk; returns false when the body is used up. Chunks
 * are never empty. */
static inline bool split_next(split *s, const uint8_t **chunk, size_t *len)
{
    if (s->off >= s->n)
        return false;
    size_t left = s->n - s->off, take = left;
    switch (s->mode) {
    case 1:
        take = 1;
        break;
    case 2:
        take = 1 + split_rand(s) % s->max;
        break;
    case 3:
        while (s->ncut < 2 && s->cut[s->ncut] <= s->off)
            s->ncut++;
        if (s->ncut < 2)
            take = s->cut[s->ncut] - s->off;
        break;
    default:
        break;
    }
    if (take > left)
        take = left;
    *chunk = s->p + s->off;
    *len = take;
    s->off += take;
    return true;
}

/* Reports a broken invariant and aborts, which libFuzzer records as a crash
 * with the input that caused it. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
