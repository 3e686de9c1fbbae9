/* Budget: reservations keep spend under every cap, whatever the order in
 * which requests start and settle. */
#include "engine/budget.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    fr_budget_add_allowance(b, FR_CAP_MONTH, 0.30);
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
    fr_budget_add_allowance(b, FR_CAP_MONTH, 2.0);
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

/* A ledger of two periods for the tests: each has a cap shared with other
 * runs, of which `others` is spent; leases are granted from what is left,
 * and the period turns when the test says so. */
typedef struct fake_ledger {
    double left[FR_CAP_COUNT];  /* what a lease may still take */
    double spent[FR_CAP_COUNT]; /* what the ledger says is spent */
    int leases[FR_CAP_COUNT];   /* how many times each period was leased */
    bool turn[FR_CAP_COUNT];    /* the period turns at the next ask */
} fake_ledger;

static int fake_lease(void *ud, fr_cap_kind period, double cap, double want, double *granted,
                      fr_error *err)
{
    (void)cap;
    (void)err;
    fake_ledger *l = ud;
    *granted = want < l->left[period] ? want : l->left[period];
    l->left[period] -= *granted;
    l->leases[period]++;
    return FR_OK;
}

static int fake_totals(void *ud, fr_cap_kind period, double *spent, double *used, fr_error *err)
{
    (void)err;
    fake_ledger *l = ud;
    *spent = l->spent[period];
    *used = l->spent[period];
    return FR_OK;
}

static bool fake_turned(void *ud, fr_cap_kind period)
{
    fake_ledger *l = ud;
    bool t = l->turn[period];
    l->turn[period] = false;
    return t;
}

static fr_budget *period_budget(fake_ledger *l, bool month, double monthly, bool day, double daily)
{
    fr_budget *b = fr_budget_new(false, 0, false, 0.8);
    if (month)
        fr_budget_set_period(b, FR_CAP_MONTH, monthly);
    if (day)
        fr_budget_set_period(b, FR_CAP_DAY, daily);
    fr_budget_ledger ledger = {
        .ud = l, .lease = fake_lease, .totals = fake_totals, .turned = fake_turned};
    fr_budget_set_ledger(b, &ledger);
    return b;
}

static fr_endpoint_spec priced(void)
{
    fr_endpoint_spec s = {.name = "cloud", .tier = FR_TIER_CLOUD};
    s.price.set = true;
    s.price.input = 1;
    s.price.output = 1;
    return s;
}

/* A daily cap alone: the run leases shares of the day, a request fits only
 * what the day has left, and the refusal names the daily cap with the
 * day's figures. */
static void test_daily_cap_leases_and_refuses(void **state)
{
    (void)state;
    fake_ledger l = {.left = {[FR_CAP_DAY] = 0.25}, .spent = {[FR_CAP_DAY] = 0.75}};
    fr_budget *b = period_budget(&l, false, 0, true, 1.0);
    fr_endpoint_spec ep = priced();
    assert_true(fr_budget_capped(b));
    assert_true(fr_budget_has_cap(b, FR_CAP_DAY));
    assert_false(fr_budget_has_cap(b, FR_CAP_MONTH));
    fr_admit_ask a = {.endpoint = &ep, .worst = 0.05};
    char *why = NULL;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_FITS);
    assert_int_equal(l.leases[FR_CAP_DAY], 1);
    assert_true(fr_budget_cap(b, FR_CAP_DAY) > 0.099 && fr_budget_cap(b, FR_CAP_DAY) < 0.101);
    fr_budget_reserve(b, 0.05);
    fr_budget_settle(b, 0.05, 0.05);
    a.worst = 0.2; /* 0.25 leased at most: 0.05 spent, 0.2 more fits exactly */
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_FITS);
    fr_budget_reserve(b, 0.2);
    fr_budget_settle(b, 0.2, 0.2);
    a.worst = 0.01;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_NEVER);
    assert_non_null(why);
    assert_non_null(strstr(why, "does not fit the daily cap ($1; $0.7500 spent today)"));
    assert_null(strstr(why, "monthly"));
    free(why);
    fr_budget_free(b);
}

/* Both caps: a request must fit both, and the refusal names the one that
 * is short. */
static void test_month_and_day_together(void **state)
{
    (void)state;
    fake_ledger l = {.left = {[FR_CAP_MONTH] = 5, [FR_CAP_DAY] = 0.1},
                     .spent = {[FR_CAP_MONTH] = 1, [FR_CAP_DAY] = 0.9}};
    fr_budget *b = period_budget(&l, true, 6, true, 1);
    fr_endpoint_spec ep = priced();
    fr_admit_ask a = {.endpoint = &ep, .worst = 0.2};
    char *why = NULL;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_NEVER);
    assert_non_null(strstr(why, "the daily cap ($1; $0.9000 spent today)"));
    free(why);
    why = NULL;
    fr_budget_free(b);
    fake_ledger m = {.left = {[FR_CAP_MONTH] = 0.1, [FR_CAP_DAY] = 5},
                     .spent = {[FR_CAP_MONTH] = 5.9, [FR_CAP_DAY] = 0}};
    b = period_budget(&m, true, 6, true, 10);
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_NEVER);
    assert_non_null(strstr(why, "the monthly cap ($6; $5.9000 spent this month)"));
    free(why);
    fr_budget_free(b);
}

/* Midnight: what the run was allowed of yesterday is not spent today, and
 * what a reservation of yesterday did not cost is no allowance of today;
 * today's share is leased anew. */
static void test_a_new_day_starts_a_new_share(void **state)
{
    (void)state;
    fake_ledger l = {.left = {[FR_CAP_DAY] = 1.0}};
    fr_budget *b = period_budget(&l, false, 0, true, 1.0);
    fr_endpoint_spec ep = priced();
    fr_admit_ask a = {.endpoint = &ep, .worst = 0.3};
    char *why = NULL;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_FITS); /* leases 0.3 */
    fr_budget_reserve(b, 0.3);
    a.worst = 0.01;
    l.left[FR_CAP_DAY] = 0; /* the new day is used up by others */
    l.turn[FR_CAP_DAY] = true;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_WAIT);
    fr_budget_settle(b, 0.3, 0.1); /* yesterday's request cost less */
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_NEVER);
    free(why);
    why = NULL;
    l.left[FR_CAP_DAY] = 0.05; /* today's lease is all it may spend */
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_FITS);
    assert_true(fr_budget_remaining(b, FR_CAP_DAY) < 0.05 + 1e-9);
    fr_budget_free(b);
}

/* An asynchronous ledger (a shared store): a lease asked is answered later. */
typedef struct async_ledger {
    bool asked, answered;
    double grant; /* what the answer grants */
    int leases;   /* lease calls */
} async_ledger;

static int async_lease(void *ud, fr_cap_kind period, double cap, double want, double *granted,
                       fr_error *err)
{
    (void)period;
    (void)cap;
    (void)want;
    (void)err;
    async_ledger *l = ud;
    l->leases++;
    if (l->answered) {
        l->answered = l->asked = false;
        *granted = l->grant;
        return FR_OK;
    }
    l->asked = true;
    return FR_BUDGET_ASKED;
}

static int async_totals(void *ud, fr_cap_kind period, double *spent, double *used, fr_error *err)
{
    (void)ud;
    (void)period;
    (void)spent;
    (void)used;
    return fr_error_set(err, FR_EINVAL, NULL, 0, "not read");
}

/* While its lease is unanswered a request that needs it waits (never
 * refused); the answer lets it in, and a grant too small refuses it then. */
static void test_lease_asked_waits_for_its_answer(void **state)
{
    (void)state;
    async_ledger l = {.grant = 0.5};
    fr_budget *b = fr_budget_new(false, 0, false, 0.8);
    fr_budget_set_period(b, FR_CAP_MONTH, 1.0);
    fr_budget_ledger ledger = {.ud = &l, .lease = async_lease, .totals = async_totals};
    fr_budget_set_ledger(b, &ledger);
    fr_endpoint_spec ep = priced();
    fr_admit_ask a = {.endpoint = &ep, .worst = 0.3};
    char *why = NULL;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_WAIT);
    assert_true(l.asked);
    assert_null(why);
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_WAIT); /* still unanswered */
    l.answered = true;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_FITS);
    fr_budget_reserve(b, 0.3);
    fr_budget_settle(b, 0.3, 0.3);
    a.worst = 0.4; /* 0.2 left of the grant: asks again */
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_WAIT);
    l.grant = 0; /* the cap is gone: the answer grants nothing */
    l.answered = true;
    assert_int_equal(fr_budget_admit(b, &a, &why), FR_ADMIT_NEVER);
    assert_non_null(why);
    assert_non_null(strstr(why, "monthly cap"));
    free(why);
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
        cmocka_unit_test(test_daily_cap_leases_and_refuses),
        cmocka_unit_test(test_month_and_day_together),
        cmocka_unit_test(test_a_new_day_starts_a_new_share),
        cmocka_unit_test(test_lease_asked_waits_for_its_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
