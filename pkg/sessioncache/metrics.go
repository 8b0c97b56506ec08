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
}

func newMetrics(entries func() int) *metrics {
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_sts_assume_role_total",
			Help: "STS AssumeRole calls made by the session cache, by outcome.",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_sts_assume_role_duration_seconds",
			Help:    "Latency of STS AssumeRole calls, SDK retries included.",
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
	}
	m.hits = m.requests.WithLabelValues("hit")
	m.misses = m.requests.WithLabelValues("miss")
	for _, o := range outcomes {
		m.calls.WithLabelValues(o) // export every outcome from zero
	}
	return m
}

// register registers every metric on r, or none: on failure it unregisters
// the ones it already registered.
func (m *metrics) register(r prometheus.Registerer) error {
	cs := []prometheus.Collector{m.calls, m.latency, m.requests, m.evictions, m.entries}
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
