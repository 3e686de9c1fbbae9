/* Unit test of flowrun-sim's graded models: a model with a skill answers a
 * prompt's `@@difficulty D` line with a reply that starts "PASS " when its
 * skill (moved by its deterministic noise) reaches D, else "FAIL ", the same
 * under every protocol, streamed or not; a model without a skill, a REPLY:
 * line or a request for JSON is answered as before; a D that is not a number
 * from 0 to 1 is a 400. */

#include "tests/unit/support/sim_proto.h"

/* Returns owned messages of one user message `user`. */
static json_t *user_msgs(const char *user)
{
    return json_pack("[{s:s,s:s}]", "role", "user", "content", user);
}

static int verdict(const char *model, double skill, double noise, const char *user)
{
    json_t *m = user_msgs(user);
    int v = fr_sim_verdict(model, true, skill, noise, m);
    json_decref(m);
    return v;
}

/* The rule: pass when skill >= D, without noise exactly; no verdict without
 * a skill or without the line; the line may sit anywhere in the prompt. */
static void test_verdict_rule(void **state)
{
    (void)state;
    assert_int_equal(verdict("m", 0.6, 0, "Write it.\n@@difficulty 0.5"), 1);
    assert_int_equal(verdict("m", 0.6, 0, "@@difficulty 0.6\nWrite it."), 1);
    assert_int_equal(verdict("m", 0.6, 0, "Write it.\n@@difficulty 0.63\nThanks."), 0);
    assert_int_equal(verdict("m", 0, 0, "@@difficulty 0"), 1);
    assert_int_equal(verdict("m", 1, 0, "@@difficulty 1"), 1);
    assert_int_equal(verdict("m", 0.6, 0, "Write it."), -1);
    assert_int_equal(verdict("m", 0.6, 0, "@@difficulty hard"), -1);
    json_t *m = user_msgs("@@difficulty 0.1");
    assert_int_equal(fr_sim_verdict("m", false, 0.9, 0, m), -1);
    json_decref(m);
}

/* Noise moves the skill by a deterministic -noise..noise per request: the
 * same request always gets the same verdict, requests at the skill pass about
 * half the time, and a difficulty beyond skill + noise never passes. */
static void test_verdict_noise(void **state)
{
    (void)state;
    int passes = 0;
    for (int i = 0; i < 400; i++) {
        char *user = fr_xasprintf("Task %d.\n@@difficulty 0.6", i);
        int v = verdict("m", 0.6, 0.1, user);
        assert_int_equal(verdict("m", 0.6, 0.1, user), v);
        assert_true(v == 0 || v == 1);
        passes += v;
        char *far = fr_xasprintf("Task %d.\n@@difficulty 0.71", i);
        assert_int_equal(verdict("m", 0.6, 0.1, far), 0);
        char *easy = fr_xasprintf("Task %d.\n@@difficulty 0.49", i);
        assert_int_equal(verdict("m", 0.6, 0.1, easy), 1);
        free(far);
        free(easy);
        free(user);
    }
    assert_in_range(passes, 150, 250);
}

/* Over HTTP: "PASS " or "FAIL " before the usual words, under the three
 * protocols, streamed or not; the words count as output tokens. */
static void test_graded_replies(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model m = {.name = "coder", .has_skill = true, .skill = 0.6};
    assert_int_equal(fr_sim_set_model(fx->sim, &m), FR_OK);
    for (int i = 0; i < 6; i++) {
        proto p = (proto)(i % 3);
        bool stream = i >= 3;
        result r;
        ask(fx, p, stream, "coder", NULL, "Write the parser.\n@@difficulty 0.55", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_true(strncmp(r.text, "PASS coder says:", 16) == 0);
        long words = 0;
        for (const char *t = r.text; *t; t++)
            words += t[0] != ' ' && (t[1] == ' ' || t[1] == '\0');
        assert_int_equal(r.out, words);
        result_free(&r);
        ask(fx, p, stream, "coder", NULL, "Write the parser.\n@@difficulty 0.65", NULL, &r);
        assert_int_equal(r.status, 200);
        assert_true(strncmp(r.text, "FAIL coder says:", 16) == 0);
        result_free(&r);
    }
    /* A model without a skill ignores the line; a REPLY: line is used as is. */
    result r;
    ask(fx, P_OPENAI, false, "plain", NULL, "Write it.\n@@difficulty 0.1", NULL, &r);
    assert_true(strncmp(r.text, "plain says:", 11) == 0);
    result_free(&r);
    ask(fx, P_OLLAMA, false, "coder", NULL, "@@difficulty 0.1\nREPLY: as written", NULL, &r);
    assert_string_equal(r.text, "as written");
    result_free(&r);
    /* A difficulty that is not a number from 0 to 1 is the client's mistake,
     * under every protocol, skill or not. */
    static const char *const bad[] = {"@@difficulty hard", "@@difficulty 1.5", "@@difficulty -0.1",
                                      "@@difficulty 0.5x"};
    for (int i = 0; i < 4; i++) {
        ask(fx, (proto)(i % 3), false, i % 2 ? "plain" : "coder", NULL, bad[i], NULL, &r);
        assert_int_equal(r.status, 400);
        assert_non_null(strstr(r.raw, "Difficulty"));
        result_free(&r);
    }
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdict_rule),
        cmocka_unit_test(test_verdict_noise),
        cmocka_unit_test(test_graded_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
