/* flowrun-sim: the HTTP/1.1 server, the request router and the reply
 * generator. One uv_tcp listener; per connection a uv_tcp and a uv_timer that
 * paces the reply in progress. Talks only to engine/util. */

#include "tests/sim/sim.h"

#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEAD      (64u * 1024u)        /* request line + headers */
#define MAX_BODY      (8u * 1024u * 1024u) /* request body */
#define MAX_PENDING   (MAX_HEAD + MAX_BODY + 64u * 1024u)
#define MAX_TARGET    2048
#define READ_BUF      (64 * 1024)
#define PIECE_WORDS   3 /* words per streamed chunk */
#define DEFAULT_LAT   50.0
#define DEFAULT_TPS   200.0
#define REPLY_PREFIX  "REPLY: "
#define MIN_GEN_WORDS 12
#define MAX_GEN_WORDS 40

/* Config and counters of one model name, kept until the simulator is freed
 * so a reply in flight can always point at its entry. */
typedef struct model_ent {
    struct model_ent *next;
    char *name;
    bool configured; /* set by fr_sim_set_model; else the default applies */
    double latency_ms;
    double tokens_per_s;
    int max_concurrent;
    long requests;
    long peak;
    long rejected;
    long in_flight;
} model_ent;

/* The chat reply a connection is producing. Owns its strings. */
typedef struct reply {
    bool active;
    bool stream;
    bool include_usage;
    bool chunked;    /* chunked framing; otherwise the connection closes after */
    bool keep_alive; /* the connection stays open afterwards */
    bool started;    /* the first piece went out */
    model_ent *model;
    char *text; /* the (possibly cut) reply text */
    size_t len;
    size_t pos;       /* next byte of text to stream */
    size_t piece_end; /* end of the next piece */
    int piece_words;
    long words_done;  /* words streamed so far */
    long first_words; /* words in the first piece */
    long prompt_tokens;
    long completion_tokens;
    const char *finish; /* "stop" or "length" */
    char id[48];
    long long created;
    uint64_t t0; /* uv_now at arrival */
    double latency_ms;
    double tokens_per_s;
} reply;

typedef struct conn {
    struct conn *prev, *next;
    fr_sim *sim;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    int open_handles;
    bool closing;  /* uv_close was called */
    bool draining; /* last response queued; shutting down */
    unsigned long id;
    fr_buf in; /* bytes received and not yet consumed */
    /* Parse state of the request at the front of `in`. */
    bool head_done;
    size_t head_len;
    size_t body_len;
    size_t scan; /* where to resume looking for the end of the head */
    bool keep_alive;
    bool expect_continue;
    bool sent_continue;
    bool have_length; /* the request carried Content-Length */
    int minor;        /* HTTP/1.<minor> */
    char method[16];
    char path[MAX_TARGET];
    reply rep;
} conn;

struct fr_sim {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    bool closing;
    bool listener_closed;
    double dflt_latency_ms;
    double dflt_tokens_per_s;
    int dflt_max_concurrent;
    model_ent *models;
    model_ent **models_tail;
    long connections;
    unsigned long next_conn_id;
    unsigned long long next_reply_id;
    conn *conns;
    char rbuf[READ_BUF]; /* shared: reads are delivered one at a time */
};

typedef struct wreq {
    uv_write_t req;
    char *data;
} wreq;

static const char *const vocabulary[] = {
    "amber",   "anchor",  "apple",  "arrow",  "basil",  "beacon", "birch",   "bridge",
    "cable",   "candle",  "canyon", "cedar",  "cipher", "cloud",  "comet",   "copper",
    "coral",   "delta",   "drift",  "ember",  "falcon", "fern",   "flint",   "forest",
    "garden",  "glacier", "harbor", "hazel",  "island", "ivory",  "jasper",  "kernel",
    "lantern", "lemon",   "linen",  "maple",  "meadow", "mirror", "nectar",  "orbit",
    "pebble",  "pepper",  "pillar", "planet", "prism",  "quartz", "raven",   "ribbon",
    "river",   "saddle",  "signal", "silver", "spruce", "stone",  "thistle", "timber",
    "tunnel",  "valley",  "velvet", "willow", "window", "yarrow", "zephyr",  "summit",
};

/* ---- reply generation ---------------------------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Appends the text of a message's content (a string, or an array of parts
 * whose "text" members count) to `out`, or only measures it when `out` is
 * NULL. Returns the number of bytes. */
static size_t content_text(const json_t *content, fr_buf *out)
{
    if (json_is_string(content)) {
        if (out)
            fr_buf_append(out, json_string_value(content), json_string_length(content));
        return json_string_length(content);
    }
    size_t n = 0;
    if (json_is_array(content)) {
        size_t i;
        const json_t *part;
        json_array_foreach(content, i, part)
        {
            const json_t *text = json_object_get(part, "text");
            if (json_is_string(text)) {
                if (out)
                    fr_buf_append(out, json_string_value(text), json_string_length(text));
                n += json_string_length(text);
            }
        }
    }
    return n;
}

/* Returns the REPLY: line of the last user message as an owned string, or
 * NULL when there is none. */
static char *scripted_reply(const json_t *messages)
{
    const json_t *last = NULL;
    size_t i;
    const json_t *msg;
    json_array_foreach(messages, i, msg)
    {
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (role && strcmp(role, "user") == 0)
            last = msg;
    }
    if (!last)
        return NULL;
    fr_buf text;
    fr_buf_init(&text, 0);
    content_text(json_object_get(last, "content"), &text);
    char *found = NULL;
    const char *p = fr_buf_str(&text);
    const char *end = p + text.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        size_t plen = strlen(REPLY_PREFIX);
        if ((size_t)(line_end - p) >= plen && memcmp(p, REPLY_PREFIX, plen) == 0) {
            const char *r = p + plen;
            const char *re = line_end;
            if (re > r && re[-1] == '\r')
                re--;
            found = fr_xstrndup(r, (size_t)(re - r));
            break;
        }
        p = eol ? eol + 1 : end;
    }
    fr_buf_close(&text);
    return found;
}

/* The generated text: "<model> says: " and 12..40 words from a PRNG seeded by
 * an FNV-1a hash of the model and every message content. */
char *fr_sim_reply_text(const char *model, const json_t *messages)
{
    char *scripted = scripted_reply(messages);
    if (scripted)
        return scripted;
    uint64_t h = fnv1a(14695981039346656037ull, model, strlen(model));
    size_t i;
    const json_t *msg;
    fr_buf scratch;
    fr_buf_init(&scratch, 0);
    json_array_foreach(messages, i, msg)
    {
        fr_buf_reset(&scratch);
        content_text(json_object_get(msg, "content"), &scratch);
        h = fnv1a(h, "", 1); /* separator, so ["ab"] and ["a","b"] differ */
        h = fnv1a(h, fr_buf_str(&scratch), scratch.len);
    }
    fr_buf_close(&scratch);
    uint64_t state = h;
    size_t nvocab = sizeof vocabulary / sizeof vocabulary[0];
    int nwords = MIN_GEN_WORDS + (int)(splitmix64(&state) % (MAX_GEN_WORDS - MIN_GEN_WORDS + 1));
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out, "%s says:", model);
    for (int w = 0; w < nwords; w++)
        fr_buf_printf(&out, " %s", vocabulary[splitmix64(&state) % nvocab]);
    fr_buf_puts(&out, ".");
    return fr_buf_take(&out);
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Scans up to `max_words` words of text[pos..len). Returns the end offset,
 * after trailing whitespace when nothing follows it; `*words` gets the count. */
static size_t scan_words(const char *text, size_t len, size_t pos, long max_words, long *words)
{
    size_t i = pos;
    long n = 0;
    while (n < max_words) {
        while (i < len && is_ws(text[i]))
            i++;
        if (i == len)
            break;
        while (i < len && !is_ws(text[i]))
            i++;
        n++;
    }
    size_t j = i;
    while (j < len && is_ws(text[j]))
        j++;
    if (j == len)
        i = len;
    *words = n;
    return i;
}

/* ---- models and counters ------------------------------------------------- */

static model_ent *find_model(const fr_sim *s, const char *name)
{
    for (model_ent *m = s->models; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static model_ent *get_model(fr_sim *s, const char *name)
{
    model_ent *m = find_model(s, name);
    if (m)
        return m;
    m = fr_xcalloc(1, sizeof *m);
    m->name = fr_xstrdup(name);
    *s->models_tail = m;
    s->models_tail = &m->next;
    return m;
}

static bool model_seen(const model_ent *m)
{
    return m->requests > 0 || m->in_flight > 0;
}

/* Sets one model's behaviour, or the default when m->name is NULL. */
void fr_sim_set_model(fr_sim *s, const fr_sim_model *m)
{
    if (!s || !m)
        return;
    if (!m->name) {
        s->dflt_latency_ms = m->latency_ms;
        s->dflt_tokens_per_s = m->tokens_per_s;
        s->dflt_max_concurrent = m->max_concurrent;
        return;
    }
    model_ent *e = get_model(s, m->name);
    e->configured = true;
    e->latency_ms = m->latency_ms;
    e->tokens_per_s = m->tokens_per_s;
    e->max_concurrent = m->max_concurrent;
}

/* Peak in flight for `model` (borrowed), or -1 if it has had no request. */
int fr_sim_peak(const fr_sim *s, const char *model)
{
    const model_ent *m = s && model ? find_model(s, model) : NULL;
    return m && model_seen(m) ? (int)m->peak : -1;
}

/* Returns owned JSON with the counters; see sim.h. */
json_t *fr_sim_stats(const fr_sim *s)
{
    if (!s)
        return NULL;
    json_t *models = json_object();
    for (const model_ent *m = s->models; m; m = m->next) {
        if (!model_seen(m))
            continue;
        json_object_set_new(models, m->name,
                            json_pack("{s:I,s:I,s:I,s:I}", "requests", (json_int_t)m->requests,
                                      "peak_in_flight", (json_int_t)m->peak, "rejected",
                                      (json_int_t)m->rejected, "in_flight",
                                      (json_int_t)m->in_flight));
    }
    return json_pack("{s:I,s:o}", "connections", (json_int_t)s->connections, "models", models);
}

/* Zeroes the counters; see sim.h. */
void fr_sim_reset(fr_sim *s)
{
    if (!s)
        return;
    s->connections = 0;
    for (model_ent *m = s->models; m; m = m->next) {
        m->requests = 0;
        m->rejected = 0;
        m->peak = m->in_flight;
    }
}

/* Returns the port the simulator listens on. */
int fr_sim_port(const fr_sim *s)
{
    return s ? s->port : -1;
}

/* ---- connection lifecycle ------------------------------------------------ */

static void maybe_release_sim(fr_sim *s)
{
    if (!s->closing || !s->listener_closed || s->conns)
        return;
    model_ent *m = s->models;
    while (m) {
        model_ent *next = m->next;
        free(m->name);
        free(m);
        m = next;
    }
    free(s);
}

static void reply_release(reply *r)
{
    if (r->active && r->model)
        r->model->in_flight--;
    free(r->text);
    memset(r, 0, sizeof *r);
}

static void on_conn_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    fr_sim *s = c->sim;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    fr_buf_close(&c->in);
    fr_log(FR_LOG_DEBUG, "sim", "closed conn=%lu", c->id);
    free(c);
    maybe_release_sim(s);
}

/* Closes both handles of `c` and gives back its request slot. Idempotent;
 * memory goes in the last close callback. */
static void conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    reply_release(&c->rep);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    conn *c = req->data;
    free(w->data);
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c);
}

/* Queues `len` bytes of `data` (taken, freed after the write). */
static void conn_write_take(conn *c, char *data, size_t len)
{
    if (c->closing || len == 0) {
        free(data);
        return;
    }
    wreq *w = fr_xmalloc(sizeof *w);
    w->data = data;
    w->req.data = c;
    uv_buf_t b = uv_buf_init(data, (unsigned int)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
        free(data);
        free(w);
        conn_close(c);
    }
}

static void conn_write_buf(conn *c, fr_buf *b)
{
    size_t len = b->len;
    conn_write_take(c, fr_buf_take(b), len);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    conn_close(req->data);
}

/* The last response is queued: flush it, then close. */
static void conn_drain(conn *c)
{
    if (c->closing || c->draining)
        return;
    c->draining = true;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

/* ---- responses ----------------------------------------------------------- */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    default:
        return "Internal Server Error";
    }
}

/* Sends a complete response with a body; closes afterwards unless
 * `keep_alive`. `extra` is a block of extra header lines (may be ""). */
static void send_response(conn *c, int status, const char *extra, const char *body, bool keep_alive)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    size_t blen = strlen(body);
    fr_buf_printf(&out,
                  "HTTP/1.1 %d %s\r\nServer: flowrun-sim\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
                  status, status_text(status), blen, keep_alive ? "keep-alive" : "close", extra);
    fr_buf_append(&out, body, blen);
    conn_write_buf(c, &out);
    if (!keep_alive)
        conn_drain(c);
}

static void send_json(conn *c, int status, const char *extra, json_t *doc, bool keep_alive)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    send_response(c, status, extra, body ? body : "{}", keep_alive);
    free(body);
}

static void send_error(conn *c, int status, const char *extra, const char *type, const char *code,
                       const char *message, bool keep_alive)
{
    json_t *err = json_pack("{s:s,s:s,s:n}", "message", message, "type", type, "param");
    json_object_set_new(err, "code", code ? json_string(code) : json_null());
    send_json(c, status, extra, json_pack("{s:o}", "error", err), keep_alive);
}

/* ---- chat completions ---------------------------------------------------- */

static json_t *usage_json(const reply *r)
{
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)r->prompt_tokens,
                     "completion_tokens", (json_int_t)r->completion_tokens, "total_tokens",
                     (json_int_t)(r->prompt_tokens + r->completion_tokens));
}

static json_t *chunk_json(const reply *r, json_t *choices)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", r->id, "object", "chat.completion.chunk",
                     "created", (json_int_t)r->created, "model", r->model->name, "choices",
                     choices);
}

/* Appends one SSE event carrying `payload` (JSON text) to `out`, framed as an
 * HTTP chunk when the reply is chunked. */
static void put_event(const reply *r, fr_buf *out, const char *payload)
{
    size_t n = strlen("data: ") + strlen(payload) + 2;
    if (r->chunked)
        fr_buf_printf(out, "%zx\r\n", n);
    fr_buf_printf(out, "data: %s\n\n", payload);
    if (r->chunked)
        fr_buf_puts(out, "\r\n");
}

static void put_event_json(const reply *r, fr_buf *out, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text)
        put_event(r, out, text);
    free(text);
}

static void finish_reply(conn *c)
{
    bool keep_alive = c->rep.keep_alive;
    reply_release(&c->rep);
    if (!keep_alive)
        conn_drain(c);
}

static void send_full_reply(conn *c)
{
    reply *r = &c->rep;
    json_t *msg = json_pack("{s:s,s:s%}", "role", "assistant", "content", r->text, r->len);
    json_t *choice = json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "message", msg, "logprobs",
                               "finish_reason", r->finish);
    json_t *doc = json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", r->id, "object", "chat.completion",
                            "created", (json_int_t)r->created, "model", r->model->name, "choices",
                            choice, "usage", usage_json(r));
    send_json(c, 200, "", doc, r->keep_alive);
    finish_reply(c);
}

static void next_piece(reply *r)
{
    long words;
    r->piece_end = scan_words(r->text, r->len, r->pos, PIECE_WORDS, &words);
    r->piece_words = (int)words;
}

static void on_reply_timer(uv_timer_t *t);

/* Sends the pending piece, then every piece already due; arms the timer for
 * the next one, or ends the stream. */
static void stream_pump(conn *c)
{
    reply *r = &c->rep;
    fr_buf out;
    fr_buf_init(&out, 0);
    for (;;) {
        json_t *delta = json_object();
        if (!r->started) {
            json_object_set_new(delta, "role", json_string("assistant"));
            r->first_words = r->piece_words;
            r->started = true;
        }
        json_object_set_new(delta, "content",
                            json_stringn(r->text + r->pos, r->piece_end - r->pos));
        json_t *choice =
            json_pack("{s:i,s:o,s:n,s:n}", "index", 0, "delta", delta, "logprobs", "finish_reason");
        put_event_json(r, &out, chunk_json(r, json_pack("[o]", choice)));
        r->words_done += r->piece_words;
        r->pos = r->piece_end;
        if (r->pos >= r->len)
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
            conn_write_buf(c, &out);
            uv_timer_start(&c->timer, on_reply_timer, at - now, 0);
            return;
        }
    }
    json_t *choice = json_pack("{s:i,s:{},s:n,s:s}", "index", 0, "delta", "logprobs",
                               "finish_reason", r->finish);
    put_event_json(r, &out, chunk_json(r, json_pack("[o]", choice)));
    if (r->include_usage) {
        json_t *doc = chunk_json(r, json_array());
        json_object_set_new(doc, "usage", usage_json(r));
        put_event_json(r, &out, doc);
    }
    put_event(r, &out, "[DONE]");
    if (r->chunked)
        fr_buf_puts(&out, "0\r\n\r\n");
    conn_write_buf(c, &out);
    finish_reply(c); /* without chunked framing, keep_alive is false: this closes */
}

static void process_input(conn *c);

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
        process_input(c);
}

/* Reads a positive integer member; returns 0 if absent or null, -1 if bad. */
static long long positive_member(const json_t *req, const char *key)
{
    const json_t *v = json_object_get(req, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1)
        return -1;
    return json_integer_value(v);
}

/* Handles POST /v1/chat/completions. Returns true if a reply is now pending
 * on the timer, false if the response was already queued. */
static bool handle_chat(conn *c, const char *body, size_t len)
{
    fr_sim *s = c->sim;
    json_error_t jerr;
    json_t *req = json_loadb(body, len, 0, &jerr);
    bool pending = false;
    char msg[512];
    if (!req) {
        snprintf(msg, sizeof msg, "We could not parse the JSON body of your request: %s",
                 jerr.text);
        send_error(c, 400, "", "invalid_request_error", NULL, msg, c->keep_alive);
        goto cleanup;
    }
    const char *model = json_string_value(json_object_get(req, "model"));
    const json_t *messages = json_object_get(req, "messages");
    long long max_tokens = positive_member(req, "max_tokens");
    if (max_tokens == 0)
        max_tokens = positive_member(req, "max_completion_tokens");
    const char *bad = NULL;
    if (!json_is_object(req))
        bad = "The request body must be a JSON object.";
    else if (!model || !*model)
        bad = "You must provide a model parameter.";
    else if (!json_is_array(messages) || json_array_size(messages) == 0)
        bad = "'messages' must be a non-empty array.";
    else if (max_tokens < 0)
        bad = "'max_tokens' must be a positive integer.";
    size_t i;
    const json_t *m;
    json_array_foreach(bad ? NULL : messages, i, m)
    {
        if (!json_is_object(m)) {
            bad = "Each message must be an object with 'role' and 'content'.";
            break;
        }
    }
    if (bad) {
        send_error(c, 400, "", "invalid_request_error", NULL, bad, c->keep_alive);
        goto cleanup;
    }

    model_ent *e = get_model(s, model);
    double latency = e->configured ? e->latency_ms : s->dflt_latency_ms;
    double tps = e->configured ? e->tokens_per_s : s->dflt_tokens_per_s;
    int max_conc = e->configured ? e->max_concurrent : s->dflt_max_concurrent;
    e->requests++;
    e->in_flight++;
    if (e->in_flight > e->peak)
        e->peak = e->in_flight;
    if (max_conc > 0 && e->in_flight > max_conc) {
        e->in_flight--;
        e->rejected++;
        fr_log(FR_LOG_DEBUG, "sim", "reject conn=%lu model=%s in_flight=%ld max=%d", c->id, model,
               e->in_flight, max_conc);
        snprintf(msg, sizeof msg,
                 "Rate limit reached for %.200s: %d requests in flight allowed. Please try "
                 "again in 1s.",
                 model, max_conc);
        send_error(c, 429, "Retry-After: 1\r\n", "requests", "rate_limit_exceeded", msg,
                   c->keep_alive);
        goto cleanup;
    }

    reply *r = &c->rep;
    memset(r, 0, sizeof *r);
    r->active = true;
    r->model = e;
    r->stream = json_is_true(json_object_get(req, "stream"));
    r->include_usage =
        json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage"));
    r->chunked = c->minor >= 1;
    r->keep_alive = c->keep_alive && (!r->stream || r->chunked);
    r->latency_ms = latency > 0 ? latency : 0;
    r->tokens_per_s = tps > 0 ? tps : 0;
    r->t0 = uv_now(s->loop);
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "chatcmpl-sim%llu", ++s->next_reply_id);

    size_t prompt_bytes = 0;
    json_array_foreach(messages, i, m)
    {
        prompt_bytes += content_text(json_object_get(m, "content"), NULL);
    }
    r->prompt_tokens = (long)((prompt_bytes + 3) / 4);
    r->text = fr_sim_reply_text(model, messages);
    r->len = strlen(r->text);
    long words;
    size_t end =
        scan_words(r->text, r->len, 0, max_tokens > 0 ? (long)max_tokens : LONG_MAX, &words);
    r->finish = "stop";
    if (end < r->len) {
        r->len = end;
        r->text[end] = '\0';
        r->finish = "length";
    }
    r->completion_tokens = words > 0 ? words : 1;
    fr_log(FR_LOG_DEBUG, "sim",
           "request conn=%lu id=%s model=%s stream=%d prompt_tokens=%ld completion_tokens=%ld "
           "finish=%s",
           c->id, r->id, model, r->stream, r->prompt_tokens, r->completion_tokens, r->finish);

    uint64_t delay;
    if (r->stream) {
        fr_buf head;
        fr_buf_init(&head, 0);
        fr_buf_printf(
            &head,
            "HTTP/1.1 200 OK\r\nServer: flowrun-sim\r\nContent-Type: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n%sConnection: %s\r\n\r\n",
            r->chunked ? "Transfer-Encoding: chunked\r\n" : "",
            r->keep_alive ? "keep-alive" : "close");
        conn_write_buf(c, &head);
        next_piece(r);
        delay = (uint64_t)ceil(r->latency_ms);
    } else {
        double ms = r->latency_ms;
        if (r->tokens_per_s > 0)
            ms += 1000.0 * (double)r->completion_tokens / r->tokens_per_s;
        delay = (uint64_t)ceil(ms);
    }
    uv_timer_start(&c->timer, on_reply_timer, delay, 0);
    pending = true;
cleanup:
    json_decref(req);
    return pending;
}

static void handle_models(conn *c)
{
    json_t *data = json_array();
    for (const model_ent *m = c->sim->models; m; m = m->next)
        if (m->configured)
            json_array_append_new(data,
                                  json_pack("{s:s,s:s,s:i,s:s}", "id", m->name, "object", "model",
                                            "created", 0, "owned_by", "flowrun-sim"));
    send_json(c, 200, "", json_pack("{s:s,s:o}", "object", "list", "data", data), c->keep_alive);
}

/* Routes one complete request. Returns true if a reply is pending. */
static bool dispatch(conn *c, const char *body, size_t len)
{
    const char *path = c->path;
    bool get = strcmp(c->method, "GET") == 0;
    bool post = strcmp(c->method, "POST") == 0;
    if (!get && !post) {
        send_error(c, 405, "Allow: GET, POST\r\n", "invalid_request_error", NULL,
                   "Only GET and POST are supported.", false);
        return false;
    }
    const char *allow = NULL;
    if (strcmp(path, "/v1/chat/completions") == 0 || strcmp(path, "/chat/completions") == 0) {
        if (post && !c->have_length) {
            send_error(c, 411, "", "invalid_request_error", NULL,
                       "A request body with Content-Length is required.", c->keep_alive);
            return false;
        }
        if (post)
            return handle_chat(c, body, len);
        allow = "Allow: POST\r\n";
    } else if (strcmp(path, "/sim/stats") == 0) {
        if (get) {
            send_json(c, 200, "", fr_sim_stats(c->sim), c->keep_alive);
            return false;
        }
        allow = "Allow: GET\r\n";
    } else if (strcmp(path, "/sim/reset") == 0) {
        if (post) {
            fr_sim_reset(c->sim);
            send_json(c, 200, "", json_pack("{s:b}", "ok", 1), c->keep_alive);
            return false;
        }
        allow = "Allow: POST\r\n";
    } else if (strcmp(path, "/v1/models") == 0 || strcmp(path, "/models") == 0) {
        if (get) {
            handle_models(c);
            return false;
        }
        allow = "Allow: GET\r\n";
    }
    char msg[MAX_TARGET + 64];
    if (allow) {
        snprintf(msg, sizeof msg, "Method %s is not allowed on %s.", c->method, path);
        send_error(c, 405, allow, "invalid_request_error", NULL, msg, c->keep_alive);
    } else {
        snprintf(msg, sizeof msg, "Unknown request URL: %s %s.", c->method, path);
        send_error(c, 404, "", "invalid_request_error", "unknown_url", msg, c->keep_alive);
    }
    return false;
}

/* ---- request parsing ----------------------------------------------------- */

static bool token_in_list(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t'))
            end--;
        if (end - start == tl && strncasecmp(v + start, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Parses the head in c->in[0..head_len). Returns 0, or an HTTP status to
 * send (the connection then closes). */
static int parse_head(conn *c)
{
    const char *p = c->in.data;
    const char *end = p + c->head_len;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
    if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof c->method)
        return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (!sp2 || sp2 == target)
        return 400;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(eol - ver);
    if (vlen > 0 && ver[vlen - 1] == '\r')
        vlen--;
    if (vlen != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || (ver[7] != '0' && ver[7] != '1'))
        return 400;
    memcpy(c->method, p, (size_t)(sp1 - p));
    c->method[sp1 - p] = '\0';
    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    if (q)
        tlen = (size_t)(q - target);
    if (tlen >= sizeof c->path)
        return 414;
    memcpy(c->path, target, tlen);
    c->path[tlen] = '\0';
    c->minor = ver[7] - '0';
    c->keep_alive = c->minor >= 1;

    bool have_length = false;
    bool chunked = false;
    unsigned long long length = 0;
    for (const char *line = eol + 1; line < end;) {
        const char *le = memchr(line, '\n', (size_t)(end - line));
        if (!le)
            le = end;
        const char *ve = le;
        if (ve > line && ve[-1] == '\r')
            ve--;
        if (ve == line)
            break; /* the blank line */
        const char *colon = memchr(line, ':', (size_t)(ve - line));
        if (!colon || colon == line)
            return 400;
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        const char *vend = ve;
        while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        size_t len = (size_t)(vend - v);
        if (nlen == 14 && strncasecmp(line, "Content-Length", nlen) == 0) {
            if (len == 0 || len > 18)
                return 400;
            unsigned long long n = 0;
            for (size_t k = 0; k < len; k++) {
                if (v[k] < '0' || v[k] > '9')
                    return 400;
                n = n * 10 + (unsigned)(v[k] - '0');
            }
            if (have_length && n != length)
                return 400;
            have_length = true;
            length = n;
        } else if (nlen == 17 && strncasecmp(line, "Transfer-Encoding", nlen) == 0) {
            chunked = true;
        } else if (nlen == 10 && strncasecmp(line, "Connection", nlen) == 0) {
            if (token_in_list(v, len, "close"))
                c->keep_alive = false;
            else if (token_in_list(v, len, "keep-alive"))
                c->keep_alive = true;
        } else if (nlen == 6 && strncasecmp(line, "Expect", nlen) == 0) {
            c->expect_continue = token_in_list(v, len, "100-continue");
        }
        line = le + 1;
    }
    if (chunked)
        return 411; /* no chunked bodies: the framing is lost, so the connection closes */
    c->have_length = have_length;
    if (length > MAX_BODY)
        return 413;
    c->body_len = (size_t)length;
    return 0;
}

static void reset_parse(conn *c)
{
    c->head_done = false;
    c->head_len = 0;
    c->body_len = 0;
    c->scan = 0;
    c->expect_continue = false;
    c->sent_continue = false;
    c->have_length = false;
}

/* Drops the first `n` (> 0) bytes of input. A buffer grown by a big body
 * is given back once empty, so idle keep-alive connections stay small. */
static void consume(conn *c, size_t n)
{
    memmove(c->in.data, c->in.data + n, c->in.len - n);
    c->in.len -= n;
    c->in.data[c->in.len] = '\0';
    if (c->in.len == 0 && c->in.cap > READ_BUF * 4)
        fr_buf_close(&c->in);
}

static void send_fatal(conn *c, int status)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s.", status_text(status));
    send_error(c, status, "", "invalid_request_error", NULL, msg, false);
}

/* Serves every complete request at the front of the input, one after
 * another, until one has to wait on the timer or the input runs out. */
static void process_input(conn *c)
{
    while (!c->closing && !c->draining && !c->rep.active) {
        if (!c->head_done) {
            size_t skip = 0; /* stray CRLFs between requests are allowed */
            while (skip < c->in.len && (c->in.data[skip] == '\r' || c->in.data[skip] == '\n'))
                skip++;
            if (skip) {
                consume(c, skip);
                c->scan = c->scan > skip ? c->scan - skip : 0;
            }
            const char *data = fr_buf_str(&c->in);
            size_t from = c->scan > 3 ? c->scan - 3 : 0;
            const char *hit = NULL;
            for (size_t i = from; i + 4 <= c->in.len; i++) {
                if (memcmp(data + i, "\r\n\r\n", 4) == 0) {
                    hit = data + i;
                    break;
                }
            }
            if (!hit) {
                c->scan = c->in.len;
                if (c->in.len > MAX_HEAD)
                    send_fatal(c, 431);
                return;
            }
            c->head_len = (size_t)(hit - data) + 4;
            if (c->head_len > MAX_HEAD) {
                send_fatal(c, 431);
                return;
            }
            c->head_done = true;
            int status = parse_head(c);
            if (status) {
                send_fatal(c, status);
                return;
            }
        }
        if (c->in.len - c->head_len < c->body_len) {
            if (c->expect_continue && !c->sent_continue && c->minor >= 1) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                c->sent_continue = true;
                conn_write_take(c, fr_xstrdup(cont), sizeof cont - 1);
            }
            return;
        }
        size_t total = c->head_len + c->body_len;
        dispatch(c, c->in.data + c->head_len, c->body_len);
        if (c->closing)
            return;
        consume(c, total);
        reset_parse(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = h->data;
    *buf = uv_buf_init(c->sim->rbuf, sizeof c->sim->rbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (nread < 0) {
        if (nread != UV_EOF)
            fr_log(FR_LOG_DEBUG, "sim", "read conn=%lu error=%s", c->id, uv_strerror((int)nread));
        conn_close(c);
        return;
    }
    if (nread == 0 || c->closing || c->draining)
        return;
    if (fr_buf_append(&c->in, buf->base, (size_t)nread) != FR_OK) {
        if (c->rep.active)
            conn_close(c);
        else
            send_fatal(c, 413);
        return;
    }
    process_input(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    fr_sim *s = server->data;
    if (status < 0 || s->closing) {
        fr_log(FR_LOG_WARN, "sim", "accept error=%s", uv_strerror(status));
        return;
    }
    conn *c = fr_xcalloc(1, sizeof *c);
    c->sim = s;
    c->id = ++s->next_conn_id;
    fr_buf_init(&c->in, MAX_PENDING);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->open_handles = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    s->connections++;
    uv_tcp_nodelay(&c->tcp, 1);
    fr_log(FR_LOG_DEBUG, "sim", "accepted conn=%lu", c->id);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        conn_close(c);
}

/* ---- lifecycle ------------------------------------------------------------ */

static void on_listener_closed(uv_handle_t *h)
{
    fr_sim *s = h->data;
    s->listener_closed = true;
    maybe_release_sim(s);
}

static int bind_socket(const char *host, int port, int *fd_out, fr_error *err)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    int family = AF_INET;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0) {
        family = AF_INET6;
        if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
            return fr_error_set(err, FR_EINVAL, "sim", 0, "host '%s' is not a numeric IP address",
                                host);
    }
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0)
        return fr_error_set(err, FR_EIO, "sim", 0, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    socklen_t alen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, alen) < 0 || listen(fd, 511) < 0) {
        int e = errno;
        close(fd);
        return fr_error_set(err, FR_ECONNECT, "sim", 0, "cannot listen on %s:%d: %s", host, port,
                            strerror(e));
    }
    *fd_out = fd;
    return FR_OK;
}

/* Binds, listens and returns a new simulator; see sim.h. */
fr_sim *fr_sim_new(uv_loop_t *loop, const char *host, int port, fr_error *err)
{
    if (!loop || port < 0 || port > 65535) {
        fr_error_set(err, FR_EINVAL, "sim", 0, "bad port %d", port);
        return NULL;
    }
    int fd = -1;
    if (bind_socket(host ? host : "127.0.0.1", port, &fd, err) != FR_OK)
        return NULL;

    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }

    fr_sim *s = fr_xcalloc(1, sizeof *s);
    s->loop = loop;
    s->models_tail = &s->models;
    s->dflt_latency_ms = DEFAULT_LAT;
    s->dflt_tokens_per_s = DEFAULT_TPS;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    int rc = uv_tcp_open(&s->listener, fd);
    if (rc == 0) {
        fd = -1; /* owned by the handle now */
        rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
    }
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        fr_error_set(err, FR_ECONNECT, "sim", 0, "cannot listen: %s", uv_strerror(rc));
        s->closing = true;
        uv_close((uv_handle_t *)&s->listener, on_listener_closed);
        return NULL;
    }
    struct sockaddr_storage ss;
    int alen = sizeof ss;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &alen);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    fr_log(FR_LOG_DEBUG, "sim", "listening port=%d", s->port);
    return s;
}

/* Stops accepting, cancels every reply and closes every connection. */
void fr_sim_free(fr_sim *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (conn *c = s->conns; c; c = c->next)
        conn_close(c);
}
