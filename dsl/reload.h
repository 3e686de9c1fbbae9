#pragma once
/* The live policy slot: owns the policy a run routes with, the watch of its
 * file, loading a changed version into a fresh state beside the live one,
 * its self-check, the swap, the version count and the reload log (the
 * report's `policy_reloads` and the "policy" log lines). Uses dsl/policy and
 * engine/util/watch; the run reaches it through these calls and the hooks. */

#include "dsl/policy.h"
#include "engine/util/err.h"

#include <jansson.h>

struct uv_loop_s;

typedef struct fr_reload fr_reload;

/* What the slot asks of its owner; every member may be NULL. Called on the
 * loop thread, from inside the watch's change callback. */
typedef struct fr_reload_hooks {
    void *ud; /* passed to each hook */
    /* Returns an owned array: the self-check's candidates (the run's own
     * endpoints, as route sees them). NULL hook or NULL result: the two
     * made-up candidates of fr_policy_check. */
    json_t *(*check_candidates)(void *ud);
    /* Milliseconds since the run started, for the log's at_ms (NULL: 0). */
    double (*elapsed_ms)(void *ud);
    /* A new version is live (the run pumps: it may place tasks the old
     * version kept waiting). The previous version is already freed. */
    void (*swapped)(void *ud);
} fr_reload_hooks;

/*
 * Returns a new slot holding `initial` (taken: freed by fr_reload_free; it
 * is version 1, already loaded and self-checked by the caller), loaded from
 * `path` (borrowed, copied: a file, or a "built-in:NAME" path, which is
 * never watched). `hooks` is copied (NULL: no hooks). Nothing is watched
 * until fr_reload_watch. Returns NULL, freeing `initial`, when `initial` or
 * `path` is NULL.
 */
fr_reload *fr_reload_new(fr_policy *initial, const char *path, const fr_reload_hooks *hooks);

/*
 * Resolves policy `spec` (a name or a path, relative to `base_dir`, which
 * may be NULL: dsl/policy.h's fr_policy_resolve), loads it as version 1 and
 * returns the slot holding it in *out (owned), with `hooks` as
 * fr_reload_new. The caller self-checks it. FR_OK, or what failed in `err`.
 */
int fr_reload_open(const char *spec, const char *base_dir, const fr_reload_hooks *hooks,
                   fr_reload **out, fr_error *err);

/*
 * Starts watching the policy file on `loop` (borrowed; must outlive the
 * watch): from then on, each change of the file's content is loaded beside
 * the live version, self-checked with the hooks' candidates and swapped in
 * if both pass; every change (a read error too) adds an entry to the log
 * and a "policy" log line. A built-in is not watched: FR_OK, no handle.
 * When the file's directory cannot be watched, logs the warning
 * 'error="..."; the policy will not be reloaded' and returns FR_EINVAL or
 * FR_EIO with `err` (optional) filled; the run goes on with the live
 * version. A second call does nothing (FR_OK).
 */
int fr_reload_watch(fr_reload *s, struct uv_loop_s *loop, fr_error *err);

/* Returns the live policy (borrowed, until the next swap: a swap happens
 * only inside the loop, so it is stable for the length of one callback). */
fr_policy *fr_reload_live(const fr_reload *s);

/* Returns the number of the last version seen: 1 at start, one more for
 * each change of the file's content, whether or not it became live. */
int fr_reload_versions(const fr_reload *s);

/* Returns the reload log (borrowed; valid until fr_reload_free): an array
 * of {"version": N or null for a read error, "ok": bool, "at_ms": number,
 * "error": string or null}, one per change in order. */
const json_t *fr_reload_log(const fr_reload *s);

/* Stops watching: no hook is called again and the watch's handles close
 * from the loop (run it until empty before uv_loop_close). The live policy
 * stays. NULL is fine; a second call does nothing. */
void fr_reload_stop(fr_reload *s);

/* Stops watching (as fr_reload_stop) and frees the slot, the live policy
 * and the log. NULL is fine. */
void fr_reload_free(fr_reload *s);
