#pragma once
/* The result cache's key: a 128-bit hash of the workflow, the task and everything that
 * shapes its reply (endpoint, protocol, model, system prompt, prompt,
 * max_tokens, temperature, seed, schema), so a task reuses only its own
 * result for the same request to the same model: two tasks that happen to
 * send the same prompt still get their own samples. The entries live in
 * the state store. */

#include "providers/provider.h"

/* Returns the key (owned, 32 hex digits) of task `task` of workflow
 * `workflow` sending `call` (all borrowed) to the endpoint named `endpoint`
 * (borrowed) in `proto`. The API key and
 * the URL are not part of it: a key rotation or a new address of the same
 * model does not void the cache. */
char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call);
