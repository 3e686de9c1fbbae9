#include "engine/timers.h"

#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

typedef struct one {
    fr_timers *tm;
    size_t task;
    uv_timer_t deadline;
    uv_timer_t retry;
    bool init;
    bool retry_armed;
} one;

struct fr_timers {
    uv_loop_t *loop;
    one *t;
    size_t cap;
    fr_timer_hooks h;
    uv_timer_t wake;
    bool wake_init;
    uv_idle_t turn;
    bool turn_init;
    int retries;
};

fr_timers *fr_timers_new(uv_loop_t *loop, size_t cap, const fr_timer_hooks *hooks)
{
    fr_timers *tm = fr_xcalloc(1, sizeof *tm);
    tm->loop = loop;
    tm->cap = cap;
    /* Written once here although calloc zeroed it: a large calloc is fresh
     * zero pages, and get() reads an entry before it writes it, so each page
     * would fault twice, the second a copy of the zero page with a TLB flush
     * on every core while the pool's threads run. Written here, a page
     * faults once. */
    tm->t = fr_xcalloc(cap ? cap : 1, sizeof *tm->t);
    memset(tm->t, 0, (cap ? cap : 1) * sizeof *tm->t);
    tm->h = *hooks;
    return tm;
}

static one *get(fr_timers *tm, size_t task)
{
    one *o = &tm->t[task];
    if (!o->init) {
        uv_timer_init(tm->loop, &o->deadline);
        uv_timer_init(tm->loop, &o->retry);
        o->deadline.data = o->retry.data = o;
        o->tm = tm;
        o->task = task;
        o->init = true;
    }
    return o;
}

static void fired_deadline(uv_timer_t *h)
{
    one *o = h->data;
    o->tm->h.deadline(o->tm->h.ud, o->task);
}

static void fired_retry(uv_timer_t *h)
{
    one *o = h->data;
    o->retry_armed = false;
    o->tm->retries--;
    o->tm->h.retry(o->tm->h.ud, o->task);
}

static void fired_wake(uv_timer_t *h)
{
    fr_timers *tm = h->data;
    tm->h.wake(tm->h.ud, 0);
}

void fr_timers_wake_at(fr_timers *tm, double at_ms, double now_ms)
{
    uint64_t delay = at_ms > now_ms ? (uint64_t)(at_ms - now_ms) + 1 : 1;
    if (!tm->wake_init) {
        uv_timer_init(tm->loop, &tm->wake);
        tm->wake.data = tm;
        tm->wake_init = true;
    }
    if (!uv_is_active((uv_handle_t *)&tm->wake) || delay < uv_timer_get_due_in(&tm->wake))
        uv_timer_start(&tm->wake, fired_wake, delay, 0);
}

static void fired_turn(uv_idle_t *h)
{
    fr_timers *tm = h->data;
    uv_idle_stop(h);
    tm->h.turn(tm->h.ud, 0);
}

void fr_timers_next_turn(fr_timers *tm)
{
    if (!tm->turn_init) {
        uv_idle_init(tm->loop, &tm->turn);
        tm->turn.data = tm;
        tm->turn_init = true;
    }
    uv_idle_start(&tm->turn, fired_turn);
}

bool fr_timers_waking(const fr_timers *tm)
{
    return (tm->wake_init && uv_is_active((const uv_handle_t *)&tm->wake)) ||
           (tm->turn_init && uv_is_active((const uv_handle_t *)&tm->turn));
}

void fr_timers_deadline(fr_timers *tm, size_t task, uint64_t ms)
{
    uv_timer_start(&get(tm, task)->deadline, fired_deadline, ms, 0);
}

void fr_timers_retry(fr_timers *tm, size_t task, uint64_t ms)
{
    one *o = get(tm, task);
    if (!o->retry_armed)
        tm->retries++;
    o->retry_armed = true;
    uv_timer_start(&o->retry, fired_retry, ms, 0);
}

void fr_timers_stop(fr_timers *tm, size_t task)
{
    one *o = &tm->t[task];
    if (!o->init)
        return;
    uv_timer_stop(&o->deadline);
    if (o->retry_armed) {
        uv_timer_stop(&o->retry);
        o->retry_armed = false;
        tm->retries--;
    }
}

int fr_timers_retries(const fr_timers *tm)
{
    return tm->retries;
}

void fr_timers_close(fr_timers *tm)
{
    if (tm->wake_init)
        uv_close((uv_handle_t *)&tm->wake, NULL);
    if (tm->turn_init)
        uv_close((uv_handle_t *)&tm->turn, NULL);
    tm->wake_init = tm->turn_init = false;
    for (size_t i = 0; i < tm->cap; i++) {
        one *o = &tm->t[i];
        if (!o->init)
            continue;
        fr_timers_stop(tm, i);
        uv_close((uv_handle_t *)&o->deadline, NULL);
        uv_close((uv_handle_t *)&o->retry, NULL);
        o->init = false;
    }
}

void fr_timers_free(fr_timers *tm)
{
    if (!tm)
        return;
    free(tm->t);
    free(tm);
}
