#include "engine/declog.h"

#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

/* A decision as stored: fr_decision with an owned error and explanation. */
typedef struct entry {
    fr_decision d;
    char *error;
    char *explanation;
} entry;

struct fr_declog {
    entry *d;
    size_t n, cap;
    fr_decision_cand *c;
    size_t nc, ccap;
    char **words; /* the log's copies of the words its decisions name */
    size_t nwords, wcap;
};

fr_declog *fr_declog_new(void)
{
    return fr_xcalloc(1, sizeof(fr_declog));
}

void fr_declog_clear(fr_declog *log)
{
    for (size_t i = 0; i < log->n; i++) {
        free(log->d[i].error);
        free(log->d[i].explanation);
    }
    log->n = log->nc = 0;
}

void fr_declog_free(fr_declog *log)
{
    if (!log)
        return;
    fr_declog_clear(log);
    for (size_t i = 0; i < log->nwords; i++)
        free(log->words[i]);
    free(log->words);
    free(log->d);
    free(log->c);
    free(log);
}

/* The log's copy of `s` (borrowed): the pointer itself is tried first, as
 * callers pass the same static or shared strings again and again. */
static const char *word(fr_declog *log, const char *s)
{
    for (size_t i = 0; i < log->nwords; i++)
        if (log->words[i] == s || strcmp(log->words[i], s) == 0)
            return log->words[i];
    if (log->nwords == log->wcap) {
        log->wcap = log->wcap ? 2 * log->wcap : 4;
        log->words = fr_xrealloc(log->words, log->wcap * sizeof *log->words);
    }
    return log->words[log->nwords++] = fr_xstrdup(s);
}

void fr_declog_add(fr_declog *log, const char *policy, int version, const char *reason,
                   size_t endpoint, int attempt, const fr_decision_cand *cands, size_t n)
{
    if (log->n == log->cap) {
        log->cap = log->cap ? 2 * log->cap : 2;
        log->d = fr_xrealloc(log->d, log->cap * sizeof *log->d);
    }
    if (cands && log->nc + n > log->ccap) {
        while (log->nc + n > log->ccap)
            log->ccap = log->ccap ? 2 * log->ccap : 8;
        log->c = fr_xrealloc(log->c, log->ccap * sizeof *log->c);
    }
    entry *e = &log->d[log->n++];
    *e = (entry){.d = {.policy = word(log, policy),
                       .version = version,
                       .reason = word(log, reason),
                       .endpoint = endpoint,
                       .attempt = attempt,
                       .has_candidates = cands != NULL,
                       .first_cand = log->nc,
                       .ncands = cands ? n : 0}};
    if (cands && n) {
        memcpy(log->c + log->nc, cands, n * sizeof *cands);
        log->nc += n;
    }
}

void fr_declog_set_outcome(fr_declog *log, const char *outcome, const char *error)
{
    if (!log->n)
        return;
    entry *e = &log->d[log->n - 1];
    e->d.outcome = word(log, outcome);
    if (error) {
        free(e->error);
        e->d.error = e->error = fr_xstrdup(error);
    }
}

void fr_declog_set_explanation(fr_declog *log, const char *text)
{
    if (!log->n || !text)
        return;
    entry *e = &log->d[log->n - 1];
    free(e->explanation);
    e->d.explanation = e->explanation = fr_xstrdup(text);
}

size_t fr_declog_count(const fr_declog *log)
{
    return log->n;
}

const fr_decision *fr_declog_get(const fr_declog *log, size_t i)
{
    return &log->d[i].d;
}

const fr_decision_cand *fr_declog_cands(const fr_declog *log)
{
    return log->c;
}

json_t *fr_declog_json(const fr_declog *log, size_t i, const fr_workflow *wf)
{
    const fr_decision *d = fr_declog_get(log, i);
    const fr_decision_cand *cands = fr_declog_cands(log);
    json_t *o = json_object();
    json_object_set_new_nocheck(o, "policy", json_string(d->policy));
    json_object_set_new_nocheck(o, "version", json_integer(d->version));
    json_object_set_new_nocheck(o, "reason", json_string(d->reason));
    json_object_set_new_nocheck(o, "endpoint", json_string(wf->endpoints[d->endpoint].name));
    json_object_set_new_nocheck(o, "attempt", json_integer(d->attempt));
    json_object_set_new_nocheck(o, "outcome", d->outcome ? json_string(d->outcome) : json_null());
    if (d->has_candidates) {
        json_t *seen = json_array();
        for (size_t c = d->first_cand; c < d->first_cand + d->ncands; c++)
            json_array_append_new(seen, json_pack("{s:s, s:i, s:f}", "name",
                                                  wf->endpoints[cands[c].endpoint].name, "free",
                                                  cands[c].free, "est_cost", cands[c].est_cost));
        json_object_set_new_nocheck(o, "candidates", seen);
    }
    if (d->error)
        json_object_set_new_nocheck(o, "error", json_string(d->error));
    if (d->explanation)
        json_object_set_new_nocheck(o, "explanation", json_string(d->explanation));
    return o;
}
