/* What the ledger's writes cost per request, not part of the test suite:
 * the one booking per attempt flowrun made before (an INSERT when the reply
 * is booked) against the two it makes now (an INSERT of the reservation
 * before the request is sent, an UPDATE when it settles), and the settle
 * that also reads the month's total for the monthly alert. A real SQLite
 * file in a temporary folder, WAL, synchronous=NORMAL, as a run uses it.
 *
 *   cmake --build build --target bench_store && build/bench_store [N]
 */

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

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    char dir[] = "/tmp/fr_bench_store_XXXXXX";
    if (n <= 0 || !mkdtemp(dir))
        return 2;
    char path[64];
    snprintf(path, sizeof path, "%s/state.db", dir);
    fr_store *st = NULL;
    fr_error err = {0};
    int rc = fr_store_open(path, &st, &err);
    if (rc == FR_OK)
        rc = fr_store_run_begin(st, "bench", "bench", NULL, &err);
    double t0 = now_us();
    for (int i = 0; rc == FR_OK && i < n; i++) {
        fr_attempt_rec a = record("before", i + 1);
        rc = fr_store_add_attempt(st, &a, &err);
    }
    double t1 = now_us();
    for (int i = 0; rc == FR_OK && i < n; i++) {
        fr_attempt_rec a = record("now", i + 1);
        long long id = 0;
        a.cost_usd = 0.002; /* the worst case, while in flight */
        rc = fr_store_reserve(st, &a, &id, &err);
        a.cost_usd = 0.0004;
        if (rc == FR_OK)
            rc = fr_store_settle(st, id, &a, NULL, &err);
    }
    double t2 = now_us();
    for (int i = 0; rc == FR_OK && i < n; i++) {
        fr_attempt_rec a = record("alert", i + 1);
        long long id = 0;
        double total = 0;
        rc = fr_store_reserve(st, &a, &id, &err);
        if (rc == FR_OK)
            rc = fr_store_settle(st, id, &a, &total, &err);
    }
    double t3 = now_us();
    for (int i = 0; rc == FR_OK && i < n; i++) {
        fr_attempt_rec a = record("alert-before", i + 1);
        double total = 0;
        rc = fr_store_add_attempt_total(st, &a, &total, &err);
    }
    double t4 = now_us();
    if (rc != FR_OK)
        fprintf(stderr, "bench_store: %s\n", err.msg);
    else
        printf("%d attempts each, per request:\n"
               "  before (one INSERT at booking):            %6.1f us\n"
               "  now (INSERT at dispatch, UPDATE at settle): %6.1f us\n"
               "  now, settle reading the month's total:      %6.1f us\n"
               "  before, booking reading the month's total:  %6.1f us\n"
               "(the month's total, read until a run alerts, grows with the month's ledger:\n"
               "the last two phases start at %d and %d attempts in the month)\n",
               n, (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n, (t4 - t3) / n, 2 * n, 3 * n);
    fr_store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = FR_EIO;
    return rc == FR_OK ? 0 : 1;
}
