#include "engine/cache.h"

#include "engine/util/buf.h"
#include "engine/util/hash.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a over the canonical text, twice with different offsets, for a
 * 128-bit key. Not a defence against a forger: the cache is the user's own. */
static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
    return fr_fnv1a64(s, n, h);
}

/* Appends field `name` as "name=LEN:bytes;": a length-prefixed form that
 * any bytes fit, so no value can run into the next field. */
static void put_field(fr_buf *b, const char *name, const char *value)
{
    const char *v = value ? value : "";
    fr_buf_printf(b, "%s=%zu:", name, strlen(v));
    fr_buf_puts(b, v);
    fr_buf_puts(b, ";");
}

char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call)
{
    /* Canonical bytes, not JSON: every field is carried whatever its bytes,
     * so text that JSON refuses can never break (or crash) the key. */
    fr_buf b;
    fr_buf_init(&b, 0);
    char num[64];
    put_field(&b, "workflow", workflow);
    put_field(&b, "task", task);
    put_field(&b, "endpoint", endpoint);
    put_field(&b, "protocol", fr_protocol_name(proto));
    put_field(&b, "model", call->model);
    put_field(&b, "system", call->system);
    put_field(&b, "prompt", call->prompt);
    snprintf(num, sizeof num, "%d", call->max_tokens);
    put_field(&b, "max_tokens", num);
    snprintf(num, sizeof num, "%.17g", call->temperature);
    put_field(&b, "temperature", num);
    snprintf(num, sizeof num, "%ld", call->seed);
    put_field(&b, "seed", call->has_seed ? num : NULL);
    char *schema = call->schema
                       ? json_dumps(call->schema, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                       : NULL;
    put_field(&b, "schema", schema);
    free(schema);
    const char *text = fr_buf_str(&b);
    size_t n = b.len;
    uint64_t a = fnv1a(text, n, 0xcbf29ce484222325ULL);
    uint64_t h = fnv1a(text, n, 0x84222325cbf29ce4ULL ^ (uint64_t)n);
    fr_buf_close(&b);
    return fr_xasprintf("%016llx%016llx", (unsigned long long)a, (unsigned long long)h);
}
