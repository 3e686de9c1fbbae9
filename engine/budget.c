#include "engine/budget.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <stdlib.h>

/* Amounts are compared with a tolerance of a millionth of a cent, so a
 * reservation that exactly fills a cap fits despite rounding. */
#define EPS 1e-8

struct fr_budget {
    bool has[FR_CAP_COUNT];
    double cap[FR_CAP_COUNT];
    bool alerted[FR_CAP_COUNT];
    double alert;
    double spent;
    double reserved;
    /* For the month and the day: the whole cap's amount (cap[] is this run's
     * allowance of it), for leases and reasons; and what of the allowance
     * is pinned to reservations made in the period before the current one
     * (see roll_period). */
    double period_usd[FR_CAP_COUNT];
    double pinned[FR_CAP_COUNT];
    fr_budget_ledger ledger; /* how to reach the periods' ledger; no lease without */
    bool has_ledger;
    bool lease_failed; /* the ledger could not lease: logged once */
    bool muted;        /* no alerts (a plan) */
    json_t *alerts;
};

fr_budget *fr_budget_new(bool has_run_cap, double run_cap, bool has_month, double alert)
{
    fr_budget *b = fr_xcalloc(1, sizeof *b);
    b->has[FR_CAP_RUN] = has_run_cap;
    b->cap[FR_CAP_RUN] = has_run_cap && run_cap > 0 ? run_cap : 0;
    b->has[FR_CAP_MONTH] = has_month;
    b->alert = alert > 0 && alert <= 1 ? alert : 0.8;
    b->alerts = json_array();
    return b;
}

fr_budget *fr_budget_for_run(const fr_workflow *wf, bool has_opt, double opt_usd, bool books)
{
    bool has = has_opt || wf->budget.has_usd;
    double usd = has_opt ? opt_usd : wf->budget.has_usd ? wf->budget.usd : 0;
    fr_budget *b = fr_budget_new(has, usd, false, wf->budget.alert);
    if (books && wf->budget.has_monthly)
        fr_budget_set_period(b, FR_CAP_MONTH, wf->budget.monthly_usd);
    if (books && wf->budget.has_daily)
        fr_budget_set_period(b, FR_CAP_DAY, wf->budget.daily_usd);
    return b;
}

void fr_budget_set_period(fr_budget *b, fr_cap_kind kind, double usd)
{
    if (kind != FR_CAP_MONTH && kind != FR_CAP_DAY)
        return;
    b->has[kind] = true;
    b->period_usd[kind] = usd > 0 ? usd : 0;
}

void fr_budget_free(fr_budget *b)
{
    if (!b)
        return;
    json_decref(b->alerts);
    free(b);
}

static bool has_cap(const fr_budget *b, int k)
{
    return b->has[k];
}

/* "monthly" or "daily": the cap of period `kind`, in a reason. */
static const char *period_adj(int kind)
{
    return kind == FR_CAP_DAY ? "daily" : "monthly";
}

bool fr_budget_has_cap(const fr_budget *b, fr_cap_kind kind)
{
    return has_cap(b, kind);
}

bool fr_budget_capped(const fr_budget *b)
{
    return has_cap(b, FR_CAP_RUN) || has_cap(b, FR_CAP_MONTH) || has_cap(b, FR_CAP_DAY);
}

static bool fits_with(const fr_budget *b, double used, double amount)
{
    for (int k = 0; k < FR_CAP_COUNT; k++)
        if (has_cap(b, k) && used + amount > b->cap[k] + EPS)
            return false;
    return true;
}

bool fr_budget_fits(const fr_budget *b, double amount)
{
    return fits_with(b, b->spent + b->reserved, amount);
}

bool fr_budget_may_fit(const fr_budget *b, double amount)
{
    return fits_with(b, b->spent, amount);
}

void fr_budget_reserve(fr_budget *b, double amount)
{
    b->reserved += amount;
}

void fr_budget_settle(fr_budget *b, double reserved, double actual)
{
    /* A reservation of a period gone by settles into that period: what it
     * did not cost is no allowance of the current one. Taken as the first
     * to settle (a later one may be the old one's: then less is allowed,
     * never more). */
    for (int k = FR_CAP_MONTH; k < FR_CAP_COUNT; k++) {
        if (b->pinned[k] <= 0)
            continue;
        double old = reserved < b->pinned[k] ? reserved : b->pinned[k];
        b->pinned[k] -= old;
        if (old > actual)
            b->cap[k] -= old - actual;
    }
    b->reserved -= reserved;
    if (b->reserved < EPS)
        b->reserved = 0;
    b->spent += actual;
}

double fr_budget_spent(const fr_budget *b)
{
    return b->spent;
}

double fr_budget_reserved(const fr_budget *b)
{
    return b->reserved;
}

double fr_budget_cap(const fr_budget *b, fr_cap_kind kind)
{
    return has_cap(b, kind) ? b->cap[kind] : -1;
}

double fr_budget_remaining(const fr_budget *b, fr_cap_kind kind)
{
    if (!has_cap(b, kind))
        return -1;
    double left = b->cap[kind] - b->spent - b->reserved;
    return left > 0 ? left : 0;
}

int fr_budget_next_alert(fr_budget *b)
{
    int k = FR_CAP_RUN;
    if (has_cap(b, k) && !b->alerted[k] && b->cap[k] > 0 &&
        b->spent >= b->alert * b->cap[k] - EPS) {
        b->alerted[k] = true;
        return k;
    }
    return -1;
}

double fr_budget_alert(const fr_budget *b)
{
    return b->alert;
}

const char *fr_cap_name(fr_cap_kind kind)
{
    return kind == FR_CAP_RUN ? "run" : kind == FR_CAP_MONTH ? "month" : "day";
}

/* True for the caps whose allowance is leased from the ledger. */
static bool is_period(int kind)
{
    return kind == FR_CAP_MONTH || kind == FR_CAP_DAY;
}

void fr_budget_add_allowance(fr_budget *b, fr_cap_kind kind, double usd)
{
    if (is_period(kind) && has_cap(b, kind) && usd > 0)
        b->cap[kind] += usd;
}

double fr_budget_shortfall(const fr_budget *b, fr_cap_kind kind, double amount)
{
    if (!is_period(kind) || !has_cap(b, kind))
        return 0;
    double need = b->spent + b->reserved + amount - b->cap[kind];
    return need > 0 ? need : 0;
}

double fr_price_cost(const fr_endpoint_spec *spec, const fr_usage *u)
{
    const fr_price *p = &spec->price;
    long cached = u->cached > u->input ? u->input : u->cached;
    double cached_price = p->cached_input > 0 ? p->cached_input : p->input;
    return ((double)(u->input - cached) * p->input + (double)cached * cached_price +
            (double)u->output * p->output) /
           1e6;
}

double fr_price_worst(const fr_endpoint_spec *s, long input, int max_tokens)
{
    return ((double)input * s->price.input + (double)max_tokens * s->price.output) / 1e6;
}

void fr_budget_set_ledger(fr_budget *b, const fr_budget_ledger *ledger)
{
    b->has_ledger = ledger != NULL;
    if (ledger)
        b->ledger = *ledger;
}

/* A new period of cap `kind` began (a run crossing midnight UTC, or a
 * month's end): what the run was allowed of the old one is not spent in the
 * new one, whose allowance starts at nothing beyond what the run used; its
 * reservations still in flight settle into the old period (pinned). */
static void roll_period(fr_budget *b, int kind)
{
    b->cap[kind] = b->spent + b->reserved;
    b->pinned[kind] = b->reserved;
}

/* Takes more of the cap of period `kind` from the ledger when `amount` does
 * not fit this run's share of it: the shortfall, or a tenth of the cap when
 * that is more, so the ledger is not asked at every request. True while
 * the lease is asked and unanswered (FR_BUDGET_ASKED). */
static bool grow_lease(fr_budget *b, int kind, double amount)
{
    if (!has_cap(b, kind) || !b->has_ledger)
        return false;
    double need = fr_budget_shortfall(b, (fr_cap_kind)kind, amount);
    if (need <= 0)
        return false;
    double tenth = b->period_usd[kind] / 10;
    double want = need > tenth ? need : tenth;
    double granted = 0;
    fr_error err = {0};
    int rc =
        b->ledger.lease(b->ledger.ud, (fr_cap_kind)kind, b->period_usd[kind], want, &granted, &err);
    if (rc == FR_BUDGET_ASKED)
        return true;
    if (rc != FR_OK) {
        if (!b->lease_failed) {
            char msg[1400];
            fr_log_event(FR_LOG_ERROR, "budget", "budget.error",
                         "error=\"%s\"; no more of the %s cap is taken",
                         fr_error_format(&err, msg, sizeof msg), period_adj(kind));
            b->lease_failed = true;
        }
        return false;
    }
    fr_budget_add_allowance(b, (fr_cap_kind)kind, granted);
    return false;
}

/* Why a worst case of `worst` on endpoint `ep` (borrowed) does not fit the
 * cap of period `kind`, owned, with the period's figures from the ledger:
 * the cap, what every run spent in it so far, and what runs in progress
 * elsewhere hold of it. */
static char *period_refusal(const fr_budget *b, int kind, const char *ep, double worst)
{
    char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN], held[FR_USD_LEN];
    double s = 0, used = 0;
    fr_error err = {0};
    const char *adj = period_adj(kind), *when = kind == FR_CAP_DAY ? "today" : "this month";
    fr_usd_cost(w, worst);
    fr_usd_cap(cap, b->period_usd[kind]);
    if (!b->has_ledger ||
        b->ledger.totals(b->ledger.ud, (fr_cap_kind)kind, &s, &used, &err) != FR_OK)
        return fr_xasprintf("the worst case on '%s' (%s) does not fit the %s cap (%s)", ep, w, adj,
                            cap);
    fr_usd_cost(spent, s);
    if (used - s > 1e-9)
        return fr_xasprintf("the worst case on '%s' (%s) does not fit the %s cap (%s; %s "
                            "spent %s, %s held by other runs in progress)",
                            ep, w, adj, cap, spent, when, fr_usd_cost(held, used - s));
    return fr_xasprintf("the worst case on '%s' (%s) does not fit the %s cap (%s; %s spent %s)", ep,
                        w, adj, cap, spent, when);
}

fr_admit fr_budget_admit(fr_budget *b, const fr_admit_ask *a, char **why)
{
    const fr_endpoint_spec *s = a->endpoint;
    double worst = a->worst;
    bool capped = fr_budget_capped(b) || a->task_capped;
    if (capped && s->tier == FR_TIER_CLOUD && !s->price.set && !a->allow_unpriced) {
        if (why && !*why)
            *why = fr_xasprintf("endpoint '%s' has no price, so a cap cannot be checked on it "
                                "(give it a price, or set budget.allow_unpriced)",
                                s->name);
        return FR_ADMIT_NEVER;
    }
    if (a->task_capped && a->task_spent + worst > a->task_cap + EPS) {
        char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN];
        if (why && !*why)
            *why = fr_xasprintf("the worst case on '%s' (%s) does not fit the task's cap "
                                "(%s; %s spent)",
                                s->name, fr_usd_cost(w, worst), fr_usd_cap(cap, a->task_cap),
                                fr_usd_cost(spent, a->task_spent));
        return FR_ADMIT_NEVER;
    }
    for (int k = FR_CAP_MONTH; k < FR_CAP_COUNT; k++)
        if (has_cap(b, k) && b->has_ledger && b->ledger.turned &&
            b->ledger.turned(b->ledger.ud, (fr_cap_kind)k))
            roll_period(b, k);
    bool asked = false;
    if (!fr_budget_fits(b, worst)) {
        asked = grow_lease(b, FR_CAP_MONTH, worst);
        asked = grow_lease(b, FR_CAP_DAY, worst) || asked;
    }
    if (fr_budget_fits(b, worst))
        return FR_ADMIT_FITS;
    if (asked || fr_budget_may_fit(b, worst))
        return FR_ADMIT_WAIT;
    if (why && !*why) {
        double run_cap = b->cap[FR_CAP_RUN];
        bool over_run = has_cap(b, FR_CAP_RUN) && b->spent + worst > run_cap + EPS;
        char w[FR_USD_LEN], cap[FR_USD_LEN], spent[FR_USD_LEN];
        bool over_month = has_cap(b, FR_CAP_MONTH) && b->spent + worst > b->cap[FR_CAP_MONTH] + EPS;
        if (over_run || (!has_cap(b, FR_CAP_MONTH) && !has_cap(b, FR_CAP_DAY)))
            *why = fr_xasprintf("the worst case on '%s' (%s) does not fit the run cap (%s; %s "
                                "spent)",
                                s->name, fr_usd_cost(w, worst), fr_usd_cap(cap, run_cap),
                                fr_usd_cost(spent, b->spent));
        else
            *why =
                period_refusal(b, over_month || !has_cap(b, FR_CAP_DAY) ? FR_CAP_MONTH : FR_CAP_DAY,
                               s->name, worst);
    }
    return FR_ADMIT_NEVER;
}

/* Records that spend of `spent` USD crossed the alert fraction of the cap
 * of `kind` of `cap` USD: on the terminal and for the report. */
static void add_alert(fr_budget *b, fr_cap_kind kind, double cap, double spent, double at_ms)
{
    char c[FR_USD_LEN], s[FR_USD_LEN];
    bool month = kind == FR_CAP_MONTH;
    fr_log_event(FR_LOG_WARN, "budget", "budget.alert",
                 "alert: %s spent%s, %g%% of the %s cap of %s", fr_usd_cost(s, spent),
                 month ? " this month" : "", 100 * b->alert, month ? "monthly" : "run",
                 fr_usd_cap(c, cap));
    json_array_append_new(b->alerts, json_pack("{s:s, s:f, s:f, s:f, s:f}", "cap",
                                               fr_cap_name(kind), "cap_usd", cap, "fraction",
                                               b->alert, "spent_usd", spent, "at_ms", at_ms));
}

void fr_budget_charge(fr_budget *b, double reserved, double actual, double at_ms)
{
    fr_budget_settle(b, reserved, actual);
    if (!b->muted && fr_budget_next_alert(b) == FR_CAP_RUN)
        add_alert(b, FR_CAP_RUN, b->cap[FR_CAP_RUN], b->spent, at_ms);
}

bool fr_budget_wants_month_total(const fr_budget *b, double cost)
{
    return has_cap(b, FR_CAP_MONTH) && cost > 0 && !b->alerted[FR_CAP_MONTH];
}

void fr_budget_month_booked(fr_budget *b, double total, double cost, double at_ms)
{
    double monthly = b->period_usd[FR_CAP_MONTH], at = b->alert * monthly;
    if (b->muted || b->alerted[FR_CAP_MONTH] || monthly <= 0)
        return;
    if (total >= at - EPS && total - cost < at - EPS) {
        b->alerted[FR_CAP_MONTH] = true;
        add_alert(b, FR_CAP_MONTH, monthly, total, at_ms);
    }
}

void fr_budget_mute_alerts(fr_budget *b)
{
    b->muted = true;
}

const json_t *fr_budget_alerts(const fr_budget *b)
{
    return b->alerts;
}
