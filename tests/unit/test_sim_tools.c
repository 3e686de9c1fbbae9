/* Unit test of flowrun-sim's tool script (`@@call`, `@@forever`) over real
 * loopback HTTP, in the three protocols, streamed and not: the scripted
 * calls (parallel ones too) in each protocol's native shape, arguments
 * streamed in fragments that reassemble to the JSON given, the next turn
 * once the results come back, the final answer quoting every result, a
 * model that never stops, names matched to the offered wire names or sent
 * as written, and usage the simulator's counters agree with. */

#include "tests/unit/support/sim_proto.h"

#include "engine/util/hash.h"

#define MAX_CALLS 8

/* What a client reassembles from one reply. */
typedef struct tres {
    int status;
    char *raw;
    char *finish;
    char *text; /* "" when none */
    long in, out;
    int n;
    char *id[MAX_CALLS];
    char *name[MAX_CALLS];
    fr_buf args[MAX_CALLS];
    int frags[MAX_CALLS]; /* argument pieces received */
    int order[256];       /* streamed OpenAI: the call of each argument piece, in order */
    int norder;
    int tool_chunks; /* Ollama stream: objects that carried tool_calls */
} tres;

static void tres_free(tres *r)
{
    free(r->raw);
    free(r->finish);
    free(r->text);
    for (int i = 0; i < r->n; i++) {
        free(r->id[i]);
        free(r->name[i]);
        fr_buf_close(&r->args[i]);
    }
    memset(r, 0, sizeof *r);
}

static int new_call(tres *r, const char *id, const char *name)
{
    assert_true(r->n < MAX_CALLS);
    int i = r->n++;
    r->id[i] = fr_xstrdup(id ? id : "");
    r->name[i] = fr_xstrdup(name);
    fr_buf_init(&r->args[i], 0);
    return i;
}

static void add_args_value(tres *r, int i, const json_t *v)
{
    if (json_is_string(v)) {
        fr_buf_puts(&r->args[i], json_string_value(v));
    } else {
        char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        fr_buf_puts(&r->args[i], t);
        free(t);
    }
    r->frags[i]++;
}

static void take_usage(tres *r, const json_t *usage, const char *in, const char *out)
{
    if (json_object_get(usage, in))
        r->in = int_member(usage, in);
    if (json_object_get(usage, out))
        r->out = int_member(usage, out);
}

static void parse_openai(tres *r, const char *body, bool stream, fr_buf *text)
{
    if (!stream) {
        json_t *doc = must_parse(body);
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        json_t *msg = json_object_get(choice, "message");
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(msg, "tool_calls"), i, c)
        {
            assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
            json_t *fn = json_object_get(c, "function");
            assert_true(json_is_string(json_object_get(fn, "arguments")));
            int k = new_call(r, json_string_value(json_object_get(c, "id")),
                             json_string_value(json_object_get(fn, "name")));
            add_args_value(r, k, json_object_get(fn, "arguments"));
        }
        if (r->n > 0)
            assert_true(json_is_null(json_object_get(msg, "content")));
        else
            fr_buf_puts(text, json_string_value(json_object_get(msg, "content")));
        r->finish = fr_xstrdup(json_string_value(json_object_get(choice, "finish_reason")));
        take_usage(r, json_object_get(doc, "usage"), "prompt_tokens", "completion_tokens");
        json_decref(doc);
        return;
    }
    sse_events ev;
    parse_sse(body, &ev);
    assert_string_equal(ev.items[ev.n - 1].data, "[DONE]");
    for (int e = 0; e < ev.n - 1; e++) {
        json_t *doc = must_parse(ev.items[e].data);
        take_usage(r, json_object_get(doc, "usage"), "prompt_tokens", "completion_tokens");
        json_t *choice = json_array_get(json_object_get(doc, "choices"), 0);
        json_t *delta = json_object_get(choice, "delta");
        json_t *calls = json_object_get(delta, "tool_calls");
        if (calls) {
            assert_int_equal(json_array_size(calls), 1); /* one piece a chunk */
            json_t *c = json_array_get(calls, 0);
            int idx = (int)int_member(c, "index");
            json_t *fn = json_object_get(c, "function");
            if (json_object_get(c, "id")) { /* a call's first piece */
                assert_int_equal(idx, r->n);
                assert_string_equal(json_string_value(json_object_get(c, "type")), "function");
                assert_string_equal(json_string_value(json_object_get(fn, "arguments")), "");
                new_call(r, json_string_value(json_object_get(c, "id")),
                         json_string_value(json_object_get(fn, "name")));
            } else {
                assert_true(idx >= 0 && idx < r->n);
                assert_null(json_object_get(fn, "name"));
                add_args_value(r, idx, json_object_get(fn, "arguments"));
                r->order[r->norder++] = idx;
            }
        }
        const char *piece = json_string_value(json_object_get(delta, "content"));
        if (piece)
            fr_buf_puts(text, piece);
        if (json_is_string(json_object_get(choice, "finish_reason"))) {
            free(r->finish);
            r->finish = fr_xstrdup(json_string_value(json_object_get(choice, "finish_reason")));
        }
        json_decref(doc);
    }
    sse_free(&ev);
}

static void ollama_object(tres *r, const json_t *doc, fr_buf *text)
{
    json_t *msg = json_object_get(doc, "message");
    fr_buf_puts(text, json_string_value(json_object_get(msg, "content")));
    size_t i;
    json_t *c;
    json_t *calls = json_object_get(msg, "tool_calls");
    if (calls)
        r->tool_chunks++;
    json_array_foreach(calls, i, c)
    {
        json_t *fn = json_object_get(c, "function");
        json_t *args = json_object_get(fn, "arguments");
        assert_true(json_is_object(args) || json_is_string(args)); /* a string: not JSON */
        int k = new_call(r, json_string_value(json_object_get(c, "id")),
                         json_string_value(json_object_get(fn, "name")));
        add_args_value(r, k, json_object_get(fn, "arguments"));
    }
    if (json_is_true(json_object_get(doc, "done"))) {
        free(r->finish);
        r->finish = fr_xstrdup(json_string_value(json_object_get(doc, "done_reason")));
        take_usage(r, doc, "prompt_eval_count", "eval_count");
    }
}

static void parse_ollama(tres *r, const char *body, bool stream, fr_buf *text)
{
    if (!stream) {
        json_t *doc = must_parse(body);
        assert_true(json_is_true(json_object_get(doc, "done")));
        ollama_object(r, doc, text);
        json_decref(doc);
        return;
    }
    for (const char *p = body; *p;) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char *line = fr_xstrndup(p, (size_t)(nl - p));
        json_t *doc = must_parse(line);
        free(line);
        if (json_is_true(json_object_get(doc, "done")))
            assert_null(json_object_get(json_object_get(doc, "message"), "tool_calls"));
        ollama_object(r, doc, text);
        json_decref(doc);
        p = nl + 1;
    }
}

static void parse_anthropic(tres *r, const char *body, bool stream, fr_buf *text)
{
    if (!stream) {
        json_t *doc = must_parse(body);
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(doc, "content"), i, b)
        {
            const char *type = json_string_value(json_object_get(b, "type"));
            if (strcmp(type, "tool_use") == 0) {
                int k = new_call(r, json_string_value(json_object_get(b, "id")),
                                 json_string_value(json_object_get(b, "name")));
                add_args_value(r, k, json_object_get(b, "input"));
            } else {
                assert_string_equal(type, "text");
                fr_buf_puts(text, json_string_value(json_object_get(b, "text")));
            }
        }
        r->finish = fr_xstrdup(json_string_value(json_object_get(doc, "stop_reason")));
        take_usage(r, json_object_get(doc, "usage"), "input_tokens", "output_tokens");
        json_decref(doc);
        return;
    }
    sse_events ev;
    parse_sse(body, &ev);
    int open = -1; /* the block being streamed */
    bool open_tool = false;
    for (int e = 0; e < ev.n; e++) {
        json_t *doc = must_parse(ev.items[e].data);
        const char *type = json_string_value(json_object_get(doc, "type"));
        assert_string_equal(ev.items[e].name, type);
        int idx = (int)int_member(doc, "index");
        if (strcmp(type, "message_start") == 0) {
            take_usage(r, json_object_get(json_object_get(doc, "message"), "usage"), "input_tokens",
                       "none");
        } else if (strcmp(type, "content_block_start") == 0) {
            assert_int_equal(open, -1); /* blocks come one after another */
            open = idx;
            json_t *b = json_object_get(doc, "content_block");
            open_tool = strcmp(json_string_value(json_object_get(b, "type")), "tool_use") == 0;
            if (open_tool) {
                assert_int_equal(json_object_size(json_object_get(b, "input")), 0);
                assert_int_equal(idx, r->n);
                new_call(r, json_string_value(json_object_get(b, "id")),
                         json_string_value(json_object_get(b, "name")));
            }
        } else if (strcmp(type, "content_block_delta") == 0) {
            assert_int_equal(idx, open);
            json_t *d = json_object_get(doc, "delta");
            if (open_tool) {
                assert_string_equal(json_string_value(json_object_get(d, "type")),
                                    "input_json_delta");
                add_args_value(r, idx, json_object_get(d, "partial_json"));
            } else {
                fr_buf_puts(text, json_string_value(json_object_get(d, "text")));
            }
        } else if (strcmp(type, "content_block_stop") == 0) {
            assert_int_equal(idx, open);
            open = -1;
        } else if (strcmp(type, "message_delta") == 0) {
            assert_int_equal(open, -1);
            r->finish = fr_xstrdup(
                json_string_value(json_object_get(json_object_get(doc, "delta"), "stop_reason")));
            take_usage(r, json_object_get(doc, "usage"), "none", "output_tokens");
        }
        json_decref(doc);
    }
    assert_string_equal(ev.items[ev.n - 1].name, "message_stop");
    sse_free(&ev);
}

/* Sends `body` as protocol `p` and reassembles the reply into `r`. */
static void send_turn(fixture *fx, proto p, bool stream, const char *body, tres *r)
{
    memset(r, 0, sizeof *r);
    r->in = r->out = -1;
    response resp = {0};
    roundtrip(fx, "POST", proto_paths[p], body, &resp);
    r->status = resp.status;
    r->raw = resp.body;
    resp.body = NULL;
    if (resp.status == 200) {
        fr_buf text;
        fr_buf_init(&text, 0);
        if (p == P_OPENAI)
            parse_openai(r, r->raw, stream, &text);
        else if (p == P_OLLAMA)
            parse_ollama(r, r->raw, stream, &text);
        else
            parse_anthropic(r, r->raw, stream, &text);
        r->text = fr_buf_take(&text);
    }
    response_free(&resp);
}

/* ---- requests in each protocol's shape ------------------------------------------ */

static json_t *tools_of(proto p, const char *const *names)
{
    json_t *tools = json_array();
    for (; *names; names++) {
        json_t *schema = json_pack("{s:s}", "type", "object");
        if (p == P_ANTHROPIC)
            json_array_append_new(tools, json_pack("{s:s,s:s,s:o}", "name", *names, "description",
                                                   "a tool", "input_schema", schema));
        else
            json_array_append_new(tools, json_pack("{s:s,s:{s:s,s:s,s:o}}", "type", "function",
                                                   "function", "name", *names, "description",
                                                   "a tool", "parameters", schema));
    }
    return tools;
}

static char *body_of(proto p, bool stream, const char *model, const json_t *msgs,
                     const char *const *tools)
{
    json_t *doc = json_pack("{s:s,s:b,s:O}", "model", model, "stream", stream, "messages", msgs);
    const json_t *first = json_array_get(msgs, 0);
    if (p == P_ANTHROPIC &&
        strcmp(json_string_value(json_object_get(first, "role")), "system") == 0) {
        json_t *rest = json_deep_copy(msgs); /* Anthropic carries the system prompt on top */
        json_array_remove(rest, 0);
        json_object_set(doc, "system", json_object_get(first, "content"));
        json_object_set_new(doc, "messages", rest);
    }
    if (tools)
        json_object_set_new(doc, "tools", tools_of(p, tools));
    if (p == P_ANTHROPIC)
        json_object_set_new(doc, "max_tokens", json_integer(400));
    if (p == P_OPENAI && stream)
        json_object_set_new(doc, "stream_options", json_pack("{s:b}", "include_usage", 1));
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* Appends the assistant turn `r` called and the results (`results[i]`
 * answers call i; `errors[i]` marks an error result) in protocol p's shape:
 * OpenAI tool messages by tool_call_id, Ollama by tool_name, Anthropic
 * tool_result blocks (content a list of text blocks) in one user message.
 * OpenAI and Ollama have no error flag: an error result carries is_error. */
static void append_turn(proto p, json_t *msgs, const tres *r, const char *const *results,
                        const bool *errors)
{
    json_t *calls = json_array();
    json_t *blocks = json_array();
    for (int i = 0; i < r->n; i++) {
        json_t *args = must_parse(fr_buf_str(&r->args[i]));
        if (p == P_OPENAI)
            json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", r->id[i], "type",
                                                   "function", "function", "name", r->name[i],
                                                   "arguments", fr_buf_str(&r->args[i])));
        else if (p == P_OLLAMA)
            json_array_append_new(calls, json_pack("{s:{s:s,s:O}}", "function", "name", r->name[i],
                                                   "arguments", args));
        else
            json_array_append_new(blocks, json_pack("{s:s,s:s,s:s,s:O}", "type", "tool_use", "id",
                                                    r->id[i], "name", r->name[i], "input", args));
        json_decref(args);
    }
    if (p == P_ANTHROPIC) {
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "assistant", "content", blocks));
        json_decref(calls);
        blocks = json_array();
    } else {
        json_array_append_new(msgs,
                              json_pack("{s:s,s:s,s:o}", "role", "assistant", "content",
                                        p == P_OLLAMA ? "" : "Let me look.", "tool_calls", calls));
    }
    for (int i = 0; i < r->n; i++) {
        json_t *m;
        if (p == P_OPENAI)
            m = json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", r->id[i], "content",
                          results[i]);
        else if (p == P_OLLAMA)
            m = json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_name", r->name[i], "content",
                          results[i]);
        else
            m = json_pack("{s:s,s:s,s:[{s:s,s:s}]}", "type", "tool_result", "tool_use_id", r->id[i],
                          "content", "type", "text", "text", results[i]);
        if (errors[i])
            json_object_set_new(m, "is_error", json_true());
        json_array_append_new(p == P_ANTHROPIC ? blocks : msgs, m);
    }
    if (p == P_ANTHROPIC)
        json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", "user", "content", blocks));
    else
        json_decref(blocks);
}

static json_t *first_messages(const char *prompt)
{
    return json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "Use the tools.", "role",
                     "user", "content", prompt);
}

static const char *const tool_finish[] = {"tool_calls", "stop", "tool_use"};
static const char *const stop_finish[] = {"stop", "stop", "end_turn"};
static const char *const id_prefix[] = {"call_", "call_", "toolu_"};

static void assert_args(const tres *r, int i, const char *want)
{
    json_t *got = must_parse(fr_buf_str(&r->args[i]));
    json_t *exp = must_parse(want);
    if (!json_equal(got, exp))
        fail_msg("call %d arguments %s, want %s", i, fr_buf_str(&r->args[i]), want);
    json_decref(got);
    json_decref(exp);
}

static long words_of(const char *s)
{
    return count_words(s);
}

/* Checks what every reply with calls has: the finish reason, an id of the
 * protocol's form for each call, and the fragments it came in. */
static void assert_calls_shape(proto p, bool stream, const tres *r)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->finish, tool_finish[p]);
    assert_string_equal(r->text, "");
    for (int i = 0; i < r->n; i++) {
        assert_true(strncmp(r->id[i], id_prefix[p], strlen(id_prefix[p])) == 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(r->id[i], r->id[j]);
        if (stream && p != P_OLLAMA)
            assert_true(r->frags[i] >= 3);
        else
            assert_int_equal(r->frags[i], 1);
    }
    if (stream && p == P_OLLAMA)
        assert_int_equal(r->tool_chunks, 1); /* every call in one object */
    long out = 0;
    for (int i = 0; i < r->n; i++)
        out += 1 + words_of(fr_buf_str(&r->args[i]));
    assert_int_equal(r->out, out);
    assert_true(r->in > 0);
}

static const char *const loop_prompt =
    "Read the file, then count its words.\n"
    "@@call fs.read_file {\"path\": \"a.txt\"} | word_count {\"text\": \"one | two, three: "
    "\u00fcn\u00efc\u00f6d\u00e9 words and a longer tail of text\"}\n"
    "@@call fs.read_file {\"path\": \"missing.txt\"}\n";

static void test_loop(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *const tools[] = {"fs_read_file", "word_count", NULL};
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            char model[32];
            snprintf(model, sizeof model, "loop-%d-%d", p, stream);
            long in = 0, out = 0;
            json_t *msgs = first_messages(loop_prompt);

            /* Turn 1: the first line's two calls at once. */
            char *body = body_of((proto)p, stream, model, msgs, tools);
            tres r1;
            send_turn(fx, (proto)p, stream, body, &r1);
            free(body);
            assert_int_equal(r1.n, 2);
            assert_calls_shape((proto)p, stream, &r1);
            assert_string_equal(r1.name[0], "fs_read_file"); /* fs.read_file as a wire name */
            assert_string_equal(r1.name[1], "word_count");
            assert_args(&r1, 0, "{\"path\":\"a.txt\"}");
            assert_args(&r1, 1,
                        "{\"text\":\"one | two, three: \u00fcn\u00efc\u00f6d\u00e9 words and a "
                        "longer tail of text\"}");
            if (stream && p == P_OPENAI) { /* parallel calls interleaved by index */
                assert_int_equal(r1.order[0], 0);
                assert_int_equal(r1.order[1], 1);
                assert_int_equal(r1.order[2], 0);
            }
            in += r1.in;
            out += r1.out;

            /* Turn 2: with the results, the second line. */
            const char *res1[] = {"contents of a", "7"};
            const bool err1[] = {false, false};
            append_turn((proto)p, msgs, &r1, res1, err1);
            body = body_of((proto)p, stream, model, msgs, tools);
            tres r2;
            send_turn(fx, (proto)p, stream, body, &r2);
            free(body);
            assert_int_equal(r2.n, 1);
            assert_calls_shape((proto)p, stream, &r2);
            assert_string_equal(r2.name[0], "fs_read_file");
            assert_args(&r2, 0, "{\"path\":\"missing.txt\"}");
            assert_string_not_equal(r2.id[0], r1.id[0]);
            assert_string_not_equal(r2.id[0], r1.id[1]);
            in += r2.in;
            out += r2.out;
            assert_true(r2.in > r1.in); /* the results are input */

            /* Turn 3: the script is used up; the answer quotes every result. */
            const char *res2[] = {"ENOENT: no such file"};
            const bool err2[] = {true};
            append_turn((proto)p, msgs, &r2, res2, err2);
            body = body_of((proto)p, stream, model, msgs, tools);
            tres r3;
            send_turn(fx, (proto)p, stream, body, &r3);
            free(body);
            assert_int_equal(r3.status, 200);
            assert_int_equal(r3.n, 0);
            assert_string_equal(r3.finish, stop_finish[p]);
            const char *nl = strchr(r3.text, '\n');
            assert_non_null(nl);
            assert_true(nl - r3.text < 60); /* a short first line */
            assert_string_equal(nl + 1, "tool fs_read_file: contents of a\n"
                                        "tool word_count: 7\n"
                                        "tool fs_read_file error: ENOENT: no such file");
            assert_int_equal(r3.out, words_of(r3.text));
            in += r3.in;
            out += r3.out;

            /* The simulator's own counters agree with what it reported. */
            assert_int_equal(model_stat(fx->sim, model, "requests"), 3);
            assert_int_equal(model_stat(fx->sim, model, "input_tokens"), in);
            assert_int_equal(model_stat(fx->sim, model, "output_tokens"), out);
            tres_free(&r1);
            tres_free(&r2);
            tres_free(&r3);
            json_decref(msgs);
        }
    }
    fixture_free(fx);
}

/* @@forever asks for its call on every turn, with a new id each time. */
static void test_forever(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *const tools[] = {"poll", NULL};
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            json_t *msgs = first_messages("Poll until done.\n@@forever poll {\"n\": 1}");
            char *ids[6];
            for (int turn = 0; turn < 6; turn++) {
                char *body = body_of((proto)p, stream, "forever", msgs, tools);
                tres r;
                send_turn(fx, (proto)p, stream, body, &r);
                free(body);
                assert_int_equal(r.n, 1);
                assert_calls_shape((proto)p, stream, &r);
                assert_string_equal(r.name[0], "poll");
                assert_args(&r, 0, "{\"n\":1}");
                ids[turn] = fr_xstrdup(r.id[0]);
                for (int k = 0; k < turn; k++)
                    assert_string_not_equal(ids[k], ids[turn]);
                const char *res[] = {"not yet"};
                const bool err[] = {false};
                append_turn((proto)p, msgs, &r, res, err);
                tres_free(&r);
            }
            for (int k = 0; k < 6; k++)
                free(ids[k]);
            json_decref(msgs);
        }
    }
    fixture_free(fx);
}

/* NAME goes out as the offered wire name it maps to (exactly, after its
 * characters are made legal, or with the hash a collision or a cut adds),
 * and as written when nothing offered matches; arguments that are not JSON
 * go out as written. */
static void test_names(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    char long_name[71];
    memset(long_name, 'a', 70);
    long_name[70] = '\0';
    char hashed_dot[32], hashed_slash[32], hashed_long[80];
    snprintf(hashed_dot, sizeof hashed_dot, "x_y_%06x",
             (unsigned)(fr_fnv1a64("x.y", 3, FR_FNV1A64_BASIS) & 0xffffff));
    snprintf(hashed_slash, sizeof hashed_slash, "x_y_%06x",
             (unsigned)(fr_fnv1a64("x/y", 3, FR_FNV1A64_BASIS) & 0xffffff));
    snprintf(hashed_long, sizeof hashed_long, "%.57s_%06x", long_name,
             (unsigned)(fr_fnv1a64(long_name, 70, FR_FNV1A64_BASIS) & 0xffffff));
    const char *const tools[] = {"srv_tool", hashed_slash, hashed_dot, hashed_long, NULL};
    char *prompt = fr_xasprintf("@@call x.y {} | x/y {} | srv.tool {\"a\": [1, 2]} | "
                                "nosuch.tool {\"q\": \"?\"} | %s | srv_tool {not json",
                                long_name);
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            json_t *msgs = first_messages(prompt);
            char *body = body_of((proto)p, stream, "names", msgs, tools);
            tres r;
            send_turn(fx, (proto)p, stream, body, &r);
            free(body);
            assert_int_equal(r.status, 200);
            assert_int_equal(r.n, 6);
            assert_string_equal(r.name[0], hashed_dot);
            assert_string_equal(r.name[1], hashed_slash);
            assert_string_equal(r.name[2], "srv_tool");
            assert_string_equal(r.name[3], "nosuch.tool"); /* offered nowhere: as written */
            assert_string_equal(r.name[4], hashed_long);
            assert_string_equal(r.name[5], "srv_tool");
            assert_args(&r, 2, "{\"a\":[1,2]}");
            assert_args(&r, 4, "{}"); /* no arguments: an empty object */
            assert_string_equal(fr_buf_str(&r.args[5]), "{not json");
            tres_free(&r);
            json_decref(msgs);
        }
    }
    free(prompt);
    fixture_free(fx);
}

/* Without @@ lines a request offering tools gets the usual text; @@ lines
 * that do not parse are a 400 in the protocol's error shape. */
static void test_plain_and_bad(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *const tools[] = {"word_count", NULL};
    json_t *msgs = first_messages("Count the words of nothing in particular.");
    char *want = fr_sim_reply_text("plain", msgs);
    for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
        for (int stream = 0; stream < 2; stream++) {
            char *body = body_of((proto)p, stream, "plain", msgs, tools);
            tres r;
            send_turn(fx, (proto)p, stream, body, &r);
            free(body);
            assert_int_equal(r.n, 0);
            assert_string_equal(r.text, want);
            assert_string_equal(r.finish, stop_finish[p]);
            assert_int_equal(r.out, words_of(want));
            tres_free(&r);
        }
    }
    free(want);
    json_decref(msgs);

    const char *bad[] = {"@@call {\"a\": 1}", "@@call a {} b {}", "@@forever a {} | b {}",
                         "text\n  @@call | a {}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int p = P_OPENAI; p <= P_ANTHROPIC; p++) {
            json_t *m = first_messages(bad[i]);
            char *body = body_of((proto)p, false, "bad", m, tools);
            tres r;
            send_turn(fx, (proto)p, false, body, &r);
            assert_int_equal(r.status, 400);
            assert_non_null(strstr(r.raw, "Tool script"));
            free(body);
            tres_free(&r);
            json_decref(m);
        }
    }
    fixture_free(fx);
}

/* Faults that make the content win over the script's calls; the others
 * apply to the calls: `error` stops a stream of them halfway. */
static void test_faults(void **state)
{
    (void)state;
    fixture *fx = fixture_new();
    const char *const tools[] = {"t", NULL};
    json_t *msgs = first_messages("FAULT: toolcall\n@@call t {\"a\": \"b\"}");
    char *body = body_of(P_OPENAI, false, "faults", msgs, tools);
    tres r;
    send_turn(fx, P_OPENAI, false, body, &r);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.name[0], "lookup"); /* the fault's tool, as without a script */
    tres_free(&r);
    free(body);
    json_decref(msgs);

    msgs = first_messages("FAULT: error\n@@call t {\"a\": \"a longer value than sixteen\"}");
    body = body_of(P_OPENAI, true, "faults", msgs, tools);
    response raw = {0};
    roundtrip(fx, "POST", proto_paths[P_OPENAI], body, &raw);
    assert_int_equal(raw.status, 200);
    assert_non_null(strstr(raw.body, "\"id\":\"call_1_0\""));
    assert_non_null(strstr(raw.body, "data: {\"error\""));
    assert_null(strstr(raw.body, "\"finish_reason\":\"tool_calls\""));
    assert_null(strstr(raw.body, "sixteen")); /* the last fragment never came */
    response_free(&raw);
    free(body);
    json_decref(msgs);
    fixture_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loop),   cmocka_unit_test(test_forever),
        cmocka_unit_test(test_names),  cmocka_unit_test(test_plain_and_bad),
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
