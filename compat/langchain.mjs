// LangChain JS ChatBedrockConverse with a custom endpoint (endpointHost:
// the client then calls https://<endpointHost>) and the gateway key as a
// Bedrock bearer token (AWS_BEARER_TOKEN_BEDROCK, read by LangChain and
// given to the AWS SDK with authSchemePreference httpBearerAuth).
import { ChatBedrockConverse } from "@langchain/aws";

const llm = new ChatBedrockConverse({
  model: process.env.GW_MODEL,
  region: process.env.AWS_REGION,
  endpointHost: process.env.GW_HOST,
  maxTokens: 64,
  maxRetries: 0,
});
const out = {};
const res = await llm.invoke("hello there gateway");
out.invoke = { text: res.content, usage: res.usage_metadata };
let text = "", chunks = 0;
for await (const chunk of await llm.stream("hello there gateway")) {
  chunks++;
  if (typeof chunk.content === "string") text += chunk.content;
}
if (chunks === 0) throw new Error("stream: no chunks");
out.stream = { text, chunks };
console.log(JSON.stringify(out));
