/* Unit test of flowrun-sim's faults: each FAULT: kind (error statuses, a cut
 * or hanging reply, bad JSON or UTF-8, no usage, an error mid-stream, a
 * repeated chunk, JSON that breaks the schema, a key echoed in a 401) under
 * the protocols, the per-model fault scripts, and how faults are counted. */

#include "tests/unit/support/sim_proto.h"

/* Sends `body` to `path` and waits until the server closes; returns the raw
 * bytes received (owned). */
static char *send_until_eof(fixture *fx, const char *path, const char *body, size_t *len)
{
    client *c = client_open(fx);
    client_send(c, "POST", path, "", body);
    RUN_UNTIL(fx, got_eof, c);
    *len = c->in.len;
    char *raw = fr_xstrndup(fr_buf_str(&c->in), c->in.len);
    client_close(c);
    return raw;
}

/* De-chunks the complete chunks after the head of `raw`; sets `*terminated`
 * when the zero chunk came. Returns the owned body. */
static char *dechunk(const char *raw, bool *terminated)
{
    const char *p = strstr(raw, "\r\n\r\n");
    assert_non_null(p);
    p += 4;
    fr_buf body;
    fr_buf_init(&body, 0);
    *terminated = false;
    for (;;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            break;
        size_t n = strtoul(p, NULL, 16);
        if (n == 0) {
            *terminated = eol != p && strcmp(eol, "\r\n\r\n") == 0;
            break;
        }
        if (strlen(eol + 2) < n + 2)
            break;
        fr_buf_append(&body, eol + 2, n);
        p = eol + 2 + n + 2;
    }
    return fr_buf_take(&body);
}

static char *fault_prompt(const char *kind, const char *reply)
{
    return fr_xasprintf("Do it.\nFAULT: %s\nREPLY: %s", kind, reply);
}

#define LONG_REPLY "alpha beta gamma delta epsilon zeta eta theta iota kappa"

static void test_fault_status(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    struct {
        const char *kind;
        proto p;
        int status;
        bool retry_after;
        const char *type; /* OpenAI error.type or Anthropic error.type; NULL for Ollama */
    } cases[] = {
        {"429", P_OLLAMA, 429, true, NULL},
        {"429", P_ANTHROPIC, 429, true, "rate_limit_error"},
        {"500", P_OPENAI, 500, false, "server_error"},
        {"500", P_ANTHROPIC, 500, false, "api_error"},
        {"503", P_OPENAI, 503, true, "server_error"},
        {"503", P_OLLAMA, 503, true, NULL},
        {"529", P_ANTHROPIC, 529, false, "overloaded_error"},
        {"529", P_OPENAI, 529, false, "server_error"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *user = fault_prompt(cases[i].kind, "never");
        result r;
        ask(fx, cases[i].p, i % 2 == 0, "flt", NULL, user, NULL, &r);
        assert_int_equal(r.status, cases[i].status);
        char *ra = header(r.head, "Retry-After");
        if (cases[i].retry_after)
            assert_string_equal(ra, "1");
        else
            assert_null(ra);
        free(ra);
        json_t *doc = must_parse(r.raw);
        json_t *err = json_object_get(doc, "error");
        if (cases[i].p == P_OLLAMA) {
            assert_non_null(json_string_value(err));
        } else {
            assert_string_equal(json_string_value(json_object_get(err, "type")), cases[i].type);
            assert_non_null(json_string_value(json_object_get(err, "message")));
        }
        if (cases[i].p == P_ANTHROPIC)
            assert_string_equal(json_string_value(json_object_get(doc, "type")), "error");
        json_decref(doc);
        result_free(&r);
        free(user);
    }
    /* Counted as requests and as faults; none stays in flight. */
    assert_int_equal(model_stat(fx->sim, "flt", "requests"), 8);
    assert_int_equal(model_stat(fx->sim, "flt", "faults"), 8);
    assert_int_equal(model_stat(fx->sim, "flt", "in_flight"), 0);
    assert_int_equal(model_stat(fx->sim, "flt", "output_tokens"), 0);

    /* An unknown kind is the client's mistake. */
    result r;
    ask(fx, P_OPENAI, false, "flt", NULL, "FAULT: sometimes", NULL, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.raw, "FAULT"));
    result_free(&r);
    fixture_free(fx);
}

static void test_fault_cut(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        /* Streamed: about half the content, then the close, without the
         * chunked terminator or the protocol's own end. */
        char *user = fault_prompt("cut", LONG_REPLY);
        char *body = proto_body((proto)p, "cut", NULL, user, true, NULL);
        size_t len;
        char *raw = send_until_eof(fx, proto_paths[p], body, &len);
        bool terminated;
        char *data = dechunk(raw, &terminated);
        assert_false(terminated);
        assert_null(strstr(data, "[DONE]"));
        assert_null(strstr(data, "message_stop"));
        assert_null(strstr(data, "\"done\":true"));
        assert_non_null(strstr(data, "alpha"));
        assert_null(strstr(data, "kappa"));
        free(data);
        free(raw);
        free(body);

        /* Not streamed: a Content-Length, half the body, the close. */
        body = proto_body((proto)p, "cut", NULL, user, false, NULL);
        raw = send_until_eof(fx, proto_paths[p], body, &len);
        const char *sep = strstr(raw, "\r\n\r\n");
        char *head = fr_xstrndup(raw, (size_t)(sep - raw) + 2);
        char *cl = header(head, "Content-Length");
        size_t got = len - (size_t)(sep + 4 - raw);
        assert_true(got > 0 && got < strtoul(cl, NULL, 10));
        assert_true(header_is(head, "Connection", "close"));
        free(cl);
        free(head);
        free(raw);
        free(body);
        free(user);
    }
    assert_int_equal(model_stat(fx->sim, "cut", "faults"), 6);
    assert_int_equal(model_stat(fx->sim, "cut", "in_flight"), 0);
    assert_int_equal(model_stat(fx->sim, "cut", "input_tokens"), 0); /* none completed */
    fixture_free(fx);
}

static void test_fault_hang(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    char *user = fault_prompt("hang", "never");
    char *body = proto_body(P_OLLAMA, "hang", NULL, user, true, NULL);
    client *c = client_open(fx);
    client_send(c, "POST", "/api/chat", "", body);
    flight_wait w = {fx->sim, "hang", 1};
    RUN_UNTIL(fx, in_flight_is, &w);
    loop_spin(&fx->loop, 5); /* nothing comes back */
    assert_int_equal(c->in.len, 0);
    assert_false(c->eof);
    /* The client gives up: its slot comes back. */
    client_close(c);
    w.want = 0;
    RUN_UNTIL(fx, in_flight_is, &w);
    assert_int_equal(model_stat(fx->sim, "hang", "faults"), 1);

    /* One more left hanging when the simulator is freed: the loop still
     * ends with every handle closed (fixture_free checks it). */
    client *c2 = client_open(fx);
    client_send(c2, "POST", "/api/chat", "", body);
    w.want = 1;
    RUN_UNTIL(fx, in_flight_is, &w);
    fr_sim_free(fx->sim);
    fx->sim = NULL;
    RUN_UNTIL(fx, got_eof, c2);
    client_close(c2);
    free(body);
    free(user);
    fixture_free(fx);
}

static void test_fault_content(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    result r;

    /* badjson, streamed (Ollama): one line does not parse; the stream still
     * ends with its done line. */
    char *user = fault_prompt("badjson", LONG_REPLY);
    ask(fx, P_OLLAMA, false, "bad", NULL, "REPLY: warm", NULL, &r); /* a normal one first */
    assert_int_equal(r.status, 200);
    result_free(&r);
    char *body = proto_body(P_OLLAMA, "bad", NULL, user, true, NULL);
    response raw = {0};
    roundtrip(fx, "POST", "/api/chat", body, &raw);
    free(body);
    int bad_lines = 0, lines = 0;
    for (const char *p = raw.body; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        json_t *doc = json_loadb(p, (size_t)(nl - p), 0, NULL);
        bad_lines += doc == NULL;
        lines++;
        json_decref(doc);
        p = nl + 1;
    }
    assert_int_equal(bad_lines, 1);
    assert_true(lines >= 3);
    assert_non_null(strstr(raw.body, "\"done\":true"));
    response_free(&raw);

    /* badjson, not streamed (OpenAI): a 200 whose body is cut JSON. */
    body = proto_body(P_OPENAI, "bad", NULL, user, false, NULL);
    roundtrip(fx, "POST", "/v1/chat/completions", body, &raw);
    assert_int_equal(raw.status, 200);
    assert_null(json_loadb(raw.body, raw.body_len, 0, NULL));
    response_free(&raw);
    free(body);
    free(user);

    /* nousage: no usage field anywhere, under every protocol. */
    user = fault_prompt("nousage", "a b c");
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            ask(fx, (proto)p, stream, "bad", NULL, user, NULL, &r);
            assert_int_equal(r.status, 200);
            assert_string_equal(r.text, "a b c");
            assert_int_equal(r.in, -1);
            assert_int_equal(r.out, -1);
            assert_null(strstr(r.raw, "usage"));
            assert_null(strstr(r.raw, "eval_count"));
            result_free(&r);
        }
    }
    free(user);

    /* badutf8: invalid bytes inside the content, the rest intact. */
    user = fault_prompt("badutf8", "hello world");
    body = proto_body(P_OPENAI, "bad", NULL, user, false, NULL);
    roundtrip(fx, "POST", "/v1/chat/completions", body, &raw);
    assert_int_equal(raw.status, 200);
    assert_non_null(strstr(raw.body, "\"h\xff\xfe"
                                     "ello world\""));
    assert_null(json_loadb(raw.body, raw.body_len, 0, NULL)); /* jansson rejects it */
    response_free(&raw);
    free(body);
    body = proto_body(P_ANTHROPIC, "bad", NULL, user, true, NULL);
    roundtrip(fx, "POST", "/v1/messages", body, &raw);
    assert_non_null(strstr(raw.body, "\xff\xfe"));
    assert_non_null(strstr(raw.body, "message_stop"));
    response_free(&raw);
    free(body);
    free(user);

    /* error mid-stream: some content, then the protocol's error event. */
    user = fault_prompt("error", LONG_REPLY);
    body = proto_body(P_ANTHROPIC, "bad", NULL, user, true, NULL);
    roundtrip(fx, "POST", "/v1/messages", body, &raw);
    sse_events ev;
    parse_sse(raw.body, &ev);
    assert_string_equal(ev.items[ev.n - 1].name, "error");
    json_t *doc = must_parse(ev.items[ev.n - 1].data);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "error"), "type")),
                        "overloaded_error");
    json_decref(doc);
    assert_string_equal(ev.items[ev.n - 2].name, "content_block_delta");
    sse_free(&ev);
    assert_null(strstr(raw.body, "message_stop"));
    response_free(&raw);
    free(body);
    body = proto_body(P_OPENAI, "bad", NULL, user, true, NULL);
    roundtrip(fx, "POST", "/v1/chat/completions", body, &raw);
    parse_sse(raw.body, &ev);
    assert_string_equal(ev.items[ev.n - 1].data, "[DONE]");
    doc = must_parse(ev.items[ev.n - 2].data);
    assert_non_null(json_object_get(doc, "error"));
    json_decref(doc);
    assert_true(ev.n >= 3); /* content came first */
    sse_free(&ev);
    response_free(&raw);
    free(body);
    body = proto_body(P_OLLAMA, "bad", NULL, user, true, NULL);
    roundtrip(fx, "POST", "/api/chat", body, &raw);
    const char *last = raw.body + strlen(raw.body) - 1;
    while (last > raw.body && last[-1] != '\n')
        last--;
    assert_memory_equal(last, "{\"error\":", 9);
    response_free(&raw);
    free(body);
    ask(fx, P_OLLAMA, false, "bad", NULL, user, NULL, &r); /* not streamed: a 500 */
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.raw, "\"error\""));
    result_free(&r);
    free(user);

    /* repeat: the first chunk 300 times in a row, then the rest as usual;
     * usage counts what was sent. */
    user = fault_prompt("repeat", "one two three four");
    body = proto_body(P_OPENAI, "bad", NULL, user, true, NULL);
    roundtrip(fx, "POST", "/v1/chat/completions", body, &raw);
    parse_sse(raw.body, &ev);
    int same = 0;
    for (int i = 1; i < ev.n; i++)
        same += strcmp(ev.items[i].data, ev.items[0].data) == 0;
    assert_int_equal(same, 299);
    sse_free(&ev);
    result rr = {0};
    rr.in = rr.out = -1;
    parse_openai_stream(raw.body, &rr);
    assert_int_equal(rr.out, 4 + 3 * 299);
    assert_string_equal(rr.finish, "stop");
    result_free(&rr);
    response_free(&raw);
    free(body);
    ask(fx, P_ANTHROPIC, false, "bad", NULL, user, NULL, &r);
    assert_int_equal(r.out, 4 + 3 * 299);
    assert_int_equal(strlen(r.text), 300 * strlen("one two three") + strlen(" four"));
    result_free(&r);
    free(user);
    fixture_free(fx);
}

static void test_fault_badschema(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    json_t *schema = must_parse(test_schema);
    char *user = fault_prompt("badschema", "x");
    user[strlen(user) - strlen("\nREPLY: x")] = '\0'; /* no REPLY: generated JSON */
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        char *extra = structured_extra((proto)p, test_schema);
        result r;
        ask(fx, (proto)p, p == P_OLLAMA, "bs", NULL, user, extra, &r);
        assert_int_equal(r.status, 200);
        json_t *v = must_parse(r.text);            /* valid JSON... */
        assert_false(conforms(v, schema, schema)); /* ...that breaks the schema */
        json_decref(v);
        result_free(&r);
        free(extra);
    }
    /* A plain request with badschema is a normal reply. */
    result r;
    ask(fx, P_OPENAI, false, "bs", NULL, "FAULT: badschema\nREPLY: fine", NULL, &r);
    assert_string_equal(r.text, "fine");
    result_free(&r);
    assert_int_equal(model_stat(fx->sim, "bs", "faults"), 3);
    free(user);
    json_decref(schema);
    fixture_free(fx);
}

/* `echokey` answers 401 with the key the request sent in its message, as
 * some providers do: what flowrun must never pass on. */
static void test_fault_echokey(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    struct {
        proto p;
        const char *header; /* extra header lines */
        const char *echoed; /* expected in the message; NULL: none sent */
        const char *type;   /* OpenAI/Anthropic error.type; NULL for Ollama */
    } cases[] = {
        {P_OPENAI, "Authorization: Bearer sk-echo-0123456789abcdef\r\n", "sk-echo-0123456789abcdef",
         "invalid_request_error"},
        {P_OLLAMA, "authorization: bearer sk-echo-ollama-42\r\n", "sk-echo-ollama-42", NULL},
        {P_ANTHROPIC, "x-api-key: sk-ant-echo-77\r\n", "sk-ant-echo-77", "authentication_error"},
        {P_OPENAI, "X-Goog-Api-Key: AIza-echo-99\r\n", "AIza-echo-99", "invalid_request_error"},
        {P_ANTHROPIC, "", NULL, "authentication_error"},
    };
    /* All on one keep-alive connection: a credential never outlives its request. */
    client *c = client_open(fx);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *body = proto_body(cases[i].p, "ek", NULL, "Hi.\nFAULT: echokey", i % 2 == 0, NULL);
        client_send(c, "POST", proto_paths[cases[i].p], cases[i].header, body);
        free(body);
        response r = {0};
        client_read(fx, c, &r);
        assert_int_equal(r.status, 401);
        assert_null(header(r.head, "Retry-After"));
        json_t *doc = body_json(&r);
        json_t *err = json_object_get(doc, "error");
        const char *msg = cases[i].p == P_OLLAMA
                              ? json_string_value(err)
                              : json_string_value(json_object_get(err, "message"));
        assert_non_null(msg);
        if (cases[i].echoed) {
            assert_non_null(strstr(msg, cases[i].echoed));
            assert_null(strstr(msg, "Bearer"));
            assert_null(strstr(msg, "bearer"));
        } else {
            assert_non_null(strstr(msg, "No API key provided"));
        }
        if (cases[i].type)
            assert_string_equal(json_string_value(json_object_get(err, "type")), cases[i].type);
        if (cases[i].p == P_OPENAI)
            assert_string_equal(json_string_value(json_object_get(err, "code")), "invalid_api_key");
        json_decref(doc);
        response_free(&r);
    }
    client_close(c);
    assert_int_equal(model_stat(fx->sim, "ek", "faults"), 5);
    assert_int_equal(model_stat(fx->sim, "ek", "in_flight"), 0);
    fixture_free(fx);
}

static void test_fault_script(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model m = {.name = "scripted", .faults = "500+429+ok+cut+503"};
    assert_int_equal(fr_sim_set_model(fx->sim, &m), FR_OK);
    fr_sim_model bad = {.name = "scripted", .faults = "500+sometimes"};
    assert_int_equal(fr_sim_set_model(fx->sim, &bad), FR_EINVAL); /* and nothing changes */
    fr_sim_model empty = {.name = "scripted", .faults = "500++ok"};
    assert_int_equal(fr_sim_set_model(fx->sim, &empty), FR_EINVAL);

    const int want[] = {500, 429, 200, 0 /* cut */, 503, 200, 200};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        proto p = (proto)(i % 3);
        char *body = proto_body(p, "scripted", NULL, "REPLY: a b c d e f g h", false, NULL);
        if (want[i] == 0) {
            size_t len;
            char *raw = send_until_eof(fx, proto_paths[p], body, &len);
            const char *sep = strstr(raw, "\r\n\r\n");
            char *head = fr_xstrndup(raw, (size_t)(sep - raw) + 2);
            char *cl = header(head, "Content-Length");
            assert_true(len - (size_t)(sep + 4 - raw) < strtoul(cl, NULL, 10));
            free(cl);
            free(head);
            free(raw);
        } else {
            result r;
            ask_body(fx, p, false, body, &r);
            assert_int_equal(r.status, want[i]);
            result_free(&r);
        }
        free(body);
    }
    assert_int_equal(model_stat(fx->sim, "scripted", "faults"), 4);
    assert_int_equal(model_stat(fx->sim, "scripted", "requests"), 7);

    /* A FAULT: line overrides the script entry it consumes. */
    fr_sim_model again = {.name = "scripted", .faults = "500"};
    assert_int_equal(fr_sim_set_model(fx->sim, &again), FR_OK);
    result r;
    ask(fx, P_OPENAI, false, "scripted", NULL, "FAULT: ok\nREPLY: fine", NULL, &r);
    assert_int_equal(r.status, 200);
    result_free(&r);
    ask(fx, P_OPENAI, false, "scripted", NULL, "REPLY: fine", NULL, &r);
    assert_int_equal(r.status, 200);
    result_free(&r);

    /* The default script: each model not set explicitly gets its own copy. */
    fr_sim_model dflt = {.faults = "529"};
    assert_int_equal(fr_sim_set_model(fx->sim, &dflt), FR_OK);
    for (int i = 0; i < 2; i++) {
        ask(fx, P_ANTHROPIC, false, i ? "other-b" : "other-a", NULL, "REPLY: x", NULL, &r);
        assert_int_equal(r.status, 529);
        result_free(&r);
    }
    ask(fx, P_ANTHROPIC, false, "other-a", NULL, "REPLY: x", NULL, &r);
    assert_int_equal(r.status, 200);
    result_free(&r);
    ask(fx, P_ANTHROPIC, false, "scripted", NULL, "REPLY: x", NULL, &r);
    assert_int_equal(r.status, 200); /* set explicitly: the default script does not apply */
    result_free(&r);
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fault_status),    cmocka_unit_test(test_fault_cut),
        cmocka_unit_test(test_fault_hang),      cmocka_unit_test(test_fault_content),
        cmocka_unit_test(test_fault_badschema), cmocka_unit_test(test_fault_echokey),
        cmocka_unit_test(test_fault_script),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
