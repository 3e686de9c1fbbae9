/* What one routing decision costs, policy call included, not part of the
 * test suite (route14's own bench until tests/bench/bench_route.c lands):
 * a workflow of two local endpoints and one cloud endpoint, each with 64
 * latencies recorded, one slot in use on each; fr_route on a ready task,
 * again and again, for each built-in policy. Prints the mean and the
 * median of 15 batches in microseconds per decision.
 *
 *   cmake --build build --target bench_route_local && build/bench_route_local [N]
 */

#include "engine/graph.h"
#include "engine/route.h"
#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCHES 15

static const char flow[] =
    "workflow { name = 'bench' }\n"
    "endpoint 'gpu' { tier = 'local', protocol = 'openai', url = 'http://127.0.0.1:9/v1',\n"
    "  model = 'qwen', max_parallel = 8, quality = 0.6, context = 32768, tags = { 'code' } }\n"
    "endpoint 'cpu' { tier = 'local', protocol = 'ollama', url = 'http://127.0.0.1:9',\n"
    "  model = 'llama', max_parallel = 4, quality = 0.5, context = 8192 }\n"
    "endpoint 'api' { tier = 'cloud', protocol = 'openai', url = 'http://127.0.0.1:9/v1',\n"
    "  model = 'big', max_parallel = 64, quality = 0.9, context = 200000,\n"
    "  price = { input = 3.0, output = 15.0 } }\n"
    "agent 'a' { system = 'You are terse.', type = 'code' }\n"
    "task 'one' { agent = 'a', prompt = 'Say hello.', complexity = 0.4 }\n";

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: less noise on a shared machine */
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static fr_policy *g_policy;

static fr_policy *live(void *ud)
{
    (void)ud;
    return g_policy;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Times `n` decisions for ready task 0 with `policy`; prints a line. */
static int bench(const char *path, const char *policy, long n)
{
    fr_error err = {0};
    fr_workflow *wf = NULL;
    fr_graph *g = NULL;
    if (fr_workflow_load(path, NULL, &wf, &err) != FR_OK ||
        fr_graph_from_workflow(wf, &g, &err) != FR_OK) {
        fprintf(stderr, "bench_route_local: %s\n", err.msg);
        return 1;
    }
    char *ppath = NULL;
    if (fr_policy_resolve(policy, NULL, &ppath, &err) != FR_OK ||
        fr_policy_load(ppath, NULL, 1, &g_policy, &err) != FR_OK) {
        fprintf(stderr, "bench_route_local: %s\n", err.msg);
        return 1;
    }
    free(ppath);
    fr_endpoints *eps = fr_endpoints_new(wf, false);
    int prio[1] = {5}, slots[3];
    for (size_t e = 0; e < 3; e++)
        slots[e] = wf->endpoints[e].max_parallel;
    fr_sched *sched = fr_sched_new(g, prio, 3, slots);
    fr_budget *budget = fr_budget_new(false, 0, false, 0);
    fr_clock *clock = fr_clock_new(NULL);
    fr_results res;
    fr_results_init(&res, wf, g);
    uint64_t start_ns = 0;
    unsigned seed = 1;
    for (size_t e = 0; e < 3; e++) {
        fr_sched_take_slot(sched, e);
        for (int i = 0; i < 64; i++) {
            seed = seed * 1103515245u + 12345u;
            fr_ep_succeeded(eps, e, 200 + (double)((seed >> 8) % 5000));
        }
    }
    fr_route_env env = {.wf = wf,
                        .eps = eps,
                        .sched = sched,
                        .budget = budget,
                        .clock = clock,
                        .start_ns = &start_ns,
                        .policy = live};
    fr_router *rt = fr_router_new(&env);
    unsigned char tried[3] = {0};
    fr_route_task t = {.idx = 0,
                       .res = &res.tasks[0],
                       .tried = tried,
                       .retry_ep = -1,
                       .reason = "first",
                       .est_input = 120,
                       .worst_input = 400};
    double per[BATCHES];
    long kinds[3] = {0};
    for (int b = 0; b < BATCHES; b++) {
        double t0 = now_us();
        for (long i = 0; i < n; i++) {
            fr_route_decision d = fr_route(rt, &t);
            kinds[d.kind]++;
            free(d.reason);
            /* A latency arrives now and then, as in a run. */
            if (i % 4 == 0)
                fr_ep_succeeded(eps, (size_t)(i % 3), 200 + (double)(i % 5000));
            if (json_array_size(t.res->decisions) > 256)
                json_array_clear(t.res->decisions);
        }
        per[b] = (now_us() - t0) / (double)n;
    }
    double sum = 0;
    for (int b = 0; b < BATCHES; b++)
        sum += per[b];
    qsort(per, BATCHES, sizeof *per, cmp_double);
    printf("%-11s %8.2f us/decision (median of %d batches of %ld; mean %.2f; "
           "dispatch %ld wait %ld)\n",
           policy, per[BATCHES / 2], BATCHES, n, sum / BATCHES, kinds[FR_ROUTE_DISPATCH],
           kinds[FR_ROUTE_WAIT]);
    fr_router_free(rt);
    fr_results_close(&res);
    fr_clock_free(clock);
    fr_budget_free(budget);
    fr_sched_free(sched);
    fr_endpoints_free(eps);
    fr_policy_free(g_policy);
    fr_graph_free(g);
    fr_workflow_free(wf);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    char dir[] = "/tmp/fr_bench_route_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof path, "%s/flow.lua", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    fputs(flow, f);
    fclose(f);
    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-bench-xdg", 1);
    unsetenv("FLOWRUN_LUA_DIR");
    static const char *const policies[] = {"balanced", "cost", "speed", "local-only"};
    int rc = 0;
    for (size_t i = 0; i < 4 && rc == 0; i++)
        rc = bench(path, policies[i], n);
    unlink(path);
    rmdir(dir);
    return rc;
}
