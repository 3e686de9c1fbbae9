#include "engine/util/log.h"

#include "engine/util/mem.h"
#include "engine/util/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static fr_log_level g_level = FR_LOG_WARN;
static fr_log_format g_format = FR_LOG_TEXT;
static FILE *g_stream;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

void fr_log_set_level(fr_log_level level)
{
    g_level = level;
}

fr_log_level fr_log_get_level(void)
{
    return g_level;
}

void fr_log_set_format(fr_log_format fmt)
{
    g_format = fmt;
}

void fr_log_set_stream(FILE *f)
{
    g_stream = f;
}

int fr_log_level_parse(const char *s)
{
    for (int i = 0; i <= FR_LOG_TRACE; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void fr_vlog(fr_log_level level, const char *component, const char *fmt, va_list ap)
{
    if (level > g_level)
        return;
    FILE *f = g_stream ? g_stream : stderr;
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Every line loses registered secrets and credential values before it is
     * written; the test is cheap, so lines without any pass untouched. */
    char *clean = fr_redact_needed(msg) ? fr_redact(msg) : NULL;
    const char *text = clean ? clean : msg;
    if (g_format == FR_LOG_JSON) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        fprintf(f, "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"component\":", (long long)ts.tv_sec,
                ts.tv_nsec / 1000000, level_names[level]);
        json_string(f, component);
        fputs(",\"msg\":", f);
        json_string(f, text);
        fputs("}\n", f);
    } else {
        fprintf(f, "flowrun: %s %s %s\n", level_names[level], component, text);
    }
    fflush(f);
    if (clean) {
        /* The unredacted line stays on the stack no longer than needed. */
        fr_wipe(msg, strnlen(msg, sizeof msg));
        free(clean);
    }
}

void fr_log(fr_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fr_vlog(level, component, fmt, ap);
    va_end(ap);
}
