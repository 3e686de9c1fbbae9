/* `flowrun approve` and `flowrun reject` (engine/cli/approve_cmd.h). */

#include "engine/cli/approve_cmd.h"

#include "dsl/suggest.h"
#include "dsl/workflow.h"
#include "engine/approval.h"
#include "engine/booking.h"
#include "engine/cli/cli.h"
#include "engine/store/pgurl.h"
#include "engine/store/store.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

void fr_cli_approve_help(FILE *f)
{
    fputs("Records a decision on the checkpoint of TASK (a task with approve = true)\n"
          "that a run left pending: `approve` lets its dependents run, `reject` fails\n"
          "the task with the note as its reason and skips its dependents. Who decided\n"
          "(the user name) and when are recorded with it. Run the workflow again to\n"
          "go on: what is done comes from the result cache, only the dependents send\n"
          "requests. A decision holds for the output it was shown: when the task's\n"
          "output changes (--fresh, an edited prompt), the run asks again.\n"
          "\n"
          "options:\n"
          "  --note TEXT           why (shown in the report; a rejection's reason)\n"
          "  --state DIR|URL       state directory or PostgreSQL URL (default $FLOWRUN_STATE,\n"
          "                        else ./.flowrun)\n"
          "  --sim                 a checkpoint of a rehearsal (a run with --sim keeps its own\n"
          "                        store beside the real one)\n"
          "  --endpoints FILE      endpoints file, as for run (repeatable)\n"
          "  --var NAME=VALUE      set a workflow variable (repeatable)\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 recorded, 2 usage, 65 the workflow does not load, has no such\n"
          "task, the task has no approve = true, or no approval of it is pending,\n"
          "74 state store error.\n"
          "Documentation: docs/cli.md (flowrun approve).\n",
          f);
}

/* After a run that ended with checkpoints pending (exit 4): each, and the
 * commands that answer it. */
void fr_cli_how_to_answer(const fr_results *r, const char *wf_path, const char *state_dir)
{
    char *state = fr_xasprintf("%s%s%s", state_dir ? " --state " : "", state_dir ? state_dir : "",
                               r->sim ? " --sim" : "");
    for (size_t t = 0; t < r->wf->ntasks; t++) {
        if (r->tasks[t].approval.state != FR_APPROVAL_PENDING)
            continue;
        const char *name = r->wf->tasks[t].name;
        fprintf(stderr,
                "flowrun: task '%s' waits for approval (its output is in %s/); answer with\n"
                "  flowrun approve %s %s%s [--note TEXT]\n"
                "  flowrun reject %s %s%s [--note TEXT]\n"
                "then run the workflow again to go on.\n",
                name, r->out_dir, wf_path, name, state, wf_path, name, state);
    }
    free(state);
}

/* flowrun approve|reject WORKFLOW.lua TASK [--note TEXT] [--state DIR]:
 * records the decision on a checkpoint a run left pending. */
int fr_cli_approve_main(int argc, char **argv)
{
    bool reject = strcmp(argv[1], "reject") == 0;
    bool sim = false; /* the rehearsals' store (runs with --sim) */
    const char *path = NULL, *task = NULL, *note = NULL, *state_dir = NULL;
    const char **vars = fr_xcalloc((size_t)argc, sizeof *vars);
    const char **endpoints = fr_xcalloc((size_t)argc, sizeof *endpoints);
    size_t nvars = 0, nendpoints = 0;
    int code = 0;
    for (int i = 2; i < argc && code == 0; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--note") == 0 && has)
            note = argv[++i];
        else if (strcmp(argv[i], "--state") == 0 && has)
            state_dir = argv[++i];
        else if (strcmp(argv[i], "--sim") == 0)
            sim = true;
        else if (strcmp(argv[i], "--var") == 0 && has)
            vars[nvars++] = argv[++i];
        else if (strcmp(argv[i], "--endpoints") == 0 && has)
            endpoints[nendpoints++] = argv[++i];
        else if (argv[i][0] == '-')
            code = fr_cli_usage_error(has ? "unknown option '%s'" : "option %s needs a value",
                                      argv[i]);
        else if (!path)
            path = argv[i];
        else if (!task)
            task = argv[i];
        else
            code = fr_cli_usage_error("unexpected argument '%s'", argv[i]);
    }
    if (code == 0 && !task)
        code = fr_cli_usage_error("%s: needs a workflow file and a task (flowrun approve|reject "
                                  "WORKFLOW.lua TASK)",
                                  argv[1]);
    fr_workflow *wf = NULL;
    fr_store *st = NULL;
    char *db = NULL;
    fr_error err = {0};
    char msg[1600];
    if (code != 0 ||
        (code = fr_cli_load_workflow(path, endpoints, nendpoints, vars, nvars, &wf)) != 0)
        goto cleanup;
    long t = fr_workflow_find_task(wf, task);
    if (t < 0 || !wf->tasks[t].approve) {
        fprintf(stderr, "flowrun: %s: ", path);
        if (t < 0) {
            const char **names = fr_xcalloc(wf->ntasks + 1, sizeof *names);
            for (size_t i = 0; i < wf->ntasks; i++)
                names[i] = wf->tasks[i].name;
            const char *near = fr_suggest(task, names, wf->ntasks);
            fprintf(stderr, "the workflow has no task '%s'", task);
            if (near)
                fprintf(stderr, "; did you mean '%s'?", near);
            free(names);
        } else {
            fprintf(stderr, "task '%s' has no approve = true: it has no checkpoint to %s", task,
                    argv[1]);
        }
        fputc('\n', stderr);
        code = FR_EXIT_INVALID;
        goto cleanup;
    }
    db = fr_cli_state_path(state_dir, sim);
    if (!fr_pgurl_is_url(db) && access(db, F_OK) != 0) {
        fprintf(stderr,
                "flowrun: no approval of task '%s' is pending: no state store at %s (--state "
                "DIR, else $FLOWRUN_STATE, else ./.flowrun%s); run the workflow first: without a "
                "terminal it stops at the checkpoint and records it\n",
                task, db, sim ? "" : "; --sim for a rehearsal's checkpoint");
        code = FR_EXIT_INVALID;
        goto cleanup;
    }
    int rc = fr_store_open(db, &st, &err);
    if (rc == FR_OK)
        rc = fr_approval_record(st, wf->name, task,
                                reject ? FR_APPROVAL_REJECTED : FR_APPROVAL_APPROVED, note, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = rc == FR_ENOENT ? FR_EXIT_INVALID : FR_EXIT_IOERR;
        goto cleanup;
    }
    fprintf(stderr, "flowrun: %s task '%s' of %s%s%s; run the workflow again to go on\n",
            reject ? "rejected" : "approved", task, path, note ? ": " : "", note ? note : "");
cleanup:
    fr_store_close(st);
    free(db);
    fr_workflow_free(wf);
    free(vars);
    free(endpoints);
    return code;
}
