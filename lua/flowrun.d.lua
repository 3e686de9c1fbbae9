---@meta flowrun
-- flowrun's DSL for lua-language-server (LuaLS): workflow files, endpoints
-- files and routing policies. Printed by `flowrun defs` from the tables that
-- define the DSL's fields (dsl/fields_def.h); do not edit. Point .luarc.json's
-- workspace.library at the folder holding it (`flowrun init` does).
-- A policy file: `---@type flowrun.Policy` above its `return { ... }`.

---how a task ended
---@alias flowrun.Status "ok"|"failed"|"skipped"|"budget"|"cancelled"

---why route is asked for a task
---@alias flowrun.Reason "first"|"error"|"quality"|"truncated"|"refused"|"tool_call"|"no_answer"|"budget"

---workflow { ... }: the run's name, policy, caps and defaults
---@class flowrun.Workflow
---@field name? string shown in the report (default: the file's base name)
---@field policy? string a built-in policy name or a path to a .lua policy, relative to the workflow file (default "balanced")
---@field budget? flowrun.Budget the spending caps
---@field defaults? flowrun.Defaults values every task takes unless it sets its own
---@field vars? table<string, string|number> values for {{var.name}}; --var name=value overrides

---workflow { budget = { ... } }
---@class flowrun.Budget
---@field usd? number cap on the run's spend in USD; 0 lets only free work run
---@field alert? number fraction 0..1 of a cap at which to warn (default 0.8)
---@field monthly_usd? number monthly cap in USD, read from the ledger in the state store
---@field daily_usd? number cap in USD per UTC day, read from the ledger in the state store
---@field allow_unpriced? boolean let a cloud endpoint without a price be used under a cap

---workflow { defaults = { ... } }
---@class flowrun.Defaults
---@field timeout? number task timeout in seconds, retries included (default 300)
---@field retries? integer retries per endpoint after the first attempt (default 2)
---@field max_tokens? integer output cap per request (default 2048)
---@field temperature? number sampling temperature 0..2 (default 0.2)
---@field max_turns? integer model turns in a task's tool loop, 1..100 (default 10)
---@field max_tool_calls? integer tool calls in a task's whole tool loop, 1..1000 (default 50)

---endpoint "name" { ... }: a model server flowrun may send to
---@class flowrun.Endpoint
---@field tier "local"|"cloud" local endpoints are yours; private work only runs there (required)
---@field protocol? "openai"|"ollama"|"anthropic" the wire protocol (default "openai")
---@field url? string the base URL, e.g. http://127.0.0.1:8000/v1
---@field model string the model name sent in requests (required)
---@field api_key_env? string the name of the environment variable holding the key
---@field max_parallel? integer requests in flight at once (default 1 local, 4 cloud)
---@field shared? boolean false: max_parallel holds for this process only, not for all sharing the state store
---@field context? integer the context window in tokens
---@field quality? number 0..1, a prior for policies: how strong the model is (0.5)
---@field tags? string[] for policies, e.g. the task types it is good at
---@field price? flowrun.Price USD per million tokens
---@field stream? boolean stream replies (default true)
---@field timeouts? flowrun.Timeouts the request timeouts in seconds
---@field keep_alive? string|number Ollama: how long the model stays loaded ("5m", seconds)
---@field max_tokens_field? "max_tokens"|"max_completion_tokens" OpenAI-compatible: the request field carrying max_tokens
---@field tools? boolean false for a model that cannot call tools

---endpoint { price = { ... } }
---@class flowrun.Price
---@field input? number USD per million input tokens
---@field output? number USD per million output tokens
---@field cached_input? number USD per million cached input tokens

---endpoint { timeouts = { ... } }
---@class flowrun.Timeouts
---@field connect? number seconds to connect (default 10)
---@field first_byte? number seconds to the first byte of the reply
---@field idle? number seconds without a byte while streaming (default 60)
---@field attempt? number seconds for one whole attempt

---agent "name" { ... }: a role its tasks share
---@class flowrun.Agent
---@field system? string the system prompt sent with every task of this agent
---@field type? string the kind of work (code, review, ...); its tasks inherit it
---@field private? boolean every task of this agent is private: local endpoints only
---@field tools? string[] tool patterns its tasks may call: "word_count", "fs.*"

---task "name" { ... }: one model call in the graph
---@class flowrun.Task
---@field agent string the agent's name (required)
---@field prompt string|fun(ctx: flowrun.Ctx): string a template with {{placeholders}}, or a function of ctx returning the prompt (required)
---@field deps? string[] tasks that must succeed first (or end first: see trigger)
---@field complexity? number 0..1, a routing hint: how strong a model the task needs (0.5)
---@field type? string the kind of work (default: the agent's)
---@field priority? integer 1..10, higher runs first among ready tasks (default 5)
---@field private? boolean never sent to a cloud endpoint; its dependents are private too
---@field timeout? number seconds from the first dispatch, retries included
---@field retries? integer retries per endpoint after the first attempt, 0..100
---@field max_tokens? integer output cap per request
---@field temperature? number sampling temperature 0..2
---@field budget? number cap in USD for this task; 0 lets it run only on free endpoints
---@field schema? table|"json" a JSON Schema the reply must match (or "json": any JSON object)
---@field check? fun(text: string, json: any, ctx: flowrun.Ctx): number|false, string? scores the output 0..1, or returns false and a reason
---@field min_quality? number the lowest acceptable check score, 0..1 (needs check)
---@field approve? boolean a human checkpoint: dependents wait until its output is approved
---@field save? string also write the output here, relative to the workflow's folder
---@field endpoint? string pin the task to this endpoint
---@field tier? "local"|"cloud" pin the task to a tier
---@field seed? integer sampling seed (OpenAI-compatible and Ollama)
---@field declassify? boolean inherit no privacy from the dependencies (explicit decision)
---@field allow_truncated? boolean accept a reply cut at max_tokens as the output
---@field tools? string[] tool patterns this task may call; replaces the agent's ({}: none)
---@field max_turns? integer model turns in the tool loop, 1..100
---@field max_tool_calls? integer tool calls in the whole tool loop, 1..1000
---@field cache? boolean false: never answered from the result cache nor written to it
---@field trigger? "all_ok"|"all_done"|"any_failed" when the task runs given how its deps ended (default "all_ok")
---@field when? string|fun(ctx: flowrun.Ctx): boolean a condition, a function or a placeholder expression; false skips the task
---@field foreach? string a fan-out: "dep.json" or "dep.json.path", one instance per item
---@field name? string with foreach: each instance's name, a template over {{item}}, {{index}}
---@field max_items? integer with foreach: a longer list fails the fan-out, 1..10000 (100)
---@field plan_items? integer with foreach: how many instances flowrun plan estimates

---mcp "name" { ... }: an MCP server, over stdio (command) or HTTP (url)
---@class flowrun.Mcp
---@field command? string[] the server's argv, started over stdio (never through a shell)
---@field env? table<string, string> added to the server's environment (command only)
---@field cwd? string the server's working directory, relative to the workflow's folder
---@field url? string a server over Streamable HTTP
---@field headers_env? table<string, string> headers sent to a url server, each value read from the named environment variable
---@field start_timeout? number seconds to start, handshake and list the tools (default 60)
---@field timeout? number seconds for one tool call (default 60)
---@field tier? "local"|"cloud" where what a call sends goes

---tool "name" { ... }: a Lua function (run) or a command
---@class flowrun.Tool
---@field description string what the model reads about the tool (required)
---@field parameters? table a JSON Schema of the arguments, an object schema
---@field run? fun(args: table): any a Lua tool: called with the model's arguments
---@field command? string[] a command tool's argv; "{{args.NAME}}" becomes one whole item
---@field cwd? string the command's working directory, relative to the workflow's folder
---@field timeout? number seconds for one call (default 60)
---@field output_cap? integer bytes of stdout and stderr kept (default 65536)

---route's and on_result's task argument (a copy)
---@class flowrun.PolicyTask
---@field name string the task's name
---@field agent string its agent
---@field type string? its kind of work
---@field complexity number 0..1: how strong a model the task needs
---@field priority integer 1..10
---@field private boolean the task may only run locally (already enforced)
---@field attempt integer 1 for the first attempt
---@field reason flowrun.Reason why route is asked
---@field tried string[] the endpoints that already failed this task
---@field est_input_tokens integer the estimated prompt size
---@field max_tokens integer the reply's cap
---@field tools integer how many tools the task may call (0 for none)
---@field draw number 0..1, drawn for this attempt of this task from run.seed: the same seed, the same draws

---one of route's candidates: an endpoint this task may use
---@class flowrun.Candidate
---@field name string the endpoint's name
---@field tier "local"|"cloud" its tier
---@field protocol "openai"|"ollama"|"anthropic" its wire protocol
---@field model string its model
---@field in_flight integer requests running
---@field max_parallel integer slots
---@field free integer free slots
---@field queued integer ready tasks ahead of this one waiting for this endpoint
---@field quality number 0..1, the prior from the endpoint's declaration
---@field price_in number USD per million input tokens
---@field price_out number USD per million output tokens
---@field est_cost number the worst case for this task in USD
---@field latency_p50 number? the median latency in ms, nil until it has answered
---@field tags string[] the endpoint's tags
---@field context integer the context window in tokens
---@field history flowrun.History its record for this task's type and complexity band
---@field history_all flowrun.History its record over every type and band

---a candidate's routing history: what it did with such tasks
---@class flowrun.History
---@field attempts integer gated attempts (passes + fails)
---@field passes integer replies that passed every gate
---@field fails integer replies that failed a gate or did not finish
---@field errors integer attempts without a reply (error, timeout)
---@field weight number the decayed evidence: sum of 2^(-age/30 days) over gated attempts
---@field pass_rate number? decayed passes / decayed attempts, nil without evidence
---@field score_mean number? the mean check score, nil when none
---@field latency_p50_ms number? the median latency of the replies, nil when none
---@field ttft_p50_ms number? the median time to first content, nil when none
---@field tokens_per_s number? output tokens per second of reply, nil when none
---@field cost_mean_usd number? the mean cost per attempt, nil when none
---@field age_s number? seconds since the newest evidence, nil when none
---@field band_lo number the complexity band's low end (0 in history_all)
---@field band_hi number the band's high end (1 in history_all)
---@field type string? the task type ("-" for none; nil in history_all)
---@field p_pass number? adaptive's p(pass) estimate for this task (its constants), nil in history_all
---@field p_pass_n integer? the attempts behind p_pass (attempts when pass_rate is set, else 0), nil in history_all

---route's and on_result's run argument
---@class flowrun.RunState
---@field budget number? the run cap in USD, nil when there is none
---@field spent number USD spent so far
---@field reserved number USD reserved by attempts in flight
---@field remaining number? USD left under the cap, nil without a budget
---@field elapsed number seconds since the run started
---@field done integer tasks ended
---@field total integer tasks in the run
---@field ready integer ready tasks waiting for an endpoint (in route, this one included)
---@field seed integer --seed, else derived from the run id: for reproducible exploration

---on_result's result: a reply that passed the task's gates
---@class flowrun.Result
---@field endpoint string the endpoint that answered
---@field tier "local"|"cloud" its tier
---@field text string the reply
---@field json any the parsed reply of a task with a schema, else nil
---@field latency_ms number the attempt's latency
---@field tokens flowrun.Tokens the tokens used
---@field cost_usd number what the attempt cost
---@field attempt integer the attempt's number

---a result's tokens
---@class flowrun.Tokens
---@field input integer input tokens
---@field output integer output tokens

---what a prompt, when or check function receives
---@class flowrun.Ctx
---@field var table<string, string> the workflow's variables
---@field item any in a fan-out's instance: its item
---@field index integer in a fan-out's instance: its index, from 1
---@field [string] flowrun.Output a dependency's output, by task name

---a dependency's output in ctx
---@class flowrun.Output
---@field text string the text output
---@field json any the JSON output of a task with a schema (a Lua table)
---@field status flowrun.Status how the task ended
---@field reason string why it did not succeed ("" when it did)

---what a policy file returns: return { route = ..., on_result = ... }
---@class flowrun.Policy
---@field route fun(task: flowrun.PolicyTask, candidates: flowrun.Candidate[], run: flowrun.RunState): flowrun.Candidate|string|nil, string|nil picks a candidate (or its name) for the task, or nil to wait; a second value explains the decision, for --explain (required)
---@field on_result? fun(task: flowrun.PolicyTask, result: flowrun.Result, run: flowrun.RunState): "accept"|"retry"|"escalate"|nil judges a reply that passed the task's gates

---Declares the workflow's settings (once per file).
---@param spec flowrun.Workflow
function workflow(spec) end

---Declares an endpoint (here or in an endpoints file).
---@param name string
---@return fun(spec: flowrun.Endpoint)
function endpoint(name) end

---Names the endpoint the report compares the spend against.
---@param name string
function baseline(name) end

---Declares an agent: a system prompt, a type, tools.
---@param name string
---@return fun(spec: flowrun.Agent)
function agent(name) end

---Declares a task: a prompt for an agent, with its deps.
---@param name string
---@return fun(spec: flowrun.Task)
function task(name) end

---Declares an MCP server whose tools tasks may call ("name.tool").
---@param name string
---@return fun(spec: flowrun.Mcp)
function mcp(name) end

---Declares a tool tasks may call.
---@param name string
---@return fun(spec: flowrun.Tool)
function tool(name) end
