#pragma once
/* `flowrun endpoints [WORKFLOW.lua] [--check] [--probe] [--json]`: lists the
 * endpoints a run would have (the workflow's merged with the endpoints
 * files exactly as the run merges them) and, with --check, asks each one
 * at once (engine/probe) whether it is usable. Used by engine/main.c. */

#include <stdio.h>

/* Prints the command's help to `f`. */
void fr_cli_endpoints_help(FILE *f);

/* Runs the command on argv (argv[1] is "endpoints"); returns the exit code:
 * 0 listed (and, with --check, every endpoint usable), 1 an endpoint is
 * unusable, 2 usage, 65 invalid workflow, 78 configuration error. */
int fr_cli_endpoints_main(int argc, char **argv);
