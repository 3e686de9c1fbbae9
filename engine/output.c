#include "engine/output.h"

#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One write in progress: open, write until done, close. */
typedef struct job {
    uv_fs_t req;
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
    char *p = fr_xstrdup(dir);
    int rc = FR_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                rc =
                    fr_error_set(err, FR_EIO, p, 0, "cannot create directory: %s", strerror(errno));
                break;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    return rc;
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

static void finish(job *j)
{
    if (j->done)
        j->done(j->ud, j->rc, j->path);
    free(j->path);
    free(j->data);
    free(j->root);
    free(j);
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

static void start_open(job *j);

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

static void start_open(job *j)
{
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
