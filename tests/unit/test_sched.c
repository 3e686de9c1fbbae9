/* Scheduler state: ready order, slots, and what a failure does downstream. */
#include "engine/sched.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static void test_order_priority_then_longest_path(void **state)
{
    (void)state;
    /* 0: short branch; 1 -> 2 -> 3: long branch; 4: high priority, short. */
    fr_graph *g = fr_graph_new(5);
    fr_graph_add_edge(g, 1, 2);
    fr_graph_add_edge(g, 2, 3);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int prio[5] = {5, 5, 5, 5, 9};
    int cap[1] = {1};
    fr_sched *s = fr_sched_new(g, prio, 1, cap);
    assert_int_equal(fr_sched_ready(s), 3);
    size_t t;
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 4); /* priority first */
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 1); /* then the head of the longest remaining path */
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 0);
    assert_false(fr_sched_pop(s, &t));
    /* A popped task that could not be placed goes back in order. */
    fr_sched_requeue(s, 0);
    fr_sched_requeue(s, 1);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 1);
    fr_sched_free(s);
    fr_graph_free(g);
}

static void test_slots_never_exceed_capacity(void **state)
{
    (void)state;
    fr_graph *g = fr_graph_new(1);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[2] = {3, 1};
    fr_sched *s = fr_sched_new(g, NULL, 2, cap);
    assert_int_equal(fr_sched_total_free(s), 4);
    for (int i = 0; i < 3; i++)
        assert_true(fr_sched_take_slot(s, 0));
    assert_false(fr_sched_take_slot(s, 0));
    assert_int_equal(fr_sched_in_flight(s, 0), 3);
    assert_int_equal(fr_sched_free_slots(s, 0), 0);
    fr_sched_release_slot(s, 0);
    assert_true(fr_sched_take_slot(s, 0));
    assert_int_equal(fr_sched_peak(s, 0), 3);
    assert_true(fr_sched_take_slot(s, 1));
    assert_false(fr_sched_take_slot(s, 1));
    assert_int_equal(fr_sched_total_free(s), 0);
    fr_sched_free(s);
    fr_graph_free(g);
}

/* The cap the file descriptors set over all endpoints: 1000 slots on two
 * endpoints, 464 transfers allowed (ulimit -n 1024), never more in use, and
 * free counts that never promise more. Lowering it below what is in use
 * takes nothing back but admits nothing until enough are released. */
static void test_total_cap_bounds_every_endpoint(void **state)
{
    (void)state;
    fr_graph *g = fr_graph_new(1);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[2] = {1000, 1000};
    fr_sched *s = fr_sched_new(g, NULL, 2, cap);
    fr_sched_set_total_cap(s, 464);
    assert_int_equal(fr_sched_total_cap(s), 464);
    assert_int_equal(fr_sched_total_free(s), 464);
    assert_int_equal(fr_sched_free_slots(s, 0), 464);
    int taken = 0;
    for (int i = 0; i < 2000; i++)
        taken += fr_sched_take_slot(s, (size_t)(i % 2));
    assert_int_equal(taken, 464);
    assert_int_equal(fr_sched_in_flight(s, 0) + fr_sched_in_flight(s, 1), 464);
    assert_int_equal(fr_sched_total_free(s), 0);
    assert_int_equal(fr_sched_free_slots(s, 0), 0);
    assert_int_equal(fr_sched_free_slots(s, 1), 0);
    assert_int_equal(fr_sched_capacity(s, 0), 1000); /* the endpoint's own, as reported */
    fr_sched_set_total_cap(s, 100);                  /* EMFILE seen: fewer at once */
    for (int i = 0; i < 364; i++)
        fr_sched_release_slot(s, (size_t)(i % 2));
    assert_int_equal(fr_sched_total_free(s), 0);
    assert_false(fr_sched_take_slot(s, 0));
    fr_sched_release_slot(s, 0);
    assert_int_equal(fr_sched_total_free(s), 1);
    assert_true(fr_sched_take_slot(s, 1));
    fr_sched_set_total_cap(s, 0); /* no cap: the endpoints' own slots */
    assert_int_equal(fr_sched_total_free(s), 2000 - 100);
    fr_sched_free(s);
    fr_graph_free(g);
}

static size_t skipped[8], causes[8], nskipped;

static void on_skip(void *ud, size_t task, size_t cause)
{
    (void)ud;
    skipped[nskipped] = task;
    causes[nskipped++] = cause;
}

static void test_failure_skips_dependents_only(void **state)
{
    (void)state;
    /* 0 -> 1 -> 2; 0 -> 3; 4 independent; 5 depends on 4 and 1. */
    fr_graph *g = fr_graph_new(6);
    fr_graph_add_edge(g, 0, 1);
    fr_graph_add_edge(g, 1, 2);
    fr_graph_add_edge(g, 0, 3);
    fr_graph_add_edge(g, 4, 5);
    fr_graph_add_edge(g, 1, 5);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[1] = {2};
    fr_sched *s = fr_sched_new(g, NULL, 1, cap);
    size_t t;
    nskipped = 0;
    assert_true(fr_sched_pop(s, &t));
    assert_true(fr_sched_pop(s, &t));
    fr_sched_finish(s, 0, FR_TASK_OK, on_skip, NULL);
    assert_int_equal(fr_sched_state(s, 1), FR_TASK_READY);
    assert_int_equal(fr_sched_state(s, 3), FR_TASK_READY);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 1); /* longer remaining path than 3 */
    fr_sched_finish(s, 1, FR_TASK_FAILED, on_skip, NULL);
    assert_int_equal(nskipped, 2);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_SKIPPED);
    assert_int_equal(fr_sched_state(s, 5), FR_TASK_SKIPPED);
    assert_int_equal(causes[0], 1);
    assert_int_equal(causes[1], 1);
    /* The independent branch goes on. */
    assert_int_equal(fr_sched_state(s, 3), FR_TASK_READY);
    fr_sched_finish(s, 4, FR_TASK_OK, on_skip, NULL);
    assert_int_equal(fr_sched_state(s, 5), FR_TASK_SKIPPED);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 3);
    fr_sched_finish(s, 3, FR_TASK_OK, on_skip, NULL);
    assert_int_equal(fr_sched_unfinished(s), 0);
    fr_sched_free(s);
    fr_graph_free(g);
}

static void test_join_waits_for_all_deps(void **state)
{
    (void)state;
    fr_graph *g = fr_graph_new(3);
    fr_graph_add_edge(g, 0, 2);
    fr_graph_add_edge(g, 1, 2);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[1] = {1};
    fr_sched *s = fr_sched_new(g, NULL, 1, cap);
    size_t t;
    assert_true(fr_sched_pop(s, &t));
    fr_sched_finish(s, t, FR_TASK_OK, NULL, NULL);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_PENDING);
    assert_true(fr_sched_pop(s, &t));
    fr_sched_finish(s, t, FR_TASK_OK, NULL, NULL);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_READY);
    fr_sched_free(s);
    fr_graph_free(g);
}

/* Join rules: 0 fails, 1 succeeds. 2 (all_done, deps 0 and 1) runs once
 * both ended; 3 (any_failed, deps 0 and 1) runs because 0 failed; 4
 * (any_failed, dep 1) is skipped because 1 succeeded, and so is 5 (all_ok,
 * dep 4), while 6 (any_failed, dep 4) runs: a skip is not ok. 7 (all_ok,
 * deps 1 and 0) is skipped at once when 0 fails. */
static void test_triggers(void **state)
{
    (void)state;
    fr_graph *g = fr_graph_new(8);
    fr_graph_add_edge(g, 0, 2);
    fr_graph_add_edge(g, 1, 2);
    fr_graph_add_edge(g, 0, 3);
    fr_graph_add_edge(g, 1, 3);
    fr_graph_add_edge(g, 1, 4);
    fr_graph_add_edge(g, 4, 5);
    fr_graph_add_edge(g, 4, 6);
    fr_graph_add_edge(g, 1, 7);
    fr_graph_add_edge(g, 0, 7);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[1] = {8};
    fr_sched *s = fr_sched_new(g, NULL, 1, cap);
    fr_sched_set_trigger(s, 2, FR_TRIGGER_ALL_DONE);
    fr_sched_set_trigger(s, 3, FR_TRIGGER_ANY_FAILED);
    fr_sched_set_trigger(s, 4, FR_TRIGGER_ANY_FAILED);
    fr_sched_set_trigger(s, 6, FR_TRIGGER_ANY_FAILED);
    size_t t;
    nskipped = 0;
    assert_true(fr_sched_pop(s, &t));
    assert_true(fr_sched_pop(s, &t));
    assert_false(fr_sched_pop(s, &t));
    fr_sched_finish(s, 0, FR_TASK_FAILED, on_skip, NULL);
    assert_int_equal(nskipped, 1); /* 7, at once */
    assert_int_equal(skipped[0], 7);
    assert_int_equal(causes[0], 0);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_PENDING); /* waits for 1 */
    assert_int_equal(fr_sched_state(s, 3), FR_TASK_PENDING);
    fr_sched_finish(s, 1, FR_TASK_OK, on_skip, NULL);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_READY);
    assert_int_equal(fr_sched_state(s, 3), FR_TASK_READY);
    assert_int_equal(fr_sched_state(s, 4), FR_TASK_SKIPPED);
    assert_int_equal(fr_sched_state(s, 5), FR_TASK_SKIPPED);
    assert_int_equal(fr_sched_state(s, 6), FR_TASK_READY);
    assert_int_equal(nskipped, 3);
    assert_int_equal(skipped[1], 4);
    assert_int_equal(causes[1], 1); /* the last dep to end, which succeeded */
    assert_int_equal(skipped[2], 5);
    assert_int_equal(causes[2], 4);
    for (int k = 0; k < 3; k++) {
        assert_true(fr_sched_pop(s, &t));
        fr_sched_finish(s, t, FR_TASK_OK, on_skip, NULL);
    }
    assert_false(fr_sched_pop(s, &t));
    assert_int_equal(fr_sched_unfinished(s), 0);
    fr_sched_free(s);
    fr_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_priority_then_longest_path),
        cmocka_unit_test(test_slots_never_exceed_capacity),
        cmocka_unit_test(test_total_cap_bounds_every_endpoint),
        cmocka_unit_test(test_failure_skips_dependents_only),
        cmocka_unit_test(test_join_waits_for_all_deps),
        cmocka_unit_test(test_triggers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
