#pragma once
/* One asynchronous PostgreSQL connection on the libuv loop (libpq): it owns
 * the socket's uv_poll_t, the host's resolution (uv_getaddrinfo, so libpq
 * never resolves on the loop), a FIFO of requests sent in pipeline mode,
 * reconnection with backoff, per-statement results and notifications;
 * messages name the URL masked (pgurl.h). The PostgreSQL state store
 * (pgstore.h) is built on it; nothing else uses it. Loop thread only. */

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "engine/util/err.h"

/* The delay before the first reconnection after a loss, doubled after each
 * failed attempt up to the second bound; a connection that comes up again
 * starts over from the first. */
#define FR_PGCONN_BACKOFF_MIN_MS 50
#define FR_PGCONN_BACKOFF_MAX_MS 2000
/* How long one connection attempt (resolution, TCP, TLS, authentication)
 * may take before it counts as failed. */
#define FR_PGCONN_CONNECT_TIMEOUT_MS 10000
/* Requests sent and not yet answered at most; the others wait in order. */
#define FR_PGCONN_MAX_IN_FLIGHT 512

typedef struct fr_pgconn fr_pgconn;

/* What a request ended with: rows and columns as strings, or an error. */
typedef struct fr_pgres fr_pgres;

/* What the state callback reports. */
typedef enum {
    FR_PGCONN_UP,     /* connected, at open or after a loss: waiting requests go out */
    FR_PGCONN_LOST,   /* a connection that was up broke; reconnecting (reported once) */
    FR_PGCONN_FAILED, /* the first connection failed: final, requests fail FR_ECONNECT */
} fr_pgconn_event;

/* The state callback: `err` (borrowed, for the call only) says why for LOST
 * and FAILED (FR_ECONNECT, the URL with its password masked), NULL for UP. */
typedef void (*fr_pgconn_state_fn)(void *ud, fr_pgconn_event ev, const fr_error *err);

/* A request's callback, called once with `res` (taken: fr_pgres_free it). */
typedef void (*fr_pgconn_done_fn)(void *ud, fr_pgres *res);

/* One statement of a request: SQL with $1..$n text parameters (borrowed;
 * a NULL parameter is SQL NULL). */
typedef struct fr_pgstmt {
    const char *sql;
    int nparams;
    const char *const *params;
} fr_pgstmt;

/* Starts connecting to `url` (borrowed; a copy is kept, wiped at the end):
 * a URI (postgresql://user[:password]@host[:port]/db?param=value...), a
 * key=value string, or "" for libpq's environment alone (PGHOST, PGPORT,
 * PGUSER, PGPASSWORD, PGPASSFILE / ~/.pgpass...). A host name is resolved on
 * libuv's thread pool and given to libpq as `hostaddr`, keeping `host` for
 * TLS and the password file; a host that is a path (a unix socket's folder)
 * needs none. `on_state` (may be NULL) and `ud` are borrowed until the
 * connection is closed. Requests may be queued at once: they go out when
 * the connection is up. Returns FR_OK and the connection in *out (owned:
 * fr_pgconn_close it), or FR_ECONFIG when `url` does not parse (err says
 * why, the URL masked), FR_EINVAL for a NULL argument. */
int fr_pgconn_open(uv_loop_t *loop, const char *url, fr_pgconn_state_fn on_state, void *ud,
                   fr_pgconn **out, fr_error *err);

/* Queues a request of `n` statements (borrowed: copied) run as one
 * transaction (one pipeline segment: all committed at its end, or none when
 * one fails; a statement that is itself BEGIN or COMMIT controls the
 * transaction as in psql: after a failure inside a request's own BEGIN the
 * session stays in the failed block, every later request failing with
 * SQLSTATE 25P02, until a ROLLBACK). Requests go out in the order queued,
 * several in one pass of the loop, and their results come back in that
 * order. `done` is called once, on a later turn of the loop, with the last
 * statement's result, or an error: FR_ESTORE (the server's, with its SQLSTATE: 57014 a
 * statement timeout, 55P03 a lock timeout...), FR_EOUTCOME (the connection
 * broke while the request was in flight: it may or may not have been
 * committed; it is never repeated), FR_ECANCELED (closed before it was
 * sent), FR_ECONNECT (the first connection failed). Requests not yet sent
 * when a connection breaks wait for the next one. Returns FR_OK (then `done`
 * will be called), or, without calling `done`: FR_EINVAL (n < 1, a NULL
 * SQL, more than 65,535 parameters), FR_ECANCELED (the connection is closing), FR_ECONNECT (its
 * first connection failed). */
int fr_pgconn_transaction(fr_pgconn *c, int n, const fr_pgstmt *stmts, fr_pgconn_done_fn done,
                          void *ud);

/* fr_pgconn_transaction, and the result holds every statement's result too:
 * fr_pgres_part(res, i) is statement i's (its last result; NULL for one
 * that returned none), so one transaction can carry several callers'
 * statements and each read its own. On an error, fr_pgres_failed says
 * which statement failed (the transaction is rolled back as a whole).
 * Arguments, returns and `done` as fr_pgconn_transaction. */
int fr_pgconn_transaction_each(fr_pgconn *c, int n, const fr_pgstmt *stmts, fr_pgconn_done_fn done,
                               void *ud);

/* A notification (LISTEN / NOTIFY) came: its channel and payload (both
 * borrowed for the call; the payload "" when it has none). */
typedef void (*fr_pgconn_notify_fn)(void *ud, const char *channel, const char *payload);

/* Sets the callback (NULL: none; then notifications are dropped) and its
 * `ud` (borrowed until the connection is closed or the callback changes)
 * that each notification received on `c` is handed to, once, in the turn
 * that reads it. A LISTEN lasts as long as the server session: after
 * FR_PGCONN_UP following FR_PGCONN_LOST, the caller LISTENs again (and
 * assumes it missed some). */
void fr_pgconn_on_notify(fr_pgconn *c, fr_pgconn_notify_fn fn, void *ud);

/* fr_pgconn_transaction of one statement. */
int fr_pgconn_query(fr_pgconn *c, const char *sql, int nparams, const char *const *params,
                    fr_pgconn_done_fn done, void *ud);

/* Requests sent and not yet answered (borrowed `c`). */
size_t fr_pgconn_in_flight(const fr_pgconn *c);

/* Requests queued and not yet sent (borrowed `c`). */
size_t fr_pgconn_waiting(const fr_pgconn *c);

/* Closes `c` (taken; NULL is fine): requests not yet sent are failed with
 * FR_ECANCELED and those in flight with FR_EOUTCOME, their callbacks called
 * before this returns; the state callback is not called again. The memory
 * goes in the last handle's close callback (PQfinish there), so the loop
 * must run once more. */
void fr_pgconn_close(fr_pgconn *c);

/* A result's code: FR_OK or the error the request's callback describes. */
int fr_pgres_code(const fr_pgres *r);
/* The server's SQLSTATE ("57014"), "" when the error is not the server's. */
const char *fr_pgres_sqlstate(const fr_pgres *r);
/* The error in words, "" for FR_OK (borrowed from `r`). No password. */
const char *fr_pgres_message(const fr_pgres *r);
/* Rows and columns of the last statement's result (0 without rows). */
int fr_pgres_rows(const fr_pgres *r);
int fr_pgres_cols(const fr_pgres *r);
/* The name of column `col` (borrowed from `r`), NULL when out of range. */
const char *fr_pgres_name(const fr_pgres *r, int col);
/* The text of a cell (borrowed from `r`): NULL for SQL NULL or out of range. */
const char *fr_pgres_value(const fr_pgres *r, int row, int col);
/* The rows the last statement inserted, updated, deleted or returned (its
 * command tag's count), 0 when it has none. */
int64_t fr_pgres_affected(const fr_pgres *r);
/* With fr_pgconn_transaction_each: the number of statements (0 otherwise,
 * and for an error), and statement `i`'s result (borrowed from `r`: rows,
 * columns, affected; NULL out of range or for a statement without one). */
int fr_pgres_parts(const fr_pgres *r);
const fr_pgres *fr_pgres_part(const fr_pgres *r, int i);
/* For an error of the server's: the index of the statement that failed,
 * else -1. */
int fr_pgres_failed(const fr_pgres *r);
/* Frees `r` (taken; NULL is fine). */
void fr_pgres_free(fr_pgres *r);
