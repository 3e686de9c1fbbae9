/* The tool loop's conversation: the messages a provider call carries, the
 * bounds that end a model that never stops calling tools, and results kept
 * in the order the model asked whatever order they arrive in. */
#include "engine/convo.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static json_t *calls(int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "call_%d", i);
        json_array_append_new(a, json_pack("{s:s, s:s, s:{s:i}}", "id", id, "name", "word_count",
                                           "arguments", "n", i));
    }
    return a;
}

static void test_turns_and_results_in_order(void **state)
{
    (void)state;
    fr_error err = {0};
    fr_convo *c = fr_convo_new("count the words", NULL, 10, 50);
    assert_int_equal(fr_convo_begin_turn(c, &err), FR_OK);
    json_t *cs = calls(3);
    assert_int_equal(fr_convo_add_calls(c, "let me look", cs, &err), FR_OK);
    json_decref(cs);
    assert_int_equal(fr_convo_pending(c), 3);
    assert_string_equal(fr_convo_call_name(c, 2), "word_count");
    assert_int_equal(json_integer_value(json_object_get(fr_convo_call_args(c, 1), "n")), 1);
    /* Results arrive out of order: they are appended in the model's. */
    fr_tool_result r2, r0, r1;
    fr_tool_result_ok(&r2, "two");
    fr_tool_result_fail(&r0, "timed out after 1 s");
    fr_tool_result_ok(&r1, "one");
    assert_false(fr_convo_set_result(c, 2, &r2));
    assert_false(fr_convo_set_result(c, 2, &r2)); /* a second result for one call is ignored */
    assert_false(fr_convo_set_result(c, 0, &r0));
    assert_true(fr_convo_set_result(c, 1, &r1));
    const json_t *m = fr_convo_messages(c);
    assert_int_equal(json_array_size(m), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")), "user");
    json_t *asst = json_array_get(m, 1);
    assert_string_equal(json_string_value(json_object_get(asst, "content")), "let me look");
    assert_int_equal(json_array_size(json_object_get(asst, "tool_calls")), 3);
    json_t *t0 = json_array_get(m, 2);
    assert_string_equal(json_string_value(json_object_get(t0, "tool_call_id")), "call_0");
    assert_true(json_is_true(json_object_get(t0, "is_error")));
    assert_string_equal(json_string_value(json_object_get(t0, "content")),
                        "error: timed out after 1 s");
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 4), "content")), "two");
    assert_int_equal(fr_convo_turns(c), 1);
    assert_int_equal(fr_convo_tool_calls(c), 3);
    assert_true(fr_convo_bytes(c, "sys", NULL) > strlen("count the words"));
    fr_tool_result_close(&r0);
    fr_tool_result_close(&r1);
    fr_tool_result_close(&r2);

    /* A retry on the same endpoint goes on from these messages. */
    fr_convo *again = fr_convo_new("ignored", m, 10, 50);
    assert_int_equal(fr_convo_turns(again), 1);
    assert_int_equal(fr_convo_tool_calls(again), 3);
    assert_int_equal(json_array_size(fr_convo_messages(again)), 5);
    fr_convo_free(again);
    fr_convo_free(c);
}

static void test_max_turns_ends_the_loop(void **state)
{
    (void)state;
    fr_error err = {0};
    fr_convo *c = fr_convo_new("loop", NULL, 3, 50);
    for (int turn = 0; turn < 2; turn++) {
        assert_int_equal(fr_convo_begin_turn(c, &err), FR_OK);
        json_t *cs = calls(1);
        assert_int_equal(fr_convo_add_calls(c, NULL, cs, &err), FR_OK);
        json_decref(cs);
        fr_tool_result r;
        fr_tool_result_ok(&r, "x");
        assert_true(fr_convo_set_result(c, 0, &r));
        fr_tool_result_close(&r);
    }
    /* The third turn still asks for tools: no turn is left to read their
     * results, so none runs. */
    assert_int_equal(fr_convo_begin_turn(c, &err), FR_OK);
    json_t *cs = calls(1);
    assert_int_equal(fr_convo_add_calls(c, NULL, cs, &err), FR_ETURNS);
    json_decref(cs);
    assert_non_null(strstr(err.msg, "max_turns (3)"));
    assert_int_equal(fr_convo_tool_calls(c), 2);
    assert_int_equal(fr_convo_begin_turn(c, &err), FR_ETURNS);
    fr_convo_free(c);
}

static void test_max_tool_calls_ends_the_loop(void **state)
{
    (void)state;
    fr_error err = {0};
    fr_convo *c = fr_convo_new("many", NULL, 10, 4);
    assert_int_equal(fr_convo_begin_turn(c, &err), FR_OK);
    json_t *cs = calls(5);
    assert_int_equal(fr_convo_add_calls(c, NULL, cs, &err), FR_ETURNS);
    assert_non_null(strstr(err.msg, "max_tool_calls (4)"));
    assert_int_equal(json_array_size(fr_convo_messages(c)), 1); /* nothing appended */
    json_decref(cs);
    fr_convo_free(c);
}

static void test_arguments_that_are_not_an_object(void **state)
{
    (void)state;
    fr_error err = {0};
    fr_convo *c = fr_convo_new("bad", NULL, 10, 50);
    assert_int_equal(fr_convo_begin_turn(c, &err), FR_OK);
    json_t *cs = json_pack("[{s:s, s:s, s:n, s:s}]", "id", "c1", "name", "word_count", "arguments",
                           "raw_arguments", "{\"n\": ");
    assert_int_equal(fr_convo_add_calls(c, NULL, cs, &err), FR_OK);
    json_decref(cs);
    assert_null(fr_convo_call_args(c, 0)); /* the tool refuses it; the model reads why */
    fr_convo_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_turns_and_results_in_order),
        cmocka_unit_test(test_max_turns_ends_the_loop),
        cmocka_unit_test(test_max_tool_calls_ends_the_loop),
        cmocka_unit_test(test_arguments_that_are_not_an_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
