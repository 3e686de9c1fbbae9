#pragma once
/* The stdio transport of flowrun's MCP server (`flowrun mcp`): newline-
 * delimited JSON-RPC read from standard input and written to standard
 * output through libuv (uv_pipe, or uv_tty on a terminal; never a
 * blocking read), one peer for the process. Standard output carries
 * protocol messages only; logs go to stderr. End of input is reported to
 * the caller, who shuts the server down. Feeds engine/mcpd/mcpd.h. Used by
 * engine/main.c. */

#include "engine/mcpd/mcpd.h"
#include "engine/util/err.h"

#include <uv.h>

typedef struct fr_mcpd_stdio fr_mcpd_stdio;

/* Starts reading `in_fd` and writing `out_fd` (pipes or terminals, not
 * regular files) on `loop` (borrowed) for server `d` (borrowed, outlives
 * it). `on_eof(ud)` is called once when the input ends or fails. FR_EIO
 * with `err` filled when a descriptor cannot be used (an input that is a
 * file or a device: err says to pipe it). On FR_OK *out is
 * owned (fr_mcpd_stdio_close). */
int fr_mcpd_stdio_start(uv_loop_t *loop, fr_mcpd *d, int in_fd, int out_fd,
                        void (*on_eof)(void *ud), void *ud, fr_mcpd_stdio **out, fr_error *err);

/* Frees the peer, stops reading, lets the messages already written reach
 * the output, closes both handles and calls `done(ud)` once they are
 * closed; then frees itself. */
void fr_mcpd_stdio_close(fr_mcpd_stdio *s, void (*done)(void *ud), void *ud);
