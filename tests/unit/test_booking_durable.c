/* The books' reservations in a loop turn (fr_booking_reserve with a wait):
 * every reservation of one turn is committed by one commit, and no request
 * is released (its go called) before the commit that holds its
 * reservation: at go another connection sees it. A commit that fails
 * releases nothing to send (go with durable false) and fails the books; a
 * request taken back (fr_booking_unpark) is never released; a reservation
 * made while the turn's end releases is released in that same turn. */
#include "engine/booking.h"
#include "engine/store/store_int.h"
#include "tests/unit/support/store_fixture.h"

#include <uv.h>

enum { N = 40 };

typedef struct waiter {
    fr_booking_wait w;
    struct turn *turn;
    int calls;
    bool durable;
    long rows_seen;  /* pending rows another connection saw at go */
    long commits_at; /* the store's commits at go */
    bool chain;      /* at go, reserve once more */
} waiter;

typedef struct turn {
    fx *f;
    fr_booking *b;
    uv_loop_t loop;
    uv_idle_t idle;
    waiter ws[N + 1];
    int n;             /* reservations made in the idle callback */
    int unpark;        /* the index to take back, -1 none */
    long commits_base; /* the store's commits before the turn */
    long gone_early;   /* go calls seen inside the idle callback itself */
    int released;      /* go calls so far */
    bool fail_commit;
} turn;

static long commits(fr_booking *b)
{
    fr_store_stats s;
    fr_store_stats_get(fr_booking_store(b), &s);
    return s.commits;
}

static fr_attempt_rec rec(int attempt)
{
    return (fr_attempt_rec){.run_id = "r1",
                            .task = "t",
                            .endpoint = "e1",
                            .tier = "cloud",
                            .model = "m",
                            .attempt = attempt,
                            .cost_usd = 0.01};
}

static void reserve_one(turn *t, waiter *w, int attempt);

static void on_go(void *ud, bool durable)
{
    waiter *w = ud;
    turn *t = w->turn;
    w->calls++;
    w->durable = durable;
    w->commits_at = commits(t->b);
    w->rows_seen =
        (long)raw_num(t->f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'");
    t->released++;
    if (w->chain && durable)
        reserve_one(t, &t->ws[N], N + 1);
}

static void reserve_one(turn *t, waiter *w, int attempt)
{
    w->turn = t;
    w->w = (fr_booking_wait){.go = on_go, .ud = w};
    fr_attempt_rec a = rec(attempt);
    long long row = 0;
    assert_true(fr_booking_reserve(t->b, &a, &row, &w->w));
    assert_true(row > 0);
    assert_true(w->w.parked);
}

/* SQLite's commit hook: a non-zero return turns the COMMIT into a rollback. */
static int refuse_commit(void *ud)
{
    (void)ud;
    return 1;
}

static void on_idle(uv_idle_t *h)
{
    turn *t = h->data;
    uv_idle_stop(h);
    t->commits_base = commits(t->b);
    if (t->fail_commit)
        sqlite3_commit_hook(fr_booking_store(t->b)->db, refuse_commit, NULL);
    for (int i = 0; i < t->n; i++)
        reserve_one(t, &t->ws[i], i + 1);
    if (t->unpark >= 0) {
        fr_booking_unpark(t->b, &t->ws[t->unpark].w);
        assert_false(t->ws[t->unpark].w.parked);
        fr_booking_unpark(t->b, &t->ws[t->unpark].w); /* twice is nothing */
    }
    t->gone_early = t->released;
    /* Nothing is committed yet: no other process sees these reservations. */
    assert_int_equal(raw_num(t->f->path, "SELECT count(*) FROM attempts"), 0);
}

/* Opens the books of run r1 in f's store, attached to t's loop, and makes
 * `n` reservations in one turn (the idle phase, before the loop's commit). */
static void turn_init(turn *t, fx *f, int n)
{
    memset(t, 0, sizeof *t);
    t->f = f;
    t->n = n;
    t->unpark = -1;
    fr_error err = {0};
    assert_int_equal(fr_booking_open(f->path, "r1", &t->b, &err), FR_OK);
    fr_store_set_clock(fr_booking_store(t->b), utc(2027, 3, 10, 12, 0, 0));
    fr_booking_begin(t->b, "wf", NULL);
    assert_false(fr_booking_failed(t->b));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    fr_booking_attach(t->b, &t->loop);
    uv_idle_init(&t->loop, &t->idle);
    t->idle.data = t;
    uv_idle_start(&t->idle, on_idle);
}

static void turn_free(turn *t)
{
    uv_close((uv_handle_t *)&t->idle, NULL);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    fr_booking_free(t->b);
}

/* N reservations of one turn: one commit, and each request released only
 * after it, in that same turn. */
static void test_one_commit_per_turn_then_go(void **state)
{
    turn t;
    turn_init(&t, *state, N);
    uv_run(&t.loop, UV_RUN_NOWAIT); /* one turn */
    assert_int_equal(t.gone_early, 0);
    assert_int_equal(t.released, N);
    assert_int_equal(commits(t.b) - t.commits_base, 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(t.ws[i].calls, 1);
        assert_true(t.ws[i].durable);
        assert_false(t.ws[i].w.parked);
        assert_int_equal(t.ws[i].commits_at - t.commits_base, 1);
        assert_int_equal(t.ws[i].rows_seen, N); /* durable before it may go */
    }
    assert_false(fr_booking_failed(t.b));
    turn_free(&t);
}

/* A commit that fails releases no request to send, and fails the books. */
static void test_failed_commit_sends_nothing(void **state)
{
    turn t;
    turn_init(&t, *state, N);
    t.fail_commit = true;
    uv_run(&t.loop, UV_RUN_NOWAIT);
    assert_int_equal(t.gone_early, 0);
    assert_int_equal(t.released, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(t.ws[i].calls, 1);
        assert_false(t.ws[i].durable);
        assert_int_equal(t.ws[i].rows_seen, 0);
    }
    assert_true(fr_booking_failed(t.b));
    fr_store_stats s;
    fr_store_stats_get(fr_booking_store(t.b), &s);
    assert_true(s.lost >= 1);
    assert_int_equal(fr_store_lost(fr_booking_store(t.b)), s.lost); /* the cheap read */
    /* Nothing more is parked on failed books: a reservation commits alone
     * (and fails here). */
    waiter late = {0};
    late.w = (fr_booking_wait){.go = on_go, .ud = &late};
    fr_attempt_rec a = rec(99);
    long long row = 0;
    assert_false(fr_booking_reserve(t.b, &a, &row, &late.w));
    assert_false(late.w.parked);
    sqlite3_commit_hook(fr_booking_store(t.b)->db, NULL, NULL);
    turn_free(&t);
    assert_int_equal(late.calls, 0);
}

/* A request taken back while it waits is never released. */
static void test_unparked_is_never_released(void **state)
{
    turn t;
    turn_init(&t, *state, 3);
    t.unpark = 1;
    uv_run(&t.loop, UV_RUN_NOWAIT);
    assert_int_equal(t.ws[0].calls, 1);
    assert_int_equal(t.ws[1].calls, 0);
    assert_int_equal(t.ws[2].calls, 1);
    assert_int_equal(t.released, 2);
    turn_free(&t);
}

/* A reservation made by a release (a request that could not start, whose
 * task goes elsewhere) is committed and released in the same turn: the
 * loop never blocks with a request waiting for a commit. */
static void test_reservation_while_releasing_goes_in_the_same_turn(void **state)
{
    turn t;
    turn_init(&t, *state, 2);
    t.ws[0].chain = true;
    uv_run(&t.loop, UV_RUN_NOWAIT);
    assert_int_equal(t.released, 3);
    assert_int_equal(t.ws[N].calls, 1);
    assert_true(t.ws[N].durable);
    assert_int_equal(t.ws[N].rows_seen, 3);
    assert_int_equal(commits(t.b) - t.commits_base, 2);
    turn_free(&t);
}

/* Books not attached to a loop commit a reservation at once: nothing parks. */
static void test_unattached_commits_at_once(void **state)
{
    fx *f = *state;
    fr_booking *b = NULL;
    fr_error err = {0};
    assert_int_equal(fr_booking_open(f->path, "r1", &b, &err), FR_OK);
    fr_booking_begin(b, "wf", NULL);
    waiter w = {0};
    w.w = (fr_booking_wait){.go = on_go, .ud = &w};
    fr_attempt_rec a = rec(1);
    long long row = 0;
    assert_true(fr_booking_reserve(b, &a, &row, &w.w));
    assert_false(w.w.parked);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     1);
    fr_booking_free(b);
    assert_int_equal(w.calls, 0);
}

/* At the run's end the books take its report: stored through their own
 * connection (no second open: no statement prepared again), its row and
 * text in one commit, seen by another connection once the call returns;
 * a run the books never began is refused as the store refuses it. */
static void test_books_store_the_report(void **state)
{
    fx *f = *state;
    fr_booking *b = NULL;
    fr_error err = {0};
    assert_int_equal(fr_booking_open(f->path, "r1", &b, &err), FR_OK);
    fr_booking_begin(b, "wf", NULL);
    assert_int_equal(fr_booking_end(b, "ok", 0, 0.0), FR_OK);
    fr_store_stats before, after;
    fr_store_stats_get(fr_booking_store(b), &before);
    assert_int_equal(fr_booking_store_report(b, "{\"status\":\"ok\"}\n", "sum\n", &err), FR_OK);
    fr_store_stats_get(fr_booking_store(b), &after);
    assert_int_equal(after.commits, before.commits + 1);
    assert_true(after.prepares - before.prepares <= 1); /* the report's INSERT alone */
    char text[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT CAST(json AS TEXT) FROM reports WHERE run_id = 'r1'", text,
                                 sizeof text),
                        "{\"status\":\"ok\"}\n");
    assert_string_equal(
        raw_text(f->path, "SELECT summary FROM reports WHERE run_id = 'r1'", text, sizeof text),
        "sum\n");
    fr_booking_free(b);

    b = NULL;
    assert_int_equal(fr_booking_open(f->path, "never-begun", &b, &err), FR_OK);
    assert_int_equal(fr_booking_store_report(b, "{}\n", "", &err), FR_EINVAL);
    assert_false(fr_booking_failed(b)); /* the caller says it, not the books */
    fr_booking_free(b);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM reports"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_one_commit_per_turn_then_go),
        STORE_TEST(test_failed_commit_sends_nothing),
        STORE_TEST(test_unparked_is_never_released),
        STORE_TEST(test_reservation_while_releasing_goes_in_the_same_turn),
        STORE_TEST(test_unattached_commits_at_once),
        STORE_TEST(test_books_store_the_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
