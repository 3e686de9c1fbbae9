#pragma once
/* File system helpers that several modules need the same way: the one
 * mkdir -p. Used by engine/output (the output folder, the folders of save
 * paths) and engine/store (the state folder); depends on nothing else. */

#include "engine/util/err.h"

#include <sys/types.h>

/* Creates directory `dir` (borrowed) and every missing directory above it,
 * each new one with `mode` (less the umask), like mkdir -p. A name that
 * exists already is left as it is, whatever it is: a file in the way of a
 * deeper directory fails that one, and a file at `dir` itself is for the
 * caller to find. Blocking: call it before the loop runs.
 *
 * Returns FR_OK; FR_EINVAL for a NULL or empty name; FR_EIO when a directory
 * cannot be created, with err->source that directory and err->msg "cannot
 * create directory: " and the system's reason; errno is then mkdir's. */
int fr_mkdir_p(const char *dir, mode_t mode, fr_error *err);
