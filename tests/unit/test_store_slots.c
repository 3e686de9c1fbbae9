/* Unit tests of engine/store/owners.c and the conditional reservation of
 * ledger.c: a shared endpoint's slot is reserved only while fewer than its
 * max_parallel are held: the slots its caller says this owner holds (`own`,
 * as the books count them) plus the other live owners'; an owner whose
 * lease expired (the store's clock moved past it) or whose process is gone
 * holds none; the owner row goes at the end. Two stores on one file are two
 * owners, as two processes are. Each test runs twice: with $0 requests,
 * whose slots are counts in their owner's owner_slots rows (their handle
 * < 0, a row booked when each ends), and with priced ones, whose slots are
 * their in-flight rows. */

#include "tests/unit/support/store_fixture.h"

/* The worst case of the requests of the test running: 0 or a price. */
static double slot_cost;

/* A shared endpoint's attempt of run `run`, task `task`, on model `model`. */
static fr_attempt_rec slot_rec(const char *run, const char *task, const char *model)
{
    return (fr_attempt_rec){.run_id = run,
                            .task = task,
                            .endpoint = "gpu",
                            .tier = "local",
                            .model = model,
                            .attempt = 1,
                            .cost_usd = slot_cost};
}

/* Reserves a slot of "gpu" (max `max`) for `task` of `run` on `model`,
 * its owner holding `own` slots of it; returns its id (a handle < 0 for a
 * $0 slot), 0 when every slot is held. */
static long long slot(fr_store *st, const char *run, const char *task, const char *model, int max,
                      long own)
{
    fr_attempt_rec a = slot_rec(run, task, model);
    long long id = -1;
    assert_ok(fr_store_reserve_slot(st, &a, max, own, 0, &id, &e_));
    assert_true(slot_cost > 0 ? id >= 0 : id <= 0);
    return id;
}

/* Settles attempt `id` of `run` as answered. */
static void settle_ok(fr_store *st, long long id, const char *run, const char *task)
{
    fr_attempt_rec a = slot_rec(run, task, "m");
    a.outcome = "ok";
    assert_ok(fr_store_settle(st, id, &a, NULL, &e_));
}

/* Opens the store at `path` as an owner with run `run` begun, at `now`. */
static fr_store *owner(const char *path, const char *run, time_t now)
{
    fr_store *st = open_ok(path);
    fr_store_set_clock(st, now);
    assert_string_equal(fr_store_owner_id(st), "");
    assert_ok(fr_store_owner_begin(st, &e_));
    assert_true(strlen(fr_store_owner_id(st)) > 0);
    assert_ok(fr_store_run_begin(st, run, "wf", NULL, &e_));
    return st;
}

/* Two owners on f's file at `now`, of runs "ra" and "rb": returns the
 * first (f's store, closed by the fixture) and sets *b to the second
 * (returns owned: the test closes it). */
static fr_store *two_owners(fx *f, time_t now, fr_store **b)
{
    fr_store *a = owner(f->path, "ra", now);
    f->st = a;
    *b = owner(f->path, "rb", now);
    return a;
}

/* max_parallel holds across owners: the slots held by one refuse the
 * other's; a settled slot is free again; another model's slots and an
 * attempt of an endpoint that is not shared count for nothing. Each owner's
 * own count is passed as its books keep it. */
static void test_slots_are_shared(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *b = NULL, *a = two_owners(f, now, &b);
    assert_string_not_equal(fr_store_owner_id(a), fr_store_owner_id(b));
    long long a1 = slot(a, "ra", "t1", "m", 2, 0);
    long long a2 = slot(a, "ra", "t2", "m", 2, 1);
    assert_true(a1 != 0 && a2 != 0 && a1 != a2);
    assert_int_equal(slot(a, "ra", "t3", "m", 2, 2), 0); /* its own count too */
    assert_int_equal(slot(b, "rb", "t1", "m", 2, 0), 0);
    /* Not a slot: a reservation of today's kind, and another model. */
    reserve(b, "rb", "x", 0.01);
    long long other = slot(b, "rb", "t9", "other-model", 1, 0);
    assert_true(other != 0);
    assert_int_equal(slots_recorded(f->path, NULL), 3);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"
                                      " AND owner_id IS NULL"),
                     1);
    /* A $0 slot's attempt has no row in flight: it is booked as it ends. */
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE run_id = 'ra'"),
                     slot_cost > 0 ? 2 : 0);
    settle_ok(a, a1, "ra", "t1");
    char out[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT group_concat(outcome) FROM attempts WHERE"
                                 " run_id = 'ra' AND task = 't1'",
                                 out, sizeof out),
                        "ok");
    long long b1 = slot(b, "rb", "t1", "m", 2, 0);
    assert_true(b1 != 0);
    assert_int_equal(slot(a, "ra", "t3", "m", 2, 1), 0);
    char b_id[48];
    snprintf(b_id, sizeof b_id, "%s", fr_store_owner_id(b));
    assert_int_equal(slots_recorded(f->path, b_id), 2);
    assert_ok(fr_store_owner_end(b, &e_));
    assert_string_equal(fr_store_owner_id(b), "");
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM owners"), 1);
    /* Its in-flight rows are left, its counts went with its row: neither
     * holds a slot without an owner. */
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM owner_slots WHERE owner_id = '%s'", b_id);
    assert_int_equal(raw_num(f->path, sql), 0);
    assert_true(slot(a, "ra", "t3", "m", 2, 1) != 0);
    fr_store_close(b);
}

/* An owner whose lease has run out holds no slot, by the clock of the one
 * counting; its heartbeat brings it back; one's own slots (its caller's
 * count) count whatever its own lease says. */
static void test_expired_owner_stops_counting(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *b = NULL, *a = two_owners(f, now, &b);
    assert_true(slot(a, "ra", "t1", "m", 2, 0) != 0);
    assert_true(slot(a, "ra", "t2", "m", 2, 1) != 0);
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S - 1);
    assert_int_equal(slot(b, "rb", "t1", "m", 2, 0), 0); /* still a's */
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S + 1);
    long long b1 = slot(b, "rb", "t1", "m", 2, 0); /* a is dead: its two slots free */
    assert_true(b1 != 0);
    assert_true(slot(b, "rb", "t2", "m", 2, 1) != 0);
    assert_int_equal(slot(b, "rb", "t3", "m", 2, 2), 0); /* b's own two */
    /* a beats: alive again, its two count, b's two too. */
    fr_store_set_clock(a, now + FR_STORE_OWNER_LEASE_S + 1);
    assert_ok(fr_store_owner_beat(a, &e_));
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT expires FROM owners WHERE id = '%s'", fr_store_owner_id(a));
    assert_usd(raw_num(f->path, sql), (double)(now + 2 * FR_STORE_OWNER_LEASE_S + 1));
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S + 2);
    settle_ok(b, b1, "rb", "t1");
    assert_int_equal(slot(b, "rb", "t4", "m", 3, 1), 0); /* a's 2 + b's 1 */
    assert_true(slot(b, "rb", "t4", "m", 4, 1) != 0);
    fr_store_close(b);
}

/* An owner whose process is gone holds no slot, at once: no lease to wait
 * for on its own host. */
static void test_dead_process_stops_counting(void **state)
{
    fx *f = *state;
    int ready[2], hold[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(hold), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        close(hold[1]);
        fr_store *c = NULL;
        fr_error err = {0};
        int ok = fr_store_open(f->path, &c, &err) == FR_OK &&
                 fr_store_owner_begin(c, &err) == FR_OK &&
                 fr_store_run_begin(c, "rc", "wf", NULL, &err) == FR_OK;
        for (int i = 0; ok && i < 2; i++) {
            fr_attempt_rec a = slot_rec("rc", i ? "t2" : "t1", "m");
            long long id = 0;
            ok = fr_store_reserve_slot(c, &a, 2, i, 0, &id, &err) == FR_OK && id != 0;
        }
        char c1 = ok ? 'y' : 'n';
        if (write(ready[1], &c1, 1) != 1)
            _exit(2);
        wait_eof(hold[0]);
        _exit(0);
    }
    close(ready[1]);
    close(hold[0]);
    char c1 = 0;
    assert_int_equal(read(ready[0], &c1, 1), 1);
    assert_int_equal(c1, 'y');
    f->st = open_ok(f->path);
    assert_ok(fr_store_owner_begin(f->st, &e_));
    assert_ok(fr_store_run_begin(f->st, "rp", "wf", NULL, &e_));
    assert_int_equal(slot(f->st, "rp", "t1", "m", 2, 0), 0);
    crash(pid);
    close(ready[0]);
    close(hold[1]);
    assert_true(slot(f->st, "rp", "t1", "m", 2, 0) != 0);
    assert_true(slot(f->st, "rp", "t2", "m", 2, 1) != 0);
}

/* Batched, the count and the INSERT are the batch's: another connection
 * sees the slot only after the flush. Bad arguments are refused: no owner,
 * `max` < 1, a negative count of one's own. */
static void pending(void *ud)
{
    (*(int *)ud)++;
}

static void test_batched_and_refused(void **state)
{
    fx *f = *state;
    f->st = open_ok(f->path);
    fr_attempt_rec a = slot_rec("r", "t1", "m");
    long long id = 0;
    fr_error err = {0};
    assert_ok(fr_store_run_begin(f->st, "r", "wf", NULL, &e_));
    assert_int_equal(fr_store_reserve_slot(f->st, &a, 1, 0, 0, &id, &err),
                     FR_EINVAL); /* no owner */
    assert_ok(fr_store_owner_begin(f->st, &e_));
    char first[48];
    snprintf(first, sizeof first, "%s", fr_store_owner_id(f->st));
    assert_ok(fr_store_owner_begin(f->st, &e_)); /* keeps the first */
    assert_string_equal(fr_store_owner_id(f->st), first);
    assert_int_equal(fr_store_reserve_slot(f->st, &a, 0, 0, 0, &id, &err), FR_EINVAL);
    assert_int_equal(fr_store_reserve_slot(f->st, &a, 1, -1, 0, &id, &err), FR_EINVAL);
    int opened = 0;
    fr_store_batch(f->st, pending, &opened);
    assert_true(slot(f->st, "r", "t1", "m", 1, 0) != 0);
    assert_int_equal(opened, 1);
    assert_int_equal(slots_recorded(f->path, NULL), 0);
    assert_int_equal(slot(f->st, "r", "t2", "m", 1, 1), 0);
    assert_ok(fr_store_flush(f->st, &e_));
    assert_int_equal(slots_recorded(f->path, NULL), 1);
    fr_store_batch(f->st, NULL, NULL);
}

/* The store counts this owner's slots from its caller's `own`, never from
 * its own rows, and adds the other owners' rows of the same endpoint and
 * model: another owner holding 2 of max 3 refuses own 1 and grants own 0
 * (this owner's rows in the table left out); own at max refuses on a model
 * nobody holds a slot of. */
static void test_own_count_from_the_caller(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *b = NULL, *a = two_owners(f, now, &b);
    const char *const tasks[] = {"t1", "t2"};
    for (long i = 0; i < 2; i++) /* b holds 2 of "m", counting its own */
        assert_true(slot(b, "rb", tasks[i], "m", 3, i) != 0);
    assert_int_equal(slot(a, "ra", "t1", "m", 3, 1), 0); /* 1 + b's 2 */
    assert_true(slot(a, "ra", "t1", "m", 3, 0) != 0);    /* 0 + b's 2 */
    /* a's row is in the table, but a's count is what its caller says. */
    assert_true(slot(a, "ra", "t2", "m", 3, 0) != 0);
    assert_int_equal(slots_recorded(f->path, fr_store_owner_id(a)), 2);
    /* Nobody holds a slot of "m2" (b's two of "m" are another server's):
     * a's own count alone refuses at max, and grants below it. */
    assert_int_equal(slot(a, "ra", "t3", "m2", 3, 3), 0);
    assert_true(slot(a, "ra", "t3", "m2", 3, 2) != 0);
    fr_store_close(b);
}

static int setup_free(void **state)
{
    slot_cost = 0;
    return setup(state);
}

static int setup_priced(void **state)
{
    slot_cost = 0.01;
    return setup(state);
}

#define BOTH(test)                                                                                 \
    {#test " ($0)", test, setup_free, teardown, NULL},                                             \
    {                                                                                              \
#test " (priced)", test, setup_priced, teardown, NULL                                      \
    }

/* A $0 slot: its attempt is booked once, as it ends, and its slot freed
 * with it; a handle that holds no slot (settled already, or never given)
 * is refused and books nothing. Batched, the owner's count is written at
 * the flush as the turn left it. */
static void test_free_slot_settled_once(void **state)
{
    fx *f = *state;
    slot_cost = 0;
    f->st = owner(f->path, "r", utc(2027, 3, 10, 12, 0, 0));
    long long h = slot(f->st, "r", "t1", "m", 4, 0);
    assert_true(h < 0);
    assert_int_equal(slots_recorded(f->path, NULL), 1);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 0);
    settle_ok(f->st, h, "r", "t1");
    assert_int_equal(slots_recorded(f->path, NULL), 0);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'ok'"
                                      " AND cost_usd = 0 AND task = 't1'"),
                     1);
    fr_attempt_rec a = slot_rec("r", "t1", "m");
    a.outcome = "ok";
    fr_error err = {0};
    assert_int_equal(fr_store_settle(f->st, h, &a, NULL, &err), FR_EINVAL);
    assert_int_equal(fr_store_settle(f->st, -5, &a, NULL, &err), FR_EINVAL);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 1);
    int opened = 0;
    fr_store_batch(f->st, pending, &opened);
    long long t[3];
    const char *const names[] = {"b1", "b2", "b3"};
    for (int i = 0; i < 3; i++)
        t[i] = slot(f->st, "r", names[i], "m", 4, i);
    settle_ok(f->st, t[0], "r", "b1");
    settle_ok(f->st, t[2], "r", "b3");
    assert_int_equal(slots_recorded(f->path, NULL), 0); /* not yet committed */
    assert_ok(fr_store_flush(f->st, &e_));
    assert_int_equal(slots_recorded(f->path, NULL), 1);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 3);
    fr_store_batch(f->st, NULL, NULL);
}

/* Reserves as slot() does, for a request waiting since `since`. */
static long long slot_since(fr_store *st, const char *run, const char *task, int max, long own,
                            double since)
{
    fr_attempt_rec a = slot_rec(run, task, "m");
    long long id = -1;
    assert_ok(fr_store_reserve_slot(st, &a, max, own, since, &id, &e_));
    return id;
}

/* A free slot goes to an owner that waits and holds fewer, or as many and
 * has waited longer: the other owner's request is refused though the slot
 * is free, and the one that waits gets it. An owner that waits no more, or
 * whose lease ran out, is passed over. */
static void test_free_slot_goes_to_the_owner_that_waits(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *b = NULL, *a = two_owners(f, now, &b);
    long long a1 = slot(a, "ra", "t1", "m", 3, 0);
    long long a2 = slot(a, "ra", "t2", "m", 3, 1);
    assert_true(a1 != 0 && a2 != 0);
    /* b waits (its request was refused earlier): a, holding 2, leaves the
     * third slot to b, which holds none. */
    assert_ok(fr_store_slot_waiting(b, "gpu", "m", (double)now - 1, &e_));
    assert_int_equal(slot(a, "ra", "t3", "m", 3, 2), 0);
    long long b1 = slot_since(b, "rb", "t1", 3, 0, (double)now - 1);
    assert_true(b1 != 0);
    /* Both hold what is left to share: a (2) holds more than b (1), so a
     * slot a frees goes to b while b waits. */
    settle_ok(a, a2, "ra", "t2");
    assert_int_equal(slot(a, "ra", "t3", "m", 3, 1), 0); /* 1 = b's 1, b waited first */
    assert_ok(fr_store_slot_waiting(a, "gpu", "m", (double)now - 5, &e_));
    assert_true(slot_since(a, "ra", "t3", 3, 1, (double)now - 5) != 0); /* a waited longer */
    /* b waits no more: nothing is left to it. */
    settle_ok(a, a1, "ra", "t1");
    assert_int_equal(slot_since(a, "ra", "t4", 3, 1, (double)now), 0); /* b waits, holds 1 */
    assert_ok(fr_store_slot_waiting(b, "gpu", "m", 0, &e_));
    assert_true(slot_since(a, "ra", "t4", 3, 1, (double)now) != 0);
    /* One that waits but whose lease ran out holds and waits for nothing. */
    assert_ok(fr_store_slot_waiting(b, "gpu", "m", (double)now - 9, &e_));
    fr_store_set_clock(a, now + FR_STORE_OWNER_LEASE_S + 1);
    assert_ok(fr_store_owner_beat(a, &e_));
    assert_true(slot_since(a, "ra", "t5", 4, 2, (double)now) != 0);
    fr_store_close(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_slots_are_shared),
        BOTH(test_expired_owner_stops_counting),
        BOTH(test_dead_process_stops_counting),
        BOTH(test_batched_and_refused),
        BOTH(test_own_count_from_the_caller),
        BOTH(test_free_slot_goes_to_the_owner_that_waits),
        STORE_TEST(test_free_slot_settled_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
