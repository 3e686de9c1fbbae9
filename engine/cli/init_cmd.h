#pragma once
/* `flowrun init [DIR] [--force]`: a new project in DIR (default the current
 * folder): a starter workflow (a small coding pipeline that rehearses with
 * --sim), an endpoints file (a local Ollama and one cloud endpoint, its key
 * from an environment variable), a copy of the built-in balanced policy,
 * the LuaLS definitions (.luals/flowrun.d.lua, from engine/cli/defs_cmd) and
 * a .luarc.json pointing an editor's lua-language-server at them. Refuses to
 * overwrite a file unless --force. Used by engine/main.c. */

#include <stdio.h>

/* The help of `flowrun init`, on `f` (borrowed). */
void fr_cli_init_help(FILE *f);

/* flowrun init (argv[1] is "init"): writes the files and says which on
 * stdout. Returns the exit code (0, 2 usage or a file exists, 74 cannot
 * write). */
int fr_cli_init_main(int argc, char **argv);
