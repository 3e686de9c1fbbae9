#include "engine/toolres.h"

#include "engine/util/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fr_tool_result_ok(fr_tool_result *r, const char *text)
{
    *r = (fr_tool_result){.text = fr_xstrdup(text ? text : "")};
}

void fr_tool_result_fail(fr_tool_result *r, const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    *r = (fr_tool_result){
        .is_error = true,
        .text = fr_xasprintf("error: %s", reason),
        .reason = fr_xstrdup(reason),
    };
}

void fr_tool_result_close(fr_tool_result *r)
{
    free(r->text);
    free(r->reason);
    *r = (fr_tool_result){0};
}
