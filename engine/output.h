#pragma once
/* Writing task outputs to files without blocking the loop: directories are
 * created at startup (allowed to block), file contents are written with
 * libuv's fs requests as each task finishes. */

#include "engine/util/err.h"

#include <stddef.h>
#include <uv.h>

/* Called once when a write ends: `rc` is FR_OK or FR_EIO, `path` borrowed. */
typedef void (*fr_output_done_fn)(void *ud, int rc, const char *path);

/* Creates `dir` (borrowed) and its parents, like mkdir -p. Blocking: call it
 * before the loop runs. Returns FR_OK, FR_EINVAL for an empty name, or FR_EIO
 * with `err` naming the path. */
int fr_output_mkdirs(const char *dir, fr_error *err);

/* Creates the parent directories of file `path` (borrowed). Same returns. */
int fr_output_mkparents(const char *path, fr_error *err);

/* Writes `len` bytes of `data` (borrowed, copied) to `path` (borrowed,
 * copied), replacing it, on `loop`. `done` (may be NULL) is called from the
 * loop when the write ends. Returns FR_OK once the write is started. */
int fr_output_write(uv_loop_t *loop, const char *path, const char *data, size_t len,
                    fr_output_done_fn done, void *ud);
