package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// Metrics are the proxy's own Prometheus metrics. They are built once per
// process and shared by every Proxy built on reload, so that registering
// them happens once.
type Metrics struct {
	inFlight     prometheus.Gauge
	streams      prometheus.Gauge
	authFailures *prometheus.CounterVec // reason
	overhead     *prometheus.HistogramVec
	asyncOwners  *prometheus.CounterVec // operation
}

// Values of the reason label of bedrock_gateway_auth_failures_total.
const (
	reasonNoCredentials = "no_credentials"
	reasonInvalid       = "invalid_credentials"
	reasonBadRequest    = "bad_request"
	reasonForbidden     = "forbidden"
	// reasonIdPUnavailable: the identity provider could not be reached to
	// check a token (auth.ErrUnavailable); the token was not refused.
	reasonIdPUnavailable = "idp_unavailable"
)

// NewMetrics builds the proxy metrics and registers them on reg (if not
// nil).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_in_flight_requests",
			Help: "Requests being served by the data plane, streams included.",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_in_flight_streams",
			Help: "Event-stream responses being relayed from Bedrock to clients.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_auth_failures_total",
			Help: "Requests refused while establishing the caller's identity, by reason.",
		}, []string{"reason"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_overhead_seconds",
			Help:    "Time from a request's arrival until it is sent to Bedrock: authentication, session lookup (an STS call on a miss), checks and signing; Bedrock's own time excluded.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"operation"}),
		asyncOwners: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_async_ownership_errors_total",
			Help: "Asynchronous invocations whose owner could not be recorded (StartAsyncInvoke: the job runs, but its owner cannot see it) or checked (GetAsyncInvoke, ListAsyncInvokes: answered 503).",
		}, []string{"operation"}),
	}
	for _, op := range []string{opStartAsyncInvoke, opGetAsyncInvoke, opListAsyncInvokes} {
		m.asyncOwners.WithLabelValues(op)
	}
	for _, r := range []string{reasonNoCredentials, reasonInvalid, reasonBadRequest, reasonForbidden, reasonIdPUnavailable} {
		m.authFailures.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.inFlight, m.streams, m.authFailures, m.overhead, m.asyncOwners} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register proxy metrics: %w", err)
			}
		}
	}
	return m, nil
}

// authFailure counts a refused authentication by its cause, checked in
// the order authError maps it, so that the reason agrees with the status
// the caller got.
func (m *Metrics) authFailure(err error) {
	if m == nil {
		return
	}
	m.authFailures.WithLabelValues(authReason(err)).Inc()
}

// authReason names the cause of a refused authentication, for metrics
// and traces.
func authReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrBadRequest):
		return reasonBadRequest
	case errors.Is(err, auth.ErrForbidden):
		return reasonForbidden
	case errors.Is(err, auth.ErrNoCredentials):
		return reasonNoCredentials
	case errors.Is(err, auth.ErrUnavailable):
		return reasonIdPUnavailable
	}
	return reasonInvalid
}

func (m *Metrics) observeOverhead(op string, d time.Duration) {
	if m == nil || op == "" {
		return
	}
	m.overhead.WithLabelValues(op).Observe(d.Seconds())
}
