/* An HTTP/1.x response parser fed in pieces (engine/util/h1resp.h). */
#include "engine/util/h1resp.h"

#include "engine/util/httphead.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    ST_STATUS = 0,
    ST_HEADERS,
    ST_BODY_LEN,
    ST_BODY_CLOSE,
    ST_CHUNK_SIZE,
    ST_CHUNK_DATA,
    ST_CHUNK_END,
    ST_TRAILER,
    ST_DONE,
    ST_ERROR
};

void fr_h1_reset(fr_h1_resp *p, bool head)
{
    char *line = p->line;
    size_t cap = p->line_cap;
    memset(p, 0, sizeof *p);
    p->line = line;
    p->line_cap = cap;
    p->no_body = head;
    p->state = ST_STATUS;
}

void fr_h1_free(fr_h1_resp *p)
{
    free(p->line);
    p->line = NULL;
    p->line_cap = p->line_len = 0;
}

/* Takes bytes of d[0..len) up to and with the next LF. Returns 1 with the
 * line (CR LF or LF cut off) in *line, *n; 0 when d ended first (the bytes
 * are kept in the line buffer); -1 when the line is too long. *used is
 * what it took. */
static int take_line(fr_h1_resp *p, const char *d, size_t len, size_t *used, const char **line,
                     size_t *n)
{
    if (p->line_used) {
        p->line_len = 0;
        p->line_used = false;
    }
    const char *nl = memchr(d, '\n', len);
    size_t take = nl ? (size_t)(nl - d) + 1 : len;
    *used = take;
    if (p->line_len == 0 && nl) {
        if (take > FR_H1_LINE_MAX)
            return -1;
        *line = d;
        *n = take - 1;
    } else {
        if (p->line_len + take > FR_H1_LINE_MAX)
            return -1;
        if (p->line_len + take > p->line_cap) {
            size_t cap = p->line_cap ? p->line_cap : 256;
            while (cap < p->line_len + take)
                cap *= 2;
            p->line = fr_xrealloc(p->line, cap);
            p->line_cap = cap;
        }
        memcpy(p->line + p->line_len, d, take);
        p->line_len += take;
        if (!nl)
            return 0;
        *line = p->line;
        *n = p->line_len - 1;
        p->line_used = true;
    }
    if (*n > 0 && (*line)[*n - 1] == '\r')
        (*n)--;
    return 1;
}

static size_t fail(fr_h1_resp *p, fr_h1_event *ev, size_t pos, const char *why)
{
    p->state = ST_ERROR;
    p->error = why;
    ev->kind = FR_H1_ERROR;
    return pos;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool parse_status(fr_h1_resp *p, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || !is_digit(l[7]) || l[8] != ' ')
        return false;
    if (!is_digit(l[9]) || !is_digit(l[10]) || !is_digit(l[11]) || (n > 12 && l[12] != ' '))
        return false;
    p->minor = l[7] - '0';
    p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (p->status < 100)
        return false;
    p->chunked = p->has_length = false;
    p->length = 0;
    p->keep_alive = p->minor >= 1;
    return true;
}

/* Framing fields of the final response. Returns false for a bad length. */
static bool note_field(fr_h1_resp *p, const char *name, size_t nn, const char *v, size_t vn)
{
    if (nn == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
        if (vn == 0)
            return false;
        uint64_t len = 0;
        for (size_t i = 0; i < vn; i++) {
            if (!is_digit(v[i]) || len > (UINT64_MAX - 9) / 10)
                return false;
            len = len * 10 + (uint64_t)(v[i] - '0');
        }
        if (p->has_length && p->length != len)
            return false;
        p->has_length = true;
        p->length = len;
    } else if (nn == 17 && strncasecmp(name, "Transfer-Encoding", 17) == 0) {
        if (fr_httphead_has_token(v, vn, "chunked"))
            p->chunked = true;
    } else if (nn == 10 && strncasecmp(name, "Connection", 10) == 0) {
        if (fr_httphead_has_token(v, vn, "close"))
            p->keep_alive = false;
        else if (fr_httphead_has_token(v, vn, "keep-alive"))
            p->keep_alive = true;
    }
    return true;
}

/* The blank line after the head: what frames the body. */
static void head_end(fr_h1_resp *p)
{
    if (p->no_body || p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
    } else if (p->chunked) {
        /* With both, chunked wins and the length is not to be trusted. */
        if (p->has_length)
            p->keep_alive = false;
        p->state = ST_CHUNK_SIZE;
    } else if (p->has_length) {
        p->remaining = p->length;
        p->state = ST_BODY_LEN;
    } else {
        p->keep_alive = false;
        p->state = ST_BODY_CLOSE;
    }
}

static bool parse_chunk_size(fr_h1_resp *p, const char *l, size_t n)
{
    size_t i = 0;
    uint64_t size = 0;
    while (i < n && hex_value(l[i]) >= 0) {
        if (size > (UINT64_MAX >> 4))
            return false;
        size = size * 16 + (uint64_t)hex_value(l[i]);
        i++;
    }
    if (i == 0)
        return false;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    if (i < n && l[i] != ';')
        return false;
    p->remaining = size;
    p->state = size ? ST_CHUNK_DATA : ST_TRAILER;
    return true;
}

/* One complete line in a line state. Returns true when it makes an event. */
static bool on_line(fr_h1_resp *p, const char *l, size_t n, fr_h1_event *ev, const char **why)
{
    switch (p->state) {
    case ST_STATUS:
        if (!parse_status(p, l, n)) {
            *why = "malformed status line";
            return true;
        }
        p->state = ST_HEADERS;
        return false;
    case ST_HEADERS: {
        if (n == 0) {
            if (p->status < 200) { /* interim: the final response follows */
                p->state = ST_STATUS;
                return false;
            }
            head_end(p);
            ev->kind = FR_H1_HEAD_END;
            return true;
        }
        if (l[0] == ' ' || l[0] == '\t') /* an obsolete folded line */
            return false;
        const char *colon = memchr(l, ':', n);
        if (!colon || colon == l) {
            *why = "malformed header line";
            return true;
        }
        size_t nn = (size_t)(colon - l);
        while (nn > 0 && (l[nn - 1] == ' ' || l[nn - 1] == '\t'))
            nn--;
        const char *v = colon + 1, *end = l + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (p->status < 200)
            return false;
        if (!note_field(p, l, nn, v, (size_t)(end - v))) {
            *why = "malformed Content-Length";
            return true;
        }
        ev->kind = FR_H1_HEADER;
        ev->name = l;
        ev->name_len = nn;
        ev->value = v;
        ev->value_len = (size_t)(end - v);
        return true;
    }
    case ST_CHUNK_SIZE:
        if (!parse_chunk_size(p, l, n))
            *why = "malformed chunk size";
        return *why != NULL;
    case ST_CHUNK_END:
        if (n != 0) {
            *why = "malformed chunk end";
            return true;
        }
        p->state = ST_CHUNK_SIZE;
        return false;
    default: /* ST_TRAILER: fields skipped until the blank line */
        if (n == 0)
            p->state = ST_DONE;
        return false;
    }
}

size_t fr_h1_feed(fr_h1_resp *p, const char *data, size_t len, fr_h1_event *ev)
{
    size_t pos = 0;
    memset(ev, 0, sizeof *ev);
    for (;;) {
        switch (p->state) {
        case ST_DONE:
            ev->kind = FR_H1_DONE;
            return pos;
        case ST_ERROR:
            ev->kind = FR_H1_ERROR;
            return pos;
        case ST_BODY_LEN:
        case ST_CHUNK_DATA: {
            if (p->state == ST_BODY_LEN && p->remaining == 0) {
                p->state = ST_DONE;
                continue;
            }
            if (pos == len) {
                ev->kind = FR_H1_NEED;
                return pos;
            }
            size_t n = len - pos;
            if ((uint64_t)n > p->remaining)
                n = (size_t)p->remaining;
            p->remaining -= n;
            ev->kind = FR_H1_BODY;
            ev->data = data + pos;
            ev->len = n;
            if (p->remaining == 0)
                p->state = p->state == ST_BODY_LEN ? ST_DONE : ST_CHUNK_END;
            return pos + n;
        }
        case ST_BODY_CLOSE:
            if (pos == len) {
                ev->kind = FR_H1_NEED;
                return pos;
            }
            ev->kind = FR_H1_BODY;
            ev->data = data + pos;
            ev->len = len - pos;
            return len;
        default: {
            if (pos == len) {
                ev->kind = FR_H1_NEED;
                return pos;
            }
            p->got_bytes = true;
            bool in_head = p->state == ST_STATUS || p->state == ST_HEADERS;
            const char *line = NULL, *why = NULL;
            size_t used = 0, n = 0;
            int r = take_line(p, data + pos, len - pos, &used, &line, &n);
            pos += used;
            if (in_head) {
                p->head_bytes += used;
                if (p->head_bytes > FR_H1_HEAD_MAX)
                    return fail(p, ev, pos, "response head too large");
            }
            if (r < 0)
                return fail(p, ev, pos, "response line too long");
            if (r == 0) {
                ev->kind = FR_H1_NEED;
                return pos;
            }
            if (on_line(p, line, n, ev, &why)) {
                if (why)
                    return fail(p, ev, pos, why);
                return pos;
            }
            break;
        }
        }
    }
}

bool fr_h1_eof(fr_h1_resp *p)
{
    if (p->state == ST_BODY_CLOSE) {
        p->state = ST_DONE;
        return true;
    }
    return p->state == ST_DONE;
}

bool fr_h1_until_close(const fr_h1_resp *p)
{
    return p->state == ST_BODY_CLOSE;
}

bool fr_h1_nothing(const fr_h1_resp *p)
{
    return !p->got_bytes;
}
