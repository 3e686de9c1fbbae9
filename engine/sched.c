#include "engine/sched.h"

#include "engine/util/fdlimit.h"
#include "engine/util/heap.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <limits.h>
#include <stdlib.h>

typedef struct slot {
    int cap, used, peak;
} slot;

struct fr_sched {
    const fr_graph *g;
    size_t n;
    int *priority;
    fr_task_state *state;
    size_t *waiting; /* deps not yet ended */
    size_t *bad;     /* deps that ended without success */
    fr_trigger *trigger;
    fr_heap *heap; /* the ready queue, of task indices */
    slot *slots;
    size_t nslots;
    size_t unfinished;
    int total_cap;  /* slots in use over all endpoints at most; 0 = no cap */
    int total_used; /* slots in use over all endpoints */
};

static const char *const state_names[] = {"pending", "ready",   "running", "ok",
                                          "failed",  "skipped", "budget",  "cancelled"};

const char *fr_task_state_name(fr_task_state st)
{
    return (unsigned)st < sizeof state_names / sizeof *state_names ? state_names[st] : "?";
}

bool fr_task_state_terminal(fr_task_state st)
{
    return st >= FR_TASK_OK;
}

/* True when task a should run before task b. */
static bool before(const fr_sched *s, size_t a, size_t b)
{
    if (s->priority[a] != s->priority[b])
        return s->priority[a] > s->priority[b];
    size_t ra = fr_graph_rank(s->g, a), rb = fr_graph_rank(s->g, b);
    if (ra != rb)
        return ra > rb;
    return a < b;
}

static bool before_cb(void *ud, const void *a, const void *b)
{
    return before(ud, *(const size_t *)a, *(const size_t *)b);
}

static void heap_push(fr_sched *s, size_t t)
{
    fr_heap_push(s->heap, &t);
}

fr_sched *fr_sched_new(const fr_graph *g, const int *priority, size_t nendpoints,
                       const int *max_parallel)
{
    fr_sched *s = fr_xcalloc(1, sizeof *s);
    s->g = g;
    s->n = fr_graph_size(g);
    s->priority = fr_xcalloc(s->n, sizeof *s->priority);
    s->state = fr_xcalloc(s->n, sizeof *s->state);
    s->waiting = fr_xcalloc(s->n, sizeof *s->waiting);
    s->bad = fr_xcalloc(s->n, sizeof *s->bad);
    s->trigger = fr_xcalloc(s->n, sizeof *s->trigger); /* FR_TRIGGER_ALL_OK */
    s->heap = fr_heap_new(sizeof(size_t), before_cb, s);
    s->slots = fr_xcalloc(nendpoints, sizeof *s->slots);
    s->nslots = nendpoints;
    s->unfinished = s->n;
    for (size_t e = 0; e < nendpoints; e++)
        s->slots[e].cap = max_parallel[e] > 0 ? max_parallel[e] : 1;
    for (size_t t = 0; t < s->n; t++) {
        s->priority[t] = priority ? priority[t] : 5;
        s->waiting[t] = fr_graph_ndeps(g, t);
    }
    for (size_t t = 0; t < s->n; t++)
        if (s->waiting[t] == 0) {
            s->state[t] = FR_TASK_READY;
            heap_push(s, t);
        }
    return s;
}

void fr_sched_free(fr_sched *s)
{
    if (!s)
        return;
    free(s->priority);
    free(s->state);
    free(s->waiting);
    free(s->bad);
    free(s->trigger);
    fr_heap_free(s->heap);
    free(s->slots);
    free(s);
}

fr_sched *fr_sched_for_workflow(const fr_graph *g, const fr_workflow *wf)
{
    size_t neps = wf->nendpoints;
    int *prio = fr_xcalloc(wf->ntasks ? wf->ntasks : 1, sizeof *prio);
    int *cap = fr_xcalloc(neps ? neps : 1, sizeof *cap);
    for (size_t t = 0; t < wf->ntasks; t++)
        prio[t] = wf->tasks[t].priority;
    for (size_t e = 0; e < neps; e++)
        cap[e] = wf->endpoints[e].max_parallel;
    fr_sched *s = fr_sched_new(g, prio, neps, cap);
    for (size_t t = 0; t < wf->ntasks; t++)
        fr_sched_set_trigger(s, t, wf->tasks[t].trigger);
    free(prio);
    free(cap);
    return s;
}

size_t fr_sched_add_ready(fr_sched *s, int priority, fr_trigger trigger)
{
    size_t t = s->n++;
    s->priority = fr_xrealloc(s->priority, s->n * sizeof *s->priority);
    s->state = fr_xrealloc(s->state, s->n * sizeof *s->state);
    s->waiting = fr_xrealloc(s->waiting, s->n * sizeof *s->waiting);
    s->bad = fr_xrealloc(s->bad, s->n * sizeof *s->bad);
    s->trigger = fr_xrealloc(s->trigger, s->n * sizeof *s->trigger);
    s->priority[t] = priority;
    s->waiting[t] = s->bad[t] = 0;
    s->trigger[t] = trigger;
    s->state[t] = FR_TASK_READY;
    s->unfinished++;
    heap_push(s, t);
    return t;
}

bool fr_sched_pop(fr_sched *s, size_t *task)
{
    while (fr_heap_pop(s->heap, task)) {
        if (fr_task_state_terminal(s->state[*task]))
            continue; /* it ended while it waited (a timeout): drop it */
        s->state[*task] = FR_TASK_RUNNING;
        return true;
    }
    return false;
}

void fr_sched_requeue(fr_sched *s, size_t task)
{
    if (fr_task_state_terminal(s->state[task]) || s->state[task] == FR_TASK_READY)
        return;
    s->state[task] = FR_TASK_READY;
    heap_push(s, task);
}

size_t fr_sched_ready(const fr_sched *s)
{
    return fr_heap_count(s->heap);
}

bool fr_sched_take_slot(fr_sched *s, size_t ep)
{
    slot *sl = &s->slots[ep];
    if (sl->used >= sl->cap || (s->total_cap > 0 && s->total_used >= s->total_cap))
        return false;
    s->total_used++;
    if (++sl->used > sl->peak)
        sl->peak = sl->used;
    return true;
}

void fr_sched_release_slot(fr_sched *s, size_t ep)
{
    if (s->slots[ep].used > 0) {
        s->slots[ep].used--;
        s->total_used--;
    }
}

void fr_sched_set_total_cap(fr_sched *s, int cap)
{
    s->total_cap = cap > 0 ? cap : 0;
}

int fr_sched_total_cap(const fr_sched *s)
{
    return s->total_cap;
}

/* Slots the total cap still allows, INT_MAX without one. */
static int total_left(const fr_sched *s)
{
    if (s->total_cap <= 0)
        return INT_MAX;
    return s->total_cap > s->total_used ? s->total_cap - s->total_used : 0;
}

int fr_sched_in_flight(const fr_sched *s, size_t ep)
{
    return s->slots[ep].used;
}

int fr_sched_free_slots(const fr_sched *s, size_t ep)
{
    int n = s->slots[ep].cap - s->slots[ep].used, left = total_left(s);
    return n < left ? n : left;
}

int fr_sched_peak(const fr_sched *s, size_t ep)
{
    return s->slots[ep].peak;
}

int fr_sched_capacity(const fr_sched *s, size_t ep)
{
    return s->slots[ep].cap;
}

int fr_sched_total_free(const fr_sched *s)
{
    long n = 0;
    for (size_t e = 0; e < s->nslots; e++)
        n += s->slots[e].cap - s->slots[e].used;
    int left = total_left(s);
    return n < left ? (int)n : left;
}

/* Removes `task` from the ready heap if it is there (rare: a task ended
 * while queued, e.g. by a deadline). */
static void heap_remove(fr_sched *s, size_t task)
{
    size_t count = fr_heap_count(s->heap);
    for (size_t i = 0; i < count; i++)
        if (*(const size_t *)fr_heap_at(s->heap, i) == task) {
            size_t *rest = fr_xmalloc(count * sizeof *rest);
            size_t n = 0;
            for (size_t k = 0; k < count; k++)
                if (k != i)
                    rest[n++] = *(const size_t *)fr_heap_at(s->heap, k);
            fr_heap_clear(s->heap);
            for (size_t k = 0; k < n; k++)
                heap_push(s, rest[k]);
            free(rest);
            return;
        }
}

static void end_task(fr_sched *s, size_t task, fr_task_state state)
{
    if (s->state[task] == FR_TASK_READY)
        heap_remove(s, task);
    s->state[task] = state;
    s->unfinished--;
}

void fr_sched_set_trigger(fr_sched *s, size_t task, fr_trigger trigger)
{
    s->trigger[task] = trigger;
}

/* Task `task` just ended in `state`: each dependent not yet ended counts
 * it, and is skipped (all_ok after a dependency that did not succeed,
 * any_failed once all ended well), becomes ready, or waits for the rest. A
 * skip is an end without success, so it is passed on the same way. */
static void settle_dependents(fr_sched *s, size_t task, fr_task_state state,
                              fr_sched_skip_fn on_skip, void *ud)
{
    size_t n;
    const size_t *deps = fr_graph_dependents(s->g, task, &n);
    for (size_t k = 0; k < n; k++) {
        size_t d = deps[k];
        if (fr_task_state_terminal(s->state[d]))
            continue;
        s->waiting[d]--;
        s->bad[d] += state != FR_TASK_OK;
        bool skip = s->trigger[d] == FR_TRIGGER_ALL_OK && state != FR_TASK_OK;
        if (!skip && s->waiting[d] > 0)
            continue;
        if (!skip && s->trigger[d] == FR_TRIGGER_ANY_FAILED && s->bad[d] == 0)
            skip = true; /* every dependency succeeded: nothing to handle */
        if (!skip) {
            if (s->state[d] == FR_TASK_PENDING) {
                s->state[d] = FR_TASK_READY;
                heap_push(s, d);
            }
            continue;
        }
        end_task(s, d, FR_TASK_SKIPPED);
        if (on_skip)
            on_skip(ud, d, task);
        settle_dependents(s, d, FR_TASK_SKIPPED, on_skip, ud);
    }
}

void fr_sched_finish(fr_sched *s, size_t task, fr_task_state state, fr_sched_skip_fn on_skip,
                     void *ud)
{
    if (fr_task_state_terminal(s->state[task]))
        return;
    end_task(s, task, state);
    settle_dependents(s, task, state, on_skip, ud);
}

void fr_sched_abandon(fr_sched *s, size_t task, fr_task_state state)
{
    if (!fr_task_state_terminal(s->state[task]))
        end_task(s, task, state);
}

fr_task_state fr_sched_state(const fr_sched *s, size_t task)
{
    return s->state[task];
}

size_t fr_sched_unfinished(const fr_sched *s)
{
    return s->unfinished;
}

fr_sched *fr_sched_for_run(const fr_graph *g, const fr_workflow *wf, int *fd_cap)
{
    long slots = 0;
    for (size_t e = 0; e < wf->nendpoints; e++)
        slots += wf->endpoints[e].max_parallel > 0 ? wf->endpoints[e].max_parallel : 1;
    fr_sched *s = fr_sched_for_workflow(g, wf);
    int cap = *fd_cap = fr_fd_transfer_cap(fr_fd_limit());
    fr_sched_set_total_cap(s, cap);
    if (cap > 0 && slots > cap)
        fr_log_event(FR_LOG_INFO, "sched", "run.capacity",
                     "max_parallel_total=%ld fd_limit=%ld transfers_at_once=%d (file descriptors "
                     "allow no more; raise ulimit -n for more)",
                     slots, fr_fd_limit(), cap);
    return s;
}
