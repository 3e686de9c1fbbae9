#pragma once
/* Past runs: `flowrun runs` (the runs in the state store), `flowrun report`
 * (a finished run's summary or JSON report as it printed them) and
 * `flowrun stats` (requests, success and quality-gate rates, latencies,
 * tokens, spend and tiers across runs); and the run's end that stores its
 * report (through the run's books, engine/booking). Reads through
 * engine/store (reports.c); used by engine/main.c. */

#include "engine/booking.h"
#include "engine/results.h"

#include <stdio.h>

/* Prints the help of `runs`, `report` and `stats` to `f`. */
void fr_cli_runs_help(FILE *f);
void fr_cli_report_help(FILE *f);
void fr_cli_stats_help(FILE *f);

/* Run `flowrun runs`, `report` and `stats` on argv (argv[1] the command's
 * name); each returns the exit code. */
int fr_cli_runs_main(int argc, char **argv);
int fr_cli_report_main(int argc, char **argv);
int fr_cli_stats_main(int argc, char **argv);

/* Returns the text (owned) of the JSON report of the finished run `r`
 * (borrowed), with its final newline: what a run's `--json` prints
 * (indented by 2), or with `compact` what the state store keeps
 * (fr_report_text); NULL when it cannot be encoded. */
char *fr_cli_report_json_text(const fr_results *r, bool compact);

/* At the end of run `r` (borrowed, not a plan): stores its report through
 * the run's books `books` (borrowed: the run's own connection to its state
 * store, still open; fr_booking_store_report), `json_text` (borrowed: the
 * compact report text, or NULL when it could not be encoded) and the
 * uncoloured summary, committed before it returns. `state_dir` (borrowed,
 * may be NULL) names the store in a message. Returns `code`, the run's exit
 * code, or 74 when a run that succeeded cannot store its report (said on
 * stderr; a run that failed keeps its code and the warning). */
int fr_cli_store_report(const fr_results *r, fr_booking *books, const char *state_dir,
                        const char *json_text, int code);
