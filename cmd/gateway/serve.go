package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// shutdownGrace is how long open requests (streams included) get to finish
// after the gateway is told to stop.
const shutdownGrace = 30 * time.Second

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (required); re-read on SIGHUP")
	listen := fs.String("listen", "", "data-plane address, overrides the config's listen")
	adminListen := fs.String("admin-listen", "", "admin address (/metrics, /healthz, /readyz), overrides the config's admin_listen; off to disable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		return errors.New("serve: -config is required")
	}
	// load reads the config file with the flags applied, at start and on
	// every reload.
	load := func(path string) (*Config, error) {
		cfg, err := loadConfig(path, getenv)
		if err != nil {
			return nil, err
		}
		if *listen != "" {
			cfg.Listen = *listen
		}
		if *adminListen != "" {
			cfg.AdminListen = *adminListen
		}
		return cfg, nil
	}
	cfg, err := load(*configPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	logger, err := newLogger(cfg.Log, stderr, level)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	ops, err := newOpsMetrics(reg)
	if err != nil {
		return err
	}
	c, err := newCore(ctx, cfg, nil, logger, reg, stdout)
	if err != nil {
		return err
	}
	defer c.close() // last: the ledger closes after every request is done
	gen, err := c.build(ctx, cfg)
	if err != nil {
		return err
	}
	sw := newSwitcher(gen)
	defer func() {
		if !sw.close(10 * time.Second) {
			logger.Error("requests still hold a config 10s after shutdown")
		}
	}()
	ready := &readiness{check: c.checkSTS, okTTL: cfg.Server.ReadinessSTSInterval, failTTL: 2 * time.Second,
		timeout: 3 * time.Second, now: time.Now, logger: logger}
	ready.seed(c.logIdentity(ctx))

	var tlsCfg *tls.Config
	if cfg.TLS.CertFile != "" {
		certs, err := newCertReloader(cfg.path(cfg.TLS.CertFile), cfg.path(cfg.TLS.KeyFile), certCheckInterval, time.Now, logger)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "bedrock_gateway_tls_certificate_expiry_timestamp_seconds",
			Help: "Unix time at which the data plane's current TLS certificate expires.",
		}, certs.notAfter))
	}

	// SIGHUP reloads the config. Registered before the listeners announce
	// themselves, so a SIGHUP sent after "listening" never kills the
	// process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl := &reloader{path: *configPath, load: load, core: c, sw: sw, level: level, logger: logger, metrics: ops}
	reloadCtx, stopReloads := context.WithCancel(ctx)
	reloadDone := make(chan struct{})
	go func() {
		defer close(reloadDone)
		for {
			select {
			case <-reloadCtx.Done():
				return
			case <-hup:
				logger.Info("SIGHUP: reloading the config", "path", *configPath)
				rl.reload(reloadCtx)
			}
		}
	}()
	defer func() {
		stopReloads()
		<-reloadDone
	}()

	ln, err := listenOn(cfg.Listen, tlsCfg)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if cfg.AdminListen != "off" {
		if adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("admin_listen: %w", err)
		}
	}
	logger.Info("listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil, "h2c", tlsCfg == nil)
	if adminLn == nil {
		return serveData(ctx, ln, sw, cfg.Server, logger, ready, ops)
	}
	logger.Info("admin listening", "addr", adminLn.Addr().String(), "pprof", cfg.AdminPprof)

	// The admin listener outlives the data plane's shutdown, so probes
	// see /readyz fail and scrapes see the cancelled-requests count.
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	adminErr := make(chan error, 1)
	go func() { adminErr <- serveAdmin(adminCtx, adminLn, adminHandler(reg, ready, cfg.AdminPprof), logger) }()
	dataCtx, stopData := context.WithCancel(ctx)
	defer stopData()
	dataErr := make(chan error, 1)
	go func() { dataErr <- serveData(dataCtx, ln, sw, cfg.Server, logger, ready, ops) }()
	select {
	case err = <-dataErr:
		stopAdmin()
		if aerr := <-adminErr; err == nil {
			err = aerr
		}
	case err = <-adminErr:
		logger.Error("admin listener failed; shutting down", "error", err)
		stopData()
		<-dataErr
	}
	return err
}

// certCheckInterval is how often, at most, the TLS files are checked for
// a new certificate.
const certCheckInterval = 5 * time.Second

func newLogger(c LogConfig, w io.Writer, level *slog.LevelVar) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	level.Set(l)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// newGateway wires the data path (auth → tenancy → sessioncache → proxy)
// from one config, for callers that never reload (gateway dev). stsCreds
// is the gateway's own identity for calling STS; nil means the standard
// SDK credential chain. It is given to the STS client only: the proxy has
// no way to reach it, so a Bedrock call can never be signed with the
// gateway's own credentials.
//
// The returned close function stops background work and closes the ledger.
func newGateway(ctx context.Context, cfg *Config, stsCreds aws.CredentialsProvider, logger *slog.Logger, reg prometheus.Registerer, stdout io.Writer) (http.Handler, func(), error) {
	c, err := newCore(ctx, cfg, stsCreds, logger, reg, stdout)
	if err != nil {
		return nil, nil, err
	}
	g, err := c.build(ctx, cfg)
	if err != nil {
		c.close()
		return nil, nil, err
	}
	c.logIdentity(ctx)
	return g.h, func() {
		g.stop()
		c.close()
	}, nil
}

// checkIdentity reports whether id can become an STS session under cfg.
func checkIdentity(cfg *Config, id auth.Identity) error {
	r, err := tenancy.NewResolver(cfg.tenancyConfig())
	if err != nil {
		return err
	}
	_, err = r.Resolve(id)
	return err
}

func listenOn(addr string, tlsCfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		// http.Server serves HTTP/2 on *tls.Conn when ALPN picks "h2".
		cfg := tlsCfg.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// serveUntilDone serves on ln with the default server limits until ctx is
// done, then shuts down, giving open requests shutdownGrace to finish.
// `gateway dev` uses it; `gateway serve` has serveData.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	var sc ServerConfig
	sc.applyDefaults()
	srv := newServer(h, logger, sc)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down", "grace", shutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	if err != nil {
		srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// buildInfo is the constant bedrock_gateway_build_info metric: which
// version is running, for dashboards and alerts across a fleet.
func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bedrock_gateway_build_info",
		Help: "Always 1; its labels say which gateway version and Go toolchain are running.",
	}, []string{"version", "goversion"})
	g.WithLabelValues(version, runtime.Version()).Set(1)
	return g
}
