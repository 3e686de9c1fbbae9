#pragma once
/* Spending caps without I/O: the run cap and this run's share of the
 * monthly cap, each with what is spent and what is reserved by requests in
 * flight, and the run cap's alert threshold. A request is sent only after its
 * worst case is reserved against every cap, so spend can never pass a cap
 * however many requests start at once; its reservation then settles to what
 * it actually cost. Whether a cap exists is said explicitly: a cap of 0 is a
 * cap (only free work fits), never "no cap". engine/run owns one; the state
 * store supplies the monthly allowance, and the monthly alert, which reads
 * the month's ledger, is engine/run's. */

#include <stdbool.h>

typedef enum { FR_CAP_RUN = 0, FR_CAP_MONTH, FR_CAP_COUNT } fr_cap_kind;

typedef struct fr_budget fr_budget;

/* Returns a new budget (owned; fr_budget_free). There is a run cap of
 * `run_cap` USD (>= 0; 0 lets only free work through) when `has_run_cap`,
 * else none. When `has_month` there is a monthly cap, whose allowance for
 * this run starts at 0 and grows with fr_budget_add_allowance; else none.
 * `alert` is the fraction of the run cap whose crossing is reported
 * (outside (0, 1]: 0.8). */
fr_budget *fr_budget_new(bool has_run_cap, double run_cap, bool has_month, double alert);
/* Frees a budget; NULL is fine. */
void fr_budget_free(fr_budget *b);

/* True when any cap is set. */
bool fr_budget_capped(const fr_budget *b);

/* True when `amount` more can be reserved against every cap now. */
bool fr_budget_fits(const fr_budget *b, double amount);
/* True when `amount` would fit once every reservation in flight settled at
 * no cost: the request may wait instead of being refused. */
bool fr_budget_may_fit(const fr_budget *b, double amount);

/* Reserves `amount` against every cap. The caller checked fr_budget_fits. */
void fr_budget_reserve(fr_budget *b, double amount);
/* Settles a reservation of `reserved` to the `actual` cost (which may be
 * higher than reserved when a provider billed more than the worst case; it
 * is booked all the same). */
void fr_budget_settle(fr_budget *b, double reserved, double actual);

/* Spent and reserved so far (the same for every cap: this run's). */
double fr_budget_spent(const fr_budget *b);
double fr_budget_reserved(const fr_budget *b);
/* True when there is a cap of `kind` (of any amount, 0 included). */
bool fr_budget_has_cap(const fr_budget *b, fr_cap_kind kind);
/* The cap of `kind` (for the month, this run's allowance), -1 for none; what
 * remains of it (spent and reserved taken off), or -1 when there is no cap. */
double fr_budget_cap(const fr_budget *b, fr_cap_kind kind);
double fr_budget_remaining(const fr_budget *b, fr_cap_kind kind);

/* Adds `usd` to the month's allowance (a lease taken from the state store). */
void fr_budget_add_allowance(fr_budget *b, double usd);
/* How much more month allowance `amount` would need to fit now; 0 when it
 * fits the month, or there is no monthly cap. */
double fr_budget_month_shortfall(const fr_budget *b, double amount);

/* Returns FR_CAP_RUN the first time spend reaches the alert fraction of a
 * run cap above 0, marking it reported; -1 otherwise. The monthly alert is
 * not reported here: it is about the month's ledger, all runs together,
 * which only engine/run reads. */
int fr_budget_next_alert(fr_budget *b);
/* The alert fraction. */
double fr_budget_alert(const fr_budget *b);
/* Returns "run" or "month". */
const char *fr_cap_name(fr_cap_kind kind);
