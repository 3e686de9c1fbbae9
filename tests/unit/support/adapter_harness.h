#pragma once
/* Shared by the adapter unit tests (test_openai_*, test_ollama,
 * test_anthropic_*, test_wire): feed a reply to a fresh adapter at chosen
 * split points, as engine/http delivers it (the cutting is
 * tests/unit/support/split.h's), read a request's headers and body, and the
 * checks that are the same for every protocol, table-driven by
 * adapter_proto: URL joining, headers and the key, a reply whole and at
 * every split (adapter_want: its text, reason, model and usage), the key
 * never in an error. Header-only: each test executable
 * is one translation unit; include it after cmocka.h. */

#include "engine/util/err.h"
#include "providers/provider.h"
#include "tests/unit/support/split.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Returns the call the adapter tests make to `model` at `base_url` (both
 * borrowed, kept in the call): a terse system prompt, a short user turn, 64
 * tokens at temperature 0.2, streamed or not. */
static inline fr_call adapter_call(const char *base_url, const char *model, bool stream)
{
    fr_call c = {
        .base_url = base_url,
        .model = model,
        .system = "You are terse.",
        .prompt = "Say hello to the world.",
        .max_tokens = 64,
        .temperature = 0.2,
        .stream = stream,
    };
    return c;
}

/* Returns the value of header `name` in `r` (both borrowed), or NULL. */
static inline const char *adapter_header(const fr_request *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (strncmp(r->headers[i], name, n) == 0 && r->headers[i][n] == ':')
            return r->headers[i] + n + 2;
    return NULL;
}

/* Hands a piece of the body to the adapter `ud` at the status in flight. */
typedef struct adapter_feed {
    fr_adapter *a;
    long status;
} adapter_feed;

static inline int adapter_feed_piece(void *ud, const char *p, size_t len)
{
    adapter_feed *f = ud;
    return fr_adapter_feed(f->a, f->status, p, len);
}

/* Feeds `len` bytes of `body` to a fresh `proto` adapter for `call` with
 * `status`, cut at `cuts` (ascending offsets), then finishes into `out`.
 * Returns finish's code; *feed_rc (may be NULL) gets the first failing
 * feed's code, or FR_OK. Feeding stops at the first error, as engine/http
 * aborts the transfer then. */
static inline int adapter_run(fr_protocol proto, const fr_call *call, long status, const char *body,
                              size_t len, const size_t *cuts, size_t ncuts, fr_reply *out,
                              fr_error *err, int *feed_rc)
{
    adapter_feed f = {fr_adapter_new(proto, call), status};
    int frc = split_pieces(body, len, cuts, ncuts, adapter_feed_piece, &f);
    if (feed_rc)
        *feed_rc = frc;
    int rc = fr_adapter_finish(f.a, status, out, err);
    fr_adapter_free(f.a);
    return rc;
}

#ifdef ADAPTER_UNDER_TEST
/* With ADAPTER_UNDER_TEST defined to the protocol a test file is about
 * (before it includes this header): adapter_run for that protocol, and for
 * a body fed whole. */
static inline int run(const fr_call *call, long status, const char *body, size_t len,
                      const size_t *cuts, size_t ncuts, fr_reply *out, fr_error *err, int *feed_rc)
{
    return adapter_run(ADAPTER_UNDER_TEST, call, status, body, len, cuts, ncuts, out, err, feed_rc);
}

static inline int run_whole(const fr_call *call, long status, const char *body, fr_reply *out,
                            fr_error *err, int *feed_rc)
{
    return run(call, status, body, strlen(body), NULL, 0, out, err, feed_rc);
}
#endif

/* Returns `s` (borrowed) with "\n" replaced by "\r\n" (owned). */
static inline char *adapter_crlf(const char *s)
{
    return split_with_eol(s, "\r\n");
}

/* Returns the parsed body (owned) of the request `proto` builds for `c`
 * (borrowed), which must succeed and be JSON. */
static inline json_t *adapter_request_body(fr_protocol proto, const fr_call *c)
{
    fr_adapter *a = fr_adapter_new(proto, c);
    fr_request req;
    fr_error err;
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
    json_t *body = json_loads(req.body, 0, NULL);
    assert_non_null(body);
    fr_request_close(&req);
    fr_adapter_free(a);
    return body;
}

/* What the shared request checks need to know of one protocol. */
typedef struct adapter_proto {
    fr_protocol proto;
    const char *name;        /* the source of its errors: "openai" */
    const char *accept;      /* the Accept of a streamed reply */
    const char *auth;        /* the header that carries the key */
    const char *auth_prefix; /* what comes before the key in it: "Bearer " or "" */
    const char *never;       /* NULL, or a header it never sends ("Authorization") */
    const char *extra[2];    /* NULL, or a header it always sends and its value */
    size_t stream_headers;   /* how many headers a streamed request without a key has */
} adapter_proto;

typedef struct adapter_url {
    const char *base;
    const char *url; /* NULL: the base URL is refused */
} adapter_url;

/* Checks every URL of `urls` (`n` of them) with `base` (borrowed) as the
 * rest of the call: a good one joins to `url`, a bad one is refused with
 * FR_ECONFIG before anything is built; and a call without a model is
 * refused. */
static inline void adapter_check_urls(const adapter_proto *p, const fr_call *base,
                                      const adapter_url *urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fr_call c = *base;
        c.base_url = urls[i].base;
        fr_adapter *a = fr_adapter_new(p->proto, &c);
        fr_request req;
        fr_error err;
        if (urls[i].url) {
            assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
            assert_string_equal(req.url, urls[i].url);
            fr_request_close(&req);
            assert_null(req.url);
        } else {
            assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
            assert_int_equal(err.code, FR_ECONFIG);
            assert_string_equal(err.source, p->name);
            assert_true(strlen(err.msg) > 0);
            assert_null(req.url);
            assert_null(req.body);
            assert_int_equal(req.nheaders, 0);
        }
        fr_adapter_free(a);
    }
    fr_call c = *base;
    c.model = "";
    fr_adapter *a = fr_adapter_new(p->proto, &c);
    fr_request req;
    fr_error err;
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
    assert_string_equal(err.msg, "the endpoint has no model");
    fr_adapter_free(a);
}

/* Checks the headers of `p`'s requests for `base` (borrowed, a streamed
 * call without a key) and the key `key` (borrowed): streamed without a key,
 * not streamed with it (copied: the caller's buffer may change after
 * fr_adapter_new, and neither URL nor body carries it), with an empty key
 * (no header), and with a key that would inject a header (refused, never
 * echoed). */
static inline void adapter_check_headers(const adapter_proto *p, const fr_call *base,
                                         const char *key)
{
    fr_call c = *base;
    fr_request req;
    fr_error err;

    fr_adapter *a = fr_adapter_new(p->proto, &c);
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
    assert_string_equal(adapter_header(&req, "Content-Type"), "application/json");
    assert_string_equal(adapter_header(&req, "Accept"), p->accept);
    assert_null(adapter_header(&req, p->auth));
    if (p->never)
        assert_null(adapter_header(&req, p->never));
    if (p->extra[0])
        assert_string_equal(adapter_header(&req, p->extra[0]), p->extra[1]);
    assert_int_equal(req.nheaders, p->stream_headers);
    fr_request_close(&req);
    fr_adapter_free(a);

    size_t klen = strlen(key);
    char *copy = malloc(klen + 1);
    assert_non_null(copy);
    memcpy(copy, key, klen + 1);
    c.stream = false;
    c.api_key = copy;
    a = fr_adapter_new(p->proto, &c);
    memset(copy, 'x', klen);
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
    const char *sent = adapter_header(&req, p->auth);
    assert_non_null(sent);
    assert_memory_equal(sent, p->auth_prefix, strlen(p->auth_prefix));
    assert_string_equal(sent + strlen(p->auth_prefix), key);
    assert_string_equal(adapter_header(&req, "Content-Type"), "application/json");
    assert_null(adapter_header(&req, "Accept"));
    if (p->never)
        assert_null(adapter_header(&req, p->never));
    if (p->extra[0])
        assert_string_equal(adapter_header(&req, p->extra[0]), p->extra[1]);
    assert_null(strstr(req.url, key));
    assert_null(strstr(req.body, key));
    assert_null(strstr(req.url, "SECRET"));
    assert_null(strstr(req.body, "SECRET"));
    fr_request_close(&req);
    fr_adapter_free(a);
    free(copy);

    c.api_key = "";
    a = fr_adapter_new(p->proto, &c);
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_OK);
    assert_null(adapter_header(&req, p->auth));
    fr_request_close(&req);
    fr_adapter_free(a);

    char evil[256];
    snprintf(evil, sizeof evil, "%s\r\nX-Evil: 1", key);
    c.api_key = evil;
    a = fr_adapter_new(p->proto, &c);
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
    assert_null(strstr(err.msg, "sk-test"));
    assert_null(strstr(err.msg, "SECRET"));
    assert_int_equal(req.nheaders, 0);
    fr_adapter_free(a);
}

/* A check of one finished reply (borrowed). */
typedef void (*adapter_reply_check)(const fr_reply *r);

typedef struct adapter_split_run {
    fr_protocol proto;
    const fr_call *call;
    adapter_reply_check check;
} adapter_split_run;

/* One cut of the body (split_run_fn): the reply must finish well, no feed
 * may fail, and the reply must pass the check. */
static inline void adapter_split_one(void *ud, const char *s, const size_t *cuts, size_t ncuts)
{
    const adapter_split_run *sr = ud;
    fr_reply r;
    fr_error err;
    int frc;
    int rc = adapter_run(sr->proto, sr->call, 200, s, strlen(s), cuts, ncuts, &r, &err, &frc);
    if (rc != FR_OK)
        fail_msg("split at %zu: %s", ncuts ? cuts[0] : strlen(s), err.msg);
    assert_int_equal(frc, FR_OK);
    sr->check(&r);
    fr_reply_close(&r);
}

/* Runs the body `s` (borrowed) through `proto`'s adapter for `call`
 * (borrowed) whole, split at every offset, then byte by byte, and split at
 * every offset again with every event read by json_loadb
 * (fr_provider_tree_only); every run must end well and pass `check`. */
static inline void adapter_every_split(fr_protocol proto, const fr_call *call, const char *s,
                                       adapter_reply_check check)
{
    adapter_split_run sr = {proto, call, check};
    split_every(s, adapter_split_one, &sr);
    split_bytes(s, adapter_split_one, &sr);
    fr_provider_tree_only = true;
    split_every(s, adapter_split_one, &sr);
    fr_provider_tree_only = false;
}

/* What a finished reply must give: its text, reason and model (NULL: not
 * checked) and its usage. */
typedef struct adapter_want {
    const char *text;
    const char *finish_reason; /* the server's own words */
    const char *model;
    long input, output, cached;
    bool estimated; /* the usage was counted from the text */
} adapter_want;

/* Checks the reply `r` against `want` (both borrowed). */
static inline void adapter_check_reply(const fr_reply *r, const adapter_want *want)
{
    if (want->text)
        assert_string_equal(r->text, want->text);
    if (want->finish_reason)
        assert_string_equal(r->finish_reason, want->finish_reason);
    if (want->model)
        assert_string_equal(r->model, want->model);
    assert_int_equal(r->usage.input, want->input);
    assert_int_equal(r->usage.output, want->output);
    assert_int_equal(r->usage.cached, want->cached);
    assert_int_equal(r->usage.estimated, want->estimated);
}

/* Runs the whole reply `body` (borrowed) through `proto`'s adapter for
 * `call` (borrowed, no schema) cut once at every 7th offset from 0: each
 * run must finish well, give `want` and no JSON. */
static inline void adapter_check_whole(fr_protocol proto, const fr_call *call, const char *body,
                                       const adapter_want *want)
{
    size_t len = strlen(body);
    for (size_t i = 0; i <= len; i += 7) {
        size_t cut[1] = {i};
        fr_reply r;
        fr_error err;
        assert_int_equal(adapter_run(proto, call, 200, body, len, cut, 1, &r, &err, NULL), FR_OK);
        adapter_check_reply(&r, want);
        assert_null(r.json);
        fr_reply_close(&r);
    }
}

/* A server that ignores "stream": true and answers `body` (borrowed), one
 * whole reply whose text is "plain" in one output token: a streamed `call`
 * (borrowed) of `proto` reads it as the reply it is. */
static inline void adapter_check_stream_answered_whole(fr_protocol proto, const fr_call *call,
                                                       const char *body)
{
    fr_reply r;
    fr_error err;
    assert_int_equal(adapter_run(proto, call, 200, body, strlen(body), NULL, 0, &r, &err, NULL),
                     FR_OK);
    assert_string_equal(r.text, "plain");
    assert_int_equal(r.usage.output, 1);
    fr_reply_close(&r);
}

/* A key the server echoed back, in an error body or a stream. */
typedef struct adapter_key_case {
    long status;
    bool stream;
    const char *body;
    bool schema; /* structured output is asked ({"type": "object"}) */
} adapter_key_case;

/* 180 bytes that push a key past the 200-byte snippet of an error body. */
#define ADAPTER_PAD10 "padding.. "
#define ADAPTER_PAD180                                                                             \
    ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10            \
        ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10        \
            ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10 ADAPTER_PAD10

/* The key (holding "SECRET") may come back from a server; for each of the
 * `n` cases it must reach no error message, and an HTTP error marks where
 * it was. Then a base URL holding the key (`bad_url`, borrowed) is refused
 * without quoting it. `call` (borrowed) carries the key. */
static inline void adapter_check_key_cases(fr_protocol proto, const fr_call *call,
                                           const adapter_key_case *cases, size_t n,
                                           const char *bad_url)
{
    json_t *schema = json_pack("{s:s}", "type", "object");
    fr_call c = *call;
    fr_reply r;
    fr_error err;
    for (size_t i = 0; i < n; i++) {
        c.stream = cases[i].stream;
        c.schema = cases[i].schema ? schema : call->schema;
        int rc = adapter_run(proto, &c, cases[i].status, cases[i].body, strlen(cases[i].body), NULL,
                             0, &r, &err, NULL);
        if (rc >= 0)
            fail_msg("case %zu succeeded", i);
        if (strstr(err.msg, "SECRET") || strstr(err.source, "SECRET"))
            fail_msg("case %zu leaks the key: %s", i, err.msg);
        if (cases[i].status >= 400 && !strstr(err.msg, "[REDACTED]"))
            fail_msg("case %zu: the echo was not marked: %s", i, err.msg);
    }
    c = *call;
    c.schema = NULL;
    c.base_url = bad_url;
    fr_adapter *a = fr_adapter_new(proto, &c);
    fr_request req;
    assert_int_equal(fr_adapter_request(a, &req, &err), FR_ECONFIG);
    assert_null(strstr(err.msg, "SECRET"));
    fr_adapter_free(a);
    json_decref(schema);
}

/* Checks fr_adapter_progress on a streamed `call` (borrowed) of `proto`:
 * `quiet` (borrowed: keep-alives, blank lines), fed twice, is no progress;
 * `content` (borrowed, one event or line of content) is one; `quiet` fed
 * again adds none. */
static inline void adapter_check_progress(fr_protocol proto, const fr_call *call, const char *quiet,
                                          const char *content)
{
    fr_adapter *a = fr_adapter_new(proto, call);
    assert_int_equal(fr_adapter_feed(a, 200, quiet, strlen(quiet)), FR_OK);
    assert_int_equal(fr_adapter_feed(a, 200, quiet, strlen(quiet)), FR_OK);
    assert_int_equal(fr_adapter_progress(a), 0);
    assert_int_equal(fr_adapter_feed(a, 200, content, strlen(content)), FR_OK);
    assert_int_equal(fr_adapter_progress(a), 1);
    assert_int_equal(fr_adapter_feed(a, 200, quiet, strlen(quiet)), FR_OK);
    assert_int_equal(fr_adapter_progress(a), 1);
    fr_adapter_free(a);
}
