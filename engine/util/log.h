#pragma once
/* The one logger: every line of diagnostic output goes through fr_log, as
 * key=value text on stderr or, with FR_LOG_JSON, one JSON object per line
 * whose keys are time, level, component, event and the line's own fields
 * (numbers as numbers, names as strings), its other words as "msg".
 * Secrets never reach it: callers pass names of key variables, never values. */

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

typedef enum {
    FR_LOG_ERROR = 0,
    FR_LOG_WARN,
    FR_LOG_INFO,
    FR_LOG_DEBUG,
    FR_LOG_TRACE
} fr_log_level;

typedef enum { FR_LOG_TEXT = 0, FR_LOG_JSON } fr_log_format;

/* Sets the most verbose level that is printed (default FR_LOG_WARN). */
void fr_log_set_level(fr_log_level level);
/* Returns the current level. */
fr_log_level fr_log_get_level(void);
/* Chooses text or JSON lines. */
void fr_log_set_format(fr_log_format fmt);
/* Redirects output (borrowed stream; default stderr). */
void fr_log_set_stream(FILE *f);
/* Parses "error", "warn", "info", "debug", "trace"; returns -1 if unknown. */
int fr_log_level_parse(const char *s);

/* Logs one line: `component` names the module ("sched", "http", "lua:policy"),
 * `fmt` is the message, usually key=value pairs. */
void fr_log(fr_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void fr_vlog(fr_log_level level, const char *component, const char *fmt, va_list ap);
/* Logs one line that names its event ("task.end", "run.start"). The text
 * format prints the line as fr_log does; the JSON format writes the event as
 * its "event" key. Lines logged with fr_log take their first plain word, or
 * else their first field's name, as their event. */
void fr_log_event(fr_log_level level, const char *component, const char *event, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

/* Logs one line whose fields beyond time, level, component and event come
 * as `fields`, an already serialized JSON object ("{...}", borrowed; its
 * keys are added after the event). The text format prints `text`
 * (borrowed) as it is, on stderr, without the "flowrun: level component"
 * prefix. For lines with nested values (engine/route's --explain). */
void fr_log_json_fields(fr_log_level level, const char *component, const char *event,
                        const char *fields, const char *text);

/* A display that shares stderr with the log (engine/progress's live block):
 * `fn(ud, true)` is called before each line is written to stderr and
 * `fn(ud, false)` after it, and `fn(ud, true)` when the stream is redirected
 * (fr_log_set_stream(f), a prompt holding lines back: the display stays off
 * the screen until fr_log_held is false again). NULL removes it. */
typedef void (*fr_log_around_fn)(void *ud, bool before);
void fr_log_set_around(fr_log_around_fn fn, void *ud);
/* Whether lines are held back from stderr (redirected by fr_log_set_stream). */
bool fr_log_held(void);
