#include "engine/graph.h"

#include "dsl/workflow.h"
#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct adj {
    size_t *v;
    size_t n, cap;
} adj;

struct fr_graph {
    size_t n;
    adj *out; /* dependents */
    adj *in;  /* dependencies */
    size_t *order;
    size_t *level;
    size_t *rank;
    int sorted;
};

static bool adj_has(const adj *a, size_t x)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i] == x)
            return true;
    return false;
}

static void adj_push(adj *a, size_t x)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4;
        a->v = fr_xrealloc(a->v, a->cap * sizeof *a->v);
    }
    a->v[a->n++] = x;
}

fr_graph *fr_graph_new(size_t n)
{
    fr_graph *g = fr_xcalloc(1, sizeof *g);
    g->n = n;
    g->out = fr_xcalloc(n, sizeof *g->out);
    g->in = fr_xcalloc(n, sizeof *g->in);
    g->order = fr_xcalloc(n, sizeof *g->order);
    g->level = fr_xcalloc(n, sizeof *g->level);
    g->rank = fr_xcalloc(n, sizeof *g->rank);
    return g;
}

void fr_graph_free(fr_graph *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++) {
        free(g->out[i].v);
        free(g->in[i].v);
    }
    free(g->out);
    free(g->in);
    free(g->order);
    free(g->level);
    free(g->rank);
    free(g);
}

void fr_graph_add_edge(fr_graph *g, size_t from, size_t to)
{
    /* An edge is in both lists: look in the shorter, so a task with
     * thousands of dependents (or deps) costs no scan of them per edge. */
    bool dup =
        g->out[from].n <= g->in[to].n ? adj_has(&g->out[from], to) : adj_has(&g->in[to], from);
    if (dup)
        return;
    adj_push(&g->out[from], to);
    adj_push(&g->in[to], from);
}

/* Finds one cycle among the nodes Kahn's algorithm could not order, by
 * walking dependencies from a leftover node until a node repeats. Every
 * leftover node has at least one leftover dependency, so the walk never
 * stops short. */
static void find_cycle(const fr_graph *g, const size_t *indeg, size_t **cycle, size_t *ncycle)
{
    size_t start = 0;
    while (indeg[start] == 0)
        start++;
    long *seen_at = fr_xmalloc(g->n * sizeof *seen_at);
    for (size_t i = 0; i < g->n; i++)
        seen_at[i] = -1;
    size_t *path = fr_xmalloc((g->n + 1) * sizeof *path);
    size_t len = 0, cur = start;
    while (seen_at[cur] < 0) {
        seen_at[cur] = (long)len;
        path[len++] = cur;
        size_t next = cur;
        for (size_t k = 0; k < g->in[cur].n; k++)
            if (indeg[g->in[cur].v[k]] > 0) {
                next = g->in[cur].v[k];
                break;
            }
        cur = next;
    }
    /* path[seen_at[cur] .. len) is the cycle, walking dependencies; reverse
     * it so each node is a dependency of the next. */
    size_t first = (size_t)seen_at[cur];
    size_t n = len - first;
    size_t *c = fr_xmalloc(n * sizeof *c);
    size_t low = 0; /* start at the lowest index: the first declared task */
    for (size_t i = 0; i < n; i++)
        if (path[len - 1 - i] < path[len - 1 - low])
            low = i;
    for (size_t i = 0; i < n; i++)
        c[i] = path[len - 1 - (i + low) % n];
    free(path);
    free(seen_at);
    *cycle = c;
    *ncycle = n;
}

int fr_graph_sort(fr_graph *g, size_t **cycle, size_t *ncycle)
{
    size_t *indeg = fr_xmalloc((g->n ? g->n : 1) * sizeof *indeg);
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < g->n; i++) {
        indeg[i] = g->in[i].n;
        g->level[i] = 0;
        if (indeg[i] == 0)
            g->order[tail++] = i;
    }
    while (head < tail) {
        size_t u = g->order[head++];
        for (size_t k = 0; k < g->out[u].n; k++) {
            size_t v = g->out[u].v[k];
            if (g->level[u] + 1 > g->level[v])
                g->level[v] = g->level[u] + 1;
            if (--indeg[v] == 0)
                g->order[tail++] = v;
        }
    }
    int rc = FR_OK;
    if (tail < g->n) {
        if (cycle)
            find_cycle(g, indeg, cycle, ncycle);
        rc = FR_ECYCLE;
        goto cleanup;
    }
    for (size_t i = g->n; i-- > 0;) {
        size_t u = g->order[i], best = 0;
        for (size_t k = 0; k < g->out[u].n; k++)
            if (g->rank[g->out[u].v[k]] > best)
                best = g->rank[g->out[u].v[k]];
        g->rank[u] = best + 1;
    }
    g->sorted = 1;
cleanup:
    free(indeg);
    return rc;
}

size_t fr_graph_add_like(fr_graph *g, size_t like)
{
    size_t i = g->n++;
    g->out = fr_xrealloc(g->out, g->n * sizeof *g->out);
    g->in = fr_xrealloc(g->in, g->n * sizeof *g->in);
    g->order = fr_xrealloc(g->order, g->n * sizeof *g->order);
    g->level = fr_xrealloc(g->level, g->n * sizeof *g->level);
    g->rank = fr_xrealloc(g->rank, g->n * sizeof *g->rank);
    g->out[i] = (adj){0};
    g->in[i] = (adj){0};
    for (size_t k = 0; k < g->in[like].n; k++)
        adj_push(&g->in[i], g->in[like].v[k]);
    g->order[i] = i; /* its deps are earlier in the order: it stays sorted */
    g->level[i] = g->level[like];
    g->rank[i] = g->rank[like];
    return i;
}

size_t fr_graph_size(const fr_graph *g)
{
    return g->n;
}

const size_t *fr_graph_order(const fr_graph *g)
{
    return g->order;
}

size_t fr_graph_level(const fr_graph *g, size_t node)
{
    return g->level[node];
}

size_t fr_graph_rank(const fr_graph *g, size_t node)
{
    return g->rank[node];
}

size_t fr_graph_ndeps(const fr_graph *g, size_t node)
{
    return g->in[node].n;
}

const size_t *fr_graph_dependents(const fr_graph *g, size_t node, size_t *n)
{
    *n = g->out[node].n;
    return g->out[node].v;
}

const size_t *fr_graph_deps(const fr_graph *g, size_t node, size_t *n)
{
    *n = g->in[node].n;
    return g->in[node].v;
}

double fr_graph_longest_path(const fr_graph *g, const double *weight)
{
    double *finish = fr_xcalloc(g->n, sizeof *finish);
    double best = 0;
    for (size_t i = 0; i < g->n; i++) {
        size_t u = g->order[i];
        double start = 0;
        for (size_t k = 0; k < g->in[u].n; k++)
            if (finish[g->in[u].v[k]] > start)
                start = finish[g->in[u].v[k]];
        finish[u] = start + weight[u];
        if (finish[u] > best)
            best = finish[u];
    }
    free(finish);
    return best;
}

int fr_graph_from_workflow(const fr_workflow *wf, fr_graph **out, fr_error *err)
{
    fr_graph *g = fr_graph_new(wf->ntasks);
    size_t *cycle = NULL, ncycle = 0;
    for (size_t t = 0; t < wf->ntasks; t++)
        for (size_t d = 0; d < wf->tasks[t].ndeps; d++)
            fr_graph_add_edge(g, wf->tasks[t].dep_index[d], t);
    int rc = fr_graph_sort(g, &cycle, &ncycle);
    if (rc == FR_ECYCLE) {
        fr_buf b;
        fr_buf_init(&b, 0);
        for (size_t i = 0; i < ncycle; i++)
            fr_buf_printf(&b, "%s -> ", wf->tasks[cycle[i]].name);
        fr_buf_puts(&b, wf->tasks[cycle[0]].name);
        const fr_task_spec *first = &wf->tasks[cycle[0]];
        fr_error_set(err, FR_ECYCLE, first->file, first->line, "dependency cycle: %s",
                     fr_buf_str(&b));
        fr_buf_close(&b);
        goto cleanup;
    }
    *out = g;
    g = NULL;
cleanup:
    free(cycle);
    fr_graph_free(g);
    return rc;
}
