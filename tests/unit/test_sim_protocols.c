/* Unit test of flowrun-sim's three wire protocols (OpenAI, Ollama,
 * Anthropic): the same reply, usage and limits under each, streamed or not;
 * each protocol's own framing and error shape; structured output that
 * conforms to the schema asked for; the concurrency limit and token counters
 * across protocols. */

#include "tests/unit/support/sim_proto.h"

static long prompt_tokens_of(const char *system, const char *user)
{
    size_t bytes = (system ? strlen(system) : 0) + strlen(user);
    return (long)((bytes + 3) / 4);
}

static void test_protocols_agree(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *prompts[] = {"Summarise the plan in a line.", "REPLY: one two three four five"};
    const char *systems[] = {"Be brief.", NULL};
    for (int k = 0; k < 2; k++) {
        const char *system = systems[k];
        result ref;
        ask(fx, P_OPENAI, false, "agree", system, prompts[k], NULL, &ref);
        assert_int_equal(ref.status, 200);
        assert_string_equal(ref.finish, "stop");
        assert_int_equal(ref.in, prompt_tokens_of(system, prompts[k]));
        assert_int_equal(ref.out, count_words(ref.text));
        for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
            for (int stream = 0; stream < 2; stream++) {
                result r;
                ask(fx, (proto)p, stream, "agree", system, prompts[k], NULL, &r);
                assert_int_equal(r.status, 200);
                assert_string_equal(r.text, ref.text);
                assert_int_equal(r.in, ref.in);
                assert_int_equal(r.out, ref.out);
                assert_false(r.tool);
                assert_string_equal(r.finish, p == P_ANTHROPIC ? "end_turn" : "stop");
                if (stream && k == 0)
                    assert_true(r.pieces >= 3); /* generated text is 14+ words */
                result_free(&r);
            }
        }
        result_free(&ref);
    }

    /* The token limit of each protocol cuts the same words. */
    const char *limits[] = {"{\"max_tokens\":4}", "{\"options\":{\"num_predict\":4}}",
                            "{\"max_tokens\":4}"};
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            result r;
            ask(fx, (proto)p, stream, "agree", "sys", "REPLY: a b c d e f", limits[p], &r);
            assert_string_equal(r.text, "a b c d");
            assert_int_equal(r.out, 4);
            assert_string_equal(r.finish, p == P_ANTHROPIC ? "max_tokens" : "length");
            result_free(&r);
        }
    }

    /* Ollama streams when "stream" is absent, and num_predict -1 means no limit. */
    response raw = {0};
    roundtrip(fx, "POST", "/api/chat",
              "{\"model\":\"agree\",\"options\":{\"num_predict\":-1},"
              "\"messages\":[{\"role\":\"user\",\"content\":\"REPLY: x y\"}]}",
              &raw);
    assert_int_equal(raw.status, 200);
    assert_true(header_is(raw.head, "Content-Type", "application/x-ndjson"));
    result r = {0};
    parse_ollama_stream(raw.body, &r);
    assert_string_equal(r.text, "x y");
    assert_string_equal(r.finish, "stop");
    result_free(&r);
    response_free(&raw);
    fixture_free(fx);
}

static void test_anthropic_wire(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    /* Event order and usage, checked by parse_anthropic_stream. */
    result r;
    ask(fx, P_ANTHROPIC, true, "claude-sim", "Be brief.", "REPLY: w1 w2 w3 w4 w5 w6 w7", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "w1 w2 w3 w4 w5 w6 w7");
    assert_int_equal(r.pieces, 3);
    assert_int_equal(r.out, 7);
    assert_int_equal(r.in, prompt_tokens_of("Be brief.", "REPLY: w1 w2 w3 w4 w5 w6 w7"));
    result_free(&r);

    /* A system prompt as a list of text blocks counts the same. */
    char *body = proto_body(P_ANTHROPIC, "claude-sim", NULL, "REPLY: hi", false,
                            "{\"system\":[{\"type\":\"text\",\"text\":\"Be brief.\"}]}");
    ask_body(fx, P_ANTHROPIC, false, body, &r);
    assert_int_equal(r.in, prompt_tokens_of("Be brief.", "REPLY: hi"));
    result_free(&r);
    free(body);

    /* Errors have Anthropic's shape: max_tokens is required, roles are
     * user and assistant, and the JSON must parse. */
    const char *bad[] = {
        "{\"model\":\"claude-sim\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"claude-sim\",\"max_tokens\":5,\"messages\":[{\"role\":\"system\","
        "\"content\":\"x\"}]}",
        "{\"model\":\"claude-sim\",\"max_tokens\":5,\"messages\":[",
        "{\"model\":\"claude-sim\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}],\"tools\":[],\"tool_choice\":{\"type\":\"tool\",\"name\":\"t\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ask_body(fx, P_ANTHROPIC, false, bad[i], &r);
        assert_int_equal(r.status, 400);
        json_t *doc = must_parse(r.raw);
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "error");
        json_t *err = json_object_get(doc, "error");
        assert_string_equal(json_string_value(json_object_get(err, "type")),
                            "invalid_request_error");
        assert_non_null(json_string_value(json_object_get(err, "message")));
        json_decref(doc);
        result_free(&r);
    }
    assert_int_equal(fr_sim_peak(fx->sim, "claude-sim"), 1);
    fixture_free(fx);
}

static void test_ollama_wire(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    result r;
    ask(fx, P_OLLAMA, true, "qwen2.5:7b", "Be brief.", "REPLY: a b c d e f g", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "a b c d e f g");
    assert_int_equal(r.pieces, 3);
    assert_int_equal(r.in, prompt_tokens_of("Be brief.", "REPLY: a b c d e f g"));
    assert_int_equal(r.out, 7);
    assert_string_equal(r.finish, "stop");
    result_free(&r);

    /* Every line is one JSON object ending in "\n"; the raw body shows it. */
    ask(fx, P_OLLAMA, true, "qwen2.5:7b", NULL, "REPLY: p q", NULL, &r);
    assert_int_equal(r.raw[strlen(r.raw) - 1], '\n');
    assert_non_null(strstr(r.raw, "\"done\":false}\n{"));
    result_free(&r);

    /* Errors are {"error": "..."}. */
    const char *bad[] = {
        "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"format\":7}",
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"y\"}",
        "{\"model\":\"m\",\"messages\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ask_body(fx, P_OLLAMA, false, bad[i], &r);
        assert_int_equal(r.status, 400);
        json_t *doc = must_parse(r.raw);
        assert_non_null(json_string_value(json_object_get(doc, "error")));
        assert_int_equal(json_object_size(doc), 1);
        json_decref(doc);
        result_free(&r);
    }

    /* Wrong method: 405 with Allow, in Ollama's shape. */
    response raw = {0};
    roundtrip(fx, "GET", "/api/chat", NULL, &raw);
    assert_int_equal(raw.status, 405);
    assert_true(header_is(raw.head, "Allow", "POST"));
    json_t *doc = body_json(&raw);
    assert_non_null(json_string_value(json_object_get(doc, "error")));
    json_decref(doc);
    response_free(&raw);

    /* GET /api/tags lists the configured models. */
    fr_sim_model m = {.name = "llama3.2"};
    assert_int_equal(fr_sim_set_model(fx->sim, &m), FR_OK);
    roundtrip(fx, "GET", "/api/tags", NULL, &raw);
    assert_int_equal(raw.status, 200);
    doc = body_json(&raw);
    json_t *first = json_array_get(json_object_get(doc, "models"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")), "llama3.2");
    json_decref(doc);
    response_free(&raw);
    fixture_free(fx);
}

/* ---- structured output ----------------------------------------------------------- */

static void test_structured_output(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    json_t *schema = must_parse(test_schema);

    /* Many seeds: every generated value conforms. */
    for (int i = 0; i < 200; i++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "Describe item %d.", i);
        json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", prompt);
        char *text = fr_sim_reply_json("gen", msgs, schema);
        json_t *v = must_parse(text);
        if (!conforms(v, schema, schema))
            fail_msg("does not conform: %s", text);
        json_decref(v);
        free(text);
        json_decref(msgs);
    }

    /* The same JSON under every protocol, streamed or not, with the same
     * counts: output tokens are the words of the compact JSON text. */
    const char *prompt = "List the findings.";
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "Be exact.",
                             "role", "user", "content", prompt);
    char *expect = fr_sim_reply_json("structured", msgs, schema);
    json_decref(msgs);
    json_t *want = must_parse(expect);
    assert_true(conforms(want, schema, schema));
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        char *extra = structured_extra((proto)p, test_schema);
        for (int stream = 0; stream < 2; stream++) {
            result r;
            ask(fx, (proto)p, stream, "structured", "Be exact.", prompt, extra, &r);
            assert_int_equal(r.status, 200);
            json_t *got = must_parse(r.text);
            assert_true(json_equal(got, want));
            json_decref(got);
            if (p != P_ANTHROPIC || stream)
                assert_string_equal(r.text, expect);
            assert_int_equal(r.out, count_words(expect));
            assert_int_equal(r.in, prompt_tokens_of("Be exact.", prompt));
            assert_int_equal(r.tool, p == P_ANTHROPIC);
            assert_string_equal(r.finish, p == P_ANTHROPIC ? "tool_use" : "stop");
            result_free(&r);
        }
        free(extra);
    }
    json_decref(want);
    free(expect);

    /* A REPLY: line is passed through as is; "any JSON" asks get an object. */
    const char *given = "{\"title\": \"exact text\", \"n\": [1, 2]}";
    char *user = fr_xasprintf("Go.\nREPLY: %s", given);
    char *any = NULL;
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        char *extra = structured_extra((proto)p, test_schema);
        result r;
        ask(fx, (proto)p, false, "structured", NULL, user, extra, &r);
        if (p == P_ANTHROPIC) { /* the input object, re-serialised */
            json_t *a = must_parse(r.text), *b = must_parse(given);
            assert_true(json_equal(a, b));
            json_decref(a);
            json_decref(b);
        } else {
            assert_string_equal(r.text, given);
        }
        assert_int_equal(r.out, count_words(given));
        result_free(&r);
        free(extra);

        /* Any JSON object (Anthropic: a tool whose schema is {"type":"object"}). */
        extra = structured_extra((proto)p, NULL);
        ask(fx, (proto)p, true, "structured", NULL, "Anything.", extra, &r);
        json_t *v = must_parse(r.text);
        assert_true(json_is_string(json_object_get(v, "result")));
        assert_int_equal(json_object_size(v), 1);
        json_decref(v);
        if (!any)
            any = fr_xstrdup(r.text);
        assert_string_equal(r.text, any);
        result_free(&r);
        free(extra);
    }
    free(any);
    free(user);
    json_decref(schema);
    fixture_free(fx);
}

static void test_limit_all_protocols(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model lim = {.name = "one", .latency_ms = 600000, .max_concurrent = 1};
    fr_sim_set_model(fx->sim, &lim);
    char *body = proto_body(P_OPENAI, "one", NULL, "REPLY: ok", false, NULL);
    client *busy = client_open(fx);
    client_send(busy, "POST", "/v1/chat/completions", "", body);
    free(body);
    flight_wait w = {fx->sim, "one", 1};
    RUN_UNTIL(fx, in_flight_is, &w);
    for (int p = P_OLLAMA; p <= P_ANTHROPIC; p++) {
        result r;
        ask(fx, (proto)p, true, "one", NULL, "REPLY: ok", NULL, &r);
        assert_int_equal(r.status, 429);
        assert_true(header_is(r.head, "Retry-After", "1"));
        json_t *doc = must_parse(r.raw);
        if (p == P_OLLAMA)
            assert_non_null(json_string_value(json_object_get(doc, "error")));
        else
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(doc, "error"), "type")),
                "rate_limit_error");
        json_decref(doc);
        result_free(&r);
    }
    assert_int_equal(model_stat(fx->sim, "one", "rejected"), 2);
    assert_int_equal(model_stat(fx->sim, "one", "peak_in_flight"), 2);
    assert_int_equal(model_stat(fx->sim, "one", "faults"), 0);
    client_close(busy);
    w.want = 0;
    RUN_UNTIL(fx, in_flight_is, &w);
    fixture_free(fx);
}

static void test_stats_tokens(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    long in = 0, out = 0;
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            result r;
            ask(fx, (proto)p, stream, "count", "Sys.", "How many?", NULL, &r);
            assert_int_equal(r.status, 200);
            in += r.in;
            out += r.out;
            result_free(&r);
        }
    }
    /* Replies that report no usage, or do not complete, add nothing. */
    result r;
    ask(fx, P_OPENAI, false, "count", NULL, "FAULT: nousage\nREPLY: a b", NULL, &r);
    result_free(&r);
    ask(fx, P_OLLAMA, false, "count", NULL, "FAULT: 500", NULL, &r);
    result_free(&r);
    ask(fx, P_ANTHROPIC, false, "count", NULL, "FAULT: error", NULL, &r);
    result_free(&r);
    json_t *doc = fr_sim_stats(fx->sim);
    json_t *m = json_object_get(json_object_get(doc, "models"), "count");
    assert_int_equal(int_member(m, "input_tokens"), in);
    assert_int_equal(int_member(m, "output_tokens"), out);
    assert_int_equal(int_member(m, "requests"), 9);
    assert_int_equal(int_member(m, "faults"), 3);
    assert_int_equal(int_member(m, "in_flight"), 0);
    json_decref(doc);
    fr_sim_reset(fx->sim);
    ask(fx, P_OLLAMA, false, "count", NULL, "REPLY: a b c", NULL, &r);
    assert_int_equal(model_stat(fx->sim, "count", "output_tokens"), 3);
    assert_int_equal(model_stat(fx->sim, "count", "input_tokens"), r.in);
    assert_int_equal(model_stat(fx->sim, "count", "faults"), 0);
    result_free(&r);
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocols_agree),     cmocka_unit_test(test_anthropic_wire),
        cmocka_unit_test(test_ollama_wire),         cmocka_unit_test(test_structured_output),
        cmocka_unit_test(test_limit_all_protocols), cmocka_unit_test(test_stats_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
