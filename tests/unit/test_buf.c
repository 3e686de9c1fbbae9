/* engine/util/buf: fr_buf_reserve makes room once (appends up to it keep
 * the same memory), leaves an empty buffer reading "", and refuses past the
 * limit with the buffer unchanged. */
#include "engine/util/buf.h"
#include "engine/util/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_reserve_then_append(void **state)
{
    (void)state;
    fr_buf b;
    fr_buf_init(&b, 0);
    assert_int_equal(fr_buf_reserve(&b, 10000), FR_OK);
    assert_string_equal(fr_buf_str(&b), "");
    const char *data = b.data;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(fr_buf_append(&b, "0123456789", 10), FR_OK);
    assert_ptr_equal(b.data, data); /* no growth up to the room made */
    assert_int_equal(b.len, 10000);
    assert_int_equal(fr_buf_append(&b, "x", 1), FR_OK); /* and past it, growth as before */
    assert_int_equal(b.len, 10001);
    assert_int_equal(b.data[10001], '\0');
    fr_buf_close(&b);
}

static void test_reserve_past_the_limit(void **state)
{
    (void)state;
    fr_buf b;
    fr_buf_init(&b, 100);
    assert_int_equal(fr_buf_append(&b, "abc", 3), FR_OK);
    assert_int_equal(fr_buf_reserve(&b, 98), FR_ETOOBIG);
    assert_string_equal(fr_buf_str(&b), "abc");
    assert_int_equal(fr_buf_reserve(&b, 97), FR_OK);
    assert_string_equal(fr_buf_str(&b), "abc");
    fr_buf_close(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_then_append),
        cmocka_unit_test(test_reserve_past_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
