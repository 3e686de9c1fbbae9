/* A task's condition (`when`): a Lua function of ctx called through the
 * workflow's sandbox, or a placeholder expression rendered by dsl/template
 * and read as true or false. The trigger's names live here too. */

#include "dsl/load_int.h"

#include "dsl/template.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *fr_trigger_name(fr_trigger t)
{
    switch (t) {
    case FR_TRIGGER_ALL_DONE:
        return "all_done";
    case FR_TRIGGER_ANY_FAILED:
        return "any_failed";
    default:
        return "all_ok";
    }
}

/* Whether the rendered text `s` (borrowed) reads as true: anything but "",
 * "false", "0", "null" or "nil", surrounding spaces trimmed, in any case. */
static bool truthy(const char *s)
{
    static const char *const falsy[] = {"false", "0", "null", "nil"};
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n == 0)
        return false;
    for (size_t k = 0; k < sizeof falsy / sizeof *falsy; k++)
        if (strlen(falsy[k]) == n && strncasecmp(s, falsy[k], n) == 0)
            return false;
    return true;
}

static int when_function(fr_workflow *wf, size_t task, const json_t *ctx, bool *result,
                         fr_error *err)
{
    const fr_task_lua *tl = &wf->lua->tasks[task];
    lua_State *L = wf->lua->L;
    int top = lua_gettop(L);
    int rc = fr_load_call_task(wf, task, tl->when_ref, tl->when_line, ctx, "when",
                               "condition (when)", LUA_TBOOLEAN, "true or false", err);
    if (rc == FR_OK)
        *result = lua_toboolean(L, -1);
    lua_settop(L, top);
    return rc;
}

/*
 * Evaluates the condition of task index `task` of `wf` (borrowed) with
 * `ctx` (borrowed object): true without one. On FR_OK *result is set; a
 * function's errors are FR_ELUA/FR_ELIMIT at the failing line (or the
 * function's definition when it returns something else than a boolean); an
 * expression's are FR_EWORKFLOW at the task's declaration. FR_EINVAL for a
 * bad index.
 */
int fr_workflow_when(fr_workflow *wf, size_t task, const json_t *ctx, bool *result, fr_error *err)
{
    *result = true;
    if (!wf || task >= wf->ntasks)
        return fr_error_set(err, FR_EINVAL, "", 0, "no task with index %zu", task);
    const fr_task_spec *t = &wf->tasks[task];
    if (!t->has_when)
        return FR_OK;
    if (!t->when)
        return when_function(wf, task, ctx, result, err);
    char *text = NULL;
    fr_error terr = {0};
    int rc = fr_template_render(t->when, ctx, &text, &terr);
    if (rc != FR_OK)
        return fr_error_set(err, rc, t->file, t->line, "condition (when) of task '%s': %s", t->name,
                            terr.msg);
    *result = truthy(text);
    free(text);
    return FR_OK;
}
