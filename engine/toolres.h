#pragma once
/* What one tool call gave back, whatever ran it (an MCP server, a Lua
 * function, a command): the text the model reads next and, when the tool
 * failed, a short reason for the report. Shared by engine/mcp,
 * engine/cmdtool and engine/toolset; it knows none of them. */

#include <stdbool.h>
#include <stddef.h>

typedef struct fr_tool_result {
    bool is_error; /* the tool failed (MCP isError, a non-zero exit, a timeout, bad
                      arguments, a dead server): sent to the model as an error result */
    char *text;    /* owned, never NULL once filled: what the model reads */
    char *reason;  /* owned or NULL: why it failed, one line for the report
                      ("timed out after 60 s", "exit code 2", "server 'fs' stopped") */
} fr_tool_result;

/* Called once when a tool call ends (never from inside the call that
 * started it). `r` is borrowed for the call; the receiver may take its
 * strings (and NULL them). */
typedef void (*fr_tool_done_fn)(void *ud, fr_tool_result *r);

/* Fills `r` as a success with a copy of `text` (borrowed). */
void fr_tool_result_ok(fr_tool_result *r, const char *text);
/* Fills `r` as a failure: the reason is printf-formatted, and the text the
 * model reads is "error: <reason>". */
void fr_tool_result_fail(fr_tool_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Releases what `r` owns and zeroes it; NULL members are fine. */
void fr_tool_result_close(fr_tool_result *r);
