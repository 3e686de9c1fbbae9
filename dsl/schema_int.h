#pragma once
/* Internal to dsl/schema: the keyword table (dsl/schema.c) that the shape
 * check at load (dsl/schema_shape.c) and the validation walk share, the
 * state of one validation, and the wording of failures (dsl/schema_text.c).
 * Used by those three files only. */

#include "engine/util/buf.h"

#include <jansson.h>
#include <stddef.h>

/* One validation: both buffers are owned and closed by the validator. */
typedef struct fr_schema_ctx {
    fr_buf path; /* the JSONPath of the value being checked, from "$" */
    fr_buf why;  /* the failure, without its path */
} fr_schema_ctx;

/* Type names as bits, in the order messages list them. */
enum {
    T_OBJECT = 1 << 0,
    T_ARRAY = 1 << 1,
    T_STRING = 1 << 2,
    T_NUMBER = 1 << 3,
    T_INTEGER = 1 << 4,
    T_BOOLEAN = 1 << 5,
    T_NULL = 1 << 6,
    T_ANY = (1 << 7) - 1,
};

/* What a keyword's value must look like in a workflow file. */
typedef enum fr_schema_shape {
    FR_SHAPE_ANY,            /* anything (ignored in validation when wrong) */
    FR_SHAPE_TYPE,           /* a type name or a non-empty array of them */
    FR_SHAPE_NAMES,          /* an array of strings */
    FR_SHAPE_SCHEMAS,        /* a table of schemas */
    FR_SHAPE_SCHEMA,         /* one schema */
    FR_SHAPE_SCHEMA_OR_BOOL, /* one schema, or true/false */
    FR_SHAPE_ARRAY,          /* an array of values */
    FR_SHAPE_REFUSED,        /* nothing: the quality gate cannot enforce it */
} fr_schema_shape;

/* A value check gets the schema (borrowed, for the keywords that read a
 * sibling), the keyword's value `kw` and the value being validated at
 * `depth`; it returns FR_OK or FR_EQUALITY with the failure in `c`. */
typedef int (*fr_schema_check_fn)(fr_schema_ctx *c, const json_t *schema, const json_t *kw,
                                  const json_t *value, int depth);

/* One row of the keyword table. */
typedef struct fr_schema_keyword {
    const char *name;
    unsigned types;           /* the value types it judges (T_ bits); 0 when refused */
    fr_schema_shape shape;    /* checked at load */
    fr_schema_check_fn check; /* NULL for a refused keyword */
} fr_schema_keyword;

/* Returns the keyword table (static data) and its length in *n. */
const fr_schema_keyword *fr_schema_keywords(size_t *n);

/* Returns the T_ bit of the type named `s` (borrowed, may be NULL), or 0. */
unsigned fr_schema_type_bit(const char *s);

/* Appends the type names to `out` (borrowed), quoted and comma-separated,
 * as messages list them. */
void fr_schema_type_list(fr_buf *out);

/* Replaces the failure with the printf-style `fmt` (borrowed); returns
 * FR_EQUALITY so that a check can `return fr_schema_fail(...)`. */
int fr_schema_fail(fr_schema_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends `v` (borrowed) to the failure as compact JSON cut to about 40
 * bytes ("..." marks the cut). */
void fr_schema_show(fr_schema_ctx *c, const json_t *v);

/* Appends the name `k` (borrowed) to the failure in single quotes, cut the
 * same way. */
void fr_schema_show_name(fr_schema_ctx *c, const char *k);

/* Appends ".k" or ["k"] (`k` borrowed), or "[i]", to the path; each returns
 * the length fr_schema_path_pop restores. */
size_t fr_schema_path_key(fr_schema_ctx *c, const char *k);
size_t fr_schema_path_index(fr_schema_ctx *c, size_t i);
void fr_schema_path_pop(fr_schema_ctx *c, size_t mark);

/* Writes "<path>: <why>" into `msg` (`size` bytes; nothing when NULL or 0),
 * cut on a UTF-8 boundary. */
void fr_schema_write_msg(const fr_schema_ctx *c, char *msg, size_t size);
