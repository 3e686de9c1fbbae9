#pragma once
/* What the commands of flowrun's command line share: the exit codes of
 * DESIGN.md section 7 that are not a run's own, a usage error's message, a
 * number option's check, and loading a workflow with its errors printed.
 * Used by engine/main.c and the commands in engine/cli/. */

#include "dsl/workflow.h"

#include <stdbool.h>
#include <stddef.h>

enum {
    FR_EXIT_USAGE = 2,
    FR_EXIT_INVALID = 65,
    FR_EXIT_IOERR = 74,
    FR_EXIT_CONFIG = 78,
};

/* Prints "flowrun: " + `fmt` with `what` (borrowed) and the hint to
 * `flowrun --help` on stderr; returns FR_EXIT_USAGE. */
int fr_cli_usage_error(const char *fmt, const char *what);

/* Parses option `opt`'s value `s` (borrowed) as a finite number >= 0 into
 * *out: 0, or -1 with the error printed. */
int fr_cli_parse_number(const char *opt, const char *s, double *out);

/* The exit code for a workflow that did not load with `code`: 78 for a
 * configuration error, else 65. */
int fr_cli_load_exit(int code);

/* Prints a load warning `msg` (borrowed) on stderr; `ud` unused. Fits
 * fr_load_opts.warn. */
void fr_cli_load_warning(void *ud, const char *msg);

/* Loads the workflow at `path` with the endpoints files and --var values
 * given (all borrowed). 0 with *wf owned (fr_workflow_free), or the exit
 * code with the error printed on stderr. */
int fr_cli_load_workflow(const char *path, const char **endpoints, size_t nendpoints,
                         const char **vars, size_t nvars, fr_workflow **wf);

/* The state a command reads (owned): the PostgreSQL URL that --state
 * `state_dir` (borrowed, may be NULL) or else $FLOWRUN_STATE names, as it
 * is (the shared store: the same whether `sim` or not), or the SQLite
 * database of the state folder (engine/booking's fr_booking_state_path).
 * To print it, fr_cli_state_shown. */
char *fr_cli_state_path(const char *state_dir, bool sim);

/* What a message may say of the state `path` (borrowed): an owned copy, a
 * URL's password masked. */
char *fr_cli_state_shown(const char *path);
