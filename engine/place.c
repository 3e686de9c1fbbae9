#include "engine/place.h"

#include "engine/booking.h"
#include "engine/toolset.h"
#include "engine/util/mem.h"

/* An END decision for `state`, with `err`'s message or `reason`. */
static fr_placed end(fr_route_decision *d, fr_task_state state, const fr_error *err,
                     const char *reason)
{
    char msg[1400];
    *d = (fr_route_decision){.kind = FR_ROUTE_END, .state = state};
    d->reason = fr_xstrdup(err ? fr_error_format(err, msg, sizeof msg) : reason);
    return FR_PLACED_ROUTED;
}

/* Looks for a stored result of this exact request (engine/cache). */
static fr_cache_status try_cache(const fr_place_env *env, size_t idx, fr_task *t,
                                 fr_place_lookup *lk)
{
    fr_task_env *te = env->tasks;
    const fr_task_spec *ts = &te->wf->tasks[idx];
    if (lk->asked || te->plan ||
        !fr_cache_may_answer(te->books != NULL, env->no_cache || ts->no_cache, env->fresh,
                             env->nfresh, ts->name))
        return FR_CACHE_MISS;
    fr_cache_ctx c = env->cache;
    c.tools = te->tools ? fr_toolset_defs(te->tools, idx) : NULL;
    c.clock = te->clock;
    c.pg = fr_booking_pgstore(te->books); /* read now: the books may reach it once the loop runs */
    c.memo = fr_task_cache_memo(t);
    fr_cache_status cs =
        fr_cache_lookup_start(&c, fr_task_route(t), fr_task_prompt(t), fr_task_last_error_slot(t),
                              lk->done, lk->ud, &lk->wait);
    /* On SQLite a task that waits for a slot asks again when it is placed
     * again (a result stored meanwhile answers it); the shared store is
     * asked once, and its miss routes. */
    lk->asked = cs == FR_CACHE_WAITING;
    return cs;
}

fr_placed fr_place(const fr_place_env *env, size_t idx, fr_task *t, bool *cleared,
                   fr_place_lookup *lk, fr_route_decision *d)
{
    fr_task_env *te = env->tasks;
    fr_route_task *rt = fr_task_route(t);
    fr_error err = {0};
    if (!*cleared) {
        bool go = true;
        if (fr_task_decide(t, &go, &err) != FR_OK)
            return end(d, FR_TASK_FAILED, &err, NULL);
        if (!go) {
            te->results->tasks[idx].decided = true;
            return end(d, FR_TASK_SKIPPED, NULL, "condition false");
        }
        *cleared = true;
    }
    if (te->wf->tasks[idx].foreach)
        return FR_PLACED_FANOUT;
    if (rt->retry_ep < 0) {
        if (fr_task_render(t, &err) != FR_OK)
            return end(d, FR_TASK_FAILED, &err, NULL);
        fr_cache_status cs =
            te->results->tasks[idx].attempts == 0 ? try_cache(env, idx, t, lk) : FR_CACHE_MISS;
        if (cs == FR_CACHE_HIT)
            return FR_PLACED_CACHED;
        if (cs == FR_CACHE_WAITING)
            return FR_PLACED_LOOKUP;
    }
    *d = fr_route(te->router, rt);
    return FR_PLACED_ROUTED;
}
