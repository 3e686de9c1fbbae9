#include "providers/sse.h"

#include "engine/util/err.h"

#include <limits.h>
#include <string.h>

#define SSE_DEFAULT_MAX (1024u * 1024u)

void fr_sse_init(fr_sse *s, size_t max_event, fr_sse_event_fn on_event, void *ud)
{
    memset(s, 0, sizeof *s);
    s->max_event = max_event ? max_event : SSE_DEFAULT_MAX;
    fr_buf_init(&s->line, 0);
    fr_buf_init(&s->data, 0);
    fr_buf_init(&s->event, 0);
    fr_buf_init(&s->id, 0);
    s->retry_ms = -1;
    s->first_line = true;
    s->on_event = on_event;
    s->ud = ud;
}

void fr_sse_close(fr_sse *s)
{
    fr_buf_close(&s->line);
    fr_buf_close(&s->data);
    fr_buf_close(&s->event);
    fr_buf_close(&s->id);
}

/* Per the spec: an event with no data is dropped; otherwise the trailing
 * "\n" of the last data line goes and the event is handed out. The name
 * and data are reset either way; the id persists. */
static int dispatch(fr_sse *s)
{
    int rc = FR_OK;
    if (s->data.len > 0) {
        s->data.len--;
        s->data.data[s->data.len] = '\0';
        fr_sse_event ev = {
            .event = s->has_event && s->event.len ? fr_buf_str(&s->event) : "message",
            .data = fr_buf_str(&s->data),
            .data_len = s->data.len,
            .id = fr_buf_str(&s->id),
        };
        rc = s->on_event(s->ud, &ev);
    }
    fr_buf_reset(&s->data);
    fr_buf_reset(&s->event);
    s->has_event = false;
    return rc;
}

static bool all_digits(const char *v, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return false;
    return true;
}

/* Interprets one complete line (without its terminator). `lf_after`: the
 * byte at line[n] is the LF that ended it, so a data line's value and the
 * "\n" that follows it in the event are copied in one piece. */
static int process_line(fr_sse *s, const char *line, size_t n, bool lf_after)
{
    if (s->first_line) {
        s->first_line = false;
        if (n >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            n -= 3;
        }
    }
    if (n == 0)
        return dispatch(s);
    if (line[0] == ':')
        return FR_OK; /* a comment, e.g. ": keep-alive" */

    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *value = colon ? colon + 1 : line + n;
    size_t vlen = n - (size_t)(value - line);
    if (vlen > 0 && value[0] == ' ') {
        value++;
        vlen--;
    }

    if (flen == 4 && memcmp(line, "data", 4) == 0) {
        /* Within the cap: fr_sse_feed counted the whole line against it. */
        if (lf_after) {
            fr_buf_append(&s->data, value, vlen + 1);
        } else {
            fr_buf_append(&s->data, value, vlen);
            fr_buf_append(&s->data, "\n", 1);
        }
    } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
        fr_buf_reset(&s->event);
        fr_buf_append(&s->event, value, vlen);
        /* A name holding a NUL cannot be handed out as a C string: cut short
         * it could pass for another name ("message_stop\0x"), or for none.
         * Such an event counts as unnamed. */
        s->has_event = !memchr(value, '\0', vlen);
    } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
        if (!memchr(value, '\0', vlen)) {
            fr_buf_reset(&s->id);
            fr_buf_append(&s->id, value, vlen);
        }
    } else if (flen == 5 && memcmp(line, "retry", 5) == 0) {
        if (all_digits(value, vlen)) {
            long ms = 0;
            for (size_t i = 0; i < vlen && ms <= (LONG_MAX - 9) / 10; i++)
                ms = ms * 10 + (value[i] - '0');
            s->retry_ms = ms;
        }
    }
    /* Any other field is ignored, as the spec asks. */
    return FR_OK;
}

/* Processes the line held in s->line, then empties it. */
static int end_line(fr_sse *s)
{
    int rc = process_line(s, s->line.data ? s->line.data : "", s->line.len, false);
    fr_buf_reset(&s->line);
    return rc;
}

int fr_sse_feed(fr_sse *s, const void *p, size_t len)
{
    const char *c = p;
    const char *end = c + len;
    /* Lines are found with memchr rather than byte by byte: the next LF and
     * the next CR at or after `c` (`end` when there is none); a line ends at
     * the nearer. Each is looked up again only once `c` has passed it, so
     * the chunk is read about twice whatever its line ends (most streams
     * have no CR at all: one lookup for the whole chunk). */
    const char *lf = NULL, *cr = NULL;
    while (s->rc == FR_OK && c < end) {
        if (s->after_cr) {
            s->after_cr = false;
            if (*c == '\n') {
                c++;
                continue;
            }
        }
        if (!lf || lf < c) {
            lf = memchr(c, '\n', (size_t)(end - c));
            if (!lf)
                lf = end;
        }
        if (!cr || cr < c) {
            cr = memchr(c, '\r', (size_t)(end - c));
            if (!cr)
                cr = end;
        }
        const char *stop = cr < lf ? cr : lf;
        size_t n = (size_t)(stop - c);
        if (n > 0) {
            /* The cap counts the pending data plus the line being read, so
             * neither one long line nor many short ones can grow unbounded. */
            if (s->line.len + n + s->data.len > s->max_event) {
                s->rc = FR_ETOOBIG;
                break;
            }
            /* When the whole line is in this chunk, read it in place. */
            if (s->line.len == 0 && stop < end) {
                c = stop;
                s->after_cr = *c == '\r';
                c++;
                s->rc = process_line(s, stop - n, n, *stop == '\n');
                continue;
            }
            fr_buf_append(&s->line, c, n);
        }
        c = stop;
        if (c < end) {
            s->after_cr = *c == '\r';
            c++;
            s->rc = end_line(s);
        }
    }
    return s->rc;
}

bool fr_sse_pending(const fr_sse *s)
{
    return s->line.len > 0 || s->data.len > 0 || s->has_event;
}

int fr_sse_flush(fr_sse *s)
{
    if (s->rc != FR_OK)
        return s->rc;
    fr_buf_reset(&s->line);
    s->rc = dispatch(s);
    return s->rc;
}

long fr_sse_retry_ms(const fr_sse *s)
{
    return s->retry_ms;
}
