#pragma once
/* `flowrun mcp`: flowrun as an MCP server over stdio or Streamable HTTP
 * (--http ADDR:PORT): its options, loop, signals and transport around the
 * core of engine/mcpd/. Used by engine/main.c. */

#include <stdio.h>

/* Prints the command's help to `f`. */
void fr_cli_mcp_help(FILE *f);

/* Runs the server on argv (argv[1] is "mcp") until its input ends or a
 * signal stops it; returns the exit code. */
int fr_cli_mcp_main(int argc, char **argv);
