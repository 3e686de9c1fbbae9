/* The live policy slot (see reload.h). A change of the policy file arrives
 * through the watch's callback: the new content is loaded into a fresh Lua
 * state beside the live one, self-checked, and only then swapped in, so a
 * broken save never reaches routing. Tasks already routed keep their
 * decision; every decision records the version that made it. */

#include "dsl/reload.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/watch.h"

#include <stdlib.h>
#include <string.h>

struct fr_reload {
    fr_policy *live; /* owned */
    char *path;      /* owned */
    int versions;    /* the last version number given */
    json_t *log;     /* owned: the report's policy_reloads */
    fr_watch *watch; /* owned; NULL before fr_reload_watch and after stop */
    fr_reload_hooks hooks;
};

/* Returns the owned slot holding `initial` (taken); see reload.h. */
fr_reload *fr_reload_new(fr_policy *initial, const char *path, const fr_reload_hooks *hooks)
{
    if (!initial || !path) {
        fr_policy_free(initial);
        return NULL;
    }
    fr_reload *s = fr_xcalloc(1, sizeof *s);
    s->live = initial;
    s->path = fr_xstrdup(path);
    s->versions = 1;
    s->log = json_array();
    if (hooks)
        s->hooks = *hooks;
    return s;
}

int fr_reload_open(const char *spec, const char *base_dir, const fr_reload_hooks *hooks,
                   fr_reload **out, fr_error *err)
{
    char *path = NULL;
    fr_policy *first = NULL;
    int rc = fr_policy_resolve(spec, base_dir, &path, err);
    if (rc == FR_OK)
        rc = fr_policy_load(path, NULL, 1, &first, err);
    *out = rc == FR_OK ? fr_reload_new(first, path, hooks) : NULL;
    free(path);
    return rc;
}

static double elapsed_ms(const fr_reload *s)
{
    return s->hooks.elapsed_ms ? s->hooks.elapsed_ms(s->hooks.ud) : 0;
}

/* Loads `content` (`len` bytes, borrowed) as the next version and runs its
 * self-check. On FR_OK *out is owned; otherwise `err` says why. */
static int build_beside(fr_reload *s, const char *content, size_t len, int version, fr_policy **out,
                        fr_error *err)
{
    fr_policy *next = NULL;
    int rc = fr_policy_load_string(s->path, content, len, NULL, version, &next, err);
    if (rc == FR_OK) {
        json_t *cands = s->hooks.check_candidates ? s->hooks.check_candidates(s->hooks.ud) : NULL;
        rc = fr_policy_check(next, cands, err);
        json_decref(cands);
    }
    if (rc == FR_OK) {
        *out = next;
        next = NULL;
    }
    fr_policy_free(next);
    return rc;
}

/* The watch saw the file change: `content` (borrowed) or `error` (borrowed). */
static void on_change(void *ud, const char *content, size_t len, const char *error)
{
    fr_reload *s = ud;
    double at_ms = elapsed_ms(s);
    if (error) {
        fr_log_event(FR_LOG_WARN, "policy", "policy.reload_refused",
                     "path=%s reload=refused error=\"%s\"; version %d stays", s->path, error,
                     fr_policy_version(s->live));
        json_array_append_new(s->log, json_pack("{s:n, s:b, s:f, s:s}", "version", "ok", 0, "at_ms",
                                                at_ms, "error", error));
        return;
    }
    int version = ++s->versions;
    fr_policy *next = NULL;
    fr_error err = {0};
    if (build_beside(s, content, len, version, &next, &err) != FR_OK) {
        char msg[1400];
        fr_error_format(&err, msg, sizeof msg);
        fr_log_event(FR_LOG_WARN, "policy", "policy.reload_refused",
                     "version=%d reload=refused error=\"%s\"; version %d stays", version, msg,
                     fr_policy_version(s->live));
        json_array_append_new(s->log, json_pack("{s:i, s:b, s:f, s:s}", "version", version, "ok", 0,
                                                "at_ms", at_ms, "error", msg));
        return;
    }
    fr_policy_free(s->live);
    s->live = next;
    fr_log_event(FR_LOG_INFO, "policy", "policy.reload", "version=%d reload=ok path=%s", version,
                 s->path);
    json_array_append_new(s->log, json_pack("{s:i, s:b, s:f, s:n}", "version", version, "ok", 1,
                                            "at_ms", at_ms, "error"));
    if (s->hooks.swapped)
        s->hooks.swapped(s->hooks.ud);
}

/* Watches the slot's file on `loop` (borrowed); FR_OK for a built-in, or
 * FR_EINVAL/FR_EIO with `err` and a warning logged. See reload.h. */
int fr_reload_watch(fr_reload *s, struct uv_loop_s *loop, fr_error *err)
{
    /* An embedded built-in has no file that could change. */
    if (s->watch || fr_policy_path_is_builtin(s->path))
        return FR_OK;
    fr_error werr = {0};
    s->watch = fr_watch_new(loop, s->path, 0, on_change, s, &werr);
    if (s->watch)
        return FR_OK;
    char msg[1400];
    fr_log_event(FR_LOG_WARN, "policy", "policy.watch_error",
                 "error=\"%s\"; the policy will not be reloaded",
                 fr_error_format(&werr, msg, sizeof msg));
    if (err)
        *err = werr;
    return werr.code ? werr.code : FR_EIO;
}

/* Returns the live policy, borrowed until the next swap. */
fr_policy *fr_reload_live(const fr_reload *s)
{
    return s->live;
}

/* Returns the last version number given (1 at start). */
int fr_reload_versions(const fr_reload *s)
{
    return s->versions;
}

/* Returns the reload log, borrowed until fr_reload_free. */
const json_t *fr_reload_log(const fr_reload *s)
{
    return s->log;
}

/* Closes the watch (from the loop); NULL and a second call are fine. */
void fr_reload_stop(fr_reload *s)
{
    if (!s)
        return;
    fr_watch_free(s->watch);
    s->watch = NULL;
}

/* Frees the slot, its live policy and log; NULL is fine. */
void fr_reload_free(fr_reload *s)
{
    if (!s)
        return;
    fr_reload_stop(s);
    fr_policy_free(s->live);
    json_decref(s->log);
    free(s->path);
    free(s);
}
