/* Unit tests of the UTC month and day that label the books' periods
 * (engine/store/db.c, fr_store_month_of and fr_store_day_of): the same
 * text gmtime and strftime give, at every day's first and last second
 * from year 0 to 10000, and the fallback outside the years four digits
 * hold. */

#include "engine/store/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

/* What gmtime and strftime make of `t`, with the fallbacks the labels
 * have always had. */
static void expected(time_t t, char month[FR_STORE_MONTH_LEN], char day[FR_STORE_DAY_LEN])
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(month, FR_STORE_MONTH_LEN, "%Y-%m", &tm) != 7)
        snprintf(month, FR_STORE_MONTH_LEN, "0000-01");
    if (!gmtime_r(&t, &tm) || strftime(day, FR_STORE_DAY_LEN, "%Y-%m-%d", &tm) != 10)
        snprintf(day, FR_STORE_DAY_LEN, "0000-01-01");
}

static void check(time_t t)
{
    char em[FR_STORE_MONTH_LEN], ed[FR_STORE_DAY_LEN];
    char m[FR_STORE_MONTH_LEN], d[FR_STORE_DAY_LEN];
    expected(t, em, ed);
    fr_store_month_of(t, m);
    fr_store_day_of(t, d);
    if (strcmp(m, em) != 0 || strcmp(d, ed) != 0)
        fail_msg("t = %lld: month '%s' day '%s', gmtime says '%s' '%s'", (long long)t, m, d, em,
                 ed);
}

static void test_every_day_boundary(void **state)
{
    (void)state;
    /* 0000-01-01 to 10001-01-01: each day's first second and the second
     * before it (the previous day's last). */
    const time_t from = (time_t)-62167219200LL, to = (time_t)253433923200LL;
    for (time_t t = from; t <= to; t += 86400) {
        check(t);
        check(t - 1);
    }
}

static void test_known_dates(void **state)
{
    (void)state;
    char m[FR_STORE_MONTH_LEN], d[FR_STORE_DAY_LEN];
    fr_store_day_of(0, d);
    assert_string_equal(d, "1970-01-01");
    fr_store_day_of((time_t)951782400, d); /* a leap day of a year divisible by 400 */
    assert_string_equal(d, "2000-02-29");
    fr_store_day_of((time_t)1798761599, d);
    assert_string_equal(d, "2026-12-31");
    fr_store_month_of((time_t)1798761600, m);
    assert_string_equal(m, "2027-01");
    fr_store_day_of((time_t)-1, d);
    assert_string_equal(d, "1969-12-31");
    /* Outside the years four digits hold: the fallback. */
    fr_store_month_of((time_t)-30610224001LL, m); /* 0999-12-31T23:59:59Z */
    assert_string_equal(m, "0000-01");
    fr_store_day_of((time_t)253402300800LL, d); /* 10000-01-01 */
    assert_string_equal(d, "0000-01-01");
    fr_store_day_of((time_t)-30610224000LL, d);
    assert_string_equal(d, "1000-01-01");
    fr_store_day_of((time_t)253402300799LL, d);
    assert_string_equal(d, "9999-12-31");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_day_boundary),
        cmocka_unit_test(test_known_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
