/* Tests of dsl/template: checking placeholders against deps and vars at
 * load time, and expanding them from a run's context. */

#include "dsl/template.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *const deps[] = {"design", "api", "v1.2", "v1"};
#define NDEPS (sizeof deps / sizeof *deps)

static json_t *vars(void)
{
    return json_pack("{s:s, s:s}", "idea", "a todo app", "n", "3");
}

static int check(const char *tmpl, fr_error *err)
{
    json_t *v = vars();
    memset(err, 0, sizeof *err);
    int rc = fr_template_check(tmpl, deps, NDEPS, v, err);
    json_decref(v);
    return rc;
}

static void assert_check_fails(const char *tmpl, const char *words)
{
    fr_error err;
    int rc = check(tmpl, &err);
    if (rc == FR_OK || !strstr(err.msg, words))
        print_error("template \"%s\": rc=%d msg=\"%s\", want \"%s\"\n", tmpl, rc, err.msg, words);
    assert_int_equal(rc, FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, words));
    assert_string_equal(err.source, ""); /* left for the caller */
    assert_int_equal(err.line, 0);
}

static void test_check_accepts(void **state)
{
    (void)state;
    fr_error err;
    const char *good[] = {
        "",
        "no placeholders at all",
        "{{design}}",
        "{{ design }}",
        "{{\tdesign.text\n}}",
        "{{design.json}}",
        "{{design.json.files.0.name}}",
        "{{var.idea}} and {{ var.n }}",
        "{{v1.2}} {{v1.2.text}} {{v1.2.json.x}} {{v1.json.x}}",
        "a single { brace } and }} closers are text",
        "{{api}}{{design}}",
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int rc = check(good[i], &err);
        if (rc != FR_OK)
            print_error("template \"%s\": %s\n", good[i], err.msg);
        assert_int_equal(rc, FR_OK);
    }
    /* No deps and no vars: plain text still passes. */
    assert_int_equal(fr_template_check("plain", NULL, 0, NULL, &err), FR_OK);
}

static void test_check_rejects(void **state)
{
    (void)state;
    assert_check_fails("Use {{desgin}} now",
                       "unknown placeholder '{{desgin}}': 'desgin' is not a dependency of this "
                       "task; did you mean 'design'?");
    assert_check_fails("{{desgin.json.files}}", "'desgin' is not a dependency");
    assert_check_fails("{{other}}", "unknown placeholder '{{other}}'");
    assert_check_fails("{{var.idae}}", "no variable 'idae'");
    assert_check_fails("{{var.idae}}", "did you mean 'idea'?");
    assert_check_fails("{{var}}", "'{{var}}' needs a variable name");
    assert_check_fails("{{design.txt}}",
                       "after 'design' use nothing, .text, .json or .json.<field>");
    assert_check_fails("{{}}", "empty placeholder '{{}}'");
    assert_check_fails("{{   }}", "empty placeholder");
    assert_check_fails("{{design..text}}", "is not a valid placeholder");
    assert_check_fails("{{.design}}", "is not a valid placeholder");
    assert_check_fails("{{design.json.}}", "is not a valid placeholder");
    assert_check_fails("{{design text}}", "is not a valid placeholder");
    assert_check_fails("{{{{design}}}}", "is not a valid placeholder");
    assert_check_fails("Build {{var.idea",
                       "unterminated placeholder '{{var.idea' (no closing '}}')");
    assert_check_fails("ok {{design}} then {{api", "unterminated placeholder '{{api'");
    assert_check_fails("{{design}", "unterminated");

    fr_error err;
    assert_int_equal(fr_template_check("{{a}}", NULL, 0, NULL, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "this task has no deps"));
    assert_int_equal(fr_template_check("{{var.x}}", NULL, 0, NULL, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "no variable 'x'"));
}

static json_t *context(void)
{
    return json_pack("{s:{s:s, s:{s:[s,s], s:{s:i, s:f, s:b, s:n, s:s}, s:[{s:s}]}},"
                     " s:{s:s, s:n}, s:{s:s, s:s}, s:{s:s, s:i}, s:{s:s, s:s}}",
                     "design", "text", "the design", "json", "files", "a.c", "b.c", "meta", "count",
                     2, "ratio", 0.5, "ok", 1, "none", "note", "hi \"there\"", "list", "k", "v",
                     "api", "text", "the code", "json", "v1.2", "text", "dotted", "json", "[1]",
                     "var", "idea", "a todo app", "n", 3, "v1", "text", "short", "json", "{}");
}

static void assert_renders(const char *tmpl, const char *want)
{
    json_t *ctx = context();
    char *out = NULL;
    fr_error err = {0};
    int rc = fr_template_render(tmpl, ctx, &out, &err);
    if (rc != FR_OK)
        print_error("template \"%s\": %s\n", tmpl, err.msg);
    assert_int_equal(rc, FR_OK);
    assert_string_equal(out, want);
    free(out);
    json_decref(ctx);
}

static void assert_render_fails(const char *tmpl, const char *words)
{
    json_t *ctx = context();
    char *out = NULL;
    fr_error err = {0};
    int rc = fr_template_render(tmpl, ctx, &out, &err);
    if (rc == FR_OK || !strstr(err.msg, words))
        print_error("template \"%s\": rc=%d msg=\"%s\", want \"%s\"\n", tmpl, rc, err.msg, words);
    assert_int_equal(rc, FR_EWORKFLOW);
    assert_null(out);
    assert_non_null(strstr(err.msg, words));
    json_decref(ctx);
}

static void test_render_kinds(void **state)
{
    (void)state;
    assert_renders("", "");
    assert_renders("plain text", "plain text");
    assert_renders("A: {{design}}", "A: the design");
    assert_renders("A: {{ design.text }}!", "A: the design!");
    assert_renders("{{api}}|{{design}}", "the code|the design");
    assert_renders("{{design.json.files}}", "[\"a.c\",\"b.c\"]");
    assert_renders("{{design.json.files.1}}", "b.c"); /* strings raw */
    assert_renders("{{design.json.meta.count}}", "2");
    assert_renders("{{design.json.meta.ratio}}", "0.5");
    assert_renders("{{design.json.meta.ok}}", "true");
    assert_renders("{{design.json.meta.none}}", "null");
    assert_renders("{{design.json.meta.note}}", "hi \"there\"");
    assert_renders("{{design.json.list.0}}", "{\"k\":\"v\"}");
    assert_renders("{{design.json.list.0.k}}", "v");
    assert_renders("{{design.json}}",
                   "{\"files\":[\"a.c\",\"b.c\"],\"meta\":{\"count\":2,\"ratio\":0.5,\"ok\":true,"
                   "\"none\":null,\"note\":\"hi \\\"there\\\"\"},\"list\":[{\"k\":\"v\"}]}");
    assert_renders("Build {{var.idea}} x{{ var.n }}", "Build a todo app x3");
    /* Dotted task names: the longest name that exists wins. */
    assert_renders("{{v1.2}} {{v1.2.json}} {{v1}} {{v1.json}}", "dotted [1] short {}");
    assert_renders("{ single } and }} stay", "{ single } and }} stay");
    assert_renders("{{design}}}", "the design}");
}

static void test_render_errors(void **state)
{
    (void)state;
    assert_render_fails("{{design.json.nope}}",
                        "{{design.json.nope}}: field 'nope' not in design's JSON output");
    assert_render_fails("{{design.json.meta.nope}}",
                        "field 'meta.nope' not in design's JSON output");
    assert_render_fails("{{design.json.files.2}}", "field 'files.2' not in design's JSON output "
                                                   "(the array has 2 items)");
    assert_render_fails("{{design.json.files.x}}", "use an index such as .0");
    assert_render_fails("{{design.json.files.-1}}", "use an index such as .0");
    assert_render_fails("{{design.json.meta.count.x}}", "('meta.count' is a number or boolean)");
    assert_render_fails("{{design.json.meta.note.x}}", "('meta.note' is a string)");
    assert_render_fails("{{api.json}}", "{{api.json}}: 'api' has no JSON output");
    assert_render_fails("{{api.json.x}}", "'api' has no JSON output");
    assert_render_fails("{{missing}}", "{{missing}}: no output for 'missing'");
    assert_render_fails("{{missing.json.x}}", "no output for 'missing'");
    assert_render_fails("{{var.nope}}", "{{var.nope}}: variable 'nope' is not set");
    assert_render_fails("x {{design", "unterminated placeholder");
    assert_render_fails("{{}}", "empty placeholder");

    /* A dep whose text is missing in the context. */
    json_t *ctx = json_pack("{s:{s:n}}", "d", "json");
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_template_render("{{d}}", ctx, &out, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "no text output for 'd'"));
    /* No "var" object at all. */
    assert_int_equal(fr_template_render("{{var.x}}", ctx, &out, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "variable 'x' is not set"));
    json_decref(ctx);
}

/* Text with embedded NUL-free UTF-8 and long outputs passes through as is. */
static void test_render_large(void **state)
{
    (void)state;
    size_t n = 100000;
    char *big = malloc(n + 1);
    memset(big, 'z', n);
    big[n] = '\0';
    json_t *ctx = json_pack("{s:{s:s}}", "d", "text", big);
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(fr_template_render("é{{d}}é", ctx, &out, &err), FR_OK);
    assert_int_equal(strlen(out), n + 4);
    assert_memory_equal(out, "é", 2);
    free(out);
    free(big);
    json_decref(ctx);
}

/* fr_template_uses_var finds {{var.NAME}} with or without spaces, and
 * nothing else: not a longer name, not a dependency of the same name. */
static void test_uses_var(void **state)
{
    (void)state;
    assert_true(fr_template_uses_var("a {{var.topic}} b", "topic"));
    assert_true(fr_template_uses_var("{{ var.topic }}", "topic"));
    assert_false(fr_template_uses_var("{{var.topics}}", "topic"));
    assert_false(fr_template_uses_var("{{var.top}}", "topic"));
    assert_false(fr_template_uses_var("{{topic}} var.topic", "topic"));
    assert_false(fr_template_uses_var("{{var.topic", "topic"));
    assert_true(fr_template_uses_var("{{x}} {{var.a}} {{var.topic}}", "topic"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_accepts), cmocka_unit_test(test_check_rejects),
        cmocka_unit_test(test_render_kinds),  cmocka_unit_test(test_render_errors),
        cmocka_unit_test(test_render_large),  cmocka_unit_test(test_uses_var),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
