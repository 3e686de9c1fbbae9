/* Unit tests of engine/output: writes confined to a folder, on a real
 * libuv loop in fresh temporary folders. A write whose folder leads out
 * through a symbolic link, or whose file is a symbolic link, is refused with
 * FR_EINVAL and writes nothing; each test runs the loop until empty and
 * ends with uv_loop_close() == 0. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/output.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <limits.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refused_through_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_inside, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
