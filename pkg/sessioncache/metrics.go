package sessioncache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are always built, so the code paths never check for nil; they are
// exported only when Config.Registerer is set. No label carries a user or
// session name.
type metrics struct {
	calls     *prometheus.CounterVec // outcome
	latency   prometheus.Histogram
	hits      prometheus.Counter
	misses    prometheus.Counter
	evictions prometheus.Counter
	entries   prometheus.GaugeFunc
	requests  *prometheus.CounterVec // result

	skipped       *prometheus.CounterVec // reason
	suppressed    prometheus.Counter     // skipped{reason="refused"}
	backedOff     prometheus.Counter     // skipped{reason="backoff"}
	breakerSkips  prometheus.Counter     // skipped{reason="breaker"}
	breakerOpen   prometheus.Gauge
	staleServed   prometheus.Counter
	refreshes     *prometheus.CounterVec   // outcome: success, error
	admissionWait *prometheus.HistogramVec // class
	rejections    *prometheus.CounterVec   // class
	admissionRate prometheus.Gauge
	minRemaining  prometheus.GaugeFunc
}

func newMetrics(entries func() int, minRemaining func() float64) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_sts_assume_role_total",
			Help: "STS AssumeRole calls made by the session cache, by outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_sts_assume_role_duration_seconds",
			Help:    "Latency of one STS AssumeRole call (attempts are not retried by the SDK).",
			Buckets: prometheus.DefBuckets,
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_session_cache_requests_total",
			Help: "Session cache lookups, by result (hit or miss).",
		}, []string{"result"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bedrock_gateway_session_cache_evictions_total",
			Help: "Sessions evicted from the cache to stay within its size.",
		}),
		entries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bedrock_gateway_session_cache_entries",
			Help: "Sessions currently cached.",
		}, func() float64 { return float64(entries()) }),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_sts_assume_role_suppressed_total",
			Help: "AssumeRole calls not made, by reason: refused (STS refused the same session moments ago), backoff (STS failed for the same session moments ago), breaker (STS is failing for many sessions).",
		}, []string{"reason"}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_sts_breaker_open",
			Help: "1 while STS failures across sessions keep new AssumeRole calls to one probe at a time, else 0.",
		}),
		staleServed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bedrock_gateway_session_stale_served_total",
			Help: "Requests served with cached credentials past their refresh margin because STS could not renew them.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_session_refreshes_total",
			Help: "Background renewals of active sessions, by outcome.",
		}, []string{"outcome"}),
		admissionWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_sts_admission_wait_seconds",
			Help:    "Time AssumeRole calls waited for the STS admission budget, by class (new or active session).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
		}, []string{"class"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_sts_admission_rejections_total",
			Help: "AssumeRole calls refused by the STS admission budget, by class (new or active session).",
		}, []string{"class"}),
		admissionRate: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_sts_admission_rate",
			Help: "Current STS admission budget in AssumeRole calls per second; halved for a while after STS throttling.",
		}),
		minRemaining: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bedrock_gateway_session_credentials_min_remaining_seconds",
			Help: "Seconds left on the soonest-expiring credentials among sessions used in the last 15 minutes; NaN if none.",
		}, minRemaining),
	}
	m.hits = m.requests.WithLabelValues("hit")
	m.misses = m.requests.WithLabelValues("miss")
	m.suppressed = m.skipped.WithLabelValues(reasonRefused)
	m.backedOff = m.skipped.WithLabelValues(reasonBackoff)
	m.breakerSkips = m.skipped.WithLabelValues(reasonBreaker)
	for _, o := range outcomes {
		m.calls.WithLabelValues(o) // export every outcome from zero
	}
	for _, o := range []string{outcomeSuccess, outcomeError} {
		m.refreshes.WithLabelValues(o)
	}
	for _, c := range classes {
		m.rejections.WithLabelValues(c.String())
	}
	return m
}

// Bounded values of the reason label of sts_assume_role_suppressed_total.
const (
	reasonRefused = "refused"
	reasonBackoff = "backoff"
	reasonBreaker = "breaker"
)

// register registers every metric on r, or none: on failure it unregisters
// the ones it already registered.
func (m *metrics) register(r prometheus.Registerer) error {
	cs := []prometheus.Collector{m.calls, m.latency, m.requests, m.evictions, m.entries,
		m.skipped, m.breakerOpen, m.staleServed, m.refreshes, m.admissionWait, m.rejections, m.admissionRate, m.minRemaining}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			for _, done := range cs[:i] {
				r.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
