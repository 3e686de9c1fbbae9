#pragma once
/* Shared by the unit tests of flowrun-sim (test_sim_http, test_sim_protocols,
 * test_sim_faults): a fixture that runs the simulator on its own uv loop, a
 * raw TCP client on that loop that sends HTTP requests and parses the
 * responses (Content-Length, chunked or close-delimited), the model
 * counters the tests wait on, and a request body with extra fields merged
 * (body_with). Header-only, as loop_harness.h: each test executable is one
 * translation unit. */

#include "engine/sim/sim.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "tests/unit/support/loop_harness.h"

#include <jansson.h>
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

/* Returns `doc` (taken) as compact JSON text (owned), with `extra` (JSON
 * text, may be NULL; it must parse) merged on top: a request body. */
static inline char *body_with(json_t *doc, const char *extra)
{
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

static inline fixture *fixture_new(void)
{
    fixture *fx = fr_xcalloc(1, sizeof *fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fr_error err = {0};
    fx->sim = fr_sim_new(&fx->loop, "127.0.0.1", 0, &err);
    assert_non_null(fx->sim);
    assert_true(fr_sim_port(fx->sim) > 0);
    fr_sim_model dflt = {.name = NULL}; /* instant, so tests never wait on time */
    fr_sim_set_model(fx->sim, &dflt);
    return fx;
}

static inline void fixture_free(fixture *fx)
{
    fr_sim_free(fx->sim);
    loop_drain_close(&fx->loop, GUARD_S); /* fails on a handle left open */
    free(fx);
}

/* ---- a raw HTTP client ----------------------------------------------------- */

static inline void on_client_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)h;
    buf->base = fr_xmalloc(size);
    buf->len = size;
}

static inline void on_client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
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

static inline void on_client_connect(uv_connect_t *req, int status)
{
    client *c = req->data;
    c->connect_status = status;
    c->connected = true;
    if (status == 0)
        uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read);
}

static inline bool is_connected(void *arg)
{
    return ((client *)arg)->connected;
}

static inline client *client_open(fixture *fx)
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

static inline void on_client_closed(uv_handle_t *h)
{
    client *c = h->data;
    fr_buf_close(&c->in);
    free(c);
}

/* Closes the client; its memory goes in the close callback. */
static inline void client_close(client *c)
{
    uv_close((uv_handle_t *)&c->tcp, on_client_closed);
}

static inline void on_client_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static inline void client_send_raw(client *c, const char *data, size_t len)
{
    uv_write_t *req = fr_xmalloc(sizeof *req);
    char *copy = fr_xmalloc(len);
    memcpy(copy, data, len);
    req->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned int)len);
    assert_int_equal(uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_client_write), 0);
}

/* Returns an owned HTTP request text. `body` may be NULL (no Content-Length). */
static inline char *request_text(const char *method, const char *path, const char *extra,
                                 const char *body)
{
    if (body)
        return fr_xasprintf("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
                            "Content-Length: %zu\r\n\r\n%s",
                            method, path, extra, strlen(body), body);
    return fr_xasprintf("%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n", method, path, extra);
}

static inline void client_send(client *c, const char *method, const char *path, const char *extra,
                               const char *body)
{
    char *req = request_text(method, path, extra, body);
    client_send_raw(c, req, strlen(req));
    free(req);
}

static inline void response_free(response *r)
{
    free(r->head);
    free(r->body);
    memset(r, 0, sizeof *r);
}

/* Returns the value of header `name` in `head` as an owned string, or NULL. */
static inline char *header(const char *head, const char *name)
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

static inline bool header_is(const char *head, const char *name, const char *value)
{
    char *v = header(head, name);
    bool ok = v && strcasecmp(v, value) == 0;
    free(v);
    return ok;
}

/* Parses one response at the front of data[0..len). Returns the bytes it
 * used, or 0 if it is not complete yet (a close-delimited body completes
 * only at `eof`). */
static inline size_t parse_response(const char *data, size_t len, bool eof, response *out)
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

static inline bool got_response(void *arg)
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
static inline void client_read(fixture *fx, client *c, response *r)
{
    read_wait w = {c, r};
    RUN_UNTIL(fx, got_response, &w);
}

static inline bool got_eof(void *arg)
{
    return ((client *)arg)->eof;
}

/* Sends one request on a fresh connection and returns the response. */
static inline void roundtrip(fixture *fx, const char *method, const char *path, const char *body,
                             response *r)
{
    client *c = client_open(fx);
    client_send(c, method, path, "", body);
    client_read(fx, c, r);
    client_close(c);
}

static inline json_t *body_json(const response *r)
{
    json_error_t jerr;
    json_t *doc = json_loadb(r->body, r->body_len, 0, &jerr);
    if (!doc)
        fail_msg("response body is not JSON (%s): %s", jerr.text, r->body);
    return doc;
}

static inline const char *content_of(const json_t *doc)
{
    json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
    const char *s =
        json_string_value(json_object_get(json_object_get(choice, "message"), "content"));
    assert_non_null(s);
    return s;
}

static inline long count_words(const char *s)
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

typedef struct flight_wait {
    fr_sim *sim;
    const char *model;
    json_int_t want;
} flight_wait;

static inline json_int_t model_stat(fr_sim *sim, const char *model, const char *key)
{
    json_t *st = fr_sim_stats(sim);
    json_t *v = json_object_get(json_object_get(json_object_get(st, "models"), model), key);
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(st);
    return n;
}

static inline bool in_flight_is(void *arg)
{
    flight_wait *w = arg;
    return model_stat(w->sim, w->model, "in_flight") == w->want;
}
