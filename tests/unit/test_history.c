/* Unit tests of the routing history: the store's summary (schema 11's
 * routing_history and routing_bins, kept by triggers) equals a recount
 * from the attempts table after attempts of several runs, types, bands
 * and outcomes booked at chosen times, settled from in flight or booked
 * once, and after a migration from schema 8; engine/history's in-memory
 * record after a run equals what a new run loads; the bands; and what a
 * policy sees as candidate.history and candidate.history_all (the numbers,
 * nil without evidence, the explanation it returns). A real SQLite file in
 * a fresh temporary directory per test. */

#include "tests/unit/support/store_fixture.h"

#include "tests/unit/support/policy_harness.h"

#include "engine/history.h"
#include "engine/store/store_int.h" /* fr_store_rollback */
#include "engine/util/utf8.h"

#define DAY 86400.0

/* A settled attempt of task type `type` and `complexity` (< 0: none) on
 * `endpoint`, booked once or (`pending`) reserved first and then settled,
 * with outcome `outcome`, check score `score` (< 0: none), latency
 * `lat_ms`, time to first content `ttft_ms` (< 0: none) and `cost`. */
typedef struct att {
    const char *endpoint, *type;
    double complexity;
    const char *outcome;
    double score, lat_ms, ttft_ms, cost;
    long out;
    bool pending;
} att;

static fr_attempt_rec rec_of(const char *run, const att *x)
{
    return (fr_attempt_rec){.run_id = run,
                            .task = "t",
                            .endpoint = x->endpoint,
                            .tier = "local",
                            .model = "m",
                            .outcome = x->outcome,
                            .type = x->type,
                            .attempt = 1,
                            .input = 10,
                            .output = x->out,
                            .cost_usd = x->cost,
                            .latency_ms = x->lat_ms,
                            .has_ttft = x->ttft_ms >= 0,
                            .ttft_ms = x->ttft_ms,
                            .has_complexity = x->complexity >= 0,
                            .complexity = x->complexity,
                            .has_score = x->score >= 0,
                            .score = x->score};
}

/* Books `x` in run `run` of `st`, and tells `h` (may be NULL) as the books do. */
static void book_att(fr_store *st, fr_history *h, const char *run, const att *x)
{
    fr_attempt_rec a = rec_of(run, x);
    if (x->pending) {
        long long id = 0;
        fr_attempt_rec r = a;
        r.cost_usd = 0.5;
        assert_ok(fr_store_reserve(st, &r, &id, &e_));
        assert_ok(fr_store_settle(st, id, &a, NULL, &e_));
    } else {
        assert_ok(fr_store_add_attempt(st, &a, &e_));
    }
    fr_history_add(h, &a, fr_store_clock(st));
}

/* The mix of attempts the tests book, run by run, day by day. */
static const att mix[] = {
    {"gpu", "code", 0.5, "ok", 0.9, 800, 120, 0, 40, false},
    {"gpu", "code", 0.55, "quality", 0.3, 1500, 200, 0, 60, true},
    {"gpu", "code", 0.45, "ok", -1, 650, -1, 0, 30, true},
    {"gpu", NULL, 0.1, "error", -1, 30, -1, 0, 0, false},
    {"gpu", NULL, 0.0, "truncated", -1, 4000, 300, 0, 500, true},
    {"gpu", "code", 1.0, "ok", 0.7, 2000, 250, 0, 90, false},
    {"cloud", "code", 0.5, "ok", 1.0, 300, 90, 0.01, 50, true},
    {"cloud", "review", 0.8, "refused", -1, 200, 80, 0.002, 5, true},
    {"cloud", "review", 0.79, "timeout", -1, 60000, -1, 0.02, 0, true},
    {"cloud", "review", 0.61, "cancelled", -1, 10, -1, 0.03, 0, true},
    {"cloud", "code", 0.2, "tool_call", -1, 700, 100, 0.004, 20, false},
    {"cloud", "code", -1, "ok", 0.8, 900, 150, 0.006, 70, false},
};
#define NMIX (sizeof mix / sizeof *mix)

/* Books the mix over three runs (named `prefix` and 1, 2, 3), 40 days
 * from first to last. */
static void book_mix(fr_store *st, fr_history *h, const char *prefix, time_t from)
{
    char runs[3][16];
    for (size_t r = 0; r < 3; r++) {
        snprintf(runs[r], sizeof runs[r], "%s%zu", prefix, r + 1);
        fr_store_set_clock(st, from + (time_t)(r * 20 * DAY));
        assert_ok(fr_store_run_begin(st, runs[r], "wf", NULL, &e_));
        for (size_t i = 0; i < NMIX; i++) {
            if ((i + r) % 4 == 3)
                continue; /* not every run books every attempt */
            fr_store_set_clock(st, from + (time_t)(r * 20 * DAY + i * 3600));
            book_att(st, h, runs[r], &mix[i]);
        }
    }
}

/* The summary recounted from the attempts table, independently of the
 * triggers' SQL: one row per key with every column of routing_history. */
#define RECOUNT                                                                                    \
    "WITH e AS (SELECT endpoint AS ep, COALESCE(task_type, '-') AS ty,"                            \
    " MIN(4, CAST(COALESCE(complexity, 0.5) * 5 AS INTEGER)) AS band, outcome, at, score,"         \
    " cost_usd, output_tokens, latency_ms, ttft_ms,"                                               \
    " outcome IN ('ok', 'quality', 'truncated', 'refused', 'no_answer', 'tool_call') AS g"         \
    " FROM attempts WHERE outcome != 'pending'),"                                                  \
    " r AS (SELECT *, MIN(CASE WHEN g THEN at END) OVER (PARTITION BY ep, ty, band) AS ref FROM "  \
    "e)"                                                                                           \
    " SELECT ep, ty, band, COUNT(*) AS settled, SUM(outcome = 'ok') AS passes,"                    \
    " SUM(g AND outcome != 'ok') AS fails, SUM(outcome IN ('error', 'timeout')) AS errors,"        \
    " TOTAL(CASE WHEN outcome = 'ok' THEN pow(2, (at - ref) / 2592000.0) END) AS w_pass,"          \
    " TOTAL(CASE WHEN g AND outcome != 'ok' THEN pow(2, (at - ref) / 2592000.0) END) AS w_fail,"   \
    " MIN(ref) AS w_ref, MAX(CASE WHEN g THEN at END) AS last_at,"                                 \
    " TOTAL(CASE WHEN g THEN score END) AS score_sum, SUM(g AND score IS NOT NULL) AS score_n,"    \
    " TOTAL(cost_usd) AS cost_sum, TOTAL(CASE WHEN g THEN output_tokens END) AS out_tokens,"       \
    " TOTAL(CASE WHEN g THEN latency_ms END) AS reply_ms FROM r GROUP BY ep, ty, band"

/* Runs `sql` (borrowed), whose row counts the recount's rows, the
 * table's and those that match: all three equal, at least `min`. */
static void expect_matching(const char *path, const char *sql, long min)
{
    sqlite3 *db;
    sqlite3_stmt *s = raw_row(path, sql, &db);
    long n = (long)sqlite3_column_int64(s, 0);
    if (n < min || sqlite3_column_int64(s, 1) != n || sqlite3_column_int64(s, 2) != n)
        fail_msg("recount %ld rows (at least %ld), table %lld, matching %lld", n, min,
                 (long long)sqlite3_column_int64(s, 1), (long long)sqlite3_column_int64(s, 2));
    sqlite3_finalize(s);
    sqlite3_close(db);
}

/* Checks that routing_history and routing_bins equal their recount, of
 * at least `min_keys` keys and `min_bins` bins. */
static void expect_recount(const char *path, long min_keys, long min_bins)
{
    char sql[4096];
    snprintf(sql, sizeof sql,
             "WITH c AS (" RECOUNT ") SELECT (SELECT COUNT(*) FROM c),"
             " (SELECT COUNT(*) FROM routing_history),"
             " (SELECT COUNT(*) FROM c JOIN routing_history h ON h.endpoint = c.ep"
             " AND h.task_type = c.ty AND h.band = c.band AND h.settled = c.settled"
             " AND h.passes = c.passes AND h.fails = c.fails AND h.errors = c.errors"
             " AND abs(h.w_pass - c.w_pass) < 1e-9 AND abs(h.w_fail - c.w_fail) < 1e-9"
             " AND h.w_ref IS c.w_ref AND h.last_at IS c.last_at"
             " AND abs(h.score_sum - c.score_sum) < 1e-9 AND h.score_n = c.score_n"
             " AND abs(h.cost_sum - c.cost_sum) < 1e-12 AND h.out_tokens = c.out_tokens"
             " AND abs(h.reply_ms - c.reply_ms) < 1e-6)");
    expect_matching(path, sql, min_keys);
    /* The bins: the gated attempts per pair of latency and ttft bins. */
    static const char bins[] =
        "WITH b AS (SELECT endpoint AS ep, COALESCE(task_type, '-') AS ty,"
        " MIN(4, CAST(COALESCE(complexity, 0.5) * 5 AS INTEGER)) AS band,"
        " MIN(127, CAST(floor(4 * log2(MAX(latency_ms, 1))) AS INTEGER)) AS lb,"
        " IFNULL(MIN(127, CAST(floor(4 * log2(MAX(ttft_ms, 1))) AS INTEGER)), -1) AS tb"
        " FROM attempts"
        " WHERE outcome IN ('ok', 'quality', 'truncated', 'refused', 'no_answer', 'tool_call')),"
        " c AS (SELECT ep, ty, band, lb, tb, COUNT(*) AS n FROM b GROUP BY 1, 2, 3, 4, 5)"
        " SELECT (SELECT COUNT(*) FROM c), (SELECT COUNT(*) FROM routing_bins),"
        " (SELECT COUNT(*) FROM c JOIN routing_bins r ON r.endpoint = c.ep AND"
        " r.task_type = c.ty AND r.band = c.band AND r.lat_bin = c.lb AND r.ttft_bin = c.tb"
        " AND r.n = c.n)";
    expect_matching(path, bins, min_bins);
}

static void test_summary_equals_recount(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    book_mix(f->st, NULL, "r", utc(2026, 9, 1, 8, 0, 0));
    assert_ok(fr_store_flush(f->st, &e_));
    expect_recount(f->path, 7, 7);
    /* An attempt in flight settled as cancelled: counted, not gated. */
    fr_store_set_clock(f->st, utc(2026, 11, 1, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "r4", "wf", NULL, &e_));
    long long id = reserve(f->st, "r4", "t", 0.25);
    fr_attempt_rec c = {.run_id = "r4",
                        .task = "t",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .outcome = "cancelled",
                        .attempt = 1,
                        .cost_usd = 0.25};
    assert_ok(fr_store_settle(f->st, id, &c, NULL, &e_));
    expect_recount(f->path, 8, 7);
    assert_usd(raw_num(f->path, "SELECT settled FROM routing_history WHERE endpoint = 'cloud'"
                                " AND task_type = '-' AND band = 2"),
               1);
}

static int batch_opened;

static void on_batch(void *ud)
{
    (void)ud;
    batch_opened++;
}

/* In the batch of a loop turn, a key's attempts are summed and written at
 * the flush as one row's UPSERT: the summary equals the recount as when
 * each was written alone, turns of one to four attempts, a reservation
 * committing the batch with it in between (fr_store_reserve), and a batch
 * rolled back leaves no sums behind. */
static void test_batched_summary_equals_recount(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    batch_opened = 0;
    fr_store_batch(f->st, on_batch, NULL);
    time_t from = utc(2026, 9, 1, 8, 0, 0);
    for (size_t r = 0; r < 3; r++) {
        char run[16];
        snprintf(run, sizeof run, "b%zu", r + 1);
        fr_store_set_clock(f->st, from + (time_t)(r * 20 * DAY));
        assert_ok(fr_store_run_begin(f->st, run, "wf", NULL, &e_));
        for (size_t i = 0; i < NMIX; i++) {
            fr_store_set_clock(f->st, from + (time_t)(r * 20 * DAY + i * 3600));
            book_att(f->st, NULL, run, &mix[i]);
            book_att(f->st, NULL, run, &mix[(i + r) % NMIX]); /* a key twice in a turn */
            if ((i + r) % 4 == 3)
                assert_ok(fr_store_flush(f->st, &e_));
        }
        assert_ok(fr_store_flush(f->st, &e_));
    }
    assert_true(batch_opened > 3);
    expect_recount(f->path, 7, 7);
    /* A turn rolled back: its attempts and their sums are gone together. */
    long before = (long)raw_num(f->path, "SELECT TOTAL(settled) FROM routing_history");
    fr_attempt_rec a = rec_of("b3", &mix[0]);
    assert_ok(fr_store_add_attempt(f->st, &a, &e_));
    assert_ok(fr_store_add_attempt(f->st, &a, &e_));
    fr_store_rollback(f->st);
    assert_ok(fr_store_flush(f->st, &e_));
    assert_int_equal((long)raw_num(f->path, "SELECT TOTAL(settled) FROM routing_history"), before);
    assert_ok(fr_store_add_attempt(f->st, &a, &e_));
    assert_ok(fr_store_flush(f->st, &e_));
    assert_int_equal((long)raw_num(f->path, "SELECT TOTAL(settled) FROM routing_history"),
                     before + 1);
    expect_recount(f->path, 7, 7);
}

/* A run killed with a request in flight: the next run to begin marks it
 * crashed, and its request, now a cancelled attempt, is counted. */
/* The child of test_crashed_run_is_counted: a run with a request in
 * flight on the store at `ud`. */
static bool dead_in_flight(void *ud)
{
    fr_store *st = NULL;
    fr_error err = {0};
    long long id = 0;
    fr_attempt_rec a = {.run_id = "dead",
                        .task = "t",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .attempt = 1,
                        .cost_usd = 0.5,
                        .type = "code",
                        .has_complexity = true,
                        .complexity = 0.3};
    return fr_store_open(ud, &st, &err) == FR_OK &&
           fr_store_run_begin(st, "dead", "wf", NULL, &err) == FR_OK &&
           fr_store_reserve(st, &a, &id, &err) == FR_OK;
}

static void test_crashed_run_is_counted(void **state)
{
    fx *f = *state;
    fr_store_close(open_ok(f->path));
    kill_when_ready(dead_in_flight, f->path);
    f->st = open_ok(f->path);
    assert_ok(fr_store_run_begin(f->st, "next", "wf", NULL, &e_));
    expect_recount(f->path, 1, 0);
    assert_usd(raw_num(f->path, "SELECT settled + cost_sum FROM routing_history"
                                " WHERE endpoint = 'cloud' AND task_type = 'code' AND band = 1"),
               1.5);
}

/* A store of schema 8 with attempts is summarised by the migration. */
static void test_migration_summarises_old_attempts(void **state)
{
    fx *f = *state;
    old_store(f, 8,
              "INSERT INTO runs(id, workflow, started_at) VALUES ('old', 'wf', 1790000000);"
              "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd, latency_ms,"
              " outcome, at, month, task_type, ttft_ms, output_tokens) VALUES"
              " ('old', 'a', 1, 'gpu', 'local', 0, 900, 'ok', 1790000000, '2026-09', 'code', 100,"
              " 30),"
              " ('old', 'b', 1, 'gpu', 'local', 0, 1900, 'quality', 1791000000, '2026-09', 'code',"
              " NULL, 40),"
              " ('old', 'c', 1, 'gpu', 'local', 0, 50, 'error', 1792000000, '2026-10', NULL, NULL,"
              " 0),"
              " ('old', 'd', 1, 'api', 'cloud', 0.5, 0, 'pending', 1792000000, '2026-10', NULL,"
              " NULL, 0);");
    f->st = open_ok(f->path);
    expect_recount(f->path, 2, 2);
    assert_usd(raw_num(f->path, "SELECT passes + fails FROM routing_history WHERE endpoint = 'gpu'"
                                " AND task_type = 'code' AND band = 2"),
               2);
    /* Its request in flight settles later, through the ledger. */
    assert_usd(raw_num(f->path, "SELECT COUNT(*) FROM routing_history WHERE endpoint = 'api'"), 0);
    fr_attempt_rec ok = {.run_id = "old",
                         .task = "d",
                         .endpoint = "api",
                         .tier = "cloud",
                         .outcome = "ok",
                         .attempt = 1,
                         .cost_usd = 0.1,
                         .latency_ms = 700};
    assert_ok(fr_store_settle(f->st, 4, &ok, NULL, &e_));
    expect_recount(f->path, 3, 3);
}

/* Compares two records field by field. */
static void expect_same(const fr_policy_hist *a, const fr_policy_hist *b)
{
    assert_int_equal(a->attempts, b->attempts);
    assert_int_equal(a->passes, b->passes);
    assert_int_equal(a->fails, b->fails);
    assert_int_equal(a->errors, b->errors);
    const double x[] = {a->weight,      a->pass_rate,    a->score_mean,    a->latency_p50_ms,
                        a->ttft_p50_ms, a->tokens_per_s, a->cost_mean_usd, a->age_s,
                        a->band_lo,     a->band_hi},
                 y[] = {b->weight,      b->pass_rate,    b->score_mean,    b->latency_p50_ms,
                        b->ttft_p50_ms, b->tokens_per_s, b->cost_mean_usd, b->age_s,
                        b->band_lo,     b->band_hi};
    for (size_t i = 0; i < sizeof x / sizeof *x; i++)
        if (fabs(x[i] - y[i]) > 1e-6 * (1 + fabs(y[i])))
            fail_msg("field %zu: %.12g != %.12g", i, x[i], y[i]);
    assert_true((a->type == NULL) == (b->type == NULL));
    if (a->type)
        assert_string_equal(a->type, b->type);
}

/* Every key of a history, with its endpoint's record over all keys. */
typedef struct keys {
    char ep[16][16];
    fr_policy_hist rec[16], all[16];
    size_t n;
} keys;

static void collect(void *ud, const char *endpoint, const fr_policy_hist *rec,
                    const fr_policy_hist *all)
{
    keys *k = ud;
    assert_true(k->n < 16);
    snprintf(k->ep[k->n], sizeof k->ep[k->n], "%s", endpoint);
    k->rec[k->n] = *rec;
    k->all[k->n++] = *all;
}

static void test_memory_equals_reload(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"gpu", "cloud"};
    f->st = open_ok(f->path);
    /* What earlier runs booked, loaded at this run's start ... */
    book_mix(f->st, NULL, "old", utc(2026, 8, 1, 8, 0, 0));
    fr_history *live = fr_history_new(names, 2);
    assert_ok(fr_history_load(live, f->st, &e_));
    /* ... and this run's own attempts as they settle. */
    book_mix(f->st, live, "new", utc(2026, 10, 1, 8, 0, 0));
    assert_ok(fr_store_flush(f->st, &e_));
    fr_history *next = fr_history_new(names, 2);
    assert_ok(fr_history_load(next, f->st, &e_));
    double now = (double)utc(2026, 11, 20, 0, 0, 0);
    keys a = {0}, b = {0};
    fr_history_each(live, now, collect, &a);
    fr_history_each(next, now, collect, &b);
    assert_int_equal(a.n, b.n);
    assert_true(a.n >= 7);
    for (size_t i = 0; i < b.n; i++) {
        size_t j = 0; /* keys in first-seen order may differ: find it */
        while (j < a.n &&
               !(strcmp(a.ep[j], b.ep[i]) == 0 && strcmp(a.rec[j].type, b.rec[i].type) == 0 &&
                 a.rec[j].band_lo == b.rec[i].band_lo))
            j++;
        assert_true(j < a.n);
        expect_same(&a.rec[j], &b.rec[i]);
        expect_same(&a.all[j], &b.all[i]);
    }
    /* The views a decision reads agree too, and a key without evidence is
     * empty with nil figures. */
    fr_policy_hist k1, a1, k2, a2;
    fr_history_view(live, 0, "code", 0.5, now, &k1, &a1);
    fr_history_view(next, 0, "code", 0.5, now, &k2, &a2);
    expect_same(&k1, &k2);
    expect_same(&a1, &a2);
    fr_history_view(next, 1, "poetry", 0.1, now, &k2, &a2);
    assert_int_equal(k2.attempts, 0);
    assert_true(k2.pass_rate < 0 && k2.age_s < 0 && k2.latency_p50_ms < 0);
    assert_string_equal(k2.type, "poetry");
    assert_true(a2.attempts > 0);
    fr_history_free(live);
    fr_history_free(next);
}

static void test_bands(void **state)
{
    (void)state;
    assert_int_equal(fr_history_band(0), 0);
    assert_int_equal(fr_history_band(0.19), 0);
    assert_int_equal(fr_history_band(0.2), 1);
    assert_int_equal(fr_history_band(0.4), 2);
    assert_int_equal(fr_history_band(0.6), 3);
    assert_int_equal(fr_history_band(0.8), 4);
    assert_int_equal(fr_history_band(1.0), 4);
    assert_int_equal(fr_history_band(-1), 0);
    assert_int_equal(fr_history_band(NAN), 2); /* as no complexity: 0.5's */
}

/* The figures of one key booked in memory: three passes and a fail, a
 * fail 30 days older than the newest pass (half its weight), scores,
 * latencies, and an error. */
static void test_figures(void **state)
{
    (void)state;
    static const char *const names[] = {"gpu"};
    fr_history *h = fr_history_new(names, 1);
    double t0 = (double)utc(2026, 10, 1, 0, 0, 0);
    const att xs[] = {
        {"gpu", "code", 0.5, "quality", 0.2, 1000, 100, 0.01, 10, false},
        {"gpu", "code", 0.5, "ok", 0.8, 1000, 100, 0.01, 10, false},
        {"gpu", "code", 0.5, "ok", 1.0, 1000, 100, 0.01, 10, false},
        {"gpu", "code", 0.5, "error", -1, 5, -1, 0.03, 0, false},
    };
    for (size_t i = 0; i < 4; i++) {
        fr_attempt_rec a = rec_of("r", &xs[i]);
        fr_history_add(h, &a, t0 + (i ? 30 * DAY : 0));
    }
    fr_policy_hist k, all;
    fr_history_view(h, 0, "code", 0.55, t0 + 30 * DAY + 60, &k, &all);
    assert_int_equal(k.attempts, 3);
    assert_int_equal(k.passes, 2);
    assert_int_equal(k.fails, 1);
    assert_int_equal(k.errors, 1);
    assert_usd(k.pass_rate, 2 / 2.5); /* the old fail counts half */
    assert_usd(k.score_mean, (0.2 + 0.8 + 1.0) / 3);
    assert_usd(k.cost_mean_usd, 0.06 / 4);
    assert_usd(k.age_s, 60);
    assert_usd(k.tokens_per_s, 30 / 3.0);
    assert_true(fabs(k.weight - 2.5) < 1e-4);
    assert_true(k.latency_p50_ms > 1000 / 1.19 && k.latency_p50_ms < 1000 * 1.19);
    assert_usd(k.band_lo, 0.4);
    assert_usd(k.band_hi, 0.6);
    assert_string_equal(k.type, "code");
    assert_int_equal(all.attempts, 3);
    assert_null(all.type);
    fr_history_free(h);
}

/* A policy that reports what it sees of the first candidate's record. */
static const char seer[] =
    "local function f(v) return v == nil and 'nil' or string.format('%.3f', v) end\n"
    "return { route = function(task, cands, run)\n"
    "  local c = cands[1]\n"
    "  local h, a = c.history, c.history_all\n"
    "  return c, string.format('n=%d p=%d f=%d e=%d rate=%s score=%s age=%s all=%d band=%.1f-%.1f"
    " type=%s alltype=%s seed=%d', h.attempts, h.passes, h.fails, h.errors, f(h.pass_rate),"
    " f(h.score_mean), f(h.age_s), a.attempts, h.band_lo, h.band_hi, tostring(h.type),"
    " tostring(a.type), run.seed)\n"
    "end }\n";

static void test_policy_sees_history(void **state)
{
    (void)state;
    static const char *const names[] = {"gpu", "cloud"};
    fr_history *h = fr_history_new(names, 2);
    double t0 = (double)utc(2026, 10, 1, 0, 0, 0);
    const att xs[] = {
        {"gpu", "code", 0.5, "ok", 0.5, 800, 100, 0, 10, false},
        {"gpu", "code", 0.5, "quality", 0.25, 900, 100, 0, 10, false},
        {"gpu", "review", 0.9, "ok", -1, 800, 100, 0, 10, false},
    };
    for (size_t i = 0; i < 3; i++) {
        fr_attempt_rec a = rec_of("r", &xs[i]);
        fr_history_add(h, &a, t0);
    }
    for (int keep = 0; keep < 2; keep++) {
        fr_policy *p = load_code(seer, NULL);
        if (keep)
            fr_policy_keep_args(p);
        assert_true(fr_policy_reads_history(p));
        fr_policy_task t = {.name = "t",
                            .agent = "a",
                            .type = "code",
                            .complexity = 0.5,
                            .attempt = 1,
                            .reason = "first"};
        fr_policy_run r = {.seed = 42};
        fr_policy_hist hv[4];
        fr_policy_cand c[2] = {
            {.name = "gpu", .tier = "local", .protocol = "openai", .model = "m", .latency_p50 = -1},
            {.name = "cloud",
             .tier = "cloud",
             .protocol = "openai",
             .model = "m",
             .latency_p50 = -1}};
        for (int round = 0; round < 3; round++) {
            /* Round 1 asks for a key without evidence; round 2 the first again. */
            t.type = round == 1 ? "poetry" : "code";
            for (size_t i = 0; i < 2; i++) {
                fr_history_view(h, i, t.type, t.complexity, t0 + 90, &hv[2 * i], &hv[2 * i + 1]);
                c[i].history = &hv[2 * i];
                c[i].history_all = &hv[2 * i + 1];
            }
            long choice = -1;
            char why[FR_POLICY_WHY_MAX + 1];
            fr_error err = {0};
            assert_int_equal(
                fr_policy_route_explain(p, &t, c, 2, &r, &choice, why, sizeof why, &err), FR_OK);
            assert_int_equal(choice, 0);
            assert_string_equal(
                why, round == 1 ? "n=0 p=0 f=0 e=0 rate=nil score=nil age=nil all=3 band=0.4-0.6"
                                  " type=poetry alltype=nil seed=42"
                                : "n=2 p=1 f=1 e=0 rate=0.500 score=0.375 age=90.000 all=3"
                                  " band=0.4-0.6 type=code alltype=nil seed=42");
        }
        /* Without a history at all (a plan, a test): empty tables, not nil. */
        c[0].history = c[0].history_all = NULL;
        long choice = -1;
        char why[FR_POLICY_WHY_MAX + 1];
        assert_int_equal(fr_policy_route_explain(p, &t, c, 2, &r, &choice, why, sizeof why, NULL),
                         FR_OK);
        assert_string_equal(why, "n=0 p=0 f=0 e=0 rate=nil score=nil age=nil all=0 band=0.0-1.0"
                                 " type=nil alltype=nil seed=42");
        fr_policy_free(p);
    }
    fr_history_free(h);
}

/* An explanation is text: a long one is cut at a character, one that is
 * not UTF-8 or not a string is dropped, and the decision stands. */
static void test_explanation_is_checked(void **state)
{
    (void)state;
    static const char *const answers[] = {
        "string.rep('\\u{e9}', 150)", "'bad \\xff text'", "42", "nil", "'a\\0b'", "'fine'"};
    static const char *const want[] = {NULL, "", "", "", "", "fine"};
    for (size_t i = 0; i < sizeof answers / sizeof *answers; i++) {
        char code[256];
        snprintf(code, sizeof code, "return { route = function(t, c, r) return c[1], %s end }",
                 answers[i]);
        fr_policy *p = load_code(code, NULL);
        fr_policy_task t = {
            .name = "t", .agent = "a", .complexity = 0.5, .attempt = 1, .reason = "first"};
        fr_policy_run r = {0};
        fr_policy_cand c = {
            .name = "gpu", .tier = "local", .protocol = "openai", .model = "m", .latency_p50 = -1};
        long choice = -1;
        char why[FR_POLICY_WHY_MAX + 1];
        assert_int_equal(fr_policy_route_explain(p, &t, &c, 1, &r, &choice, why, sizeof why, NULL),
                         FR_OK);
        assert_int_equal(choice, 0);
        if (want[i]) {
            assert_string_equal(why, want[i]);
        } else { /* 100 two-byte characters fit in 200 bytes */
            assert_int_equal(strlen(why), 200);
            assert_true(fr_utf8_valid(why, strlen(why), NULL));
        }
        fr_policy_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_summary_equals_recount),
        STORE_TEST(test_batched_summary_equals_recount),
        STORE_TEST(test_migration_summarises_old_attempts),
        STORE_TEST(test_crashed_run_is_counted),
        STORE_TEST(test_memory_equals_reload),
        cmocka_unit_test(test_bands),
        cmocka_unit_test(test_figures),
        cmocka_unit_test(test_policy_sees_history),
        cmocka_unit_test(test_explanation_is_checked),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
