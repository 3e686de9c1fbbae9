/* Fan-out in the DSL: the fields `foreach`, `name`, `max_items` and
 * `plan_items` of a task, their checks at load (file:line, did-you-mean),
 * the room reserved for instances, and the instances themselves: a copy of
 * the fan-out task per item, appended to wf->tasks at run time (for
 * engine/fanout) without moving any task. */
#include "dsl/decl_int.h"
#include "dsl/load_int.h"
#include "dsl/sandbox.h"
#include "dsl/suggest.h"
#include "dsl/template.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The longest instance name flowrun accepts. */
#define MAX_INSTANCE_NAME 200

/* Reads the fan-out fields of the task table at `t` into `ts`; `foreach`
 * and `name` are checked once the deps are known (fr_load_check_foreach). */
void fr_decl_foreach_fields(fr_decl *d, int t, fr_task_spec *ts)
{
    fr_decl_str(d, t, "foreach", FR_FIELD_NONEMPTY, &ts->foreach);
    fr_decl_str(d, t, "name", FR_FIELD_NONEMPTY, &ts->instance_name);
    fr_decl_int(d, t, "max_items", 1, 10000, "an integer from 1 to 10000", &ts->max_items);
    fr_decl_int(d, t, "plan_items", 0, 10000, "an integer from 0 to 10000", &ts->plan_items);
}

/* The fields a fan-out's instances cannot share, or that need foreach. */
static int check_fields(const fr_task_spec *t, fr_error *err)
{
    const char *need = !t->foreach && t->instance_name     ? "name"
                       : !t->foreach && t->max_items > 0   ? "max_items"
                       : !t->foreach && t->plan_items >= 0 ? "plan_items"
                                                           : NULL;
    if (need)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': field '%s' belongs to a fan-out and the task has no "
                            "'foreach' (add foreach = \"dep.json.list\", or remove '%s')",
                            t->name, need, need);
    if (!t->foreach)
        return FR_OK;
    const char *bad = t->save ? "save" : t->approve ? "approve" : NULL;
    if (bad)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': field '%s' makes no sense on a fan-out (every instance "
                            "would share it); put it on the task that joins the instances",
                            t->name, bad);
    if (t->max_items > 0 && t->plan_items > t->max_items)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': plan_items = %d is more than max_items = %d", t->name,
                            t->plan_items, t->max_items);
    return FR_OK;
}

/* `foreach` must be "<dep>.json" or "<dep>.json.<path>" for one of the
 * task's deps, and that dep no fan-out itself. */
static int check_source(fr_workflow *wf, fr_task_spec *t, fr_error *err)
{
    const char *f = t->foreach;
    const char *dot = strstr(f, ".json");
    while (dot && dot[5] != '\0' && dot[5] != '.')
        dot = strstr(dot + 1, ".json");
    size_t nl = dot ? (size_t)(dot - f) : strlen(f);
    long dep = -1;
    for (size_t k = 0; k < t->ndeps && dep < 0; k++) {
        size_t dl = strlen(t->deps[k]);
        /* Without .json, a dep followed by anything else ("plan.modules"). */
        if (dot ? dl == nl && memcmp(t->deps[k], f, nl) == 0
                : strncmp(t->deps[k], f, dl) == 0 && (f[dl] == '\0' || f[dl] == '.'))
            dep = (long)k;
    }
    if (dep < 0) {
        char *guess = fr_xstrndup(f, nl);
        const char *s = fr_suggest(guess, (const char *const *)t->deps, t->ndeps);
        int rc =
            fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                         "task '%s': foreach = \"%s\" must name one of the task's deps "
                         "followed by .json and an optional path (as in "
                         "\"plan.json.modules\"); '%s' is not a dependency%s%s%s",
                         t->name, f, guess, s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        free(guess);
        return rc;
    }
    if (!dot)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': foreach = \"%s\" reads a JSON array: write "
                            "\"%s.json\" or \"%s.json.<path>\"",
                            t->name, f, t->deps[dep], t->deps[dep]);
    const char *path = dot[5] == '.' ? dot + 6 : "";
    size_t pl = strlen(path);
    if (dot[5] == '.' &&
        (pl == 0 || path[pl - 1] == '.' || strstr(path, "..") || strpbrk(path, " \t{}")))
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': foreach = \"%s\": '%s' is not a valid path (fields and "
                            "indices separated by dots)",
                            t->name, f, path);
    t->foreach_dep = t->dep_index[dep];
    if (wf->tasks[t->foreach_dep].foreach)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': foreach reads '%s', which is a fan-out itself; fan out "
                            "over a task that joins it instead",
                            t->name, t->deps[dep]);
    free(t->foreach_path);
    t->foreach_path = fr_xstrdup(path);
    return FR_OK;
}

/* Checks task `i`'s fan-out fields once its deps are resolved, and sets
 * their defaults. */
int fr_load_check_foreach(fr_workflow *wf, size_t i, fr_error *err)
{
    fr_task_spec *t = &wf->tasks[i];
    int rc = check_fields(t, err);
    if (rc != FR_OK || !t->foreach)
        return rc;
    if (t->max_items <= 0)
        t->max_items = 100;
    for (size_t k = 0; k < t->ndeps; k++)
        if (strcmp(t->deps[k], "item") == 0 || strcmp(t->deps[k], "index") == 0)
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                                "task '%s': a fan-out cannot depend on a task named '%s' "
                                "({{%s}} is the instance's own); rename that task",
                                t->name, t->deps[k], t->deps[k]);
    rc = check_source(wf, t, err);
    if (rc == FR_OK && t->instance_name) {
        fr_error terr = {0};
        rc = fr_template_check_item(t->instance_name, NULL, 0, wf->vars, true, &terr);
        if (rc != FR_OK)
            fr_error_set(err, rc, t->file, t->line, "task '%s': field 'name': %s", t->name,
                         terr.msg);
    }
    return rc;
}

/* Reserves room for every fan-out's instances in wf->tasks and the Lua
 * references beside them, so that adding one never moves a task. */
void fr_load_reserve_instances(fr_workflow *wf)
{
    size_t cap = wf->ntasks;
    for (size_t i = 0; i < wf->ntasks; i++)
        if (wf->tasks[i].foreach)
            cap += (size_t)wf->tasks[i].max_items;
    wf->tasks_cap = cap;
    if (cap == wf->ntasks)
        return;
    wf->tasks = fr_xrealloc(wf->tasks, cap * sizeof *wf->tasks);
    wf->lua->tasks = fr_xrealloc(wf->lua->tasks, cap * sizeof *wf->lua->tasks);
}

static char **copy_strs(char *const *v, size_t n)
{
    if (!v)
        return NULL;
    char **c = fr_xcalloc(n ? n : 1, sizeof *c);
    for (size_t i = 0; i < n; i++)
        c[i] = v[i] ? fr_xstrdup(v[i]) : NULL;
    return c;
}

static char *dup_or_null(const char *s)
{
    return s ? fr_xstrdup(s) : NULL;
}

/* Another reference to the function behind `ref`, or LUA_NOREF. */
static int same_function(lua_State *L, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL)
        return ref;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    return fr_sandbox_ref(L);
}

int fr_workflow_add_instance(fr_workflow *wf, size_t tmpl, const json_t *item, size_t index,
                             const char *name, size_t *out, fr_error *err)
{
    if (tmpl >= wf->ntasks || !wf->tasks[tmpl].foreach)
        return fr_error_set(err, FR_EINVAL, wf->path, 0, "task %zu is not a fan-out", tmpl);
    if (wf->ntasks >= wf->tasks_cap)
        return fr_error_set(err, FR_ELIMIT, wf->tasks[tmpl].file, wf->tasks[tmpl].line,
                            "task '%s': no room left for another instance", wf->tasks[tmpl].name);
    const fr_task_spec *t = &wf->tasks[tmpl];
    size_t i = wf->ntasks;
    fr_task_spec *c = &wf->tasks[i];
    *c = *t;
    c->name = fr_xstrdup(name);
    c->prompt = dup_or_null(t->prompt);
    c->deps = copy_strs(t->deps, t->ndeps);
    c->dep_index = fr_xmalloc((t->ndeps ? t->ndeps : 1) * sizeof *c->dep_index);
    if (t->ndeps)
        memcpy(c->dep_index, t->dep_index, t->ndeps * sizeof *c->dep_index);
    c->type = dup_or_null(t->type);
    c->schema = t->schema ? json_deep_copy(t->schema) : NULL;
    c->save = NULL;
    c->endpoint = dup_or_null(t->endpoint);
    c->tools = copy_strs(t->tools, t->ntools);
    c->when = dup_or_null(t->when);
    c->foreach = c->foreach_path = c->instance_name = NULL;
    c->max_items = 0;
    c->plan_items = -1;
    c->is_instance = true;
    c->instance_of = tmpl;
    c->item = item ? json_deep_copy(item) : json_null();
    c->index = index;
    c->file = fr_xstrdup(t->file);
    const fr_task_lua *tl = &wf->lua->tasks[tmpl];
    lua_State *L = wf->lua->L;
    wf->lua->tasks[i] = (fr_task_lua){same_function(L, tl->prompt_ref), tl->prompt_line,
                                      same_function(L, tl->check_ref),
                                      same_function(L, tl->when_ref), tl->when_line};
    wf->ntasks = i + 1;
    *out = i;
    return FR_OK;
}

/* A name a report, an output file and --fresh can carry. */
static bool usable_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_INSTANCE_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '/' || s[i] == '\\' || s[i] == 0x7f)
            return false;
    return true;
}

int fr_workflow_instance_name(const fr_workflow *wf, size_t tmpl, const json_t *item, size_t index,
                              char **out, fr_error *err)
{
    const fr_task_spec *t = &wf->tasks[tmpl];
    if (!t->instance_name) {
        *out = fr_xasprintf("%s[%zu]", t->name, index);
        return FR_OK;
    }
    json_t *ctx = json_pack("{s:O, s:I, s:O}", "item", item ? item : json_null(), "index",
                            (json_int_t)index, "var", wf->vars ? wf->vars : json_null());
    fr_error terr = {0};
    char *name = NULL;
    int rc = fr_template_render(t->instance_name, ctx, &name, &terr);
    json_decref(ctx);
    if (rc != FR_OK)
        return fr_error_set(err, rc, t->file, t->line, "task '%s': field 'name' of item %zu: %s",
                            t->name, index, terr.msg);
    if (!usable_name(name)) {
        rc = fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                          "task '%s': field 'name' gives item %zu the name '%.60s', which is "
                          "empty, longer than %d bytes, or has a slash or control character",
                          t->name, index, name, MAX_INSTANCE_NAME);
        free(name);
        return rc;
    }
    *out = name;
    return FR_OK;
}
