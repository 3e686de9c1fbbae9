/* The stored reports of finished runs (the `reports` table: schema 5, its
 * JSON the row's last column since schema 7), the list of runs and the
 * statistics across them: what `flowrun runs`, `flowrun report` and
 * `flowrun stats` (engine/cli/runs_cmd) read. The report is written once,
 * at a run's end, through the batch; the rest only reads, with statements
 * prepared for the one call (a command, not a run's hot path). */

#include "engine/store/pgread.h"
#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ----------------------------------------------------------- */

/* Writes `len` bytes of `text` (borrowed) into column json of reports row
 * `rowid`, a zeroblob of that size: page by page, with no copy of the
 * whole. */
static int write_json(fr_store *st, sqlite3_int64 rowid, const char *text, size_t len,
                      fr_error *err)
{
    sqlite3_blob *b = NULL;
    int src = sqlite3_blob_open(st->db, "main", "reports", "json", rowid, 1, &b);
    for (size_t at = 0; src == SQLITE_OK && at < len;) {
        int n = len - at > (1u << 20) ? 1 << 20 : (int)(len - at);
        src = sqlite3_blob_write(b, text + at, n, (int)at);
        at += (size_t)n;
    }
    if (src != SQLITE_OK) {
        sqlite3_blob_close(b);
        return fr_store_db_error(st, err, "cannot store the run's report");
    }
    return sqlite3_blob_close(b) == SQLITE_OK
               ? FR_OK
               : fr_store_db_error(st, err, "cannot store the run's report");
}

/* Stores a finished run's report; see store.h. The JSON goes in as a
 * zeroblob, its row's last column (schema 7), and is then written into it:
 * SQLite's record of the row never holds the text. */
int fr_store_report_put(fr_store *st, const char *run_id, const char *json, const char *summary,
                        fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = fr_store_check_usable(st, err);
    if (rc == FR_OK && (!run_id || !json || !summary))
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "a stored report needs a run id and texts");
    size_t len = json ? strlen(json) : 0;
    if (rc == FR_OK && len > INT_MAX)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "the run's report is too large to store");
    if (rc == FR_OK)
        rc = fr_store_batch_join(st, err);
    if (rc != FR_OK)
        return rc;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO reports(run_id, summary, stored_at, json)"
                           " VALUES (?1, ?2, ?3, ?4)",
                           -1, &s, NULL) != SQLITE_OK)
        return fr_store_db_error(st, err, "cannot store the run's report");
    st->prepares++;
    fr_store_bind_text(s, 1, run_id);
    fr_store_bind_text(s, 2, summary);
    sqlite3_bind_double(s, 3, fr_store_now(st));
    if (len)
        sqlite3_bind_zeroblob(s, 4, (int)len);
    else
        fr_store_bind_text(s, 4, json);
    /* A savepoint inside the batch: a row whose text could not be written
     * in full is taken back, never committed half written. */
    if (sqlite3_exec(st->db, "SAVEPOINT report_put", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_finalize(s);
        return fr_store_db_error(st, err, "cannot store the run's report");
    }
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = fr_store_insert_error(st, err, run_id, "cannot store the run's report");
    sqlite3_finalize(s);
    if (rc == FR_OK && len)
        rc = write_json(st, sqlite3_last_insert_rowid(st->db), json, len, err);
    if (rc != FR_OK)
        sqlite3_exec(st->db, "ROLLBACK TO report_put", NULL, NULL, NULL);
    sqlite3_exec(st->db, "RELEASE report_put", NULL, NULL, NULL);
    return rc;
}

/* ---- reading ----------------------------------------------------------- */

/* Prepares `sql` for one call into *s; FR_OK or FR_ESTORE with `what`. */
static int prepare(fr_store *st, const char *sql, sqlite3_stmt **s, const char *what, fr_error *err)
{
    *s = NULL;
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (sqlite3_prepare_v2(st->db, sql, -1, s, NULL) != SQLITE_OK)
        return fr_store_db_error(st, err, what);
    return FR_OK;
}

/* Column `i` of `s` as a JSON value: a number, a string, or null. */
static json_t *column_json(sqlite3_stmt *s, int i)
{
    switch (sqlite3_column_type(s, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(s, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(s, i));
    case SQLITE_TEXT:
        return json_string((const char *)sqlite3_column_text(s, i));
    default:
        return json_null();
    }
}

/* Lists runs; see store.h. */
/* One run's entry of fr_store_runs; see store_int.h. */
json_t *fr_store_runs_row(json_t *v[FR_STORE_RUNS_COLUMNS], bool gone)
{
    static const char *const names[FR_STORE_RUNS_COLUMNS] = {
        "id",       "workflow",    "started_at",      "ended_at",          "status",    "exit_code",
        "cost_usd", "makespan_ms", "report_cost_usd", "local_token_share", "has_report"};
    json_t *row = json_object();
    for (int i = 0; i < FR_STORE_RUNS_COLUMNS; i++)
        json_object_set_new(row, names[i], v[i]);
    /* A stored report's cost is the run's own figure; without one the
     * runs table's is what there is. */
    if (json_is_true(json_object_get(row, "has_report")))
        json_object_set(row, "cost_usd", json_object_get(row, "report_cost_usd"));
    json_object_del(row, "report_cost_usd");
    if (gone && json_is_string(json_object_get(row, "status")) &&
        strcmp(json_string_value(json_object_get(row, "status")), "running") == 0)
        json_object_set_new(row, "status", json_string("crashed"));
    return row;
}

int fr_store_runs(fr_store *st, const char *workflow, long limit, json_t **out, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    *out = NULL;
    if (st && st->pg)
        return fr_pgread_runs(st->pg, workflow, limit, out, err);
    int rc =
        prepare(st,
                "SELECT r.id, r.workflow, r.started_at, r.ended_at, r.status, r.exit_code,"
                " r.cost_usd, json_extract(CAST(p.json AS TEXT), '$.makespan_ms'),"
                " json_extract(CAST(p.json AS TEXT), '$.cost_usd'),"
                " json_extract(CAST(p.json AS TEXT), '$.local_token_share'), p.run_id IS NOT NULL,"
                " r.id, r.pid, r.pid_start, r.boot_id"
                " FROM runs r LEFT JOIN reports p ON p.run_id = r.id"
                " WHERE ?1 IS NULL OR r.workflow = ?1"
                " ORDER BY r.started_at DESC, r.rowid DESC LIMIT ?2",
                &s, "cannot read the runs", err);
    if (rc != FR_OK)
        return rc;
    fr_store_bind_text(s, 1, workflow);
    sqlite3_bind_int64(s, 2, limit > 0 ? limit : -1);
    json_t *runs = json_array();
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        json_t *v[FR_STORE_RUNS_COLUMNS];
        for (int i = 0; i < FR_STORE_RUNS_COLUMNS; i++)
            v[i] = i == 10 ? json_boolean(sqlite3_column_int(s, i)) : column_json(s, i);
        /* A run still "running" whose process is gone crashed: the next run
         * or lease will record it so; say it now. */
        fr_store_lease_row holder = {0};
        fr_store_read_holder(s, 11, &holder);
        bool gone =
            sqlite3_column_type(s, 12) != SQLITE_NULL && !fr_store_holder_alive(st, &holder);
        json_array_append_new(runs, fr_store_runs_row(v, gone));
    }
    if (step != SQLITE_DONE) {
        rc = fr_store_db_error(st, err, "cannot read the runs");
        json_decref(runs);
    } else {
        *out = runs;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Frees what `r` holds and zeroes it; see store.h. */
void fr_store_report_clear(fr_store_report *r)
{
    if (!r)
        return;
    free(r->run_id);
    free(r->workflow);
    free(r->status);
    free(r->json);
    free(r->summary);
    memset(r, 0, sizeof *r);
}

/* Returns an owned copy of column `i` of `s`, NULL for NULL. */

/* Finds the run `ref` names and reads its report; see store.h. */
int fr_store_report_get(fr_store *st, const char *ref, const char *workflow, fr_store_report *out,
                        fr_error *err)
{
    sqlite3_stmt *s = NULL;
    memset(out, 0, sizeof *out);
    bool last = strcmp(ref, "last") == 0;
    if (st && st->pg)
        return fr_pgread_report_get(st->pg, ref, workflow, out, err);
    int rc = prepare(st,
                     last ? "SELECT r.id, r.workflow, r.status, p.json, p.summary"
                            " FROM runs r JOIN reports p ON p.run_id = r.id"
                            " WHERE ?1 IS NULL OR r.workflow = ?1"
                            " ORDER BY r.started_at DESC, r.rowid DESC LIMIT 1"
                          : "SELECT r.id, r.workflow, r.status, p.json, p.summary"
                            " FROM runs r LEFT JOIN reports p ON p.run_id = r.id"
                            " WHERE (r.id = ?2 OR substr(r.id, 1, length(?2)) = ?2)"
                            " AND (?1 IS NULL OR r.workflow = ?1)"
                            " ORDER BY r.id = ?2 DESC, r.started_at DESC LIMIT 3",
                     &s, "cannot read the runs", err);
    if (rc != FR_OK)
        return rc;
    fr_store_bind_text(s, 1, workflow);
    if (!last)
        fr_store_bind_text(s, 2, ref);
    int step, n = 0;
    char other[256] = "";
    while ((step = sqlite3_step(s)) == SQLITE_ROW && n < 3) {
        const char *v[5];
        for (int i = 0; i < 5; i++)
            v[i] = (const char *)sqlite3_column_text(s, i);
        if (fr_store_report_pick(out, other, n++, ref, v))
            break;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot read the runs");
    else
        rc = fr_store_report_found(out, other, n, st->path, ref, workflow, err);
    sqlite3_finalize(s);
    return rc;
}

/* Takes row `n` of a report's query; see store_int.h. */
bool fr_store_report_pick(fr_store_report *out, char other[256], int n, const char *ref,
                          const char *const v[5])
{
    if (n == 0) {
        out->run_id = v[0] ? fr_xstrdup(v[0]) : fr_xstrdup("");
        out->workflow = v[1] ? fr_xstrdup(v[1]) : NULL;
        out->status = v[2] ? fr_xstrdup(v[2]) : NULL;
        out->json = v[3] ? fr_xstrdup(v[3]) : NULL;
        out->summary = v[4] ? fr_xstrdup(v[4]) : NULL;
        return strcmp(out->run_id, ref) == 0; /* the whole id: no prefix question */
    }
    if (n == 1)
        snprintf(other, 256, "%s", v[0] ? v[0] : "");
    return false;
}

/* What the rows picked say; see store_int.h. */
int fr_store_report_found(fr_store_report *out, const char *other, int n, const char *source,
                          const char *ref, const char *workflow, fr_error *err)
{
    bool last = strcmp(ref, "last") == 0;
    int rc = FR_OK;
    if (!out->run_id)
        rc =
            fr_error_set(err, FR_ENOENT, source, 0, "%s%s%s", last ? "no finished run" : "",
                         last && workflow ? " of workflow " : "", last && workflow ? workflow : "");
    else if (n > 1)
        rc = fr_error_set(err, FR_EINVAL, source, 0,
                          "run id prefix '%s' is ambiguous: it matches %s, %s%s", ref, out->run_id,
                          other, n > 2 ? " and more" : "");
    if (rc != FR_OK)
        fr_store_report_clear(out);
    return rc;
}

/* ---- statistics -------------------------------------------------------- */

/* What a group of attempts is keyed by, as SQL over `attempts a`. */
static const char *const group_sql[] = {"a.endpoint", "COALESCE(a.task_type, '-')"};

/* The attempts that got a reply: the quality gates' and latencies' base. */
#define REPLIED "a.outcome IN ('ok', 'quality', 'truncated', 'refused', 'tool_call', 'no_answer')"

/* Adds to each group object of `groups` (by name) the exact p50 and p95 of
 * `col` (an attempts column) over the replied attempts since `since`, as
 * `key`: {"p50", "p95"} (null without values). p_q is the sorted value at
 * index round(q * (n - 1)), as the run's report computes its own. */
static int add_quantiles(fr_store *st, int by, const char *col, const char *key, double since,
                         json_t *groups, fr_error *err)
{
    char *sql = fr_xasprintf(
        "WITH v AS (SELECT %s AS g, a.%s AS x FROM attempts a"
        " WHERE a.at >= ?1 AND a.%s IS NOT NULL AND " REPLIED "),"
        " r AS (SELECT g, x, ROW_NUMBER() OVER (PARTITION BY g ORDER BY x) AS rn,"
        " COUNT(*) OVER (PARTITION BY g) AS n FROM v)"
        " SELECT g, MAX(CASE WHEN rn = CAST(0.5 * (n - 1) + 0.5 AS INTEGER) + 1 THEN x END),"
        " MAX(CASE WHEN rn = CAST(0.95 * (n - 1) + 0.5 AS INTEGER) + 1 THEN x END)"
        " FROM r GROUP BY g",
        group_sql[by], col, col);
    sqlite3_stmt *s = NULL;
    int rc = prepare(st, sql, &s, "cannot read the attempts", err);
    free(sql);
    if (rc != FR_OK)
        return rc;
    sqlite3_bind_double(s, 1, since);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW)
        fr_store_stats_quantiles(groups, (const char *)sqlite3_column_text(s, 0), key,
                                 column_json(s, 1), column_json(s, 2));
    if (step != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot read the attempts");
    sqlite3_finalize(s);
    return rc;
}

/* A share of `part` in `all`, null when `all` is 0. */
static json_t *share(double part, double all)
{
    return all > 0 ? json_real(part / all) : json_null();
}

/* Reads one grouping (`by`: 0 endpoints, 1 task types) into *out, an owned
 * object of group name to figures. */
/* Adds a group of the statistics; see store_int.h. */
void fr_store_stats_group(json_t *groups, const char *key, const double v[FR_STORE_STATS_SUMS],
                          const char *tier)
{
    double req = v[0], ok = v[1], replied = v[2], quality = v[3], in = v[4], outt = v[5];
    double local = v[8], local_tok = v[9];
    json_t *g = json_pack(
        "{s:I, s:I, s:o, s:I, s:o, s:{s:n, s:n}, s:{s:n, s:n},"
        " s:{s:I, s:I, s:I}, s:f, s:{s:o, s:o}}",
        "requests", (json_int_t)req, "ok", (json_int_t)ok, "success_rate", share(ok, req),
        "replies", (json_int_t)replied, "quality_pass_rate", share(replied - quality, replied),
        "latency_ms", "p50", "p95", "ttft_ms", "p50", "p95", "tokens", "input", (json_int_t)in,
        "output", (json_int_t)outt, "cached", (json_int_t)v[6], "cost_usd", v[7], "local_share",
        "attempts", share(local, req), "tokens", share(local_tok, in + outt));
    if (tier) /* an endpoint is of one tier */
        json_object_set_new(g, "tier", json_string(tier));
    json_object_set_new(groups, key ? key : "", g);
}

/* Sets a group's quantiles; see store_int.h. */
void fr_store_stats_quantiles(json_t *groups, const char *group, const char *key, json_t *p50,
                              json_t *p95)
{
    json_t *q = json_object_get(json_object_get(groups, group ? group : ""), key);
    if (q) {
        json_object_set(q, "p50", p50);
        json_object_set(q, "p95", p95);
    }
    json_decref(p50);
    json_decref(p95);
}

/* The statistics' document; see store_int.h. */
json_t *fr_store_stats_doc(double since, long long runs, json_t *by_endpoint, json_t *by_type)
{
    return json_pack("{s:o, s:I, s:o, s:o}", "since", since > 0 ? json_real(since) : json_null(),
                     "runs", (json_int_t)runs, "by_endpoint", by_endpoint, "by_type", by_type);
}

static int read_groups(fr_store *st, int by, double since, json_t **out, fr_error *err)
{
    char *sql = fr_xasprintf(
        "SELECT %s AS g, COUNT(*), SUM(a.outcome = 'ok'), SUM(" REPLIED "),"
        " SUM(a.outcome = 'quality'), TOTAL(a.input_tokens), TOTAL(a.output_tokens),"
        " TOTAL(a.cached_tokens), TOTAL(a.cost_usd), SUM(a.tier = 'local'),"
        " TOTAL(CASE WHEN a.tier = 'local' THEN a.input_tokens + a.output_tokens END),"
        " MIN(a.tier), MAX(a.tier)"
        " FROM attempts a WHERE a.at >= ?1 AND a.outcome != 'pending' GROUP BY g ORDER BY g",
        group_sql[by]);
    sqlite3_stmt *s = NULL;
    int rc = prepare(st, sql, &s, "cannot read the attempts", err);
    free(sql);
    if (rc != FR_OK)
        return rc;
    sqlite3_bind_double(s, 1, since);
    json_t *groups = json_object();
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        double v[FR_STORE_STATS_SUMS];
        for (int i = 0; i < FR_STORE_STATS_SUMS; i++)
            v[i] = sqlite3_column_double(s, i + 1);
        fr_store_stats_group(groups, (const char *)sqlite3_column_text(s, 0), v,
                             by == 0 ? (const char *)sqlite3_column_text(s, 11) : NULL);
    }
    if (step != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot read the attempts");
    sqlite3_finalize(s);
    if (rc == FR_OK)
        rc = add_quantiles(st, by, "latency_ms", "latency_ms", since, groups, err);
    if (rc == FR_OK)
        rc = add_quantiles(st, by, "ttft_ms", "ttft_ms", since, groups, err);
    if (rc == FR_OK)
        *out = groups;
    else
        json_decref(groups);
    return rc;
}

/* The statistics across runs; see store.h. */
int fr_store_run_stats(fr_store *st, double since, json_t **out, fr_error *err)
{
    json_t *by_endpoint = NULL, *by_type = NULL;
    *out = NULL;
    if (st && st->pg)
        return fr_pgread_run_stats(st->pg, since, out, err);
    int rc = read_groups(st, 0, since, &by_endpoint, err);
    if (rc == FR_OK)
        rc = read_groups(st, 1, since, &by_type, err);
    sqlite3_stmt *s = NULL;
    if (rc == FR_OK)
        rc = prepare(st,
                     "SELECT COUNT(DISTINCT a.run_id) FROM attempts a"
                     " WHERE a.at >= ?1 AND a.outcome != 'pending'",
                     &s, "cannot read the attempts", err);
    if (rc == FR_OK) {
        sqlite3_bind_double(s, 1, since);
        if (sqlite3_step(s) != SQLITE_ROW)
            rc = fr_store_db_error(st, err, "cannot read the attempts");
    }
    if (rc == FR_OK) {
        *out = fr_store_stats_doc(since, sqlite3_column_int64(s, 0), by_endpoint, by_type);
        by_endpoint = by_type = NULL;
    }
    sqlite3_finalize(s);
    json_decref(by_endpoint);
    json_decref(by_type);
    return rc;
}
