#pragma once
/* `flowrun tools WORKFLOW.lua [--json]`: starts the workflow's MCP servers,
 * lists every tool its agents may use, stops them. Used by engine/main.c. */

#include <stdio.h>

/* Prints the command's help to `f`. */
void fr_cli_tools_help(FILE *f);

/* Runs the command on argv (argv[1] is "tools"); returns the exit code. */
int fr_cli_tools_main(int argc, char **argv);
