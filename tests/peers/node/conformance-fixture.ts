/**
 * conformance-fixture.ts — Warden test peer: our own MCP server exposing everything the
 * `@modelcontextprotocol/conformance` server scenarios call, built on the TypeScript SDK v2
 * (`@modelcontextprotocol/server`), serving BOTH protocol generations:
 *   - 2025-era (2025-06-18 / 2025-11-25): `initialize` + `Mcp-Session-Id` sessions, GET SSE stream,
 *     DELETE, resumable SSE (event store), push-style sampling/elicitation, logging/setLevel.
 *   - 2026-07-28: stateless per-request `_meta` envelope, `server/discover`, `subscriptions/listen`,
 *     multi-round-trip `input_required` results (all served by the SDK's `createMcpHandler`).
 *
 * Usage (from this directory, with the pinned node@22 at node_modules/.bin/node):
 *   PORT=3000 node --import tsx conformance-fixture.ts      # HTTP on 127.0.0.1, endpoint /mcp
 *   node --import tsx conformance-fixture.ts --port 3000    # same; port 0 picks a free port
 *   node --import tsx conformance-fixture.ts --stdio        # MCP over stdin/stdout (both eras,
 *                                                           #  one era per process: the first message decides)
 * From another cwd give the loader's path: node --import $DIR/node_modules/tsx/dist/loader.mjs $DIR/conformance-fixture.ts
 * HTTP mode prints `conformance-fixture listening on http://127.0.0.1:<port>/mcp` on stderr when ready.
 * Add --ignore-routing-headers (HTTP) to make the fixture accept wrong/missing Mcp-Method/Mcp-Name.
 * Add --ndjson-listen (HTTP) to answer 2026-07-28 `subscriptions/listen` as newline-delimited JSON
 * under `application/json` (chunked, one message per line as it is written) instead of SSE.
 *
 * Deliberately NOT done here (a gateway in front must add them): Host/Origin (DNS-rebinding)
 * validation, CORS policy, auth. The SDK itself checks the Mcp-Method / Mcp-Name / Mcp-Param-*
 * headers on the 2026-07-28 path; by default that is left as shipped (see --ignore-routing-headers).
 */
import http from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  CLIENT_CAPABILITIES_META_KEY,
  McpServer,
  ResourceTemplate,
  acceptedContent,
  classifyInboundRequest,
  completable,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  inputRequired,
  isInitializeRequest,
  type CallToolResult,
  type EventStore,
  type GetPromptResult,
  type InputRequests,
  type InputRequiredResult,
  type McpHttpHandler,
  type ServerContext,
} from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { NodeStreamableHTTPServerTransport, toNodeHandler } from '@modelcontextprotocol/node';
import * as z from 'zod';

// ---------- test media (generated once for this fixture: 1x1 PNG, 8-sample 8 kHz WAV) ----------
const PNG_B64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNQSDgAAAHkAUGcFuGgAAAAAElFTkSuQmCC';
const WAV_B64 = 'UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAABslGyUbJRslA==';

// requestState integrity (SEP-2322): HMAC codec with a per-process key. The SDK verifies it before
// a handler runs and answers -32602 on tampering. One process serves every round, so this is enough.
const stateCodec = createRequestStateCodec<Record<string, unknown>>({ key: randomBytes(32) });

// Set in HTTP mode: the modern handler's subscriptions/listen bus, used by the trigger tools.
let modernHandler: McpHttpHandler | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (t: string): CallToolResult => ({ content: [{ type: 'text', text: t }] });
const noArgs = z.object({});
/** A request is 2026-07-28 era when it carried the per-request `_meta` envelope. */
const isModern = (ctx: ServerContext) => ctx.mcpReq.envelope !== undefined;
const nameSchema = { type: 'object' as const, properties: { name: { type: 'string' as const } }, required: ['name'] };

// ---------- the server definition (one factory for both eras, stdio and HTTP) ----------
function buildServer(): McpServer {
  const server = new McpServer(
    { name: 'warden-conformance-fixture', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {}, // 2025-era logging/setLevel (deprecated in 2026-07-28, harmless there)
        completions: {},
      },
      requestState: { verify: stateCodec.verify },
    },
  );
  registerContentTools(server);
  registerClientRequestTools(server);
  registerDiagnosticTools(server);
  registerInputRequiredTools(server);
  registerResources(server);
  registerPrompts(server);
  return server;
}

function registerContentTools(server: McpServer) {
  server.registerTool('test_simple_text', { description: 'Returns one text block', inputSchema: noArgs }, async () =>
    text('This is a simple text response for testing.'));
  server.registerTool('test_image_content', { description: 'Returns one PNG image block', inputSchema: noArgs }, async () => ({
    content: [{ type: 'image', data: PNG_B64, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Returns one WAV audio block', inputSchema: noArgs }, async () => ({
    content: [{ type: 'audio', data: WAV_B64, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Returns an embedded text resource', inputSchema: noArgs }, async () => ({
    content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
  }));
  server.registerTool('test_multiple_content_types', { description: 'Returns text, image and resource blocks', inputSchema: noArgs }, async () => ({
    content: [
      { type: 'text', text: 'Multiple content types test:' },
      { type: 'image', data: PNG_B64, mimeType: 'image/png' },
      { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) } },
    ],
  }));
  server.registerTool('test_error_handling', { description: 'Always fails (tool error, isError: true)', inputSchema: noArgs }, async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool('test_tool_with_logging', { description: 'Emits three info log messages ~50 ms apart', inputSchema: noArgs }, async (_a, ctx) => {
    for (const [i, msg] of ['Tool execution started', 'Tool processing data', 'Tool execution completed'].entries()) {
      if (i > 0) await sleep(50);
      await ctx.mcpReq.log('info', msg, 'conformance-fixture');
    }
    return text('Tool with logging executed successfully');
  });
  server.registerTool('test_tool_with_progress', { description: 'Reports progress 0/50/100 when given a progressToken', inputSchema: noArgs }, async (_a, ctx) => {
    const token = ctx.mcpReq._meta?.progressToken;
    for (const progress of [0, 50, 100]) {
      if (token !== undefined) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100, message: `step ${progress}/100` } });
      }
      if (progress < 100) await sleep(50);
    }
    return text(`Progress test completed (token ${String(token ?? 'none')})`);
  });
  server.registerTool(
    'json_schema_2020_12_tool',
    {
      description: 'Input schema uses JSON Schema 2020-12 keywords ($schema, $defs, $anchor, allOf/anyOf, if/then/else)',
      inputSchema: fromJsonSchema({
        $schema: 'https://json-schema.org/draft/2020-12/schema',
        type: 'object',
        $defs: { address: { $anchor: 'addressDef', type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
        properties: {
          name: { type: 'string' },
          address: { $ref: '#/$defs/address' },
          contactMethod: { type: 'string', enum: ['phone', 'email'] },
          phone: { type: 'string' },
          email: { type: 'string' },
        },
        allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
        if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
        then: { required: ['phone'] },
        else: { required: ['email'] },
        additionalProperties: false,
      }),
    },
    async (args) => text(`json_schema_2020_12_tool args: ${JSON.stringify(args)}`),
  );
  // SEP-2243: an argument mirrored into an `Mcp-Param-Region` header (arms the custom-header scenario).
  server.registerTool(
    'test_x_mcp_header',
    {
      description: 'Has an x-mcp-header annotated argument (Mcp-Param-Region)',
      inputSchema: fromJsonSchema<{ region?: string; level?: number }>({
        type: 'object',
        properties: { region: { type: 'string', 'x-mcp-header': 'Region' } as { type: 'string' }, level: { type: 'integer' } },
      }),
    },
    async (args) => text(`region=${args.region ?? '<none>'}`),
  );
}

/** 2025-era push requests to the client; on a 2026-07-28 request the same tools use input_required. */
function registerClientRequestTools(server: McpServer) {
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client for an LLM completion of `prompt`', inputSchema: z.object({ prompt: z.string().describe('Prompt for the LLM') }) },
    async ({ prompt }, ctx): Promise<CallToolResult | InputRequiredResult> => {
      const params = { messages: [{ role: 'user' as const, content: { type: 'text' as const, text: prompt } }], maxTokens: 100 };
      let reply: { content?: unknown } | undefined;
      if (isModern(ctx)) {
        reply = ctx.mcpReq.inputResponses?.llm as { content?: unknown } | undefined;
        if (!reply) return inputRequired({ inputRequests: { llm: inputRequired.createMessage(params) } });
      } else {
        reply = await ctx.mcpReq.requestSampling(params);
      }
      const c = reply?.content as { text?: string } | undefined;
      return text(`LLM response: ${c?.text ?? JSON.stringify(reply?.content)}`);
    },
  );
  const elicitTool = (name: string, description: string, message: (a: Record<string, unknown>) => string, requestedSchema: any, prefix: string, args: z.ZodObject = noArgs) =>
    server.registerTool(name, { description, inputSchema: args }, async (a, ctx): Promise<CallToolResult | InputRequiredResult> => {
      const params = { message: message(a as Record<string, unknown>), requestedSchema };
      let result: { action?: string; content?: unknown } | undefined;
      if (isModern(ctx)) {
        result = ctx.mcpReq.inputResponses?.form as typeof result;
        if (!result) return inputRequired({ inputRequests: { form: inputRequired.elicit(params) } });
      } else {
        result = await ctx.mcpReq.elicitInput(params);
      }
      return text(`${prefix}: action=${result?.action}, content=${JSON.stringify(result?.content ?? {})}`);
    });
  elicitTool('test_elicitation', 'Asks the client (form elicitation) for username and email', (a) => String(a.message), {
    type: 'object',
    properties: { username: { type: 'string', description: "User's response" }, email: { type: 'string', description: "User's email address" } },
    required: ['username', 'email'],
  }, 'User response', z.object({ message: z.string().describe('Message shown to the user') }));
  elicitTool('test_elicitation_sep1034_defaults', 'Elicitation whose fields carry default values (SEP-1034)', () => 'Review the fields (defaults pre-filled)', {
    type: 'object',
    properties: {
      name: { type: 'string', description: 'Name', default: 'John Doe' },
      age: { type: 'integer', description: 'Age', default: 30 },
      score: { type: 'number', description: 'Score', default: 95.5 },
      status: { type: 'string', description: 'Status', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', description: 'Verified', default: true },
    },
    required: [],
  }, 'Elicitation completed');
  elicitTool('test_elicitation_sep1330_enums', 'Elicitation with the five enum schema variants (SEP-1330)', () => 'Pick options', {
    type: 'object',
    properties: {
      untitledSingle: { type: 'string', description: 'Untitled single-select', enum: ['option1', 'option2', 'option3'] },
      titledSingle: {
        type: 'string', description: 'Titled single-select',
        oneOf: [{ const: 'value1', title: 'First Option' }, { const: 'value2', title: 'Second Option' }, { const: 'value3', title: 'Third Option' }],
      },
      legacyEnum: { type: 'string', description: 'Legacy titled enum', enum: ['opt1', 'opt2', 'opt3'], enumNames: ['Option One', 'Option Two', 'Option Three'] },
      untitledMulti: { type: 'array', description: 'Untitled multi-select', minItems: 1, maxItems: 3, items: { type: 'string', enum: ['option1', 'option2', 'option3'] } },
      titledMulti: {
        type: 'array', description: 'Titled multi-select', minItems: 1, maxItems: 3,
        items: { anyOf: [{ const: 'value1', title: 'First Choice' }, { const: 'value2', title: 'Second Choice' }, { const: 'value3', title: 'Third Choice' }] },
      },
    },
    required: [],
  }, 'Elicitation completed');
  // SEP-1699: close the request's SSE stream mid-call; the client resumes with Last-Event-ID.
  server.registerTool('test_reconnection', { description: 'Closes its SSE stream mid-call, answers after the client reconnects', inputSchema: noArgs }, async (_a, ctx) => {
    ctx.http?.closeSSE?.();
    await sleep(200);
    return text('Reconnection test completed: result delivered after the stream was closed.');
  });
}

/** Tools the 2026-07-28 `server-stateless` scenario probes by name. */
function registerDiagnosticTools(server: McpServer) {
  server.registerTool('test_missing_capability', { description: 'Needs the client sampling capability (input_required sampling)', inputSchema: noArgs }, async (_a, ctx) => {
    if (ctx.mcpReq.inputResponses?.pong === undefined) {
      return inputRequired({ inputRequests: { pong: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Say pong' } }], maxTokens: 8 }) } });
    }
    return text('sampling answered');
  });
  server.registerTool('test_streaming_elicitation', { description: 'Plain result; its response stream carries no server requests', inputSchema: noArgs }, async () =>
    text('result only'));
  server.registerTool('test_logging_tool', { description: 'Logs via the request log channel (sent only if the request set a logLevel)', inputSchema: noArgs }, async (_a, ctx) => {
    await ctx.mcpReq.log('info', 'test_logging_tool ran');
    return text('logged');
  });
  server.registerTool('test_trigger_tool_change', { description: 'Publishes notifications/tools/list_changed', inputSchema: noArgs }, async () => {
    if (modernHandler) modernHandler.notify.toolsChanged();
    else server.sendToolListChanged();
    return text('tools list_changed published');
  });
  server.registerTool('test_trigger_prompt_change', { description: 'Publishes notifications/prompts/list_changed', inputSchema: noArgs }, async () => {
    if (modernHandler) modernHandler.notify.promptsChanged();
    else server.sendPromptListChanged();
    return text('prompts list_changed published');
  });
}

/** SEP-2322 multi-round-trip tools (2026-07-28): input_required results, requestState round trips. */
function registerInputRequiredTools(server: McpServer) {
  const tool = (name: string, description: string, fn: (ctx: ServerContext) => Promise<CallToolResult | InputRequiredResult>) =>
    server.registerTool(name, { description, inputSchema: noArgs }, async (_a, ctx) => fn(ctx));

  tool('test_input_required_result_elicitation', 'Asks for the caller name (elicitation)', async (ctx) => {
    const got = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'user_name')?.name;
    if (typeof got !== 'string') {
      return inputRequired({ inputRequests: { user_name: inputRequired.elicit({ message: 'What is your name?', requestedSchema: nameSchema }) } });
    }
    return text(`Hello, ${got}!`);
  });
  tool('test_input_required_result_sampling', 'Asks for an LLM completion (sampling)', async (ctx) => {
    const r = ctx.mcpReq.inputResponses?.capital_question as { content?: { text?: string } } | undefined;
    if (!r) {
      return inputRequired({ inputRequests: { capital_question: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'What is the capital of France?' } }], maxTokens: 100 }) } });
    }
    return text(`Sampling response: ${r.content?.text ?? JSON.stringify(r)}`);
  });
  tool('test_input_required_result_list_roots', 'Asks for the client roots', async (ctx) => {
    const r = ctx.mcpReq.inputResponses?.client_roots as { roots?: { uri?: string }[] } | undefined;
    if (!Array.isArray(r?.roots)) return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
    return text(`Roots (${r.roots.length}): ${r.roots.map((x) => x.uri).join(', ')}`);
  });
  const confirm = () => inputRequired.elicit({ message: 'Please confirm', requestedSchema: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] } });
  tool('test_input_required_result_request_state', 'Round-trips HMAC-protected requestState', async (ctx) => {
    const ok = acceptedContent(ctx.mcpReq.inputResponses, 'confirm');
    const state = ctx.mcpReq.requestState<Record<string, unknown>>();
    if (ok === undefined || state?.tool !== 'request_state') {
      return inputRequired({ inputRequests: { confirm: confirm() }, requestState: await stateCodec.mint({ tool: 'request_state', nonce: randomUUID() }) });
    }
    return text('state-ok: requestState verified, confirmation received');
  });
  tool('test_input_required_result_tampered_state', 'Rejects a tampered requestState (-32602, done by the SDK codec)', async (ctx) => {
    if (ctx.mcpReq.requestState() !== undefined && acceptedContent(ctx.mcpReq.inputResponses, 'confirm') !== undefined) {
      return text('integrity-ok');
    }
    return inputRequired({ inputRequests: { confirm: confirm() }, requestState: await stateCodec.mint({ tool: 'tampered_state', nonce: randomUUID() }) });
  });
  tool('test_input_required_result_multiple_inputs', 'Asks for elicitation, sampling and roots in one round', async (ctx) => {
    const res = ctx.mcpReq.inputResponses;
    const name = acceptedContent<{ name: string }>(res, 'user_name')?.name;
    const greeting = (res?.greeting as { content?: { text?: string } } | undefined)?.content?.text;
    const roots = (res?.client_roots as { roots?: unknown[] } | undefined)?.roots;
    if (typeof name !== 'string' || typeof greeting !== 'string' || !Array.isArray(roots)) {
      return inputRequired({
        inputRequests: {
          user_name: inputRequired.elicit({ message: 'What is your name?', requestedSchema: nameSchema }),
          greeting: inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }], maxTokens: 50 }),
          client_roots: inputRequired.listRoots(),
        },
        requestState: await stateCodec.mint({ tool: 'multiple_inputs' }),
      });
    }
    return text(`${greeting} ${name} (${roots.length} roots)`);
  });
  tool('test_input_required_result_multi_round', 'Two elicitation rounds with evolving requestState', async (ctx) => {
    const state = ctx.mcpReq.requestState<Record<string, unknown>>();
    const round = state?.tool === 'multi_round' ? Number(state.round) : 0;
    if (round === 0) {
      return inputRequired({
        inputRequests: { step1: inputRequired.elicit({ message: 'Step 1: What is your name?', requestedSchema: nameSchema }) },
        requestState: await stateCodec.mint({ tool: 'multi_round', round: 1 }),
      });
    }
    if (round === 1) {
      const name = acceptedContent<{ name: string }>(ctx.mcpReq.inputResponses, 'step1')?.name ?? 'unknown';
      return inputRequired({
        inputRequests: {
          step2: inputRequired.elicit({ message: 'Step 2: What is your favorite color?', requestedSchema: { type: 'object', properties: { color: { type: 'string' } }, required: ['color'] } }),
        },
        requestState: await stateCodec.mint({ tool: 'multi_round', round: 2, name }),
      });
    }
    const color = acceptedContent<{ color: string }>(ctx.mcpReq.inputResponses, 'step2')?.color ?? 'unknown';
    return text(`Multi-round complete: ${String(state?.name)} likes ${color}`);
  });
  tool('test_input_required_result_capabilities', 'Only requests input kinds the client declared in _meta', async (ctx) => {
    if (ctx.mcpReq.inputResponses !== undefined) return text('capability-aware inputs received');
    // (the published type of `envelope` is `{}`; the key is there at run time)
    const envelope = ctx.mcpReq.envelope as Record<string, Record<string, unknown> | undefined> | undefined;
    const caps = envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? {};
    const req: InputRequests = {};
    if (caps.elicitation !== undefined) req.user_name = inputRequired.elicit({ message: 'What is your name?', requestedSchema: nameSchema });
    if (caps.sampling !== undefined) req.greeting = inputRequired.createMessage({ messages: [{ role: 'user', content: { type: 'text', text: 'Generate a greeting' } }], maxTokens: 50 });
    if (caps.roots !== undefined) req.client_roots = inputRequired.listRoots();
    return Object.keys(req).length ? inputRequired({ inputRequests: req }) : text('no declared capability allows an input request');
  });
}

function registerResources(server: McpServer) {
  const subscriptions = new Set<string>(); // 2025-era resources/subscribe bookkeeping (per session)
  server.registerResource('static-text', 'test://static-text', { title: 'Static text', description: 'A static text resource', mimeType: 'text/plain' }, async () => ({
    contents: [{ uri: 'test://static-text', mimeType: 'text/plain', text: 'This is the content of the static text resource.' }],
  }));
  server.registerResource('static-binary', 'test://static-binary', { title: 'Static binary', description: 'A static PNG resource', mimeType: 'image/png' }, async () => ({
    contents: [{ uri: 'test://static-binary', mimeType: 'image/png', blob: PNG_B64 }],
  }));
  server.registerResource('watched-resource', 'test://watched-resource', { title: 'Watched', description: 'A resource clients may subscribe to', mimeType: 'text/plain' }, async () => ({
    contents: [{ uri: 'test://watched-resource', mimeType: 'text/plain', text: 'Watched resource content' }],
  }));
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined, complete: { id: (v) => ['1', '2', '123'].filter((x) => x.startsWith(v)) } }),
    { title: 'Template', description: 'Resource template test://template/{id}/data', mimeType: 'application/json' },
    async (uri, vars) => ({
      contents: [{ uri: uri.toString(), mimeType: 'application/json', text: JSON.stringify({ id: vars.id, templateTest: true, data: `Data for ID: ${vars.id}` }) }],
    }),
  );
  server.server.setRequestHandler('resources/subscribe', async (req) => {
    subscriptions.add(req.params.uri);
    return {};
  });
  server.server.setRequestHandler('resources/unsubscribe', async (req) => {
    subscriptions.delete(req.params.uri);
    return {};
  });
}

function registerPrompts(server: McpServer) {
  const user = (content: any) => ({ role: 'user' as const, content });
  server.registerPrompt('test_simple_prompt', { title: 'Simple prompt', description: 'A prompt without arguments' }, async (): Promise<GetPromptResult> => ({
    messages: [user({ type: 'text', text: 'This is a simple prompt for testing.' })],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    {
      title: 'Prompt with arguments',
      description: 'A prompt with two required arguments',
      argsSchema: z.object({
        arg1: completable(z.string().describe('First test argument'), (v) => ['paris', 'park', 'party'].filter((x) => x.startsWith(v))),
        arg2: z.string().describe('Second test argument'),
      }),
    },
    async ({ arg1, arg2 }): Promise<GetPromptResult> => ({ messages: [user({ type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` })] }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { title: 'Prompt with embedded resource', description: 'Embeds the resource named by resourceUri', argsSchema: z.object({ resourceUri: z.string().describe('URI of the resource to embed') }) },
    async ({ resourceUri }): Promise<GetPromptResult> => ({
      messages: [
        user({ type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
        user({ type: 'text', text: 'Please process the embedded resource above.' }),
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { title: 'Prompt with image', description: 'A prompt containing an image' }, async (): Promise<GetPromptResult> => ({
    messages: [user({ type: 'image', data: PNG_B64, mimeType: 'image/png' }), user({ type: 'text', text: 'Please analyze the image above.' })],
  }));
  // SEP-2322 on prompts/get. Without argsSchema the callback receives only the context.
  server.registerPrompt('test_input_required_result_prompt', { title: 'MRTR prompt', description: 'Needs an elicited context before rendering' }, (async (c: unknown) => {
    const ctx = c as ServerContext;
    const context = acceptedContent<{ context: string }>(ctx.mcpReq.inputResponses, 'user_context')?.context;
    if (typeof context !== 'string') {
      return inputRequired({
        inputRequests: { user_context: inputRequired.elicit({ message: 'What context should the prompt use?', requestedSchema: { type: 'object', properties: { context: { type: 'string' } }, required: ['context'] } }) },
      });
    }
    return { messages: [user({ type: 'text', text: `Context: ${context}` })] };
  }) as any);
}

// ---------- 2025-era HTTP sessions (Mcp-Session-Id), with an in-memory event store for resumption ----------
function memoryEventStore(): EventStore {
  const events: { id: string; stream: string; message: unknown }[] = [];
  let seq = 0;
  return {
    async storeEvent(stream, message) {
      const id = `${stream}.${++seq}`;
      events.push({ id, stream, message });
      return id;
    },
    async replayEventsAfter(lastId, { send }) {
      const at = events.findIndex((e) => e.id === lastId);
      if (at < 0) throw new Error(`unknown event id ${lastId}`);
      const stream = events[at].stream;
      for (const e of events.slice(at + 1)) if (e.stream === stream) await send(e.id, e.message as any);
      return stream;
    },
  };
}

const sessions = new Map<string, NodeStreamableHTTPServerTransport>();

function sendJsonRpcError(res: http.ServerResponse, status: number, code: number, message: string) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
}

async function handleLegacy(req: http.IncomingMessage, res: http.ServerResponse, body: unknown) {
  const sid = req.headers['mcp-session-id'] as string | undefined;
  const known = sid ? sessions.get(sid) : undefined;
  if (known) return known.handleRequest(req, res, body);
  if (sid) return sendJsonRpcError(res, 404, -32001, 'Session not found');
  if (req.method !== 'POST' || !isInitializeRequest(body)) return sendJsonRpcError(res, 400, -32000, 'Bad Request: no valid session id');
  const server = buildServer();
  const transport: NodeStreamableHTTPServerTransport = new NodeStreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    eventStore: memoryEventStore(),
    retryInterval: 1000,
    onsessioninitialized: (id) => void sessions.set(id, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) sessions.delete(transport.sessionId);
    void server.close();
  };
  await server.connect(transport);
  return transport.handleRequest(req, res, body);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c)).on('end', () => resolve(Buffer.concat(chunks).toString('utf8'))).on('error', reject);
  });
}

/**
 * --ignore-routing-headers: make the fixture behave like a server that does not check the SEP-2243
 * routing headers. The SDK always checks Mcp-Method / Mcp-Name against the body on the 2026-07-28
 * path, so this mode rewrites both from the body before the SDK sees them (a mismatched or missing
 * header is then accepted). Mcp-Param-* headers are left as sent. Off by default.
 */
function overwriteRoutingHeaders(req: http.IncomingMessage, body: unknown) {
  const msg = body as { method?: unknown; params?: { name?: unknown; uri?: unknown } } | undefined;
  if (typeof msg?.method !== 'string') return;
  req.headers['mcp-method'] = msg.method;
  const name = msg.method === 'resources/read' ? msg.params?.uri : msg.params?.name;
  if (['tools/call', 'prompts/get', 'resources/read'].includes(msg.method) && typeof name === 'string') req.headers['mcp-name'] = name;
  else delete req.headers['mcp-name'];
}

/**
 * --ndjson-listen: answer `subscriptions/listen` the way some servers do — the same messages, as
 * newline-delimited JSON under `application/json`, each line written the moment the SDK writes its
 * SSE event (a gateway in front must relay them as they come, not when the stream ends). Off by
 * default; other answers are untouched.
 */
function ndjsonListen(handler: McpHttpHandler): Pick<McpHttpHandler, 'fetch'> {
  return {
    fetch: async (request, options) => {
      const response = await handler.fetch(request, options);
      const sse = (response.headers.get('content-type') ?? '').startsWith('text/event-stream');
      if (request.headers.get('mcp-method') !== 'subscriptions/listen' || !sse || !response.body) return response;
      const decoder = new TextDecoder();
      const encoder = new TextEncoder();
      let pending = '';
      const lines = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, out) {
          pending += decoder.decode(chunk, { stream: true }).replace(/\r\n?/g, '\n');
          for (let end = pending.indexOf('\n\n'); end >= 0; end = pending.indexOf('\n\n')) {
            const block = pending.slice(0, end);
            pending = pending.slice(end + 2);
            const data = block
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.replace(/^data: ?/, ''))
              .join('\n');
            if (data) out.enqueue(encoder.encode(`${data}\n`)); // keep-alive comments carry no data
          }
        },
      });
      const headers = new Headers(response.headers);
      headers.set('content-type', 'application/json');
      return new Response(response.body.pipeThrough(lines), { status: response.status, headers });
    },
  };
}

function serveHttp(port: number) {
  // 2026-07-28 traffic: the SDK's stateless handler; 2025-era traffic is routed to our sessions above.
  modernHandler = createMcpHandler(() => buildServer(), { legacy: 'reject', onerror: (e) => console.error('[modern]', e.message) });
  const modernNode = toNodeHandler(argv.includes('--ndjson-listen') ? ndjsonListen(modernHandler) : modernHandler);
  const header = (req: http.IncomingMessage, name: string) => [req.headers[name]].flat()[0];

  const httpServer = http.createServer(async (req, res) => {
    try {
      if (new URL(req.url ?? '/', 'http://x').pathname !== '/mcp') return void res.writeHead(404).end('Not Found');
      let body: unknown;
      if (req.method === 'POST') {
        try {
          body = JSON.parse(await readBody(req));
        } catch {
          return sendJsonRpcError(res, 400, -32700, 'Parse error');
        }
      }
      const route = classifyInboundRequest({
        httpMethod: req.method ?? 'GET',
        protocolVersionHeader: header(req, 'mcp-protocol-version'),
        mcpMethodHeader: header(req, 'mcp-method'),
        mcpNameHeader: header(req, 'mcp-name'),
        body,
      });
      if (route.kind === 'legacy') return void (await handleLegacy(req, res, body));
      if (ignoreRoutingHeaders) overwriteRoutingHeaders(req, body);
      await modernNode(req, res, body);
    } catch (e) {
      console.error('[http]', e);
      if (!res.headersSent) sendJsonRpcError(res, 500, -32603, 'Internal error');
    }
  });
  httpServer.listen(port, '127.0.0.1', () => {
    const addr = httpServer.address() as { port: number };
    console.error(`conformance-fixture listening on http://127.0.0.1:${addr.port}/mcp`);
  });
  const stop = () => {
    for (const t of sessions.values()) void t.close();
    void modernHandler?.close();
    httpServer.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on('SIGTERM', stop).on('SIGINT', stop);
}

// ---------- entry ----------
const argv = process.argv.slice(2);
const ignoreRoutingHeaders = argv.includes('--ignore-routing-headers');
if (argv.includes('--stdio')) {
  serveStdio(() => buildServer(), { onerror: (e) => console.error('[stdio]', e.message) });
} else {
  const i = argv.indexOf('--port');
  const port = Number(i >= 0 ? argv[i + 1] : (process.env.PORT ?? 3000));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port: ${String(port)}`);
  serveHttp(port);
}
