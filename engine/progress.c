#include "engine/progress.h"

#include "engine/util/log.h"

void fr_progress_started(size_t ntasks)
{
    fr_log(FR_LOG_WARN, "run", "tasks=%zu status=started", ntasks);
}

void fr_progress_ended(const char *name, fr_task_state state, const char *reason)
{
    fr_log(FR_LOG_WARN, "sched", "task=%s status=%s reason=\"%s\"", name, fr_task_state_name(state),
           reason ? reason : "");
}

void fr_progress_ok(const char *name, const fr_task_result *res, const fr_endpoints *eps)
{
    const fr_endpoint_spec *s = fr_ep_spec(eps, (size_t)res->endpoint);
    fr_log(FR_LOG_WARN, "sched",
           "task=%s status=ok endpoint=%s tier=%s latency_ms=%.0f tokens_in=%ld tokens_out=%ld",
           name, s->name, fr_tier_name(s->tier), res->latency_ms, res->usage.input,
           res->usage.output);
}

void fr_progress_fanout_ok(const char *name, size_t instances, const char *note)
{
    fr_log(FR_LOG_WARN, "sched", "task=%s status=ok instances=%zu%s%s", name, instances,
           note ? " note=" : "", note ? note : "");
}
