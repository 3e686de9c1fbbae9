/* Counts fsync and fdatasync calls by thread, for tests/e2e/store_checkpoints.sh:
 * preloaded (LD_PRELOAD) into flowrun, it passes every call on and, at exit,
 * writes to $FSYNC_PROBE_OUT two lines, "main N" (calls made by the main
 * thread, which runs the loop) and "other N" (every other thread: libuv's
 * pool), then one line "main_file N PATH" for each file the main thread
 * synced, so that a failing test says what was synced. Built without
 * sanitizers: it only counts. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_long on_main, on_other;

/* The files the main thread synced; only that thread writes the table. */
enum { FILES = 16 };
static struct {
    char path[PATH_MAX];
    long n;
} files[FILES];
static int n_files;

static void note_file(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    if (len < 0)
        len = 0;
    path[len] = '\0';
    for (int i = 0; i < n_files; i++)
        if (strcmp(files[i].path, path) == 0) {
            files[i].n++;
            return;
        }
    if (n_files < FILES) {
        memcpy(files[n_files].path, path, (size_t)len + 1);
        files[n_files++].n = 1;
    }
}

static void count(int fd)
{
    if ((pid_t)syscall(SYS_gettid) == getpid()) {
        atomic_fetch_add(&on_main, 1);
        note_file(fd);
    } else {
        atomic_fetch_add(&on_other, 1);
    }
}

int fsync(int fd)
{
    static int (*real)(int);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fsync"); /* POSIX's way to a function */
    count(fd);
    return real(fd);
}

int fdatasync(int fd)
{
    static int (*real)(int);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    count(fd);
    return real(fd);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("FSYNC_PROBE_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f)
        return;
    fprintf(f, "main %ld\nother %ld\n", atomic_load(&on_main), atomic_load(&on_other));
    for (int i = 0; i < n_files; i++)
        fprintf(f, "main_file %ld %s\n", files[i].n, files[i].path);
    fclose(f);
}
