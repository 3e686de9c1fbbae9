#pragma once
/* The run's internal state, shared by engine/run.c (execution) and
 * engine/report.c (report and summary). Not part of any public contract. */

#include "dsl/policy.h"
#include "engine/budget.h"
#include "engine/graph.h"
#include "engine/http.h"
#include "engine/run.h"
#include "engine/sched.h"
#include "engine/store.h"
#include "providers/provider.h"

#include <stdint.h>
#include <uv.h>

typedef struct ep_rt {
    const fr_endpoint_spec *spec;
    char *url;
    char *model;
    char *api_key; /* owned, wiped before free; NULL for none */
    fr_protocol protocol;
    bool usable;
    char *unusable;        /* why not, when !usable */
    double cooldown_until; /* uv_now() ms */
    int strikes;           /* failures in a row that cool it down; a success resets */
    long cooldowns;        /* times it was cooled down */
    double cooldown_ms;    /* and for how long in all */
    int conn_failures;     /* connection failures in a row, counted once per cooldown */
    long requests;
    long failures;
    /* Attempts that could not connect, the last one's message (owned, NULL
     * for none), and whether the latest attempt could not connect. */
    long connect_failures;
    char *connect_error;
    bool down;
    double lat[64]; /* the most recent successful latencies, ms (a ring) */
    size_t nlat;    /* samples ever recorded; the ring holds the last 64 */
} ep_rt;

typedef struct task_rt {
    struct fr_run *run;
    size_t idx;
    char *reason;  /* why it did not succeed */
    long ep;       /* endpoint of the current or last attempt, -1 */
    long retry_ep; /* endpoint a scheduled retry goes back to, -1 */
    /* The local endpoint this task could not connect to, and the one that
     * was down when its latest attempt went to the cloud; -1 for none. */
    long unreached;
    long moved_from;
    int attempts;
    int ep_attempts;
    unsigned char *tried;     /* per endpoint: its retries are spent */
    const char *route_reason; /* "first" or "error" */
    char *prompt;
    long est_input;   /* expected input tokens: about a quarter of the bytes */
    long worst_input; /* at most one token per byte, plus the chat template's */
    fr_adapter *adapter;
    fr_xfer *xfer;
    uv_timer_t retry_timer;
    uv_timer_t deadline;
    bool timers_init;
    bool retry_armed;
    double deadline_ms;         /* loop time the task times out at; 0 until it is first ready */
    fr_reply reply;
    double cost;
    fr_usage usage;             /* of the successful attempt */
    uint64_t start_ns, end_ns;  /* first dispatch to end */
    double latency_ms, ttft_ms; /* of the successful attempt */
    uint64_t attempt_ns;        /* when the current attempt was sent */
    double attempt_ttft_ms;     /* its first content, -1 until it arrives */
    json_t *decisions;
    double check_score; /* the check function's score of the accepted reply, -1 without one */
    double reserved;    /* the worst case held against the caps while an attempt is out */
    long long row;      /* its attempt in the state store, booked in flight; 0 for none */
    char *cache_key;    /* the cache key of the current attempt's request */
    bool cached;        /* the result came from the cache: no request, no cost */
    bool attempt_limited; /* the current attempt's deadline is the endpoint's attempt timeout */
    double worst_cost;  /* a plan's worst case for this task: max_tokens at its endpoint */
    char *last_error;
    bool obs_latency, obs_output; /* a plan's estimates come from earlier runs */
    /* Static: "truncated", "refused", "tool_call" or "no_answer" when the
     * last reply did not finish as an answer, else NULL. */
    const char *finish_outcome;
    bool fd_wait; /* its latest attempt found no file descriptor: it waits to try again */
} task_rt;

struct fr_run {
    fr_workflow *wf;
    fr_run_opts opts;
    fr_graph *g;
    fr_sched *sched;
    fr_policy *policy;
    char *policy_path;
    struct fr_watch *watch; /* the policy file, for hot reload */
    json_t *reloads;        /* the report's policy_reloads */
    int policy_versions;    /* versions seen, the live one included */
    uv_loop_t loop;
    fr_http *http;
    uv_signal_t sigint, sigterm;
    uv_timer_t wake;
    bool handles_init;
    ep_rt *eps;
    size_t neps;
    task_rt *tasks;
    char *run_id;
    char *out_dir;
    char *save_root; /* the workflow folder's real path that save paths stay in; NULL with
                        --allow-save-anywhere */
    long baseline; /* endpoint index or -1 */
    bool has_budget;   /* there is a run cap (--budget, else budget.usd) */
    double budget_usd; /* the run cap when has_budget; 0 allows only free work */
    uint64_t start_ns, end_ns;
    bool interrupted;
    int signum; /* the signal that interrupted the run */
    bool stopping;
    int retries_armed;
    /* Transfers in flight at once that the file descriptors allow (0: no
     * cap), and the cap in force now: lowered when a socket finds none
     * left, raised back one at a time by successes. */
    int fd_cap;
    int fd_cap_now;
    long fd_waits; /* attempts that found no descriptor and waited */
    int policy_errors;
    size_t *queued;      /* per endpoint: the tasks of this pass waiting for it */
    size_t pass_waiters; /* the tasks of this pass over the ready queue left waiting */
    json_t *policy_sites; /* set of "file:line:code" already logged */
    int write_errors;
    int exit_code;
    double spent_usd; /* sum of the cost of every settled attempt */
    fr_budget *budget;
    fr_store *store;  /* NULL for a plan */
    char month[8];    /* the month this run books into, "YYYY-MM" */
    bool lease_failed; /* the store could not lease: logged once */
    bool month_alerted; /* this run reported the monthly alert */
    bool store_failed; /* a write failed: the run stops admitting work, exit 74 */
    json_t *alerts; /* the report's budget alerts */
    /* flowrun plan: virtual time, and the completions still to come. */
    bool plan;
    double vnow_ms;
    struct plan_event *events;
    size_t nevents, capevents;
    long event_seq;
    json_t *observed;    /* fr_store_observed of the store the plan reads, or NULL */
    char *observed_from; /* that store's path */
};

/* A plan's completion of `task` at virtual time `at_ms`. */
typedef struct plan_event {
    double at_ms;
    long seq;
    size_t task;
} plan_event;

/* The plan's event queue (engine/plan.c): push a completion; pop the
 * earliest (ties in push order). */
void fr_plan_push(fr_run *r, size_t task, double at_ms);
bool fr_plan_pop(fr_run *r, size_t *task, double *at_ms);

/* The latency a plan or a rehearsal expects from endpoint `e`: the time to
 * the first token and the token rate (0 = instant), from --sim-latency and
 * --sim-tps or the tier's defaults. */
void fr_run_expected_speed(const fr_run *r, const ep_rt *e, double *latency_ms, double *tps);

/* Output tokens a plan expects from a task: a quarter of max_tokens. */
long fr_plan_expected_output(const fr_task_spec *ts);

/* Cost in USD of `u` at the prices of `spec` (borrowed). */
double fr_run_cost(const fr_endpoint_spec *spec, const fr_usage *u);
