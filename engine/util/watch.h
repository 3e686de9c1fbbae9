#pragma once
/* Watches one file on the libuv loop and reports each change of its content,
 * debounced: the live policy slot (dsl/reload) uses it for hot reload. Owns a
 * directory fs-event handle, a timer and at most one read on libuv's thread pool; talks
 * to nothing else. */

#include "engine/util/err.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Largest file content a watch reads; a bigger file is reported as an error. */
#define FR_WATCH_MAX_BYTES ((size_t)1024 * 1024)

/* Debounce used when fr_watch_new is given 0. */
#define FR_WATCH_DEFAULT_DEBOUNCE_MS 100

typedef struct fr_watch fr_watch;

/* Called once per change of the file's content, after the debounce, with the
 * new content (borrowed for the call, `len` bytes, NUL-terminated) and error
 * NULL; or, when the file cannot be read (deleted, unreadable, not a regular
 * file, too big), with content NULL, len 0 and `error` (borrowed for the call)
 * saying why, prefixed with the path. Called on the loop thread; may call
 * fr_watch_free on its own watch. */
typedef void (*fr_watch_fn)(void *ud, const char *content, size_t len, const char *error);

/* Starts watching `path` (borrowed, copied) on `loop` (borrowed, must outlive
 * the watch). The file's directory is watched, not the file: editors save by
 * writing a temporary file and renaming it over the original, which a watch on
 * the file itself would lose. Events for other names in the directory are
 * ignored; a burst of events for the file is debounced (`debounce_ms`, 0 =
 * FR_WATCH_DEFAULT_DEBOUNCE_MS) into one read on the thread pool.
 *
 * The content when the watch starts is the baseline (read here, synchronously:
 * this is startup). `fn` is called only for a change from the last state
 * reported: new content (a 64-bit FNV-1a hash plus the length differ from the
 * last good content), or an error different from the last one reported. Content
 * equal to the last good content is not reported, even after an error in
 * between. A file missing at start is fine: its error is the baseline.
 *
 * Returns the owned watch (release it with fr_watch_free), or NULL with `err`
 * (optional) filled: FR_EINVAL for an empty path or one ending in '/', FR_EIO
 * when the directory cannot be watched. Even on failure, run the loop before
 * uv_loop_close: handles already opened close from the loop. */
fr_watch *fr_watch_new(uv_loop_t *loop, const char *path, uint64_t debounce_ms, fr_watch_fn fn,
                       void *ud, fr_error *err);

/* Stops watching (fn is not called again) and closes the handles. A read in
 * flight is cancelled or left to finish; the memory is released in the last
 * close or read-completion callback, so the caller must run the loop until it
 * is empty. Safe from inside fn. NULL is fine; a second call does nothing. */
void fr_watch_free(fr_watch *w);

/* Number of reads finished after a debounced event (the baseline is not
 * counted), and number of times fn was called. 0 for NULL. */
long fr_watch_reads(const fr_watch *w);
long fr_watch_changes(const fr_watch *w);
