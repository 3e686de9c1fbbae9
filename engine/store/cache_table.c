/* The result cache's table: a reply stored under the key engine/cache
 * computes, read back as a reply. Both statements are prepared once, at
 * open; a put joins the loop turn's batch (fr_store_batch). */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <stdlib.h>
#include <string.h>

/* Looks up a cached result; see store.h. */
int fr_store_cache_get(fr_store *st, const char *key, fr_reply *out, bool *hit, fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_CACHE_GET];
    int rc = FR_OK;
    *hit = false;
    memset(out, 0, sizeof *out);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE)
        goto cleanup;
    if (step != SQLITE_ROW) {
        rc = fr_store_db_error(st, err, "cannot read the result cache");
        goto cleanup;
    }
    const char *text = (const char *)sqlite3_column_text(s, 1);
    size_t text_len = (size_t)sqlite3_column_bytes(s, 1);
    const char *json = (const char *)sqlite3_column_text(s, 2);
    const char *model = (const char *)sqlite3_column_text(s, 0);
    size_t model_len = (size_t)sqlite3_column_bytes(s, 0);
    json_t *parsed = NULL;
    /* A damaged entry is a miss, never an error: the request is sent again.
     * Damaged is text flowrun could not carry (invalid UTF-8, a NUL byte: a
     * put never stores such text), JSON that does not parse, or usage that
     * is not a count. */
    if (!text || fr_utf8_text(text, text_len, NULL) ||
        (model && fr_utf8_text(model, model_len, NULL)) || sqlite3_column_int64(s, 3) < 0 ||
        sqlite3_column_int64(s, 4) < 0 || sqlite3_column_int64(s, 5) < 0 ||
        (json && !(parsed = json_loads(json, JSON_DECODE_ANY, NULL))))
        goto cleanup;
    out->text = fr_xstrdup(text);
    out->json = parsed;
    out->model = model ? fr_xstrdup(model) : NULL;
    out->finish_reason = fr_xstrdup("cached");
    out->finish = FR_FINISH_STOP; /* only answers are cached */
    out->usage.input = sqlite3_column_int64(s, 3);
    out->usage.output = sqlite3_column_int64(s, 4);
    out->usage.cached = sqlite3_column_int64(s, 5);
    *hit = true;
cleanup:
    fr_store_done(s);
    return rc;
}

/* Stores a result; see store.h. */
int fr_store_cache_put(fr_store *st, const char *key, const char *endpoint, const fr_reply *r,
                       fr_error *err)
{
    sqlite3_stmt *s = st->stmt[S_CACHE_PUT];
    char *json = NULL;
    int rc = fr_store_batch_join(st, err);
    if (rc != FR_OK)
        return rc;
    json = r->json ? json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, r->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, r->text ? r->text : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 6, r->usage.input);
    sqlite3_bind_int64(s, 7, r->usage.output);
    sqlite3_bind_int64(s, 8, r->usage.cached);
    sqlite3_bind_double(s, 9, (double)time(NULL));
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = fr_store_db_error(st, err, "cannot write the result cache");
    fr_store_done(s);
    free(json);
    return rc;
}
