/* Unit tests of engine/store/'s leases of the monthly and daily caps and
 * requests in flight: month and day totals, leases in one process and across processes, dead
 * holders reclaimed, reserving and settling, and crashed runs. Other
 * processes are real forked children, each with its own store opened after
 * the fork (a store, like a SQLite connection, never crosses a fork); the
 * parent holds no open store while it forks. */

#include "tests/unit/support/store_fixture.h"

/* Checks how run `run`'s lease was closed and what it spent, as
 * "released 0.5" or "reclaimed 0.1" (both borrowed). */
static void assert_lease_closed(const fx *f, const char *run, const char *want)
{
    char sql[160], buf[64];
    snprintf(sql, sizeof sql,
             "SELECT closed_by || ' ' || spent_usd FROM leases WHERE run_id = '%s'", run);
    assert_string_equal(raw_text(f->path, sql, buf, sizeof buf), want);
}

/* ---- leases --------------------------------------------------------------------- */

/* A booking reads its month's total, every run's, in the same transaction:
 * what the monthly alert compares; the month's spend is every run's
 * attempts, not leases. */
static void test_month_totals(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *b = open_ok(f->path); /* another connection: another run */
    fr_store_set_clock(f->st, utc(2026, 11, 5, 0, 0, 0));
    fr_store_set_clock(b, utc(2026, 11, 5, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "wf", NULL, &e_));
    fr_attempt_rec a = {.run_id = "r1",
                        .task = "t",
                        .endpoint = "e",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = 0.009};
    double total = -1, spent = -1;
    assert_ok(fr_store_add_attempt_total(f->st, &a, &total, &e_));
    assert_usd(total, 0.009);
    a.run_id = "r2";
    assert_ok(fr_store_add_attempt_total(b, &a, &total, &e_));
    assert_usd(total, 0.018);
    assert_usd(lease(b, "2026-11", 0.06, 0.02, "r2"), 0.02);
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.018); /* the lease is not spend */
    assert_ok(fr_store_month_spent(f->st, "2026-10", &spent, &e_));
    assert_usd(spent, 0);
    /* A bad record books nothing and leaves the total alone. */
    fr_error err = {0};
    a.cost_usd = -1;
    assert_int_equal(fr_store_add_attempt_total(f->st, &a, &total, &err), FR_EINVAL);
    a.cost_usd = 0.001;
    assert_int_equal(fr_store_add_attempt_total(f->st, &a, NULL, &err), FR_EINVAL);
    assert_int_equal(fr_store_month_spent(f->st, "2026-13", &spent, &err), FR_EINVAL);
    assert_ok(fr_store_month_spent(b, "2026-11", &spent, &e_));
    assert_usd(spent, 0.018);
    fr_store_close(b);
}

/* Returns what period `period` (a month or a day) is charged. */
static double period_spent(fr_store *st, const char *period)
{
    double spent = -1;
    assert_ok(fr_store_month_spent(st, period, &spent, &e_));
    return spent;
}

/* A day and a month leased by two runs, across midnight and a month's end:
 * an attempt counts in the day and the month it was reserved in (settled
 * after midnight, it stays in the old ones), the new day and month are
 * leased from nothing, and each lease keeps what its run spent in its own
 * period. */
static void test_day_and_month_leases_across_midnight(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *a = f->st;
    fr_store *b = open_ok(f->path);
    fr_store_set_clock(a, utc(2026, 11, 30, 23, 59, 50));
    fr_store_set_clock(b, utc(2026, 11, 30, 23, 59, 50));
    char day[FR_STORE_DAY_LEN];
    assert_string_equal(fr_store_day(a, day), "2026-11-30");
    assert_ok(fr_store_run_begin(a, "r1", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "wf", NULL, &e_));
    assert_usd(lease(a, "2026-11-30", 1.0, 0.6, "r1"), 0.6);
    assert_usd(lease(b, "2026-11-30", 1.0, 0.6, "r2"), 0.4); /* the day's cap is shared */
    assert_usd(lease(a, "2026-11", 10, 2, "r1"), 2);         /* the month's is another */
    assert_usd(lease(b, "2026-11", 10, 2, "r2"), 2);
    fr_attempt_rec r = {.run_id = "r1",
                        .task = "t",
                        .endpoint = "e",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = 0.5};
    assert_ok(fr_store_add_attempt(a, &r, &e_));
    long long id = 0;
    r.run_id = "r2";
    r.cost_usd = 0.3; /* its worst case */
    assert_ok(fr_store_reserve(b, &r, &id, &e_));
    assert_usd(period_spent(a, "2026-11-30"), 0.8);
    assert_usd(period_spent(a, "2026-11"), 0.8);

    /* Midnight, and the month's end. */
    fr_store_set_clock(a, utc(2026, 12, 1, 0, 0, 5));
    fr_store_set_clock(b, utc(2026, 12, 1, 0, 0, 5));
    assert_string_equal(fr_store_day(a, day), "2026-12-01");
    r.cost_usd = 0.2;
    assert_ok(fr_store_settle(b, id, &r, NULL, &e_)); /* stays in its day and month */
    r.run_id = "r1";
    r.attempt = 2;
    r.cost_usd = 0.1;
    assert_ok(fr_store_add_attempt(a, &r, &e_));
    assert_usd(period_spent(a, "2026-11-30"), 0.7);
    assert_usd(period_spent(a, "2026-11"), 0.7);
    assert_usd(period_spent(a, "2026-12-01"), 0.1);
    assert_usd(period_spent(a, "2026-12"), 0.1);
    /* The new day has its own cap: only its spend and its leases count. */
    assert_usd(lease(b, "2026-12-01", 1.0, 1.0, "r2"), 0.9);
    assert_usd(lease(a, "2026-12-01", 1.0, 0.5, "r1"), 0);
    /* The old day stays used up: spent 0.7, the rest held by the two
     * leases (r1's 0.6 less its 0.5, r2's 0.4 less its 0.2). */
    assert_ok(fr_store_run_begin(a, "r3", "wf", NULL, &e_));
    assert_usd(lease(a, "2026-11-30", 1.0, 0.1, "r3"), 0);
    /* Each lease keeps what its run spent in its own period. */
    assert_ok(fr_store_release(a, "r1", &e_));
    assert_usd(raw_num(f->path, "SELECT spent_usd FROM leases WHERE run_id = 'r1'"
                                " AND month = '2026-11-30'"),
               0.5);
    assert_usd(raw_num(f->path, "SELECT spent_usd FROM leases WHERE run_id = 'r1'"
                                " AND month = '2026-11'"),
               0.5);
    assert_usd(raw_num(f->path, "SELECT spent_usd FROM leases WHERE run_id = 'r1'"
                                " AND month = '2026-12-01'"),
               0.1);
    /* A period is a month or a day, nothing else. */
    fr_error err = {0};
    double granted = 0;
    assert_int_equal(fr_store_lease(a, "2026-12-32", 1, 1, "r1", &granted, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, "2026-13-01", 1, 1, "r1", &granted, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, "2026-12-1", 1, 1, "r1", &granted, &err), FR_EINVAL);
    assert_int_equal(fr_store_month_spent(a, "2026/12/01", &granted, &err), FR_EINVAL);
    fr_store_close(b);
}

static void test_leases_in_one_process(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_store *a = f->st;
    fr_store *b = open_ok(f->path); /* a second connection, as another module might hold */
    const char *m = "2026-11";
    fr_store_set_clock(a, utc(2026, 11, 5, 0, 0, 0));
    fr_store_set_clock(b, utc(2026, 11, 5, 0, 0, 0));
    assert_ok(fr_store_run_begin(a, "r1", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(b, "r2", "wf", NULL, &e_));

    assert_usd(lease(a, m, 1.0, 0.6, "r1"), 0.6);
    assert_usd(lease(b, m, 1.0, 0.6, "r2"), 0.4);
    assert_usd(lease(a, m, 1.0, 0.1, "r1"), 0);
    assert_usd(lease(a, m, 1.0, 0, "r1"), 0);
    /* r1 spends inside its lease: nothing more is free. */
    book(a, "r1", "t", "sonnet", "cloud", 0.5, 1, 1, 0, false, "ok", NULL);
    assert_usd(lease(b, m, 1.0, 0.5, "r2"), 0);
    /* This process's own leases are not "others'". */
    assert_usd(month_used(a, m), 0.5);
    /* Another month is untouched. */
    assert_usd(lease(a, "2026-12", 1.0, 0.3, "r1"), 0.3);
    assert_usd(month_used(a, "2026-12"), 0);

    /* r1 ends: the 0.1 it did not spend is free again, its 0.5 stays spent. */
    assert_ok(fr_store_release(a, "r1", &e_));
    assert_usd(lease(b, m, 1.0, 0.5, "r2"), 0.1);
    book(b, "r2", "t", "sonnet", "cloud", 0.3, 1, 1, 0, false, "ok", NULL);
    assert_ok(fr_store_release(b, "r2", &e_));
    assert_ok(fr_store_run_begin(a, "r3", "wf", NULL, &e_));
    assert_usd(lease(a, m, 1.0, 1.0, "r3"), 0.2);
    /* A lower cap than what is spent grants nothing, never a negative. */
    assert_usd(lease(a, m, 0.5, 1.0, "r3"), 0);
    /* The release also closed r1's December lease. */
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE run_id = 'r1'"
                                " AND closed_at IS NULL"),
               0);
    assert_usd(raw_num(f->path, "SELECT amount FROM leases WHERE run_id = 'r2'"), 0.5);

    fr_error err = {0};
    double g = -1;
    assert_int_equal(fr_store_lease(a, m, 1.0, -0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, NAN, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, INFINITY, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, "11/2026", 1.0, 0.1, "r3", &g, &err), FR_EINVAL);
    assert_int_equal(fr_store_lease(a, m, 1.0, 0.1, "ghost", &g, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "not begun"));
    assert_usd(g, -1);
    assert_int_equal(fr_store_month_used(a, "2026-00", &g, &err), FR_EINVAL);
    /* Releasing a run without a lease is fine. */
    assert_ok(fr_store_release(a, "r1", &e_));
    assert_ok(fr_store_release(a, "never", &e_));
    fr_store_close(b);
}

static void test_release_frees_unspent(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    const char *m = "2027-02";
    fr_store_set_clock(f->st, utc(2027, 2, 10, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "a", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "b", "wf", NULL, &e_));
    assert_usd(lease(f->st, m, 2.0, 1.6, "a"), 1.6);
    book(f->st, "a", "t", "e", "cloud", 0.3, 1, 1, 0, false, "ok", NULL);
    book(f->st, "a", "t", "e", "cloud", 0.2, 1, 1, 0, false, "error", "HTTP 500");
    assert_usd(lease(f->st, m, 2.0, 2.0, "b"), 0.4);
    assert_ok(fr_store_release(f->st, "a", &e_));
    assert_usd(lease(f->st, m, 2.0, 2.0, "b"), 1.1);
    assert_lease_closed(f, "a", "released 0.5");
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-02'"),
               0.5);
}

/* A child that leases, books, reports and then waits to be told to exit. */
static void child_lease_and_hold(const char *path, time_t clock, const char *run, double cap,
                                 double want, double spend, int ready_fd, int hold_fd)
{
    fr_store *st = NULL;
    double g = 0;
    fr_attempt_rec a = {.run_id = run,
                        .task = "t",
                        .endpoint = "sonnet",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = spend};
    char month[FR_STORE_MONTH_LEN];
    if (fr_store_open(path, &st, NULL) != FR_OK)
        _exit(10);
    fr_store_set_clock(st, clock);
    fr_store_month(st, month);
    if (fr_store_run_begin(st, run, "wf", NULL, NULL) != FR_OK ||
        fr_store_lease(st, month, cap, want, run, &g, NULL) != FR_OK ||
        fr_store_add_attempt(st, &a, NULL) != FR_OK)
        _exit(11);
    if (write(ready_fd, &g, sizeof g) != sizeof g)
        _exit(12);
    wait_eof(hold_fd); /* holds its lease until it is killed */
    _exit(13);
}

static void test_lease_of_dead_process_reclaimed(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    /* The database exists before the fork; no store is open across it. */
    fr_store_close(open_ok(f->path));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        child_lease_and_hold(f->path, clock, "child", 1.0, 0.5, 0.1, ready[1], hold[0]);
    }
    close(ready[1]);
    close(hold[0]);
    double child_granted = 0;
    assert_int_equal(read(ready[0], &child_granted, sizeof child_granted),
                     (ssize_t)sizeof child_granted);
    assert_usd(child_granted, 0.5);

    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "parent", "wf", NULL, &e_));
    /* The child is alive: its lease counts in full (0.1 spent + 0.4 held). */
    assert_usd(month_used(f->st, m), 0.5);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0.5);
    /* A live process's run cannot be leased for from here. */
    fr_error err = {0};
    double g = -1;
    assert_int_equal(fr_store_lease(f->st, m, 1.0, 0.1, "child", &g, &err), FR_EINVAL);
    assert_non_null(strstr(err.msg, "another process"));

    /* The child crashes without releasing. As a zombie (not yet reaped) it
     * is already dead to the store. */
    assert_int_equal(kill(pid, SIGKILL), 0);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    assert_int_equal(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0);
    assert_usd(month_used(f->st, m), 0.1);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0.4);
    assert_int_equal(reap(pid), KILLED);
    close(hold[1]);
    close(ready[0]);

    assert_lease_closed(f, "child", "reclaimed 0.1");
    /* What the child spent stays in the ledger. */
    assert_usd(raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE run_id = 'child'"),
               0.1);
    assert_usd(lease(f->st, m, 1.0, 1.0, "parent"), 0);
}

/* An attempt in flight is charged its worst case from the moment it is
 * booked until it settles to what it cost; the monthly alert's total counts
 * only settled attempts; an attempt settles once. */
static void test_reserve_and_settle(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "r1", "wf", NULL, &e_));
    book(f->st, "r1", "a", "cloud", "cloud", 0.1, 10, 10, 0, false, "ok", NULL);
    long long id = reserve(f->st, "r1", "b", 0.25);
    double spent = -1;
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.35);
    /* A lease sees the charge in flight as spent. */
    assert_usd(lease(f->st, m, 1.0, 1.0, "r1"), 0.65);
    fr_attempt_rec a = {.run_id = "r1",
                        .task = "b",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .input = 7,
                        .output = 3,
                        .cost_usd = 0.05,
                        .latency_ms = 40};
    double total = -1;
    assert_ok(fr_store_settle(f->st, id, &a, &total, &e_));
    assert_usd(total, 0.15);
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.15);
    assert_usd(raw_num(f->path, "SELECT output_tokens FROM attempts WHERE task = 'b'"), 3);
    /* Settled already: it cannot settle again, nor in another run's name. */
    fr_error err = {0};
    assert_int_equal(fr_store_settle(f->st, id, &a, NULL, &err), FR_EINVAL);
    long long id2 = reserve(f->st, "r1", "c", 0.2);
    a.run_id = "other";
    assert_int_equal(fr_store_settle(f->st, id2, &a, NULL, &err), FR_EINVAL);
    a.run_id = "r1";
    a.outcome = "pending";
    assert_int_equal(fr_store_settle(f->st, id2, &a, NULL, &err), FR_EINVAL);
    a.outcome = "error";
    a.cost_usd = 0;
    assert_ok(fr_store_settle(f->st, id2, &a, NULL, &e_));
    assert_ok(fr_store_month_spent(f->st, m, &spent, &e_));
    assert_usd(spent, 0.15);
}

/* What a child in flight is given: the store, its clock, what it leases. */
typedef struct in_flight {
    const char *path;
    time_t clock;
    double lease_usd;
} in_flight;

/* A child that begins a run, books one reply and sends two requests (true
 * when it did). With `lease_usd`, it leases that much of the month first. */
static bool child_in_flight(void *ud)
{
    const in_flight *x = ud;
    const char *path = x->path;
    time_t clock = x->clock;
    double lease_usd = x->lease_usd;
    fr_store *st = NULL;
    fr_error err = {0};
    int ok = fr_store_open(path, &st, &err) == FR_OK;
    if (ok) {
        fr_store_set_clock(st, clock);
        ok = fr_store_run_begin(st, "victim", "wf", NULL, &err) == FR_OK;
    }
    double granted = 0;
    if (ok && lease_usd > 0)
        ok = fr_store_lease(st, "2026-11", 1.0, lease_usd, "victim", &granted, &err) == FR_OK;
    fr_attempt_rec a = {.run_id = "victim",
                        .task = "a",
                        .endpoint = "cloud",
                        .tier = "cloud",
                        .outcome = "ok",
                        .attempt = 1,
                        .cost_usd = 0.1};
    long long id = 0;
    if (ok)
        ok = fr_store_add_attempt(st, &a, &err) == FR_OK;
    a.cost_usd = 0.2;
    if (ok)
        ok = fr_store_reserve(st, &a, &id, &err) == FR_OK;
    a.cost_usd = 0.05;
    if (ok)
        ok = fr_store_reserve(st, &a, &id, &err) == FR_OK;
    return ok;
}

/* Forks a child_in_flight, waits until it is in flight, and kills it. */
static void kill_in_flight(const char *path, time_t clock, double lease_usd)
{
    in_flight x = {path, clock, lease_usd};
    kill_when_ready(child_in_flight, &x);
}

/* A killed run stays "running" until a later run finds its process gone:
 * then it reads "crashed", its cost is its booked reply plus its requests in
 * flight at their worst case, and those stay charged to the month. */
static void test_killed_run_marked_crashed(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    fr_store_close(open_ok(f->path));
    kill_in_flight(f->path, clock, 0);
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    char status[32];
    double cost = -1;
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "running");
    assert_ok(fr_store_run_begin(f->st, "next", "wf", NULL, &e_));
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "crashed");
    assert_usd(cost, 0.35);
    double spent = -1;
    assert_ok(fr_store_month_spent(f->st, "2026-11", &spent, &e_));
    assert_usd(spent, 0.35);
    char buf[128];
    assert_string_equal(raw_text(f->path,
                                 "SELECT group_concat(outcome, ',') FROM"
                                 " (SELECT outcome FROM attempts WHERE run_id = 'victim'"
                                 " ORDER BY id)",
                                 buf, sizeof buf),
                        "ok,cancelled,cancelled");
    /* The running run itself is left alone. */
    run_status(f->st, "next", status, sizeof status, &cost);
    assert_string_equal(status, "running");
}

/* A killed run that held a lease of the monthly cap: the run that reclaims
 * the lease marks it crashed, and the lease keeps the requests it had in
 * flight, so the month cannot be spent past its cap. */
static void test_reclaimed_lease_keeps_in_flight(void **state)
{
    fx *f = *state;
    time_t clock = utc(2026, 11, 15, 12, 0, 0);
    const char *m = "2026-11";
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    assert_ok(fr_store_run_begin(f->st, "survivor", "wf", NULL, &e_));
    fr_store_close(f->st);
    f->st = NULL;
    kill_in_flight(f->path, clock, 0.5);
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, clock);
    /* The victim was charged 0.35 (0.1 booked, 0.25 in flight): 0.65 is left. */
    assert_usd(lease(f->st, m, 1.0, 1.0, "survivor"), 0.65);
    char status[32];
    double cost = -1;
    run_status(f->st, "victim", status, sizeof status, &cost);
    assert_string_equal(status, "crashed");
    assert_usd(cost, 0.35);
    assert_lease_closed(f, "victim", "reclaimed 0.35");
}

/* Leases recorded by a holder that cannot be alive: a pid from another boot,
 * and this pid with another start time (a reused pid). */
static void test_lease_of_other_boot_or_reused_pid(void **state)
{
    fx *f = *state;
    if (access("/proc/sys/kernel/random/boot_id", R_OK) != 0 || access("/proc/self/stat", R_OK))
        skip();
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2026, 11, 15, 12, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "old-boot", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "reused", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "live", "wf", NULL, &e_));
    assert_ok(fr_store_run_begin(f->st, "me", "wf", NULL, &e_));
    /* A live holder for comparison: this process, as recorded by the store. */
    assert_usd(lease(f->st, "2026-11", 10, 1.0, "live"), 1.0);
    char sql[512];
    snprintf(sql, sizeof sql,
             "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
             " VALUES ('old-boot', '2026-11', 4, %ld, 0, 'another-boot', 0);"
             "INSERT INTO leases(run_id, month, amount, pid, pid_start, boot_id, opened_at)"
             " SELECT 'reused', '2026-11', 4, pid, pid_start + 1, boot_id, 0 FROM leases"
             " WHERE run_id = 'live'",
             (long)getpid());
    raw_exec(f->path, sql);
    /* Neither dead lease counts, and the lease closes both. */
    assert_usd(lease(f->st, "2026-11", 10, 20, "me"), 9.0);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE closed_by = 'reclaimed'"), 2);
    assert_usd(raw_num(f->path, "SELECT count(*) FROM leases WHERE closed_at IS NULL"), 2);
}

/* A child of the race: opens its own store, waits for the start, then leases
 * 25 times and spends half of each grant. Writes its total grant, waits for
 * the end (so no share is released while others still lease; the parent
 * kills some children there), and then releases its lease. */
/* A child that cannot go on tells the parent (a negative total: the parent
 * reads one total per child and would wait for ever for a missing one,
 * the other children holding the pipe open) and exits `code`. */
static _Noreturn void child_failed(int out_fd, int code, const fr_error *err)
{
    fprintf(stderr, "leasing child %d: exit %d: %s\n", (int)getpid(), code,
            err && err->msg[0] ? err->msg : "(no message)");
    double total = -code;
    if (write(out_fd, &total, sizeof total) != sizeof total)
        _exit(14);
    _exit(code);
}

static void child_race(const char *path, time_t clock, const char *run, double cap, int go_fd,
                       int out_fd, int end_fd)
{
    fr_store *st = NULL;
    fr_error err = {0};
    char month[FR_STORE_MONTH_LEN];
    double total = 0;
    if (fr_store_open(path, &st, &err) != FR_OK)
        child_failed(out_fd, 10, &err);
    fr_store_set_clock(st, clock);
    fr_store_month(st, month);
    if (fr_store_run_begin(st, run, "race", NULL, &err) != FR_OK)
        child_failed(out_fd, 11, &err);
    wait_eof(go_fd);
    for (int i = 0; i < 25; i++) {
        double g = 0;
        if (fr_store_lease(st, month, cap, 0.07, run, &g, &err) != FR_OK)
            child_failed(out_fd, 12, &err);
        total += g;
        fr_attempt_rec a = {.run_id = run,
                            .task = "t",
                            .endpoint = "e",
                            .tier = "cloud",
                            .outcome = "ok",
                            .attempt = i + 1,
                            .cost_usd = g / 2};
        if (g > 0 && fr_store_add_attempt(st, &a, &err) != FR_OK)
            child_failed(out_fd, 13, &err);
    }
    if (write(out_fd, &total, sizeof total) != sizeof total)
        _exit(14);
    wait_eof(end_fd);
    int rc = fr_store_release(st, run, NULL);
    fr_store_close(st);
    _exit(rc == FR_OK ? 0 : 15);
}

static void test_concurrent_processes_respect_cap(void **state)
{
    fx *f = *state;
    enum { ROUNDS = 5, KIDS = 3 };
    const double cap = 1.0;
    fr_store_close(open_ok(f->path));
    for (int round = 0; round < ROUNDS; round++) {
        time_t clock = utc(2027, 1 + round, 3, 0, 0, 0);
        int go[2], out[2], end[2];
        assert_int_equal(pipe(go), 0);
        assert_int_equal(pipe(out), 0);
        assert_int_equal(pipe(end), 0);
        pid_t kids[KIDS];
        for (int k = 0; k < KIDS; k++) {
            char run[32];
            snprintf(run, sizeof run, "race-%d-%d", round, k);
            kids[k] = fork();
            assert_true(kids[k] >= 0);
            if (kids[k] == 0) {
                close(go[1]);
                close(out[0]);
                close(end[1]);
                child_race(f->path, clock, run, cap, go[0], out[1], end[0]);
            }
        }
        close(go[0]);
        close(out[1]);
        close(end[0]);
        close(go[1]); /* every child starts leasing now */
        double sum = 0;
        for (int k = 0; k < KIDS; k++) {
            double total = 0;
            assert_int_equal(read(out[0], &total, sizeof total), (ssize_t)sizeof total);
            if (total < 0)
                fail_msg("a leasing child failed with exit code %d (10 open, 11 run begin, 12 "
                         "lease, 13 attempt)",
                         (int)-total);
            sum += total;
        }
        close(out[0]);
        /* Together never more than the cap; and since they wanted far more,
         * exactly the cap. */
        assert_true(sum <= cap + EPS);
        assert_usd(sum, cap);
        char sql[256];
        snprintf(sql, sizeof sql, "SELECT TOTAL(amount) FROM leases WHERE month = '2027-%02d'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), sum);
        /* Now the first releases, the others crash holding their leases. */
        for (int k = 1; k < KIDS; k++)
            crash(kids[k]);
        close(end[1]);
        assert_int_equal(reap(kids[0]), 0);
        snprintf(sql, sizeof sql, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-%02d'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), cap / 2);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM leases WHERE month = '2027-%02d' AND closed_by = 'released'",
                 1 + round);
        assert_usd(raw_num(f->path, sql), 1);
    }
    /* Afterwards all children are gone: their unspent shares come back. */
    f->st = open_ok(f->path);
    fr_store_set_clock(f->st, utc(2027, 1, 20, 0, 0, 0));
    assert_ok(fr_store_run_begin(f->st, "after", "wf", NULL, &e_));
    double spent = raw_num(f->path, "SELECT TOTAL(cost_usd) FROM attempts WHERE month = '2027-01'");
    assert_usd(month_used(f->st, "2027-01"), spent);
    assert_usd(lease(f->st, "2027-01", cap, 1.0, "after"), cap - spent);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_month_totals),
        STORE_TEST(test_leases_in_one_process),
        STORE_TEST(test_day_and_month_leases_across_midnight),
        STORE_TEST(test_release_frees_unspent),
        STORE_TEST(test_lease_of_dead_process_reclaimed),
        STORE_TEST(test_lease_of_other_boot_or_reused_pid),
        STORE_TEST(test_concurrent_processes_respect_cap),
        STORE_TEST(test_reserve_and_settle),
        STORE_TEST(test_killed_run_marked_crashed),
        STORE_TEST(test_reclaimed_lease_keeps_in_flight),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
