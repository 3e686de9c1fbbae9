#pragma once
/* Checks of text that crosses into requests, cache keys and JSON: valid
 * UTF-8 without NUL bytes. Used by dsl/ (workflow literals, rendered
 * prompts) and providers/; depends on nothing. */

#include <stdbool.h>
#include <stddef.h>

/* Returns true when the `n` bytes at `s` (borrowed) are well-formed UTF-8
 * (no overlong forms, no surrogates, nothing past U+10FFFF). On false, *bad
 * (when not NULL) receives the offset of the first byte that is not. A NUL
 * byte counts as valid here; see fr_utf8_text. */
bool fr_utf8_valid(const char *s, size_t n, size_t *bad);

/* Returns NULL when the `n` bytes at `s` (borrowed) are text flowrun can
 * carry: valid UTF-8 and no NUL byte. Otherwise returns a static phrase
 * saying what is wrong ("holds a NUL byte", "is not valid UTF-8") and sets
 * *bad (when not NULL) to the byte offset of the first offender. */
const char *fr_utf8_text(const char *s, size_t n, size_t *bad);
