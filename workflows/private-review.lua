-- A privacy-sensitive review: the code under review is confidential, so
-- every task is private and runs on local endpoints only, whatever the
-- policy would prefer. The cloud endpoint is declared (a machine's
-- endpoints file would have it anyway) but never receives a byte.
--
--   flowrun workflows/private-review.lua --sim

workflow {
  name = "private-review",
  defaults = { max_tokens = 1024 },
}

endpoint "workstation" {
  tier = "local", protocol = "openai", url = "http://127.0.0.1:8000/v1",
  model = "qwen2.5-coder-14b", max_parallel = 2, quality = 0.6,
}
endpoint "cloud" {
  tier = "cloud", protocol = "openai", url = "https://api.openai.com/v1",
  model = "gpt-4o", api_key_env = "OPENAI_API_KEY", max_parallel = 8, quality = 0.95,
  price = { input = 2.50, output = 10.00 },
}

agent "auditor" { system = "You audit code for security problems.", type = "review" }

local code = [[
int check_password(const char *given, const char *stored)
{
    return strcmp(given, stored) == 0;
}
]]

task "security" {
  agent = "auditor", private = true, complexity = 0.7,
  prompt = "Find security problems in this confidential code:\n" .. code,
}
task "style" {
  agent = "auditor", private = true, complexity = 0.3,
  prompt = "Point out unclear names and missing comments:\n" .. code,
}
task "summary" {
  agent = "auditor", private = true, deps = { "security", "style" }, save = "out/review.md",
  prompt = "Summarise these findings for the author:\n\n{{security}}\n\n{{style}}",
}
