package gateway

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/tracing"
	"github.com/bedrock-gateway/gateway/pkg/tracing/tracingtest"
)

// TestTracingEndToEnd: a gateway with tracing on exports the spans of a
// request, under the caller's traceparent, to an OTLP/HTTP collector with
// the token from tracing.headers_env, and Close flushes them; no span
// holds the caller's key or any credential STS issued.
func TestTracingEndToEnd(t *testing.T) {
	fake := fakeaws.New(fakeaws.Options{Roles: []string{testInvokeRole}})
	stsHandler, issued := fakeaws.RecordIssued(fake.STSHandler())
	stsSrv := httptest.NewServer(stsHandler)
	t.Cleanup(stsSrv.Close)
	brSrv := httptest.NewServer(fake.BedrockHandler())
	t.Cleanup(brSrv.Close)
	rc := tracingtest.NewHTTP(t)

	keys := filepath.Join(t.TempDir(), "keys.json")
	key, _, err := auth.IssueKey(keys, auth.KeyRecord{User: "alice", Team: "ds"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg := Default()
	cfg.AWS = AWSConfig{Region: "us-east-1", STSEndpoint: stsSrv.URL, BedrockRuntimeEndpoint: brSrv.URL}
	cfg.Session.RoleARN, cfg.Auth.APIKeysFile, cfg.Usage.Ledger = testInvokeRole, keys, LedgerOff
	cfg.Tracing.Exporter, cfg.Tracing.Endpoint, cfg.Tracing.Insecure = tracing.ExporterOTLPHTTP, rc.Endpoint, true
	cfg.Tracing.HeadersEnv = map[string]string{"Authorization": "OTLP_TOKEN"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	root := fake.RootCredentials(testGatewayRole)
	g, err := New(context.Background(), &cfg, Options{
		Credentials: credentials.StaticCredentialsProvider{Value: root},
		Logger:      slog.New(slog.DiscardHandler),
		Getenv:      envMap(map[string]string{"OTLP_TOKEN": "Bearer collector-token"}),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			g.Close(5 * time.Second)
		}
	})

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req := httptest.NewRequest(http.MethodPost, "/model/amazon.nova-lite-v1:0/converse",
		strings.NewReader(`{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if n := len(rc.Spans()); n != 0 {
		t.Logf("%d spans exported before Close", n)
	}
	g.Close(5 * time.Second)
	closed = true

	spans := rc.Spans()
	names := map[string]bool{}
	for _, s := range spans {
		names[s.Name] = true
		if s.TraceID != clientTrace {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, s.TraceID, clientTrace)
		}
		if s.Name == "Converse" && s.ParentSpanID != clientSpan {
			t.Errorf("server span's parent = %s, want the caller's %s", s.ParentSpanID, clientSpan)
		}
		if s.Resource["service.name"] != tracing.DefaultServiceName {
			t.Errorf("service.name = %v", s.Resource["service.name"])
		}
	}
	for _, want := range []string{"Converse", "authenticate", "session", "STS.AssumeRole", "BedrockRuntime.Converse"} {
		if !names[want] {
			t.Errorf("no %s span after Close; got %v", want, names)
		}
	}
	if h := rc.Headers(); len(h) == 0 || len(h[0]["authorization"]) != 1 || h[0]["authorization"][0] != "Bearer collector-token" {
		t.Errorf("collector got headers %v, want the token from $OTLP_TOKEN", h)
	}
	secrets := append([]string{key, root.SecretAccessKey}, issued()...)
	if len(secrets) < 4 {
		t.Fatalf("STS issued no session: %q", secrets)
	}
	for _, raw := range rc.Raw() {
		for _, s := range secrets {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("an export carries a secret (%d bytes)", len(s))
			}
		}
	}
}
