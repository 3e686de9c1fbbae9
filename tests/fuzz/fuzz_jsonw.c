/* libFuzzer target for engine/util/jsonw, the streaming JSON writer.
 *
 * Input: [mode][precision] then the rest.
 *   mode bit 0 = 0: the rest is JSON text; when jansson parses it, the
 *                   writer prints the tree (fr_jsonw_value) indented and
 *                   compact with 1 + precision % 31 digits.
 *   mode bit 0 = 1: the rest is a program of writer calls, each also made
 *                   on a jansson tree: op byte, then its operands (a string:
 *                   a length byte and that many bytes, any bytes, so
 *                   jansson's refusals are exercised; an int or a real: 8
 *                   raw bytes).
 *   mode bit 1:     compact (for the program).
 *
 * Invariant: the writer's bytes are json_dumps' bytes for the same tree
 * and flags (JSON_INDENT(2), or JSON_COMPACT | JSON_REAL_PRECISION(p)). */

#include "engine/util/buf.h"
#include "engine/util/jsonw.h"
#include "tests/unit/support/split.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct prog {
    const uint8_t *p, *end;
    unsigned keys; /* a counter that keeps every key distinct */
} prog;

static bool take(prog *g, void *out, size_t n)
{
    if ((size_t)(g->end - g->p) < n)
        return false;
    memcpy(out, g->p, n);
    g->p += n;
    return true;
}

static void add(json_t *parent, const char *key, json_t *v)
{
    if (json_is_object(parent))
        json_object_set_new(parent, key, v);
    else
        json_array_append_new(parent, v);
}

/* Runs the program's calls into `parent` (and `w`) until a close or the
 * end; `depth` bounds the nesting. */
static void run(prog *g, fr_jsonw *w, json_t *parent, int depth)
{
    uint8_t op;
    while (take(g, &op, 1)) {
        char key[24];
        snprintf(key, sizeof key, "k%u", g->keys++);
        const char *k = json_is_object(parent) ? key : NULL;
        switch (op % 10) {
        case 0:
        case 1: {
            uint8_t n = 0;
            char s[256];
            take(g, &n, 1);
            if (!take(g, s, n))
                return;
            s[n] = '\0';
            if (op % 10 == 0) {
                add(parent, k, json_string(s));
                fr_jsonw_str(w, k, s);
            } else {
                add(parent, k, n ? json_string(s) : json_null());
                fr_jsonw_str_or_null(w, k, n ? s : NULL);
            }
            break;
        }
        case 2: {
            long long v;
            if (!take(g, &v, sizeof v))
                return;
            add(parent, k, json_integer((json_int_t)v));
            fr_jsonw_int(w, k, v);
            break;
        }
        case 3: {
            double v;
            if (!take(g, &v, sizeof v))
                return;
            add(parent, k, json_real(v));
            fr_jsonw_real(w, k, v);
            break;
        }
        case 4:
        case 5: {
            if (depth > 64)
                return;
            json_t *c = op % 10 == 4 ? json_object() : json_array();
            if (op % 10 == 4)
                fr_jsonw_object(w, k);
            else
                fr_jsonw_array(w, k);
            run(g, w, c, depth + 1);
            fr_jsonw_close(w);
            add(parent, k, c);
            break;
        }
        case 6:
            return; /* close */
        case 7:
            add(parent, k, json_boolean(op & 0x80));
            fr_jsonw_bool(w, k, op & 0x80);
            break;
        case 8:
            add(parent, k, json_null());
            fr_jsonw_null(w, k);
            break;
        default:
            break;
        }
    }
}

/* Checks the writer's rendering of `v` (borrowed) against json_dumps. */
static void check_tree(const json_t *v, int precision)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_jsonw *w = fr_jsonw_new(&out);
    fr_jsonw_value(w, NULL, v);
    FUZZ_CHECK(fr_jsonw_ok(w));
    char *want = json_dumps(v, JSON_ENCODE_ANY | JSON_INDENT(2));
    FUZZ_CHECK(want && strcmp(want, fr_buf_str(&out)) == 0);
    free(want);
    fr_jsonw_free(w);
    fr_buf_close(&out);
    char *got = fr_jsonw_dump_compact(v, precision);
    want = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(precision));
    FUZZ_CHECK(got && want && strcmp(got, want) == 0);
    free(got);
    free(want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes) as the
 * file comment lays it out. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int precision = 1 + data[1] % 31;
    if (!(data[0] & 1)) {
        json_t *v =
            json_loadb((const char *)data + 2, size - 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        if (v)
            check_tree(v, precision);
        json_decref(v);
        return 0;
    }
    bool compact = data[0] & 2;
    prog g = {.p = data + 2, .end = data + size};
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_jsonw *w = fr_jsonw_new(&out);
    if (compact)
        fr_jsonw_compact(w, precision);
    json_t *root = json_object();
    fr_jsonw_object(w, NULL);
    run(&g, w, root, 0);
    fr_jsonw_close(w);
    FUZZ_CHECK(fr_jsonw_ok(w));
    char *want =
        json_dumps(root, compact ? JSON_COMPACT | JSON_REAL_PRECISION(precision) : JSON_INDENT(2));
    FUZZ_CHECK(want && strcmp(want, fr_buf_str(&out)) == 0);
    free(want);
    json_decref(root);
    fr_jsonw_free(w);
    fr_buf_close(&out);
    return 0;
}
