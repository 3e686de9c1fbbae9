#pragma once
/* Inside the provider layer: the vtable each protocol adapter fills, and the
 * helpers adapters share (URL joining, error bodies, JSON in text, usage
 * estimates). Only the adapters in providers/ include it; the engine sees
 * provider.h. */

#include "engine/util/buf.h"
#include "providers/sse.h"
#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The reply cap: the assembled text of a reply (streamed or whole) may hold
 * at most this many bytes (FR_ETOOBIG, "the reply is over the ...-byte
 * cap"). It measures the reply, never its framing. */
#define FR_PROVIDER_MAX_REPLY (8u * 1024u * 1024u)
/* A whole JSON body, one SSE event or one NDJSON line may hold at most this
 * many bytes: room for the reply cap's text with every byte escaped (\u00XX)
 * and the object around it, so the reply cap is the one a reply meets. */
#define FR_PROVIDER_MAX_BODY (8u * FR_PROVIDER_MAX_REPLY)
/* Error bodies (non-2xx) keep at most this much; the rest is dropped. */
#define FR_PROVIDER_MAX_ERROR_BODY (64u * 1024u)

/* One protocol. `create` gets the adapter's own copy of the call, which
 * outlives the state, so adapters borrow its strings instead of copying.
 * The other entries mirror fr_adapter_request/feed/finish/free; fr_adapter
 * makes feed errors sticky and redacts the API key from every error, so
 * adapters need do neither. */
typedef struct fr_adapter_ops {
    const char *name;
    void *(*create)(const fr_call *call); /* returns owned state, never NULL */
    int (*request)(void *self, fr_request *out, fr_error *err);
    int (*feed)(void *self, long http_status, const char *data, size_t len);
    int (*finish)(void *self, long http_status, fr_reply *out, fr_error *err);
    void (*destroy)(void *self);
    /* Optional: true once the reply's first content (text or structured
     * output) has arrived; the engine times the first token by it. */
    bool (*started)(const void *self);
    /* Optional: the pieces of content read so far (fr_adapter_progress);
     * without it every byte fed counts. */
    unsigned long (*progress)(const void *self);
} fr_adapter_ops;

/* A reply whose text holds the same run of 1 to FR_PROVIDER_LOOP_WORDS
 * words this many times in a row is a model stuck in a loop: it fails
 * (FR_EPROTO) instead of streaming until a cap. Words are what lies between
 * whitespace, so the verdict depends on the text only, never on how it was
 * cut into deltas: streamed and whole replies end the same. */
#define FR_PROVIDER_MAX_REPEATS 256
#define FR_PROVIDER_LOOP_WORDS  16

/* The text of a reply, streamed (assembled from deltas) or whole, with the
 * reply cap and the loop cut applied. Every adapter puts its reply text
 * through one (and streamed tool input, with `no_loops` set: a whole
 * reply's tool input never passes one). Embedded by value. */
typedef struct fr_text_acc {
    fr_buf text;
    bool no_loops;                           /* set after init to skip the loop cut */
    uint64_t word;                           /* hash of the word being read (FNV-1a) */
    bool in_word;                            /* a word has started and not ended */
    uint64_t recent[FR_PROVIDER_LOOP_WORDS]; /* hashes of the last words, newest at nwords-1 */
    size_t nwords;                           /* words ended so far */
    long run[FR_PROVIDER_LOOP_WORDS + 1];    /* run[k]: words in a row equal to the one k before */
} fr_text_acc;

/* Initialises an empty accumulator capped at FR_PROVIDER_MAX_REPLY. */
void fr_text_acc_init(fr_text_acc *a);
/* Releases its memory. */
void fr_text_acc_close(fr_text_acc *a);
/* Appends `n` bytes of `s` (borrowed). Returns FR_OK, FR_ETOOBIG past the
 * reply cap, or FR_EPROTO when the text now repeats the same 1 to
 * FR_PROVIDER_LOOP_WORDS words FR_PROVIDER_MAX_REPEATS times in a row;
 * `err_msg` (may be NULL) then receives an owned message for the user.
 * The result depends on the bytes appended so far, not on how they were
 * split across calls. */
int fr_text_acc_add(fr_text_acc *a, const char *s, size_t n, char **err_msg);

/* Returns "the reply is over the <cap>-byte cap" (owned), the message of
 * every reply that passes FR_PROVIDER_MAX_REPLY. */
char *fr_provider_cap_msg(void);

/* Returns true for a 2xx status. Status 0 (not known yet) counts as success
 * so that the body decides. */
bool fr_provider_status_ok(long http_status);

/* Joins `base_url` (borrowed; trailing slashes dropped) and `path` (borrowed,
 * starting with '/') into *out (owned by the caller). Returns FR_OK, or
 * FR_ECONFIG with `err` filled (source `proto`) when the URL is missing, is
 * not http(s), has no host or contains whitespace or control characters.
 * Messages never echo the URL, which may carry credentials. */
int fr_provider_join_url(const char *proto, const char *base_url, const char *path, char **out,
                         fr_error *err);

/* Appends "Name: value" built from `fmt` to the request's header list. */
void fr_request_add_header(fr_request *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Returns a new JSON string (owned) holding `s` (borrowed, may be NULL for
 * ""). Bytes that are not valid UTF-8 become U+FFFD instead of making the
 * whole value vanish, as json_string would. Never NULL (aborts on OOM). */
json_t *fr_provider_json_string(const char *s);

/* Appends to `out` at most `max` bytes of `s` (borrowed, `n` bytes) on one
 * line: control characters become spaces, invalid UTF-8 becomes '?', and no
 * UTF-8 sequence is cut. Leading and trailing whitespace is dropped. */
void fr_provider_append_line(fr_buf *out, const char *s, size_t n, size_t max);

/* Returns true when `s` (borrowed, may be NULL) contains a CR, LF or other
 * control character, which would let it break out of an HTTP header. */
bool fr_provider_has_ctl(const char *s);

/* Fills `err` with FR_EHTTP and "HTTP <status>: <message>", where message is
 * the error message found in `body` (borrowed, `len` bytes, JSON or an SSE
 * data line; error.message, error as a string, message or detail), else its
 * first 200 bytes on one line. Returns FR_EHTTP. */
int fr_provider_http_error(const char *proto, long http_status, const char *body, size_t len,
                           fr_error *err);

/* Returns the human message of a JSON error value (borrowed): an object's
 * "message" (or its "error"/"detail"), or the string itself. The result is
 * borrowed from `v`; NULL when none is found. */
const char *fr_provider_error_message(const json_t *v);

/* Fills `err` with FR_EPROTO: `what` (borrowed), then where jansson's
 * parse failed (`je`, borrowed) and why, without the bytes it quotes.
 * Returns FR_EPROTO. */
int fr_provider_json_error(fr_error *err, const char *proto, const json_error_t *je,
                           const char *what);

/* Parses `text` (borrowed) as JSON into *out (owned by the caller), after
 * stripping surrounding whitespace and one ``` fenced block (```json or
 * bare ```) when the text has one. Returns FR_OK, or FR_EQUALITY (the
 * structured output failed its quality gate) with `err` filled. */
int fr_provider_parse_json_text(const char *proto, const char *text, json_t **out, fr_error *err);

/* Makes sure `r` (borrowed) never books a non-empty exchange as free: when
 * the reply had no usage (`have_usage` false) both sides are counted from
 * `call`'s system and prompt and from r->text; a side the server reported as
 * zero despite non-empty text is counted too. Either sets r->usage.estimated. */
void fr_provider_fill_usage(fr_reply *r, const fr_call *call, bool have_usage);

/* How the body of a reply is being read. */
typedef enum { FR_READ_UNKNOWN = 0, FR_READ_SSE, FR_READ_BODY, FR_READ_ERROR } fr_read_mode;

/* The body of a reply in an SSE protocol (OpenAI-compatible, Anthropic) as
 * it arrives: the first bytes decide whether it is an error body (a non-2xx
 * status: only its start is kept), a whole JSON body (no streaming asked, or
 * a server that ignored the request to stream), or an event stream handed
 * to the adapter's callback. Embedded by value in an adapter's state. */
typedef struct fr_sse_reader {
    fr_read_mode mode;
    long status;              /* the status seen by the first feed */
    fr_sse sse;               /* FR_READ_SSE */
    fr_buf body;              /* FR_READ_BODY: the whole reply; FR_READ_ERROR: its first bytes */
    unsigned long progress;   /* events and non-blank body chunks read (fr_adapter_progress) */
    fr_sse_event_fn on_event; /* the adapter's, for the event in flight */
    void *ud;
} fr_sse_reader;

/* Initialises a reader before the first byte. */
void fr_sse_reader_init(fr_sse_reader *rd);
/* Releases what a reader holds. */
void fr_sse_reader_close(fr_sse_reader *rd);
/* Feeds `len` bytes of `data` (borrowed) with the status known so far;
 * `stream` says whether streaming was asked. Events go to `on_event` with
 * `ud`; each one, and each body chunk with more than whitespace, adds one to
 * rd->progress (Anthropic's `ping` events do not). Returns FR_OK, the callback's code, or
 * FR_ETOOBIG past the caps, in which case *msg (owned) says what was too big. */
int fr_sse_reader_feed(fr_sse_reader *rd, bool stream, long status, const char *data, size_t len,
                       fr_sse_event_fn on_event, void *ud, char **msg);

/* One protocol's spelling of a finish reason and what it means. */
typedef struct fr_finish_word {
    const char *word;
    fr_finish finish;
} fr_finish_word;

/* Returns what the finish reason `reason` (borrowed, may be NULL) means in
 * the table `words` of `n` entries: FR_FINISH_NONE for NULL or "", and
 * FR_FINISH_OTHER for a word the table does not hold. */
fr_finish fr_provider_finish(const fr_finish_word *words, size_t n, const char *reason);

/* Returns the finish of a reply the server ended with `f`: one that carried
 * reasoning (`reasoned`) but whose answer `text` (borrowed, may be NULL) is
 * blank is FR_FINISH_NO_ANSWER, unless `f` already says why (cut, refused,
 * a tool call). */
fr_finish fr_provider_settle_finish(fr_finish f, bool reasoned, const char *text);
