#include "engine/booking_int.h"

#include "engine/history.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How long a retry waits at first after a lock held elsewhere timed out,
 * doubled each time up to the second bound; a refused slot is asked again
 * on the store's wake or after SLOT_RETRY_MS plus jitter. */
#define LOCK_BACKOFF_MIN_MS 20
#define LOCK_BACKOFF_MAX_MS 1000
#define SLOT_RETRY_MS       20
#define SLOT_JITTER_MS      30
/* How many times a reservation the fence refused leases again before it is
 * refused as over the cap (each lease asks for its worst case). */
#define RELET_ROUNDS 3

enum op_kind { OP_WRITE, OP_RESERVE, OP_SETTLE, OP_LEASE, OP_RELET };
/* The books' own writes (OP_WRITE). */
enum write_kind { W_BEGIN, W_END, W_RELEASE, W_REPORT };

/* One operation of the books, alive until its completion (or its last
 * retry's). The record's strings are copies: it may be sent again. */
typedef struct op op;
struct op {
    op *prev, *next; /* the books' list of operations unanswered */
    fr_pgbooks *p;
    enum op_kind kind;
    fr_attempt_rec rec;
    char *strs[8];
    int max;            /* OP_RESERVE: the endpoint's max_parallel, 0 for none */
    fr_booking_wait *w; /* OP_RESERVE: the parked request, NULL once taken back */
    long long *row;     /* ... and where its row goes */
    bool refused;       /* OP_RESERVE: refused for capacity, waits for a slot */
    bool counted;       /* ... for slots other processes hold (a capacity wait) */
    bool turn; /* ... a tool loop's later turn: its answer is kept (rc) for the caller's next ask */
    uint64_t since;    /* uv_now of the run's loop when first refused */
    double wait_unix;  /* ... and the store's clock then, when counted (slot_waits) */
    fr_budget *budget; /* OP_SETTLE: told the month's total */
    bool want_total;   /* ... when it asked for it */
    double at_ms;
    fr_history *history; /* ... and the routing history, once durable */
    bool with_reserve;   /* OP_SETTLE of an attempt not reserved before: both, in order */
    fr_cap_kind period;  /* OP_LEASE, OP_RELET */
    op *of;              /* OP_RELET: the reservation it leases for */
    int relets;          /* OP_RESERVE: leases asked for it and unanswered */
    int rounds;          /* ... rounds of them so far */
    bool short_of;       /* ... one granted less than its worst case */
    char key[16];
    double cap, want;
    bool held;             /* OP_LEASE: sent once the run's row is durable */
    int tries;             /* sent again after a lock timeout so far */
    uint64_t due;          /* uv_now of the private loop when it is sent again; 0: not waiting */
    enum write_kind write; /* OP_WRITE: which, its strings in strs */
    int code;              /* ... W_END's exit code */
    bool done;             /* ... answered */
    int rc;                /* ... how it ended */
    fr_error err;
};

/* A lease of one period: none asked, asked and unanswered, or answered
 * and not yet taken by the budget. */
enum lease_state { LEASE_IDLE, LEASE_ASKING, LEASE_ANSWERED };

struct fr_pgbooks {
    fr_booking *owner;
    uv_loop_t inner; /* the store's loop */
    fr_pgstore *s;
    char *run_id;
    bool open_done;
    int open_rc;
    fr_error open_err;
    uv_timer_t retry;    /* on `inner`: the retries' clock */
    uv_timer_t deadline; /* on `inner`: bounds a run to completion */
    bool expired;
    /* Attached to the run's loop: */
    uv_loop_t *outer;
    uv_poll_t *poll;
    uv_timer_t *timer;
    uv_prepare_t *prep;
    bool driving;
    op *head, *tail; /* operations unanswered */
    size_t nops;
    struct {
        enum lease_state state;
        double granted;
        int rc;
        fr_error err;
    } lease[FR_CAP_COUNT];
    /* The periods whose caps the run leased (FR_PGSTORE_FENCE_*): its
     * reservations are fenced by its shares of them. */
    int fence;
    char period_key[FR_CAP_COUNT][16];
    double period_cap[FR_CAP_COUNT];
    int over_cap; /* a later turn was refused as over these caps (fr_pgbooks_over_cap) */
    long long next_row;
    uint32_t jitter;
    bool begun; /* the run's row is durable */
    bool down;
    uint64_t down_since;
    fr_store_info info;
};

/* ---- operations ------------------------------------------------------------ */

static op *op_new(fr_pgbooks *p, enum op_kind kind)
{
    op *o = fr_xcalloc(1, sizeof *o);
    o->p = p;
    o->kind = kind;
    o->prev = p->tail;
    if (p->tail)
        p->tail->next = o;
    else
        p->head = o;
    p->tail = o;
    p->nops++;
    return o;
}

static void publish_wait(fr_pgbooks *p, const char *endpoint);
static void failed(fr_pgbooks *p, int rc, const fr_error *err);

static void op_free(op *o)
{
    fr_pgbooks *p = o->p;
    /* A request that waited for slots others hold waits no more. */
    char *waited = NULL;
    if (o->kind == OP_RESERVE && o->counted && !o->done) {
        waited = o->strs[2]; /* rec.endpoint's copy (op_keep) */
        o->strs[2] = NULL;
    }
    if (o->prev)
        o->prev->next = o->next;
    else
        p->head = o->next;
    if (o->next)
        o->next->prev = o->prev;
    else
        p->tail = o->prev;
    p->nops--;
    for (size_t i = 0; i < sizeof o->strs / sizeof o->strs[0]; i++)
        free(o->strs[i]);
    free(o);
    if (waited)
        publish_wait(p, waited);
    free(waited);
}

/* Copies `a` (borrowed) into `o`, its strings too. */
static void op_keep(op *o, const fr_attempt_rec *a)
{
    o->rec = *a;
    const char **f[] = {&o->rec.run_id, &o->rec.task,    &o->rec.endpoint, &o->rec.tier,
                        &o->rec.model,  &o->rec.outcome, &o->rec.error,    &o->rec.type};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        o->strs[i] = *f[i] ? fr_xstrdup(*f[i]) : NULL;
        *f[i] = o->strs[i];
    }
}

/* The books are attached and the run's loop may be told things. */
static bool live(const fr_pgbooks *p)
{
    return p->outer != NULL;
}

static void rearm(fr_pgbooks *p);
static int send_op(op *o);
static void sweep(fr_pgbooks *p);

/* Tells the store since when this process's oldest request for a slot of
 * `endpoint` (borrowed) waits for slots other processes hold, or that none
 * does: another process that frees a slot leaves it to one that waits and
 * holds fewer (fr_pgstore_slot_waiting). */
static void publish_wait(fr_pgbooks *p, const char *endpoint)
{
    if (!p->s)
        return; /* the store is closed: its owner's rows went with it */
    double since = 0;
    for (const op *o = p->head; o; o = o->next)
        if (o->kind == OP_RESERVE && o->counted && !o->done &&
            strcmp(o->rec.endpoint, endpoint) == 0 && (since == 0 || o->wait_unix < since))
            since = o->wait_unix;
    int rc = fr_pgstore_slot_waiting(p->s, endpoint, since);
    if (rc != FR_OK && rc != FR_ECANCELED)
        failed(p, rc, NULL);
}

/* A lock held by another session outlived the lock or statement timeout:
 * the operation is sent again after a short backoff (nothing was written). */
static void retry_later(op *o)
{
    fr_pgbooks *p = o->p;
    int ms = LOCK_BACKOFF_MIN_MS << (o->tries < 6 ? o->tries : 6);
    if (ms > LOCK_BACKOFF_MAX_MS)
        ms = LOCK_BACKOFF_MAX_MS;
    o->tries++;
    p->info.lock_retries++;
    o->due = uv_now(&p->inner) + (uint64_t)ms;
    fr_log_event(FR_LOG_DEBUG, "store", "store.lock_retry",
                 "a lock held by another session timed out; sent again in %d ms", ms);
    rearm(p);
}

/* A slot refused: asked again on the store's wake, or soon. */
/* True while a settle of this process on `endpoint` is unanswered: the
 * slot it frees is not free in the store yet. */
static bool settling(const fr_pgbooks *p, const char *endpoint)
{
    for (const op *o = p->head; o; o = o->next)
        if (o->kind == OP_SETTLE && strcmp(o->rec.endpoint, endpoint) == 0)
            return true;
    return false;
}

static void slot_later(op *o)
{
    fr_pgbooks *p = o->p;
    p->jitter ^= p->jitter << 13;
    p->jitter ^= p->jitter >> 17;
    p->jitter ^= p->jitter << 5;
    o->due = uv_now(&p->inner) + SLOT_RETRY_MS + p->jitter % (SLOT_JITTER_MS + 1);
    if (!o->refused) {
        o->refused = true;
        fr_pgstore_wait(p->s, o->rec.endpoint);
    }
    if (!o->counted && !settling(p, o->rec.endpoint)) {
        /* Not a slot of this process's own that is being settled: other
         * processes hold them, and the wait counts from here. */
        o->counted = true;
        o->since = p->outer ? uv_now(p->outer) : 0;
        o->wait_unix = fr_pgstore_clock(p->s);
        publish_wait(p, o->rec.endpoint);
        if (o->w)
            o->w->queued = true;
        p->info.capacity_waits++;
        fr_log_event(FR_LOG_DEBUG, "store", "slot.wait",
                     "task=%s endpoint=%s max_parallel=%d: its slots are held by other processes",
                     o->rec.task, o->rec.endpoint, o->max);
    }
    rearm(p);
}

/* True when `rc` (with `err`, may be NULL) says a lock held by another
 * session got in the way: the lock or statement timeout, or a deadlock or
 * serialization failure the store's own retries did not get past. Nothing
 * of the transaction was written: it may be sent again. */
static bool lock_conflict(int rc, const fr_error *err)
{
    return rc == FR_ETIMEDOUT ||
           (rc != FR_OK && err && (strstr(err->msg, "40P01") || strstr(err->msg, "40001")));
}

static void failed(fr_pgbooks *p, int rc, const fr_error *err)
{
    fr_error e = {0};
    if (!err) {
        fr_error_set(&e, rc, NULL, 0, "%s", fr_strerror(rc));
        err = &e;
    }
    fr_booking_write_failed(p->owner, err);
}

static void on_write(void *ud, int rc, const fr_error *err)
{
    op *o = ud;
    if (lock_conflict(rc, err)) {
        retry_later(o);
        return;
    }
    if (rc == FR_OK && o->write == W_BEGIN) {
        o->p->begun = true;
        for (op *l = o->p->head; l; l = l->next)
            if (l->kind == OP_LEASE && l->held) {
                l->held = false;
                send_op(l);
            }
    }
    o->rc = rc;
    if (rc != FR_OK) {
        if (err)
            o->err = *err;
        else
            fr_error_set(&o->err, rc, NULL, 0, "%s", fr_strerror(rc));
        failed(o->p, rc, &o->err);
    }
    o->due = 0;
    o->done = true; /* its maker reads rc, then it is swept */
}

static void relet(op *o);

/* The caps a refused reservation was over: the run's fenced periods. */
static int over_of(const fr_pgbooks *p)
{
    return ((p->fence & FR_PGSTORE_FENCE_MONTH) ? FR_OVER_MONTH : 0) |
           ((p->fence & FR_PGSTORE_FENCE_DAY) ? FR_OVER_DAY : 0);
}

/* The fence of a reservation: the run's shares of its leased periods
 * cover a paid request; a request of $0 spends none of them. */
static int fence_of(const fr_pgbooks *p, const fr_attempt_rec *a)
{
    return a->cost_usd > 0 ? p->fence : 0;
}

static void on_reserved(void *ud, int rc, const fr_error *err)
{
    op *o = ud;
    fr_pgbooks *p = o->p;
    if (lock_conflict(rc, err)) {
        retry_later(o);
        return;
    }
    if (rc == FR_ELIMIT && o->w) {
        slot_later(o);
        return;
    }
    if (rc == FR_EBUDGET && !o->short_of && o->rounds < RELET_ROUNDS) {
        relet(o);
        return;
    }
    bool other = rc != FR_OK && rc != FR_ELIMIT && rc != FR_EBUDGET;
    if (o->turn) {
        if (other)
            failed(p, rc, err);
        o->rc = rc;
        o->done = true; /* the turn asks again (fr_pgbooks_reserve) */
        if (o->counted)
            publish_wait(p, o->rec.endpoint);
        return;
    }
    fr_booking_wait *w = o->w;
    if (other)
        failed(p, rc, err);
    if (w) {
        w->parked = w->queued = false;
        w->over_cap = rc == FR_EBUDGET ? over_of(p) : 0;
        if (rc == FR_OK)
            *o->row = ++p->next_row;
        if (o->counted && p->outer) {
            w->waited_ms = (double)(uv_now(p->outer) - o->since);
            if (w->waited_ms <= 0)
                w->waited_ms = 1;
        }
    }
    op_free(o);
    if (w && live(p))
        w->go(w->ud, rc == FR_OK && !fr_booking_failed(p->owner));
}

/* Sends the refused reservations of `endpoint` again now. */
static void on_wake(void *ud, const char *endpoint)
{
    fr_pgbooks *p = ud;
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->kind == OP_RESERVE && o->refused && o->due && strcmp(o->rec.endpoint, endpoint) == 0)
            send_op(o);
    }
}

static void on_settled(void *ud, int rc, double total, const fr_error *err)
{
    op *o = ud;
    fr_pgbooks *p = o->p;
    if (lock_conflict(rc, err)) {
        retry_later(o);
        return;
    }
    if (rc == FR_OK) {
        if (o->want_total && o->budget)
            fr_budget_month_booked(o->budget, total, o->rec.cost_usd, o->at_ms);
        fr_history_add(o->history, &o->rec, time(NULL));
    } else
        failed(p, rc, err);
    char *endpoint = fr_xstrdup(o->rec.endpoint);
    op_free(o);
    on_wake(p, endpoint); /* a slot of ours came free */
    free(endpoint);
}

static void on_lease(void *ud, int rc, double granted, const fr_error *err)
{
    op *o = ud;
    fr_pgbooks *p = o->p;
    if (lock_conflict(rc, err)) {
        retry_later(o);
        return;
    }
    p->lease[o->period].state = LEASE_ANSWERED;
    p->lease[o->period].granted = rc == FR_OK ? granted : 0;
    p->lease[o->period].rc = rc;
    if (rc != FR_OK) {
        if (err)
            p->lease[o->period].err = *err;
        else
            fr_error_set(&p->lease[o->period].err, rc, NULL, 0, "%s", fr_strerror(rc));
    }
    op_free(o);
    if (live(p))
        fr_booking_woken(p->owner);
}

/* A lease asked again for a reservation the fence refused came back: once
 * every one is, the reservation is sent again, or refused as over the cap
 * when a period had less left than its worst case. */
static void on_relet(void *ud, int rc, double granted, const fr_error *err)
{
    op *l = ud;
    if (lock_conflict(rc, err)) {
        retry_later(l);
        return;
    }
    op *o = l->of;
    if (rc != FR_OK || granted + 1e-9 < o->rec.cost_usd)
        o->short_of = true;
    if (rc != FR_OK)
        fr_log_event(FR_LOG_WARN, "budget", "budget.error",
                     "error=\"%s\"; the request waits no more", err ? err->msg : fr_strerror(rc));
    op_free(l);
    if (--o->relets > 0)
        return;
    if (!o->w && !o->turn) { /* taken back meanwhile: nothing waits for it */
        op_free(o);
        return;
    }
    if (o->short_of) {
        fr_error e = {0};
        fr_error_set(&e, FR_EBUDGET, NULL, 0, "over the cap");
        on_reserved(o, FR_EBUDGET, &e);
    } else {
        send_op(o);
    }
}

/* The fence refused reservation `o`: the run's share of a capped period no
 * longer covers it (another process reclaimed the share while this one
 * looked dead, or it was spent): each fenced period is leased again for
 * its worst case, then `o` is sent again. */
static void relet(op *o)
{
    fr_pgbooks *p = o->p;
    o->rounds++;
    fr_log_event(FR_LOG_WARN, "budget", "budget.relet",
                 "task=%s endpoint=%s: the run's share of the shared cap does not cover the "
                 "request (taken back while this process looked dead, or spent); leasing again",
                 o->rec.task, o->rec.endpoint);
    for (int k = FR_CAP_MONTH; k < FR_CAP_COUNT; k++) {
        if (!(p->fence & (k == FR_CAP_MONTH ? FR_PGSTORE_FENCE_MONTH : FR_PGSTORE_FENCE_DAY)))
            continue;
        op *l = op_new(p, OP_RELET);
        l->of = o;
        l->period = (fr_cap_kind)k;
        snprintf(l->key, sizeof l->key, "%s", p->period_key[k]);
        l->cap = p->period_cap[k];
        l->want = o->rec.cost_usd;
        o->relets++;
        send_op(l);
    }
    if (o->relets == 0) { /* nothing fenced: cannot be */
        o->short_of = true;
        fr_error e = {0};
        fr_error_set(&e, FR_EBUDGET, NULL, 0, "over the cap");
        on_reserved(o, FR_EBUDGET, &e);
    }
}

/* The reserve half of a settle without a reservation: its completion is
 * the settle's (same transaction, in order). */
static void on_pre_reserve(void *ud, int rc, const fr_error *err)
{
    (void)ud;
    (void)rc;
    (void)err;
}

/* Sends `o` (again). FR_OK, or the error already handled. */
static int send_op(op *o)
{
    fr_pgbooks *p = o->p;
    int rc = FR_OK;
    o->due = 0;
    switch (o->kind) {
    case OP_RESERVE:
        rc = fr_pgstore_reserve_fenced(p->s, &o->rec, o->max, fence_of(p, &o->rec), on_reserved, o);
        break;
    case OP_SETTLE:
        if (o->with_reserve)
            rc = fr_pgstore_reserve(p->s, &o->rec, 0, on_pre_reserve, NULL);
        if (rc == FR_OK)
            rc = fr_pgstore_settle(p->s, &o->rec, o->want_total, on_settled, o);
        break;
    case OP_LEASE:
    case OP_RELET:
        rc = fr_pgstore_lease(p->s, o->key, o->cap, o->want, p->run_id,
                              o->kind == OP_LEASE ? on_lease : on_relet, o);
        break;
    case OP_WRITE:
        rc = o->write == W_BEGIN
                 ? fr_pgstore_run_begin(p->s, p->run_id, o->strs[0], o->strs[1], on_write, o)
             : o->write == W_END
                 ? fr_pgstore_run_end(p->s, p->run_id, o->strs[0], o->code, o->want, on_write, o)
             : o->write == W_RELEASE
                 ? fr_pgstore_release(p->s, p->run_id, on_write, o)
                 : fr_pgstore_report_put(p->s, p->run_id, o->strs[0], o->strs[1], on_write, o);
        break;
    }
    if (rc != FR_OK) {
        fr_error err = {0};
        fr_error_set(&err, rc, NULL, 0, "the shared state store refused a write (%s)",
                     fr_strerror(rc));
        if (o->kind == OP_RESERVE)
            on_reserved(o, rc, &err);
        else if (o->kind == OP_SETTLE)
            on_settled(o, rc, 0, &err);
        else if (o->kind == OP_LEASE)
            on_lease(o, rc, 0, &err);
        else if (o->kind == OP_RELET)
            on_relet(o, rc, 0, &err);
        else
            on_write(o, rc, &err);
    }
    return rc;
}

/* The retries' clock: what is due is sent again. */
static void on_retry(uv_timer_t *h)
{
    fr_pgbooks *p = h->data;
    uint64_t now = uv_now(&p->inner);
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->due && o->due <= now && !o->held)
            send_op(o);
    }
    rearm(p);
}

/* ---- the private loop, driven from the run's ------------------------------ */

static void on_state(void *ud, fr_pgstore_state st, const fr_error *err)
{
    fr_pgbooks *p = ud;
    uv_update_time(&p->inner);
    uint64_t now = uv_now(&p->inner);
    char msg[1400];
    if (st == FR_PGSTORE_DOWN && !p->down) {
        p->down = true;
        p->down_since = now;
        fr_log_event(FR_LOG_WARN, "store", "store.down",
                     "error=\"%s\"; admitted work finishes, new paid work waits for the ledger",
                     err ? fr_error_format(err, msg, sizeof msg) : "unreachable");
    } else if (st == FR_PGSTORE_UP && p->down) {
        p->down = false;
        p->info.reconnects++;
        p->info.down_ms += (double)(now - p->down_since);
        fr_log_event(FR_LOG_INFO, "store", "store.up", "down_ms=%llu; the shared store is back",
                     (unsigned long long)(now - p->down_since));
    }
}

static void on_open(void *ud, int rc, const fr_error *err)
{
    fr_pgbooks *p = ud;
    p->open_done = true;
    p->open_rc = rc;
    if (rc != FR_OK && err)
        p->open_err = *err;
}

static void on_deadline(uv_timer_t *h)
{
    fr_pgbooks *p = h->data;
    p->expired = true;
}

/* Runs the private loop once without waiting, then arms what wakes the run's
 * loop for it. Never re-entered (a completion that asks for more queues
 * it). */
static void drive(fr_pgbooks *p)
{
    if (p->driving)
        return;
    p->driving = true;
    uv_run(&p->inner, UV_RUN_NOWAIT);
    p->driving = false;
    sweep(p);
    rearm(p);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    drive(h->data);
}

static void on_timer(uv_timer_t *h)
{
    drive(h->data);
}

/* The loop is about to block: the turn's writes go out as one transaction. */
static void on_prepare(uv_prepare_t *h)
{
    fr_pgbooks *p = h->data;
    if (fr_pgstore_queued(p->s) > 0)
        fr_pgstore_flush(p->s);
    drive(p);
}

static void rearm(fr_pgbooks *p)
{
    uint64_t now = uv_now(&p->inner), next = 0;
    for (op *o = p->head; o; o = o->next)
        if (o->due && (!next || o->due < next))
            next = o->due;
    if (next)
        uv_timer_start(&p->retry, on_retry, next > now ? next - now : 0, 0);
    else
        uv_timer_stop(&p->retry);
    if (!p->outer || p->driving)
        return;
    int t = uv_backend_timeout(&p->inner);
    if (t >= 0)
        uv_timer_start(p->timer, on_timer, (uint64_t)t, 0);
    else
        uv_timer_stop(p->timer);
    /* The run waits for what the books have asked; it does not wait for
     * the heartbeat alone. */
    if (fr_pgbooks_busy(p) || fr_pgstore_queued(p->s) > 0)
        uv_ref((uv_handle_t *)p->poll);
    else
        uv_unref((uv_handle_t *)p->poll);
}

/* Runs the private loop until every operation of the books is answered,
 * or for at most `ms`; true when all are. */
static bool run_out(fr_pgbooks *p, uint64_t ms)
{
    p->expired = false;
    uv_update_time(&p->inner);
    uv_timer_start(&p->deadline, on_deadline, ms, 0);
    while (!p->expired) {
        if (fr_pgstore_queued(p->s) > 0)
            fr_pgstore_flush(p->s);
        bool pending = false;
        for (op *o = p->head; o; o = o->next)
            pending = pending || !o->done;
        if (!pending)
            break;
        rearm(p);
        uv_run(&p->inner, UV_RUN_ONCE);
    }
    uv_timer_stop(&p->deadline);
    bool all = true;
    for (op *o = p->head; o; o = o->next)
        all = all && o->done;
    return all;
}

/* ---- the books' operations -------------------------------------------------- */

int fr_pgbooks_open(fr_booking *owner, const char *url, const char *run_id, fr_pgbooks **out,
                    fr_error *err)
{
    fr_pgbooks *p = fr_xcalloc(1, sizeof *p);
    p->owner = owner;
    p->run_id = fr_xstrdup(run_id);
    p->jitter = (uint32_t)getpid() * 2654435761u | 1u;
    if (uv_loop_init(&p->inner) != 0) {
        free(p->run_id);
        free(p);
        return fr_error_set(err, FR_ESTORE, NULL, 0, "cannot start the state store's loop");
    }
    uv_timer_init(&p->inner, &p->retry);
    uv_timer_init(&p->inner, &p->deadline);
    p->retry.data = p->deadline.data = p;
    fr_pgstore_opts opts = {.on_state = on_state, .on_wake = on_wake, .ud = p};
    int rc = fr_pgstore_open(&p->inner, url, &opts, on_open, p, &p->s, err);
    if (rc == FR_OK) {
        while (!p->open_done)
            uv_run(&p->inner, UV_RUN_ONCE);
        rc = p->open_rc;
        if (rc != FR_OK) {
            *err = p->open_err;
            if (rc == FR_ECONNECT || rc == FR_ECANCELED)
                rc = FR_ESTORE;
            err->code = rc;
        }
    }
    if (rc != FR_OK) {
        fr_pgbooks_free(p);
        return rc;
    }
    *out = p;
    return FR_OK;
}

void fr_pgbooks_attach(fr_pgbooks *p, uv_loop_t *loop)
{
    p->outer = loop;
    p->poll = fr_xmalloc(sizeof *p->poll);
    p->timer = fr_xmalloc(sizeof *p->timer);
    p->prep = fr_xmalloc(sizeof *p->prep);
    uv_poll_init(loop, p->poll, uv_backend_fd(&p->inner));
    uv_timer_init(loop, p->timer);
    uv_prepare_init(loop, p->prep);
    p->poll->data = p->timer->data = p->prep->data = p;
    uv_poll_start(p->poll, UV_READABLE, on_poll);
    uv_prepare_start(p->prep, on_prepare);
    uv_unref((uv_handle_t *)p->timer);
    uv_unref((uv_handle_t *)p->prep);
    rearm(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    free(h);
}

void fr_pgbooks_detach(fr_pgbooks *p)
{
    if (!p || !p->outer)
        return;
    uv_close((uv_handle_t *)p->poll, on_handle_closed);
    uv_close((uv_handle_t *)p->timer, on_handle_closed);
    uv_close((uv_handle_t *)p->prep, on_handle_closed);
    p->poll = NULL;
    p->timer = NULL;
    p->prep = NULL;
    p->outer = NULL;
    /* No request goes out from now on: those still waiting are taken back. */
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->kind == OP_RESERVE && o->w) {
            o->w->parked = o->w->queued = false;
            o->w = NULL;
        }
        if (o->kind == OP_RESERVE && o->refused && o->due)
            op_free(o); /* nothing was booked for it */
    }
}

fr_pgstore *fr_pgbooks_store(const fr_pgbooks *p)
{
    return p->s;
}

void fr_pgbooks_flush(fr_pgbooks *p)
{
    if (fr_pgstore_queued(p->s) > 0)
        fr_pgstore_flush(p->s);
}

bool fr_pgbooks_busy(const fr_pgbooks *p)
{
    for (const op *o = p ? p->head : NULL; o; o = o->next)
        if (!o->done)
            return true;
    return false;
}

/* Frees the writes that are answered. */
static void sweep(fr_pgbooks *p)
{
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->kind == OP_WRITE && o->done)
            op_free(o);
    }
}

/* Sends a write of the books' own (`a`, `b` borrowed, copied, may be
 * NULL); its completion says whether it is durable (o->done, o->rc). */
static op *write_op(fr_pgbooks *p, enum write_kind kind, const char *a, const char *b)
{
    op *o = op_new(p, OP_WRITE);
    o->write = kind;
    o->strs[0] = a ? fr_xstrdup(a) : NULL;
    o->strs[1] = b ? fr_xstrdup(b) : NULL;
    return o;
}

void fr_pgbooks_begin(fr_pgbooks *p, const char *name, const char *path)
{
    send_op(write_op(p, W_BEGIN, name, path));
}

/* A tool loop's later turn on a shared endpoint: nothing waits, so the
 * first ask sends the reservation and says every slot is held (*row 0);
 * the caller asks again soon and gets the answer then: a row once it is
 * durable, 0 again when it was refused (and a new reservation is sent). */
static bool reserve_turn(fr_pgbooks *p, const fr_attempt_rec *a, int max, long long *row)
{
    for (op *o = p->head; o; o = o->next) {
        if (o->kind != OP_RESERVE || !o->turn || o->rec.attempt != a->attempt ||
            o->rec.turn != a->turn || strcmp(o->rec.task, a->task) != 0)
            continue;
        if (!o->done)
            return true; /* asked, not answered yet */
        int rc = o->rc;
        op_free(o);
        if (rc == FR_OK) {
            *row = ++p->next_row;
            return true;
        }
        if (rc == FR_EBUDGET)
            p->over_cap = over_of(p);
        if (rc != FR_ELIMIT)
            return false;
        break; /* refused: ask again */
    }
    op *o = op_new(p, OP_RESERVE);
    op_keep(o, a);
    o->max = max;
    o->turn = true;
    int rc = fr_pgstore_reserve_fenced(p->s, &o->rec, o->max, fence_of(p, &o->rec), on_reserved, o);
    if (rc != FR_OK) {
        op_free(o);
        failed(p, rc, NULL);
        return false;
    }
    return true;
}

bool fr_pgbooks_reserve(fr_pgbooks *p, const fr_attempt_rec *a, int max, long long *row,
                        fr_booking_wait *w)
{
    sweep(p);
    *row = 0;
    if (w) {
        w->parked = w->queued = false;
        w->waited_ms = 0;
    }
    if (fr_booking_failed(p->owner))
        return false;
    if (!w) /* a tool loop's later turn: held once durable, asked again till then */
        return reserve_turn(p, a, max, row);
    op *o = op_new(p, OP_RESERVE);
    op_keep(o, a);
    o->max = max;
    int rc = fr_pgstore_reserve_fenced(p->s, &o->rec, o->max, fence_of(p, &o->rec), on_reserved, o);
    if (rc != FR_OK) {
        op_free(o);
        failed(p, rc, NULL);
        return false;
    }
    if (live(p)) {
        o->w = w;
        o->row = row;
        w->parked = true;
    } else {
        /* The loop is not running (the run's setup or end): booked as soon
         * as the store answers. */
        *row = ++p->next_row;
    }
    return true;
}

void fr_pgbooks_unpark(fr_pgbooks *p, fr_booking_wait *w)
{
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->kind != OP_RESERVE || o->w != w)
            continue;
        o->w = NULL;
        if (o->refused && o->due)
            op_free(o); /* waiting for a slot: nothing booked */
    }
    w->parked = w->queued = false;
}

void fr_pgbooks_settle(fr_pgbooks *p, long long row, const fr_attempt_rec *a, fr_budget *budget,
                       double at_ms, fr_history *history)
{
    sweep(p);
    op *o = op_new(p, OP_SETTLE);
    op_keep(o, a);
    /* Booked in flight first when it was not (an attempt of $0 on an
     * endpoint not shared), or may not be yet: an idempotent reservation
     * in the settle's transaction, which changes nothing when it was. */
    (void)row;
    o->with_reserve = true;
    o->budget = budget;
    o->want_total = fr_budget_wants_month_total(budget, a->cost_usd);
    o->at_ms = at_ms;
    o->history = history;
    /* Queued in the turn's batch in the order it happened: the budget
     * counted what it did not cost from now on, and a reservation after it
     * in the batch is fenced by the same figures (pgstore.h: every
     * transaction locks a period's row before an endpoint's). */
    send_op(o);
}

int fr_pgbooks_lease(fr_pgbooks *p, fr_cap_kind kind, const char *period, double cap, double want,
                     double *granted, fr_error *err)
{
    if (kind <= FR_CAP_RUN || kind >= FR_CAP_COUNT)
        return fr_error_set(err, FR_EINVAL, NULL, 0, "no such period");
    /* From the first lease of a period on, the run's reservations are
     * fenced by its share of that period's cap. */
    p->fence |= kind == FR_CAP_MONTH ? FR_PGSTORE_FENCE_MONTH : FR_PGSTORE_FENCE_DAY;
    snprintf(p->period_key[kind], sizeof p->period_key[kind], "%s", period);
    p->period_cap[kind] = cap;
    if (p->lease[kind].state == LEASE_ANSWERED) {
        p->lease[kind].state = LEASE_IDLE;
        if (p->lease[kind].rc != FR_OK) {
            *err = p->lease[kind].err;
            return p->lease[kind].rc;
        }
        *granted = p->lease[kind].granted;
        return FR_OK;
    }
    if (p->lease[kind].state == LEASE_IDLE) {
        op *o = op_new(p, OP_LEASE);
        o->period = kind;
        snprintf(o->key, sizeof o->key, "%s", period);
        o->cap = cap;
        o->want = want;
        p->lease[kind].state = LEASE_ASKING;
        if (!p->begun) {
            o->held = true; /* the lease's row refers to the run's */
            return FR_BUDGET_ASKED;
        }
        send_op(o);
        if (p->lease[kind].state == LEASE_ANSWERED) /* refused at once */
            return fr_pgbooks_lease(p, kind, period, cap, want, granted, err);
    }
    return FR_BUDGET_ASKED;
}

int fr_pgbooks_over_cap(fr_pgbooks *p)
{
    int was = p->over_cap;
    p->over_cap = 0;
    return was;
}

int fr_pgbooks_end(fr_pgbooks *p, const char *status, int code, double spent, fr_error *err)
{
    fr_pgbooks_detach(p);
    sweep(p);
    for (op *o = p->head, *next; o; o = next) {
        next = o->next;
        if (o->kind == OP_LEASE && o->held)
            op_free(o); /* never sent: the run's row is not there */
    }
    op *end = write_op(p, W_END, status, NULL);
    end->code = code;
    end->want = spent;
    send_op(end);
    fr_pgstore_flush(p->s);
    bool all = run_out(p, FR_BOOKING_PG_END_MS);
    op *rel = write_op(p, W_RELEASE, NULL, NULL);
    send_op(rel);
    all = run_out(p, FR_BOOKING_PG_END_MS) && all;
    int rc = FR_OK;
    if (!all) {
        rc = fr_error_set(err, FR_ESTORE, NULL, 0,
                          "the shared state store did not answer the run's last writes");
        fr_booking_write_failed(p->owner, err);
    } else if (end->rc != FR_OK || rel->rc != FR_OK) {
        *err = end->rc != FR_OK ? end->err : rel->err;
        rc = err->code ? err->code : FR_ESTORE;
    }
    sweep(p);
    return rc;
}

int fr_pgbooks_report(fr_pgbooks *p, const char *json, const char *summary, fr_error *err)
{
    op *o = write_op(p, W_REPORT, json, summary);
    send_op(o);
    fr_pgstore_flush(p->s);
    int rc = FR_OK;
    if (!run_out(p, FR_BOOKING_PG_END_MS))
        rc = fr_error_set(err, FR_ESTORE, NULL, 0,
                          "the shared state store did not answer the report's write");
    else if (o->rc != FR_OK) {
        *err = o->err;
        rc = o->rc;
    }
    sweep(p);
    return rc;
}

void fr_pgbooks_info(const fr_pgbooks *p, fr_store_info *out)
{
    *out = p->info;
    out->kind = "postgresql";
    if (p->down) /* still down: what it was so far */
        out->down_ms += (double)(uv_now(&p->inner) - p->down_since);
}

static void on_inner_closed(uv_handle_t *h)
{
    (void)h;
}

void fr_pgbooks_free(fr_pgbooks *p)
{
    if (!p)
        return;
    fr_pgbooks_detach(p);
    fr_pgstore_close(p->s); /* what is still due completes, cancelled */
    p->s = NULL;
    uv_close((uv_handle_t *)&p->retry, on_inner_closed);
    uv_close((uv_handle_t *)&p->deadline, on_inner_closed);
    uv_run(&p->inner, UV_RUN_DEFAULT);
    while (p->head)
        op_free(p->head);
    if (uv_loop_close(&p->inner) != 0)
        fr_log_event(FR_LOG_ERROR, "store", "store.error",
                     "error=\"the state store's handles were left open\"");
    free(p->run_id);
    free(p);
}
