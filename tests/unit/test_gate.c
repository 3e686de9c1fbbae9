/* engine/gate: what a reply must be to count as a task's answer (its
 * finish, the task's schema, its check function and min_quality), and the
 * redaction of registered keys a reply repeats. The check runs the Lua of
 * the fixture workflow tests/unit/fixtures/engine/flow.lua. */
#include "engine/gate.h"

#include "engine/util/redact.h"
#include "support/engine_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A key as a user's environment holds it; registered by the redact test. */
#define KEY "sk-unit-0123456789abcdefghij"

static fr_workflow *g_wf;

static int setup(void **state)
{
    (void)state;
    g_wf = engine_load();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fr_workflow_free(g_wf);
    fr_redact_clear();
    return 0;
}

static const fr_task_spec *spec(const char *task)
{
    return &g_wf->tasks[engine_task(g_wf, task)];
}

/* The finish gate of `r` for task `task`: its code, *outcome and the error. */
static int finish(const char *task, const fr_reply *r, const char **outcome, fr_error *err)
{
    memset(err, 0, sizeof *err);
    *outcome = "unset";
    return fr_gate_finish(spec(task), r, outcome, err);
}

static void test_finish_stop_passes(void **state)
{
    (void)state;
    const char *outcome;
    fr_error err;
    const fr_finish answers[] = {FR_FINISH_STOP, FR_FINISH_NONE, FR_FINISH_OTHER};
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        fr_reply r = engine_reply("hello", answers[i], NULL);
        assert_int_equal(finish("plain", &r, &outcome, &err), FR_OK);
        assert_null(outcome);
        fr_reply_close(&r);
    }
}

static void test_finish_length(void **state)
{
    (void)state;
    const char *outcome;
    fr_error err;
    fr_reply r = engine_reply("half an ans", FR_FINISH_LENGTH, NULL);
    r.finish_reason = fr_xstrdup("length");
    assert_int_equal(finish("shaped", &r, &outcome, &err), FR_EFINISH);
    assert_string_equal(outcome, "truncated");
    assert_non_null(strstr(err.msg, "max_tokens 64"));
    assert_non_null(strstr(err.msg, "'length'"));
    assert_non_null(strstr(err.msg, "allow_truncated"));

    /* With allow_truncated the cut text is the answer... */
    fr_task_spec lenient = *spec("shaped");
    lenient.allow_truncated = true;
    assert_int_equal(fr_gate_finish(&lenient, &r, &outcome, &err), FR_OK);
    assert_null(outcome);
    /* ... unless nothing came before the cut. */
    free(r.text);
    r.text = fr_xstrdup("");
    assert_int_equal(fr_gate_finish(&lenient, &r, &outcome, &err), FR_EFINISH);
    assert_string_equal(outcome, "truncated");
    assert_non_null(strstr(err.msg, "before any answer"));
    fr_reply_close(&r);
}

/* A reply of only blanks cut at max_tokens is no answer, even for a task
 * that accepts cut text (allow_truncated): it fails as "truncated", like an
 * empty one. */
static void test_finish_length_blank_text(void **state)
{
    (void)state;
    fr_task_spec lenient = *spec("shaped");
    lenient.allow_truncated = true;
    const char *outcome;
    fr_error err = {0};
    fr_reply r = engine_reply(" \n\n ", FR_FINISH_LENGTH, NULL);
    int rc = fr_gate_finish(&lenient, &r, &outcome, &err);
    fr_reply_close(&r);
    assert_int_equal(rc, FR_EFINISH);
    assert_string_equal(outcome, "truncated");
}

static void test_finish_no_answer_kinds(void **state)
{
    (void)state;
    const struct {
        fr_finish finish;
        const char *outcome, *words;
    } cases[] = {
        {FR_FINISH_REFUSED, "refused", "refused"},
        {FR_FINISH_TOOL_CALL, "tool_call", "call a tool"},
        {FR_FINISH_NO_ANSWER, "no_answer", "reasoning"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *outcome;
        fr_error err;
        fr_reply r = engine_reply("some text", cases[i].finish, NULL);
        assert_int_equal(finish("plain", &r, &outcome, &err), FR_EFINISH);
        assert_string_equal(outcome, cases[i].outcome);
        assert_non_null(strstr(err.msg, cases[i].words));
        /* The finish reason named is the server's own, else flowrun's. */
        assert_non_null(strstr(err.msg, fr_finish_name(cases[i].finish)));
        fr_reply_close(&r);
    }
}

static void test_finish_empty_text(void **state)
{
    (void)state;
    const char *texts[] = {"", " \t\r\n "};
    for (size_t i = 0; i < 2; i++) {
        const char *outcome;
        fr_error err;
        fr_reply r = engine_reply(texts[i], FR_FINISH_STOP, NULL);
        assert_int_equal(finish("plain", &r, &outcome, &err), FR_EFINISH);
        assert_string_equal(outcome, "no_answer");
        assert_non_null(strstr(err.msg, "empty"));
        assert_int_equal(fr_gate_empty(&r, &outcome, &err), FR_EFINISH);
        fr_reply_close(&r);
    }
    /* JSON without text is an answer (a tool-style structured reply). */
    const char *outcome = NULL;
    fr_error err = {0};
    fr_reply r = engine_reply("", FR_FINISH_STOP, json_pack("{s:i}", "n", 1));
    assert_int_equal(fr_gate_empty(&r, &outcome, &err), FR_OK);
    assert_int_equal(finish("plain", &r, &outcome, &err), FR_OK);
    fr_reply_close(&r);
}

static void test_schema(void **state)
{
    (void)state;
    fr_error err = {0};
    /* A task without a schema takes any reply. */
    fr_reply r = engine_reply("prose", FR_FINISH_STOP, NULL);
    assert_int_equal(fr_gate_schema(spec("plain"), &r, &err), FR_OK);
    /* One with a schema needs JSON ... */
    assert_int_equal(fr_gate_schema(spec("shaped"), &r, &err), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "no JSON"));
    /* ... that is whole: a cut reply's incomplete JSON says so. */
    r.finish = FR_FINISH_LENGTH;
    assert_int_equal(fr_gate_schema(spec("shaped"), &r, &err), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "incomplete"));
    assert_non_null(strstr(err.msg, "max_tokens 64"));
    /* ... and matches, or the message says where it does not. */
    r.finish = FR_FINISH_STOP;
    r.json = json_pack("{s:s}", "n", "seven");
    assert_int_equal(fr_gate_schema(spec("shaped"), &r, &err), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "does not match the schema"));
    assert_non_null(strstr(err.msg, "$.n: expected an integer"));
    json_decref(r.json);
    r.json = json_pack("{s:i}", "n", 7);
    assert_int_equal(fr_gate_schema(spec("shaped"), &r, &err), FR_OK);
    fr_reply_close(&r);
}

/* The check gate of task "checked" on a reply of `text`. */
static int check(const char *text, double *score, fr_error *err)
{
    fr_reply r = engine_reply(text, FR_FINISH_STOP, NULL);
    memset(err, 0, sizeof *err);
    int rc = fr_gate_check(g_wf, engine_task(g_wf, "checked"), &r, score, err);
    fr_reply_close(&r);
    return rc;
}

static void test_check(void **state)
{
    (void)state;
    fr_error err;
    double score = -1;
    assert_int_equal(check("good", &score, &err), FR_OK);
    assert_float_equal(score, 0.9, 1e-9);

    score = -1;
    assert_int_equal(check("weak", &score, &err), FR_EQUALITY);
    assert_float_equal(score, 0.2, 1e-9); /* the score it failed with */
    assert_non_null(strstr(err.msg, "scored 0.20 (min_quality 0.50)"));
    assert_non_null(strstr(err.msg, "too weak"));

    assert_int_equal(check("garbled", &score, &err), FR_EQUALITY);
    assert_non_null(strstr(err.msg, "did not score the reply"));
    assert_non_null(strstr(err.msg, "the check cannot read this"));

    /* A task without a check leaves the score alone. */
    fr_reply r = engine_reply("anything", FR_FINISH_STOP, NULL);
    score = -1;
    assert_int_equal(fr_gate_check(g_wf, engine_task(g_wf, "plain"), &r, &score, &err), FR_OK);
    assert_float_equal(score, -1, 0);
    fr_reply_close(&r);
}

static void test_redact(void **state)
{
    (void)state;
    fr_redact_add(KEY);
    fr_reply r = engine_reply("my key is " KEY ", keep it", FR_FINISH_STOP, NULL);
    r.json = json_pack("{s:s, s:[s]}", "said", "key=" KEY, "list", KEY);
    json_object_set_new(r.json, KEY, json_integer(1));
    r.model = fr_xstrdup("model-" KEY);
    fr_gate_redact(&r, "plain", "cloud");
    assert_string_equal(r.text, "my key is " FR_REDACTED ", keep it");
    assert_string_equal(r.model, "model-" FR_REDACTED);
    assert_string_equal(json_string_value(json_object_get(r.json, "said")), "key=" FR_REDACTED);
    assert_string_equal(json_string_value(json_array_get(json_object_get(r.json, "list"), 0)),
                        FR_REDACTED);
    /* A member named by the key is renamed, its value kept. */
    assert_null(json_object_get(r.json, KEY));
    assert_int_equal(json_integer_value(json_object_get(r.json, FR_REDACTED)), 1);
    char *dump = json_dumps(r.json, 0);
    assert_null(strstr(dump, "sk-unit-0123"));
    free(dump);
    fr_reply_close(&r);

    /* A reply without a key is left as it was. */
    r = engine_reply("nothing secret", FR_FINISH_STOP, NULL);
    char *before = r.text;
    fr_gate_redact(&r, "plain", "cloud");
    assert_ptr_equal(r.text, before);
    assert_string_equal(r.text, "nothing secret");
    assert_null(r.model);
    fr_reply_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finish_stop_passes),
        cmocka_unit_test(test_finish_length),
        cmocka_unit_test(test_finish_length_blank_text),
        cmocka_unit_test(test_finish_no_answer_kinds),
        cmocka_unit_test(test_finish_empty_text),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_redact),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
