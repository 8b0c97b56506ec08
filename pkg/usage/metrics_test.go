package usage

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/configtest"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

var testMetricsConfig = MetricsConfig{
	Teams:   []string{"ml", "search"},
	Tenants: []string{"acme"},
	Models:  []string{"anthropic.claude-3-haiku-20240307-v1:0"},
}

func newTestMetrics(t *testing.T, cfg MetricsConfig) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	cfg.Registerer = reg
	m, err := NewMetrics(cfg)
	if err != nil {
		t.Fatalf("NewMetrics() = %v", err)
	}
	return m, reg
}

// scrape returns what /metrics would serve.
func scrape(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(g, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape status = %d, want 200: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// disconnectsText is the client_disconnects_total family with the given
// counts and zero for every other operation.
func disconnectsText(counts map[string]int) string {
	var b strings.Builder
	b.WriteString("# HELP bedrock_gateway_client_disconnects_total Requests whose client went away before the answer was complete, by operation.\n")
	b.WriteString("# TYPE bedrock_gateway_client_disconnects_total counter\n")
	for _, op := range append(append([]string(nil), Operations...), "other") {
		fmt.Fprintf(&b, "bedrock_gateway_client_disconnects_total{operation=%q} %d\n", op, counts[op])
	}
	return b.String()
}

func TestMetricsRecord(t *testing.T) {
	const haiku = "anthropic.claude-3-haiku-20240307-v1:0"
	m, reg := newTestMetrics(t, testMetricsConfig)
	for _, r := range []Record{
		{Operation: "Converse", Model: haiku, Team: "ml", Tenant: "acme", Status: 200,
			Tokens: Tokens{Input: 100, Output: 20, CacheRead: 50}},
		{Operation: "Converse", Model: haiku, Team: "ml", Tenant: "acme", Status: 200,
			Tokens: Tokens{Input: 1, Output: 2, CacheWrite: 3}},
		// Values outside the allowed sets become "other"; empty ones "none".
		{Operation: "ConverseStream", Model: "meta.llama3-8b-instruct-v1:0", Team: "finance", Tenant: "globex",
			User: "bob@globex.com", Status: 200, Tokens: Tokens{Input: 7}, ClientGone: true},
		{Operation: "ConverseStream", Model: haiku, Team: "search", Status: 499, ClientGone: true},
		// Refused before routing: no operation, model or identity.
		{Status: 401},
		{Operation: "DeleteEverything", Status: 404},
		{Operation: "InvokeModel", Model: haiku, Team: "ml", Tenant: "acme", Status: 429},
		{Operation: "InvokeModel", Model: haiku, Team: "ml", Tenant: "acme", Status: 503},
		{Operation: "InvokeModel", Model: haiku, Team: "ml", Tenant: "acme", Status: 0},
		// A negative count cannot come from Bedrock; it must not panic.
		{Operation: "CountTokens", Model: haiku, Team: "ml", Tenant: "acme", Status: 200, Tokens: Tokens{Input: -5}},
	} {
		m.Record(r)
	}
	want := `
# HELP bedrock_gateway_requests_total Requests handled by the gateway, by operation, model, team, tenant and HTTP status class.
# TYPE bedrock_gateway_requests_total counter
bedrock_gateway_requests_total{code="2xx",model="anthropic.claude-3-haiku-20240307-v1:0",operation="Converse",team="ml",tenant="acme"} 2
bedrock_gateway_requests_total{code="2xx",model="other",operation="ConverseStream",team="other",tenant="other"} 1
bedrock_gateway_requests_total{code="4xx",model="anthropic.claude-3-haiku-20240307-v1:0",operation="ConverseStream",team="search",tenant="none"} 1
bedrock_gateway_requests_total{code="4xx",model="none",operation="other",team="none",tenant="none"} 2
bedrock_gateway_requests_total{code="4xx",model="anthropic.claude-3-haiku-20240307-v1:0",operation="InvokeModel",team="ml",tenant="acme"} 1
bedrock_gateway_requests_total{code="5xx",model="anthropic.claude-3-haiku-20240307-v1:0",operation="InvokeModel",team="ml",tenant="acme"} 1
bedrock_gateway_requests_total{code="other",model="anthropic.claude-3-haiku-20240307-v1:0",operation="InvokeModel",team="ml",tenant="acme"} 1
bedrock_gateway_requests_total{code="2xx",model="anthropic.claude-3-haiku-20240307-v1:0",operation="CountTokens",team="ml",tenant="acme"} 1
# HELP bedrock_gateway_tokens_total Tokens Bedrock reported, by operation, model, team, tenant and type (input, output, cache_read, cache_write).
# TYPE bedrock_gateway_tokens_total counter
bedrock_gateway_tokens_total{model="anthropic.claude-3-haiku-20240307-v1:0",operation="Converse",team="ml",tenant="acme",type="input"} 101
bedrock_gateway_tokens_total{model="anthropic.claude-3-haiku-20240307-v1:0",operation="Converse",team="ml",tenant="acme",type="output"} 22
bedrock_gateway_tokens_total{model="anthropic.claude-3-haiku-20240307-v1:0",operation="Converse",team="ml",tenant="acme",type="cache_read"} 50
bedrock_gateway_tokens_total{model="anthropic.claude-3-haiku-20240307-v1:0",operation="Converse",team="ml",tenant="acme",type="cache_write"} 3
bedrock_gateway_tokens_total{model="other",operation="ConverseStream",team="other",tenant="other",type="input"} 7
` + disconnectsText(map[string]int{"ConverseStream": 2})
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"bedrock_gateway_requests_total", "bedrock_gateway_tokens_total", "bedrock_gateway_client_disconnects_total"); err != nil {
		t.Error(err)
	}
	// No latency was recorded, so the histograms have no series yet.
	if n, err := testutil.GatherAndCount(reg, "bedrock_gateway_request_duration_seconds", "bedrock_gateway_time_to_first_byte_seconds"); err != nil || n != 0 {
		t.Errorf("histogram series = %d, %v, want 0", n, err)
	}
}

// TestMetricsStreamCuts: a stream Bedrock cut is counted by operation, as
// a 2xx request (the client got HTTP 200) with the tokens metered before
// the cut; other error types and client disconnects are not cuts.
func TestMetricsStreamCuts(t *testing.T) {
	m, reg := newTestMetrics(t, testMetricsConfig)
	for _, r := range []Record{
		{Operation: "InvokeModelWithResponseStream", Status: 200, ErrorType: ErrorUpstreamStreamCut, Tokens: Tokens{Input: 12, Output: 1}},
		{Operation: "InvokeModelWithResponseStream", Status: 200, ErrorType: ErrorUpstreamStreamCut},
		{Operation: "ConverseStream", Status: 200, ErrorType: "modelStreamErrorException"},
		{Operation: "ConverseStream", Status: 200, ClientGone: true},
		{Operation: "ConverseStream", Status: 200, ErrorType: "StreamIdleTimeout"},
	} {
		m.Record(r)
	}
	want := `
# HELP bedrock_gateway_upstream_stream_cuts_total Event streams Bedrock ended before finishing them, after HTTP 200 (connection closed or reset, or ended inside a frame), by operation.
# TYPE bedrock_gateway_upstream_stream_cuts_total counter
bedrock_gateway_upstream_stream_cuts_total{operation="ConverseStream"} 0
bedrock_gateway_upstream_stream_cuts_total{operation="InvokeModelWithResponseStream"} 2
# HELP bedrock_gateway_requests_total Requests handled by the gateway, by operation, model, team, tenant and HTTP status class.
# TYPE bedrock_gateway_requests_total counter
bedrock_gateway_requests_total{code="2xx",model="none",operation="ConverseStream",team="none",tenant="none"} 3
bedrock_gateway_requests_total{code="2xx",model="none",operation="InvokeModelWithResponseStream",team="none",tenant="none"} 2
# HELP bedrock_gateway_tokens_total Tokens Bedrock reported, by operation, model, team, tenant and type (input, output, cache_read, cache_write).
# TYPE bedrock_gateway_tokens_total counter
bedrock_gateway_tokens_total{model="none",operation="InvokeModelWithResponseStream",team="none",tenant="none",type="input"} 12
bedrock_gateway_tokens_total{model="none",operation="InvokeModelWithResponseStream",team="none",tenant="none",type="output"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"bedrock_gateway_upstream_stream_cuts_total", "bedrock_gateway_requests_total", "bedrock_gateway_tokens_total"); err != nil {
		t.Error(err)
	}
}

func TestMetricsHistograms(t *testing.T) {
	m, reg := newTestMetrics(t, testMetricsConfig)
	m.Record(Record{Operation: "ConverseStream", Status: 200, Latency: 12 * time.Second, TimeToFirstByte: 400 * time.Millisecond})
	m.Record(Record{Operation: "ConverseStream", Status: 200, Latency: 400 * time.Second}) // past the last bucket; no first byte
	m.Record(Record{Operation: "Converse", Status: 200, LatencyMS: 75, TTFBMS: 75})        // from the ms fields
	want := `
# HELP bedrock_gateway_request_duration_seconds Time from request arrival to the end of the answer, by operation.
# TYPE bedrock_gateway_request_duration_seconds histogram
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="0.05"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="0.1"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="0.25"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="0.5"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="1"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="2.5"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="5"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="10"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="20"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="30"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="60"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="120"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="300"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="Converse",le="+Inf"} 1
bedrock_gateway_request_duration_seconds_sum{operation="Converse"} 0.075
bedrock_gateway_request_duration_seconds_count{operation="Converse"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="0.05"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="0.1"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="0.25"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="0.5"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="1"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="2.5"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="5"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="10"} 0
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="20"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="30"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="60"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="120"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="300"} 1
bedrock_gateway_request_duration_seconds_bucket{operation="ConverseStream",le="+Inf"} 2
bedrock_gateway_request_duration_seconds_sum{operation="ConverseStream"} 412
bedrock_gateway_request_duration_seconds_count{operation="ConverseStream"} 2
# HELP bedrock_gateway_time_to_first_byte_seconds Time from request arrival to the first byte of the answer sent to the client, by operation.
# TYPE bedrock_gateway_time_to_first_byte_seconds histogram
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="0.05"} 0
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="0.1"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="0.25"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="0.5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="1"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="2.5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="10"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="20"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="30"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="60"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="120"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="300"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="Converse",le="+Inf"} 1
bedrock_gateway_time_to_first_byte_seconds_sum{operation="Converse"} 0.075
bedrock_gateway_time_to_first_byte_seconds_count{operation="Converse"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="0.05"} 0
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="0.1"} 0
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="0.25"} 0
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="0.5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="1"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="2.5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="5"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="10"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="20"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="30"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="60"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="120"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="300"} 1
bedrock_gateway_time_to_first_byte_seconds_bucket{operation="ConverseStream",le="+Inf"} 1
bedrock_gateway_time_to_first_byte_seconds_sum{operation="ConverseStream"} 0.4
bedrock_gateway_time_to_first_byte_seconds_count{operation="ConverseStream"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"bedrock_gateway_request_duration_seconds", "bedrock_gateway_time_to_first_byte_seconds"); err != nil {
		t.Error(err)
	}
}

func TestLabelValues(t *testing.T) {
	set := newLabelSet([]string{"ml"})
	tests := []struct {
		name string
		fn   func(string) string
		in   string
		want string
	}{
		{"allowed", set.value, "ml", "ml"},
		{"not allowed", set.value, "ML", "other"},
		{"empty", set.value, "", "none"},
		{"known operation", operationLabel, "InvokeModelWithBidirectionalStream", "InvokeModelWithBidirectionalStream"},
		{"unknown operation", operationLabel, "converse", "other"},
		{"empty operation", operationLabel, "", "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.fn(tt.in); got != tt.want {
				t.Errorf("label(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	for _, c := range []struct {
		status int
		want   string
	}{{0, "other"}, {100, "other"}, {200, "2xx"}, {204, "2xx"}, {304, "3xx"}, {400, "4xx"}, {499, "4xx"}, {500, "5xx"}, {599, "5xx"}, {600, "other"}, {-1, "other"}} {
		if got := statusClasses[statusClassIndex(c.status)]; got != c.want {
			t.Errorf("statusClasses[statusClassIndex(%d)] = %q, want %q", c.status, got, c.want)
		}
	}
}

// TestMetricsCardinality records 10,000 requests, each from a different
// user, team, tenant and model, and checks that the series stay within the
// configured sets plus "other" and "none", and that no caller value leaks
// into the exposition.
func TestMetricsCardinality(t *testing.T) {
	const n = 10_000
	cfg := MetricsConfig{
		Teams:   []string{"team-1", "team-2", "team-3"},
		Tenants: []string{"tenant-1", "tenant-2"},
		Models:  []string{"model-1"},
	}
	m, reg := newTestMetrics(t, cfg)
	for i := range n {
		r := Record{
			RequestID:       fmt.Sprintf("req-%d", i),
			User:            fmt.Sprintf("user-%d@example.com", i),
			SessionName:     fmt.Sprintf("user-%d@example.com", i),
			Team:            fmt.Sprintf("team-%d", i%5000),
			Tenant:          fmt.Sprintf("tenant-%d", i%4000),
			Model:           fmt.Sprintf("model-%d", i%3000),
			Operation:       Operations[i%len(Operations)],
			Status:          []int{200, 400, 500, 0, 302}[i%5],
			Tokens:          Tokens{Input: 1, Output: 1, CacheRead: 1, CacheWrite: 1},
			Latency:         time.Second,
			TimeToFirstByte: time.Millisecond,
			ClientGone:      i%2 == 0,
		}
		if i%3 == 0 {
			r.ErrorType = ErrorUpstreamStreamCut
		}
		if i%2 == 0 { // priced; the others count as unpriced
			c := pricing.Money(1_000_000 * (i + 1))
			r.Cost = &c
		}
		if i%7 == 0 {
			r.Team, r.Tenant, r.Model, r.Operation = "", "", "", fmt.Sprintf("Op%d", i)
		}
		m.Record(r)
	}

	bound := map[string]int{
		"operation": len(Operations) + 1, // + "other"
		"team":      len(cfg.Teams) + 2,
		"tenant":    len(cfg.Tenants) + 2,
		"model":     len(cfg.Models) + 2,
		"code":      5,
		"type":      4,
		"le":        len(durationBuckets) + 1,
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != 8 {
		t.Errorf("gathered %d metric families, want 8", len(mfs))
	}
	for _, mf := range mfs {
		values := map[string]map[string]bool{}
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				if _, ok := bound[lp.GetName()]; !ok {
					t.Errorf("%s has label %q, want only %v", mf.GetName(), lp.GetName(), bound)
				}
				if values[lp.GetName()] == nil {
					values[lp.GetName()] = map[string]bool{}
				}
				values[lp.GetName()][lp.GetValue()] = true
			}
		}
		limit := 1
		for name, vs := range values {
			if len(vs) > bound[name] {
				t.Errorf("%s label %s has %d values, want at most %d", mf.GetName(), name, len(vs), bound[name])
			}
			limit *= bound[name]
		}
		if got := len(mf.GetMetric()); got > limit {
			t.Errorf("%s has %d series, want at most %d", mf.GetName(), got, limit)
		}
	}

	text := scrape(t, reg)
	for _, leak := range []string{"user-", "example.com", "req-", "team-4", "tenant-3", "model-2", "Op7"} {
		if strings.Contains(text, leak) {
			t.Errorf("exposition contains %q, a value outside the configured sets", leak)
		}
	}
	for _, want := range []string{`team="team-1"`, `team="other"`, `team="none"`, `model="model-1"`, `operation="other"`} {
		if !strings.Contains(text, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
}

// TestMetricsLint runs the checks of promtool check metrics on every family.
func TestMetricsLint(t *testing.T) {
	m, reg := newTestMetrics(t, testMetricsConfig)
	m.Record(Record{Operation: "Converse", Status: 200, Tokens: Tokens{Input: 1}, Latency: time.Second, TimeToFirstByte: time.Second, ClientGone: true})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("GatherAndCount() = %d, %v, want series to lint", n, err)
	}
}

func TestMetricsConfigValidate(t *testing.T) {
	many := make([]string, MaxLabelValues+1)
	for i := range many {
		many[i] = fmt.Sprintf("m%d", i)
	}
	tests := []struct {
		name string
		cfg  MetricsConfig
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"empty", MetricsConfig{}, nil},
		{"listed values", testMetricsConfig, nil},
		{"as many values as allowed", MetricsConfig{Models: many[:MaxLabelValues]}, nil},
		{"other as a team", MetricsConfig{Teams: []string{"ml", "other"}}, []string{`metric_labels.teams: "other" is reserved`}},
		{"none as a tenant", MetricsConfig{Tenants: []string{"none"}}, []string{`metric_labels.tenants: "none" is reserved`}},
		{"empty model", MetricsConfig{Models: []string{""}}, []string{`metric_labels.models: "" is reserved`}},
		{"too many models", MetricsConfig{Models: many}, []string{"metric_labels.models: at most 1000 values"}},
		{"every problem at once", MetricsConfig{Teams: []string{"", "ml", "none"}, Tenants: many, Models: []string{"other"}}, []string{
			`metric_labels.teams: "" is reserved`, `metric_labels.teams: "none" is reserved`,
			"metric_labels.tenants: at most", `metric_labels.models: "other" is reserved`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			configtest.Problems(t, err, tt.want)
			// NewMetrics applies the same rule, before registering anything.
			reg := prometheus.NewRegistry()
			cfg := tt.cfg
			cfg.Registerer = reg
			_, nerr := NewMetrics(cfg)
			if (nerr != nil) != (err != nil) {
				t.Errorf("NewMetrics() error = %v, Validate() = %v: want both nil or both errors", nerr, err)
			}
			if n, _ := testutil.GatherAndCount(reg); nerr != nil && n != 0 {
				t.Errorf("refused NewMetrics() registered %d series", n)
			}
		})
	}
}

func TestNewMetricsErrors(t *testing.T) {
	t.Run("registration is all or nothing", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := NewMetrics(MetricsConfig{Registerer: &failingRegisterer{Registerer: reg, failAt: 5}}); err == nil {
			t.Fatalf("NewMetrics with the last registration failing = nil error, want one")
		}
		// The four collectors registered before the failure must be gone
		// again, or registering the same metrics now would clash.
		if _, err := NewMetrics(MetricsConfig{Registerer: reg}); err != nil {
			t.Errorf("NewMetrics after a failed registration = %v, want nil", err)
		}
	})

	t.Run("nil registerer", func(t *testing.T) {
		m, err := NewMetrics(MetricsConfig{})
		if err != nil {
			t.Fatalf("NewMetrics(no registerer) = %v", err)
		}
		m.Record(Record{Operation: "Converse", Status: 200, Tokens: Tokens{Input: 3}})
		if got := testutil.ToFloat64(m.tokens); got != 3 {
			t.Errorf("tokens counted without a registerer = %v, want 3", got)
		}
	})
}

// failingRegisterer fails the failAt-th Register call.
type failingRegisterer struct {
	prometheus.Registerer
	failAt, calls int
}

var errRegister = errors.New("register refused")

func (r *failingRegisterer) Register(c prometheus.Collector) error {
	r.calls++
	if r.calls == r.failAt {
		return errRegister
	}
	return r.Registerer.Register(c)
}

// TestCostMetrics: priced requests add their exact cost to
// bedrock_gateway_cost_usd_total; a request with tokens and no price
// counts in bedrock_gateway_unpriced_requests_total and adds nothing; one
// with no tokens is neither.
func TestCostMetrics(t *testing.T) {
	m, reg := newTestMetrics(t, MetricsConfig{Teams: []string{"ds"}, Models: []string{"m"}})
	price := func(s string) *pricing.Money {
		c, err := pricing.ParseMoney(s)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	tok := Tokens{Input: 1234}
	m.Record(Record{Operation: "Converse", Model: "m", Team: "ds", Status: 200, Tokens: tok, Cost: price("0.003702")})
	m.Record(Record{Operation: "Converse", Model: "m", Team: "ds", Status: 200, Tokens: tok, Cost: price("0.5")})
	m.Record(Record{Operation: "Converse", Model: "m", Team: "ds", Status: 200, Tokens: tok})      // unpriced
	m.Record(Record{Operation: "Converse", Model: "m", Team: "ds", Status: 403})                   // no tokens, nil cost
	m.Record(Record{Operation: "Converse", Model: "m", Team: "ds", Status: 403, Cost: price("0")}) // no tokens, $0
	if got := testutil.ToFloat64(m.cost.WithLabelValues("Converse", "m", "ds", LabelNone)); got != 0.503702 {
		t.Errorf("cost_usd_total = %v, want 0.503702", got)
	}
	if got := testutil.ToFloat64(m.unpriced.WithLabelValues("Converse", "m")); got != 1 {
		t.Errorf("unpriced_requests_total = %v, want 1", got)
	}
	if n := testutil.CollectAndCount(reg, "bedrock_gateway_unpriced_requests_total", "bedrock_gateway_cost_usd_total"); n != 2 {
		t.Errorf("%d cost and unpriced series, want 2", n)
	}
}

// BenchmarkMetricsRecord: the metrics side of one billed Converse, on
// every request's path.
func BenchmarkMetricsRecord(b *testing.B) {
	m, err := NewMetrics(MetricsConfig{})
	if err != nil {
		b.Fatal(err)
	}
	cost := pricing.Money(3702000)
	r := Record{Operation: "Converse", Model: "anthropic.claude-3-haiku-20240307-v1:0", Team: "data-science",
		Status: 200, Latency: 3 * time.Millisecond, TimeToFirstByte: 2 * time.Millisecond,
		Tokens: Tokens{Input: 1234, Output: 56}, Cost: &cost}
	b.ReportAllocs()
	for b.Loop() {
		m.Record(r)
	}
}

// TestMetricsConcurrentFirstUse records from many goroutines at once into
// series none of them has seen yet, racing to create the cached series,
// and checks that every request, token and cost lands: a series created
// twice must still be the vector's one series.
func TestMetricsConcurrentFirstUse(t *testing.T) {
	m, reg := newTestMetrics(t, testMetricsConfig)
	const goroutines, each = 8, 500
	teams := []string{"ml", "search", ""}
	cost := pricing.Money(1_000_000) // $0.000001
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				m.Record(Record{Operation: "Converse", Model: "anthropic.claude-3-haiku-20240307-v1:0",
					Team: teams[(g+i)%len(teams)], Status: 200 + 100*(i%4),
					Tokens: Tokens{Input: 3, Output: 2, CacheRead: 1}, Cost: &cost})
			}
		})
	}
	wg.Wait()
	// Only what was recorded is exported: no cache_write series, and no
	// "other" code. (Counted before the sums below, whose lookups would
	// create the missing series.)
	if got, err := testutil.GatherAndCount(reg, "bedrock_gateway_tokens_total"); err != nil || got != 3*3 {
		t.Errorf("tokens series = %d, %v; want 9 (3 teams × input, output, cache_read)", got, err)
	}
	if got, err := testutil.GatherAndCount(reg, "bedrock_gateway_requests_total"); err != nil || got != 3*4 {
		t.Errorf("requests series = %d, %v; want 12 (3 teams × 2xx-5xx)", got, err)
	}
	var requests, requests5xx, input, cacheRead, costUSD float64
	for _, team := range []string{"ml", "search", "none"} {
		for _, code := range statusClasses {
			requests += testutil.ToFloat64(m.requests.WithLabelValues("Converse", "anthropic.claude-3-haiku-20240307-v1:0", team, "none", code))
		}
		requests5xx += testutil.ToFloat64(m.requests.WithLabelValues("Converse", "anthropic.claude-3-haiku-20240307-v1:0", team, "none", "5xx"))
		input += testutil.ToFloat64(m.tokens.WithLabelValues("Converse", "anthropic.claude-3-haiku-20240307-v1:0", team, "none", "input"))
		cacheRead += testutil.ToFloat64(m.tokens.WithLabelValues("Converse", "anthropic.claude-3-haiku-20240307-v1:0", team, "none", "cache_read"))
		costUSD += testutil.ToFloat64(m.cost.WithLabelValues("Converse", "anthropic.claude-3-haiku-20240307-v1:0", team, "none"))
	}
	const n = goroutines * each
	if requests != n || requests5xx != n/4 || input != 3*n || cacheRead != n {
		t.Errorf("requests, 5xx, input, cache_read = %v, %v, %v, %v; want %v, %v, %v, %v",
			requests, requests5xx, input, cacheRead, n, n/4, 3*n, n)
	}
	if want := float64(n) / 1e6; costUSD < want*0.999999 || costUSD > want*1.000001 {
		t.Errorf("cost = %v, want %v", costUSD, want)
	}
}
