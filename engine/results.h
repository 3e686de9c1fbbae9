#pragma once
/* What a run did, as a read-only view: per task its state, endpoint,
 * attempts, reply, usage, times, cost and routing decisions; per endpoint
 * its figures; for the run its id, times, caps, alerts, reloads and exit
 * code. engine/run writes it as the run goes (the conductor is its only
 * writer); report (and later trace, progress, the MCP server) read it
 * through `const fr_results *` and never see the run's private structs. */

#include "dsl/workflow.h"
#include "engine/approval.h"
#include "engine/declog.h"
#include "engine/endpoint.h"
#include "engine/graph.h"
#include "engine/sched.h"
#include "providers/provider.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* One model turn of an attempt: when it went out and, once `ended`, when
 * its reply came (ms from the run's start). */
typedef struct fr_attempt_turn {
    double start_ms, end_ms;
    bool ended;
} fr_attempt_turn;

/* One attempt of a task, as its attempt log keeps it. */
typedef struct fr_attempt_entry {
    int attempt;
    const char *endpoint; /* borrowed from the workflow (it outlives the results) */
    double start_ms, end_ms;
    bool ended;     /* end_ms, outcome, error, tokens and cost_usd are set */
    char *outcome;  /* owned; NULL while in flight */
    char *error;    /* owned; NULL for none */
    fr_usage usage; /* input, output, cached over all its turns */
    double cost_usd;
    /* Its turns: the first inline, the rest in `more` (owned, nturns - 1). */
    fr_attempt_turn turn;
    fr_attempt_turn *more;
    size_t nturns;
} fr_attempt_entry;

typedef struct fr_task_result {
    fr_task_state state;
    char *reason;       /* why it did not succeed, NULL when it did */
    bool decided;       /* skipped by a decision, not a failure: its condition was false,
                           its trigger (any_failed) found nothing failed, or a dependency
                           was skipped so; such a skip does not fail the run */
    long endpoint;      /* of the latest attempt (or the cache hit), -1 for none */
    int attempts;       /* requests sent */
    bool cached;        /* the result came from the cache: no request, no cost */
    fr_reply reply;     /* the accepted reply (text "" for a plan) */
    fr_usage usage;     /* of the accepted reply */
    double latency_ms;  /* of the accepted attempt */
    double ttft_ms;     /* its time to first content, -1 for unknown */
    double cost;        /* USD, every settled attempt of the task */
    double check_score; /* the check's score of the accepted reply, -1 without one */
    uint64_t start_ns;  /* first dispatch (clock ns); 0 before */
    uint64_t end_ns;    /* when it ended */
    /* The routing decisions, in order (owned; engine/declog). */
    fr_declog *decisions;
    long moved_from; /* the local endpoint it could not reach and ran on the cloud
                        instead of, -1 for none */
    /* A plan's estimates: its worst case, and whether its latency and
     * output come from earlier runs. */
    double worst_cost;
    bool obs_latency, obs_output;
    /* The tool loop: model turns of the accepted attempt (0 before one), and
     * every tool call of the task's attempts, in order: {name, source,
     * server, ms, ok, error, arg_bytes, result_bytes, turn}; NULL before the
     * first (the report prints it empty). */
    int turns;
    json_t *tool_calls;
    /* Every attempt, in order, with its times from the run's start (engine/
     * task writes it through fr_results_attempt_*; the report prints each
     * as {attempt, endpoint, start_ms, end_ms, outcome, error, tokens,
     * cost_usd, turns: [{start_ms, end_ms}]}, end_ms and outcome null while
     * it is in flight): `nlog` of them, room for `caplog` (owned). */
    fr_attempt_entry *log;
    size_t nlog, caplog;
    double log_cost_base; /* the task's cost when its latest attempt began */
    /* An approval task's checkpoint (approve = true); state NONE otherwise. */
    fr_approval approval;
    /* A fan-out (engine/fanout): whether its list was read, how many
     * instances it has (tasks first_instance .. first_instance + instances
     * - 1, in item order) and how many of them have ended. */
    bool expanded;
    size_t instances, first_instance, instances_ended;
    /* Live fields engine/progress reads while the task runs (engine/task
     * writes them): the attempt in flight's dispatch (clock ns, 0 when none
     * is in flight), the stream events (about one per token) it has read so
     * far, and the last tool call that ended ("" for none). */
    uint64_t attempt_ns;
    unsigned long streamed;
    char tool[48];
    bool capacity_wait; /* its request waits for a slot of a shared endpoint that other
                           processes hold */
    /* Its entry in a dependent's template context, made by engine/task
     * once it has ended (in state `as_dep_state`) and shared by its
     * dependents (owned, NULL until made); let go when the last of
     * `as_dep_left` dependents has rendered its prompt. */
    json_t *as_dep;
    fr_task_state as_dep_state;
    size_t as_dep_left;
} fr_task_result;

typedef struct fr_endpoint_result {
    fr_ep_stats stats; /* strings borrowed from the run's endpoints */
    const char *model; /* the model requests named (borrowed) */
    int peak_in_flight;
    int max_parallel;
    /* A shared endpoint: how long its requests waited for slots other
     * processes held, in ms, and how many waited. */
    double capacity_wait_ms;
    int capacity_waits;
} fr_endpoint_result;

/* What the run saw of a shared state store (the report's "store" block):
 * `kind` "postgresql" (static), NULL for a run whose books are on SQLite
 * (no block). */
typedef struct fr_store_info {
    const char *kind;
    long reconnects;     /* times the connection came back after a loss */
    double down_ms;      /* how long it was unreachable in all */
    long capacity_waits; /* reservations refused for a shared endpoint's slots, asked again */
    long lock_retries;   /* operations sent again after a lock held elsewhere timed out */
} fr_store_info;

typedef struct fr_results {
    const fr_workflow *wf; /* the workflow run (borrowed) */
    const fr_graph *g;     /* its graph: levels and the critical path */
    const char *run_id;
    const char *out_dir;
    const char *policy; /* the live policy's name */
    bool sim;           /* a rehearsal on the simulator */
    bool plan;          /* a plan: nothing was sent */
    bool interrupted;
    int exit_code;
    uint64_t start_ns, end_ns;
    bool has_budget;       /* there is a run cap ... */
    double budget_usd;     /* ... of this much */
    long baseline;         /* the baseline endpoint, -1 for none */
    int policy_errors;     /* decisions the policy failed to make */
    bool has_seed;         /* --seed was given: the report records ... */
    long long seed;        /* ... the seed the policy read as run.seed */
    const json_t *alerts;  /* budget alerts (borrowed) */
    const json_t *reloads; /* policy reloads (borrowed) */
    /* A plan: where its observations came from and whether it had any. */
    const char *observed_from;
    bool observed;
    fr_task_result *tasks;         /* wf->ntasks of them, room for wf->tasks_cap */
    fr_endpoint_result *endpoints; /* wf->nendpoints of them */
    fr_store_info store;           /* the shared store's block, if any */
} fr_results;

/* Sets `r` up for workflow `wf` and its graph `g` (both borrowed, outlive
 * it): every task pending, with no endpoint, no check score and an empty
 * decision log. */
void fr_results_init(fr_results *r, const fr_workflow *wf, const fr_graph *g);
/* fr_results_init for a run: its id (borrowed, must outlive `r`), whether
 * it is a rehearsal (`sim`) or a plan. */
void fr_results_for_run(fr_results *r, const fr_workflow *wf, const fr_graph *g, const char *run_id,
                        bool sim, bool plan);
/* Sets the baseline endpoint the report compares costs with: `name`
 * (borrowed; NULL for none) must be an endpoint of `wf`, else FR_ECONFIG
 * naming --baseline. */
int fr_results_set_baseline(fr_results *r, const fr_workflow *wf, const char *name, fr_error *err);
/* Sets up the entry of task `idx`, a fan-out's instance just added to the
 * workflow (within the room fr_results_init made for wf->tasks_cap), as
 * fr_results_init does for every task. */
void fr_results_add(fr_results *r, size_t idx);
/* Fills each endpoint's entry from the run's endpoints `eps` and scheduler
 * `sched` (borrowed; the strings stay theirs). */
void fr_results_endpoints(fr_results *r, const fr_endpoints *eps, const fr_sched *sched);
/* Task `task` is skipped at `now_ns` because of dependency `cause` (in
 * state `cause_state`), as its trigger says (sched.h): the reason names
 * the dependency (or a rejected checkpoint's note); a skip that follows
 * from a decision (a condition, a trigger) rather than a failure is marked
 * decided, so it does not fail the run. */
void fr_results_skip(fr_results *r, size_t task, size_t cause, fr_task_state cause_state,
                     uint64_t now_ns);
/* Attempt `attempt` of task entry `t` went to endpoint `endpoint`
 * (borrowed; must outlive `t`, as the workflow's names do) at `start_ms` from the run's start: a
 * new attempt_log entry with its first model turn open. */
void fr_results_attempt_begin(fr_task_result *t, int attempt, const char *endpoint,
                              double start_ms);
/* A model turn of `t`'s latest attempt ended at `end_ms` (it asked for
 * tools), or the next one went out at `start_ms`. */
void fr_results_turn_end(fr_task_result *t, double end_ms);
void fr_results_turn_begin(fr_task_result *t, double start_ms);
/* `t`'s latest attempt ended at `end_ms` with `outcome` (a decision's
 * outcome word) and `error` (NULL when none; both borrowed), having used
 * `u` over all its turns (NULL for nothing); its cost is what the task's
 * cost grew by since the attempt began. An open turn ends with it. */
void fr_results_attempt_end(fr_task_result *t, double end_ms, const char *outcome,
                            const char *error, const fr_usage *u);
/* Forgets `t`'s latest attempt: it found no file descriptor, so nothing
 * was sent and it does not count. */
void fr_results_attempt_drop(fr_task_result *t);
/* Turn `i` of attempt `a` (borrowed; i < a->nturns). */
const fr_attempt_turn *fr_results_turn(const fr_attempt_entry *a, size_t i);
/* Frees what `r` owns (the tasks' reasons, replies and decision logs). */
void fr_results_close(fr_results *r);
