#pragma once
/* The result cache: when it may answer a task, looking up a stored result
 * of the exact request a task would send, and storing a whole answer. Its
 * key: a 128-bit hash of the workflow, the task and everything that
 * shapes its reply (endpoint, protocol, model, system prompt, prompt,
 * max_tokens, temperature, seed, schema), so a task reuses only its own
 * result for the same request to the same model: two tasks that happen to
 * send the same prompt still get their own samples. The entries live in
 * the state store. */

#include "dsl/workflow.h"
#include "engine/endpoint.h"
#include "engine/route.h"
#include "engine/store/store.h"
#include "providers/provider.h"

#include <stdbool.h>
#include <stdint.h>

/* Returns the key (owned, 32 hex digits) of task `task` of workflow
 * `workflow` sending `call` (all borrowed) to the endpoint named `endpoint`
 * (borrowed) in `proto`. The API key and
 * the URL are not part of it: a key rotation or a new address of the same
 * model does not void the cache. */
char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call);

/* Whether the cache may answer task `task` (borrowed): never without a
 * store or under --no-cache (`no_cache`), nor for a task named by --fresh
 * (`fresh`, `nfresh`, borrowed). */
bool fr_cache_may_answer(bool has_store, bool no_cache, const char *const *fresh, size_t nfresh,
                         const char *task);

/* What a lookup reads (all borrowed). */
typedef struct fr_cache_ctx {
    fr_store *store;
    fr_workflow *wf; /* the check runs the workflow's Lua */
    const fr_endpoints *eps;
    fr_router *router;
    const json_t *tools; /* the task's tool definitions (part of the request), NULL for none */
} fr_cache_ctx;

/* Looks for a stored result of the request task `t` (its rendered `prompt`,
 * borrowed) would send, on every endpoint it may use. A stored reply passes
 * the task's gates as they are now (redacted first): one that no longer
 * fits (empty, or off the schema) is a miss; one that fails the check is a
 * quality failure like any other (the endpoint counts as tried, the policy
 * is asked with reason "quality"); each is logged as a decision and
 * *last_error (owned, replaced) says why. On a hit returns true with the
 * task's results (t->res) filled as a finished task's, at `now_ns`: the
 * endpoint, the reply, its usage, no latency and no cost. */
bool fr_cache_lookup(const fr_cache_ctx *c, fr_route_task *t, const char *prompt, uint64_t now_ns,
                     char **last_error);

/* Stores `reply` (borrowed) of endpoint `endpoint` under `key` when it is a
 * whole answer (cut text a task accepted is not). FR_OK or the store's
 * error. */
int fr_cache_put(fr_store *st, const char *key, const char *endpoint, const fr_reply *reply,
                 fr_error *err);
