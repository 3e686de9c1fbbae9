#include "engine/history.h"

#include "engine/util/mem.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* What one key (or one endpoint over all its keys) sums, as the store's
 * routing_history row and bins do (engine/store/open.c, schema 11). */
typedef struct sums {
    long settled, passes, fails, errors, score_n, out_tokens;
    bool has_ref;
    double w_pass, w_fail, w_ref, last_at, score_sum, cost_sum, reply_ms;
    long nbin[2];                            /* values binned, per metric */
    uint32_t bins[2][FR_STORE_HISTORY_BINS]; /* latency, time to first content */
    bool stale;                              /* p50 to compute again */
    double p50[2];                           /* < 0: none */
    /* The view last computed (view_of), as of view_at, valid when
     * has_view and not stale: every change of the sums sets stale, and a
     * decision's views are taken at whole seconds, so most reuse it. */
    bool has_view;
    double view_at;
    fr_policy_hist view;
} sums;

typedef struct hkey {
    char *type;
    int band;
    sums s;
} hkey;

typedef struct endpoint {
    char *name;
    hkey *keys;
    size_t nkeys, cap;
    sums all;
} endpoint;

struct fr_history {
    endpoint *eps;
    size_t n, cap;
    bool open;    /* made without names: takes every endpoint it is told of */
    double clock; /* fr_history_set_clock; 0: the real one */
};

int fr_history_band(double complexity)
{
    return fr_store_history_band(true, complexity);
}

static void add_endpoint(fr_history *h, const char *name)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 8;
        h->eps = fr_xrealloc(h->eps, h->cap * sizeof *h->eps);
    }
    h->eps[h->n++] = (endpoint){.name = fr_xstrdup(name), .all = {.stale = true}};
}

fr_history *fr_history_new(const char *const *names, size_t n)
{
    fr_history *h = fr_xcalloc(1, sizeof *h);
    h->open = !names;
    for (size_t i = 0; names && i < n; i++)
        add_endpoint(h, names[i]);
    return h;
}

fr_history *fr_history_for_workflow(const fr_workflow *wf)
{
    fr_history *h = fr_history_new(NULL, 0);
    for (size_t i = 0; i < wf->nendpoints; i++)
        add_endpoint(h, wf->endpoints[i].name);
    h->open = false;
    return h;
}

void fr_history_free(fr_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        for (size_t k = 0; k < h->eps[i].nkeys; k++)
            free(h->eps[i].keys[k].type);
        free(h->eps[i].keys);
        free(h->eps[i].name);
    }
    free(h->eps);
    free(h);
}

/* The endpoint named `name`, or NULL (added when the history is open). */
static endpoint *find_endpoint(fr_history *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->eps[i].name, name) == 0)
            return &h->eps[i];
    if (!h->open)
        return NULL;
    add_endpoint(h, name);
    return &h->eps[h->n - 1];
}

/* The key (`type`, `band`) of `e`, added when missing. */
static sums *find_key(endpoint *e, const char *type, int band, bool add)
{
    for (size_t k = 0; k < e->nkeys; k++)
        if (e->keys[k].band == band && strcmp(e->keys[k].type, type) == 0)
            return &e->keys[k].s;
    if (!add)
        return NULL;
    if (e->nkeys == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->keys = fr_xrealloc(e->keys, e->cap * sizeof *e->keys);
    }
    e->keys[e->nkeys] = (hkey){.type = fr_xstrdup(type), .band = band, .s = {.stale = true}};
    return &e->keys[e->nkeys++].s;
}

/* Adds decayed sums `pass` and `fail`, relative to `ref`, to `s`: taken to
 * s's reference time, which the first gated evidence sets (as the store's
 * upsert does). */
static void add_decayed(sums *s, double pass, double fail, double ref, double last_at)
{
    if (!s->has_ref) {
        s->has_ref = true;
        s->w_ref = ref;
        s->last_at = last_at;
    }
    double f = pow(2, (ref - s->w_ref) / FR_STORE_HISTORY_HALF_LIFE_S);
    s->w_pass += pass * f;
    s->w_fail += fail * f;
    if (last_at > s->last_at)
        s->last_at = last_at;
}

/* Adds the sums of a store row `r` (borrowed; not a bin) to `s`. */
static void add_row(sums *s, const fr_store_history_row *r)
{
    s->settled += r->settled;
    s->passes += r->passes;
    s->fails += r->fails;
    s->errors += r->errors;
    s->score_n += r->score_n;
    s->out_tokens += r->out_tokens;
    s->score_sum += r->score_sum;
    s->cost_sum += r->cost_sum;
    s->reply_ms += r->reply_ms;
    if (r->has_w_ref)
        add_decayed(s, r->w_pass, r->w_fail, r->w_ref, r->last_at);
    s->stale = true;
}

static void add_bin(sums *s, int metric, int bin, long n)
{
    if (metric < 0 || metric > 1 || bin < 0 || bin >= FR_STORE_HISTORY_BINS || n <= 0)
        return;
    s->bins[metric][bin] += (uint32_t)n;
    s->nbin[metric] += n;
    s->stale = true;
}

static void on_row(void *ud, const fr_store_history_row *r)
{
    fr_history *h = ud;
    endpoint *e = find_endpoint(h, r->endpoint);
    if (!e)
        return;
    sums *s = find_key(e, r->type, r->band, true);
    if (!r->is_bin) {
        add_row(s, r);
        add_row(&e->all, r);
        return;
    }
    add_bin(s, 0, r->lat_bin, r->n);
    add_bin(&e->all, 0, r->lat_bin, r->n);
    if (r->ttft_bin >= 0) {
        add_bin(s, 1, r->ttft_bin, r->n);
        add_bin(&e->all, 1, r->ttft_bin, r->n);
    }
}

int fr_history_load(fr_history *h, fr_store *st, fr_error *err)
{
    const char **names = NULL;
    if (!h->open) {
        names = fr_xcalloc(h->n ? h->n : 1, sizeof *names);
        for (size_t i = 0; i < h->n; i++)
            names[i] = h->eps[i].name;
    }
    int rc = fr_store_history(st, names, h->n, on_row, h, err);
    free(names);
    return rc;
}

int fr_history_load_from(fr_history *h, const char *state, fr_error *err)
{
    fr_store *st = NULL;
    int rc = fr_store_open_readonly(state, &st, err);
    if (rc == FR_OK)
        rc = fr_history_load(h, st, err);
    else if (rc == FR_ENOENT)
        rc = FR_OK;
    fr_store_close(st);
    return rc;
}

/* What attempt `a`, settled at `at`, adds to `s`. */
static void add_attempt(sums *s, const fr_attempt_rec *a, double at)
{
    bool g = fr_store_outcome_gated(a->outcome), pass = strcmp(a->outcome, "ok") == 0;
    s->settled++;
    s->cost_sum += a->cost_usd;
    if (strcmp(a->outcome, "error") == 0 || strcmp(a->outcome, "timeout") == 0)
        s->errors++;
    s->stale = true;
    if (!g)
        return;
    s->passes += pass;
    s->fails += !pass;
    add_decayed(s, pass, !pass, at, at);
    if (a->has_score && isfinite(a->score)) {
        s->score_sum += a->score;
        s->score_n++;
    }
    s->out_tokens += a->output;
    s->reply_ms += a->latency_ms;
    add_bin(s, 0, fr_store_history_bin(a->latency_ms), 1);
    if (a->has_ttft && isfinite(a->ttft_ms) && a->ttft_ms >= 0)
        add_bin(s, 1, fr_store_history_bin(a->ttft_ms), 1);
}

void fr_history_add(fr_history *h, const fr_attempt_rec *a, double at)
{
    if (!h || !a->outcome || strcmp(a->outcome, "pending") == 0 || !a->endpoint)
        return;
    endpoint *e = find_endpoint(h, a->endpoint);
    if (!e)
        return;
    int band = fr_store_history_band(a->has_complexity, a->complexity);
    add_attempt(find_key(e, a->type ? a->type : "-", band, true), a, at);
    add_attempt(&e->all, a, at);
}

/* The median of metric `m`'s bins: the geometric middle of the bin that
 * holds the lower median; < 0 without values. */
static double median(const sums *s, int m)
{
    long half = (s->nbin[m] + 1) / 2, seen = 0;
    if (s->nbin[m] <= 0)
        return -1;
    for (int b = 0; b < FR_STORE_HISTORY_BINS; b++) {
        seen += s->bins[m][b];
        if (seen >= half)
            return exp2((b + 0.5) / 4);
    }
    return -1;
}

/* `s` as a policy sees it at `now`. */
static void view_of(sums *s, double now, fr_policy_hist *out)
{
    if (!s->stale && s->has_view && s->view_at == now) {
        *out = s->view;
        return;
    }
    if (s->stale) {
        s->p50[0] = median(s, 0);
        s->p50[1] = median(s, 1);
        s->stale = false;
    }
    long gated_n = s->passes + s->fails;
    double w = s->w_pass + s->w_fail;
    *out = (fr_policy_hist){
        .attempts = gated_n,
        .passes = s->passes,
        .fails = s->fails,
        .errors = s->errors,
        .weight = s->has_ref ? w * exp2((s->w_ref - now) / FR_STORE_HISTORY_HALF_LIFE_S) : 0,
        .pass_rate = gated_n > 0 && w > 0 ? s->w_pass / w : -1,
        .score_mean = s->score_n > 0 ? s->score_sum / (double)s->score_n : -1,
        .latency_p50_ms = s->p50[0],
        .ttft_p50_ms = s->p50[1],
        .tokens_per_s =
            gated_n > 0 && s->reply_ms > 0 ? (double)s->out_tokens * 1000 / s->reply_ms : -1,
        .cost_mean_usd = s->settled > 0 ? s->cost_sum / (double)s->settled : -1,
        .age_s = s->has_ref ? (now > s->last_at ? now - s->last_at : 0) : -1,
        .band_lo = 0,
        .band_hi = 1,
    };
    s->view = *out;
    s->view_at = now;
    s->has_view = true;
}

static void band_of(fr_policy_hist *out, int band, const char *type)
{
    out->band_lo = band / (double)FR_HISTORY_BANDS;
    out->band_hi = (band + 1) / (double)FR_HISTORY_BANDS;
    out->type = type;
}

void fr_history_view(fr_history *h, size_t ep, const char *type, double complexity, double now,
                     fr_policy_hist *key, fr_policy_hist *all)
{
    static sums none = {.p50 = {-1, -1}};
    int band = fr_history_band(complexity);
    const char *t = type ? type : "-";
    endpoint *e = h && ep < h->n ? &h->eps[ep] : NULL;
    sums *s = e ? find_key(e, t, band, false) : NULL;
    view_of(s ? s : &none, now, key);
    band_of(key, band, t);
    view_of(e ? &e->all : &none, now, all);
}

void fr_history_each(fr_history *h, double now,
                     void (*each)(void *ud, const char *endpoint, const fr_policy_hist *rec,
                                  const fr_policy_hist *all),
                     void *ud)
{
    for (size_t i = 0; h && i < h->n; i++) {
        fr_policy_hist all;
        view_of(&h->eps[i].all, now, &all);
        for (size_t k = 0; k < h->eps[i].nkeys; k++) {
            hkey *kk = &h->eps[i].keys[k];
            fr_policy_hist rec;
            view_of(&kk->s, now, &rec);
            band_of(&rec, kk->band, kk->type);
            each(ud, h->eps[i].name, &rec, &all);
        }
    }
}

void fr_history_set_clock(fr_history *h, double now)
{
    h->clock = now;
}

double fr_history_now(const fr_history *h)
{
    return h && h->clock > 0 ? floor(h->clock) : (double)time(NULL);
}
