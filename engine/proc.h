#pragma once
/* Child processes on the loop: MCP servers over stdio and command tools.
 * Each child runs under a guard (flowrun itself, started with the hidden
 * first argument FR_PROC_GUARD_ARG) in a process group of its own: the
 * guard forks the command, forwards its exit status, and when flowrun goes
 * away (a normal end, SIGINT, SIGTERM, or kill -9: the guard learns of it
 * from the parent-death signal and from its parent's pipe closing) it ends
 * the whole group, SIGTERM then SIGKILL. No child outlives flowrun. argv
 * only, never a shell. Reads and writes go through libuv pipes; nothing
 * here blocks the loop. Used by engine/mcp and engine/cmdtool. */

#include "engine/util/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

/* argv[1] of flowrun when it runs as a guard (engine/main.c hands it to
 * fr_proc_guard_main before anything else). */
#define FR_PROC_GUARD_ARG "--flowrun-guard"

/* How the guard's line on stderr begins when it cannot run the command
 * (then it exits 127): "flowrun: cannot run 'NAME': REASON". */
#define FR_PROC_EXEC_FAILED_PREFIX "flowrun: cannot run "

typedef struct fr_proc fr_proc;

typedef struct fr_proc_opts {
    const char *const *argv; /* argv[0] looked up in PATH; NULL-terminated */
    const char *const *env;  /* "NAME=value" added to flowrun's environment; NULL-terminated
                                or NULL */
    const char *cwd;         /* NULL: flowrun's */
    bool pipe_stdin;         /* stdin is a pipe (fr_proc_write); else /dev/null */
    bool merge_stderr;       /* stderr joins stdout (on_out); else it goes to on_err */
    double grace_s;          /* SIGTERM to SIGKILL when stopping; 0 = 2 s */
} fr_proc_opts;

/* Called with each piece of output, `data` borrowed for the call. */
typedef void (*fr_proc_read_fn)(void *ud, const char *data, size_t len);
/* Called once when the child has exited and all its output was delivered:
 * `exit_code` (-1 when killed) and `term_signal` (0 when it exited). */
typedef void (*fr_proc_exit_fn)(void *ud, int exit_code, int term_signal);

/* Starts `o->argv` (every string borrowed, copied) on `loop` under a guard.
 * on_out/on_err (may be NULL) get its output; on_exit (required) its end.
 * On FR_OK *out is owned: fr_proc_free. FR_ENOENT when argv[0] is not
 * found (err names it), FR_EIO when it cannot be started. */
int fr_proc_spawn(uv_loop_t *loop, const fr_proc_opts *o, fr_proc_read_fn on_out,
                  fr_proc_read_fn on_err, fr_proc_exit_fn on_exit, void *ud, fr_proc **out,
                  fr_error *err);
/* Writes `len` bytes of `data` (borrowed, copied) to the child's stdin.
 * FR_EIO once the child's stdin is closed. */
int fr_proc_write(fr_proc *p, const char *data, size_t len);
/* Closes the child's stdin (EOF). */
void fr_proc_close_stdin(fr_proc *p);
/* Ends the child's whole group: SIGTERM, SIGKILL after the grace period.
 * on_exit still comes. */
void fr_proc_kill(fr_proc *p);
/* Returns the child's pid (the guard's), 0 once it exited. */
int fr_proc_pid(const fr_proc *p);
/* Kills the group if still running and closes every handle; no callback
 * comes after this. The memory is released in the last close callback: run
 * the loop. NULL is fine. */
void fr_proc_free(fr_proc *p);

/* The guard's main: argv as flowrun's, argv[1] == FR_PROC_GUARD_ARG, then
 * the parent's pid and "--" and the command. Returns the exit status for
 * main to return (the command's, or 128+signal). */
int fr_proc_guard_main(int argc, char **argv);
