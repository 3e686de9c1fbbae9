/* Unit tests of engine/booking's slots of shared endpoints: a request whose
 * endpoint's slots another process holds waits, queued in order, and goes
 * only once it holds one (the other's settle frees it; its own settle hands
 * it on at once); a queued request taken back never goes; the slots a
 * process holds itself are counted by its books per endpoint and model, up
 * on a slot and down on its settle; the books' timer closes when nothing is
 * held or waited for, so the loop ends and closes. Two books on one store
 * file are two processes. */

#include "engine/booking.h"
#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/store_fixture.h"

#include <uv.h>

typedef struct waiter {
    fr_booking_wait w;
    fr_attempt_rec a;
    long long row;
    int gone;     /* go calls */
    bool durable; /* what the last said */
    int order;    /* when it went, from 1 */
} waiter;

static int went;

static void on_go(void *ud, bool durable)
{
    waiter *x = ud;
    x->gone++;
    x->durable = durable;
    x->order = ++went;
}

/* Makes `x` a request of `task` of `run` for "gpu" serving `model`, at
 * worst `cost` USD, its go counted in `x`. */
static void waiter_on(waiter *x, const char *run, const char *task, const char *model, double cost)
{
    memset(x, 0, sizeof *x);
    x->w = (fr_booking_wait){.go = on_go, .ud = x};
    x->a = (fr_attempt_rec){.run_id = run,
                            .task = task,
                            .endpoint = "gpu",
                            .tier = "local",
                            .model = model,
                            .attempt = 1,
                            .cost_usd = cost};
}

/* Asks books `b` for a slot of "gpu" serving `model` (max_parallel `max`)
 * for `task` of `run`, a priced attempt: released at the turn's commit,
 * whose go these tests follow (a $0 one goes at once:
 * test_free_slot_goes_at_once). */
static void ask_on(fr_booking *b, waiter *x, const char *run, const char *task, const char *model,
                   int max)
{
    waiter_on(x, run, task, model, 0.001);
    assert_true(fr_booking_reserve_slot(b, &x->a, max, &x->row, &x->w));
    assert_true(x->w.parked);
    fr_booking_flush(b); /* one thread, two "processes": never hold the lock across */
}

/* Asks books `b` for a slot of "gpu" (max_parallel 1) for `task` of `run`. */
static void ask(fr_booking *b, waiter *x, const char *run, const char *task)
{
    ask_on(b, x, run, task, "m", 1);
}

typedef struct two {
    uv_loop_t loop;
    fr_booking *b1, *b2;
    fr_budget *budget;
} two;

/* Settles x's slot in books `b` of `t` as answered. Both books' batches
 * are committed first: a retry the loop's last timers made may hold the
 * write lock, which one thread must not wait for. */
static void done(two *t, fr_booking *b, waiter *x)
{
    fr_booking_flush(t->b1);
    fr_booking_flush(t->b2);
    fr_attempt_rec a = x->a;
    a.outcome = "ok";
    fr_booking_settle(b, x->row, &a, t->budget, 0);
    fr_booking_flush(b);
    assert_false(fr_booking_failed(b));
}

static void two_open(two *t, fx *f)
{
    fr_error err = {0};
    went = 0;
    assert_int_equal(fr_booking_open(f->path, "r1", &t->b1, &err), FR_OK);
    assert_int_equal(fr_booking_open(f->path, "r2", &t->b2, &err), FR_OK);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    fr_booking_attach(t->b1, &t->loop);
    fr_booking_attach(t->b2, &t->loop);
    fr_booking_begin(t->b1, "wf", NULL);
    fr_booking_begin(t->b2, "wf", NULL);
    t->budget = fr_budget_new(false, 0, false, 0);
}

/* The loop ends by itself (every handle of the books closed), then the
 * books end: their owner rows go. */
static void two_close(two *t, fx *f)
{
    assert_int_equal(loop_run_to_end(&t->loop, 10), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    assert_int_equal(fr_booking_end(t->b1, "ok", 0, 0), FR_OK);
    assert_int_equal(fr_booking_end(t->b2, "ok", 0, 0), FR_OK);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM owners"), 0);
    fr_booking_free(t->b1);
    fr_booking_free(t->b2);
    fr_budget_free(t->budget);
}

static void test_waits_for_a_slot_held_elsewhere(void **state)
{
    fx *f = *state;
    two t;
    two_open(&t, f);
    waiter x1, x2, x3;
    ask(t.b1, &x1, "r1", "a");
    assert_false(x1.w.queued);
    ask(t.b2, &x2, "r2", "a");
    assert_true(x2.w.queued);
    ask(t.b2, &x3, "r2", "b"); /* behind x2, in order */
    assert_true(x3.w.queued);
    LOOP_RUN_UNTIL(&t.loop, x1.gone == 1, 5);
    assert_true(x1.durable && x1.row > 0);
    /* b1 holds the slot: b2's requests wait, asking again and again. */
    loop_watchdog *wd = loop_watchdog_start(&t.loop, 0.3);
    while (loop_watchdog_step(wd))
        ;
    loop_watchdog_end(wd);
    assert_int_equal(x2.gone + x3.gone, 0);
    done(&t, t.b1, &x1);
    LOOP_RUN_UNTIL(&t.loop, x2.gone == 1, 5);
    assert_true(x2.durable && x2.row > 0 && !x2.w.queued && !x2.w.parked);
    assert_true(x2.w.waited_ms >= 300);
    assert_int_equal(x3.gone, 0);
    done(&t, t.b2, &x2); /* its own settle hands the slot on at once */
    LOOP_RUN_UNTIL(&t.loop, x3.gone == 1, 5);
    assert_true(x3.durable && x3.row > 0);
    assert_true(x1.order < x2.order && x2.order < x3.order);
    done(&t, t.b2, &x3);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     0);
    two_close(&t, f);
}

static void test_queued_request_taken_back(void **state)
{
    fx *f = *state;
    two t;
    two_open(&t, f);
    waiter x1, x2;
    ask(t.b1, &x1, "r1", "a");
    ask(t.b2, &x2, "r2", "a");
    assert_true(x2.w.queued);
    fr_booking_unpark(t.b2, &x2.w);
    assert_false(x2.w.parked || x2.w.queued);
    fr_booking_unpark(t.b2, &x2.w); /* twice is nothing */
    LOOP_RUN_UNTIL(&t.loop, x1.gone == 1, 5);
    done(&t, t.b1, &x1);
    loop_spin(&t.loop, 3);
    assert_int_equal(x2.gone, 0);
    assert_int_equal(x2.row, 0);
    two_close(&t, f);
}

/* A tool loop's later turn asks without waiting: refused while the slot
 * is held elsewhere (nothing booked), committed at once when it is free. */
static void test_turn_asks_without_waiting(void **state)
{
    fx *f = *state;
    two t;
    two_open(&t, f);
    waiter x1;
    ask(t.b1, &x1, "r1", "a");
    LOOP_RUN_UNTIL(&t.loop, x1.gone == 1, 5);
    fr_attempt_rec turn = {.run_id = "r2",
                           .task = "tools",
                           .endpoint = "gpu",
                           .tier = "local",
                           .model = "m",
                           .attempt = 1};
    long long row = -1;
    fr_booking_flush(t.b1); /* as in done() */
    assert_true(fr_booking_reserve_slot(t.b2, &turn, 1, &row, NULL));
    assert_int_equal(row, 0);
    fr_booking_flush(t.b2);
    done(&t, t.b1, &x1);
    assert_true(fr_booking_reserve_slot(t.b2, &turn, 1, &row, NULL));
    assert_true(row < 0);                               /* a $0 slot: its owner's count */
    assert_int_equal(slots_recorded(f->path, NULL), 1); /* committed: another connection sees it */
    waiter x2 = {.a = turn, .row = row};
    done(&t, t.b2, &x2);
    two_close(&t, f);
}

/* The slots one process holds are its books' count, per endpoint and
 * model: "gpu" serving "m" and serving "m2" are two servers' slots; a slot
 * counts up when reserved and down when it settles (its own settle hands
 * it to the next of its requests queued), and another model's settle
 * frees none of "m"'s. */
static void test_own_slots_counted_per_model(void **state)
{
    fx *f = *state;
    two t;
    two_open(&t, f);
    waiter x1, x2, x3, y1;
    ask_on(t.b1, &x1, "r1", "a", "m", 2);
    ask_on(t.b1, &x2, "r1", "b", "m", 2);
    assert_false(x1.w.queued || x2.w.queued);
    ask_on(t.b1, &y1, "r1", "y", "m2", 2); /* "m"'s two are not "m2"'s */
    assert_false(y1.w.queued);
    ask_on(t.b1, &x3, "r1", "c", "m", 2); /* its own two of "m" held */
    assert_true(x3.w.queued);
    LOOP_RUN_UNTIL(&t.loop, x1.gone + x2.gone + y1.gone == 3, 5);
    assert_int_equal(x3.gone, 0);
    done(&t, t.b1, &x1); /* one fewer of "m": x3 holds it */
    LOOP_RUN_UNTIL(&t.loop, x3.gone == 1, 5);
    assert_true(x3.durable && x3.row > 0);
    /* Two of "m" held (x2, x3): a turn that does not wait is refused, also
     * after "m2"'s slot settles, and granted once one of "m" does. */
    fr_attempt_rec turn = x1.a;
    turn.task = "tools";
    long long row = -1;
    assert_true(fr_booking_reserve_slot(t.b1, &turn, 2, &row, NULL));
    assert_int_equal(row, 0);
    done(&t, t.b1, &y1);
    assert_true(fr_booking_reserve_slot(t.b1, &turn, 2, &row, NULL));
    assert_int_equal(row, 0);
    done(&t, t.b1, &x2);
    assert_true(fr_booking_reserve_slot(t.b1, &turn, 2, &row, NULL));
    assert_true(row > 0);                               /* priced: its row in flight */
    assert_int_equal(slots_recorded(f->path, NULL), 2); /* x3 and the turn */
    waiter x4 = {.a = turn, .row = row};
    done(&t, t.b1, &x3);
    done(&t, t.b1, &x4);
    assert_int_equal(slots_recorded(f->path, NULL), 0);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     0);
    two_close(&t, f);
}

/* A $0 request that gets its slot goes at once (not parked: no go to
 * wait for), its owner's count in the turn's batch; once that commits,
 * another process counts it (max_parallel 1: refused, queued) until it
 * settles, when its attempt is booked. */
static void test_free_slot_goes_at_once(void **state)
{
    fx *f = *state;
    two t;
    two_open(&t, f);
    waiter x1, x2;
    waiter_on(&x1, "r1", "a", "m", 0);
    assert_true(fr_booking_reserve_slot(t.b1, &x1.a, 1, &x1.row, &x1.w));
    assert_false(x1.w.parked || x1.w.queued);
    assert_true(x1.row < 0); /* no row in flight: its owner's count */
    fr_booking_flush(t.b1);  /* the turn's commit */
    assert_int_equal(slots_recorded(f->path, NULL), 1);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 0);
    ask(t.b2, &x2, "r2", "a");
    assert_true(x2.w.queued);
    loop_spin(&t.loop, 3);
    assert_int_equal(x1.gone + x2.gone, 0); /* x1 never waited; x2 waits */
    done(&t, t.b1, &x1);
    LOOP_RUN_UNTIL(&t.loop, x2.gone == 1, 5);
    assert_true(x2.durable && x2.row > 0);
    done(&t, t.b2, &x2);
    two_close(&t, f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_waits_for_a_slot_held_elsewhere),
        STORE_TEST(test_queued_request_taken_back),
        STORE_TEST(test_turn_asks_without_waiting),
        STORE_TEST(test_own_slots_counted_per_model),
        STORE_TEST(test_free_slot_goes_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
