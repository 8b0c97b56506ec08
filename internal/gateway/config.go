// Package gateway turns a configuration into a running gateway: it loads,
// defaults and validates the YAML configuration, builds the process (STS
// client, session cache, authentication, session naming, policy, proxy,
// usage ledger and metrics) and swaps in new configurations on reload.
// cmd/gateway keeps flags, subcommands, signals and listeners.
//
// The configuration is layered so that no default and no rule is written
// twice: each block of the YAML is either a package's own Config (decoded
// straight into it, so its yaml tags are the schema) or a small struct here
// that maps onto one. Default returns every setting's default, taken from
// the packages' exported defaults; a config file is decoded over it, so a
// key left out keeps its default and a key written as zero or "" means
// zero or "". Validate asks each package to validate its part and prefixes
// each problem with its YAML path.
package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/internal/endpoint"
	"github.com/bedrock-gateway/gateway/internal/logjson"
	"github.com/bedrock-gateway/gateway/internal/logwriter"
	"github.com/bedrock-gateway/gateway/pkg/asyncjobs"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/fleet"
	"github.com/bedrock-gateway/gateway/pkg/policy"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/proxy"
	"github.com/bedrock-gateway/gateway/pkg/server"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/tracing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Config is the gateway's YAML configuration. Unknown keys are errors.
// README.md's configuration reference documents every key; a test keeps
// the two in step.
type Config struct {
	// Listen is the data-plane address; the -listen flag overrides it.
	Listen string `yaml:"listen"`
	// TLS, when both files are set, serves HTTPS (HTTP/1.1 and HTTP/2) on
	// Listen. AWS SDKs for Go send bearer tokens only over HTTPS. Without
	// it, Listen serves HTTP/1.1 and h2c (HTTP/2 with prior knowledge).
	TLS TLSConfig `yaml:"tls"`
	// Admin is the listener for probes, metrics and profiles, kept off the
	// data plane.
	Admin AdminConfig `yaml:"admin"`
	// Server bounds what the data-plane listener accepts and how it stops.
	Server server.Config `yaml:"server"`
	// AWS says where AWS is.
	AWS AWSConfig `yaml:"aws"`
	// Session says how a caller becomes an STS session: role, session name
	// and session tags.
	Session tenancy.Config `yaml:"session"`
	// SessionCache sizes the credential cache and its renewals.
	SessionCache SessionCacheConfig `yaml:"session_cache"`
	// STS bounds the gateway's use of STS.
	STS STSConfig `yaml:"sts"`
	// Auth says how callers authenticate.
	Auth auth.Config `yaml:"auth"`
	// Policy says what an authenticated caller may do: model allow-lists,
	// request and token limits.
	Policy policy.Config `yaml:"policy"`
	// Proxy tunes the data plane.
	Proxy ProxyConfig `yaml:"proxy"`
	// OpenAI configures the OpenAI-compatible API: model aliases, which
	// models Bedrock serves natively, what /v1/models lists.
	OpenAI proxy.OpenAIConfig `yaml:"openai"`
	// Usage configures the usage ledger and usage metrics.
	Usage UsageConfig `yaml:"usage"`
	// Pricing overrides and extends the shipped price catalogue, which
	// prices every request's tokens in the ledger, the cost counter and
	// budgets.
	Pricing pricing.Config `yaml:"pricing"`
	// Budgets caps what users, teams, tenants and cost centers may spend
	// per UTC day or month (hard: refused; soft: alerts only).
	Budgets budget.Config `yaml:"budgets"`
	// Async configures the record of who started each asynchronous
	// invocation.
	Async AsyncConfig `yaml:"async"`
	// Fleet shares the STS budget, sessions and limits between replicas
	// through Redis. Off unless fleet.redis is set.
	Fleet fleet.Config `yaml:"fleet"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// Tracing exports OpenTelemetry spans of every request. Off unless
	// tracing.exporter is set.
	Tracing tracing.Config `yaml:"tracing"`

	// dir is the directory of the config file; relative paths in the
	// config are relative to it.
	dir string
}

// TLSConfig names PEM files for the data-plane listener.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is its address, or "off"; the -admin-listen flag overrides it.
	Listen string `yaml:"listen"`
	// Pprof serves net/http/pprof under /debug/pprof/. Profiles reveal
	// memory contents.
	Pprof bool `yaml:"pprof"`
	// STSCheckInterval is how often the gateway checks that STS answers
	// GetCallerIdentity with its own identity (bedrock_gateway_sts_reachable).
	STSCheckInterval time.Duration `yaml:"sts_check_interval"`
}

// AWSConfig locates AWS. The gateway's own identity (used only to call
// STS) comes from the standard SDK credential chain.
type AWSConfig struct {
	// Region of Bedrock and STS. Default $AWS_REGION, then
	// $AWS_DEFAULT_REGION.
	Region string `yaml:"region"`
	// STSEndpoint overrides the STS endpoint. Default
	// $AWS_ENDPOINT_URL_STS, then the SDK's regional endpoint.
	STSEndpoint string `yaml:"sts_endpoint"`
	// BedrockRuntimeEndpoint overrides the Bedrock Runtime endpoint.
	// Default $AWS_ENDPOINT_URL_BEDROCK_RUNTIME, then $AWS_ENDPOINT_URL,
	// then the Region's public endpoint.
	BedrockRuntimeEndpoint string `yaml:"bedrock_runtime_endpoint"`
	// CABundle is a PEM file of the certificate authorities trusted for
	// STS and Bedrock alike, instead of the system's (a TLS-inspecting
	// corporate proxy). Default $AWS_CA_BUNDLE, as the AWS SDKs read it.
	CABundle string `yaml:"ca_bundle"`
}

// SessionCacheConfig is the cache part of sessioncache.Config.
type SessionCacheConfig struct {
	Size          int           `yaml:"size"`
	ExpiryMargin  time.Duration `yaml:"expiry_margin"`
	RefreshBefore time.Duration `yaml:"refresh_before"`
	RefreshJitter time.Duration `yaml:"refresh_jitter"`
}

// STSConfig is the STS budget part of sessioncache.Config.
type STSConfig struct {
	Rate             float64       `yaml:"rate"`
	NewSessionShare  float64       `yaml:"new_session_share"`
	AdmissionWait    time.Duration `yaml:"admission_wait"`
	Timeout          time.Duration `yaml:"timeout"`
	NegativeTTL      time.Duration `yaml:"negative_ttl"`
	ThrottleCooldown time.Duration `yaml:"throttle_cooldown"`
}

// sessionCacheKeys are the sessioncache.Config keys that live under
// session_cache:; the others live under sts:.
var sessionCacheKeys = []string{"size", "expiry_margin", "refresh_before", "refresh_jitter"}

// ProxyConfig is the YAML part of proxy.Config.
type ProxyConfig struct {
	BasePath     string `yaml:"base_path"`
	MaxBodyBytes int64  `yaml:"max_body_bytes"`
	// StampRequestMetadata writes the caller's identity into Bedrock
	// request metadata so Bedrock's invocation logs are attributable.
	StampRequestMetadata  bool          `yaml:"stamp_request_metadata"`
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	StreamIdleTimeout     time.Duration `yaml:"stream_idle_timeout"`
	// BodyTimeout and BodyMinRate (bytes per second) give a request body
	// max(BodyTimeout, Content-Length/BodyMinRate) to arrive.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	BodyMinRate int64         `yaml:"body_min_rate"`
	// MaxIdleConnsPerHost is how many idle upstream connections to
	// Bedrock are kept for reuse.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
}

// UsageConfig configures the usage ledger and usage metrics.
type UsageConfig struct {
	// Ledger is the JSON Lines file that gets one record per request;
	// LedgerStdout is standard output, LedgerOff disables it.
	Ledger           string `yaml:"ledger"`
	LedgerMaxBytes   int64  `yaml:"ledger_max_bytes"`
	LedgerMaxBackups int    `yaml:"ledger_max_backups"`
	// LedgerFlushInterval is how long a record may wait in memory before
	// it is written (0: each record written through by itself).
	LedgerFlushInterval time.Duration `yaml:"ledger_flush_interval"`
	// MetricLabels lists the values usage metrics may carry as labels.
	MetricLabels MetricLabelsConfig `yaml:"metric_labels"`
}

// AsyncConfig configures the asynchronous-invocation ownership store
// (pkg/asyncjobs).
type AsyncConfig struct {
	// OwnershipFile is the JSON Lines file that keeps who started each
	// asynchronous invocation across restarts. Default none: kept in
	// memory only, and a restart hides every earlier job from its owner.
	OwnershipFile string `yaml:"ownership_file"`
	// OwnershipRetention is how long an owner can see a job it started.
	// Default asyncjobs.DefaultRetention (30 days); at least 1h.
	OwnershipRetention time.Duration `yaml:"ownership_retention"`
}

// Values of usage.ledger that are not file names.
const (
	LedgerStdout = "-"
	LedgerOff    = "off"
)

// MetricLabelsConfig bounds the label values of usage metrics.
type MetricLabelsConfig struct {
	Teams   []string `yaml:"teams"`
	Tenants []string `yaml:"tenants"`
	Models  []string `yaml:"models"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json or text.
	Format string `yaml:"format"`
}

// AdminOff is the value of admin.listen that disables the admin listener.
const AdminOff = "off"

// DefaultSTSCheckInterval is admin.sts_check_interval's default.
const DefaultSTSCheckInterval = 15 * time.Second

// Default returns the configuration a file that sets nothing gets: every
// default, each taken from the package that owns the setting. Settings
// whose default comes from the environment (aws.*) are empty here and
// filled by Parse.
func Default() Config {
	tk := tenancy.DefaultTagKeys()
	return Config{
		Listen: ":8080",
		Admin:  AdminConfig{Listen: "127.0.0.1:9090", STSCheckInterval: DefaultSTSCheckInterval},
		Server: server.DefaultConfig(),
		Session: tenancy.Config{
			TagKeys:             &tk,
			Duration:            tenancy.DefaultDuration,
			SessionNameTemplate: tenancy.DefaultSessionNameTemplate,
			SourceIdentityFrom:  tenancy.DefaultSourceIdentityFrom,
		},
		SessionCache: SessionCacheConfig{Size: sessioncache.DefaultSize, ExpiryMargin: sessioncache.DefaultExpiryMargin,
			RefreshBefore: sessioncache.DefaultRefreshBefore, RefreshJitter: sessioncache.DefaultRefreshJitter},
		STS: STSConfig{Rate: sessioncache.DefaultRate, NewSessionShare: sessioncache.DefaultNewSessionShare,
			AdmissionWait: sessioncache.DefaultAdmissionWait, Timeout: sessioncache.DefaultSTSTimeout,
			NegativeTTL: sessioncache.DefaultNegativeTTL, ThrottleCooldown: sessioncache.DefaultThrottleCooldown},
		Auth: auth.DefaultConfig(),
		Proxy: ProxyConfig{MaxBodyBytes: proxy.DefaultMaxBodyBytes, StampRequestMetadata: true,
			ResponseHeaderTimeout: proxy.DefaultResponseHeaderTimeout, StreamIdleTimeout: proxy.DefaultStreamIdleTimeout,
			BodyTimeout: proxy.DefaultBodyTimeout, BodyMinRate: proxy.DefaultBodyMinRate,
			MaxIdleConnsPerHost: proxy.DefaultMaxIdleConnsPerHost},
		Usage:   UsageConfig{Ledger: LedgerStdout, LedgerMaxBytes: usage.DefaultMaxBytes, LedgerMaxBackups: usage.DefaultMaxBackups, LedgerFlushInterval: usage.DefaultFlushInterval},
		Async:   AsyncConfig{OwnershipRetention: asyncjobs.DefaultRetention},
		OpenAI:  proxy.OpenAIConfig{Native: slices.Clone(proxy.DefaultNativeModels)},
		Fleet:   fleet.DefaultConfig(),
		Log:     LogConfig{Level: "info", Format: "json"},
		Tracing: tracing.DefaultConfig(),
	}
}

// Load reads a config file and parses it (see Parse). Relative paths in
// it are relative to its directory.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data, getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	cfg.dir = filepath.Dir(abs)
	return cfg, nil
}

// Parse decodes one YAML document over Default, refusing unknown keys,
// fills the aws block from getenv where the file leaves it empty, and
// validates.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: more than one YAML document")
	}
	cfg.applyEnvironment(getenv)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// applyEnvironment fills the aws block the way the AWS SDKs do.
func (c *Config) applyEnvironment(getenv func(string) string) {
	first := func(cur string, vars ...string) string {
		for _, v := range vars {
			if cur != "" {
				break
			}
			cur = getenv(v)
		}
		return cur
	}
	c.AWS.Region = first(c.AWS.Region, "AWS_REGION", "AWS_DEFAULT_REGION")
	c.AWS.STSEndpoint = first(c.AWS.STSEndpoint, "AWS_ENDPOINT_URL_STS")
	c.AWS.CABundle = first(c.AWS.CABundle, "AWS_CA_BUNDLE")
	c.AWS.BedrockRuntimeEndpoint = first(c.AWS.BedrockRuntimeEndpoint, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL")
	if c.AWS.BedrockRuntimeEndpoint == "" && c.AWS.Region != "" {
		c.AWS.BedrockRuntimeEndpoint = DefaultBedrockEndpoint(c.AWS.Region)
	}
}

// DefaultBedrockEndpoint is the public Bedrock Runtime endpoint of a
// Region (Bedrock Runtime endpoint rule set: amazonaws.com, and
// amazonaws.com.cn in the China partition).
func DefaultBedrockEndpoint(region string) string {
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://bedrock-runtime." + region + "." + suffix
}

// Validate reports every problem in the config at once, each named by its
// YAML path. It has no side effects. The rules of each block are its
// package's; only the gateway's own settings are checked here.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	// under prefixes each problem a package reports with its path.
	under := func(prefix func(problem string) string, err error) {
		if err == nil {
			return
		}
		list := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			list = joined.Unwrap()
		}
		for _, e := range list {
			errs = append(errs, fmt.Errorf("%s%w", prefix(e.Error()), e))
		}
	}
	block := func(name string) func(string) string { return func(string) string { return name + "." } }

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port", c.Listen)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file must be set together")
	}
	if c.Admin.Listen != AdminOff {
		if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
			add("admin.listen: %q is not host:port or %s", c.Admin.Listen, AdminOff)
		}
	}
	if c.Admin.STSCheckInterval <= 0 {
		add("admin.sts_check_interval: must be positive, got %v", c.Admin.STSCheckInterval)
	}
	under(block("server"), c.Server.Validate())
	if c.AWS.Region == "" {
		add("aws.region: required (or set AWS_REGION)")
	}
	if c.AWS.BedrockRuntimeEndpoint == "" {
		add("aws.bedrock_runtime_endpoint: required (set aws.region or the endpoint)")
	} else if err := endpoint.Check(c.AWS.BedrockRuntimeEndpoint); err != nil {
		add("aws.bedrock_runtime_endpoint: %v", err)
	}
	if c.AWS.STSEndpoint != "" {
		if err := endpoint.Check(c.AWS.STSEndpoint); err != nil {
			add("aws.sts_endpoint: %v", err)
		}
	}
	under(block("session"), c.Session.Validate())
	under(func(problem string) string {
		for _, k := range sessionCacheKeys {
			if strings.HasPrefix(problem, k+":") {
				return "session_cache."
			}
		}
		return "sts."
	}, c.sessionCacheConfig().Validate())
	under(block("auth"), c.Auth.Validate())
	under(block("policy"), c.Policy.Validate())
	under(block("openai"), c.OpenAI.Validate())
	under(block("fleet"), c.Fleet.Validate())
	under(block("proxy"), c.proxySettings().Validate())
	under(block("usage"), c.ledgerConfig().Validate())
	under(block("usage"), c.metricsConfig().Validate())
	under(block("pricing"), c.Pricing.Validate())
	under(func(string) string { return "" }, c.Budgets.Validate()) // its problems name budgets[i]
	under(block("async"), c.asyncConfig().Validate())
	if _, err := c.Log.level(); err != nil {
		add("log.level: %v", err)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		add("log.format: must be json or text, got %q", c.Log.Format)
	}
	under(block("tracing"), c.Tracing.Validate())
	return errors.Join(errs...)
}

// Path resolves a path from the config relative to the config's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}

// CheckIdentity reports whether id can become an STS session under c's
// session rules: `gateway keys` refuses a key that never could, rather
// than leave its user to find out at the first call.
func (c *Config) CheckIdentity(id auth.Identity) error {
	r, err := tenancy.NewResolver(c.Session)
	if err != nil {
		return err
	}
	_, err = r.Resolve(id)
	return err
}

// sessionCacheConfig is the session_cache and sts blocks as
// sessioncache.Config, without its dependencies.
func (c *Config) sessionCacheConfig() sessioncache.Config {
	return sessioncache.Config{
		Size:             c.SessionCache.Size,
		ExpiryMargin:     c.SessionCache.ExpiryMargin,
		RefreshBefore:    c.SessionCache.RefreshBefore,
		RefreshJitter:    c.SessionCache.RefreshJitter,
		STSTimeout:       c.STS.Timeout,
		Rate:             c.STS.Rate,
		NewSessionShare:  c.STS.NewSessionShare,
		AdmissionWait:    c.STS.AdmissionWait,
		NegativeTTL:      c.STS.NegativeTTL,
		ThrottleCooldown: c.STS.ThrottleCooldown,
	}
}

// proxySettings is the proxy block as proxy.Config, without the proxy's
// dependencies.
func (c *Config) proxySettings() proxy.Config {
	return proxy.Config{
		BasePath:              c.Proxy.BasePath,
		MaxBodyBytes:          c.Proxy.MaxBodyBytes,
		DisableMetadataStamp:  !c.Proxy.StampRequestMetadata,
		OpenAI:                c.OpenAI,
		ResponseHeaderTimeout: c.Proxy.ResponseHeaderTimeout,
		StreamIdleTimeout:     c.Proxy.StreamIdleTimeout,
		BodyTimeout:           c.Proxy.BodyTimeout,
		BodyMinRate:           c.Proxy.BodyMinRate,
		MaxIdleConnsPerHost:   c.Proxy.MaxIdleConnsPerHost,
	}
}

// asyncConfig is the async block as asyncjobs.Config, without its
// dependencies.
func (c *Config) asyncConfig() asyncjobs.Config {
	return asyncjobs.Config{Path: c.Path(c.Async.OwnershipFile), Retention: c.Async.OwnershipRetention}
}

// ledgerConfig is the usage block's ledger as usage.LedgerConfig; Path is
// empty when the ledger is off.
func (c *Config) ledgerConfig() usage.LedgerConfig {
	path := c.Usage.Ledger
	switch path {
	case LedgerOff:
		path = ""
	case LedgerStdout:
	default:
		path = c.Path(path)
	}
	return usage.LedgerConfig{Path: path, MaxBytes: c.Usage.LedgerMaxBytes, MaxBackups: c.Usage.LedgerMaxBackups, FlushInterval: c.Usage.LedgerFlushInterval}
}

func (c *Config) metricsConfig() usage.MetricsConfig {
	l := c.Usage.MetricLabels
	return usage.MetricsConfig{Teams: l.Teams, Tenants: l.Tenants, Models: l.Models}
}

// level parses Level.
func (l LogConfig) level() (slog.Level, error) {
	switch l.Level {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("must be debug, info, warn or error, got %q", l.Level)
}

// NewLogger returns the process logger for c, writing to w through a
// buffer (internal/logwriter: one write per 100ms instead of one per
// request), with its level in level so that a reload can change it. close
// writes what is buffered and must be called before the process exits.
func NewLogger(c LogConfig, w io.Writer, level *slog.LevelVar) (logger *slog.Logger, close func() error, err error) {
	l, err := c.level()
	if err != nil {
		return nil, nil, fmt.Errorf("log.level: %w", err)
	}
	level.Set(l)
	lw := logwriter.New(w, 0)
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(lw, opts)), lw.Close, nil
	}
	// logjson writes slog's JSON at about half its cost: the access log
	// has a line per request.
	return slog.New(logjson.New(lw, opts)), lw.Close, nil
}
