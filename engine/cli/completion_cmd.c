/* `flowrun completion bash|zsh` and `flowrun man`, from the commands' help
 * texts (engine/cli/completion_cmd.h). */

#include "engine/cli/completion_cmd.h"

#include "engine/cli/cli.h"
#include "engine/util/mem.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_OPTS = 64, MAX_WORDS = 8 };

/* One option as a help text lists it: "  --out DIR   where ..." gives name
 * "--out", arg "DIR" and the description (its continuation lines joined). */
typedef struct opt {
    char name[48];
    char arg[32];
    char desc[400];
} opt;

/* What a command accepts: its options, the literal words of its synopsis
 * ("list", "show"; "bash", "zsh") and what its other arguments are. */
typedef struct cmd_info {
    const fr_cli_command_doc *doc;
    char *help; /* the whole help text, owned */
    opt opts[MAX_OPTS];
    size_t nopts;
    char words[MAX_WORDS][24];
    size_t nwords;
    bool lua_file, dir, command; /* WORKFLOW.lua, DIR, COMMAND */
} cmd_info;

/* A help text as a string (owned). */
static char *capture(void (*help)(FILE *f))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) { /* as the fr_x* allocators do */
        fputs("flowrun: out of memory\n", stderr);
        abort();
    }
    help(f);
    fclose(f);
    return text;
}

static void append(char *dst, size_t cap, const char *src, size_t n)
{
    size_t have = strlen(dst);
    if (have && have + 1 < cap)
        dst[have++] = ' ';
    if (n > cap - 1 - have)
        n = cap - 1 - have;
    memcpy(dst + have, src, n);
    dst[have + n] = '\0';
}

/* Adds the options of one help line "  -v, --verbose   same as ..." or
 * "  --out DIR   where ..." (`line`, `n` bytes, after its indent): each name
 * (a word from '-'), an argument after it when it starts with a capital
 * (DIR, NAME|FILE), ", " between names; then the description. Returns
 * the length of the names and arguments, the description's offset before
 * its spaces. */
static size_t add_options(cmd_info *ci, const char *line, size_t n)
{
    const char *p = line, *end = line + n;
    size_t from = ci->nopts;
    while (p < end && *p == '-' && ci->nopts < MAX_OPTS) {
        opt *o = &ci->opts[ci->nopts++];
        memset(o, 0, sizeof *o);
        size_t w = strcspn(p, " ,");
        if (w > (size_t)(end - p))
            w = (size_t)(end - p);
        append(o->name, sizeof o->name, p, w);
        p += w;
        if (p + 1 < end && *p == ' ' && isupper((unsigned char)p[1])) {
            size_t a = strcspn(p + 1, " ,");
            if (a > (size_t)(end - p - 1))
                a = (size_t)(end - p - 1);
            append(o->arg, sizeof o->arg, p + 1, a);
            p += 1 + a;
        }
        if (p + 1 < end && p[0] == ',' && p[1] == ' ')
            p += 2;
        else
            break;
    }
    size_t spec = (size_t)(p - line);
    while (p < end && *p == ' ')
        p++;
    for (size_t i = from; i < ci->nopts; i++)
        append(ci->opts[i].desc, sizeof ci->opts[i].desc, p, (size_t)(end - p));
    return spec;
}

/* Reads a command's options from its help and its argument words from its
 * synopsis. */
static void read_command(cmd_info *ci, const fr_cli_command_doc *doc)
{
    memset(ci, 0, sizeof *ci);
    ci->doc = doc;
    ci->help = capture(doc->help);
    /* The options of the last option line, [from, ci->nopts): a line that
     * is indented further continues their description. */
    size_t from = 0;
    bool in_opt = false;
    for (const char *line = ci->help; *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        if (n > 3 && strncmp(line, "  -", 3) == 0) {
            from = ci->nopts;
            add_options(ci, line + 2, n - 2);
            in_opt = true;
        } else if (in_opt && n > 10 && strncmp(line, "          ", 10) == 0) {
            const char *d = line;
            while (*d == ' ')
                d++;
            for (size_t i = from; i < ci->nopts; i++)
                append(ci->opts[i].desc, sizeof ci->opts[i].desc, d, (size_t)(line + n - d));
        } else {
            in_opt = false;
        }
        line = eol ? eol + 1 : line + n;
    }
    /* The synopsis: "flowrun policy list | flowrun policy show NAME". */
    const char *s = doc->synopsis;
    while (*s) {
        while (*s == ' ' || *s == '|')
            s++;
        size_t n = strcspn(s, " ");
        if (!n)
            break;
        char w[64] = "";
        append(w, sizeof w, s, n);
        s += n;
        /* "[DIR]" is an optional DIR; "[run]", "[options]" say nothing. */
        bool optional = w[0] == '[';
        char *word = w + optional;
        word[strcspn(word, "]")] = '\0';
        if (strcmp(word, "flowrun") == 0 || strcmp(word, doc->name) == 0 || word[0] == '-' ||
            (optional && islower((unsigned char)word[0])))
            continue;
        memmove(w, word, strlen(word) + 1);
        if (strstr(w, ".lua"))
            ci->lua_file = true;
        else if (strcmp(w, "DIR") == 0)
            ci->dir = true;
        else if (strcmp(w, "COMMAND") == 0)
            ci->command = true;
        else if (islower((unsigned char)w[0]))
            for (char *tok = strtok(w, "|"); tok && ci->nwords < MAX_WORDS; tok = strtok(NULL, "|"))
                snprintf(ci->words[ci->nwords++], sizeof ci->words[0], "%s", tok);
    }
}

static cmd_info *read_commands(const fr_cli_command_doc *cmds, size_t n)
{
    cmd_info *ci = fr_xcalloc(n, sizeof *ci);
    for (size_t i = 0; i < n; i++)
        read_command(&ci[i], &cmds[i]);
    return ci;
}

static void free_commands(cmd_info *ci, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ci[i].help);
    free(ci);
}

/* ---- bash: plain `complete -F`, no bash-completion package needed ---- */

static void bash_words(FILE *f, const cmd_info *ci, bool with_value)
{
    const char *sep = "";
    for (size_t i = 0; i < ci->nopts; i++)
        if (!with_value || ci->opts[i].arg[0]) {
            fprintf(f, "%s%s", sep, ci->opts[i].name);
            sep = " ";
        }
}

static void write_bash(FILE *f, const cmd_info *ci, size_t n)
{
    fputs("# bash completion for flowrun, printed by `flowrun completion bash` from the\n"
          "# commands' help. Load it with: source <(flowrun completion bash)\n"
          "_flowrun() {\n"
          "  local cur=${COMP_WORDS[COMP_CWORD]} prev=\"\" cmd=\"\" i\n"
          "  [ \"$COMP_CWORD\" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD-1]}\n"
          "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
          "    case ${COMP_WORDS[i]} in -*) ;; *) cmd=${COMP_WORDS[i]}; break ;; esac\n"
          "  done\n"
          "  local commands=\"",
          f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i ? " " : "", ci[i].doc->name);
    fputs("\"\n"
          "  # `flowrun WORKFLOW.lua [options]` is a run.\n"
          "  case \" $commands \" in *\" $cmd \"*) ;; *) [ -n \"$cmd\" ] && cmd=run ;; esac\n"
          "  local opts=\"\" valued=\"\" words=\"\" files=\"\" dirs=\"\" cmds=\"\"\n"
          "  case $cmd in\n",
          f);
    /* No command word yet: a command, or a workflow and a run's options. */
    for (size_t i = 0; i < n; i++)
        if (strcmp(ci[i].doc->name, "run") == 0) {
            fputs("  \"\")\n    opts=\"", f);
            bash_words(f, &ci[i], false);
            fputs("\"\n    valued=\"", f);
            bash_words(f, &ci[i], true);
            fputs("\"\n    words=$commands files=1 ;;\n", f);
        }
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %s)\n    opts=\"", ci[i].doc->name);
        bash_words(f, &ci[i], false);
        fputs("\"\n    valued=\"", f);
        bash_words(f, &ci[i], true);
        fputs("\"\n    words=\"", f);
        for (size_t w = 0; w < ci[i].nwords; w++)
            fprintf(f, "%s%s", w ? " " : "", ci[i].words[w]);
        fprintf(f, "\" files=%s dirs=%s cmds=%s ;;\n", ci[i].lua_file ? "1" : "\"\"",
                ci[i].dir ? "1" : "\"\"", ci[i].command ? "1" : "\"\"");
    }
    fputs("  esac\n"
          "  COMPREPLY=()\n"
          "  if [ -n \"$prev\" ] && [[ \" $valued \" == *\" $prev \"* ]]; then\n"
          "    case $prev in\n"
          "    --state | --out | --work-dir) COMPREPLY=($(compgen -d -- \"$cur\")) ;;\n"
          "    *) COMPREPLY=($(compgen -f -- \"$cur\")) ;;\n"
          "    esac\n"
          "    return 0\n"
          "  fi\n"
          "  if [[ $cur == -* ]]; then\n"
          "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
          "    return 0\n"
          "  fi\n"
          "  [ -n \"$cmds\" ] && words=$commands\n"
          "  COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
          "  if [ -n \"$files\" ]; then\n"
          "    COMPREPLY+=($(compgen -d -- \"$cur\") $(compgen -f -X '!*.lua' -- \"$cur\"))\n"
          "  elif [ -n \"$dirs\" ]; then\n"
          "    COMPREPLY+=($(compgen -d -- \"$cur\"))\n"
          "  fi\n"
          "  return 0\n"
          "}\n"
          "complete -F _flowrun flowrun\n",
          f);
}

/* ---- zsh: _arguments per command ---- */

/* Writes `s` inside a zsh single-quoted word, with `special` (the
 * characters the spec gives a meaning there) escaped by a backslash. */
static void zsh_quoted(FILE *f, const char *s, const char *special)
{
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else if (strchr(special, *s))
            fprintf(f, "\\%c", *s);
        else
            fputc(*s, f);
    }
}

static void write_zsh(FILE *f, const cmd_info *ci, size_t n)
{
    fputs("#compdef flowrun\n"
          "# zsh completion for flowrun, printed by `flowrun completion zsh` from the\n"
          "# commands' help. Install it as _flowrun in a folder of $fpath.\n"
          "_flowrun() {\n"
          "  local -a commands\n"
          "  commands=(\n",
          f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "    '%s:", ci[i].doc->name);
        zsh_quoted(f, ci[i].doc->summary, ":\\");
        fputs("'\n", f);
    }
    fputs("  )\n"
          "  if (( CURRENT == 2 )); then\n"
          "    _describe -t commands 'flowrun command' commands\n"
          "    _files -g '*.lua'\n"
          "    return\n"
          "  fi\n"
          "  local cmd=$words[2]\n"
          "  [[ -n ${(M)commands:#$cmd:*} ]] || cmd=run  # flowrun WORKFLOW.lua is a run\n"
          "  shift words\n"
          "  (( CURRENT-- ))\n"
          "  case $cmd in\n",
          f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "  %s)\n    _arguments -s", ci[i].doc->name);
        for (size_t o = 0; o < ci[i].nopts; o++) {
            const opt *op = &ci[i].opts[o];
            fprintf(f, " \\\n      '*%s[", op->name);
            zsh_quoted(f, op->desc, "[]\\");
            fputc(']', f);
            if (op->arg[0]) { /* a file, a folder, or a value to type */
                fputs(":", f);
                zsh_quoted(f, op->arg, ":\\");
                fputs(strcmp(op->arg, "DIR") == 0       ? ":_files -/"
                      : strstr(op->arg, "FILE") != NULL ? ":_files"
                                                        : ":",
                      f);
            }
            fputc('\'', f);
        }
        if (ci[i].nwords) {
            fputs(" \\\n      '1:argument:(", f);
            for (size_t w = 0; w < ci[i].nwords; w++)
                fprintf(f, "%s%s", w ? " " : "", ci[i].words[w]);
            fputs(")'", f);
        }
        if (ci[i].command) {
            fputs(" \\\n      '1:command:(", f);
            for (size_t c = 0; c < n; c++)
                fprintf(f, "%s%s", c ? " " : "", ci[c].doc->name);
            fputs(")'", f);
        }
        if (ci[i].lua_file)
            fputs(" \\\n      '*:workflow:_files -g \"*.lua\"'", f);
        else if (ci[i].dir)
            fputs(" \\\n      '1:folder:_files -/'", f);
        fputs(" ;;\n", f);
    }
    fputs("  esac\n"
          "}\n"
          "_flowrun \"$@\"\n",
          f);
}

void fr_cli_completion_help(FILE *f)
{
    fputs("Prints a completion script for bash or zsh, built from the commands and\n"
          "options `flowrun help` lists. bash: `source <(flowrun completion bash)` in\n"
          "~/.bashrc (plain bash is enough); zsh: `flowrun completion zsh > _flowrun` in\n"
          "a folder of $fpath. `cmake --install` installs both.\n"
          "\n"
          "options:\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 printed, 2 usage.\n"
          "Documentation: docs/cli.md (flowrun completion).\n",
          f);
}

int fr_cli_completion_main(int argc, char **argv, const fr_cli_command_doc *cmds, size_t n)
{
    if (argc != 3 || (strcmp(argv[2], "bash") != 0 && strcmp(argv[2], "zsh") != 0))
        return fr_cli_usage_error("completion: name a shell: flowrun completion bash|zsh%s", "");
    cmd_info *ci = read_commands(cmds, n);
    if (strcmp(argv[2], "bash") == 0)
        write_bash(stdout, ci, n);
    else
        write_zsh(stdout, ci, n);
    free_commands(ci, n);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : FR_EXIT_IOERR;
}

/* ---- the man page ---- */

/* Writes `s` (`len` bytes) as roff text: backslashes and dashes escaped, a
 * line never starting with a control character. */
static void roff(FILE *f, const char *s, size_t len)
{
    if (len && (s[0] == '.' || s[0] == '\''))
        fputs("\\&", f);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\\')
            fputs("\\e", f);
        else if (s[i] == '-')
            fputs("\\-", f);
        else
            fputc(s[i], f);
    }
}

static void roff_str(FILE *f, const char *s)
{
    roff(f, s, strlen(s));
}

/* A help text as roff: its option lines as tagged paragraphs, the rest as
 * filled text with a paragraph at each blank line. */
static void man_text(FILE *f, const char *text, bool skip_usage)
{
    bool in_opt = false, in_nf = false; /* an option's text; indented lines */
    cmd_info *scratch = fr_xcalloc(1, sizeof *scratch);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        const char *next = eol ? eol + 1 : line + n;
        if (skip_usage) { /* the usage lines, up to the first blank line */
            skip_usage = n != 0;
            line = next;
            continue;
        }
        bool option = n > 3 && strncmp(line, "  -", 3) == 0;
        bool indented = n > 0 && line[0] == ' ' && !option && !in_opt;
        if (in_nf && !indented) {
            fputs(".fi\n", f);
            in_nf = false;
        }
        if (n == 0) {
            fputs(".PP\n", f);
            in_opt = false;
        } else if (option) {
            const char *spec = line + 2;
            scratch->nopts = 0;
            const char *gap = spec + add_options(scratch, spec, n - 2);
            const char *desc = gap;
            while (desc < line + n && *desc == ' ')
                desc++;
            fputs(".TP\n.B ", f);
            roff(f, spec, (size_t)(gap - spec));
            fputc('\n', f);
            roff(f, desc, (size_t)(line + n - desc));
            fputc('\n', f);
            in_opt = true;
        } else {
            /* A list ("  run  run a workflow") keeps its lines; an option's
             * further lines and plain text are filled. */
            if (indented && !in_nf) {
                fputs(".nf\n", f);
                in_nf = true;
            }
            const char *d = line;
            while (!in_nf && *d == ' ')
                d++;
            roff(f, d, (size_t)(line + n - d));
            fputc('\n', f);
        }
        line = next;
    }
    if (in_nf)
        fputs(".fi\n", f);
    free(scratch);
}

void fr_cli_man_help(FILE *f)
{
    fputs("Prints the manual page flowrun(1) in roff, built from the help of every\n"
          "command: `flowrun man | man -l -`. `cmake --install` installs it.\n"
          "\n"
          "options:\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 printed, 2 usage.\n",
          f);
}

int fr_cli_man_main(int argc, char **argv, const fr_cli_command_doc *cmds, size_t n,
                    void (*overview)(FILE *f), const char *version)
{
    if (argc > 2)
        return fr_cli_usage_error("man: unexpected argument '%s'", argv[2]);
    FILE *f = stdout;
    fprintf(f, ".TH FLOWRUN 1 \"\" \"flowrun %s\" \"User Commands\"\n", version);
    fputs(".SH NAME\nflowrun \\- run the tasks of an LLM workflow as a parallel graph, local "
          "first, within budget caps\n.SH SYNOPSIS\n.nf\n",
          f);
    for (size_t i = 0; i < n; i++) {
        roff_str(f, cmds[i].synopsis);
        fputc('\n', f);
    }
    fputs(".fi\n.SH DESCRIPTION\n", f);
    char *text = capture(overview);
    man_text(f, text, true);
    free(text);
    fputs(".SH COMMANDS\n", f);
    for (size_t i = 0; i < n; i++) {
        fputs(".SS ", f);
        roff_str(f, cmds[i].name);
        fputs("\n.B ", f);
        roff_str(f, cmds[i].synopsis);
        fputs("\n.PP\n", f);
        roff_str(f, cmds[i].summary);
        fputs(".\n.PP\n", f);
        text = capture(cmds[i].help);
        man_text(f, text, false);
        free(text);
    }
    fputs(".SH ENVIRONMENT\n"
          ".TP\n.B NO_COLOR\nno colours in the summary\n"
          ".TP\n.B FLOWRUN_STATE\nthe state directory when \\-\\-state is not given\n"
          ".TP\n.B XDG_CONFIG_HOME\nflowrun/endpoints.lua under it is the last endpoints "
          "file looked for\n"
          ".TP\n.B XDG_CACHE_HOME\nflowrun/chunks under it (else ~/.cache/flowrun/chunks) "
          "keeps workflow files of 64 KiB or more compiled\n"
          ".TP\n.B FLOWRUN_CHUNK_CACHE\n0 keeps no workflow compiled\n"
          ".SH SEE ALSO\n"
          "The documentation under share/doc/flowrun: docs/cli.md, docs/dsl.md, "
          "docs/policies.md, docs/report.md, docs/editors.md.\n",
          f);
    return fflush(f) == 0 && !ferror(f) ? 0 : FR_EXIT_IOERR;
}
