#pragma once
/* flowrun-sim: an inference server on loopback for tests, examples and
 * benchmarks. Speaks the OpenAI-compatible, Ollama and Anthropic protocols
 * with the same deterministic replies, per-model latency, token rate,
 * concurrency limit and scripted faults, plays a model that calls tools
 * from a prompt's `@@call` / `@@forever` lines (docs/testing.md), and keeps
 * counters a test can read.
 * Runs on a caller's loop, so engine/main.c hosts it in-process as the
 * run's stand-in for `flowrun --sim` and sim_main.c wraps it in flowrun-sim.
 * Includes only engine/util/ (tests/layering.sh). */

#include "engine/util/err.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <uv.h>

typedef struct fr_sim fr_sim;

typedef struct fr_sim_model {
    const char *name;       /* model name as sent in requests; borrowed, copied */
    double latency_ms;      /* before the first token */
    double tokens_per_s;    /* output rate after the first token; 0 = instant */
    int max_concurrent;     /* requests beyond it get 429 + Retry-After; 0 = unlimited */
    const char *faults;     /* "KIND+KIND+..." consumed in order by the model's successive
                               requests, then normal; NULL or "" = none; borrowed, copied.
                               Kinds: ok 429 500 503 529 cut hang badjson nousage badutf8
                               error repeat badschema echokey echookey refusal
                               toolcall thinking (docs/testing.md) */
    bool refuse_max_tokens; /* OpenAI protocol: a request with max_tokens gets OpenAI's 400
                               "Unsupported parameter: 'max_tokens' ... Use
                               'max_completion_tokens' instead", as its reasoning models
                               answer; max_completion_tokens is served. Named models only. */
    double retry_after_s;   /* the Retry-After its 429 and 503 replies carry, in seconds;
                               0 = the default, 1 */
    bool has_skill;         /* the model grades a prompt's `@@difficulty D` line (below) */
    double skill;           /* 0..1 with has_skill: how hard a task it passes */
    double noise;           /* 0..1 with has_skill: half-width of a deterministic band around
                               skill (fr_sim_verdict); 0 = none */
} fr_sim_model;

/* Returns a new simulator listening on `host`:`port` (port 0 picks a free
 * one) on `loop` (borrowed). NULL with `err` filled if it cannot listen.
 * `host` is a numeric IPv4/IPv6 address or "localhost" (= 127.0.0.1). The
 * socket is bound before any handle is made, so a failure leaves nothing on
 * the loop. If SIGPIPE still has its default action it is set to ignored, so
 * a client that closes mid-reply cannot kill the hosting process. */
fr_sim *fr_sim_new(uv_loop_t *loop, const char *host, int port, fr_error *err);

/* The port it listens on. */
int fr_sim_port(const fr_sim *s);

/* Sets the behaviour of one model (by name), or of every model not set
 * explicitly when m->name is NULL (each such model then gets its own copy of
 * the fault script). Setting a model restarts its fault script. May be
 * called while serving. Returns FR_OK, or FR_EINVAL when `m->faults` names
 * an unknown kind (nothing is changed then). */
int fr_sim_set_model(fr_sim *s, const fr_sim_model *m);

/* Peak number of requests for `model` open at once (counted before the
 * concurrency check, so it shows what a client sent), or -1 if the model
 * has had no request (since the last reset). */
int fr_sim_peak(const fr_sim *s, const char *model);

/* Returns the counters as a new JSON object (owned by the caller; NULL when
 * `s` is NULL), the same document GET /sim/stats serves:
 *   {"connections":N,"open_connections":N,"first_request_unix_us":N,
 *    "models":{"<model>":{"requests":N,
 *     "peak_in_flight":N,"rejected":N,"in_flight":N,"faults":N,"input_tokens":N,
 *     "output_tokens":N}}}
 * `connections` counts TCP connections accepted and `open_connections` those
 * not closed yet, the one asking for the stats included (1 once a killed
 * client's sockets have been read to their end, so every request it sent is
 * counted); `first_request_unix_us` is
 * when the first chat request since the start or the last reset arrived, in
 * realtime microseconds since the epoch (0 = none yet), so a benchmark can
 * tell how long a client took to put its first request on the wire; `requests` counts valid chat
 * requests of every protocol, 429s included; `rejected` the 429s of the
 * concurrency limit; `faults` the faults injected (kind `ok` is none);
 * `input_tokens`/`output_tokens` sum the usage the simulator reported in
 * replies that completed (a `nousage` reply reports none). Models with no
 * request since the last reset (and none in flight) are left out. Models
 * appear in first-seen order. */
json_t *fr_sim_stats(const fr_sim *s);

/* Zeroes the counters (connections, the first request's time, requests,
 * rejected, faults, tokens).
 * Requests still in flight stay counted in `in_flight`, and `peak_in_flight`
 * restarts from that number (0 when idle). Fault scripts go on where they
 * were. Same as POST /sim/reset. */
void fr_sim_reset(fr_sim *s);

/* Returns the reply text the simulator gives for `model` (borrowed) and
 * `messages` (borrowed JSON array of {role, content}; a system prompt is a
 * message with role "system", wherever the protocol carries it) before any
 * max_tokens cut, as a new string owned by the caller. Lets tests predict
 * replies (of requests without a tool script). Never NULL. */
char *fr_sim_reply_text(const char *model, const json_t *messages);

/* Returns the verdict a model of `skill` and `noise` (see fr_sim_model)
 * named `model` (borrowed) gives the task in `messages` (borrowed): 1 when
 * it passes, 0 when it fails, -1 when there is no verdict (`has_skill` is
 * false, or the last user message has no valid `@@difficulty D` line).
 * It passes when skill + noise x (2u - 1) >= D, u in [0, 1) a hash of the
 * model and every message, so the same request always gets the same
 * verdict. A text reply with a verdict starts "PASS " or "FAIL ". */
int fr_sim_verdict(const char *model, bool has_skill, double skill, double noise,
                   const json_t *messages);

/* Returns the structured reply the simulator gives for `model` and
 * `messages` when a request asks for JSON, as new compact JSON text owned by
 * the caller: the REPLY: line when there is one, else a value generated from
 * `schema` (borrowed JSON Schema object), or {"result": "<words>"} when
 * `schema` is NULL (OpenAI json_object, Ollama "json"). Never NULL. */
char *fr_sim_reply_json(const char *model, const json_t *messages, const json_t *schema);

/* Makes the simulator append one line per chat request to `f` (borrowed;
 * NULL stops it): {"path": "...", "body": <the request body as JSON, or as a
 * string when it is not JSON>}, flushed at once so a test can read it while
 * the simulator serves. Headers are never written (they carry keys). Lets a
 * test see exactly what a client sent. */
void fr_sim_record(fr_sim *s, FILE *f);

/* Makes every request to a model path (chat, /v1/models, /api/tags,
 * /api/ps) carry `key` (borrowed, copied) as "Authorization: Bearer KEY" or
 * "x-api-key: KEY", else it is answered 401 in its protocol's error shape
 * (the key is never quoted); NULL or "" accepts any request again. */
void fr_sim_set_key(fr_sim *s, const char *key);

/* Closes the listener and all connections. Memory is released in the last
 * close callback: the caller runs the loop until it is empty. NULL is fine. */
void fr_sim_free(fr_sim *s);
