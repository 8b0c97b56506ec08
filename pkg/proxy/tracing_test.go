package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/logbuf"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tracing"
	"github.com/bedrock-gateway/gateway/pkg/tracing/tracingtest"
)

// traced is the gateway with tracing on, a real session cache and the
// fake AWS (STS and Bedrock) over httptest, exporting to an in-process
// OTLP/HTTP receiver.
type traced struct {
	gateway  *httptest.Server
	receiver *tracingtest.Receiver
	provider *tracing.Provider
	// secrets are what must never appear in a span: the caller's key,
	// the gateway's own secret key, and every secret key and session
	// token STS issued.
	secrets func() []string
	// logs is the access log, as text.
	logs logbuf.Buffer
}

func newTraced(t *testing.T, sampler string) *traced {
	t.Helper()
	fake := fakeaws.New(fakeaws.Options{Roles: []string{invokeRole}})
	stsHandler, issued := fakeaws.RecordIssued(fake.STSHandler())
	stsSrv := httptest.NewServer(stsHandler)
	t.Cleanup(stsSrv.Close)
	bedrock := httptest.NewServer(fake.BedrockHandler())
	t.Cleanup(bedrock.Close)

	root := fake.RootCredentials("arn:aws:iam::123456789012:role/BedrockGatewayRole")
	cache, err := sessioncache.New(sessioncache.Config{STS: sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(stsSrv.URL),
		HTTPClient:   stsSrv.Client(),
		Credentials:  credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, ""),
	})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cache.Close)

	tr := &traced{receiver: tracingtest.NewHTTP(t)}
	tc := tracing.DefaultConfig()
	tc.Exporter, tc.Endpoint, tc.Insecure, tc.Sampler = tracing.ExporterOTLPHTTP, tr.receiver.Endpoint, true, sampler
	if tr.provider, err = tracing.New(t.Context(), tc, tracing.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.provider.Close() })

	u, _ := url.Parse(bedrock.URL)
	p, err := New(Config{
		Endpoint: u, Region: "us-east-1",
		Authenticator: keyAuth{}, Resolver: userResolver{}, Credentials: cache,
		Logger:         slog.New(slog.NewTextHandler(&tr.logs, nil)),
		TracerProvider: tr.provider.TracerProvider(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	tr.gateway = httptest.NewServer(p)
	t.Cleanup(tr.gateway.Close)
	tr.secrets = func() []string {
		return append([]string{testKey, root.SecretAccessKey}, issued()...)
	}
	return tr
}

// call sends one request through the gateway and reads its answer whole.
func (tr *traced) call(t *testing.T, path, body string, header http.Header) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tr.gateway.URL+path, strings.NewReader(body))
	req.Header = header
	resp, err := tr.gateway.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode
}

// spans flushes the provider and returns what the receiver got, by trace.
func (tr *traced) spans(t *testing.T) map[string][]tracingtest.Span {
	t.Helper()
	if err := tr.provider.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	byTrace := map[string][]tracingtest.Span{}
	for _, s := range tr.receiver.Spans() {
		byTrace[s.TraceID] = append(byTrace[s.TraceID], s)
	}
	return byTrace
}

// tree describes a trace as "parent > child" lines, each span by name.
func tree(spans []tracingtest.Span) []string {
	names := map[string]string{}
	for _, s := range spans {
		names[s.SpanID] = s.Name
	}
	var lines []string
	for _, s := range spans {
		parent, ok := names[s.ParentSpanID]
		if !ok {
			parent = "remote:" + s.ParentSpanID
		}
		lines = append(lines, parent+" > "+s.Name)
	}
	slices.Sort(lines)
	return lines
}

func spanNamed(t *testing.T, spans []tracingtest.Span, name string) tracingtest.Span {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q in %v", name, tree(spans))
	return tracingtest.Span{}
}

const (
	clientTrace1 = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan1  = "00f067aa0ba902b7"
	clientTrace2 = "0af7651916cd43dd8448eb211c80319c"
	clientSpan2  = "b7ad6b7169203331"
)

// TestTracingSpanTree: a Converse (a session cache miss: STS is called)
// and then a ConverseStream (a hit) each produce the server span, a
// child of the caller's traceparent, with authentication, session and
// upstream spans under it, and the attributes the product attributes by.
func TestTracingSpanTree(t *testing.T) {
	tr := newTraced(t, tracing.SamplerParentBasedAlwaysOn)
	if code := tr.call(t, "/model/amazon.nova-lite-v1:0/converse", converseBody,
		authed("Traceparent", "00-"+clientTrace1+"-"+clientSpan1+"-01")); code != http.StatusOK {
		t.Fatalf("Converse: status %d", code)
	}
	if code := tr.call(t, "/model/amazon.nova-lite-v1:0/converse-stream", converseBody,
		authed("Traceparent", "00-"+clientTrace2+"-"+clientSpan2+"-01")); code != http.StatusOK {
		t.Fatalf("ConverseStream: status %d", code)
	}
	byTrace := tr.spans(t)
	if len(byTrace) != 2 {
		t.Fatalf("traces = %d, want the caller's two: %v", len(byTrace), byTrace)
	}

	// Each access line names its request's trace.
	logs := tr.logs.String()
	for _, id := range []string{clientTrace1, clientTrace2} {
		if !strings.Contains(logs, "trace_id="+id) {
			t.Errorf("no access line with trace_id=%s:\n%s", id, logs)
		}
	}

	converse := byTrace[clientTrace1]
	want := []string{
		"Converse > BedrockRuntime.Converse",
		"Converse > authenticate",
		"Converse > session",
		"remote:" + clientSpan1 + " > Converse",
		"session > STS.AssumeRole",
	}
	if got := tree(converse); !slices.Equal(got, want) {
		t.Errorf("Converse trace:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	stream := byTrace[clientTrace2]
	want = []string{
		"ConverseStream > BedrockRuntime.ConverseStream",
		"ConverseStream > authenticate",
		"ConverseStream > session",
		"remote:" + clientSpan2 + " > ConverseStream",
	}
	if got := tree(stream); !slices.Equal(got, want) {
		t.Errorf("ConverseStream trace:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	for _, c := range []struct {
		spans            []tracingtest.Span
		op               string
		cacheHit, stream bool
	}{
		{converse, "Converse", false, false},
		{stream, "ConverseStream", true, true},
	} {
		server := spanNamed(t, c.spans, c.op)
		if server.Kind != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: kind %v, want server", c.op, server.Kind)
		}
		wantAttrs(t, server, map[string]any{
			"http.request.method":       "POST",
			"http.response.status_code": int64(200),
			"gen_ai.system":             "aws.bedrock",
			"gen_ai.operation.name":     "chat",
			"gen_ai.request.model":      "amazon.nova-lite-v1:0",
			"gateway.operation":         c.op,
			"gateway.user":              "alice@acme.org",
			"gateway.team":              "ds",
			"gateway.auth.method":       "api-key",
		})
		positive(t, server, "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gateway.time_to_first_byte_ms")
		if server.StatusCode == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("%s: server span status error: %s", c.op, server.StatusMessage)
		}

		wantAttrs(t, spanNamed(t, c.spans, "authenticate"), map[string]any{
			"gateway.auth.outcome": "ok", "gateway.auth.method": "api-key", "gateway.auth.key_id": "k1"})
		wantAttrs(t, spanNamed(t, c.spans, "session"), map[string]any{
			"gateway.session.cache_hit": c.cacheHit, "gateway.session.name": "alice@acme.org", "gateway.session.role_arn": invokeRole})

		up := spanNamed(t, c.spans, "BedrockRuntime."+c.op)
		if up.Kind != tracepb.Span_SPAN_KIND_CLIENT {
			t.Errorf("%s upstream: kind %v, want client", c.op, up.Kind)
		}
		wantAttrs(t, up, map[string]any{
			"rpc.system": "aws-api", "rpc.service": "BedrockRuntime", "rpc.method": c.op,
			"http.response.status_code": int64(200), "gen_ai.request.model": "amazon.nova-lite-v1:0",
			"gateway.stream": c.stream,
		})
		positive(t, up, "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens")
		if c.stream {
			positive(t, up, "gateway.stream.duration_ms")
		}
		if up.Attrs["aws.request_id"] == "" || up.Attrs["aws.request_id"] == nil {
			t.Errorf("%s upstream: no aws.request_id", c.op)
		}
		var events []string
		for _, e := range up.Events {
			events = append(events, e.Name)
		}
		if !slices.Equal(events, []string{"response headers", "first byte"}) {
			t.Errorf("%s upstream events = %q, want response headers, first byte", c.op, events)
		}
	}

	assume := spanNamed(t, converse, "STS.AssumeRole")
	wantAttrs(t, assume, map[string]any{"rpc.service": "STS", "rpc.method": "AssumeRole",
		"gateway.sts.attempt": int64(0), "gateway.sts.class": "new"})
	if _, ok := assume.Attrs["gateway.sts.admission_wait_ms"].(float64); !ok {
		t.Errorf("STS.AssumeRole: no admission wait: %v", assume.Attrs)
	}
	if len(assume.Events) != 1 || assume.Events[0].Name != "admitted" {
		t.Errorf("STS.AssumeRole events = %+v, want admitted", assume.Events)
	}
	noSecrets(t, tr)
}

// TestTracingRefusals: a caller without credentials gets a trace of its
// refusal (no session, no upstream span); one whose traceparent says
// "not sampled" gets none under a parent-based sampler.
func TestTracingRefusals(t *testing.T) {
	tr := newTraced(t, tracing.SamplerParentBasedAlwaysOn)
	noAuth := http.Header{"Content-Type": {"application/json"}, "Traceparent": {"00-" + clientTrace1 + "-" + clientSpan1 + "-01"}}
	if code := tr.call(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, noAuth); code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", code)
	}
	wrongKey := authed("Traceparent", "00-"+clientTrace2+"-"+clientSpan2+"-01")
	wrongKey.Set("Authorization", "Bearer not-the-key")
	if code := tr.call(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, wrongKey); code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", code)
	}
	unsampled := authed("Traceparent", "00-11111111111111111111111111111111-2222222222222222-00")
	if code := tr.call(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, unsampled); code != http.StatusOK {
		t.Fatalf("status %d, want 200", code)
	}
	byTrace := tr.spans(t)
	if len(byTrace) != 2 {
		t.Fatalf("traces = %v, want the two refusals only", byTrace)
	}
	for tid, reason := range map[string]string{clientTrace1: "no_credentials", clientTrace2: "invalid_credentials"} {
		spans := byTrace[tid]
		// Refused before routing: named by its method alone.
		want := []string{"POST > authenticate", "remote:" + spanNamed(t, spans, "POST").ParentSpanID + " > POST"}
		if got := tree(spans); !slices.Equal(got, want) {
			t.Errorf("refused trace %v, want %v", got, want)
		}
		wantAttrs(t, spanNamed(t, spans, "authenticate"), map[string]any{
			"gateway.auth.outcome": reason, "error.type": "AccessDeniedException"})
		server := spanNamed(t, spans, "POST")
		wantAttrs(t, server, map[string]any{"http.response.status_code": int64(401), "error.type": "AccessDeniedException",
			"gateway.operation": "other"})
		if _, ok := server.Attrs["gateway.user"]; ok {
			t.Errorf("refused request has a user: %v", server.Attrs)
		}
		if server.StatusCode == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("a 401 marks the server span as an error")
		}
	}
	noSecrets(t, tr)
}

// noSecrets scans every string of every span received, and the raw
// export requests, for credentials.
func noSecrets(t *testing.T, tr *traced) {
	t.Helper()
	secrets := tr.secrets()
	if len(secrets) < 4 {
		t.Fatalf("secrets = %q: STS issued no session?", secrets)
	}
	secrets = append(secrets, "Bearer", "AWS4-HMAC-SHA256", "Signature=", "X-Amz-Security-Token", "not-the-key")
	for _, s := range tr.receiver.Spans() {
		for _, str := range s.Strings() {
			for _, secret := range secrets {
				if strings.Contains(str, secret) {
					t.Errorf("span %s carries %q in %q", s.Name, secret, str)
				}
			}
		}
	}
	for _, raw := range tr.receiver.Raw() {
		for _, secret := range secrets {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("an export request carries %q", secret)
			}
		}
	}
}

func wantAttrs(t *testing.T, s tracingtest.Span, want map[string]any) {
	t.Helper()
	for k, v := range want {
		if got, ok := s.Attrs[k]; !ok || got != v {
			t.Errorf("%s: %s = %v (%T), want %v (%T)", s.Name, k, got, got, v, v)
		}
	}
}

func positive(t *testing.T, s tracingtest.Span, keys ...string) {
	t.Helper()
	for _, k := range keys {
		switch v := s.Attrs[k].(type) {
		case int64:
			if v > 0 {
				continue
			}
		case float64:
			if v > 0 {
				continue
			}
		}
		t.Errorf("%s: %s = %v, want a positive number", s.Name, k, s.Attrs[k])
	}
}

// TestTracingOffAllocatesNothing: with the no-op provider a request
// allocates exactly what it does without one: tracing off costs nothing.
func TestTracingOffAllocatesNothing(t *testing.T) {
	run := func(tp trace.TracerProvider) float64 {
		u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
		cfg := Config{Endpoint: u, Region: "us-east-1", Authenticator: keyAuth{}, Resolver: staticResolver{},
			Credentials: &credStub{creds: aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret", SessionToken: "token"}},
			Transport:   &cannedTransport{header: cannedHeader, body: cannedConverse},
			Logger:      slog.New(slog.NewJSONHandler(io.Discard, nil))}
		if tp != nil {
			cfg.TracerProvider = tp
		}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if tp != nil && p.tracer != nil {
			t.Fatal("a no-op provider turned tracing on")
		}
		body := []byte(converseBody)
		// The fewest of a few runs: AllocsPerRun counts the whole
		// process's allocations, other goroutines' included.
		least := math.Inf(1)
		for range 5 {
			least = min(least, testing.AllocsPerRun(100, func() {
				req := httptest.NewRequest(http.MethodPost, "/model/amazon.nova-lite-v1%3A0/converse", bytes.NewReader(body)).WithContext(context.Background())
				req.Header.Set("Authorization", "Bearer "+testKey)
				req.Header.Set("Traceparent", "00-"+clientTrace1+"-"+clientSpan1+"-01")
				rec := httptest.NewRecorder()
				p.ServeHTTP(rec, req)
				if rec.Code != 200 {
					t.Fatalf("status %d", rec.Code)
				}
			}))
		}
		return least
	}
	off, noopAllocs := run(nil), run(noop.NewTracerProvider())
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector")
	}
	if noopAllocs != off {
		t.Errorf("allocations per request: %v with the no-op provider, %v without, want equal", noopAllocs, off)
	}
}

// BenchmarkProxyConverse4KTraced is BenchmarkProxyConverse4K with every
// request traced (always_on, batched to an exporter that drops them): the
// cost of tracing when it is on.
func BenchmarkProxyConverse4KTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	p := benchProxy(b, &cannedTransport{header: cannedHeader, body: cannedConverse})
	p.tracer = newTracer(tp)
	benchConverse4K(b, p)
}

// TestTracingEmbeddings: an OpenAI embeddings request that Bedrock serves
// in two InvokeModel calls (Titan takes one text per call) has one client
// span per call under its server span, each with Bedrock's status,
// request ID and token count.
func TestTracingEmbeddings(t *testing.T) {
	tr := newTraced(t, tracing.SamplerParentBasedAlwaysOn)
	if code := tr.call(t, "/v1/embeddings", `{"model":"amazon.titan-embed-text-v2:0","input":["one two","three"]}`,
		authed("Traceparent", "00-"+clientTrace1+"-"+clientSpan1+"-01")); code != http.StatusOK {
		t.Fatalf("embeddings: status %d", code)
	}
	spans := tr.spans(t)[clientTrace1]
	want := []string{
		"Embeddings > BedrockRuntime.InvokeModel",
		"Embeddings > BedrockRuntime.InvokeModel",
		"Embeddings > authenticate",
		"Embeddings > session",
		"remote:" + clientSpan1 + " > Embeddings",
		"session > STS.AssumeRole",
	}
	if got := tree(spans); !slices.Equal(got, want) {
		t.Fatalf("embeddings trace:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ids []any
	var tokens int64
	for _, s := range spans {
		if s.Name != "BedrockRuntime.InvokeModel" {
			continue
		}
		if s.Kind != tracepb.Span_SPAN_KIND_CLIENT || s.StatusCode == tracepb.Status_STATUS_CODE_ERROR {
			t.Errorf("call span: kind %v, status %v", s.Kind, s.StatusCode)
		}
		wantAttrs(t, s, map[string]any{"rpc.system": "aws-api", "rpc.service": "BedrockRuntime", "rpc.method": "InvokeModel",
			"http.response.status_code": int64(200), "gen_ai.request.model": "amazon.titan-embed-text-v2:0"})
		positive(t, s, "gen_ai.usage.input_tokens")
		n, _ := s.Attrs["gen_ai.usage.input_tokens"].(int64)
		tokens += n
		ids = append(ids, s.Attrs["aws.request_id"])
	}
	if len(ids) != 2 || ids[0] == nil || ids[0] == "" || ids[0] == ids[1] {
		t.Errorf("call spans' aws.request_id = %v, want two different IDs", ids)
	}
	server := spanNamed(t, spans, "Embeddings")
	if got, _ := server.Attrs["gen_ai.usage.input_tokens"].(int64); got != tokens {
		t.Errorf("server span input tokens %d, want the calls' sum %d", got, tokens)
	}
	noSecrets(t, tr)
}
