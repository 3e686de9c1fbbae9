/* flowrun's command line: dispatches the subcommands from one table (each
 * with its own help), parses a run's or a plan's arguments, loads the
 * workflow, runs it and prints the summary and report; `spend` and
 * `policy` too. The other commands live in engine/cli/ (tools, approve and
 * reject, mcp, init, defs, completion and man, the last two given the
 * commands' table), everything else in flowrun_core. */
#include "dsl/policy.h"
#include "dsl/suggest.h"
#include "dsl/workflow.h"
#include "engine/approval.h"
#include "engine/booking.h"
#include "engine/cli/approve_cmd.h"
#include "engine/cli/cli.h"
#include "engine/cli/completion_cmd.h"
#include "engine/cli/defs_cmd.h"
#include "engine/cli/init_cmd.h"
#include "engine/cli/endpoints_cmd.h"
#include "engine/cli/graph_cmd.h"
#include "engine/cli/mcp_cmd.h"
#include "engine/cli/runs_cmd.h"
#include "engine/cli/tools_cmd.h"
#include "engine/guard.h"
#include "engine/htmlreport.h"
#include "engine/proc.h"
#include "engine/report.h"
#include "engine/progress.h"
#include "engine/run.h"
#include "engine/trace.h"
#include "engine/util/err.h"
#include "engine/util/fdlimit.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"
#include "engine/sim/sim.h"

#include <errno.h>
#include <jansson.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct args {
    const char *workflow;
    const char **endpoints; /* every --endpoints, in order */
    size_t nendpoints;
    const char **vars;
    size_t nvars;
    const char **fresh;
    size_t nfresh;
    const char **approve;
    size_t napprove;
    const char **tasks; /* every --task: run only these and their deps */
    size_t ntasks;
    bool json, quiet, no_color, save_anywhere;
    const char *trace_file, *html_file; /* --trace, --html: written at the run's end */
    fr_run_opts run;
} args;

/* ---- help: one text per command, printed by `flowrun help [CMD]` and by
 * `flowrun CMD --help` ---- */

static const char exit_codes[] =
    "exit codes: 0 all tasks succeeded, 1 a task failed, 2 usage, 3 budget stopped\n"
    "the run, 4 waiting for an approval (flowrun approve|reject), 65 invalid\n"
    "workflow, 74 state store error, 78 configuration error, 130 interrupted by\n"
    "SIGINT, 143 by SIGTERM.\n";

enum { FOR_RUN = 1, FOR_PLAN = 2 };

/* The options of `run` and `plan`, each once, with the commands it is
 * listed for (both accept every one of them). */
static const struct {
    unsigned cmds;
    const char *text;
} run_options[] = {
    {FOR_RUN, "  --sim                 rehearse on the built-in simulator: every endpoint is\n"
              "                        replaced by a simulated one of the same tier, capacity\n"
              "                        and price; nothing is sent anywhere, nothing is spent\n"},
    {FOR_RUN | FOR_PLAN,
     "  --sim-latency MS      simulated time to first token (default 150 local, 300 cloud)\n"},
    {FOR_RUN | FOR_PLAN,
     "  --sim-tps N           simulated tokens per second (default 400 local, 800 cloud;\n"
     "                        0 = instant)\n"},
    {FOR_RUN, "  --out DIR             where task outputs go (default ./.flowrun/out/<run>/)\n"},
    {FOR_RUN | FOR_PLAN, "  --json                print the machine-readable report on stdout\n"},
    {FOR_RUN, "  --trace FILE          write a Chrome trace (Perfetto, chrome://tracing)\n"},
    {FOR_RUN, "  --html FILE           write a self-contained HTML report\n"},
    {FOR_RUN | FOR_PLAN,
     "  --policy NAME|FILE    routing policy (default: the workflow's, else balanced)\n"},
    {FOR_RUN | FOR_PLAN,
     "  --endpoints FILE      endpoints file (default ./endpoints.lua, then\n"
     "                        $XDG_CONFIG_HOME/flowrun/endpoints.lua); repeatable: every\n"
     "                        file is read, in order, and a name in two files is an error\n"},
    {FOR_RUN | FOR_PLAN,
     "  --var NAME=VALUE      set a workflow variable, {{var.NAME}} (repeatable); one the\n"
     "                        workflow neither declares nor uses gets a warning\n"},
    {FOR_RUN | FOR_PLAN,
     "  --budget USD          cap on this run's spend, replacing the workflow's;\n"
     "                        0 lets only free work run (local, or price 0)\n"},
    {FOR_RUN | FOR_PLAN, "  --baseline ENDPOINT   endpoint to compare the spend against\n"},
    {FOR_RUN, "  --no-cache            send every request, even when a stored result fits\n"},
    {FOR_RUN, "  --fresh TASK          do not reuse the stored result of TASK (repeatable)\n"},
    {FOR_RUN, "  --approve TASK        approve the checkpoint of TASK (approve = true) in\n"
              "                        advance, without asking (repeatable)\n"},
    {FOR_RUN, "  --approve-all         approve every checkpoint in advance\n"},
    {FOR_RUN | FOR_PLAN,
     "  --task NAME           only this task and the tasks it depends on (repeatable)\n"},
    {FOR_RUN | FOR_PLAN,
     "  --allow-save-anywhere let `save` paths be absolute or leave the workflow's\n"
     "                        folder (through '..' or a symbolic link); without it\n"
     "                        such a workflow is refused (65)\n"},
    {FOR_RUN | FOR_PLAN,
     "  --state DIR           state directory (default $FLOWRUN_STATE, else ./.flowrun\n"
     "                        in the current directory): runs, the cost ledger, the cache;\n"
     "                        or a postgresql:// URL: a team's shared store\n"},
    {FOR_RUN | FOR_PLAN, "  --progress            a line per task as it finishes\n"},
    {FOR_RUN | FOR_PLAN,
     "  --explain             print each routing decision as it is made: the\n"
     "                        policy, its version, why, the candidates, and\n"
     "                        the policy's own explanation when it gives one\n"},
    {FOR_RUN | FOR_PLAN, "  --seed N              the integer a policy reads as run.seed (for\n"
                         "                        reproducible exploration); default: derived\n"
                         "                        from the run id\n"},
    {FOR_RUN | FOR_PLAN, "  --log-level LEVEL     error, warn (default), info, debug, trace\n"},
    {FOR_RUN | FOR_PLAN, "  --log-format FORMAT   text (default) or json\n"},
    {FOR_RUN | FOR_PLAN, "  -v, --verbose         same as --log-level info\n"},
    {FOR_RUN, "  -q, --quiet           no summary on stderr\n"},
    {FOR_RUN, "  --no-color            no colors (also when NO_COLOR is set)\n"},
    {FOR_RUN | FOR_PLAN, "  -h, --help            this help\n"},
};

static void print_options(FILE *f, unsigned cmd)
{
    for (size_t i = 0; i < sizeof run_options / sizeof *run_options; i++)
        if (run_options[i].cmds & cmd)
            fputs(run_options[i].text, f);
}

static void run_help(FILE *f)
{
    fputs("Runs every task of a workflow as soon as its dependencies are done, in\n"
          "parallel, on the endpoint the routing policy picks. `flowrun WORKFLOW.lua`\n"
          "is `flowrun run WORKFLOW.lua`.\n"
          "\n"
          "options (before or after the workflow file):\n",
          f);
    print_options(f, FOR_RUN);
    fputs("  --version             print the version\n\n", f);
    fputs(exit_codes, f);
    fputs("Documentation: docs/cli.md, docs/dsl.md, docs/report.md.\n", f);
}

static void plan_help(FILE *f)
{
    fputs("Sends nothing and writes nothing: shows the order, the endpoint each task\n"
          "would get, the expected times and costs and the worst case, using the same\n"
          "policy and capacities as a run on a simulated clock.\n"
          "\n"
          "options (before or after the workflow file):\n",
          f);
    print_options(f, FOR_PLAN);
    fputs("\n", f);
    fputs(exit_codes, f);
    fputs("Documentation: docs/cli.md (flowrun plan).\n", f);
}

static void spend_help(FILE *f)
{
    fputs("Prints the cost ledger by month (or by UTC day), then by tier, endpoint,\n"
          "workflow, user and host.\n"
          "\n"
          "options:\n"
          "  --month YYYY-MM       only that month\n"
          "  --day YYYY-MM-DD      only that UTC day (`today`: the current one)\n"
          "  --daily               by UTC day instead of by month\n"
          "  --state DIR|URL       state directory or PostgreSQL URL (default $FLOWRUN_STATE,\n"
          "                        else ./.flowrun)\n"
          "  --sim                 the rehearsals' ledger (sim.db) instead of the real one\n"
          "  --json                print the ledger as JSON on stdout\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 printed, 2 usage, 74 state store error.\n"
          "Documentation: docs/budgets.md.\n",
          f);
}

static const char policy_usage[] =
    "`list` names the built-in routing policies (compiled into flowrun), one a\n"
    "line with what it does. `show NAME` prints the source of one, byte for\n"
    "byte, to copy and edit: `flowrun policy show balanced > mine.lua`, then\n"
    "`--policy mine.lua`. Documentation: docs/policies.md.\n";

static void policy_help(FILE *f)
{
    fputs(policy_usage, f);
}

static void help_help(FILE *f)
{
    fputs("Prints the list of commands, or the help of COMMAND (the same as\n"
          "`flowrun COMMAND --help`).\n",
          f);
}

static int run_main(int argc, char **argv);
static int plan_main(int argc, char **argv);
static int spend_main(int argc, char **argv);
static int policy_main(int argc, char **argv);
int fr_cli_tools_main(int argc, char **argv);
int fr_cli_approve_main(int argc, char **argv);
int fr_cli_mcp_main(int argc, char **argv);
static int help_main(int argc, char **argv);
static int completion_main(int argc, char **argv);
static int man_main(int argc, char **argv);

/* A subcommand: its name, usage line, one-line summary, help and entry
 * point (`main` gets the whole argv; argv[1] is the command's name). */
typedef struct command {
    const char *name;
    const char *synopsis;
    const char *summary;
    void (*help)(FILE *f);
    int (*main)(int argc, char **argv);
} command;

/* Adding a command is adding a line here (and writing its main and help
 * functions): dispatch, `flowrun help`, `help CMD` and `CMD --help` follow. */
static const command commands[] = {
    {"run", "flowrun [run] WORKFLOW.lua [options]", "run a workflow (the default command)",
     run_help, run_main},
    {"plan", "flowrun plan WORKFLOW.lua [options]",
     "what a run would do: order, endpoints, times, costs; sends nothing", plan_help, plan_main},
    {"spend",
     "flowrun spend [--month YYYY-MM | --day YYYY-MM-DD | --daily] [--state DIR|URL] [--sim] "
     "[--json]",
     "the cost ledger by month or day, endpoint, tier, workflow, user and host", spend_help,
     spend_main},
    {"policy", "flowrun policy list | flowrun policy show NAME",
     "the built-in routing policies, and the source of one to copy", policy_help, policy_main},
    {"tools", "flowrun tools WORKFLOW.lua [--json]",
     "the tools a workflow's agents may use, asking its MCP servers", fr_cli_tools_help,
     fr_cli_tools_main},
    {"approve", "flowrun approve WORKFLOW.lua TASK [--note TEXT] [--state DIR|URL] [--sim]",
     "approve a checkpoint a run left pending", fr_cli_approve_help, fr_cli_approve_main},
    {"reject", "flowrun reject WORKFLOW.lua TASK [--note TEXT] [--state DIR|URL] [--sim]",
     "reject a checkpoint a run left pending", fr_cli_approve_help, fr_cli_approve_main},
    {"mcp", "flowrun mcp [--endpoints F] [--policy P] [--state DIR] [--sim] [options]",
     "serve run_task, run_workflow, plan, spend and approve to an MCP client", fr_cli_mcp_help,
     fr_cli_mcp_main},
    {"init", "flowrun init [DIR] [--force]",
     "start a project: a workflow, endpoints, a policy, editor support", fr_cli_init_help,
     fr_cli_init_main},
    {"defs", "flowrun defs", "the DSL's definitions for lua-language-server (editor completion)",
     fr_cli_defs_help, fr_cli_defs_main},
    {"completion", "flowrun completion bash|zsh", "the shell completion script for bash or zsh",
     fr_cli_completion_help, completion_main},
    {"man", "flowrun man", "the manual page flowrun(1), in roff", fr_cli_man_help, man_main},
    {"endpoints", "flowrun endpoints [WORKFLOW.lua] [--check] [--probe] [--json]",
     "the endpoints a run would have; --check asks each one if it is usable", fr_cli_endpoints_help,
     fr_cli_endpoints_main},
    {"graph", "flowrun graph WORKFLOW.lua [--format dot|mermaid] [--run RUN|last]",
     "the task graph as Graphviz dot or Mermaid, coloured by a past run", fr_cli_graph_help,
     fr_cli_graph_main},
    {"runs", "flowrun runs [WORKFLOW] [--limit N] [--state DIR|URL] [--sim] [--json]",
     "the runs in the state store, newest first", fr_cli_runs_help, fr_cli_runs_main},
    {"report", "flowrun report [RUN|last] [--workflow NAME] [--json] [--state DIR|URL] [--sim]",
     "a finished run's summary or JSON report, as it printed them", fr_cli_report_help,
     fr_cli_report_main},
    {"stats", "flowrun stats [--since DATE] [--routing] [--json] [--state DIR|URL] [--sim]",
     "requests, success, quality, latency, tokens, spend, tiers across runs", fr_cli_stats_help,
     fr_cli_stats_main},
    {"help", "flowrun help [COMMAND]", "this list, or a command's help", help_help, help_main},
};
enum { NCOMMANDS = sizeof commands / sizeof *commands };

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* `flowrun help` and `flowrun --help`: every command, and the exit codes. */
static void print_overview(FILE *f)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "%s%s\n", i ? "       " : "usage: ", commands[i].synopsis);
    fputs("\n"
          "flowrun runs the tasks of a workflow as a parallel graph, on local endpoints\n"
          "first and the cloud where it pays, within its budget caps.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "'flowrun help COMMAND' (or 'flowrun COMMAND --help') shows a command's options.\n"
          "'flowrun --version' prints the version.\n"
          "\n",
          f);
    fputs(exit_codes, f);
    fputs("Documentation: docs/cli.md, docs/dsl.md, docs/report.md.\n", f);
}

static void print_command_help(const command *c, FILE *f)
{
    fprintf(f, "usage: %s\n\n", c->synopsis);
    c->help(f);
}

/* "unknown command 'pln'; did you mean 'plan'?", exit 2. */
static int unknown_command(const char *word)
{
    const char *names[NCOMMANDS];
    for (size_t i = 0; i < NCOMMANDS; i++)
        names[i] = commands[i].name;
    const char *s = fr_suggest(word, names, NCOMMANDS);
    char *file = fr_xasprintf("%s.lua", word);
    fprintf(stderr, "flowrun: unknown command '%s'", word);
    if (s)
        fprintf(stderr, "; did you mean '%s'?\n", s);
    else if (access(file, F_OK) == 0)
        fprintf(stderr, "; did you mean the workflow '%s'?\n", file);
    else
        fprintf(stderr, " (a workflow is a file: flowrun WORKFLOW.lua)\n");
    fprintf(stderr, "Try 'flowrun help'.\n");
    free(file);
    return FR_EXIT_USAGE;
}

/* flowrun help [COMMAND] */
static int help_main(int argc, char **argv)
{
    if (argc <= 2) {
        print_overview(stdout);
        return 0;
    }
    if (argc > 3)
        return fr_cli_usage_error("help: unexpected argument '%s'", argv[3]);
    const command *c = find_command(argv[2]);
    if (!c)
        return unknown_command(argv[2]);
    print_command_help(c, stdout);
    return 0;
}

/* The commands as completion_cmd reads them (their help included). */
static void command_docs(fr_cli_command_doc *docs)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        docs[i] = (fr_cli_command_doc){commands[i].name, commands[i].synopsis, commands[i].summary,
                                       commands[i].help};
}

/* flowrun completion bash|zsh */
static int completion_main(int argc, char **argv)
{
    fr_cli_command_doc docs[NCOMMANDS];
    command_docs(docs);
    return fr_cli_completion_main(argc, argv, docs, NCOMMANDS);
}

/* flowrun man */
static int man_main(int argc, char **argv)
{
    fr_cli_command_doc docs[NCOMMANDS];
    command_docs(docs);
    return fr_cli_man_main(argc, argv, docs, NCOMMANDS, print_overview, FLOWRUN_VERSION);
}

/* A word where a workflow file is expected, with no '/' or '.', that is
 * no file: a misspelt or unknown command rather than a workflow. */
static bool looks_like_command(const char *s)
{
    return !strpbrk(s, "./") && access(s, F_OK) != 0;
}

/* Parses argv[first..] into `a` for the run or plan command `cmd`, or for
 * `flowrun WORKFLOW.lua` when `cmd` is NULL. Returns -1 to go on, or an
 * exit code. */
static int parse_args(int argc, char **argv, int first, const command *cmd, args *a)
{
    a->run.sim_latency_ms = -1;
    a->run.sim_tps = -1;
    a->vars = calloc((size_t)argc, sizeof *a->vars);
    a->fresh = calloc((size_t)argc, sizeof *a->fresh);
    a->approve = calloc((size_t)argc, sizeof *a->approve);
    a->tasks = calloc((size_t)argc, sizeof *a->tasks);
    a->endpoints = calloc((size_t)argc, sizeof *a->endpoints);
    for (int i = first; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                               \
    do {                                                                                           \
        if (!val)                                                                                  \
            return fr_cli_usage_error("option %s needs a value", s);                               \
        i++;                                                                                       \
    } while (0)
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            if (cmd)
                print_command_help(cmd, stdout);
            else
                print_overview(stdout);
            return 0;
        } else if (strcmp(s, "--version") == 0) {
            printf("flowrun %s\n", FLOWRUN_VERSION);
            return 0;
        } else if (strcmp(s, "--sim") == 0) {
            a->run.sim = true;
        } else if (strcmp(s, "--sim-latency") == 0) {
            NEED_VALUE();
            if (fr_cli_parse_number(s, val, &a->run.sim_latency_ms))
                return FR_EXIT_USAGE;
        } else if (strcmp(s, "--sim-tps") == 0) {
            NEED_VALUE();
            if (fr_cli_parse_number(s, val, &a->run.sim_tps))
                return FR_EXIT_USAGE;
        } else if (strcmp(s, "--out") == 0) {
            NEED_VALUE();
            if (!*val)
                return fr_cli_usage_error("%s", "--out needs a directory name, got ''");
            a->run.out_dir = val;
        } else if (strcmp(s, "--json") == 0) {
            a->json = true;
        } else if (strcmp(s, "--trace") == 0 || strcmp(s, "--html") == 0) {
            NEED_VALUE();
            *(s[2] == 't' ? &a->trace_file : &a->html_file) = val;
        } else if (strcmp(s, "--policy") == 0) {
            NEED_VALUE();
            a->run.policy = val;
        } else if (strcmp(s, "--endpoints") == 0) {
            NEED_VALUE();
            a->endpoints[a->nendpoints++] = val;
        } else if (strcmp(s, "--var") == 0) {
            NEED_VALUE();
            a->vars[a->nvars++] = val;
        } else if (strcmp(s, "--budget") == 0) {
            NEED_VALUE();
            if (fr_cli_parse_number(s, val, &a->run.budget_usd))
                return FR_EXIT_USAGE;
            a->run.has_budget = true;
        } else if (strcmp(s, "--no-cache") == 0) {
            a->run.no_cache = true;
        } else if (strcmp(s, "--fresh") == 0) {
            NEED_VALUE();
            a->fresh[a->nfresh++] = val;
        } else if (strcmp(s, "--approve") == 0) {
            NEED_VALUE();
            a->approve[a->napprove++] = val;
        } else if (strcmp(s, "--approve-all") == 0) {
            a->run.approve_all = true;
        } else if (strcmp(s, "--task") == 0) {
            NEED_VALUE();
            a->tasks[a->ntasks++] = val;
        } else if (strcmp(s, "--allow-save-anywhere") == 0) {
            a->save_anywhere = true;
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
        } else if (strcmp(s, "--seed") == 0) {
            NEED_VALUE();
            char *end = NULL;
            errno = 0;
            long long seed = strtoll(val, &end, 10);
            if (!*val || *end || errno)
                return fr_cli_usage_error("--seed wants an integer, not '%s'", val);
            a->run.has_seed = true;
            a->run.seed = seed;
        } else if (strcmp(s, "--log-level") == 0) {
            NEED_VALUE();
            int lvl = fr_log_level_parse(val);
            if (lvl < 0)
                return fr_cli_usage_error(
                    "unknown log level '%s' (error, warn, info, debug, trace)", val);
            fr_log_set_level((fr_log_level)lvl);
        } else if (strcmp(s, "--log-format") == 0) {
            NEED_VALUE();
            if (strcmp(val, "json") == 0)
                fr_log_set_format(FR_LOG_JSON);
            else if (strcmp(val, "text") == 0)
                fr_log_set_format(FR_LOG_TEXT);
            else
                return fr_cli_usage_error("unknown log format '%s' (text, json)", val);
        } else if (strcmp(s, "-v") == 0 || strcmp(s, "--verbose") == 0) {
            fr_log_set_level(FR_LOG_INFO);
        } else if (strcmp(s, "-q") == 0 || strcmp(s, "--quiet") == 0) {
            a->quiet = true;
        } else if (strcmp(s, "--no-color") == 0) {
            a->no_color = true;
        } else if (s[0] == '-' && s[1]) {
            return fr_cli_usage_error("unknown option '%s'", s);
        } else if (!a->workflow) {
            if (!cmd && looks_like_command(s))
                return unknown_command(s);
            a->workflow = s;
        } else {
            return fr_cli_usage_error("unexpected argument '%s' (one workflow file per run)", s);
        }
#undef NEED_VALUE
    }
    if (!a->workflow)
        return fr_cli_usage_error("%s", "no workflow file given");
    a->run.fresh = a->fresh;
    a->run.nfresh = a->nfresh;
    a->run.approve = a->approve;
    a->run.napprove = a->napprove;
    return -1;
}

static void print_groups(const char *title, const json_t *groups)
{
    const char *k;
    const json_t *g;
    printf("  %-12s", title);
    json_object_foreach((json_t *)groups, k, g)
    {
        char usd[FR_USD_LEN];
        printf(" %s %s (%lld)", k,
               fr_usd_cost(usd, json_number_value(json_object_get(g, "cost_usd"))),
               (long long)json_integer_value(json_object_get(g, "attempts")));
    }
    printf("\n");
}

/* flowrun spend: the ledger by month or day, endpoint, tier, workflow, user
 * and host. */
static int spend_main(int argc, char **argv)
{
    const char *month = NULL, *day = NULL, *state_dir = NULL;
    bool json = false, sim = false, daily = false;
    char today[FR_STORE_DAY_LEN];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--month") == 0 && i + 1 < argc)
            month = argv[++i];
        else if (strcmp(argv[i], "--day") == 0 && i + 1 < argc)
            day = argv[++i];
        else if (strcmp(argv[i], "--daily") == 0)
            daily = true;
        else if (strcmp(argv[i], "--state") == 0 && i + 1 < argc)
            state_dir = argv[++i];
        else if (strcmp(argv[i], "--sim") == 0)
            sim = true;
        else
            return fr_cli_usage_error("spend: unexpected argument '%s'", argv[i]);
    }
    if ((month != NULL) + (day != NULL) + daily > 1)
        return fr_cli_usage_error("%s", "spend: one of --month, --day and --daily");
    if (day && strcmp(day, "today") == 0) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(today, sizeof today, "%Y-%m-%d", &tm);
        day = today;
    }
    daily = daily || day;
    const char *key = daily ? "day" : "month", *list = daily ? "days" : "months";
    char *path = fr_cli_state_path(state_dir, sim), *shown = fr_cli_state_shown(path);
    fr_store *st = NULL;
    json_t *out = NULL;
    fr_error err = {0};
    char msg[1600];
    int code = 0;
    /* Read-only: a report never creates a ledger, a folder or a file. */
    int rc = fr_store_open_readonly(path, &st, &err);
    if (rc == FR_ENOENT) {
        if (json)
            printf("{\n  \"%s\": []\n}\n", list);
        else
            printf("no spend recorded: no ledger at %s (--state DIR or URL, else $FLOWRUN_STATE, "
                   "else ./.flowrun)\n",
                   shown);
        goto cleanup;
    }
    if (rc == FR_OK)
        rc = daily ? fr_store_spend_days(st, day, &out, &err)
                   : fr_store_spend(st, month, &out, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = err.code == FR_EINVAL ? FR_EXIT_USAGE : FR_EXIT_IOERR;
        goto cleanup;
    }
    if (json) {
        json_dumpf(out, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        goto cleanup;
    }
    size_t i;
    json_t *m;
    if (json_array_size(json_object_get(out, list)) == 0)
        printf("no spend recorded in %s\n", shown);
    json_array_foreach(json_object_get(out, list), i, m)
    {
        const json_t *tok = json_object_get(m, "tokens");
        char usd[FR_USD_LEN];
        printf("%s: %s in %lld attempts (%lld in, %lld out tokens; %lld estimated)\n",
               json_string_value(json_object_get(m, key)),
               fr_usd_cost(usd, json_number_value(json_object_get(m, "cost_usd"))),
               (long long)json_integer_value(json_object_get(m, "attempts")),
               (long long)json_integer_value(json_object_get(tok, "input")),
               (long long)json_integer_value(json_object_get(tok, "output")),
               (long long)json_integer_value(json_object_get(m, "usage_estimated")));
        print_groups("by tier", json_object_get(m, "by_tier"));
        print_groups("by endpoint", json_object_get(m, "by_endpoint"));
        print_groups("by workflow", json_object_get(m, "by_workflow"));
        print_groups("by user", json_object_get(m, "by_user"));
        print_groups("by host", json_object_get(m, "by_host"));
    }
cleanup:
    json_decref(out);
    fr_store_close(st);
    free(shown);
    free(path);
    return code;
}

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
        return FR_EXIT_USAGE;
    }
    fputs("usage: flowrun policy list | flowrun policy show NAME\n", stderr);
    fputs(policy_usage, stderr);
    return FR_EXIT_USAGE;
}

/* A task name given to option `opt` (--fresh, --approve) that names no
 * task of the workflow is a typo: a usage error with the closest task name,
 * or the task names when none is close. */
static int check_task_names(const char *opt, const char *const *given, size_t ngiven,
                            const fr_workflow *wf)
{
    const char **names = fr_xcalloc(wf->ntasks + 1, sizeof *names);
    for (size_t t = 0; t < wf->ntasks; t++)
        names[t] = wf->tasks[t].name;
    int code = -1;
    for (size_t i = 0; i < ngiven && code < 0; i++) {
        bool found = false;
        for (size_t t = 0; t < wf->ntasks && !found; t++)
            found = strcmp(names[t], given[i]) == 0;
        if (found)
            continue;
        fprintf(stderr, "flowrun: %s: the workflow has no task '%s'", opt, given[i]);
        const char *s = fr_suggest(given[i], names, wf->ntasks);
        if (s) {
            fprintf(stderr, "; did you mean '%s'?", s);
        } else {
            fprintf(stderr, " (tasks:");
            for (size_t t = 0; t < wf->ntasks && t < 10; t++)
                fprintf(stderr, "%s %s", t ? "," : "", names[t]);
            fprintf(stderr, "%s)", wf->ntasks > 10 ? ", ..." : "");
        }
        fprintf(stderr, "\nTry 'flowrun help run'.\n");
        code = FR_EXIT_USAGE;
    }
    free(names);
    return code;
}

/* --sim: flowrun-sim in this process, on the run's loop. */
static int standin_start(void *ud, struct uv_loop_s *loop, const fr_standin_model *models, size_t n,
                         char **base_urls, fr_error *err)
{
    fr_sim **sim = ud;
    *sim = fr_sim_new(loop, "127.0.0.1", 0, err);
    if (!*sim)
        return err->code ? err->code : FR_EIO;
    for (size_t i = 0; i < n; i++) {
        fr_sim_model m = {.name = models[i].name,
                          .max_concurrent = models[i].max_concurrent,
                          .latency_ms = models[i].latency_ms,
                          .tokens_per_s = models[i].tokens_per_s};
        fr_sim_set_model(*sim, &m);
        /* Each protocol's base URL as its real servers have it. */
        base_urls[i] = fr_xasprintf("http://127.0.0.1:%d%s", fr_sim_port(*sim),
                                    models[i].protocol == FR_PROTO_OPENAI ? "/v1" : "");
    }
    return FR_OK;
}

static void standin_stop(void *ud)
{
    fr_sim **sim = ud;
    fr_sim_free(*sim);
    *sim = NULL;
}

/* Loads the workflow named in argv[first..] and runs or plans it. */
static int run_workflow(int argc, char **argv, int first, const command *cmd, bool plan)
{
    args a = {0};
    fr_workflow *wf = NULL;
    fr_run *run = NULL;
    fr_error err = {0};
    char msg[1600];
    int code = parse_args(argc, argv, first, cmd, &a);
    if (code >= 0)
        goto cleanup;
    a.run.plan = plan;
    fr_sim *sim = NULL;
    fr_standin standin = {.ud = &sim, .start = standin_start, .stop = standin_stop};
    a.run.standin = &standin;

    fr_load_opts lo = {
        .endpoints_path = a.nendpoints ? a.endpoints[0] : NULL,
        .more_endpoints = a.nendpoints > 1 ? a.endpoints + 1 : NULL,
        .nmore_endpoints = a.nendpoints > 1 ? a.nendpoints - 1 : 0,
        .vars = a.vars,
        .nvars = a.nvars,
        .allow_save_anywhere = a.save_anywhere,
        .warn = fr_cli_load_warning,
        .keep_compiled = !plan, /* a plan writes nothing */
    };
    int rc = fr_workflow_load(a.workflow, &lo, &wf, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = fr_cli_load_exit(rc);
        goto cleanup;
    }
    code = check_task_names("--fresh", a.fresh, a.nfresh, wf);
    if (code < 0)
        code = check_task_names("--approve", a.approve, a.napprove, wf);
    if (code >= 0)
        goto cleanup;
    if (fr_workflow_subset(wf, a.tasks, a.ntasks, &err) != FR_OK) {
        fprintf(stderr, "flowrun: %s\nTry 'flowrun help %s'.\n",
                fr_error_format(&err, msg, sizeof msg), plan ? "plan" : "run");
        code = FR_EXIT_USAGE;
        goto cleanup;
    }
    /* Progress (engine/progress): the live block on a terminal, else plain
     * lines at info level; --progress forces the plain lines. */
    a.run.live = !a.run.progress && !a.quiet && !a.run.plan && fr_live_possible();
    if (!a.run.progress && !a.run.live && fr_log_get_level() >= FR_LOG_INFO) {
        a.run.progress = a.run.progress_fallback = true;
        fr_progress_set_level(FR_LOG_INFO);
    }
    rc = fr_run_new(wf, &a.run, &run, &err);
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = rc == FR_ECYCLE || rc == FR_EWORKFLOW                   ? FR_EXIT_INVALID
               : rc == FR_ESTORE || rc == FR_ESTOREVER || rc == FR_EIO ? FR_EXIT_IOERR
                                                                       : FR_EXIT_CONFIG;
        goto cleanup;
    }
    code = fr_run_execute(run);
#ifdef __GLIBC__
    /* The run's transfers are freed, but glibc keeps their pages: hand
     * them back before the report's text is rendered and stored, or its
     * buffers come on top of them and set the process's peak RSS. */
    malloc_trim(0);
#endif
    if (a.run.plan) {
        if (!a.json)
            fr_report_plan(fr_run_results(run), stdout);
    } else if (!a.quiet) {
        bool color = !a.no_color && !getenv("NO_COLOR") && isatty(STDERR_FILENO);
        fr_report_summary(fr_run_results(run), stderr, color);
    }
    if (code == 4)
        fr_cli_how_to_answer(fr_run_results(run), a.workflow, a.run.state_dir);
    if ((a.trace_file || a.html_file) &&
        fr_html_save(fr_run_results(run), a.trace_file, a.html_file) != FR_OK)
        code = FR_EXIT_IOERR;
    /* The report is rendered once, compact: the store keeps that text (half
     * the bytes), and --json prints it indented as it goes out, the bytes
     * `flowrun report --json` renders from the stored text. */
    char *compact =
        !a.run.plan || a.json ? fr_cli_report_json_text(fr_run_results(run), true) : NULL;
    if (!a.run.plan)
        code = fr_cli_store_report(fr_run_results(run), fr_run_books(run), a.run.state_dir, compact,
                                   code);
    if (a.json) {
        /* Indented from the compact text as it goes out: never whole. */
        if (!compact || fr_report_print_text(compact, stdout) != FR_OK || fflush(stdout) != 0) {
            /* A script that reads the report must not take silence for it. */
            fprintf(stderr, "flowrun: cannot write the JSON report to standard output: %s\n",
                    strerror(errno ? errno : EIO));
            code = FR_EXIT_IOERR;
        }
    }
    free(compact);
cleanup:
    fr_run_free(run);
    fr_workflow_free(wf);
    free(a.vars);
    free(a.fresh);
    free(a.approve);
    free(a.tasks);
    free(a.endpoints);
    return code;
}

/* flowrun run WORKFLOW.lua, and flowrun WORKFLOW.lua (no command word). */
static int run_main(int argc, char **argv)
{
    bool named = argc > 1 && strcmp(argv[1], "run") == 0;
    return run_workflow(argc, argv, named ? 2 : 1, named ? find_command("run") : NULL, false);
}

/* flowrun plan WORKFLOW.lua */
static int plan_main(int argc, char **argv)
{
    return run_workflow(argc, argv, 2, find_command("plan"), true);
}

/* Whether a command's arguments ask for its help. */
static bool asks_help(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_GUARD_ARG) == 0)
        return fr_guard_main(argc, argv);
    /* A peer that hangs up must fail one transfer, never kill the process. */
    signal(SIGPIPE, SIG_IGN);
    /* The soft descriptor limit (often 1024) up to the hard one: each
     * transfer holds sockets, and the scheduler sizes itself by what is
     * left (engine/util/fdlimit.h). */
    fr_fd_raise_limit();
#ifdef __GLIBC__
    /* A run allocates and frees in bursts each loop turn: with glibc's
     * default (128 KiB of padding and trimming) the heap's top moves by a
     * brk() call about once a task. */
    mallopt(M_TOP_PAD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
    const command *c = argc > 1 ? find_command(argv[1]) : NULL;
    if (!c)
        return run_main(argc, argv); /* flowrun WORKFLOW.lua [options] */
    if (asks_help(argc, argv)) {
        print_command_help(c, stdout);
        return 0;
    }
    return c->main(argc, argv);
}
