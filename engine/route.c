#include "engine/route.h"

#include "engine/util/hash.h"

#include "engine/util/buf.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fr_router {
    fr_route_env env;
    size_t *queued; /* per endpoint: the tasks of this pass waiting for it */
    /* Room for one decision, per endpoint, made once so that a decision
     * allocates nothing: the candidates, their views, the names tried. */
    long *cands;
    fr_policy_cand *views;
    const char **tried;
    size_t pass_waiters; /* the tasks of this pass over the ready queue left waiting */
    int policy_errors;
    json_t *policy_sites;      /* set of "file:line:code" already logged */
    void (*swapped)(void *ud); /* fr_route_reload_hooks' */
    void *swapped_ud;
    fr_history *history;    /* borrowed (the books'), NULL: none */
    fr_policy_hist *hviews; /* per endpoint: its record for this decision and over all */
    long long seed;         /* the run's seed (run.seed) */
    uint64_t draw_seed;     /* fr_policy_draw_seed of it */
};

fr_router *fr_router_new(const fr_route_env *env)
{
    fr_router *rt = fr_xcalloc(1, sizeof *rt);
    rt->env = *env;
    size_t n = env->wf->nendpoints;
    rt->queued = fr_xcalloc(n ? n : 1, sizeof *rt->queued);
    rt->cands = fr_xcalloc(n ? n : 1, sizeof *rt->cands);
    rt->views = fr_xcalloc(n ? n : 1, sizeof *rt->views);
    rt->tried = fr_xcalloc(n ? n : 1, sizeof *rt->tried);
    rt->hviews = fr_xcalloc(2 * (n ? n : 1), sizeof *rt->hviews);
    rt->draw_seed = fr_policy_draw_seed(0); /* seed 0 until fr_route_set_seed */
    rt->policy_sites = json_object();
    return rt;
}

void fr_router_free(fr_router *rt)
{
    if (!rt)
        return;
    free(rt->queued);
    free(rt->cands);
    free(rt->views);
    free(rt->tried);
    free(rt->hviews);
    json_decref(rt->policy_sites);
    free(rt);
}

static fr_policy *live(const fr_router *rt)
{
    return rt->env.policy(rt->env.policy_ud);
}

static size_t neps(const fr_router *rt)
{
    return rt->env.wf->nendpoints;
}

void fr_route_pass_begin(fr_router *rt)
{
    memset(rt->queued, 0, (neps(rt) ? neps(rt) : 1) * sizeof *rt->queued);
    rt->pass_waiters = 0;
}

void fr_route_pass_waiting(fr_router *rt, size_t waiting)
{
    rt->pass_waiters = waiting;
}

void fr_route_set_history(fr_router *rt, fr_history *h)
{
    rt->history = h;
}

void fr_route_set_seed(fr_router *rt, bool has_seed, long long seed, const char *run_id)
{
    /* Derived: 31 bits of the run id's hash, so that Lua and JSON hold it exactly. */
    rt->seed = has_seed ? seed
               : run_id ? (long long)(fr_fnv1a64(run_id, strlen(run_id), FR_FNV1A64_BASIS) >> 33)
                        : 0;
    rt->draw_seed = fr_policy_draw_seed(rt->seed);
}

long long fr_route_seed(const fr_router *rt)
{
    return rt->seed;
}

int fr_route_policy_errors(const fr_router *rt)
{
    return rt->policy_errors;
}

/* Tokens a chat template may add around the messages (role markers). */
#define TEMPLATE_TOKENS 32

void fr_route_estimate(fr_route_task *t, const char *prompt, const char *system)
{
    t->est_input = fr_estimate_tokens(prompt) + (system ? fr_estimate_tokens(system) : 0);
    /* At most one token per byte, plus the chat template's. */
    t->worst_input = (long)(strlen(prompt) + (system ? strlen(system) : 0)) + TEMPLATE_TOKENS;
}

void fr_route_estimate_plan(fr_route_task *t, const char *prompt, const char *system,
                            long deps_output)
{
    t->est_input = (prompt ? fr_estimate_tokens(prompt) : 16) +
                   (system ? fr_estimate_tokens(system) : 0) + deps_output;
    t->worst_input = 4 * t->est_input + TEMPLATE_TOKENS;
}

/* ---- eligibility ---------------------------------------------------------- */

int fr_route_check_reachable(const fr_workflow *wf, const fr_endpoints *eps, fr_error *err)
{
    for (size_t t = 0; t < wf->ntasks; t++) {
        const fr_task_spec *ts = &wf->tasks[t];
        const char *why = NULL;
        bool any = false, toolless = false;
        for (size_t e = 0; e < wf->nendpoints && !any; e++) {
            const fr_endpoint_spec *es = &wf->endpoints[e];
            if (ts->endpoint && strcmp(ts->endpoint, es->name) != 0)
                continue;
            if (ts->tier != FR_TIER_ANY && es->tier != ts->tier)
                continue;
            if (ts->is_private && es->tier != FR_TIER_LOCAL)
                continue;
            if (ts->ntools > 0 && !es->tools) {
                toolless = true;
                continue;
            }
            if (!fr_ep_usable(eps, e)) {
                why = fr_ep_unusable(eps, e);
                continue;
            }
            any = true;
        }
        if (!any && why)
            return fr_error_set(err, FR_ECONFIG, ts->file, ts->line,
                                "task '%s' has no usable endpoint: %s", ts->name, why);
        if (!any && toolless)
            return fr_error_set(err, FR_ECONFIG, ts->file, ts->line,
                                "task '%s' calls tools, and every endpoint it may use says "
                                "tools = false: give it an endpoint whose model can call tools",
                                ts->name);
    }
    return FR_OK;
}

/* What keeps task `t` off endpoint `e` (ignoring capacity and cooldown):
 * nothing, the task's own constraints (privacy, a pinned endpoint or
 * tier), or the endpoint (no key, too small a context, failed already). */
enum { EXCL_NONE = 0, EXCL_TASK, EXCL_ENDPOINT };

static int exclusion(const fr_router *rt, const fr_route_task *t, size_t e, const char **why)
{
    const fr_task_spec *ts = &rt->env.wf->tasks[t->idx];
    const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, e);
    if (ts->is_private && s->tier != FR_TIER_LOCAL)
        return *why = "the task is private and may only run on a local endpoint", EXCL_TASK;
    if (ts->endpoint && strcmp(ts->endpoint, s->name) != 0)
        return *why = "the task is pinned to another endpoint", EXCL_TASK;
    if (ts->tier != FR_TIER_ANY && ts->tier != s->tier)
        return *why = "the task is pinned to another tier", EXCL_TASK;
    if (!fr_ep_usable(rt->env.eps, e)) {
        const char *u = fr_ep_unusable(rt->env.eps, e);
        return *why = u ? u : "it is not usable", EXCL_ENDPOINT;
    }
    if (ts->ntools > 0 && !s->tools)
        return *why = "the task calls tools and this endpoint cannot (tools = false)",
               EXCL_ENDPOINT;
    if (s->context > 0 && t->est_input + ts->max_tokens > s->context)
        return *why = "the prompt and max_tokens exceed its context window", EXCL_ENDPOINT;
    if (t->tried[e])
        return *why = "it already failed this task", EXCL_ENDPOINT;
    return EXCL_NONE;
}

bool fr_route_allowed(const fr_router *rt, const fr_route_task *t, size_t e)
{
    const char *why;
    return exclusion(rt, t, e, &why) == EXCL_NONE;
}

/* Why no endpoint can take task `t`, every one being excluded: the
 * endpoints the task itself would accept, each with what keeps it out ("the
 * prompt (~1000 tokens) + max_tokens 512 exceeds small's context of 1000"),
 * and only when there is none, the task's own constraint. Returns owned. */
static char *no_endpoint_reason(const fr_router *rt, const fr_route_task *t)
{
    const fr_workflow *wf = rt->env.wf;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    fr_buf b;
    fr_buf_init(&b, 0);
    fr_buf_puts(&b, "no endpoint can take this task: ");
    size_t head = b.len;
    const char *task_why = "no endpoint is declared";
    for (size_t e = 0; e < neps(rt); e++) {
        const char *why;
        const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, e);
        int ex = exclusion(rt, t, e, &why);
        if (ex == EXCL_TASK)
            task_why = why;
        if (ex != EXCL_ENDPOINT)
            continue;
        if (b.len > head)
            fr_buf_puts(&b, "; ");
        if (!fr_ep_usable(rt->env.eps, e))
            fr_buf_printf(&b, "%s: %s", s->name,
                          fr_ep_unusable(rt->env.eps, e) ? fr_ep_unusable(rt->env.eps, e) : why);
        else if (s->context > 0 && t->est_input + ts->max_tokens > s->context)
            fr_buf_printf(&b,
                          "the prompt (~%ld tokens) + max_tokens %d exceeds %s's context of %ld",
                          t->est_input, ts->max_tokens, s->name, s->context);
        else
            fr_buf_printf(&b, "%s: %s", s->name, why);
    }
    if (b.len == head && ts->is_private) {
        char privacy[700];
        /* "private: inherited from 'x'" reads "private task (inherited from 'x')". */
        const char *why_private = fr_workflow_privacy_text(wf, t->idx, privacy, sizeof privacy);
        why_private += strncmp(why_private, "private: ", 9) == 0 ? 9 : strlen(why_private);
        fr_buf_close(&b);
        return fr_xasprintf("private task%s%s%s: no usable local endpoint (private work never "
                            "leaves the local tier)",
                            *why_private ? " (" : "", why_private, *why_private ? ")" : "");
    }
    if (b.len == head)
        fr_buf_puts(&b, task_why);
    return fr_buf_take(&b);
}

bool fr_route_other_endpoint(const fr_router *rt, const fr_route_task *t)
{
    double now = fr_clock_ms(rt->env.clock);
    for (size_t e = 0; e < neps(rt); e++)
        if ((long)e != t->retry_ep && fr_route_allowed(rt, t, e) &&
            fr_ep_cooldown_until(rt->env.eps, e) <= now)
            return true;
    return false;
}

long fr_route_down_local(const fr_router *rt, const fr_route_task *t, long unreached)
{
    if (unreached >= 0)
        return unreached;
    for (size_t e = 0; e < neps(rt); e++)
        if (fr_ep_spec(rt->env.eps, e)->tier == FR_TIER_LOCAL && fr_ep_down(rt->env.eps, e) &&
            fr_route_allowed(rt, t, e))
            return (long)e;
    return -1;
}

static fr_admit admit(fr_router *rt, const fr_route_task *t, size_t e, char **why)
{
    const fr_workflow *wf = rt->env.wf;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, e);
    fr_admit_ask a = {
        .endpoint = s,
        .worst = fr_price_worst(s, t->worst_input, ts->max_tokens),
        .task_capped = ts->has_budget,
        .task_cap = ts->budget_usd,
        .task_spent = t->res->cost,
        .allow_unpriced = wf->budget.allow_unpriced,
    };
    return fr_budget_admit(rt->env.budget, &a, why);
}

/* ---- what the policy sees --------------------------------------------------- */

/* Endpoint `e` as a policy sees it, for a task of `est_input` tokens in and
 * at most `max_tokens` out. `queued` counts the ready tasks ahead of this one
 * (in this pass over the ready queue) that wait for this endpoint. The
 * strings are borrowed from the endpoints. */
static fr_policy_cand cand_view(const fr_router *rt, size_t e, long est_input, int max_tokens)
{
    const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, e);
    const fr_sched *sc = rt->env.sched;
    return (fr_policy_cand){
        .name = s->name,
        .tier = fr_tier_name(s->tier),
        .protocol = fr_protocol_name(fr_ep_protocol(rt->env.eps, e)),
        .model = fr_ep_model(rt->env.eps, e),
        .in_flight = fr_sched_in_flight(sc, e),
        .max_parallel = fr_sched_capacity(sc, e),
        .free = fr_sched_free_slots(sc, e),
        .queued = (long)rt->queued[e],
        .quality = s->quality,
        .price_in = s->price.input,
        .price_out = s->price.output,
        .est_cost = fr_price_worst(s, est_input, max_tokens),
        .latency_p50 = fr_ep_p50(rt->env.eps, e),
        .tags = (const char *const *)s->tags,
        .ntags = s->ntags,
        .context = s->context,
        .stable_strings = true, /* the endpoint's, kept for the run */
    };
}

/* The JSON form of a candidate view (owned), for the self-check. */
static json_t *cand_json(const fr_policy_cand *c)
{
    json_t *tags = json_array();
    for (size_t i = 0; i < c->ntags; i++)
        json_array_append_new(tags, json_string(c->tags[i]));
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:f, s:f, s:f, s:f, s:o, s:o, s:I,"
                     " s:o, s:o}",
                     "name", c->name, "tier", c->tier, "protocol", c->protocol, "model", c->model,
                     "in_flight", c->in_flight, "max_parallel", c->max_parallel, "free", c->free,
                     "queued", (json_int_t)c->queued, "quality", c->quality, "price_in",
                     c->price_in, "price_out", c->price_out, "est_cost", c->est_cost, "latency_p50",
                     c->latency_p50 >= 0 ? json_real(c->latency_p50) : json_null(), "tags", tags,
                     "context", (json_int_t)c->context, "history", fr_policy_hist_json(c->history),
                     "history_all", fr_policy_hist_json(c->history_all));
}

json_t *fr_route_check_candidates(const fr_router *rt)
{
    json_t *cj = json_array();
    for (size_t e = 0; e < neps(rt); e++)
        if (fr_ep_usable(rt->env.eps, e)) {
            fr_policy_cand c = cand_view(rt, e, 100, 256);
            json_array_append_new(cj, cand_json(&c));
        }
    return cj;
}

/* Task `t` as a policy sees it; `tried` (room for every endpoint) receives
 * the names of the endpoints it failed on. */
static fr_policy_task task_view(const fr_router *rt, const fr_route_task *t, const char **tried)
{
    const fr_workflow *wf = rt->env.wf;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    size_t ntried = 0;
    for (size_t e = 0; e < neps(rt); e++)
        if (t->tried[e])
            tried[ntried++] = fr_ep_spec(rt->env.eps, e)->name;
    return (fr_policy_task){
        .name = ts->name,
        .agent = wf->agents[ts->agent].name,
        .type = ts->type,
        .complexity = ts->complexity,
        .priority = ts->priority,
        .is_private = ts->is_private,
        .attempt = t->res->attempts + 1,
        .reason = t->reason,
        .tried = tried,
        .ntried = ntried,
        .est_input_tokens = t->est_input,
        .max_tokens = ts->max_tokens,
        .tools = (long)t->ntools,
        .has_draw = true,
        .draw = fr_policy_draw(rt->draw_seed, ts->name, t->res->attempts + 1),
    };
}

/* The run as a policy sees it, with `ready` ready tasks waiting. */
static fr_policy_run run_view(const fr_router *rt, size_t ready)
{
    const fr_sched *sc = rt->env.sched;
    const fr_budget *b = rt->env.budget;
    bool capped = fr_budget_has_cap(b, FR_CAP_RUN);
    return (fr_policy_run){
        .capped = capped,
        .budget = capped ? fr_budget_cap(b, FR_CAP_RUN) : 0,
        .spent = fr_budget_spent(b),
        .reserved = fr_budget_reserved(b),
        .remaining = capped ? fr_budget_remaining(b, FR_CAP_RUN) : 0,
        .elapsed = (double)(fr_clock_ns(rt->env.clock) - *rt->env.start_ns) / 1e9,
        .done = (long)(rt->env.wf->ntasks - fr_sched_unfinished(sc)),
        .total = (long)rt->env.wf->ntasks,
        .ready = (long)ready,
        .seed = rt->seed,
    };
}

/* ---- the decision ------------------------------------------------------------ */

/* The built-in choice when the policy cannot decide: a free candidate that
 * covers the task's complexity, local before cloud, then the cheapest. */
static long default_choice(const fr_router *rt, const fr_route_task *t, const long *cands, size_t n)
{
    const fr_task_spec *ts = &rt->env.wf->tasks[t->idx];
    long best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, (size_t)cands[i]);
        if (fr_sched_free_slots(rt->env.sched, (size_t)cands[i]) <= 0)
            continue;
        double score = -fr_price_worst(s, t->est_input, ts->max_tokens) * 100;
        if (s->quality < ts->complexity)
            score -= (ts->complexity - s->quality) * 10;
        if (s->tier == FR_TIER_LOCAL)
            score += 2;
        if (best < 0 || score > best_score) {
            best = cands[i];
            best_score = score;
        }
    }
    return best;
}

static void explain_privacy(const fr_router *rt, const fr_route_task *t, fr_buf *line)
{
    char privacy[700];
    if (*fr_workflow_privacy_text(rt->env.wf, t->idx, privacy, sizeof privacy))
        fr_buf_printf(line, "  %s", privacy);
}

/* Prints an --explain line: `line` (borrowed) as it is in the text format,
 * or under --log-format json the task's latest decision with its task as
 * one "route.decision" object (engine/util/log). Closes `line`. */
static void explain_out(const fr_router *rt, const fr_route_task *t, fr_buf *line)
{
    fr_buf_puts(line, "\n");
    json_t *o = json_pack("{s:s}", "task", rt->env.wf->tasks[t->idx].name);
    json_t *d =
        fr_declog_json(t->res->decisions, fr_declog_count(t->res->decisions) - 1, rt->env.wf);
    char *fields = NULL;
    if (o && d && json_object_update(o, d) == 0)
        fields = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(d);
    fr_log_json_fields(FR_LOG_WARN, "route", "route.decision", fields, fr_buf_str(line));
    free(fields);
    json_decref(o);
    fr_buf_close(line);
}

/* Appends a routing decision to the task's log: who decided (the policy,
 * or "default"), its version, why it was asked, the endpoint, and the
 * candidates it saw (endpoints `eps` and their `n` views `cands`, borrowed:
 * their free slots and estimated costs), and the policy's explanation `why`
 * (borrowed; NULL or "": none). With --explain it is printed as it happens. */
static void record_decision(fr_router *rt, fr_route_task *t, const char *policy, int version,
                            size_t ep, const long *eps, const fr_policy_cand *cands, size_t n,
                            const char *why)
{
    const char *name = fr_ep_spec(rt->env.eps, ep)->name;
    fr_decision_cand few[16];
    fr_decision_cand *seen = n <= sizeof few / sizeof few[0] ? few : fr_xmalloc(n * sizeof *seen);
    for (size_t i = 0; i < n; i++)
        seen[i] = (fr_decision_cand){
            .endpoint = (size_t)eps[i], .free = cands[i].free, .est_cost = cands[i].est_cost};
    fr_declog_add(t->res->decisions, policy, version, t->reason, ep, t->res->attempts + 1, seen, n);
    if (seen != few)
        free(seen);
    if (why && *why)
        fr_declog_set_explanation(t->res->decisions, why);
    if (!rt->env.explain)
        return;
    fr_buf line;
    fr_buf_init(&line, 0);
    fr_buf_printf(
        &line, "explain: %s -> %s%s%s  (%s v%d, %s; candidates:", rt->env.wf->tasks[t->idx].name,
        name, why && *why ? ": " : "", why && *why ? why : "", policy, version, t->reason);
    for (size_t i = 0; i < n; i++) {
        char est[FR_USD_LEN];
        fr_buf_printf(&line, " %s free=%d est=%s", cands[i].name, cands[i].free,
                      fr_usd_cost(est, cands[i].est_cost));
    }
    fr_buf_puts(&line, ")");
    explain_privacy(rt, t, &line);
    explain_out(rt, t, &line);
}

void fr_route_note_cache(fr_router *rt, fr_route_task *t, size_t e, const char *outcome,
                         const char *error)
{
    const char *name = fr_ep_spec(rt->env.eps, e)->name;
    fr_declog_add(t->res->decisions, "cache", fr_policy_version(live(rt)), t->reason, e,
                  t->res->attempts + 1, NULL, 0);
    fr_declog_set_outcome(t->res->decisions, outcome, error);
    if (!rt->env.explain)
        return;
    fr_buf line;
    fr_buf_init(&line, 0);
    fr_buf_printf(&line, "explain: %s -> %s  ", rt->env.wf->tasks[t->idx].name, name);
    if (error) {
        fr_buf_printf(&line, "(cached result failed its gates: %s)", error);
    } else {
        fr_buf_puts(&line, "(cached result, no request)");
        explain_privacy(rt, t, &line);
    }
    explain_out(rt, t, &line);
}

void fr_route_set_outcome(fr_declog *decisions, const char *outcome, const char *error)
{
    fr_declog_set_outcome(decisions, outcome, error);
}

/* Counts a decision the policy failed to make and logs its failure site
 * once, however many decisions it costs. */
static void policy_failed(fr_router *rt, const char *task, const fr_error *perr)
{
    char msg[1400], site[700];
    fr_error_format(perr, msg, sizeof msg);
    rt->policy_errors++;
    snprintf(site, sizeof site, "%s:%d:%d", perr->source, perr->line, perr->code);
    if (json_object_get(rt->policy_sites, site))
        return;
    json_object_set_new(rt->policy_sites, site, json_true());
    fr_log_event(FR_LOG_WARN, "policy", "policy.error",
                 "task=%s error=\"%s\"; the built-in default decides", task, msg);
}

static fr_route_decision dispatch_to(size_t e)
{
    return (fr_route_decision){.kind = FR_ROUTE_DISPATCH, .endpoint = e};
}

static fr_route_decision wait_until(double at_ms)
{
    return (fr_route_decision){.kind = FR_ROUTE_WAIT, .wake_at_ms = at_ms};
}

static fr_route_decision end_with(fr_task_state state, char *reason)
{
    return (fr_route_decision){.kind = FR_ROUTE_END, .state = state, .reason = reason};
}

/* Ends task `t` because endpoint `ep`, the soonest it could use, cools
 * down past the task's timeout: waiting could only end in a timeout. */
static fr_route_decision fail_wait(const fr_router *rt, const fr_route_task *t, size_t ep)
{
    return end_with(
        FR_TASK_FAILED,
        fr_xasprintf("no endpoint can take the task before its timeout of %g s: %s "
                     "cools down for %.0f s more%s%s",
                     rt->env.wf->tasks[t->idx].timeout_s, fr_ep_spec(rt->env.eps, ep)->name,
                     (fr_ep_cooldown_until(rt->env.eps, ep) - fr_clock_ms(rt->env.clock)) / 1000.0,
                     t->last_error ? "; last error: " : "", t->last_error ? t->last_error : ""));
}

/* A scheduled retry goes back to its endpoint once it has cooled down and
 * has a slot, if the budget admits it. */
static fr_route_decision route_retry(fr_router *rt, fr_route_task *t)
{
    size_t ep = (size_t)t->retry_ep;
    double until = fr_ep_cooldown_until(rt->env.eps, ep);
    if (until > fr_clock_ms(rt->env.clock)) {
        if (t->deadline_ms > 0 && until >= t->deadline_ms)
            return fail_wait(rt, t, ep);
        return wait_until(until);
    }
    if (fr_sched_free_slots(rt->env.sched, ep) <= 0) {
        rt->queued[ep]++;
        return wait_until(0);
    }
    char *why = NULL;
    fr_admit b = admit(rt, t, ep, &why);
    if (b == FR_ADMIT_NEVER)
        return end_with(FR_TASK_BUDGET, why);
    free(why);
    return b == FR_ADMIT_FITS ? dispatch_to(ep) : wait_until(0);
}

/* Why a task with no candidate left fails: owned. */
static char *nothing_left(const fr_router *rt, const fr_route_task *t)
{
    if (t->last_error && strcmp(t->reason, "quality") == 0)
        return fr_xasprintf("no endpoint left after a failed quality gate; %s", t->last_error);
    if (t->last_error && t->finish_outcome && strcmp(t->reason, t->finish_outcome) == 0)
        return fr_xasprintf("no endpoint left after a reply that did not finish; %s",
                            t->last_error);
    if (t->last_error)
        return fr_xasprintf("every usable endpoint failed; last error: %s", t->last_error);
    return no_endpoint_reason(rt, t);
}

/* Asks the policy to choose among candidates `cands` (`n` of them, none
 * full-but-one at least free). */
static fr_route_decision ask_policy(fr_router *rt, fr_route_task *t, const long *cands, size_t n)
{
    const fr_workflow *wf = rt->env.wf;
    fr_policy *policy = live(rt);
    fr_policy_cand *cv = rt->views;
    const fr_task_spec *ts = &wf->tasks[t->idx];
    bool history = fr_policy_reads_history(policy);
    double now = history ? fr_history_now(rt->history) : 0;
    for (size_t i = 0; i < n; i++) {
        cv[i] = cand_view(rt, (size_t)cands[i], t->est_input, ts->max_tokens);
        if (history) {
            fr_policy_hist *h = &rt->hviews[2 * i];
            fr_history_view(rt->history, (size_t)cands[i], ts->type, ts->complexity, now, h, h + 1);
            cv[i].history = h;
            cv[i].history_all = h + 1;
        }
    }
    fr_policy_task tv = task_view(rt, t, rt->tried);
    /* The ready tasks waiting for an endpoint, this one included. */
    fr_policy_run rv = run_view(rt, fr_sched_ready(rt->env.sched) + rt->pass_waiters + 1);
    long chosen = -1;
    fr_error perr = {0};
    char why[FR_POLICY_WHY_MAX + 1];
    int rc = fr_policy_route_explain(policy, &tv, cv, n, &rv, &chosen, why, sizeof why, &perr);
    long ep = -1;
    const char *decided_by = fr_policy_name(policy);
    if (rc != FR_OK) {
        policy_failed(rt, wf->tasks[t->idx].name, &perr);
        ep = default_choice(rt, t, cands, n);
        decided_by = "default";
        why[0] = '\0';
    } else if (chosen >= 0) {
        ep = cands[chosen];
        if (fr_sched_free_slots(rt->env.sched, (size_t)ep) <= 0) {
            rt->queued[ep]++; /* the policy chose a full endpoint: wait for it */
            ep = -1;
        }
    }
    if (ep >= 0)
        record_decision(rt, t, decided_by, fr_policy_version(policy), (size_t)ep, cands, cv, n,
                        why);
    return ep >= 0 ? dispatch_to((size_t)ep) : wait_until(0);
}

fr_route_decision fr_route(fr_router *rt, fr_route_task *t)
{
    double now = fr_clock_ms(rt->env.clock);
    if (t->retry_ep >= 0 && fr_ep_cooldown_until(rt->env.eps, (size_t)t->retry_ep) > now &&
        fr_route_other_endpoint(rt, t)) {
        /* The endpoint of the retry is cooling down (overloaded or down):
         * another endpoint may take the task now rather than wait for it. */
        t->tried[t->retry_ep] = 1;
        t->retry_ep = -1;
        t->reason = "error";
    }
    if (t->retry_ep >= 0)
        return route_retry(rt, t);

    size_t n = 0, nfree = 0;
    long *cands = rt->cands;
    double soonest = 0;
    bool cooling = false, budget_wait = false;
    char *budget_why = NULL;
    for (size_t e = 0; e < neps(rt); e++) {
        if (!fr_route_allowed(rt, t, e))
            continue;
        fr_admit b = admit(rt, t, e, &budget_why);
        if (b != FR_ADMIT_FITS) {
            budget_wait |= b == FR_ADMIT_WAIT;
            continue;
        }
        double until = fr_ep_cooldown_until(rt->env.eps, e);
        if (until > now) {
            if (!cooling || until < soonest)
                soonest = until;
            cooling = true;
            continue;
        }
        cands[n++] = (long)e;
        nfree += fr_sched_free_slots(rt->env.sched, e) > 0;
    }
    fr_route_decision d;
    if (n == 0 && !cooling && budget_wait) {
        d = wait_until(0); /* requests in flight may settle below their worst case */
    } else if (n == 0 && !cooling && budget_why) {
        d = end_with(FR_TASK_BUDGET, fr_xasprintf("budget: %s", budget_why));
    } else if (n == 0 && !cooling) {
        d = end_with(FR_TASK_FAILED, nothing_left(rt, t));
    } else if (n == 0 && t->deadline_ms > 0 && soonest >= t->deadline_ms) {
        /* Every endpoint it may use cools down past its timeout. */
        size_t e = 0;
        while (e + 1 < neps(rt) && fr_ep_cooldown_until(rt->env.eps, e) != soonest)
            e++;
        d = fail_wait(rt, t, e);
    } else if (n == 0) {
        d = wait_until(soonest);
    } else if (nfree == 0) {
        d = wait_until(0); /* every candidate is full: wait without asking */
    } else {
        d = ask_policy(rt, t, cands, n);
    }
    free(budget_why);
    return d;
}

int fr_route_on_result(fr_router *rt, const fr_route_task *t, size_t e, const fr_reply *reply,
                       double latency_ms, double cost, fr_error *err)
{
    fr_policy *policy = live(rt);
    if (!fr_policy_has_on_result(policy))
        return FR_OK;
    const fr_endpoint_spec *s = fr_ep_spec(rt->env.eps, e);
    fr_policy_task tv = task_view(rt, t, rt->tried);
    fr_policy_run rv = run_view(rt, fr_sched_ready(rt->env.sched) + rt->pass_waiters);
    fr_policy_result result = {
        .endpoint = s->name,
        .tier = fr_tier_name(s->tier),
        .text = reply->text,
        .json = reply->json,
        .latency_ms = latency_ms,
        .input_tokens = reply->usage.input,
        .output_tokens = reply->usage.output,
        .cost_usd = cost,
        .attempt = t->res->attempts,
    };
    fr_verdict v = FR_VERDICT_ACCEPT;
    fr_error perr = {0};
    if (fr_policy_on_result_view(policy, &tv, &result, &rv, &v, &perr) != FR_OK) {
        policy_failed(rt, rt->env.wf->tasks[t->idx].name, &perr);
        v = FR_VERDICT_ACCEPT;
    }
    if (v == FR_VERDICT_RETRY)
        return fr_error_set(err, FR_ERETRY, NULL, 0, "on_result of policy %s asked for a retry",
                            fr_policy_name(policy));
    if (v == FR_VERDICT_ESCALATE)
        return fr_error_set(err, FR_EQUALITY, NULL, 0, "on_result of policy %s asked to escalate",
                            fr_policy_name(policy));
    return FR_OK;
}

fr_router *fr_router_for_run(const fr_workflow *wf, const fr_endpoints *eps, const fr_sched *sched,
                             fr_budget *budget, const fr_clock *clock, const uint64_t *start_ns,
                             fr_policy *(*policy)(void *ud), void *policy_ud, bool explain)
{
    fr_route_env env = {
        .wf = wf,
        .eps = eps,
        .sched = sched,
        .budget = budget,
        .clock = clock,
        .start_ns = start_ns,
        .policy = policy,
        .policy_ud = policy_ud,
        .explain = explain,
    };
    return fr_router_new(&env);
}

int fr_route_check_policy(const fr_router *rt, fr_error *err)
{
    json_t *cands = fr_route_check_candidates(rt);
    int rc = fr_policy_check(live(rt), cands, err);
    json_decref(cands);
    return rc;
}

fr_route_decision fr_route_stalled(const fr_router *rt, const fr_route_task *t)
{
    if (t->retry_ep >= 0)
        return (fr_route_decision){.kind = FR_ROUTE_DISPATCH, .endpoint = (size_t)t->retry_ep};
    return (fr_route_decision){
        .kind = FR_ROUTE_END,
        .state = FR_TASK_FAILED,
        .reason = fr_xasprintf("policy %s keeps the task waiting while nothing else runs: it "
                               "accepts none of the endpoints the task may use",
                               fr_policy_name(live(rt)))};
}

static json_t *reload_candidates(void *ud)
{
    return fr_route_check_candidates(ud);
}

static double reload_elapsed(void *ud)
{
    const fr_router *rt = ud;
    return (double)(fr_clock_ns(rt->env.clock) - *rt->env.start_ns) / 1e6;
}

static void reload_swapped(void *ud)
{
    fr_router *rt = ud;
    rt->swapped(rt->swapped_ud);
}

fr_reload_hooks fr_route_reload_hooks(fr_router *rt, void (*swapped)(void *ud), void *ud)
{
    rt->swapped = swapped;
    rt->swapped_ud = ud;
    return (fr_reload_hooks){rt, reload_candidates, reload_elapsed, reload_swapped};
}
