#pragma once
/* A task's routing decision log as compact C records: per decision who
 * decided (the policy, "default" or "cache"), its version, why it was
 * asked, the endpoint (an index), the attempt, the outcome and error once
 * known, and the candidates it saw as (endpoint index, free slots,
 * estimated cost) in one growable array shared by the log's decisions.
 * Appending allocates only when an array grows (and once per distinct
 * word: the log keeps its own copies of policy names, reasons and
 * outcomes). engine/route appends and sets outcomes; engine/results owns
 * one log per task; engine/report renders it to the report's JSON. */

#include "dsl/workflow.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_declog fr_declog;

/* One candidate a decision saw. */
typedef struct fr_decision_cand {
    size_t endpoint; /* index into the workflow's endpoints */
    int free;        /* free slots */
    double est_cost; /* estimated cost, USD */
} fr_decision_cand;

/* One decision, as read (strings borrowed from the log; valid until it is
 * cleared or freed). */
typedef struct fr_decision {
    const char *policy;      /* "cost", ..., "default" or "cache" */
    int version;             /* of the policy */
    const char *reason;      /* why it was routed: "first", "error", ... */
    size_t endpoint;         /* index into the workflow's endpoints */
    int attempt;             /* 1-based */
    const char *outcome;     /* NULL until known */
    const char *error;       /* NULL for none */
    const char *explanation; /* the policy's (route's second result), NULL for none */
    bool has_candidates;     /* false for the cache's decisions */
    size_t first_cand;       /* its candidates: fr_declog_cands() + first_cand ... */
    size_t ncands;           /* ... ncands of them */
} fr_decision;

/* A new empty log (owned; fr_declog_free). */
fr_declog *fr_declog_new(void);
void fr_declog_free(fr_declog *log);
/* Forgets every decision (the log's words and array room are kept). */
void fr_declog_clear(fr_declog *log);

/* Appends a decision: `policy`, `reason` (borrowed, copied once per
 * distinct word), no outcome yet, and `n` candidates `cands` (borrowed,
 * copied), or none at all when `cands` is NULL. */
void fr_declog_add(fr_declog *log, const char *policy, int version, const char *reason,
                   size_t endpoint, int attempt, const fr_decision_cand *cands, size_t n);
/* Sets the outcome of the latest decision (`outcome` borrowed, copied once
 * per distinct word) and, when `error` is not NULL, its error (copied). A
 * log with no decision is left alone. */
void fr_declog_set_outcome(fr_declog *log, const char *outcome, const char *error);

/* Sets the explanation of the latest decision (`text` borrowed, copied):
 * what the policy said of it. A log with no decision, or a NULL text, is
 * left alone. */
void fr_declog_set_explanation(fr_declog *log, const char *text);
/* Read access. */
size_t fr_declog_count(const fr_declog *log);
const fr_decision *fr_declog_get(const fr_declog *log, size_t i);
const fr_decision_cand *fr_declog_cands(const fr_declog *log);

/* Decision `i` of `log` as the report's JSON object (owned by the caller):
 * policy, version, reason, endpoint, attempt, outcome (null until known),
 * the candidates it saw by name when it has them, its error as it is
 * (a caller that shows it redacts it) and its explanation when it has one. Names come from `wf`
 * (borrowed). */
json_t *fr_declog_json(const fr_declog *log, size_t i, const fr_workflow *wf);
