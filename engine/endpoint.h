#pragma once
/* The run's endpoints as they are at run time: the address and model each
 * request goes to, the API key (read from the environment once, registered
 * for redaction, wiped when freed), whether the endpoint is usable and why
 * not, its health (cooldowns after overload or connection failures, down
 * after repeated ones, disabled after a refused key or an exhausted quota)
 * and its latency statistics. Owned by engine/run; route reads it, the
 * conductor reports attempts' ends to it. */

#include "dsl/workflow.h"
#include "engine/util/kinds.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct fr_endpoints fr_endpoints;

struct uv_loop_s;

/* What a stand-in server is told about one endpoint in a rehearsal (--sim). */
typedef struct fr_standin_model {
    const char *name; /* the model name the run sends (borrowed) */
    fr_protocol protocol;
    int max_concurrent; /* the endpoint's max_parallel */
    double latency_ms, tokens_per_s;
} fr_standin_model;

/* A stand-in for every endpoint's server (--sim), started on the run's
 * loop: the run asks it once before the first dispatch and stops it when
 * the run ends, so every handle closes. engine/main.c gives one backed by
 * engine/sim. */
typedef struct fr_standin {
    void *ud;
    /* Starts serving `n` models on `loop`; on FR_OK base_urls[i] is each
     * model's base URL (owned by the caller) as its protocol's real servers
     * have it (".../v1" for OpenAI). */
    int (*start)(void *ud, struct uv_loop_s *loop, const fr_standin_model *models, size_t n,
                 char **base_urls, fr_error *err);
    void (*stop)(void *ud); /* closes what start opened; may be called without start */
} fr_standin;

/* What the report says of one endpoint. */
typedef struct fr_ep_stats {
    long requests;
    long failures;
    long connect_failures;     /* attempts that could not connect */
    const char *connect_error; /* the last one's message (borrowed), NULL for none */
    long successes;            /* latencies ever recorded */
    long cooldowns;            /* times it was cooled down */
    double cooldown_ms;        /* and for how long in all */
    bool usable;
    const char *unusable; /* why not (borrowed), NULL when usable */
} fr_ep_stats;

/* Returns the runtime view (owned; fr_endpoints_free) of the endpoints of
 * `wf` (borrowed, must outlive it). With `standin` (a rehearsal or a plan)
 * no key is read, the model is the endpoint's name and the URL is set later
 * (fr_ep_set_url); else a key variable that is unset makes the endpoint
 * unusable, and a key that is set is registered for redaction. */
fr_endpoints *fr_endpoints_new(const fr_workflow *wf, bool standin);
/* Frees the view, wiping the keys; NULL is fine. */
void fr_endpoints_free(fr_endpoints *eps);

size_t fr_endpoints_count(const fr_endpoints *eps);
/* Endpoint `e`'s declaration, URL, model, key (NULL for none) and protocol;
 * borrowed, valid while `eps` lives. */
const fr_endpoint_spec *fr_ep_spec(const fr_endpoints *eps, size_t e);
const char *fr_ep_url(const fr_endpoints *eps, size_t e);
const char *fr_ep_model(const fr_endpoints *eps, size_t e);
const char *fr_ep_key(const fr_endpoints *eps, size_t e);
fr_protocol fr_ep_protocol(const fr_endpoints *eps, size_t e);
/* Sets endpoint `e`'s base URL to `url` (borrowed, copied). */
void fr_ep_set_url(fr_endpoints *eps, size_t e, const char *url);

/* Whether `e` may take work, and why not (borrowed, NULL when usable). */
bool fr_ep_usable(const fr_endpoints *eps, size_t e);
const char *fr_ep_unusable(const fr_endpoints *eps, size_t e);
/* The clock time (ms, fr_clock_ms) until which `e` cools down. */
double fr_ep_cooldown_until(const fr_endpoints *eps, size_t e);
/* True when the latest attempt on `e` could not connect. */
bool fr_ep_down(const fr_endpoints *eps, size_t e);
/* The median of `e`'s last 64 successful latencies (ms), -1 before any:
 * for an even count the upper of the two middle values (an observed
 * latency). Kept sorted as latencies are recorded, so reading it is O(1). */
double fr_ep_p50(const fr_endpoints *eps, size_t e);
/* `e`'s figures for the report (borrowed strings inside). */
fr_ep_stats fr_ep_stats_of(const fr_endpoints *eps, size_t e);

/* A request went to `e`; one found no file descriptor is taken back. */
void fr_ep_sent(fr_endpoints *eps, size_t e);
void fr_ep_unsent(fr_endpoints *eps, size_t e);
/* An attempt on `e` succeeded in `latency_ms`: its health is restored. */
void fr_ep_succeeded(fr_endpoints *eps, size_t e, double latency_ms);
/* An attempt on `e` failed with `rc`, HTTP `status`, the server's
 * Retry-After (`retry_after_s`, -1 for none) and `msg` (borrowed) at clock
 * time `now_ms`. A refused key or an exhausted quota disables the endpoint
 * for the run (the message names the key's variable, never the key); a
 * 429/503 cools it down for its Retry-After, one without it or a connection
 * failure for a cooldown that doubles with each failure in a row (1 s up to
 * 60 s); repeated connection failures make it unreachable for the run. */
void fr_ep_failed(fr_endpoints *eps, size_t e, int rc, long status, double retry_after_s,
                  const char *msg, double now_ms);

/* The speed a plan or a rehearsal expects of an endpoint of `tier`: the time
 * to the first token and the token rate (0 = instant), from
 * `sim_latency_ms` and `sim_tps` (< 0: the tier's defaults). */
void fr_expected_speed(fr_tier tier, double sim_latency_ms, double sim_tps, double *latency_ms,
                       double *tps);

/* Starts stand-in `si` (borrowed) on `loop` for every endpoint of a
 * rehearsal (each its model name, protocol, capacity and expected speed) and
 * points each endpoint at it. FR_OK, or FR_EIO (logged) when it cannot
 * start. */
int fr_endpoints_standin(fr_endpoints *eps, const fr_standin *si, struct uv_loop_s *loop,
                         double sim_latency_ms, double sim_tps);
