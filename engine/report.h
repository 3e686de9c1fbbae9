#pragma once
/* Every rendering of a run, from its read-only results view
 * (engine/results.h): the JSON report (the contract of DESIGN.md section
 * 9), the human summary at the end of a run, and a plan's table. Strings
 * that quote servers are redacted. Called by engine/main.c. */

#include "engine/results.h"
#include "engine/util/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

/* Appends the JSON report of the finished run `r` (borrowed) to `out`
 * (borrowed) as its text: json_dumps(report, JSON_INDENT(2)) and a newline,
 * or with `compact` json_dumps(report, JSON_COMPACT | JSON_REAL_PRECISION(17))
 * and a newline (what the state store keeps: fr_report_reindent gives the
 * indented text back byte for byte), written without a tree. Returns FR_OK,
 * or FR_ETOOBIG past out's limit. */
int fr_report_text(const fr_results *r, fr_buf *out, bool compact);

/* Writes to `f` (borrowed) the indented text of `compact` (borrowed: what
 * fr_report_text(r, out, true) wrote), the bytes fr_report_text(r, out,
 * false) gives, a chunk of 64 KiB at a time: the indented text is never
 * whole in memory, and no real is formatted again. Returns FR_OK, or FR_EIO
 * when a write failed (errno says why). */
int fr_report_print_text(const char *compact, FILE *f);

/* Appends to `out` (borrowed) the indented text of the report `text`
 * (borrowed, compact or indented, as fr_report_text writes it): the same
 * bytes fr_report_text(r, out, false) gives. Returns FR_OK, FR_EINVAL when
 * `text` is not JSON, or FR_ETOOBIG. */
int fr_report_reindent(const char *text, fr_buf *out);

/* Returns the JSON report (owned) of the finished run `r` (borrowed): its
 * text parsed, for the HTML report, the trace and the tests; NULL when it
 * cannot be rendered. */
json_t *fr_report_json(const fr_results *r);

/* Prints the human summary of the finished run `r` to `f` (both borrowed). */
void fr_report_summary(const fr_results *r, FILE *f, bool color);

/* Prints a finished plan to `f` (both borrowed): the levels, each task's
 * endpoint and expected times and costs, the makespan estimate, the
 * worst-case and expected cost and the baseline's. */
void fr_report_plan(const fr_results *r, FILE *f);
