#pragma once
/* The one list of error codes. Every function that can fail returns FR_OK or
 * a negative fr_err; loaders and parsers also fill an fr_error with where the
 * problem is (file, line) and a message a user can act on. */

#include <stdarg.h>
#include <stddef.h>

#define FR_ERRORS(X)                                                                               \
    X(FR_OK, 0, "success")                                                                         \
    X(FR_ENOMEM, -1, "out of memory")                                                              \
    X(FR_EINVAL, -2, "invalid argument")                                                           \
    X(FR_EIO, -3, "input/output error")                                                            \
    X(FR_ENOENT, -4, "no such file or entry")                                                      \
    X(FR_ESYNTAX, -5, "syntax error")                                                              \
    X(FR_EWORKFLOW, -6, "invalid workflow")                                                        \
    X(FR_ECYCLE, -7, "dependency cycle")                                                           \
    X(FR_ECONFIG, -8, "configuration error")                                                       \
    X(FR_ELUA, -9, "Lua error")                                                                    \
    X(FR_ELIMIT, -10, "resource limit exceeded")                                                   \
    X(FR_ECONNECT, -11, "connection failed")                                                       \
    X(FR_ETIMEDOUT, -12, "timed out")                                                              \
    X(FR_EHTTP, -13, "HTTP error status")                                                          \
    X(FR_EPROTO, -14, "malformed reply")                                                           \
    X(FR_ETOOBIG, -15, "reply too large")                                                          \
    X(FR_ECANCELED, -16, "cancelled")                                                              \
    X(FR_ETRUNCATED, -17, "stream ended before its terminator")                                    \
    X(FR_EPOLICY, -18, "routing policy error")                                                     \
    X(FR_ENOROUTE, -19, "no endpoint can take this task")                                          \
    X(FR_EUSAGE, -20, "usage error")                                                               \
    X(FR_EBUDGET, -21, "budget exhausted")                                                         \
    X(FR_EQUALITY, -22, "reply failed its quality gate")                                           \
    X(FR_EDEP, -23, "a dependency failed")                                                         \
    X(FR_EINTERNAL, -24, "internal error")                                               \
    X(FR_ERETRY, -25, "the routing policy asked for a retry")                                      \
    X(FR_ESTORE, -26, "state store error")                                                         \
    X(FR_ESTOREVER, -27, "state database from a newer flowrun")                                   \
    X(FR_EFINISH, -28, "the reply ended without a complete answer")                               \
    X(FR_ETOOL, -29, "a tool call failed")                                                         \
    X(FR_EMCP, -30, "MCP server error")                                                            \
    X(FR_ETURNS, -31, "the tool loop reached its limit")                                           \
    X(FR_EOUTCOME, -32, "the connection broke before the outcome was known")

typedef enum {
#define FR_ERR_ENUM(name, val, msg) name = val,
    FR_ERRORS(FR_ERR_ENUM)
#undef FR_ERR_ENUM
} fr_err;

/* Where a load or parse failed and why. `source` is a file path (or a short
 * name such as "policy"), `line` is 0 when unknown. Fixed buffers: an
 * fr_error never needs freeing and can live on the stack. */
typedef struct fr_error {
    int code;
    int line;
    char source[512];
    char msg[1024];
} fr_error;

/* Returns the enum name of `code` ("FR_ENOMEM"), or "FR_EUNKNOWN". Static string. */
const char *fr_err_name(int code);

/* Returns a short human description of `code`. Static string. */
const char *fr_strerror(int code);

/* Fills `err` (may be NULL: then only returns `code`) with code, source,
 * line and a printf-formatted message. Returns `code`, so callers can write
 * `return fr_error_set(err, FR_EWORKFLOW, file, line, "...")`. */
int fr_error_set(fr_error *err, int code, const char *source, int line, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Formats `err` as "source:line: msg" (or "source: msg" without a line) into
 * `buf` of `size` bytes. Returns `buf`. */
const char *fr_error_format(const fr_error *err, char *buf, size_t size);
