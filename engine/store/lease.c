/* The leases of the monthly and the daily cap: a run leases a share of a
 * period's cap (a month "YYYY-MM" or a day "YYYY-MM-DD") before it spends, in one BEGIN IMMEDIATE
 * transaction, so two processes leasing at once are served one after the other; leases of dead
 * processes are reclaimed (their runs marked crashed), and a run releases what it did not spend
 * when it ends. */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads the open leases of period `month` into *rows (owned by the caller, free()). */
static int open_leases(fr_store *st, const char *month, const char *run_id,
                       fr_store_lease_row **rows, size_t *n, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_OPEN_LEASES];
    fr_store_bind_text(s, 1, month);
    size_t cap = 0;
    int step;
    *rows = NULL;
    *n = 0;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *rows = fr_xrealloc(*rows, cap * sizeof **rows);
        }
        fr_store_lease_row *l = &(*rows)[(*n)++];
        l->id = sqlite3_column_int64(s, 0);
        const unsigned char *run = sqlite3_column_text(s, 1);
        l->same_run = run_id && run && strcmp((const char *)run, run_id) == 0;
        fr_store_read_holder(s, 1, l);
        l->amount = sqlite3_column_double(s, 5);
        l->spent = sqlite3_column_double(s, 6);
    }
    int rc =
        step == SQLITE_DONE ? FR_OK : fr_store_db_error(st, err, "cannot read the period's leases");
    fr_store_done(s);
    return rc;
}

/* Begins a transaction and reads the month's spend and open leases from its
 * one snapshot; see store_int.h. */
int fr_store_lease_snapshot(fr_store *st, enum fr_store_stmt begin, const char *month,
                            const char *run_id, double *spent, fr_store_lease_row **rows, size_t *n,
                            fr_error *err)
{
    *rows = NULL;
    *n = 0;
    int rc = fr_store_own_txn(st, err); /* this transaction is the call's own */
    if (rc != FR_OK)
        return rc;
    rc = fr_store_exec(st, begin,
                       begin == S_BEGIN ? "cannot read the state database"
                                        : "cannot lock the state database",
                       err);
    if (rc != FR_OK)
        return rc;
    rc = fr_store_month_total(st, S_MONTH_SPENT, month, spent, err);
    if (rc == FR_OK)
        rc = open_leases(st, month, run_id, rows, n, err);
    if (rc != FR_OK) {
        fr_store_rollback(st);
        free(*rows);
        *rows = NULL;
        *n = 0;
    }
    return rc;
}

/* Closes lease `id` now, `how` (borrowed) "released" or "reclaimed",
 * keeping what its run spent in its month. */
static int close_lease(fr_store *st, sqlite3_int64 id, const char *how, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_LEASE_CLOSE];
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, fr_store_now(st));
    fr_store_bind_text(s, 3, how);
    return fr_store_exec(st, S_LEASE_CLOSE, "cannot close a lease", err);
}

/* Checks fr_store_lease's arguments; see store.h. */
static int check_lease_args(const fr_store *st, const char *month, double cap, double want,
                            const char *run_id, double *granted, fr_error *err)
{
    int rc = fr_store_check_period(st, month, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id || !*run_id || !granted)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a lease needs a run id");
    if (!fr_store_valid_usd(cap) || !fr_store_valid_usd(want))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "a lease needs a cap and an amount that are numbers >= 0");
    return FR_OK;
}

/* Leases a share of a period's cap; see store.h. */
int fr_store_lease(fr_store *st, const char *month, double cap, double want, const char *run_id,
                   double *granted, fr_error *err)
{
    fr_store_lease_row *rows = NULL, *own = NULL;
    size_t n = 0;
    double spent = 0, outstanding = 0, grant = 0;
    bool begun = false;
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = check_lease_args(st, month, cap, want, run_id, granted, err);
    if (rc != FR_OK)
        goto cleanup;
    /* The write lock is taken before the first read: whoever leases next
     * waits for this commit and then sees this grant. */
    rc = fr_store_lease_snapshot(st, S_BEGIN_IMMEDIATE, month, run_id, &spent, &rows, &n, err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    for (size_t i = 0; i < n; i++) {
        fr_store_lease_row *l = &rows[i];
        if (!fr_store_holder_alive(st, l)) {
            /* Its attempts stay in `spent`, those in flight at their worst
             * case; its unspent rest is free again, and its run crashed. */
            rc = fr_store_crash_run(st, l->run, err);
            if (rc == FR_OK)
                rc = close_lease(st, l->id, "reclaimed", err);
            if (rc != FR_OK)
                goto cleanup;
            continue;
        }
        if (l->same_run) {
            if (!fr_store_held_here(st, l)) {
                rc = fr_error_set(err, FR_EINVAL, st->path, 0,
                                  "run %s holds a lease of %s in another process (%lld)", run_id,
                                  month, (long long)l->pid);
                goto cleanup;
            }
            own = l;
        }
        outstanding += fmax(0, l->amount - l->spent);
    }
    grant = fmin(want, cap - spent - outstanding);
    if (!(grant > 0))
        grant = 0;
    sqlite3_stmt *s;
    if (own) {
        s = st->stmt[S_LEASE_GROW];
        sqlite3_bind_int64(s, 1, own->id);
        sqlite3_bind_double(s, 2, grant);
        rc = fr_store_exec(st, S_LEASE_GROW, "cannot grow the lease", err);
    } else {
        s = st->stmt[S_LEASE_NEW];
        fr_store_bind_text(s, 1, run_id);
        fr_store_bind_text(s, 2, month);
        sqlite3_bind_double(s, 3, grant);
        sqlite3_bind_int64(s, 4, st->pid);
        sqlite3_bind_int64(s, 5, (sqlite3_int64)st->pid_start);
        fr_store_bind_text(s, 6, st->boot_id);
        sqlite3_bind_double(s, 7, fr_store_now(st));
        rc = sqlite3_step(s) == SQLITE_DONE
                 ? FR_OK
                 : fr_store_insert_error(st, err, run_id, "cannot open a lease");
        fr_store_done(s);
    }
    if (rc != FR_OK)
        goto cleanup;
    rc = fr_store_exec(st, S_COMMIT, "cannot commit the lease", err);
    if (rc != FR_OK)
        goto cleanup;
    *granted = grant;
cleanup:
    if (rc != FR_OK && begun)
        fr_store_rollback(st);
    free(rows);
    return rc;
}

/* Ends a run's leases; see store.h. */
int fr_store_release(fr_store *st, const char *run_id, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!run_id)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "a release needs a run id");
    rc = fr_store_own_txn(st, err); /* what the run spent is committed before its rest is free */
    if (rc != FR_OK)
        return rc;
    sqlite3_stmt *s = st->stmt[S_RELEASE];
    fr_store_bind_text(s, 1, run_id);
    sqlite3_bind_double(s, 2, fr_store_now(st));
    sqlite3_bind_int64(s, 3, st->pid);
    sqlite3_bind_int64(s, 4, (sqlite3_int64)st->pid_start);
    fr_store_bind_text(s, 5, st->boot_id);
    return fr_store_exec(st, S_RELEASE, "cannot release the lease", err);
}
