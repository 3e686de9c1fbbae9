#pragma once
/* Shared by the unit tests of dsl/ (test_dsl_load, test_dsl_endpoints,
 * test_dsl_render, test_dsl_sandbox, test_dsl_tools): the fixture directory,
 * the group setup that keeps user configuration out, loading a workflow that
 * must load or must fail, and the sweep over Lua memory budgets. Header-only (static functions),
 * since every test executable is one translation unit. Runs from the source root (CTest's working
 * directory). */

#include "dsl/sandbox.h"
#include "dsl/workflow.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <dirent.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define FIX "tests/unit/fixtures/dsl"

static char g_root[4096];

static inline int setup_env(void **state)
{
    (void)state;
    /* No user configuration may leak into the tests. */
    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-test-xdg", 1);
    unsetenv("OPENAI_BASE_URL");
    unsetenv("OLLAMA_HOST");
    unsetenv("ANTHROPIC_BASE_URL");
    assert_non_null(getcwd(g_root, sizeof g_root));
    return 0;
}

static inline fr_workflow *load_ok(const char *path, const fr_load_opts *opts)
{
    fr_workflow *wf = NULL;
    fr_error err = {0};
    int rc = fr_workflow_load(path, opts, &wf, &err);
    if (rc != FR_OK) {
        char buf[2048];
        print_error("%s: %s: %s\n", path, fr_err_name(rc), fr_error_format(&err, buf, sizeof buf));
    }
    assert_int_equal(rc, FR_OK);
    assert_non_null(wf);
    return wf;
}

static inline int load_err(const char *path, const fr_load_opts *opts, fr_error *err)
{
    fr_workflow *wf = NULL;
    memset(err, 0, sizeof *err);
    int rc = fr_workflow_load(path, opts, &wf, err);
    assert_null(wf);
    return rc;
}

/* Checks a workflow the sweep loaded (borrowed). */
typedef void (*dsl_loaded_fn)(const fr_workflow *wf);

/* Loads `path` (borrowed) under every Lua memory budget from `from` to `to`
 * bytes, `step` apart: each either loads (and passes `check`) or fails
 * cleanly with FR_ELIMIT and no workflow, leaving no Lua registry reference
 * behind (run under ASan or valgrind for the leaks); some budgets must do
 * each. */
static inline void dsl_memory_sweep(const char *path, size_t from, size_t to, size_t step,
                                    dsl_loaded_fn check)
{
    long refs0 = fr_sandbox_live_refs();
    int ok = 0, limited = 0;
    for (size_t mem = from; mem <= to; mem += step) {
        fr_lua_limits lim = {.mem_bytes = mem};
        fr_load_opts o = {.limits = &lim};
        fr_workflow *wf = NULL;
        fr_error err = {0};
        int rc = fr_workflow_load(path, &o, &wf, &err);
        if (rc == FR_OK) {
            ok++;
            check(wf);
        } else {
            if (rc != FR_ELIMIT)
                print_error("mem=%zu: %s %s\n", mem, fr_err_name(rc), err.msg);
            assert_int_equal(rc, FR_ELIMIT);
            assert_null(wf);
            limited++;
        }
        fr_workflow_free(wf);
        assert_int_equal(fr_sandbox_live_refs(), refs0);
    }
    assert_true(ok > 0);
    assert_true(limited > 0);
}
