#pragma once
/* flowrun-sim: an OpenAI-compatible server on loopback for tests, examples
 * and benchmarks. Deterministic replies, per-model latency, token rate and
 * concurrency limit, and counters a test can read. Runs on a caller's loop,
 * so `flowrun --sim` hosts it in-process and flowrun-sim wraps it in a main. */

#include "engine/util/err.h"

#include <stdbool.h>
#include <uv.h>

typedef struct fr_sim fr_sim;

typedef struct fr_sim_model {
    const char *name;    /* model name as sent in requests; borrowed, copied */
    double latency_ms;   /* before the first token */
    double tokens_per_s; /* output rate after the first token; 0 = instant */
    int max_concurrent;  /* requests beyond it get 429 + Retry-After; 0 = unlimited */
} fr_sim_model;

/* Returns a new simulator listening on `host`:`port` (port 0 picks a free
 * one) on `loop` (borrowed). NULL with `err` filled if it cannot listen. */
fr_sim *fr_sim_new(uv_loop_t *loop, const char *host, int port, fr_error *err);

/* The port it listens on. */
int fr_sim_port(const fr_sim *s);

/* Sets the behaviour of one model (by name), or of every model not set
 * explicitly when m->name is NULL. May be called while serving. */
void fr_sim_set_model(fr_sim *s, const fr_sim_model *m);

/* Peak number of requests for `model` open at once (counted before the
 * concurrency check, so it shows what a client sent), or -1 if the model
 * has had no request. */
int fr_sim_peak(const fr_sim *s, const char *model);

/* Closes the listener and all connections. Memory is released in the last
 * close callback: the caller runs the loop until it is empty. NULL is fine. */
void fr_sim_free(fr_sim *s);
