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
 * a conversation when its task has tools: the wire backend runs the loop
 * of model turns with the tool calls between them (engine/convo keeps the
 * messages and the bounds) and reports one outcome at its end. */

#include "dsl/workflow.h"
#include "engine/endpoint.h"
#include "engine/http.h"
#include "engine/toolset.h"
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
    int turns;                    /* model turns sent (1 without tools) */
    int tool_calls;               /* tool calls run */
    json_t *conversation;         /* owned, or NULL: a tool loop that failed after tool turns,
                                     its messages so far (a retry on the same endpoint goes on
                                     from there); the receiver may take it (and NULL it) */
} fr_outcome;

/* Called once when an attempt ends (never from inside start). `o` is
 * borrowed for the call; the receiver may take o->reply. */
typedef void (*fr_attempt_done_fn)(void *ud, fr_outcome *o);

/* The tool loop of an attempt whose task has tools: between model turns
 * the calls run through the run's tools, and these callbacks, given by
 * the task, hold each further turn against the caps. */
typedef struct fr_attempt_tools {
    fr_toolset *set; /* borrowed */
    size_t task;     /* the task's index in the workflow */
    int max_turns, max_tool_calls;
    const json_t *resume; /* borrowed, or NULL: a conversation to go on with */
    /* A turn after the first is about to go out with `est_input` expected
     * and `worst_input` at most input tokens: FR_OK when it was held and
     * booked (send it), 1 to ask again shortly (spend in flight may
     * settle), or a negative code with `err` (FR_EBUDGET: it never fits;
     * FR_ESTORE). */
    int (*turn_begin)(void *ud, long est_input, long worst_input, fr_error *err);
    /* A turn that asked for tools ended, having used `u` (borrowed): it is
     * settled. The last turn's usage comes in the outcome. */
    void (*turn_end)(void *ud, const fr_usage *u, double ms);
    /* A tool call ended with `r` (borrowed) for arguments `args` (borrowed,
     * may be NULL); `info` borrowed. */
    void (*tool_done)(void *ud, const fr_toolcall_info *info, const fr_tool_result *r,
                      const json_t *args);
    void *ud;
} fr_attempt_tools;

/* One attempt to start. */
typedef struct fr_attempt_req {
    fr_call call; /* borrowed strings: fr_attempt_call */
    fr_protocol protocol;
    const fr_task_spec *task;         /* borrowed */
    const fr_endpoint_spec *endpoint; /* borrowed */
    long est_input;                   /* the prompt's expected tokens (a plan's estimate) */
    double left_ms;                   /* until the task's deadline (the total timeout) */
    const fr_attempt_tools *tools;    /* borrowed (copied), or NULL: one exchange */
    unsigned long *streamed;          /* borrowed (outlives the attempt), or NULL: set to the
                                         stream events the current turn has read, as they
                                         arrive (live progress) */
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
 * rendered `prompt`, offering `tools` (fr_toolset_defs; NULL for none).
 * Everything is borrowed from the arguments. */
fr_call fr_attempt_call(const fr_workflow *wf, size_t task, const fr_endpoints *eps, size_t e,
                        const char *prompt, const json_t *tools);

/* The wire backend on `http` (borrowed, must outlive it): a provider
 * adapter per attempt, the endpoint's connect, first-byte, idle and attempt
 * timeouts, and the task's deadline as the total timeout. */
fr_attempt_backend fr_attempt_wire(fr_http *http);
/* A run's transport on `loop` (borrowed): a new http (owned by the caller;
 * fr_http_free), its connections capped at `fd_cap` (0: no cap), and
 * *backend set to the wire over it. NULL (backend untouched) when http
 * cannot start. */
fr_http *fr_attempt_wire_for_run(uv_loop_t *loop, int fd_cap, fr_attempt_backend *backend);
