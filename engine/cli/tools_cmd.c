/* `flowrun tools` (engine/cli/tools_cmd.h). */

#include "engine/cli/tools_cmd.h"

#include "dsl/workflow.h"
#include "engine/cli/cli.h"
#include "engine/toolset.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
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

void fr_cli_tools_help(FILE *f)
{
    fputs("Lists every tool the workflow's agents may use: its name, where it comes\n"
          "from (an MCP server, Lua, a command), its description and the schema of\n"
          "its arguments. Starts every MCP server of the workflow to ask it, then\n"
          "stops them; runs no tool and sends nothing to a model.\n"
          "\n"
          "options:\n"
          "  --json                print the tools as a JSON array on stdout\n"
          "  --var NAME=VALUE      set a workflow variable (repeatable)\n"
          "  --endpoints FILE      endpoints file, as for run (repeatable)\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 listed, 2 usage, 65 invalid workflow (a pattern naming no\n"
          "tool), 78 an MCP server that would not start or list its tools.\n"
          "Documentation: docs/tools.md (flowrun tools).\n",
          f);
}

/* How `flowrun tools` waits for its tool set to start. */
typedef struct tools_wait {
    bool done;
    int rc;
    fr_error err;
} tools_wait;

static void tools_ready(void *ud, int rc, const fr_error *err)
{
    tools_wait *w = ud;
    w->done = true;
    w->rc = rc;
    if (err)
        w->err = *err;
}

/* Prints `text` (borrowed) indented by `indent`, one line at a time. */
static void print_indented(const char *text, const char *indent)
{
    while (*text) {
        const char *eol = strchr(text, '\n');
        int n = eol ? (int)(eol - text) : (int)strlen(text);
        printf("%s%.*s\n", indent, n, text);
        text += n + (eol ? 1 : 0);
    }
}

/* `flowrun tools`' text: the servers and their revisions, then each tool. */
static void print_tools(const fr_workflow *wf, const json_t *tools)
{
    size_t i;
    const json_t *t;
    for (size_t s = 0; s < wf->nmcps; s++) {
        size_t n = 0;
        const char *rev = NULL;
        json_array_foreach(tools, i, t)
        {
            const char *srv = json_string_value(json_object_get(t, "server"));
            if (srv && strcmp(srv, wf->mcps[s].name) == 0) {
                n++;
                rev = json_string_value(json_object_get(t, "revision"));
            }
        }
        printf("MCP server %s: %zu tool%s%s%s\n", wf->mcps[s].name, n, n == 1 ? "" : "s",
               rev ? ", revision " : "", rev ? rev : "");
    }
    if (json_array_size(tools) == 0)
        printf("the workflow declares no tools\n");
    json_array_foreach(tools, i, t)
    {
        const char *srv = json_string_value(json_object_get(t, "server"));
        const char *desc = json_string_value(json_object_get(t, "description"));
        char *schema = json_dumps(json_object_get(t, "parameters"), JSON_COMPACT);
        printf("%s%s (%s%s%s)\n", i || wf->nmcps ? "\n" : "",
               json_string_value(json_object_get(t, "name")),
               json_string_value(json_object_get(t, "source")), srv ? " server " : "",
               srv ? srv : "");
        if (desc && *desc)
            print_indented(desc, "  ");
        printf("  arguments: %s\n", schema ? schema : "{}");
        free(schema);
    }
}

/* flowrun tools WORKFLOW.lua [--json]: starts every MCP server of the
 * workflow (bounded by their start timeouts), lists every tool, stops them. */
int fr_cli_tools_main(int argc, char **argv)
{
    const char *path = NULL;
    const char **vars = fr_xcalloc((size_t)argc, sizeof *vars);
    const char **endpoints = fr_xcalloc((size_t)argc, sizeof *endpoints);
    size_t nvars = 0, nendpoints = 0;
    bool json = false;
    int code = 0;
    for (int i = 2; i < argc && code == 0; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--var") == 0 && i + 1 < argc)
            vars[nvars++] = argv[++i];
        else if (strcmp(argv[i], "--endpoints") == 0 && i + 1 < argc)
            endpoints[nendpoints++] = argv[++i];
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else
            code = fr_cli_usage_error("tools: unexpected argument '%s'", argv[i]);
    }
    if (code == 0 && !path)
        code = fr_cli_usage_error("%s", "tools: no workflow file (flowrun tools WORKFLOW.lua)");
    fr_workflow *wf = NULL;
    char msg[1600];
    uv_loop_t loop;
    bool looping = false;
    fr_http *http = NULL;
    fr_toolset *ts = NULL;
    if (code != 0 ||
        (code = fr_cli_load_workflow(path, endpoints, nendpoints, vars, nvars, &wf)) != 0)
        goto cleanup;
    uv_loop_init(&loop);
    looping = true;
    http = fr_http_new(&loop);
    ts = fr_toolset_new(&loop, http, wf);
    tools_wait w = {0};
    fr_toolset_start(ts, true, tools_ready, &w);
    while (!w.done && uv_run(&loop, UV_RUN_ONCE))
        ;
    if (!w.done || w.rc != FR_OK) {
        fprintf(stderr, "flowrun: %s (%s)\n", fr_error_format(&w.err, msg, sizeof msg),
                fr_err_name(w.rc));
        code = w.rc == FR_EWORKFLOW ? FR_EXIT_INVALID : FR_EXIT_CONFIG;
        goto cleanup;
    }
    json_t *tools = fr_toolset_describe(ts);
    if (json) {
        json_dumpf(tools, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        print_tools(wf, tools);
    }
    json_decref(tools);
cleanup:
    fr_toolset_free(ts);
    fr_http_free(http);
    if (looping) {
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    fr_workflow_free(wf);
    free(vars);
    free(endpoints);
    return code;
}
