/* engine/store/pgconn against a real PostgreSQL server of the test's own
 * (tests/unit/support/pg_fixture.h): TCP and the unix socket, a pipeline of
 * 1,000 queries in order, parameters, a transaction, each statement's
 * result of one transaction, notifications, the server restarted
 * mid-pipeline, a lock held by another session while the loop keeps
 * running, a statement timeout, an unreachable URL and a wrong password
 * (the password masked everywhere, the log included), closing with
 * requests pending, and the URL's masking. Skipped (77) where PostgreSQL's
 * server is not installed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/store/pgconn.h"
#include "engine/store/pgurl.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/pg_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static pg_server server;

#define MAX_REQ 1100

typedef struct fx fx;

typedef struct slot {
    fx *f;
    int index;
    fr_pgres *res;
    int order; /* which completion this was, from 1 */
} slot;

struct fx {
    uv_loop_t loop;
    fr_pgconn *c;
    int ups, losts, faileds;
    char state_msg[1024];
    int completed;
    size_t max_in_flight;
    slot slots[MAX_REQ];
};

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    for (int i = 0; i < MAX_REQ; i++) {
        f->slots[i].f = f;
        f->slots[i].index = i;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fr_pgconn_close(f->c);
    f->c = NULL;
    char why[384];
    bool ok = loop_drain(&f->loop, 10, why, sizeof why);
    for (int i = 0; i < MAX_REQ; i++)
        fr_pgres_free(f->slots[i].res);
    free(f);
    if (!ok)
        fail_msg("%s", why);
    return 0;
}

static void on_state(void *ud, fr_pgconn_event ev, const fr_error *err)
{
    fx *f = ud;
    if (ev == FR_PGCONN_UP)
        f->ups++;
    else if (ev == FR_PGCONN_LOST)
        f->losts++;
    else
        f->faileds++;
    if (err)
        fr_error_format(err, f->state_msg, sizeof f->state_msg);
}

static void on_done(void *ud, fr_pgres *res)
{
    slot *s = ud;
    assert_null(s->res); /* called once */
    s->res = res;
    s->order = ++s->f->completed;
    if (s->f->c && fr_pgconn_in_flight(s->f->c) > s->f->max_in_flight)
        s->f->max_in_flight = fr_pgconn_in_flight(s->f->c);
}

static void open_url(fx *f, const char *url)
{
    fr_error err = {0};
    int rc = fr_pgconn_open(&f->loop, url, on_state, f, &f->c, &err);
    if (rc != FR_OK)
        fail_msg("fr_pgconn_open: %s: %s", fr_err_name(rc), err.msg);
}

static void open_up(fx *f, const char *url)
{
    open_url(f, url);
    LOOP_RUN_UNTIL(&f->loop, f->ups >= 1 || f->faileds >= 1, 15);
    if (f->ups < 1)
        fail_msg("the connection did not come up: %s", f->state_msg);
}

/* Queues `sql` with `n` parameters into slot `i`. */
static void query(fx *f, int i, const char *sql, int n, const char *const *params)
{
    assert_int_equal(fr_pgconn_query(f->c, sql, n, params, on_done, &f->slots[i]), FR_OK);
}

static fr_pgres *wait_slot(fx *f, int i)
{
    LOOP_RUN_UNTIL(&f->loop, f->slots[i].res != NULL, 15);
    return f->slots[i].res;
}

static void assert_res_ok(const fr_pgres *r)
{
    if (fr_pgres_code(r) != FR_OK)
        fail_msg("%s: %s", fr_err_name(fr_pgres_code(r)), fr_pgres_message(r));
}

/* Runs `sql` on `f`'s connection and returns its result (owned by `f`). */
static fr_pgres *run(fx *f, int i, const char *sql)
{
    query(f, i, sql, 0, NULL);
    fr_pgres *r = wait_slot(f, i);
    assert_res_ok(r);
    return r;
}

static void test_tcp(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    fr_pgres *r = run(f, 0, "SELECT 1 + 1 AS two, inet_server_addr() IS NULL AS on_socket");
    assert_int_equal(fr_pgres_rows(r), 1);
    assert_int_equal(fr_pgres_cols(r), 2);
    assert_string_equal(fr_pgres_name(r, 0), "two");
    assert_string_equal(fr_pgres_value(r, 0, 0), "2");
    assert_string_equal(fr_pgres_value(r, 0, 1), "f");
    assert_null(fr_pgres_value(r, 1, 0));
    assert_null(fr_pgres_name(r, 2));
}

static void test_unix_socket(void **state)
{
    fx *f = *state;
    char url[PATH_MAX + 128];
    snprintf(url, sizeof url, "host=%s port=%s user=postgres dbname=flowrun_test", server.socket,
             server.port);
    open_up(f, url);
    fr_pgres *r = run(f, 0, "SELECT inet_server_addr() IS NULL, current_database()");
    assert_string_equal(fr_pgres_value(r, 0, 0), "t");
    assert_string_equal(fr_pgres_value(r, 0, 1), "flowrun_test");
}

/* libpq's environment alone, with a host name to resolve on the loop. */
static void test_environment_and_host_name(void **state)
{
    fx *f = *state;
    setenv("PGHOST", "localhost", 1);
    setenv("PGPORT", server.port, 1);
    setenv("PGUSER", "postgres", 1);
    setenv("PGDATABASE", "flowrun_test", 1);
    open_url(f, "");
    /* libpq reads them when it connects, after the resolution. */
    LOOP_RUN_UNTIL(&f->loop, f->ups >= 1 || f->faileds >= 1, 15);
    unsetenv("PGHOST");
    unsetenv("PGPORT");
    unsetenv("PGUSER");
    unsetenv("PGDATABASE");
    if (f->ups < 1)
        fail_msg("the connection did not come up: %s", f->state_msg);
    fr_pgres *r = run(f, 0, "SELECT host(inet_server_addr()), current_user");
    assert_string_equal(fr_pgres_value(r, 0, 0), "127.0.0.1");
    assert_string_equal(fr_pgres_value(r, 0, 1), "postgres");
}

/* Each statement's result of one transaction, and which statement failed. */
static void test_each_statement(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    const char *p[1] = {"7"};
    fr_pgstmt three[3] = {{"SELECT 1 AS one", 0, NULL},
                          {"SELECT 'x', $1::integer * 2 UNION ALL SELECT 'y', 3", 1, p},
                          {"SET LOCAL lock_timeout = 100", 0, NULL}};
    assert_int_equal(fr_pgconn_transaction_each(f->c, 3, three, on_done, &f->slots[0]), FR_OK);
    fr_pgres *r = wait_slot(f, 0);
    assert_res_ok(r);
    assert_int_equal(fr_pgres_parts(r), 3);
    assert_string_equal(fr_pgres_value(fr_pgres_part(r, 0), 0, 0), "1");
    assert_int_equal(fr_pgres_rows(fr_pgres_part(r, 1)), 2);
    assert_string_equal(fr_pgres_value(fr_pgres_part(r, 1), 0, 1), "14");
    assert_string_equal(fr_pgres_value(fr_pgres_part(r, 1), 1, 0), "y");
    assert_int_equal(fr_pgres_rows(fr_pgres_part(r, 2)), 0);
    assert_null(fr_pgres_part(r, 3));
    assert_int_equal(fr_pgres_failed(r), -1);
    /* The last statement's result is the request's too. */
    assert_int_equal(fr_pgres_rows(r), 0);
    /* A failure names its statement; nothing of the transaction stays. */
    fr_pgstmt bad[3] = {{"CREATE TABLE each_t (x integer)", 0, NULL},
                        {"SELECT 1 / 0", 0, NULL},
                        {"SELECT 3", 0, NULL}};
    assert_int_equal(fr_pgconn_transaction_each(f->c, 3, bad, on_done, &f->slots[1]), FR_OK);
    r = wait_slot(f, 1);
    assert_int_equal(fr_pgres_code(r), FR_ESTORE);
    assert_string_equal(fr_pgres_sqlstate(r), "22012");
    assert_int_equal(fr_pgres_failed(r), 1);
    assert_int_equal(fr_pgres_parts(r), 0);
    r = run(f, 2, "SELECT to_regclass('each_t') IS NULL");
    assert_string_equal(fr_pgres_value(r, 0, 0), "t");
    /* Without _each: no parts, and no failed statement for an error not the server's. */
    r = run(f, 3, "SELECT 1");
    assert_int_equal(fr_pgres_parts(r), 0);
    assert_null(fr_pgres_part(r, 0));
}

typedef struct heard {
    int n;
    char channel[64], payload[64];
} heard;

static void on_heard(void *ud, const char *channel, const char *payload)
{
    heard *h = ud;
    h->n++;
    snprintf(h->channel, sizeof h->channel, "%s", channel);
    snprintf(h->payload, sizeof h->payload, "%s", payload);
}

/* LISTEN on one connection, NOTIFY from another: the callback hears it once. */
static void test_notifications(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    heard h = {0};
    fr_pgconn_on_notify(f->c, on_heard, &h);
    run(f, 0, "LISTEN fr_test_chan");
    fr_pgconn *other = NULL;
    fr_error err = {0};
    assert_int_equal(fr_pgconn_open(&f->loop, server.url, NULL, NULL, &other, &err), FR_OK);
    slot s = {f, 0, NULL, 0};
    assert_int_equal(
        fr_pgconn_query(other, "SELECT pg_notify('fr_test_chan', 'hello')", 0, NULL, on_done, &s),
        FR_OK);
    LOOP_RUN_UNTIL(&f->loop, h.n >= 1, 15);
    assert_int_equal(h.n, 1);
    assert_string_equal(h.channel, "fr_test_chan");
    assert_string_equal(h.payload, "hello");
    LOOP_RUN_UNTIL(&f->loop, s.res != NULL, 15);
    assert_res_ok(s.res);
    fr_pgres_free(s.res);
    fr_pgconn_close(other);
    /* Without a callback, a notification is dropped. */
    fr_pgconn_on_notify(f->c, NULL, NULL);
    run(f, 1, "NOTIFY fr_test_chan");
    run(f, 2, "SELECT 1");
    assert_int_equal(h.n, 1);
}

static void test_pipeline_of_1000_in_order(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    char nums[1000][16];
    for (int i = 0; i < 1000; i++) {
        snprintf(nums[i], sizeof nums[i], "%d", i);
        const char *p[1] = {nums[i]};
        query(f, i, "SELECT $1::int * 2", 1, p);
    }
    assert_int_equal(fr_pgconn_waiting(f->c), 1000);
    LOOP_RUN_UNTIL(&f->loop, f->completed == 1000, 60);
    for (int i = 0; i < 1000; i++) {
        fr_pgres *r = f->slots[i].res;
        assert_res_ok(r);
        assert_int_equal(f->slots[i].order, i + 1);
        char want[16];
        snprintf(want, sizeof want, "%d", i * 2);
        assert_string_equal(fr_pgres_value(r, 0, 0), want);
    }
    /* Pipelined: many were out at once, not one round trip each. */
    assert_true(f->max_in_flight >= 100);
    assert_int_equal(fr_pgconn_in_flight(f->c), 0);
}

static void test_parameters(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    run(f, 0, "CREATE TEMP TABLE p (id int, a text, b text)");
    const char *quoted = "it's \"quoted\"; DROP TABLE p; -- $1 \\ end";
    const char *utf8 = "h\xc3\xa9llo \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x8e\x89";
    const char *p1[3] = {"1", quoted, utf8};
    query(f, 1, "INSERT INTO p VALUES ($1, $2, $3)", 3, p1);
    const char *p2[3] = {"2", NULL, ""};
    query(f, 2, "INSERT INTO p VALUES ($1, $2, $3)", 3, p2);
    assert_res_ok(wait_slot(f, 1));
    assert_res_ok(wait_slot(f, 2));
    assert_int_equal(fr_pgres_affected(f->slots[2].res), 1);
    fr_pgres *r = run(f, 3, "SELECT a, b, a IS NULL, length(b) FROM p ORDER BY id");
    assert_int_equal(fr_pgres_rows(r), 2);
    assert_string_equal(fr_pgres_value(r, 0, 0), quoted);
    assert_string_equal(fr_pgres_value(r, 0, 1), utf8);
    assert_string_equal(fr_pgres_value(r, 0, 3), "12");
    assert_null(fr_pgres_value(r, 1, 0));
    assert_string_equal(fr_pgres_value(r, 1, 1), "");
    assert_string_equal(fr_pgres_value(r, 1, 2), "t");
    const char *p3[1] = {NULL};
    fr_pgres *n = (query(f, 4, "SELECT $1::text IS NULL", 1, p3), wait_slot(f, 4));
    assert_string_equal(fr_pgres_value(n, 0, 0), "t");
}

static void test_transaction(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    run(f, 0, "CREATE TABLE tx (id int PRIMARY KEY, v text)");
    const char *a[2] = {"1", "one"}, *b[2] = {"2", "two"}, *c3[2] = {"3", "three"};
    fr_pgstmt good[3] = {{"INSERT INTO tx VALUES ($1, $2)", 2, a},
                         {"INSERT INTO tx VALUES ($1, $2)", 2, b},
                         {"SELECT count(*) FROM tx", 0, NULL}};
    assert_int_equal(fr_pgconn_transaction(f->c, 3, good, on_done, &f->slots[1]), FR_OK);
    /* A duplicate key in the second statement: the first is rolled back. */
    fr_pgstmt bad[2] = {{"INSERT INTO tx VALUES ($1, $2)", 2, c3},
                        {"INSERT INTO tx VALUES ($1, $2)", 2, a}};
    assert_int_equal(fr_pgconn_transaction(f->c, 2, bad, on_done, &f->slots[2]), FR_OK);
    query(f, 3, "SELECT string_agg(v, ',' ORDER BY id) FROM tx", 0, NULL);
    fr_pgres *r = wait_slot(f, 3);
    assert_res_ok(f->slots[1].res);
    assert_string_equal(fr_pgres_value(f->slots[1].res, 0, 0), "2");
    assert_int_equal(fr_pgres_code(f->slots[2].res), FR_ESTORE);
    assert_string_equal(fr_pgres_sqlstate(f->slots[2].res), "23505");
    assert_non_null(strstr(fr_pgres_message(f->slots[2].res), "duplicate key"));
    assert_res_ok(r);
    assert_string_equal(fr_pgres_value(r, 0, 0), "one,two");
    run(f, 4, "DROP TABLE tx");
}

static void test_restart_mid_pipeline(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    for (int i = 0; i < 3; i++)
        query(f, i, "SELECT 1", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, f->completed == 3, 15);
    query(f, 3, "SELECT pg_sleep(60)", 0, NULL);
    for (int i = 4; i < 7; i++)
        query(f, i, "SELECT 2", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, fr_pgconn_in_flight(f->c) == 4, 15);
    assert_true(pg_server_restart(&server));
    LOOP_RUN_UNTIL(&f->loop, f->losts == 1, 15);
    /* Everything in flight: outcome unknown, never repeated. */
    for (int i = 3; i < 7; i++) {
        assert_non_null(f->slots[i].res);
        assert_int_equal(fr_pgres_code(f->slots[i].res), FR_EOUTCOME);
        assert_null(strstr(fr_pgres_message(f->slots[i].res), server.password));
    }
    assert_non_null(strstr(f->state_msg, "postgresql://postgres@127.0.0.1:"));
    /* Queued while down: they wait, then go out on the new connection. */
    for (int i = 7; i < 17; i++)
        query(f, i, "SELECT 3", 0, NULL);
    assert_int_equal(fr_pgconn_in_flight(f->c), 0);
    LOOP_RUN_UNTIL(&f->loop, f->completed == 17, 30);
    for (int i = 7; i < 17; i++) {
        assert_res_ok(f->slots[i].res);
        assert_string_equal(fr_pgres_value(f->slots[i].res, 0, 0), "3");
    }
    assert_int_equal(f->ups, 2);
    assert_int_equal(f->losts, 1);
}

typedef struct ticker {
    uv_timer_t t;
    int ticks;
} ticker;

static void tick(uv_timer_t *t)
{
    ((ticker *)(void *)t)->ticks++;
}

static void test_lock_wait_keeps_the_loop_running(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    run(f, 0, "CREATE TABLE lk (id int PRIMARY KEY, v int)");
    run(f, 1, "INSERT INTO lk VALUES (1, 0)");
    fx *g = calloc(1, sizeof *g); /* the other session, on the same loop */
    assert_non_null(g);
    for (int i = 0; i < 4; i++) {
        g->slots[i].f = g;
        g->slots[i].index = i;
    }
    fr_error err = {0};
    assert_int_equal(fr_pgconn_open(&f->loop, server.url, on_state, g, &g->c, &err), FR_OK);
    assert_int_equal(fr_pgconn_query(g->c, "BEGIN", 0, NULL, on_done, &g->slots[0]), FR_OK);
    assert_int_equal(fr_pgconn_query(g->c, "SELECT v FROM lk WHERE id = 1 FOR UPDATE", 0, NULL,
                                     on_done, &g->slots[1]),
                     FR_OK);
    LOOP_RUN_UNTIL(&f->loop, g->completed == 2, 15);
    assert_res_ok(g->slots[1].res);
    ticker tk = {.ticks = 0};
    uv_timer_init(&f->loop, &tk.t);
    uv_timer_start(&tk.t, tick, 5, 5);
    query(f, 2, "UPDATE lk SET v = v + 1 WHERE id = 1", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, tk.ticks >= 20, 15);
    assert_null(f->slots[2].res); /* still waiting on the lock, the loop running */
    assert_int_equal(fr_pgconn_in_flight(f->c), 1);
    assert_int_equal(fr_pgconn_query(g->c, "COMMIT", 0, NULL, on_done, &g->slots[2]), FR_OK);
    fr_pgres *r = wait_slot(f, 2);
    assert_res_ok(r);
    assert_int_equal(fr_pgres_affected(r), 1);
    uv_close((uv_handle_t *)&tk.t, NULL);
    fr_pgconn_close(g->c);
    run(f, 3, "DROP TABLE lk");
    for (int i = 0; i < 4; i++)
        fr_pgres_free(g->slots[i].res);
    free(g);
}

static void test_statement_timeout(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    fr_pgstmt t[2] = {{"SET statement_timeout = 50", 0, NULL}, {"SELECT pg_sleep(30)", 0, NULL}};
    assert_int_equal(fr_pgconn_transaction(f->c, 2, t, on_done, &f->slots[0]), FR_OK);
    fr_pgres *r = wait_slot(f, 0);
    assert_int_equal(fr_pgres_code(r), FR_ESTORE);
    assert_string_equal(fr_pgres_sqlstate(r), "57014");
    assert_non_null(strstr(fr_pgres_message(r), "statement timeout"));
    /* The setting went with the failed transaction; the connection goes on. */
    fr_pgres *s = run(f, 1, "SHOW statement_timeout");
    assert_string_equal(fr_pgres_value(s, 0, 0), "0");
    assert_int_equal(f->losts, 0);
}

/* A port of 127.0.0.1 nobody listens on. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static char *read_all(FILE *fp)
{
    fflush(fp);
    long n = ftell(fp);
    char *s = calloc(1, (size_t)n + 1);
    rewind(fp);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    return s;
}

static void test_unreachable_masks_the_password(void **state)
{
    fx *f = *state;
    FILE *log = tmpfile();
    fr_log_set_stream(log);
    fr_log_set_level(FR_LOG_DEBUG);
    char url[256], masked[256];
    int port = closed_port();
    snprintf(url, sizeof url, "postgresql://bob:hunter2-secret@127.0.0.1:%d/db", port);
    snprintf(masked, sizeof masked, "postgresql://bob:***@127.0.0.1:%d/db", port);
    open_url(f, url);
    query(f, 0, "SELECT 1", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, f->faileds == 1 && f->slots[0].res, 10);
    fr_log_set_level(FR_LOG_WARN);
    fr_log_set_stream(stderr);
    assert_int_equal(f->ups, 0);
    assert_non_null(strstr(f->state_msg, masked));
    assert_null(strstr(f->state_msg, "hunter2"));
    assert_int_equal(fr_pgres_code(f->slots[0].res), FR_ECONNECT);
    assert_non_null(strstr(fr_pgres_message(f->slots[0].res), masked));
    assert_null(strstr(fr_pgres_message(f->slots[0].res), "hunter2"));
    char *text = read_all(log);
    fclose(log);
    assert_non_null(strstr(text, masked));
    assert_null(strstr(text, "hunter2"));
    free(text);
    /* Failed for good: new requests are refused at once. */
    assert_int_equal(fr_pgconn_query(f->c, "SELECT 1", 0, NULL, on_done, &f->slots[1]),
                     FR_ECONNECT);
}

static void test_passwords(void **state)
{
    fx *f = *state;
    FILE *log = tmpfile();
    fr_log_set_stream(log);
    fr_log_set_level(FR_LOG_DEBUG);
    /* A wrong password in the URL: refused, the password shown nowhere. */
    char url[640];
    const char *host = strstr(server.password_url, "@");
    snprintf(url, sizeof url, "postgresql://pwuser:Wr0ng-pass-77@%s", host + 1);
    open_url(f, url);
    LOOP_RUN_UNTIL(&f->loop, f->faileds == 1, 15);
    assert_non_null(strstr(f->state_msg, "password authentication failed"));
    assert_non_null(strstr(f->state_msg, "postgresql://pwuser:***@"));
    assert_null(strstr(f->state_msg, "Wr0ng-pass-77"));
    fr_pgconn_close(f->c);
    /* The right one, from PGPASSWORD. */
    setenv("PGPASSWORD", server.password, 1);
    f->c = NULL;
    f->faileds = 0;
    open_up(f, server.password_url);
    unsetenv("PGPASSWORD");
    fr_pgres *r = run(f, 0, "SELECT current_user");
    assert_string_equal(fr_pgres_value(r, 0, 0), "pwuser");
    fr_pgconn_close(f->c);
    /* And in the URL itself. */
    snprintf(url, sizeof url, "postgresql://pwuser:%s@%s", server.password, host + 1);
    f->c = NULL;
    f->ups = 0;
    open_up(f, url);
    r = run(f, 1, "SELECT current_user");
    assert_string_equal(fr_pgres_value(r, 0, 0), "pwuser");
    fr_log_set_level(FR_LOG_WARN);
    fr_log_set_stream(stderr);
    char *text = read_all(log);
    fclose(log);
    assert_null(strstr(text, "Wr0ng-pass-77"));
    assert_null(strstr(text, server.password));
    free(text);
}

static void test_close_with_requests_pending(void **state)
{
    fx *f = *state;
    open_up(f, server.url);
    query(f, 0, "SELECT pg_sleep(30)", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, fr_pgconn_in_flight(f->c) == 1, 15);
    for (int i = 1; i < 4; i++)
        query(f, i, "SELECT 1", 0, NULL);
    assert_int_equal(fr_pgconn_waiting(f->c), 3);
    fr_pgconn_close(f->c);
    f->c = NULL;
    assert_int_equal(f->completed, 4); /* before close returned */
    assert_int_equal(fr_pgres_code(f->slots[0].res), FR_EOUTCOME);
    for (int i = 1; i < 4; i++)
        assert_int_equal(fr_pgres_code(f->slots[i].res), FR_ECANCELED);
}

/* Closed while the host name is being resolved and before any connection. */
static void test_close_while_connecting(void **state)
{
    fx *f = *state;
    char url[256];
    snprintf(url, sizeof url, "postgresql://postgres@localhost:%s/flowrun_test", server.port);
    open_url(f, url);
    query(f, 0, "SELECT 1", 0, NULL);
    fr_pgconn_close(f->c);
    f->c = NULL;
    assert_int_equal(fr_pgres_code(f->slots[0].res), FR_ECANCELED);
    assert_int_equal(f->ups, 0);
}

static void assert_masked(const char *url, const char *want)
{
    char *m = fr_pgurl_mask(url);
    assert_string_equal(m, want);
    free(m);
}

static void test_mask_url(void **state)
{
    (void)state;
    assert_masked("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db");
    assert_masked("postgres://u@h/db", "postgres://u@h/db");
    assert_masked("postgresql://h/db?user=u&password=pw&sslmode=require",
                  "postgresql://h/db?user=u&password=***&sslmode=require");
    assert_masked("postgresql://h/db?pass%77ord=pw", "postgresql://h/db?pass%77ord=***");
    assert_masked("postgresql://u:p%40w@h/db", "postgresql://u:***@h/db");
    assert_masked("host=h password='a b\\' c' user=u", "host=h password=*** user=u");
    assert_masked("password=pw", "password=***");
    assert_masked("host=h password='unterminated", "host=h password=***");
    assert_masked("flowrun_test", "flowrun_test");
    assert_masked("dbname=postgresql://u:pw@h/db", "dbname='postgresql://u:***@h/db'");
    /* Masking the password would move where the user info ends. */
    assert_masked("postgres://h?password=a/b&x=1:z@y", "postgres://***");
    assert_masked("host=h password='x'port=5", "host=h password=*** port=5");
    assert_null(fr_pgurl_mask(NULL));
    /* What --state takes as a database rather than a folder. */
    assert_true(fr_pgurl_is_url("postgresql://u@h/db"));
    assert_true(fr_pgurl_is_url("postgres://h"));
    assert_false(fr_pgurl_is_url("postgresql:/h"));
    assert_false(fr_pgurl_is_url("./postgresql://x"));
    assert_false(fr_pgurl_is_url("host=h dbname=d"));
    assert_false(fr_pgurl_is_url(""));
    assert_false(fr_pgurl_is_url(NULL));
    /* A URL that does not parse: FR_ECONFIG, masked. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    fr_error err = {0};
    fr_pgconn *c = NULL;
    assert_int_equal(fr_pgconn_open(&loop, "postgresql://u:pw@h/db?nosuch=1", NULL, NULL, &c, &err),
                     FR_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err.msg, "postgresql://u:***@h/db"));
    assert_null(strstr(err.msg, ":pw@"));
    loop_drain_close(&loop, 5);
}

int main(void)
{
    PG_SERVER_START_OR_RETURN(&server);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_environment_and_host_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notifications, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_of_1000_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_wait_keeps_the_loop_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statement_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_masks_the_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwords, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_requests_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_connecting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_mid_pipeline, setup, teardown),
        cmocka_unit_test(test_mask_url),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pg_server_stop(&server);
    return rc;
}
