package usage

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var converseTests = []struct {
	name   string
	body   string
	want   Tokens
	wantOK bool
}{
	{
		name: "plain",
		body: `{"output":{"message":{"role":"assistant","content":[{"text":"Hi"}]}},"stopReason":"end_turn",` +
			`"usage":{"inputTokens":12,"outputTokens":34,"totalTokens":46},"metrics":{"latencyMs":512}}`,
		want:   Tokens{Input: 12, Output: 34},
		wantOK: true,
	},
	{
		name: "cache",
		body: `{"usage":{"inputTokens":5,"outputTokens":7,"totalTokens":112,"cacheReadInputTokens":80,` +
			`"cacheWriteInputTokens":20,"cacheDetails":[{"ttl":"5m","inputTokens":20}]}}`,
		want:   Tokens{Input: 5, Output: 7, CacheRead: 80, CacheWrite: 20},
		wantOK: true,
	},
	{
		name:   "padding and unknown fields",
		body:   `{"p":"abcdefghij","usage":{"inputTokens":1,"outputTokens":2,"newField":{"x":[1,2]}},"future":true}`,
		want:   Tokens{Input: 1, Output: 2},
		wantOK: true,
	},
	{
		name:   "output only",
		body:   `{"usage":{"outputTokens":9}}`,
		want:   Tokens{Output: 9},
		wantOK: true,
	},
	{
		name:   "wrongly typed unrelated field",
		body:   `{"usage":{"inputTokens":3,"outputTokens":4},"metrics":"fast","output":7}`,
		want:   Tokens{Input: 3, Output: 4},
		wantOK: true,
	},
	{name: "no usage", body: `{"output":{},"stopReason":"end_turn"}`},
	{name: "empty usage", body: `{"usage":{}}`},
	{name: "null usage", body: `{"usage":null}`},
	{name: "usage not an object", body: `{"usage":"lots"}`},
	{name: "counts not numbers", body: `{"usage":{"inputTokens":"12","outputTokens":"3"}}`},
	{name: "negative", body: `{"usage":{"inputTokens":-1,"outputTokens":3}}`},
	{name: "fraction", body: `{"usage":{"inputTokens":1.5,"outputTokens":3.25}}`},
	{name: "overflow", body: `{"usage":{"inputTokens":99999999999999999999,"outputTokens":1e40}}`},
	{name: "truncated", body: `{"usage":{"inputTokens":12,"outputTok`},
	{name: "not JSON", body: `<html>bad gateway</html>`},
	{name: "empty", body: ``},
	{name: "array", body: `[{"usage":{"inputTokens":1}}]`},
}

func TestFromConverse(t *testing.T) {
	for _, tt := range converseTests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FromConverse([]byte(tt.body))
			if ok != tt.wantOK {
				t.Fatalf("FromConverse(%s) ok = %v, want %v", tt.body, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FromConverse(%s) tokens mismatch (-want +got):\n%s", tt.body, diff)
			}
		})
	}
}

// hdr builds response headers from name, value pairs.
func hdr(kv ...string) http.Header {
	h := make(http.Header)
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

var invokeTests = []struct {
	name   string
	header http.Header
	body   string
	want   Tokens
	wantOK bool
}{
	{
		name: "headers",
		header: hdr("X-Amzn-Bedrock-Input-Token-Count", "11", "X-Amzn-Bedrock-Output-Token-Count", "22",
			"X-Amzn-Bedrock-Invocation-Latency", "321"),
		body:   `{"id":"msg_1","type":"message","usage":{"input_tokens":1,"output_tokens":2}}`,
		want:   Tokens{Input: 11, Output: 22},
		wantOK: true,
	},
	{
		name: "headers with cache",
		header: hdr("X-Amzn-Bedrock-Input-Token-Count", "3", "X-Amzn-Bedrock-Output-Token-Count", "4",
			"X-Amzn-Bedrock-Cache-Read-Input-Token-Count", "100", "X-Amzn-Bedrock-Cache-Write-Input-Token-Count", "50"),
		want:   Tokens{Input: 3, Output: 4, CacheRead: 100, CacheWrite: 50},
		wantOK: true,
	},
	{
		name:   "spaces around a count, zero output",
		header: http.Header{"X-Amzn-Bedrock-Input-Token-Count": {" 8 "}, "X-Amzn-Bedrock-Output-Token-Count": {"0"}},
		want:   Tokens{Input: 8},
		wantOK: true,
	},
	{
		name:   "input header only (embeddings)",
		header: hdr("X-Amzn-Bedrock-Input-Token-Count", "17"),
		body:   `{"embedding":[0.1,0.2]}`,
		want:   Tokens{Input: 17},
		wantOK: true,
	},
	{
		name:   "malformed header falls back to body",
		header: hdr("X-Amzn-Bedrock-Input-Token-Count", "lots", "X-Amzn-Bedrock-Output-Token-Count", "22"),
		body:   `{"usage":{"input_tokens":1,"output_tokens":2}}`,
		want:   Tokens{Input: 1, Output: 2},
		wantOK: true,
	},
	{
		name:   "negative header falls back to body",
		header: hdr("X-Amzn-Bedrock-Input-Token-Count", "-5", "X-Amzn-Bedrock-Output-Token-Count", "22"),
		body:   `{}`,
	},
	{
		name:   "cache headers alone are not usage",
		header: hdr("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", "100"),
		body:   `{"completion":"hi"}`,
	},
	{
		name: "anthropic",
		body: `{"id":"msg_bdrk_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello"}],` +
			`"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":200,` +
			`"cache_read_input_tokens":1000,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":0},"output_tokens":41}}`,
		want:   Tokens{Input: 25, Output: 41, CacheRead: 1000, CacheWrite: 200},
		wantOK: true,
	},
	{
		name: "nova",
		body: `{"output":{"message":{"content":[{"text":"Hi"}],"role":"assistant"}},"stopReason":"end_turn",` +
			`"usage":{"inputTokens":13,"outputTokens":8,"totalTokens":21,"cacheReadInputTokenCount":4,"cacheWriteInputTokenCount":2}}`,
		want:   Tokens{Input: 13, Output: 8, CacheRead: 4, CacheWrite: 2},
		wantOK: true,
	},
	{
		name:   "openai style (AI21 Jamba, gpt-oss)",
		body:   `{"id":"chatcmpl-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":6,"total_tokens":36}}`,
		want:   Tokens{Input: 30, Output: 6},
		wantOK: true,
	},
	{
		name:   "titan text",
		body:   `{"inputTextTokenCount":5,"results":[{"tokenCount":20,"outputText":"Hi","completionReason":"FINISH"},{"tokenCount":3}]}`,
		want:   Tokens{Input: 5, Output: 23},
		wantOK: true,
	},
	{
		name:   "titan embeddings",
		body:   `{"embedding":[0.5,-0.25],"inputTextTokenCount":7}`,
		want:   Tokens{Input: 7},
		wantOK: true,
	},
	{
		name: "titan negative result",
		body: `{"inputTextTokenCount":5,"results":[{"tokenCount":-20}]}`,
	},
	{
		name: "titan overflowing sum",
		body: `{"inputTextTokenCount":5,"results":[{"tokenCount":9223372036854775807},{"tokenCount":1}]}`,
	},
	{
		name:   "llama",
		body:   `{"generation":"Hi","prompt_token_count":18,"generation_token_count":4,"stop_reason":"stop"}`,
		want:   Tokens{Input: 18, Output: 4},
		wantOK: true,
	},
	{
		name:   "cohere command r",
		body:   `{"response_id":"r","text":"Hi","finish_reason":"COMPLETE","meta":{"api_version":{"version":"1"},"billed_units":{"input_tokens":9,"output_tokens":2}}}`,
		want:   Tokens{Input: 9, Output: 2},
		wantOK: true,
	},
	{
		name:   "padding field",
		body:   `{"p":"abcdefghijklmnopqrstuvwxyzABCDEFGH","usage":{"input_tokens":1,"output_tokens":1}}`,
		want:   Tokens{Input: 1, Output: 1},
		wantOK: true,
	},
	{name: "mistral (no usage)", body: `{"outputs":[{"text":"Hi","stop_reason":"stop"}]}`},
	{name: "image (no usage)", body: `{"images":["iVBORw0KGgoAAAANSUhEUgAA"],"error":null}`},
	{name: "usage of the wrong type", body: `{"usage":[1,2,3]}`},
	{name: "empty usage", body: `{"usage":{}}`},
	{name: "negative body count", body: `{"usage":{"input_tokens":-3,"output_tokens":4}}`},
	{name: "not JSON", body: `"usage" <- not a document`},
	{name: "empty", body: ``},
	{name: "nil header and body"},
}

func TestFromInvoke(t *testing.T) {
	for _, tt := range invokeTests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := FromInvoke(tt.header, []byte(tt.body))
			if ok != tt.wantOK {
				t.Fatalf("FromInvoke(%v, %s) ok = %v, want %v", tt.header, tt.body, ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FromInvoke(%v, %s) tokens mismatch (-want +got):\n%s", tt.header, tt.body, diff)
			}
		})
	}
}

// TestFromInvokeTestdata reads whole InvokeModel answers kept under
// testdata/invoke, one per file: {"header":{...},"body":<answer>,"want":Tokens}.
func TestFromInvokeTestdata(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invoke", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/invoke/*.json files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var tc struct {
				Header http.Header
				Body   json.RawMessage
				Want   *Tokens
			}
			if err := json.Unmarshal(raw, &tc); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			got, ok := FromInvoke(tc.Header, tc.Body)
			if ok != (tc.Want != nil) {
				t.Fatalf("FromInvoke(%s) ok = %v, want %v", f, ok, tc.Want != nil)
			}
			if tc.Want == nil {
				return
			}
			if diff := cmp.Diff(*tc.Want, got); diff != "" {
				t.Errorf("FromInvoke(%s) mismatch (-want +got):\n%s", f, diff)
			}
		})
	}
}

func FuzzFromConverse(f *testing.F) {
	for _, tt := range converseTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, ok := FromConverse(body)
		checkTokens(t, "FromConverse", got, ok)
	})
}

func FuzzFromInvoke(f *testing.F) {
	for _, tt := range invokeTests {
		f.Add(tt.header.Get("X-Amzn-Bedrock-Input-Token-Count"), tt.header.Get("X-Amzn-Bedrock-Output-Token-Count"), []byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, in, out string, body []byte) {
		h := make(http.Header)
		if in != "" {
			h.Set("X-Amzn-Bedrock-Input-Token-Count", in)
		}
		if out != "" {
			h.Set("X-Amzn-Bedrock-Output-Token-Count", out)
		}
		got, ok := FromInvoke(h, body)
		checkTokens(t, "FromInvoke", got, ok)
	})
}

// checkTokens asserts the invariants every parser keeps: no negative count,
// and nothing but zeros when it reports no usage.
func checkTokens(t *testing.T, fn string, got Tokens, ok bool) {
	t.Helper()
	if !ok && got != (Tokens{}) {
		t.Errorf("%s = %+v, false; want zero Tokens when not ok", fn, got)
	}
	if got.Input < 0 || got.Output < 0 || got.CacheRead < 0 || got.CacheWrite < 0 {
		t.Errorf("%s = %+v, want no negative count", fn, got)
	}
}

// FuzzScanConverseUsage: where scanConverseUsage answers, it answers as
// json.Unmarshal into converseUsage does.
func FuzzScanConverseUsage(f *testing.F) {
	for _, s := range []string{
		`{"inputTokens":12,"outputTokens":34,"totalTokens":46}`,
		`{"inputTokens":1,"outputTokens":2,"cacheReadInputTokens":3,"cacheWriteInputTokens":4}`,
		`{"InputTokens":5,"outputTokens":null}`,
		`{"inputTokens":-1,"outputTokens":2}`,
		`{"inputTokens":1.5}`,
		`{"input\u0054okens":7,"outputTokens":1}`,
		`{"inputTokens":1,"inputTokens":9,"outputTokens":0}`,
		`{"outputTokens":007}`,
		`null`,
		`{"inputTokens":99999999999999999999}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, obj []byte) {
		fast, ok := scanConverseUsage(obj)
		if !ok {
			return
		}
		var slow *converseUsage
		if !unmarshalTolerant(obj, &slow) {
			t.Fatalf("scanConverseUsage(%q) answered %+v; json.Unmarshal refuses it", obj, fast)
		}
		ft, fok := fast.tokens()
		st, sok := slow.tokens()
		if ft != st || fok != sok {
			t.Fatalf("scanConverseUsage(%q) = %+v %v; json.Unmarshal = %+v %v", obj, ft, fok, st, sok)
		}
	})
}
