#include "engine/booking.h"

#include "engine/history.h"

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
    fr_store *store;
    char *run_id;
    char month[FR_STORE_MONTH_LEN]; /* "YYYY-MM" */
    bool failed;
    uv_loop_t *loop;     /* attached: writes are batched per turn */
    uv_prepare_t *armed; /* the handle that commits this turn's writes */
    /* The requests whose reservations wait for the turn's commit, oldest
     * first (fr_booking_reserve), and what the turn's end knows: */
    fr_booking_wait *head, *tail;
    bool ending;         /* the turn's end is committing: new writes join it */
    bool again;          /* a write came while it released: commit once more */
    long lost;           /* the store's lost batches seen so far */
    fr_history *history; /* the run's routing history (fr_booking_history), or NULL */
};

char *fr_booking_state_path(const char *state_dir, bool sim)
{
    const char *env = getenv("FLOWRUN_STATE");
    const char *dir = state_dir && *state_dir ? state_dir : env && *env ? env : ".flowrun";
    return fr_xasprintf("%s/%s", dir, sim ? "sim.db" : "state.db");
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

int fr_booking_open(const char *path, const char *run_id, fr_booking **out, fr_error *err)
{
    fr_booking *b = fr_xcalloc(1, sizeof *b);
    int rc = fr_store_open(path, &b->store, err);
    if (rc != FR_OK) {
        free(b);
        return rc;
    }
    b->run_id = fr_xstrdup(run_id);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(b->month, sizeof b->month, "%Y-%m", &tm);
    *out = b;
    return FR_OK;
}

/* Frees a commit handle once libuv has closed it. */
static void on_commit_closed(uv_handle_t *h)
{
    free(h);
}

/* Commits the turn's batch and tells whether every write of the run so far
 * is durable: the commit succeeded, no write failed and no batch was lost
 * (rolled back by a failure inside the store). */
static bool commit_turn(fr_booking *b)
{
    fr_booking_flush(b);
    fr_store_stats st;
    fr_store_stats_get(b->store, &st);
    if (st.lost != b->lost && !b->failed) {
        fr_error err = {0};
        fr_error_set(&err, FR_ESTORE, NULL, 0, "a batch of writes to the state store was lost");
        fr_booking_write_failed(b, &err);
    }
    b->lost = st.lost;
    return !b->failed;
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

void fr_booking_attach(fr_booking *b, uv_loop_t *loop)
{
    if (!b)
        return;
    b->loop = loop;
    fr_store_batch(b->store, on_pending, b);
}

void fr_booking_flush(fr_booking *b)
{
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
    b->head = b->tail = NULL; /* nor any request to send (their nodes may be gone) */
    fr_booking_flush(b);
    fr_store_close(b->store);
    fr_history_free(b->history);
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
        if (fr_history_load(b->history, b->store, &err) != FR_OK) {
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

static int ledger_lease(void *ud, double cap, double want, double *granted, fr_error *err)
{
    fr_booking *b = ud;
    fr_store_month(b->store, b->month); /* a run may cross into a new month */
    return fr_store_lease(b->store, b->month, cap, want, b->run_id, granted, err);
}

static int ledger_month(void *ud, double *spent, double *used, fr_error *err)
{
    fr_booking *b = ud;
    int rc = fr_store_month_spent(b->store, b->month, spent, err);
    if (rc == FR_OK && fr_store_month_used(b->store, b->month, used, err) != FR_OK)
        *used = *spent;
    return rc;
}

fr_budget_ledger fr_booking_ledger(fr_booking *b)
{
    return (fr_budget_ledger){.ud = b, .lease = ledger_lease, .month = ledger_month};
}

void fr_booking_begin(fr_booking *b, const char *name, const char *path)
{
    fr_error err = {0};
    if (fr_store_run_begin(b->store, b->run_id, name, path, &err) != FR_OK)
        fr_booking_write_failed(b, &err);
}

bool fr_booking_reserve(fr_booking *b, const fr_attempt_rec *a, long long *row, fr_booking_wait *w)
{
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
    if (later) {
        w->prev = b->tail;
        w->next = NULL;
        if (b->tail)
            b->tail->next = w;
        else
            b->head = w;
        b->tail = w;
        w->parked = true;
        on_pending(b); /* the turn's end releases it (the batch armed it already) */
    }
    return true;
}

void fr_booking_unpark(fr_booking *b, fr_booking_wait *w)
{
    if (!w->parked)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        b->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        b->tail = w->prev;
    w->prev = w->next = NULL;
    w->parked = false;
}

void fr_booking_settle(fr_booking *b, long long row, const fr_attempt_rec *a, fr_budget *budget,
                       double at_ms)
{
    fr_attempt_rec clean = *a;
    char *error = fr_redact(a->error); /* a server may echo the key */
    clean.error = error;
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
}

int fr_booking_end(fr_booking *b, const char *status, int code, double spent)
{
    fr_error err = {0};
    /* The loop has ended: what follows is written at once. */
    int rc = fr_store_flush(b->store, &err);
    if (rc == FR_OK)
        fr_store_batch(b->store, NULL, NULL);
    if (rc == FR_OK)
        rc = fr_store_run_end(b->store, b->run_id, status, code, spent, &err);
    if (rc == FR_OK)
        rc = fr_store_release(b->store, b->run_id, &err);
    if (rc != FR_OK) {
        char msg[1400];
        fr_log_event(FR_LOG_ERROR, "store", "store.error", "error=\"%s\"",
                     fr_error_format(&err, msg, sizeof msg));
    }
    fr_store_stats st;
    fr_store_stats_get(b->store, &st);
    fr_log_event(FR_LOG_DEBUG, "store", "store.stats", "commits=%ld lost=%ld", st.commits, st.lost);
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
    /* Its own batch: the row and the report's text written into it commit
     * together. */
    fr_store_batch(b->store, on_report_pending, NULL);
    int rc = fr_store_report_put(b->store, b->run_id, json, summary, err);
    if (rc == FR_OK)
        rc = fr_store_flush(b->store, err);
    fr_store_batch(b->store, NULL, NULL);
    return rc;
}

int fr_booking_open_run(const char *state_dir, bool sim, const char *run_id, fr_budget *budget,
                        bool has_monthly, double monthly_usd, fr_booking **out, fr_error *err)
{
    char *path = fr_booking_state_path(state_dir, sim);
    int rc = fr_booking_open(path, run_id, out, err);
    free(path);
    if (rc == FR_OK && has_monthly) {
        fr_budget_ledger ledger = fr_booking_ledger(*out);
        fr_budget_set_month(budget, monthly_usd, &ledger);
    }
    return rc;
}
