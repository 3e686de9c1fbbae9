#pragma once
/* Every-split-point feeding, shared by the unit tests (test_sse, test_ndjson
 * and the adapter tests through adapter_harness.h) and the fuzz targets:
 * cutting a body into chunks the way a network might. The unit tests walk
 * every cut (split_every, split_bytes, split_every_pair); the fuzzers cut as
 * two header bytes of the input say (split_init, split_next), so that the
 * fuzzer explores the cuts as it explores the bytes. Header-only (static
 * functions), since every test and target is one translation unit. */

#include "engine/util/buf.h"
#include "engine/util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Feeds one piece of a body: `len` bytes at `p` (borrowed). Returns FR_OK
 * (0) to go on, or a negative code that stops the feeding. */
typedef int (*split_feed_fn)(void *ud, const char *p, size_t len);

/* Feeds `len` bytes of `s` (borrowed) to `feed` in pieces cut at `cuts`
 * (`ncuts` ascending offsets; a cut may repeat, giving an empty piece).
 * Stops at the first piece `feed` refuses; returns its code, or 0. */
static inline int split_pieces(const char *s, size_t len, const size_t *cuts, size_t ncuts,
                               split_feed_fn feed, void *ud)
{
    int rc = 0;
    size_t at = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t next = i < ncuts ? cuts[i] : len;
        rc = feed(ud, s + at, next - at);
        at = next;
    }
    return rc;
}

/* Runs one whole feeding of `s` (borrowed) cut at `cuts` (`ncuts` ascending
 * offsets) and checks what came out; the unit tests' callback. */
typedef void (*split_run_fn)(void *ud, const char *s, const size_t *cuts, size_t ncuts);

/* Returns `s` (borrowed) with every "\n" replaced by `eol` (owned). */
static inline char *split_with_eol(const char *s, const char *eol)
{
    size_t n = strlen(eol), len = 0;
    for (const char *p = s; *p; p++)
        len += *p == '\n' ? n : 1;
    char *out = malloc(len + 1);
    if (!out)
        abort();
    char *q = out;
    for (const char *p = s; *p; p++) {
        if (*p == '\n') {
            memcpy(q, eol, n);
            q += n;
        } else {
            *q++ = *p;
        }
    }
    *q = '\0';
    return out;
}

/* Runs `s` (borrowed) whole, then cut once at every offset, 0 and its
 * length included. */
static inline void split_every(const char *s, split_run_fn run, void *ud)
{
    size_t len = strlen(s);
    run(ud, s, NULL, 0);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        run(ud, s, cut, 1);
    }
}

/* Runs `s` (borrowed) fed one byte at a time. */
static inline void split_bytes(const char *s, split_run_fn run, void *ud)
{
    size_t len = strlen(s);
    size_t *cuts = calloc(len ? len : 1, sizeof *cuts);
    if (!cuts)
        abort();
    for (size_t i = 0; i < len; i++)
        cuts[i] = i + 1;
    run(ud, s, cuts, len ? len - 1 : 0);
    free(cuts);
}

/* Runs `s` (borrowed) cut twice at every pair of offsets: catches state
 * kept between feeds that a single cut would not reach (a CR at the end of
 * one feed and its LF alone in the next, and so on). */
static inline void split_every_pair(const char *s, split_run_fn run, void *ud)
{
    size_t len = strlen(s);
    for (size_t i = 0; i <= len; i++)
        for (size_t k = i; k <= len; k++) {
            size_t cuts[2] = {i, k};
            run(ud, s, cuts, 2);
        }
}

/* Runs `s` (borrowed) with its "\n" swapped for `eol`, as split_every does. */
static inline void split_every_eol(const char *s, const char *eol, split_run_fn run, void *ud)
{
    char *t = split_with_eol(s, eol);
    split_every(t, run, ud);
    free(t);
}

/* Runs `s` (borrowed) with its "\n" swapped for `eol`, as split_every_pair
 * does. */
static inline void split_every_pair_eol(const char *s, const char *eol, split_run_fn run, void *ud)
{
    char *t = split_with_eol(s, eol);
    split_every_pair(t, run, ud);
    free(t);
}

/* What a framer's unit test logs of the records it was handed: each record
 * as text ending in "\x1e", so a whole run compares as one string. */
typedef struct split_log {
    fr_buf log;
    int count;
    int fail_at; /* the callback fails with FR_EPROTO at this record (1-based); 0 = never */
} split_log;

static inline void split_log_init(split_log *r)
{
    memset(r, 0, sizeof *r);
    fr_buf_init(&r->log, 0);
}

/* Runs `s` (borrowed) with its "\n" swapped for `eol`, as split_bytes does. */
static inline void split_bytes_eol(const char *s, const char *eol, split_run_fn run, void *ud)
{
    char *t = split_with_eol(s, eol);
    split_bytes(t, run, ud);
    free(t);
}

/* Feeds the chunks `sp` hands out to a stream framer through `feed`, and
 * checks what every framer owes its caller: an error is sticky, and is
 * FR_ETOOBIG or the FR_EPROTO a fuzz target's callback returns. Returns
 * the last feed's code (FR_OK for an empty body). */
static inline int split_feed_framer(split *sp, split_feed_fn feed, void *ud)
{
    const uint8_t *chunk;
    size_t len;
    int rc = FR_OK;
    while (split_next(sp, &chunk, &len)) {
        int was = rc;
        rc = feed(ud, (const char *)chunk, len);
        FUZZ_CHECK(was == FR_OK || rc == was); /* sticky */
        FUZZ_CHECK(rc == FR_OK || rc == FR_ETOOBIG || rc == FR_EPROTO);
    }
    return rc;
}

/* A stream framer as the fuzz targets drive it: `framer` (borrowed) and its
 * feed, flush and pending, each given `framer`. */
typedef struct split_framer {
    void *framer;
    split_feed_fn feed;
    int (*flush)(void *framer);
    bool (*pending)(void *framer);
} split_framer;

/* Defines the calls split_framer wants for a framer whose functions are
 * PREFIX_feed, PREFIX_flush and PREFIX_pending, each taking the framer
 * first (fr_sse, fr_ndjson); SPLIT_FRAMER(PREFIX, framer) is then one. */
#define SPLIT_FRAMER_CALLS(prefix)                                                                 \
    static int prefix##_split_feed(void *framer, const char *p, size_t len)                        \
    {                                                                                              \
        return prefix##_feed(framer, p, len);                                                      \
    }                                                                                              \
    static int prefix##_split_flush(void *framer)                                                  \
    {                                                                                              \
        return prefix##_flush(framer);                                                             \
    }                                                                                              \
    static bool prefix##_split_pending(void *framer)                                               \
    {                                                                                              \
        return prefix##_pending(framer);                                                           \
    }
#define SPLIT_FRAMER(prefix, framer)                                                               \
    ((split_framer){(framer), prefix##_split_feed, prefix##_split_flush, prefix##_split_pending})

/* Feeds the chunks `sp` hands out to `f` (split_feed_framer), notes in
 * *pending whether it holds a partial record, then flushes it when `flush`
 * is set: a flush after an error gives the same error, and a flush that
 * went well leaves nothing pending. Returns the final code. */
static inline int split_frame(split *sp, const split_framer *f, bool flush, bool *pending)
{
    int rc = split_feed_framer(sp, f->feed, f->framer);
    *pending = f->pending(f->framer);
    if (flush) {
        int frc = f->flush(f->framer);
        FUZZ_CHECK(rc == FR_OK || frc == rc);
        FUZZ_CHECK(frc != FR_OK || !f->pending(f->framer));
        rc = frc;
    }
    return rc;
}

/* What one framing of a body gave: the final code, the pending state
 * before the flush, how many records, and the log of them (borrowed). */
typedef struct split_outcome {
    int rc;
    bool pending;
    int records;
    const fr_buf *log;
} split_outcome;

/* Checks that the body cut (`cut`) framed as it did whole (`whole`); after
 * an error the pending state is moot. */
static inline void split_check_same(const split_outcome *whole, const split_outcome *cut)
{
    FUZZ_CHECK(whole->rc == cut->rc);
    FUZZ_CHECK(whole->rc != FR_OK || whole->pending == cut->pending);
    FUZZ_CHECK(whole->records == cut->records);
    FUZZ_CHECK(whole->log->len == cut->log->len);
    FUZZ_CHECK(whole->log->len == 0 ||
               memcmp(whole->log->data, cut->log->data, whole->log->len) == 0);
}
