/* The run's stand-in server (--sim, fr_run_opts.standin): a rehearsal
 * without one is refused before anything is made; the run asks it once, with
 * one model per endpoint carrying the endpoint's name, protocol, capacity
 * and expected speed; a stand-in that cannot start fails every task (exit 1)
 * and the run still ends; one that started is stopped once when the run ends,
 * and the run sends to the base URLs it gave. */
#include "dsl/workflow.h"
#include "engine/run.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>
#include <uv.h>

#include "tests/unit/support/tmpdir.h"

typedef struct fixture {
    char dir[64];
    char state[96];
    char out[96];
    fr_workflow *wf;
} fixture;

static const char workflow_text[] =
    "workflow { defaults = { retries = 0 } }\n"
    "endpoint 'loc' { tier = 'local', protocol = 'ollama', url = 'http://10.0.0.4:11434',\n"
    "                 model = 'qwen2.5', max_parallel = 2 }\n"
    "endpoint 'cl' { tier = 'cloud', protocol = 'openai', url = 'https://api.example.com/v1',\n"
    "                model = 'gpt-x', api_key_env = 'FR_TEST_STANDIN_UNSET_KEY',\n"
    "                max_parallel = 3, price = { input = 1, output = 2 } }\n"
    "agent 'a' { system = 's' }\n"
    "task 'one' { agent = 'a', prompt = 'Say hello.' }\n"
    "task 'two' { agent = 'a', deps = { 'one' }, prompt = 'Again.' }\n";

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/fr_standin_XXXXXX");
    if (!f || !mkdtemp(f->dir))
        return -1;
    snprintf(f->state, sizeof f->state, "%s/state", f->dir);
    snprintf(f->out, sizeof f->out, "%s/out", f->dir);
    char path[128];
    snprintf(path, sizeof path, "%s/wf.lua", f->dir);
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(workflow_text, fp) == EOF || fclose(fp) != 0)
        return -1;
    /* An empty endpoints file, so none of the machine's is read. */
    char eps[128];
    snprintf(eps, sizeof eps, "%s/endpoints.lua", f->dir);
    fp = fopen(eps, "w");
    if (!fp || fclose(fp) != 0)
        return -1;
    fr_error err = {0};
    fr_load_opts lo = {.endpoints_path = eps};
    if (fr_workflow_load(path, &lo, &f->wf, &err) != FR_OK) {
        char msg[1400];
        fprintf(stderr, "%s\n", fr_error_format(&err, msg, sizeof msg));
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fr_workflow_free(f->wf);
    bool removed = tmpdir_remove(f->dir);
    free(f);
    return removed ? 0 : -1;
}

/* What the fake stand-in was asked. */
typedef struct fake {
    bool serve;        /* start listens on the loop and hangs up on every connection */
    uv_tcp_t listener; /* while serving */
    bool listening;
    int connections; /* accepted */
    int starts, stops;
    size_t n;
    fr_standin_model models[4];
    char names[4][32];
} fake;

static void on_hung_up(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *server, int status)
{
    fake *k = server->data;
    uv_tcp_t *c = calloc(1, sizeof *c);
    assert_non_null(c);
    uv_tcp_init(server->loop, c);
    if (status == 0 && uv_accept(server, (uv_stream_t *)c) == 0)
        k->connections++;
    uv_close((uv_handle_t *)c, on_hung_up); /* no reply: the attempt fails */
}

static int fake_start(void *ud, struct uv_loop_s *loop, const fr_standin_model *models, size_t n,
                      char **base_urls, fr_error *err)
{
    fake *k = ud;
    assert_non_null(loop);
    assert_non_null(base_urls);
    k->starts++;
    k->n = n;
    for (size_t i = 0; i < n && i < 4; i++) {
        k->models[i] = models[i];
        snprintf(k->names[i], sizeof k->names[i], "%s", models[i].name);
        k->models[i].name = k->names[i];
    }
    if (!k->serve)
        return fr_error_set(err, FR_EIO, "fake", 0, "cannot listen");
    struct sockaddr_in addr;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &addr);
    uv_tcp_init(loop, &k->listener);
    k->listener.data = k;
    k->listening = true;
    assert_int_equal(uv_tcp_bind(&k->listener, (const struct sockaddr *)&addr, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&k->listener, 8, on_connection), 0);
    assert_int_equal(uv_tcp_getsockname(&k->listener, (struct sockaddr *)&bound, &len), 0);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    for (size_t i = 0; i < n; i++)
        base_urls[i] = fr_xasprintf("http://127.0.0.1:%d%s", port,
                                    models[i].protocol == FR_PROTO_OPENAI ? "/v1" : "");
    return FR_OK;
}

static void fake_stop(void *ud)
{
    fake *k = ud;
    k->stops++;
    if (k->listening)
        uv_close((uv_handle_t *)&k->listener, NULL);
    k->listening = false;
}

static void test_sim_needs_a_standin(void **state)
{
    fixture *f = *state;
    fr_run_opts o = {
        .sim = true, .state_dir = f->state, .out_dir = f->out, .sim_latency_ms = -1, .sim_tps = -1};
    fr_run *r = NULL;
    fr_error err = {0};
    assert_int_equal(fr_run_new(f->wf, &o, &r, &err), FR_EINVAL);
    assert_null(r);
    assert_non_null(strstr(err.msg, "stand-in"));
}

/* Rehearses the fixture's workflow on the fake stand-in `k` with the given
 * speeds (< 0: the tiers' defaults); returns the exit code. When the fake
 * cannot start, the run must log its error as the simulator's was. */
static int rehearse(fixture *f, fake *k, double latency_ms, double tps)
{
    fr_standin si = {k, fake_start, fake_stop};
    fr_run_opts o = {.sim = true,
                     .state_dir = f->state,
                     .out_dir = f->out,
                     .sim_latency_ms = latency_ms,
                     .sim_tps = tps,
                     .standin = &si};
    fr_run *r = NULL;
    fr_error err = {0};
    /* A rehearsal needs no key: the cloud endpoint's variable is unset. */
    assert_int_equal(fr_run_new(f->wf, &o, &r, &err), FR_OK);
    assert_int_equal(k->starts, 0); /* nothing starts before the run does */
    FILE *log = tmpfile();
    assert_non_null(log);
    fr_log_set_stream(log);
    int code = fr_run_execute(r);
    fr_log_set_stream(stderr);
    char line[512] = "";
    rewind(log);
    bool logged = false;
    while (fgets(line, sizeof line, log))
        logged |= strstr(line, "sim") && strstr(line, "fake: cannot listen");
    fclose(log);
    assert_true(logged == !k->serve);
    fr_run_free(r);
    return code;
}

static void test_standin_gets_every_endpoint(void **state)
{
    fake k = {0};
    assert_int_equal(rehearse(*state, &k, -1, -1), 1);
    assert_int_equal(k.starts, 1);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.models[0].name, "loc");
    assert_int_equal(k.models[0].protocol, FR_PROTO_OLLAMA);
    assert_int_equal(k.models[0].max_concurrent, 2);
    assert_true(k.models[0].latency_ms == 150 && k.models[0].tokens_per_s == 400);
    assert_string_equal(k.models[1].name, "cl");
    assert_int_equal(k.models[1].protocol, FR_PROTO_OPENAI);
    assert_int_equal(k.models[1].max_concurrent, 3);
    assert_true(k.models[1].latency_ms == 300 && k.models[1].tokens_per_s == 800);
}

static void test_started_standin_is_stopped_once(void **state)
{
    fake k = {.serve = true};
    /* The fake hangs up, so the first task fails and the second is skipped;
     * fr_run_execute returns only once the loop is empty: the listener
     * closed, by stop. */
    assert_int_equal(rehearse(*state, &k, -1, -1), 1);
    assert_int_equal(k.starts, 1);
    assert_int_equal(k.stops, 1);
    assert_true(k.connections >= 1); /* the run sent to the URLs it was given */
}

static void test_standin_gets_the_asked_speed(void **state)
{
    fake k = {0};
    assert_int_equal(rehearse(*state, &k, 40, 0), 1);
    assert_int_equal(k.n, 2);
    for (size_t i = 0; i < 2; i++)
        assert_true(k.models[i].latency_ms == 40 && k.models[i].tokens_per_s == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sim_needs_a_standin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standin_gets_every_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_started_standin_is_stopped_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_standin_gets_the_asked_speed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
