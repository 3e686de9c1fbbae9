#pragma once
/* The Anthropic Messages adapter (`POST <base>/v1/messages`), for Anthropic's
 * API and the servers that speak its protocol. Streams over SSE
 * (providers/sse); structured output is a forced tool. Reached only through
 * providers/provider.h: this header is for providers/provider.c. */

struct fr_adapter_ops; /* defined inside providers/ only */

/* The vtable fr_adapter_new picks for FR_PROTO_ANTHROPIC. */
extern const struct fr_adapter_ops fr_anthropic_ops;
