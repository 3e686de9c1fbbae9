-- A feature pipeline: design, then implementation and tests in parallel,
-- then review, then documentation. Routine steps stay on the local GPU
-- box; the design, which needs the strongest model, may go to the cloud.
--
--   flowrun workflows/feature-pipeline.lua --sim            # rehearsal, spends nothing
--   flowrun workflows/feature-pipeline.lua --var idea="a URL shortener"

workflow {
  name = "feature-pipeline",
  policy = "balanced",
  budget = { usd = 0.50, alert = 0.8 },
  defaults = { timeout = 300, retries = 2, max_tokens = 1024, temperature = 0.2 },
  vars = { idea = "a bookmark manager with tags" },
}

endpoint "workstation" {
  tier = "local", protocol = "openai", url = "http://127.0.0.1:8000/v1",
  model = "qwen2.5-coder-14b", max_parallel = 2, context = 32768, quality = 0.6,
  tags = { "code", "test" },
}
endpoint "cloud" {
  tier = "cloud", protocol = "openai", url = "https://openrouter.ai/api/v1",
  model = "deepseek/deepseek-chat", api_key_env = "OPENROUTER_API_KEY",
  max_parallel = 4, quality = 0.9, price = { input = 0.27, output = 1.10 },
}
baseline "cloud"

agent "architect" { system = "You are a senior software architect. Be concrete.", type = "architecture" }
agent "coder"     { system = "You write small, tested functions.", type = "code" }
agent "tester"    { system = "You write thorough unit tests.", type = "test" }
agent "reviewer"  { system = "You review code for bugs and unclear names.", type = "review" }
agent "writer"    { system = "You write short, precise user documentation.", type = "docs" }

task "design" {
  agent = "architect", complexity = 0.8, priority = 8,
  prompt = "Design {{var.idea}}. List the modules and the public functions of each.",
}
task "implement" {
  agent = "coder", deps = { "design" }, complexity = 0.5,
  prompt = "Implement this design in C:\n\n{{design}}",
}
task "tests" {
  agent = "tester", deps = { "design" }, complexity = 0.4,
  prompt = "Write unit tests for the public functions of this design:\n\n{{design}}",
}
task "review" {
  agent = "reviewer", deps = { "implement", "tests" }, complexity = 0.6,
  prompt = function(ctx)
    return "Review this implementation and its tests.\n\nCode:\n" .. ctx.implement.text ..
           "\n\nTests:\n" .. ctx.tests.text
  end,
}
task "docs" {
  agent = "writer", deps = { "design", "review" }, complexity = 0.3,
  save = "out/feature-docs.md",
  prompt = "Write the user documentation of {{var.idea}} from this design:\n\n{{design}}\n\n" ..
           "Take these review notes into account:\n\n{{review}}",
}
