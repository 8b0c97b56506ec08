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
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/proxy"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// shutdownGrace is how long open requests (streams included) get to finish
// after the gateway is told to stop.
const shutdownGrace = 30 * time.Second

func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (required)")
	listen := fs.String("listen", "", "data-plane address, overrides the config's listen")
	adminListen := fs.String("admin-listen", "", "admin address (/metrics, /healthz), overrides the config's admin_listen; off to disable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		return errors.New("serve: -config is required")
	}
	cfg, err := loadConfig(*configPath, getenv)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *adminListen != "" {
		cfg.AdminListen = *adminListen
	}
	logger, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h, closeGateway, err := newGateway(ctx, cfg, nil, logger, reg, stdout)
	if err != nil {
		return err
	}
	defer closeGateway()
	var tlsCfg *tls.Config
	if cfg.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.path(cfg.TLS.CertFile), cfg.path(cfg.TLS.KeyFile))
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := listenOn(cfg.Listen, tlsCfg)
	if err != nil {
		return err
	}
	logger.Info("listening", "addr", ln.Addr().String(), "tls", tlsCfg != nil)
	if cfg.AdminListen == "off" {
		return serveUntilDone(ctx, ln, h, logger)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("admin_listen: %w", err)
	}
	logger.Info("admin listening", "addr", adminLn.Addr().String())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serveUntilDone(gctx, ln, h, logger) })
	g.Go(func() error { return serveUntilDone(gctx, adminLn, adminHandler(reg), logger) })
	return g.Wait()
}

// adminHandler serves what operators scrape and probe, on a listener of
// its own so that it is never exposed with the data plane.
func adminHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	return mux
}

func newLogger(c LogConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(w, opts)), nil
}

// newGateway wires the data path: auth → tenancy → sessioncache → proxy.
// stsCreds is the gateway's own identity for calling STS; nil means the
// standard SDK credential chain. It is given to the STS client only: the
// proxy has no way to reach it, so a Bedrock call can never be signed with
// the gateway's own credentials.
//
// The returned close function stops background session refreshes.
func newGateway(ctx context.Context, cfg *Config, stsCreds aws.CredentialsProvider, logger *slog.Logger, reg prometheus.Registerer, stdout io.Writer) (http.Handler, func(), error) {
	keys, err := auth.NewKeyWatcher(cfg.path(cfg.Auth.APIKeysFile), cfg.Auth.KeysReload, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("auth.api_keys_file: %w", err)
	}
	var verifier *auth.OIDCVerifier
	if len(cfg.Auth.OIDC.Issuers) > 0 {
		if verifier, err = auth.NewOIDCVerifier(ctx, cfg.Auth.OIDC.auth()); err != nil {
			return nil, nil, fmt.Errorf("auth.oidc: %w", err)
		}
		// Discovery is lazy; say now if an issuer cannot be reached.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := verifier.Discover(dctx); err != nil {
			logger.Warn("OIDC discovery failed; tokens from that issuer are refused until it answers", "error", err)
		}
		cancel()
	}
	resolver, err := tenancy.NewResolver(cfg.tenancyConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("session: %w", err)
	}

	var awsCfg aws.Config
	if stsCreds == nil {
		awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.AWS.Region))
		if err != nil {
			return nil, nil, fmt.Errorf("load AWS configuration: %w", err)
		}
	} else {
		awsCfg = aws.Config{Region: cfg.AWS.Region, Credentials: stsCreds}
	}
	stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		if cfg.AWS.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.AWS.STSEndpoint)
		}
	})
	cache, err := sessioncache.New(sessioncache.Config{
		STS:              stsClient,
		Size:             cfg.Session.CacheSize,
		ExpiryMargin:     cfg.Session.ExpiryMargin,
		RefreshBefore:    cfg.Session.RefreshBefore,
		RefreshJitter:    cfg.Session.RefreshJitter,
		STSTimeout:       cfg.STS.Timeout,
		Rate:             cfg.STS.Rate,
		NewSessionShare:  cfg.STS.NewSessionShare,
		AdmissionWait:    cfg.STS.AdmissionWait,
		NegativeTTL:      cfg.STS.NegativeTTL,
		ThrottleCooldown: cfg.STS.ThrottleCooldown,
		Registerer:       reg,
	})
	if err != nil {
		return nil, nil, err
	}
	// The key store is re-read while the gateway runs, so a revocation
	// reaches every replica reading the same file within keys_reload.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		keys.Run(watchCtx)
	}()
	closeAll := func() {
		stopWatch()
		<-watchDone
		cache.Close()
	}
	limiter, err := limits.New(limits.Config{Size: cfg.Session.CacheSize})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	fail := func(err error) (http.Handler, func(), error) {
		closeAll()
		return nil, nil, err
	}
	endpoint, err := url.Parse(cfg.AWS.BedrockRuntimeEndpoint)
	if err != nil {
		return fail(fmt.Errorf("aws.bedrock_runtime_endpoint: %w", err))
	}
	metrics, err := usage.NewMetrics(usage.MetricsConfig{
		Registerer: reg,
		Teams:      cfg.Usage.MetricLabels.Teams,
		Tenants:    cfg.Usage.MetricLabels.Tenants,
		Models:     cfg.Usage.MetricLabels.Models,
	})
	if err != nil {
		return fail(err)
	}
	recorders := usage.Recorders{metrics}
	if cfg.Usage.Ledger != "off" {
		path := cfg.Usage.Ledger
		if path != "-" {
			path = cfg.path(path)
		}
		ledger, err := usage.NewLedger(usage.LedgerConfig{Path: path, Stdout: stdout,
			MaxBytes: cfg.Usage.LedgerMaxBytes, MaxBackups: cfg.Usage.LedgerMaxBackups})
		if err != nil {
			return fail(fmt.Errorf("usage.ledger: %w", err))
		}
		recorders = append(recorders, ledger)
		closeCache := closeAll
		// Sessions first, then the ledger, so no record is lost.
		closeAll = func() {
			closeCache()
			if err := ledger.Close(); err != nil {
				logger.Error("closing the usage ledger", "error", err)
			}
		}
	}
	p, err := proxy.New(proxy.Config{
		Endpoint:      endpoint,
		Region:        cfg.AWS.Region,
		Authenticator: &auth.Chain{Keys: auth.NewDynamicAuthenticator(keys.Current), OIDC: verifier, Headers: cfg.Auth.TrustedHeaders.auth()},
		Policy:        &policy{rules: resolver, limiter: limiter},
		Resolver:      resolver,
		Credentials:   cache,
		BasePath:      cfg.Proxy.BasePath,
		MaxBodyBytes:  cfg.Proxy.MaxBodyBytes,
		Logger:        logger,
		UserAgent:     "bedrock-gateway/" + version,

		DisableMetadataStamp:  !*cfg.Proxy.StampRequestMetadata,
		ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		StreamIdleTimeout:     cfg.Proxy.StreamIdleTimeout,
		Usage:                 recorders,
	})
	if err != nil {
		return fail(err)
	}
	// Say which identity the gateway calls STS as: the first thing an
	// operator checks when AssumeRole is denied. Not fatal: STS may be
	// briefly unreachable at start.
	idCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if out, err := stsClient.GetCallerIdentity(idCtx, &sts.GetCallerIdentityInput{}); err != nil {
		logger.Warn("could not confirm the gateway's own AWS identity", "error", err)
	} else {
		logger.Info("gateway AWS identity", "arn", aws.ToString(out.Arn), "invocation_role", cfg.Session.RoleARN)
	}
	return p, closeAll, nil
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

// newServer returns the HTTP server settings the gateway uses. There is no
// write timeout: a model stream may legitimately run for minutes.
func newServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// serveUntilDone serves on ln until ctx is done, then shuts down, giving
// open requests shutdownGrace to finish.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := newServer(h, logger)
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
