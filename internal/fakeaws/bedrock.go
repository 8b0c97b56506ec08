package fakeaws

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Bedrock Runtime operation names, as the SDKs and the recorded
// Invocation.Operation spell them.
const (
	opConverse       = "Converse"
	opConverseStream = "ConverseStream"
	opInvoke         = "InvokeModel"
	opInvokeStream   = "InvokeModelWithResponseStream"
	opCountTokens    = "CountTokens"
)

// pathOps maps the last path segment of /model/{modelId}/{op} to the
// operation (Bedrock Runtime service model, http bindings).
var pathOps = map[string]string{
	"converse":                    opConverse,
	"converse-stream":             opConverseStream,
	"invoke":                      opInvoke,
	"invoke-with-response-stream": opInvokeStream,
	"count-tokens":                opCountTokens,
}

const (
	// maxBedrockBody bounds the request body: InvokeModel's body is at
	// most 25,000,000 bytes (Bedrock Runtime service model); the margin
	// covers Converse's JSON envelope.
	maxBedrockBody = 25_000_000 + 1<<20
	// maxModelIDLen is the longest model identifier the Converse and
	// InvokeModel path labels accept (Bedrock Runtime service model).
	maxModelIDLen = 2048

	// errorTypeSuffix follows the error name in x-amzn-ErrorType.
	errorTypeSuffix = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

	// latencyMs is the fixed latency the fake reports, so responses are
	// deterministic.
	latencyMs = 100
)

// Model IDs that make the fake Bedrock fail on purpose, so tests of the
// gateway can check how it passes errors through. Each fails every
// operation with the named error and the HTTP status of the Bedrock
// Runtime service model, except ModelStreamException.
const (
	ModelThrottle     = "fake.error-throttle"      // 429 ThrottlingException
	ModelNotReady     = "fake.error-not-ready"     // 429 ModelNotReadyException
	ModelValidation   = "fake.error-validation"    // 400 ValidationException
	ModelQuota        = "fake.error-quota"         // 400 ServiceQuotaExceededException
	ModelAccessDenied = "fake.error-access-denied" // 403 AccessDeniedException
	ModelNotFound     = "fake.error-not-found"     // 404 ResourceNotFoundException
	ModelTimeout      = "fake.error-timeout"       // 408 ModelTimeoutException
	ModelError        = "fake.error-model"         // 424 ModelErrorException
	ModelInternal     = "fake.error-internal"      // 500 InternalServerException
	ModelUnavailable  = "fake.error-unavailable"   // 503 ServiceUnavailableException
	// ModelStreamException makes ConverseStream and
	// InvokeModelWithResponseStream answer HTTP 200, send two events, then
	// a modelStreamErrorException frame. Other operations succeed.
	ModelStreamException = "fake.stream-exception"
)

// ReplyText is the assistant's answer to every request, cut to the
// request's max tokens. It is one output token per word.
const ReplyText = "Hello from emulated Bedrock"

// reply is ReplyText split into tokens.
var reply = strings.Fields(ReplyText)

// faultModels are the model IDs that make every operation fail with the
// given Bedrock error (statuses from the Bedrock Runtime service model).
var faultModels = map[string]bedrockError{
	ModelThrottle:     {http.StatusTooManyRequests, "ThrottlingException", "Too many requests, please wait before trying again."},
	ModelNotReady:     {http.StatusTooManyRequests, "ModelNotReadyException", "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation."},
	ModelValidation:   {http.StatusBadRequest, "ValidationException", "The provided model identifier is invalid."},
	ModelQuota:        {http.StatusBadRequest, "ServiceQuotaExceededException", "Your request exceeds the service quota for your account."},
	ModelAccessDenied: {http.StatusForbidden, "AccessDeniedException", "You don't have access to the model with the specified model ID."},
	ModelNotFound:     {http.StatusNotFound, "ResourceNotFoundException", "Model not found."},
	ModelTimeout:      {http.StatusRequestTimeout, "ModelTimeoutException", "Model has timed out in processing the request."},
	ModelError:        {http.StatusFailedDependency, "ModelErrorException", "The model encountered an error processing the request."},
	ModelInternal:     {http.StatusInternalServerError, "InternalServerException", "The server encountered an internal error."},
	ModelUnavailable:  {http.StatusServiceUnavailable, "ServiceUnavailableException", "The service is temporarily unavailable."},
}

// bedrockError is a Bedrock error answer: status, x-amzn-ErrorType name
// and {"message": ...}.
type bedrockError struct {
	status int
	typ    string
	msg    string
}

func (e *bedrockError) Error() string { return e.typ + ": " + e.msg }

func validationError(format string, args ...any) *bedrockError {
	return &bedrockError{http.StatusBadRequest, "ValidationException", fmt.Sprintf(format, args...)}
}

func writeBedrockError(w http.ResponseWriter, e *bedrockError) {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{e.msg})
	h := w.Header()
	h.Set("X-Amzn-Errortype", e.typ+errorTypeSuffix)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

// bedrockAuthError maps an authentication failure to the Bedrock error.
func bedrockAuthError(e *authError) *bedrockError {
	switch e.kind {
	case authMissing:
		return &bedrockError{http.StatusForbidden, "MissingAuthenticationTokenException", e.msg}
	case authBearer, authUnknownKey:
		return &bedrockError{http.StatusForbidden, "UnrecognizedClientException", e.msg}
	case authIncomplete:
		return &bedrockError{http.StatusForbidden, "IncompleteSignatureException", e.msg}
	case authExpired:
		return &bedrockError{http.StatusForbidden, "ExpiredTokenException", e.msg}
	default:
		return &bedrockError{http.StatusForbidden, "InvalidSignatureException", e.msg}
	}
}

// parseModelPath splits an escaped request path /model/{modelId}/{op}.
// It works on the escaped path because a model ARN's "/" arrives as %2F
// and must not split the label; the label is then unescaped. ok is false
// for any other path.
func parseModelPath(escapedPath string) (modelID, op string, ok bool) {
	seg := strings.Split(escapedPath, "/")
	if len(seg) != 4 || seg[0] != "" || seg[1] != "model" {
		return "", "", false
	}
	op, ok = pathOps[seg[3]]
	if !ok {
		return "", "", false
	}
	id, err := url.PathUnescape(seg[2])
	if err != nil || id == "" || len(id) > maxModelIDLen {
		return "", "", false
	}
	return id, op, true
}

// outcome is what a Bedrock call produced, for the record.
type outcome struct {
	status      int
	in, out     int64
	streamError string
}

// BedrockHandler serves Bedrock Runtime (REST-JSON) at
// POST /model/{modelId}/{converse,converse-stream,invoke,
// invoke-with-response-stream,count-tokens}.
func (s *Server) BedrockHandler() http.Handler {
	return http.HandlerFunc(s.serveBedrock)
}

func (s *Server) serveBedrock(w http.ResponseWriter, r *http.Request) {
	reqID := newRequestID()
	w.Header().Set("X-Amzn-Requestid", reqID)

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBedrockBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeBedrockError(w, validationError("The request body exceeds the 25,000,000 byte limit."))
			return
		}
		writeBedrockError(w, validationError("Could not read the request body."))
		return
	}
	cred, aerr := s.authenticate(r, body, "bedrock")
	if aerr != nil {
		writeBedrockError(w, bedrockAuthError(aerr))
		return
	}

	inv := Invocation{
		Time:         s.opts.Now(),
		AccessKeyID:  cred.accessKeyID,
		PrincipalARN: cred.principalARN,
		SessionName:  cred.sessionName,
		Tags:         maps.Clone(cred.tags),
		RequestID:    reqID,
		Headers:      redactHeaders(r.Header),
		Body:         body,
	}
	recorded := false
	record := func(o outcome) {
		if recorded {
			return
		}
		recorded = true
		inv.Status, inv.InputTokens, inv.OutputTokens, inv.StreamError = o.status, o.in, o.out, o.streamError
		s.addInvocation(inv)
	}
	fail := func(e *bedrockError) {
		record(outcome{status: e.status})
		writeBedrockError(w, e)
	}

	modelID, op, ok := parseModelPath(r.URL.EscapedPath())
	if !ok || r.Method != http.MethodPost {
		fail(&bedrockError{http.StatusNotFound, "UnknownOperationException", "The requested operation is not recognized by the service."})
		return
	}
	inv.Operation, inv.ModelID = op, modelID
	if f, ok := faultModels[modelID]; ok {
		fail(&f)
		return
	}

	switch op {
	case opConverse:
		s.converse(w, body, record, fail)
	case opConverseStream:
		s.converseStream(r.Context(), w, modelID, body, record, fail)
	case opInvoke:
		s.invoke(w, modelID, body, record, fail)
	case opInvokeStream:
		s.invokeStream(r.Context(), w, modelID, body, record, fail)
	case opCountTokens:
		s.countTokens(w, modelID, body, record, fail)
	}
}

// contentBlock is the text member of a Converse ContentBlock or
// SystemContentBlock union; other members are ignored.
type contentBlock struct {
	Text *string `json:"text,omitempty"`
}

type converseMessage struct {
	Role    string         `json:"role"`
	Content []contentBlock `json:"content"`
}

// converseInput is the part of a Converse request the fake reads.
type converseInput struct {
	Messages        []converseMessage `json:"messages"`
	System          []contentBlock    `json:"system"`
	InferenceConfig *struct {
		MaxTokens *int `json:"maxTokens"`
	} `json:"inferenceConfig"`
}

// parseConverse decodes and validates a Converse request and returns its
// input token count and maxTokens (0 if unset).
func parseConverse(body []byte) (in int64, maxTokens int, e *bedrockError) {
	var req converseInput
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, 0, validationError("Malformed input request, please reformat your input and try again.")
	}
	if in, e = countConverse(req); e != nil {
		return 0, 0, e
	}
	if req.InferenceConfig != nil && req.InferenceConfig.MaxTokens != nil {
		maxTokens = *req.InferenceConfig.MaxTokens
		if maxTokens < 1 {
			return 0, 0, validationError("1 validation error detected: Value '%d' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1", maxTokens)
		}
	}
	return in, maxTokens, nil
}

// countConverse validates the conversation and counts its input tokens:
// one per whitespace-separated word of every text block, at least 1.
func countConverse(req converseInput) (int64, *bedrockError) {
	if len(req.Messages) == 0 || req.Messages[0].Role != "user" {
		return 0, validationError("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
	}
	var n int64
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return 0, validationError("1 validation error detected: Value '%s' at 'messages.%d.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]", clip(m.Role), i+1)
		}
		for _, b := range m.Content {
			if b.Text != nil {
				n += int64(len(strings.Fields(*b.Text)))
			}
		}
	}
	for _, b := range req.System {
		if b.Text != nil {
			n += int64(len(strings.Fields(*b.Text)))
		}
	}
	return max(n, 1), nil
}

// answer returns the reply words, cut to maxTokens (0: no limit), and the
// stop reason.
func answer(maxTokens int) ([]string, string) {
	if maxTokens > 0 && maxTokens < len(reply) {
		return reply[:maxTokens], "max_tokens"
	}
	return reply, "end_turn"
}

type tokenUsage struct {
	InputTokens  int64 `json:"inputTokens"`
	OutputTokens int64 `json:"outputTokens"`
	TotalTokens  int64 `json:"totalTokens"`
}

type metrics struct {
	LatencyMs int64 `json:"latencyMs"`
}

type textBlock struct {
	Text string `json:"text"`
}

func (s *Server) converse(w http.ResponseWriter, body []byte, record func(outcome), fail func(*bedrockError)) {
	in, maxTokens, e := parseConverse(body)
	if e != nil {
		fail(e)
		return
	}
	words, stop := answer(maxTokens)
	out := int64(len(words))
	type message struct {
		Role    string      `json:"role"`
		Content []textBlock `json:"content"`
	}
	resp := struct {
		Output struct {
			Message message `json:"message"`
		} `json:"output"`
		StopReason string     `json:"stopReason"`
		Usage      tokenUsage `json:"usage"`
		Metrics    metrics    `json:"metrics"`
	}{
		StopReason: stop,
		Usage:      tokenUsage{in, out, in + out},
		Metrics:    metrics{latencyMs},
	}
	resp.Output.Message = message{Role: "assistant", Content: []textBlock{{strings.Join(words, " ")}}}
	record(outcome{status: http.StatusOK, in: in, out: out})
	writeJSON(w, resp, nil)
}

func (s *Server) converseStream(ctx context.Context, w http.ResponseWriter, modelID string, body []byte, record func(outcome), fail func(*bedrockError)) {
	in, maxTokens, e := parseConverse(body)
	if e != nil {
		fail(e)
		return
	}
	words, stop := answer(maxTokens)
	out := int64(len(words))

	frames := []frame{eventFrame("messageStart", mustJSON(map[string]string{"role": "assistant"}), 0)}
	for i, word := range words {
		if i < len(words)-1 {
			word += " "
		}
		frames = append(frames, eventFrame("contentBlockDelta", mustJSON(map[string]any{
			"contentBlockIndex": 0,
			"delta":             map[string]string{"text": word},
		}), int64(i+1)))
	}
	frames = append(frames,
		eventFrame("contentBlockStop", mustJSON(map[string]int{"contentBlockIndex": 0}), out),
		eventFrame("messageStop", mustJSON(map[string]string{"stopReason": stop}), out),
		eventFrame("metadata", mustJSON(map[string]any{
			"usage":   tokenUsage{in, out, in + out},
			"metrics": metrics{latencyMs},
		}), out),
	)
	s.stream(ctx, w, opConverseStream, modelID, in, frames, nil, record)
}

// stream sends frames, replacing the tail with a modelStreamErrorException
// for the fake.stream-exception model, and records the outcome.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, op, modelID string, in int64, frames []frame, headers http.Header, record func(outcome)) {
	o := outcome{status: http.StatusOK, in: in, out: frames[len(frames)-1].outTokens}
	if modelID == ModelStreamException {
		// The first two events, then the error.
		frames = frames[:2]
		o.out = frames[1].outTokens
		o.streamError = "modelStreamErrorException"
		frames = append(frames, exceptionFrame(o.streamError, mustJSON(map[string]any{
			"message":            "The model stream failed (injected by fakeaws).",
			"originalStatusCode": 500,
			"originalMessage":    "injected failure",
		}), o.out))
	}
	n, err := s.writeStream(ctx, w, op, frames, headers, func() { record(o) })
	if err != nil {
		// The stream stopped early; bill what the model produced so far.
		o.out = 0
		if n > 0 {
			o.out = frames[n-1].outTokens
		}
		o.streamError = "ClientDisconnected"
		if errors.Is(err, http.ErrNotSupported) {
			o.streamError = "FlushNotSupported"
		}
		record(o)
	}
}

// anthropicRequest is the part of an Anthropic Messages body (Bedrock
// InvokeModel, anthropic_version "bedrock-2023-05-31") the fake reads.
type anthropicRequest struct {
	AnthropicVersion *string `json:"anthropic_version"`
	MaxTokens        *int    `json:"max_tokens"`
	Messages         *[]struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	System json.RawMessage `json:"system"`
	// Bedrock rejects these Anthropic-API fields: the model is in the
	// path and streaming is chosen by the operation.
	Model  json.RawMessage `json:"model"`
	Stream json.RawMessage `json:"stream"`
}

func isAnthropic(modelID string) bool { return strings.Contains(modelID, "anthropic") }

// malformed is Bedrock's message for a model body that fails the model's
// input schema.
func malformed(detail string) *bedrockError {
	return validationError("Malformed input request: %s, please reformat your input and try again.", detail)
}

// parseInvoke validates an InvokeModel body for modelID and returns its
// input token count and max tokens (0: unset).
func parseInvoke(modelID string, body []byte) (in int64, maxTokens int, e *bedrockError) {
	if !isAnthropic(modelID) {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return 0, 0, malformed("expected a JSON document")
		}
		return max(countStrings(v), 1), 0, nil
	}
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return 0, 0, malformed("expected a JSON object")
	}
	switch {
	case req.Model != nil:
		return 0, 0, malformed("#: extraneous key [model] is not permitted")
	case req.Stream != nil:
		return 0, 0, malformed("#: extraneous key [stream] is not permitted")
	case req.AnthropicVersion == nil:
		return 0, 0, malformed("#: required key [anthropic_version] not found")
	case req.MaxTokens == nil:
		return 0, 0, malformed("#: required key [max_tokens] not found")
	case req.Messages == nil:
		return 0, 0, malformed("#: required key [messages] not found")
	case *req.MaxTokens < 1:
		return 0, 0, malformed("#/max_tokens: must be greater than or equal to 1")
	}
	for _, m := range *req.Messages {
		n, ok := countAnthropicContent(m.Content)
		if !ok {
			return 0, 0, malformed("#/messages: content must be a string or an array of content blocks")
		}
		in += n
	}
	if len(req.System) > 0 {
		n, ok := countAnthropicContent(req.System)
		if !ok {
			return 0, 0, malformed("#/system: must be a string or an array of text blocks")
		}
		in += n
	}
	return max(in, 1), *req.MaxTokens, nil
}

// countAnthropicContent counts the words of Anthropic content: a string or
// an array of blocks whose "text" fields are counted.
func countAnthropicContent(raw json.RawMessage) (int64, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return int64(len(strings.Fields(s))), true
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return 0, false
	}
	var n int64
	for _, b := range blocks {
		n += int64(len(strings.Fields(b.Text)))
	}
	return n, true
}

// countStrings counts the words of every string in a JSON value.
func countStrings(v any) int64 {
	switch v := v.(type) {
	case string:
		return int64(len(strings.Fields(v)))
	case []any:
		var n int64
		for _, e := range v {
			n += countStrings(e)
		}
		return n
	case map[string]any:
		var n int64
		for _, e := range v {
			n += countStrings(e)
		}
		return n
	}
	return 0
}

func (s *Server) invoke(w http.ResponseWriter, modelID string, body []byte, record func(outcome), fail func(*bedrockError)) {
	in, maxTokens, e := parseInvoke(modelID, body)
	if e != nil {
		fail(e)
		return
	}
	words, stop := answer(maxTokens)
	out := int64(len(words))
	text := strings.Join(words, " ")
	var resp any
	if isAnthropic(modelID) {
		resp = map[string]any{
			"id":            "msg_bdrk_" + randomString(24, secretAlph[:62]),
			"type":          "message",
			"role":          "assistant",
			"model":         modelID,
			"content":       []map[string]string{{"type": "text", "text": text}},
			"stop_reason":   stop,
			"stop_sequence": nil,
			"usage":         map[string]int64{"input_tokens": in, "output_tokens": out},
		}
	} else {
		resp = map[string]string{"outputText": text}
	}
	h := http.Header{}
	h.Set("X-Amzn-Bedrock-Input-Token-Count", strconv.FormatInt(in, 10))
	h.Set("X-Amzn-Bedrock-Output-Token-Count", strconv.FormatInt(out, 10))
	h.Set("X-Amzn-Bedrock-Invocation-Latency", strconv.Itoa(latencyMs))
	record(outcome{status: http.StatusOK, in: in, out: out})
	writeJSON(w, resp, h)
}

func (s *Server) invokeStream(ctx context.Context, w http.ResponseWriter, modelID string, body []byte, record func(outcome), fail func(*bedrockError)) {
	in, maxTokens, e := parseInvoke(modelID, body)
	if e != nil {
		fail(e)
		return
	}
	words, stop := answer(maxTokens)
	out := int64(len(words))
	invocationMetrics := map[string]int64{
		"inputTokenCount":   in,
		"outputTokenCount":  out,
		"invocationLatency": latencyMs,
		"firstByteLatency":  latencyMs / 2,
	}

	// Each chunk wraps one model-native event.
	var events []any
	var outAfter []int64
	add := func(ev any, outSoFar int64) {
		events = append(events, ev)
		outAfter = append(outAfter, outSoFar)
	}
	if isAnthropic(modelID) {
		add(map[string]any{"type": "message_start", "message": map[string]any{
			"id": "msg_bdrk_" + randomString(24, secretAlph[:62]), "type": "message", "role": "assistant",
			"model": modelID, "content": []any{}, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]int64{"input_tokens": in, "output_tokens": 1},
		}}, 0)
		add(map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]string{"type": "text", "text": ""}}, 0)
		for i, word := range words {
			if i < len(words)-1 {
				word += " "
			}
			add(map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]string{"type": "text_delta", "text": word}}, int64(i+1))
		}
		add(map[string]any{"type": "content_block_stop", "index": 0}, out)
		add(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]int64{"output_tokens": out}}, out)
		add(map[string]any{"type": "message_stop", "amazon-bedrock-invocationMetrics": invocationMetrics}, out)
	} else {
		for i, word := range words {
			if i < len(words)-1 {
				word += " "
			}
			add(map[string]any{"outputText": word, "index": 0}, int64(i+1))
		}
		add(map[string]any{"outputText": "", "index": 0, "completionReason": "FINISH", "amazon-bedrock-invocationMetrics": invocationMetrics}, out)
	}
	frames := make([]frame, len(events))
	for i, ev := range events {
		frames[i] = eventFrame("chunk", mustJSON(map[string]string{
			"bytes": base64.StdEncoding.EncodeToString(mustJSON(ev)),
			// Bedrock pads chunk payloads with a random-length "p" field
			// (observed); clients must ignore it.
			"p": secretAlph[:(i*7)%40+1],
		}), outAfter[i])
	}
	h := http.Header{}
	h.Set("X-Amzn-Bedrock-Content-Type", "application/json")
	s.stream(ctx, w, opInvokeStream, modelID, in, frames, h, record)
}

func (s *Server) countTokens(w http.ResponseWriter, modelID string, body []byte, record func(outcome), fail func(*bedrockError)) {
	var req struct {
		Input struct {
			Converse    *converseInput `json:"converse"`
			InvokeModel *struct {
				Body []byte `json:"body"`
			} `json:"invokeModel"`
		} `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fail(validationError("Malformed input request, please reformat your input and try again."))
		return
	}
	var in int64
	var e *bedrockError
	switch {
	case req.Input.Converse != nil && req.Input.InvokeModel != nil:
		e = validationError("Exactly one of input.converse and input.invokeModel must be set.")
	case req.Input.Converse != nil:
		in, e = countConverse(*req.Input.Converse)
	case req.Input.InvokeModel != nil:
		in, _, e = parseInvoke(modelID, req.Input.InvokeModel.Body)
	default:
		e = validationError("Exactly one of input.converse and input.invokeModel must be set.")
	}
	if e != nil {
		fail(e)
		return
	}
	record(outcome{status: http.StatusOK, in: in})
	writeJSON(w, map[string]int64{"inputTokens": in}, nil)
}

// writeJSON sends v as a 200 application/json response with extra
// headers.
func writeJSON(w http.ResponseWriter, v any, extra http.Header) {
	body := mustJSON(v)
	h := w.Header()
	for k, vs := range extra {
		h[k] = vs
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// mustJSON marshals values built by this package, which always succeeds.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeaws: marshal %T: %v", v, err))
	}
	return b
}
