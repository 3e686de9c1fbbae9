#include "engine/cache.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <string.h>

/* FNV-1a over the canonical text, twice with different offsets, for a
 * 128-bit key. Not a defence against a forger: the cache is the user's own. */
static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call)
{
    /* Canonical JSON: keys sorted, compact, so equal requests hash equal. */
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:o, s:O}", "workflow", workflow, "task",
        task, "endpoint", endpoint, "protocol", fr_protocol_name(proto), "model",
        call->model ? call->model : "", "system", call->system ? call->system : "", "prompt",
        call->prompt ? call->prompt : "", "max_tokens", call->max_tokens, "temperature",
        call->temperature, "seed", call->has_seed ? json_integer(call->seed) : json_null(),
        "schema", call->schema ? call->schema : json_null());
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(o);
    size_t n = strlen(text);
    uint64_t a = fnv1a(text, n, 0xcbf29ce484222325ULL);
    uint64_t b = fnv1a(text, n, 0x84222325cbf29ce4ULL ^ (uint64_t)n);
    free(text);
    return fr_xasprintf("%016llx%016llx", (unsigned long long)a, (unsigned long long)b);
}
