/* Money as printed: a cost above zero never reads as zero, and a cap reads
 * as it was given. */
#include "engine/util/money.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_costs_never_read_as_zero(void **state)
{
    (void)state;
    char b[FR_USD_LEN];
    assert_string_equal(fr_usd_cost(b, 0), "$0");
    assert_string_equal(fr_usd_cost(b, 0.00002), "$0.00002");
    assert_string_equal(fr_usd_cost(b, 0.0000123456), "$0.00001235");
    assert_string_equal(fr_usd_cost(b, 0.009), "$0.0090");
    assert_string_equal(fr_usd_cost(b, 0.00999999), "$0.0100");
    assert_string_equal(fr_usd_cost(b, 0.04), "$0.0400");
    assert_string_equal(fr_usd_cost(b, 1.392), "$1.3920");
    assert_string_equal(fr_usd_cost(b, 1234.5), "$1234.5000");
    assert_string_equal(fr_usd_cost(b, 3e-7), "$0.0000003");
    assert_string_equal(fr_usd_cost(b, 2e-14), "$2.000e-14");
    assert_string_equal(fr_usd_cost(b, -0.00002), "-$0.00002");
}

static void test_caps_read_as_given(void **state)
{
    (void)state;
    char b[FR_USD_LEN];
    assert_string_equal(fr_usd_cap(b, 0), "$0");
    assert_string_equal(fr_usd_cap(b, 0.035), "$0.035");
    assert_string_equal(fr_usd_cap(b, 0.5), "$0.5");
    assert_string_equal(fr_usd_cap(b, 5), "$5");
    assert_string_equal(fr_usd_cap(b, 100), "$100");
    assert_string_equal(fr_usd_cap(b, 0.06), "$0.06");
    assert_string_equal(fr_usd_cap(b, 1.4212), "$1.4212");
    assert_string_equal(fr_usd_cap(b, 0.1 + 0.2), "$0.3");
    assert_string_equal(fr_usd_cap(b, 0.000001), "$0.000001");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_costs_never_read_as_zero),
        cmocka_unit_test(test_caps_read_as_given),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
