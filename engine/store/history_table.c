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
    /* What the open batch summed is read too. */
    if (st->nhist > 0 && (rc = fr_store_history_write(st, err)) != FR_OK)
        return rc;
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

/* Binds key `h` to parameters 1-3 of `s`. */
static void bind_key(sqlite3_stmt *s, const fr_store_hist_sum *h)
{
    fr_store_bind_text(s, 1, h->endpoint);
    fr_store_bind_text(s, 2, h->type);
    sqlite3_bind_int(s, 3, h->band);
}

/* The sums of key (endpoint, type, band) in the open write, a new one
 * when it has none yet. */
static fr_store_hist_sum *sum_of(fr_store *st, const char *endpoint, const char *type, int band,
                                 size_t *idx)
{
    for (size_t i = 0; i < st->nhist; i++) {
        fr_store_hist_sum *h = &st->hist[i];
        if (h->band == band && strcmp(h->endpoint, endpoint) == 0 && strcmp(h->type, type) == 0) {
            *idx = i;
            return h;
        }
    }
    if (st->nhist == st->caphist) {
        st->caphist = st->caphist ? 2 * st->caphist : 4;
        st->hist = fr_xrealloc(st->hist, st->caphist * sizeof *st->hist);
    }
    *idx = st->nhist;
    fr_store_hist_sum *h = &st->hist[st->nhist++];
    *h = (fr_store_hist_sum){
        .endpoint = fr_xstrdup(endpoint), .type = fr_xstrdup(type), .band = band};
    return h;
}

/* Counts one reply of key `key` in bins (lat_bin, ttft_bin). */
static void add_bin(fr_store *st, size_t key, int lat_bin, int ttft_bin)
{
    for (size_t i = 0; i < st->nbins; i++) {
        fr_store_bin_sum *b = &st->bins[i];
        if (b->key == key && b->lat_bin == lat_bin && b->ttft_bin == ttft_bin) {
            b->n++;
            return;
        }
    }
    if (st->nbins == st->capbins) {
        st->capbins = st->capbins ? 2 * st->capbins : 8;
        st->bins = fr_xrealloc(st->bins, st->capbins * sizeof *st->bins);
    }
    st->bins[st->nbins++] = (fr_store_bin_sum){key, lat_bin, ttft_bin, 1};
}

/* Adds an attempt to the routing history; see store_int.h. */
int fr_store_history_add(fr_store *st, const fr_attempt_rec *a, double at, fr_error *err)
{
    if (strcmp(a->outcome, "pending") == 0)
        return FR_OK;
    size_t key;
    fr_store_hist_sum *h = sum_of(st, a->endpoint, a->type ? a->type : "-",
                                  fr_store_history_band(a->has_complexity, a->complexity), &key);
    bool gated = fr_store_outcome_gated(a->outcome), pass = strcmp(a->outcome, "ok") == 0;
    h->settled++;
    h->errors += strcmp(a->outcome, "error") == 0 || strcmp(a->outcome, "timeout") == 0;
    h->cost_sum += a->cost_usd;
    if (gated) {
        if (!h->has_ref) {
            h->has_ref = true;
            h->ref = h->last_at = at;
        }
        double w = exp2((at - h->ref) / FR_STORE_HISTORY_HALF_LIFE_S);
        h->passes += pass;
        h->fails += !pass;
        h->w_pass += pass ? w : 0;
        h->w_fail += pass ? 0 : w;
        h->last_at = fmax(h->last_at, at);
        if (a->has_score && isfinite(a->score)) {
            h->score_sum += a->score;
            h->score_n++;
        }
        h->out_tokens += a->output;
        h->reply_ms += a->latency_ms;
        bool has_ttft = a->has_ttft && isfinite(a->ttft_ms) && a->ttft_ms >= 0;
        add_bin(st, key, fr_store_history_bin(a->latency_ms),
                has_ttft ? fr_store_history_bin(a->ttft_ms) : -1);
    }
    /* In the batch: written at its flush, with the turn's others. */
    return st->batching && st->pending ? FR_OK : fr_store_history_write(st, err);
}

/* Writes the summed routing history; see store_int.h. */
int fr_store_history_write(fr_store *st, fr_error *err)
{
    int rc = FR_OK;
    for (size_t i = 0; i < st->nhist && rc == FR_OK; i++) {
        const fr_store_hist_sum *h = &st->hist[i];
        sqlite3_stmt *s = st->stmt[S_HIST_ADD];
        bind_key(s, h);
        sqlite3_bind_int64(s, 4, h->settled);
        sqlite3_bind_int64(s, 5, h->passes);
        sqlite3_bind_int64(s, 6, h->fails);
        sqlite3_bind_int64(s, 7, h->errors);
        sqlite3_bind_double(s, 8, h->w_pass);
        sqlite3_bind_double(s, 9, h->w_fail);
        if (h->has_ref) {
            sqlite3_bind_double(s, 10, h->ref);
            sqlite3_bind_double(s, 11, h->last_at);
        } else {
            sqlite3_bind_null(s, 10);
            sqlite3_bind_null(s, 11);
        }
        sqlite3_bind_double(s, 12, h->score_sum);
        sqlite3_bind_int64(s, 13, h->score_n);
        sqlite3_bind_double(s, 14, h->cost_sum);
        sqlite3_bind_int64(s, 15, h->out_tokens);
        sqlite3_bind_double(s, 16, h->reply_ms);
        rc = add_row(st, S_HIST_ADD, err);
    }
    for (size_t i = 0; i < st->nbins && rc == FR_OK; i++) {
        const fr_store_bin_sum *b = &st->bins[i];
        sqlite3_stmt *s = st->stmt[S_BIN_ADD];
        bind_key(s, &st->hist[b->key]);
        sqlite3_bind_int(s, 4, b->lat_bin);
        sqlite3_bind_int(s, 5, b->ttft_bin);
        sqlite3_bind_int64(s, 6, b->n);
        rc = add_row(st, S_BIN_ADD, err);
    }
    fr_store_history_forget(st, false);
    return rc;
}

/* Forgets the summed routing history; see store_int.h. */
void fr_store_history_forget(fr_store *st, bool free_all)
{
    for (size_t i = 0; i < st->nhist; i++) {
        free(st->hist[i].endpoint);
        free(st->hist[i].type);
    }
    st->nhist = st->nbins = 0;
    if (free_all) {
        free(st->hist);
        free(st->bins);
        st->hist = NULL;
        st->bins = NULL;
        st->caphist = st->capbins = 0;
    }
}
