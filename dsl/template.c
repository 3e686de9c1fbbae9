/* {{placeholder}} templates. A placeholder is `{{ path }}` with surrounding
 * whitespace trimmed; the path is dot-separated segments without spaces or
 * braces. `var.NAME` reads a workflow variable; otherwise the longest prefix
 * of the path that names a dependency is the dependency, followed by
 * nothing or `.text` (its text), `.json` (its JSON output),
 * `.json.a.0.b` (a walk into it: object keys, array indices), `.status`
 * (how it ended) or `.reason` (why it did not succeed). There is no
 * escaping: `{{` always opens a placeholder, and text between `{{` and `}}`
 * that is not a valid placeholder is an error at check time.
 *
 * In a fan-out instance (the context has an integer "index"), `item` is the
 * instance's item (`item.a.0` walks into it) and `index` its 1-based
 * position. A dependency that is a fan-out is a list of its instances'
 * results: its text is their texts joined by a blank line, its JSON the
 * array of their JSON values. */

#include "dsl/template.h"

#include "dsl/suggest.h"
#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { PH_TEXT, PH_JSON, PH_VAR, PH_STATUS, PH_REASON, PH_ITEM, PH_INDEX } ph_kind;

/* One parsed placeholder; all pointers borrow from the template. */
typedef struct ph {
    ph_kind kind;
    const char *full; /* trimmed contents */
    size_t full_len;
    const char *name; /* the dependency or variable name */
    size_t name_len;
    const char *path; /* PH_JSON: after "json." ("" for the whole value) */
    size_t path_len;
} ph;

/* Answers whether a dependency named by `len` bytes of `name` exists. */
typedef bool (*has_dep_fn)(const char *name, size_t len, const void *arg);

/* Finds the next "{{" at or after `p`; sets *open, *inner, *inner_len and
 * *next (just after "}}"). Returns 0 at the end of the text, 1 for a
 * placeholder, -1 for an unterminated one. */
static int next_placeholder(const char *p, const char **open, const char **inner, size_t *inner_len,
                            const char **next)
{
    const char *o = strstr(p, "{{");
    if (!o)
        return 0;
    *open = o;
    const char *c = strstr(o + 2, "}}");
    if (!c)
        return -1;
    const char *s = o + 2, *e = c;
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    *inner = s;
    *inner_len = (size_t)(e - s);
    *next = c + 2;
    return 1;
}

static int unterminated(fr_error *err, const char *open)
{
    size_t n = strcspn(open, "\n");
    if (n > 30)
        n = 30;
    return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                        "unterminated placeholder '%.*s' (no closing '}}')", (int)n, open);
}

static bool valid_path(const char *s, size_t n)
{
    if (n == 0 || s[0] == '.' || s[n - 1] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (isspace(ch) || ch == '{' || ch == '}')
            return false;
        if (ch == '.' && s[i + 1] == '.')
            return false;
    }
    return true;
}

static bool seg_is(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n == wl && memcmp(s, word, wl) == 0;
}

/* Length of the part of `s` before a ".text"/".json" segment, for naming
 * the intended dependency in messages. */
static size_t guess_name_len(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '.')
            continue;
        size_t rest = n - i - 1;
        const char *r = s + i + 1;
        if ((rest >= 4 && memcmp(r, "text", 4) == 0 && (rest == 4 || r[4] == '.')) ||
            (rest >= 4 && memcmp(r, "json", 4) == 0 && (rest == 4 || r[4] == '.')) ||
            seg_is(r, rest, "status") || seg_is(r, rest, "reason"))
            return i;
    }
    return n;
}

/* Parses `inner` into `out`. Fails with FR_EWORKFLOW when the text is not
 * a placeholder or names no dependency (`unknown` is then set and the
 * message is left to the caller). */
static int parse(const char *inner, size_t n, has_dep_fn has_dep, const void *arg, bool item,
                 ph *out, bool *unknown, fr_error *err)
{
    *unknown = false;
    memset(out, 0, sizeof *out);
    out->full = inner;
    out->full_len = n;
    if (n == 0)
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0, "empty placeholder '{{}}'");
    if (!valid_path(inner, n))
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                            "'{{%.*s}}' is not a valid placeholder: use {{dep}}, {{dep.text}}, "
                            "{{dep.json.field}} or {{var.name}}",
                            (int)n, inner);
    if (seg_is(inner, n, "var"))
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                            "'{{var}}' needs a variable name, as in {{var.name}}");
    if (n > 4 && memcmp(inner, "var.", 4) == 0) {
        out->kind = PH_VAR;
        out->name = inner + 4;
        out->name_len = n - 4;
        return FR_OK;
    }
    if (item && (seg_is(inner, n, "item") || (n > 5 && memcmp(inner, "item.", 5) == 0))) {
        out->kind = PH_ITEM;
        out->name = inner;
        out->name_len = 4;
        out->path = n > 5 ? inner + 5 : inner + n;
        out->path_len = n > 5 ? n - 5 : 0;
        return FR_OK;
    }
    if (item && seg_is(inner, n, "index")) {
        out->kind = PH_INDEX;
        out->name = inner;
        out->name_len = n;
        return FR_OK;
    }
    /* The longest prefix ending at a segment boundary that is a dep. */
    size_t len = n;
    for (;;) {
        if (has_dep(inner, len, arg))
            break;
        while (len > 0 && inner[len - 1] != '.')
            len--;
        if (len == 0) {
            *unknown = true;
            return FR_EWORKFLOW;
        }
        len--; /* drop the dot */
    }
    out->name = inner;
    out->name_len = len;
    const char *rest = len < n ? inner + len + 1 : inner + n;
    size_t rl = len < n ? n - len - 1 : 0;
    if (rl == 0 || seg_is(rest, rl, "text")) {
        out->kind = PH_TEXT;
    } else if (seg_is(rest, rl, "json")) {
        out->kind = PH_JSON;
        out->path = rest + rl;
    } else if (rl > 5 && memcmp(rest, "json.", 5) == 0) {
        out->kind = PH_JSON;
        out->path = rest + 5;
        out->path_len = rl - 5;
    } else if (seg_is(rest, rl, "status")) {
        out->kind = PH_STATUS;
    } else if (seg_is(rest, rl, "reason")) {
        out->kind = PH_REASON;
    } else {
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                            "'{{%.*s}}': after '%.*s' use nothing, .text, .json or "
                            ".json.<field> (or .status, .reason: how it ended)",
                            (int)n, inner, (int)len, inner);
    }
    return FR_OK;
}

typedef struct dep_list {
    const char *const *deps;
    size_t ndeps;
} dep_list;

static bool in_deps(const char *name, size_t len, const void *arg)
{
    const dep_list *dl = arg;
    for (size_t i = 0; i < dl->ndeps; i++)
        if (strlen(dl->deps[i]) == len && memcmp(dl->deps[i], name, len) == 0)
            return true;
    return false;
}

static int unknown_dep(const ph *p, const dep_list *dl, fr_error *err)
{
    size_t gl = guess_name_len(p->full, p->full_len);
    char *guess = fr_xstrndup(p->full, gl);
    const char *s = fr_suggest(guess, dl->deps, dl->ndeps);
    int rc;
    if (dl->ndeps == 0)
        rc = fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                          "unknown placeholder '{{%.*s}}': this task has no deps (add '%s' "
                          "to deps, or use {{var.name}} for a variable)",
                          (int)p->full_len, p->full, guess);
    else
        rc = fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                          "unknown placeholder '{{%.*s}}': '%s' is not a dependency of this "
                          "task%s%s%s",
                          (int)p->full_len, p->full, guess, s ? "; did you mean '" : "", s ? s : "",
                          s ? "'?" : "");
    free(guess);
    return rc;
}

static int unknown_var(const ph *p, const json_t *vars, fr_error *err)
{
    size_t n = vars ? json_object_size(vars) : 0;
    const char **names = fr_xcalloc(n + 1, sizeof *names);
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)vars, k, v) /* no iterations for NULL */
    {
        names[i++] = k;
    }
    char *name = fr_xstrndup(p->name, p->name_len);
    const char *s = fr_suggest(name, names, i);
    int rc = fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                          "unknown placeholder '{{%.*s}}': no variable '%s' (set it in "
                          "workflow { vars = ... } or with --var %s=...)%s%s%s",
                          (int)p->full_len, p->full, name, name, s ? "; did you mean '" : "",
                          s ? s : "", s ? "'?" : "");
    free(name);
    free(names);
    return rc;
}

/*
 * Checks every placeholder of `tmpl` against `deps` (borrowed, `ndeps`
 * names) and `vars` (borrowed object, may be NULL). Returns FR_OK or
 * FR_EWORKFLOW with err->msg naming the placeholder (did-you-mean included
 * when a name is close); err->source/line are left empty for the caller.
 */
int fr_template_check(const char *tmpl, const char *const *deps, size_t ndeps, const json_t *vars,
                      fr_error *err)
{
    return fr_template_check_item(tmpl, deps, ndeps, vars, false, err);
}

int fr_template_check_item(const char *tmpl, const char *const *deps, size_t ndeps,
                           const json_t *vars, bool item, fr_error *err)
{
    dep_list dl = {deps, ndeps};
    const char *p = tmpl, *open, *inner, *next;
    size_t n;
    int r;
    while ((r = next_placeholder(p, &open, &inner, &n, &next)) != 0) {
        if (r < 0)
            return unterminated(err, open);
        ph pl;
        bool unknown;
        int rc = parse(inner, n, in_deps, &dl, item, &pl, &unknown, err);
        if (unknown)
            return unknown_dep(&pl, &dl, err);
        if (rc != FR_OK)
            return rc;
        if (pl.kind == PH_VAR) {
            if (!vars || !json_object_getn(vars, pl.name, pl.name_len))
                return unknown_var(&pl, vars, err);
        } else if ((pl.kind == PH_JSON || pl.kind == PH_ITEM) && pl.path_len > 0 &&
                   !valid_path(pl.path, pl.path_len)) {
            return fr_error_set(err, FR_EWORKFLOW, NULL, 0, "'{{%.*s}}' is not a valid path",
                                (int)n, inner);
        }
        p = next;
    }
    return FR_OK;
}

bool fr_template_is_plain(const char *tmpl)
{
    return !strstr(tmpl, "{{"); /* `{{` always opens a placeholder */
}

/* Whether `tmpl` has a {{var.NAME}} placeholder for `name`. Borrows both. */
bool fr_template_uses_var(const char *tmpl, const char *name)
{
    const char *p = tmpl, *open, *inner, *next;
    size_t n, nl = strlen(name);
    while (next_placeholder(p, &open, &inner, &n, &next) == 1) {
        if (n == nl + 4 && memcmp(inner, "var.", 4) == 0 && memcmp(inner + 4, name, nl) == 0)
            return true;
        p = next;
    }
    return false;
}

static bool in_ctx(const char *name, size_t len, const void *arg)
{
    const json_t *o = json_object_getn(arg, name, len);
    return o && (json_is_object(o) || json_is_array(o));
}

/* Appends `v`: strings raw, anything else as compact JSON. */
static void put_value(fr_buf *b, const json_t *v)
{
    if (json_is_string(v)) {
        fr_buf_append(b, json_string_value(v), json_string_length(v));
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s)
        fr_buf_puts(b, s);
    free(s);
}

static bool parse_index(const char *s, size_t n, size_t *out)
{
    if (n == 0 || n > 9)
        return false;
    size_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (size_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* Walks `ph->path` from `v`; on failure fills err naming the placeholder. */
static int walk(const ph *p, const json_t *v, const json_t **out, fr_error *err)
{
    const char *s = p->path, *end = p->path + p->path_len;
    while (s < end) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        const char *e = dot ? dot : end;
        size_t sl = (size_t)(e - s);
        int upto = (int)(e - p->path); /* the path so far, for messages */
        const json_t *next = NULL;
        const char *why = "";
        char whybuf[96];
        if (json_is_object(v)) {
            next = json_object_getn(v, s, sl);
        } else if (json_is_array(v)) {
            size_t i;
            if (!parse_index(s, sl, &i)) {
                why = " (it is inside an array: use an index such as .0)";
            } else {
                next = json_array_get(v, i);
                snprintf(whybuf, sizeof whybuf, " (the array has %zu items)", json_array_size(v));
                why = whybuf;
            }
        } else {
            int at = (int)(s - p->path) - 1; /* length of the path before this field */
            const char *kind = json_is_string(v) ? "a string"
                               : json_is_null(v) ? "null"
                                                 : "a number or boolean";
            if (at > 0)
                snprintf(whybuf, sizeof whybuf, " ('%.*s' is %s)", at, p->path, kind);
            else
                snprintf(whybuf, sizeof whybuf, " (the output is %s)", kind);
            why = whybuf;
        }
        if (!next)
            return fr_error_set(
                err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: field '%.*s' not in %.*s's JSON output%s",
                (int)p->full_len, p->full, upto, p->path, (int)p->name_len, p->name, why);
        v = next;
        s = dot ? dot + 1 : end;
    }
    *out = v;
    return FR_OK;
}

static int resolve(const ph *p, const json_t *ctx, const json_t **out, fr_error *err)
{
    int fl = (int)p->full_len, nl = (int)p->name_len;
    if (p->kind == PH_VAR) {
        const json_t *vars = json_object_get(ctx, "var");
        const json_t *v = vars ? json_object_getn(vars, p->name, p->name_len) : NULL;
        if (!v)
            return fr_error_set(err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: variable '%.*s' is not set",
                                fl, p->full, nl, p->name);
        *out = v;
        return FR_OK;
    }
    if (p->kind == PH_INDEX) {
        *out = json_object_get(ctx, "index");
        return FR_OK;
    }
    if (p->kind == PH_ITEM)
        return walk(p, json_object_get(ctx, "item"), out, err);
    const json_t *dep = json_object_getn(ctx, p->name, p->name_len);
    if (p->kind == PH_STATUS || p->kind == PH_REASON) {
        const char *field = p->kind == PH_STATUS ? "status" : "reason";
        const json_t *v = json_object_get(dep, field);
        if (!json_is_string(v))
            return fr_error_set(err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: no %s for '%.*s'", fl,
                                p->full, field, nl, p->name);
        *out = v;
        return FR_OK;
    }
    if (p->kind == PH_TEXT) {
        const json_t *t = json_object_get(dep, "text");
        if (!json_is_string(t))
            return fr_error_set(err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: no text output for '%.*s'",
                                fl, p->full, nl, p->name);
        *out = t;
        return FR_OK;
    }
    const json_t *j = json_object_get(dep, "json");
    const char *status = json_string_value(json_object_get(dep, "status"));
    if ((!j || json_is_null(j)) && status && strcmp(status, "ok") != 0) {
        /* A dependency that did not succeed has no output: a task that runs
         * anyway (trigger all_done, any_failed) reads "" for it. */
        *out = json_object_get(dep, "text");
        if (*out)
            return FR_OK;
    }
    if (!j || json_is_null(j))
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                            "{{%.*s}}: '%.*s' has no JSON output (give it a schema)", fl, p->full,
                            nl, p->name);
    return walk(p, j, out, err);
}

/* A fan-out dependency `list` (its instances' results, in item order):
 * the texts joined by a blank line, or the array of their JSON values (and
 * a walk into it). On FR_OK *out is owned. */
static int resolve_list(const ph *p, const json_t *list, json_t **out, fr_error *err)
{
    int fl = (int)p->full_len, nl = (int)p->name_len;
    if (p->kind == PH_STATUS || p->kind == PH_REASON)
        return fr_error_set(err, FR_EWORKFLOW, NULL, 0,
                            "{{%.*s}}: '%.*s' is a fan-out, a list of instances: read each "
                            "one's status and reason in a function (ctx.%.*s[i].status)",
                            fl, p->full, nl, p->name, nl, p->name);
    size_t i;
    const json_t *r;
    if (p->kind == PH_TEXT) {
        fr_buf b;
        fr_buf_init(&b, 0);
        json_array_foreach(list, i, r)
        {
            if (i > 0)
                fr_buf_puts(&b, "\n\n");
            const char *t = json_string_value(json_object_get(r, "text"));
            fr_buf_puts(&b, t ? t : "");
        }
        char *s = fr_buf_take(&b);
        fr_buf_close(&b);
        *out = json_string(s);
        free(s);
        return *out ? FR_OK
                    : fr_error_set(err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: not text", fl, p->full);
    }
    json_t *all = json_array();
    json_array_foreach(list, i, r)
    {
        const json_t *j = json_object_get(r, "json");
        json_array_append_new(all, j ? json_incref((json_t *)j) : json_null());
    }
    const json_t *v;
    int rc = walk(p, all, &v, err);
    *out = rc == FR_OK ? json_incref((json_t *)v) : NULL;
    json_decref(all);
    return rc;
}

/*
 * Expands `tmpl` (borrowed) from `ctx` (borrowed object: dep name ->
 * {text, json, status, reason}, the last two optional; "var" -> object). Strings are inserted raw,
 * other JSON values as compact JSON. On FR_OK *out is an owned string. On FR_EWORKFLOW err->msg
 * names the placeholder, e.g. "{{design.json.files}}: field 'files' not in design's JSON output".
 */
int fr_template_render(const char *tmpl, const json_t *ctx, char **out, fr_error *err)
{
    int rc = FR_OK;
    fr_buf b;
    fr_buf_init(&b, 0);
    const char *p = tmpl, *open, *inner, *next;
    size_t n;
    int r;
    while ((r = next_placeholder(p, &open, &inner, &n, &next)) != 0) {
        if (r < 0) {
            rc = unterminated(err, open);
            goto cleanup;
        }
        fr_buf_append(&b, p, (size_t)(open - p));
        ph pl;
        bool unknown;
        rc = parse(inner, n, in_ctx, ctx, json_is_integer(json_object_get(ctx, "index")), &pl,
                   &unknown, err);
        if (unknown) {
            size_t gl = guess_name_len(inner, n);
            rc = fr_error_set(err, FR_EWORKFLOW, NULL, 0, "{{%.*s}}: no output for '%.*s'", (int)n,
                              inner, (int)gl, inner);
        }
        if (rc != FR_OK)
            goto cleanup;
        const json_t *list = pl.kind == PH_VAR || pl.kind == PH_ITEM || pl.kind == PH_INDEX
                                 ? NULL
                                 : json_object_getn(ctx, pl.name, pl.name_len);
        if (json_is_array(list)) {
            json_t *owned = NULL;
            rc = resolve_list(&pl, list, &owned, err);
            if (rc != FR_OK)
                goto cleanup;
            put_value(&b, owned);
            json_decref(owned);
        } else {
            const json_t *v;
            rc = resolve(&pl, ctx, &v, err);
            if (rc != FR_OK)
                goto cleanup;
            put_value(&b, v);
        }
        p = next;
    }
    fr_buf_puts(&b, p);
    *out = fr_buf_take(&b);
cleanup:
    fr_buf_close(&b);
    return rc;
}
