/* Child processes under a guard (engine/proc.h). The parent side lives on
 * the loop: libuv pipes for stdin, stdout and stderr, a process handle for
 * the guard, a timer for the last-resort SIGKILL, and the write end of the
 * watch pipe as a plain descriptor (the guard sees EOF on its read end when
 * flowrun is gone, however it went). The guard side is engine/guard. */
#define _GNU_SOURCE
#include "engine/proc.h"

#include "engine/guard.h"

#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

extern char **environ;

/* How long after the grace the parent itself kills the guard's group. */
#define PARENT_MARGIN_MS 2000
#define READ_CHUNK       65536

struct fr_proc {
    uv_loop_t *loop;
    uv_process_t proc; /* proc.data, in.data, out.data, err.data, timer.data point back */
    uv_pipe_t in;
    uv_pipe_t out;
    uv_pipe_t err;
    uv_timer_t timer;
    uv_shutdown_t shut;
    int watch_fd;  /* write end of the watch pipe; -1 once closed */
    int open;      /* libuv handles not yet through their close callback */
    bool has_proc; /* proc was spawned and not yet closed */
    bool has_in;   /* in is open (not closing) */
    bool has_err;  /* err is a pipe of its own */
    bool out_done; /* stdout (and merged stderr) reached EOF */
    bool err_done; /* stderr reached EOF, or is merged */
    bool exited;   /* the guard's exit was seen */
    bool killing;  /* fr_proc_kill ran */
    bool freed;    /* fr_proc_free ran: no callback any more */
    bool reported; /* on_exit was called */
    int pid;
    int exit_code;
    int term_signal;
    double grace_s;
    fr_proc_read_fn on_out;
    fr_proc_read_fn on_err;
    fr_proc_exit_fn on_exit;
    void *ud;
    char buf[READ_CHUNK];
};

typedef struct write_req {
    uv_write_t req; /* req.data unused: the buffer follows */
    char data[];
} write_req;

/* ---- the parent side ---------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    fr_proc *p = h->data;
    if (--p->open == 0 && p->freed)
        free(p);
}

static void close_handle(fr_proc *p, uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

static void close_watch(fr_proc *p)
{
    if (p->watch_fd >= 0)
        close(p->watch_fd);
    p->watch_fd = -1;
}

/* on_exit once the exit and every EOF were seen; then the rest is closed. */
static void maybe_finish(fr_proc *p)
{
    if (p->reported || !p->exited || !p->out_done || !p->err_done)
        return;
    p->reported = true;
    close_handle(p, (uv_handle_t *)&p->timer);
    if (!p->freed)
        p->on_exit(p->ud, p->exit_code, p->term_signal);
}

static void on_proc_exit(uv_process_t *h, int64_t status, int term_signal)
{
    fr_proc *p = h->data;
    p->exited = true;
    p->pid = 0;
    p->exit_code = term_signal ? -1 : (int)status;
    p->term_signal = term_signal;
    close_watch(p);
    uv_timer_stop(&p->timer);
    p->has_proc = false;
    close_handle(p, (uv_handle_t *)&p->proc);
    if (p->freed)
        close_handle(p, (uv_handle_t *)&p->timer);
    maybe_finish(p);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    fr_proc *p = h->data;
    *buf = uv_buf_init(p->buf, sizeof p->buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    fr_proc *p = s->data;
    bool is_out = s == (uv_stream_t *)&p->out;
    if (nread > 0) {
        fr_proc_read_fn fn = is_out ? p->on_out : p->on_err;
        if (fn && !p->freed)
            fn(p->ud, buf->base, (size_t)nread);
        return;
    }
    if (nread == 0)
        return;
    close_handle(p, (uv_handle_t *)s); /* EOF or a read error: no more output either way */
    if (is_out)
        p->out_done = true;
    else
        p->err_done = true;
    maybe_finish(p);
}

/* The last resort: the guard did not end within the grace and the margin. */
static void on_kill_timer(uv_timer_t *t)
{
    fr_proc *p = t->data;
    if (p->pid > 0) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
    }
}

/* Whether `path` names an executable file. */
static bool is_executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Whether argv[0] can be run, as execvp would look for it: through `path`
 * (a PATH value) without a slash, else relative to `cwd`. */
static bool command_found(const char *name, const char *path, const char *cwd)
{
    char full[PATH_MAX];
    if (!*name)
        return false;
    if (strchr(name, '/')) {
        if (name[0] == '/' || !cwd)
            return is_executable(name);
        return snprintf(full, sizeof full, "%s/%s", cwd, name) < (int)sizeof full &&
               is_executable(full);
    }
    if (!path)
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *d = path;; d++) {
        const char *end = strchr(d, ':');
        size_t n = end ? (size_t)(end - d) : strlen(d);
        int len = n ? snprintf(full, sizeof full, "%.*s/%s", (int)n, d, name)
                    : snprintf(full, sizeof full, "%s", name);
        if (len < (int)sizeof full && is_executable(full))
            return true;
        if (!end)
            return false;
        d = end;
    }
}

static bool env_has_name(const char *const *env, const char *entry)
{
    size_t n = strcspn(entry, "=");
    for (; env && *env; env++)
        if (strncmp(*env, entry, n) == 0 && (*env)[n] == '=')
            return true;
    return false;
}

/* The guard's environment: flowrun's, with `add` (borrowed) on top and the
 * grace variable. Returns an owned array of owned strings. */
static char **build_env(const char *const *add, double grace_s)
{
    size_t n = 0, nadd = 0;
    while (environ[n])
        n++;
    while (add && add[nadd])
        nadd++;
    char **env = fr_xcalloc(n + nadd + 2, sizeof *env);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!env_has_name(add, environ[i]) &&
            strncmp(environ[i], FR_GUARD_GRACE_ENV "=", sizeof FR_GUARD_GRACE_ENV) != 0)
            env[k++] = fr_xstrdup(environ[i]);
    for (size_t i = 0; i < nadd; i++)
        env[k++] = fr_xstrdup(add[i]);
    env[k++] = fr_xasprintf("%s=%ld", FR_GUARD_GRACE_ENV, (long)(grace_s * 1000));
    return env;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

static const char *env_lookup(const char *const *add, const char *name)
{
    size_t n = strlen(name);
    for (; add && *add; add++)
        if (strncmp(*add, name, n) == 0 && (*add)[n] == '=')
            return *add + n + 1;
    return getenv(name);
}

/* Opens the parent's end `fd` (taken) of a pipe as `h`. */
static int open_pipe(fr_proc *p, uv_pipe_t *h, int fd)
{
    uv_pipe_init(p->loop, h, 0);
    h->data = p;
    p->open++;
    if (uv_pipe_open(h, fd) != 0) {
        close(fd);
        return FR_EIO;
    }
    return FR_OK;
}

static void close_fds(int fds[4][2])
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            if (fds[i][j] >= 0)
                close(fds[i][j]);
}

/* Sets `out` to FR_GUARD_PROGRAM in the directory of binary `bin`
 * (borrowed) when it is there; true then. */
static bool guard_beside(const char *bin, char out[PATH_MAX])
{
    char real[PATH_MAX];
    if (!bin || !realpath(bin, real))
        return false;
    char *slash = strrchr(real, '/');
    if (!slash)
        return false;
    *slash = '\0';
    return snprintf(out, PATH_MAX, "%s/%s", real, FR_GUARD_PROGRAM) < PATH_MAX &&
           is_executable(out);
}

/* The guard to start: flowrun-guard beside flowrun's own binary (libc
 * only: it starts in a fraction of flowrun's time), else flowrun itself.
 * The binary is the one the process was started as (under valgrind,
 * /proc/self/exe is valgrind's), else /proc/self/exe. Found once. */
static const char *guard_path(void)
{
    static char path[PATH_MAX];
    static bool found;
    if (!found && !guard_beside((const char *)getauxval(AT_EXECFN), path) &&
        !guard_beside("/proc/self/exe", path))
        snprintf(path, sizeof path, "/proc/self/exe");
    found = true;
    return path;
}

int fr_proc_spawn(uv_loop_t *loop, const fr_proc_opts *o, fr_proc_read_fn on_out,
                  fr_proc_read_fn on_err, fr_proc_exit_fn on_exit, void *ud, fr_proc **out,
                  fr_error *err)
{
    int rc = FR_EINVAL;
    fr_proc *p = NULL;
    char **env = NULL, **args = NULL;
    /* [0] stdin, [1] stdout, [2] stderr, [3] watch: {child's end, parent's end} */
    int fds[4][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    if (!o || !o->argv || !o->argv[0] || !on_exit || !out) {
        fr_error_set(err, rc, "proc", 0, "no command to run");
        goto cleanup;
    }
    if (!command_found(o->argv[0], env_lookup(o->env, "PATH"), o->cwd)) {
        rc = fr_error_set(err, FR_ENOENT, "proc", 0, "command '%s' not found", o->argv[0]);
        goto cleanup;
    }
    rc = FR_EIO;
    int pipes[2];
    if (o->pipe_stdin) {
        if (uv_pipe(pipes, 0, 0) != 0)
            goto pipe_failed;
        fds[0][0] = pipes[0];
        fds[0][1] = pipes[1];
    }
    for (int i = 1; i <= 3; i++) {
        if (i == 2 && o->merge_stderr)
            continue;
        if (uv_pipe(pipes, 0, 0) != 0)
            goto pipe_failed;
        fds[i][0] = i == 3 ? pipes[0] : pipes[1]; /* the child reads the watch, writes output */
        fds[i][1] = i == 3 ? pipes[1] : pipes[0];
    }

    p = fr_xcalloc(1, sizeof *p);
    p->loop = loop;
    p->grace_s = o->grace_s > 0 ? o->grace_s : 2.0;
    p->on_out = on_out;
    p->on_err = on_err;
    p->on_exit = on_exit;
    p->ud = ud;
    p->watch_fd = -1;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->open++;

    size_t argc = 0;
    while (o->argv[argc])
        argc++;
    args = fr_xcalloc(argc + 5, sizeof *args);
    args[0] = fr_xstrdup("flowrun-guard");
    args[1] = fr_xstrdup(FR_GUARD_ARG);
    args[2] = fr_xasprintf("%ld", (long)getpid());
    args[3] = fr_xstrdup("--");
    for (size_t i = 0; i < argc; i++)
        args[4 + i] = fr_xstrdup(o->argv[i]);
    env = build_env(o->env, p->grace_s);

    uv_stdio_container_t stdio[4];
    stdio[0].flags = o->pipe_stdin ? UV_INHERIT_FD : UV_IGNORE;
    stdio[0].data.fd = fds[0][0];
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = fds[1][0];
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = o->merge_stderr ? fds[1][0] : fds[2][0];
    stdio[3].flags = UV_INHERIT_FD;
    stdio[3].data.fd = fds[3][0];
    uv_process_options_t po = {
        .exit_cb = on_proc_exit,
        .file = guard_path(),
        .args = args,
        .env = env,
        .cwd = o->cwd,
        .flags = UV_PROCESS_DETACHED,
        .stdio_count = 4,
        .stdio = stdio,
    };
    p->proc.data = p;
    int uvrc = uv_spawn(loop, &p->proc, &po);
    for (int i = 0; i < 4; i++) { /* the child's ends belong to the child now */
        if (fds[i][0] >= 0)
            close(fds[i][0]);
        fds[i][0] = -1;
    }
    p->open++; /* uv_spawn initialises the handle even when it fails: it is closed either way */
    if (uvrc != 0) {
        close_handle(p, (uv_handle_t *)&p->proc);
        rc = fr_error_set(err, FR_EIO, "proc", 0, "cannot start '%s': %s", o->argv[0],
                          uv_strerror(uvrc));
        goto cleanup;
    }
    p->has_proc = true;
    p->pid = p->proc.pid;
    p->watch_fd = fds[3][1];
    fds[3][1] = -1;
    p->err_done = o->merge_stderr;
    int orc = open_pipe(p, &p->out, fds[1][1]);
    fds[1][1] = -1;
    if (orc == FR_OK && !o->merge_stderr) {
        p->has_err = true;
        orc = open_pipe(p, &p->err, fds[2][1]);
        fds[2][1] = -1;
    }
    if (orc == FR_OK && o->pipe_stdin) {
        p->has_in = true;
        orc = open_pipe(p, &p->in, fds[0][1]);
        fds[0][1] = -1;
    }
    if (orc == FR_OK)
        orc = uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read) ? FR_EIO : FR_OK;
    if (orc == FR_OK && p->has_err)
        orc = uv_read_start((uv_stream_t *)&p->err, on_alloc, on_read) ? FR_EIO : FR_OK;
    if (orc != FR_OK) {
        rc = fr_error_set(err, FR_EIO, "proc", 0, "cannot read from '%s'", o->argv[0]);
        goto cleanup;
    }
    *out = p;
    p = NULL;
    rc = FR_OK;
    goto cleanup;
pipe_failed:
    rc = fr_error_set(err, FR_EIO, "proc", 0, "cannot make a pipe for '%s': %s", o->argv[0],
                      strerror(errno));
cleanup:
    close_fds(fds);
    free_strv(args);
    free_strv(env);
    fr_proc_free(p);
    return rc;
}

static void on_write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

int fr_proc_write(fr_proc *p, const char *data, size_t len)
{
    if (!p->has_in || p->freed)
        return FR_EIO;
    write_req *w = fr_xmalloc(sizeof *w + (len ? len : 1));
    memcpy(w->data, data, len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&p->in, &buf, 1, on_write_done) != 0) {
        free(w);
        return FR_EIO;
    }
    return FR_OK;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    fr_proc *p = req->data;
    close_handle(p, (uv_handle_t *)&p->in);
}

void fr_proc_close_stdin(fr_proc *p)
{
    if (!p || !p->has_in)
        return;
    p->has_in = false;
    p->shut.data = p;
    /* The shutdown waits for the writes already queued, then closes. */
    if (uv_shutdown(&p->shut, (uv_stream_t *)&p->in, on_shutdown) != 0)
        close_handle(p, (uv_handle_t *)&p->in);
}

void fr_proc_kill(fr_proc *p)
{
    if (!p || p->exited || !p->has_proc || p->killing)
        return;
    p->killing = true;
    /* The guard ends the group (SIGTERM, its grace, SIGKILL); closing the
     * watch pipe tells it too. The timer is for a guard that cannot. */
    kill(p->pid, SIGTERM);
    close_watch(p);
    uv_timer_start(&p->timer, on_kill_timer, (uint64_t)(p->grace_s * 1000) + PARENT_MARGIN_MS, 0);
}

int fr_proc_pid(const fr_proc *p)
{
    return p ? p->pid : 0;
}

void fr_proc_free(fr_proc *p)
{
    if (!p || p->freed)
        return;
    p->freed = true;
    p->has_in = false;
    if (p->in.data)
        close_handle(p, (uv_handle_t *)&p->in);
    if (p->out.data)
        close_handle(p, (uv_handle_t *)&p->out);
    if (p->err.data)
        close_handle(p, (uv_handle_t *)&p->err);
    if (p->has_proc) {
        /* The process handle stays until the guard has exited, so that
         * it is reaped; the exit callback closes it and the timer. */
        fr_proc_kill(p);
        return;
    }
    close_watch(p);
    close_handle(p, (uv_handle_t *)&p->timer);
    if (p->open == 0)
        free(p);
}
