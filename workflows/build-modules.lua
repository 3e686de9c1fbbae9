-- A plan that decides its own shape: the architect lists the modules, one
-- implementer per module runs in parallel (how many is known only once the
-- plan exists), an integration pass joins them, a person approves the
-- integrated result before it is reviewed, and the rework runs only when
-- the review asks for it.
--
--   flowrun workflows/build-modules.lua --sim                # stops at the approval
--   flowrun approve workflows/build-modules.lua integrate    # ... then run it again
--   flowrun workflows/build-modules.lua --sim --approve-all  # a scripted rehearsal

workflow {
  name = "build-modules",
  policy = "balanced",
  budget = { usd = 0.50, alert = 0.8 },
  defaults = { timeout = 300, retries = 2, max_tokens = 1024, temperature = 0.2 },
  vars = { idea = "a command-line password vault with sync" },
}

endpoint "workstation" {
  tier = "local", protocol = "openai", url = "http://127.0.0.1:8000/v1",
  model = "qwen2.5-coder-14b", max_parallel = 4, context = 32768, quality = 0.6,
}
endpoint "cloud" {
  tier = "cloud", protocol = "openai", url = "https://openrouter.ai/api/v1",
  model = "deepseek/deepseek-chat", api_key_env = "OPENROUTER_API_KEY",
  max_parallel = 4, quality = 0.9, price = { input = 0.27, output = 1.10 },
}
baseline "cloud"

agent "architect"  { system = "You are a senior software architect. Be concrete.", type = "architecture" }
agent "coder"      { system = "You write small, tested C modules.", type = "code" }
agent "integrator" { system = "You join modules into one program and fix their seams.", type = "code" }
agent "reviewer"   { system = "You review code for bugs and unclear names.", type = "review" }

-- The plan is structured output: its list of modules drives the fan-out.
task "plan" {
  agent = "architect", complexity = 0.8, priority = 9,
  prompt = "Plan {{var.idea}} as 3 to 6 C modules: give each a short name and a spec.",
  schema = {
    type = "object", required = { "modules" },
    properties = {
      modules = {
        type = "array", minItems = 3, maxItems = 6,
        items = {
          type = "object", required = { "name", "spec" },
          properties = { name = { type = "string" }, spec = { type = "string" } },
        },
      },
    },
  },
}

-- One instance per module of the plan, named after it: module[vault], ...
task "module" {
  agent = "coder", deps = { "plan" }, complexity = 0.4,
  foreach = "plan.json.modules", name = "module[{{item.name}}]", max_items = 20, plan_items = 4,
  prompt = "Implement the module {{item.name}} ({{index}} of the plan):\n\n{{item.spec}}",
}

-- The join receives every instance, in the plan's order.
task "integrate" {
  agent = "integrator", deps = { "module" }, complexity = 0.6, approve = true,
  prompt = "Join these modules into one program:\n\n{{module}}",
}

task "review" {
  agent = "reviewer", deps = { "integrate" }, complexity = 0.6,
  prompt = "Review this program. Say whether it is ready and what to fix:\n\n{{integrate}}",
  schema = {
    type = "object", required = { "ready", "fixes" },
    properties = { ready = { type = "boolean" }, fixes = { type = "array", items = { type = "string" } } },
  },
}

-- Runs only when the review found something to fix.
task "rework" {
  agent = "coder", deps = { "integrate", "review" }, complexity = 0.5,
  when = function(ctx) return not ctx.review.json.ready end,
  prompt = "Apply these fixes:\n{{review.json.fixes}}\n\nto this program:\n\n{{integrate}}",
}
