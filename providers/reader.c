/* The one reader of a reply body for every adapter (provider_int.h): the
 * mode a body is read in, the framers (SSE, NDJSON) behind one feed, the
 * progress count, the caps, the sticky first error, the end of a stream
 * and what every protocol's reply holds. */

#include "engine/util/buf.h"
#include "engine/util/mem.h"
#include "providers/provider_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fr_reader_init(fr_reader *rd, const char *proto, const fr_reader_spec *spec, bool stream)
{
    memset(rd, 0, sizeof *rd);
    rd->proto = proto;
    rd->spec = spec;
    rd->stream = stream;
    fr_buf_init(&rd->body, FR_PROVIDER_MAX_BODY);
    fr_text_acc_init(&rd->text);
}

void fr_reader_close(fr_reader *rd)
{
    if (rd->framing && rd->spec->framing == FR_FRAME_SSE)
        fr_sse_close(&rd->sse);
    else if (rd->framing)
        fr_ndjson_close(&rd->nd);
    fr_buf_close(&rd->body);
    fr_text_acc_close(&rd->text);
    free(rd->model);
    free(rd->finish_reason);
    free(rd->error);
    memset(rd, 0, sizeof *rd);
}

int fr_reader_fail(fr_reader *rd, int rc, char *msg_owned)
{
    if (rd->rc == FR_OK) {
        rd->rc = rc;
        rd->error = msg_owned;
    } else {
        free(msg_owned);
    }
    return rd->rc;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether `len` bytes of `data` hold more than whitespace. */
static bool has_content(const char *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!is_blank(data[i]))
            return true;
    return false;
}

/* Counts an event as content (Anthropic's `ping` is none), then hands it to
 * the adapter. */
static int on_event(void *ud, const fr_sse_event *ev)
{
    fr_reader *rd = ud;
    if (strcmp(ev->event, "ping") != 0)
        rd->progress++;
    return rd->spec->on_event(rd->ud, ev);
}

/* Counts a line as content (the framer hands out no blank one), then hands
 * it to the adapter. */
static int on_line(void *ud, const char *line, size_t len)
{
    fr_reader *rd = ud;
    rd->progress++;
    return rd->spec->on_line(rd->ud, line, len);
}

int fr_reader_frame(fr_reader *rd, const char *data, size_t len)
{
    bool sse = rd->spec->framing == FR_FRAME_SSE;
    if (!rd->framing) {
        if (sse)
            fr_sse_init(&rd->sse, FR_PROVIDER_MAX_BODY, on_event, rd);
        else
            fr_ndjson_init(&rd->nd, FR_PROVIDER_MAX_BODY, on_line, rd);
        rd->framing = true;
    }
    int rc = sse ? fr_sse_feed(&rd->sse, data, len) : fr_ndjson_feed(&rd->nd, data, len);
    if (rc == FR_ETOOBIG)
        fr_reader_fail(rd, rc,
                       fr_xasprintf("the reply is over the %u-byte cap (one stream %s exceeds %u "
                                    "bytes)",
                                    (unsigned)FR_PROVIDER_MAX_REPLY, sse ? "event" : "line",
                                    (unsigned)FR_PROVIDER_MAX_BODY));
    return rc;
}

int fr_reader_feed(fr_reader *rd, long status, const char *data, size_t len)
{
    if (rd->mode == FR_READ_UNKNOWN) {
        rd->status = status;
        if (!fr_provider_status_ok(status)) {
            rd->mode = FR_READ_ERROR;
            rd->body.limit = FR_PROVIDER_MAX_ERROR_BODY;
        } else if (!rd->stream) {
            rd->mode = FR_READ_BODY;
        } else if (rd->spec->framing == FR_FRAME_NDJSON) {
            rd->mode = FR_READ_STREAM; /* NDJSON starts with '{' too */
        } else {
            /* Sniff past leading whitespace: SSE never starts with '{'. */
            while (len > 0 && is_blank(*data)) {
                data++;
                len--;
            }
            if (len == 0)
                return FR_OK;
            rd->mode = *data == '{' ? FR_READ_BODY : FR_READ_STREAM;
        }
    }
    if (rd->mode != FR_READ_STREAM && has_content(data, len))
        rd->progress++;
    switch (rd->mode) {
    case FR_READ_STREAM:
        return fr_reader_frame(rd, data, len);
    case FR_READ_ERROR: {
        /* Only the start of an error body matters; the rest is dropped. */
        size_t room = rd->body.limit - rd->body.len;
        fr_buf_append(&rd->body, data, len < room ? len : room);
        return FR_OK;
    }
    case FR_READ_BODY:
    case FR_READ_UNKNOWN: /* decided above */
    default:
        if (fr_buf_append(&rd->body, data, len) != FR_OK)
            return fr_reader_fail(
                rd, FR_ETOOBIG,
                fr_xasprintf("the reply is over the %u-byte cap (its body exceeds %u bytes)",
                             (unsigned)FR_PROVIDER_MAX_REPLY, (unsigned)FR_PROVIDER_MAX_BODY));
        return FR_OK;
    }
}

/* Fills `err` with the sticky error; returns its code. */
static int sticky(const fr_reader *rd, fr_error *err)
{
    return fr_error_set(err, rd->rc, rd->proto, 0, "%s", rd->error);
}

int fr_reader_end_stream(fr_reader *rd, fr_error *err)
{
    bool pending = rd->framing && (rd->spec->framing == FR_FRAME_SSE ? fr_sse_pending(&rd->sse)
                                                                     : fr_ndjson_pending(&rd->nd));
    if (!rd->done && rd->rc == FR_OK && pending) {
        /* A server may omit the blank line or newline after its last
         * event or object: read it, and let the adapter judge a cut one. */
        rd->at_end = true;
        if (rd->spec->framing == FR_FRAME_SSE)
            fr_sse_flush(&rd->sse);
        else
            fr_ndjson_flush(&rd->nd);
    }
    if (rd->rc != FR_OK)
        return sticky(rd, err);
    if (!rd->done)
        return fr_error_set(err, FR_ETRUNCATED, rd->proto, 0, "%s (after %zu %s)", rd->spec->ended,
                            rd->parsed, rd->spec->units);
    return FR_OK;
}

int fr_reader_end(fr_reader *rd, long http_status, fr_error *err)
{
    long status = http_status ? http_status : rd->status;
    if (!fr_provider_status_ok(status)) {
        const char *body = rd->mode == FR_READ_ERROR ? fr_buf_str(&rd->body) : "";
        if (rd->spec->http_error)
            return rd->spec->http_error(rd->ud, status, body, strlen(body), err);
        return fr_provider_http_error(rd->proto, status, body, strlen(body), err);
    }
    if (rd->rc != FR_OK)
        return sticky(rd, err);
    if (rd->mode == FR_READ_BODY || (rd->mode == FR_READ_UNKNOWN && !rd->stream))
        return rd->spec->on_body(rd->ud, err);
    /* An error body under a final 2xx status: the SSE protocols asked for
     * no stream find no body in it, an NDJSON one no final object. */
    if (!rd->stream && rd->spec->framing == FR_FRAME_SSE)
        return fr_error_set(err, FR_EPROTO, rd->proto, 0, "the reply body is empty");
    return fr_reader_end_stream(rd, err);
}

int fr_reader_add(fr_reader *rd, fr_text_acc *acc, const char *s, size_t n)
{
    char *msg = NULL;
    int rc = fr_text_acc_add(acc, s, n, &msg);
    return rc == FR_OK ? FR_OK : fr_reader_fail(rd, rc, msg);
}

void fr_reader_model(fr_reader *rd, const char *model)
{
    if (!model || !model[0] || (rd->model && strcmp(rd->model, model) == 0))
        return; /* every chunk names the model: keep the copy we have */
    free(rd->model);
    rd->model = fr_xstrdup(model);
}

void fr_reader_finish_reason(fr_reader *rd, const char *reason)
{
    if (!reason)
        return;
    free(rd->finish_reason);
    rd->finish_reason = fr_xstrdup(reason);
}

int fr_reader_reply(fr_reader *rd, const fr_call *call, fr_finish f, fr_reply *out, fr_error *err)
{
    out->text = fr_buf_take(&rd->text.text);
    out->finish_reason = fr_xstrdup(rd->finish_reason);
    out->finish = fr_provider_settle_finish(f, rd->reasoned, out->text);
    out->model = fr_xstrdup(rd->model);
    out->usage = rd->usage;
    fr_provider_fill_usage(out, call, rd->have_usage);
    if (call->schema) {
        int rc = fr_provider_parse_json_text(rd->proto, out->text, &out->json, err);
        if (rc != FR_OK && fr_finish_is_answer(out->finish))
            return rc; /* fr_adapter_finish empties out */
        if (rc != FR_OK && err)
            memset(err, 0, sizeof *err); /* the finish says why: the engine reports it */
    }
    return FR_OK;
}

char *fr_reader_not_object(const fr_reader *rd, const char *event, const char *data, size_t len,
                           const json_t *obj, const json_error_t *je)
{
    bool sse = rd->spec->framing == FR_FRAME_SSE;
    if (event && strcmp(event, "error") == 0) {
        fr_buf b;
        fr_buf_init(&b, 0);
        fr_buf_puts(&b, "the server reported an error mid-stream: ");
        fr_provider_append_line(&b, data, len, 200);
        return fr_buf_take(&b);
    }
    fr_error e;
    char what[64];
    snprintf(what, sizeof what, "malformed JSON in stream %s %zu", sse ? "event" : "line",
             rd->parsed + 1);
    if (obj)
        fr_error_set(&e, FR_EPROTO, rd->proto, 0, "%s (not an object)", what);
    else
        fr_provider_json_error(&e, rd->proto, je, what);
    return fr_xstrdup(e.msg);
}

int fr_reader_body_object(const fr_reader *rd, json_t **out, fr_error *err)
{
    json_error_t je;
    *out = NULL;
    if (rd->body.len == 0)
        return fr_error_set(err, FR_EPROTO, rd->proto, 0, "the reply body is empty");
    json_t *obj = json_loadb(rd->body.data, rd->body.len, 0, &je);
    if (!obj)
        return fr_provider_json_error(err, rd->proto, &je, "the reply is not valid JSON");
    if (!json_is_object(obj)) {
        json_decref(obj);
        return fr_error_set(err, FR_EPROTO, rd->proto, 0, "the reply is not a JSON object");
    }
    *out = obj;
    return FR_OK;
}
