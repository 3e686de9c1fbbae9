/* Unit tests of the HTTP date a Retry-After may carry (engine/http_easy.c,
 * fr_http_date_parse): the three forms RFC 9110 has a recipient accept give
 * the same instant; anything else is no date. */

#include "engine/http_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* 1994-11-06 08:49:37 UTC, RFC 9110's example. */
#define EXAMPLE ((time_t)784111777)

static void test_the_three_forms(void **state)
{
    (void)state;
    assert_int_equal(fr_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT"), EXAMPLE);
    assert_int_equal(fr_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT"), EXAMPLE);
    assert_int_equal(fr_http_date_parse("Sun Nov  6 08:49:37 1994"), EXAMPLE);
    assert_int_equal(fr_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT  "), EXAMPLE);
    assert_int_equal(fr_http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
    assert_int_equal(fr_http_date_parse("Wed, 09 Jun 2021 10:18:14 GMT"), (time_t)1623233894);
    /* RFC 850's two-digit year: 70-99 in the 1900s, 00-69 in the 2000s. */
    assert_int_equal(fr_http_date_parse("Wednesday, 09-Jun-21 10:18:14 GMT"), (time_t)1623233894);
}

static void test_not_a_date(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "soon",
        "Sun, 06 Nov 1994 08:49:37 UTC", /* only GMT */
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT trailing",
        "Sunday, 06 Nov 1994 08:49:37 GMT", /* a long weekday is RFC 850's, with dashes */
        "Sun Nov  6 08:49:37",
        "06 Nov 1994 08:49:37 GMT",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (fr_http_date_parse(bad[i]) != (time_t)-1)
            fail_msg("'%s' read as a date", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_three_forms),
        cmocka_unit_test(test_not_a_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
