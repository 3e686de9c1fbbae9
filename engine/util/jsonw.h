#pragma once
/* A streaming JSON writer into a growable buffer (util/buf.h) that prints
 * exactly what jansson's json_dumps(v, JSON_INDENT(2)) prints for the tree
 * the same calls would build: members in the order written, two spaces a
 * level, ": " after a key, "{}" and "[]" when empty; strings escaped as
 * jansson escapes them ('"', '\\', and controls: \b \f \n \r \t, else
 * \u00XX; '/' and non-ASCII as they are); integers as %lld; reals as
 * %.17g with ".0" added when integral and the exponent's '+' and leading
 * zeros dropped (or as JSON_COMPACT, fr_jsonw_compact). It mirrors jansson's refusals too: where
 * jansson's constructor would return NULL (a NULL or non-UTF-8 string, a NaN or an infinite real)
 * and json_object_set_new or json_array_append_new would then add nothing, the writer adds nothing
 * and returns false. Used by the report (engine/report.c), which renders a run's report without a
 * tree, and by the request bodies (providers/provider.c and each adapter's members). */

#include "engine/util/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct fr_jsonw fr_jsonw;

/* Returns a new writer (owned; fr_jsonw_free) appending to `out` (borrowed;
 * it must outlive the writer). Never NULL. */
fr_jsonw *fr_jsonw_new(fr_buf *out);
/* Releases `w` (owned; NULL is fine); the buffer keeps what was written. */
void fr_jsonw_free(fr_jsonw *w);
/* Makes `w` print as json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(p))
 * does: no newline or space anywhere, reals with `precision` significant
 * digits (1..31; else 17). Call before the first write. */
void fr_jsonw_compact(fr_jsonw *w, int precision);
/* Hands what `w` gathered to its buffer (the writer stages up to 8 KiB;
 * fr_jsonw_free hands over the rest too) and returns false once an append
 * to the buffer failed (its limit), true otherwise. */
bool fr_jsonw_ok(fr_jsonw *w);

/* Every writer below takes `key` (borrowed): the member's name inside an
 * object, NULL for an array's element or the top value. Keys are written
 * as given (the caller passes valid UTF-8). */

/* Opens an object or an array; close it with fr_jsonw_close. */
void fr_jsonw_object(fr_jsonw *w, const char *key);
void fr_jsonw_array(fr_jsonw *w, const char *key);
/* Closes the innermost open object or array. */
void fr_jsonw_close(fr_jsonw *w);

/* Writes the string `s` (borrowed, NUL-terminated). NULL or not UTF-8:
 * writes nothing and returns false (jansson's json_string is NULL). */
bool fr_jsonw_str(fr_jsonw *w, const char *key, const char *s);
/* As fr_jsonw_str, but NULL writes null. */
bool fr_jsonw_str_or_null(fr_jsonw *w, const char *key, const char *s);
/* Returns true when `s` (borrowed) is a string jansson accepts: not NULL,
 * valid UTF-8. */
bool fr_jsonw_str_valid(const char *s);
void fr_jsonw_int(fr_jsonw *w, const char *key, long long v);
/* A NaN or an infinity writes nothing and returns false (json_real). */
bool fr_jsonw_real(fr_jsonw *w, const char *key, double v);
/* fr_jsonw_real when `present`, else null. */
bool fr_jsonw_real_or_null(fr_jsonw *w, const char *key, double v, bool present);
void fr_jsonw_bool(fr_jsonw *w, const char *key, bool v);
void fr_jsonw_null(fr_jsonw *w, const char *key);
/* Writes the tree `v` (borrowed) as json_dumps would print it at this
 * depth. NULL writes nothing and returns false. */
bool fr_jsonw_value(fr_jsonw *w, const char *key, const json_t *v);

/* A member's name known when compiling: FR_JSONW_KEY("name") holds the
 * member's prefix "\"name\": " and its length, so that the writers below
 * put it with one copy, without measuring or scanning the name (a report
 * writes some sixty members a task). `lit` must be a string literal that
 * needs no escape: no '"', no '\\', no control byte. */
typedef struct fr_jsonw_key {
    const char *prefix;
    size_t len;
} fr_jsonw_key;
#define FR_JSONW_KEY(lit) ((fr_jsonw_key){"\"" lit "\": ", sizeof(lit) + 3})

/* As the writers above, under the key `k`, the same bytes. */
void fr_jsonw_object_k(fr_jsonw *w, fr_jsonw_key k);
void fr_jsonw_array_k(fr_jsonw *w, fr_jsonw_key k);
bool fr_jsonw_str_k(fr_jsonw *w, fr_jsonw_key k, const char *s);
bool fr_jsonw_str_or_null_k(fr_jsonw *w, fr_jsonw_key k, const char *s);
void fr_jsonw_int_k(fr_jsonw *w, fr_jsonw_key k, long long v);
bool fr_jsonw_real_k(fr_jsonw *w, fr_jsonw_key k, double v);
bool fr_jsonw_real_or_null_k(fr_jsonw *w, fr_jsonw_key k, double v, bool present);
void fr_jsonw_bool_k(fr_jsonw *w, fr_jsonw_key k, bool v);
void fr_jsonw_null_k(fr_jsonw *w, fr_jsonw_key k);
bool fr_jsonw_value_k(fr_jsonw *w, fr_jsonw_key k, const json_t *v);

/* Returns json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(precision)) of
 * `v` (borrowed) as an owned string, written by a compact writer; NULL for
 * a NULL `v`. */
char *fr_jsonw_dump_compact(const json_t *v, int precision);

/* Writes `v` as jansson prints a real into `buf` (at least 32 bytes) and
 * returns its length, or 0 for a NaN or an infinity. */
size_t fr_jsonw_format_real(char *buf, size_t n, double v);
