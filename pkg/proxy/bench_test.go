package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bedrock-gateway/gateway/internal/logjson"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// cannedTransport answers every upstream request with the same response,
// in process: the benchmarks measure the gateway, not a network.
type cannedTransport struct {
	header http.Header
	body   []byte
	// chunk, if set, is the most one Read returns: Bedrock's events
	// arrive one by one, not in 32 KiB slabs.
	chunk int
}

type chunkReader struct {
	r   io.Reader
	max int
}

func (c chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.max {
		p = p[:c.max]
	}
	return c.r.Read(p)
}

func (c *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	var body io.Reader = bytes.NewReader(c.body)
	if c.chunk > 0 {
		body = chunkReader{body, c.chunk}
	}
	return &http.Response{StatusCode: 200, Header: c.header.Clone(), Body: io.NopCloser(body),
		ContentLength: -1, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

func benchProxy(b *testing.B, tr http.RoundTripper, mutate ...func(*Config)) *Proxy {
	b.Helper()
	metrics, err := usage.NewMetrics(usage.MetricsConfig{Registerer: prometheus.NewRegistry(), Teams: []string{"ds"}})
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
	cfg := Config{
		Endpoint: u, Region: "us-east-1",
		Authenticator: keyAuth{}, Resolver: staticResolver{},
		Credentials:          &credStub{creds: aws.Credentials{AccessKeyID: "ASIAEXAMPLEEXAMPLE", SecretAccessKey: strings.Repeat("s", 40), SessionToken: strings.Repeat("t", tokenLen())}},
		Transport:            tr,
		Logger:               slog.New(logjson.New(io.Discard, nil)), // as internal/gateway builds it
		Usage:                metrics,
		Prices:               pricing.Default(),
		DisableMetadataStamp: os.Getenv("NOSTAMP") != "",
	}
	for _, m := range mutate {
		m(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkProxyConverse4K: one 4 KiB Converse request through the whole
// gateway path (auth, session lookup, metadata stamp, SigV4, proxy, usage
// metering, access log) against an in-process upstream. Compare it with
// BenchmarkBareProxyConverse4K, the same request through a bare
// httputil.ReverseProxy on the same harness: the difference is what the
// gateway adds.
func BenchmarkProxyConverse4K(b *testing.B) {
	benchConverse4K(b, benchProxy(b, &cannedTransport{header: cannedHeader, body: cannedConverse}))
}

// BenchmarkBareProxyConverse4K is BenchmarkProxyConverse4K's floor.
func BenchmarkBareProxyConverse4K(b *testing.B) {
	u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
	benchConverse4K(b, &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: &cannedTransport{header: cannedHeader, body: cannedConverse},
	})
}

// BenchmarkHarnessConverse4K is what the harness itself costs: the same
// request and recorder, and one round trip to the canned upstream whose
// answer is copied out, with nothing in between. Subtract its allocations
// from BenchmarkProxyConverse4K's for the gateway's own.
func BenchmarkHarnessConverse4K(b *testing.B) {
	tr := &cannedTransport{header: cannedHeader, body: cannedConverse}
	benchConverse4K(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := tr.RoundTrip(r)
		if err != nil {
			b.Fatal(err)
		}
		w.WriteHeader(resp.StatusCode)
		var buf [512]byte
		io.CopyBuffer(w, resp.Body, buf[:])
	}))
}

var (
	cannedHeader   = http.Header{"Content-Type": {"application/json"}, "X-Amzn-Requestid": {"r"}}
	cannedConverse = []byte(`{"output":{"message":{"role":"assistant","content":[{"text":"Hello from emulated Bedrock"}]}},"stopReason":"end_turn","usage":{"inputTokens":812,"outputTokens":4,"totalTokens":816},"metrics":{"latencyMs":100}}`)
)

func benchConverse4K(b *testing.B, p http.Handler) {
	text := strings.Repeat("lorem ipsum ", 4096/12)
	body := []byte(`{"messages":[{"role":"user","content":[{"text":"` + text + `"}]}]}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkProxyStreamEvent: a ConverseStream response of 1,000
// contentBlockDelta events through the gateway; the per-event cost is
// reported as ns/event.
func BenchmarkProxyStreamEvent(b *testing.B) {
	const events = 1000
	var stream bytes.Buffer
	enc := eventstream.NewEncoder()
	frame := func(typ, payload string) {
		msg := eventstream.Message{Payload: []byte(payload)}
		msg.Headers.Set(":message-type", eventstream.StringValue("event"))
		msg.Headers.Set(":event-type", eventstream.StringValue(typ))
		msg.Headers.Set(":content-type", eventstream.StringValue("application/json"))
		if err := enc.Encode(&stream, msg); err != nil {
			b.Fatal(err)
		}
	}
	frame("messageStart", `{"role":"assistant","p":"abcdefghijkl"}`)
	for i := range events {
		frame("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"token `+strconv.Itoa(i)+` "},"p":"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"}`)
	}
	frame("messageStop", `{"stopReason":"end_turn"}`)
	frame("metadata", `{"usage":{"inputTokens":10,"outputTokens":1000,"totalTokens":1010},"metrics":{"latencyMs":100}}`)
	// One event per read, as Bedrock sends them (a delta frame is ~180 bytes).
	p := benchProxy(b, &cannedTransport{header: http.Header{"Content-Type": {eventStreamType}}, body: stream.Bytes(), chunk: 180})
	body := []byte(converseBody)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/model/amazon.nova-lite-v1%3A0/converse-stream", bytes.NewReader(body)).WithContext(context.Background())
		req.Header.Set("Authorization", "Bearer "+testKey)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.Len() != stream.Len() {
			b.Fatalf("status %d, %d bytes of %d", rec.Code, rec.Body.Len(), stream.Len())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
}

// BenchmarkUpstreamH2Converse4K: BenchmarkProxyConverse4K and its bare
// floor against a real upstream over TLS and HTTP/2, as Bedrock is, in
// this process: the transports, TLS and HTTP/2 framing included.
func BenchmarkUpstreamH2Converse4K(b *testing.B) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(cannedConverse)
	}))
	up.EnableHTTP2 = true
	up.StartTLS()
	b.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	roots := up.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	b.Run("gateway", func(b *testing.B) {
		p := benchProxy(b, nil, func(c *Config) { c.Endpoint, c.RootCAs = u, roots })
		b.Cleanup(p.Close)
		benchConverse4K(b, p)
	})
	b.Run("bare", func(b *testing.B) {
		tr := newTransport(DefaultResponseHeaderTimeout, roots, DefaultMaxIdleConnsPerHost)
		b.Cleanup(tr.CloseIdleConnections)
		benchConverse4K(b, &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }, Transport: tr})
	})
}

func tokenLen() int {
	if n, err := strconv.Atoi(os.Getenv("TOKENLEN")); err == nil {
		return n
	}
	return 1024
}
