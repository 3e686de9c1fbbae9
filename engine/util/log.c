#include "engine/util/log.h"

#include "engine/util/mem.h"
#include "engine/util/redact.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static fr_log_level g_level = FR_LOG_WARN;
static fr_log_format g_format = FR_LOG_TEXT;
static FILE *g_stream;
static fr_log_around_fn g_around;
static void *g_around_ud;

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
    bool was = g_stream != NULL;
    g_stream = f;
    /* Held back: the display clears itself; when the lines come back it
     * draws again on its own, below what the holder printed then. */
    if (g_around && !was && f)
        g_around(g_around_ud, true);
}

void fr_log_set_around(fr_log_around_fn fn, void *ud)
{
    g_around = fn;
    g_around_ud = ud;
}

bool fr_log_held(void)
{
    return g_stream != NULL;
}

/* Calls the display's hook around a line bound for stderr. */
static void around(bool before)
{
    if (g_around && !g_stream)
        g_around(g_around_ud, before);
}

int fr_log_level_parse(const char *s)
{
    for (int i = 0; i <= FR_LOG_TRACE; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

/* Writes n bytes of s (less at a NUL) JSON-escaped, without quotes. */
static void json_escape_n(FILE *f, const char *s, size_t n)
{
    for (const unsigned char *p = (const unsigned char *)s; n > 0 && *p; p++, n--) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
}

static void json_string_n(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    json_escape_n(f, s, n);
    fputc('"', f);
}

static void json_string(FILE *f, const char *s)
{
    json_string_n(f, s, strlen(s));
}

/* One piece of a key=value line: a field (key and value, the value without
 * its quotes) or, when key_len is 0, a bare word. */
typedef struct {
    const char *key, *val;
    size_t key_len, val_len;
    bool quoted;
} log_piece;

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

/* Whether the quote at q closes a quoted value: it is followed by the end,
 * by a blank and the next field ("key="), or by blanks and bare words only.
 * A quote inside a reason followed by more of the reason is not one. */
static bool closing_quote(const char *q)
{
    if (*q != '"')
        return false;
    const char *p = q + 1;
    if (*p == '\0')
        return true;
    if (*p != ' ')
        return false;
    p++;
    const char *k = p;
    while (key_char(*p))
        p++;
    if (p > k && *p == '=')
        return true;
    return strpbrk(q + 1, "\"=") == NULL;
}

/* Reads the piece at *pp and moves past it. A quoted value ends at the quote
 * that closing_quote accepts, so quotes inside a reason stay inside it. Returns false at the end of
 * the line. */
static bool next_piece(const char **pp, log_piece *out)
{
    const char *p = *pp;
    while (*p == ' ')
        p++;
    if (!*p)
        return false;
    memset(out, 0, sizeof *out);
    const char *k = p;
    while (key_char(*p))
        p++;
    if (p > k && *p == '=') {
        out->key = k;
        out->key_len = (size_t)(p - k);
        p++;
        if (*p == '"') {
            const char *v = ++p;
            while (*p && !closing_quote(p))
                p++;
            out->val = v;
            out->val_len = (size_t)(p - v);
            out->quoted = true;
            if (*p == '"')
                p++;
        } else {
            const char *v = p;
            while (*p && *p != ' ')
                p++;
            out->val = v;
            out->val_len = (size_t)(p - v);
        }
    } else {
        const char *w = k;
        while (*p && *p != ' ')
            p++;
        out->val = w;
        out->val_len = (size_t)(p - w);
    }
    *pp = p;
    return true;
}

static bool piece_is(const log_piece *pc, const char *key)
{
    return pc->key_len == strlen(key) && memcmp(pc->key, key, pc->key_len) == 0;
}

/* Names stay strings even when they look like numbers ("task=7"). */
static bool name_key(const log_piece *pc)
{
    static const char *const names[] = {"task",  "endpoint", "tool", "server", "model",
                                        "agent", "workflow", "path", "call",   "run"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (piece_is(pc, names[i]))
            return true;
    return false;
}

/* A bare value that is a whole finite number is written as a JSON number. */
static bool numeric(const log_piece *pc)
{
    if (pc->quoted || pc->val_len == 0 || pc->val_len > 40 || name_key(pc))
        return false;
    char tmp[48];
    memcpy(tmp, pc->val, pc->val_len);
    tmp[pc->val_len] = '\0';
    if (!(tmp[0] == '-' || (tmp[0] >= '0' && tmp[0] <= '9')))
        return false;
    char *end = NULL;
    double d = strtod(tmp, &end);
    return end && *end == '\0' && d == d && d - d == 0;
}

/* The event of a line logged without one: its first word when the line
 * starts with a plain word ("dispatch", "alert:" as "alert"), else the name
 * of its first field, else "message". */
static void default_event(const char *text, char *ev, size_t cap)
{
    const char *p = text;
    log_piece pc;
    bool first = true;
    while (next_piece(&p, &pc)) {
        if (pc.key_len != 0) {
            snprintf(ev, cap, "%.*s", (int)pc.key_len, pc.key);
            return;
        }
        size_t n = pc.val_len;
        if (n > 1 && pc.val[n - 1] == ':')
            n--;
        bool plain = first && n > 0;
        for (size_t i = 0; i < n && plain; i++)
            plain = key_char(pc.val[i]) && pc.val[i] != '.';
        if (plain) {
            snprintf(ev, cap, "%.*s", (int)n, pc.val);
            return;
        }
        first = false;
    }
    snprintf(ev, cap, "message");
}

/* The start of a JSON line: time, level, component and event. */
static void json_head(FILE *f, fr_log_level level, const char *component, const char *event)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(f, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\",\"component\":", when,
            ts.tv_nsec / 1000000, level_names[level]);
    json_string(f, component);
    fputs(",\"event\":", f);
    json_string(f, event);
}

/* One JSON object: time, level, component, event, every field of the line
 * as a key (the first of a repeated key wins), and the bare words that were
 * not fields joined as "msg". */
static void write_json(FILE *f, fr_log_level level, const char *component, const char *event,
                       const char *text)
{
    char ev[64];
    if (!event)
        default_event(text, ev, sizeof ev);
    json_head(f, level, component, event ? event : ev);
    const char *seen[32];
    size_t seen_len[32], nseen = 0;
    const char *p = text;
    log_piece pc;
    bool words = false;
    while (next_piece(&p, &pc)) {
        if (pc.key_len == 0) {
            words = true;
            continue;
        }
        bool dup = piece_is(&pc, "time") || piece_is(&pc, "level") || piece_is(&pc, "component") ||
                   piece_is(&pc, "msg") || (event && piece_is(&pc, "event"));
        for (size_t i = 0; i < nseen && !dup; i++)
            dup = seen_len[i] == pc.key_len && memcmp(seen[i], pc.key, pc.key_len) == 0;
        if (dup)
            continue;
        if (nseen < 32) {
            seen[nseen] = pc.key;
            seen_len[nseen++] = pc.key_len;
        }
        fputc(',', f);
        json_string_n(f, pc.key, pc.key_len);
        fputc(':', f);
        if (numeric(&pc))
            fprintf(f, "%.*s", (int)pc.val_len, pc.val);
        else
            json_string_n(f, pc.val, pc.val_len);
    }
    if (words) {
        /* The words keep their order; fields are left out of the message. */
        fputs(",\"msg\":\"", f);
        p = text;
        bool sep = false;
        while (next_piece(&p, &pc)) {
            if (pc.key_len != 0)
                continue;
            if (sep)
                fputc(' ', f);
            json_escape_n(f, pc.val, pc.val_len);
            sep = true;
        }
        fputc('"', f);
    }
    fputs("}\n", f);
}

static void vlog_event(fr_log_level level, const char *component, const char *event,
                       const char *fmt, va_list ap)
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
    around(true);
    if (g_format == FR_LOG_JSON)
        write_json(f, level, component, event, text);
    else
        fprintf(f, "flowrun: %s %s %s\n", level_names[level], component, text);
    fflush(f);
    around(false);
    if (clean) {
        /* The unredacted line stays on the stack no longer than needed. */
        fr_wipe(msg, strnlen(msg, sizeof msg));
        free(clean);
    }
}

void fr_vlog(fr_log_level level, const char *component, const char *fmt, va_list ap)
{
    vlog_event(level, component, NULL, fmt, ap);
}

void fr_log_event(fr_log_level level, const char *component, const char *event, const char *fmt,
                  ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_event(level, component, event, fmt, ap);
    va_end(ap);
}

void fr_log(fr_log_level level, const char *component, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fr_vlog(level, component, fmt, ap);
    va_end(ap);
}

void fr_log_json_fields(fr_log_level level, const char *component, const char *event,
                        const char *fields, const char *text)
{
    if (g_format == FR_LOG_JSON && level > g_level)
        return;
    FILE *f = g_format == FR_LOG_JSON && g_stream ? g_stream : stderr;
    /* Secrets go from the fields as from every other line. */
    char *clean = fields && fr_redact_needed(fields) ? fr_redact(fields) : NULL;
    if (clean)
        fields = clean;
    around(true);
    if (g_format == FR_LOG_JSON) {
        json_head(f, level, component, event);
        /* The object's members follow the head's: "{" dropped, "}" kept. */
        const char *p = fields ? strchr(fields, '{') : NULL;
        if (p && p[1] != '}' && p[1] != '\0')
            fprintf(f, ",%s\n", p + 1);
        else
            fputs("}\n", f);
    } else {
        fputs(text, f);
    }
    fflush(f);
    around(false);
    free(clean);
}
