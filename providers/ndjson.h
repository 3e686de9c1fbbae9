#pragma once
/* A framer for newline-delimited JSON (one JSON value per line, as Ollama
 * streams), used by the adapters that read NDJSON. It takes the body in
 * arbitrary chunks and calls back once per complete, non-blank line; it never
 * parses JSON and knows nothing of HTTP. Uses only engine/util. */

#include "engine/util/buf.h"

#include <stdbool.h>
#include <stddef.h>

/* Called once per complete line that holds more than whitespace. `line` is
 * borrowed for the duration of the callback only, `len` bytes long, without
 * its LF or CRLF, and not necessarily NUL-terminated (json_loadb reads it).
 * Return FR_OK to go on, or a negative code to stop: the feed that handed out
 * the line returns that code, and so does every later feed or flush. */
typedef int (*fr_ndjson_line_fn)(void *ud, const char *line, size_t len);

/* Embedded by value in its owner; fields are private. */
typedef struct fr_ndjson {
    fr_buf line;     /* the current, not yet terminated line */
    size_t max_line; /* the most bytes one line may hold, terminator excluded */
    bool nonblank;   /* the buffered line holds more than whitespace */
    int rc;          /* sticky: FR_OK, or the code that stopped the framer */
    fr_ndjson_line_fn on_line;
    void *ud;
} fr_ndjson;

/* Initialises `j` to frame one stream. `on_line` (required) is called with
 * `ud` (borrowed) for every line. `max_line` caps the bytes of one line, its
 * LF or CRLF not counted; 0 means 1 MiB. Never fails. */
void fr_ndjson_init(fr_ndjson *j, size_t max_line, fr_ndjson_line_fn on_line, void *ud);

/* Releases what `j` holds; it may be initialised again afterwards. */
void fr_ndjson_close(fr_ndjson *j);

/* Feeds `len` bytes of `p` (borrowed; any split, even between the CR and LF
 * of a CRLF). Lines end at LF; one CR right before the LF is dropped, and a
 * line of spaces, tabs and CRs only is skipped. Hands out every line that
 * completes. Returns FR_OK, FR_ETOOBIG when a line passes the cap (however
 * the input was split), or the negative code a callback returned. Errors are
 * sticky: once stopped, every feed returns the same code without reading. */
int fr_ndjson_feed(fr_ndjson *j, const void *p, size_t len);

/* Returns true when an unterminated line holding more than whitespace is
 * buffered. At the end of a stream this means the last line had no newline:
 * either the server omitted it or the stream was cut inside the line. */
bool fr_ndjson_pending(const fr_ndjson *j);

/* Ends the stream: hands out the unterminated last line, if it holds more
 * than whitespace, as if a newline had followed it. Whether that line is
 * whole is for the caller to judge (it may fail to parse). Returns FR_OK
 * (also when nothing was pending), or the sticky code as fr_ndjson_feed
 * does. Afterwards nothing is pending. */
int fr_ndjson_flush(fr_ndjson *j);
