// Package fleet is the state replicas of one gateway share through Redis
// (or Valkey, its wire-compatible fork): the STS budget, sessions and
// limits, so that any number of replicas behave as one gateway.
//
// Redis is a helper, never a dependency of a request: every call has a
// short timeout, and after a few failures a breaker stops calling Redis for
// a while, so each replica falls back to what it can do alone (a local
// share of the STS budget, its own session cache, per-replica limits) and
// says so (Degraded, bedrock_gateway_fleet_degraded). It probes Redis again
// by itself and resumes shared mode when Redis answers.
package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultKeyPrefix        = "bedrock-gateway:"
	DefaultTimeout          = 50 * time.Millisecond
	DefaultExpectedReplicas = 2
)

// Breaker schedule: after a failed dial, or at least breakerFailures
// failed calls spread over breakerWindow with no success in between (Redis
// accepting but not answering), the store stops calling
// Redis for breakerBackoff, doubling up to maxBreakerBackoff while probes
// fail. The window keeps a burst of slow answers under load (a login
// storm on a busy replica) from passing for an outage: as long as some
// calls succeed, the fleet stays shared.
const (
	breakerFailures   = 3
	breakerWindow     = time.Second
	breakerBackoff    = time.Second
	maxBreakerBackoff = 10 * time.Second
)

// poolSize is the most connections a replica opens to Redis.
const poolSize = 256

// maxCallTimeout bounds any Redis call, whatever DoWithin is given.
const maxCallTimeout = 2 * time.Second

// ErrUnavailable: Redis did not answer in time, failed, or the breaker is
// open. Callers fall back to local behaviour.
var ErrUnavailable = errors.New("fleet store unavailable")

// Config is the YAML block `fleet:`. Fleet mode is on when Redis is set.
type Config struct {
	Redis RedisConfig `yaml:"redis"`
	// KeyPrefix namespaces every key, so that two gateways can share a
	// Redis.
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds each Redis call.
	Timeout time.Duration `yaml:"timeout"`
	// ExpectedReplicas is what a replica divides sts.rate by while Redis is
	// unreachable, so that a degraded fleet stays under the STS quota.
	ExpectedReplicas int `yaml:"expected_replicas"`
	// SessionKeyFile holds the AES-256 keys that encrypt shared sessions:
	// one "id:base64-key" per line, the first encrypting, all decrypting
	// (so keys can be rotated). Required in fleet mode.
	SessionKeyFile string `yaml:"session_key_file"`
}

// RedisConfig locates Redis. Exactly one of URL (a single server:
// redis://, or rediss:// for TLS), Addresses with MasterName (Sentinel) or
// Addresses alone (Cluster: its nodes, or one configuration endpoint).
type RedisConfig struct {
	URL        string   `yaml:"url"`
	Addresses  []string `yaml:"addresses"`
	MasterName string   `yaml:"master_name"`
	// TLS turns on TLS for Addresses (a rediss:// URL turns it on by
	// itself).
	TLS bool `yaml:"tls"`
	// TLSCAFile is a PEM bundle of the CAs that sign Redis's certificate,
	// trusted instead of the system's: a Redis or Valkey with a private
	// CA (cert-manager in the cluster). It needs TLS on.
	TLSCAFile string `yaml:"tls_ca_file"`
	// UsernameFile and PasswordFile hold the AUTH credentials (a
	// Kubernetes Secret); PasswordEnv names an environment variable
	// holding the password instead. Credentials in the URL are refused:
	// config files are not secret stores.
	UsernameFile string `yaml:"username_file"`
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
}

// DefaultConfig returns fleet mode off, with the other defaults.
func DefaultConfig() Config {
	return Config{KeyPrefix: DefaultKeyPrefix, Timeout: DefaultTimeout, ExpectedReplicas: DefaultExpectedReplicas}
}

// Enabled reports whether fleet mode is on.
func (c Config) Enabled() bool { return c.Redis.URL != "" || len(c.Redis.Addresses) > 0 }

// Validate reports every problem, each named by its key under fleet:.
// It has no side effects.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Timeout < 0 {
		add("timeout: must not be negative, got %v", c.Timeout)
	}
	if c.ExpectedReplicas < 0 {
		add("expected_replicas: must not be negative, got %d", c.ExpectedReplicas)
	}
	if !c.Enabled() {
		return errors.Join(errs...)
	}
	r := c.Redis
	if r.URL != "" && len(r.Addresses) > 0 {
		add("redis: set url or addresses, not both")
	}
	if r.URL != "" {
		if opts, err := redis.ParseURL(r.URL); err != nil {
			add("redis.url: %v", err)
		} else if opts.Password != "" || opts.Username != "" {
			add("redis.url: must not carry credentials; use redis.username_file, password_file or password_env")
		}
	}
	if tlsOn := strings.HasPrefix(r.URL, "rediss://") || r.URL == "" && r.TLS; r.TLSCAFile != "" && !tlsOn {
		add("redis.tls_ca_file: needs TLS on (a rediss:// url, or tls: true with addresses)")
	}
	if r.MasterName != "" && len(r.Addresses) == 0 {
		add("redis.master_name: needs redis.addresses (the Sentinels)")
	}
	if r.PasswordFile != "" && r.PasswordEnv != "" {
		add("redis.password_file: set password_file or password_env, not both")
	}
	if c.SessionKeyFile == "" {
		add("session_key_file: required in fleet mode (shared sessions are encrypted)")
	}
	if !strings.HasSuffix(c.KeyPrefix, ":") || len(c.KeyPrefix) > 64 {
		add("key_prefix: %q must end with ':' and be at most 64 characters", c.KeyPrefix)
	}
	return errors.Join(errs...)
}

// Options are what Open takes besides the config.
type Options struct {
	// Getenv reads PasswordEnv; default os.Getenv.
	Getenv func(string) string
	// Path resolves file names relative to the config file; default as is.
	Path func(string) string
	// Registerer receives the store's metrics. Optional.
	Registerer prometheus.Registerer
	// Logger receives state changes (never credentials). Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the breaker's clock; default time.Now.
	Now func() time.Time
}

// Store is the fleet's Redis, with the per-call timeout and the breaker.
// Safe for concurrent use.
type Store struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	log     *slog.Logger
	now     func() time.Time
	m       *storeMetrics

	mu        sync.Mutex
	failures  int           // failed calls since the last success
	firstFail time.Time     // when the first of them failed
	openUntil time.Time     // breaker open until then; zero: closed
	backoff   time.Duration // current open period
	probing   bool          // a probe call is in flight
}

// Open connects to Redis as cfg says. It does not wait for Redis: a
// replica starts (degraded) while Redis is down.
func Open(cfg Config, o Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("fleet: redis is not configured")
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Path == nil {
		o.Path = func(p string) string { return p }
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	quietRedisLog.Do(func() { redis.SetLogger(discardLogger{}) })
	username, password, err := credentials(cfg.Redis, o)
	if err != nil {
		return nil, err
	}
	uo := &redis.UniversalOptions{
		Username: username, Password: password,
		// Each call's own deadline (Do) bounds it; the socket timeouts are
		// only a backstop for calls allowed longer than cfg.Timeout.
		DialTimeout: 4 * cfg.Timeout, ReadTimeout: maxCallTimeout, WriteTimeout: maxCallTimeout,
		ContextTimeoutEnabled: true, PoolTimeout: maxCallTimeout,
		// One dial attempt: a refused connection is an answer (Redis is
		// down), not something to retry inside a request.
		DialerRetries: 1,
		MaxRetries:    -1, // a failed call falls back at once; the breaker decides when to retry
		// A login storm puts thousands of callers on Redis at once; a pool
		// too small for them turns waiting for a connection into timeouts
		// that look like Redis failing.
		PoolSize: poolSize,
	}
	if cfg.Redis.URL != "" {
		opts, err := redis.ParseURL(cfg.Redis.URL)
		if err != nil {
			return nil, fmt.Errorf("redis.url: %w", err)
		}
		uo.Addrs, uo.DB, uo.TLSConfig = []string{opts.Addr}, opts.DB, opts.TLSConfig
	} else {
		uo.Addrs, uo.MasterName = cfg.Redis.Addresses, cfg.Redis.MasterName
		// Addresses without a master name are a Cluster's, even one: a
		// configuration endpoint (ElastiCache). Left to count them, the
		// client would take a single address for a plain server and
		// send every key there, to be refused with MOVED.
		uo.IsClusterMode = cfg.Redis.MasterName == ""
		if cfg.Redis.TLS {
			uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if cfg.Redis.TLSCAFile != "" {
		pem, err := os.ReadFile(o.Path(cfg.Redis.TLSCAFile))
		if err != nil {
			return nil, fmt.Errorf("redis.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls_ca_file: %s holds no PEM certificate", cfg.Redis.TLSCAFile)
		}
		// Validate made sure TLS is on, so TLSConfig is set.
		uo.TLSConfig.MinVersion = max(uo.TLSConfig.MinVersion, tls.VersionTLS12)
		uo.TLSConfig.RootCAs = pool
	}
	s := &Store{rdb: redis.NewUniversalClient(uo), prefix: cfg.KeyPrefix, timeout: cfg.Timeout, log: o.Logger, now: o.Now}
	if s.m, err = newStoreMetrics(o.Registerer, s.Degraded); err != nil {
		s.rdb.Close()
		return nil, err
	}
	return s, nil
}

// quietRedisLog silences go-redis's own logger (a process-wide setting),
// which would print a line to stderr for every failed dial while Redis is
// down; the store logs the change of state itself, once.
var quietRedisLog sync.Once

type discardLogger struct{}

func (discardLogger) Printf(context.Context, string, ...any) {}

// credentials reads the AUTH username and password from files or the
// environment.
func credentials(r RedisConfig, o Options) (username, password string, err error) {
	read := func(key, path string) (string, error) {
		if path == "" {
			return "", nil
		}
		b, err := os.ReadFile(o.Path(path))
		if err != nil {
			return "", fmt.Errorf("redis.%s: %w", key, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if username, err = read("username_file", r.UsernameFile); err != nil {
		return "", "", err
	}
	if password, err = read("password_file", r.PasswordFile); err != nil {
		return "", "", err
	}
	if r.PasswordEnv != "" {
		password = o.Getenv(r.PasswordEnv)
	}
	return username, password, nil
}

// Key returns the namespaced key for parts, joined by ':'.
func (s *Store) Key(parts ...string) string { return s.prefix + strings.Join(parts, ":") }

// Client is the Redis client, for Lua scripts and pipelines run inside Do.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// Do runs f against Redis with the per-call timeout, unless the breaker is
// open. It returns ErrUnavailable (wrapping the cause) when Redis failed or
// is being avoided; redis.Nil and other answers from Redis count as
// success. op names the call in metrics.
func (s *Store) Do(ctx context.Context, op string, f func(ctx context.Context, rdb redis.UniversalClient) error) error {
	return s.DoWithin(ctx, op, s.timeout, f)
}

// DoWithin is Do with its own per-call timeout (at most maxCallTimeout),
// for a call whose fallback costs more than waiting: the STS budget, where
// a replica that gives up on Redis under load would admit on its local
// share on top of the fleet's.
func (s *Store) DoWithin(ctx context.Context, op string, timeout time.Duration, f func(ctx context.Context, rdb redis.UniversalClient) error) error {
	probe, ok := s.admit()
	if !ok {
		s.m.errors.WithLabelValues(op, "breaker").Inc()
		return fmt.Errorf("%w: breaker open", ErrUnavailable)
	}
	cctx, cancel := context.WithTimeout(ctx, min(timeout, maxCallTimeout))
	defer cancel()
	start := s.now()
	err := f(cctx, s.rdb)
	s.m.latency.WithLabelValues(op).Observe(s.now().Sub(start).Seconds())
	if err != nil && !errors.Is(err, redis.Nil) && !isRedisReply(err) {
		if ctx.Err() != nil {
			// The caller gave up: not Redis's fault.
			s.release(probe)
			return err
		}
		s.m.errors.WithLabelValues(op, "error").Inc()
		s.failed(probe, err)
		return fmt.Errorf("%w: %s: %v", ErrUnavailable, op, err)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		// Redis is up but refused the call: an ACL without the command
		// (NOPERM), maxmemory reached with noeviction (OOM), a replica
		// (READONLY). The caller falls back to local state as for an
		// outage, but the breaker stays closed and the replica is not
		// degraded, so this count is the only sign of it.
		s.m.errors.WithLabelValues(op, "reply").Inc()
	}
	s.succeeded(probe)
	return err
}

// isRedisReply reports whether err is an error reply from Redis (a script
// error, WRONGTYPE...): Redis answered, so it is up.
func isRedisReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, context.DeadlineExceeded)
}

// admit says whether a call may go to Redis now, and whether it is the
// breaker's probe.
func (s *Store) admit() (probe, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.openUntil.IsZero() {
		return false, true
	}
	if s.probing || s.now().Before(s.openUntil) {
		return false, false
	}
	s.probing = true
	return true, true
}

func (s *Store) release(probe bool) {
	if probe {
		s.mu.Lock()
		s.probing = false
		s.mu.Unlock()
	}
}

func (s *Store) failed(probe bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if probe {
		s.probing = false
		s.backoff = min(2*s.backoff, maxBreakerBackoff)
		s.openUntil = s.now().Add(s.backoff)
		return
	}
	now := s.now()
	if s.failures == 0 {
		s.firstFail = now
	}
	s.failures++
	// A refused or failed dial is Redis gone, not Redis slow: the breaker
	// opens at once (a blip costs one back-off, then a probe), so that no
	// caller is refused for want of a decision.
	var oe *net.OpError
	dialFailed := errors.As(err, &oe) && oe.Op == "dial"
	if s.openUntil.IsZero() && (dialFailed || s.failures >= breakerFailures && now.Sub(s.firstFail) >= breakerWindow) {
		s.backoff = breakerBackoff
		s.openUntil = now.Add(s.backoff)
		s.log.Warn("fleet: Redis unreachable; this replica runs degraded on local state until it answers", "error", err)
	}
}

func (s *Store) succeeded(probe bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = 0
	if probe || !s.openUntil.IsZero() {
		s.probing = false
		s.openUntil, s.backoff = time.Time{}, 0
		s.log.Info("fleet: Redis reachable again; shared mode resumed")
	}
}

// Degraded reports whether the breaker is open: the replica runs on local
// state.
func (s *Store) Degraded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.openUntil.IsZero()
}

// Close closes the Redis client.
func (s *Store) Close() error { return s.rdb.Close() }

type storeMetrics struct {
	latency *prometheus.HistogramVec // op
	errors  *prometheus.CounterVec   // op, kind
}

func newStoreMetrics(reg prometheus.Registerer, degraded func() bool) (*storeMetrics, error) {
	m := &storeMetrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bedrock_gateway_fleet_redis_duration_seconds",
			Help:    "Latency of Redis calls made for fleet state, by operation.",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bedrock_gateway_fleet_redis_errors_total",
			Help: "Redis calls for fleet state that failed or were not made because the breaker was open (kind: error, breaker, reply: Redis answered with an error).",
		}, []string{"op", "kind"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.latency, m.errors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bedrock_gateway_fleet_degraded",
		Help: "1 while this replica cannot reach Redis and runs on local state (local STS share, local sessions, per-replica limits).",
	}, func() float64 {
		if degraded() {
			return 1
		}
		return 0
	})} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register fleet metrics: %w", err)
		}
	}
	return m, nil
}
