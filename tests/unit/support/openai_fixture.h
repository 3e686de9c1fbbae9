#pragma once
/* Shared by the OpenAI-compatible adapter tests (test_openai_request,
 * test_openai_stream, test_openai_reply): the call they make and a fake
 * key. Header-only, as adapter_harness.h: include it after cmocka.h and
 * adapter_harness.h (with ADAPTER_UNDER_TEST). */

#include "providers/provider.h"
#include "tests/unit/support/adapter_harness.h"

#include <stdbool.h>

#define KEY "sk-test-SECRET-0123456789abcdef"

static inline fr_call make_call(bool stream)
{
    return adapter_call("http://127.0.0.1:8000/v1", "qwen2.5-coder", stream);
}
