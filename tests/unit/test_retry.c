/* engine/retry: which failures are worth another try, how long a retry
 * waits (exponential backoff with full jitter, never sooner than the
 * server's Retry-After), when a task asks the policy for another endpoint
 * and when it gives up. Pure functions: no loop, no clock. */
#include "engine/retry.h"

#include "engine/util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

/* The backoff's first bound (the 250 ms base doubled once per attempt on
 * the endpoint) and its cap, as a user sees them in the waits. */
#define FIRST_BOUND_MS 500.0
#define MAX_BOUND_MS   8000.0

/* A failure of `rc` with HTTP `status` and no Retry-After. */
static fr_failure failure(int rc, long status)
{
    return (fr_failure){.rc = rc, .status = status, .retry_after_s = -1, .msg = "it failed"};
}

/* A task on its first attempt, first on this endpoint, with two retries
 * there, a usable endpoint, the clock at 1 s and no deadline. */
static fr_retry_state first_try(void)
{
    return (fr_retry_state){.attempts = 1,
                            .ep_attempts = 1,
                            .retries = 2,
                            .ep_usable = true,
                            .now_ms = 1000,
                            .deadline_ms = 0,
                            .jitter = 0.5};
}

static void test_retryable_codes(void **state)
{
    (void)state;
    const int yes[] = {FR_ECONNECT, FR_ETIMEDOUT, FR_ETRUNCATED, FR_EIO, FR_EPROTO, FR_ERETRY};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(fr_retry_retryable(yes[i], 0));
    const int no[] = {FR_OK,      FR_EQUALITY, FR_EFINISH, FR_ETOOBIG, FR_ECANCELED,
                      FR_EBUDGET, FR_ECONFIG,  FR_EPOLICY, FR_EINVAL};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(fr_retry_retryable(no[i], 0));
}

static void test_retryable_statuses(void **state)
{
    (void)state;
    const long yes[] = {408, 409, 425, 429, 500, 502, 503, 504};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(fr_retry_retryable(FR_EHTTP, yes[i]));
    const long no[] = {400, 401, 403, 404, 413, 422};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(fr_retry_retryable(FR_EHTTP, no[i]));
}

static void test_quota_exhausted(void **state)
{
    (void)state;
    assert_true(fr_retry_quota_exhausted(429, "{\"error\":{\"code\":\"insufficient_quota\"}}"));
    assert_true(fr_retry_quota_exhausted(429, "You exceeded your current quota"));
    assert_true(fr_retry_quota_exhausted(429, "monthly spending limit reached"));
    assert_true(fr_retry_quota_exhausted(429, "check your billing details"));
    /* A plain rate limit passes with time; so does any other status. */
    assert_false(fr_retry_quota_exhausted(429, "rate limit reached, slow down"));
    assert_false(fr_retry_quota_exhausted(429, NULL));
    assert_false(fr_retry_quota_exhausted(403, "quota"));
    assert_false(fr_retry_quota_exhausted(500, "insufficient_quota"));
}

static void test_gives_up_at_the_cap(void **state)
{
    (void)state;
    fr_retry_state s = first_try();
    s.attempts = FR_MAX_ATTEMPTS - 1;
    fr_failure f = failure(FR_ETIMEDOUT, 0);
    assert_int_not_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_GIVE_UP);
    s.attempts = FR_MAX_ATTEMPTS;
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_GIVE_UP);
    /* Whatever the error: the cap ends ping-pong between endpoints too. */
    f = failure(FR_EQUALITY, 0);
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_GIVE_UP);
}

static void test_policy_retry_escalates_when_spent(void **state)
{
    (void)state;
    fr_failure f = failure(FR_ERETRY, 0);
    fr_retry_state s = first_try();
    /* Retries left here: the same endpoint again. */
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_SAME);
    /* None left (the first try plus two retries): escalate. */
    s.ep_attempts = 3;
    fr_retry_decision d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_string_equal(d.reason, "quality");
}

static void test_quality_and_finish_go_elsewhere(void **state)
{
    (void)state;
    fr_retry_state s = first_try();
    fr_failure f = failure(FR_EQUALITY, 0);
    fr_retry_decision d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_string_equal(d.reason, "quality");
    assert_false(d.past_deadline);

    f = failure(FR_EFINISH, 0);
    f.finish_outcome = "truncated";
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_string_equal(d.reason, "truncated");
    f.finish_outcome = "refused";
    assert_string_equal(fr_retry_decide(&f, &s).reason, "refused");
    /* Without an outcome, a finish failure counts as a quality one. */
    f.finish_outcome = NULL;
    assert_string_equal(fr_retry_decide(&f, &s).reason, "quality");
}

static void test_backoff_bounds(void **state)
{
    (void)state;
    fr_failure f = failure(FR_ETIMEDOUT, 0);
    fr_retry_state s = first_try();
    s.jitter = 0;
    fr_retry_decision d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_SAME);
    assert_true(d.delay_ms >= 0);
    assert_true(d.delay_ms <= 0.001); /* full jitter reaches down to no wait */
    s.jitter = 1;
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_SAME);
    assert_float_equal(d.delay_ms, FIRST_BOUND_MS, 0.001);
    /* The bound doubles with each attempt on the endpoint, up to its cap. */
    s.ep_attempts = 2;
    assert_float_equal(fr_retry_decide(&f, &s).delay_ms, 2 * FIRST_BOUND_MS, 0.001);
    s.retries = 20;
    s.ep_attempts = 9;
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_SAME);
    assert_float_equal(d.delay_ms, MAX_BOUND_MS, 0.001);
    s.jitter = 0.25;
    d = fr_retry_decide(&f, &s);
    assert_true(d.delay_ms > 0 && d.delay_ms < MAX_BOUND_MS);
}

static void test_never_before_retry_after(void **state)
{
    (void)state;
    fr_failure f = failure(FR_EHTTP, 429);
    f.retry_after_s = 3;
    fr_retry_state s = first_try();
    for (double j = 0; j <= 1.0; j += 0.5) {
        s.jitter = j;
        fr_retry_decision d = fr_retry_decide(&f, &s);
        assert_int_equal(d.kind, FR_RETRY_SAME);
        assert_true(d.delay_ms >= 3000 + FR_RETRY_AFTER_MARGIN_MS);
    }
    /* A Retry-After shorter than the backoff leaves the backoff alone. */
    f.retry_after_s = 0.1;
    s.jitter = 1;
    assert_float_equal(fr_retry_decide(&f, &s).delay_ms, FIRST_BOUND_MS, 0.001);
    /* Retry-After: 0 still waits the margin. */
    f.retry_after_s = 0;
    s.jitter = 0;
    assert_true(fr_retry_decide(&f, &s).delay_ms >= FR_RETRY_AFTER_MARGIN_MS);
}

static void test_past_deadline(void **state)
{
    (void)state;
    fr_failure f = failure(FR_EHTTP, 503);
    f.retry_after_s = 30;
    fr_retry_state s = first_try();
    s.deadline_ms = s.now_ms + 10000; /* the task times out in 10 s */
    fr_retry_decision d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_true(d.past_deadline);
    assert_true(d.delay_ms >= 30000);
    /* A wait that ends before the deadline is kept. */
    f.retry_after_s = 2;
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_SAME);
    assert_false(d.past_deadline);
    /* No deadline (a plan): never past it, however long the wait. */
    f.retry_after_s = 3600;
    s.deadline_ms = 0;
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_SAME);
    assert_false(d.past_deadline);
}

static void test_spent_endpoint_goes_elsewhere(void **state)
{
    (void)state;
    fr_retry_state s = first_try();
    /* The endpoint was disabled by this very failure. */
    fr_failure f = failure(FR_EHTTP, 401);
    s.ep_usable = false;
    fr_retry_decision d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_string_equal(d.reason, "error");
    assert_false(d.past_deadline);
    /* A retryable error on an unusable endpoint moves on too. */
    f = failure(FR_ECONNECT, 0);
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_OTHER);
    /* An exhausted quota does not pass with time. */
    s.ep_usable = true;
    f = failure(FR_EHTTP, 429);
    f.msg = "insufficient_quota";
    f.retry_after_s = 1;
    d = fr_retry_decide(&f, &s);
    assert_int_equal(d.kind, FR_RETRY_OTHER);
    assert_string_equal(d.reason, "error");
    /* Nor does an error no retry cures, or retries spent on the endpoint. */
    f = failure(FR_EHTTP, 400);
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_OTHER);
    f = failure(FR_ETIMEDOUT, 0);
    s.ep_attempts = 3;
    assert_int_equal(fr_retry_decide(&f, &s).kind, FR_RETRY_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retryable_codes),
        cmocka_unit_test(test_retryable_statuses),
        cmocka_unit_test(test_quota_exhausted),
        cmocka_unit_test(test_gives_up_at_the_cap),
        cmocka_unit_test(test_policy_retry_escalates_when_spent),
        cmocka_unit_test(test_quality_and_finish_go_elsewhere),
        cmocka_unit_test(test_backoff_bounds),
        cmocka_unit_test(test_never_before_retry_after),
        cmocka_unit_test(test_past_deadline),
        cmocka_unit_test(test_spent_endpoint_goes_elsewhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
