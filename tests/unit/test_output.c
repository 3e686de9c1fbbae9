/* Unit tests of engine/output: writes confined to a folder, on a real
 * libuv loop in fresh temporary folders. A write whose folder leads out
 * through a symbolic link, or whose file is a symbolic link, is refused with
 * FR_EINVAL and writes nothing; hundreds of writes started at once each end
 * once with their own content, byte for byte, an existing file replaced
 * whole; a write into a folder that is not there ends with FR_EIO and a task
 * output's failure is logged naming the path; an open that finds no
 * descriptor waits for one. Each test runs the loop until empty and ends
 * with uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/output.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/tmpdir.h"

#define WAIT_LIMIT_S 5.0

typedef struct fx {
    char root[PATH_MAX];    /* the real path of the confining folder */
    char outside[PATH_MAX]; /* a folder beside it */
} fx;

typedef struct result {
    int calls;
    int rc;
} result;

static void on_done(void *ud, int rc, const char *path)
{
    (void)path;
    result *res = ud;
    res->calls++;
    res->rc = rc;
}

static int setup(void **state)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    char tmpl[] = "/tmp/flowrun-output-XXXXXX";
    char tmpl2[] = "/tmp/flowrun-output-out-XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    assert_non_null(mkdtemp(tmpl2));
    assert_non_null(realpath(tmpl, f->root));
    assert_non_null(realpath(tmpl2, f->outside));
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/in", f->root);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/link", f->root);
    assert_int_equal(symlink(f->outside, p), 0); /* a folder link that leads out */
    char target[PATH_MAX + 16];
    snprintf(target, sizeof target, "%s/target.txt", f->outside);
    snprintf(p, sizeof p, "%s/file.txt", f->root);
    assert_int_equal(symlink(target, p), 0); /* a file link, dangling, that leads out */
    snprintf(p, sizeof p, "%s/inlink", f->root);
    assert_int_equal(symlink(f->root, p), 0); /* a folder link that stays inside */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    assert_true(tmpdir_remove(f->root));
    assert_true(tmpdir_remove(f->outside));
    free(f);
    return 0;
}

static bool write_done(void *ud)
{
    return ((const result *)ud)->calls > 0;
}

/* Writes "data" to `path` confined to `root` (NULL: not confined) on a
 * fresh loop run until the done callback, then until empty; returns the rc
 * the done callback saw. */
static int write_one(const char *root, const char *path)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    result res = {0, 1};
    assert_int_equal(fr_output_write_inside(&loop, root, path, "data", 4, on_done, &res), FR_OK);
    loop_run_until(&loop, write_done, &res, WAIT_LIMIT_S, "the write's done callback");
    loop_drain_close(&loop, WAIT_LIMIT_S); /* uv_loop_close() == 0 */
    assert_int_equal(res.calls, 1);
    return res.rc;
}

static bool exists(const char *dir, const char *name)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static void test_write_inside(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/in/a.txt", f->root);
    assert_int_equal(write_one(f->root, p), FR_OK);
    FILE *fp = fopen(p, "r");
    assert_non_null(fp);
    char buf[16] = {0};
    assert_int_equal(fread(buf, 1, sizeof buf - 1, fp), 4);
    fclose(fp);
    assert_string_equal(buf, "data");
    snprintf(p, sizeof p, "%s/inlink/in/b.txt", f->root);
    assert_int_equal(write_one(f->root, p), FR_OK);
    assert_true(exists(f->root, "in/b.txt"));
}

static void test_write_refused_through_links(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/link/escaped.txt", f->root);
    assert_int_equal(write_one(f->root, p), FR_EINVAL);
    assert_false(exists(f->outside, "escaped.txt"));
    snprintf(p, sizeof p, "%s/file.txt", f->root);
    assert_int_equal(write_one(f->root, p), FR_EINVAL);
    assert_false(exists(f->outside, "target.txt"));
    /* Unconfined (--allow-save-anywhere), the same writes go through. */
    snprintf(p, sizeof p, "%s/link/escaped.txt", f->root);
    assert_int_equal(write_one(NULL, p), FR_OK);
    assert_true(exists(f->outside, "escaped.txt"));
}

/* What file `i` of a batch holds: sizes from empty to several pages. */
static char *content_of(int i, size_t *len)
{
    size_t n = (size_t)(i * 37) % 9000;
    char *p = fr_xmalloc(n + 1);
    for (size_t k = 0; k < n; k++)
        p[k] = (char)('a' + (int)((k + (size_t)i) % 26));
    p[n] = '\0';
    *len = n;
    return p;
}

/* Reads file `path` whole (owned), or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = fr_xmalloc(16384);
    *len = fread(buf, 1, 16384, fp);
    fclose(fp);
    return buf;
}

typedef struct many {
    int calls[300];
    int rc[300];
    int total;
} many;

typedef struct slot {
    many *m;
    int i;
} slot;

static void on_many(void *ud, int rc, const char *path)
{
    (void)path;
    slot *s = ud;
    s->m->calls[s->i]++;
    s->m->rc[s->i] = rc;
    s->m->total++;
}

static bool all_done(void *ud)
{
    return ((const many *)ud)->total >= 300;
}

static void test_many_at_once(void **state)
{
    fx *f = *state;
    enum { N = 300 };
    char p[PATH_MAX + 64];
    /* An existing longer file is replaced, not overwritten in place. */
    snprintf(p, sizeof p, "%s/in/f7.txt", f->root);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    for (int k = 0; k < 2000; k++)
        fputs("old content ", fp);
    fclose(fp);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    many m = {0};
    slot slots[N];
    for (int i = 0; i < N; i++) {
        size_t len;
        char *data = content_of(i, &len);
        slots[i] = (slot){&m, i};
        snprintf(p, sizeof p, "%s/in/f%d.txt", f->root, i);
        /* Every third one confined, as a save path is. */
        assert_int_equal(
            fr_output_write_inside(&loop, i % 3 ? NULL : f->root, p, data, len, on_many, &slots[i]),
            FR_OK);
        free(data);
    }
    loop_run_until(&loop, all_done, &m, WAIT_LIMIT_S, "every write's done callback");
    loop_drain_close(&loop, WAIT_LIMIT_S);
    for (int i = 0; i < N; i++) {
        assert_int_equal(m.calls[i], 1);
        assert_int_equal(m.rc[i], FR_OK);
        size_t want_len, got_len = 0;
        char *want = content_of(i, &want_len);
        snprintf(p, sizeof p, "%s/in/f%d.txt", f->root, i);
        char *got = slurp(p, &got_len);
        assert_non_null(got);
        assert_int_equal(got_len, want_len);
        assert_memory_equal(got, want, want_len);
        free(got);
        free(want);
    }
}

typedef struct named {
    int calls;
    int rc;
    char path[PATH_MAX + 64];
} named;

static void on_named(void *ud, int rc, const char *path)
{
    named *n = ud;
    n->calls++;
    n->rc = rc;
    snprintf(n->path, sizeof n->path, "%s", path);
}

static bool named_done(void *ud)
{
    return ((const named *)ud)->calls > 0;
}

static void test_unwritable_folder(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/not-there/a.txt", f->root);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    named n = {0};
    result ok = {0, 1};
    char good[PATH_MAX + 64];
    snprintf(good, sizeof good, "%s/in/good.txt", f->root);
    /* The failure in the middle of others changes nothing for them. */
    assert_int_equal(fr_output_write(&loop, good, "one", 3, on_done, &ok), FR_OK);
    assert_int_equal(fr_output_write(&loop, p, "data", 4, on_named, &n), FR_OK);
    loop_run_until(&loop, named_done, &n, WAIT_LIMIT_S, "the failed write's done callback");
    loop_drain_close(&loop, WAIT_LIMIT_S);
    assert_int_equal(n.calls, 1);
    assert_int_equal(n.rc, FR_EIO);
    assert_string_equal(n.path, p);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(ok.rc, FR_OK);
    assert_true(exists(f->root, "in/good.txt"));

    /* A task's output: the log names the path and says what failed. */
    fr_task_spec ts = {.name = "t1"};
    fr_workflow wf = {.dir = f->root, .tasks = &ts, .ntasks = 1};
    char text[] = "hello";
    fr_reply reply = {.text = text};
    char out_dir[PATH_MAX + 64], logged[1024] = {0};
    snprintf(out_dir, sizeof out_dir, "%s/not-there", f->root);
    FILE *log = tmpfile();
    assert_non_null(log);
    fr_log_set_stream(log);
    assert_int_equal(uv_loop_init(&loop), 0);
    named t = {0};
    fr_output_task(&loop, &wf, 0, out_dir, NULL, &reply, on_named, &t);
    loop_run_until(&loop, named_done, &t, WAIT_LIMIT_S, "the task output's done callback");
    loop_drain_close(&loop, WAIT_LIMIT_S);
    fr_log_set_stream(stderr);
    rewind(log);
    size_t got = fread(logged, 1, sizeof logged - 1, log);
    fclose(log);
    logged[got] = '\0';
    assert_int_equal(t.rc, FR_EIO);
    char want[PATH_MAX + 160];
    snprintf(want, sizeof want, "path=%s/t1.txt error=\"cannot write the output\"", out_dir);
    assert_non_null(strstr(logged, want));
}

/* An open that finds no descriptor waits and tries again; the write ends
 * once one is free, with its content. */
static void count_retry_timer(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TIMER && uv_is_active(h) && h->data != (void *)&loop_watchdog_tag)
        (*(int *)arg)++;
}

/* True once the write waits on its retry timer: its open has failed. */
static bool retry_waiting(void *ud)
{
    int n = 0;
    uv_walk(ud, count_retry_timer, &n);
    return n > 0;
}

static void test_no_descriptor_waits(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/in/later.txt", f->root);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    /* Start the pool's threads first: they need no descriptor, but do it
     * with the limit as it is. */
    result warm = {0, 1};
    char w[PATH_MAX + 64];
    snprintf(w, sizeof w, "%s/in/warm.txt", f->root);
    assert_int_equal(fr_output_write(&loop, w, "w", 1, on_done, &warm), FR_OK);
    loop_run_until(&loop, write_done, &warm, WAIT_LIMIT_S, "the first write");
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    int lowest = dup(0);
    assert_true(lowest >= 0);
    close(lowest);
    struct rlimit low = {.rlim_cur = (rlim_t)lowest, .rlim_max = saved.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    result res = {0, 1};
    assert_int_equal(fr_output_write(&loop, p, "later", 5, on_done, &res), FR_OK);
    /* The limit goes back up only once the write has found none. */
    bool waited = loop_wait_for(&loop, retry_waiting, &loop, WAIT_LIMIT_S);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    assert_true(waited);
    assert_int_equal(res.calls, 0);
    loop_run_until(&loop, write_done, &res, WAIT_LIMIT_S, "the write once a descriptor is free");
    loop_drain_close(&loop, WAIT_LIMIT_S);
    assert_int_equal(res.rc, FR_OK);
    size_t len = 0;
    char *got = slurp(p, &len);
    assert_non_null(got);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "later", 5);
    free(got);
}

static void test_check_inside(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    fr_error err = {0};
    snprintf(p, sizeof p, "%s/in/new/deeper/x.txt", f->root);
    assert_int_equal(fr_output_check_inside(f->root, p, &err), FR_OK);
    snprintf(p, sizeof p, "%s/inlink/x.txt", f->root);
    assert_int_equal(fr_output_check_inside(f->root, p, &err), FR_OK);
    snprintf(p, sizeof p, "%s/link/new/x.txt", f->root);
    assert_int_equal(fr_output_check_inside(f->root, p, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "symbolic link"));
    assert_non_null(strstr(err.msg, f->outside));
    snprintf(p, sizeof p, "%s/file.txt", f->root);
    assert_int_equal(fr_output_check_inside(f->root, p, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "symbolic link"));
}

/* The folder of runs is created with its parents and, where the file
 * system has the flag (ext4), marked as the top of a directory hierarchy,
 * so that each run's folder is spread to a block group of its own; a
 * second call keeps it; a folder that cannot be made is FR_EIO. */
static void test_runs_folder(void **state)
{
    fx *f = *state;
    char p[PATH_MAX + 64];
    fr_error err = {0};
    snprintf(p, sizeof p, "%s/.flowrun/out", f->root);
    assert_int_equal(fr_output_runs_folder(p, &err), FR_OK);
    assert_int_equal(fr_output_runs_folder(p, &err), FR_OK);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    int fd = open(p, O_RDONLY | O_DIRECTORY);
    assert_true(fd >= 0);
    int flags = 0;
    bool has_flags = ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    close(fd);
    if (has_flags) {
        /* Where the flag can be set, it is (tmpfs keeps only a few). */
        int probe = open(f->outside, O_RDONLY | O_DIRECTORY);
        int pf = 0;
        bool settable = probe >= 0 && ioctl(probe, FS_IOC_GETFLAGS, &pf) == 0 &&
                        (pf |= FS_TOPDIR_FL, ioctl(probe, FS_IOC_SETFLAGS, &pf) == 0);
        if (probe >= 0)
            close(probe);
        if (settable)
            assert_true(flags & FS_TOPDIR_FL);
    }
    snprintf(p, sizeof p, "%s/file.txt/out", f->root); /* file.txt is a link to a file */
    assert_int_equal(fr_output_runs_folder(p, &err), FR_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refused_through_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor_waits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
