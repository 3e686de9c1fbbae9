#pragma once
/* The run's clock: real time on a libuv loop, or the virtual time of a
 * plan that jumps from one expected completion to the next. Everything that
 * schedules (cooldowns, deadlines, retries) or stamps (task starts and ends)
 * reads it, so a plan routes and schedules exactly as a run would. Owned by
 * engine/run; read by route, endpoint health and the report's times. */

#include <stdbool.h>
#include <stdint.h>

struct uv_loop_s;

typedef struct fr_clock fr_clock;

/* Returns a new clock (owned; fr_clock_free): real time on `loop`
 * (borrowed, must outlive the clock), or virtual time starting at 0 when
 * `loop` is NULL. */
fr_clock *fr_clock_new(struct uv_loop_s *loop);
/* Frees a clock; NULL is fine. */
void fr_clock_free(fr_clock *c);

/* True for a plan's virtual clock. */
bool fr_clock_virtual(const fr_clock *c);
/* Now in nanoseconds: the monotonic high-resolution time, or the virtual
 * time. For stamps and durations. */
uint64_t fr_clock_ns(const fr_clock *c);
/* Now in milliseconds on the loop's scheduling clock (cached by the loop
 * for each iteration), or the virtual time. For timers and cooldowns. */
double fr_clock_ms(const fr_clock *c);
/* Brings the loop's cached time up to date (a reply may have waited in the
 * kernel); nothing for a virtual clock. */
void fr_clock_refresh(fr_clock *c);
/* Moves a virtual clock to `ms`; nothing for a real one. */
void fr_clock_set_ms(fr_clock *c, double ms);
