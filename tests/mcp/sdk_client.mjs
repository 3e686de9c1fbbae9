// Drives flowrun's MCP server with the official TypeScript SDK client
// (@modelcontextprotocol/sdk, installed by tests/deps.sh) and prints one
// JSON object on stdout for a shell test to assert on.
//
//   node sdk_client.mjs SCENARIO stdio COMMAND [ARGS...]
//   node sdk_client.mjs SCENARIO http URL [BEARER_TOKEN]
//
// Scenarios (their arguments come from the environment, see each):
//   list         the tools with their input schemas
//   call         tool $TOOL with the arguments $ARGS (a JSON object): the result
//   run_task     run_task { prompt: $PROMPT }
//   run_workflow run_workflow { path: $WORKFLOW } with a progress token
//   error        run_workflow { path: $WORKFLOW } (one that fails): the result
//   cancel       run_workflow { path: $WORKFLOW }, aborted once its child
//                (a process whose command line names $WORKFLOW) is seen;
//                then polls until that child is gone and calls tools/list
//   raw_stdio    no SDK: writes lines itself to COMMAND's stdin ($LINES, a
//                JSON array of strings) and prints every line it got back
//                once $EXPECT responses came (for malformed input and the
//                2026-07-28 revision, which this SDK does not speak)
// Exit 0 when the scenario ran (its assertions are the shell test's), 1
// when it could not, 2 for bad usage.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const [scenario, kind, ...rest] = process.argv.slice(2);
if (!scenario || (kind !== "stdio" && kind !== "http") || rest.length === 0) {
  console.error("usage: sdk_client.mjs SCENARIO stdio COMMAND [ARGS...] | SCENARIO http URL [TOKEN]");
  process.exit(2);
}
const BOUND_MS = 60000; // a bound on every wait: a hang fails the test, it never passes it

function transport() {
  if (kind === "stdio")
    return new StdioClientTransport({ command: rest[0], args: rest.slice(1), stderr: "inherit" });
  const headers = rest[1] ? { Authorization: `Bearer ${rest[1]}` } : {};
  return new StreamableHTTPClientTransport(new URL(rest[0]), { requestInit: { headers } });
}

// The pids of processes whose command line contains `needle`.
function pidsWith(needle) {
  const out = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0").join(" ");
      if (cmd.includes(needle) && !cmd.includes("sdk_client.mjs")) out.push(Number(d));
    } catch {}
  }
  return out;
}

async function pollUntil(cond, what) {
  const end = Date.now() + BOUND_MS;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`waited ${BOUND_MS} ms for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function rawStdio() {
  const lines = JSON.parse(process.env.LINES || "[]");
  const expect = Number(process.env.EXPECT || lines.length);
  const child = spawn(rest[0], rest.slice(1), { stdio: ["pipe", "pipe", "inherit"] });
  const got = [];
  let buf = "";
  child.stdout.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      got.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
  });
  const exited = new Promise((r) => child.on("exit", (code, sig) => r({ code, sig })));
  for (const l of lines) child.stdin.write(l + "\n");
  const responses = () => got.filter((m) => "id" in m).length;
  await pollUntil(() => responses() >= expect, `${expect} responses`);
  child.stdin.end(); // EOF: the server shuts down
  const end = await exited;
  return { messages: got, exit: end.code, signal: end.sig };
}

async function main() {
  if (scenario === "raw_stdio") return rawStdio();
  const client = new Client({ name: "flowrun-e2e", version: "1.0.0" });
  await client.connect(transport());
  const out = { protocolVersion: client.transport?.protocolVersion ?? null,
                server: client.getServerVersion()?.name ?? null };
  // What the server sent, in order, as it arrived: the SDK's onprogress
  // drops a notification that comes in the same read as its response (it
  // runs notification handlers a microtask later and forgets the progress
  // handler at the response), so progress is checked on the wire.
  const wire = [];
  const t = client.transport, inner = t.onmessage;
  t.onmessage = (m, extra) => {
    if (m?.method === "notifications/progress") wire.push(m.params);
    else if (m && "id" in m && ("result" in m || "error" in m)) wire.push({ response: m.id });
    return inner?.call(t, m, extra);
  };
  const wf = process.env.WORKFLOW;
  try {
    if (scenario === "list") {
      const { tools } = await client.listTools();
      out.tools = tools.map((t) => ({ name: t.name, type: t.inputSchema.type,
                                      required: t.inputSchema.required ?? [],
                                      properties: Object.keys(t.inputSchema.properties ?? {}),
                                      outputSchema: !!t.outputSchema }));
    } else if (scenario === "call") {
      out.result = await client.callTool({ name: process.env.TOOL, arguments: JSON.parse(process.env.ARGS) },
                                         undefined, { timeout: BOUND_MS });
    } else if (scenario === "run_task") {
      out.result = await client.callTool({ name: "run_task", arguments: { prompt: process.env.PROMPT } },
                                         undefined, { timeout: BOUND_MS });
    } else if (scenario === "run_workflow" || scenario === "error") {
      out.progress = [];
      out.sdk_progress = [];
      out.result = await client.callTool({ name: "run_workflow", arguments: { path: wf } }, undefined,
                                         { timeout: BOUND_MS,
                                           onprogress: (p) => out.sdk_progress.push(p) });
      const end = wire.findIndex((m) => "response" in m && !("progress" in m));
      out.progress = wire.slice(0, end < 0 ? wire.length : end).filter((m) => "progress" in m);
      out.progress_after_result = wire.slice(end + 1).filter((m) => "progress" in m).length;
    } else if (scenario === "cancel") {
      const ac = new AbortController();
      const call = client.callTool({ name: "run_workflow", arguments: { path: wf } }, undefined,
                                   { timeout: BOUND_MS, signal: ac.signal });
      call.catch(() => {});
      await pollUntil(() => pidsWith(wf).length > 0, `a child running ${wf}`);
      if (process.env.SIM_URL && process.env.SIM_MODEL) // its request reached the model
        await pollUntil(async () => ((await (await fetch(`${process.env.SIM_URL}/sim/stats`)).json())
          .models?.[process.env.SIM_MODEL]?.requests ?? 0) >= 1, `a request to ${process.env.SIM_MODEL}`);
      out.child_pids = pidsWith(wf);
      ac.abort("the test cancels");
      out.aborted = await call.then(() => false, (e) => String(e.message ?? e));
      await pollUntil(() => pidsWith(wf).length === 0, `the children of ${wf} to end`);
      out.child_gone = true;
      const { tools } = await client.listTools(); // the server still serves
      out.tools_after = tools.length;
    } else {
      console.error(`unknown scenario ${scenario}`);
      process.exit(2);
    }
  } finally {
    await client.close();
  }
  return out;
}

main().then(
  (out) => { process.stdout.write(JSON.stringify(out) + "\n"); process.exit(0); },
  (e) => { console.error(`sdk_client: ${scenario}: ${e.stack ?? e}`); process.exit(1); });
