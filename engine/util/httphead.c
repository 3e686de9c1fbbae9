/* HTTP/1.x request heads parsed in place; see httphead.h. */

#include "engine/util/httphead.h"

#include <string.h>
#include <strings.h>

/* Returns the length of the head, blank line included, or 0; see httphead.h. */
size_t fr_httphead_end(const char *p, size_t n, size_t *scan)
{
    size_t i = *scan > 3 ? *scan - 3 : 0;
    for (; i + 4 <= n; i++)
        if (p[i] == '\r' && memcmp(p + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    *scan = n;
    return 0;
}

static bool is_tchar(char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static const char *trim_end(const char *from, const char *to)
{
    while (to > from && (to[-1] == ' ' || to[-1] == '\t' || to[-1] == '\r'))
        to--;
    return to;
}

/* Parses the request line "METHOD SP TARGET SP HTTP/1.x". */
static int parse_request_line(const char *p, const char *eol, fr_httphead *h)
{
    const char *m = p;
    while (m < eol && is_tchar(*m))
        m++;
    if (m == p || m >= eol || *m != ' ')
        return 400;
    h->method = p;
    h->method_len = (size_t)(m - p);
    const char *t = m + 1;
    const char *te = memchr(t, ' ', (size_t)(eol - t));
    if (!te || te == t)
        return 400;
    h->target = t;
    h->target_len = (size_t)(te - t);
    const char *v = te + 1;
    const char *ve = eol > v && eol[-1] == '\r' ? eol - 1 : eol;
    if (ve - v != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
        return 400;
    h->minor = v[7] - '0';
    return 0;
}

/* Parses the head; see httphead.h. */
int fr_httphead_parse(const char *p, size_t n, fr_httphead *h)
{
    memset(h, 0, sizeof *h);
    const char *end = p + n;
    const char *eol = memchr(p, '\n', n);
    if (!eol)
        return 400;
    int status = parse_request_line(p, eol, h);
    if (status)
        return status;
    for (const char *line = eol + 1; line < end; line = eol + 1) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        const char *le = trim_end(line, eol);
        if (le == line)
            break;
        const char *colon = line;
        while (colon < le && is_tchar(*colon))
            colon++;
        if (colon == line || colon == le || *colon != ':')
            return 400; /* no name, or a space before the colon (RFC 9112 5.1) */
        if (h->nfields == FR_HTTPHEAD_MAX_FIELDS)
            return 431;
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        fr_httphead_field *f = &h->fields[h->nfields++];
        f->name = line;
        f->name_len = (size_t)(colon - line);
        f->value = v;
        f->value_len = (size_t)(le - v);
    }
    return 0;
}

/* Whether the field has that name; see httphead.h. */
bool fr_httphead_is(const fr_httphead_field *f, const char *name)
{
    size_t len = strlen(name);
    return f->name_len == len && strncasecmp(f->name, name, len) == 0;
}

/* The first field of that name; see httphead.h. */
const fr_httphead_field *fr_httphead_get(const fr_httphead *h, const char *name)
{
    for (size_t i = 0; i < h->nfields; i++)
        if (fr_httphead_is(&h->fields[i], name))
            return &h->fields[i];
    return NULL;
}

/* Reads the Content-Length fields; see httphead.h. */
int fr_httphead_length(const fr_httphead *h, bool *have, unsigned long long *len)
{
    *have = false;
    *len = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        const fr_httphead_field *f = &h->fields[i];
        if (!fr_httphead_is(f, "Content-Length"))
            continue;
        if (f->value_len == 0 || f->value_len > 18)
            return 400;
        unsigned long long v = 0;
        for (size_t k = 0; k < f->value_len; k++) {
            if (f->value[k] < '0' || f->value[k] > '9')
                return 400;
            v = v * 10 + (unsigned)(f->value[k] - '0');
        }
        if (*have && v != *len)
            return 400;
        *have = true;
        *len = v;
    }
    return 0;
}

/* Whether the list holds the token; see httphead.h. */
bool fr_httphead_has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',' && v[i] != ';')
            i++;
        size_t stop = i;
        while (stop > start && (v[stop - 1] == ' ' || v[stop - 1] == '\t'))
            stop--;
        if (stop - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return true;
        while (i < n && v[i] != ',')
            i++;
    }
    return false;
}

/* The reason phrase; see httphead.h. */
const char *fr_http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 529:
        return "Site Overloaded";
    default:
        return "Internal Server Error";
    }
}
