#pragma once
/* The JSON Schema subset behind a task's `schema`: the check at load that a
 * schema only uses what flowrun enforces, and the quality gate's validation
 * of a structured reply against it, both driven by one keyword table. Pure
 * functions over jansson values. Used by the workflow loader (dsl/decl.c)
 * and the run's quality gate; talks to engine/util only. */

/* The supported subset of JSON Schema:
 *   type (a name or an array of names: object, array, string, number,
 *     integer, boolean, null; "integer" accepts a real with no fraction,
 *     "number" accepts integers), enum (numbers compare by value, the rest
 *     deeply), const, minimum, maximum, exclusiveMinimum, exclusiveMaximum
 *     (numbers; a boolean exclusiveMinimum/Maximum, the draft-4 form, makes
 *     minimum/maximum exclusive), minLength, maxLength (in Unicode code
 *     points, not bytes), items (one schema for every element), minItems,
 *     maxItems, properties, required, additionalProperties (false, or a
 *     schema for the properties not in `properties`), and the boolean
 *     schemas true and false.
 * Every other keyword is ignored, in particular pattern, format, anyOf,
 * oneOf, allOf, not, $ref, prefixItems, uniqueItems and dependencies: a
 * schema that relies on them accepts more than it says (and, since
 * patternProperties is ignored too, additionalProperties: false counts the
 * properties it would match as extra). A keyword whose value has the wrong
 * shape (a string minimum, say) is ignored too, though a workflow file is
 * refused at load for the shapes and keywords fr_schema_check names. */

#include <jansson.h>
#include <stddef.h>

/* How deep schemas and values may nest before validation stops with a
 * "too deeply nested" failure. */
#define FR_SCHEMA_MAX_DEPTH 64

/*
 * Checks that `s` (borrowed) looks like a JSON Schema flowrun can enforce:
 * `type` a known type name or a non-empty array of them, `required` an
 * array of strings, `properties` a table of schemas, `enum` an array, and
 * the nested schemas (properties, items, additionalProperties unless a
 * boolean) likewise; keywords the quality gate cannot enforce (anyOf,
 * pattern, $ref, ...) are refused. `path` (borrowed, "" at the top)
 * prefixes locations. Returns 0, or -1 with `why` (`n` bytes) saying where
 * and what, e.g. "at properties.files: 'type' must be one of ...".
 */
int fr_schema_check(const json_t *s, const char *path, char *why, size_t n);

/*
 * Validates `value` (borrowed) against `schema` (borrowed): a JSON Schema
 * object (or boolean) in the subset above, or the string "json", which
 * accepts any JSON object.
 *
 * Returns FR_OK when the value conforms. Returns FR_EQUALITY when it does
 * not, with `msg` (`size` bytes; may be NULL when size is 0) set to the
 * first failure, found in a fixed order (type, enum, const, then the
 * keywords of the value's type; for objects required in the schema's order,
 * then properties and additional properties in sorted key order; array
 * items in index order). The message is one line:
 *
 *   "<path>: <what>"
 *
 * where <path> is a JSONPath from "$" ("$.files[2]", keys that are not
 * identifiers as $["a key"], indexes from 0) and <what> is one of
 *
 *   expected a string, got 42               (type; "a string or null", ...)
 *   expected a JSON object, got [1,2]       (the "json" schema)
 *   expected one of "a", "b", got "c"       (enum; at most 5 values shown)
 *   no value is allowed (the enum is empty), got 1
 *   expected 2, got 3                       (const)
 *   expected a number >= 1, got 0           (minimum; > < <= likewise)
 *   expected at least 3 characters, got 2   (minLength; maxLength: "at most")
 *   expected at least 1 item, got 0         (minItems; maxItems: "at most")
 *   missing required property 'files'
 *   unexpected property 'extra'             (additionalProperties: false)
 *   no value is allowed here, got 1         (the schema false)
 *   too deeply nested (more than 64 levels)
 *
 * Values are shown as compact JSON cut to about 40 bytes ("..." marks the
 * cut), so a message never carries a huge reply; names and path keys are
 * cut the same way. The message is cut to `size` bytes on a UTF-8 boundary.
 *
 * Returns FR_EINVAL, with `msg` set, when `schema` or `value` is NULL or the
 * schema is neither an object, a boolean nor "json".
 */
int fr_schema_validate(const json_t *schema, const json_t *value, char *msg, size_t size);
