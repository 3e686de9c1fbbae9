/* What loading a workflow costs as it grows, not part of the test suite
 * (route14's own bench, beside tests/bench's): generates a workflow.lua of
 * N tasks (each depending on the one before and on the one at half its
 * index, and a last task collecting every tenth), then times
 * fr_workflow_load and fr_graph_from_workflow, the median of 5 loads, for
 * N = 1,000, 10,000 and 20,000 (or the sizes given). An argument that ends
 * in .lua is a workflow file to time as it is (load.sh writes its fan-out
 * and layered DAG into one; peer_run.py --write-workflow writes them), with
 * the free timed apart, and the process's peak RSS.
 *
 *   cmake --build build --target bench_load && build/bench_load [N... | FILE.lua...]
 */

#include "dsl/workflow.h"
#include "engine/graph.h"
#include "engine/util/mem.h"

#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REPEAT 5

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: less noise on a shared machine */
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Writes the workflow of `n` tasks to `path`. */
static int generate(const char *path, long n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("workflow { name = 'load' }\n"
          "endpoint 'gpu' { tier = 'local', protocol = 'openai', url = 'http://127.0.0.1:9/v1',\n"
          "  model = 'm', max_parallel = 8 }\n"
          "agent 'a' { system = 'Be brief.' }\n",
          f);
    for (long i = 0; i < n - 1; i++) {
        fprintf(f, "task 't%ld' { agent = 'a', prompt = 'Step %ld.'", i, i);
        if (i >= 3)
            fprintf(f, ", deps = { 't%ld', 't%ld' }", i - 1, i / 2);
        else if (i >= 1)
            fprintf(f, ", deps = { 't%ld' }", i - 1);
        fputs(" }\n", f);
    }
    fputs("task 'all' { agent = 'a', prompt = 'Sum up.', deps = {", f);
    for (long i = 0; i < n - 1; i += 10)
        fprintf(f, "%s't%ld'", i ? ", " : " ", i);
    fputs(" } }\n", f);
    return fclose(f);
}

/* The process's peak resident memory so far, in MB. */
static double peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024;
}

/* Times loading `path` REPEAT times: load and graph, then the free; `n` is
 * the task count (0: read from the workflow). `label` names the line. */
static int bench(const char *path, long n, const char *label)
{
    double ms[REPEAT], free_ms[REPEAT];
    for (int r = 0; r < REPEAT; r++) {
        fr_error err = {0};
        fr_workflow *wf = NULL;
        fr_graph *g = NULL;
        double t0 = now_ms();
        int rc = fr_workflow_load(path, NULL, &wf, &err);
        if (rc == FR_OK)
            rc = fr_graph_from_workflow(wf, &g, &err);
        ms[r] = now_ms() - t0;
        if (rc != FR_OK) {
            fprintf(stderr, "bench_load: %s:%d: %s\n", err.source, err.line, err.msg);
            return 1;
        }
        if (n == 0)
            n = (long)wf->ntasks;
        t0 = now_ms();
        fr_graph_free(g);
        fr_workflow_free(wf);
        free_ms[r] = now_ms() - t0;
    }
    qsort(ms, REPEAT, sizeof *ms, cmp_double);
    qsort(free_ms, REPEAT, sizeof *free_ms, cmp_double);
    printf("%-14s %6ld tasks  %8.1f ms  (%.2f us per task; median of %d, min %.1f); free %.1f "
           "ms; peak RSS %.1f MB\n",
           label, n, ms[REPEAT / 2], ms[REPEAT / 2] * 1e3 / (double)n, REPEAT, ms[0],
           free_ms[REPEAT / 2], peak_rss_mb());
    return 0;
}

int main(int argc, char **argv)
{
    static const long sizes[] = {1000, 10000, 20000};
    char dir[] = "/tmp/fr_bench_load_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char path[64];
    snprintf(path, sizeof path, "%s/workflow.lua", dir);
    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-bench-xdg", 1);
    int rc = 0;
    int count = argc > 1 ? argc - 1 : 3;
    for (int i = 0; i < count && rc == 0; i++) {
        const char *arg = argc > 1 ? argv[i + 1] : NULL;
        size_t al = arg ? strlen(arg) : 0;
        if (al > 4 && strcmp(arg + al - 4, ".lua") == 0) {
            const char *base = strrchr(arg, '/');
            rc = bench(arg, 0, base ? base + 1 : arg);
            continue;
        }
        long n = arg ? atol(arg) : sizes[i];
        rc = generate(path, n) == 0 ? bench(path, n, "generated") : 1;
    }
    unlink(path);
    rmdir(dir);
    return rc;
}
