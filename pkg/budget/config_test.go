package budget

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

func usd(s string) pricing.Money {
	m, err := pricing.ParseMoney(s)
	if err != nil {
		panic(err)
	}
	return m
}

func good() Rule {
	return Rule{Name: "ds-monthly", Scope: ScopeTeam, Match: "data-science", Period: Monthly, LimitUSD: "5000", Mode: Hard}
}

func TestValidate(t *testing.T) {
	with := func(f func(*Rule)) Config {
		r := good()
		f(&r)
		return Config{r}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // the start of each problem, in order; nil: valid
	}{
		{"empty", nil, nil},
		{"good", Config{good()}, nil},
		{"each", with(func(r *Rule) { r.Match = "*" }), nil},
		{"user subject", with(func(r *Rule) { r.Scope, r.Match = ScopeUser, "https://idp.example|sub 1" }), nil},
		{"thresholds", with(func(r *Rule) { r.Thresholds = []float64{1, 0.5, 1.5} }), nil},
		{"no thresholds", with(func(r *Rule) { r.Thresholds = []float64{} }), nil},
		{"cents", with(func(r *Rule) { r.LimitUSD = "0.01" }), nil},
		{"all missing", Config{{}}, []string{
			"budgets[0].name: required",
			"budgets[0].scope: required",
			"budgets[0].match: required",
			"budgets[0].period: required",
			"budgets[0].limit_usd: required",
			"budgets[0].mode: required",
		}},
		{"bad enums", with(func(r *Rule) { r.Scope, r.Period, r.Mode = "org", "weekly", "strict" }), []string{
			`budgets[0].scope: must be user, team, tenant or cost_center, got "org"`,
			`budgets[0].period: must be daily or monthly, got "weekly"`,
			`budgets[0].mode: must be hard or soft, got "strict"`,
		}},
		{"bad name", with(func(r *Rule) { r.Name = "DS Monthly" }), []string{`budgets[0].name: must be 1-64 characters of [a-z0-9_-], got "DS Monthly"`}},
		{"long name", with(func(r *Rule) { r.Name = strings.Repeat("a", 65) }), []string{"budgets[0].name: must be 1-64"}},
		{"limit float syntax", with(func(r *Rule) { r.LimitUSD = "5e3" }), []string{`budgets[0].limit_usd: "5e3": not a decimal number of dollars`}},
		{"limit dollar sign", with(func(r *Rule) { r.LimitUSD = "$5" }), []string{`budgets[0].limit_usd: "$5"`}},
		{"limit zero", with(func(r *Rule) { r.LimitUSD = "0" }), []string{"budgets[0].limit_usd: must be more than 0, got 0"}},
		{"limit negative", with(func(r *Rule) { r.LimitUSD = "-1" }), []string{"budgets[0].limit_usd: must be more than 0, got -1"}},
		{"limit too large", with(func(r *Rule) { r.LimitUSD = "10000000" }), []string{"budgets[0].limit_usd: \"10000000\": amount too large"}},
		{"team match not a tag value", with(func(r *Rule) { r.Match = "data\nscience" }), []string{"budgets[0].match: must be a valid session tag value"}},
		{"user match spaces", with(func(r *Rule) { r.Scope, r.Match = ScopeUser, " alice" }), []string{`budgets[0].match: " alice": must have no surrounding space`}},
		{"thresholds bad", with(func(r *Rule) { r.Thresholds = []float64{0, 80, math.NaN(), 0.5, 0.5, -1} }), []string{
			"budgets[0].thresholds[0]: must be a fraction of the limit in (0, 10], got 0",
			"budgets[0].thresholds[1]: must be a fraction of the limit in (0, 10], got 80",
			"budgets[0].thresholds[2]: must be a fraction of the limit in (0, 10], got NaN",
			"budgets[0].thresholds[4]: 0.5 is also thresholds[3]",
			"budgets[0].thresholds[5]: must be a fraction",
		}},
		{"duplicate names", Config{good(), good(), good()}, []string{
			`budgets[1].name: "ds-monthly" is also the name of budgets[0]`,
			`budgets[2].name: "ds-monthly" is also the name of budgets[0]`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			configtest.Problems(t, err, tt.want)
			if _, nerr := New(tt.cfg, Options{}); (nerr == nil) != (err == nil) {
				t.Errorf("New error %v, Validate error %v: want both or neither", nerr, err)
			}
		})
	}
}

// TestYAML: the block decodes strictly, a limit written as a YAML number
// is read exactly as written, and absent thresholds take the default.
func TestYAML(t *testing.T) {
	const doc = `
- name: ds-monthly
  scope: team
  match: data-science
  period: monthly
  limit_usd: "5000"
  mode: hard
  thresholds: [0.5, 0.8, 1.0]
- name: each-user-daily
  scope: user
  match: "*"
  period: daily
  limit_usd: 0.1
  mode: soft
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Config{
		{Name: "ds-monthly", Scope: ScopeTeam, Match: "data-science", Period: Monthly, LimitUSD: "5000", Mode: Hard, Thresholds: []float64{0.5, 0.8, 1}},
		{Name: "each-user-daily", Scope: ScopeUser, Match: "*", Period: Daily, LimitUSD: "0.1", Mode: Soft},
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("decoded config (-want +got):\n%s", diff)
	}
	rules := compile(cfg)
	if got, want := rules[1].limit, usd("0.1"); got != want {
		t.Errorf("limit of 0.1 = %v picodollars, want %v", int64(got), int64(want))
	}
	var ats []string
	for _, th := range rules[1].thresholds {
		ats = append(ats, th.label+"="+th.at.String())
	}
	if got := strings.Join(ats, " "); got != "0.8=0.08 1=0.1" {
		t.Errorf("default thresholds of $0.1 = %s, want 0.8=0.08 1=0.1", got)
	}

	dec = yaml.NewDecoder(bytes.NewReader([]byte("- name: x\n  limit: 5\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil || !strings.Contains(err.Error(), "field limit not found") {
		t.Errorf("unknown key: Decode error %v, want field limit not found", err)
	}
}

func TestFraction(t *testing.T) {
	tests := []struct {
		limit string
		f     float64
		want  string
	}{
		{"5000", 0.8, "4000"},
		{"5000", 1, "5000"},
		{"5000", 0.5, "2500"},
		{"0.1", 0.3, "0.03"},
		{"9000000", 10, "9223372.036854775807"},   // saturates
		{"0.000000000001", 0.5, "0.000000000001"}, // rounded up
		{"1", 1.0 / 3, "0.333333333334"},          // 0.3333333333333333 of $1, rounded up
	}
	for _, tt := range tests {
		if got := fraction(usd(tt.limit), tt.f); got.String() != tt.want {
			t.Errorf("fraction(%s, %v) = %s, want %s", tt.limit, tt.f, got, tt.want)
		}
	}
}

func TestMatch(t *testing.T) {
	alice := auth.Identity{User: "alice", Team: "data-science", Tenant: "acme", CostCenter: "cc-1"}
	loner := auth.Identity{User: "bob"}
	tests := []struct {
		scope   Scope
		match   string
		id      auth.Identity
		subject string // "" : does not apply
	}{
		{ScopeUser, "alice", alice, "alice"},
		{ScopeUser, "bob", alice, ""},
		{ScopeUser, "*", loner, "bob"},
		{ScopeTeam, "data-science", alice, "data-science"},
		{ScopeTeam, "Data-Science", alice, ""}, // exact, as every rule key
		{ScopeTeam, "*", alice, "data-science"},
		{ScopeTeam, "*", loner, ""}, // no team: no team budget
		{ScopeTenant, "acme", alice, "acme"},
		{ScopeTenant, "*", loner, ""},
		{ScopeCostCenter, "cc-1", alice, "cc-1"},
		{ScopeCostCenter, "cc-2", alice, ""},
		{ScopeCostCenter, "*", alice, "cc-1"},
	}
	for _, tt := range tests {
		r := good()
		r.Scope, r.Match = tt.scope, tt.match
		got, ok := compile(Config{r})[0].subject(tt.id)
		if ok != (tt.subject != "") || got != tt.subject {
			t.Errorf("%s %q subject(%+v) = %q, %v; want %q", tt.scope, tt.match, tt.id, got, ok, tt.subject)
		}
	}
}
