/* Unit test of flowrun-sim: runs the simulator and a raw TCP client on one
 * uv loop and checks what a client relies on (replies, streaming, limits,
 * counters, keep-alive, errors) and that every handle closes. */

#include "tests/sim/sim.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define GUARD_MS 10000 /* bound on any wait; tests never sleep */

typedef struct fixture {
    uv_loop_t loop;
    fr_sim *sim;
    uv_timer_t guard;
    bool timed_out;
} fixture;

typedef struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    fr_buf in;
    int connect_status;
    bool connected;
    bool eof;
} client;

typedef struct response {
    int status;
    char *head; /* status line and headers */
    char *body; /* de-chunked */
    size_t body_len;
} response;

/* ---- loop helpers ---------------------------------------------------------- */

static void on_guard(uv_timer_t *t)
{
    fixture *fx = t->data;
    fx->timed_out = true;
}

typedef bool (*pred_fn)(void *arg);

/* Runs the loop until `pred` holds, failing the test after GUARD_MS. */
static void run_until(fixture *fx, pred_fn pred, void *arg)
{
    fx->timed_out = false;
    uv_timer_start(&fx->guard, on_guard, GUARD_MS, 0);
    while (!pred(arg) && !fx->timed_out)
        uv_run(&fx->loop, UV_RUN_ONCE);
    uv_timer_stop(&fx->guard);
    assert_false(fx->timed_out);
}

static fixture *fixture_new(void)
{
    fixture *fx = fr_xcalloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    uv_timer_init(&fx->loop, &fx->guard);
    fx->guard.data = fx;
    fr_error err = {0};
    fx->sim = fr_sim_new(&fx->loop, "127.0.0.1", 0, &err);
    assert_non_null(fx->sim);
    assert_true(fr_sim_port(fx->sim) > 0);
    fr_sim_model dflt = {NULL, 0, 0, 0, NULL}; /* instant, so tests never wait on time */
    fr_sim_set_model(fx->sim, &dflt);
    return fx;
}

static void fixture_free(fixture *fx)
{
    fr_sim_free(fx->sim);
    uv_close((uv_handle_t *)&fx->guard, NULL);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
}

/* ---- a raw HTTP client ----------------------------------------------------- */

static void on_client_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = fr_xmalloc(size);
    buf->len = size;
}

static void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client *c = s->data;
    if (n > 0)
        fr_buf_append(&c->in, buf->base, (size_t)n);
    else if (n < 0) {
        c->eof = true;
        uv_read_stop(s);
    }
    free(buf->base);
}

static void on_client_connect(uv_connect_t *req, int status)
{
    client *c = req->data;
    c->connect_status = status;
    c->connected = true;
    if (status == 0)
        uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read);
}

static bool is_connected(void *arg)
{
    return ((client *)arg)->connected;
}

static client *client_open(fixture *fx)
{
    client *c = fr_xcalloc(1, sizeof *c);
    fr_buf_init(&c->in, 0);
    uv_tcp_init(&fx->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", fr_sim_port(fx->sim), &addr);
    assert_int_equal(
        uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&addr, on_client_connect), 0);
    run_until(fx, is_connected, c);
    assert_int_equal(c->connect_status, 0);
    return c;
}

static void on_client_closed(uv_handle_t *h)
{
    client *c = h->data;
    fr_buf_close(&c->in);
    free(c);
}

/* Closes the client; its memory goes in the close callback. */
static void client_close(client *c)
{
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static void on_client_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void client_send_raw(client *c, const char *data, size_t len)
{
    uv_write_t *req = fr_xmalloc(sizeof *req);
    char *copy = fr_xmalloc(len);
    memcpy(copy, data, len);
    req->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned int)len);
    assert_int_equal(uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_client_write), 0);
}

/* Returns an owned HTTP request text. `body` may be NULL (no Content-Length). */
static char *request_text(const char *method, const char *path, const char *extra, const char *body)
{
    if (body)
        return fr_xasprintf("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            method, path, extra, strlen(body), body);
    return fr_xasprintf("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, path, extra);
}

static void client_send(client *c, const char *method, const char *path, const char *extra,
                        const char *body)
{
    char *req = request_text(method, path, extra, body);
    client_send_raw(c, req, strlen(req));
    free(req);
}

static void response_free(response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Returns the value of header `name` in `head` as an owned string, or NULL. */
static char *header(const char *head, const char *name)
{
    size_t nlen = strlen(name);
    for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            return fr_xstrndup(v, e ? (size_t)(e - v) : strlen(v));
        }
    }
    return NULL;
}

static bool header_is(const char *head, const char *name, const char *value)
{
    char *v = header(head, name);
    bool ok = v && strcasecmp(v, value) == 0;
    free(v);
    return ok;
}

/* Parses one response at the front of data[0..len). Returns the bytes it
 * used, or 0 if it is not complete yet (a close-delimited body completes
 * only at `eof`). */
static size_t parse_response(const char *data, size_t len, bool eof, response *out)
{
    const char *end = NULL;
    for (size_t i = 0; i + 4 <= len; i++)
        if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
            end = data + i;
            break;
        }
    if (!end)
        return 0;
    size_t head_len = (size_t)(end - data) + 4;
    char *head = fr_xstrndup(data, head_len - 2);
    int status = 0;
    assert_int_equal(sscanf(head, "HTTP/1.%*d %d", &status), 1);
    fr_buf body;
    fr_buf_init(&body, 0);
    size_t used = 0;
    char *cl = header(head, "Content-Length");
    if (status / 100 == 1) {
        used = head_len;
    } else if (header_is(head, "Transfer-Encoding", "chunked")) {
        size_t pos = head_len;
        for (;;) {
            const char *eol = NULL;
            for (size_t i = pos; i + 2 <= len; i++)
                if (data[i] == '\r' && data[i + 1] == '\n') {
                    eol = data + i;
                    break;
                }
            if (!eol)
                break;
            size_t n = strtoul(data + pos, NULL, 16);
            size_t start = (size_t)(eol - data) + 2;
            if (start + n + 2 > len)
                break;
            assert_memory_equal(data + start + n, "\r\n", 2);
            if (n == 0) {
                used = start + 2;
                break;
            }
            fr_buf_append(&body, data + start, n);
            pos = start + n + 2;
        }
    } else if (cl) {
        size_t n = strtoul(cl, NULL, 10);
        if (head_len + n <= len) {
            fr_buf_append(&body, data + head_len, n);
            used = head_len + n;
        }
    } else if (eof) {
        fr_buf_append(&body, data + head_len, len - head_len);
        used = len;
    }
    free(cl);
    if (!used) {
        free(head);
        fr_buf_close(&body);
        return 0;
    }
    out->status = status;
    out->head = head;
    out->body_len = body.len;
    out->body = fr_buf_take(&body);
    return used;
}

typedef struct read_wait {
    client *c;
    response *r;
} read_wait;

static bool got_response(void *arg)
{
    read_wait *w = arg;
    size_t used = parse_response(w->c->in.data, w->c->in.len, w->c->eof, w->r);
    if (used) {
        memmove(w->c->in.data, w->c->in.data + used, w->c->in.len - used);
        w->c->in.len -= used;
        return true;
    }
    assert_false(w->c->eof && w->c->in.len == 0);
    return false;
}

/* Waits for the next complete response on `c`. */
static void client_read(fixture *fx, client *c, response *r)
{
    read_wait w = {c, r};
    run_until(fx, got_response, &w);
}

static bool got_eof(void *arg)
{
    return ((client *)arg)->eof;
}

/* Sends one request on a fresh connection and returns the response. */
static void roundtrip(fixture *fx, const char *method, const char *path, const char *body,
                      response *r)
{
    client *c = client_open(fx);
    client_send(c, method, path, "", body);
    client_read(fx, c, r);
    client_close(c);
}

static json_t *body_json(const response *r)
{
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!doc)
        fail_msg("response body is not JSON (%s): %s", jerr.text, r->body);
    return doc;
}

static json_int_t usage_of(const json_t *doc, const char *key)
{
    json_t *v = json_object_get(json_object_get(doc, "usage"), key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static const char *content_of(const json_t *doc)
{
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    const char *s =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    assert_non_null(s);
    return s;
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
    if (extra) {
        json_t *more = json_loads(extra, 0, NULL);
        assert_non_null(more);
        json_object_update(doc, more);
        json_decref(more);
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

static long count_words(const char *s)
{
    long n = 0;
    bool in_word = false;
    for (; *s; s++) {
        bool ws = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
        if (!ws && !in_word)
            n++;
        in_word = !ws;
    }
    return n;
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

typedef struct flight_wait {
    fr_sim *sim;
    const char *model;
    json_int_t want;
} flight_wait;

static json_int_t model_stat(fr_sim *sim, const char *model, const char *key)
{
    json_t *st = fr_sim_stats(sim);
    json_t *v = json_object_get(json_object_get(json_object_get(st, "models"), model), key);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(st);
    return n;
}

static bool in_flight_is(void *arg)
{
    flight_wait *w = arg;
    return model_stat(w->sim, w->model, "in_flight") == w->want;
}

static void test_concurrency_limit(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model lim = {"lim", 600000, 0, 2, NULL}; /* replies never come during the test */
    fr_sim_set_model(fx->sim, &lim);
    char *body = chat_body("lim", "REPLY: ok", NULL);
    client *c1 = client_open(fx);
    client *c2 = client_open(fx);
    client *c3 = client_open(fx);
    client_send(c1, "POST", "/v1/chat/completions", "", body);
    client_send(c2, "POST", "/v1/chat/completions", "", body);
    flight_wait w = {fx->sim, "lim", 2};
    run_until(fx, in_flight_is, &w);

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
    run_until(fx, in_flight_is, &w);
    assert_int_equal(fr_sim_peak(fx->sim, "lim"), 3);
    free(body);

    /* The same for a stream cut after its first chunk: 1 token/s, so the
     * rest would take seconds. */
    fr_sim_model slow = {"slow", 0, 1, 0, NULL};
    fr_sim_set_model(fx->sim, &slow);
    body = chat_body("slow", "REPLY: w1 w2 w3 w4 w5 w6 w7 w8 w9", "{\"stream\":true}");
    client *c4 = client_open(fx);
    client_send(c4, "POST", "/v1/chat/completions", "", body);
    free(body);
    w.model = "slow";
    w.want = 1;
    run_until(fx, in_flight_is, &w);
    client_close(c4);
    w.want = 0;
    run_until(fx, in_flight_is, &w);
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
    run_until(fx, got_eof, c);
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
    run_until(fx, got_eof, c);
    client_close(c);

    /* Too large: 413 before the body is sent, then close. */
    c = client_open(fx);
    const char *big = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 9000000\r\n\r\n{";
    client_send_raw(c, big, strlen(big));
    expect_error(fx, c, 413, "invalid_request_error");
    run_until(fx, got_eof, c);
    client_close(c);

    /* Garbage request line: 400, then close. */
    c = client_open(fx);
    client_send_raw(c, "NONSENSE\r\n\r\n", 12);
    expect_error(fx, c, 400, "invalid_request_error");
    run_until(fx, got_eof, c);
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
    run_until(fx, got_continue, c);
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
    assert_int_equal(json_object_size(json_object_get(doc, "models")), 0);
    json_decref(doc);
    fixture_free(fx);
}

static void test_latency_lower_bound(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    fr_sim_model m = {"lat", 40, 100, 0, NULL}; /* 40 ms + 5 tokens at 100/s = 90 ms */
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
    fr_sim_model m = {"hang", 600000, 0, 0, NULL};
    fr_sim_set_model(fx->sim, &m);
    char *body = chat_body("hang", "REPLY: never", "{\"stream\":true}");
    client *c = client_open(fx);
    client *idle = client_open(fx);
    client_send(c, "POST", "/v1/chat/completions", "", body);
    flight_wait w = {fx->sim, "hang", 1};
    run_until(fx, in_flight_is, &w);
    /* Freeing the simulator mid-reply closes its side; the clients see EOF. */
    fr_sim_free(fx->sim);
    run_until(fx, got_eof, c);
    run_until(fx, got_eof, idle);
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
