package tracing

import (
	"context"
	"math"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/pkg/tracing/tracingtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func otlp(exporter, endpoint string) Config {
	c := DefaultConfig()
	c.Exporter, c.Endpoint, c.Insecure = exporter, endpoint, strings.HasPrefix(endpoint, "http://")
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*Config)
		want []string // message prefixes, one per problem; nil means valid
	}{
		{"default: off", func(*Config) {}, nil},
		{"otlp-http over TLS", func(c *Config) { *c = otlp(ExporterOTLPHTTP, "https://collector:4318") }, nil},
		{"otlp-http with a path", func(c *Config) { *c = otlp(ExporterOTLPHTTP, "https://collector/otlp/v1/traces") }, nil},
		{"otlp-grpc plaintext, allowed", func(c *Config) { *c = otlp(ExporterOTLPGRPC, "http://127.0.0.1:4317") }, nil},
		{"ratio sampler", func(c *Config) { c.Sampler, c.SamplerRatio = SamplerParentBasedTraceIDRatio, 0.25 }, nil},
		{"ratio 0", func(c *Config) { c.Sampler, c.SamplerRatio = SamplerTraceIDRatio, 0 }, nil},
		{"headers", func(c *Config) {
			c.Headers = map[string]string{"X-Scope-OrgID": "acme"}
			c.HeadersEnv = map[string]string{"Authorization": "OTLP_TOKEN"}
		}, nil},
		{"unknown exporter", func(c *Config) { c.Exporter = "zipkin" }, []string{"exporter: "}},
		{"exporter without endpoint", func(c *Config) { c.Exporter = ExporterOTLPHTTP }, []string{"endpoint: required"}},
		{"endpoint not http", func(c *Config) { *c = otlp(ExporterOTLPGRPC, "dns:///collector:4317") }, []string{"endpoint: "}},
		{"endpoint without scheme", func(c *Config) { *c = otlp(ExporterOTLPGRPC, "collector:4317") }, []string{"endpoint: "}},
		{"plaintext not allowed", func(c *Config) { *c = otlp(ExporterOTLPHTTP, "http://collector:4318"); c.Insecure = false },
			[]string{"endpoint: \"http://collector:4318\" is plaintext"}},
		{"insecure with https", func(c *Config) { *c = otlp(ExporterOTLPHTTP, "https://collector:4318"); c.Insecure = true },
			[]string{"insecure: "}},
		{"credentials in the URL", func(c *Config) { *c = otlp(ExporterOTLPHTTP, "https://u:p@collector:4318") },
			[]string{"endpoint: must not carry credentials"}},
		{"grpc with a path", func(c *Config) { *c = otlp(ExporterOTLPGRPC, "https://collector:4317/v1/traces") },
			[]string{"endpoint: "}},
		{"bad header name", func(c *Config) { c.Headers = map[string]string{"Bad Name": "x"} }, []string{"headers: "}},
		{"header value with a newline", func(c *Config) { c.Headers = map[string]string{"X-A": "a\r\nX-B: b"} }, []string{"headers.X-A: "}},
		{"header in both", func(c *Config) {
			c.Headers = map[string]string{"Authorization": "x"}
			c.HeadersEnv = map[string]string{"Authorization": "TOKEN"}
		}, []string{"headers.Authorization: also in headers_env"}},
		{"bad variable name", func(c *Config) { c.HeadersEnv = map[string]string{"Authorization": "1TOKEN"} }, []string{"headers_env.Authorization: "}},
		{"unknown sampler", func(c *Config) { c.Sampler = "sometimes" }, []string{"sampler: "}},
		{"ratio above 1", func(c *Config) { c.Sampler, c.SamplerRatio = SamplerTraceIDRatio, 1.5 }, []string{"sampler_ratio: "}},
		{"NaN ratio", func(c *Config) { c.Sampler, c.SamplerRatio = SamplerTraceIDRatio, math.NaN() }, []string{"sampler_ratio: "}},
		{"ratio without a ratio sampler", func(c *Config) { c.SamplerRatio = 0.5 }, []string{"sampler_ratio: applies only"}},
		{"empty service name", func(c *Config) { c.ServiceName = " " }, []string{"service_name: "}},
		{"every problem at once", func(c *Config) {
			*c = Config{Exporter: "x", Endpoint: "ftp://c", Sampler: "x", SamplerRatio: -1,
				HeadersEnv: map[string]string{"A": ""}}
		}, []string{"exporter: ", "endpoint: ", "headers_env.A: ", "sampler: ", "sampler_ratio: ", "service_name: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %d problems", len(tt.want))
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tt.want) {
				t.Fatalf("Validate() = %d problems:\n%v\nwant prefixes %q", len(got), err, tt.want)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d = %q, want prefix %q", i, got[i], w)
				}
			}
		})
	}
}

func TestSampler(t *testing.T) {
	tests := []struct {
		sampler string
		ratio   float64
		want    string // the SDK sampler's Description
	}{
		{SamplerAlwaysOn, 1, "AlwaysOnSampler"},
		{SamplerAlwaysOff, 1, "AlwaysOffSampler"},
		{SamplerTraceIDRatio, 0.25, "TraceIDRatioBased{0.25}"},
		{SamplerParentBasedAlwaysOn, 1, "ParentBased{root:AlwaysOnSampler,"},
		{SamplerParentBasedAlwaysOff, 1, "ParentBased{root:AlwaysOffSampler,"},
		{SamplerParentBasedTraceIDRatio, 0.5, "ParentBased{root:TraceIDRatioBased{0.5},"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		c.Sampler, c.SamplerRatio = tt.sampler, tt.ratio
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate(%s) = %v", tt.sampler, err)
		}
		if got := c.sampler().Description(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("sampler(%s, %v) = %s, want %s…", tt.sampler, tt.ratio, got, tt.want)
		}
	}
}

// TestOffIsNoop: exporter none builds OpenTelemetry's no-op provider,
// which the proxy recognises as tracing off.
func TestOffIsNoop(t *testing.T) {
	p, err := New(t.Context(), DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.TracerProvider().(noop.TracerProvider); !ok {
		t.Errorf("TracerProvider() = %T, want noop.TracerProvider", p.TracerProvider())
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
}

// TestExport: spans reach an OTLP receiver over HTTP and over gRPC, with
// the configured headers (from the config and from the environment), the
// service name, and flushed by Shutdown.
func TestExport(t *testing.T) {
	for _, tt := range []struct {
		exporter string
		receiver func(testing.TB) *tracingtest.Receiver
	}{
		{ExporterOTLPHTTP, tracingtest.NewHTTP},
		{ExporterOTLPGRPC, tracingtest.NewGRPC},
	} {
		t.Run(tt.exporter, func(t *testing.T) {
			rc := tt.receiver(t)
			c := otlp(tt.exporter, rc.Endpoint)
			c.ServiceName = "gw-test"
			c.Headers = map[string]string{"X-Scope-OrgID": "acme"}
			c.HeadersEnv = map[string]string{"Authorization": "OTLP_TOKEN"}
			getenv := func(k string) string {
				if k == "OTLP_TOKEN" {
					return "Bearer collector-token"
				}
				return ""
			}
			p, err := New(t.Context(), c, Options{Getenv: getenv, Version: "1.2.3"})
			if err != nil {
				t.Fatal(err)
			}
			_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "hello", trace.WithSpanKind(trace.SpanKindServer))
			span.End()
			if err := p.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown() = %v", err)
			}
			if err := p.Shutdown(t.Context()); err != nil {
				t.Errorf("second Shutdown() = %v, want nil", err)
			}
			spans := rc.Spans()
			if len(spans) != 1 || spans[0].Name != "hello" {
				t.Fatalf("received %+v, want one span named hello", spans)
			}
			if got := spans[0].Resource["service.name"]; got != "gw-test" {
				t.Errorf("service.name = %v, want gw-test", got)
			}
			if got := spans[0].Resource["service.version"]; got != "1.2.3" {
				t.Errorf("service.version = %v, want 1.2.3", got)
			}
			h := rc.Headers()[0]
			if got := h["authorization"]; len(got) != 1 || got[0] != "Bearer collector-token" {
				t.Errorf("authorization = %q, want the token from $OTLP_TOKEN", got)
			}
			if got := h["x-scope-orgid"]; len(got) != 1 || got[0] != "acme" {
				t.Errorf("x-scope-orgid = %q, want acme", got)
			}
		})
	}
}

// TestHeadersEnvMissing: a header whose variable is unset fails New: the
// collector would refuse every export.
func TestHeadersEnvMissing(t *testing.T) {
	c := otlp(ExporterOTLPHTTP, "https://collector:4318")
	c.HeadersEnv = map[string]string{"Authorization": "OTLP_TOKEN"}
	_, err := New(t.Context(), c, Options{Getenv: func(string) string { return "" }})
	if err == nil || !strings.Contains(err.Error(), "headers_env.Authorization: $OTLP_TOKEN is unset or empty") {
		t.Errorf("New() = %v, want headers_env.Authorization unset", err)
	}
}

func TestHTTPEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://c:4318":            "http://c:4318/v1/traces",
		"http://c:4318/":           "http://c:4318/v1/traces",
		"https://c/otlp/v1/traces": "https://c/otlp/v1/traces",
	} {
		if got := httpEndpoint(in); got != want {
			t.Errorf("httpEndpoint(%q) = %q, want %q", in, got, want)
		}
	}
}
