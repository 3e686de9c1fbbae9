#pragma once
/* The one interface every wire protocol adapter implements: build an HTTP
 * request from a call, feed it the bytes of the reply as they arrive, and
 * finish into a reply. Adapters never know the graph or the scheduler, and
 * never touch the network: engine/http moves the bytes. */

#include "engine/util/err.h"
#include "engine/util/kinds.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* What to ask one model. Every pointer is borrowed for the duration of
 * fr_adapter_new, which copies what it keeps. */
typedef struct fr_call {
    const char *base_url; /* e.g. "http://127.0.0.1:8000/v1"; required */
    const char *model;
    const char *system; /* NULL or "" when the agent has none */
    const char *prompt;
    int max_tokens;
    double temperature;
    bool stream;
    const json_t *schema; /* NULL unless structured output is asked: a JSON
                             Schema object, or the string "json" for any
                             JSON object without a schema */
    const char *api_key;  /* NULL for none; never logged, never echoed */
    long context;         /* the endpoint's context window in tokens; 0 = unknown */
    bool has_seed;        /* send `seed` (zero-initialised calls send none) */
    long seed;
    const char *keep_alive; /* Ollama: how long to keep the model loaded ("5m"); NULL = default */
    bool max_completion_tokens; /* OpenAI-compatible: send the limit as max_completion_tokens
                                   (the endpoint's max_tokens_field), not max_tokens */
    /* Tools offered to the model: NULL or an array of
     * {"name": wire name, "description": "...", "parameters": JSON Schema},
     * names already legal for every API ([A-Za-z0-9_-], at most 64). */
    const json_t *tools;
    /* The conversation so far, or NULL for one user turn from `prompt`.
     * A neutral array each adapter writes in its own format; `system`
     * still comes from `system`:
     *   {"role":"user","content":"..."}
     *   {"role":"assistant","content":"..." (may be ""),
     *    "tool_calls":[{"id":"...","name":"...","arguments":{...}}]}
     *   {"role":"tool","tool_call_id":"...","name":"...","content":"...",
     *    "is_error":true|false}
     * Consecutive tool messages answer one assistant turn (Anthropic puts
     * them in one user message of tool_result blocks). */
    const json_t *messages;
} fr_call;

typedef struct fr_usage {
    long input;
    long output;
    long cached;
    bool estimated; /* true when the reply carried no usage and it was counted from text */
} fr_usage;

/* Why a reply ended, whatever the protocol calls it: each adapter maps its
 * own spellings here, so the engine never sees them. */
typedef enum fr_finish {
    FR_FINISH_NONE = 0,  /* the server gave no reason (older servers) */
    FR_FINISH_STOP,      /* a natural end or a stop sequence: an answer */
    FR_FINISH_LENGTH,    /* cut at max_tokens or at the context window */
    FR_FINISH_REFUSED,   /* a content filter stopped it, or the model refused */
    FR_FINISH_TOOL_CALL, /* the model stopped to call tools: reply.tool_calls when the call
                            offered tools; else a tool nobody offered (no answer) */
    FR_FINISH_NO_ANSWER, /* it ended after reasoning (thinking) with no answer */
    FR_FINISH_OTHER,     /* a reason flowrun does not know */
} fr_finish;

/* Returns the name of `f` as the report writes it: "unknown" (none given),
 * "stop", "length", "refused", "tool_call", "no_answer" or "other". Static. */
const char *fr_finish_name(fr_finish f);

/* Returns true when `f` ends an answer a dependent may use: STOP, NONE (no
 * reason given) and OTHER (one flowrun does not know: never refused for it). */
bool fr_finish_is_answer(fr_finish f);

/* A finished reply. Owned by whoever filled it; release with fr_reply_close. */
typedef struct fr_reply {
    char *text;          /* the assistant text, "" if none; never NULL after finish */
    json_t *json;        /* parsed JSON when a schema was asked, else NULL; also NULL
                            when `finish` says the reply is no answer (not STOP, NONE
                            or OTHER) and its text does not parse */
    fr_finish finish;    /* normalised from finish_reason (and the content) */
    char *finish_reason; /* the server's own words ("stop", "length", ...), or NULL;
                            for messages only: decide by `finish` */
    char *model;         /* the model that answered, as the server names it, or NULL */
    fr_usage usage;
    /* When the call offered tools and the model asked to call some: the
     * calls, in order, as [{"id": "...", "name": wire name, "arguments":
     * object}] (an id made up as "call_<n>" when the protocol has none;
     * "arguments" null and "raw_arguments" the text when they are not a
     * JSON object), and finish is FR_FINISH_TOOL_CALL. NULL otherwise. */
    json_t *tool_calls;
} fr_reply;

/* An HTTP request to send. Owned by whoever filled it; fr_request_close frees. */
typedef struct fr_request {
    char *url;
    char **headers; /* "Name: value" lines, owned */
    size_t nheaders;
    char *body; /* NUL-terminated JSON */
} fr_request;

typedef struct fr_adapter fr_adapter;

/* Returns a new adapter (owned; fr_adapter_free) for one attempt of `call`
 * (borrowed, copied) in protocol `proto`. Never NULL (aborts on OOM). */
fr_adapter *fr_adapter_new(fr_protocol proto, const fr_call *call);

/* Fills `out` (owned by the caller) with the request to send. Returns FR_OK,
 * or FR_ECONFIG with `err` filled when the call cannot be expressed (bad URL). */
int fr_adapter_request(fr_adapter *a, fr_request *out, fr_error *err);

/* Feeds `len` bytes (borrowed) of the reply body as they arrive, with the
 * HTTP status known so far. Returns FR_OK to go on, or a negative code (for
 * example FR_EPROTO on an error event mid-stream, FR_ETOOBIG past the reply
 * cap) after which the caller aborts the transfer and calls finish. */
int fr_adapter_feed(fr_adapter *a, long http_status, const char *data, size_t len);

/* Ends the attempt: `http_status` is the final status (0 if no response).
 * On success fills `out` (owned by the caller) and returns FR_OK. Otherwise
 * returns FR_EHTTP (non-2xx; err->msg carries the server's error message),
 * FR_EQUALITY (structured output asked, and the reply is not JSON, unless
 * out->finish already says why: then FR_OK with out->json NULL),
 * FR_ETRUNCATED (a stream without its terminator), FR_EPROTO (malformed
 * reply) and fills `err`; `out` is then left empty. */
int fr_adapter_finish(fr_adapter *a, long http_status, fr_reply *out, fr_error *err);

/* Returns true once the reply's first content has arrived (the engine's
 * time to first token); false for adapters that cannot tell. */
bool fr_adapter_started(const fr_adapter *a);

/* Returns how many pieces of content the adapter has read so far: SSE
 * events (Anthropic's `ping` excepted), NDJSON lines, and chunks of a whole
 * body holding more than whitespace. Keep-alive comments and blank lines do
 * not count: the engine's idle timer moves only when this grows. */
unsigned long fr_adapter_progress(const fr_adapter *a);

/* Frees the adapter; NULL is fine. */
void fr_adapter_free(fr_adapter *a);

/* Releases what a reply owns and zeroes it; NULL-safe on members. */
void fr_reply_close(fr_reply *r);
/* Releases what a request owns and zeroes it. */
void fr_request_close(fr_request *r);

/* Estimates the token count of `text` (borrowed) the way flowrun does when a
 * reply carries no usage: about one token per four bytes, at least 1 for
 * non-empty text. */
long fr_estimate_tokens(const char *text);

/* When true, the adapters read every stream event with json_loadb and the
 * tree code, never with the path scanner (engine/util/jscan.h). false (the
 * default) in flowrun; the fuzz targets and the adapter tests set it to
 * check that both readings end a reply the same way. */
extern bool fr_provider_tree_only;
