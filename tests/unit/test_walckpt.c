/* engine/walckpt: a loop whose every turn commits keeps the state store's
 * write-ahead log bounded by checkpoints made in libuv's thread pool (the
 * log starts again from its beginning instead of growing with the run),
 * nothing committed is lost, every handle and request is done when the
 * loop ends (uv_loop_close returns 0), and a close that finds a checkpoint
 * still queued waits for it and leaves nothing behind. */

#include "tests/unit/support/store_fixture.h"

#include "engine/walckpt.h"

#include <uv.h>

typedef struct turns {
    fr_store *st;
    fr_walckpt *w;
    uv_idle_t idle;
    int done, want;
    bool stop_when_queued; /* uv_stop as soon as a checkpoint is queued */
} turns;

static char big_text[12000];

/* One loop turn's writes: a cache entry of 12 kB (several pages), one
 * commit, as engine/booking's turn end does. */
static void on_turn(uv_idle_t *h)
{
    turns *t = h->data;
    fr_reply r = {.text = big_text, .model = "m"};
    char key[32];
    snprintf(key, sizeof key, "key-%d", t->done++);
    assert_ok(fr_store_cache_put(t->st, key, "e1", &r, &e_));
    assert_ok(fr_store_flush(t->st, &e_));
    fr_walckpt_committed(t->w);
    if (t->done == t->want || (t->stop_when_queued && fr_walckpt_busy(t->w))) {
        uv_idle_stop(h);
        uv_close((uv_handle_t *)h, NULL);
        if (t->stop_when_queued)
            uv_stop(h->loop);
    }
}

/* The batch opened: this test commits it in the same turn. */
static void on_pending(void *ud)
{
    (void)ud;
}

static void start_turns(fx *f, uv_loop_t *loop, turns *t, int want)
{
    memset(big_text, 'x', sizeof big_text - 1);
    f->st = open_ok(f->path);
    fr_store_batch(f->st, on_pending, NULL);
    *t = (turns){.st = f->st, .want = want};
    assert_int_equal(uv_loop_init(loop), 0);
    assert_ok(fr_walckpt_open(loop, f->st, &t->w, &e_));
    assert_non_null(t->w);
    uv_idle_init(loop, &t->idle);
    t->idle.data = t;
    uv_idle_start(&t->idle, on_turn);
}

/* 10,000 turns of several pages each, one after the other as fast as the
 * loop goes: without checkpoints the log would hold some 60,000 frames.
 * The pool's checkpoints follow each other, and where commits outpace
 * them the loop copies the rest itself: the log stays within a pass's
 * growth of FR_STORE_WAL_LIMIT. */
static void test_log_stays_bounded(void **state)
{
    fx *f = *state;
    uv_loop_t loop;
    turns t;
    start_turns(f, &loop, &t, 10000);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    fr_walckpt_stats s;
    fr_walckpt_stats_get(t.w, &s);
    print_message("checkpoints in the pool %ld, on the loop %ld, the log at most %ld frames, "
                  "started again %ld times\n",
                  s.runs, s.on_loop, s.most, s.restarts);
    assert_int_equal(s.failed, 0);
    assert_true(s.runs >= 1);
    assert_true(s.runs + s.on_loop >= 2);
    assert_true(s.most >= FR_STORE_CKPT_FRAMES);
    assert_true(s.restarts >= 1); /* what keeps it bounded */
    if (s.most >= 4 * FR_STORE_WAL_LIMIT)
        fail_msg("the log grew to %ld frames", s.most);
    assert_false(fr_walckpt_busy(t.w));
    fr_walckpt_close(t.w);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), 10000);
}

/* The loop stopped with a checkpoint queued: the close waits for its pass;
 * running the loop again finishes the request, and the store closes. */
static void test_close_with_a_checkpoint_queued(void **state)
{
    fx *f = *state;
    uv_loop_t loop;
    turns t;
    start_turns(f, &loop, &t, 100000);
    t.stop_when_queued = true;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(fr_walckpt_busy(t.w));
    fr_walckpt_close(t.w);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal((long)raw_num(f->path, "SELECT count(*) FROM cache"), t.done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_log_stays_bounded),
        STORE_TEST(test_close_with_a_checkpoint_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
