/* The logger's two formats: text lines stay key=value as they were, and each
 * JSON line is one object whose keys are the line's own fields, with its
 * event, level and component, that jansson parses back. */
#include "engine/util/log.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Logs through `emit` into memory in the given format and returns the text
 * (caller frees). */
#define CAPTURE(out, fmt, ...)                                                                     \
    do {                                                                                           \
        char *buf_ = NULL;                                                                         \
        size_t len_ = 0;                                                                           \
        FILE *f_ = open_memstream(&buf_, &len_);                                                   \
        fr_log_set_stream(f_);                                                                     \
        fr_log_set_format(fmt);                                                                    \
        fr_log_set_level(FR_LOG_TRACE);                                                            \
        __VA_ARGS__;                                                                               \
        fr_log_set_stream(NULL);                                                                   \
        fr_log_set_format(FR_LOG_TEXT);                                                            \
        fr_log_set_level(FR_LOG_WARN);                                                             \
        fclose(f_);                                                                                \
        (out) = buf_;                                                                              \
    } while (0)

static json_t *parse_line(const char *line)
{
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (!j)
        fail_msg("not JSON (%s): %s", jerr.text, line);
    return j;
}

static void test_text_unchanged(void **state)
{
    (void)state;
    char *out;
    CAPTURE(out, FR_LOG_TEXT,
            fr_log_event(FR_LOG_WARN, "sched", "task.end", "task=%s status=%s reason=\"%s\"", "a",
                         "failed", "HTTP 500"));
    assert_string_equal(out, "flowrun: warn sched task=a status=failed reason=\"HTTP 500\"\n");
    free(out);
}

/* A line with nested fields (an --explain decision): under JSON its object's
 * members follow the head; under text the text is printed as it is. */
static void test_json_fields_object(void **state)
{
    (void)state;
    char *out;
    CAPTURE(out, FR_LOG_JSON,
            fr_log_json_fields(FR_LOG_WARN, "route", "route.decision",
                               "{\"task\":\"a\",\"candidates\":[{\"name\":\"e\",\"free\":2}]}",
                               "explain: a -> e\n"));
    json_t *j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "event")), "route.decision");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "task")), "a");
    json_t *c = json_object_get(j, "candidates");
    assert_true(json_is_array(c));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(c, 0), "free")), 2);
    json_decref(j);
    free(out);
    /* An empty object still makes a whole line. */
    CAPTURE(out, FR_LOG_JSON, fr_log_json_fields(FR_LOG_WARN, "route", "route.decision", "{}", ""));
    j = parse_line(out);
    assert_non_null(json_object_get(j, "time"));
    json_decref(j);
    free(out);
}

static int g_before, g_after;

static void count_around(void *ud, bool before)
{
    (void)ud;
    if (before)
        g_before++;
    else
        g_after++;
}

/* The display's hook runs around each line bound for stderr, and once each
 * when the stream is redirected; lines held back in a redirected stream do
 * not call it. */
static void test_around_hook(void **state)
{
    (void)state;
    fr_log_set_around(count_around, NULL);
    char *out;
    CAPTURE(out, FR_LOG_TEXT, fr_log(FR_LOG_WARN, "run", "held=1"));
    assert_int_equal(g_before, 1); /* the redirection */
    assert_int_equal(g_after, 0);  /* the display draws again on its own */
    assert_false(fr_log_held());
    free(out);
    FILE *saved = stderr;
    char *buf = NULL;
    size_t len = 0;
    stderr = open_memstream(&buf, &len);
    fr_log(FR_LOG_WARN, "run", "shown=1");
    fclose(stderr);
    stderr = saved;
    assert_int_equal(g_before, 2);
    assert_int_equal(g_after, 1);
    assert_string_equal(buf, "flowrun: warn run shown=1\n");
    free(buf);
    fr_log_set_around(NULL, NULL);
}

static void test_json_fields(void **state)
{
    (void)state;
    char *out;
    CAPTURE(out, FR_LOG_JSON,
            fr_log_event(FR_LOG_INFO, "sched", "task.dispatch",
                         "task=%s endpoint=%s tier=%s attempt=%d ttfb_ms=%.1f dispatch", "7", "gpu",
                         "local", 2, 12.5));
    json_t *j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "component")), "sched");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "task.dispatch");
    /* A task named 7 stays a string; counts and times are numbers. */
    assert_string_equal(json_string_value(json_object_get(j, "task")), "7");
    assert_string_equal(json_string_value(json_object_get(j, "endpoint")), "gpu");
    assert_int_equal(json_integer_value(json_object_get(j, "attempt")), 2);
    assert_true(json_real_value(json_object_get(j, "ttfb_ms")) == 12.5);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "dispatch");
    const char *t = json_string_value(json_object_get(j, "time"));
    assert_non_null(t);
    assert_int_equal(strlen(t), strlen("2026-12-01T21:30:00.123Z"));
    json_decref(j);
    free(out);
}

static void test_json_quotes_and_defaults(void **state)
{
    (void)state;
    char *out;
    /* A reason with quotes and '=' inside stays one value; a line without an
     * event takes its first word when it starts with one, else its first
     * field's name. */
    CAPTURE(out, FR_LOG_JSON,
            fr_log(FR_LOG_WARN, "run", "task=%s reason=\"%s\" retrying", "b",
                   "schema: \"x\" must be a=b"),
            fr_log(FR_LOG_WARN, "run", "signal=%d stopping: running tasks are cancelled", 2),
            fr_log(FR_LOG_ERROR, "run", "alert: %s", "half spent"));
    char *save = NULL;
    char *l1 = strtok_r(out, "\n", &save);
    char *l2 = strtok_r(NULL, "\n", &save);
    char *l3 = strtok_r(NULL, "\n", &save);
    assert_non_null(l3);
    json_t *a = parse_line(l1), *b = parse_line(l2), *c = parse_line(l3);
    assert_string_equal(json_string_value(json_object_get(a, "reason")),
                        "schema: \"x\" must be a=b");
    assert_string_equal(json_string_value(json_object_get(a, "event")), "task");
    assert_int_equal(json_integer_value(json_object_get(b, "signal")), 2);
    assert_string_equal(json_string_value(json_object_get(b, "event")), "signal");
    assert_string_equal(json_string_value(json_object_get(b, "msg")),
                        "stopping: running tasks are cancelled");
    assert_string_equal(json_string_value(json_object_get(c, "event")), "alert");
    assert_string_equal(json_string_value(json_object_get(c, "msg")), "alert: half spent");
    json_decref(a);
    json_decref(b);
    json_decref(c);
    free(out);
}

/* Reserved keys are not overwritten by a line's own field of that name. */
static void test_json_reserved(void **state)
{
    (void)state;
    char *out;
    CAPTURE(out, FR_LOG_JSON,
            fr_log_event(FR_LOG_INFO, "x", "x.y", "level=%s event=%s task=%s task=%s", "fake",
                         "other", "first", "second"));
    json_t *j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "event")), "x.y");
    assert_string_equal(json_string_value(json_object_get(j, "task")), "first");
    json_decref(j);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_unchanged),
        cmocka_unit_test(test_json_fields_object),
        cmocka_unit_test(test_around_hook),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_quotes_and_defaults),
        cmocka_unit_test(test_json_reserved),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
