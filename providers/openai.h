#pragma once
/* The OpenAI-compatible adapter (`POST <base>/chat/completions`), used for
 * vLLM, llama.cpp, LM Studio, OpenRouter, Together and OpenAI itself.
 * Streams over SSE (providers/sse); reached only through providers/provider.h:
 * this header is for providers/provider.c. */

struct fr_adapter_ops; /* defined inside providers/ only */

/* The vtable fr_adapter_new picks for FR_PROTO_OPENAI. */
extern const struct fr_adapter_ops fr_openai_ops;
