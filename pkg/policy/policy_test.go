package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// newLimiter returns a Limiter on clk (a fixed clock when nil).
func newLimiter(t *testing.T, clk *fakeclock.Clock) *limits.Limiter {
	t.Helper()
	if clk == nil {
		clk = fakeclock.New()
	}
	l, err := limits.New(limits.Config{Now: clk.Now})
	if err != nil {
		t.Fatalf("limits.New() error = %v", err)
	}
	return l
}

func mustPolicy(t *testing.T, cfg Config, l Limiter) *Policy {
	t.Helper()
	if l == nil {
		l = newLimiter(t, nil)
	}
	p, err := New(cfg, l)
	if err != nil {
		t.Fatalf("New(%+v) error = %v", cfg, err)
	}
	return p
}

const (
	haiku  = "anthropic.claude-3-haiku-20240307-v1:0"
	sonnet = "anthropic.claude-3-5-sonnet-20240620-v1:0"
)

func TestModelAllowed(t *testing.T) {
	p := mustPolicy(t, Config{
		Models: []string{"anthropic.claude-3-haiku-*"},
		Teams: map[string]Rule{
			"ml":   {Models: []string{"anthropic.claude-*", "*amazon.titan-*"}},
			"open": {Limits: limits.LimitRule{RequestsPerSecond: 1}}, // no list: inherits the default
		},
		Tenants: map[string]Rule{
			"acme": {Models: []string{"us.anthropic.*", "arn:aws:bedrock:*:123456789012:application-inference-profile/*"}},
		},
	}, nil)
	pAll := mustPolicy(t, Config{}, nil)
	tests := []struct {
		p     *Policy
		id    auth.Identity
		model string
		want  bool
	}{
		{pAll, auth.Identity{User: "u"}, "anything.at-all", true},
		{p, auth.Identity{User: "u"}, haiku, true},
		{p, auth.Identity{User: "u"}, sonnet, false},
		{p, auth.Identity{User: "u"}, "us." + haiku, false},
		{p, auth.Identity{User: "u", Team: "open"}, haiku, true},
		{p, auth.Identity{User: "u", Team: "open"}, sonnet, false},
		{p, auth.Identity{User: "u", Team: "ml"}, sonnet, true},
		{p, auth.Identity{User: "u", Team: "ml"}, "us.amazon.titan-text-express-v1", true},
		{p, auth.Identity{User: "u", Team: "ml"}, "meta.llama3", false},
		{p, auth.Identity{User: "u", Team: "ml"}, "anthropic.claude", false},
		{p, auth.Identity{User: "u", Team: "ml", Tenant: "acme"}, sonnet, false}, // tenant list wins
		{p, auth.Identity{User: "u", Team: "ml", Tenant: "acme"}, "us." + sonnet, true},
		{p, auth.Identity{User: "u", Tenant: "acme"}, "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", true},
		{p, auth.Identity{User: "u", Tenant: "acme"}, "arn:aws:bedrock:us-east-1:999999999999:application-inference-profile/abc", false},
		{p, auth.Identity{User: "u", Tenant: "initech"}, haiku, true}, // no rule: default list
		{p, auth.Identity{User: "u"}, "", false},
	}
	for _, tt := range tests {
		if got := tt.p.ModelAllowed(tt.id, tt.model); got != tt.want {
			t.Errorf("ModelAllowed(team %q tenant %q, %q) = %v, want %v", tt.id.Team, tt.id.Tenant, tt.model, got, tt.want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"a", "a", true},
		{"a", "ab", false},
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"a*", "a", true},
		{"a*", "ba", false},
		{"*a", "ba", true},
		{"*a", "ab", false},
		{"a*b", "ab", true},
		{"a*b", "axxb", true},
		{"a*b", "axxbc", false},
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},
		{"ab*ba", "aba", false}, // prefix and suffix must not overlap
		{"**", "x", true},
		{"a.b", "aXb", false}, // '.' is literal
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

// FuzzGlobMatch checks globMatch against the equivalent regular
// expression on untrusted model IDs.
func FuzzGlobMatch(f *testing.F) {
	f.Add("anthropic.claude-*", "anthropic.claude-3-haiku")
	f.Add("*anthropic.*", "us.anthropic.claude")
	f.Add("ab*ba", "aba")
	f.Add("a*b*c", "acb")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`^(?s:` + strings.Join(parts, ".*") + `)$`)
		if err != nil {
			t.Skip()
		}
		if !utf8.ValidString(pattern) || !utf8.ValidString(s) {
			t.Skip() // regexp matches runes; globMatch compares bytes
		}
		if got, want := globMatch(pattern, s), re.MatchString(s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", pattern, s, got, want)
		}
	})
}

func TestLimits(t *testing.T) {
	def := limits.LimitRule{RequestsPerSecond: 10, Burst: 20, TokensPerMinute: 100000}
	p := mustPolicy(t, Config{
		Limits:       def,
		TenantLimits: limits.LimitRule{RequestsPerSecond: 100},
		Teams: map[string]Rule{
			"ml":    {Limits: limits.LimitRule{TokensPerMinute: 500000}},
			"batch": {Limits: limits.LimitRule{RequestsPerSecond: 1}},
		},
		Tenants: map[string]Rule{
			"acme": {Limits: limits.LimitRule{RequestsPerSecond: 5, Burst: 5, TokensPerMinute: 1000}},
		},
	}, nil)
	tests := []struct {
		name         string
		id           auth.Identity
		wantIdentity limits.LimitRule
		wantTenant   limits.LimitRule
	}{
		{"defaults, no tenant", auth.Identity{User: "u"}, def, limits.LimitRule{}},
		{"default tenant limit", auth.Identity{User: "u", Tenant: "initech"}, def, limits.LimitRule{RequestsPerSecond: 100}},
		{"team overrides tokens only", auth.Identity{User: "u", Team: "ml"},
			limits.LimitRule{RequestsPerSecond: 10, Burst: 20, TokensPerMinute: 500000}, limits.LimitRule{}},
		{"team overrides rate and burst together", auth.Identity{User: "u", Team: "batch"},
			limits.LimitRule{RequestsPerSecond: 1, TokensPerMinute: 100000}, limits.LimitRule{}},
		{"tenant rule", auth.Identity{User: "u", Team: "ml", Tenant: "acme"},
			limits.LimitRule{RequestsPerSecond: 10, Burst: 20, TokensPerMinute: 500000},
			limits.LimitRule{RequestsPerSecond: 5, Burst: 5, TokensPerMinute: 1000}},
		{"a tenant's name as a team is not the tenant", auth.Identity{User: "u", Team: "acme"}, def, limits.LimitRule{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotID, gotTenant := p.Limits(tt.id)
			if diff := cmp.Diff(tt.wantIdentity, gotID); diff != "" {
				t.Errorf("Limits(%+v) identity mismatch (-want +got):\n%s", tt.id, diff)
			}
			if diff := cmp.Diff(tt.wantTenant, gotTenant); diff != "" {
				t.Errorf("Limits(%+v) tenant mismatch (-want +got):\n%s", tt.id, diff)
			}
		})
	}
}

// outcome renders Admit's result as "ok", "model" or
// "throttled(<scope>, <retry after>)", for compact expectations.
func outcome(err error) string {
	var te *ThrottledError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrModelNotAllowed):
		return "model"
	case errors.As(err, &te):
		return fmt.Sprintf("throttled(%s, %v)", te.Scope, te.RetryAfter)
	default:
		return "error: " + err.Error()
	}
}

// admitAll calls Admit for each identity in turn and returns the outcomes.
func admitAll(p *Policy, model string, ids ...auth.Identity) []string {
	var got []string
	for _, id := range ids {
		got = append(got, outcome(p.Admit(id, "Converse", model)))
	}
	return got
}

// TestAdmitIdentityLimit: a caller's request limit refuses the request
// beyond its burst with the wait until the bucket refills (the proxy's
// 429 with Retry-After), and admits again once it has.
func TestAdmitIdentityLimit(t *testing.T) {
	clk := fakeclock.New()
	p := mustPolicy(t, Config{
		Limits:       limits.LimitRule{RequestsPerSecond: 0.01, Burst: 2},
		TenantLimits: limits.LimitRule{RequestsPerSecond: 0.01, Burst: 3},
	}, newLimiter(t, clk))
	alice := auth.Identity{User: "alice@acme.org"}
	bob := auth.Identity{User: "bob@acme.org"}
	want := []string{"ok", "ok", "throttled(identity or tenant, 1m40s)", "ok"}
	if diff := cmp.Diff(want, admitAll(p, haiku, alice, alice, alice, bob)); diff != "" {
		t.Errorf("Admit outcomes mismatch (-want +got):\n%s", diff)
	}
	var te *ThrottledError
	if err := p.Admit(alice, "Converse", haiku); !errors.As(err, &te) || te.RetryAfter <= 0 {
		t.Errorf("Admit(alice) = %v, want *ThrottledError with RetryAfter > 0", err)
	}
	clk.Advance(99 * time.Second)
	if got := outcome(p.Admit(alice, "Converse", haiku)); got != "throttled(identity or tenant, 1s)" {
		t.Errorf("Admit(alice) 99s later = %s, want throttled(identity or tenant, 1s)", got)
	}
	clk.Advance(time.Second)
	if got := outcome(p.Admit(alice, "Converse", haiku)); got != "ok" {
		t.Errorf("Admit(alice) 100s later = %s, want ok", got)
	}
}

// TestAdmitTenantLimitShared: different users of one tenant share its
// budget, while another tenant's users do not.
func TestAdmitTenantLimitShared(t *testing.T) {
	p := mustPolicy(t, Config{
		Limits:       limits.LimitRule{RequestsPerSecond: 0.01, Burst: 2},
		TenantLimits: limits.LimitRule{RequestsPerSecond: 0.01, Burst: 3},
	}, nil)
	user := func(tenant string, i int) auth.Identity {
		return auth.Identity{User: fmt.Sprintf("saas/%s/u%d", tenant, i), Tenant: tenant, Platform: "saas", Method: auth.MethodTrustedHeader}
	}
	got := admitAll(p, haiku, user("acme-corp", 0), user("acme-corp", 1), user("acme-corp", 2), user("acme-corp", 3), user("globex", 0))
	want := []string{"ok", "ok", "ok", "throttled(identity or tenant, 1m40s)", "ok"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Admit outcomes mismatch (-want +got):\n%s", diff)
	}
}

// TestAdmitRefusalTakesNothing: a request refused by the tenant's limit
// does not use up the caller's own, and a refused model uses up neither.
func TestAdmitRefusalTakesNothing(t *testing.T) {
	clk := fakeclock.New()
	p := mustPolicy(t, Config{
		Models:       []string{"anthropic.*"},
		Limits:       limits.LimitRule{RequestsPerSecond: 0.001, Burst: 2},
		TenantLimits: limits.LimitRule{RequestsPerSecond: 1, Burst: 2},
	}, newLimiter(t, clk))
	u := func(name string) auth.Identity { return auth.Identity{User: name, Tenant: "acme"} }
	// u0 and u1 empty the tenant's bucket; u2 is refused three times by
	// the tenant, and a forbidden model is refused without touching any
	// bucket.
	got := admitAll(p, haiku, u("u0"), u("u1"), u("u2"), u("u2"), u("u2"))
	got = append(got, admitAll(p, "meta.llama3", u("u2"), u("u2"), u("u2"))...)
	want := []string{"ok", "ok", "throttled(identity or tenant, 1s)", "throttled(identity or tenant, 1s)", "throttled(identity or tenant, 1s)",
		"model", "model", "model"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Admit outcomes mismatch (-want +got):\n%s", diff)
	}
	// 2s refill the tenant (2 requests) but not u2's own bucket (0.002
	// requests): u2 still has its whole burst of 2.
	clk.Advance(2 * time.Second)
	got = admitAll(p, haiku, u("u2"), u("u2"), u("u2"))
	if want := []string{"ok", "ok", "throttled(identity or tenant, 16m40s)"}; !cmp.Equal(want, got) {
		t.Errorf("Admit(u2) after refill = %v, want %v", got, want)
	}
}

// TestAdmitModelNotAllowed: a model outside the allow-list is refused with
// ErrModelNotAllowed; an operation without a model skips the list.
func TestAdmitModelNotAllowed(t *testing.T) {
	p := mustPolicy(t, Config{
		Models: []string{"anthropic.claude-3-haiku-*"},
		Teams:  map[string]Rule{"ml": {Models: []string{"*anthropic.*"}}},
	}, nil)
	tests := []struct {
		id    auth.Identity
		model string
		want  error
	}{
		{auth.Identity{User: "u"}, haiku, nil},
		{auth.Identity{User: "u"}, sonnet, ErrModelNotAllowed},
		{auth.Identity{User: "u"}, "", nil},
		{auth.Identity{User: "u", Team: "ml"}, "us." + sonnet, nil},
		{auth.Identity{User: "u", Team: "ml"}, "amazon.titan-text-express-v1", ErrModelNotAllowed},
	}
	for _, tt := range tests {
		err := p.Admit(tt.id, "Converse", tt.model)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("Admit(team %q, %q) = %v, want %v", tt.id.Team, tt.model, err, tt.want)
		}
	}
}

// TestAdmitTokenBudget: the tokens reported to Spent (all four kinds)
// drain the caller's tokens-per-minute budget; once it is in debt Admit
// refuses until it refills.
func TestAdmitTokenBudget(t *testing.T) {
	clk := fakeclock.New()
	p := mustPolicy(t, Config{Limits: limits.LimitRule{TokensPerMinute: 8}}, newLimiter(t, clk))
	alice := auth.Identity{User: "alice"}
	// Each call costs 5 tokens: the first leaves 3, the second runs the
	// budget into debt (-2), the third is refused until 3 tokens refill
	// at 8 per minute: 22.5s.
	var got []string
	for _, spent := range []usage.Tokens{{Input: 1, Output: 4}, {CacheRead: 2, CacheWrite: 3}, {}} {
		err := p.Admit(alice, "Converse", haiku)
		got = append(got, outcome(err))
		if err == nil {
			p.Spent(alice, spent)
		}
	}
	if want := []string{"ok", "ok", "throttled(identity, 22.5s)"}; !cmp.Equal(want, got) {
		t.Errorf("Admit outcomes = %v, want %v", got, want)
	}
	clk.Advance(22500 * time.Millisecond)
	if got := outcome(p.Admit(alice, "Converse", haiku)); got != "ok" {
		t.Errorf("Admit(alice) after refill = %s, want ok", got)
	}
	if got := outcome(p.Admit(auth.Identity{User: "bob"}, "Converse", haiku)); got != "ok" {
		t.Errorf("Admit(bob) = %s, want ok (budgets are per caller)", got)
	}
}

// TestAdmitTenantTokenBudget: a tenant's token budget is shared: one
// caller's spending refuses another caller of the tenant.
func TestAdmitTenantTokenBudget(t *testing.T) {
	p := mustPolicy(t, Config{
		Limits:  limits.LimitRule{TokensPerMinute: 1000},
		Tenants: map[string]Rule{"acme": {Limits: limits.LimitRule{TokensPerMinute: 60}}},
	}, nil)
	u1 := auth.Identity{User: "u1", Tenant: "acme"}
	u2 := auth.Identity{User: "u2", Tenant: "acme"}
	if err := p.Admit(u1, "Converse", haiku); err != nil {
		t.Fatalf("Admit(u1) = %v", err)
	}
	p.Spent(u1, usage.Tokens{Input: 60, Output: 1})
	if got := admitAll(p, haiku, u2, auth.Identity{User: "u3", Tenant: "globex"}); !cmp.Equal(got, []string{"throttled(tenant, 2s)", "ok"}) {
		t.Errorf("Admit(u2 of acme, u3 of globex) = %v, want [throttled(tenant, 2s) ok]", got)
	}
}

// stubLimiter answers Admit with verdict and records what it was asked.
type stubLimiter struct {
	verdict limits.Verdict
	admits  [][]limits.Check
}

func (s *stubLimiter) Admit(checks ...limits.Check) limits.Verdict {
	s.admits = append(s.admits, checks)
	return s.verdict
}

func (s *stubLimiter) Spend(string, limits.LimitRule, int64) {}

// TestAdmitVerdicts: Admit asks its Limiter once, with the caller's and
// the tenant's checks, and turns the verdict into the refusal's scope and
// Retry-After (any Limiter: pkg/fleet's answers from Redis).
func TestAdmitVerdicts(t *testing.T) {
	cfg := Config{Limits: limits.LimitRule{RequestsPerSecond: 1}, TenantLimits: limits.LimitRule{TokensPerMinute: 60}}
	id := auth.Identity{User: "alice", Tenant: "acme"}
	tests := []struct {
		verdict limits.Verdict
		want    string
	}{
		{limits.Verdict{OK: true}, "ok"},
		{limits.Verdict{RetryAfter: 1500 * time.Millisecond}, "throttled(identity or tenant, 1.5s)"},
		{limits.Verdict{RetryAfter: time.Minute, TokenKey: "id:alice"}, "throttled(identity, 1m0s)"},
		{limits.Verdict{RetryAfter: 2 * time.Second, TokenKey: "tenant:acme"}, "throttled(tenant, 2s)"},
	}
	for _, tt := range tests {
		l := &stubLimiter{verdict: tt.verdict}
		if got := outcome(mustPolicy(t, cfg, l).Admit(id, "Converse", haiku)); got != tt.want {
			t.Errorf("Admit() with verdict %+v = %s, want %s", tt.verdict, got, tt.want)
		}
		want := [][]limits.Check{{{Key: "id:alice", Rule: cfg.Limits}, {Key: "tenant:acme", Rule: cfg.TenantLimits}}}
		if diff := cmp.Diff(want, l.admits); diff != "" {
			t.Errorf("Limiter.Admit calls mismatch (-want +got):\n%s", diff)
		}
	}
}

// TestLimiterOutlivesPolicy: a new Policy on the same Limiter (a config
// reload) keeps what callers have used.
func TestLimiterOutlivesPolicy(t *testing.T) {
	cfg := Config{Limits: limits.LimitRule{RequestsPerSecond: 0.01, Burst: 1}}
	l := newLimiter(t, nil)
	alice := auth.Identity{User: "alice"}
	if err := mustPolicy(t, cfg, l).Admit(alice, "Converse", haiku); err != nil {
		t.Fatalf("Admit() = %v", err)
	}
	if got := outcome(mustPolicy(t, cfg, l).Admit(alice, "Converse", haiku)); got != "throttled(identity or tenant, 1m40s)" {
		t.Errorf("Admit() after reload = %s, want throttled(identity or tenant, 1m40s)", got)
	}
}

func TestDescribe(t *testing.T) {
	p := mustPolicy(t, Config{
		Limits:       limits.LimitRule{RequestsPerSecond: 2, Burst: 4},
		TenantLimits: limits.LimitRule{TokensPerMinute: 1000},
		Teams:        map[string]Rule{"ml": {Models: []string{"anthropic.*", "*amazon.titan-*"}, Limits: limits.LimitRule{TokensPerMinute: 50}}},
	}, nil)
	tests := []struct {
		id   auth.Identity
		want string
	}{
		{auth.Identity{User: "u"}, `{"models":["*"],"limits":{"requests_per_second":2,"burst":4},"tenant_limits":{}}`},
		{auth.Identity{User: "u", Team: "ml", Tenant: "acme"},
			`{"models":["anthropic.*","*amazon.titan-*"],"limits":{"requests_per_second":2,"burst":4,"tokens_per_minute":50},"tenant_limits":{"tokens_per_minute":1000}}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(p.Describe(tt.id))
		if err != nil {
			t.Fatalf("json.Marshal(Describe(%+v)) error = %v", tt.id, err)
		}
		if string(b) != tt.want {
			t.Errorf("Describe(%+v) = %s, want %s", tt.id, b, tt.want)
		}
	}

	// The description is the caller's to keep: changing it does not
	// change the policy.
	ml := auth.Identity{User: "u", Team: "ml"}
	d := p.Describe(ml).(description)
	d.Models[0] = "*"
	if p.ModelAllowed(ml, "meta.llama3") {
		t.Error("changing Describe's models changed the policy's allow-list")
	}
}
