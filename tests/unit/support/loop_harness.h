#pragma once
/* Shared by the unit tests that run a real libuv loop (test_http_*,
 * test_sim_* via sim_client.h, test_watch, test_output, test_reload, test_mcpd,
 * test_proc, test_cmdtool, test_toolset): run the loop until a condition holds
 * under a watchdog, failing the test with what it waited for; run it to its
 * end under alarm(); spin a few turns that never wait; and drain the loop at
 * the end so that uv_loop_close() returns 0.
 * Header-only, as adapter_harness.h: each test executable is one translation unit, so the
 * harness needs no library of its own and no line in CMakeLists.txt. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <uv.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A condition the loop runs until; `ud` is the caller's, borrowed. */
typedef bool (*loop_cond_fn)(void *ud);

/* One wait's watchdog: a timer of its own, so a wait leaves no handle of the
 * test's behind. Freed in its close callback, as libuv wants. */
typedef struct loop_watchdog {
    uv_timer_t timer; /* first: the handle is the struct */
    bool fired;
} loop_watchdog;

/* Marks the harness's own timers, so the drain tells them from a leak. */
static const char loop_watchdog_tag = 'w';

static inline void loop_watchdog_fire(uv_timer_t *t)
{
    ((loop_watchdog *)(void *)t)->fired = true;
}

static inline void loop_watchdog_closed(uv_handle_t *h)
{
    free(h);
}

/* Starts a watchdog of `timeout_s` seconds on `loop` (borrowed). Returns it
 * owned; loop_watchdog_end gives it back to the loop. */
static inline loop_watchdog *loop_watchdog_start(uv_loop_t *loop, double timeout_s)
{
    loop_watchdog *wd = calloc(1, sizeof *wd);
    assert_non_null(wd);
    assert_int_equal(uv_timer_init(loop, &wd->timer), 0);
    wd->timer.data = (void *)&loop_watchdog_tag;
    assert_int_equal(
        uv_timer_start(&wd->timer, loop_watchdog_fire, (uint64_t)(timeout_s * 1000), 0), 0);
    return wd;
}

/* Runs one turn of `wd`'s loop; false once the watchdog has fired. */
static inline bool loop_watchdog_step(loop_watchdog *wd)
{
    if (!wd->fired)
        uv_run(wd->timer.loop, UV_RUN_ONCE);
    return !wd->fired;
}

/* Stops and closes `wd` (taken). Its close callback frees it on a later
 * turn of the loop: the drain, or the test's next wait. */
static inline void loop_watchdog_end(loop_watchdog *wd)
{
    uv_timer_stop(&wd->timer);
    uv_close((uv_handle_t *)&wd->timer, loop_watchdog_closed);
}

/* Runs `loop` (borrowed) until `cond(ud)` holds or `timeout_s` seconds pass,
 * whichever is first. `cond` is called once before each turn of the loop and
 * not again once it returned true, so it may consume what it found (a parsed
 * reply). Returns whether `cond` held: for a test that asserts
 * the wait itself, or that waits only when an earlier step went well. */
static inline bool loop_wait_for(uv_loop_t *loop, loop_cond_fn cond, void *ud, double timeout_s)
{
    loop_watchdog *wd = loop_watchdog_start(loop, timeout_s);
    bool held;
    while (!(held = cond(ud)) && loop_watchdog_step(wd))
        ;
    if (!held) /* the turn that fired the watchdog may have done it too */
        held = cond(ud);
    loop_watchdog_end(wd);
    return held;
}

/* The same, failing the test, with `what` (borrowed: the condition in words),
 * when `cond` has not held within `timeout_s`. */
static inline void loop_run_until(uv_loop_t *loop, loop_cond_fn cond, void *ud, double timeout_s,
                                  const char *what)
{
    if (!loop_wait_for(loop, cond, ud, timeout_s))
        fail_msg("waited %.1f s for %s: it never happened", timeout_s, what);
}

/* The same for a condition written as an expression, which becomes the
 * message: LOOP_RUN_UNTIL(&f->loop, f->calls >= 1, 5). */
#define LOOP_RUN_UNTIL(loop, expr, timeout_s)                                                      \
    do {                                                                                           \
        loop_watchdog *loop_wd_ = loop_watchdog_start((loop), (timeout_s));                        \
        while (!(expr) && loop_watchdog_step(loop_wd_))                                            \
            ;                                                                                      \
        loop_watchdog_end(loop_wd_);                                                               \
        if (!(expr))                                                                               \
            fail_msg("waited %.1f s for %s: it never happened", (double)(timeout_s), #expr);       \
    } while (0)

/* Runs `loop` (borrowed) until nothing is active, bounded by alarm(`alarm_s`):
 * a handle left active ends the test executable with SIGALRM instead of
 * hanging it. Returns uv_run's code: 0 when nothing is left active. For a
 * test that asserts the loop ends by itself (no watch left running). */
static inline int loop_run_to_end(uv_loop_t *loop, unsigned alarm_s)
{
    alarm(alarm_s);
    int rc = uv_run(loop, UV_RUN_DEFAULT);
    alarm(0);
    return rc;
}

/* Runs `turns` turns of `loop` (borrowed) that never wait: for a test that
 * asserts something does not happen (no reply to a cancelled call) once
 * whatever was ready has run. */
static inline void loop_spin(uv_loop_t *loop, int turns)
{
    for (int i = 0; i < turns; i++)
        uv_run(loop, UV_RUN_NOWAIT);
}

typedef struct loop_leftovers {
    int n;
    char names[256];
} loop_leftovers;

static inline void loop_list_open(uv_handle_t *h, void *arg)
{
    loop_leftovers *left = arg;
    if (uv_is_closing(h) || h->data == &loop_watchdog_tag)
        return;
    size_t used = strlen(left->names);
    snprintf(left->names + used, sizeof left->names - used, "%s%s%s", left->n ? ", " : "",
             uv_handle_type_name(uv_handle_get_type(h)), uv_is_active(h) ? " (active)" : "");
    left->n++;
}

static inline void loop_close_watchdog(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h) && h->data == &loop_watchdog_tag)
        loop_watchdog_end((loop_watchdog *)(void *)h);
}

/* Ends a test's loop (borrowed; the caller frees its memory afterwards):
 * closes the harness's own watchdogs (a failed wait may leave one), runs the
 * loop until it has nothing left to do, for at most `timeout_s` seconds,
 * and closes it. Every other handle must have been closed by its owner, the
 * module under test or the test itself: the harness closing it would hide a
 * leak in the module. Returns true when uv_loop_close() returned 0; else
 * false, with the reason, naming the handles still open, in `why` (`size`
 * bytes), so that a teardown can free its fixture before it fails. */
static inline bool loop_drain(uv_loop_t *loop, double timeout_s, char *why, size_t size)
{
    uv_walk(loop, loop_close_watchdog, NULL);
    loop_watchdog *wd = loop_watchdog_start(loop, timeout_s);
    uv_unref((uv_handle_t *)&wd->timer); /* the drain's own timer keeps nothing alive */
    bool empty = false;
    while (!empty && !wd->fired)
        empty = uv_run(loop, UV_RUN_ONCE) == 0;
    bool fired = wd->fired;
    loop_watchdog_end(wd);
    uv_run(loop, UV_RUN_NOWAIT); /* the watchdog's close callback */
    loop_leftovers left = {0, ""};
    uv_walk(loop, loop_list_open, &left);
    if (fired || left.n) {
        snprintf(why, size, "the loop did not end within %.1f s: %d handle(s) still open: %s",
                 timeout_s, left.n, left.n ? left.names : "none (a request still pending)");
        return false;
    }
    int rc = uv_loop_close(loop);
    if (rc != 0)
        snprintf(why, size, "uv_loop_close: %s", uv_strerror(rc));
    return rc == 0;
}

/* loop_drain, failing the test with its reason. */
static inline void loop_drain_close(uv_loop_t *loop, double timeout_s)
{
    char why[384];
    if (!loop_drain(loop, timeout_s, why, sizeof why))
        fail_msg("%s", why);
}
