/* The routing history's rows (schema 11: routing_history and routing_bins,
 * see open.c): each attempt the ledger books or settles added to its key,
 * in the booking's transaction, and the rows read for a run's start and
 * for `flowrun stats --routing`. */

#include "engine/store/pgread.h"
#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads the routing history; see store.h. */
int fr_store_history(fr_store *st, const char *const *endpoints, size_t n,
                     void (*each)(void *ud, const fr_store_history_row *row), void *ud,
                     fr_error *err)
{
    int rc = fr_store_check_readable(st, err);
    if (rc != FR_OK)
        return rc;
    if (st->pg)
        return fr_pgread_history(st->pg, endpoints, n, each, ud, err);
    char *names = fr_store_names_json(endpoints, n);
    sqlite3_stmt *s = st->stmt[S_HISTORY];
    fr_store_bind_text(s, 1, names);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        fr_store_history_row r = {
            .endpoint = (const char *)sqlite3_column_text(s, 0),
            .type = (const char *)sqlite3_column_text(s, 1),
            .band = sqlite3_column_int(s, 2),
            .is_bin = sqlite3_column_int(s, 3) == 1,
            .lat_bin = sqlite3_column_int(s, 4),
            .settled = (long)sqlite3_column_int64(s, 5),
            .passes = (long)sqlite3_column_int64(s, 6),
            .fails = (long)sqlite3_column_int64(s, 7),
            .errors = (long)sqlite3_column_int64(s, 8),
            .w_pass = sqlite3_column_double(s, 9),
            .w_fail = sqlite3_column_double(s, 10),
            .has_w_ref = sqlite3_column_type(s, 11) != SQLITE_NULL,
            .w_ref = sqlite3_column_double(s, 11),
            .last_at = sqlite3_column_double(s, 12),
            .score_sum = sqlite3_column_double(s, 13),
            .score_n = (long)sqlite3_column_int64(s, 14),
            .cost_sum = sqlite3_column_double(s, 15),
            .out_tokens = (long)sqlite3_column_int64(s, 16),
            .reply_ms = sqlite3_column_double(s, 17),
        };
        fr_store_history_row_fix(&r);
        if (!r.endpoint || !r.type)
            continue;
        each(ud, &r);
    }
    if (step != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot read the routing history");
    fr_store_done(s);
    free(names);
    return rc;
}

/* The endpoints' names as a JSON array; see store_int.h. */
char *fr_store_names_json(const char *const *endpoints, size_t n)
{
    if (!endpoints)
        return NULL;
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(endpoints[i]));
    char *names = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return names;
}

/* Moves a bin row's count and ttft bin; see store_int.h. */
void fr_store_history_row_fix(fr_store_history_row *r)
{
    if (!r->is_bin)
        return;
    r->n = r->settled;
    r->ttft_bin = (int)r->passes;
    r->settled = r->passes = 0;
}

bool fr_store_outcome_gated(const char *outcome)
{
    static const char *const gated[] = {"ok",      "quality",   "truncated",
                                        "refused", "no_answer", "tool_call"};
    for (size_t i = 0; outcome && i < sizeof gated / sizeof *gated; i++)
        if (strcmp(outcome, gated[i]) == 0)
            return true;
    return false;
}

int fr_store_history_band(bool has_complexity, double complexity)
{
    double c = has_complexity && isfinite(complexity) ? complexity : 0.5;
    if (!(c > 0))
        return 0;
    return c * 5 >= 4 ? 4 : (int)(c * 5);
}

int fr_store_history_bin(double ms)
{
    double b = floor(4 * log2(ms > 1 ? ms : 1));
    return b >= FR_STORE_HISTORY_BINS - 1 ? FR_STORE_HISTORY_BINS - 1 : (int)b;
}

/* Runs statement `k` with its parameters bound (reset here). */
static int add_row(fr_store *st, enum fr_store_stmt k, fr_error *err)
{
    int rc = sqlite3_step(st->stmt[k]) == SQLITE_DONE
                 ? FR_OK
                 : fr_store_db_error(st, err, "cannot add to the routing history");
    sqlite3_reset(st->stmt[k]);
    return rc;
}

/* Binds the key of `a` (type `type`, band `band`) to parameters 1-3 of `s`. */
static void bind_key(sqlite3_stmt *s, const fr_attempt_rec *a, const char *type, int band)
{
    fr_store_bind_text(s, 1, a->endpoint);
    fr_store_bind_text(s, 2, type);
    sqlite3_bind_int(s, 3, band);
}

/* Adds an attempt to the routing history; see store_int.h. */
int fr_store_history_add(fr_store *st, const fr_attempt_rec *a, double at, fr_error *err)
{
    if (strcmp(a->outcome, "pending") == 0)
        return FR_OK;
    const char *type = a->type ? a->type : "-";
    int band = fr_store_history_band(a->has_complexity, a->complexity);
    bool gated = fr_store_outcome_gated(a->outcome), pass = strcmp(a->outcome, "ok") == 0;
    bool err_ = strcmp(a->outcome, "error") == 0 || strcmp(a->outcome, "timeout") == 0;
    bool scored = gated && a->has_score && isfinite(a->score);
    sqlite3_stmt *h = st->stmt[S_HIST_ADD];
    bind_key(h, a, type, band);
    sqlite3_bind_int(h, 4, pass);
    sqlite3_bind_int(h, 5, gated && !pass);
    sqlite3_bind_int(h, 6, err_);
    sqlite3_bind_double(h, 7, at);
    sqlite3_bind_double(h, 8, scored ? a->score : 0);
    sqlite3_bind_int(h, 9, scored);
    sqlite3_bind_double(h, 10, a->cost_usd);
    sqlite3_bind_int64(h, 11, gated ? a->output : 0);
    sqlite3_bind_double(h, 12, gated ? a->latency_ms : 0);
    sqlite3_bind_int(h, 13, gated);
    int rc = add_row(st, S_HIST_ADD, err);
    if (rc != FR_OK || !gated)
        return rc;
    bool has_ttft = a->has_ttft && isfinite(a->ttft_ms) && a->ttft_ms >= 0;
    sqlite3_stmt *b = st->stmt[S_BIN_ADD];
    bind_key(b, a, type, band);
    sqlite3_bind_int(b, 4, fr_store_history_bin(a->latency_ms));
    sqlite3_bind_int(b, 5, has_ttft ? fr_store_history_bin(a->ttft_ms) : -1);
    return add_row(st, S_BIN_ADD, err);
}
