/* Loading a workflow: runs the workflow file and the endpoints file in
 * their own sandboxes (dsl/decl.c fills the structs), merges endpoints,
 * applies --var, then checks what needs the whole picture: agents, deps,
 * placeholders, pins, tool patterns (dsl/tool.c), the baseline and that
 * some endpoint exists. */

#include "dsl/load_int.h"

#include "dsl/sandbox.h"
#include "dsl/suggest.h"
#include "dsl/template.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/strmap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void endpoint_close(fr_endpoint_spec *e)
{
    free(e->name);
    free(e->url);
    free(e->model);
    free(e->api_key_env);
    free(e->keep_alive);
    for (size_t i = 0; i < e->ntags; i++)
        free(e->tags[i]);
    free(e->tags);
    free(e->file);
}

void fr_load_task_close(fr_task_spec *t)
{
    free(t->name);
    free(t->prompt);
    for (size_t i = 0; i < t->ndeps; i++)
        free(t->deps[i]);
    free(t->deps);
    free(t->dep_index);
    free(t->type);
    json_decref(t->schema);
    free(t->save);
    free(t->endpoint);
    free(t->when);
    free(t->foreach);
    free(t->foreach_path);
    free(t->instance_name);
    json_decref(t->item);
    for (size_t i = 0; i < t->ntools; i++)
        free(t->tools[i]);
    free(t->tools);
    free(t->file);
}

/*
 * Frees `wf` (NULL is fine): its specs, vars, and its Lua state after
 * releasing the task references held in it.
 */
void fr_workflow_free(fr_workflow *wf)
{
    if (!wf)
        return;
    fr_load_free_tools(wf); /* releases the run functions' references first */
    if (wf->lua) {
        for (size_t i = 0; wf->lua->tasks && i < wf->ntasks; i++) {
            fr_sandbox_unref(wf->lua->L, wf->lua->tasks[i].prompt_ref);
            fr_sandbox_unref(wf->lua->L, wf->lua->tasks[i].check_ref);
            fr_sandbox_unref(wf->lua->L, wf->lua->tasks[i].when_ref);
        }
        fr_sandbox_free(wf->lua->L);
        free(wf->lua->tasks);
        free(wf->lua);
    }
    for (size_t i = 0; i < wf->ntasks; i++)
        fr_load_task_close(&wf->tasks[i]);
    free(wf->tasks);
    for (size_t i = 0; i < wf->nagents; i++) {
        free(wf->agents[i].name);
        free(wf->agents[i].system);
        free(wf->agents[i].type);
        for (size_t k = 0; k < wf->agents[i].ntools; k++)
            free(wf->agents[i].tools[k]);
        free(wf->agents[i].tools);
        free(wf->agents[i].file);
    }
    free(wf->agents);
    for (size_t i = 0; i < wf->nendpoints; i++)
        endpoint_close(&wf->endpoints[i]);
    free(wf->endpoints);
    json_decref(wf->vars);
    free(wf->name);
    free(wf->path);
    free(wf->dir);
    free(wf->policy);
    free(wf->baseline);
    free(wf);
}

/* Returns the index of the task named `name` (borrowed), or -1. */
long fr_workflow_find_task(const fr_workflow *wf, const char *name)
{
    for (size_t i = 0; i < wf->ntasks; i++)
        if (strcmp(wf->tasks[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* Returns the index of the endpoint named `name` (borrowed), or -1. */
long fr_workflow_find_endpoint(const fr_workflow *wf, const char *name)
{
    for (size_t i = 0; i < wf->nendpoints; i++)
        if (strcmp(wf->endpoints[i].name, name) == 0)
            return (long)i;
    return -1;
}

/* A fresh workflow for `path`: name from the file, dir, empty vars. */
static fr_workflow *workflow_new(const char *path)
{
    fr_workflow *wf = fr_xcalloc(1, sizeof *wf);
    wf->path = fr_xstrdup(path);
    const char *slash = strrchr(path, '/');
    wf->dir =
        slash ? fr_xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : fr_xstrdup(".");
    const char *base = slash ? slash + 1 : path;
    size_t bl = strlen(base);
    if (bl > 4 && strcmp(base + bl - 4, ".lua") == 0)
        bl -= 4;
    wf->name = fr_xstrndup(base, bl);
    wf->budget.alert = 0.8;
    wf->vars = json_object();
    return wf;
}

/* The user's endpoints file under XDG_CONFIG_HOME (or ~/.config); owned. */
static char *xdg_endpoints_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && xdg[0] == '/')
        return fr_xasprintf("%s/flowrun/endpoints.lua", xdg);
    const char *home = getenv("HOME");
    return fr_xasprintf("%s/.config/flowrun/endpoints.lua", home ? home : "");
}

/* Picks the endpoints file: --endpoints (must exist), ./endpoints.lua, the
 * XDG one. *out is an owned path or NULL when there is none. */
static int find_endpoints_file(const fr_load_opts *opts, char **out, fr_error *err)
{
    *out = NULL;
    if (opts && opts->endpoints_path) {
        if (access(opts->endpoints_path, R_OK) != 0)
            return fr_error_set(err, FR_ECONFIG, opts->endpoints_path, 0,
                                "cannot read the endpoints file given with --endpoints");
        *out = fr_xstrdup(opts->endpoints_path);
        return FR_OK;
    }
    if (access("endpoints.lua", R_OK) == 0) {
        *out = fr_xstrdup("endpoints.lua");
        return FR_OK;
    }
    char *xdg = xdg_endpoints_path();
    if (access(xdg, R_OK) == 0) {
        *out = xdg;
        return FR_OK;
    }
    free(xdg);
    return FR_OK;
}

/* Moves the endpoints of `from` into `wf`: one with the name of an inline
 * endpoint replaces it in place, the others are appended. */
static void merge_endpoints(fr_workflow *wf, fr_workflow *from)
{
    for (size_t i = 0; i < from->nendpoints; i++) {
        fr_endpoint_spec *e = &from->endpoints[i];
        long at = fr_workflow_find_endpoint(wf, e->name);
        if (at >= 0) {
            endpoint_close(&wf->endpoints[at]);
            wf->endpoints[at] = *e;
        } else {
            wf->endpoints =
                fr_xrealloc(wf->endpoints, (wf->nendpoints + 1) * sizeof *wf->endpoints);
            wf->endpoints[wf->nendpoints++] = *e;
        }
    }
    from->nendpoints = 0;
}

/* An endpoint of `from` (the endpoints file being read) whose name an
 * earlier endpoints file already declared: a configuration error naming
 * both places. Endpoints declared in the workflow itself may be replaced. */
static int check_duplicates(const fr_workflow *wf, const fr_workflow *from, fr_error *err)
{
    for (size_t i = 0; i < from->nendpoints; i++) {
        const fr_endpoint_spec *e = &from->endpoints[i];
        long at = fr_workflow_find_endpoint(wf, e->name);
        if (at < 0 || strcmp(wf->endpoints[at].file, wf->path) == 0)
            continue;
        return fr_error_set(err, FR_ECONFIG, e->file, e->line,
                            "endpoint '%s' is also declared at %s:%d; declare each endpoint in "
                            "one endpoints file only",
                            e->name, wf->endpoints[at].file, wf->endpoints[at].line);
    }
    return FR_OK;
}

/* Runs the endpoints file `path` (borrowed) in its own sandbox and merges
 * it. The workflow's baseline wins over the file's; *bl_file and *bl_line
 * say where the chosen one was declared, and a second endpoints file that
 * declares one too is an error. */
static int load_endpoints_file(fr_workflow *wf, const char *path, const fr_lua_limits *lim,
                               char **bl_file, int *bl_line, fr_error *err)
{
    int rc;
    lua_State *L = NULL;
    fr_workflow *scratch = fr_xcalloc(1, sizeof *scratch);
    fr_load_ctx c;
    fr_load_ctx_init(&c, scratch, "", FR_ECONFIG, true);
    c.file = path;
    L = fr_sandbox_new(lim, "endpoints");
    if (!L) {
        rc = fr_error_set(err, FR_ELIMIT, path, 0,
                          "cannot create a Lua state within the memory limit");
        goto cleanup;
    }
    rc = fr_load_run(L, &c, err);
    if (rc == FR_ENOENT)
        rc = err ? (err->code = FR_ECONFIG) : FR_ECONFIG;
    if (rc == FR_OK)
        rc = check_duplicates(wf, scratch, err);
    if (rc == FR_OK && scratch->baseline && wf->baseline && *bl_file &&
        strcmp(*bl_file, wf->path) != 0)
        rc = fr_error_set(err, FR_ECONFIG, path, c.baseline_line,
                          "baseline is also declared at %s:%d; declare it in one endpoints "
                          "file only",
                          *bl_file, *bl_line);
    if (rc != FR_OK)
        goto cleanup;
    merge_endpoints(wf, scratch);
    if (!wf->baseline && scratch->baseline) {
        wf->baseline = scratch->baseline;
        scratch->baseline = NULL;
        free(*bl_file);
        *bl_file = fr_xstrdup(path);
        *bl_line = c.baseline_line;
    }
cleanup:
    fr_load_ctx_close(&c);
    fr_sandbox_free(L);
    fr_workflow_free(scratch);
    return rc;
}

/* Reads the endpoints files: every --endpoints in order (each must exist),
 * else the first default one found (if any). */
static int load_endpoints(fr_workflow *wf, const fr_load_opts *opts, const fr_lua_limits *lim,
                          char **bl_file, int *bl_line, fr_error *err)
{
    char *path = NULL;
    int rc = find_endpoints_file(opts, &path, err);
    if (rc == FR_OK && path)
        rc = load_endpoints_file(wf, path, lim, bl_file, bl_line, err);
    free(path);
    for (size_t i = 0; rc == FR_OK && opts && opts->endpoints_path && i < opts->nmore_endpoints;
         i++) {
        const char *more = opts->more_endpoints[i];
        if (access(more, R_OK) != 0)
            rc = fr_error_set(err, FR_ECONFIG, more, 0,
                              "cannot read the endpoints file given with --endpoints");
        else
            rc = load_endpoints_file(wf, more, lim, bl_file, bl_line, err);
    }
    return rc;
}

static void suggestion(char *buf, size_t n, const char *word, const char *const *names,
                       size_t count);

/* Whether a string prompt or `when` expression of the workflow has a
 * {{var.NAME}} placeholder. */
static bool var_used(const fr_workflow *wf, const char *name)
{
    for (size_t t = 0; t < wf->ntasks; t++)
        if ((wf->tasks[t].prompt && fr_template_uses_var(wf->tasks[t].prompt, name)) ||
            (wf->tasks[t].when && fr_template_uses_var(wf->tasks[t].when, name)))
            return true;
    return false;
}

/* A --var that workflow{vars=} does not declare and no placeholder uses is
 * likely a typo: a warning, with the closest declared name. Not an error: a
 * prompt function may read ctx.var.NAME. Runs before the --vars are applied. */
static void warn_unused_var(const fr_workflow *wf, const char *name, const fr_load_opts *opts)
{
    if (json_object_get(wf->vars, name) || var_used(wf, name))
        return;
    size_t n = json_object_size(wf->vars), k = 0;
    const char **names = fr_xcalloc(n + 1, sizeof *names);
    const char *key;
    json_t *v;
    json_object_foreach(wf->vars, key, v)
    {
        names[k++] = key;
    }
    bool has_fn = false;
    for (size_t t = 0; t < wf->ntasks; t++)
        has_fn |= !wf->tasks[t].prompt;
    char sug[300];
    suggestion(sug, sizeof sug, name, names, k);
    char *msg = fr_xasprintf("--var '%s': the workflow does not declare it in workflow { vars = "
                             "... } and no {{var.%s}} uses it%s%s",
                             name, name, sug,
                             has_fn ? " (a prompt function may still read it as ctx.var)" : "");
    if (opts->warn)
        opts->warn(opts->warn_ud, msg);
    else
        fr_log_event(FR_LOG_WARN, "load", "workflow.warning", "%s", msg);
    free(msg);
    free(names);
}

/* Warns about each well-formed --var the workflow neither declares nor
 * uses; apply_vars reports the malformed ones. */
static void warn_unused_vars(const fr_workflow *wf, const fr_load_opts *opts)
{
    for (size_t i = 0; opts && i < opts->nvars; i++) {
        const char *eq = opts->vars[i] ? strchr(opts->vars[i], '=') : NULL;
        char *name = eq ? fr_xstrndup(opts->vars[i], (size_t)(eq - opts->vars[i])) : NULL;
        if (name && fr_load_valid_name(name))
            warn_unused_var(wf, name, opts);
        free(name);
    }
}

/* Applies --var name=value strings over workflow{vars=}. */
static int apply_vars(fr_workflow *wf, const fr_load_opts *opts, fr_error *err)
{
    for (size_t i = 0; opts && i < opts->nvars; i++) {
        const char *s = opts->vars[i];
        const char *eq = s ? strchr(s, '=') : NULL;
        char *name = eq ? fr_xstrndup(s, (size_t)(eq - s)) : NULL;
        if (!name || !fr_load_valid_name(name)) {
            free(name);
            return fr_error_set(err, FR_EWORKFLOW, "--var", 0,
                                "malformed --var '%s': expected name=value, with a name of "
                                "letters, digits, '_', '.' and '-'",
                                s ? s : "(null)");
        }
        json_t *v = json_string(eq + 1);
        if (!v) {
            free(name);
            return fr_error_set(err, FR_EWORKFLOW, "--var", 0,
                                "--var '%s': the value is not valid UTF-8", s);
        }
        json_object_set_new(wf->vars, name, v);
        free(name);
    }
    return FR_OK;
}

static const char **task_names(const fr_workflow *wf)
{
    const char **names = fr_xcalloc(wf->ntasks + 1, sizeof *names);
    for (size_t i = 0; i < wf->ntasks; i++)
        names[i] = wf->tasks[i].name;
    return names;
}

/* Formats "; did you mean 'x'?" for `word` among `names`, or "". */
static void suggestion(char *buf, size_t n, const char *word, const char *const *names,
                       size_t count)
{
    const char *s = fr_suggest(word, names, count);
    if (s)
        snprintf(buf, n, "; did you mean '%s'?", s);
    else
        buf[0] = '\0';
}

/* Resolves task `i`'s agent through `agents` (name -> index). */
static int resolve_agent(fr_workflow *wf, fr_load_ctx *c, const fr_strmap *agents, size_t i,
                         fr_error *err)
{
    fr_task_spec *t = &wf->tasks[i];
    const char *name = c->task_agents[i];
    long a = fr_strmap_get(agents, name);
    if (a < 0) {
        const char **names = fr_xcalloc(wf->nagents + 1, sizeof *names);
        for (size_t k = 0; k < wf->nagents; k++)
            names[k] = wf->agents[k].name;
        char sug[300];
        suggestion(sug, sizeof sug, name, names, wf->nagents);
        free(names);
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line, "task '%s': unknown agent '%s'%s",
                            t->name, name, sug);
    }
    t->agent = (size_t)a;
    if (!t->type && wf->agents[a].type)
        t->type = fr_xstrdup(wf->agents[a].type);
    if (wf->agents[a].is_private) {
        if (c->task_private_given[i] && !t->is_private)
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                                "task '%s' sets private = false but its agent '%s' (%s:%d) is "
                                "private, which makes every task of the agent private; remove "
                                "private = false, or give the task another agent",
                                t->name, name, wf->agents[a].file, wf->agents[a].line);
        t->is_private = true;
    }
    if (t->is_private && t->declassify)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' is private%s and sets declassify = true; declassify only "
                            "lifts privacy inherited from dependencies: remove one of them",
                            t->name, wf->agents[a].is_private ? " (its agent is private)" : "");
    return FR_OK;
}

/* The agents' names in an index (owned; fr_strmap_free): each task looks
 * its agent up once, without a scan. */
static fr_strmap *agent_index(const fr_workflow *wf)
{
    fr_strmap *m = fr_strmap_new(wf->nagents);
    for (size_t i = 0; i < wf->nagents; i++)
        fr_strmap_put(m, wf->agents[i].name, i); /* duplicates were refused */
    return m;
}

/* The index in wf->tasks of the task named `name` (borrowed), or -1: a
 * lookup, not a scan, in the names the declarations recorded while the
 * file ran (a workflow of 10,000 tasks loads in linear time, without a
 * second index). Every task's body has run by now. */
static long task_named(const fr_load_ctx *c, const char *name)
{
    const struct fr_strmap *m = c->pending_names[FR_DECL_TASK];
    long p = m ? fr_strmap_get(m, name) : -1;
    return p < 0 ? -1 : (long)c->pending[p].index;
}

/* Resolves task `i`'s deps by name. `seen` (one per task, zero at first)
 * marks with i + 1 the deps task i already listed. */
static int resolve_deps(fr_workflow *wf, const fr_load_ctx *c, size_t i, size_t *seen,
                        fr_error *err)
{
    fr_task_spec *t = &wf->tasks[i];
    t->dep_index = fr_xcalloc(t->ndeps ? t->ndeps : 1, sizeof *t->dep_index);
    for (size_t k = 0; k < t->ndeps; k++) {
        const char *dep = t->deps[k];
        long d = task_named(c, dep);
        if (d == (long)i) /* names are unique: the task's own */
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line, "task '%s' depends on itself",
                                t->name);
        /* A dep listed twice was found the first time (else that one failed). */
        if (d >= 0 && seen[d] == i + 1)
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                                "task '%s': dependency '%s' is listed twice", t->name, dep);
        if (d < 0) {
            /* The error path alone lists the names for a did-you-mean. */
            const char **names = task_names(wf);
            char sug[300];
            suggestion(sug, sizeof sug, dep, names, wf->ntasks);
            free(names);
            return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                                "task '%s': depends on unknown task '%s'%s", t->name, dep, sug);
        }
        seen[d] = i + 1;
        t->dep_index[k] = (size_t)d;
    }
    return FR_OK;
}

static int resolve_pins(fr_workflow *wf, size_t i, fr_error *err)
{
    fr_task_spec *t = &wf->tasks[i];
    const char *by_agent = wf->agents[t->agent].is_private ? " (its agent is private)" : "";
    if (t->is_private && t->tier == FR_TIER_CLOUD)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' is private%s but pinned to tier 'cloud'; private tasks "
                            "never leave the local tier",
                            t->name, by_agent);
    if (!t->endpoint)
        return FR_OK;
    long e = fr_workflow_find_endpoint(wf, t->endpoint);
    if (e < 0) {
        const char **names = fr_xcalloc(wf->nendpoints + 1, sizeof *names);
        for (size_t k = 0; k < wf->nendpoints; k++)
            names[k] = wf->endpoints[k].name;
        char sug[300];
        suggestion(sug, sizeof sug, t->endpoint, names, wf->nendpoints);
        free(names);
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': field 'endpoint' names unknown endpoint '%s'%s", t->name,
                            t->endpoint, sug);
    }
    const fr_endpoint_spec *ep = &wf->endpoints[e];
    if (t->is_private && ep->tier == FR_TIER_CLOUD)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' is private%s but pinned to cloud endpoint '%s'; private "
                            "tasks never leave the local tier",
                            t->name, by_agent, ep->name);
    if (t->tier != FR_TIER_ANY && t->tier != ep->tier)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' is pinned to tier '%s' and to endpoint '%s', which is %s",
                            t->name, fr_tier_name(t->tier), ep->name, fr_tier_name(ep->tier));
    return FR_OK;
}

/* Checks that task `t`'s save path is relative and stays inside the
 * workflow's folder once "." and ".." are resolved, unless `anywhere`.
 * Symbolic links are the run's to check (engine/run: when it starts and
 * when it writes), since they can change after loading. */
static int check_save(const fr_workflow *wf, const fr_task_spec *t, bool anywhere, fr_error *err)
{
    if (!t->save || anywhere)
        return FR_OK;
    const char *why = NULL;
    long depth = 0;
    if (t->save[0] == '/')
        why = "is an absolute path";
    for (const char *p = t->save; !why && *p;) {
        size_t len = strcspn(p, "/");
        if (len == 2 && p[0] == '.' && p[1] == '.')
            depth--;
        else if (len > 0 && !(len == 1 && p[0] == '.'))
            depth++;
        if (depth < 0)
            why = "climbs out of the workflow's folder with '..'";
        p += len;
        if (*p == '/')
            p++;
    }
    if (!why && t->save[strlen(t->save) - 1] == '/')
        why = "ends with '/' (name a file)";
    else if (!why && depth == 0)
        why = "names the workflow's folder itself (name a file)";
    if (!why)
        return FR_OK;
    return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                        "task '%s': field 'save' ('%.200s') %s; save paths are relative to the "
                        "workflow's folder (%.200s) and stay inside it: write one such as "
                        "'out/%s.md', or run with --allow-save-anywhere to allow this path",
                        t->name, t->save, why, wf->dir, t->name);
}

/*
 * Privacy follows the data: a task that receives a private task's output
 * (every dependency passes its output, through a placeholder or ctx) is
 * private too, transitively, unless it says declassify = true. A
 * breadth-first walk from the tasks that are private by themselves, over
 * dependents: each task turns private at most once, so it ends on a cyclic
 * graph too (engine/graph refuses cycles later), and private_from names the
 * nearest source in hops, the first declared on a tie.
 */
static void propagate_privacy(fr_workflow *wf)
{
    size_t n = wf->ntasks, nedges = 0;
    size_t *first = fr_xcalloc(n + 1, sizeof *first); /* dependents of u: users[first[u]..] */
    for (size_t v = 0; v < n; v++)
        for (size_t k = 0; k < wf->tasks[v].ndeps; k++) {
            first[wf->tasks[v].dep_index[k] + 1]++;
            nedges++;
        }
    for (size_t u = 0; u < n; u++)
        first[u + 1] += first[u];
    size_t *fill = fr_xcalloc(n ? n : 1, sizeof *fill);
    size_t *users = fr_xcalloc(nedges ? nedges : 1, sizeof *users);
    for (size_t v = 0; v < n; v++)
        for (size_t k = 0; k < wf->tasks[v].ndeps; k++) {
            size_t u = wf->tasks[v].dep_index[k];
            users[first[u] + fill[u]++] = v;
        }
    size_t *queue = fr_xcalloc(n ? n : 1, sizeof *queue), head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        if (wf->tasks[i].is_private)
            queue[tail++] = i;
    while (head < tail) {
        size_t u = queue[head++];
        long origin = wf->tasks[u].private_from >= 0 ? wf->tasks[u].private_from : (long)u;
        for (size_t k = first[u]; k < first[u + 1]; k++) {
            fr_task_spec *v = &wf->tasks[users[k]];
            if (v->is_private)
                continue;
            if (v->declassify) {
                if (v->declassified_from < 0)
                    v->declassified_from = (long)u;
                continue;
            }
            v->is_private = true;
            v->private_from = origin;
            v->private_via = (long)u;
            queue[tail++] = users[k];
        }
    }
    free(queue);
    free(users);
    free(fill);
    free(first);
}

/* A task pinned to the cloud (tier or endpoint) cannot inherit privacy. */
static int check_inherited_pins(const fr_workflow *wf, fr_error *err)
{
    for (size_t i = 0; i < wf->ntasks; i++) {
        const fr_task_spec *t = &wf->tasks[i];
        if (t->private_from < 0)
            continue;
        long e = t->endpoint ? fr_workflow_find_endpoint(wf, t->endpoint) : -1;
        bool cloud = t->tier == FR_TIER_CLOUD || (e >= 0 && wf->endpoints[e].tier == FR_TIER_CLOUD);
        if (!cloud)
            continue;
        const fr_task_spec *src = &wf->tasks[t->private_from];
        char pin[300], via[300] = "";
        if (e >= 0)
            snprintf(pin, sizeof pin, "cloud endpoint '%s'", wf->endpoints[e].name);
        else
            snprintf(pin, sizeof pin, "tier 'cloud'");
        if (t->private_via != t->private_from)
            snprintf(via, sizeof via, " through '%s'", wf->tasks[t->private_via].name);
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s' is pinned to %s but receives the output of private task "
                            "'%s' (%s:%d)%s, so it is private too and may only run locally; pin "
                            "it to a local endpoint, or set declassify = true on '%s' if what it "
                            "sends may leave the local tier",
                            t->name, pin, src->name, src->file, src->line, via, t->name);
    }
    return FR_OK;
}

/* Writes what a user reads about task `task`'s privacy into `buf` (`n`
 * bytes); see workflow.h. Returns `buf`. */
const char *fr_workflow_privacy_text(const fr_workflow *wf, size_t task, char *buf, size_t n)
{
    const fr_task_spec *t = &wf->tasks[task];
    if (t->private_from >= 0 && t->private_via >= 0 && t->private_via != t->private_from)
        snprintf(buf, n, "private: inherited from '%s' via '%s'", wf->tasks[t->private_from].name,
                 wf->tasks[t->private_via].name);
    else if (t->private_from >= 0)
        snprintf(buf, n, "private: inherited from '%s'", wf->tasks[t->private_from].name);
    else if (t->is_private && wf->agents[t->agent].is_private)
        snprintf(buf, n, "private: its agent '%s' is private", wf->agents[t->agent].name);
    else if (t->is_private)
        snprintf(buf, n, "private");
    else if (t->declassified_from >= 0)
        snprintf(buf, n, "declassified: receives the output of private task '%s'",
                 wf->tasks[t->declassified_from].name);
    else if (n > 0)
        buf[0] = '\0';
    return buf;
}

/* Checks what decides whether task `t` runs: the placeholders of a `when`
 * expression (against its deps and `vars`, borrowed), and that an
 * any_failed trigger has deps that can fail. FR_OK or FR_EWORKFLOW with
 * `err` at the task. */
static int check_decision(const fr_task_spec *t, const json_t *vars, fr_error *err)
{
    if (t->trigger == FR_TRIGGER_ANY_FAILED && t->ndeps == 0)
        return fr_error_set(err, FR_EWORKFLOW, t->file, t->line,
                            "task '%s': trigger = \"any_failed\" runs a task only when one of "
                            "its deps did not succeed, and it has no deps (add deps, or remove "
                            "the trigger)",
                            t->name);
    if (!t->when)
        return FR_OK;
    fr_error terr = {0};
    int rc = fr_template_check_item(t->when, (const char *const *)t->deps, t->ndeps, vars,
                                    t->foreach != NULL, &terr);
    if (rc != FR_OK)
        fr_error_set(err, rc, t->file, t->line, "task '%s': field 'when': %s", t->name, terr.msg);
    return rc;
}

/* Cross-checks every task, in declaration order, and fills defaults. */
static int resolve_tasks(fr_workflow *wf, fr_load_ctx *c, bool save_anywhere, fr_error *err)
{
    int rc = FR_OK;
    fr_strmap *agents = agent_index(wf);
    size_t *seen = fr_xcalloc(wf->ntasks + 1, sizeof *seen);
    for (size_t i = 0; i < wf->ntasks && rc == FR_OK; i++) {
        fr_task_spec *t = &wf->tasks[i];
        if (t->timeout_s < 0)
            t->timeout_s = c->defaults.timeout_s;
        if (t->retries < 0)
            t->retries = c->defaults.retries;
        if (t->max_tokens < 0)
            t->max_tokens = c->defaults.max_tokens;
        if (t->temperature < 0)
            t->temperature = c->defaults.temperature;
        if (t->max_turns < 0)
            t->max_turns = c->defaults.max_turns;
        if (t->max_tool_calls < 0)
            t->max_tool_calls = c->defaults.max_tool_calls;
        rc = resolve_agent(wf, c, agents, i, err);
        if (rc == FR_OK)
            rc = resolve_deps(wf, c, i, seen, err);
        if (rc == FR_OK)
            rc = fr_load_check_foreach(wf, i, err);
        if (rc == FR_OK && t->prompt) {
            fr_error terr = {0};
            rc = fr_template_check_item(t->prompt, (const char *const *)t->deps, t->ndeps, wf->vars,
                                        t->foreach != NULL, &terr);
            if (rc != FR_OK)
                fr_error_set(err, rc, t->file, t->line, "task '%s': %s", t->name, terr.msg);
        }
        if (rc == FR_OK)
            rc = check_decision(t, wf->vars, err);
        if (rc == FR_OK)
            rc = resolve_pins(wf, i, err);
        if (rc == FR_OK)
            rc = check_save(wf, t, save_anywhere, err);
    }
    free(seen);
    fr_strmap_free(agents);
    if (rc == FR_OK) {
        propagate_privacy(wf);
        rc = check_inherited_pins(wf, err);
    }
    if (rc == FR_OK)
        rc = fr_load_resolve_tools(wf, err);
    return rc;
}

static int check_baseline(fr_workflow *wf, const char *file, int line, fr_error *err)
{
    if (!wf->baseline || fr_workflow_find_endpoint(wf, wf->baseline) >= 0)
        return FR_OK;
    const char **names = fr_xcalloc(wf->nendpoints + 1, sizeof *names);
    for (size_t k = 0; k < wf->nendpoints; k++)
        names[k] = wf->endpoints[k].name;
    char sug[300];
    suggestion(sug, sizeof sug, wf->baseline, names, wf->nendpoints);
    free(names);
    /* A workflow's own baseline is part of the workflow; one from an
     * endpoints file is configuration. */
    int code = file && strcmp(file, wf->path) == 0 ? FR_EWORKFLOW : FR_ECONFIG;
    return fr_error_set(err, code, file, line, "baseline names unknown endpoint '%s'%s",
                        wf->baseline, sug);
}

/* A workflow without a task would run nothing and succeed: that is a
 * mistake (an empty or wrong file), never a run. */
static int check_has_tasks(const fr_workflow *wf, fr_error *err)
{
    if (wf->ntasks > 0)
        return FR_OK;
    return fr_error_set(err, FR_EWORKFLOW, wf->path, 0,
                        "no tasks: the workflow declares none; add one with "
                        "task \"name\" { agent = \"...\", prompt = \"...\" }");
}

static int check_has_endpoints(const fr_workflow *wf, fr_error *err)
{
    if (wf->ntasks == 0 || wf->nendpoints > 0)
        return FR_OK;
    char *xdg = xdg_endpoints_path();
    int rc = fr_error_set(err, FR_ECONFIG, wf->path, 0,
                          "the workflow has %zu task%s but no endpoints; declare them with "
                          "endpoint \"name\" { ... } in the workflow or in an endpoints file: "
                          "--endpoints FILE, else ./endpoints.lua, else %s",
                          wf->ntasks, wf->ntasks == 1 ? "" : "s", xdg);
    free(xdg);
    return rc;
}

/*
 * Loads and checks the workflow at `path` (borrowed) with `opts` (borrowed,
 * may be NULL). On FR_OK *out is an owned workflow. Errors: FR_ENOENT (the
 * workflow file cannot be read), FR_ESYNTAX, FR_EWORKFLOW (a declaration or
 * cross-check; a runtime error in the file), FR_ECONFIG (anything wrong in
 * or about the endpoints file, or no endpoints at all), FR_ELIMIT (the file
 * ran out of instructions or memory); `err` holds file:line and message.
 */
int fr_workflow_load(const char *path, const fr_load_opts *opts, fr_workflow **out, fr_error *err)
{
    int rc;
    char *bl_file = NULL;
    int bl_line = 0;
    const fr_lua_limits *lim = opts ? opts->limits : NULL;
    fr_workflow *wf = workflow_new(path);
    fr_load_ctx c;
    fr_load_ctx_init(&c, wf, wf->path, FR_EWORKFLOW, false);
    c.keep_compiled = opts && opts->keep_compiled;
    wf->lua = fr_xcalloc(1, sizeof *wf->lua);
    wf->lua->L = fr_sandbox_new(lim, wf->name);
    if (!wf->lua->L) {
        rc = fr_error_set(err, FR_ELIMIT, path, 0,
                          "cannot create a Lua state within the memory limit");
        goto cleanup;
    }
    rc = fr_load_run(wf->lua->L, &c, err);
    if (rc != FR_OK)
        goto cleanup;
    if (wf->baseline) {
        bl_file = fr_xstrdup(path);
        bl_line = c.baseline_line;
    }
    rc = load_endpoints(wf, opts, lim, &bl_file, &bl_line, err);
    if (rc == FR_OK) {
        warn_unused_vars(wf, opts);
        rc = apply_vars(wf, opts, err);
    }
    wf->save_anywhere = opts && opts->allow_save_anywhere;
    if (rc == FR_OK)
        rc = resolve_tasks(wf, &c, wf->save_anywhere, err);
    if (rc == FR_OK)
        rc = check_baseline(wf, bl_file, bl_line, err);
    if (rc == FR_OK)
        rc = check_has_tasks(wf, err);
    if (rc == FR_OK)
        rc = check_has_endpoints(wf, err);
    if (rc != FR_OK)
        goto cleanup;
    fr_load_reserve_instances(wf);
    *out = wf;
    wf = NULL;
cleanup:
    free(bl_file);
    fr_load_ctx_close(&c);
    fr_workflow_free(wf);
    return rc;
}
