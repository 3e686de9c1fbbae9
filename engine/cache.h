#pragma once
/* The result cache: when it may answer a task, looking up a stored result
 * of the exact request a task would send, and storing a whole answer. Its
 * key: a 128-bit hash of the workflow, the task and everything that
 * shapes its reply (endpoint, protocol, model, system prompt, prompt,
 * max_tokens, temperature, seed, schema), so a task reuses only its own
 * result for the same request to the same model: two tasks that happen to
 * send the same prompt still get their own samples. The entries live in
 * the state store: SQLite, read at once, or the shared PostgreSQL store,
 * read asynchronously on the run's loop (fr_cache_lookup_start). */

#include "dsl/workflow.h"
#include "engine/endpoint.h"
#include "engine/route.h"
#include "engine/clock.h"
#include "engine/store/pgstore.h"
#include "engine/store/store.h"
#include "providers/provider.h"

#include <uv.h>

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

/* How long a lookup on the shared store may take before the task goes on
 * as on a miss: a slow or down database never stalls a run. */
#define FR_CACHE_LOOKUP_TIMEOUT_MS 3000

/* What a lookup reads (all borrowed). */
/* The key (owned) a lookup computed for the request to endpoint `ep`, kept
 * for the dispatch that follows: the same request's key is not computed
 * again. Empty: key NULL. */
typedef struct fr_cache_memo {
    char *key;
    size_t ep;
} fr_cache_memo;

/* Empties `m`; returns its key (owned by the caller) when it is endpoint
 * `ep`'s, else frees it and returns NULL. */
char *fr_cache_memo_take(fr_cache_memo *m, size_t ep);

typedef struct fr_cache_ctx {
    fr_store *store;
    fr_pgstore *pg;  /* the shared store, read instead of `store` when not NULL */
    uv_loop_t *loop; /* the loop `pg` runs on (its lookup's timer) */
    int timeout_ms;  /* a lookup on `pg` ends as a miss after this; 0: the default */
    fr_clock *clock; /* stamps a hit that answers later */
    fr_workflow *wf; /* the check runs the workflow's Lua */
    const fr_endpoints *eps;
    fr_router *router;
    const json_t *tools; /* the task's tool definitions (part of the request), NULL for none */
    fr_cache_memo *memo; /* given the key of the last endpoint asked (replaced), NULL: none */
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

/* A lookup on the shared store, waiting for its answers. */
typedef struct fr_cache_wait fr_cache_wait;

/* Called once when a waiting lookup is over: `hit` as fr_cache_lookup's
 * return (t->res filled on a hit). The wait is then no longer the caller's. */
typedef void (*fr_cache_done_fn)(void *ud, bool hit);

typedef enum {
    FR_CACHE_MISS = 0, /* answered now: nothing stored that answers */
    FR_CACHE_HIT,      /* answered now: t->res filled, as fr_cache_lookup */
    FR_CACHE_WAITING   /* asked the shared store: `done` will say */
} fr_cache_status;

/* fr_cache_lookup, on whichever store `c` has. On SQLite (c->pg NULL) it
 * answers now, HIT or MISS, and `done` is never called. On the shared store
 * it asks for every endpoint's key at once and returns WAITING with *wait
 * set (owned by the lookup until `done`; fr_cache_wait_cancel takes it back
 * before): `done(ud, hit)` is called once, on a later loop turn, when every
 * answer is back (they are judged in the endpoints' order, as
 * fr_cache_lookup does), or after c->timeout_ms (a miss, logged): an
 * unreachable, locked or slow store never holds a task longer. An error is
 * a miss. `c` is copied; `t`, `last_error`, the clock, the workflow, router
 * and endpoints must stay alive until `done` or the cancel; the loop must
 * run until the lookup's timer is closed. */
fr_cache_status fr_cache_lookup_start(const fr_cache_ctx *c, fr_route_task *t, const char *prompt,
                                      char **last_error, fr_cache_done_fn done, void *ud,
                                      fr_cache_wait **wait);

/* Takes back waiting lookup `w` (NULL is fine): `done` is never called and
 * nothing of the task is touched again; the store's answers still due are
 * dropped when they come (the lookup frees itself then). */
void fr_cache_wait_cancel(fr_cache_wait *w);

/* Stores `reply` (borrowed) of endpoint `endpoint` under `key` when it is a
 * whole answer (cut text a task accepted is not): in `pg` when not NULL
 * (queued with the turn's writes, not waited for: a failure, then or at
 * its completion, is logged and is FR_OK here: a cache that misses costs a
 * request, never a result), else in `st`: FR_OK or the store's error. */
int fr_cache_put(fr_store *st, fr_pgstore *pg, const char *key, const char *endpoint,
                 const fr_reply *reply, fr_error *err);
