#pragma once
/* Shared by the unit tests that check the process table (test_proc,
 * test_cmdtool): no child outlives what started it. Counts the processes
 * whose /proc/PID/<file> passes a test. Header-only, as loop_harness.h:
 * each test executable is one translation unit; include it after cmocka.h. */

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether one process's file (`len` bytes at `text`, NUL-terminated, the
 * caller's to change) is one to count; `ud` is the caller's. */
typedef bool (*proc_match_fn)(char *text, size_t len, void *ud);

/* Returns how many processes have a /proc/PID/`file` (its first 4 KiB)
 * that `match` takes. A process that ends while it is read is not counted. */
static inline int proc_count(const char *file, proc_match_fn match, void *ud)
{
    int n = 0;
    DIR *d = opendir("/proc");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], text[4096];
        if (strtol(e->d_name, NULL, 10) <= 0)
            continue;
        snprintf(path, sizeof path, "/proc/%s/%s", e->d_name, file);
        FILE *fp = fopen(path, "r");
        if (!fp)
            continue;
        size_t len = fread(text, 1, sizeof text - 1, fp);
        fclose(fp);
        text[len] = '\0';
        if (match(text, len, ud))
            n++;
    }
    closedir(d);
    return n;
}
