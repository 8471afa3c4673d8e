// The TypeScript SDK's MCP client (@modelcontextprotocol/sdk, installed in .ci/node by .ci/conformance-node) against
// an MCP endpoint: lists every tool (following cursors), then calls each tool named on the command line, answering
// an elicitation with ELICITATION_ACTION (accept, decline or cancel; none: the capability is not declared).
//
//   node tests/clients/typescript_client.mjs URL TOOL ARGUMENTS_JSON [TOOL ARGUMENTS_JSON ...]
//
// Environment: MCP_TS_SDK (the SDK's folder), MCP_API_KEY (the bearer token). Prints one JSON document:
// {"protocolVersion", "serverInfo", "tools": [names], "results": [CallToolResult, ...]}.
import { pathToFileURL } from "node:url";

const sdk = process.env.MCP_TS_SDK;
const load = (path) => import(pathToFileURL(`${sdk}/dist/esm/${path}`).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const { ElicitRequestSchema } = await load("types.js");

const [url, ...calls] = process.argv.slice(2);
const action = process.env.ELICITATION_ACTION;
const client = new Client(
  { name: "typescript-sdk-test-client", version: "1.0.0" },
  { capabilities: action ? { elicitation: { form: {} } } : {} },
);
if (action) {
  client.setRequestHandler(ElicitRequestSchema, async () => ({ action, ...(action === "accept" ? { content: {} } : {}) }));
}
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_API_KEY}` } },
});
await client.connect(transport);

const tools = [];
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : {});
  tools.push(...page.tools.map((tool) => tool.name));
  cursor = page.nextCursor;
} while (cursor);

const results = [];
for (let i = 0; i < calls.length; i += 2) {
  results.push(await client.callTool({ name: calls[i], arguments: JSON.parse(calls[i + 1]) }));
}
console.log(
  JSON.stringify({
    protocolVersion: transport.protocolVersion,
    serverInfo: client.getServerVersion(),
    tools,
    results,
  }),
);
await transport.terminateSession();
await client.close();
