#pragma once
/* `flowrun completion bash|zsh` and `flowrun man`: the shell completion
 * scripts and the manual page flowrun(1), all built from the commands'
 * table and help texts that `flowrun help` prints (the options are read
 * from each command's help), so none can drift from --help. The build
 * writes them beside the binary and `cmake --install` installs them.
 * Used by engine/main.c, which hands over its table. */

#include <stddef.h>
#include <stdio.h>

/* One command as `flowrun help` shows it (all borrowed, static). */
typedef struct fr_cli_command_doc {
    const char *name;
    const char *synopsis;
    const char *summary;
    void (*help)(FILE *f);
} fr_cli_command_doc;

/* The help texts of both commands, on `f` (borrowed). */
void fr_cli_completion_help(FILE *f);
void fr_cli_man_help(FILE *f);

/* flowrun completion bash|zsh (argv[1] is "completion"): prints the script
 * for the `n` commands `cmds` (borrowed). Returns the exit code. */
int fr_cli_completion_main(int argc, char **argv, const fr_cli_command_doc *cmds, size_t n);

/* flowrun man (argv[1] is "man"): prints flowrun(1) in roff for the `n`
 * commands `cmds` (borrowed), its description from `overview` (what
 * `flowrun --help` prints) and `version`. Returns the exit code. */
int fr_cli_man_main(int argc, char **argv, const fr_cli_command_doc *cmds, size_t n,
                    void (*overview)(FILE *f), const char *version);
