#include "engine/plan.h"

#include "engine/booking.h"
#include "engine/budget.h"
#include "engine/store/pgurl.h"
#include "engine/util/heap.h"
#include "engine/util/mem.h"

#include <stdlib.h>

/* One completion to come: at virtual time `at_ms` (ties in push order). */
typedef struct plan_event {
    double at_ms;
    long seq;
    fr_attempt_done_fn done;
    void *done_ud;
    fr_usage usage;
    bool obs_latency, obs_output;
    double latency_ms;
} plan_event;

struct fr_plan {
    fr_clock *clock;
    json_t *observed;
    double sim_latency_ms, sim_tps;
    fr_heap *events;
    long seq;
    char *observed_from; /* the store read for what earlier runs observed (fr_plan_for_run) */
};

static bool earlier(void *ud, const void *pa, const void *pb)
{
    const plan_event *a = pa, *b = pb;
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->seq < b->seq);
}

fr_plan *fr_plan_new(fr_clock *clock, json_t *observed, double sim_latency_ms, double sim_tps)
{
    fr_plan *p = fr_xcalloc(1, sizeof *p);
    p->clock = clock;
    p->observed = observed;
    p->sim_latency_ms = sim_latency_ms;
    p->sim_tps = sim_tps;
    p->events = fr_heap_new(sizeof(plan_event), earlier, NULL);
    return p;
}

void fr_plan_free(fr_plan *p)
{
    if (!p)
        return;
    json_decref(p->observed);
    fr_heap_free(p->events);
    free(p->observed_from);
    free(p);
}

/* A plan's attempt: what earlier runs observed wins over the defaults: this
 * task on this endpoint for its latency; for its output, on any endpoint. */
static int plan_start(void *ud, const fr_attempt_req *req, fr_attempt_done_fn done, void *done_ud,
                      void **handle, fr_error *err)
{
    fr_plan *p = ud;
    const fr_task_spec *ts = req->task;
    double latency, tps;
    fr_expected_speed(req->endpoint->tier, p->sim_latency_ms, p->sim_tps, &latency, &tps);
    long out = ts->max_tokens / 4 > 0 ? ts->max_tokens / 4 : 1;
    const json_t *seen = json_object_get(p->observed, ts->name);
    const json_t *here = json_object_get(seen, req->endpoint->name);
    const json_t *any = here;
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)seen, k, v)
    {
        if (!any)
            any = v;
    }
    plan_event ev = {.done = done, .done_ud = done_ud, .obs_output = any != NULL};
    if (any)
        out = (long)json_integer_value(json_object_get(any, "output_tokens"));
    ev.usage = (fr_usage){.input = req->est_input, .output = out, .estimated = true};
    ev.obs_latency = here != NULL;
    ev.latency_ms = here ? json_number_value(json_object_get(here, "latency_ms"))
                         : latency + (tps > 0 ? (double)out / tps * 1000.0 : 0);
    ev.at_ms = fr_clock_ms(p->clock) + ev.latency_ms;
    ev.seq = p->seq++;
    fr_heap_push(p->events, &ev);
    *handle = p;
    return FR_OK;
}

static void plan_cancel(void *ud, void *handle)
{
    /* A plan is never interrupted: nothing to do. */
}

fr_attempt_backend fr_plan_backend(fr_plan *p)
{
    return (fr_attempt_backend){.ud = p, .start = plan_start, .cancel = plan_cancel};
}

bool fr_plan_step(fr_plan *p)
{
    plan_event ev;
    if (!fr_heap_pop(p->events, &ev))
        return false;
    fr_clock_set_ms(p->clock, ev.at_ms);
    fr_outcome o = {
        .rc = FR_OK,
        .retry_after_s = -1,
        .delivered = true,
        .planned = true,
        .obs_latency = ev.obs_latency,
        .obs_output = ev.obs_output,
        .reply = {.text = fr_xstrdup(""), .usage = ev.usage},
        .total_ms = ev.latency_ms,
        .ttft_ms = ev.latency_ms,
    };
    ev.done(ev.done_ud, &o);
    fr_reply_close(&o.reply);
    return true;
}

size_t fr_plan_pending(const fr_plan *p)
{
    return fr_heap_count(p->events);
}

bool fr_plan_observed(const fr_plan *p)
{
    return p->observed && json_object_size(p->observed) > 0;
}

fr_plan *fr_plan_for_run(fr_clock *clock, const char *state_dir, bool sim, const char *workflow,
                         double sim_latency_ms, double sim_tps, fr_results *res, fr_budget *budget,
                         fr_attempt_backend *backend)
{
    /* A shared store (a PostgreSQL URL) is read as it is and named masked. */
    const char *url = fr_pgurl_state(state_dir);
    char *from = url ? fr_xstrdup(url) : fr_booking_state_path(state_dir, sim);
    fr_plan *p = fr_plan_new(clock, fr_booking_observed(from, workflow), sim_latency_ms, sim_tps);
    if (url) {
        free(from);
        from = fr_pgurl_mask(url);
    }
    p->observed_from = from;
    res->observed = fr_plan_observed(p);
    res->observed_from = p->observed_from;
    *backend = fr_plan_backend(p);
    fr_budget_mute_alerts(budget); /* a plan spends nothing */
    return p;
}
