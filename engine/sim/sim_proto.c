/* flowrun-sim: the three wire formats. Reads OpenAI chat completions,
 * Ollama /api/chat and Anthropic Messages requests into one neutral form,
 * and writes replies, stream events and errors in each protocol's shape.
 * Knows nothing of timing or faults beyond how each one looks on the wire. */

#include "engine/sim/sim_int.h"

#include "engine/util/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef fr_sim_reply reply;

/* ---- requests -------------------------------------------------------------- */

/* Reads a positive integer member; returns 0 if absent or null, -1 if bad. */
static long long positive_member(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return -1;
    return json_integer_value(v);
}

static bool present(const json_t *v)
{
    return v && !json_is_null(v);
}

/* Checks what every protocol asks: an object with a model and a non-empty
 * array of message objects. Returns NULL or the complaint. */
static const char *check_common(const json_t *doc, const char *model_msg, const char *msgs_msg)
{
    if (!json_is_object(doc))
        return "The request body must be a JSON object.";
    const char *model = json_string_value(json_object_get(doc, "model"));
    if (!model || !*model)
        return model_msg;
    const json_t *messages = json_object_get(doc, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return msgs_msg;
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (!json_is_object(m))
            return "Each message must be an object with 'role' and 'content'.";
    }
    return NULL;
}

static const char *parse_openai(json_t *doc, fr_sim_req *q)
{
    const char *bad = check_common(doc, "You must provide a model parameter.",
                                   "'messages' must be a non-empty array.");
    if (bad)
        return bad;
    q->max_tokens = positive_member(doc, "max_tokens");
    if (q->max_tokens == 0)
        q->max_tokens = positive_member(doc, "max_completion_tokens");
    if (q->max_tokens < 0)
        return "'max_tokens' must be a positive integer.";
    q->stream = json_is_true(json_object_get(doc, "stream"));
    q->include_usage =
        json_is_true(json_object_get(json_object_get(doc, "stream_options"), "include_usage"));
    const json_t *rf = json_object_get(doc, "response_format");
    if (present(rf)) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !type)
            return "'response_format' must be an object with a 'type'.";
        if (strcmp(type, "json_object") == 0) {
            q->format = FR_SIM_JSON_ANY;
        } else if (strcmp(type, "json_schema") == 0) {
            const json_t *js = json_object_get(rf, "json_schema");
            if (!json_is_object(js))
                return "'response_format.json_schema' must be an object.";
            q->schema = json_object_get(js, "schema");
            q->format = json_is_object(q->schema) ? FR_SIM_JSON_SCHEMA : FR_SIM_JSON_ANY;
        } else if (strcmp(type, "text") != 0) {
            return "Invalid value for 'response_format.type': use 'text', 'json_object' or "
                   "'json_schema'.";
        }
    }
    q->messages = json_incref(json_object_get(doc, "messages"));
    return NULL;
}

static const char *parse_ollama(json_t *doc, fr_sim_req *q)
{
    const char *bad = check_common(doc, "model is required", "messages must be a non-empty array");
    if (bad)
        return bad;
    const json_t *stream = json_object_get(doc, "stream");
    if (present(stream) && !json_is_boolean(stream))
        return "stream must be a boolean";
    q->stream = !present(stream) || json_is_true(stream); /* Ollama streams by default */
    const json_t *options = json_object_get(doc, "options");
    if (present(options) && !json_is_object(options))
        return "options must be an object";
    const json_t *np = json_object_get(options, "num_predict");
    if (present(np) && !json_is_integer(np))
        return "options.num_predict must be an integer";
    if (json_is_integer(np) && json_integer_value(np) > 0) /* -1 and -2 mean no limit */
        q->max_tokens = json_integer_value(np);
    const json_t *format = json_object_get(doc, "format");
    if (json_is_object(format)) {
        q->format = FR_SIM_JSON_SCHEMA;
        q->schema = format;
    } else if (json_is_string(format) && strcmp(json_string_value(format), "json") == 0) {
        q->format = FR_SIM_JSON_ANY;
    } else if (present(format) && !(json_is_string(format) && !*json_string_value(format))) {
        return "format must be \"json\" or a JSON schema object";
    }
    q->messages = json_incref(json_object_get(doc, "messages"));
    return NULL;
}

static const char *parse_anthropic(json_t *doc, fr_sim_req *q, char *msg, size_t msg_size)
{
    const char *bad =
        check_common(doc, "model: Field required", "messages: List should have at least 1 item");
    if (bad)
        return bad;
    const json_t *mt = json_object_get(doc, "max_tokens");
    if (!present(mt))
        return "max_tokens: Field required";
    if (!json_is_integer(mt) || json_integer_value(mt) < 1)
        return "max_tokens: Input should be a positive integer";
    q->max_tokens = json_integer_value(mt);
    json_t *messages = json_object_get(doc, "messages");
    size_t i;
    const json_t *m;
    json_array_foreach(messages, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)) {
            snprintf(msg, msg_size, "messages.%zu.role: Input should be 'user' or 'assistant'", i);
            return msg;
        }
    }
    json_t *system = json_object_get(doc, "system");
    if (present(system) && !json_is_string(system) && !json_is_array(system))
        return "system: Input should be a valid string or a list of text blocks";
    const json_t *stream = json_object_get(doc, "stream");
    if (present(stream) && !json_is_boolean(stream))
        return "stream: Input should be a valid boolean";
    q->stream = json_is_true(stream);
    const json_t *choice = json_object_get(doc, "tool_choice");
    const char *ctype = json_string_value(json_object_get(choice, "type"));
    if (ctype && strcmp(ctype, "tool") == 0) {
        const char *name = json_string_value(json_object_get(choice, "name"));
        if (!name)
            return "tool_choice.name: Field required";
        const json_t *tool = NULL;
        json_array_foreach(json_object_get(doc, "tools"), i, tool)
        {
            const char *tname = json_string_value(json_object_get(tool, "name"));
            if (tname && strcmp(tname, name) == 0)
                break;
        }
        if (i == json_array_size(json_object_get(doc, "tools"))) {
            snprintf(msg, msg_size, "tool_choice: tool '%.200s' is not in 'tools'", name);
            return msg;
        }
        q->schema = json_object_get(tool, "input_schema");
        if (!json_is_object(q->schema))
            return "tools: each tool needs an 'input_schema' object";
        q->format = FR_SIM_JSON_SCHEMA;
        q->tool = name;
    }
    /* The system prompt counts as a first message, as under the other two. */
    q->messages = json_array();
    if (present(system))
        json_array_append_new(q->messages,
                              json_pack("{s:s,s:O}", "role", "system", "content", system));
    json_array_extend(q->messages, messages);
    return NULL;
}

/* Reads a request; see sim_int.h. */
int fr_sim_proto_parse(fr_sim_proto proto, json_t *doc, fr_sim_req *q, char *msg, size_t msg_size)
{
    memset(q, 0, sizeof *q);
    const char *bad;
    switch (proto) {
    case FR_SIM_OLLAMA:
        bad = parse_ollama(doc, q);
        break;
    case FR_SIM_ANTHROPIC:
        bad = parse_anthropic(doc, q, msg, msg_size);
        break;
    default:
        bad = parse_openai(doc, q);
        break;
    }
    if (bad) {
        if (bad != msg)
            snprintf(msg, msg_size, "%s", bad);
        return 400;
    }
    q->model = json_string_value(json_object_get(doc, "model"));
    q->tools = json_object_get(doc, "tools");
    if (!json_is_array(q->tools))
        q->tools = NULL;
    return 0;
}

/* ---- errors ---------------------------------------------------------------- */

static const char *anthropic_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static json_t *openai_error(int status, const char *message)
{
    const char *type = status >= 500 ? "server_error" : "invalid_request_error";
    const char *code = NULL;
    if (status == 429) {
        type = "requests";
        code = "rate_limit_exceeded";
    } else if (status == 401) {
        code = "invalid_api_key";
    }
    json_t *err = json_pack("{s:s,s:s,s:n}", "message", message, "type", type, "param");
    json_object_set_new(err, "code", code ? json_string(code) : json_null());
    return json_pack("{s:o}", "error", err);
}

static json_t *anthropic_error(int status, const char *message)
{
    return json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
                     anthropic_error_type(status), "message", message);
}

/* Sends an error in the protocol's shape; see sim_int.h. */
void fr_sim_proto_send_error(fr_sim_conn *c, fr_sim_proto proto, int status, const char *msg,
                             bool keep_alive)
{
    char retry[64];
    snprintf(retry, sizeof retry, "Retry-After: %.0f\r\n",
             c->retry_after_s > 0 ? c->retry_after_s : 1);
    const char *extra = status == 429 || status == 503 ? retry
                        : status == 405                ? "Allow: POST\r\n" /* chat is POST only */
                                                       : "";
    json_t *doc;
    switch (proto) {
    case FR_SIM_OLLAMA:
        doc = json_pack("{s:s}", "error", msg);
        break;
    case FR_SIM_ANTHROPIC:
        doc = anthropic_error(status, msg);
        break;
    default:
        doc = openai_error(status, msg);
        break;
    }
    fr_sim_send_json(c, status, extra, doc, keep_alive);
}

/* ---- replies ----------------------------------------------------------------- */

/* Returns `doc` (taken) as owned compact text, with the bad bytes of a
 * `badutf8` reply put in; `*len` gets the length. */
static char *dump(const reply *r, json_t *doc, size_t *len)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text)
        text = fr_xstrdup("{}");
    size_t n = strlen(text);
    if (r->fault == FR_SIM_FAULT_BADUTF8) {
        const size_t ml = sizeof FR_SIM_BADUTF8_MARK - 1, bl = sizeof FR_SIM_BAD_BYTES - 1;
        char *w = text;
        for (const char *p = text; *p;) {
            if (strncmp(p, FR_SIM_BADUTF8_MARK, ml) == 0) {
                memcpy(w, FR_SIM_BAD_BYTES, bl); /* bl <= ml: rewrites in place */
                w += bl;
                p += ml;
            } else {
                *w++ = *p++;
            }
        }
        *w = '\0';
        n = (size_t)(w - text);
    }
    *len = n;
    return text;
}

/* Appends one frame: an SSE event ("data:", with "event:" for Anthropic) or
 * an NDJSON line, inside an HTTP chunk when the reply is chunked. */
static void put_frame(const reply *r, fr_buf *out, const char *event, const char *payload, size_t n)
{
    fr_buf f;
    fr_buf_init(&f, 0);
    if (r->proto == FR_SIM_OLLAMA) {
        fr_buf_append(&f, payload, n);
        fr_buf_puts(&f, "\n");
    } else {
        if (r->proto == FR_SIM_ANTHROPIC)
            fr_buf_printf(&f, "event: %s\n", event);
        fr_buf_puts(&f, "data: ");
        fr_buf_append(&f, payload, n);
        fr_buf_puts(&f, "\n\n");
    }
    if (r->chunked)
        fr_buf_printf(out, "%zx\r\n", f.len);
    fr_buf_append(out, fr_buf_str(&f), f.len);
    if (r->chunked)
        fr_buf_puts(out, "\r\n");
    fr_buf_close(&f);
}

static void put_json(const reply *r, fr_buf *out, const char *event, json_t *doc)
{
    size_t n;
    char *text = dump(r, doc, &n);
    put_frame(r, out, event, text, n);
    free(text);
}

static bool no_usage(const reply *r)
{
    return r->fault == FR_SIM_FAULT_NOUSAGE;
}

/* Pieces are cut at words and UTF-8 boundaries, so jansson always takes them. */
static json_t *text_json(const char *p, size_t n)
{
    json_t *s = json_stringn(p, n);
    return s ? s : json_string("");
}

/* ---- OpenAI ---- */

static json_t *openai_usage(const reply *r)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)r->prompt_tokens,
                     "completion_tokens", (json_int_t)r->completion_tokens, "total_tokens",
                     (json_int_t)(r->prompt_tokens + r->completion_tokens));
}

static json_t *openai_chunk(const reply *r, json_t *choices)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", r->id, "object", "chat.completion.chunk",
                     "created", (json_int_t)r->created, "model", r->model->name, "choices",
                     choices);
}

/* Ollama has no refusal stop and ends a tool call with "stop". */
static const char *finish_reason(const reply *r, bool tool_block)
{
    bool refused = r->fault == FR_SIM_FAULT_REFUSAL;
    if (r->ncalls > 0) /* the script's calls are never cut */
        return r->proto == FR_SIM_ANTHROPIC ? "tool_use"
               : r->proto == FR_SIM_OPENAI  ? "tool_calls"
                                            : "stop";
    if (r->proto == FR_SIM_ANTHROPIC)
        return r->length_cut ? "max_tokens"
               : refused     ? "refusal"
               : tool_block  ? "tool_use"
                             : "end_turn";
    if (r->proto == FR_SIM_OPENAI && !r->length_cut && refused)
        return "content_filter";
    if (r->proto == FR_SIM_OPENAI && !r->length_cut && r->fault == FR_SIM_FAULT_TOOLCALL)
        return "tool_calls";
    return r->length_cut ? "length" : "stop";
}

static json_t *openai_tool_call(const reply *r, const char *p, size_t n, bool first)
{
    json_t *call = json_pack("{s:i,s:{s:o}}", "index", 0, "function", "arguments", text_json(p, n));
    if (first) {
        char id[64];
        snprintf(id, sizeof id, "call_sim%s", r->id + strlen("chatcmpl-sim"));
        json_object_set_new(call, "id", json_string(id));
        json_object_set_new(call, "type", json_string("function"));
        json_object_set_new(json_object_get(call, "function"), "name",
                            json_string(FR_SIM_TOOL_NAME));
    }
    return json_pack("[o]", call);
}

/* The content of an OpenAI message or delta: the text, or under `thinking`
 * DeepSeek's reasoning_content with no content, or under `toolcall` the
 * call with no content. */
static void openai_content(const reply *r, json_t *msg, const char *p, size_t n, bool first)
{
    if (r->fault == FR_SIM_FAULT_THINKING) {
        json_object_set_new(msg, "content", json_null());
        json_object_set_new(msg, "reasoning_content", text_json(p, n));
    } else if (r->fault == FR_SIM_FAULT_TOOLCALL) {
        json_object_set_new(msg, "content", json_null());
        json_object_set_new(msg, "tool_calls", openai_tool_call(r, p, n, first));
    } else {
        json_object_set_new(msg, "content", text_json(p, n));
    }
}

static json_t *openai_calls(const reply *r);

static json_t *openai_full(const reply *r)
{
    json_t *msg = json_pack("{s:s}", "role", "assistant");
    if (r->ncalls > 0) {
        json_object_set_new(msg, "content", json_null());
        json_object_set_new(msg, "tool_calls", openai_calls(r));
    } else {
        openai_content(r, msg, r->text, r->len, true);
    }
    if (r->fault == FR_SIM_FAULT_THINKING) /* the full message says "" where a delta says null */
        json_object_set_new(msg, "content", json_string(""));
    json_t *choice = json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "message", msg, "logprobs",
                               "finish_reason", finish_reason(r, false));
    json_t *doc =
        json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", r->id, "object", "chat.completion", "created",
                  (json_int_t)r->created, "model", r->model->name, "choices", choice);
    if (!no_usage(r))
        json_object_set_new(doc, "usage", openai_usage(r));
    return doc;
}

/* ---- Ollama ---- */

static json_t *ollama_created_at(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char buf[64];
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%09ldZ", (long)ts.tv_nsec);
    return json_string(buf);
}

/* One object; under `thinking` the text goes in message.thinking, under
 * `toolcall` it is the arguments of message.tool_calls (as an object). */
static json_t *ollama_line(const reply *r, const char *p, size_t n, bool done)
{
    bool thinking = r->fault == FR_SIM_FAULT_THINKING, tool = r->fault == FR_SIM_FAULT_TOOLCALL;
    json_t *doc = json_pack("{s:s,s:o,s:{s:s,s:o},s:b}", "model", r->model->name, "created_at",
                            ollama_created_at(), "message", "role", "assistant", "content",
                            thinking || tool ? json_string("") : text_json(p, n), "done", done);
    json_t *msg = json_object_get(doc, "message");
    if (thinking && n > 0)
        json_object_set_new(msg, "thinking", text_json(p, n));
    json_t *args = tool && n > 0 ? json_loadb(p, n, 0, NULL) : NULL;
    if (args)
        json_object_set_new(
            msg, "tool_calls",
            json_pack("[{s:{s:s,s:o}}]", "function", "name", FR_SIM_TOOL_NAME, "arguments", args));
    return doc;
}

static json_t *ollama_calls(const reply *r);

/* The last object of a reply: done, its reason, durations (ns) and counts. */
static json_t *ollama_final(const reply *r, uint64_t now_ms, const char *p, size_t n)
{
    json_t *doc = ollama_line(r, p, n, true);
    if (r->ncalls > 0 && !r->stream) /* a stream sent them before its last object */
        json_object_set_new(json_object_get(doc, "message"), "tool_calls", ollama_calls(r));
    json_int_t total = (json_int_t)((now_ms - r->t0) * 1000000u);
    json_int_t prompt_ns = (json_int_t)(r->latency_ms * 1e6);
    json_int_t eval_ns =
        r->tokens_per_s > 0 ? (json_int_t)(1e9 * (double)r->paced_words / r->tokens_per_s) : 0;
    json_object_set_new(doc, "done_reason", json_string(finish_reason(r, false)));
    json_object_set_new(doc, "total_duration", json_integer(total > 0 ? total : 1));
    json_object_set_new(doc, "load_duration", json_integer(0));
    if (!no_usage(r)) {
        json_object_set_new(doc, "prompt_eval_count", json_integer(r->prompt_tokens));
        json_object_set_new(doc, "prompt_eval_duration", json_integer(prompt_ns));
        json_object_set_new(doc, "eval_count", json_integer(r->completion_tokens));
        json_object_set_new(doc, "eval_duration", json_integer(eval_ns));
    }
    return doc;
}

/* ---- Anthropic ---- */

static json_t *anthropic_usage(const reply *r, long output)
{
    return json_pack("{s:I,s:I,s:i,s:i}", "input_tokens", (json_int_t)r->prompt_tokens,
                     "output_tokens", (json_int_t)output, "cache_creation_input_tokens", 0,
                     "cache_read_input_tokens", 0);
}

static json_t *anthropic_message(const reply *r, json_t *content, const char *stop, long output)
{
    json_t *doc = json_pack("{s:s,s:s,s:s,s:s,s:o,s:o,s:n}", "id", r->id, "type", "message", "role",
                            "assistant", "model", r->model->name, "content", content, "stop_reason",
                            stop ? json_string(stop) : json_null(), "stop_sequence");
    if (!no_usage(r))
        json_object_set_new(doc, "usage", anthropic_usage(r, output));
    return doc;
}

static json_t *anthropic_tool_block(const reply *r, json_t *input)
{
    char id[64];
    snprintf(id, sizeof id, "toolu_sim%s", r->id + strlen("msg_sim"));
    return json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", id, "name", r->tool, "input",
                     input);
}

static json_t *anthropic_calls(const reply *r);

static json_t *anthropic_full(const reply *r)
{
    if (r->ncalls > 0)
        return anthropic_message(r, anthropic_calls(r), finish_reason(r, true),
                                 r->completion_tokens);
    /* A forced tool answers with a tool_use block when its JSON is an object;
     * JSON that is not (cut by max_tokens, say) goes out as text. */
    bool thinking = r->fault == FR_SIM_FAULT_THINKING;
    json_t *input = r->tool && !thinking ? json_loadb(r->text, r->len, 0, NULL) : NULL;
    json_t *block;
    bool tool = json_is_object(input);
    if (thinking) {
        block = json_pack("{s:s,s:o,s:s}", "type", "thinking", "thinking",
                          text_json(r->text, r->len), "signature", "sim-signature");
    } else if (tool) {
        block = anthropic_tool_block(r, input);
    } else {
        json_decref(input);
        block = json_pack("{s:s,s:o}", "type", "text", "text", text_json(r->text, r->len));
    }
    return anthropic_message(r, json_pack("[o]", block), finish_reason(r, tool),
                             r->completion_tokens);
}

/* Returns the whole non-streamed body; see sim_int.h. */
char *fr_sim_proto_full(const reply *r, uint64_t now_ms, size_t *len)
{
    json_t *doc;
    switch (r->proto) {
    case FR_SIM_OLLAMA:
        doc = ollama_final(r, now_ms, r->text, r->len);
        break;
    case FR_SIM_ANTHROPIC:
        doc = anthropic_full(r);
        break;
    default:
        doc = openai_full(r);
        break;
    }
    return dump(r, doc, len);
}

/* ---- a scripted turn's tool calls ---------------------------------------------- */

/* A call's arguments as a value: the JSON, or the text as a string when it
 * does not parse (a model that wrote bad arguments). */
static json_t *args_value(const fr_sim_call *c)
{
    json_t *v = json_loadb(c->args, c->len, JSON_DECODE_ANY, NULL);
    return v ? v : text_json(c->args, c->len);
}

/* OpenAI message.tool_calls: arguments as a JSON string. */
static json_t *openai_calls(const reply *r)
{
    json_t *calls = json_array();
    for (size_t i = 0; i < r->ncalls; i++) {
        const fr_sim_call *c = &r->calls[i];
        json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", c->id, "type",
                                               "function", "function", "name", c->name, "arguments",
                                               text_json(c->args, c->len)));
    }
    return calls;
}

/* Ollama message.tool_calls: arguments as an object, the call's place in
 * function.index, and the id newer servers add. */
static json_t *ollama_calls(const reply *r)
{
    json_t *calls = json_array();
    for (size_t i = 0; i < r->ncalls; i++) {
        const fr_sim_call *c = &r->calls[i];
        json_array_append_new(calls, json_pack("{s:s,s:{s:I,s:s,s:o}}", "id", c->id, "function",
                                               "index", (json_int_t)i, "name", c->name, "arguments",
                                               args_value(c)));
    }
    return calls;
}

static json_t *anthropic_call_block(const fr_sim_call *c, json_t *input)
{
    return json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id", c->id, "name", c->name, "input",
                     input);
}

/* Anthropic content: one tool_use block per call. */
static json_t *anthropic_calls(const reply *r)
{
    json_t *blocks = json_array();
    for (size_t i = 0; i < r->ncalls; i++)
        json_array_append_new(blocks, anthropic_call_block(&r->calls[i], args_value(&r->calls[i])));
    return blocks;
}

static void add_piece(reply *r, fr_sim_piece_kind kind, size_t call, size_t off, size_t len,
                      long words)
{
    r->pieces = fr_xrealloc(r->pieces, (r->npieces + 1) * sizeof *r->pieces);
    r->pieces[r->npieces++] = (fr_sim_piece){kind, call, off, len, words};
}

/* How many fragments a call's arguments are streamed in: at least 3, and
 * about 16 bytes each. */
static size_t fragments_of(const fr_sim_call *c)
{
    size_t n = (c->len + 15) / 16;
    return n < 3 ? 3 : n;
}

/* Adds fragment `j` of call `i`: its bytes start on UTF-8 boundaries, and
 * the words of the arguments are spread over the fragments. */
static void add_fragment(reply *r, size_t i, size_t j)
{
    const fr_sim_call *c = &r->calls[i];
    size_t nf = fragments_of(c);
    size_t at[2];
    for (int e = 0; e < 2; e++) {
        size_t b = c->len * (j + (size_t)e) / nf;
        while (b < c->len && ((unsigned char)c->args[b] & 0xC0) == 0x80)
            b++;
        at[e] = b;
    }
    long w = c->tokens - 1;
    long words = w * (long)(j + 1) / (long)nf - w * (long)j / (long)nf;
    add_piece(r, FR_SIM_PIECE_ARGS, i, at[0], at[1] - at[0], words);
}

/* Fills the frames of a tool-call stream; see sim_int.h. */
void fr_sim_proto_tool_plan(reply *r)
{
    if (r->proto == FR_SIM_OLLAMA) {
        add_piece(r, FR_SIM_PIECE_ALL, 0, 0, 0, r->completion_tokens);
        return;
    }
    if (r->proto == FR_SIM_ANTHROPIC) {
        for (size_t i = 0; i < r->ncalls; i++) {
            add_piece(r, FR_SIM_PIECE_START, i, 0, 0, 1);
            for (size_t j = 0; j < fragments_of(&r->calls[i]); j++)
                add_fragment(r, i, j);
            add_piece(r, FR_SIM_PIECE_STOP, i, 0, 0, 0);
        }
        return;
    }
    size_t rounds = 0;
    for (size_t i = 0; i < r->ncalls; i++) {
        add_piece(r, FR_SIM_PIECE_START, i, 0, 0, 1);
        if (fragments_of(&r->calls[i]) > rounds)
            rounds = fragments_of(&r->calls[i]);
    }
    for (size_t j = 0; j < rounds; j++) /* parallel calls interleaved, as OpenAI streams them */
        for (size_t i = 0; i < r->ncalls; i++)
            if (j < fragments_of(&r->calls[i]))
                add_fragment(r, i, j);
}

/* One OpenAI delta.tool_calls piece: the first of a call carries its id,
 * type and name with empty arguments; the others a fragment. */
static json_t *openai_call_delta(const reply *r, const fr_sim_piece *pc, bool first)
{
    const fr_sim_call *c = &r->calls[pc->call];
    json_t *call;
    if (pc->kind == FR_SIM_PIECE_START)
        call = json_pack("{s:I,s:s,s:s,s:{s:s,s:s}}", "index", (json_int_t)pc->call, "id", c->id,
                         "type", "function", "function", "name", c->name, "arguments", "");
    else
        call = json_pack("{s:I,s:{s:o}}", "index", (json_int_t)pc->call, "function", "arguments",
                         text_json(c->args + pc->off, pc->len));
    json_t *delta = json_pack("{s:[o]}", "tool_calls", call);
    if (first) {
        json_object_set_new(delta, "role", json_string("assistant"));
        json_object_set_new(delta, "content", json_null());
    }
    return delta;
}

/* Appends one frame of a tool-call stream; see sim_int.h. */
void fr_sim_proto_tool_piece(const reply *r, fr_buf *out, const fr_sim_piece *pc, bool first)
{
    const fr_sim_call *c = &r->calls[pc->call];
    if (r->proto == FR_SIM_OLLAMA) {
        json_t *doc = ollama_line(r, "", 0, false);
        json_object_set_new(json_object_get(doc, "message"), "tool_calls", ollama_calls(r));
        put_json(r, out, NULL, doc);
    } else if (r->proto == FR_SIM_ANTHROPIC && pc->kind == FR_SIM_PIECE_START) {
        put_json(r, out, "content_block_start",
                 json_pack("{s:s,s:I,s:o}", "type", "content_block_start", "index",
                           (json_int_t)pc->call, "content_block",
                           anthropic_call_block(c, json_object())));
    } else if (r->proto == FR_SIM_ANTHROPIC && pc->kind == FR_SIM_PIECE_ARGS) {
        put_json(r, out, "content_block_delta",
                 json_pack("{s:s,s:I,s:{s:s,s:o}}", "type", "content_block_delta", "index",
                           (json_int_t)pc->call, "delta", "type", "input_json_delta",
                           "partial_json", text_json(c->args + pc->off, pc->len)));
    } else if (r->proto == FR_SIM_ANTHROPIC) {
        put_json(
            r, out, "content_block_stop",
            json_pack("{s:s,s:I}", "type", "content_block_stop", "index", (json_int_t)pc->call));
    } else {
        json_t *choice = json_pack("{s:i,s:o,s:n,s:n}", "index", 0, "delta",
                                   openai_call_delta(r, pc, first), "logprobs", "finish_reason");
        put_json(r, out, NULL, openai_chunk(r, json_pack("[o]", choice)));
    }
}

/* ---- streams ------------------------------------------------------------------ */

/* The Content-Type of the protocol's streams. */
const char *fr_sim_proto_stream_type(fr_sim_proto proto)
{
    return proto == FR_SIM_OLLAMA ? "application/x-ndjson" : "text/event-stream";
}

/* Appends what comes before the first piece; see sim_int.h. */
void fr_sim_proto_stream_open(const reply *r, fr_buf *out)
{
    if (r->proto != FR_SIM_ANTHROPIC)
        return;
    put_json(r, out, "message_start",
             json_pack("{s:s,s:o}", "type", "message_start", "message",
                       anthropic_message(r, json_array(), NULL, 1)));
    if (r->ncalls > 0) { /* the plan starts each call's block */
        put_json(r, out, "ping", json_pack("{s:s}", "type", "ping"));
        return;
    }
    json_t *block = r->fault == FR_SIM_FAULT_THINKING
                        ? json_pack("{s:s,s:s}", "type", "thinking", "thinking", "")
                    : r->tool ? anthropic_tool_block(r, json_object())
                              : json_pack("{s:s,s:s}", "type", "text", "text", "");
    put_json(r, out, "content_block_start",
             json_pack("{s:s,s:i,s:o}", "type", "content_block_start", "index", 0, "content_block",
                       block));
    put_json(r, out, "ping", json_pack("{s:s}", "type", "ping"));
}

/* Appends one content piece; see sim_int.h. */
void fr_sim_proto_stream_piece(const reply *r, fr_buf *out, const char *p, size_t n, bool first)
{
    switch (r->proto) {
    case FR_SIM_OLLAMA:
        put_json(r, out, NULL, ollama_line(r, p, n, false));
        break;
    case FR_SIM_ANTHROPIC: {
        json_t *delta =
            r->fault == FR_SIM_FAULT_THINKING
                ? json_pack("{s:s,s:o}", "type", "thinking_delta", "thinking", text_json(p, n))
            : r->tool ? json_pack("{s:s,s:o}", "type", "input_json_delta", "partial_json",
                                  text_json(p, n))
                      : json_pack("{s:s,s:o}", "type", "text_delta", "text", text_json(p, n));
        put_json(
            r, out, "content_block_delta",
            json_pack("{s:s,s:i,s:o}", "type", "content_block_delta", "index", 0, "delta", delta));
        break;
    }
    default: {
        json_t *delta = json_object();
        if (first)
            json_object_set_new(delta, "role", json_string("assistant"));
        openai_content(r, delta, p, n, first);
        json_t *choice =
            json_pack("{s:i,s:o,s:n,s:n}", "index", 0, "delta", delta, "logprobs", "finish_reason");
        put_json(r, out, NULL, openai_chunk(r, json_pack("[o]", choice)));
        break;
    }
    }
}

/* Appends everything after the last piece; see sim_int.h. */
void fr_sim_proto_stream_close(const reply *r, uint64_t now_ms, fr_buf *out)
{
    switch (r->proto) {
    case FR_SIM_OLLAMA:
        put_json(r, out, NULL, ollama_final(r, now_ms, "", 0));
        break;
    case FR_SIM_ANTHROPIC: {
        bool thinking = r->fault == FR_SIM_FAULT_THINKING;
        if (thinking) /* a thinking block ends with its signature */
            put_json(r, out, "content_block_delta",
                     json_pack("{s:s,s:i,s:{s:s,s:s}}", "type", "content_block_delta", "index", 0,
                               "delta", "type", "signature_delta", "signature", "sim-signature"));
        if (r->ncalls == 0) /* the plan stopped each call's block */
            put_json(r, out, "content_block_stop",
                     json_pack("{s:s,s:i}", "type", "content_block_stop", "index", 0));
        json_t *md = json_pack("{s:s,s:{s:s,s:n}}", "type", "message_delta", "delta", "stop_reason",
                               finish_reason(r, r->tool != NULL && !thinking), "stop_sequence");
        if (!no_usage(r))
            json_object_set_new(
                md, "usage", json_pack("{s:I}", "output_tokens", (json_int_t)r->completion_tokens));
        put_json(r, out, "message_delta", md);
        put_json(r, out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
        break;
    }
    default: {
        json_t *choice = json_pack("{s:i,s:{},s:n,s:s}", "index", 0, "delta", "logprobs",
                                   "finish_reason", finish_reason(r, false));
        put_json(r, out, NULL, openai_chunk(r, json_pack("[o]", choice)));
        if (r->include_usage && !no_usage(r)) {
            json_t *doc = openai_chunk(r, json_array());
            json_object_set_new(doc, "usage", openai_usage(r));
            put_json(r, out, NULL, doc);
        }
        put_frame(r, out, NULL, "[DONE]", 6);
        break;
    }
    }
}

/* Appends an error event; see sim_int.h. */
void fr_sim_proto_stream_error(const reply *r, fr_buf *out)
{
    switch (r->proto) {
    case FR_SIM_OLLAMA:
        put_json(r, out, NULL,
                 json_pack("{s:s}", "error",
                           "an error was encountered while running the model "
                           "(simulated fault)"));
        break;
    case FR_SIM_ANTHROPIC:
        put_json(r, out, "error", anthropic_error(529, "Overloaded (simulated fault)"));
        break;
    default:
        put_json(r, out, NULL,
                 openai_error(500, "The server had an error while generating the reply "
                                   "(simulated fault)."));
        put_frame(r, out, NULL, "[DONE]", 6);
        break;
    }
}

/* Appends a malformed chunk; see sim_int.h. */
void fr_sim_proto_stream_badjson(const reply *r, fr_buf *out)
{
    static const char openai[] = "{\"choices\": [";
    static const char ollama[] = "{\"message\": {\"role\": \"assistant\", \"content\": ";
    static const char anthropic[] =
        "{\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {";
    switch (r->proto) {
    case FR_SIM_OLLAMA:
        put_frame(r, out, NULL, ollama, sizeof ollama - 1);
        break;
    case FR_SIM_ANTHROPIC:
        put_frame(r, out, "content_block_delta", anthropic, sizeof anthropic - 1);
        break;
    default:
        put_frame(r, out, NULL, openai, sizeof openai - 1);
        break;
    }
}
