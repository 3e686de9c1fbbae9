#include "engine/util/money.h"

#include "engine/util/fixed.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More decimals than this and an amount is written with an exponent. */
#define MAX_DECIMALS 15

char *fr_usd_cost(char buf[FR_USD_LEN], double usd)
{
    double a = fabs(usd);
    const char *sign = usd < 0 ? "-" : "";
    if (!isfinite(usd)) {
        snprintf(buf, FR_USD_LEN, "$%g", usd);
        return buf;
    }
    if (a == 0) {
        snprintf(buf, FR_USD_LEN, "$0");
        return buf;
    }
    if (a >= 0.01) { /* "%s$%.4f", its number without printf when fr_fixed can */
        char num[FR_FIXED_LEN];
        size_t n = fr_fixed(num, a, 4);
        if (n && n + 3 <= FR_USD_LEN) {
            char *o = buf;
            if (usd < 0)
                *o++ = '-';
            *o++ = '$';
            memcpy(o, num, n + 1);
        } else {
            snprintf(buf, FR_USD_LEN, "%s$%.4f", sign, a);
        }
        return buf;
    }
    int decimals = 3 - (int)floor(log10(a));
    if (decimals > MAX_DECIMALS) {
        snprintf(buf, FR_USD_LEN, "%s$%.3e", sign, a);
        return buf;
    }
    int n = snprintf(buf, FR_USD_LEN, "%s$%.*f", sign, decimals, a);
    /* Trailing zeros say nothing here; keep at least 4 decimals, like
     * larger amounts. */
    char *dot = strchr(buf, '.');
    while (n > 0 && dot && buf + n - 1 - dot > 4 && buf[n - 1] == '0')
        buf[--n] = '\0';
    return buf;
}

char *fr_usd_cap(char buf[FR_USD_LEN], double usd)
{
    if (isfinite(usd))
        for (int d = 0; d <= MAX_DECIMALS; d++) {
            snprintf(buf, FR_USD_LEN, "$%.*f", d, usd);
            double back = strtod(buf + 1, NULL);
            if (fabs(back - usd) <= 1e-12 * fabs(usd))
                return buf;
        }
    snprintf(buf, FR_USD_LEN, "$%.17g", usd);
    return buf;
}
