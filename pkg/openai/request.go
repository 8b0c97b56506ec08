package openai

// Request side: an OpenAI Chat Completions request (POST /v1/chat/completions)
// in, a Bedrock Converse request body out.
//
// Sources the mapping follows:
//   - OpenAI "Create chat completion" (platform.openai.com/docs/api-reference/chat/create),
//     as generated into openai-python src/openai/types/chat/completion_create_params.py
//     and the chat_completion_*_param.py message, content-part and tool types.
//   - Bedrock Runtime API reference: Converse, Message, ContentBlock, ImageBlock,
//     ToolUseBlock, ToolResultBlock, SystemContentBlock, InferenceConfiguration,
//     ToolConfiguration, ToolSpecification, ToolChoice, OutputConfig
//     (docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html and
//     the botocore bedrock-runtime service model with its constraints), and the wire
//     names of aws-sdk-go-v2 service/bedrockruntime (request_snapshot/Converse.request.snap).
//   - Bedrock user guide "Get validated JSON results from models" (structured-output):
//     outputConfig.textFormat and toolSpec.strict.
//
// What is mapped (OpenAI → Converse):
//
//	system / developer messages        → system [{text}], in order, wherever they appear
//	user content string / text parts   → {text}
//	user image_url data:image/…;base64 → {image:{format, source:{bytes}}}
//	assistant content / refusal        → {text}
//	assistant tool_calls               → {toolUse:{toolUseId, name, input}}
//	tool messages                      → user {toolResult:{toolUseId, content:[{text}]}}
//	max_completion_tokens / max_tokens → inferenceConfig.maxTokens
//	temperature (≤ 1), top_p, stop     → inferenceConfig.temperature, topP, stopSequences
//	tools, tool_choice                 → toolConfig.tools[].toolSpec, toolConfig.toolChoice
//	tools[].function.strict            → toolSpec.strict
//	response_format json_schema        → outputConfig.textFormat (type json_schema)
//	reasoning_effort low…max           → outputConfig.effort
//
// What is refused (a *RequestError, so the client learns it at once instead of
// getting an answer that silently ignores what it asked for): n > 1, logprobs,
// top_logprobs > 0, logit_bias, presence_penalty / frequency_penalty ≠ 0, seed,
// response_format json_object, audio and modalities other than ["text"],
// prediction, web_search_options, verbosity, moderation, the deprecated
// functions / function_call and function-role messages, custom tools, allowed_tools
// tool choices, store: true, service tiers other than auto/default,
// reasoning_effort none/minimal, temperature > 1, parallel_tool_calls: false
// when tools can be called, tool_choice "none" or no tools for a conversation
// that already holds tool calls (Converse then needs the tools offered, and
// could call them), image URLs that are not inline data, audio and file
// content parts, and any request argument OpenAI does not document.
//
// What is accepted and not forwarded, because ignoring it changes neither the
// answer nor what is billed: user, safety_identifier and metadata (OpenAI's own
// abuse-detection and dashboard fields; kept on ChatRequest for the caller to log,
// and deliberately not copied into Converse requestMetadata, where client-chosen
// values could be mistaken for the gateway's own attribution), prompt_cache_key,
// prompt_cache_retention, prompt_cache_options and content parts'
// prompt_cache_breakpoint (cache hints: Bedrock prompt caching works differently),
// stream_options.include_obfuscation (kept on StreamOptions for the stream writer),
// image_url.detail, messages' name (tool messages' too, as OpenAI's cookbook sends
// it), and assistant messages' annotations (an output field that SDKs echo back
// when a response message is appended to the history).
//
// Reshaped to fit Converse, without changing what was said: system and developer
// messages are hoisted into system; consecutive messages of one role are merged;
// blank text blocks are left out and an assistant message left empty is dropped;
// an image's format is read from its bytes, not its declared media type.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ChatRequest is an OpenAI Chat Completions request, as the gateway reads it.
//
// ParseChatRequest fills it from the request body and refuses what Converse
// cannot do; ConverseBody turns it into the Converse request body. Parameters
// OpenAI documents that have no field here are refused by ParseChatRequest
// unless they carry their default (no-op) value (see the list at the top of
// request.go).
type ChatRequest struct {
	// Model is the model the client named, unchanged. Converse takes the
	// model ID in the URL path, not the body, so ConverseBody leaves it out:
	// the caller resolves aliases and builds the path.
	Model string

	// Messages is the conversation, in the client's order.
	Messages []Message

	// Stream asks for server-sent chat.completion.chunk events
	// (ConverseStream) instead of one chat.completion (Converse). The
	// Converse body is the same either way.
	Stream bool
	// StreamOptions is stream_options; OpenAI allows it only with Stream.
	StreamOptions *StreamOptions

	// MaxTokens is max_tokens (deprecated by OpenAI in favour of
	// MaxCompletionTokens); if both are set they must be equal.
	MaxTokens *int64
	// MaxCompletionTokens is max_completion_tokens.
	MaxCompletionTokens *int64
	// Temperature is OpenAI's 0..2; Converse (inferenceConfig.temperature)
	// accepts 0..1, and scaling would change what the client asked for, so
	// values above 1 are refused rather than clamped or rescaled.
	Temperature *float64
	// TopP is top_p, 0..1 in both APIs.
	TopP *float64
	// Stop is stop (a string or up to 4 strings), as a list.
	Stop []string

	// Tools are the function tools the model may call.
	Tools []Tool
	// ToolChoice is tool_choice; nil means OpenAI's default ("auto" when
	// tools are given).
	ToolChoice *ToolChoice
	// ParallelToolCalls is parallel_tool_calls. Converse has no switch for
	// it, so false is refused whenever the model could call a tool: the
	// gateway cannot promise at most one call per turn.
	ParallelToolCalls *bool

	// ResponseFormat is response_format: "text" (the default) or
	// "json_schema" (Converse structured outputs, outputConfig.textFormat).
	ResponseFormat *ResponseFormat
	// ReasoningEffort is reasoning_effort, forwarded as outputConfig.effort,
	// which accepts low, medium, high, xhigh and max. Models without effort
	// support reject it in Bedrock's own 400.
	ReasoningEffort string

	// ServiceTier is service_tier; only "auto" and "default" (Bedrock's
	// default tier) are accepted. Other tiers change the price, which is the
	// gateway's policy to grant, not the client's to pick.
	ServiceTier string

	// User, SafetyIdentifier, PromptCacheKey and Metadata are accepted and
	// not forwarded: they are OpenAI's abuse-detection, cache-routing and
	// dashboard fields, and ignoring them changes neither the answer nor the
	// bill. They are kept for the caller to log.
	User             string
	SafetyIdentifier string
	PromptCacheKey   string
	Metadata         map[string]string
}

// StreamOptions is stream_options.
type StreamOptions struct {
	// IncludeUsage asks for a final chunk carrying usage.
	IncludeUsage bool
	// IncludeObfuscation is include_obfuscation (nil: OpenAI's default,
	// on). It only pads stream events; the request side ignores it.
	IncludeObfuscation *bool
}

// Message is one message of the conversation.
type Message struct {
	// Role is "system", "developer", "user", "assistant" or "tool".
	Role string
	// Name is the optional participant name. Converse has no equivalent;
	// it is accepted and dropped (multi-agent frameworks send it routinely).
	Name string
	// Content is the message content as parts; a string content is one text
	// part. It is nil when the content was null or absent.
	Content []ContentPart
	// Refusal is an assistant message's refusal, sent on as text: it is
	// what the assistant said in that turn.
	Refusal string
	// ToolCalls are an assistant message's function tool calls.
	ToolCalls []ToolCall
	// ToolCallID is the tool call a tool message answers.
	ToolCallID string
}

// ContentPart is one part of a message's content.
type ContentPart struct {
	// Type is "text", "image_url" or "refusal".
	Type     string
	Text     string
	Refusal  string
	ImageURL *ImageURL

	// image caches the decoded image of ImageURL.URL, set by
	// ParseChatRequest so that ConverseBody need not decode it again.
	image *rqImage
}

// ImageURL is an image_url content part's image.
type ImageURL struct {
	// URL must be a data:image/…;base64 URL: Converse takes image bytes (or
	// S3 locations), never an http(s) URL to fetch.
	URL string
	// Detail ("auto", "low", "high") has no Converse equivalent; it only
	// trades resolution for tokens, and is ignored.
	Detail string
}

// ToolCall is a function tool call in an assistant message.
type ToolCall struct {
	ID       string
	Type     string // "function"
	Function ToolCallFunction
}

// ToolCallFunction is a tool call's function and JSON arguments.
type ToolCallFunction struct {
	Name string
	// Arguments must be a JSON object (Converse toolUse.input is one); an
	// empty string means no arguments, {}.
	Arguments string
}

// Tool is a tool definition the model may call.
type Tool struct {
	Type     string // "function"
	Function FunctionDefinition
}

// FunctionDefinition is a function tool's definition.
type FunctionDefinition struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of the arguments, a JSON object; nil
	// means no parameters.
	Parameters json.RawMessage
	// Strict asks for schema-conforming calls: toolSpec.strict.
	Strict *bool
}

// ToolChoice is tool_choice.
type ToolChoice struct {
	// Type is "none", "auto", "required" or "function".
	Type string
	// Name is the function a "function" choice forces.
	Name string
}

// ResponseFormat is response_format.
type ResponseFormat struct {
	// Type is "text" or "json_schema".
	Type       string
	JSONSchema *ResponseFormatJSONSchema
}

// ResponseFormatJSONSchema is response_format.json_schema.
type ResponseFormatJSONSchema struct {
	Name        string
	Description string
	// Schema is the JSON Schema the answer must match, a JSON object.
	Schema json.RawMessage
	// Strict is OpenAI's opt-in to schema enforcement. Bedrock always
	// enforces the schema, so it does not change the Converse body.
	Strict *bool
}

// RequestError is a 400 in OpenAI's terms: a request the gateway refuses
// before calling Bedrock.
//
// Param is the offending parameter in OpenAI's notation
// ("messages[2].content[0].image_url.url"), Code OpenAI's kind of error
// ("invalid_json", "invalid_type", "missing_required_parameter",
// "unknown_parameter", "unsupported_parameter", "unsupported_value",
// "invalid_value"), and Message a sentence saying what is wrong and, where
// Converse is the reason, why. Messages never echo message contents, URLs or
// argument values; the few request values they quote (names, types, IDs) are
// cut to 32 bytes.
type RequestError struct {
	Param   string
	Code    string
	Message string
}

func (e *RequestError) Error() string {
	if e.Param == "" {
		return "openai: invalid request (" + e.Code + "): " + e.Message
	}
	return "openai: invalid request (" + e.Code + ", " + e.Param + "): " + e.Message
}

// Limits of the two APIs that the request side enforces.
const (
	// rqMaxStop is OpenAI's "up to 4 sequences" for stop.
	rqMaxStop = 4
	// rqMaxImagesPerMessage and rqMaxImageBytes are the Converse Message
	// content restrictions: "up to 20 images. Each image's size … must be no
	// more than 3.75 MB". (MB read as MiB, so a size Bedrock accepts is never
	// refused here.)
	rqMaxImagesPerMessage = 20
	rqMaxImageBytes       = 3.75 * 1024 * 1024
	// rqMaxNameBytes bounds OpenAI metadata keys and safety_identifier;
	// rqMaxMetadataValue its metadata values, rqMaxMetadataPairs the pairs.
	rqMaxNameBytes     = 64
	rqMaxMetadataValue = 512
	rqMaxMetadataPairs = 16
	// rqQuoteBytes is how much of a request value an error message quotes.
	rqQuoteBytes = 32
)

// rqErr builds a *RequestError.
func rqErr(param, code, format string, args ...any) *RequestError {
	return &RequestError{Param: param, Code: code, Message: fmt.Sprintf(format, args...)}
}

// rqQuote quotes a request value for an error message, cut to rqQuoteBytes.
func rqQuote(s string) string {
	if len(s) <= rqQuoteBytes {
		return strconv.Quote(s)
	}
	cut := rqQuoteBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// rqClip cuts a request-supplied name (an unknown key) for use in Param.
func rqClip(s string) string {
	if len(s) <= rqQuoteBytes {
		return s
	}
	cut := rqQuoteBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ---------------------------------------------------------------------------
// JSON reading with OpenAI-style parameter paths.

// The request is decoded once, with numbers kept as json.Number, into
// map[string]any, []any, string, json.Number, bool and nil; these helpers
// read that tree with OpenAI-style parameter paths.

func rqIsNull(v any) bool { return v == nil }

// rqKind reports the JSON type of v: '{', '[', '"', 'b' (boolean), 'n'
// (null) or '0' (number).
func rqKind(v any) byte {
	switch v.(type) {
	case map[string]any:
		return '{'
	case []any:
		return '['
	case string:
		return '"'
	case bool:
		return 'b'
	case nil:
		return 'n'
	}
	return '0'
}

func rqTypeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "a number"
}

func rqWrongType(v any, param, want string) *RequestError {
	return rqErr(param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.", param, want, rqTypeName(v))
}

func rqObject(v any, param string) (map[string]any, *RequestError) {
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, rqWrongType(v, param, "an object")
	}
	return obj, nil
}

func rqArray(v any, param string) ([]any, *RequestError) {
	arr, ok := v.([]any)
	if !ok {
		return nil, rqWrongType(v, param, "an array")
	}
	return arr, nil
}

func rqString(v any, param string) (string, *RequestError) {
	s, ok := v.(string)
	if !ok {
		return "", rqWrongType(v, param, "a string")
	}
	return s, nil
}

func rqBool(v any, param string) (bool, *RequestError) {
	b, ok := v.(bool)
	if !ok {
		return false, rqWrongType(v, param, "a boolean")
	}
	return b, nil
}

func rqNumber(v any, param string) (float64, *RequestError) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, rqWrongType(v, param, "a number")
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, rqErr(param, "invalid_value", "Invalid value for '%s': the number is out of range.", param)
	}
	return f, nil
}

func rqInt(v any, param string) (int64, *RequestError) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, rqWrongType(v, param, "an integer")
	}
	s := string(n)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || err == nil && f == math.Trunc(f) && (f < math.MinInt64 || f >= math.MaxInt64):
		return 0, rqErr(param, "invalid_value", "Invalid value for '%s': the number is out of range.", param)
	case err != nil || f != math.Trunc(f):
		return 0, rqWrongType(v, param, "an integer")
	}
	return int64(f), nil
}

// rqObjectJSON re-encodes a decoded JSON object (a tool's parameters, a
// response format's schema) for ChatRequest. Numbers are json.Number, so
// they keep their digits.
func rqObjectJSON(v any, param string) (json.RawMessage, *RequestError) {
	obj, e := rqObject(v, param)
	if e != nil {
		return nil, e
	}
	return rqMarshalParam(obj, param)
}

// rqCheckKeys refuses keys of obj that are not in allowed, naming the first
// in sorted order so that the error does not depend on map order.
func rqCheckKeys(obj map[string]any, param string, allowed ...string) *RequestError {
	var unknown []string
	for k := range obj {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	p := rqClip(unknown[0])
	if param != "" {
		p = param + "." + p
	}
	return rqErr(p, "unknown_parameter", "Unrecognized request argument supplied: %s.", rqQuote(unknown[0]))
}

// rqRequiredField returns obj[key], refusing it when absent or null.
func rqRequiredField(obj map[string]any, param, key string) (any, *RequestError) {
	raw, ok := obj[key]
	if !ok || rqIsNull(raw) {
		return nil, rqErr(param+"."+key, "missing_required_parameter", "Missing required parameter: '%s.%s'.", param, key)
	}
	return raw, nil
}

// rqRequiredString reads obj[key], which must be present and a string.
func rqRequiredString(obj map[string]any, param, key string) (string, *RequestError) {
	raw, e := rqRequiredField(obj, param, key)
	if e != nil {
		return "", e
	}
	return rqString(raw, rqJoin(param, key))
}

// rqOptionalString reads obj[key] as a string; absent or null is "".
func rqOptionalString(obj map[string]any, param, key string) (string, *RequestError) {
	raw, ok := obj[key]
	if !ok || rqIsNull(raw) {
		return "", nil
	}
	return rqString(raw, rqJoin(param, key))
}

func rqJoin(param, key string) string {
	if param == "" {
		return key
	}
	return param + "." + key
}

// rqNormalizeObject checks that raw is a JSON object and returns it
// re-encoded: numbers kept digit for digit, invalid UTF-8 replaced, so the
// Converse body is valid JSON whatever the client sent inside a string.
func rqNormalizeObject(raw []byte) (map[string]any, json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, false // trailing data
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, nil, false
	}
	out, err := rqMarshal(obj)
	if err != nil {
		return nil, nil, false
	}
	return obj, out, true
}

// rqMarshal is json.Marshal without HTML escaping and without the newline
// json.Encoder adds.
func rqMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// ---------------------------------------------------------------------------
// Parsing.

// ParseChatRequest reads a Chat Completions request body. It refuses, with a
// *RequestError, malformed JSON, wrong types, missing or unknown parameters,
// and everything Converse cannot do; a request it accepts has a valid
// ConverseBody.
func ParseChatRequest(body []byte) (*ChatRequest, error) {
	r, e := rqParse(body)
	if e != nil {
		return nil, e
	}
	return r, nil
}

// rqTopLevel lists every top-level parameter OpenAI documents for Create
// chat completion; anything else is refused as OpenAI refuses it.
var rqTopLevel = []string{
	"model", "messages", "stream", "stream_options",
	"max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
	"tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning_effort",
	"n", "logprobs", "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "seed",
	"audio", "modalities", "prediction", "web_search_options", "verbosity", "moderation",
	"functions", "function_call",
	"user", "safety_identifier", "metadata", "store", "service_tier",
	"prompt_cache_key", "prompt_cache_retention", "prompt_cache_options",
}

func rqParse(body []byte) (*ChatRequest, *RequestError) {
	// One decoding pass for the whole body: the parts below only walk the
	// tree (a body may carry megabytes of base64 images).
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, rqErr("", "invalid_json", "We could not parse the JSON body of your request: it is not valid JSON.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, rqErr("", "invalid_json", "We could not parse the JSON body of your request: there is more after the JSON object.")
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, rqErr("", "invalid_json", "The request body must be a JSON object.")
	}
	if e := rqCheckKeys(top, "", rqTopLevel...); e != nil {
		return nil, e
	}
	// present reports a parameter that is there and not null: OpenAI reads
	// null as "not given" for its optional parameters.
	present := func(key string) (any, bool) {
		raw, ok := top[key]
		if !ok || rqIsNull(raw) {
			return nil, false
		}
		return raw, true
	}
	r := &ChatRequest{}
	var e *RequestError

	raw, ok := present("model")
	if !ok {
		return nil, rqErr("model", "missing_required_parameter", "Missing required parameter: 'model'.")
	}
	if r.Model, e = rqString(raw, "model"); e != nil {
		return nil, e
	}
	if strings.TrimSpace(r.Model) == "" {
		return nil, rqErr("model", "invalid_value", "Invalid value for 'model': it must not be empty.")
	}

	raw, ok = present("messages")
	if !ok {
		return nil, rqErr("messages", "missing_required_parameter", "Missing required parameter: 'messages'.")
	}
	msgs, e := rqArray(raw, "messages")
	if e != nil {
		return nil, e
	}
	if len(msgs) == 0 {
		return nil, rqErr("messages", "invalid_value", "Invalid value for 'messages': the conversation must have at least one message.")
	}
	r.Messages = make([]Message, len(msgs))
	for i, m := range msgs {
		if r.Messages[i], e = rqParseMessage(m, i); e != nil {
			return nil, e
		}
	}

	if raw, ok := present("stream"); ok {
		if r.Stream, e = rqBool(raw, "stream"); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("stream_options"); ok {
		if r.StreamOptions, e = rqParseStreamOptions(raw); e != nil {
			return nil, e
		}
	}
	for _, p := range []struct {
		key string
		dst **int64
	}{{"max_tokens", &r.MaxTokens}, {"max_completion_tokens", &r.MaxCompletionTokens}} {
		if raw, ok := present(p.key); ok {
			n, e := rqInt(raw, p.key)
			if e != nil {
				return nil, e
			}
			*p.dst = &n
		}
	}
	for _, p := range []struct {
		key string
		dst **float64
	}{{"temperature", &r.Temperature}, {"top_p", &r.TopP}} {
		if raw, ok := present(p.key); ok {
			f, e := rqNumber(raw, p.key)
			if e != nil {
				return nil, e
			}
			*p.dst = &f
		}
	}
	if raw, ok := present("stop"); ok {
		if r.Stop, e = rqParseStop(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("tools"); ok {
		if r.Tools, e = rqParseTools(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("tool_choice"); ok {
		if r.ToolChoice, e = rqParseToolChoice(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("parallel_tool_calls"); ok {
		b, e := rqBool(raw, "parallel_tool_calls")
		if e != nil {
			return nil, e
		}
		r.ParallelToolCalls = &b
	}
	if raw, ok := present("response_format"); ok {
		if r.ResponseFormat, e = rqParseResponseFormat(raw); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("reasoning_effort"); ok {
		if r.ReasoningEffort, e = rqString(raw, "reasoning_effort"); e != nil {
			return nil, e
		}
	}
	if raw, ok := present("service_tier"); ok {
		if r.ServiceTier, e = rqString(raw, "service_tier"); e != nil {
			return nil, e
		}
	}
	if e := rqParseUnsupported(present); e != nil {
		return nil, e
	}
	if e := rqParseIgnored(r, present); e != nil {
		return nil, e
	}

	// Validate everything that depends on more than one field, and decode
	// the images once, so that a parsed request always has a ConverseBody.
	if _, e := r.build(); e != nil {
		return nil, e
	}
	return r, nil
}

// rqParseUnsupported refuses the parameters Converse has no equivalent for,
// unless they carry OpenAI's default, which asks for nothing.
func rqParseUnsupported(present func(string) (any, bool)) *RequestError {
	unsupported := func(param, why string) *RequestError {
		return rqErr(param, "unsupported_parameter", "Unsupported parameter: '%s' is not supported by this gateway: %s.", param, why)
	}
	if raw, ok := present("n"); ok {
		n, e := rqInt(raw, "n")
		if e != nil {
			return e
		}
		if n < 1 {
			return rqErr("n", "invalid_value", "Invalid value for 'n': it must be at least 1.")
		}
		if n > 1 {
			return unsupported("n", "Bedrock Converse returns one choice per request")
		}
	}
	if raw, ok := present("logprobs"); ok {
		b, e := rqBool(raw, "logprobs")
		if e != nil {
			return e
		}
		if b {
			return unsupported("logprobs", "Bedrock Converse does not return log probabilities")
		}
	}
	if raw, ok := present("top_logprobs"); ok {
		n, e := rqInt(raw, "top_logprobs")
		if e != nil {
			return e
		}
		if n != 0 {
			return unsupported("top_logprobs", "Bedrock Converse does not return log probabilities")
		}
	}
	if raw, ok := present("logit_bias"); ok {
		obj, e := rqObject(raw, "logit_bias")
		if e != nil {
			return e
		}
		if len(obj) > 0 {
			return unsupported("logit_bias", "Bedrock Converse has no token biasing")
		}
	}
	for _, p := range []string{"presence_penalty", "frequency_penalty"} {
		if raw, ok := present(p); ok {
			f, e := rqNumber(raw, p)
			if e != nil {
				return e
			}
			if f < -2 || f > 2 {
				return rqErr(p, "invalid_value", "Invalid value for '%s': it must be between -2 and 2.", p)
			}
			if f != 0 {
				return unsupported(p, "Bedrock Converse has no repetition penalties")
			}
		}
	}
	if raw, ok := present("seed"); ok {
		if _, e := rqInt(raw, "seed"); e != nil {
			return e
		}
		return unsupported("seed", "Bedrock Converse has no deterministic sampling seed")
	}
	if raw, ok := present("modalities"); ok {
		arr, e := rqArray(raw, "modalities")
		if e != nil {
			return e
		}
		for i, m := range arr {
			s, e := rqString(m, fmt.Sprintf("modalities[%d]", i))
			if e != nil {
				return e
			}
			if s != "text" {
				return unsupported("modalities", "only text output is available through Bedrock Converse")
			}
		}
	}
	for _, p := range []struct{ key, why string }{
		{"audio", "only text output is available through Bedrock Converse"},
		{"prediction", "Bedrock Converse has no predicted outputs"},
		{"web_search_options", "Bedrock Converse has no built-in web search"},
		{"verbosity", "Bedrock Converse has no verbosity control"},
		{"moderation", "use a Bedrock guardrail instead"},
		{"functions", "it is deprecated by OpenAI; use 'tools'"},
		{"function_call", "it is deprecated by OpenAI; use 'tool_choice'"},
	} {
		if _, ok := present(p.key); ok {
			return unsupported(p.key, p.why)
		}
	}
	if raw, ok := present("store"); ok {
		b, e := rqBool(raw, "store")
		if e != nil {
			return e
		}
		if b {
			return rqErr("store", "unsupported_value", "Unsupported value: 'store' must be false: the gateway does not store completions, and Bedrock does not store prompts or answers.")
		}
	}
	return nil
}

// rqParseIgnored checks the types of the parameters that are accepted and
// not forwarded (see ChatRequest), keeping those worth logging.
func rqParseIgnored(r *ChatRequest, present func(string) (any, bool)) *RequestError {
	var e *RequestError
	if raw, ok := present("user"); ok {
		if r.User, e = rqString(raw, "user"); e != nil {
			return e
		}
	}
	if raw, ok := present("safety_identifier"); ok {
		if r.SafetyIdentifier, e = rqString(raw, "safety_identifier"); e != nil {
			return e
		}
		if len(r.SafetyIdentifier) > rqMaxNameBytes {
			return rqErr("safety_identifier", "invalid_value", "Invalid value for 'safety_identifier': it must be at most %d characters.", rqMaxNameBytes)
		}
	}
	if raw, ok := present("prompt_cache_key"); ok {
		if r.PromptCacheKey, e = rqString(raw, "prompt_cache_key"); e != nil {
			return e
		}
	}
	if raw, ok := present("prompt_cache_retention"); ok {
		s, e := rqString(raw, "prompt_cache_retention")
		if e != nil {
			return e
		}
		if s != "in_memory" && s != "24h" {
			return rqErr("prompt_cache_retention", "invalid_value", "Invalid value for 'prompt_cache_retention': expected \"in_memory\" or \"24h\", got %s.", rqQuote(s))
		}
	}
	if raw, ok := present("prompt_cache_options"); ok {
		obj, e := rqObject(raw, "prompt_cache_options")
		if e != nil {
			return e
		}
		if e := rqCheckKeys(obj, "prompt_cache_options", "mode", "ttl"); e != nil {
			return e
		}
		for _, k := range []string{"mode", "ttl"} {
			if _, e := rqOptionalString(obj, "prompt_cache_options", k); e != nil {
				return e
			}
		}
	}
	if raw, ok := present("metadata"); ok {
		obj, e := rqObject(raw, "metadata")
		if e != nil {
			return e
		}
		if len(obj) > rqMaxMetadataPairs {
			return rqErr("metadata", "invalid_value", "Invalid value for 'metadata': at most %d key-value pairs are allowed.", rqMaxMetadataPairs)
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		r.Metadata = make(map[string]string, len(obj))
		for _, k := range keys {
			p := "metadata." + rqClip(k)
			if len(k) > rqMaxNameBytes {
				return rqErr(p, "invalid_value", "Invalid value for 'metadata': keys must be at most %d characters.", rqMaxNameBytes)
			}
			v, e := rqString(obj[k], p)
			if e != nil {
				return e
			}
			if len(v) > rqMaxMetadataValue {
				return rqErr(p, "invalid_value", "Invalid value for 'metadata': values must be at most %d characters.", rqMaxMetadataValue)
			}
			r.Metadata[k] = v
		}
	}
	return nil
}

func rqParseStreamOptions(raw any) (*StreamOptions, *RequestError) {
	obj, e := rqObject(raw, "stream_options")
	if e != nil {
		return nil, e
	}
	if e := rqCheckKeys(obj, "stream_options", "include_usage", "include_obfuscation"); e != nil {
		return nil, e
	}
	so := &StreamOptions{}
	if raw, ok := obj["include_usage"]; ok && !rqIsNull(raw) {
		if so.IncludeUsage, e = rqBool(raw, "stream_options.include_usage"); e != nil {
			return nil, e
		}
	}
	if raw, ok := obj["include_obfuscation"]; ok && !rqIsNull(raw) {
		b, e := rqBool(raw, "stream_options.include_obfuscation")
		if e != nil {
			return nil, e
		}
		so.IncludeObfuscation = &b
	}
	return so, nil
}

func rqParseStop(raw any) ([]string, *RequestError) {
	if rqKind(raw) == '"' {
		s, e := rqString(raw, "stop")
		if e != nil {
			return nil, e
		}
		return []string{s}, nil
	}
	if rqKind(raw) != '[' {
		return nil, rqWrongType(raw, "stop", "a string or an array of strings")
	}
	arr, e := rqArray(raw, "stop")
	if e != nil {
		return nil, e
	}
	stop := make([]string, 0, len(arr))
	for i, v := range arr {
		s, e := rqString(v, fmt.Sprintf("stop[%d]", i))
		if e != nil {
			return nil, e
		}
		stop = append(stop, s)
	}
	return stop, nil
}

// rqParseMessage reads messages[i], checking its keys against those OpenAI
// documents for its role.
func rqParseMessage(raw any, i int) (Message, *RequestError) {
	p := "messages[" + strconv.Itoa(i) + "]"
	obj, e := rqObject(raw, p)
	if e != nil {
		return Message{}, e
	}
	role, e := rqRequiredString(obj, p, "role")
	if e != nil {
		return Message{}, e
	}
	m := Message{Role: role}
	switch role {
	case "system", "developer":
		if e := rqCheckKeys(obj, p, "role", "content", "name"); e != nil {
			return m, e
		}
		content, e := rqRequiredField(obj, p, "content")
		if e != nil {
			return m, e
		}
		if m.Content, e = rqParseContent(content, p+".content", role); e != nil {
			return m, e
		}
	case "user":
		if e := rqCheckKeys(obj, p, "role", "content", "name"); e != nil {
			return m, e
		}
		content, e := rqRequiredField(obj, p, "content")
		if e != nil {
			return m, e
		}
		if m.Content, e = rqParseContent(content, p+".content", role); e != nil {
			return m, e
		}
	case "assistant":
		if e := rqCheckKeys(obj, p, "role", "content", "name", "refusal", "tool_calls", "function_call", "audio", "annotations"); e != nil {
			return m, e
		}
		if content, ok := obj["content"]; ok && !rqIsNull(content) {
			if m.Content, e = rqParseContent(content, p+".content", role); e != nil {
				return m, e
			}
		}
		if m.Refusal, e = rqOptionalString(obj, p, "refusal"); e != nil {
			return m, e
		}
		if tc, ok := obj["tool_calls"]; ok && !rqIsNull(tc) {
			if m.ToolCalls, e = rqParseToolCalls(tc, p+".tool_calls"); e != nil {
				return m, e
			}
		}
		if fc, ok := obj["function_call"]; ok && !rqIsNull(fc) {
			return m, rqErr(p+".function_call", "unsupported_parameter", "Unsupported parameter: '%s.function_call' is deprecated by OpenAI and not supported by this gateway; use 'tool_calls'.", p)
		}
		if a, ok := obj["audio"]; ok && !rqIsNull(a) {
			return m, rqErr(p+".audio", "unsupported_parameter", "Unsupported parameter: '%s.audio': Bedrock Converse has no audio responses to refer to.", p)
		}
		if a, ok := obj["annotations"]; ok && !rqIsNull(a) && rqKind(a) != '[' {
			return m, rqWrongType(a, p+".annotations", "an array")
		}
	case "tool":
		// name is not in OpenAI's tool message, but OpenAI's own cookbook
		// sends the function name there and OpenAI accepts it.
		if e := rqCheckKeys(obj, p, "role", "content", "tool_call_id", "name"); e != nil {
			return m, e
		}
		content, e := rqRequiredField(obj, p, "content")
		if e != nil {
			return m, e
		}
		if m.Content, e = rqParseContent(content, p+".content", role); e != nil {
			return m, e
		}
		if m.ToolCallID, e = rqRequiredString(obj, p, "tool_call_id"); e != nil {
			return m, e
		}
	case "function":
		return m, rqErr(p+".role", "unsupported_value", "Unsupported value: function messages are deprecated by OpenAI and not supported by this gateway; use tool messages.")
	default:
		return m, rqErr(p+".role", "invalid_value", "Invalid value for '%s.role': %s is not one of system, developer, user, assistant or tool.", p, rqQuote(role))
	}
	if name, ok := obj["name"]; ok && !rqIsNull(name) {
		if m.Name, e = rqString(name, p+".name"); e != nil {
			return m, e
		}
	}
	return m, nil
}

// rqParseContent reads a message's content: a string, or an array of the
// parts OpenAI allows for role.
func rqParseContent(raw any, param, role string) ([]ContentPart, *RequestError) {
	switch rqKind(raw) {
	case '"':
		s, e := rqString(raw, param)
		if e != nil {
			return nil, e
		}
		return []ContentPart{{Type: "text", Text: s}}, nil
	case '[':
	default:
		return nil, rqWrongType(raw, param, "a string or an array of content parts")
	}
	arr, e := rqArray(raw, param)
	if e != nil {
		return nil, e
	}
	parts := make([]ContentPart, 0, len(arr))
	for j, v := range arr {
		part, e := rqParsePart(v, param+"["+strconv.Itoa(j)+"]", role)
		if e != nil {
			return nil, e
		}
		parts = append(parts, part)
	}
	return parts, nil
}

func rqParsePart(raw any, p, role string) (ContentPart, *RequestError) {
	obj, e := rqObject(raw, p)
	if e != nil {
		return ContentPart{}, e
	}
	typ, e := rqRequiredString(obj, p, "type")
	if e != nil {
		return ContentPart{}, e
	}
	allowed := map[string][]string{
		"system":    {"text"},
		"developer": {"text"},
		"tool":      {"text"},
		"user":      {"text", "image_url", "input_audio", "file"},
		"assistant": {"text", "refusal"},
	}[role]
	if !slices.Contains(allowed, typ) {
		return ContentPart{}, rqErr(p+".type", "invalid_value", "Invalid value for '%s.type': %s parts are not allowed in %s messages (allowed: %s).", p, rqQuote(typ), role, strings.Join(allowed, ", "))
	}
	part := ContentPart{Type: typ}
	switch typ {
	case "text":
		if e := rqCheckKeys(obj, p, "type", "text", "prompt_cache_breakpoint"); e != nil {
			return part, e
		}
		var e *RequestError
		if part.Text, e = rqRequiredString(obj, p, "text"); e != nil {
			return part, e
		}
	case "refusal":
		if e := rqCheckKeys(obj, p, "type", "refusal"); e != nil {
			return part, e
		}
		var e *RequestError
		if part.Refusal, e = rqRequiredString(obj, p, "refusal"); e != nil {
			return part, e
		}
	case "image_url":
		if e := rqCheckKeys(obj, p, "type", "image_url", "prompt_cache_breakpoint"); e != nil {
			return part, e
		}
		iuRaw, e := rqRequiredField(obj, p, "image_url")
		if e != nil {
			return part, e
		}
		iu, e := rqObject(iuRaw, p+".image_url")
		if e != nil {
			return part, e
		}
		if e := rqCheckKeys(iu, p+".image_url", "url", "detail"); e != nil {
			return part, e
		}
		urlRaw, e := rqRequiredField(iu, p+".image_url", "url")
		if e != nil {
			return part, e
		}
		part.ImageURL = &ImageURL{}
		if part.ImageURL.URL, e = rqString(urlRaw, p+".image_url.url"); e != nil {
			return part, e
		}
		if part.ImageURL.Detail, e = rqOptionalString(iu, p+".image_url", "detail"); e != nil {
			return part, e
		}
		switch part.ImageURL.Detail {
		case "", "auto", "low", "high":
		default:
			return part, rqErr(p+".image_url.detail", "invalid_value", "Invalid value for '%s.image_url.detail': expected auto, low or high, got %s.", p, rqQuote(part.ImageURL.Detail))
		}
		img, e := rqDecodeImage(part.ImageURL.URL, p+".image_url.url")
		if e != nil {
			return part, e
		}
		part.image = img
	case "input_audio":
		return part, rqErr(p+".type", "unsupported_value", "Unsupported value: input_audio parts are not supported: Bedrock Converse takes no audio input for chat models.")
	case "file":
		return part, rqErr(p+".type", "unsupported_value", "Unsupported value: file parts are not supported by this gateway; send the text, or images as image_url parts.")
	}
	if bp, ok := obj["prompt_cache_breakpoint"]; ok && !rqIsNull(bp) {
		bpo, e := rqObject(bp, p+".prompt_cache_breakpoint")
		if e != nil {
			return part, e
		}
		if e := rqCheckKeys(bpo, p+".prompt_cache_breakpoint", "mode"); e != nil {
			return part, e
		}
		if _, e := rqOptionalString(bpo, p+".prompt_cache_breakpoint", "mode"); e != nil {
			return part, e
		}
	}
	return part, nil
}

// rqFunctionTyped reads an element of tools or tool_calls at p: an
// object whose type is "function"; "custom" is refused with customMsg.
func rqFunctionTyped(v any, p, customMsg string) (map[string]any, string, *RequestError) {
	obj, e := rqObject(v, p)
	if e != nil {
		return nil, "", e
	}
	typ, e := rqRequiredString(obj, p, "type")
	if e != nil {
		return nil, "", e
	}
	switch typ {
	case "function":
		return obj, typ, nil
	case "custom":
		return nil, "", rqErr(p+".type", "unsupported_value", "%s", customMsg)
	default:
		return nil, "", rqErr(p+".type", "invalid_value", "Invalid value for '%s.type': expected \"function\", got %s.", p, rqQuote(typ))
	}
}

func rqParseToolCalls(raw any, param string) ([]ToolCall, *RequestError) {
	arr, e := rqArray(raw, param)
	if e != nil {
		return nil, e
	}
	calls := make([]ToolCall, 0, len(arr))
	for k, v := range arr {
		p := param + "[" + strconv.Itoa(k) + "]"
		obj, typ, e := rqFunctionTyped(v, p, "Unsupported value: custom tool calls are not supported: Bedrock Converse tools take JSON input only.")
		if e != nil {
			return nil, e
		}
		if e := rqCheckKeys(obj, p, "id", "type", "function"); e != nil {
			return nil, e
		}
		tc := ToolCall{Type: typ}
		if tc.ID, e = rqRequiredString(obj, p, "id"); e != nil {
			return nil, e
		}
		fnRaw, e := rqRequiredField(obj, p, "function")
		if e != nil {
			return nil, e
		}
		fn, e := rqObject(fnRaw, p+".function")
		if e != nil {
			return nil, e
		}
		if e := rqCheckKeys(fn, p+".function", "name", "arguments"); e != nil {
			return nil, e
		}
		if tc.Function.Name, e = rqRequiredString(fn, p+".function", "name"); e != nil {
			return nil, e
		}
		if tc.Function.Arguments, e = rqRequiredString(fn, p+".function", "arguments"); e != nil {
			return nil, e
		}
		calls = append(calls, tc)
	}
	return calls, nil
}

func rqParseTools(raw any) ([]Tool, *RequestError) {
	arr, e := rqArray(raw, "tools")
	if e != nil {
		return nil, e
	}
	tools := make([]Tool, 0, len(arr))
	for i, v := range arr {
		p := "tools[" + strconv.Itoa(i) + "]"
		obj, typ, e := rqFunctionTyped(v, p, "Unsupported value: custom tools are not supported: Bedrock Converse tools take JSON input described by a JSON Schema; use a function tool.")
		if e != nil {
			return nil, e
		}
		if e := rqCheckKeys(obj, p, "type", "function"); e != nil {
			return nil, e
		}
		fnRaw, e := rqRequiredField(obj, p, "function")
		if e != nil {
			return nil, e
		}
		t := Tool{Type: typ}
		def, e := rqParseNamedSchema(fnRaw, p+".function", "parameters")
		if e != nil {
			return nil, e
		}
		t.Function.Name, t.Function.Description, t.Function.Parameters, t.Function.Strict = def.name, def.description, def.schema, def.strict
		tools = append(tools, t)
	}
	return tools, nil
}

func rqParseToolChoice(raw any) (*ToolChoice, *RequestError) {
	switch rqKind(raw) {
	case '"':
		s, e := rqString(raw, "tool_choice")
		if e != nil {
			return nil, e
		}
		switch s {
		case "none", "auto", "required":
			return &ToolChoice{Type: s}, nil
		}
		return nil, rqErr("tool_choice", "invalid_value", "Invalid value for 'tool_choice': expected none, auto, required or an object naming a function, got %s.", rqQuote(s))
	case '{':
	default:
		return nil, rqWrongType(raw, "tool_choice", "a string or an object")
	}
	obj, e := rqObject(raw, "tool_choice")
	if e != nil {
		return nil, e
	}
	typ, e := rqRequiredString(obj, "tool_choice", "type")
	if e != nil {
		return nil, e
	}
	switch typ {
	case "function":
	case "allowed_tools":
		return nil, rqErr("tool_choice.type", "unsupported_value", "Unsupported value: allowed_tools tool choices are not supported: Bedrock Converse can force one tool or any tool, not a subset; send only the allowed tools.")
	case "custom":
		return nil, rqErr("tool_choice.type", "unsupported_value", "Unsupported value: custom tools are not supported by this gateway.")
	default:
		return nil, rqErr("tool_choice.type", "invalid_value", "Invalid value for 'tool_choice.type': expected \"function\", got %s.", rqQuote(typ))
	}
	if e := rqCheckKeys(obj, "tool_choice", "type", "function"); e != nil {
		return nil, e
	}
	fnRaw, e := rqRequiredField(obj, "tool_choice", "function")
	if e != nil {
		return nil, e
	}
	fn, e := rqObject(fnRaw, "tool_choice.function")
	if e != nil {
		return nil, e
	}
	if e := rqCheckKeys(fn, "tool_choice.function", "name"); e != nil {
		return nil, e
	}
	name, e := rqRequiredString(fn, "tool_choice.function", "name")
	if e != nil {
		return nil, e
	}
	return &ToolChoice{Type: "function", Name: name}, nil
}

func rqParseResponseFormat(raw any) (*ResponseFormat, *RequestError) {
	obj, e := rqObject(raw, "response_format")
	if e != nil {
		return nil, e
	}
	typ, e := rqRequiredString(obj, "response_format", "type")
	if e != nil {
		return nil, e
	}
	switch typ {
	case "text":
		if e := rqCheckKeys(obj, "response_format", "type"); e != nil {
			return nil, e
		}
		return &ResponseFormat{Type: typ}, nil
	case "json_object":
		return nil, rqErr("response_format", "unsupported_parameter", "Unsupported parameter: response_format of type json_object is not supported: Bedrock Converse has no JSON mode; use json_schema with a schema.")
	case "json_schema":
	default:
		return nil, rqErr("response_format.type", "invalid_value", "Invalid value for 'response_format.type': expected text or json_schema, got %s.", rqQuote(typ))
	}
	if e := rqCheckKeys(obj, "response_format", "type", "json_schema"); e != nil {
		return nil, e
	}
	jsRaw, e := rqRequiredField(obj, "response_format", "json_schema")
	if e != nil {
		return nil, e
	}
	def, e := rqParseNamedSchema(jsRaw, "response_format.json_schema", "schema")
	if e != nil {
		return nil, e
	}
	return &ResponseFormat{Type: typ, JSONSchema: &ResponseFormatJSONSchema{
		Name: def.name, Description: def.description, Schema: def.schema, Strict: def.strict}}, nil
}

// rqNamedSchema is what a function tool and a json_schema response
// format share: a name, a description, a JSON Schema under schemaKey and
// strict.
type rqNamedSchema struct {
	name, description string
	schema            json.RawMessage
	strict            *bool
}

// rqParseNamedSchema reads a function definition (schemaKey
// "parameters") or a json_schema response format (schemaKey "schema") at
// param: only those four keys, name required.
func rqParseNamedSchema(raw any, param, schemaKey string) (rqNamedSchema, *RequestError) {
	var d rqNamedSchema
	obj, e := rqObject(raw, param)
	if e != nil {
		return d, e
	}
	if e := rqCheckKeys(obj, param, "name", "description", schemaKey, "strict"); e != nil {
		return d, e
	}
	if d.name, e = rqRequiredString(obj, param, "name"); e != nil {
		return d, e
	}
	if d.description, e = rqOptionalString(obj, param, "description"); e != nil {
		return d, e
	}
	if v, ok := obj[schemaKey]; ok && !rqIsNull(v) {
		if d.schema, e = rqObjectJSON(v, param+"."+schemaKey); e != nil {
			return d, e
		}
	}
	if v, ok := obj["strict"]; ok && !rqIsNull(v) {
		b, e := rqBool(v, param+".strict")
		if e != nil {
			return d, e
		}
		d.strict = &b
	}
	return d, nil
}

// ---------------------------------------------------------------------------
// Images.

type rqImage struct {
	src    string // the URL it was decoded from
	format string // png, jpeg, gif or webp: Converse ImageFormat
	data   []byte
}

// rqDecodeImage reads an image_url URL. Converse takes the bytes inline (an
// ImageSource bytes blob, base64 in JSON) or from S3, and never fetches a
// URL, so only data:image/…;base64 URLs are accepted. The format Converse is
// told is the one the bytes show (PNG, JPEG, GIF, WebP signatures), not the
// declared media type, since clients often mislabel (image/jpg, a PNG sent
// as image/jpeg); bytes in none of the four formats are refused.
func rqDecodeImage(url, param string) (*rqImage, *RequestError) {
	const scheme = "data:"
	if len(url) < len(scheme) || !strings.EqualFold(url[:len(scheme)], scheme) {
		lower := strings.ToLower(url[:min(len(url), 8)])
		if strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://") {
			return nil, rqErr(param, "unsupported_value", "Unsupported value: image URLs are not supported: Bedrock Converse takes image bytes, not URLs to fetch. Send the image inline as a data:image/png;base64,... URL (PNG, JPEG, GIF or WebP).")
		}
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': expected a data:image/...;base64 URL.", param)
	}
	rest := url[len(scheme):]
	comma := strings.IndexByte(rest, ',')
	if comma < 0 {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': the data URL has no ',' before its data.", param)
	}
	meta, payload := rest[:comma], rest[comma+1:]
	params := strings.Split(meta, ";")
	mediaType := strings.ToLower(strings.TrimSpace(params[0]))
	isBase64 := false
	for _, p := range params[1:] {
		if strings.EqualFold(strings.TrimSpace(p), "base64") {
			isBase64 = true
		}
	}
	if !strings.HasPrefix(mediaType, "image/") {
		return nil, rqErr(param, "unsupported_value", "Unsupported value: the data URL's media type %s is not an image; only PNG, JPEG, GIF and WebP images are supported.", rqQuote(mediaType))
	}
	if !isBase64 {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': image data URLs must be base64-encoded (data:image/png;base64,...).", param)
	}
	if base64.StdEncoding.DecodedLen(len(payload)) > rqMaxImageBytes+3 {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': the image is larger than Bedrock Converse's 3.75 MB limit.", param)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		if data, err = base64.RawStdEncoding.DecodeString(payload); err != nil {
			return nil, rqErr(param, "invalid_value", "Invalid value for '%s': the image data is not valid base64.", param)
		}
	}
	if len(data) == 0 {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': the image data is empty.", param)
	}
	if len(data) > rqMaxImageBytes {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': the image is larger than Bedrock Converse's 3.75 MB limit.", param)
	}
	format := rqSniffImage(data)
	if format == "" {
		return nil, rqErr(param, "unsupported_value", "Unsupported value: the image is not a PNG, JPEG, GIF or WebP image, the formats Bedrock Converse accepts.")
	}
	return &rqImage{src: url, format: format, data: data}, nil
}

// rqSniffImage names the Converse ImageFormat of data from its signature.
func rqSniffImage(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case bytes.HasPrefix(data, []byte("\xff\xd8\xff")):
		return "jpeg"
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif"
	case len(data) >= 12 && string(data[:4]) == "RIFF" && string(data[8:12]) == "WEBP":
		return "webp"
	}
	return ""
}

// ---------------------------------------------------------------------------
// The Converse request body. Field names are the Converse wire names
// (aws-sdk-go-v2 bedrockruntime schemas, request_snapshot/Converse.request.snap).

type rqConverse struct {
	Messages        []rqMessage        `json:"messages"`
	System          []rqSystemBlock    `json:"system,omitempty"`
	InferenceConfig *rqInferenceConfig `json:"inferenceConfig,omitempty"`
	ToolConfig      *rqToolConfig      `json:"toolConfig,omitempty"`
	OutputConfig    *rqOutputConfig    `json:"outputConfig,omitempty"`
}

type rqMessage struct {
	Role    string    `json:"role"`
	Content []rqBlock `json:"content"`
}

// rqBlock is a ContentBlock union: exactly one member is set.
type rqBlock struct {
	Text       *string       `json:"text,omitempty"`
	Image      *rqImageBlock `json:"image,omitempty"`
	ToolUse    *rqToolUse    `json:"toolUse,omitempty"`
	ToolResult *rqToolResult `json:"toolResult,omitempty"`
}

type rqImageBlock struct {
	Format string        `json:"format"`
	Source rqImageSource `json:"source"`
}

// rqImageSource is an ImageSource union; a blob is base64 in JSON, which is
// how encoding/json writes a []byte.
type rqImageSource struct {
	Bytes []byte `json:"bytes"`
}

type rqToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type rqToolResult struct {
	ToolUseID string                `json:"toolUseId"`
	Content   []rqToolResultContent `json:"content"`
}

type rqToolResultContent struct {
	Text string `json:"text"`
}

type rqSystemBlock struct {
	Text string `json:"text"`
}

type rqInferenceConfig struct {
	MaxTokens     *int64   `json:"maxTokens,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"topP,omitempty"`
	StopSequences []string `json:"stopSequences,omitempty"`
}

type rqToolConfig struct {
	Tools      []rqTool      `json:"tools"`
	ToolChoice *rqToolChoice `json:"toolChoice,omitempty"`
}

type rqTool struct {
	ToolSpec rqToolSpec `json:"toolSpec"`
}

type rqToolSpec struct {
	Name        string        `json:"name"`
	Description string        `json:"description,omitempty"`
	InputSchema rqInputSchema `json:"inputSchema"`
	Strict      *bool         `json:"strict,omitempty"`
}

type rqInputSchema struct {
	JSON json.RawMessage `json:"json"`
}

// rqToolChoice is a ToolChoice union: {auto:{}}, {any:{}} or {tool:{name}}.
type rqToolChoice struct {
	Auto *struct{}         `json:"auto,omitempty"`
	Any  *struct{}         `json:"any,omitempty"`
	Tool *rqToolChoiceTool `json:"tool,omitempty"`
}

type rqToolChoiceTool struct {
	Name string `json:"name"`
}

type rqOutputConfig struct {
	TextFormat *rqTextFormat `json:"textFormat,omitempty"`
	Effort     string        `json:"effort,omitempty"`
}

type rqTextFormat struct {
	Type      string            `json:"type"`
	Structure rqOutputStructure `json:"structure"`
}

type rqOutputStructure struct {
	JSONSchema rqJSONSchema `json:"jsonSchema"`
}

// rqJSONSchema is a JsonSchemaDefinition; its schema is a string holding
// the JSON Schema, not a document.
type rqJSONSchema struct {
	Schema      string `json:"schema"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
}

// ConverseBody builds the Converse request body for r; ConverseStream takes
// the same body. The model ID is not in it: Converse takes it in the URL
// path (/model/{modelId}/converse), so the caller puts r.Model, with aliases
// resolved, there. Errors are *RequestError; a request from ParseChatRequest
// has none.
func (r *ChatRequest) ConverseBody() ([]byte, error) {
	c, e := r.build()
	if e != nil {
		return nil, e
	}
	body, err := rqMarshal(c)
	if err != nil {
		return nil, rqErr("", "invalid_value", "The request could not be encoded for Bedrock Converse.")
	}
	return body, nil
}

// IncludeUsage reports stream_options.include_usage: whether a streamed
// answer ends with a chunk that carries the token usage.
func (r *ChatRequest) IncludeUsage() bool {
	return r != nil && r.Stream && r.StreamOptions != nil && r.StreamOptions.IncludeUsage
}

// rqToolName is the Converse ToolName pattern, [a-zA-Z0-9_-]{1,64}, which
// is also OpenAI's rule for function names.
func rqToolNameOK(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// rqToolUseIDOK is the Converse ToolUseId pattern, [a-zA-Z0-9_.:-]{1,64}.
func rqToolUseIDOK(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// rqBlank reports text Converse calls blank: it refuses a message text block
// that is empty or only white space ("The text field in the ContentBlock
// object at messages.N.content.M is blank").
func rqBlank(s string) bool { return strings.TrimSpace(s) == "" }

// build validates r and builds the Converse request. It reads r only, so
// concurrent ConverseBody calls on one request are safe.
func (r *ChatRequest) build() (*rqConverse, *RequestError) {
	c := &rqConverse{}
	var e *RequestError
	if c.InferenceConfig, e = r.buildInference(); e != nil {
		return nil, e
	}
	if r.StreamOptions != nil && !r.Stream {
		return nil, rqErr("stream_options", "invalid_value", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
	}

	toolNames := map[string]bool{}
	var tools []rqTool
	for i, t := range r.Tools {
		p := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return nil, rqErr(p+".type", "invalid_value", "Invalid value for '%s.type': expected \"function\".", p)
		}
		if !rqToolNameOK(t.Function.Name) {
			return nil, rqErr(p+".function.name", "invalid_value", "Invalid value for '%s.function.name': %s must be 1 to 64 letters, digits, underscores or dashes.", p, rqQuote(t.Function.Name))
		}
		if toolNames[t.Function.Name] {
			return nil, rqErr(p+".function.name", "invalid_value", "Invalid value for '%s.function.name': %s names an earlier tool too; tool names must be unique.", p, rqQuote(t.Function.Name))
		}
		toolNames[t.Function.Name] = true
		schema := json.RawMessage(`{"type":"object","properties":{}}`)
		if len(t.Function.Parameters) > 0 {
			obj, _, ok := rqNormalizeObject(t.Function.Parameters)
			if !ok {
				return nil, rqErr(p+".function.parameters", "invalid_value", "Invalid value for '%s.function.parameters': expected a JSON Schema object.", p)
			}
			// Converse: "The top level schema type must be object". A schema
			// without "type" (OpenAI accepts {} for "no parameters") gets it.
			switch typ, has := obj["type"]; {
			case !has:
				obj["type"] = "object"
			case typ != "object":
				return nil, rqErr(p+".function.parameters", "invalid_value", "Invalid value for '%s.function.parameters': the top-level schema type must be \"object\" (Bedrock Converse tool input is a JSON object).", p)
			}
			if schema, e = rqMarshalParam(obj, p+".function.parameters"); e != nil {
				return nil, e
			}
		}
		tools = append(tools, rqTool{ToolSpec: rqToolSpec{
			Name:        t.Function.Name,
			Description: t.Function.Description, // NonEmptyString: omitted when empty
			InputSchema: rqInputSchema{JSON: schema},
			Strict:      rqTrueOrNil(t.Function.Strict),
		}})
	}

	hasToolBlocks, e := r.buildMessages(c)
	if e != nil {
		return nil, e
	}

	// Tool configuration. Converse requires toolConfig whenever the
	// conversation holds toolUse or toolResult blocks ("The toolConfig field
	// must be defined when using toolUse and toolResult content blocks"),
	// and has no "none" tool choice.
	choice := r.ToolChoice
	if choice != nil {
		switch choice.Type {
		case "none", "auto", "required":
		case "function":
			if !toolNames[choice.Name] {
				return nil, rqErr("tool_choice.function.name", "invalid_value", "Invalid value for 'tool_choice.function.name': %s is not the name of a function in 'tools'.", rqQuote(choice.Name))
			}
		default:
			return nil, rqErr("tool_choice", "invalid_value", "Invalid value for 'tool_choice': expected none, auto, required or a function.")
		}
	}
	switch {
	case len(tools) == 0:
		if choice != nil && (choice.Type == "required" || choice.Type == "function") {
			return nil, rqErr("tool_choice", "invalid_value", "Invalid value for 'tool_choice': it is only allowed when 'tools' are specified.")
		}
		if hasToolBlocks {
			return nil, rqErr("tools", "missing_required_parameter", "Missing required parameter: 'tools'. The conversation contains tool calls or tool results, and Bedrock Converse requires the tools to be declared then.")
		}
	case choice != nil && choice.Type == "none":
		// "none" is honoured by not offering the tools. A conversation
		// that already holds tool calls cannot be sent without them, and
		// with them the model could call one, which "none" forbids: refuse
		// rather than answer with a tool call the client ruled out.
		if hasToolBlocks {
			return nil, rqErr("tool_choice", "unsupported_value", "Unsupported value: tool_choice \"none\" cannot be honoured for a conversation that contains tool calls: Bedrock Converse then requires the tools to be offered, and has no way to forbid calling them. Use \"auto\", or leave the tool calls out.")
		}
	default:
		c.ToolConfig = &rqToolConfig{Tools: tools}
		if choice != nil {
			switch choice.Type {
			case "auto":
				c.ToolConfig.ToolChoice = &rqToolChoice{Auto: &struct{}{}}
			case "required":
				c.ToolConfig.ToolChoice = &rqToolChoice{Any: &struct{}{}}
			case "function":
				c.ToolConfig.ToolChoice = &rqToolChoice{Tool: &rqToolChoiceTool{Name: choice.Name}}
			}
		}
	}
	if c.ToolConfig != nil && r.ParallelToolCalls != nil && !*r.ParallelToolCalls {
		return nil, rqErr("parallel_tool_calls", "unsupported_value", "Unsupported value: 'parallel_tool_calls' false is not supported: Bedrock Converse cannot limit the model to one tool call per turn.")
	}

	if c.OutputConfig, e = r.buildOutput(); e != nil {
		return nil, e
	}
	switch r.ServiceTier {
	case "", "auto", "default":
	case "flex", "scale", "priority", "fast":
		return nil, rqErr("service_tier", "unsupported_value", "Unsupported value: service_tier %s is not available through this gateway; use \"auto\" or \"default\".", rqQuote(r.ServiceTier))
	default:
		return nil, rqErr("service_tier", "invalid_value", "Invalid value for 'service_tier': %s is not a service tier.", rqQuote(r.ServiceTier))
	}
	return c, nil
}

func rqTrueOrNil(b *bool) *bool {
	if b != nil && *b {
		t := true
		return &t
	}
	return nil
}

func rqMarshalParam(v any, param string) (json.RawMessage, *RequestError) {
	out, err := rqMarshal(v)
	if err != nil {
		return nil, rqErr(param, "invalid_value", "Invalid value for '%s': it could not be encoded as JSON.", param)
	}
	return out, nil
}

func (r *ChatRequest) buildInference() (*rqInferenceConfig, *RequestError) {
	ic := &rqInferenceConfig{}
	max := r.MaxCompletionTokens
	if r.MaxTokens != nil {
		if max != nil && *max != *r.MaxTokens {
			return nil, rqErr("max_tokens", "invalid_value", "Invalid value for 'max_tokens': it differs from 'max_completion_tokens'; set only one of them.")
		}
		max = r.MaxTokens
	}
	if max != nil {
		param := "max_completion_tokens"
		if r.MaxCompletionTokens == nil {
			param = "max_tokens"
		}
		// Converse maxTokens is an integer of at least 1 (an int32 on the wire).
		if *max < 1 || *max > math.MaxInt32 {
			return nil, rqErr(param, "invalid_value", "Invalid value for '%s': it must be between 1 and %d.", param, math.MaxInt32)
		}
		n := *max
		ic.MaxTokens = &n
	}
	if t := r.Temperature; t != nil {
		switch {
		case *t < 0 || *t > 2 || math.IsNaN(*t):
			return nil, rqErr("temperature", "invalid_value", "Invalid value for 'temperature': it must be between 0 and 2.")
		case *t > 1:
			// OpenAI's range is 0..2; Converse inferenceConfig.temperature is
			// 0..1. Rescaling would make every temperature mean something
			// else on Bedrock, and clamping would quietly change the request.
			return nil, rqErr("temperature", "unsupported_value", "Unsupported value: 'temperature' above 1 is not supported: Bedrock Converse accepts temperatures from 0 to 1.")
		}
		v := *t
		ic.Temperature = &v
	}
	if p := r.TopP; p != nil {
		if *p < 0 || *p > 1 || math.IsNaN(*p) {
			return nil, rqErr("top_p", "invalid_value", "Invalid value for 'top_p': it must be between 0 and 1.")
		}
		v := *p
		ic.TopP = &v
	}
	if len(r.Stop) > rqMaxStop {
		return nil, rqErr("stop", "invalid_value", "Invalid value for 'stop': at most %d stop sequences are allowed.", rqMaxStop)
	}
	for i, s := range r.Stop {
		// Converse stopSequences members are NonEmptyString.
		if s == "" {
			return nil, rqErr(fmt.Sprintf("stop[%d]", i), "invalid_value", "Invalid value for 'stop': stop sequences must not be empty.")
		}
	}
	if len(r.Stop) > 0 {
		ic.StopSequences = slices.Clone(r.Stop)
	}
	if ic.MaxTokens == nil && ic.Temperature == nil && ic.TopP == nil && ic.StopSequences == nil {
		return nil, nil
	}
	return ic, nil
}

func (r *ChatRequest) buildOutput() (*rqOutputConfig, *RequestError) {
	oc := &rqOutputConfig{}
	if rf := r.ResponseFormat; rf != nil {
		switch rf.Type {
		case "text":
		case "json_schema":
			const p = "response_format.json_schema"
			js := rf.JSONSchema
			if js == nil {
				return nil, rqErr(p, "missing_required_parameter", "Missing required parameter: '%s'.", p)
			}
			if !rqToolNameOK(js.Name) {
				return nil, rqErr(p+".name", "invalid_value", "Invalid value for '%s.name': %s must be 1 to 64 letters, digits, underscores or dashes.", p, rqQuote(js.Name))
			}
			if len(js.Schema) == 0 {
				return nil, rqErr(p+".schema", "missing_required_parameter", "Missing required parameter: '%s.schema': Bedrock Converse structured output needs the JSON Schema.", p)
			}
			_, schema, ok := rqNormalizeObject(js.Schema)
			if !ok {
				return nil, rqErr(p+".schema", "invalid_value", "Invalid value for '%s.schema': expected a JSON Schema object.", p)
			}
			oc.TextFormat = &rqTextFormat{Type: "json_schema", Structure: rqOutputStructure{JSONSchema: rqJSONSchema{
				Schema:      string(schema),
				Name:        js.Name,
				Description: js.Description,
			}}}
		case "json_object":
			return nil, rqErr("response_format", "unsupported_parameter", "Unsupported parameter: response_format of type json_object is not supported: Bedrock Converse has no JSON mode; use json_schema with a schema.")
		default:
			return nil, rqErr("response_format.type", "invalid_value", "Invalid value for 'response_format.type': expected text or json_schema.")
		}
	}
	switch r.ReasoningEffort {
	case "":
	case "low", "medium", "high", "xhigh", "max":
		// Converse OutputConfig.effort: "Supported values are low, medium,
		// high, xhigh, and max."
		oc.Effort = r.ReasoningEffort
	case "none", "minimal":
		return nil, rqErr("reasoning_effort", "unsupported_value", "Unsupported value: reasoning_effort %s is not supported: Bedrock Converse effort levels are low, medium, high, xhigh and max.", rqQuote(r.ReasoningEffort))
	default:
		return nil, rqErr("reasoning_effort", "invalid_value", "Invalid value for 'reasoning_effort': %s is not one of none, minimal, low, medium, high, xhigh or max.", rqQuote(r.ReasoningEffort))
	}
	if oc.TextFormat == nil && oc.Effort == "" {
		return nil, nil
	}
	return oc, nil
}

// buildMessages turns the conversation into Converse system blocks and
// messages, and reports whether it holds tool blocks.
//
// Converse wants a conversation that starts with a user message and
// alternates user and assistant, with each toolResult in the user message
// right after the assistant message holding its toolUse. So: system and
// developer messages go to system, wherever they are; tool messages become
// toolResult blocks of a user message; consecutive messages of one role are
// merged into one message (blocks concatenated, in order); blank text is
// left out (Converse refuses blank text blocks), and an assistant message
// left with nothing is dropped, since it said nothing. As OpenAI does, every
// tool call must be answered by a tool message before the conversation goes
// on, and every tool message must answer a call of the assistant message
// before it.
func (r *ChatRequest) buildMessages(c *rqConverse) (bool, *RequestError) {
	if len(r.Messages) == 0 {
		return false, rqErr("messages", "invalid_value", "Invalid value for 'messages': the conversation must have at least one message.")
	}
	var (
		firstIdx      []int           // index in r.Messages of each Converse message's first message
		calls         map[string]bool // tool call IDs of the last assistant message, true once answered
		callOrder     []string
		callsFrom     = -1 // index of that assistant message
		hasToolBlocks bool
	)
	unanswered := func() []string {
		var ids []string
		for _, id := range callOrder {
			if !calls[id] {
				ids = append(ids, id)
			}
		}
		return ids
	}
	checkAnswered := func() *RequestError {
		if ids := unanswered(); len(ids) > 0 {
			p := "messages[" + strconv.Itoa(callsFrom) + "].tool_calls"
			return rqErr(p, "invalid_value", "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'; no tool message answers %s.", rqQuote(ids[0]))
		}
		return nil
	}
	images := 0 // images in the last Converse message
	appendBlocks := func(i int, role string, blocks []rqBlock) {
		if n := len(c.Messages); n > 0 && c.Messages[n-1].Role == role {
			c.Messages[n-1].Content = append(c.Messages[n-1].Content, blocks...)
			return
		}
		c.Messages = append(c.Messages, rqMessage{Role: role, Content: blocks})
		firstIdx = append(firstIdx, i)
		images = 0
	}
	// newTurn reports whether a message of role starts a new Converse
	// message rather than merging into the last one.
	newTurn := func(role string) bool {
		n := len(c.Messages)
		return n == 0 || c.Messages[n-1].Role != role
	}

	for i := range r.Messages {
		m := &r.Messages[i]
		p := "messages[" + strconv.Itoa(i) + "]"
		if len(m.ToolCalls) > 0 && m.Role != "assistant" {
			return false, rqErr(p+".tool_calls", "invalid_value", "Invalid value for '%s': only assistant messages have tool calls.", p)
		}
		if m.ToolCallID != "" && m.Role != "tool" {
			return false, rqErr(p+".tool_call_id", "invalid_value", "Invalid value for '%s': only tool messages have a tool_call_id.", p)
		}
		switch m.Role {
		case "system", "developer":
			for j, part := range m.Content {
				if part.Type != "text" {
					return false, rqErr(fmt.Sprintf("%s.content[%d].type", p, j), "invalid_value", "Invalid value for '%s.content[%d].type': %s messages take text parts only.", p, j, m.Role)
				}
				// SystemContentBlock text is a NonEmptyString.
				if !rqBlank(part.Text) {
					c.System = append(c.System, rqSystemBlock{Text: part.Text})
				}
			}

		case "user":
			if e := checkAnswered(); e != nil {
				return false, e
			}
			calls, callOrder, callsFrom = nil, nil, -1
			var blocks []rqBlock
			seen := images // images already in the message this one merges into
			if newTurn("user") {
				seen = 0
			}
			for j, part := range m.Content {
				pp := fmt.Sprintf("%s.content[%d]", p, j)
				switch part.Type {
				case "text":
					if !rqBlank(part.Text) {
						blocks = append(blocks, rqBlock{Text: &part.Text})
					}
				case "image_url":
					if part.ImageURL == nil {
						return false, rqErr(pp+".image_url", "missing_required_parameter", "Missing required parameter: '%s.image_url'.", pp)
					}
					img := part.image
					if img == nil || img.src != part.ImageURL.URL {
						var e *RequestError
						if img, e = rqDecodeImage(part.ImageURL.URL, pp+".image_url.url"); e != nil {
							return false, e
						}
					}
					if seen++; seen > rqMaxImagesPerMessage {
						return false, rqErr(pp, "invalid_value", "Invalid value for '%s': Bedrock Converse accepts at most %d images in a message.", pp, rqMaxImagesPerMessage)
					}
					blocks = append(blocks, rqBlock{Image: &rqImageBlock{Format: img.format, Source: rqImageSource{Bytes: img.data}}})
				default:
					return false, rqErr(pp+".type", "invalid_value", "Invalid value for '%s.type': user messages take text and image_url parts.", pp)
				}
			}
			if len(blocks) == 0 {
				return false, rqErr(p+".content", "invalid_value", "Invalid value for '%s.content': the message is empty; Bedrock Converse refuses messages without content.", p)
			}
			appendBlocks(i, "user", blocks)
			images = seen

		case "assistant":
			if e := checkAnswered(); e != nil {
				return false, e
			}
			calls, callOrder, callsFrom = nil, nil, -1
			var blocks []rqBlock
			for j, part := range m.Content {
				text := part.Text
				switch part.Type {
				case "text":
				case "refusal":
					text = part.Refusal
				default:
					return false, rqErr(fmt.Sprintf("%s.content[%d].type", p, j), "invalid_value", "Invalid value for '%s.content[%d].type': assistant messages take text and refusal parts.", p, j)
				}
				if !rqBlank(text) {
					blocks = append(blocks, rqBlock{Text: &text})
				}
			}
			if !rqBlank(m.Refusal) {
				refusal := m.Refusal
				blocks = append(blocks, rqBlock{Text: &refusal})
			}
			if len(m.ToolCalls) > 0 {
				calls = make(map[string]bool, len(m.ToolCalls))
				callsFrom = i
			}
			for k, tc := range m.ToolCalls {
				tp := fmt.Sprintf("%s.tool_calls[%d]", p, k)
				if tc.Type != "function" {
					return false, rqErr(tp+".type", "invalid_value", "Invalid value for '%s.type': expected \"function\".", tp)
				}
				if !rqToolUseIDOK(tc.ID) {
					return false, rqErr(tp+".id", "invalid_value", "Invalid value for '%s.id': %s is not a tool call ID Bedrock Converse accepts (1 to 64 letters, digits, '_', '-', '.' or ':').", tp, rqQuote(tc.ID))
				}
				if _, dup := calls[tc.ID]; dup {
					return false, rqErr(tp+".id", "invalid_value", "Invalid value for '%s.id': %s is used by another tool call of this message.", tp, rqQuote(tc.ID))
				}
				if !rqToolNameOK(tc.Function.Name) {
					return false, rqErr(tp+".function.name", "invalid_value", "Invalid value for '%s.function.name': %s must be 1 to 64 letters, digits, underscores or dashes.", tp, rqQuote(tc.Function.Name))
				}
				input := json.RawMessage(`{}`)
				// An empty arguments string is a call without arguments.
				if !rqBlank(tc.Function.Arguments) {
					var ok bool
					if _, input, ok = rqNormalizeObject([]byte(tc.Function.Arguments)); !ok {
						return false, rqErr(tp+".function.arguments", "invalid_value", "Invalid value for '%s.function.arguments': it must be a JSON object, as Bedrock Converse tool input is.", tp)
					}
				}
				calls[tc.ID] = false
				callOrder = append(callOrder, tc.ID)
				blocks = append(blocks, rqBlock{ToolUse: &rqToolUse{ToolUseID: tc.ID, Name: tc.Function.Name, Input: input}})
				hasToolBlocks = true
			}
			if len(blocks) > 0 {
				appendBlocks(i, "assistant", blocks)
			}

		case "tool":
			answered, ok := calls[m.ToolCallID]
			switch {
			case !ok:
				return false, rqErr(p+".tool_call_id", "invalid_value", "Invalid value for '%s.tool_call_id': %s answers no tool call of the assistant message before it; tool messages must follow the assistant message whose tool_calls they respond to.", p, rqQuote(m.ToolCallID))
			case answered:
				return false, rqErr(p+".tool_call_id", "invalid_value", "Invalid value for '%s.tool_call_id': tool call %s is answered twice.", p, rqQuote(m.ToolCallID))
			}
			calls[m.ToolCallID] = true
			var content []rqToolResultContent
			for j, part := range m.Content {
				if part.Type != "text" {
					return false, rqErr(fmt.Sprintf("%s.content[%d].type", p, j), "invalid_value", "Invalid value for '%s.content[%d].type': tool messages take text parts only.", p, j)
				}
				// Unlike message text, a tool result's text may be empty.
				content = append(content, rqToolResultContent{Text: part.Text})
			}
			if len(content) == 0 {
				content = []rqToolResultContent{{Text: ""}}
			}
			appendBlocks(i, "user", []rqBlock{{ToolResult: &rqToolResult{ToolUseID: m.ToolCallID, Content: content}}})
			hasToolBlocks = true

		default:
			return false, rqErr(p+".role", "invalid_value", "Invalid value for '%s.role': %s is not one of system, developer, user, assistant or tool.", p, rqQuote(m.Role))
		}
	}
	if e := checkAnswered(); e != nil {
		return false, e
	}
	if len(c.Messages) == 0 {
		return false, rqErr("messages", "invalid_value", "Invalid value for 'messages': the conversation has no user message; Bedrock Converse needs one after the system and developer messages.")
	}
	if c.Messages[0].Role != "user" {
		p := "messages[" + strconv.Itoa(firstIdx[0]) + "]"
		return false, rqErr(p+".role", "invalid_value", "Invalid value for '%s.role': the first message after the system and developer messages must be a user message; Bedrock Converse conversations start with the user.", p)
	}
	return hasToolBlocks, nil
}
