#pragma once
/* Internal to dsl/policy: the policy as policy.c (loading, calls, answers)
 * and policy_args.c (route's and on_result's arguments as Lua tables, fresh
 * or kept between decisions) share it. */

#include "dsl/policy.h"

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

/* What a trusted built-in's kept task, run and candidate tables hold
 * (valid when `ok`), so that a decision writes only the fields that
 * changed (push_kept_args). The strings are copies: a view's are borrowed
 * for one call. */
typedef struct seen_task {
    bool ok;
    char *name, *agent, *type, *reason;
    fr_policy_task v; /* the numbers (its pointers unused) */
} seen_task;

typedef struct seen_run {
    bool ok;
    fr_policy_run v;
} seen_run;

typedef struct seen_cand {
    bool ok;
    char *name, *tier, *protocol, *model;
    /* Where the view's texts were, when they were stable (stable_strings),
     * else NULL: */
    const char *name_at, *tier_at, *protocol_at, *model_at;
    fr_policy_cand v; /* the numbers (its pointers unused) */
} seen_cand;

struct fr_policy {
    lua_State *L;
    char *name;
    char *path;
    int version;
    int route_ref;
    int on_result_ref;
    bool keep_args; /* fr_policy_keep_args: route's tables are kept (push_kept_args) */
    /* The route arguments kept between decisions: */
    bool args_dirty;    /* the policy added a key to one of them: build anew */
    size_t ntried;      /* elements written into the kept `tried` */
    size_t ncands;      /* elements written into the kept candidates array */
    size_t *ntags;      /* per candidate slot, elements written into its `tags` */
    size_t nslots;      /* length of ntags and cand_seen */
    bool reads_history; /* candidates get history tables (fr_policy_reads_history) */
    bool trusted;       /* a built-in: it does not change its arguments */
    /* Per candidate slot, FR_POLICY_NREC kept record tables: its
     * history_all, then FR_POLICY_HIST_VARIANTS tables for `history` (one
     * per record lately seen there: tasks of other types and bands take
     * turns), what each holds (hist_seen, valid when hist_ok), when it was
     * last used (hist_tick), and which variant the candidate's `history`
     * field holds (hist_cur, -1: none). For a trusted built-in, which does
     * not change its arguments (test_policy_builtins), a record that did
     * not change is not written again, and one seen lately is pointed at
     * again; any other policy kept has one variant, written every call. */
    fr_policy_hist *hist_seen;
    bool *hist_ok;
    unsigned long *hist_tick, tick;
    int *hist_cur;
    /* Per record table, the p_pass it holds (hist_p, valid when hist_p_ok):
     * written again only when it changed. */
    double *hist_p;
    bool *hist_p_ok;
    /* The same for what the kept task, run and candidate tables hold (for
     * a trusted built-in): a field is written only when it changed. */
    seen_task task_seen;
    seen_run run_seen;
    seen_cand *cand_seen;         /* per candidate slot */
    unsigned long metatables_set; /* fr_sandbox_metatables_set when they were checked */
};

/* Kept record tables per candidate slot: history_all and the variants of
 * history. */
#define FR_POLICY_HIST_VARIANTS 4
#define FR_POLICY_NREC          (1 + FR_POLICY_HIST_VARIANTS)

/* The keys of the argument tables, made Lua strings once per policy, so
 * building an argument sets a field without hashing or comparing its key
 * again (lua_setfield looks a C string up in the string cache each time). */
/* clang-format off */
#define KEY_LIST(X)                                                           \
    X(NAME, "name") X(AGENT, "agent") X(TYPE, "type")                         \
    X(COMPLEXITY, "complexity") X(PRIORITY, "priority") X(PRIVATE, "private") \
    X(ATTEMPT, "attempt") X(REASON, "reason") X(TRIED, "tried")               \
    X(EST_INPUT_TOKENS, "est_input_tokens")                                   \
    X(MAX_TOKENS, "max_tokens") X(TOOLS, "tools") X(TIER, "tier")             \
    X(PROTOCOL, "protocol") X(MODEL, "model") X(IN_FLIGHT, "in_flight")       \
    X(MAX_PARALLEL, "max_parallel") X(FREE, "free") X(QUEUED, "queued")       \
    X(QUALITY, "quality") X(PRICE_IN, "price_in") X(PRICE_OUT, "price_out")   \
    X(EST_COST, "est_cost") X(LATENCY_P50, "latency_p50") X(TAGS, "tags")     \
    X(CONTEXT, "context") X(ENDPOINT, "endpoint") X(TEXT, "text")             \
    X(JSON, "json") X(LATENCY_MS, "latency_ms") X(TOKENS, "tokens")           \
    X(INPUT, "input") X(OUTPUT, "output") X(COST_USD, "cost_usd")             \
    X(BUDGET, "budget") X(SPENT, "spent") X(RESERVED, "reserved")             \
    X(REMAINING, "remaining") X(ELAPSED, "elapsed") X(DONE, "done")           \
    X(TOTAL, "total") X(READY, "ready") X(SEED, "seed")                       \
    X(HISTORY, "history") X(HISTORY_ALL, "history_all")                       \
    X(ATTEMPTS, "attempts") X(PASSES, "passes") X(FAILS, "fails")             \
    X(ERRORS, "errors") X(WEIGHT, "weight") X(PASS_RATE, "pass_rate")         \
    X(SCORE_MEAN, "score_mean") X(LATENCY_P50_MS, "latency_p50_ms")           \
    X(TTFT_P50_MS, "ttft_p50_ms") X(TOKENS_PER_S, "tokens_per_s")             \
    X(COST_MEAN_USD, "cost_mean_usd") X(AGE_S, "age_s")                       \
    X(BAND_LO, "band_lo") X(BAND_HI, "band_hi") X(P_PASS, "p_pass")          \
    X(P_PASS_N, "p_pass_n") X(DRAW, "draw")
/* clang-format on */
#define KEY_ENUM(id, s) K_##id,
#define KEY_NAME(id, s) s,
enum { KEY_FIRST = 0, KEY_LIST(KEY_ENUM) KEY_COUNT };

/* The candidates of one call: a JSON array of objects with "name", or `n`
 * C views. */
typedef struct fr_policy_cands {
    const json_t *json;
    const fr_policy_cand *view;
    size_t n;
} fr_policy_cands;

/* The three arguments of one call, as JSON values or as C views. */
typedef struct fr_policy_args {
    const json_t *json[3];
    const fr_policy_task *task;
    const fr_policy_cands *cands;   /* route */
    const fr_policy_result *result; /* on_result */
    const fr_policy_run *run;
    fr_policy *keep; /* non-NULL: route's tables are the kept ones of this policy */
} fr_policy_args;

/* Pushes the keys of the argument tables (K_NAME .. KEY_COUNT - 1), the
 * upvalues of the closure that runs a call; returns how many. [-0, +n] */
int fr_policy_push_keys(lua_State *L);

/* Pushes the function of registry reference `ref` and its three arguments
 * for `a` (borrowed): fresh tables, or with a->keep the kept ones of that
 * policy, then with their cache and its metatable below the function.
 * Runs inside the closure of fr_policy_push_keys's keys (its upvalues);
 * may raise a Lua error (memory). */
void fr_policy_push_call(lua_State *L, int ref, const fr_policy_args *a);

/* Frees what the kept arguments of `p` hold (not the tables: its state). */
void fr_policy_args_free(fr_policy *p);
