/* The PostgreSQL read side (pgread.h): one synchronous libpq connection,
 * the queries of the SQLite readers in PostgreSQL's dialect, and the
 * documents built by the builders they share (store_int.h). Text compares
 * as bytes (COLLATE "C"), as SQLite's BINARY does, so rows come in the
 * same order from both stores. */

#include "engine/store/pgread.h"

#include "engine/store/pg_schema.h"
#include "engine/store/pgurl.h"
#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include "engine/store/pqfns.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fr_pgread {
    PGconn *conn;
    char *source; /* the URL, its password masked */
};

const char *fr_pgread_source(const fr_pgread *r)
{
    return r->source;
}

void fr_pgread_close(fr_pgread *r)
{
    if (!r)
        return;
    fr_pq.finish(r->conn);
    free(r->source);
    free(r);
}

/* FR_ESTORE (or `code`) with what failed and the server's message, its
 * last newline cut. */
static int db_error(const fr_pgread *r, fr_error *err, int code, const char *what)
{
    const char *m = fr_pq.errorMessage(r->conn);
    int len = (int)strcspn(m, "\n");
    return fr_error_set(err, code, r->source, 0, "%s: %.*s", what, len, m);
}

/* Runs `sql` with the `n` text parameters `params` (borrowed, NULL for
 * SQL NULL). On FR_OK *res is the owned result (PQclear) of its rows. */
static int query(fr_pgread *r, const char *sql, int n, const char *const *params, PGresult **res,
                 const char *what, fr_error *err)
{
    *res = fr_pq.execParams(r->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (*res && fr_pq.resultStatus(*res) == PGRES_TUPLES_OK)
        return FR_OK;
    int rc =
        db_error(r, err, fr_pq.status(r->conn) == CONNECTION_OK ? FR_ESTORE : FR_ECONNECT, what);
    fr_pq.clear(*res);
    *res = NULL;
    return rc;
}

/* Column `c` of row `i` as text (borrowed from `res`), NULL for SQL NULL. */
static const char *text(const PGresult *res, int i, int c)
{
    return fr_pq.getisnull(res, i, c) ? NULL : fr_pq.getvalue(res, i, c);
}

static double num(const PGresult *res, int i, int c)
{
    const char *v = text(res, i, c);
    return v ? strtod(v, NULL) : 0;
}

static long long integer(const PGresult *res, int i, int c)
{
    const char *v = text(res, i, c);
    return v ? strtoll(v, NULL, 10) : 0;
}

/* Opens a reader; see pgread.h. */
int fr_pgread_open(const char *url, fr_pgread **out, fr_error *err)
{
    PGresult *res = NULL;
    fr_pgread *r = NULL;
    int rc = FR_OK;
    *out = NULL;
    if (!url || !*url)
        return fr_error_set(err, FR_EINVAL, "state", 0, "no state database URL");
    rc = fr_pq_load(err);
    if (rc != FR_OK)
        return rc;
    r = fr_xcalloc(1, sizeof *r);
    r->source = fr_pgurl_mask(url);
    /* The URL's own settings win over the defaults before it. */
    static const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", FR_PGREAD_CONNECT_S);
    const char *const values[] = {timeout, "flowrun", url, NULL};
    r->conn = fr_pq.connectdbParams(keys, values, 1);
    if (!r->conn) {
        rc = fr_error_set(err, FR_ECONNECT, r->source, 0, "cannot reach the state database");
        goto cleanup;
    }
    if (fr_pq.status(r->conn) != CONNECTION_OK) {
        rc = db_error(r, err, FR_ECONNECT, "cannot reach the state database");
        goto cleanup;
    }
    /* A command never waits long for a lock. */
    rc = query(r,
               "SELECT set_config('statement_timeout', '30s', false),"
               " to_regclass('meta') IS NOT NULL",
               0, NULL, &res, "cannot read the state database's schema", err);
    bool has_meta = rc == FR_OK && strcmp(fr_pq.getvalue(res, 0, 1), "t") == 0;
    fr_pq.clear(res);
    res = NULL;
    if (rc == FR_OK && has_meta)
        rc = query(r, "SELECT value FROM meta WHERE key = 'schema_version'", 0, NULL, &res,
                   "cannot read the state database's schema", err);
    if (rc != FR_OK)
        goto cleanup;
    const char *v = res && fr_pq.ntuples(res) > 0 ? text(res, 0, 0) : NULL;
    long version = v ? strtol(v, NULL, 10) : 0;
    if (version == 0)
        rc = fr_error_set(err, FR_ENOENT, r->source, 0,
                          "the state database has no flowrun schema yet: no run wrote to it");
    else if (version > FR_PG_SCHEMA_VERSION)
        rc = fr_error_set(err, FR_ESTOREVER, r->source, 0,
                          "the state database has schema version %ld, but this flowrun knows "
                          "versions up to %d: upgrade flowrun to read it",
                          version, FR_PG_SCHEMA_VERSION);
    else if (version < FR_PG_SCHEMA_VERSION)
        rc = fr_error_set(err, FR_ESTORE, r->source, 0,
                          "the state database has schema version %ld, older than this "
                          "flowrun's %d: a run with this flowrun updates it",
                          version, FR_PG_SCHEMA_VERSION);
    if (rc != FR_OK)
        goto cleanup;
    *out = r;
    r = NULL;
cleanup:
    fr_pq.clear(res);
    fr_pgread_close(r);
    return rc;
}

/* ---- spend ------------------------------------------------------------- */

int fr_pgread_spend(fr_pgread *r, bool by_day, const char *period, json_t **out, fr_error *err)
{
    PGresult *res = NULL;
    *out = NULL;
    if (period && !fr_store_period_valid(period, by_day))
        return fr_error_set(err, FR_EINVAL, r->source, 0, "%s must be \"%s\", not \"%s\"",
                            by_day ? "day" : "month", by_day ? "YYYY-MM-DD" : "YYYY-MM", period);
    const char *const params[] = {period, by_day ? "t" : "f"};
    int rc = query(r,
                   "SELECT period, workflow, endpoint, tier, count(*),"
                   " coalesce(sum(cost_usd), 0), sum(input_tokens), sum(output_tokens),"
                   " sum(cached_tokens), sum(usage_estimated::integer),"
                   " coalesce(nullif(user_name, ''), '-'), coalesce(nullif(host, ''), '-')"
                   " FROM (SELECT CASE WHEN $2::boolean THEN day ELSE month END AS period, *"
                   " FROM ledger) l WHERE $1::text IS NULL OR period = $1"
                   " GROUP BY period, workflow, endpoint, tier, user_name, host"
                   " ORDER BY period COLLATE \"C\", workflow COLLATE \"C\", endpoint COLLATE \"C\","
                   " tier COLLATE \"C\", user_name COLLATE \"C\", host COLLATE \"C\"",
                   2, params, &res, "cannot read the spend", err);
    if (rc != FR_OK)
        return rc;
    json_t *doc = fr_store_spend_doc_new(by_day);
    for (int i = 0; i < fr_pq.ntuples(res); i++) {
        fr_store_spend_row row = {
            .period = text(res, i, 0),
            .workflow = text(res, i, 1),
            .endpoint = text(res, i, 2),
            .tier = text(res, i, 3),
            .attempts = integer(res, i, 4),
            .cost = num(res, i, 5),
            .input = integer(res, i, 6),
            .output = integer(res, i, 7),
            .cached = integer(res, i, 8),
            .estimated = integer(res, i, 9),
            .user = text(res, i, 10),
            .host = text(res, i, 11),
        };
        fr_store_spend_doc_add(doc, by_day, &row);
    }
    fr_store_spend_doc_end(doc, by_day, period);
    fr_pq.clear(res);
    *out = doc;
    return FR_OK;
}

/* ---- a run, task by task ------------------------------------------------ */

int fr_pgread_run_tasks(fr_pgread *r, const char *workflow, const char *run_id, json_t **out,
                        fr_error *err)
{
    PGresult *res = NULL;
    json_t *doc = NULL;
    *out = NULL;
    bool last = !run_id || strcmp(run_id, "last") == 0;
    if (last && !workflow)
        return fr_error_set(err, FR_EINVAL, r->source, 0, "no workflow for the last run");
    const char *const p1[] = {last ? workflow : run_id};
    int rc = query(r,
                   last ? "SELECT id, workflow, status, cost_usd FROM runs WHERE workflow = $1"
                          " ORDER BY started_at DESC, id COLLATE \"C\" DESC LIMIT 1"
                        : "SELECT id, workflow, status, cost_usd FROM runs WHERE id = $1",
                   1, p1, &res, "cannot read the runs", err);
    if (rc != FR_OK)
        goto cleanup;
    if (fr_pq.ntuples(res) == 0) {
        rc = last ? fr_error_set(err, FR_ENOENT, r->source, 0,
                                 "no run of workflow '%s' is recorded in this state database",
                                 workflow)
                  : fr_error_set(err, FR_ENOENT, r->source, 0,
                                 "no run '%s' is recorded in this state database", run_id);
        goto cleanup;
    }
    doc = fr_store_run_doc_new(text(res, 0, 0), text(res, 0, 1), text(res, 0, 2), num(res, 0, 3));
    fr_pq.clear(res);
    const char *const p2[] = {json_string_value(json_object_get(doc, "run"))};
    rc = query(r,
               "SELECT task, endpoint, outcome, cost_usd FROM attempts WHERE run_id = $1"
               " ORDER BY id",
               1, p2, &res, "cannot read the run's attempts", err);
    if (rc != FR_OK)
        goto cleanup;
    for (int i = 0; i < fr_pq.ntuples(res); i++)
        fr_store_run_doc_add(doc, text(res, i, 0), text(res, i, 1), text(res, i, 2),
                             num(res, i, 3));
    *out = doc;
    doc = NULL;
cleanup:
    fr_pq.clear(res);
    json_decref(doc);
    return rc;
}

/* ---- the routing history ------------------------------------------------ */

int fr_pgread_history(fr_pgread *r, const char *const *endpoints, size_t n,
                      void (*each)(void *ud, const fr_store_history_row *row), void *ud,
                      fr_error *err)
{
    PGresult *res = NULL;
    char *names = fr_store_names_json(endpoints, n);
    const char *const params[] = {names};
#define WANTED "$1::json IS NULL OR endpoint IN (SELECT json_array_elements_text($1::json))"
    int rc = query(
        r,
        "SELECT * FROM (SELECT endpoint, task_type, band, 0 AS kind, 0 AS lat_bin, settled, passes,"
        " fails, errors, w_pass, w_fail, w_ref, last_at, score_sum, score_n, cost_sum, out_tokens,"
        " reply_ms FROM routing_history WHERE " WANTED
        " UNION ALL SELECT endpoint, task_type, band, 1, lat_bin, n, ttft_bin, 0, 0, 0, 0, NULL,"
        " NULL, 0, 0, 0, 0, 0 FROM routing_bins WHERE " WANTED ") h"
        " ORDER BY kind, endpoint COLLATE \"C\", task_type COLLATE \"C\", band, lat_bin, passes",
        1, params, &res, "cannot read the routing history", err);
#undef WANTED
    free(names);
    if (rc != FR_OK)
        return rc;
    for (int i = 0; i < fr_pq.ntuples(res); i++) {
        fr_store_history_row row = {
            .endpoint = text(res, i, 0),
            .type = text(res, i, 1),
            .band = (int)integer(res, i, 2),
            .is_bin = integer(res, i, 3) == 1,
            .lat_bin = (int)integer(res, i, 4),
            .settled = (long)integer(res, i, 5),
            .passes = (long)integer(res, i, 6),
            .fails = (long)integer(res, i, 7),
            .errors = (long)integer(res, i, 8),
            .w_pass = num(res, i, 9),
            .w_fail = num(res, i, 10),
            .has_w_ref = !fr_pq.getisnull(res, i, 11),
            .w_ref = num(res, i, 11),
            .last_at = num(res, i, 12),
            .score_sum = num(res, i, 13),
            .score_n = (long)integer(res, i, 14),
            .cost_sum = num(res, i, 15),
            .out_tokens = (long)integer(res, i, 16),
            .reply_ms = num(res, i, 17),
        };
        fr_store_history_row_fix(&row);
        if (row.endpoint && row.type)
            each(ud, &row);
    }
    fr_pq.clear(res);
    return FR_OK;
}

/* ---- what earlier runs observed ----------------------------------------- */

int fr_pgread_observed(fr_pgread *r, const char *workflow, json_t **out, fr_error *err)
{
    PGresult *res = NULL;
    if (!workflow || !out)
        return fr_error_set(err, FR_EINVAL, r->source, 0, "no workflow or no place for the result");
    *out = NULL;
    const char *const params[] = {workflow};
    int rc = query(r,
                   "SELECT a.task, a.endpoint, a.latency_ms, a.output_tokens"
                   " FROM attempts a JOIN runs r ON r.id = a.run_id"
                   " WHERE r.workflow = $1 AND a.outcome = 'ok' AND a.latency_ms > 0"
                   " ORDER BY a.at DESC, a.id DESC",
                   1, params, &res, "cannot read the attempts", err);
    if (rc != FR_OK)
        return rc;
    json_t *samples = fr_store_observed_new();
    for (int i = 0; i < fr_pq.ntuples(res); i++)
        fr_store_observed_add(samples, text(res, i, 0), text(res, i, 1), num(res, i, 2),
                              integer(res, i, 3));
    fr_pq.clear(res);
    *out = fr_store_observed_end(samples);
    return FR_OK;
}

/* ---- the runs, a stored report, statistics ------------------------------ */

/* Column `c` of row `i` as a JSON value (owned): null, or as `kind` says:
 * 's' a string, 'r' a real, 'i' an integer, 'j' a JSON text parsed. */
static json_t *value(const PGresult *res, int i, int c, char kind)
{
    const char *v = text(res, i, c);
    if (!v)
        return json_null();
    if (kind == 's')
        return json_string(v);
    if (kind == 'r')
        return json_real(strtod(v, NULL));
    if (kind == 'i')
        return json_integer(strtoll(v, NULL, 10));
    json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
    return j ? j : json_null();
}

int fr_pgread_runs(fr_pgread *r, const char *workflow, long limit, json_t **out, fr_error *err)
{
    static const char kinds[FR_STORE_RUNS_COLUMNS + 1] = "ssrrsirjjjb";
    PGresult *res = NULL;
    *out = NULL;
    char lim[32];
    snprintf(lim, sizeof lim, "%ld", limit);
    const char *const params[] = {workflow, limit > 0 ? lim : NULL};
    int rc = query(r,
                   "SELECT r.id, r.workflow, r.started_at, r.ended_at, r.status, r.exit_code,"
                   " r.cost_usd, p.json::json -> 'makespan_ms', p.json::json -> 'cost_usd',"
                   " p.json::json -> 'local_token_share', p.run_id IS NOT NULL,"
                   " NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = r.owner_id"
                   " AND o.expires > now())"
                   " FROM runs r LEFT JOIN reports p ON p.run_id = r.id"
                   " WHERE $1::text IS NULL OR r.workflow = $1"
                   " ORDER BY r.started_at DESC, r.id COLLATE \"C\" DESC LIMIT $2::bigint",
                   2, params, &res, "cannot read the runs", err);
    if (rc != FR_OK)
        return rc;
    json_t *runs = json_array();
    for (int i = 0; i < fr_pq.ntuples(res); i++) {
        json_t *v[FR_STORE_RUNS_COLUMNS];
        for (int c = 0; c < FR_STORE_RUNS_COLUMNS; c++)
            v[c] = kinds[c] == 'b' ? json_boolean(strcmp(fr_pq.getvalue(res, i, c), "t") == 0)
                                   : value(res, i, c, kinds[c]);
        json_array_append_new(runs,
                              fr_store_runs_row(v, strcmp(fr_pq.getvalue(res, i, 11), "t") == 0));
    }
    fr_pq.clear(res);
    *out = runs;
    return FR_OK;
}

int fr_pgread_report_get(fr_pgread *r, const char *ref, const char *workflow, fr_store_report *out,
                         fr_error *err)
{
    PGresult *res = NULL;
    memset(out, 0, sizeof *out);
    bool last = strcmp(ref, "last") == 0;
    const char *const params[] = {workflow, ref};
    int rc = query(r,
                   last ? "SELECT r.id, r.workflow, r.status, p.json, p.summary"
                          " FROM runs r JOIN reports p ON p.run_id = r.id"
                          " WHERE $1::text IS NULL OR r.workflow = $1"
                          " ORDER BY r.started_at DESC, r.id COLLATE \"C\" DESC LIMIT 1"
                        : "SELECT r.id, r.workflow, r.status, p.json, p.summary"
                          " FROM runs r LEFT JOIN reports p ON p.run_id = r.id"
                          " WHERE (r.id = $2 OR left(r.id, length($2)) = $2)"
                          " AND ($1::text IS NULL OR r.workflow = $1)"
                          " ORDER BY r.id = $2 DESC, r.started_at DESC LIMIT 3",
                   last ? 1 : 2, params, &res, "cannot read the runs", err);
    if (rc != FR_OK)
        return rc;
    int n = 0;
    char other[256] = "";
    while (n < fr_pq.ntuples(res)) {
        const char *v[5];
        for (int c = 0; c < 5; c++)
            v[c] = text(res, n, c);
        if (fr_store_report_pick(out, other, n++, ref, v))
            break;
    }
    fr_pq.clear(res);
    return fr_store_report_found(out, other, n, r->source, ref, workflow, err);
}

/* The replies: attempts that got one. */
#define REPLIED "a.outcome IN ('ok', 'quality', 'truncated', 'refused', 'tool_call', 'no_answer')"

/* The groups of fr_store_run_stats by endpoint (`by` 0) or task type (1)
 * into *out (owned). */
static int read_groups(fr_pgread *r, int by, const char *since, json_t **out, fr_error *err)
{
    static const char *const group_sql[] = {"a.endpoint", "coalesce(a.task_type, '-')"};
    PGresult *res = NULL;
    const char *const params[] = {since};
    char *sql = fr_xasprintf(
        "SELECT %s AS g, count(*), count(*) FILTER (WHERE a.outcome = 'ok'),"
        " count(*) FILTER (WHERE " REPLIED "), count(*) FILTER (WHERE a.outcome = 'quality'),"
        " coalesce(sum(a.input_tokens), 0), coalesce(sum(a.output_tokens), 0),"
        " coalesce(sum(a.cached_tokens), 0), coalesce(sum(a.cost_usd), 0),"
        " count(*) FILTER (WHERE a.tier = 'local'),"
        " coalesce(sum(a.input_tokens + a.output_tokens) FILTER (WHERE a.tier = 'local'), 0),"
        " min(a.tier COLLATE \"C\")"
        " FROM attempts a WHERE a.at >= $1::float8 AND a.outcome <> 'pending'"
        " GROUP BY g ORDER BY %s COLLATE \"C\"",
        group_sql[by], group_sql[by]);
    int rc = query(r, sql, 1, params, &res, "cannot read the attempts", err);
    free(sql);
    if (rc != FR_OK)
        return rc;
    json_t *groups = json_object();
    for (int i = 0; i < fr_pq.ntuples(res); i++) {
        double v[FR_STORE_STATS_SUMS];
        for (int c = 0; c < FR_STORE_STATS_SUMS; c++)
            v[c] = num(res, i, c + 1);
        fr_store_stats_group(groups, text(res, i, 0), v, by == 0 ? text(res, i, 11) : NULL);
    }
    fr_pq.clear(res);
    /* The quantiles as a report's: the sorted value at round(q (n - 1)),
     * in double precision as SQLite computes it. */
    static const char *const metrics[] = {"latency_ms", "ttft_ms"};
    for (int m = 0; rc == FR_OK && m < 2; m++) {
        sql = fr_xasprintf(
            "WITH v AS (SELECT %s AS g, a.%s AS x FROM attempts a"
            " WHERE a.at >= $1::float8 AND a.%s IS NOT NULL AND " REPLIED "),"
            " q AS (SELECT g, x, row_number() OVER (PARTITION BY g ORDER BY x) AS rn,"
            " count(*) OVER (PARTITION BY g) AS n FROM v)"
            " SELECT g, max(CASE WHEN rn = floor(0.5::float8 * (n - 1) + 0.5::float8) + 1"
            " THEN x END), max(CASE WHEN rn = floor(0.95::float8 * (n - 1) + 0.5::float8) + 1"
            " THEN x END) FROM q GROUP BY g",
            group_sql[by], metrics[m], metrics[m]);
        rc = query(r, sql, 1, params, &res, "cannot read the attempts", err);
        free(sql);
        for (int i = 0; rc == FR_OK && i < fr_pq.ntuples(res); i++)
            fr_store_stats_quantiles(groups, text(res, i, 0), metrics[m], value(res, i, 1, 'r'),
                                     value(res, i, 2, 'r'));
        fr_pq.clear(res);
        res = NULL;
    }
    if (rc == FR_OK)
        *out = groups;
    else
        json_decref(groups);
    return rc;
}

int fr_pgread_run_stats(fr_pgread *r, double since, json_t **out, fr_error *err)
{
    json_t *by_endpoint = NULL, *by_type = NULL;
    PGresult *res = NULL;
    *out = NULL;
    char from[32];
    snprintf(from, sizeof from, "%.17g", since);
    const char *const params[] = {from};
    int rc = read_groups(r, 0, from, &by_endpoint, err);
    if (rc == FR_OK)
        rc = read_groups(r, 1, from, &by_type, err);
    if (rc == FR_OK)
        rc = query(r,
                   "SELECT count(DISTINCT a.run_id) FROM attempts a"
                   " WHERE a.at >= $1::float8 AND a.outcome <> 'pending'",
                   1, params, &res, "cannot read the attempts", err);
    if (rc == FR_OK) {
        *out = fr_store_stats_doc(since, integer(res, 0, 0), by_endpoint, by_type);
        by_endpoint = by_type = NULL;
    }
    fr_pq.clear(res);
    json_decref(by_endpoint);
    json_decref(by_type);
    return rc;
}

/* ---- a decision on an approval ------------------------------------------ */

int fr_pgread_approval_decide(fr_pgread *r, const char *workflow, const char *task,
                              const char *state, const char *by, const char *note, double at,
                              fr_error *err)
{
    PGresult *res = NULL;
    char when[32];
    snprintf(when, sizeof when, "%.17g", at);
    const char *const params[] = {state, by, when, note, workflow, task};
    int rc = query(r,
                   "UPDATE approvals SET state = $1, decided_by = $2, decided_at = $3::float8,"
                   " note = $4 WHERE workflow = $5 AND task = $6 RETURNING 1",
                   6, params, &res, "cannot write the approval", err);
    if (rc == FR_OK && fr_pq.ntuples(res) == 0)
        rc = fr_error_set(err, FR_ENOENT, r->source, 0,
                          "no approval of task '%s' of workflow '%s' was ever asked", task,
                          workflow);
    fr_pq.clear(res);
    return rc;
}
