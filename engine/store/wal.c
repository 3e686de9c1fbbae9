/* The write-ahead log's checkpoints, apart from the connection that writes:
 * that connection's commits only count the log's frames, and a second
 * connection copies them into the database, on whatever thread its owner
 * runs it. Declared in store.h. */

#include "engine/store/store_int.h"

#include "engine/util/mem.h"

#include <stdlib.h>

struct fr_store_ckpt {
    sqlite3 *db;
    char *path;             /* owned: named in its errors */
    unsigned long fork_gen; /* of the process that opened it (fr_store_fork_gen) */
};

/* After each commit of the writing connection: the frames the log holds.
 * Returning SQLITE_OK without checkpointing is what leaves the checkpoint
 * to fr_store_ckpt_run. */
static int on_wal_commit(void *ud, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((fr_store *)ud)->wal_frames = frames;
    return SQLITE_OK;
}

/* Leaves the checkpoints to a fr_store_ckpt; see store.h. */
void fr_store_checkpoint_apart(fr_store *st)
{
    if (!st->db || st->wal_frames >= 0)
        return;
    st->wal_frames = 0;
    sqlite3_wal_hook(st->db, on_wal_commit, st); /* replaces the automatic checkpoint */
}

/* The log's frames after the last commit; see store.h. */
long fr_store_wal_frames(const fr_store *st)
{
    return st->wal_frames;
}

/* Sets `err` from c's connection. */
static int ckpt_error(const fr_store_ckpt *c, fr_error *err, const char *what)
{
    return fr_error_set(err, FR_ESTORE, c->path, 0, "%s: %s", what,
                        c->db ? sqlite3_errmsg(c->db) : "out of memory");
}

/* Opens the second connection; see store.h. */
int fr_store_ckpt_open(const fr_store *st, fr_store_ckpt **out, fr_error *err)
{
    *out = NULL;
    if (!st->db || sqlite3_db_readonly(st->db, "main") != 0)
        return fr_error_set(err, FR_EINVAL, st->path, 0,
                            "no checkpoints for a state store that is not written here");
    fr_store_ckpt *c = fr_xcalloc(1, sizeof *c);
    c->path = fr_xstrdup(st->path);
    c->fork_gen = fr_store_fork_gen();
    int rc = FR_OK;
    /* The file exists and is in WAL mode (the writing connection made it so):
     * no creating, and nothing to set up but how it syncs. */
    if (sqlite3_open_v2(c->path, &c->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK) {
        rc = ckpt_error(c, err, "cannot open the state database for its checkpoints");
        goto cleanup;
    }
    sqlite3_wal_autocheckpoint(c->db, 0); /* it writes nothing, but say so */
    *out = c;
    c = NULL;
cleanup:
    fr_store_ckpt_close(c);
    return rc;
}

/* Passive checkpoints of `db` until the log is all copied or `passes`
 * ran: the SQLite result of the last, and the log's frames and those
 * copied into `*log`, `*done`. SQLITE_BUSY: another connection
 * checkpoints at this moment (the pool's, or a second flowrun's on the
 * same store); what it copies is copied. */
static int passive(sqlite3 *db, int passes, long *log, long *done)
{
    int src = SQLITE_OK;
    *log = *done = 0;
    for (int i = 0; i < passes; i++) {
        int nlog = 0, nckpt = 0;
        src = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt);
        if (src != SQLITE_OK)
            break;
        *log = nlog > 0 ? nlog : 0;
        *done = nckpt > 0 ? nckpt : 0;
        if (*done >= *log)
            break;
    }
    return src;
}

/* Checkpoints on the store's own connection; see store.h. */
int fr_store_checkpoint(fr_store *st, long *log, long *done, fr_error *err)
{
    *log = *done = 0;
    if (!st->db)
        return FR_OK;
    int src = passive(st->db, 1, log, done);
    if (src != SQLITE_OK && src != SQLITE_BUSY)
        return fr_store_db_error(st, err, "cannot checkpoint the state database");
    return FR_OK;
}

/* Passive checkpoints on the checkpointer's connection; see store.h. */
int fr_store_ckpt_run(fr_store_ckpt *c, int passes, long *log, long *done, fr_error *err)
{
    int src = passive(c->db, passes, log, done);
    if (src != SQLITE_OK && src != SQLITE_BUSY)
        return ckpt_error(c, err, "cannot checkpoint the state database");
    return FR_OK;
}

/* Closes the checkpointer; see store.h. */
void fr_store_ckpt_close(fr_store_ckpt *c)
{
    if (!c)
        return;
    if (fr_store_fork_gen() == c->fork_gen) /* in a forked child, as fr_store_close */
        sqlite3_close(c->db);
    free(c->path);
    free(c);
}
