#include "engine/util/err.h"

#include <stdio.h>
#include <string.h>

const char *fr_err_name(int code)
{
    switch (code) {
#define FR_ERR_NAME(name, val, msg)                                                                \
    case val:                                                                                      \
        return #name;
        FR_ERRORS(FR_ERR_NAME)
#undef FR_ERR_NAME
    }
    return "FR_EUNKNOWN";
}

const char *fr_strerror(int code)
{
    switch (code) {
#define FR_ERR_MSG(name, val, msg)                                                                 \
    case val:                                                                                      \
        return msg;
        FR_ERRORS(FR_ERR_MSG)
#undef FR_ERR_MSG
    }
    return "unknown error";
}

int fr_error_set(fr_error *err, int code, const char *source, int line, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->line = line;
    snprintf(err->source, sizeof err->source, "%s", source ? source : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *fr_error_format(const fr_error *err, char *buf, size_t size)
{
    if (err->source[0] && err->line > 0)
        snprintf(buf, size, "%s:%d: %s", err->source, err->line, err->msg);
    else if (err->source[0])
        snprintf(buf, size, "%s: %s", err->source, err->msg);
    else
        snprintf(buf, size, "%s", err->msg);
    return buf;
}
