-- Agents that act: a coder reads real files of this repository through the
-- filesystem MCP server, a tester counts their lines with a command tool,
-- and a reviewer reads both outputs. The @@call lines are the script the
-- simulated model plays under --sim (docs/testing.md): it asks for those
-- tool calls, one line per turn, and its final answer quotes what each tool
-- returned; a real model reads them as part of the prompt and chooses its
-- own calls.
--
--   tests/deps.sh                                   # installs the server under tests/mcp/
--   flowrun workflows/agents.lua --sim              # rehearsal, spends nothing
--   flowrun tools workflows/agents.lua              # the tools each agent may use
--
-- Without tests/deps.sh, run the server through npx (it fetches the package
-- once, so it needs the network the first time):
--   command = { "npx", "-y", "@modelcontextprotocol/server-filesystem", "." }

workflow {
  name = "agents",
  defaults = { timeout = 120, retries = 1, max_tokens = 1024 },
}

endpoint "workstation" {
  tier = "local", protocol = "openai", url = "http://127.0.0.1:8000/v1",
  model = "qwen2.5-coder-14b", max_parallel = 2, context = 32768, quality = 0.6,
}

-- The server's root is the repository (cwd, relative to this file's
-- folder): it can read and list files there and nowhere else. Its write
-- tools exist too; the agents below are offered only the reading ones.
mcp "fs" {
  command = { "node", "tests/mcp/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js",
              "." },
  cwd = "..",
  start_timeout = 30,
  timeout = 30,
}

-- A fixed argv: the model fills only {{args.path}}, as one argument, never
-- through a shell; "--" keeps a path that starts with "-" from being read
-- as an option.
tool "line_count" {
  description = "Counts the lines of a file of the repository (wc -l).",
  parameters = {
    type = "object",
    properties = { path = { type = "string", description = "a path relative to the repository" } },
    required = { "path" },
    additionalProperties = false,
  },
  command = { "wc", "-l", "--", "{{args.path}}" },
  cwd = "..",
  timeout = 10,
  output_cap = 4096,
}

agent "coder" {
  system = "You read code before you talk about it.",
  tools = { "fs.read_text_file", "fs.list_directory" },
}
agent "tester" {
  system = "You measure before you judge.",
  tools = { "line_count" },
}
agent "reviewer" { system = "You review code for clarity and risk. Be brief." }

task "read" {
  agent = "coder",
  prompt = [[
@@call fs.list_directory {"path": "engine"}
@@call fs.read_text_file {"path": "engine/toolset.h", "head": 20}
Look at the engine's folder, read the head of engine/toolset.h and say in
three sentences what the module promises its callers.]],
}

task "measure" {
  agent = "tester",
  prompt = [[
@@call line_count {"path": "engine/toolset.h"} | line_count {"path": "engine/toolset.c"}
Count the lines of engine/toolset.h and engine/toolset.c and say whether the
interface is small next to its implementation.]],
}

task "review" {
  agent = "reviewer", deps = { "read", "measure" },
  prompt = [[
What the coder read:
{{read}}

What the tester measured:
{{measure}}

Review the module from these two reports: one risk, one strength.]],
}
