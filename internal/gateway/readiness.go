package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// errShuttingDown is why /readyz fails once shutdown has begun.
var errShuttingDown = errors.New("shutting down")

// readiness answers /readyz. The gateway is ready when it runs a valid
// config (it never runs without one: an invalid config stops the start and
// a refused reload keeps the running one), when STS answers
// GetCallerIdentity with the gateway's own identity, and when it is not
// shutting down.
//
// The STS check is made on demand, when a probe finds the last result too
// old, so an idle gateway makes no STS calls and a busy prober makes at
// most one per okTTL (failTTL after a failure). Probes wait for a check in
// progress rather than starting their own.
type readiness struct {
	check   func(ctx context.Context) error
	okTTL   time.Duration // reuse a success this long
	failTTL time.Duration // reuse a failure this long
	timeout time.Duration // bound on one check
	now     func() time.Time
	logger  *slog.Logger

	draining atomic.Bool

	mu      sync.Mutex // serialises checks; guards the fields below
	checked time.Time  // when err was learnt; zero: never
	err     error
}

// seed records the result of a check made elsewhere (the one at start).
func (r *readiness) seed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked, r.err = r.now(), err
}

// startDraining makes every later Ready fail. It cannot be undone.
func (r *readiness) startDraining() { r.draining.Store(true) }

// Ready returns nil if the gateway is ready, else why not.
func (r *readiness) Ready(ctx context.Context) error {
	if r.draining.Load() {
		return errShuttingDown
	}
	r.mu.Lock()
	ttl := r.okTTL
	if r.err != nil {
		ttl = r.failTTL
	}
	if r.checked.IsZero() || r.now().Sub(r.checked) >= ttl {
		cctx, cancel := context.WithTimeout(ctx, r.timeout)
		err := r.check(cctx)
		cancel()
		if err != nil && (r.err == nil || r.checked.IsZero()) && r.logger != nil {
			r.logger.Warn("readiness: STS GetCallerIdentity failed", "error", err)
		} else if err == nil && r.err != nil && r.logger != nil {
			r.logger.Info("readiness: STS reachable again")
		}
		r.checked, r.err = r.now(), err
	}
	err := r.err
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sts: %w", err)
	}
	if r.draining.Load() {
		return errShuttingDown
	}
	return nil
}
