#include "engine/mcp/stdio_wire_int.h"

#include "engine/proc.h"
#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE (16u << 20)
#define ERR_TAIL 4096

struct fr_mcp_stdio {
    fr_proc *proc;
    fr_buf line;        /* stdout not yet ended by a newline */
    char err[ERR_TAIL]; /* the tail of stderr */
    size_t nerr;
    char last_err[512];
    fr_mcp_msg_fn on_msg;
    fr_mcp_exit_fn on_exit;
    void *ud;
    int depth; /* callbacks in progress */
    bool free_asked;
    char name[64];
};

static void stdio_free_now(fr_mcp_stdio *s)
{
    fr_proc_free(s->proc);
    fr_buf_close(&s->line);
    free(s);
}

static void deliver_line(fr_mcp_stdio *s, const char *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n == 0)
        return;
    json_error_t je;
    json_t *msg = json_loadb(p, n, 0, &je);
    if (!msg) {
        fr_log_event(FR_LOG_DEBUG, "mcp", "tool.server_noise", "server=%s not-json-line bytes=%zu",
                     s->name, n);
        return;
    }
    s->on_msg(s->ud, msg);
    json_decref(msg);
}

static void on_out(void *ud, const char *data, size_t len)
{
    fr_mcp_stdio *s = ud;
    s->depth++;
    while (len > 0 && !s->free_asked) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (fr_buf_append(&s->line, data, take) != FR_OK)
            fr_buf_reset(&s->line); /* a line past the cap is dropped */
        if (!nl)
            break;
        char *line = fr_buf_take(&s->line);
        deliver_line(s, line, strlen(line));
        free(line);
        data += take + 1;
        len -= take + 1;
    }
    if (--s->depth == 0 && s->free_asked)
        stdio_free_now(s);
}

/* Keeps the tail of stderr and its last non-empty line. */
static void on_err(void *ud, const char *data, size_t len)
{
    fr_mcp_stdio *s = ud;
    if (len >= ERR_TAIL) {
        data += len - (ERR_TAIL - 1);
        len = ERR_TAIL - 1;
    }
    if (s->nerr + len >= ERR_TAIL) {
        size_t drop = s->nerr + len - (ERR_TAIL - 1);
        memmove(s->err, s->err + drop, s->nerr - drop);
        s->nerr -= drop;
    }
    memcpy(s->err + s->nerr, data, len);
    s->nerr += len;
    s->err[s->nerr] = '\0';
    size_t end = s->nerr;
    while (end > 0 &&
           (s->err[end - 1] == '\n' || s->err[end - 1] == '\r' || s->err[end - 1] == ' '))
        end--;
    size_t start = end;
    while (start > 0 && s->err[start - 1] != '\n')
        start--;
    snprintf(s->last_err, sizeof s->last_err, "%.*s", (int)(end - start), s->err + start);
}

static void on_proc_exit(void *ud, int exit_code, int term_signal)
{
    fr_mcp_stdio *s = ud;
    char why[700];
    if (term_signal)
        snprintf(why, sizeof why, "(killed by signal %d)", term_signal);
    else
        snprintf(why, sizeof why, "(exit code %d)", exit_code);
    if (s->last_err[0]) {
        size_t n = strlen(why);
        snprintf(why + n, sizeof why - n, ": %s", s->last_err);
    }
    s->depth++;
    s->on_exit(s->ud, why);
    if (--s->depth == 0 && s->free_asked)
        stdio_free_now(s);
}

int fr_mcp_stdio_start(uv_loop_t *loop, const fr_mcp_spec *spec, const char *wf_dir,
                       fr_mcp_msg_fn on_msg, fr_mcp_exit_fn on_exit_fn, void *ud,
                       fr_mcp_stdio **out, fr_error *err)
{
    fr_mcp_stdio *s = fr_xcalloc(1, sizeof *s);
    const char **argv = fr_xcalloc(spec->ncommand + 1, sizeof *argv);
    const char **env = fr_xcalloc(spec->nenv + 1, sizeof *env);
    char *cwd = NULL;
    for (size_t i = 0; i < spec->ncommand; i++)
        argv[i] = spec->command[i];
    for (size_t i = 0; i < spec->nenv; i++)
        env[i] = spec->env[i];
    if (spec->cwd && spec->cwd[0] == '/')
        cwd = fr_xstrdup(spec->cwd);
    else if (spec->cwd)
        cwd = fr_xasprintf("%s/%s", wf_dir ? wf_dir : ".", spec->cwd);
    else if (wf_dir)
        cwd = fr_xstrdup(wf_dir);
    snprintf(s->name, sizeof s->name, "%s", spec->name);
    fr_buf_init(&s->line, MAX_LINE);
    s->on_msg = on_msg;
    s->on_exit = on_exit_fn;
    s->ud = ud;
    fr_proc_opts o = {.argv = argv, .env = env, .cwd = cwd, .pipe_stdin = true};
    int rc = fr_proc_spawn(loop, &o, on_out, on_err, on_proc_exit, s, &s->proc, err);
    free(argv);
    free(env);
    free(cwd);
    if (rc != FR_OK) {
        fr_buf_close(&s->line);
        free(s);
        return rc;
    }
    *out = s;
    return FR_OK;
}

int fr_mcp_stdio_send(fr_mcp_stdio *s, const json_t *msg)
{
    char *line = json_dumps(msg, JSON_COMPACT);
    if (!line)
        return FR_EINVAL;
    size_t n = strlen(line);
    line = fr_xrealloc(line, n + 2);
    line[n] = '\n';
    line[n + 1] = '\0';
    int rc = fr_proc_write(s->proc, line, n + 1);
    free(line);
    return rc;
}

const char *fr_mcp_stdio_last_err(const fr_mcp_stdio *s)
{
    return s->last_err;
}

void fr_mcp_stdio_free(fr_mcp_stdio *s)
{
    if (!s)
        return;
    fr_proc_close_stdin(s->proc);
    if (s->depth > 0) {
        s->free_asked = true;
        return;
    }
    stdio_free_now(s);
}
