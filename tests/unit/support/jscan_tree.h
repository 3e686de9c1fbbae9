#pragma once
/* Shared by test_jscan and fuzz_jscan: a walk of every value the path
 * scanner (engine/util/jscan.h) reads, built into a jansson tree, and the
 * check that a scan which ends well read the tree json_loadb reads.
 * Header-only (static functions): each test and target is one translation
 * unit. */

#include "engine/util/jscan.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Reads the rest of the value `v` (just read) as a tree (owned), NULL
 * once the scan is bad: strings through fr_jscan_unescape, whole numbers
 * from `i`, reals from their text. */
static json_t *jscan_tree(fr_jscan *s, const fr_jval *v)
{
    fr_jval k, x;
    json_t *out = NULL;
    switch (v->kind) {
    case FR_JOBJECT:
        out = json_object();
        while (fr_jscan_member(s, &k)) {
            char *key = strndup(k.s, k.n);
            json_t *val = fr_jscan_value(s, &x) ? jscan_tree(s, &x) : NULL;
            if (val)
                json_object_set_new(out, key, val);
            free(key);
        }
        break;
    case FR_JARRAY:
        out = json_array();
        while (fr_jscan_element(s)) {
            json_t *val = fr_jscan_value(s, &x) ? jscan_tree(s, &x) : NULL;
            if (val)
                json_array_append_new(out, val);
        }
        break;
    case FR_JSTRING: {
        char *t = malloc(v->n + 1);
        size_t n = fr_jscan_unescape(v, t);
        /* Decoding never lengthens, and the scanner took no NUL. */
        out = n <= v->n && strlen(t) == n ? json_stringn(t, n) : NULL;
        free(t);
        break;
    }
    case FR_JINT:
        out = json_integer(v->i);
        break;
    case FR_JREAL: {
        char *t = strndup(v->s, v->n);
        out = json_real(strtod(t, NULL));
        free(t);
        break;
    }
    case FR_JTRUE:
        out = json_true();
        break;
    case FR_JFALSE:
        out = json_false();
        break;
    case FR_JNULL:
        out = json_null();
        break;
    default:
        break;
    }
    return out;
}

/* Scans the `n` bytes at `text` (borrowed) whole. Returns 1 when the scan
 * ended well and json_loadb read the same tree, 0 when the scan went bad,
 * -1 when the scan ended well but json_loadb rejected the text or read
 * another tree (the invariant broken). */
static int jscan_against_jansson(const char *text, size_t n)
{
    fr_jscan s;
    fr_jval v;
    fr_jscan_init(&s, text, n);
    json_t *mine = fr_jscan_value(&s, &v) ? jscan_tree(&s, &v) : NULL;
    bool ok = fr_jscan_done(&s);
    json_error_t je;
    json_t *theirs = json_loadb(text, n, 0, &je);
    int r = !ok ? 0 : theirs && mine && json_equal(mine, theirs) ? 1 : -1;
    json_decref(mine);
    json_decref(theirs);
    return r;
}
