#pragma once
/* How money is printed: the one place that turns a USD amount into text for
 * a person (the summary, the plan, `flowrun spend`, budget alerts and
 * refusals). Costs keep enough significant digits that a cost above zero
 * never reads as zero; caps read as the user wrote them. JSON reports carry
 * the plain numbers and do not use this. */

#include <stddef.h>

/* Room for any amount these functions write, its "$" and its NUL. */
#define FR_USD_LEN 40

/* Writes `usd`, a cost, as "$..." into `buf` (FR_USD_LEN bytes) and returns
 * `buf`. From $0.01 up: 4 decimals ("$1.3920"); below, 4 significant
 * digits with trailing zeros dropped down to 4 decimals ("$0.0090",
 * "$0.00002", "$0.00001235"); exactly 0 is "$0"; amounts below a billionth
 * of a cent use an exponent. Negative amounts keep their sign. */
char *fr_usd_cost(char buf[FR_USD_LEN], double usd);

/* Writes `usd`, a cap or a price, as "$..." into `buf` (FR_USD_LEN bytes)
 * and returns `buf`: the fewest decimals that give the number back, never
 * rounded ("$0.035", "$5", "$0.5"). */
char *fr_usd_cap(char buf[FR_USD_LEN], double usd);
