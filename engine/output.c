#include "engine/output.h"

#include "engine/util/fs.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Output files are written by one libuv thread-pool job at a time, which
 * takes every write waiting (up to BATCH_MAX) and does each one whole in
 * the pool thread: resolve the folder when confined, open, write, close.
 * One job at a time means one descriptor open for outputs at any moment and
 * no two pool threads creating files in the same folder (they would contend
 * on its lock); taking the waiting writes together means one wake-up of the
 * loop per batch rather than three per file. */
#define BATCH_MAX 64
/* An open that found no descriptor (EMFILE, ENFILE) tries again after this,
 * doubling up to OPEN_RETRY_MAX_MS, OPEN_RETRIES times (about four minutes)
 * before the write fails. */
#define OPEN_RETRY_MS     10
#define OPEN_RETRY_MAX_MS 2000
#define OPEN_RETRIES      130

/* One write: queued, then done in a batch's pool thread, then reported. */
typedef struct job {
    uv_timer_t timer; /* the wait before an open tries again; timer.data points back */
    bool timer_init;
    bool no_fds; /* the last open found no descriptor: try again later */
    int retries;
    struct job *next; /* in the queue, then in its batch */
    uv_loop_t *loop;
    char *path;
    char *data;
    size_t len;
    int rc;
    char *root; /* confine to this real path, or NULL */
    fr_output_done_fn done;
    void *ud;
} job;

/* The writes of one pool job, all for the same loop, in queue order. */
typedef struct batch {
    uv_work_t work;
    job *jobs;
} batch;

int fr_output_mkdirs(const char *dir, fr_error *err)
{
    if (!*dir)
        return fr_error_set(err, FR_EINVAL, "--out", 0, "the output directory name is empty");
    return fr_mkdir_p(dir, 0755, err);
}

int fr_output_mkparents(const char *path, fr_error *err)
{
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return FR_OK;
    char *dir = fr_xstrndup(path, (size_t)(slash - path));
    int rc = fr_output_mkdirs(dir, err);
    free(dir);
    return rc;
}

/* The writes waiting for the writer, in order, and whether a batch is in
 * the pool. Outputs are written from one loop thread only (the run's, or
 * the MCP server's). */
static job *queue_head, *queue_tail;
static bool writing;

static void free_job(job *j)
{
    free(j->path);
    free(j->data);
    free(j->root);
    free(j);
}

static void on_timer_closed(uv_handle_t *h)
{
    free_job(h->data);
}

static void finish(job *j)
{
    if (j->done)
        j->done(j->ud, j->rc, j->path);
    if (j->timer_init)
        uv_close((uv_handle_t *)&j->timer, on_timer_closed);
    else
        free_job(j);
}

/* True when real path `p` is `root` or below it. */
static bool is_inside(const char *root, const char *p)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return true;
    return strncmp(p, root, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

int fr_output_check_inside(const char *root, const char *path, fr_error *err)
{
    int rc = FR_OK;
    struct stat st;
    char *dir = fr_xstrdup(path), *real = NULL;
    if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode)) {
        rc = fr_error_set(err, FR_EINVAL, path, 0,
                          "is a symbolic link; a save path is never written through one (it "
                          "could lead outside the workflow's folder)");
        goto cleanup;
    }
    /* The deepest folder on the way that exists decides where the rest,
     * created by mkdir, ends up. */
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash)
            break;
        *slash = '\0';
        if (!*dir)
            break;
        real = realpath(dir, NULL);
        if (real || errno != ENOENT)
            break;
    }
    if (!real) {
        rc = fr_error_set(err, FR_EINVAL, path, 0, "cannot resolve the folder '%s': %s", dir,
                          strerror(errno));
        goto cleanup;
    }
    if (!is_inside(root, real))
        rc = fr_error_set(err, FR_EINVAL, path, 0,
                          "leads outside the workflow's folder %s: its folder '%s' is %s "
                          "through a symbolic link",
                          root, dir, real);
cleanup:
    free(real);
    free(dir);
    return rc;
}

/* The folder of `path` (owned): "." for a bare name, "/" for a file at the root. */
static char *folder_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return !slash          ? fr_xstrdup(".")
           : slash == path ? fr_xstrdup("/")
                           : fr_xstrndup(path, (size_t)(slash - path));
}

/* Does write `j` whole, in a pool thread: touches nothing but `j`. When
 * confined, the folder must resolve inside the root and the file is opened
 * without following a link (a refusal is FR_EINVAL); an open that finds no
 * descriptor sets no_fds for the loop to try again. */
static void write_file(job *j)
{
    j->no_fds = false;
    j->rc = FR_OK;
    if (j->root) {
        char *dir = folder_of(j->path);
        char *real = realpath(dir, NULL);
        bool inside = real && is_inside(j->root, real);
        free(real);
        free(dir);
        if (!inside) {
            j->rc = FR_EINVAL;
            return;
        }
    }
    int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (j->root ? O_NOFOLLOW : 0);
    int fd;
    do
        fd = open(j->path, flags, 0644);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE)
            j->no_fds = true;
        /* A confined write never follows a link at the file itself. */
        j->rc = j->root && errno == ELOOP ? FR_EINVAL : FR_EIO;
        return;
    }
    for (size_t off = 0; off < j->len;) {
        ssize_t n = write(fd, j->data + off, j->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            j->rc = FR_EIO;
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) != 0 && errno != EINTR)
        j->rc = FR_EIO;
}

static void on_batch(uv_work_t *w)
{
    for (job *j = ((batch *)w)->jobs; j; j = j->next)
        write_file(j);
}

static void enqueue(job *j);
static void start_batch(void);

static void on_retry_open(uv_timer_t *t)
{
    enqueue(t->data);
}

/* The open found no descriptor: another write or a transfer will free one,
 * so wait and try again rather than lose the output. */
static void retry_open(job *j)
{
    if (!j->timer_init) {
        uv_timer_init(j->loop, &j->timer);
        j->timer.data = j;
        j->timer_init = true;
    }
    uint64_t delay = (uint64_t)OPEN_RETRY_MS << (j->retries < 8 ? j->retries : 8);
    if (delay > OPEN_RETRY_MAX_MS)
        delay = OPEN_RETRY_MAX_MS;
    j->retries++;
    uv_timer_start(&j->timer, on_retry_open, delay, 0);
}

/* Back on the loop: reports each write of the batch in order (or waits to
 * try its open again), then hands the writer the writes queued meanwhile. */
static void on_batch_done(uv_work_t *w, int status)
{
    batch *b = (batch *)w;
    job *j = b->jobs;
    free(b);
    writing = false;
    while (j) {
        job *next = j->next;
        j->next = NULL;
        if (status != 0)
            j->rc = FR_EIO;
        if (status == 0 && j->no_fds && j->retries < OPEN_RETRIES)
            retry_open(j);
        else
            finish(j);
        j = next;
    }
    start_batch();
}

/* Hands the writer up to BATCH_MAX waiting writes of the first one's loop
 * (the others keep their place), unless a batch is in the pool already. */
static void start_batch(void)
{
    if (writing || !queue_head)
        return;
    batch *b = fr_xcalloc(1, sizeof *b);
    uv_loop_t *loop = queue_head->loop;
    job *keep = NULL, **keep_tail = &keep, **batch_tail = &b->jobs, *j = queue_head;
    job *last_kept = NULL;
    for (int n = 0; j && n < BATCH_MAX;) {
        job *next = j->next;
        j->next = NULL;
        if (j->loop == loop) {
            *batch_tail = j;
            batch_tail = &j->next;
            n++;
        } else {
            *keep_tail = j;
            keep_tail = &j->next;
            last_kept = j;
        }
        j = next;
    }
    *keep_tail = j; /* the rest, in order */
    queue_head = keep;
    if (!j)
        queue_tail = last_kept; /* else the old tail is still the last */
    writing = true;
    if (uv_queue_work(loop, &b->work, on_batch, on_batch_done) != 0)
        on_batch_done(&b->work, UV_EINVAL);
}

static void enqueue(job *j)
{
    j->next = NULL;
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    start_batch();
}

int fr_output_write_inside(uv_loop_t *loop, const char *root, const char *path, const char *data,
                           size_t len, fr_output_done_fn done, void *ud)
{
    job *j = fr_xcalloc(1, sizeof *j);
    j->path = fr_xstrdup(path);
    j->data = fr_xstrndup(data, len);
    j->len = len;
    j->done = done;
    j->ud = ud;
    j->loop = loop;
    j->root = root ? fr_xstrdup(root) : NULL;
    enqueue(j);
    return FR_OK;
}

int fr_output_write(uv_loop_t *loop, const char *path, const char *data, size_t len,
                    fr_output_done_fn done, void *ud)
{
    return fr_output_write_inside(loop, NULL, path, data, len, done, ud);
}

int fr_output_confine_saves(const fr_workflow *wf, char **root, fr_error *err)
{
    *root = NULL;
    if (wf->save_anywhere)
        return FR_OK;
    *root = realpath(wf->dir, NULL);
    if (!*root)
        return fr_error_set(err, FR_EIO, wf->dir, 0, "cannot resolve the workflow's folder: %s",
                            strerror(errno));
    for (size_t t = 0; t < wf->ntasks; t++) {
        const fr_task_spec *ts = &wf->tasks[t];
        if (!ts->save)
            continue;
        char *p = fr_xasprintf("%s/%s", wf->dir, ts->save);
        fr_error why = {0};
        int rc = fr_output_check_inside(*root, p, &why);
        free(p);
        if (rc != FR_OK)
            return fr_error_set(err, FR_EWORKFLOW, ts->file, ts->line,
                                "task '%s': field 'save' ('%.200s') %s; save into the workflow's "
                                "folder itself (remove or replace the symbolic link), or run "
                                "with --allow-save-anywhere to allow it",
                                ts->name, ts->save, why.msg);
    }
    return FR_OK;
}

/* The path task `ts` of `wf` saves to (owned). */
static char *save_path(const fr_workflow *wf, const fr_task_spec *ts)
{
    return ts->save[0] == '/' ? fr_xstrdup(ts->save) : fr_xasprintf("%s/%s", wf->dir, ts->save);
}

int fr_output_save_parents(const fr_workflow *wf, size_t task, fr_error *err)
{
    const fr_task_spec *ts = &wf->tasks[task];
    if (!ts->save)
        return FR_OK;
    char *p = save_path(wf, ts);
    int rc = fr_output_mkparents(p, err);
    free(p);
    return rc;
}

int fr_output_runs_folder(const char *dir, fr_error *err)
{
    int rc = fr_output_mkdirs(dir, err);
    if (rc != FR_OK)
        return rc;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int flags = 0;
    /* A hint only: a file system without the flag, or a refusal, is fine. */
    if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && !(flags & FS_TOPDIR_FL)) {
        flags |= FS_TOPDIR_FL;
        (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    if (fd >= 0)
        close(fd);
    return FR_OK;
}

int fr_output_prepare(const fr_workflow *wf, const char *out_dir, char **root, fr_error *err)
{
    int rc = out_dir ? fr_output_mkdirs(out_dir, err) : FR_OK;
    if (rc == FR_OK)
        rc = fr_output_confine_saves(wf, root, err);
    for (size_t t = 0; rc == FR_OK && out_dir && t < wf->ntasks; t++)
        rc = fr_output_save_parents(wf, t, err);
    return rc;
}

typedef struct task_write {
    fr_output_done_fn done;
    void *ud;
    int pending;
} task_write;

static void on_task_written(void *ud, int rc, const char *path)
{
    task_write *w = ud;
    if (rc == FR_EINVAL)
        fr_log_event(FR_LOG_ERROR, "output", "task.output_error",
                     "path=%s error=\"refused: the save path now leads outside the workflow's "
                     "folder (a symbolic link); remove the link, or run with "
                     "--allow-save-anywhere\"",
                     path);
    else if (rc != FR_OK)
        fr_log_event(FR_LOG_ERROR, "output", "task.output_error",
                     "path=%s error=\"cannot write the output\"", path);
    if (w->done)
        w->done(w->ud, rc, path);
    if (--w->pending == 0)
        free(w);
}

/* "dir/name.ext" of the three (borrowed) as an owned string, by three
 * copies: fr_xasprintf's vasprintf cost some 2,300 instructions a task. */
static char *task_path(const char *dir, const char *name, const char *ext)
{
    size_t dl = strlen(dir), nl = strlen(name), el = strlen(ext);
    char *p = fr_xmalloc(dl + nl + el + 3);
    memcpy(p, dir, dl);
    p[dl] = '/';
    memcpy(p + dl + 1, name, nl);
    p[dl + 1 + nl] = '.';
    memcpy(p + dl + nl + 2, ext, el + 1);
    return p;
}

void fr_output_task(uv_loop_t *loop, const fr_workflow *wf, size_t task, const char *out_dir,
                    const char *root, const fr_reply *reply, fr_output_done_fn done, void *ud)
{
    const fr_task_spec *ts = &wf->tasks[task];
    char *json_text = NULL;
    const char *data = reply->text;
    if (reply->json) {
        json_text = json_dumps(reply->json, JSON_INDENT(2) | JSON_ENCODE_ANY);
        data = json_text;
    }
    task_write *w = fr_xcalloc(1, sizeof *w);
    w->done = done;
    w->ud = ud;
    w->pending = ts->save ? 2 : 1;
    char *path = task_path(out_dir, ts->name, json_text ? "json" : "txt");
    if (fr_output_write(loop, path, data, strlen(data), on_task_written, w) != FR_OK)
        on_task_written(w, FR_EIO, path);
    free(path);
    if (ts->save) {
        path = save_path(wf, ts);
        if (fr_output_write_inside(loop, root, path, data, strlen(data), on_task_written, w) !=
            FR_OK)
            on_task_written(w, FR_EIO, path);
        free(path);
    }
    free(json_text);
}
