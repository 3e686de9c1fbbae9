/* libFuzzer target for fr_pgurl_mask (engine/store/pgurl), the
 * masking of a PostgreSQL connection string's password before the string
 * goes into any message or log.
 *
 * Input: the connection string (up to its first NUL byte).
 *
 * Invariants: whenever libpq itself reads a password in the string
 * (PQconninfoParse), libpq reads the masked string as having the password
 * "***" or none, or refuses it; masking a masked string changes nothing. */

#include "engine/store/pgurl.h"
#include "tests/unit/support/split.h"

#include <libpq-fe.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Returns libpq's reading of `s`'s password (owned), NULL when it has none
 * or libpq refuses `s`; *parsed says whether libpq read `s` at all. */
static char *libpq_password(const char *s, int *parsed)
{
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &errmsg);
    PQfreemem(errmsg);
    *parsed = opts != NULL;
    char *pw = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0])
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    memcpy(in, data, size);
    in[size] = '\0';
    char *masked = fr_pgurl_mask(in);
    FUZZ_CHECK(masked != NULL);
    int parsed = 0, parsed_masked = 0;
    char *pw = libpq_password(in, &parsed);
    char *pw_masked = libpq_password(masked, &parsed_masked);
    if (pw)
        FUZZ_CHECK(!pw_masked || strcmp(pw_masked, "***") == 0);
    char *again = fr_pgurl_mask(masked);
    FUZZ_CHECK(strcmp(again, masked) == 0);
    free(again);
    free(pw_masked);
    free(pw);
    free(masked);
    free(in);
    return 0;
}
