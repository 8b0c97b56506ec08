// LangChain JS ChatOpenAI against the gateway's OpenAI-compatible API:
// configuration.baseURL <gateway>/v1 and the gateway key as apiKey.
// invoke, stream (with usage), and a bound tool.
import { ChatOpenAI } from "@langchain/openai";

const llm = new ChatOpenAI({
  model: process.env.GW_MODEL,
  apiKey: process.env.GW_KEY,
  configuration: { baseURL: process.env.GW_BASE + "/v1" },
  maxRetries: 0,
  streamUsage: true,
});
const out = {};
const res = await llm.invoke("hello there gateway");
out.invoke = { text: res.content, usage: res.usage_metadata };
let text = "", chunks = 0, usage = null;
for await (const chunk of await llm.stream("hello there gateway")) {
  chunks++;
  if (typeof chunk.content === "string") text += chunk.content;
  if (chunk.usage_metadata) usage = chunk.usage_metadata;
}
out.stream = { text, chunks, usage };
const withTool = llm.bindTools([{
  type: "function",
  function: { name: "get_weather", description: "Weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] } },
}]);
const call = await withTool.invoke("What is the weather in Paris?");
out.tool = { calls: call.tool_calls };
console.log(JSON.stringify(out));
