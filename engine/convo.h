#pragma once
/* The conversation of a task with tools, as plain data: the neutral
 * messages a provider call carries (providers/provider.h, fr_call.messages),
 * the model turns and tool calls so far, and the loop's bounds (max_turns,
 * max_tool_calls). It decides whether one more turn may go out and keeps
 * each call's result in the order the model asked; it sends and runs
 * nothing (the attempt's wire backend does). Used by engine/attempt. */

#include "engine/toolres.h"
#include "engine/util/err.h"

#include <jansson.h>
#include <stddef.h>

typedef struct fr_convo fr_convo;

/* Returns a conversation (owned; fr_convo_free) that opens with the user
 * message `prompt` (borrowed, copied), or goes on from `resume` (borrowed:
 * an earlier fr_convo_messages of the same task) when it is not NULL,
 * bounded by `max_turns` model turns and `max_tool_calls` calls. */
fr_convo *fr_convo_new(const char *prompt, const json_t *resume, int max_turns, int max_tool_calls);
void fr_convo_free(fr_convo *c);

/* The messages so far (borrowed; changes with the conversation). */
const json_t *fr_convo_messages(const fr_convo *c);
/* Model turns sent so far (those of `resume` included), and tool calls. */
int fr_convo_turns(const fr_convo *c);
int fr_convo_tool_calls(const fr_convo *c);

/* A model turn goes out. FR_OK, or FR_ETURNS with `err` saying which
 * bound stopped it (max_turns). */
int fr_convo_begin_turn(fr_convo *c, fr_error *err);

/* The turn's reply asked for `calls` (borrowed, fr_reply.tool_calls) with
 * `text` (borrowed, may be NULL) beside them: they are appended as the
 * assistant's message, and their results are awaited. FR_OK, or FR_ETURNS
 * when they would pass max_tool_calls (nothing appended). */
int fr_convo_add_calls(fr_convo *c, const char *text, const json_t *calls, fr_error *err);

/* How many calls the last turn asked for; call `i`'s id, wire name and
 * arguments (borrowed; arguments NULL when the model's were not a JSON
 * object). */
size_t fr_convo_pending(const fr_convo *c);
const char *fr_convo_call_name(const fr_convo *c, size_t i);
const json_t *fr_convo_call_args(const fr_convo *c, size_t i);

/* Records call `i`'s result (`r` borrowed, copied). Returns true once
 * every call of the turn has its result: they are then appended, in the
 * model's order, as tool messages. */
bool fr_convo_set_result(fr_convo *c, size_t i, const fr_tool_result *r);

/* The bytes the next turn sends of `system` (borrowed, may be NULL), the
 * tool definitions `tools` (borrowed, may be NULL) and the messages: what
 * its input estimates come from. */
size_t fr_convo_bytes(const fr_convo *c, const char *system, const json_t *tools);
