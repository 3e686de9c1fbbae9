/* Unit tests of engine/store/owners.c and the conditional reservation of
 * ledger.c: a shared endpoint's slot is reserved only while fewer than its
 * max_parallel are held by live owners; an owner whose lease expired (the
 * store's clock moved past it) or whose process is gone holds none; its own
 * rows always count; the owner row goes at the end. Two stores on one file
 * are two owners, as two processes are. */

#include "tests/unit/support/store_fixture.h"

/* A shared endpoint's attempt of run `run`, task `task`, on model `model`. */
static fr_attempt_rec slot_rec(const char *run, const char *task, const char *model)
{
    return (fr_attempt_rec){.run_id = run,
                            .task = task,
                            .endpoint = "gpu",
                            .tier = "local",
                            .model = model,
                            .attempt = 1,
                            .cost_usd = 0};
}

/* Reserves a slot of "gpu" (max `max`) for `task` of `run`; returns its id,
 * 0 when every slot is held. */
static long long slot(fr_store *st, const char *run, const char *task, const char *model, int max)
{
    fr_attempt_rec a = slot_rec(run, task, model);
    long long id = -1;
    assert_ok(fr_store_reserve_slot(st, &a, max, &id, &e_));
    assert_true(id >= 0);
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

/* max_parallel holds across owners: the slots held by one refuse the
 * other's; a settled slot is free again; another model's slots and an
 * attempt of an endpoint that is not shared count for nothing. */
static void test_slots_are_shared(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *a = owner(f->path, "ra", now), *b = owner(f->path, "rb", now);
    f->st = a;
    assert_string_not_equal(fr_store_owner_id(a), fr_store_owner_id(b));
    long long a1 = slot(a, "ra", "t1", "m", 2);
    long long a2 = slot(a, "ra", "t2", "m", 2);
    assert_true(a1 > 0 && a2 > 0 && a1 != a2);
    assert_int_equal(slot(a, "ra", "t3", "m", 2), 0); /* its own count too */
    assert_int_equal(slot(b, "rb", "t1", "m", 2), 0);
    /* Not a slot: a reservation of today's kind, and another model. */
    reserve(b, "rb", "x", 0.01);
    long long other = slot(b, "rb", "t9", "other-model", 1);
    assert_true(other > 0);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts WHERE outcome = 'pending'"),
                     4);
    settle_ok(a, a1, "ra", "t1");
    long long b1 = slot(b, "rb", "t1", "m", 2);
    assert_true(b1 > 0);
    assert_int_equal(slot(a, "ra", "t3", "m", 2), 0);
    char who[64];
    assert_string_equal(raw_text(f->path,
                                 "SELECT owner_id FROM attempts WHERE task = 't1' AND"
                                 " run_id = 'rb'",
                                 who, sizeof who),
                        fr_store_owner_id(b));
    assert_ok(fr_store_owner_end(b, &e_));
    assert_string_equal(fr_store_owner_id(b), "");
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM owners"), 1);
    /* Its rows left: they hold no slot without an owner. */
    assert_true(slot(a, "ra", "t3", "m", 2) > 0);
    fr_store_close(b);
}

/* An owner whose lease has run out holds no slot, by the clock of the one
 * counting; its heartbeat brings it back; one's own slots count whatever
 * its own lease says. */
static void test_expired_owner_stops_counting(void **state)
{
    fx *f = *state;
    time_t now = utc(2027, 3, 10, 12, 0, 0);
    fr_store *a = owner(f->path, "ra", now), *b = owner(f->path, "rb", now);
    f->st = a;
    assert_true(slot(a, "ra", "t1", "m", 2) > 0);
    assert_true(slot(a, "ra", "t2", "m", 2) > 0);
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S - 1);
    assert_int_equal(slot(b, "rb", "t1", "m", 2), 0); /* still a's */
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S + 1);
    long long b1 = slot(b, "rb", "t1", "m", 2); /* a is dead: its two slots free */
    assert_true(b1 > 0);
    assert_true(slot(b, "rb", "t2", "m", 2) > 0);
    assert_int_equal(slot(b, "rb", "t3", "m", 2), 0); /* b's own two */
    /* a beats: alive again, its two count, b's two too. */
    fr_store_set_clock(a, now + FR_STORE_OWNER_LEASE_S + 1);
    assert_ok(fr_store_owner_beat(a, &e_));
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT expires FROM owners WHERE id = '%s'", fr_store_owner_id(a));
    assert_usd(raw_num(f->path, sql), (double)(now + 2 * FR_STORE_OWNER_LEASE_S + 1));
    fr_store_set_clock(b, now + FR_STORE_OWNER_LEASE_S + 2);
    settle_ok(b, b1, "rb", "t1");
    assert_int_equal(slot(b, "rb", "t4", "m", 3), 0); /* a's 2 + b's 1 */
    assert_true(slot(b, "rb", "t4", "m", 4) > 0);
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
            ok = fr_store_reserve_slot(c, &a, 2, &id, &err) == FR_OK && id > 0;
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
    assert_int_equal(slot(f->st, "rp", "t1", "m", 2), 0);
    crash(pid);
    close(ready[0]);
    close(hold[1]);
    assert_true(slot(f->st, "rp", "t1", "m", 2) > 0);
    assert_true(slot(f->st, "rp", "t2", "m", 2) > 0);
}

/* Batched, the count and the INSERT are the batch's: another connection
 * sees the slot only after the flush. Bad arguments are refused. */
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
    assert_int_equal(fr_store_reserve_slot(f->st, &a, 1, &id, &err), FR_EINVAL); /* no owner */
    assert_ok(fr_store_owner_begin(f->st, &e_));
    char first[48];
    snprintf(first, sizeof first, "%s", fr_store_owner_id(f->st));
    assert_ok(fr_store_owner_begin(f->st, &e_)); /* keeps the first */
    assert_string_equal(fr_store_owner_id(f->st), first);
    assert_int_equal(fr_store_reserve_slot(f->st, &a, 0, &id, &err), FR_EINVAL);
    int opened = 0;
    fr_store_batch(f->st, pending, &opened);
    assert_true(slot(f->st, "r", "t1", "m", 1) > 0);
    assert_int_equal(opened, 1);
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 0);
    assert_int_equal(slot(f->st, "r", "t2", "m", 1), 0);
    assert_ok(fr_store_flush(f->st, &e_));
    assert_int_equal(raw_num(f->path, "SELECT count(*) FROM attempts"), 1);
    fr_store_batch(f->st, NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_slots_are_shared),
        STORE_TEST(test_expired_owner_stops_counting),
        STORE_TEST(test_dead_process_stops_counting),
        STORE_TEST(test_batched_and_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
