#pragma once
/* Inside flowrun-sim: the server's structs and what its files share.
 * sim.c keeps models, counters and fault scripts; sim_http.c the listener,
 * connections and request parsing; sim_chat.c the protocol-neutral reply
 * (admission, faults, pacing); sim_proto.c the three wire formats;
 * sim_gen.c the deterministic text and JSON. Only engine/sim includes it. */

#include "engine/sim/sim.h"

#include "engine/util/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define FR_SIM_MAX_TARGET  2048
#define FR_SIM_MAX_CRED    512 /* bytes of a credential header kept for `echokey` */
#define FR_SIM_READ_BUF    (64 * 1024)
#define FR_SIM_PIECE_WORDS 3   /* words per streamed chunk */
#define FR_SIM_REPEATS     300 /* copies of the chunk a `repeat` fault streams */
/* A `badutf8` reply carries U+FDD0 (valid, so jansson takes it) where the
 * bad bytes go; every body is rewritten with FR_SIM_BAD_BYTES on the way out. */
#define FR_SIM_BADUTF8_MARK "\xEF\xB7\x90"
#define FR_SIM_BAD_BYTES    "\xFF\xFE"

typedef enum fr_sim_proto { FR_SIM_OPENAI, FR_SIM_OLLAMA, FR_SIM_ANTHROPIC } fr_sim_proto;

/* Fault kinds, in the order of their names in sim.c. */
typedef enum fr_sim_fault {
    FR_SIM_FAULT_OK,
    FR_SIM_FAULT_429,
    FR_SIM_FAULT_500,
    FR_SIM_FAULT_503,
    FR_SIM_FAULT_529,
    FR_SIM_FAULT_CUT,
    FR_SIM_FAULT_HANG,
    FR_SIM_FAULT_BADJSON,
    FR_SIM_FAULT_NOUSAGE,
    FR_SIM_FAULT_BADUTF8,
    FR_SIM_FAULT_ERROR,
    FR_SIM_FAULT_REPEAT,
    FR_SIM_FAULT_BADSCHEMA,
    FR_SIM_FAULT_ECHOKEY,
    FR_SIM_FAULT_REFUSAL,  /* a content filter / refusal stop after part of the text */
    FR_SIM_FAULT_TOOLCALL, /* a call of the tool "lookup", which nobody offered */
    FR_SIM_FAULT_THINKING, /* the text as reasoning, and no answer */
    FR_SIM_FAULT_ECHOOKEY, /* a normal reply that echoes the request's key */
} fr_sim_fault;

/* The tool a `toolcall` reply calls, and its arguments (the reply text). */
#define FR_SIM_TOOL_NAME "lookup"
#define FR_SIM_TOOL_ARGS "{\"query\": \"flowrun\"}"

/* One tool call a scripted turn makes. */
typedef struct fr_sim_call {
    char *id;    /* unique in the conversation: "call_<turn>_<i>", "toolu_sim_<turn>_<i>" */
    char *name;  /* as sent: the offered wire name NAME matched, else NAME as written */
    char *args;  /* compact JSON text, or the script's text as is when it is not JSON */
    size_t len;  /* of args */
    long tokens; /* 1 for the name, plus the words of args */
} fr_sim_call;

/* What the tool script plays for one request (all owned). */
typedef struct fr_sim_turn {
    bool scripted;      /* the first user message has @@ lines */
    fr_sim_call *calls; /* this turn's calls, or NULL */
    size_t ncalls;
    char *text; /* the final answer once the script is used up, else NULL */
} fr_sim_turn;

/* One frame of a streamed tool-call reply. */
typedef enum fr_sim_piece_kind {
    FR_SIM_PIECE_START, /* a call begins: id, type and name (Anthropic content_block_start) */
    FR_SIM_PIECE_ARGS,  /* a fragment of a call's arguments */
    FR_SIM_PIECE_STOP,  /* Anthropic content_block_stop */
    FR_SIM_PIECE_ALL,   /* Ollama: every call in one object */
} fr_sim_piece_kind;

typedef struct fr_sim_piece {
    fr_sim_piece_kind kind;
    size_t call;     /* index in the reply's calls */
    size_t off, len; /* FR_SIM_PIECE_ARGS: the fragment of the call's args */
    long words;      /* the output tokens it carries, for pacing */
} fr_sim_piece;

/* What the reply must be: text, any JSON object, or JSON for a schema. */
typedef enum fr_sim_format { FR_SIM_TEXT, FR_SIM_JSON_ANY, FR_SIM_JSON_SCHEMA } fr_sim_format;

/* Config and counters of one model name, kept until the simulator is freed
 * so a reply in flight can always point at its entry. */
typedef struct fr_sim_entry {
    struct fr_sim_entry *next;
    char *name;
    bool configured; /* set by fr_sim_set_model; else the default applies */
    double latency_ms;
    double tokens_per_s;
    int max_concurrent;
    bool refuse_max_tokens; /* fr_sim_model.refuse_max_tokens */
    double retry_after_s;   /* fr_sim_model.retry_after_s, 0 = 1 s */
    bool has_skill;         /* fr_sim_model.has_skill, skill and noise */
    double skill;
    double noise;
    fr_sim_fault *script; /* owned; consumed from script_pos */
    size_t nscript;
    size_t script_pos;
    long requests;
    long peak;
    long rejected;
    long in_flight;
    long faults;
    long input_tokens;
    long output_tokens;
    uint64_t retry_until; /* uv_now() ms until which the last Retry-After asked clients to wait */
    long early;           /* requests that arrived before that */
} fr_sim_entry;

/* A chat request in protocol-neutral form. Borrows from the parsed body
 * except `messages`. */
typedef struct fr_sim_req {
    const char *model;
    json_t *messages;     /* owned: the system prompt first (role "system"), then the rest */
    long long max_tokens; /* 0 = no limit */
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    fr_sim_format format;
    const json_t *schema; /* FR_SIM_JSON_SCHEMA: the schema object */
    const char *tool;     /* Anthropic: the forced tool's name, else NULL */
    const json_t *tools;  /* the request's `tools` array, or NULL */
} fr_sim_req;

/* The chat reply a connection is producing. Owns its strings. */
typedef struct fr_sim_reply {
    bool active;
    bool stream;
    bool include_usage;
    bool chunked;      /* chunked framing; otherwise the connection closes after */
    bool keep_alive;   /* the connection stays open afterwards */
    bool started;      /* the first piece went out */
    bool badjson_sent; /* the malformed chunk of a `badjson` stream went out */
    fr_sim_proto proto;
    fr_sim_fault fault;
    char *tool;         /* Anthropic forced tool name (owned), or NULL */
    fr_sim_call *calls; /* a scripted turn's tool calls (owned), or NULL */
    size_t ncalls;
    fr_sim_piece *pieces; /* the frames a streamed tool-call reply sends (owned); then
                             pos, piece_end and limit count pieces, not bytes of text */
    size_t npieces;
    fr_sim_entry *model;
    char *text; /* the (possibly cut) reply text */
    size_t len;
    size_t limit;     /* a stream stops here: len, or half of it for cut/error */
    size_t pos;       /* next byte of text to stream */
    size_t piece_end; /* end of the next piece */
    int piece_words;
    long words_done;  /* words streamed so far */
    long first_words; /* words in the first piece */
    long prompt_tokens;
    long completion_tokens;
    long paced_words; /* words that set the pace (completion_tokens without repeats) */
    bool length_cut;  /* max_tokens cut the reply */
    char id[48];
    long long created;
    uint64_t t0; /* uv_now at arrival */
    double latency_ms;
    double tokens_per_s;
} fr_sim_reply;

typedef struct fr_sim_conn {
    struct fr_sim_conn *prev, *next;
    fr_sim *sim;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    int open_handles;
    bool closing;  /* uv_close was called */
    bool draining; /* last response queued; shutting down */
    unsigned long id;
    fr_buf in; /* bytes received and not yet consumed */
    /* Parse state of the request at the front of `in`. */
    bool head_done;
    size_t head_len;
    size_t body_len;
    size_t scan; /* where to resume looking for the end of the head */
    bool keep_alive;
    bool expect_continue;
    bool sent_continue;
    bool have_length; /* the request carried Content-Length */
    int minor;        /* HTTP/1.<minor> */
    char method[16];
    char path[FR_SIM_MAX_TARGET];
    /* The value of the request's Authorization, x-api-key or x-goog-api-key
     * header ("" if none), kept only for the `echokey` fault to echo. */
    char credential[FR_SIM_MAX_CRED];
    double retry_after_s; /* what this request's 429/503 asks, seconds */
    fr_sim_reply rep;
} fr_sim_conn;

struct fr_sim {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    bool closing;
    bool listener_closed;
    double dflt_latency_ms;
    double dflt_tokens_per_s;
    int dflt_max_concurrent;
    fr_sim_fault *dflt_script; /* owned; copied into each unconfigured model */
    size_t dflt_nscript;
    fr_sim_entry *models;
    fr_sim_entry **models_tail;
    long connections;
    long long first_request_us; /* realtime (µs since the epoch) of the first chat request since
                                   the start or the last reset; 0 = none yet */
    unsigned long next_conn_id;
    unsigned long long next_reply_id;
    fr_sim_conn *conns;
    FILE *record;               /* borrowed: each chat request's body, or NULL */
    char *key;                  /* owned: the key every model request must carry, or NULL */
    char rbuf[FR_SIM_READ_BUF]; /* shared: reads are delivered one at a time */
};

/* ---- sim.c: models, counters, faults ---- */

/* Returns the entry of `name` (borrowed), made on first use; never NULL. */
fr_sim_entry *fr_sim_entry_get(fr_sim *s, const char *name);
/* Returns the next kind of the entry's fault script and consumes it, or
 * FR_SIM_FAULT_OK once the script is spent. */
fr_sim_fault fr_sim_entry_next_fault(fr_sim_entry *e);
/* Frees every entry (at the simulator's release). */
void fr_sim_entries_free(fr_sim *s);
/* Returns the kind named by `n` bytes of `name`, or -1 if none. */
int fr_sim_fault_parse(const char *name, size_t n);
/* Returns the name of a fault kind (static). */
const char *fr_sim_fault_name(fr_sim_fault f);

/* ---- sim_http.c: connections and responses ---- */

/* Queues `len` bytes of `data` (taken, freed after the write). */
void fr_sim_conn_write(fr_sim_conn *c, char *data, size_t len);
/* Queues the contents of `b` and leaves it empty. */
void fr_sim_conn_write_buf(fr_sim_conn *c, fr_buf *b);
/* The last response is queued: flush it, then close. */
void fr_sim_conn_drain(fr_sim_conn *c);
/* Closes both handles of `c` and gives back its request slot. Idempotent;
 * memory goes in the last close callback. */
void fr_sim_conn_close(fr_sim_conn *c);
/* Serves every complete request waiting in the connection's input. */
void fr_sim_conn_process(fr_sim_conn *c);
/* Returns the reason phrase of an HTTP status (static). */
const char *fr_sim_status_text(int status);
/* Sends a complete response: `extra` is a block of header lines (may be
 * ""), `body` (borrowed) has `len` bytes. Closes afterwards unless
 * `keep_alive`. */
void fr_sim_send(fr_sim_conn *c, int status, const char *extra, const char *content_type,
                 const char *body, size_t len, bool keep_alive);
/* Sends `doc` (taken) as an application/json response. */
void fr_sim_send_json(fr_sim_conn *c, int status, const char *extra, json_t *doc, bool keep_alive);

/* ---- sim_chat.c: the protocol-neutral reply ---- */

/* Handles one chat request of `proto` with its body (borrowed). Returns true
 * if a reply is now pending (on the timer, or hung), false if the response
 * was already queued. */
bool fr_sim_chat_handle(fr_sim_conn *c, fr_sim_proto proto, const char *body, size_t len);
/* Gives back the reply's slot and memory; idempotent. */
void fr_sim_reply_release(fr_sim_reply *r);

/* ---- sim_proto.c: the wire formats ---- */

/* Reads the protocol's request `doc` (borrowed; `q` borrows from it) into
 * `q`; q->messages is owned by the caller afterwards, also on failure.
 * Returns 0, or 400 with `msg` filled. */
int fr_sim_proto_parse(fr_sim_proto proto, json_t *doc, fr_sim_req *q, char *msg, size_t msg_size);
/* Sends an error response in the protocol's shape. 429 and 503 carry
 * Retry-After: 1; 405 (a chat path asked with GET) carries Allow: POST. */
void fr_sim_proto_send_error(fr_sim_conn *c, fr_sim_proto proto, int status, const char *msg,
                             bool keep_alive);
/* Returns the whole non-streamed response body as owned text; `*len` gets
 * its length (the text may hold invalid UTF-8 for `badutf8`). */
char *fr_sim_proto_full(const fr_sim_reply *r, uint64_t now_ms, size_t *len);
/* The Content-Type of the protocol's streams (static). */
const char *fr_sim_proto_stream_type(fr_sim_proto proto);
/* Appends what precedes the first piece (Anthropic: message_start,
 * content_block_start, ping). */
void fr_sim_proto_stream_open(const fr_sim_reply *r, fr_buf *out);
/* Appends one content piece of `n` bytes at `p`; `first` marks the first. */
void fr_sim_proto_stream_piece(const fr_sim_reply *r, fr_buf *out, const char *p, size_t n,
                               bool first);
/* Appends everything after the last piece up to, not including, the HTTP
 * chunked terminator. */
void fr_sim_proto_stream_close(const fr_sim_reply *r, uint64_t now_ms, fr_buf *out);
/* Fills r->pieces with the frames of the reply's tool calls in the
 * protocol's order: OpenAI a start per call, then the argument fragments
 * (at least 3 a call) interleaved by call; Anthropic each call's block
 * start, fragments and stop in turn; Ollama one object. */
void fr_sim_proto_tool_plan(fr_sim_reply *r);
/* Appends the frame `pc` (borrowed) of a tool-call reply; `first` marks the first. */
void fr_sim_proto_tool_piece(const fr_sim_reply *r, fr_buf *out, const fr_sim_piece *pc,
                             bool first);
/* Appends an error event (and, for OpenAI, the [DONE] that vLLM sends after one). */
void fr_sim_proto_stream_error(const fr_sim_reply *r, fr_buf *out);
/* Appends a malformed chunk in the protocol's framing. */
void fr_sim_proto_stream_badjson(const fr_sim_reply *r, fr_buf *out);

/* ---- sim_tools.c: the tool script ---- */

/* Reads the tool script of request `q` (borrowed) into `t` (zeroed first;
 * release with fr_sim_turn_close): the `@@call` / `@@forever` lines of the
 * first user message, played against the tools `q` offers and the calls
 * and results its conversation holds. Returns 0, or 400 with `msg` filled
 * for a line that does not parse. Without @@ lines t->scripted is false. */
int fr_sim_tools_turn(const fr_sim_req *q, fr_sim_proto proto, fr_sim_turn *t, char *msg,
                      size_t msg_size);
/* Frees what `t` still owns and zeroes it. */
void fr_sim_turn_close(fr_sim_turn *t);
/* Frees `n` calls at `calls` and the array; NULL is fine. */
void fr_sim_calls_free(fr_sim_call *calls, size_t n);
/* The bytes a message's tool calls and tool results add to the input
 * (arguments, names, result texts in tool_use / tool_result blocks and
 * OpenAI/Ollama tool_calls); 0 for a message without them. */
size_t fr_sim_tools_bytes(const json_t *msg);
/* True for a user message that carries Anthropic tool_result blocks: the
 * conversation's tool results, not something the user wrote. */
bool fr_sim_is_tool_result(const json_t *msg);

/* ---- sim_gen.c: deterministic content ---- */

/* Appends the text of a message's content (a string, or an array of parts
 * whose "text" members count) to `out`, or only measures it when `out` is
 * NULL. Returns the number of bytes. */
size_t fr_sim_content_text(const json_t *content, fr_buf *out);
/* Returns the text after `prefix` on the first line of the last user
 * message (tool_result messages aside) that starts with it (owned), or NULL. */
char *fr_sim_prompt_line(const json_t *messages, const char *prefix);
/* Reads the `@@difficulty D` line of the last user message: returns 1 with
 * `*d` set, 0 when there is none, -1 with `msg` filled when D is not a
 * number in 0..1 (a 400). */
int fr_sim_difficulty(const json_t *messages, double *d, char *msg, size_t msg_size);
/* Returns generated compact JSON (owned) for `schema` (NULL: any object),
 * seeded by the model and messages; `violate` makes it break the schema. */
char *fr_sim_gen_json(const char *model, const json_t *messages, const json_t *schema,
                      bool violate);
/* Scans up to `max_words` words of text[pos..len). Returns the end offset,
 * after trailing whitespace when nothing follows it; `*words` gets the count. */
size_t fr_sim_scan_words(const char *text, size_t len, size_t pos, long max_words, long *words);
