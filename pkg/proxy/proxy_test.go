package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/sessioncache"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testKey = "good-key"

// keyAuth accepts "Authorization: Bearer good-key" as alice.
type keyAuth struct{}

func (keyAuth) Authenticate(r *http.Request) (auth.Identity, error) {
	switch r.Header.Get("Authorization") {
	case "":
		return auth.Identity{}, auth.ErrNoCredentials
	case "Bearer " + testKey:
		return auth.Identity{User: "alice@acme.org", Team: "ds", Method: "api-key", KeyID: "k1"}, nil
	}
	return auth.Identity{}, auth.ErrInvalidCredentials
}

type staticResolver struct{ err error }

func (s staticResolver) Resolve(id auth.Identity) (tenancy.SessionSpec, error) {
	if s.err != nil {
		return tenancy.SessionSpec{}, s.err
	}
	return tenancy.SessionSpec{RoleARN: "arn:aws:iam::123456789012:role/R", SessionName: id.User, Duration: time.Hour}, nil
}

// credStub hands out fixed credentials (or an error) and counts calls.
type credStub struct {
	creds aws.Credentials
	err   error
	calls atomic.Int32
}

func (c *credStub) Get(ctx context.Context, spec tenancy.SessionSpec) (aws.Credentials, error) {
	c.calls.Add(1)
	return c.creds, c.err
}

type harness struct {
	fake     *fakeaws.Server
	upstream *httptest.Server
	gateway  *httptest.Server
	proxy    *Proxy
	creds    *credStub
	logs     *bytes.Buffer
	logMu    *sync.Mutex
}

const callerARN = "arn:aws:iam::123456789012:user/alice-session"

func newHarness(t *testing.T, opts fakeaws.Options, mutate func(*Config)) *harness {
	t.Helper()
	h := &harness{logs: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	h.fake = fakeaws.New(opts)
	h.upstream = httptest.NewServer(h.fake.BedrockHandler())
	t.Cleanup(h.upstream.Close)
	h.creds = &credStub{creds: h.fake.RootCredentials(callerARN)}
	u, _ := url.Parse(h.upstream.URL)
	cfg := Config{
		Endpoint:      u,
		Region:        "us-east-1",
		Authenticator: keyAuth{},
		Resolver:      staticResolver{},
		Credentials:   h.creds,
		Logger:        slog.New(slog.NewJSONHandler(lockedWriter{h.logMu, h.logs}, nil)),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	h.proxy = p
	h.gateway = httptest.NewServer(p)
	t.Cleanup(h.gateway.Close)
	return h
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (h *harness) post(t *testing.T, path, body string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.gateway.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func authed(extra ...string) http.Header {
	h := http.Header{"Authorization": {"Bearer " + testKey}, "Content-Type": {"application/json"}}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return h
}

const converseBody = `{"messages":[{"role":"user","content":[{"text":"hi there"}]}]}`

// TestHeadersAllowList: only Bedrock's own headers travel upstream; the
// caller's credentials, AWS signing headers, Host and forwarding headers do
// not, and the upstream host is the configured one whatever Host says.
func TestHeadersAllowList(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	resp := h.post(t, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke",
		`{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		authed(
			"X-Api-Key", testKey,
			"X-Amz-Security-Token", "client-token",
			"X-Amz-Date", "20200101T000000Z",
			"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD",
			"Idempotency-Key", "once",
			"X-Forwarded-Host", "evil.example",
			"X-Forwarded-For", "10.0.0.1",
			"Cookie", "session=1",
			"Amz-Sdk-Invocation-Id", "abc",
			"Accept", "application/json",
			"X-Amzn-Bedrock-Trace", "ENABLED",
			"X-Amzn-Bedrock-GuardrailIdentifier", "gr-1",
		))
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	invs := h.fake.Invocations()
	if len(invs) != 1 {
		t.Fatalf("invocations = %d, want 1", len(invs))
	}
	got := invs[0].Headers
	for _, name := range []string{"X-Api-Key", "X-Amz-Content-Sha256", "Idempotency-Key", "X-Forwarded-Host", "X-Forwarded-For", "Cookie", "Amz-Sdk-Invocation-Id"} {
		if v := got.Values(name); len(v) > 0 {
			t.Errorf("upstream got %s: %q", name, v)
		}
	}
	if v := got.Get("X-Amz-Date"); v == "20200101T000000Z" {
		t.Errorf("client's X-Amz-Date was forwarded")
	}
	if v := got.Get("Authorization"); !strings.HasPrefix(v, "AWS4-HMAC-SHA256 Credential="+h.creds.creds.AccessKeyID+"/") {
		t.Errorf("upstream Authorization = %q, want SigV4 with the caller's session", v)
	}
	for name, want := range map[string]string{"Accept": "application/json", "X-Amzn-Bedrock-Trace": "ENABLED", "X-Amzn-Bedrock-Guardrailidentifier": "gr-1", "Content-Type": "application/json"} {
		if v := got.Get(name); v != want {
			t.Errorf("upstream %s = %q, want %q", name, v, want)
		}
	}
	if invs[0].PrincipalARN != callerARN {
		t.Errorf("billed to %q, want %q", invs[0].PrincipalARN, callerARN)
	}
}

func TestBasePath(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.BasePath = "/bedrock" })
	if resp := h.post(t, "/bedrock/model/amazon.nova-lite-v1:0/converse", converseBody, authed()); resp.StatusCode != http.StatusOK {
		t.Errorf("with prefix: status %d, want 200", resp.StatusCode)
	}
	if resp := h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed()); resp.StatusCode != http.StatusNotFound {
		t.Errorf("without prefix: status %d, want 404", resp.StatusCode)
	}
	if invs := h.fake.Invocations(); len(invs) != 1 {
		t.Errorf("invocations = %d, want 1", len(invs))
	}
}

// TestUpstreamErrorsPassThrough: Bedrock's own errors reach the client
// unchanged, status, type and body.
func TestUpstreamErrorsPassThrough(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	resp := h.post(t, "/model/fake.error-throttle/converse", converseBody, authed())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("status = %d, want 429", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Amzn-ErrorType"); !strings.HasPrefix(got, "ThrottlingException") {
		t.Errorf("x-amzn-ErrorType = %q, want ThrottlingException", got)
	}
	if !strings.Contains(string(body), "Too many requests") {
		t.Errorf("body = %s, want Bedrock's message", body)
	}
}

// readFrame reads one event-stream message and returns its bytes.
func readFrame(r io.Reader) ([]byte, error) {
	var prelude [4]byte
	if _, err := io.ReadFull(r, prelude[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(prelude[:])
	if n < 16 || n > 1<<24 {
		return nil, fmt.Errorf("bad frame length %d", n)
	}
	rest := make([]byte, n-4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, err
	}
	return append(prelude[:], rest...), nil
}

// TestStreamsFrameByFrame: the fake holds event 1 until the test has read
// event 0 through the gateway; buffering would deadlock until the timeout.
// The stream's exception frame after HTTP 200 passes through untouched.
func TestStreamsFrameByFrame(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, fakeaws.Options{BeforeEvent: func(ctx context.Context, op string, i int) {
		if i == 1 {
			select {
			case <-release:
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
		}
	}}, nil)
	// Headers and event 0 must both arrive while event 1 is held, so the
	// request itself runs under the watch.
	type result struct {
		resp *http.Response
		err  error
	}
	first := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, h.gateway.URL+"/model/fake.stream-exception/converse-stream", strings.NewReader(converseBody))
		req.Header = authed()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = readFrame(resp.Body)
		}
		first <- result{resp, err}
	}()
	var resp *http.Response
	select {
	case r := <-first:
		if r.resp != nil {
			t.Cleanup(func() { r.resp.Body.Close() })
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		resp = r.resp
	case <-time.After(5 * time.Second):
		close(release)
		if r := <-first; r.resp != nil {
			r.resp.Body.Close()
		}
		t.Fatal("event 0 did not reach the client before event 1 was sent: the gateway buffers")
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.amazon.eventstream" {
		t.Errorf("Content-Type = %q", ct)
	}
	close(release)
	var frames [][]byte
	for {
		f, err := readFrame(resp.Body)
		if err != nil {
			break
		}
		frames = append(frames, f)
	}
	if len(frames) == 0 || !bytes.Contains(frames[len(frames)-1], []byte("modelStreamErrorException")) {
		t.Errorf("last frame does not carry the stream exception: %d frames", len(frames))
	}
}

// TestStreamWithLengthFlushedEventByEvent: an event stream that declares a
// Content-Length (Bedrock's are chunked) is still relayed event by event:
// the upstream holds event 1 until the client has read event 0.
func TestStreamWithLengthFlushedEventByEvent(t *testing.T) {
	var frames [2]bytes.Buffer
	enc := eventstream.NewEncoder()
	for i := range frames {
		msg := eventstream.Message{Payload: []byte(fmt.Sprintf(`{"contentBlockIndex":0,"delta":{"text":"event %d"}}`, i))}
		msg.Headers.Set(":message-type", eventstream.StringValue("event"))
		msg.Headers.Set(":event-type", eventstream.StringValue("contentBlockDelta"))
		if err := enc.Encode(&frames[i], msg); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", eventStreamType)
		w.Header().Set("Content-Length", fmt.Sprint(frames[0].Len()+frames[1].Len()))
		w.Write(frames[0].Bytes())
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		w.Write(frames[1].Bytes())
	}))
	defer upstream.Close()
	defer close(release)
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.Endpoint, _ = url.Parse(upstream.URL) })
	first := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, h.gateway.URL+"/model/amazon.nova-lite-v1:0/converse-stream", strings.NewReader(converseBody))
		req.Header = authed()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			first <- fmt.Errorf("status = %d, want 200", resp.StatusCode)
			return
		}
		f, err := readFrame(resp.Body)
		if err == nil && !bytes.Equal(f, frames[0].Bytes()) {
			err = errors.New("first frame differs from event 0")
		}
		first <- err
	}()
	select {
	case err := <-first:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event 0 did not reach the client before event 1 was sent: the gateway buffers")
	}
}

// TestRefusalsReachNoOne: each refusal is Bedrock-shaped and asks neither
// for credentials nor Bedrock.
func TestRefusalsReachNoOne(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) { c.MaxBodyBytes = 64 })
	tests := []struct {
		name   string
		path   string
		body   string
		header http.Header
		status int
		typ    string
	}{
		{"no key", "/model/m/converse", "{}", http.Header{}, 401, "AccessDeniedException"},
		{"bad key", "/model/m/converse", "{}", http.Header{"Authorization": {"Bearer nope"}}, 401, "AccessDeniedException"},
		{"unknown op", "/model/m/explode", "{}", authed(), 404, "UnknownOperationException"},
		{"inference profiles probe", "/inference-profiles", "", authed(), 404, "ResourceNotFoundException"},
		{"bad model", "/model/a%20b/converse", "{}", authed(), 400, "ValidationException"},
		{"too big", "/model/m/converse", strings.Repeat("x", 65), authed(), 413, "ValidationException"},
		{"gzip body", "/model/m/converse", "{}", authed("Content-Encoding", "gzip"), 400, "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.post(t, tt.path, tt.body, tt.header)
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tt.typ {
				t.Errorf("x-amzn-ErrorType = %q, want %q", got, tt.typ)
			}
			var m map[string]string
			if err := json.Unmarshal(body, &m); err != nil || m["message"] == "" {
				t.Errorf("body = %s, want {\"message\":...}", body)
			}
			if resp.Header.Get("X-Amzn-RequestId") == "" {
				t.Error("no x-amzn-RequestId on a gateway error")
			}
		})
	}
	if n := h.creds.calls.Load(); n != 0 {
		t.Errorf("credential source called %d times, want 0", n)
	}
	if n := len(h.fake.Invocations()); n != 0 {
		t.Errorf("Bedrock called %d times, want 0", n)
	}
}

// TestCredentialErrors: a failure to get the caller's session is answered
// by the gateway, without ARNs, and nothing is sent upstream (never with
// other credentials).
func TestCredentialErrors(t *testing.T) {
	const leak = "arn:aws:iam::123456789012:role/Secret"
	tests := []struct {
		err    error
		status int
		typ    string
		// retryAfter is the Retry-After every 503 carries: the error's
		// own hint rounded up to whole seconds, else the default (2s).
		retryAfter string
	}{
		{fmt.Errorf("%w: User %s is not authorized", sessioncache.ErrAccessDenied, leak), 403, "AccessDeniedException", ""},
		{fmt.Errorf("%w: bad tag on %s", sessioncache.ErrInvalidSession, leak), 500, "InternalServerException", ""},
		{fmt.Errorf("%w: rate exceeded", sessioncache.ErrThrottled), 503, "ServiceUnavailableException", "2"},
		{fmt.Errorf("%w: dial tcp", sessioncache.ErrUnavailable), 503, "ServiceUnavailableException", "2"},
		{hintedError{fmt.Errorf("%w: rate exceeded", sessioncache.ErrThrottled), 7 * time.Second}, 503, "ServiceUnavailableException", "7"},
		{hintedError{fmt.Errorf("%w: dial tcp", sessioncache.ErrUnavailable), 2500 * time.Millisecond}, 503, "ServiceUnavailableException", "3"},
		{errors.New("surprise " + leak), 500, "InternalServerException", ""},
		{fmt.Errorf("new session: %w", &sessioncache.OverloadedError{RetryAfter: 1500 * time.Millisecond}), 503, "ServiceUnavailableException", "2"},
		{fmt.Errorf("new session: %w", &sessioncache.OverloadedError{RetryAfter: 4 * time.Second}), 503, "ServiceUnavailableException", "4"},
		{fmt.Errorf("new session: %w", &sessioncache.OverloadedError{}), 503, "ServiceUnavailableException", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			h := newHarness(t, fakeaws.Options{}, nil)
			h.creds.err = tt.err
			resp := h.post(t, "/model/m/converse", converseBody, authed())
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || resp.Header.Get("X-Amzn-ErrorType") != tt.typ {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"), tt.status, tt.typ)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if bytes.Contains(body, []byte("arn:")) || bytes.Contains(body, []byte("123456789012")) {
				t.Errorf("body leaks internal detail: %s", body)
			}
			if n := len(h.fake.Invocations()); n != 0 {
				t.Errorf("Bedrock called %d times, want 0", n)
			}
		})
	}
}

// hintedError carries a Retry-After hint the way sessioncache's
// remembered STS failures do (sessioncache.RetryAfter reads it).
type hintedError struct {
	error
	hint time.Duration
}

func (e hintedError) RetryAfterHint() time.Duration { return e.hint }
func (e hintedError) Unwrap() error                 { return e.error }

func TestResolverRefusal(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Resolver = staticResolver{err: fmt.Errorf("tag value: %w", tenancy.ErrInexpressible)}
	})
	resp := h.post(t, "/model/m/converse", converseBody, authed())
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("status = %d, want 403", resp.StatusCode)
	}
	if h.creds.calls.Load() != 0 {
		t.Error("credentials were requested for an inexpressible identity")
	}
}

// TestUpstreamUnreachable: a transport failure is a Bedrock-shaped 502
// that does not echo the transport error.
func TestUpstreamUnreachable(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	h.upstream.Close()
	resp := h.post(t, "/model/m/converse", converseBody, authed())
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Amzn-ErrorType") != "ServiceUnavailableException" {
		t.Errorf("got %d %q, want 502 ServiceUnavailableException", resp.StatusCode, resp.Header.Get("X-Amzn-ErrorType"))
	}
	if bytes.Contains(body, []byte("127.0.0.1")) || bytes.Contains(body, []byte("dial")) {
		t.Errorf("body echoes the transport error: %s", body)
	}
}

// TestUpstreamRequestFailsClosed: without the caller's credentials
// nothing is signed or sent.
func TestUpstreamRequestFailsClosed(t *testing.T) {
	var sent atomic.Int32
	next := roundTripFunc(func(*http.Request) (*http.Response, error) {
		sent.Add(1)
		return nil, errors.New("unreachable")
	})
	u, _ := url.Parse("https://bedrock-runtime.us-east-1.amazonaws.com")
	p, err := New(Config{Endpoint: u, Region: "us-east-1", Authenticator: keyAuth{}, Resolver: staticResolver{},
		Credentials: &credStub{}, Transport: next})
	if err != nil {
		t.Fatal(err)
	}
	for name, creds := range map[string]aws.Credentials{
		"empty":         {},
		"no secret":     {AccessKeyID: "ASIAEXAMPLE"},
		"no access key": {SecretAccessKey: "secret"},
	} {
		out := &outbound{method: http.MethodPost, rawPath: "/model/m/converse", header: http.Header{}, creds: creds}
		req, err := p.upstreamRequest(context.Background(), out)
		if !errors.Is(err, errNoSession) || req != nil {
			t.Errorf("%s: upstreamRequest = %v, %v; want errNoSession", name, req, err)
		}
		if len(out.header) != 0 {
			t.Errorf("%s: header signed without credentials: %v", name, out.header)
		}
	}
	if sent.Load() != 0 {
		t.Errorf("%d requests sent without session credentials", sent.Load())
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAccessLogHasNoSecrets: the access line names the caller and the
// session, never the key or signature.
func TestAccessLogHasNoSecrets(t *testing.T) {
	h := newHarness(t, fakeaws.Options{}, nil)
	h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, authed())
	h.post(t, "/model/amazon.nova-lite-v1:0/converse", converseBody, http.Header{"Authorization": {"Bearer wrong-key-123"}})
	// The access line is written after the answer, so the client can be
	// ahead of it.
	var logs string
	waitFor(t, func() bool {
		h.logMu.Lock()
		defer h.logMu.Unlock()
		logs = h.logs.String()
		return strings.Count(logs, `"msg":"request"`) == 2
	})
	for _, secret := range []string{testKey, "wrong-key-123", h.creds.creds.SecretAccessKey, "Signature="} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	for _, want := range []string{`"user":"alice@acme.org"`, `"session_name":"alice@acme.org"`, `"operation":"Converse"`, `"status":401`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{BasePath: "nope/"})
	if err == nil {
		t.Fatal("New accepted an empty config")
	}
	for _, want := range []string{"endpoint", "region", "authenticator", "base_path"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}
