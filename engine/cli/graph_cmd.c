/* `flowrun graph` (engine/cli/graph_cmd.h). */

#include "engine/cli/graph_cmd.h"

#include "dsl/workflow.h"
#include "engine/booking.h"
#include "engine/cli/cli.h"
#include "engine/store/store.h"
#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fr_cli_graph_help(FILE *f)
{
    fputs("Prints the task graph of WORKFLOW: one node per task (its name and agent;\n"
          "a fan-out task, foreach, drawn as a stack with what it iterates over; a\n"
          "trigger other than all_ok named) and one edge per dependency, from the\n"
          "dependency to the task. Render it with `dot -Tsvg` or paste the Mermaid\n"
          "text into a Markdown file.\n"
          "\n"
          "options:\n"
          "  --format FORMAT       dot (Graphviz, the default) or mermaid (a flowchart)\n"
          "  --run RUN|last        colour each task by how it ended in that past run (the\n"
          "                        outcome of its last attempt: ok, failed, running,\n"
          "                        cancelled, budget; 'no request' for a task answered\n"
          "                        from the cache, skipped or never reached) and label it\n"
          "                        with its endpoint and cost; `last` is the newest run\n"
          "                        of this workflow\n"
          "  --state DIR|URL       state directory or PostgreSQL URL (default $FLOWRUN_STATE,\n"
          "                        else ./.flowrun)\n"
          "  --sim                 read the rehearsals' store (runs with --sim)\n"
          "  --endpoints FILE      endpoints file, as for run (repeatable)\n"
          "  --var NAME=VALUE      set a workflow variable (repeatable)\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 printed, 2 usage, 65 invalid workflow, 74 state store error\n"
          "(no store, no such run), 78 configuration error.\n"
          "Documentation: docs/cli.md (flowrun graph).\n",
          f);
}

typedef enum { FMT_DOT, FMT_MERMAID } graph_format;

/* A status and its fill and stroke colours. */
static const struct {
    const char *name, *fill, *stroke;
} statuses[] = {
    {"ok", "#c8e6c9", "#2e7d32"},      {"failed", "#ffcdd2", "#c62828"},
    {"running", "#fff9c4", "#f9a825"}, {"cancelled", "#ffe0b2", "#ef6c00"},
    {"budget", "#ffe0b2", "#ef6c00"},  {"none", "#eeeeee", "#9e9e9e"},
};
enum { NSTATUSES = sizeof statuses / sizeof *statuses };

/* The status a task's last attempt's `outcome` (NULL: none) gives. */
static size_t status_of(const char *outcome)
{
    if (!outcome)
        return NSTATUSES - 1;
    const char *name = strcmp(outcome, "pending") == 0 ? "running" : outcome;
    for (size_t i = 0; i < NSTATUSES - 1; i++)
        if (strcmp(statuses[i].name, name) == 0)
            return i;
    return 1; /* error, timeout, quality, truncated, refused, ...: failed */
}

/* For fan-out task `name`, whose instances have the default names
 * "<name>[<index>]": their rows of `tasks` summed up as one (a new object:
 * the worst outcome, the endpoint if they share one, the cost, how many),
 * or NULL when none made a request. */
static json_t *instances_row(const json_t *tasks, const char *name)
{
    size_t n = strlen(name), count = 0;
    const char *key, *outcome = "ok", *endpoint = NULL;
    const json_t *v;
    double cost = 0;
    json_object_foreach((json_t *)tasks, key, v)
    {
        if (strncmp(key, name, n) != 0 || key[n] != '[')
            continue;
        const char *o = json_string_value(json_object_get(v, "outcome"));
        const char *e = json_string_value(json_object_get(v, "endpoint"));
        if (o && strcmp(o, "ok") != 0 && (strcmp(outcome, "ok") == 0 || strcmp(o, "pending") != 0))
            outcome = o;
        endpoint = !count || (endpoint && e && strcmp(endpoint, e) == 0) ? e : NULL;
        cost += json_number_value(json_object_get(v, "cost_usd"));
        count++;
    }
    if (!count)
        return NULL;
    return json_pack("{s:s,s:s,s:f,s:I}", "outcome", outcome, "endpoint",
                     endpoint ? endpoint : "several endpoints", "cost_usd", cost, "instances",
                     (json_int_t)count);
}

/* Appends `s` (borrowed) to `b` escaped for a quoted label of `fmt`. */
static void put_escaped(fr_buf *b, graph_format fmt, const char *s)
{
    for (; *s; s++) {
        if (fmt == FMT_DOT && (*s == '"' || *s == '\\'))
            fr_buf_printf(b, "\\%c", *s);
        else if (fmt == FMT_DOT && *s == '\n')
            fr_buf_puts(b, "\\n");
        else if (fmt == FMT_MERMAID && strchr("\"<>#&", *s))
            fr_buf_printf(b, "#%d;", (unsigned char)*s);
        else if (fmt == FMT_MERMAID && *s == '\n')
            fr_buf_puts(b, " ");
        else
            fr_buf_append(b, s, 1);
    }
}

/* Appends one line of a label: the separator first unless it is the first. */
static void put_line(fr_buf *b, graph_format fmt, bool first, const char *text)
{
    if (!first)
        fr_buf_puts(b, fmt == FMT_DOT ? "\\n" : "<br/>");
    put_escaped(b, fmt, text);
}

/* The label of task `t`: name, agent, fan-out, trigger, and the run's line. */
static char *label(const fr_workflow *wf, size_t t, graph_format fmt, const json_t *run_task,
                   size_t status, bool with_run)
{
    const fr_task_spec *ts = &wf->tasks[t];
    fr_buf b;
    fr_buf_init(&b, 0);
    put_line(&b, fmt, true, ts->name);
    char *line = fr_xasprintf("agent: %s", wf->agents[ts->agent].name);
    put_line(&b, fmt, false, line);
    free(line);
    if (ts->foreach) {
        line = fr_xasprintf("foreach: %s", ts->foreach);
        put_line(&b, fmt, false, line);
        free(line);
    }
    if (ts->trigger != FR_TRIGGER_ALL_OK) {
        line = fr_xasprintf("trigger: %s", fr_trigger_name(ts->trigger));
        put_line(&b, fmt, false, line);
        free(line);
    }
    if (with_run && run_task) {
        char usd[FR_USD_LEN];
        const char *outcome = json_string_value(json_object_get(run_task, "outcome"));
        const char *name = statuses[status].name;
        bool own = strcmp(name, "failed") != 0 || !outcome;
        json_int_t inst = json_integer_value(json_object_get(run_task, "instances"));
        char count[48] = "";
        if (inst)
            snprintf(count, sizeof count, " · %lld instance%s", (long long)inst,
                     inst == 1 ? "" : "s");
        line = fr_xasprintf(
            "%s%s%s%s%s · %s · %s", name, own ? "" : " (", own ? "" : outcome, own ? "" : ")",
            count, json_string_value(json_object_get(run_task, "endpoint")),
            fr_usd_cost(usd, json_number_value(json_object_get(run_task, "cost_usd"))));
        put_line(&b, fmt, false, line);
        free(line);
    } else if (with_run) {
        put_line(&b, fmt, false, "no request");
    }
    return fr_buf_take(&b);
}

/* Prints the graph of `wf` in `fmt`; `run` (borrowed, may be NULL) is
 * fr_store_run_tasks' document. */
static void print_graph(const fr_workflow *wf, graph_format fmt, const json_t *run)
{
    const json_t *tasks = json_object_get(run, "tasks");
    bool used[NSTATUSES] = {0};
    fr_buf head;
    fr_buf_init(&head, 0);
    put_escaped(&head, fmt, wf->name);
    if (fmt == FMT_DOT)
        printf("digraph \"%s\" {\n"
               "  rankdir=LR;\n"
               "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#ffffff\", "
               "fontname=\"Helvetica\"];\n",
               fr_buf_str(&head));
    else
        printf("---\ntitle: \"%s\"\n---\nflowchart LR\n", fr_buf_str(&head));
    fr_buf_close(&head);
    size_t *status = fr_xcalloc(wf->ntasks + 1, sizeof *status);
    for (size_t t = 0; t < wf->ntasks; t++) {
        const fr_task_spec *ts = &wf->tasks[t];
        json_t *own = json_object_get(tasks, ts->name);
        json_t *rt = own || !ts->foreach ? json_incref(own) : instances_row(tasks, ts->name);
        size_t st = status[t] = status_of(json_string_value(json_object_get(rt, "outcome")));
        char *lab = label(wf, t, fmt, rt, st, run != NULL);
        if (fmt == FMT_DOT) {
            printf("  t%zu [label=\"%s\"%s", t, lab, ts->foreach ? ", shape=box3d" : "");
            if (run)
                printf(", fillcolor=\"%s\", color=\"%s\"", statuses[st].fill, statuses[st].stroke);
            printf("];\n");
        } else {
            printf("  t%zu%s\"%s\"%s\n", t, ts->foreach ? "[[" : "[", lab,
                   ts->foreach ? "]]" : "]");
        }
        used[st] = true;
        free(lab);
        json_decref(rt);
    }
    for (size_t t = 0; t < wf->ntasks; t++)
        for (size_t d = 0; d < wf->tasks[t].ndeps; d++)
            printf(fmt == FMT_DOT ? "  t%zu -> t%zu;\n" : "  t%zu --> t%zu\n",
                   wf->tasks[t].dep_index[d], t);
    if (fmt == FMT_MERMAID && run) {
        for (size_t s = 0; s < NSTATUSES; s++)
            if (used[s])
                printf("  classDef %s fill:%s,stroke:%s\n", statuses[s].name, statuses[s].fill,
                       statuses[s].stroke);
        for (size_t t = 0; t < wf->ntasks; t++)
            printf("  class t%zu %s\n", t, statuses[status[t]].name);
    }
    if (fmt == FMT_DOT)
        printf("}\n");
    free(status);
}

/* Reads run `run_id` of `wf` from the store in `state_dir`: 0 with *out
 * owned, or the exit code with the error printed. */
static int read_run(const fr_workflow *wf, const char *state_dir, bool sim, const char *run_id,
                    json_t **out)
{
    char *path = fr_cli_state_path(state_dir, sim), *shown = fr_cli_state_shown(path);
    fr_store *st = NULL;
    fr_error err = {0};
    char msg[1600];
    int code = 0;
    int rc = fr_store_open_readonly(path, &st, &err);
    if (rc == FR_ENOENT) {
        fprintf(stderr,
                "flowrun: graph: no state store at %s: run the workflow first, or give "
                "--state DIR or URL\n",
                shown);
        code = FR_EXIT_IOERR;
    } else if (rc != FR_OK || fr_store_run_tasks(st, wf->name, run_id, out, &err) != FR_OK) {
        fprintf(stderr, "flowrun: graph: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = FR_EXIT_IOERR;
    }
    fr_store_close(st);
    free(shown);
    free(path);
    return code;
}

int fr_cli_graph_main(int argc, char **argv)
{
    const char *path = NULL, *run_id = NULL, *state_dir = NULL;
    const char **vars = fr_xcalloc((size_t)argc, sizeof *vars);
    const char **endpoints = fr_xcalloc((size_t)argc, sizeof *endpoints);
    size_t nvars = 0, nendpoints = 0;
    graph_format fmt = FMT_DOT;
    bool sim = false;
    int code = 0;
    fr_workflow *wf = NULL;
    json_t *run = NULL;
    for (int i = 2; i < argc && code == 0; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fr_cli_graph_help(stdout);
            goto cleanup;
        } else if (strcmp(s, "--sim") == 0) {
            sim = true;
        } else if (!val && s[0] == '-') {
            code = fr_cli_usage_error("graph: option %s needs a value", s);
        } else if (strcmp(s, "--format") == 0) {
            i++;
            if (strcmp(val, "dot") == 0)
                fmt = FMT_DOT;
            else if (strcmp(val, "mermaid") == 0)
                fmt = FMT_MERMAID;
            else
                code = fr_cli_usage_error("graph: --format is dot or mermaid, not '%s'", val);
        } else if (strcmp(s, "--run") == 0) {
            run_id = argv[++i];
        } else if (strcmp(s, "--state") == 0) {
            state_dir = argv[++i];
        } else if (strcmp(s, "--var") == 0) {
            vars[nvars++] = argv[++i];
        } else if (strcmp(s, "--endpoints") == 0) {
            endpoints[nendpoints++] = argv[++i];
        } else if (s[0] != '-' && !path) {
            path = s;
        } else {
            code = fr_cli_usage_error("graph: unexpected argument '%s'", s);
        }
    }
    if (code == 0 && !path)
        code = fr_cli_usage_error("%s", "graph: no workflow file (flowrun graph WORKFLOW.lua)");
    if (code == 0)
        code = fr_cli_load_workflow(path, endpoints, nendpoints, vars, nvars, &wf);
    if (code == 0 && run_id)
        code = read_run(wf, state_dir, sim, run_id, &run);
    if (code == 0)
        print_graph(wf, fmt, run);
cleanup:
    json_decref(run);
    fr_workflow_free(wf);
    free(vars);
    free(endpoints);
    return code;
}
