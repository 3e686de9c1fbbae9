/* `flowrun --task NAME`: a workflow cut down to some tasks and their
 * dependencies after load (dsl/workflow.h, fr_workflow_subset). */
#include "dsl/load_int.h"
#include "dsl/sandbox.h"
#include "dsl/suggest.h"
#include "dsl/workflow.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

static long find_task(const fr_workflow *wf, const char *name)
{
    for (size_t t = 0; t < wf->ntasks; t++)
        if (strcmp(wf->tasks[t].name, name) == 0)
            return (long)t;
    return -1;
}

/* Marks task `t` and, depth first, everything it depends on. */
static void keep_with_deps(const fr_workflow *wf, size_t t, bool *keep)
{
    if (keep[t])
        return;
    keep[t] = true;
    for (size_t k = 0; k < wf->tasks[t].ndeps; k++)
        keep_with_deps(wf, wf->tasks[t].dep_index[k], keep);
}

static int unknown_task(const fr_workflow *wf, const char *name, fr_error *err)
{
    const char **names = fr_xcalloc(wf->ntasks + 1, sizeof *names);
    for (size_t t = 0; t < wf->ntasks; t++)
        names[t] = wf->tasks[t].name;
    const char *near = fr_suggest(name, names, wf->ntasks);
    char list[600] = "";
    size_t used = 0;
    for (size_t t = 0; t < wf->ntasks && t < 10 && used < sizeof list - 120; t++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", t ? ", " : "", names[t]);
    free(names);
    if (near)
        return fr_error_set(err, FR_EUSAGE, wf->path, 0,
                            "--task: the workflow has no task '%s'; did you mean '%s'?", name,
                            near);
    return fr_error_set(err, FR_EUSAGE, wf->path, 0,
                        "--task: the workflow has no task '%s' (tasks: %s%s)", name, list,
                        wf->ntasks > 10 ? ", ..." : "");
}

static long remap(long idx, const long *new_index)
{
    return idx < 0 ? idx : new_index[idx];
}

int fr_workflow_subset(fr_workflow *wf, const char *const *names, size_t n, fr_error *err)
{
    if (n == 0)
        return FR_OK;
    for (size_t i = 0; i < n; i++)
        if (find_task(wf, names[i]) < 0)
            return unknown_task(wf, names[i], err);
    bool *keep = fr_xcalloc(wf->ntasks + 1, sizeof *keep);
    long *new_index = fr_xcalloc(wf->ntasks + 1, sizeof *new_index);
    for (size_t i = 0; i < n; i++)
        keep_with_deps(wf, (size_t)find_task(wf, names[i]), keep);
    size_t kept = 0;
    for (size_t t = 0; t < wf->ntasks; t++)
        new_index[t] = keep[t] ? (long)kept++ : -1;
    for (size_t t = 0; t < wf->ntasks; t++) {
        if (!keep[t]) {
            fr_load_task_close(&wf->tasks[t]);
            if (wf->lua && wf->lua->tasks) {
                fr_sandbox_unref(wf->lua->L, wf->lua->tasks[t].prompt_ref);
                fr_sandbox_unref(wf->lua->L, wf->lua->tasks[t].check_ref);
                fr_sandbox_unref(wf->lua->L, wf->lua->tasks[t].when_ref);
            }
            continue;
        }
        fr_task_spec *ts = &wf->tasks[t];
        for (size_t k = 0; k < ts->ndeps; k++)
            ts->dep_index[k] = (size_t)new_index[ts->dep_index[k]];
        ts->private_from = remap(ts->private_from, new_index);
        ts->private_via = remap(ts->private_via, new_index);
        ts->declassified_from = remap(ts->declassified_from, new_index);
        size_t to = (size_t)new_index[t];
        if (to != t) {
            wf->tasks[to] = *ts;
            if (wf->lua && wf->lua->tasks)
                wf->lua->tasks[to] = wf->lua->tasks[t];
        }
    }
    wf->ntasks = kept;
    free(keep);
    free(new_index);
    return FR_OK;
}
