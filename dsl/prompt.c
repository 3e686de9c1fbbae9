/* Rendering a task's prompt: string templates through dsl/template,
 * functions through the workflow's sandbox with ctx copied in as a table. */

#include "dsl/load_int.h"

#include "dsl/luajson.h"
#include "dsl/sandbox.h"
#include "dsl/template.h"
#include "engine/util/mem.h"
#include "engine/util/utf8.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Pushes a Lua copy of the JSON value passed as light userdata (an empty
 * table for NULL). Runs in protected mode, so a memory error while copying
 * is caught. */
static int push_json_arg(lua_State *L)
{
    const json_t *v = lua_touserdata(L, 1);
    if (v)
        fr_lua_push_json(L, v); /* [ud, v] */
    else
        lua_newtable(L); /* [ud, {}] */
    return 1;
}

/*
 * Calls the function behind registry reference `ref` of `L` with a Lua
 * copy of `arg` (borrowed; NULL is an empty table), under the sandbox's
 * limits, leaving `nresults` results. On failure leaves nothing and returns
 * FR_ELUA/FR_ELIMIT with `err` prefixed by `what` (borrowed); an error
 * without a position gets `file`:`line` (borrowed).
 */
int fr_load_call_json(lua_State *L, int ref, const json_t *arg, int nresults, const char *what,
                      const char *file, int line, fr_error *err)
{
    if (!lua_checkstack(L, 4))
        return fr_error_set(err, FR_ELIMIT, file, line, "%s: Lua stack exhausted", what);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);   /* [fn] */
    lua_pushcfunction(L, push_json_arg);      /* [fn, push] */
    lua_pushlightuserdata(L, (void *)arg);    /* [fn, push, ud] */
    int rc = fr_lua_call(L, 1, 1, what, err); /* [fn, arg] */
    if (rc == FR_OK)
        rc = fr_lua_call(L, 1, nresults, what, err); /* [results...] */
    if (rc != FR_OK && err && !err->source[0]) {
        snprintf(err->source, sizeof err->source, "%s", file);
        err->line = line;
    }
    return rc;
}

int fr_load_call_task(fr_workflow *wf, size_t task, int ref, int line, const json_t *ctx,
                      const char *role, const char *what, int type, const char *want, fr_error *err)
{
    const fr_task_spec *t = &wf->tasks[task];
    lua_State *L = wf->lua->L;
    int top = lua_gettop(L);
    char call[300];
    snprintf(call, sizeof call, "%s of task '%s'", what, t->name);
    int rc = fr_load_call_json(L, ref, ctx, 1, call, t->file, line, err);
    if (rc == FR_OK && lua_type(L, -1) != type) {
        rc = fr_error_set(err, FR_ELUA, t->file, line,
                          "the %s function of task '%s' must return %s, got %s", role, t->name,
                          want, luaL_typename(L, -1));
        lua_settop(L, top);
    }
    return rc;
}

static int render_function(fr_workflow *wf, size_t task, const json_t *ctx, char **out,
                           fr_error *err)
{
    const fr_task_spec *t = &wf->tasks[task];
    const fr_task_lua *tl = &wf->lua->tasks[task];
    lua_State *L = wf->lua->L;
    int top = lua_gettop(L);
    int rc = fr_load_call_task(wf, task, tl->prompt_ref, tl->prompt_line, ctx, "prompt", "prompt",
                               LUA_TSTRING, "a string", err);
    if (rc != FR_OK)
        goto cleanup; /* [result] on success */
    size_t len, at = 0;
    const char *s = lua_tolstring(L, -1, &len);
    const char *bad = fr_utf8_text(s, len, &at);
    if (bad) {
        /* Such text cannot go into a request (JSON carries UTF-8 only). */
        rc = fr_error_set(err, FR_ELUA, t->file, tl->prompt_line,
                          "the prompt function of task '%s' returned text that %s at byte %zu%s",
                          t->name, bad, at,
                          *bad == 'i' ? " (string.sub cuts by bytes and can split a character: "
                                        "cut at utf8.offset(s, n) instead)"
                                      : "");
        goto cleanup;
    }
    *out = fr_xstrndup(s, len);
cleanup:
    lua_settop(L, top);
    return rc;
}

/*
 * Renders the prompt of task index `task` of `wf` (borrowed) with `ctx`
 * (borrowed object). On FR_OK *out is an owned string. Template errors are
 * FR_EWORKFLOW at the task's declaration; a prompt function's errors are
 * FR_ELUA/FR_ELIMIT at the failing line, or at the function's definition
 * when it returns something other than a string. FR_EINVAL for a bad index.
 */
int fr_workflow_render_prompt(fr_workflow *wf, size_t task, const json_t *ctx, char **out,
                              fr_error *err)
{
    if (!wf || task >= wf->ntasks)
        return fr_error_set(err, FR_EINVAL, "", 0, "no task with index %zu", task);
    const fr_task_spec *t = &wf->tasks[task];
    if (!t->prompt)
        return render_function(wf, task, ctx, out, err);
    if (fr_template_is_plain(t->prompt)) {
        *out = fr_xstrdup(t->prompt); /* its text was checked at load */
        return FR_OK;
    }
    fr_error terr = {0};
    int rc = fr_template_render(t->prompt, ctx, out, &terr);
    size_t at = 0;
    const char *bad = rc == FR_OK ? fr_utf8_text(*out, strlen(*out), &at) : NULL;
    if (rc != FR_OK) {
        fr_error_set(err, rc, t->file, t->line, "prompt of task '%s': %s", t->name, terr.msg);
    } else if (bad) {
        /* A --var value is the one part not checked at load. */
        rc = fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                          "the prompt of task '%s' %s at byte %zu once its placeholders are "
                          "filled (check the --var values)",
                          t->name, bad, at);
        free(*out);
        *out = NULL;
    }
    return rc;
}

bool fr_workflow_prompt_uses_ctx(const fr_workflow *wf, size_t task)
{
    const char *p = wf->tasks[task].prompt;
    return !p || !fr_template_is_plain(p);
}

/* Pushes the check's arguments: the output text, its JSON and, for a
 * fan-out's instance, a ctx with its item and index (else nil). Runs in
 * protected mode, so a memory error while copying is caught. */
static int push_check_args(lua_State *L)
{
    const char *text = lua_touserdata(L, 1);
    const json_t *json = lua_touserdata(L, 2);
    const fr_task_spec *t = lua_touserdata(L, 3);
    lua_pushstring(L, text);   /* [ud, ud, ud, text] */
    fr_lua_push_json(L, json); /* [ud, ud, ud, text, json] */
    if (t->is_instance) {
        json_t *ctx = json_pack("{s:O, s:I}", "item", t->item ? t->item : json_null(), "index",
                                (json_int_t)t->index);
        fr_lua_push_json(L, ctx); /* [ud, ud, ud, text, json, ctx] */
        json_decref(ctx);         /* a memory error above leaks it: rare and bounded */
    } else {
        lua_pushnil(L);
    }
    return 3;
}

int fr_workflow_check(fr_workflow *wf, size_t task, const char *text, const json_t *json,
                      double *score, char **reason, fr_error *err)
{
    *score = 1.0;
    *reason = NULL;
    if (!wf || task >= wf->ntasks)
        return fr_error_set(err, FR_EINVAL, "", 0, "no task with index %zu", task);
    const fr_task_spec *t = &wf->tasks[task];
    const fr_task_lua *tl = &wf->lua->tasks[task];
    if (!t->has_check)
        return FR_OK;
    lua_State *L = wf->lua->L;
    int top = lua_gettop(L);
    char what[300];
    snprintf(what, sizeof what, "check of task '%s'", t->name);
    if (!lua_checkstack(L, 7))
        return fr_error_set(err, FR_ELIMIT, t->file, t->line, "%s: Lua stack exhausted", what);
    lua_rawgeti(L, LUA_REGISTRYINDEX, tl->check_ref); /* [fn] */
    lua_pushcfunction(L, push_check_args);            /* [fn, push] */
    lua_pushlightuserdata(L, (void *)text);
    lua_pushlightuserdata(L, (void *)json);
    lua_pushlightuserdata(L, (void *)t);      /* [fn, push, ud, ud, ud] */
    int rc = fr_lua_call(L, 3, 3, what, err); /* [fn, text, json, ctx] */
    if (rc == FR_OK)
        rc = fr_lua_call(L, 3, 2, what, err); /* [result, reason] */
    if (rc != FR_OK) {
        if (err && !err->source[0]) {
            snprintf(err->source, sizeof err->source, "%s", t->file);
            err->line = t->line;
        }
        goto cleanup;
    }
    if (lua_type(L, -1) == LUA_TSTRING)
        *reason = fr_xstrdup(lua_tostring(L, -1));
    switch (lua_type(L, -2)) {
    case LUA_TNUMBER: {
        double v = lua_tonumber(L, -2);
        if (!(v >= 0 && v <= 1)) {
            rc = fr_error_set(err, FR_ELUA, t->file, t->line,
                              "the check of task '%s' returned %g; a score must be from 0 to 1",
                              t->name, v);
            goto cleanup;
        }
        *score = v;
        break;
    }
    case LUA_TBOOLEAN:
        *score = lua_toboolean(L, -2) ? 1.0 : 0.0;
        break;
    case LUA_TNIL:
        if (*reason) { /* nil, "why": Lua's way to say it failed, and why */
            *score = 0.0;
            break;
        }
        rc = fr_error_set(err, FR_ELUA, t->file, t->line,
                          "the check of task '%s' returned nothing; return a score from 0 to 1, "
                          "true/false, optionally with a reason",
                          t->name);
        goto cleanup;
    default:
        rc = fr_error_set(err, FR_ELUA, t->file, t->line,
                          "the check of task '%s' must return a score from 0 to 1, true, or "
                          "false and a reason; got %s",
                          t->name, luaL_typename(L, -2));
        goto cleanup;
    }
cleanup:
    if (rc != FR_OK) {
        free(*reason);
        *reason = NULL;
    }
    lua_settop(L, top);
    return rc;
}
