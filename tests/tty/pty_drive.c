/* A test helper: runs a command on a real pseudo-terminal (its standard
 * input and standard error; standard output may go to a file) and plays a
 * script against it: wait for a text to appear on the terminal, then type
 * something. Used by tests/e2e/approval_tty.sh to answer flowrun's approval
 * prompt as a person would.
 *
 *   pty_drive [--stdout FILE] [--transcript FILE] [--timeout S]
 *             [--expect TEXT] [--send TEXT] ... -- COMMAND ARGS...
 *
 * Steps run in order; --send understands \n, \r, \\ and \xHH (\x03 is
 * Ctrl-C, which the terminal turns into SIGINT, \x04 Ctrl-D, end of input).
 * --timeout bounds each wait (default 120 s) so a broken prompt fails the
 * test instead of hanging it. Exits with the command's exit status (128 +
 * the signal when it was killed), 97 when an --expect was not seen, 98 when
 * the terminal's mode differs after the command from before it, 99 for its
 * own errors. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

typedef struct step {
    bool send; /* else expect */
    char *text;
    size_t len;
} step;

static char *transcript;
static size_t tlen, tcap;
static size_t seen_to; /* where the next --expect starts looking */

static void append(const char *p, size_t n)
{
    if (tlen + n + 1 > tcap) {
        tcap = (tlen + n + 1) * 2;
        transcript = realloc(transcript, tcap);
        if (!transcript)
            exit(99);
    }
    memcpy(transcript + tlen, p, n);
    tlen += n;
    transcript[tlen] = '\0';
}

/* Reads what the terminal has for up to `ms` milliseconds; false at EOF. */
static bool pump(int fd, int ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int n = poll(&pfd, 1, ms);
    if (n <= 0)
        return n == 0 || errno == EINTR;
    char buf[4096];
    ssize_t r = read(fd, buf, sizeof buf);
    if (r <= 0)
        return false; /* EIO once the command closed the terminal */
    append(buf, (size_t)r);
    return true;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p != '\\' || !p[1]) {
            *o++ = *p;
            continue;
        }
        p++;
        if (*p == 'n')
            *o++ = '\n';
        else if (*p == 'r')
            *o++ = '\r';
        else if (*p == 'x' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            p += 2;
        } else
            *o++ = *p;
    }
    return (size_t)(o - s);
}

int main(int argc, char **argv)
{
    const char *out = NULL, *tfile = NULL;
    double timeout = 120;
    step *steps = calloc((size_t)argc, sizeof *steps);
    size_t nsteps = 0;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "pty_drive: %s needs a value\n", argv[i]);
            return 99;
        }
        if (strcmp(argv[i], "--stdout") == 0)
            out = argv[++i];
        else if (strcmp(argv[i], "--transcript") == 0)
            tfile = argv[++i];
        else if (strcmp(argv[i], "--timeout") == 0)
            timeout = atof(argv[++i]);
        else if (strcmp(argv[i], "--expect") == 0 || strcmp(argv[i], "--send") == 0) {
            steps[nsteps].send = argv[i][2] == 's';
            steps[nsteps].text = argv[++i];
            steps[nsteps].len =
                steps[nsteps].send ? unescape(steps[nsteps].text) : strlen(steps[nsteps].text);
            nsteps++;
        } else {
            fprintf(stderr, "pty_drive: unknown option %s\n", argv[i]);
            return 99;
        }
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: pty_drive [options] -- COMMAND ARGS...\n");
        return 99;
    }
    struct winsize ws = {.ws_row = 40, .ws_col = 120};
    int master = -1;
    pid_t pid = forkpty(&master, NULL, NULL, &ws);
    if (pid < 0) {
        perror("pty_drive: forkpty");
        return 99;
    }
    if (pid == 0) {
        if (out) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0)
                _exit(99);
            close(fd);
        }
        execvp(argv[i + 1], argv + i + 1);
        perror("pty_drive: exec");
        _exit(99);
    }
    struct termios before, after;
    bool have_before = tcgetattr(master, &before) == 0;
    int code = 0;
    bool open = true;
    for (size_t s = 0; s < nsteps && open && code == 0; s++) {
        if (steps[s].send) {
            if (write(master, steps[s].text, steps[s].len) != (ssize_t)steps[s].len)
                code = 99;
            continue;
        }
        double until = now_s() + timeout;
        char *hit = NULL;
        while (!(hit = strstr(transcript ? transcript + seen_to : "", steps[s].text)) && open &&
               now_s() < until)
            open = pump(master, 100);
        if (!hit) {
            fprintf(stderr, "pty_drive: never saw '%s' on the terminal\n", steps[s].text);
            code = 97;
        } else {
            seen_to = (size_t)(hit - transcript) + steps[s].len;
        }
    }
    if (code != 0)
        kill(pid, SIGKILL);
    double until = now_s() + timeout;
    while (open && now_s() < until)
        open = pump(master, 100);
    bool same_mode = true;
    if (have_before && tcgetattr(master, &after) == 0)
        same_mode = before.c_lflag == after.c_lflag && before.c_iflag == after.c_iflag &&
                    before.c_oflag == after.c_oflag;
    if (open)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (tfile) {
        FILE *f = fopen(tfile, "w");
        if (f) {
            fwrite(transcript ? transcript : "", 1, tlen, f);
            fclose(f);
        }
    }
    if (code == 0 && !same_mode) {
        fprintf(stderr, "pty_drive: the terminal's mode changed\n");
        code = 98;
    }
    if (code == 0)
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    free(steps);
    free(transcript);
    close(master);
    return code;
}
