/* `flowrun mcp` (engine/cli/mcp_cmd.h). */

#include "engine/cli/mcp_cmd.h"

#include "engine/cli/cli.h"
#include "engine/mcpd/http_serve.h"
#include "engine/mcpd/mcpd.h"
#include "engine/mcpd/stdio_serve.h"
#include "engine/store/pgurl.h"
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

void fr_cli_mcp_help(FILE *f)
{
    fputs("Serves flowrun's tools to an MCP client (Claude Code, Cursor, an agent): over\n"
          "standard input and output, newline-delimited JSON-RPC, speaking the 2026-07-28\n"
          "and 2025-11-25 revisions. Tools: run_task, run_workflow, plan_workflow, spend,\n"
          "approve; each call runs a child flowrun with the options below. Logs go to\n"
          "stderr. The server ends when its input ends, or on SIGINT or SIGTERM, after\n"
          "stopping the runs in flight.\n"
          "\n"
          "options:\n"
          "  --endpoints FILE      endpoints file for every run (repeatable)\n"
          "  --policy NAME|FILE    routing policy for every run\n"
          "  --state DIR           state directory: runs, the cost ledger, approvals\n"
          "  --sim                 every run is a rehearsal on the built-in simulator\n"
          "  --work-dir DIR        where run_task's workflows and the runs' outputs go\n"
          "                        (default STATE/mcp, STATE as for --state)\n"
          "  --inline-max BYTES    longer outputs come back as file paths (default 8192)\n"
          "  --http ADDR:PORT      serve Streamable HTTP at http://ADDR:PORT/mcp instead of\n"
          "                        stdio (ADDR an IP literal, [::1] for IPv6; PORT 0 picks\n"
          "                        a free one); the URL is printed on stderr\n"
          "  --token-env VAR       the bearer token every HTTP request must carry is read\n"
          "                        from $VAR (default FLOWRUN_MCP_TOKEN); required when\n"
          "                        ADDR is not loopback, and of requests whenever set\n"
          "  --log-level LEVEL     error, warn (default), info, debug, trace\n"
          "  -h, --help            this help\n"
          "\n"
          "Add it to Claude Code: claude mcp add flowrun -- flowrun mcp\n"
          "exit codes: 0 stopped cleanly, 2 usage, 74 the work directory or standard\n"
          "input/output cannot be used or the address cannot be bound, 78 --http on a\n"
          "non-loopback address without the token variable set.\n"
          "Documentation: docs/mcp.md.\n",
          f);
}

/* ---- flowrun mcp ---- */

/* `flowrun mcp`'s options: what every child run gets, and the server's. */
typedef struct mcp_args {
    const char **child; /* options passed on to every child flowrun */
    size_t nchild;
    const char *state_dir;
    const char *work_dir;
    size_t inline_max;
    const char *http;      /* --http ADDR:PORT, NULL for stdio */
    const char *token_env; /* --token-env VAR */
} mcp_args;

/* A running `flowrun mcp`: the loop, the core, its transport, signals. */
typedef struct mcp_server {
    uv_loop_t loop;
    fr_mcpd *d;
    fr_mcpd_stdio *stdio;
    fr_mcpd_http *http;
    uv_signal_t sigint, sigterm;
    bool stopping;
} mcp_server;

static int parse_mcp_args(int argc, char **argv, mcp_args *a)
{
    a->child = fr_xcalloc((size_t)argc + 1, sizeof *a->child);
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool passed = strcmp(s, "--endpoints") == 0 || strcmp(s, "--policy") == 0 ||
                      strcmp(s, "--state") == 0;
        if ((passed || strcmp(s, "--work-dir") == 0 || strcmp(s, "--inline-max") == 0 ||
             strcmp(s, "--log-level") == 0 || strcmp(s, "--http") == 0 ||
             strcmp(s, "--token-env") == 0) &&
            !val)
            return fr_cli_usage_error("option %s needs a value", s);
        if (passed) {
            a->child[a->nchild++] = s;
            a->child[a->nchild++] = val;
            if (strcmp(s, "--state") == 0)
                a->state_dir = val;
            i++;
        } else if (strcmp(s, "--sim") == 0) {
            a->child[a->nchild++] = s;
        } else if (strcmp(s, "--http") == 0) {
            a->http = argv[++i];
        } else if (strcmp(s, "--token-env") == 0) {
            a->token_env = argv[++i];
        } else if (strcmp(s, "--work-dir") == 0) {
            a->work_dir = argv[++i];
        } else if (strcmp(s, "--inline-max") == 0) {
            char *end;
            long long v = strtoll(val, &end, 10);
            if (!*val || *end || v < 1)
                return fr_cli_usage_error("--inline-max expects a number of bytes >= 1, got '%s'",
                                          val);
            a->inline_max = (size_t)v;
            i++;
        } else if (strcmp(s, "--log-level") == 0) {
            int lvl = fr_log_level_parse(val);
            if (lvl < 0)
                return fr_cli_usage_error(
                    "unknown log level '%s' (error, warn, info, debug, trace)", val);
            fr_log_set_level((fr_log_level)lvl);
            i++;
        } else {
            return fr_cli_usage_error("mcp: unexpected argument '%s'", s);
        }
    }
    return -1;
}

static void mcp_closed(uv_handle_t *h)
{
    (void)h;
}

/* Every child ended: the last handles go and uv_run returns. */
static void mcp_down(void *ud)
{
    mcp_server *m = ud;
    uv_close((uv_handle_t *)&m->sigint, mcp_closed);
    uv_close((uv_handle_t *)&m->sigterm, mcp_closed);
}

/* End of input or a signal: close the transport, stop the runs in flight. */
static void mcp_stop(void *ud)
{
    mcp_server *m = ud;
    if (m->stopping)
        return;
    m->stopping = true;
    if (m->stdio)
        fr_mcpd_stdio_close(m->stdio, NULL, NULL);
    m->stdio = NULL;
    if (m->http) /* frees its peers at once, its handles on the loop */
        fr_mcpd_http_close(m->http, NULL, NULL);
    m->http = NULL;
    fr_mcpd_shutdown(m->d, mcp_down, m);
}

static void mcp_signal(uv_signal_t *h, int signum)
{
    fr_log_event(FR_LOG_INFO, "mcpd", "mcpd.signal", "signal=%d stopping", signum);
    mcp_stop(h->data);
}

/* Splits `--http ADDR:PORT` ("[::1]:PORT" for IPv6) into addr (size
 * `n`) and port; false when it is not that. */
static bool split_http_addr(const char *spec, char *addr, size_t n, int *port)
{
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1])
        return false;
    const char *a = spec;
    size_t len = (size_t)(colon - spec);
    if (a[0] == '[') {
        if (len < 3 || a[len - 1] != ']')
            return false;
        a++;
        len -= 2;
    }
    if (len >= n)
        return false;
    memcpy(addr, a, len);
    addr[len] = '\0';
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (*end || v < 0 || v > 65535)
        return false;
    *port = (int)v;
    unsigned char buf[16];
    return uv_inet_pton(AF_INET, addr, buf) == 0 || uv_inet_pton(AF_INET6, addr, buf) == 0;
}

/* Starts Streamable HTTP for `--http`; returns an exit code, 0 when it
 * listens. The token is taken out of the environment, so no child sees it. */
static int mcp_http_start(mcp_server *m, const mcp_args *a)
{
    char addr[64], msg[1600];
    int port = 0;
    if (!split_http_addr(a->http, addr, sizeof addr, &port))
        return fr_cli_usage_error("--http expects ADDR:PORT with an IP address, such as "
                                  "127.0.0.1:8765 or [::1]:8765, got '%s'",
                                  a->http);
    const char *var = a->token_env ? a->token_env : "FLOWRUN_MCP_TOKEN";
    const char *env = getenv(var);
    char *token = env && *env ? fr_xstrdup(env) : NULL;
    if (env)
        unsetenv(var);
    fr_mcpd_http_opts o = {.addr = addr, .port = port, .token = token};
    fr_error err = {0};
    int rc = fr_mcpd_http_start(&m->loop, m->d, &o, &m->http, &err);
    if (token)
        fr_wipe(token, strlen(token));
    free(token);
    if (rc == FR_EUSAGE) {
        fprintf(stderr,
                "flowrun: mcp: --http %s: %s is not a loopback address, so every request must "
                "carry a bearer token, and $%s is not set: export %s=<a long random secret> "
                "(clients send it as Authorization: Bearer <token>), or bind 127.0.0.1\n",
                a->http, addr, var, var);
        return FR_EXIT_CONFIG;
    }
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: mcp: %s\n", fr_error_format(&err, msg, sizeof msg));
        return FR_EXIT_IOERR;
    }
    bool v6 = strchr(addr, ':') != NULL;
    fprintf(stderr, "flowrun: mcp: serving MCP at http://%s%s%s:%d/mcp%s\n", v6 ? "[" : "", addr,
            v6 ? "]" : "", fr_mcpd_http_port(m->http), o.token ? " (bearer token required)" : "");
    return 0;
}

/* Starts the transport the options ask for on `m`; returns an exit code,
 * 0 when it serves, after saying what went wrong. */
static int mcp_transport_start(mcp_server *m, const mcp_args *a)
{
    if (a->http)
        return mcp_http_start(m, a);
    fr_error err = {0};
    char msg[1600];
    if (fr_mcpd_stdio_start(&m->loop, m->d, STDIN_FILENO, STDOUT_FILENO, mcp_stop, m, &m->stdio,
                            &err) == FR_OK)
        return 0;
    fprintf(stderr, "flowrun: mcp: %s\n", fr_error_format(&err, msg, sizeof msg));
    return FR_EXIT_IOERR;
}

/* flowrun mcp: the MCP server until its input ends or a signal comes. */
int fr_cli_mcp_main(int argc, char **argv)
{
    mcp_args a = {0};
    mcp_server m = {0};
    fr_error err = {0};
    char msg[1600], exe[4096], cwd[4096];
    size_t exe_len = sizeof exe, cwd_len = sizeof cwd;
    char *work_dir = NULL;
    bool looping = false;
    int code = parse_mcp_args(argc, argv, &a);
    if (code >= 0)
        goto cleanup;
    code = 0;
    if (uv_exepath(exe, &exe_len) != 0 || uv_cwd(cwd, &cwd_len) != 0) {
        fprintf(stderr, "flowrun: mcp: cannot find flowrun's own binary or the current folder\n");
        code = FR_EXIT_IOERR;
        goto cleanup;
    }
    const char *base = a.state_dir ? a.state_dir : getenv("FLOWRUN_STATE");
    if (a.work_dir)
        work_dir =
            a.work_dir[0] == '/' ? fr_xstrdup(a.work_dir) : fr_xasprintf("%s/%s", cwd, a.work_dir);
    else if (base && *base && !fr_pgurl_is_url(base)) /* a shared store's runs: ./.flowrun/mcp */
        work_dir =
            base[0] == '/' ? fr_xasprintf("%s/mcp", base) : fr_xasprintf("%s/%s/mcp", cwd, base);
    else
        work_dir = fr_xasprintf("%s/.flowrun/mcp", cwd);
    uv_loop_init(&m.loop);
    looping = true;
    fr_mcpd_opts o = {.exe = exe,
                      .child_args = a.child,
                      .nchild_args = a.nchild,
                      .work_dir = work_dir,
                      .inline_max = a.inline_max};
    if (fr_mcpd_new(&m.loop, &o, &m.d, &err) != FR_OK) {
        fprintf(stderr, "flowrun: mcp: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = FR_EXIT_IOERR;
    } else {
        code = mcp_transport_start(&m, &a);
    }
    if (code) {
        if (m.d) {
            fr_mcpd_shutdown(m.d, NULL, NULL);
            uv_run(&m.loop, UV_RUN_DEFAULT);
        }
        goto cleanup;
    }
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sigterm);
    m.sigint.data = m.sigterm.data = &m;
    uv_signal_start(&m.sigint, mcp_signal, SIGINT);
    uv_signal_start(&m.sigterm, mcp_signal, SIGTERM);
    uv_run(&m.loop, UV_RUN_DEFAULT);
cleanup:
    fr_mcpd_free(m.d);
    if (looping && uv_loop_close(&m.loop) != 0) {
        fr_log_event(FR_LOG_ERROR, "mcpd", "mcpd.error", "error=\"handles left open at exit\"");
        code = code ? code : FR_EXIT_IOERR;
    }
    free(work_dir);
    free(a.child);
    return code;
}
