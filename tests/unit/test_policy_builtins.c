/* Tests of dsl/policy's five built-in policies in lua/policies/: they load
 * and pass the self-check, are embedded byte for byte, answer every shape
 * of task, and decide as documented on hand-made candidates (cost, speed,
 * balanced, local-only). Runs from the source root (CTest's working
 * directory). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tests/unit/support/policy_harness.h"

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
    assert_non_null(strstr(err.msg, "adaptive, balanced, cost, local-only, speed"));
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

/* A built-in runs with its arguments kept between decisions, only the
 * fields that changed written again, and without the count hook
 * (dsl/policy.c); it must decide and explain exactly as its own code
 * loaded as a user's file does, with fresh tables, decision after decision:
 * candidates coming and going, endpoints full, tried ones, every reason,
 * records changing or staying as they were. */
static void test_builtins_kept_decide_as_fresh(void **state)
{
    (void)state;
    static const char *const names[] = {"e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7"};
    static const char *const reasons[] = {"first", "error", "quality", "budget"};
    static const char *const tags[] = {"code", "review"};
    for (size_t b = 0; b < sizeof builtins / sizeof *builtins; b++) {
        fr_policy *kept = load_builtin(builtins[b]);
        const fr_policy_builtin *src = fr_policy_builtin_find(builtins[b]);
        fr_policy *fresh = load_code(src->source, NULL);
        unsigned long seed = 12345 + b;
        fr_policy_hist h[32] = {0};
        for (int d = 0; d < 400; d++) {
#define RND(n) ((seed = seed * 6364136223846793005UL + 1442695040888963407UL), (seed >> 33) % (n))
            fr_policy_cand c[8];
            /* Per endpoint three records of a task's key (tasks of three
             * kinds take turns) and one overall, one in six changed each
             * decision (the others stay, as between two settles). */
            for (size_t r = 0; r < 32; r++) {
                if (d > 0 && RND(6) != 0)
                    continue;
                long tries = (long)RND(30),
                     passes = tries ? (long)RND((unsigned long)tries + 1) : 0;
                h[r] = (fr_policy_hist){.attempts = tries,
                                        .passes = passes,
                                        .fails = tries - passes,
                                        .weight = (double)tries * 0.9,
                                        .pass_rate = tries ? (double)passes / (double)tries : -1,
                                        .score_mean = -1,
                                        .latency_p50_ms = tries ? 200 : -1,
                                        .ttft_p50_ms = -1,
                                        .tokens_per_s = -1,
                                        .cost_mean_usd = -1,
                                        .age_s = tries ? 60 : -1,
                                        .band_lo = r % 4 == 3 ? 0 : 0.2 * (double)(r % 4),
                                        .band_hi = r % 4 == 3 ? 1 : 0.2 * (double)(r % 4) + 0.2,
                                        .type = r % 4 == 3 ? NULL : "code"};
            }
            const char *tried[8];
            size_t n = 0, ntried = 0;
            for (size_t e = 0; e < 8; e++) {
                if (RND(4) == 0) {
                    tried[ntried++] = names[e];
                    continue;
                }
                if (RND(3) == 0)
                    continue;
                bool local = e % 2 == 0;
                int max = 1 + (int)(e % 4), free = (int)RND((unsigned long)max + 1);
                c[n++] =
                    (fr_policy_cand){.name = names[e],
                                     .tier = local ? "local" : "cloud",
                                     .protocol = "openai",
                                     .model = names[e],
                                     .in_flight = max - free,
                                     .max_parallel = max,
                                     .free = free,
                                     .queued = (long)RND(3),
                                     .quality = 0.4 + 0.075 * (double)e,
                                     .price_in = local ? 0 : (double)e,
                                     .price_out = local ? 0 : 2.0 * (double)e,
                                     .est_cost = local ? 0 : 0.001 * (double)e,
                                     .latency_p50 = RND(3) == 0 ? -1 : 100.0 + (double)RND(900),
                                     .tags = tags + RND(2),
                                     .ntags = RND(2),
                                     .context = 8192,
                                     .history = RND(8) ? &h[4 * e + RND(3)] : NULL,
                                     .history_all = &h[4 * e + 3],
                                     .stable_strings = RND(4) != 0};
            }
            static const char *const tasks[] = {"t", "t", "u", "v7"};
            fr_policy_task t = {.name = tasks[RND(4)],
                                .agent = "a",
                                .type = RND(2) ? "code" : NULL,
                                .complexity = (double)RND(11) / 10,
                                .priority = 5,
                                .is_private = false,
                                .attempt = 1 + (int)ntried,
                                .reason = reasons[RND(4)],
                                .tried = tried,
                                .ntried = ntried,
                                .est_input_tokens = 1000,
                                .max_tokens = 500};
            fr_policy_run r = {.capped = RND(2) == 0,
                               .budget = 1,
                               .spent = 0.1,
                               .remaining = 0.9,
                               .elapsed = d,
                               .done = d,
                               .total = 400,
                               .ready = 3,
                               .seed = (long long)RND(3)};
#undef RND
            long want = -2, got = -2;
            char why_want[FR_POLICY_WHY_MAX + 1], why_got[FR_POLICY_WHY_MAX + 1];
            fr_error err = {0};
            assert_int_equal(fr_policy_route_explain(fresh, &t, c, n, &r, &want, why_want,
                                                     sizeof why_want, &err),
                             FR_OK);
            assert_int_equal(
                fr_policy_route_explain(kept, &t, c, n, &r, &got, why_got, sizeof why_got, &err),
                FR_OK);
            if (got != want)
                print_error("%s, decision %d: %ld, not %ld\n", builtins[b], d, got, want);
            assert_int_equal(got, want);
            assert_string_equal(why_got, why_want);
        }
        fr_policy_free(kept);
        fr_policy_free(fresh);
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

/* Among candidates that are equal in everything cost compares (tier, price,
 * quality, free slots), the first one listed wins: the endpoints' order in
 * the workflow, the same every run. The same for the strongest when nothing
 * fits, where a free one beats a full one of the same quality. */
static void test_cost_ties_go_to_the_first(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("cost");
    static const char *const names[] = {"e1", "e2", "e3", "e4", "e5", "e6", "e7"};
    for (size_t first = 0; first < 7; first++) {
        json_t *c = json_array();
        for (size_t i = 0; i < 7; i++)
            json_array_append_new(c, cand(names[(first + i) % 7], "local", 0.5, 2, 2, 0, 0, -1));
        expect_route(p, task(0.3, "first", NULL), c, names[first]);
        c = json_array();
        for (size_t i = 0; i < 7; i++)
            json_array_append_new(c, cand(names[(first + i) % 7], "cloud", 0.9, 1, 2, 1, 2, -1));
        expect_route(p, task(0.99, "first", NULL), c, names[first]);
    }
    expect_route(p, task(0.99, "first", NULL),
                 cands(cand("full", "cloud", 0.9, 0, 2, 1, 2, -1),
                       cand("free", "cloud", 0.9, 1, 2, 1, 2, -1), NULL),
                 "free");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_load_and_pass_check),
        cmocka_unit_test(test_unknown_builtin_lists_the_names),
        cmocka_unit_test(test_builtins_are_embedded),
        cmocka_unit_test(test_builtins_answer_every_shape),
        cmocka_unit_test(test_builtins_kept_decide_as_fresh),
        cmocka_unit_test(test_cost_cheapest_covering),
        cmocka_unit_test(test_cost_overflow_and_wait),
        cmocka_unit_test(test_cost_escalates_on_quality),
        cmocka_unit_test(test_cost_ties_go_to_the_first),
        cmocka_unit_test(test_speed_lowest_expected_finish),
        cmocka_unit_test(test_balanced_routine_local_hard_strong),
        cmocka_unit_test(test_balanced_tags_and_load),
        cmocka_unit_test(test_balanced_escalates_on_quality),
        cmocka_unit_test(test_local_only_never_cloud),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
