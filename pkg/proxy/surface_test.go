package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// recordSink collects usage records.
type recordSink struct {
	mu   sync.Mutex
	recs []usage.Record
}

func (s *recordSink) Record(r usage.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, r)
}

func (s *recordSink) all() []usage.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]usage.Record(nil), s.recs...)
}

// TestStampRequestMetadata: the caller's identity reaches Bedrock's
// invocation logs, and a caller cannot forge the gateway's keys.
func TestStampRequestMetadata(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	forged := `{"messages":[{"role":"user","content":[{"text":"hi"}]}],"requestMetadata":{"gateway:user":"mallory","project":"x"}}`
	if resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", forged, authed()); resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("converse: %d %s", resp.StatusCode, b)
	}
	if resp := h.post(t, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		authed(requestMetadataHeader, `{"gateway:team":"finance","ticket":"42"}`)); resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("invoke: %d %s", resp.StatusCode, b)
	}
	invs := h.fake.Invocations()
	if len(invs) != 2 {
		t.Fatalf("invocations = %d", len(invs))
	}
	for i, want := range []map[string]string{
		{MetadataUser: "alice@acme.org", MetadataSession: "alice@acme.org", MetadataTeam: "ds", "project": "x"},
		{MetadataUser: "alice@acme.org", MetadataSession: "alice@acme.org", MetadataTeam: "ds", "ticket": "42"},
	} {
		got := invs[i].RequestMetadata
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: requestMetadata[%q] = %q, want %q (all: %v)", invs[i].Operation, k, got[k], v, got)
			}
		}
	}
}

func TestStampRequestMetadataRefusals(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	many := map[string]string{}
	for i := range 14 {
		many[string(rune('a'+i))] = "v"
	}
	tooMany, _ := json.Marshal(map[string]any{"messages": []any{}, "requestMetadata": many})
	for name, tc := range map[string]struct {
		path, body string
		header     http.Header
	}{
		"converse body not JSON":      {"/model/m/converse", "not json", authed()},
		"requestMetadata not strings": {"/model/m/converse", `{"requestMetadata":{"a":1}}`, authed()},
		"too many entries":            {"/model/m/converse", string(tooMany), authed()},
		"header not JSON":             {"/model/m/invoke", `{}`, authed(requestMetadataHeader, "nope")},
		"header twice":                {"/model/m/invoke", `{}`, authed(requestMetadataHeader, "{}", requestMetadataHeader, "{}")},
	} {
		t.Run(name, func(t *testing.T) {
			resp := h.post(t, tc.path, tc.body, tc.header)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Amzn-ErrorType") != "ValidationException" {
				t.Errorf("got %d %q, want 400 ValidationException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
			}
		})
	}
	if n := h.creds.calls.Load(); n != 0 {
		t.Errorf("refused requests asked for credentials %d times", n)
	}
}

func TestStampCanBeDisabled(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.DisableMetadataStamp = true })
	h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())
	if md := h.fake.Invocations()[0].RequestMetadata; len(md) != 0 {
		t.Errorf("requestMetadata = %v, want none", md)
	}
}

// TestControlPlaneAndUnsupported: Claude Code's startup probes and the
// bidirectional stream get clean Bedrock-shaped answers, not proxied.
func TestControlPlaneAndUnsupported(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{"GET", "/inference-profiles?type=SYSTEM_DEFINED", 404, "ResourceNotFoundException"},
		{"GET", "/inference-profiles/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0", 404, "ResourceNotFoundException"},
		{"POST", "/model/amazon.nova-sonic-v1:0/invoke-with-bidirectional-stream", 501, "ValidationException"},
		{"POST", "/guardrail/bad%20id/version/1/apply", 400, "ValidationException"},
		{"POST", "/guardrail/abc123/version/0/apply", 400, "ValidationException"},
		{"GET", "/async-invoke/not-an-arn", 400, "ValidationException"},
		{"GET", "/async-invoke?maxResults=0", 400, "ValidationException"},
		{"GET", "/async-invoke?bogus=1", 400, "ValidationException"},
		{"POST", "/async-invoke", 400, "ValidationException"},
	} {
		req, _ := http.NewRequest(tc.method, h.gateway.URL+tc.path, strings.NewReader(`{}`))
		req.Header = authed()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("X-Amzn-ErrorType") != tc.typ {
			t.Errorf("%s %s = %d %q, want %d %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tc.status, tc.typ)
		}
	}
	if n := len(h.fake.Invocations()); n != 0 {
		t.Errorf("Bedrock saw %d calls", n)
	}
}

// TestClientDisconnectCancelsUpstream: a client that goes away mid-stream
// cancels Bedrock's side at once; the usage record says so.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	upstreamCancelled := make(chan struct{})
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if i == 1 {
			select {
			case <-ctx.Done():
				close(upstreamCancelled)
			case <-time.After(10 * time.Second):
			}
		}
	}}, func(c *Config) { c.Usage = sink })

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.gateway.URL+"/model/amazon.nova-lite-v1:0/converse-stream", strings.NewReader(converseBody))
	req.Header = authed()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readFrame(resp.Body); err != nil {
		t.Fatal(err)
	}
	cancel() // the client goes away after the first event
	resp.Body.Close()
	select {
	case <-upstreamCancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream call was not cancelled when the client went away")
	}
	waitFor(t, func() bool { return len(sink.all()) == 1 })
	if r := sink.all()[0]; !r.ClientGone || r.Operation != "ConverseStream" || r.ErrorType != "" {
		t.Errorf("usage record = %+v, want ClientGone for ConverseStream, no error type (not an upstream cut)", r)
	}
}

// waitFor polls cond; it bounds how long a handler's deferred work may
// take after the client has its answer.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamIdleTimeout: Bedrock going quiet mid-stream ends the exchange
// after the idle timeout instead of holding the client forever.
func TestStreamIdleTimeout(t *testing.T) {
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if i == 1 {
			<-ctx.Done() // never sends event 1
		}
	}}, func(c *Config) { c.Usage = sink; c.StreamIdleTimeout = 200 * time.Millisecond })
	resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse-stream", converseBody, authed())
	start := time.Now()
	io.Copy(io.Discard, resp.Body)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stream ended after %v", d)
	}
	waitFor(t, func() bool { return len(sink.all()) == 1 })
	if got := sink.all()[0].ErrorType; got != "StreamIdleTimeout" {
		t.Errorf("usage error type = %q, want StreamIdleTimeout", got)
	}
}

// TestPostNeverRetried: when the connection dies after Bedrock has read
// the request, the gateway answers 502 and does not send it again.
func TestPostNeverRetried(t *testing.T) {
	var seen atomic.Int32
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		seen.Add(1)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer upstream.Close()
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Endpoint, _ = url.Parse(upstream.URL) })
	// Warm a keep-alive connection first, then fail on a reused one too.
	for range 2 {
		resp := h.post(t, "/model/m/converse", converseBody, authed(
			"Idempotency-Key", "please-retry"))
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("status = %d, want 502", resp.StatusCode)
		}
	}
	if n := seen.Load(); n != 2 {
		t.Errorf("upstream saw %d requests for 2 calls: a POST was retried", n)
	}
}

// TestUsageRecordsEveryRequest: exactly one record per request, refused
// or forwarded, with tokens for those Bedrock reported.
func TestUsageRecordsEveryRequest(t *testing.T) {
	sink := &recordSink{}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Usage = sink })
	h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())
	h.post(t, "/model/m/converse", converseBody, http.Header{})
	h.post(t, "/model/fake.error-throttle/converse", converseBody, authed())
	h.post(t, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"one two"}]}`, authed())
	waitFor(t, func() bool { return len(sink.all()) == 4 })
	recs := sink.all()
	byStatus := map[int]usage.Record{}
	for _, r := range recs {
		byStatus[r.Status] = r
	}
	if r := byStatus[401]; r.ErrorType != "AccessDeniedException" || r.User != "" {
		t.Errorf("refused record = %+v", r)
	}
	if r := byStatus[429]; r.ErrorType != "ThrottlingException" || r.SessionName != "alice@acme.org" {
		t.Errorf("throttled record = %+v", r)
	}
	var converse, invoke usage.Record
	for _, r := range recs {
		switch {
		case r.Operation == "Converse" && r.Status == 200:
			converse = r
		case r.Operation == "InvokeModel":
			invoke = r
		}
	}
	invs := h.fake.Invocations()
	want := map[string]int64{}
	for _, inv := range invs {
		if inv.Status == 200 {
			want[inv.Operation] = inv.InputTokens*1000 + inv.OutputTokens
		}
	}
	if got := converse.Input*1000 + converse.Output; got == 0 || got != want["Converse"] {
		t.Errorf("Converse tokens = %+v, fake billed %d", converse.Tokens, want["Converse"])
	}
	if got := invoke.Input*1000 + invoke.Output; got == 0 || got != want["InvokeModel"] {
		t.Errorf("InvokeModel tokens = %+v, fake billed %d", invoke.Tokens, want["InvokeModel"])
	}
	if converse.UpstreamRequestID == "" || converse.TimeToFirstByte <= 0 || converse.RoleARN == "" {
		t.Errorf("converse record lacks request ID, TTFB or role: %+v", converse)
	}
}
