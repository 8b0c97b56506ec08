package openai_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/openai"
)

// The sdkChunk types mirror openai-go's (v3) chatcompletion.go
// ChatCompletionChunk, ChatCompletionChunkChoice,
// ChatCompletionChunkChoiceDelta, ChatCompletionChunkChoiceDeltaToolCall
// and its Function.
type sdkChunk struct {
	ID      string           `json:"id"`
	Choices []sdkChunkChoice `json:"choices"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Object  string           `json:"object"`
	Usage   *sdkUsage        `json:"usage"`
}

type sdkChunkChoice struct {
	Delta struct {
		Content   *string `json:"content"`
		Role      string  `json:"role"`
		ToolCalls []struct {
			Index    int64  `json:"index"`
			ID       string `json:"id"`
			Function struct {
				Arguments string `json:"arguments"`
				Name      string `json:"name"`
			} `json:"function"`
			Type string `json:"type"`
		} `json:"tool_calls"`
	} `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	Index        int64           `json:"index"`
	Logprobs     json.RawMessage `json:"logprobs"`
}

// strmEvent is one ConverseStream event as the gateway's decoder hands it
// over.
type strmEvent struct {
	typ, payload string
}

// strmData splits SSE output into its events' data, checking the framing
// the SDKs' decoders rely on: every event one "data: " line followed by a
// blank line (openai-go ssestream dispatches on the blank line and joins
// data lines; a raw newline inside the JSON would split it).
func strmData(t *testing.T, out []byte) []string {
	t.Helper()
	s := string(out)
	if s == "" {
		return nil
	}
	if !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("output does not end an event: %q", s)
	}
	var data []string
	for _, ev := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		if strings.Contains(ev, "\n") || !strings.HasPrefix(ev, "data: ") {
			t.Fatalf("event is not a single data line: %q", ev)
		}
		data = append(data, strings.TrimPrefix(ev, "data: "))
	}
	return data
}

// strmRun feeds events to a translator, then ends the stream: with Done,
// or with Exception if exc is set.
func strmRun(t *testing.T, tr *openai.StreamTranslator, events []strmEvent, exc *strmEvent) []byte {
	t.Helper()
	var out []byte
	for _, e := range events {
		var err error
		out, err = tr.Event(out, e.typ, []byte(e.payload))
		if err != nil {
			t.Fatalf("Event(%s, %s): %v", e.typ, e.payload, err)
		}
	}
	if exc != nil {
		return tr.Exception(out, exc.typ, []byte(exc.payload))
	}
	return tr.Done(out)
}

// strmChunk is a chunk's expected JSON: choices as given, and usage absent
// if usage is "", else that JSON.
func strmChunk(choices, usage string) string {
	s := `{"id":"chatcmpl-s1","object":"chat.completion.chunk","created":1700000001,"model":"nova-pro","choices":` + choices
	if usage != "" {
		s += `,"usage":` + usage
	}
	return s + `}`
}

// strmChoice is a one-choice choices array with delta and finish_reason
// (JSON, "null" when none).
func strmChoice(delta, finish string) string {
	return `[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + `}]`
}

// A ConverseStream answer with text, two tool calls and cached usage.
var strmToolAnswer = []strmEvent{
	{"messageStart", `{"role":"assistant"}`},
	{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Let me "},"p":"abcdef"}`},
	{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"check."}}`},
	{"contentBlockStop", `{"contentBlockIndex":0}`},
	{"contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_A","name":"get_weather"}}}`},
	{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}`},
	{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}}}`},
	{"contentBlockStop", `{"contentBlockIndex":1}`},
	{"contentBlockStart", `{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_B","name":"get_time"}}}`},
	{"contentBlockDelta", `{"contentBlockIndex":2,"delta":{"toolUse":{"input":""}}}`},
	{"contentBlockDelta", `{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{}"}}}`},
	{"contentBlockStop", `{"contentBlockIndex":2}`},
	{"messageStop", `{"stopReason":"tool_use"}`},
	{"metadata", `{"usage":{"inputTokens":20,"outputTokens":15,"totalTokens":335,"cacheReadInputTokens":300},"metrics":{"latencyMs":800}}`},
}

// The same answer as Converse would have returned it.
const strmToolAnswerConverse = `{"output":{"message":{"role":"assistant","content":[{"text":"Let me check."},
	{"toolUse":{"toolUseId":"tooluse_A","name":"get_weather","input":{"city":"Paris"}}},
	{"toolUse":{"toolUseId":"tooluse_B","name":"get_time","input":{}}}]}},
	"stopReason":"tool_use","usage":{"inputTokens":20,"outputTokens":15,"totalTokens":335,"cacheReadInputTokens":300}}`

func TestStreamTranslator(t *testing.T) {
	textAnswer := []strmEvent{
		{"messageStart", `{"role":"assistant"}`},
		{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Hel"}}`},
		{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"lo\n\ndata: [DONE]"}}`},
		{"contentBlockStop", `{"contentBlockIndex":0}`},
		{"messageStop", `{"stopReason":"end_turn"}`},
		{"metadata", `{"usage":{"inputTokens":8,"outputTokens":3,"totalTokens":11},"metrics":{"latencyMs":120}}`},
	}
	const usage8 = `{"prompt_tokens":8,"completion_tokens":3,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0}}`
	const usageTool = `{"prompt_tokens":320,"completion_tokens":15,"total_tokens":335,"prompt_tokens_details":{"cached_tokens":300}}`
	roleDelta := `{"role":"assistant","content":""}`

	tests := []struct {
		name         string
		includeUsage bool
		events       []strmEvent
		exception    *strmEvent
		want         []string // chunk JSON, or [DONE]
	}{
		{
			name:   "text without usage",
			events: textAnswer,
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), ""),
				strmChunk(strmChoice(`{"content":"Hel"}`, "null"), ""),
				strmChunk(strmChoice(`{"content":"lo\n\ndata: [DONE]"}`, "null"), ""),
				strmChunk(strmChoice(`{}`, `"stop"`), ""),
				"[DONE]",
			},
		},
		{
			name:         "text with include_usage: usage null until the usage chunk after finish",
			includeUsage: true,
			events:       textAnswer,
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"Hel"}`, "null"), "null"),
				strmChunk(strmChoice(`{"content":"lo\n\ndata: [DONE]"}`, "null"), "null"),
				strmChunk(strmChoice(`{}`, `"stop"`), "null"),
				strmChunk(`[]`, usage8),
				"[DONE]",
			},
		},
		{
			name:         "text and tool calls streamed",
			includeUsage: true,
			events:       strmToolAnswer,
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"Let me "}`, "null"), "null"),
				strmChunk(strmChoice(`{"content":"check."}`, "null"), "null"),
				strmChunk(strmChoice(`{"tool_calls":[{"index":0,"id":"tooluse_A","type":"function","function":{"name":"get_weather","arguments":""}}]}`, "null"), "null"),
				strmChunk(strmChoice(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`, "null"), "null"),
				strmChunk(strmChoice(`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`, "null"), "null"),
				strmChunk(strmChoice(`{"tool_calls":[{"index":1,"id":"tooluse_B","type":"function","function":{"name":"get_time","arguments":""}}]}`, "null"), "null"),
				strmChunk(strmChoice(`{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}`, "null"), "null"),
				strmChunk(strmChoice(`{}`, `"tool_calls"`), "null"),
				strmChunk(`[]`, usageTool),
				"[DONE]",
			},
		},
		{
			name: "tool call first: role chunk still leads",
			events: []strmEvent{
				{"contentBlockStart", `{"contentBlockIndex":0,"start":{"toolUse":{"toolUseId":"t1","name":"f"}}}`},
				{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"toolUse":{"input":"{\"a\":1}"}}}`},
				{"messageStop", `{"stopReason":"tool_use"}`},
			},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), ""),
				strmChunk(strmChoice(`{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":""}}]}`, "null"), ""),
				strmChunk(strmChoice(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}`, "null"), ""),
				strmChunk(strmChoice(`{}`, `"tool_calls"`), ""),
				"[DONE]",
			},
		},
		{
			name:         "reasoning, citations, empty text and unknown events are dropped",
			includeUsage: true,
			events: []strmEvent{
				{"messageStart", `{"role":"assistant"}`},
				{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"thinking..."}}}`},
				{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sig"}}}`},
				{"contentBlockStop", `{"contentBlockIndex":0}`},
				{"contentBlockStart", `{"contentBlockIndex":1,"start":{}}`},
				{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"text":""}}`},
				{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"text":"Answer."}}`},
				{"contentBlockDelta", `{"contentBlockIndex":1,"delta":{"citation":{"title":"doc"}}}`},
				{"someFutureEvent", `{"whatever":true}`},
				{"contentBlockStop", `{"contentBlockIndex":1}`},
				{"messageStop", `{"stopReason":"max_tokens","additionalModelResponseFields":{}}`},
				{"metadata", `{"usage":{"inputTokens":1,"outputTokens":2,"totalTokens":3,"cacheWriteInputTokens":4}}`},
			},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"Answer."}`, "null"), "null"),
				strmChunk(strmChoice(`{}`, `"length"`), "null"),
				strmChunk(`[]`, `{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":4}}`),
				"[DONE]",
			},
		},
		{
			name:         "metadata before messageStop: the usage chunk still comes last",
			includeUsage: true,
			events: []strmEvent{
				{"messageStart", `{"role":"assistant"}`},
				{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"x"}}`},
				{"metadata", `{"usage":{"inputTokens":8,"outputTokens":3,"totalTokens":11}}`},
				{"messageStop", `{"stopReason":"stop_sequence"}`},
			},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"x"}`, "null"), "null"),
				strmChunk(strmChoice(`{}`, `"stop"`), "null"),
				strmChunk(`[]`, usage8),
				"[DONE]",
			},
		},
		{
			name:         "include_usage but no metadata: no usage chunk is invented",
			includeUsage: true,
			events: []strmEvent{
				{"messageStart", `{"role":"assistant"}`},
				{"messageStop", `{"stopReason":"content_filtered"}`},
			},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{}`, `"content_filter"`), "null"),
				"[DONE]",
			},
		},
		{
			name:         "stream ends without messageStop: an error event, not [DONE]",
			includeUsage: true,
			events: []strmEvent{
				{"messageStart", `{"role":"assistant"}`},
				{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Hel"}}`},
				{"metadata", `{"usage":{"inputTokens":8,"outputTokens":3,"totalTokens":11}}`},
			},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"Hel"}`, "null"), "null"),
				`{"error":{"message":"The Bedrock stream ended before the answer was complete.","type":"server_error","param":null,"code":null}}`,
			},
		},
		{
			name: "empty stream",
			want: []string{
				`{"error":{"message":"The Bedrock stream ended before the answer was complete.","type":"server_error","param":null,"code":null}}`,
			},
		},
		{
			name:         "exception mid-stream: an error event and no [DONE]",
			includeUsage: true,
			events:       textAnswer[:2],
			exception:    &strmEvent{"throttlingException", `{"message":"Too many requests, please wait before trying again."}`},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), "null"),
				strmChunk(strmChoice(`{"content":"Hel"}`, "null"), "null"),
				`{"error":{"message":"Too many requests, please wait before trying again.","type":"rate_limit_error","param":null,"code":"ThrottlingException"}}`,
			},
		},
		{
			name:      "model stream error before any chunk",
			exception: &strmEvent{"modelStreamErrorException", `{"message":"Model failed","originalStatusCode":500,"originalMessage":"boom"}`},
			want: []string{
				`{"error":{"message":"Model failed","type":"server_error","param":null,"code":"ModelStreamErrorException"}}`,
			},
		},
		{
			name:      "exception without a message",
			events:    textAnswer,
			exception: &strmEvent{"internalServerException", `not json`},
			want: []string{
				strmChunk(strmChoice(roleDelta, "null"), ""),
				strmChunk(strmChoice(`{"content":"Hel"}`, "null"), ""),
				strmChunk(strmChoice(`{"content":"lo\n\ndata: [DONE]"}`, "null"), ""),
				strmChunk(strmChoice(`{}`, `"stop"`), ""),
				`{"error":{"message":"Bedrock returned InternalServerException.","type":"server_error","param":null,"code":"InternalServerException"}}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := openai.NewStreamTranslator("nova-pro", "chatcmpl-s1", 1700000001, tt.includeUsage)
			out := strmRun(t, tr, tt.events, tt.exception)
			got := strmData(t, out)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d:\n%s", len(got), len(tt.want), out)
			}
			for i := range got {
				if tt.want[i] == "[DONE]" {
					if got[i] != "[DONE]" {
						t.Errorf("event %d = %s, want [DONE]", i, got[i])
					}
					continue
				}
				if d := respJSONDiff(t, []byte(got[i]), tt.want[i]); d != "" {
					t.Errorf("event %d (-want +got):\n%s\ngot: %s", i, d, got[i])
				}
				strmCheckSDK(t, got[i], tt.includeUsage)
			}
			// The stream is over: nothing more is written.
			more, err := tr.Event(nil, "contentBlockDelta", []byte(`{"contentBlockIndex":0,"delta":{"text":"late"}}`))
			if err != nil || len(more) != 0 {
				t.Errorf("Event after the end = %q, %v", more, err)
			}
			if more := tr.Done(nil); len(more) != 0 {
				t.Errorf("Done after the end = %q", more)
			}
			if more := tr.Exception(nil, "throttlingException", nil); len(more) != 0 {
				t.Errorf("Exception after the end = %q", more)
			}
		})
	}
}

// strmCheckSDK reads one data event as the SDKs do: an "error" member
// makes it an error (openai-go: gjson "error" exists; openai-node: data &&
// data.error; openai-python: data.get("error")), anything else is decoded
// as a ChatCompletionChunk.
func strmCheckSDK(t *testing.T, data string, includeUsage bool) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(data), &top); err != nil {
		t.Fatalf("event is not a JSON object: %s", data)
	}
	if raw, ok := top["error"]; ok {
		var e struct {
			Error struct {
				Code    *string `json:"code"`
				Message string  `json:"message"`
				Param   *string `json:"param"`
				Type    string  `json:"type"`
			} `json:"error"`
		}
		respDecodeStrict(t, []byte(data), &e)
		if e.Error.Message == "" || e.Error.Type == "" || len(raw) == 0 || raw[0] != '{' {
			t.Errorf("error event the SDKs would not read: %s", data)
		}
		return
	}
	var c sdkChunk
	respDecodeStrict(t, []byte(data), &c)
	if c.Object != "chat.completion.chunk" || c.ID != "chatcmpl-s1" || c.Created != 1700000001 || c.Model != "nova-pro" {
		t.Errorf("chunk header wrong: %s", data)
	}
	if _, has := top["usage"]; has != includeUsage {
		t.Errorf("usage member present=%v with includeUsage=%v: %s", has, includeUsage, data)
	}
	if len(c.Choices) == 0 && c.Usage == nil {
		t.Errorf("chunk with neither choices nor usage: %s", data)
	}
}

// The stream of an answer, accumulated as openai-node's ChatCompletionStream
// accumulates it (content appended; tool calls by index, id/type/name from
// their first piece, arguments appended; finish_reason; usage from the
// usage chunk), gives the message, finish_reason and usage ChatCompletion
// gives for the same answer.
func TestStreamMatchesChatCompletion(t *testing.T) {
	tr := openai.NewStreamTranslator("nova-pro", "chatcmpl-s1", 1700000001, true)
	data := strmData(t, strmRun(t, tr, strmToolAnswer, nil))

	acc := sdkChatCompletion{ID: "chatcmpl-s1", Object: "chat.completion", Created: 1700000001, Model: "nova-pro",
		Choices: []sdkChoice{{Logprobs: json.RawMessage("null")}}}
	ch := &acc.Choices[0]
	for _, d := range data {
		if d == "[DONE]" {
			break
		}
		var c sdkChunk
		respDecodeStrict(t, []byte(d), &c)
		if c.Usage != nil {
			acc.Usage = c.Usage
		}
		for _, cc := range c.Choices {
			if cc.Delta.Role != "" {
				ch.Message.Role = cc.Delta.Role
			}
			if cc.Delta.Content != nil {
				s := ""
				if ch.Message.Content != nil {
					s = *ch.Message.Content
				}
				s += *cc.Delta.Content
				ch.Message.Content = &s
			}
			for _, tc := range cc.Delta.ToolCalls {
				for int64(len(ch.Message.ToolCalls)) <= tc.Index {
					ch.Message.ToolCalls = append(ch.Message.ToolCalls, sdkToolCall{})
				}
				acc := &ch.Message.ToolCalls[tc.Index]
				if tc.ID != "" {
					acc.ID = tc.ID
				}
				if tc.Type != "" {
					acc.Type = tc.Type
				}
				if tc.Function.Name != "" {
					acc.Function.Name = tc.Function.Name
				}
				acc.Function.Arguments += tc.Function.Arguments
			}
			if cc.FinishReason != nil {
				ch.FinishReason = *cc.FinishReason
			}
		}
	}

	body, err := openai.ChatCompletion([]byte(strmToolAnswerConverse), "nova-pro", "chatcmpl-s1", 1700000001)
	if err != nil {
		t.Fatal(err)
	}
	var want sdkChatCompletion
	respDecodeStrict(t, body, &want)
	if d := cmp.Diff(want, acc); d != "" {
		t.Errorf("accumulated stream differs from ChatCompletion (-ChatCompletion +stream):\n%s", d)
	}
	for _, tc := range acc.Choices[0].Message.ToolCalls {
		if !json.Valid([]byte(tc.Function.Arguments)) {
			t.Errorf("accumulated arguments of %s are not JSON: %s", tc.ID, tc.Function.Arguments)
		}
	}
}

func TestStreamTranslatorBadEvents(t *testing.T) {
	tests := []struct {
		name   string
		events []strmEvent // all but the last must succeed
	}{
		{"contentBlockStart not JSON", []strmEvent{{"contentBlockStart", `{`}}},
		{"contentBlockDelta not JSON", []strmEvent{{"contentBlockDelta", `nope`}}},
		{"text not a string", []strmEvent{{"contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":1}}`}}},
		{"messageStop not JSON", []strmEvent{{"messageStop", ``}}},
		{"metadata not JSON", []strmEvent{{"metadata", `{"usage":`}}},
		{"usage not numbers", []strmEvent{{"metadata", `{"usage":{"inputTokens":"many"}}`}}},
		{"tool input for a block never started", []strmEvent{
			{"messageStart", `{"role":"assistant"}`},
			{"contentBlockDelta", `{"contentBlockIndex":3,"delta":{"toolUse":{"input":"{}"}}}`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := openai.NewStreamTranslator("m", "id", 1, true)
			var out []byte
			for i, e := range tt.events {
				before := string(out)
				var err error
				out, err = tr.Event(out, e.typ, []byte(e.payload))
				last := i == len(tt.events)-1
				if !last && err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if last {
					if err == nil {
						t.Fatalf("no error for %s %s", e.typ, e.payload)
					}
					if string(out) != before {
						t.Errorf("output changed on error: %q -> %q", before, out)
					}
				}
			}
			// The caller ends a broken stream with Exception.
			out = tr.Exception(out, "internalServerException", []byte(`{"message":"stream broken"}`))
			data := strmData(t, out)
			if last := data[len(data)-1]; !strings.Contains(last, `"error"`) {
				t.Errorf("last event %s is not an error", last)
			}
		})
	}
}

// Event appends to dst without disturbing what dst holds.
func TestStreamTranslatorAppends(t *testing.T) {
	tr := openai.NewStreamTranslator("m", "id", 1, false)
	dst := make([]byte, 0, 4096)
	dst = append(dst, "prior"...)
	dst, err := tr.Event(dst, "messageStart", []byte(`{"role":"assistant"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(dst, []byte("prior")) || len(dst) == len("prior") {
		t.Errorf("dst = %q", dst)
	}
}

func BenchmarkStreamTextDelta(b *testing.B) {
	tr := openai.NewStreamTranslator("nova-pro", "chatcmpl-0123456789", 1700000000, true)
	buf, _ := tr.Event(nil, "messageStart", []byte(`{"role":"assistant"}`))
	payload := []byte(`{"contentBlockIndex":0,"delta":{"text":"The quick brown fox jumps over the lazy dog. "},"p":"abcdefghijkl"}`)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = tr.Event(buf[:0], "contentBlockDelta", payload)
		if err != nil {
			b.Fatal(err)
		}
	}
}
