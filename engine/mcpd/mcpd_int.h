#pragma once
/* The MCP server core's insides, shared by mcpd.c (peers, dispatch of
 * JSON-RPC messages, the two revisions) and calls.c (the tools, their
 * argument checks and the child `flowrun` each call runs). Not for use
 * outside engine/mcpd/. */

#include "engine/mcpd/mcpd.h"
#include "engine/proc.h"
#include "engine/util/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_mcpd_call fr_mcpd_call;

/* A command line being built: NULL-terminated `v` of `n` owned strings. */
typedef struct fr_mcpd_argv {
    char **v;
    size_t n, cap;
} fr_mcpd_argv;

struct fr_mcpd {
    uv_loop_t *loop;
    char *exe;
    char **child_args;
    size_t nchild_args;
    char *work_dir;
    size_t inline_max;
    unsigned long seq; /* numbers the calls' files in work_dir */
    fr_mcpd_peer *peers;
    fr_mcpd_call *calls;
    bool shutting_down;
    void (*done)(void *ud);
    void *done_ud;
};

struct fr_mcpd_peer {
    fr_mcpd *d;
    fr_mcpd_send_fn send;
    void *ud;
    const char *rev;  /* FR_MCP_REV_2026, FR_MCP_REV_2025 or NULL */
    bool initialized; /* 2025-11-25: initialize answered */
    fr_mcpd_peer *next;
};

/* One tools/call in flight: its child and what it printed so far. */
struct fr_mcpd_call {
    fr_mcpd *d;
    fr_mcpd_peer *peer; /* NULL once the peer went away */
    void *tag;
    json_t *id;             /* the request's id (owned) */
    json_t *progress_token; /* owned, NULL when the client asked for no progress */
    const char *rev;
    int tool;              /* an fr_mcpd_tool */
    char *out_dir;         /* the run's --out (owned), NULL for tools that write nothing */
    char *wf_path;         /* a generated one-task workflow (owned, removed at the end), or NULL */
    fr_mcpd_argv argv;     /* the child's command line until it starts */
    fr_proc *proc;         /* NULL until it starts (run_task writes its workflow first) */
    fr_buf out, err, line; /* stdout, stderr, stderr's unfinished line */
    long ended, total;     /* tasks ended, tasks in the run (0 until the child said) */
    bool cancelled;
    fr_mcpd_call *next;
};

/* Sends `msg` (taken) to `p` with `tag`; `last` for a final response;
 * `rev` the revision the request spoke (NULL: none said).
 * Adds 2026-07-28's resultType to a result when the peer speaks it. */
void fr_mcpd_send(fr_mcpd_peer *p, void *tag, const char *rev, json_t *msg, bool last);

/* The tools/list result (owned): every tool with its schemas. */
json_t *fr_mcpd_tools_list(void);

/* Handles a tools/call request `id` (borrowed) with `params` (borrowed)
 * from `p`: an unknown tool is a -32602 error response; bad arguments or
 * a child that cannot start are an isError result; otherwise the child
 * starts and the response comes when it ends. */
void fr_mcpd_tool_call(fr_mcpd_peer *p, void *tag, const json_t *id, const json_t *params);

/* Stops call `c`'s child (SIGTERM to its group, SIGKILL after the grace);
 * no response will be sent for it. */
void fr_mcpd_call_cancel(fr_mcpd_call *c);

/* Called by calls.c when the last call ended during a shutdown. */
void fr_mcpd_calls_idle(fr_mcpd *d);
