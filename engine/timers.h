#pragma once
/* The run's timers on its loop: each task's deadline (its timeout, armed
 * when it first becomes ready, so that waiting for an endpoint counts as
 * much as talking to one), the wait before its next attempt, the run's
 * wake-up (the earliest time a waiting task may be placed) and the next
 * turn (an idle handle: the pump goes on after the loop has run once, so
 * that what it started is sent while ready work remains). A timer that
 * fires calls the hook it was given (with the task's index). Used by
 * engine/run; a plan (virtual time) arms none. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fr_timers fr_timers;

/* Called when task `task`'s timer fires (ud is the caller's). */
typedef void (*fr_timer_fn)(void *ud, size_t task);

/* What fires: a task's deadline, a task's retry wait, the wake-up and the
 * next turn (both with task 0). */
typedef struct fr_timer_hooks {
    void *ud;
    fr_timer_fn deadline, retry, wake, turn;
} fr_timer_hooks;

/* Timers for up to `cap` tasks on `loop` (borrowed; it may be initialised
 * later, before the first timer is armed). Free with fr_timers_free. */
fr_timers *fr_timers_new(uv_loop_t *loop, size_t cap, const fr_timer_hooks *hooks);

/* Sets the wake-up to `at_ms` on a clock that reads `now_ms` (at least 1 ms
 * ahead), unless it is armed for earlier. */
void fr_timers_wake_at(fr_timers *tm, double at_ms, double now_ms);

/* Calls the turn hook once after the loop's next turn (its I/O polled
 * without waiting); stopped before the hook runs. */
void fr_timers_next_turn(fr_timers *tm);

/* True while the wake-up or the next turn is armed: the run will place
 * again without anything else happening. */
bool fr_timers_waking(const fr_timers *tm);

/* (Re)starts task `task`'s deadline: fires after `ms`. */
void fr_timers_deadline(fr_timers *tm, size_t task, uint64_t ms);

/* Starts the wait before task `task`'s next attempt: fires after `ms`. */
void fr_timers_retry(fr_timers *tm, size_t task, uint64_t ms);

/* Stops both of task `task`'s timers. */
void fr_timers_stop(fr_timers *tm, size_t task);

/* How many retry waits are armed. */
int fr_timers_retries(const fr_timers *tm);

/* Stops and closes every handle (the loop frees nothing of ours). */
void fr_timers_close(fr_timers *tm);

void fr_timers_free(fr_timers *tm);
