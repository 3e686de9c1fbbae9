// A small MCP server with no SDK, for flowrun's MCP client tests: it speaks
// the 2026-07-28 revision only (server/discover, `_meta` required on every
// request, resultType in results; initialize is refused), over stdio
// (default) or Streamable HTTP (--http: a free loopback port, printed to
// stderr as "listening on port N"). Its tools are listed over several pages
// and cover the protocol's corners: errors, slow calls, a crash, non-text
// content, a server-to-client request.
//   --pages N          tools/list pages (default 3)
//   --repeat-cursor    every page names the same next cursor (a broken server)
//   --die-at-start     writes a reason to stderr and exits 2 before answering
//   --legacy-silent    a 2025-11-25 server that leaves server/discover
//                      unanswered: only the initialize handshake works
import http from 'node:http';
import readline from 'node:readline';

const REV = '2026-07-28';
const args = process.argv.slice(2);
const opt = (name) => args.includes(name);
const pages = Number(args[args.indexOf('--pages') + 1]) || (opt('--pages') ? 1 : 3);

if (opt('--die-at-start')) {
  process.stderr.write('tiny: the configuration file is missing\n');
  process.exit(2);
}

const tools = [
  { name: 'echo', description: 'Echoes its text', inputSchema: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } },
  { name: 'add', description: 'Adds a and b', inputSchema: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number' } } } },
  { name: 'fail', description: 'A tool error (isError)', inputSchema: { type: 'object' } },
  { name: 'rpc_error', description: 'A JSON-RPC error', inputSchema: { type: 'object' } },
  { name: 'sleep', description: 'Answers after ms milliseconds', inputSchema: { type: 'object', properties: { ms: { type: 'number' } } } },
  { name: 'crash', description: 'Exits the server', inputSchema: { type: 'object' } },
  { name: 'media', description: 'An image, an audio clip and a resource', inputSchema: { type: 'object' } },
  { name: 'structured', description: 'structuredContent only', inputSchema: { type: 'object' } },
  { name: 'ask', description: 'Asks the client for a sampling', inputSchema: { type: 'object' } },
  { name: 'headers', description: 'The HTTP headers of this call', inputSchema: { type: 'object' } },
  { name: 'cancelled', description: 'The request ids cancelled so far', inputSchema: { type: 'object' } },
];

const cancelled = [];
const pendingAsks = new Map(); // our request id -> function(reply)
let nextAsk = 1000;

const text = (t) => ({ resultType: 'complete', content: [{ type: 'text', text: t }] });
const err = (id, code, message, data) => ({ jsonrpc: '2.0', id, error: { code, message, ...(data ? { data } : {}) } });
const ok = (id, result) => ({ jsonrpc: '2.0', id, result });

// Answers one message; `send` writes a message back, `hdrs` are the HTTP headers.
function handle(msg, send, hdrs) {
  if (msg.method === undefined) { // a reply to our own request
    const f = pendingAsks.get(msg.id);
    if (f) { pendingAsks.delete(msg.id); f(msg); }
    return;
  }
  if (msg.id === undefined) {
    if (msg.method === 'notifications/cancelled') cancelled.push(msg.params?.requestId);
    return;
  }
  if (opt('--legacy-silent')) {
    if (msg.method === 'server/discover') return;
    if (msg.method === 'initialize')
      return send(ok(msg.id, { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'tiny-legacy', version: '1.0.0' } }));
    if (msg.method === 'tools/list') return send(ok(msg.id, { tools: tools.slice(0, 2) }));
    if (msg.method === 'tools/call') return call(msg, send, null);
    return send(err(msg.id, -32601, 'Method not found'));
  }
  if (msg.method === 'initialize') return send(err(msg.id, -32601, 'Method not found: initialize (this server speaks 2026-07-28 only)'));
  const meta = msg.params?._meta ?? {};
  const v = meta['io.modelcontextprotocol/protocolVersion'];
  if (!v || !meta['io.modelcontextprotocol/clientCapabilities'])
    return send(err(msg.id, -32602, 'missing _meta protocolVersion or clientCapabilities'));
  if (v !== REV) return send(err(msg.id, -32022, 'Unsupported protocol version', { requested: v, supported: [REV] }));
  if (hdrs && hdrs['mcp-protocol-version'] !== REV) return send(err(msg.id, -32020, 'MCP-Protocol-Version header does not match'));
  if (hdrs && hdrs['mcp-method'] !== msg.method) return send(err(msg.id, -32020, 'Mcp-Method header does not match'));
  switch (msg.method) {
    case 'server/discover':
      return send(ok(msg.id, { resultType: 'complete', supportedVersions: [REV], capabilities: { tools: {} }, serverInfo: { name: 'tiny', version: '1.0.0' } }));
    case 'tools/list': {
      const page = msg.params?.cursor ? Number(msg.params.cursor.slice(4)) : 0;
      const per = Math.ceil(tools.length / pages);
      const res = { resultType: 'complete', tools: tools.slice(page * per, (page + 1) * per) };
      if (opt('--repeat-cursor')) res.nextCursor = 'page1';
      else if (page + 1 < pages) res.nextCursor = 'page' + (page + 1);
      return send(ok(msg.id, res));
    }
    case 'tools/call':
      return call(msg, send, hdrs);
    default:
      return send(err(msg.id, -32601, 'Method not found'));
  }
}

function call(msg, send, hdrs) {
  const a = msg.params.arguments ?? {};
  if (hdrs && hdrs['mcp-name'] !== msg.params.name) return send(err(msg.id, -32020, 'Mcp-Name header does not match'));
  switch (msg.params.name) {
    case 'echo': return send(ok(msg.id, text('echo: ' + a.text)));
    case 'add': return send(ok(msg.id, text(String(a.a + a.b))));
    case 'fail': return send(ok(msg.id, { resultType: 'complete', isError: true, content: [{ type: 'text', text: 'the tool failed on purpose' }] }));
    case 'rpc_error': return send(err(msg.id, -32602, 'bad arguments for rpc_error'));
    case 'sleep': return setTimeout(() => send(ok(msg.id, text('slept ' + a.ms + ' ms'))), a.ms);
    case 'crash':
      process.stderr.write('tiny: crashing on purpose\n');
      return process.exit(3);
    case 'media':
      return send(ok(msg.id, { resultType: 'complete', content: [
        { type: 'image', mimeType: 'image/png', data: 'AAAAAAAA' },
        { type: 'audio', mimeType: 'audio/wav', data: 'AAAA' },
        { type: 'resource', resource: { uri: 'file:///notes.txt', mimeType: 'text/plain', text: 'the notes' } },
      ] }));
    case 'structured': return send(ok(msg.id, { resultType: 'complete', content: [], structuredContent: { answer: 42 } }));
    case 'ask': {
      const id = nextAsk++;
      pendingAsks.set(id, (reply) => send(ok(msg.id, text('client said: ' + (reply.error ? 'error ' + reply.error.code : 'ok')))));
      return send({ jsonrpc: '2.0', id, method: 'sampling/createMessage', params: { messages: [], maxTokens: 1 } });
    }
    case 'headers':
      return send(ok(msg.id, text(JSON.stringify({ authorization: hdrs?.authorization ?? null, name: hdrs?.['mcp-name'] ?? null }))));
    case 'cancelled': return send(ok(msg.id, text(JSON.stringify(cancelled))));
    default: return send(err(msg.id, -32602, 'Unknown tool: ' + msg.params.name));
  }
}

if (opt('--http')) {
  // Stateless: each POST carries one message; a request's reply is its
  // response (SSE for tools/call, JSON otherwise), a notification gets 202.
  const server = http.createServer((req, res) => {
    if (req.method !== 'POST') { res.writeHead(405); return res.end(); }
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      let msg;
      try { msg = JSON.parse(body); } catch { res.writeHead(400); return res.end(); }
      if (msg.id === undefined || msg.method === undefined) { res.writeHead(202); return res.end(); }
      if (msg.params?.name === 'http500') { // an unlisted tool: the server fails below JSON-RPC
        res.writeHead(500, { 'Content-Type': 'application/json' });
        return res.end(JSON.stringify(err(msg.id, -32603, 'internal failure')));
      }
      const sse = msg.method === 'tools/call';
      handle(msg, (reply) => {
        if (reply.error && !sse) { res.writeHead(reply.error.code === -32022 ? 400 : 200, { 'Content-Type': 'application/json' }); return res.end(JSON.stringify(reply)); }
        if (sse) {
          res.writeHead(200, { 'Content-Type': 'text/event-stream' });
          res.write(': keep-alive\n\nevent: message\ndata: ' + JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progress: 1 } }) + '\n\n');
          return res.end('event: message\ndata: ' + JSON.stringify(reply) + '\n\n');
        }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(reply));
      }, req.headers);
    });
  });
  server.listen(0, '127.0.0.1', () => process.stderr.write('listening on port ' + server.address().port + '\n'));
} else {
  const rl = readline.createInterface({ input: process.stdin });
  const send = (m) => process.stdout.write(JSON.stringify(m) + '\n');
  rl.on('line', (line) => { if (line.trim()) handle(JSON.parse(line), send, null); });
  rl.on('close', () => process.exit(0));
  process.stdout.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'tiny started' } }) + '\n');
}
