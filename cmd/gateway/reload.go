package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/proxy"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// A running gateway is a core, built once per process, and a generation,
// built from each config it loads.
//
// The core holds what must outlive a reload: the STS client (and with it
// the gateway's own identity), the session cache (sessions are keyed by
// everything that reaches STS, so a reload that changes a role or a tag
// key makes new sessions at once and old ones simply age out), the limiter
// (a reload does not hand everyone a fresh budget), the usage metrics
// (registered once: a registry refuses a second collector of the same
// name) and the ledger. Settings that shape the core, the listeners or the
// logger can change only with a restart; see restartOnly.
//
// A generation holds everything else: the key store watcher, the OIDC
// verifier, the tenancy rules and the proxy with its upstream transport.
type core struct {
	cfg       *Config // the config the core was built from
	logger    *slog.Logger
	sts       *sts.Client
	cache     *sessioncache.Cache
	limiter   *limits.Limiter
	endpoint  *url.URL
	recorders usage.Recorders
	ledger    *usage.Ledger // nil when usage.ledger is off
	metrics   *proxy.Metrics
}

// newCore builds the process-lifetime part of the gateway. stsCreds is the
// gateway's own identity for calling STS; nil means the standard SDK
// credential chain. It is given to the STS client only: the proxy has no
// way to reach it, so a Bedrock call can never be signed with the
// gateway's own credentials.
func newCore(ctx context.Context, cfg *Config, stsCreds aws.CredentialsProvider, logger *slog.Logger, reg prometheus.Registerer, stdout io.Writer) (*core, error) {
	endpoint, err := url.Parse(cfg.AWS.BedrockRuntimeEndpoint)
	if err != nil {
		return nil, fmt.Errorf("aws.bedrock_runtime_endpoint: %w", err)
	}
	var awsCfg aws.Config
	if stsCreds == nil {
		awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(cfg.AWS.Region))
		if err != nil {
			return nil, fmt.Errorf("load AWS configuration: %w", err)
		}
	} else {
		awsCfg = aws.Config{Region: cfg.AWS.Region, Credentials: stsCreds}
	}
	stsClient := sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		if cfg.AWS.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.AWS.STSEndpoint)
		}
	})
	limiter, err := limits.New(limits.Config{Size: cfg.Session.CacheSize})
	if err != nil {
		return nil, err
	}
	metrics, err := usage.NewMetrics(usage.MetricsConfig{
		Registerer: reg,
		Teams:      cfg.Usage.MetricLabels.Teams,
		Tenants:    cfg.Usage.MetricLabels.Tenants,
		Models:     cfg.Usage.MetricLabels.Models,
	})
	if err != nil {
		return nil, err
	}
	proxyMetrics, err := proxy.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	c := &core{cfg: cfg, logger: logger, sts: stsClient, limiter: limiter, endpoint: endpoint, recorders: usage.Recorders{metrics}, metrics: proxyMetrics}
	if cfg.Usage.Ledger != "off" {
		path := cfg.Usage.Ledger
		if path != "-" {
			path = cfg.path(path)
		}
		c.ledger, err = usage.NewLedger(usage.LedgerConfig{Path: path, Stdout: stdout,
			MaxBytes: cfg.Usage.LedgerMaxBytes, MaxBackups: cfg.Usage.LedgerMaxBackups})
		if err != nil {
			return nil, fmt.Errorf("usage.ledger: %w", err)
		}
		c.recorders = append(c.recorders, c.ledger)
		if reg != nil {
			ledger := c.ledger
			for _, m := range []prometheus.Collector{
				prometheus.NewCounterFunc(prometheus.CounterOpts{
					Name: "bedrock_gateway_usage_ledger_write_errors_total",
					Help: "Usage records lost because the ledger could not be written (encoding, write, open or rotation failures).",
				}, func() float64 { return float64(ledger.WriteErrors()) }),
				prometheus.NewCounterFunc(prometheus.CounterOpts{
					Name: "bedrock_gateway_usage_ledger_dropped_total",
					Help: "Usage records that arrived after the ledger was closed.",
				}, func() float64 { return float64(ledger.Dropped()) }),
			} {
				if err := reg.Register(m); err != nil {
					ledger.Close()
					return nil, fmt.Errorf("register ledger metrics: %w", err)
				}
			}
		}
	}
	c.cache, err = sessioncache.New(sessioncache.Config{
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
		if c.ledger != nil {
			c.ledger.Close()
		}
		return nil, err
	}
	return c, nil
}

// checkSTS calls GetCallerIdentity with the gateway's own identity.
func (c *core) checkSTS(ctx context.Context) error {
	_, err := c.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}

// logIdentity says which identity the gateway calls STS as: the first
// thing an operator checks when AssumeRole is denied. A failure is not
// fatal (STS may be briefly unreachable at start); it is returned for
// readiness.
func (c *core) logIdentity(ctx context.Context) error {
	idCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := c.sts.GetCallerIdentity(idCtx, &sts.GetCallerIdentityInput{})
	if err != nil {
		c.logger.Warn("could not confirm the gateway's own AWS identity", "error", err)
		return err
	}
	c.logger.Info("gateway AWS identity", "arn", aws.ToString(out.Arn), "invocation_role", c.cfg.Session.RoleARN)
	return nil
}

// close stops background session refreshes, then closes the ledger, so no
// record is lost. Call it after every generation is closed.
func (c *core) close() {
	c.cache.Close()
	if c.ledger != nil {
		if err := c.ledger.Close(); err != nil {
			c.logger.Error("closing the usage ledger", "error", err)
		}
	}
}

// build makes a generation from cfg on top of the core. ctx bounds OIDC
// discovery; the key store watcher runs until the generation is closed.
func (c *core) build(ctx context.Context, cfg *Config) (*generation, error) {
	keys, err := auth.NewKeyWatcher(cfg.path(cfg.Auth.APIKeysFile), cfg.Auth.KeysReload, c.logger)
	if err != nil {
		return nil, fmt.Errorf("auth.api_keys_file: %w", err)
	}
	var verifier *auth.OIDCVerifier
	if len(cfg.Auth.OIDC.Issuers) > 0 {
		if verifier, err = auth.NewOIDCVerifier(ctx, cfg.Auth.OIDC.auth()); err != nil {
			return nil, fmt.Errorf("auth.oidc: %w", err)
		}
		// Discovery is lazy; say now if an issuer cannot be reached.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := verifier.Discover(dctx); err != nil {
			c.logger.Warn("OIDC discovery failed; tokens from that issuer are refused until it answers", "error", err)
		}
		cancel()
	}
	resolver, err := tenancy.NewResolver(cfg.tenancyConfig())
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	// The transport proxy.New would make, kept so that closing the
	// generation can close its idle connections.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	tr.ResponseHeaderTimeout = cfg.Proxy.ResponseHeaderTimeout
	p, err := proxy.New(proxy.Config{
		Endpoint:      c.endpoint,
		Region:        c.cfg.AWS.Region,
		Authenticator: &auth.Chain{Keys: auth.NewDynamicAuthenticator(keys.Current), OIDC: verifier, Headers: cfg.Auth.TrustedHeaders.auth()},
		Policy:        &policy{rules: resolver, limiter: c.limiter},
		Resolver:      resolver,
		Credentials:   c.cache,
		BasePath:      cfg.Proxy.BasePath,
		MaxBodyBytes:  cfg.Proxy.MaxBodyBytes,
		Transport:     tr,
		Logger:        c.logger,
		UserAgent:     "bedrock-gateway/" + version,

		DisableMetadataStamp:  !*cfg.Proxy.StampRequestMetadata,
		ResponseHeaderTimeout: cfg.Proxy.ResponseHeaderTimeout,
		StreamIdleTimeout:     cfg.Proxy.StreamIdleTimeout,
		Usage:                 c.recorders,
		Metrics:               c.metrics,
	})
	if err != nil {
		return nil, err
	}
	// The key store is re-read while the generation serves, so a
	// revocation reaches every replica reading the same file within
	// keys_reload.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		keys.Run(watchCtx)
	}()
	return &generation{cfg: cfg, h: p, stop: func() {
		stopWatch()
		<-watchDone
		tr.CloseIdleConnections()
	}}, nil
}

// generation is the config-dependent part of a running gateway. Requests
// hold it while they are served, so one that started before a reload
// finishes with the config it started with; it is stopped when it is both
// retired and no longer held.
type generation struct {
	cfg  *Config
	h    http.Handler
	stop func()

	mu      sync.Mutex
	refs    int
	retired bool
	stopped bool
}

// acquire holds g for one request; it fails once g is retired.
func (g *generation) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.retired {
		return false
	}
	g.refs++
	return true
}

func (g *generation) release() {
	g.mu.Lock()
	g.refs--
	last := g.retired && g.refs == 0 && !g.stopped
	if last {
		g.stopped = true
	}
	g.mu.Unlock()
	if last {
		g.stop()
	}
}

// retire stops new requests from acquiring g and stops g once the last
// request holding it is done (at once if none is).
func (g *generation) retire() {
	g.mu.Lock()
	g.retired = true
	last := g.refs == 0 && !g.stopped
	if last {
		g.stopped = true
	}
	g.mu.Unlock()
	if last {
		g.stop()
	}
}

// switcher is the data-plane handler: it serves each request with the
// current generation, and swaps generations atomically.
type switcher struct {
	cur  atomic.Pointer[generation]
	open sync.WaitGroup // generations not yet stopped
}

func newSwitcher(g *generation) *switcher {
	s := &switcher{}
	s.install(g)
	s.cur.Store(g)
	return s
}

// install makes g's stop known to s.open.
func (s *switcher) install(g *generation) {
	s.open.Add(1)
	stop := g.stop
	g.stop = func() {
		defer s.open.Done()
		stop()
	}
}

// swap makes g current and retires the previous generation.
func (s *switcher) swap(g *generation) {
	s.install(g)
	old := s.cur.Swap(g)
	old.retire()
}

func (s *switcher) current() *generation { return s.cur.Load() }

func (s *switcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := s.cur.Load()
	for !g.acquire() {
		// g was retired after being replaced, so the pointer has moved on
		// unless s is closed.
		next := s.cur.Load()
		if next == g {
			// Bedrock-shaped, like every answer the gateway gives itself.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Amzn-ErrorType", "ServiceUnavailableException")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"message":"the gateway is shutting down; retry"}`)
			return
		}
		g = next
	}
	defer g.release()
	g.h.ServeHTTP(w, r)
}

// close retires the current generation and waits, at most timeout, for
// every generation to stop.
func (s *switcher) close(timeout time.Duration) bool {
	s.cur.Load().retire()
	done := make(chan struct{})
	go func() {
		s.open.Wait()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// restartOnly lists the settings a reload cannot change, by YAML path:
// they shape the listeners, the logger or the core. A reload that changes
// one keeps the running value and says so.
func restartOnly(c *Config) []struct {
	key string
	val any
} {
	return []struct {
		key string
		val any
	}{
		{"listen", c.Listen},
		{"admin_listen", c.AdminListen},
		{"admin_pprof", c.AdminPprof},
		{"tls", c.TLS}, // the files' content is reloaded when it changes
		{"server", c.Server},
		{"aws", c.AWS},
		{"session.cache_size", c.Session.CacheSize},
		{"session.expiry_margin", c.Session.ExpiryMargin},
		{"session.refresh_before", c.Session.RefreshBefore},
		{"session.refresh_jitter", c.Session.RefreshJitter},
		{"sts", c.STS},
		{"usage", c.Usage},
		{"log.format", c.Log.Format},
	}
}

// keepRestartOnly copies every restartOnly setting of running into next
// and returns the paths whose values differed.
func keepRestartOnly(next, running *Config) []string {
	var changed []string
	a, b := restartOnly(running), restartOnly(next)
	for i := range a {
		if !reflect.DeepEqual(a[i].val, b[i].val) {
			changed = append(changed, a[i].key)
		}
	}
	next.Listen, next.AdminListen, next.AdminPprof = running.Listen, running.AdminListen, running.AdminPprof
	next.TLS, next.Server, next.AWS, next.STS, next.Usage = running.TLS, running.Server, running.AWS, running.STS, running.Usage
	next.Session.CacheSize = running.Session.CacheSize
	next.Session.ExpiryMargin = running.Session.ExpiryMargin
	next.Session.RefreshBefore, next.Session.RefreshJitter = running.Session.RefreshBefore, running.Session.RefreshJitter
	next.Log.Format = running.Log.Format
	return changed
}

// reloader reloads the config file into a running gateway.
type reloader struct {
	path    string
	load    func(path string) (*Config, error) // loadConfig plus flag overrides
	core    *core
	sw      *switcher
	level   *slog.LevelVar
	logger  *slog.Logger
	metrics *opsMetrics
	mu      sync.Mutex // one reload at a time
}

// reload loads, validates and builds the config file anew and swaps it
// in. On any error the running generation keeps serving and the error is
// returned (and logged, and counted).
func (r *reloader) reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// External rotation of the ledger file (rename, then SIGHUP) works
	// whether or not the new config is valid.
	if r.core.ledger != nil {
		if err := r.core.ledger.Reopen(); err != nil {
			r.logger.Error("reopening the usage ledger", "error", err)
		}
	}
	err := r.reloadLocked(ctx)
	if err != nil {
		r.logger.Error("config reload refused; keeping the running config", "path", r.path, "error", err)
		if r.metrics != nil {
			r.metrics.reloads.WithLabelValues("failure").Inc()
			r.metrics.reloadOK.Set(0)
		}
		return err
	}
	if r.metrics != nil {
		r.metrics.reloads.WithLabelValues("success").Inc()
		r.metrics.reloadOK.Set(1)
		r.metrics.reloadTime.SetToCurrentTime()
	}
	return nil
}

func (r *reloader) reloadLocked(ctx context.Context) error {
	next, err := r.load(r.path)
	if err != nil {
		return err
	}
	if changed := keepRestartOnly(next, r.core.cfg); len(changed) > 0 {
		r.logger.Warn("config reload: these settings need a restart to change; keeping their running values", "keys", changed)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(next.Log.Level)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	g, err := r.core.build(ctx, next)
	if err != nil {
		return err
	}
	r.sw.swap(g)
	if r.level != nil {
		r.level.Set(level)
	}
	r.logger.Info("config reloaded", "path", r.path)
	return nil
}
