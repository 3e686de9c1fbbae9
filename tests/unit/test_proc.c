/* Unit tests of engine/proc: real processes under the guard on a real
 * libuv loop. The guard is this test binary itself (/proc/self/exe), so
 * main hands FR_GUARD_ARG to fr_guard_main as flowrun's does.
 * What remains of a process group is read from /proc after the guard has
 * reported its exit: the guard reaps everything before it exits, so the
 * check needs no waiting. `test_proc --guard-helper SECONDS` is the helper
 * of tests/e2e/proc_guard.sh: it starts a group of sleeps and waits to be
 * killed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/guard.h"
#include "engine/proc.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/proc_table.h"

#define WAIT_S  10.0
#define NMANY   20
#define OUT_MAX 4096

typedef struct run {
    fr_proc *p;
    char out[OUT_MAX];
    size_t nout;
    char err[OUT_MAX];
    size_t nerr;
    int exits;
    int code;
    int sig;
    int out_after_exit; /* output delivered after on_exit: must stay 0 */
} run;

static void on_out(void *ud, const char *data, size_t len)
{
    run *r = ud;
    if (r->exits)
        r->out_after_exit++;
    size_t n = len < OUT_MAX - 1 - r->nout ? len : OUT_MAX - 1 - r->nout;
    memcpy(r->out + r->nout, data, n);
    r->nout += n;
    r->out[r->nout] = '\0';
}

static void on_err(void *ud, const char *data, size_t len)
{
    run *r = ud;
    size_t n = len < OUT_MAX - 1 - r->nerr ? len : OUT_MAX - 1 - r->nerr;
    memcpy(r->err + r->nerr, data, n);
    r->nerr += n;
    r->err[r->nerr] = '\0';
}

static void on_exit_cb(void *ud, int code, int sig)
{
    run *r = ud;
    r->exits++;
    r->code = code;
    r->sig = sig;
}

static void spawn(uv_loop_t *loop, run *r, const fr_proc_opts *o)
{
    fr_error err = {0};
    int rc = fr_proc_spawn(loop, o, on_out, on_err, on_exit_cb, r, &r->p, &err);
    if (rc != FR_OK)
        fail_msg("spawn %s: %s", o->argv[0], err.msg);
    assert_true(fr_proc_pid(r->p) > 0);
}

/* Spawns, waits for the end, frees: for commands that end by themselves. */
static void run_to_end(uv_loop_t *loop, run *r, const fr_proc_opts *o)
{
    spawn(loop, r, o);
    LOOP_RUN_UNTIL(loop, r->exits == 1, WAIT_S);
    assert_int_equal(fr_proc_pid(r->p), 0);
    fr_proc_free(r->p);
    r->p = NULL;
}

/* Whether a /proc/PID/stat line names process group *(int *)ud. */
static bool in_group(char *line, size_t len, void *ud)
{
    (void)len;
    const char *rest = strrchr(line, ')');
    char state;
    long ppid, pgrp;
    return rest && sscanf(rest + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 && pgrp == *(int *)ud;
}

/* How many processes have process group `pgid`. */
static int group_members(int pgid)
{
    return proc_count("stat", in_group, &pgid);
}

static int setup(void **state)
{
    uv_loop_t *loop = fr_xcalloc(1, sizeof *loop);
    assert_int_equal(uv_loop_init(loop), 0);
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    uv_loop_t *loop = *state;
    loop_drain_close(loop, WAIT_S);
    free(loop);
    return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_cat_round_trip(void **state)
{
    run r = {0};
    const char *argv[] = {"cat", NULL};
    fr_proc_opts o = {.argv = argv, .pipe_stdin = true};
    spawn(*state, &r, &o);
    assert_int_equal(fr_proc_write(r.p, "hello\n", 6), FR_OK);
    assert_int_equal(fr_proc_write(r.p, "world\n", 6), FR_OK);
    LOOP_RUN_UNTIL(*state, r.nout == 6 || r.nout == 12, WAIT_S);
    assert_int_equal(r.exits, 0); /* cat waits for more */
    fr_proc_close_stdin(r.p);
    assert_int_equal(fr_proc_write(r.p, "late", 4), FR_EIO);
    LOOP_RUN_UNTIL(*state, r.exits == 1, WAIT_S);
    assert_string_equal(r.out, "hello\nworld\n");
    assert_int_equal(r.code, 0);
    assert_int_equal(r.sig, 0);
    assert_int_equal(r.out_after_exit, 0);
    fr_proc_free(r.p);
}

static void test_argv_items_and_stdin_null(void **state)
{
    run r = {0};
    /* argv, never a shell: "a  b;" stays one item with its spaces, and
     * stdin without a pipe is /dev/null (cat ends at once). */
    const char *argv[] = {"sh", "-c", "printf '[%s]' \"$@\"; cat", "sh", "a  b; echo no",
                          "c",  NULL};
    fr_proc_opts o = {.argv = argv};
    run_to_end(*state, &r, &o);
    assert_string_equal(r.out, "[a  b; echo no][c]");
    assert_int_equal(r.code, 0);
}

static void test_stderr_apart_and_merged(void **state)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2", NULL};
    run r = {0};
    fr_proc_opts o = {.argv = argv};
    run_to_end(*state, &r, &o);
    assert_string_equal(r.out, "out\n");
    assert_string_equal(r.err, "err\n");

    run m = {0};
    fr_proc_opts om = {.argv = argv, .merge_stderr = true};
    run_to_end(*state, &m, &om);
    assert_string_equal(m.out, "out\nerr\n");
    assert_int_equal(m.nerr, 0);
}

static void test_env_and_cwd(void **state)
{
    const char *argv[] = {"sh", "-c", "echo \"$FR_TEST_A $HOME_SET\"; pwd", NULL};
    const char *env[] = {"FR_TEST_A=one two", "HOME_SET=yes", NULL};
    run r = {0};
    fr_proc_opts o = {.argv = argv, .env = env, .cwd = "/"};
    run_to_end(*state, &r, &o);
    assert_string_equal(r.out, "one two yes\n/\n");
    /* The guard's own variable never reaches the command. */
    const char *argv2[] = {"sh", "-c", "env | grep -c FLOWRUN_GUARD || true", NULL};
    run r2 = {0};
    fr_proc_opts o2 = {.argv = argv2};
    run_to_end(*state, &r2, &o2);
    assert_string_equal(r2.out, "0\n");
}

static void test_exit_codes_and_signals(void **state)
{
    static const struct {
        const char *script;
        int code;
        int sig;
    } cases[] = {
        {"exit 0", 0, 0},
        {"exit 7", 7, 0},
        {"exit 255", 255, 0},
        {"kill -TERM $$", -1, SIGTERM},
        {"kill -KILL $$", -1, SIGKILL},
        {"kill -SEGV $$", -1, SIGSEGV},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[] = {"sh", "-c", cases[i].script, NULL};
        run r = {0};
        fr_proc_opts o = {.argv = argv};
        run_to_end(*state, &r, &o);
        if (r.code != cases[i].code || r.sig != cases[i].sig)
            fail_msg("'%s': exit %d signal %d, expected exit %d signal %d", cases[i].script, r.code,
                     r.sig, cases[i].code, cases[i].sig);
    }
}

static void test_command_not_found(void **state)
{
    const char *names[] = {"flowrun-no-such-command", "./no/such/file", "/no/such/file", "", NULL};
    for (size_t i = 0; names[i]; i++) {
        const char *argv[] = {names[i], NULL};
        fr_proc_opts o = {.argv = argv};
        run r = {0};
        fr_error err = {0};
        fr_proc *p = NULL;
        assert_int_equal(fr_proc_spawn(*state, &o, on_out, on_err, on_exit_cb, &r, &p, &err),
                         FR_ENOENT);
        assert_null(p);
        assert_non_null(strstr(err.msg, "not found"));
        if (*names[i])
            assert_non_null(strstr(err.msg, names[i]));
    }
    /* A PATH given in env is the one searched. */
    const char *argv[] = {"sh", NULL};
    const char *env[] = {"PATH=/nonexistent", NULL};
    fr_proc_opts o = {.argv = argv, .env = env};
    run r = {0};
    fr_error err = {0};
    fr_proc *p = NULL;
    assert_int_equal(fr_proc_spawn(*state, &o, on_out, on_err, on_exit_cb, &r, &p, &err),
                     FR_ENOENT);
}

static void test_exec_failure_after_start(void **state)
{
    /* Found at spawn (an executable file), but the exec fails (its
     * interpreter does not exist): the guard says why on stderr, exit 127. */
    char dir[] = "/tmp/fr_proc_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/tool", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("#!/nonexistent/interpreter\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
    const char *argv[] = {path, NULL};
    run r = {0};
    fr_proc_opts o = {.argv = argv};
    run_to_end(*state, &r, &o);
    unlink(path);
    rmdir(dir);
    assert_int_equal(r.code, 127);
    assert_non_null(strstr(r.err, "cannot run"));
    assert_non_null(strstr(r.err, path));
    assert_string_equal(r.out, "");
}

static void test_kill_ends_the_group(void **state)
{
    run r = {0};
    const char *argv[] = {"sh", "-c", "sleep 300 & sleep 300 & echo started; wait", NULL};
    fr_proc_opts o = {.argv = argv};
    spawn(*state, &r, &o);
    int pgid = fr_proc_pid(r.p);
    LOOP_RUN_UNTIL(*state, strstr(r.out, "started") != NULL, WAIT_S);
    assert_true(group_members(pgid) >= 4); /* guard, sh, two sleeps */
    fr_proc_kill(r.p);
    fr_proc_kill(r.p); /* twice is once */
    LOOP_RUN_UNTIL(*state, r.exits == 1, WAIT_S);
    assert_int_equal(r.sig, SIGTERM);
    assert_int_equal(r.code, -1);
    assert_int_equal(group_members(pgid), 0);
    fr_proc_free(r.p);
}

static void test_kill_escalates_to_sigkill(void **state)
{
    run r = {0};
    /* Everything in the group ignores SIGTERM (an ignored signal stays
     * ignored across exec): only the SIGKILL after the grace ends it. */
    const char *argv[] = {"sh", "-c", "trap '' TERM; sleep 300 & echo started; wait", NULL};
    fr_proc_opts o = {.argv = argv, .grace_s = 0.3};
    spawn(*state, &r, &o);
    int pgid = fr_proc_pid(r.p);
    LOOP_RUN_UNTIL(*state, strstr(r.out, "started") != NULL, WAIT_S);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fr_proc_kill(r.p);
    LOOP_RUN_UNTIL(*state, r.exits == 1, WAIT_S);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_int_equal(r.sig, SIGKILL);
    assert_true(took >= 0.25);
    assert_true(took < 2.0); /* the guard's SIGKILL, not the parent's late one */
    assert_int_equal(group_members(pgid), 0);
    fr_proc_free(r.p);
}

static void test_sigkill_leaves_no_time_to_react(void **state)
{
    /* Once the grace is over nothing in the group runs again: a watcher
     * that writes a file as soon as its sibling is dead never gets to. The
     * sibling comes first in /proc, many sleeps between them, so killing
     * one after another would leave the watcher milliseconds to see it. */
    char mark[] = "/tmp/flowrun-proc-mark-XXXXXX";
    char *dir = mkdtemp(mark);
    assert_non_null(dir);
    char path[256], script[1024];
    snprintf(path, sizeof path, "%s/reacted", dir);
    snprintf(script, sizeof script,
             "trap '' TERM; sleep 300 & s=$!; i=0;"
             " while [ $i -lt 150 ]; do sleep 300 & i=$((i+1)); done;"
             " ( while read st < /proc/$s/stat; do"
             " case \"$st\" in *') Z '*) break;; esac; done 2>/dev/null; : > '%s' ) &"
             " echo started; wait",
             path);
    run r = {0};
    const char *argv[] = {"sh", "-c", script, NULL};
    fr_proc_opts o = {.argv = argv, .grace_s = 0.3};
    spawn(*state, &r, &o);
    int pgid = fr_proc_pid(r.p);
    LOOP_RUN_UNTIL(*state, strstr(r.out, "started") != NULL, WAIT_S);
    fr_proc_kill(r.p);
    LOOP_RUN_UNTIL(*state, r.exits == 1, WAIT_S);
    assert_int_equal(r.sig, SIGKILL);
    assert_int_equal(group_members(pgid), 0);
    bool reacted = access(path, F_OK) == 0;
    unlink(path);
    rmdir(dir);
    assert_false(reacted);
    fr_proc_free(r.p);
}

static void test_leftovers_end_with_the_command(void **state)
{
    /* The command exits, leaving a background child that holds stdout: it
     * goes too, and the exit status is the command's. */
    run r = {0};
    const char *argv[] = {"sh", "-c", "sleep 300 & exit 4", NULL};
    fr_proc_opts o = {.argv = argv};
    spawn(*state, &r, &o);
    int pgid = fr_proc_pid(r.p);
    LOOP_RUN_UNTIL(*state, r.exits == 1, WAIT_S);
    assert_int_equal(r.code, 4);
    assert_int_equal(group_members(pgid), 0);
    fr_proc_free(r.p);
}

static void test_free_while_running(void **state)
{
    run r = {0};
    const char *argv[] = {"sh", "-c", "sleep 300 & echo started; wait", NULL};
    fr_proc_opts o = {.argv = argv, .pipe_stdin = true};
    spawn(*state, &r, &o);
    int pgid = fr_proc_pid(r.p);
    LOOP_RUN_UNTIL(*state, strstr(r.out, "started") != NULL, WAIT_S);
    assert_int_equal(fr_proc_write(r.p, "x", 1), FR_OK);
    fr_proc_free(r.p);
    /* The drain runs the loop until the guard is reaped and every handle closed. */
    loop_drain_close(*state, WAIT_S);
    assert_int_equal(r.exits, 0);
    assert_int_equal(group_members(pgid), 0);
    assert_int_equal(uv_loop_init(*state), 0);
    fr_proc_free(NULL);
}

static int exits_of(const run *r, int n)
{
    int done = 0;
    for (int i = 0; i < n; i++)
        done += r[i].exits;
    return done;
}

static void test_many_at_once(void **state)
{
    run *r = fr_xcalloc(NMANY, sizeof *r);
    char names[NMANY][16];
    for (int i = 0; i < NMANY; i++) {
        snprintf(names[i], sizeof names[i], "p%d", i);
        const char *argv[] = {"sh",     "-c",         "read x; echo \"$0:$x\"; exit $1",
                              names[i], names[i] + 1, NULL};
        fr_proc_opts o = {.argv = argv, .pipe_stdin = true};
        spawn(*state, &r[i], &o);
    }
    for (int i = 0; i < NMANY; i++) {
        assert_int_equal(fr_proc_write(r[i].p, "in\n", 3), FR_OK);
        fr_proc_close_stdin(r[i].p);
    }
    LOOP_RUN_UNTIL(*state, exits_of(r, NMANY) == NMANY, WAIT_S * 2);
    for (int i = 0; i < NMANY; i++) {
        char want[32];
        snprintf(want, sizeof want, "p%d:in\n", i);
        assert_string_equal(r[i].out, want);
        assert_int_equal(r[i].code, i);
        assert_int_equal(r[i].exits, 1);
        fr_proc_free(r[i].p);
    }
    free(r);
}

/* ---- the helper of tests/e2e/proc_guard.sh ------------------------------- */

static void helper_out(void *ud, const char *data, size_t len)
{
    (void)ud;
    char text[256];
    snprintf(text, sizeof text, "%.*s", (int)len, data);
    if (strstr(text, "started")) {
        printf("ready\n");
        fflush(stdout);
    }
}

static void helper_exit(void *ud, int code, int sig)
{
    (void)ud;
    fprintf(stderr, "the group ended on its own: exit %d signal %d\n", code, sig);
    exit(1);
}

/* Starts `sh -c 'sleep S & echo started; sleep S'` under a guard, says
 * "ready" once both sleeps run, and runs the loop until it is killed. */
static int guard_helper(const char *seconds)
{
    signal(SIGINT, SIG_DFL); /* a shell's background job starts with SIGINT ignored */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char script[128];
    snprintf(script, sizeof script, "sleep %s & echo started; sleep %s", seconds, seconds);
    const char *argv[] = {"sh", "-c", script, NULL};
    fr_proc_opts o = {.argv = argv};
    fr_proc *p = NULL;
    fr_error err = {0};
    if (fr_proc_spawn(&loop, &o, helper_out, NULL, helper_exit, NULL, &p, &err) != FR_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_GUARD_ARG) == 0)
        return fr_guard_main(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* as flowrun: a child that hangs up fails a write only */
    if (argc > 2 && strcmp(argv[1], "--guard-helper") == 0)
        return guard_helper(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cat_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_argv_items_and_stdin_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_apart_and_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_and_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_codes_and_signals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failure_after_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_ends_the_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_leaves_no_time_to_react, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_end_with_the_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
