#pragma once
/* A run's report as one self-contained HTML file a user can open or share:
 * inline CSS, SVG and a few lines of script, nothing fetched from anywhere.
 * It shows the summary figures, a timeline (a Gantt chart by endpoint slot,
 * the lanes of engine/trace), the DAG coloured by status and layered by
 * level, cost by tier and endpoint against the baseline, and each task's
 * decisions, attempts and output (escaped, in collapsible details). It is
 * rendered from the JSON report alone (engine/report), so a stored report
 * renders the same. Used by engine/main (--html FILE) and `flowrun report
 * RUN --html FILE`. */

#include "engine/results.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdio.h>

/* Writes the HTML report of `report` (borrowed: a JSON report,
 * docs/report.md) to `out`. Returns FR_OK, or FR_EIO with `err` when
 * writing failed. */
int fr_html_report(const json_t *report, FILE *out, fr_error *err);

/* Writes the Chrome trace (engine/trace) of `report` (borrowed: a JSON
 * report) to `trace_path` and its HTML report to `html_path` (either may be
 * NULL). Returns FR_OK, or FR_EIO after printing on stderr which file could
 * not be written and why. Used by `flowrun report RUN --html/--trace`. */
int fr_html_save_json(const json_t *report, const char *trace_path, const char *html_path);

/* At a run's end: writes the Chrome trace (engine/trace) to `trace_path`
 * and the HTML report to `html_path` (either may be NULL) from the JSON
 * report of `r` (borrowed). Returns FR_OK, or FR_EIO after printing on
 * stderr which file could not be written and why. */
int fr_html_save(const fr_results *r, const char *trace_path, const char *html_path);
