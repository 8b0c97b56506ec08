package gateway

import (
	"fmt"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/server"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// opsMetrics are the process's own operational metrics.
type opsMetrics struct {
	shutdownCancelled prometheus.Counter
	framingRefusals   *prometheus.CounterVec
	reloads           *prometheus.CounterVec
	reloadOK          prometheus.Gauge
	reloadTime        prometheus.Gauge
}

func newOpsMetrics(reg prometheus.Registerer, version string) (*opsMetrics, error) {
	m := &opsMetrics{
		shutdownCancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bedrock_gateway_shutdown_cancelled_requests_total",
			Help: "Requests and streams still open when the shutdown grace period ended, and cancelled.",
		}),
		framingRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_framing_refusals_total",
			Help: "HTTP/1.x requests refused with 400 and the connection closed because two parsers could read their framing differently (request smuggling), by reason.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_config_reloads_total",
			Help: "Config reloads attempted (SIGHUP), by result: success or failure.",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_config_last_reload_successful",
			Help: "1 if the last config reload (or the start) succeeded, 0 if it was refused.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bedrock_gateway_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful config load (start or reload).",
		}),
	}
	for _, r := range server.RefusalReasons {
		if r != "" {
			m.framingRefusals.WithLabelValues(r) // export from zero
		}
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	// bedrock_gateway_build_info says which version is running, for
	// dashboards and alerts across a fleet.
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bedrock_gateway_build_info",
		Help: "Always 1; its labels say which gateway version and Go toolchain are running.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	if err := registerAll(reg, m.shutdownCancelled, m.framingRefusals, m.reloads, m.reloadOK, m.reloadTime, build); err != nil {
		return nil, err
	}
	return m, nil
}

// registerAll registers every collector, stopping at the first refusal.
func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// registerLedgerMetrics exports the ledger's loss counters.
func registerLedgerMetrics(reg prometheus.Registerer, ledger *usage.Ledger) error {
	return registerAll(reg,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bedrock_gateway_usage_ledger_write_errors_total",
			Help: "Usage records lost because the ledger could not be written (encoding, write, open or rotation failures).",
		}, func() float64 { return float64(ledger.WriteErrors()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "bedrock_gateway_usage_ledger_dropped_total",
			Help: "Usage records that arrived after the ledger was closed.",
		}, func() float64 { return float64(ledger.Dropped()) }),
	)
}
