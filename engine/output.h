#pragma once
/* Writing task outputs to files without blocking the loop: directories are
 * created at startup (allowed to block), file contents are written in
 * libuv's thread pool as each task finishes (one job at a time, which takes
 * the writes waiting in order and does each whole: open, write, close),
 * optionally confined to a folder (save paths: no symbolic link may lead
 * them out): a task's output goes to the run's output folder and to its
 * `save` path. Used by engine/run and engine/mcpd. */

#include "dsl/workflow.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <stddef.h>
#include <uv.h>

/* Called once when a write ends: `rc` is FR_OK or FR_EIO, `path` borrowed. */
typedef void (*fr_output_done_fn)(void *ud, int rc, const char *path);

/* Creates `dir` (borrowed) and its parents, mode 0755, with fr_mkdir_p
 * (engine/util/fs.h). Blocking: call it before the loop runs. Returns FR_OK,
 * FR_EINVAL for an empty name (the --out folder), or FR_EIO with `err`
 * naming the path. */
int fr_output_mkdirs(const char *dir, fr_error *err);

/* Creates the parent directories of file `path` (borrowed). Same returns. */
int fr_output_mkparents(const char *path, fr_error *err);

/* Checks that writing file `path` (borrowed) stays inside `root` (borrowed,
 * a real path: no symbolic links, no trailing '/'): the deepest existing
 * folder on the way to it resolves inside `root`, and `path` itself is not a
 * symbolic link. Blocking: call it before the loop runs. Returns FR_OK, or
 * FR_EINVAL with `err` naming the path and, when one is to blame, the link. */
int fr_output_check_inside(const char *root, const char *path, fr_error *err);

/* Writes `len` bytes of `data` (borrowed, copied) to `path` (borrowed,
 * copied), replacing it, on `loop`. `done` (may be NULL) is called from the
 * loop when the write ends. Returns FR_OK once the write is started. */
int fr_output_write(uv_loop_t *loop, const char *path, const char *data, size_t len,
                    fr_output_done_fn done, void *ud);

/* Like fr_output_write, but confined to `root` (borrowed, copied; a real
 * path, or NULL for no confinement): when the write starts, the folder of
 * `path` must resolve inside `root`, and the file is opened without
 * following a symbolic link, so a link made during the run cannot lead the
 * output out. A refused write ends with `rc` FR_EINVAL. */
int fr_output_write_inside(uv_loop_t *loop, const char *root, const char *path, const char *data,
                           size_t len, fr_output_done_fn done, void *ud);

/* Save paths stay inside the workflow's folder (dsl/load checked the
 * text): here no symbolic link on the way may lead out. Sets *root (owned)
 * to the folder's real path, or NULL when the workflow allows saving
 * anywhere. Blocking: call it before the loop runs. FR_OK, or FR_EWORKFLOW
 * naming the task, its file and line, or FR_EIO. */
int fr_output_confine_saves(const fr_workflow *wf, char **root, fr_error *err);

/* Creates the parent folders of task `task`'s save path, if it has one. */
int fr_output_save_parents(const fr_workflow *wf, size_t task, fr_error *err);

/* Creates `dir` (borrowed), the folder that holds one folder per run
 * (.flowrun/out), and asks the file system to spread the folders made in
 * it (ext4's "top of a directory hierarchy", chattr +T): each run's folder
 * then gets a block group of its own, where creating its files does not
 * scan past the inodes that other folders' recent deletions left (ext4
 * without a journal skips each one). The files are the same; where the
 * flag is not supported nothing changes. Blocking: before the loop runs.
 * FR_OK or fr_output_mkdirs's error. */
int fr_output_runs_folder(const char *dir, fr_error *err);

/* Everything a run of `wf` writes into, before the loop runs: the output
 * folder `out_dir` (borrowed; NULL for a plan, which writes nothing), the
 * save paths' confinement (*root, as fr_output_confine_saves) and their
 * parent folders. FR_OK or the first error. */
int fr_output_prepare(const fr_workflow *wf, const char *out_dir, char **root, fr_error *err);

/* Writes task `task`'s accepted `reply` (borrowed): its JSON (indented) or
 * text to OUT_DIR/NAME.json or .txt, and to its save path confined to
 * `root` (fr_output_confine_saves). A failed write is logged, naming the
 * path, and `done` (may be NULL) is told of each write's end. */
void fr_output_task(uv_loop_t *loop, const fr_workflow *wf, size_t task, const char *out_dir,
                    const char *root, const fr_reply *reply, fr_output_done_fn done, void *ud);
