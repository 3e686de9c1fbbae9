#include "engine/util/fs.h"

#include "engine/util/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Creates a directory and its parents; see fs.h. */
int fr_mkdir_p(const char *dir, mode_t mode, fr_error *err)
{
    if (!dir || !*dir)
        return fr_error_set(err, FR_EINVAL, "", 0, "no directory name");
    char *p = fr_xstrdup(dir);
    int rc = FR_OK, saved = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            saved = errno;
            rc = fr_error_set(err, FR_EIO, p, 0, "cannot create directory: %s", strerror(saved));
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (saved)
        errno = saved; /* as documented: the caller may word its own message */
    return rc;
}
