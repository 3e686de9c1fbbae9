/* Graph: order, levels, ranks, longest path and cycles with their path. */
#include "engine/graph.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static size_t position(const fr_graph *g, size_t node)
{
    const size_t *o = fr_graph_order(g);
    for (size_t i = 0; i < fr_graph_size(g); i++)
        if (o[i] == node)
            return i;
    fail_msg("node %zu not in order", node);
    return 0;
}

static void test_diamond_order_levels_ranks(void **state)
{
    (void)state;
    /* 0 -> {1, 2} -> 3, and a lone node 4. */
    fr_graph *g = fr_graph_new(5);
    fr_graph_add_edge(g, 0, 1);
    fr_graph_add_edge(g, 0, 2);
    fr_graph_add_edge(g, 1, 3);
    fr_graph_add_edge(g, 2, 3);
    fr_graph_add_edge(g, 2, 3); /* duplicate edge is kept once */
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    assert_true(position(g, 0) < position(g, 1));
    assert_true(position(g, 0) < position(g, 2));
    assert_true(position(g, 2) < position(g, 3));
    assert_int_equal(fr_graph_level(g, 0), 0);
    assert_int_equal(fr_graph_level(g, 3), 2);
    assert_int_equal(fr_graph_level(g, 4), 0);
    assert_int_equal(fr_graph_rank(g, 0), 3);
    assert_int_equal(fr_graph_rank(g, 3), 1);
    assert_int_equal(fr_graph_rank(g, 4), 1);
    assert_int_equal(fr_graph_ndeps(g, 3), 2);
    size_t n;
    fr_graph_dependents(g, 0, &n);
    assert_int_equal(n, 2);
    double w[5] = {1, 5, 2, 1, 4};
    assert_true(fr_graph_longest_path(g, w) == 7.0); /* 0 -> 1 -> 3 */
    fr_graph_free(g);
}

static void test_cycle_reports_whole_path(void **state)
{
    (void)state;
    /* 0 feeds 1 feeds 2 feeds 0; 3 depends on the cycle, 4 is free. */
    fr_graph *g = fr_graph_new(5);
    fr_graph_add_edge(g, 0, 1);
    fr_graph_add_edge(g, 1, 2);
    fr_graph_add_edge(g, 2, 0);
    fr_graph_add_edge(g, 2, 3);
    size_t *cycle = NULL, n = 0;
    assert_int_equal(fr_graph_sort(g, &cycle, &n), FR_ECYCLE);
    assert_int_equal(n, 3);
    /* Each node feeds the next, and the last feeds the first. */
    for (size_t i = 0; i < n; i++) {
        size_t from = cycle[i], to = cycle[(i + 1) % n], nd;
        const size_t *deps = fr_graph_deps(g, to, &nd);
        int found = 0;
        for (size_t k = 0; k < nd; k++)
            found |= deps[k] == from;
        assert_true(found);
    }
    free(cycle);
    fr_graph_free(g);
}

static void test_self_loop_is_a_cycle(void **state)
{
    (void)state;
    fr_graph *g = fr_graph_new(2);
    fr_graph_add_edge(g, 1, 1);
    size_t *cycle = NULL, n = 0;
    assert_int_equal(fr_graph_sort(g, &cycle, &n), FR_ECYCLE);
    assert_int_equal(n, 1);
    assert_int_equal(cycle[0], 1);
    free(cycle);
    fr_graph_free(g);
}

static void test_long_chain(void **state)
{
    (void)state;
    enum { N = 10000 };
    fr_graph *g = fr_graph_new(N);
    for (size_t i = 1; i < N; i++)
        fr_graph_add_edge(g, i - 1, i);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    assert_int_equal(fr_graph_rank(g, 0), N);
    assert_int_equal(fr_graph_level(g, N - 1), N - 1);
    fr_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_diamond_order_levels_ranks),
        cmocka_unit_test(test_cycle_reports_whole_path),
        cmocka_unit_test(test_self_loop_is_a_cycle),
        cmocka_unit_test(test_long_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
