/* engine/cache's lookup on both stores, and engine/approval's checkpoint
 * rows on the shared one. On SQLite (a fresh state.db) a lookup answers at
 * once: a hit fills the task's result (its endpoint, text, no cost), a miss
 * and a damaged entry are misses. On PostgreSQL (a real server of the
 * test's own, tests/unit/support/pg_fixture.h) the same lookups wait on the
 * loop and their completion says hit or miss once; a table locked by
 * another session ends as a miss after the lookup's timeout while the loop
 * runs; a lookup cancelled while its answer is in flight is never
 * completed and its late answer touches nothing (the loop still closes);
 * and a checkpoint's pending row, a decision recorded by another process
 * (`flowrun approve`'s write) and a changed output, as the run sees them;
 * a checkpoint's read held up by a lock ends pending after its timeout.
 * The PostgreSQL half is skipped (77) where the server is not installed. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dsl/policy.h"
#include "engine/approval.h"
#include "engine/attempt.h"
#include "engine/cache.h"
#include "engine/graph.h"
#include "engine/results.h"
#include "engine/route.h"
#include "engine/store/pgconn.h"
#include "engine/util/redact.h"
#include "support/engine_fixture.h"
#include "tests/unit/support/loop_harness.h"
#include "tests/unit/support/pg_fixture.h"
#include "tests/unit/support/tmpdir.h"

static pg_server server;
static bool have_pg;

/* Everything a lookup reads, made afresh for each test. */
typedef struct world {
    uv_loop_t loop;
    fr_workflow *wf;
    fr_graph *g;
    fr_endpoints *eps;
    fr_sched *sched;
    fr_budget *budget;
    fr_clock *clock;
    fr_policy *policy;
    fr_router *rt;
    fr_results res;
    uint64_t start_ns;
    unsigned char tried[8][2];
    char *last_error;
    char dir[PATH_MAX];
    fr_store *st;   /* SQLite, in dir */
    fr_pgstore *pg; /* the shared store, when the test opens it */
    fr_pgconn *raw; /* the test's own session: writes rows, holds locks */
    int calls;      /* completions of the lookup */
    bool hit;
} world;

static fr_policy *policy_of(void *ud)
{
    return ((world *)ud)->policy;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    assert_int_equal(uv_loop_init(&w->loop), 0);
    fr_error err = {0};
    setenv(ENGINE_KEY_ENV, "sk-unit-cache-0123456789", 1);
    unsetenv("FLOWRUN_LUA_DIR");
    w->wf = engine_load();
    assert_int_equal(fr_graph_from_workflow(w->wf, &w->g, &err), FR_OK);
    w->eps = fr_endpoints_new(w->wf, false);
    int prio[8], slots[2];
    for (size_t t = 0; t < w->wf->ntasks; t++)
        prio[t] = w->wf->tasks[t].priority;
    for (size_t e = 0; e < 2; e++)
        slots[e] = w->wf->endpoints[e].max_parallel;
    w->sched = fr_sched_new(w->g, prio, 2, slots);
    w->budget = fr_budget_new(false, 0, false, 0);
    w->clock = fr_clock_new(NULL);
    char *path = NULL;
    assert_int_equal(fr_policy_resolve("cost", NULL, &path, &err), FR_OK);
    assert_int_equal(fr_policy_load(path, NULL, 1, &w->policy, &err), FR_OK);
    free(path);
    fr_results_init(&w->res, w->wf, w->g);
    fr_route_env env = {.wf = w->wf,
                        .eps = w->eps,
                        .sched = w->sched,
                        .budget = w->budget,
                        .clock = w->clock,
                        .start_ns = &w->start_ns,
                        .policy = policy_of,
                        .policy_ud = w};
    w->rt = fr_router_new(&env);
    snprintf(w->dir, sizeof w->dir, "%s/fr_cache_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(w->dir));
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", w->dir);
    assert_int_equal(fr_store_open(db, &w->st, &err), FR_OK);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    fr_pgstore_close(w->pg);
    fr_pgconn_close(w->raw);
    char why[384];
    bool ok = loop_drain(&w->loop, 15, why, sizeof why);
    fr_store_close(w->st);
    tmpdir_remove(w->dir);
    free(w->last_error);
    fr_router_free(w->rt);
    fr_results_close(&w->res);
    fr_policy_free(w->policy);
    fr_clock_free(w->clock);
    fr_budget_free(w->budget);
    fr_sched_free(w->sched);
    fr_endpoints_free(w->eps);
    fr_graph_free(w->g);
    fr_workflow_free(w->wf);
    free(w);
    fr_redact_clear();
    if (!ok)
        fail_msg("%s", why);
    return 0;
}

/* Task `name`'s routing record before its first attempt. */
static fr_route_task task(world *w, const char *name)
{
    size_t t = engine_task(w->wf, name);
    return (fr_route_task){.idx = t,
                           .res = &w->res.tasks[t],
                           .tried = w->tried[t],
                           .retry_ep = -1,
                           .reason = "first",
                           .est_input = 10,
                           .worst_input = 40};
}

/* The key (owned) of task `name`'s request with `prompt` to endpoint `ep`,
 * as a run computes it. */
static char *key_of(world *w, const char *name, const char *ep, const char *prompt)
{
    size_t t = engine_task(w->wf, name), e = engine_ep(w->wf, ep);
    fr_call call = fr_attempt_call(w->wf, t, w->eps, e, prompt, NULL);
    return fr_cache_key(w->wf->name, name, ep, fr_ep_protocol(w->eps, e), &call);
}

static fr_cache_ctx ctx(world *w, int timeout_ms)
{
    return (fr_cache_ctx){.store = w->st,
                          .pg = w->pg,
                          .loop = w->pg ? &w->loop : NULL,
                          .timeout_ms = timeout_ms,
                          .clock = w->clock,
                          .wf = w->wf,
                          .eps = w->eps,
                          .router = w->rt};
}

static void on_looked_up(void *ud, bool hit)
{
    world *w = ud;
    w->calls++;
    w->hit = hit;
}

/* Starts task `rt`'s lookup with `prompt`. */
static fr_cache_status start(world *w, fr_route_task *rt, const char *prompt, int timeout_ms,
                             fr_cache_wait **wait)
{
    fr_cache_ctx c = ctx(w, timeout_ms);
    w->calls = 0;
    w->hit = false;
    return fr_cache_lookup_start(&c, rt, prompt, &w->last_error, on_looked_up, w, wait);
}

/* Stores `text` as the answer of task `name` on endpoint `ep`, in the store
 * the world reads (the shared one: queued, flushed and waited for). */
static void store_answer(world *w, const char *name, const char *ep, const char *prompt,
                         const char *text)
{
    char *key = key_of(w, name, ep, prompt);
    fr_reply r = engine_reply(text, FR_FINISH_STOP, NULL);
    r.model = fr_xstrdup("big");
    r.usage.input = 12;
    r.usage.output = 5;
    fr_error err = {0};
    assert_int_equal(fr_cache_put(w->st, w->pg, key, ep, &r, &err), FR_OK);
    if (w->pg) {
        fr_pgstore_flush(w->pg);
        LOOP_RUN_UNTIL(&w->loop, fr_pgstore_queued(w->pg) == 0 && fr_pgstore_in_flight(w->pg) == 0,
                       30);
    }
    fr_reply_close(&r);
    free(key);
}

/* ---- the shared store ---- */

static void on_open(void *ud, int rc, const fr_error *err)
{
    int *out = ud;
    *out = rc == FR_OK ? 1 : -1;
    if (err)
        print_error("open: %s\n", err->msg);
}

static void open_pg(world *w, int lock_timeout_ms)
{
    fr_pgstore_opts o = {.lock_timeout_ms = lock_timeout_ms};
    int opened = 0;
    fr_error err = {0};
    assert_int_equal(fr_pgstore_open(&w->loop, server.url, &o, on_open, &opened, &w->pg, &err),
                     FR_OK);
    LOOP_RUN_UNTIL(&w->loop, opened != 0, 30);
    assert_int_equal(opened, 1);
}

typedef struct rawres {
    fr_pgres *res;
} rawres;

static void on_raw(void *ud, fr_pgres *r)
{
    ((rawres *)ud)->res = r;
}

/* Runs `n` statements of `stmts` as one transaction on the test's session
 * (a BEGIN without COMMIT leaves it open, its locks held). */
static void raw_run(world *w, size_t n, fr_pgstmt *stmts)
{
    fr_error err = {0};
    if (!w->raw)
        assert_int_equal(fr_pgconn_open(&w->loop, server.url, NULL, NULL, &w->raw, &err), FR_OK);
    rawres r = {0};
    assert_int_equal(fr_pgconn_transaction(w->raw, n, stmts, on_raw, &r), FR_OK);
    LOOP_RUN_UNTIL(&w->loop, r.res != NULL, 30);
    if (fr_pgres_code(r.res) != FR_OK)
        fail_msg("%s: %s", stmts[n - 1].sql, fr_pgres_message(r.res));
    fr_pgres_free(r.res);
}

static void raw_sql(world *w, const char *sql)
{
    fr_pgstmt s = {sql, 0, NULL};
    raw_run(w, 1, &s);
}

/* Runs the loop until the lookup's completion (or fails after 30 s). */
static void wait_done(world *w)
{
    LOOP_RUN_UNTIL(&w->loop, w->calls > 0, 30);
    loop_spin(&w->loop, 3); /* never twice */
    assert_int_equal(w->calls, 1);
}

#define NEED_PG()                                                                                  \
    do {                                                                                           \
        if (!have_pg)                                                                              \
            skip();                                                                                \
    } while (0)

/* ---- SQLite: answered at once ---- */

static void test_sqlite_hit_and_miss(void **state)
{
    world *w = *state;
    store_answer(w, "plain", "cloud", "Say hello.", "Hello from the cache.");
    fr_route_task rt = task(w, "plain");
    fr_cache_wait *wait = (fr_cache_wait *)&wait; /* set to NULL by the call */
    assert_int_equal(start(w, &rt, "Say hello.", 0, &wait), FR_CACHE_HIT);
    assert_null(wait);
    assert_int_equal(w->calls, 0); /* answered now, no completion */
    assert_true(rt.res->cached);
    assert_int_equal(rt.res->endpoint, (long)engine_ep(w->wf, "cloud"));
    assert_string_equal(rt.res->reply.text, "Hello from the cache.");
    assert_int_equal(rt.res->usage.input, 12);
    assert_true(rt.res->latency_ms == 0);
    /* Another prompt is another request: a miss. */
    fr_route_task other = task(w, "hard");
    assert_int_equal(start(w, &other, "Prove it.", 0, &wait), FR_CACHE_MISS);
    assert_false(other.res->cached);
}

static void test_sqlite_damaged_is_a_miss(void **state)
{
    world *w = *state;
    /* "shaped" asks for an object with an integer n: text that is no JSON
     * no longer fits, and a stored reply that does not fit is a miss. */
    store_answer(w, "shaped", "local", "A number.", "not json at all");
    fr_route_task rt = task(w, "shaped");
    fr_cache_wait *wait = NULL;
    assert_int_equal(start(w, &rt, "A number.", 0, &wait), FR_CACHE_MISS);
    assert_false(rt.res->cached);
    assert_non_null(w->last_error);
    assert_non_null(strstr(w->last_error, "a cached reply"));
    assert_int_equal(rt.tried[engine_ep(w->wf, "local")], 0); /* stale: asked again */
}

/* ---- PostgreSQL: answered on the loop ---- */

static void test_pg_hit(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 0);
    store_answer(w, "plain", "cloud", "Say hello.", "Hello, shared.");
    fr_route_task rt = task(w, "plain");
    fr_cache_wait *wait = NULL;
    assert_int_equal(start(w, &rt, "Say hello.", 5000, &wait), FR_CACHE_WAITING);
    assert_non_null(wait);
    assert_int_equal(w->calls, 0); /* never before a later turn */
    assert_false(rt.res->cached);
    wait_done(w);
    assert_true(w->hit);
    assert_true(rt.res->cached);
    assert_int_equal(rt.res->endpoint, (long)engine_ep(w->wf, "cloud"));
    assert_string_equal(rt.res->reply.text, "Hello, shared.");
    assert_string_equal(rt.res->reply.model, "big");
    assert_int_equal(rt.res->usage.output, 5);
}

static void test_pg_miss_and_damaged(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 0);
    fr_route_task rt = task(w, "hard");
    fr_cache_wait *wait = NULL;
    assert_int_equal(start(w, &rt, "Prove it.", 5000, &wait), FR_CACHE_WAITING);
    wait_done(w);
    assert_false(w->hit);
    assert_false(rt.res->cached);
    /* A row whose JSON does not parse (another flowrun's, or a damaged
     * one), under the very key the task asks (the server is the whole
     * test's: a prompt of this test's own): a miss, never a crash. */
    char *key = key_of(w, "plain", "local", "Say hello, damaged.");
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO cache (key, endpoint, text, json, created_at) "
             "VALUES ('%s', 'local', 'x', '{not json', 0)",
             key);
    free(key);
    raw_sql(w, sql);
    fr_route_task plain = task(w, "plain");
    assert_int_equal(start(w, &plain, "Say hello, damaged.", 5000, &wait), FR_CACHE_WAITING);
    wait_done(w);
    assert_false(w->hit);
    assert_false(plain.res->cached);
    /* A schema's task whose stored text no longer fits: a miss too. */
    store_answer(w, "shaped", "local", "A number, shared.", "not json at all");
    fr_route_task shaped = task(w, "shaped");
    assert_int_equal(start(w, &shaped, "A number, shared.", 5000, &wait), FR_CACHE_WAITING);
    wait_done(w);
    assert_false(w->hit);
    assert_non_null(strstr(w->last_error, "a cached reply"));
}

/* The cache table locked by another session: the lookup ends as a miss
 * after its timeout, long before the store's lock timeout, and the loop
 * ran meanwhile; the late answer, once the lock goes, touches nothing. */
static void test_pg_timeout_is_a_miss(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 20000);
    store_answer(w, "plain", "cloud", "Say hello.", "Too late.");
    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL},
                         {"LOCK TABLE cache IN ACCESS EXCLUSIVE MODE", 0, NULL}};
    raw_run(w, 2, hold);
    fr_route_task rt = task(w, "plain");
    fr_cache_wait *wait = NULL;
    uint64_t t0 = uv_hrtime();
    assert_int_equal(start(w, &rt, "Say hello.", 300, &wait), FR_CACHE_WAITING);
    wait_done(w);
    double ms = (double)(uv_hrtime() - t0) / 1e6;
    assert_false(w->hit);
    assert_false(rt.res->cached);
    assert_true(ms < 5000);                       /* the lookup's timeout, not the lock's 20 s */
    assert_true(fr_pgstore_in_flight(w->pg) > 0); /* its answer is still due */
    raw_sql(w, "COMMIT");
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_in_flight(w->pg) == 0, 30);
    loop_spin(&w->loop, 3);
    assert_int_equal(w->calls, 1);
    assert_false(rt.res->cached);
}

static void on_idle(uv_timer_t *h)
{
    *(bool *)h->data = true;
}

/* Cancelled while its answer is in flight: no completion, the task's result
 * untouched when the answer comes; and cancelled while the table is locked
 * (its timer and its answer both outstanding): the same, and the loop
 * closes (the teardown's drain). */
static void test_pg_cancel_in_flight(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 20000);
    store_answer(w, "plain", "cloud", "Say hello.", "Nobody reads this.");
    fr_route_task rt = task(w, "plain");
    fr_cache_wait *wait = NULL;
    assert_int_equal(start(w, &rt, "Say hello.", 5000, &wait), FR_CACHE_WAITING);
    fr_cache_wait_cancel(wait);
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_in_flight(w->pg) == 0, 30);
    loop_spin(&w->loop, 3);
    assert_int_equal(w->calls, 0);
    assert_false(rt.res->cached);
    assert_null(rt.res->reply.text);

    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL},
                         {"LOCK TABLE cache IN ACCESS EXCLUSIVE MODE", 0, NULL}};
    raw_run(w, 2, hold);
    assert_int_equal(start(w, &rt, "Say hello.", 200, &wait), FR_CACHE_WAITING);
    loop_spin(&w->loop, 2);
    fr_cache_wait_cancel(wait);
    uv_timer_t idle;
    uv_timer_init(&w->loop, &idle);
    bool fired = false;
    idle.data = &fired;
    uv_timer_start(&idle, on_idle, 500, 0);
    LOOP_RUN_UNTIL(&w->loop, fired, 30); /* past the lookup's own timeout */
    uv_close((uv_handle_t *)&idle, NULL);
    loop_spin(&w->loop, 1);
    raw_sql(w, "COMMIT");
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_in_flight(w->pg) == 0, 30);
    loop_spin(&w->loop, 3);
    assert_int_equal(w->calls, 0);
    assert_false(rt.res->cached);
}

/* ---- approvals on the shared store, the run's side ---- */

typedef struct decided {
    int calls, rc;
} decided;

static void on_decided(void *ud, size_t task, int rc, const fr_error *err)
{
    (void)task;
    (void)err;
    decided *d = ud;
    d->calls++;
    d->rc = rc;
}

static void on_put(void *ud, int rc, const fr_error *err)
{
    (void)err;
    int *failed = ud;
    if (rc != FR_OK)
        (*failed)++;
}

static double raw_count(world *w, const char *sql)
{
    fr_error err = {0};
    if (!w->raw)
        assert_int_equal(fr_pgconn_open(&w->loop, server.url, NULL, NULL, &w->raw, &err), FR_OK);
    rawres r = {0};
    assert_int_equal(fr_pgconn_query(w->raw, sql, 0, NULL, on_raw, &r), FR_OK);
    LOOP_RUN_UNTIL(&w->loop, r.res != NULL, 30);
    assert_int_equal(fr_pgres_code(r.res), FR_OK);
    const char *v = fr_pgres_value(r.res, 0, 0);
    double n = v ? strtod(v, NULL) : 0;
    fr_pgres_free(r.res);
    return n;
}

/* Decides `task` of `a` for output `text` on the shared store and waits. */
static void decide(world *w, fr_approvals *a, size_t task, const char *text, fr_approval *out)
{
    fr_reply r = engine_reply(text, FR_FINISH_STOP, NULL);
    decided d = {0};
    bool waiting = false;
    fr_error err = {0};
    assert_int_equal(
        fr_approvals_decide_shared(a, task, &r, false, out, on_decided, &d, &waiting, &err), FR_OK);
    assert_true(waiting);
    assert_int_equal(d.calls, 0);
    LOOP_RUN_UNTIL(&w->loop, d.calls == 1, 30);
    assert_int_equal(d.rc, FR_OK);
    fr_pgstore_flush(w->pg);
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_queued(w->pg) == 0 && fr_pgstore_in_flight(w->pg) == 0, 30);
    fr_reply_close(&r);
}

static void on_recorded(void *ud, int rc, const fr_error *err)
{
    (void)err;
    *(int *)ud = rc == FR_OK ? 1 : -1;
}

static void test_pg_approvals(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 0);
    static fr_task_spec specs[2] = {{.name = "design", .approve = true}, {.name = "build"}};
    static fr_workflow wf = {.name = "wf-shared", .tasks = specs, .ntasks = 2};
    int failed = 0;
    fr_approvals_opts o = {.wf = &wf,
                           .run_id = "r-shared",
                           .out_dir = "out",
                           .pg = w->pg,
                           .pg_put_done = on_put,
                           .pg_put_ud = &failed,
                           .loop = &w->loop};
    fr_approvals *a = fr_approvals_new(&o);
    fr_approval out = {0};
    /* No row: a pending one is recorded, as on SQLite. */
    decide(w, a, 0, "the design", &out);
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    assert_int_equal(failed, 0);
    assert_true(raw_count(w, "SELECT count(*) FROM approvals WHERE workflow = 'wf-shared' AND "
                             "task = 'design' AND state = 'pending' AND run_id = 'r-shared'") == 1);
    /* Another process approves it (the CLI's write): the next run sees it. */
    int rec = 0;
    assert_int_equal(fr_pgstore_approval_decide(w->pg, "wf-shared", "design", "approved", "ana",
                                                "looks right", on_recorded, &rec),
                     FR_OK);
    LOOP_RUN_UNTIL(&w->loop, rec != 0, 30);
    assert_int_equal(rec, 1);
    decide(w, a, 0, "the design", &out);
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    assert_string_equal(out.by, "ana");
    assert_string_equal(out.note, "looks right");
    /* A changed output is asked again: pending. */
    decide(w, a, 0, "another design", &out);
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    /* --approve: decided at once, the row queued. */
    const char *approve[] = {"design"};
    o.approve = approve;
    o.napprove = 1;
    fr_approvals *b = fr_approvals_new(&o);
    fr_reply r = engine_reply("a third design", FR_FINISH_STOP, NULL);
    decided d = {0};
    bool waiting = true;
    fr_error err = {0};
    assert_int_equal(
        fr_approvals_decide_shared(b, 0, &r, false, &out, on_decided, &d, &waiting, &err), FR_OK);
    assert_false(waiting);
    assert_int_equal(out.state, FR_APPROVAL_APPROVED);
    fr_pgstore_flush(w->pg);
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_queued(w->pg) == 0 && fr_pgstore_in_flight(w->pg) == 0, 30);
    assert_true(raw_count(w, "SELECT count(*) FROM approvals WHERE workflow = 'wf-shared' AND "
                             "state = 'approved' AND note = '--approve'") == 1);
    /* The set freed with a read in flight: its completion is dropped. */
    o.approve = NULL;
    o.napprove = 0;
    fr_approvals *c = fr_approvals_new(&o);
    fr_approval out2 = {0};
    assert_int_equal(
        fr_approvals_decide_shared(c, 0, &r, false, &out2, on_decided, &d, &waiting, &err), FR_OK);
    assert_true(waiting);
    fr_approvals_free(c);
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_in_flight(w->pg) == 0, 30);
    loop_spin(&w->loop, 3);
    assert_int_equal(d.calls, 0);
    assert_int_equal(failed, 0);
    fr_reply_close(&r);
    fr_approval_clear(&out);
    fr_approval_clear(&out2);
    fr_approvals_free(a);
    fr_approvals_free(b);
}

/* The approvals table locked by another session: the checkpoint's read
 * ends after its timeout, pending and nothing recorded, while the loop
 * runs; the late answer, once the lock goes, is dropped. */
static void test_pg_approval_timeout(void **state)
{
    NEED_PG();
    world *w = *state;
    open_pg(w, 20000);
    static fr_task_spec specs[1] = {{.name = "review", .approve = true}};
    static fr_workflow wf = {.name = "wf-locked", .tasks = specs, .ntasks = 1};
    int failed = 0;
    fr_approvals_opts o = {.wf = &wf,
                           .run_id = "r-locked",
                           .out_dir = "out",
                           .pg = w->pg,
                           .pg_put_done = on_put,
                           .pg_put_ud = &failed,
                           .loop = &w->loop,
                           .read_timeout_ms = 300};
    fr_approvals *a = fr_approvals_new(&o);
    fr_pgstmt hold[2] = {{"BEGIN", 0, NULL},
                         {"LOCK TABLE approvals IN ACCESS EXCLUSIVE MODE", 0, NULL}};
    raw_run(w, 2, hold);
    fr_reply r = engine_reply("the review", FR_FINISH_STOP, NULL);
    fr_approval out = {0};
    decided d = {0};
    bool waiting = false;
    fr_error err = {0};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(
        fr_approvals_decide_shared(a, 0, &r, false, &out, on_decided, &d, &waiting, &err), FR_OK);
    assert_true(waiting);
    LOOP_RUN_UNTIL(&w->loop, d.calls == 1, 30);
    assert_true((double)(uv_hrtime() - t0) / 1e6 < 5000); /* not the lock's 20 s */
    assert_int_equal(d.rc, FR_ETIMEDOUT);
    assert_int_equal(out.state, FR_APPROVAL_PENDING);
    raw_sql(w, "COMMIT");
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_in_flight(w->pg) == 0, 30);
    fr_pgstore_flush(w->pg);
    LOOP_RUN_UNTIL(&w->loop, fr_pgstore_queued(w->pg) == 0 && fr_pgstore_in_flight(w->pg) == 0, 30);
    loop_spin(&w->loop, 3);
    assert_int_equal(d.calls, 1);
    assert_int_equal(failed, 0);
    assert_true(raw_count(w, "SELECT count(*) FROM approvals WHERE workflow = 'wf-locked'") == 0);
    fr_reply_close(&r);
    fr_approval_clear(&out);
    fr_approvals_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sqlite_hit_and_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sqlite_damaged_is_a_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_hit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_miss_and_damaged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_timeout_is_a_miss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_cancel_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_approvals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pg_approval_timeout, setup, teardown),
    };
    (void)pg_server_restart; /* the fixture's, unused here */
    int rc = pg_server_start(&server);
    if (rc == PG_SKIP)
        printf("SKIP: no PostgreSQL server to test against (bash tests/deps.sh): only the "
               "SQLite lookups run\n");
    else if (rc != 0)
        fprintf(stderr, "could not start the test's PostgreSQL server\n");
    have_pg = rc == 0;
    int failures = cmocka_run_group_tests(tests, NULL, NULL);
    pg_server_stop(&server);
    if (failures == 0 && rc == PG_SKIP)
        return PG_SKIP;
    return failures || rc != 0 ? 1 : 0;
}
