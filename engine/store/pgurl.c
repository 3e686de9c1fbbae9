/* A PostgreSQL connection string with its passwords masked (pgurl.h), as
 * libpq reads a URI (conninfo_uri_parse_options) and a key=value string. */

#include "engine/store/pgurl.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/util/buf.h"
#include "engine/util/mem.h"

static bool is_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

bool fr_pgurl_is_url(const char *state)
{
    return state && is_uri(state);
}

const char *fr_pgurl_state(const char *state_dir)
{
    const char *s = state_dir && *state_dir ? state_dir : getenv("FLOWRUN_STATE");
    return fr_pgurl_is_url(s) ? s : NULL;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Whether the `n` bytes at `s`, percent-decoded, are `word`. */
static bool decoded_is(const char *s, size_t n, const char *word)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++, k++) {
        int ch = (unsigned char)s[i];
        if (ch == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            ch = hexval(s[i + 1]) * 16 + hexval(s[i + 2]);
            i += 2;
        }
        if (word[k] == '\0' || word[k] != ch)
            return false;
    }
    return word[k] == '\0';
}

static void mask_into(fr_buf *out, const char *s);

/* A URI as libpq reads it (conninfo_uri_parse_options): the user info runs
 * to the first '@' before any '/'; parameters follow the first '?'. */
static void mask_uri(fr_buf *out, const char *s)
{
    const char *p = strstr(s, "://") + 3;
    fr_buf_append(out, s, (size_t)(p - s));
    const char *at = p;
    while (*at && *at != '@' && *at != '/')
        at++;
    if (*at == '@') {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            fr_buf_append(out, p, (size_t)(colon - p));
            fr_buf_puts(out, ":***");
        } else {
            fr_buf_append(out, p, (size_t)(at - p));
        }
        p = at;
    }
    const char *q = strchr(p, '?');
    if (!q) {
        fr_buf_puts(out, p);
        return;
    }
    fr_buf_append(out, p, (size_t)(q - p + 1));
    p = q + 1;
    while (*p) {
        size_t len = strcspn(p, "&");
        const char *eq = memchr(p, '=', len);
        if (eq && decoded_is(p, (size_t)(eq - p), "password")) {
            fr_buf_append(out, p, (size_t)(eq - p + 1));
            fr_buf_puts(out, "***");
        } else if (eq && decoded_is(p, (size_t)(eq - p), "dbname")) {
            fr_buf_append(out, p, (size_t)(eq - p + 1));
            char *inner = fr_xstrndup(eq + 1, len - (size_t)(eq + 1 - p));
            mask_into(out, inner);
            free(inner);
        } else {
            fr_buf_append(out, p, len);
        }
        p += len;
        if (*p == '&')
            fr_buf_append(out, p++, 1);
    }
}

/* A key=value string as libpq reads it (conninfo_parse): keys end at
 * white space or '='; a value is single-quoted with backslash escapes, or
 * runs to white space with backslash escapes. */
static void mask_kv(fr_buf *out, const char *s)
{
    const char *p = s;
    while (*p) {
        const char *start = p;
        while (isspace((unsigned char)*p))
            p++;
        const char *key = p;
        while (*p && *p != '=' && !isspace((unsigned char)*p))
            p++;
        size_t klen = (size_t)(p - key);
        while (isspace((unsigned char)*p))
            p++;
        if (klen == 0 && *p == '\0') {
            fr_buf_puts(out, start);
            return;
        }
        if (*p != '=' || klen == 0) { /* libpq refuses it: show nothing more */
            fr_buf_append(out, start, (size_t)(key - start));
            fr_buf_puts(out, key == start && out->len ? " ***" : "***");
            return;
        }
        p++;
        while (isspace((unsigned char)*p))
            p++;
        const char *val = p;
        fr_buf vb;
        fr_buf_init(&vb, 0);
        if (*p == '\'') {
            p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                fr_buf_append(&vb, p++, 1);
            }
            if (*p != '\'') { /* unterminated */
                fr_buf_close(&vb);
                fr_buf_append(out, start, (size_t)(val - start));
                fr_buf_puts(out, "***");
                return;
            }
            p++;
        } else {
            while (*p && !isspace((unsigned char)*p)) {
                if (*p == '\\' && p[1])
                    p++;
                fr_buf_append(&vb, p++, 1);
            }
        }
        fr_buf_append(out, start, (size_t)(val - start));
        if (klen == 8 && memcmp(key, "password", 8) == 0) {
            /* After a quoted value the next key may follow at once: keep
             * them apart, as "***" has no quotes to end it. */
            fr_buf_puts(out, *p && !isspace((unsigned char)*p) ? "*** " : "***");
        } else if (klen == 6 && memcmp(key, "dbname", 6) == 0 &&
                   (is_uri(fr_buf_str(&vb)) || strchr(fr_buf_str(&vb), '='))) {
            fr_buf_puts(out, "'");
            fr_buf inner;
            fr_buf_init(&inner, 0);
            mask_into(&inner, fr_buf_str(&vb));
            for (const char *i = fr_buf_str(&inner); *i; i++) {
                if (*i == '\'' || *i == '\\')
                    fr_buf_puts(out, "\\");
                fr_buf_append(out, i, 1);
            }
            fr_buf_close(&inner);
            fr_buf_puts(out, "'");
        } else {
            fr_buf_append(out, val, (size_t)(p - val));
        }
        if (vb.data)
            fr_wipe(vb.data, vb.len);
        fr_buf_close(&vb);
    }
}

static void mask_into(fr_buf *out, const char *s)
{
    if (is_uri(s))
        mask_uri(out, s);
    else if (strchr(s, '='))
        mask_kv(out, s);
    else
        fr_buf_puts(out, s); /* a database name */
}

char *fr_pgurl_mask(const char *url)
{
    if (!url)
        return NULL;
    fr_buf out, again;
    fr_buf_init(&out, 0);
    fr_buf_init(&again, 0);
    mask_into(&out, url);
    /* Text whose masking changes how it reads (a '/' taken out of a value
     * moves where a URI's user info ends) would mask differently a second
     * time: shown as its scheme alone instead. */
    mask_into(&again, fr_buf_str(&out));
    if (strcmp(fr_buf_str(&again), fr_buf_str(&out)) != 0) {
        fr_buf_reset(&out);
        fr_buf_puts(&out, is_uri(url) ? (strncmp(url, "postgres:", 9) == 0 ? "postgres://***"
                                                                           : "postgresql://***")
                                      : "***");
    }
    fr_buf_close(&again);
    return fr_buf_take(&out);
}
