package openai

// The response side: a Converse answer becomes an OpenAI chat.completion.
//
// Shapes, checked against the SDKs' types (openai-go chatcompletion.go
// ChatCompletion, ChatCompletionChoice, ChatCompletionMessage,
// ChatCompletionMessageFunctionToolCall; completion.go CompletionUsage and
// CompletionUsagePromptTokensDetails; openai-node
// src/resources/completions.ts CompletionUsage) and Bedrock's (Converse API
// reference: ConverseOutput, ContentBlock, ToolUseBlock, StopReason,
// TokenUsage). Only what the SDKs read and Bedrock can supply is written:
// no system_fingerprint (Bedrock has none; the SDKs treat it as optional),
// logprobs and refusal always null (Converse has neither).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// cvAnswer is the part of a Converse answer a chat.completion carries.
// Unknown members (metrics, trace, additionalModelResponseFields,
// performanceConfig, serviceTier, and the "p" padding Bedrock is observed
// to add) are ignored.
type cvAnswer struct {
	Output struct {
		Message *struct {
			Content []cvBlock `json:"content"`
		} `json:"message"`
	} `json:"output"`
	StopReason string   `json:"stopReason"`
	Usage      *cvUsage `json:"usage"`
}

// cvBlock is a Converse ContentBlock of an assistant message. Only text,
// toolUse and citationsContent become part of the chat.completion:
//   - reasoningContent (extended thinking) is dropped. Chat Completions has
//     no field for it (the SDKs' ChatCompletionMessage has content, refusal,
//     tool_calls, audio, annotations); the non-standard reasoning_content
//     some servers send is not something an OpenAI SDK reads, and the
//     tokens are still counted in completion_tokens, as OpenAI counts its
//     own reasoning tokens there.
//   - citationsContent carries the generated text when document citations
//     are on; its text is kept so no answer text is lost, the citations
//     themselves are dropped (no Chat Completions equivalent).
//   - image, document, toolResult, guardrail and cachePoint blocks do not
//     occur in an assistant answer in text form and are ignored.
type cvBlock struct {
	Text             *string          `json:"text"`
	ToolUse          *cvToolUse       `json:"toolUse"`
	CitationsContent *cvCitationsText `json:"citationsContent"`
}

// cvToolUse is a Converse ToolUseBlock; Input is the tool's input
// document (any JSON value, an object in practice).
type cvToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

// cvCitationsText is the generated text of a Converse
// CitationsContentBlock.
type cvCitationsText struct {
	Content []struct {
		Text string `json:"text"`
	} `json:"content"`
}

// cvUsage is a Converse TokenUsage (the metadata event of ConverseStream
// carries the same shape).
type cvUsage struct {
	InputTokens           int64 `json:"inputTokens"`
	OutputTokens          int64 `json:"outputTokens"`
	CacheReadInputTokens  int64 `json:"cacheReadInputTokens"`
	CacheWriteInputTokens int64 `json:"cacheWriteInputTokens"`
}

// outCompletion is a chat.completion object.
type outCompletion struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []outChoice `json:"choices"`
	Usage   *outUsage   `json:"usage,omitempty"`
}

type outChoice struct {
	Index        int        `json:"index"`
	Message      outMessage `json:"message"`
	Logprobs     *struct{}  `json:"logprobs"` // always null
	FinishReason string     `json:"finish_reason"`
}

// outMessage is the assistant message. Content is null when the answer
// is only tool calls, as OpenAI sends it; refusal is required by the SDK
// types (nullable) and always null here.
type outMessage struct {
	Role      string        `json:"role"`
	Content   *string       `json:"content"`
	Refusal   *string       `json:"refusal"`
	ToolCalls []outToolCall `json:"tool_calls,omitempty"`
}

type outToolCall struct {
	ID       string      `json:"id"`
	Type     string      `json:"type"`
	Function outFunction `json:"function"`
}

type outFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// outUsage is OpenAI's CompletionUsage.
type outUsage struct {
	PromptTokens        int64            `json:"prompt_tokens"`
	CompletionTokens    int64            `json:"completion_tokens"`
	TotalTokens         int64            `json:"total_tokens"`
	PromptTokensDetails outPromptDetails `json:"prompt_tokens_details"`
}

// outPromptDetails is CompletionUsage.prompt_tokens_details:
// cached_tokens ("Cached tokens present in the prompt") and
// cache_write_tokens ("The unadjusted number of prompt tokens written to
// cache", present in openai-go and openai-node since mid-2026), the
// latter only when Bedrock wrote to the cache.
type outPromptDetails struct {
	CachedTokens     int64 `json:"cached_tokens"`
	CacheWriteTokens int64 `json:"cache_write_tokens,omitempty"`
}

// ChatCompletion renders a Converse answer (the JSON body Bedrock returned)
// as an OpenAI chat.completion for model (as the caller named it, since an
// SDK user expects back the name they sent, not Bedrock's model ID), with
// id and created given by the caller (the gateway mints them, so the same
// values can go to logs and usage records). It fails only if converse is
// not a Converse answer: malformed JSON, or no output.message.
func ChatCompletion(converse []byte, model, id string, created int64) (body []byte, err error) {
	var a cvAnswer
	if err := json.Unmarshal(converse, &a); err != nil {
		return nil, fmt.Errorf("openai: reading the Converse answer: %w", err)
	}
	if a.Output.Message == nil {
		return nil, errors.New("openai: the Converse answer has no output.message")
	}
	msg := outMessage{Role: "assistant"}
	var text strings.Builder
	hasText := false
	for _, b := range a.Output.Message.Content {
		switch {
		case b.Text != nil:
			// Text blocks are joined with nothing between them, as a
			// stream's text deltas are: the two paths give the same
			// content.
			text.WriteString(*b.Text)
			hasText = true
		case b.CitationsContent != nil:
			for _, c := range b.CitationsContent.Content {
				text.WriteString(c.Text)
			}
			hasText = true
		case b.ToolUse != nil:
			msg.ToolCalls = append(msg.ToolCalls, outToolCall{
				ID:   b.ToolUse.ToolUseID,
				Type: "function",
				Function: outFunction{
					Name:      b.ToolUse.Name,
					Arguments: argumentsFromInput(b.ToolUse.Input),
				},
			})
		}
	}
	// content: the text; null when the answer is only tool calls (OpenAI
	// does so and the SDK helpers test content for null); "" when there is
	// neither (e.g. a guardrail stop with no output), so a client reading
	// content as a string does not meet null where OpenAI would give text.
	if hasText || len(msg.ToolCalls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	c := outCompletion{
		ID:      id,
		Object:  "chat.completion",
		Created: created,
		Model:   model,
		Choices: []outChoice{{Index: 0, Message: msg, FinishReason: finishReasonFor(a.StopReason)}},
		Usage:   usageFromConverse(a.Usage),
	}
	return encodeOut(c), nil
}

// argumentsFromInput is a tool's input document as OpenAI's
// function.arguments: a JSON text in a string, compact. A missing or null
// input becomes "{}", since clients parse arguments as an object.
func argumentsFromInput(input json.RawMessage) string {
	trimmed := bytes.TrimSpace(input)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return "{}"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, trimmed); err != nil {
		// Unreachable: input was validated when the answer was decoded.
		return string(trimmed)
	}
	return b.String()
}

// finishReasonFor maps a Converse stopReason to OpenAI's finish_reason
// (one of "stop", "length", "tool_calls", "content_filter"):
//
//	stopReason                     finish_reason
//	end_turn, stop_sequence        stop
//	max_tokens                     length
//	model_context_window_exceeded  length          (output cut short by the context window: the same "truncated" signal)
//	tool_use                       tool_calls
//	content_filtered               content_filter
//	guardrail_intervened           content_filter
//	malformed_model_output,
//	malformed_tool_use, "",
//	anything newer                 stop            (no OpenAI value says "the model misbehaved"; stop is what SDK loops treat as a plain end)
//
// The stopReason values are those of the Converse API reference
// (StopReason enum, botocore bedrock-runtime service model).
func finishReasonFor(stopReason string) string {
	switch stopReason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "content_filtered", "guardrail_intervened":
		return "content_filter"
	default:
		return "stop"
	}
}

// usageFromConverse converts Bedrock's TokenUsage to OpenAI's usage, or
// nil if Bedrock sent none.
//
// Bedrock counts inputTokens apart from the cache: "All tokens not read
// from or written to the cache, are charged at the standard input token
// rate" (Bedrock user guide, "Prompt caching"), so inputTokens,
// cacheReadInputTokens and cacheWriteInputTokens are disjoint (the Vercel
// AI SDK's Bedrock provider, convert-bedrock-usage.ts, and this
// repository's fake Bedrock count them the same way). OpenAI's
// prompt_tokens counts the whole prompt, cached tokens included, so it is
// their sum; cached_tokens is the cache read. total_tokens is computed as
// prompt_tokens + completion_tokens, OpenAI's definition, rather than
// copied from Bedrock's totalTokens.
func usageFromConverse(u *cvUsage) *outUsage {
	if u == nil {
		return nil
	}
	prompt := u.InputTokens + u.CacheReadInputTokens + u.CacheWriteInputTokens
	return &outUsage{
		PromptTokens:     prompt,
		CompletionTokens: u.OutputTokens,
		TotalTokens:      prompt + u.OutputTokens,
		PromptTokensDetails: outPromptDetails{
			CachedTokens:     u.CacheReadInputTokens,
			CacheWriteTokens: u.CacheWriteInputTokens,
		},
	}
}

// encodeOut encodes one of this package's output values as compact JSON,
// without escaping <, > and & (the output is an API body, not HTML, and
// model text is full of them).
func encodeOut(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only plain structs of strings, integers and slices are encoded
		// here; an error would be a bug in this package.
		panic("openai: encoding a response: " + err.Error())
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
