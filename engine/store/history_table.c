/* The routing history's rows (schema 9: routing_history and routing_bins,
 * kept by triggers on attempts, see open.c) read for a run's start and for
 * `flowrun stats --routing`. */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <jansson.h>
#include <stdlib.h>

/* Reads the routing history; see store.h. */
int fr_store_history(fr_store *st, const char *const *endpoints, size_t n,
                     void (*each)(void *ud, const fr_store_history_row *row), void *ud,
                     fr_error *err)
{
    int rc = fr_store_check_usable(st, err);
    if (rc != FR_OK)
        return rc;
    char *names = NULL;
    if (endpoints) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, json_string(endpoints[i]));
        names = json_dumps(a, JSON_COMPACT);
        json_decref(a);
    }
    sqlite3_stmt *s = st->stmt[S_HISTORY];
    fr_store_bind_text(s, 1, names);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        fr_store_history_row r = {
            .endpoint = (const char *)sqlite3_column_text(s, 0),
            .type = (const char *)sqlite3_column_text(s, 1),
            .band = sqlite3_column_int(s, 2),
            .metric = sqlite3_column_int(s, 3),
            .bin = sqlite3_column_int(s, 4),
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
        if (r.metric >= 0) {
            r.n = r.settled; /* a bin's count is in the settled column */
            r.settled = 0;
        }
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
