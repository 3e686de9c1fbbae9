/* engine/util/strmap: the loader's name index. Every name put is found
 * with its value after the map grew many times over; putting a name again
 * keeps the first value and returns it; absent names, the empty name and
 * names differing in one byte are told apart. */
#include "engine/util/strmap.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define N 5000

static void test_put_get_grow(void **state)
{
    (void)state;
    static char names[N][16];
    fr_strmap *m = fr_strmap_new(0);
    for (size_t i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "task-%zu", i);
        assert_int_equal(fr_strmap_put(m, names[i], i), -1);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(fr_strmap_get(m, names[i]), (long)i);
    /* A name put again: the first value stays and is returned. */
    assert_int_equal(fr_strmap_put(m, "task-17", 99999), 17);
    assert_int_equal(fr_strmap_get(m, "task-17"), 17);
    assert_int_equal(fr_strmap_get(m, "task-5000"), -1);
    assert_int_equal(fr_strmap_get(m, "task-"), -1);
    assert_int_equal(fr_strmap_get(m, ""), -1);
    assert_int_equal(fr_strmap_put(m, "", 7), -1);
    assert_int_equal(fr_strmap_get(m, ""), 7);
    fr_strmap_free(m);
    fr_strmap_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
