/* What the PostgreSQL state store (engine/store/pgstore) costs this process
 * per task, not part of the test suite: each task reserves its request
 * (on a capped endpoint: the endpoint's row locked, its slots counted) and
 * settles it (reading the month's total). Two ways: the turn's writes in
 * one pipelined transaction (K tasks' writes per flush), and every write
 * its own transaction (a flush after each). CPU time of this process only
 * (getrusage: the server's is its own), and the transactions sent, on a
 * server of its own (tests/unit/support/pg.sh).
 *
 *   cmake --build build --target bench_pgstore && build/bench_pgstore [N] [K]
 */

#include "engine/store/pgstore.h"
#include "tests/unit/support/pg_fixture.h"

#include <sys/resource.h>

static pg_server server;
static int completed, failed;

static void on_done(void *ud, int rc, const fr_error *err)
{
    (void)ud;
    (void)err;
    completed++;
    failed += rc != FR_OK;
}

static void on_value(void *ud, int rc, double v, const fr_error *err)
{
    (void)v;
    on_done(ud, rc, err);
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void run_until(uv_loop_t *loop, int n)
{
    while (completed < n)
        uv_run(loop, UV_RUN_ONCE);
}

/* N tasks, K per flush: reserve all, then settle all. Returns CPU seconds. */
static double phase(uv_loop_t *loop, fr_pgstore *s, const char *run, int n, int k)
{
    char task[32];
    completed = failed = 0;
    double t0 = cpu_s();
    for (int settle = 0; settle < 2; settle++)
        for (int i = 0; i < n; i++) {
            snprintf(task, sizeof task, "t%d", i);
            fr_attempt_rec a = {.run_id = run,
                                .task = task,
                                .attempt = 1,
                                .endpoint = "bench-ep",
                                .tier = "cloud",
                                .model = "m",
                                .outcome = "ok",
                                .cost_usd = 0.001,
                                .input = 100,
                                .output = 50,
                                .latency_ms = 200};
            if (settle)
                fr_pgstore_settle(s, &a, true, on_value, NULL);
            else
                fr_pgstore_reserve(s, &a, 1000000, on_done, NULL);
            if ((i + 1) % k == 0 || i == n - 1) {
                fr_pgstore_flush(s);
                uv_run(loop, UV_RUN_NOWAIT); /* the turn ends */
            }
        }
    run_until(loop, 2 * n);
    return cpu_s() - t0;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    int k = argc > 2 ? atoi(argv[2]) : 10;
    (void)pg_server_restart; /* the fixture's, not needed here */
    PG_SERVER_START_OR_RETURN(&server);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fr_pgstore *s = NULL;
    fr_error err = {0};
    completed = 0;
    if (fr_pgstore_open(&loop, server.url, NULL, on_done, NULL, &s, &err) != FR_OK)
        return 1;
    run_until(&loop, 1);
    fr_pgstore_run_begin(s, "bench-batched", "wf", NULL, on_done, NULL);
    fr_pgstore_run_begin(s, "bench-single", "wf", NULL, on_done, NULL);
    fr_pgstore_flush(s);
    run_until(&loop, 3);
    fr_pgstore_stats st0, st1, st2;
    fr_pgstore_stats_get(s, &st0);
    double batched = phase(&loop, s, "bench-batched", n, k);
    int failed_b = failed;
    fr_pgstore_stats_get(s, &st1);
    double single = phase(&loop, s, "bench-single", n, 1);
    int failed_s = failed;
    fr_pgstore_stats_get(s, &st2);
    printf("tasks %d (a reservation and a settle each), capped endpoint, settle with total\n", n);
    printf("batched, %d tasks' writes per flush: %ld transactions, %.1f us CPU per task%s\n", k,
           st1.flushes - st0.flushes, batched / n * 1e6, failed_b ? " (FAILURES)" : "");
    printf("one write per transaction:          %ld transactions, %.1f us CPU per task%s\n",
           st2.flushes - st1.flushes, single / n * 1e6, failed_s ? " (FAILURES)" : "");
    fr_pgstore_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    pg_server_stop(&server);
    return rc == 0 && !failed_b && !failed_s ? 0 : 1;
}
