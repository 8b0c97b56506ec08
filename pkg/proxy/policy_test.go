package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// stubPolicy allows models without "opus", throttles after n requests,
// and remembers what was spent.
type stubPolicy struct {
	mu    sync.Mutex
	n     int
	max   int
	spent usage.Tokens
}

func (s *stubPolicy) Admit(id auth.Identity, op, model string) error {
	if strings.Contains(model, "opus") {
		return ErrModelNotAllowed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.n > s.max {
		return &ThrottledError{Scope: "identity", RetryAfter: 2500 * time.Millisecond}
	}
	return nil
}

func (s *stubPolicy) Spent(id auth.Identity, t usage.Tokens) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spent = s.spent.Add(t)
}

func (s *stubPolicy) Describe(id auth.Identity) any { return map[string]any{"models": "no opus"} }

func TestPolicyRefusals(t *testing.T) {
	pol := &stubPolicy{max: 1}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Policy = pol })
	if resp := h.post(t, "/model/anthropic.claude-opus-4-v1:0/converse", converseBody, authed()); resp.StatusCode != http.StatusForbidden {
		t.Errorf("disallowed model: status %d, want 403", resp.StatusCode)
	}
	if resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed()); resp.StatusCode != http.StatusOK {
		t.Errorf("first request: status %d, want 200", resp.StatusCode)
	}
	resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("X-Amzn-ErrorType") != "ThrottlingException" || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("over the limit: %d %q Retry-After %q, want 429 ThrottlingException 3", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), resp.Header.Get("Retry-After"))
	}
	if n := h.creds.calls.Load(); n != 1 {
		t.Errorf("credentials requested %d times, want 1 (refusals come before STS)", n)
	}
	waitFor(t, func() bool { pol.mu.Lock(); defer pol.mu.Unlock(); return pol.spent.Output > 0 })
}

func TestWhoAmI(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Policy = &stubPolicy{max: 10} })
	req, _ := http.NewRequest(http.MethodGet, h.gateway.URL+"/gateway/whoami", nil)
	req.Header = authed()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct {
		Identity struct{ User, Team, Method string }
		Session  struct {
			RoleARN      string `json:"role_arn"`
			SessionName  string `json:"session_name"`
			PrincipalARN string `json:"principal_arn"`
		}
		Policy map[string]any
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("whoami: %d %s", resp.StatusCode, body)
	}
	if got.Identity.User != "alice@acme.org" || got.Session.SessionName != "alice@acme.org" ||
		got.Session.PrincipalARN != "arn:aws:sts::123456789012:assumed-role/R/alice@acme.org" || got.Policy["models"] != "no opus" {
		t.Errorf("whoami = %s", body)
	}
	if strings.Contains(string(body), testKey) || strings.Contains(string(body), h.creds.creds.SecretAccessKey) {
		t.Errorf("whoami leaks a secret: %s", body)
	}
	if n := h.creds.calls.Load(); n != 0 {
		t.Errorf("whoami asked STS for credentials %d times", n)
	}
}
