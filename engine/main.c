/* flowrun's command line: parses arguments, loads the workflow, runs it and
 * prints the summary and report. Everything else lives in flowrun_core. */
#include "dsl/policy.h"
#include "dsl/suggest.h"
#include "dsl/workflow.h"
#include "engine/run.h"
#include "engine/store.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    EXIT_USAGE = 2,
    EXIT_IOERR = 74,
    EXIT_INVALID = 65,
    EXIT_CONFIG = 78,
};

static const char usage[] =
    "usage: flowrun [run] WORKFLOW.lua [options]\n"
    "       flowrun plan WORKFLOW.lua [options]\n"
    "       flowrun spend [--month YYYY-MM] [--state DIR] [--sim] [--json]\n"
    "       flowrun policy list | flowrun policy show NAME\n"
    "\n"
    "Runs every task of a workflow as soon as its dependencies are done, in\n"
    "parallel, on the endpoint the routing policy picks. `plan` sends nothing:\n"
    "it shows the order, the endpoint each task would get, the expected times\n"
    "and costs, using the same policy and capacities on a simulated clock.\n"
    "`spend` prints the cost ledger by month, endpoint, tier and workflow.\n"
    "`policy list` names the built-in routing policies; `policy show NAME`\n"
    "prints one's source, to copy and edit.\n"
    "\n"
    "options (before or after the workflow file):\n"
    "  --sim                 rehearse on the built-in simulator: every endpoint is\n"
    "                        replaced by a simulated one of the same tier, capacity\n"
    "                        and price; nothing is sent anywhere, nothing is spent\n"
    "  --sim-latency MS      simulated time to first token (default 150 local, 300 cloud)\n"
    "  --sim-tps N           simulated tokens per second (default 400 local, 800 cloud;\n"
    "                        0 = instant)\n"
    "  --out DIR             where task outputs go (default ./.flowrun/out/<run>/)\n"
    "  --json                print the machine-readable report on stdout\n"
    "  --policy NAME|FILE    routing policy (default: the workflow's, else balanced)\n"
    "  --endpoints FILE      endpoints file (default ./endpoints.lua, then\n"
    "                        $XDG_CONFIG_HOME/flowrun/endpoints.lua)\n"
    "  --var NAME=VALUE      set a workflow variable, {{var.NAME}} (repeatable)\n"
    "  --budget USD          cap on this run's spend\n"
    "  --baseline ENDPOINT   endpoint to compare the spend against\n"
    "  --no-cache            send every request, even when a stored result fits\n"
    "  --fresh TASK          do not reuse the stored result of TASK (repeatable)\n"
    "  --state DIR           state directory (default $FLOWRUN_STATE, else ./.flowrun\n"
    "                        in the current directory): runs, the cost ledger, the cache\n"
    "  --progress            a line per task as it finishes\n"
    "  --explain             print each routing decision as it is made: the\n"
    "                        policy, its version, why, the candidates\n"
    "  --log-level LEVEL     error, warn (default), info, debug, trace\n"
    "  --log-format FORMAT   text (default) or json\n"
    "  -v, --verbose         same as --log-level info\n"
    "  -q, --quiet           no summary on stderr\n"
    "  --no-color            no colors (also when NO_COLOR is set)\n"
    "  -h, --help            this help\n"
    "  --version             print the version\n"
    "\n"
    "exit codes: 0 all tasks succeeded, 1 a task failed, 2 usage, 3 budget stopped\n"
    "the run, 65 invalid workflow, 74 state store error, 78 configuration error,\n"
    "130 interrupted.\n"
    "Documentation: docs/cli.md, docs/dsl.md, docs/report.md.\n";

typedef struct args {
    const char *workflow;
    const char *endpoints;
    const char **vars;
    size_t nvars;
    const char **fresh;
    size_t nfresh;
    bool json, quiet, no_color;
    fr_run_opts run;
} args;

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "flowrun: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry 'flowrun --help'.\n");
    return EXIT_USAGE;
}

static int parse_number(const char *opt, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || v < 0) {
        fprintf(stderr, "flowrun: %s expects a number >= 0, got '%s'\nTry 'flowrun --help'.\n", opt,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses argv into `a`. Returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, args *a)
{
    a->run.sim_latency_ms = -1;
    a->run.sim_tps = -1;
    a->vars = calloc((size_t)argc, sizeof *a->vars);
    a->fresh = calloc((size_t)argc, sizeof *a->fresh);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!val)                                                                                  \
            return usage_error("option %s needs a value", s);                                      \
        i++;                                                                                       \
    } while (0)
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(s, "--version") == 0) {
            printf("flowrun %s\n", FLOWRUN_VERSION);
            return 0;
        } else if (strcmp(s, "--sim") == 0) {
            a->run.sim = true;
        } else if (strcmp(s, "--sim-latency") == 0) {
            NEED_VALUE();
            if (parse_number(s, val, &a->run.sim_latency_ms))
                return EXIT_USAGE;
        } else if (strcmp(s, "--sim-tps") == 0) {
            NEED_VALUE();
            if (parse_number(s, val, &a->run.sim_tps))
                return EXIT_USAGE;
        } else if (strcmp(s, "--out") == 0) {
            NEED_VALUE();
            a->run.out_dir = val;
        } else if (strcmp(s, "--json") == 0) {
            a->json = true;
        } else if (strcmp(s, "--policy") == 0) {
            NEED_VALUE();
            a->run.policy = val;
        } else if (strcmp(s, "--endpoints") == 0) {
            NEED_VALUE();
            a->endpoints = val;
        } else if (strcmp(s, "--var") == 0) {
            NEED_VALUE();
            a->vars[a->nvars++] = val;
        } else if (strcmp(s, "--budget") == 0) {
            NEED_VALUE();
            if (parse_number(s, val, &a->run.budget_usd))
                return EXIT_USAGE;
        } else if (strcmp(s, "--no-cache") == 0) {
            a->run.no_cache = true;
        } else if (strcmp(s, "--fresh") == 0) {
            NEED_VALUE();
            a->fresh[a->nfresh++] = val;
        } else if (strcmp(s, "--state") == 0) {
            NEED_VALUE();
            a->run.state_dir = val;
        } else if (strcmp(s, "--baseline") == 0) {
            NEED_VALUE();
            a->run.baseline = val;
        } else if (strcmp(s, "--progress") == 0) {
            a->run.progress = true;
        } else if (strcmp(s, "--explain") == 0) {
            a->run.explain = true;
        } else if (strcmp(s, "--log-level") == 0) {
            NEED_VALUE();
            int lvl = fr_log_level_parse(val);
            if (lvl < 0)
                return usage_error("unknown log level '%s' (error, warn, info, debug, trace)", val);
            fr_log_set_level((fr_log_level)lvl);
        } else if (strcmp(s, "--log-format") == 0) {
            NEED_VALUE();
            if (strcmp(val, "json") == 0)
                fr_log_set_format(FR_LOG_JSON);
            else if (strcmp(val, "text") == 0)
                fr_log_set_format(FR_LOG_TEXT);
            else
                return usage_error("unknown log format '%s' (text, json)", val);
        } else if (strcmp(s, "-v") == 0 || strcmp(s, "--verbose") == 0) {
            fr_log_set_level(FR_LOG_INFO);
        } else if (strcmp(s, "-q") == 0 || strcmp(s, "--quiet") == 0) {
            a->quiet = true;
        } else if (strcmp(s, "--no-color") == 0) {
            a->no_color = true;
        } else if (s[0] == '-' && s[1]) {
            return usage_error("unknown option '%s'", s);
        } else if (strcmp(s, "run") == 0 && !a->workflow && i == 1) {
            continue; /* `flowrun run WORKFLOW` is `flowrun WORKFLOW` */
        } else if (strcmp(s, "plan") == 0 && !a->workflow && i == 1) {
            a->run.plan = true;
        } else if (!a->workflow) {
            a->workflow = s;
        } else {
            return usage_error("unexpected argument '%s' (one workflow file per run)", s);
        }
#undef NEED_VALUE
    }
    if (!a->workflow)
        return usage_error("%s", "no workflow file given");
    a->run.fresh = a->fresh;
    a->run.nfresh = a->nfresh;
    return -1;
}

static int exit_code_for_load_error(int code)
{
    return code == FR_ECONFIG ? EXIT_CONFIG : EXIT_INVALID;
}

static void print_groups(const char *title, const json_t *groups)
{
    const char *k;
    const json_t *g;
    printf("  %-12s", title);
    json_object_foreach((json_t *)groups, k, g)
    {
        printf(" %s $%.4f (%lld)", k, json_number_value(json_object_get(g, "cost_usd")),
               (long long)json_integer_value(json_object_get(g, "attempts")));
    }
    printf("\n");
}

/* flowrun spend: the ledger by month, endpoint, tier and workflow. */
static int spend_main(int argc, char **argv)
{
    const char *month = NULL, *state_dir = NULL;
    bool json = false, sim = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--month") == 0 && i + 1 < argc)
            month = argv[++i];
        else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state_dir = argv[++i];
        else if (strcmp(argv[i], "--sim") == 0)
            sim = true;
        else
            return usage_error("spend: unexpected argument '%s'", argv[i]);
    }
    char *path = fr_run_state_path(state_dir);
    if (sim) {
        char *p = fr_xasprintf("%.*ssim.db", (int)(strlen(path) - strlen("state.db")), path);
        free(path);
        path = p;
    }
    fr_store *st = NULL;
    json_t *out = NULL;
    fr_error err = {0};
    char msg[1600];
    int code = 0;
    /* Read-only: a report never creates a ledger, a folder or a file. */
    int rc = fr_store_open_readonly(path, &st, &err);
    if (rc == FR_ENOENT) {
        if (json)
            printf("{\n  \"months\": []\n}\n");
        else
            printf("no spend recorded: no ledger at %s (--state DIR, else $FLOWRUN_STATE, else "
                   "./.flowrun)\n",
                   path);
        goto cleanup;
    }
    if (rc != FR_OK || fr_store_spend(st, month, &out, &err) != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = err.code == FR_EINVAL ? EXIT_USAGE : EXIT_IOERR;
        goto cleanup;
    }
    if (json) {
        json_dumpf(out, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        goto cleanup;
    }
    size_t i;
    json_t *m;
    if (json_array_size(json_object_get(out, "months")) == 0)
        printf("no spend recorded in %s\n", path);
    json_array_foreach(json_object_get(out, "months"), i, m)
    {
        const json_t *tok = json_object_get(m, "tokens");
        printf("%s: $%.4f in %lld attempts (%lld in, %lld out tokens; %lld estimated)\n",
               json_string_value(json_object_get(m, "month")),
               json_number_value(json_object_get(m, "cost_usd")),
               (long long)json_integer_value(json_object_get(m, "attempts")),
               (long long)json_integer_value(json_object_get(tok, "input")),
               (long long)json_integer_value(json_object_get(tok, "output")),
               (long long)json_integer_value(json_object_get(m, "usage_estimated")));
        print_groups("by tier", json_object_get(m, "by_tier"));
        print_groups("by endpoint", json_object_get(m, "by_endpoint"));
        print_groups("by workflow", json_object_get(m, "by_workflow"));
    }
cleanup:
    json_decref(out);
    fr_store_close(st);
    free(path);
    return code;
}

static const char policy_usage[] =
    "usage: flowrun policy list\n"
    "       flowrun policy show NAME\n"
    "\n"
    "`list` names the built-in routing policies (compiled into flowrun), one a\n"
    "line with what it does. `show NAME` prints the source of one, byte for\n"
    "byte, to copy and edit: `flowrun policy show balanced > mine.lua`, then\n"
    "`--policy mine.lua`. Documentation: docs/policies.md.\n";

/* Prints the text after "-- NAME: " on the first line of a built-in policy. */
static void print_summary(const fr_policy_builtin *b)
{
    const char *line = b->source, *eol = strchr(line, '\n');
    size_t n = eol ? (size_t)(eol - line) : strlen(line);
    const char *colon = memchr(line, ':', n);
    if (strncmp(line, "--", 2) != 0 || !colon) {
        printf("%s\n", b->name);
        return;
    }
    const char *text = colon + 1;
    while (*text == ' ')
        text++;
    printf("%-12s %.*s\n", b->name, (int)(n - (size_t)(text - line)), text);
}

/* flowrun policy list | show NAME: the built-in policies. */
static int policy_main(int argc, char **argv)
{
    const char *cmd = argc > 2 ? argv[2] : NULL;
    if (cmd && (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0)) {
        fputs(policy_usage, stdout);
        return 0;
    }
    if (cmd && strcmp(cmd, "list") == 0 && argc == 3) {
        for (size_t i = 0; i < fr_policy_nbuiltins; i++)
            print_summary(&fr_policy_builtins[i]);
        return 0;
    }
    if (cmd && strcmp(cmd, "show") == 0 && argc == 4) {
        const fr_policy_builtin *b = fr_policy_builtin_find(argv[3]);
        if (b) {
            fwrite(b->source, 1, b->len, stdout);
            return 0;
        }
        const char *names[16];
        size_t n = 0;
        fprintf(stderr, "flowrun: no built-in policy named '%s' (built-in:", argv[3]);
        for (size_t i = 0; i < fr_policy_nbuiltins; i++) {
            fprintf(stderr, "%s %s", i ? "," : "", fr_policy_builtins[i].name);
            if (n < sizeof names / sizeof names[0])
                names[n++] = fr_policy_builtins[i].name;
        }
        const char *near = fr_suggest(argv[3], names, n);
        fprintf(stderr, ")");
        if (near)
            fprintf(stderr, "; did you mean '%s'?", near);
        fprintf(stderr, "\nTry 'flowrun policy list'.\n");
        return EXIT_USAGE;
    }
    fputs(policy_usage, stderr);
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    args a = {0};
    fr_workflow *wf = NULL;
    fr_run *run = NULL;
    fr_error err = {0};
    char msg[1600];
    /* A peer that hangs up must fail one transfer, never kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "spend") == 0)
        return spend_main(argc, argv);
    if (argc > 1 && strcmp(argv[1], "policy") == 0)
        return policy_main(argc, argv);
    int code = parse_args(argc, argv, &a);
    if (code >= 0)
        goto cleanup;

    fr_load_opts lo = {.endpoints_path = a.endpoints, .vars = a.vars, .nvars = a.nvars};
    int rc = fr_workflow_load(a.workflow, &lo, &wf, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = exit_code_for_load_error(rc);
        goto cleanup;
    }
    rc = fr_run_new(wf, &a.run, &run, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = rc == FR_ECYCLE                                         ? EXIT_INVALID
               : rc == FR_ESTORE || rc == FR_ESTOREVER || rc == FR_EIO ? EXIT_IOERR
                                                                       : EXIT_CONFIG;
        goto cleanup;
    }
    code = fr_run_execute(run);
    if (a.run.plan) {
        if (!a.json)
            fr_run_print_plan(run, stdout);
    } else if (!a.quiet) {
        bool color = !a.no_color && !getenv("NO_COLOR") && isatty(STDERR_FILENO);
        fr_run_print_summary(run, stderr, color);
    }
    if (a.json) {
        json_t *report = fr_run_report(run);
        json_dumpf(report, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(report);
    }
cleanup:
    fr_run_free(run);
    fr_workflow_free(wf);
    free(a.vars);
    free(a.fresh);
    return code;
}
