#pragma once
/* Fixed-point text of numbers without printf: the exact bytes printf's
 * "%.*f" (a few decimals) and "%lld" write, for the values a person reads
 * at a run's end (latencies, seconds, token counts, dollars). printf costs
 * a few thousand instructions a number; these, about a hundred. Used by
 * the summary (engine/report.c) and money's text (engine/util/money.c). */

#include <stddef.h>

/* Room for any text fr_fixed or fr_fixed_int writes, and its NUL. */
#define FR_FIXED_LEN 32

/* Writes into `buf` (FR_FIXED_LEN bytes) what snprintf(buf, n, "%.*f",
 * decimals, v) writes, NUL included, and returns its length; or returns 0
 * (buf's bytes unspecified) to leave `v` to snprintf: `decimals` outside
 * 0..4, |v| of 1e15 or more, not finite, or exactly halfway between two
 * texts (printf's rounding mode decides those). */
size_t fr_fixed(char *buf, double v, int decimals);

/* Writes `v` as "%lld" writes it into `buf` (FR_FIXED_LEN bytes), NUL
 * included, and returns its length. */
size_t fr_fixed_int(char *buf, long long v);
