/* The state store on PostgreSQL (pgstore.h): the owner and its heartbeat
 * (on a connection of its own, so that no transaction delays it), the
 * turn's batch, sending, retrying and finishing transactions, the wake
 * path. The operations' SQL and what their results say are in
 * pgstore_ops.c; both share pgstore_int.h.
 *
 * An operation is an `op`: its statements with their parameters (owned),
 * its completion, and what its results mean (its kind). Ops go out in
 * groups: one transaction of the session's timeouts (SET LOCAL),
 * each op's statements, then the Sync that commits them, sent with fr_pgconn_transaction_each so
 * that each op reads its own statements' results. A group is the turn's
 * batch of writes, or one op sent at once.
 *
 * The transaction is the pipeline segment's own (implicit: committed at its
 * Sync, rolled back whole when a statement fails), never an explicit BEGIN:
 * a BEGIN whose COMMIT the failure skipped would leave the session in an
 * aborted block, and every later request of the connection would fail. */

#include "engine/store/pgstore_int.h"
#include "engine/store/pgurl.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/util/log.h"
#include "engine/util/mem.h"

/* The owner's row, written at open and at each heartbeat: an upsert, so a
 * row removed by hand comes back, but an ended owner (OWNER_END_SQL: its
 * expires is its heartbeat; a live or expired owner's is its heartbeat plus
 * the lease) stays ended: the heartbeat's connection is not the end's, and a
 * heartbeat in flight at close may run on the server after the end. */
static const char *const OWNER_SQL =
    "INSERT INTO owners AS o (id, user_name, host, pid, expires)"
    " VALUES ($1, $2, $3, $4::integer, now() + make_interval(secs => $5::float8 / 1000))"
    " ON CONFLICT (id) DO UPDATE SET heartbeat = now(), expires = excluded.expires"
    " WHERE o.expires > o.heartbeat";
/* Ends the owner at close: its slots and leases free at once, and later
 * heartbeats leave it so (expires = heartbeat marks the end). */
static const char *const OWNER_END_SQL =
    "UPDATE owners SET heartbeat = now(), expires = now() WHERE id = $1";

/* ---- ops -------------------------------------------------------------------- */

op *fr_pgstore_op_new(op_kind k, const char *what, void *ud)
{
    op *o = fr_xcalloc(1, sizeof *o);
    o->kind = k;
    o->what = what;
    o->ud = ud;
    return o;
}

void fr_pgstore_op_sql(op *o, const char *sql)
{
    assert(o->n < OP_MAX_STMTS);
    o->sql[o->n++] = sql;
}

void fr_pgstore_op_str(op *o, const char *v)
{
    int i = o->n - 1;
    assert(i >= 0 && o->np[i] < OP_MAX_PARAMS);
    o->par[i][o->np[i]++] = v ? fr_xstrdup(v) : NULL;
}

void fr_pgstore_op_num(op *o, double v)
{
    int i = o->n - 1;
    assert(i >= 0 && o->np[i] < OP_MAX_PARAMS);
    o->par[i][o->np[i]++] = fr_xasprintf("%.17g", v);
}

void fr_pgstore_op_int(op *o, long long v)
{
    int i = o->n - 1;
    assert(i >= 0 && o->np[i] < OP_MAX_PARAMS);
    o->par[i][o->np[i]++] = fr_xasprintf("%lld", v);
}

static void op_free(op *o)
{
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < o->np[i]; k++)
            free(o->par[i][k]);
    free(o->extra);
    free(o);
}

/* The error code a server's SQLSTATE means for the caller. */
static int code_of(const fr_pgres *res)
{
    const char *st = fr_pgres_sqlstate(res);
    if (fr_pgres_code(res) != FR_ESTORE)
        return fr_pgres_code(res);
    if (strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0)
        return FR_ETIMEDOUT; /* lock_timeout, statement_timeout */
    if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0)
        return FR_EINVAL; /* a constraint (a run not begun), a bad value */
    return FR_ESTORE;
}

void fr_pgstore_fail(fr_pgstore *s, op *o, int rc, const char *fmt, ...)
{
    fr_error err = {0};
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fr_error_set(&err, rc, s->masked, 0, "%s: %s", o->what, msg);
    fr_pgstore_op_finish(s, o, rc, &err, NULL, 0);
}

/* ---- groups ----------------------------------------------------------------- */

typedef struct group {
    struct group *next; /* while parked */
    fr_pgstore *s;
    op **ops;
    int nops;
    int tries;
    bool internal; /* the owner's own: sent before the store is ready */
} group;

static void on_group(void *ud, fr_pgres *res);

static group *group_new(fr_pgstore *s, op **ops, int nops)
{
    group *g = fr_xcalloc(1, sizeof *g);
    g->s = s;
    g->ops = fr_xcalloc((size_t)nops, sizeof *g->ops);
    memcpy(g->ops, ops, (size_t)nops * sizeof *ops);
    g->nops = nops;
    return g;
}

/* Ends `g` (taken): each op not finished yet fails with `rc` and `msg`. */
static void group_fail(group *g, int rc, const char *msg)
{
    fr_pgstore *s = g->s;
    for (int i = 0; i < g->nops; i++) {
        fr_pgstore_fail(s, g->ops[i], rc, "%s", msg);
        op_free(g->ops[i]);
    }
    free(g->ops);
    free(g);
}

/* Sends `g` (taken) as one transaction, or parks it until the store is
 * ready. */
static void group_send(group *g)
{
    fr_pgstore *s = g->s;
    if (s->open_rc == OPENING && !g->internal) {
        g->next = NULL;
        *s->parked_tail = g;
        s->parked_tail = &g->next;
        return;
    }
    if (s->open_rc < 0 && !g->internal) {
        group_fail(g, s->open_rc, "the state database did not open");
        return;
    }
    int n = 1;
    for (int i = 0; i < g->nops; i++)
        n += g->ops[i]->n;
    fr_pgstmt *stmts = fr_xcalloc((size_t)n, sizeof *stmts);
    const char *timeouts[2] = {s->lock_timeout, s->stmt_timeout};
    int k = 0;
    stmts[k].sql = "SELECT set_config('lock_timeout', $1, true),"
                   " set_config('statement_timeout', $2, true)";
    stmts[k].nparams = 2;
    stmts[k++].params = timeouts;
    for (int i = 0; i < g->nops; i++) {
        op *o = g->ops[i];
        o->base = k;
        for (int j = 0; j < o->n; j++) {
            stmts[k].sql = o->sql[j];
            stmts[k].nparams = o->np[j];
            stmts[k++].params = (const char *const *)o->par[j];
        }
    }
    int rc = fr_pgconn_transaction_each(s->c, n, stmts, on_group, g);
    free(stmts);
    if (rc != FR_OK) {
        group_fail(g, rc, fr_strerror(rc));
        return;
    }
    s->in_flight++;
}

/* Sends op `o` (taken) at once, alone. */
void fr_pgstore_send(fr_pgstore *s, op *o)
{
    group_send(group_new(s, &o, 1));
}

void fr_pgstore_queue(fr_pgstore *s, op *o)
{
    if (s->nbatch == s->batch_cap) {
        s->batch_cap = s->batch_cap ? s->batch_cap * 2 : 16;
        s->batch = fr_xrealloc(s->batch, (size_t)s->batch_cap * sizeof *s->batch);
    }
    s->batch[s->nbatch++] = o;
}

static bool retryable(const fr_pgres *res)
{
    const char *st = fr_pgres_sqlstate(res);
    return fr_pgres_code(res) == FR_ESTORE &&
           (strcmp(st, "40P01") == 0 || strcmp(st, "40001") == 0);
}

/* One op's statement failed and took the batch `g` (taken) with it: that
 * op fails, the others go again as one batch. When the failed statement is
 * not known, each op goes again alone, so that only the faulty one fails. */
static void split(group *g, const fr_pgres *res)
{
    fr_pgstore *s = g->s;
    int failed = fr_pgres_failed(res), kept = 0;
    bool known = false;
    for (int i = 0; i < g->nops; i++)
        known = known || (failed >= g->ops[i]->base && failed < g->ops[i]->base + g->ops[i]->n);
    if (failed >= 0 && !known) { /* the group's own statement: no op is to blame */
        group_fail(g, code_of(res), fr_pgres_message(res));
        return;
    }
    for (int i = 0; i < g->nops; i++) {
        op *o = g->ops[i];
        if (failed >= o->base && failed < o->base + o->n) {
            fr_pgstore_fail(s, o, code_of(res), "%s", fr_pgres_message(res));
            op_free(o);
        } else if (failed < 0) {
            fr_pgstore_send(s, o);
        } else {
            g->ops[kept++] = o;
        }
    }
    g->nops = kept;
    if (kept > 0) {
        group_send(g);
        return;
    }
    free(g->ops);
    free(g);
}

static void on_group(void *ud, fr_pgres *res)
{
    group *g = ud;
    fr_pgstore *s = g->s;
    int rc = fr_pgres_code(res);
    s->in_flight--;
    if (rc == FR_OK) {
        for (int i = 0; i < g->nops; i++) {
            fr_pgstore_op_finish(s, g->ops[i], FR_OK, NULL, res, g->ops[i]->base);
            op_free(g->ops[i]);
        }
        free(g->ops);
        free(g);
    } else if ((rc == FR_EOUTCOME && !s->closing && g->tries < FR_PGSTORE_MAX_RESENDS) ||
               (retryable(res) && g->tries < FR_PGSTORE_MAX_RETRIES)) {
        /* Every op is idempotent: sent again, it books once. A transaction
         * lost with the connection waits in pgconn for the next one. */
        if (rc == FR_EOUTCOME)
            for (int i = 0; i < g->nops; i++)
                g->ops[i]->resent = true;
        g->tries++;
        s->retries++;
        group_send(g);
    } else if (rc == FR_ESTORE && g->nops > 1 && !retryable(res)) {
        split(g, res);
    } else {
        group_fail(g, code_of(res), fr_pgres_message(res));
    }
    fr_pgres_free(res);
    if (s->closing && s->in_flight == 0 && s->end_sent)
        fr_pgstore_teardown(s);
}

/* ---- the batch ---------------------------------------------------------------- */

void fr_pgstore_flush(fr_pgstore *s)
{
    if (!s || s->nbatch == 0)
        return;
    group *g = group_new(s, s->batch, s->nbatch);
    s->nbatch = 0;
    s->flushes++;
    group_send(g);
}

size_t fr_pgstore_queued(const fr_pgstore *s)
{
    return (size_t)s->nbatch;
}

size_t fr_pgstore_in_flight(const fr_pgstore *s)
{
    return (size_t)s->in_flight;
}

void fr_pgstore_stats_get(const fr_pgstore *s, fr_pgstore_stats *out)
{
    out->flushes = s->flushes;
    out->retries = s->retries;
    out->heartbeats = s->heartbeats;
    out->notifies = s->notifies;
}

/* ---- the owner ------------------------------------------------------------------ */

/* The owner's registration at open, on the main connection. */
static op *owner_op(fr_pgstore *s)
{
    op *o = fr_pgstore_op_new(K_OWNER, "cannot register this process", s);
    fr_pgstore_op_sql(o, OWNER_SQL);
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_op_str(o, s->user);
    fr_pgstore_op_str(o, s->host);
    fr_pgstore_op_int(o, (long long)getpid());
    fr_pgstore_op_int(o, s->opts.lease_ms);
    return o;
}

static void send_internal(fr_pgstore *s, op *o)
{
    group *g = group_new(s, &o, 1);
    g->internal = true;
    group_send(g);
}

/* The heartbeat's connection: its losses need nothing of the store's (it
 * reconnects by itself, and a heartbeat is no one's to retry but the next
 * tick's); a first connection that failed is opened again at the next tick. */
static void on_hb_state(void *ud, fr_pgconn_event ev, const fr_error *err)
{
    fr_pgstore *s = ud;
    if (ev == FR_PGCONN_FAILED)
        s->hb_failed = true;
    static const char *const names[] = {
        [FR_PGCONN_UP] = "up", [FR_PGCONN_LOST] = "lost", [FR_PGCONN_FAILED] = "failed"};
    fr_log(FR_LOG_DEBUG, "pgstore", "heartbeat connection owner=%s state=%s%s%s", s->owner,
           names[ev], err ? " " : "", err ? err->msg : "");
}

static void hb_open(fr_pgstore *s)
{
    fr_error err = {0};
    s->hb_failed = false;
    if (fr_pgconn_open(s->heartbeat.loop, s->url, on_hb_state, s, &s->hb, &err) != FR_OK) {
        s->hb = NULL; /* not expected: the same URL opened the main connection */
        fr_log(FR_LOG_DEBUG, "pgstore", "heartbeat connection owner=%s: %s", s->owner, err.msg);
    }
}

static void on_beat(void *ud, fr_pgres *res)
{
    fr_pgstore *s = ud;
    int rc = fr_pgres_code(res);
    s->beating = false;
    if (rc == FR_OK) {
        s->heartbeats++;
    } else {
        s->hb_failed = s->hb_failed || rc == FR_ECONNECT;
        fr_log(FR_LOG_DEBUG, "pgstore", "heartbeat owner=%s failed: %s", s->owner,
               fr_pgres_message(res));
    }
    fr_pgres_free(res);
}

/* Pushes the owner's expires on, on the heartbeat's connection: nothing
 * queued on the main one (a transaction waiting on a row lock up to its
 * timeouts, more behind it) can make it late past the lease. */
static void on_heartbeat(uv_timer_t *t)
{
    fr_pgstore *s = t->data;
    if (s->beating || s->closing || !s->ready)
        return; /* the last one is still on its way */
    if (s->hb_failed) {
        fr_pgconn_close(s->hb);
        s->hb = NULL;
    }
    if (!s->hb)
        hb_open(s);
    if (!s->hb)
        return;
    char pid[24], lease[24];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    snprintf(lease, sizeof lease, "%d", s->opts.lease_ms);
    const char *params[5] = {s->owner, s->user, s->host, pid, lease};
    int rc = fr_pgconn_query(s->hb, OWNER_SQL, 5, params, on_beat, s);
    if (rc != FR_OK) {
        s->hb_failed = rc == FR_ECONNECT;
        fr_log(FR_LOG_DEBUG, "pgstore", "heartbeat owner=%s not sent: %s", s->owner,
               fr_strerror(rc));
        return;
    }
    s->beating = true;
}

void fr_pgstore_stop_heartbeat(fr_pgstore *s)
{
    uv_timer_stop(&s->heartbeat);
}

const char *fr_pgstore_owner(const fr_pgstore *s)
{
    return s->owner;
}

/* The open is over: `done` with `rc`, and the parked groups sent or failed. */
static void open_finish(fr_pgstore *s, int rc, const fr_error *err)
{
    s->open_rc = rc;
    s->ready = rc == FR_OK;
    if (rc == FR_OK && !s->torn)
        hb_open(s);
    if (rc == FR_OK)
        uv_timer_start(&s->heartbeat, on_heartbeat, (uint64_t)s->opts.heartbeat_ms,
                       (uint64_t)s->opts.heartbeat_ms);
    if (s->open_done) {
        fr_pgstore_done_fn done = s->open_done;
        s->open_done = NULL;
        done(s->open_ud, rc, err);
    }
    group *g = s->parked;
    s->parked = NULL;
    s->parked_tail = &s->parked;
    while (g) {
        group *next = g->next;
        group_send(g);
        g = next;
    }
    for (size_t i = 0; rc == FR_OK && i < s->nwaits; i++) {
        fr_pgstore_listen(s, s->waits[i]);
        if (s->wait_since[i] > 0)
            fr_pgstore_send_waiting(s, s->waits[i], s->wait_since[i]);
    }
}

/* What an internal op's result means. */
void fr_pgstore_internal_done(fr_pgstore *s, op *o, int rc, const fr_error *err)
{
    if (o->kind == K_OWNER) {
        if (s->open_rc == OPENING)
            open_finish(s, rc, err);
    } else if (o->kind == K_OWNER_END) {
        s->end_sent = true;
    }
}

static void on_schema(void *ud, int rc, const fr_error *err)
{
    fr_pgstore *s = ud;
    if (rc != FR_OK) {
        fr_error e = {0};
        fr_error_set(&e, rc, s->masked, 0, "cannot open the state database %s: %s", s->masked,
                     err ? err->msg : fr_strerror(rc));
        open_finish(s, rc, &e);
        return;
    }
    if (s->closing) {
        open_finish(s, FR_ECANCELED, NULL);
        return;
    }
    send_internal(s, owner_op(s));
}

/* ---- the connection's state, the wake path ---------------------------------- */

static void wake_all(fr_pgstore *s)
{
    for (size_t i = 0; i < s->nwaits && s->opts.on_wake; i++)
        s->opts.on_wake(s->opts.ud, s->waits[i]);
}

static void on_conn_state(void *ud, fr_pgconn_event ev, const fr_error *err)
{
    fr_pgstore *s = ud;
    if (ev == FR_PGCONN_LOST) {
        s->down = true;
        if (s->closing) { /* nothing more is owed to a closing store */
            s->end_sent = true;
            if (s->in_flight == 0)
                fr_pgstore_teardown(s);
            return;
        }
        if (s->opts.on_state)
            s->opts.on_state(s->opts.ud, FR_PGSTORE_DOWN, err);
    } else if (ev == FR_PGCONN_UP && s->down) {
        s->down = false;
        /* A new session: LISTEN again, and whatever was notified meanwhile
         * was missed. */
        for (size_t i = 0; i < s->nwaits && s->ready; i++) {
            fr_pgstore_listen(s, s->waits[i]);
            /* Whether or not it still waits: a row written or deleted
             * while the connection was down (or as it went) is not known
             * to have reached the server. */
            fr_pgstore_send_waiting(s, s->waits[i], s->wait_since[i]);
        }
        if (s->opts.on_state)
            s->opts.on_state(s->opts.ud, FR_PGSTORE_UP, NULL);
        wake_all(s);
    } else if (ev == FR_PGCONN_FAILED && s->opts.on_state) {
        s->opts.on_state(s->opts.ud, FR_PGSTORE_DOWN, err);
    }
}

static void on_notify(void *ud, const char *channel, const char *payload)
{
    fr_pgstore *s = ud;
    (void)channel;
    s->notifies++;
    for (size_t i = 0; i < s->nwaits; i++)
        if (strcmp(s->waits[i], payload) == 0 && s->opts.on_wake)
            s->opts.on_wake(s->opts.ud, payload);
}

static void on_wake_timer(uv_timer_t *t)
{
    wake_all(t->data);
}

int fr_pgstore_wait(fr_pgstore *s, const char *endpoint)
{
    if (!s || !endpoint)
        return FR_EINVAL;
    if (s->closing)
        return FR_ECANCELED;
    for (size_t i = 0; i < s->nwaits; i++)
        if (strcmp(s->waits[i], endpoint) == 0)
            return FR_OK;
    s->waits = fr_xrealloc(s->waits, (s->nwaits + 1) * sizeof *s->waits);
    s->wait_since = fr_xrealloc(s->wait_since, (s->nwaits + 1) * sizeof *s->wait_since);
    s->wait_since[s->nwaits] = 0;
    s->waits[s->nwaits++] = fr_xstrdup(endpoint);
    if (s->ready)
        fr_pgstore_listen(s, endpoint);
    if (!uv_is_active((uv_handle_t *)&s->wake))
        uv_timer_start(&s->wake, on_wake_timer, (uint64_t)s->opts.wake_fallback_ms,
                       (uint64_t)s->opts.wake_fallback_ms);
    return FR_OK;
}

int fr_pgstore_slot_waiting(fr_pgstore *s, const char *endpoint, double since)
{
    int rc = fr_pgstore_wait(s, endpoint);
    if (rc != FR_OK)
        return rc;
    size_t i = 0;
    while (strcmp(s->waits[i], endpoint) != 0)
        i++;
    since = since > 0 ? since : 0;
    if (s->wait_since[i] == since)
        return FR_OK;
    s->wait_since[i] = since;
    if (s->ready && !s->down)
        fr_pgstore_send_waiting(s, endpoint, since);
    return FR_OK;
}

double fr_pgstore_clock(const fr_pgstore *s)
{
    return fr_store_unix_now(s->clock);
}

/* ---- open and close --------------------------------------------------------------- */

static void handle_closed(uv_handle_t *h)
{
    fr_pgstore *s = h->data;
    if (--s->handles > 0)
        return;
    for (size_t i = 0; i < s->nwaits; i++)
        free(s->waits[i]);
    free(s->waits);
    free(s->wait_since);
    free(s->batch);
    free(s->masked);
    fr_wipe(s->url, strlen(s->url));
    free(s->url);
    free(s->owner);
    free(s->user);
    free(s->host);
    free(s);
}

void fr_pgstore_teardown(fr_pgstore *s)
{
    if (s->torn)
        return;
    s->torn = true;
    fr_pgconn_close(s->hb); /* a heartbeat in flight: on_beat, FR_EOUTCOME */
    s->hb = NULL;
    fr_pgconn *c = s->c;
    s->c = NULL;
    if (s->open_rc == OPENING)
        s->open_rc = FR_ECANCELED;
    fr_pgconn_close(c); /* fails what is left: on_group, then group_fail */
    group *g = s->parked;
    s->parked = NULL;
    while (g) {
        group *next = g->next;
        group_fail(g, FR_ECANCELED, "the state store was closed");
        g = next;
    }
    if (s->open_done) {
        fr_error e = {0};
        fr_error_set(&e, FR_ECANCELED, s->masked, 0, "the state store was closed");
        open_finish(s, FR_ECANCELED, &e);
    }
    uv_close((uv_handle_t *)&s->heartbeat, handle_closed);
    uv_close((uv_handle_t *)&s->wake, handle_closed);
}

void fr_pgstore_close(fr_pgstore *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    uv_timer_stop(&s->heartbeat);
    uv_timer_stop(&s->wake);
    /* No heartbeat after this one: should it reach the server after the
     * end below, OWNER_SQL leaves the ended owner ended. */
    fr_pgconn_close(s->hb);
    s->hb = NULL;
    if (!s->c) {
        fr_pgstore_teardown(s);
        return;
    }
    fr_pgstore_flush(s);
    if (s->ready && !s->down) {
        op *o = fr_pgstore_op_new(K_OWNER_END, "cannot end this process's lease", s);
        fr_pgstore_op_sql(o, OWNER_END_SQL);
        fr_pgstore_op_str(o, s->owner);
        fr_pgstore_op_sql(o, "DELETE FROM slot_waits WHERE owner_id = $1");
        fr_pgstore_op_str(o, s->owner);
        send_internal(s, o);
        return; /* fr_pgstore_teardown when every transaction is back */
    }
    fr_pgstore_teardown(s);
}

/* A client-made owner id: host, pid and 64 random bits. Owned. */
static char *make_owner_id(const char *host)
{
    unsigned char r[8] = {0};
    uv_random(NULL, NULL, r, sizeof r, 0, NULL);
    char hex[17];
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    return fr_xasprintf("%s-%ld-%s", host, (long)getpid(), hex);
}

static int or_default(int v, int def)
{
    return v > 0 ? v : def;
}

int fr_pgstore_open(uv_loop_t *loop, const char *url, const fr_pgstore_opts *opts,
                    fr_pgstore_done_fn done, void *ud, fr_pgstore **out, fr_error *err)
{
    if (!loop || !url || !done || !out)
        return fr_error_set(err, FR_EINVAL, "postgresql", 0, "no loop, URL, callback or result");
    fr_pgstore *s = fr_xcalloc(1, sizeof *s);
    if (opts)
        s->opts = *opts;
    s->opts.heartbeat_ms = or_default(s->opts.heartbeat_ms, FR_PGSTORE_HEARTBEAT_MS);
    s->opts.lease_ms = or_default(s->opts.lease_ms, FR_PGSTORE_LEASE_MS);
    s->opts.lock_timeout_ms = or_default(s->opts.lock_timeout_ms, FR_PGSTORE_LOCK_TIMEOUT_MS);
    s->opts.stmt_timeout_ms = or_default(s->opts.stmt_timeout_ms, FR_PGSTORE_STMT_TIMEOUT_MS);
    s->opts.wake_fallback_ms = or_default(s->opts.wake_fallback_ms, FR_PGSTORE_WAKE_FALLBACK_MS);
    snprintf(s->lock_timeout, sizeof s->lock_timeout, "%d", s->opts.lock_timeout_ms);
    snprintf(s->stmt_timeout, sizeof s->stmt_timeout, "%d", s->opts.stmt_timeout_ms);
    char user[256], host[256];
    fr_store_identity(user, sizeof user, host, sizeof host); /* labelled as on SQLite */
    s->user = fr_xstrdup(s->opts.user ? s->opts.user : user);
    s->host = fr_xstrdup(s->opts.host ? s->opts.host : host);
    s->opts.user = s->opts.host = NULL;
    s->owner = make_owner_id(s->host);
    s->masked = url[0] ? fr_pgurl_mask(url) : fr_xstrdup("postgresql:");
    s->url = fr_xstrdup(url);
    s->open_done = done;
    s->open_ud = ud;
    s->open_rc = OPENING;
    s->parked_tail = &s->parked;
    uv_timer_init(loop, &s->heartbeat);
    uv_timer_init(loop, &s->wake);
    s->heartbeat.data = s->wake.data = s;
    s->handles = 2;
    int rc = fr_pgconn_open(loop, url, on_conn_state, s, &s->c, err);
    if (rc == FR_OK) {
        fr_pgconn_on_notify(s->c, on_notify, s);
        rc = fr_pg_schema_apply(s->c, s->masked, on_schema, s);
        if (rc != FR_OK)
            fr_error_set(err, rc, s->masked, 0, "cannot open the state database %s: %s", s->masked,
                         fr_strerror(rc));
    }
    if (rc != FR_OK) {
        s->open_done = NULL;
        s->open_rc = rc;
        s->closing = true;
        fr_pgstore_teardown(s);
        return rc;
    }
    *out = s;
    return FR_OK;
}

void fr_pgstore_set_clock(fr_pgstore *s, time_t now)
{
    s->clock = now;
}
