#pragma once
/* The progress lines a run writes with --progress: the run's start
 * (`tasks=N status=started`, what a reader counts the ended tasks against)
 * and one line per task end (`task=NAME status=...`, with the endpoint,
 * tokens or the reason). engine/mcpd's run_task and users' scripts read
 * them, so their shape lives here once. And the live block a terminal
 * shows instead (fr_live_*): running tasks, the queue and a footer, read
 * from the results view. Used by engine/run; engine/main picks the mode. */
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/results.h"
#include "engine/sched.h"
#include "engine/util/log.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* The run started with `ntasks` tasks. */
void fr_progress_started(size_t ntasks);

/* Task `name` ended in `state` (not ok) for `reason` (may be NULL). */
void fr_progress_ended(const char *name, fr_task_state state, const char *reason);

/* Task `name` succeeded with `res` (borrowed) on its endpoint in `eps`. */
void fr_progress_ok(const char *name, const fr_task_result *res, const fr_endpoints *eps);

/* Fan-out `name` succeeded with `instances` instances and `note` (may be NULL). */
void fr_progress_fanout_ok(const char *name, size_t instances, const char *note);

/* Sets the level of the plain lines above (default warn: --progress; info
 * when they are the fallback of a run without a terminal). */
void fr_progress_set_level(fr_log_level level);

/* ---- the live block on a terminal -------------------------------------- */

typedef struct fr_live fr_live;

/* Whether stderr is a terminal that can show the live block (not
 * TERM=dumb). */
bool fr_live_possible(void);

/* Starts the live block on stderr: redrawn every 150 ms from a timer on
 * `loop` (unreferenced: it does not keep the loop alive) and around every
 * log line (which goes above it), hidden while a prompt holds the log back.
 * It reads `res`, `sched`, `eps` and `clock` (borrowed, outlive it) and
 * never writes them. Returns it owned (fr_live_stop frees it). */
fr_live *fr_live_start(uv_loop_t *loop, const fr_results *res, const fr_sched *sched,
                       const fr_endpoints *eps, const fr_clock *clock);

/* Clears the block, shows the cursor, closes the timer (running `loop`
 * until it is closed) and frees `l` (NULL: nothing). */
void fr_live_stop(fr_live *l);
