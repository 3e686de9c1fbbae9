/* Endpoint health checks (engine/probe.h). Each endpoint walks its steps
 * one after the other (the model list, Ollama's loaded models, the
 * one-token request); all endpoints walk at once. */

#include "engine/probe.h"

#include "engine/util/buf.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"
#include "providers/provider.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STEP_LIST, STEP_PS, STEP_CHAT, STEP_DONE };
enum { BODY_CAP = 4 << 20, DEFAULT_TIMEOUT_MS = 5000 };

typedef struct probe_ep {
    fr_probe *p;
    size_t e;
    int step;
    fr_xfer *xfer;
    fr_buf body;
    fr_adapter *adapter; /* STEP_CHAT's */
    uint64_t t0;         /* uv_hrtime at the chat request's submit */
    /* what was found */
    bool reachable;
    char *error;
    long models_status;
    int model_present; /* -1 unknown, 0, 1 */
    int loaded;        /* -1 unknown (not Ollama, or no answer), 0, 1 */
    bool rejected;
    double ttft_ms; /* -1 until a first token */
    char *probe_error;
} probe_ep;

struct fr_probe {
    fr_http *http;
    const fr_endpoints *eps;
    fr_probe_opts opts;
    probe_ep *ep;
    size_t n, pending;
    fr_probe_done_fn done;
    void *ud;
};

static void step(probe_ep *pe);

/* The chat adapter's call for endpoint `e`: one token, no schema, no tools. */
static fr_adapter *chat_adapter(const fr_endpoints *eps, size_t e)
{
    const fr_endpoint_spec *spec = fr_ep_spec(eps, e);
    fr_call call = {
        .base_url = fr_ep_url(eps, e),
        .model = fr_ep_model(eps, e),
        .prompt = "Reply with one word.",
        .max_tokens = 1,
        .temperature = 0,
        .stream = spec->stream,
        .api_key = fr_ep_key(eps, e),
        .context = spec->context,
        .keep_alive = spec->keep_alive,
        .max_completion_tokens = spec->max_completion_tokens,
    };
    return fr_adapter_new(fr_ep_protocol(eps, e), &call);
}

/* The chat path each protocol's adapter appends, and what the model lists
 * are at in its place. */
static const struct {
    fr_protocol proto;
    const char *chat;
    const char *list;
    const char *ps;
} paths[] = {
    {FR_PROTO_OPENAI, "/chat/completions", "/models", NULL},
    {FR_PROTO_OLLAMA, "/api/chat", "/api/tags", "/api/ps"},
    {FR_PROTO_ANTHROPIC, "/messages", "/models", NULL},
};

static const char *step_path(fr_protocol proto, int st, const char **chat)
{
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (paths[i].proto == proto) {
            *chat = paths[i].chat;
            return st == STEP_LIST ? paths[i].list : st == STEP_PS ? paths[i].ps : paths[i].chat;
        }
    return NULL;
}

/* Owned, redacted copy of a message. */
static char *clean(const char *msg)
{
    return fr_redact(msg ? msg : "");
}

static void finish_ep(probe_ep *pe)
{
    pe->step = STEP_DONE;
    fr_probe *p = pe->p;
    if (--p->pending == 0 && p->done)
        p->done(p->ud);
}

/* Whether the model list in `body` names `model`: OpenAI's and Anthropic's
 * data[].id, Ollama's models[].name or .model ("m" matches "m:latest"). */
static int list_has_model(fr_protocol proto, const char *body, const char *model)
{
    json_t *doc = json_loads(body ? body : "", 0, NULL);
    json_t *arr = json_object_get(doc, proto == FR_PROTO_OLLAMA ? "models" : "data");
    int found = json_is_array(arr) ? 0 : -1;
    size_t i;
    json_t *m;
    char *latest = fr_xasprintf("%s:latest", model ? model : "");
    json_array_foreach(arr, i, m)
    {
        const char *keys[] = {"id", "name", "model"};
        for (size_t k = 0; k < 3; k++) {
            const char *v = json_string_value(json_object_get(m, keys[k]));
            if (v && model &&
                (strcmp(v, model) == 0 || (!strchr(model, ':') && strcmp(v, latest) == 0)))
                found = 1;
        }
    }
    free(latest);
    json_decref(doc);
    return found;
}

static int on_data(void *ud, long status, const char *data, size_t len)
{
    probe_ep *pe = ud;
    if (pe->step != STEP_CHAT)
        return fr_buf_append(&pe->body, data, len);
    int rc = fr_adapter_feed(pe->adapter, status, data, len);
    if (pe->ttft_ms < 0 && fr_adapter_started(pe->adapter))
        pe->ttft_ms = (double)(uv_hrtime() - pe->t0) / 1e6;
    return rc;
}

/* The one-token request's end: a reply is fine, an error says why. */
static void chat_done(probe_ep *pe, const fr_http_result *res)
{
    fr_reply reply = {0};
    fr_error err = {0};
    int rc = fr_adapter_finish(pe->adapter, res->status, &reply, &err);
    if (res->rc != FR_OK)
        pe->probe_error = clean(res->error);
    else if (rc != FR_OK) {
        char *msg = fr_xasprintf("HTTP %ld: %s", res->status, err.msg);
        pe->probe_error = clean(msg);
        free(msg);
        if (res->status == 401 || res->status == 403)
            pe->rejected = true;
    } else if (pe->ttft_ms < 0)
        pe->ttft_ms = res->ttfb_ms >= 0 ? res->ttfb_ms : res->total_ms;
    fr_reply_close(&reply);
    fr_adapter_free(pe->adapter);
    pe->adapter = NULL;
}

static void on_done(void *ud, const fr_http_result *res)
{
    probe_ep *pe = ud;
    fr_probe *p = pe->p;
    pe->xfer = NULL;
    fr_protocol proto = fr_ep_protocol(p->eps, pe->e);
    int st = pe->step;
    if (st == STEP_CHAT) {
        chat_done(pe, res);
        pe->step = STEP_DONE;
    } else if (res->rc != FR_OK) {
        if (st == STEP_LIST) {
            pe->error = clean(res->error);
            pe->step = STEP_DONE; /* unreachable: nothing more to ask */
        } else {
            pe->step = p->opts.one_token ? STEP_CHAT : STEP_DONE;
        }
    } else if (st == STEP_LIST) {
        pe->reachable = true;
        pe->models_status = res->status;
        if (res->status == 401 || res->status == 403)
            pe->rejected = true;
        else if (res->status >= 200 && res->status < 300)
            pe->model_present =
                list_has_model(proto, fr_buf_str(&pe->body), fr_ep_model(p->eps, pe->e));
        bool listed = res->status >= 200 && res->status < 300;
        pe->step = listed && proto == FR_PROTO_OLLAMA   ? STEP_PS
                   : p->opts.one_token && !pe->rejected ? STEP_CHAT
                                                        : STEP_DONE;
    } else { /* STEP_PS */
        if (res->status >= 200 && res->status < 300)
            pe->loaded =
                list_has_model(proto, fr_buf_str(&pe->body), fr_ep_model(p->eps, pe->e)) == 1;
        pe->step = p->opts.one_token ? STEP_CHAT : STEP_DONE;
    }
    fr_buf_reset(&pe->body);
    step(pe);
}

/* Submits the request of pe's current step, or ends the endpoint. */
static void step(probe_ep *pe)
{
    fr_probe *p = pe->p;
    if (pe->step == STEP_DONE) {
        finish_ep(pe);
        return;
    }
    const char *chat = NULL;
    const char *path = step_path(fr_ep_protocol(p->eps, pe->e), pe->step, &chat);
    fr_adapter *a = chat_adapter(p->eps, pe->e);
    fr_request req = {0};
    fr_error err = {0};
    int rc = fr_adapter_request(a, &req, &err);
    size_t ulen = req.url ? strlen(req.url) : 0, clen = strlen(chat);
    if (rc == FR_OK && (ulen < clen || strcmp(req.url + ulen - clen, chat) != 0))
        rc = fr_error_set(&err, FR_ECONFIG, "endpoint", 0, "unexpected request URL");
    if (rc != FR_OK) {
        pe->error = clean(err.msg);
        fr_adapter_free(a);
        fr_request_close(&req);
        finish_ep(pe);
        return;
    }
    fr_http_opts o = {
        .max_response = BODY_CAP,
        .connect_timeout_ms = p->opts.timeout_ms,
        .total_timeout_ms = p->opts.timeout_ms,
    };
    if (pe->step == STEP_CHAT) {
        pe->adapter = a;
        pe->t0 = uv_hrtime();
    } else {
        char *url = fr_xasprintf("%.*s%s", (int)(ulen - clen), req.url, path);
        free(req.url);
        req.url = url;
        free(req.body);
        req.body = NULL;
        o.method = "GET";
        fr_adapter_free(a);
    }
    rc = fr_http_submit(p->http, &req, &o, on_data, on_done, pe, &pe->xfer);
    fr_request_close(&req);
    if (rc != FR_OK) {
        pe->error = fr_xasprintf("cannot start a request (%s)", fr_err_name(rc));
        fr_adapter_free(pe->adapter);
        pe->adapter = NULL;
        finish_ep(pe);
    }
}

fr_probe *fr_probe_start(fr_http *http, const fr_endpoints *eps, const fr_probe_opts *opts,
                         fr_probe_done_fn done, void *ud)
{
    fr_probe *p = fr_xcalloc(1, sizeof *p);
    p->http = http;
    p->eps = eps;
    p->opts = *opts;
    if (p->opts.timeout_ms <= 0)
        p->opts.timeout_ms = DEFAULT_TIMEOUT_MS;
    p->n = p->pending = fr_endpoints_count(eps);
    p->ep = fr_xcalloc(p->n + 1, sizeof *p->ep);
    p->done = done;
    p->ud = ud;
    fr_http_set_max_connections(http, (long)p->n + 1);
    for (size_t e = 0; e < p->n; e++) {
        probe_ep *pe = &p->ep[e];
        pe->p = p;
        pe->e = e;
        pe->model_present = -1;
        pe->loaded = -1;
        pe->ttft_ms = -1;
        fr_buf_init(&pe->body, BODY_CAP);
    }
    if (p->n == 0 && done)
        done(ud);
    for (size_t e = 0; e < p->n; e++)
        step(&p->ep[e]);
    return p;
}

static void problem(json_t *list, const char *fmt, const char *arg)
{
    char *msg = fr_xasprintf(fmt, arg ? arg : "");
    json_array_append_new(list, json_string(msg));
    free(msg);
}

json_t *fr_probe_result(const fr_probe *p, size_t e)
{
    const probe_ep *pe = &p->ep[e];
    const fr_endpoint_spec *spec = fr_ep_spec(p->eps, e);
    const char *key = !spec->api_key_env      ? "none"
                      : !fr_ep_key(p->eps, e) ? "missing"
                      : pe->rejected          ? "rejected"
                                              : "set";
    json_t *problems = json_array();
    if (!pe->reachable)
        problem(problems, "unreachable: %s", pe->error ? pe->error : "no answer");
    if (strcmp(key, "missing") == 0)
        problem(problems, "the key variable %s is not set", spec->api_key_env);
    else if (pe->rejected && spec->api_key_env)
        problem(problems, "the server refused the key in %s (HTTP 401/403)", spec->api_key_env);
    else if (pe->rejected)
        problem(problems, "the server asks for a key (HTTP 401/403)%s: set api_key_env", NULL);
    if (pe->model_present == 0)
        problem(problems, "the server does not list the model '%s'", fr_ep_model(p->eps, e));
    if (pe->probe_error && !pe->rejected)
        problem(problems, "the one-token request failed: %s", pe->probe_error);
    json_t *o = json_pack("{s:b,s:s,s:I}", "reachable", pe->reachable, "key", key, "models_status",
                          (json_int_t)pe->models_status);
    if (pe->error && !pe->reachable)
        json_object_set_new(o, "error", json_string(pe->error));
    json_object_set_new(o, "model_present",
                        pe->model_present < 0 ? json_null() : json_boolean(pe->model_present));
    if (pe->loaded >= 0)
        json_object_set_new(o, "loaded", json_boolean(pe->loaded));
    if (pe->ttft_ms >= 0 && !pe->probe_error)
        json_object_set_new(o, "ttft_ms", json_real(round(pe->ttft_ms * 10) / 10));
    if (pe->probe_error)
        json_object_set_new(o, "probe_error", json_string(pe->probe_error));
    json_object_set_new(o, "usable", json_boolean(json_array_size(problems) == 0));
    json_object_set_new(o, "problems", problems);
    return o;
}

void fr_probe_free(fr_probe *p)
{
    if (!p)
        return;
    for (size_t e = 0; e < p->n; e++) {
        probe_ep *pe = &p->ep[e];
        if (pe->xfer)
            fr_http_cancel(p->http, pe->xfer);
        fr_adapter_free(pe->adapter);
        fr_buf_close(&pe->body);
        free(pe->error);
        free(pe->probe_error);
    }
    free(p->ep);
    free(p);
}

char *fr_probe_public_url(const char *url)
{
    if (!url)
        return NULL;
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t hostlen = strcspn(host, "/?#");
    const char *at = memchr(host, '@', hostlen);
    const char *from = at ? at + 1 : host;
    size_t rest = strcspn(from, "?#");
    return fr_xasprintf("%.*s%.*s", (int)(host - url), url, (int)rest, from);
}
