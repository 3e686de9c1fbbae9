#pragma once
/* Shared by the unit tests of dsl/ (test_dsl_load, test_dsl_endpoints,
 * test_dsl_render, test_dsl_sandbox): the fixture directory, the group
 * setup that keeps user configuration out, and loading a workflow that
 * must load or must fail. Header-only (static functions), since every
 * test executable is one translation unit. Runs from the source root
 * (CTest's working directory). */

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
