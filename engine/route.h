#pragma once
/* One routing decision for one ready task: which endpoints it may use at
 * all (privacy, pins, usability, the context window, endpoints it already
 * failed on), which of those the budget admits and which are cooling down,
 * then the policy's choice (or the built-in default when the policy fails),
 * the decision log and --explain. It returns a decision and never acts on
 * it: DISPATCH to an endpoint, WAIT (for a slot, the budget, or a cooldown,
 * with when to look again), or END with a state and a reason. It also
 * bridges the policy's on_result gate. engine/run owns one router and a
 * routing record per task; engine/cache asks it which endpoints a task may
 * use. */

#include "dsl/policy.h"
#include "dsl/reload.h"
#include "dsl/workflow.h"
#include "engine/budget.h"
#include "engine/clock.h"
#include "engine/endpoint.h"
#include "engine/history.h"
#include "engine/results.h"
#include "engine/sched.h"
#include "providers/provider.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fr_router fr_router;

/* What a router reads (all borrowed; each must outlive the router). */
typedef struct fr_route_env {
    const fr_workflow *wf;
    const fr_endpoints *eps;
    const fr_sched *sched;
    fr_budget *budget; /* admission may lease more of the monthly cap */
    const fr_clock *clock;
    const uint64_t *start_ns;       /* when the run started (the run's "elapsed") */
    fr_policy *(*policy)(void *ud); /* the live policy version */
    void *policy_ud;
    bool explain; /* print each decision to stderr as it is made */
} fr_route_env;

/* A task's routing record, owned by the conductor (one per task). */
typedef struct fr_route_task {
    size_t idx;
    fr_task_result *res;        /* its results: attempts, cost and the decision log */
    unsigned char *tried;       /* per endpoint: its retries are spent for this task */
    long retry_ep;              /* the endpoint a scheduled retry goes back to, -1 */
    const char *reason;         /* why it is routed: "first", "error", "quality" or a
                                   finish outcome (static) */
    long est_input;             /* expected input tokens: about a quarter of the bytes */
    long worst_input;           /* at most one token per byte, plus the chat template's */
    double deadline_ms;         /* clock time it times out at; 0 for none (a plan) */
    const char *last_error;     /* the last attempt's error (borrowed), NULL for none */
    const char *finish_outcome; /* the last reply's finish outcome, or NULL */
    size_t ntools;              /* the tools it may call (the policy's task.tools) */
} fr_route_task;

typedef enum { FR_ROUTE_DISPATCH = 0, FR_ROUTE_WAIT, FR_ROUTE_END } fr_route_kind;

typedef struct fr_route_decision {
    fr_route_kind kind;
    size_t endpoint;     /* DISPATCH */
    double wake_at_ms;   /* WAIT: look again at this clock time; 0 when a slot or
                            settling spend will wake the run */
    fr_task_state state; /* END: FR_TASK_FAILED or FR_TASK_BUDGET */
    char *reason;        /* END: why (owned by the caller) */
} fr_route_decision;

/* Checks that every task of `wf` has at least one endpoint of `eps` (both
 * borrowed) it could ever use, so a configuration problem stops the run
 * before anything is sent: FR_OK, or FR_ECONFIG naming the task and why.
 * A private task without a local endpoint fails at run time instead, with a
 * clear reason, while the rest of the workflow runs. */
int fr_route_check_reachable(const fr_workflow *wf, const fr_endpoints *eps, fr_error *err);

/* Returns a new router (owned; fr_router_free) reading `env` (copied). */
fr_router *fr_router_new(const fr_route_env *env);
void fr_router_free(fr_router *rt);
/* A run's router: fr_router_new on the run's pieces (all borrowed, as in
 * fr_route_env; `policy(policy_ud)` gives the live policy version). */
fr_router *fr_router_for_run(const fr_workflow *wf, const fr_endpoints *eps, const fr_sched *sched,
                             fr_budget *budget, const fr_clock *clock, const uint64_t *start_ns,
                             fr_policy *(*policy)(void *ud), void *policy_ud, bool explain);
/* The live policy's self-check on the run's own endpoints, as routing will
 * offer them (fr_route_check_candidates): FR_OK or the policy's error. */
int fr_route_check_policy(const fr_router *rt, fr_error *err);
/* The stall rule: nothing runs and nothing is scheduled, so nothing the
 * policy sees will change while it keeps task `t` waiting. A scheduled
 * retry goes ahead on its endpoint (DISPATCH: all slots are free); any
 * other task is refused (END, FR_TASK_FAILED, the reason naming the
 * policy, owned by the caller). */
fr_route_decision fr_route_stalled(const fr_router *rt, const fr_route_task *t);
/* The hooks dsl/reload calls for a run's live policy: the self-check's
 * candidates (fr_route_check_candidates), the run's elapsed time, and, when
 * a new version is live, `swapped(ud)` (it may place tasks the old one kept
 * waiting). Valid while `rt` lives. */
fr_reload_hooks fr_route_reload_hooks(fr_router *rt, void (*swapped)(void *ud), void *ud);

/* A pass over the ready queue begins (the per-endpoint counts of tasks
 * left waiting restart), and `waiting` tasks of it already wait. */
void fr_route_pass_begin(fr_router *rt);
void fr_route_pass_waiting(fr_router *rt, size_t waiting);

/* Decides for task `t` (changed: a retry may move elsewhere, a decision is
 * logged on DISPATCH). A task with a scheduled retry goes back to its
 * endpoint unless that cools down and another could take it now. */
fr_route_decision fr_route(fr_router *rt, fr_route_task *t);

/* Sets the task's expected and worst-case input tokens from its rendered
 * `prompt` and its agent's `system` prompt (borrowed, may be NULL). */
void fr_route_estimate(fr_route_task *t, const char *prompt, const char *system);
/* The same for a plan, which has no prompt yet: its template (`prompt`,
 * NULL for a prompt function) and `system`, plus `deps_output` tokens
 * expected from its dependencies. */
void fr_route_estimate_plan(fr_route_task *t, const char *prompt, const char *system,
                            long deps_output);

/* Whether task `t` may ever use endpoint `e` (ignoring capacity, budget and
 * cooldown). */
bool fr_route_allowed(const fr_router *rt, const fr_route_task *t, size_t e);
/* Whether an endpoint other than the task's retry endpoint could take it
 * now: allowed, not tried, not cooling down. */
bool fr_route_other_endpoint(const fr_router *rt, const fr_route_task *t);
/* The local endpoint task `t` would have used but found down (`unreached`,
 * or one that is down and the task could otherwise use), -1 for none. */
long fr_route_down_local(const fr_router *rt, const fr_route_task *t, long unreached);

/* Sets the outcome of the latest decision in `decisions` (borrowed): "ok",
 * "quality", "error", "timeout", "cancelled", ..., with `error` (borrowed,
 * copied, may be NULL). */
void fr_route_set_outcome(fr_declog *decisions, const char *outcome, const char *error);
/* Logs a decision the result cache made for `t` on endpoint `e`: outcome
 * "cached" (a hit), or "quality" with `error` (a stored reply that failed its
 * gates). */
void fr_route_note_cache(fr_router *rt, fr_route_task *t, size_t e, const char *outcome,
                         const char *error);

/* Asks the policy's on_result about `reply` (borrowed) of task `t` on `e`,
 * which passed its gates: FR_OK to accept, FR_ERETRY to ask the same
 * endpoint again, FR_EQUALITY to escalate (`err` filled). A policy that
 * fails here accepts (and is counted). */
int fr_route_on_result(fr_router *rt, const fr_route_task *t, size_t e, const fr_reply *reply,
                       double latency_ms, double cost, fr_error *err);

/* The candidates of the policy's self-check (owned): every usable endpoint
 * for a made-up task of 100 tokens in and 256 out. */
json_t *fr_route_check_candidates(const fr_router *rt);
/* Gives the router the run's routing history (borrowed, NULL: none; it
 * must outlive the router's decisions): what a policy that reads
 * candidate.history sees. */
void fr_route_set_history(fr_router *rt, fr_history *h);
/* Sets the run's seed (run.seed): `seed` with `has_seed` (--seed), else
 * one derived from `run_id` (borrowed; 31 bits of its hash). */
void fr_route_set_seed(fr_router *rt, bool has_seed, long long seed, const char *run_id);
/* The run's seed. */
long long fr_route_seed(const fr_router *rt);
/* Decisions the policy failed to make (the default decided them). */
int fr_route_policy_errors(const fr_router *rt);
