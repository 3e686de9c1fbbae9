/* What the commands of flowrun's command line share (engine/cli/cli.h). */

#include "engine/cli/cli.h"

#include "engine/booking.h"
#include "engine/store/pgurl.h"
#include "engine/util/err.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

int fr_cli_usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "flowrun: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\nTry 'flowrun --help'.\n");
    return FR_EXIT_USAGE;
}

int fr_cli_parse_number(const char *opt, const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !isfinite(v) || v < 0) {
        fprintf(stderr,
                "flowrun: %s expects a finite number >= 0, got '%s'\nTry 'flowrun --help'.\n", opt,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

int fr_cli_load_exit(int code)
{
    return code == FR_ECONFIG ? FR_EXIT_CONFIG : FR_EXIT_INVALID;
}

/* The loader's warnings (a --var the workflow does not use), on stderr. */
void fr_cli_load_warning(void *ud, const char *msg)
{
    (void)ud;
    fprintf(stderr, "flowrun: warning: %s\n", msg);
}

/* Loads workflow `path` for a command (tools, approve, reject) with its
 * --endpoints and --var (all borrowed): 0 with *wf owned, or the exit code
 * after saying why on stderr. */
int fr_cli_load_workflow(const char *path, const char **endpoints, size_t nendpoints,
                         const char **vars, size_t nvars, fr_workflow **wf)
{
    fr_error err = {0};
    char msg[1600];
    fr_load_opts lo = {
        .endpoints_path = nendpoints ? endpoints[0] : NULL,
        .more_endpoints = nendpoints > 1 ? endpoints + 1 : NULL,
        .nmore_endpoints = nendpoints > 1 ? nendpoints - 1 : 0,
        .vars = vars,
        .nvars = nvars,
        .warn = fr_cli_load_warning,
    };
    int rc = fr_workflow_load(path, &lo, wf, &err);
    if (rc == FR_OK)
        return 0;
    fprintf(stderr, "flowrun: %s\n", fr_error_format(&err, msg, sizeof msg));
    return fr_cli_load_exit(rc);
}

char *fr_cli_state_path(const char *state_dir, bool sim)
{
    const char *url = fr_pgurl_state(state_dir);
    return url ? fr_xstrdup(url) : fr_booking_state_path(state_dir, sim);
}

char *fr_cli_state_shown(const char *path)
{
    return fr_pgurl_is_url(path) ? fr_pgurl_mask(path) : fr_xstrdup(path);
}
