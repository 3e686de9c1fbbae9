/* File watch for hot reload: a uv_fs_event on the file's directory (so a
 * rename over the file is seen like a write in place), filtered by the file's
 * base name, restarts one debounce timer; when it fires, the file is read on
 * libuv's thread pool (a plain open/fstat/read in the worker, which touches
 * nothing but its own result fields) and the content is compared with the last
 * state by FNV-1a hash and length. At most one read is in flight: a debounce
 * that ends during a read starts the next read when it completes, and the
 * result of a read that an event overtook is dropped in favour of that next
 * read, so every change is read and intermediate states are not reported.
 *
 * Lifecycle: two handles plus the read in flight keep the struct alive; after
 * fr_watch_free it is released by whichever of the two close callbacks and the
 * read completion comes last. */

#include "engine/util/watch.h"

#include "engine/util/err.h"
#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

/* Reader results beyond negative errno values. */
#define READ_TOOBIG  (INT_MIN + 1)
#define READ_NOTFILE (INT_MIN + 2)

struct fr_watch {
    uv_loop_t *loop;
    uv_fs_event_t event; /* on the directory; event.data points back */
    uv_timer_t timer;    /* the debounce; timer.data points back */
    uv_work_t work;      /* the read in flight; work.data points back */

    char *path; /* as given, for messages */
    char *full; /* resolved directory + "/" + base, what is read; immutable */
    char *base; /* the name events are filtered by */
    uint64_t debounce_ms;
    fr_watch_fn fn;
    void *ud;

    /* The last state: the last good content (baseline or reported) and the
     * error reported since, NULL when the last read was good. */
    bool have_good;
    uint64_t good_hash;
    size_t good_len;
    char *last_error;

    /* The read in flight. The worker writes rd_*; the loop thread reads them
     * only in the completion callback. */
    bool reading;
    bool stale;   /* an event arrived after the read started */
    bool pending; /* the debounce ended during the read: read again after it */
    char *rd_buf;
    size_t rd_len;
    int rd_rc;

    int open_handles; /* handles initialised and not yet closed */
    bool closing;     /* fr_watch_free was called */
    long reads, changes;
};

/* 64-bit FNV-1a: content identity for the change test, with the length. */
static uint64_t fnv1a(const char *s, size_t n)
{
    return fr_fnv1a64(s, n, FR_FNV1A64_BASIS);
}

/* Reads the whole file at `path` into *out (owned, NUL-terminated, *len
 * bytes). Returns 0, a negative errno, READ_NOTFILE or READ_TOOBIG. Plain
 * blocking I/O: runs on a worker thread, or at startup for the baseline, so
 * it touches no shared state. O_NONBLOCK keeps a FIFO from blocking the open;
 * the file may grow while it is read, so the cap is checked on the bytes read
 * too, not only on the size fstat gave. */
static int read_file(const char *path, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd;
    do
        fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return -errno;

    int rc = 0;
    char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = S_ISDIR(st.st_mode) ? -EISDIR : READ_NOTFILE;
        goto cleanup;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > FR_WATCH_MAX_BYTES) {
        rc = READ_TOOBIG;
        goto cleanup;
    }
    /* Room for the size fstat gave, one byte to notice growth, and the NUL. */
    size_t cap = (size_t)st.st_size + 2;
    size_t n = 0;
    buf = fr_xmalloc(cap);
    for (;;) {
        if (n + 1 == cap) {
            if (n > FR_WATCH_MAX_BYTES) {
                rc = READ_TOOBIG;
                goto cleanup;
            }
            cap = cap * 2 > FR_WATCH_MAX_BYTES + 2 ? FR_WATCH_MAX_BYTES + 2 : cap * 2;
            buf = fr_xrealloc(buf, cap);
        }
        ssize_t got = read(fd, buf + n, cap - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            goto cleanup;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > FR_WATCH_MAX_BYTES) {
        rc = READ_TOOBIG;
        goto cleanup;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;
cleanup:
    free(buf);
    close(fd);
    return rc;
}

/* Returns an owned message for a reader result other than 0. */
static char *read_error(const fr_watch *w, int rc)
{
    if (rc == READ_TOOBIG)
        return fr_xasprintf("%s: file is larger than %zu MiB", w->path,
                            FR_WATCH_MAX_BYTES / (1024 * 1024));
    if (rc == READ_NOTFILE)
        return fr_xasprintf("%s: not a regular file", w->path);
    return fr_xasprintf("%s: %s", w->path, uv_strerror(rc));
}

static void watch_release(fr_watch *w)
{
    free(w->rd_buf);
    free(w->last_error);
    free(w->path);
    free(w->full);
    free(w->base);
    free(w);
}

/* Frees the watch once it is closing and nothing of libuv refers to it. */
static void maybe_release(fr_watch *w)
{
    if (w->closing && w->open_handles == 0 && !w->reading)
        watch_release(w);
}

static void on_close(uv_handle_t *h)
{
    fr_watch *w = h->data;
    w->open_handles--;
    maybe_release(w);
}

static void work_read(uv_work_t *req)
{
    fr_watch *w = req->data;
    w->rd_rc = read_file(w->full, &w->rd_buf, &w->rd_len);
}

static void after_read(uv_work_t *req, int status);

static void start_read(fr_watch *w)
{
    w->reading = true;
    w->stale = false;
    w->pending = false;
    if (uv_queue_work(w->loop, &w->work, work_read, after_read) != 0)
        w->reading = false; /* only for invalid arguments; cannot happen here */
}

/* Compares a finished read with the last state and calls fn on a change.
 * Takes `buf`. fn may call fr_watch_free: nothing here frees the watch. */
static void report(fr_watch *w, int rc, char *buf, size_t len)
{
    if (rc == 0) {
        uint64_t hash = fnv1a(buf, len);
        bool same = w->have_good && hash == w->good_hash && len == w->good_len;
        free(w->last_error);
        w->last_error = NULL;
        if (!same) {
            w->have_good = true;
            w->good_hash = hash;
            w->good_len = len;
            w->changes++;
            w->fn(w->ud, buf, len, NULL);
        }
        free(buf);
        return;
    }
    free(buf);
    char *msg = read_error(w, rc);
    if (w->last_error && strcmp(w->last_error, msg) == 0) {
        free(msg);
        return;
    }
    free(w->last_error);
    w->last_error = msg;
    w->changes++;
    w->fn(w->ud, NULL, 0, w->last_error);
}

static void after_read(uv_work_t *req, int status)
{
    fr_watch *w = req->data;
    char *buf = w->rd_buf;
    w->rd_buf = NULL;
    w->reading = false;
    if (w->closing || status != 0) {
        free(buf);
        maybe_release(w);
        return;
    }
    w->reads++;
    if (w->stale)
        free(buf); /* an event overtook this read: the next read reports */
    else
        report(w, w->rd_rc, buf, w->rd_len);
    if (w->closing) {
        maybe_release(w); /* fn called fr_watch_free; handles still closing */
        return;
    }
    if (w->pending)
        start_read(w);
}

static void on_debounce(uv_timer_t *t)
{
    fr_watch *w = t->data;
    if (w->closing)
        return;
    if (w->reading)
        w->pending = true; /* no overlapping reads: after this one */
    else
        start_read(w);
}

static void on_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    (void)events;
    fr_watch *w = h->data;
    if (w->closing)
        return;
    /* A NULL name (or an error from the watch) may concern the file: re-read. */
    if (status == 0 && filename && strcmp(filename, w->base) != 0)
        return;
    if (w->reading)
        w->stale = true;
    uv_timer_start(&w->timer, on_debounce, w->debounce_ms, 0);
}

/* Splits `path` into its directory and base name (both owned). Returns false
 * for a path without a base name. */
static bool split_path(const char *path, char **dir, char **base)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    if (!slash)
        *dir = fr_xstrdup(".");
    else if (slash == path)
        *dir = fr_xstrdup("/");
    else
        *dir = fr_xstrndup(path, (size_t)(slash - path));
    *base = fr_xstrdup(name);
    return true;
}

fr_watch *fr_watch_new(uv_loop_t *loop, const char *path, uint64_t debounce_ms, fr_watch_fn fn,
                       void *ud, fr_error *err)
{
    if (!loop || !path || !fn) {
        fr_error_set(err, FR_EINVAL, path ? path : "watch", 0, "no loop, path or callback");
        return NULL;
    }
    char *dir = NULL, *base = NULL, *real = NULL, *buf = NULL;
    size_t len = 0;
    fr_watch *w = NULL;
    struct stat st;
    int rc;
    if (!split_path(path, &dir, &base)) {
        fr_error_set(err, FR_EINVAL, path, 0, "not a file path");
        goto cleanup;
    }
    /* Resolve the directory once, so a later chdir cannot change what is read. */
    real = realpath(dir, NULL);
    if (!real || stat(real, &st) != 0) {
        fr_error_set(err, FR_EIO, path, 0, "cannot watch directory %s: %s", dir, strerror(errno));
        goto cleanup;
    }
    if (!S_ISDIR(st.st_mode)) {
        fr_error_set(err, FR_EIO, path, 0, "cannot watch directory %s: not a directory", dir);
        goto cleanup;
    }

    w = fr_xcalloc(1, sizeof *w);
    w->loop = loop;
    w->path = fr_xstrdup(path);
    w->full = fr_xasprintf("%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", base);
    w->base = base;
    base = NULL;
    w->debounce_ms = debounce_ms ? debounce_ms : FR_WATCH_DEFAULT_DEBOUNCE_MS;
    w->fn = fn;
    w->ud = ud;
    w->event.data = w;
    w->timer.data = w;
    w->work.data = w;
    uv_fs_event_init(loop, &w->event);
    uv_timer_init(loop, &w->timer);
    w->open_handles = 2;

    rc = uv_fs_event_start(&w->event, on_event, real, 0);
    if (rc != 0) {
        fr_error_set(err, FR_EIO, path, 0, "cannot watch directory %s: %s", dir, uv_strerror(rc));
        fr_watch_free(w); /* released in the close callbacks */
        w = NULL;
        goto cleanup;
    }

    /* The baseline is read after the watch started: a change in between is
     * either in the baseline or followed by an event, never lost. */
    rc = read_file(w->full, &buf, &len);
    if (rc == 0) {
        w->have_good = true;
        w->good_hash = fnv1a(buf, len);
        w->good_len = len;
    } else {
        w->last_error = read_error(w, rc);
    }
    free(buf);
cleanup:
    free(dir);
    free(base);
    free(real);
    return w;
}

void fr_watch_free(fr_watch *w)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    if (w->reading)
        uv_cancel((uv_req_t *)&w->work); /* fails once the worker runs: then it finishes */
    uv_close((uv_handle_t *)&w->event, on_close);
    uv_close((uv_handle_t *)&w->timer, on_close);
}

long fr_watch_reads(const fr_watch *w)
{
    return w ? w->reads : 0;
}

long fr_watch_changes(const fr_watch *w)
{
    return w ? w->changes : 0;
}
