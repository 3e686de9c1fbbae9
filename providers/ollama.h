#pragma once
/* The native Ollama adapter (`POST <base>/api/chat`), for Ollama servers and
 * proxies in front of them. Streams NDJSON (providers/ndjson); reached only
 * through providers/provider.h; this header is for providers/provider.c. */

struct fr_adapter_ops; /* defined inside providers/ only */

/* The vtable fr_adapter_new picks for FR_PROTO_OLLAMA. */
extern const struct fr_adapter_ops fr_ollama_ops;
