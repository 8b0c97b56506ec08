package fakeaws

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestChatCompletionsNative: the native Chat Completions path answers a
// signed request for an openai.* model as a chat.completion, or as chunks
// ending in [DONE] with usage when asked, bills the signer, and refuses
// other models, bad requests and unsigned ones in OpenAI's error shape.
func TestChatCompletionsNative(t *testing.T) {
	e := newEnv(t, Options{})
	creds := e.session(t, "alice", map[string]string{"team": "ml"})
	post := func(t *testing.T, body string, sign bool) (*http.Response, []byte) {
		t.Helper()
		var req *http.Request
		if sign {
			req = signedRequest(t, http.MethodPost, e.br.URL+"/openai/v1/chat/completions", []byte(body), creds, "bedrock", "us-east-1", e.clock.Now())
		} else {
			req, _ = http.NewRequest(http.MethodPost, e.br.URL+"/openai/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := post(t, `{"model":"openai.gpt-oss-20b-1:0","messages":[{"role":"user","content":"hello there"}],"max_tokens":3}`, true)
	var cc struct {
		Object  string
		Model   string
		Choices []struct {
			Message      struct{ Role, Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			Prompt     int64 `json:"prompt_tokens"`
			Completion int64 `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(body, &cc); err != nil || resp.StatusCode != 200 || cc.Object != "chat.completion" ||
		len(cc.Choices) != 1 || cc.Choices[0].FinishReason != "length" || cc.Usage.Prompt != 2 || cc.Usage.Completion != 3 {
		t.Fatalf("chat completion = %d %s (%v)", resp.StatusCode, body, err)
	}

	resp, body = post(t, `{"model":"openai.gpt-oss-120b-1:0","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"stream":true,"stream_options":{"include_usage":true}}`, true)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var text strings.Builder
	var lines []string
	var usage *struct {
		Completion int64 `json:"completion_tokens"`
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		lines = append(lines, line)
		if line == "[DONE]" {
			continue
		}
		var ch struct {
			Object  string
			Choices []struct{ Delta struct{ Content string } }
			Usage   *struct {
				Completion int64 `json:"completion_tokens"`
			}
		}
		if err := json.Unmarshal([]byte(line), &ch); err != nil || ch.Object != "chat.completion.chunk" {
			t.Fatalf("chunk %q: %v", line, err)
		}
		for _, c := range ch.Choices {
			text.WriteString(c.Delta.Content)
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
	}
	if lines[len(lines)-1] != "[DONE]" || usage == nil || usage.Completion != int64(len(strings.Fields(text.String()))) {
		t.Errorf("stream ended %q with usage %+v for text %q", lines[len(lines)-1], usage, text.String())
	}

	for name, tt := range map[string]struct {
		body   string
		sign   bool
		status int
	}{
		"Claude is not served here": {`{"model":"anthropic.claude-3-haiku-20240307-v1:0","messages":[{"role":"user","content":"x"}]}`, true, 400},
		"no messages":               {`{"model":"openai.gpt-oss-20b-1:0","messages":[]}`, true, 400},
		"not JSON":                  {`{`, true, 400},
		"unsigned":                  {`{"model":"openai.gpt-oss-20b-1:0","messages":[{"role":"user","content":"x"}]}`, false, 403},
	} {
		resp, body := post(t, tt.body, tt.sign)
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d %s, want %d", name, resp.StatusCode, body, tt.status)
		}
		if tt.status == 400 && !strings.Contains(string(body), `"error":{`) {
			t.Errorf("%s: body %s is not OpenAI's error shape", name, body)
		}
	}

	var billed int
	for _, inv := range e.fake.Invocations() {
		if inv.Operation == opChatCompletions && inv.Status == 200 {
			billed++
			if inv.SessionName != "alice" || inv.Tags["team"] != "ml" {
				t.Errorf("invocation billed to %q %v, want alice's session", inv.SessionName, inv.Tags)
			}
		}
	}
	if billed != 2 {
		t.Errorf("%d successful ChatCompletions invocations recorded, want 2", billed)
	}
}
