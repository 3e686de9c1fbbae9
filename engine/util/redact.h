#pragma once
/* Redaction of secrets from text that leaves the process: a registry of the
 * API keys read from the environment, plus generic patterns (credential
 * headers, key= query parameters). The logger and the report pass their text
 * through fr_redact; the engine registers each key where it reads it.
 *
 * Threads: the registry is written only at startup (fr_redact_add, before
 * the loop and any worker thread run) and at shutdown (fr_redact_clear, after
 * they stopped). Reading it (fr_redact, fr_redact_needed) takes no lock and
 * is safe from any thread in between. */

#include <stdbool.h>
#include <stddef.h>

/* The text every redacted value is replaced with. */
#define FR_REDACTED "[REDACTED]"

/* The shortest run of a registered secret's first bytes that is redacted on
 * its own: a key cut off at the end of a snippet still goes, while a public
 * prefix such as "sk-proj-" quoted alone stays. */
#define FR_REDACT_MIN_PREFIX 12

/* The shortest secret kept: shorter strings would redact ordinary words. */
#define FR_REDACT_MIN_SECRET 8

/* Registers a secret (borrowed; a copy is kept). NULL, strings shorter than
 * FR_REDACT_MIN_SECRET bytes and secrets already registered are ignored.
 * Startup only (see above). */
void fr_redact_add(const char *secret);

/* Forgets every secret, overwriting each copy before freeing it. Shutdown
 * only (see above). */
void fr_redact_clear(void);

/* True when fr_redact might change `s` (borrowed): a secret is registered,
 * or `s` mentions a credential header or a key= parameter. A cheap test for
 * callers that want to skip the copy; false for NULL. */
bool fr_redact_needed(const char *s);

/* Replaces, in the owned string *s of *len bytes (NUL-terminated after
 * them; NUL bytes inside are fine), every registered secret and every run
 * of at least FR_REDACT_MIN_PREFIX of its first bytes with FR_REDACTED, as
 * fr_redact does; the header and query patterns are left alone, since this
 * is for content (a reply that repeats a key it was shown), where a word
 * like "Authorization:" is ordinary text. When something was replaced, *s
 * becomes a new owned string (the old one is overwritten, then freed), *len
 * its length, and it returns true; otherwise it changes nothing (no copy)
 * and returns false. A NULL *s is fine. Threads: as fr_redact. */
bool fr_redact_secrets(char **s, size_t *len);

/* Returns an owned copy of `s` (borrowed) in which
 *   - every registered secret, and every run of at least
 *     FR_REDACT_MIN_PREFIX of its first bytes (the whole secret when it is
 *     shorter), is replaced with FR_REDACTED;
 *   - the value after an `Authorization`, `Proxy-Authorization`,
 *     `x-api-key` or `x-goog-api-key` header name (followed by `:` or `=`,
 *     quoted or not; an auth scheme such as `Bearer` is kept) is replaced
 *     with FR_REDACTED;
 *   - the value of a `key=` or `api_key=` query parameter (after `?` or `&`)
 *     is replaced with FR_REDACTED.
 * Header and parameter names match case-insensitively; secrets match byte
 * for byte. Returns NULL when `s` is NULL. */
char *fr_redact(const char *s);
