#pragma once
/* A run as a Chrome trace (the Trace Event Format: {"traceEvents": [...]},
 * which Perfetto and chrome://tracing open), rendered from the run's JSON
 * report alone (engine/report), so a stored report makes the same trace:
 * one process per endpoint, one thread per slot lane, a complete event per
 * attempt with nested slices per model turn and tool call, flow arrows
 * along dependencies, counters for requests in flight and spend. The slot
 * lanes are also what engine/htmlreport's timeline draws. Used by
 * engine/main (--trace FILE) and engine/htmlreport. */

#include <jansson.h>
#include <stdio.h>

/* Returns a new array (owned by the caller) of every attempt in `report`
 * (borrowed: a JSON report, docs/report.md) placed on a lane of its
 * endpoint, in the order of their start: {task (index), name, attempt,
 * endpoint (name), ep (the endpoint's index in report.endpoints), lane (0
 * based), start_ms, end_ms, outcome, kind ("first", "retry": the same
 * endpoint again, "fallback": another one), from (the previous attempt's
 * endpoint, or null)}. Lanes are given greedily, so attempts that overlap
 * never share one; a run within its capacity needs at most max_parallel. */
json_t *fr_trace_lanes(const json_t *report);

/* Writes the Chrome trace of `report` (borrowed) to `out`. Returns 0, or -1
 * when writing failed (errno says why). */
int fr_trace_write(const json_t *report, FILE *out);
