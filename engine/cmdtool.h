#pragma once
/* Command tools: the argv the workflow's author wrote, with the model's
 * arguments put in as whole argv items (an item "{{args.NAME}}"), never
 * through a shell; run under engine/proc with a timeout, stdout and stderr
 * captured together up to the tool's cap; the result says the exit code.
 * Never runs a command the author did not write. Used by engine/toolset. */

#include "dsl/workflow.h"
#include "engine/toolres.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <uv.h>

typedef struct fr_cmdtool fr_cmdtool;

/* Runs command tool `t` (borrowed) of a workflow in `wf_dir` (borrowed)
 * with the model's `args` (borrowed, a JSON object already checked against
 * t->parameters) on `loop`. `done` comes once (never from inside this
 * call): the result text is "exit code N" and the output (cut at the cap,
 * saying so); a non-zero exit, a timeout or a missing argument is an error
 * result (a missing argument runs nothing). On FR_OK *out (optional) is a
 * borrowed handle valid until done or fr_cmdtool_cancel. */
int fr_cmdtool_run(uv_loop_t *loop, const fr_tool_spec *t, const char *wf_dir, const json_t *args,
                   fr_tool_done_fn done, void *ud, fr_cmdtool **out, fr_error *err);

/* Ends a run in flight (its process group killed); done is never called. */
void fr_cmdtool_cancel(fr_cmdtool *c);
