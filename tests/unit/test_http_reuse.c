/* Unit tests of engine/http's reuse of what one transfer leaves to the
 * next: a curl easy handle serves the next request after a transfer that
 * ended cleanly or was cancelled, and nothing of the earlier request
 * (headers with the key, body, method, data callback, captured header,
 * status, Retry-After) reaches the later one, whether the earlier one was
 * streamed, cancelled, timed out or sent with another method; and curl's
 * cache of idle connections grows with the transfers at once, so a second
 * wave as large as the first opens no connection. The scripted server
 * (tests/unit/support/http_server.h) runs on the client's loop; every test
 * ends with fr_http_free, the loop run until empty and uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/http_server.h"

/* A recorder that also keeps the captured header's value, which the
 * result only lends for the done call. */
typedef struct cap_rec {
    rec r; /* first: the done callback's ud is both */
    bool had;
    char value[64];
} cap_rec;

static void cap_done(void *ud, const fr_http_result *res)
{
    cap_rec *c = ud;
    c->had = res->captured != NULL;
    snprintf(c->value, sizeof c->value, "%s", res->captured ? res->captured : "");
    rec_done(ud, res);
}

/* Submits a POST of `body` to `path` with the one header `header` (NULL:
 * none) and `o` (may be NULL), recorded by `r` through `done`. */
static fr_xfer *submit_done(fx *f, const char *path, const char *header, const char *body,
                            const fr_http_opts *o, fr_http_done_fn done, rec *r)
{
    char url[160], hdr[160], b[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->s.port, path);
    snprintf(hdr, sizeof hdr, "%s", header ? header : "");
    snprintf(b, sizeof b, "%s", body);
    char *headers[] = {hdr};
    fr_request req = {.url = url, .headers = headers, .nheaders = header ? 1 : 0, .body = b};
    fr_xfer *x = NULL;
    r->f = f;
    assert_int_equal(fr_http_submit(f->h, &req, o, rec_data, done, r, &x), FR_OK);
    r->self = x;
    return x;
}

static fr_xfer *submit_with(fx *f, const char *path, const char *header, const char *body,
                            const fr_http_opts *o, rec *r)
{
    return submit_done(f, path, header, body, o, rec_done, r);
}

/* Sends the probe /echo request and checks that it arrived as itself only:
 * its header, its body, POST, none of `stale` (NULL-terminated) in the head,
 * and its own reply through its own recorder. */
static void check_clean_echo(fx *f, const char *const *stale)
{
    rec r = {0};
    int before = f->ndone;
    submit_with(f, "/echo", "X-Probe: second", "{\"probe\":2}", NULL, &r);
    assert_true(run_until(f, &f->ndone, before + 1));
    assert_int_equal(r.ndone, 1);
    assert_int_equal(r.res.rc, FR_OK);
    assert_int_equal(r.res.status, 200);
    assert_true(r.res.retry_after_s < 0);
    assert_null(r.res.captured);
    assert_string_equal(r.body, "{\"probe\":2}");
    assert_string_equal(f->s.last_method, "POST");
    assert_string_equal(f->s.last_body, "{\"probe\":2}");
    assert_non_null(strstr(f->s.last_headers, "\r\nX-Probe: second\r\n"));
    for (size_t i = 0; stale && stale[i]; i++)
        if (strstr(f->s.last_headers, stale[i]))
            fail_msg("the later request carried '%s' of the earlier one", stale[i]);
    rec_close(&r);
}

static const char *const first_stale[] = {"Authorization", "sk-first-key", "X-First", NULL};

static void test_after_streamed(void **state)
{
    fx *f = *state;
    rec r = {0};
    submit_with(f, "/stream", "Authorization: Bearer sk-first-key", "{\"stream\":true}", NULL, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_OK);
    assert_string_equal(r.body, "piece-0;piece-1;piece-2;piece-3;piece-4;");
    int chunks = r.chunks;
    check_clean_echo(f, first_stale);
    /* The probe went through the first transfer's handle, and its bytes to
     * its own recorder only. */
    assert_int_equal(fr_http_handles_made(f->h), 1);
    assert_int_equal(r.chunks, chunks);
    assert_int_equal(r.ndone, 1);
    assert_int_equal(fr_http_connections(f->h), 1);
    rec_close(&r);
}

static void test_after_cancelled(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Cancelled while the server holds the request. */
    fr_xfer *x = submit_with(f, "/never", "X-First: one", "{\"first\":1}", NULL, &r);
    assert_true(run_until(f, &f->s.requests, 1));
    fr_http_cancel(f->h, x);
    /* Its handle is spare once its timer has closed, by the time the loop
     * has seen the connection go. */
    assert_true(run_until(f, &f->s.closed, 1));
    check_clean_echo(f, first_stale);
    /* Cancelled before curl ever ran it, on a reused handle: it opened no
     * connection, whatever the handle's last transfer did. */
    long conns = fr_http_connections(f->h);
    x = submit_with(f, "/never", "X-First: one", "{\"first\":1}", NULL, &r);
    fr_http_cancel(f->h, x);
    assert_int_equal(fr_http_connections(f->h), conns);
    uv_run(&f->loop, UV_RUN_NOWAIT); /* one turn: its timer's close callback */
    check_clean_echo(f, first_stale);
    assert_int_equal(fr_http_handles_made(f->h), 1);
    assert_int_equal(r.ndone, 0);
    rec_close(&r);
}

static void test_after_timeout(void **state)
{
    fx *f = *state;
    rec r = {0};
    /* Headers, then silence: the idle deadline ends it. */
    fr_http_opts o = {.idle_timeout_ms = 100, .total_timeout_ms = 5000};
    submit_with(f, "/silent", "X-First: one", "{\"first\":1}", &o, &r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(r.res.rc, FR_ETIMEDOUT);
    assert_non_null(strstr(r.err, "idle"));
    check_clean_echo(f, first_stale);
    /* The probe has no deadline of the earlier one: a reply slower than
     * its idle timeout still arrives whole. */
    rec s = {0};
    submit_with(f, "/stream", NULL, "{}", NULL, &s);
    assert_true(run_until(f, &f->ndone, 3));
    assert_int_equal(s.res.rc, FR_OK);
    assert_string_equal(s.body, "piece-0;piece-1;piece-2;piece-3;piece-4;");
    assert_int_equal(r.ndone, 1);
    rec_close(&r);
    rec_close(&s);
}

static void test_after_other_method_status_and_capture(void **state)
{
    fx *f = *state;
    cap_rec a = {0}, c = {0};
    rec b = {0};
    fr_http_opts del = {.method = "DELETE", .capture_header = "Content-Type"};
    submit_done(f, "/json", "X-First: one", "{}", &del, cap_done, &a.r);
    assert_true(run_until(f, &f->ndone, 1));
    assert_int_equal(a.r.res.rc, FR_OK);
    assert_string_equal(f->s.last_method, "DELETE");
    assert_true(a.had);
    assert_string_equal(a.value, "application/json");
    /* A 429 with Retry-After, which the probe must not inherit. */
    submit_with(f, "/429", "X-First: one", "{}", NULL, &b);
    assert_true(run_until(f, &f->ndone, 2));
    assert_int_equal(b.res.status, 429);
    assert_true(b.res.retry_after_s > 1.9 && b.res.retry_after_s < 2.1);
    check_clean_echo(f, first_stale);
    /* Asked for again, a header is found in the latest response only. */
    fr_http_opts cap = {.capture_header = "Retry-After"};
    submit_done(f, "/json", NULL, "{}", &cap, cap_done, &c.r);
    assert_true(run_until(f, &f->ndone, 4));
    assert_int_equal(c.r.res.rc, FR_OK);
    assert_false(c.had);
    assert_int_equal(fr_http_handles_made(f->h), 1);
    rec_close(&a.r);
    rec_close(&b);
    rec_close(&c.r);
}

/* Above curl's default cache of 256 idle connections: with a cache that did
 * not grow, the second wave would open the connections the first one's end
 * had closed. */
static void test_cache_grows_with_transfers(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 4 * N) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 4 * N ? 4 * N : rl.rlim_max;
        rl.rlim_cur = want;
        setrlimit(RLIMIT_NOFILE, &rl);
        assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
        if (rl.rlim_cur < 4 * N)
            skip();
    }
    rec *r = fr_xcalloc(2 * N, sizeof *r);
    for (int wave = 0; wave < 2; wave++) {
        f->s.gate_target = N; /* none answered until all wait at once */
        for (int i = 0; i < N; i++)
            submit_opts(f, "/gate", NULL, &r[wave * N + i]);
        assert_true(run_until(f, &f->ndone, (wave + 1) * N));
        assert_int_equal(f->s.max_gate, N);
    }
    for (int i = 0; i < 2 * N; i++) {
        assert_int_equal(r[i].res.rc, FR_OK);
        rec_close(&r[i]);
    }
    assert_int_equal(fr_http_connections(f->h), N);
    assert_int_equal(f->s.accepted, N);
    assert_int_equal(fr_http_handles_made(f->h), N);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_after_streamed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_cancelled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_after_other_method_status_and_capture, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cache_grows_with_transfers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
