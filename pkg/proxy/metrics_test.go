package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
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
bedrock_gateway_auth_failures_total{reason="idp_unavailable"} 0
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

// errAuth refuses every request with err.
type errAuth struct{ err error }

func (a errAuth) Authenticate(*http.Request) (auth.Identity, error) { return auth.Identity{}, a.err }

// TestIdPUnavailable: when the identity provider cannot be reached to
// check a token, the caller gets 503 with Retry-After and a message that
// blames the identity provider, not the token.
func TestIdPUnavailable(t *testing.T) {
	c := validConfig()
	c.Authenticator = errAuth{fmt.Errorf("discovery of https://idp.example: dial tcp: %w", auth.ErrUnavailable)}
	c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/model/m/converse", strings.NewReader(converseBody)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("X-Amzn-ErrorType") != "ServiceUnavailableException" {
		t.Errorf("answer = %d %q, want 503 ServiceUnavailableException", rec.Code, rec.Header().Get("X-Amzn-ErrorType"))
	}
	if got := rec.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After = %q, want 2", got)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != "" {
		t.Errorf("WWW-Authenticate = %q on a 503: the credential was not refused", got)
	}
	body := rec.Body.String()
	if !strings.Contains(body, "identity provider") || strings.Contains(body, "not valid") || strings.Contains(body, "idp.example") {
		t.Errorf("body = %s, want a message blaming the unreachable identity provider, without its address", body)
	}
}

// TestAuthFailureReasons: the reason label comes from the cause the
// authenticator returned (errors.Is), wrapped or not, and agrees with the
// status the caller got.
func TestAuthFailureReasons(t *testing.T) {
	tests := []struct {
		err    error
		reason string
		status int
	}{
		{auth.ErrNoCredentials, reasonNoCredentials, http.StatusUnauthorized},
		{fmt.Errorf("no bearer token: %w", auth.ErrNoCredentials), reasonNoCredentials, http.StatusUnauthorized},
		{fmt.Errorf("two Authorization headers: %w", auth.ErrBadRequest), reasonBadRequest, http.StatusBadRequest},
		{fmt.Errorf("tenant t2 outside the grant: %w", auth.ErrForbidden), reasonForbidden, http.StatusForbidden},
		{fmt.Errorf("unknown key: %w", auth.ErrInvalidCredentials), reasonInvalid, http.StatusUnauthorized},
		{errors.New("token expired"), reasonInvalid, http.StatusUnauthorized},
		{fmt.Errorf("fetch JWKS of https://idp.example: %w", auth.ErrUnavailable), reasonIdPUnavailable, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			m, err := NewMetrics(prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			c := validConfig()
			c.Authenticator, c.Metrics = errAuth{tt.err}, m
			c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			p, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			rec := httptest.NewRecorder()
			p.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/model/m/converse", strings.NewReader(converseBody)))
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			for _, reason := range []string{reasonNoCredentials, reasonInvalid, reasonBadRequest, reasonForbidden, reasonIdPUnavailable} {
				want := 0.0
				if reason == tt.reason {
					want = 1
				}
				if got := testutil.ToFloat64(m.authFailures.WithLabelValues(reason)); got != want {
					t.Errorf("auth failures{reason=%q} = %v, want %v", reason, got, want)
				}
			}
		})
	}
}
