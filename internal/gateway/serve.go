package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bedrock-gateway/gateway/pkg/server"
)

// Listeners are the sockets cmd/gateway opened for Serve.
type Listeners struct {
	// Data serve the data plane; each may be plain or TLS.
	Data []net.Listener
	// Admin, if set, serves AdminHandler.
	Admin net.Listener
	// Handler serves the data plane; default Handler(). `gateway dev`
	// wraps Handler() to add its emulator routes.
	Handler http.Handler
}

// Serve serves the listeners until ctx is done, then shuts down in order
// (see server.Serve): readiness fails at once, the data listeners drain
// and close, open requests get the grace period. The admin listener
// outlives the data plane's shutdown, so probes see /readyz fail and
// scrapes see the cancelled-requests count. Serve returns when every
// listener has stopped; call Close after it.
func (g *Gateway) Serve(ctx context.Context, l Listeners) error {
	h := l.Handler
	if h == nil {
		h = g.Handler()
	}
	opts := server.Options{Logger: g.log, Draining: g.ready.startDraining,
		Cancelled: func(n int) { g.ops.shutdownCancelled.Add(float64(n)) },
		Refused:   func(reason string) { g.ops.framingRefusals.WithLabelValues(reason).Inc() }}
	dataCtx, stopData := context.WithCancel(ctx)
	defer stopData()
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()

	dataErr := make(chan error, len(l.Data))
	for _, ln := range l.Data {
		go func() { dataErr <- server.Serve(dataCtx, ln, h, g.cfg.Server, opts) }()
	}
	g.ready.startServing()
	adminErr := make(chan error, 1)
	if l.Admin != nil {
		go func() { adminErr <- server.ServeAdmin(adminCtx, l.Admin, g.AdminHandler(), g.log) }()
	}
	var errs []error
	for range l.Data {
		select {
		case err := <-dataErr:
			// One data listener failing (or all stopping) stops the rest.
			errs = append(errs, err)
			stopData()
		case err := <-adminErr:
			g.log.Error("admin listener failed; shutting down", "error", err)
			errs = append(errs, fmt.Errorf("admin listener: %w", err))
			l.Admin = nil
			stopData()
			errs = append(errs, <-dataErr)
		}
	}
	if l.Admin != nil {
		stopAdmin()
		errs = append(errs, <-adminErr)
	}
	return errors.Join(errs...)
}

// AdminHandler serves what operators scrape and probe, on a listener of
// its own so that it is never exposed with the data plane: /metrics,
// /healthz (the process is alive and serving), /readyz (see readiness;
// ?verbose adds a line per condition and STS health),
// and with admin.pprof, /debug/pprof/.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{Registry: g.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		err := g.ready.Ready()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_, verbose := r.URL.Query()["verbose"]
		writeReadyz(w, err, verbose, g.stsHealth, time.Now())
	})
	if g.cfg.Admin.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
