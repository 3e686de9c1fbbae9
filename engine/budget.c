#include "engine/budget.h"

#include "engine/util/mem.h"

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
};

fr_budget *fr_budget_new(bool has_run_cap, double run_cap, bool has_month, double alert)
{
    fr_budget *b = fr_xcalloc(1, sizeof *b);
    b->has[FR_CAP_RUN] = has_run_cap;
    b->cap[FR_CAP_RUN] = has_run_cap && run_cap > 0 ? run_cap : 0;
    b->has[FR_CAP_MONTH] = has_month;
    b->alert = alert > 0 && alert <= 1 ? alert : 0.8;
    return b;
}

void fr_budget_free(fr_budget *b)
{
    free(b);
}

static bool has_cap(const fr_budget *b, int k)
{
    return b->has[k];
}

bool fr_budget_has_cap(const fr_budget *b, fr_cap_kind kind)
{
    return has_cap(b, kind);
}

bool fr_budget_capped(const fr_budget *b)
{
    return has_cap(b, FR_CAP_RUN) || has_cap(b, FR_CAP_MONTH);
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
    return kind == FR_CAP_RUN ? "run" : "month";
}

void fr_budget_add_allowance(fr_budget *b, double usd)
{
    if (has_cap(b, FR_CAP_MONTH) && usd > 0)
        b->cap[FR_CAP_MONTH] += usd;
}

double fr_budget_month_shortfall(const fr_budget *b, double amount)
{
    if (!has_cap(b, FR_CAP_MONTH))
        return 0;
    double need = b->spent + b->reserved + amount - b->cap[FR_CAP_MONTH];
    return need > 0 ? need : 0;
}
