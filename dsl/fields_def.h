#pragma once
/* The DSL's fields, one table per declaration and sub-table: each row
 * F(name, type, description) gives a field's name, its type in LuaLS
 * annotation syntax and a one-line description. dsl/decl.c builds the
 * lists of known fields it checks declarations against from these rows
 * (the names only), and dsl/fields.c the documentation `flowrun defs`
 * prints (lua/flowrun.d.lua), so a field added here is both accepted and
 * documented. The policy arguments' rows (route's task, candidates and run,
 * on_result's result) describe what engine/route.c hands a policy; the
 * e2e test defs.sh checks a running policy sees exactly these keys. */

#define FR_WORKFLOW_FIELDS(F)                                                                      \
    F("name", "string", "shown in the report (default: the file's base name)")                     \
    F("policy", "string",                                                                          \
      "a built-in policy name or a path to a .lua policy, relative to the workflow file "          \
      "(default \"balanced\")")                                                                    \
    F("budget", "flowrun.Budget", "the spending caps")                                             \
    F("defaults", "flowrun.Defaults", "values every task takes unless it sets its own")            \
    F("vars", "table<string, string|number>", "values for {{var.name}}; --var name=value overrides")

#define FR_BUDGET_FIELDS(F)                                                                        \
    F("usd", "number", "cap on the run's spend in USD; 0 lets only free work run")                 \
    F("alert", "number", "fraction 0..1 of a cap at which to warn (default 0.8)")                  \
    F("monthly_usd", "number", "monthly cap in USD, read from the ledger in the state store")      \
    F("daily_usd", "number", "cap in USD per UTC day, read from the ledger in the state store")    \
    F("allow_unpriced", "boolean", "let a cloud endpoint without a price be used under a cap")

#define FR_DEFAULTS_FIELDS(F)                                                                      \
    F("timeout", "number", "task timeout in seconds, retries included (default 300)")              \
    F("retries", "integer", "retries per endpoint after the first attempt (default 2)")            \
    F("max_tokens", "integer", "output cap per request (default 2048)")                            \
    F("temperature", "number", "sampling temperature 0..2 (default 0.2)")                          \
    F("max_turns", "integer", "model turns in a task's tool loop, 1..100 (default 10)")            \
    F("max_tool_calls", "integer", "tool calls in a task's whole tool loop, 1..1000 (default 50)")

#define FR_AGENT_FIELDS(F)                                                                         \
    F("system", "string", "the system prompt sent with every task of this agent")                  \
    F("type", "string", "the kind of work (code, review, ...); its tasks inherit it")              \
    F("private", "boolean", "every task of this agent is private: local endpoints only")           \
    F("tools", "string[]", "tool patterns its tasks may call: \"word_count\", \"fs.*\"")

#define FR_TASK_FIELDS(F)                                                                          \
    F("agent", "string", "the agent's name (required)")                                            \
    F("prompt", "string|fun(ctx: flowrun.Ctx): string",                                            \
      "a template with {{placeholders}}, or a function of ctx returning the prompt (required)")    \
    F("deps", "string[]", "tasks that must succeed first (or end first: see trigger)")             \
    F("complexity", "number", "0..1, a routing hint: how strong a model the task needs (0.5)")     \
    F("type", "string", "the kind of work (default: the agent's)")                                 \
    F("priority", "integer", "1..10, higher runs first among ready tasks (default 5)")             \
    F("private", "boolean", "never sent to a cloud endpoint; its dependents are private too")      \
    F("timeout", "number", "seconds from the first dispatch, retries included")                    \
    F("retries", "integer", "retries per endpoint after the first attempt, 0..100")                \
    F("max_tokens", "integer", "output cap per request")                                           \
    F("temperature", "number", "sampling temperature 0..2")                                        \
    F("budget", "number", "cap in USD for this task; 0 lets it run only on free endpoints")        \
    F("schema", "table|\"json\"",                                                                  \
      "a JSON Schema the reply must match (or \"json\": any JSON object)")                         \
    F("check", "fun(text: string, json: any, ctx: flowrun.Ctx): number|false, string?",            \
      "scores the output 0..1, or returns false and a reason")                                     \
    F("min_quality", "number", "the lowest acceptable check score, 0..1 (needs check)")            \
    F("approve", "boolean", "a human checkpoint: dependents wait until its output is approved")    \
    F("save", "string", "also write the output here, relative to the workflow's folder")           \
    F("endpoint", "string", "pin the task to this endpoint")                                       \
    F("tier", "\"local\"|\"cloud\"", "pin the task to a tier")                                     \
    F("seed", "integer", "sampling seed (OpenAI-compatible and Ollama)")                           \
    F("declassify", "boolean", "inherit no privacy from the dependencies (explicit decision)")     \
    F("allow_truncated", "boolean", "accept a reply cut at max_tokens as the output")              \
    F("tools", "string[]", "tool patterns this task may call; replaces the agent's ({}: none)")    \
    F("max_turns", "integer", "model turns in the tool loop, 1..100")                              \
    F("max_tool_calls", "integer", "tool calls in the whole tool loop, 1..1000")                   \
    F("cache", "boolean", "false: never answered from the result cache nor written to it")         \
    F("trigger", "\"all_ok\"|\"all_done\"|\"any_failed\"",                                         \
      "when the task runs given how its deps ended (default \"all_ok\")")                          \
    F("when", "string|fun(ctx: flowrun.Ctx): boolean",                                             \
      "a condition, a function or a placeholder expression; false skips the task")                 \
    F("foreach", "string", "a fan-out: \"dep.json\" or \"dep.json.path\", one instance per item")  \
    F("name", "string", "with foreach: each instance's name, a template over {{item}}, {{index}}") \
    F("max_items", "integer", "with foreach: a longer list fails the fan-out, 1..10000 (100)")     \
    F("plan_items", "integer", "with foreach: how many instances flowrun plan estimates")

#define FR_ENDPOINT_FIELDS(F)                                                                      \
    F("tier", "\"local\"|\"cloud\"",                                                               \
      "local endpoints are yours; private work only runs there (required)")                        \
    F("protocol", "\"openai\"|\"ollama\"|\"anthropic\"", "the wire protocol (default \"openai\")") \
    F("url", "string", "the base URL, e.g. http://127.0.0.1:8000/v1")                              \
    F("model", "string", "the model name sent in requests (required)")                             \
    F("api_key_env", "string", "the name of the environment variable holding the key")             \
    F("max_parallel", "integer", "requests in flight at once (default 1 local, 4 cloud)")          \
    F("shared", "boolean",                                                                         \
      "false: max_parallel holds for this process only, not for all sharing the state store")      \
    F("context", "integer", "the context window in tokens")                                        \
    F("quality", "number", "0..1, a prior for policies: how strong the model is (0.5)")            \
    F("tags", "string[]", "for policies, e.g. the task types it is good at")                       \
    F("price", "flowrun.Price", "USD per million tokens")                                          \
    F("stream", "boolean", "stream replies (default true)")                                        \
    F("timeouts", "flowrun.Timeouts", "the request timeouts in seconds")                           \
    F("keep_alive", "string|number", "Ollama: how long the model stays loaded (\"5m\", seconds)")  \
    F("max_tokens_field", "\"max_tokens\"|\"max_completion_tokens\"",                              \
      "OpenAI-compatible: the request field carrying max_tokens")                                  \
    F("tools", "boolean", "false for a model that cannot call tools")

#define FR_PRICE_FIELDS(F)                                                                         \
    F("input", "number", "USD per million input tokens")                                           \
    F("output", "number", "USD per million output tokens")                                         \
    F("cached_input", "number", "USD per million cached input tokens")

#define FR_TIMEOUTS_FIELDS(F)                                                                      \
    F("connect", "number", "seconds to connect (default 10)")                                      \
    F("first_byte", "number", "seconds to the first byte of the reply")                            \
    F("idle", "number", "seconds without a byte while streaming (default 60)")                     \
    F("attempt", "number", "seconds for one whole attempt")

#define FR_MCP_FIELDS(F)                                                                           \
    F("command", "string[]", "the server's argv, started over stdio (never through a shell)")      \
    F("env", "table<string, string>", "added to the server's environment (command only)")          \
    F("cwd", "string", "the server's working directory, relative to the workflow's folder")        \
    F("url", "string", "a server over Streamable HTTP")                                            \
    F("headers_env", "table<string, string>",                                                      \
      "headers sent to a url server, each value read from the named environment variable")         \
    F("start_timeout", "number", "seconds to start, handshake and list the tools (default 60)")    \
    F("timeout", "number", "seconds for one tool call (default 60)")                               \
    F("tier", "\"local\"|\"cloud\"", "where what a call sends goes")

#define FR_TOOL_FIELDS(F)                                                                          \
    F("description", "string", "what the model reads about the tool (required)")                   \
    F("parameters", "table", "a JSON Schema of the arguments, an object schema")                   \
    F("run", "fun(args: table): any", "a Lua tool: called with the model's arguments")             \
    F("command", "string[]", "a command tool's argv; \"{{args.NAME}}\" becomes one whole item")    \
    F("cwd", "string", "the command's working directory, relative to the workflow's folder")       \
    F("timeout", "number", "seconds for one call (default 60)")                                    \
    F("output_cap", "integer", "bytes of stdout and stderr kept (default 65536)")

/* What a policy receives (docs/policies.md). */
#define FR_POLICY_TASK_FIELDS(F)                                                                   \
    F("name", "string", "the task's name")                                                         \
    F("agent", "string", "its agent")                                                              \
    F("type", "string?", "its kind of work")                                                       \
    F("complexity", "number", "0..1: how strong a model the task needs")                           \
    F("priority", "integer", "1..10")                                                              \
    F("private", "boolean", "the task may only run locally (already enforced)")                    \
    F("attempt", "integer", "1 for the first attempt")                                             \
    F("reason", "flowrun.Reason", "why route is asked")                                            \
    F("tried", "string[]", "the endpoints that already failed this task")                          \
    F("est_input_tokens", "integer", "the estimated prompt size")                                  \
    F("max_tokens", "integer", "the reply's cap")                                                  \
    F("tools", "integer", "how many tools the task may call (0 for none)")                         \
    F("draw", "number",                                                                            \
      "0..1, drawn for this attempt of this task from run.seed: the same seed, the same draws")

#define FR_POLICY_CANDIDATE_FIELDS(F)                                                              \
    F("name", "string", "the endpoint's name")                                                     \
    F("tier", "\"local\"|\"cloud\"", "its tier")                                                   \
    F("protocol", "\"openai\"|\"ollama\"|\"anthropic\"", "its wire protocol")                      \
    F("model", "string", "its model")                                                              \
    F("in_flight", "integer", "requests running")                                                  \
    F("max_parallel", "integer", "slots")                                                          \
    F("free", "integer", "free slots")                                                             \
    F("queued", "integer", "ready tasks ahead of this one waiting for this endpoint")              \
    F("quality", "number", "0..1, the prior from the endpoint's declaration")                      \
    F("price_in", "number", "USD per million input tokens")                                        \
    F("price_out", "number", "USD per million output tokens")                                      \
    F("est_cost", "number", "the worst case for this task in USD")                                 \
    F("latency_p50", "number?", "the median latency in ms, nil until it has answered")             \
    F("tags", "string[]", "the endpoint's tags")                                                   \
    F("context", "integer", "the context window in tokens")                                        \
    F("history", "flowrun.History", "its record for this task's type and complexity band")         \
    F("history_all", "flowrun.History", "its record over every type and band")

/* A candidate's routing history (docs/policies.md, The routing history). */
#define FR_POLICY_HISTORY_FIELDS(F)                                                                \
    F("attempts", "integer", "gated attempts (passes + fails)")                                    \
    F("passes", "integer", "replies that passed every gate")                                       \
    F("fails", "integer", "replies that failed a gate or did not finish")                          \
    F("errors", "integer", "attempts without a reply (error, timeout)")                            \
    F("weight", "number", "the decayed evidence: sum of 2^(-age/30 days) over gated attempts")     \
    F("pass_rate", "number?", "decayed passes / decayed attempts, nil without evidence")           \
    F("score_mean", "number?", "the mean check score, nil when none")                              \
    F("latency_p50_ms", "number?", "the median latency of the replies, nil when none")             \
    F("ttft_p50_ms", "number?", "the median time to first content, nil when none")                 \
    F("tokens_per_s", "number?", "output tokens per second of reply, nil when none")               \
    F("cost_mean_usd", "number?", "the mean cost per attempt, nil when none")                      \
    F("age_s", "number?", "seconds since the newest evidence, nil when none")                      \
    F("band_lo", "number", "the complexity band's low end (0 in history_all)")                     \
    F("band_hi", "number", "the band's high end (1 in history_all)")                               \
    F("type", "string?", "the task type (\"-\" for none; nil in history_all)")                     \
    F("p_pass", "number?",                                                                         \
      "adaptive's p(pass) estimate for this task (its constants), nil in history_all")             \
    F("p_pass_n", "integer?",                                                                      \
      "the attempts behind p_pass (attempts when pass_rate is set, else 0), nil in history_all")

#define FR_POLICY_RUN_FIELDS(F)                                                                    \
    F("budget", "number?", "the run cap in USD, nil when there is none")                           \
    F("spent", "number", "USD spent so far")                                                       \
    F("reserved", "number", "USD reserved by attempts in flight")                                  \
    F("remaining", "number?", "USD left under the cap, nil without a budget")                      \
    F("elapsed", "number", "seconds since the run started")                                        \
    F("done", "integer", "tasks ended")                                                            \
    F("total", "integer", "tasks in the run")                                                      \
    F("ready", "integer", "ready tasks waiting for an endpoint (in route, this one included)")     \
    F("seed", "integer", "--seed, else derived from the run id: for reproducible exploration")

#define FR_POLICY_RESULT_FIELDS(F)                                                                 \
    F("endpoint", "string", "the endpoint that answered")                                          \
    F("tier", "\"local\"|\"cloud\"", "its tier")                                                   \
    F("text", "string", "the reply")                                                               \
    F("json", "any", "the parsed reply of a task with a schema, else nil")                         \
    F("latency_ms", "number", "the attempt's latency")                                             \
    F("tokens", "flowrun.Tokens", "the tokens used")                                               \
    F("cost_usd", "number", "what the attempt cost")                                               \
    F("attempt", "integer", "the attempt's number")

#define FR_POLICY_TOKENS_FIELDS(F)                                                                 \
    F("input", "integer", "input tokens")                                                          \
    F("output", "integer", "output tokens")
