package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// Config is the gateway's YAML configuration. Unknown keys are errors.
// Every field documents its unit and default; Validate reports every
// problem at once.
type Config struct {
	// Listen is the data-plane address. Default ":8080". The -listen flag
	// overrides it.
	Listen string `yaml:"listen"`
	// AdminListen is the address of the admin listener (/metrics,
	// /healthz), kept off the data plane. Default "127.0.0.1:9090"; "off"
	// disables it. The -admin-listen flag overrides it.
	AdminListen string `yaml:"admin_listen"`
	// AdminPprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener. Default false: profiles reveal memory contents.
	AdminPprof bool `yaml:"admin_pprof"`
	// TLS, when both files are set, serves HTTPS (HTTP/1.1 and HTTP/2) on
	// Listen. AWS SDKs for Go send bearer tokens only over HTTPS. Without
	// it, Listen serves HTTP/1.1 and h2c (HTTP/2 with prior knowledge).
	TLS TLSConfig `yaml:"tls"`
	// Server bounds what the data-plane listener accepts and how it stops.
	Server ServerConfig `yaml:"server"`
	// AWS says where AWS is.
	AWS AWSConfig `yaml:"aws"`
	// Session says how callers become STS sessions.
	Session SessionConfig `yaml:"session"`
	// STS bounds the gateway's use of STS.
	STS STSConfig `yaml:"sts"`
	// Auth says how callers authenticate.
	Auth AuthConfig `yaml:"auth"`
	// Proxy tunes the data plane.
	Proxy ProxyConfig `yaml:"proxy"`
	// Usage configures the usage ledger and usage metrics.
	Usage UsageConfig `yaml:"usage"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`

	// dir is the directory of the config file; relative paths in the
	// config are relative to it.
	dir string
}

// TLSConfig names PEM files for the data-plane listener.
type TLSConfig struct {
	// CertFile is the PEM certificate chain. Default none (plain HTTP).
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key. Default none.
	KeyFile string `yaml:"key_file"`
}

// ServerConfig holds the data-plane listener's limits and its shutdown
// sequence. There is deliberately no write timeout: a model stream may
// legitimately run for many minutes (proxy.stream_idle_timeout cuts a
// stalled one).
type ServerConfig struct {
	// ReadHeaderTimeout is the longest a client may take to send its
	// request headers (slowloris). Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxHeaderBytes bounds request headers, in bytes (HTTP/1.1 header
	// block; HTTP/2 header list). Default 65536.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// IdleTimeout closes a keep-alive connection idle this long. Default
	// 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// HTTP2MaxConcurrentStreams is the most concurrent streams one HTTP/2
	// client connection may open. Default 250.
	HTTP2MaxConcurrentStreams int `yaml:"http2_max_concurrent_streams"`
	// DrainDelay: on SIGTERM /readyz fails at once, but the listener keeps
	// accepting this long so that load balancers stop sending traffic
	// before connections are refused. Default 5s; "0s" for none.
	DrainDelay *time.Duration `yaml:"drain_delay"`
	// ShutdownGrace is how long open requests and streams get to finish
	// once the listener is closed; the rest are then cancelled and
	// counted. Default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ReadinessSTSInterval is the longest /readyz reuses a successful
	// GetCallerIdentity check before calling STS again. Default 15s.
	ReadinessSTSInterval time.Duration `yaml:"readiness_sts_interval"`
}

// AWSConfig locates AWS. The gateway's own identity (used only to call STS)
// comes from the standard SDK credential chain: environment, shared
// profile, web identity, container or instance role.
type AWSConfig struct {
	// Region is the AWS Region of Bedrock and STS. Default $AWS_REGION,
	// then $AWS_DEFAULT_REGION.
	Region string `yaml:"region"`
	// STSEndpoint overrides the STS endpoint. Default
	// $AWS_ENDPOINT_URL_STS, then the SDK's regional endpoint.
	STSEndpoint string `yaml:"sts_endpoint"`
	// BedrockRuntimeEndpoint overrides the Bedrock Runtime endpoint.
	// Default $AWS_ENDPOINT_URL_BEDROCK_RUNTIME, then $AWS_ENDPOINT_URL,
	// then https://bedrock-runtime.<region>.amazonaws.com.
	BedrockRuntimeEndpoint string `yaml:"bedrock_runtime_endpoint"`
}

// SessionConfig maps callers to STS sessions.
type SessionConfig struct {
	// RoleARN is the Bedrock invocation role assumed for every caller.
	// Required; from config only.
	RoleARN string `yaml:"role_arn"`
	// NamePrefix is prepended to each RoleSessionName, e.g. "gw-".
	// Default none.
	NamePrefix string `yaml:"name_prefix"`
	// Duration is the requested session length (DurationSeconds),
	// 15m..1h; a chained role allows at most one hour. Default 1h.
	Duration time.Duration `yaml:"duration"`
	// CacheSize is the most sessions kept at once (LRU); size it to
	// concurrent users, not total users. Default 10000.
	CacheSize int `yaml:"cache_size"`
	// TagKeys names the session tag each identity attribute is sent as.
	TagKeys TagKeysConfig `yaml:"tag_keys"`
	// ExpiryMargin: cached credentials stop being handed out this long
	// before they expire (while STS can renew them). Default 5m; under 15m.
	ExpiryMargin time.Duration `yaml:"expiry_margin"`
	// RefreshBefore: sessions in use are renewed in the background this
	// long before the expiry margin, plus up to RefreshJitter, so that
	// sessions created together do not renew together. Defaults 10m, 5m.
	RefreshBefore time.Duration `yaml:"refresh_before"`
	RefreshJitter time.Duration `yaml:"refresh_jitter"`

	// NameTemplate is the readable part of the session name: literal
	// [A-Za-z0-9_+,.@-] and placeholders {user}, {label}, {tenant},
	// {team}. Default "{label}" (the user, or an OIDC user's email). A
	// name that is not exactly the user ID always carries "=" and a hash of
	// it, so two callers never share a session name.
	NameTemplate string `yaml:"name_template"`
	// SourceIdentity sets the STS SourceIdentity (shown in CloudTrail);
	// needs sts:SetSourceIdentity. Default false.
	SourceIdentity bool `yaml:"source_identity"`
	// SourceIdentityFrom is "label" (default) or "user".
	SourceIdentityFrom string `yaml:"source_identity_from"`
	// Models is the default model allow-list (glob: * matches anything);
	// empty allows every model.
	Models []string `yaml:"models"`
	// Limits is the default limit per caller identity.
	Limits LimitsConfig `yaml:"limits"`
	// TenantLimits is the default limit shared by all callers of a tenant.
	TenantLimits LimitsConfig `yaml:"tenant_limits"`
	// Tenants holds per-tenant rules.
	Tenants map[string]TenantRuleConfig `yaml:"tenants"`
	// Teams holds per-team rules.
	Teams map[string]TeamRuleConfig `yaml:"teams"`
}

// LimitsConfig is a request-rate and token budget. Zero means unlimited.
type LimitsConfig struct {
	// RequestsPerSecond is the sustained request rate.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is the most requests at once; default max(1, ceil(rate)).
	Burst int `yaml:"burst"`
	// TokensPerMinute is the token budget (input, output and cache).
	TokensPerMinute int64 `yaml:"tokens_per_minute"`
}

func (l LimitsConfig) rule() limits.LimitRule {
	return limits.LimitRule{RequestsPerSecond: l.RequestsPerSecond, Burst: l.Burst, TokensPerMinute: l.TokensPerMinute}
}

// TenantRuleConfig overrides the defaults for one tenant.
type TenantRuleConfig struct {
	// RoleARN is the invocation role for this tenant's callers.
	RoleARN string `yaml:"role_arn"`
	// SessionName is the exact session name of the tenant-only session a
	// platform key gets when it asserts this tenant without a user, e.g.
	// "gw-tenant-acme". Requires Platform.
	SessionName string `yaml:"session_name"`
	// Platform is the user of the platform key that session is for.
	Platform string `yaml:"platform"`
	// Models is the tenant's model allow-list.
	Models []string `yaml:"models"`
	// Limits is shared by all the tenant's callers.
	Limits LimitsConfig `yaml:"limits"`
}

// TeamRuleConfig overrides the defaults for one team.
type TeamRuleConfig struct {
	RoleARN string       `yaml:"role_arn"`
	Models  []string     `yaml:"models"`
	Limits  LimitsConfig `yaml:"limits"` // per member of the team
}

// STSConfig is the gateway's STS budget. STS allows 600 requests per second
// per account and Region, shared by every STS call in the account (IAM User
// Guide, "STS request quotas"): the gateway must leave room for the rest.
type STSConfig struct {
	// Rate is this process's AssumeRole budget, calls per second; no
	// one-second window sees more. With N replicas, set it to the share
	// each may use. Default 400.
	Rate float64 `yaml:"rate"`
	// NewSessionShare is the share of Rate new sessions may use, (0,1];
	// the rest is kept for refreshes of active users. Default 0.75.
	NewSessionShare float64 `yaml:"new_session_share"`
	// AdmissionWait is the longest a new user waits for the budget before
	// 503 ServiceUnavailableException with Retry-After. Default 2s.
	AdmissionWait time.Duration `yaml:"admission_wait"`
	// Timeout bounds getting one session (waits, attempts, backoff).
	// Default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// NegativeTTL: an STS refusal (AccessDenied, ValidationError) for a
	// session is answered from memory this long. Default 30s.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// ThrottleCooldown: after STS throttling the budget is halved this
	// long. Default 30s.
	ThrottleCooldown time.Duration `yaml:"throttle_cooldown"`
}

// TagKeysConfig names session tag keys. A key left out takes its default;
// a key set to "" is not sent.
type TagKeysConfig struct {
	// Team is the tag key for the caller's team. Default "team".
	Team *string `yaml:"team"`
	// Tenant is the tag key for the caller's tenant. Default "tenant".
	Tenant *string `yaml:"tenant"`
	// CostCenter is the tag key for the caller's cost center. Default
	// "cost-center".
	CostCenter *string `yaml:"cost_center"`
	// User is the tag key for the caller's user ID. Default "" (not sent:
	// the session name already carries it).
	User *string `yaml:"user"`
}

// AuthConfig configures caller authentication.
type AuthConfig struct {
	// APIKeysFile is the key store written by `gateway keys`. Required.
	// Relative to the config file's directory. Reloaded when it changes,
	// so a revocation takes effect within KeysReload on every replica.
	APIKeysFile string `yaml:"api_keys_file"`
	// KeysReload is how often the key store is checked for changes.
	// Default 1s.
	KeysReload time.Duration `yaml:"keys_reload"`
	// OIDC accepts identity-provider tokens as bearer tokens. Optional.
	OIDC OIDCConfig `yaml:"oidc"`
	// TrustedHeaders names the headers platform keys use to assert the
	// tenant and user they act for.
	TrustedHeaders TrustedHeadersConfig `yaml:"trusted_headers"`
}

// OIDCConfig configures OIDC/JWT bearer tokens.
type OIDCConfig struct {
	// Leeway allowed on exp and nbf. Default 60s, at most 5m.
	Leeway time.Duration `yaml:"leeway"`
	// JWKSRefreshInterval is the least time between JWKS fetches of one
	// issuer for unknown key IDs. Default 30s.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// Issuers are the accepted identity providers.
	Issuers []OIDCIssuerConfig `yaml:"issuers"`
}

// OIDCIssuerConfig is one accepted identity provider. The caller's
// identity is the issuer (alias) plus the subject (Entra: tid plus oid),
// never an email alone.
type OIDCIssuerConfig struct {
	Issuer          string   `yaml:"issuer"`            // exact iss; discovery below it
	Audiences       []string `yaml:"audiences"`         // required; aud must contain one
	Algorithms      []string `yaml:"algorithms"`        // default RS256, ES256, PS256; never HS* or none
	Alias           string   `yaml:"alias"`             // short issuer name in user IDs; default its host
	UserClaim       string   `yaml:"user_claim"`        // default sub
	EntraIDs        bool     `yaml:"entra_ids"`         // identity from tid + oid
	LabelClaim      string   `yaml:"label_claim"`       // readable part of the session name, e.g. email
	TeamClaim       string   `yaml:"team_claim"`        // string claims mapped to tags
	TenantClaim     string   `yaml:"tenant_claim"`      //
	CostCenterClaim string   `yaml:"cost_center_claim"` //
	GroupsClaim     string   `yaml:"groups_claim"`      // default groups
	// TeamGroupPattern: the first group matching this RE2 pattern is the
	// team (its first capture group, if any).
	TeamGroupPattern string `yaml:"team_group_pattern"`
}

// TrustedHeadersConfig names the trusted tenant headers.
type TrustedHeadersConfig struct {
	// TenantHeader default X-Gateway-Tenant.
	TenantHeader string `yaml:"tenant_header"`
	// UserHeader default X-Gateway-User.
	UserHeader string `yaml:"user_header"`
	// MaxLen is the longest value accepted. Default 128.
	MaxLen int `yaml:"max_len"`
}

func (o OIDCConfig) auth() auth.OIDCConfig {
	c := auth.OIDCConfig{Leeway: o.Leeway, JWKSRefreshInterval: o.JWKSRefreshInterval}
	for _, i := range o.Issuers {
		c.Issuers = append(c.Issuers, auth.OIDCIssuer{
			Issuer: i.Issuer, Audiences: i.Audiences, Algorithms: i.Algorithms, Alias: i.Alias,
			UserClaim: i.UserClaim, EntraIDs: i.EntraIDs, LabelClaim: i.LabelClaim,
			TeamClaim: i.TeamClaim, TenantClaim: i.TenantClaim, CostCenterClaim: i.CostCenterClaim,
			GroupsClaim: i.GroupsClaim, TeamGroupPattern: i.TeamGroupPattern,
		})
	}
	return c
}

func (t TrustedHeadersConfig) auth() auth.TrustedHeaders {
	return auth.TrustedHeaders{TenantHeader: t.TenantHeader, UserHeader: t.UserHeader, MaxLen: t.MaxLen}
}

// ProxyConfig tunes the data plane.
type ProxyConfig struct {
	// BasePath serves the API under a prefix such as "/bedrock". Default
	// none.
	BasePath string `yaml:"base_path"`
	// MaxBodyBytes bounds a request body, in bytes. Default 27262976
	// (26 MiB: InvokeModel's 25,000,000-byte limit plus framing).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// StampRequestMetadata writes the caller's user, session, team,
	// tenant and cost center into Bedrock request metadata (Converse
	// requestMetadata; X-Amzn-Bedrock-Request-Metadata for InvokeModel)
	// so Bedrock's invocation logs are attributable. Default true.
	StampRequestMetadata *bool `yaml:"stamp_request_metadata"`
	// ResponseHeaderTimeout bounds the wait for Bedrock's response
	// headers; a non-streaming call gets them only when the model is
	// done. Default 10m.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// StreamIdleTimeout cancels a response when Bedrock sends nothing for
	// this long. Default 5m.
	StreamIdleTimeout time.Duration `yaml:"stream_idle_timeout"`
}

// UsageConfig configures what is recorded about each request.
type UsageConfig struct {
	// Ledger is the JSON Lines file that gets one record per request;
	// "-" is standard output, "off" disables it. Default "-".
	Ledger string `yaml:"ledger"`
	// LedgerMaxBytes rotates the ledger file at this size. Default 100 MiB.
	LedgerMaxBytes int64 `yaml:"ledger_max_bytes"`
	// LedgerMaxBackups is how many rotated files are kept. Default 5.
	LedgerMaxBackups int `yaml:"ledger_max_backups"`
	// MetricLabels lists the values usage metrics may carry as labels;
	// anything else is reported as "other", so cardinality stays bounded
	// however many users there are. Default: empty lists.
	MetricLabels MetricLabelsConfig `yaml:"metric_labels"`
}

// MetricLabelsConfig bounds the label values of usage metrics.
type MetricLabelsConfig struct {
	Teams   []string `yaml:"teams"`
	Tenants []string `yaml:"tenants"`
	Models  []string `yaml:"models"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// loadConfig reads and strictly decodes a config file, applies defaults
// and the environment, and validates it.
func loadConfig(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parseConfig(data, getenv)
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

// parseConfig decodes YAML with unknown keys refused, fills defaults from
// getenv, and validates.
func parseConfig(data []byte, getenv func(string) string) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode: more than one YAML document")
	}
	cfg.applyDefaults(getenv)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func strPtr(s string) *string { return &s }

func (c *Config) applyDefaults(getenv func(string) string) {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:9090"
	}
	c.Server.applyDefaults()
	if c.AWS.Region == "" {
		c.AWS.Region = getenv("AWS_REGION")
	}
	if c.AWS.Region == "" {
		c.AWS.Region = getenv("AWS_DEFAULT_REGION")
	}
	if c.AWS.STSEndpoint == "" {
		c.AWS.STSEndpoint = getenv("AWS_ENDPOINT_URL_STS")
	}
	if c.AWS.BedrockRuntimeEndpoint == "" {
		c.AWS.BedrockRuntimeEndpoint = getenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
	}
	if c.AWS.BedrockRuntimeEndpoint == "" {
		c.AWS.BedrockRuntimeEndpoint = getenv("AWS_ENDPOINT_URL")
	}
	if c.AWS.BedrockRuntimeEndpoint == "" && c.AWS.Region != "" {
		c.AWS.BedrockRuntimeEndpoint = defaultBedrockEndpoint(c.AWS.Region)
	}
	if c.Session.Duration == 0 {
		c.Session.Duration = time.Hour
	}
	if c.Session.CacheSize == 0 {
		c.Session.CacheSize = 10000
	}
	tk := &c.Session.TagKeys
	if tk.Team == nil {
		tk.Team = strPtr("team")
	}
	if tk.Tenant == nil {
		tk.Tenant = strPtr("tenant")
	}
	if tk.CostCenter == nil {
		tk.CostCenter = strPtr("cost-center")
	}
	if tk.User == nil {
		tk.User = strPtr("")
	}
	if c.Proxy.MaxBodyBytes == 0 {
		c.Proxy.MaxBodyBytes = 26 << 20
	}
	if c.Proxy.StampRequestMetadata == nil {
		t := true
		c.Proxy.StampRequestMetadata = &t
	}
	if c.Proxy.ResponseHeaderTimeout == 0 {
		c.Proxy.ResponseHeaderTimeout = 10 * time.Minute
	}
	if c.Proxy.StreamIdleTimeout == 0 {
		c.Proxy.StreamIdleTimeout = 5 * time.Minute
	}
	if c.Usage.Ledger == "" {
		c.Usage.Ledger = "-"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

func (s *ServerConfig) applyDefaults() {
	if s.ReadHeaderTimeout == 0 {
		s.ReadHeaderTimeout = 10 * time.Second
	}
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = 64 << 10
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 120 * time.Second
	}
	if s.HTTP2MaxConcurrentStreams == 0 {
		s.HTTP2MaxConcurrentStreams = 250
	}
	if s.DrainDelay == nil {
		d := 5 * time.Second
		s.DrainDelay = &d
	}
	if s.ShutdownGrace == 0 {
		s.ShutdownGrace = 30 * time.Second
	}
	if s.ReadinessSTSInterval == 0 {
		s.ReadinessSTSInterval = 15 * time.Second
	}
}

// drainDelay is DrainDelay with its default, for configs built in code.
func (s *ServerConfig) drainDelay() time.Duration {
	if s.DrainDelay == nil {
		return 0
	}
	return *s.DrainDelay
}

// defaultBedrockEndpoint is the public Bedrock Runtime endpoint of a
// Region (Bedrock Runtime endpoint rule set: amazonaws.com, and
// amazonaws.com.cn in the China partition).
func defaultBedrockEndpoint(region string) string {
	suffix := "amazonaws.com"
	if strings.HasPrefix(region, "cn-") {
		suffix = "amazonaws.com.cn"
	}
	return "https://bedrock-runtime." + region + "." + suffix
}

// tenancyConfig is the session part of the config as pkg/tenancy takes it.
func (c *Config) tenancyConfig() tenancy.Config {
	var tenants map[string]tenancy.TenantRule
	if len(c.Session.Tenants) > 0 {
		tenants = make(map[string]tenancy.TenantRule, len(c.Session.Tenants))
		for name, r := range c.Session.Tenants {
			tenants[name] = tenancy.TenantRule{RoleARN: r.RoleARN, SessionName: r.SessionName, Platform: r.Platform, Models: r.Models, Limits: r.Limits.rule()}
		}
	}
	var teams map[string]tenancy.TeamRule
	if len(c.Session.Teams) > 0 {
		teams = make(map[string]tenancy.TeamRule, len(c.Session.Teams))
		for name, r := range c.Session.Teams {
			teams[name] = tenancy.TeamRule{RoleARN: r.RoleARN, Models: r.Models, Limits: r.Limits.rule()}
		}
	}
	return tenancy.Config{
		RoleARN:           c.Session.RoleARN,
		SessionNamePrefix: c.Session.NamePrefix,
		Duration:          c.Session.Duration,
		TagKeys: &tenancy.TagKeys{
			Team:       *c.Session.TagKeys.Team,
			Tenant:     *c.Session.TagKeys.Tenant,
			CostCenter: *c.Session.TagKeys.CostCenter,
			User:       *c.Session.TagKeys.User,
		},
		SessionNameTemplate: c.Session.NameTemplate,
		SourceIdentity:      c.Session.SourceIdentity,
		SourceIdentityFrom:  c.Session.SourceIdentityFrom,
		Models:              c.Session.Models,
		Limits:              c.Session.Limits.rule(),
		TenantLimits:        c.Session.TenantLimits.rule(),
		Tenants:             tenants,
		Teams:               teams,
	}
}

// Validate reports every problem in the config at once, each naming its
// YAML path. It has no side effects.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen: %q is not host:port", c.Listen)
	}
	if c.AdminListen != "off" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			add("admin_listen: %q is not host:port or off", c.AdminListen)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: cert_file and key_file must be set together")
	}
	for path, d := range map[string]time.Duration{
		"server.read_header_timeout": c.Server.ReadHeaderTimeout, "server.idle_timeout": c.Server.IdleTimeout,
		"server.drain_delay": c.Server.drainDelay(), "server.shutdown_grace": c.Server.ShutdownGrace,
		"server.readiness_sts_interval": c.Server.ReadinessSTSInterval,
	} {
		if d < 0 {
			add("%s: must not be negative, got %v", path, d)
		}
	}
	if n := c.Server.MaxHeaderBytes; n < 0 || n > 16<<20 {
		add("server.max_header_bytes: must be 0..16777216, got %d", n)
	}
	// SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 section 6.5.2) is a
	// 32-bit value; more than 65536 streams on one connection is a typo.
	if n := c.Server.HTTP2MaxConcurrentStreams; n < 0 || n > 1<<16 {
		add("server.http2_max_concurrent_streams: must be 0..65536, got %d", n)
	}
	if c.AWS.Region == "" {
		add("aws.region: required (or set AWS_REGION)")
	}
	if err := checkEndpoint(c.AWS.BedrockRuntimeEndpoint); err != nil {
		add("aws.bedrock_runtime_endpoint: %v", err)
	}
	if c.AWS.STSEndpoint != "" {
		if err := checkEndpoint(c.AWS.STSEndpoint); err != nil {
			add("aws.sts_endpoint: %v", err)
		}
	}
	// Packages name their fields relative to their block.
	prefixed := func(prefix string, err error) {
		if err == nil {
			return
		}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range joined.Unwrap() {
				add("%s%w", prefix, e)
			}
			return
		}
		add("%s%w", prefix, err)
	}
	prefixed("session.", c.tenancyConfig().Validate())
	if c.Session.CacheSize < 1 {
		add("session.cache_size: must be at least 1, got %d", c.Session.CacheSize)
	}
	if m := c.Session.ExpiryMargin; m < 0 || m >= 15*time.Minute {
		add("session.expiry_margin: must be 0..15m, got %v", m)
	}
	for path, d := range map[string]time.Duration{
		"session.refresh_before": c.Session.RefreshBefore, "session.refresh_jitter": c.Session.RefreshJitter,
		"sts.admission_wait": c.STS.AdmissionWait, "sts.timeout": c.STS.Timeout,
		"sts.negative_ttl": c.STS.NegativeTTL, "sts.throttle_cooldown": c.STS.ThrottleCooldown,
	} {
		if d < 0 {
			add("%s: must not be negative, got %v", path, d)
		}
	}
	if r := c.STS.Rate; r != 0 && (r <= 1 || r > 600) {
		add("sts.rate: must be more than 1 and at most 600 (the STS account quota), got %v", r)
	}
	if s := c.STS.NewSessionShare; s < 0 || s > 1 {
		add("sts.new_session_share: must be in (0,1], got %v", s)
	}
	if c.Auth.APIKeysFile == "" {
		add("auth.api_keys_file: required")
	}
	if c.Auth.KeysReload < 0 {
		add("auth.keys_reload: must not be negative, got %v", c.Auth.KeysReload)
	}
	if len(c.Auth.OIDC.Issuers) > 0 {
		prefixed("auth.", c.Auth.OIDC.auth().Validate())
	}
	if err := c.Auth.TrustedHeaders.auth().Validate(); err != nil {
		add("auth.trusted_headers: %w", err)
	}
	if bp := c.Proxy.BasePath; bp != "" && (!strings.HasPrefix(bp, "/") || strings.HasSuffix(bp, "/") || strings.Contains(bp, "//")) {
		add("proxy.base_path: %q must start with / and not end with /", bp)
	}
	if c.Proxy.MaxBodyBytes < 1 {
		add("proxy.max_body_bytes: must be positive, got %d", c.Proxy.MaxBodyBytes)
	}
	if c.Proxy.ResponseHeaderTimeout < 0 {
		add("proxy.response_header_timeout: must not be negative, got %v", c.Proxy.ResponseHeaderTimeout)
	}
	if c.Proxy.StreamIdleTimeout < 0 {
		add("proxy.stream_idle_timeout: must not be negative, got %v", c.Proxy.StreamIdleTimeout)
	}
	if c.Usage.LedgerMaxBytes < 0 {
		add("usage.ledger_max_bytes: must not be negative, got %d", c.Usage.LedgerMaxBytes)
	}
	if c.Usage.LedgerMaxBackups < 0 {
		add("usage.ledger_max_backups: must not be negative, got %d", c.Usage.LedgerMaxBackups)
	}
	for path, vals := range map[string][]string{"usage.metric_labels.teams": c.Usage.MetricLabels.Teams,
		"usage.metric_labels.tenants": c.Usage.MetricLabels.Tenants, "usage.metric_labels.models": c.Usage.MetricLabels.Models} {
		if len(vals) > 1000 {
			add("%s: at most 1000 values, got %d", path, len(vals))
		}
		for _, v := range vals {
			if v == "" || v == "other" || v == "none" {
				add("%s: %q is reserved", path, v)
			}
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level: must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format: must be json or text, got %q", c.Log.Format)
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts an absolute https URL, or http to a loopback host
// (local emulators and tests): signed requests and prompts must not cross
// a network in clear text.
func checkEndpoint(raw string) error {
	if raw == "" {
		return errors.New("required (set aws.region or the endpoint)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be scheme://host[:port][/path]", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%q: plain http is allowed only to a loopback host", raw)
		}
	default:
		return fmt.Errorf("%q: scheme must be https", raw)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// path resolves a path from the config relative to the config's directory.
func (c *Config) path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.dir == "" {
		return p
	}
	return filepath.Join(c.dir, p)
}
