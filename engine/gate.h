#pragma once
/* The gates a reply passes before it counts as a task's answer, in order:
 * its finish (an empty reply, one cut at max_tokens, refused, stopped for a
 * tool nobody offered, or holding reasoning only is no answer), the task's
 * JSON Schema, and its check function against min_quality. Also the
 * redaction of known keys a reply may repeat, before any gate, hook,
 * output, report, cache row or dependent sees it. The policy's on_result,
 * the last gate, is asked through engine/route. Pure but for the check,
 * which runs the workflow's Lua (bounded). Used by the conductor and by the
 * result cache (a stored reply passes the gates as they are now). */

#include "dsl/workflow.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <stddef.h>

/* An answer with no text and no JSON is no answer. Returns FR_OK, or
 * FR_EFINISH with *outcome "no_answer" (static) and `err` filled. */
int fr_gate_empty(const fr_reply *reply, const char **outcome, fr_error *err);

/* The finish gate of `reply` (borrowed) for task spec `ts` (borrowed): FR_OK,
 * or FR_EFINISH with *outcome (static: "truncated", "refused", "tool_call",
 * "no_answer") and `err` filled; *outcome is NULL on FR_OK. Includes the
 * empty check. */
int fr_gate_finish(const fr_task_spec *ts, const fr_reply *reply, const char **outcome,
                   fr_error *err);

/* The schema gate: FR_OK, or FR_EQUALITY with `err` saying what does not match. */
int fr_gate_schema(const fr_task_spec *ts, const fr_reply *reply, fr_error *err);

/* The task's check function and min_quality (task `task` of `wf`, borrowed):
 * FR_OK with *score set (untouched without a check), or FR_EQUALITY
 * (*score set when the check scored the reply below min_quality). */
int fr_gate_check(fr_workflow *wf, size_t task, const fr_reply *reply, double *score,
                  fr_error *err);

/* Replaces every registered key in `reply`'s text, JSON and model name (all
 * changed in place) by [REDACTED]; logs once when the text held one, naming
 * `task` and `endpoint` (borrowed). */
void fr_gate_redact(fr_reply *reply, const char *task, const char *endpoint);
