#pragma once
/* One attempt of a task on one endpoint: the request built from the task
 * and the endpoint (the one place a call is made, so a request and its cache
 * key always agree), sent through a backend, and its end reported as an
 * outcome record through the done callback it was given: what came back
 * (a finished reply, or the error with its HTTP status and Retry-After),
 * its latency and time to first content, and whether the server started
 * answering (so a cut reply may have been billed). The attempt charges,
 * gates, books and decides nothing: the conductor does, from the outcome.
 *
 * Two backends: the wire (fr_attempt_wire: a provider adapter over
 * engine/http) and a plan's virtual time (engine/plan.h). An attempt is
 * shaped to become a conversation: the loop of model turns with tool calls
 * between them belongs in the wire backend, reporting one outcome at its
 * end. */

#include "dsl/workflow.h"
#include "engine/endpoint.h"
#include "engine/http.h"
#include "engine/util/err.h"
#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>

/* How one attempt ended. */
typedef struct fr_outcome {
    int rc;                       /* FR_OK: a whole reply arrived and was read; else why not */
    long status;                  /* the HTTP status, 0 for none */
    double retry_after_s;         /* the server's Retry-After, -1 for none */
    bool delivered;               /* the transport completed (any status) */
    bool billed;                  /* the server started answering (2xx, bytes): it may bill */
    bool no_fds;                  /* no file descriptor for the socket: nothing was sent, the
                                     server is not to blame */
    bool planned;                 /* a plan's virtual completion: nothing to gate */
    bool obs_latency, obs_output; /* planned: the estimates come from earlier runs */
    fr_reply reply;               /* on FR_OK (or planned): owned by the outcome; the receiver
                                     may take it (and zero it) */
    double total_ms;              /* send to end */
    double ttft_ms;               /* send to the first content, -1 when none arrived */
    fr_error err;                 /* rc != FR_OK: what went wrong */
} fr_outcome;

/* Called once when an attempt ends (never from inside start). `o` is
 * borrowed for the call; the receiver may take o->reply. */
typedef void (*fr_attempt_done_fn)(void *ud, fr_outcome *o);

/* One attempt to start. */
typedef struct fr_attempt_req {
    fr_call call; /* borrowed strings: fr_attempt_call */
    fr_protocol protocol;
    const fr_task_spec *task;         /* borrowed */
    const fr_endpoint_spec *endpoint; /* borrowed */
    long est_input;                   /* the prompt's expected tokens (a plan's estimate) */
    double left_ms;                   /* until the task's deadline (the total timeout) */
} fr_attempt_req;

/* A way to carry attempts out. start returns FR_OK with *handle set (the
 * done callback comes later), or an error (nothing was sent, done is never
 * called). cancel stops an attempt in flight; its done is never called. */
typedef struct fr_attempt_backend {
    void *ud;
    int (*start)(void *ud, const fr_attempt_req *req, fr_attempt_done_fn done, void *done_ud,
                 void **handle, fr_error *err);
    void (*cancel)(void *ud, void *handle);
} fr_attempt_backend;

/* The call task `task` of `wf` makes to endpoint `e` of `eps` with the
 * rendered `prompt`. Every string is borrowed from the arguments. */
fr_call fr_attempt_call(const fr_workflow *wf, size_t task, const fr_endpoints *eps, size_t e,
                        const char *prompt);

/* The wire backend on `http` (borrowed, must outlive it): a provider
 * adapter per attempt, the endpoint's connect, first-byte, idle and attempt
 * timeouts, and the task's deadline as the total timeout. */
fr_attempt_backend fr_attempt_wire(fr_http *http);
