#include "dsl/policy.h"

#include "dsl/luajson.h"
#include "dsl/suggest.h"
#include "engine/util/utf8.h"
#include "engine/util/mem.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a trusted built-in's kept task, run and candidate tables hold
 * (valid when `ok`), so that a decision writes only the fields that
 * changed (push_kept_args). The strings are copies: a view's are borrowed
 * for one call. */
typedef struct seen_task {
    bool ok;
    char *name, *agent, *type, *reason;
    fr_policy_task v; /* the numbers (its pointers unused) */
} seen_task;

typedef struct seen_run {
    bool ok;
    fr_policy_run v;
} seen_run;

typedef struct seen_cand {
    bool ok;
    char *name, *tier, *protocol, *model;
    fr_policy_cand v; /* the numbers (its pointers unused) */
} seen_cand;

struct fr_policy {
    lua_State *L;
    char *name;
    char *path;
    int version;
    int route_ref;
    int on_result_ref;
    bool keep_args; /* fr_policy_keep_args: route's tables are kept (push_kept_args) */
    /* The route arguments kept between decisions: */
    bool args_dirty;    /* the policy added a key to one of them: build anew */
    size_t ntried;      /* elements written into the kept `tried` */
    size_t ncands;      /* elements written into the kept candidates array */
    size_t *ntags;      /* per candidate slot, elements written into its `tags` */
    size_t nslots;      /* length of ntags and hist_seen */
    bool reads_history; /* candidates get history tables (fr_policy_reads_history) */
    bool trusted;       /* a built-in: it does not change its arguments */
    /* Per candidate slot, what its kept history and history_all tables
     * hold (valid when hist_ok): for a trusted built-in, which does not
     * change its arguments (test_policy_builtins), a record that did not
     * change is not written again. */
    fr_policy_hist *hist_seen;
    bool *hist_ok;
    /* The same for what the kept task, run and candidate tables hold (for
     * a trusted built-in): a field is written only when it changed. */
    seen_task task_seen;
    seen_run run_seen;
    seen_cand *cand_seen;         /* per candidate slot */
    unsigned long metatables_set; /* fr_sandbox_metatables_set when they were checked */
};

/* The keys of the argument tables, made Lua strings once per policy, so
 * building an argument sets a field without hashing or comparing its key
 * again (lua_setfield looks a C string up in the string cache each time). */
/* clang-format off */
#define KEY_LIST(X)                                                           \
    X(NAME, "name") X(AGENT, "agent") X(TYPE, "type")                         \
    X(COMPLEXITY, "complexity") X(PRIORITY, "priority") X(PRIVATE, "private") \
    X(ATTEMPT, "attempt") X(REASON, "reason") X(TRIED, "tried")               \
    X(EST_INPUT_TOKENS, "est_input_tokens")                                   \
    X(MAX_TOKENS, "max_tokens") X(TOOLS, "tools") X(TIER, "tier")             \
    X(PROTOCOL, "protocol") X(MODEL, "model") X(IN_FLIGHT, "in_flight")       \
    X(MAX_PARALLEL, "max_parallel") X(FREE, "free") X(QUEUED, "queued")       \
    X(QUALITY, "quality") X(PRICE_IN, "price_in") X(PRICE_OUT, "price_out")   \
    X(EST_COST, "est_cost") X(LATENCY_P50, "latency_p50") X(TAGS, "tags")     \
    X(CONTEXT, "context") X(ENDPOINT, "endpoint") X(TEXT, "text")             \
    X(JSON, "json") X(LATENCY_MS, "latency_ms") X(TOKENS, "tokens")           \
    X(INPUT, "input") X(OUTPUT, "output") X(COST_USD, "cost_usd")             \
    X(BUDGET, "budget") X(SPENT, "spent") X(RESERVED, "reserved")             \
    X(REMAINING, "remaining") X(ELAPSED, "elapsed") X(DONE, "done")           \
    X(TOTAL, "total") X(READY, "ready") X(SEED, "seed")                       \
    X(HISTORY, "history") X(HISTORY_ALL, "history_all")                       \
    X(ATTEMPTS, "attempts") X(PASSES, "passes") X(FAILS, "fails")             \
    X(ERRORS, "errors") X(WEIGHT, "weight") X(PASS_RATE, "pass_rate")         \
    X(SCORE_MEAN, "score_mean") X(LATENCY_P50_MS, "latency_p50_ms")           \
    X(TTFT_P50_MS, "ttft_p50_ms") X(TOKENS_PER_S, "tokens_per_s")             \
    X(COST_MEAN_USD, "cost_mean_usd") X(AGE_S, "age_s")                       \
    X(BAND_LO, "band_lo") X(BAND_HI, "band_hi")
/* clang-format on */
#define KEY_ENUM(id, s) K_##id,
#define KEY_NAME(id, s) s,
enum { KEY_FIRST = 0, KEY_LIST(KEY_ENUM) KEY_COUNT };
static const char *const key_names[] = {"", KEY_LIST(KEY_NAME)};

static void seen_free(fr_policy *p);

/* call_protected is a C closure whose upvalue k is the key K_... = k. */
static int call_protected(lua_State *L);

/* $FLOWRUN_LUA_DIR, or NULL: the built-ins come from the binary. */
static const char *lua_dir(void)
{
    const char *d = getenv("FLOWRUN_LUA_DIR");
    return d && *d ? d : NULL;
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const fr_policy_builtin *fr_policy_builtin_find(const char *name)
{
    for (size_t i = 0; name && i < fr_policy_nbuiltins; i++)
        if (strcmp(fr_policy_builtins[i].name, name) == 0)
            return &fr_policy_builtins[i];
    return NULL;
}

bool fr_policy_path_is_builtin(const char *path)
{
    size_t n = strlen(FR_POLICY_BUILTIN_PREFIX);
    return path && strncmp(path, FR_POLICY_BUILTIN_PREFIX, n) == 0 &&
           fr_policy_builtin_find(path + n) != NULL;
}

/* The policy nothing matched: names the built-ins, the file it tried and,
 * when one is close, the built-in name the user probably meant. */
static int not_found(const char *spec, const char *tried, fr_error *err)
{
    char names[256] = "";
    const char *cands[16];
    size_t n = 0;
    for (size_t i = 0; i < fr_policy_nbuiltins; i++) {
        size_t used = strlen(names);
        snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                 fr_policy_builtins[i].name);
        if (n < sizeof cands / sizeof cands[0])
            cands[n++] = fr_policy_builtins[i].name;
    }
    /* Compare the base name without .lua: "balance.lua" is close to "balanced". */
    const char *b = strrchr(spec, '/');
    b = b ? b + 1 : spec;
    size_t len = strlen(b);
    if (len > 4 && strcmp(b + len - 4, ".lua") == 0)
        len -= 4;
    char *word = fr_xstrndup(b, len);
    const char *near = fr_suggest(word, cands, n);
    char hint[128] = "";
    if (near)
        snprintf(hint, sizeof hint, "; did you mean '%s'?", near);
    int rc = fr_error_set(err, FR_ENOENT, "policy", 0,
                          "no policy '%s': it is not a built-in one (%s) and there is no file %s%s",
                          spec, names, tried, hint);
    free(word);
    return rc;
}

int fr_policy_resolve(const char *spec, const char *base_dir, char **path, fr_error *err)
{
    char *p = NULL;
    if (fr_policy_builtin_find(spec)) {
        if (lua_dir()) {
            p = fr_xasprintf("%s/policies/%s.lua", lua_dir(), spec);
            if (is_file(p))
                goto found;
            free(p);
        }
        p = fr_xasprintf("%s%s", FR_POLICY_BUILTIN_PREFIX, spec);
        goto found;
    }
    if (spec[0] == '/' || !base_dir || !*base_dir)
        p = fr_xstrdup(spec);
    else
        p = fr_xasprintf("%s/%s", base_dir, spec);
    if (fr_policy_path_is_builtin(p)) {
        /* A file that happens to be named like a built-in's path. */
        char *q = fr_xasprintf("./%s", p);
        free(p);
        p = q;
    }
    if (!is_file(p)) {
        int rc = not_found(spec, p, err);
        free(p);
        return rc;
    }
found:
    *path = p;
    return FR_OK;
}

static char *base_name(const char *path)
{
    if (fr_policy_path_is_builtin(path))
        return fr_xstrdup(path + strlen(FR_POLICY_BUILTIN_PREFIX));
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 4 && strcmp(b + n - 4, ".lua") == 0)
        n -= 4;
    return fr_xstrndup(b, n);
}

/* Stores references to route (arg 1) and on_result (arg 2, a function or
 * nil) in the policy (arg 3, light userdata). Runs protected. */
static int take_refs(lua_State *L)
{
    fr_policy *p = lua_touserdata(L, 3);
    lua_settop(L, 2); /* [route, on_result] */
    if (lua_isfunction(L, 2))
        p->on_result_ref = fr_sandbox_ref(L); /* [route] */
    else
        lua_pop(L, 1);
    p->route_ref = fr_sandbox_ref(L); /* [] */
    luaL_checkstack(L, KEY_COUNT, "policy keys");
    for (int k = 1; k < KEY_COUNT; k++)
        lua_pushstring(L, key_names[k]);                /* [keys...] */
    lua_pushcclosure(L, call_protected, KEY_COUNT - 1); /* [call] */
    /* Kept in the registry under the address of key_names, out of the
     * policy's reach, for as long as the state lives. */
    lua_rawsetp(L, LUA_REGISTRYINDEX, key_names); /* [] */
    return 0;
}

/* Reads the exports of the module (arg 1) and returns route, on_result.
 * Runs protected through fr_lua_call: the module may be a table whose
 * metamethods run (an __index that inherits from a base table is fine, one
 * that raises an error fails the load with its file:line). */
static int get_exports(lua_State *L)
{
    lua_getfield(L, 1, "route");     /* [module, route] */
    lua_getfield(L, 1, "on_result"); /* [module, route, on_result] */
    return 2;
}

/* Loads the chunk on top of the stack (pushed by the caller) as policy
 * `p`: runs it, checks what it returns, keeps references to its functions.
 * Every access to what the file returned runs protected. */
static int adopt_module(fr_policy *p, fr_error *err)
{
    lua_State *L = p->L;
    int rc = fr_lua_call(L, 0, 1, "policy file", err); /* [module] */
    if (rc != FR_OK)
        return rc;
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "a policy file must return a table with a route function");
    }
    lua_pushcfunction(L, get_exports); /* [module, get] */
    lua_insert(L, -2);                 /* [get, module] */
    rc = fr_lua_call(L, 1, 2, "reading the table the policy file returned", err);
    if (rc != FR_OK)
        return rc; /* [] */
    /* [route, on_result] */
    if (!lua_isfunction(L, -2)) {
        lua_pop(L, 2);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "the returned table has no function 'route'");
    }
    if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return fr_error_set(err, FR_EPOLICY, p->path, 0,
                            "'on_result' must be a function when present");
    }
    /* fr_sandbox_ref may raise a memory error: it runs protected too. */
    lua_pushcfunction(L, take_refs);                 /* [route, on_result, take] */
    lua_insert(L, -3);                               /* [take, route, on_result] */
    lua_pushlightuserdata(L, p);                     /* [take, route, on_result, p] */
    return fr_lua_call(L, 3, 0, "policy file", err); /* [] */
}

static fr_policy *policy_new(const char *path, const fr_lua_limits *lim, int version)
{
    fr_policy *p = fr_xcalloc(1, sizeof *p);
    p->route_ref = p->on_result_ref = LUA_NOREF;
    p->version = version;
    p->reads_history = true; /* a built-in that never names it: fr_policy_load */
    p->path = fr_xstrdup(path);
    p->name = base_name(path);
    char *log_name = fr_xasprintf("policy:%s", p->name);
    p->L = fr_sandbox_new(lim, log_name);
    free(log_name);
    return p;
}

int fr_policy_load(const char *path, const fr_lua_limits *lim, int version, fr_policy **out,
                   fr_error *err)
{
    int rc = FR_ENOMEM;
    fr_policy *p = policy_new(path, lim, version);
    if (!p->L)
        goto cleanup;
    const fr_policy_builtin *b =
        fr_policy_path_is_builtin(path)
            ? fr_policy_builtin_find(path + strlen(FR_POLICY_BUILTIN_PREFIX))
            : NULL;
    if (b)
        rc = fr_sandbox_load_string(p->L, b->source, b->len, path, err); /* [chunk] */
    else
        rc = fr_sandbox_load_file(p->L, path, err); /* [chunk] */
    if (rc == FR_OK)
        rc = adopt_module(p, err);
    if (rc != FR_OK)
        goto cleanup;
    if (b) {
        fr_policy_trust(p);
        /* A built-in that never names `history` is spared building it. */
        p->reads_history = strstr(b->source, "history") != NULL;
    }
    *out = p;
    p = NULL;
cleanup:
    fr_policy_free(p);
    return rc;
}

int fr_policy_load_string(const char *path, const char *code, size_t len, const fr_lua_limits *lim,
                          int version, fr_policy **out, fr_error *err)
{
    int rc = FR_ENOMEM;
    fr_policy *p = policy_new(path, lim, version);
    if (!p->L)
        goto cleanup;
    rc = fr_sandbox_load_string(p->L, code, len, path, err); /* [chunk] */
    if (rc == FR_OK)
        rc = adopt_module(p, err);
    if (rc != FR_OK)
        goto cleanup;
    *out = p;
    p = NULL;
cleanup:
    fr_policy_free(p);
    return rc;
}

void fr_policy_free(fr_policy *p)
{
    if (!p)
        return;
    if (p->L) {
        fr_sandbox_unref(p->L, p->route_ref);
        fr_sandbox_unref(p->L, p->on_result_ref);
        fr_sandbox_free(p->L);
    }
    free(p->ntags);
    free(p->hist_seen);
    free(p->hist_ok);
    seen_free(p);
    free(p->name);
    free(p->path);
    free(p);
}

void fr_policy_trust(fr_policy *p)
{
    /* Flowrun's own code: its loops are bounded by the candidates, and it
     * neither keeps nor changes its arguments (test_policy_builtins). */
    fr_sandbox_trust(p->L);
    fr_policy_keep_args(p);
    p->trusted = true;
}

bool fr_policy_reads_history(const fr_policy *p)
{
    return p->reads_history;
}

void fr_policy_keep_args(fr_policy *p)
{
    p->keep_args = true;
}

const char *fr_policy_name(const fr_policy *p)
{
    return p->name;
}

int fr_policy_version(const fr_policy *p)
{
    return p->version;
}

/* The candidates of one call: a JSON array of objects with "name", or `n`
 * C views. */
typedef struct cand_set {
    const json_t *json;
    const fr_policy_cand *view;
    size_t n;
} cand_set;

/* Returns the index (0-based) of the candidate named `name`, or -1. */
static long find_candidate(const cand_set *cs, const char *name)
{
    if (cs->view) {
        for (size_t i = 0; i < cs->n; i++)
            if (strcmp(cs->view[i].name, name) == 0)
                return (long)i;
        return -1;
    }
    size_t i;
    json_t *c;
    json_array_foreach(cs->json, i, c)
    {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && strcmp(n, name) == 0)
            return (long)i;
    }
    return -1;
}

/* The three arguments of one call, as JSON values or as C views. */
typedef struct call_args {
    const json_t *json[3];
    const fr_policy_task *task;
    const cand_set *cands;          /* route */
    const fr_policy_result *result; /* on_result */
    const fr_policy_run *run;
    fr_policy *keep; /* non-NULL: route's tables are the kept ones of this policy */
} call_args;

/* The fields below are set on a table preallocated for all of them, in the
 * order of the JSON objects they replace, so a policy sees the same table
 * (pairs() included). Each pushes key `k` (a K_ index: call_protected's
 * upvalue k) and its value and sets them raw: no metamethod runs, on a
 * new table or a kept one. [-0, +0] on a table at the top. */
static void set_key(lua_State *L, int k)
{
    lua_pushvalue(L, lua_upvalueindex(k)); /* [t, k] */
}

static void set_str(lua_State *L, int k, const char *v)
{
    set_key(L, k);
    if (v)
        lua_pushstring(L, v);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
}

static void set_int(lua_State *L, int k, lua_Integer v)
{
    set_key(L, k);
    lua_pushinteger(L, v);
    lua_rawset(L, -3);
}

static void set_num(lua_State *L, int k, double v)
{
    set_key(L, k);
    lua_pushnumber(L, v);
    lua_rawset(L, -3);
}

/* Sets field `k` to `v` when `has`, else to nil (as a JSON null did). */
static void set_opt_num(lua_State *L, int k, bool has, double v)
{
    set_key(L, k);
    if (has)
        lua_pushnumber(L, v);
    else
        lua_pushnil(L);
    lua_rawset(L, -3);
}

/* Sets field `k` to an array of the `n` strings `v`. */
static void set_names(lua_State *L, int k, const char *const *v, size_t n)
{
    set_key(L, k);                 /* [t, k] */
    lua_createtable(L, (int)n, 0); /* [t, k, a] */
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_rawset(L, -3); /* [t] */
}

/* Sets field `k` to the array at stack index `arr` (absolute), or, when
 * `arr` is 0, to a new array of the `n` strings `v`. */
static void set_list(lua_State *L, int k, int arr, const char *const *v, size_t n)
{
    if (!arr) {
        set_names(L, k, v, n);
        return;
    }
    set_key(L, k);
    lua_pushvalue(L, arr);
    lua_rawset(L, -3);
}

/* Sets the fields of task `t` on the table at the top; `tried` is the stack
 * index (absolute) of the array to set as `tried`, 0: a new one. */
static void fill_task(lua_State *L, const fr_policy_task *t, int tried)
{
    set_str(L, K_NAME, t->name);
    set_str(L, K_AGENT, t->agent);
    set_str(L, K_TYPE, t->type);
    set_num(L, K_COMPLEXITY, t->complexity);
    set_int(L, K_PRIORITY, t->priority);
    set_key(L, K_PRIVATE);
    lua_pushboolean(L, t->is_private);
    lua_rawset(L, -3);
    set_int(L, K_ATTEMPT, t->attempt);
    set_str(L, K_REASON, t->reason);
    set_list(L, K_TRIED, tried, t->tried, t->ntried);
    set_int(L, K_EST_INPUT_TOKENS, t->est_input_tokens);
    set_int(L, K_MAX_TOKENS, t->max_tokens);
    set_int(L, K_TOOLS, t->tools);
}

static void push_task(lua_State *L, const fr_policy_task *t)
{
    lua_createtable(L, 0, 12); /* [task] */
    fill_task(L, t, 0);
}

/* An endpoint's record without evidence, for a view that has none. */
static const fr_policy_hist no_history = {
    .pass_rate = -1,
    .score_mean = -1,
    .latency_p50_ms = -1,
    .ttft_p50_ms = -1,
    .tokens_per_s = -1,
    .cost_mean_usd = -1,
    .age_s = -1,
    .band_hi = 1,
};

/* Sets the fields of history record `h` on the table at the top. */
static void fill_hist(lua_State *L, const fr_policy_hist *h)
{
    set_int(L, K_ATTEMPTS, h->attempts);
    set_int(L, K_PASSES, h->passes);
    set_int(L, K_FAILS, h->fails);
    set_int(L, K_ERRORS, h->errors);
    set_num(L, K_WEIGHT, h->weight);
    set_opt_num(L, K_PASS_RATE, h->pass_rate >= 0, h->pass_rate);
    set_opt_num(L, K_SCORE_MEAN, h->score_mean >= 0, h->score_mean);
    set_opt_num(L, K_LATENCY_P50_MS, h->latency_p50_ms >= 0, h->latency_p50_ms);
    set_opt_num(L, K_TTFT_P50_MS, h->ttft_p50_ms >= 0, h->ttft_p50_ms);
    set_opt_num(L, K_TOKENS_PER_S, h->tokens_per_s >= 0, h->tokens_per_s);
    set_opt_num(L, K_COST_MEAN_USD, h->cost_mean_usd >= 0, h->cost_mean_usd);
    set_opt_num(L, K_AGE_S, h->age_s >= 0, h->age_s);
    set_num(L, K_BAND_LO, h->band_lo);
    set_num(L, K_BAND_HI, h->band_hi);
    set_str(L, K_TYPE, h->type);
}

/* Sets field `k` to the table at stack index `t` (absolute), or, when `t`
 * is 0, to a new table of record `h`. */
static void set_hist(lua_State *L, int k, int t, const fr_policy_hist *h)
{
    set_key(L, k); /* [c, k] */
    if (t) {
        lua_pushvalue(L, t);
    } else {
        lua_createtable(L, 0, 15); /* [c, k, h] */
        fill_hist(L, h ? h : &no_history);
    }
    lua_rawset(L, -3); /* [c] */
}

/* Sets the fields of candidate `c` on the table at the top; `tags` as
 * fill_task's `tried`; with `hist`, its history and history_all: the
 * tables at stack indexes `hist` and `hist` + 1 (absolute), or new ones
 * when `hist` is -1. */
static void fill_cand(lua_State *L, const fr_policy_cand *c, int tags, int hist)
{
    set_str(L, K_NAME, c->name);
    set_str(L, K_TIER, c->tier);
    set_str(L, K_PROTOCOL, c->protocol);
    set_str(L, K_MODEL, c->model);
    set_int(L, K_IN_FLIGHT, c->in_flight);
    set_int(L, K_MAX_PARALLEL, c->max_parallel);
    set_int(L, K_FREE, c->free);
    set_int(L, K_QUEUED, c->queued);
    set_num(L, K_QUALITY, c->quality);
    set_num(L, K_PRICE_IN, c->price_in);
    set_num(L, K_PRICE_OUT, c->price_out);
    set_num(L, K_EST_COST, c->est_cost);
    set_opt_num(L, K_LATENCY_P50, c->latency_p50 >= 0, c->latency_p50);
    set_list(L, K_TAGS, tags, c->tags, c->ntags);
    set_int(L, K_CONTEXT, c->context);
    if (hist) {
        set_hist(L, K_HISTORY, hist > 0 ? hist : 0, c->history);
        set_hist(L, K_HISTORY_ALL, hist > 0 ? hist + 1 : 0, c->history_all);
    }
}

static void push_cands(lua_State *L, const cand_set *cs)
{
    lua_createtable(L, (int)cs->n, 0); /* [cands] */
    for (size_t i = 0; i < cs->n; i++) {
        lua_createtable(L, 0, 17); /* [cands, c] */
        fill_cand(L, &cs->view[i], 0, -1);
        lua_rawseti(L, -2, (lua_Integer)i + 1); /* [cands] */
    }
}

static void push_result(lua_State *L, const fr_policy_result *r)
{
    lua_createtable(L, 0, 8); /* [result] */
    set_str(L, K_ENDPOINT, r->endpoint);
    set_str(L, K_TIER, r->tier);
    set_str(L, K_TEXT, r->text);
    set_key(L, K_JSON);           /* [result, "json"] */
    fr_lua_push_json(L, r->json); /* [result, "json", json] */
    lua_rawset(L, -3);
    set_num(L, K_LATENCY_MS, r->latency_ms);
    set_key(L, K_TOKENS);     /* [result, "tokens"] */
    lua_createtable(L, 0, 2); /* [result, "tokens", tokens] */
    set_int(L, K_INPUT, r->input_tokens);
    set_int(L, K_OUTPUT, r->output_tokens);
    lua_rawset(L, -3);
    set_num(L, K_COST_USD, r->cost_usd);
    set_int(L, K_ATTEMPT, r->attempt);
}

/* Sets the fields of run `r` on the table at the top. */
static void fill_run(lua_State *L, const fr_policy_run *r)
{
    set_opt_num(L, K_BUDGET, r->capped, r->budget);
    set_num(L, K_SPENT, r->spent);
    set_num(L, K_RESERVED, r->reserved);
    set_opt_num(L, K_REMAINING, r->capped, r->remaining);
    set_num(L, K_ELAPSED, r->elapsed);
    set_int(L, K_DONE, r->done);
    set_int(L, K_TOTAL, r->total);
    set_int(L, K_READY, r->ready);
    set_int(L, K_SEED, (lua_Integer)r->seed);
}

static void push_run(lua_State *L, const fr_policy_run *r)
{
    lua_createtable(L, 0, 9); /* [run] */
    fill_run(L, r);
}

/* ---- the kept route arguments (fr_policy_keep_args) ----
 * Building route's tables (a task, its tried list, the run, the candidates
 * and each one's tags: 19 tables and 140 fields for 8 candidates) costs
 * more than a built-in policy's own Lua. Kept, they are built once and
 * stay in the registry (under &args_key, out of the policy's reach); each
 * decision writes every field and element again, so what a policy changed
 * in one decision is overwritten before the next. Keys it adds are not:
 * each kept table has a metatable whose __newindex sets them raw and marks
 * the tables dirty, and the next decision builds all of them anew. So does
 * a call of setmetatable since the last decision (the policy may have
 * replaced or removed a kept table's metatable) and a change to the
 * metatable itself (getmetatable(task).__index = ...). A call that fails
 * makes them new too (its writes may have stopped half way). What stays
 * visible: a table kept past its call shows the next call's values, and
 * getmetatable(task) is not nil. */

/* The registry key of the table of kept arguments, whose slots are: */
static const char args_key = 'A';
enum { AC_MT = 1, AC_NEWINDEX, AC_TASK, AC_TRIED, AC_RUN, AC_CANDS, AC_SLOT0 };
/* candidate i (0-based) at AC_SLOT0 + 4i, its tags at AC_SLOT0 + 4i + 1,
 * its history and history_all at AC_SLOT0 + 4i + 2 and + 3. */

/* __newindex of the kept tables (upvalues: the policy, the metatable): a
 * key the policy adds to one of them. */
static int args_newindex(lua_State *L)
{
    fr_policy *p = lua_touserdata(L, lua_upvalueindex(1));
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(2)))
        return luaL_error(L, "this __newindex sets fields of route's own arguments only");
    lua_settop(L, 3);
    p->args_dirty = true;
    lua_rawset(L, 1);
    return 0;
}

/* Returns true when the metatable at `mt` holds only __newindex, the
 * function at `fn` (both absolute). */
static bool mt_intact(lua_State *L, int mt, int fn)
{
    int top = lua_gettop(L);
    bool ok = false;
    lua_pushnil(L);        /* [nil] */
    if (lua_next(L, mt)) { /* [k, v] */
        ok = lua_type(L, -2) == LUA_TSTRING && strcmp(lua_tostring(L, -2), "__newindex") == 0 &&
             lua_rawequal(L, -1, fn);
        lua_pop(L, 1); /* [k] */
        if (lua_next(L, mt))
            ok = false; /* a second key */
    }
    lua_settop(L, top);
    return ok;
}

/* Pushes the table of kept arguments and its metatable: the kept ones, or
 * new ones when there are none yet or they are no longer clean. Returns
 * the index (absolute) of the table; the metatable is just above. */
static int push_arg_cache(lua_State *L, fr_policy *p)
{
    int cache = lua_gettop(L) + 1;
    unsigned long set = fr_sandbox_metatables_set(L);
    bool clean = !p->args_dirty && set == p->metatables_set;
    p->metatables_set = set;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &args_key) == LUA_TTABLE && clean) {
        lua_rawgeti(L, cache, AC_MT);       /* [cache, mt] */
        lua_rawgeti(L, cache, AC_NEWINDEX); /* [cache, mt, fn] */
        bool ok = mt_intact(L, cache + 1, cache + 2);
        lua_settop(L, cache + 1);
        if (ok)
            return cache; /* [cache, mt] */
    }
    lua_settop(L, cache - 1);
    lua_createtable(L, AC_SLOT0 + 32, 0); /* [cache] */
    lua_createtable(L, 0, 1);             /* [cache, mt] */
    lua_pushlightuserdata(L, p);
    lua_pushvalue(L, cache + 1);
    lua_pushcclosure(L, args_newindex, 2); /* [cache, mt, fn] */
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, AC_NEWINDEX);
    lua_setfield(L, cache + 1, "__newindex"); /* [cache, mt] */
    lua_pushvalue(L, cache + 1);
    lua_rawseti(L, cache, AC_MT);
    lua_pushvalue(L, cache);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &args_key);
    p->args_dirty = false;
    p->ntried = p->ncands = 0;
    if (p->nslots) {
        memset(p->ntags, 0, p->nslots * sizeof *p->ntags);
        memset(p->hist_ok, 0, 2 * p->nslots * sizeof *p->hist_ok);
        for (size_t i = 0; i < p->nslots; i++)
            p->cand_seen[i].ok = false;
    }
    p->task_seen.ok = p->run_seen.ok = false;
    return cache;
}

/* Pushes the kept table in `slot` of the cache at `cache` (its metatable
 * just above), or a new one with `narr` and `nrec` slots when there is none
 * yet. Returns true when new. */
static bool kept_table(lua_State *L, int cache, int slot, int narr, int nrec)
{
    if (lua_rawgeti(L, cache, slot) == LUA_TTABLE) /* [t] */
        return false;
    lua_pop(L, 1);
    lua_createtable(L, narr, nrec); /* [t] */
    lua_pushvalue(L, cache + 1);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawseti(L, cache, slot);
    return true;
}

/* Writes the `n` strings `v` into the array at the top, and nil over the
 * rest of the `*was` it held; *was becomes n (and covers every element
 * written if an error stops it half way). */
static void fill_names(lua_State *L, const char *const *v, size_t n, size_t *was)
{
    if (n > *was)
        *was = n;
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (size_t i = n; i < *was; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    *was = n;
}

/* Pushes the kept history table in slot `slot` of the cache at `cache`
 * for candidate slot `i`'s record `which` (0: history, 1: history_all),
 * writing `h` (NULL: none) into it unless it holds that already. Returns
 * true when the table is new. */
static bool kept_hist(lua_State *L, fr_policy *p, int cache, int slot, size_t i, int which,
                      const fr_policy_hist *h)
{
    size_t at = 2 * i + (size_t)which;
    if (!h)
        h = &no_history;
    bool fresh = kept_table(L, cache, slot, 0, 15); /* [.., h] */
    if (fresh)
        p->hist_ok[at] = false;
    if (p->trusted && p->hist_ok[at] && memcmp(&p->hist_seen[at], h, sizeof *h) == 0)
        return false;
    p->hist_ok[at] = false; /* until written whole */
    fill_hist(L, h);
    p->hist_seen[at] = *h;
    p->hist_ok[at] = true;
    return fresh;
}

/* Makes room in `p` for `n` candidate slots. */
static void grow_slots(fr_policy *p, size_t n)
{
    if (n <= p->nslots)
        return;
    p->ntags = fr_xrealloc(p->ntags, n * sizeof *p->ntags);
    memset(p->ntags + p->nslots, 0, (n - p->nslots) * sizeof *p->ntags);
    p->hist_seen = fr_xrealloc(p->hist_seen, 2 * n * sizeof *p->hist_seen);
    p->hist_ok = fr_xrealloc(p->hist_ok, 2 * n * sizeof *p->hist_ok);
    memset(p->hist_ok + 2 * p->nslots, 0, 2 * (n - p->nslots) * sizeof *p->hist_ok);
    p->cand_seen = fr_xrealloc(p->cand_seen, n * sizeof *p->cand_seen);
    memset(p->cand_seen + p->nslots, 0, (n - p->nslots) * sizeof *p->cand_seen);
    p->nslots = n;
}

/* ---- a trusted built-in's kept tables: only what changed ----
 * A trusted built-in does not change its arguments (test_policy_builtins
 * checks it decides as its code with fresh tables does), so a kept table
 * still holds what the decision before wrote into it; each field is
 * written again only when its value changed (seen_task, seen_run,
 * seen_cand). A policy file, or one kept by fr_policy_keep_args alone,
 * gets every field written every decision (fill_task etc.). */

/* Whether `v` (may be NULL) differs from the copy `*seen`, which then
 * becomes a copy of `v`. */
static bool str_changed(char **seen, const char *v)
{
    if (*seen ? v && strcmp(*seen, v) == 0 : !v)
        return false;
    free(*seen);
    *seen = v ? fr_xstrdup(v) : NULL;
    return true;
}

/* The same for numbers, bit for bit (0.0 and -0.0 differ; a NaN equals
 * itself). */
static bool num_changed(double *seen, double v)
{
    if (memcmp(seen, &v, sizeof v) == 0)
        return false;
    *seen = v;
    return true;
}

static void seen_free(fr_policy *p)
{
    char **t[] = {&p->task_seen.name, &p->task_seen.agent, &p->task_seen.type,
                  &p->task_seen.reason};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        free(*t[i]);
        *t[i] = NULL;
    }
    for (size_t i = 0; i < p->nslots; i++) {
        seen_cand *c = &p->cand_seen[i];
        char **cs[] = {&c->name, &c->tier, &c->protocol, &c->model};
        for (size_t j = 0; j < sizeof cs / sizeof *cs; j++) {
            free(*cs[j]);
            *cs[j] = NULL;
        }
    }
    free(p->cand_seen);
    p->cand_seen = NULL;
}

/* Field `f` of the view `v` against the seen copy `s` (all: written
 * whatever it was). The non-short-circuit | updates the copy either way. */
#define CHG_STR(f) ((int)all | (int)str_changed(&s->f, v->f))
#define CHG_NUM(f) ((int)all | (int)num_changed(&s->v.f, v->f))
#define CHG_INT(f) ((int)all | (s->v.f != v->f ? (s->v.f = v->f, 1) : 0))

/* fill_task for a trusted built-in's kept task table (at the top), its
 * tried list the kept array at `tried` (absolute). */
static void refill_task(lua_State *L, const fr_policy_task *v, int tried, seen_task *s)
{
    bool all = !s->ok;
    s->ok = false; /* until every field is written */
    if (CHG_STR(name))
        set_str(L, K_NAME, v->name);
    if (CHG_STR(agent))
        set_str(L, K_AGENT, v->agent);
    if (CHG_STR(type))
        set_str(L, K_TYPE, v->type);
    if (CHG_NUM(complexity))
        set_num(L, K_COMPLEXITY, v->complexity);
    if (CHG_INT(priority))
        set_int(L, K_PRIORITY, v->priority);
    if (CHG_INT(is_private)) {
        set_key(L, K_PRIVATE);
        lua_pushboolean(L, v->is_private);
        lua_rawset(L, -3);
    }
    if (CHG_INT(attempt))
        set_int(L, K_ATTEMPT, v->attempt);
    if (CHG_STR(reason))
        set_str(L, K_REASON, v->reason);
    if (all)
        set_list(L, K_TRIED, tried, NULL, 0);
    if (CHG_INT(est_input_tokens))
        set_int(L, K_EST_INPUT_TOKENS, v->est_input_tokens);
    if (CHG_INT(max_tokens))
        set_int(L, K_MAX_TOKENS, v->max_tokens);
    if (CHG_INT(tools))
        set_int(L, K_TOOLS, v->tools);
    s->ok = true;
}

/* fill_run for a trusted built-in's kept run table (at the top). */
static void refill_run(lua_State *L, const fr_policy_run *v, seen_run *s)
{
    bool all = !s->ok;
    s->ok = false;
    bool capped = CHG_INT(capped);
    if (CHG_NUM(budget) | capped)
        set_opt_num(L, K_BUDGET, v->capped, v->budget);
    if (CHG_NUM(spent))
        set_num(L, K_SPENT, v->spent);
    if (CHG_NUM(reserved))
        set_num(L, K_RESERVED, v->reserved);
    if (CHG_NUM(remaining) | capped)
        set_opt_num(L, K_REMAINING, v->capped, v->remaining);
    if (CHG_NUM(elapsed))
        set_num(L, K_ELAPSED, v->elapsed);
    if (CHG_INT(done))
        set_int(L, K_DONE, v->done);
    if (CHG_INT(total))
        set_int(L, K_TOTAL, v->total);
    if (CHG_INT(ready))
        set_int(L, K_READY, v->ready);
    if (CHG_INT(seed))
        set_int(L, K_SEED, (lua_Integer)v->seed);
    s->ok = true;
}

/* fill_cand for a trusted built-in's kept candidate table (at the top):
 * `tags` and `hist` as there, both kept tables. */
static void refill_cand(lua_State *L, const fr_policy_cand *v, int tags, int hist, seen_cand *s)
{
    bool all = !s->ok;
    s->ok = false;
    if (CHG_STR(name))
        set_str(L, K_NAME, v->name);
    if (CHG_STR(tier))
        set_str(L, K_TIER, v->tier);
    if (CHG_STR(protocol))
        set_str(L, K_PROTOCOL, v->protocol);
    if (CHG_STR(model))
        set_str(L, K_MODEL, v->model);
    if (CHG_INT(in_flight))
        set_int(L, K_IN_FLIGHT, v->in_flight);
    if (CHG_INT(max_parallel))
        set_int(L, K_MAX_PARALLEL, v->max_parallel);
    if (CHG_INT(free))
        set_int(L, K_FREE, v->free);
    if (CHG_INT(queued))
        set_int(L, K_QUEUED, v->queued);
    if (CHG_NUM(quality))
        set_num(L, K_QUALITY, v->quality);
    if (CHG_NUM(price_in))
        set_num(L, K_PRICE_IN, v->price_in);
    if (CHG_NUM(price_out))
        set_num(L, K_PRICE_OUT, v->price_out);
    if (CHG_NUM(est_cost))
        set_num(L, K_EST_COST, v->est_cost);
    if (CHG_NUM(latency_p50))
        set_opt_num(L, K_LATENCY_P50, v->latency_p50 >= 0, v->latency_p50);
    if (all)
        set_list(L, K_TAGS, tags, NULL, 0);
    if (CHG_INT(context))
        set_int(L, K_CONTEXT, v->context);
    if (all && hist) {
        set_hist(L, K_HISTORY, hist, NULL);
        set_hist(L, K_HISTORY_ALL, hist + 1, NULL);
    }
    s->ok = true;
}

static bool same_str(const char *seen, const char *v)
{
    return seen ? v && strcmp(seen, v) == 0 : !v;
}

static bool same_num(double seen, double v)
{
    return memcmp(&seen, &v, sizeof v) == 0;
}

/* Whether record `at` (2i + 0 or 1) of candidate slot i holds `h` (NULL:
 * none) already. */
static bool hist_same(const fr_policy *p, size_t at, const fr_policy_hist *h)
{
    return p->hist_ok[at] && memcmp(&p->hist_seen[at], h ? h : &no_history, sizeof *h) == 0;
}

/* Whether a trusted built-in's candidate slot `i`, element i + 1 of the
 * kept candidates array (`was` of them written), holds candidate `c`
 * whole already (its records included): then nothing of it is pushed. */
static bool cand_unchanged(const fr_policy *p, size_t i, const fr_policy_cand *c, size_t was)
{
    const seen_cand *s = &p->cand_seen[i];
    if (!p->trusted || i >= was || !s->ok || c->ntags > 0 || p->ntags[i] > 0)
        return false;
    if (p->reads_history &&
        !(hist_same(p, 2 * i, c->history) && hist_same(p, 2 * i + 1, c->history_all)))
        return false;
    return same_str(s->name, c->name) && same_str(s->tier, c->tier) &&
           same_str(s->protocol, c->protocol) && same_str(s->model, c->model) &&
           s->v.in_flight == c->in_flight && s->v.max_parallel == c->max_parallel &&
           s->v.free == c->free && s->v.queued == c->queued && s->v.context == c->context &&
           same_num(s->v.quality, c->quality) && same_num(s->v.price_in, c->price_in) &&
           same_num(s->v.price_out, c->price_out) && same_num(s->v.est_cost, c->est_cost) &&
           same_num(s->v.latency_p50, c->latency_p50);
}

/* Pushes route's three arguments for `a`, as the kept tables of `p`. The
 * cache and its metatable are at `cache`. [-0, +3] */
static void push_kept_args(lua_State *L, fr_policy *p, int cache, const call_args *a)
{
    const cand_set *cs = a->cands;
    int n = (int)cs->n;
    grow_slots(p, cs->n);
    if (kept_table(L, cache, AC_TRIED, (int)a->task->ntried, 0)) /* [tried] */
        p->ntried = 0;
    fill_names(L, a->task->tried, a->task->ntried, &p->ntried);
    if (kept_table(L, cache, AC_TASK, 0, 12)) /* [tried, task] */
        p->task_seen.ok = false;
    if (p->trusted)
        refill_task(L, a->task, lua_gettop(L) - 1, &p->task_seen);
    else
        fill_task(L, a->task, lua_gettop(L) - 1);
    lua_remove(L, -2); /* [task] */

    if (kept_table(L, cache, AC_CANDS, n, 0)) /* [task, cands] */
        p->ncands = 0;
    size_t was = p->ncands;
    if (cs->n > p->ncands)
        p->ncands = cs->n; /* every slot written, should this stop half way */
    for (int i = 0; i < n; i++) {
        const fr_policy_cand *c = &cs->view[i];
        if (cand_unchanged(p, (size_t)i, c, was))
            continue;
        int slot = AC_SLOT0 + 4 * i;
        int hist = 0;
        seen_cand *seen = &p->cand_seen[i];
        if (p->reads_history) {
            if (kept_hist(L, p, cache, slot + 2, (size_t)i, 0, c->history)) /* [.., h] */
                seen->ok = false;
            if (kept_hist(L, p, cache, slot + 3, (size_t)i, 1, c->history_all)) /* [.., h, ha] */
                seen->ok = false;
            hist = lua_gettop(L) - 1;
        }
        if (kept_table(L, cache, slot + 1, (int)c->ntags, 0)) { /* [.., tags] */
            p->ntags[i] = 0;
            seen->ok = false;
        }
        fill_names(L, c->tags, c->ntags, &p->ntags[i]);
        if (kept_table(L, cache, slot, 0, 17)) /* [.., cands, (h, ha,) tags, c] */
            seen->ok = false;
        if (p->trusted)
            refill_cand(L, c, lua_gettop(L) - 1, hist, seen);
        else
            fill_cand(L, c, lua_gettop(L) - 1, hist);
        lua_remove(L, -2); /* [.., cands, (h, ha,) c] */
        if (hist) {
            lua_replace(L, hist); /* [.., cands, c, ha] */
            lua_pop(L, 1);        /* [.., cands, c] */
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1); /* [.., cands] */
    }
    for (size_t i = cs->n; i < was; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    p->ncands = cs->n;

    if (kept_table(L, cache, AC_RUN, 0, 9)) /* [task, cands, run] */
        p->run_seen.ok = false;
    if (p->trusted)
        refill_run(L, a->run, &p->run_seen);
    else
        fill_run(L, a->run);
}

/* Pushes the three arguments of the call_args `a`. [-0, +3] */
static void push_args(lua_State *L, const call_args *a)
{
    if (!a->task) {
        for (int i = 0; i < 3; i++)
            fr_lua_push_json(L, a->json[i]); /* [..., v...] */
        return;
    }
    push_task(L, a->task); /* [fn, task] */
    if (a->cands)
        push_cands(L, a->cands);
    else
        push_result(L, a->result);
    push_run(L, a->run); /* [fn, task, cands|result, run] */
}

/* What call_protected calls: the function of registry reference `ref`
 * with the arguments `a`. */
typedef struct call_ctx {
    int ref;
    const call_args *a;
} call_ctx;

/* The whole call in one protected call (through fr_lua_call; the closure
 * take_refs made, whose upvalues are the keys): pushes the function and the
 * arguments of the call_ctx passed as light userdata, calls it and returns
 * its first two results (route's second is its explanation). Running out of memory while
 * building the arguments is an error of the call, not an abort, and the
 * instruction budget covers both. */
static int call_protected(lua_State *L)
{
    const call_ctx *c = lua_touserdata(L, 1);
    lua_settop(L, 0);
    luaL_checkstack(L, 24, "policy arguments");
    if (c->a->keep) {
        int cache = push_arg_cache(L, c->a->keep); /* [cache, mt] */
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref); /* [cache, mt, fn] */
        push_kept_args(L, c->a->keep, cache, c->a);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref); /* [fn] */
        push_args(L, c->a);                        /* [fn, a, b, c] */
    }
    lua_call(L, 3, 2); /* [(cache, mt,) ret, ret2] */
    return 2;
}

/* The line where the function of registry reference `ref` is defined, for
 * a message about what it returned; 0 when unknown. */
static int defined_line(lua_State *L, int ref)
{
    lua_Debug ar;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref); /* [fn] */
    if (!lua_getinfo(L, ">S", &ar))         /* [] */
        return 0;
    return ar.linedefined > 0 ? ar.linedefined : 0;
}

/* Calls the function of registry reference `ref` with the arguments `a`
 * (borrowed), leaving two results on FR_OK. */
static int call_with(fr_policy *p, int ref, const call_args *a, const char *what, fr_error *err)
{
    lua_State *L = p->L;
    if (!lua_checkstack(L, 6))
        return fr_error_set(err, FR_ELIMIT, p->path, 0, "%s: Lua stack exhausted", what);
    call_ctx ctx = {ref, a};
    lua_rawgetp(L, LUA_REGISTRYINDEX, key_names); /* [call] (take_refs) */
    lua_pushlightuserdata(L, &ctx);               /* [call, ctx] */
    int rc = fr_lua_call(L, 1, 2, what, err);     /* [ret, ret2] */
    if (rc != FR_OK && a->keep)
        a->keep->args_dirty = true; /* its writes may have stopped half way */
    if (rc != FR_OK && err && !err->source[0]) {
        /* Failed outside any line of the policy (copying the arguments):
         * the function's own line. */
        snprintf(err->source, sizeof err->source, "%s", p->path);
        err->line = defined_line(L, ref);
    }
    return rc;
}

/* Copies route's second result, at the top, into `why` (`size` bytes) when
 * it is a string: valid UTF-8 without a NUL byte, cut at a character's
 * start to FR_POLICY_WHY_MAX bytes. Anything else leaves "". */
static void read_why(lua_State *L, char *why, size_t size)
{
    if (!why || size == 0)
        return;
    why[0] = '\0';
    if (lua_type(L, -1) != LUA_TSTRING)
        return;
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (memchr(s, '\0', len) || !fr_utf8_valid(s, len, NULL))
        return;
    size_t max = size - 1 < FR_POLICY_WHY_MAX ? size - 1 : FR_POLICY_WHY_MAX;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--; /* not inside a character */
    }
    memcpy(why, s, len);
    why[len] = '\0';
}

/* Calls route with `a`, whose candidates are `a->cands`; see
 * fr_policy_route. On FR_OK *choice is the chosen candidate's index, -1 for
 * nil, and `why` (`size` bytes, may be NULL) its explanation ("" for
 * none). Sets *not_candidate when the answer was a name (or a table with a
 * name) that is none of the candidates. */
static int route_call(fr_policy *p, const call_args *a, long *choice, bool *not_candidate,
                      char *why, size_t size, fr_error *err)
{
    lua_State *L = p->L;
    *choice = -1;
    *not_candidate = false;
    if (why && size)
        why[0] = '\0';
    int rc = call_with(p, p->route_ref, a, "route", err); /* [ret, why] */
    if (rc != FR_OK)
        return rc;
    read_why(L, why, size);
    lua_pop(L, 1); /* [ret] */
    /* [ret] Read with raw access only: no metamethod of the answer runs. */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return FR_OK;
    }
    const char *name = NULL;
    if (lua_istable(L, -1)) {
        lua_pushliteral(L, "name"); /* [ret, "name"] */
        lua_rawget(L, -2);          /* [ret, name] */
    } else {
        lua_pushvalue(L, -1); /* [ret, ret] */
    }
    if (lua_type(L, -1) == LUA_TSTRING)
        name = lua_tostring(L, -1);
    rc = FR_OK;
    if (!name)
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned a %s%s; expected a candidate, its name, or nil",
                          luaL_typename(L, -2), lua_istable(L, -2) ? " without a name" : "");
    else if (strlen(name) != lua_rawlen(L, -1))
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned a name holding a NUL byte ('%s...'); return a "
                          "candidate or its exact name",
                          name);
    else if ((*choice = find_candidate(a->cands, name)) < 0) {
        *not_candidate = true;
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->route_ref),
                          "route returned '%s', which is not one of the candidates", name);
    }
    lua_pop(L, 2); /* [] */
    return rc;
}

/* Calls route with JSON `task`, `candidates` and `run` (borrowed); on
 * FR_OK *choice is the chosen candidate's index, -1 for nil. */
static int route_json(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                      long *choice, bool *not_candidate, fr_error *err)
{
    cand_set cs = {.json = candidates};
    call_args a = {.json = {task, candidates, run}, .cands = &cs};
    return route_call(p, &a, choice, not_candidate, NULL, 0, err);
}

int fr_policy_route(fr_policy *p, const json_t *task, const json_t *candidates, const json_t *run,
                    char **choice, fr_error *err)
{
    bool not_candidate;
    long i;
    *choice = NULL;
    int rc = route_json(p, task, candidates, run, &i, &not_candidate, err);
    if (rc == FR_OK && i >= 0)
        *choice = fr_xstrdup(
            json_string_value(json_object_get(json_array_get(candidates, (size_t)i), "name")));
    return rc;
}

int fr_policy_route_view(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                         size_t n, const fr_policy_run *run, long *choice, fr_error *err)
{
    return fr_policy_route_explain(p, task, cands, n, run, choice, NULL, 0, err);
}

int fr_policy_route_explain(fr_policy *p, const fr_policy_task *task, const fr_policy_cand *cands,
                            size_t n, const fr_policy_run *run, long *choice, char *why,
                            size_t size, fr_error *err)
{
    bool not_candidate;
    cand_set cs = {.view = cands, .n = n};
    call_args a = {.task = task, .cands = &cs, .run = run, .keep = p->keep_args ? p : NULL};
    return route_call(p, &a, choice, &not_candidate, why, size, err);
}

bool fr_policy_has_on_result(const fr_policy *p)
{
    return p->on_result_ref != LUA_NOREF && p->on_result_ref != LUA_REFNIL;
}

/* Calls on_result with `a` (borrowed); see fr_policy_on_result. */
static int on_result_call(fr_policy *p, const call_args *a, fr_verdict *verdict, fr_error *err)
{
    *verdict = FR_VERDICT_ACCEPT;
    if (!fr_policy_has_on_result(p))
        return FR_OK;
    lua_State *L = p->L;
    int rc = call_with(p, p->on_result_ref, a, "on_result", err); /* [ret, ret2] */
    if (rc != FR_OK)
        return rc;
    lua_pop(L, 1); /* [ret] */
    const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (lua_isnil(L, -1) || (s && strcmp(s, "accept") == 0))
        *verdict = FR_VERDICT_ACCEPT;
    else if (s && strcmp(s, "retry") == 0)
        *verdict = FR_VERDICT_RETRY;
    else if (s && strcmp(s, "escalate") == 0)
        *verdict = FR_VERDICT_ESCALATE;
    else
        rc = fr_error_set(err, FR_EPOLICY, p->path, defined_line(L, p->on_result_ref),
                          "on_result returned %s; expected \"accept\", \"retry\" or \"escalate\"",
                          s ? s : luaL_typename(L, -1));
    lua_pop(L, 1);
    return rc;
}

int fr_policy_on_result(fr_policy *p, const json_t *task, const json_t *result, const json_t *run,
                        fr_verdict *verdict, fr_error *err)
{
    call_args a = {.json = {task, result, run}};
    return on_result_call(p, &a, verdict, err);
}

int fr_policy_on_result_view(fr_policy *p, const fr_policy_task *task,
                             const fr_policy_result *result, const fr_policy_run *run,
                             fr_verdict *verdict, fr_error *err)
{
    call_args a = {.task = task, .result = result, .run = run};
    return on_result_call(p, &a, verdict, err);
}

/* Sets member `k` of `o` to `v` when >= 0 (nil otherwise). */
static void put_opt(json_t *o, const char *k, double v)
{
    if (v >= 0)
        json_object_set_new(o, k, json_real(v));
}

json_t *fr_policy_hist_json(const fr_policy_hist *h)
{
    if (!h)
        h = &no_history;
    json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:f}", "attempts", (json_int_t)h->attempts,
                          "passes", (json_int_t)h->passes, "fails", (json_int_t)h->fails, "errors",
                          (json_int_t)h->errors, "weight", h->weight);
    put_opt(o, "pass_rate", h->pass_rate);
    put_opt(o, "score_mean", h->score_mean);
    put_opt(o, "latency_p50_ms", h->latency_p50_ms);
    put_opt(o, "ttft_p50_ms", h->ttft_p50_ms);
    put_opt(o, "tokens_per_s", h->tokens_per_s);
    put_opt(o, "cost_mean_usd", h->cost_mean_usd);
    put_opt(o, "age_s", h->age_s);
    json_object_set_new(o, "band_lo", json_real(h->band_lo));
    json_object_set_new(o, "band_hi", json_real(h->band_hi));
    if (h->type)
        json_object_set_new(o, "type", json_string(h->type));
    return o;
}

int fr_policy_check(fr_policy *p, const json_t *candidates, fr_error *err)
{
    json_t *task =
        json_pack("{s:s, s:s, s:s, s:f, s:i, s:b, s:i, s:s, s:[], s:i, s:i, s:i}", "name",
                  "self-check", "agent", "self-check", "type", "code", "complexity", 0.5,
                  "priority", 5, "private", 0, "attempt", 1, "reason", "first", "tried",
                  "est_input_tokens", 100, "max_tokens", 256, "tools", 0);
    json_t *cands =
        candidates && json_array_size(candidates) > 0
            ? json_incref((json_t *)candidates)
            : json_pack("[{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:n, s:[],"
                        " s:i}, {s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:n,"
                        " s:[], s:i}]",
                        "name", "self-check-local", "tier", "local", "protocol", "openai", "model",
                        "m", "in_flight", 0, "max_parallel", 2, "free", 2, "queued", 0, "quality",
                        0.6, "price_in", 0.0, "price_out", 0.0, "est_cost", 0.0, "latency_p50",
                        "tags", "context", 32768, "name", "self-check-cloud", "tier", "cloud",
                        "protocol", "openai", "model", "m", "in_flight", 0, "max_parallel", 4,
                        "free", 4, "queued", 0, "quality", 0.9, "price_in", 3.0, "price_out", 15.0,
                        "est_cost", 0.004, "latency_p50", "tags", "context", 200000);
    if (!candidates || json_array_size(candidates) == 0) {
        size_t i;
        json_t *c;
        json_array_foreach(cands, i, c)
        {
            json_object_set_new(c, "history", fr_policy_hist_json(NULL));
            json_object_set_new(c, "history_all", fr_policy_hist_json(NULL));
        }
    }
    json_t *run = json_pack("{s:n, s:f, s:f, s:n, s:f, s:i, s:i, s:i, s:i}", "budget", "spent", 0.0,
                            "reserved", 0.0, "remaining", "elapsed", 0.0, "done", 0, "total", 1,
                            "ready", 1, "seed", 1);
    const json_t *first = json_array_get(cands, 0);
    const char *first_name = json_string_value(json_object_get(first, "name"));
    const char *first_tier = json_string_value(json_object_get(first, "tier"));
    json_t *result =
        json_pack("{s:s, s:s, s:s, s:n, s:f, s:{s:i, s:i}, s:f, s:i}", "endpoint",
                  first_name ? first_name : "self-check", "tier", first_tier ? first_tier : "local",
                  "text", "ok", "json", "latency_ms", 100.0, "tokens", "input", 100, "output", 10,
                  "cost_usd", 0.0, "attempt", 1);
    long choice;
    bool not_candidate = false;
    int rc = route_json(p, task, cands, run, &choice, &not_candidate, err);
    if (not_candidate) {
        /* A name that is not a candidate for this one made-up task is a
         * decision the default makes in a run, not a broken policy. */
        rc = FR_OK;
        if (err)
            *err = (fr_error){0};
    }
    if (rc == FR_OK) {
        fr_verdict v;
        rc = fr_policy_on_result(p, task, result, run, &v, err);
    }
    json_decref(task);
    json_decref(cands);
    json_decref(run);
    json_decref(result);
    if (rc != FR_OK && err) {
        static const char prefix[] = "self-check failed: ";
        size_t keep = sizeof err->msg - sizeof prefix; /* room left for the old message */
        char old[sizeof err->msg];
        memcpy(old, err->msg, sizeof old);
        old[keep] = '\0';
        memcpy(err->msg, prefix, sizeof prefix - 1);
        memcpy(err->msg + sizeof prefix - 1, old, strlen(old) + 1);
    }
    return rc;
}
