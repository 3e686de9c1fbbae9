#pragma once
/* flowrun plan's attempt backend: virtual time. An attempt takes its slot
 * for the latency the plan expects (what earlier runs observed of this task
 * on this endpoint, else --sim-latency and --sim-tps or the tier's
 * defaults) and ends with the output it expects (observed, else a quarter
 * of max_tokens), so a plan routes and schedules with the run's own code.
 * engine/run drives it: fr_plan_step delivers the earliest completion and
 * moves the clock to it. */

#include "dsl/workflow.h"
#include "engine/attempt.h"
#include "engine/budget.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/results.h"

#include <jansson.h>
#include <stdbool.h>

typedef struct fr_plan fr_plan;

/* Returns a plan (owned; fr_plan_free) on the virtual clock `clock`
 * (borrowed), with what earlier runs observed (`observed`, taken; may be
 * NULL: fr_store_observed's shape) and the rehearsal speeds
 * (`sim_latency_ms`, `sim_tps`; < 0 for the tier's defaults). */
fr_plan *fr_plan_new(fr_clock *clock, json_t *observed, double sim_latency_ms, double sim_tps);
void fr_plan_free(fr_plan *p);
/* A run's plan: fr_plan_new with what earlier runs of `workflow` observed in
 * the state store of `state_dir` (a rehearsal's when `sim`); `res` (borrowed)
 * is told whether anything was observed and where from (valid while the
 * plan lives), `budget` (borrowed) raises no alerts (a plan spends nothing)
 * and *backend is set to the plan's. Owned; fr_plan_free. */
fr_plan *fr_plan_for_run(fr_clock *clock, const char *state_dir, bool sim, const char *workflow,
                         double sim_latency_ms, double sim_tps, fr_results *res, fr_budget *budget,
                         fr_attempt_backend *backend);

/* The backend its attempts run on (valid while `p` lives). */
fr_attempt_backend fr_plan_backend(fr_plan *p);
/* Delivers the earliest completion to come: moves the clock to it and
 * calls its done. False when none is left. */
bool fr_plan_step(fr_plan *p);
/* Completions still to come. */
size_t fr_plan_pending(const fr_plan *p);
/* True when earlier runs observed anything of the workflow. */
bool fr_plan_observed(const fr_plan *p);
