/* Command tools (engine/cmdtool.h): the author's argv with the model's
 * arguments as whole items, run under engine/proc with stdout and stderr
 * merged, kept up to the cap (the rest read and dropped, so the command
 * never blocks on a full pipe), one timer for the timeout (also used, at
 * 0 ms, to deliver a result that needs no process). */
#include "engine/cmdtool.h"

#include "engine/proc.h"
#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARG_PREFIX      "{{args."
#define ARG_SUFFIX      "}}"
#define DEFAULT_TIMEOUT 60.0
#define DEFAULT_CAP     65536

struct fr_cmdtool {
    uv_timer_t timer; /* timer.data points back; the struct is freed in its close callback */
    fr_proc *proc;    /* NULL when nothing runs (a result known before the start) */
    fr_buf output;    /* what was kept, at most `cap` bytes */
    size_t cap;
    size_t seen; /* every byte the command wrote */
    double timeout_s;
    bool timed_out;
    bool ended;           /* done was called or the run cancelled */
    fr_tool_result early; /* the result when nothing runs */
    fr_tool_done_fn done;
    void *ud;
};

static void on_timer_closed(uv_handle_t *h)
{
    fr_cmdtool *c = h->data;
    fr_buf_close(&c->output);
    fr_tool_result_close(&c->early);
    free(c);
}

/* Releases `c` (taken): the process (its group killed if it still runs) and
 * the timer; the memory goes in the timer's close callback. */
static void release(fr_cmdtool *c)
{
    c->ended = true;
    fr_proc_free(c->proc);
    c->proc = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void finish(fr_cmdtool *c, fr_tool_result *r)
{
    fr_tool_done_fn done = c->done;
    void *ud = c->ud;
    release(c);
    done(ud, r);
    fr_tool_result_close(r);
}

/* Appends `n` bytes of `s` to `b` as text a model can read: NUL bytes and
 * bytes that are not UTF-8 (a multibyte character cut at the cap too)
 * become U+FFFD. */
static void append_text(fr_buf *b, const char *s, size_t n)
{
    while (n > 0) {
        size_t bad = n;
        if (fr_utf8_text(s, n, &bad) == NULL)
            bad = n;
        fr_buf_append(b, s, bad);
        if (bad == n)
            return;
        fr_buf_puts(b, "\xEF\xBF\xBD");
        s += bad + 1;
        n -= bad + 1;
    }
}

/* The readable reason when the guard could not run the command: its line
 * on stderr without the "flowrun: " in front; NULL when it is not there. */
static char *exec_failure(const char *out, size_t n)
{
    size_t plen = strlen(FR_PROC_EXEC_FAILED_PREFIX);
    if (n < plen || memcmp(out, FR_PROC_EXEC_FAILED_PREFIX, plen) != 0)
        return NULL;
    const char *start = out + strlen("flowrun: "); /* the prefix begins so */
    const char *nl = memchr(start, '\n', n - (size_t)(start - out));
    return fr_xstrndup(start, nl ? (size_t)(nl - start) : n - (size_t)(start - out));
}

static void on_out(void *ud, const char *data, size_t len)
{
    fr_cmdtool *c = ud;
    size_t kept = c->output.len;
    if (kept < c->cap) {
        size_t take = len < c->cap - kept ? len : c->cap - kept;
        fr_buf_append(&c->output, data, take);
    }
    c->seen += len;
}

static void on_exit_cb(void *ud, int exit_code, int term_signal)
{
    fr_cmdtool *c = ud;
    fr_buf text;
    fr_buf_init(&text, 0);
    char *reason = NULL;
    if (c->timed_out)
        reason = fr_xasprintf("timed out after %g s", c->timeout_s);
    else if (exit_code == 127)
        reason = exec_failure(fr_buf_str(&c->output), c->output.len);
    if (!reason && term_signal)
        reason = fr_xasprintf("killed by signal %d (%s)", term_signal, strsignal(term_signal));
    if (!reason && exit_code != 0)
        reason = fr_xasprintf("exit code %d", exit_code);
    if (term_signal || c->timed_out)
        fr_buf_printf(&text, "error: %s\n", reason);
    else
        fr_buf_printf(&text, "exit code %d\n", exit_code);
    append_text(&text, fr_buf_str(&c->output), c->output.len);
    if (c->seen > c->cap) {
        const char *s = fr_buf_str(&text);
        size_t n = text.len;
        fr_buf_printf(&text, "%s[output cut at %zu bytes]\n", n && s[n - 1] != '\n' ? "\n" : "",
                      c->cap);
    }
    fr_tool_result r = {.is_error = reason != NULL, .text = fr_buf_take(&text), .reason = reason};
    finish(c, &r);
}

static void on_timer(uv_timer_t *t)
{
    fr_cmdtool *c = t->data;
    if (!c->proc) { /* the result known before the start */
        fr_tool_result r = c->early;
        c->early = (fr_tool_result){0};
        finish(c, &r);
        return;
    }
    c->timed_out = true;
    fr_proc_kill(c->proc); /* on_exit comes once the group is gone */
}

/* Fills `argv` (NULL-terminated, items owned) from the templates of `t`
 * and `args`. Returns false with the reason in `r` when an argument is
 * missing or not a string, number or boolean. */
static bool build_argv(const fr_tool_spec *t, const json_t *args, char **argv, fr_tool_result *r)
{
    size_t plen = strlen(ARG_PREFIX), slen = strlen(ARG_SUFFIX);
    for (size_t i = 0; i < t->ncommand; i++) {
        const char *item = t->command[i];
        size_t n = strlen(item);
        if (n <= plen + slen || strncmp(item, ARG_PREFIX, plen) != 0 ||
            strcmp(item + n - slen, ARG_SUFFIX) != 0) {
            argv[i] = fr_xstrdup(item);
            continue;
        }
        char *name = fr_xstrndup(item + plen, n - plen - slen);
        json_t *v = json_is_object(args) ? json_object_get(args, name) : NULL;
        if (json_is_string(v))
            argv[i] = fr_xstrndup(json_string_value(v), json_string_length(v));
        else if (json_is_number(v) || json_is_boolean(v))
            argv[i] = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        else if (!v || json_is_null(v))
            fr_tool_result_fail(r, "missing argument '%s' for tool '%s'", name, t->name);
        else
            fr_tool_result_fail(r, "argument '%s' of tool '%s' must be a string, number or boolean",
                                name, t->name);
        free(name);
        if (!argv[i])
            return false;
    }
    return true;
}

int fr_cmdtool_run(uv_loop_t *loop, const fr_tool_spec *t, const char *wf_dir, const json_t *args,
                   fr_tool_done_fn done, void *ud, fr_cmdtool **out, fr_error *err)
{
    if (!loop || !t || t->kind != FR_TOOL_COMMAND || t->ncommand == 0 || !done)
        return fr_error_set(err, FR_EINVAL, t && t->file ? t->file : "tool", t ? t->line : 0,
                            "not a command tool");
    fr_cmdtool *c = fr_xcalloc(1, sizeof *c);
    c->cap = t->output_cap > 0 ? (size_t)t->output_cap : DEFAULT_CAP;
    c->timeout_s = t->timeout_s > 0 ? t->timeout_s : DEFAULT_TIMEOUT;
    c->done = done;
    c->ud = ud;
    fr_buf_init(&c->output, 0);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;

    char **argv = fr_xcalloc(t->ncommand + 1, sizeof *argv);
    char *cwd = NULL;
    if (build_argv(t, args, argv, &c->early)) {
        if (t->cwd && t->cwd[0] == '/')
            cwd = fr_xstrdup(t->cwd);
        else if (t->cwd)
            cwd = fr_xasprintf("%s/%s", wf_dir ? wf_dir : ".", t->cwd);
        else if (wf_dir)
            cwd = fr_xstrdup(wf_dir);
        fr_proc_opts o = {.argv = (const char *const *)argv, .cwd = cwd, .merge_stderr = true};
        fr_error perr = {0};
        if (fr_proc_spawn(loop, &o, on_out, NULL, on_exit_cb, c, &c->proc, &perr) != FR_OK)
            fr_tool_result_fail(&c->early, "%s", perr.msg);
    }
    /* With a process: the timeout; without: the result on the next turn. */
    uv_timer_start(&c->timer, on_timer, c->proc ? (uint64_t)(c->timeout_s * 1000) : 0, 0);
    for (size_t i = 0; i < t->ncommand; i++)
        free(argv[i]);
    free(argv);
    free(cwd);
    if (out)
        *out = c;
    return FR_OK;
}

void fr_cmdtool_cancel(fr_cmdtool *c)
{
    if (c && !c->ended)
        release(c);
}
