/* What the state store costs per task as a run uses it, not part of the
 * test suite: each task reserves its request in flight (an INSERT that is
 * durable before the request can go out), settles it when the reply is
 * booked (an UPDATE) and stores the reply in the result cache (an INSERT,
 * written under --no-cache too). Three ways: every write its own
 * transaction (what flowrun did before batching, and what a store without
 * a loop still does), and batched per loop turn with one or ten replies
 * arriving in a turn. Each also with the settle reading the month's total
 * (the monthly alert's, read until a run alerts). A real SQLite file in a
 * temporary folder, WAL, synchronous=NORMAL, as a run uses it.
 *
 *   cmake --build build --target bench_store && build/bench_store [N]
 *   (in $TMPDIR, else /tmp: TMPDIR=/dev/shm measures without the disk)
 *
 * Built with -DFR_BENCH_UNBATCHED it uses only the calls of a store
 * without batching, to measure an older build's library the same way. */

#include "engine/store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static fr_attempt_rec record(const char *task, int attempt)
{
    return (fr_attempt_rec){.run_id = "bench",
                            .task = task,
                            .endpoint = "cloud",
                            .tier = "cloud",
                            .model = "m",
                            .outcome = "ok",
                            .attempt = attempt,
                            .input = 120,
                            .output = 40,
                            .cost_usd = 0.0004,
                            .latency_ms = 800};
}

/* One phase: `n` tasks, `per_turn` replies a turn (0: no batching), the
 * settle reading the month's total when `total`. Returns us per task, or
 * -1 on an error (printed). */
static double phase(fr_store *st, const char *name, int n, int per_turn, bool total)
{
    static char text[] = "A reply of about two hundred bytes, as a short task's answer is: "
                         "the quick brown fox jumps over the lazy dog, and then it does it "
                         "again, and once more for good measure, until the buffer is full.";
    fr_error err = {0};
    int rc = FR_OK;
    long long *ids = calloc((size_t)(per_turn > 0 ? per_turn : 1), sizeof *ids);
    int k = per_turn > 0 ? per_turn : 1;
    double t0 = now_us();
    for (int i = 0; rc == FR_OK && i < n; i += k) {
        char key[64];
        for (int j = 0; rc == FR_OK && j < k; j++) { /* the turn's new requests */
            fr_attempt_rec a = record(name, i + j + 1);
            a.cost_usd = 0.002; /* the worst case, while in flight */
            rc = fr_store_reserve(st, &a, &ids[j], &err);
        }
        for (int j = 0; rc == FR_OK && j < k; j++) { /* their replies, a turn later */
            fr_attempt_rec a = record(name, i + j + 1);
            double month = 0;
            rc = fr_store_settle(st, ids[j], &a, total ? &month : NULL, &err);
            fr_reply r = {.text = text, .model = "m", .usage = {.input = 120, .output = 40}};
            snprintf(key, sizeof key, "%s-%d", name, i + j);
            if (rc == FR_OK)
                rc = fr_store_cache_put(st, key, "cloud", &r, &err);
        }
#ifndef FR_BENCH_UNBATCHED
        if (rc == FR_OK && per_turn > 0)
            rc = fr_store_flush(st, &err); /* the turn ends */
#endif
    }
    double us = (now_us() - t0) / n;
    free(ids);
    if (rc != FR_OK) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return -1;
    }
    return us;
}

#ifndef FR_BENCH_UNBATCHED
static void on_pending(void *ud)
{
    (void)ud;
}
#endif

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    const char *tmp = getenv("TMPDIR");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/fr_bench_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n <= 0 || !mkdtemp(dir))
        return 2;
    char path[300];
    snprintf(path, sizeof path, "%s/state.db", dir);
    fr_store *st = NULL;
    fr_error err = {0};
    int rc = fr_store_open(path, &st, &err);
    if (rc == FR_OK)
        rc = fr_store_run_begin(st, "bench", "bench", NULL, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "bench_store: %s\n", err.msg);
        return 1;
    }
    printf("%d tasks each, store cost per task (reserve + settle + cache put):\n", n);
    double a = phase(st, "plain", n, 0, false), b = phase(st, "plain-total", n, 0, true);
    printf("  every write its own transaction:       %6.1f us  (settle reading the month's "
           "total: %6.1f us)\n",
           a, b);
#ifndef FR_BENCH_UNBATCHED
    fr_store_batch(st, on_pending, NULL);
    for (int per = 1; per <= 10; per += 9) {
        char n1[32], n2[32];
        snprintf(n1, sizeof n1, "batch%d", per);
        snprintf(n2, sizeof n2, "batch%d-total", per);
        a = phase(st, n1, n, per, false);
        b = phase(st, n2, n, per, true);
        printf("  batched, %2d replies a turn:            %6.1f us  (settle reading the month's "
               "total: %6.1f us)\n",
               per, a, b);
    }
    fr_store_stats stats;
    fr_store_stats_get(st, &stats);
    printf("  commits %ld, statements prepared %ld (alive %d)\n", stats.commits, stats.prepares,
           stats.statements);
#endif
    printf("(the month grows by %d attempts a phase: a total read that grows with the month "
           "shows as a rising cost in the later phases)\n",
           n);
    fr_store_close(st);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = FR_EIO;
    return rc == FR_OK ? 0 : 1;
}
