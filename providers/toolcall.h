#pragma once
/* The tool calls of one reply, assembled as a stream's pieces arrive or as
 * a whole reply gives them: each call's id, name and arguments, keyed by
 * the protocol's own index, under the reply cap the text shares. Used by
 * the three adapters (openai.c, anthropic.c, ollama.c), which turn it into
 * the neutral fr_reply.tool_calls; nothing outside providers/ sees it. */

#include "engine/util/buf.h"
#include "providers/provider_int.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* A reply may ask for at most this many tool calls (FR_EPROTO past it). */
#define FR_PROVIDER_MAX_TOOL_CALLS 1024

/* One call being assembled. */
typedef struct fr_toolcall {
    long key;      /* the protocol's index: OpenAI's `index`, Anthropic's block index */
    char *id;      /* owned; NULL until the server gives one */
    char *name;    /* owned; NULL until the server gives one */
    fr_buf args;   /* argument text (a stream's pieces, or a whole JSON string) */
    json_t *input; /* owned: arguments given whole as a JSON value, or NULL */
} fr_toolcall;

/* Every call of one reply, in the order they started. Embedded by value. */
typedef struct fr_toolcalls {
    fr_reader *rd; /* borrowed: errors are its sticky error; its text shares the cap */
    fr_toolcall *v;
    size_t n, cap;
} fr_toolcalls;

/* Initialises an empty set whose errors go to `rd` (borrowed, outlives it)
 * and whose argument bytes count against the cap of rd->text. */
void fr_toolcalls_init(fr_toolcalls *t, fr_reader *rd);
/* Releases every call and zeroes the set. */
void fr_toolcalls_close(fr_toolcalls *t);

/* Returns the call keyed `key` (borrowed, valid until the next open), or
 * NULL. The last call started is looked at first. */
fr_toolcall *fr_toolcalls_find(fr_toolcalls *t, long key);

/* Starts a call keyed `key` and sets *out (borrowed) to it. Returns FR_OK,
 * or the reader's sticky FR_EPROTO past FR_PROVIDER_MAX_TOOL_CALLS calls. */
int fr_toolcalls_open(fr_toolcalls *t, long key, fr_toolcall **out);

/* Keeps `id` and `name` (borrowed, each may be NULL) for `c` unless it
 * already has one: the first non-empty value wins. */
void fr_toolcall_names(fr_toolcall *c, const char *id, const char *name);

/* Appends `n` bytes of argument text `s` (borrowed) to `c`. Returns FR_OK,
 * or the reader's sticky FR_ETOOBIG when the reply's text and arguments
 * together pass FR_PROVIDER_MAX_REPLY. */
int fr_toolcalls_append(fr_toolcalls *t, fr_toolcall *c, const char *s, size_t n);

/* Sets `input` (borrowed, referenced) as the whole arguments of `c`,
 * counted by its compact serialised size. Returns as fr_toolcalls_append. */
int fr_toolcalls_set_input(fr_toolcalls *t, fr_toolcall *c, json_t *input);

/* Returns the arguments of `c` as the neutral reply holds them: sets
 * *args (owned) to the object, or to NULL and *raw (owned) to the text
 * when they are not one. Text pieces win over a whole input; no
 * arguments at all are {}. */
void fr_toolcall_arguments(const fr_toolcall *c, json_t **args, char **raw);

/* Sets *out (owned) to the neutral array of every call but `skip` (may be
 * NULL): [{"id", "name", "arguments"}] with "call_<n>" (n its position
 * among all calls, from 0) for a call without an id, and "arguments" null
 * plus "raw_arguments" for arguments that are not a JSON object. Returns
 * FR_OK, or FR_EPROTO with `err` filled (source `proto`) when a call has no
 * name; *out is then NULL. */
int fr_toolcalls_json(const fr_toolcalls *t, const fr_toolcall *skip, const char *proto,
                      json_t **out, fr_error *err);

/* The part of an adapter's state shared by the protocols that gather their
 * tool calls as they come (OpenAI, Ollama): the first member of their
 * state, made by fr_gathering_new and freed by fr_gathering_free. */
typedef struct fr_gathering {
    const fr_call *call; /* borrowed from the fr_adapter, which outlives us */
    fr_reader *rd;       /* the reply's reader, borrowed likewise */
    bool tool_calls;     /* the reply carried `tool_calls` */
    bool offers;         /* the call offers tools: the calls are read into `calls` */
    fr_toolcalls calls;
} fr_gathering;

/* Returns an adapter's state of `size` bytes (owned, zeroed) whose first
 * member is an fr_gathering set up for `call` and `rd` (borrowed). */
void *fr_gathering_new(size_t size, const fr_call *call, fr_reader *rd);

/* Frees a state fr_gathering_new returned. */
void fr_gathering_free(void *self);

/* Ends the reply of `g`'s protocol (`proto`) from the finish `f` its words
 * say: a reply that carried tool calls and would otherwise be an answer
 * ended in a tool call; when the call offers tools those calls become
 * out->tool_calls; the reader fills the rest (fr_reader_reply). FR_OK or
 * the error either returns. */
int fr_gathering_reply(fr_gathering *g, const char *proto, fr_finish f, fr_reply *out,
                       fr_error *err);
