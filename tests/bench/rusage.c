/* Runs a command and writes its CPU time and peak RSS, for the benchmarks
 * in tests/bench (peer.sh compiles it with cc; GNU time is not installed
 * everywhere). A process started straight from the Python runner would
 * report the runner's RSS as its own peak (Linux keeps the high-water mark
 * of the memory an exec replaces), so the command is forked from this small
 * program instead. The command dies with it (PR_SET_PDEATHSIG).
 *
 *   rusage OUT COMMAND [ARGS...]
 *
 * OUT gets one line: "USER_S SYS_S MAXRSS_KB". The exit code is the
 * command's, 128 + the signal when a signal ended it, 127 when it could not
 * be started. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fputs("usage: rusage OUT COMMAND [ARGS...]\n", stderr);
        return 2;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("rusage: fork");
        return 127;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execvp(argv[2], argv + 2);
        perror("rusage: exec");
        _exit(127);
    }
    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0)
        if (errno != EINTR) {
            perror("rusage: wait4");
            return 127;
        }
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror("rusage: writing the figures");
        return 127;
    }
    fprintf(f, "%.6f %.6f %ld\n", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, ru.ru_maxrss);
    fclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
