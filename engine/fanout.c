/* Fan-out at run time: a foreach task's list read, its instances added as
 * tasks, its end worked out from theirs, the list its dependents read. */
#include "engine/fanout.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

/* What a JSON value is, for messages. */
static const char *kind_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_NULL:
        return "null";
    default:
        return "a number or boolean";
    }
}

/* Walks `path` (dot-separated keys and indices, "" for the whole) from
 * `v`. Returns the value, or NULL with *why (owned) saying where it
 * stopped. */
static const json_t *walk(const json_t *v, const char *path, char **why)
{
    const char *s = path;
    while (*s) {
        size_t n = strcspn(s, ".");
        char *seg = fr_xstrndup(s, n);
        const json_t *next = NULL;
        if (json_is_object(v)) {
            next = json_object_get(v, seg);
        } else if (json_is_array(v)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            if (*seg && !*end)
                next = json_array_get(v, i);
        }
        if (!next) {
            *why = fr_xasprintf("there is no '%s' in %s (at '%.*s')", seg, kind_of(v),
                                (int)(s - path + n), path);
            free(seg);
            return NULL;
        }
        free(seg);
        v = next;
        s += n;
        if (*s == '.')
            s++;
    }
    return v;
}

/* The list of fan-out `task` from its source's JSON, or NULL with *reason. */
static const json_t *read_list(const fr_fanout_env *env, size_t task, char **reason)
{
    const fr_task_spec *ts = &env->wf->tasks[task];
    const fr_task_spec *src = &env->wf->tasks[ts->foreach_dep];
    const fr_task_result *sr = &env->res->tasks[ts->foreach_dep];
    if (fr_sched_state(env->sched, ts->foreach_dep) != FR_TASK_OK) {
        *reason = fr_xasprintf("foreach: '%s' did not succeed, so %s has no list", src->name,
                               ts->foreach);
        return NULL;
    }
    if (!sr->reply.json) {
        *reason = fr_xasprintf("foreach: %s: '%s' has no JSON output (give it a schema, or "
                               "schema = \"json\")",
                               ts->foreach, src->name);
        return NULL;
    }
    char *why = NULL;
    const json_t *list = walk(sr->reply.json, ts->foreach_path, &why);
    if (!list) {
        *reason =
            fr_xasprintf("foreach: %s: %s of '%s''s JSON output", ts->foreach, why, src->name);
        free(why);
        return NULL;
    }
    if (!json_is_array(list)) {
        *reason = fr_xasprintf("foreach: %s is %s, not an array", ts->foreach, kind_of(list));
        return NULL;
    }
    if (json_array_size(list) > (size_t)ts->max_items) {
        *reason = fr_xasprintf("foreach: %s has %zu items, more than max_items = %d (raise "
                               "max_items, or make the list shorter)",
                               ts->foreach, json_array_size(list), ts->max_items);
        return NULL;
    }
    return list;
}

/* The instances' names, checked unique among themselves and the workflow's
 * tasks. Returns an owned array of `n` owned names, or NULL with *reason. */
static char **instance_names(const fr_fanout_env *env, size_t task, const json_t *list, size_t n,
                             char **reason)
{
    const fr_workflow *wf = env->wf;
    char **names = fr_xcalloc(n ? n : 1, sizeof *names);
    for (size_t i = 0; i < n && !*reason; i++) {
        fr_error err = {0};
        const json_t *item = list ? json_array_get(list, i) : NULL;
        if (!list) { /* a plan has no items to name them by */
            names[i] = fr_xasprintf("%s[%zu]", wf->tasks[task].name, i + 1);
        } else if (fr_workflow_instance_name(wf, task, item, i + 1, &names[i], &err) != FR_OK) {
            char msg[1400];
            *reason = fr_xasprintf("foreach: %s", fr_error_format(&err, msg, sizeof msg));
            break;
        }
        for (size_t k = 0; k < i && !*reason; k++)
            if (strcmp(names[k], names[i]) == 0)
                *reason = fr_xasprintf("foreach: items %zu and %zu are both named '%s' (field "
                                       "'name'); instance names must be unique",
                                       k + 1, i + 1, names[i]);
        if (!*reason && fr_workflow_find_task(wf, names[i]) >= 0)
            *reason = fr_xasprintf("foreach: item %zu is named '%s', which is already a task of "
                                   "the workflow; instance names must be unique",
                                   i + 1, names[i]);
    }
    if (!*reason)
        return names;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return NULL;
}

fr_fanout_outcome fr_fanout_expand(const fr_fanout_env *env, size_t task, char **reason)
{
    fr_workflow *wf = env->wf;
    const fr_task_spec *ts = &wf->tasks[task];
    fr_task_result *tr = &env->res->tasks[task];
    *reason = NULL;
    tr->expanded = true;
    const json_t *list = NULL;
    size_t n;
    if (env->plan) {
        n = ts->plan_items >= 0 ? (size_t)ts->plan_items : 1;
    } else {
        list = read_list(env, task, reason);
        if (!list)
            return FR_FANOUT_FAILED;
        n = json_array_size(list);
    }
    if (n == 0) {
        *reason = fr_xstrdup(FR_FANOUT_EMPTY_NOTE);
        return FR_FANOUT_EMPTY;
    }
    char **names = instance_names(env, task, list, n, reason);
    if (!names)
        return FR_FANOUT_FAILED;
    fr_fanout_outcome out = FR_FANOUT_STARTED;
    tr->first_instance = wf->ntasks;
    for (size_t i = 0; i < n; i++) {
        size_t idx;
        fr_error err = {0};
        if (!*reason && fr_workflow_add_instance(wf, task, list ? json_array_get(list, i) : NULL,
                                                 i + 1, names[i], &idx, &err) != FR_OK) {
            char msg[1400];
            *reason = fr_xasprintf("foreach: %s", fr_error_format(&err, msg, sizeof msg));
            out = FR_FANOUT_FAILED;
        }
        free(names[i]);
        if (*reason)
            continue;
        /* The room was reserved at load: no task moved, `ts` still holds. */
        fr_graph_add_like(env->g, task);
        fr_sched_add_ready(env->sched, wf->tasks[idx].priority, wf->tasks[idx].trigger);
        fr_results_add(env->res, idx);
        tr->instances++;
    }
    free(names);
    if (out == FR_FANOUT_FAILED && tr->instances > 0) {
        /* Only when the room ran out, which the load's reservation rules out:
         * the instances added still run, and the fan-out ends with them. */
        free(*reason);
        *reason = NULL;
        out = FR_FANOUT_STARTED;
    }
    return out;
}

bool fr_fanout_ended(const fr_fanout_env *env, size_t task, size_t *parent, fr_task_state *state,
                     char **reason)
{
    const fr_task_spec *ts = &env->wf->tasks[task];
    if (!ts->is_instance)
        return false;
    fr_task_result *pr = &env->res->tasks[ts->instance_of];
    if (++pr->instances_ended < pr->instances)
        return false;
    *parent = ts->instance_of;
    *state = FR_TASK_OK;
    *reason = NULL;
    fr_buf b;
    fr_buf_init(&b, 0);
    size_t bad = 0;
    for (size_t i = pr->first_instance; i < pr->first_instance + pr->instances; i++) {
        fr_task_state st = fr_sched_state(env->sched, i);
        if (st == FR_TASK_OK || (st == FR_TASK_SKIPPED && env->res->tasks[i].decided))
            continue;
        if (bad < 10)
            fr_buf_printf(&b, "%s'%s' (%s)", bad ? ", " : "", env->wf->tasks[i].name,
                          fr_task_state_name(st));
        bad++;
    }
    if (bad > 0) {
        *state = FR_TASK_FAILED;
        *reason = fr_xasprintf("%zu of %zu instances did not succeed: %s%s", bad, pr->instances,
                               fr_buf_str(&b), bad > 10 ? ", ..." : "");
    }
    fr_buf_close(&b);
    *parent = ts->instance_of;
    return true;
}

json_t *fr_fanout_list(const fr_workflow *wf, const fr_results *res, const fr_sched *sched,
                       size_t fanout)
{
    json_t *list = json_array();
    const fr_task_result *pr = &res->tasks[fanout];
    for (size_t i = pr->first_instance; i < pr->first_instance + pr->instances; i++) {
        const fr_task_result *r = &res->tasks[i];
        fr_task_state st = fr_sched_state(sched, i);
        bool ok = st == FR_TASK_OK;
        json_array_append_new(
            list, json_pack("{s:s, s:O, s:s, s:s, s:s, s:I}", "text",
                            ok && r->reply.text ? r->reply.text : "", "json",
                            ok && r->reply.json ? r->reply.json : json_null(), "status",
                            fr_task_state_name(st), "reason", !ok && r->reason ? r->reason : "",
                            "name", wf->tasks[i].name, "index", (json_int_t)wf->tasks[i].index));
    }
    return list;
}

void fr_fanout_item_ctx(const fr_workflow *wf, size_t task, json_t *ctx)
{
    const fr_task_spec *ts = &wf->tasks[task];
    if (!ts->is_instance)
        return;
    json_object_set(ctx, "item", ts->item ? ts->item : json_null());
    json_object_set_new(ctx, "index", json_integer((json_int_t)ts->index));
}

void fr_fanout_place(const fr_fanout_env *env, size_t task, const fr_fanout_hooks *h)
{
    char *reason = NULL;
    fr_fanout_outcome o = fr_fanout_expand(env, task, &reason);
    const fr_task_result *res = &env->res->tasks[task];
    if (o == FR_FANOUT_STARTED)
        h->started(h->ud, task, res->first_instance, res->instances);
    else
        h->ended(h->ud, task, o == FR_FANOUT_EMPTY ? FR_TASK_OK : FR_TASK_FAILED, reason);
    free(reason);
}

void fr_fanout_instance_ended(const fr_fanout_env *env, size_t task, const fr_fanout_hooks *h)
{
    size_t parent;
    fr_task_state st;
    char *reason = NULL;
    if (fr_fanout_ended(env, task, &parent, &st, &reason))
        h->ended(h->ud, parent, st, reason);
    free(reason);
}
