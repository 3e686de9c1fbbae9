/* The marker beside the state database, "<path>.id": written once the
 * schema is committed, it says a ledger lived here, so an emptied,
 * truncated or deleted database is refused instead of silently starting a
 * new one (and with it a monthly cap that forgot what was spent). Used by
 * open.c. */

#include "engine/store/store_int.h"
#include "engine/util/mem.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Returns the marker's path for the database at `path` (owned). */
static char *marker_path(const char *path)
{
    return fr_xasprintf("%s.id", path);
}

/* True when the marker of the database at `path` exists. Looked at before
 * the database is read: a marker is written only after its schema was
 * committed, so a store opened at the same moment by another process is
 * never mistaken for an emptied one. See store_int.h. */
bool fr_store_has_marker(const char *path)
{
    char *marker = marker_path(path);
    struct stat sb;
    bool found = stat(marker, &sb) == 0;
    free(marker);
    return found;
}

/* FR_ESTORE for the database at `path`, missing or without flowrun's
 * schema while its marker says a store existed: what happened, and how to
 * start over on purpose. See store_int.h. */
int fr_store_marker_refusal(const char *path, fr_error *err)
{
    char *marker = marker_path(path);
    char created[64] = "";
    FILE *f = fopen(marker, "r");
    if (f) {
        char line[128];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "created ", 8) == 0)
                snprintf(created, sizeof created, " on %.*s", (int)strcspn(line + 8, "\n"),
                         line + 8);
        fclose(f);
    }
    struct stat sb;
    bool missing = stat(path, &sb) != 0;
    int rc = fr_error_set(err, FR_ESTORE, path, 0,
                          "the state database is %s, but a state store was created here%s (%s): "
                          "its ledger, and with it the monthly cap's memory of what was spent, "
                          "is gone. Restore the database from a backup; or, to start a new "
                          "ledger on purpose, remove %s (or the whole state folder)",
                          missing           ? "missing"
                          : sb.st_size == 0 ? "empty (0 bytes)"
                                            : "empty",
                          created, marker, marker);
    free(marker);
    return rc;
}

/* Writes the marker when there is none. A store whose marker cannot be
 * written still works (it is only less protected), so this cannot fail.
 * See store_int.h. */
void fr_store_write_marker(const fr_store *st)
{
    char *marker = marker_path(st->path);
    int fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char stamp[32] = "";
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
        char text[256];
        int n = snprintf(text, sizeof text,
                         "flowrun state store: %s exists while this file does.\n"
                         "created %s\n",
                         strrchr(st->path, '/') ? strrchr(st->path, '/') + 1 : st->path, stamp);
        if (n > 0 && write(fd, text, (size_t)n) != n) {
            /* A short marker still marks: its existence is what counts. */
        }
        close(fd);
    }
    free(marker);
}
