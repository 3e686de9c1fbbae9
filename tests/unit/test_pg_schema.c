/* engine/store/pg_schema against a real PostgreSQL server of the test's own
 * (tests/unit/support/pg_fixture.h), each test in a fresh schema of its
 * own (the connections' search_path): a fresh database gets the current
 * version; the apply step waits for the migration lock without stopping
 * the loop; eight connections applying at once apply the migration once and
 * all succeed; a migration in flight when the server restarts is read
 * again and applied once; a newer version, or none, is refused; the outcome and period
 * checks; the period totals equal a recount from the attempts after
 * concurrent reservations, settles, moves and deletes from four
 * connections; the client's key makes a repeated reservation and a repeated
 * settle no-ops; user and host are stored and split the spend; a dead
 * owner's slots and leases stop counting. Skipped (77) where PostgreSQL's
 * server is not installed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/store/pg_schema.h"
#include "engine/store/pgconn.h"
#include "engine/util/err.h"
#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/pg_fixture.h"

#include <math.h>

static pg_server server;
static int schemas; /* how many test schemas were made */

#define MAX_CONNS 8

typedef struct fx fx;

/* One connection and what its requests came back with. */
typedef struct conn {
    fx *f;
    fr_pgconn *c;
    int ups, faileds;
    char state_msg[1024];
    int sent, completed, failed;
    char last_error[1024];
    int64_t affected; /* of the requests counted by `sent` */
    /* the apply step's outcome */
    bool applied;
    int apply_rc;
    fr_error apply_err;
} conn;

struct fx {
    uv_loop_t loop;
    char schema[32];
    char url[700];
    conn conns[MAX_CONNS];
    int n;
};

static void on_state(void *ud, fr_pgconn_event ev, const fr_error *err)
{
    conn *k = ud;
    if (ev == FR_PGCONN_UP)
        k->ups++;
    else if (ev == FR_PGCONN_FAILED)
        k->faileds++;
    if (err)
        fr_error_format(err, k->state_msg, sizeof k->state_msg);
}

/* Opens connection `i` to `url` and waits until it is up. */
static conn *open_conn(fx *f, int i, const char *url)
{
    conn *k = &f->conns[i];
    k->f = f;
    fr_error err = {0};
    int rc = fr_pgconn_open(&f->loop, url, on_state, k, &k->c, &err);
    if (rc != FR_OK)
        fail_msg("fr_pgconn_open: %s: %s", fr_err_name(rc), err.msg);
    if (i >= f->n)
        f->n = i + 1;
    LOOP_RUN_UNTIL(&f->loop, k->ups >= 1 || k->faileds >= 1, 15);
    if (k->ups < 1)
        fail_msg("the connection did not come up: %s", k->state_msg);
    return k;
}

/* A synchronous query's result. */
typedef struct waiter {
    fr_pgres *res;
} waiter;

static void on_waited(void *ud, fr_pgres *res)
{
    ((waiter *)ud)->res = res;
}

/* Runs `sql` on `k` and returns its result (owned: fr_pgres_free it). */
static fr_pgres *query(fx *f, conn *k, const char *sql, int n, const char *const *params)
{
    waiter w = {0};
    assert_int_equal(fr_pgconn_query(k->c, sql, n, params, on_waited, &w), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, w.res != NULL, 30);
    return w.res;
}

/* Runs `sql`, which must succeed, and returns its first cell as an integer. */
static long long query_int(fx *f, conn *k, const char *sql, int n, const char *const *params)
{
    fr_pgres *r = query(f, k, sql, n, params);
    if (fr_pgres_code(r) != FR_OK)
        fail_msg("%s: %s: %s", sql, fr_err_name(fr_pgres_code(r)), fr_pgres_message(r));
    const char *v = fr_pgres_value(r, 0, 0);
    long long out = v ? strtoll(v, NULL, 10) : -1;
    fr_pgres_free(r);
    return out;
}

/* Runs `sql`, which must succeed; returns the rows it affected. */
static int64_t exec_ok(fx *f, conn *k, const char *sql, int n, const char *const *params)
{
    fr_pgres *r = query(f, k, sql, n, params);
    if (fr_pgres_code(r) != FR_OK)
        fail_msg("%s: %s: %s", sql, fr_err_name(fr_pgres_code(r)), fr_pgres_message(r));
    int64_t a = fr_pgres_affected(r);
    fr_pgres_free(r);
    return a;
}

/* Runs `sql`, which must fail with SQLSTATE `state`. */
static void exec_fails(fx *f, conn *k, const char *sql, int n, const char *const *params,
                       const char *state)
{
    fr_pgres *r = query(f, k, sql, n, params);
    int code = fr_pgres_code(r);
    char got[8];
    snprintf(got, sizeof got, "%s", fr_pgres_sqlstate(r));
    fr_pgres_free(r);
    if (code != FR_ESTORE || strcmp(got, state) != 0)
        fail_msg("%s: %s (SQLSTATE %s), not SQLSTATE %s", sql, fr_err_name(code), got, state);
}

/* Asynchronous requests counted on their connection. */
static void on_counted(void *ud, fr_pgres *res)
{
    conn *k = ud;
    k->completed++;
    if (fr_pgres_code(res) != FR_OK) {
        k->failed++;
        snprintf(k->last_error, sizeof k->last_error, "%s", fr_pgres_message(res));
    } else {
        k->affected += fr_pgres_affected(res);
    }
    fr_pgres_free(res);
}

static void send_counted(conn *k, const char *sql, int n, const char *const *params)
{
    assert_int_equal(fr_pgconn_query(k->c, sql, n, params, on_counted, k), FR_OK);
    k->sent++;
}

static void on_applied(void *ud, int rc, const fr_error *err)
{
    conn *k = ud;
    assert_false(k->applied); /* called once */
    k->applied = true;
    k->apply_rc = rc;
    if (err)
        k->apply_err = *err;
    else
        assert_int_equal(rc, FR_OK);
}

static void start_apply(conn *k)
{
    k->applied = false;
    memset(&k->apply_err, 0, sizeof k->apply_err);
    assert_int_equal(fr_pg_schema_apply(k->c, "postgresql://postgres@test/db", on_applied, k),
                     FR_OK);
}

/* Applies the schema on `k`; returns the apply step's code. */
static int apply(fx *f, conn *k)
{
    start_apply(k);
    LOOP_RUN_UNTIL(&f->loop, k->applied, 60);
    return k->apply_rc;
}

static void apply_ok(fx *f, conn *k)
{
    if (apply(f, k) != FR_OK)
        fail_msg("apply: %s: %s", fr_err_name(k->apply_rc), k->apply_err.msg);
}

/* A fresh schema for the test; f->url connects with it as search_path. */
static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    snprintf(f->schema, sizeof f->schema, "t%d", ++schemas);
    snprintf(f->url, sizeof f->url, "%s?options=-csearch_path%%3D%s", server.url, f->schema);
    *state = f;
    conn *admin = open_conn(f, MAX_CONNS - 1, server.url);
    char sql[96];
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s", f->schema);
    exec_ok(f, admin, sql, 0, NULL);
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    for (int i = 0; i < MAX_CONNS; i++)
        fr_pgconn_close(f->conns[i].c);
    char why[384];
    bool ok = loop_drain(&f->loop, 10, why, sizeof why);
    free(f);
    if (!ok)
        fail_msg("%s", why);
    return 0;
}

static void test_migrations_listed(void **state)
{
    (void)state;
    assert_null(fr_pg_schema_sql(-1));
    assert_null(fr_pg_schema_sql(FR_PG_SCHEMA_VERSION));
    for (int v = 0; v < FR_PG_SCHEMA_VERSION; v++) {
        const char *const *s = fr_pg_schema_sql(v);
        assert_non_null(s);
        assert_non_null(s[0]);
    }
    /* The lock's key as the SQL spells it is the header's number. */
    assert_int_equal(strtoll(FR_PG_SCHEMA_LOCK_KEY_SQL, NULL, 10), FR_PG_SCHEMA_LOCK_KEY);
}

/* meta's schema_version, as k reads it, is this flowrun's. */
static void assert_current_version(fx *f, conn *k)
{
    fr_pgres *r = query(f, k, "SELECT value FROM meta WHERE key = 'schema_version'", 0, NULL);
    char want[16];
    snprintf(want, sizeof want, "%d", FR_PG_SCHEMA_VERSION);
    assert_string_equal(fr_pgres_value(r, 0, 0), want);
    fr_pgres_free(r);
}

static void test_fresh_database(void **state)
{
    fx *f = *state;
    conn *k = open_conn(f, 0, f->url);
    apply_ok(f, k);
    assert_current_version(f, k);
    /* Every table of the schema, in the test's schema. */
    static const char *const tables[] = {"meta",      "schema_log",    "owners",    "runs",
                                         "attempts",  "period_totals", "leases",    "endpoints",
                                         "cache",     "approvals",     "reports",   "ledger",
                                         "in_flight", "open_leases",   "slot_waits"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        const char *p[2] = {f->schema, tables[i]};
        assert_int_equal(query_int(f, k,
                                   "SELECT count(*) FROM pg_class c JOIN pg_namespace n"
                                   " ON n.oid = c.relnamespace WHERE n.nspname = $1"
                                   " AND c.relname = $2",
                                   2, p),
                         1);
    }
    assert_int_equal(query_int(f, k,
                               "SELECT count(*) FROM schema_log WHERE version = 1"
                               " AND backend_pid = pg_backend_pid()",
                               0, NULL),
                     1);
    /* Applied again: nothing to do. */
    apply_ok(f, k);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
}

/* A database a flowrun of schema version 1 made (its statements, its
 * version and log) is taken to the current version, its rows kept: an
 * owner row stays, slot_waits is there and empty, the log has a row per
 * migration. */
static void test_version_1_migrates(void **state)
{
    fx *f = *state;
    conn *k = open_conn(f, 0, f->url);
    for (const char *const *q = fr_pg_schema_sql(0); *q; q++)
        exec_ok(f, k, *q, 0, NULL);
    exec_ok(f, k, "INSERT INTO schema_log(version) VALUES (1)", 0, NULL);
    exec_ok(f, k, "INSERT INTO meta(key, value) VALUES ('schema_version', '1')", 0, NULL);
    exec_ok(f, k,
            "INSERT INTO owners (id, user_name, host, pid, expires)"
            " VALUES ('o1', 'u', 'h', 1, now() + interval '1 hour')",
            0, NULL);
    apply_ok(f, k);
    assert_current_version(f, k);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM owners WHERE id = 'o1'", 0, NULL), 1);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM slot_waits", 0, NULL), 0);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
}

/* Opens a holder (connection 0) that takes the migration lock in a
 * transaction it leaves open, starts the apply step on connection 1, and
 * returns once the server shows it waiting for that lock (pg_locks): its
 * migration is in flight, the loop running all along. */
static conn *apply_behind_the_lock(fx *f, conn **holder)
{
    *holder = open_conn(f, 0, f->url);
    conn *k = open_conn(f, 1, f->url);
    /* BEGIN without COMMIT: the transaction, and its lock, stay open. */
    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL},
                         {"SELECT pg_advisory_xact_lock(" FR_PG_SCHEMA_LOCK_KEY_SQL ")", 0, NULL}};
    waiter w = {0};
    assert_int_equal(fr_pgconn_transaction((*holder)->c, 2, hold, on_waited, &w), FR_OK);
    LOOP_RUN_UNTIL(&f->loop, w.res != NULL, 30);
    assert_int_equal(fr_pgres_code(w.res), FR_OK);
    fr_pgres_free(w.res);
    start_apply(k);
    const char *key[1] = {FR_PG_SCHEMA_LOCK_KEY_SQL};
    int waiting = 0;
    for (int tries = 0; tries < 3000 && waiting == 0 && !k->applied; tries++)
        waiting = (int)query_int(f, *holder,
                                 "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                 " AND NOT granted AND objsubid = 1"
                                 " AND ((classid::bigint << 32) | objid::bigint) = $1::bigint",
                                 1, key);
    assert_false(k->applied);
    assert_int_equal(waiting, 1);
    assert_int_equal(fr_pgconn_in_flight(k->c), 1);
    return k;
}

/* While another session holds the migration lock, the apply step waits for
 * it and the loop goes on; it finishes once the lock is let go. */
static void test_waits_for_the_lock(void **state)
{
    fx *f = *state;
    conn *holder = NULL;
    conn *k = apply_behind_the_lock(f, &holder);
    exec_ok(f, holder, "COMMIT", 0, NULL);
    LOOP_RUN_UNTIL(&f->loop, k->applied, 60);
    assert_int_equal(k->apply_rc, FR_OK);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
}

/* The server restarts while the migration is in flight: its outcome is
 * unknown, so the apply step reads the version again on the new
 * connection and migrates once. */
static void test_restart_mid_migration(void **state)
{
    fx *f = *state;
    conn *holder = NULL;
    conn *k = apply_behind_the_lock(f, &holder);
    assert_true(pg_server_restart(&server));
    LOOP_RUN_UNTIL(&f->loop, k->applied, 60);
    if (k->apply_rc != FR_OK)
        fail_msg("apply: %s: %s", fr_err_name(k->apply_rc), k->apply_err.msg);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
    apply_ok(f, k);
}

static int applied_count(const fx *f)
{
    int n = 0;
    for (int i = 0; i < MAX_CONNS; i++)
        n += f->conns[i].applied;
    return n;
}

static void test_eight_at_once(void **state)
{
    fx *f = *state;
    for (int i = 0; i < 7; i++)
        open_conn(f, i, f->url);
    /* The admin connection, with the test's schema set by hand, is the eighth. */
    conn *eighth = &f->conns[MAX_CONNS - 1];
    char sql[96];
    snprintf(sql, sizeof sql, "SET search_path TO %s", f->schema);
    exec_ok(f, eighth, sql, 0, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        start_apply(&f->conns[i]);
    LOOP_RUN_UNTIL(&f->loop, applied_count(f) == MAX_CONNS, 120);
    for (int i = 0; i < MAX_CONNS; i++)
        if (f->conns[i].apply_rc != FR_OK)
            fail_msg("connection %d: %s: %s", i, fr_err_name(f->conns[i].apply_rc),
                     f->conns[i].apply_err.msg);
    /* Each migration once, by one server process. */
    assert_int_equal(query_int(f, &f->conns[0], "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
    assert_int_equal(
        query_int(f, &f->conns[0], "SELECT count(DISTINCT version) FROM schema_log", 0, NULL),
        FR_PG_SCHEMA_VERSION);
}

static void test_newer_version_refused(void **state)
{
    fx *f = *state;
    conn *k = open_conn(f, 0, f->url);
    apply_ok(f, k);
    char newer[16];
    snprintf(newer, sizeof newer, "%d", FR_PG_SCHEMA_VERSION + 1);
    const char *p[1] = {newer};
    exec_ok(f, k, "UPDATE meta SET value = $1 WHERE key = 'schema_version'", 1, p);
    assert_int_equal(apply(f, k), FR_ESTOREVER);
    assert_int_equal(k->apply_err.code, FR_ESTOREVER);
    assert_string_equal(k->apply_err.source, "postgresql://postgres@test/db");
    char want[200];
    snprintf(want, sizeof want,
             "the state database has schema version %d, but this flowrun knows versions up to "
             "%d: upgrade flowrun to use it",
             FR_PG_SCHEMA_VERSION + 1, FR_PG_SCHEMA_VERSION);
    assert_string_equal(k->apply_err.msg, want);
    /* Nothing was applied or changed. */
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM schema_log", 0, NULL),
                     FR_PG_SCHEMA_VERSION);
    /* A meta table without a valid version is not flowrun's. */
    exec_ok(f, k, "UPDATE meta SET value = 'x' WHERE key = 'schema_version'", 0, NULL);
    assert_int_equal(apply(f, k), FR_ESTORE);
    assert_non_null(strstr(k->apply_err.msg, "no valid flowrun schema version"));
}

/* ---- the ledger ---------------------------------------------------------------- */

#define RESERVE_SQL                                                                                \
    "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd, outcome, at, month,"    \
    " day, owner_id, user_name, host)"                                                             \
    " VALUES ($1, $2, $3, $4, 'local', $5, 'pending', 0, left($6, 7), $6, $7, $8, $9)"             \
    " ON CONFLICT (run_id, task, attempt, turn) DO NOTHING"
#define SETTLE_SQL                                                                                 \
    "UPDATE attempts SET cost_usd = $4, outcome = $5"                                              \
    " WHERE run_id = $1 AND task = $2 AND attempt = $3 AND outcome = 'pending'"

/* A reservation's parameters (its strings kept in `buf`). */
typedef struct resv {
    char attempt[16], cost[40];
    const char *p[9];
} resv;

static const char *const *reserve_params(resv *r, const char *run, const char *task, int attempt,
                                         const char *endpoint, double cost, const char *day,
                                         const char *owner, const char *user, const char *host)
{
    snprintf(r->attempt, sizeof r->attempt, "%d", attempt);
    snprintf(r->cost, sizeof r->cost, "%.17g", cost);
    const char *p[9] = {run, task, r->attempt, endpoint, r->cost, day, owner, user, host};
    memcpy(r->p, p, sizeof p);
    return r->p;
}

/* Sends one reservation on `k` and returns the rows it inserted (0 or 1). */
static int64_t reserve(fx *f, conn *k, const char *run, const char *task, int attempt, double cost,
                       const char *owner, const char *user, const char *host)
{
    resv r;
    return exec_ok(
        f, k, RESERVE_SQL, 9,
        reserve_params(&r, run, task, attempt, "gpu", cost, "2026-12-02", owner, user, host));
}

/* Makes run `id` (and its owner `owner`, live for a minute). */
static void make_run(fx *f, conn *k, const char *id, const char *owner)
{
    const char *p[2] = {owner, id};
    exec_ok(f, k,
            "INSERT INTO owners(id, user_name, host, pid, expires)"
            " VALUES ($1, 'u', 'h', 1, now() + interval '1 minute') ON CONFLICT DO NOTHING",
            1, p);
    exec_ok(f, k, "INSERT INTO runs(id, workflow, started_at, owner_id) VALUES ($2, 'w', 0, $1)", 2,
            p);
}

/* Connection 0 on a store at the current version with run r1 of owner o1. */
static conn *store_with_run(fx *f)
{
    conn *k = open_conn(f, 0, f->url);
    apply_ok(f, k);
    make_run(f, k, "r1", "o1");
    return k;
}

/* A period's total, `column` charged_pusd or booked_pusd. */
static long long total(fx *f, conn *k, const char *column, const char *period)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT %s FROM period_totals WHERE period = $1", column);
    const char *p[1] = {period};
    return query_int(f, k, sql, 1, p);
}

static void test_checks(void **state)
{
    fx *f = *state;
    conn *k = store_with_run(f);
    static const char ins[] =
        "INSERT INTO attempts(run_id, task, attempt, endpoint, tier, cost_usd, outcome, at,"
        " month, day) VALUES ('r1', 't', $1, 'e', 'cloud', $2, $3, 0, $4, $5)";
    const char *bad_outcome[5] = {"1", "0.5", "bogus", "2026-12", "2026-12-02"};
    exec_fails(f, k, ins, 5, bad_outcome, "23514");
    const char *good[5] = {"1", "0.5", "no_answer", "2026-12", "2026-12-02"};
    assert_int_equal(exec_ok(f, k, ins, 5, good), 1);
    const char *wrong_month[5] = {"2", "0.5", "ok", "2026-11", "2026-12-02"};
    exec_fails(f, k, ins, 5, wrong_month, "23514");
    const char *bad_day[5] = {"3", "0.5", "ok", "2026-12", "2026-12-2"};
    exec_fails(f, k, ins, 5, bad_day, "23514");
    const char *nan_cost[5] = {"4", "NaN", "ok", "2026-12", "2026-12-02"};
    exec_fails(f, k, ins, 5, nan_cost, "23514");
    const char *negative[5] = {"5", "-1", "ok", "2026-12", "2026-12-02"};
    exec_fails(f, k, ins, 5, negative, "23514");
    /* The settle of an unknown outcome is refused too, and changes nothing. */
    exec_fails(f, k, "UPDATE attempts SET outcome = 'done' WHERE run_id = 'r1'", 0, NULL, "23514");
    assert_int_equal(
        query_int(f, k, "SELECT count(*) FROM attempts WHERE outcome = 'no_answer'", 0, NULL), 1);
    exec_fails(
        f, k, "INSERT INTO leases(run_id, period, amount, opened_at) VALUES ('r1', '2026-1', 1, 0)",
        0, NULL, "23514");
}

/* What the C side adds: as fr_pusd. */
static long long pusd(double usd)
{
    return (long long)floor(usd * 1e12 + 0.5);
}

#define WRITERS    4
#define PER_WRITER 60

static void test_totals_equal_a_recount(void **state)
{
    fx *f = *state;
    conn *k = store_with_run(f);
    for (int w = 1; w < WRITERS; w++)
        open_conn(f, w, f->url);
    static const char *const days[] = {"2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"};
    static char tasks[WRITERS * PER_WRITER][16];
    static resv rs[WRITERS * PER_WRITER];
    double cost[WRITERS * PER_WRITER];
    uint32_t seed = 12345;
    /* Reservations from four connections at once. */
    for (int i = 0; i < WRITERS * PER_WRITER; i++) {
        seed = seed * 1103515245u + 12345u;
        cost[i] = (double)(seed % 1000000u) / 1e7; /* up to $0.1 */
        snprintf(tasks[i], sizeof tasks[i], "t%d", i);
        send_counted(
            &f->conns[i % WRITERS], RESERVE_SQL, 9,
            reserve_params(&rs[i], "r1", tasks[i], 1, "e", cost[i], days[i % 4], "o1", "u", "h"));
    }
    LOOP_RUN_UNTIL(&f->loop,
                   f->conns[0].completed + f->conns[1].completed + f->conns[2].completed +
                           f->conns[3].completed ==
                       WRITERS * PER_WRITER,
                   120);
    for (int w = 0; w < WRITERS; w++) {
        if (f->conns[w].failed)
            fail_msg("writer %d: %s", w, f->conns[w].last_error);
        f->conns[w].completed = f->conns[w].sent = 0;
    }
    /* Settles from other connections than the reservations', also at
     * once: most to a smaller cost, some refused to $0, every seventh left
     * in flight; a few rows deleted and a few moved to another day. */
    static char settled[WRITERS * PER_WRITER][40];
    static const char *sp[WRITERS * PER_WRITER][5];
    long long charged_dec = 0, booked_dec = 0, charged_nov = 0, booked_nov = 0;
    int expected_rows = 0;
    for (int i = 0; i < WRITERS * PER_WRITER; i++) {
        conn *by = &f->conns[(i + 1) % WRITERS];
        const char *day = days[i % 4];
        double c = cost[i];
        bool booked = false, gone = false;
        if (i % 7 == 0) {
            /* in flight at its worst case */
        } else if (i % 11 == 0) {
            const char *p[1] = {tasks[i]};
            send_counted(by, "DELETE FROM attempts WHERE run_id = 'r1' AND task = $1", 1, p);
            gone = true;
        } else if (i % 13 == 0) {
            const char *p[1] = {tasks[i]};
            send_counted(by,
                         "UPDATE attempts SET day = '2026-12-03', month = '2026-12'"
                         " WHERE run_id = 'r1' AND task = $1",
                         1, p);
            day = "2026-12-03";
        } else {
            c = i % 5 == 0 ? 0 : cost[i] * 0.61;
            snprintf(settled[i], sizeof settled[i], "%.17g", c);
            const char *p[5] = {"r1", tasks[i], "1", settled[i], i % 5 == 0 ? "budget" : "ok"};
            memcpy(sp[i], p, sizeof p);
            send_counted(by, SETTLE_SQL, 5, sp[i]);
            booked = true;
        }
        if (gone)
            continue;
        expected_rows++;
        if (strncmp(day, "2026-12", 7) == 0) {
            charged_dec += pusd(c);
            booked_dec += booked ? pusd(c) : 0;
        } else {
            charged_nov += pusd(c);
            booked_nov += booked ? pusd(c) : 0;
        }
    }
    int want = 0;
    for (int w = 0; w < WRITERS; w++)
        want += f->conns[w].sent;
    LOOP_RUN_UNTIL(&f->loop,
                   f->conns[0].completed + f->conns[1].completed + f->conns[2].completed +
                           f->conns[3].completed ==
                       want,
                   120);
    for (int w = 0; w < WRITERS; w++)
        if (f->conns[w].failed)
            fail_msg("settler %d: %s", w, f->conns[w].last_error);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM attempts", 0, NULL), expected_rows);
    /* The totals kept by the triggers equal a recount, period by period. */
    assert_int_equal(query_int(f, k,
                               "WITH r AS ("
                               "  SELECT p, sum(c) AS c, sum(b) AS b FROM ("
                               "    SELECT month AS p, fr_pusd(cost_usd) AS c,"
                               "      CASE WHEN outcome <> 'pending' THEN fr_pusd(cost_usd)"
                               "      ELSE 0 END AS b FROM attempts"
                               "    UNION ALL"
                               "    SELECT day, fr_pusd(cost_usd),"
                               "      CASE WHEN outcome <> 'pending' THEN fr_pusd(cost_usd)"
                               "      ELSE 0 END FROM attempts) x GROUP BY p)"
                               " SELECT count(*) FROM r FULL JOIN period_totals t"
                               "  ON t.period = r.p"
                               " WHERE coalesce(r.c, 0) <> coalesce(t.charged_pusd, 0)"
                               "    OR coalesce(r.b, 0) <> coalesce(t.booked_pusd, 0)",
                               0, NULL),
                     0);
    /* Six periods: two months and four days. */
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM period_totals", 0, NULL), 6);
    /* And the C side's own sums. */
    assert_int_equal(total(f, k, "charged_pusd", "2026-12"), charged_dec);
    assert_int_equal(total(f, k, "booked_pusd", "2026-12"), booked_dec);
    assert_int_equal(total(f, k, "charged_pusd", "2026-11"), charged_nov);
    assert_int_equal(total(f, k, "booked_pusd", "2026-11"), booked_nov);
    /* The days add up to their months. */
    assert_int_equal(query_int(f, k,
                               "SELECT sum(charged_pusd) FROM period_totals"
                               " WHERE period LIKE '2026-12-__'",
                               0, NULL),
                     charged_dec);
}

/* The client's key: a reservation repeated (its reply lost with the
 * connection) is INSERT ... ON CONFLICT DO NOTHING: it books once, and after
 * a settle it changes nothing; a repeated settle changes nothing either. */
static void test_client_key(void **state)
{
    fx *f = *state;
    conn *k = store_with_run(f);
    resv r;
    const char *const *p =
        reserve_params(&r, "r1", "summarise", 2, "gpu", 0.25, "2026-12-02", "o1", "u", "h");
    assert_int_equal(exec_ok(f, k, RESERVE_SQL, 9, p), 1);
    assert_int_equal(exec_ok(f, k, RESERVE_SQL, 9, p), 0);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM attempts", 0, NULL), 1);
    assert_int_equal(total(f, k, "charged_pusd", "2026-12"), 250000000000LL);
    /* Another attempt of the same task is another key. */
    assert_int_equal(reserve(f, k, "r1", "summarise", 3, 0.25, "o1", "u", "h"), 1);
    const char *settle[5] = {"r1", "summarise", "2", "0.125", "ok"};
    assert_int_equal(exec_ok(f, k, SETTLE_SQL, 5, settle), 1);
    assert_int_equal(exec_ok(f, k, RESERVE_SQL, 9, p), 0);
    const char *settle_again[5] = {"r1", "summarise", "2", "0.2", "error"};
    assert_int_equal(exec_ok(f, k, SETTLE_SQL, 5, settle_again), 0);
    fr_pgres *res = query(f, k,
                          "SELECT outcome, cost_usd FROM attempts WHERE run_id = 'r1'"
                          " AND task = 'summarise' AND attempt = 2",
                          0, NULL);
    assert_string_equal(fr_pgres_value(res, 0, 0), "ok");
    assert_string_equal(fr_pgres_value(res, 0, 1), "0.125");
    fr_pgres_free(res);
    assert_int_equal(total(f, k, "charged_pusd", "2026-12-02"), 375000000000LL);
    assert_int_equal(total(f, k, "booked_pusd", "2026-12-02"), 125000000000LL);
}

/* Users and hosts are stored and split the spend; an owner whose expiry
 * has passed holds no slot and no live lease. */
static void test_users_hosts_and_owners(void **state)
{
    fx *f = *state;
    conn *k = open_conn(f, 0, f->url);
    apply_ok(f, k);
    exec_ok(f, k,
            "INSERT INTO owners(id, user_name, host, pid, expires) VALUES"
            " ('ana@gpu1', 'ana', 'gpu1', 4242, now() + interval '5 seconds'),"
            " ('ci@build', 'ci', 'build', 77, now() + interval '5 seconds')",
            0, NULL);
    exec_ok(f, k,
            "INSERT INTO owners(id, user_name, host, pid, started, heartbeat, expires) VALUES"
            " ('bo@gpu2', 'bo', 'gpu2', 9, now() - interval '1 minute',"
            "  now() - interval '10 seconds', now() - interval '5 seconds')",
            0, NULL);
    exec_ok(f, k,
            "INSERT INTO runs(id, workflow, started_at, owner_id, user_name, host) VALUES"
            " ('ra', 'digest', 0, 'ana@gpu1', 'ana', 'gpu1'),"
            " ('rc', 'digest', 0, 'ci@build', 'ci', 'build'),"
            " ('rb', 'triage', 0, 'bo@gpu2', 'bo', 'gpu2')",
            0, NULL);
    exec_ok(f, k, "INSERT INTO endpoints(name) VALUES ('gpu')", 0, NULL);
    struct {
        const char *run, *task, *owner, *user, *host;
        double cost;
    } rows[] = {{"ra", "a1", "ana@gpu1", "ana", "gpu1", 0.5},
                {"ra", "a2", "ana@gpu1", "ana", "gpu1", 0.25},
                {"rc", "c1", "ci@build", "ci", "build", 1.0},
                {"rb", "b1", "bo@gpu2", "bo", "gpu2", 2.0},
                {"rb", "b2", "bo@gpu2", "bo", "gpu2", 4.0}};
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        assert_int_equal(reserve(f, k, rows[i].run, rows[i].task, 1, rows[i].cost, rows[i].owner,
                                 rows[i].user, rows[i].host),
                         1);
    const char *settle[5] = {"ra", "a2", "1", "0.25", "ok"};
    assert_int_equal(exec_ok(f, k, SETTLE_SQL, 5, settle), 1);
    /* The spend split by user and host, from the ledger view. */
    fr_pgres *r = query(f, k,
                        "SELECT user_name, host, workflow, sum(cost_usd)::text FROM ledger"
                        " WHERE month = '2026-12' GROUP BY 1, 2, 3 ORDER BY 1",
                        0, NULL);
    assert_int_equal(fr_pgres_code(r), FR_OK);
    assert_int_equal(fr_pgres_rows(r), 3);
    assert_string_equal(fr_pgres_value(r, 0, 0), "ana");
    assert_string_equal(fr_pgres_value(r, 0, 1), "gpu1");
    assert_string_equal(fr_pgres_value(r, 0, 2), "digest");
    assert_string_equal(fr_pgres_value(r, 0, 3), "0.75");
    assert_string_equal(fr_pgres_value(r, 1, 0), "bo");
    assert_string_equal(fr_pgres_value(r, 1, 1), "gpu2");
    assert_string_equal(fr_pgres_value(r, 1, 3), "6");
    assert_string_equal(fr_pgres_value(r, 2, 0), "ci");
    assert_string_equal(fr_pgres_value(r, 2, 1), "build");
    fr_pgres_free(r);
    /* Slots held on gpu: ana's one in flight and ci's, not the dead bo's two. */
    assert_int_equal(query_int(f, k, "SELECT held FROM in_flight WHERE endpoint = 'gpu'", 0, NULL),
                     2);
    /* The endpoint's row is what a reservation locks. */
    assert_int_equal(
        exec_ok(f, k, "SELECT name FROM endpoints WHERE name = 'gpu' FOR UPDATE", 0, NULL), 1);
    /* Leases of a day and of a month; the dead owner's is not live. */
    exec_ok(f, k,
            "INSERT INTO leases(run_id, period, amount, owner_id, opened_at) VALUES"
            " ('ra', '2026-12', 5, 'ana@gpu1', 0), ('ra', '2026-12-02', 1, 'ana@gpu1', 0),"
            " ('rb', '2026-12', 5, 'bo@gpu2', 0)",
            0, NULL);
    exec_fails(f, k,
               "INSERT INTO leases(run_id, period, amount, owner_id, opened_at) VALUES"
               " ('ra', '2026-12', 1, 'ana@gpu1', 0)",
               0, NULL, "23505");
    assert_int_equal(query_int(f, k,
                               "SELECT count(*) FROM open_leases WHERE live AND"
                               " owner_id = 'ana@gpu1'",
                               0, NULL),
                     2);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM open_leases WHERE NOT live", 0, NULL),
                     1);
    /* A heartbeat brings bo back: expires pushed on by the lease timeout. */
    exec_ok(f, k,
            "UPDATE owners SET heartbeat = now(), expires = now() + interval '5 seconds'"
            " WHERE id = 'bo@gpu2'",
            0, NULL);
    assert_int_equal(query_int(f, k, "SELECT held FROM in_flight WHERE endpoint = 'gpu'", 0, NULL),
                     4);
}

/* The routing history: an attempt settled from in flight adds to its
 * key (endpoint, type, band) and, gated, to its bins; a repeated settle
 * and an attempt in flight add nothing; a cancelled one (no reply) counts
 * as settled with its cost only. */
static void test_routing_history(void **state)
{
    fx *f = *state;
    conn *k = store_with_run(f);
    assert_int_equal(reserve(f, k, "r1", "a", 1, 0.5, "o1", "u", "h"), 1);
    assert_int_equal(reserve(f, k, "r1", "b", 1, 0.25, "o1", "u", "h"), 1);
    exec_ok(f, k,
            "UPDATE attempts SET complexity = 0.45, task_type = 'code' WHERE task IN ('a', 'b')", 0,
            NULL);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM routing_history", 0, NULL), 0);
    static const char settle[] =
        "UPDATE attempts SET outcome = $2, cost_usd = 0.125, latency_ms = 8, ttft_ms = 1024,"
        " output_tokens = 30, score = 0.75, at = 1000 WHERE task = $1 AND outcome = 'pending'";
    const char *pa[2] = {"a", "ok"}, *pb[2] = {"b", "cancelled"};
    assert_int_equal(exec_ok(f, k, settle, 2, pa), 1);
    assert_int_equal(exec_ok(f, k, settle, 2, pa), 0); /* repeated: nothing */
    assert_int_equal(exec_ok(f, k, settle, 2, pb), 1);
    assert_int_equal(
        query_int(f, k,
                  "SELECT count(*) FROM routing_history WHERE endpoint = 'gpu' AND task_type ="
                  " 'code' AND band = 2 AND settled = 2 AND passes = 1 AND fails = 0 AND errors = 0"
                  " AND w_pass = 1 AND w_ref = 1000 AND last_at = 1000 AND score_sum = 0.75"
                  " AND score_n = 1 AND cost_sum = 0.25 AND out_tokens = 30 AND reply_ms = 8",
                  0, NULL),
        1);
    /* 8 ms is bin 12 (4 log2 8), 1024 ms bin 40; the cancelled one has none. */
    assert_int_equal(query_int(f, k,
                               "SELECT count(*) FROM routing_bins WHERE lat_bin = 12"
                               " AND ttft_bin = 40 AND n = 1",
                               0, NULL),
                     1);
    assert_int_equal(query_int(f, k, "SELECT count(*) FROM routing_bins", 0, NULL), 1);
}

int main(void)
{
    PG_SERVER_START_OR_RETURN(&server);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrations_listed),
        cmocka_unit_test_setup_teardown(test_fresh_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_1_migrates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_the_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_mid_migration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eight_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totals_equal_a_recount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_hosts_and_owners, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routing_history, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    pg_server_stop(&server);
    return rc;
}
