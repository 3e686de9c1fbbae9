#pragma once
/* Shared by the unit tests of the engine's pure pieces (test_gate,
 * test_endpoint, test_route, test_report): load the workflow fixtures of
 * tests/unit/fixtures/engine/, find its tasks and endpoints by name,
 * and build replies. Header-only: each test executable is one translation
 * unit. Runs from the source root (CTest's working directory). */

#include "dsl/workflow.h"
#include "engine/util/mem.h"
#include "providers/provider.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define ENGINE_FIXTURE "tests/unit/fixtures/engine/flow.lua"
/* The variable the fixture's cloud endpoint reads its key from. */
#define ENGINE_KEY_ENV "FLOWRUN_UNIT_CLOUD_KEY"

/* Returns the workflow at `path` (borrowed; owned result, fr_workflow_free),
 * failing the test when it does not load. No user configuration leaks in. */
static inline fr_workflow *engine_load_path(const char *path)
{
    setenv("XDG_CONFIG_HOME", "/nonexistent/flowrun-test-xdg", 1);
    fr_workflow *wf = NULL;
    fr_error err = {0};
    int rc = fr_workflow_load(path, NULL, &wf, &err);
    if (rc != FR_OK) {
        char buf[2048];
        print_error("%s: %s\n", path, fr_error_format(&err, buf, sizeof buf));
    }
    assert_int_equal(rc, FR_OK);
    return wf;
}

/* Returns the fixture workflow ENGINE_FIXTURE (owned; fr_workflow_free). */
static inline fr_workflow *engine_load(void)
{
    return engine_load_path(ENGINE_FIXTURE);
}

/* The index of task `name` of `wf` (both borrowed); fails when absent. */
static inline size_t engine_task(const fr_workflow *wf, const char *name)
{
    long t = fr_workflow_find_task(wf, name);
    assert_true(t >= 0);
    return (size_t)t;
}

/* The index of endpoint `name` of `wf` (both borrowed); fails when absent. */
static inline size_t engine_ep(const fr_workflow *wf, const char *name)
{
    long e = fr_workflow_find_endpoint(wf, name);
    assert_true(e >= 0);
    return (size_t)e;
}

/* Returns a reply (its strings owned; fr_reply_close) of `text` (borrowed,
 * copied) that ended with `finish`, with `json` (taken, may be NULL). */
static inline fr_reply engine_reply(const char *text, fr_finish finish, json_t *json)
{
    fr_reply r = {.text = fr_xstrdup(text), .finish = finish, .json = json};
    return r;
}
