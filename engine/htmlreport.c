#include "engine/htmlreport.h"

#include "engine/report.h"
#include "engine/trace.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define WIDTH 1200 /* the drawings' width in px */
#define LABEL 200  /* the timeline's label column */
#define ROW   22   /* a timeline lane's height */

static double num(const json_t *o, const char *key, double dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* `s` (borrowed) as HTML text or attribute value. */
static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* The CSS class of a status or an outcome. */
static const char *cls(const char *s)
{
    if (!strcmp(s, "ok") || !strcmp(s, "planned"))
        return "ok";
    if (!strcmp(s, "skipped") || !strcmp(s, "pending") || !strcmp(s, "cancelled") ||
        !strcmp(s, "waiting") || !strcmp(s, "in flight"))
        return "skip";
    if (!strcmp(s, "error") || !strcmp(s, "failed") || !strcmp(s, "timeout") ||
        !strcmp(s, "budget") || !strcmp(s, "interrupted"))
        return "bad";
    return "gate"; /* quality, truncated, refused, ... */
}

static void usd(FILE *f, double v)
{
    char buf[FR_USD_LEN];
    fputs(fr_usd_cost(buf, v), f);
}

static const char CSS[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}"
    "h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;"
    "border-bottom:1px solid #eee;vertical-align:top}"
    ".figs td:first-child{color:#666}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;"
    "max-height:400px;overflow:auto}details{margin:4px 0}summary{cursor:pointer}"
    ".ok{fill:#3a9f4a;color:#2a7f3a}.bad{fill:#d04040;color:#b02020}"
    ".gate{fill:#e0a020;color:#a06000}.skip{fill:#999;color:#777}"
    "svg text{font:11px system-ui,sans-serif;fill:#222}svg .lbl{fill:#fff}"
    "svg .node rect{stroke:#333;stroke-width:1}svg .edge{stroke:#888;fill:none}"
    ".badge{font-weight:600}";

static void summary(FILE *f, const json_t *r)
{
    size_t ok = 0, i;
    json_t *t;
    json_array_foreach(json_object_get(r, "tasks"), i, t) ok += !strcmp(str(t, "status"), "ok");
    fprintf(f, "<h1>flowrun: ");
    esc(f, str(r, "workflow"));
    fprintf(f, " <span class=\"badge %s\">", cls(str(r, "status")));
    esc(f, str(r, "status"));
    fprintf(f, "</span></h1>\n<table class=\"figs\" id=\"summary\">");
    fprintf(f, "<tr><td>run</td><td>");
    esc(f, str(r, "run"));
    fprintf(f, "</td></tr><tr><td>exit code</td><td>%d</td></tr>", (int)num(r, "exit_code", 0));
    fprintf(f, "<tr><td>tasks done</td><td>%zu / %zu</td></tr>", ok,
            json_array_size(json_object_get(r, "tasks")));
    fprintf(f, "<tr><td>makespan</td><td>%.0f ms (critical path %.0f ms)</td></tr>",
            num(r, "makespan_ms", 0), num(r, "critical_path_ms", 0));
    fprintf(f, "<tr><td>spend</td><td>");
    usd(f, num(r, "cost_usd", 0));
    if (json_is_number(json_object_get(r, "budget_usd"))) {
        fprintf(f, " of ");
        usd(f, num(r, "budget_usd", 0));
        fprintf(f, " cap");
    }
    if (json_is_true(json_object_get(r, "sim")))
        fprintf(f, " (rehearsal on flowrun-sim: nothing was spent)");
    fprintf(f, "</td></tr>");
    if (json_is_string(json_object_get(r, "baseline"))) {
        fprintf(f, "<tr><td>baseline</td><td>");
        esc(f, str(r, "baseline"));
        fprintf(f, " ");
        usd(f, num(r, "baseline_cost_usd", 0));
        if (json_is_number(json_object_get(r, "savings_pct")))
            fprintf(f, " (saves %.1f%%)", num(r, "savings_pct", 0));
        fprintf(f, "</td></tr>");
    }
    fprintf(f, "<tr><td>local tokens</td><td>%.0f%%</td></tr>",
            100.0 * num(r, "local_token_share", 0));
    const json_t *lat = json_object_get(r, "latency_ms");
    fprintf(f, "<tr><td>latency</td><td>p50 %.0f ms, p95 %.0f ms</td></tr>", num(lat, "p50", 0),
            num(lat, "p95", 0));
    fprintf(f, "<tr><td>policy</td><td>");
    esc(f, str(r, "policy"));
    fprintf(f, "</td></tr></table>\n");
}

/* The Gantt chart: a row per endpoint slot, a bar per attempt. */
static void timeline(FILE *f, const json_t *r)
{
    json_t *lanes = fr_trace_lanes(r);
    const json_t *eps = json_object_get(r, "endpoints");
    size_t neps = json_object_size(eps), i;
    int *rows = fr_xcalloc(neps + 1, sizeof *rows);
    double span = 1;
    json_t *l;
    json_array_foreach(lanes, i, l)
    {
        int ep = (int)num(l, "ep", 0), lane = (int)num(l, "lane", 0);
        if (ep >= 0 && (size_t)ep < neps && lane + 1 > rows[ep])
            rows[ep] = lane + 1;
        span = fmax(span, num(l, "end_ms", 0));
    }
    span = fmax(span, num(r, "makespan_ms", 0));
    int *first = fr_xcalloc(neps + 1, sizeof *first), total = 0;
    for (size_t e = 0; e < neps; e++) {
        first[e] = total;
        total += rows[e] ? rows[e] : 1;
    }
    int height = total * ROW + 30;
    double scale = (double)(WIDTH - LABEL - 10) / span;
    fprintf(f,
            "<h2>Timeline</h2>\n<svg id=\"timeline\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\">",
            WIDTH, height, WIDTH, height);
    for (int k = 0; k <= 5; k++) {
        double x = LABEL + (WIDTH - LABEL - 10) * k / 5.0;
        fprintf(f, "<line x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>", x, x,
                total * ROW);
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"%s\">%.0f ms</text>", x,
                total * ROW + 16,
                k == 5 ? "end"
                : k    ? "middle"
                       : "start",
                span * k / 5.0);
    }
    const char *key;
    json_t *e;
    size_t ei = 0;
    json_object_foreach((json_t *)eps, key, e)
    {
        for (int s = 0; s < (rows[ei] ? rows[ei] : 1); s++) {
            fprintf(f, "<text x=\"4\" y=\"%d\">", (first[ei] + s) * ROW + 15);
            esc(f, key);
            fprintf(f, " slot %d</text>", s + 1);
        }
        ei++;
    }
    json_array_foreach(lanes, i, l)
    {
        int ep = (int)num(l, "ep", 0);
        if (ep < 0 || (size_t)ep >= neps)
            continue;
        double x = LABEL + num(l, "start_ms", 0) * scale;
        double w = fmax(4, (num(l, "end_ms", 0) - num(l, "start_ms", 0)) * scale);
        int y = (first[ep] + (int)num(l, "lane", 0)) * ROW + 2;
        const char *outcome =
            json_is_string(json_object_get(l, "outcome")) ? str(l, "outcome") : "in flight";
        fprintf(f,
                "<g class=\"bar\"><rect class=\"%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
                "height=\"%d\" rx=\"3\"><title>",
                cls(outcome), x, y, w, ROW - 4);
        esc(f, str(l, "name"));
        fprintf(f, " attempt %d on ", (int)num(l, "attempt", 1));
        esc(f, str(l, "endpoint"));
        fprintf(f, ": %s (%s), %.0f-%.0f ms</title></rect>", outcome, str(l, "kind"),
                num(l, "start_ms", 0), num(l, "end_ms", 0));
        if (w > 40) {
            fprintf(f, "<text class=\"lbl\" x=\"%.1f\" y=\"%d\">", x + 3, y + 13);
            esc(f, str(l, "name"));
            fprintf(f, "</text>");
        }
        fprintf(f, "</g>");
    }
    fprintf(f, "</svg>\n<p class=\"legend\"><span class=\"ok\">&#9632; ok</span> "
               "<span class=\"bad\">&#9632; error, timeout</span> <span class=\"gate\">&#9632; "
               "failed a gate (quality, truncated, refused)</span> <span class=\"skip\">&#9632; "
               "cancelled, budget</span>; hover a bar for its task, attempt and outcome</p>\n");
    size_t cached = 0;
    json_t *t;
    json_array_foreach(json_object_get(r, "tasks"), i, t) cached +=
        json_is_true(json_object_get(t, "cached"));
    if (cached)
        fprintf(f, "<p>%zu task%s came from the result cache: no request, no bar.</p>\n", cached,
                cached == 1 ? "" : "s");
    free(first);
    free(rows);
    json_decref(lanes);
}

/* The index of the dependency `dep` (a JSON string) in `index` (task
 * name -> its index), -1 for none. */
static long dep_index(const json_t *index, const json_t *dep)
{
    const char *name = json_string_value(dep);
    const json_t *k = name ? json_object_get(index, name) : NULL;
    return k ? (long)json_integer_value(k) : -1;
}

/* The DAG: a column per level (the longest chain of dependencies before
 * a task), nodes coloured by status, edges from each dependency. */
static void dag(FILE *f, const json_t *r)
{
    const json_t *tasks = json_object_get(r, "tasks");
    size_t n = json_array_size(tasks), i, d;
    int *level = fr_xcalloc(n + 1, sizeof *level), *row = fr_xcalloc(n + 1, sizeof *row);
    int maxlevel = 0;
    json_t *index = json_object(), *t, *dep;
    json_array_foreach(tasks, i, t)
    {
        json_object_set_new(index, str(t, "name"), json_integer((json_int_t)i));
    }
    /* Relax until stable: at most n rounds in a DAG. */
    for (size_t round = 0; round < n; round++) {
        bool changed = false;
        json_array_foreach(tasks, i, t)
        {
            json_array_foreach(json_object_get(t, "deps"), d, dep)
            {
                long k = dep_index(index, dep);
                if (k >= 0 && level[k] + 1 > level[i]) {
                    level[i] = level[k] + 1;
                    changed = true;
                }
            }
        }
        if (!changed)
            break;
    }
    int *count = fr_xcalloc(n + 1, sizeof *count), maxrows = 1;
    for (i = 0; i < n; i++) {
        maxlevel = level[i] > maxlevel ? level[i] : maxlevel;
        row[i] = count[level[i]]++;
        maxrows = count[level[i]] > maxrows ? count[level[i]] : maxrows;
    }
    int colw = 190, nodew = 160, nodeh = 40, rowh = 56;
    int width = (maxlevel + 1) * colw + 20, height = maxrows * rowh + 20;
    fprintf(f,
            "<h2>Graph</h2>\n<svg id=\"dag\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\">",
            width, height, width, height);
    json_array_foreach(tasks, i, t)
    {
        json_array_foreach(json_object_get(t, "deps"), d, dep)
        {
            long k = dep_index(index, dep);
            if (k < 0)
                continue;
            double x1 = 10 + level[k] * colw + nodew, y1 = 10 + row[k] * rowh + nodeh / 2.0;
            double x2 = 10 + level[i] * colw, y2 = 10 + row[i] * rowh + nodeh / 2.0;
            fprintf(f, "<path class=\"edge\" d=\"M%.1f %.1f C%.1f %.1f %.1f %.1f %.1f %.1f\"/>", x1,
                    y1, x1 + 15, y1, x2 - 15, y2, x2, y2);
        }
    }
    json_array_foreach(tasks, i, t)
    {
        int x = 10 + level[i] * colw, y = 10 + row[i] * rowh;
        fprintf(f,
                "<g class=\"node\"><rect class=\"%s\" x=\"%d\" y=\"%d\" width=\"%d\" "
                "height=\"%d\" rx=\"5\"><title>",
                cls(str(t, "status")), x, y, nodew, nodeh);
        esc(f, str(t, "name"));
        fprintf(f, ": ");
        esc(f, str(t, "status"));
        fprintf(f, "</title></rect><text class=\"lbl\" x=\"%d\" y=\"%d\">", x + 6, y + 16);
        esc(f, str(t, "name"));
        fprintf(f, "</text><text class=\"lbl\" x=\"%d\" y=\"%d\">", x + 6, y + 32);
        esc(f, json_is_string(json_object_get(t, "endpoint")) ? str(t, "endpoint") : "-");
        fputc(' ', f);
        usd(f, num(t, "cost_usd", 0));
        fprintf(f, "</text></g>");
    }
    fprintf(f, "</svg>\n");
    json_decref(index);
    free(count);
    free(row);
    free(level);
}

/* One horizontal bar of `v` against `max`. */
static void bar(FILE *f, const char *label, double v, double max, const char *css, int *y)
{
    double w = max > 0 ? (WIDTH - LABEL - 120) * v / max : 0;
    fprintf(f, "<text x=\"4\" y=\"%d\">", *y + 14);
    esc(f, label);
    fprintf(f,
            "</text><rect class=\"%s\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"16\"/>"
            "<text x=\"%.1f\" y=\"%d\">",
            css, LABEL, *y, w, LABEL + w + 6, *y + 13);
    usd(f, v);
    fputs("</text>", f);
    *y += 22;
}

/* Cost by tier and by endpoint (every attempt's cost), and the run's
 * against its baseline. */
static void costs(FILE *f, const json_t *r)
{
    const json_t *eps = json_object_get(r, "endpoints");
    size_t neps = json_object_size(eps), i, k;
    double *per = fr_xcalloc(neps + 1, sizeof *per), local = 0, cloud = 0;
    json_t *t, *a;
    json_array_foreach(json_object_get(r, "tasks"), i, t)
    {
        json_array_foreach(json_object_get(t, "attempt_log"), k, a)
        {
            const char *key;
            json_t *e;
            size_t ei = 0;
            json_object_foreach((json_t *)eps, key, e)
            {
                if (!strcmp(key, str(a, "endpoint"))) {
                    per[ei] += num(a, "cost_usd", 0);
                    if (!strcmp(str(e, "tier"), "local"))
                        local += num(a, "cost_usd", 0);
                    else
                        cloud += num(a, "cost_usd", 0);
                }
                ei++;
            }
        }
    }
    double total = num(r, "cost_usd", 0), base = num(r, "baseline_cost_usd", 0);
    double max = fmax(fmax(total, base), fmax(local, cloud));
    int height = (int)(neps + 5) * 22 + 10, y = 4;
    fprintf(f,
            "<h2>Cost</h2>\n<svg id=\"cost\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\">",
            WIDTH, height, WIDTH, height);
    bar(f, "this run", total, max, "ok", &y);
    if (json_is_string(json_object_get(r, "baseline"))) {
        char label[200];
        snprintf(label, sizeof label, "baseline (all on %s)", str(r, "baseline"));
        bar(f, label, base, max, "skip", &y);
    }
    bar(f, "tier local", local, max, "ok", &y);
    bar(f, "tier cloud", cloud, max, "gate", &y);
    const char *key;
    json_t *e;
    size_t ei = 0;
    json_object_foreach((json_t *)eps, key, e)
    {
        char label[200];
        snprintf(label, sizeof label, "endpoint %s", key);
        bar(f, label, per[ei++], max, "skip", &y);
    }
    fprintf(f, "</svg>\n");
    free(per);
}

/* Each task: its figures, decisions, attempts and output. */
static void task_details(FILE *f, const json_t *r)
{
    size_t i, k;
    json_t *t, *x;
    fprintf(f, "<h2>Tasks</h2>\n");
    json_array_foreach(json_object_get(r, "tasks"), i, t)
    {
        fprintf(f, "<details class=\"task\"><summary><b>");
        esc(f, str(t, "name"));
        fprintf(f, "</b> <span class=\"%s\">", cls(str(t, "status")));
        esc(f, str(t, "status"));
        fprintf(f, "</span> ");
        esc(f, json_is_string(json_object_get(t, "endpoint")) ? str(t, "endpoint") : "-");
        fprintf(f, ", %d attempt(s), ", (int)num(t, "attempts", 0));
        usd(f, num(t, "cost_usd", 0));
        fprintf(f, "</summary>\n");
        if (json_is_string(json_object_get(t, "reason"))) {
            fprintf(f, "<p>reason: ");
            esc(f, str(t, "reason"));
            fprintf(f, "</p>");
        }
        fprintf(f, "<table><tr><th>decision</th><th>policy</th><th>why</th><th>endpoint</th>"
                   "<th>outcome</th><th>error</th></tr>");
        json_array_foreach(json_object_get(t, "decisions"), k, x)
        {
            fprintf(f, "<tr><td>%zu</td><td>", k + 1);
            esc(f, str(x, "policy"));
            fprintf(f, "</td><td>");
            esc(f, str(x, "reason"));
            fprintf(f, "</td><td>");
            esc(f, str(x, "endpoint"));
            fprintf(f, "</td><td>");
            esc(f, str(x, "outcome"));
            fprintf(f, "</td><td>");
            esc(f, str(x, "error"));
            fprintf(f, "</td></tr>");
        }
        fprintf(f, "</table><table><tr><th>attempt</th><th>endpoint</th><th>start</th>"
                   "<th>end</th><th>outcome</th><th>turns</th><th>cost</th></tr>");
        json_array_foreach(json_object_get(t, "attempt_log"), k, x)
        {
            fprintf(f, "<tr><td>%d</td><td>", (int)num(x, "attempt", 0));
            esc(f, str(x, "endpoint"));
            fprintf(f, "</td><td>%.0f ms</td><td>%.0f ms</td><td>", num(x, "start_ms", 0),
                    num(x, "end_ms", 0));
            esc(f, str(x, "outcome"));
            fprintf(f, "</td><td>%zu</td><td>", json_array_size(json_object_get(x, "turns")));
            usd(f, num(x, "cost_usd", 0));
            fprintf(f, "</td></tr>");
        }
        fprintf(f, "</table>");
        if (json_array_size(json_object_get(t, "tool_calls")))
            fprintf(f, "<table><tr><th>tool call</th><th>attempt</th><th>turn</th><th>ms</th>"
                       "<th>ok</th><th>error</th></tr>");
        json_array_foreach(json_object_get(t, "tool_calls"), k, x)
        {
            fprintf(f, "<tr><td>");
            esc(f, str(x, "name"));
            fprintf(f, "</td><td>%d</td><td>%d</td><td>%.1f</td><td>%s</td><td>",
                    (int)num(x, "attempt", 1), (int)num(x, "turn", 0), num(x, "ms", 0),
                    json_is_true(json_object_get(x, "ok")) ? "yes" : "no");
            esc(f, str(x, "error"));
            fprintf(f, "</td></tr>");
        }
        if (json_array_size(json_object_get(t, "tool_calls")))
            fprintf(f, "</table>");
        if (json_is_string(json_object_get(t, "output"))) {
            fprintf(f, "<pre class=\"output\">");
            esc(f, str(t, "output"));
            fprintf(f, "</pre>");
        }
        fprintf(f, "</details>\n");
    }
}

int fr_html_report(const json_t *report, FILE *out, fr_error *err)
{
    fprintf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width\"><title>flowrun ");
    esc(out, str(report, "workflow"));
    fprintf(out, " ");
    esc(out, str(report, "run"));
    fprintf(out, "</title><style>%s</style></head><body>\n", CSS);
    summary(out, report);
    timeline(out, report);
    dag(out, report);
    costs(out, report);
    task_details(out, report);
    fprintf(out, "<p><button type=\"button\" id=\"expand\">expand all tasks</button></p>\n"
                 "<script>document.getElementById('expand').addEventListener('click',"
                 "function(){document.querySelectorAll('details.task').forEach("
                 "function(d){d.open=true;});});</script>\n</body></html>\n");
    if (fflush(out) != 0 || ferror(out))
        return fr_error_set(err, FR_EIO, NULL, 0, "cannot write the HTML report: %s",
                            strerror(errno));
    return FR_OK;
}

int fr_html_save_json(const json_t *report, const char *trace_path, const char *html_path)
{
    int rc = FR_OK;
    for (int k = 0; k < 2; k++) {
        const char *path = k ? html_path : trace_path;
        if (!path)
            continue;
        fr_error err = {0};
        FILE *f = fopen(path, "w");
        int wrc = !f ? -1 : k ? fr_html_report(report, f, &err) : fr_trace_write(report, f);
        if (f && fclose(f) != 0)
            wrc = -1;
        if (wrc != 0) {
            fprintf(stderr, "flowrun: cannot write the %s to %s: %s; check the path\n",
                    k ? "HTML report" : "trace", path, err.msg[0] ? err.msg : strerror(errno));
            rc = FR_EIO;
        }
    }
    return rc;
}

int fr_html_save(const fr_results *r, const char *trace_path, const char *html_path)
{
    json_t *report = fr_report_json(r);
    int rc = fr_html_save_json(report, trace_path, html_path);
    json_decref(report);
    return rc;
}
