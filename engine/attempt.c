#include "engine/attempt.h"

#include "engine/convo.h"
#include "engine/util/mem.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* The transport's cap on body bytes, framing included. The reply cap (8 MiB
 * of text, providers/) is the one a reply meets: SSE framing can be 50 times
 * the text it carries. */
#define MAX_RESPONSE_BYTES ((size_t)1 << 30)

fr_call fr_attempt_call(const fr_workflow *wf, size_t task, const fr_endpoints *eps, size_t e,
                        const char *prompt, const json_t *tools)
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
        .tools = tools,
    };
}

/* ---- the wire ----------------------------------------------------------- */

/* The transport's total timeout runs this much past the task's deadline:
 * the conductor's deadline timer ends the task first, with its reason. */
#define DEADLINE_SLACK_MS 50

/* How long a turn the caps cannot hold yet waits before it asks again. */
#define TURN_WAIT_MS 25

typedef struct wire_attempt wire_attempt;

/* One tool call of the turn in flight. */
typedef struct call_slot {
    wire_attempt *a;
    size_t i;
    fr_toolcall *h; /* in flight, NULL once done */
} call_slot;

struct wire_attempt {
    fr_http *http;
    fr_adapter *adapter; /* the turn in flight, NULL between turns */
    fr_xfer *xfer;
    uint64_t first_ns;    /* the first turn was sent */
    uint64_t sent_ns;     /* this turn was sent */
    uint64_t deadline_ns; /* the task's deadline */
    double ttft_ms;       /* -1 until the first content */
    bool attempt_limited; /* the total timeout is the endpoint's attempt timeout */
    double attempt_s;
    fr_attempt_done_fn done;
    void *done_ud;
    /* The exchange: its call (strings borrowed from the task, which
     * outlives the attempt), protocol and endpoint. */
    fr_call call;
    fr_protocol protocol;
    const fr_endpoint_spec *endpoint;
    /* The tool loop, when the task has tools. */
    bool has_tools;
    fr_attempt_tools tools;
    fr_convo *convo;
    call_slot *slots; /* the calls of the turn in flight */
    size_t nslots;
    uv_timer_t *wait;        /* a turn waiting for the caps; freed in its close callback */
    unsigned long *streamed; /* the request's live count, or NULL */
};

static int on_data(void *ud, long status, const char *data, size_t len)
{
    wire_attempt *a = ud;
    unsigned long before = fr_adapter_progress(a->adapter);
    int rc = fr_adapter_feed(a->adapter, status, data, len);
    if (a->ttft_ms < 0 && fr_adapter_started(a->adapter))
        a->ttft_ms = (double)(uv_hrtime() - a->first_ns) / 1e6;
    /* Keep-alive comments and blank lines do not hold the idle timer off. */
    if (a->streamed)
        *a->streamed = fr_adapter_progress(a->adapter);
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

static void free_wait(uv_handle_t *h)
{
    free(h);
}

/* Stops what is in flight (no callbacks) and frees the attempt. */
static void wire_free(wire_attempt *a)
{
    if (a->xfer)
        fr_http_cancel(a->http, a->xfer);
    for (size_t i = 0; i < a->nslots; i++)
        if (a->slots[i].h)
            fr_toolset_cancel(a->tools.set, a->slots[i].h);
    if (a->wait)
        uv_close((uv_handle_t *)a->wait, free_wait);
    free(a->slots);
    fr_convo_free(a->convo);
    fr_adapter_free(a->adapter);
    free(a);
}

/* Reports the attempt's end (`o`, its reply taken) and frees it. */
static void finish(wire_attempt *a, fr_outcome *o)
{
    o->total_ms = (double)(uv_hrtime() - a->first_ns) / 1e6;
    o->ttft_ms = a->ttft_ms;
    if (a->convo) {
        o->turns = fr_convo_turns(a->convo);
        o->tool_calls = fr_convo_tool_calls(a->convo);
        if (o->rc != FR_OK && o->rc != FR_ETURNS && o->tool_calls > 0)
            o->conversation = json_deep_copy(fr_convo_messages(a->convo));
    } else {
        o->turns = 1;
    }
    fr_attempt_done_fn done = a->done;
    void *done_ud = a->done_ud;
    a->xfer = NULL;
    wire_free(a);
    done(done_ud, o);
    fr_reply_close(&o->reply);
    json_decref(o->conversation);
}

static void fail(wire_attempt *a, int rc, const fr_error *err)
{
    fr_outcome o = {.rc = rc, .retry_after_s = -1, .err = *err};
    finish(a, &o);
}

static void on_done(void *ud, const fr_http_result *res);

/* Sends the next model turn. */
static int send_turn(wire_attempt *a, fr_error *err)
{
    if (a->convo)
        a->call.messages = fr_convo_messages(a->convo);
    fr_adapter_free(a->adapter);
    a->adapter = fr_adapter_new(a->protocol, &a->call);
    const fr_endpoint_spec *s = a->endpoint;
    fr_request hr = {0};
    int rc = fr_adapter_request(a->adapter, &hr, err);
    if (rc == FR_OK) {
        uint64_t now = uv_hrtime();
        double left_ms =
            (a->deadline_ns > now ? (double)(a->deadline_ns - now) / 1e6 : 0) + DEADLINE_SLACK_MS;
        fr_http_opts ho = {
            .max_response = MAX_RESPONSE_BYTES,
            .connect_timeout_ms = (long)(s->timeouts.connect_s * 1000.0),
            .first_byte_timeout_ms = (long)(s->timeouts.first_byte_s * 1000.0),
            .idle_timeout_ms = (long)(s->timeouts.idle_s * 1000.0),
            .total_timeout_ms = left_ms > 1 ? (long)left_ms : 1,
        };
        double attempt_ms = s->timeouts.attempt_s * 1000.0;
        a->attempt_s = s->timeouts.attempt_s;
        a->attempt_limited = attempt_ms > 0 && attempt_ms < (double)ho.total_timeout_ms;
        if (a->attempt_limited)
            ho.total_timeout_ms = (long)attempt_ms;
        a->sent_ns = now;
        rc = fr_http_submit(a->http, &hr, &ho, on_data, on_done, a, &a->xfer);
    }
    if (rc != FR_OK && !err->msg[0])
        fr_error_set(err, rc, NULL, 0, "could not start the request: %s", fr_strerror(rc));
    fr_request_close(&hr);
    return rc;
}

static void try_turn(wire_attempt *a);

static void on_wait(uv_timer_t *timer)
{
    try_turn(timer->data);
}

/* The next turn asks the caps to hold it, then goes out; it waits while
 * spend in flight may still settle. */
static void try_turn(wire_attempt *a)
{
    fr_error err = {0};
    size_t bytes = fr_convo_bytes(a->convo, a->call.system, a->call.tools);
    int rc = a->tools.turn_begin(a->tools.ud, (long)(bytes / 4) + 1, (long)bytes + 32, &err);
    if (rc == 1) {
        if (!a->wait) {
            a->wait = fr_xcalloc(1, sizeof *a->wait);
            uv_timer_init(fr_http_loop(a->http), a->wait);
            a->wait->data = a;
        }
        uv_timer_start(a->wait, on_wait, TURN_WAIT_MS, 0);
        return;
    }
    if (rc == FR_OK)
        rc = send_turn(a, &err);
    if (rc != FR_OK)
        fail(a, rc, &err);
}

static void on_tool(void *ud, fr_tool_result *r, const fr_toolcall_info *info)
{
    call_slot *slot = ud;
    wire_attempt *a = slot->a;
    slot->h = NULL;
    if (a->tools.tool_done)
        a->tools.tool_done(a->tools.ud, info, r, fr_convo_call_args(a->convo, slot->i));
    if (!fr_convo_set_result(a->convo, slot->i, r))
        return;
    fr_error err = {0};
    if (fr_convo_begin_turn(a->convo, &err) != FR_OK)
        fail(a, FR_ETURNS, &err);
    else
        try_turn(a);
}

/* A reply asked for tools: the turn is settled, the calls start (all at
 * once); the last result sends the next turn. FR_OK, or FR_ETURNS. */
static int run_calls(wire_attempt *a, fr_reply *reply, double turn_ms, fr_error *err)
{
    a->tools.turn_end(a->tools.ud, &reply->usage, turn_ms);
    int rc = fr_convo_add_calls(a->convo, reply->text, reply->tool_calls, err);
    if (rc != FR_OK)
        return rc;
    size_t n = fr_convo_pending(a->convo);
    free(a->slots);
    a->slots = fr_xcalloc(n, sizeof *a->slots);
    a->nslots = n;
    for (size_t i = 0; i < n; i++)
        a->slots[i] = (call_slot){.a = a, .i = i};
    /* Every call starts before any result can come (results never come
     * from inside fr_toolset_call), so the slots stay put. */
    for (size_t i = 0; i < n; i++)
        fr_toolset_call(a->tools.set, a->tools.task, fr_convo_call_name(a->convo, i),
                        fr_convo_call_args(a->convo, i), on_tool, &a->slots[i], &a->slots[i].h);
    return FR_OK;
}

static void on_done(void *ud, const fr_http_result *res)
{
    wire_attempt *a = ud;
    a->xfer = NULL;
    fr_outcome o = {
        .status = res->status,
        .retry_after_s = res->retry_after_s,
        .delivered = res->rc == FR_OK,
        .billed = res->status >= 200 && res->status < 300 && res->bytes > 0,
        .no_fds = res->no_fds,
    };
    if (res->no_fds) {
        o.rc = res->rc;
        fr_error_set(&o.err, res->rc, NULL, 0, "%s", res->error ? res->error : "no descriptor");
    } else {
        read_result(a, res, &o);
    }
    if (o.rc == FR_OK && a->convo && o.reply.tool_calls && o.reply.finish == FR_FINISH_TOOL_CALL) {
        double turn_ms = (double)(uv_hrtime() - a->sent_ns) / 1e6;
        fr_error err = {0};
        int rc = run_calls(a, &o.reply, turn_ms, &err);
        fr_reply_close(&o.reply);
        if (rc != FR_OK)
            fail(a, rc, &err);
        return;
    }
    finish(a, &o);
}

static int wire_start(void *ud, const fr_attempt_req *req, fr_attempt_done_fn done, void *done_ud,
                      void **handle, fr_error *err)
{
    wire_attempt *a = fr_xcalloc(1, sizeof *a);
    a->http = ud;
    a->ttft_ms = -1;
    a->done = done;
    a->done_ud = done_ud;
    a->call = req->call;
    a->protocol = req->protocol;
    a->endpoint = req->endpoint;
    a->streamed = req->streamed;
    a->first_ns = uv_hrtime();
    a->deadline_ns = a->first_ns + (uint64_t)((req->left_ms > 1 ? req->left_ms : 1) * 1e6);
    int rc = FR_OK;
    if (req->tools && req->call.tools) {
        a->has_tools = true;
        a->tools = *req->tools;
        a->convo = fr_convo_new(req->call.prompt, req->tools->resume, req->tools->max_turns,
                                req->tools->max_tool_calls);
        rc = fr_convo_begin_turn(a->convo, err);
    }
    if (rc == FR_OK)
        rc = send_turn(a, err);
    if (rc != FR_OK) {
        wire_free(a);
        a = NULL;
    }
    *handle = a;
    return rc;
}

static void wire_cancel(void *ud, void *handle)
{
    (void)ud;
    wire_free(handle);
}

fr_attempt_backend fr_attempt_wire(fr_http *http)
{
    return (fr_attempt_backend){.ud = http, .start = wire_start, .cancel = wire_cancel};
}

fr_http *fr_attempt_wire_for_run(uv_loop_t *loop, int fd_cap, fr_attempt_backend *backend)
{
    fr_http *http = fr_http_new(loop);
    if (http && fd_cap > 0)
        fr_http_set_max_connections(http, fd_cap);
    if (http)
        *backend = fr_attempt_wire(http);
    return http;
}
