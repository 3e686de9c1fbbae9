#include "engine/cache.h"

#include "engine/attempt.h"
#include "engine/gate.h"
#include "engine/util/buf.h"
#include "engine/util/hash.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a over the canonical text, twice with different offsets, for a
 * 128-bit key. Not a defence against a forger: the cache is the user's own. */
static uint64_t fnv1a(const char *s, size_t n, uint64_t h)
{
    return fr_fnv1a64(s, n, h);
}

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

/* Appends field `name` as "name=LEN:bytes;": a length-prefixed form that
 * any bytes fit, so no value can run into the next field. */
static void put_field(fr_buf *b, const char *name, const char *value)
{
    const char *v = value ? value : "";
    size_t n = strlen(v);
    char num[24];
    num[sizeof num - 1] = ':';
    char *p = decimal(num + sizeof num - 1, (long long)n);
    *--p = '=';
    fr_buf_puts(b, name);
    fr_buf_append(b, p, (size_t)(num + sizeof num - p));
    fr_buf_puts(b, v);
    fr_buf_append(b, ";", 1);
}

/* Appends field `name` with the number `v` as its value. */
static void put_number(fr_buf *b, const char *name, long long v)
{
    char num[24];
    num[sizeof num - 1] = '\0';
    put_field(b, name, decimal(num + sizeof num - 1, v));
}

char *fr_cache_key(const char *workflow, const char *task, const char *endpoint, fr_protocol proto,
                   const fr_call *call)
{
    /* Canonical bytes, not JSON: every field is carried whatever its bytes,
     * so text that JSON refuses can never break (or crash) the key. */
    fr_buf b;
    fr_buf_init(&b, 0);
    char num[64];
    put_field(&b, "workflow", workflow);
    put_field(&b, "task", task);
    put_field(&b, "endpoint", endpoint);
    put_field(&b, "protocol", fr_protocol_name(proto));
    put_field(&b, "model", call->model);
    put_field(&b, "system", call->system);
    put_field(&b, "prompt", call->prompt);
    put_number(&b, "max_tokens", call->max_tokens);
    snprintf(num, sizeof num, "%.17g", call->temperature);
    put_field(&b, "temperature", num);
    if (call->has_seed)
        put_number(&b, "seed", call->seed);
    else
        put_field(&b, "seed", NULL);
    char *schema = call->schema
                       ? json_dumps(call->schema, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)
                       : NULL;
    put_field(&b, "schema", schema);
    free(schema);
    /* The tools offered are part of the request: other tools, another
     * answer. A call without tools keeps the key it always had. */
    if (call->tools) {
        char *tools = json_dumps(call->tools, JSON_COMPACT | JSON_SORT_KEYS);
        put_field(&b, "tools", tools);
        free(tools);
    }
    const char *text = fr_buf_str(&b);
    size_t n = b.len;
    uint64_t a = fnv1a(text, n, 0xcbf29ce484222325ULL);
    uint64_t h = fnv1a(text, n, 0x84222325cbf29ce4ULL ^ (uint64_t)n);
    fr_buf_close(&b);
    char *key = fr_xmalloc(33); /* "%016llx%016llx", without printf */
    for (int i = 0; i < 16; i++) {
        key[15 - i] = "0123456789abcdef"[(a >> (4 * i)) & 15];
        key[31 - i] = "0123456789abcdef"[(h >> (4 * i)) & 15];
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

bool fr_cache_lookup(const fr_cache_ctx *c, fr_route_task *t, const char *prompt, uint64_t now_ns,
                     char **last_error)
{
    fr_task_result *res = t->res;
    fr_workflow *wf = c->wf;
    const char *task = wf->tasks[t->idx].name;
    for (size_t e = 0; e < fr_endpoints_count(c->eps); e++) {
        if (!fr_route_allowed(c->router, t, e))
            continue;
        const char *name = fr_ep_spec(c->eps, e)->name;
        fr_call call = fr_attempt_call(wf, t->idx, c->eps, e, prompt, c->tools);
        char *key = fr_cache_key(wf->name, task, name, fr_ep_protocol(c->eps, e), &call);
        fr_reply reply = {0};
        bool hit = false;
        fr_error err = {0};
        if (fr_store_cache_get(c->store, key, &reply, &hit, &err) != FR_OK) {
            char msg[1400];
            fr_log_event(FR_LOG_WARN, "cache", "cache.error", "error=\"%s\"",
                         fr_error_format(&err, msg, sizeof msg));
        }
        free(key);
        if (!hit)
            continue;
        fr_gate_redact(&reply, task, name); /* a row an older flowrun stored */
        fr_error gerr = {0};
        const char *empty;
        int grc = fr_gate_empty(&reply, &empty, &gerr);
        if (grc == FR_OK)
            grc = fr_gate_schema(&wf->tasks[t->idx], &reply, &gerr);
        bool stale = grc != FR_OK; /* empty, or no longer fits the schema: a miss */
        if (grc == FR_OK)
            grc = fr_gate_check(wf, t->idx, &reply, &res->check_score, &gerr);
        if (grc != FR_OK) {
            fr_reply_close(&reply);
            rejected(c, t, e, gerr.msg, stale, last_error);
            continue;
        }
        fr_route_note_cache(c->router, t, e, "cached", NULL);
        res->endpoint = (long)e;
        res->cached = true;
        fr_reply_close(&res->reply);
        res->reply = reply;
        res->usage = reply.usage;
        res->latency_ms = res->ttft_ms = 0;
        res->start_ns = now_ns;
        return true;
    }
    return false;
}

int fr_cache_put(fr_store *st, const char *key, const char *endpoint, const fr_reply *reply,
                 fr_error *err)
{
    if (!fr_finish_is_answer(reply->finish))
        return FR_OK;
    return fr_store_cache_put(st, key, endpoint, reply, err);
}
