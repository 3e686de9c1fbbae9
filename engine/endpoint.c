#include "engine/endpoint.h"

#include "engine/retry.h"
#include "engine/util/err.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/redact.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Connection failures in a row (each after the cooldown of the one
 * before: 1 + 2 + 4 s) after which an endpoint counts as unreachable for
 * the rest of the run, so its tasks move elsewhere or fail with the reason
 * instead of waiting out ever longer cooldowns. */
#define DOWN_AFTER_FAILURES 4
#define NLAT                64

typedef struct ep_rt {
    const fr_endpoint_spec *spec;
    char *url;
    char *model;
    char *api_key; /* owned, wiped before free; NULL for none */
    bool usable;
    char *unusable;        /* why not, when !usable */
    double cooldown_until; /* clock ms */
    int strikes;           /* failures in a row that cool it down; a success resets */
    long cooldowns;
    double cooldown_ms;
    int conn_failures; /* connection failures in a row, counted once per cooldown */
    long requests;
    long failures;
    long connect_failures;
    char *connect_error;
    bool down;
    double lat[NLAT];    /* the most recent successful latencies, ms (a ring) */
    double sorted[NLAT]; /* the same window, ascending: the median is read in O(1) */
    size_t nlat;         /* samples ever recorded; the ring holds the last NLAT */
} ep_rt;

struct fr_endpoints {
    ep_rt *eps;
    size_t n;
};

static void init_endpoint(ep_rt *e, const fr_endpoint_spec *s, bool standin)
{
    e->spec = s;
    e->usable = true;
    if (standin) {
        e->model = fr_xstrdup(s->name);
        return; /* the URL is set once the stand-in listens */
    }
    e->url = fr_xstrdup(s->url);
    e->model = fr_xstrdup(s->model);
    if (!s->api_key_env)
        return;
    const char *key = getenv(s->api_key_env);
    if (key && *key) {
        e->api_key = fr_xstrdup(key);
        fr_redact_add(key); /* never in any log, report or row */
    } else {
        e->usable = false;
        e->unusable = fr_xasprintf("environment variable %s is not set", s->api_key_env);
    }
}

fr_endpoints *fr_endpoints_new(const fr_workflow *wf, bool standin)
{
    fr_endpoints *eps = fr_xcalloc(1, sizeof *eps);
    eps->n = wf->nendpoints;
    eps->eps = fr_xcalloc(eps->n ? eps->n : 1, sizeof *eps->eps);
    for (size_t i = 0; i < eps->n; i++)
        init_endpoint(&eps->eps[i], &wf->endpoints[i], standin);
    return eps;
}

void fr_endpoints_free(fr_endpoints *eps)
{
    if (!eps)
        return;
    for (size_t i = 0; i < eps->n; i++) {
        ep_rt *e = &eps->eps[i];
        if (e->api_key) {
            fr_wipe(e->api_key, strlen(e->api_key));
            free(e->api_key);
        }
        free(e->url);
        free(e->model);
        free(e->unusable);
        free(e->connect_error);
    }
    free(eps->eps);
    free(eps);
}

size_t fr_endpoints_count(const fr_endpoints *eps)
{
    return eps->n;
}

const fr_endpoint_spec *fr_ep_spec(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].spec;
}

const char *fr_ep_url(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].url;
}

const char *fr_ep_model(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].model;
}

const char *fr_ep_key(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].api_key;
}

fr_protocol fr_ep_protocol(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].spec->protocol;
}

void fr_ep_set_url(fr_endpoints *eps, size_t e, const char *url)
{
    free(eps->eps[e].url);
    eps->eps[e].url = fr_xstrdup(url);
}

bool fr_ep_usable(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].usable;
}

const char *fr_ep_unusable(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].usable ? NULL : eps->eps[e].unusable;
}

double fr_ep_cooldown_until(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].cooldown_until;
}

bool fr_ep_down(const fr_endpoints *eps, size_t e)
{
    return eps->eps[e].down;
}

double fr_ep_p50(const fr_endpoints *eps, size_t e)
{
    const ep_rt *ep = &eps->eps[e];
    size_t n = ep->nlat < NLAT ? ep->nlat : NLAT;
    /* The upper median for an even count (of 4 samples, the 3rd smallest):
     * always one latency that was observed, never a mean of two. */
    return n == 0 ? -1 : ep->sorted[n / 2];
}

/* The first index of the `n` ascending values `v` whose value is greater
 * than `x` (`or_equal`: not less than `x`). */
static size_t bound(const double *v, size_t n, double x, bool or_equal)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x || (!or_equal && v[mid] == x))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Records `latency_ms` in the window of `ep`: it replaces the oldest
 * sample once the window is full, in the ring and in the sorted copy. */
static void record_latency(ep_rt *ep, double latency_ms)
{
    size_t n = ep->nlat < NLAT ? ep->nlat : NLAT;
    double *slot = &ep->lat[ep->nlat % NLAT];
    if (n == NLAT) {
        size_t at = bound(ep->sorted, n, *slot, true); /* one sample of the evicted value */
        memmove(&ep->sorted[at], &ep->sorted[at + 1], (n - at - 1) * sizeof *ep->sorted);
        n--;
    }
    size_t at = bound(ep->sorted, n, latency_ms, false);
    memmove(&ep->sorted[at + 1], &ep->sorted[at], (n - at) * sizeof *ep->sorted);
    ep->sorted[at] = latency_ms;
    *slot = latency_ms;
    ep->nlat++;
}

fr_ep_stats fr_ep_stats_of(const fr_endpoints *eps, size_t e)
{
    const ep_rt *ep = &eps->eps[e];
    return (fr_ep_stats){
        .requests = ep->requests,
        .failures = ep->failures,
        .connect_failures = ep->connect_failures,
        .connect_error = ep->connect_error,
        .successes = (long)ep->nlat,
        .cooldowns = ep->cooldowns,
        .cooldown_ms = ep->cooldown_ms,
        .usable = ep->usable,
        .unusable = ep->usable ? NULL : ep->unusable,
    };
}

void fr_ep_sent(fr_endpoints *eps, size_t e)
{
    eps->eps[e].requests++;
}

void fr_ep_unsent(fr_endpoints *eps, size_t e)
{
    eps->eps[e].requests--;
}

void fr_ep_succeeded(fr_endpoints *eps, size_t e, double latency_ms)
{
    ep_rt *ep = &eps->eps[e];
    record_latency(ep, latency_ms);
    ep->strikes = 0;
    ep->conn_failures = 0;
    ep->down = false;
}

static void disable(ep_rt *e, char *why)
{
    e->usable = false;
    free(e->unusable);
    e->unusable = why;
    fr_log_event(FR_LOG_ERROR, "endpoint", "endpoint.disabled",
                 "endpoint=%s disabled for this run: %s", e->spec->name, e->unusable);
}

void fr_ep_failed(fr_endpoints *eps, size_t i, int rc, long status, double retry_after_s,
                  const char *msg, double now_ms)
{
    ep_rt *e = &eps->eps[i];
    e->failures++;
    if (rc == FR_ECONNECT) {
        e->connect_failures++;
        e->down = true;
        free(e->connect_error);
        e->connect_error = fr_xstrdup(msg);
    }
    if (rc == FR_EHTTP &&
        (status == 401 || status == 403 || fr_retry_quota_exhausted(status, msg))) {
        if (!e->usable)
            return;
        if (status == 401 || status == 403)
            disable(e, fr_xasprintf("HTTP %ld: its key was refused; check the key in %s", status,
                                    e->spec->api_key_env ? e->spec->api_key_env
                                                         : "(no api_key_env is set)"));
        else
            disable(e, fr_xstrdup("its quota or spending limit is used up (HTTP 429)"));
        return;
    }
    bool overload = rc == FR_EHTTP && (status == 429 || status == 503);
    if (!overload && rc != FR_ECONNECT)
        return;
    bool cooling = e->cooldown_until > now_ms;
    if (rc == FR_ECONNECT && !cooling && ++e->conn_failures >= DOWN_AFTER_FAILURES && e->usable) {
        /* Requests sent while it was already cooling down tell nothing
         * new; this is the Nth probe in a row that found nothing there. */
        disable(e, fr_xasprintf("it is unreachable (%d connection failures in a row: %s); "
                                "check that the server at %s is running",
                                e->conn_failures, msg, e->spec->url ? e->spec->url : "its url"));
        return;
    }
    double wait_ms;
    if (overload && retry_after_s >= 0) {
        wait_ms = retry_after_s * 1000.0 + FR_RETRY_AFTER_MARGIN_MS;
    } else if (cooling) {
        return; /* sent before the endpoint cooled down: no new evidence */
    } else {
        wait_ms = 1000.0 * pow(2.0, e->strikes);
        if (wait_ms > 60000)
            wait_ms = 60000;
        e->strikes++;
    }
    double until = now_ms + wait_ms;
    if (until > e->cooldown_until) {
        e->cooldowns++;
        e->cooldown_ms += until - (e->cooldown_until > now_ms ? e->cooldown_until : now_ms);
        e->cooldown_until = until;
    }
    fr_log_event(FR_LOG_INFO, "endpoint", "endpoint.cooldown", "endpoint=%s cooldown_ms=%.0f",
                 e->spec->name, wait_ms);
}

void fr_expected_speed(fr_tier tier, double sim_latency_ms, double sim_tps, double *latency_ms,
                       double *tps)
{
    bool local = tier == FR_TIER_LOCAL;
    *latency_ms = sim_latency_ms >= 0 ? sim_latency_ms : (local ? 150 : 300);
    *tps = sim_tps >= 0 ? sim_tps : (local ? 400 : 800);
}

int fr_endpoints_standin(fr_endpoints *eps, const fr_standin *si, struct uv_loop_s *loop,
                         double sim_latency_ms, double sim_tps)
{
    size_t n = eps->n;
    fr_standin_model *m = fr_xcalloc(n ? n : 1, sizeof *m);
    char **urls = fr_xcalloc(n ? n : 1, sizeof *urls);
    for (size_t e = 0; e < n; e++) {
        const fr_endpoint_spec *s = eps->eps[e].spec;
        m[e] = (fr_standin_model){
            .name = eps->eps[e].model, .protocol = s->protocol, .max_concurrent = s->max_parallel};
        fr_expected_speed(s->tier, sim_latency_ms, sim_tps, &m[e].latency_ms, &m[e].tokens_per_s);
    }
    fr_error err = {0};
    int rc = si->start(si->ud, loop, m, n, urls, &err);
    if (rc == FR_OK) {
        for (size_t e = 0; e < n; e++)
            fr_ep_set_url(eps, e, urls[e]);
    } else {
        char msg[1400];
        fr_log_event(FR_LOG_ERROR, "sim", "run.standin_error", "error=\"%s\"",
                     fr_error_format(&err, msg, sizeof msg));
        rc = FR_EIO;
    }
    for (size_t e = 0; e < n; e++)
        free(urls[e]);
    free(urls);
    free(m);
    return rc;
}
