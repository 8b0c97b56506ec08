package fakeaws

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Bedrock Runtime operation names, as the SDKs and the recorded
// Invocation.Operation spell them.
const (
	opConverse         = "Converse"
	opConverseStream   = "ConverseStream"
	opInvoke           = "InvokeModel"
	opInvokeStream     = "InvokeModelWithResponseStream"
	opCountTokens      = "CountTokens"
	opApplyGuardrail   = "ApplyGuardrail"
	opStartAsyncInvoke = "StartAsyncInvoke"
	opGetAsyncInvoke   = "GetAsyncInvoke"
	opListAsyncInvokes = "ListAsyncInvokes"
)

// pathOps maps the last path segment of /model/{modelId}/{op} to the
// operation (Bedrock Runtime service model, http bindings).
// InvokeModelWithBidirectionalStream (invoke-with-bidirectional-stream)
// is deliberately absent: it needs HTTP/2 and an input event stream, and
// the fake answers it like any unknown path.
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
// operation that names a model (in the path, or StartAsyncInvoke's
// modelId) and ApplyGuardrail when used as the guardrail identifier, with
// the named error and the HTTP status of the Bedrock Runtime service
// model, except ModelStreamException and ModelAsyncFailure.
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
	// ModelAsyncFailure is accepted by StartAsyncInvoke, and the job it
	// starts ends with status Failed instead of Completed.
	ModelAsyncFailure = "fake.async-failure"
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

// errUnknownOperation answers a path and method no operation is bound to.
var errUnknownOperation = bedrockError{http.StatusNotFound, "UnknownOperationException", "The requested operation is not recognized by the service."}

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

// route is the operation a request is bound to and its path labels.
type route struct {
	op               string
	modelID          string // /model/{modelId}/...
	guardrailID      string // /guardrail/{guardrailIdentifier}/...
	guardrailVersion string // .../version/{guardrailVersion}/apply
	invocationARN    string // /async-invoke/{invocationArn}
}

// routeBedrock binds method and escapedPath to an operation, following the
// http bindings of the Bedrock Runtime service model. Labels are split on
// the escaped path (an ARN's "/" arrives as %2F) and then unescaped; an
// empty or undecodable label binds nothing, as does the wrong method.
func routeBedrock(method, escapedPath string) (route, bool) {
	if id, op, ok := parseModelPath(escapedPath); ok {
		return route{op: op, modelID: id}, method == http.MethodPost
	}
	seg := strings.Split(escapedPath, "/")
	switch {
	case escapedPath == chatCompletionsPath:
		return route{op: opChatCompletions}, method == http.MethodPost
	case len(seg) == 6 && seg[0] == "" && seg[1] == "guardrail" && seg[3] == "version" && seg[5] == "apply":
		id, err1 := url.PathUnescape(seg[2])
		version, err2 := url.PathUnescape(seg[4])
		if err1 != nil || err2 != nil || id == "" || version == "" {
			return route{}, false
		}
		return route{op: opApplyGuardrail, guardrailID: id, guardrailVersion: version}, method == http.MethodPost
	case escapedPath == "/async-invoke":
		switch method {
		case http.MethodPost:
			return route{op: opStartAsyncInvoke}, true
		case http.MethodGet:
			return route{op: opListAsyncInvokes}, true
		}
	case len(seg) == 3 && seg[0] == "" && seg[1] == "async-invoke":
		arn, err := url.PathUnescape(seg[2])
		if err != nil || arn == "" {
			return route{}, false
		}
		return route{op: opGetAsyncInvoke, invocationARN: arn}, method == http.MethodGet
	}
	return route{}, false
}

// outcome is what a Bedrock call produced, for the record.
type outcome struct {
	status  int
	in, out int64
	cache   cacheUsage
	// guardrailUnits are the billable guardrail text units (ApplyGuardrail).
	guardrailUnits int64
	streamError    string
}

// call is one Bedrock request that passed authentication: what the
// operation handlers need, and the Invocation they fill in.
type call struct {
	w        http.ResponseWriter
	r        *http.Request
	body     []byte
	cred     *credential
	inv      Invocation
	add      func(Invocation)
	recorded bool
}

// record adds the invocation with outcome o; only the first call counts.
func (c *call) record(o outcome) {
	if c.recorded {
		return
	}
	c.recorded = true
	c.inv.Status, c.inv.InputTokens, c.inv.OutputTokens, c.inv.StreamError = o.status, o.in, o.out, o.streamError
	c.inv.CacheReadTokens, c.inv.CacheWriteTokens = o.cache.read, o.cache.write
	c.inv.GuardrailTextUnits = o.guardrailUnits
	c.add(c.inv)
}

// fail records e and sends it.
func (c *call) fail(e *bedrockError) {
	c.record(outcome{status: e.status})
	writeBedrockError(c.w, e)
}

// BedrockHandler serves Bedrock Runtime (REST-JSON): Converse,
// ConverseStream, InvokeModel, InvokeModelWithResponseStream and
// CountTokens at POST /model/{modelId}/{converse,converse-stream,invoke,
// invoke-with-response-stream,count-tokens}; ApplyGuardrail at POST
// /guardrail/{id}/version/{version}/apply; StartAsyncInvoke and
// ListAsyncInvokes at POST and GET /async-invoke; GetAsyncInvoke at GET
// /async-invoke/{invocationArn}; OpenAI Chat Completions, natively for
// openai.* models, at POST /openai/v1/chat/completions.
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

	requestURI := r.RequestURI
	if requestURI == "" {
		requestURI = r.URL.RequestURI()
	}
	c := &call{
		w: w, r: r, body: body, cred: cred, add: s.addInvocation,
		inv: Invocation{
			Time:         s.opts.Now(),
			AccessKeyID:  cred.accessKeyID,
			PrincipalARN: cred.principalARN,
			SessionName:  cred.sessionName,
			Tags:         maps.Clone(cred.tags),
			RequestID:    reqID,
			RequestURI:   redactRequestURI(requestURI),
			Headers:      redactHeaders(r.Header),
			Body:         body,
		},
	}

	rt, ok := routeBedrock(r.Method, r.URL.EscapedPath())
	if !ok {
		e := errUnknownOperation
		c.fail(&e)
		return
	}
	c.inv.Operation, c.inv.ModelID = rt.op, rt.modelID
	if f, ok := faultModels[rt.modelID]; ok {
		c.fail(&f)
		return
	}

	switch rt.op {
	case opConverse:
		s.converse(c)
	case opConverseStream:
		s.converseStream(c)
	case opInvoke:
		s.invoke(c)
	case opInvokeStream:
		s.invokeStream(c)
	case opCountTokens:
		s.countTokens(c)
	case opApplyGuardrail:
		s.applyGuardrail(c, rt.guardrailID, rt.guardrailVersion)
	case opStartAsyncInvoke:
		s.startAsyncInvoke(c)
	case opGetAsyncInvoke:
		s.getAsyncInvoke(c, rt.invocationARN)
	case opListAsyncInvokes:
		s.listAsyncInvokes(c)
	case opChatCompletions:
		s.chatCompletions(c)
	}
}

// cachePointBlock is a Converse CachePointBlock: a prompt-cache
// checkpoint after the blocks before it.
type cachePointBlock struct {
	Type string  `json:"type"`
	TTL  *string `json:"ttl"`
}

// contentBlock is a Converse ContentBlock, SystemContentBlock or Tool
// union. The fake reads the text and cachePoint members and keeps the
// block's JSON for the prompt-cache key.
type contentBlock struct {
	Text       *string
	CachePoint *cachePointBlock
	ToolUse    *toolUseBlock
	ToolResult *toolResultBlock
	ToolSpec   *toolSpec
	raw        []byte
}

// toolUseBlock is a Converse ToolUseBlock: the model asking for a tool.
type toolUseBlock struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

// toolResultBlock is a Converse ToolResultBlock: the caller's answer.
type toolResultBlock struct {
	ToolUseID string `json:"toolUseId"`
}

// toolSpec is the part of a Converse ToolSpecification the fake reads.
type toolSpec struct {
	Name        string `json:"name"`
	InputSchema struct {
		JSON struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
		} `json:"json"`
	} `json:"inputSchema"`
}

func (b *contentBlock) UnmarshalJSON(data []byte) error {
	var v struct {
		Text       *string          `json:"text"`
		CachePoint *cachePointBlock `json:"cachePoint"`
		ToolUse    *toolUseBlock    `json:"toolUse"`
		ToolResult *toolResultBlock `json:"toolResult"`
		ToolSpec   *toolSpec        `json:"toolSpec"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = contentBlock{Text: v.Text, CachePoint: v.CachePoint, ToolUse: v.ToolUse, ToolResult: v.ToolResult,
		ToolSpec: v.ToolSpec, raw: slices.Clone(data)}
	return nil
}

type converseMessage struct {
	Role    string         `json:"role"`
	Content []contentBlock `json:"content"`
}

// converseInput is the part of a Converse request the fake reads. It also
// decodes CountTokens' input.converse.
type converseInput struct {
	Messages   []converseMessage `json:"messages"`
	System     []contentBlock    `json:"system"`
	ToolConfig *struct {
		Tools      []contentBlock `json:"tools"`
		ToolChoice *struct {
			Tool *struct {
				Name string `json:"name"`
			} `json:"tool"`
		} `json:"toolChoice"`
	} `json:"toolConfig"`
	InferenceConfig *struct {
		MaxTokens *int `json:"maxTokens"`
	} `json:"inferenceConfig"`
	RequestMetadata json.RawMessage `json:"requestMetadata"`
}

// prompt is what the fake takes from a validated inference request.
type prompt struct {
	// words counts the whitespace-separated words of the prompt's text;
	// the "at least 1 input token" rule is applied later.
	words int64
	// maxTokens is the output limit, 0 if unset.
	maxTokens int
	// points are the prompt's block boundaries and cache checkpoints, in
	// prompt order.
	points []cacheBreakpoint
	// metadata is the validated requestMetadata, nil if absent.
	metadata map[string]string
	// tool is the tool the model calls, nil if it answers in text: the
	// fake calls one (toolChoice's, else the first) when the request
	// offers tools and its last message carries no tool result.
	tool *toolSpec
}

// parseConverse decodes and validates a Converse or ConverseStream
// request.
func parseConverse(c *call) (prompt, *bedrockError) {
	var req converseInput
	if err := json.Unmarshal(c.body, &req); err != nil {
		return prompt{}, validationError("Malformed input request, please reformat your input and try again.")
	}
	p := prompt{}
	pp := newPromptPrefix(c.cred.account, c.inv.ModelID)
	var e *bedrockError
	if p.words, e = walkConverse(req, pp); e != nil {
		return prompt{}, e
	}
	if p.metadata, e = parseMetadataField(req.RequestMetadata); e != nil {
		return prompt{}, e
	}
	if p.tool, e = toolTurn(req); e != nil {
		return prompt{}, e
	}
	if req.InferenceConfig != nil && req.InferenceConfig.MaxTokens != nil {
		p.maxTokens = *req.InferenceConfig.MaxTokens
		if p.maxTokens < 1 {
			return prompt{}, validationError("1 validation error detected: Value '%d' at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1", p.maxTokens)
		}
	}
	p.points = pp.points
	return p, nil
}

// walkConverse validates the conversation, feeds it to pp in the order
// the model reads it (tools, system, messages), and counts its words: one
// per whitespace-separated word of every text block.
func walkConverse(req converseInput, pp *promptPrefix) (int64, *bedrockError) {
	if len(req.Messages) == 0 || req.Messages[0].Role != "user" {
		return 0, validationError("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
	}
	var n int64
	add := func(b contentBlock, field string) *bedrockError {
		if b.CachePoint != nil {
			return pp.converseCachePoint(*b.CachePoint, field+".cachePoint")
		}
		var words int64
		if b.Text != nil {
			words = int64(len(strings.Fields(*b.Text)))
		}
		n += words
		pp.add(canonicalJSON(b.raw), words)
		return nil
	}
	pp.mark("tools")
	if req.ToolConfig != nil {
		for i, b := range req.ToolConfig.Tools {
			if e := add(b, fmt.Sprintf("toolConfig.tools.%d.member", i+1)); e != nil {
				return 0, e
			}
		}
	}
	pp.mark("system")
	for i, b := range req.System {
		if e := add(b, fmt.Sprintf("system.%d.member", i+1)); e != nil {
			return 0, e
		}
	}
	for i, m := range req.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return 0, validationError("1 validation error detected: Value '%s' at 'messages.%d.member.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]", clip(m.Role), i+1)
		}
		pp.mark("role:" + m.Role)
		for j, b := range m.Content {
			if e := add(b, fmt.Sprintf("messages.%d.member.content.%d.member", i+1, j+1)); e != nil {
				return 0, e
			}
		}
	}
	if pp.checkpoints > maxCachePoints {
		return 0, validationError("The request has %d cache points (cachePoint); at most %d are allowed.", pp.checkpoints, maxCachePoints)
	}
	return n, nil
}

// answer returns the reply words, cut to maxTokens (0: no limit), and the
// stop reason.
func answer(maxTokens int) ([]string, string) {
	if maxTokens > 0 && maxTokens < len(reply) {
		return reply[:maxTokens], "max_tokens"
	}
	return reply, "end_turn"
}

// toolTurn checks the conversation's tool blocks as Bedrock does and
// picks the tool the fake model calls, if any.
func toolTurn(req converseInput) (*toolSpec, *bedrockError) {
	var prevUses map[string]bool
	for i, m := range req.Messages {
		uses := map[string]bool{}
		for _, b := range m.Content {
			switch {
			case (b.ToolUse != nil || b.ToolResult != nil) && req.ToolConfig == nil:
				return nil, validationError("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
			case b.ToolUse != nil && m.Role != "assistant":
				return nil, validationError("messages.%d: toolUse blocks belong to assistant messages.", i+1)
			case b.ToolUse != nil:
				uses[b.ToolUse.ToolUseID] = true
			case b.ToolResult != nil && (m.Role != "user" || !prevUses[b.ToolResult.ToolUseID]):
				return nil, validationError("The toolResult blocks at messages.%d.content must match the toolUse blocks of the previous turn.", i+1)
			}
		}
		prevUses = uses
	}
	if req.ToolConfig == nil || len(req.ToolConfig.Tools) == 0 {
		return nil, nil
	}
	for _, b := range req.Messages[len(req.Messages)-1].Content {
		if b.ToolResult != nil {
			return nil, nil // answered: the model replies in text
		}
	}
	var specs []*toolSpec
	for _, t := range req.ToolConfig.Tools {
		if t.ToolSpec != nil {
			specs = append(specs, t.ToolSpec)
		}
	}
	if len(specs) == 0 {
		return nil, nil
	}
	if tc := req.ToolConfig.ToolChoice; tc != nil && tc.Tool != nil {
		for _, s := range specs {
			if s.Name == tc.Tool.Name {
				return s, nil
			}
		}
		return nil, validationError("toolConfig.toolChoice.tool.name %q is not one of the tools.", clip(tc.Tool.Name))
	}
	return specs[0], nil
}

// toolInput is the input the fake model passes its tool: each string
// property of the tool's schema set to "fake", each number to 1.
func toolInput(t *toolSpec) map[string]any {
	in := map[string]any{}
	for name, p := range t.InputSchema.JSON.Properties {
		switch p.Type {
		case "string":
			in[name] = "fake"
		case "number", "integer":
			in[name] = 1
		}
	}
	return in
}

// toolOutTokens is what a tool call costs in output tokens.
const toolOutTokens = 12

// tokenUsage is a Converse TokenUsage. The cache members are present only
// when the request marked a cache point.
type tokenUsage struct {
	InputTokens           int64         `json:"inputTokens"`
	OutputTokens          int64         `json:"outputTokens"`
	TotalTokens           int64         `json:"totalTokens"`
	CacheReadInputTokens  *int64        `json:"cacheReadInputTokens,omitempty"`
	CacheWriteInputTokens *int64        `json:"cacheWriteInputTokens,omitempty"`
	CacheDetails          []cacheDetail `json:"cacheDetails,omitempty"`
}

// cacheDetail is a Converse CacheDetail: the tokens written to the cache
// with one TTL.
type cacheDetail struct {
	TTL         string `json:"ttl"`
	InputTokens int64  `json:"inputTokens"`
}

// converseUsage builds the Converse usage: totalTokens counts cached
// tokens too, as Bedrock's does.
func converseUsage(in, out int64, cu cacheUsage) tokenUsage {
	u := tokenUsage{InputTokens: in, OutputTokens: out, TotalTokens: in + out + cu.read + cu.write}
	if cu.used {
		u.CacheReadInputTokens, u.CacheWriteInputTokens = &cu.read, &cu.write
		// Sorted by TTL, longest first (TokenUsage.CacheDetails doc).
		if cu.write1h > 0 {
			u.CacheDetails = append(u.CacheDetails, cacheDetail{"1h", cu.write1h})
		}
		if w := cu.write - cu.write1h; w > 0 {
			u.CacheDetails = append(u.CacheDetails, cacheDetail{"5m", w})
		}
	}
	return u
}

type metrics struct {
	LatencyMs int64 `json:"latencyMs"`
}

type textBlock struct {
	Text string `json:"text"`
}

func (s *Server) converse(c *call) {
	p, e := parseConverse(c)
	if e != nil {
		c.fail(e)
		return
	}
	in, cu := s.inputUsage(p)
	c.inv.RequestMetadata = p.metadata
	words, stop := answer(p.maxTokens)
	out := int64(len(words))
	type message struct {
		Role    string `json:"role"`
		Content []any  `json:"content"`
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
		Usage:      converseUsage(in, out, cu),
		Metrics:    metrics{latencyMs},
	}
	resp.Output.Message = message{Role: "assistant", Content: []any{textBlock{strings.Join(words, " ")}}}
	if p.tool != nil {
		out, resp.StopReason = toolOutTokens, "tool_use"
		resp.Usage = converseUsage(in, out, cu)
		resp.Output.Message.Content = []any{map[string]any{"toolUse": toolUseBlock{
			ToolUseID: "tooluse_" + c.inv.RequestID[:12], Name: p.tool.Name, Input: mustJSON(toolInput(p.tool))}}}
	}
	c.record(outcome{status: http.StatusOK, in: in, out: out, cache: cu})
	writeJSON(c.w, resp, nil)
}

func (s *Server) converseStream(c *call) {
	p, e := parseConverse(c)
	if e != nil {
		c.fail(e)
		return
	}
	in, cu := s.inputUsage(p)
	c.inv.RequestMetadata = p.metadata
	words, stop := answer(p.maxTokens)
	out := int64(len(words))

	frames := []frame{eventFrame("messageStart", mustJSON(map[string]string{"role": "assistant"}), 0)}
	if p.tool != nil {
		// The input arrives in two pieces, as a model streams it.
		input := string(mustJSON(toolInput(p.tool)))
		half := len(input) / 2
		out = toolOutTokens
		frames = append(frames,
			eventFrame("contentBlockStart", mustJSON(map[string]any{"contentBlockIndex": 0,
				"start": map[string]any{"toolUse": map[string]string{"toolUseId": "tooluse_" + c.inv.RequestID[:12], "name": p.tool.Name}}}), 0),
			eventFrame("contentBlockDelta", mustJSON(map[string]any{"contentBlockIndex": 0,
				"delta": map[string]any{"toolUse": map[string]string{"input": input[:half]}}}), out/2),
			eventFrame("contentBlockDelta", mustJSON(map[string]any{"contentBlockIndex": 0,
				"delta": map[string]any{"toolUse": map[string]string{"input": input[half:]}}}), out),
			eventFrame("contentBlockStop", mustJSON(map[string]int{"contentBlockIndex": 0}), out),
			eventFrame("messageStop", mustJSON(map[string]string{"stopReason": "tool_use"}), out),
			eventFrame("metadata", mustJSON(map[string]any{"usage": converseUsage(in, out, cu), "metrics": metrics{latencyMs}}), out),
		)
		s.stream(c, outcome{status: http.StatusOK, in: in, cache: cu}, frames, nil)
		return
	}
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
			"usage":   converseUsage(in, out, cu),
			"metrics": metrics{latencyMs},
		}), out),
	)
	s.stream(c, outcome{status: http.StatusOK, in: in, cache: cu}, frames, nil)
}

// stream sends frames, replacing the tail with a modelStreamErrorException
// for the fake.stream-exception model, and records o with the output
// tokens actually sent.
func (s *Server) stream(c *call, o outcome, frames []frame, headers http.Header) {
	o.out = frames[len(frames)-1].outTokens
	if c.inv.ModelID == ModelStreamException {
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
	n, err := s.writeStream(c.r.Context(), c.w, c.inv.Operation, frames, headers, func() { c.record(o) })
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
		c.record(o)
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
	Tools  json.RawMessage `json:"tools"`
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

// parseInvoke validates an InvokeModel body for modelID; pp receives the
// Anthropic prompt for the prompt cache.
func parseInvoke(modelID string, body []byte, pp *promptPrefix) (prompt, *bedrockError) {
	if !isAnthropic(modelID) {
		var v any
		if err := json.Unmarshal(body, &v); err != nil {
			return prompt{}, malformed("expected a JSON document")
		}
		return prompt{words: countStrings(v)}, nil
	}
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return prompt{}, malformed("expected a JSON object")
	}
	switch {
	case req.Model != nil:
		return prompt{}, malformed("#: extraneous key [model] is not permitted")
	case req.Stream != nil:
		return prompt{}, malformed("#: extraneous key [stream] is not permitted")
	case req.AnthropicVersion == nil:
		return prompt{}, malformed("#: required key [anthropic_version] not found")
	case req.MaxTokens == nil:
		return prompt{}, malformed("#: required key [max_tokens] not found")
	case req.Messages == nil:
		return prompt{}, malformed("#: required key [messages] not found")
	case *req.MaxTokens < 1:
		return prompt{}, malformed("#/max_tokens: must be greater than or equal to 1")
	}
	p := prompt{maxTokens: *req.MaxTokens}
	pp.mark("tools")
	if isPresent(req.Tools) {
		var tools []json.RawMessage
		if err := json.Unmarshal(req.Tools, &tools); err != nil {
			return prompt{}, malformed("#/tools: expected type: JSONArray")
		}
		for i, t := range tools {
			if _, ok, e := addAnthropicBlock(pp, t, fmt.Sprintf("#/tools/%d", i)); e != nil {
				return prompt{}, e
			} else if !ok {
				return prompt{}, malformed("#/tools: must be an array of tool objects")
			}
		}
	}
	pp.mark("system")
	if isPresent(req.System) {
		n, ok, e := addAnthropicContent(pp, req.System, "#/system")
		if e != nil {
			return prompt{}, e
		}
		if !ok {
			return prompt{}, malformed("#/system: must be a string or an array of text blocks")
		}
		p.words += n
	}
	for i, m := range *req.Messages {
		pp.mark("role:" + m.Role)
		n, ok, e := addAnthropicContent(pp, m.Content, fmt.Sprintf("#/messages/%d/content", i))
		if e != nil {
			return prompt{}, e
		}
		if !ok {
			return prompt{}, malformed("#/messages: content must be a string or an array of content blocks")
		}
		p.words += n
	}
	if pp.checkpoints > maxCachePoints {
		// Anthropic's wording.
		return prompt{}, validationError("A maximum of %d blocks with cache_control may be provided. Found %d.", maxCachePoints, pp.checkpoints)
	}
	p.points = pp.points
	return p, nil
}

// isPresent reports whether an optional JSON member was sent and not null.
func isPresent(raw json.RawMessage) bool {
	return len(raw) > 0 && string(raw) != "null"
}

// addAnthropicContent feeds Anthropic content (a string, or an array of
// blocks) to pp and counts the words of its text. ok is false if raw has
// neither shape.
func addAnthropicContent(pp *promptPrefix, raw json.RawMessage, path string) (words int64, ok bool, e *bedrockError) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		// A string is shorthand for one text block.
		words = int64(len(strings.Fields(s)))
		pp.add(mustJSON(map[string]string{"type": "text", "text": s}), words)
		return words, true, nil
	}
	var blocks []json.RawMessage
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return 0, false, nil
	}
	for i, b := range blocks {
		n, ok, e := addAnthropicBlock(pp, b, fmt.Sprintf("%s/%d", path, i))
		if e != nil || !ok {
			return 0, ok, e
		}
		words += n
	}
	return words, true, nil
}

// addAnthropicBlock feeds one Anthropic block (content block or tool) to
// pp, minus its cache_control, which becomes a breakpoint after it. ok is
// false if the block is not an object or its "text" is not a string.
func addAnthropicBlock(pp *promptPrefix, raw json.RawMessage, path string) (words int64, ok bool, e *bedrockError) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		return 0, false, nil
	}
	if t, has := m["text"]; has {
		s, isString := t.(string)
		if !isString {
			return 0, false, nil
		}
		words = int64(len(strings.Fields(s)))
	}
	cc, hasCC := m["cache_control"]
	delete(m, "cache_control")
	pp.add(mustJSON(m), words)
	if hasCC && cc != nil {
		if e := pp.anthropicCacheControl(cc, path+"/cache_control"); e != nil {
			return 0, true, e
		}
	}
	return words, true, nil
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

// parseInvokeCall validates an InvokeModel or InvokeModelWithResponseStream
// request: its X-Amzn-Bedrock-Request-Metadata header, then its body.
func parseInvokeCall(c *call) (prompt, *bedrockError) {
	md, e := parseMetadataHeader(c.r.Header)
	if e != nil {
		return prompt{}, e
	}
	p, e := parseInvoke(c.inv.ModelID, c.body, newPromptPrefix(c.cred.account, c.inv.ModelID))
	if e != nil {
		return prompt{}, e
	}
	p.metadata = md
	return p, nil
}

// anthropicUsage is an Anthropic Messages usage object.
func anthropicUsage(in, out int64, cu cacheUsage) map[string]any {
	return map[string]any{
		"input_tokens":                in,
		"output_tokens":               out,
		"cache_creation_input_tokens": cu.write,
		"cache_read_input_tokens":     cu.read,
		"cache_creation": map[string]int64{
			"ephemeral_5m_input_tokens": cu.write - cu.write1h,
			"ephemeral_1h_input_tokens": cu.write1h,
		},
	}
}

func (s *Server) invoke(c *call) {
	if m := embeddingModelFor(c.inv.ModelID); m != nil {
		s.invokeEmbedding(c, m) // embeddings.go
		return
	}
	p, e := parseInvokeCall(c)
	if e != nil {
		c.fail(e)
		return
	}
	in, cu := s.inputUsage(p)
	c.inv.RequestMetadata = p.metadata
	words, stop := answer(p.maxTokens)
	out := int64(len(words))
	text := strings.Join(words, " ")
	var resp any
	if isAnthropic(c.inv.ModelID) {
		resp = map[string]any{
			"id":            "msg_bdrk_" + randomString(24, secretAlph[:62]),
			"type":          "message",
			"role":          "assistant",
			"model":         c.inv.ModelID,
			"content":       []map[string]string{{"type": "text", "text": text}},
			"stop_reason":   stop,
			"stop_sequence": nil,
			"usage":         anthropicUsage(in, out, cu),
		}
	} else {
		resp = map[string]string{"outputText": text}
	}
	h := http.Header{}
	h.Set("X-Amzn-Bedrock-Input-Token-Count", strconv.FormatInt(in, 10))
	h.Set("X-Amzn-Bedrock-Output-Token-Count", strconv.FormatInt(out, 10))
	h.Set("X-Amzn-Bedrock-Invocation-Latency", strconv.Itoa(latencyMs))
	if cu.used {
		h.Set("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", strconv.FormatInt(cu.read, 10))
		h.Set("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", strconv.FormatInt(cu.write, 10))
	}
	c.record(outcome{status: http.StatusOK, in: in, out: out, cache: cu})
	writeJSON(c.w, resp, h)
}

func (s *Server) invokeStream(c *call) {
	if embeddingModelFor(c.inv.ModelID) != nil {
		// Bedrock streams no embedding model.
		c.fail(validationError("The model is unsupported for streaming."))
		return
	}
	p, e := parseInvokeCall(c)
	if e != nil {
		c.fail(e)
		return
	}
	in, cu := s.inputUsage(p)
	c.inv.RequestMetadata = p.metadata
	modelID := c.inv.ModelID
	words, stop := answer(p.maxTokens)
	out := int64(len(words))
	invocationMetrics := map[string]int64{
		"inputTokenCount":   in,
		"outputTokenCount":  out,
		"invocationLatency": latencyMs,
		"firstByteLatency":  latencyMs / 2,
	}
	if cu.used {
		invocationMetrics["cacheReadInputTokenCount"] = cu.read
		invocationMetrics["cacheWriteInputTokenCount"] = cu.write
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
			"usage": anthropicUsage(in, 1, cu),
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
	s.stream(c, outcome{status: http.StatusOK, in: in, cache: cu}, frames, h)
}

// countTokens answers CountTokens: the input tokens of the request as the
// model would count them, cached or not. It reads no prompt cache.
func (s *Server) countTokens(c *call) {
	var req struct {
		Input struct {
			Converse    *converseInput `json:"converse"`
			InvokeModel *struct {
				Body []byte `json:"body"`
			} `json:"invokeModel"`
		} `json:"input"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.fail(validationError("Malformed input request, please reformat your input and try again."))
		return
	}
	pp := newPromptPrefix(c.cred.account, c.inv.ModelID)
	var words int64
	var e *bedrockError
	switch {
	case req.Input.Converse != nil && req.Input.InvokeModel != nil:
		e = validationError("Exactly one of input.converse and input.invokeModel must be set.")
	case req.Input.Converse != nil:
		words, e = walkConverse(*req.Input.Converse, pp)
	case req.Input.InvokeModel != nil:
		var p prompt
		p, e = parseInvoke(c.inv.ModelID, req.Input.InvokeModel.Body, pp)
		words = p.words
	default:
		e = validationError("Exactly one of input.converse and input.invokeModel must be set.")
	}
	if e != nil {
		c.fail(e)
		return
	}
	in := max(words, 1)
	c.record(outcome{status: http.StatusOK, in: in})
	writeJSON(c.w, map[string]int64{"inputTokens": in}, nil)
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

// canonicalJSON re-encodes a JSON value with object keys sorted and no
// insignificant space, so equal values hash alike. raw has already been
// decoded once, so it is valid.
func canonicalJSON(raw []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return raw
	}
	return mustJSON(v)
}
