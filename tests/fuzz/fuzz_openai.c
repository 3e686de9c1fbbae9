/* libFuzzer target for the OpenAI-compatible adapter (providers/openai.c): SSE streams with [DONE],
 * chat.completion bodies, error events and error bodies.
 * The input layout and the invariants are in fuzz_adapter.h. */

#include "fuzz_adapter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Called by libFuzzer once per input: `data` (borrowed, `size` bytes) as the
 * file comment lays it out. Returns 0; a broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_adapter(FR_PROTO_OPENAI, "http://127.0.0.1:9/v1", data, size);
}
