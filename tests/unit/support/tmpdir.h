#pragma once
/* Shared by the unit tests that work in a fresh temporary directory
 * (store_fixture.h's tests, test_fs, test_watch, test_cmdtool, test_mcpd,
 * test_mcpd_http, test_output, test_standin): removing it with everything
 * under it at the end, without a shell. Header-only: each test executable
 * is one translation unit. */

#include <dirent.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Removes `path` (borrowed) and everything under it; symlinks are removed,
 * never followed, and a directory without write permission is made
 * writable first. Returns true when nothing is left at `path` (it may not
 * have existed). Not inline: inlined, it draws a -Wformat-truncation
 * warning from gcc. */
static bool tmpdir_remove(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return true;
    if (S_ISDIR(sb.st_mode)) {
        chmod(path, 0700);
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char sub[PATH_MAX];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            tmpdir_remove(sub);
        }
        if (d)
            closedir(d);
    }
    remove(path);
    return lstat(path, &sb) != 0;
}
