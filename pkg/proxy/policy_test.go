package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/policy"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
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
		return policy.ErrModelNotAllowed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	if s.n > s.max {
		return &policy.ThrottledError{Scope: "identity", RetryAfter: 2500 * time.Millisecond}
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

// TestRefusalRecords: a refused request's usage record carries what the
// gateway had learned before refusing it, so the ledger says who was
// refused which model (and no session the gateway never resolved).
func TestRefusalRecords(t *testing.T) {
	const model = "amazon.nova-lite-v1:0"
	tests := []struct {
		name      string
		path      string
		body      string
		mutate    func(*Config, *credStub)
		status    int
		errorType string
		model     string
		session   string
	}{
		{"bad model", "/model/a%20b/converse", converseBody, nil, 400, "ValidationException", "", ""},
		{"resolver refusal", "/model/" + model + "/converse", converseBody, func(c *Config, _ *credStub) {
			c.Resolver = staticResolver{err: fmt.Errorf("tag value: %w", tenancy.ErrInexpressible)}
		}, 403, "AccessDeniedException", model, ""},
		{"model not allowed", "/model/anthropic.claude-opus-4-v1:0/converse", converseBody, func(c *Config, _ *credStub) {
			c.Policy = &stubPolicy{max: 10}
		}, 403, "AccessDeniedException", "anthropic.claude-opus-4-v1:0", "alice@acme.org"},
		{"throttled", "/model/" + model + "/converse", converseBody, func(c *Config, _ *credStub) {
			c.Policy = &stubPolicy{max: 0}
		}, 429, "ThrottlingException", model, "alice@acme.org"},
		{"metadata not stampable", "/model/" + model + "/converse", "not json", nil, 400, "ValidationException", model, "alice@acme.org"},
		{"no credentials", "/model/" + model + "/converse", converseBody, func(_ *Config, cs *credStub) {
			cs.err = fmt.Errorf("%w: rate exceeded", sessioncache.ErrThrottled)
		}, 503, "ServiceUnavailableException", model, "alice@acme.org"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &recordSink{}
			h := newHarness(t, fakeaws.Options{}, func(c *Config) {
				c.Usage = sink
				if tt.mutate != nil {
					tt.mutate(c, c.Credentials.(*credStub))
				}
			})
			if resp := h.post(t, tt.path, tt.body, authed()); resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			waitFor(t, func() bool { return len(sink.all()) == 1 })
			r := sink.all()[0]
			if r.Status != tt.status || r.ErrorType != tt.errorType || r.Model != tt.model || r.SessionName != tt.session || r.User != "alice@acme.org" {
				t.Errorf("record = status %d, error %q, model %q, session %q, user %q; want %d, %q, %q, %q, alice@acme.org",
					r.Status, r.ErrorType, r.Model, r.SessionName, r.User, tt.status, tt.errorType, tt.model, tt.session)
			}
			if n := len(h.fake.Invocations()); n != 0 {
				t.Errorf("Bedrock called %d times, want 0", n)
			}
		})
	}
}
