/* flowrun-sim: the stand-alone simulator. Parses the command line, hosts an
 * fr_sim on the default loop, prints its URL and serves until SIGINT or
 * SIGTERM. */

#include "engine/sim/sim.h"

#include "engine/util/fdlimit.h"
#include "engine/util/log.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

typedef struct model_spec {
    char *name; /* owned copy of the argument, cut at the options' ':' */
    char *opts; /* "latency=..,tps=..,max=..,faults=..,skill=.." or NULL; points into `name` */
} model_spec;

typedef struct app {
    uv_loop_t *loop;
    fr_sim *sim;
    uv_signal_t sigint;
    uv_signal_t sigterm;
} app;

static void usage(FILE *f)
{
    fputs("Usage: flowrun-sim [options]\n"
          "\n"
          "An inference server on loopback that speaks the OpenAI-compatible, Ollama and\n"
          "Anthropic protocols with deterministic replies and scripted faults, for tests,\n"
          "examples and benchmarks. Prints its base URL on one line, then serves until\n"
          "SIGINT or SIGTERM.\n"
          "\n"
          "Options:\n"
          "  --host ADDR        numeric address to listen on (default 127.0.0.1)\n"
          "  --port N           port; 0 or none picks a free one\n"
          "  --latency MS       default model: delay before the first token (default 50)\n"
          "  --tps N            default model: output tokens per second, 0 = instant\n"
          "                     (default 200)\n"
          "  --max N            default model: requests in flight before 429, 0 = unlimited\n"
          "                     (default 0)\n"
          "  --model NAME[:latency=MS,tps=N,max=N,faults=KIND+KIND+...,skill=X,noise=N]\n"
          "                     set one model (repeatable); keys left out take the default\n"
          "                     model's values. The options follow the last ':' in the\n"
          "                     argument, so names such as qwen2.5:7b work. `faults` is a\n"
          "                     script its successive requests consume in order, then\n"
          "                     normal replies: ok 429 500 503 529 cut hang badjson nousage\n"
          "                     badutf8 error repeat badschema echokey echookey refusal\n"
          "                     toolcall thinking\n"
          "                     (e.g. faults=500+500+ok). refuse=max_tokens answers\n"
          "                     OpenAI's 400 to a request with max_tokens, as its reasoning\n"
          "                     models do (max_completion_tokens is served).\n"
          "                     retry_after=S sets the Retry-After of its 429 and 503\n"
          "                     replies (default 1).\n"
          "                     A line 'FAULT: KIND' in a prompt does the same per request.\n"
          "                     skill=X (0..1) grades a prompt's '@@difficulty D' line:\n"
          "                     the reply starts 'PASS ' when X >= D, else 'FAIL ';\n"
          "                     noise=N moves X by a deterministic -N..N per request.\n"
          "  --key KEY          answer 401 to every model request (chat, /v1/models,\n"
          "                     /api/tags, /api/ps) that does not carry KEY as\n"
          "                     'Authorization: Bearer KEY' or 'x-api-key: KEY'\n"
          "  --record FILE      append every chat request's body to FILE, one JSON line\n"
          "                     each: {\"path\": ..., \"body\": ...} (never its headers)\n"
          "  --log-level LEVEL  error, warn, info, debug or trace (default warn)\n"
          "  -h, --help         show this help\n"
          "\n"
          "Endpoints: POST /v1/chat/completions (OpenAI), POST /api/chat (Ollama),\n"
          "POST /v1/messages (Anthropic), GET /v1/models, GET /api/tags, GET /api/ps,\n"
          "GET /sim/stats, POST /sim/reset.\n",
          f);
}

__attribute__((format(printf, 1, 2))) static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("flowrun-sim: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\nTry 'flowrun-sim --help'.\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static int parse_number(const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int max, int *out)
{
    double v;
    if (parse_number(s, max, &v) < 0 || v != floor(v))
        return -1;
    *out = (int)v;
    return 0;
}

/* Fills `m` from the spec on top of the defaults in `m`. Returns 0 or exit 2. */
static int apply_spec(const model_spec *spec, fr_sim_model *m)
{
    m->name = spec->name;
    if (!*spec->name)
        return bad_usage("%s", "--model needs a model name before the ':'");
    if (!spec->opts)
        return 0;
    char *save = NULL;
    for (char *kv = strtok_r(spec->opts, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            return bad_usage("--model option '%s' is not key=value", kv);
        *eq = '\0';
        const char *val = eq + 1;
        int rc = 0;
        if (strcmp(kv, "latency") == 0)
            rc = parse_number(val, 86400000.0, &m->latency_ms);
        else if (strcmp(kv, "tps") == 0)
            rc = parse_number(val, 1e9, &m->tokens_per_s);
        else if (strcmp(kv, "max") == 0)
            rc = parse_int(val, 1000000, &m->max_concurrent);
        else if (strcmp(kv, "faults") == 0)
            m->faults = val; /* checked when the model is set */
        else if (strcmp(kv, "retry_after") == 0)
            rc = parse_number(val, 1e7, &m->retry_after_s);
        else if (strcmp(kv, "refuse") == 0 && strcmp(val, "max_tokens") == 0)
            m->refuse_max_tokens = true;
        else if (strcmp(kv, "refuse") == 0)
            rc = -1; /* max_tokens is the one parameter it can refuse */
        else if (strcmp(kv, "skill") == 0) {
            rc = parse_number(val, 1.0, &m->skill);
            m->has_skill = true;
        } else if (strcmp(kv, "noise") == 0)
            rc = parse_number(val, 1.0, &m->noise);
        else
            return bad_usage("unknown --model key '%s' (use latency, tps, max, faults, refuse, "
                             "retry_after, skill or noise)",
                             kv);
        if (rc < 0)
            return bad_usage("bad --model value '%s'", val);
    }
    return 0;
}

/* Splits a copy of "name[:k=v,...]" at the last ':' when what follows holds
 * a '='. The spec owns the copy. */
static model_spec split_spec(const char *arg)
{
    model_spec spec = {fr_xstrdup(arg), NULL};
    char *colon = strrchr(spec.name, ':');
    if (colon && strchr(colon + 1, '=')) {
        *colon = '\0';
        spec.opts = colon + 1;
    }
    return spec;
}

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_signal(uv_signal_t *sig, int signum)
{
    app *a = sig->data;
    fr_log(FR_LOG_INFO, "sim", "signal=%d shutting down", signum);
    fr_sim_free(a->sim);
    a->sim = NULL;
    if (!uv_is_closing((uv_handle_t *)&a->sigint))
        uv_close((uv_handle_t *)&a->sigint, on_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&a->sigterm))
        uv_close((uv_handle_t *)&a->sigterm, on_handle_closed);
}

int main(int argc, char **argv)
{
    enum {
        OPT_HOST = 1,
        OPT_PORT,
        OPT_LATENCY,
        OPT_TPS,
        OPT_MAX,
        OPT_MODEL,
        OPT_LOG,
        OPT_RECORD,
        OPT_KEY,
        OPT_HELP
    };
    fr_fd_raise_limit(); /* one socket per client connection */
    static const struct option options[] = {
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"latency", required_argument, NULL, OPT_LATENCY},
        {"tps", required_argument, NULL, OPT_TPS},
        {"max", required_argument, NULL, OPT_MAX},
        {"model", required_argument, NULL, OPT_MODEL},
        {"log-level", required_argument, NULL, OPT_LOG},
        {"record", required_argument, NULL, OPT_RECORD},
        {"key", required_argument, NULL, OPT_KEY},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    const char *record_path = NULL;
    const char *key = NULL;
    FILE *record = NULL;
    int port = 0;
    fr_sim_model dflt = {.latency_ms = 50.0, .tokens_per_s = 200.0};
    model_spec *specs = NULL;
    fr_sim_model *models = NULL;
    int nspecs = 0;
    int rc = 0;
    app a;
    memset(&a, 0, sizeof a);

    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case OPT_HOST:
            host = optarg;
            break;
        case OPT_PORT:
            if (parse_int(optarg, 65535, &port) < 0)
                rc = bad_usage("bad --port '%s' (want 0..65535)", optarg);
            break;
        case OPT_LATENCY:
            if (parse_number(optarg, 86400000.0, &dflt.latency_ms) < 0)
                rc = bad_usage("bad --latency '%s' (want milliseconds >= 0)", optarg);
            break;
        case OPT_TPS:
            if (parse_number(optarg, 1e9, &dflt.tokens_per_s) < 0)
                rc = bad_usage("bad --tps '%s' (want tokens per second >= 0)", optarg);
            break;
        case OPT_MAX:
            if (parse_int(optarg, 1000000, &dflt.max_concurrent) < 0)
                rc = bad_usage("bad --max '%s' (want an integer >= 0)", optarg);
            break;
        case OPT_MODEL: {
            specs = fr_xrealloc(specs, (size_t)(nspecs + 1) * sizeof *specs);
            specs[nspecs++] = split_spec(optarg);
            break;
        }
        case OPT_LOG: {
            int level = fr_log_level_parse(optarg);
            if (level < 0)
                rc = bad_usage("bad --log-level '%s'", optarg);
            else
                fr_log_set_level((fr_log_level)level);
            break;
        }
        case OPT_RECORD:
            record_path = optarg;
            break;
        case OPT_KEY:
            key = optarg;
            break;
        case 'h':
        case OPT_HELP:
            usage(stdout);
            goto cleanup;
        case ':':
            rc = bad_usage("option '%s' needs a value", argv[optind - 1]);
            break;
        default:
            rc = bad_usage("unknown option '%s'", argv[optind - 1]);
            break;
        }
        if (rc)
            goto cleanup;
    }
    if (optind < argc) {
        rc = bad_usage("unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }

    models = fr_xcalloc((size_t)nspecs + 1, sizeof *models);
    for (int i = 0; i < nspecs; i++) {
        models[i] = dflt;
        rc = apply_spec(&specs[i], &models[i]);
        if (rc)
            goto cleanup;
    }

    if (record_path && !(record = fopen(record_path, "a"))) {
        fprintf(stderr, "flowrun-sim: cannot open --record file %s: %s\n", record_path,
                strerror(errno));
        rc = 1;
        goto cleanup;
    }
    a.loop = uv_default_loop();
    fr_error err = {0};
    a.sim = fr_sim_new(a.loop, host, port, &err);
    if (!a.sim) {
        fprintf(stderr, "flowrun-sim: %s\n", err.msg);
        rc = err.code == FR_EINVAL ? EXIT_USAGE : 1;
        goto cleanup;
    }
    fr_sim_set_model(a.sim, &dflt);
    fr_sim_record(a.sim, record);
    fr_sim_set_key(a.sim, key);
    for (int i = 0; i < nspecs; i++) {
        if (fr_sim_set_model(a.sim, &models[i]) != FR_OK) {
            rc =
                bad_usage("bad --model faults '%s' (kinds: ok 429 500 503 529 cut hang "
                          "badjson nousage badutf8 error repeat badschema echokey echookey refusal "
                          "toolcall thinking, "
                          "joined by '+')",
                          models[i].faults);
            fr_sim_free(a.sim);
            uv_run(a.loop, UV_RUN_DEFAULT);
            uv_loop_close(a.loop);
            goto cleanup;
        }
    }

    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigterm);
    a.sigint.data = &a;
    a.sigterm.data = &a;
    uv_signal_start(&a.sigint, on_signal, SIGINT);
    uv_signal_start(&a.sigterm, on_signal, SIGTERM);

    if (strchr(host, ':'))
        printf("http://[%s]:%d\n", host, fr_sim_port(a.sim));
    else
        printf("http://%s:%d\n", strcmp(host, "localhost") == 0 ? "127.0.0.1" : host,
               fr_sim_port(a.sim));
    fflush(stdout);

    uv_run(a.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(a.loop) != 0) {
        fprintf(stderr, "flowrun-sim: handles left open at exit\n");
        rc = 1;
    }
cleanup:
    if (record)
        fclose(record);
    free(models);
    for (int i = 0; i < nspecs; i++)
        free(specs[i].name);
    free(specs);
    return rc;
}
