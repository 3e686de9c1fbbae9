/* Booking: run ids. Runs begun in the same second (a test suite, a script
 * starting many runs) each get an id of their own: the store refuses a run
 * id already recorded, so a repeated id stops a run before it starts. */
#include "engine/booking.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_run_ids_in_one_second_differ(void **state)
{
    (void)state;
    enum { N = 5000 };
    time_t now = 1796083200; /* 2026-12-01T00:00:00Z */
    char **ids = calloc(N, sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < N; i++) {
        ids[i] = fr_booking_run_id(now);
        assert_int_equal(strncmp(ids[i], "2026-12-01T00:00:00Z-", 21), 0);
        assert_int_equal(strlen(ids[i]), 21 + 8);
        assert_int_equal(strspn(ids[i] + 21, "0123456789abcdef"), 8);
    }
    qsort(ids, N, sizeof *ids, cmp_str);
    int repeats = 0;
    for (int i = 1; i < N; i++)
        repeats += strcmp(ids[i - 1], ids[i]) == 0;
    /* 5000 ids from 32 random bits repeat with odds of about 0.3%: allow
     * one, never the ~190 a 16-bit suffix gives. */
    assert_true(repeats <= 1);
    for (int i = 0; i < N; i++)
        free(ids[i]);
    free(ids);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_ids_in_one_second_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
