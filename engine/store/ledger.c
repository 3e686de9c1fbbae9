/* The ledger: runs (begun, ended, their status; a run whose process died is
 * marked crashed) and their attempts, booked in flight before a request is
 * sent (a 'pending' row at its worst case) and settled when its reply is
 * booked, or booked once. A booking that reads its month's total runs under
 * BEGIN IMMEDIATE, which takes the write lock before the first read, so two
 * processes booking at once are serialised and the second sees the first. */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Marks run `run_id`, whose process is gone, crashed, inside the caller's
 * write transaction: its requests in flight become charges at their worst
 * case (the provider may have billed them), its open leases close keeping
 * all of that, and the run's cost is everything it was charged. See
 * store_int.h. */
int fr_store_crash_run(fr_store *st, const char *run_id, fr_error *err)
{
    static const enum fr_store_stmt steps[] = {S_HIST_CRASH, S_CRASH_PENDING, S_CRASH_LEASES,
                                               S_CRASH_RUN};
    int rc = FR_OK;
    for (size_t i = 0; rc == FR_OK && i < sizeof steps / sizeof *steps; i++) {
        sqlite3_stmt *s = st->stmt[steps[i]];
        fr_store_bind_text(s, 1, run_id);
        sqlite3_bind_double(s, 2, fr_store_now(st));
        rc = fr_store_exec(st, steps[i], "cannot mark a crashed run", err);
    }
    return rc;
}

/* Marks crashed, inside the caller's write transaction, every run still
 * 'running' whose process is known to be gone (see fr_store_holder_alive). */
static int reclaim_runs(fr_store *st, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_RUNNING];
    fr_store_lease_row *dead = NULL;
    size_t n = 0, cap = 0;
    int step, rc = FR_OK;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        fr_store_lease_row l = {0};
        fr_store_read_holder(s, 0, &l);
        if (fr_store_holder_alive(st, &l))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            dead = fr_xrealloc(dead, cap * sizeof *dead);
        }
        dead[n++] = l;
    }
    if (step != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot read the runs in progress");
    fr_store_done(s);
    for (size_t i = 0; rc == FR_OK && i < n; i++)
        rc = fr_store_crash_run(st, dead[i].run, err);
    free(dead);
    return rc;
}

/* Records a run's start; see store.h. */
int fr_store_run_begin(fr_store *st, const char *run_id, const char *workflow, const char *wf_path,
                       fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !*run_id || !workflow)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a run needs an id and a workflow name");
    rc = fr_store_own_txn(st, err);
    if (rc == FR_OK)
        rc = fr_store_exec(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc != FR_OK)
        return rc;
    rc = reclaim_runs(st, err);
    if (rc == FR_OK) {
        sqlite3_stmt *s = st->stmt[S_RUN_BEGIN];
        fr_store_bind_text(s, 1, run_id);
        fr_store_bind_text(s, 2, workflow);
        fr_store_bind_text(s, 3, wf_path);
        sqlite3_bind_double(s, 4, fr_store_now(st));
        sqlite3_bind_int64(s, 5, st->pid);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)st->pid_start);
        fr_store_bind_text(s, 7, st->boot_id);
        fr_store_bind_text(s, 8, st->user_name);
        fr_store_bind_text(s, 9, st->host);
        rc = sqlite3_step(s) == SQLITE_DONE
                 ? FR_OK
                 : fr_store_insert_error(st, err, run_id, "cannot record the run");
        fr_store_done(s);
    }
    if (rc == FR_OK)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the run", err);
    if (rc != FR_OK)
        fr_store_rollback(st);
    return rc;
}

/* Reads a run's status and cost; see store.h. */
int fr_store_run_status(fr_store *st, const char *run_id, char *status, size_t size,
                        double *cost_usd, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK && (!run_id || !status || size == 0 || !cost_usd))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "a run id and places for its status");
    if (rc != FR_OK)
        return rc;
    sqlite3_stmt *s = st->stmt[S_RUN_STATUS];
    fr_store_bind_text(s, 1, run_id);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        fr_store_column_copy(s, 0, status, size);
        *cost_usd = sqlite3_column_double(s, 1);
    } else if (step == SQLITE_DONE) {
        rc = fr_error_set(err, FR_ENOENT, st->path, 0, "no run %s in the state database", run_id);
    } else {
        rc = fr_store_db_error(st, err, "cannot read the run");
    }
    fr_store_done(s);
    return rc;
}

/* Records a run's end; see store.h. */
int fr_store_run_end(fr_store *st, const char *run_id, const char *status, int exit_code,
                     double cost_usd, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !status || !fr_store_valid_usd(cost_usd))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "the end of a run needs its id, a status and a cost >= 0");
    rc = fr_store_batch_join(st, err);
    if (rc != FR_OK)
        return rc;
    sqlite3_stmt *s = st->stmt[S_RUN_END];
    fr_store_bind_text(s, 1, run_id);
    sqlite3_bind_double(s, 2, fr_store_now(st));
    fr_store_bind_text(s, 3, status);
    sqlite3_bind_int(s, 4, exit_code);
    sqlite3_bind_double(s, 5, cost_usd);
    rc = fr_store_exec(st, S_RUN_END, "cannot record the end of the run", err);
    if (rc == FR_OK && sqlite3_changes(st->db) == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "run %s was not begun in the state database",
                          run_id);
    return rc;
}

static bool one_of(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Checks an attempt record before it goes near the database. */
static int check_attempt(const fr_store *st, const fr_attempt_rec *a, fr_error *err)
{
    static const char *const tiers[] = {"local", "cloud", NULL};
    static const char *const outcomes[] = {"ok",        "quality",   "error",     "timeout",
                                           "cancelled", "budget",    "truncated", "refused",
                                           "tool_call", "no_answer", "pending",   NULL};
    if (!a || !a->run_id || !a->task || !a->endpoint)
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "an attempt needs a run id, a task and an endpoint");
    if (!one_of(a->tier, tiers))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: tier must be \"local\" or \"cloud\"", a->task);
    if (!one_of(a->outcome, outcomes))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: outcome must be one of ok, quality, error, "
                            "timeout, cancelled, budget, truncated, refused, tool_call, "
                            "no_answer",
                            a->task);
    if (a->attempt < 1 || a->input < 0 || a->output < 0 || a->cached < 0 ||
        !fr_store_valid_usd(a->cost_usd) || !fr_store_valid_usd(a->latency_ms))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "attempt of task %s: the attempt number must be >= 1 and tokens, "
                            "cost and latency >= 0",
                            a->task);
    return FR_OK;
}

/* Binds what a new attempt row starts with, parameters 1-6 of `s` (run,
 * task, attempt, endpoint, tier, model, borrowed from `a` until `s` is
 * reset) and, from parameter `more`, its day (`day`, borrowed until `s` is
 * reset), user and host; returns the store's time of the booking, whose
 * month it writes into `month` and whose day into `day`. */
static double bind_new_attempt(fr_store *st, sqlite3_stmt *s, const fr_attempt_rec *a,
                               char month[FR_STORE_MONTH_LEN], char day[FR_STORE_DAY_LEN], int more)
{
    double at = fr_store_now(st);
    fr_store_month_of((time_t)floor(at), month);
    fr_store_day_of((time_t)floor(at), day);
    fr_store_bind_text(s, more, day);
    fr_store_bind_text(s, more + 1, st->user_name);
    fr_store_bind_text(s, more + 2, st->host);
    fr_store_bind_text(s, 1, a->run_id);
    fr_store_bind_text(s, 2, a->task);
    sqlite3_bind_int(s, 3, a->attempt);
    fr_store_bind_text(s, 4, a->endpoint);
    fr_store_bind_text(s, 5, a->tier);
    fr_store_bind_text(s, 6, a->model);
    return at;
}

/* Binds a's `has` field `v` to parameter `i` of `s`, NULL without it. */
static void bind_opt(sqlite3_stmt *s, int i, bool has, double v)
{
    if (has && isfinite(v))
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

/* Binds a's time to first content to parameter `i` of `s`, NULL without one. */
static void bind_ttft(sqlite3_stmt *s, int i, const fr_attempt_rec *a)
{
    bind_opt(s, i, a->has_ttft && fr_store_valid_usd(a->ttft_ms), a->ttft_ms);
}

/* Inserts the checked attempt `a` at the store's clock and writes its month
 * into `month`. */
static int insert_attempt(fr_store *st, const fr_attempt_rec *a, char month[FR_STORE_MONTH_LEN],
                          fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_ATTEMPT];
    char day[FR_STORE_DAY_LEN];
    double at = bind_new_attempt(st, s, a, month, day, 19);
    sqlite3_bind_int64(s, 7, a->input);
    sqlite3_bind_int64(s, 8, a->output);
    sqlite3_bind_int64(s, 9, a->cached);
    sqlite3_bind_int(s, 10, a->estimated ? 1 : 0);
    sqlite3_bind_double(s, 11, a->cost_usd);
    sqlite3_bind_double(s, 12, a->latency_ms);
    fr_store_bind_text(s, 13, a->outcome);
    fr_store_bind_text(s, 14, a->error);
    sqlite3_bind_double(s, 15, at);
    fr_store_bind_text(s, 16, month);
    fr_store_bind_text(s, 17, a->type);
    bind_ttft(s, 18, a);
    bind_opt(s, 22, a->has_complexity, a->complexity);
    bind_opt(s, 23, a->has_score, a->score);
    int rc = sqlite3_step(s) == SQLITE_DONE
                 ? FR_OK
                 : fr_store_insert_error(st, err, a->run_id, "cannot record the attempt");
    fr_store_done(s);
    return rc == FR_OK ? fr_store_history_add(st, a, at, err) : rc;
}

/* Takes the write lock before a booking reads its month's total: the
 * batch's transaction when batching (it holds the lock already), else one
 * of its own (*begun). */
static int lock_for_total(fr_store *st, bool *begun, fr_error *err)
{
    if (st->batching)
        return fr_store_batch_join(st, err);
    int rc = fr_store_exec(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    *begun = rc == FR_OK;
    return rc;
}

/* Ends the write transaction lock_for_total began (`begun`; a batch's is
 * left to its flush): committed when `rc` is FR_OK, else rolled back.
 * Returns `rc`, or the commit's failure. */
static int end_own(fr_store *st, bool begun, int rc, fr_error *err)
{
    if (rc == FR_OK && begun)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the state database", err);
    if (rc != FR_OK && begun)
        fr_store_rollback(st);
    return rc;
}

/* Books an attempt; see store.h. Its row and its routing history's are
 * one transaction: the batch's, else one of its own. */
int fr_store_add_attempt(fr_store *st, const fr_attempt_rec *a, fr_error *err)
{
    bool begun = false;
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc != FR_OK)
        return rc;
    rc = lock_for_total(st, &begun, err);
    char month[FR_STORE_MONTH_LEN];
    if (rc == FR_OK)
        rc = insert_attempt(st, a, month, err);
    return end_own(st, begun, rc, err);
}

/* Ends a booking's write transaction: reads the cost of the booked attempts
 * of `month` (borrowed), commits when the booking began its own
 * transaction (`begun`; a batch commits at its flush), and only then sets
 * *month_total. */
static int commit_with_total(fr_store *st, bool begun, const char *month, double *month_total,
                             fr_error *err)
{
    double total = 0;
    int rc = fr_store_month_total(st, S_MONTH_BOOKED, month, &total, err);
    if (rc == FR_OK && begun)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the attempt", err);
    if (rc == FR_OK)
        *month_total = total;
    return rc;
}

/* Books an attempt and reads its month's total in one transaction; see
 * store.h. */
int fr_store_add_attempt_total(fr_store *st, const fr_attempt_rec *a, double *month_total,
                               fr_error *err)
{
    bool begun = false;
    char month[FR_STORE_MONTH_LEN];
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc == FR_OK && !month_total)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's total");
    if (rc != FR_OK)
        goto cleanup;
    /* The write lock first: no other booking comes between this one and the
     * total it reads. */
    rc = lock_for_total(st, &begun, err);
    if (rc == FR_OK)
        rc = insert_attempt(st, a, month, err);
    if (rc == FR_OK)
        rc = commit_with_total(st, begun, month, month_total, err);
cleanup:
    if (rc != FR_OK && begun)
        fr_store_rollback(st);
    return rc;
}

/* Checks attempt `a` (borrowed) and the place for its id before it is
 * booked in flight. */
static int check_pending(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err)
{
    fr_attempt_rec pending = a ? *a : (fr_attempt_rec){0};
    pending.outcome = "pending";
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a ? &pending : NULL, err);
    if (rc == FR_OK && !id)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the attempt's id");
    return rc;
}

/* Inserts the checked attempt `a` as in flight, held by `owner` (borrowed;
 * NULL: no slot), joining the batch when batching, and sets *id; see
 * fr_store_reserve. */
static int insert_pending(fr_store *st, const fr_attempt_rec *a, const char *owner, long long *id,
                          fr_error *err)
{
    int rc = fr_store_batch_join(st, err);
    if (rc != FR_OK)
        return rc;
    char month[FR_STORE_MONTH_LEN];
    sqlite3_stmt *s = st->stmt[S_RESERVE];
    char day[FR_STORE_DAY_LEN];
    double at = bind_new_attempt(st, s, a, month, day, 11);
    sqlite3_bind_double(s, 7, a->cost_usd);
    sqlite3_bind_double(s, 8, at);
    fr_store_bind_text(s, 9, month);
    fr_store_bind_text(s, 10, a->type);
    if (owner)
        fr_store_bind_text(s, 14, owner);
    bind_opt(s, 15, a->has_complexity, a->complexity);
    rc = sqlite3_step(s) == SQLITE_DONE
             ? FR_OK
             : fr_store_insert_error(st, err, a->run_id, "cannot record the attempt in flight");
    fr_store_done(s);
    if (rc == FR_OK)
        *id = (long long)sqlite3_last_insert_rowid(st->db);
    return rc;
}

/* Books an attempt in flight; see store.h. */
int fr_store_reserve(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err)
{
    int rc = check_pending(st, a, id, err);
    if (rc == FR_OK)
        rc = insert_pending(st, a, NULL, id, err);
    /* Durable before a byte of the request can go out: the batch commits
     * with it (on a failure the batch is rolled back and the run stops). */
    if (rc == FR_OK)
        rc = fr_store_flush(st, err);
    return rc;
}

/* Books an attempt in flight in the batch, durable at its flush; see
 * store.h. */
int fr_store_reserve_batched(fr_store *st, const fr_attempt_rec *a, long long *id, fr_error *err)
{
    int rc = check_pending(st, a, id, err);
    return rc == FR_OK ? insert_pending(st, a, NULL, id, err) : rc; /* not batching: it committed
                                                                        alone */
}

/* Books an attempt in flight as a slot of its endpoint while one is free;
 * see store.h. */
int fr_store_reserve_slot(fr_store *st, const fr_attempt_rec *a, int max, long own, double since,
                          long long *id, fr_error *err)
{
    bool begun = false, yield = false;
    long others = 0;
    int rc = check_pending(st, a, id, err);
    if (rc == FR_OK && (max < 1 || own < 0 || !st->owner_id[0]))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0,
                          "a slot needs an owner, an endpoint's max_parallel >= 1 and its own"
                          " slots counted (>= 0)");
    if (rc != FR_OK)
        return rc;
    *id = 0;
    /* The write lock first: no other process reserves between the count
     * and the INSERT. */
    rc = lock_for_total(st, &begun, err);
    if (rc == FR_OK)
        rc = fr_store_owner_fresh(st, err);
    /* This owner's slots come from its caller (`own`): counting its own
     * rows here read every one of them at each reservation. */
    if (rc == FR_OK && own < max)
        rc = fr_store_slots_held(st, a->endpoint, a->model, own,
                                 since > 0 ? since : fr_store_now(st), &others, &yield, err);
    /* A free slot goes to another owner that waits and holds fewer (or as
     * many and waited longer): this request waits, and that owner, asking
     * again, finds the slot free. Without it, a run with a queue takes
     * every slot it frees before a waiting process asks again.
     * A $0 slot has no charge to keep in flight: one in this owner's count
     * (its row is booked when it ends, at its settle). */
    if (rc == FR_OK && own < max && others < max - own && !yield)
        rc = a->cost_usd > 0 ? insert_pending(st, a, st->owner_id, id, err)
                             : fr_store_slot_take(st, a, id, err);
    if (rc == FR_OK && begun)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the attempt in flight", err);
    if (rc != FR_OK) {
        *id = 0;
        if (begun)
            fr_store_rollback(st);
    }
    return rc;
}

/* Runs the settling UPDATE of attempt `id` to `a`. */
static int settle_row(fr_store *st, long long id, const fr_attempt_rec *a, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_SETTLE];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, a->input);
    sqlite3_bind_int64(s, 3, a->output);
    sqlite3_bind_int64(s, 4, a->cached);
    sqlite3_bind_int(s, 5, a->estimated ? 1 : 0);
    sqlite3_bind_double(s, 6, a->cost_usd);
    sqlite3_bind_double(s, 7, a->latency_ms);
    fr_store_bind_text(s, 8, a->outcome);
    fr_store_bind_text(s, 9, a->error);
    double at = fr_store_now(st);
    sqlite3_bind_double(s, 10, at);
    fr_store_bind_text(s, 11, a->run_id);
    bind_ttft(s, 12, a);
    bind_opt(s, 13, a->has_score, a->score);
    bind_opt(s, 14, a->has_complexity, a->complexity);
    int rc = fr_store_exec(st, S_SETTLE, "cannot book the attempt", err);
    if (rc == FR_OK && sqlite3_changes(st->db) == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0,
                          "attempt %lld of run %s is not in flight in the state database", id,
                          a->run_id);
    return rc == FR_OK ? fr_store_history_add(st, a, at, err) : rc;
}

/* Books $0 slot `handle`'s attempt `a` as it ended, its slot freed, and
 * sets `month` to its month. */
static int settle_slot(fr_store *st, long long handle, const fr_attempt_rec *a,
                       char month[FR_STORE_MONTH_LEN], fr_error *err)
{
    int rc = fr_store_slot_give(st, handle, err);
    return rc == FR_OK ? insert_attempt(st, a, month, err) : rc;
}

/* Settles an attempt in flight; see store.h. */
int fr_store_settle(fr_store *st, long long id, const fr_attempt_rec *a, double *month_total,
                    fr_error *err)
{
    bool begun = false;
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = check_attempt(st, a, err);
    if (rc == FR_OK && strcmp(a->outcome, "pending") == 0)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "a settled attempt is not pending");
    if (rc != FR_OK)
        return rc;
    char month[FR_STORE_MONTH_LEN] = "";
    if (!month_total) { /* the row and its routing history: the batch's transaction, or one of
                           its own */
        rc = lock_for_total(st, &begun, err);
        if (rc == FR_OK)
            rc = id < 0 ? settle_slot(st, id, a, month, err) : settle_row(st, id, a, err);
        return end_own(st, begun, rc, err);
    }
    /* The write lock first: no other booking comes between this one and the
     * total it reads (see fr_store_add_attempt_total). */
    rc = lock_for_total(st, &begun, err);
    if (rc != FR_OK)
        goto cleanup;
    rc = id < 0 ? settle_slot(st, id, a, month, err) : settle_row(st, id, a, err);
    sqlite3_stmt *s = st->stmt[S_ATTEMPT_MONTH];
    if (rc == FR_OK && id > 0) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW)
            fr_store_column_copy(s, 0, month, sizeof month);
        else
            rc = fr_store_db_error(st, err, "cannot read the attempt's month");
        fr_store_done(s);
    }
    if (rc == FR_OK)
        rc = commit_with_total(st, begun, month, month_total, err);
cleanup:
    if (rc != FR_OK && begun)
        fr_store_rollback(st);
    return rc;
}
