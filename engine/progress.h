#pragma once
/* The progress lines a run writes with --progress: the run's start
 * (`tasks=N status=started`, what a reader counts the ended tasks against)
 * and one line per task end (`task=NAME status=...`, with the endpoint,
 * tokens or the reason). engine/mcpd's run_task and users' scripts read
 * them, so their shape lives here once. Used by engine/run. */
#include "engine/endpoint.h"
#include "engine/results.h"

#include <stddef.h>

/* The run started with `ntasks` tasks. */
void fr_progress_started(size_t ntasks);

/* Task `name` ended in `state` (not ok) for `reason` (may be NULL). */
void fr_progress_ended(const char *name, fr_task_state state, const char *reason);

/* Task `name` succeeded with `res` (borrowed) on its endpoint in `eps`. */
void fr_progress_ok(const char *name, const fr_task_result *res, const fr_endpoints *eps);

/* Fan-out `name` succeeded with `instances` instances and `note` (may be NULL). */
void fr_progress_fanout_ok(const char *name, size_t instances, const char *note);
