// The official TypeScript MCP SDK v2 client (@modelcontextprotocol/client)
// against sqlmcp over Streamable HTTP.
//
//   node ts_sdk2.mjs URL USER_ID MODE CALLS
//
// MODE is how the client negotiates: `auto` (probes `server/discover`, falls
// back to `initialize`), `legacy` (the `initialize` handshake only; the SDK's
// default) or a pinned modern version (`2026-07-28`). CALLS is a JSON array
// of {"name": ..., "arguments": {...}}. The client sends
// `x-rls-user-id: USER_ID` with every request, lists the tools, makes the
// calls, and prints one JSON object on stdout (the same shape as the Python
// clients').
import { readFileSync } from 'node:fs';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';

const [url, userId, mode, calls] = process.argv.slice(2);
const sdk = JSON.parse(
  readFileSync(new URL('./node_modules/@modelcontextprotocol/client/package.json', import.meta.url)),
).version;

const hints = (result) =>
  result ? { ttlMs: result.ttlMs ?? null, cacheScope: result.cacheScope ?? null } : null;
const outcome = (result) => ({
  isError: Boolean(result.isError),
  structured: result.structuredContent ?? null,
  text: (result.content ?? []).filter((block) => block.type === 'text').map((block) => block.text),
});

const client = new Client(
  { name: 'sqlmcp-tests-ts-sdk2', version: '0' },
  { versionNegotiation: { mode: mode === 'auto' || mode === 'legacy' ? mode : { pin: mode } } },
);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { 'x-rls-user-id': userId } },
});
await client.connect(transport);
const discover = client.getDiscoverResult();
const listed = await client.listTools();
const results = [];
for (const call of JSON.parse(calls)) {
  results.push(outcome(await client.callTool({ name: call.name, arguments: call.arguments })));
}
const report = {
  sdk: `@modelcontextprotocol/client ${sdk}`,
  mode,
  protocolVersion: client.getNegotiatedProtocolVersion(),
  serverInfo: client.getServerVersion() ?? null,
  discover: discover ? { supportedVersions: discover.supportedVersions, ...hints(discover) } : null,
  session: transport.sessionId !== undefined,
  tools: listed.tools.map((tool) => tool.name),
  toolsListHints: hints(listed),
  calls: results,
};
await client.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
