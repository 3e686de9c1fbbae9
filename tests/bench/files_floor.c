/* The least CPU a run's output files can cost, for tests/bench/peer.sh
 * (which compiles it with cc): creates N files in a new folder DIR the way
 * flowrun writes a task's output (open with O_CREAT | O_TRUNC, one write,
 * close; named "n<i>.txt", holding "out-n<i>" as the peer's replies do) and
 * prints the CPU that took, user and system, with nothing else in the
 * process: no HTTP, no state store, no scheduling.
 *
 *   files_floor DIR N
 *
 * Prints one line: "USER_S SYS_S". The files are left in DIR: deleting
 * thousands of files makes the next ones created on ext4 cost far more
 * (see peer_run.py), so the caller removes them when it has measured all. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc != 3 || atol(argv[2]) <= 0) {
        fputs("usage: files_floor DIR N\n", stderr);
        return 2;
    }
    long n = atol(argv[2]);
    if (mkdir(argv[1], 0755) != 0) {
        fprintf(stderr, "files_floor: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    for (long i = 0; i < n; i++) {
        char path[4096], text[32];
        snprintf(path, sizeof path, "%s/n%ld.txt", argv[1], i);
        int len = snprintf(text, sizeof text, "out-n%ld", i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, text, (size_t)len) != len || close(fd) != 0) {
            fprintf(stderr, "files_floor: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    getrusage(RUSAGE_SELF, &after);
    printf("%.6f %.6f\n", seconds(after.ru_utime) - seconds(before.ru_utime),
           seconds(after.ru_stime) - seconds(before.ru_stime));
    return 0;
}
