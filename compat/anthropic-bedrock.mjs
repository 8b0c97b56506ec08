// Anthropic's Bedrock SDK (@anthropic-ai/bedrock-sdk) with baseURL set to
// the gateway and the gateway key as its documented Bedrock API key
// (AWS_BEARER_TOKEN_BEDROCK, sent as Authorization: Bearer): one
// messages.create, then the same with stream: true.
import AnthropicBedrock from "@anthropic-ai/bedrock-sdk";

const client = new AnthropicBedrock({
  baseURL: process.env.GW_URL,
  awsRegion: process.env.AWS_REGION,
  // apiKey defaults to process.env.AWS_BEARER_TOKEN_BEDROCK.
  maxRetries: 0,
});
const model = process.env.GW_MODEL;
const out = {};

const msg = await client.messages.create({
  model,
  max_tokens: 64,
  messages: [{ role: "user", content: "hello there gateway" }],
});
out.create = { text: msg.content[0].text, usage: msg.usage };

const stream = await client.messages.create({
  model,
  max_tokens: 64,
  messages: [{ role: "user", content: "hello there gateway" }],
  stream: true,
});
let text = "", events = 0, stopped = false;
for await (const ev of stream) {
  events++;
  if (ev.type === "content_block_delta") text += ev.delta.text ?? "";
  if (ev.type === "message_stop") stopped = true;
}
if (!stopped) throw new Error(`stream: ${events} events, no message_stop`);
out.stream = { text, events };
console.log(JSON.stringify(out));
