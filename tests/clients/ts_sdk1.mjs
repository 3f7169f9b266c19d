// The official TypeScript MCP SDK v1 client (@modelcontextprotocol/sdk)
// against sqlmcp over Streamable HTTP. It speaks the 2025 revisions only, so
// it always negotiates with `initialize`.
//
//   node ts_sdk1.mjs URL USER_ID legacy CALLS
//
// CALLS is a JSON array of {"name": ..., "arguments": {...}}. The client
// sends `x-rls-user-id: USER_ID` with every request, lists the tools, makes
// the calls, and prints one JSON object on stdout (the same shape as the
// other clients').
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const [url, userId, mode, calls] = process.argv.slice(2);
if (mode !== 'legacy') {
  throw new Error(`the v1 SDK has no negotiation mode ${mode}: it only speaks the 2025 revisions`);
}
const sdk = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/sdk/package.json', import.meta.url)),
).version;

const hints = (result) => ({ ttlMs: result.ttlMs ?? null, cacheScope: result.cacheScope ?? null });
const outcome = (result) => ({
  isError: Boolean(result.isError),
  structured: result.structuredContent ?? null,
  text: (result.content ?? []).filter((block) => block.type === 'text').map((block) => block.text),
});

const client = new Client({ name: 'sqlmcp-tests-ts-sdk1', version: '0' });
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { 'x-rls-user-id': userId } },
});
await client.connect(transport);
const listed = await client.listTools();
const results = [];
for (const call of JSON.parse(calls)) {
  results.push(outcome(await client.callTool({ name: call.name, arguments: call.arguments })));
}
const report = {
  sdk: `@modelcontextprotocol/sdk ${sdk}`,
  mode,
  protocolVersion: transport.protocolVersion ?? null,
  serverInfo: client.getServerVersion() ?? null,
  discover: null,
  session: transport.sessionId !== undefined,
  tools: listed.tools.map((tool) => tool.name),
  toolsListHints: hints(listed),
  calls: results,
};
await client.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
