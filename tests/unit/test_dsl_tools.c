/* Tests of tools in the workflow language (dsl/decl_tool, dsl/tool): every
 * field of mcp and tool blocks, tools on agents and tasks, max_turns,
 * max_tool_calls, cache and endpoint tools (with their defaults), every
 * load-time error with its file:line and did-you-mean, and Lua tools called
 * with arguments: a string, a table, a failure, an endless loop stopped by
 * the instruction limit. Workflows are written to a temporary folder. Runs
 * from the source root (CTest's working directory). */

#include "tests/unit/support/dsl_fixture.h"

#define EP "endpoint \"e\" { tier = \"local\", protocol = \"ollama\", model = \"m\" }\n"

static char g_dir[256];
static int g_seq;

static int setup_dir(void **state)
{
    setup_env(state);
    snprintf(g_dir, sizeof g_dir, "/tmp/flowrun-test-dsl-tools-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char *p = fr_xasprintf("%s/%s", g_dir, de->d_name);
        unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
    return 0;
}

/* Writes `text` (borrowed) to a fresh file in the temporary folder and
 * returns its path (owned). */
static char *write_wf(const char *text)
{
    char *path = fr_xasprintf("%s/wf%d.lua", g_dir, ++g_seq);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static fr_workflow *load_text(const char *text, const fr_load_opts *opts)
{
    char *path = write_wf(text);
    fr_workflow *wf = load_ok(path, opts);
    free(path);
    return wf;
}

static void test_mcp_fields(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_workflow *wf = load_text(
        EP "mcp \"fs\" { command = { \"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", "
           "\".\" },\n"
           "  env = { ZED = \"last\", ALPHA = \"first\", EMPTY = \"\" }, cwd = \"data\",\n"
           "  start_timeout = 12.5, timeout = 30 }\n"
           "mcp \"search\" { url = \"https://127.0.0.1:8931/mcp\",\n"
           "  headers_env = { Authorization = \"SEARCH_TOKEN\", [\"X-Team\"] = \"TEAM_ID\" } }\n"
           "mcp \"abs\" { command = { \"srv\" }, cwd = \"/srv/tools\" }\n"
           "agent \"a\" { tools = { \"fs.*\", \"search.find\" } }\n"
           "task \"t\" { agent = \"a\", prompt = \"p\" }\n",
        NULL);
    assert_int_equal(wf->nmcps, 3);
    const fr_mcp_spec *fs = &wf->mcps[fr_workflow_find_mcp(wf, "fs")];
    assert_int_equal(fs->line, 2);
    assert_string_equal(fs->file, wf->path);
    assert_int_equal(fs->ncommand, 4);
    assert_string_equal(fs->command[0], "npx");
    assert_string_equal(fs->command[3], ".");
    assert_int_equal(fs->nenv, 3); /* in name order, whatever Lua's hash order */
    assert_string_equal(fs->env[0], "ALPHA=first");
    assert_string_equal(fs->env[1], "EMPTY=");
    assert_string_equal(fs->env[2], "ZED=last");
    char *cwd = fr_xasprintf("%s/data", g_dir);
    assert_string_equal(fs->cwd, cwd);
    free(cwd);
    assert_null(fs->url);
    assert_int_equal(fs->nheaders, 0);
    assert_true(fs->start_timeout_s == 12.5 && fs->call_timeout_s == 30);

    const fr_mcp_spec *se = &wf->mcps[fr_workflow_find_mcp(wf, "search")];
    assert_null(se->command);
    assert_null(se->cwd);
    assert_string_equal(se->url, "https://127.0.0.1:8931/mcp");
    assert_int_equal(se->nheaders, 2);
    assert_string_equal(se->header_names[0], "Authorization");
    assert_string_equal(se->header_envs[0], "SEARCH_TOKEN");
    assert_string_equal(se->header_names[1], "X-Team");
    assert_string_equal(se->header_envs[1], "TEAM_ID");
    assert_true(se->start_timeout_s == 60 && se->call_timeout_s == 60); /* defaults */
    assert_int_equal(se->tier, FR_TIER_LOCAL);                          /* a loopback URL */
    assert_int_equal(fs->tier, FR_TIER_LOCAL);                          /* a child over stdio */

    assert_string_equal(wf->mcps[2].cwd, "/srv/tools"); /* absolute: as written */
    assert_int_equal(fr_workflow_find_mcp(wf, "nope"), -1);
    assert_int_equal(wf->tasks[0].ntools, 2);
    assert_string_equal(wf->tasks[0].tools[0], "fs.*");
    assert_string_equal(wf->tasks[0].tools[1], "search.find");
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

static void test_tool_fields(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_workflow *wf = load_text(
        EP "tool \"word_count\" {\n"
           "  description = \"Counts words\",\n"
           "  parameters = { type = \"object\", required = { \"text\" },\n"
           "                 properties = { text = { type = \"string\" } } },\n"
           "  run = function(args)\n"
           "    local n = 0\n"
           "    for _ in args.text:gmatch(\"%S+\") do n = n + 1 end\n"
           "    return n\n"
           "  end,\n"
           "  timeout = 5 }\n"
           "tool \"pytest\" { description = \"Runs the tests\",\n"
           "  parameters = { type = \"object\", properties = { path = { type = \"string\" } } },\n"
           "  command = { \"pytest\", \"-q\", \"{{args.path}}\", \"--tb=short\" },\n"
           "  cwd = \"src\", timeout = 120, output_cap = 1000 }\n"
           "tool \"date\" { description = \"Today\", command = { \"date\" } }\n"
           "agent \"a\" {}\n"
           "task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"word_count\", \"pytest\" } }\n",
        NULL);
    assert_int_equal(wf->ntools, 3);
    assert_int_equal(fr_workflow_find_tool(wf, "word_count"), 0);
    assert_int_equal(fr_workflow_find_tool(wf, "date"), 2);
    assert_int_equal(fr_workflow_find_tool(wf, "nope"), -1);
    const fr_tool_spec *wc = &wf->tools[0];
    assert_int_equal(wc->kind, FR_TOOL_LUA);
    assert_string_equal(wc->description, "Counts words");
    assert_int_equal(wc->line, 2);
    char *params = json_dumps(wc->parameters, JSON_COMPACT);
    assert_string_equal(params, "{\"properties\":{\"text\":{\"type\":\"string\"}},\"required\":"
                                "[\"text\"],\"type\":\"object\"}");
    free(params);
    assert_null(wc->command);
    assert_true(wc->timeout_s == 5);

    const fr_tool_spec *py = &wf->tools[1];
    assert_int_equal(py->kind, FR_TOOL_COMMAND);
    assert_int_equal(py->ncommand, 4);
    assert_string_equal(py->command[2], "{{args.path}}");
    char *cwd = fr_xasprintf("%s/src", g_dir);
    assert_string_equal(py->cwd, cwd);
    free(cwd);
    assert_true(py->timeout_s == 120);
    assert_int_equal(py->output_cap, 1000);

    const fr_tool_spec *date = &wf->tools[2];
    params = json_dumps(date->parameters, JSON_COMPACT);
    assert_string_equal(params, "{\"type\":\"object\"}"); /* the default */
    free(params);
    assert_null(date->cwd);
    assert_true(date->timeout_s == 60);
    assert_int_equal(date->output_cap, 65536);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

/* tools on agents and tasks, max_turns, max_tool_calls, cache, endpoint
 * tools: given, inherited from the workflow's defaults, and defaulted. */
/* A private task may use servers on this machine or ones its author
 * declared local; a task that is not private may use any. */
static void test_private_local_servers(void **state)
{
    (void)state;
    fr_workflow *wf =
        load_text(EP "mcp \"lab\" { url = \"http://10.0.0.5:8931/mcp\", tier = \"local\" }\n"
                     "mcp \"near\" { url = \"http://localhost:8931/mcp\" }\n"
                     "mcp \"six\" { url = \"http://[::1]:8931/mcp\" }\n"
                     "mcp \"web\" { url = \"https://search.example.com/mcp\" }\n"
                     "agent \"a\" {}\n"
                     "task \"s\" { agent = \"a\", private = true, tools = { \"lab.*\", \"near.x\", "
                     "\"six.y\" }, prompt = \"p\" }\n"
                     "task \"o\" { agent = \"a\", tools = { \"web.find\" }, prompt = \"p\" }\n",
                  NULL);
    assert_int_equal(wf->mcps[fr_workflow_find_mcp(wf, "lab")].tier, FR_TIER_LOCAL);
    assert_int_equal(wf->mcps[fr_workflow_find_mcp(wf, "near")].tier, FR_TIER_LOCAL);
    assert_int_equal(wf->mcps[fr_workflow_find_mcp(wf, "six")].tier, FR_TIER_LOCAL);
    assert_int_equal(wf->mcps[fr_workflow_find_mcp(wf, "web")].tier, FR_TIER_CLOUD);
    fr_workflow_free(wf);
}

static void test_task_fields(void **state)
{
    (void)state;
    fr_workflow *wf = load_text(
        EP "endpoint \"dumb\" { tier = \"local\", protocol = \"ollama\", model = \"m\", "
           "tools = false }\n"
           "tool \"x\" { description = \"d\", run = function() return \"\" end }\n"
           "tool \"y\" { description = \"d\", run = function() return \"\" end }\n"
           "agent \"a\" { tools = { \"x\", \"y\" } }\n"
           "agent \"plain\" {}\n"
           "task \"inherit\" { agent = \"a\", prompt = \"p\" }\n"
           "task \"own\" { agent = \"a\", prompt = \"p\", tools = { \"y\" }, max_turns = 3,\n"
           "  max_tool_calls = 7, cache = false }\n"
           "task \"none\" { agent = \"a\", prompt = \"p\", tools = {}, cache = true,\n"
           "  endpoint = \"dumb\" }\n"
           "task \"bare\" { agent = \"plain\", prompt = \"p\" }\n",
        NULL);
#define T(name) (&wf->tasks[fr_workflow_find_task(wf, name)])
    assert_int_equal(T("inherit")->ntools, 2); /* the agent's */
    assert_string_equal(T("inherit")->tools[1], "y");
    assert_int_equal(T("own")->ntools, 1); /* replaces the agent's */
    assert_string_equal(T("own")->tools[0], "y");
    assert_int_equal(T("own")->max_turns, 3);
    assert_int_equal(T("own")->max_tool_calls, 7);
    assert_true(T("own")->no_cache);
    assert_null(T("none")->tools); /* {} means none, not the agent's */
    assert_int_equal(T("none")->ntools, 0);
    assert_false(T("none")->no_cache);
    assert_null(T("bare")->tools);
    assert_int_equal(T("bare")->max_turns, 10);
    assert_int_equal(T("bare")->max_tool_calls, 50);
    assert_false(T("bare")->no_cache);
    assert_int_equal(wf->agents[0].ntools, 2);
    assert_true(wf->endpoints[fr_workflow_find_endpoint(wf, "e")].tools);
    assert_false(wf->endpoints[fr_workflow_find_endpoint(wf, "dumb")].tools);
    fr_workflow_free(wf);

    wf = load_text(EP "workflow { defaults = { max_turns = 4, max_tool_calls = 9 } }\n"
                      "agent \"a\" {}\n"
                      "task \"d\" { agent = \"a\", prompt = \"p\" }\n"
                      "task \"o\" { agent = \"a\", prompt = \"p\", max_turns = 100, "
                      "max_tool_calls = 1000 }\n",
                   NULL);
    assert_int_equal(T("d")->max_turns, 4);
    assert_int_equal(T("d")->max_tool_calls, 9);
    assert_int_equal(T("o")->max_turns, 100);
    assert_int_equal(T("o")->max_tool_calls, 1000);
#undef T
    fr_workflow_free(wf);

    /* An endpoints file says tools = false too. */
    char *eps = fr_xasprintf("%s/endpoints-tools.lua", g_dir);
    FILE *f = fopen(eps, "w");
    assert_non_null(f);
    fputs("endpoint \"old\" { tier = \"local\", protocol = \"ollama\", model = \"m\", tools = "
          "false }\n",
          f);
    fclose(f);
    fr_load_opts o = {.endpoints_path = eps};
    wf = load_text(EP "agent \"a\" {}\ntask \"t\" { agent = \"a\", prompt = \"p\" }\n", &o);
    assert_false(wf->endpoints[fr_workflow_find_endpoint(wf, "old")].tools);
    assert_true(wf->endpoints[fr_workflow_find_endpoint(wf, "e")].tools);
    fr_workflow_free(wf);
    free(eps);
}

typedef struct bad_case {
    const char *text; /* after EP and the agent on line 2 */
    int line;
    const char *expect[3];
} bad_case;

/* Every load-time error of the tools: the code, the line, the words. */
static void test_errors(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    static const bad_case cases[] = {
        /* names */
        {"mcp \"1fs\" { command = { \"x\" } }",
         3,
         {"invalid mcp name '1fs'", "start with a letter"}},
        {"tool \"a.b\" { description = \"d\", command = { \"x\" } }",
         3,
         {"invalid tool name 'a.b'", "a dot names an MCP server's tool"}},
        {"mcp \"fs\" { command = { \"x\" } }\nmcp \"fs\" { command = { \"y\" } }",
         4,
         {"duplicate mcp 'fs' (first declared at", ":3)"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" } }\n"
         "tool \"t\" { description = \"d\", command = { \"x\" } }",
         4,
         {"duplicate tool 't'"}},
        {"mcp \"fs\" { command = { \"x\" } }\ntool \"fs\" { description = \"d\", command = { "
         "\"x\" } }",
         4,
         {"tool 'fs' has the name of the MCP server declared at", ":3"}},
        {"tool \"fs\" { description = \"d\", command = { \"x\" } }\nmcp \"fs\" { command = { "
         "\"x\" } }",
         4,
         {"mcp 'fs' has the name of the tool declared at"}},
        /* unknown fields */
        {"mcp \"fs\" { comand = { \"x\" } }",
         3,
         {"unknown field 'comand' in mcp server 'fs'", "did you mean 'command'?"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, ouput_cap = 1 }",
         3,
         {"unknown field 'ouput_cap' in tool 't'", "did you mean 'output_cap'?"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", max_turn = 2 }",
         3,
         {"unknown field 'max_turn' in task 't'", "did you mean 'max_turns'?"}},
        /* mcp */
        {"mcp \"fs\" { }", 3, {"mcp server 'fs': missing 'command' or 'url'"}},
        {"mcp \"fs\" { command = { \"x\" }, url = \"http://h/mcp\" }",
         3,
         {"give either 'command'", "not both"}},
        {"mcp \"fs\" { url = \"ftp://h/mcp\" }",
         3,
         {"field 'url' must be a URL starting with http:// or https://, got 'ftp://h/mcp'"}},
        {"mcp \"fs\" { url = \"http://u:pw@h/mcp\" }", 3, {"carries a credential", "headers_env"}},
        {"mcp \"fs\" { url = \"http://h/mcp\", headers_env = { Authorization = \"Bearer "
         "abc123\" } }",
         3,
         {"field 'headers_env.Authorization' must be the NAME of an environment variable"}},
        {"mcp \"fs\" { url = \"http://h/mcp\", headers_env = { Authorization = "
         "\"sk-live-0123456789\" } }",
         3,
         {"not a value"}},
        {"mcp \"fs\" { url = \"http://h/mcp\", headers_env = { [\"Bad Header\"] = \"V\" } }",
         3,
         {"'Bad Header', which is not an HTTP header name"}},
        {"mcp \"fs\" { url = \"http://h/mcp\", cwd = \"x\" }",
         3,
         {"field 'cwd' applies to servers started with 'command' only"}},
        {"mcp \"fs\" { command = { \"x\" }, headers_env = { A = \"B\" } }",
         3,
         {"field 'headers_env' applies to servers reached by 'url' only"}},
        {"mcp \"fs\" { command = { \"x\" }, env = { [\"1X\"] = \"v\" } }",
         3,
         {"'1X', which is not an environment variable name"}},
        {"mcp \"fs\" { command = { \"x\" }, env = { X = 1 } }",
         3,
         {"field 'env.X' must be a string, got number"}},
        {"mcp \"fs\" { command = {} }", 3, {"field 'command' must not be empty"}},
        {"mcp \"fs\" { command = { \"x\" }, timeout = 0 }",
         3,
         {"field 'timeout' must be a number of seconds > 0, got 0"}},
        {"mcp \"fs\" { command = { \"x\" }, start_timeout = \"1\" }",
         3,
         {"field 'start_timeout' must be a number of seconds > 0, got string"}},
        /* tool */
        {"tool \"t\" { command = { \"x\" } }",
         3,
         {"tool 't': missing required field 'description'"}},
        {"tool \"t\" { description = \"d\" }", 3, {"missing 'run' or 'command'"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, run = function() end }",
         3,
         {"give either 'run' (a Lua function) or 'command', not both"}},
        {"tool \"t\" { description = \"d\", run = \"x\" }",
         3,
         {"field 'run' must be a function of the arguments, got string"}},
        {"tool \"t\" { description = \"d\", run = function() end, cwd = \"x\" }",
         3,
         {"field 'cwd' applies to command tools only"}},
        {"tool \"t\" { description = \"d\", command = { \"{{args.p}}\" },\n"
         "  parameters = { type = \"object\", properties = { p = { type = \"string\" } } } }",
         3,
         {"item 1 '{{args.p}}' must be a literal program"}},
        {"tool \"t\" { description = \"d\", command = { \"ls\", \"--dir={{args.p}}\" },\n"
         "  parameters = { type = \"object\", properties = { p = { type = \"string\" } } } }",
         3,
         {"item 2 '--dir={{args.p}}'", "must be exactly \"{{args.NAME}}\""}},
        {"tool \"t\" { description = \"d\", command = { \"ls\", \"{{ args.p }}\" },\n"
         "  parameters = { type = \"object\", properties = { p = { type = \"string\" } } } }",
         3,
         {"item 2 '{{ args.p }}'", "must be exactly"}},
        {"tool \"t\" { description = \"d\", command = { \"pytest\", \"{{args.pth}}\" },\n"
         "  parameters = { type = \"object\", properties = { path = { type = \"string\" } } } }",
         3,
         {"item 2 '{{args.pth}}' names 'pth', which is not a property", "did you mean 'path'?"}},
        {"tool \"t\" { description = \"d\", command = { \"ls\", \"{{args.x}}\" } }",
         3,
         {"names 'x', which is not a property of the tool's parameters"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, parameters = { type = "
         "\"string\" } }",
         3,
         {"field 'parameters' must be an object schema"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, parameters = { type = "
         "\"object\", properties = { a = { anyOf = {} } } } }",
         3,
         {"field 'parameters' is not a valid JSON Schema", "anyOf"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, parameters = { type = "
         "\"object\", f = function() end } }",
         3,
         {"field 'parameters' cannot be converted to JSON"}},
        {"tool \"t\" { description = \"d\", command = { \"x\" }, output_cap = 0 }",
         3,
         {"field 'output_cap' must be an integer number of bytes from 1"}},
        /* tools, max_turns, max_tool_calls, cache, endpoint tools */
        {"tool \"word_count\" { description = \"d\", run = function() end }\n"
         "task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"word_cont\" } }",
         4,
         {"task 't': field 'tools' names unknown tool 'word_cont'", "did you mean 'word_count'?"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"grep\" } }",
         3,
         {"unknown tool 'grep' (declare it with tool \"NAME\""}},
        {"mcp \"fs\" { command = { \"x\" } }\n"
         "task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fss.read_file\" } }",
         4,
         {"names 'fss.read_file', but no MCP server 'fss' is declared", "did you mean 'fs'?"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fs.*\" } }",
         3,
         {"no MCP server 'fs' is declared (declare it with mcp"}},
        {"mcp \"fs\" { command = { \"x\" } }\n"
         "task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fs\" } }",
         4,
         {"names 'fs', which is an MCP server, not a tool", "'fs.*'"}},
        {"mcp \"fs\" { command = { \"x\" } }\n"
         "task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fs.*\", \"fs.*\" } }",
         4,
         {"field 'tools' lists 'fs.*' twice"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fs.read*\" } }",
         3,
         {"'fs.read*' is not a tool pattern", "'*' stands alone"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"fs.\" } }",
         3,
         {"'fs.' is not a tool pattern"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = { \"*\" } }",
         3,
         {"'*' is not a tool pattern"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", tools = \"fs.*\" }",
         3,
         {"field 'tools' must be an array of strings"}},
        {"agent \"b\" { tools = { \"nope\" } }\ntask \"t\" { agent = \"b\", prompt = \"p\" }",
         3,
         {"agent 'b': field 'tools' names unknown tool 'nope'"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", max_turns = 0 }",
         3,
         {"field 'max_turns' must be an integer from 1 to 100, got 0"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", max_turns = 101 }",
         3,
         {"field 'max_turns' must be an integer from 1 to 100, got 101"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", max_tool_calls = 1001 }",
         3,
         {"field 'max_tool_calls' must be an integer from 1 to 1000, got 1001"}},
        {"workflow { defaults = { max_tool_calls = 0 } }\ntask \"t\" { agent = \"a\", prompt = "
         "\"p\" }",
         3,
         {"workflow: field 'defaults.max_tool_calls' must be an integer from 1 to 1000"}},
        {"task \"t\" { agent = \"a\", prompt = \"p\", cache = \"no\" }",
         3,
         {"field 'cache' must be a boolean"}},
        {"endpoint \"x\" { tier = \"local\", protocol = \"ollama\", model = \"m\", tools = "
         "false }\n"
         "tool \"y\" { description = \"d\", run = function() end }\n"
         "agent \"b\" { tools = { \"y\" } }\n"
         "task \"t\" { agent = \"b\", prompt = \"p\", endpoint = \"x\" }",
         6,
         {"task 't' has tools but is pinned to endpoint 'x' (", ":3), which says tools = false"}},
        /* privacy follows the data: a private task's calls stay on this machine */
        {"mcp \"web\" { url = \"https://search.example.com/mcp\" }\n"
         "agent \"b\" {}\n"
         "task \"s\" { agent = \"b\", private = true, prompt = \"p\" }\n"
         "task \"t\" { agent = \"b\", deps = { \"s\" }, tools = { \"web.find\" }, prompt = "
         "\"{{s}}\" }",
         6,
         {"task 't' (private: inherited from 's') may use 'web.find', a tool of MCP server 'web'",
          "not on this machine", "tier = \"local\""}},
        {"mcp \"web\" { url = \"http://10.0.0.5/mcp\", tier = \"lab\" }",
         3,
         {"field 'tier'", "\"local\" or \"cloud\""}},
        {"endpoint \"x\" { tier = \"local\", protocol = \"ollama\", model = \"m\", tools = 0 }",
         3,
         {"endpoint 'x': field 'tools' must be a boolean"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *bc = &cases[i];
        char *text = fr_xasprintf(EP "agent \"a\" {}\n%s\n%s", bc->text,
                                  strstr(bc->text, "task \"") ? ""
                                                              : "task \"z\" { agent = \"a\", "
                                                                "prompt = \"p\" }\n");
        char *path = write_wf(text);
        fr_error err;
        int rc = load_err(path, NULL, &err);
        char buf[2048];
        fr_error_format(&err, buf, sizeof buf);
        if (rc != FR_EWORKFLOW || err.line != bc->line || strcmp(err.source, path) != 0)
            print_error("case %zu: %s line %d: %s\n", i, fr_err_name(rc), err.line, buf);
        assert_int_equal(rc, FR_EWORKFLOW);
        assert_int_equal(err.line, bc->line);
        assert_string_equal(err.source, path);
        for (size_t k = 0; k < 3 && bc->expect[k]; k++) {
            if (!strstr(err.msg, bc->expect[k]))
                print_error("case %zu: message lacks \"%s\": %s\n", i, bc->expect[k], buf);
            assert_non_null(strstr(err.msg, bc->expect[k]));
        }
        /* Nothing the header names is ever echoed from a value. */
        assert_null(strstr(err.msg, "abc123"));
        assert_null(strstr(err.msg, "sk-live"));
        free(path);
        free(text);
    }
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

/* mcp and tool are workflow declarations: an endpoints file has neither. */
static void test_not_in_endpoints_file(void **state)
{
    (void)state;
    char *eps = fr_xasprintf("%s/endpoints-mcp.lua", g_dir);
    FILE *f = fopen(eps, "w");
    assert_non_null(f);
    fputs(EP "mcp \"fs\" { command = { \"x\" } }\n", f);
    fclose(f);
    fr_load_opts o = {.endpoints_path = eps};
    char *path = write_wf(EP "agent \"a\" {}\ntask \"t\" { agent = \"a\", prompt = \"p\" }\n");
    fr_error err;
    assert_int_equal(load_err(path, &o, &err), FR_ECONFIG);
    assert_string_equal(err.source, eps);
    assert_int_equal(err.line, 2);
    free(path);
    free(eps);
}

static const char *const tools_wf =
    EP "agent \"a\" {}\n"
       "task \"t\" { agent = \"a\", prompt = \"p\" }\n"
       "tool \"echo\" { description = \"d\",\n" /* 4 */
       "  parameters = { type = \"object\", properties = { text = { type = \"string\" } } },\n"
       "  run = function(args) return \"got \" .. args.text end }\n"
       "tool \"stats\" { description = \"d\", run = function(args)\n" /* 7 */
       "  return { n = #args.items, first = args.items[1], nested = { ok = true },\n"
       "           list = { 1, 2, 3 }, empty = {} } end }\n"
       "tool \"fails\" { description = \"d\", run = function(args)\n" /* 10 */
       "  return nil, \"no such file: \" .. args.path end }\n"
       "tool \"raises\" { description = \"d\", run = function(args)\n" /* 12 */
       "  local x = nil\n"
       "  return x.field end }\n"                                     /* 14 */
       "tool \"spins\" { description = \"d\", run = function(args)\n" /* 15 */
       "  while true do end\n"
       "end }\n"
       "tool \"spins_pcall\" { description = \"d\", run = function(args)\n" /* 18 */
       "  pcall(function() while true do end end)\n"
       "  return \"escaped\" end }\n"
       "tool \"count\" { description = \"d\", run = function(args) return 42 end }\n" /* 21 */
       "tool \"nothing\" { description = \"d\", run = function(args) end }\n"
       "tool \"bad_table\" { description = \"d\", run = function(args)\n" /* 23 */
       "  return { f = print } end }\n"
       "tool \"bad_text\" { description = \"d\", run = function(args) return \"\\xff\" end }\n"
       "tool \"no_args\" { description = \"d\", run = function(args)\n" /* 26 */
       "  return type(args) .. \" \" .. tostring(next(args)) end }\n"
       "tool \"cmd\" { description = \"d\", command = { \"true\" } }\n";

static int call(fr_workflow *wf, const char *tool, const char *args_json, char **out, fr_error *err)
{
    json_t *args = args_json ? json_loads(args_json, 0, NULL) : NULL;
    assert_true(!args_json || args);
    memset(err, 0, sizeof *err);
    long i = fr_workflow_find_tool(wf, tool);
    assert_true(i >= 0);
    int rc = fr_workflow_call_tool(wf, (size_t)i, args, out, err);
    json_decref(args);
    return rc;
}

static void test_call_tool(void **state)
{
    (void)state;
    long refs0 = fr_sandbox_live_refs();
    fr_lua_limits lim = {.instructions = 200000};
    fr_load_opts o = {.limits = &lim};
    fr_workflow *wf = load_text(tools_wf, &o);
    char *out = NULL;
    fr_error err;

    assert_int_equal(call(wf, "echo", "{\"text\":\"hello\"}", &out, &err), FR_OK);
    assert_string_equal(out, "got hello");
    free(out);

    assert_int_equal(call(wf, "stats", "{\"items\":[\"a\",\"b\"]}", &out, &err), FR_OK);
    assert_string_equal(out, "{\"empty\":{},\"first\":\"a\",\"list\":[1,2,3],\"n\":2,"
                             "\"nested\":{\"ok\":true}}");
    free(out);

    assert_int_equal(call(wf, "count", "{}", &out, &err), FR_OK);
    assert_string_equal(out, "42");
    free(out);

    assert_int_equal(call(wf, "no_args", NULL, &out, &err), FR_OK);
    assert_string_equal(out, "table nil"); /* no arguments: an empty table */
    free(out);

    assert_int_equal(call(wf, "fails", "{\"path\":\"a.txt\"}", &out, &err), FR_ELUA);
    assert_null(out);
    assert_string_equal(err.source, wf->path);
    assert_int_equal(err.line, 10);
    assert_string_equal(err.msg, "tool 'fails' failed: no such file: a.txt");

    assert_int_equal(call(wf, "raises", "{}", &out, &err), FR_ELUA);
    assert_string_equal(err.source, wf->path);
    assert_int_equal(err.line, 14);
    assert_non_null(strstr(err.msg, "tool 'raises': "));
    assert_non_null(strstr(err.msg, "attempt to index"));

    assert_int_equal(call(wf, "spins", "{}", &out, &err), FR_ELIMIT);
    assert_string_equal(err.source, wf->path);
    assert_int_equal(err.line, 16);
    assert_non_null(strstr(err.msg, "tool 'spins': instruction limit exceeded"));

    assert_int_equal(call(wf, "spins_pcall", "{}", &out, &err), FR_ELIMIT);
    assert_null(out);
    assert_non_null(strstr(err.msg, "instruction limit exceeded"));

    assert_int_equal(call(wf, "nothing", "{}", &out, &err), FR_ELUA);
    assert_int_equal(err.line, 22);
    assert_non_null(strstr(err.msg, "tool 'nothing' returned nothing"));

    assert_int_equal(call(wf, "bad_table", "{}", &out, &err), FR_ELUA);
    assert_int_equal(err.line, 23);
    assert_non_null(strstr(err.msg, "returned a table with no JSON form: f: "));

    assert_int_equal(call(wf, "bad_text", "{}", &out, &err), FR_ELUA);
    assert_non_null(strstr(err.msg, "a result must be UTF-8 text"));

    /* The state still works after every failure. */
    assert_int_equal(call(wf, "echo", "{\"text\":\"again\"}", &out, &err), FR_OK);
    assert_string_equal(out, "got again");
    free(out);

    /* A command tool or an index out of range is no Lua tool. */
    assert_int_equal(call(wf, "cmd", "{}", &out, &err), FR_EINVAL);
    assert_int_equal(fr_workflow_call_tool(wf, wf->ntools, NULL, &out, &err), FR_EINVAL);
    assert_null(out);
    fr_workflow_free(wf);
    assert_int_equal(fr_sandbox_live_refs(), refs0);
}

/* A run function that allocates without end stops at the memory limit. */
static void test_call_tool_memory(void **state)
{
    (void)state;
    fr_lua_limits lim = {.mem_bytes = 4 << 20};
    fr_load_opts o = {.limits = &lim};
    fr_workflow *wf = load_text(EP "agent \"a\" {}\ntask \"t\" { agent = \"a\", prompt = \"p\" }\n"
                                   "tool \"hog\" { description = \"d\", run = function(args)\n"
                                   "  local t = {}\n"
                                   "  for i = 1, 1e9 do t[i] = string.rep(\"x\", 100) .. i end\n"
                                   "end }\n",
                                &o);
    char *out = NULL;
    fr_error err;
    assert_int_equal(call(wf, "hog", "{}", &out, &err), FR_ELIMIT);
    assert_null(out);
    assert_non_null(strstr(err.msg, "tool 'hog': memory limit exceeded"));
    assert_int_equal(err.line, 6); /* the line that was allocating */
    fr_workflow_free(wf);
}

/* Every memory budget either loads a workflow with tools or fails cleanly
 * with FR_ELIMIT, leaking nothing (run under valgrind). */
static void twelve_tools(const fr_workflow *wf)
{
    assert_int_equal(wf->ntools, 12);
}

static void test_memory_budget_sweep(void **state)
{
    (void)state;
    char *path = write_wf(tools_wf);
    dsl_memory_sweep(path, 8 << 10, 320 << 10, 4 << 10, twelve_tools);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mcp_fields),
        cmocka_unit_test(test_tool_fields),
        cmocka_unit_test(test_task_fields),
        cmocka_unit_test(test_private_local_servers),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_not_in_endpoints_file),
        cmocka_unit_test(test_call_tool),
        cmocka_unit_test(test_call_tool_memory),
        cmocka_unit_test(test_memory_budget_sweep),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
