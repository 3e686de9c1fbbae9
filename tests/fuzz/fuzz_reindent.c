/* libFuzzer target for engine/report's fr_report_print_text, which indents
 * a report's compact text as it writes it (what `flowrun --json` prints).
 *
 * Input: any bytes.
 *   - Printed as they are (NUL-terminated): any text is scanned without
 *     reading past its end or crashing.
 *   - When jansson parses them (any value): the tree's compact text
 *     (JSON_COMPACT | JSON_REAL_PRECISION(17)), printed, is byte for byte
 *     json_dumps(tree, JSON_INDENT(2)), as the report's is. */

#include "engine/report.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What fr_report_print_text writes of `text` (borrowed), owned; NULL when
 * it failed. */
static char *printed(const char *text, size_t *len)
{
    char *out = NULL;
    FILE *f = open_memstream(&out, len);
    if (!f)
        abort();
    int rc = fr_report_print_text(text, f);
    if (fclose(f) != 0 || rc != FR_OK) {
        free(out);
        return NULL;
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    if (!raw)
        return 0;
    memcpy(raw, data, size);
    raw[size] = '\0';
    size_t n;
    free(printed(raw, &n));
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (v) {
        char *compact = json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(17) | JSON_ENCODE_ANY);
        char *want = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
        if (compact && want) {
            char *got = printed(compact, &n);
            if (!got || n != strlen(want) || memcmp(got, want, n) != 0) {
                fprintf(stderr, "compact %s\nwant %s\ngot %s\n", compact, want,
                        got ? got : "(failed)");
                abort();
            }
            free(got);
        }
        free(compact);
        free(want);
        json_decref(v);
    }
    free(raw);
    return 0;
}
