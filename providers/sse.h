#pragma once
/* A Server-Sent Events framer (the WHATWG event-stream format) shared by the
 * adapters that stream over SSE (OpenAI-compatible, Anthropic). It takes the
 * body in arbitrary chunks and calls back once per complete event; it knows
 * nothing of HTTP or of what the data means. Uses only engine/util. */

#include "engine/util/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* One dispatched event. Every pointer is borrowed for the duration of the
 * callback only. */
typedef struct fr_sse_event {
    const char *event; /* the `event:` field, or "message" when there was none */
    const char *data;  /* the `data:` lines joined with "\n", NUL-terminated */
    size_t data_len;
    const char *id; /* the last `id:` seen on the stream so far, "" if none */
} fr_sse_event;

/* Called once per event. Return FR_OK to go on, or a negative code to stop:
 * the feed that dispatched the event returns that code, and so does every
 * later feed. */
typedef int (*fr_sse_event_fn)(void *ud, const fr_sse_event *ev);

/* Embedded by value in its owner; fields are private. */
typedef struct fr_sse {
    fr_buf line;  /* the current, not yet terminated line */
    fr_buf data;  /* data lines of the pending event, each followed by "\n" */
    fr_buf event; /* the pending event's name */
    fr_buf id;    /* the last event id, kept across events */
    long retry_ms;
    size_t max_event;
    bool after_cr;   /* the last byte was CR: a following LF ends no new line */
    bool first_line; /* a UTF-8 BOM may still need stripping */
    bool has_event;  /* an `event:` field was seen for the pending event */
    int rc;          /* sticky: FR_OK, or the code that stopped the framer */
    fr_sse_event_fn on_event;
    void *ud;
} fr_sse;

/* Initialises `s` to frame one stream. `on_event` (required) is called with
 * `ud` (borrowed) for every event. `max_event` caps the bytes one event may
 * take (its data plus the line being read); 0 means 1 MiB. Never fails. */
void fr_sse_init(fr_sse *s, size_t max_event, fr_sse_event_fn on_event, void *ud);

/* Releases what `s` holds; it may be initialised again afterwards. */
void fr_sse_close(fr_sse *s);

/* Feeds `len` bytes of `p` (borrowed; any split, even inside a CRLF or a
 * UTF-8 sequence). Dispatches every event that completes. Returns FR_OK,
 * FR_ETOOBIG when one event passes the cap, or the negative code a callback
 * returned. Errors are sticky: once stopped, every feed returns the same
 * code without reading its input. */
int fr_sse_feed(fr_sse *s, const void *p, size_t len);

/* Returns true when bytes have arrived that did not yet make a complete
 * event: an unterminated line, or fields not yet followed by a blank line.
 * At the end of a stream this means the last event was cut off. */
bool fr_sse_pending(const fr_sse *s);

/* Ends the stream leniently: dispatches the pending event if it has data
 * from complete lines, for servers that omit the final blank line. An
 * unterminated last line is dropped, never guessed at. Returns FR_OK (also
 * when nothing was pending) or a code as fr_sse_feed does. Afterwards
 * nothing is pending. */
int fr_sse_flush(fr_sse *s);

/* Returns the last `retry:` value in milliseconds, or -1 when none came. */
long fr_sse_retry_ms(const fr_sse *s);
