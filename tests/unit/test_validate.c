/* Tests for dsl/schema's value validation: every supported keyword passing and failing,
 * with the exact message a user sees and the JSON path it names. */

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "dsl/schema.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v)
        fail_msg("bad test JSON '%s': %s", text, je.text);
    return v;
}

/* Validates `value` against `schema` (both JSON text) and returns the code;
 * the message lands in `msg`. */
static int run(const char *schema, const char *value, char *msg, size_t size)
{
    json_t *s = load(schema);
    json_t *v = load(value);
    int rc = fr_schema_validate(s, v, msg, size);
    json_decref(s);
    json_decref(v);
    return rc;
}

static void ok(const char *schema, const char *value)
{
    char msg[512] = "untouched";
    int rc = run(schema, value, msg, sizeof msg);
    if (rc != FR_OK)
        fail_msg("%s against %s: expected FR_OK, got %s: %s", value, schema, fr_err_name(rc), msg);
}

static void bad(const char *schema, const char *value, const char *expected)
{
    char msg[512] = "";
    int rc = run(schema, value, msg, sizeof msg);
    if (rc != FR_EQUALITY)
        fail_msg("%s against %s: expected FR_EQUALITY, got %s", value, schema, fr_err_name(rc));
    assert_string_equal(msg, expected);
}

static void test_type_each(void **state)
{
    (void)state;
    ok("{\"type\":\"object\"}", "{}");
    bad("{\"type\":\"object\"}", "[1,2]", "$: expected an object, got [1,2]");
    ok("{\"type\":\"array\"}", "[]");
    bad("{\"type\":\"array\"}", "{\"a\":1}", "$: expected an array, got {\"a\":1}");
    ok("{\"type\":\"string\"}", "\"x\"");
    bad("{\"type\":\"string\"}", "42", "$: expected a string, got 42");
    ok("{\"type\":\"number\"}", "1.5");
    ok("{\"type\":\"number\"}", "3");
    bad("{\"type\":\"number\"}", "\"3\"", "$: expected a number, got \"3\"");
    ok("{\"type\":\"integer\"}", "3");
    ok("{\"type\":\"integer\"}", "3.0");
    ok("{\"type\":\"integer\"}", "-1e3");
    bad("{\"type\":\"integer\"}", "3.5", "$: expected an integer, got 3.5");
    bad("{\"type\":\"integer\"}", "true", "$: expected an integer, got true");
    ok("{\"type\":\"boolean\"}", "false");
    bad("{\"type\":\"boolean\"}", "0", "$: expected a boolean, got 0");
    ok("{\"type\":\"null\"}", "null");
    bad("{\"type\":\"null\"}", "false", "$: expected null, got false");
    bad("{\"type\":\"object\"}", "null", "$: expected an object, got null");
    bad("{\"type\":\"string\"}", "0.1", "$: expected a string, got 0.1");
    bad("{\"type\":\"string\"}", "2.0", "$: expected a string, got 2.0");
}

static void test_type_list(void **state)
{
    (void)state;
    ok("{\"type\":[\"string\",\"null\"]}", "null");
    ok("{\"type\":[\"string\",\"null\"]}", "\"a\"");
    bad("{\"type\":[\"string\",\"null\"]}", "1", "$: expected a string or null, got 1");
    /* Listed in a fixed order, whatever the schema's. */
    bad("{\"type\":[\"null\",\"array\",\"object\"]}", "true",
        "$: expected an object, an array or null, got true");
    /* "a number or an integer" would say nothing more than "a number". */
    bad("{\"type\":[\"integer\",\"number\"]}", "\"1\"", "$: expected a number, got \"1\"");
    ok("{\"type\":[\"integer\",\"boolean\"]}", "7.0");
    /* Unknown type names are ignored; with none known, so is `type`. */
    ok("{\"type\":\"date\"}", "1");
    bad("{\"type\":[\"date\",\"string\"]}", "1", "$: expected a string, got 1");
}

static void test_properties_and_required(void **state)
{
    (void)state;
    const char *s =
        "{\"type\":\"object\",\"required\":[\"files\",\"title\"],"
        "\"properties\":{\"files\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
        "\"title\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}}}";
    ok(s, "{\"files\":[\"a.c\",\"b.c\"],\"title\":\"t\"}");
    ok(s, "{\"files\":[],\"title\":\"t\",\"n\":2,\"other\":{}}");
    bad(s, "{\"title\":\"t\"}", "$: missing required property 'files'");
    /* Required comes first, in the schema's order. */
    bad(s, "{\"n\":\"x\"}", "$: missing required property 'files'");
    bad(s, "{\"files\":[]}", "$: missing required property 'title'");
    bad(s, "{\"files\":[\"a\",\"b\",42],\"title\":\"t\"}", "$.files[2]: expected a string, got 42");
    /* Properties are checked in sorted key order: files < n < title. */
    bad(s, "{\"title\":1,\"n\":\"x\",\"files\":[],\"z\":0}", "$.n: expected an integer, got \"x\"");
    bad(s, "{\"title\":1,\"n\":1,\"files\":[]}", "$.title: expected a string, got 1");
    /* A required property that is null is present. */
    ok("{\"required\":[\"a\"]}", "{\"a\":null}");
    /* Object keywords do nothing to other types. */
    ok("{\"required\":[\"a\"],\"properties\":{\"a\":{\"type\":\"string\"}}}", "[1]");
    /* Names that are not identifiers are quoted in paths and messages. */
    bad("{\"properties\":{\"a key\":{\"type\":\"string\"}}}", "{\"a key\":1}",
        "$[\"a key\"]: expected a string, got 1");
    bad("{\"properties\":{\"x\\\"y\":{\"type\":\"string\"}}}", "{\"x\\\"y\":1}",
        "$[\"x\\\"y\"]: expected a string, got 1");
    bad("{\"properties\":{\"9lives\":{\"type\":\"string\"}}}", "{\"9lives\":1}",
        "$[\"9lives\"]: expected a string, got 1");
    bad("{\"required\":[\"it's\\nhere\"]}", "{}", "$: missing required property 'it\\'s\\nhere'");
}

static void test_additional_properties(void **state)
{
    (void)state;
    const char *closed = "{\"properties\":{\"a\":{},\"b\":{}},\"additionalProperties\":false}";
    ok(closed, "{\"a\":1,\"b\":2}");
    ok(closed, "{}");
    bad(closed, "{\"a\":1,\"zz\":2,\"c\":3}", "$: unexpected property 'c'");
    bad("{\"additionalProperties\":false}", "{\"x\":1}", "$: unexpected property 'x'");
    const char *typed = "{\"properties\":{\"id\":{\"type\":\"string\"}},"
                        "\"additionalProperties\":{\"type\":\"integer\"}}";
    ok(typed, "{\"id\":\"x\",\"a\":1,\"b\":2}");
    bad(typed, "{\"id\":\"x\",\"b\":\"two\",\"a\":1}", "$.b: expected an integer, got \"two\"");
    ok("{\"additionalProperties\":true}", "{\"x\":1}");
}

static void test_items_and_counts(void **state)
{
    (void)state;
    const char *s =
        "{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":\"integer\"}}";
    ok(s, "[1]");
    ok(s, "[1,2,3]");
    bad(s, "[]", "$: expected at least 1 item, got 0");
    bad(s, "[1,2,3,4]", "$: expected at most 3 items, got 4");
    bad(s, "[1,\"2\"]", "$[1]: expected an integer, got \"2\"");
    bad("{\"minItems\":2}", "[1]", "$: expected at least 2 items, got 1");
    bad("{\"maxItems\":1}", "[1,2]", "$: expected at most 1 item, got 2");
    bad("{\"maxItems\":0.0}", "[1]", "$: expected at most 0 items, got 1");
    ok("{\"minItems\":5}", "\"not an array\"");
    /* A count that is not one is ignored. */
    ok("{\"minItems\":\"5\",\"maxItems\":-1}", "[1,2]");
    bad("{\"items\":false}", "[1]", "$[0]: no value is allowed here, got 1");
    ok("{\"items\":false}", "[]");
}

static void test_nested(void **state)
{
    (void)state;
    const char *s = "{\"type\":\"object\",\"properties\":{\"modules\":{\"type\":\"array\","
                    "\"items\":{\"type\":\"object\",\"required\":[\"name\"],\"properties\":{"
                    "\"name\":{\"type\":\"string\",\"minLength\":1},"
                    "\"deps\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}}}}}}";
    ok(s, "{\"modules\":[{\"name\":\"a\",\"deps\":[]},{\"name\":\"b\",\"deps\":[\"a\"]}]}");
    bad(s, "{\"modules\":[{\"name\":\"a\"},{\"deps\":[]}]}",
        "$.modules[1]: missing required property 'name'");
    bad(s, "{\"modules\":[{\"name\":\"a\"},{\"name\":\"b\",\"deps\":[\"a\",null]}]}",
        "$.modules[1].deps[1]: expected a string, got null");
    bad(s, "{\"modules\":[{\"name\":\"\"}]}",
        "$.modules[0].name: expected at least 1 character, got 0");
    bad(s, "{\"modules\":{\"name\":\"a\"}}", "$.modules: expected an array, got {\"name\":\"a\"}");
}

static void test_enum(void **state)
{
    (void)state;
    const char *s = "{\"enum\":[\"fast\",\"slow\"]}";
    ok(s, "\"fast\"");
    bad(s, "\"medium\"", "$: expected one of \"fast\", \"slow\", got \"medium\"");
    bad(s, "1", "$: expected one of \"fast\", \"slow\", got 1");
    /* Numbers compare by value, not by their JSON spelling. */
    ok("{\"enum\":[1,2]}", "1.0");
    ok("{\"enum\":[1.0,2]}", "1");
    bad("{\"enum\":[1,2]}", "1.5", "$: expected one of 1, 2, got 1.5");
    /* Long lists are cut. */
    bad("{\"enum\":[1,2,3,4,5,6,7]}", "8", "$: expected one of 1, 2, 3, 4, 5, ..., got 8");
    bad("{\"enum\":[]}", "1", "$: no value is allowed (the enum is empty), got 1");
    ok("{\"enum\":[null,true]}", "null");
    bad("{\"enum\":[null,true]}", "false", "$: expected one of null, true, got false");
}

static void test_enum_of_objects(void **state)
{
    (void)state;
    const char *s = "{\"enum\":[{\"a\":1,\"b\":[1,{\"c\":null}]},[1,2],{}]}";
    ok(s, "{\"b\":[1,{\"c\":null}],\"a\":1}"); /* key order does not matter */
    ok(s, "{\"a\":1.0,\"b\":[1.0,{\"c\":null}]}");
    ok(s, "[1,2]");
    ok(s, "{}");
    bad(s, "{\"a\":1,\"b\":[1,{\"c\":0}]}",
        "$: expected one of {\"a\":1,\"b\":[1,{\"c\":null}]}, [1,2], {}, got "
        "{\"a\":1,\"b\":[1,{\"c\":0}]}");
    bad(s, "[2,1]", "$: expected one of {\"a\":1,\"b\":[1,{\"c\":null}]}, [1,2], {}, got [2,1]");
    bad(s, "{\"a\":1,\"b\":[1,{\"c\":null}],\"d\":1}",
        "$: expected one of {\"a\":1,\"b\":[1,{\"c\":null}]}, [1,2], {}, got "
        "{\"a\":1,\"b\":[1,{\"c\":null}],\"d\":1}");
}

static void test_const(void **state)
{
    (void)state;
    ok("{\"const\":2}", "2");
    ok("{\"const\":2}", "2.0");
    bad("{\"const\":2}", "3", "$: expected 2, got 3");
    bad("{\"const\":\"v1\"}", "\"v2\"", "$: expected \"v1\", got \"v2\"");
    ok("{\"const\":{\"k\":[true]}}", "{\"k\":[true]}");
    bad("{\"const\":{\"k\":[true]}}", "{\"k\":[false]}",
        "$: expected {\"k\":[true]}, got {\"k\":[false]}");
    ok("{\"const\":null}", "null");
    bad("{\"const\":null}", "0", "$: expected null, got 0");
}

static void test_numbers(void **state)
{
    (void)state;
    const char *s = "{\"minimum\":1,\"maximum\":10}";
    ok(s, "1");
    ok(s, "10");
    ok(s, "5.5");
    bad(s, "0", "$: expected a number >= 1, got 0");
    bad(s, "0.999", "$: expected a number >= 1, got 0.999");
    bad(s, "10.5", "$: expected a number <= 10, got 10.5");
    const char *x = "{\"exclusiveMinimum\":0,\"exclusiveMaximum\":1.5}";
    ok(x, "0.0001");
    ok(x, "1");
    bad(x, "0", "$: expected a number > 0, got 0");
    bad(x, "-3", "$: expected a number > 0, got -3");
    bad(x, "1.5", "$: expected a number < 1.5, got 1.5");
    /* The draft-4 spelling: a boolean makes minimum/maximum exclusive. */
    const char *d4 = "{\"minimum\":0,\"exclusiveMinimum\":true,\"maximum\":5,"
                     "\"exclusiveMaximum\":true}";
    ok(d4, "3");
    bad(d4, "0", "$: expected a number > 0, got 0");
    bad(d4, "5", "$: expected a number < 5, got 5");
    ok("{\"minimum\":0,\"exclusiveMinimum\":false}", "0");
    /* Exact comparison of big integers and reals. */
    ok("{\"maximum\":9007199254740993}", "9007199254740993");
    bad("{\"maximum\":9007199254740992}", "9007199254740993",
        "$: expected a number <= 9007199254740992, got 9007199254740993");
    bad("{\"maximum\":9007199254740992.0}", "9007199254740993",
        "$: expected a number <= 9007199254740992.0, got 9007199254740993");
    bad("{\"minimum\":1e300}", "9223372036854775807",
        "$: expected a number >= 1e+300, got 9223372036854775807");
    bad("{\"maximum\":-1e300}", "-9223372036854775808",
        "$: expected a number <= -1e+300, got -9223372036854775808");
    ok("{\"minimum\":-0.5}", "0");
    bad("{\"minimum\":0.5}", "0", "$: expected a number >= 0.5, got 0");
    /* Bounds do nothing to other types, and a bound that is no number is ignored. */
    ok("{\"minimum\":5}", "\"1\"");
    ok("{\"minimum\":\"5\"}", "1");
}

static void test_string_length(void **state)
{
    (void)state;
    const char *s = "{\"minLength\":2,\"maxLength\":3}";
    ok(s, "\"ab\"");
    ok(s, "\"abc\"");
    bad(s, "\"a\"", "$: expected at least 2 characters, got 1");
    bad(s, "\"abcd\"", "$: expected at most 3 characters, got 4");
    /* Code points, not bytes: "héé" is 5 bytes, "日本語" 9, "😀😀" 8. */
    ok(s, "\"h\\u00e9\\u00e9\"");
    ok(s, "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"");
    ok(s, "\"\\ud83d\\ude00\\ud83d\\ude00\"");
    bad(s, "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e!\"", "$: expected at most 3 characters, got 4");
    bad(s, "\"\\ud83d\\ude00\"", "$: expected at least 2 characters, got 1");
    bad("{\"maxLength\":1}", "\"\xc3\xa9\xc3\xa9\"", "$: expected at most 1 character, got 2");
    ok("{\"maxLength\":1}", "\"\\u0000\"");
    bad("{\"maxLength\":2}", "\"a\\u0000bc\"", "$: expected at most 2 characters, got 4");
    bad("{\"type\":\"null\"}", "\"a\\u0000b\"", "$: expected null, got \"a\\u0000b\"");
    ok("{\"minLength\":3}", "12");
}

static void test_unknown_keywords_ignored(void **state)
{
    (void)state;
    /* pattern is not supported: documented in dsl/schema.h. */
    ok("{\"type\":\"string\",\"pattern\":\"^[0-9]+$\"}", "\"abc\"");
    ok("{\"format\":\"email\",\"x-flowrun\":1,\"description\":\"d\"}", "\"not an email\"");
    ok("{\"anyOf\":[{\"type\":\"string\"}]}", "1");
    ok("{\"properties\":{\"a\":5}}", "{\"a\":1}");
}

static void test_json_mode(void **state)
{
    (void)state;
    ok("\"json\"", "{}");
    ok("\"json\"", "{\"anything\":[1,{\"x\":null}]}");
    bad("\"json\"", "[1,2]", "$: expected a JSON object, got [1,2]");
    bad("\"json\"", "\"text\"", "$: expected a JSON object, got \"text\"");
    bad("\"json\"", "null", "$: expected a JSON object, got null");
}

static void test_boolean_schemas(void **state)
{
    (void)state;
    ok("true", "[1]");
    bad("false", "{}", "$: no value is allowed here, got {}");
    bad("{\"properties\":{\"a\":false}}", "{\"a\":1}", "$.a: no value is allowed here, got 1");
    ok("{\"properties\":{\"a\":false}}", "{\"b\":1}");
}

/* Returns a schema of `n` nested `items` around {"type":"integer"} (owned). */
static json_t *nested_schema(int n)
{
    json_t *s = json_pack("{s:s}", "type", "integer");
    for (int i = 0; i < n; i++)
        s = json_pack("{s:s,s:o}", "type", "array", "items", s);
    return s;
}

/* Returns `n` arrays nested around 1 (owned). */
static json_t *nested_value(int n)
{
    json_t *v = json_integer(1);
    for (int i = 0; i < n; i++)
        v = json_pack("[o]", v);
    return v;
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char msg[1024];
    json_t *s = nested_schema(64);
    json_t *v = nested_value(64);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_OK);
    json_decref(s);
    json_decref(v);

    s = nested_schema(65);
    v = nested_value(65);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    fr_buf want;
    fr_buf_init(&want, 0);
    fr_buf_puts(&want, "$");
    for (int i = 0; i < 65; i++)
        fr_buf_puts(&want, "[0]");
    fr_buf_puts(&want, ": too deeply nested (more than 64 levels)");
    assert_string_equal(msg, fr_buf_str(&want));
    fr_buf_close(&want);
    json_decref(s);
    json_decref(v);

    /* A deep value under a shallow schema is fine: only what is checked counts. */
    s = json_pack("{s:s}", "type", "array");
    v = nested_value(1000);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_OK);
    json_decref(s);
    json_decref(v);
}

static void test_long_values_are_cut(void **state)
{
    (void)state;
    char msg[512];
    json_t *s = json_pack("{s:s}", "type", "integer");
    char big[10001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *v = json_string(big);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(
        msg, "$: expected an integer, got \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
    json_decref(v);

    /* A big array is shown up to the cut, once. */
    v = json_array();
    for (int i = 0; i < 100000; i++)
        json_array_append_new(v, json_integer(i));
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(
        msg, "$: expected an integer, got [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,...");
    json_decref(v);

    /* Nested strings are cut inside their quotes, and nothing follows the cut. */
    v = json_pack("{s:s}", "k", big);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(
        msg, "$: expected an integer, got {\"k\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"");
    json_decref(v);
    json_decref(s);

    /* Multi-byte characters are never split, and control characters never
     * break the line. */
    s = json_pack("{s:s}", "type", "null");
    v = json_string(
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(msg, "$: expected null, got \""
                             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                             "\xc3\xa9\xc3\xa9\xc3\xa9...\"");
    json_decref(v);
    v = json_string("a\nb\tc\x01\"");
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(msg, "$: expected null, got \"a\\nb\\tc\\u0001\\\"\"");
    json_decref(v);
    json_decref(s);

    /* A long property name is cut in the path and in messages. */
    char key[200];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    s = json_pack("{s:{s:{s:s}},s:[s]}", "properties", key, "type", "string", "required", key);
    v = json_object();
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(msg, "$: missing required property "
                             "'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...'");
    json_object_set_new(v, key, json_integer(1));
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EQUALITY);
    assert_string_equal(msg, "$[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...\"]: "
                             "expected a string, got 1");
    json_decref(v);
    json_decref(s);
}

static void test_message_buffer(void **state)
{
    (void)state;
    char msg[16];
    memset(msg, '#', sizeof msg);
    int rc = run("{\"type\":\"string\"}", "42", msg, sizeof msg);
    assert_int_equal(rc, FR_EQUALITY);
    assert_string_equal(msg, "$: expected a s");
    /* Cut on a UTF-8 boundary: "$: expected null, got \"é" would split é. */
    char small[25];
    rc = run("{\"type\":\"null\"}", "\"\\u00e9\"", small, sizeof small);
    assert_int_equal(rc, FR_EQUALITY);
    assert_string_equal(small, "$: expected null, got \"");
    /* No buffer at all is fine. */
    assert_int_equal(run("{\"type\":\"string\"}", "42", NULL, 0), FR_EQUALITY);
    /* Success leaves an empty message. */
    char m2[8] = "junk";
    assert_int_equal(run("{}", "42", m2, sizeof m2), FR_OK);
    assert_string_equal(m2, "");
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char msg[256];
    json_t *v = json_integer(1);
    assert_int_equal(fr_schema_validate(NULL, v, msg, sizeof msg), FR_EINVAL);
    assert_string_equal(msg, "$: nothing to validate (the schema is missing)");
    json_t *s = json_object();
    assert_int_equal(fr_schema_validate(s, NULL, msg, sizeof msg), FR_EINVAL);
    assert_string_equal(msg, "$: nothing to validate (the value is missing)");
    json_decref(s);
    s = json_string("yaml");
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EINVAL);
    assert_string_equal(msg, "$: the schema is the string \"yaml\"; only \"json\" (any JSON "
                             "object) is allowed");
    json_decref(s);
    s = json_integer(3);
    assert_int_equal(fr_schema_validate(s, v, msg, sizeof msg), FR_EINVAL);
    assert_string_equal(msg, "$: the schema is not a JSON Schema object");
    json_decref(s);
    json_decref(v);
}

/* The schema from the design's example workflow, as the DSL produces it. */
static void test_design_example(void **state)
{
    (void)state;
    const char *s =
        "{\"properties\":{\"files\":{\"items\":{\"type\":\"string\"},\"type\":\"array\"}},"
        "\"required\":[\"files\"],\"type\":\"object\"}";
    ok(s, "{\"files\":[\"api.c\",\"api.h\"]}");
    bad(s, "{\"file\":[\"api.c\"]}", "$: missing required property 'files'");
    bad(s, "{\"files\":[\"a\",\"b\",42]}", "$.files[2]: expected a string, got 42");
    bad(s, "[\"api.c\"]", "$: expected an object, got [\"api.c\"]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_each),
        cmocka_unit_test(test_type_list),
        cmocka_unit_test(test_properties_and_required),
        cmocka_unit_test(test_additional_properties),
        cmocka_unit_test(test_items_and_counts),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_enum),
        cmocka_unit_test(test_enum_of_objects),
        cmocka_unit_test(test_const),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_string_length),
        cmocka_unit_test(test_unknown_keywords_ignored),
        cmocka_unit_test(test_json_mode),
        cmocka_unit_test(test_boolean_schemas),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_long_values_are_cut),
        cmocka_unit_test(test_message_buffer),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_design_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
