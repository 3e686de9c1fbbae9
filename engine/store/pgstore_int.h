#pragma once
/* What pgstore.c (the store, its groups and owner) and pgstore_ops.c (the
 * operations' SQL and results) share; nothing else includes it. */

#include "engine/store/pg_schema.h"
#include "engine/store/pgconn.h"
#include "engine/store/pgstore.h"

#include <stdbool.h>
#include <stddef.h>

/* The most statements and parameters of one op: a reservation on a capped
 * endpoint fenced by a month and a day (2 + 2 + 2 + 1 statements, 17
 * parameters), a settle (17). */
#define OP_MAX_STMTS  8
#define OP_MAX_PARAMS 17

/* open_rc while the store opens; then FR_OK or the open's error. */
#define OPENING 1

/* What an op's results mean (pgstore_ops.c reads them). */
typedef enum {
    K_OWNER,     /* internal: the owner at open */
    K_OWNER_END, /* internal: at close */
    K_LISTEN,    /* internal: LISTEN on a waited endpoint's channel */
    K_WAITING,   /* internal: since when this owner waits for a slot (slot_waits) */
    K_RUN_BEGIN,
    K_RUN_END,
    K_RESERVE,
    K_SETTLE,
    K_PUT, /* cache, approval, report: FR_OK once committed */
    K_LEASE,
    K_RELEASE,
    K_USED,
    K_CACHE_GET,
    K_APPROVAL_GET,
    K_DECIDE,
    K_STATUS,
} op_kind;

/* One operation: its statements (SQL static, parameters owned), its
 * completion and what it needs to read its results. */
typedef struct op {
    op_kind kind;
    const char *what; /* the message's start when it fails (static) */
    int n;
    const char *sql[OP_MAX_STMTS];
    int np[OP_MAX_STMTS];
    char *par[OP_MAX_STMTS][OP_MAX_PARAMS + 1];
    int base;    /* its first statement's index in the group's transaction */
    bool resent; /* sent again after a lost connection: its first may have committed */
    union {
        fr_pgstore_done_fn done;
        fr_pgstore_value_fn value;
        fr_pgstore_reply_fn reply;
        fr_pgstore_approval_fn approval;
        fr_pgstore_status_fn status;
    } cb;
    void *ud;
    char *extra; /* owned: the run id of a status, for its message */
} op;

struct fr_pgstore {
    fr_pgconn *c;         /* every transaction but the heartbeat */
    fr_pgconn *hb;        /* the heartbeat's own, once the owner is registered */
    char *url;            /* owned, wiped at the end: to open hb (again) */
    fr_pgstore_opts opts; /* defaults filled; user and host not kept here */
    char lock_timeout[16], stmt_timeout[16];
    char *masked; /* the URL as messages show it */
    char *owner, *user, *host;
    time_t clock;
    int open_rc; /* OPENING, FR_OK, or the open's error */
    bool ready, down, closing, end_sent, torn;
    bool beating;   /* a heartbeat is in flight on hb */
    bool hb_failed; /* hb's first connection failed: opened again at the next beat */
    fr_pgstore_done_fn open_done;
    void *open_ud;
    struct group *parked, **parked_tail; /* sent once open */
    op **batch;                          /* the turn's writes */
    int nbatch, batch_cap;
    int in_flight; /* groups sent and not yet back */
    char **waits;  /* endpoints waited on */
    size_t nwaits;
    double *wait_since; /* beside each: since when this owner waits for one of its slots
                           (fr_pgstore_slot_waiting, unix seconds), 0 while none waits */
    uv_timer_t heartbeat, wake;
    int handles;
    long flushes, retries, heartbeats, notifies;
    struct {
        char key[16]; /* a period, "" for none */
        double spent, used;
    } figures[4]; /* the periods' figures the last leases read */
};

/* A new op of kind `k` (owned: it goes to fr_pgstore_send or
 * fr_pgstore_queue), `what` static, `ud` borrowed. */
op *fr_pgstore_op_new(op_kind k, const char *what, void *ud);
/* Adds a statement (`sql` static), then its parameters in order: text
 * (borrowed, copied; NULL is SQL NULL), a number, an integer. */
void fr_pgstore_op_sql(op *o, const char *sql);
void fr_pgstore_op_str(op *o, const char *v);
void fr_pgstore_op_num(op *o, double v);
void fr_pgstore_op_int(op *o, long long v);

/* Sends `o` (taken) alone, as its own transaction, at once. */
void fr_pgstore_send(fr_pgstore *s, op *o);
/* pgstore_ops.c: writes into slot_waits since when this owner waits for a
 * slot of `endpoint` (borrowed), or that it does not (since 0). */
void fr_pgstore_send_waiting(fr_pgstore *s, const char *endpoint, double since);
/* Queues `o` (taken) in the turn's batch (fr_pgstore_flush sends it). */
void fr_pgstore_queue(fr_pgstore *s, op *o);

/* Calls `o`'s completion (borrowed `o`, `err`, `res`): with rc FR_OK its
 * results are `res`'s statements from `base` on (pgstore_ops.c). */
void fr_pgstore_op_finish(fr_pgstore *s, op *o, int rc, const fr_error *err, const fr_pgres *res,
                          int base);
/* Calls `o`'s completion with `rc` and the message (`o` borrowed). */
void fr_pgstore_fail(fr_pgstore *s, op *o, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* What an internal op's outcome means to the store (pgstore.c). */
void fr_pgstore_internal_done(fr_pgstore *s, op *o, int rc, const fr_error *err);
/* LISTEN on `endpoint`'s channel (borrowed) (pgstore_ops.c). */
void fr_pgstore_listen(fr_pgstore *s, const char *endpoint);
/* Closes both connections and the timers; the memory goes with the last
 * timer's close callback. */
void fr_pgstore_teardown(fr_pgstore *s);
