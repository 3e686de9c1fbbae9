#include "engine/trace.h"

#include "engine/util/mem.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The run's process (the counters) and the first endpoint's. */
#define PID_RUN 1
#define PID_EP0 2

static double num(const json_t *o, const char *key, double dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The index of endpoint `name` in report.endpoints, -1 for none. */
static int ep_index(const json_t *report, const char *name)
{
    const char *key;
    json_t *v;
    int i = 0;
    json_object_foreach((json_t *)json_object_get(report, "endpoints"), key, v)
    {
        if (name && strcmp(key, name) == 0)
            return i;
        i++;
    }
    return -1;
}

static int by_start(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int ex = (int)num(x, "ep", 0), ey = (int)num(y, "ep", 0);
    if (ex != ey)
        return (ex > ey) - (ex < ey);
    double sx = num(x, "start_ms", 0), sy = num(y, "start_ms", 0);
    if (sx != sy)
        return (sx > sy) - (sx < sy);
    return (int)num(x, "seq", 0) - (int)num(y, "seq", 0);
}

json_t *fr_trace_lanes(const json_t *report)
{
    json_t *all = json_array();
    size_t t, i;
    json_t *task, *a;
    int seq = 0;
    json_array_foreach(json_object_get(report, "tasks"), t, task)
    {
        const char *prev = NULL;
        json_array_foreach(json_object_get(task, "attempt_log"), i, a)
        {
            const char *ep = str(a, "endpoint");
            double start = num(a, "start_ms", 0);
            double end = num(a, "end_ms", start); /* in flight at the end: a point */
            const char *kind = !prev ? "first" : strcmp(prev, ep ? ep : "") ? "fallback" : "retry";
            json_array_append_new(
                all,
                json_pack("{s:I, s:s?, s:I, s:s?, s:i, s:i, s:f, s:f, s:s?, s:s, s:s?, s:i}",
                          "task", (json_int_t)t, "name", str(task, "name"), "attempt",
                          (json_int_t)num(a, "attempt", (double)i + 1), "endpoint", ep, "ep",
                          ep_index(report, ep), "lane", 0, "start_ms", start, "end_ms",
                          end > start ? end : start, "outcome", str(a, "outcome"), "kind", kind,
                          "from", strcmp(kind, "fallback") == 0 ? prev : NULL, "seq", seq++));
            prev = ep ? ep : "";
        }
    }
    size_t n = json_array_size(all);
    json_t **v = fr_xmalloc((n ? n : 1) * sizeof *v);
    for (i = 0; i < n; i++)
        v[i] = json_array_get(all, i);
    qsort(v, n, sizeof *v, by_start);
    /* Per endpoint, each attempt takes the first lane free at its start. */
    double *lane_end = fr_xmalloc((n ? n : 1) * sizeof *lane_end);
    size_t nlanes = 0;
    int cur_ep = -2;
    json_t *out = json_array();
    for (i = 0; i < n; i++) {
        int ep = (int)num(v[i], "ep", 0);
        if (ep != cur_ep) {
            cur_ep = ep;
            nlanes = 0;
        }
        double start = num(v[i], "start_ms", 0), end = num(v[i], "end_ms", 0);
        size_t l = 0;
        while (l < nlanes && lane_end[l] > start)
            l++;
        if (l == nlanes)
            nlanes++;
        lane_end[l] = end;
        json_object_set_new(v[i], "lane", json_integer((json_int_t)l));
        json_object_del(v[i], "seq");
        json_array_append(out, v[i]);
    }
    free(lane_end);
    free(v);
    json_decref(all);
    return out;
}

/* Microseconds from milliseconds, whole. */
static json_int_t us(double ms)
{
    return (json_int_t)llround(ms * 1000.0);
}

static const char *colour(const char *outcome)
{
    if (!outcome)
        return "grey";
    if (strcmp(outcome, "ok") == 0)
        return "good";
    if (strcmp(outcome, "error") == 0 || strcmp(outcome, "timeout") == 0)
        return "bad";
    if (strcmp(outcome, "cancelled") == 0 || strcmp(outcome, "budget") == 0)
        return "grey";
    return "terrible"; /* a reply that failed a gate */
}

/* One complete event on (pid, tid) from `b` to `e` (us). */
static json_t *slice(const char *name, const char *cat, int pid, int tid, json_int_t b,
                     json_int_t e, json_t *args)
{
    return json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:i, s:o}", "name", name, "cat", cat, "ph",
                     "X", "ts", b, "dur", e > b ? e - b : 0, "pid", pid, "tid", tid, "args",
                     args ? args : json_object());
}

static json_int_t clamp(json_int_t v, json_int_t lo, json_int_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The tool calls of attempt `att` of `task` that ran after its turn `turn`
 * (1-based), between `b` and `e` (us): one slice each when they ran one
 * after another, else one slice for the parallel batch naming them. */
static void tool_slices(json_t *ev, const json_t *task, json_int_t att, int turn, int pid, int tid,
                        json_int_t b, json_int_t e)
{
    size_t i;
    json_t *c;
    json_t *mine = json_array();
    json_array_foreach(json_object_get(task, "tool_calls"), i, c)
    {
        if ((json_int_t)num(c, "attempt", 1) == att && (int)num(c, "turn", 0) == turn &&
            json_is_number(json_object_get(c, "start_ms")))
            json_array_append(mine, c);
    }
    size_t n = json_array_size(mine);
    bool disjoint = true;
    json_int_t last_end = b, lo = e, hi = b;
    json_array_foreach(mine, i, c)
    {
        json_int_t cb = clamp(us(num(c, "start_ms", 0)), b, e);
        json_int_t ce = clamp(cb + us(num(c, "ms", 0)), cb, e);
        disjoint = disjoint && cb >= last_end;
        last_end = ce;
        lo = cb < lo ? cb : lo;
        hi = ce > hi ? ce : hi;
    }
    json_array_foreach(mine, i, c)
    {
        if (!disjoint)
            break;
        json_int_t cb = clamp(us(num(c, "start_ms", 0)), b, e);
        json_int_t ce = clamp(cb + us(num(c, "ms", 0)), cb, e);
        char name[160];
        snprintf(name, sizeof name, "tool %s%s", str(c, "name") ? str(c, "name") : "?",
                 json_is_true(json_object_get(c, "ok")) ? "" : " (error)");
        json_array_append_new(ev, slice(name, "tool", pid, tid, cb, ce, json_deep_copy(c)));
    }
    if (!disjoint && n) {
        char name[64];
        snprintf(name, sizeof name, "tools x%zu (parallel)", n);
        json_array_append_new(
            ev, slice(name, "tool", pid, tid, lo, hi, json_pack("{s:O}", "calls", mine)));
    }
    json_decref(mine);
}

/* The attempt `l` (a lane entry) as a slice with its turns and tools. */
static void attempt_slices(json_t *ev, const json_t *report, const json_t *l)
{
    const json_t *task =
        json_array_get(json_object_get(report, "tasks"), (size_t)num(l, "task", 0));
    json_int_t att = (json_int_t)num(l, "attempt", 1);
    const json_t *a = NULL;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(task, "attempt_log"), i, x)
    {
        if ((json_int_t)num(x, "attempt", 0) == att)
            a = x;
    }
    int pid = PID_EP0 + (int)num(l, "ep", 0), tid = 1 + (int)num(l, "lane", 0);
    json_int_t b = us(num(l, "start_ms", 0)), e = us(num(l, "end_ms", 0));
    const char *outcome = str(l, "outcome") ? str(l, "outcome") : "in flight";
    const char *kind = str(l, "kind");
    char name[200];
    snprintf(name, sizeof name, "%s #%lld %s%s%s", str(l, "name") ? str(l, "name") : "?",
             (long long)att, outcome, strcmp(kind, "first") ? " · " : "",
             strcmp(kind, "first") ? kind : "");
    const json_t *tok = json_object_get(a, "tokens");
    json_t *args =
        json_pack("{s:s?, s:I, s:s?, s:s, s:s, s:s?, s:O?, s:O?, s:f, s:s?}", "task",
                  str(l, "name"), "attempt", att, "endpoint", str(l, "endpoint"), "outcome",
                  outcome, "kind", kind, "fallback_from", str(l, "from"), "tokens",
                  json_is_object(tok) ? tok : NULL, "error", json_object_get(a, "error"),
                  "cost_usd", num(a, "cost_usd", 0), "status", str(task, "status"));
    json_t *s = slice(name, "attempt", pid, tid, b, e, args);
    json_object_set_new(s, "cname", json_string(colour(str(l, "outcome"))));
    json_array_append_new(ev, s);
    const json_t *turns = json_object_get(a, "turns");
    json_t *turn;
    json_array_foreach(turns, i, turn)
    {
        json_int_t tb = clamp(us(num(turn, "start_ms", 0)), b, e);
        json_int_t te = clamp(us(num(turn, "end_ms", num(l, "end_ms", 0))), tb, e);
        char tn[32];
        snprintf(tn, sizeof tn, "turn %zu", i + 1);
        json_array_append_new(ev, slice(tn, "turn", pid, tid, tb, te, NULL));
        /* The tools this turn asked for ran until the next turn went out. */
        const json_t *next = json_array_get(turns, i + 1);
        json_int_t gap_end = next ? clamp(us(num(next, "start_ms", 0)), te, e) : e;
        tool_slices(ev, task, att, (int)i + 1, pid, tid, te, gap_end);
    }
}

static json_t *meta(const char *what, int pid, int tid, json_t *args)
{
    return json_pack("{s:s, s:s, s:i, s:i, s:o}", "name", what, "ph", "M", "pid", pid, "tid", tid,
                     "args", args);
}

typedef struct mark {
    json_int_t ts;
    int ep;       /* -1 for the run */
    int delta;    /* in flight: +1, -1 */
    double spend; /* cost added at an end */
} mark;

static int by_ts(const void *a, const void *b)
{
    const mark *x = a, *y = b;
    if (x->ts != y->ts)
        return (x->ts > y->ts) - (x->ts < y->ts);
    return x->delta - y->delta; /* an end before a start at the same instant */
}

/* The counters: requests in flight for the run and per endpoint, and the
 * run's cumulative spend, at every attempt's start and end. */
static void counters(json_t *ev, const json_t *report, const json_t *lanes, int neps)
{
    size_t n = json_array_size(lanes), i;
    mark *m = fr_xcalloc(2 * n + 1, sizeof *m);
    json_t *l;
    json_array_foreach(lanes, i, l)
    {
        const json_t *task =
            json_array_get(json_object_get(report, "tasks"), (size_t)num(l, "task", 0));
        double cost = 0;
        size_t k;
        json_t *a;
        json_array_foreach(json_object_get(task, "attempt_log"), k, a)
        {
            if (num(a, "attempt", 0) == num(l, "attempt", -1))
                cost = num(a, "cost_usd", 0);
        }
        int ep = (int)num(l, "ep", 0);
        m[2 * i] = (mark){us(num(l, "start_ms", 0)), ep, 1, 0};
        m[2 * i + 1] = (mark){us(num(l, "end_ms", 0)), ep, -1, cost};
    }
    qsort(m, 2 * n, sizeof *m, by_ts);
    int *per = fr_xcalloc((size_t)neps + 1, sizeof *per);
    int total = 0;
    double spend = 0;
    json_array_append_new(ev,
                          json_pack("{s:s, s:s, s:I, s:i, s:{s:i}}", "name", "in flight", "ph", "C",
                                    "ts", (json_int_t)0, "pid", PID_RUN, "args", "requests", 0));
    json_array_append_new(ev, json_pack("{s:s, s:s, s:I, s:i, s:{s:f}}", "name", "spend", "ph", "C",
                                        "ts", (json_int_t)0, "pid", PID_RUN, "args", "usd", 0.0));
    for (i = 0; i < 2 * n; i++) {
        total += m[i].delta;
        if (m[i].ep >= 0 && m[i].ep < neps) {
            per[m[i].ep] += m[i].delta;
            json_array_append_new(
                ev, json_pack("{s:s, s:s, s:I, s:i, s:{s:i}}", "name", "in flight", "ph", "C", "ts",
                              m[i].ts, "pid", PID_EP0 + m[i].ep, "args", "requests", per[m[i].ep]));
        }
        json_array_append_new(ev, json_pack("{s:s, s:s, s:I, s:i, s:{s:i}}", "name", "in flight",
                                            "ph", "C", "ts", m[i].ts, "pid", PID_RUN, "args",
                                            "requests", total));
        if (m[i].delta < 0 && m[i].spend > 0) {
            spend += m[i].spend;
            json_array_append_new(ev, json_pack("{s:s, s:s, s:I, s:i, s:{s:f}}", "name", "spend",
                                                "ph", "C", "ts", m[i].ts, "pid", PID_RUN, "args",
                                                "usd", spend));
        }
    }
    free(per);
    free(m);
}

/* Per task, the lane entries of its first and of its latest attempt
 * (NULL when it sent none): `first` and `last`, ntasks each. */
static void task_ends(const json_t *lanes, size_t ntasks, const json_t **first, const json_t **last)
{
    size_t i;
    json_t *l;
    json_array_foreach(lanes, i, l)
    {
        size_t t = (size_t)num(l, "task", 0);
        double a = num(l, "attempt", 0);
        if (t >= ntasks)
            continue;
        if (!first[t] || a < num(first[t], "attempt", 0))
            first[t] = l;
        if (!last[t] || a > num(last[t], "attempt", 0))
            last[t] = l;
    }
}

/* Flow arrows along dependencies: from the end of a dependency's last
 * attempt to the start of the dependent's first. */
static void flows(json_t *ev, const json_t *report, const json_t *lanes)
{
    const json_t *tasks = json_object_get(report, "tasks");
    size_t n = json_array_size(tasks), t, d;
    const json_t **first = fr_xcalloc(n + 1, sizeof *first),
                 **last = fr_xcalloc(n + 1, sizeof *last);
    task_ends(lanes, n, first, last);
    json_t *index = json_object(); /* task name -> its index */
    json_t *task, *dep;
    json_array_foreach(tasks, t, task)
    {
        if (str(task, "name"))
            json_object_set_new(index, str(task, "name"), json_integer((json_int_t)t));
    }
    json_int_t id = 1;
    json_array_foreach(tasks, t, task)
    {
        const json_t *to = first[t];
        json_array_foreach(json_object_get(task, "deps"), d, dep)
        {
            const json_t *k =
                json_string_value(dep) ? json_object_get(index, json_string_value(dep)) : NULL;
            const json_t *from = k ? last[json_integer_value(k)] : NULL;
            if (!to || !from)
                continue;
            json_int_t fb = us(num(from, "start_ms", 0)), fe = us(num(from, "end_ms", 0));
            json_int_t at = fe > fb ? fe - 1 : fb; /* inside the dependency's slice */
            char name[160];
            snprintf(name, sizeof name, "%s -> %s", json_string_value(dep),
                     str(task, "name") ? str(task, "name") : "?");
            json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:I, s:I, s:i, s:i}", "name", name,
                                                "cat", "dep", "ph", "s", "id", id, "ts", at, "pid",
                                                PID_EP0 + (int)num(from, "ep", 0), "tid",
                                                1 + (int)num(from, "lane", 0)));
            json_array_append_new(ev, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:i, s:i}", "name",
                                                name, "cat", "dep", "ph", "f", "bp", "e", "id", id,
                                                "ts", us(num(to, "start_ms", 0)), "pid",
                                                PID_EP0 + (int)num(to, "ep", 0), "tid",
                                                1 + (int)num(to, "lane", 0)));
            id++;
        }
    }
    json_decref(index);
    free(first);
    free(last);
}

int fr_trace_write(const json_t *report, FILE *out)
{
    json_t *lanes = fr_trace_lanes(report);
    json_t *ev = json_array();
    char name[300];
    snprintf(name, sizeof name, "run %s (%s)", str(report, "run") ? str(report, "run") : "?",
             str(report, "workflow") ? str(report, "workflow") : "?");
    json_array_append_new(ev, meta("process_name", PID_RUN, 0, json_pack("{s:s}", "name", name)));
    json_array_append_new(
        ev, meta("process_sort_index", PID_RUN, 0, json_pack("{s:i}", "sort_index", 0)));
    const char *key;
    json_t *e;
    int ep = 0;
    json_object_foreach((json_t *)json_object_get(report, "endpoints"), key, e)
    {
        int pid = PID_EP0 + ep;
        int cap = (int)num(e, "max_parallel", 1), used = 0;
        size_t i;
        json_t *l;
        json_array_foreach(lanes, i, l)
        {
            if ((int)num(l, "ep", -1) == ep && (int)num(l, "lane", 0) + 1 > used)
                used = (int)num(l, "lane", 0) + 1;
        }
        snprintf(name, sizeof name, "%s (%s, %d slot%s)", key,
                 str(e, "tier") ? str(e, "tier") : "?", cap, cap == 1 ? "" : "s");
        json_array_append_new(ev, meta("process_name", pid, 0, json_pack("{s:s}", "name", name)));
        json_array_append_new(
            ev, meta("process_sort_index", pid, 0, json_pack("{s:i}", "sort_index", pid)));
        for (int s = 0; s < used; s++) {
            snprintf(name, sizeof name, "slot %d", s + 1);
            json_array_append_new(
                ev, meta("thread_name", pid, s + 1, json_pack("{s:s}", "name", name)));
            json_array_append_new(
                ev, meta("thread_sort_index", pid, s + 1, json_pack("{s:i}", "sort_index", s + 1)));
        }
        ep++;
    }
    size_t i;
    json_t *l;
    json_array_foreach(lanes, i, l) attempt_slices(ev, report, l);
    flows(ev, report, lanes);
    counters(ev, report, lanes, ep);
    json_t *doc =
        json_pack("{s:o, s:s, s:{s:O?, s:O?, s:O?, s:O?}}", "traceEvents", ev, "displayTimeUnit",
                  "ms", "metadata", "run", json_object_get(report, "run"), "workflow",
                  json_object_get(report, "workflow"), "status", json_object_get(report, "status"),
                  "cost_usd", json_object_get(report, "cost_usd"));
    int rc = json_dumpf(doc, out, JSON_COMPACT) == 0 && fputc('\n', out) != EOF ? 0 : -1;
    json_decref(doc);
    json_decref(lanes);
    return rc;
}
