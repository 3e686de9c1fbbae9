#pragma once
/* The guard: the small process every child of flowrun runs under
 * (engine/proc starts it). It leads a process group of its own, forks the
 * command into it, forwards its exit status, and when flowrun goes away (a
 * normal end, SIGINT, SIGTERM, or kill -9: the parent-death signal and EOF
 * on the watch pipe tell it) ends the whole group, SIGTERM then SIGKILL
 * after the grace. libc only: it is linked into flowrun (argv[1] ==
 * FR_GUARD_ARG) and built alone as FR_GUARD_PROGRAM, installed beside
 * flowrun, which starts much faster than flowrun itself. */

/* argv[1] of the guard: FR_GUARD_ARG PARENT_PID -- COMMAND [ARG...]. */
#define FR_GUARD_ARG "--flowrun-guard"
/* The guard's own program, beside flowrun's binary. */
#define FR_GUARD_PROGRAM "flowrun-guard"
/* The grace period in ms reaches the guard in this variable (removed
 * before the command starts), so its argv stays as above. */
#define FR_GUARD_GRACE_ENV "FLOWRUN_GUARD_GRACE_MS"
/* The guard's copy of the watch pipe's read end. */
#define FR_GUARD_WATCH_FD 3
/* What the guard prints on stderr, before "'COMMAND': reason", when the
 * command cannot be run (it then exits 127). */
#define FR_GUARD_EXEC_FAILED "flowrun: cannot run "

/* The guard's main, argv as above. Returns the exit status for main to
 * return (the command's, or 128+signal; its signal is raised again when it
 * was killed). */
int fr_guard_main(int argc, char **argv);
