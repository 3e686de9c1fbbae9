/* `flowrun runs`, `flowrun report` and `flowrun stats`, and storing a
 * run's report at its end (engine/cli/runs_cmd.h). */

#include "engine/cli/runs_cmd.h"

#include "engine/htmlreport.h"

#include "engine/booking.h"
#include "engine/cli/cli.h"
#include "engine/history.h"
#include "engine/report.h"
#include "engine/store/pgurl.h"
#include "engine/store/store.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"
#include "engine/util/money.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char state_options[] =
    "  --state DIR|URL       state directory or PostgreSQL URL (default $FLOWRUN_STATE,\n"
    "                        else ./.flowrun)\n"
    "  --sim                 the rehearsals' store (runs with --sim keep their own)\n"
    "  -h, --help            this help\n";

void fr_cli_runs_help(FILE *f)
{
    fputs("Lists the runs recorded in the state store, newest first: the run id, the\n"
          "workflow, when it started (local time), its status, makespan, spend and the\n"
          "local tier's share of the tokens. The last three come from the report the\n"
          "run stored at its end; a run without one (killed, still running, or run by\n"
          "an older flowrun) shows the spend the ledger has and \"-\" for the rest.\n"
          "\n"
          "options:\n"
          "  WORKFLOW              only the runs of this workflow (its name)\n"
          "  --limit N             at most N runs (default 20; 0: all)\n"
          "  --json                the runs as a JSON array on stdout\n",
          f);
    fputs(state_options, f);
    fputs("\nexit codes: 0 listed (none is fine), 2 usage, 74 state store error.\n"
          "Documentation: docs/cli.md (flowrun runs).\n",
          f);
}

void fr_cli_report_help(FILE *f)
{
    fputs("Prints a finished run's summary, on stdout (a run prints it on stderr), or\n"
          "with --json its JSON report, byte for byte what the run's own --json printed.\n"
          "RUN is a run id or a prefix of exactly one; `last` (the default) is the\n"
          "newest run that stored a report, of --workflow NAME when given.\n"
          "\n"
          "options:\n"
          "  --json                the JSON report\n"
          "  --html FILE           write the run's HTML report (one self-contained file)\n"
          "  --trace FILE          write the run's Chrome trace (Perfetto, chrome://tracing)\n"
          "  --workflow NAME       runs of this workflow only\n",
          f);
    fputs(state_options, f);
    fputs("\nexit codes: 0 printed, 2 usage, 65 no such run, an ambiguous prefix or a\n"
          "run without a stored report, 74 state store error.\n"
          "Documentation: docs/cli.md (flowrun report), docs/report.md.\n",
          f);
}

void fr_cli_stats_help(FILE *f)
{
    fputs("Statistics across runs, from the attempts in the state store, per endpoint\n"
          "and per task type (the task's `type`; \"-\" when none): requests, success\n"
          "rate, quality-gate pass rate (replies not failed by a schema, check or\n"
          "on_result, among the attempts that got a reply), p50/p95 latency and time\n"
          "to first token over the replies, tokens, spend, and the local tier's share\n"
          "of attempts and tokens (the rest is the cloud's).\n"
          "\n"
          "options:\n"
          "  --since DATE          attempts from DATE on: YYYY-MM-DD (local midnight) or\n"
          "                        YYYY-MM-DDTHH:MM:SS (local, or UTC with a final Z)\n"
          "  --json                the statistics as JSON on stdout\n"
          "  --routing             what routing learned instead (candidate.history): per\n"
          "                        endpoint, task type and complexity band, the gated\n"
          "                        attempts, the pass rate (decayed, half-life 30 days)\n"
          "                        with its 95% Wilson interval, mean check score, median\n"
          "                        latency and the age of the newest evidence\n",
          f);
    fputs(state_options, f);
    fputs("\nexit codes: 0 printed, 2 usage, 74 state store error.\n"
          "Documentation: docs/cli.md (flowrun stats).\n",
          f);
}

/* ---- what the three share ---------------------------------------------- */

typedef struct opts {
    const char *state_dir, *workflow, *ref, *since, *html, *trace;
    bool sim, json;
    long limit;
} opts;

/* Parses the options of command argv[1]; `named` the ones it takes besides
 * --state, --sim and --json ("--limit", "--workflow", "--since"), `words`
 * how many plain arguments (0 or 1) and where the first goes. Returns -1,
 * or the usage error's exit code. */
static int parse(int argc, char **argv, const char *const *named, const char **word, opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        bool has = i + 1 < argc, known = false;
        for (const char *const *n = named; *n && !known; n++)
            known = strcmp(s, *n) == 0;
        if (strcmp(s, "--json") == 0) {
            o->json = true;
        } else if (strcmp(s, "--sim") == 0) {
            o->sim = true;
        } else if ((strcmp(s, "--state") == 0 || known) && has) {
            const char *v = argv[++i];
            if (strcmp(s, "--state") == 0)
                o->state_dir = v;
            else if (strcmp(s, "--workflow") == 0)
                o->workflow = v;
            else if (strcmp(s, "--since") == 0)
                o->since = v;
            else if (strcmp(s, "--html") == 0)
                o->html = v;
            else if (strcmp(s, "--trace") == 0)
                o->trace = v;
            else {
                char *end = NULL;
                o->limit = strtol(v, &end, 10);
                if (!*v || *end || o->limit < 0)
                    return fr_cli_usage_error("--limit expects a whole number >= 0, got '%s'", v);
            }
        } else if (s[0] == '-') {
            return fr_cli_usage_error((strcmp(s, "--state") == 0 || known) && !has
                                          ? "option %s needs a value"
                                          : "unknown option '%s'",
                                      s);
        } else if (word && !*word) {
            *word = s;
        } else {
            return fr_cli_usage_error("unexpected argument '%s'", s);
        }
    }
    return -1;
}

/* Opens the state store of `o` for reading into *st: read-only, or, for a
 * store of an older schema, opened to be upgraded (what its old runs had
 * stays; they have no stored report). Returns -1 with *st owned or NULL
 * (there is no store: *path says where it would be), or the exit code with
 * the error printed. *path is owned, a URL's password masked. */
static int open_state(const opts *o, fr_store **st, char **path)
{
    fr_error err = {0};
    char msg[1600];
    struct stat sb;
    *st = NULL;
    char *state = fr_cli_state_path(o->state_dir, o->sim);
    *path = fr_cli_state_shown(state); /* what messages say: a password masked */
    int rc = FR_ENOENT;
    if (fr_pgurl_is_url(state) || stat(state, &sb) == 0)
        rc = fr_store_open_readonly(state, st, &err);
    if (rc == FR_ESTORE && !fr_pgurl_is_url(state)) {
        err = (fr_error){0};
        rc = fr_store_open(state, st, &err);
    }
    free(state);
    if (rc == FR_ENOENT)
        return -1;
    if (rc != FR_OK) {
        fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
        return FR_EXIT_IOERR;
    }
    return -1;
}

/* Prints a store error `err` (borrowed) and returns 74. */
static int store_failed(const fr_error *err)
{
    char msg[1600];
    fprintf(stderr, "flowrun: %s\n", fr_error_format(err, msg, sizeof msg));
    return FR_EXIT_IOERR;
}

/* Prints `v` (borrowed) as indented JSON and a newline on stdout: 0, or 74. */
static int print_json(const json_t *v)
{
    if (json_dumpf(v, stdout, JSON_INDENT(2)) != 0 || fputc('\n', stdout) == EOF ||
        fflush(stdout) != 0) {
        fprintf(stderr, "flowrun: cannot write to standard output: %s\n",
                strerror(errno ? errno : EIO));
        return FR_EXIT_IOERR;
    }
    return 0;
}

/* Writes `v` (a number, or null / absent: "-") with `fmt` into `buf`. */
static const char *num_or_dash(char *buf, size_t n, const char *fmt, const json_t *v, double mul)
{
    if (!json_is_number(v))
        return "-";
    snprintf(buf, n, fmt, json_number_value(v) * mul);
    return buf;
}

/* ---- flowrun runs ------------------------------------------------------ */

int fr_cli_runs_main(int argc, char **argv)
{
    static const char *const named[] = {"--limit", NULL};
    opts o = {.limit = 20};
    fr_store *st = NULL;
    char *path = NULL;
    json_t *runs = NULL;
    fr_error err = {0};
    int code = parse(argc, argv, named, &o.workflow, &o);
    if (code < 0)
        code = open_state(&o, &st, &path);
    if (code >= 0)
        goto cleanup;
    if (st && fr_store_runs(st, o.workflow, o.limit, &runs, &err) != FR_OK) {
        code = store_failed(&err);
        goto cleanup;
    }
    if (!runs)
        runs = json_array();
    if (o.json) {
        code = print_json(runs);
        goto cleanup;
    }
    code = 0;
    if (json_array_size(runs) == 0) {
        fprintf(stderr, "flowrun: no runs%s%s recorded in %s\n", o.workflow ? " of " : "",
                o.workflow ? o.workflow : "", path);
        goto cleanup;
    }
    printf("%-30s %-20s %-19s %-11s %9s %11s %6s\n", "RUN", "WORKFLOW", "STARTED", "STATUS",
           "MAKESPAN", "SPEND", "LOCAL");
    size_t i;
    json_t *r;
    json_array_foreach(runs, i, r)
    {
        char started[32] = "-", mk[32], share[16], usd[FR_USD_LEN];
        time_t t = (time_t)json_number_value(json_object_get(r, "started_at"));
        struct tm tm;
        if (localtime_r(&t, &tm))
            strftime(started, sizeof started, "%Y-%m-%d %H:%M:%S", &tm);
        const json_t *cost = json_object_get(r, "cost_usd");
        printf("%-30s %-20s %-19s %-11s %9s %11s %6s\n",
               json_string_value(json_object_get(r, "id")),
               json_string_value(json_object_get(r, "workflow")), started,
               json_string_value(json_object_get(r, "status")),
               num_or_dash(mk, sizeof mk, "%.1f s", json_object_get(r, "makespan_ms"), 1e-3),
               json_is_number(cost) ? fr_usd_cost(usd, json_number_value(cost)) : "-",
               num_or_dash(share, sizeof share, "%.0f%%", json_object_get(r, "local_token_share"),
                           100));
    }
cleanup:
    json_decref(runs);
    fr_store_close(st);
    free(path);
    return code;
}

/* ---- flowrun report ---------------------------------------------------- */

int fr_cli_report_main(int argc, char **argv)
{
    static const char *const named[] = {"--workflow", "--html", "--trace", NULL};
    opts o = {0};
    fr_store *st = NULL;
    char *path = NULL;
    fr_store_report rep = {0};
    fr_error err = {0};
    int code = parse(argc, argv, named, &o.ref, &o);
    if (code < 0)
        code = open_state(&o, &st, &path);
    if (code >= 0)
        goto cleanup;
    const char *ref = o.ref ? o.ref : "last";
    int rc = st ? fr_store_report_get(st, ref, o.workflow, &rep, &err) : FR_ENOENT;
    if (rc == FR_ENOENT || rc == FR_EINVAL) {
        if (rc == FR_EINVAL)
            fprintf(stderr, "flowrun: %s\n", err.msg);
        else if (strcmp(ref, "last") == 0)
            fprintf(stderr, "flowrun: no finished run%s%s in %s\n", o.workflow ? " of " : "",
                    o.workflow ? o.workflow : "", path);
        else
            fprintf(stderr, "flowrun: no run '%s'%s%s in %s\n", ref,
                    o.workflow ? " of workflow " : "", o.workflow ? o.workflow : "", path);
        fprintf(stderr, "'flowrun runs%s%s' lists the runs%s.\n", o.state_dir ? " --state " : "",
                o.state_dir ? o.state_dir : "", o.sim ? "" : " (--sim: the rehearsals)");
        code = FR_EXIT_INVALID;
        goto cleanup;
    }
    if (rc != FR_OK) {
        code = store_failed(&err);
        goto cleanup;
    }
    if (!rep.json) {
        fprintf(stderr,
                "flowrun: run %s (%s) has no stored report: only a run that ends (not one "
                "killed, or still running) stores one, from flowrun's schema 5 on\n",
                rep.run_id, rep.status);
        code = FR_EXIT_INVALID;
        goto cleanup;
    }
    code = 0;
    if (o.html || o.trace) {
        /* The files are rendered from the stored JSON alone, as the run's own
         * --html and --trace were. */
        json_t *report = json_loads(rep.json, 0, NULL);
        if (!report || fr_html_save_json(report, o.trace, o.html) != FR_OK) {
            if (!report)
                fprintf(stderr, "flowrun: run %s's stored report is not JSON\n", rep.run_id);
            code = FR_EXIT_IOERR;
        }
        json_decref(report);
        if (!o.json) /* the files were asked for: the summary only with --json */
            goto cleanup;
    }
    /* Stored compact (runs stored by an older flowrun hold it indented):
     * printed indented, the bytes the run's own --json printed. */
    fr_buf indented;
    fr_buf_init(&indented, 0);
    if (o.json && fr_report_reindent(rep.json, &indented) != FR_OK) {
        fprintf(stderr, "flowrun: run %s's stored report is not JSON\n", rep.run_id);
        fr_buf_close(&indented);
        code = FR_EXIT_IOERR;
        goto cleanup;
    }
    const char *text = o.json ? fr_buf_str(&indented) : rep.summary;
    int wrote = fputs(text, stdout) != EOF && fflush(stdout) == 0;
    fr_buf_close(&indented);
    if (!wrote) {
        fprintf(stderr, "flowrun: cannot write to standard output: %s\n",
                strerror(errno ? errno : EIO));
        code = FR_EXIT_IOERR;
    }
cleanup:
    fr_store_report_clear(&rep);
    fr_store_close(st);
    free(path);
    return code;
}

/* ---- flowrun stats ----------------------------------------------------- */

/* Parses --since's DATE into *at (unix seconds): 0, or -1 (printed). */
static int parse_since(const char *s, double *at)
{
    struct tm tm = {0};
    int n = 0;
    size_t len = strlen(s);
    bool utc = len > 0 && s[len - 1] == 'Z';
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) == 3 &&
        (size_t)n == len) {
    } else if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                      &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) == 6 &&
               (size_t)n + utc == len) {
    } else {
        n = -1;
    }
    bool valid = n > 0 && tm.tm_mon >= 1 && tm.tm_mon <= 12 && tm.tm_mday >= 1 &&
                 tm.tm_mday <= 31 && tm.tm_hour < 24 && tm.tm_min < 60 && tm.tm_sec < 61;
    if (!valid) {
        fr_cli_usage_error("--since expects YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS[Z], got '%s'", s);
        return -1;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    *at = (double)(utc ? timegm(&tm) : mktime(&tm));
    return 0;
}

/* Prints one grouping `groups` (borrowed) under `title`. */
static void print_groups(const char *title, const json_t *groups)
{
    printf("%-20s %8s %7s %7s %9s %9s %9s %9s %10s %10s %11s %12s\n", title, "requests", "ok",
           "quality", "p50", "p95", "ttft p50", "ttft p95", "tok in", "tok out", "spend",
           "local a/t");
    const char *k;
    const json_t *g;
    json_object_foreach((json_t *)groups, k, g)
    {
        char b[8][32], usd[FR_USD_LEN];
        const json_t *lat = json_object_get(g, "latency_ms"), *tt = json_object_get(g, "ttft_ms"),
                     *tok = json_object_get(g, "tokens"), *loc = json_object_get(g, "local_share");
        char local[72];
        snprintf(local, sizeof local, "%s/%s",
                 num_or_dash(b[6], 32, "%.0f%%", json_object_get(loc, "attempts"), 100),
                 num_or_dash(b[7], 32, "%.0f%%", json_object_get(loc, "tokens"), 100));
        printf("%-20s %8lld %7s %7s %9s %9s %9s %9s %10lld %10lld %11s %12s\n", k,
               (long long)json_integer_value(json_object_get(g, "requests")),
               num_or_dash(b[0], 32, "%.1f%%", json_object_get(g, "success_rate"), 100),
               num_or_dash(b[1], 32, "%.1f%%", json_object_get(g, "quality_pass_rate"), 100),
               num_or_dash(b[2], 32, "%.0f ms", json_object_get(lat, "p50"), 1),
               num_or_dash(b[3], 32, "%.0f ms", json_object_get(lat, "p95"), 1),
               num_or_dash(b[4], 32, "%.0f ms", json_object_get(tt, "p50"), 1),
               num_or_dash(b[5], 32, "%.0f ms", json_object_get(tt, "p95"), 1),
               (long long)json_integer_value(json_object_get(tok, "input")),
               (long long)json_integer_value(json_object_get(tok, "output")),
               fr_usd_cost(usd, json_number_value(json_object_get(g, "cost_usd"))), local);
    }
}

/* The 95% Wilson interval of pass rate `p` over `n` (decayed) attempts
 * into *lo and *hi. */
static void wilson(double p, double n, double *lo, double *hi)
{
    const double z = 1.96;
    double d = 1 + z * z / n, c = p + z * z / (2 * n);
    double r = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n));
    *lo = (c - r) / d;
    *hi = (c + r) / d;
}

/* Record `h` (borrowed) as stats --routing's JSON (owned): what a policy
 * sees (nil figures left out) and the pass rate's 95% interval. */
static json_t *routing_json(const fr_policy_hist *h)
{
    json_t *o = fr_policy_hist_json(h);
    if (h->pass_rate >= 0 && h->weight > 0) {
        double lo, hi;
        wilson(h->pass_rate, h->weight, &lo, &hi);
        json_object_set_new(o, "pass_rate_95", json_pack("[f, f]", lo, hi));
    }
    return o;
}

static void routing_row(void *ud, const char *endpoint, const fr_policy_hist *rec,
                        const fr_policy_hist *all)
{
    json_t *eps = ud, *e = json_object_get(eps, endpoint);
    if (!e) {
        e = json_pack("{s:o, s:[]}", "all", routing_json(all), "keys");
        json_object_set_new(eps, endpoint, e);
    }
    json_array_append_new(json_object_get(e, "keys"), routing_json(rec));
}

/* Prints stats --routing's JSON `r` (borrowed) as a table. */
static void print_routing(const json_t *r)
{
    printf("%-20s %-12s %-9s %8s %7s %15s %7s %6s %9s %8s\n", "ENDPOINT", "TASK TYPE", "BAND",
           "attempts", "pass", "95%", "weight", "score", "p50", "age");
    const char *ep;
    const json_t *e;
    json_object_foreach(json_object_get(r, "endpoints"), ep, e)
    {
        size_t i;
        const json_t *k;
        json_array_foreach(json_object_get(e, "keys"), i, k)
        {
            char b[5][32], band[32], ci[40];
            const json_t *c = json_object_get(k, "pass_rate_95");
            snprintf(band, sizeof band, "%.1f-%.1f",
                     json_number_value(json_object_get(k, "band_lo")),
                     json_number_value(json_object_get(k, "band_hi")));
            if (json_is_array(c))
                snprintf(ci, sizeof ci, "%.0f%%-%.0f%%",
                         100 * json_number_value(json_array_get(c, 0)),
                         100 * json_number_value(json_array_get(c, 1)));
            else
                snprintf(ci, sizeof ci, "-");
            printf("%-20s %-12s %-9s %8lld %7s %15s %7.1f %6s %9s %8s\n", ep,
                   json_string_value(json_object_get(k, "type")), band,
                   (long long)json_integer_value(json_object_get(k, "attempts")),
                   num_or_dash(b[0], 32, "%.1f%%", json_object_get(k, "pass_rate"), 100), ci,
                   json_number_value(json_object_get(k, "weight")),
                   num_or_dash(b[1], 32, "%.2f", json_object_get(k, "score_mean"), 1),
                   num_or_dash(b[2], 32, "%.0f ms", json_object_get(k, "latency_p50_ms"), 1),
                   num_or_dash(b[3], 32, "%.0f s", json_object_get(k, "age_s"), 1));
        }
    }
}

/* flowrun stats --routing on the open store `st` (NULL: none): 0, or the
 * store's exit code. */
static int stats_routing(fr_store *st, bool as_json)
{
    fr_error err = {0};
    fr_history *h = fr_history_new(NULL, 0);
    int code = 0;
    if (st && fr_history_load(h, st, &err) != FR_OK) {
        code = store_failed(&err);
        fr_history_free(h);
        return code;
    }
    double now = fr_history_now(h);
    json_t *eps = json_object();
    fr_history_each(h, now, routing_row, eps);
    json_t *r = json_pack("{s:f, s:f, s:o}", "at", now, "half_life_days",
                          FR_STORE_HISTORY_HALF_LIFE_S / 86400, "endpoints", eps);
    if (as_json)
        code = print_json(r);
    else
        print_routing(r);
    json_decref(r);
    fr_history_free(h);
    return code;
}

int fr_cli_stats_main(int argc, char **argv)
{
    static const char *const named[] = {"--since", NULL};
    opts o = {0};
    fr_store *st = NULL;
    char *path = NULL;
    json_t *stats = NULL;
    fr_error err = {0};
    double since = 0;
    /* --routing is taken out before the shared options are parsed. */
    bool routing = false;
    char **args = fr_xcalloc((size_t)argc + 1, sizeof *args);
    int nargs = 0;
    for (int i = 0; i < argc; i++)
        if (i >= 2 && strcmp(argv[i], "--routing") == 0)
            routing = true;
        else
            args[nargs++] = argv[i];
    int code = parse(nargs, args, named, NULL, &o);
    free(args);
    if (code < 0 && routing && o.since)
        code = fr_cli_usage_error("%s reads every attempt: it takes no --since", "--routing");
    if (code < 0 && o.since && parse_since(o.since, &since) != 0)
        code = FR_EXIT_USAGE;
    if (code < 0)
        code = open_state(&o, &st, &path);
    if (code < 0 && routing)
        code = stats_routing(st, o.json);
    if (code >= 0)
        goto cleanup;
    if (st && fr_store_run_stats(st, since, &stats, &err) != FR_OK) {
        code = store_failed(&err);
        goto cleanup;
    }
    if (!stats)
        stats =
            json_pack("{s:o, s:i, s:{}, s:{}}", "since", since > 0 ? json_real(since) : json_null(),
                      "runs", 0, "by_endpoint", "by_type");
    if (o.json) {
        code = print_json(stats);
        goto cleanup;
    }
    code = 0;
    printf("runs: %lld%s%s\n\n", (long long)json_integer_value(json_object_get(stats, "runs")),
           o.since ? " since " : "", o.since ? o.since : "");
    print_groups("ENDPOINT", json_object_get(stats, "by_endpoint"));
    putchar('\n');
    print_groups("TASK TYPE", json_object_get(stats, "by_type"));
cleanup:
    json_decref(stats);
    fr_store_close(st);
    free(path);
    return code;
}

/* ---- a run's end ------------------------------------------------------- */

char *fr_cli_report_json_text(const fr_results *r, bool compact)
{
    fr_buf text;
    fr_buf_init(&text, 0);
    if (fr_report_text(r, &text, compact) != FR_OK) {
        fr_buf_close(&text);
        return NULL;
    }
    return fr_buf_take(&text);
}

int fr_cli_store_report(const fr_results *r, fr_booking *books, const char *state_dir,
                        const char *json_text, int code)
{
    char *summary = NULL, *path = fr_booking_state_path(state_dir, r->sim);
    size_t len = 0;
    fr_error err = {0};
    FILE *mem = open_memstream(&summary, &len);
    if (mem) {
        fr_report_summary(r, mem, false);
        fclose(mem);
    }
    int rc = !json_text || !summary
                 ? fr_error_set(&err, FR_ENOMEM, path, 0, "cannot render the run's report")
             : !books ? fr_error_set(&err, FR_EINVAL, path, 0, "no state store")
                      : fr_booking_store_report(books, json_text, summary, &err);
    if (rc != FR_OK) {
        char msg[1600];
        fprintf(stderr,
                "flowrun: %s: the run's report is not stored ('flowrun report' will not show "
                "it)\n",
                fr_error_format(&err, msg, sizeof msg));
        if (code == 0)
            code = FR_EXIT_IOERR;
    }
    free(summary);
    free(path);
    return code;
}
