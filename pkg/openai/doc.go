// Package openai translates between OpenAI's Chat Completions API and
// Bedrock's Converse API, so that apps written against the OpenAI SDKs can
// call any Bedrock model through the gateway and be billed per user like
// every other call.
//
// It is pure translation: bytes in, bytes out, no network. The request
// side (request.go) parses and validates a Chat Completions request and
// builds the Converse request body, refusing with a *RequestError what
// Converse cannot do rather than dropping it silently. The response side
// (response.go, stream.go) turns a Converse answer into a chat.completion
// and ConverseStream events into chat.completion.chunk server-sent events;
// errors.go writes errors in OpenAI's shape, so the SDKs raise their typed
// errors.
package openai
