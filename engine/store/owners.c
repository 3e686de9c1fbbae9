/* The owners: the flowrun processes using the store, each with a lease of
 * FR_STORE_OWNER_LEASE_S pushed on by its heartbeat, and the slots of
 * shared endpoints they hold: a priced request's is its in-flight attempt,
 * a $0 one's is in its owner's count of the endpoint and model
 * (owner_slots; its row is booked when it ends). A dead owner (expired,
 * or its process gone on this host) holds no slot: what its attempts
 * reserved stays charged until a run or lease reclaims them (ledger.c),
 * but its capacity is free again. */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Owners whose lease ran out this long ago are removed at the next
 * registration: their rows only said who held what. */
#define OWNER_PRUNE_S 86400.0

/* Makes a new owner id into st->owner_id: 64 random bits and the pid. */
static void make_owner_id(fr_store *st)
{
    uint64_t bits = 0;
    if (getrandom(&bits, sizeof bits, GRND_NONBLOCK) != (ssize_t)sizeof bits) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        bits = (uint64_t)ts.tv_nsec ^ ((uint64_t)st->pid << 32);
    }
    snprintf(st->owner_id, sizeof st->owner_id, "%016llx-%ld", (unsigned long long)bits,
             (long)st->pid);
}

/* Registers this process as an owner; see store.h. */
int fr_store_owner_begin(fr_store *st, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK || st->owner_id[0])
        return rc;
    if (gethostname(st->real_host, sizeof st->real_host) != 0)
        st->real_host[0] = '\0';
    st->real_host[sizeof st->real_host - 1] = '\0';
    make_owner_id(st);
    double now = fr_store_now(st);
    rc = fr_store_own_txn(st, err);
    if (rc == FR_OK)
        rc = fr_store_exec(st, S_BEGIN_IMMEDIATE, "cannot lock the state database", err);
    if (rc == FR_OK) {
        sqlite3_bind_double(st->stmt[S_OWNER_PRUNE], 1, now - OWNER_PRUNE_S);
        rc = fr_store_exec(st, S_OWNER_PRUNE, "cannot remove the owners long gone", err);
    }
    if (rc == FR_OK) {
        sqlite3_stmt *s = st->stmt[S_OWNER_NEW];
        fr_store_bind_text(s, 1, st->owner_id);
        sqlite3_bind_int64(s, 2, st->pid);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)st->pid_start);
        fr_store_bind_text(s, 4, st->boot_id);
        fr_store_bind_text(s, 5, st->user_name);
        fr_store_bind_text(s, 6, st->real_host);
        sqlite3_bind_double(s, 7, now);
        sqlite3_bind_double(s, 8, now + FR_STORE_OWNER_LEASE_S);
        rc = fr_store_exec(st, S_OWNER_NEW, "cannot register this process", err);
    }
    if (rc == FR_OK)
        rc = fr_store_exec(st, S_COMMIT, "cannot commit the owner", err);
    if (rc == FR_OK) {
        st->owner_beat = now;
    } else {
        fr_store_rollback(st);
        st->owner_id[0] = '\0';
    }
    return rc;
}

/* Writes this owner's heartbeat now, inside whatever transaction is open. */
static int beat(fr_store *st, fr_error *err)
{
    double now = fr_store_now(st);
    sqlite3_stmt *s = st->stmt[S_OWNER_BEAT];
    fr_store_bind_text(s, 1, st->owner_id);
    sqlite3_bind_double(s, 2, now);
    sqlite3_bind_double(s, 3, now + FR_STORE_OWNER_LEASE_S);
    int rc = fr_store_exec(st, S_OWNER_BEAT, "cannot write this process's heartbeat", err);
    if (rc == FR_OK)
        st->owner_beat = now;
    return rc;
}

/* Pushes the owner's expiry on; see store.h. */
int fr_store_owner_beat(fr_store *st, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK || !st->owner_id[0])
        return rc;
    rc = fr_store_batch_join(st, err);
    return rc == FR_OK ? beat(st, err) : rc;
}

/* Pushes the owner's expiry on when a heartbeat is due; see store_int.h. */
int fr_store_owner_fresh(fr_store *st, fr_error *err)
{
    if (!st->owner_id[0] || fr_store_now(st) - st->owner_beat < FR_STORE_OWNER_BEAT_MS / 1000.0)
        return FR_OK;
    return beat(st, err);
}

/* Removes the owner row; see store.h. */
int fr_store_owner_end(fr_store *st, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK || !st->owner_id[0])
        return rc;
    rc = fr_store_batch_join(st, err);
    if (rc == FR_OK) {
        fr_store_bind_text(st->stmt[S_OWNER_END], 1, st->owner_id);
        rc = fr_store_exec(st, S_OWNER_END, "cannot remove this process's owner row", err);
    }
    if (rc == FR_OK) {
        st->owner_id[0] = '\0';
        fr_store_slots_forget(st, true); /* its counts went with its row */
    }
    return rc;
}

/* This process's owner id; see store.h. */
const char *fr_store_owner_id(const fr_store *st)
{
    return st->owner_id;
}

/* True when the owner of row `s` (columns: id, pid, pid_start, boot_id,
 * host, expires), another process's, holds its slots: its lease has not
 * run out and, on this host, its process is there. */
static bool owner_holds(const fr_store *st, sqlite3_stmt *s, double now)
{
    if (sqlite3_column_double(s, 5) <= now)
        return false;
    const unsigned char *host = sqlite3_column_text(s, 4);
    if (!st->real_host[0] || !host || strcmp((const char *)host, st->real_host) != 0)
        return true; /* another host's process: its lease alone tells */
    fr_store_lease_row l = {0};
    l.pid = sqlite3_column_int64(s, 1);
    l.start = (unsigned long long)sqlite3_column_int64(s, 2);
    fr_store_column_copy(s, 3, l.boot, sizeof l.boot);
    return fr_store_holder_alive(st, &l);
}

/* Counts the slots of an endpoint held now by the other owners, and
 * whether one that waits comes first; see store_int.h. */
int fr_store_slots_held(fr_store *st, const char *endpoint, const char *model, long own,
                        double since, long *held, bool *yield, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_SLOTS_HELD];
    double now = fr_store_now(st);
    long n = 0;
    int step;
    *yield = false;
    fr_store_bind_text(s, 1, endpoint);
    fr_store_bind_text(s, 2, model);
    fr_store_bind_text(s, 3, st->owner_id); /* this owner's rows: its caller counts them */
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        long k = (long)sqlite3_column_int64(s, 6);
        bool waits = sqlite3_column_type(s, 7) != SQLITE_NULL;
        if ((k <= 0 && !waits) || !owner_holds(st, s, now))
            continue;
        if (k > 0)
            n += k;
        if (waits && !*yield) {
            double other = sqlite3_column_double(s, 7);
            const char *id = (const char *)sqlite3_column_text(s, 0);
            *yield = k < own ||
                     (k == own &&
                      (other < since || (other == since && id && strcmp(id, st->owner_id) < 0)));
        }
    }
    int rc =
        step == SQLITE_DONE ? FR_OK : fr_store_db_error(st, err, "cannot count the slots held");
    fr_store_done(s);
    *held = n;
    return rc;
}

/* ---- $0 slots: counted per owner ------------------------------------------ */

/* A handle is -(seq << 16 | index + 1): the slot's count at index. */
#define SLOT_INDEX_BITS 16
#define SLOT_INDEX_MAX  ((1 << SLOT_INDEX_BITS) - 1)

static bool same_model(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The written count of this owner's $0 slots, or the caller's write now
 * when no batch holds it (then written with the caller's transaction). */
static int slots_written(fr_store *st, fr_error *err)
{
    return st->batching && st->pending ? FR_OK : fr_store_slots_write(st, err);
}

/* Sets *index to the count of `endpoint` and `model` (borrowed), made
 * when there is none. FR_OK, or FR_ELIMIT past SLOT_INDEX_MAX of them. */
static int sum_of(fr_store *st, const char *endpoint, const char *model, size_t *index,
                  fr_error *err)
{
    size_t i = 0;
    while (i < st->nslot_sums && !(strcmp(st->slot_sums[i].endpoint, endpoint) == 0 &&
                                   same_model(st->slot_sums[i].model, model)))
        i++;
    if (i == st->nslot_sums) {
        if (i >= SLOT_INDEX_MAX)
            return fr_error_set(err, FR_ELIMIT, st->path, 0,
                                "more than %d shared endpoints and models hold slots",
                                SLOT_INDEX_MAX);
        if (st->nslot_sums == st->capslot_sums) {
            st->capslot_sums = st->capslot_sums ? st->capslot_sums * 2 : 4;
            st->slot_sums = fr_xrealloc(st->slot_sums, st->capslot_sums * sizeof *st->slot_sums);
        }
        st->slot_sums[st->nslot_sums++] =
            (fr_store_slot_sum){.endpoint = fr_xstrdup(endpoint),
                                .model = model ? fr_xstrdup(model) : NULL,
                                .written = -1,
                                .since_written = -1};
    }
    *index = i;
    return FR_OK;
}

/* Takes a $0 slot; see store_int.h. */
int fr_store_slot_take(fr_store *st, const fr_attempt_rec *a, long long *handle, fr_error *err)
{
    size_t i = 0;
    int rc = sum_of(st, a->endpoint, a->model, &i, err);
    if (rc != FR_OK)
        return rc;
    st->slot_sums[i].held++;
    st->slot_seq++;
    *handle = -(((st->slot_seq & 0x7fffffffffffLL) << SLOT_INDEX_BITS) | (long long)(i + 1));
    return slots_written(st, err);
}

/* Frees a $0 slot; see store_int.h. */
int fr_store_slot_give(fr_store *st, long long handle, fr_error *err)
{
    size_t i = handle < 0 ? (size_t)((-handle) & SLOT_INDEX_MAX) : 0;
    if (i == 0 || i > st->nslot_sums || st->slot_sums[i - 1].held <= 0)
        return fr_error_set(err, FR_EINVAL, st->path, 0, "slot %lld is not held by this process",
                            handle);
    st->slot_sums[i - 1].held--;
    return slots_written(st, err);
}

/* Says since when this owner waits for a slot; see store.h. */
int fr_store_slot_waiting(fr_store *st, const char *endpoint, const char *model, double since,
                          fr_error *err)
{
    size_t i = 0;
    if (!st->owner_id[0])
        return FR_OK; /* no owner row: nobody reads it */
    int rc = sum_of(st, endpoint, model, &i, err);
    if (rc != FR_OK)
        return rc;
    st->slot_sums[i].since = since > 0 ? since : 0;
    return st->slot_sums[i].since == st->slot_sums[i].since_written ? FR_OK
                                                                    : slots_written(st, err);
}

/* Writes the changed counts; see store_int.h. */
int fr_store_slots_write(fr_store *st, fr_error *err)
{
    int rc = FR_OK;
    if (!st->owner_id[0])
        return rc; /* no owner row: nothing counts them */
    for (size_t i = 0; i < st->nslot_sums && rc == FR_OK; i++) {
        fr_store_slot_sum *c = &st->slot_sums[i];
        if (c->held == c->written && c->since == c->since_written)
            continue; /* its row holds it already */
        sqlite3_stmt *s = st->stmt[S_SLOTS_SET];
        fr_store_bind_text(s, 1, st->owner_id);
        fr_store_bind_text(s, 2, c->endpoint);
        fr_store_bind_text(s, 3, c->model);
        sqlite3_bind_int64(s, 4, c->held);
        if (c->since > 0)
            sqlite3_bind_double(s, 5, c->since);
        else
            sqlite3_bind_null(s, 5);
        rc = fr_store_exec(st, S_SLOTS_SET, "cannot count this process's slots", err);
        c->written = rc == FR_OK ? c->held : -1;
        c->since_written = rc == FR_OK ? c->since : -1;
    }
    return rc;
}

/* Forgets or marks the counts for writing again; see store_int.h. */
void fr_store_slots_forget(fr_store *st, bool free_all)
{
    for (size_t i = 0; i < st->nslot_sums; i++) {
        st->slot_sums[i].written = -1;
        st->slot_sums[i].since_written = -1;
        if (free_all) {
            free(st->slot_sums[i].endpoint);
            free(st->slot_sums[i].model);
        }
    }
    if (free_all) {
        free(st->slot_sums);
        st->slot_sums = NULL;
        st->nslot_sums = st->capslot_sums = 0;
    }
}
