/* engine/endpoint: the run's endpoints as they are at run time. Keys come
 * from the environment and never show in a message; a refused key or an
 * exhausted quota disables an endpoint; overload and connection failures
 * cool it down (for the server's Retry-After, or doubling per failure up to
 * a minute); repeated connection failures make it unreachable; a success
 * restores its health. Times are clock milliseconds passed in: no clock. */
#include "engine/endpoint.h"

#include "engine/retry.h"
#include "engine/util/err.h"
#include "engine/util/redact.h"
#include "support/engine_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define KEY "sk-unit-endpoint-0123456789abcdef"

static fr_workflow *g_wf;
static size_t g_local, g_cloud;

static int setup(void **state)
{
    (void)state;
    g_wf = engine_load();
    g_local = engine_ep(g_wf, "local");
    g_cloud = engine_ep(g_wf, "cloud");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fr_workflow_free(g_wf);
    fr_redact_clear();
    return 0;
}

/* The run-time endpoints of the fixture with the cloud key set. */
static fr_endpoints *with_key(void)
{
    setenv(ENGINE_KEY_ENV, KEY, 1);
    fr_endpoints *eps = fr_endpoints_new(g_wf, false);
    assert_int_equal(fr_endpoints_count(eps), 2);
    return eps;
}

static void test_key_from_environment(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    assert_string_equal(fr_ep_key(eps, g_cloud), KEY);
    assert_null(fr_ep_key(eps, g_local)); /* no api_key_env: no key */
    assert_true(fr_ep_usable(eps, g_cloud));
    assert_null(fr_ep_unusable(eps, g_cloud));
    assert_string_equal(fr_ep_model(eps, g_cloud), "big");
    assert_string_equal(fr_ep_url(eps, g_cloud), "https://api.example.com/v1");
    assert_int_equal(fr_ep_protocol(eps, g_cloud), FR_PROTO_OPENAI);
    assert_ptr_equal(fr_ep_spec(eps, g_cloud), &g_wf->endpoints[g_cloud]);
    /* The key read is registered: no log or report repeats it. */
    char *clean = fr_redact("header " KEY);
    assert_string_equal(clean, "header " FR_REDACTED);
    free(clean);
    fr_endpoints_free(eps);
}

static void test_unset_key(void **state)
{
    (void)state;
    unsetenv(ENGINE_KEY_ENV);
    fr_endpoints *eps = fr_endpoints_new(g_wf, false);
    assert_false(fr_ep_usable(eps, g_cloud));
    assert_non_null(strstr(fr_ep_unusable(eps, g_cloud), ENGINE_KEY_ENV));
    assert_non_null(strstr(fr_ep_unusable(eps, g_cloud), "not set"));
    assert_null(fr_ep_key(eps, g_cloud));
    assert_true(fr_ep_usable(eps, g_local));
    fr_ep_stats st = fr_ep_stats_of(eps, g_cloud);
    assert_false(st.usable);
    assert_string_equal(st.unusable, fr_ep_unusable(eps, g_cloud));
    fr_endpoints_free(eps);
    /* An empty variable is as good as none. */
    setenv(ENGINE_KEY_ENV, "", 1);
    eps = fr_endpoints_new(g_wf, false);
    assert_false(fr_ep_usable(eps, g_cloud));
    fr_endpoints_free(eps);
}

static void test_standin_reads_no_key(void **state)
{
    (void)state;
    unsetenv(ENGINE_KEY_ENV);
    fr_endpoints *eps = fr_endpoints_new(g_wf, true);
    assert_true(fr_ep_usable(eps, g_cloud)); /* a rehearsal needs no key */
    assert_null(fr_ep_key(eps, g_cloud));
    assert_string_equal(fr_ep_model(eps, g_cloud), "cloud");
    assert_null(fr_ep_url(eps, g_cloud));
    fr_ep_set_url(eps, g_cloud, "http://127.0.0.1:4000/v1");
    assert_string_equal(fr_ep_url(eps, g_cloud), "http://127.0.0.1:4000/v1");
    fr_endpoints_free(eps);
}

static void test_refused_key_disables(void **state)
{
    (void)state;
    const long statuses[] = {401, 403};
    for (size_t i = 0; i < 2; i++) {
        fr_endpoints *eps = with_key();
        fr_ep_failed(eps, g_cloud, FR_EHTTP, statuses[i], -1, "invalid key " KEY, 0);
        assert_false(fr_ep_usable(eps, g_cloud));
        const char *why = fr_ep_unusable(eps, g_cloud);
        assert_non_null(strstr(why, "refused"));
        assert_non_null(strstr(why, ENGINE_KEY_ENV));
        assert_null(strstr(why, KEY));
        /* Later failures keep the first reason. */
        fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, -1, "insufficient_quota", 10);
        assert_string_equal(fr_ep_unusable(eps, g_cloud), why);
        fr_endpoints_free(eps);
    }
}

static void test_quota_disables(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, 5, "insufficient_quota for " KEY, 0);
    assert_false(fr_ep_usable(eps, g_cloud));
    assert_non_null(strstr(fr_ep_unusable(eps, g_cloud), "quota"));
    assert_null(strstr(fr_ep_unusable(eps, g_cloud), KEY));
    assert_float_equal(fr_ep_cooldown_until(eps, g_cloud), 0, 0); /* no wait helps */
    fr_endpoints_free(eps);
}

static void test_retry_after_cools_down(void **state)
{
    (void)state;
    const long statuses[] = {429, 503};
    for (size_t i = 0; i < 2; i++) {
        fr_endpoints *eps = with_key();
        fr_ep_failed(eps, g_cloud, FR_EHTTP, statuses[i], 2.5, "slow down", 1000);
        assert_true(fr_ep_usable(eps, g_cloud));
        assert_float_equal(fr_ep_cooldown_until(eps, g_cloud),
                           1000 + 2500 + FR_RETRY_AFTER_MARGIN_MS, 1e-6);
        fr_ep_stats st = fr_ep_stats_of(eps, g_cloud);
        assert_int_equal(st.cooldowns, 1);
        assert_float_equal(st.cooldown_ms, 2500 + FR_RETRY_AFTER_MARGIN_MS, 1e-6);
        fr_endpoints_free(eps);
    }
}

static void test_cooldown_doubles_to_a_minute(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    const double want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    double now = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, -1, "busy", now);
        assert_float_equal(fr_ep_cooldown_until(eps, g_cloud) - now, want[i], 1e-6);
        now = fr_ep_cooldown_until(eps, g_cloud); /* the next try, once it cooled down */
    }
    assert_int_equal(fr_ep_stats_of(eps, g_cloud).cooldowns, 8);
    assert_true(fr_ep_usable(eps, g_cloud));
    /* A success restores it: the next cooldown is the first again. */
    fr_ep_succeeded(eps, g_cloud, 120);
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 503, -1, "busy", now);
    assert_float_equal(fr_ep_cooldown_until(eps, g_cloud) - now, 1000, 1e-6);
    fr_endpoints_free(eps);
}

static void test_failure_while_cooling(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, -1, "busy", 0);
    double until = fr_ep_cooldown_until(eps, g_cloud);
    /* Requests sent before it cooled down fail too: no new evidence. */
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, -1, "busy", 10);
    fr_ep_failed(eps, g_cloud, FR_ECONNECT, 0, -1, "refused", 20);
    assert_float_equal(fr_ep_cooldown_until(eps, g_cloud), until, 0);
    fr_ep_stats st = fr_ep_stats_of(eps, g_cloud);
    assert_int_equal(st.cooldowns, 1);
    assert_int_equal(st.failures, 3);
    /* The next one after the cooldown doubles from the first, not the third. */
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 429, -1, "busy", until);
    assert_float_equal(fr_ep_cooldown_until(eps, g_cloud) - until, 2000, 1e-6);
    fr_endpoints_free(eps);
}

static void test_other_errors_leave_health(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 400, -1, "bad request", 0);
    fr_ep_failed(eps, g_cloud, FR_ETIMEDOUT, 0, -1, "timed out", 0);
    fr_ep_failed(eps, g_cloud, FR_EQUALITY, 0, -1, "weak", 0);
    assert_true(fr_ep_usable(eps, g_cloud));
    assert_float_equal(fr_ep_cooldown_until(eps, g_cloud), 0, 0);
    assert_int_equal(fr_ep_stats_of(eps, g_cloud).failures, 3);
    fr_endpoints_free(eps);
}

static void test_unreachable_after_four(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    double now = 0;
    for (int i = 0; i < 3; i++) {
        fr_ep_failed(eps, g_local, FR_ECONNECT, 0, -1, "Connection refused", now);
        assert_true(fr_ep_usable(eps, g_local));
        assert_true(fr_ep_down(eps, g_local));
        now = fr_ep_cooldown_until(eps, g_local);
    }
    fr_ep_failed(eps, g_local, FR_ECONNECT, 0, -1, "Connection refused", now);
    assert_false(fr_ep_usable(eps, g_local));
    const char *why = fr_ep_unusable(eps, g_local);
    assert_non_null(strstr(why, "unreachable"));
    assert_non_null(strstr(why, "4 connection failures"));
    assert_non_null(strstr(why, "Connection refused"));
    assert_non_null(strstr(why, "http://127.0.0.1:9/v1"));
    fr_ep_stats st = fr_ep_stats_of(eps, g_local);
    assert_int_equal(st.connect_failures, 4);
    assert_string_equal(st.connect_error, "Connection refused");
    fr_endpoints_free(eps);
}

static void test_success_restores_health(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    double now = 0;
    for (int i = 0; i < 3; i++) {
        fr_ep_failed(eps, g_local, FR_ECONNECT, 0, -1, "refused", now);
        now = fr_ep_cooldown_until(eps, g_local);
    }
    fr_ep_succeeded(eps, g_local, 50);
    assert_false(fr_ep_down(eps, g_local));
    /* The count starts again: three more failures leave it usable. */
    for (int i = 0; i < 3; i++) {
        fr_ep_failed(eps, g_local, FR_ECONNECT, 0, -1, "refused", now);
        now = fr_ep_cooldown_until(eps, g_local);
    }
    assert_true(fr_ep_usable(eps, g_local));
    fr_endpoints_free(eps);
}

static void test_p50_over_the_ring(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    assert_float_equal(fr_ep_p50(eps, g_local), -1, 0);
    fr_ep_succeeded(eps, g_local, 30);
    fr_ep_succeeded(eps, g_local, 10);
    fr_ep_succeeded(eps, g_local, 20);
    assert_float_equal(fr_ep_p50(eps, g_local), 20, 0);
    /* The ring keeps the most recent 64: 100 slow ones, then 64 fast ones. */
    for (int i = 0; i < 100; i++)
        fr_ep_succeeded(eps, g_local, 5000);
    for (int i = 0; i < 64; i++)
        fr_ep_succeeded(eps, g_local, 100 + i);
    assert_float_equal(fr_ep_p50(eps, g_local), 132, 0);
    assert_int_equal(fr_ep_stats_of(eps, g_local).successes, 167);
    fr_endpoints_free(eps);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median kept as latencies arrive equals a recount: the last 64 (or
 * fewer) samples sorted afresh, the upper middle one. Random sequences with
 * many repeated values (ties while evicting) and distinct ones, past the
 * window several times over. */
static void test_p50_equals_a_recount(void **state)
{
    (void)state;
    unsigned seed = 14;
    for (int round = 0; round < 40; round++) {
        fr_endpoints *eps = with_key();
        double hist[400];
        int spread = round % 2 ? 7 : 100000; /* ties, or mostly distinct */
        for (size_t i = 0; i < 400; i++) {
            seed = seed * 1103515245u + 12345u;
            hist[i] = (double)((seed >> 8) % (unsigned)spread) / 4.0;
            fr_ep_succeeded(eps, g_local, hist[i]);
            size_t n = i + 1 < 64 ? i + 1 : 64;
            double v[64];
            memcpy(v, &hist[i + 1 - n], n * sizeof *v);
            qsort(v, n, sizeof *v, cmp_double);
            assert_float_equal(fr_ep_p50(eps, g_local), v[n / 2], 0);
        }
        fr_endpoints_free(eps);
    }
}

static void test_stats(void **state)
{
    (void)state;
    fr_endpoints *eps = with_key();
    fr_ep_sent(eps, g_cloud);
    fr_ep_sent(eps, g_cloud);
    fr_ep_sent(eps, g_cloud);
    fr_ep_unsent(eps, g_cloud); /* found no file descriptor */
    fr_ep_succeeded(eps, g_cloud, 10);
    fr_ep_failed(eps, g_cloud, FR_EHTTP, 503, 1, "busy", 0);
    fr_ep_stats st = fr_ep_stats_of(eps, g_cloud);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.successes, 1);
    assert_int_equal(st.connect_failures, 0);
    assert_null(st.connect_error);
    assert_int_equal(st.cooldowns, 1);
    assert_true(st.usable);
    assert_null(st.unusable);
    fr_endpoints_free(eps);
    fr_endpoints_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_from_environment),
        cmocka_unit_test(test_unset_key),
        cmocka_unit_test(test_standin_reads_no_key),
        cmocka_unit_test(test_refused_key_disables),
        cmocka_unit_test(test_quota_disables),
        cmocka_unit_test(test_retry_after_cools_down),
        cmocka_unit_test(test_cooldown_doubles_to_a_minute),
        cmocka_unit_test(test_failure_while_cooling),
        cmocka_unit_test(test_other_errors_leave_health),
        cmocka_unit_test(test_unreachable_after_four),
        cmocka_unit_test(test_success_restores_health),
        cmocka_unit_test(test_p50_over_the_ring),
        cmocka_unit_test(test_p50_equals_a_recount),
        cmocka_unit_test(test_stats),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
