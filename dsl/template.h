#pragma once
/* {{placeholder}} templates in prompts: checked against a task's deps and
 * the workflow's vars at load time, expanded from a context object at run
 * time. Pure C over jansson; no Lua. */

#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Checks every placeholder of `tmpl` (borrowed): each must be {{dep}},
 * {{dep.text}}, {{dep.json}}, {{dep.json.path...}}, {{dep.status}} or
 * {{dep.reason}} for a name in `deps`
 * (borrowed array of `ndeps` names), or {{var.name}} for a key of `vars`
 * (borrowed object, may be NULL). Returns FR_OK, or FR_EWORKFLOW with
 * err->msg naming the placeholder (source/line are left for the caller). */
int fr_template_check(const char *tmpl, const char *const *deps, size_t ndeps, const json_t *vars,
                      fr_error *err);

/* fr_template_check, and with `item` true (a fan-out task's prompt, when
 * and name) {{item}}, {{item.path...}} and {{index}} too. */
int fr_template_check_item(const char *tmpl, const char *const *deps, size_t ndeps,
                           const json_t *vars, bool item, fr_error *err);

/* Whether `tmpl` (borrowed) has no placeholder at all: it renders as
 * itself, whatever the context. */
bool fr_template_is_plain(const char *tmpl);

/* Whether `tmpl` (borrowed) has a {{var.NAME}} placeholder for `name`
 * (borrowed). An unterminated placeholder ends the search. */
bool fr_template_uses_var(const char *tmpl, const char *name);

/* Expands `tmpl` with `ctx` (borrowed; shape as in fr_workflow_render_prompt;
 * a fan-out instance's ctx also has "item" and an integer "index", and a
 * fan-out dependency is an array of results: {{dep}} joins their texts with
 * a blank line, {{dep.json}} is the array of their JSON values).
 * JSON values that are not strings are written as compact JSON; a JSON
 * placeholder of a dependency whose status is not "ok" and that has no JSON
 * output expands to its text (""), not an error. On FR_OK
 * *out is an owned string; otherwise FR_EWORKFLOW with err->msg naming the
 * placeholder that could not be resolved (for example a missing field). */
int fr_template_render(const char *tmpl, const json_t *ctx, char **out, fr_error *err);
