// Package tracing builds the gateway's OpenTelemetry tracer provider from
// the tracing: block of its configuration: an OTLP exporter (HTTP or
// gRPC), a sampler and the service's name. Tracing is off unless an
// exporter is configured; off, the provider is OpenTelemetry's no-op one,
// which the proxy recognises and then does no tracing work at all.
//
// What the spans say is the proxy's business (pkg/proxy/tracing.go); this
// package only decides where they go, which of them are kept, and flushes
// them at shutdown.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporters: where spans go.
const (
	ExporterNone     = "none"
	ExporterOTLPHTTP = "otlp-http"
	ExporterOTLPGRPC = "otlp-grpc"
)

// Samplers, named as OTEL_TRACES_SAMPLER names them (OpenTelemetry SDK
// environment variable specification). The parentbased_* ones follow the
// caller's sampling decision when its traceparent carries one, and apply
// the named sampler to requests that come without.
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

var samplers = []string{SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio,
	SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff, SamplerParentBasedTraceIDRatio}

// Defaults of Config's settings.
const (
	DefaultExporter    = ExporterNone
	DefaultSampler     = SamplerParentBasedAlwaysOn // the OpenTelemetry SDK's own default
	DefaultRatio       = 1.0
	DefaultServiceName = "bedrock-gateway"
	// otlpHTTPPath is appended to an otlp-http endpoint given without a
	// path, as OTEL_EXPORTER_OTLP_ENDPOINT is (OTLP specification,
	// "OTLP/HTTP Request").
	otlpHTTPPath = "/v1/traces"
)

// Config is the tracing: block. The zero value is not DefaultConfig:
// use that as the base a file is decoded over.
type Config struct {
	// Exporter is none (tracing off), otlp-http (OTLP/HTTP protobuf) or
	// otlp-grpc. Default none.
	Exporter string `yaml:"exporter"`
	// Endpoint is the collector's URL. http:// sends spans in plaintext
	// and needs Insecure; https:// verifies the collector's certificate
	// against the system's roots. For otlp-http a URL without a path gets
	// /v1/traces; for otlp-grpc it has no path. Required unless Exporter
	// is none.
	Endpoint string `yaml:"endpoint"`
	// Insecure allows an http:// Endpoint: spans (which name users,
	// teams and tenants) then cross the network unencrypted. Default
	// false.
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every export, as they are. Not for secrets:
	// use HeadersEnv.
	Headers map[string]string `yaml:"headers"`
	// HeadersEnv are headers whose values are read from the environment
	// at start, header name to variable name (a collector's bearer token:
	// config files are not secret stores). A variable that is unset or
	// empty is an error at start.
	HeadersEnv map[string]string `yaml:"headers_env"`
	// Sampler decides which traces are kept; see the Sampler* constants.
	// Default parentbased_always_on.
	Sampler string `yaml:"sampler"`
	// SamplerRatio is the share of traces traceidratio and
	// parentbased_traceidratio keep, in [0,1]. Default 1.
	SamplerRatio float64 `yaml:"sampler_ratio"`
	// ServiceName is the service.name resource attribute. Default
	// bedrock-gateway.
	ServiceName string `yaml:"service_name"`
}

// DefaultConfig is tracing off, with every other setting at its default.
func DefaultConfig() Config {
	return Config{Exporter: DefaultExporter, Sampler: DefaultSampler, SamplerRatio: DefaultRatio, ServiceName: DefaultServiceName}
}

// Enabled reports whether c exports spans.
func (c Config) Enabled() bool { return c.Exporter != ExporterNone }

// Validate reports every problem in c at once (errors.Join), each named
// by its key under tracing:. It has no side effects: HeadersEnv's
// variables are read by New.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Exporter {
	case ExporterNone, ExporterOTLPHTTP, ExporterOTLPGRPC:
	default:
		add("exporter: must be %s, %s or %s, got %q", ExporterNone, ExporterOTLPHTTP, ExporterOTLPGRPC, c.Exporter)
	}
	if c.Endpoint == "" {
		if c.Exporter == ExporterOTLPHTTP || c.Exporter == ExporterOTLPGRPC {
			add("endpoint: required with exporter %s", c.Exporter)
		}
	} else if u, err := url.Parse(c.Endpoint); err != nil {
		add("endpoint: %q is not a URL", c.Endpoint)
	} else {
		switch {
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
			add("endpoint: %q must be an http:// or https:// URL with a host", c.Endpoint)
		case u.User != nil:
			add("endpoint: must not carry credentials; use headers_env")
		case u.RawQuery != "" || u.Fragment != "":
			add("endpoint: %q must have no query or fragment", c.Endpoint)
		case u.Scheme == "http" && !c.Insecure:
			add("endpoint: %q is plaintext; use https://, or set insecure: true to send spans unencrypted", c.Endpoint)
		case u.Scheme == "https" && c.Insecure:
			add("insecure: true contradicts the https:// endpoint")
		case c.Exporter == ExporterOTLPGRPC && strings.Trim(u.Path, "/") != "":
			add("endpoint: %q: an otlp-grpc endpoint has no path", c.Endpoint)
		}
	}
	for _, name := range sortedKeys(c.Headers) {
		if !validHeaderName(name) {
			add("headers: %q is not a header name", name)
		} else if strings.ContainsAny(c.Headers[name], "\r\n\x00") {
			add("headers.%s: must not contain CR, LF or NUL", name)
		}
		if _, dup := c.HeadersEnv[name]; dup {
			add("headers.%s: also in headers_env; set it in one place", name)
		}
	}
	for _, name := range sortedKeys(c.HeadersEnv) {
		if !validHeaderName(name) {
			add("headers_env: %q is not a header name", name)
		}
		if v := c.HeadersEnv[name]; !validEnvName(v) {
			add("headers_env.%s: %q is not an environment variable name", name, v)
		}
	}
	if !slices.Contains(samplers, c.Sampler) {
		add("sampler: must be one of %s, got %q", strings.Join(samplers, ", "), c.Sampler)
	}
	// Written so that NaN fails too.
	if !(c.SamplerRatio >= 0 && c.SamplerRatio <= 1) {
		add("sampler_ratio: must be in [0,1], got %v", c.SamplerRatio)
	} else if c.SamplerRatio != DefaultRatio && !strings.HasSuffix(c.Sampler, SamplerTraceIDRatio) {
		add("sampler_ratio: applies only to %s and %s, not %q", SamplerTraceIDRatio, SamplerParentBasedTraceIDRatio, c.Sampler)
	}
	if strings.TrimSpace(c.ServiceName) == "" {
		add("service_name: must not be empty")
	}
	return errors.Join(errs...)
}

// validHeaderName: an HTTP field name is a token (RFC 9110, section 5.1).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// validEnvName: a portable environment variable name (POSIX.1-2017,
// section 8.1: [A-Za-z_][A-Za-z0-9_]*).
func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Options are what New takes besides the config.
type Options struct {
	// Getenv reads HeadersEnv's variables. Default os.Getenv.
	Getenv func(string) string
	// Version is the service.version resource attribute. Optional.
	Version string
}

// Provider is the process's tracer provider. Shut it down when the
// process stops serving: spans still buffered are exported then.
type Provider struct {
	sdk *sdktrace.TracerProvider // nil when tracing is off
}

// New builds the provider c describes: with exporter none, a no-op one
// that costs nothing. It connects to nothing: the exporter dials the
// collector when it first has spans to send, so a collector that is down
// at start delays no one, and spans it cannot take are dropped (the
// OpenTelemetry SDK logs the failure), never a request.
func New(ctx context.Context, c Config, o Options) (*Provider, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return &Provider{}, nil
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	headers, err := c.headers(o.Getenv)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	switch c.Exporter {
	case ExporterOTLPHTTP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(httpEndpoint(c.Endpoint)),
			otlptracehttp.WithHeaders(headers))
	case ExporterOTLPGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(c.Endpoint),
			otlptracegrpc.WithHeaders(headers))
	}
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", c.ServiceName)}
	if o.Version != "" {
		attrs = append(attrs, attribute.String("service.version", o.Version))
	}
	res, err := resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("resource: %w", err)
	}
	return &Provider{sdk: sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(c.sampler()),
		sdktrace.WithResource(res),
	)}, nil
}

// headers merges Headers and HeadersEnv's values. Always a map, never
// nil: the exporters then send these headers only, not any from
// OTEL_EXPORTER_OTLP_HEADERS.
func (c Config) headers(getenv func(string) string) (map[string]string, error) {
	h := make(map[string]string, len(c.Headers)+len(c.HeadersEnv))
	for k, v := range c.Headers {
		h[k] = v
	}
	var errs []error
	for _, name := range sortedKeys(c.HeadersEnv) {
		v := getenv(c.HeadersEnv[name])
		switch {
		case v == "":
			errs = append(errs, fmt.Errorf("headers_env.%s: $%s is unset or empty", name, c.HeadersEnv[name]))
		case strings.ContainsAny(v, "\r\n\x00"):
			errs = append(errs, fmt.Errorf("headers_env.%s: $%s contains CR, LF or NUL", name, c.HeadersEnv[name]))
		default:
			h[name] = v
		}
	}
	return h, errors.Join(errs...)
}

// httpEndpoint is the URL an otlp-http exporter posts to: endpoint, with
// /v1/traces when it has no path.
func httpEndpoint(endpoint string) string {
	u, _ := url.Parse(endpoint) // Validate parsed it
	if strings.Trim(u.Path, "/") == "" {
		u.Path = otlpHTTPPath
	}
	return u.String()
}

// sampler is the SDK sampler c names (Validate checked the name and the
// ratio).
func (c Config) sampler() sdktrace.Sampler {
	var root sdktrace.Sampler
	switch strings.TrimPrefix(c.Sampler, "parentbased_") {
	case SamplerAlwaysOn:
		root = sdktrace.AlwaysSample()
	case SamplerAlwaysOff:
		root = sdktrace.NeverSample()
	default:
		root = sdktrace.TraceIDRatioBased(c.SamplerRatio)
	}
	if strings.HasPrefix(c.Sampler, "parentbased_") {
		return sdktrace.ParentBased(root)
	}
	return root
}

// TracerProvider is what the proxy traces with: OpenTelemetry's no-op
// provider when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil || p.sdk == nil {
		return noop.NewTracerProvider()
	}
	return p.sdk
}

// Shutdown exports the spans still buffered, within ctx, and stops the
// exporter; later spans are dropped. It is safe to call more than once.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.sdk == nil {
		return nil
	}
	return p.sdk.Shutdown(ctx)
}

// shutdownTimeout bounds Close's flush: a collector that does not answer
// must not hold up a stopping process for long.
const shutdownTimeout = 5 * time.Second

// Close is Shutdown bounded by a few seconds, for deferred use.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return p.Shutdown(ctx)
}
