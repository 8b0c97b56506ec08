package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults for the zero values of Config's tunables.
const (
	// DefaultMaxBodyBytes bounds a request body the gateway buffers to
	// sign. InvokeModel accepts payloads up to 25,000,000 bytes (Bedrock
	// Runtime service model); the rest is headroom for JSON framing.
	DefaultMaxBodyBytes = 26 << 20
	// DefaultResponseHeaderTimeout bounds the wait for Bedrock's response
	// headers. A non-streaming call gets them only once the model has
	// finished, which for a long answer takes minutes.
	DefaultResponseHeaderTimeout = 10 * time.Minute
	// DefaultStreamIdleTimeout is Claude Code's own idle watchdog: a
	// stream quieter than this is dead to the client anyway.
	DefaultStreamIdleTimeout = 5 * time.Minute
	// DefaultUserAgent is sent upstream when Config.UserAgent is empty.
	DefaultUserAgent = "bedrock-gateway"
	// DefaultBodyTimeout is the least time a request body is given to
	// arrive: ample for any prompt on a working link, short enough that a
	// client which declares a body and never sends it lets go soon.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultBodyMinRate, in bytes per second, stretches the body deadline
	// for large bodies: a 25,000,000-byte InvokeModel payload gets 250s.
	DefaultBodyMinRate = 100_000
	// DefaultMaxIdleConnsPerHost is how many idle connections to Bedrock
	// the upstream transport keeps. The gateway talks to one host, so
	// this bounds reuse: with more concurrent requests than idle slots,
	// the surplus connections are closed after each answer and new ones
	// dialed (TCP and TLS handshakes) for the next. 256 covers a busy
	// replica; an idle connection costs a socket and a few KiB.
	DefaultMaxIdleConnsPerHost = 256
	// upstreamIdleConnTimeout closes an upstream connection idle this
	// long (http.DefaultTransport's value): it keeps the pool warm across
	// lulls of a busy replica and lets a quiet one give its sockets back.
	upstreamIdleConnTimeout = 90 * time.Second
	// maxMaxIdleConnsPerHost bounds proxy.max_idle_conns_per_host: more idle
	// sockets than this is a typo, not a tuning.
	maxMaxIdleConnsPerHost = 65536
)

// Config configures a Proxy. Endpoint, Region, Authenticator, Resolver and
// Credentials are required; every other field has a usable zero value.
type Config struct {
	// Endpoint is the Bedrock Runtime base URL, e.g.
	// https://bedrock-runtime.us-east-1.amazonaws.com. A path, if any, is
	// kept as a prefix of every upstream path.
	Endpoint *url.URL
	// Region is the SigV4 signing region.
	Region string

	Authenticator Authenticator
	Resolver      Resolver
	Credentials   CredentialSource

	// BasePath is an optional prefix the gateway is served under, such as
	// "/bedrock"; SDKs keep the path of a custom endpoint. Default none.
	BasePath string
	// MaxBodyBytes bounds the request body, in bytes. Default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// ResponseHeaderTimeout bounds the wait for Bedrock's response
	// headers once a request is sent. Default DefaultResponseHeaderTimeout.
	ResponseHeaderTimeout time.Duration
	// StreamIdleTimeout cancels a response when Bedrock sends nothing for
	// this long once it has started. Default DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
	// BodyTimeout is the least time the request body is given to arrive,
	// counted from when the gateway starts reading it; a body that takes
	// longer is answered 408 and its connection closed. Default
	// DefaultBodyTimeout.
	BodyTimeout time.Duration
	// BodyMinRate, in bytes per second, extends the body deadline to
	// Content-Length / BodyMinRate when that is longer than BodyTimeout.
	// A body without Content-Length (chunked) gets BodyTimeout. Default
	// DefaultBodyMinRate.
	BodyMinRate int64
	// UserAgent is sent upstream. Default DefaultUserAgent.
	UserAgent string
	// MaxIdleConnsPerHost is how many idle connections to Bedrock the
	// transport New builds keeps for reuse; size it for the concurrent
	// requests of one replica. Default DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// DisableMetadataStamp turns off writing the caller's identity into
	// Bedrock request metadata (Converse requestMetadata,
	// X-Amzn-Bedrock-Request-Metadata), which makes Bedrock's own
	// invocation logs attributable. Default false: stamped.
	DisableMetadataStamp bool

	// Usage receives one record per request. Optional.
	Usage UsageSink
	// Prices prices each request's tokens for its usage record (and so
	// the ledger, the cost counter and budgets). Optional: without it a
	// request that consumed tokens has no cost (null), never $0.
	Prices Pricer
	// Budgets refuses callers whose spend budget is spent (429, before
	// any STS call) and is told what each request cost. Optional.
	Budgets Budgets
	// Policy admits or refuses authenticated requests (model allow-lists,
	// request and token limits). Optional.
	Policy Policy
	// AsyncOwners remembers which session started each asynchronous
	// invocation, so that GetAsyncInvoke and ListAsyncInvokes show a
	// caller only its own (see async.go). Optional: without it the three
	// async operations are refused with 501, since a job started here
	// could be shown to no one safely.
	AsyncOwners AsyncOwners
	// OpenAI configures the OpenAI-compatible API.
	OpenAI OpenAIConfig
	// Metrics receives the proxy's metrics (in-flight requests and streams,
	// auth failures, gateway overhead). Optional; build it once per
	// process with NewMetrics.
	Metrics *Metrics
	// TracerProvider traces each request (see tracing.go for the spans).
	// Optional: nil, or OpenTelemetry's no-op provider, means no tracing
	// and no tracing cost.
	TracerProvider trace.TracerProvider
	// Logger receives one line per request. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock used for signing and timing. Default time.Now.
	Now func() time.Time

	// Transport, if set, sends upstream requests instead of the transport
	// New builds; it is for tests. The proxy neither tunes nor closes it,
	// so ResponseHeaderTimeout does not apply to it.
	Transport http.RoundTripper
	// RootCAs, if set, are the only certificate authorities the transport
	// New builds trusts for Bedrock (aws.ca_bundle, $AWS_CA_BUNDLE: a
	// TLS-inspecting corporate proxy); nil means the system's. The STS
	// client gets the same roots, so the two halves of the gateway agree.
	RootCAs *x509.CertPool
}

// Validate reports every problem with c's settings at once, joined with
// errors.Join, each starting with its key under the config file's proxy:
// block, so that the loader only has to prefix "proxy.". It has no side
// effects. Zero settings are valid: they mean the default. The
// dependencies (endpoint, region, authenticator, resolver, credentials)
// are not settings; New checks them.
func (c Config) Validate() error { return errors.Join(c.settingsProblems()...) }

func (c Config) settingsProblems() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if bp := c.BasePath; bp != "" && (!strings.HasPrefix(bp, "/") || strings.HasSuffix(bp, "/") || strings.Contains(bp, "//")) {
		add("base_path: %q must start with /, not end with / and not contain //", bp)
	}
	if c.MaxBodyBytes < 0 {
		add("max_body_bytes: must not be negative, got %d", c.MaxBodyBytes)
	}
	if c.ResponseHeaderTimeout < 0 {
		add("response_header_timeout: must not be negative, got %v", c.ResponseHeaderTimeout)
	}
	if c.StreamIdleTimeout < 0 {
		add("stream_idle_timeout: must not be negative, got %v", c.StreamIdleTimeout)
	}
	if c.BodyTimeout < 0 {
		add("body_timeout: must not be negative, got %v", c.BodyTimeout)
	}
	if c.BodyMinRate < 0 {
		add("body_min_rate: must not be negative, got %d", c.BodyMinRate)
	}
	if c.MaxIdleConnsPerHost < 0 || c.MaxIdleConnsPerHost > maxMaxIdleConnsPerHost {
		add("max_idle_conns_per_host: must be 1..%d, or 0 for the default %d, got %d",
			maxMaxIdleConnsPerHost, DefaultMaxIdleConnsPerHost, c.MaxIdleConnsPerHost)
	}
	return errs
}

// maxBodyAllowance caps the body deadline, so that an absurd
// Content-Length (under an absurd max_body_bytes) cannot overflow it.
const maxBodyAllowance = 24 * time.Hour

// bodyAllowance is how long a request body of length bytes (-1: not
// declared) may take to arrive: BodyTimeout, or length at BodyMinRate
// when that is longer.
func (c Config) bodyAllowance(length int64) time.Duration {
	d := c.BodyTimeout
	if length <= 0 || c.BodyMinRate <= 0 {
		return d
	}
	// length/rate seconds in nanoseconds, in 128 bits: exact, and no
	// overflow whatever the settings.
	hi, lo := bits.Mul64(uint64(length), uint64(time.Second))
	if hi >= uint64(c.BodyMinRate) {
		return max(d, maxBodyAllowance)
	}
	ns, _ := bits.Div64(hi, lo, uint64(c.BodyMinRate))
	return max(d, min(time.Duration(ns), maxBodyAllowance))
}

// validate is what New checks: the dependencies, then Validate.
func (c Config) validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u := c.Endpoint; u == nil || u.Scheme == "" || u.Host == "" {
		add("endpoint: must be an absolute URL")
	}
	if c.Region == "" {
		add("region: required")
	}
	if c.Authenticator == nil {
		add("authenticator: required")
	}
	if c.Resolver == nil {
		add("resolver: required")
	}
	if c.Credentials == nil {
		add("credentials: required")
	}
	if err := c.OpenAI.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("openai: %w", err))
	}
	return errors.Join(append(errs, c.settingsProblems()...)...)
}

// withDefaults returns c with its zero fields set to their defaults.
// Transport is left alone: New builds it, so that it knows to close it.
func (c Config) withDefaults() Config {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if c.BodyMinRate == 0 {
		c.BodyMinRate = DefaultBodyMinRate
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// newTransport builds the upstream transport: a clone of
// http.DefaultTransport without compression, so that Bedrock's bytes pass
// verbatim, tuned for one busy host: up to maxIdle idle connections are
// kept (DefaultTransport keeps 2 per host, so under concurrency it dials
// and closes connections constantly), and HTTP/2 is attempted, which
// Bedrock's HTTPS endpoints speak, even with custom root CAs.
//
// It never replays a POST that may have been sent: net/http retries only
// requests that were not written at all, or that are idempotent (GET, or
// carrying Idempotency-Key, which the header allow-list drops).
func newTransport(responseHeaderTimeout time.Duration, roots *x509.CertPool, maxIdle int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	t.ResponseHeaderTimeout = responseHeaderTimeout
	t.ForceAttemptHTTP2 = true
	t.MaxIdleConns = maxIdle
	t.MaxIdleConnsPerHost = maxIdle
	t.IdleConnTimeout = upstreamIdleConnTimeout
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return t
}
