/* Unit test of flowrun-sim's HTTP server: runs the simulator and a raw TCP
 * client on one uv loop and checks what a client relies on (OpenAI replies,
 * streaming, generated text, limits, counters, keep-alive, errors, partial
 * reads) and that every handle closes. */

#include "tests/unit/support/sim_client.h"

static json_int_t usage_of(const json_t *doc, const char *key)
{
    json_t *v = json_object_get(json_object_get(doc, "usage"), key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *finish_of(const json_t *doc)
{
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    return json_string_value(json_object_get(choice, "finish_reason"));
}

static char *chat_body(const char *model, const char *content, const char *extra)
{
    json_t *doc = json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s}]}", "model", model, "messages", "role",
                            "system", "content", "Be brief.", "role", "user", "content", content);
    return body_with(doc, extra);
}

/* Posts a non-streaming chat request; returns the parsed body (owned). */
static json_t *chat(fixture *fx, const char *model, const char *content, const char *extra)
{
    char *body = chat_body(model, content, extra);
    response r = {0};
    roundtrip(fx, "POST", "/v1/chat/completions", body, &r);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.head, "Content-Type", "application/json"));
    json_t *doc = body_json(&r);
    response_free(&r);
    free(body);
    return doc;
}

/* The SSE events of a streamed body: every "data: " payload in order. */
typedef struct events {
    char *items[256];
    int n;
} events;

static void parse_events(const char *body, events *ev)
{
    ev->n = 0;
    const char *p = body;
    while (*p) {
        const char *sep = strstr(p, "\n\n");
        assert_non_null(sep); /* every event ends with a blank line */
        assert_memory_equal(p, "data: ", 6);
        assert_true(ev->n < 256);
        ev->items[ev->n++] = fr_xstrndup(p + 6, (size_t)(sep - p - 6));
        p = sep + 2;
    }
}

static void events_free(events *ev)
{
    for (int i = 0; i < ev->n; i++)
        free(ev->items[i]);
    ev->n = 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_scripted_reply(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *prompt = "Please answer.\nREPLY: hello world\nREPLY: not this one";
    json_t *doc = chat(fx, "gpt-sim", prompt, NULL);
    assert_string_equal(content_of(doc), "hello world");
    assert_string_equal(finish_of(doc), "stop");
    assert_string_equal(json_string_value(json_object_get(doc, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(doc, "model")), "gpt-sim");
    json_t *msg = json_object_get(json_array_get(json_object_get(doc, "choices"), 0), "message");
    assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
    size_t bytes = strlen("Be brief.") + strlen(prompt);
    assert_int_equal(usage_of(doc, "prompt_tokens"), (bytes + 3) / 4);
    assert_int_equal(usage_of(doc, "completion_tokens"), 2);
    assert_int_equal(usage_of(doc, "total_tokens"), (bytes + 3) / 4 + 2);
    json_decref(doc);

    /* Only the last user message counts, and the base URL may omit /v1. */
    char *body = chat_body("gpt-sim", "no script here", NULL);
    json_t *req = json_loads(body, 0, NULL);
    json_array_insert_new(json_object_get(req, "messages"), 0,
                          json_pack("{s:s,s:s}", "role", "user", "content", "REPLY: old"));
    free(body);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    response r = {0};
    roundtrip(fx, "POST", "/chat/completions", body, &r);
    assert_int_equal(r.status, 200);
    doc = body_json(&r);
    assert_string_not_equal(content_of(doc), "old");
    json_decref(doc);
    response_free(&r);
    free(body);

    /* max_tokens cuts the reply and says so. */
    doc = chat(fx, "gpt-sim", "REPLY: one two three four five", "{\"max_tokens\":3}");
    assert_string_equal(content_of(doc), "one two three");
    assert_string_equal(finish_of(doc), "length");
    assert_int_equal(usage_of(doc, "completion_tokens"), 3);
    json_decref(doc);
    fixture_free(fx);
}

/* Streams `content` for `model` and checks the framing; returns the text. */
static char *stream_chat(fixture *fx, const char *model, const char *content, bool usage,
                         int *content_chunks, json_t **usage_out)
{
    char *body = chat_body(model, content,
                           usage ? "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
                                 : "{\"stream\":true}");
    response r = {0};
    roundtrip(fx, "POST", "/v1/chat/completions", body, &r);
    free(body);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.head, "Content-Type", "text/event-stream"));
    assert_true(header_is(r.head, "Transfer-Encoding", "chunked"));
    events ev;
    parse_events(r.body, &ev);
    fr_buf text;
    fr_buf_init(&text, 0);
    assert_true(ev.n >= (usage ? 4 : 3));
    assert_string_equal(ev.items[ev.n - 1], "[DONE]");
    int last_chunk = ev.n - (usage ? 3 : 2); /* the one with finish_reason */
    *content_chunks = 0;
    for (int i = 0; i < ev.n - 1; i++) {
        json_t *doc = json_loads(ev.items[i], 0, NULL);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "object")),
                            "chat.completion.chunk");
        assert_string_equal(json_string_value(json_object_get(doc, "model")), model);
        json_t *choices = json_object_get(doc, "choices");
        if (i > last_chunk) {
            assert_int_equal(json_array_size(choices), 0);
            *usage_out = json_incref(json_object_get(doc, "usage"));
        } else {
            json_t *choice = json_array_get(choices, 0);
            json_t *delta = json_object_get(choice, "delta");
            const char *piece = json_string_value(json_object_get(delta, "content"));
            if (i == 0)
                assert_string_equal(json_string_value(json_object_get(delta, "role")), "assistant");
            if (i < last_chunk) {
                assert_non_null(piece);
                assert_true(json_is_null(json_object_get(choice, "finish_reason")));
                fr_buf_puts(&text, piece);
                (*content_chunks)++;
            } else {
                assert_null(piece);
                assert_string_equal(json_string_value(json_object_get(choice, "finish_reason")),
                                    "stop");
            }
        }
        json_decref(doc);
    }
    events_free(&ev);
    response_free(&r);
    return fr_buf_take(&text);
}

static void test_stream(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    int chunks = 0;
    json_t *usage = NULL;
    char *text = stream_chat(fx, "gpt-sim", "REPLY: hello world", true, &chunks, &usage);
    assert_string_equal(text, "hello world");
    assert_int_equal(chunks, 1);
    assert_non_null(usage);
    assert_int_equal(json_integer_value(json_object_get(usage, "completion_tokens")), 2);
    assert_int_equal(json_integer_value(json_object_get(usage, "prompt_tokens")),
                     (strlen("Be brief.") + strlen("REPLY: hello world") + 3) / 4);
    assert_int_equal(json_integer_value(json_object_get(usage, "total_tokens")),
                     json_integer_value(json_object_get(usage, "prompt_tokens")) + 2);
    json_decref(usage);
    free(text);

    /* Longer replies come in several pieces that add up to the exact text,
     * and without include_usage there is no usage chunk. */
    usage = NULL;
    text = stream_chat(fx, "gpt-sim", "REPLY: a  b c d e f g h", false, &chunks, &usage);
    assert_string_equal(text, "a  b c d e f g h");
    assert_true(chunks >= 3);
    assert_null(usage);
    free(text);

    /* A streamed generated reply equals the non-streamed one. */
    text = stream_chat(fx, "gpt-sim", "tell me a story", false, &chunks, &usage);
    json_t *doc = chat(fx, "gpt-sim", "tell me a story", NULL);
    assert_string_equal(text, content_of(doc));
    json_decref(doc);
    free(text);
    fixture_free(fx);
}

static void test_generated_text(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    json_t *a1 = chat(fx, "model-a", "What is the capital of France?", NULL);
    json_t *a2 = chat(fx, "model-a", "What is the capital of France?", NULL);
    json_t *b = chat(fx, "model-b", "What is the capital of France?", NULL);
    json_t *a3 = chat(fx, "model-a", "What is the capital of Spain?", NULL);
    const char *t1 = content_of(a1);
    assert_string_equal(t1, content_of(a2));
    assert_string_not_equal(t1, content_of(b));
    assert_string_not_equal(t1, content_of(a3));
    assert_memory_equal(t1, "model-a says: ", 14);
    assert_memory_equal(content_of(b), "model-b says: ", 14);
    /* The words after the prefix depend on the model too, not only the prefix. */
    assert_string_not_equal(t1 + 14, content_of(b) + 14);
    long words = count_words(t1);
    assert_true(words >= 2 + 12 && words <= 2 + 40);
    assert_int_equal(usage_of(a1, "completion_tokens"), words);

    /* fr_sim_reply_text predicts it. */
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "Be brief.",
                             "role", "user", "content", "What is the capital of France?");
    char *predicted = fr_sim_reply_text("model-a", msgs);
    assert_string_equal(predicted, t1);
    free(predicted);
    json_decref(msgs);

    json_t *cut = chat(fx, "model-a", "What is the capital of France?", "{\"max_tokens\":4}");
    assert_int_equal(usage_of(cut, "completion_tokens"), 4);
    assert_int_equal(count_words(content_of(cut)), 4);
    assert_string_equal(finish_of(cut), "length");
    assert_memory_equal(content_of(cut), t1, strlen(content_of(cut)));
    json_decref(cut);
    json_decref(a1);
    json_decref(a2);
    json_decref(a3);
    json_decref(b);
    fixture_free(fx);
}

static void test_concurrency_limit(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model lim = {.name = "lim",
                        .latency_ms = 600000,
                        .max_concurrent = 2}; /* replies never come during the test */
    fr_sim_set_model(fx->sim, &lim);
    char *body = chat_body("lim", "REPLY: ok", NULL);
    client *c1 = client_open(fx);
    client *c2 = client_open(fx);
    client *c3 = client_open(fx);
    client_send(c1, "POST", "/v1/chat/completions", "", body);
    client_send(c2, "POST", "/v1/chat/completions", "", body);
    flight_wait w = {fx->sim, "lim", 2};
    RUN_UNTIL(fx, in_flight_is, &w);

    client_send(c3, "POST", "/v1/chat/completions", "", body);
    response r = {0};
    client_read(fx, c3, &r);
    assert_int_equal(r.status, 429);
    assert_true(header_is(r.head, "Retry-After", "1"));
    json_t *doc = body_json(&r);
    json_t *err = json_object_get(doc, "error");
    assert_non_null(json_string_value(json_object_get(err, "message")));
    assert_string_equal(json_string_value(json_object_get(err, "code")), "rate_limit_exceeded");
    json_decref(doc);
    response_free(&r);

    assert_int_equal(fr_sim_peak(fx->sim, "lim"), 3);
    assert_int_equal(fr_sim_peak(fx->sim, "never-used"), -1);
    assert_int_equal(model_stat(fx->sim, "lim", "requests"), 3);
    assert_int_equal(model_stat(fx->sim, "lim", "rejected"), 1);
    assert_int_equal(model_stat(fx->sim, "lim", "in_flight"), 2);

    /* The connection that got the 429 stays usable; other models are not limited. */
    free(body);
    body = chat_body("other", "REPLY: fine", NULL);
    client_send(c3, "POST", "/v1/chat/completions", "", body);
    client_read(fx, c3, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c3);

    /* Clients that hang up mid-reply free their slots at once. */
    client_close(c1);
    client_close(c2);
    w.want = 0;
    RUN_UNTIL(fx, in_flight_is, &w);
    assert_int_equal(fr_sim_peak(fx->sim, "lim"), 3);
    free(body);

    /* The same for a stream cut after its first chunk: 1 token/s, so the
     * rest would take seconds. */
    fr_sim_model slow = {.name = "slow", .tokens_per_s = 1};
    fr_sim_set_model(fx->sim, &slow);
    body = chat_body("slow", "REPLY: w1 w2 w3 w4 w5 w6 w7 w8 w9", "{\"stream\":true}");
    client *c4 = client_open(fx);
    client_send(c4, "POST", "/v1/chat/completions", "", body);
    free(body);
    w.model = "slow";
    w.want = 1;
    RUN_UNTIL(fx, in_flight_is, &w);
    client_close(c4);
    w.want = 0;
    RUN_UNTIL(fx, in_flight_is, &w);
    fixture_free(fx);
}

static void test_keep_alive(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    char *b1 = chat_body("m", "REPLY: first", NULL);
    char *b2 = chat_body("m", "REPLY: second", NULL);
    client *c = client_open(fx);
    response r = {0};
    client_send(c, "POST", "/v1/chat/completions", "", b1);
    client_read(fx, c, &r);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.head, "Connection", "keep-alive"));
    json_t *doc = body_json(&r);
    assert_string_equal(content_of(doc), "first");
    json_decref(doc);
    response_free(&r);
    client_send(c, "POST", "/v1/chat/completions", "", b2);
    client_read(fx, c, &r);
    doc = body_json(&r);
    assert_string_equal(content_of(doc), "second");
    json_decref(doc);
    response_free(&r);

    /* Pipelined: two requests in one write, answered in order. */
    char *q1 = request_text("POST", "/v1/chat/completions", "", b2);
    char *q2 = request_text("POST", "/v1/chat/completions", "", b1);
    char *both = fr_xasprintf("%s%s", q1, q2);
    client_send_raw(c, both, strlen(both));
    free(q1);
    free(q2);
    free(both);
    client_read(fx, c, &r);
    doc = body_json(&r);
    assert_string_equal(content_of(doc), "second");
    json_decref(doc);
    response_free(&r);
    client_read(fx, c, &r);
    doc = body_json(&r);
    assert_string_equal(content_of(doc), "first");
    json_decref(doc);
    response_free(&r);

    /* A stream on the same connection, then Connection: close is honoured. */
    char *sb = chat_body("m", "REPLY: streamed here", "{\"stream\":true}");
    client_send(c, "POST", "/v1/chat/completions", "", sb);
    client_read(fx, c, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "data: [DONE]\n\n"));
    response_free(&r);
    free(sb);
    json_t *st = fr_sim_stats(fx->sim);
    assert_int_equal(json_integer_value(json_object_get(st, "connections")), 1);
    json_decref(st);

    client_send(c, "POST", "/v1/chat/completions", "Connection: close\r\n", b1);
    client_read(fx, c, &r);
    assert_int_equal(r.status, 200);
    assert_true(header_is(r.head, "Connection", "close"));
    response_free(&r);
    RUN_UNTIL(fx, got_eof, c);
    client_close(c);
    free(b1);
    free(b2);
    fixture_free(fx);
}

static void expect_error(fixture *fx, client *c, int status, const char *type)
{
    response r = {0};
    client_read(fx, c, &r);
    assert_int_equal(r.status, status);
    json_t *doc = body_json(&r);
    json_t *err = json_object_get(doc, "error");
    assert_non_null(json_string_value(json_object_get(err, "message")));
    assert_string_equal(json_string_value(json_object_get(err, "type")), type);
    json_decref(doc);
    response_free(&r);
}

static void test_errors(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    client *c = client_open(fx);
    /* All of these keep the connection open. */
    client_send(c, "GET", "/v2/nothing", "", NULL);
    expect_error(fx, c, 404, "invalid_request_error");
    client_send(c, "POST", "/v1/chat/completions", "", "{\"model\": \"m\", \"messages\": [");
    expect_error(fx, c, 400, "invalid_request_error");
    client_send(c, "POST", "/v1/chat/completions", "", "{\"model\":\"m\"}");
    expect_error(fx, c, 400, "invalid_request_error");
    client_send(c, "POST", "/v1/chat/completions", "", "[1,2]");
    expect_error(fx, c, 400, "invalid_request_error");
    client_send(c, "POST", "/v1/chat/completions", "",
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                "\"max_tokens\":0}");
    expect_error(fx, c, 400, "invalid_request_error");
    client_send(c, "GET", "/v1/chat/completions", "", NULL);
    expect_error(fx, c, 405, "invalid_request_error");
    client_send(c, "POST", "/v1/chat/completions", "", NULL);
    expect_error(fx, c, 411, "invalid_request_error");
    assert_int_equal(fr_sim_peak(fx->sim, "m"), -1); /* invalid requests are not counted */
    client_close(c);

    /* Chunked request bodies cannot be framed: 411, then close. */
    c = client_open(fx);
    client_send(c, "POST", "/v1/chat/completions", "Transfer-Encoding: chunked\r\n", NULL);
    expect_error(fx, c, 411, "invalid_request_error");
    RUN_UNTIL(fx, got_eof, c);
    client_close(c);

    /* Too large: 413 before the body is sent, then close. */
    c = client_open(fx);
    const char *big = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 9000000\r\n\r\n{";
    client_send_raw(c, big, strlen(big));
    expect_error(fx, c, 413, "invalid_request_error");
    RUN_UNTIL(fx, got_eof, c);
    client_close(c);

    /* Garbage request line: 400, then close. */
    c = client_open(fx);
    client_send_raw(c, "NONSENSE\r\n\r\n", 12);
    expect_error(fx, c, 400, "invalid_request_error");
    RUN_UNTIL(fx, got_eof, c);
    client_close(c);
    fixture_free(fx);
}

static bool got_continue(void *arg)
{
    client *c = arg;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    return c->in.len >= sizeof cont - 1 && memcmp(c->in.data, cont, sizeof cont - 1) == 0;
}

static void test_partial_reads(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    char *body = chat_body("m", "REPLY: pieces", NULL);
    char *req = request_text("POST", "/v1/chat/completions", "", body);
    size_t len = strlen(req);
    client *c = client_open(fx);
    /* Byte by byte through the head, then the body in two halves; the loop
     * runs between writes so the server sees many small reads. */
    char *head_end = strstr(req, "\r\n\r\n");
    size_t head_len = (size_t)(head_end - req) + 4;
    for (size_t i = 0; i < head_len; i++) {
        client_send_raw(c, req + i, 1);
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    size_t half = head_len + (len - head_len) / 2;
    client_send_raw(c, req + head_len, half - head_len);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(c->in.len, 0); /* nothing answered before the body is complete */
    client_send_raw(c, req + half, len - half);
    response r = {0};
    client_read(fx, c, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = body_json(&r);
    assert_string_equal(content_of(doc), "pieces");
    json_decref(doc);
    response_free(&r);

    /* Expect: 100-continue gets its interim response before the body. */
    char *hdr = fr_xasprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                             "Expect: 100-continue\r\nContent-Length: %zu\r\n\r\n",
                             strlen(body));
    client_send_raw(c, hdr, strlen(hdr));
    RUN_UNTIL(fx, got_continue, c);
    client_read(fx, c, &r);
    assert_int_equal(r.status, 100);
    response_free(&r);
    client_send_raw(c, body, strlen(body));
    client_read(fx, c, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(c);
    free(hdr);
    free(req);
    free(body);
    fixture_free(fx);
}

static void test_stats_and_reset(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    json_decref(chat(fx, "alpha", "REPLY: x", NULL));
    json_decref(chat(fx, "alpha", "REPLY: y", NULL));
    json_decref(chat(fx, "beta", "REPLY: z", NULL));
    response r = {0};
    roundtrip(fx, "GET", "/sim/stats", NULL, &r);
    assert_int_equal(r.status, 200);
    json_t *doc = body_json(&r);
    response_free(&r);
    assert_int_equal(json_integer_value(json_object_get(doc, "connections")), 4);
    assert_true(json_integer_value(json_object_get(doc, "first_request_unix_us")) > 0);
    json_t *alpha = json_object_get(json_object_get(doc, "models"), "alpha");
    assert_int_equal(json_integer_value(json_object_get(alpha, "requests")), 2);
    assert_int_equal(json_integer_value(json_object_get(alpha, "peak_in_flight")), 1);
    assert_int_equal(json_integer_value(json_object_get(alpha, "rejected")), 0);
    assert_int_equal(json_integer_value(json_object_get(alpha, "in_flight")), 0);
    assert_non_null(json_object_get(json_object_get(doc, "models"), "beta"));
    json_decref(doc);

    roundtrip(fx, "POST", "/sim/reset", NULL, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    assert_int_equal(fr_sim_peak(fx->sim, "alpha"), -1);
    doc = fr_sim_stats(fx->sim);
    assert_int_equal(json_integer_value(json_object_get(doc, "connections")), 0);
    assert_int_equal(json_integer_value(json_object_get(doc, "first_request_unix_us")), 0);
    assert_int_equal(json_object_size(json_object_get(doc, "models")), 0);
    json_decref(doc);
    fixture_free(fx);
}

static void test_latency_lower_bound(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model m = {.name = "lat",
                      .latency_ms = 40,
                      .tokens_per_s = 100}; /* 40 ms + 5 tokens at 100/s = 90 ms */
    fr_sim_set_model(fx->sim, &m);
    uint64_t t0 = uv_hrtime();
    json_t *doc = chat(fx, "lat", "REPLY: a b c d e", NULL);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_true(ms >= 89); /* timers never fire early; only a lower bound is checked */
    json_decref(doc);
    fixture_free(fx);
}

static void test_bind_failure(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_error err = {0};
    fr_sim *dup = fr_sim_new(&fx->loop, "127.0.0.1", fr_sim_port(fx->sim), &err);
    assert_null(dup);
    assert_int_equal(err.code, FR_ECONNECT);
    assert_non_null(strstr(err.msg, "cannot listen"));
    dup = fr_sim_new(&fx->loop, "not-an-ip", 0, &err);
    assert_null(dup);
    assert_int_equal(err.code, FR_EINVAL);
    fr_sim_free(NULL);
    fixture_free(fx);
}

static void test_free_with_open_connections(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model m = {.name = "hang", .latency_ms = 600000};
    fr_sim_set_model(fx->sim, &m);
    char *body = chat_body("hang", "REPLY: never", "{\"stream\":true}");
    client *c = client_open(fx);
    client *idle = client_open(fx);
    client_send(c, "POST", "/v1/chat/completions", "", body);
    flight_wait w = {fx->sim, "hang", 1};
    RUN_UNTIL(fx, in_flight_is, &w);
    /* Freeing the simulator mid-reply closes its side; the clients see EOF. */
    fr_sim_free(fx->sim);
    RUN_UNTIL(fx, got_eof, c);
    RUN_UNTIL(fx, got_eof, idle);
    client_close(c);
    client_close(idle);
    fx->sim = NULL;
    free(body);
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripted_reply),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_generated_text),
        cmocka_unit_test(test_concurrency_limit),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_partial_reads),
        cmocka_unit_test(test_stats_and_reset),
        cmocka_unit_test(test_latency_lower_bound),
        cmocka_unit_test(test_bind_failure),
        cmocka_unit_test(test_free_with_open_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
