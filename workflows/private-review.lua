-- A privacy-sensitive review: the code under review is confidential, so
-- the auditor agent is private (every task of it runs on local endpoints
-- only, whatever the policy would prefer), and the summary, which receives
-- their findings, inherits that privacy: privacy follows the data. The
-- cloud endpoint is declared (a machine's endpoints file would have it
-- anyway) but never receives a byte. The summary in the report says
-- "summary: private: inherited from 'security'".
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

agent "auditor" { system = "You audit code for security problems.", type = "review",
                  private = true }
agent "writer" { system = "You write clear, kind summaries for authors." }

local code = [[
int check_password(const char *given, const char *stored)
{
    return strcmp(given, stored) == 0;
}
]]

task "security" {
  agent = "auditor", complexity = 0.7,
  prompt = "Find security problems in this confidential code:\n" .. code,
}
task "style" {
  agent = "auditor", complexity = 0.3,
  prompt = "Point out unclear names and missing comments:\n" .. code,
}
task "summary" {
  agent = "writer", deps = { "security", "style" }, complexity = 0.8, save = "out/review.md",
  prompt = "Summarise these findings for the author:\n\n{{security}}\n\n{{style}}",
}
