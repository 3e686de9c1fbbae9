#pragma once
/* A pull scanner over one JSON text in memory, for the providers' stream
 * events (providers/openai.c, anthropic.c, ollama.c): the caller walks the
 * members it wants and skips the rest, without building a jansson tree.
 * Every byte is checked as jansson's json_loadb(text, n, 0, ...) checks it
 * (the grammar, strict UTF-8, no control characters or \u0000 in strings,
 * paired surrogates, nothing but whitespace after the top value), but the
 * scanner only ever says "fine" or "not sure": anything it does not take
 * on (a malformed text, an escaped key, a number it would have to convert,
 * nesting deeper than FR_JSCAN_MAX_DEPTH) makes the scan `bad`, and the
 * caller parses the text with json_loadb instead, so that every error is
 * still the one jansson reports. A text the scanner walks to its end
 * without going bad is one json_loadb accepts. Depends on nothing. */

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define FR_JSCAN_MAX_DEPTH 32

typedef enum fr_jkind {
    FR_JNONE, /* the scan went bad: nothing more to read */
    FR_JOBJECT,
    FR_JARRAY,
    FR_JSTRING,
    FR_JINT,  /* a whole number of up to 18 digits (value in `i`) */
    FR_JREAL, /* any other number: its text only (`s`, `n`) */
    FR_JTRUE,
    FR_JFALSE,
    FR_JNULL,
} fr_jkind;

/* One value as the scanner met it. A string's `s`/`n` are its bytes between
 * the quotes, still escaped when `escaped` (fr_jscan_unescape decodes them);
 * a real's are its text; an object or an array is open, its members or
 * elements still to read (or skip). Borrowed from the scanned text. */
typedef struct fr_jval {
    fr_jkind kind;
    const char *s;
    size_t n;
    bool escaped;
    long long i;
} fr_jval;

/* The scanner: a cursor over the borrowed text and its open containers.
 * Plain data, on the caller's stack; nothing to free. */
typedef struct fr_jscan {
    const char *p;
    const char *end;
    int depth;
    bool bad;
    bool top;                           /* the top value was read */
    char open[FR_JSCAN_MAX_DEPTH + 1];  /* '{' or '[' at each open depth (1..depth) */
    bool first[FR_JSCAN_MAX_DEPTH + 1]; /* that container has no member read yet */
} fr_jscan;

/* Starts a scan of the `n` bytes at `text` (borrowed for the scan's life). */
void fr_jscan_init(fr_jscan *s, const char *text, size_t n);

/* Starts a scan of the `n` bytes at `text` (borrowed) whose top value must
 * be an object, and opens it: returns false (the scan bad) when it is not
 * one. Then read its members with fr_jscan_member. */
bool fr_jscan_object(fr_jscan *s, const char *text, size_t n);

/* Reads the next value into *v: a scalar whole, or the opening of an object
 * or an array (then read its members with fr_jscan_member, its elements
 * with fr_jscan_element, or drop it with fr_jscan_skip). The top value must
 * be an object or an array (as json_loadb wants). Returns false (and
 * v->kind FR_JNONE) once the scan is bad. */
bool fr_jscan_value(fr_jscan *s, fr_jval *v);

/* Inside the object just opened: reads the next member's key into *key and
 * leaves the scanner before its value (read it or skip it next). Returns
 * false at the object's end (closed) or when the scan is bad; a key with an
 * escape in it makes the scan bad. */
bool fr_jscan_member(fr_jscan *s, fr_jval *key);

/* Inside the array just opened: returns true when another element follows
 * (read it or skip it next), false at the array's end (closed) or when the
 * scan is bad. */
bool fr_jscan_element(fr_jscan *s);

/* Skips what remains of the object or array `v` (borrowed) just opened,
 * checked to its end; nothing for a scalar. Callers use fr_jscan_skip. */
void fr_jscan_skip_container(fr_jscan *s, const fr_jval *v);

/* Skips what remains of the value `v` (borrowed) just read: the rest of an
 * object or an array, checked to its end; nothing for a scalar. Inline:
 * most values skipped are scalars, and then it costs no call. */
static inline void fr_jscan_skip(fr_jscan *s, const fr_jval *v)
{
    if (v->kind == FR_JOBJECT || v->kind == FR_JARRAY)
        fr_jscan_skip_container(s, v);
}

/* Returns true when the scan ended well: the top value read, nothing but
 * whitespace after it, never bad. */
bool fr_jscan_done(fr_jscan *s);

/* Returns true when `v` (borrowed) is a string whose decoded bytes are the
 * NUL-terminated `lit` (borrowed). An escaped string is never compared
 * (keys with escapes go bad). Inline: the adapters test each key against
 * string literals, whose length the compiler then knows, so a test that
 * fails costs a compare or two instead of two calls. */
static inline bool fr_jscan_is(const fr_jval *v, const char *lit)
{
    size_t n = strlen(lit);
    return v->kind == FR_JSTRING && !v->escaped && v->n == n && memcmp(v->s, lit, n) == 0;
}

/* Decodes the string `v` (borrowed; its escapes were checked when it was
 * read) into `out` (borrowed, at least v->n + 1 bytes: decoding never
 * lengthens), NUL-terminated; returns the decoded length. */
size_t fr_jscan_unescape(const fr_jval *v, char *out);
