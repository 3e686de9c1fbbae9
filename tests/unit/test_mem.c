/* fr_wipe, the one way a secret is wiped: it zeroes exactly the bytes it is
 * given, and nothing around them. */
#include "engine/util/mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_wipe_zeroes_exactly_n_bytes(void **state)
{
    (void)state;
    char buf[16];
    memcpy(buf, "sk-secret-key-12", sizeof buf);
    fr_wipe(buf + 3, 10);
    assert_memory_equal(buf, "sk-", 3);
    for (size_t i = 3; i < 13; i++)
        assert_int_equal(buf[i], 0);
    assert_memory_equal(buf + 13, "-12", 3);
    fr_wipe(NULL, 0); /* nothing to wipe is fine */
    fr_wipe(buf, 0);
    assert_memory_equal(buf, "sk-", 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe_zeroes_exactly_n_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
