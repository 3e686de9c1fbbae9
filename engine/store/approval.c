/* The approvals table: the latest checkpoint of each approval task, its
 * output's hash, who decided and why. A statement is prepared per call: a
 * checkpoint is asked or decided a few times per run at most. */

#include "engine/store/pgread.h"
#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

/* Frees a row's strings; see store.h. */
void fr_store_approval_clear(fr_store_approval *a)
{
    if (!a)
        return;
    free(a->workflow);
    free(a->task);
    free(a->output_hash);
    free(a->state);
    free(a->run_id);
    free(a->output_path);
    free(a->by);
    free(a->note);
    memset(a, 0, sizeof *a);
}

static bool is_decision(const char *state)
{
    return state && (strcmp(state, "approved") == 0 || strcmp(state, "rejected") == 0);
}

/* Writes a row; see store.h. */
int fr_store_approval_put(fr_store *st, const fr_store_approval *a, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!a || !a->workflow || !a->task || !a->output_hash ||
        !(is_decision(a->state) || (a->state && strcmp(a->state, "pending") == 0)))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "an approval needs a workflow, a task, an output hash and a state");
    if (sqlite3_prepare_v2(st->db,
                           "INSERT OR REPLACE INTO approvals (workflow, task, output_hash, state, "
                           "run_id, output_path, asked_at, decided_by, decided_at, note) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot write the approval");
        goto cleanup;
    }
    double now = fr_store_now(st);
    fr_store_bind_text(s, 1, a->workflow);
    fr_store_bind_text(s, 2, a->task);
    fr_store_bind_text(s, 3, a->output_hash);
    fr_store_bind_text(s, 4, a->state);
    fr_store_bind_text(s, 5, a->run_id);
    fr_store_bind_text(s, 6, a->output_path);
    sqlite3_bind_double(s, 7, a->asked_at > 0 ? a->asked_at : now);
    fr_store_bind_text(s, 8, a->by);
    if (is_decision(a->state))
        sqlite3_bind_double(s, 9, a->decided_at > 0 ? a->decided_at : now);
    else
        sqlite3_bind_null(s, 9);
    fr_store_bind_text(s, 10, a->note);
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot write the approval");
cleanup:
    sqlite3_finalize(s);
    return rc;
}

static char *column_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? fr_xstrdup((const char *)t) : NULL;
}

/* Reads a row; see store.h. */
int fr_store_approval_get(fr_store *st, const char *workflow, const char *task,
                          fr_store_approval *out, bool *found, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    memset(out, 0, sizeof *out);
    *found = false;
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT workflow, task, output_hash, state, run_id, output_path, "
                           "asked_at, decided_by, decided_at, note FROM approvals "
                           "WHERE workflow = ? AND task = ?",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot read the approvals");
        goto cleanup;
    }
    fr_store_bind_text(s, 1, workflow);
    fr_store_bind_text(s, 2, task);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE)
        goto cleanup;
    if (step != SQLITE_ROW) {
        rc = fr_store_db_error(st, err, "cannot read the approvals");
        goto cleanup;
    }
    out->workflow = column_dup(s, 0);
    out->task = column_dup(s, 1);
    out->output_hash = column_dup(s, 2);
    out->state = column_dup(s, 3);
    out->run_id = column_dup(s, 4);
    out->output_path = column_dup(s, 5);
    out->asked_at = sqlite3_column_double(s, 6);
    out->by = column_dup(s, 7);
    out->decided_at = sqlite3_column_double(s, 8);
    out->note = column_dup(s, 9);
    *found = true;
cleanup:
    sqlite3_finalize(s);
    return rc;
}

/* Records a decision; see store.h. */
int fr_store_approval_decide(fr_store *st, const char *workflow, const char *task,
                             const char *state, const char *by, const char *note, fr_error *err)
{
    sqlite3_stmt *s = NULL;
    int rc = fr_store_check_readable(st, err);
    if (rc != FR_OK)
        return rc;
    if (!workflow || !task || !is_decision(state))
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "a decision is 'approved' or 'rejected', for a workflow and a task");
    if (st->pg)
        return fr_pgread_approval_decide(st->pg, workflow, task, state, by, note, fr_store_now(st),
                                         err);
    if (sqlite3_prepare_v2(st->db,
                           "UPDATE approvals SET state = ?, decided_by = ?, decided_at = ?, "
                           "note = ? WHERE workflow = ? AND task = ?",
                           -1, &s, NULL) != SQLITE_OK) {
        rc = fr_store_db_error(st, err, "cannot write the approval");
        goto cleanup;
    }
    fr_store_bind_text(s, 1, state);
    fr_store_bind_text(s, 2, by);
    sqlite3_bind_double(s, 3, fr_store_now(st));
    fr_store_bind_text(s, 4, note);
    fr_store_bind_text(s, 5, workflow);
    fr_store_bind_text(s, 6, task);
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot write the approval");
    else if (sqlite3_changes(st->db) == 0)
        rc = fr_error_set(err, FR_ENOENT, st->path, 0,
                          "no approval of task '%s' of workflow '%s' was ever asked", task,
                          workflow);
cleanup:
    sqlite3_finalize(s);
    return rc;
}
