/* Tests of dsl/reload, the live policy slot, on a real libuv loop watching a
 * real policy file in a fresh temporary directory: a good new version is
 * swapped in, a version that does not load or fails its self-check is
 * refused with its log entry and the live one stays, a deleted file is
 * logged, a built-in is never watched. Every wait runs the loop until the
 * reload log grows, bounded by a watchdog; every test ends with the loop
 * empty, uv_loop_close() == 0 and no Lua registry reference left. */

#include "dsl/policy.h"
#include "dsl/reload.h"
#include "dsl/sandbox.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "tests/unit/support/loop_harness.h"

/* Version 1 routes to the first candidate; the others say who they are. */
#define V1        "return { route = function(t, c) return c[1] end }\n"
#define GOOD(n)   "return { route = function(t, c) return '" n "' end }\n"
#define NO_SYNTAX "return { route = function(t, c) return end end\n"
/* Loads, but its self-check fails: route raises on the candidates. */
#define FAILS_CHECK "return { route = function(t, c) error('refuses every task') end }\n"
/* Passes only with the run's candidates (the hook's), not made-up ones. */
#define NEEDS_GPU                                                                                  \
    "return { route = function(t, c)\n"                                                            \
    "  for _, x in ipairs(c) do if x.name == 'gpu' then return x end end\n"                        \
    "  error('no gpu among the candidates')\n"                                                     \
    "end }\n"

typedef struct fx {
    uv_loop_t loop;
    char dir[PATH_MAX];
    char path[PATH_MAX + 16];
    fr_reload *slot;
    int swapped;
    int candidate_calls;
    double clock_ms;
    FILE *log;
    long refs0;
} fx;

static json_t *hook_candidates(void *ud)
{
    fx *f = ud;
    f->candidate_calls++;
    return json_pack("[{s:s, s:s, s:i, s:i}]", "name", "gpu", "tier", "local", "free", 1,
                     "max_parallel", 1);
}

static double hook_elapsed(void *ud)
{
    fx *f = ud;
    return f->clock_ms;
}

static void hook_swapped(void *ud)
{
    fx *f = ud;
    f->swapped++;
    /* The new version is live when the owner hears of it. */
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), fr_reload_versions(f->slot));
}

static void write_str(const char *path, const char *s)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(s, 1, strlen(s), fp), strlen(s));
    assert_int_equal(fclose(fp), 0);
}

/* The reload log and the count it must reach (loop_cond_fn). */
typedef struct log_wait {
    fx *f;
    size_t n;
} log_wait;

static bool log_has(void *ud)
{
    log_wait *w = ud;
    return json_array_size(fr_reload_log(w->f->slot)) >= w->n;
}

/* Runs the loop until the reload log holds `n` entries; fails after 5 s. */
static void run_until_log(fx *f, size_t n)
{
    log_wait w = {f, n};
    if (!loop_wait_for(&f->loop, log_has, &w, 5))
        fail_msg("the reload log has %zu entries, not %zu, after 5 s",
                 json_array_size(fr_reload_log(f->slot)), n);
}

/* The route answer of the live version for a made-up task. */
static char *live_choice(fx *f)
{
    json_t *t = json_pack("{s:s, s:f}", "name", "t", "complexity", 0.5);
    json_t *c = json_pack("[{s:s}, {s:s}]", "name", "first", "name", "second");
    json_t *r = json_object();
    char *choice = NULL;
    fr_error err = {0};
    int rc = fr_policy_route(fr_reload_live(f->slot), t, c, r, &choice, &err);
    if (rc != FR_OK)
        fail_msg("route: %s", err.msg);
    json_decref(t);
    json_decref(c);
    json_decref(r);
    return choice;
}

static void expect_choice(fx *f, const char *want)
{
    char *choice = live_choice(f);
    assert_non_null(choice);
    assert_string_equal(choice, want);
    free(choice);
}

/* Checks log entry `i`: its version (0: null), ok, at_ms, and that its error
 * contains `error` (NULL: the error is null). */
static void expect_entry(fx *f, size_t i, int version, bool ok, double at_ms, const char *error)
{
    const json_t *e = json_array_get(fr_reload_log(f->slot), i);
    assert_non_null(e);
    const json_t *v = json_object_get(e, "version");
    if (version)
        assert_int_equal(json_integer_value(v), version);
    else
        assert_true(json_is_null(v));
    assert_int_equal(json_is_true(json_object_get(e, "ok")), ok);
    assert_true(json_real_value(json_object_get(e, "at_ms")) == at_ms);
    const json_t *why = json_object_get(e, "error");
    if (!error) {
        assert_true(json_is_null(why));
    } else {
        assert_true(json_is_string(why));
        if (!strstr(json_string_value(why), error))
            fail_msg("entry %zu's error '%s' lacks '%s'", i, json_string_value(why), error);
    }
}

/* Returns the log lines written so far (owned). */
static char *log_text(fx *f)
{
    fflush(f->log);
    long n = ftell(f->log);
    char *buf = fr_xcalloc(1, (size_t)n + 1);
    rewind(f->log);
    assert_int_equal(fread(buf, 1, (size_t)n, f->log), (size_t)n);
    fseek(f->log, 0, SEEK_END);
    return buf;
}

static void expect_logged(fx *f, const char *line)
{
    char *text = log_text(f);
    if (!strstr(text, line))
        fail_msg("the log lacks '%s':\n%s", line, text);
    free(text);
}

static fr_reload *new_slot(fx *f, const char *path)
{
    fr_policy *p = NULL;
    fr_error err = {0};
    int rc = fr_policy_load(path, NULL, 1, &p, &err);
    if (rc != FR_OK)
        fail_msg("load %s: %s", path, err.msg);
    fr_reload_hooks hooks = {.ud = f,
                             .check_candidates = hook_candidates,
                             .elapsed_ms = hook_elapsed,
                             .swapped = hook_swapped};
    fr_reload *s = fr_reload_new(p, path, &hooks);
    assert_non_null(s);
    return s;
}

static int setup(void **state)
{
    fx *f = fr_xcalloc(1, sizeof *f);
    if (uv_loop_init(&f->loop) != 0)
        return -1;
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/flowrun-reload-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/route.lua", f->dir);
    write_str(f->path, V1);
    f->log = tmpfile();
    if (!f->log)
        return -1;
    fr_log_set_stream(f->log);
    fr_log_set_level(FR_LOG_INFO);
    unsetenv("FLOWRUN_LUA_DIR");
    f->refs0 = fr_sandbox_live_refs();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fr_reload_free(f->slot);
    char why[384];
    bool closed = loop_drain(&f->loop, 10, why, sizeof why);
    fr_log_set_stream(stderr);
    fr_log_set_level(FR_LOG_WARN);
    fclose(f->log);
    unlink(f->path);
    rmdir(f->dir);
    long refs = fr_sandbox_live_refs() - f->refs0;
    free(f);
    if (!closed)
        fail_msg("%s", why); /* a handle left open, or the loop still busy */
    assert_int_equal(refs, 0);
    return 0;
}

/* The whole life of a slot: each rewrite of the file is one log entry. */
static void test_swaps_good_versions_and_refuses_bad_ones(void **state)
{
    fx *f = *state;
    f->slot = new_slot(f, f->path);
    assert_int_equal(fr_reload_watch(f->slot, &f->loop, NULL), FR_OK);
    assert_int_equal(fr_reload_versions(f->slot), 1);
    assert_int_equal(json_array_size(fr_reload_log(f->slot)), 0);
    expect_choice(f, "first");

    f->clock_ms = 10;
    write_str(f->path, GOOD("second"));
    run_until_log(f, 1);
    expect_entry(f, 0, 2, true, 10, NULL);
    assert_int_equal(f->swapped, 1);
    assert_int_equal(fr_reload_versions(f->slot), 2);
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), 2);
    expect_choice(f, "second");
    expect_logged(f, "version=2 reload=ok path=");

    f->clock_ms = 20;
    write_str(f->path, NO_SYNTAX);
    run_until_log(f, 2);
    expect_entry(f, 1, 3, false, 20, "route.lua:1");
    assert_int_equal(f->swapped, 1);
    assert_int_equal(fr_reload_versions(f->slot), 3);
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), 2);
    expect_choice(f, "second");
    expect_logged(f, "version=3 reload=refused error=");
    expect_logged(f, "; version 2 stays");

    f->clock_ms = 30;
    int calls = f->candidate_calls;
    write_str(f->path, FAILS_CHECK);
    run_until_log(f, 3);
    expect_entry(f, 2, 4, false, 30, "refuses every task");
    assert_int_equal(f->candidate_calls, calls + 1);
    assert_int_equal(f->swapped, 1);
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), 2);
    expect_choice(f, "second");

    /* The self-check offers the owner's candidates, not made-up ones. */
    f->clock_ms = 40;
    write_str(f->path, NEEDS_GPU);
    run_until_log(f, 4);
    expect_entry(f, 3, 5, true, 40, NULL);
    assert_int_equal(f->swapped, 2);
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), 5);

    /* A file that cannot be read is logged without a version. */
    f->clock_ms = 50;
    assert_int_equal(unlink(f->path), 0);
    run_until_log(f, 5);
    expect_entry(f, 4, 0, false, 50, f->path);
    assert_int_equal(fr_reload_versions(f->slot), 5);
    assert_int_equal(fr_policy_version(fr_reload_live(f->slot)), 5);
    expect_logged(f, "reload=refused error=");
    expect_logged(f, "; version 5 stays");

    /* Back with the good version 2's text: a new version number. */
    f->clock_ms = 60;
    write_str(f->path, GOOD("second"));
    run_until_log(f, 6);
    expect_entry(f, 5, 6, true, 60, NULL);
    expect_choice(f, "second");
    assert_int_equal(fr_sandbox_live_refs(), f->refs0 + 1); /* only the live version's route */
}

/* After stop no change is heard; the live version stays usable. */
static void test_stop_ends_the_watch(void **state)
{
    fx *f = *state;
    f->slot = new_slot(f, f->path);
    assert_int_equal(fr_reload_watch(f->slot, &f->loop, NULL), FR_OK);
    assert_int_equal(fr_reload_watch(f->slot, &f->loop, NULL), FR_OK); /* once is enough */
    fr_reload_stop(f->slot);
    fr_reload_stop(f->slot);
    write_str(f->path, GOOD("second"));
    /* Nothing is active: a watch still open would keep the loop (and alarm). */
    assert_int_equal(loop_run_to_end(&f->loop, 10), 0);
    assert_int_equal(json_array_size(fr_reload_log(f->slot)), 0);
    assert_int_equal(fr_reload_versions(f->slot), 1);
    expect_choice(f, "first");
}

/* A built-in has no file: nothing is watched, nothing is logged. */
static void test_builtins_are_never_watched(void **state)
{
    fx *f = *state;
    char *path = NULL;
    assert_int_equal(fr_policy_resolve("balanced", NULL, &path, NULL), FR_OK);
    assert_true(fr_policy_path_is_builtin(path));
    f->slot = new_slot(f, path);
    free(path);
    assert_int_equal(fr_reload_watch(f->slot, &f->loop, NULL), FR_OK);
    assert_false(uv_loop_alive(&f->loop));
    assert_string_equal(fr_policy_name(fr_reload_live(f->slot)), "balanced");
}

/* A directory that cannot be watched: a warning, the code, the live version
 * goes on. */
static void test_unwatchable_directory_is_a_warning(void **state)
{
    fx *f = *state;
    f->slot = new_slot(f, f->path);
    fr_reload_free(f->slot);
    char gone[PATH_MAX + 32];
    snprintf(gone, sizeof gone, "%s/none/route.lua", f->dir);
    fr_policy *p = NULL;
    assert_int_equal(fr_policy_load(f->path, NULL, 1, &p, NULL), FR_OK);
    f->slot = fr_reload_new(p, gone, NULL);
    fr_error err = {0};
    assert_int_equal(fr_reload_watch(f->slot, &f->loop, &err), FR_EIO);
    assert_int_equal(err.code, FR_EIO);
    expect_logged(f, "; the policy will not be reloaded");
    expect_choice(f, "first");
}

static void test_new_takes_the_policy(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_policy *p = NULL;
    assert_int_equal(fr_policy_load_string("x.lua", V1, strlen(V1), NULL, 1, &p, NULL), FR_OK);
    assert_null(fr_reload_new(p, NULL, NULL)); /* freed, not leaked */
    assert_null(fr_reload_new(NULL, "x.lua", NULL));
    assert_int_equal(fr_sandbox_live_refs(), refs0);
    fr_reload_free(NULL);
    fr_reload_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_swaps_good_versions_and_refuses_bad_ones, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_stop_ends_the_watch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_builtins_are_never_watched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwatchable_directory_is_a_warning, setup, teardown),
        cmocka_unit_test(test_new_takes_the_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
