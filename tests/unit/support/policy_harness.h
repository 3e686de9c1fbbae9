#pragma once
/* Shared by the tests of dsl/policy (test_policy_builtins, test_policy_host):
 * the built-ins' names, the three arguments of a decision built by hand
 * (candidates, a task, the run), loading a built-in or a policy from code,
 * routing with a check of the choice or of the error code, and the fleet
 * most tests use. Header-only, as adapter_harness.h: include it after
 * cmocka.h. */

#include "dsl/policy.h"
#include "engine/util/err.h"

#include <dirent.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every test task estimates this many input tokens. */
#define EST_INPUT  1000
#define MAX_TOKENS 500

static const char *const builtins[] = {"adaptive", "balanced", "cost", "speed", "local-only"};

/* The built-ins come from the binary: no policy directory. */
static inline int setup_env(void **state)
{
    (void)state;
    unsetenv("FLOWRUN_LUA_DIR");
    return 0;
}

/* ---- building the three arguments ---------------------------------------- */

/* Returns an owned candidate. `free_slots` of `max_parallel` are free;
 * `p50` < 0 means not observed yet (nil in Lua). est_cost is the worst case
 * for a task of EST_INPUT/MAX_TOKENS, as the engine computes it. */
static inline json_t *cand(const char *name, const char *tier, double quality, int free_slots,
                           int max_parallel, double price_in, double price_out, double p50)
{
    double est = (EST_INPUT * price_in + MAX_TOKENS * price_out) / 1e6;
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:o, s:[], s:i}",
                     "name", name, "tier", tier, "protocol", "openai", "model", name, "in_flight",
                     max_parallel - free_slots, "max_parallel", max_parallel, "free", free_slots,
                     "quality", quality, "price_in", price_in, "price_out", price_out, "est_cost",
                     est, "latency_p50", p50 < 0 ? json_null() : json_real(p50), "tags", "context",
                     32768);
}

/* Returns an owned array of the NULL-terminated candidates (stolen). */
static inline json_t *cands(json_t *first, ...)
{
    json_t *a = json_array();
    va_list ap;
    va_start(ap, first);
    for (json_t *c = first; c; c = va_arg(ap, json_t *))
        json_array_append_new(a, c);
    va_end(ap);
    return a;
}

/* Returns an owned task of `complexity` asked for `reason` after the
 * NULL-terminated endpoint names in `...` were tried. */
static inline json_t *task(double complexity, const char *reason, ...)
{
    json_t *tried = json_array();
    va_list ap;
    va_start(ap, reason);
    for (const char *n = va_arg(ap, const char *); n; n = va_arg(ap, const char *))
        json_array_append_new(tried, json_string(n));
    va_end(ap);
    return json_pack("{s:s, s:s, s:s, s:f, s:i, s:b, s:i, s:s, s:o, s:i, s:i}", "name", "t",
                     "agent", "coder", "type", "code", "complexity", complexity, "priority", 5,
                     "private", 0, "attempt", json_array_size(tried) + 1, "reason", reason, "tried",
                     tried, "est_input_tokens", EST_INPUT, "max_tokens", MAX_TOKENS);
}

static inline json_t *run_info(void)
{
    return json_pack("{s:n, s:f, s:f, s:n, s:f, s:i, s:i}", "budget", "spent", 0.0, "reserved", 0.0,
                     "remaining", "elapsed", 1.0, "done", 0, "total", 4);
}

/* ---- calling a policy ------------------------------------------------------ */

static inline fr_policy *load_builtin(const char *name)
{
    char *path = NULL;
    fr_error err = {0};
    int rc = fr_policy_resolve(name, NULL, &path, &err);
    if (rc != FR_OK)
        print_error("resolve %s: %s\n", name, err.msg);
    assert_int_equal(rc, FR_OK);
    fr_policy *p = NULL;
    rc = fr_policy_load(path, NULL, 1, &p, &err);
    if (rc != FR_OK)
        print_error("%s:%d: %s\n", err.source, err.line, err.msg);
    assert_int_equal(rc, FR_OK);
    free(path);
    return p;
}

static inline fr_policy *load_code(const char *code, const fr_lua_limits *lim)
{
    fr_policy *p = NULL;
    fr_error err = {0};
    int rc = fr_policy_load_string("policies/host.lua", code, strlen(code), lim, 3, &p, &err);
    if (rc != FR_OK)
        print_error("%s:%d: %s\n", err.source, err.line, err.msg);
    assert_int_equal(rc, FR_OK);
    return p;
}

/* Asks `p` to route task `t` among `c` (both stolen) and checks that it
 * chose `want` (NULL: wait). */
static inline void expect_route(fr_policy *p, json_t *t, json_t *c, const char *want)
{
    json_t *r = run_info();
    char *choice = NULL;
    fr_error err = {0};
    int rc = fr_policy_route(p, t, c, r, &choice, &err);
    if (rc != FR_OK)
        print_error("%s:%d: %s\n", err.source, err.line, err.msg);
    assert_int_equal(rc, FR_OK);
    if (want)
        assert_string_equal(choice ? choice : "(nil: wait)", want);
    else
        assert_null(choice);
    free(choice);
    json_decref(t);
    json_decref(c);
    json_decref(r);
}

/* Routes `t` among `c` (stolen) and returns the error code, filling `err`;
 * the choice goes to `choice` (owned, may be NULL) when given. */
static inline int route_rc(fr_policy *p, json_t *t, json_t *c, fr_error *err, char **choice)
{
    json_t *r = run_info();
    char *name = NULL;
    int rc = fr_policy_route(p, t, c, r, &name, err);
    assert_true(rc == FR_OK || name == NULL);
    if (choice)
        *choice = name;
    else
        free(name);
    json_decref(t);
    json_decref(c);
    json_decref(r);
    return rc;
}

/* The fleet most tests use, each with `f` free slots: two local models (a
 * small one and a bigger one), a cheap mid-range cloud model and an
 * expensive strong one. */
#define SMALL(f)  cand("small", "local", 0.5, f, 2, 0, 0, -1)
#define BIG(f)    cand("big", "local", 0.8, f, 2, 0, 0, -1)
#define MID(f)    cand("mid", "cloud", 0.7, f, 4, 0.5, 1.5, -1)
#define STRONG(f) cand("strong", "cloud", 0.95, f, 4, 3, 15, -1)
