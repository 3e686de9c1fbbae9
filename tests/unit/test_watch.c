/* Unit tests of engine/util/watch: a real libuv loop watching a file in a fresh
 * temporary directory. The changes to the file are made synchronously from
 * timer callbacks on the same loop, every wait is bounded by a watchdog, and
 * every test ends with the watch freed, the loop run until empty and
 * uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "engine/util/watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/tmpdir.h"

#define WAIT_LIMIT_S  5.0
#define DRAIN_LIMIT_S 10.0
#define DEBOUNCE_MS   20
#define MAX_ACTIONS   8

typedef struct fx fx;
typedef void (*action_fn)(fx *f);

/* A change to make from a timer callback. */
typedef struct action {
    uv_timer_t timer; /* timer.data points back */
    fx *f;
    action_fn fn;
} action;

/* Work that holds the thread pool's only thread until released, so that the
 * watch's read stays queued ("in flight") as long as a test needs. */
typedef struct blocker {
    uv_work_t req; /* req.data points back */
    uv_sem_t sem;
    bool queued;
    bool released;
    bool done;
} blocker;

struct fx {
    uv_loop_t loop;
    action actions[MAX_ACTIONS];
    int nactions;
    char dir[PATH_MAX];
    char path[PATH_MAX];
    fr_watch *w;
    /* What the watch reported. */
    int calls;
    int errors;
    char *content; /* last content, owned */
    size_t len;
    char *error; /* last error, owned */
    bool free_in_callback;
    blocker block;
};

/* ---- files ------------------------------------------------------------------ */

static void join(char *out, const fx *f, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", f->dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

/* Writes `len` bytes in place: open with O_TRUNC, then write. */
static void write_bytes(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

static void write_str(const char *path, const char *s)
{
    write_bytes(path, s, strlen(s));
}

/* What an editor does: write a temporary file beside, rename it over. */
static void rename_over(fx *f, const char *s)
{
    char tmp[PATH_MAX];
    join(tmp, f, ".policy.lua.swp");
    write_str(tmp, s);
    assert_int_equal(rename(tmp, f->path), 0);
}

/* ---- the watch callback ----------------------------------------------------- */

static void on_change(void *ud, const char *content, size_t len, const char *error)
{
    fx *f = ud;
    f->calls++;
    free(f->content);
    free(f->error);
    f->content = NULL;
    f->error = NULL;
    f->len = len;
    if (content) {
        assert_null(error);
        assert_int_equal(content[len], '\0');
        f->content = fr_xstrndup(content, len);
    } else {
        assert_non_null(error);
        assert_int_equal(len, 0);
        f->error = fr_xstrdup(error);
        f->errors++;
    }
    if (f->free_in_callback) {
        fr_watch_free(f->w);
        fr_watch_free(f->w); /* a second call does nothing */
        f->w = NULL;
    }
}

/* ---- the loop ----------------------------------------------------------------- */

static void on_action(uv_timer_t *t)
{
    action *a = t->data;
    a->fn(a->f);
}

/* Runs `fn` from a timer callback `ms` from now. */
static void at(fx *f, uint64_t ms, action_fn fn)
{
    assert_true(f->nactions < MAX_ACTIONS);
    action *a = &f->actions[f->nactions++];
    a->f = f;
    a->fn = fn;
    a->timer.data = a;
    uv_timer_init(&f->loop, &a->timer);
    uv_timer_start(&a->timer, on_action, ms, 0);
}

/* Runs the loop until `cond` holds, for at most WAIT_LIMIT_S, failing the
 * test with `cond` as the message when it does not. */
#define RUN_UNTIL(f, cond) LOOP_RUN_UNTIL(&(f)->loop, cond, WAIT_LIMIT_S)

static void block_work(uv_work_t *req)
{
    blocker *b = req->data;
    uv_sem_wait(&b->sem);
}

static void block_done(uv_work_t *req, int status)
{
    blocker *b = req->data;
    assert_int_equal(status, 0);
    b->done = true;
}

/* Occupies the thread pool (one thread: see main) until block_release. */
static void block_pool(fx *f)
{
    blocker *b = &f->block;
    assert_int_equal(uv_sem_init(&b->sem, 0), 0);
    b->req.data = b;
    assert_int_equal(uv_queue_work(&f->loop, &b->req, block_work, block_done), 0);
    b->queued = true;
}

static void block_release(fx *f)
{
    if (f->block.queued && !f->block.released) {
        f->block.released = true;
        uv_sem_post(&f->block.sem);
    }
}

static void start_watch(fx *f, uint64_t debounce_ms)
{
    fr_error err = {0};
    f->w = fr_watch_new(&f->loop, f->path, debounce_ms, on_change, f, &err);
    if (!f->w)
        fail_msg("fr_watch_new: %s", err.msg);
}

static int setup(void **state)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/flowrun-watch-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    join(f->path, f, "policy.lua");
    write_str(f->path, "return 1\n");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fr_watch_free(f->w);
    for (int i = 0; i < f->nactions; i++)
        uv_close((uv_handle_t *)&f->actions[i].timer, NULL);
    block_release(f); /* a failed test may leave the pool held */
    char why[384];
    bool closed = loop_drain(&f->loop, DRAIN_LIMIT_S, why, sizeof why);
    if (f->block.queued)
        uv_sem_destroy(&f->block.sem);
    tmpdir_remove(f->dir);
    free(f->content);
    free(f->error);
    free(f);
    if (!closed)
        fail_msg("%s", why); /* a handle left open, or the loop still busy */
    return 0;
}

/* ---- actions ------------------------------------------------------------------ */

static void act_write_v2(fx *f)
{
    write_str(f->path, "return 2\n");
}

static void act_write_v3(fx *f)
{
    write_str(f->path, "return 3\n");
}

static void act_write_v4(fx *f)
{
    write_str(f->path, "return 4\n");
}

static void act_write_v1(fx *f)
{
    write_str(f->path, "return 1\n");
}

static void act_rename_v2(fx *f)
{
    rename_over(f, "return 2 -- renamed\n");
}

static void act_rename_v1(fx *f)
{
    rename_over(f, "return 1\n");
}

static void act_touch(fx *f)
{
    assert_int_equal(utimensat(AT_FDCWD, f->path, NULL, 0), 0);
}

static void act_truncate(fx *f)
{
    assert_int_equal(truncate(f->path, 0), 0);
}

static void act_delete(fx *f)
{
    assert_int_equal(unlink(f->path), 0);
}

/* An event for the file's name that leaves it missing. */
static void act_create_delete(fx *f)
{
    write_str(f->path, "return 9\n");
    assert_int_equal(unlink(f->path), 0);
}

static void act_other_files(fx *f)
{
    char p[PATH_MAX], q[PATH_MAX];
    join(p, f, "other.lua");
    write_str(p, "return 'other'\n");
    join(q, f, "policy.lua~");
    write_str(q, "return 'backup'\n");
    assert_int_equal(rename(q, p), 0);
    assert_int_equal(unlink(p), 0);
}

static void act_write_huge(fx *f)
{
    size_t n = FR_WATCH_MAX_BYTES + 1;
    char *big = fr_xmalloc(n);
    memset(big, '-', n);
    write_bytes(f->path, big, n);
    free(big);
}

static void act_write_max(fx *f)
{
    size_t n = FR_WATCH_MAX_BYTES;
    char *big = fr_xmalloc(n);
    memset(big, '-', n);
    write_bytes(f->path, big, n);
    free(big);
}

static void act_write_then_free(fx *f)
{
    write_str(f->path, "return 2\n");
    fr_watch_free(f->w);
    f->w = NULL;
}

static void act_release(fx *f)
{
    block_release(f);
}

static void act_free(fx *f)
{
    fr_watch_free(f->w);
    f->w = NULL;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_write_in_place(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_int_equal(f->calls, 1);
    assert_string_equal(f->content, "return 2\n");
    assert_int_equal(f->len, strlen("return 2\n"));
    assert_int_equal(fr_watch_reads(f->w), 1);
    assert_int_equal(fr_watch_changes(f->w), 1);

    /* Truncate, then write, in two steps inside one debounce. */
    at(f, 0, act_truncate);
    at(f, 5, act_write_v3);
    RUN_UNTIL(f, f->calls >= 2);
    assert_string_equal(f->content, "return 3\n");
}

static void test_rename_over(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_rename_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_int_equal(f->calls, 1);
    assert_string_equal(f->content, "return 2 -- renamed\n");
    /* The temporary file's own events caused no read. */
    assert_int_equal(fr_watch_reads(f->w), 1);

    /* The watch follows the new inode: a write in place after the rename. */
    at(f, 0, act_write_v3);
    RUN_UNTIL(f, f->calls >= 2);
    assert_string_equal(f->content, "return 3\n");
}

static void test_burst_is_one_read(void **state)
{
    fx *f = *state;
    /* A long debounce, so that the writes 5 ms apart fall inside it even on a
     * slow (sanitised, valgrind) run. */
    start_watch(f, 200);
    at(f, 0, act_write_v2);
    at(f, 5, act_rename_v2);
    at(f, 10, act_write_v4);
    RUN_UNTIL(f, f->calls >= 1);
    assert_int_equal(f->calls, 1);
    assert_string_equal(f->content, "return 4\n");
    assert_int_equal(fr_watch_reads(f->w), 1);
}

static void test_same_content_is_no_change(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_touch);
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 1);
    assert_int_equal(fr_watch_changes(f->w), 0);

    at(f, 0, act_write_v1); /* the same bytes, written in place */
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 2);
    assert_int_equal(fr_watch_changes(f->w), 0);

    at(f, 0, act_rename_v1); /* the same bytes, renamed over */
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 3);
    assert_int_equal(fr_watch_changes(f->w), 0);
    assert_int_equal(f->calls, 0);

    /* A real change after all that is still seen. */
    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_string_equal(f->content, "return 2\n");
    assert_int_equal(fr_watch_reads(f->w), 4);
}

static void test_other_files_ignored(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_other_files);
    /* Well after the debounce a read of the other files would have ended. */
    at(f, 5 * DEBOUNCE_MS, act_write_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_string_equal(f->content, "return 2\n");
    assert_int_equal(fr_watch_reads(f->w), 1);
    assert_int_equal(f->calls, 1);
}

static void test_delete_then_recreate(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_delete);
    RUN_UNTIL(f, f->calls >= 1);
    assert_null(f->content);
    assert_non_null(strstr(f->error, f->path));
    assert_non_null(strstr(f->error, "no such file or directory"));

    /* Still missing after another event: the same error is not reported again. */
    at(f, 0, act_create_delete);
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 2);
    assert_int_equal(f->calls, 1);
    assert_int_equal(f->errors, 1);

    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 2);
    assert_null(f->error);
    assert_string_equal(f->content, "return 2\n");

    /* Gone again after good content: an error worth reporting again. */
    at(f, 0, act_delete);
    RUN_UNTIL(f, f->calls >= 3);
    assert_int_equal(f->errors, 2);
}

static void test_back_with_same_content(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_delete);
    RUN_UNTIL(f, f->calls >= 1);
    assert_non_null(f->error);

    /* Back with the content it had: nothing changed for the reader. */
    at(f, 0, act_write_v1);
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 2);
    assert_int_equal(f->calls, 1);

    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 2);
    assert_string_equal(f->content, "return 2\n");
}

static void test_missing_at_start(void **state)
{
    fx *f = *state;
    assert_int_equal(unlink(f->path), 0);
    start_watch(f, DEBOUNCE_MS);
    /* The missing file is the baseline: another event for it reports nothing. */
    at(f, 0, act_create_delete);
    RUN_UNTIL(f, fr_watch_reads(f->w) >= 1);
    assert_int_equal(f->calls, 0);

    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_string_equal(f->content, "return 2\n");
}

static void test_size_cap(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_write_huge);
    RUN_UNTIL(f, f->calls >= 1);
    assert_null(f->content);
    assert_non_null(strstr(f->error, "larger than 1 MiB"));

    at(f, 0, act_write_max); /* exactly at the cap is fine */
    RUN_UNTIL(f, f->calls >= 2);
    assert_non_null(f->content);
    assert_int_equal(f->len, FR_WATCH_MAX_BYTES);
}

static void test_free_inside_callback(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    f->free_in_callback = true;
    at(f, 0, act_write_v2);
    RUN_UNTIL(f, f->calls >= 1);
    assert_null(f->w);
    assert_string_equal(f->content, "return 2\n");
    /* A change after the free reaches nobody, and nothing keeps the loop alive. */
    at(f, 0, act_write_v3);
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
    assert_int_equal(f->calls, 1);
}

static void test_free_with_debounce_pending(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_write_then_free);
    RUN_UNTIL(f, f->w == NULL);
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
    assert_int_equal(f->calls, 0);
}

/* A change while a read is in flight is read after it: no overlapping reads,
 * no lost change, and the overtaken read's result is not reported. */
static void test_change_during_read(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    block_pool(f);
    at(f, 0, act_write_v2);               /* its read is queued behind the blocker */
    at(f, 5 * DEBOUNCE_MS, act_write_v3); /* an event during that read */
    at(f, 10 * DEBOUNCE_MS, act_release); /* the second debounce ended during it too */
    RUN_UNTIL(f, f->calls >= 1);
    assert_true(f->block.done);
    assert_string_equal(f->content, "return 3\n");
    assert_int_equal(fr_watch_reads(f->w), 2);
    assert_int_equal(f->calls, 1);
}

/* Freed while its read waits for a thread: the read is cancelled or finishes,
 * fn is not called, and the memory goes when the loop is done with it. */
static void test_free_with_read_in_flight(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    block_pool(f);
    at(f, 0, act_write_v2);
    at(f, 5 * DEBOUNCE_MS, act_free);
    at(f, 6 * DEBOUNCE_MS, act_release);
    RUN_UNTIL(f, f->block.done);
    assert_null(f->w);
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
    assert_int_equal(f->calls, 0);
}

/* The same, with the free landing around the moment the read starts: queued,
 * running or done, the loop must end clean. */
static void test_free_as_read_starts(void **state)
{
    fx *f = *state;
    start_watch(f, DEBOUNCE_MS);
    at(f, 0, act_write_huge);
    at(f, DEBOUNCE_MS + 1, act_free);
    RUN_UNTIL(f, f->w == NULL);
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
    assert_true(f->calls <= 1);
}

static void test_bad_paths(void **state)
{
    fx *f = *state;
    fr_error err = {0};
    char p[PATH_MAX];
    join(p, f, "no-such-dir/policy.lua");
    assert_null(fr_watch_new(&f->loop, p, 0, on_change, f, &err));
    assert_int_equal(err.code, FR_EIO);
    assert_non_null(strstr(err.msg, "cannot watch directory"));

    memset(&err, 0, sizeof err);
    join(p, f, "");
    assert_null(fr_watch_new(&f->loop, p, 0, on_change, f, &err));
    assert_int_equal(err.code, FR_EINVAL);

    memset(&err, 0, sizeof err);
    join(p, f, "policy.lua/inner.lua"); /* the "directory" is a file */
    assert_null(fr_watch_new(&f->loop, p, 0, on_change, f, &err));
    assert_int_equal(err.code, FR_EIO);

    assert_null(fr_watch_new(&f->loop, p, 0, on_change, f, NULL)); /* err is optional */
    fr_watch_free(NULL);
    assert_int_equal(fr_watch_reads(NULL), 0);
    assert_int_equal(fr_watch_changes(NULL), 0);
}

/* A directory that can be searched but not read: realpath works, inotify
 * refuses, so the handles already opened must close from the loop. */
static void test_unwatchable_directory(void **state)
{
    fx *f = *state;
    if (geteuid() == 0)
        skip(); /* root reads every directory */
    char d[PATH_MAX], p[PATH_MAX];
    join(d, f, "locked");
    assert_int_equal(mkdir(d, 0300), 0);
    int n = snprintf(p, sizeof p, "%s/policy.lua", d);
    assert_true(n > 0 && n < (int)sizeof p);
    fr_error err = {0};
    fr_watch *w = fr_watch_new(&f->loop, p, 0, on_change, f, &err);
    chmod(d, 0700);
    assert_null(w);
    assert_int_equal(err.code, FR_EIO);
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
}

int main(void)
{
    /* One pool thread, so that a blocker can hold a read in the queue. */
    setenv("UV_THREADPOOL_SIZE", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rename_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_is_one_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_content_is_no_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_files_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_then_recreate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_back_with_same_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_debounce_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_during_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_read_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_as_read_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatchable_directory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
