/* Budget: reservations keep spend under every cap, whatever the order in
 * which requests start and settle. */
#include "engine/budget.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static void test_no_caps(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(false, 0, false, 0);
    assert_false(fr_budget_capped(b));
    assert_false(fr_budget_has_cap(b, FR_CAP_RUN));
    assert_false(fr_budget_has_cap(b, FR_CAP_MONTH));
    assert_true(fr_budget_fits(b, 1e9));
    assert_true(fr_budget_remaining(b, FR_CAP_RUN) < 0);
    assert_int_equal(fr_budget_next_alert(b), -1);
    fr_budget_free(b);
}

static void test_reservations_hold_the_cap(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(true, 1.0, false, 0.8);
    /* Fifty requests of a worst case of 0.03 start at once: 33 fit. */
    int started = 0;
    for (int i = 0; i < 50; i++)
        if (fr_budget_fits(b, 0.03)) {
            fr_budget_reserve(b, 0.03);
            started++;
        }
    assert_int_equal(started, 33);
    assert_true(fr_budget_reserved(b) <= 1.0);
    /* They settle far below their worst case: more fit again. */
    for (int i = 0; i < started; i++)
        fr_budget_settle(b, 0.03, 0.01);
    assert_true(fr_budget_spent(b) > 0.329 && fr_budget_spent(b) < 0.331);
    assert_true(fr_budget_fits(b, 0.03));
    assert_true(fr_budget_remaining(b, FR_CAP_RUN) > 0.66);
    fr_budget_free(b);
}

static void test_may_fit_waits_for_reservations(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(true, 0.10, false, 0);
    fr_budget_reserve(b, 0.08);
    assert_false(fr_budget_fits(b, 0.05));
    assert_true(fr_budget_may_fit(b, 0.05)); /* the 0.08 may settle lower */
    fr_budget_settle(b, 0.08, 0.08);
    assert_false(fr_budget_may_fit(b, 0.05)); /* spent: it never will */
    assert_true(fr_budget_fits(b, 0.02));
    fr_budget_free(b);
}

static void test_month_allowance_and_exact_fill(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(true, 5.0, true, 0);
    fr_budget_add_allowance(b, 0.30);
    assert_true(fr_budget_capped(b));
    assert_true(fr_budget_fits(b, 0.1 + 0.2)); /* fills it exactly despite rounding */
    assert_false(fr_budget_fits(b, 0.3000001));
    fr_budget_free(b);
    b = fr_budget_new(false, 0, true, 0); /* nothing left this month */
    assert_true(fr_budget_capped(b));
    assert_false(fr_budget_fits(b, 0.0001));
    assert_true(fr_budget_fits(b, 0)); /* local work costs nothing */
    fr_budget_free(b);
}

/* A cap of 0 is a cap: nothing paid fits it, free work does, and it is
 * reported as a cap of 0, not as none. */
static void test_zero_is_a_cap(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(true, 0, false, 0.8);
    assert_true(fr_budget_capped(b));
    assert_true(fr_budget_has_cap(b, FR_CAP_RUN));
    assert_false(fr_budget_fits(b, 0.000001));
    assert_false(fr_budget_may_fit(b, 0.000001));
    assert_true(fr_budget_fits(b, 0));
    assert_true(fr_budget_cap(b, FR_CAP_RUN) == 0);
    assert_true(fr_budget_remaining(b, FR_CAP_RUN) == 0);
    fr_budget_settle(b, 0, 0);
    assert_int_equal(fr_budget_next_alert(b), -1); /* nothing to warn about */
    fr_budget_free(b);
}

static void test_alerts_once_per_cap(void **state)
{
    (void)state;
    fr_budget *b = fr_budget_new(true, 1.0, true, 0.5);
    fr_budget_add_allowance(b, 2.0);
    fr_budget_reserve(b, 0.6);
    assert_int_equal(fr_budget_next_alert(b), -1); /* reserved is not spent */
    fr_budget_settle(b, 0.6, 0.6);
    assert_int_equal(fr_budget_next_alert(b), FR_CAP_RUN);
    assert_int_equal(fr_budget_next_alert(b), -1);
    /* Half of this run's monthly allowance is not half of the month: the
     * monthly alert reads the ledger, in engine/run. */
    fr_budget_reserve(b, 0.5);
    fr_budget_settle(b, 0.5, 0.5);
    assert_int_equal(fr_budget_next_alert(b), -1);
    fr_budget_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_caps),
        cmocka_unit_test(test_reservations_hold_the_cap),
        cmocka_unit_test(test_may_fit_waits_for_reservations),
        cmocka_unit_test(test_month_allowance_and_exact_fill),
        cmocka_unit_test(test_zero_is_a_cap),
        cmocka_unit_test(test_alerts_once_per_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
