/* A past run as the ledger has it, task by task (store.h,
 * fr_store_run_tasks): its row in `runs` and its attempts in order. Reads
 * only; works on a store opened read-only. Its statements are prepared per
 * call: it runs once per command, never on a run's path. */

#include "engine/store/pgread.h"
#include "engine/store/store_int.h"

#include <stdlib.h>
#include <string.h>

static const char run_by_id[] = "SELECT id, workflow, status, cost_usd FROM runs WHERE id = ?1";
static const char run_last[] =
    "SELECT id, workflow, status, cost_usd FROM runs WHERE workflow = ?1 "
    "ORDER BY started_at DESC, rowid DESC LIMIT 1";
static const char run_attempts[] = "SELECT task, endpoint, outcome, cost_usd FROM attempts "
                                   "WHERE run_id = ?1 ORDER BY id";

static const char *column(sqlite3_stmt *s, int i)
{
    const unsigned char *v = sqlite3_column_text(s, i);
    return v ? (const char *)v : "";
}

/* A new document of a run; see store_int.h. */
json_t *fr_store_run_doc_new(const char *run_id, const char *workflow, const char *status,
                             double cost_usd)
{
    return json_pack("{s:s,s:s,s:s,s:f,s:{}}", "run", run_id, "workflow", workflow, "status",
                     status, "cost_usd", cost_usd, "tasks");
}

/* Adds one attempt of the run; see store_int.h. */
void fr_store_run_doc_add(json_t *doc, const char *task, const char *endpoint, const char *outcome,
                          double cost_usd)
{
    json_t *tasks = json_object_get(doc, "tasks");
    json_t *t = json_object_get(tasks, task);
    if (!t) {
        t = json_pack("{s:I,s:f}", "attempts", (json_int_t)0, "cost_usd", 0.0);
        json_object_set_new(tasks, task, t);
    }
    json_object_set_new(t, "endpoint", json_string(endpoint));
    json_object_set_new(t, "outcome", json_string(outcome));
    json_object_set_new(t, "attempts",
                        json_integer(json_integer_value(json_object_get(t, "attempts")) + 1));
    json_object_set_new(t, "cost_usd",
                        json_real(json_number_value(json_object_get(t, "cost_usd")) + cost_usd));
}

int fr_store_run_tasks(fr_store *st, const char *workflow, const char *run_id, json_t **out,
                       fr_error *err)
{
    sqlite3_stmt *s = NULL;
    json_t *doc = NULL;
    *out = NULL;
    bool last = !run_id || strcmp(run_id, "last") == 0;
    int rc = fr_store_check_readable(st, err);
    if (rc == FR_OK && last && !workflow)
        rc = fr_error_set(err, FR_EINVAL, st->path, 0, "no workflow for the last run");
    if (rc != FR_OK)
        goto cleanup;
    if (st->pg) {
        rc = fr_pgread_run_tasks(st->pg, workflow, run_id, out, err);
        goto cleanup;
    }
    if (sqlite3_prepare_v2(st->db, last ? run_last : run_by_id, -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot read the runs");
        goto cleanup;
    }
    fr_store_bind_text(s, 1, last ? workflow : run_id);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        rc = last ? fr_error_set(err, FR_ENOENT, st->path, 0,
                                 "no run of workflow '%s' is recorded in this state directory",
                                 workflow)
                  : fr_error_set(err, FR_ENOENT, st->path, 0,
                                 "no run '%s' is recorded in this state directory", run_id);
        goto cleanup;
    }
    if (step != SQLITE_ROW) {
        rc = fr_store_db_error(st, err, "cannot read the runs");
        goto cleanup;
    }
    doc =
        fr_store_run_doc_new(column(s, 0), column(s, 1), column(s, 2), sqlite3_column_double(s, 3));
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(st->db, run_attempts, -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot read the run's attempts");
        goto cleanup;
    }
    fr_store_bind_text(s, 1, json_string_value(json_object_get(doc, "run")));
    while ((step = sqlite3_step(s)) == SQLITE_ROW)
        fr_store_run_doc_add(doc, column(s, 0), column(s, 1), column(s, 2),
                             sqlite3_column_double(s, 3));
    if (step != SQLITE_DONE) {
        rc = fr_store_db_error(st, err, "cannot read the run's attempts");
        goto cleanup;
    }
    *out = doc;
    doc = NULL;
cleanup:
    sqlite3_finalize(s);
    json_decref(doc);
    return rc;
}
