#include "engine/util/redact.h"

#include "engine/util/buf.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct secret {
    char *s;
    size_t len;
} secret;

/* Written at startup and shutdown only; see redact.h. */
static secret *g_secrets;
static size_t g_nsecrets;

/* Header names whose value is a credential. "authorization" also covers
 * "Proxy-Authorization"; matched case-insensitively. */
static const char *const header_names[] = {"authorization", "x-goog-api-key", "x-api-key"};

/* Authorization schemes kept in front of the redacted credential. */
static const char *const auth_schemes[] = {"bearer", "basic", "token", "digest"};

/* Query parameters whose value is a key, after '?', '&' or ';'. */
static const char *const query_names[] = {"key", "api_key"};

#define N(a) (sizeof(a) / sizeof((a)[0]))

void fr_redact_add(const char *secret_text)
{
    if (!secret_text)
        return;
    size_t len = strlen(secret_text);
    if (len < FR_REDACT_MIN_SECRET)
        return;
    for (size_t i = 0; i < g_nsecrets; i++)
        if (g_secrets[i].len == len && memcmp(g_secrets[i].s, secret_text, len) == 0)
            return;
    g_secrets = fr_xrealloc(g_secrets, (g_nsecrets + 1) * sizeof *g_secrets);
    g_secrets[g_nsecrets].s = fr_xstrndup(secret_text, len);
    g_secrets[g_nsecrets].len = len;
    g_nsecrets++;
}

void fr_redact_clear(void)
{
    for (size_t i = 0; i < g_nsecrets; i++) {
        fr_wipe(g_secrets[i].s, g_secrets[i].len);
        free(g_secrets[i].s);
    }
    free(g_secrets);
    g_secrets = NULL;
    g_nsecrets = 0;
}

/* True when `needle` (lower case) occurs in `s`, ignoring case. */
static bool contains_ci(const char *s, const char *needle)
{
    size_t n = strlen(needle);
    for (; *s; s++)
        if ((*s | 0x20) == needle[0] && strncasecmp(s, needle, n) == 0)
            return true;
    return false;
}

bool fr_redact_needed(const char *s)
{
    if (!s)
        return false;
    /* "api-key" covers x-api-key and x-goog-api-key; "key=" every query name. */
    return g_nsecrets > 0 || contains_ci(s, "authorization") || contains_ci(s, "api-key") ||
           contains_ci(s, "key=");
}

/* The length of the longest registered secret, or run of at least
 * FR_REDACT_MIN_PREFIX of its first bytes, that starts at `p` within
 * `avail` bytes; 0 if none. */
static size_t secret_at(const char *p, size_t avail)
{
    size_t best = 0;
    for (size_t i = 0; i < g_nsecrets && avail > 0; i++) {
        const secret *k = &g_secrets[i];
        if (*p != k->s[0])
            continue;
        size_t n = 0;
        while (n < k->len && n < avail && p[n] == k->s[n])
            n++;
        size_t min = k->len < FR_REDACT_MIN_PREFIX ? k->len : FR_REDACT_MIN_PREFIX;
        if (n >= min && n > best)
            best = n;
    }
    return best;
}

/* True for a byte that can be part of a credential: not blank, control,
 * quote, separator or bracket. Brackets end a value so that an existing
 * "[REDACTED]" is left alone. */
static bool value_byte(unsigned char c)
{
    return c > ' ' && c != 0x7f && !strchr("\"',;\\<>()[]{}&#", c);
}

/* Skips an opening or closing quote, escaped or not. */
static const char *skip_quote(const char *q)
{
    if (q[0] == '\\' && (q[1] == '"' || q[1] == '\''))
        return q + 2;
    if (q[0] == '"' || q[0] == '\'')
        return q + 1;
    return q;
}

static const char *skip_blanks(const char *q)
{
    while (*q == ' ' || *q == '\t')
        q++;
    return q;
}

/* When a credential header name starts at `p` ("x-api-key: VALUE",
 * "\"Authorization\": \"Bearer VALUE\"", "authorization=VALUE"), sets
 * `*keep` to the bytes before the value and returns the value's length;
 * returns 0 otherwise. */
static size_t header_at(const char *p, size_t *keep)
{
    const char *q = NULL;
    bool auth = false;
    for (size_t i = 0; i < N(header_names) && !q; i++) {
        size_t n = strlen(header_names[i]);
        if (strncasecmp(p, header_names[i], n) == 0) {
            q = p + n;
            auth = i == 0;
        }
    }
    if (!q)
        return 0;
    q = skip_blanks(skip_quote(q));
    if (*q != ':' && *q != '=')
        return 0;
    q = skip_quote(skip_blanks(q + 1));
    for (size_t i = 0; auth && i < N(auth_schemes); i++) {
        size_t n = strlen(auth_schemes[i]);
        if (strncasecmp(q, auth_schemes[i], n) == 0 && (q[n] == ' ' || q[n] == '\t')) {
            q = skip_blanks(q + n);
            break;
        }
    }
    size_t v = 0;
    while (value_byte((unsigned char)q[v]))
        v++;
    *keep = (size_t)(q - p);
    return v;
}

/* When a key query parameter starts at `p` ("?key=VALUE", "&api_key=VALUE"),
 * sets `*keep` to the bytes before the value and returns the value's
 * length; returns 0 otherwise. */
static size_t query_at(const char *p, size_t *keep)
{
    if (*p != '?' && *p != '&' && *p != ';')
        return 0;
    for (size_t i = 0; i < N(query_names); i++) {
        size_t n = strlen(query_names[i]);
        if (strncasecmp(p + 1, query_names[i], n) == 0 && p[1 + n] == '=') {
            const char *q = p + 1 + n + 1;
            size_t v = 0;
            while (value_byte((unsigned char)q[v]))
                v++;
            *keep = (size_t)(q - p);
            return v;
        }
    }
    return 0;
}

/* Copies `s` into `out` with every registered secret replaced. Returns true
 * if anything was. */
static bool redact_secrets(const char *s, fr_buf *out)
{
    bool hit = false;
    for (const char *p = s; *p;) {
        size_t n = secret_at(p, SIZE_MAX); /* the NUL ends every comparison */
        if (n) {
            fr_buf_puts(out, FR_REDACTED);
            p += n;
            hit = true;
        } else {
            fr_buf_append(out, p++, 1);
        }
    }
    return hit;
}

/* Copies `s` into `out` with every header and query value replaced.
 * Returns true if anything was. */
static bool redact_patterns(const char *s, fr_buf *out)
{
    bool hit = false;
    for (const char *p = s; *p;) {
        size_t keep = 0;
        size_t v = header_at(p, &keep);
        if (!v)
            v = query_at(p, &keep);
        if (v) {
            fr_buf_append(out, p, keep);
            fr_buf_puts(out, FR_REDACTED);
            p += keep + v;
            hit = true;
        } else {
            fr_buf_append(out, p++, 1);
        }
    }
    return hit;
}

/* Frees a string that may hold a secret, overwriting it first. */
static void wipe_free(char *s)
{
    if (!s)
        return;
    fr_wipe(s, strlen(s));
    free(s);
}

bool fr_redact_secrets(char **s, size_t *len)
{
    if (!*s || g_nsecrets == 0)
        return false;
    const char *text = *s;
    fr_buf b;
    fr_buf_init(&b, 0);
    bool hit = false;
    size_t done = 0; /* bytes of text already copied to b */
    for (size_t i = 0; i < *len;) {
        size_t n = secret_at(text + i, *len - i);
        if (!n) {
            i++;
            continue;
        }
        fr_buf_append(&b, text + done, i - done);
        fr_buf_puts(&b, FR_REDACTED);
        i += n;
        done = i;
        hit = true;
    }
    if (!hit) {
        fr_buf_close(&b);
        return false;
    }
    fr_buf_append(&b, text + done, *len - done);
    fr_wipe(*s, *len);
    free(*s);
    *len = b.len;
    *s = fr_buf_take(&b);
    return true;
}

char *fr_redact(const char *s)
{
    if (!s)
        return NULL;
    char *text = fr_xstrdup(s);
    /* Secrets first: a key is removed whole even where it holds a byte that
     * would end a header value early. */
    fr_buf b;
    fr_buf_init(&b, 0);
    if (g_nsecrets > 0 && redact_secrets(text, &b)) {
        wipe_free(text);
        text = fr_buf_take(&b);
    }
    fr_buf_reset(&b);
    if (redact_patterns(text, &b)) {
        wipe_free(text);
        text = fr_buf_take(&b);
    }
    /* A buffer left over holds a copy of the input, secrets and all. */
    if (b.data)
        fr_wipe(b.data, b.cap);
    fr_buf_close(&b);
    return text;
}
