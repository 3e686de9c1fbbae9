/* flowrun-sim: the HTTP/1.1 server. One uv_tcp listener; per connection a
 * uv_tcp and a uv_timer that paces the reply in progress. Parses requests,
 * routes them to a protocol (sim_chat.c) or to the simulator's own
 * endpoints, and owns every handle's lifecycle. */

#include "engine/sim/sim_int.h"

#include "engine/util/httphead.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HEAD    (64u * 1024u)        /* request line + headers */
#define MAX_BODY    (8u * 1024u * 1024u) /* request body */
#define MAX_PENDING (MAX_HEAD + MAX_BODY + 64u * 1024u)
#define DEFAULT_LAT 50.0
#define DEFAULT_TPS 200.0

typedef fr_sim_conn conn;

typedef struct wreq {
    uv_write_t req;
    char *data;
} wreq;

/* ---- connection lifecycle ------------------------------------------------ */

static void maybe_release_sim(fr_sim *s)
{
    if (!s->closing || !s->listener_closed || s->conns)
        return;
    fr_sim_entries_free(s);
    free(s);
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

/* Closes the connection; see sim_int.h. */
void fr_sim_conn_close(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    fr_sim_reply_release(&c->rep);
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
        fr_sim_conn_close(c);
}

/* Queues `len` bytes of `data` (taken, freed after the write). */
void fr_sim_conn_write(conn *c, char *data, size_t len)
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
        fr_sim_conn_close(c);
    }
}

/* Queues the contents of `b` and leaves it empty. */
void fr_sim_conn_write_buf(conn *c, fr_buf *b)
{
    size_t len = b->len;
    fr_sim_conn_write(c, fr_buf_take(b), len);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    fr_sim_conn_close(req->data);
}

/* The last response is queued: flush it, then close. */
void fr_sim_conn_drain(conn *c)
{
    if (c->closing || c->draining)
        return;
    c->draining = true;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        fr_sim_conn_close(c);
}

/* ---- responses ----------------------------------------------------------- */

/* Returns the reason phrase of `status`. */
const char *fr_sim_status_text(int status)
{
    return fr_http_status_text(status);
}

/* Sends a complete response; see sim_int.h. */
void fr_sim_send(conn *c, int status, const char *extra, const char *content_type, const char *body,
                 size_t len, bool keep_alive)
{
    fr_buf out;
    fr_buf_init(&out, 0);
    fr_buf_printf(&out,
                  "HTTP/1.1 %d %s\r\nServer: flowrun-sim\r\nContent-Type: %s\r\n"
                  "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
                  status, fr_sim_status_text(status), content_type, len,
                  keep_alive ? "keep-alive" : "close", extra);
    fr_buf_append(&out, body, len);
    fr_sim_conn_write_buf(c, &out);
    if (!keep_alive)
        fr_sim_conn_drain(c);
}

/* Sends `doc` (taken) as JSON. */
void fr_sim_send_json(conn *c, int status, const char *extra, json_t *doc, bool keep_alive)
{
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    const char *text = body ? body : "{}";
    fr_sim_send(c, status, extra, "application/json", text, strlen(text), keep_alive);
    free(body);
}

/* An OpenAI-shaped error, for what no protocol owns (unknown URLs, bad HTTP). */
static void send_error(conn *c, int status, const char *extra, const char *code,
                       const char *message, bool keep_alive)
{
    json_t *err =
        json_pack("{s:s,s:s,s:n}", "message", message, "type", "invalid_request_error", "param");
    json_object_set_new(err, "code", code ? json_string(code) : json_null());
    fr_sim_send_json(c, status, extra, json_pack("{s:o}", "error", err), keep_alive);
}

/* ---- the simulator's own endpoints and routing ---------------------------- */

static void handle_models(conn *c)
{
    json_t *data = json_array();
    for (const fr_sim_entry *m = c->sim->models; m; m = m->next)
        if (m->configured)
            json_array_append_new(data,
                                  json_pack("{s:s,s:s,s:i,s:s}", "id", m->name, "object", "model",
                                            "created", 0, "owned_by", "flowrun-sim"));
    fr_sim_send_json(c, 200, "", json_pack("{s:s,s:o}", "object", "list", "data", data),
                     c->keep_alive);
}

/* GET /api/tags: Ollama's list of local models. */
static void handle_tags(conn *c)
{
    json_t *data = json_array();
    for (const fr_sim_entry *m = c->sim->models; m; m = m->next)
        if (m->configured)
            json_array_append_new(data, json_pack("{s:s,s:s,s:s,s:i,s:s,s:{s:s,s:s}}", "name",
                                                  m->name, "model", m->name, "modified_at",
                                                  "2024-01-01T00:00:00Z", "size", 0, "digest", "",
                                                  "details", "format", "sim", "family", "sim"));
    fr_sim_send_json(c, 200, "", json_pack("{s:o}", "models", data), c->keep_alive);
}

typedef enum route_kind { R_CHAT, R_MODELS, R_TAGS, R_STATS, R_RESET } route_kind;

/* What each path serves: a route and its paths, with the aliases a base
 * URL with or without /v1 produces. */
static const struct route {
    route_kind kind;
    fr_sim_proto proto; /* of R_CHAT, and the shape of errors on the path */
    bool post;
    const char *paths[4]; /* at most three, NULL after the last */
} routes[] = {
    {R_CHAT, FR_SIM_OPENAI, true, {"/v1/chat/completions", "/chat/completions"}},
    {R_CHAT, FR_SIM_OLLAMA, true, {"/api/chat", "/v1/api/chat"}},
    {R_CHAT, FR_SIM_ANTHROPIC, true, {"/v1/messages", "/messages", "/v1/v1/messages"}},
    {R_MODELS, FR_SIM_OPENAI, false, {"/v1/models", "/models"}},
    {R_TAGS, FR_SIM_OLLAMA, false, {"/api/tags", "/v1/api/tags"}},
    {R_STATS, FR_SIM_OPENAI, false, {"/sim/stats"}},
    {R_RESET, FR_SIM_OPENAI, true, {"/sim/reset"}},
};

/* Appends the request to the record file, when one is set. */
static void record_request(fr_sim *s, const char *path, const char *body, size_t len)
{
    if (!s->record)
        return;
    json_t *doc = json_loadb(body, len, 0, NULL);
    if (!doc)
        doc = json_stringn_nocheck(body, len);
    json_t *line = json_pack("{s:s, s:o}", "path", path, "body", doc);
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    if (text) {
        fputs(text, s->record);
        fputc('\n', s->record);
        fflush(s->record);
    }
    free(text);
    json_decref(line);
}

/* Routes one complete request. Returns true if a reply is pending. */
static bool dispatch(conn *c, const char *body, size_t len)
{
    const char *path = c->path;
    bool get = strcmp(c->method, "GET") == 0;
    bool post = strcmp(c->method, "POST") == 0;
    if (!get && !post) {
        send_error(c, 405, "Allow: GET, POST\r\n", NULL, "Only GET and POST are supported.", false);
        return false;
    }
    const struct route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        for (size_t p = 0; p < 4 && routes[i].paths[p]; p++)
            if (strcmp(path, routes[i].paths[p]) == 0)
                rt = &routes[i];
    char msg[FR_SIM_MAX_TARGET + 64];
    if (!rt) {
        snprintf(msg, sizeof msg, "Unknown request URL: %s %s.", c->method, path);
        send_error(c, 404, "", "unknown_url", msg, c->keep_alive);
        return false;
    }
    if (post != rt->post) {
        snprintf(msg, sizeof msg, "Method %s is not allowed on %s.", c->method, path);
        if (rt->kind == R_CHAT)
            fr_sim_proto_send_error(c, rt->proto, 405, msg, c->keep_alive);
        else
            send_error(c, 405, rt->post ? "Allow: POST\r\n" : "Allow: GET\r\n", NULL, msg,
                       c->keep_alive);
        return false;
    }
    switch (rt->kind) {
    case R_CHAT:
        if (!c->have_length) {
            fr_sim_proto_send_error(c, rt->proto, 411,
                                    "A request body with Content-Length is required.",
                                    c->keep_alive);
            return false;
        }
        record_request(c->sim, path, body, len);
        return fr_sim_chat_handle(c, rt->proto, body, len);
    case R_MODELS:
        handle_models(c);
        break;
    case R_TAGS:
        handle_tags(c);
        break;
    case R_STATS:
        fr_sim_send_json(c, 200, "", fr_sim_stats(c->sim), c->keep_alive);
        break;
    case R_RESET:
        fr_sim_reset(c->sim);
        fr_sim_send_json(c, 200, "", json_pack("{s:b}", "ok", 1), c->keep_alive);
        break;
    }
    return false;
}

/* ---- request parsing ----------------------------------------------------- */

/* Parses the head in c->in[0..head_len). Returns 0, or an HTTP status to
 * send (the connection then closes). */
static int parse_head(conn *c)
{
    fr_httphead h;
    int status = fr_httphead_parse(c->in.data, c->head_len, &h);
    if (status)
        return status;
    if (h.method_len >= sizeof c->method)
        return 400;
    memcpy(c->method, h.method, h.method_len);
    c->method[h.method_len] = '\0';
    size_t tlen = h.target_len;
    const char *q = memchr(h.target, '?', tlen);
    if (q)
        tlen = (size_t)(q - h.target);
    if (tlen >= sizeof c->path)
        return 414;
    memcpy(c->path, h.target, tlen);
    c->path[tlen] = '\0';
    c->minor = h.minor;
    c->keep_alive = c->minor >= 1;
    c->credential[0] = '\0';

    bool have_length = false;
    unsigned long long length = 0;
    status = fr_httphead_length(&h, &have_length, &length);
    if (status)
        return status;
    bool chunked = false;
    for (size_t i = 0; i < h.nfields; i++) {
        const fr_httphead_field *f = &h.fields[i];
        if (fr_httphead_is(f, "Transfer-Encoding")) {
            chunked = true;
        } else if (fr_httphead_is(f, "Connection")) {
            if (fr_httphead_has_token(f->value, f->value_len, "close"))
                c->keep_alive = false;
            else if (fr_httphead_has_token(f->value, f->value_len, "keep-alive"))
                c->keep_alive = true;
        } else if (fr_httphead_is(f, "Expect")) {
            c->expect_continue = fr_httphead_has_token(f->value, f->value_len, "100-continue");
        } else if (fr_httphead_is(f, "Authorization") || fr_httphead_is(f, "x-api-key") ||
                   fr_httphead_is(f, "x-goog-api-key")) {
            size_t n =
                f->value_len < sizeof c->credential - 1 ? f->value_len : sizeof c->credential - 1;
            memcpy(c->credential, f->value, n);
            c->credential[n] = '\0';
        }
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
    fr_wipe(c->credential, sizeof c->credential);
}

/* Drops the first `n` (> 0) bytes of input. A buffer grown by a big body
 * is given back once empty, so idle keep-alive connections stay small. */
static void consume(conn *c, size_t n)
{
    memmove(c->in.data, c->in.data + n, c->in.len - n);
    c->in.len -= n;
    c->in.data[c->in.len] = '\0';
    if (c->in.len == 0 && c->in.cap > FR_SIM_READ_BUF * 4)
        fr_buf_close(&c->in);
}

static void send_fatal(conn *c, int status)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s.", fr_sim_status_text(status));
    send_error(c, status, "", NULL, msg, false);
}

/* Serves every complete request at the front of the input, one after
 * another, until one has to wait on the timer or the input runs out. */
void fr_sim_conn_process(conn *c)
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
            size_t head = fr_httphead_end(fr_buf_str(&c->in), c->in.len, &c->scan);
            if (!head) {
                if (c->in.len > MAX_HEAD)
                    send_fatal(c, 431);
                return;
            }
            c->head_len = head;
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
                fr_sim_conn_write(c, fr_xstrdup(cont), sizeof cont - 1);
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
        fr_sim_conn_close(c);
        return;
    }
    if (nread == 0 || c->closing || c->draining)
        return;
    if (fr_buf_append(&c->in, buf->base, (size_t)nread) != FR_OK) {
        if (c->rep.active)
            fr_sim_conn_close(c);
        else
            send_fatal(c, 413);
        return;
    }
    fr_sim_conn_process(c);
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
        fr_sim_conn_close(c);
        return;
    }
    s->connections++;
    uv_tcp_nodelay(&c->tcp, 1);
    fr_log(FR_LOG_DEBUG, "sim", "accepted conn=%lu", c->id);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0)
        fr_sim_conn_close(c);
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
void fr_sim_record(fr_sim *s, FILE *f)
{
    s->record = f;
}

void fr_sim_free(fr_sim *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
    for (conn *c = s->conns; c; c = c->next)
        fr_sim_conn_close(c);
}
