/* Tests of the built-in policy `adaptive` (lua/policies/adaptive.lua) on
 * hand-made candidates carrying `history` and `history_all`: the cheapest
 * candidate whose record says it passes, thin records falling back to the
 * quality prior, no record deciding as `cost`, exploration that is
 * reproducible, cheaper than the choice, within the budget and never the
 * cloud for a private task, escalation after a quality failure, and the
 * explanation it returns. Runs from the source root (CTest's working
 * directory). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/history.h"
#include "tests/unit/support/policy_harness.h"

#include <math.h>

/* ---- building records -------------------------------------------------------- */

/* Returns an owned record table of `passes` and `fails` (all recent: the
 * weight is their count), as flowrun passes it (HISTORY_SHAPE). */
static json_t *record(int passes, int fails, double lo, double hi)
{
    int n = passes + fails;
    json_t *h = json_pack("{s:i, s:i, s:i, s:i, s:f}", "attempts", n, "passes", passes, "fails",
                          fails, "errors", 0, "weight", (double)n);
    if (n > 0) {
        json_object_set_new(h, "pass_rate", json_real((double)passes / n));
        json_object_set_new(h, "age_s", json_real(3600));
    }
    if (lo >= 0) {
        json_object_set_new(h, "band_lo", json_real(lo));
        json_object_set_new(h, "band_hi", json_real(hi));
        json_object_set_new(h, "type", json_string("code"));
    } else {
        json_object_set_new(h, "band_lo", json_real(0));
        json_object_set_new(h, "band_hi", json_real(1));
    }
    return h;
}

/* Gives candidate `c` (returned) a record in the task's band and overall. */
static json_t *with(json_t *c, int passes, int fails, int all_passes, int all_fails)
{
    json_object_set_new(c, "history", record(passes, fails, 0.6, 0.8));
    json_object_set_new(c, "history_all", record(all_passes, all_fails, -1, -1));
    return c;
}

/* A run with `seed` and, when `remaining` >= 0, a budget with that left. */
static json_t *run_seeded(long long seed, double remaining)
{
    json_t *r = json_pack("{s:f, s:f, s:f, s:i, s:i, s:I}", "spent", 0.0, "reserved", 0.0,
                          "elapsed", 1.0, "done", 0, "total", 4, "seed", (json_int_t)seed);
    json_object_set_new(r, "budget", remaining >= 0 ? json_real(remaining) : json_null());
    json_object_set_new(r, "remaining", remaining >= 0 ? json_real(remaining) : json_null());
    return r;
}

/* A first-attempt task of `complexity` named `name`, private or not. */
static json_t *named(const char *name, double complexity, bool is_private)
{
    json_t *t = task(complexity, "first", NULL);
    json_object_set_new(t, "name", json_string(name));
    json_object_set_new(t, "private", json_boolean(is_private));
    return t;
}

/* Routes `t` among `c` (both stolen) with `r` (stolen) and returns the
 * choice (owned; "(wait)" for nil). */
static char *route_in(fr_policy *p, json_t *t, json_t *c, json_t *r)
{
    char *choice = NULL;
    fr_error err = {0};
    int rc = fr_policy_route(p, t, c, r, &choice, &err);
    if (rc != FR_OK)
        print_error("%s:%d: %s\n", err.source, err.line, err.msg);
    assert_int_equal(rc, FR_OK);
    json_decref(t);
    json_decref(c);
    json_decref(r);
    return choice ? choice : strdup("(wait)");
}

/* ---- exploiting the record ---------------------------------------------------- */

/* The cheapest candidate whose record says it passes tasks like this one,
 * even where its quality says it is too weak, and not one whose record
 * says it fails, even where its quality says it is strong enough. */
static void test_cheapest_that_passes(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("adaptive");
    /* cost would take big (0.8 covers 0.7); small passed 20 of 20 here. */
    expect_route(
        p, task(0.7, "first", NULL),
        cands(with(SMALL(2), 20, 0, 40, 5), with(BIG(2), 3, 0, 20, 2), MID(4), STRONG(4), NULL),
        "small");
    /* big failed most tasks of this band: over to the cloud that passes. */
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 0, 12, 30, 20), with(BIG(2), 4, 8, 30, 10),
                       with(MID(4), 2, 6, 10, 6), with(STRONG(4), 15, 0, 30, 0), NULL),
                 "strong");
    /* A cheap cloud with a good record beats the dear one. */
    expect_route(p, task(0.9, "first", NULL),
                 cands(with(SMALL(2), 0, 10, 30, 20), with(MID(4), 30, 1, 60, 5),
                       with(STRONG(4), 30, 0, 30, 0), NULL),
                 "mid");
    /* The best local is full: with a record it is worth waiting for rather
     * than paying the cloud (see test_free_try_before_paid); on its prior
     * alone, overflow to the cloud that passes as cost does, never to the
     * free local that fails; every likely one full: wait. */
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 0, 10, 10, 10), with(BIG(0), 20, 0, 20, 0),
                       with(STRONG(4), 10, 0, 10, 0), NULL),
                 "big");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 0, 10, 10, 10), BIG(0), with(STRONG(4), 10, 0, 10, 0), NULL),
                 "strong");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 0, 10, 10, 10), BIG(0), with(STRONG(0), 10, 0, 10, 0), NULL),
                 NULL);
    /* Nobody is likely to pass: the likeliest, not the one of highest quality. */
    expect_route(p, task(0.95, "first", NULL),
                 cands(with(BIG(2), 5, 5, 10, 5), with(STRONG(4), 1, 9, 10, 9), NULL), "big");
    fr_policy_free(p);
}

/* A thin record moves the estimate little: a pass or three do not make a
 * weak model good enough, a long run of passes does. Without a record in
 * the band, the endpoint's overall record nudges the prior from quality. */
static void test_thin_record_leans_on_the_prior(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("adaptive");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 1, 0, 1, 0), BIG(2), STRONG(4), NULL), "big");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 3, 0, 3, 0), BIG(2), STRONG(4), NULL), "big");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 10, 0, 10, 0), BIG(2), STRONG(4), NULL), "small");
    /* big's quality equals the complexity: reliable overall, it stays good
     * enough; failing overall, it no longer is. */
    expect_route(p, task(0.8, "first", NULL),
                 cands(SMALL(2), with(BIG(2), 0, 0, 20, 0), STRONG(4), NULL), "big");
    expect_route(p, task(0.8, "first", NULL),
                 cands(SMALL(2), with(BIG(2), 0, 0, 0, 20), STRONG(4), NULL), "strong");
    fr_policy_free(p);
}

/* A free local endpoint whose record here is middling is worth a try before
 * a paid one: a failure costs a retry, a pass the whole cloud price. Only on
 * a record of MIN_RECORD (3) attempts, and not when the record is poor. */
static void test_free_try_before_paid(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("adaptive");
    expect_route(p, task(0.7, "first", NULL),
                 cands(SMALL(2), with(BIG(2), 6, 4, 6, 4), MID(4), STRONG(4), NULL), "big");
    expect_route(p, task(0.7, "first", NULL),
                 cands(SMALL(2), with(BIG(2), 1, 1, 1, 1), MID(4), STRONG(4), NULL), "mid");
    expect_route(p, task(0.7, "first", NULL),
                 cands(SMALL(2), with(BIG(2), 2, 8, 2, 8), MID(4), STRONG(4), NULL), "mid");
    /* Full, it is worth waiting for (returning it means "wait for it"). */
    expect_route(p, task(0.7, "first", NULL),
                 cands(SMALL(2), with(BIG(0), 6, 4, 6, 4), MID(4), STRONG(4), NULL), "big");
    /* Between clouds too: the cheap one with a fair record, even full,
     * before the dear one that is sure. */
    expect_route(p, task(0.9, "first", NULL),
                 cands(with(SMALL(2), 0, 10, 0, 10), with(MID(0), 7, 3, 7, 3), STRONG(4), NULL),
                 "mid");
    /* Among locals nothing is saved: the one sure enough. */
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 6, 4, 6, 4), cand("huge", "local", 0.9, 2, 2, 0, 0, -1),
                       STRONG(4), NULL),
                 "huge");
    fr_policy_free(p);
}

/* Random fleets, tasks and reasons without any record (no history fields,
 * or empty ones as flowrun passes them before any attempt): every decision
 * is the one `cost` makes, both policies seeing the same sequence. */
static void test_no_record_decides_as_cost(void **state)
{
    (void)state;
    static const char *const names[] = {"e0", "e1", "e2", "e3", "e4", "e5", "e6"};
    static const char *const reasons[] = {"first", "error", "quality", "truncated"};
    for (int empty = 0; empty < 2; empty++) {
        fr_policy *a = load_builtin("adaptive"), *c = load_builtin("cost");
        unsigned long seed = 99 + (unsigned long)empty;
        for (int d = 0; d < 600; d++) {
#define RND(n) ((seed = seed * 6364136223846793005UL + 1442695040888963407UL), (seed >> 33) % (n))
            json_t *ca = json_array();
            double cx = (double)RND(21) / 20;
            json_t *t = task(cx, reasons[RND(4)], NULL);
            json_object_set_new(t, "name", json_sprintf("t%d", d));
            for (size_t e = 0; e < 7; e++) {
                if (RND(4) == 0) {
                    json_array_append_new(json_object_get(t, "tried"), json_string(names[e]));
                    continue;
                }
                bool local = RND(2) == 0;
                int max = 1 + (int)RND(3), free = (int)RND((unsigned long)max + 1);
                double q = (double)RND(11) / 10;
                json_t *x = cand(names[e], local ? "local" : "cloud", q, free, max, 0, 0, -1);
                json_object_set_new(x, "est_cost", json_real(local ? 0 : 0.001 * (double)RND(5)));
                if (empty)
                    with(x, 0, 0, 0, 0);
                json_array_append_new(ca, x);
            }
#undef RND
            json_t *r = run_seeded(7, -1);
            char *shown = json_dumps(t, JSON_COMPACT), *fleet = json_dumps(ca, JSON_COMPACT);
            char *want = route_in(c, json_incref(t), json_incref(ca), json_incref(r));
            char *got = route_in(a, json_incref(t), json_incref(ca), r);
            if (strcmp(got, want) != 0) {
                print_error("decision %d: adaptive %s, cost %s\ntask %s\n", d, got, want, shown);
                size_t i;
                json_t *x;
                json_array_foreach(ca, i, x) print_error("  %s\n", json_dumps(x, JSON_COMPACT));
            }
            free(shown);
            free(fleet);
            assert_string_equal(got, want);
            free(want);
            free(got);
            json_decref(t);
            json_decref(ca);
        }
        fr_policy_free(a);
        fr_policy_free(c);
    }
}

/* ---- exploring ------------------------------------------------------------------ */

/* The fleet of the exploration tests: small fails tasks like these (a long
 * record, so it is certain), mid is untried here, strong passes them. */
static json_t *explore_fleet(void)
{
    return cands(with(SMALL(2), 0, 10, 10, 10), with(MID(4), 0, 0, 10, 2),
                 with(STRONG(4), 20, 0, 20, 0), NULL);
}

/* About one task in ten tries the cheaper, untried mid instead of strong;
 * the rest take strong; never the dearer way round, and never small, whose
 * record is long. The same seed explores the same tasks, another seed
 * others. */
static void test_exploration_is_cheap_and_reproducible(void **state)
{
    (void)state;
    char picks[3][200];
    static const long long seeds[3] = {7, 7, 8};
    for (int s = 0; s < 3; s++) {
        fr_policy *p = load_builtin("adaptive"); /* a fresh state every time */
        int explored = 0;
        for (int i = 0; i < 200; i++) {
            char name[16];
            snprintf(name, sizeof name, "task%d", i);
            char *got =
                route_in(p, named(name, 0.8, false), explore_fleet(), run_seeded(seeds[s], -1));
            assert_true(strcmp(got, "strong") == 0 || strcmp(got, "mid") == 0);
            picks[s][i] = got[0];
            explored += got[0] == 'm';
            free(got);
        }
        fr_policy_free(p);
        assert_in_range(explored, 8, 40); /* 10% of 200, give or take */
    }
    assert_memory_equal(picks[0], picks[1], sizeof picks[0]);
    assert_memory_not_equal(picks[0], picks[2], sizeof picks[0]);
}

/* flowrun's task.draw is the number adaptive draws itself when a host gives
 * none: the same tasks explore with it as without it, over seeds (negative
 * ones too), names and attempts of one digit and more. */
static void test_draw_is_the_hash(void **state)
{
    (void)state;
    static const long long seeds[] = {0, 7, -3, 1234567890123LL};
    int explored = 0, n = 0;
    for (size_t s = 0; s < sizeof seeds / sizeof *seeds; s++) {
        fr_policy *p = load_builtin("adaptive");
        uint64_t seed = fr_policy_draw_seed(seeds[s]);
        for (int i = 0; i < 300; i++) {
            char name[24];
            snprintf(name, sizeof name, i % 3 ? "task%d" : "t-%d.é", i);
            int attempt = i % 13;
            json_t *t = named(name, 0.8, false);
            json_object_set_new(t, "attempt", json_integer(attempt));
            json_t *drawn = json_deep_copy(t);
            json_object_set_new(drawn, "draw", json_real(fr_policy_draw(seed, name, attempt)));
            char *own = route_in(p, t, explore_fleet(), run_seeded(seeds[s], -1));
            char *given = route_in(p, drawn, explore_fleet(), run_seeded(seeds[s], -1));
            if (strcmp(own, given) != 0)
                print_error("seed %lld, %s attempt %d: %s, with task.draw %s\n", seeds[s], name,
                            attempt, own, given);
            assert_string_equal(own, given);
            explored += own[0] == 'm';
            n++;
            free(own);
            free(given);
        }
        fr_policy_free(p);
    }
    assert_in_range(explored, n / 20, n / 5); /* about 10%: the draws decide */
}

/* Exploration never leaves what the run can pay: a cheaper candidate whose
 * worst case exceeds what remains is not tried (the engine removes the
 * ones that do not fit a cap; this is the policy's own rule). And a retry
 * (reason "error") or a private task never explores to the cloud. */
static void test_exploration_within_budget_and_local(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("adaptive");
    double mid_cost = (EST_INPUT * 0.5 + MAX_TOKENS * 1.5) / 1e6;
    int explored = 0;
    for (int i = 0; i < 200; i++) {
        char name[16];
        snprintf(name, sizeof name, "task%d", i);
        /* Budget left: exploring allowed. */
        char *got = route_in(p, named(name, 0.8, false), explore_fleet(), run_seeded(7, 1.0));
        explored += strcmp(got, "mid") == 0;
        free(got);
        /* Less left than mid's worst case: never mid. */
        got = route_in(p, named(name, 0.8, false), explore_fleet(), run_seeded(7, mid_cost / 2));
        assert_string_equal(got, "strong");
        free(got);
        /* A private task: the policy's own rule keeps it local, even when
         * the cloud is among the candidates it is shown. */
        got = route_in(p, named(name, 0.8, true), explore_fleet(), run_seeded(7, -1));
        assert_string_equal(got, "small");
        free(got);
        json_t *t = named(name, 0.8, true);
        json_object_set_new(t, "reason", json_string("error"));
        got = route_in(p, t, cands(with(MID(4), 0, 0, 10, 2), with(STRONG(4), 20, 0, 20, 0), NULL),
                       run_seeded(7, -1));
        assert_string_equal(got, "(wait)");
        free(got);
        /* A retry after an error does not explore. */
        t = named(name, 0.8, false);
        json_object_set_new(t, "reason", json_string("error"));
        got = route_in(p, t, explore_fleet(), run_seeded(7, -1));
        assert_string_equal(got, "strong");
        free(got);
    }
    assert_true(explored > 0);
    fr_policy_free(p);
}

/* ---- escalating -------------------------------------------------------------------- */

/* After a quality failure, only a candidate stronger than the one that
 * failed: a weaker one with a perfect record is passed over, and among the
 * stronger ones the record decides. */
static void test_quality_failure_escalates(void **state)
{
    (void)state;
    fr_policy *p = load_builtin("adaptive");
    /* The first decision shows every endpoint: small's record wins. */
    expect_route(
        p, task(0.7, "first", NULL),
        cands(with(SMALL(2), 20, 0, 20, 0), with(BIG(2), 20, 0, 20, 0), MID(4), STRONG(4), NULL),
        "small");
    /* small failed it: big (stronger, good record) rather than the cloud. */
    expect_route(p, task(0.7, "quality", "small", NULL),
                 cands(with(BIG(2), 20, 0, 20, 0), MID(4), STRONG(4), NULL), "big");
    /* big failed it: mid (0.7) is weaker than big, whatever its record. */
    expect_route(p, task(0.7, "quality", "small", "big", NULL),
                 cands(with(MID(4), 30, 0, 30, 0), STRONG(4), NULL), "strong");
    /* Among the stronger ones, the one whose record passes. */
    expect_route(p, task(0.5, "quality", "small", NULL),
                 cands(with(BIG(2), 0, 10, 5, 10), with(MID(4), 20, 0, 20, 0), STRONG(4), NULL),
                 "mid");
    fr_policy_free(p);
}

/* ---- the explanation ------------------------------------------------------------- */

/* Loads adaptive's source inside a wrapper that returns its choice only when
 * its explanation (the second value) matches the Lua pattern `want`, and a
 * number (a policy error) otherwise. */
static fr_policy *explained(const char *want)
{
    const fr_policy_builtin *b = fr_policy_builtin_find("adaptive");
    assert_non_null(b);
    size_t size = b->len + strlen(want) + 512;
    char *code = malloc(size);
    assert_true(snprintf(code, size,
                         "local P = (function()\n%s\nend)()\n"
                         "return { route = function(t, c, r)\n"
                         "  local choice, why = P.route(t, c, r)\n"
                         "  if type(why) == 'string' and why:find(%s) then return choice end\n"
                         "  return 0\n"
                         "end }\n",
                         b->source, want) < (int)size);
    fr_policy *p = load_code(code, NULL);
    free(code);
    return p;
}

static void test_explanation(void **state)
{
    (void)state;
    fr_policy *p = explained("'^small: p%(pass%) 0%.9%d from 20 attempts of type code, "
                             "complexity 0%.6%-0%.8$'");
    expect_route(p, task(0.7, "first", NULL),
                 cands(with(SMALL(2), 20, 0, 20, 0), BIG(2), STRONG(4), NULL), "small");
    fr_policy_free(p);
    p = explained("'^big: p%(pass%) 0%.90 from its quality 0%.80 %(no attempts of type code, "
                  "complexity 0%.8%-1%.0%)$'");
    expect_route(p, task(0.8, "first", NULL), cands(SMALL(2), BIG(2), STRONG(4), NULL), "big");
    fr_policy_free(p);
}

/* Wraps adaptive's source: with one candidate, route returns it only when
 * the explanation's numbers are string.format's ("%.2f" of its p_pass, or
 * of its quality when p_pass_n is 0; "%d" of p_pass_n), else a number (a
 * policy error). adaptive reads most of them from tables of texts. */
static const char numbers_wrapper[] =
    "local P = (function()\n%s\nend)()\n"
    "return { route = function(t, c, r)\n"
    "  local choice, why = P.route(t, c, r)\n"
    "  local h = c[1].history\n"
    "  local want = h.p_pass_n > 0\n"
    "    and string.format('x: p(pass) %%.2f from %%d attempt%%s of type code, complexity "
    "0.6-0.8',\n"
    "      h.p_pass, h.p_pass_n, h.p_pass_n == 1 and '' or 's')\n"
    "    or string.format('x: p(pass) %%.2f from its quality %%.2f (no attempts of type code,'\n"
    "      .. ' complexity 0.6-0.8)', h.p_pass, c[1].quality)\n"
    "  if why == want then return choice end\n"
    "  return 0\n"
    "end }\n";

/* Routes one candidate of quality `q` whose record gives p_pass `pp` from
 * `n` attempts through the wrapper `p`: its numbers must be format's. */
static void expect_numbers(fr_policy *p, double pp, long n, double q)
{
    json_t *c = cand("x", "local", q, 1, 2, 0, 0, -1);
    json_t *h = record(n > 0 ? 1 : 0, 0, 0.6, 0.8);
    json_object_set_new(h, "p_pass", json_real(pp));
    json_object_set_new(h, "p_pass_n", json_integer(n));
    json_object_set_new(c, "history", h);
    json_object_set_new(c, "history_all", record(0, 0, -1, -1));
    char *got = route_in(p, task(0.7, "first", NULL), cands(c, NULL), run_seeded(1, -1));
    if (strcmp(got, "x") != 0)
        print_error("p_pass %.17g, %ld attempts, quality %.17g: not format's text\n", pp, n, q);
    assert_string_equal(got, "x");
    free(got);
}

/* The explanation's numbers are string.format's for estimates and qualities
 * anywhere in [0, 1], next to every half of a hundredth most of all (where
 * a table of hundredths would round the wrong way), and beyond; counts of
 * every size. */
static void test_explanation_numbers(void **state)
{
    (void)state;
    const fr_policy_builtin *b = fr_policy_builtin_find("adaptive");
    assert_non_null(b);
    size_t size = b->len + sizeof numbers_wrapper;
    char *code = malloc(size);
    assert_true(snprintf(code, size, numbers_wrapper, b->source) < (int)size);
    fr_policy *p = load_code(code, NULL);
    free(code);
    static const long counts[] = {0, 1, 2, 9, 10, 41, 4095, 4096, 123456};
    for (int k = 0; k <= 200; k++) {
        double x = k / 200.0;
        double near[] = {x, nextafter(x, 0), nextafter(x, 2), nextafter(nextafter(x, 0), 0),
                         nextafter(nextafter(x, 2), 2)};
        for (size_t i = 0; i < sizeof near / sizeof *near; i++) {
            long n = counts[(size_t)k % (sizeof counts / sizeof *counts)];
            expect_numbers(p, near[i], n, 0.5);
            expect_numbers(p, 0.9, 0, near[i]); /* the quality's text */
        }
    }
    uint64_t r = 88172645463325252u;
    for (int i = 0; i < 3000; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        double x = (double)(r >> 11) / 9007199254740992.0;
        expect_numbers(p, x, (long)(r % 5000), 0.5);
        expect_numbers(p, 0.9, 0, x);
    }
    static const double odd[] = {0.0, -0.0, 1.0, 1.005, 1.5, -0.25, 2.0, 1e-300};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        expect_numbers(p, odd[i], 3, 0.5);
        expect_numbers(p, 0.9, 0, odd[i]);
    }
    fr_policy_free(p);
}

/* ---- candidate.history.p_pass ------------------------------------------------ */

/* Prints every candidate's p_pass and p_pass_n (history_all has neither). */
static const char p_pass_policy[] =
    "return { route = function(task, cands)\n"
    "  local out = {}\n"
    "  for i = 1, #cands do\n"
    "    local h, a = cands[i].history, cands[i].history_all\n"
    "    if a.p_pass ~= nil or a.p_pass_n ~= nil then error('p_pass in history_all') end\n"
    "    out[#out + 1] = string.format('%.17g %d', h.p_pass, h.p_pass_n)\n"
    "  end\n"
    "  return cands[1], table.concat(out, ';')\n"
    "end }\n";

/* One settled attempt of the recount. */
typedef struct settled {
    int ep;
    double complexity, at;
    bool pass;
} settled;

/* adaptive's estimate for endpoint `ep` of quality `q` on a task of
 * `complexity` at `now`, recounted from the raw attempts `s` (n of them):
 * decayed weights, pass rates, then the blend of docs/policies.md. *attempts:
 * the band's attempts behind it (0 without a pass rate). */
static double recount(const settled *s, size_t n, int ep, double q, double complexity, double now,
                      long *attempts)
{
    int band = fr_history_band(complexity);
    double w = 0, wp = 0, wa = 0, wap = 0;
    long nb = 0, na = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].ep != ep)
            continue;
        double f = exp2((s[i].at - now) / FR_STORE_HISTORY_HALF_LIFE_S);
        na++;
        wa += f;
        wap += s[i].pass ? f : 0;
        if (fr_history_band(s[i].complexity) == band) {
            nb++;
            w += f;
            wp += s[i].pass ? f : 0;
        }
    }
    double e = 1 / (1 + exp(-(log(0.9 / (1 - 0.9)) + 10 * (q - complexity))));
    if (na > 0) {
        double a = wa > 1 ? 1 : wa;
        e = (2 * e + a * (wap / wa)) / (2 + a);
    }
    *attempts = nb;
    return nb > 0 ? (4 * e + w * (wp / w)) / (4 + w) : e;
}

/* The p_pass a policy reads equals adaptive's estimate recounted from the
 * raw attempts, decision after decision through a real routing history and
 * kept, trusted tables (as a built-in has them): attempts settling, the
 * complexity moving within a band with the records unchanged (the kept
 * record table must get the new figure), other bands taking turns, an
 * endpoint without any record. */
static void test_p_pass_is_the_recount(void **state)
{
    (void)state;
    static const char *const names[] = {"gpu", "api", "new"};
    static const double quality[] = {0.55, 0.9, 0.7};
    static const double complexity[] = {0.41, 0.45, 0.59, 0.2, 0.45, 0.9, 0.45, 0.5};
    fr_history *h = fr_history_new(names, 3);
    fr_policy *p = load_code(p_pass_policy, NULL);
    fr_policy_keep_args(p);
    fr_policy_trust(p);
    settled s[64];
    size_t ns = 0;
    double t0 = 1.8e9;
    for (int d = 0; d < 40; d++) {
        double c = complexity[d % 8], now = t0 + 3600.0 * d;
        fr_history_set_clock(h, now);
        assert_true(fr_history_now(h) == now);
        if (d % 3 == 0 && ns < 64) { /* an attempt settles on gpu or api */
            settled x = {.ep = d % 2, .complexity = c, .at = now - 60, .pass = d % 5 != 0};
            s[ns++] = x;
            fr_attempt_rec a = {.run_id = "r",
                                .task = "t",
                                .endpoint = names[x.ep],
                                .outcome = x.pass ? "ok" : "quality",
                                .type = "code",
                                .has_complexity = true,
                                .complexity = c,
                                .latency_ms = 100};
            fr_history_add(h, &a, x.at);
        }
        fr_policy_hist key[3], all[3];
        fr_policy_cand cs[3];
        for (int e = 0; e < 3; e++) {
            fr_history_view(h, (size_t)e, "code", c, now, &key[e], &all[e]);
            cs[e] = (fr_policy_cand){.name = names[e],
                                     .tier = e == 1 ? "cloud" : "local",
                                     .protocol = "openai",
                                     .model = names[e],
                                     .max_parallel = 1,
                                     .free = 1,
                                     .quality = quality[e],
                                     .latency_p50 = -1,
                                     .context = 8192,
                                     .history = &key[e],
                                     .history_all = &all[e]};
        }
        fr_policy_task t = {.name = "t",
                            .agent = "a",
                            .type = "code",
                            .complexity = c,
                            .priority = 5,
                            .attempt = 1,
                            .reason = "first",
                            .est_input_tokens = EST_INPUT,
                            .max_tokens = MAX_TOKENS};
        fr_policy_run r = {.done = d, .total = 40, .ready = 1};
        long choice = -2;
        char why[FR_POLICY_WHY_MAX + 1];
        fr_error err = {0};
        assert_int_equal(fr_policy_route_explain(p, &t, cs, 3, &r, &choice, why, sizeof why, &err),
                         FR_OK);
        const char *at = why;
        for (int e = 0; e < 3; e++) {
            double got;
            long n, want_n;
            int used = 0;
            assert_int_equal(sscanf(at, "%lf %ld;%n", &got, &n, &used), 2);
            double want = recount(s, ns, e, quality[e], c, now, &want_n);
            if (fabs(got - want) > 1e-12 || n != want_n)
                print_error("decision %d, %s: p_pass %.17g/%ld, recount %.17g/%ld\n", d, names[e],
                            got, n, want, want_n);
            assert_true(fabs(got - want) <= 1e-12);
            assert_int_equal(n, want_n);
            at += used;
        }
    }
    assert_true(ns > 10);
    fr_policy_free(p);
    fr_history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cheapest_that_passes),
        cmocka_unit_test(test_thin_record_leans_on_the_prior),
        cmocka_unit_test(test_free_try_before_paid),
        cmocka_unit_test(test_no_record_decides_as_cost),
        cmocka_unit_test(test_exploration_is_cheap_and_reproducible),
        cmocka_unit_test(test_draw_is_the_hash),
        cmocka_unit_test(test_exploration_within_budget_and_local),
        cmocka_unit_test(test_quality_failure_escalates),
        cmocka_unit_test(test_explanation),
        cmocka_unit_test(test_explanation_numbers),
        cmocka_unit_test(test_p_pass_is_the_recount),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
