#include "engine/attempt.h"

#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The transport's cap on body bytes, framing included. The reply cap (8 MiB
 * of text, providers/) is the one a reply meets: SSE framing can be 50 times
 * the text it carries. */
#define MAX_RESPONSE_BYTES ((size_t)1 << 30)

fr_call fr_attempt_call(const fr_workflow *wf, size_t task, const fr_endpoints *eps, size_t e,
                        const char *prompt)
{
    const fr_task_spec *ts = &wf->tasks[task];
    const fr_endpoint_spec *s = fr_ep_spec(eps, e);
    return (fr_call){
        .base_url = fr_ep_url(eps, e),
        .model = fr_ep_model(eps, e),
        .system = wf->agents[ts->agent].system,
        .prompt = prompt,
        .max_tokens = ts->max_tokens,
        .temperature = ts->temperature,
        .stream = s->stream,
        .schema = ts->schema,
        .api_key = fr_ep_key(eps, e),
        .context = s->context,
        .has_seed = ts->has_seed,
        .seed = ts->seed,
        .keep_alive = s->keep_alive,
        .max_completion_tokens = s->max_completion_tokens,
    };
}

/* ---- the wire ----------------------------------------------------------- */

typedef struct wire_attempt {
    fr_http *http;
    fr_adapter *adapter;
    fr_xfer *xfer;
    uint64_t sent_ns;
    double ttft_ms;       /* -1 until the first content */
    bool attempt_limited; /* the total timeout is the endpoint's attempt timeout */
    double attempt_s;
    fr_attempt_done_fn done;
    void *done_ud;
} wire_attempt;

static int on_data(void *ud, long status, const char *data, size_t len)
{
    wire_attempt *a = ud;
    unsigned long before = fr_adapter_progress(a->adapter);
    int rc = fr_adapter_feed(a->adapter, status, data, len);
    if (a->ttft_ms < 0 && fr_adapter_started(a->adapter))
        a->ttft_ms = (double)(uv_hrtime() - a->sent_ns) / 1e6;
    /* Keep-alive comments and blank lines do not hold the idle timer off. */
    if (rc == FR_OK && fr_adapter_progress(a->adapter) == before)
        return FR_HTTP_QUIET;
    return rc;
}

/* Reads what the transport delivered into the outcome: the adapter
 * finishes a whole reply (or says what was missing from a cut one). */
static void read_result(wire_attempt *a, const fr_http_result *res, fr_outcome *o)
{
    int rc = res->rc;
    fr_error *err = &o->err;
    if (rc == FR_OK || rc == FR_EPROTO || rc == FR_ETOOBIG) {
        int frc = fr_adapter_finish(a->adapter, res->status, &o->reply, err);
        if (rc == FR_OK)
            rc = frc;
    } else if (rc == FR_EIO && res->status >= 200 && res->status < 300 && res->bytes > 0) {
        /* The connection broke mid-reply: the adapter can say what was
         * missing ("the stream ended before 'data: [DONE]'"). */
        int frc = fr_adapter_finish(a->adapter, res->status, &o->reply, err);
        if (frc == FR_OK)
            fr_reply_close(&o->reply); /* a reply cut in transit is never accepted */
        if (frc == FR_ETRUNCATED)
            rc = frc;
        else
            fr_error_set(err, rc, NULL, 0, "the connection closed before the reply ended (%s)",
                         res->error ? res->error : fr_strerror(rc));
    } else if (rc == FR_ETIMEDOUT && a->attempt_limited && res->error &&
               strncmp(res->error, "total timeout", 13) == 0) {
        fr_error_set(err, rc, NULL, 0, "attempt timeout: no complete reply after %g s",
                     a->attempt_s);
    } else {
        fr_error_set(err, rc, NULL, 0, "%s", res->error ? res->error : fr_strerror(rc));
    }
    if (rc != FR_OK) {
        fr_reply_close(&o->reply);
        if (!err->msg[0])
            fr_error_set(err, rc, NULL, 0, "%s", res->error ? res->error : fr_strerror(rc));
    }
    o->rc = rc;
}

static void wire_free(wire_attempt *a)
{
    fr_adapter_free(a->adapter);
    free(a);
}

static void on_done(void *ud, const fr_http_result *res)
{
    wire_attempt *a = ud;
    fr_outcome o = {
        .status = res->status,
        .retry_after_s = res->retry_after_s,
        .delivered = res->rc == FR_OK,
        .billed = res->status >= 200 && res->status < 300 && res->bytes > 0,
        .no_fds = res->no_fds,
        .total_ms = res->total_ms,
        .ttft_ms = a->ttft_ms,
    };
    if (res->no_fds) {
        o.rc = res->rc;
        fr_error_set(&o.err, res->rc, NULL, 0, "%s", res->error ? res->error : "no descriptor");
    } else {
        read_result(a, res, &o);
    }
    fr_attempt_done_fn done = a->done;
    void *done_ud = a->done_ud;
    wire_free(a);
    done(done_ud, &o);
    fr_reply_close(&o.reply);
}

static int wire_start(void *ud, const fr_attempt_req *req, fr_attempt_done_fn done, void *done_ud,
                      void **handle, fr_error *err)
{
    wire_attempt *a = fr_xcalloc(1, sizeof *a);
    a->http = ud;
    a->ttft_ms = -1;
    a->done = done;
    a->done_ud = done_ud;
    a->adapter = fr_adapter_new(req->protocol, &req->call);
    const fr_endpoint_spec *s = req->endpoint;
    fr_request hr = {0};
    int rc = fr_adapter_request(a->adapter, &hr, err);
    if (rc == FR_OK) {
        fr_http_opts ho = {
            .max_response = MAX_RESPONSE_BYTES,
            .connect_timeout_ms = (long)(s->timeouts.connect_s * 1000.0),
            .first_byte_timeout_ms = (long)(s->timeouts.first_byte_s * 1000.0),
            .idle_timeout_ms = (long)(s->timeouts.idle_s * 1000.0),
            .total_timeout_ms = req->left_ms > 1 ? (long)req->left_ms : 1,
        };
        double attempt_ms = s->timeouts.attempt_s * 1000.0;
        a->attempt_s = s->timeouts.attempt_s;
        a->attempt_limited = attempt_ms > 0 && attempt_ms < (double)ho.total_timeout_ms;
        if (a->attempt_limited)
            ho.total_timeout_ms = (long)attempt_ms;
        a->sent_ns = uv_hrtime();
        rc = fr_http_submit(a->http, &hr, &ho, on_data, on_done, a, &a->xfer);
    }
    if (rc != FR_OK)
        fr_error_set(err, rc, NULL, 0, "could not start the request: %s", fr_strerror(rc));
    fr_request_close(&hr);
    if (rc != FR_OK) {
        wire_free(a);
        a = NULL;
    }
    *handle = a;
    return rc;
}

static void wire_cancel(void *ud, void *handle)
{
    wire_attempt *a = handle;
    fr_http_cancel(ud, a->xfer);
    wire_free(a);
}

fr_attempt_backend fr_attempt_wire(fr_http *http)
{
    return (fr_attempt_backend){.ud = http, .start = wire_start, .cancel = wire_cancel};
}
