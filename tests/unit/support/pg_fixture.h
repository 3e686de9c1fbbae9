#pragma once
/* Shared by the unit tests that need a real PostgreSQL server
 * (test_pgconn): starts tests/unit/support/pg.sh serve, reads the server's
 * folder, port and URLs from it, and holds its standard input, so the
 * server stops and its folder goes when pg_server_stop closes that pipe or
 * when the test process dies, however it dies. Header-only: each test
 * executable is one translation unit. Run from the source tree (CTest's
 * WORKING_DIRECTORY), or with $SRC naming it. */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* What a test exits with when there is no server to test against. */
#define PG_SKIP 77

typedef struct pg_server {
    pid_t pid; /* pg.sh serve */
    int keep;  /* the write end of its standard input: closing it stops the server */
    char dir[PATH_MAX];
    char socket[PATH_MAX]; /* the unix socket's folder */
    char port[16];
    char url[512];          /* postgresql://postgres@127.0.0.1:PORT/flowrun_test */
    char password_url[512]; /* the same as pwuser, who needs a password */
    char password[128];     /* pwuser's */
} pg_server;

static const char *pg_script(void)
{
    static char path[PATH_MAX];
    const char *src = getenv("SRC");
    snprintf(path, sizeof path, "%s%stests/unit/support/pg.sh", src ? src : "", src ? "/" : "");
    return path;
}

static void pg_field(char *dst, size_t size, const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) == 0 && line[n] == '=') {
        const char *v = line + n + 1;
        size_t len = strcspn(v, "\n");
        if (len >= size)
            len = size - 1;
        memcpy(dst, v, len);
        dst[len] = '\0';
    }
}

/* Starts the server (`s` borrowed, filled). Returns 0, PG_SKIP when
 * PostgreSQL is not installed (pg.sh said why on stderr), or -1. */
static int pg_server_start(pg_server *s)
{
    memset(s, 0, sizeof *s);
    s->keep = -1;
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    fcntl(out[0], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]);
        close(out[1]);
        execlp("bash", "bash", pg_script(), "serve", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    s->pid = pid;
    s->keep = in[1];
    FILE *f = fdopen(out[0], "r");
    char line[1024];
    bool ready = false;
    while (f && fgets(line, sizeof line, f)) {
        if (strcmp(line, "ready\n") == 0) {
            ready = true;
            break;
        }
        pg_field(s->dir, sizeof s->dir, line, "PG_DIR");
        pg_field(s->socket, sizeof s->socket, line, "PG_SOCKET");
        pg_field(s->port, sizeof s->port, line, "PG_PORT");
        pg_field(s->url, sizeof s->url, line, "PG_URL");
        pg_field(s->password_url, sizeof s->password_url, line, "PG_PASSWORD_URL");
        pg_field(s->password, sizeof s->password, line, "PG_PASSWORD");
    }
    if (f)
        fclose(f);
    if (ready)
        return 0;
    close(s->keep);
    s->keep = -1;
    int status = 0;
    waitpid(pid, &status, 0);
    s->pid = 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == PG_SKIP ? PG_SKIP : -1;
}

/* Starts the server into `s` (a pg_server *) from a test's main, or
 * returns from main: PG_SKIP (CTest's SKIP) without PostgreSQL, 1 when it
 * would not start. */
#define PG_SERVER_START_OR_RETURN(s)                                                               \
    do {                                                                                           \
        int pg_rc_ = pg_server_start(s);                                                           \
        if (pg_rc_ == PG_SKIP) {                                                                   \
            printf("SKIP: no PostgreSQL server to test against (bash tests/deps.sh)\n");           \
            return PG_SKIP;                                                                        \
        }                                                                                          \
        if (pg_rc_ != 0) {                                                                         \
            fprintf(stderr, "could not start the test's PostgreSQL server\n");                     \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* pg_ctl restart -m fast of `s`'s server (borrowed); blocks until it is up
 * again. Returns whether it worked. */
static bool pg_server_restart(const pg_server *s)
{
    char cmd[PATH_MAX * 2 + 64];
    snprintf(cmd, sizeof cmd, "bash '%s' restart '%s'", pg_script(), s->dir);
    return system(cmd) == 0;
}

/* Stops `s`'s server and removes its folder (`s` borrowed). */
static void pg_server_stop(pg_server *s)
{
    if (s->keep >= 0)
        close(s->keep);
    s->keep = -1;
    if (s->pid > 0)
        waitpid(s->pid, NULL, 0);
    s->pid = 0;
}
