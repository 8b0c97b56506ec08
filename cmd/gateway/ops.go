package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// opsMetrics are the process's own operational metrics.
type opsMetrics struct {
	shutdownCancelled prometheus.Counter
	reloads           *prometheus.CounterVec
	reloadOK          prometheus.Gauge
	reloadTime        prometheus.Gauge
}

func newOpsMetrics(reg prometheus.Registerer) (*opsMetrics, error) {
	m := &opsMetrics{
		shutdownCancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bedrock_gateway_shutdown_cancelled_requests_total",
			Help: "Requests and streams still open when the shutdown grace period ended, and cancelled.",
		}),
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
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	for _, c := range []prometheus.Collector{m.shutdownCancelled, m.reloads, m.reloadOK, m.reloadTime} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// inflight counts the data-plane requests being served, so that shutdown
// can tell how many it cancels and wait for their handlers (and so their
// usage records) to finish.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func newInflight() *inflight {
	ch := make(chan struct{})
	close(ch)
	return &inflight{idle: ch}
}

func (t *inflight) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		if t.n == 0 {
			t.idle = make(chan struct{})
		}
		t.n++
		t.mu.Unlock()
		defer func() {
			t.mu.Lock()
			t.n--
			if t.n == 0 {
				close(t.idle)
			}
			t.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

func (t *inflight) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.n
}

// wait returns true once no request is in flight, false if ctx ends first.
func (t *inflight) wait(ctx context.Context) bool {
	t.mu.Lock()
	ch := t.idle
	t.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// newServer returns the data-plane server: HTTP/1.1, HTTP/2 over TLS
// (ALPN "h2") and h2c with prior knowledge on a plain listener, which the
// AWS SDK for JavaScript v3 uses. There is no write timeout: a model
// stream may legitimately run for minutes.
func newServer(h http.Handler, logger *slog.Logger, sc ServerConfig) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: sc.ReadHeaderTimeout,
		IdleTimeout:       sc.IdleTimeout,
		MaxHeaderBytes:    sc.MaxHeaderBytes,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: sc.HTTP2MaxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetHTTP2(true)            // TLS connections that negotiate h2
	srv.Protocols.SetUnencryptedHTTP2(true) // plain connections that open with the h2 preface
	return srv
}

// serveData serves the data plane on ln until ctx is done, then stops in
// order: readiness fails at once; the listener keeps accepting for
// sc.DrainDelay so load balancers see the failing probe and stop sending;
// then it is closed (new connections are refused, idle ones closed,
// HTTP/2 clients get GOAWAY); open requests and streams get
// sc.ShutdownGrace to finish; those still open are then cancelled and
// counted. It returns once every handler has returned (bounded), so the
// caller may close the usage ledger without losing a record.
func serveData(ctx context.Context, ln net.Listener, h http.Handler, sc ServerConfig, logger *slog.Logger, ready *readiness, m *opsMetrics) error {
	track := newInflight()
	srv := newServer(track.wrap(h), logger, sc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if ready != nil {
		ready.startDraining()
	}
	drain := sc.drainDelay()
	logger.Info("shutting down: not ready, still accepting", "drain_delay", drain.String(), "grace", sc.ShutdownGrace.String())
	if drain > 0 {
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case err := <-errc:
			t.Stop()
			srv.Close()
			return err
		}
	}
	logger.Info("shutting down: listener closed, waiting for open requests", "open", track.count())
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sc.ShutdownGrace)
	defer cancel()
	serr := srv.Shutdown(gctx)
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("data listener", "error", err)
	}
	if serr == nil {
		// Shutdown saw every connection idle; handlers are done.
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		track.wait(wctx)
		logger.Info("shutdown complete")
		return nil
	}
	n := track.count()
	if m != nil {
		m.shutdownCancelled.Add(float64(n))
	}
	logger.Warn("shutdown grace period over; cancelling open requests", "cancelled", n)
	srv.Close() // closes every connection: handlers see their contexts end
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if !track.wait(wctx) {
		logger.Error("requests still running 10s after being cancelled", "open", track.count())
	}
	return nil
}

// serveAdmin serves the admin listener until ctx is done. It is stopped
// after the data plane, so probes and scrapes see the whole shutdown.
func serveAdmin(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// adminHandler serves what operators scrape and probe, on a listener of
// its own so that it is never exposed with the data plane: /metrics,
// /healthz (the process is alive and serving), /readyz (see readiness),
// and with pprof, /debug/pprof/.
func adminHandler(reg *prometheus.Registry, ready *readiness, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ready == nil {
			io.WriteString(w, "ok\n")
			return
		}
		if err := ready.Ready(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			// The STS error itself is logged, not served: keep the body
			// to a reason.
			reason := "sts: GetCallerIdentity failed"
			if errors.Is(err, errShuttingDown) {
				reason = errShuttingDown.Error()
			}
			fmt.Fprintf(w, "not ready: %s\n", reason)
			return
		}
		io.WriteString(w, "ok\n")
	})
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
