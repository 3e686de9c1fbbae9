#include "engine/output.h"

#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One write in progress: open, write until done, close. */
typedef struct job {
    uv_fs_t req;
    uv_loop_t *loop;
    char *path;
    char *data;
    size_t len, off;
    uv_file fd;
    int rc;
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
        j->rc = FR_EIO;
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

int fr_output_write(uv_loop_t *loop, const char *path, const char *data, size_t len,
                    fr_output_done_fn done, void *ud)
{
    job *j = fr_xcalloc(1, sizeof *j);
    j->path = fr_xstrdup(path);
    j->data = fr_xstrndup(data, len);
    j->len = len;
    j->done = done;
    j->ud = ud;
    j->loop = loop;
    j->req.data = j;
    if (uv_fs_open(loop, &j->req, j->path, O_WRONLY | O_CREAT | O_TRUNC, 0644, on_open) != 0) {
        free(j->path);
        free(j->data);
        free(j);
        return FR_EIO;
    }
    return FR_OK;
}
