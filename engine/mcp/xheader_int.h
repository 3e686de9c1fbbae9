#pragma once
/* Tool parameters mirrored into HTTP headers (the 2026-07-28 revision's
 * x-mcp-header, SEP-2243): which tools declare them validly (a client
 * must leave out a tool that does not), and the Mcp-Param-* lines of one
 * call. Pure functions; used by mcp.c when it lists tools and calls them
 * over Streamable HTTP. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Returns whether every x-mcp-header of `input_schema` (borrowed) is valid:
 * a non-empty header-name token, on a string, integer or boolean property,
 * unique regardless of case. Else fills `why` (size `n`) and returns false. */
bool fr_mcp_xheader_valid(const json_t *input_schema, char *why, size_t n);

/* Returns the number of "Mcp-Param-<Name>: <value>" lines for a call with
 * `args` (borrowed) and fills *out (owned array of owned strings; free
 * each and the array). A value outside printable ASCII, with spaces at
 * either end, or empty, is sent as =?base64?...?=; null and absent ones are left
 * out. */
size_t fr_mcp_xheader_lines(const json_t *input_schema, const json_t *args, char ***out);
