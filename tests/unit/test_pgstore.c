/* engine/store/pgstore against a real PostgreSQL server of the test's own
 * (tests/unit/support/pg_fixture.h): every operation round-trips with the
 * SQLite store's contract (runs, reserve and settle, run end, the cache's
 * hit, miss and damaged entry, approvals, reports, leases); two stores
 * sharing one endpoint's capacity, woken by NOTIFY, and a dead owner's
 * slots freed by the server's clock; two owners leasing a month and a day
 * at once never past either cap; the server restarted while batches are in
 * flight (each write booked once); an unreachable server (the URL masked);
 * a row lock held by another session while the loop keeps running; the
 * heartbeat beside a transaction waiting on a row lock, and the owner ended
 * at close with a heartbeat in flight.
 * Skipped (77) where PostgreSQL's server is not installed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/store/pgconn.h"
#include "engine/store/pgstore.h"
#include "engine/util/err.h"
#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/pg_fixture.h"

#include <math.h>

static pg_server server;

typedef struct fx {
    uv_loop_t loop;
    fr_pgconn *raw; /* the test's own connection: counts rows, holds locks */
    fr_pgconn *lk;  /* a second one of the test's, for locks (other_session) */
} fx;

/* What one completion said. */
typedef struct res {
    int calls, rc;
    double value;
    char msg[1024];
    fr_reply *reply;
    bool found;
    char status[32];
    fr_store_approval ap;
} res;

static void keep_err(res *r, int rc, const fr_error *err)
{
    r->calls++;
    r->rc = rc;
    if (err)
        fr_error_format(err, r->msg, sizeof r->msg);
    assert_true(rc == FR_OK ? err == NULL : err != NULL);
}

static void on_done(void *ud, int rc, const fr_error *err)
{
    keep_err(ud, rc, err);
}

static void on_value(void *ud, int rc, double v, const fr_error *err)
{
    res *r = ud;
    keep_err(r, rc, err);
    r->value = v;
}

static void on_reply(void *ud, int rc, fr_reply *reply, const fr_error *err)
{
    res *r = ud;
    keep_err(r, rc, err);
    r->reply = reply;
}

static char *dup0(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void on_approval(void *ud, int rc, const fr_store_approval *a, const fr_error *err)
{
    res *r = ud;
    keep_err(r, rc, err);
    r->found = a != NULL;
    if (a) {
        r->ap.workflow = dup0(a->workflow);
        r->ap.task = dup0(a->task);
        r->ap.output_hash = dup0(a->output_hash);
        r->ap.state = dup0(a->state);
        r->ap.run_id = dup0(a->run_id);
        r->ap.output_path = dup0(a->output_path);
        r->ap.by = dup0(a->by);
        r->ap.note = dup0(a->note);
        r->ap.asked_at = a->asked_at;
        r->ap.decided_at = a->decided_at;
    }
}

static void on_status(void *ud, int rc, const char *status, double cost, const fr_error *err)
{
    res *r = ud;
    keep_err(r, rc, err);
    snprintf(r->status, sizeof r->status, "%s", status ? status : "");
    r->value = cost;
}

static void res_clear(res *r)
{
    if (r->reply) {
        fr_reply_close(r->reply);
        free(r->reply);
    }
    fr_store_approval_clear(&r->ap);
    memset(r, 0, sizeof *r);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    fr_pgconn_close(f->raw);
    fr_pgconn_close(f->lk); /* a failed test's locks go with it */
    char why[384];
    bool ok = loop_drain(&f->loop, 15, why, sizeof why);
    free(f);
    if (!ok)
        fail_msg("%s", why);
    return 0;
}

/* ---- the test's own SQL ---- */

typedef struct rawres {
    fr_pgres *res;
} rawres;

static void on_raw(void *ud, fr_pgres *r)
{
    ((rawres *)ud)->res = r;
}

static void raw_open(fx *f)
{
    if (f->raw)
        return;
    fr_error err = {0};
    assert_int_equal(fr_pgconn_open(&f->loop, server.url, NULL, NULL, &f->raw, &err), FR_OK);
}

/* Runs `sql` on the test's connection; returns its first cell as a number. */
static double sql_num(fx *f, const char *sql)
{
    raw_open(f);
    rawres r = {0};
    assert_int_equal(fr_pgconn_query(f->raw, sql, 0, NULL, on_raw, &r), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, r.res != NULL, 30);
    if (fr_pgres_code(r.res) != FR_OK)
        fail_msg("%s: %s", sql, fr_pgres_message(r.res));
    const char *v = fr_pgres_value(r.res, 0, 0);
    double n = v ? strtod(v, NULL) : 0;
    fr_pgres_free(r.res);
    return n;
}

/* Holds the rows of endpoints `where` (an SQL condition) locked on the
 * test's session, in a transaction left open until its COMMIT. */
static void hold_endpoints(fx *f, const char *where)
{
    raw_open(f);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT name FROM endpoints WHERE %s FOR UPDATE", where);
    rawres lock = {0};
    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL}, {sql, 0, NULL}};
    assert_int_equal(fr_pgconn_transaction(f->raw, 2, hold, on_raw, &lock), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, lock.res != NULL, 30);
    assert_int_equal(fr_pgres_code(lock.res), FR_OK);
    fr_pgres_free(lock.res);
}

/* ---- stores ---- */

static void open_store(fx *f, const fr_pgstore_opts *o, fr_pgstore **out)
{
    res r = {0};
    fr_error err = {0};
    assert_int_equal(fr_pgstore_open(&f->loop, server.url, o, on_done, &r, out, &err), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, r.calls == 1, 30);
    if (r.rc != FR_OK)
        fail_msg("open: %s", r.msg);
}

/* Flushes `s` and runs the loop until `*calls` reaches `n`. */
#define FLUSH_UNTIL(f, s, cond)                                                                    \
    do {                                                                                           \
        fr_pgstore_flush(s);                                                                       \
        LOOP_RUN_UNTIL(&(f)->loop, cond, 30);                                                      \
    } while (0)

static fr_attempt_rec attempt(const char *run, const char *task, int n, const char *endpoint,
                              double cost)
{
    fr_attempt_rec a = {0};
    a.run_id = run;
    a.task = task;
    a.attempt = n;
    a.endpoint = endpoint;
    a.tier = "cloud";
    a.model = "m1";
    a.outcome = "ok";
    a.cost_usd = cost;
    a.input = 10;
    a.output = 5;
    a.latency_ms = 12;
    return a;
}

static void begin_run(fx *f, fr_pgstore *s, const char *run)
{
    res r = {0};
    assert_int_equal(fr_pgstore_run_begin(s, run, "wf", "wf.lua", on_done, &r), FR_OK);
    FLUSH_UNTIL(f, s, r.calls == 1);
    if (r.rc != FR_OK)
        fail_msg("run begin: %s", r.msg);
}

/* ---- round trips ---- */

static void test_runs_reserve_settle(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    open_store(f, NULL, &s);
    /* A time in a month of its own, so the totals are this test's. */
    fr_pgstore_set_clock(s, 1893456000); /* 2030-01-01 */
    begin_run(f, s, "rt-1");
    res again = {0};
    assert_int_equal(fr_pgstore_run_begin(s, "rt-1", "wf", NULL, on_done, &again), FR_OK);
    FLUSH_UNTIL(f, s, again.calls == 1);
    assert_int_equal(again.rc, FR_EINVAL); /* a run id already recorded */

    /* One batch: two reservations, and one of a run never begun, which the
     * server refuses; the other two still book. */
    fr_attempt_rec a1 = attempt("rt-1", "t1", 1, "ep-rt", 0.5);
    fr_attempt_rec a2 = attempt("rt-1", "t2", 1, "ep-rt", 0.25);
    fr_attempt_rec bad = attempt("rt-none", "t1", 1, "ep-rt", 0.25);
    res r1 = {0}, r2 = {0}, rb = {0};
    assert_int_equal(fr_pgstore_reserve(s, &a1, 0, on_done, &r1), FR_OK);
    assert_int_equal(fr_pgstore_reserve(s, &bad, 0, on_done, &rb), FR_OK);
    assert_int_equal(fr_pgstore_reserve(s, &a2, 0, on_done, &r2), FR_OK);
    assert_int_equal(fr_pgstore_queued(s), 3);
    FLUSH_UNTIL(f, s, r1.calls && r2.calls && rb.calls);
    if (r1.rc != FR_OK)
        fail_msg("%s", r1.msg);
    assert_int_equal(r2.rc, FR_OK);
    assert_int_equal(rb.rc, FR_EINVAL);
    assert_non_null(strstr(rb.msg, "23503")); /* the run's foreign key */
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'rt-1'"), 2);
    fr_pgstore_stats stats;
    fr_pgstore_stats_get(s, &stats);
    /* The run's, its repeat's, the batch's: its good writes sent again are no flush. */
    assert_int_equal(stats.flushes, 3);
    /* In flight at the worst case: charged, not booked. */
    res used = {0};
    assert_int_equal(fr_pgstore_period_used(s, "2030-01", on_value, &used), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, used.calls == 1, 30);
    assert_int_equal(used.rc, FR_OK);
    assert_true(fabs(used.value - 0.75) < 1e-9);

    /* Settles: the month's total counts the settled only. */
    a1.cost_usd = 0.125;
    a2.cost_usd = 0.0625;
    res s1 = {0}, s2 = {0}, s3 = {0};
    assert_int_equal(fr_pgstore_settle(s, &a1, true, on_value, &s1), FR_OK);
    assert_int_equal(fr_pgstore_settle(s, &a2, true, on_value, &s2), FR_OK);
    FLUSH_UNTIL(f, s, s1.calls && s2.calls);
    assert_int_equal(s1.rc, FR_OK);
    assert_int_equal(s2.rc, FR_OK);
    assert_true(fabs(s1.value - 0.125) < 1e-9);
    assert_true(fabs(s2.value - 0.1875) < 1e-9);
    /* Settled already: not in flight. */
    assert_int_equal(fr_pgstore_settle(s, &a1, false, on_value, &s3), FR_OK);
    FLUSH_UNTIL(f, s, s3.calls);
    assert_int_equal(s3.rc, FR_EINVAL);
    /* A pending outcome is no settle. */
    a1.outcome = "pending";
    assert_int_equal(fr_pgstore_settle(s, &a1, false, on_value, &s3), FR_EINVAL);
    /* A reservation repeated after its settle books nothing and undoes nothing. */
    res rr = {0};
    assert_int_equal(fr_pgstore_reserve(s, &a2, 0, on_done, &rr), FR_OK);
    FLUSH_UNTIL(f, s, rr.calls);
    assert_int_equal(rr.rc, FR_OK);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'rt-1'"
                                " AND outcome = 'ok'"),
                     2);
    assert_true(fabs(sql_num(f, "SELECT booked_pusd FROM period_totals WHERE period = '2030-01'") -
                     0.1875e12) < 1);
    assert_true(fabs(sql_num(f, "SELECT charged_pusd FROM period_totals"
                                " WHERE period = '2030-01-01'") -
                     0.1875e12) < 1);

    /* Run end and status. */
    res st = {0}, end = {0}, none = {0};
    assert_int_equal(fr_pgstore_run_status(s, "rt-1", on_status, &st), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, st.calls == 1, 30);
    assert_int_equal(st.rc, FR_OK);
    assert_string_equal(st.status, "running");
    assert_int_equal(fr_pgstore_run_end(s, "rt-1", "ok", 0, 0.1875, on_done, &end), FR_OK);
    assert_int_equal(fr_pgstore_run_end(s, "rt-none", "ok", 0, 1, on_done, &none), FR_OK);
    FLUSH_UNTIL(f, s, end.calls && none.calls);
    assert_int_equal(end.rc, FR_OK);
    assert_int_equal(none.rc, FR_EINVAL);
    memset(&st, 0, sizeof st);
    assert_int_equal(fr_pgstore_run_status(s, "rt-1", on_status, &st), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, st.calls == 1, 30);
    assert_string_equal(st.status, "ok");
    assert_true(fabs(st.value - 0.1875) < 1e-12);
    memset(&st, 0, sizeof st);
    assert_int_equal(fr_pgstore_run_status(s, "rt-none", on_status, &st), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, st.calls == 1, 30);
    assert_int_equal(st.rc, FR_ENOENT);

    /* A report, replaced by a second put; one for a run never begun fails. */
    res p1 = {0}, p2 = {0}, p3 = {0};
    assert_int_equal(fr_pgstore_report_put(s, "rt-1", "{\"a\": 1}\n", "first", on_done, &p1),
                     FR_OK);
    assert_int_equal(
        fr_pgstore_report_put(s, "rt-1", "{\"b\":2, \"a\":1}\n", "second", on_done, &p2), FR_OK);
    assert_int_equal(fr_pgstore_report_put(s, "rt-none", "{}", "x", on_done, &p3), FR_OK);
    FLUSH_UNTIL(f, s, p1.calls && p2.calls && p3.calls);
    assert_int_equal(p1.rc, FR_OK);
    assert_int_equal(p2.rc, FR_OK);
    assert_int_equal(p3.rc, FR_EINVAL);
    assert_int_equal(sql_num(f,
                             "SELECT count(*) FROM reports WHERE run_id = 'rt-1'"
                             " AND summary = 'second' AND json = '{\"b\":2, \"a\":1}' || chr(10)"),
                     1);
    /* Bad arguments are refused at once. */
    fr_attempt_rec neg = attempt("rt-1", "t9", 1, "ep-rt", -1);
    assert_int_equal(fr_pgstore_reserve(s, &neg, 0, on_done, &rr), FR_EINVAL);
    assert_int_equal(fr_pgstore_lease(s, "2030-1", 1, 1, "rt-1", on_value, &rr), FR_EINVAL);
    fr_pgstore_close(s);
}

/* A reservation books the task's complexity and a settle the check's
 * score, capped or not; the routing history counts the settled attempt in
 * its complexity band. */
static void test_complexity_and_score(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    open_store(f, NULL, &s);
    begin_run(f, s, "cx-1");
    fr_attempt_rec a = attempt("cx-1", "t1", 1, "ep-cx", 0.5);
    fr_attempt_rec b = attempt("cx-1", "t2", 1, "ep-cx", 0.5);
    a.type = b.type = "code";
    a.has_complexity = true;
    a.complexity = 0.65;
    res ra = {0}, rb = {0};
    assert_int_equal(fr_pgstore_reserve(s, &a, 2, on_done, &ra), FR_OK);
    assert_int_equal(fr_pgstore_reserve(s, &b, 0, on_done, &rb), FR_OK);
    FLUSH_UNTIL(f, s, ra.calls && rb.calls);
    assert_int_equal(ra.rc, FR_OK);
    assert_int_equal(rb.rc, FR_OK);
    a.has_score = true;
    a.score = 0.8;
    a.has_ttft = true;
    a.ttft_ms = 9;
    res sa = {0}, sb = {0};
    assert_int_equal(fr_pgstore_settle(s, &a, false, on_value, &sa), FR_OK);
    assert_int_equal(fr_pgstore_settle(s, &b, false, on_value, &sb), FR_OK);
    FLUSH_UNTIL(f, s, sa.calls && sb.calls);
    assert_int_equal(sa.rc, FR_OK);
    assert_int_equal(sb.rc, FR_OK);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE task = 't1'"
                                " AND complexity = 0.65 AND score = 0.8 AND ttft_ms = 9"),
                     1);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'cx-1'"
                                " AND task = 't2' AND complexity IS NULL AND score IS NULL"),
                     1);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM routing_history WHERE endpoint = 'ep-cx'"
                                " AND ((band = 3 AND score_n = 1 AND score_sum = 0.8)"
                                " OR (band = 2 AND score_n = 0)) AND settled = 1 AND passes = 1"),
                     2);
    fr_pgstore_close(s);
}

/* A tool loop's turns are requests of one attempt: each is reserved and
 * settled on a row of its own (the key has the turn), a turn settled twice
 * books once, and a turn never settles another's row. */
static void test_turns_of_one_attempt(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    open_store(f, NULL, &s);
    begin_run(f, s, "turns-1");
    fr_attempt_rec t0 = attempt("turns-1", "loop", 1, "ep-turns", 0.5);
    fr_attempt_rec t1 = t0;
    t1.turn = 1;
    res r0 = {0}, r1 = {0};
    assert_int_equal(fr_pgstore_reserve(s, &t0, 2, on_done, &r0), FR_OK);
    FLUSH_UNTIL(f, s, r0.calls);
    assert_int_equal(r0.rc, FR_OK);
    t0.outcome = "tool_call";
    t0.input = 10;
    t0.cost_usd = 0.1;
    res s0 = {0};
    assert_int_equal(fr_pgstore_settle(s, &t0, false, on_value, &s0), FR_OK);
    FLUSH_UNTIL(f, s, s0.calls);
    assert_int_equal(s0.rc, FR_OK);
    /* the next turn of the same attempt: a row of its own */
    assert_int_equal(fr_pgstore_reserve(s, &t1, 2, on_done, &r1), FR_OK);
    FLUSH_UNTIL(f, s, r1.calls);
    assert_int_equal(r1.rc, FR_OK);
    t1.outcome = "ok";
    t1.input = 20;
    t1.cost_usd = 0.2;
    res s1 = {0}, again = {0};
    assert_int_equal(fr_pgstore_settle(s, &t1, false, on_value, &s1), FR_OK);
    assert_int_equal(fr_pgstore_settle(s, &t1, false, on_value, &again), FR_OK);
    FLUSH_UNTIL(f, s, s1.calls && again.calls);
    assert_int_equal(s1.rc, FR_OK);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'turns-1'"), 2);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'turns-1'"
                                " AND ((turn = 0 AND outcome = 'tool_call' AND input_tokens = 10)"
                                " OR (turn = 1 AND outcome = 'ok' AND input_tokens = 20))"),
                     2);
    assert_int_equal(sql_num(f, "SELECT round(sum(cost_usd) * 1000) FROM attempts"
                                " WHERE run_id = 'turns-1'"),
                     300);
    fr_pgstore_close(s);
}

static void test_cache_and_approvals(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    open_store(f, NULL, &s);
    fr_reply in = {0};
    in.text = "hello";
    in.model = "m-cache";
    in.json = json_pack("{s:i}", "x", 1);
    in.usage.input = 3;
    in.usage.output = 4;
    in.usage.cached = 1;
    res put = {0}, hit = {0}, miss = {0}, dmg = {0};
    assert_int_equal(fr_pgstore_cache_put(s, "k-1", "ep-c", &in, on_done, &put), FR_OK);
    FLUSH_UNTIL(f, s, put.calls);
    assert_int_equal(put.rc, FR_OK);
    json_decref(in.json);
    assert_int_equal(fr_pgstore_cache_get(s, "k-1", on_reply, &hit), FR_OK);
    assert_int_equal(fr_pgstore_cache_get(s, "k-none", on_reply, &miss), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, hit.calls && miss.calls, 30);
    assert_int_equal(hit.rc, FR_OK);
    assert_non_null(hit.reply);
    assert_string_equal(hit.reply->text, "hello");
    assert_string_equal(hit.reply->model, "m-cache");
    assert_string_equal(hit.reply->finish_reason, "cached");
    assert_int_equal(hit.reply->finish, FR_FINISH_STOP);
    assert_int_equal(json_integer_value(json_object_get(hit.reply->json, "x")), 1);
    assert_int_equal(hit.reply->usage.input, 3);
    assert_int_equal(hit.reply->usage.output, 4);
    assert_int_equal(hit.reply->usage.cached, 1);
    assert_int_equal(miss.rc, FR_OK);
    assert_null(miss.reply);
    /* Damaged entries are misses: JSON that does not parse, a negative count. */
    sql_num(f, "INSERT INTO cache (key, endpoint, text, json, created_at)"
               " VALUES ('k-bad-json', 'ep-c', 'x', '{not json', 0),"
               " ('k-bad-count', 'ep-c', 'x', NULL, 0)");
    sql_num(f, "UPDATE cache SET input = -1 WHERE key = 'k-bad-count'");
    res dmg2 = {0};
    assert_int_equal(fr_pgstore_cache_get(s, "k-bad-json", on_reply, &dmg), FR_OK);
    assert_int_equal(fr_pgstore_cache_get(s, "k-bad-count", on_reply, &dmg2), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, dmg.calls && dmg2.calls, 30);
    assert_int_equal(dmg.rc, FR_OK);
    assert_null(dmg.reply);
    assert_int_equal(dmg2.rc, FR_OK);
    assert_null(dmg2.reply);
    res_clear(&hit);

    /* Approvals: none, asked, decided; a decision without a row. */
    res g0 = {0}, ap = {0}, g1 = {0}, dec = {0}, g2 = {0}, nodec = {0};
    assert_int_equal(fr_pgstore_approval_get(s, "wf-a", "review", on_approval, &g0), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, g0.calls, 30);
    assert_int_equal(g0.rc, FR_OK);
    assert_false(g0.found);
    fr_store_approval a = {0};
    a.workflow = "wf-a";
    a.task = "review";
    a.output_hash = "h1";
    a.state = "pending";
    a.run_id = "run-a";
    a.output_path = "out/review.txt";
    assert_int_equal(fr_pgstore_approval_put(s, &a, on_done, &ap), FR_OK);
    a.state = "maybe";
    assert_int_equal(fr_pgstore_approval_put(s, &a, on_done, &ap), FR_EINVAL);
    FLUSH_UNTIL(f, s, ap.calls);
    assert_int_equal(ap.rc, FR_OK);
    assert_int_equal(fr_pgstore_approval_get(s, "wf-a", "review", on_approval, &g1), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, g1.calls, 30);
    assert_true(g1.found);
    assert_string_equal(g1.ap.state, "pending");
    assert_string_equal(g1.ap.output_hash, "h1");
    assert_string_equal(g1.ap.output_path, "out/review.txt");
    assert_null(g1.ap.by);
    assert_true(g1.ap.asked_at > 0);
    assert_true(g1.ap.decided_at == 0);
    assert_int_equal(
        fr_pgstore_approval_decide(s, "wf-a", "review", "approved", "ann", "fine", on_done, &dec),
        FR_OK);
    assert_int_equal(
        fr_pgstore_approval_decide(s, "wf-a", "nothing", "approved", NULL, NULL, on_done, &nodec),
        FR_OK);
    assert_int_equal(
        fr_pgstore_approval_decide(s, "wf-a", "review", "pending", NULL, NULL, on_done, &nodec),
        FR_EINVAL);
    LOOP_RUN_UNTIL(&f->loop, dec.calls && nodec.calls, 30);
    assert_int_equal(dec.rc, FR_OK);
    assert_int_equal(nodec.rc, FR_ENOENT);
    assert_int_equal(fr_pgstore_approval_get(s, "wf-a", "review", on_approval, &g2), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, g2.calls, 30);
    assert_string_equal(g2.ap.state, "approved");
    assert_string_equal(g2.ap.by, "ann");
    assert_string_equal(g2.ap.note, "fine");
    assert_string_equal(g2.ap.output_hash, "h1");
    assert_true(g2.ap.decided_at > 0);
    res_clear(&g1);
    res_clear(&g2);
    fr_pgstore_close(s);
}

/* ---- capacity shared by two stores ---- */

typedef struct waker {
    int wakes;
    char last[64];
} waker;

static void on_wake(void *ud, const char *endpoint)
{
    waker *w = ud;
    w->wakes++;
    snprintf(w->last, sizeof w->last, "%s", endpoint);
}

static void test_capacity_across_two_stores(void **state)
{
    fx *f = *state;
    fr_pgstore *a = NULL, *b = NULL;
    waker wb = {0};
    fr_pgstore_opts oa = {0}, ob = {0};
    oa.lease_ms = 1000; /* a's owner dies 1 s after its last heartbeat */
    oa.heartbeat_ms = 200;
    ob.on_wake = on_wake;
    ob.ud = &wb;
    ob.wake_fallback_ms = 60000; /* the wake below must be the notification's */
    open_store(f, &oa, &a);
    open_store(f, &ob, &b);
    assert_string_not_equal(fr_pgstore_owner(a), fr_pgstore_owner(b));
    begin_run(f, a, "cap-a");
    begin_run(f, b, "cap-b");
    /* Two each, in the same turn, on an endpoint of 3 slots: three book. */
    fr_attempt_rec at[4] = {
        attempt("cap-a", "t", 1, "ep-cap", 1), attempt("cap-a", "t", 2, "ep-cap", 1),
        attempt("cap-b", "t", 1, "ep-cap", 1), attempt("cap-b", "t", 2, "ep-cap", 1)};
    res r[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(fr_pgstore_reserve(i < 2 ? a : b, &at[i], 3, on_done, &r[i]), FR_OK);
    fr_pgstore_flush(a);
    fr_pgstore_flush(b);
    LOOP_RUN_UNTIL(&f->loop, r[0].calls && r[1].calls && r[2].calls && r[3].calls, 30);
    int ok = 0, refused = 0, refused_at = -1;
    for (int i = 0; i < 4; i++) {
        ok += r[i].rc == FR_OK;
        if (r[i].rc == FR_ELIMIT) {
            refused++;
            refused_at = i;
        }
    }
    assert_int_equal(ok, 3);
    assert_int_equal(refused, 1);
    assert_int_equal(sql_num(f, "SELECT held FROM in_flight WHERE endpoint = 'ep-cap'"), 3);
    /* b waits for a slot; the refused one retries after a settle's NOTIFY. */
    assert_int_equal(fr_pgstore_wait(b, "ep-cap"), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, fr_pgstore_in_flight(b) == 0, 30); /* LISTEN committed */
    int settle_i = refused_at == 0 ? 1 : 0;                     /* one of a's that booked */
    fr_pgstore *settler = a;
    res again = {0}, st = {0};
    assert_int_equal(
        fr_pgstore_reserve(refused_at < 2 ? a : b, &at[refused_at], 3, on_done, &again), FR_OK);
    FLUSH_UNTIL(f, refused_at < 2 ? a : b, again.calls);
    assert_int_equal(again.rc, FR_ELIMIT); /* still full */
    int wakes = wb.wakes;
    assert_int_equal(fr_pgstore_settle(settler, &at[settle_i], false, on_value, &st), FR_OK);
    FLUSH_UNTIL(f, settler, st.calls && wb.wakes > wakes);
    assert_int_equal(st.rc, FR_OK);
    assert_string_equal(wb.last, "ep-cap");
    fr_pgstore_stats stats;
    fr_pgstore_stats_get(b, &stats);
    assert_true(stats.notifies >= 1);
    memset(&again, 0, sizeof again);
    assert_int_equal(
        fr_pgstore_reserve(refused_at < 2 ? a : b, &at[refused_at], 3, on_done, &again), FR_OK);
    FLUSH_UNTIL(f, refused_at < 2 ? a : b, again.calls);
    assert_int_equal(again.rc, FR_OK);
    assert_int_equal(sql_num(f, "SELECT held FROM in_flight WHERE endpoint = 'ep-cap'"), 3);

    /* a's heartbeat stops: once its expires passes (the server's clock), its
     * pending attempts stop holding slots, and b books in their place. */
    int held_by_a = (int)sql_num(f, "SELECT count(*) FROM attempts a JOIN owners o"
                                    " ON o.id = a.owner_id WHERE a.endpoint = 'ep-cap'"
                                    " AND a.outcome = 'pending' AND a.run_id = 'cap-a'");
    assert_true(held_by_a >= 1);
    fr_pgstore_stop_heartbeat(a);
    int next = 10;
    int booked = 0;
    while (booked < held_by_a) {
        fr_attempt_rec x = attempt("cap-b", "t", next++, "ep-cap", 1);
        res rx = {0};
        assert_int_equal(fr_pgstore_reserve(b, &x, 3, on_done, &rx), FR_OK);
        FLUSH_UNTIL(f, b, rx.calls);
        assert_true(rx.rc == FR_OK || rx.rc == FR_ELIMIT);
        if (rx.rc == FR_OK) {
            booked++;
            continue;
        }
        assert_true(next < 200); /* bounded: expires is 1 s away */
        loop_watchdog *wd = loop_watchdog_start(&f->loop, 0.1);
        while (loop_watchdog_step(wd))
            ;
        loop_watchdog_end(wd);
    }
    assert_int_equal(sql_num(f, "SELECT held FROM in_flight WHERE endpoint = 'ep-cap'"), 3);
    /* And never a fourth. */
    fr_attempt_rec x = attempt("cap-b", "t", 999, "ep-cap", 1);
    res rx = {0};
    assert_int_equal(fr_pgstore_reserve(b, &x, 3, on_done, &rx), FR_OK);
    FLUSH_UNTIL(f, b, rx.calls);
    assert_int_equal(rx.rc, FR_ELIMIT);
    fr_pgstore_close(a);
    fr_pgstore_close(b);
}

/* ---- leases by two owners ---- */

typedef struct leaser {
    fr_pgstore *s;
    const char *run, *period;
    double cap, granted;
    int back, errors;
} leaser;

#define LEASER(st, r, p, c)                                                                        \
    {                                                                                              \
        .s = (st), .run = (r), .period = (p), .cap = (c)                                           \
    }

static void on_leased(void *ud, int rc, double v, const fr_error *err)
{
    leaser *l = ud;
    (void)err;
    l->back++;
    if (rc == FR_OK)
        l->granted += v;
    else
        l->errors++;
}

static void test_leases_two_owners(void **state)
{
    fx *f = *state;
    fr_pgstore *a = NULL, *b = NULL;
    open_store(f, NULL, &a);
    open_store(f, NULL, &b);
    begin_run(f, a, "lease-a");
    begin_run(f, b, "lease-b");
    /* Both lease 0.3 at a time, 40 times each, of a month capped at 5 and a
     * day of it capped at 2, all in flight at once. */
    leaser l[4] = {LEASER(a, "lease-a", "2031-03", 5), LEASER(b, "lease-b", "2031-03", 5),
                   LEASER(a, "lease-a", "2031-03-07", 2), LEASER(b, "lease-b", "2031-03-07", 2)};
    for (int k = 0; k < 40; k++)
        for (int i = 0; i < 4; i++) {
            assert_int_equal(
                fr_pgstore_lease(l[i].s, l[i].period, l[i].cap, 0.3, l[i].run, on_leased, &l[i]),
                FR_OK);
        }
    LOOP_RUN_UNTIL(&f->loop,
                   l[0].back == 40 && l[1].back == 40 && l[2].back == 40 && l[3].back == 40, 60);
    for (int i = 0; i < 4; i++)
        assert_int_equal(l[i].errors, 0);
    assert_true(l[0].granted + l[1].granted <= 5 + 1e-9);
    assert_true(l[0].granted + l[1].granted >= 5 - 1e-9);
    assert_true(l[2].granted + l[3].granted <= 2 + 1e-9);
    assert_true(l[2].granted + l[3].granted >= 2 - 1e-9);
    assert_true(fabs(sql_num(f, "SELECT sum(amount) FROM leases WHERE period = '2031-03'"
                                " AND closed_at IS NULL") -
                     5) < 1e-9);
    /* What others see used: b's open leases, not a's own. */
    res used = {0};
    assert_int_equal(fr_pgstore_period_used(a, "2031-03", on_value, &used), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, used.calls, 30);
    assert_true(fabs(used.value - l[1].granted) < 1e-9);
    /* b releases: its share is free for a. */
    res rel = {0};
    assert_int_equal(fr_pgstore_release(b, "lease-b", on_done, &rel), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, rel.calls, 30);
    assert_int_equal(rel.rc, FR_OK);
    leaser more = LEASER(a, "lease-a", "2031-03", 5);
    assert_int_equal(fr_pgstore_lease(a, "2031-03", 5, 100, "lease-a", on_leased, &more), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, more.back == 1, 30);
    assert_true(fabs(more.granted - l[1].granted) < 1e-9);
    /* b may not lease a's run's share while a lives. */
    leaser steal = LEASER(b, "lease-a", "2031-03", 5);
    assert_int_equal(fr_pgstore_lease(b, "2031-03", 10, 1, "lease-a", on_leased, &steal), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, steal.back == 1, 30);
    assert_int_equal(steal.errors, 1);
    /* a closes (its owner ends): its lease is reclaimed by b's next lease,
     * and its run crashed. */
    char owner_a[256], ended[512];
    snprintf(owner_a, sizeof owner_a, "%s", fr_pgstore_owner(a));
    snprintf(ended, sizeof ended,
             "SELECT count(*) FROM owners WHERE id = '%s' AND expires <= now()", owner_a);
    fr_pgstore_close(a);
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, ended) == 1, 30);
    leaser after = LEASER(b, "lease-b", "2031-03", 5);
    assert_int_equal(fr_pgstore_lease(b, "2031-03", 5, 100, "lease-b", on_leased, &after), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, after.back == 1, 30);
    assert_true(fabs(after.granted - 5) < 1e-9);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM leases WHERE run_id = 'lease-a'"
                                " AND closed_by = 'reclaimed'"),
                     1);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM runs WHERE id = 'lease-a'"
                                " AND status = 'crashed'"),
                     1);
    fr_pgstore_close(b);
}

/* Reserves `a` on `s` fenced by the month, and returns how it ended. */
static int reserve_fenced(fx *f, fr_pgstore *s, const fr_attempt_rec *a)
{
    res r = {0};
    assert_int_equal(fr_pgstore_reserve_fenced(s, a, 0, FR_PGSTORE_FENCE_MONTH, on_done, &r),
                     FR_OK);
    FLUSH_UNTIL(f, s, r.calls);
    return r.rc;
}

static double lease_of(fx *f, fr_pgstore *s, const char *run, double want)
{
    leaser l = LEASER(s, run, "2031-04", 0.3);
    assert_int_equal(fr_pgstore_lease(s, "2031-04", 0.3, want, run, on_leased, &l), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, l.back == 1, 30);
    assert_int_equal(l.errors, 0);
    return l.granted;
}

/* A reservation fenced by the run's share of the month's cap: booked only
 * while the share covers it; once another process reclaimed the share (its
 * owner looked dead while it still ran), nothing more is booked on it, and
 * a new lease covers what it grants, no more, no less. */
static void test_fence_after_reclaim(void **state)
{
    fx *f = *state;
    fr_pgstore *a = NULL, *b = NULL;
    fr_pgstore_opts oa = {0};
    oa.lease_ms = 1000;
    oa.heartbeat_ms = 200;
    open_store(f, &oa, &a);
    open_store(f, NULL, &b);
    begin_run(f, a, "fence-a");
    begin_run(f, b, "fence-b");
    fr_pgstore_set_clock(a, 1933027200); /* 2031-04-03: the lease's month */
    fr_pgstore_set_clock(b, 1933027200);
    assert_true(fabs(lease_of(f, a, "fence-a", 0.1) - 0.1) < 1e-9);
    fr_attempt_rec x1 = attempt("fence-a", "t", 1, "ep-fence", 0.06);
    fr_attempt_rec x2 = attempt("fence-a", "t", 2, "ep-fence", 0.06);
    assert_int_equal(reserve_fenced(f, a, &x1), FR_OK);
    assert_int_equal(reserve_fenced(f, a, &x1), FR_OK);      /* a repeat stays booked */
    assert_int_equal(reserve_fenced(f, a, &x2), FR_EBUDGET); /* 0.12 > its 0.1 */
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'fence-a'"), 1);
    /* Unfenced, the same books (the caller has no period cap). */
    fr_attempt_rec free1 = attempt("fence-b", "t", 1, "ep-fence", 0);
    res rf = {0};
    assert_int_equal(fr_pgstore_reserve(b, &free1, 0, on_done, &rf), FR_OK);
    FLUSH_UNTIL(f, b, rf.calls);
    assert_int_equal(rf.rc, FR_OK);

    /* a's heartbeat stops; once it looks dead b's lease reclaims a's share
     * and takes the rest of the cap. */
    char dead[512];
    snprintf(dead, sizeof dead, "SELECT count(*) FROM owners WHERE id = '%s' AND expires <= now()",
             fr_pgstore_owner(a));
    fr_pgstore_stop_heartbeat(a);
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, dead) == 1, 30);
    assert_true(fabs(lease_of(f, b, "fence-b", 1) - 0.24) < 1e-9);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM leases WHERE run_id = 'fence-a'"
                                " AND closed_by = 'reclaimed'"),
                     1);
    /* a still runs and still thinks it holds 0.04: the fence refuses. */
    fr_attempt_rec x3 = attempt("fence-a", "t", 3, "ep-fence", 0.03);
    assert_int_equal(reserve_fenced(f, a, &x3), FR_EBUDGET);
    assert_true(lease_of(f, a, "fence-a", 0.03) < 1e-9); /* nothing left */
    assert_int_equal(reserve_fenced(f, a, &x3), FR_EBUDGET);
    assert_true(sql_num(f, "SELECT sum(cost_usd) FROM attempts WHERE month = '2031-04'") +
                    sql_num(f, "SELECT sum(amount) FROM leases WHERE run_id = 'fence-b'"
                               " AND closed_at IS NULL") <=
                0.3 + 1e-9);
    /* b releases its share: a's new lease covers its grant on top of what
     * its run spent (0.06), so the request it was granted for books. */
    res rel = {0};
    assert_int_equal(fr_pgstore_release(b, "fence-b", on_done, &rel), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, rel.calls, 30);
    assert_true(fabs(lease_of(f, a, "fence-a", 0.03) - 0.03) < 1e-9);
    assert_true(fabs(sql_num(f, "SELECT amount FROM leases WHERE run_id = 'fence-a'"
                                " AND closed_at IS NULL") -
                     0.09) < 1e-9);
    assert_int_equal(reserve_fenced(f, a, &x3), FR_OK);
    fr_attempt_rec x4 = attempt("fence-a", "t", 4, "ep-fence", 0.01);
    assert_int_equal(reserve_fenced(f, a, &x4), FR_EBUDGET); /* 0.09 of 0.09 spent */
    fr_pgstore_close(a);
    fr_pgstore_close(b);
}

/* ---- faults ---- */

typedef struct states {
    int downs, ups;
    char msg[1024];
} states;

static void on_store_state(void *ud, fr_pgstore_state st, const fr_error *err)
{
    states *t = ud;
    if (st == FR_PGSTORE_DOWN) {
        t->downs++;
        assert_non_null(err);
        fr_error_format(err, t->msg, sizeof t->msg);
    } else {
        t->ups++;
        assert_null(err);
    }
}

static void test_restart_books_once(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    states ss = {0};
    fr_pgstore_opts o = {0};
    o.on_state = on_store_state;
    o.ud = &ss;
    o.lock_timeout_ms = 60000;
    o.stmt_timeout_ms = 60000;
    open_store(f, &o, &s);
    begin_run(f, s, "fault-1");
    /* The capped endpoint's row is locked by the test's session: the batch
     * waits on it, surely in flight when the server restarts. */
    sql_num(f, "INSERT INTO endpoints (name) VALUES ('ep-fault') ON CONFLICT DO NOTHING");
    hold_endpoints(f, "name = 'ep-fault'");
    enum { N = 10 };
    fr_attempt_rec at[N];
    char task[N][16];
    res r[N] = {0}, st[N] = {0};
    for (int i = 0; i < N; i++) {
        snprintf(task[i], sizeof task[i], "t%d", i);
        at[i] = attempt("fault-1", task[i], 1, i % 2 ? "ep-fault" : "ep-free", 0.5);
        assert_int_equal(fr_pgstore_reserve(s, &at[i], i % 2 ? 100 : 0, on_done, &r[i]), FR_OK);
    }
    fr_pgstore_flush(s);
    loop_spin(&f->loop, 20);
    assert_int_equal(fr_pgstore_in_flight(s), 1);
    assert_true(pg_server_restart(&server));
    LOOP_RUN_UNTIL(&f->loop,
                   (r[0].calls + r[1].calls + r[2].calls + r[3].calls + r[4].calls + r[5].calls +
                    r[6].calls + r[7].calls + r[8].calls + r[9].calls) == N,
                   60);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].rc, FR_OK);
    /* The caller was told, both ways; the batch was sent again. */
    assert_int_equal(ss.downs, 1);
    assert_int_equal(ss.ups, 1);
    assert_non_null(strstr(ss.msg, "postgresql://postgres@127.0.0.1:"));
    fr_pgstore_stats stats;
    fr_pgstore_stats_get(s, &stats);
    assert_true(stats.retries >= 1);
    /* The settles' batch, and the server restarted as soon as it is sent:
     * committed or not, it is sent again and books once. */
    for (int i = 0; i < N; i++) {
        at[i].cost_usd = 0.125;
        assert_int_equal(fr_pgstore_settle(s, &at[i], true, on_value, &st[i]), FR_OK);
    }
    fr_pgstore_flush(s);
    loop_spin(&f->loop, 3);
    assert_true(pg_server_restart(&server));
    LOOP_RUN_UNTIL(&f->loop,
                   (st[0].calls + st[1].calls + st[2].calls + st[3].calls + st[4].calls +
                    st[5].calls + st[6].calls + st[7].calls + st[8].calls + st[9].calls) == N,
                   60);
    for (int i = 0; i < N; i++)
        assert_int_equal(st[i].rc, FR_OK);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'fault-1'"), N);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'fault-1'"
                                " AND outcome = 'ok' AND cost_usd = 0.125"),
                     N);
    /* The totals moved once per attempt: this run's day holds its N. */
    assert_true(fabs(sql_num(f, "SELECT sum(cost_usd) FROM attempts WHERE run_id = 'fault-1'") -
                     N * 0.125) < 1e-9);
    fr_pgstore_close(s);
}

/* Two batches that lock endpoints' rows in opposite orders deadlock; the
 * server aborts one (40P01), which is sent again and books. The test's
 * session holds two rows first so that each batch holds one row and waits
 * for the other's. */
static void test_deadlock_retried(void **state)
{
    fx *f = *state;
    fr_pgstore *a = NULL, *b = NULL;
    fr_pgstore_opts o = {0};
    o.lock_timeout_ms = 20000; /* past the server's deadlock_timeout (1 s) */
    open_store(f, &o, &a);
    open_store(f, &o, &b);
    begin_run(f, a, "dl-a");
    begin_run(f, b, "dl-b");
    sql_num(f, "INSERT INTO endpoints (name) VALUES ('dl-x'), ('dl-y'), ('dl-za'), ('dl-zb')"
               " ON CONFLICT DO NOTHING");
    hold_endpoints(f, "name IN ('dl-za', 'dl-zb')");
    /* a: y, then za (held), then x; b: x, then zb (held), then y. */
    const char *order[2][3] = {{"dl-y", "dl-za", "dl-x"}, {"dl-x", "dl-zb", "dl-y"}};
    fr_attempt_rec at[2][3];
    res r[2][3] = {{{0}}};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++) {
            /* $0 each: a paid one locks its period's row before any
             * endpoint's, and the two would wait in line, not in a cycle */
            at[k][i] = attempt(k ? "dl-b" : "dl-a", "t", i + 1, order[k][i], 0);
            assert_int_equal(fr_pgstore_reserve(k ? b : a, &at[k][i], 10, on_done, &r[k][i]),
                             FR_OK);
        }
    fr_pgstore_flush(a);
    fr_pgstore_flush(b);
    /* Both wait for the test's rows (each holding its first) before they go. */
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, "SELECT count(*) FROM pg_locks WHERE NOT granted") >= 2,
                   30);
    rawres commit = {0};
    assert_int_equal(fr_pgconn_query(f->raw, "COMMIT", 0, NULL, on_raw, &commit), FR_OK);
    LOOP_RUN_UNTIL(&f->loop,
                   commit.res && r[0][2].calls && r[1][2].calls && r[0][0].calls && r[1][0].calls,
                   60);
    fr_pgres_free(commit.res);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++)
            if (r[k][i].rc != FR_OK)
                fail_msg("%s", r[k][i].msg);
    fr_pgstore_stats sa, sb;
    fr_pgstore_stats_get(a, &sa);
    fr_pgstore_stats_get(b, &sb);
    assert_true(sa.retries + sb.retries >= 1);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id IN ('dl-a', 'dl-b')"),
                     6);
    fr_pgstore_close(a);
    fr_pgstore_close(b);
}

/* Operations queued before the open is done wait for it, in order. */
static void test_queued_before_open(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    res op = {0}, rb = {0}, re = {0};
    fr_error err = {0};
    assert_int_equal(fr_pgstore_open(&f->loop, server.url, NULL, on_done, &op, &s, &err), FR_OK);
    assert_int_equal(fr_pgstore_run_begin(s, "early-1", "wf", NULL, on_done, &rb), FR_OK);
    fr_pgstore_flush(s);
    assert_int_equal(fr_pgstore_run_end(s, "early-1", "ok", 0, 0, on_done, &re), FR_OK);
    fr_pgstore_flush(s);
    LOOP_RUN_UNTIL(&f->loop, op.calls && rb.calls && re.calls, 30);
    assert_int_equal(op.rc, FR_OK);
    assert_int_equal(rb.rc, FR_OK);
    assert_int_equal(re.rc, FR_OK);
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM runs WHERE id = 'early-1' AND status = 'ok' AND owner_id = '%s'",
             fr_pgstore_owner(s));
    assert_int_equal(sql_num(f, sql), 1);
    fr_pgstore_stats stats;
    fr_pgstore_stats_get(s, &stats);
    assert_int_equal(stats.flushes, 2);
    fr_pgstore_close(s);
}

static void test_unreachable_open(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    res r = {0};
    fr_error err = {0};
    const char *url = "postgresql://someone:hunter2-secret@127.0.0.1:1/db";
    assert_int_equal(fr_pgstore_open(&f->loop, url, NULL, on_done, &r, &s, &err), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, r.calls == 1, 30);
    assert_int_equal(r.rc, FR_ECONNECT);
    assert_non_null(strstr(r.msg, "127.0.0.1:1"));
    assert_null(strstr(r.msg, "hunter2"));
    /* Operations after a failed open are refused at once. */
    res q = {0};
    assert_int_equal(fr_pgstore_cache_get(s, "k", on_reply, &q), FR_ECONNECT);
    assert_int_equal(q.calls, 0);
    fr_pgstore_close(s);
}

typedef struct ticker {
    uv_timer_t t;
    int ticks;
} ticker;

static void on_tick(uv_timer_t *t)
{
    ((ticker *)t->data)->ticks++;
}

static void test_row_lock_keeps_the_loop(void **state)
{
    fx *f = *state;
    fr_pgstore *s = NULL;
    fr_pgstore_opts o = {0};
    o.lock_timeout_ms = 500;
    open_store(f, &o, &s);
    begin_run(f, s, "lock-1");
    sql_num(f, "INSERT INTO endpoints (name) VALUES ('ep-lock') ON CONFLICT DO NOTHING");
    hold_endpoints(f, "name = 'ep-lock'");
    ticker tk = {0};
    uv_timer_init(&f->loop, &tk.t);
    tk.t.data = &tk;
    uv_timer_start(&tk.t, on_tick, 20, 20);
    fr_attempt_rec a = attempt("lock-1", "t", 1, "ep-lock", 1);
    res r = {0};
    assert_int_equal(fr_pgstore_reserve(s, &a, 2, on_done, &r), FR_OK);
    FLUSH_UNTIL(f, s, r.calls);
    /* The wait ended as a timeout the caller can act on, while the loop ran. */
    assert_int_equal(r.rc, FR_ETIMEDOUT);
    assert_true(tk.ticks >= 3);
    assert_int_equal(sql_num(f, "SELECT count(*) FROM attempts WHERE run_id = 'lock-1'"), 0);
    /* Again, and the lock is released meanwhile: it books. */
    memset(&r, 0, sizeof r);
    assert_int_equal(fr_pgstore_reserve(s, &a, 2, on_done, &r), FR_OK);
    fr_pgstore_flush(s);
    loop_spin(&f->loop, 5);
    rawres commit = {0};
    assert_int_equal(fr_pgconn_query(f->raw, "COMMIT", 0, NULL, on_raw, &commit), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, r.calls && commit.res, 30);
    fr_pgres_free(commit.res);
    if (r.rc != FR_OK)
        fail_msg("%s", r.msg);
    uv_close((uv_handle_t *)&tk.t, NULL);
    fr_pgstore_close(s);
    loop_spin(&f->loop, 3); /* the ticker's close, before its memory goes */
}

/* ---- the heartbeat ---- */

/* Runs the loop for `secs` seconds. */
static void loop_for(fx *f, double secs)
{
    loop_watchdog *wd = loop_watchdog_start(&f->loop, secs);
    while (loop_watchdog_step(wd))
        ;
    loop_watchdog_end(wd);
}

/* Runs `n` statements on `c` (borrowed) as one request; fails the test
 * unless they succeed. */
static void conn_exec(fx *f, fr_pgconn *c, int n, const fr_pgstmt *stmts)
{
    rawres r = {0};
    assert_int_equal(fr_pgconn_transaction(c, n, stmts, on_raw, &r), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, r.res != NULL, 30);
    if (fr_pgres_code(r.res) != FR_OK)
        fail_msg("%s: %s", stmts[n - 1].sql, fr_pgres_message(r.res));
    fr_pgres_free(r.res);
}

/* A session of the test's own besides f->raw (whose transaction would
 * freeze now() and pg_stat_activity for sql_num), f->lk: borrowed, the
 * fixture's teardown closes it. */
static fr_pgconn *other_session(fx *f)
{
    fr_error err = {0};
    if (!f->lk)
        assert_int_equal(fr_pgconn_open(&f->loop, server.url, NULL, NULL, &f->lk, &err), FR_OK);
    return f->lk;
}

/* Locks `sql`'s rows (SELECT ... FOR UPDATE) on `c` in a transaction left
 * open until its COMMIT. */
static void hold_rows(fx *f, fr_pgconn *c, const char *sql)
{
    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL}, {sql, 0, NULL}};
    conn_exec(f, c, 2, hold);
}

static void commit(fx *f, fr_pgconn *c)
{
    fr_pgstmt st = {"COMMIT", 0, NULL};
    conn_exec(f, c, 1, &st);
}

static fr_pgstore_opts heartbeat_opts(void)
{
    fr_pgstore_opts o = {0};
    o.heartbeat_ms = 200;
    o.lease_ms = 1000; /* the owner dies 1 s after its last heartbeat */
    o.lock_timeout_ms = 10000;
    o.stmt_timeout_ms = 10000; /* a transaction waits on a row lock for 10 s */
    return o;
}

/* A heartbeat of the store's waits on the owner's row lock. */
static const char *const HEARTBEAT_WAITING =
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    " AND query LIKE 'INSERT INTO owners%'";

/* A lease waiting on a period's row lock held by another session does not
 * hold up the heartbeat: the owner stays live throughout the wait, though
 * it is longer than the lease of the owner. */
static void test_heartbeat_beside_a_lock_wait(void **state)
{
    fx *f = *state;
    fr_pgstore *a = NULL;
    fr_pgstore_opts o = heartbeat_opts();
    open_store(f, &o, &a);
    begin_run(f, a, "hb-lock");
    leaser first = LEASER(a, "hb-lock", "2032-01", 5);
    assert_int_equal(fr_pgstore_lease(a, "2032-01", 5, 1, "hb-lock", on_leased, &first), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, first.back == 1, 30);
    assert_int_equal(first.errors, 0);
    char live[512];
    snprintf(live, sizeof live, "SELECT count(*) FROM owners WHERE id = '%s' AND expires > now()",
             fr_pgstore_owner(a));
    assert_int_equal(sql_num(f, live), 1);

    fr_pgconn *lk = other_session(f);
    hold_rows(f, lk, "SELECT period FROM period_totals WHERE period = '2032-01' FOR UPDATE");
    leaser waiting = LEASER(a, "hb-lock", "2032-01", 5);
    assert_int_equal(fr_pgstore_lease(a, "2032-01", 5, 1, "hb-lock", on_leased, &waiting), FR_OK);
    fr_pgstore_stats before, after;
    fr_pgstore_stats_get(a, &before);
    for (int i = 1; i <= 25; i++) { /* 2.5 s: two and a half leases of the owner */
        loop_for(f, 0.1);
        assert_int_equal(waiting.back, 0); /* the lease still waits */
        if (sql_num(f, live) != 1)
            fail_msg("the owner expired %d ms into its lease's wait for a row lock", i * 100);
    }
    fr_pgstore_stats_get(a, &after);
    assert_true(after.heartbeats >= before.heartbeats + 5);
    commit(f, lk);
    LOOP_RUN_UNTIL(&f->loop, waiting.back == 1, 30);
    assert_int_equal(waiting.errors, 0);
    assert_true(fabs(first.granted + waiting.granted - 2) < 1e-9);
    fr_pgstore_close(a);
}

/* The owner's end at close is not undone by a heartbeat in flight then,
 * nor by one that runs after an end committed. */
static void test_close_ends_owner_with_heartbeat_in_flight(void **state)
{
    fx *f = *state;
    fr_pgstore_opts o = heartbeat_opts();
    fr_pgconn *lk = other_session(f);
    char sql[512], ended[512];

    /* A heartbeat waits on the owner's row, locked by the test, at close. */
    fr_pgstore *a = NULL;
    open_store(f, &o, &a);
    snprintf(ended, sizeof ended,
             "SELECT count(*) FROM owners WHERE id = '%s' AND expires <= now()",
             fr_pgstore_owner(a));
    snprintf(sql, sizeof sql, "SELECT id FROM owners WHERE id = '%s' FOR UPDATE",
             fr_pgstore_owner(a));
    hold_rows(f, lk, sql);
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, HEARTBEAT_WAITING) == 1, 30);
    fr_pgstore_close(a);
    a = NULL;
    commit(f, lk);
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, ended) == 1, 30);
    loop_for(f, 1.5); /* past the lease a late heartbeat would have given */
    assert_int_equal(sql_num(f, ended), 1);
    assert_int_equal(sql_num(f, HEARTBEAT_WAITING), 0);

    /* An end that committed while a heartbeat waited: the heartbeat, once
     * it runs, does not make the owner live again. */
    fr_pgstore *b = NULL;
    open_store(f, &o, &b);
    snprintf(ended, sizeof ended,
             "SELECT count(*) FROM owners WHERE id = '%s' AND expires <= now()",
             fr_pgstore_owner(b));
    snprintf(sql, sizeof sql, "SELECT id FROM owners WHERE id = '%s' FOR UPDATE",
             fr_pgstore_owner(b));
    hold_rows(f, lk, sql);
    LOOP_RUN_UNTIL(&f->loop, sql_num(f, HEARTBEAT_WAITING) == 1, 30);
    fr_pgstore_stats before, after;
    fr_pgstore_stats_get(b, &before);
    snprintf(sql, sizeof sql,
             "UPDATE owners SET heartbeat = now(), expires = now() WHERE id = '%s'",
             fr_pgstore_owner(b)); /* as fr_pgstore_close ends it */
    fr_pgstmt end = {sql, 0, NULL};
    conn_exec(f, lk, 1, &end);
    commit(f, lk);
    LOOP_RUN_UNTIL(&f->loop,
                   (fr_pgstore_stats_get(b, &after), after.heartbeats > before.heartbeats), 30);
    assert_int_equal(sql_num(f, ended), 1);
    loop_for(f, 0.5); /* more heartbeats */
    fr_pgstore_stats_get(b, &after);
    assert_true(after.heartbeats >= before.heartbeats + 2);
    assert_int_equal(sql_num(f, ended), 1);
    fr_pgstore_close(b);
}

int main(void)
{
    PG_SERVER_START_OR_RETURN(&server);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_runs_reserve_settle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complexity_and_score, setup, teardown),
        cmocka_unit_test_setup_teardown(test_turns_of_one_attempt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_and_approvals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_across_two_stores, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leases_two_owners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fence_after_reclaim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_row_lock_keeps_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_beside_a_lock_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_ends_owner_with_heartbeat_in_flight, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadlock_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_before_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_books_once, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pg_server_stop(&server);
    return rc;
}
