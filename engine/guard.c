/* The guard (engine/guard.h): a small blocking program, poll on a signalfd
 * and the watch pipe, fork the command into its own group, end that group
 * when told to or when the parent is gone. */
#define _GNU_SOURCE
#include "engine/guard.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends `sig` to every other process of the guard's group and to its
 * children that left the group (the guard is their subreaper). Returns
 * false when /proc cannot be read. */
static bool signal_members(int sig)
{
    pid_t self = getpid();
    DIR *d = opendir("/proc");
    if (!d)
        return false;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], line[1024];
        long pid = strtol(e->d_name, NULL, 10);
        if (pid <= 0 || pid == self)
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        const char *rest = strrchr(line, ')'); /* the name may hold anything but not after ')' */
        char state;
        long ppid, pgrp;
        if (rest && sscanf(rest + 1, " %c %ld %ld", &state, &ppid, &pgrp) == 3 &&
            (pgrp == self || ppid == self))
            kill((pid_t)pid, sig);
    }
    closedir(d);
    return true;
}

/* Kills everything the guard watches over, the guard spared. SIGKILL to
 * the group would take the guard too, so the members are signalled one by
 * one: all of them stopped first, then killed, so that none runs between
 * two kills (a parent that sees its child die and exits 0, a watcher that
 * writes a file). Neither signal can be blocked or caught. */
static void kill_all(void)
{
    if (!signal_members(SIGSTOP) || !signal_members(SIGKILL))
        kill(-getpid(), SIGKILL); /* no /proc: the guard goes down with its group */
}

/* The guard's exit: the command's status, its signal raised again so that
 * flowrun sees the same death (no core from the guard), or 128+signal. */
static int guard_exit(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    int sig = WTERMSIG(status);
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    return 128 + sig;
}

/* Starts the command in the guard's group. Returns its pid, or -1 with
 * *exec_errno set when it could not be run. */
static pid_t start_command(char **cmd, int *exec_errno)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) != 0) {
        *exec_errno = errno;
        return -1;
    }
    pid_t child = fork();
    if (child == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int s = 1; s < NSIG; s++)
            signal(s, SIG_DFL);
        execvp(cmd[0], cmd);
        int e = errno;
        ssize_t w = write(ep[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(ep[1]);
    if (child < 0) {
        *exec_errno = errno;
        close(ep[0]);
        return -1;
    }
    int e = 0;
    ssize_t r;
    do
        r = read(ep[0], &e, sizeof e); /* EOF: the exec closed the pipe */
    while (r < 0 && errno == EINTR);
    close(ep[0]);
    if (r == (ssize_t)sizeof e) {
        *exec_errno = e;
        waitpid(child, NULL, 0);
        return -1;
    }
    return child;
}

int fr_guard_main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "flowrun: %s is internal: %s PID -- COMMAND [ARG...]\n", FR_GUARD_ARG,
                FR_GUARD_ARG);
        return 2;
    }
    pid_t parent = (pid_t)strtol(argv[2], NULL, 10);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    /* From here a parent's death is a SIGTERM read below; one that came
     * before is seen as a new parent. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        return 128 + SIGTERM;
    if (getpgrp() != getpid() && setsid() < 0)
        setpgid(0, 0);
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    const char *g = getenv(FR_GUARD_GRACE_ENV);
    long long grace_ms = g ? strtoll(g, NULL, 10) : 0;
    if (grace_ms <= 0)
        grace_ms = 2000;
    unsetenv(FR_GUARD_GRACE_ENV);
    /* The watch pipe first: the signalfd could take descriptor 3 otherwise. */
    struct stat wst;
    int watch =
        fstat(FR_GUARD_WATCH_FD, &wst) == 0 && S_ISFIFO(wst.st_mode) ? FR_GUARD_WATCH_FD : -1;
    if (watch >= 0)
        fcntl(watch, F_SETFD, FD_CLOEXEC);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

    int exec_errno = 0;
    pid_t child = start_command(argv + 4, &exec_errno);
    if (child < 0) {
        fprintf(stderr, FR_GUARD_EXEC_FAILED "'%s': %s\n", argv[4], strerror(exec_errno));
        return 127;
    }
    int status = 0;
    bool stopping = false, killed = false;
    long long deadline = 0;
    for (;;) {
        int st;
        pid_t w;
        while ((w = waitpid(-1, &st, WNOHANG)) > 0)
            if (w == child) {
                status = st;
                child = 0;
            }
        if (w < 0 && errno == ECHILD)
            break;              /* the command and everything it started are gone */
        bool stop = child == 0; /* what the command left behind goes with it */
        struct pollfd pf[2] = {{sfd, POLLIN, 0}, {watch, POLLIN, 0}};
        int timeout = -1;
        if (stopping)
            timeout = killed ? 50 : (int)(deadline > now_ms() ? deadline - now_ms() : 0);
        else if (stop)
            timeout = 0;
        if (poll(pf, 2, timeout) > 0) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                if (si.ssi_signo != SIGCHLD)
                    stop = true;
            if (pf[1].revents) {
                char buf[256];
                ssize_t n = read(watch, buf, sizeof buf);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                    stop = true; /* flowrun is gone */
                    watch = -1;
                }
            }
        }
        if (stop && !stopping) {
            stopping = true;
            deadline = now_ms() + grace_ms;
            kill(-getpid(), SIGTERM); /* the guard's own copy is blocked, read above */
        }
        if (stopping && now_ms() >= deadline) {
            killed = true;
            kill_all();
        }
    }
    return guard_exit(status);
}
