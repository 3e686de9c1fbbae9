/* engine/trace and engine/htmlreport: rendered from a stored JSON report
 * alone. Lanes are given greedily per endpoint (overlapping attempts never
 * share one, a freed lane is reused), attempts are told apart as first,
 * retry and fallback, the trace has a complete event per attempt with its
 * turns nested, named processes and threads and paired flows; a report
 * from before attempt_log renders without one; the HTML escapes what the
 * models wrote and references nothing outside itself. */
#include "engine/htmlreport.h"
#include "engine/trace.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* A run of two tasks on two endpoints: "a" tried e1 twice, then e2; "b"
 * depends on "a" and overlapped nothing but c, which ran beside a's
 * first attempts on e1 (capacity 2). */
static const char REPORT[] =
    "{\"run\": \"r1\", \"workflow\": \"w <x>\", \"status\": \"ok\", \"exit_code\": 0,"
    " \"makespan_ms\": 400, \"cost_usd\": 0.3, \"baseline\": \"e2\", \"baseline_cost_usd\": 0.5,"
    " \"endpoints\": {\"e1\": {\"tier\": \"local\", \"max_parallel\": 2},"
    "                 \"e2\": {\"tier\": \"cloud\", \"max_parallel\": 1}},"
    " \"tasks\": ["
    "  {\"name\": \"a\", \"status\": \"ok\", \"deps\": [], \"cost_usd\": 0.1,"
    "   \"output\": \"<script>alert(1)</script> see https://example.com\","
    "   \"decisions\": [{\"policy\": \"p\", \"endpoint\": \"e1\", \"outcome\": \"error\"}],"
    "   \"tool_calls\": [],"
    "   \"attempt_log\": ["
    "    {\"attempt\": 1, \"endpoint\": \"e1\", \"start_ms\": 0, \"end_ms\": 100,"
    "     \"outcome\": \"error\", \"cost_usd\": 0, \"turns\": [{\"start_ms\": 0, \"end_ms\": "
    "100}]},"
    "    {\"attempt\": 2, \"endpoint\": \"e1\", \"start_ms\": 100, \"end_ms\": 150,"
    "     \"outcome\": \"error\", \"cost_usd\": 0, \"turns\": [{\"start_ms\": 100, \"end_ms\": "
    "150}]},"
    "    {\"attempt\": 3, \"endpoint\": \"e2\", \"start_ms\": 160, \"end_ms\": 250,"
    "     \"outcome\": \"ok\", \"cost_usd\": 0.1, \"turns\": [{\"start_ms\": 160, \"end_ms\": "
    "250}]}]},"
    "  {\"name\": \"c\", \"status\": \"ok\", \"deps\": [], \"cost_usd\": 0,"
    "   \"attempt_log\": [{\"attempt\": 1, \"endpoint\": \"e1\", \"start_ms\": 50, \"end_ms\": 120,"
    "     \"outcome\": \"ok\", \"cost_usd\": 0, \"turns\": []}]},"
    "  {\"name\": \"b\", \"status\": \"ok\", \"deps\": [\"a\"], \"cost_usd\": 0.2,"
    "   \"attempt_log\": [{\"attempt\": 1, \"endpoint\": \"e2\", \"start_ms\": 260, \"end_ms\": "
    "400,"
    "     \"outcome\": \"ok\", \"cost_usd\": 0.2, \"turns\": []}]}]}";

static json_t *report(void)
{
    json_error_t jerr;
    json_t *r = json_loads(REPORT, 0, &jerr);
    if (!r)
        print_error("fixture: %s at %d\n", jerr.text, jerr.position);
    assert_non_null(r);
    return r;
}

/* The lane entry of task `name`'s attempt `attempt`. */
static const json_t *lane_of(const json_t *lanes, const char *name, int attempt)
{
    size_t i;
    json_t *l;
    json_array_foreach(lanes, i, l)
    {
        if (!strcmp(json_string_value(json_object_get(l, "name")), name) &&
            json_integer_value(json_object_get(l, "attempt")) == attempt)
            return l;
    }
    fail_msg("no lane for %s #%d", name, attempt);
    return NULL;
}

static long long geti(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static void test_lanes(void **state)
{
    (void)state;
    json_t *r = report();
    json_t *lanes = fr_trace_lanes(r);
    assert_int_equal(json_array_size(lanes), 5);
    /* a#1 0-100 lane 0; c 50-120 overlaps it: lane 1; a#2 100-150 reuses lane 0. */
    assert_int_equal(geti(lane_of(lanes, "a", 1), "lane"), 0);
    assert_int_equal(geti(lane_of(lanes, "c", 1), "lane"), 1);
    assert_int_equal(geti(lane_of(lanes, "a", 2), "lane"), 0);
    assert_int_equal(geti(lane_of(lanes, "a", 3), "lane"), 0);
    assert_int_equal(geti(lane_of(lanes, "a", 3), "ep"), 1);
    assert_string_equal(json_string_value(json_object_get(lane_of(lanes, "a", 2), "kind")),
                        "retry");
    const json_t *fb = lane_of(lanes, "a", 3);
    assert_string_equal(json_string_value(json_object_get(fb, "kind")), "fallback");
    assert_string_equal(json_string_value(json_object_get(fb, "from")), "e1");
    json_decref(lanes);
    json_decref(r);
}

/* Renders `r` with fr_trace_write and parses it back. */
static json_t *trace_of(const json_t *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(fr_trace_write(r, f), 0);
    fclose(f);
    json_error_t jerr;
    json_t *t = json_loads(buf, 0, &jerr);
    free(buf);
    assert_non_null(t);
    return t;
}

static void test_trace(void **state)
{
    (void)state;
    json_t *r = report();
    json_t *t = trace_of(r);
    size_t i, attempts = 0, turns = 0, starts = 0, ends = 0, names = 0;
    json_t *e;
    json_array_foreach(json_object_get(t, "traceEvents"), i, e)
    {
        const char *ph = json_string_value(json_object_get(e, "ph"));
        const char *cat = json_string_value(json_object_get(e, "cat"));
        const char *name = json_string_value(json_object_get(e, "name"));
        if (!strcmp(ph, "X")) {
            assert_true(geti(e, "dur") >= 0);
            attempts += !strcmp(cat, "attempt");
            turns += !strcmp(cat, "turn");
        }
        if (!strcmp(ph, "X") && !strcmp(cat, "attempt") && strstr(name, "a #3")) {
            assert_non_null(strstr(name, "fallback"));
            assert_int_equal(geti(e, "ts"), 160000); /* microseconds */
            assert_int_equal(geti(e, "dur"), 90000);
            assert_int_equal(geti(e, "pid"), 3); /* e2: the run is 1, e1 2 */
        }
        starts += !strcmp(ph, "s");
        ends += !strcmp(ph, "f");
        names +=
            !strcmp(ph, "M") && (!strcmp(name, "process_name") || !strcmp(name, "thread_name"));
    }
    assert_int_equal(attempts, 5);
    assert_int_equal(turns, 3);
    assert_int_equal(starts, 1); /* a -> b */
    assert_int_equal(ends, 1);
    assert_int_equal(names, 3 + 3); /* run, e1, e2; e1's two slots, e2's one */
    json_decref(t);
    /* A report from before attempt_log: no attempt, still a valid trace. */
    json_array_foreach(json_object_get(r, "tasks"), i, e) json_object_del(e, "attempt_log");
    t = trace_of(r);
    json_array_foreach(json_object_get(t, "traceEvents"), i, e)
        assert_string_not_equal(json_string_value(json_object_get(e, "ph")), "X");
    json_decref(t);
    json_decref(r);
}

static void test_html(void **state)
{
    (void)state;
    json_t *r = report();
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fr_error err = {0};
    assert_int_equal(fr_html_report(r, f, &err), FR_OK);
    fclose(f);
    assert_non_null(strstr(buf, "<!DOCTYPE html>"));
    assert_non_null(strstr(buf, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_null(strstr(buf, "<script>alert"));
    assert_non_null(strstr(buf, "w &lt;x&gt;"));
    /* The only URL is the one the model wrote, as text. */
    const char *u = strstr(buf, "http");
    assert_non_null(u);
    assert_null(strstr(u + 1, "http"));
    assert_int_equal(strncmp(u - 4, "see https://example.com", 23), 0);
    for (const char *id = "summary\0timeline\0dag\0cost\0"; *id; id += strlen(id) + 1) {
        char want[64];
        snprintf(want, sizeof want, "id=\"%s\"", id);
        assert_non_null(strstr(buf, want));
    }
    free(buf);
    json_decref(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lanes),
        cmocka_unit_test(test_trace),
        cmocka_unit_test(test_html),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
