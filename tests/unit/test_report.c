/* engine/report: the JSON report and the human summary rendered from a
 * synthetic results view of tests/unit/fixtures/engine/report.lua (one task
 * succeeded, one failed with a reason that quotes a registered key, one was
 * skipped). The JSON is compared with the golden file GOLDEN as parsed
 * JSON. After an intended change of the report, regenerate it from the
 * source root with
 *     FLOWRUN_UPDATE_GOLDEN=1 build/test_report
 * and review the diff of GOLDEN before committing it. */
#include "engine/report.h"

#include "engine/graph.h"
#include "engine/util/redact.h"
#include "support/engine_fixture.h"

#include <math.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GOLDEN "tests/unit/fixtures/report_golden.json"
/* The report's exact text of the rich view (enrich) as a run and as a
 * plan: first written by json_dumps(tree, JSON_INDENT(2)) of the jansson
 * tree the report was built as before engine/util/jsonw (the text must stay
 * those bytes: `flowrun report --json` is compared with cmp against them). */
#define TEXT_RUN  "tests/unit/fixtures/report_text_run.json"
#define TEXT_PLAN "tests/unit/fixtures/report_text_plan.json"
#define REPORTF   "tests/unit/fixtures/engine/report.lua"
#define KEY       "sk-unit-report-0123456789abcdef"
#define MS        1000000ull /* nanoseconds */

typedef struct fixture {
    fr_workflow *wf;
    fr_graph *g;
    fr_results r;
    json_t *alerts, *reloads;
} fixture;

/* Fills the view of a run that spent $0.0025 of its $0.5 cap in 1.5 s,
 * with a budget alert and a failed policy reload. */
static void fill(fixture *fx)
{
    fr_results *r = &fx->r;
    size_t local = engine_ep(fx->wf, "local"), cloud = engine_ep(fx->wf, "cloud");
    r->run_id = "20261201-000000-unit";
    r->out_dir = "out/report-units/20261201-000000-unit";
    r->policy = "cost";
    r->exit_code = 1;
    r->start_ns = 0;
    r->end_ns = 1500 * MS;
    r->has_budget = true;
    r->budget_usd = 0.5;
    r->baseline = (long)cloud;
    fx->alerts = json_pack("[{s:s, s:f, s:f, s:f, s:f}]", "cap", "run", "cap_usd", 0.5, "fraction",
                           0.8, "spent_usd", 0.0025, "at_ms", 1400.0);
    /* A policy reload that failed, quoting the key in its error. */
    fx->reloads = json_pack("[{s:i, s:b, s:f, s:s}]", "version", 2, "ok", 0, "at_ms", 1200.0,
                            "error", "policy.lua:3: attempt to index a nil value (" KEY ")");
    r->alerts = fx->alerts;
    r->reloads = fx->reloads;

    fr_task_result *draft = &r->tasks[engine_task(fx->wf, "draft")];
    draft->state = FR_TASK_OK;
    draft->endpoint = (long)local;
    draft->attempts = 1;
    draft->reply = engine_reply("A first draft.", FR_FINISH_STOP, NULL);
    draft->reply.model = fr_xstrdup("small:7b");
    draft->usage = (fr_usage){.input = 120, .output = 30, .cached = 0};
    draft->latency_ms = 800;
    draft->ttft_ms = 150;
    draft->start_ns = 0;
    draft->end_ns = 800 * MS;
    fr_results_attempt_begin(draft, 1, "local", 0);
    fr_results_attempt_end(draft, 800, "ok", NULL, &draft->usage);
    fr_declog_add(draft->decisions, "cost", 1, "first", local, 1, NULL, 0);
    fr_declog_set_outcome(draft->decisions, "ok", NULL);

    fr_task_result *polish = &r->tasks[engine_task(fx->wf, "polish")];
    polish->state = FR_TASK_FAILED;
    polish->endpoint = (long)cloud;
    polish->attempts = 2;
    /* Two attempts, each billed half, each failing with the key quoted. */
    for (int a = 1; a <= 2; a++) {
        fr_results_attempt_begin(polish, a, "cloud", 800.0 + 300 * (a - 1));
        polish->cost += 0.00125;
        fr_results_attempt_end(polish, 1000.0 + 300 * (a - 1), "error",
                               "HTTP 400: the key " KEY " is not valid here", NULL);
    }
    polish->cost = 0.0025;
    polish->start_ns = 800 * MS;
    polish->end_ns = 1500 * MS;
    polish->reason = fr_xstrdup("every usable endpoint failed; last error: HTTP 400: "
                                "the key " KEY " is not valid here");
    fr_declog_add(polish->decisions, "cost", 1, "first", cloud, 1, NULL, 0);
    fr_declog_set_outcome(polish->decisions, "error",
                          "HTTP 400: the key " KEY " is not valid here");

    fr_task_result *publish = &r->tasks[engine_task(fx->wf, "publish")];
    publish->state = FR_TASK_SKIPPED;
    publish->end_ns = 1500 * MS;
    publish->reason = fr_xstrdup("dependency 'polish' did not succeed");

    r->endpoints[local] = (fr_endpoint_result){
        .stats = {.requests = 1, .successes = 1, .usable = true},
        .model = "small",
        .peak_in_flight = 1,
        .max_parallel = 2,
    };
    r->endpoints[cloud] = (fr_endpoint_result){
        .stats =
            {.requests = 2, .failures = 2, .cooldowns = 1, .cooldown_ms = 1020, .usable = true},
        .model = "big",
        .peak_in_flight = 1,
        .max_parallel = 4,
    };
}

static int setup(void **state)
{
    fixture *fx = fr_xcalloc(1, sizeof *fx);
    fr_error err = {0};
    fx->wf = engine_load_path(REPORTF);
    assert_int_equal(fr_graph_from_workflow(fx->wf, &fx->g, &err), FR_OK);
    fr_results_init(&fx->r, fx->wf, fx->g);
    fill(fx);
    fr_redact_add(KEY); /* as engine/endpoint does when it reads the key */
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    fr_results_close(&fx->r);
    json_decref(fx->alerts);
    json_decref(fx->reloads);
    fr_graph_free(fx->g);
    fr_workflow_free(fx->wf);
    free(fx);
    fr_redact_clear();
    return 0;
}

static void test_json_matches_golden(void **state)
{
    fixture *fx = *state;
    json_t *got = fr_report_json(&fx->r);
    const size_t flags = JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17);
    if (getenv("FLOWRUN_UPDATE_GOLDEN")) {
        assert_int_equal(json_dump_file(got, GOLDEN, flags), 0);
        print_message("rewrote %s\n", GOLDEN);
    }
    json_error_t jerr;
    json_t *want = json_load_file(GOLDEN, 0, &jerr);
    if (!want)
        print_error("%s:%d: %s\n", GOLDEN, jerr.line, jerr.text);
    assert_non_null(want);
    if (!json_equal(got, want)) {
        /* Sorted and indented like the golden file: diff the two. */
        const char *tmp = getenv("TMPDIR");
        char actual[4096];
        snprintf(actual, sizeof actual, "%s/report_golden.actual.json", tmp ? tmp : "/tmp");
        json_dump_file(got, actual, flags);
        print_error("the report differs from %s; the actual one is in %s (diff -u %s %s, from "
                    "the source root); after an intended change: FLOWRUN_UPDATE_GOLDEN=1\n",
                    GOLDEN, actual, GOLDEN, actual);
    }
    assert_true(json_equal(got, want));
    json_decref(want);
    json_decref(got);
}

static void test_json_key_points(void **state)
{
    /* What the golden file holds that users rely on, said outright. */
    fixture *fx = *state;
    json_t *o = fr_report_json(&fx->r);
    char *dump = json_dumps(o, 0);
    assert_null(strstr(dump, "sk-unit-report"));
    free(dump);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "failed");
    assert_float_equal(json_number_value(json_object_get(o, "cost_usd")), 0.0025, 1e-12);
    assert_float_equal(json_number_value(json_object_get(o, "budget_usd")), 0.5, 0);
    assert_float_equal(json_number_value(json_object_get(o, "makespan_ms")), 1500, 1e-9);
    /* The baseline prices draft's 120 in and 30 out on the cloud. */
    assert_float_equal(json_number_value(json_object_get(o, "baseline_cost_usd")), 180e-6, 1e-12);
    assert_float_equal(json_number_value(json_object_get(o, "local_token_share")), 1, 0);
    json_t *tasks = json_object_get(o, "tasks");
    assert_int_equal(json_array_size(tasks), 3);
    json_t *draft = json_array_get(tasks, 0), *polish = json_array_get(tasks, 1),
           *publish = json_array_get(tasks, 2);
    assert_string_equal(json_string_value(json_object_get(draft, "output")), "A first draft.");
    assert_string_equal(json_string_value(json_object_get(draft, "model")), "small:7b");
    assert_string_equal(json_string_value(json_object_get(draft, "finish")), "stop");
    assert_string_equal(json_string_value(json_object_get(polish, "status")), "failed");
    assert_non_null(strstr(json_string_value(json_object_get(polish, "reason")),
                           "the key " FR_REDACTED " is not valid"));
    json_t *dec = json_array_get(json_object_get(polish, "decisions"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(dec, "error")), FR_REDACTED));
    assert_true(json_is_null(json_object_get(polish, "output")));
    assert_string_equal(json_string_value(json_object_get(publish, "status")), "skipped");
    json_t *reload = json_array_get(json_object_get(o, "policy_reloads"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(reload, "error")), FR_REDACTED));
    assert_int_equal(json_array_size(json_object_get(o, "budget_alerts")), 1);
    json_decref(o);
    /* The view itself keeps the key: only what leaves is redacted. */
    assert_non_null(strstr(fx->r.tasks[1].reason, KEY));
}

static void test_attempt_log(void **state)
{
    /* Each attempt with its times from the run's start, its outcome, its
     * error redacted, its share of the task's cost; one turn each. */
    fixture *fx = *state;
    json_t *o = fr_report_json(&fx->r);
    const json_t *tasks = json_object_get(o, "tasks");
    const json_t *draft = json_array_get(tasks, engine_task(fx->wf, "draft"));
    const json_t *polish = json_array_get(tasks, engine_task(fx->wf, "polish"));
    const json_t *publish = json_array_get(tasks, engine_task(fx->wf, "publish"));
    const json_t *d = json_array_get(json_object_get(draft, "attempt_log"), 0);
    assert_string_equal(json_string_value(json_object_get(d, "outcome")), "ok");
    assert_float_equal(json_number_value(json_object_get(d, "end_ms")), 800, 1e-9);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(d, "tokens"), "input")),
                     120);
    assert_int_equal(json_array_size(json_object_get(d, "turns")), 1);
    const json_t *log = json_object_get(polish, "attempt_log");
    assert_int_equal(json_array_size(log), 2);
    const json_t *second = json_array_get(log, 1);
    assert_int_equal(json_integer_value(json_object_get(second, "attempt")), 2);
    assert_float_equal(json_number_value(json_object_get(second, "start_ms")), 1100, 1e-9);
    assert_float_equal(json_number_value(json_object_get(second, "cost_usd")), 0.00125, 1e-12);
    const char *error = json_string_value(json_object_get(second, "error"));
    assert_non_null(strstr(error, "HTTP 400"));
    assert_null(strstr(error, "sk-unit-report"));
    assert_int_equal(json_array_size(json_object_get(publish, "attempt_log")), 0);
    json_decref(o);
}

/* The attempt log's other states, printed as its tree once was: a tool
 * loop's turns, an attempt still in flight (end_ms, outcome null, its turn
 * open), one dropped (no file descriptor: gone), and what jansson refused
 * (an error that is not UTF-8 stays null, a NaN end leaves the attempt
 * open). */
static void test_attempt_log_states(void **state)
{
    fixture *fx = *state;
    fr_task_result *t = &fx->r.tasks[engine_task(fx->wf, "publish")];
    fr_results_attempt_begin(t, 1, "cloud", 10);
    fr_results_turn_end(t, 20);
    fr_results_turn_begin(t, 30);
    fr_results_turn_begin(t, 31); /* a turn is open: no second one */
    fr_results_turn_end(t, 40);
    fr_results_turn_begin(t, 50);
    fr_results_attempt_end(t, 60, "error", "bad \xff byte", &(fr_usage){.input = 7, .output = 2});
    fr_results_attempt_end(t, 70, "ok", NULL, NULL); /* ended already: no change */
    fr_results_attempt_begin(t, 2, "cloud", 80);
    fr_results_attempt_drop(t);
    fr_results_attempt_begin(t, 2, "local", 90);
    fr_results_attempt_end(t, NAN, "timeout", NULL, NULL);
    fr_results_attempt_begin(t, 3, "local", 100.5);
    fr_buf text;
    fr_buf_init(&text, 0);
    assert_int_equal(fr_report_text(&fx->r, &text, true), FR_OK);
    const char *want =
        "\"attempt_log\":[{\"attempt\":1,\"endpoint\":\"cloud\",\"start_ms\":10.0,"
        "\"end_ms\":60.0,\"outcome\":\"error\",\"error\":null,"
        "\"tokens\":{\"input\":7,\"output\":2,\"cached\":0},\"cost_usd\":0.0,"
        "\"turns\":[{\"start_ms\":10.0,\"end_ms\":20.0},{\"start_ms\":30.0,\"end_ms\":40.0},"
        "{\"start_ms\":50.0,\"end_ms\":60.0}]},"
        "{\"attempt\":2,\"endpoint\":\"local\",\"start_ms\":90.0,\"end_ms\":null,"
        "\"outcome\":\"timeout\",\"error\":null,"
        "\"tokens\":{\"input\":0,\"output\":0,\"cached\":0},\"cost_usd\":0.0,"
        "\"turns\":[{\"start_ms\":90.0,\"end_ms\":null}]},"
        "{\"attempt\":3,\"endpoint\":\"local\",\"start_ms\":100.5,\"end_ms\":null,"
        "\"outcome\":null,\"error\":null,"
        "\"tokens\":{\"input\":0,\"output\":0,\"cached\":0},\"cost_usd\":0.0,"
        "\"turns\":[{\"start_ms\":100.5,\"end_ms\":null}]}]";
    if (!strstr(fr_buf_str(&text), want))
        print_error("no such attempt log in:\n%s\n", fr_buf_str(&text));
    assert_non_null(strstr(fr_buf_str(&text), want));
    fr_buf_close(&text);
}

/* A routing decision is rendered as the decision log's JSON always was:
 * its fields in this order, the candidates it saw by name, the error last
 * (redacted); a second decision's candidates are its own. */
static void test_decisions_rendered(void **state)
{
    fixture *fx = *state;
    size_t local = engine_ep(fx->wf, "local"), cloud = engine_ep(fx->wf, "cloud");
    fr_declog *log = fx->r.tasks[engine_task(fx->wf, "publish")].decisions;
    fr_decision_cand seen[] = {{.endpoint = local, .free = 1, .est_cost = 0},
                               {.endpoint = cloud, .free = 2, .est_cost = 0.5}};
    fr_declog_add(log, "balanced", 2, "first", cloud, 1, seen, 2);
    fr_declog_set_outcome(log, "error", "HTTP 401: " KEY);
    fr_declog_add(log, "balanced", 2, "error", local, 2, seen, 1);
    json_t *o = fr_report_json(&fx->r);
    json_t *decs = json_object_get(json_array_get(json_object_get(o, "tasks"), 2), "decisions");
    char *got = json_dumps(decs, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert_string_equal(
        got, "[{\"policy\":\"balanced\",\"version\":2,\"reason\":\"first\",\"endpoint\":\"cloud\","
             "\"attempt\":1,\"outcome\":\"error\",\"candidates\":[{\"name\":\"local\",\"free\":1,"
             "\"est_cost\":0.0},{\"name\":\"cloud\",\"free\":2,\"est_cost\":0.5}],\"error\":"
             "\"HTTP 401: " FR_REDACTED "\"},{\"policy\":\"balanced\",\"version\":2,\"reason\":"
             "\"error\",\"endpoint\":\"local\",\"attempt\":2,\"outcome\":null,\"candidates\":"
             "[{\"name\":\"local\",\"free\":1,\"est_cost\":0.0}]}]");
    free(got);
    json_decref(o);
}

/* The report writes the decisions from the log's records: the same bytes
 * as each decision's tree from fr_declog_json with its error redacted (the
 * tree path it replaced), over decisions with jansson's refusals: an error
 * that is not UTF-8 (left out), a candidate whose cost is not finite (left
 * out), an empty candidate list, the cache's decision (no list), an
 * outcome not known yet, reals of every form. */
static void test_decisions_as_the_tree_was(void **state)
{
    fixture *fx = *state;
    size_t local = engine_ep(fx->wf, "local"), cloud = engine_ep(fx->wf, "cloud");
    size_t publish = engine_task(fx->wf, "publish");
    fr_declog *log = fx->r.tasks[publish].decisions;
    fr_decision_cand seen[] = {{.endpoint = local, .free = 0, .est_cost = 1e-7},
                               {.endpoint = cloud, .free = -3, .est_cost = NAN},
                               {.endpoint = cloud, .free = 7, .est_cost = 123456.789},
                               {.endpoint = local, .free = 1, .est_cost = INFINITY},
                               {.endpoint = local, .free = 2, .est_cost = 1e300}};
    fr_declog_add(log, "cost", 1, "first", cloud, 1, seen, 5);
    fr_declog_set_outcome(log, "error", "HTTP 500: \xff\xfe not UTF-8");
    fr_declog_add(log, "speed", 3, "error", local, 2, seen + 2, 0);
    fr_declog_set_outcome(log, "timeout", "key " KEY " \"quoted\"\n");
    fr_declog_add(log, "cache", 0, "cached", local, 3, NULL, 0);
    fr_declog_set_outcome(log, "ok", NULL);
    fr_declog_add(log, "default", 1, "error", cloud, 4, seen, 1);
    json_t *want = json_array();
    for (size_t i = 0; i < fr_declog_count(log); i++) {
        json_t *d = fr_declog_json(log, i, fx->wf);
        const char *err = json_string_value(json_object_get(d, "error"));
        if (err) {
            char *clean = fr_redact(err);
            json_object_set_new(d, "error", json_string(clean));
            free(clean);
        }
        json_array_append_new(want, d);
    }
    json_t *o = fr_report_json(&fx->r);
    json_t *got =
        json_object_get(json_array_get(json_object_get(o, "tasks"), publish), "decisions");
    char *a = json_dumps(want, JSON_COMPACT | JSON_REAL_PRECISION(17));
    char *b = json_dumps(got, JSON_COMPACT | JSON_REAL_PRECISION(17));
    assert_non_null(b);
    assert_string_equal(b, a);
    assert_non_null(strstr(b, "e300}")); /* an exponent, not fixed notation */
    assert_null(strstr(b, "\"free\":-3"));
    assert_null(strstr(b, "HTTP 500"));
    free(a);
    free(b);
    json_decref(want);
    json_decref(o);
}

/* Makes the view carry every field the report has: a JSON reply with
 * escapes and every UTF-8 length, tool calls (one failing with the key),
 * an approval, inherited privacy and a declassification, a fan-out that
 * succeeded without text and an instance, a check score, cached tokens,
 * an endpoint disabled. */
static void enrich(fixture *fx)
{
    fr_results *r = &fx->r;
    fr_workflow *wf = fx->wf;
    size_t draft = engine_task(wf, "draft"), polish = engine_task(wf, "polish"),
           publish = engine_task(wf, "publish");
    fr_task_result *d = &r->tasks[draft];
    d->reply.json = json_pack("{s:s, s:[i, f, f, f, b, n], s:{}, s:[]}", "quote",
                              "\"/\\\b\f\n\r\t\x01\x1f é € \xf0\x9f\x98\x80", "nums", -42, 1e300,
                              5e-324, 2.0, 1, "empty", "none");
    d->check_score = 0.75;
    d->usage.cached = 12;
    d->usage.estimated = true;
    d->cached = true;
    d->turns = 2;
    d->tool_calls = json_pack("[{s:s, s:{s:s}, s:s, s:f}, {s:s, s:{}, s:s}]", "name", "search",
                              "arguments", "q", "flowrun", "result", "3 hits", "ms", 12.5, "name",
                              "fetch", "arguments", "error", "HTTP 403 for " KEY);
    d->approval.state = FR_APPROVAL_APPROVED;
    d->approval.by = fr_xstrdup("ana");
    d->approval.at = fr_xstrdup("2026-12-01T00:00:01Z");
    d->approval.note = fr_xstrdup("fine \"as is\"");
    wf->tasks[polish].is_private = true;
    wf->tasks[polish].private_from = (long)draft;
    wf->tasks[publish].declassified_from = (long)polish;
    /* publish: a fan-out over draft's JSON that ran two instances; its
     * reply has no text (the instances answered). */
    wf->tasks[publish].foreach = fr_xstrdup("draft.json.items");
    wf->tasks[publish].plan_items = 2;
    fr_task_result *p = &r->tasks[publish];
    free(p->reason);
    p->reason = NULL;
    p->state = FR_TASK_OK;
    p->endpoint = -1;
    p->instances = 2;
    p->start_ns = 900 * MS;
    p->end_ns = 1400 * MS;
    p->worst_cost = 0.01;
    wf->tasks[polish].is_instance = true;
    wf->tasks[polish].instance_of = publish;
    wf->tasks[polish].index = 1;
    r->tasks[polish].worst_cost = 0.02;
    d->worst_cost = 0.004;
    d->obs_latency = true;
    r->endpoints[engine_ep(wf, "cloud")].stats.unusable = "HTTP 401: the key is refused";
    r->endpoints[engine_ep(wf, "cloud")].stats.usable = false;
    r->observed = true;
    r->observed_from = "state.db";
    r->sim = true;
}

/* fr_report_print_text of `compact` (borrowed) writes the bytes of `want`. */
static void assert_printed(const char *compact, const fr_buf *want)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(fr_report_print_text(compact, f), FR_OK);
    assert_int_equal(fflush(f), 0);
    long len = ftell(f);
    assert_int_equal(len, (long)want->len);
    rewind(f);
    char *got = fr_xcalloc((size_t)len + 1, 1);
    assert_int_equal(fread(got, 1, (size_t)len, f), (size_t)len);
    assert_memory_equal(got, want->data, want->len);
    free(got);
    fclose(f);
}

/* Compares the report's text of the view with file `path`, bytes. */
static void text_matches(const fr_results *r, const char *path)
{
    fr_buf text;
    fr_buf_init(&text, 0);
    assert_int_equal(fr_report_text(r, &text, false), FR_OK);
    if (getenv("FLOWRUN_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(fr_buf_str(&text), f);
        assert_int_equal(fclose(f), 0);
        print_message("rewrote %s\n", path);
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    fr_buf want;
    fr_buf_init(&want, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        fr_buf_append(&want, chunk, n);
    fclose(f);
    if (strcmp(fr_buf_str(&text), fr_buf_str(&want)) != 0)
        print_error("the report's text differs from %s:\n%s\n", path, fr_buf_str(&text));
    assert_string_equal(fr_buf_str(&text), fr_buf_str(&want));
    /* The state store keeps the compact text: indented again, it gives
     * these bytes back (what `flowrun report --json` prints), and so does
     * the indented text itself (a report stored by an older flowrun). */
    fr_buf compact, again_text;
    fr_buf_init(&compact, 0);
    fr_buf_init(&again_text, 0);
    assert_int_equal(fr_report_text(r, &compact, true), FR_OK);
    assert_true(compact.len < want.len);
    assert_null(strstr(fr_buf_str(&compact), "\n  "));
    assert_int_equal(fr_report_reindent(fr_buf_str(&compact), &again_text), FR_OK);
    assert_string_equal(fr_buf_str(&again_text), fr_buf_str(&want));
    assert_printed(fr_buf_str(&compact), &want); /* what flowrun --json prints */
    fr_buf_close(&again_text);
    fr_buf_init(&again_text, 0);
    assert_int_equal(fr_report_reindent(fr_buf_str(&want), &again_text), FR_OK);
    assert_string_equal(fr_buf_str(&again_text), fr_buf_str(&want));
    assert_int_equal(fr_report_reindent("{\"run\": ", &again_text), FR_EINVAL);
    fr_buf_close(&again_text);
    fr_buf_close(&compact);
    /* fr_report_json is that text parsed: one renderer. */
    json_t *o = fr_report_json(r);
    char *again = json_dumps(o, JSON_INDENT(2));
    assert_non_null(again);
    assert_int_equal(strlen(again) + 1, want.len);
    assert_memory_equal(again, fr_buf_str(&want), strlen(again));
    free(again);
    json_decref(o);
    fr_buf_close(&want);
    fr_buf_close(&text);
}

static void test_text_bytes_rich(void **state)
{
    fixture *fx = *state;
    enrich(fx);
    text_matches(&fx->r, TEXT_RUN);
}

static void test_text_bytes_plan(void **state)
{
    fixture *fx = *state;
    enrich(fx);
    fx->r.plan = true;
    fx->r.exit_code = 0;
    fx->r.interrupted = false;
    text_matches(&fx->r, TEXT_PLAN);
}

/* fr_report_print_text indents the compact text as it goes out, 64 KiB at
 * a time: the bytes of fr_report_text's indented text, over several chunks
 * (a reply of 200 KB); a stream that cannot be written is FR_EIO. */
static void test_print_streams_the_same_bytes(void **state)
{
    fixture *fx = *state;
    enrich(fx);
    fr_task_result *d = &fx->r.tasks[engine_task(fx->wf, "draft")];
    size_t n = 200u << 10;
    free(d->reply.text);
    d->reply.text = fr_xcalloc(n + 1, 1);
    for (size_t i = 0; i < n; i++)
        d->reply.text[i] = (char)('a' + i % 26);
    /* Nested 24 levels deep in the report: an indent past 32 spaces. */
    json_decref(d->reply.json);
    d->reply.json = json_loads("[[[[[[[[[[[[[[[[[[[[{\"k\": [1, {}]}]]]]]]]]]]]]]]]]]]]]", 0, NULL);
    assert_non_null(d->reply.json);
    fr_buf want, compact;
    fr_buf_init(&want, 0);
    fr_buf_init(&compact, 0);
    assert_int_equal(fr_report_text(&fx->r, &want, false), FR_OK);
    assert_int_equal(fr_report_text(&fx->r, &compact, true), FR_OK);
    assert_true(want.len > 3 * (64u << 10)); /* several chunks */
    assert_printed(fr_buf_str(&compact), &want);
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        assert_int_equal(fr_report_print_text(fr_buf_str(&compact), full), FR_EIO);
        fclose(full);
    }
    fr_buf_close(&compact);
    fr_buf_close(&want);
}

static void test_text_interrupted_without_budget(void **state)
{
    /* The status words and a run without cap or baseline: nulls. */
    fixture *fx = *state;
    fx->r.interrupted = true;
    fx->r.has_budget = false;
    fx->r.baseline = -1;
    fx->r.alerts = NULL; /* no alerts array at all: the member is left out */
    json_t *o = fr_report_json(&fx->r);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "interrupted");
    assert_true(json_is_null(json_object_get(o, "budget_usd")));
    assert_true(json_is_null(json_object_get(o, "baseline")));
    assert_true(json_is_null(json_object_get(o, "savings_pct")));
    assert_null(json_object_get(o, "budget_alerts"));
    json_decref(o);
}

/* The summary of fx's results, uncoloured (owned). */
static char *summary_text(const fixture *fx)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    fr_report_summary(&fx->r, f, false);
    assert_int_equal(fclose(f), 0);
    return text;
}

static void test_summary(void **state)
{
    fixture *fx = *state;
    char *text = summary_text(fx);
    assert_null(strstr(text, "sk-unit-report"));
    assert_null(strstr(text, "\033[")); /* no colour asked */
    assert_non_null(strstr(text, "\ndone 1/3  makespan 1.50s"));
    assert_non_null(strstr(text, "latency p50 800ms p95 800ms"));
    assert_non_null(strstr(text, "\nspend $0.0025 of $0.5 cap  baseline cloud $0.00018"));
    assert_non_null(strstr(text, "local tokens 100%\n"));
    assert_non_null(strstr(
        text, "\n  polish: every usable endpoint failed; last error: HTTP 400: the key " FR_REDACTED
              " is not valid here\n"));
    assert_non_null(strstr(text, "\n  publish: dependency 'polish' did not succeed\n"));
    assert_non_null(strstr(text, "outputs in out/report-units/20261201-000000-unit/\n"));
    /* A row per task: name, status, endpoint, tier, attempts. */
    assert_non_null(strstr(text, "\ndraft    ok"));
    assert_non_null(strstr(text, "\npolish   failed"));
    assert_non_null(strstr(text, "\npublish  skipped"));
    free(text);
}

/* Waits for capacity other processes held: per endpoint in the JSON report
 * (absent without any, as the golden file shows) and a line of the
 * summary; the report's text as jansson prints the tree. */
static void test_capacity_waits(void **state)
{
    fixture *fx = *state;
    size_t local = (size_t)fr_workflow_find_endpoint(fx->wf, "local");
    json_t *o = fr_report_json(&fx->r);
    assert_null(json_object_get(json_object_get(json_object_get(o, "endpoints"), "local"),
                                "capacity_waits"));
    json_decref(o);
    fx->r.endpoints[local].capacity_waits = 3;
    fx->r.endpoints[local].capacity_wait_ms = 1250.5;
    o = fr_report_json(&fx->r);
    json_t *ep = json_object_get(json_object_get(o, "endpoints"), "local");
    assert_int_equal(json_integer_value(json_object_get(ep, "capacity_waits")), 3);
    assert_float_equal(json_number_value(json_object_get(ep, "capacity_wait_ms")), 1250.5, 0);
    assert_null(json_object_get(json_object_get(json_object_get(o, "endpoints"), "cloud"),
                                "capacity_waits"));
    json_decref(o);
    char *text = summary_text(fx);
    assert_non_null(strstr(text, "\nendpoint 'local': 3 requests waited 1.25s in all for slots "
                                 "other flowrun processes held (max_parallel 2)\n"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_matches_golden, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_key_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_log_states, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_streams_the_same_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decisions_rendered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decisions_as_the_tree_was, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_bytes_rich, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_bytes_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_interrupted_without_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
