/* Unit test of flowrun-sim: runs the simulator and a raw TCP client on one
 * uv loop and checks what a client relies on (replies, streaming, limits,
 * counters, keep-alive, errors) and that every handle closes. */

#include "engine/sim/sim.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "tests/unit/support/loop_harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#define GUARD_S 10.0 /* bound on any wait; tests never sleep */

typedef struct fixture {
    uv_loop_t loop;
    fr_sim *sim;
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

/* Runs the loop until `pred` holds, failing the test after GUARD_S. */
#define RUN_UNTIL(fx, pred, arg) loop_run_until(&(fx)->loop, (pred), (arg), GUARD_S, #pred)

static fixture *fixture_new(void)
{
    fixture *fx = fr_xcalloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fr_error err = {0};
    fx->sim = fr_sim_new(&fx->loop, "127.0.0.1", 0, &err);
    assert_non_null(fx->sim);
    assert_true(fr_sim_port(fx->sim) > 0);
    fr_sim_model dflt = {NULL, 0, 0, 0, NULL, false, 0}; /* instant, so tests never wait on time */
    fr_sim_set_model(fx->sim, &dflt);
    return fx;
}

static void fixture_free(fixture *fx)
{
    fr_sim_free(fx->sim);
    loop_drain_close(&fx->loop, GUARD_S); /* fails on a handle left open */
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
    RUN_UNTIL(fx, is_connected, c);
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
    RUN_UNTIL(fx, got_response, &w);
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
    fr_sim_model lim = {"lim", 600000, 0, 2,
                        NULL,  false,  0}; /* replies never come during the test */
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
    fr_sim_model slow = {"slow", 0, 1, 0, NULL, false, 0};
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
    fr_sim_model m = {"lat", 40, 100, 0, NULL, false, 0}; /* 40 ms + 5 tokens at 100/s = 90 ms */
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
    fr_sim_model m = {"hang", 600000, 0, 0, NULL, false, 0};
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

/* ---- the three protocols ------------------------------------------------------ */

typedef enum proto { P_OPENAI, P_OLLAMA, P_ANTHROPIC } proto;
static const char *const proto_paths[] = {"/v1/chat/completions", "/api/chat", "/v1/messages"};

/* What a client gets from one request, whatever the protocol. */
typedef struct result {
    int status;
    char *head;
    char *raw;    /* the body as received (de-chunked) */
    char *text;   /* assembled content; a tool_use block's input as compact JSON */
    long in, out; /* usage as reported; -1 when absent */
    char *finish; /* finish_reason, done_reason or stop_reason */
    bool tool;    /* the content was an Anthropic tool_use block */
    int pieces;   /* streamed content pieces */
} result;

static void result_free(result *r)
{
    free(r->head);
    free(r->raw);
    free(r->text);
    free(r->finish);
    memset(r, 0, sizeof *r);
}

/* Returns an owned request body for `p`: the system prompt (may be NULL)
 * where the protocol carries it, one user message, `stream` set explicitly,
 * Anthropic's required max_tokens, and `extra` (JSON text, may be NULL)
 * merged on top. */
static char *proto_body(proto p, const char *model, const char *system, const char *user,
                        bool stream, const char *extra)
{
    json_t *msgs = json_array();
    json_t *doc = json_pack("{s:s,s:b}", "model", model, "stream", stream);
    if (system && p == P_ANTHROPIC)
        json_object_set_new(doc, "system", json_string(system));
    else if (system)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", user));
    json_object_set_new(doc, "messages", msgs);
    if (p == P_ANTHROPIC)
        json_object_set_new(doc, "max_tokens", json_integer(400));
    if (p == P_OPENAI && stream)
        json_object_set_new(doc, "stream_options", json_pack("{s:b}", "include_usage", 1));
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

static long int_member(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : -1;
}

static void set_finish(result *out, const json_t *v)
{
    if (json_is_string(v)) {
        free(out->finish);
        out->finish = fr_xstrdup(json_string_value(v));
    }
}

/* One SSE event: its "event:" name (NULL when none) and its data. */
typedef struct sse_event {
    char *name;
    char *data;
} sse_event;

typedef struct sse_events {
    sse_event *items;
    int n;
} sse_events;

static void parse_sse(const char *body, sse_events *ev)
{
    ev->items = NULL;
    ev->n = 0;
    const char *p = body;
    while (*p) {
        const char *sep = strstr(p, "\n\n");
        assert_non_null(sep); /* every event ends with a blank line */
        sse_event e = {NULL, NULL};
        if (strncmp(p, "event: ", 7) == 0) {
            const char *nl = strchr(p, '\n');
            e.name = fr_xstrndup(p + 7, (size_t)(nl - p - 7));
            p = nl + 1;
        }
        assert_memory_equal(p, "data: ", 6);
        e.data = fr_xstrndup(p + 6, (size_t)(sep - p - 6));
        ev->items = fr_xrealloc(ev->items, (size_t)(ev->n + 1) * sizeof *ev->items);
        ev->items[ev->n++] = e;
        p = sep + 2;
    }
}

static void sse_free(sse_events *ev)
{
    for (int i = 0; i < ev->n; i++) {
        free(ev->items[i].name);
        free(ev->items[i].data);
    }
    free(ev->items);
    ev->n = 0;
}

static json_t *must_parse(const char *text)
{
    json_error_t jerr;
    json_t *doc = json_loads(text, 0, &jerr);
    if (!doc)
        fail_msg("not JSON (%s): %s", jerr.text, text);
    return doc;
}

static void parse_openai_stream(const char *body, result *out)
{
    sse_events ev;
    parse_sse(body, &ev);
    fr_buf text;
    fr_buf_init(&text, 0);
    assert_true(ev.n >= 2);
    assert_string_equal(ev.items[ev.n - 1].data, "[DONE]");
    for (int i = 0; i < ev.n - 1; i++) {
        assert_null(ev.items[i].name);
        json_t *doc = must_parse(ev.items[i].data);
        assert_string_equal(json_string_value(json_object_get(doc, "object")),
                            "chat.completion.chunk");
        json_t *usage = json_object_get(doc, "usage");
        if (json_is_object(usage)) {
            out->in = int_member(usage, "prompt_tokens");
            out->out = int_member(usage, "completion_tokens");
        }
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        const char *piece =
            json_string_value(json_object_get(json_object_get(choice, "delta"), "content"));
        if (piece) {
            fr_buf_puts(&text, piece);
            out->pieces++;
        }
        set_finish(out, json_object_get(choice, "finish_reason"));
        json_decref(doc);
    }
    out->text = fr_buf_take(&text);
    sse_free(&ev);
}

static void parse_ollama_stream(const char *body, result *out)
{
    fr_buf text;
    fr_buf_init(&text, 0);
    bool done = false;
    for (const char *p = body; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every object is one line */
        assert_false(done);  /* nothing after the done line */
        char *line = fr_xstrndup(p, (size_t)(nl - p));
        json_t *doc = must_parse(line);
        free(line);
        assert_non_null(json_string_value(json_object_get(doc, "model")));
        assert_non_null(json_string_value(json_object_get(doc, "created_at")));
        json_t *msg = json_object_get(doc, "message");
        assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
        const char *piece = json_string_value(json_object_get(msg, "content"));
        assert_non_null(piece);
        done = json_is_true(json_object_get(doc, "done"));
        if (done) {
            assert_string_equal(piece, "");
            set_finish(out, json_object_get(doc, "done_reason"));
            out->in = int_member(doc, "prompt_eval_count");
            out->out = int_member(doc, "eval_count");
            assert_true(int_member(doc, "total_duration") > 0);
        } else {
            assert_true(json_is_false(json_object_get(doc, "done")));
            fr_buf_puts(&text, piece);
            out->pieces++;
        }
        json_decref(doc);
        p = nl + 1;
    }
    assert_true(done);
    out->text = fr_buf_take(&text);
}

/* Checks the Anthropic event order: message_start, content_block_start,
 * ping, content_block_delta..., content_block_stop, message_delta,
 * message_stop, each event named as its data's type. */
static void parse_anthropic_stream(const char *body, result *out)
{
    static const char *const order[] = {
        "message_start",      "content_block_start", "ping",        "content_block_delta",
        "content_block_stop", "message_delta",       "message_stop"};
    sse_events ev;
    parse_sse(body, &ev);
    fr_buf text;
    fr_buf_init(&text, 0);
    size_t stage = 0;
    for (int i = 0; i < ev.n; i++) {
        json_t *doc = must_parse(ev.items[i].data);
        const char *type = json_string_value(json_object_get(doc, "type"));
        assert_non_null(ev.items[i].name);
        assert_string_equal(ev.items[i].name, type);
        while (stage < 7 && strcmp(order[stage], type) != 0) {
            assert_int_equal(stage, 3); /* only the deltas may be absent */
            stage++;
        }
        assert_true(stage < 7);
        if (stage == 0) {
            json_t *msg = json_object_get(doc, "message");
            assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
            assert_int_equal(json_array_size(json_object_get(msg, "content")), 0);
            json_t *usage = json_object_get(msg, "usage");
            if (usage) {
                out->in = int_member(usage, "input_tokens");
                assert_int_equal(int_member(usage, "output_tokens"), 1);
            }
        } else if (stage == 1) {
            json_t *block = json_object_get(doc, "content_block");
            out->tool = strcmp(json_string_value(json_object_get(block, "type")), "tool_use") == 0;
            if (out->tool)
                assert_int_equal(json_object_size(json_object_get(block, "input")), 0);
        } else if (stage == 3) {
            json_t *delta = json_object_get(doc, "delta");
            const char *dt = json_string_value(json_object_get(delta, "type"));
            assert_string_equal(dt, out->tool ? "input_json_delta" : "text_delta");
            fr_buf_puts(&text, json_string_value(
                                   json_object_get(delta, out->tool ? "partial_json" : "text")));
            out->pieces++;
        } else if (stage == 5) {
            set_finish(out, json_object_get(json_object_get(doc, "delta"), "stop_reason"));
            json_t *usage = json_object_get(doc, "usage");
            if (usage)
                out->out = int_member(usage, "output_tokens");
        }
        if (stage != 3) /* every other event comes once */
            stage++;
        json_decref(doc);
    }
    assert_int_equal(stage, 7);
    out->text = fr_buf_take(&text);
    sse_free(&ev);
}

static void parse_full(proto p, const json_t *doc, result *out)
{
    if (p == P_OPENAI) {
        out->text = fr_xstrdup(content_of(doc));
        set_finish(out, json_object_get(json_array_get(json_object_get(doc, "choices"), 0),
                                        "finish_reason"));
        json_t *usage = json_object_get(doc, "usage");
        out->in = int_member(usage, "prompt_tokens");
        out->out = int_member(usage, "completion_tokens");
    } else if (p == P_OLLAMA) {
        assert_true(json_is_true(json_object_get(doc, "done")));
        json_t *msg = json_object_get(doc, "message");
        assert_string_equal(json_string_value(json_object_get(msg, "role")), "assistant");
        out->text = fr_xstrdup(json_string_value(json_object_get(msg, "content")));
        set_finish(out, json_object_get(doc, "done_reason"));
        out->in = int_member(doc, "prompt_eval_count");
        out->out = int_member(doc, "eval_count");
    } else {
        assert_string_equal(json_string_value(json_object_get(doc, "type")), "message");
        assert_true(strncmp(json_string_value(json_object_get(doc, "id")), "msg_", 4) == 0);
        assert_true(json_is_null(json_object_get(doc, "stop_sequence")));
        json_t *content = json_object_get(doc, "content");
        assert_int_equal(json_array_size(content), 1);
        json_t *block = json_array_get(content, 0);
        const char *type = json_string_value(json_object_get(block, "type"));
        if (strcmp(type, "tool_use") == 0) {
            out->tool = true;
            assert_true(strncmp(json_string_value(json_object_get(block, "id")), "toolu_", 6) == 0);
            out->text = json_dumps(json_object_get(block, "input"), JSON_COMPACT);
        } else {
            assert_string_equal(type, "text");
            out->text = fr_xstrdup(json_string_value(json_object_get(block, "text")));
        }
        set_finish(out, json_object_get(doc, "stop_reason"));
        json_t *usage = json_object_get(doc, "usage");
        out->in = int_member(usage, "input_tokens");
        out->out = int_member(usage, "output_tokens");
        if (usage) {
            assert_int_equal(int_member(usage, "cache_creation_input_tokens"), 0);
            assert_int_equal(int_member(usage, "cache_read_input_tokens"), 0);
        }
    }
}

/* Sends one request of protocol `p` on a fresh connection and reads the
 * reply into `out`, checking its framing; error replies keep only status,
 * head and raw body. */
static void ask_body(fixture *fx, proto p, bool stream, const char *body, result *out)
{
    memset(out, 0, sizeof *out);
    out->in = out->out = -1;
    response r = {0};
    roundtrip(fx, "POST", proto_paths[p], body, &r);
    out->status = r.status;
    out->head = r.head;
    out->raw = r.body;
    if (r.status != 200)
        return;
    if (!stream) {
        assert_true(header_is(r.head, "Content-Type", "application/json"));
        json_t *doc = body_json(&r);
        parse_full(p, doc, out);
        json_decref(doc);
        return;
    }
    assert_true(header_is(r.head, "Transfer-Encoding", "chunked"));
    if (p == P_OLLAMA) {
        assert_true(header_is(r.head, "Content-Type", "application/x-ndjson"));
        parse_ollama_stream(r.body, out);
    } else {
        assert_true(header_is(r.head, "Content-Type", "text/event-stream"));
        if (p == P_OPENAI)
            parse_openai_stream(r.body, out);
        else
            parse_anthropic_stream(r.body, out);
    }
}

static void ask(fixture *fx, proto p, bool stream, const char *model, const char *system,
                const char *user, const char *extra, result *out)
{
    char *body = proto_body(p, model, system, user, stream, extra);
    ask_body(fx, p, stream, body, out);
    free(body);
}

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

static const char *const test_schema =
    "{\"type\":\"object\",\"properties\":{"
    "\"title\":{\"type\":\"string\",\"minLength\":5,\"maxLength\":12},"
    "\"level\":{\"type\":\"string\",\"enum\":[\"low\",\"mid\",\"high\"]},"
    "\"score\":{\"type\":\"integer\",\"minimum\":3,\"maximum\":7},"
    "\"ratio\":{\"type\":\"number\",\"exclusiveMinimum\":0,\"maximum\":1},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},"
    "\"minItems\":2,\"maxItems\":4},"
    "\"points\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-5,"
    "\"maximum\":-1}},"
    "\"flag\":{\"type\":\"boolean\"},"
    "\"owner\":{\"$ref\":\"#/$defs/person\"}},"
    "\"required\":[\"title\",\"level\",\"score\",\"tags\"],"
    "\"additionalProperties\":false,"
    "\"$defs\":{\"person\":{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\",\"minimum\":18,"
    "\"maximum\":99}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}}}";

static bool type_matches(const json_t *v, const char *type)
{
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    return json_is_null(v);
}

/* A small validator for the keywords test_schema uses. */
static bool conforms(const json_t *v, const json_t *schema, const json_t *root)
{
    const char *ref = json_string_value(json_object_get(schema, "$ref"));
    if (ref) {
        assert_true(strncmp(ref, "#/$defs/", 8) == 0);
        return conforms(v, json_object_get(json_object_get(root, "$defs"), ref + 8), root);
    }
    const char *type = json_string_value(json_object_get(schema, "type"));
    if (type && !type_matches(v, type))
        return false;
    const json_t *en = json_object_get(schema, "enum");
    if (en) {
        bool found = false;
        size_t i;
        const json_t *e;
        json_array_foreach(en, i, e)
        {
            found = found || json_equal(e, v);
        }
        if (!found)
            return false;
    }
    const json_t *k;
    if (json_is_string(v)) {
        long len = (long)json_string_length(v);
        if ((k = json_object_get(schema, "minLength")) && len < json_integer_value(k))
            return false;
        if ((k = json_object_get(schema, "maxLength")) && len > json_integer_value(k))
            return false;
    }
    if (json_is_number(v)) {
        double x = json_number_value(v);
        if ((k = json_object_get(schema, "minimum")) && x < json_number_value(k))
            return false;
        if ((k = json_object_get(schema, "maximum")) && x > json_number_value(k))
            return false;
        if ((k = json_object_get(schema, "exclusiveMinimum")) && x <= json_number_value(k))
            return false;
    }
    if (json_is_array(v)) {
        long n = (long)json_array_size(v);
        if ((k = json_object_get(schema, "minItems")) && n < json_integer_value(k))
            return false;
        if ((k = json_object_get(schema, "maxItems")) && n > json_integer_value(k))
            return false;
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (!conforms(item, json_object_get(schema, "items"), root))
                return false;
        }
    }
    if (json_is_object(v)) {
        const json_t *props = json_object_get(schema, "properties");
        size_t i;
        const json_t *name;
        json_array_foreach(json_object_get(schema, "required"), i, name)
        {
            if (!json_object_get(v, json_string_value(name)))
                return false;
        }
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)v, key, val)
        {
            const json_t *sub = json_object_get(props, key);
            if (!sub && json_is_false(json_object_get(schema, "additionalProperties")))
                return false;
            if (sub && !conforms(val, sub, root))
                return false;
        }
    }
    return true;
}

/* The structured-output part of a request for `p` (schema NULL: any JSON object). */
static char *structured_extra(proto p, const char *schema)
{
    if (p == P_OPENAI)
        return schema ? fr_xasprintf("{\"response_format\":{\"type\":\"json_schema\","
                                     "\"json_schema\":{\"name\":\"out\",\"strict\":true,"
                                     "\"schema\":%s}}}",
                                     schema)
                      : fr_xstrdup("{\"response_format\":{\"type\":\"json_object\"}}");
    if (p == P_OLLAMA)
        return schema ? fr_xasprintf("{\"format\":%s}", schema)
                      : fr_xstrdup("{\"format\":\"json\"}");
    return fr_xasprintf("{\"tools\":[{\"name\":\"other\",\"input_schema\":{\"type\":\"object\"}},"
                        "{\"name\":\"emit\",\"description\":\"d\",\"input_schema\":%s}],"
                        "\"tool_choice\":{\"type\":\"tool\",\"name\":\"emit\"}}",
                        schema ? schema : "{\"type\":\"object\"}");
}

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

/* ---- faults ------------------------------------------------------------------------ */

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
    for (int i = 0; i < 5; i++) /* nothing comes back */
        uv_run(&fx->loop, UV_RUN_NOWAIT);
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
        cmocka_unit_test(test_protocols_agree),
        cmocka_unit_test(test_anthropic_wire),
        cmocka_unit_test(test_ollama_wire),
        cmocka_unit_test(test_structured_output),
        cmocka_unit_test(test_fault_status),
        cmocka_unit_test(test_fault_cut),
        cmocka_unit_test(test_fault_hang),
        cmocka_unit_test(test_fault_content),
        cmocka_unit_test(test_fault_badschema),
        cmocka_unit_test(test_fault_echokey),
        cmocka_unit_test(test_fault_script),
        cmocka_unit_test(test_limit_all_protocols),
        cmocka_unit_test(test_stats_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
