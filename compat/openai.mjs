// The official OpenAI Node SDK against the gateway's OpenAI-compatible
// API: baseURL <gateway>/v1 and the gateway key as apiKey. Chat (through
// Converse), streaming with usage, a tool-call round trip plain and
// streamed, a model Bedrock serves natively, embeddings, the models list,
// and a bad key raising the SDK's AuthenticationError.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GW_BASE + "/v1", apiKey: process.env.GW_KEY, maxRetries: 0 });
const model = process.env.GW_MODEL;
const tools = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];
const out = {};

const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: "hello there gateway" }] });
out.chat = { text: chat.choices[0].message.content, usage: chat.usage, finish: chat.choices[0].finish_reason };

let text = "", usage = null, chunks = 0;
const stream = await client.chat.completions.create({
  model, messages: [{ role: "user", content: "hello there gateway" }], stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  chunks++;
  if (chunk.choices.length > 0) text += chunk.choices[0].delta.content ?? "";
  if (chunk.usage) usage = chunk.usage;
}
out.stream = { text, usage, chunks };

const ask = [{ role: "user", content: "What is the weather in Paris?" }];
const call = await client.chat.completions.create({ model, messages: ask, tools });
const toolCall = call.choices[0].message.tool_calls?.[0];
if (!toolCall) throw new Error("no tool call: " + JSON.stringify(call));
const answered = await client.chat.completions.create({
  model, tools,
  messages: [...ask, call.choices[0].message, { role: "tool", tool_call_id: toolCall.id, content: "sunny, 21°C" }],
});
out.tools = {
  finish: call.choices[0].finish_reason, name: toolCall.function.name, arguments: JSON.parse(toolCall.function.arguments),
  answer: answered.choices[0].message.content, answerFinish: answered.choices[0].finish_reason,
};

let streamedName = "", streamedArgs = "", streamedFinish = null;
for await (const chunk of await client.chat.completions.create({ model, messages: ask, tools, stream: true })) {
  const choice = chunk.choices[0];
  if (!choice) continue;
  for (const tc of choice.delta.tool_calls ?? []) {
    if (tc.function?.name) streamedName += tc.function.name;
    if (tc.function?.arguments) streamedArgs += tc.function.arguments;
  }
  if (choice.finish_reason) streamedFinish = choice.finish_reason;
}
out.toolsStream = { name: streamedName, arguments: JSON.parse(streamedArgs), finish: streamedFinish };

const native = await client.chat.completions.create({
  model: process.env.GW_NATIVE_MODEL, messages: [{ role: "user", content: "hello there" }],
});
out.native = { text: native.choices[0].message.content, usage: native.usage };

// The SDK asks for base64 by default and decodes it.
const emb = await client.embeddings.create({ model: process.env.GW_EMBED_MODEL, input: ["hello there", "gateway"] });
out.embeddings = { count: emb.data.length, dims: emb.data.map((d) => d.embedding.length), usage: emb.usage };

const models = [];
for await (const m of client.models.list()) models.push(m.id);
out.models = models;

try {
  await new OpenAI({ baseURL: process.env.GW_BASE + "/v1", apiKey: "sk-not-a-gateway-key", maxRetries: 0 })
    .chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
  out.badKey = "no error";
} catch (err) {
  out.badKey = err instanceof OpenAI.AuthenticationError ? "AuthenticationError" : String(err);
}
console.log(JSON.stringify(out));
