/* `flowrun endpoints` (engine/cli/endpoints_cmd.h). */

#include "engine/cli/endpoints_cmd.h"

#include "dsl/workflow.h"
#include "engine/cli/cli.h"
#include "engine/endpoint.h"
#include "engine/http.h"
#include "engine/probe.h"
#include "engine/util/err.h"
#include "engine/util/kinds.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"
#include "engine/util/redact.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

enum { EXIT_UNUSABLE = 1 };

void fr_cli_endpoints_help(FILE *f)
{
    fputs("Lists the endpoints a run of WORKFLOW would have: the workflow's own merged\n"
          "with the endpoints files, as a run merges them (--endpoints FILE, else\n"
          "./endpoints.lua, else $XDG_CONFIG_HOME/flowrun/endpoints.lua). Without a\n"
          "workflow, the endpoints files alone. For each: tier, protocol, model, URL\n"
          "(without credentials or query), capacity (max_parallel), price per million\n"
          "tokens in/out, context window and the name of its key variable (never the\n"
          "key; 'set' or 'missing').\n"
          "\n"
          "options:\n"
          "  --check               ask every endpoint at once: reachable, its model in\n"
          "                        the server's list (GET /v1/models; Ollama /api/tags\n"
          "                        and /api/ps), its key set and accepted (401/403 is a\n"
          "                        refused key); sends no prompt, costs nothing\n"
          "  --probe               --check, and a one-token request to each endpoint for\n"
          "                        its time to first token: on a paid endpoint this costs\n"
          "                        a fraction of a cent\n"
          "  --timeout S           bound on each request of --check (default 5)\n"
          "  --json                print a JSON array on stdout\n"
          "  --endpoints FILE      endpoints file, as for run (repeatable)\n"
          "  --var NAME=VALUE      set a workflow variable (repeatable)\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 listed (with --check: every endpoint usable), 1 with --check an\n"
          "endpoint is unusable (unreachable, key missing or refused, model not listed,\n"
          "the one-token request failed), 2 usage, 65 invalid workflow, 78 configuration\n"
          "error (no endpoints).\n"
          "Documentation: docs/cli.md (flowrun endpoints), docs/providers.md.\n",
          f);
}

/* Whether any endpoints file a run without WORKFLOW would read exists. */
static bool have_endpoints_file(size_t nendpoints)
{
    if (nendpoints || access("endpoints.lua", R_OK) == 0)
        return true;
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    char *path = xdg && xdg[0] == '/'
                     ? fr_xasprintf("%s/flowrun/endpoints.lua", xdg)
                     : fr_xasprintf("%s/.config/flowrun/endpoints.lua", home ? home : "");
    bool ok = access(path, R_OK) == 0;
    free(path);
    return ok;
}

/* Loads the endpoints files alone: a one-task stand-in workflow in a
 * temporary file, loaded like any workflow (so the merge is the run's). */
static int load_files_only(const char **endpoints, size_t nendpoints, fr_workflow **wf)
{
    if (!have_endpoints_file(nendpoints)) {
        fprintf(stderr, "flowrun: endpoints: no endpoints file: give --endpoints FILE or a "
                        "workflow, or write ./endpoints.lua or "
                        "$XDG_CONFIG_HOME/flowrun/endpoints.lua\n");
        return FR_EXIT_CONFIG;
    }
    const char *tmp = getenv("TMPDIR");
    char *path = fr_xasprintf("%s/flowrun-endpoints-XXXXXX.lua", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemps(path, 4);
    int code = 0;
    static const char text[] = "agent \"endpoints\" {}\n"
                               "task \"endpoints\" { agent = \"endpoints\", prompt = \".\" }\n";
    if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1)) {
        fprintf(stderr, "flowrun: endpoints: cannot write a temporary file in %s\n",
                tmp && *tmp ? tmp : "/tmp");
        code = FR_EXIT_IOERR;
    }
    if (fd >= 0)
        close(fd);
    if (code == 0)
        code = fr_cli_load_workflow(path, endpoints, nendpoints, NULL, 0, wf);
    if (fd >= 0)
        unlink(path);
    free(path);
    return code;
}

/* What is known of endpoint `e` without asking it (a new object). */
static json_t *describe(const fr_endpoints *eps, size_t e)
{
    const fr_endpoint_spec *s = fr_ep_spec(eps, e);
    char *url = fr_probe_public_url(fr_ep_url(eps, e));
    json_t *o =
        json_pack("{s:s,s:s,s:s,s:s,s:s?,s:i,s:I}", "name", s->name, "tier", fr_tier_name(s->tier),
                  "protocol", fr_protocol_name(s->protocol), "model", fr_ep_model(eps, e), "url",
                  url, "max_parallel", s->max_parallel, "context", (json_int_t)s->context);
    free(url);
    json_object_set_new(o, "price",
                        s->price.set
                            ? json_pack("{s:f,s:f,s:f}", "input", s->price.input, "output",
                                        s->price.output, "cached_input", s->price.cached_input)
                            : json_null());
    json_object_set_new(o, "key_env", s->api_key_env ? json_string(s->api_key_env) : json_null());
    if (s->api_key_env)
        json_object_set_new(o, "key", json_string(fr_ep_key(eps, e) ? "set" : "missing"));
    json_object_set_new(o, "file", json_string(s->file ? s->file : ""));
    json_object_set_new(o, "line", json_integer(s->line));
    return o;
}

static const char *str(const json_t *o, const char *k)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v ? v : "-";
}

/* The table: one row per endpoint, with --check its findings and problems. */
static void print_table(const json_t *rows, bool check)
{
    printf("%-16s %-6s %-9s %-20s %-32s %4s %-15s %8s %-26s%s\n", "NAME", "TIER", "PROTOCOL",
           "MODEL", "URL", "CAP", "PRICE IN/OUT", "CONTEXT", "KEY",
           check ? " STATUS   MODEL?   TTFT" : "");
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r)
    {
        char in[FR_USD_LEN], out[FR_USD_LEN], price[2 * FR_USD_LEN + 2] = "-";
        const json_t *pr = json_object_get(r, "price");
        if (json_is_object(pr))
            snprintf(price, sizeof price, "%s/%s",
                     fr_usd_cap(in, json_number_value(json_object_get(pr, "input"))),
                     fr_usd_cap(out, json_number_value(json_object_get(pr, "output"))));
        char ctx[24] = "-";
        json_int_t c = json_integer_value(json_object_get(r, "context"));
        if (c > 0)
            snprintf(ctx, sizeof ctx, "%lld", (long long)c);
        const json_t *ck = json_object_get(r, "check");
        char key[160] = "-";
        const char *state = ck ? str(ck, "key") : str(r, "key");
        if (json_is_string(json_object_get(r, "key_env")))
            snprintf(key, sizeof key, "%s %s", str(r, "key_env"), state);
        printf("%-16s %-6s %-9s %-20s %-32s %4lld %-15s %8s %-26s", str(r, "name"), str(r, "tier"),
               str(r, "protocol"), str(r, "model"), str(r, "url"),
               (long long)json_integer_value(json_object_get(r, "max_parallel")), price, ctx, key);
        if (ck) {
            const json_t *mp = json_object_get(ck, "model_present");
            char ttft[32] = "-";
            if (json_is_number(json_object_get(ck, "ttft_ms")))
                snprintf(ttft, sizeof ttft, "%.0fms",
                         json_number_value(json_object_get(ck, "ttft_ms")));
            printf("  %-7s %-8s %s",
                   json_is_true(json_object_get(ck, "usable")) ? "ok" : "UNUSABLE",
                   json_is_true(mp)    ? "listed"
                   : json_is_false(mp) ? "MISSING"
                                       : "unknown",
                   ttft);
        }
        putchar('\n');
        size_t k;
        const json_t *pb;
        json_array_foreach(json_object_get(ck, "problems"), k, pb)
            printf("  %s: %s\n", str(r, "name"), json_string_value(pb));
    }
}

typedef struct wait_state {
    bool done;
} wait_state;

static void probe_done(void *ud)
{
    ((wait_state *)ud)->done = true;
}

/* Runs the checks on a loop of its own and adds each endpoint's "check". */
static void run_checks(const fr_endpoints *eps, json_t *rows, const fr_probe_opts *po)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    fr_http *http = fr_http_new(&loop);
    wait_state w = {0};
    fr_probe *p = fr_probe_start(http, eps, po, probe_done, &w);
    while (!w.done && uv_run(&loop, UV_RUN_ONCE))
        ;
    for (size_t e = 0; e < json_array_size(rows); e++)
        json_object_set_new(json_array_get(rows, e), "check", fr_probe_result(p, e));
    fr_probe_free(p);
    fr_http_free(http);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

int fr_cli_endpoints_main(int argc, char **argv)
{
    const char *path = NULL;
    const char **vars = fr_xcalloc((size_t)argc, sizeof *vars);
    const char **endpoints = fr_xcalloc((size_t)argc, sizeof *endpoints);
    size_t nvars = 0, nendpoints = 0;
    bool json = false, check = false;
    fr_probe_opts po = {0};
    double timeout_s = 5;
    int code = 0;
    fr_workflow *wf = NULL;
    fr_endpoints *eps = NULL;
    json_t *rows = NULL;
    for (int i = 2; i < argc && code == 0; i++) {
        const char *s = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0) {
            fr_cli_endpoints_help(stdout);
            goto cleanup;
        } else if (strcmp(s, "--json") == 0)
            json = true;
        else if (strcmp(s, "--check") == 0)
            check = true;
        else if (strcmp(s, "--probe") == 0)
            check = po.one_token = true;
        else if (strcmp(s, "--timeout") == 0 && has_val) {
            if (fr_cli_parse_number("--timeout", argv[++i], &timeout_s) != 0 || timeout_s <= 0)
                code = fr_cli_usage_error("%s", "endpoints: --timeout expects seconds > 0");
        } else if (strcmp(s, "--var") == 0 && has_val)
            vars[nvars++] = argv[++i];
        else if (strcmp(s, "--endpoints") == 0 && has_val)
            endpoints[nendpoints++] = argv[++i];
        else if (s[0] != '-' && !path)
            path = s;
        else
            code = fr_cli_usage_error("endpoints: unexpected argument '%s'", s);
    }
    po.timeout_ms = (long)(timeout_s * 1000);
    if (code != 0)
        goto cleanup;
    code = path ? fr_cli_load_workflow(path, endpoints, nendpoints, vars, nvars, &wf)
                : load_files_only(endpoints, nendpoints, &wf);
    if (code != 0)
        goto cleanup;
    eps = fr_endpoints_new(wf, false);
    rows = json_array();
    for (size_t e = 0; e < fr_endpoints_count(eps); e++)
        json_array_append_new(rows, describe(eps, e));
    if (check)
        run_checks(eps, rows, &po);
    if (json) {
        char *text = json_dumps(rows, JSON_INDENT(2));
        char *safe = fr_redact(text);
        printf("%s\n", safe);
        free(safe);
        free(text);
    } else {
        print_table(rows, check);
    }
    size_t i;
    const json_t *r;
    json_array_foreach(rows, i, r) if (check && !json_is_true(json_object_get(
                                                    json_object_get(r, "check"), "usable"))) code =
        EXIT_UNUSABLE;
cleanup:
    json_decref(rows);
    fr_endpoints_free(eps);
    fr_workflow_free(wf);
    free(vars);
    free(endpoints);
    return code;
}
