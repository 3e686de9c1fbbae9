#pragma once
/* The policy host: loads a routing policy (a Lua file returning a table
 * with `route` and optional `on_result`) into its own sandboxed state and
 * calls it with copies of the task, the candidates and the run: fresh Lua
 * tables built straight from C views (engine/route, each decision; a
 * built-in policy's are kept and rewritten instead) or from JSON values
 * (the self-check, tests). Decides nothing itself: the scheduler owns the
 * fallback when a policy fails. */

#include "dsl/sandbox.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct fr_policy fr_policy;

/* A built-in policy: its name ("balanced") and the bytes of
 * lua/policies/<name>.lua, compiled into the binary at build time
 * (cmake/embed.cmake), so an installed flowrun needs no file of the source
 * tree. `source` is NUL-terminated after its `len` bytes. Static data. */
typedef struct fr_policy_builtin {
    const char *name;
    const char *source;
    size_t len;
} fr_policy_builtin;

/* Every built-in policy, sorted by name (defined in the generated source). */
extern const fr_policy_builtin fr_policy_builtins[];
extern const size_t fr_policy_nbuiltins;

/* The path fr_policy_resolve gives a built-in policy that is not overridden
 * by a file: this prefix and the name ("built-in:balanced"). fr_policy_load
 * loads the embedded source for it; no file of that name is ever opened. */
#define FR_POLICY_BUILTIN_PREFIX "built-in:"

/* Returns the built-in policy named `name` (borrowed), or NULL. */
const fr_policy_builtin *fr_policy_builtin_find(const char *name);

/* Returns true when `path` (borrowed) names an embedded built-in policy
 * (see FR_POLICY_BUILTIN_PREFIX): there is no file to watch for changes. */
bool fr_policy_path_is_builtin(const char *path);

/* Resolves `spec` (borrowed). A built-in name such as "balanced" becomes
 * "built-in:balanced", unless $FLOWRUN_LUA_DIR is set and holds
 * policies/<name>.lua: then that file (for working on the built-ins without
 * a rebuild; the binary never needs it). Anything else is a path, relative
 * to `base_dir` (borrowed, may be NULL: the current directory) unless
 * absolute; a name that is not a built-in is tried as such a path too. On
 * FR_OK *path is owned. FR_ENOENT with `err` filled when nothing matches:
 * the message names the built-in policies, the path it tried and the
 * nearest built-in name when one is close. */
int fr_policy_resolve(const char *spec, const char *base_dir, char **path, fr_error *err);

/* Loads the policy file `path` (borrowed; a "built-in:NAME" path from
 * fr_policy_resolve loads the embedded source) into a fresh state with `lim`
 * (borrowed, may be NULL) and checks that it returns a table with a
 * function `route` (and `on_result`, if present, is a function). `version`
 * is recorded for decisions. On FR_OK *out is owned (fr_policy_free);
 * otherwise FR_ESYNTAX/FR_ELUA/FR_ELIMIT/FR_EPOLICY with `err` filled. */
int fr_policy_load(const char *path, const fr_lua_limits *lim, int version, fr_policy **out,
                   fr_error *err);

/* Like fr_policy_load, from `len` bytes of `code` (borrowed) read from
 * `path` (borrowed; names the policy and its error messages). */
int fr_policy_load_string(const char *path, const char *code, size_t len, const fr_lua_limits *lim,
                          int version, fr_policy **out, fr_error *err);

/* The self-check a policy passes at load and before a new version is swapped
 * in: calls route with a made-up task and `candidates` (borrowed: the run's
 * own endpoints, as route sees them; NULL or empty: two made-up ones, one
 * local, one cloud, both free) and, when present, on_result with a made-up
 * result on the first candidate; each must answer validly within the limits.
 * A name that is none of the candidates is not a failure: in a run it costs
 * that one decision (the built-in default makes it). Returns FR_OK or the
 * failure with `err`. */
int fr_policy_check(fr_policy *p, const json_t *candidates, fr_error *err);

/* Makes fr_policy_route_view keep route's argument tables from one
 * decision to the next instead of building new ones, for flowrun's own
 * policies (fr_policy_load does it for a built-in) and tests. Every field
 * and element is written again each decision, and a table the policy added
 * a key to or whose metatable it changed is built anew: nothing one
 * decision does reaches the next. But the arguments are no longer copies
 * (docs/policies.md): a table kept past its call shows the next call's
 * values, and each has a metatable. `p` is borrowed. */
void fr_policy_keep_args(fr_policy *p);

/* Treats `p` (borrowed) as flowrun's own code, as fr_policy_load does a
 * built-in: no count hook (fr_sandbox_trust), its arguments kept
 * (fr_policy_keep_args), and a candidate's history record written into
 * its kept table again only when it changed, since such a policy never
 * changes its arguments (test_policy_builtins checks the built-ins). For
 * the built-ins and for benchmarks of their path with a policy file. */
void fr_policy_trust(fr_policy *p);

/* Frees a policy and its state; NULL is fine. */
void fr_policy_free(fr_policy *p);

/* The policy's name (the file's base name without .lua) and version. Borrowed. */
const char *fr_policy_name(const fr_policy *p);
int fr_policy_version(const fr_policy *p);

/* Calls route(task, candidates, run) with Lua copies of the three JSON
 * values (borrowed; `candidates` is an array of objects with "name").
 * On FR_OK *choice is the owned name of the chosen candidate, or NULL when
 * the policy returned nil (wait for capacity). A return that is neither a
 * candidate table, a candidate's name nor nil is FR_EPOLICY; a Lua error or
 * an exhausted limit is FR_ELUA/FR_ELIMIT; `err` carries file:line. */
int fr_policy_route(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                    char **choice, fr_error *err);

typedef enum { FR_VERDICT_ACCEPT = 0, FR_VERDICT_RETRY, FR_VERDICT_ESCALATE } fr_verdict;

/* What route and on_result receive, as C values (docs/policies.md names
 * every field). The host builds each call's Lua tables from them, keys in
 * this order, with the types of the JSON it replaces: the integers below
 * become Lua integers, the doubles Lua floats. Every pointer is borrowed
 * for the call. */
typedef struct fr_policy_task {
    const char *name, *agent;
    const char *type; /* NULL: nil */
    double complexity;
    int priority;
    bool is_private; /* the field `private` */
    int attempt;
    const char *reason;
    const char *const *tried; /* names of the endpoints that failed the task */
    size_t ntried;
    long est_input_tokens;
    int max_tokens;
    long tools;
    /* The field `draw` when has_draw (else nil): fr_policy_draw's number
     * for this attempt of this task. */
    bool has_draw;
    double draw;
} fr_policy_task;

/* An endpoint's record as a policy sees it (candidate.history and
 * candidate.history_all; docs/policies.md, HISTORY_SHAPE.md): raw counts,
 * the decayed weight, and figures that are nil when < 0. `type` NULL is
 * nil (history_all). */
typedef struct fr_policy_hist {
    long attempts, passes, fails, errors;
    double weight;
    double pass_rate, score_mean, latency_p50_ms, ttft_p50_ms, tokens_per_s, cost_mean_usd,
        age_s; /* < 0: nil */
    double band_lo, band_hi;
    const char *type;
} fr_policy_hist;

typedef struct fr_policy_cand {
    const char *name, *tier, *protocol, *model;
    int in_flight, max_parallel, free;
    long queued;
    double quality, price_in, price_out, est_cost;
    double latency_p50; /* < 0: nil */
    const char *const *tags;
    size_t ntags;
    long context;
    /* Its record for this task's type and band, and over all of them;
     * NULL: none (the policy sees a table without evidence). Only set for
     * a policy that reads them (fr_policy_reads_history). */
    const fr_policy_hist *history, *history_all;
    /* True when name, tier, protocol and model point at texts that stay
     * where they are, unchanged, as long as the policy lives (an
     * endpoint's declaration): a kept table then takes a text at the
     * address it saw before for the same, without comparing it. */
    bool stable_strings;
} fr_policy_cand;

typedef struct fr_policy_run {
    bool capped; /* false: budget and remaining are nil */
    double budget, spent, reserved, remaining, elapsed;
    long done, total, ready;
    long long seed; /* --seed, else derived from the run id */
} fr_policy_run;

typedef struct fr_policy_result {
    const char *endpoint, *tier, *text;
    const json_t *json; /* the parsed reply, NULL: nil */
    double latency_ms;
    long input_tokens, output_tokens; /* the table `tokens` */
    double cost_usd;
    int attempt;
} fr_policy_result;

/* fr_policy_route with the arguments as C views (borrowed): the same call,
 * answers and errors, without JSON. On FR_OK *choice is the index of the
 * chosen one of the `n` candidates, or -1 when the policy returned nil. */
int fr_policy_route_view(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                         size_t n, const fr_policy_run *run, long *choice, fr_error *err);

/* The longest explanation kept of a route call, in bytes. */
#define FR_POLICY_WHY_MAX 200

/* fr_policy_route_view, and route's second result, its explanation of the
 * decision: copied into `why` (`size` bytes; NULL: not wanted) when it is
 * a string of valid UTF-8 without a NUL byte, cut at a character's start
 * to at most FR_POLICY_WHY_MAX bytes; "" when there is none (nil, another
 * type, text that is not UTF-8). The same answers and errors. */
int fr_policy_route_explain(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                            size_t n, const fr_policy_run *run, long *choice, char *why,
                            size_t size, fr_error *err);

/* Whether route's candidates carry `history` and `history_all` tables
 * (fr_policy_cand's): every policy file does; a built-in only when its
 * source names `history` (the others are spared building them). */
bool fr_policy_reads_history(const fr_policy *p);

/* The JSON form (owned) of record `h` (borrowed; NULL: none), as a
 * policy sees it: nil figures left out. For the self-check's candidates. */
json_t *fr_policy_hist_json(const fr_policy_hist *h);

/* A policy's reproducible draw (task.draw, docs/policies.md): a number in
 * [0, 1) fixed by the run's seed, the task's name and its attempt, the
 * bytes of their texts joined by "\0" hashed by FNV-1a 64 and a
 * finaliser (lua/policies/adaptive.lua computes the same in Lua for a
 * host that gives none). fr_policy_draw_seed returns the hash's state
 * after the seed, for every draw of the run; `name` is borrowed. */
uint64_t fr_policy_draw_seed(long long seed);
double fr_policy_draw(uint64_t seed_state, const char *name, int attempt);

/* fr_policy_on_result with the arguments as C views (borrowed). */
int fr_policy_on_result_view(fr_policy *p, const fr_policy_task *task,
                             const fr_policy_result *result, const fr_policy_run *run,
                             fr_verdict *verdict, fr_error *err);

/* Returns true when the policy has an on_result function. */
bool fr_policy_has_on_result(const fr_policy *p);

/* Calls on_result(task, result, run) with copies of the JSON values
 * (borrowed). On FR_OK *verdict is the answer ("accept" or nil: accept,
 * "retry", "escalate"). Anything else is FR_EPOLICY; Lua errors and
 * exhausted limits are FR_ELUA/FR_ELIMIT; `err` carries file:line. */
int fr_policy_on_result(fr_policy *p, const json_t *task, const json_t *result, const json_t *run,
                        fr_verdict *verdict, fr_error *err);
