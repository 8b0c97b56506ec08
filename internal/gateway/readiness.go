package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// errShuttingDown is why /readyz fails once shutdown has begun.
var errShuttingDown = errors.New("shutting down")

// errNotServing is why /readyz fails before the data listeners are up.
var errNotServing = errors.New("data listeners not serving yet")

// readiness answers /readyz: this replica can serve. It runs a valid
// config (it never runs without one: an invalid config stops the start,
// and a refused reload keeps the running one), its data listeners are up,
// and it is not shutting down.
//
// STS health is deliberately not a readiness condition. STS is shared by
// every replica, so an STS outage would turn the whole fleet NotReady at
// once, and the users whose cached sessions keep working through an
// outage (see the session cache) would lose the gateway too. STS health
// is reported by stsHealth instead: a metric, an alert, and a line of
// /readyz?verbose.
type readiness struct {
	serving  atomic.Bool
	draining atomic.Bool
}

// startServing records that the data listeners are up.
func (r *readiness) startServing() { r.serving.Store(true) }

// startDraining makes every later Ready fail. It cannot be undone.
func (r *readiness) startDraining() { r.draining.Store(true) }

// Ready returns nil if the replica can serve, else why not.
func (r *readiness) Ready() error {
	switch {
	case r.draining.Load():
		return errShuttingDown
	case !r.serving.Load():
		return errNotServing
	}
	return nil
}

// stsHealth checks, every interval, that STS answers GetCallerIdentity
// with the gateway's own identity: the first thing that breaks when the
// gateway's role, network path or STS itself fails, before users notice
// (cached sessions hide an outage for up to an hour). One call per
// interval per replica is noise next to the account's STS quota.
type stsHealth struct {
	check    func(ctx context.Context) error
	interval time.Duration
	timeout  time.Duration // bound on one check
	now      func() time.Time
	logger   *slog.Logger

	mu      sync.Mutex
	checked time.Time // zero: never
	err     error
}

// record stores the result of a check and logs a change of state.
func (h *stsHealth) record(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err != nil && (h.err == nil || h.checked.IsZero()):
		h.logger.Warn("STS health: GetCallerIdentity failed; new sessions and renewals will fail while cached sessions keep serving", "error", err)
	case err == nil && h.err != nil:
		h.logger.Info("STS health: STS reachable again")
	}
	h.checked, h.err = h.now(), err
}

// last returns the latest result and when it was learnt (zero: never).
func (h *stsHealth) last() (time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.checked, h.err
}

// run checks every interval until ctx is done.
func (h *stsHealth) run(ctx context.Context) {
	t := time.NewTimer(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, h.timeout)
		err := h.check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		h.record(err)
		t.Reset(h.interval)
	}
}

// collectors export the latest result: bedrock_gateway_sts_reachable (1
// or 0, absent before the first check) and the time of the last check.
func (h *stsHealth) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bedrock_gateway_sts_reachable",
			Help: "1 if the last check of STS (GetCallerIdentity with the gateway's own identity) succeeded, 0 if it failed.",
		}, func() float64 {
			if _, err := h.last(); err != nil {
				return 0
			}
			return 1
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bedrock_gateway_sts_last_check_timestamp_seconds",
			Help: "Unix time of the last STS health check (0 before the first).",
		}, func() float64 {
			at, _ := h.last()
			if at.IsZero() {
				return 0
			}
			return float64(at.UnixNano()) / 1e9
		}),
	}
}

// writeReadyz answers /readyz: "ok" or 503 "not ready: <reason>". With
// verbose, one line per condition first, and STS health as information
// (it never makes the answer 503). No error text is served: the STS error
// is in the log.
func writeReadyz(w io.Writer, ready error, verbose bool, h *stsHealth, now time.Time) {
	if verbose {
		mark := func(ok bool) string { return map[bool]string{true: "[+]", false: "[-]"}[ok] }
		fmt.Fprintf(w, "%s config loaded\n", mark(true))
		fmt.Fprintf(w, "%s data listeners serving\n", mark(!errors.Is(ready, errNotServing)))
		fmt.Fprintf(w, "%s not shutting down\n", mark(!errors.Is(ready, errShuttingDown)))
		at, err := h.last()
		switch {
		case at.IsZero():
			fmt.Fprintf(w, "[?] sts: not checked yet (information only)\n")
		case err != nil:
			fmt.Fprintf(w, "[-] sts: GetCallerIdentity failed %s ago (information only: cached sessions keep serving)\n", now.Sub(at).Round(time.Second))
		default:
			fmt.Fprintf(w, "[+] sts: reachable, checked %s ago (information only)\n", now.Sub(at).Round(time.Second))
		}
	}
	if ready != nil {
		fmt.Fprintf(w, "not ready: %v\n", ready)
		return
	}
	io.WriteString(w, "ok\n")
}
