#pragma once
/* Spending caps without I/O: the run cap and this run's share of the
 * monthly cap, each with what is spent and what is reserved by requests in
 * flight, and the alert threshold. A request is sent only after its worst
 * case is reserved against every cap, so spend can never pass a cap however
 * many requests start at once; its reservation then settles to what it
 * actually cost. engine/run owns one; the state store supplies the monthly
 * allowance. */

#include <stdbool.h>

typedef enum { FR_CAP_RUN = 0, FR_CAP_MONTH, FR_CAP_COUNT } fr_cap_kind;

typedef struct fr_budget fr_budget;

/* Returns a new budget (owned; fr_budget_free). `run_cap` and
 * `month_allowance` are USD, <= 0 for none; `alert` is the fraction of a
 * cap whose crossing is reported (0 = 0.8). */
fr_budget *fr_budget_new(double run_cap, double month_allowance, double alert);
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
/* The cap of `kind`, <= 0 for none; what remains of it (spent and
 * reserved taken off), or a negative number when there is no cap. */
double fr_budget_cap(const fr_budget *b, fr_cap_kind kind);
double fr_budget_remaining(const fr_budget *b, fr_cap_kind kind);

/* Adds `usd` to the month's allowance (a lease taken from the state store). */
void fr_budget_add_allowance(fr_budget *b, double usd);
/* How much more month allowance `amount` would need to fit now; 0 when it
 * fits the month, or there is no monthly cap. */
double fr_budget_month_shortfall(const fr_budget *b, double amount);

/* Returns the next cap whose alert threshold has been crossed by spend and
 * not yet reported, marking it reported; -1 when none. */
int fr_budget_next_alert(fr_budget *b);
/* The alert fraction. */
double fr_budget_alert(const fr_budget *b);
/* Returns "run" or "month". */
const char *fr_cap_name(fr_cap_kind kind);
