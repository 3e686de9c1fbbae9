#pragma once
/* The books' half on a shared PostgreSQL store (engine/store/pgstore.h),
 * for engine/booking.c only: the store lives on a private loop of the
 * books, opened and ended by running that loop to completion before and
 * after the run's loop (nothing of the run waits then), and driven during
 * the run from the run's loop without ever blocking it (a poll on the
 * private loop's backend descriptor, a timer for its next timeout and a
 * prepare handle that sends the turn's writes as one transaction).
 * Every operation is asynchronous: a reservation's request waits for its
 * completion (fr_booking_wait's go), a refused slot for the store's wake or
 * a retry, a lease of a period's cap is answered on a later turn
 * (FR_BUDGET_ASKED), and what a lock held elsewhere timed out is sent again
 * after a short backoff. */

#include "engine/booking.h"

typedef struct fr_pgbooks fr_pgbooks;

/* How long the run's last writes (its end, the release of its leases, its
 * report) may wait for the store, which may be restarting, before the
 * books give up on them (a failed write: exit 74). */
#define FR_BOOKING_PG_END_MS 30000

/* Tells the run, through fr_booking_on_wake's hook, that an answer it may
 * wait for came (a lease). */
void fr_booking_woken(fr_booking *b);

/* Opens the books of run `run_id` of `owner` (both borrowed; `owner`
 * outlives them) on the PostgreSQL store at `url` (borrowed): connects,
 * applies the schema and registers the owner, running the private loop
 * until that is done. On FR_OK *out is owned (fr_pgbooks_free). Else
 * FR_ESTORE (unreachable: the message names the URL masked), FR_ESTOREVER
 * or FR_ECONFIG (a URL that does not parse). */
int fr_pgbooks_open(fr_booking *owner, const char *url, const char *run_id, fr_pgbooks **out,
                    fr_error *err);
/* Drives the books from `loop` (borrowed) until fr_pgbooks_detach. */
void fr_pgbooks_attach(fr_pgbooks *p, uv_loop_t *loop);
/* Closes the handles on the run's loop; what is still due completes at
 * fr_pgbooks_end. No request is released from then on. */
void fr_pgbooks_detach(fr_pgbooks *p);
/* The store (borrowed). */
fr_pgstore *fr_pgbooks_store(const fr_pgbooks *p);
/* Sends the writes queued (one transaction). */
void fr_pgbooks_flush(fr_pgbooks *p);
/* True while an operation of the books is unanswered. */
bool fr_pgbooks_busy(const fr_pgbooks *p);
/* fr_booking_begin. */
void fr_pgbooks_begin(fr_pgbooks *p, const char *name, const char *path);
/* fr_booking_reserve (`max` 0) and fr_booking_reserve_slot (`max` > 0). */
bool fr_pgbooks_reserve(fr_pgbooks *p, const fr_attempt_rec *a, int max, long long *row,
                        fr_booking_wait *w);
/* fr_booking_unpark. */
void fr_pgbooks_unpark(fr_pgbooks *p, fr_booking_wait *w);
/* fr_booking_settle, `a` redacted already; `history` (borrowed, may be
 * NULL) is told once the settle is durable. */
void fr_pgbooks_settle(fr_pgbooks *p, long long row, const fr_attempt_rec *a, fr_budget *budget,
                       double at_ms, fr_history *history);
/* The ledger's lease for period `kind` keyed `period` (borrowed): FR_OK
 * with *granted when an answer came since the last call, FR_BUDGET_ASKED
 * while one is asked (sent now when none was), or the answer's error. */
int fr_pgbooks_lease(fr_pgbooks *p, fr_cap_kind kind, const char *period, double cap, double want,
                     double *granted, fr_error *err);
/* Non-zero (once: FR_OVER_*) when a tool loop's later turn was refused as
 * over a cap: the fence refused its reservation and the cap had too little
 * left. */
int fr_pgbooks_over_cap(fr_pgbooks *p);
/* fr_booking_end and fr_booking_store_report, each run to completion on
 * the private loop (bounded: FR_BOOKING_PG_END_MS). */
int fr_pgbooks_end(fr_pgbooks *p, const char *status, int code, double spent, fr_error *err);
int fr_pgbooks_report(fr_pgbooks *p, const char *json, const char *summary, fr_error *err);
/* The store block of the run's report. */
void fr_pgbooks_info(const fr_pgbooks *p, fr_store_info *out);
/* Closes the store and the private loop; NULL is fine. */
void fr_pgbooks_free(fr_pgbooks *p);
