package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

func (h *harness) chat(t *testing.T, body string) (*http.Response, []byte) {
	t.Helper()
	resp := h.post(t, "/v1/chat/completions", body, authed())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// sseChunks splits a server-sent-events body into its data payloads.
func sseChunks(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

type chatAnswer struct {
	Object  string
	Model   string
	Choices []struct {
		Message struct {
			Role      string
			Content   *string
			ToolCalls []struct {
				ID       string
				Function struct{ Name, Arguments string }
			} `json:"tool_calls"`
		}
		Delta struct {
			Content   string
			ToolCalls []struct {
				Function struct{ Name, Arguments string }
			} `json:"tool_calls"`
		}
		FinishReason *string `json:"finish_reason"`
	}
	Usage *struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
	}
}

// TestOpenAIChat: chat completions through the gateway, translated to
// Converse / ConverseStream or sent to Bedrock's own Chat Completions API,
// each billed to the caller's session, with the ledger's tokens equal to
// Bedrock's count; malformed requests get 400 and reach neither STS nor
// Bedrock; Bedrock's errors come back in OpenAI's shape.
func TestOpenAIChat(t *testing.T) {
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Usage = sink
		c.OpenAI = OpenAIConfig{Aliases: map[string]string{"fast": "amazon.nova-lite-v1:0", "oss": "openai.gpt-oss-20b-1:0"}}
	})
	decode := func(t *testing.T, b []byte) chatAnswer {
		t.Helper()
		var a chatAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		return a
	}

	t.Run("translated", func(t *testing.T) {
		resp, body := h.chat(t, `{"model":"fast","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}]}`)
		a := decode(t, body)
		if resp.StatusCode != 200 || a.Object != "chat.completion" || a.Model != "fast" || len(a.Choices) != 1 ||
			a.Choices[0].Message.Content == nil || *a.Choices[0].Message.Content == "" || a.Usage == nil || a.Usage.Completion == 0 {
			t.Fatalf("answer = %d %s", resp.StatusCode, body)
		}
	})
	t.Run("translated stream with usage", func(t *testing.T) {
		resp, body := h.chat(t, `{"model":"amazon.nova-lite-v1:0","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`)
		chunks := sseChunks(t, body)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") || len(chunks) < 3 || chunks[len(chunks)-1] != "[DONE]" {
			t.Fatalf("stream = %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var text string
		var got *int64
		for _, c := range chunks[:len(chunks)-1] {
			a := decode(t, []byte(c))
			for _, ch := range a.Choices {
				text += ch.Delta.Content
			}
			if a.Usage != nil {
				got = &a.Usage.Completion
			}
		}
		if text == "" || got == nil || *got == 0 {
			t.Errorf("streamed text %q, usage %v", text, got)
		}
	})
	t.Run("tool call", func(t *testing.T) {
		resp, body := h.chat(t, `{"model":"fast","messages":[{"role":"user","content":"weather?"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
		a := decode(t, body)
		if resp.StatusCode != 200 || len(a.Choices) != 1 || a.Choices[0].FinishReason == nil || *a.Choices[0].FinishReason != "tool_calls" ||
			len(a.Choices[0].Message.ToolCalls) != 1 || a.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"city":"fake"}` {
			t.Fatalf("tool call answer = %d %s", resp.StatusCode, body)
		}
		call := a.Choices[0].Message.ToolCalls[0]
		resp, body = h.chat(t, `{"model":"fast","messages":[{"role":"user","content":"weather?"},
			{"role":"assistant","content":null,"tool_calls":[{"id":"`+call.ID+`","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"fake\"}"}}]},
			{"role":"tool","tool_call_id":"`+call.ID+`","content":"sunny"}],
			"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
		a = decode(t, body)
		if resp.StatusCode != 200 || *a.Choices[0].FinishReason != "stop" || a.Choices[0].Message.Content == nil {
			t.Fatalf("after the tool result = %d %s", resp.StatusCode, body)
		}
	})
	t.Run("native", func(t *testing.T) {
		resp, body := h.chat(t, `{"model":"oss","messages":[{"role":"user","content":"hello"}]}`)
		a := decode(t, body)
		if resp.StatusCode != 200 || a.Object != "chat.completion" || a.Usage == nil || a.Usage.Completion == 0 {
			t.Fatalf("native answer = %d %s", resp.StatusCode, body)
		}
		resp, body = h.chat(t, `{"model":"openai.gpt-oss-20b-1:0","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true}}`)
		if chunks := sseChunks(t, body); resp.StatusCode != 200 || len(chunks) < 3 || chunks[len(chunks)-1] != "[DONE]" {
			t.Fatalf("native stream = %d %s", resp.StatusCode, body)
		}
		// Bedrock's own API judges its parameters: n and seed, which
		// Converse cannot honour, go through.
		if resp, body := h.chat(t, `{"model":"oss","messages":[{"role":"user","content":"hi"}],"n":2,"seed":7}`); resp.StatusCode != 200 {
			t.Errorf("native with n and seed = %d %s", resp.StatusCode, body)
		}
	})

	// Every Bedrock call is in the ledger with Bedrock's own token count.
	invs := h.fake.Invocations()
	waitFor(t, func() bool { return len(sink.all()) == 7 })
	var billed, ledger usage.Tokens
	for _, inv := range invs {
		billed = billed.Add(usage.Tokens{Input: inv.InputTokens, Output: inv.OutputTokens})
	}
	for _, r := range sink.all() {
		if r.Operation != opChatCompletions || r.Status != 200 || r.Model == "" || r.Model == "fast" || r.Model == "oss" {
			t.Errorf("ledger record %+v: want ChatCompletions, 200, the Bedrock model ID", r)
		}
		ledger = ledger.Add(r.Tokens)
	}
	if len(invs) != 7 || billed != ledger || billed.Output == 0 {
		t.Errorf("%d Bedrock calls billed %+v; ledger %+v", len(invs), billed, ledger)
	}

	t.Run("refused before STS and Bedrock", func(t *testing.T) {
		calls, before := h.creds.calls.Load(), len(h.fake.Invocations())
		for _, body := range []string{`{`, `{"model":"fast"}`, `{"model":"fast","messages":[{"role":"user","content":"x"}],"n":2}`,
			// Two models for a native call: the policy would see one, Bedrock perhaps the other.
			`{"model":"openai.gpt-oss-20b-1:0","messages":[{"role":"user","content":"x"}],"model":"openai.gpt-oss-120b-1:0"}`,
			`{"MODEL":"openai.gpt-oss-20b-1:0","messages":[{"role":"user","content":"x"}]}`,
			`{"model":"openai.gpt-oss-20b-1:0","MOD\u0045L":"openai.gpt-oss-120b-1:0","messages":[{"role":"user","content":"x"}]}`,
			`{"model":"bad model!","messages":[{"role":"user","content":"x"}]}`} {
			resp, b := h.chat(t, body)
			if resp.StatusCode != 400 {
				t.Errorf("%s: status %d %s, want 400", body, resp.StatusCode, b)
			}
			openAIError(t, b)
		}
		if h.creds.calls.Load() != calls || len(h.fake.Invocations()) != before {
			t.Error("a malformed request reached STS or Bedrock")
		}
	})
	t.Run("Bedrock error in OpenAI's shape", func(t *testing.T) {
		resp, b := h.chat(t, `{"model":"`+fakeaws.ModelThrottle+`","messages":[{"role":"user","content":"x"}]}`)
		if resp.StatusCode != 429 {
			t.Errorf("throttled: status %d %s, want 429", resp.StatusCode, b)
		}
		openAIError(t, b)
	})
}

// TestOpenAIStreamIsLive: a translated stream's chunks reach the client
// as Bedrock sends its events: the fake holds its third event until the
// client has read the first text chunk, which it could not if the gateway
// held the answer back.
func TestOpenAIStreamIsLive(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if op == "ConverseStream" && i == 2 {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}}, nil)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	// The request runs aside: a gateway that buffered would not even
	// send the status line while Bedrock holds its event.
	gotText := make(chan bool, 1)
	bodyDone := make(chan struct{})
	go func() {
		defer close(bodyDone)
		req, _ := http.NewRequest(http.MethodPost, h.gateway.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"amazon.nova-lite-v1:0","messages":[{"role":"user","content":"hi"}],"stream":true}`))
		req.Header = authed()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			gotText <- false
			return
		}
		defer resp.Body.Close()
		defer io.Copy(io.Discard, resp.Body)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"content":"`) && !strings.Contains(sc.Text(), `"content":""`) {
				gotText <- true
				return
			}
		}
		gotText <- false
	}()
	select {
	case ok := <-gotText:
		if !ok {
			t.Fatal("the stream ended without a text chunk")
		}
	case <-time.After(10 * time.Second): // a deadlock guard, not a timing assertion
		t.Fatal("no text chunk reached the client while Bedrock held its next event: the gateway buffers the stream")
	}
	close(release)
	<-bodyDone
}
