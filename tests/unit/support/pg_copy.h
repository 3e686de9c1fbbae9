#pragma once
/* Puts a SQLite state database's ledger into a PostgreSQL store, for the
 * tests that compare what the commands read from each (test_pgread and the
 * e2e helper pg_ledger): applies the PostgreSQL schema synchronously
 * (engine/store/pg_schema's statements) and copies the runs, the attempts
 * (each booked in flight at its cost, then settled to its outcome, as a
 * run's reservation and settle do, so the routing history's triggers see
 * what a run makes them see), the approvals and the reports. Header-only:
 * each test executable is one translation unit. */

#include "engine/store/pg_schema.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs `sql` on `c` with the `n` text parameters `p`; 0 or -1 (the
 * server's message on stderr). */
static int pgc_exec(PGconn *c, const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
        fprintf(stderr, "pg_copy: %s\n", PQerrorMessage(c));
    PQclear(r);
    return rc;
}

/* Brings the database of `c` to the current schema when it has none; 0 or
 * -1. */
static int pgc_apply_schema(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT to_regclass('meta') IS NOT NULL");
    bool has = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (has)
        return 0;
    int rc = pgc_exec(c, "BEGIN", 0, NULL);
    for (int v = 0; rc == 0 && v < FR_PG_SCHEMA_VERSION; v++)
        for (const char *const *s = fr_pg_schema_sql(v); rc == 0 && *s; s++)
            rc = pgc_exec(c, *s, 0, NULL);
    char version[64];
    snprintf(version, sizeof version, "%d", FR_PG_SCHEMA_VERSION);
    const char *const p[] = {version};
    if (rc == 0)
        rc = pgc_exec(c, "INSERT INTO meta(key, value) VALUES ('schema_version', $1)", 1, p);
    if (rc == 0)
        rc = pgc_exec(c, "COMMIT", 0, NULL);
    else
        pgc_exec(c, "ROLLBACK", 0, NULL);
    return rc;
}

/* Copies the rows of SQLite query `select` into PostgreSQL statement
 * `insert`, column i as parameter i + 1 (reals with every digit). 0 or
 * -1. */
static int pgc_copy_rows(sqlite3 *db, PGconn *c, const char *select, const char *insert)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, select, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "pg_copy: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    int n = sqlite3_column_count(s), rc = 0;
    char **vals = calloc((size_t)n, sizeof *vals);
    while (rc == 0 && sqlite3_step(s) == SQLITE_ROW) {
        for (int i = 0; i < n; i++) {
            free(vals[i]);
            vals[i] = NULL;
            int type = sqlite3_column_type(s, i);
            char num[64];
            if (type == SQLITE_NULL)
                continue;
            if (type == SQLITE_FLOAT)
                snprintf(num, sizeof num, "%.17g", sqlite3_column_double(s, i));
            else if (type == SQLITE_INTEGER)
                snprintf(num, sizeof num, "%lld", (long long)sqlite3_column_int64(s, i));
            /* an empty text or blob is a NULL pointer of 0 bytes */
            const char *bytes = (const char *)sqlite3_column_blob(s, i);
            vals[i] = type == SQLITE_FLOAT || type == SQLITE_INTEGER ? strdup(num)
                      : bytes ? strndup(bytes, (size_t)sqlite3_column_bytes(s, i))
                              : strdup("");
        }
        rc = pgc_exec(c, insert, n, (const char *const *)vals);
    }
    for (int i = 0; i < n; i++)
        free(vals[i]);
    free(vals);
    sqlite3_finalize(s);
    return rc;
}

/* The attempts' columns, as SQLite has them and the staging table takes
 * them. */
#define PGC_ATTEMPT_COLUMNS                                                                        \
    "run_id, task, attempt, endpoint, tier, model, input_tokens, output_tokens, cached_tokens,"    \
    " usage_estimated, cost_usd, latency_ms, outcome, error, at, month, day, task_type, ttft_ms,"  \
    " user_name, host, complexity, score"

/* Copies the ledger of the SQLite database `path` into `c` (schema
 * applied first), in one transaction. 0 or -1. */
static int pgc_copy(const char *path, PGconn *c)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "pg_copy: cannot open %s\n", path);
        sqlite3_close(db);
        return -1;
    }
    int rc = pgc_apply_schema(c);
    if (rc == 0)
        rc = pgc_exec(c, "BEGIN", 0, NULL);
    if (rc == 0)
        rc = pgc_copy_rows(
            db, c,
            "SELECT id, workflow, wf_path, started_at, ended_at, status, exit_code, cost_usd,"
            " coalesce(user_name, ''), coalesce(host, ''), pid FROM runs ORDER BY rowid",
            "INSERT INTO runs (id, workflow, wf_path, started_at, ended_at, status, exit_code,"
            " cost_usd, user_name, host, pid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
            " $11)");
    /* The attempts in the order SQLite settled them (a settle sets `at`),
     * each booked in flight and then settled, as a run does. */
    if (rc == 0)
        rc = pgc_exec(c,
                      "CREATE TEMP TABLE copy_attempts (ord bigint GENERATED ALWAYS AS IDENTITY,"
                      " run_id text, task text, attempt integer, endpoint text, tier text,"
                      " model text, input_tokens bigint, output_tokens bigint,"
                      " cached_tokens bigint, usage_estimated integer, cost_usd float8,"
                      " latency_ms float8, outcome text, error text, at float8, month text,"
                      " day text, task_type text, ttft_ms float8, user_name text, host text,"
                      " complexity float8, score float8) ON COMMIT DROP",
                      0, NULL);
    if (rc == 0)
        rc = pgc_copy_rows(db, c,
                           "SELECT run_id, task, attempt, endpoint, tier, model, input_tokens,"
                           " output_tokens, cached_tokens, usage_estimated, cost_usd, latency_ms,"
                           " outcome, error, at, month, coalesce(day, month || '-01'), task_type,"
                           " ttft_ms, coalesce(user_name, ''), coalesce(host, ''), complexity,"
                           " score FROM attempts ORDER BY at, id",
                           "INSERT INTO copy_attempts (" PGC_ATTEMPT_COLUMNS ") VALUES ($1, $2,"
                           " $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
                           " $18, $19, $20, $21, $22, $23)");
    if (rc == 0)
        rc = pgc_exec(c,
                      "DO $$ DECLARE a record; BEGIN"
                      /* a tool loop's turns: the rows of one attempt, in order */
                      " FOR a IN SELECT *, (row_number() OVER (PARTITION BY run_id, task,"
                      "   attempt ORDER BY ord) - 1)::integer AS turn FROM copy_attempts"
                      "   ORDER BY ord LOOP"
                      "  INSERT INTO attempts (run_id, task, attempt, turn, endpoint, tier, model,"
                      "   cost_usd, outcome, at, month, day, task_type, user_name, host,"
                      "   complexity) VALUES (a.run_id, a.task, a.attempt, a.turn, a.endpoint,"
                      "   a.tier,"
                      "   a.model, a.cost_usd, 'pending', a.at, a.month, a.day, a.task_type,"
                      "   a.user_name, a.host, a.complexity);"
                      "  UPDATE attempts SET input_tokens = a.input_tokens,"
                      "   output_tokens = a.output_tokens, cached_tokens = a.cached_tokens,"
                      "   usage_estimated = a.usage_estimated <> 0, latency_ms = a.latency_ms,"
                      "   outcome = a.outcome, error = a.error, ttft_ms = a.ttft_ms,"
                      "   score = a.score WHERE run_id = a.run_id AND task = a.task"
                      "   AND attempt = a.attempt AND turn = a.turn AND a.outcome <> 'pending';"
                      " END LOOP; END $$",
                      0, NULL);
    if (rc == 0)
        rc = pgc_copy_rows(db, c,
                           "SELECT workflow, task, output_hash, state, run_id, output_path,"
                           " asked_at, decided_by, decided_at, note FROM approvals",
                           "INSERT INTO approvals VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,"
                           " $10)");
    if (rc == 0)
        rc = pgc_copy_rows(db, c,
                           "SELECT run_id, summary, stored_at, CAST(json AS TEXT) FROM reports",
                           "INSERT INTO reports VALUES ($1, $2, $3, $4)");
    if (rc == 0)
        rc = pgc_exec(c, "COMMIT", 0, NULL);
    else
        pgc_exec(c, "ROLLBACK", 0, NULL);
    sqlite3_close(db);
    return rc;
}
