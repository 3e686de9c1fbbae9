#pragma once
/* Inside the provider layer: the vtable each protocol adapter fills, the
 * request skeleton and the reply reader every adapter is built on
 * (providers/provider.c, providers/reader.c), and the helpers adapters share
 * (URL joining, error bodies, JSON in text, usage estimates). Only files in
 * providers/ include it; everyone else sees provider.h. */

#include "engine/util/buf.h"
#include "engine/util/jsonw.h"
#include "providers/ndjson.h"
#include "engine/util/jscan.h"
#include "providers/provider.h"
#include "providers/sse.h"

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
    size_t others;                           /* bytes of the same reply held elsewhere (tool-call
                                                arguments, providers/toolcall.h): the cap
                                                covers text and others together */
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
 * reply cap (text and `others` together), or FR_EPROTO when the text now repeats the same 1 to
 * FR_PROVIDER_LOOP_WORDS words FR_PROVIDER_MAX_REPEATS times in a row;
 * `err_msg` (may be NULL) then receives an owned message for the user.
 * The result depends on the bytes appended so far, not on how they were
 * split across calls. */
int fr_text_acc_add(fr_text_acc *a, const char *s, size_t n, char **err_msg);

/* A string the path scanner read (engine/util/jscan.h), decoded for use:
 * `text` points into the scanned bytes when it had no escape, else into
 * `small` or an allocation (`heap`, owned) that fr_jtext_close frees. */
typedef struct fr_jtext {
    const char *text; /* NUL-terminated only when decoded (see fr_jtext_cstr) */
    size_t len;
    char small[128];
    char *heap;
} fr_jtext;

/* Fills *t with the string `v` (borrowed, FR_JSTRING) decoded; with `cstr`
 * the text is always a NUL-terminated copy (for fr_reader_model and the
 * like). */
void fr_jtext_open(fr_jtext *t, const fr_jval *v, bool cstr);
/* Frees what fr_jtext_open allocated. */
void fr_jtext_close(fr_jtext *t);

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

/* Appends the header line `head` followed by `tail` (both borrowed; `tail`
 * NULL for none), "Name: value", to the request's header list. */
void fr_request_add_header(fr_request *r, const char *head, const char *tail);

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

/* How a reply body is framed when it streams. */
typedef enum { FR_FRAME_SSE = 0, FR_FRAME_NDJSON } fr_framing;

/* How the body of a reply is being read, decided at its first bytes. */
typedef enum { FR_READ_UNKNOWN = 0, FR_READ_STREAM, FR_READ_BODY, FR_READ_ERROR } fr_read_mode;

typedef struct fr_reader fr_reader;

/* What one protocol tells the reply reader. Static and borrowed for the
 * reader's life; every callback gets the adapter's state as `ud`. */
typedef struct fr_reader_spec {
    fr_framing framing;
    fr_sse_event_fn on_event;  /* FR_FRAME_SSE: one call per event */
    fr_ndjson_line_fn on_line; /* FR_FRAME_NDJSON: one call per non-blank line */
    /* A whole (not streamed) body, in rd->body, once the reply ended: reads
     * it into the reader's reply state. Returns FR_OK or fills `err`. */
    int (*on_body)(void *ud, fr_error *err);
    /* Optional: fills `err` for a non-2xx reply from the start of its body
     * (`body`, borrowed, `len` bytes); NULL means fr_provider_http_error. */
    int (*http_error)(void *ud, long status, const char *body, size_t len, fr_error *err);
    const char *ended; /* a stream cut before its terminator: "the stream ended before ..." */
    const char *units; /* what rd->parsed counts in that message: "events", "objects" */
} fr_reader_spec;

/* The one reader of a reply body, SSE or NDJSON, streamed or whole: it
 * decides from the status and the first bytes whether the body is an error
 * body (only its start kept), a whole body (read at the end by on_body; a
 * server may ignore "stream": true) or a stream, runs a stream through its
 * framer into the adapter's callbacks, counts progress, applies the caps,
 * keeps the first error, and ends the body (a stream without its
 * terminator is truncated). It also holds what every protocol's reply has:
 * text, model, finish reason, usage. Owned by the fr_adapter; the adapter's
 * state borrows it. Fields are read and set by the adapters. */
struct fr_reader {
    const fr_reader_spec *spec;
    const char *proto;
    void *ud;    /* the adapter's state, passed to every callback */
    bool stream; /* streaming was asked */
    fr_read_mode mode;
    long status;            /* the status seen by the first feed */
    bool framing;           /* the framer below is initialised */
    fr_sse sse;             /* FR_FRAME_SSE */
    fr_ndjson nd;           /* FR_FRAME_NDJSON */
    fr_buf body;            /* FR_READ_BODY: the whole reply; FR_READ_ERROR: its first bytes */
    unsigned long progress; /* events (but `ping`), lines and non-blank body chunks read */
    size_t parsed;          /* the adapter's count of objects read, for messages */
    bool done;              /* the adapter saw the stream's terminator */
    bool at_end;            /* the end is handing out a last, unterminated event or line */
    int rc;                 /* sticky: the first error */
    char *error;            /* owned message for rc */
    /* The reply so far. */
    fr_text_acc text; /* the answer's text */
    char *model;
    char *finish_reason;
    fr_usage usage;
    bool have_usage;
    bool reasoned; /* the reply carried reasoning (thinking) */
};

/* Initialises `rd` for one reply of protocol `proto` (borrowed, static),
 * read as `spec` (borrowed, static) says; `stream` says whether streaming
 * was asked. The caller sets rd->ud before the first feed. */
void fr_reader_init(fr_reader *rd, const char *proto, const fr_reader_spec *spec, bool stream);
/* Releases what an initialised reader holds and zeroes it. */
void fr_reader_close(fr_reader *rd);
/* Records the first error and its message (takes `msg_owned`, freed when an
 * earlier error already won). Returns the sticky code. */
int fr_reader_fail(fr_reader *rd, int rc, char *msg_owned);
/* Feeds `len` bytes of `data` (borrowed) with the status known so far.
 * Returns FR_OK, or the sticky error (a callback's, FR_ETOOBIG past a cap). */
int fr_reader_feed(fr_reader *rd, long status, const char *data, size_t len);
/* Runs `len` bytes (borrowed) through the framer, whatever the mode: for a
 * whole body that turns out to be a stream. Returns as fr_reader_feed. */
int fr_reader_frame(fr_reader *rd, const char *data, size_t len);
/* Ends a stream: hands out its last, unterminated event or line (with
 * rd->at_end set) unless the terminator came. Returns FR_OK once the
 * terminator came, else the sticky error or FR_ETRUNCATED, with `err`
 * filled. */
int fr_reader_end_stream(fr_reader *rd, fr_error *err);
/* Ends the reply at the final `http_status` (0: the one the feeds saw):
 * a non-2xx status, the sticky error, a whole body on_body rejects or a
 * stream cut short fill `err` and return their code; FR_OK means the
 * reader's reply state is complete. */
int fr_reader_end(fr_reader *rd, long http_status, fr_error *err);
/* Returns the message (owned) for a stream event or line (`data`, borrowed,
 * `len` bytes) that is not a JSON object: for an SSE `error` event (`event`,
 * borrowed; NULL for a line) the server's words on one line, else where it
 * is malformed: `obj` (borrowed) is what parsed, or NULL and `je` (borrowed)
 * says why. */
char *fr_reader_not_object(const fr_reader *rd, const char *event, const char *data, size_t len,
                           const json_t *obj, const json_error_t *je);
/* Parses the reader's whole body as one JSON object into *out (owned by the
 * caller). Returns FR_OK, or FR_EPROTO with `err` filled when the body is
 * empty, not JSON or not an object (*out is then NULL). */
int fr_reader_body_object(const fr_reader *rd, json_t **out, fr_error *err);
/* Appends `n` bytes of `s` (borrowed) to `acc` (rd->text, or an adapter's
 * own accumulator): FR_OK, or the sticky error past the cap or the loop cut. */
int fr_reader_add(fr_reader *rd, fr_text_acc *acc, const char *s, size_t n);
/* Keeps `model` (borrowed, may be NULL) as the model that answered unless it
 * is NULL or "". */
void fr_reader_model(fr_reader *rd, const char *model);
/* Keeps `reason` (borrowed) as the finish reason unless it is NULL. */
void fr_reader_finish_reason(fr_reader *rd, const char *reason);
/* Fills `out` from the reader's reply state, ending as `f` settles (see
 * fr_provider_settle_finish): text, finish reason, model, usage (estimated
 * where missing, see fr_provider_fill_usage) and, when `call` (borrowed)
 * asked for structured output, the text parsed as JSON. Returns FR_OK, or
 * FR_EQUALITY (err filled) when the text of an answer is not JSON; a reply
 * whose finish says it is no answer keeps json NULL and returns FR_OK. */
int fr_reader_reply(fr_reader *rd, const fr_call *call, fr_finish f, fr_reply *out, fr_error *err);

/* What one protocol's request has of its own; fr_provider_request builds
 * the rest (URL, the checks, the headers, model, messages and stream). */
typedef struct fr_request_spec {
    const char *path;   /* joined to the endpoint URL; starts with '/' */
    const char *accept; /* the Accept header of a streamed reply */
    const char *auth;   /* the key's header up to the key: "Authorization: Bearer " */
    const char *extra;  /* NULL, or one more header line ("anthropic-version: ...") */
    bool system_apart;  /* the system prompt is a top-level `system`, not a message */
    /* Writes the protocol's own members from `self` into the body's object
     * open in `w` (borrowed; compact, reals at 15 digits), as
     * json_object_set_new on a tree would have added them. */
    void (*add_members)(const void *self, fr_jsonw *w);
    /* Appends the neutral message `msg` (borrowed, checked well-formed: see
     * fr_call.messages) of a call's conversation to `msgs` (borrowed) in the
     * protocol's own format; it may merge it into the last one there. */
    void (*add_message)(const void *self, json_t *msgs, const json_t *msg);
    const void *self; /* passed to the two hooks; NULL: the call itself */
} fr_request_spec;

/* Fills `out` with `call`'s request (both borrowed) as `spec` (borrowed)
 * says, for protocol `proto`: the URL, Content-Type, the Accept of a stream
 * and the key's header, and a body holding model, the messages (system,
 * then the user's prompt or the call's conversation through
 * spec->add_message), the protocol's members and stream. Returns FR_OK, or
 * FR_ECONFIG (bad URL, no model, a key with a control character, a
 * conversation message that is not well-formed) or FR_ENOMEM with `err`
 * filled; `out` may then hold a part, which the caller closes. */
int fr_provider_request(const char *proto, const fr_call *call, const fr_request_spec *spec,
                        fr_request *out, fr_error *err);

/* Writes the string `s` (borrowed; NULL is "") into `w` (borrowed) under
 * the key `k` (FR_JSONW_KEY) as fr_provider_json_string's value prints: as
 * it is when it is UTF-8, else with each invalid byte marked U+FFFD. */
void fr_provider_write_string(fr_jsonw *w, fr_jsonw_key k, const char *s);
/* Writes the tree `v` (taken: released here; NULL writes nothing, as
 * json_object_set_new added nothing) into `w` (borrowed) under `key`. */
void fr_provider_write_tree(fr_jsonw *w, const char *key, json_t *v);

/* Returns true when `call` (borrowed) offers the model tools. */
bool fr_provider_offers_tools(const fr_call *call);

/* Returns `call`'s tools (borrowed) as OpenAI's chat.completions and Ollama
 * take them (owned): [{"type":"function","function":{name, description,
 * parameters}}], an empty object schema for a tool without parameters. */
json_t *fr_provider_function_tools(const fr_call *call);

/* Returns the neutral arguments of a conversation's tool call (borrowed) as
 * an object for the APIs that take one (owned): the arguments, or {} when
 * they were not an object. */
json_t *fr_provider_call_input(const json_t *tool_call);

/* Appends to `arr` (borrowed, returned) one value per tool call of
 * `calls` (a neutral assistant turn's, borrowed), in order: `one(tc)`,
 * owned, built with fr_provider_must. */
json_t *fr_provider_append_calls(json_t *arr, const json_t *calls,
                                 json_t *(*one)(const json_t *tc));

/* Returns `v` (owned), aborting when jansson ran out of memory building it:
 * a request silently missing a member would be worse than no request. */
json_t *fr_provider_must(json_t *v);

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

/* One protocol. `create` gets the adapter's own copy of the call and the
 * reader of its reply, which both outlive the state, so adapters borrow
 * them instead of copying. fr_adapter feeds the reader and ends it; the
 * adapter's `finish` runs only when the reply ended well, to fill `out`.
 * fr_adapter makes feed errors sticky and redacts the API key from every
 * error, so adapters need do neither. */
typedef struct fr_adapter_ops {
    const char *name;
    const fr_reader_spec *reader;                        /* how its replies are read */
    void *(*create)(const fr_call *call, fr_reader *rd); /* returns owned state, never NULL */
    /* The request: `request`, or, when it is NULL, fr_provider_request
     * with `request_spec` (its hooks get the call) for a protocol whose
     * request depends on nothing but the call. */
    int (*request)(void *self, fr_request *out, fr_error *err);
    const fr_request_spec *request_spec;
    int (*finish)(void *self, fr_reply *out, fr_error *err);
    void (*destroy)(void *self);
    /* Optional: true once the reply's first content has arrived; without
     * it, once the reader's text or a tool call's arguments hold a byte. */
    bool (*started)(const void *self);
} fr_adapter_ops;
