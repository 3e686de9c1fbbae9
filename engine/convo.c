#include "engine/convo.h"

#include "engine/util/mem.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct fr_convo {
    json_t *messages; /* owned: the neutral conversation */
    json_t *calls;    /* borrowed from messages: the last assistant turn's calls */
    json_t *results;  /* owned: their tool messages, JSON null until each is in */
    size_t missing;   /* results still awaited */
    int turns, tool_calls;
    int max_turns, max_tool_calls;
};

static const char *str_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int count_turns(const json_t *messages, int *calls)
{
    int turns = 0;
    size_t i;
    json_t *m;
    *calls = 0;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "assistant") == 0) {
            turns++;
            *calls += (int)json_array_size(json_object_get(m, "tool_calls"));
        }
    }
    return turns;
}

fr_convo *fr_convo_new(const char *prompt, const json_t *resume, int max_turns, int max_tool_calls)
{
    fr_convo *c = fr_xcalloc(1, sizeof *c);
    c->max_turns = max_turns > 0 ? max_turns : 1;
    c->max_tool_calls = max_tool_calls > 0 ? max_tool_calls : 1;
    if (resume && json_array_size(resume) > 0) {
        c->messages = json_deep_copy(resume);
        c->turns = count_turns(c->messages, &c->tool_calls);
    } else {
        c->messages = json_array();
        json_array_append_new(
            c->messages, json_pack("{s:s, s:s}", "role", "user", "content", prompt ? prompt : ""));
    }
    return c;
}

void fr_convo_free(fr_convo *c)
{
    if (!c)
        return;
    json_decref(c->messages);
    json_decref(c->calls);
    json_decref(c->results);
    free(c);
}

const json_t *fr_convo_messages(const fr_convo *c)
{
    return c->messages;
}

int fr_convo_turns(const fr_convo *c)
{
    return c->turns;
}

int fr_convo_tool_calls(const fr_convo *c)
{
    return c->tool_calls;
}

int fr_convo_begin_turn(fr_convo *c, fr_error *err)
{
    if (c->turns >= c->max_turns)
        return fr_error_set(err, FR_ETURNS, NULL, 0,
                            "the tool loop reached max_turns (%d) and the model still asks for "
                            "tools: raise max_turns or narrow the task",
                            c->max_turns);
    c->turns++;
    return FR_OK;
}

int fr_convo_add_calls(fr_convo *c, const char *text, const json_t *calls, fr_error *err)
{
    size_t n = json_array_size(calls);
    if (c->turns >= c->max_turns) /* no turn is left to read their results */
        return fr_error_set(err, FR_ETURNS, NULL, 0,
                            "the tool loop reached max_turns (%d) and the model still asks for "
                            "tools: raise max_turns or narrow the task",
                            c->max_turns);
    if (c->tool_calls + (long)n > c->max_tool_calls)
        return fr_error_set(err, FR_ETURNS, NULL, 0,
                            "the tool loop reached max_tool_calls (%d): the model asked for %zu "
                            "more after %d",
                            c->max_tool_calls, n, c->tool_calls);
    json_t *list = json_array();
    size_t i;
    json_t *call;
    json_array_foreach(calls, i, call)
    {
        json_t *args = json_object_get(call, "arguments");
        args = json_is_object(args) ? json_incref(args) : json_object();
        json_array_append_new(list, json_pack("{s:s, s:s, s:o}", "id", str_of(call, "id"), "name",
                                              str_of(call, "name"), "arguments", args));
    }
    json_t *msg = json_pack("{s:s, s:s, s:o}", "role", "assistant", "content", text ? text : "",
                            "tool_calls", list);
    json_array_append_new(c->messages, msg);
    json_decref(c->calls);
    c->calls = json_incref((json_t *)calls);
    json_decref(c->results);
    c->results = json_array();
    for (i = 0; i < n; i++)
        json_array_append_new(c->results, json_null());
    c->missing = n;
    c->tool_calls += (int)n;
    return FR_OK;
}

size_t fr_convo_pending(const fr_convo *c)
{
    return json_array_size(c->results);
}

const char *fr_convo_call_name(const fr_convo *c, size_t i)
{
    return json_string_value(json_object_get(json_array_get(c->calls, i), "name"));
}

const json_t *fr_convo_call_args(const fr_convo *c, size_t i)
{
    json_t *args = json_object_get(json_array_get(c->calls, i), "arguments");
    return json_is_object(args) ? args : NULL;
}

bool fr_convo_set_result(fr_convo *c, size_t i, const fr_tool_result *r)
{
    if (i >= json_array_size(c->results) || !json_is_null(json_array_get(c->results, i)))
        return false;
    json_t *call = json_array_get(c->calls, i);
    json_array_set_new(c->results, i,
                       json_pack("{s:s, s:s, s:s, s:s, s:b}", "role", "tool", "tool_call_id",
                                 str_of(call, "id"), "name", str_of(call, "name"), "content",
                                 r->text ? r->text : "", "is_error", r->is_error));
    if (--c->missing > 0)
        return false;
    json_array_extend(c->messages, c->results);
    json_decref(c->results);
    c->results = NULL;
    json_decref(c->calls);
    c->calls = NULL;
    return true;
}

size_t fr_convo_bytes(const fr_convo *c, const char *system, const json_t *tools)
{
    size_t bytes = system ? strlen(system) : 0;
    char *m = json_dumps(c->messages, JSON_COMPACT);
    char *t = tools ? json_dumps(tools, JSON_COMPACT) : NULL;
    bytes += (m ? strlen(m) : 0) + (t ? strlen(t) : 0);
    free(m);
    free(t);
    return bytes;
}
