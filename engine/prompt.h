#pragma once
/* The terminal prompt of human approvals: shows an approval task's output
 * (its first lines and the file holding all of it) and reads approve /
 * reject and an optional note from the terminal through uv_tty, never a
 * blocking read; one question at a time, the others queued. While a
 * question is on screen, log lines are held back and printed after the
 * answer, so progress does not break into the prompt. Owned by engine/run,
 * which decides with engine/approval; the answer comes back through a
 * callback. */
#include "engine/approval.h"

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct fr_prompt fr_prompt;

/* Called from the loop with the answer for `task`: APPROVED or REJECTED
 * with `note` (borrowed for the call, NULL for none), or PENDING when the
 * terminal closed (end of input) before an answer. */
typedef void (*fr_prompt_answer_fn)(void *ud, size_t task, fr_approval_state state,
                                    const char *note);

/* True when standard input and standard error are both terminals. */
bool fr_prompt_possible(void);

/* Returns a prompt on the terminal of standard input (owned: fr_prompt_close
 * closes it, and the loop frees it), or NULL when it cannot be opened. */
fr_prompt *fr_prompt_new(uv_loop_t *loop, fr_prompt_answer_fn answer, void *ud);

/* False once the terminal's input ended: ask no more questions. */
bool fr_prompt_open(const fr_prompt *p);

/* Queues the question for `task` named `name`, with its output `text` and
 * the path of the file holding it (both borrowed, copied); shown at once
 * when no other question is on screen. */
void fr_prompt_ask(fr_prompt *p, size_t task, const char *name, const char *text, const char *path);

/* Questions asked and not answered yet, the one on screen included. */
size_t fr_prompt_waiting(const fr_prompt *p);

/* Stops reading, prints what log lines were held back, restores the
 * terminal's mode and closes the handle; the struct is freed in the close
 * callback. Unanswered questions get no answer. NULL is fine. */
void fr_prompt_close(fr_prompt *p);
