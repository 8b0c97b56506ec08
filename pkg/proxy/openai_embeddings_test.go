package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// TestOpenAIEmbeddings: /v1/embeddings through InvokeModel, one call per
// Titan text and one per batch of Cohere texts, each signed with the
// caller's session; the ledger holds Bedrock's token count; a model that
// is not an embedding model, or a dimension it cannot give, is refused
// before STS and Bedrock.
func TestOpenAIEmbeddings(t *testing.T) {
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Usage = sink
		c.OpenAI = OpenAIConfig{Aliases: map[string]string{"embed": "amazon.titan-embed-text-v2:0"}}
	})
	post := func(t *testing.T, body string) (*http.Response, []byte) {
		t.Helper()
		resp := h.post(t, "/v1/embeddings", body, authed())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	type list struct {
		Object string
		Model  string
		Data   []struct {
			Index     int
			Embedding json.RawMessage
		}
		Usage struct {
			Prompt int64 `json:"prompt_tokens"`
		}
	}
	for _, tt := range []struct {
		name, body string
		n, dims    int
		calls      int
	}{
		{"titan, three texts", `{"model":"embed","input":["one two","three","four five six"],"dimensions":256}`, 3, 256, 3},
		{"cohere, one batch, base64", `{"model":"cohere.embed-english-v3","input":["a b","c"],"encoding_format":"base64"}`, 2, 0, 1},
	} {
		before := len(h.fake.Invocations())
		resp, body := post(t, tt.body)
		var l list
		if err := json.Unmarshal(body, &l); err != nil || resp.StatusCode != 200 || l.Object != "list" || len(l.Data) != tt.n || l.Usage.Prompt == 0 {
			t.Fatalf("%s: %d %s (%v)", tt.name, resp.StatusCode, body, err)
		}
		if tt.dims > 0 {
			var v []float64
			if err := json.Unmarshal(l.Data[0].Embedding, &v); err != nil || len(v) != tt.dims {
				t.Errorf("%s: embedding of %d floats (%v), want %d", tt.name, len(v), err, tt.dims)
			}
		}
		if calls := len(h.fake.Invocations()) - before; calls != tt.calls {
			t.Errorf("%s: %d InvokeModel calls, want %d", tt.name, calls, tt.calls)
		}
	}
	waitFor(t, func() bool { return len(sink.all()) == 2 })
	var billed, ledger usage.Tokens
	for _, inv := range h.fake.Invocations() {
		if inv.Operation != "InvokeModel" || inv.Status != 200 {
			t.Errorf("Bedrock call %s %d", inv.Operation, inv.Status)
		}
		billed = billed.Add(usage.Tokens{Input: inv.InputTokens, Output: inv.OutputTokens})
	}
	for _, r := range sink.all() {
		if r.Operation != opEmbeddings || r.Status != 200 {
			t.Errorf("ledger record %+v", r)
		}
		ledger = ledger.Add(r.Tokens)
	}
	if billed != ledger || billed.Input == 0 {
		t.Errorf("billed %+v, ledger %+v", billed, ledger)
	}

	calls, before := h.creds.calls.Load(), len(h.fake.Invocations())
	for _, body := range []string{
		`{"model":"anthropic.claude-3-haiku-20240307-v1:0","input":"x"}`,
		`{"model":"cohere.embed-english-v3","input":"x","dimensions":512}`,
		`{"model":"embed","input":[[1,2]]}`,
	} {
		resp, b := post(t, body)
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d %s, want 400", body, resp.StatusCode, b)
		}
		openAIError(t, b)
	}
	if h.creds.calls.Load() != calls || len(h.fake.Invocations()) != before {
		t.Error("a refused embeddings request reached STS or Bedrock")
	}
}
