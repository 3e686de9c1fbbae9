#include "engine/output.h"

#include "engine/util/fs.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Output files open at once. libuv's thread pool runs the opens of many
 * finished tasks before their writes and closes, so without this bound a
 * burst of finished tasks holds a descriptor each (a share of the reserve in
 * engine/util/fdlimit.h). */
#define MAX_OPEN_OUTPUTS 16
/* An open that found no descriptor (EMFILE, ENFILE) tries again after this,
 * doubling up to OPEN_RETRY_MAX_MS, OPEN_RETRIES times (about four minutes)
 * before the write fails. */
#define OPEN_RETRY_MS     10
#define OPEN_RETRY_MAX_MS 2000
#define OPEN_RETRIES      130

/* One write in progress: open, write until done, close. */
typedef struct job {
    uv_fs_t req;
    uv_timer_t timer; /* the wait before an open tries again; timer.data points back */
    bool timer_init;
    bool holds_slot; /* counted in open_jobs */
    int retries;
    struct job *next; /* in the wait queue */
    uv_loop_t *loop;
    char *path;
    char *data;
    size_t len, off;
    uv_file fd;
    int rc;
    char *root; /* confine to this real path, or NULL */
    fr_output_done_fn done;
    void *ud;
} job;

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

/* Writes holding a descriptor (or about to), and those waiting for one, in
 * order. Outputs are written from the run's loop thread only. */
static int open_jobs;
static job *queue_head, *queue_tail;

static void open_now(job *j);

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

/* Gives the job's slot back and starts the next waiting write. */
static void release_slot(job *j)
{
    if (!j->holds_slot)
        return;
    j->holds_slot = false;
    open_jobs--;
    while (queue_head && open_jobs < MAX_OPEN_OUTPUTS) {
        job *n = queue_head;
        queue_head = n->next;
        if (!queue_head)
            queue_tail = NULL;
        n->next = NULL;
        open_now(n);
    }
}

static void finish(job *j)
{
    if (j->done)
        j->done(j->ud, j->rc, j->path);
    release_slot(j);
    if (j->timer_init)
        uv_close((uv_handle_t *)&j->timer, on_timer_closed);
    else
        free_job(j);
}

static void start_open(job *j);

static void on_retry_open(uv_timer_t *t)
{
    start_open(t->data);
}

/* The open found no descriptor: another write or a transfer will free one,
 * so wait and try again rather than lose the output. */
static void retry_open(job *j)
{
    release_slot(j);
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

static void on_close(uv_fs_t *req)
{
    job *j = req->data;
    if (req->result < 0)
        j->rc = FR_EIO;
    uv_fs_req_cleanup(req);
    finish(j);
}

static void close_file(job *j)
{
    j->req.data = j;
    if (uv_fs_close(j->loop, &j->req, j->fd, on_close) != 0) {
        j->rc = FR_EIO;
        finish(j);
    }
}

static void on_write(uv_fs_t *req)
{
    job *j = req->data;
    ssize_t n = req->result;
    uv_loop_t *loop = req->loop;
    uv_fs_req_cleanup(req);
    if (n < 0) {
        j->rc = FR_EIO;
        close_file(j);
        return;
    }
    j->off += (size_t)n;
    if (j->off >= j->len) {
        close_file(j);
        return;
    }
    uv_buf_t b = uv_buf_init(j->data + j->off, (unsigned)(j->len - j->off));
    j->req.data = j;
    if (uv_fs_write(loop, &j->req, j->fd, &b, 1, -1, on_write) != 0) {
        j->rc = FR_EIO;
        close_file(j);
    }
}

static void on_open(uv_fs_t *req)
{
    job *j = req->data;
    uv_loop_t *loop = req->loop;
    ssize_t fd = req->result;
    uv_fs_req_cleanup(req);
    if ((fd == UV_EMFILE || fd == UV_ENFILE) && j->retries < OPEN_RETRIES) {
        retry_open(j);
        return;
    }
    if (fd < 0) {
        /* A confined write never follows a link at the file itself. */
        j->rc = j->root && fd == UV_ELOOP ? FR_EINVAL : FR_EIO;
        finish(j);
        return;
    }
    j->fd = (uv_file)fd;
    uv_buf_t b = uv_buf_init(j->data, (unsigned)j->len);
    j->req.data = j;
    if (uv_fs_write(loop, &j->req, j->fd, &b, 1, -1, on_write) != 0) {
        j->rc = FR_EIO;
        close_file(j);
    }
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

static void on_realpath(uv_fs_t *req)
{
    job *j = req->data;
    bool inside = req->result == 0 && req->ptr && is_inside(j->root, req->ptr);
    uv_fs_req_cleanup(req);
    if (!inside) {
        j->rc = FR_EINVAL;
        finish(j);
        return;
    }
    start_open(j);
}

/* Opens now if fewer than MAX_OPEN_OUTPUTS writes hold a descriptor, else
 * waits in the queue for one to end. */
static void start_open(job *j)
{
    if (open_jobs >= MAX_OPEN_OUTPUTS) {
        if (queue_tail)
            queue_tail->next = j;
        else
            queue_head = j;
        queue_tail = j;
        return;
    }
    open_now(j);
}

static void open_now(job *j)
{
    j->holds_slot = true;
    open_jobs++;
    j->req.data = j;
    int flags = O_WRONLY | O_CREAT | O_TRUNC | (j->root ? O_NOFOLLOW : 0);
    if (uv_fs_open(j->loop, &j->req, j->path, flags, 0644, on_open) != 0) {
        j->rc = FR_EIO;
        finish(j);
    }
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
    j->req.data = j;
    if (!root) {
        start_open(j);
        return FR_OK;
    }
    const char *slash = strrchr(path, '/');
    char *dir = !slash          ? fr_xstrdup(".")
                : slash == path ? fr_xstrdup("/")
                                : fr_xstrndup(path, (size_t)(slash - path));
    int rc = uv_fs_realpath(loop, &j->req, dir, on_realpath);
    free(dir);
    if (rc != 0) {
        j->rc = FR_EIO;
        finish(j);
    }
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
        fr_log(FR_LOG_ERROR, "output",
               "path=%s error=\"refused: the save path now leads outside the workflow's "
               "folder (a symbolic link); remove the link, or run with "
               "--allow-save-anywhere\"",
               path);
    else if (rc != FR_OK)
        fr_log(FR_LOG_ERROR, "output", "path=%s error=\"cannot write the output\"", path);
    if (w->done)
        w->done(w->ud, rc, path);
    if (--w->pending == 0)
        free(w);
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
    char *path = fr_xasprintf("%s/%s.%s", out_dir, ts->name, json_text ? "json" : "txt");
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
