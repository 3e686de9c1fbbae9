/* engine/util/jsonw: the streaming writer prints what jansson's
 * json_dumps(tree, JSON_INDENT(2)) prints, byte for byte. Random trees are
 * built twice from one seed, once as a jansson tree and once through the
 * writer's calls, jansson's refusals included (strings that are not UTF-8,
 * reals that are not finite); strings hold every control character,
 * quotes, slashes and characters of every UTF-8 length; numbers the edges
 * of long long and double. */
#include "engine/util/jsonw.h"

#include "engine/util/err.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static uint64_t rng_state;

static uint64_t next(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static unsigned below(unsigned n)
{
    return (unsigned)(next() % n);
}

/* Pieces strings are made of: every control character, what JSON escapes,
 * ASCII, 2-, 3- and 4-byte characters, and (when `bad`) bytes jansson
 * refuses: a lone continuation, an overlong form, a surrogate, past
 * U+10FFFF, a truncated sequence, 0xFF. */
static void random_string(char *s, size_t cap, bool bad)
{
    static const char *good[] = {"\"",
                                 "\\",
                                 "/",
                                 "a",
                                 "Z",
                                 " ",
                                 "\x7f",
                                 "\xc3\xa9",
                                 "\xe2\x82\xac",
                                 "\xef\xbf\xbf",
                                 "\xf0\x9f\x98\x80",
                                 "\xf4\x8f\xbf\xbf",
                                 "\xc2\x80",
                                 "\xed\x9f\xbf",
                                 "\\u0000",
                                 "key",
                                 "{}[],:"};
    static const char *evil[] = {"\x80",         "\xc0\xaf",         "\xe0\x80\x80",
                                 "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
                                 "\xff",         "\xc1\xbf"};
    size_t len = 0, n = below(12);
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char piece[8];
        unsigned k = below(40);
        if (k < 31) { /* a control character, 0x01..0x1f */
            piece[0] = (char)(1 + k);
            piece[1] = '\0';
        } else {
            snprintf(piece, sizeof piece, "%s", good[below(sizeof good / sizeof *good)]);
        }
        if (bad && below(8) == 0)
            snprintf(piece, sizeof piece, "%s", evil[below(sizeof evil / sizeof *evil)]);
        size_t pl = strlen(piece);
        if (len + pl + 1 > cap)
            break;
        memcpy(s + len, piece, pl + 1);
        len += pl;
    }
}

static double random_real(void)
{
    static const double edges[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   1e300,
                                   -1e300,
                                   5e-324,
                                   -5e-324,
                                   1e-5,
                                   1e-4,
                                   1e-7,
                                   1e16,
                                   1e17,
                                   1e21,
                                   1e22,
                                   0.1,
                                   1.0 / 3,
                                   123456789.0,
                                   DBL_MAX,
                                   -DBL_MAX,
                                   DBL_MIN,
                                   2.5e-308,
                                   9007199254740993.0,
                                   1500.0,
                                   0.0025,
                                   100.0};
    unsigned k = below(11);
    if (k < 4)
        return edges[below(sizeof edges / sizeof *edges)];
    if (k == 4)
        return below(2) ? NAN : (below(2) ? INFINITY : -INFINITY);
    if (k == 5)
        return (double)(int64_t)next() / 1e6;
    if (k == 6) /* integral, of every magnitude */
        return (double)((int64_t)next() >> below(64));
    uint64_t bits = next();
    double v;
    memcpy(&v, &bits, sizeof v); /* any pattern: NaNs and infinities too */
    return v;
}

static long long random_int(void)
{
    static const long long edges[] = {0, 1, -1, LLONG_MAX, LLONG_MIN, INT_MAX, INT_MIN, 1000};
    return below(2) ? edges[below(sizeof edges / sizeof *edges)] : (long long)next();
}

/* Adds `v` (owned, NULL is refused as jansson refuses it) to `parent`
 * under `key`. */
static void add(json_t *parent, const char *key, json_t *v)
{
    if (json_is_object(parent))
        json_object_set_new(parent, key, v);
    else
        json_array_append_new(parent, v);
}

static json_t *random_subtree(int depth);

/* Writes one random member into `w` and adds the same to `parent`. */
static void random_member(fr_jsonw *w, json_t *parent, const char *key, int depth)
{
    char s[128];
    unsigned kind = below(depth > 4 ? 8 : 11);
    switch (kind) {
    case 0:
        random_string(s, sizeof s, true);
        add(parent, key, json_string(s));
        fr_jsonw_str(w, key, s);
        break;
    case 1:
        if (below(2)) {
            add(parent, key, json_null());
            fr_jsonw_str_or_null(w, key, NULL);
        } else {
            random_string(s, sizeof s, true);
            add(parent, key, json_string(s));
            fr_jsonw_str_or_null(w, key, s);
        }
        break;
    case 2: {
        long long v = random_int();
        add(parent, key, json_integer((json_int_t)v));
        fr_jsonw_int(w, key, v);
        break;
    }
    case 3: {
        double v = random_real();
        add(parent, key, json_real(v));
        fr_jsonw_real(w, key, v);
        break;
    }
    case 4: {
        bool present = below(2);
        double v = random_real();
        add(parent, key, present ? json_real(v) : json_null());
        fr_jsonw_real_or_null(w, key, v, present);
        break;
    }
    case 5: {
        bool v = below(2);
        add(parent, key, json_boolean(v));
        fr_jsonw_bool(w, key, v);
        break;
    }
    case 6:
        add(parent, key, json_null());
        fr_jsonw_null(w, key);
        break;
    case 7: {
        json_t *sub = below(3) ? random_subtree(depth + 1) : NULL;
        fr_jsonw_value(w, key, sub);
        add(parent, key, sub);
        break;
    }
    default: { /* a container written call by call */
        bool obj = below(2);
        json_t *c = obj ? json_object() : json_array();
        if (obj)
            fr_jsonw_object(w, key);
        else
            fr_jsonw_array(w, key);
        unsigned n = below(5);
        for (unsigned i = 0; i < n; i++) {
            char k[160];
            random_string(s, sizeof s, false);
            snprintf(k, sizeof k, "%s#%u", s, i); /* distinct keys: no replacement */
            random_member(w, c, obj ? k : NULL, depth + 1);
        }
        fr_jsonw_close(w);
        add(parent, key, c);
    }
    }
}

/* A random jansson tree (owned) of valid strings and finite reals. */
static json_t *random_subtree(int depth)
{
    char s[128];
    switch (below(depth > 4 ? 5 : 7)) {
    case 0:
        random_string(s, sizeof s, false);
        return json_string(s);
    case 1:
        return json_integer((json_int_t)random_int());
    case 2: {
        double v = random_real();
        return json_real(isfinite(v) ? v : 0.5);
    }
    case 3:
        return below(2) ? json_true() : json_false();
    case 4: {
        random_string(s, sizeof s, false);
        return json_stringn(s, strlen(s) + 1); /* an embedded NUL */
    }
    case 5: {
        json_t *o = json_object();
        for (unsigned i = below(4); i > 0; i--) {
            char k[160];
            random_string(s, sizeof s, false);
            snprintf(k, sizeof k, "%s%u", s, i);
            json_object_set_new(o, k, random_subtree(depth + 1));
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        for (unsigned i = below(4); i > 0; i--)
            json_array_append_new(a, random_subtree(depth + 1));
        return a;
    }
    }
}

/* Builds 3,000 random trees both ways with `flags` (indent 2, or compact
 * with `precision`) and compares the bytes. */
static void random_trees(bool compact, int precision)
{
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        rng_state = seed;
        fr_buf out;
        fr_buf_init(&out, 0);
        fr_jsonw *w = fr_jsonw_new(&out);
        if (compact)
            fr_jsonw_compact(w, precision);
        json_t *root = json_object();
        fr_jsonw_object(w, NULL);
        for (unsigned i = 0, n = below(6); i < n; i++) {
            char k[16];
            snprintf(k, sizeof k, "k%u", i);
            random_member(w, root, k, 0);
        }
        fr_jsonw_close(w);
        assert_true(fr_jsonw_ok(w));
        size_t flags = compact ? JSON_COMPACT | JSON_REAL_PRECISION(precision) : JSON_INDENT(2);
        char *want = json_dumps(root, flags);
        assert_non_null(want);
        if (strcmp(want, fr_buf_str(&out)) != 0)
            print_error("seed %llu:\nwant %s\ngot  %s\n", (unsigned long long)seed, want,
                        fr_buf_str(&out));
        assert_string_equal(fr_buf_str(&out), want);
        if (compact) { /* the one-call form the providers use */
            char *again = fr_jsonw_dump_compact(root, precision);
            assert_string_equal(again, want);
            free(again);
        }
        free(want);
        json_decref(root);
        fr_jsonw_free(w);
        fr_buf_close(&out);
    }
}

static void test_random_trees_match_json_dumps(void **state)
{
    (void)state;
    random_trees(false, 0);
}

static void test_random_trees_compact(void **state)
{
    (void)state;
    random_trees(true, 15); /* as the request bodies (providers/provider.c) */
    random_trees(true, 17);
    random_trees(true, 3);
    assert_null(fr_jsonw_dump_compact(NULL, 15));
}

/* The reals a report holds (ms with a fraction, dollars, ratios) and
 * values near every power of ten and rounding edge of 1e-3..1e15, printed
 * without printf, against snprintf("%.*g") for every precision. */
static void test_everyday_reals_as_printf_prints_them(void **state)
{
    (void)state;
    rng_state = 7;
    static const double scale[] = {1e-3, 1e-2, 0.1, 1, 10, 1e3, 1e6, 1e9, 1e12, 1e14};
    for (int i = 0; i < 120000; i++) {
        double v;
        switch (i % 4) {
        case 0: /* a time in ms with microseconds */
            v = (double)(next() % 100000000000ull) / 1000.0;
            break;
        case 1: /* dollars */
            v = (double)(next() % 10000000ull) * 1e-6;
            break;
        case 2: /* anywhere in the range */
            v = scale[below(10)] * ((double)(next() >> 11) / 9007199254740992.0 + 0.5);
            break;
        default: /* next to a power of ten or a half */
            v = scale[below(10)] * (below(2) ? 1 : 0.5);
            for (int k = (int)below(4); k > 0; k--)
                v = below(2) ? nextafter(v, 0) : nextafter(v, 1e300);
            break;
        }
        if (below(2))
            v = -v;
        for (int p = 1; p <= 17; p++) {
            char want[64];
            snprintf(want, sizeof want, "%.*g", p, v);
            if (!strchr(want, '.') && !strchr(want, 'e'))
                strcat(want, ".0");
            json_t *j = json_real(v);
            char *got = fr_jsonw_dump_compact(j, p);
            json_decref(j);
            if (!strchr(want, 'e'))
                assert_string_equal(got, want);
            free(got);
        }
    }
}

static void test_reals_as_jansson_prints_them(void **state)
{
    (void)state;
    rng_state = 99;
    for (int i = 0; i < 200000; i++) {
        double v = random_real();
        char got[40];
        size_t n = fr_jsonw_format_real(got, sizeof got, v);
        json_t *j = json_real(v);
        if (!j) {
            assert_int_equal(n, 0); /* NaN, infinities */
            continue;
        }
        char *want = json_dumps(j, JSON_ENCODE_ANY);
        assert_int_equal(n, strlen(want));
        assert_string_equal(got, want);
        free(want);
        for (int p = 1; p <= 17; p += 7) { /* 1, 8, 15 significant digits */
            want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(p));
            char *compact = fr_jsonw_dump_compact(j, p);
            assert_string_equal(compact, want);
            free(compact);
            free(want);
        }
        json_decref(j);
    }
}

static void test_utf8_as_jansson_accepts_it(void **state)
{
    (void)state;
    rng_state = 7;
    for (int i = 0; i < 100000; i++) {
        char s[16];
        size_t n = below(sizeof s);
        for (size_t k = 0; k < n; k++)
            s[k] = (char)(below(4) ? 0x80 + below(0x80) : 1 + below(0xff));
        s[n] = '\0';
        json_t *j = json_string(s);
        assert_int_equal(fr_jsonw_str_valid(s), j != NULL);
        json_decref(j);
    }
    assert_false(fr_jsonw_str_valid(NULL));
}

static void test_empty_containers_and_top_values(void **state)
{
    (void)state;
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_jsonw *w = fr_jsonw_new(&out);
    fr_jsonw_object(w, NULL);
    fr_jsonw_array(w, "a");
    fr_jsonw_close(w);
    fr_jsonw_object(w, "o");
    fr_jsonw_close(w);
    fr_jsonw_array(w, "nested");
    fr_jsonw_array(w, NULL);
    fr_jsonw_close(w);
    fr_jsonw_object(w, NULL);
    fr_jsonw_close(w);
    fr_jsonw_close(w);
    assert_false(fr_jsonw_str(w, "bad", "\xff"));
    assert_false(fr_jsonw_real(w, "nan", NAN));
    assert_false(fr_jsonw_value(w, "none", NULL));
    fr_jsonw_close(w);
    assert_true(fr_jsonw_ok(w));
    assert_string_equal(fr_buf_str(&out),
                        "{\n  \"a\": [],\n  \"o\": {},\n  \"nested\": [\n    [],\n"
                        "    {}\n  ]\n}");
    fr_jsonw_free(w);
    fr_buf_close(&out);
}

static void test_buffer_limit_reported(void **state)
{
    (void)state;
    fr_buf out;
    fr_buf_init(&out, 8);
    fr_jsonw *w = fr_jsonw_new(&out);
    fr_jsonw_object(w, NULL);
    fr_jsonw_str(w, "a long key", "and a longer value");
    fr_jsonw_close(w);
    assert_false(fr_jsonw_ok(w));
    fr_jsonw_free(w);
    fr_buf_close(&out);
}

/* Writes one object's members, each under `name` or its FR_JSONW_KEY form
 * (`lit`), with the writer indented or compact; returns the owned text. */
static char *members(bool by_key, bool compact)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_jsonw *w = fr_jsonw_new(&out);
    if (compact)
        fr_jsonw_compact(w, 17);
#define BOTH(fn, lit, ...)                                                                         \
    (by_key ? fr_jsonw_##fn(w, lit, __VA_ARGS__)                                                   \
            : fr_jsonw_##fn##_k(w, FR_JSONW_KEY(lit), __VA_ARGS__))
    fr_jsonw_str_k(w, FR_JSONW_KEY("top"), "a top value has no name");
    fr_jsonw_object(w, NULL);
    BOTH(str, "s", "x\"y");
    BOTH(str, "bad", "\xff"); /* refused: left out */
    BOTH(str_or_null, "n", NULL);
    BOTH(int, "i", -42);
    BOTH(real, "r", 217.128566);
    BOTH(real, "inf", INFINITY); /* refused */
    BOTH(real_or_null, "rn", 1.0, false);
    BOTH(bool, "b", true);
    if (by_key) {
        fr_jsonw_null(w, "z");
        fr_jsonw_array(w, "a");
    } else {
        fr_jsonw_null_k(w, FR_JSONW_KEY("z"));
        fr_jsonw_array_k(w, FR_JSONW_KEY("a"));
    }
    BOTH(int, "ignored in an array", 1);
    if (by_key)
        fr_jsonw_object(w, "o");
    else
        fr_jsonw_object_k(w, FR_JSONW_KEY("o"));
    BOTH(real, "deep", 0.1);
    fr_jsonw_close(w);
    fr_jsonw_close(w);
    fr_jsonw_close(w);
#undef BOTH
    assert_true(fr_jsonw_ok(w));
    fr_jsonw_free(w);
    return fr_buf_take(&out);
}

static void test_keys_known_when_compiling(void **state)
{
    (void)state;
    for (int compact = 0; compact < 2; compact++) {
        char *want = members(true, compact), *got = members(false, compact);
        assert_string_equal(got, want);
        free(want);
        free(got);
    }
    char *indented = members(false, false);
    assert_string_equal(indented,
                        "\"a top value has no name\"{\n  \"s\": \"x\\\"y\",\n  \"n\": null,\n"
                        "  \"i\": -42,\n  \"r\": 217.12856600000001,\n  \"rn\": null,\n"
                        "  \"b\": true,\n  \"z\": null,\n  \"a\": [\n    1,\n    {\n"
                        "      \"deep\": 0.10000000000000001\n    }\n  ]\n}");
    free(indented);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_trees_match_json_dumps),
        cmocka_unit_test(test_random_trees_compact),
        cmocka_unit_test(test_reals_as_jansson_prints_them),
        cmocka_unit_test(test_everyday_reals_as_printf_prints_them),
        cmocka_unit_test(test_utf8_as_jansson_accepts_it),
        cmocka_unit_test(test_empty_containers_and_top_values),
        cmocka_unit_test(test_buffer_limit_reported),
        cmocka_unit_test(test_keys_known_when_compiling),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
