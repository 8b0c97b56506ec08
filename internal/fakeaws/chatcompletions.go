package fakeaws

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// opChatCompletions is Bedrock Runtime's native OpenAI Chat Completions
// operation (POST /openai/v1/chat/completions; AWS guide "Invoke a model
// with the OpenAI Chat Completions API"), signed like every other call
// (service name "bedrock") and billed to the signer like Converse.
const opChatCompletions = "ChatCompletions"

// chatCompletionsPath is where Bedrock Runtime serves it.
const chatCompletionsPath = "/openai/v1/chat/completions"

// NativeChatModelPrefix starts the model IDs the fake serves on the
// native Chat Completions path, as Bedrock serves OpenAI's open-weight
// models there (openai.gpt-oss-20b-1:0, openai.gpt-oss-120b-1:0) and not
// Claude, Nova or Llama.
const NativeChatModelPrefix = "openai."

// chatRequest is the part of a Chat Completions request the fake reads.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
}

// openAIError answers in OpenAI's error shape, as the native endpoint
// does, and records the call.
func (c *call) openAIError(status int, typ, msg string) {
	c.record(outcome{status: status})
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(mustJSON(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}}))
}

// chatCompletions serves the native Chat Completions operation: the fake
// model's canned reply, as a chat.completion or as chat.completion.chunk
// server-sent events ending in data: [DONE], with usage (in the stream
// only when stream_options.include_usage asks for it).
func (s *Server) chatCompletions(c *call) {
	var req chatRequest
	if err := json.Unmarshal(c.body, &req); err != nil {
		c.openAIError(http.StatusBadRequest, "invalid_request_error", "Invalid JSON in the request body.")
		return
	}
	c.inv.ModelID = req.Model
	switch {
	case req.Model == "":
		c.openAIError(http.StatusBadRequest, "invalid_request_error", "model is required.")
		return
	case !strings.HasPrefix(req.Model, NativeChatModelPrefix):
		c.openAIError(http.StatusBadRequest, "invalid_request_error", fmt.Sprintf("The model %s is not supported on this endpoint.", clip(req.Model)))
		return
	case len(req.Messages) == 0:
		c.openAIError(http.StatusBadRequest, "invalid_request_error", "messages must not be empty.")
		return
	case req.StreamOptions != nil && !req.Stream:
		c.openAIError(http.StatusBadRequest, "invalid_request_error", "stream_options is only allowed when stream is true.")
		return
	}
	var in int64
	for _, m := range req.Messages {
		in += int64(len(strings.Fields(chatText(m.Content))))
	}
	in = max(in, 1)
	maxTokens := 0
	if req.MaxCompletionTokens != nil {
		maxTokens = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		maxTokens = *req.MaxTokens
	}
	words, stop := answer(maxTokens)
	finish := "stop"
	if stop == "max_tokens" {
		finish = "length"
	}
	out := int64(len(words))
	id := "chatcmpl-" + strings.ReplaceAll(c.inv.RequestID, "-", "")[:24]
	created := s.opts.Now().Unix()
	usage := map[string]int64{"prompt_tokens": in, "completion_tokens": out, "total_tokens": in + out}
	if !req.Stream {
		c.record(outcome{status: http.StatusOK, in: in, out: out})
		writeJSON(c.w, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "finish_reason": finish,
				"message": map[string]any{"role": "assistant", "content": strings.Join(words, " ")}}},
			"usage": usage,
		}, nil)
		return
	}
	c.record(outcome{status: http.StatusOK, in: in, out: out})
	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	send := func(delta map[string]any, finish any, u any) bool {
		chunk := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}}
		if delta == nil {
			chunk["choices"] = []any{}
		}
		if includeUsage {
			chunk["usage"] = u
		}
		if _, err := c.w.Write([]byte("data: " + string(mustJSON(chunk)) + "\n\n")); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !send(map[string]any{"role": "assistant", "content": ""}, nil, nil) {
		return
	}
	for i, w := range words {
		if i < len(words)-1 {
			w += " "
		}
		if !send(map[string]any{"content": w}, nil, nil) {
			return
		}
	}
	if !send(map[string]any{}, finish, nil) {
		return
	}
	if includeUsage && !send(nil, nil, usage) {
		return
	}
	_, _ = c.w.Write([]byte("data: [DONE]\n\n"))
	_ = rc.Flush()
}

// chatText is the text of a message's content: a string, or the text of
// its parts.
func chatText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		b.WriteString(p.Text)
		b.WriteByte(' ')
	}
	return b.String()
}
