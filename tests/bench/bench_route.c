/* What one routing decision costs, not part of the test suite: fr_route()
 * for one ready task over 8 candidates (4 local endpoints, 4 priced cloud
 * ones, each with 64 latencies observed), the policy call included, with
 * each built-in policy. Prints the median over REPS repetitions of N
 * decisions, in ns of this process's CPU time per decision. The decision log each dispatch appends
 * to is cleared between decisions, so it does not grow.
 *
 *   cmake --build build --target bench_route && build/bench_route [N [REPS [POLICY]]]
 *
 * BENCH_ROUTE_VARY=1 makes each decision another task's (four tasks: two
 * types, three complexity bands) with another prompt size (one of 7), so the
 * task, the cloud candidates' est_cost, the records and the explanation
 * change between decisions as between the tasks of a run; without it the
 * decisions are all alike (only run.elapsed moves), so a built-in's kept
 * tables are rewritten little and adaptive's explanation is reused.
 *
 * POLICY runs that one built-in only (for a profiler: valgrind
 * --tool=callgrind --toggle-collect=fr_route counts its instructions), or,
 * when it holds a '/', that policy file (lua/policies/cost.lua: a built-in's
 * code loaded as a user's policy is); "keep:FILE" loads it with its
 * argument tables kept between decisions (fr_policy_keep_args), and
 * "builtin:FILE" as a built-in is run (fr_policy_trust: kept tables, no
 * count hook, a history record written again only when it changed). Every endpoint has a routing
 * history (engine/history: 40 attempts of the task's type and band, 20 of another), so a policy
 * that reads candidate.history (tests/bench/history_policy.lua) gets figures.
 */

#include "dsl/policy.h"
#include "dsl/workflow.h"
#include "engine/budget.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/graph.h"
#include "engine/history.h"
#include "engine/results.h"
#include "engine/route.h"
#include "engine/sched.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NLOCAL   4
#define NCLOUD   4
#define MAX_REPS 64

/* CPU time, not wall time: on a shared machine the wall clock also counts
 * the other processes' turns. */
static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Writes the benchmark's workflow into `path`: 8 endpoints, one task. */
static int write_workflow(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("workflow { name = \"bench-route\" }\n", f);
    for (int i = 0; i < NLOCAL; i++)
        fprintf(f,
                "endpoint \"local%d\" { tier = \"local\", url = \"http://127.0.0.1:9/v1\", "
                "model = \"small%d\", max_parallel = %d, quality = %.2f }\n",
                i, i, 2 + i, 0.5 + 0.1 * i);
    for (int i = 0; i < NCLOUD; i++)
        fprintf(f,
                "endpoint \"cloud%d\" { tier = \"cloud\", url = \"https://api.example.com/v1\", "
                "model = \"big%d\", api_key_env = \"FLOWRUN_BENCH_ROUTE_KEY\", max_parallel = %d, "
                "quality = %.2f, price = { input = %.1f, output = %.1f } }\n",
                i, i, 4 + i, 0.8 + 0.05 * i, 1.0 + i, 2.0 + 2 * i);
    fputs(
        "agent \"a\" { system = \"You are terse.\" }\n"
        "task \"t\" { agent = \"a\", prompt = \"Say hello.\", complexity = 0.5 }\n"
        "task \"u\" { agent = \"a\", prompt = \"Say hi.\", complexity = 0.5, type = \"code\" }\n"
        "task \"v\" { agent = \"a\", prompt = \"Say yes.\", complexity = 0.3 }\n"
        "task \"x\" { agent = \"a\", prompt = \"Say no.\", complexity = 0.85, type = \"code\" }\n",
        f);
    return fclose(f) == 0 ? 0 : -1;
}

typedef struct world {
    fr_workflow *wf;
    fr_graph *g;
    fr_endpoints *eps;
    fr_sched *sched;
    fr_budget *budget;
    fr_clock *clock;
    fr_policy *policy;
    fr_results res;
    fr_router *rt;
    fr_history *history;
    uint64_t start_ns;
} world;

static fr_policy *policy_of(void *ud)
{
    return ((world *)ud)->policy;
}

static void world_close(world *w)
{
    fr_router_free(w->rt);
    fr_history_free(w->history);
    if (w->g)
        fr_results_close(&w->res);
    fr_policy_free(w->policy);
    fr_clock_free(w->clock);
    fr_budget_free(w->budget);
    fr_sched_free(w->sched);
    fr_endpoints_free(w->eps);
    fr_graph_free(w->g);
    fr_workflow_free(w->wf);
}

/* Builds everything a router reads for `path` with policy `name`. */
static int world_open(world *w, const char *path, const char *name)
{
    char msg[1600];
    fr_error err = {0};
    char *ppath = NULL;
    memset(w, 0, sizeof *w);
    bool keep = strncmp(name, "keep:", 5) == 0, trust = strncmp(name, "builtin:", 8) == 0;
    if (keep || trust)
        name = strchr(name, ':') + 1;
    if (fr_workflow_load(path, NULL, &w->wf, &err) != FR_OK ||
        fr_graph_from_workflow(w->wf, &w->g, &err) != FR_OK ||
        fr_policy_resolve(name, NULL, &ppath, &err) != FR_OK ||
        fr_policy_load(ppath, NULL, 1, &w->policy, &err) != FR_OK) {
        fprintf(stderr, "bench_route: %s\n", fr_error_format(&err, msg, sizeof msg));
        free(ppath);
        return -1;
    }
    free(ppath);
    if (keep)
        fr_policy_keep_args(w->policy);
    if (trust)
        fr_policy_trust(w->policy);
    w->eps = fr_endpoints_new(w->wf, false);
    w->sched = fr_sched_for_workflow(w->g, w->wf);
    w->budget = fr_budget_new(false, 0, false, 0);
    w->clock = fr_clock_new(NULL);
    fr_results_init(&w->res, w->wf, w->g);
    /* A full window of observed latencies, as after a while of running. */
    for (size_t e = 0; e < w->wf->nendpoints; e++)
        for (int i = 0; i < 64; i++)
            fr_ep_succeeded(w->eps, e, 200.0 + (double)((i * 37 + (int)e * 11) % 97) * (1 + e));
    fr_route_env env = {.wf = w->wf,
                        .eps = w->eps,
                        .sched = w->sched,
                        .budget = w->budget,
                        .clock = w->clock,
                        .start_ns = &w->start_ns,
                        .policy = policy_of,
                        .policy_ud = w};
    w->rt = fr_router_new(&env);
    /* What earlier runs booked: per endpoint, attempts of the task's key
     * (no type, complexity 0.5) and of another, passes and fails, up to 40
     * days old. */
    w->history = fr_history_for_workflow(w->wf);
    double now = (double)time(NULL);
    for (size_t e = 0; e < w->wf->nendpoints; e++)
        for (int i = 0; i < 60; i++) {
            fr_attempt_rec a = {.endpoint = w->wf->endpoints[e].name,
                                .outcome = (i + (int)e) % 4 ? "ok" : "quality",
                                .type = i < 40 ? NULL : "code",
                                .has_complexity = true,
                                .complexity = 0.5,
                                .has_score = i % 3 == 0,
                                .score = 0.7,
                                .output = 100 + i,
                                .cost_usd = 0.001 * (double)e,
                                .latency_ms = 300 + 20.0 * i,
                                .has_ttft = true,
                                .ttft_ms = 50 + i};
            fr_history_add(w->history, &a, now - 86400.0 * (60 - i) * 2 / 3);
        }
    fr_route_set_history(w->rt, w->history);
    return 0;
}

/* Makes `n` decisions; returns ns per decision, or -1 if one did not dispatch.
 * Without `vary` every decision is task t's, alike; with it, the decisions go
 * round the workflow's four tasks (two types, three complexity bands, two
 * of them without a record in their band) with one of 7 prompt sizes, so
 * the task, the cloud candidates' est_cost, the records and the
 * explanation change from one decision to the next, as between the tasks
 * of a run. */
static double decide(world *w, long n, size_t *candidates, bool vary)
{
    unsigned char tried[NLOCAL + NCLOUD] = {0};
    fr_route_task t = {.idx = 0,
                       .res = &w->res.tasks[0],
                       .tried = tried,
                       .retry_ep = -1,
                       .reason = "first",
                       .est_input = 10,
                       .worst_input = 40};
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        if (vary) {
            t.idx = (size_t)(i % 4);
            t.res = &w->res.tasks[t.idx];
            t.est_input = t.worst_input = 10 + 300 * (i % 7);
        }
        fr_route_pass_begin(w->rt);
        fr_route_decision d = fr_route(w->rt, &t);
        if (d.kind != FR_ROUTE_DISPATCH) {
            fprintf(stderr, "bench_route: decision %ld did not dispatch: %s\n", i,
                    d.reason ? d.reason : "(wait)");
            free(d.reason);
            return -1;
        }
        if (i == 0) {
            *candidates = fr_declog_get(t.res->decisions, 0)->ncands;
        }
        fr_declog_clear(t.res->decisions);
    }
    return (now_ns() - t0) / (double)n;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 5000;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (n < 1 || reps < 1 || reps > MAX_REPS) {
        fprintf(stderr, "usage: bench_route [DECISIONS >= 1 [REPS 1..%d [POLICY]]]\n", MAX_REPS);
        return 2;
    }
    char dir[] = "/tmp/bench_route.XXXXXX", path[64];
    if (!mkdtemp(dir)) {
        perror("bench_route: mkdtemp");
        return 1;
    }
    snprintf(path, sizeof path, "%s/route.lua", dir);
    setenv("FLOWRUN_BENCH_ROUTE_KEY", "sk-bench-route-0123456789", 1);
    setenv("XDG_CONFIG_HOME", dir, 1); /* no user endpoints file joins in */
    unsetenv("FLOWRUN_LUA_DIR");       /* the built-in policies */
    int rc = write_workflow(path) == 0 ? 0 : 1;
    if (rc)
        perror("bench_route: writing the workflow");
    static const char *const builtins[] = {"cost", "balanced", "speed", "local-only", "adaptive"};
    const char *only = argc > 3 ? argv[3] : NULL;
    const char *vary_env = getenv("BENCH_ROUTE_VARY");
    bool vary = vary_env && *vary_env && strcmp(vary_env, "0") != 0;
    const char *const *policies = builtins;
    size_t npolicies = sizeof builtins / sizeof *builtins;
    if (only && strchr(only, '/')) {
        policies = &only;
        npolicies = 1;
    }
    printf(
        "one routing decision (fr_route, policy call included), CPU time, median of %d x %ld%s\n",
        reps, n, vary ? ", tasks varying" : "");
    for (size_t p = 0; !rc && p < npolicies; p++) {
        if (only && strcmp(only, policies[p]) != 0)
            continue;
        world w;
        if (world_open(&w, path, policies[p]) != 0) {
            rc = 1;
            world_close(&w);
            break;
        }
        double ns[MAX_REPS];
        size_t cands = 0;
        decide(&w, n / 10 + 1, &cands, vary); /* warm-up */
        for (int r = 0; r < reps && !rc; r++)
            if ((ns[r] = decide(&w, n, &cands, vary)) < 0)
                rc = 1;
        if (!rc) {
            qsort(ns, (size_t)reps, sizeof *ns, cmp_double);
            printf("%-12s candidates %zu  %8.0f ns/decision  (min %.0f, max %.0f)\n", policies[p],
                   cands, ns[reps / 2], ns[0], ns[reps - 1]);
        }
        world_close(&w);
    }
    unlink(path);
    rmdir(dir);
    return rc;
}
