#pragma once
/* The process's file descriptor budget: raising the soft RLIMIT_NOFILE
 * toward the hard one at start, and how many HTTP transfers the rest allows.
 * Used by engine/main (the raise), engine/run (the scheduler's total cap)
 * and engine/sim (flowrun-sim raises its own). */

#include <stdbool.h>

/* Descriptors kept back from transfers for everything else a run opens:
 * stdio, the loop's own, the state store and its journal, the watcher,
 * output files being written (engine/output opens one at a time), the
 * in-process simulator's listener, curl's resolver pairs. */
#define FR_FD_RESERVE 96
/* Descriptors one transfer may hold: its socket and, under --sim, the
 * simulator's end of the same connection in this process. */
#define FR_FD_PER_TRANSFER 2

/* Raises the soft RLIMIT_NOFILE to the hard one (at most 1,048,576, so an
 * unlimited hard limit does not make tables of that size elsewhere). Best
 * effort: a limit that cannot be raised is left as it is. Returns the soft
 * limit in force afterwards, or -1 when it cannot be read. */
long fr_fd_raise_limit(void);

/* Returns the soft RLIMIT_NOFILE now, or -1 when it cannot be read. */
long fr_fd_limit(void);

/* Returns how many transfers may be in flight at once under a soft limit of
 * `limit` descriptors (from fr_fd_limit; <= 0 means unknown, no cap: returns
 * 0): what is left after FR_FD_RESERVE, over FR_FD_PER_TRANSFER, and at
 * least 1 so a run with a tiny limit still makes progress. */
int fr_fd_transfer_cap(long limit);

/* True for the errno values that mean this process (EMFILE) or the system
 * (ENFILE) is out of descriptors: a local condition, never a sign that a
 * server is unreachable. */
bool fr_fd_exhausted(int err);
