/* The DSL's documentation as data (dsl/fields.h). */

#include "dsl/fields.h"

#include "dsl/fields_def.h"

#define N(a)         (sizeof(a) / sizeof *(a))
#define ROW(n, t, d) {n, t, d},

static const fr_field_doc workflow_doc[] = {FR_WORKFLOW_FIELDS(ROW)};
static const fr_field_doc budget_doc[] = {FR_BUDGET_FIELDS(ROW)};
static const fr_field_doc defaults_doc[] = {FR_DEFAULTS_FIELDS(ROW)};
static const fr_field_doc agent_doc[] = {FR_AGENT_FIELDS(ROW)};
static const fr_field_doc task_doc[] = {FR_TASK_FIELDS(ROW)};
static const fr_field_doc endpoint_doc[] = {FR_ENDPOINT_FIELDS(ROW)};
static const fr_field_doc price_doc[] = {FR_PRICE_FIELDS(ROW)};
static const fr_field_doc timeouts_doc[] = {FR_TIMEOUTS_FIELDS(ROW)};
static const fr_field_doc mcp_doc[] = {FR_MCP_FIELDS(ROW)};
static const fr_field_doc tool_doc[] = {FR_TOOL_FIELDS(ROW)};
static const fr_field_doc ptask_doc[] = {FR_POLICY_TASK_FIELDS(ROW)};
static const fr_field_doc pcand_doc[] = {FR_POLICY_CANDIDATE_FIELDS(ROW)};
static const fr_field_doc prun_doc[] = {FR_POLICY_RUN_FIELDS(ROW)};
static const fr_field_doc phist_doc[] = {FR_POLICY_HISTORY_FIELDS(ROW)};
static const fr_field_doc presult_doc[] = {FR_POLICY_RESULT_FIELDS(ROW)};
static const fr_field_doc ptokens_doc[] = {FR_POLICY_TOKENS_FIELDS(ROW)};

/* What a prompt, condition or check function reads (dsl/prompt.c). */
static const fr_field_doc ctx_doc[] = {
    {"var", "table<string, string>", "the workflow's variables"},
    {"item", "any", "in a fan-out's instance: its item"},
    {"index", "integer", "in a fan-out's instance: its index, from 1"},
    {"[string]", "flowrun.Output", "a dependency's output, by task name"},
};
static const fr_field_doc output_doc[] = {
    {"text", "string", "the text output"},
    {"json", "any", "the JSON output of a task with a schema (a Lua table)"},
    {"status", "flowrun.Status", "how the task ended"},
    {"reason", "string", "why it did not succeed (\"\" when it did)"},
};
static const fr_field_doc policy_doc[] = {
    {"route",
     "fun(task: flowrun.PolicyTask, candidates: flowrun.Candidate[], run: flowrun.RunState): "
     "flowrun.Candidate|string|nil, string|nil",
     "picks a candidate (or its name) for the task, or nil to wait; a second value "
     "explains the decision, for --explain (required)"},
    {"on_result",
     "fun(task: flowrun.PolicyTask, result: flowrun.Result, run: flowrun.RunState): "
     "\"accept\"|\"retry\"|\"escalate\"|nil",
     "judges a reply that passed the task's gates"},
};

static const fr_field_doc aliases[] = {
    {"flowrun.Status", "\"ok\"|\"failed\"|\"skipped\"|\"budget\"|\"cancelled\"",
     "how a task ended"},
    {"flowrun.Reason",
     "\"first\"|\"error\"|\"quality\"|\"truncated\"|\"refused\"|\"tool_call\"|\"no_answer\"|"
     "\"budget\"",
     "why route is asked for a task"},
};

/* A table the author writes (its fields optional unless "(required)"),
 * or one flowrun hands a function (every field present). */
#define CLASS(name, desc, rows)                                                                    \
    {                                                                                              \
        name, desc, rows, N(rows), 1                                                               \
    }
#define GIVEN(name, desc, rows)                                                                    \
    {                                                                                              \
        name, desc, rows, N(rows), 0                                                               \
    }

static const fr_class_doc classes[] = {
    CLASS("flowrun.Workflow", "workflow { ... }: the run's name, policy, caps and defaults",
          workflow_doc),
    CLASS("flowrun.Budget", "workflow { budget = { ... } }", budget_doc),
    CLASS("flowrun.Defaults", "workflow { defaults = { ... } }", defaults_doc),
    CLASS("flowrun.Endpoint", "endpoint \"name\" { ... }: a model server flowrun may send to",
          endpoint_doc),
    CLASS("flowrun.Price", "endpoint { price = { ... } }", price_doc),
    CLASS("flowrun.Timeouts", "endpoint { timeouts = { ... } }", timeouts_doc),
    CLASS("flowrun.Agent", "agent \"name\" { ... }: a role its tasks share", agent_doc),
    CLASS("flowrun.Task", "task \"name\" { ... }: one model call in the graph", task_doc),
    CLASS("flowrun.Mcp", "mcp \"name\" { ... }: an MCP server, over stdio (command) or HTTP (url)",
          mcp_doc),
    CLASS("flowrun.Tool", "tool \"name\" { ... }: a Lua function (run) or a command", tool_doc),
    GIVEN("flowrun.PolicyTask", "route's and on_result's task argument (a copy)", ptask_doc),
    GIVEN("flowrun.Candidate", "one of route's candidates: an endpoint this task may use",
          pcand_doc),
    GIVEN("flowrun.History", "a candidate's routing history: what it did with such tasks",
          phist_doc),
    GIVEN("flowrun.RunState", "route's and on_result's run argument", prun_doc),
    GIVEN("flowrun.Result", "on_result's result: a reply that passed the task's gates",
          presult_doc),
    GIVEN("flowrun.Tokens", "a result's tokens", ptokens_doc),
    GIVEN("flowrun.Ctx", "what a prompt, when or check function receives", ctx_doc),
    GIVEN("flowrun.Output", "a dependency's output in ctx", output_doc),
    CLASS("flowrun.Policy", "what a policy file returns: return { route = ..., on_result = ... }",
          policy_doc),
};

static const fr_decl_doc decls[] = {
    {"workflow", FR_DECL_TABLE, "flowrun.Workflow",
     "Declares the workflow's settings (once per file)."},
    {"endpoint", FR_DECL_NAMED, "flowrun.Endpoint",
     "Declares an endpoint (here or in an endpoints file)."},
    {"baseline", FR_DECL_NAME_ONLY, NULL,
     "Names the endpoint the report compares the spend against."},
    {"agent", FR_DECL_NAMED, "flowrun.Agent", "Declares an agent: a system prompt, a type, tools."},
    {"task", FR_DECL_NAMED, "flowrun.Task",
     "Declares a task: a prompt for an agent, with its deps."},
    {"mcp", FR_DECL_NAMED, "flowrun.Mcp",
     "Declares an MCP server whose tools tasks may call (\"name.tool\")."},
    {"tool", FR_DECL_NAMED, "flowrun.Tool", "Declares a tool tasks may call."},
};

const fr_class_doc *fr_dsl_classes(size_t *n)
{
    *n = N(classes);
    return classes;
}

const fr_decl_doc *fr_dsl_decls(size_t *n)
{
    *n = N(decls);
    return decls;
}

const fr_field_doc *fr_dsl_aliases(size_t *n)
{
    *n = N(aliases);
    return aliases;
}
