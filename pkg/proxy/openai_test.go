package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// allowPolicy is stubPolicy with ModelAllowed: no opus.
type allowPolicy struct{ stubPolicy }

func (*allowPolicy) ModelAllowed(_ auth.Identity, model string) bool {
	return !strings.Contains(model, "opus")
}

func (h *harness) get(t *testing.T, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.gateway.URL+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// openAIError decodes an OpenAI error body.
func openAIError(t *testing.T, b []byte) (msg, typ string, code *string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string
			Type    string
			Code    *string
		}
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("body %s is not an OpenAI error (%v)", b, err)
	}
	return e.Error.Message, e.Error.Type, e.Error.Code
}

// TestOpenAIModels: GET /v1/models (and /openai/v1/models) lists the
// configured models and aliases the caller's allow-list permits, in
// OpenAI's list shape; it is authenticated like every call.
func TestOpenAIModels(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Policy = &allowPolicy{stubPolicy{max: 100}}
		c.OpenAI = OpenAIConfig{
			Aliases: map[string]string{"fast": "amazon.nova-lite-v1:0", "best": "anthropic.claude-opus-4-v1:0"},
			Models:  []string{"amazon.nova-pro-v1:0", "anthropic.claude-opus-4-v1:0", "fast"},
		}
	})
	for _, path := range []string{"/v1/models", "/openai/v1/models"} {
		resp, body := h.get(t, path, authed())
		var list struct {
			Object string
			Data   []struct{ ID, Object string }
		}
		if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 || list.Object != "list" {
			t.Fatalf("%s = %d %s (%v)", path, resp.StatusCode, body, err)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
			if m.Object != "model" {
				t.Errorf("%s: entry %+v, want object model", path, m)
			}
		}
		if want := []string{"amazon.nova-pro-v1:0", "fast"}; !slices.Equal(ids, want) {
			t.Errorf("%s lists %v, want %v (opus refused by the allow-list, directly and through the alias)", path, ids, want)
		}
	}
}

// TestOpenAIErrorShape: on the OpenAI routes every refusal, from
// authentication on, is in OpenAI's shape with the status the SDKs map
// to their typed errors, and echoes no credential.
func TestOpenAIErrorShape(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	for _, tt := range []struct {
		name, path string
		header     http.Header
		status     int
		typ, code  string
	}{
		{"no key", "/v1/models", nil, 401, "invalid_request_error", "invalid_api_key"},
		{"bad key", "/openai/v1/models", http.Header{"Authorization": {"Bearer sk-not-a-key-1234567890"}}, 401, "invalid_request_error", "invalid_api_key"},
		{"unknown operation", "/v1/assistants", authed(), 404, "invalid_request_error", "not_found"},
	} {
		resp, body := h.get(t, tt.path, tt.header)
		if resp.StatusCode != tt.status || resp.Header.Get("X-Amzn-ErrorType") != "" {
			t.Errorf("%s: status %d (x-amzn-ErrorType %q), want %d in OpenAI's shape", tt.name, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tt.status)
		}
		_, typ, code := openAIError(t, body)
		if typ != tt.typ || code == nil || *code != tt.code {
			t.Errorf("%s: type %q code %v, want %q %q", tt.name, typ, code, tt.typ, tt.code)
		}
		if strings.Contains(string(body), "sk-not-a-key") {
			t.Errorf("%s: the answer echoes the key: %s", tt.name, body)
		}
	}
	// The Bedrock API keeps its own shape.
	resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, nil)
	if resp.StatusCode != 401 || resp.Header.Get("X-Amzn-ErrorType") == "" {
		t.Errorf("Bedrock route without a key: %d %q, want 401 in Bedrock's shape", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
}

func TestOpenAIResolveModel(t *testing.T) {
	c := OpenAIConfig{Aliases: map[string]string{"fast": "amazon.nova-lite-v1:0", "oss": "openai.gpt-oss-20b-1:0"}}
	for _, tt := range []struct {
		name, id string
		native   bool
	}{
		{"fast", "amazon.nova-lite-v1:0", false},
		{"oss", "openai.gpt-oss-20b-1:0", true},
		{"openai.gpt-oss-120b-1:0", "openai.gpt-oss-120b-1:0", true},
		{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", false},
	} {
		if id, native := c.resolveModel(tt.name); id != tt.id || native != tt.native {
			t.Errorf("resolveModel(%q) = %q, %v; want %q, %v", tt.name, id, native, tt.id, tt.native)
		}
	}
	c.Native = []string{"deepseek.*", "qwen.qwen3-32b-v1:0"}
	if _, native := c.resolveModel("openai.gpt-oss-20b-1:0"); native {
		t.Error("openai.* is native although openai.native no longer lists it")
	}
	if _, native := c.resolveModel("qwen.qwen3-32b-v1:0"); !native {
		t.Error("an exact native entry is not honoured")
	}
	bad := OpenAIConfig{Aliases: map[string]string{"x": ""}, Native: []string{"a*b", "*"}}
	if errs := bad.problems(); len(errs) != 4 {
		t.Errorf("problems() = %v, want 4 (empty alias target, its model ID, two bad native patterns)", errs)
	}
}

// TestOpenAIPolicyRefusals: a model the allow-list refuses is 403 and a
// throttled caller 429 with Retry-After, in OpenAI's shape, before STS.
func TestOpenAIPolicyRefusals(t *testing.T) {
	pol := &stubPolicy{max: 1}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Policy = pol })
	chat := func(model string) (*http.Response, []byte) {
		resp := h.post(t, "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`, authed())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, b := chat("anthropic.claude-opus-4-v1:0")
	if _, typ, _ := openAIError(t, b); resp.StatusCode != 403 || typ != "permission_error" {
		t.Errorf("disallowed model: %d %s", resp.StatusCode, b)
	}
	if resp, b := chat("amazon.nova-lite-v1:0"); resp.StatusCode != 200 {
		t.Fatalf("first call: %d %s", resp.StatusCode, b)
	}
	calls := h.creds.calls.Load()
	resp, b = chat("amazon.nova-lite-v1:0")
	if _, typ, code := openAIError(t, b); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || typ != "rate_limit_error" || code == nil || *code != "rate_limit_exceeded" {
		t.Errorf("throttled: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if h.creds.calls.Load() != calls {
		t.Error("a throttled call reached STS")
	}
}
