/* `flowrun init`: a new project's files (engine/cli/init_cmd.h). */

#include "engine/cli/init_cmd.h"

#include "dsl/policy.h"
#include "engine/cli/cli.h"
#include "engine/cli/defs_cmd.h"
#include "engine/util/err.h"
#include "engine/util/fs.h"
#include "engine/util/mem.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The policy the project gets a copy of. */
#define INIT_POLICY "balanced"

static const char workflow_lua[] =
    "-- A starter workflow (written by `flowrun init`): a small coding pipeline.\n"
    "-- A design first, then the code and its tests in parallel, then a review.\n"
    "--\n"
    "--   flowrun plan workflow.lua      # what a run would do; sends nothing\n"
    "--   flowrun workflow.lua --sim     # a rehearsal on the built-in simulator\n"
    "--   flowrun workflow.lua --var idea=\"a CSV to JSON converter\"\n"
    "--\n"
    "-- Run it from this folder: the endpoints are in ./endpoints.lua, the\n"
    "-- routing policy is ./policy.lua (a copy of the built-in " INIT_POLICY ").\n"
    "-- With .luarc.json an editor running lua-language-server completes and\n"
    "-- checks every field (docs/editors.md).\n"
    "\n"
    "workflow {\n"
    "  name = \"starter\",\n"
    "  policy = \"policy.lua\",\n"
    "  budget = { usd = 0.25, alert = 0.8 },\n"
    "  defaults = { timeout = 300, retries = 2, max_tokens = 1024 },\n"
    "  vars = { idea = \"a command-line tool that counts the words of a file\" },\n"
    "}\n"
    "\n"
    "agent \"architect\" {\n"
    "  system = \"You are a senior software architect. Be concrete and brief.\",\n"
    "  type = \"architecture\",\n"
    "}\n"
    "agent \"coder\" { system = \"You write small, tested functions in C.\", type = \"code\" }\n"
    "agent \"reviewer\" { system = \"You review code for bugs and unclear names.\", type = "
    "\"review\" }\n"
    "\n"
    "task \"design\" {\n"
    "  agent = \"architect\", complexity = 0.7, priority = 8,\n"
    "  prompt = \"Design {{var.idea}}. List the functions and what each does.\",\n"
    "}\n"
    "task \"code\" {\n"
    "  agent = \"coder\", deps = { \"design\" }, complexity = 0.5,\n"
    "  prompt = \"Implement this design in C:\\n\\n{{design}}\",\n"
    "}\n"
    "task \"tests\" {\n"
    "  agent = \"coder\", deps = { \"design\" }, complexity = 0.4,\n"
    "  prompt = \"Write unit tests for the functions of this design:\\n\\n{{design}}\",\n"
    "}\n"
    "task \"review\" {\n"
    "  agent = \"reviewer\", deps = { \"code\", \"tests\" }, complexity = 0.6,\n"
    "  prompt = function(ctx)\n"
    "    return \"Review this code and its tests.\\n\\nCode:\\n\" .. ctx.code.text ..\n"
    "           \"\\n\\nTests:\\n\" .. ctx.tests.text\n"
    "  end,\n"
    "}\n";

static const char endpoints_lua[] =
    "-- Endpoints (written by `flowrun init`): a local Ollama and one cloud\n"
    "-- endpoint. flowrun reads ./endpoints.lua, else --endpoints FILE, else\n"
    "-- $XDG_CONFIG_HOME/flowrun/endpoints.lua. Routine work stays local; the\n"
    "-- policy sends hard work and overflow to the cloud, within the budget.\n"
    "\n"
    "-- `ollama pull qwen2.5-coder:7b` first; OLLAMA_HOST moves the URL.\n"
    "endpoint \"ollama\" {\n"
    "  tier = \"local\", protocol = \"ollama\", url = \"http://127.0.0.1:11434\",\n"
    "  model = \"qwen2.5-coder:7b\", max_parallel = 1, context = 32768, quality = 0.55,\n"
    "  tags = { \"code\", \"review\" },\n"
    "}\n"
    "\n"
    "-- The key is read from the environment variable named here\n"
    "-- (export OPENROUTER_API_KEY=...); never write a key into this file.\n"
    "endpoint \"cloud\" {\n"
    "  tier = \"cloud\", protocol = \"openai\", url = \"https://openrouter.ai/api/v1\",\n"
    "  model = \"deepseek/deepseek-chat\", api_key_env = \"OPENROUTER_API_KEY\",\n"
    "  max_parallel = 4, quality = 0.85, price = { input = 0.27, output = 1.10 },\n"
    "}\n"
    "\n"
    "-- The report compares the spend against sending everything here.\n"
    "baseline \"cloud\"\n";

static const char luarc_json[] =
    "{\n"
    "  \"$schema\": \"https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/"
    "schema.json\",\n"
    "  \"runtime\": { \"version\": \"Lua 5.4\" },\n"
    "  \"workspace\": { \"library\": [\".luals\"], \"checkThirdParty\": false },\n"
    "  \"diagnostics\": { \"disable\": [\"lowercase-global\"] }\n"
    "}\n";

enum { F_WORKFLOW, F_ENDPOINTS, F_POLICY, F_LUARC, F_DEFS, NFILES };
static const char *const names[NFILES] = {"workflow.lua", "endpoints.lua", "policy.lua",
                                          ".luarc.json", ".luals/flowrun.d.lua"};

void fr_cli_init_help(FILE *f)
{
    fputs("Starts a project in DIR (default: the current folder): workflow.lua, a\n"
          "small coding pipeline that rehearses with --sim; endpoints.lua, a local\n"
          "Ollama and one cloud endpoint whose key comes from an environment variable;\n"
          "policy.lua, a copy of the built-in " INIT_POLICY " policy to edit; and, for an\n"
          "editor with lua-language-server, .luals/flowrun.d.lua (flowrun defs) and a\n"
          ".luarc.json pointing at it. An existing file is never overwritten unless\n"
          "--force is given; then `cd DIR && flowrun workflow.lua --sim`.\n"
          "\n"
          "options:\n"
          "  --force               overwrite files that exist\n"
          "  -h, --help            this help\n"
          "\n"
          "exit codes: 0 written, 2 usage or a file exists (without --force), 74 cannot\n"
          "write.\n"
          "Documentation: docs/cli.md (flowrun init), docs/editors.md.\n",
          f);
}

/* The built-in policy with the LuaLS annotation above its `return {`, so an
 * editor checks and completes it too. Owned by the caller. */
static char *policy_copy(void)
{
    const fr_policy_builtin *b = fr_policy_builtin_find(INIT_POLICY);
    const char *src = b ? b->source : "return { route = function(task, c, run) end }\n";
    size_t len = b ? b->len : strlen(src);
    const char *ret = strstr(src, "\nreturn {");
    if (!ret)
        return fr_xasprintf("---@type flowrun.Policy\n%.*s", (int)len, src);
    int head = (int)(ret - src) + 1;
    return fr_xasprintf("%.*s---@type flowrun.Policy\n%.*s", head, src, (int)len - head,
                        src + head);
}

/* Writes `text` (or, when NULL, the definitions) to `path`; 0 or -1 with
 * the reason printed. */
static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    bool ok = f != NULL;
    if (ok) {
        if (text)
            fputs(text, f);
        else
            fr_defs_write(f);
        ok = !ferror(f);
        ok = fclose(f) == 0 && ok;
    }
    if (!ok)
        fprintf(stderr, "flowrun: init: cannot write %s: %s\n", path,
                strerror(errno ? errno : EIO));
    return ok ? 0 : -1;
}

int fr_cli_init_main(int argc, char **argv)
{
    const char *dir = NULL;
    bool force = false;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            force = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return fr_cli_usage_error("init: unknown option '%s'", argv[i]);
        else if (!dir)
            dir = argv[i];
        else
            return fr_cli_usage_error("init: unexpected argument '%s' (one folder)", argv[i]);
    }
    char *paths[NFILES] = {0};
    char *policy = NULL, *luals = NULL;
    int code = 0;
    for (size_t i = 0; i < NFILES; i++)
        paths[i] = dir ? fr_xasprintf("%s/%s", dir, names[i]) : fr_xstrdup(names[i]);
    /* Every file is checked before any is written: a refusal writes nothing. */
    for (size_t i = 0; i < NFILES && !force; i++)
        if (access(paths[i], F_OK) == 0) {
            fprintf(stderr,
                    "flowrun: init: %s exists; nothing was written (--force overwrites it, "
                    "or give another folder: flowrun init DIR)\n",
                    paths[i]);
            code = FR_EXIT_USAGE;
            goto cleanup;
        }
    fr_error err = {0};
    char msg[1600];
    luals = dir ? fr_xasprintf("%s/.luals", dir) : fr_xstrdup(".luals");
    if (fr_mkdir_p(luals, 0777, &err) != FR_OK) {
        fprintf(stderr, "flowrun: init: %s\n", fr_error_format(&err, msg, sizeof msg));
        code = FR_EXIT_IOERR;
        goto cleanup;
    }
    policy = policy_copy();
    const char *texts[NFILES] = {workflow_lua, endpoints_lua, policy, luarc_json, NULL};
    for (size_t i = 0; i < NFILES; i++) {
        if (write_file(paths[i], texts[i]) != 0) {
            code = FR_EXIT_IOERR;
            goto cleanup;
        }
        printf("wrote %s\n", paths[i]);
    }
    printf("next: %s%s%sflowrun workflow.lua --sim (a rehearsal: nothing is sent, nothing spent)\n",
           dir ? "cd " : "", dir ? dir : "", dir ? " && " : "");
cleanup:
    for (size_t i = 0; i < NFILES; i++)
        free(paths[i]);
    free(policy);
    free(luals);
    return code;
}
