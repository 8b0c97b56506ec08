// AWS SDK for JavaScript v3 with its default configuration, pointed at the
// gateway the way an unmodified app is: AWS_ENDPOINT_URL_BEDROCK_RUNTIME,
// AWS_BEARER_TOKEN_BEDROCK and AWS_REGION from the environment; TLS trust
// through NODE_EXTRA_CA_CERTS. Prints one JSON object with what each call
// returned; exits non-zero on the first failure.
import {
  BedrockRuntimeClient,
  ConverseCommand,
  ConverseStreamCommand,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
  CountTokensCommand,
} from "@aws-sdk/client-bedrock-runtime";

const model = process.env.GW_MODEL;
const countModel = process.env.GW_COUNT_MODEL;
const client = new BedrockRuntimeClient({}); // default configuration
const messages = [{ role: "user", content: [{ text: "hello there gateway" }] }];
const body = JSON.stringify({
  anthropic_version: "bedrock-2023-05-31",
  max_tokens: 64,
  messages: [{ role: "user", content: "one two three" }],
});
const out = {};

const conv = await client.send(new ConverseCommand({ modelId: model, messages }));
out.converse = { text: conv.output.message.content[0].text, usage: conv.usage };

const cs = await client.send(new ConverseStreamCommand({ modelId: model, messages }));
let csText = "", csUsage = null;
for await (const ev of cs.stream) {
  if (ev.contentBlockDelta) csText += ev.contentBlockDelta.delta.text ?? "";
  if (ev.metadata) csUsage = ev.metadata.usage;
}
if (!csUsage) throw new Error("ConverseStream: no metadata event with usage");
out.converseStream = { text: csText, usage: csUsage };

const inv = await client.send(new InvokeModelCommand({ modelId: model, body, contentType: "application/json", accept: "application/json" }));
const invBody = JSON.parse(new TextDecoder().decode(inv.body));
out.invokeModel = { text: invBody.content[0].text, usage: invBody.usage };

const is = await client.send(new InvokeModelWithResponseStreamCommand({ modelId: model, body, contentType: "application/json" }));
let chunks = 0, isText = "";
for await (const ev of is.body) {
  if (!ev.chunk) continue;
  chunks++;
  const c = JSON.parse(new TextDecoder().decode(ev.chunk.bytes));
  if (c.type === "content_block_delta") isText += c.delta.text ?? "";
}
if (chunks === 0) throw new Error("InvokeModelWithResponseStream: no chunks");
out.invokeModelWithResponseStream = { text: isText, chunks };

const ct = await client.send(new CountTokensCommand({ modelId: countModel, input: { converse: { messages } } }));
if (!(ct.inputTokens > 0)) throw new Error(`CountTokens: inputTokens = ${ct.inputTokens}`);
out.countTokens = { inputTokens: ct.inputTokens };

// Which HTTP version the default handler spoke (NodeHttpHandler: HTTP/1.1).
out.requestHandler = client.config.requestHandler?.constructor?.name ?? "unknown";
console.log(JSON.stringify(out));
