/* What the ledger says was spent: a period's total (a month's or a day's:
 * every charge, or the booked replies only), what of a period's cap others
 * use, the spend report by month or day, endpoint, tier, workflow, user and
 * host (`flowrun spend`), and what earlier
 * runs of a workflow observed (latency, output) for a plan. Reads only:
 * these work on a store opened read-only too. */

#include "engine/store/pgread.h"
#include "engine/store/store_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- a month's totals ------------------------------------------------------------ */

/* Reads one month's total through statement `id`; see store_int.h. */
int fr_store_month_total(fr_store *st, enum fr_store_stmt id, const char *month, double *total,
                         fr_error *err)
{
    sqlite3_stmt *s = st->stmt[id];
    fr_store_bind_text(s, 1, month);
    int rc = FR_OK;
    if (sqlite3_step(s) == SQLITE_ROW)
        *total = sqlite3_column_double(s, 0);
    else
        rc = fr_store_db_error(st, err, "cannot read the month's spend");
    fr_store_done(s);
    return rc;
}

/* Reads a month's ledger total; see store.h. */
int fr_store_month_spent(fr_store *st, const char *month, double *spent, fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = fr_store_check_period(st, month, err);
    if (rc == FR_OK && !spent)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's spend");
    if (rc == FR_OK)
        rc = fr_store_month_total(st, S_MONTH_SPENT, month, spent, err);
    return rc;
}

/* Reads what others use of a month; see store.h. */
int fr_store_month_used(fr_store *st, const char *month, double *used, fr_error *err)
{
    fr_store_lease_row *rows = NULL;
    size_t n = 0;
    double spent = 0, outstanding = 0;
    bool begun = false;
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK)
        rc = fr_store_check_period(st, month, err);
    if (rc == FR_OK && !used)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the month's use");
    if (rc != FR_OK)
        goto cleanup;
    /* One read transaction: the spend and the leases come from one snapshot. */
    rc = fr_store_lease_snapshot(st, S_BEGIN, month, NULL, &spent, &rows, &n, err);
    if (rc != FR_OK)
        goto cleanup;
    begun = true;
    for (size_t i = 0; i < n; i++)
        if (!fr_store_held_here(st, &rows[i]) && fr_store_holder_alive(st, &rows[i]))
            outstanding += fmax(0, rows[i].amount - rows[i].spent);
    rc = fr_store_exec(st, S_COMMIT, "cannot read the state database", err);
    if (rc != FR_OK)
        goto cleanup;
    *used = spent + outstanding;
cleanup:
    if (rc != FR_OK && begun)
        fr_store_rollback(st);
    free(rows);
    return rc;
}

/* ---- the spend report ----------------------------------------------------------- */

static json_t *tokens_new(void)
{
    return json_pack("{sIsIsI}", "input", (json_int_t)0, "output", (json_int_t)0, "cached",
                     (json_int_t)0);
}

static json_t *group_new(void)
{
    return json_pack("{sfsIso}", "cost_usd", 0.0, "attempts", (json_int_t)0, "tokens",
                     tokens_new());
}

static void add_int(json_t *obj, const char *key, json_int_t v)
{
    json_t *n = json_object_get(obj, key);
    json_integer_set(n, json_integer_value(n) + v);
}

static void group_add(json_t *g, const fr_store_spend_row *r)
{
    json_t *cost = json_object_get(g, "cost_usd");
    json_real_set(cost, json_real_value(cost) + r->cost);
    add_int(g, "attempts", r->attempts);
    json_t *tok = json_object_get(g, "tokens");
    add_int(tok, "input", r->input);
    add_int(tok, "output", r->output);
    add_int(tok, "cached", r->cached);
}

/* Adds `r` to the group `key` of `map`, creating it. */
static void map_add(json_t *map, const char *key, const fr_store_spend_row *r)
{
    json_t *g = json_object_get(map, key);
    if (!g) {
        g = group_new();
        json_object_set_new(map, key, g);
    }
    group_add(g, r);
}

/* Returns a new entry of period `key` ("month" or "day") `period` with
 * zeros (owned). */
static json_t *period_new(const char *key, const char *period)
{
    json_t *m = group_new();
    json_object_set_new(m, key, json_string(period));
    json_object_set_new(m, "usage_estimated", json_integer(0));
    json_object_set_new(m, "by_endpoint", json_object());
    json_object_set_new(m, "by_tier",
                        json_pack("{soso}", "local", group_new(), "cloud", group_new()));
    json_object_set_new(m, "by_workflow", json_object());
    json_object_set_new(m, "by_user", json_object());
    json_object_set_new(m, "by_host", json_object());
    return m;
}

/* A new spend document; see store_int.h. */
json_t *fr_store_spend_doc_new(bool by_day)
{
    return json_pack("{s:[]}", by_day ? "days" : "months");
}

/* Adds a row to a spend document; see store_int.h. */
void fr_store_spend_doc_add(json_t *doc, bool by_day, const fr_store_spend_row *r)
{
    const char *key = by_day ? "day" : "month";
    json_t *list = json_object_get(doc, by_day ? "days" : "months");
    json_t *cur = json_array_get(list, json_array_size(list) - 1);
    if (!cur || strcmp(json_string_value(json_object_get(cur, key)), r->period) != 0) {
        cur = period_new(key, r->period);
        json_array_append_new(list, cur);
    }
    group_add(cur, r);
    add_int(cur, "usage_estimated", r->estimated);
    map_add(json_object_get(cur, "by_endpoint"), r->endpoint, r);
    map_add(json_object_get(cur, "by_tier"), r->tier, r);
    map_add(json_object_get(cur, "by_workflow"), r->workflow, r);
    map_add(json_object_get(cur, "by_user"), r->user, r);
    map_add(json_object_get(cur, "by_host"), r->host, r);
}

/* Ends a spend document; see store_int.h. */
void fr_store_spend_doc_end(json_t *doc, bool by_day, const char *period)
{
    json_t *list = json_object_get(doc, by_day ? "days" : "months");
    if (period && json_array_size(list) == 0)
        json_array_append_new(list, period_new(by_day ? "day" : "month", period));
}

/* Reports spend by month, or by day when `by_day`, for `period` (borrowed)
 * or every one when NULL; see store.h. */
static int spend_by(fr_store *st, bool by_day, const char *period, json_t **out, fr_error *err)
{
    json_t *root = NULL;
    sqlite3_stmt *s = NULL;
    int rc = fr_store_check_readable(st, err);
    if (rc == FR_OK && period)
        rc = by_day ? fr_store_check_day(st, period, err) : fr_store_check_month(st, period, err);
    if (rc == FR_OK && !out)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no place for the spend report");
    if (rc != FR_OK)
        goto cleanup;
    if (st->pg) {
        rc = fr_pgread_spend(st->pg, by_day, period, out, err);
        goto cleanup;
    }
    root = fr_store_spend_doc_new(by_day);
    s = st->stmt[S_SPEND];
    fr_store_bind_text(s, 1, period);
    sqlite3_bind_int(s, 2, by_day);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        fr_store_spend_row r = {
            .period = (const char *)sqlite3_column_text(s, 0),
            .workflow = (const char *)sqlite3_column_text(s, 1),
            .endpoint = (const char *)sqlite3_column_text(s, 2),
            .tier = (const char *)sqlite3_column_text(s, 3),
            .attempts = sqlite3_column_int64(s, 4),
            .cost = sqlite3_column_double(s, 5),
            .input = sqlite3_column_int64(s, 6),
            .output = sqlite3_column_int64(s, 7),
            .cached = sqlite3_column_int64(s, 8),
            .estimated = sqlite3_column_int64(s, 9),
            .user = (const char *)sqlite3_column_text(s, 10),
            .host = (const char *)sqlite3_column_text(s, 11),
        };
        if (!r.period || !r.workflow || !r.endpoint || !r.tier || !r.user || !r.host)
            continue; /* NOT NULL columns: cannot happen */
        fr_store_spend_doc_add(root, by_day, &r);
    }
    if (step != SQLITE_DONE) {
        rc = fr_store_db_error(st, err, "cannot read the spend");
        goto cleanup;
    }
    fr_store_spend_doc_end(root, by_day, period);
    *out = root;
    root = NULL;
cleanup:
    if (s)
        fr_store_done(s);
    json_decref(root);
    return rc;
}

/* Reports spend by month; see store.h. */
int fr_store_spend(fr_store *st, const char *month, json_t **out, fr_error *err)
{
    return spend_by(st, false, month, out, err);
}

/* Reports spend by day; see store.h. */
int fr_store_spend_days(fr_store *st, const char *day, json_t **out, fr_error *err)
{
    return spend_by(st, true, day, out, err);
}

/* The newest samples per task and endpoint that fr_store_observed keeps. */
#define OBSERVED_SAMPLES 5

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of the `n` numbers of the JSON array `a`. */
static double median(const json_t *a)
{
    double v[OBSERVED_SAMPLES];
    size_t n = json_array_size(a) < OBSERVED_SAMPLES ? json_array_size(a) : OBSERVED_SAMPLES;
    for (size_t i = 0; i < n; i++)
        v[i] = json_number_value(json_array_get(a, i));
    qsort(v, n, sizeof *v, cmp_double);
    return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A new observed accumulator; see store_int.h. */
json_t *fr_store_observed_new(void)
{
    return json_object();
}

/* Adds one sample, newest first; see store_int.h. */
void fr_store_observed_add(json_t *acc, const char *task, const char *endpoint, double latency_ms,
                           long long output_tokens)
{
    json_t *per_task = json_object_get(acc, task);
    if (!per_task) {
        per_task = json_object();
        json_object_set_new(acc, task, per_task);
    }
    json_t *pair = json_object_get(per_task, endpoint);
    if (!pair) {
        pair = json_pack("{s:[], s:[]}", "lat", "out");
        json_object_set_new(per_task, endpoint, pair);
    }
    json_t *lat = json_object_get(pair, "lat");
    if (json_array_size(lat) >= OBSERVED_SAMPLES)
        return;
    json_array_append_new(lat, json_real(latency_ms));
    json_array_append_new(json_object_get(pair, "out"), json_real((double)output_tokens));
}

/* The medians of the samples; see store_int.h. */
json_t *fr_store_observed_end(json_t *samples)
{
    json_t *root = json_object();
    const char *task, *ep;
    json_t *per_task, *pair;
    json_object_foreach(samples, task, per_task)
    {
        json_t *o = json_object();
        json_object_foreach(per_task, ep, pair)
        {
            json_t *lat = json_object_get(pair, "lat");
            json_object_set_new(o, ep,
                                json_pack("{s:f, s:I, s:I}", "latency_ms", median(lat),
                                          "output_tokens",
                                          (json_int_t)(median(json_object_get(pair, "out")) + 0.5),
                                          "samples", (json_int_t)json_array_size(lat)));
        }
        json_object_set_new(root, task, o);
    }
    json_decref(samples);
    return root;
}

/* What earlier runs of a workflow observed; see store.h. */
int fr_store_observed(fr_store *st, const char *workflow, json_t **out, fr_error *err)
{
    json_t *samples = NULL;
    sqlite3_stmt *s = NULL;
    int rc = fr_store_check_readable(st, err);
    if (rc == FR_OK && (!workflow || !out))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no workflow or no place for the result");
    if (rc != FR_OK)
        goto cleanup;
    if (st->pg) {
        rc = fr_pgread_observed(st->pg, workflow, out, err);
        goto cleanup;
    }
    if (sqlite3_prepare_v2(st->db,
                           "SELECT a.task, a.endpoint, a.latency_ms, a.output_tokens"
                           " FROM attempts a JOIN runs r ON r.id = a.run_id"
                           " WHERE r.workflow = ?1 AND a.outcome = 'ok' AND a.latency_ms > 0"
                           " ORDER BY a.at DESC, a.id DESC",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot read the attempts");
        goto cleanup;
    }
    fr_store_bind_text(s, 1, workflow);
    /* First the newest samples, then their medians. */
    samples = fr_store_observed_new();
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        const char *task = (const char *)sqlite3_column_text(s, 0);
        const char *ep = (const char *)sqlite3_column_text(s, 1);
        if (!task || !ep)
            continue; /* NOT NULL columns: cannot happen */
        fr_store_observed_add(samples, task, ep, sqlite3_column_double(s, 2),
                              sqlite3_column_int64(s, 3));
    }
    if (step != SQLITE_DONE) {
        rc = fr_store_db_error(st, err, "cannot read the attempts");
        goto cleanup;
    }
    *out = fr_store_observed_end(samples);
    samples = NULL;
cleanup:
    sqlite3_finalize(s);
    json_decref(samples);
    return rc;
}
