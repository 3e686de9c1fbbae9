#include "engine/booking.h"
#include "engine/booking_int.h"

#include "engine/history.h"
#include "engine/store/pgurl.h"
#include "engine/walckpt.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <time.h>

struct fr_booking {
    fr_store *store;        /* SQLite, or NULL: */
    fr_pgbooks *pg;         /* the books on a shared PostgreSQL store */
    void (*wake)(void *ud); /* fr_booking_on_wake's */
    void *wake_ud;
    char *run_id;
    char month[FR_STORE_MONTH_LEN]; /* "YYYY-MM" */
    char day[FR_STORE_DAY_LEN];     /* "YYYY-MM-DD": the periods the run leases in */
    bool failed;
    uv_loop_t *loop;     /* attached: writes are batched per turn */
    uv_prepare_t *armed; /* the handle that commits this turn's writes */
    fr_walckpt *ckpt; /* the store's checkpoints in the pool, once attached (NULL: SQLite's own) */
    /* The requests whose reservations wait for the turn's commit, oldest
     * first (fr_booking_reserve), and what the turn's end knows: */
    fr_booking_wait *head, *tail;
    bool ending; /* the turn's end is committing: new writes join it */
    bool again;  /* a write came while it released: commit once more */
    long lost;   /* the store's lost batches seen so far */
    /* Shared endpoints (fr_booking_reserve_slot): a queue per endpoint of
     * the requests waiting for a slot other processes hold, the slots this
     * process holds (reserved, not settled yet) and how many per endpoint
     * and model (what the store is told it holds), and the timer that
     * retries the queues' heads and beats the owner's heartbeat (open only
     * while a slot is held or waited for). */
    struct slot_queue *queues;
    size_t nqueues;
    struct held_slot *slots;
    size_t nslots, capslots;
    struct slot_count *counts;
    size_t ncounts;
    size_t queued; /* requests in all the queues */
    uv_timer_t *tick;
    uint64_t beat_at;    /* uv_now of the last heartbeat */
    uint64_t tick_beat;  /* the heartbeat's uv_now the tick is armed for, 0 for none */
    uint32_t jitter;     /* xorshift state of the retries' jitter */
    fr_history *history; /* the run's routing history (fr_booking_history), or NULL */
    char *pg_url;        /* the shared store's URL (owned), or NULL on SQLite */
};

/* The requests waiting for a slot of one shared endpoint, oldest first. */
struct slot_queue {
    char *endpoint; /* owned */
    fr_booking_wait *head, *tail;
    /* What the store was told of its head (publish_wait): the model, owned,
     * and since when it waits; 0 once none does. */
    char *told_model;
    double told_since;
};

/* The slots this process holds of one shared endpoint serving one model:
 * one endpoint name serving two models is two servers' slots, counted
 * apart, as the store counts the other owners'. */
struct slot_count {
    char *endpoint, *model; /* owned; model NULL for none */
    long held;              /* slots reserved and not settled yet */
};

/* A slot this process holds: its attempt's row, and its count in
 * fr_booking.counts. */
struct held_slot {
    long long row;
    size_t count;
};

/* How long a request refused a slot waits before it asks again: a short
 * wait with jitter, so that processes waiting together do not ask in step. */
#define SLOT_RETRY_MS  20
#define SLOT_JITTER_MS 30

/* The --state value or $FLOWRUN_STATE (borrowed), NULL for neither. */
static const char *state_of(const char *state_dir)
{
    const char *env = getenv("FLOWRUN_STATE");
    return state_dir && *state_dir ? state_dir : env && *env ? env : NULL;
}

char *fr_booking_state_path(const char *state_dir, bool sim)
{
    const char *dir = state_of(state_dir);
    if (!dir || fr_pgurl_is_url(dir))
        dir = ".flowrun";
    return fr_xasprintf("%s/%s", dir, sim ? "sim.db" : "state.db");
}

const char *fr_booking_state_url(const char *state_dir, bool sim)
{
    const char *state = state_of(state_dir);
    return !sim && fr_pgurl_is_url(state) ? state : NULL;
}

char *fr_booking_run_id(time_t now)
{
    char stamp[32];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    uint32_t bits;
    if (getrandom(&bits, sizeof bits, GRND_NONBLOCK) != (ssize_t)sizeof bits) {
        /* No entropy yet (early boot): the clock's nanoseconds and the pid. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        bits = (uint32_t)ts.tv_nsec ^ ((uint32_t)getpid() * 2654435761u);
    }
    return fr_xasprintf("%s-%08x", stamp, (unsigned)bits);
}

json_t *fr_booking_observed(const char *path, const char *workflow)
{
    fr_store *st = NULL;
    json_t *observed = NULL;
    fr_error err = {0};
    int rc = fr_store_open_readonly(path, &st, &err);
    if (rc == FR_OK)
        rc = fr_store_observed(st, workflow, &observed, &err);
    if (rc != FR_OK && rc != FR_ENOENT) {
        char msg[1400];
        fr_log_event(FR_LOG_WARN, "plan", "plan.estimates_error",
                     "error=\"%s\"; the plan uses its default estimates",
                     fr_error_format(&err, msg, sizeof msg));
    }
    fr_store_close(st);
    return observed;
}

/* The periods the run leases in: this month and this day, UTC. */
static void stamp_periods(fr_booking *b)
{
    time_t now = time(NULL);
    fr_store_month_of(now, b->month);
    fr_store_day_of(now, b->day);
}

int fr_booking_open(const char *path, const char *run_id, fr_booking **out, fr_error *err)
{
    fr_booking *b = fr_xcalloc(1, sizeof *b);
    int rc = fr_store_open(path, &b->store, err);
    if (rc != FR_OK) {
        free(b);
        return rc;
    }
    rc = fr_store_owner_begin(b->store, err);
    if (rc != FR_OK) {
        fr_store_close(b->store);
        free(b);
        return rc;
    }
    b->run_id = fr_xstrdup(run_id);
    b->jitter = (uint32_t)getpid() * 2654435761u | 1u;
    stamp_periods(b);
    *out = b;
    return FR_OK;
}

/* Frees a commit handle once libuv has closed it. */
static void on_commit_closed(uv_handle_t *h)
{
    free(h);
}

/* Tells whether every write of the run so far is durable: no write failed
 * and no batch was lost (rolled back by a failure inside the store; that
 * fails the run here). */
static bool writes_durable(fr_booking *b)
{
    long lost = fr_store_lost(b->store);
    if (lost != b->lost && !b->failed) {
        fr_error err = {0};
        fr_error_set(&err, FR_ESTORE, NULL, 0, "a batch of writes to the state store was lost");
        fr_booking_write_failed(b, &err);
    }
    b->lost = lost;
    return !b->failed;
}

/* Commits the turn's batch and tells whether every write of the run so far
 * is durable (writes_durable). */
static bool commit_turn(fr_booking *b)
{
    fr_booking_flush(b);
    return writes_durable(b);
}

/* The loop is about to block: commit the turn's writes, then release the
 * requests whose reservations they hold (each told whether it may go).
 * What those releases write (a request that could not start) is committed
 * here too, and a reservation they make released, so that nothing waits
 * for a turn the loop might block before. */
static void end_turn(fr_booking *b)
{
    b->ending = true;
    do {
        b->again = false;
        bool durable = commit_turn(b);
        fr_walckpt_committed(b->ckpt);
        fr_booking_wait *w = b->head;
        b->head = b->tail = NULL;
        while (w) {
            fr_booking_wait *next = w->next;
            w->prev = w->next = NULL;
            w->parked = false;
            w->go(w->ud, durable);
            w = next;
        }
    } while (b->again || b->head);
    b->ending = false;
}

static void on_turn_end(uv_prepare_t *h)
{
    fr_booking *b = h->data;
    if (b) {
        b->armed = NULL;
        end_turn(b);
    }
    uv_close((uv_handle_t *)h, on_commit_closed);
}

/* The store opened a batch: commit it before the loop blocks again. The
 * handle is referenced, so the loop runs it before it ends. */
static void on_pending(void *ud)
{
    fr_booking *b = ud;
    if (b->ending) {
        b->again = true;
        return;
    }
    if (b->armed)
        return;
    uv_prepare_t *h = fr_xmalloc(sizeof *h);
    uv_prepare_init(b->loop, h);
    h->data = b;
    uv_prepare_start(h, on_turn_end);
    b->armed = h;
}

/* Links `w` at the end of the list `head` .. `tail`. */
static void link_tail(fr_booking_wait **head, fr_booking_wait **tail, fr_booking_wait *w)
{
    w->prev = *tail;
    w->next = NULL;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

/* Takes `w` out of the list `head` .. `tail`. */
static void unlink_wait(fr_booking_wait **head, fr_booking_wait **tail, fr_booking_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->prev = w->next = NULL;
}

/* The queue of `endpoint` (borrowed), made on first use. */
static struct slot_queue *queue_of(fr_booking *b, const char *endpoint)
{
    for (size_t i = 0; i < b->nqueues; i++)
        if (strcmp(b->queues[i].endpoint, endpoint) == 0)
            return &b->queues[i];
    b->queues = fr_xrealloc(b->queues, (b->nqueues + 1) * sizeof *b->queues);
    struct slot_queue *q = &b->queues[b->nqueues++];
    *q = (struct slot_queue){.endpoint = fr_xstrdup(endpoint)};
    return q;
}

static void publish_wait(fr_booking *b, struct slot_queue *q);

/* True when models `x` and `y` (either may be NULL) are the same, as the
 * store's `IS` compares them. */
static bool same_model(const char *x, const char *y)
{
    return x && y ? strcmp(x, y) == 0 : x == y;
}

/* The index in b->counts of the slots of `a`'s endpoint and model
 * (borrowed), made on first use (endpoints and models are few). */
static size_t count_of(fr_booking *b, const fr_attempt_rec *a)
{
    for (size_t i = 0; i < b->ncounts; i++)
        if (strcmp(b->counts[i].endpoint, a->endpoint) == 0 &&
            same_model(b->counts[i].model, a->model))
            return i;
    b->counts = fr_xrealloc(b->counts, (b->ncounts + 1) * sizeof *b->counts);
    b->counts[b->ncounts] = (struct slot_count){.endpoint = fr_xstrdup(a->endpoint),
                                                .model = a->model ? fr_xstrdup(a->model) : NULL};
    return b->ncounts++;
}

/* Remembers slot `row` of count `count`, held by this process until it
 * settles. */
static void hold_slot(fr_booking *b, size_t count, long long row)
{
    if (b->nslots == b->capslots) {
        b->capslots = b->capslots ? b->capslots * 2 : 8;
        b->slots = fr_xrealloc(b->slots, b->capslots * sizeof *b->slots);
    }
    b->slots[b->nslots++] = (struct held_slot){.row = row, .count = count};
    b->counts[count].held++;
}

/* Forgets slot `row` if it is one, one fewer held of its endpoint and
 * model; true when it was. Its settle, booked or failed, calls this: after
 * a failed write (the run stops, no slot is reserved again) the count need
 * not match the table. */
static bool drop_slot(fr_booking *b, long long row)
{
    for (size_t i = 0; i < b->nslots; i++) {
        if (b->slots[i].row == row) {
            b->counts[b->slots[i].count].held--;
            b->slots[i] = b->slots[--b->nslots];
            return true;
        }
    }
    return false;
}

/* Parks `w` until the turn's commit, which holds its reservation. */
static void park_durable(fr_booking *b, fr_booking_wait *w)
{
    link_tail(&b->head, &b->tail, w);
    w->parked = true;
    on_pending(b); /* the turn's end releases it (the batch armed it already) */
}

void fr_booking_attach(fr_booking *b, uv_loop_t *loop)
{
    if (!b)
        return;
    b->loop = loop;
    if (b->pg) {
        fr_pgbooks_attach(b->pg, loop);
        return;
    }
    fr_store_batch(b->store, on_pending, b);
    fr_error err = {0};
    if (!b->ckpt && fr_walckpt_open(loop, b->store, &b->ckpt, &err) != FR_OK) {
        /* SQLite checkpoints after the commits, as it does by default. */
        char msg[1400];
        fr_log_event(FR_LOG_WARN, "store", "store.checkpoint_failed",
                     "error=\"%s\" note=\"the loop's commits checkpoint the log themselves\"",
                     fr_error_format(&err, msg, sizeof msg));
    }
}

void fr_booking_detach(fr_booking *b)
{
    if (b && b->pg)
        fr_pgbooks_detach(b->pg);
}

bool fr_booking_busy(const fr_booking *b)
{
    return b && b->pg && fr_pgbooks_busy(b->pg);
}

void fr_booking_on_wake(fr_booking *b, void (*fn)(void *ud), void *ud)
{
    if (!b)
        return;
    b->wake = fn;
    b->wake_ud = ud;
}

void fr_booking_woken(fr_booking *b)
{
    if (b->wake)
        b->wake(b->wake_ud);
}

void fr_booking_store_info(const fr_booking *b, fr_store_info *out)
{
    *out = (fr_store_info){0};
    if (b && b->pg)
        fr_pgbooks_info(b->pg, out);
}

void fr_booking_flush(fr_booking *b)
{
    if (b->pg) {
        fr_pgbooks_flush(b->pg);
        return;
    }
    fr_error err = {0};
    if (fr_store_flush(b->store, &err) != FR_OK)
        fr_booking_write_failed(b, &err);
}

void fr_booking_free(fr_booking *b)
{
    if (!b)
        return;
    if (b->armed) /* the loop did not run to its end: nothing to commit for */
        b->armed->data = NULL;
    if (b->tick) /* nor any slot to wait for */
        b->tick->data = NULL;
    b->head = b->tail = NULL; /* nor any request to send (their nodes may be gone) */
    if (b->pg)
        fr_pgbooks_free(b->pg);
    else {
        fr_booking_flush(b);
        fr_walckpt_close(b->ckpt); /* before the store: its close checkpoints what is left */
        fr_store_close(b->store);
    }
    for (size_t i = 0; i < b->nqueues; i++) {
        free(b->queues[i].endpoint);
        free(b->queues[i].told_model);
    }
    free(b->queues);
    for (size_t i = 0; i < b->ncounts; i++) {
        free(b->counts[i].endpoint);
        free(b->counts[i].model);
    }
    free(b->counts);
    free(b->slots);
    fr_history_free(b->history);
    free(b->pg_url);
    free(b->run_id);
    free(b);
}

fr_history *fr_booking_history(fr_booking *b, const fr_workflow *wf)
{
    if (!b)
        return NULL;
    if (!b->history) {
        b->history = fr_history_for_workflow(wf);
        fr_error err = {0};
        /* On the shared store the summary is read once, here, at the run's
         * setup (before its loop runs): every host's attempts teach it. */
        int rc = b->pg ? fr_history_load_from(b->history, b->pg_url, &err)
                       : fr_history_load(b->history, b->store, &err);
        if (rc != FR_OK) {
            char msg[1400];
            fr_log_event(FR_LOG_WARN, "store", "store.error",
                         "error=\"%s\"; routing starts without history",
                         fr_error_format(&err, msg, sizeof msg));
        }
    }
    return b->history;
}

fr_store *fr_booking_store(const fr_booking *b)
{
    return b->store;
}

fr_pgstore *fr_booking_pgstore(const fr_booking *b)
{
    return b && b->pg ? fr_pgbooks_store(b->pg) : NULL;
}

const char *fr_booking_month(const fr_booking *b)
{
    return b->month;
}

bool fr_booking_failed(const fr_booking *b)
{
    return b->failed;
}

void fr_booking_write_failed(fr_booking *b, const fr_error *err)
{
    if (b->failed)
        return;
    char msg[1400];
    fr_log_event(FR_LOG_ERROR, "store", "store.error", "error=\"%s\"",
                 fr_error_format(err, msg, sizeof msg));
    b->failed = true;
}

/* The key of `period` the run leases in now: its month or its day. */
static char *period_key(fr_booking *b, fr_cap_kind period)
{
    return period == FR_CAP_DAY ? b->day : b->month;
}

static int ledger_lease(void *ud, fr_cap_kind period, double cap, double want, double *granted,
                        fr_error *err)
{
    fr_booking *b = ud;
    if (b->pg)
        return fr_pgbooks_lease(b->pg, period, period_key(b, period), cap, want, granted, err);
    return fr_store_lease(b->store, period_key(b, period), cap, want, b->run_id, granted, err);
}

static int ledger_totals(void *ud, fr_cap_kind period, double *spent, double *used, fr_error *err)
{
    fr_booking *b = ud;
    const char *key = period_key(b, period);
    if (b->pg) /* never read on the loop: what the last lease of the period read */
        return fr_pgstore_period_figures(fr_pgbooks_store(b->pg), key, spent, used) == FR_OK
                   ? FR_OK
                   : fr_error_set(err, FR_ENOENT, NULL, 0, "no lease of %s came back yet", key);
    int rc = fr_store_month_spent(b->store, key, spent, err);
    if (rc == FR_OK && fr_store_month_used(b->store, key, used, err) != FR_OK)
        *used = *spent;
    return rc;
}

/* A run may cross midnight UTC, or into a new month: it leases in the new
 * period from then on. */
static bool ledger_turned(void *ud, fr_cap_kind period)
{
    fr_booking *b = ud;
    char now[FR_STORE_DAY_LEN];
    char *key = period_key(b, period);
    if (b->pg && period == FR_CAP_DAY)
        fr_store_day_of(time(NULL), now);
    else if (b->pg)
        fr_store_month_of(time(NULL), now);
    else if (period == FR_CAP_DAY)
        fr_store_day(b->store, now);
    else
        fr_store_month(b->store, now);
    if (strcmp(now, key) == 0)
        return false;
    memcpy(key, now, strlen(now) + 1);
    return true;
}

fr_budget_ledger fr_booking_ledger(fr_booking *b)
{
    return (fr_budget_ledger){
        .ud = b, .lease = ledger_lease, .totals = ledger_totals, .turned = ledger_turned};
}

void fr_booking_begin(fr_booking *b, const char *name, const char *path)
{
    if (b->pg) {
        fr_pgbooks_begin(b->pg, name, path);
        return;
    }
    fr_error err = {0};
    if (fr_store_run_begin(b->store, b->run_id, name, path, &err) != FR_OK)
        fr_booking_write_failed(b, &err);
}

bool fr_booking_reserve(fr_booking *b, const fr_attempt_rec *a, long long *row, fr_booking_wait *w)
{
    if (b->pg)
        return fr_pgbooks_reserve(b->pg, a, 0, row, w);
    fr_error err = {0};
    bool later = w && b->loop && !b->failed;
    *row = 0;
    if (w)
        w->parked = false;
    int rc = later ? fr_store_reserve_batched(b->store, a, row, &err)
                   : fr_store_reserve(b->store, a, row, &err);
    if (rc != FR_OK) {
        *row = 0;
        fr_booking_write_failed(b, &err);
        return false;
    }
    if (later)
        park_durable(b, w);
    return true;
}

static void tick_arm(fr_booking *b);

int fr_booking_over_cap(fr_booking *b)
{
    return b && b->pg ? fr_pgbooks_over_cap(b->pg) : 0;
}

void fr_booking_unpark(fr_booking *b, fr_booking_wait *w)
{
    if (!w->parked)
        return;
    if (b->pg) {
        fr_pgbooks_unpark(b->pg, w);
        return;
    }
    if (w->queued) {
        struct slot_queue *q = queue_of(b, w->rec.endpoint);
        unlink_wait(&q->head, &q->tail, w);
        b->queued--;
        w->queued = false;
        w->parked = false;
        publish_wait(b, q);
        tick_arm(b); /* nothing else waiting: the timer need not wake the loop */
        return;
    }
    unlink_wait(&b->head, &b->tail, w);
    w->parked = false;
}

/* ---- slots of shared endpoints ---------------------------------------------- */

/* Asks for a slot for `a` (borrowed) of at most `max`, a request waiting
 * since `since` (the store's clock; 0: now); sets *row (0: every slot is
 * held, or the free one goes to a process that waits) and remembers the
 * slot. The store is told how many slots
 * of a's endpoint and model this process holds, from the books' count (it
 * counts only the other owners' rows), which is never smaller than this
 * owner's pending rows in the table while no write has failed: a slot
 * counts from its reservation to its settle. It may be larger, the safe
 * side (fewer slots taken than allowed): another process that took this
 * one for dead cancelled its rows, or a reservation was rolled back with
 * its batch (a failed write). False (logged) for a failed write, and after
 * one without asking: the run stops, and a settle rolled back with its
 * batch left its row pending in the table but no longer counted here. */
static bool try_slot(fr_booking *b, const fr_attempt_rec *a, int max, double since, long long *row)
{
    fr_error err = {0};
    *row = 0;
    if (!writes_durable(b))
        return false;
    size_t count = count_of(b, a);
    if (fr_store_reserve_slot(b->store, a, max, b->counts[count].held, since, row, &err) != FR_OK) {
        *row = 0;
        fr_booking_write_failed(b, &err);
        return false;
    }
    if (*row)
        hold_slot(b, count, *row);
    return true;
}

/* Tells the store since when the head of `q` waits, or that none does,
 * when that changed: the other processes sharing the endpoint leave a free
 * slot to a process that waits and holds fewer (fr_store_reserve_slot). */
static void publish_wait(fr_booking *b, struct slot_queue *q)
{
    const fr_booking_wait *h = q->head;
    double since = h ? h->since_unix : 0;
    const char *model = h ? h->rec.model : q->told_model;
    fr_error err = {0};
    if (b->failed || (q->told_since == since && same_model(model, q->told_model)))
        return;
    /* A head of another model: the one told before waits no more. */
    if (q->told_since > 0 && !same_model(model, q->told_model) &&
        fr_store_slot_waiting(b->store, q->endpoint, q->told_model, 0, &err) != FR_OK) {
        fr_booking_write_failed(b, &err);
        return;
    }
    if (fr_store_slot_waiting(b->store, q->endpoint, model, since, &err) != FR_OK) {
        fr_booking_write_failed(b, &err);
        return;
    }
    if (!same_model(model, q->told_model)) {
        free(q->told_model);
        q->told_model = model ? fr_xstrdup(model) : NULL;
    }
    q->told_since = since;
}

/* Gives the head of `q` a slot while one is free, each released at the
 * turn's commit as a reservation is. After a failed write every request
 * waiting is released (told its reservation is not durable). */
static void promote(fr_booking *b, struct slot_queue *q)
{
    while (q->head) {
        fr_booking_wait *w = q->head;
        long long row = 0;
        if (!b->failed && try_slot(b, &w->rec, w->max, w->since_unix, &row) && !row)
            break; /* still held by others */
        unlink_wait(&q->head, &q->tail, w);
        b->queued--;
        w->queued = false;
        *w->row = row;
        w->waited_ms = (double)(uv_now(b->loop) - w->since);
        if (w->waited_ms <= 0)
            w->waited_ms = 1; /* it waited, if less than a millisecond of loop time */
        park_durable(b, w);
    }
    publish_wait(b, q);
}

static void on_tick_closed(uv_handle_t *h)
{
    free(h);
}

/* The slot timer: the owner's heartbeat when one is due, then every
 * queue's head asked again; closed once no slot is held or waited for. */
static void on_tick(uv_timer_t *h)
{
    fr_booking *b = h->data;
    if (!b) {
        uv_close((uv_handle_t *)h, on_tick_closed);
        return;
    }
    uint64_t now = uv_now(b->loop);
    if (!b->failed && now - b->beat_at >= FR_STORE_OWNER_BEAT_MS) {
        fr_error err = {0};
        b->beat_at = now;
        if (fr_store_owner_beat(b->store, &err) != FR_OK)
            fr_booking_write_failed(b, &err);
    }
    for (size_t i = 0; i < b->nqueues; i++)
        promote(b, &b->queues[i]);
    tick_arm(b);
}

/* Arms the slot timer for what the books hold and wait for: a retry soon
 * while a request waits (referenced: the run waits for it), else the next
 * heartbeat while a slot is held (unreferenced: the attempts in flight keep
 * the loop); closes it when there is neither. */
static void tick_arm(fr_booking *b)
{
    if (!b->loop)
        return; /* unattached: no loop to beat on (a test's, a plan's) */
    if (!b->queued && !b->nslots) {
        if (b->tick) {
            uv_close((uv_handle_t *)b->tick, on_tick_closed);
            b->tick = NULL;
        }
        return;
    }
    if (!b->tick) {
        b->tick = fr_xmalloc(sizeof *b->tick);
        uv_timer_init(b->loop, b->tick);
        b->tick->data = b;
        b->beat_at = uv_now(b->loop); /* a slot's reservation pushed the lease on */
    }
    uint64_t ms;
    if (b->queued) {
        b->jitter ^= b->jitter << 13;
        b->jitter ^= b->jitter >> 17;
        b->jitter ^= b->jitter << 5;
        ms = SLOT_RETRY_MS + b->jitter % (SLOT_JITTER_MS + 1);
        uv_ref((uv_handle_t *)b->tick);
        b->tick_beat = 0;
    } else {
        uint64_t now = uv_now(b->loop), due = b->beat_at + FR_STORE_OWNER_BEAT_MS;
        if (due < now)
            due = now;
        /* Each slot taken and given back arms it: for the same heartbeat
         * while none is due, so it stays as it is. */
        if (b->tick_beat == due && uv_is_active((uv_handle_t *)b->tick))
            return;
        ms = due - now;
        uv_unref((uv_handle_t *)b->tick);
        b->tick_beat = due;
    }
    uv_timer_start(b->tick, on_tick, ms, 0);
}

bool fr_booking_reserve_slot(fr_booking *b, const fr_attempt_rec *a, int max, long long *row,
                             fr_booking_wait *w)
{
    if (b->pg)
        return fr_pgbooks_reserve(b->pg, a, max, row, w);
    if (!w) { /* now, in a transaction of its own */
        bool ok = try_slot(b, a, max, 0, row);
        if (ok && *row) {
            fr_booking_flush(b);
            ok = !b->failed;
            tick_arm(b);
        }
        return ok;
    }
    if (!b->loop || b->failed)
        return fr_booking_reserve(b, a, row, w);
    *row = 0;
    w->parked = w->queued = false;
    w->waited_ms = 0;
    struct slot_queue *q = queue_of(b, a->endpoint);
    if (!q->head) { /* nobody of this process waits for it before this one */
        if (!try_slot(b, a, max, 0, row))
            return false;
        if (*row) {
            /* A priced slot waits for the turn's commit: its charge is
             * durable before a byte goes out. A $0 one goes now (w not
             * parked): its row is in the turn's batch, whose write lock no
             * other process counts slots without (fr_store_reserve_slot),
             * so none sees it free before the commit; and a crash before
             * the commit leaves nothing to keep, a dead owner's slots
             * counting for nothing. Should the commit fail, the run stops
             * with the request in flight and its slot no longer counted. */
            if (a->cost_usd > 0)
                park_durable(b, w);
            tick_arm(b);
            return true;
        }
    }
    w->rec = *a;
    w->row = row;
    w->max = max;
    w->since = uv_now(b->loop);
    w->since_unix = fr_store_clock(b->store);
    link_tail(&q->head, &q->tail, w);
    w->queued = w->parked = true;
    b->queued++;
    publish_wait(b, q);
    fr_log_event(FR_LOG_DEBUG, "store", "slot.wait",
                 "task=%s endpoint=%s max_parallel=%d: its slots are held by other processes",
                 a->task, a->endpoint, max);
    tick_arm(b);
    return true;
}

void fr_booking_settle(fr_booking *b, long long row, const fr_attempt_rec *a, fr_budget *budget,
                       double at_ms)
{
    fr_attempt_rec clean = *a;
    char *error = fr_redact(a->error); /* a server may echo the key */
    clean.error = error;
    if (b->pg) {
        fr_pgbooks_settle(b->pg, row, &clean, budget, at_ms, b->history);
        free(error);
        return;
    }
    fr_error err = {0};
    double total = 0;
    bool want_total = fr_budget_wants_month_total(budget, a->cost_usd);
    int rc = row          ? fr_store_settle(b->store, row, &clean, want_total ? &total : NULL, &err)
             : want_total ? fr_store_add_attempt_total(b->store, &clean, &total, &err)
                          : fr_store_add_attempt(b->store, &clean, &err);
    if (rc == FR_OK && want_total)
        fr_budget_month_booked(budget, total, a->cost_usd, at_ms);
    if (rc == FR_OK) /* as the store's ledger summed it */
        fr_history_add(b->history, a, fr_store_clock(b->store));
    free(error);
    if (rc != FR_OK)
        fr_booking_write_failed(b, &err);
    if (row && b->nslots && drop_slot(b, row)) {
        /* A slot of ours came free: the next of ours waiting for it asks now. */
        promote(b, queue_of(b, a->endpoint));
        tick_arm(b);
    }
}

int fr_booking_end(fr_booking *b, const char *status, int code, double spent)
{
    fr_error err = {0};
    if (b->pg) {
        int prc = fr_pgbooks_end(b->pg, status, code, spent, &err);
        if (prc != FR_OK) {
            char msg[1400];
            fr_log_event(FR_LOG_ERROR, "store", "store.error", "error=\"%s\"",
                         fr_error_format(&err, msg, sizeof msg));
        }
        return prc != FR_OK ? prc : b->failed ? FR_ESTORE : FR_OK;
    }
    /* The loop has ended: what follows is written at once. */
    int rc = fr_store_flush(b->store, &err);
    if (rc == FR_OK)
        fr_store_batch(b->store, NULL, NULL);
    if (rc == FR_OK)
        rc = fr_store_run_end(b->store, b->run_id, status, code, spent, &err);
    if (rc == FR_OK)
        rc = fr_store_release(b->store, b->run_id, &err);
    if (rc == FR_OK)
        rc = fr_store_owner_end(b->store, &err);
    if (rc != FR_OK) {
        char msg[1400];
        fr_log_event(FR_LOG_ERROR, "store", "store.error", "error=\"%s\"",
                     fr_error_format(&err, msg, sizeof msg));
    }
    fr_store_stats st;
    fr_store_stats_get(b->store, &st);
    fr_walckpt_stats ck;
    fr_walckpt_stats_get(b->ckpt, &ck);
    fr_log_event(FR_LOG_DEBUG, "store", "store.stats",
                 "commits=%ld lost=%ld checkpoints=%ld checkpoints_on_loop=%ld "
                 "checkpoints_failed=%ld log_most=%ld log_restarts=%ld",
                 st.commits, st.lost, ck.runs, ck.on_loop, ck.failed, ck.most, ck.restarts);
    return rc;
}

/* Not a callback the store calls on this path: the report's batch is
 * flushed at once. */
static void on_report_pending(void *ud)
{
    (void)ud;
}

int fr_booking_store_report(fr_booking *b, const char *json, const char *summary, fr_error *err)
{
    if (b->pg)
        return fr_pgbooks_report(b->pg, json, summary, err);
    /* Its own batch: the row and the report's text written into it commit
     * together. */
    fr_store_batch(b->store, on_report_pending, NULL);
    int rc = fr_store_report_put(b->store, b->run_id, json, summary, err);
    if (rc == FR_OK)
        rc = fr_store_flush(b->store, err);
    fr_store_batch(b->store, NULL, NULL);
    return rc;
}

/* fr_booking_open on the shared PostgreSQL store at `url` (borrowed). */
static int open_pg(const char *url, const char *run_id, fr_booking **out, fr_error *err)
{
    fr_booking *b = fr_xcalloc(1, sizeof *b);
    b->run_id = fr_xstrdup(run_id);
    int rc = fr_pgbooks_open(b, url, run_id, &b->pg, err);
    if (rc != FR_OK) {
        free(b->run_id);
        free(b);
        return rc;
    }
    b->pg_url = fr_xstrdup(url);
    stamp_periods(b);
    *out = b;
    return FR_OK;
}

int fr_booking_open_run(const char *state_dir, bool sim, const char *run_id, fr_budget *budget,
                        fr_booking **out, fr_error *err)
{
    const char *url = fr_booking_state_url(state_dir, sim);
    int rc;
    if (url) {
        rc = open_pg(url, run_id, out, err);
    } else {
        char *path = fr_booking_state_path(state_dir, sim);
        rc = fr_booking_open(path, run_id, out, err);
        free(path);
    }
    if (rc == FR_OK &&
        (fr_budget_has_cap(budget, FR_CAP_MONTH) || fr_budget_has_cap(budget, FR_CAP_DAY))) {
        fr_budget_ledger ledger = fr_booking_ledger(*out);
        fr_budget_set_ledger(budget, &ledger);
    }
    return rc;
}
