#include "engine/signals.h"

#include "engine/util/mem.h"

#include <signal.h>
#include <stdlib.h>

struct fr_signals {
    uv_signal_t h[2];
    fr_signal_fn fn;
    void *ud;
    int open; /* handles not closed yet */
};

static void on_signal(uv_signal_t *h, int signum)
{
    fr_signals *s = h->data;
    s->fn(s->ud, signum);
}

fr_signals *fr_signals_start(uv_loop_t *loop, fr_signal_fn fn, void *ud)
{
    static const int nums[2] = {SIGINT, SIGTERM};
    fr_signals *s = fr_xcalloc(1, sizeof *s);
    s->fn = fn;
    s->ud = ud;
    for (int i = 0; i < 2; i++) {
        uv_signal_init(loop, &s->h[i]);
        s->h[i].data = s;
        uv_signal_start(&s->h[i], on_signal, nums[i]);
        uv_unref((uv_handle_t *)&s->h[i]);
    }
    s->open = 2;
    return s;
}

static void on_closed(uv_handle_t *h)
{
    fr_signals *s = h->data;
    if (--s->open == 0)
        free(s);
}

void fr_signals_close(fr_signals *s)
{
    if (!s)
        return;
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&s->h[i], on_closed);
}
