/* The stdio transport of the MCP server (engine/mcpd/stdio_serve.h). */
#include "engine/mcpd/stdio_serve.h"

#include "engine/mcp/jsonrpc.h"
#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>

/* A line longer than this is answered with a parse error and skipped. */
#define LINE_MAX_BYTES (16u << 20)

typedef union any_stream {
    uv_handle_t h;
    uv_stream_t s;
    uv_pipe_t pipe;
    uv_tty_t tty;
} any_stream;

struct fr_mcpd_stdio {
    fr_mcpd *d;
    fr_mcpd_peer *peer;
    any_stream in, out;
    uv_shutdown_t shut;
    fr_buf line;
    bool skipping; /* inside a line over LINE_MAX_BYTES */
    bool eof_told, closing;
    int open_handles;
    void (*on_eof)(void *ud);
    void *eof_ud;
    void (*done)(void *ud);
    void *done_ud;
};

typedef struct write_req {
    uv_write_t req;
    char *data;
} write_req;

/* Opens `fd` as a stream: a terminal or a pipe (a socket too). A file or a
 * device to read from is refused (UV_EINVAL): libuv cannot poll one and
 * would abort the process at its first read. */
static int open_stream(uv_loop_t *loop, int fd, any_stream *st, bool readable)
{
    uv_handle_type kind = uv_guess_handle(fd);
    if (kind == UV_TTY)
        return uv_tty_init(loop, &st->tty, fd, readable);
    if (readable && kind != UV_NAMED_PIPE && kind != UV_TCP && kind != UV_UDP)
        return UV_EINVAL;
    int rc = uv_pipe_init(loop, &st->pipe, 0);
    if (rc == 0 && (rc = uv_pipe_open(&st->pipe, fd)) != 0)
        uv_close(&st->h, NULL);
    return rc;
}

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    if (status < 0 && status != UV_ECANCELED)
        fr_log_event(FR_LOG_WARN, "mcpd", "mcpd.stdout_error", "stdout error=\"%s\"",
                     uv_strerror(status));
    free(w->data);
    free(w);
}

/* The peer's send: one compact JSON line on stdout. */
static void send_line(void *ud, void *tag, const json_t *msg, bool last)
{
    (void)tag;
    (void)last;
    fr_mcpd_stdio *s = ud;
    if (s->closing)
        return;
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    size_t n = strlen(text);
    write_req *w = fr_xcalloc(1, sizeof *w);
    w->data = fr_xrealloc(text, n + 1);
    w->data[n] = '\n';
    uv_buf_t b = uv_buf_init(w->data, (unsigned)(n + 1));
    if (uv_write(&w->req, &s->out.s, &b, 1, on_written) != 0) {
        free(w->data);
        free(w);
    }
}

static void tell_eof(fr_mcpd_stdio *s)
{
    if (s->eof_told || s->closing)
        return;
    s->eof_told = true;
    s->on_eof(s->eof_ud);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(hint);
    buf->len = buf->base ? hint : 0;
}

static void on_line(fr_mcpd_stdio *s)
{
    size_t n = s->line.len;
    const char *p = fr_buf_str(&s->line);
    while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n > 0)
        fr_mcpd_peer_input(s->peer, p, n, NULL);
    fr_buf_reset(&s->line);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    fr_mcpd_stdio *s = st->data;
    for (ssize_t i = 0; i < nread && !s->closing; i++) {
        char c = buf->base[i];
        if (c == '\n') {
            if (!s->skipping)
                on_line(s);
            s->skipping = false;
            fr_buf_reset(&s->line);
        } else if (!s->skipping && fr_buf_append(&s->line, &c, 1) != 0) {
            json_t *null = json_null();
            json_t *e = fr_mcp_error_response(null, -32700,
                                              "Parse error: a line over 16 MiB; it is skipped");
            send_line(s, NULL, e, true);
            json_decref(e);
            json_decref(null);
            s->skipping = true;
            fr_buf_reset(&s->line);
        }
    }
    free(buf->base);
    if (nread < 0) {
        if (nread != UV_EOF)
            fr_log_event(FR_LOG_WARN, "mcpd", "mcpd.stdin_error", "stdin error=\"%s\"",
                         uv_strerror((int)nread));
        else if (s->line.len && !s->skipping)
            on_line(s);
        uv_read_stop(st);
        tell_eof(s);
    }
}

static void on_closed(uv_handle_t *h)
{
    fr_mcpd_stdio *s = h->data;
    if (--s->open_handles > 0)
        return;
    void (*done)(void *) = s->done;
    void *ud = s->done_ud;
    fr_buf_close(&s->line);
    free(s);
    if (done)
        done(ud);
}

int fr_mcpd_stdio_start(uv_loop_t *loop, fr_mcpd *d, int in_fd, int out_fd,
                        void (*on_eof)(void *ud), void *ud, fr_mcpd_stdio **out, fr_error *err)
{
    *out = NULL;
    fr_mcpd_stdio *s = fr_xcalloc(1, sizeof *s);
    s->d = d;
    s->on_eof = on_eof;
    s->eof_ud = ud;
    fr_buf_init(&s->line, LINE_MAX_BYTES);
    int rc = open_stream(loop, in_fd, &s->in, true);
    if (rc != 0) {
        if (rc == UV_EINVAL)
            fr_error_set(err, FR_EIO, "stdin", 0,
                         "standard input is not a pipe or a terminal (a file or a device): "
                         "flowrun mcp is started by an MCP client, which writes to its "
                         "standard input; to replay requests from a file, pipe them: "
                         "cat requests.jsonl | flowrun mcp");
        else
            fr_error_set(err, FR_EIO, "stdin", 0,
                         "cannot read standard input as a pipe or terminal: %s (flowrun mcp is "
                         "started by an MCP client, which writes to its standard input)",
                         uv_strerror(rc));
        fr_buf_close(&s->line);
        free(s);
        return FR_EIO;
    }
    rc = open_stream(loop, out_fd, &s->out, false);
    if (rc != 0) {
        fr_error_set(err, FR_EIO, "stdout", 0,
                     "cannot write standard output as a pipe or terminal: %s", uv_strerror(rc));
        s->open_handles = 1; /* s is freed once stdin's handle is closed */
        s->in.h.data = s;
        s->closing = true;
        uv_close(&s->in.h, on_closed);
        return FR_EIO;
    }
    s->in.h.data = s->out.h.data = s;
    s->open_handles = 2;
    s->peer = fr_mcpd_peer_new(d, send_line, s);
    uv_read_start(&s->in.s, on_alloc, on_read);
    *out = s;
    return FR_OK;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    fr_mcpd_stdio *s = req->data;
    uv_close(&s->out.h, on_closed);
}

void fr_mcpd_stdio_close(fr_mcpd_stdio *s, void (*done)(void *ud), void *ud)
{
    s->done = done;
    s->done_ud = ud;
    fr_mcpd_peer_free(s->peer);
    s->peer = NULL;
    s->closing = true;
    uv_read_stop(&s->in.s);
    uv_close(&s->in.h, on_closed);
    s->shut.data = s;
    if (uv_shutdown(&s->shut, &s->out.s, on_shutdown) != 0)
        uv_close(&s->out.h, on_closed);
}
