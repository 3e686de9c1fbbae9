/* libFuzzer target for dsl/schema's validation, the JSON Schema gate.
 *
 * Input: [size] then "<schema JSON>" NUL "<value JSON>" (or split at the
 * first newline when there is no NUL). `size` is the message buffer of a
 * second, cut run.
 *
 * Invariants: the code is FR_OK, FR_EQUALITY or FR_EINVAL; a failure
 * message starts at "$", is one line of valid UTF-8 of bounded length (no
 * reply is ever echoed whole), and a smaller buffer holds a prefix of it; a
 * run is deterministic; and every value conforms to {"const": value} and to
 * {"enum": [value]}. */

#include "engine/util/err.h"
#include "dsl/schema.h"
#include "fuzz_split.h"

#include <jansson.h>
#include <string.h>

/* The longest message: 65 path segments of a cut key, and a failure that
 * shows up to 7 cut values. */
#define MSG_BOUND 4096

static void check_message(int rc, const char *msg)
{
    size_t n = strlen(msg);
    if (rc == FR_OK) {
        FUZZ_CHECK(n == 0);
        return;
    }
    FUZZ_CHECK(msg[0] == '$');
    FUZZ_CHECK(n < MSG_BOUND);
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        FUZZ_CHECK(*p >= 0x20 && *p != 0x7f);
    json_t *s = json_string(msg); /* NULL when msg is not valid UTF-8 */
    FUZZ_CHECK(s);
    json_decref(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes) as the
 * file comment lays it out. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t small = data[0];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const char *sep = memchr(text, '\0', n);
    if (!sep)
        sep = memchr(text, '\n', n);
    if (!sep)
        return 0;
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *schema = json_loadb(text, (size_t)(sep - text), flags, NULL);
    json_t *value = json_loadb(sep + 1, n - (size_t)(sep - text) - 1, flags, NULL);
    if (!schema || !value)
        goto cleanup;

    static char msg[2 * MSG_BOUND], again[2 * MSG_BOUND], cut[256];
    int rc = fr_schema_validate(schema, value, msg, sizeof msg);
    FUZZ_CHECK(rc == FR_OK || rc == FR_EQUALITY || rc == FR_EINVAL);
    check_message(rc, msg);

    FUZZ_CHECK(fr_schema_validate(schema, value, again, sizeof again) == rc);
    FUZZ_CHECK(strcmp(msg, again) == 0);

    memset(cut, 'x', sizeof cut);
    FUZZ_CHECK(fr_schema_validate(schema, value, small ? cut : NULL, small) == rc);
    if (small) {
        size_t k = strnlen(cut, small);
        FUZZ_CHECK(k < small);
        FUZZ_CHECK(strncmp(cut, msg, k) == 0);
        /* Cut only where the buffer ends, backing off at most one character. */
        FUZZ_CHECK(k == strlen(msg) || k + 4 >= small);
    }

    json_t *c = json_pack("{s:O}", "const", value);
    json_t *e = json_pack("{s:[O]}", "enum", value);
    FUZZ_CHECK(fr_schema_validate(c, value, msg, sizeof msg) == FR_OK);
    FUZZ_CHECK(fr_schema_validate(e, value, msg, sizeof msg) == FR_OK);
    json_decref(c);
    json_decref(e);
cleanup:
    json_decref(schema);
    json_decref(value);
    return 0;
}
