/* flowrun-sim: one chat reply, whatever the protocol. Admits a request
 * against its model's limit, picks its fault (prompt line or the model's
 * script), makes the reply content and its token counts, and paces it on
 * the connection's timer; sim_proto.c decides how each part looks. */

#include "engine/sim/sim_int.h"

#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FAULT_PREFIX "FAULT: "
#define REPLY_PREFIX "REPLY: "

typedef fr_sim_conn conn;
typedef fr_sim_reply reply;

/* Gives back the reply's slot and memory; idempotent. */
void fr_sim_reply_release(reply *r)
{
    if (r->active && r->model)
        r->model->in_flight--;
    free(r->text);
    free(r->tool);
    fr_sim_calls_free(r->calls, r->ncalls);
    free(r->pieces);
    memset(r, 0, sizeof *r);
}

static void finish_reply(conn *c)
{
    bool keep_alive = c->rep.keep_alive;
    fr_sim_reply_release(&c->rep);
    if (!keep_alive)
        fr_sim_conn_drain(c);
}

/* Adds a completed reply's reported usage to its model's totals. */
static void account(const reply *r)
{
    if (r->fault == FR_SIM_FAULT_NOUSAGE)
        return;
    r->model->input_tokens += r->prompt_tokens;
    r->model->output_tokens += r->completion_tokens;
}

static void send_full_reply(conn *c)
{
    reply *r = &c->rep;
    if (r->fault == FR_SIM_FAULT_ERROR) {
        fr_sim_proto_send_error(c, r->proto, 500,
                                "The server had an error while generating the reply "
                                "(simulated fault).",
                                r->keep_alive);
        finish_reply(c);
        return;
    }
    size_t len;
    char *body = fr_sim_proto_full(r, uv_now(c->sim->loop), &len);
    if (r->fault == FR_SIM_FAULT_CUT) {
        /* The head promises the whole body; half of it comes, then the close. */
        fr_buf out;
        fr_buf_init(&out, 0);
        fr_buf_printf(&out,
                      "HTTP/1.1 200 OK\r\nServer: flowrun-sim\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      len);
        fr_buf_append(&out, body, len / 2);
        fr_sim_conn_write_buf(c, &out);
        r->keep_alive = false;
    } else if (r->fault == FR_SIM_FAULT_BADJSON) {
        fr_sim_send(c, 200, "", "application/json", body, len / 2, r->keep_alive);
    } else {
        fr_sim_send(c, 200, "", "application/json", body, len, r->keep_alive);
        account(r);
    }
    free(body);
    finish_reply(c);
}

static void next_piece(reply *r)
{
    if (r->ncalls > 0) { /* a tool-call stream counts frames */
        r->piece_end = r->pos + 1;
        r->piece_words = (int)r->pieces[r->pos].words;
        return;
    }
    long words;
    r->piece_end = fr_sim_scan_words(r->text, r->limit, r->pos, FR_SIM_PIECE_WORDS, &words);
    r->piece_words = (int)words;
}

static void on_reply_timer(uv_timer_t *t);

/* Ends a stream by its fault: cut (close before the terminator), an error
 * event, or the protocol's normal close. */
static void stream_end(conn *c, fr_buf *out)
{
    reply *r = &c->rep;
    if (r->fault == FR_SIM_FAULT_CUT) {
        fr_sim_conn_write_buf(c, out);
        r->keep_alive = false;
        finish_reply(c);
        return;
    }
    if (r->fault == FR_SIM_FAULT_ERROR) {
        fr_sim_proto_stream_error(r, out);
    } else {
        fr_sim_proto_stream_close(r, uv_now(c->sim->loop), out);
        if (r->fault != FR_SIM_FAULT_BADJSON)
            account(r);
    }
    if (r->chunked)
        fr_buf_puts(out, "0\r\n\r\n");
    fr_sim_conn_write_buf(c, out);
    finish_reply(c); /* without chunked framing, keep_alive is false: this closes */
}

/* Sends the pending piece, then every piece already due; arms the timer for
 * the next one, or ends the stream. */
static void stream_pump(conn *c)
{
    reply *r = &c->rep;
    fr_buf out;
    fr_buf_init(&out, 0);
    for (;;) {
        bool first = !r->started;
        int copies = first && r->fault == FR_SIM_FAULT_REPEAT ? FR_SIM_REPEATS : 1;
        if (first) {
            r->first_words = r->piece_words;
            r->started = true;
        }
        if (r->ncalls > 0)
            fr_sim_proto_tool_piece(r, &out, &r->pieces[r->pos], first);
        for (int k = 0; k < copies && r->ncalls == 0; k++)
            fr_sim_proto_stream_piece(r, &out, r->text + r->pos, r->piece_end - r->pos, first);
        r->words_done += r->piece_words;
        r->pos = r->piece_end;
        if (r->fault == FR_SIM_FAULT_BADJSON && !r->badjson_sent) {
            fr_sim_proto_stream_badjson(r, &out);
            r->badjson_sent = true;
        }
        if (r->pos >= r->limit)
            break;
        next_piece(r);
        double due = 0;
        if (r->tokens_per_s > 0)
            due = r->latency_ms + 1000.0 *
                                      (double)(r->words_done + r->piece_words - r->first_words) /
                                      r->tokens_per_s;
        uint64_t at = r->t0 + (uint64_t)ceil(due);
        uint64_t now = uv_now(c->sim->loop);
        if (at > now) {
            fr_sim_conn_write_buf(c, &out);
            uv_timer_start(&c->timer, on_reply_timer, at - now, 0);
            return;
        }
    }
    stream_end(c, &out);
}

static void on_reply_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->closing || !c->rep.active)
        return;
    if (c->rep.stream)
        stream_pump(c);
    else
        send_full_reply(c);
    if (!c->closing && !c->draining)
        fr_sim_conn_process(c);
}

/* Reads the FAULT: line of the request into `*fault` (-1 when none).
 * Returns false for an unknown kind, with `msg` filled. */
static bool prompt_fault(const json_t *messages, int *fault, char *msg, size_t msg_size)
{
    *fault = -1;
    char *line = fr_sim_prompt_line(messages, FAULT_PREFIX);
    if (!line)
        return true;
    const char *p = line;
    size_t n = strlen(p);
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    *fault = fr_sim_fault_parse(p, n);
    if (*fault < 0)
        snprintf(
            msg, msg_size,
            "Unknown FAULT kind '%.*s' (use ok, 429, 500, 503, 529, cut, hang, badjson, "
            "nousage, badutf8, error, repeat, badschema, echokey, echookey, refusal, toolcall or "
            "thinking).",
            (int)(n > 64 ? 64 : n), p);
    free(line);
    return *fault >= 0;
}

/* The key the request sent, without its "Bearer " scheme ("" if none). */
static const char *sent_key(const conn *c)
{
    const char *key = c->credential;
    return strncasecmp(key, "Bearer ", 7) == 0 ? key + 7 : key;
}

/* Answers `echokey`: a 401 whose message quotes the key the request sent
 * (without its "Bearer " scheme), as some providers do. */
static void send_echo_key(conn *c, fr_sim_proto proto)
{
    const char *key = sent_key(c);
    char *msg = key[0] ? fr_xasprintf("Incorrect API key provided: %s. You can find your API key "
                                      "in your account settings (simulated fault).",
                                      key)
                       : fr_xstrdup("No API key provided (simulated fault).");
    fr_sim_proto_send_error(c, proto, 401, msg, c->keep_alive);
    free(msg);
}

/* Answers a status fault at once, in the protocol's error shape. */
static void send_status_fault(conn *c, fr_sim_proto proto, fr_sim_fault f)
{
    switch (f) {
    case FR_SIM_FAULT_ECHOKEY:
        send_echo_key(c, proto);
        break;
    case FR_SIM_FAULT_429:
        fr_sim_proto_send_error(c, proto, 429,
                                "Rate limit reached (simulated fault). Please try again in 1s.",
                                c->keep_alive);
        break;
    case FR_SIM_FAULT_503:
        fr_sim_proto_send_error(c, proto, 503,
                                "The server is temporarily unavailable (simulated fault).",
                                c->keep_alive);
        break;
    case FR_SIM_FAULT_529:
        fr_sim_proto_send_error(c, proto, 529, "Overloaded (simulated fault).", c->keep_alive);
        break;
    default:
        fr_sim_proto_send_error(c, proto, 500,
                                "The server had an error processing your request (simulated "
                                "fault).",
                                c->keep_alive);
        break;
    }
}

static bool is_status_fault(fr_sim_fault f)
{
    return f == FR_SIM_FAULT_429 || f == FR_SIM_FAULT_500 || f == FR_SIM_FAULT_503 ||
           f == FR_SIM_FAULT_529 || f == FR_SIM_FAULT_ECHOKEY;
}

/* Puts the marker of the bad bytes after the first letter of the text (so
 * inside a word, and inside a string of JSON). */
static void insert_bad_utf8(reply *r)
{
    size_t at = 0;
    while (at < r->len && !((r->text[at] | 0x20) >= 'a' && (r->text[at] | 0x20) <= 'z'))
        at++;
    at = at < r->len ? at + 1 : 0;
    size_t ml = sizeof FR_SIM_BADUTF8_MARK - 1;
    char *t = fr_xmalloc(r->len + ml + 1);
    memcpy(t, r->text, at);
    memcpy(t + at, FR_SIM_BADUTF8_MARK, ml);
    memcpy(t + at + ml, r->text + at, r->len - at + 1);
    free(r->text);
    r->text = t;
    r->len += ml;
}

/* Returns the first string of `v` (borrowed) in document order, or NULL. */
static json_t *first_string(json_t *v)
{
    if (json_is_string(v))
        return v;
    const char *k;
    size_t i;
    json_t *sub, *hit;
    if (json_is_object(v)) {
        json_object_foreach(v, k, sub)
        {
            if ((hit = first_string(sub)))
                return hit;
        }
    }
    if (json_is_array(v)) {
        json_array_foreach(v, i, sub)
        {
            if ((hit = first_string(sub)))
                return hit;
        }
    }
    return NULL;
}

/* `echookey`: puts the key the request sent (`key`, borrowed) inside a
 * successful reply, as a model repeating what it was shown would: at the
 * start of a text reply, or at the start of the first string value of a
 * JSON one (nowhere when it has no string). Replaces r->text. */
static void echo_key_in_reply(reply *r, const char *key, fr_sim_format format)
{
    if (!key[0])
        return;
    char *t = NULL;
    if (format == FR_SIM_TEXT) {
        t = fr_xasprintf("Your key is %s. %s", key, r->text);
    } else {
        json_t *doc = json_loads(r->text, 0, NULL);
        json_t *s = first_string(doc);
        if (s) {
            char *v = fr_xasprintf("%s %s", key, json_string_value(s));
            json_string_set(s, v);
            free(v);
            t = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
        }
        json_decref(doc);
    }
    if (!t)
        return;
    free(r->text);
    r->text = t;
}

/* Faults that make the content themselves: on a scripted turn they win
 * over the script's calls (the others apply to the calls as to text). */
static bool makes_content(fr_sim_fault f)
{
    return f == FR_SIM_FAULT_TOOLCALL || f == FR_SIM_FAULT_THINKING || f == FR_SIM_FAULT_REFUSAL ||
           f == FR_SIM_FAULT_REPEAT || f == FR_SIM_FAULT_BADUTF8 || f == FR_SIM_FAULT_ECHOOKEY ||
           f == FR_SIM_FAULT_BADSCHEMA;
}

/* Makes the reply the script's tool calls (taken from `t`): never cut by
 * max_tokens; streamed as the protocol's frames, half of them under `cut`
 * and `error`. */
static void take_calls(reply *r, fr_sim_turn *t)
{
    r->calls = t->calls;
    r->ncalls = t->ncalls;
    t->calls = NULL;
    t->ncalls = 0;
    r->text = fr_xstrdup("");
    for (size_t i = 0; i < r->ncalls; i++)
        r->completion_tokens += r->calls[i].tokens;
    r->paced_words = r->completion_tokens;
    fr_sim_proto_tool_plan(r);
    r->limit = r->npieces;
    if (r->fault == FR_SIM_FAULT_CUT || r->fault == FR_SIM_FAULT_ERROR)
        r->limit = r->npieces > 1 ? r->npieces / 2 : 1;
}

/* The text reply to `q` of model `e`: the generated one, after "PASS " or
 * "FAIL " when the model grades the prompt's @@difficulty line (a REPLY:
 * line is used as is). */
static char *graded_text(const fr_sim_entry *e, const fr_sim_req *q)
{
    char *text = fr_sim_reply_text(q->model, q->messages);
    char *scripted = fr_sim_prompt_line(q->messages, REPLY_PREFIX);
    int verdict =
        scripted ? -1 : fr_sim_verdict(q->model, e->has_skill, e->skill, e->noise, q->messages);
    free(scripted);
    if (verdict >= 0) {
        char *graded = fr_xasprintf("%s %s", verdict ? "PASS" : "FAIL", text);
        free(text);
        text = graded;
    }
    return text;
}

/* Makes the content and its counts for request `q` under the reply's fault;
 * `key` (borrowed) is the key the request sent, for `echookey`; `turn` is what
 * the tool script plays (its calls or final text may be taken). */
static void make_content(reply *r, const fr_sim_req *q, const char *key, fr_sim_turn *turn)
{
    size_t prompt_bytes = 0;
    size_t i;
    const json_t *m;
    json_array_foreach(q->messages, i, m)
    {
        prompt_bytes +=
            fr_sim_content_text(json_object_get(m, "content"), NULL) + fr_sim_tools_bytes(m);
    }
    r->prompt_tokens = (long)((prompt_bytes + 3) / 4);
    if (turn->ncalls > 0 && !makes_content(r->fault)) {
        take_calls(r, turn);
        return;
    }
    if (q->format == FR_SIM_TEXT && turn->text) {
        r->text = turn->text; /* the script is used up: the answer quotes the results */
        turn->text = NULL;
    } else if (q->format == FR_SIM_TEXT)
        r->text = graded_text(r->model, q);
    else if (!(r->text = fr_sim_prompt_line(q->messages, REPLY_PREFIX))) /* used as is */
        r->text =
            fr_sim_gen_json(q->model, q->messages, q->schema, r->fault == FR_SIM_FAULT_BADSCHEMA);
    if (r->fault == FR_SIM_FAULT_ECHOOKEY)
        echo_key_in_reply(r, key, q->format);
    r->tool = fr_xstrdup(q->tool);
    if (r->fault == FR_SIM_FAULT_TOOLCALL) {
        free(r->text);
        r->text = fr_xstrdup(FR_SIM_TOOL_ARGS);
        if (r->proto == FR_SIM_ANTHROPIC) { /* a tool_use block of the unoffered tool */
            free(r->tool);
            r->tool = fr_xstrdup(FR_SIM_TOOL_NAME);
        }
    }
    r->len = strlen(r->text);
    long words;
    size_t end = fr_sim_scan_words(r->text, r->len, 0,
                                   q->max_tokens > 0 ? (long)q->max_tokens : LONG_MAX, &words);
    if (end < r->len) {
        r->len = end;
        r->text[end] = '\0';
        r->length_cut = true;
    }
    if (r->fault == FR_SIM_FAULT_REFUSAL && words > 1) {
        /* The filter stops the reply halfway, as real ones do mid-stream. */
        r->len = fr_sim_scan_words(r->text, r->len, 0, words / 2, &words);
        while (r->len > 0 && r->text[r->len - 1] == ' ')
            r->len--;
        r->text[r->len] = '\0';
    }
    r->completion_tokens = words > 0 ? words : 1;
    r->paced_words = r->completion_tokens;
    if (r->fault == FR_SIM_FAULT_REPEAT) {
        long first;
        size_t plen = fr_sim_scan_words(r->text, r->len, 0, FR_SIM_PIECE_WORDS, &first);
        r->completion_tokens += first * (FR_SIM_REPEATS - 1);
        if (!r->stream) { /* the same text a stream adds up to */
            fr_buf t;
            fr_buf_init(&t, 0);
            for (int k = 0; k < FR_SIM_REPEATS; k++)
                fr_buf_append(&t, r->text, plen);
            fr_buf_append(&t, r->text + plen, r->len - plen);
            free(r->text);
            r->len = t.len;
            r->text = fr_buf_take(&t);
        }
    }
    if (r->fault == FR_SIM_FAULT_BADUTF8)
        insert_bad_utf8(r);
    r->limit = r->len;
    if (r->fault == FR_SIM_FAULT_CUT || r->fault == FR_SIM_FAULT_ERROR) {
        r->limit = r->len / 2;
        while (r->limit > 0 && ((unsigned char)r->text[r->limit] & 0xC0) == 0x80)
            r->limit--; /* not inside a UTF-8 sequence */
    }
}

/* Handles one chat request; see sim_int.h. */
bool fr_sim_chat_handle(conn *c, fr_sim_proto proto, const char *body, size_t len)
{
    fr_sim *s = c->sim;
    fr_sim_req q = {0};
    fr_sim_turn turn = {0};
    bool pending = false;
    char msg[512];
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, 0, &jerr);
    if (!doc) {
        snprintf(msg, sizeof msg, "We could not parse the JSON body of your request: %s",
                 jerr.text);
        fr_sim_proto_send_error(c, proto, 400, msg, c->keep_alive);
        goto cleanup;
    }
    int pf;
    double difficulty;
    if (fr_sim_proto_parse(proto, doc, &q, msg, sizeof msg) != 0 ||
        !prompt_fault(q.messages, &pf, msg, sizeof msg) ||
        fr_sim_difficulty(q.messages, &difficulty, msg, sizeof msg) < 0 ||
        fr_sim_tools_turn(&q, proto, &turn, msg, sizeof msg) != 0) {
        fr_sim_proto_send_error(c, proto, 400, msg, c->keep_alive);
        goto cleanup;
    }

    fr_sim_entry *e = fr_sim_entry_get(s, q.model);
    double latency = e->configured ? e->latency_ms : s->dflt_latency_ms;
    double tps = e->configured ? e->tokens_per_s : s->dflt_tokens_per_s;
    int max_conc = e->configured ? e->max_concurrent : s->dflt_max_concurrent;
    e->requests++;
    if (!s->first_request_us) {
        uv_timeval64_t tv;
        if (uv_gettimeofday(&tv) == 0)
            s->first_request_us = (long long)tv.tv_sec * 1000000 + tv.tv_usec;
    }
    if (proto == FR_SIM_OPENAI && e->configured && e->refuse_max_tokens &&
        json_object_get(doc, "max_tokens")) {
        fr_sim_proto_send_error(c, proto, 400,
                                "Unsupported parameter: 'max_tokens' is not supported with this "
                                "model. Use 'max_completion_tokens' instead.",
                                c->keep_alive);
        goto cleanup;
    }
    /* A client that honours Retry-After sends nothing before it passes. */
    uint64_t now = uv_now(s->loop);
    if (now < e->retry_until)
        e->early++;
    c->retry_after_s = e->retry_after_s > 0 ? e->retry_after_s : 1;
    e->in_flight++;
    if (e->in_flight > e->peak)
        e->peak = e->in_flight;
    if (max_conc > 0 && e->in_flight > max_conc) {
        e->in_flight--;
        e->rejected++;
        fr_log(FR_LOG_DEBUG, "sim", "reject conn=%lu model=%s in_flight=%ld max=%d", c->id, q.model,
               e->in_flight, max_conc);
        snprintf(msg, sizeof msg,
                 "Rate limit reached for %.200s: %d requests in flight allowed. Please try "
                 "again in 1s.",
                 q.model, max_conc);
        fr_sim_proto_send_error(c, proto, 429, msg, c->keep_alive);
        e->retry_until = now + (uint64_t)(c->retry_after_s * 1000.0);
        goto cleanup;
    }
    fr_sim_fault fault = fr_sim_entry_next_fault(e);
    if (pf >= 0)
        fault = (fr_sim_fault)pf;
    if (fault == FR_SIM_FAULT_BADSCHEMA && q.format == FR_SIM_TEXT)
        fault = FR_SIM_FAULT_OK; /* nothing to violate */
    if (fault != FR_SIM_FAULT_OK)
        e->faults++;
    if (is_status_fault(fault)) {
        e->in_flight--;
        fr_log(FR_LOG_DEBUG, "sim", "fault conn=%lu model=%s fault=%s", c->id, q.model,
               fr_sim_fault_name(fault));
        send_status_fault(c, proto, fault);
        if (fault == FR_SIM_FAULT_429 || fault == FR_SIM_FAULT_503)
            e->retry_until = now + (uint64_t)(c->retry_after_s * 1000.0); /* as Retry-After says */
        goto cleanup;
    }

    reply *r = &c->rep;
    memset(r, 0, sizeof *r);
    r->active = true;
    r->model = e;
    r->proto = proto;
    r->fault = fault;
    r->stream = q.stream;
    r->include_usage = q.include_usage;
    r->chunked = c->minor >= 1;
    r->keep_alive = c->keep_alive && (!r->stream || r->chunked);
    r->latency_ms = latency > 0 ? latency : 0;
    r->tokens_per_s = tps > 0 ? tps : 0;
    r->t0 = uv_now(s->loop);
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "%s%llu", proto == FR_SIM_ANTHROPIC ? "msg_sim" : "chatcmpl-sim",
             ++s->next_reply_id);
    make_content(r, &q, sent_key(c), &turn);
    fr_log(FR_LOG_DEBUG, "sim",
           "request conn=%lu id=%s model=%s stream=%d prompt_tokens=%ld completion_tokens=%ld "
           "length_cut=%d fault=%s",
           c->id, r->id, q.model, r->stream, r->prompt_tokens, r->completion_tokens, r->length_cut,
           fr_sim_fault_name(fault));
    pending = true;
    if (fault == FR_SIM_FAULT_HANG)
        goto cleanup; /* no answer and no timer: the slot is held until the client leaves */

    uint64_t delay;
    if (r->stream) {
        fr_buf head;
        fr_buf_init(&head, 0);
        fr_buf_printf(&head,
                      "HTTP/1.1 200 OK\r\nServer: flowrun-sim\r\nContent-Type: %s\r\n"
                      "Cache-Control: no-cache\r\n%sConnection: %s\r\n\r\n",
                      fr_sim_proto_stream_type(proto),
                      r->chunked ? "Transfer-Encoding: chunked\r\n" : "",
                      r->keep_alive ? "keep-alive" : "close");
        fr_sim_proto_stream_open(r, &head);
        fr_sim_conn_write_buf(c, &head);
        next_piece(r);
        delay = (uint64_t)ceil(r->latency_ms);
    } else {
        double ms = r->latency_ms;
        if (r->tokens_per_s > 0)
            ms += 1000.0 * (double)r->paced_words / r->tokens_per_s;
        delay = (uint64_t)ceil(ms);
    }
    uv_timer_start(&c->timer, on_reply_timer, delay, 0);
cleanup:
    fr_sim_turn_close(&turn);
    json_decref(q.messages);
    json_decref(doc);
    return pending;
}
