/* Unit tests of engine/cmdtool: real commands on a real libuv loop, in a
 * fresh temporary directory that is the workflow's. What a command did is
 * read from the files it leaves and from /proc (its sleeps carry a unique
 * duration). The guard is this binary re-executed, so main hands
 * FR_GUARD_ARG to fr_guard_main as flowrun's does. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/cmdtool.h"
#include "engine/guard.h"
#include "engine/proc.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <limits.h>
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
#include "tests/unit/support/tmpdir.h"

#define WAIT_S 10.0

typedef struct fx {
    uv_loop_t loop;
    char dir[64];
    char marker[32]; /* a sleep duration no other process has */
    int calls;
    fr_tool_result r; /* the last result, taken */
} fx;

static void on_done(void *ud, fr_tool_result *r)
{
    fx *f = ud;
    f->calls++;
    fr_tool_result_close(&f->r);
    f->r = *r;
    *r = (fr_tool_result){0};
}

/* A command tool of `argv` (NULL-terminated, borrowed) with `cap` and `timeout`. */
static fr_tool_spec tool(const char **argv, long cap, double timeout)
{
    fr_tool_spec t = {.name = "t",
                      .kind = FR_TOOL_COMMAND,
                      .description = "a test tool",
                      .command = (char **)argv,
                      .timeout_s = timeout,
                      .output_cap = cap};
    while (argv[t.ncommand])
        t.ncommand++;
    return t;
}

/* Runs `t` with `args_json` and waits for its one result. */
static void run_tool(fx *f, const fr_tool_spec *t, const char *args_json)
{
    json_t *args = json_loads(args_json, 0, NULL);
    assert_non_null(args);
    fr_error err = {0};
    fr_cmdtool *c = NULL;
    int before = f->calls;
    assert_int_equal(fr_cmdtool_run(&f->loop, t, f->dir, args, on_done, f, &c, &err), FR_OK);
    assert_non_null(c);
    assert_int_equal(f->calls, before); /* never from inside the call */
    json_decref(args);
    LOOP_RUN_UNTIL(&f->loop, f->calls == before + 1, WAIT_S);
}

static bool exists(const fx *f, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", f->dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whether a command line (its argv items NUL-separated) holds `ud`. */
static bool cmdline_has(char *line, size_t len, void *ud)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\0')
            line[i] = ' ';
    return strstr(line, ud) != NULL;
}

/* How many processes have `needle` in their command line. */
static int processes_with(const char *needle)
{
    return proc_count("cmdline", cmdline_has, (void *)needle);
}

static int setup(void **state)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->dir, sizeof f->dir, "/tmp/fr_cmdtool_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    snprintf(f->marker, sizeof f->marker, "4%03d.%05d%05d", rand() % 1000, (int)getpid() % 100000,
             rand() % 100000);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    loop_drain_close(&f->loop, WAIT_S);
    fr_tool_result_close(&f->r);
    assert_true(tmpdir_remove(f->dir));
    free(f);
    return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_arguments_are_whole_argv_items(void **state)
{
    fx *f = *state;
    const char *argv[] = {"printf",     "[%s]",        "{{args.p}}", "{{args.n}}", "{{args.x}}",
                          "{{args.b}}", "x{{args.p}}", "{{args.p}",  NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    run_tool(f, &t,
             "{\"p\": \"a b; touch pwned $(touch pwned2) `touch pwned3`\", \"n\": 3, "
             "\"x\": 2.5, \"b\": true}");
    assert_false(f->r.is_error);
    assert_null(f->r.reason);
    assert_string_equal(f->r.text, "exit code 0\n"
                                   "[a b; touch pwned $(touch pwned2) `touch pwned3`][3][2.5][true]"
                                   "[x{{args.p}}][{{args.p}]");
    assert_false(exists(f, "pwned"));
    assert_false(exists(f, "pwned2"));
    assert_false(exists(f, "pwned3"));
}

static void test_missing_or_bad_argument_runs_nothing(void **state)
{
    fx *f = *state;
    const char *argv[] = {"touch", "ran", "{{args.path}}", NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    run_tool(f, &t, "{\"other\": \"x\"}");
    assert_true(f->r.is_error);
    assert_string_equal(f->r.reason, "missing argument 'path' for tool 't'");
    assert_non_null(strstr(f->r.text, "missing argument 'path'"));
    run_tool(f, &t, "{\"path\": null}");
    assert_true(f->r.is_error);
    run_tool(f, &t, "{\"path\": [\"a\", \"b\"]}");
    assert_true(f->r.is_error);
    assert_non_null(strstr(f->r.reason, "must be a string, number or boolean"));
    run_tool(f, &t, "{\"path\": {\"a\": 1}}");
    assert_true(f->r.is_error);
    assert_false(exists(f, "ran"));
    assert_int_equal(f->calls, 4);
}

static void test_exit_code_in_the_result(void **state)
{
    fx *f = *state;
    const char *ok[] = {"sh", "-c", "echo out; echo err >&2", NULL};
    fr_tool_spec t = tool(ok, 0, 0);
    run_tool(f, &t, "{}");
    assert_false(f->r.is_error);
    assert_string_equal(f->r.text, "exit code 0\nout\nerr\n");

    const char *bad[] = {"sh", "-c", "echo oops >&2; exit 3", NULL};
    t = tool(bad, 0, 0);
    run_tool(f, &t, "{}");
    assert_true(f->r.is_error);
    assert_string_equal(f->r.reason, "exit code 3");
    assert_string_equal(f->r.text, "exit code 3\noops\n");

    const char *sig[] = {"sh", "-c", "kill -KILL $$", NULL};
    t = tool(sig, 0, 0);
    run_tool(f, &t, "{}");
    assert_true(f->r.is_error);
    assert_non_null(strstr(f->r.reason, "killed by signal 9"));
}

static void test_output_cap(void **state)
{
    fx *f = *state;
    /* 100,000 bytes against a cap of 1,000: the rest is read and dropped,
     * the command runs to its end (it writes `finished` after). */
    const char *argv[] = {"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a; touch finished",
                          NULL};
    fr_tool_spec t = tool(argv, 1000, 0);
    run_tool(f, &t, "{}");
    assert_false(f->r.is_error);
    const char *body = f->r.text + strlen("exit code 0\n");
    assert_memory_equal(f->r.text, "exit code 0\n", strlen("exit code 0\n"));
    assert_int_equal(strspn(body, "a"), 1000);
    assert_string_equal(body + 1000, "\n[output cut at 1000 bytes]\n");
    assert_true(exists(f, "finished"));
}

static void test_output_is_text(void **state)
{
    fx *f = *state;
    const char *argv[] = {"printf", "a\\000b\\377c", NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    run_tool(f, &t, "{}");
    assert_string_equal(f->r.text, "exit code 0\na\xEF\xBF\xBD"
                                   "b\xEF\xBF\xBD"
                                   "c");
}

static void test_timeout_kills_the_group(void **state)
{
    fx *f = *state;
    char script[128];
    snprintf(script, sizeof script, "sleep %s & echo started; sleep %s", f->marker, f->marker);
    const char *argv[] = {"sh", "-c", script, NULL};
    fr_tool_spec t = tool(argv, 0, 0.3);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_tool(f, &t, "{}");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(f->r.is_error);
    assert_string_equal(f->r.reason, "timed out after 0.3 s");
    assert_string_equal(f->r.text, "error: timed out after 0.3 s\nstarted\n");
    assert_true(took >= 0.29 && took < 5.0);
    assert_int_equal(processes_with(f->marker), 0);
}

static void test_cancel_kills_and_never_calls_back(void **state)
{
    fx *f = *state;
    char script[128];
    snprintf(script, sizeof script, "sleep %s & sleep %s", f->marker, f->marker);
    const char *argv[] = {"sh", "-c", script, NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    fr_cmdtool *c = NULL;
    assert_int_equal(fr_cmdtool_run(&f->loop, &t, f->dir, NULL, on_done, f, &c, NULL), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, processes_with(f->marker) >= 4, WAIT_S);
    fr_cmdtool_cancel(c);
    loop_drain_close(&f->loop, WAIT_S); /* until the guard is reaped */
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(f->calls, 0);
    assert_int_equal(processes_with(f->marker), 0);

    /* A run with nothing to start, cancelled before its result came. */
    const char *missing[] = {"true", "{{args.a}}", NULL};
    t = tool(missing, 0, 0);
    assert_int_equal(fr_cmdtool_run(&f->loop, &t, f->dir, NULL, on_done, f, &c, NULL), FR_OK);
    fr_cmdtool_cancel(c);
    loop_drain_close(&f->loop, WAIT_S);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(f->calls, 0);
}

static void test_cwd(void **state)
{
    fx *f = *state;
    char sub[PATH_MAX];
    snprintf(sub, sizeof sub, "%s/sub", f->dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    const char *argv[] = {"pwd", NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    run_tool(f, &t, "{}"); /* no cwd: the workflow's directory */
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "exit code 0\n%s\n", f->dir);
    assert_string_equal(f->r.text, want);
    t.cwd = "sub"; /* relative: against the workflow's directory */
    run_tool(f, &t, "{}");
    snprintf(want, sizeof want, "exit code 0\n%s\n", sub);
    assert_string_equal(f->r.text, want);
    t.cwd = "/";
    run_tool(f, &t, "{}");
    assert_string_equal(f->r.text, "exit code 0\n/\n");
}

static void test_command_not_found(void **state)
{
    fx *f = *state;
    const char *argv[] = {"flowrun-no-such-command", "{{args.a}}", NULL};
    fr_tool_spec t = tool(argv, 0, 0);
    run_tool(f, &t, "{\"a\": \"x\"}");
    assert_true(f->r.is_error);
    assert_string_equal(f->r.reason, "command 'flowrun-no-such-command' not found");

    /* Found, but the exec fails (no such interpreter): the guard's reason. */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tool.sh", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("#!/nonexistent/interpreter\n", fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0755), 0);
    const char *script[] = {"./tool.sh", NULL};
    t = tool(script, 0, 0);
    run_tool(f, &t, "{}");
    assert_true(f->r.is_error);
    assert_string_equal(f->r.reason, "cannot run './tool.sh': No such file or directory");
}

static void test_not_a_command_tool(void **state)
{
    fx *f = *state;
    fr_tool_spec t = {.name = "lua", .kind = FR_TOOL_LUA};
    fr_error err = {0};
    assert_int_equal(fr_cmdtool_run(&f->loop, &t, f->dir, NULL, on_done, f, NULL, &err), FR_EINVAL);
    fr_cmdtool_cancel(NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], FR_GUARD_ARG) == 0)
        return fr_guard_main(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* as flowrun */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arguments_are_whole_argv_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_or_bad_argument_runs_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_code_in_the_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_is_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_kills_the_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_kills_and_never_calls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cwd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_command_tool, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
