/* Unit tests of engine/util/fs: the one mkdir -p, in a fresh temporary
 * folder per test. What its users rely on: every missing level is made with
 * the mode asked for (0700 for the state folder, 0755 for outputs), levels
 * that exist are kept as they are, and a level that cannot be made is named
 * with the system's reason. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/util/err.h"
#include "engine/util/fs.h"
#include "tests/unit/support/tmpdir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct fx {
    char dir[PATH_MAX];
    mode_t umask_was;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "%s/fr_fs_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    f->umask_was = umask(022); /* the usual one, so modes are predictable */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    umask(f->umask_was);
    bool removed = tmpdir_remove(f->dir);
    free(f);
    return removed ? 0 : -1;
}

/* Writes "<dir>/<name>" into `out` (PATH_MAX bytes). */
static void join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_MAX);
}

static mode_t mode_of(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    return sb.st_mode & 0777;
}

/* Every missing level gets the mode asked for; a second call changes
 * nothing and succeeds. */
static void test_levels_and_modes(void **state)
{
    fx *f = *state;
    char p[PATH_MAX];
    join(p, f->dir, "a/b/c");
    fr_error err = {0};
    assert_int_equal(fr_mkdir_p(p, 0700, &err), FR_OK);
    assert_int_equal(mode_of(p), 0700);
    join(p, f->dir, "a/b");
    assert_int_equal(mode_of(p), 0700);
    join(p, f->dir, "a");
    assert_int_equal(mode_of(p), 0700);

    join(p, f->dir, "out/run-1");
    assert_int_equal(fr_mkdir_p(p, 0755, &err), FR_OK);
    assert_int_equal(mode_of(p), 0755);
    join(p, f->dir, "out");
    assert_int_equal(mode_of(p), 0755);

    /* An existing level keeps its mode; a trailing slash is fine. */
    join(p, f->dir, "a/b/c/d/");
    assert_int_equal(fr_mkdir_p(p, 0755, &err), FR_OK);
    join(p, f->dir, "a/b/c/d");
    assert_int_equal(mode_of(p), 0755);
    join(p, f->dir, "a/b/c");
    assert_int_equal(mode_of(p), 0700);
    assert_int_equal(fr_mkdir_p(p, 0755, &err), FR_OK);
    assert_int_equal(mode_of(p), 0700);
}

/* A level that cannot be made: FR_EIO naming it, the system's reason in the
 * message and in errno. A file where the last level should be is left for
 * the caller to find, as output writes and the state store each do. */
static void test_failures(void **state)
{
    fx *f = *state;
    char file[PATH_MAX], p[PATH_MAX];
    join(file, f->dir, "plain");
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    join(p, file, "sub/deeper");
    fr_error err = {0};
    errno = 0;
    assert_int_equal(fr_mkdir_p(p, 0755, &err), FR_EIO);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(err.code, FR_EIO);
    join(p, file, "sub");
    assert_string_equal(err.source, p);
    assert_non_null(strstr(err.msg, "cannot create directory: "));
    assert_non_null(strstr(err.msg, strerror(ENOTDIR)));

    assert_int_equal(fr_mkdir_p(file, 0755, &err), FR_OK);

    err = (fr_error){0};
    assert_int_equal(fr_mkdir_p("", 0755, &err), FR_EINVAL);
    assert_int_equal(err.code, FR_EINVAL);
    assert_int_equal(fr_mkdir_p(NULL, 0755, NULL), FR_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_levels_and_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
