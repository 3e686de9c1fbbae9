#pragma once
/* What a run's end means: each task's final state as the report shows it
 * (a task held at its checkpoint succeeded; those behind it wait, with the
 * reason) and the run's exit code and status word (DESIGN.md section 7).
 * Pure over what it is given. Used by engine/run. */
#include "engine/checkpoint.h"
#include "engine/results.h"
#include "engine/sched.h"

#include <stdbool.h>

/* How the run went beside its tasks. */
typedef struct fr_exit_in {
    int start_rc;      /* FR_OK, or why the run could not start (its tools) */
    bool store_failed; /* the state store could not be written */
    int write_errors;  /* output files that could not be written */
    bool plan;         /* a plan: the code says how the run would end */
} fr_exit_in;

/* The run's tools did not start (`rc` their error, `err` borrowed): says
 * why on stderr and returns the start code fr_exit_in reads. */
int fr_exit_tools_failed(int rc, const fr_error *err);

/* Fills each task's state (and a waiting task's reason) in `res` from
 * `sched` and the checkpoints `cp` (NULL for none), and returns the exit
 * code, also stored in res->exit_code. */
int fr_exit_settle(fr_results *res, const fr_sched *sched, const fr_checkpoints *cp,
                   const fr_exit_in *in);

/* The status word the run's books record for exit code `code` (static). */
const char *fr_exit_status(int code, bool interrupted);
