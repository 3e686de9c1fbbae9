/* Tests of dsl/policy: the four built-in policies in lua/policies/ decide as
 * documented on hand-made candidates, and the host turns every way a policy
 * can fail (a wrong answer, an error, a loop, a memory hog) into one error
 * with the file and line. Every tests/unit/fixtures/dsl/policy_bad_*.lua
 * must fail to load or its self-check with the code, line and words of its
 * header comments (the format of tests/unit/test_dsl.c's fixtures):
 *   -- code: FR_ELUA
 *   -- line: 7
 *   -- expect: text the message must contain
 * Runs from the source root (CTest's working directory). */

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

#include <cmocka.h>

/* Every test task estimates this many input tokens. */
#define EST_INPUT  1000
#define MAX_TOKENS 500

static const char *const builtins[] = {"balanced", "cost", "speed", "local-only"};

/* The built-ins come from the binary: no policy directory. */
static int setup_env(void **state)
{
    (void)state;
    unsetenv("FLOWRUN_LUA_DIR");
    return 0;
}

/* ---- building the three arguments ---------------------------------------- */

/* Returns an owned candidate. `free_slots` of `max_parallel` are free;
 * `p50` < 0 means not observed yet (nil in Lua). est_cost is the worst case
 * for a task of EST_INPUT/MAX_TOKENS, as the engine computes it. */
static json_t *cand(const char *name, const char *tier, double quality, int free_slots,
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
static json_t *cands(json_t *first, ...)
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
static json_t *task(double complexity, const char *reason, ...)
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

static json_t *run_info(void)
{
    return json_pack("{s:n, s:f, s:f, s:n, s:f, s:i, s:i}", "budget", "spent", 0.0, "reserved", 0.0,
                     "remaining", "elapsed", 1.0, "done", 0, "total", 4);
}

/* ---- calling a policy ------------------------------------------------------ */

static fr_policy *load_builtin(const char *name)
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

static fr_policy *load_code(const char *code, const fr_lua_limits *lim)
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
static void expect_route(fr_policy *p, json_t *t, json_t *c, const char *want)
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
static int route_rc(fr_policy *p, json_t *t, json_t *c, fr_error *err, char **choice)
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

/* ---- every built-in -------------------------------------------------------- */

static void test_builtins_load_and_pass_check(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++) {
        fr_policy *p = load_builtin(builtins[i]);
        assert_string_equal(fr_policy_name(p), builtins[i]);
        assert_int_equal(fr_policy_version(p), 1);
        fr_error err = {0};
        int rc = fr_policy_check(p, NULL, &err);
        if (rc != FR_OK)
            print_error("%s: %s:%d: %s\n", builtins[i], err.source, err.line, err.msg);
        assert_int_equal(rc, FR_OK);
        fr_policy_free(p);
    }
}

static void test_unknown_builtin_lists_the_names(void **state)
{
    (void)state;
    char *path = NULL;
    fr_error err = {0};
    assert_int_equal(fr_policy_resolve("fastest", NULL, &path, &err), FR_ENOENT);
    assert_null(path);
    assert_non_null(strstr(err.msg, "'fastest'"));
    assert_non_null(strstr(err.msg, "local-only"));
    /* A near miss names the built-ins, the file it tried beside the
     * workflow, and the name meant. */
    assert_int_equal(fr_policy_resolve("balance", "/nowhere/flows", &path, &err), FR_ENOENT);
    assert_non_null(strstr(err.msg, "balanced, cost, local-only, speed"));
    assert_non_null(strstr(err.msg, "/nowhere/flows/balance"));
    assert_non_null(strstr(err.msg, "did you mean 'balanced'?"));
    assert_int_equal(fr_policy_resolve("sped.lua", "/nowhere", &path, &err), FR_ENOENT);
    assert_non_null(strstr(err.msg, "/nowhere/sped.lua"));
    assert_non_null(strstr(err.msg, "did you mean 'speed'?"));
}

/* Reads the whole file `path` (borrowed); returns it owned, its size in *len. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

/* Each built-in is embedded byte for byte from lua/policies/<name>.lua (the
 * test runs in the source tree), resolves without opening a file, and a
 * $FLOWRUN_LUA_DIR that holds the file overrides it (for development). */
static void test_builtins_are_embedded(void **state)
{
    (void)state;
    assert_int_equal(fr_policy_nbuiltins, sizeof builtins / sizeof builtins[0]);
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        char file[256];
        snprintf(file, sizeof file, "lua/policies/%s.lua", builtins[i]);
        size_t len = 0;
        char *text = slurp(file, &len);
        const fr_policy_builtin *b = fr_policy_builtin_find(builtins[i]);
        assert_non_null(b);
        assert_int_equal(b->len, len);
        assert_memory_equal(b->source, text, len);
        assert_int_equal(b->source[len], '\0');
        free(text);
        char *path = NULL;
        fr_error err = {0};
        assert_int_equal(fr_policy_resolve(builtins[i], "/nowhere", &path, &err), FR_OK);
        assert_true(fr_policy_path_is_builtin(path));
        free(path);
    }
    assert_null(fr_policy_builtin_find("fastest"));
    assert_false(fr_policy_path_is_builtin("built-in:fastest"));
    assert_false(fr_policy_path_is_builtin("lua/policies/cost.lua"));

    char *path = NULL;
    fr_error err = {0};
    setenv("FLOWRUN_LUA_DIR", "lua", 1);
    assert_int_equal(fr_policy_resolve("cost", NULL, &path, &err), FR_OK);
    assert_string_equal(path, "lua/policies/cost.lua");
    free(path);
    setenv("FLOWRUN_LUA_DIR", "/nowhere", 1); /* no file there: the embedded one */
    assert_int_equal(fr_policy_resolve("cost", NULL, &path, &err), FR_OK);
    assert_string_equal(path, "built-in:cost");
    fr_policy *p = NULL;
    assert_int_equal(fr_policy_load(path, NULL, 1, &p, &err), FR_OK);
    assert_string_equal(fr_policy_name(p), "cost");
    fr_policy_free(p);
    free(path);
    unsetenv("FLOWRUN_LUA_DIR");
}

/* Whatever the task and the reason, every built-in answers with one of the
 * candidates or nil, and local-only never with a cloud one. */
static void test_builtins_answer_every_shape(void **state)
{
    (void)state;
    static const char *const reasons[] = {"first", "error", "quality", "budget"};
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++) {
        fr_policy *p = load_builtin(builtins[i]);
        bool local_only = strcmp(builtins[i], "local-only") == 0;
        for (size_t r = 0; r < 4; r++)
            for (int step = 0; step <= 4; step++) {
                double cx = step / 4.0;
                fr_error err = {0};
                char *choice = NULL;
                assert_int_equal(route_rc(p, task(cx, reasons[r], "gone", NULL),
                                          cands(SMALL(0), BIG(1), MID(4), STRONG(0), NULL), &err,
                                          &choice),
                                 FR_OK);
                if (local_only)
                    assert_string_equal(choice, "big");
                free(choice);
                /* A single candidate, and none at all. */
                assert_int_equal(
                    route_rc(p, task(cx, reasons[r], NULL), cands(STRONG(1), NULL), &err, &choice),
                    FR_OK);
                if (local_only)
                    assert_null(choice);
                else
                    assert_string_equal(choice, "strong");
                free(choice);
                assert_int_equal(
                    route_rc(p, task(cx, reasons[r], NULL), json_array(), &err, &choice), FR_OK);
                assert_null(choice);
            }
        fr_policy_free(p);
    }
}

/* ---- cost ------------------------------------------------------------------ */

static void test_cost_cheapest_covering(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("cost");
    /* Routine work: a free local that covers it, never the cloud; of two
     * that cover it at the same price, the smaller model, which leaves the
     * bigger one free for harder work. */
    expect_route(p, task(0.3, "first", NULL), cands(STRONG(4), MID(4), BIG(2), SMALL(2), NULL),
                 "small");
    expect_route(p, task(0.6, "first", NULL), cands(STRONG(4), MID(4), SMALL(2), BIG(1), NULL),
                 "big");
    /* Among clouds that cover it, the cheaper one. */
    expect_route(p, task(0.6, "first", NULL), cands(STRONG(4), MID(4), NULL), "mid");
    /* Beyond every local model: the cheapest cloud that covers it, even
     * though both locals are free. */
    expect_route(p, task(0.85, "first", NULL), cands(SMALL(2), BIG(2), STRONG(4), MID(4), NULL),
                 "strong");
    fr_policy_free(p);
}

static void test_cost_overflow_and_wait(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("cost");
    /* The fitting local is full: overflow to the cheapest fitting cloud,
     * not to the free local that is too weak. */
    expect_route(p, task(0.6, "first", NULL), cands(SMALL(2), BIG(0), STRONG(4), MID(4), NULL),
                 "mid");
    /* The cheap cloud is full too: the pricier one still covers it. */
    expect_route(p, task(0.6, "first", NULL), cands(SMALL(2), BIG(0), STRONG(4), MID(0), NULL),
                 "strong");
    /* Every fitting candidate is full: wait rather than use the weak one. */
    expect_route(p, task(0.6, "first", NULL), cands(SMALL(2), BIG(0), STRONG(0), MID(0), NULL),
                 NULL);
    /* Nothing covers the task: the strongest, and waiting for it when full
     * (returning a full candidate means "wait for this one"). */
    expect_route(p, task(0.99, "first", NULL), cands(SMALL(2), BIG(2), MID(4), STRONG(4), NULL),
                 "strong");
    expect_route(p, task(0.99, "first", NULL), cands(SMALL(2), BIG(2), MID(4), STRONG(0), NULL),
                 "strong");
    fr_policy_free(p);
}

static void test_cost_escalates_on_quality(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("cost");
    /* The first decision shows every endpoint; big takes the task. */
    expect_route(p, task(0.6, "first", NULL), cands(SMALL(2), BIG(2), MID(4), STRONG(4), NULL),
                 "big");
    /* big's reply failed its quality gate, so it is no longer a candidate:
     * mid (0.7) covers the complexity but is weaker than big (0.8). */
    expect_route(p, task(0.6, "quality", "big", NULL), cands(SMALL(2), MID(4), STRONG(4), NULL),
                 "strong");
    fr_policy_free(p);

    /* A fresh policy never saw what was tried: it asks for more than the
     * complexity, so the small local that merely covers it is passed over. */
    p = load_builtin("cost");
    expect_route(p, task(0.5, "quality", "gone", NULL), cands(SMALL(2), MID(4), STRONG(4), NULL),
                 "mid");
    fr_policy_free(p);
}

/* ---- speed ----------------------------------------------------------------- */

static void test_speed_lowest_expected_finish(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("speed");
    /* Observed latency beats the priors (local 2000 ms, cloud 4000 ms). */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("gpu", "local", 0.6, 2, 2, 0, 0, 5000),
                       cand("fast", "cloud", 0.9, 4, 4, 3, 15, 1200), NULL),
                 "fast");
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("cold", "cloud", 0.9, 4, 4, 3, 15, -1),
                       cand("gpu", "local", 0.6, 2, 2, 0, 0, 800), NULL),
                 "gpu");
    /* Nothing observed: the priors decide. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("cold", "cloud", 0.9, 4, 4, 3, 15, -1),
                       cand("gpu", "local", 0.6, 2, 2, 0, 0, -1), NULL),
                 "gpu");
    /* A full endpoint with a short queue can still be the fastest: 500 ms
     * for a slot, then 500 ms, beats an idle 2000 ms, so wait for it. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("gpu", "local", 0.6, 2, 2, 0, 0, -1),
                       cand("fast", "cloud", 0.9, 0, 4, 3, 15, 500), NULL),
                 "fast");
    /* With one slot it is not: 1000 ms until it frees, then 1000 ms. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("busy", "cloud", 0.9, 0, 1, 3, 15, 1000),
                       cand("gpu", "local", 0.6, 2, 2, 0, 0, 1900), NULL),
                 "gpu");
    /* Equal estimates: the free one, then the cheaper one. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("a", "cloud", 0.9, 4, 4, 3, 15, -1),
                       cand("b", "cloud", 0.9, 4, 4, 1, 2, -1), NULL),
                 "b");
    /* The ready tasks queued ahead count: a full local endpoint of 4 slots
     * (300 ms) with 3 tasks already waiting for it frees our slot after
     * one round (600 ms in all), with 4 waiting after two (900 ms), and then
     * an idle cloud endpoint at 700 ms is sooner. */
    json_t *gpu = cand("gpu", "local", 0.6, 0, 4, 0, 0, 300);
    json_object_set_new(gpu, "queued", json_integer(3));
    expect_route(p, task(0.5, "first", NULL),
                 cands(gpu, cand("api", "cloud", 0.9, 10, 10, 3, 15, 700), NULL), "gpu");
    gpu = cand("gpu", "local", 0.6, 0, 4, 0, 0, 300);
    json_object_set_new(gpu, "queued", json_integer(4));
    expect_route(p, task(0.5, "first", NULL),
                 cands(gpu, cand("api", "cloud", 0.9, 10, 10, 3, 15, 700), NULL), "api");
    /* No history on either (the tier priors, 2000 ms and 4000 ms): a full
     * local endpoint costs a round, so the idle cloud one wins the tie. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("gpu", "local", 0.6, 0, 4, 0, 0, -1),
                       cand("api", "cloud", 0.9, 10, 10, 3, 15, -1), NULL),
                 "api");
    fr_policy_free(p);
}

/* ---- balanced -------------------------------------------------------------- */

static void test_balanced_routine_local_hard_strong(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("balanced");
    /* Routine work stays on local hardware. */
    expect_route(p, task(0.3, "first", NULL), cands(STRONG(4), MID(4), BIG(2), NULL), "big");
    expect_route(p, task(0.3, "first", NULL), cands(STRONG(4), MID(4), SMALL(2), NULL), "small");
    /* Work far beyond the local models goes to the strong endpoint. */
    expect_route(p, task(0.95, "first", NULL), cands(SMALL(2), BIG(2), MID(4), STRONG(4), NULL),
                 "strong");
    /* Routine work overflows to the cloud when the locals are full. */
    expect_route(p, task(0.3, "first", NULL), cands(SMALL(0), BIG(0), MID(4), NULL), "mid");
    /* Hard work waits for the strong endpoint rather than settle for the
     * small local model. */
    expect_route(p, task(0.95, "first", NULL), cands(SMALL(2), STRONG(0), NULL), NULL);
    fr_policy_free(p);
}

static void test_balanced_tags_and_load(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("balanced");
    json_t *tagged = cand("coder", "local", 0.8, 1, 2, 0, 0, -1);
    json_array_append_new(json_object_get(tagged, "tags"), json_string("code"));
    /* Equal models: the one tagged with the task's type... */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("plain", "local", 0.8, 1, 2, 0, 0, -1), tagged, NULL), "coder");
    /* ...and otherwise the emptier one. */
    expect_route(p, task(0.5, "first", NULL),
                 cands(cand("busy", "local", 0.8, 1, 4, 0, 0, -1),
                       cand("idle", "local", 0.8, 4, 4, 0, 0, -1), NULL),
                 "idle");
    fr_policy_free(p);
}

static void test_balanced_escalates_on_quality(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("balanced");
    json_t *twin = cand("twin", "local", 0.8, 2, 2, 0, 0, -1);
    expect_route(p, task(0.5, "first", NULL),
                 cands(BIG(2), json_incref(twin), MID(4), STRONG(4), NULL), "big");
    /* big failed the quality gate: its twin is no stronger, mid is weaker;
     * the retry goes up to the strong model. */
    expect_route(p, task(0.5, "quality", "big", NULL), cands(twin, MID(4), STRONG(4), NULL),
                 "strong");
    /* A stronger local model is a step up too, and cheaper. */
    expect_route(p, task(0.5, "quality", "big", NULL),
                 cands(cand("huge", "local", 0.9, 1, 1, 0, 0, -1), MID(4), STRONG(4), NULL),
                 "huge");
    /* After an error (not a quality failure) the twin is fine. */
    expect_route(p, task(0.5, "error", "big", NULL),
                 cands(cand("twin", "local", 0.8, 2, 2, 0, 0, -1), MID(4), STRONG(4), NULL),
                 "twin");
    fr_policy_free(p);
}

/* ---- local-only ------------------------------------------------------------ */

static void test_local_only_never_cloud(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("local-only");
    expect_route(p, task(0.3, "first", NULL), cands(STRONG(4), MID(4), SMALL(2), NULL), "small");
    /* A local model that covers the task beats an emptier one that does not. */
    expect_route(p, task(0.7, "first", NULL), cands(STRONG(4), SMALL(2), BIG(1), NULL), "big");
    /* Too hard for every local model: still local. */
    expect_route(p, task(0.99, "first", NULL), cands(STRONG(4), SMALL(2), NULL), "small");
    /* Locals full, the cloud free: wait. */
    expect_route(p, task(0.3, "first", NULL), cands(SMALL(0), BIG(0), MID(4), STRONG(4), NULL),
                 NULL);
    /* No local candidate at all: nil too. */
    expect_route(p, task(0.3, "first", NULL), cands(MID(4), STRONG(4), NULL), NULL);
    expect_route(p, task(0.3, "error", "small", NULL), cands(MID(4), STRONG(4), NULL), NULL);
    /* After a quality failure, the strongest local left. */
    expect_route(p, task(0.3, "quality", "x", NULL),
                 cands(cand("roomy", "local", 0.6, 4, 4, 0, 0, -1), BIG(1), STRONG(4), NULL),
                 "big");
    fr_policy_free(p);
}

/* ---- the host ------------------------------------------------------------------ */

static void test_route_answers(void **state)
{
    (void)state;
    fr_policy *p = load_code("return { route = function(task, candidates, run)\n"
                             "  if task.agent == 'name' then return 'mid' end\n"
                             "  if task.agent == 'table' then return candidates[2] end\n"
                             "  if task.agent == 'nil' then return nil end\n"
                             "  if task.agent == 'number' then return 42 end\n"
                             "  if task.agent == 'alien' then return { name = 'nope' } end\n"
                             "  return 'nope'\n"
                             "end }\n",
                             NULL);
    static const struct {
        const char *agent;
        int rc;
        const char *want;
    } cases[] = {
        {"name", FR_OK, "mid"},
        {"table", FR_OK, "strong"},
        {"nil", FR_OK, NULL},
        {"number", FR_EPOLICY, "a number"},
        {"alien", FR_EPOLICY, "'nope'"},
        {"unknown", FR_EPOLICY, "'nope'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string(cases[i].agent));
        json_t *c = cands(MID(4), STRONG(4), NULL);
        json_t *r = run_info();
        char *choice = NULL;
        fr_error err = {0};
        int rc = fr_policy_route(p, t, c, r, &choice, &err);
        assert_int_equal(rc, cases[i].rc);
        if (rc == FR_OK && cases[i].want) {
            assert_string_equal(choice, cases[i].want);
        } else if (rc == FR_OK) {
            assert_null(choice);
        } else {
            assert_null(choice);
            assert_string_equal(err.source, "policies/host.lua");
            assert_non_null(strstr(err.msg, cases[i].want));
        }
        free(choice);
        json_decref(t);
        json_decref(c);
        json_decref(r);
    }
    fr_policy_free(p);
}

static void test_route_error_has_file_and_line(void **state)
{
    (void)state;
    fr_policy *p = load_code("local function pick(c)\n"
                             "  return c.missing.name\n"
                             "end\n"
                             "return { route = function(task, candidates, run)\n"
                             "  return pick(candidates[1])\n"
                             "end }\n",
                             NULL);
    fr_error err = {0};
    assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                     FR_ELUA);
    assert_string_equal(err.source, "policies/host.lua");
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "missing"));
    /* The policy still works for the next decision. */
    assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                     FR_ELUA);
    fr_policy_free(p);
}

/* Copying the arguments in runs protected too: a task too big for the
 * policy's memory cap fails that decision with the route's line, it does
 * not abort the process, and the policy goes on working. */
static void test_arguments_beyond_the_memory_cap(void **state)
{
    (void)state;
    fr_lua_limits lim = {.mem_bytes = 1u << 20};
    fr_policy *p = load_code("local n = 0\n"
                             "return { route = function(task, candidates, run)\n"
                             "  return candidates[1]\n"
                             "end,\n"
                             "on_result = function(task, result, run) return 'accept' end }\n",
                             &lim);
    size_t big = 2u << 20;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'x', big);
    text[big] = '\0';
    for (int round = 0; round < 2; round++) {
        fr_error err = {0};
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "note", json_string(text));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, 2);
        assert_non_null(strstr(err.msg, "memory limit"));

        memset(&err, 0, sizeof err);
        json_t *tk = task(0.5, "first", NULL);
        json_t *res = json_pack("{s:s}", "text", text);
        json_t *r = run_info();
        fr_verdict v;
        assert_int_equal(fr_policy_on_result(p, tk, res, r, &v, &err), FR_ELIMIT);
        assert_int_equal(err.line, 5);
        json_decref(tk);
        json_decref(res);
        json_decref(r);

        memset(&err, 0, sizeof err);
        assert_int_equal(route_rc(p, task(0.5, "first", NULL), cands(MID(4), NULL), &err, NULL),
                         FR_OK);
    }
    free(text);
    fr_policy_free(p);
}

static void test_limits_cannot_be_swallowed(void **state)
{
    (void)state;
    fr_lua_limits lim = {.mem_bytes = 4u << 20, .instructions = 200000};
    fr_policy *p = load_code("return { route = function(task, candidates, run)\n"
                             "  if task.agent == 'loop' then\n"
                             "    pcall(function() while true do end end)\n"
                             "    return candidates[1]\n"
                             "  end\n"
                             "  local hog, page = {}, string.rep('x', 4096)\n"
                             "  pcall(function()\n"
                             "    for i = 1, 1e9 do hog[i] = page .. i end\n"
                             "  end)\n"
                             "  return candidates[1]\n"
                             "end }\n",
                             &lim);
    for (int round = 0; round < 2; round++) {
        fr_error err = {0};
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string("loop"));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, 3);
        assert_non_null(strstr(err.msg, "instruction limit"));

        memset(&err, 0, sizeof err);
        t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string("hog"));
        assert_int_equal(route_rc(p, t, cands(MID(4), NULL), &err, NULL), FR_ELIMIT);
        assert_non_null(strstr(err.msg, "memory limit"));
    }
    fr_policy_free(p);
}

static void test_on_result_verdicts(void **state)
{
    (void)state;
    fr_policy *p = load_code("local verdicts = { a = 'accept', r = 'retry', e = 'escalate',\n"
                             "  bad = 'maybe', num = 7 }\n"
                             "return {\n"
                             "  route = function(task, candidates, run) return candidates[1] end,\n"
                             "  on_result = function(task, result, run)\n"
                             "    if task.agent == 'boom' then error('no verdict') end\n"
                             "    return verdicts[task.agent]\n"
                             "  end,\n"
                             "}\n",
                             NULL);
    assert_true(fr_policy_has_on_result(p));
    static const struct {
        const char *agent;
        int rc;
        fr_verdict v;
    } cases[] = {
        {"a", FR_OK, FR_VERDICT_ACCEPT},        {"r", FR_OK, FR_VERDICT_RETRY},
        {"e", FR_OK, FR_VERDICT_ESCALATE},      {"none", FR_OK, FR_VERDICT_ACCEPT},
        {"bad", FR_EPOLICY, FR_VERDICT_ACCEPT}, {"num", FR_EPOLICY, FR_VERDICT_ACCEPT},
        {"boom", FR_ELUA, FR_VERDICT_ACCEPT},
    };
    json_t *result =
        json_pack("{s:s, s:s, s:s, s:n, s:f, s:{s:i, s:i}, s:f, s:i}", "endpoint", "mid", "tier",
                  "cloud", "text", "hi", "json", "latency_ms", 80.0, "tokens", "input", 10,
                  "output", 2, "cost_usd", 0.0001, "attempt", 1);
    json_t *r = run_info();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        json_t *t = task(0.5, "first", NULL);
        json_object_set_new(t, "agent", json_string(cases[i].agent));
        fr_verdict v = FR_VERDICT_RETRY;
        fr_error err = {0};
        int rc = fr_policy_on_result(p, t, result, r, &v, &err);
        assert_int_equal(rc, cases[i].rc);
        if (rc == FR_OK)
            assert_int_equal(v, cases[i].v);
        else
            assert_string_equal(err.source, "policies/host.lua");
        if (rc == FR_EPOLICY)
            assert_non_null(strstr(err.msg, cases[i].agent[0] == 'b' ? "maybe" : "number"));
        if (rc == FR_ELUA)
            assert_int_equal(err.line, 6);
        json_decref(t);
    }
    json_decref(result);
    json_decref(r);
    fr_policy_free(p);

    /* Without on_result every reply is accepted. */
    p = load_code("return { route = function() return nil end }", NULL);
    assert_false(fr_policy_has_on_result(p));
    fr_verdict v = FR_VERDICT_RETRY;
    assert_int_equal(fr_policy_on_result(p, NULL, NULL, NULL, &v, NULL), FR_OK);
    assert_int_equal(v, FR_VERDICT_ACCEPT);
    fr_policy_free(p);
}

/* The self-check offers the candidates it is given (the run's endpoints), so
 * a policy that names one of them passes; a name that is no candidate is a
 * decision the default makes in a run, not a broken policy. */
static void test_check_names_and_real_candidates(void **state)
{
    (void)state;
    json_t *real = cands(cand("gpu", "local", 0.6, 2, 2, 0, 0, -1),
                         cand("api", "cloud", 0.9, 4, 4, 3, 15, -1), NULL);
    static const char *const codes[] = {
        "return { route = function(t, c) return 'gpu' end }",
        "return { route = function(t, c) return 'elsewhere' end }",
        "return { route = function(t, c) return c[1].name:upper() end }",
        "return { route = function(t, c)\n"
        "  for _, x in ipairs(c) do if x.name == 'api' then return x end end\n"
        "  error('no api')\n end }",
    };
    for (size_t i = 0; i < sizeof codes / sizeof *codes; i++) {
        fr_policy *p = load_code(codes[i], NULL);
        fr_error err = {0};
        int rc = fr_policy_check(p, real, &err);
        if (rc != FR_OK)
            print_error("case %zu: %s\n", i, err.msg);
        assert_int_equal(rc, FR_OK);
        fr_policy_free(p);
    }
    /* The made-up candidates have no 'api': that policy errors there. */
    fr_policy *p = load_code(codes[3], NULL);
    fr_error err = {0};
    assert_int_equal(fr_policy_check(p, NULL, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "no api"));
    fr_policy_free(p);
    json_decref(real);
}

/* The self-check refuses a version that would fail its first decision. */
static void test_check_refuses_broken_versions(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int rc;
        int line;
    } cases[] = {
        /* A wrong answer names the line where the function is defined. */
        {"return { route = function() return true end }", FR_EPOLICY, 1},
        {"return {\n route = function(t, c)\n return c[1].nope.x end }", FR_ELUA, 3},
        {"return { route = function() while true do end end }", FR_ELIMIT, 1},
        {"return { route = function(t, c) return c[2] end,\n"
         " on_result = function() return 'perhaps' end }",
         FR_EPOLICY, 2},
        {"return { route = function(t, c) return c[2] end,\n"
         " on_result = function(t, r) return r.nope.x end }",
         FR_ELUA, 2},
    };
    fr_lua_limits lim = {.instructions = 100000};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_policy *p = load_code(cases[i].code, &lim);
        fr_error err = {0};
        int rc = fr_policy_check(p, NULL, &err);
        if (rc != cases[i].rc)
            print_error("case %zu: %s %s\n", i, fr_err_name(rc), err.msg);
        assert_int_equal(rc, cases[i].rc);
        assert_string_equal(err.source, "policies/host.lua");
        assert_int_equal(err.line, cases[i].line);
        fr_policy_free(p);
    }
}

/* A file that does not load names itself, and the line when there is one. */
static void test_load_errors_name_the_path(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int rc;
        int line;
        const char *words;
    } cases[] = {
        {"return {\n route = function( end }", FR_ESYNTAX, 2, "near"},
        {"return 42", FR_EPOLICY, 0, "must return a table"},
        {"return { rout = function() end }", FR_EPOLICY, 0, "no function 'route'"},
        {"return { route = function() end, on_result = 'accept' }", FR_EPOLICY, 0, "on_result"},
        {"local x = nil\nreturn x.route", FR_ELUA, 2, "nil"},
        {"return { route = io.open }", FR_ELUA, 1, "io"},
        {"while true do end", FR_ELIMIT, 1, "instruction limit"},
        {"\27Lua", FR_ESYNTAX, 0, ""},
    };
    fr_lua_limits lim = {.instructions = 100000};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fr_policy *p = NULL;
        fr_error err = {0};
        const char *code = cases[i].code;
        int rc =
            fr_policy_load_string("policies/broken.lua", code, strlen(code), &lim, 2, &p, &err);
        if (rc != cases[i].rc)
            print_error("case %zu: %s %s\n", i, fr_err_name(rc), err.msg);
        assert_int_equal(rc, cases[i].rc);
        assert_null(p);
        assert_string_equal(err.source, "policies/broken.lua");
        if (cases[i].line)
            assert_int_equal(err.line, cases[i].line);
        assert_non_null(strstr(err.msg, cases[i].words));
    }
    /* A missing file is FR_ENOENT, with its path. */
    fr_policy *p = NULL;
    fr_error err = {0};
    assert_int_equal(fr_policy_load("policies/none.lua", NULL, 1, &p, &err), FR_ENOENT);
    assert_string_equal(err.source, "policies/none.lua");
}

/* The policy gets copies: what it does to them does not reach the caller,
 * and state it keeps between calls survives (the built-ins rely on it). */
static void test_arguments_are_copies(void **state)
{
    (void)state;
    fr_policy *p = load_code("local calls = 0\n"
                             "return { route = function(task, candidates, run)\n"
                             "  calls = calls + 1\n"
                             "  candidates[1].name = 'forged'\n"
                             "  task.tried[1] = 'x'\n"
                             "  return calls == 1 and candidates[2] or candidates[1]\n"
                             "end }\n",
                             NULL);
    json_t *t = task(0.5, "first", NULL);
    json_t *c = cands(MID(4), STRONG(4), NULL);
    json_t *r = run_info();
    for (int i = 0; i < 2; i++) {
        char *choice = NULL;
        fr_error err = {0};
        int rc = fr_policy_route(p, t, c, r, &choice, &err);
        /* The second call returns the renamed candidate: not one of ours. */
        assert_int_equal(rc, i == 0 ? FR_OK : FR_EPOLICY);
        if (i == 0)
            assert_string_equal(choice, "strong");
        free(choice);
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(c, 0), "name")), "mid");
    assert_int_equal(json_array_size(json_object_get(t, "tried")), 0);
    json_decref(t);
    json_decref(c);
    json_decref(r);
    fr_policy_free(p);
}

/* Checks one policy fixture against its header (see the top of the file);
 * returns the number of mismatches, each printed. */
static int check_bad_policy(const char *dir, const char *name)
{
    static const int codes[] = {FR_ELUA, FR_ESYNTAX, FR_ELIMIT, FR_EPOLICY};
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024], expect[1024] = "";
    int want_code = 1, want_line = -1, bad = 0;
    while (fgets(line, sizeof line, f) && strncmp(line, "-- ", 3) == 0) {
        line[strcspn(line, "\n")] = '\0';
        for (size_t i = 0; strncmp(line, "-- code: ", 9) == 0 && i < 4; i++)
            if (strcmp(fr_err_name(codes[i]), line + 9) == 0)
                want_code = codes[i];
        if (strncmp(line, "-- line: ", 9) == 0)
            want_line = atoi(line + 9);
        if (strncmp(line, "-- expect: ", 11) == 0)
            snprintf(expect, sizeof expect, "%s", line + 11);
    }
    fclose(f);
    assert_true(want_code < 0 && want_line > 0 && expect[0]);

    /* As a run starts one: load, then the self-check. */
    fr_policy *p = NULL;
    fr_error err = {0};
    int rc = fr_policy_load(path, NULL, 1, &p, &err);
    if (rc == FR_OK)
        rc = fr_policy_check(p, NULL, &err);
    fr_policy_free(p);
    char buf[2048];
    fr_error_format(&err, buf, sizeof buf);
    if (rc != want_code) {
        print_error("%s: got %s, want %s (%s)\n", name, fr_err_name(rc), fr_err_name(want_code),
                    buf);
        bad++;
    }
    if (err.line != want_line || strcmp(err.source, path) != 0) {
        print_error("%s: got %s:%d, want %s:%d (%s)\n", name, err.source, err.line, path, want_line,
                    buf);
        bad++;
    }
    if (!strstr(err.msg, expect)) {
        print_error("%s: message lacks \"%s\": %s\n", name, expect, buf);
        bad++;
    }
    return bad;
}

/* Policies that raise odd error objects, nest too deeply, run out of memory
 * or hide errors in metamethods fail with their file and line: never an
 * abort, never a message without a position. */
static void test_bad_policy_fixtures(void **state)
{
    (void)state;
    const char *dir = "tests/unit/fixtures/dsl";
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "policy_bad_", 11) != 0 || l < 5 ||
            strcmp(de->d_name + l - 4, ".lua") != 0)
            continue;
        bad += check_bad_policy(dir, de->d_name);
        n++;
    }
    closedir(d);
    assert_true(n >= 10);
    assert_int_equal(bad, 0);
}

/* Every registry reference the policy host takes goes through the counted
 * pair of dsl/sandbox: a policy holds two (route, on_result) while it lives,
 * routing and on_result take none for good, a reload beside the live version
 * holds its own two, and freeing every version (or a load that fails) leaves
 * the count where it was. A reference that is never released shows here. */
static void test_registry_refs_return_to_zero(void **state)
{
    (void)state;
    static const char code[] = "return {\n"
                               "  route = function(task, candidates) return candidates[1] end,\n"
                               "  on_result = function() return 'accept' end,\n"
                               "}\n";
    long refs0 = fr_sandbox_live_refs();
    fr_policy *live = load_code(code, NULL);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 2);
    assert_int_equal(fr_policy_check(live, NULL, NULL), FR_OK);
    for (int i = 0; i < 3; i++) {
        expect_route(live, task(0.5, "first", NULL), cands(SMALL(1), MID(1), NULL), "small");
        json_t *t = task(0.5, "first", NULL), *r = run_info();
        json_t *result = json_pack("{s:s, s:s}", "endpoint", "small", "text", "hi");
        fr_verdict v = FR_VERDICT_RETRY;
        assert_int_equal(fr_policy_on_result(live, t, result, r, &v, NULL), FR_OK);
        assert_int_equal(v, FR_VERDICT_ACCEPT);
        json_decref(t);
        json_decref(r);
        json_decref(result);
    }
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 2);

    /* A reload: the next version loads beside the live one, then replaces it. */
    fr_policy *next = load_code("return { route = function() return nil end }", NULL);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 3);
    fr_policy_free(live);
    assert_int_equal(fr_sandbox_live_refs(), refs0 + 1);

    /* Versions that fail to load hold nothing. */
    static const char *const bad[] = {
        "return { route = function() end, on_result = 5 }",
        "return { on_result = function() end }",
        "error('boom')",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        fr_policy *p = NULL;
        fr_error err = {0};
        assert_int_not_equal(
            fr_policy_load_string("policies/host.lua", bad[i], strlen(bad[i]), NULL, 4, &p, &err),
            FR_OK);
        assert_null(p);
        assert_int_equal(fr_sandbox_live_refs(), refs0 + 1);
    }
    fr_policy_free(next);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        fr_policy_free(load_builtin(builtins[i]));
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_load_and_pass_check),
        cmocka_unit_test(test_unknown_builtin_lists_the_names),
        cmocka_unit_test(test_builtins_are_embedded),
        cmocka_unit_test(test_builtins_answer_every_shape),
        cmocka_unit_test(test_cost_cheapest_covering),
        cmocka_unit_test(test_cost_overflow_and_wait),
        cmocka_unit_test(test_cost_escalates_on_quality),
        cmocka_unit_test(test_speed_lowest_expected_finish),
        cmocka_unit_test(test_balanced_routine_local_hard_strong),
        cmocka_unit_test(test_balanced_tags_and_load),
        cmocka_unit_test(test_balanced_escalates_on_quality),
        cmocka_unit_test(test_local_only_never_cloud),
        cmocka_unit_test(test_route_answers),
        cmocka_unit_test(test_route_error_has_file_and_line),
        cmocka_unit_test(test_limits_cannot_be_swallowed),
        cmocka_unit_test(test_arguments_beyond_the_memory_cap),
        cmocka_unit_test(test_on_result_verdicts),
        cmocka_unit_test(test_check_refuses_broken_versions),
        cmocka_unit_test(test_check_names_and_real_candidates),
        cmocka_unit_test(test_load_errors_name_the_path),
        cmocka_unit_test(test_arguments_are_copies),
        cmocka_unit_test(test_bad_policy_fixtures),
        cmocka_unit_test(test_registry_refs_return_to_zero),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
