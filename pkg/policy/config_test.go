package policy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/pkg/limits"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		// wantPaths are the YAML paths, relative to the policy block, of
		// the reported problems, in order; nil means valid.
		wantPaths []string
	}{
		{"zero", Config{}, nil},
		{"full valid", Config{
			Models: []string{"anthropic.*"}, Limits: limits.LimitRule{RequestsPerSecond: 1}, TenantLimits: limits.LimitRule{TokensPerMinute: 10},
			Tenants: map[string]Rule{"acme-corp": {Models: []string{"*"}}, "initech": {}},
			Teams:   map[string]Rule{"ml": {Limits: limits.LimitRule{RequestsPerSecond: 2, Burst: 4}}, "data science": {}},
		}, nil},
		{"longest model pattern", Config{Models: []string{strings.Repeat("m", maxModelPattern)}}, nil},
		{"bad default models and limits", Config{
			Models: []string{"ok", "", "a b", "\x00", "é", strings.Repeat("m", maxModelPattern+1)},
			Limits: limits.LimitRule{RequestsPerSecond: -1, Burst: -1}, TenantLimits: limits.LimitRule{TokensPerMinute: -1},
		}, []string{"models[1]", "models[2]", "models[3]", "models[4]", "models[5]",
			"limits.requests_per_second", "limits.burst", "tenant_limits.tokens_per_minute"}},
		{"bad tenant rules", Config{Tenants: map[string]Rule{
			"":      {},
			"a":     {Models: []string{""}},
			"b":     {Limits: limits.LimitRule{Burst: -2}},
			"aws:c": {},
			"d,e":   {Models: []string{"x y"}, Limits: limits.LimitRule{TokensPerMinute: -5}},
		}}, []string{
			"tenants.", "tenants.a.models[0]", "tenants.aws", "tenants.b.limits.burst",
			"tenants.d,e", "tenants.d,e.models[0]", "tenants.d,e.limits.tokens_per_minute",
		}},
		{"bad team rules", Config{Teams: map[string]Rule{
			"ds":  {Models: []string{"ok", "\x00"}},
			"o,k": {},
			"ml":  {Limits: limits.LimitRule{RequestsPerSecond: -1}},
		}}, []string{"teams.ds.models[1]", "teams.ml.limits.requests_per_second", "teams.o,k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if diff := cmp.Diff(tt.wantPaths, configtest.Paths(err)); diff != "" {
				t.Errorf("Validate() = %v; problem paths mismatch (-want +got):\n%s", err, diff)
			}
			p, nerr := New(tt.cfg, newLimiter(t, nil))
			if (nerr == nil) != (tt.wantPaths == nil) || (nerr == nil) != (p != nil) {
				t.Errorf("New() = %v, %v; want error iff Validate fails (%v)", p, nerr, err)
			}
		})
	}
}

// TestValidateMessages: problems read well once the loader prefixes
// "policy.".
func TestValidateMessages(t *testing.T) {
	err := Config{
		Tenants: map[string]Rule{"acme": {Limits: limits.LimitRule{Burst: -1}}},
		Teams:   map[string]Rule{"o,k": {}},
	}.Validate()
	for _, want := range []string{
		"tenants.acme.limits.burst: must be >= 0, got -1",
		`teams.o,k: team name "o,k": must be a valid session tag value: may contain only`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}

func TestNew(t *testing.T) {
	if p, err := New(Config{}, nil); err == nil || p != nil {
		t.Errorf("New(zero config, nil limiter) = %v, %v; want error", p, err)
	}
	_, err := New(Config{Models: []string{""}}, newLimiter(t, nil))
	if err == nil || !strings.HasPrefix(err.Error(), "policy config: models[0]: ") {
		t.Errorf("New(bad config) error = %v, want it to start with %q", err, "policy config: models[0]: ")
	}
}

// TestConfigYAML: the yaml tags of Config, Rule and limits.LimitRule are
// the schema of the policy block.
func TestConfigYAML(t *testing.T) {
	doc := `
models: ["anthropic.claude-3-haiku-*"]
limits: {requests_per_second: 0.5, burst: 2, tokens_per_minute: 1000}
tenant_limits: {requests_per_second: 10}
tenants:
  acme: {models: ["us.anthropic.*"], limits: {tokens_per_minute: 50}}
teams:
  ml:
    models: ["anthropic.claude-*", "*amazon.titan-*"]
    limits: {burst: 3, requests_per_second: 1}
`
	var got Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("Decode() error = %v", err)
	}
	want := Config{
		Models:       []string{"anthropic.claude-3-haiku-*"},
		Limits:       limits.LimitRule{RequestsPerSecond: 0.5, Burst: 2, TokensPerMinute: 1000},
		TenantLimits: limits.LimitRule{RequestsPerSecond: 10},
		Tenants:      map[string]Rule{"acme": {Models: []string{"us.anthropic.*"}, Limits: limits.LimitRule{TokensPerMinute: 50}}},
		Teams: map[string]Rule{"ml": {
			Models: []string{"anthropic.claude-*", "*amazon.titan-*"},
			Limits: limits.LimitRule{RequestsPerSecond: 1, Burst: 3},
		}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode() mismatch (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}

	// Session keys belong to pkg/tenancy's block, not this one.
	for _, key := range []string{"role_arn: x", "tenants: {a: {role_arn: x}}", "teams: {a: {session_name: x}}", "limits: {rps: 1}"} {
		dec := yaml.NewDecoder(strings.NewReader(key))
		dec.KnownFields(true)
		var c Config
		if err := dec.Decode(&c); err == nil {
			t.Errorf("Decode(%q) error = nil, want unknown field", key)
		}
	}
}
