#pragma once
/* `flowrun defs`: the LuaLS definitions (a `---@meta` file) of the DSL, the
 * policies' arguments included, printed from dsl/fields.h's tables so they
 * cannot drift from what the loader accepts. lua/flowrun.d.lua is a copy
 * (tests/e2e/defs.sh checks it is current); `flowrun init` writes one into
 * a new project. Used by engine/main.c and engine/cli/init_cmd. */

#include <stdio.h>

/* Writes the definitions to `f` (borrowed). 0, or -1 when a write failed. */
int fr_defs_write(FILE *f);

/* The help of `flowrun defs`, on `f` (borrowed). */
void fr_cli_defs_help(FILE *f);

/* flowrun defs (argv[1] is "defs"): prints the definitions on stdout.
 * Returns the exit code. */
int fr_cli_defs_main(int argc, char **argv);
