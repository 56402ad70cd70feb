#!/usr/bin/env node
/**
 * sdk-scenario.mjs — TypeScript-SDK (v1, `@modelcontextprotocol/sdk`) CLIENT scenario for
 * @modelcontextprotocol/server-everything, used to compare a direct run with a run through Warden.
 *
 *   node sdk-scenario.mjs --url http://127.0.0.1:PORT/mcp            # Streamable HTTP
 *   node sdk-scenario.mjs --stdio -- CMD ARG...                       # spawns CMD, MCP over stdio
 *
 * It lists and calls every tool (arguments chosen per tool; a tool it cannot call is recorded with
 * the reason), lists/reads resources and templates, lists/gets prompts, asks completions, receives
 * progress, answers sampling / elicitation (form and URL) / roots requests deterministically,
 * subscribes/unsubscribes, sets the log level, cancels an in-flight call, and pings. It prints ONE
 * JSON transcript (keys sorted) on stdout. Exit 1 if it cannot connect; other failures are
 * recorded in the transcript. The client declares sampling, elicitation (form+url) and roots; it
 * does NOT declare `tasks`, so server-everything hides its two `*-async` tools.
 *
 * Normalizations (values that legitimately differ between runs), applied to every string:
 *   - UUIDs (session ids, elicitation ids)                -> "<uuid>"; any `taskId` value -> "<task-id>"
 *   - ISO-8601 timestamps (task createdAt/lastUpdatedAt)  -> "<timestamp>"
 *   - clock times "3:04:05 PM" / "15:04:05" (dynamic resources "created at ...") -> "<time>"
 *   - base64 `blob`s that decode to such text are decoded, normalized and re-encoded
 *   - the `get-env` tool's text (a dump of the server's environment) -> "<environment dump>"
 *   - task `ttl`/`pollInterval` values are kept (deterministic); task status polling history is
 *     not recorded, only the created task's status and the final result
 * Not recorded at all: notifications/message (server-everything logs on timers, at random levels,
 * and at session start), resources/updated and the list_changed notifications (timer / ordering
 * dependent), and how many times the server asked for roots/list (it re-syncs on a timer).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

// ---------- arguments ----------
const argv = process.argv.slice(2);
let url, command;
if (argv[0] === '--url' && argv[1]) url = argv[1];
else if (argv[0] === '--stdio' && argv[1] === '--' && argv[2]) command = argv.slice(2);
else {
  console.error('usage: sdk-scenario.mjs --url URL | --stdio -- CMD [ARG...]');
  process.exit(2);
}

// ---------- normalization ----------
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const ISO = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g;
const CLOCK = /\b\d{1,2}:\d{2}:\d{2}(\s?[AP]M)?/g;
const normText = (s) => s.replace(UUID, '<uuid>').replace(ISO, '<timestamp>').replace(CLOCK, '<time>');
function normBlob(b64) {
  const decoded = Buffer.from(b64, 'base64').toString('utf8');
  if (/^[\x20-\x7e\s]*$/.test(decoded) && normText(decoded) !== decoded) return Buffer.from(normText(decoded)).toString('base64');
  return b64;
}
function normalize(v, key) {
  if (typeof v === 'string') return key === 'blob' ? normBlob(v) : key === 'taskId' ? '<task-id>' : normText(v);
  if (Array.isArray(v)) return v.map((x) => normalize(x));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x, k)]));
  return v;
}
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}
const errorOf = (e) => ({ error: { code: e?.code ?? null, message: normText(String(e?.message ?? e)) } });
async function attempt(fn) {
  try {
    return normalize(await fn());
  } catch (e) {
    return errorOf(e);
  }
}

// ---------- deterministic answers to server->client requests ----------
const wireProgress = [];
const serverRequests = { sampling: [], elicitation: [], roots_list_answered: false };
const ROOTS = [{ uri: 'file:///tmp/sdk-scenario-root', name: 'sdk-scenario-root' }];

/** A valid form answer derived from the requested schema: default, else first choice, else a fixed value. */
function answerField(p) {
  if ('default' in p) return p.default;
  if (Array.isArray(p.enum)) return p.enum[0];
  if (Array.isArray(p.oneOf)) return p.oneOf[0].const;
  switch (p.type) {
    case 'boolean': return true;
    case 'integer': case 'number': return p.minimum ?? 1;
    case 'array': return [p.items?.enum?.[0] ?? p.items?.anyOf?.[0]?.const ?? 'a'];
    default:
      return { email: 'ada@example.com', uri: 'https://example.com/ada', date: '1815-12-10', 'date-time': '1815-12-10T00:00:00Z' }[p.format] ?? 'Ada Lovelace';
  }
}

const client = new Client(
  { name: 'warden-sdk-scenario', version: '1.0.0' },
  { capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  serverRequests.sampling.push(normalize(req.params));
  return { role: 'assistant', model: 'sdk-scenario-model', stopReason: 'endTurn', content: { type: 'text', text: 'sdk-scenario sampled reply' } };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  serverRequests.elicitation.push(normalize(req.params));
  if (req.params.mode === 'url') return { action: 'accept' };
  const props = req.params.requestedSchema?.properties ?? {};
  return { action: 'accept', content: Object.fromEntries(Object.entries(props).map(([k, p]) => [k, answerField(p)])) };
});
client.setRequestHandler(ListRootsRequestSchema, async () => {
  serverRequests.roots_list_answered = true;
  return { roots: ROOTS };
});

// ---------- tool arguments for server-everything (others: {} when nothing is required) ----------
const TOOL_ARGS = {
  echo: { message: 'hello warden' },
  'get-annotated-message': { messageType: 'success', includeImage: true },
  'get-resource-links': { count: 3 },
  'get-resource-reference': { resourceType: 'Text', resourceId: 2 },
  'get-structured-content': { location: 'Chicago' },
  'get-sum': { a: 19, b: 23 },
  'gzip-file-as-resource': { name: 'sdk-scenario.txt.gz', data: 'data:text/plain;base64,' + Buffer.from('warden sdk scenario\n').toString('base64'), outputType: 'resourceLink' },
  'trigger-long-running-operation': { duration: 1, steps: 5 },
  'trigger-sampling-request': { prompt: 'Say hello', maxTokens: 20 },
  'trigger-url-elicitation': { url: 'https://example.com/verify', message: 'Open the link', elicitationId: 'sdk-scenario-url-1' },
  'simulate-research-query': { topic: 'gateways', ambiguous: false },
};
// Toggles start a 5 s timer on the server; they are called twice (on, off) so nothing keeps running.
const CALL_TWICE = new Set(['toggle-simulated-logging', 'toggle-subscriber-updates']);

async function callTool(tool) {
  const args = TOOL_ARGS[tool.name] ?? {};
  const required = tool.inputSchema?.required ?? [];
  if (!(tool.name in TOOL_ARGS) && required.length) return { not_called: `unknown tool with required arguments: ${required.join(', ')}` };
  if (tool.execution?.taskSupport === 'required') {
    // Task-only tool: use the SDK's experimental task stream; record the created task and the outcome.
    return attempt(async () => {
      const out = { arguments: args, messages: [] };
      for await (const m of client.experimental.tasks.callToolStream({ name: tool.name, arguments: args }, undefined, { task: { ttl: 60000 } })) {
        if (m.type === 'taskCreated') out.messages.push({ type: m.type, status: m.task.status });
        if (m.type === 'result') out.messages.push({ type: m.type, result: m.result });
        if (m.type === 'error') out.messages.push({ type: m.type, error: errorOf(m.error).error });
      }
      return out;
    });
  }
  const from = wireProgress.length;
  const once = () => client.callTool({ name: tool.name, arguments: args }, undefined, { onprogress: () => {}, timeout: 30000 });
  return attempt(async () => {
    const result = CALL_TWICE.has(tool.name) ? [await once(), await once()] : await once();
    const progress = wireProgress.slice(from);
    if (tool.name === 'get-env') for (const c of result.content ?? []) if (c.type === 'text') c.text = '<environment dump>';
    return progress.length ? { arguments: args, result, progress } : { arguments: args, result };
  });
}

async function main() {
  const transport = url
    ? new StreamableHTTPClientTransport(new URL(url))
    : new StdioClientTransport({ command: command[0], args: command.slice(1), stderr: 'inherit' });
  try {
    await client.connect(transport);
  } catch (e) {
    console.error(`sdk-scenario: connection failed: ${e?.message ?? e}`);
    process.exit(1);
  }
  // Progress is recorded as it arrives on the wire: the SDK runs notification handlers a microtask
  // after responses, so `onprogress` can miss the last notification that precedes the result.
  const deliver = transport.onmessage;
  transport.onmessage = (msg, extra) => {
    if (msg?.method === 'notifications/progress') wireProgress.push(msg.params);
    deliver?.(msg, extra);
  };
  const t = {};
  t.connection = normalize({
    protocolVersion: transport.protocolVersion ?? client.getNegotiatedProtocolVersion?.() ?? null,
    serverInfo: client.getServerVersion(),
    capabilities: client.getServerCapabilities(),
    instructions: client.getInstructions() ?? null,
  });

  // Listings first (tool calls may register session resources).
  const tools = (await client.listTools()).tools.sort((a, b) => a.name.localeCompare(b.name));
  t.tools = { list: normalize(tools), calls: {} };
  const resources = (await client.listResources()).resources;
  const templates = (await client.listResourceTemplates()).resourceTemplates;
  t.resources = { list: normalize(resources), templates: normalize(templates), reads: {} };
  for (const r of resources) t.resources.reads[r.uri] = await attempt(() => client.readResource({ uri: r.uri }));
  for (const tpl of templates) {
    const uri = tpl.uriTemplate.replace(/\{[^}]+\}/g, '7');
    t.resources.reads[uri] = await attempt(() => client.readResource({ uri }));
  }
  const prompts = (await client.listPrompts()).prompts;
  t.prompts = { list: normalize(prompts), gets: {} };
  const PROMPT_ARGS = { 'args-prompt': { city: 'Lisbon', state: 'LX' }, 'completable-prompt': { department: 'Engineering', name: 'Alice' }, 'resource-prompt': { resourceType: 'Text', resourceId: '3' } };
  for (const p of prompts) {
    const args = PROMPT_ARGS[p.name] ?? Object.fromEntries((p.arguments ?? []).map((a) => [a.name, 'x']));
    t.prompts.gets[p.name] = await attempt(async () => ({ arguments: args, result: await client.getPrompt({ name: p.name, arguments: args }) }));
  }
  t.completions = {
    'prompt completable-prompt department=E': await attempt(() => client.complete({ ref: { type: 'ref/prompt', name: 'completable-prompt' }, argument: { name: 'department', value: 'E' } })),
    'prompt completable-prompt name=A (department=Engineering)': await attempt(() =>
      client.complete({ ref: { type: 'ref/prompt', name: 'completable-prompt' }, argument: { name: 'name', value: 'A' }, context: { arguments: { department: 'Engineering' } } })),
    'template resourceId=5': await attempt(() => client.complete({ ref: { type: 'ref/resource', uri: templates[0]?.uriTemplate ?? '' }, argument: { name: 'resourceId', value: '5' } })),
  };

  for (const tool of tools) t.tools.calls[tool.name] = await callTool(tool);
  t.tools.hidden_by_client_capabilities = {
    'trigger-elicitation-request-async': 'listed only when the client declares tasks.requests.elicitation.create',
    'trigger-sampling-request-async': 'listed only when the client declares tasks.requests.sampling.createMessage',
  };
  t.resources.session_resource_after_gzip = await attempt(() => client.readResource({ uri: 'demo://resource/session/sdk-scenario.txt.gz' }));

  const watched = resources[0]?.uri;
  t.subscriptions = {
    uri: watched ?? null,
    subscribe: await attempt(() => client.subscribeResource({ uri: watched })),
    unsubscribe: await attempt(() => client.unsubscribeResource({ uri: watched })),
  };
  t.logging_set_level = await attempt(() => client.setLoggingLevel('warning'));

  // Cancel an in-flight call: abort at the first progress notification (the SDK then sends
  // notifications/cancelled), and check the session still answers afterwards.
  const ac = new AbortController();
  let first;
  t.cancellation = await attempt(async () => {
    try {
      await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 20, steps: 20 } }, undefined, {
        signal: ac.signal,
        onprogress: (p) => {
          if (!first) {
            first = p;
            ac.abort('sdk-scenario cancels the call');
          }
        },
      });
      return { outcome: 'completed (NOT cancelled)' };
    } catch (e) {
      return { outcome: 'rejected', first_progress: first ?? null, ...errorOf(e) };
    }
  });
  t.cancellation.ping_after = await attempt(() => client.ping());
  t.server_requests = serverRequests;
  t.ping = await attempt(() => client.ping());

  if (url) await transport.terminateSession().catch(() => {});
  await client.close();
  process.stdout.write(JSON.stringify(sortKeys(t), null, 2) + '\n');
}

main().catch((e) => {
  console.error(`sdk-scenario: ${e?.stack ?? e}`);
  process.exit(1);
});
