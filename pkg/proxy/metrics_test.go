package proxy

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

func TestProxyMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if i == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}}, func(c *Config) { c.Metrics = m })

	h.post(t, "/model/m/converse", converseBody, http.Header{})
	h.post(t, "/model/m/converse", converseBody, http.Header{"Authorization": {"Bearer nope"}})
	h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())

	// While a stream is held open, it counts as in flight.
	resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse-stream", converseBody, authed())
	if _, err := readFrame(resp.Body); err != nil {
		t.Fatal(err)
	}
	// The earlier requests leave the gauge just after their clients have
	// the answer; the held stream stays.
	waitFor(t, func() bool { return testutil.ToFloat64(m.inFlight) == 1 })
	if got := testutil.ToFloat64(m.streams); got != 1 {
		t.Errorf("in-flight streams = %v, want 1", got)
	}
	close(release)
	for {
		if _, err := readFrame(resp.Body); err != nil {
			break
		}
	}
	waitFor(t, func() bool { return testutil.ToFloat64(m.inFlight) == 0 && testutil.ToFloat64(m.streams) == 0 })

	want := `
# HELP bedrock_gateway_auth_failures_total Requests refused while establishing the caller's identity, by reason.
# TYPE bedrock_gateway_auth_failures_total counter
bedrock_gateway_auth_failures_total{reason="bad_request"} 0
bedrock_gateway_auth_failures_total{reason="forbidden"} 0
bedrock_gateway_auth_failures_total{reason="invalid_credentials"} 1
bedrock_gateway_auth_failures_total{reason="no_credentials"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "bedrock_gateway_auth_failures_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.overhead); n != 2 {
		t.Errorf("overhead series = %d, want 2 (Converse, ConverseStream)", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}
