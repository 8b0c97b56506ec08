package openai_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/openai"
)

// The sdk* types mirror the json tags of openai-go (v3) for the members
// this package writes: chatcompletion.go ChatCompletion,
// ChatCompletionChoice, ChatCompletionMessage,
// ChatCompletionMessageFunctionToolCall(Function); completion.go
// CompletionUsage, CompletionUsagePromptTokensDetails. Decoding with
// DisallowUnknownFields proves every member written is one the SDK knows
// by that name and type.
type sdkChatCompletion struct {
	ID      string      `json:"id"`
	Choices []sdkChoice `json:"choices"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Object  string      `json:"object"`
	Usage   *sdkUsage   `json:"usage"`
}

type sdkChoice struct {
	FinishReason string          `json:"finish_reason"`
	Index        int64           `json:"index"`
	Logprobs     json.RawMessage `json:"logprobs"`
	Message      sdkMessage      `json:"message"`
}

type sdkMessage struct {
	Content   *string       `json:"content"`
	Refusal   *string       `json:"refusal"`
	Role      string        `json:"role"`
	ToolCalls []sdkToolCall `json:"tool_calls"`
}

type sdkToolCall struct {
	ID       string `json:"id"`
	Function struct {
		Arguments string `json:"arguments"`
		Name      string `json:"name"`
	} `json:"function"`
	Type string `json:"type"`
}

type sdkUsage struct {
	CompletionTokens    int64 `json:"completion_tokens"`
	PromptTokens        int64 `json:"prompt_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CacheWriteTokens int64 `json:"cache_write_tokens"`
		CachedTokens     int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

// respDecodeStrict decodes b into v, refusing members v does not have
// and anything after the value.
func respDecodeStrict(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	if d.More() {
		t.Fatalf("trailing data after the JSON value in %s", b)
	}
}

// respJSONDiff compares two JSON texts as values (so member order and
// spacing do not matter, but null and absent do).
func respJSONDiff(t *testing.T, got []byte, want string) string {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("test's want is not JSON: %v\n%s", err, want)
	}
	return cmp.Diff(w, g)
}

func TestChatCompletion(t *testing.T) {
	const (
		model   = "claude-sonnet"
		id      = "chatcmpl-abc123"
		created = 1700000000
	)
	head := `"id":"chatcmpl-abc123","object":"chat.completion","created":1700000000,"model":"claude-sonnet"`
	tests := []struct {
		name     string
		converse string
		want     string
	}{
		{
			name: "text only",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"Hello there."}]}},
				"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":4,"totalTokens":16},"metrics":{"latencyMs":321}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there.","refusal":null},
				"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":12,"completion_tokens":4,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "several text blocks are joined as a stream joins them",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"One. "},{"text":"Two."}]}},
				"stopReason":"end_turn","usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"One. Two.","refusal":null},
				"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tool calls only: content null, input compacted into arguments",
			converse: `{"output":{"message":{"role":"assistant","content":[
					{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{ "city" : "Paris",
						"units": ["c", "f"], "note": "<b>&</b> \u00e9" }}},
					{"toolUse":{"toolUseId":"tooluse_2","name":"get_time","input":{}}}]}},
				"stopReason":"tool_use","usage":{"inputTokens":50,"outputTokens":30,"totalTokens":80}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,
				"tool_calls":[
					{"id":"tooluse_1","type":"function","function":{"name":"get_weather",
						"arguments":"{\"city\":\"Paris\",\"units\":[\"c\",\"f\"],\"note\":\"<b>&</b> \\u00e9\"}"}},
					{"id":"tooluse_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
				"logprobs":null,"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":50,"completion_tokens":30,"total_tokens":80,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "mixed text, reasoning and tool use: reasoning dropped",
			converse: `{"output":{"message":{"role":"assistant","content":[
					{"reasoningContent":{"reasoningText":{"text":"The user wants weather.","signature":"sig"}}},
					{"text":"Let me check."},
					{"toolUse":{"toolUseId":"tooluse_9","name":"get_weather","input":{"city":"Oslo"}}}]}},
				"stopReason":"tool_use","usage":{"inputTokens":10,"outputTokens":20,"totalTokens":30}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,
				"tool_calls":[{"id":"tooluse_9","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},
				"logprobs":null,"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "cache read and write count in prompt_tokens",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn",
				"usage":{"inputTokens":5,"outputTokens":7,"totalTokens":1112,"cacheReadInputTokens":1000,"cacheWriteInputTokens":100,
					"cacheDetails":[{"ttl":"5m","inputTokens":100}]}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"ok","refusal":null},
				"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1105,"completion_tokens":7,"total_tokens":1112,
					"prompt_tokens_details":{"cached_tokens":1000,"cache_write_tokens":100}}}`,
		},
		{
			name: "cache read only",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn",
				"usage":{"inputTokens":3,"outputTokens":2,"totalTokens":2005,"cacheReadInputTokens":2000,"cacheWriteInputTokens":0}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"ok","refusal":null},
				"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":2003,"completion_tokens":2,"total_tokens":2005,"prompt_tokens_details":{"cached_tokens":2000}}}`,
		},
		{
			name:     "no usage: no usage member",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},"stopReason":"end_turn"}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"ok","refusal":null},
				"logprobs":null,"finish_reason":"stop"}]}`,
		},
		{
			name: "no content at all (guardrail): content empty string",
			converse: `{"output":{"message":{"role":"assistant","content":[]}},"stopReason":"guardrail_intervened",
				"usage":{"inputTokens":9,"outputTokens":0,"totalTokens":9}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},
				"logprobs":null,"finish_reason":"content_filter"}],
				"usage":{"prompt_tokens":9,"completion_tokens":0,"total_tokens":9,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tool input missing or null becomes {}",
			converse: `{"output":{"message":{"role":"assistant","content":[
					{"toolUse":{"toolUseId":"a","name":"f"}},{"toolUse":{"toolUseId":"b","name":"g","input":null}}]}},
				"stopReason":"tool_use"}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,
				"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},
					{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},
				"logprobs":null,"finish_reason":"tool_calls"}]}`,
		},
		{
			name: "citations content keeps its text",
			converse: `{"output":{"message":{"role":"assistant","content":[{"text":"Per the doc: "},
					{"citationsContent":{"content":[{"text":"the sky is blue"}],"citations":[{"title":"d"}]}}]}},
				"stopReason":"end_turn"}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"Per the doc: the sky is blue","refusal":null},
				"logprobs":null,"finish_reason":"stop"}]}`,
		},
		{
			name: "unknown members and padding are ignored; text with newlines and markup survives",
			converse: `{"p":"abcdefgh","output":{"message":{"role":"assistant","content":[{"text":"a\n\"b\"\t<c>&\u2028"}]}},
				"stopReason":"end_turn","additionalModelResponseFields":{"x":1},"trace":{},"serviceTier":{"type":"default"},
				"performanceConfig":{"latency":"standard"}}`,
			want: `{` + head + `,"choices":[{"index":0,"message":{"role":"assistant","content":"a\n\"b\"\t<c>&\u2028","refusal":null},
				"logprobs":null,"finish_reason":"stop"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := openai.ChatCompletion([]byte(tt.converse), model, id, created)
			if err != nil {
				t.Fatalf("ChatCompletion: %v", err)
			}
			if d := respJSONDiff(t, got, tt.want); d != "" {
				t.Errorf("chat.completion (-want +got):\n%s\ngot: %s", d, got)
			}
			var sdk sdkChatCompletion
			respDecodeStrict(t, got, &sdk)
			if bytes.ContainsAny(got, "\n") {
				t.Errorf("output has a raw newline: %s", got)
			}
		})
	}
}

func TestChatCompletionFinishReasons(t *testing.T) {
	// Every StopReason of the Converse API reference, and two it does not
	// have.
	tests := map[string]string{
		"end_turn":                      "stop",
		"stop_sequence":                 "stop",
		"max_tokens":                    "length",
		"model_context_window_exceeded": "length",
		"tool_use":                      "tool_calls",
		"content_filtered":              "content_filter",
		"guardrail_intervened":          "content_filter",
		"malformed_model_output":        "stop",
		"malformed_tool_use":            "stop",
		"":                              "stop",
		"some_future_reason":            "stop",
	}
	for stop, want := range tests {
		converse := `{"output":{"message":{"role":"assistant","content":[{"text":"x"}]}},"stopReason":"` + stop + `"}`
		got, err := openai.ChatCompletion([]byte(converse), "m", "id", 1)
		if err != nil {
			t.Fatalf("%q: %v", stop, err)
		}
		var c sdkChatCompletion
		respDecodeStrict(t, got, &c)
		if len(c.Choices) != 1 || c.Choices[0].FinishReason != want {
			t.Errorf("stopReason %q: finish_reason %+v, want %q", stop, c.Choices, want)
		}
	}
}

func TestChatCompletionEscapesCallerStrings(t *testing.T) {
	model := "my \"model\"\n<&>"
	id := "chatcmpl-\u00e9\\"
	got, err := openai.ChatCompletion([]byte(`{"output":{"message":{"content":[]}},"stopReason":"end_turn"}`), model, id, -5)
	if err != nil {
		t.Fatal(err)
	}
	var c sdkChatCompletion
	respDecodeStrict(t, got, &c)
	if c.Model != model || c.ID != id || c.Created != -5 || c.Object != "chat.completion" {
		t.Errorf("got model %q id %q created %d object %q", c.Model, c.ID, c.Created, c.Object)
	}
}

func TestChatCompletionMalformed(t *testing.T) {
	tests := map[string]string{
		"empty":                    ``,
		"not JSON":                 `<html>oops</html>`,
		"truncated":                `{"output":{"message":{"content":[{"text":"hi"}`,
		"array":                    `[]`,
		"null":                     `null`,
		"no output":                `{"stopReason":"end_turn"}`,
		"no message":               `{"output":{},"stopReason":"end_turn"}`,
		"message null":             `{"output":{"message":null}}`,
		"content not an array":     `{"output":{"message":{"content":"hi"}}}`,
		"text not a string":        `{"output":{"message":{"content":[{"text":5}]}}}`,
		"tokens not numbers":       `{"output":{"message":{"content":[]}},"usage":{"inputTokens":"5"}}`,
		"trailing garbage":         `{"output":{"message":{"content":[]}}} x`,
		"invalid tool input value": `{"output":{"message":{"content":[{"toolUse":{"toolUseId":"a","name":"f","input":{"a":}}}]}}}`,
	}
	for name, converse := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := openai.ChatCompletion([]byte(converse), "m", "id", 1)
			if err == nil {
				t.Fatalf("no error; got %s", got)
			}
			if got != nil {
				t.Errorf("body %s with error %v", got, err)
			}
			if !strings.HasPrefix(err.Error(), "openai: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}
