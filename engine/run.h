#pragma once
/* One run of a workflow, the conductor: owns the loop, the scheduler, the
 * endpoints, the budget, the store and the policy; places every task as
 * soon as it is ready (engine/route decides where), starts its attempts
 * (engine/attempt), and from each outcome charges, gates, books, retries,
 * escalates or finishes. What it did is the read-only results view
 * (engine/results.h) that engine/report renders. Used by engine/main.c. */

#include "dsl/workflow.h"
#include "engine/booking.h"
#include "engine/endpoint.h"
#include "engine/results.h"
#include "engine/util/err.h"
#include "engine/util/kinds.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

typedef struct fr_run fr_run;

typedef struct fr_run_opts {
    const char *out_dir;       /* NULL: .flowrun/out/<run id> under the current directory */
    const char *policy;        /* --policy; NULL: the workflow's, else "balanced" */
    const char *baseline;      /* --baseline; NULL: the workflow's */
    bool has_budget;           /* --budget was given: it replaces the workflow's run cap */
    double budget_usd;         /* --budget, >= 0 (0 allows only free work) */
    bool sim;                  /* replace every endpoint by the stand-in server */
    const fr_standin *standin; /* with `sim` (not for a plan): borrowed, outlives the run */
    double sim_latency_ms;     /* < 0: per-tier defaults */
    double sim_tps;            /* < 0: per-tier defaults */
    bool progress;             /* one line per task event on stderr */
    bool live;                 /* the live block on stderr, a terminal (engine/progress) */
    bool progress_fallback;    /* `progress` is the info-level fallback of a run without a
                                  terminal: tool lines keep their level */
    bool explain;              /* print each routing decision as it is made */
    bool has_seed;             /* --seed was given */
    long long seed;            /* --seed: run.seed (else derived from the run id) */
    bool plan;                 /* send nothing: simulate the run with expected latencies */
    const char *state_dir;     /* --state; NULL: $FLOWRUN_STATE, else ./.flowrun */
    bool no_cache;             /* --no-cache: send every request, even when a result is stored */
    const char *const *fresh;  /* --fresh TASK: tasks whose stored results are not used */
    size_t nfresh;
    const char *const *approve; /* --approve TASK: checkpoints approved in advance */
    size_t napprove;
    bool approve_all; /* --approve-all: every checkpoint approved in advance */
} fr_run_opts;

/* Prepares a run of `wf` (borrowed; must outlive the run) with `opts`
 * (borrowed, copied). Builds the graph (cycles are FR_ECYCLE), loads the
 * policy, resolves endpoint keys from the environment (a task that can only
 * use endpoints whose key variable is unset is FR_ECONFIG), opens the state
 * store (FR_ESTORE/FR_ESTOREVER: it must be writable, a run is never made
 * without durability) and creates the output directories. Sends nothing. On
 * FR_OK *out is owned (fr_run_free). */
int fr_run_new(fr_workflow *wf, const fr_run_opts *opts, fr_run **out, fr_error *err);

/* Runs the workflow to the end on the run's own loop; returns when every
 * task has ended and every handle is closed. Returns the process exit code
 * of DESIGN.md section 7 (0, 1, 3, 4: approvals pending, 74, or 128 + the
 * signal). */
int fr_run_execute(fr_run *r);

/* The results of a finished run (borrowed, valid until fr_run_free): its
 * id and output folder among them. */
const fr_results *fr_run_results(const fr_run *r);

/* The run's books in the state store (borrowed, valid until fr_run_free;
 * kept open after fr_run_execute so that the run's report is stored
 * through them, fr_booking_store_report); NULL for a plan. */
fr_booking *fr_run_books(const fr_run *r);

/* Frees a run; NULL is fine. */
void fr_run_free(fr_run *r);
