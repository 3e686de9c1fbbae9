/* The operations of the PostgreSQL state store (pgstore.h): their checks,
 * their SQL (each idempotent, see pgstore.h), and what their results say. */

#include "engine/store/pgstore_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "engine/util/mem.h"
#include "engine/util/utf8.h"

/* ---- SQL shared by several operations ---- */

/* An attempt's key, parameters $1..$4: a tool loop's turns are requests of
 * one attempt, each booked on its own row. */
#define KEY_WHERE "run_id = $1 AND task = $2 AND attempt = $3::integer AND turn = $4::integer"

/* What lease `l`'s run spent in its period (a month or a day). */
#define RUN_SPENT(l)                                                                               \
    "coalesce((SELECT sum(a.cost_usd) FROM attempts a WHERE a.run_id = " l ".run_id"               \
    " AND (a.month = " l ".period OR a.day = " l ".period)), 0)"

/* The unspent part of open lease `l`. */
#define UNSPENT(l) "greatest(0, " l ".amount - " RUN_SPENT(l) ")"

/* What period $1 is charged: every attempt, in flight at its worst case. */
#define PERIOD_CHARGED                                                                             \
    "coalesce((SELECT charged_pusd FROM period_totals WHERE period = $1), 0)::float8 / 1e12"

/* The error of a request in flight whose process was found dead. */
#define DIED_IN_FLIGHT                                                                             \
    "'the run''s process died with the request in flight: its worst case is kept'"

/* A run found dead becomes "crashed" with what its attempts cost. */
#define CRASH_SET                                                                                  \
    "SET status = 'crashed',"                                                                      \
    " cost_usd = coalesce((SELECT sum(a.cost_usd) FROM attempts a WHERE a.run_id = r.id), 0)"

/* A reservation's insert, with `cond` the condition of its capacity and
 * `fence` that of the run's shares of its capped periods: returns 1 when
 * the key is booked (now, or by an earlier send of the same), 2 when the
 * fence refused it, else 0 (no slot). */
#define RESERVE_SQL(cond, fence)                                                                   \
    "WITH ins AS (INSERT INTO attempts (run_id, task, attempt, turn, endpoint, tier, model, "      \
    "cost_usd,"                                                                                    \
    " outcome, at, month, day, task_type, owner_id, user_name, host, complexity)"                  \
    " SELECT $1, $2, $3::integer, $4::integer, $5, $6, $7, $8::float8, 'pending', $9::float8, "    \
    "$10, $11, $12,"                                                                               \
    " $13, $14, $15, $16::float8 WHERE " cond " AND " fence                                        \
    " ON CONFLICT (run_id, task, attempt, turn) DO NOTHING RETURNING 1)"                           \
    " SELECT CASE WHEN EXISTS (SELECT 1 FROM ins) OR EXISTS (SELECT 1 FROM attempts "              \
    "WHERE " KEY_WHERE ") THEN 1 WHEN NOT (" fence ") THEN 2 ELSE 0 END"

/* The slots of endpoint $5 this owner, or owner `who`, holds: its attempts
 * in flight there. */
#define HELD_BY(who)                                                                               \
    "(SELECT count(*) FROM attempts x WHERE x.endpoint = $5 AND x.outcome = 'pending'"             \
    " AND x.owner_id = " who ")"
/* A capped endpoint's condition: a slot is free among its max_parallel
 * ($17), and no other live owner that waits for one comes first: one that
 * holds fewer than this owner ($13), or as many and has waited since
 * earlier (this owner: since its oldest request waits, else now, $9), the
 * owner id breaking a tie. Without it, a run with a queue takes every slot
 * it frees before a waiting process asks again. */
#define SLOT_FREE                                                                                  \
    "coalesce((SELECT held FROM in_flight WHERE endpoint = $5), 0) < $17::integer"                 \
    " AND NOT EXISTS (SELECT 1 FROM slot_waits w JOIN owners o ON o.id = w.owner_id"               \
    " AND o.expires > now() WHERE w.endpoint = $5 AND w.owner_id <> $13"                           \
    " AND (" HELD_BY("w.owner_id") ", w.since, w.owner_id) < (" HELD_BY(                           \
        "$13") ","                                                                                 \
               " coalesce((SELECT m.since FROM slot_waits m WHERE m.owner_id = $13 AND "           \
               "m.endpoint = $5),"                                                                 \
               " $9::float8), $13))"
/* The fence of period `per` (the attempt's month $10 or day $11): this
 * owner ($13) holds an open lease of the run's share of that period's cap
 * that covers what the run spent in it and this worst case ($8). A lease
 * another process reclaimed (its owner looked dead) covers nothing more:
 * the run leases again before it books. */
#define FENCE(per)                                                                                 \
    "EXISTS (SELECT 1 FROM leases l WHERE l.run_id = $1 AND l.period = " per                       \
    " AND l.closed_at IS NULL AND l.owner_id = $13"                                                \
    " AND " RUN_SPENT("l") " + $8::float8 <= l.amount + 1e-9)"

/* Indexed by [capped][fence bits]: FR_PGSTORE_FENCE_MONTH, _DAY. */
static const char *const RESERVE[2][4] = {
    {RESERVE_SQL("true", "true"), RESERVE_SQL("true", FENCE("$10")),
     RESERVE_SQL("true", FENCE("$11")), RESERVE_SQL("true", FENCE("$10") " AND " FENCE("$11"))},
    {RESERVE_SQL(SLOT_FREE, "true"), RESERVE_SQL(SLOT_FREE, FENCE("$10")),
     RESERVE_SQL(SLOT_FREE, FENCE("$11")),
     RESERVE_SQL(SLOT_FREE, FENCE("$10") " AND " FENCE("$11"))},
};
static const char *const ENDPOINT_ROW =
    "INSERT INTO endpoints (name) VALUES ($1) ON CONFLICT (name) DO NOTHING";
static const char *const ENDPOINT_LOCK = "SELECT name FROM endpoints WHERE name = $1 FOR UPDATE";

/* A settle, notifying a capped endpoint's channel; returns the rows
 * settled and the attempt's outcome as it was before. */
static const char *const SETTLE_SQL =
    "WITH u AS (UPDATE attempts SET input_tokens = $5::bigint, output_tokens = $6::bigint,"
    " cached_tokens = $7::bigint, usage_estimated = $8::boolean, cost_usd = $9::float8,"
    " latency_ms = $10::float8, outcome = $11, error = $12, at = $13::float8,"
    " ttft_ms = $14::float8, score = $15::float8,"
    " complexity = coalesce($16::float8, complexity) WHERE " KEY_WHERE
    /* in flight, or cancelled at its worst case while its process looked
     * dead: the process lived on, and books what it really cost */
    " AND (outcome = 'pending' OR (outcome = 'cancelled' AND error = " DIED_IN_FLIGHT
    " AND owner_id = $17)) RETURNING endpoint),"
    " n AS (SELECT pg_notify(fr_slot_channel(e.name), e.name) FROM u"
    " JOIN endpoints e ON e.name = u.endpoint)"
    " SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n),"
    " (SELECT outcome FROM attempts WHERE " KEY_WHERE ")";
static const char *const SETTLE_TOTAL =
    "SELECT coalesce((SELECT booked_pusd FROM period_totals WHERE period ="
    " (SELECT month FROM attempts WHERE " KEY_WHERE ")), 0)::float8 / 1e12";

static const char *const RUN_BEGIN_SQL =
    "WITH crashed AS (UPDATE runs r " CRASH_SET " WHERE r.status = 'running' AND r.id <> $1"
    " AND NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = r.owner_id AND o.expires > now())"
    " RETURNING r.id),"
    /* its requests in flight end cancelled, their worst case kept (as on SQLite) */
    " cancelled AS (UPDATE attempts SET outcome = 'cancelled', at = $4::float8,"
    " error = " DIED_IN_FLIGHT
    " WHERE run_id IN (SELECT id FROM crashed) AND outcome = 'pending' RETURNING 1),"
    " ins AS (INSERT INTO runs (id, workflow, wf_path, started_at, owner_id, user_name, host, pid)"
    " VALUES ($1, $2, $3, $4::float8, $5, $6, $7, $8::integer) ON CONFLICT (id) DO NOTHING"
    " RETURNING id)"
    " SELECT (SELECT count(*) FROM ins), (SELECT owner_id FROM runs WHERE id = $1),"
    " (SELECT count(*) FROM crashed)";

static const char *const PERIOD_ROW =
    "INSERT INTO period_totals (period) VALUES ($1) ON CONFLICT (period) DO NOTHING";
static const char *const PERIOD_LOCK =
    "SELECT period FROM period_totals WHERE period = $1 FOR UPDATE";
/* Closes the period's open leases of dead owners; their runs crashed. */
static const char *const LEASE_RECLAIM =
    "WITH d AS (UPDATE leases l SET closed_at = $2::float8, closed_by = 'reclaimed',"
    " spent_usd = " RUN_SPENT("l") " WHERE l.period = $1 AND l.closed_at IS NULL"
                                   " AND NOT EXISTS (SELECT 1 FROM owners o WHERE o.id = "
                                   "l.owner_id AND o.expires > now())"
                                   " RETURNING l.run_id)"
                                   " UPDATE runs r " CRASH_SET
                                   " WHERE r.id IN (SELECT run_id FROM d) AND r.status = 'running'";
/* The grant; returns it, whether another live owner holds the run's lease,
 * whether a lease row was written, and the period's figures as
 * fr_store_month_spent and fr_store_month_used give them. */
static const char *const LEASE_GRANT =
    "WITH spent AS (SELECT " PERIOD_CHARGED " AS v),"
    " outstanding AS (SELECT coalesce(sum(" UNSPENT(
        "l") "), 0) AS v FROM open_leases l"
             " WHERE l.period = $1),"
             " other AS (SELECT 1 FROM open_leases l WHERE l.run_id = $2 AND l.period = $1 AND "
             "l.live"
             " AND l.owner_id IS DISTINCT FROM $3),"
             " g AS (SELECT greatest(0, least($4::float8, $5::float8 - spent.v - outstanding.v)) "
             "AS v"
             " FROM spent, outstanding),"
             " w AS (INSERT INTO leases AS l (run_id, period, amount, owner_id, opened_at)"
             " SELECT $2, $1, g.v + " RUN_SPENT(
                 "n") ", $3, $6::float8"
                      " FROM g, (SELECT $2::text AS run_id, $1::text AS period) n"
                      " WHERE NOT EXISTS (SELECT 1 FROM other)"
                      " ON CONFLICT (run_id, period) WHERE closed_at IS NULL"
                      " DO UPDATE SET amount = l.amount + (SELECT v FROM g) RETURNING 1)"
                      " SELECT (SELECT v FROM g), (SELECT count(*) FROM other), (SELECT count(*) "
                      "FROM w), (SELECT v FROM spent), (SELECT v FROM spent) + coalesce((SELECT"
                      " sum(" UNSPENT("l") ") FROM open_leases l WHERE l.period = $1 AND l.live"
                                           " AND l.owner_id IS DISTINCT FROM $3), 0)";
static const char *const RELEASE_SQL =
    "UPDATE leases l SET closed_at = $3::float8, closed_by = 'released',"
    " spent_usd = " RUN_SPENT("l") " WHERE l.run_id = $1 AND l.owner_id = $2"
                                   " AND l.closed_at IS NULL";
static const char *const USED_SQL = "SELECT " PERIOD_CHARGED " + coalesce((SELECT sum(" UNSPENT(
    "l") ") FROM open_leases l"
         " WHERE l.period = $1 AND l.live AND l.owner_id IS DISTINCT FROM $2), 0)";

/* ---- checks ---- */

static bool one_of(const char *s, const char *const *list)
{
    for (; s && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static bool valid_usd(double v)
{
    return isfinite(v) && v >= 0;
}

/* Checks an attempt as store.h's; `settle` also wants a final outcome. */
static bool valid_attempt(const fr_attempt_rec *a, bool settle)
{
    static const char *const tiers[] = {"local", "cloud", NULL};
    static const char *const outcomes[] = {"ok",        "quality",   "error",     "timeout",
                                           "cancelled", "budget",    "truncated", "refused",
                                           "tool_call", "no_answer", NULL};
    return a && a->run_id && a->task && a->endpoint && one_of(a->tier, tiers) &&
           (!settle || one_of(a->outcome, outcomes)) && a->attempt >= 1 && a->turn >= 0 &&
           a->input >= 0 && a->output >= 0 && a->cached >= 0 && valid_usd(a->cost_usd) &&
           valid_usd(a->latency_ms);
}

/* A month "YYYY-MM" or a day "YYYY-MM-DD". */
static bool valid_period(const char *p)
{
    static const char shape[] = "dddd-dd-dd";
    size_t n = p ? strlen(p) : 0;
    if (n != 7 && n != 10)
        return false;
    for (size_t i = 0; i < n; i++)
        if (shape[i] == 'd' ? (p[i] < '0' || p[i] > '9') : p[i] != '-')
            return false;
    return true;
}

/* Whether an operation is refused at once: FR_EINVAL for `bad` arguments,
 * FR_ECANCELED when `s` is closing, the open's error after a failed open. */
static int refused(const fr_pgstore *s, bool bad)
{
    if (!s || bad)
        return FR_EINVAL;
    if (s->closing)
        return FR_ECANCELED;
    return s->open_rc < 0 ? s->open_rc : FR_OK;
}

/* The store's time in unix seconds. */
static double now_of(const fr_pgstore *s)
{
    return fr_pgstore_clock(s);
}

/* ---- results ---- */

static const char *cell(const fr_pgres *res, int stmt, int col)
{
    const fr_pgres *p = fr_pgres_part(res, stmt);
    return p ? fr_pgres_value(p, 0, col) : NULL;
}

static double cell_num(const fr_pgres *res, int stmt, int col)
{
    const char *v = cell(res, stmt, col);
    return v ? strtod(v, NULL) : 0;
}

static long long cell_int(const fr_pgres *res, int stmt, int col)
{
    const char *v = cell(res, stmt, col);
    return v ? strtoll(v, NULL, 10) : 0;
}

static char *dup_or_null(const char *v)
{
    return v ? fr_xstrdup(v) : NULL;
}

/* A cache row read back, or NULL when it is damaged (a miss). */
static fr_reply *cache_reply(const fr_pgres *row)
{
    const char *model = fr_pgres_value(row, 0, 0), *text = fr_pgres_value(row, 0, 1);
    const char *json = fr_pgres_value(row, 0, 2);
    long long use[3];
    for (int i = 0; i < 3; i++) {
        const char *v = fr_pgres_value(row, 0, 3 + i);
        use[i] = v ? strtoll(v, NULL, 10) : -1;
    }
    json_t *parsed = NULL;
    if (!text || fr_utf8_text(text, strlen(text), NULL) ||
        (model && fr_utf8_text(model, strlen(model), NULL)) || use[0] < 0 || use[1] < 0 ||
        use[2] < 0 || (json && !(parsed = json_loads(json, JSON_DECODE_ANY, NULL))))
        return NULL;
    fr_reply *r = fr_xcalloc(1, sizeof *r);
    r->text = fr_xstrdup(text);
    r->json = parsed;
    r->model = dup_or_null(model);
    r->finish_reason = fr_xstrdup("cached");
    r->finish = FR_FINISH_STOP;
    r->usage.input = use[0];
    r->usage.output = use[1];
    r->usage.cached = use[2];
    return r;
}

static void approval_done(op *o, const fr_pgres *row)
{
    if (fr_pgres_rows(row) < 1) {
        o->cb.approval(o->ud, FR_OK, NULL, NULL);
        return;
    }
    fr_store_approval a = {0};
    char **strs[] = {&a.workflow, &a.task, &a.output_hash, &a.state, &a.run_id, &a.output_path};
    for (int i = 0; i < 6; i++)
        *strs[i] = dup_or_null(fr_pgres_value(row, 0, i));
    const char *v = fr_pgres_value(row, 0, 6);
    a.asked_at = v ? strtod(v, NULL) : 0;
    a.by = dup_or_null(fr_pgres_value(row, 0, 7));
    v = fr_pgres_value(row, 0, 8);
    a.decided_at = v ? strtod(v, NULL) : 0;
    a.note = dup_or_null(fr_pgres_value(row, 0, 9));
    o->cb.approval(o->ud, FR_OK, &a, NULL);
    fr_store_approval_clear(&a);
}

/* Keeps period `key`'s figures a lease read, for refusals to quote. */
static void keep_figures(fr_pgstore *s, const char *key, double spent, double used)
{
    size_t n = sizeof s->figures / sizeof s->figures[0], i = 0;
    while (i < n && s->figures[i].key[0] && strcmp(s->figures[i].key, key) != 0)
        i++;
    if (i == n)
        i = 0; /* more periods than a run leases in: the first makes room */
    snprintf(s->figures[i].key, sizeof s->figures[i].key, "%s", key);
    s->figures[i].spent = spent;
    s->figures[i].used = used;
}

int fr_pgstore_period_figures(const fr_pgstore *s, const char *period, double *spent, double *used)
{
    if (!s || !period || !spent || !used)
        return FR_EINVAL;
    for (size_t i = 0; i < sizeof s->figures / sizeof s->figures[0]; i++)
        if (strcmp(s->figures[i].key, period) == 0) {
            *spent = s->figures[i].spent;
            *used = s->figures[i].used;
            return FR_OK;
        }
    return FR_ENOENT;
}

/* The completion of `o` with an error (rc not FR_OK). */
static void finish_error(fr_pgstore *s, op *o, int rc, const fr_error *err)
{
    switch (o->kind) {
    case K_OWNER:
    case K_OWNER_END:
    case K_LISTEN:
    case K_WAITING:
        fr_pgstore_internal_done(s, o, rc, err);
        return;
    case K_SETTLE:
    case K_LEASE:
    case K_USED:
        o->cb.value(o->ud, rc, 0, err);
        return;
    case K_CACHE_GET:
        o->cb.reply(o->ud, rc, NULL, err);
        return;
    case K_APPROVAL_GET:
        o->cb.approval(o->ud, rc, NULL, err);
        return;
    case K_STATUS:
        o->cb.status(o->ud, rc, NULL, 0, err);
        return;
    default:
        o->cb.done(o->ud, rc, err);
        return;
    }
}

void fr_pgstore_op_finish(fr_pgstore *s, op *o, int rc, const fr_error *err, const fr_pgres *res,
                          int b)
{
    if (rc != FR_OK) {
        finish_error(s, o, rc, err);
        return;
    }
    switch (o->kind) {
    case K_RUN_BEGIN: {
        const char *holder = cell(res, b, 1);
        if (cell_int(res, b, 0) == 1 || (o->resent && holder && strcmp(holder, s->owner) == 0))
            o->cb.done(o->ud, FR_OK, NULL);
        else
            fr_pgstore_fail(s, o, FR_EINVAL, "the run id is already recorded");
        return;
    }
    case K_RUN_END:
        if (fr_pgres_affected(fr_pgres_part(res, b)) == 1)
            o->cb.done(o->ud, FR_OK, NULL);
        else
            fr_pgstore_fail(s, o, FR_EINVAL, "no such run in the state database");
        return;
    case K_RESERVE:
        switch (cell_int(res, b + o->n - 1, 0)) {
        case 1:
            o->cb.done(o->ud, FR_OK, NULL);
            return;
        case 2:
            fr_pgstore_fail(s, o, FR_EBUDGET,
                            "the run's share of a capped period does not cover the request");
            return;
        default:
            fr_pgstore_fail(s, o, FR_ELIMIT, "the endpoint's slots are all taken");
            return;
        }
    case K_SETTLE: {
        const char *was = cell(res, b, 2);
        if (cell_int(res, b, 0) == 1 || (o->resent && was && strcmp(was, "pending") != 0))
            o->cb.value(o->ud, FR_OK, o->n > 1 ? cell_num(res, b + 1, 0) : 0, NULL);
        else
            fr_pgstore_fail(s, o, FR_EINVAL, "the attempt is not in flight");
        return;
    }
    case K_LEASE:
        if (cell_int(res, b + 3, 1) > 0) {
            fr_pgstore_fail(s, o, FR_EINVAL, "another live process holds the run's lease");
            return;
        }
        keep_figures(s, o->extra, cell_num(res, b + 3, 3), cell_num(res, b + 3, 4));
        o->cb.value(o->ud, FR_OK, cell_num(res, b + 3, 0), NULL);
        return;
    case K_USED:
        o->cb.value(o->ud, FR_OK, cell_num(res, b, 0), NULL);
        return;
    case K_CACHE_GET: {
        const fr_pgres *row = fr_pgres_part(res, b);
        o->cb.reply(o->ud, FR_OK, row && fr_pgres_rows(row) ? cache_reply(row) : NULL, NULL);
        return;
    }
    case K_APPROVAL_GET:
        approval_done(o, fr_pgres_part(res, b));
        return;
    case K_DECIDE:
        if (fr_pgres_affected(fr_pgres_part(res, b)) == 1)
            o->cb.done(o->ud, FR_OK, NULL);
        else
            fr_pgstore_fail(s, o, FR_ENOENT, "nothing was asked for this task");
        return;
    case K_STATUS: {
        const fr_pgres *row = fr_pgres_part(res, b);
        if (row && fr_pgres_rows(row) == 1)
            o->cb.status(o->ud, FR_OK, fr_pgres_value(row, 0, 0), cell_num(res, b, 1), NULL);
        else
            fr_pgstore_fail(s, o, FR_ENOENT, "no run %s in the state database", o->extra);
        return;
    }
    case K_OWNER:
    case K_OWNER_END:
    case K_LISTEN:
    case K_WAITING:
        fr_pgstore_internal_done(s, o, FR_OK, NULL);
        return;
    default: /* K_PUT, K_RELEASE */
        o->cb.done(o->ud, FR_OK, NULL);
        return;
    }
}

/* ---- the operations ---- */

void fr_pgstore_listen(fr_pgstore *s, const char *endpoint)
{
    op *o = fr_pgstore_op_new(K_LISTEN, "cannot listen for freed slots", s);
    fr_pgstore_op_sql(o, "SELECT fr_slot_listen($1)");
    fr_pgstore_op_str(o, endpoint);
    fr_pgstore_send(s, o);
}

void fr_pgstore_send_waiting(fr_pgstore *s, const char *endpoint, double since)
{
    op *o = fr_pgstore_op_new(K_WAITING, "cannot say this process waits for a slot", s);
    if (since > 0) {
        fr_pgstore_op_sql(o, "INSERT INTO slot_waits (owner_id, endpoint, since)"
                             " VALUES ($1, $2, $3::float8) ON CONFLICT (owner_id, endpoint)"
                             " DO UPDATE SET since = excluded.since");
        fr_pgstore_op_str(o, s->owner);
        fr_pgstore_op_str(o, endpoint);
        fr_pgstore_op_num(o, since);
    } else {
        fr_pgstore_op_sql(o, "DELETE FROM slot_waits WHERE owner_id = $1 AND endpoint = $2");
        fr_pgstore_op_str(o, s->owner);
        fr_pgstore_op_str(o, endpoint);
    }
    fr_pgstore_send(s, o);
}

int fr_pgstore_run_begin(fr_pgstore *s, const char *run_id, const char *workflow,
                         const char *wf_path, fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !run_id || !*run_id || !workflow || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_RUN_BEGIN, "cannot record the run", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, RUN_BEGIN_SQL);
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_op_str(o, workflow);
    fr_pgstore_op_str(o, wf_path);
    fr_pgstore_op_num(o, now_of(s));
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_op_str(o, s->user);
    fr_pgstore_op_str(o, s->host);
    fr_pgstore_op_int(o, (long long)getpid());
    fr_pgstore_queue(s, o);
    return FR_OK;
}

int fr_pgstore_run_end(fr_pgstore *s, const char *run_id, const char *status, int exit_code,
                       double cost_usd, fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !run_id || !status || !valid_usd(cost_usd) || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_RUN_END, "cannot record the end of the run", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, "UPDATE runs SET ended_at = $2::float8, status = $3,"
                         " exit_code = $4::integer, cost_usd = $5::float8 WHERE id = $1");
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_op_num(o, now_of(s));
    fr_pgstore_op_str(o, status);
    fr_pgstore_op_int(o, exit_code);
    fr_pgstore_op_num(o, cost_usd);
    fr_pgstore_queue(s, o);
    return FR_OK;
}

/* Adds `v` as a parameter when `has`, else NULL. */
static void opt_num(op *o, bool has, double v)
{
    if (has)
        fr_pgstore_op_num(o, v);
    else
        fr_pgstore_op_str(o, NULL);
}

/* Adds the parameters $1..$4 of an attempt's key. */
static void key_params(op *o, const fr_attempt_rec *a)
{
    fr_pgstore_op_str(o, a->run_id);
    fr_pgstore_op_str(o, a->task);
    fr_pgstore_op_int(o, a->attempt);
    fr_pgstore_op_int(o, a->turn);
}

int fr_pgstore_reserve(fr_pgstore *s, const fr_attempt_rec *a, int max_parallel,
                       fr_pgstore_done_fn done, void *ud)
{
    return fr_pgstore_reserve_fenced(s, a, max_parallel, 0, done, ud);
}

/* Locks period `key`'s totals row (made when missing) in `o`'s transaction. */
static void lock_period(op *o, const char *key)
{
    fr_pgstore_op_sql(o, PERIOD_ROW);
    fr_pgstore_op_str(o, key);
    fr_pgstore_op_sql(o, PERIOD_LOCK);
    fr_pgstore_op_str(o, key);
}

int fr_pgstore_reserve_fenced(fr_pgstore *s, const fr_attempt_rec *a, int max_parallel, int fence,
                              fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !valid_attempt(a, false) || max_parallel < 0 || fence < 0 ||
                            fence > (FR_PGSTORE_FENCE_MONTH | FR_PGSTORE_FENCE_DAY) || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_RESERVE, "cannot book the request in flight", ud);
    o->cb.done = done;
    double now = now_of(s);
    char month[FR_STORE_MONTH_LEN], day[FR_STORE_DAY_LEN];
    fr_store_month_of((time_t)now, month);
    fr_store_day_of((time_t)now, day);
    /* Every transaction takes its row locks in one order: a period's
     * totals (a month before its day, as the totals' trigger and a lease
     * do), then an endpoint's. A paid reservation locks its periods first,
     * before its endpoint; a fence then reads the run's leases once no
     * lease can change under it, so a share reclaimed or granted elsewhere
     * is wholly before this insert or after it. A turn's settles may then
     * go before its reservations in one batch, as they happened. */
    if (a->cost_usd > 0 || fence) {
        lock_period(o, month);
        lock_period(o, day);
    }
    if (max_parallel > 0) {
        fr_pgstore_op_sql(o, ENDPOINT_ROW);
        fr_pgstore_op_str(o, a->endpoint);
        fr_pgstore_op_sql(o, ENDPOINT_LOCK);
        fr_pgstore_op_str(o, a->endpoint);
    }
    fr_pgstore_op_sql(o, RESERVE[max_parallel > 0][fence]);
    key_params(o, a);
    fr_pgstore_op_str(o, a->endpoint);
    fr_pgstore_op_str(o, a->tier);
    fr_pgstore_op_str(o, a->model);
    fr_pgstore_op_num(o, a->cost_usd);
    fr_pgstore_op_num(o, now);
    fr_pgstore_op_str(o, month);
    fr_pgstore_op_str(o, day);
    fr_pgstore_op_str(o, a->type);
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_op_str(o, s->user);
    fr_pgstore_op_str(o, s->host);
    opt_num(o, a->has_complexity, a->complexity);
    if (max_parallel > 0)
        fr_pgstore_op_int(o, max_parallel);
    fr_pgstore_queue(s, o);
    return FR_OK;
}

int fr_pgstore_settle(fr_pgstore *s, const fr_attempt_rec *a, bool want_total,
                      fr_pgstore_value_fn done, void *ud)
{
    int rc = refused(s, !valid_attempt(a, true) || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_SETTLE, "cannot book the attempt", ud);
    o->cb.value = done;
    fr_pgstore_op_sql(o, SETTLE_SQL);
    key_params(o, a);
    fr_pgstore_op_int(o, a->input);
    fr_pgstore_op_int(o, a->output);
    fr_pgstore_op_int(o, a->cached);
    fr_pgstore_op_str(o, a->estimated ? "true" : "false");
    fr_pgstore_op_num(o, a->cost_usd);
    fr_pgstore_op_num(o, a->latency_ms);
    fr_pgstore_op_str(o, a->outcome);
    fr_pgstore_op_str(o, a->error);
    fr_pgstore_op_num(o, now_of(s));
    opt_num(o, a->has_ttft, a->ttft_ms);
    opt_num(o, a->has_score, a->score);
    opt_num(o, a->has_complexity, a->complexity);
    fr_pgstore_op_str(o, s->owner);
    if (want_total) {
        fr_pgstore_op_sql(o, SETTLE_TOTAL);
        key_params(o, a);
    }
    fr_pgstore_queue(s, o);
    return FR_OK;
}

int fr_pgstore_cache_put(fr_pgstore *s, const char *key, const char *endpoint, const fr_reply *r,
                         fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !key || !endpoint || !r || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_PUT, "cannot write the result cache", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, "INSERT INTO cache (key, endpoint, model, text, json, input, output,"
                         " cached, created_at) VALUES ($1, $2, $3, $4, $5, $6::bigint,"
                         " $7::bigint, $8::bigint, $9::float8) ON CONFLICT (key) DO UPDATE SET"
                         " endpoint = excluded.endpoint, model = excluded.model,"
                         " text = excluded.text, json = excluded.json, input = excluded.input,"
                         " output = excluded.output, cached = excluded.cached,"
                         " created_at = excluded.created_at");
    fr_pgstore_op_str(o, key);
    fr_pgstore_op_str(o, endpoint);
    fr_pgstore_op_str(o, r->model);
    fr_pgstore_op_str(o, r->text ? r->text : "");
    char *json = r->json ? json_dumps(r->json, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    fr_pgstore_op_str(o, json);
    free(json);
    fr_pgstore_op_int(o, r->usage.input);
    fr_pgstore_op_int(o, r->usage.output);
    fr_pgstore_op_int(o, r->usage.cached);
    fr_pgstore_op_num(o, (double)time(NULL));
    fr_pgstore_queue(s, o);
    return FR_OK;
}

static bool is_decision(const char *state)
{
    return state && (strcmp(state, "approved") == 0 || strcmp(state, "rejected") == 0);
}

int fr_pgstore_approval_put(fr_pgstore *s, const fr_store_approval *a, fr_pgstore_done_fn done,
                            void *ud)
{
    int rc =
        refused(s, !a || !a->workflow || !a->task || !a->output_hash || !done ||
                       !(is_decision(a->state) || (a->state && strcmp(a->state, "pending") == 0)));
    if (rc != FR_OK)
        return rc;
    double now = now_of(s);
    op *o = fr_pgstore_op_new(K_PUT, "cannot write the approval", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, "INSERT INTO approvals (workflow, task, output_hash, state, run_id,"
                         " output_path, asked_at, decided_by, decided_at, note) VALUES ($1, $2,"
                         " $3, $4, $5, $6, $7::float8, $8, $9::float8, $10)"
                         " ON CONFLICT (workflow, task) DO UPDATE SET"
                         " output_hash = excluded.output_hash, state = excluded.state,"
                         " run_id = excluded.run_id, output_path = excluded.output_path,"
                         " asked_at = excluded.asked_at, decided_by = excluded.decided_by,"
                         " decided_at = excluded.decided_at, note = excluded.note");
    fr_pgstore_op_str(o, a->workflow);
    fr_pgstore_op_str(o, a->task);
    fr_pgstore_op_str(o, a->output_hash);
    fr_pgstore_op_str(o, a->state);
    fr_pgstore_op_str(o, a->run_id);
    fr_pgstore_op_str(o, a->output_path);
    fr_pgstore_op_num(o, a->asked_at > 0 ? a->asked_at : now);
    fr_pgstore_op_str(o, a->by);
    if (is_decision(a->state))
        fr_pgstore_op_num(o, a->decided_at > 0 ? a->decided_at : now);
    else
        fr_pgstore_op_str(o, NULL);
    fr_pgstore_op_str(o, a->note);
    fr_pgstore_queue(s, o);
    return FR_OK;
}

int fr_pgstore_report_put(fr_pgstore *s, const char *run_id, const char *json, const char *summary,
                          fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !run_id || !json || !summary || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_PUT, "cannot store the run's report", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, "INSERT INTO reports (run_id, summary, stored_at, json)"
                         " VALUES ($1, $2, $3::float8, $4) ON CONFLICT (run_id) DO UPDATE SET"
                         " summary = excluded.summary, stored_at = excluded.stored_at,"
                         " json = excluded.json");
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_op_str(o, summary);
    fr_pgstore_op_num(o, now_of(s));
    fr_pgstore_op_str(o, json);
    fr_pgstore_queue(s, o);
    return FR_OK;
}

int fr_pgstore_lease(fr_pgstore *s, const char *period, double cap, double want, const char *run_id,
                     fr_pgstore_value_fn done, void *ud)
{
    int rc = refused(s, !valid_period(period) || !valid_usd(cap) || !valid_usd(want) || !run_id ||
                            !*run_id || !done);
    if (rc != FR_OK)
        return rc;
    double now = now_of(s);
    op *o = fr_pgstore_op_new(K_LEASE, "cannot lease a share of the cap", ud);
    o->cb.value = done;
    o->extra = fr_xstrdup(period);
    lock_period(o, period);
    fr_pgstore_op_sql(o, LEASE_RECLAIM);
    fr_pgstore_op_str(o, period);
    fr_pgstore_op_num(o, now);
    fr_pgstore_op_sql(o, LEASE_GRANT);
    fr_pgstore_op_str(o, period);
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_op_num(o, want);
    fr_pgstore_op_num(o, cap);
    fr_pgstore_op_num(o, now);
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_release(fr_pgstore *s, const char *run_id, fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !run_id || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_RELEASE, "cannot release the lease", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, RELEASE_SQL);
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_op_num(o, now_of(s));
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_period_used(fr_pgstore *s, const char *period, fr_pgstore_value_fn done, void *ud)
{
    int rc = refused(s, !valid_period(period) || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_USED, "cannot read what the period is charged", ud);
    o->cb.value = done;
    fr_pgstore_op_sql(o, USED_SQL);
    fr_pgstore_op_str(o, period);
    fr_pgstore_op_str(o, s->owner);
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_cache_get(fr_pgstore *s, const char *key, fr_pgstore_reply_fn done, void *ud)
{
    int rc = refused(s, !key || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_CACHE_GET, "cannot read the result cache", ud);
    o->cb.reply = done;
    fr_pgstore_op_sql(o, "SELECT model, text, json, input, output, cached FROM cache"
                         " WHERE key = $1");
    fr_pgstore_op_str(o, key);
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_approval_get(fr_pgstore *s, const char *workflow, const char *task,
                            fr_pgstore_approval_fn done, void *ud)
{
    int rc = refused(s, !workflow || !task || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_APPROVAL_GET, "cannot read the approvals", ud);
    o->cb.approval = done;
    fr_pgstore_op_sql(o, "SELECT workflow, task, output_hash, state, run_id, output_path,"
                         " asked_at, decided_by, decided_at, note FROM approvals"
                         " WHERE workflow = $1 AND task = $2");
    fr_pgstore_op_str(o, workflow);
    fr_pgstore_op_str(o, task);
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_approval_decide(fr_pgstore *s, const char *workflow, const char *task,
                               const char *state, const char *by, const char *note,
                               fr_pgstore_done_fn done, void *ud)
{
    int rc = refused(s, !workflow || !task || !is_decision(state) || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_DECIDE, "cannot write the approval", ud);
    o->cb.done = done;
    fr_pgstore_op_sql(o, "UPDATE approvals SET state = $3, decided_by = $4,"
                         " decided_at = $5::float8, note = $6 WHERE workflow = $1 AND task = $2");
    fr_pgstore_op_str(o, workflow);
    fr_pgstore_op_str(o, task);
    fr_pgstore_op_str(o, state);
    fr_pgstore_op_str(o, by);
    fr_pgstore_op_num(o, now_of(s));
    fr_pgstore_op_str(o, note);
    fr_pgstore_send(s, o);
    return FR_OK;
}

int fr_pgstore_run_status(fr_pgstore *s, const char *run_id, fr_pgstore_status_fn done, void *ud)
{
    int rc = refused(s, !run_id || !done);
    if (rc != FR_OK)
        return rc;
    op *o = fr_pgstore_op_new(K_STATUS, "cannot read the run", ud);
    o->cb.status = done;
    o->extra = fr_xstrdup(run_id);
    fr_pgstore_op_sql(o, "SELECT status, cost_usd FROM runs WHERE id = $1");
    fr_pgstore_op_str(o, run_id);
    fr_pgstore_send(s, o);
    return FR_OK;
}
