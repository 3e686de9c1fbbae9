/* Fan-out: the DSL's fields (foreach, name, max_items, plan_items) as
 * loaded and their load errors; instances added to a loaded workflow and
 * rendered with their item; the join's list in templates; the scheduler's
 * and the graph's growth; engine/fanout's expansion (a list, an empty one,
 * one over max_items, not an array, a missing path, duplicate names, a
 * plan's estimate) and the fan-out's end from its instances'. Runs from
 * the source root (CTest's working directory). */

#include "dsl/template.h"
#include "engine/fanout.h"
#include "engine/graph.h"
#include "engine/results.h"
#include "engine/sched.h"
#include "tests/unit/support/dsl_fixture.h"

static long task_of(const fr_workflow *wf, const char *name)
{
    long i = fr_workflow_find_task(wf, name);
    assert_true(i >= 0);
    return i;
}

static void test_fields_load(void **state)
{
    (void)state;
    fr_workflow *wf = load_ok(FIX "/good_foreach.lua", NULL);
    const fr_task_spec *m = &wf->tasks[task_of(wf, "module")];
    assert_string_equal(m->foreach, "plan.json.modules");
    assert_int_equal(m->foreach_dep, task_of(wf, "plan"));
    assert_string_equal(m->foreach_path, "modules");
    assert_string_equal(m->instance_name, "impl-{{item.name}}");
    assert_int_equal(m->max_items, 5);
    assert_int_equal(m->plan_items, 3);
    const fr_task_spec *e = &wf->tasks[task_of(wf, "each")];
    assert_string_equal(e->foreach_path, "");
    assert_null(e->instance_name);
    assert_int_equal(e->max_items, 100); /* the default */
    assert_int_equal(e->plan_items, -1); /* unknown */
    const fr_task_spec *p = &wf->tasks[task_of(wf, "plan")];
    assert_null(p->foreach);
    assert_false(p->is_instance);
    /* Room for every instance, reserved at load. */
    assert_int_equal(wf->ntasks, 4);
    assert_int_equal(wf->tasks_cap, 4 + 5 + 100);
    fr_workflow_free(wf);
}

/* Loads a workflow whose third line is `line3` (the task "m" after "plan"
 * and "other"), which must fail at line 3 with `want` in the message. */
static void expect_load_error(const char *line3, const char *want)
{
    char path[] = "/tmp/flowrun-fanout-XXXXXX.lua";
    int fd = mkstemps(path, 4);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f,
            "endpoint \"e\" { tier = \"local\", url = \"http://127.0.0.1:9/v1\", model = \"m\" }\n"
            "agent \"a\" {} task \"plan\" { agent = \"a\", prompt = \"p\" } task \"other\" { "
            "agent = \"a\", deps = { \"plan\" }, prompt = \"o\", foreach = \"plan.json\" }\n"
            "%s\n",
            line3);
    fclose(f);
    fr_error err;
    int rc = load_err(path, NULL, &err);
    unlink(path);
    if (rc != FR_EWORKFLOW || err.line != 3 || !strstr(err.msg, want))
        print_error("%s\n  got %s line %d: %s\n  want: %s\n", line3, fr_err_name(rc), err.line,
                    err.msg, want);
    assert_int_equal(rc, FR_EWORKFLOW);
    assert_int_equal(err.line, 3);
    assert_non_null(strstr(err.msg, want));
}

static void test_load_errors(void **state)
{
    (void)state;
    const char *m = "task \"m\" { agent = \"a\", deps = { \"plan\", \"other\" }, prompt = \"x\", ";
    struct {
        const char *fields, *want;
    } cases[] = {
        {"foreach = \"plam.json.list\" }",
         "foreach = \"plam.json.list\" must name one of the task's deps followed by .json and an "
         "optional path (as in \"plan.json.modules\"); 'plam' is not a dependency; did you mean "
         "'plan'?"},
        {"foreach = \"plan.list\" }",
         "reads a JSON array: write \"plan.json\" or \"plan.json.<path>\""},
        {"foreach = \"plan.json.a..b\" }", "'a..b' is not a valid path"},
        {"foreach = \"other.json\" }", "foreach reads 'other', which is a fan-out itself"},
        {"foreach = 3 }", "field 'foreach' must be"},
        {"name = \"{{item}}\" }",
         "field 'name' belongs to a fan-out and the task has no 'foreach'"},
        {"max_items = 3 }", "field 'max_items' belongs to a fan-out"},
        {"plan_items = 3 }", "field 'plan_items' belongs to a fan-out"},
        {"foreach = \"plan.json\", max_items = 0 }",
         "field 'max_items' must be an integer from 1 to 10000"},
        {"foreach = \"plan.json\", plan_items = -1 }", "field 'plan_items' must be"},
        {"foreach = \"plan.json\", max_items = 2, plan_items = 3 }",
         "plan_items = 3 is more than max_items = 2"},
        {"foreach = \"plan.json\", save = \"out.txt\" }",
         "field 'save' makes no sense on a fan-out"},
        {"foreach = \"plan.json\", approve = true }",
         "field 'approve' makes no sense on a fan-out"},
        {"foreach = \"plan.json\", name = \"{{plan}}\" }",
         "field 'name': unknown placeholder '{{plan}}'"},
        {"foreach = \"plan.json\", name = \"\" }", "field 'name'"},
        {"foreach = \"plan.json\", plan_itmes = 2 }", "did you mean 'plan_items'"},
        {"foreach = \"plan.json\", when = \"{{itme.ok}}\" }", "unknown placeholder '{{itme.ok}}'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char line[600];
        snprintf(line, sizeof line, "%s%s", m, cases[i].fields);
        expect_load_error(line, cases[i].want);
    }
    /* {{item}} and {{index}} exist only in a fan-out. */
    expect_load_error("task \"m\" { agent = \"a\", deps = { \"plan\" }, prompt = \"{{item.x}}\" }",
                      "unknown placeholder '{{item.x}}'");
    expect_load_error("task \"m\" { agent = \"a\", deps = { \"plan\" }, prompt = \"{{index}}\" }",
                      "unknown placeholder '{{index}}'");
}

static void test_instances_render(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_workflow *wf = load_ok(FIX "/good_foreach.lua", NULL);
    size_t mod = (size_t)task_of(wf, "module"), each = (size_t)task_of(wf, "each");
    json_t *item = json_pack("{s:s, s:s}", "name", "parser", "spec", "reads tokens");
    char *name = NULL;
    fr_error err = {0};
    assert_int_equal(fr_workflow_instance_name(wf, mod, item, 2, &name, &err), FR_OK);
    assert_string_equal(name, "impl-parser");
    size_t idx;
    fr_task_spec *before = wf->tasks;
    assert_int_equal(fr_workflow_add_instance(wf, mod, item, 2, name, &idx, &err), FR_OK);
    free(name);
    assert_ptr_equal(wf->tasks, before); /* nothing moved */
    assert_int_equal(idx, 4);
    assert_int_equal(wf->ntasks, 5);
    const fr_task_spec *inst = &wf->tasks[idx];
    assert_string_equal(inst->name, "impl-parser");
    assert_true(inst->is_instance);
    assert_int_equal(inst->instance_of, mod);
    assert_int_equal(inst->index, 2);
    assert_null(inst->foreach);
    assert_int_equal(inst->ndeps, 1);
    assert_int_equal(fr_workflow_find_task(wf, "impl-parser"), 4);
    /* Its prompt reads the item, the index and its dependency. */
    json_t *ctx = json_pack("{s:{s:s, s:{s:s}, s:s, s:s}, s:{}, s:O, s:i}", "plan", "text", "",
                            "json", "title", "the compiler", "status", "ok", "reason", "", "var",
                            "item", item, "index", 2);
    char *out = NULL;
    assert_int_equal(fr_workflow_render_prompt(wf, idx, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "Implement parser: reads tokens (#2 of the compiler) "
                             "{\"name\":\"parser\",\"spec\":\"reads tokens\"}");
    free(out);
    json_decref(ctx);
    /* A function prompt, a condition and a check: ctx.item and ctx.index. */
    json_t *word = json_string("lexer");
    assert_int_equal(fr_workflow_instance_name(wf, each, word, 1, &name, &err), FR_OK);
    assert_string_equal(name, "each[1]");
    assert_int_equal(fr_workflow_add_instance(wf, each, word, 1, name, &idx, &err), FR_OK);
    free(name);
    ctx = json_pack("{s:{}, s:s, s:i}", "var", "item", "lexer", "index", 1);
    assert_int_equal(fr_workflow_render_prompt(wf, idx, ctx, &out, &err), FR_OK);
    assert_string_equal(out, "1=lexer");
    free(out);
    bool go = false;
    assert_int_equal(fr_workflow_when(wf, idx, ctx, &go, &err), FR_OK);
    assert_true(go);
    json_decref(ctx);
    ctx = json_pack("{s:{}, s:s, s:i}", "var", "item", "skip", "index", 1);
    assert_int_equal(fr_workflow_when(wf, idx, ctx, &go, &err), FR_OK);
    assert_false(go);
    json_decref(ctx);
    double score = 0;
    char *why = NULL;
    assert_int_equal(fr_workflow_check(wf, idx, "t", NULL, &score, &why, &err), FR_OK);
    assert_true(score == 1);
    free(why);
    /* A name template whose field is missing, or that renders empty. */
    json_t *nameless = json_pack("{s:s}", "spec", "x");
    assert_int_equal(fr_workflow_instance_name(wf, mod, nameless, 3, &name, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "field 'name' of item 3"));
    json_decref(nameless);
    json_decref(word);
    json_decref(item);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0); /* the instances' references released */
}

static void test_template_list(void **state)
{
    (void)state;
    json_t *ctx = json_pack("{s:[{s:s, s:{s:i}}, {s:s, s:{s:i}}], s:{}}", "module", "text", "one",
                            "json", "n", 1, "text", "two", "json", "n", 2, "var");
    char *out = NULL;
    fr_error err = {0};
    assert_int_equal(
        fr_template_render("[{{module}}] {{module.json}} {{module.json.1.n}}", ctx, &out, &err),
        FR_OK);
    assert_string_equal(out, "[one\n\ntwo] [{\"n\":1},{\"n\":2}] 2");
    free(out);
    assert_int_equal(fr_template_render("{{module.status}}", ctx, &out, &err), FR_EWORKFLOW);
    assert_non_null(strstr(err.msg, "'module' is a fan-out"));
    json_decref(ctx);
    /* Without an index in the ctx (no instance), {{item}} is no placeholder. */
    ctx = json_pack("{s:{}}", "var");
    assert_int_equal(fr_template_render("{{item}}", ctx, &out, &err), FR_EWORKFLOW);
    json_decref(ctx);
}

static void test_sched_growth(void **state)
{
    (void)state;
    /* 0 -> 1 (the fan-out) -> 2 (the join). */
    fr_graph *g = fr_graph_new(3);
    fr_graph_add_edge(g, 0, 1);
    fr_graph_add_edge(g, 1, 2);
    assert_int_equal(fr_graph_sort(g, NULL, NULL), FR_OK);
    int cap[1] = {2};
    fr_sched *s = fr_sched_new(g, NULL, 1, cap);
    size_t t;
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 0);
    fr_sched_finish(s, 0, FR_TASK_OK, NULL, NULL);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 1); /* the fan-out runs: it stays running while its instances do */
    assert_int_equal(fr_sched_unfinished(s), 2);
    for (int i = 0; i < 3; i++) {
        size_t n = fr_graph_add_like(g, 1);
        assert_int_equal(n, 3 + (size_t)i);
        assert_int_equal(fr_graph_level(g, n), fr_graph_level(g, 1));
        assert_int_equal(fr_graph_rank(g, n), fr_graph_rank(g, 1));
        size_t nd;
        assert_int_equal(fr_graph_deps(g, n, &nd)[0], 0);
        assert_int_equal(nd, 1);
        assert_int_equal(fr_sched_add_ready(s, i == 2 ? 9 : 5, FR_TRIGGER_ALL_OK), n);
    }
    size_t nd;
    fr_graph_dependents(g, 0, &nd);
    assert_int_equal(nd, 1); /* the source's dependents are as they were */
    assert_int_equal(fr_graph_size(g), 6);
    assert_int_equal(fr_graph_order(g)[5], 5);
    assert_int_equal(fr_sched_ready(s), 3);
    assert_int_equal(fr_sched_unfinished(s), 5);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 5); /* priority first, as for any task */
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 3);
    assert_true(fr_sched_pop(s, &t));
    assert_int_equal(t, 4);
    for (size_t i = 3; i < 6; i++)
        fr_sched_finish(s, i, FR_TASK_OK, NULL, NULL);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_PENDING); /* the join waits for the fan-out */
    fr_sched_finish(s, 1, FR_TASK_OK, NULL, NULL);
    assert_int_equal(fr_sched_state(s, 2), FR_TASK_READY);
    assert_int_equal(fr_sched_unfinished(s), 1);
    double w[6] = {1, 10, 1, 2, 3, 4};
    assert_true(fr_graph_longest_path(g, w) == 12); /* 0, the fan-out, the join */
    fr_sched_free(s);
    fr_graph_free(g);
}

/* A loaded workflow with its graph, scheduler and results, and `plan`
 * done with JSON `out` (owned). */
typedef struct rig {
    fr_workflow *wf;
    fr_graph *g;
    fr_sched *s;
    fr_results res;
    fr_fanout_env env;
    size_t plan, module, each, join;
} rig;

static void rig_open(rig *r, json_t *out)
{
    memset(r, 0, sizeof *r);
    r->wf = load_ok(FIX "/good_foreach.lua", NULL);
    fr_error err = {0};
    assert_int_equal(fr_graph_from_workflow(r->wf, &r->g, &err), FR_OK);
    r->s = fr_sched_for_workflow(r->g, r->wf);
    fr_results_init(&r->res, r->wf, r->g);
    r->env = (fr_fanout_env){r->wf, r->g, r->s, &r->res, false};
    r->plan = (size_t)task_of(r->wf, "plan");
    r->module = (size_t)task_of(r->wf, "module");
    r->each = (size_t)task_of(r->wf, "each");
    r->join = (size_t)task_of(r->wf, "join");
    size_t t;
    assert_true(fr_sched_pop(r->s, &t));
    assert_int_equal(t, r->plan);
    r->res.tasks[r->plan].reply.text = fr_xstrdup("");
    r->res.tasks[r->plan].reply.json = out;
    fr_sched_finish(r->s, r->plan, FR_TASK_OK, NULL, NULL);
    while (fr_sched_pop(r->s, &t)) /* the fan-outs are placed */
        ;
}

static void rig_close(rig *r)
{
    fr_results_close(&r->res);
    fr_sched_free(r->s);
    fr_graph_free(r->g);
    fr_workflow_free(r->wf);
}

static json_t *modules(size_t n, bool same)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "m%zu", same ? 0 : i + 1);
        json_array_append_new(list, json_pack("{s:s, s:s}", "name", nm, "spec", "s"));
    }
    return json_pack("{s:s, s:o}", "title", "t", "modules", list);
}

static void test_expand_and_end(void **state)
{
    (void)state;
    rig r;
    rig_open(&r, modules(3, false));
    char *reason = NULL;
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_STARTED);
    assert_null(reason);
    const fr_task_result *mr = &r.res.tasks[r.module];
    assert_int_equal(mr->instances, 3);
    assert_int_equal(mr->first_instance, 4);
    assert_int_equal(r.wf->ntasks, 7);
    assert_int_equal(fr_graph_size(r.g), 7);
    assert_int_equal(fr_sched_ready(r.s), 3);
    assert_string_equal(r.wf->tasks[4].name, "impl-m1");
    assert_string_equal(r.wf->tasks[6].name, "impl-m3");
    assert_int_equal(r.wf->tasks[6].index, 3);
    assert_string_equal(json_string_value(json_object_get(r.wf->tasks[5].item, "name")), "m2");
    assert_int_equal(r.res.tasks[5].endpoint, -1); /* set up as any task */
    /* The item and index an instance's ctx carries. */
    json_t *ctx = json_object();
    fr_fanout_item_ctx(r.wf, 5, ctx);
    assert_int_equal(json_integer_value(json_object_get(ctx, "index")), 2);
    assert_non_null(json_object_get(ctx, "item"));
    json_decref(ctx);
    ctx = json_object();
    fr_fanout_item_ctx(r.wf, r.plan, ctx);
    assert_int_equal(json_object_size(ctx), 0);
    json_decref(ctx);
    /* Instances end in any order; the fan-out ends with the last. */
    size_t parent;
    fr_task_state st;
    fr_sched_finish(r.s, 6, FR_TASK_OK, NULL, NULL);
    r.res.tasks[6].reply.text = fr_xstrdup("third");
    assert_false(fr_fanout_ended(&r.env, 6, &parent, &st, &reason));
    fr_sched_finish(r.s, 4, FR_TASK_FAILED, NULL, NULL);
    r.res.tasks[4].reason = fr_xstrdup("HTTP 500");
    assert_false(fr_fanout_ended(&r.env, 4, &parent, &st, &reason));
    fr_sched_finish(r.s, 5, FR_TASK_OK, NULL, NULL);
    r.res.tasks[5].reply.text = fr_xstrdup("second");
    assert_false(fr_fanout_ended(&r.env, r.plan, &parent, &st, &reason)); /* no instance */
    assert_true(fr_fanout_ended(&r.env, 5, &parent, &st, &reason));
    assert_int_equal(parent, r.module);
    assert_int_equal(st, FR_TASK_FAILED);
    assert_string_equal(reason, "1 of 3 instances did not succeed: 'impl-m1' (failed)");
    free(reason);
    /* The join's list, in item order. */
    json_t *list = fr_fanout_list(r.wf, &r.res, r.s, r.module);
    assert_int_equal(json_array_size(list), 3);
    char *dump = json_dumps(list, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(dump, "[{\"index\":1,\"json\":null,\"name\":\"impl-m1\",\"reason\":\"HTTP "
                              "500\",\"status\":\"failed\",\"text\":\"\"},"
                              "{\"index\":2,\"json\":null,\"name\":\"impl-m2\",\"reason\":\"\","
                              "\"status\":\"ok\",\"text\":\"second\"},"
                              "{\"index\":3,\"json\":null,\"name\":\"impl-m3\",\"reason\":\"\","
                              "\"status\":\"ok\",\"text\":\"third\"}]");
    free(dump);
    json_decref(list);
    /* The other fan-out reads the whole object: not an array. */
    assert_int_equal(fr_fanout_expand(&r.env, r.each, &reason), FR_FANOUT_FAILED);
    assert_string_equal(reason, "foreach: plan.json is an object, not an array");
    free(reason);
    rig_close(&r);
}

static void test_expand_outcomes(void **state)
{
    (void)state;
    rig r;
    char *reason = NULL;
    rig_open(&r, modules(0, false));
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_EMPTY);
    assert_string_equal(reason, "foreach: the list is empty");
    assert_int_equal(r.res.tasks[r.module].instances, 0);
    assert_int_equal(r.wf->ntasks, 4);
    free(reason);
    rig_close(&r);

    rig_open(&r, modules(6, false));
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_FAILED);
    assert_string_equal(reason, "foreach: plan.json.modules has 6 items, more than max_items = 5 "
                                "(raise max_items, or make the list shorter)");
    assert_int_equal(r.wf->ntasks, 4);
    free(reason);
    rig_close(&r);

    rig_open(&r, modules(3, true));
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_FAILED);
    assert_string_equal(reason, "foreach: items 1 and 2 are both named 'impl-m0' (field 'name'); "
                                "instance names must be unique");
    assert_int_equal(r.wf->ntasks, 4);
    assert_int_equal(fr_sched_ready(r.s), 0);
    free(reason);
    rig_close(&r);

    rig_open(&r, json_pack("{s:s}", "title", "t"));
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_FAILED);
    assert_string_equal(reason, "foreach: plan.json.modules: there is no 'modules' in an object "
                                "(at 'modules') of 'plan''s JSON output");
    free(reason);
    rig_close(&r);

    /* A list of strings: {{item}} is the string; the default names. */
    rig_open(&r, json_pack("[s, s]", "a", "b"));
    assert_int_equal(fr_fanout_expand(&r.env, r.each, &reason), FR_FANOUT_STARTED);
    assert_string_equal(r.wf->tasks[4].name, "each[1]");
    assert_string_equal(r.wf->tasks[5].name, "each[2]");
    assert_string_equal(json_string_value(r.wf->tasks[5].item), "b");
    rig_close(&r);

    /* A plan: plan_items instances with a null item, whatever the JSON. */
    rig_open(&r, NULL);
    r.env.plan = true;
    assert_int_equal(fr_fanout_expand(&r.env, r.module, &reason), FR_FANOUT_STARTED);
    assert_int_equal(r.res.tasks[r.module].instances, 3); /* plan_items */
    /* No item to name them by: the default names. */
    assert_string_equal(r.wf->tasks[4].name, "module[1]");
    assert_string_equal(r.wf->tasks[6].name, "module[3]");
    assert_true(json_is_null(r.wf->tasks[4].item));
    assert_int_equal(fr_fanout_expand(&r.env, r.each, &reason), FR_FANOUT_STARTED);
    assert_int_equal(r.res.tasks[r.each].instances, 1); /* unknown: one is planned */
    rig_close(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields_load),      cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_instances_render), cmocka_unit_test(test_template_list),
        cmocka_unit_test(test_sched_growth),     cmocka_unit_test(test_expand_and_end),
        cmocka_unit_test(test_expand_outcomes),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
