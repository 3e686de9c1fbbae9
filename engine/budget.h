#pragma once
/* Spending caps without I/O: the run cap and this run's shares of the
 * monthly and the daily cap (the period caps, every run of a store
 * together), each with what is spent and what is reserved by requests in
 * flight, and the run cap's alert threshold. A request is sent only after its
 * worst case is reserved against every cap, so spend can never pass a cap
 * however many requests start at once; its reservation then settles to what
 * it actually cost. Whether a cap exists is said explicitly: a cap of 0 is a
 * cap (only free work fits), never "no cap". Also prices (what a usage
 * costs on an endpoint, and a request's worst case), admission (fits now,
 * may fit once requests in flight settle, or never, with the reason) and the
 * alerts. engine/run owns one; the period allowances come from the state
 * store through the ledger callbacks it is given (fr_budget_set_ledger). */

#include "dsl/workflow.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <jansson.h>
#include <stdbool.h>

/* The caps: the run's, and the two periods' (a UTC month, a UTC day), whose
 * allowance for a run is leased from the ledger. */
typedef enum { FR_CAP_RUN = 0, FR_CAP_MONTH, FR_CAP_DAY, FR_CAP_COUNT } fr_cap_kind;

typedef struct fr_budget fr_budget;

/* Returns a new budget (owned; fr_budget_free). There is a run cap of
 * `run_cap` USD (>= 0; 0 lets only free work through) when `has_run_cap`,
 * else none. When `has_month` there is a monthly cap, whose allowance for
 * this run starts at 0 and grows with fr_budget_add_allowance; else none.
 * `alert` is the fraction of the run cap whose crossing is reported
 * (outside (0, 1]: 0.8). */
fr_budget *fr_budget_new(bool has_run_cap, double run_cap, bool has_month, double alert);
/* The budget of a run of `wf` (borrowed): `--budget` (when `has_opt`, of
 * `opt_usd`) replaces the workflow's run cap, whatever either says (0 is a
 * cap like any other); a run that `books` also has the workflow's monthly
 * and daily caps, whose ledger it is given once the books are open
 * (fr_budget_set_ledger). Owned. */
fr_budget *fr_budget_for_run(const fr_workflow *wf, bool has_opt, double opt_usd, bool books);
/* Gives `b` a cap of period `kind` (FR_CAP_MONTH or FR_CAP_DAY; another is
 * ignored) of `usd` for every run together; this run's allowance of it
 * starts at 0 and grows with leases. */
void fr_budget_set_period(fr_budget *b, fr_cap_kind kind, double usd);
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
/* The cap of `kind` (for a period, this run's allowance), -1 for none; what
 * remains of it (spent and reserved taken off), or -1 when there is no cap. */
double fr_budget_cap(const fr_budget *b, fr_cap_kind kind);
double fr_budget_remaining(const fr_budget *b, fr_cap_kind kind);

/* Adds `usd` to the allowance of period `kind` (a lease taken from the
 * state store); nothing for the run cap or a period without a cap. */
void fr_budget_add_allowance(fr_budget *b, fr_cap_kind kind, double usd);
/* How much more allowance of period `kind` `amount` would need to fit now;
 * 0 when it fits, or there is no such cap. */
double fr_budget_shortfall(const fr_budget *b, fr_cap_kind kind, double amount);

/* Returns FR_CAP_RUN the first time spend reaches the alert fraction of a
 * run cap above 0, marking it reported; -1 otherwise. The monthly alert is
 * not reported here: it is about the month's ledger, all runs together,
 * which only engine/run reads. */
int fr_budget_next_alert(fr_budget *b);
/* The alert fraction. */
double fr_budget_alert(const fr_budget *b);
/* Returns "run", "month" or "day". */
const char *fr_cap_name(fr_cap_kind kind);

/* ---- prices ----------------------------------------------------------- */

/* Cost in USD of `u` at the prices of `spec` (both borrowed); cached input
 * at its own price when the endpoint has one. */
double fr_price_cost(const fr_endpoint_spec *spec, const fr_usage *u);
/* The worst case in USD of a request of `input` tokens in and `max_tokens`
 * out on `spec` (borrowed). */
double fr_price_worst(const fr_endpoint_spec *spec, long input, int max_tokens);

/* ---- the period caps' ledger ------------------------------------------ */

/* What a lease returns when the ledger is asynchronous (a shared store on
 * another host) and the answer is not in yet: the lease is asked, the
 * admission says FR_ADMIT_WAIT, the ledger's owner pumps the run again when
 * the answer is in, and the next lease call of that period returns it (its
 * grant, or its error), whatever `want` then is. */
#define FR_BUDGET_ASKED 1

/* How the budget reaches the periods' ledger (the state store), given by
 * its owner; `period` is FR_CAP_MONTH (the current UTC month) or FR_CAP_DAY
 * (the current UTC day). lease and totals return FR_OK or a negative code
 * with `err` filled; lease also FR_BUDGET_ASKED. */
typedef struct fr_budget_ledger {
    void *ud;
    /* Takes up to `want` USD more of the period's cap of `cap` USD for this
     * run; *granted is what it got (maybe 0). */
    int (*lease)(void *ud, fr_cap_kind period, double cap, double want, double *granted,
                 fr_error *err);
    /* What every run spent in the period, and spent plus what runs in
     * progress hold of it. */
    int (*totals)(void *ud, fr_cap_kind period, double *spent, double *used, fr_error *err);
    /* True, once, when the period is another than when last asked (a run
     * crossing midnight UTC, or a month's end): the run's allowance of the
     * old one is not spent in the new one. May be NULL (periods never turn). */
    bool (*turned)(void *ud, fr_cap_kind period);
} fr_budget_ledger;

/* Gives a budget its ledger (borrowed, copied; its ud must outlive the
 * budget), for the period caps it has (fr_budget_set_period). */
void fr_budget_set_ledger(fr_budget *b, const fr_budget_ledger *ledger);

/* ---- admission ---------------------------------------------------------- */

typedef enum { FR_ADMIT_FITS = 0, FR_ADMIT_WAIT, FR_ADMIT_NEVER } fr_admit;

/* One request asking to be sent. */
typedef struct fr_admit_ask {
    const fr_endpoint_spec *endpoint; /* where it would go (borrowed) */
    double worst;                     /* its worst case, fr_price_worst */
    bool task_capped;                 /* the task has its own cap ... */
    double task_cap;                  /* ... of this much */
    double task_spent;                /* and has spent this much */
    bool allow_unpriced;              /* budget.allow_unpriced */
} fr_admit_ask;

/* Whether `a` (borrowed) fits every cap now, may fit once requests in
 * flight settle or a lease asked is answered (FR_BUDGET_ASKED), or never will. An endpoint without
 * a price cannot be checked, so under a cap it is kept out unless allowed. Takes more of a period's
 * cap from the ledger when the run's share is short (after starting the run's share of a period
 * anew when the ledger says it turned). On FR_ADMIT_NEVER, and when *why is NULL, *why is set
 * (owned) to a reason with the figures. */
fr_admit fr_budget_admit(fr_budget *b, const fr_admit_ask *a, char **why);

/* ---- settling and alerts ---------------------------------------------- */

/* Settles a reservation (fr_budget_settle) and records the run cap's alert
 * the first time spend crosses its threshold, at `at_ms` into the run (logged
 * and kept for the report). */
void fr_budget_charge(fr_budget *b, double reserved, double actual, double at_ms);
/* True when a booking of `cost` should report the month's new total back
 * (fr_budget_month_booked): a monthly cap whose alert has not fired. */
bool fr_budget_wants_month_total(const fr_budget *b, double cost);
/* The month's ledger total is `total` after a booking of `cost`: the
 * monthly alert fires once, in the booking (of any run or process) that
 * takes the total across its threshold. */
void fr_budget_month_booked(fr_budget *b, double total, double cost, double at_ms);
/* No alert is recorded from now on (a plan spends nothing). */
void fr_budget_mute_alerts(fr_budget *b);
/* The alerts so far (borrowed): {cap, cap_usd, fraction, spent_usd, at_ms}. */
const json_t *fr_budget_alerts(const fr_budget *b);
