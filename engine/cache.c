#include "engine/cache.h"

#include "engine/attempt.h"
#include "engine/gate.h"
#include "engine/util/hash.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes `v` in decimal ending at `end` (as "%lld" prints it), and
 * returns where it starts: no printf per number. */
static char *decimal(char *end, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        *--end = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--end = '-';
    return end;
}

/* A field of the key's canonical text: "name=LEN:bytes;", a length-prefixed
 * form that any bytes fit, so no value can run into the next field. */
typedef struct key_field {
    const char *name, *value; /* borrowed */
    size_t name_len, len;
    char num[24]; /* "=LEN:", ending at num + sizeof num */
    char *num_at;
} key_field;

/* Sets `f` to field `name` of `value` (NULL: empty); returns its bytes. */
static size_t set_field(key_field *f, const char *name, const char *value)
{
    f->name = name;
    f->value = value ? value : "";
    f->name_len = strlen(name);
    f->len = strlen(f->value);
    f->num[sizeof f->num - 1] = ':';
    f->num_at = decimal(f->num + sizeof f->num - 1, (long long)f->len);
    *--f->num_at = '=';
    return f->name_len + (size_t)(f->num + sizeof f->num - f->num_at) + f->len + 1;
}

/* The temperature's "%.17g" text: a run's calls nearly all share one, so the
 * last is kept per thread and printf (≈1 µs for 17 digits) runs when it
 * changes. Returns it borrowed, valid until the thread's next call. */
static const char *format_temperature(double t)
{
    static _Thread_local double last;
    static _Thread_local char text[64];
    static _Thread_local bool have;
    /* memcmp, not ==: -0.0 and 0.0 print differently, and a NaN never
     * equals itself. */
    if (!have || memcmp(&last, &t, sizeof t) != 0) {
        snprintf(text, sizeof text, "%.17g", t);
        last = t;
        have = true;
    }
    return text;
}

char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call)
{
    /* Canonical bytes, not JSON: every field is carried whatever its bytes,
     * so text that JSON refuses can never break (or crash) the key. The
     * fields are hashed where they are, not joined into one text first. */
    key_field f[12];
    size_t nf = 0, n = 0;
    char max_tokens[24], seed[24];
    max_tokens[sizeof max_tokens - 1] = seed[sizeof seed - 1] = '\0';
    const char *temperature = format_temperature(call->temperature);
    char *schema = call->schema
                       ? json_dumps(call->schema, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                       : NULL;
    /* The tools offered are part of the request: other tools, another
     * answer. A call without tools keeps the key it always had. */
    char *tools = call->tools ? json_dumps(call->tools, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    n += set_field(&f[nf++], "workflow", workflow);
    n += set_field(&f[nf++], "task", task);
    n += set_field(&f[nf++], "endpoint", endpoint);
    n += set_field(&f[nf++], "protocol", fr_protocol_name(proto));
    n += set_field(&f[nf++], "model", call->model);
    n += set_field(&f[nf++], "system", call->system);
    n += set_field(&f[nf++], "prompt", call->prompt);
    n += set_field(&f[nf++], "max_tokens",
                   decimal(max_tokens + sizeof max_tokens - 1, call->max_tokens));
    n += set_field(&f[nf++], "temperature", temperature);
    n += set_field(&f[nf++], "seed",
                   call->has_seed ? decimal(seed + sizeof seed - 1, call->seed) : NULL);
    n += set_field(&f[nf++], "schema", schema);
    if (tools)
        n += set_field(&f[nf++], "tools", tools);
    /* FNV-1a twice with different offsets, for a 128-bit key; the second's
     * offset holds the text's length. Not a defence against a forger: the
     * cache is the user's own. */
    uint64_t h[2] = {FR_FNV1A64_BASIS, 0x84222325cbf29ce4ULL ^ (uint64_t)n};
    for (size_t i = 0; i < nf; i++) {
        fr_fnv1a64_pair(f[i].name, f[i].name_len, h);
        fr_fnv1a64_pair(f[i].num_at, (size_t)(f[i].num + sizeof f[i].num - f[i].num_at), h);
        fr_fnv1a64_pair(f[i].value, f[i].len, h);
        fr_fnv1a64_pair(";", 1, h);
    }
    free(schema);
    free(tools);
    char *key = fr_xmalloc(33); /* "%016llx%016llx", without printf */
    for (int i = 0; i < 16; i++) {
        key[15 - i] = "0123456789abcdef"[(h[0] >> (4 * i)) & 15];
        key[31 - i] = "0123456789abcdef"[(h[1] >> (4 * i)) & 15];
    }
    key[32] = '\0';
    return key;
}

bool fr_cache_may_answer(bool has_store, bool no_cache, const char *const *fresh, size_t nfresh,
                         const char *task)
{
    if (!has_store || no_cache)
        return false;
    for (size_t i = 0; i < nfresh; i++)
        if (strcmp(fresh[i], task) == 0)
            return false;
    return true;
}

/* A stored reply of endpoint `e` failed the task's gates; `msg` (borrowed)
 * says why, and `stale` whether it no longer fits the schema (a miss). */
static void rejected(const fr_cache_ctx *c, fr_route_task *t, size_t e, const char *msg, bool stale,
                     char **last_error)
{
    const char *name = fr_ep_spec(c->eps, e)->name;
    const char *task = c->wf->tasks[t->idx].name;
    fr_route_note_cache(c->router, t, e, "quality", msg);
    fr_log_event(FR_LOG_INFO, "cache", "task.cache_error", "task=%s endpoint=%s error=\"%s\"", task,
                 name, msg);
    free(*last_error);
    *last_error =
        fr_xasprintf("quality: %s: %s (a cached reply; --fresh %s asks again)", name, msg, task);
    t->last_error = *last_error;
    if (stale)
        return; /* a stored reply that no longer fits the schema is a miss: ask again */
    t->tried[e] = 1;
    t->reason = "quality";
}

/* Judges stored reply `reply` (taken) of endpoint `e` for `t` by the gates
 * as they are now. Returns true on a hit (t->res filled at `now_ns`). */
static bool judge(const fr_cache_ctx *c, fr_route_task *t, size_t e, fr_reply *reply,
                  uint64_t now_ns, char **last_error)
{
    fr_task_result *res = t->res;
    fr_workflow *wf = c->wf;
    const char *task = wf->tasks[t->idx].name;
    const char *name = fr_ep_spec(c->eps, e)->name;
    fr_gate_redact(reply, task, name); /* a row an older flowrun stored */
    fr_error gerr = {0};
    const char *empty;
    int grc = fr_gate_empty(reply, &empty, &gerr);
    if (grc == FR_OK)
        grc = fr_gate_schema(&wf->tasks[t->idx], reply, &gerr);
    bool stale = grc != FR_OK; /* empty, or no longer fits the schema: a miss */
    if (grc == FR_OK)
        grc = fr_gate_check(wf, t->idx, reply, &res->check_score, &gerr);
    if (grc != FR_OK) {
        fr_reply_close(reply);
        rejected(c, t, e, gerr.msg, stale, last_error);
        return false;
    }
    fr_route_note_cache(c->router, t, e, "cached", NULL);
    res->endpoint = (long)e;
    res->cached = true;
    fr_reply_close(&res->reply);
    res->reply = *reply;
    res->usage = reply->usage;
    res->latency_ms = res->ttft_ms = 0;
    res->start_ns = now_ns;
    return true;
}

/* The key (owned) of `t`'s request to endpoint `e`. */
static char *key_for(const fr_cache_ctx *c, const fr_route_task *t, size_t e, const char *prompt)
{
    fr_workflow *wf = c->wf;
    fr_call call = fr_attempt_call(wf, t->idx, c->eps, e, prompt, c->tools);
    return fr_cache_key(wf->name, wf->tasks[t->idx].name, fr_ep_spec(c->eps, e)->name,
                        fr_ep_protocol(c->eps, e), &call);
}

/* Hands `key` (owned) of endpoint `e` to the lookup's memo, or frees it. */
static void keep_key(const fr_cache_ctx *c, size_t e, char *key)
{
    if (!c->memo) {
        free(key);
        return;
    }
    free(c->memo->key);
    *c->memo = (fr_cache_memo){key, e};
}

char *fr_cache_memo_take(fr_cache_memo *m, size_t ep)
{
    char *key = m->key;
    if (key && m->ep != ep) {
        free(key);
        key = NULL;
    }
    m->key = NULL;
    return key;
}

static void log_store_error(const fr_error *err)
{
    char msg[1400];
    fr_log_event(FR_LOG_WARN, "cache", "cache.error", "error=\"%s\"",
                 fr_error_format(err, msg, sizeof msg));
}

bool fr_cache_lookup(const fr_cache_ctx *c, fr_route_task *t, const char *prompt, uint64_t now_ns,
                     char **last_error)
{
    for (size_t e = 0; e < fr_endpoints_count(c->eps); e++) {
        if (!fr_route_allowed(c->router, t, e))
            continue;
        char *key = key_for(c, t, e, prompt);
        fr_reply reply = {0};
        bool hit = false;
        fr_error err = {0};
        if (fr_store_cache_get(c->store, key, &reply, &hit, &err) != FR_OK)
            log_store_error(&err);
        keep_key(c, e, key);
        if (hit && judge(c, t, e, &reply, now_ns, last_error))
            return true;
    }
    return false;
}

/* ---- a lookup on the shared store ---------------------------------------
 * The store's completions and the timer's close hold the lookup: it is
 * freed when the last of them is back and it is over (done called, or
 * cancelled), so a completion never finds it freed. */

typedef struct wait_slot {
    fr_cache_wait *w;
    size_t e;        /* the endpoint asked */
    fr_reply *reply; /* its answer on a hit, owned; NULL otherwise */
    bool back;
} wait_slot;

struct fr_cache_wait {
    fr_cache_ctx c;
    fr_route_task *t;
    char **last_error;
    fr_cache_done_fn done;
    void *ud;
    wait_slot *slots;
    size_t nslots;
    size_t due;      /* completions not yet back */
    bool over;       /* done called or cancelled: the task is not touched again */
    bool timer_open; /* its handle not yet closed */
    uv_timer_t timer;
};

static void drop_reply(fr_reply *r)
{
    if (r) {
        fr_reply_close(r);
        free(r);
    }
}

static void wait_maybe_free(fr_cache_wait *w)
{
    if (!w->over || w->due > 0 || w->timer_open)
        return;
    for (size_t i = 0; i < w->nslots; i++)
        drop_reply(w->slots[i].reply);
    free(w->slots);
    free(w);
}

static void on_timer_closed(uv_handle_t *h)
{
    fr_cache_wait *w = h->data;
    w->timer_open = false;
    wait_maybe_free(w);
}

/* Ends the lookup: the timer goes, and `done` is called unless cancelled. */
static void wait_over(fr_cache_wait *w, bool call, bool hit)
{
    w->over = true;
    if (w->timer_open && !uv_is_closing((uv_handle_t *)&w->timer))
        uv_close((uv_handle_t *)&w->timer, on_timer_closed);
    if (call)
        w->done(w->ud, hit);
    wait_maybe_free(w);
}

/* Every answer is back: judged in the endpoints' order, as on SQLite. */
static void wait_judge(fr_cache_wait *w)
{
    bool hit = false;
    uint64_t now = fr_clock_ns(w->c.clock);
    for (size_t i = 0; i < w->nslots && !hit; i++) {
        wait_slot *s = &w->slots[i];
        if (!s->reply || !fr_route_allowed(w->c.router, w->t, s->e))
            continue;
        fr_reply *r = s->reply;
        s->reply = NULL;
        hit = judge(&w->c, w->t, s->e, r, now, w->last_error);
        free(r); /* its content is the result's now, or was closed */
    }
    wait_over(w, true, hit);
}

static void on_pg_reply(void *ud, int rc, fr_reply *reply, const fr_error *err)
{
    wait_slot *s = ud;
    fr_cache_wait *w = s->w;
    s->back = true;
    w->due--;
    if (rc != FR_OK && rc != FR_ECANCELED && !w->over)
        log_store_error(err);
    if (w->over) {
        drop_reply(reply);
        wait_maybe_free(w);
        return;
    }
    s->reply = reply;
    if (w->due == 0)
        wait_judge(w);
}

static void on_wait_timeout(uv_timer_t *h)
{
    fr_cache_wait *w = h->data;
    fr_log_event(FR_LOG_WARN, "cache", "cache.timeout",
                 "task=%s timeout_ms=%d the shared store did not answer in time: a miss",
                 w->c.wf->tasks[w->t->idx].name, w->c.timeout_ms);
    wait_over(w, true, false);
}

fr_cache_status fr_cache_lookup_start(const fr_cache_ctx *c, fr_route_task *t, const char *prompt,
                                      char **last_error, fr_cache_done_fn done, void *ud,
                                      fr_cache_wait **wait)
{
    *wait = NULL;
    if (!c->pg || !c->loop)
        return fr_cache_lookup(c, t, prompt, fr_clock_ns(c->clock), last_error) ? FR_CACHE_HIT
                                                                                : FR_CACHE_MISS;
    size_t n = fr_endpoints_count(c->eps);
    fr_cache_wait *w = fr_xcalloc(1, sizeof *w);
    w->c = *c;
    if (w->c.timeout_ms <= 0)
        w->c.timeout_ms = FR_CACHE_LOOKUP_TIMEOUT_MS;
    w->t = t;
    w->last_error = last_error;
    w->done = done;
    w->ud = ud;
    w->slots = fr_xcalloc(n ? n : 1, sizeof *w->slots);
    for (size_t e = 0; e < n; e++) {
        if (!fr_route_allowed(c->router, t, e))
            continue;
        wait_slot *s = &w->slots[w->nslots++];
        *s = (wait_slot){w, e, NULL, false};
        char *key = key_for(c, t, e, prompt);
        w->due++;
        if (fr_pgstore_cache_get(c->pg, key, on_pg_reply, s) != FR_OK) {
            w->due--; /* refused (closing): a miss */
            s->back = true;
        }
        keep_key(c, e, key);
    }
    if (w->due == 0) { /* nothing asked: answered now, from nothing */
        w->over = true;
        wait_maybe_free(w);
        return FR_CACHE_MISS;
    }
    uv_timer_init(c->loop, &w->timer);
    w->timer.data = w;
    w->timer_open = true;
    uv_timer_start(&w->timer, on_wait_timeout, (uint64_t)w->c.timeout_ms, 0);
    *wait = w;
    return FR_CACHE_WAITING;
}

void fr_cache_wait_cancel(fr_cache_wait *w)
{
    if (w && !w->over)
        wait_over(w, false, false);
}

static void on_pg_put(void *ud, int rc, const fr_error *err)
{
    (void)ud;
    if (rc != FR_OK && rc != FR_ECANCELED)
        log_store_error(err);
}

int fr_cache_put(fr_store *st, fr_pgstore *pg, const char *key, const char *endpoint,
                 const fr_reply *reply, fr_error *err)
{
    if (!fr_finish_is_answer(reply->finish))
        return FR_OK;
    if (!pg)
        return fr_store_cache_put(st, key, endpoint, reply, err);
    int rc = fr_pgstore_cache_put(pg, key, endpoint, reply, on_pg_put, NULL);
    if (rc != FR_OK && rc != FR_ECANCELED) /* refused now: the run goes on without it */
        fr_log_event(
            FR_LOG_WARN, "cache", "cache.error",
            "endpoint=%s error=\"the result could not be queued for the shared store: %s\"",
            endpoint, fr_err_name(rc));
    return FR_OK;
}
