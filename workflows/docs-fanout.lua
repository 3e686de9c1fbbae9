-- A documentation fan-out: one outline, then every section written in
-- parallel on whichever endpoint has a free slot, then one assembly pass.
--
--   flowrun workflows/docs-fanout.lua --sim

workflow {
  name = "docs-fanout",
  defaults = { max_tokens = 800 },
  vars = { product = "flowrun", audience = "engineers who run LLM agents" },
}

endpoint "laptop" {
  tier = "local", protocol = "ollama", url = "http://127.0.0.1:11434",
  model = "llama3.1:8b", max_parallel = 1, quality = 0.5,
}
endpoint "gpu-box" {
  tier = "local", protocol = "openai", url = "http://127.0.0.1:8000/v1",
  model = "qwen2.5-14b-instruct", max_parallel = 3, quality = 0.6,
}
endpoint "cloud" {
  tier = "cloud", protocol = "openai", url = "https://api.together.xyz/v1",
  model = "meta-llama/Llama-3.3-70B-Instruct-Turbo", api_key_env = "TOGETHER_API_KEY",
  max_parallel = 4, quality = 0.85, price = { input = 0.88, output = 0.88 },
}

agent "writer" { system = "You write clear technical documentation.", type = "docs" }

task "outline" {
  agent = "writer", complexity = 0.6, priority = 9,
  prompt = "Outline the documentation of {{var.product}} for {{var.audience}}.",
}

local sections = { "install", "quickstart", "workflows", "policies", "budgets", "reports" }
for _, s in ipairs(sections) do
  task("section-" .. s) {
    agent = "writer", deps = { "outline" }, complexity = 0.3,
    prompt = "Following this outline:\n{{outline}}\n\nWrite the section '" .. s .. "'.",
  }
end

local deps = {}
for i, s in ipairs(sections) do deps[i] = "section-" .. s end
task "assemble" {
  agent = "writer", deps = deps, complexity = 0.4, save = "out/docs.md",
  prompt = function(ctx)
    local parts = {}
    for _, name in ipairs(deps) do parts[#parts + 1] = ctx[name].text end
    return "Join these sections into one document with a table of contents:\n\n" ..
           table.concat(parts, "\n\n")
  end,
}
