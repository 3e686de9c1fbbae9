#include "engine/exitcode.h"

#include "engine/util/err.h"

#include <stdio.h>
#include <stdlib.h>

int fr_exit_settle(fr_results *res, const fr_sched *sched, const fr_checkpoints *cp,
                   const fr_exit_in *in)
{
    bool failed = false, budget = false, waiting = false;
    size_t held = fr_checkpoints_count(cp);
    for (size_t t = 0; t < res->wf->ntasks; t++) {
        fr_task_state st = fr_sched_state(sched, t);
        /* A task held at its checkpoint succeeded; those behind it wait. */
        st = fr_checkpoints_held(cp, t) && !res->interrupted ? FR_TASK_OK : st;
        res->tasks[t].state = st;
        if (st == FR_TASK_PENDING && held && !res->interrupted) {
            waiting = true;
            free(res->tasks[t].reason);
            res->tasks[t].reason = fr_checkpoints_waiting_reason(cp, t);
            continue;
        }
        /* A skip that was decided (a condition, a trigger) is not a failure. */
        failed |= st != FR_TASK_OK && !(st == FR_TASK_SKIPPED && res->tasks[t].decided);
        budget |= st == FR_TASK_BUDGET;
    }
    int code = res->interrupted               ? res->exit_code /* 130 SIGINT, 143 SIGTERM */
               : in->start_rc == FR_EWORKFLOW ? 65
               : in->start_rc != FR_OK        ? 78
               : in->store_failed             ? 74
               : budget                       ? 3
               : failed || in->write_errors   ? 1
               : waiting || held              ? 4
                                              : 0;
    if (in->plan)
        code = budget ? 3 : failed ? 1 : 0; /* as the run would end */
    res->exit_code = code;
    return code;
}

const char *fr_exit_status(int code, bool interrupted)
{
    return code == 0     ? "ok"
           : code == 3   ? "budget"
           : code == 4   ? "waiting"
           : interrupted ? "interrupted"
                         : "failed";
}

int fr_exit_tools_failed(int rc, const fr_error *err)
{
    char msg[1400];
    fr_error_format(err, msg, sizeof msg);
    fprintf(stderr, "flowrun: %s\n", msg);
    return rc == FR_EWORKFLOW ? FR_EWORKFLOW : (rc != FR_OK ? rc : FR_EMCP);
}
