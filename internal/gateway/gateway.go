package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bedrock-gateway/gateway/pkg/asyncjobs"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/policy"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/proxy"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/tracing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Options are what New takes besides the config: the process's own
// identity, outputs and hooks. Every field is optional.
type Options struct {
	// Credentials is the gateway's own AWS identity, used only to call
	// STS. Nil means the standard SDK credential chain (environment,
	// shared profile, web identity, container or instance role). It is
	// given to the STS client only: the proxy has no way to reach it, so a
	// Bedrock call can never be signed with the gateway's own credentials.
	Credentials aws.CredentialsProvider
	// Logger receives the gateway's logs and access lines. Default
	// slog.Default().
	Logger *slog.Logger
	// LogLevel, if set, is the level Logger filters by; Reload sets it
	// from log.level.
	LogLevel *slog.LevelVar
	// Registry receives every metric and is served on /metrics. Default a
	// new registry with the Go and process collectors.
	Registry *prometheus.Registry
	// Stdout receives the usage ledger when usage.ledger is "-". Default
	// os.Stdout.
	Stdout io.Writer
	// Load re-reads the configuration for Reload (the file, with flag
	// overrides applied). Without it Reload fails.
	Load func() (*Config, error)
	// Getenv reads the environment variables the config names
	// (fleet.redis.password_env, tracing.headers_env). Default os.Getenv.
	Getenv func(string) string
	// Version is reported in bedrock_gateway_build_info and sent upstream
	// in the User-Agent.
	Version string
}

// Gateway is a running gateway: a core built once per process, and a
// generation built from each config it loads.
//
// The core holds what must outlive a reload: the STS client (and with it
// the gateway's own identity), the session cache (sessions are keyed by
// everything that reaches STS, so a reload that changes a role or a tag
// key makes new sessions at once and old ones simply age out), the limiter
// (a reload does not hand everyone a fresh budget), the metrics
// (registered once: a registry refuses a second collector of the same
// name), the ledger, the async ownership store, readiness and the TLS
// certificate. Settings that
// shape the core, the listeners or the logger can change only with a
// restart; see restartOnly.
//
// A generation holds everything else: the key store watcher, the OIDC
// verifier, the session naming rules, the policy and the proxy with its
// upstream transport.
type Gateway struct {
	cfg     *Config // the running config; restart-only settings never change
	opts    Options
	log     *slog.Logger
	reg     *prometheus.Registry
	sts     *sts.Client
	cache   *sessioncache.Cache
	limiter *limits.Limiter
	// policyLimiter enforces limits: limiter alone, or in fleet mode the
	// fleet limiter in front of it.
	policyLimiter policy.Limiter
	fleetLimits   *fleet.Limiter // nil unless fleet mode is on
	// budgets outlives config reloads, which Reload it: spend so far
	// stays counted.
	budgets     *budget.Tracker
	endpoint    *url.URL
	fleet       *fleet.Store   // nil unless fleet mode is on
	roots       *x509.CertPool // aws.ca_bundle for STS and Bedrock; nil: the system's
	sinks       usage.Sinks
	ledger      *usage.Ledger    // nil when usage.ledger is off
	owners      *asyncjobs.Store // single replica: the ownership file; nil in fleet mode
	asyncOwners proxy.AsyncOwners
	metrics     *proxy.Metrics
	ops         *opsMetrics
	ready       *readiness
	stsHealth   *stsHealth
	// stopHealth stops the STS health checks; healthDone is closed when
	// they have.
	stopHealth context.CancelFunc
	healthDone chan struct{}
	tls        *tls.Config // nil without tls.cert_file
	// tracing is the tracer provider every generation's proxy traces
	// with (no-op when tracing is off); Close flushes it.
	tracing *tracing.Provider
	sw      *switcher

	reloadMu sync.Mutex // one reload at a time
}

// New builds a gateway from a validated cfg. ctx bounds the start-up
// checks (OIDC discovery, the gateway's own identity); nothing keeps it.
// Close releases what New built.
func New(ctx context.Context, cfg *Config, opts Options) (g *Gateway, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
		opts.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	g = &Gateway{cfg: cfg, opts: opts, log: opts.Logger, reg: opts.Registry}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()
	if g.endpoint, err = url.Parse(cfg.AWS.BedrockRuntimeEndpoint); err != nil {
		return nil, fmt.Errorf("aws.bedrock_runtime_endpoint: %w", err)
	}
	if g.roots, err = loadCABundle(cfg.Path(cfg.AWS.CABundle)); err != nil {
		return nil, fmt.Errorf("aws.ca_bundle: %w", err)
	}
	if g.sts, err = newSTSClient(ctx, cfg.AWS, opts.Credentials, g.roots); err != nil {
		return nil, err
	}
	if g.ops, err = newOpsMetrics(g.reg, opts.Version); err != nil {
		return nil, err
	}
	if g.tracing, err = tracing.New(ctx, cfg.Tracing, tracing.Options{Getenv: opts.Getenv, Version: opts.Version}); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	closers = append(closers, g.closeTracing)
	if g.metrics, err = proxy.NewMetrics(g.reg); err != nil {
		return nil, err
	}
	mc := cfg.metricsConfig()
	mc.Registerer = g.reg
	usageMetrics, err := usage.NewMetrics(mc)
	if err != nil {
		return nil, err
	}
	g.sinks = usage.Sinks{usageMetrics}
	if lc := cfg.ledgerConfig(); lc.Path != "" {
		lc.Stdout = opts.Stdout
		if g.ledger, err = usage.NewLedger(lc); err != nil {
			return nil, fmt.Errorf("usage.ledger: %w", err)
		}
		closers = append(closers, g.closeLedger)
		if err := registerLedgerMetrics(g.reg, g.ledger); err != nil {
			return nil, err
		}
		g.sinks = append(g.sinks, g.ledger)
	}
	if cfg.Fleet.Enabled() {
		if g.fleet, err = g.openFleet(); err != nil {
			return nil, err
		}
		closers = append(closers, g.closeFleet)
	}
	if g.fleet != nil {
		// Every replica must see who started a job, whichever took the
		// Start: the record lives in Redis.
		if g.asyncOwners, err = fleet.NewAsyncOwners(g.fleet, cfg.Async.OwnershipRetention); err != nil {
			return nil, err
		}
	} else {
		if g.owners, err = g.openOwners(); err != nil {
			return nil, err
		}
		closers = append(closers, g.closeOwners)
		g.asyncOwners = g.owners
	}
	if g.limiter, err = limits.New(limits.Config{Size: cfg.SessionCache.Size}); err != nil {
		return nil, err
	}
	g.policyLimiter = g.limiter
	sc := cfg.sessionCacheConfig()
	sc.STS, sc.Registerer = g.sts, g.reg
	if g.fleet != nil {
		if err := g.shareState(&sc); err != nil {
			return nil, err
		}
		if sc.Shared, err = g.sharedSessions(); err != nil {
			return nil, err
		}
	}
	if g.budgets, err = budget.New(cfg.Budgets, budget.Options{Fleet: g.fleet, Registerer: g.reg, Logger: g.log}); err != nil {
		return nil, fmt.Errorf("budgets: %w", err)
	}
	closers = append(closers, g.closeBudgets)
	g.rebuildBudgets(cfg.Budgets)
	if g.cache, err = sessioncache.New(sc); err != nil {
		return nil, err
	}
	closers = append(closers, g.cache.Close)
	if cfg.TLS.CertFile != "" {
		if g.tls, err = g.newTLSConfig(); err != nil {
			return nil, err
		}
	}
	g.ready = &readiness{}
	g.stsHealth = &stsHealth{check: g.checkSTS, interval: cfg.Admin.STSCheckInterval, timeout: 5 * time.Second,
		now: time.Now, logger: g.log}
	if err := registerAll(g.reg, g.stsHealth.collectors()...); err != nil {
		return nil, err
	}
	g.stsHealth.record(g.logIdentity(ctx))
	hctx, stop := context.WithCancel(context.Background())
	g.stopHealth, g.healthDone = stop, make(chan struct{})
	go func() {
		defer close(g.healthDone)
		g.stsHealth.run(hctx)
	}()
	closers = append(closers, g.stopHealthChecks)
	gen, err := g.build(ctx, cfg)
	if err != nil {
		return nil, err
	}
	g.sw = newSwitcher(gen)
	return g, nil
}

// loadCABundle reads a PEM bundle of trusted certificate authorities;
// none (nil) for an empty path, which means the system's roots.
func loadCABundle(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// newSTSClient is the client for the gateway's own STS calls. roots, if
// set, are the only certificate authorities it trusts, as for Bedrock:
// the SDK would read AWS_CA_BUNDLE on its own, but only for STS.
func newSTSClient(ctx context.Context, c AWSConfig, creds aws.CredentialsProvider, roots *x509.CertPool) (*sts.Client, error) {
	var httpClient aws.HTTPClient = awshttp.NewBuildableClient()
	if roots != nil {
		httpClient = awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		})
	}
	awsCfg := aws.Config{Region: c.Region, Credentials: creds, HTTPClient: httpClient}
	if creds == nil {
		var err error
		if awsCfg, err = awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(c.Region), awsconfig.WithHTTPClient(httpClient)); err != nil {
			return nil, fmt.Errorf("load AWS configuration: %w", err)
		}
	}
	return sts.NewFromConfig(awsCfg, func(o *sts.Options) {
		if c.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(c.STSEndpoint)
		}
	}), nil
}

// newTLSConfig serves the data plane's certificate, reloaded when its
// files change, and exports its expiry.
func (g *Gateway) newTLSConfig() (*tls.Config, error) {
	certs, err := newCertReloader(g.cfg.Path(g.cfg.TLS.CertFile), g.cfg.Path(g.cfg.TLS.KeyFile), certCheckInterval, time.Now, g.log)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	if err := g.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bedrock_gateway_tls_certificate_expiry_timestamp_seconds",
		Help: "Unix time at which the data plane's current TLS certificate expires.",
	}, certs.notAfter)); err != nil {
		return nil, err
	}
	return &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}, nil
}

// certCheckInterval is how often, at most, the TLS files are checked for
// a new certificate.
const certCheckInterval = 5 * time.Second

// Handler is the data plane: every request is served by the generation
// current when it arrived.
func (g *Gateway) Handler() http.Handler { return g.sw }

// TLSConfig is the data plane's TLS configuration (certificate reloaded
// from tls.cert_file and tls.key_file), or nil when the config has none.
func (g *Gateway) TLSConfig() *tls.Config { return g.tls }

// Config returns the running configuration. The caller must not change it.
func (g *Gateway) Config() *Config { return g.sw.current().cfg }

// Close retires the current generation and waits (at most timeout) for the
// requests that hold any generation, then stops background session
// refreshes and closes the ledger, so that no record is lost. Call it
// after the listeners have stopped.
func (g *Gateway) Close(timeout time.Duration) {
	if !g.sw.close(timeout) {
		g.log.Error("requests still hold a config after shutdown", "waited", timeout.String())
	}
	g.stopHealthChecks()
	g.cache.Close()
	g.closeLedger()
	g.closeOwners()
	g.closeBudgets() // before the fleet store it sends spend to
	g.closeFleet()
	g.closeTracing() // last: the spans of every request are ended
}

// closeTracing exports the spans still buffered and stops the exporter.
func (g *Gateway) closeTracing() {
	if err := g.tracing.Close(); err != nil {
		g.log.Error("tracing: flushing spans at shutdown", "error", err)
	}
}

// rebuildBudgets counts, in a single replica, what the ledger records as
// spent in the budgets' current periods: the ledger is where spend
// survives a restart. In fleet mode Redis holds the fleet's spend.
func (g *Gateway) rebuildBudgets(budgets budget.Config) {
	if g.fleet != nil {
		return
	}
	path := g.cfg.ledgerConfig().Path
	if g.ledger == nil || path == "-" {
		if len(budgets) > 0 {
			g.log.Warn("budgets: spend so far is not rebuilt after a restart: usage.ledger is not a file (set a ledger file, or use fleet mode)")
		}
		return
	}
	if err := g.budgets.RebuildFromLedger(path); err != nil {
		g.log.Error("budgets: reading the spend so far from the usage ledger failed; counting from zero", "error", err)
	}
}

func (g *Gateway) closeBudgets() {
	if g.budgets == nil {
		return
	}
	if err := g.budgets.Close(); err != nil {
		g.log.Error("budgets", "error", err)
	}
	g.budgets = nil
}

// shareState puts the fleet's shared STS budget and limits in place of
// the replica's own (each falls back to them while Redis is unavailable).
func (g *Gateway) shareState(sc *sessioncache.Config) error {
	d := sc.WithDefaults()
	bc := fleet.BudgetConfig{Rate: d.Rate, NewSessionShare: d.NewSessionShare, AdmissionWait: d.AdmissionWait,
		ThrottleCooldown: d.ThrottleCooldown, Registerer: g.reg}
	if n := g.cfg.Fleet.ExpectedReplicas; n > 0 {
		bc.LocalRate = d.Rate / float64(n) // else NewBudget's default share
	}
	budget, err := fleet.NewBudget(g.fleet, bc)
	if err != nil {
		return err
	}
	sc.Budget = budget
	if g.fleetLimits, err = fleet.NewLimiter(g.fleet, g.limiter, g.reg); err != nil {
		return err
	}
	g.policyLimiter = g.fleetLimits
	return nil
}

// openFleet connects to the fleet's Redis. It does not wait for Redis: a
// replica starts degraded, on local state, while Redis is down.
func (g *Gateway) openFleet() (*fleet.Store, error) {
	getenv := g.opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	s, err := fleet.Open(g.cfg.Fleet, fleet.Options{Getenv: getenv, Path: g.cfg.Path, Registerer: g.reg, Logger: g.log})
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	g.log.Info("fleet mode: STS budget, sessions and limits are shared through Redis", "key_prefix", g.cfg.Fleet.KeyPrefix)
	return s, nil
}

func (g *Gateway) closeFleet() {
	if g.fleetLimits != nil {
		g.fleetLimits.Flush() // token spends still on their way to Redis
	}
	if g.fleet != nil {
		g.fleet.Close()
		g.fleet = nil
	}
}

func (g *Gateway) stopHealthChecks() {
	g.stopHealth()
	<-g.healthDone
}

// openOwners opens the record of who started each asynchronous
// invocation, which GetAsyncInvoke and ListAsyncInvokes are filtered by.
func (g *Gateway) openOwners() (*asyncjobs.Store, error) {
	ac := g.cfg.asyncConfig()
	ac.Logger = g.log
	owners, err := asyncjobs.Open(ac)
	if err != nil {
		return nil, fmt.Errorf("async.ownership_file: %w", err)
	}
	if ac.Path == "" {
		g.log.Warn("async.ownership_file is not set: who started each asynchronous invocation is kept in memory only, " +
			"and after a restart callers no longer see the jobs they started; set it to keep them")
	}
	return owners, nil
}

func (g *Gateway) closeOwners() {
	if g.owners == nil {
		return
	}
	if err := g.owners.Close(); err != nil {
		g.log.Error("closing the async ownership file", "error", err)
	}
}

func (g *Gateway) closeLedger() {
	if g.ledger != nil {
		if err := g.ledger.Close(); err != nil {
			g.log.Error("closing the usage ledger", "error", err)
		}
	}
}

// checkSTS calls GetCallerIdentity with the gateway's own identity.
func (g *Gateway) checkSTS(ctx context.Context) error {
	_, err := g.sts.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	return err
}

// logIdentity says which identity the gateway calls STS as: the first
// thing an operator checks when AssumeRole is denied. A failure is not
// fatal (STS may be briefly unreachable at start); it is the first STS
// health result.
func (g *Gateway) logIdentity(ctx context.Context) error {
	idCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := g.sts.GetCallerIdentity(idCtx, &sts.GetCallerIdentityInput{})
	if err != nil {
		g.log.Warn("could not confirm the gateway's own AWS identity", "error", err)
		return err
	}
	g.log.Info("gateway AWS identity", "arn", aws.ToString(out.Arn), "invocation_role", g.cfg.Session.RoleARN)
	return nil
}

// build makes a generation from cfg. ctx bounds OIDC discovery; the key
// store watcher runs until the generation is stopped.
func (g *Gateway) build(ctx context.Context, cfg *Config) (*generation, error) {
	keys, err := auth.NewKeyWatcher(cfg.Path(cfg.Auth.APIKeysFile), cfg.Auth.KeysReload, g.log)
	if err != nil {
		return nil, fmt.Errorf("auth.api_keys_file: %w", err)
	}
	var verifier *auth.OIDCVerifier
	if len(cfg.Auth.OIDC.Issuers) > 0 {
		if verifier, err = auth.NewOIDCVerifier(ctx, cfg.Auth.OIDC); err != nil {
			return nil, fmt.Errorf("auth.oidc: %w", err)
		}
		// Discovery is lazy; say now if an issuer cannot be reached.
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := verifier.Discover(dctx); err != nil {
			g.log.Warn("OIDC discovery failed; tokens from that issuer are refused until it answers", "error", err)
		}
		cancel()
	}
	resolver, err := tenancy.NewResolver(cfg.Session)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	pol, err := policy.New(cfg.Policy, g.policyLimiter)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	prices, err := pricing.New(cfg.Pricing)
	if err != nil {
		return nil, err // "pricing." named by New
	}
	pc := cfg.proxySettings()
	pc.Prices = prices
	pc.Endpoint, pc.Region, pc.RootCAs = g.endpoint, g.cfg.AWS.Region, g.roots
	pc.Authenticator = &auth.Authenticator{Keys: auth.NewDynamicKeyVerifier(keys.Current), OIDC: verifier, Headers: cfg.Auth.TrustedHeaders}
	pc.Resolver, pc.Policy, pc.Credentials = resolver, pol, g.cache
	if g.budgets != nil {
		pc.Budgets = g.budgets
	}
	pc.Logger, pc.UserAgent = g.log, "bedrock-gateway/"+g.opts.Version
	pc.Usage, pc.Metrics = g.sinks, g.metrics
	pc.AsyncOwners = g.asyncOwners
	pc.TracerProvider = g.tracing.TracerProvider()
	p, err := proxy.New(pc)
	if err != nil {
		return nil, err
	}
	// The key store is re-read while the generation serves, so a
	// revocation reaches every replica reading the same file within
	// auth.keys_reload.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		keys.Run(watchCtx)
	}()
	return &generation{cfg: cfg, h: p, stop: func() {
		stopWatch()
		<-watchDone
		p.Close()
	}}, nil
}
