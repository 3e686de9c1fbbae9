#pragma once
/* SIGINT and SIGTERM on a run's loop: both handles started unreferenced
 * (they keep no loop alive), one callback with the signal's number, both
 * closed by fr_signals_close. Used by engine/run. */
#include <uv.h>

typedef struct fr_signals fr_signals;

/* Called on the loop thread when `signum` arrives (ud is the caller's). */
typedef void (*fr_signal_fn)(void *ud, int signum);

/* Starts watching on `loop` (borrowed). Owned: fr_signals_close frees it
 * once the loop has closed its handles. */
fr_signals *fr_signals_start(uv_loop_t *loop, fr_signal_fn fn, void *ud);

/* Stops watching and closes the handles; NULL is fine. */
void fr_signals_close(fr_signals *s);
