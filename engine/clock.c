#include "engine/clock.h"

#include "engine/util/mem.h"

#include <stdlib.h>
#include <uv.h>

struct fr_clock {
    uv_loop_t *loop; /* NULL: virtual */
    double vnow_ms;
};

fr_clock *fr_clock_new(struct uv_loop_s *loop)
{
    fr_clock *c = fr_xcalloc(1, sizeof *c);
    c->loop = loop;
    return c;
}

void fr_clock_free(fr_clock *c)
{
    free(c);
}

bool fr_clock_virtual(const fr_clock *c)
{
    return c->loop == NULL;
}

uint64_t fr_clock_ns(const fr_clock *c)
{
    return c->loop ? uv_hrtime() : (uint64_t)(c->vnow_ms * 1e6);
}

double fr_clock_ms(const fr_clock *c)
{
    return c->loop ? (double)uv_now(c->loop) : c->vnow_ms;
}

void fr_clock_refresh(fr_clock *c)
{
    if (c->loop)
        uv_update_time(c->loop);
}

void fr_clock_set_ms(fr_clock *c, double ms)
{
    if (!c->loop)
        c->vnow_ms = ms;
}
