/* engine/util/jscan: the path scanner walks what json_loadb accepts and
 * goes bad on everything it rejects; a walk of every value builds the
 * tree json_loadb builds. Tables of texts jansson accepts and rejects
 * (grammar, strings, escapes, UTF-8, numbers, depth, trailing bytes), the
 * texts the scanner leaves to jansson on purpose (escaped keys, numbers it
 * would convert), and a chat.completion.chunk read member by member. */
#include "engine/util/jscan.h"

#include "tests/unit/support/jscan_tree.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Scans `n` bytes of `text` whole; returns whether the scan ended well,
 * and fails the test when it did but json_loadb read another tree. */
static bool scan_n(const char *text, size_t n)
{
    int r = jscan_against_jansson(text, n);
    assert_int_not_equal(r, -1);
    return r == 1;
}

static bool scan(const char *text)
{
    return scan_n(text, strlen(text));
}

/* Whether jansson accepts `text`. */
static bool loads(const char *text)
{
    json_error_t je;
    json_t *j = json_loadb(text, strlen(text), 0, &je);
    json_decref(j);
    return j != NULL;
}

static void test_accepts_what_jansson_accepts(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "{}",
        "[]",
        " \t\r\n{ } \n",
        "{\"a\":1}",
        "{\"a\":[1,2,3],\"b\":{\"c\":null,\"d\":true,\"e\":false}}",
        "[-0,0,12,-345678901234567890,1.5,-0.25,1e5,1E+5,2e-7,0.0]",
        "{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"}",
        "{\"u\":\"\\u00e9\\u20AC\\ud83d\\ude00\\u0001\"}",
        "{\"utf8\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"}",
        "{\"a\":1,\"a\":2}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"\xc3\xa9\":\"key not ASCII\"}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_true(loads(ok[i]));
        if (!scan(ok[i])) {
            fprintf(stderr, "not scanned: %s\n", ok[i]);
            fail();
        }
    }
}

static void test_rejects_what_jansson_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        " ",
        "1",
        "\"top string\"",
        "null",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{,\"a\":1}",
        "{\"a\" 1}",
        "{\"a\":1 \"b\":2}",
        "[1,]",
        "[,1]",
        "[1 2]",
        "{} {}",
        "{}x",
        "[01]",
        "[-]",
        "[1.]",
        "[.5]",
        "[1e]",
        "[1e+]",
        "[+1]",
        "[tru]",
        "[truex]",
        "[nul]",
        "[NaN]",
        "{'a':1}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u00zz\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xe2\x82\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"unterminated}",
        "[1]]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_false(loads(bad[i]));
        if (scan(bad[i])) {
            fprintf(stderr, "scanned: %s\n", bad[i]);
            fail();
        }
    }
    /* A NUL byte inside a string and outside one. */
    assert_false(scan_n("{\"a\":\"x\0y\"}", 11));
    assert_false(scan_n("{\"a\":1}\0", 8));
}

static void test_leaves_to_jansson(void **state)
{
    (void)state;
    /* Texts jansson takes that the scanner does not decide: the caller
     * parses them with json_loadb. */
    static const char *const left[] = {
        "{\"\\u0061\":1}",        /* an escaped key */
        "[12345678901234567890]", /* 20 digits: too big for jansson? not ours */
        "[1e300]",                /* an exponent of 3 digits */
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", /* 33 deep */
    };
    for (size_t i = 0; i < sizeof left / sizeof *left; i++)
        assert_false(scan(left[i]));
}

static void test_chunk_by_path(void **state)
{
    (void)state;
    const char *chunk = "{\"id\":\"c1\",\"model\":\"peer\",\"choices\":[{\"index\":0,\"delta\":{"
                        "\"content\":\"a\\nb\\u00e9\"},\"finish_reason\":null}],\"usage\":null}";
    fr_jscan s;
    fr_jval k, v, content = {0}, model = {0};
    fr_jscan_init(&s, chunk, strlen(chunk));
    assert_true(fr_jscan_value(&s, &v));
    assert_int_equal(v.kind, FR_JOBJECT);
    while (fr_jscan_member(&s, &k)) {
        if (fr_jscan_is(&k, "model")) {
            assert_true(fr_jscan_value(&s, &model));
        } else if (fr_jscan_is(&k, "choices")) {
            assert_true(fr_jscan_value(&s, &v));
            assert_int_equal(v.kind, FR_JARRAY);
            assert_true(fr_jscan_element(&s));
            assert_true(fr_jscan_value(&s, &v));
            assert_int_equal(v.kind, FR_JOBJECT);
            while (fr_jscan_member(&s, &k)) {
                assert_true(fr_jscan_value(&s, &v));
                if (fr_jscan_is(&k, "index")) {
                    assert_int_equal(v.kind, FR_JINT);
                    assert_int_equal(v.i, 0);
                } else if (fr_jscan_is(&k, "delta")) {
                    assert_true(fr_jscan_member(&s, &k));
                    assert_true(fr_jscan_is(&k, "content"));
                    assert_true(fr_jscan_value(&s, &content));
                    assert_false(fr_jscan_member(&s, &k)); /* the delta's end */
                    continue;
                }
                fr_jscan_skip(&s, &v);
            }
            assert_false(fr_jscan_element(&s));
        } else {
            assert_true(fr_jscan_value(&s, &v));
            fr_jscan_skip(&s, &v);
        }
    }
    assert_true(fr_jscan_done(&s));
    assert_true(fr_jscan_is(&model, "peer"));
    assert_int_equal(content.kind, FR_JSTRING);
    assert_true(content.escaped);
    assert_false(fr_jscan_is(&content, "a\nb\xc3\xa9")); /* escaped strings are not compared */
    char out[64];
    assert_int_equal(fr_jscan_unescape(&content, out), 5);
    assert_string_equal(out, "a\nb\xc3\xa9");
}

static void test_misuse_goes_bad(void **state)
{
    (void)state;
    fr_jscan s;
    fr_jval k, v;
    /* member() inside an array, element() inside an object. */
    fr_jscan_init(&s, "[1]", 3);
    assert_true(fr_jscan_value(&s, &v));
    assert_false(fr_jscan_member(&s, &k));
    assert_false(fr_jscan_done(&s));
    fr_jscan_init(&s, "{}", 2);
    assert_true(fr_jscan_value(&s, &v));
    assert_false(fr_jscan_element(&s));
    assert_false(fr_jscan_done(&s));
    /* A second top value. */
    fr_jscan_init(&s, "{}", 2);
    assert_true(fr_jscan_value(&s, &v));
    assert_false(fr_jscan_member(&s, &k));
    assert_false(fr_jscan_value(&s, &v));
    assert_int_equal(v.kind, FR_JNONE);
    assert_false(fr_jscan_done(&s));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_what_jansson_accepts),
        cmocka_unit_test(test_rejects_what_jansson_rejects),
        cmocka_unit_test(test_leaves_to_jansson),
        cmocka_unit_test(test_chunk_by_path),
        cmocka_unit_test(test_misuse_goes_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
