/* engine/util/fixed: fr_fixed writes the bytes of snprintf's "%.*f" (or
 * leaves the value to it), fr_fixed_int those of "%lld", over random and
 * edge values: any difference from printf fails. */
#include "engine/util/fixed.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

static uint64_t rng_state;

static uint64_t next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* A double as the summary and money see them: latencies, seconds, dollars,
 * halves and other short binary fractions (ties), and any bit pattern. */
static double random_value(void)
{
    double v;
    uint64_t bits;
    switch (next() % 7) {
    case 0:
        bits = next();
        memcpy(&v, &bits, sizeof v);
        return v;
    case 1:
        return (double)(next() % 2000000) / 1000.0;
    case 2:
        return (double)(next() % 20000) * 0.5 - 5000;
    case 3:
        return ldexp((double)(next() >> 11), -(int)(next() % 80));
    case 4:
        return (double)(next() % 100000) / 100.0 + (double)(next() % 3) * 0.005;
    case 5:
        return nextafter((double)(next() % 1000000) / 1e4, (next() & 1) ? 0 : 1e300);
    default:
        return (double)(next() % 1000000000) / 1e6 * ((next() & 1) ? 1 : -1);
    }
}

/* fr_fixed of `v` is printf's text, or 0 and the value is printf's to write. */
static void assert_as_printf(double v, int decimals, size_t *written)
{
    char got[FR_FIXED_LEN], want[512];
    size_t n = fr_fixed(got, v, decimals);
    if (n == 0)
        return;
    snprintf(want, sizeof want, "%.*f", decimals, v);
    if (strcmp(got, want) != 0)
        print_error("fr_fixed(%a, %d) = %s, printf %s\n", v, decimals, got, want);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
    (*written)++;
}

static void test_fixed_as_printf(void **state)
{
    (void)state;
    rng_state = 0x9e3779b97f4a7c15ull;
    size_t written = 0;
    for (int i = 0; i < 1000000; i++)
        assert_as_printf(random_value(), (int)(next() % 5), &written);
    assert_true(written > 800000); /* most values are written, not left */
    static const double edges[] = {0.0,
                                   -0.0,
                                   0.4999999999999999,
                                   0.5000000000000001,
                                   -0.3,
                                   0.005,
                                   0.015,
                                   1.005,
                                   0.00005,
                                   999.4999999999999,
                                   999.5000000000001,
                                   999.9999,
                                   9.999999999999998e14,
                                   123456789012.34567,
                                   5e-324,
                                   -1e-300,
                                   2.2250738585072014e-308};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        for (int d = 0; d <= 4; d++)
            assert_as_printf(edges[i], d, &written);
}

static void test_fixed_leaves_what_printf_decides(void **state)
{
    (void)state;
    char b[FR_FIXED_LEN];
    assert_int_equal(fr_fixed(b, 0.5, 0), 0); /* a tie: the rounding mode's */
    assert_int_equal(fr_fixed(b, 2.5, 0), 0);
    assert_int_equal(fr_fixed(b, 0.125, 2), 0);
    assert_int_equal(fr_fixed(b, 1e15, 0), 0);
    assert_int_equal(fr_fixed(b, NAN, 2), 0);
    assert_int_equal(fr_fixed(b, INFINITY, 2), 0);
    assert_int_equal(fr_fixed(b, 1.0, 5), 0);
    assert_int_equal(fr_fixed(b, 1.0, -1), 0);
    assert_int_equal(fr_fixed(b, 217.128566, 0), 3);
    assert_string_equal(b, "217");
    assert_int_equal(fr_fixed(b, -0.0, 2), 5);
    assert_string_equal(b, "-0.00");
}

static void test_fixed_int_as_printf(void **state)
{
    (void)state;
    rng_state = 12345;
    char got[FR_FIXED_LEN], want[32];
    static const long long edges[] = {0, -1, 1, 9, 10, LLONG_MAX, LLONG_MIN, LLONG_MIN + 1};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        snprintf(want, sizeof want, "%lld", edges[i]);
        assert_int_equal(fr_fixed_int(got, edges[i]), strlen(want));
        assert_string_equal(got, want);
    }
    for (int i = 0; i < 200000; i++) {
        long long v = (long long)(next() >> (next() % 64));
        if (next() & 1)
            v = -v;
        snprintf(want, sizeof want, "%lld", v);
        assert_int_equal(fr_fixed_int(got, v), strlen(want));
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_as_printf),
        cmocka_unit_test(test_fixed_leaves_what_printf_decides),
        cmocka_unit_test(test_fixed_int_as_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
