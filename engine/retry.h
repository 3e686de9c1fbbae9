#pragma once
/* What a failed attempt means for its task, as pure functions: which
 * errors are worth another try, how long to wait (exponential backoff with
 * full jitter, never sooner than Retry-After), when to ask the policy for
 * another endpoint, and when to give up. No I/O, no state: engine/run
 * applies the decision; engine/endpoint uses the same classification for an
 * endpoint's health. */

#include <stdbool.h>

/* A hard cap on attempts per task, over all endpoints: ends ping-pong. */
#define FR_MAX_ATTEMPTS 10
/* Retry-After means "not before": a wait it asks for is kept a little
 * longer, so clock granularity never sends a request a moment early. */
#define FR_RETRY_AFTER_MARGIN_MS 20

/* True for errors a second try may cure: no connection, a timeout, a stream
 * cut before its end, a malformed reply, a retry the policy asked for, and
 * HTTP 408, 409, 425, 429 and 5xx. */
bool fr_retry_retryable(int rc, long status);

/* True for a 429 whose message (borrowed, may be NULL) says the account's
 * quota or spending limit is used up: waiting does not help. */
bool fr_retry_quota_exhausted(long status, const char *msg);

/* One failed attempt, as the conductor saw it. */
typedef struct fr_failure {
    int rc;                     /* the attempt's error code */
    long status;                /* its HTTP status, 0 for none */
    double retry_after_s;       /* the server's Retry-After, -1 for none */
    const char *msg;            /* what went wrong (borrowed) */
    const char *finish_outcome; /* with FR_EFINISH: "truncated", "refused", ... (static) */
} fr_failure;

/* Where the task stands when it failed. */
typedef struct fr_retry_state {
    int attempts;       /* attempts of the task so far, this one included */
    int ep_attempts;    /* of those, on this endpoint in a row */
    int retries;        /* the task's retries per endpoint */
    bool ep_usable;     /* the endpoint is still usable after this failure */
    double now_ms;      /* the run's clock */
    double deadline_ms; /* the task's deadline on that clock; 0 for none (a plan) */
    double jitter;      /* a random number in [0, 1] for the backoff */
} fr_retry_state;

typedef enum {
    FR_RETRY_SAME = 0, /* try the same endpoint again after delay_ms */
    FR_RETRY_OTHER,    /* this endpoint is spent for the task: ask the policy for another */
    FR_RETRY_GIVE_UP   /* FR_MAX_ATTEMPTS reached: the task fails */
} fr_retry_kind;

typedef struct fr_retry_decision {
    fr_retry_kind kind;
    /* OTHER: the routing reason the policy is given: "error", "quality", or
     * the finish outcome (static). */
    const char *reason;
    /* SAME: the wait. OTHER with past_deadline: the wait the endpoint asked
     * for, which would outlast the task (so without another endpoint the
     * task fails now, saying so). */
    double delay_ms;
    bool past_deadline;
} fr_retry_decision;

/* Decides what follows failure `f` (borrowed) in state `s` (borrowed). */
fr_retry_decision fr_retry_decide(const fr_failure *f, const fr_retry_state *s);
