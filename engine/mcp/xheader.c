#include "engine/mcp/xheader_int.h"

#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* RFC 9110's tchar: what a header name may hold. */
static bool token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c && strchr("!#$%&'*+-.^_`|~", c));
        if (!ok)
            return false;
    }
    return true;
}

bool fr_mcp_xheader_valid(const json_t *input_schema, char *why, size_t n)
{
    const json_t *props = json_object_get(input_schema, "properties");
    const char *key, *seen_key;
    const json_t *p, *q;
    json_object_foreach((json_t *)props, key, p)
    {
        const json_t *h = json_object_get(p, "x-mcp-header");
        if (!h)
            continue;
        const char *name = json_string_value(h);
        const char *type = json_string_value(json_object_get(p, "type"));
        if (!name || !token(name)) {
            snprintf(why, n, "parameter '%s' has an invalid x-mcp-header name", key);
            return false;
        }
        if (!type ||
            (strcmp(type, "string") && strcmp(type, "integer") && strcmp(type, "boolean"))) {
            snprintf(why, n, "parameter '%s' has an x-mcp-header on a %s", key,
                     type ? type : "value of no single type");
            return false;
        }
        json_object_foreach((json_t *)props, seen_key, q)
        {
            if (q == p)
                break;
            const char *other = json_string_value(json_object_get(q, "x-mcp-header"));
            if (other && strcasecmp(other, name) == 0) {
                snprintf(why, n, "parameters '%s' and '%s' share the x-mcp-header '%s'", seen_key,
                         key, name);
                return false;
            }
        }
    }
    return true;
}

static char *base64(const char *s)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = strlen(s), o = 0;
    char *out = fr_xmalloc(4 * ((len + 2) / 3) + 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)u[i] << 16 | (i + 1 < len ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < len ? u[i + 2] : 0);
        out[o++] = tab[v >> 18 & 63];
        out[o++] = tab[v >> 12 & 63];
        out[o++] = i + 1 < len ? tab[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* A value as its header text (owned), encoded when plain text cannot carry it. */
static char *header_value(const json_t *v)
{
    if (json_is_boolean(v))
        return fr_xstrdup(json_is_true(v) ? "true" : "false");
    if (json_is_integer(v))
        return fr_xasprintf("%lld", (long long)json_integer_value(v));
    if (json_is_real(v))
        return fr_xasprintf("%.17g", json_real_value(v));
    const char *s = json_string_value(v);
    if (!s)
        return NULL;
    /* An empty value goes encoded too: a "Name:" line with nothing after
     * the colon tells curl to leave the header out. */
    size_t len = strlen(s);
    bool plain = len > 0 && s[0] != ' ' && s[len - 1] != ' ';
    for (const unsigned char *c = (const unsigned char *)s; *c && plain; c++)
        plain = *c >= 32 && *c <= 126;
    if (plain)
        return fr_xstrdup(s);
    char *b = base64(s);
    char *out = fr_xasprintf("=?base64?%s?=", b);
    free(b);
    return out;
}

size_t fr_mcp_xheader_lines(const json_t *input_schema, const json_t *args, char ***out)
{
    const json_t *props = json_object_get(input_schema, "properties");
    size_t n = 0;
    *out = fr_xcalloc(json_object_size(props) + 1, sizeof **out);
    const char *key;
    const json_t *p;
    json_object_foreach((json_t *)props, key, p)
    {
        const char *name = json_string_value(json_object_get(p, "x-mcp-header"));
        char *value = name ? header_value(json_object_get(args, key)) : NULL;
        if (value)
            (*out)[n++] = fr_xasprintf("Mcp-Param-%s: %s", name, value);
        free(value);
    }
    return n;
}
