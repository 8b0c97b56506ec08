package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"
	brtypes "github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	"github.com/google/go-cmp/cmp"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/bedrock-gateway/gateway/internal/devcert"
	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/logbuf"
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

const (
	testRegion      = "us-east-1"
	testGatewayRole = "arn:aws:iam::123456789012:role/BedrockGatewayRole"
	testInvokeRole  = "arn:aws:iam::123456789012:role/BedrockInvocationRole"
)

// env is a running gateway in front of the fake AWS.
type env struct {
	fake     *fakeaws.Server
	baseURL  string // https://127.0.0.1:port
	adminURL string // http://127.0.0.1:port
	// bedrockURL is the fake Bedrock Runtime, given to the gateway as
	// AWS_ENDPOINT_URL_BEDROCK_RUNTIME.
	bedrockURL string
	client     *http.Client
	keysFile   string
	logs       *logbuf.Buffer
	keys       map[string]string // user -> plaintext key
	ledger     string            // usage ledger file
	dir        string            // config directory
	cfgFile    string            // the config file
	stop       func()            // stops the gateway and waits for it; idempotent
	// restart stops the gateway and starts it again on the same config,
	// files and fake AWS; baseURL and adminURL change.
	restart func()

	// release, if set, is closed by a test to let the fake send stream
	// event 1 (see startEnv's BeforeEvent hook).
	mu      sync.Mutex
	holdFor string // operation whose event 1 is held
	release chan struct{}
	// heldTooLong is set when the hook gave up waiting for release: the
	// client never saw event 0 while event 1 was held.
	heldTooLong bool
}

// startEnv runs `gateway serve` (through run, as main does) over TLS,
// against a fake STS and Bedrock, with API keys for the given users.
func startEnv(t *testing.T, users ...devUser) *env {
	t.Helper()
	return startEnvWith(t, extraConfig{}, users...)
}

// extraConfig is YAML added inside the config's session, policy, admin and
// auth blocks (indented two spaces), and before the gateway starts, a hook
// to create keys of other kinds.
type extraConfig struct {
	session, policy, admin, auth string
	setup                        func(e *env)
	// server is YAML inside the server block (indented two spaces);
	// default "drain_delay: 0s", so that stopping a test is quick.
	server string
	// top is YAML added at the top level, e.g. "sts: {rate: 100}".
	top string
	// plain serves plain HTTP (HTTP/1.1 and h2c) instead of TLS.
	plain bool
}

// startEnvWith is startEnv with more configuration.
func startEnvWith(t *testing.T, extra extraConfig, users ...devUser) *env {
	t.Helper()
	e := &env{keys: map[string]string{}}
	e.fake = fakeaws.New(fakeaws.Options{
		Region: testRegion,
		Roles:  []string{testInvokeRole},
		BeforeEvent: func(ctx context.Context, op string, i int) {
			e.mu.Lock()
			op2, ch := e.holdFor, e.release
			e.mu.Unlock()
			if i != 1 || op != op2 || ch == nil {
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				e.mu.Lock()
				e.heldTooLong = true
				e.mu.Unlock()
			}
		},
	})
	stsSrv := httptest.NewServer(e.fake.STSHandler())
	t.Cleanup(stsSrv.Close)
	brSrv := httptest.NewServer(e.fake.BedrockHandler())
	t.Cleanup(brSrv.Close)

	dir := t.TempDir()
	e.keysFile = filepath.Join(dir, "keys.json")
	for _, u := range users {
		k, _, err := auth.CreateKey(e.keysFile, u.user, u.team, u.tenant, u.costCenter, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		e.keys[u.user] = k
	}
	certFile, _, err := devcert.Write(dir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "gateway.yaml")
	tlsLine := "tls: {cert_file: cert.pem, key_file: key.pem}"
	if extra.plain {
		tlsLine = ""
	}
	if extra.server == "" {
		extra.server = "  drain_delay: 0s"
	}
	e.cfgFile = cfgFile
	writeFile(t, cfgFile, fmt.Sprintf(`
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
%s
%s
server:
%s
%s
aws:
  region: %s
  sts_endpoint: %s
session:
  role_arn: %s
%s
policy:
%s
auth:
  api_keys_file: keys.json
  keys_reload: 10ms
%s
usage:
  ledger: usage.jsonl
`, extra.admin, tlsLine, extra.server, extra.top, testRegion, stsSrv.URL, testInvokeRole, extra.session, extra.policy, extra.auth))
	e.dir = dir
	e.keysFile = filepath.Join(dir, "keys.json")
	if extra.setup != nil {
		extra.setup(e)
	}
	e.ledger = filepath.Join(dir, "usage.jsonl")

	e.bedrockURL = brSrv.URL
	// The environment the gateway sees: the standard endpoint variable,
	// honoured, and nothing else. Its own AWS identity is injected, as the
	// SDK's credential chain would provide it.
	getenv := func(k string) string {
		if k == "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" {
			return brSrv.URL
		}
		return ""
	}
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "") // sdk sets it while building a client

	e.logs = &logbuf.Buffer{}
	launch := func() {
		addrs := make(chan [2]string, 2)
		proc := process{getenv: getenv, stdout: io.Discard, stderr: e.logs,
			awsCredentials: credentials.StaticCredentialsProvider{Value: e.fake.RootCredentials(testGatewayRole)},
			listening:      func(name string, addr net.Addr) { addrs <- [2]string{name, addr.String()} }}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"serve", "-config", cfgFile}, proc) }()
		var once sync.Once
		e.stop = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run returned %v", err)
				}
			})
		}
		e.baseURL, e.adminURL = "", ""
		for e.baseURL == "" || e.adminURL == "" {
			select {
			case a := <-addrs:
				switch {
				case a[0] == "admin":
					e.adminURL = "http://" + a[1]
				case extra.plain:
					e.baseURL = "http://" + a[1]
				default:
					e.baseURL = "https://" + a[1]
				}
			case err := <-done:
				once.Do(func() {})
				t.Fatalf("gateway exited early: %v\nlogs:\n%s", err, e.logs)
			case <-time.After(30 * time.Second):
				t.Fatalf("gateway did not start; logs:\n%s", e.logs)
			}
		}
	}
	t.Cleanup(func() { e.stop() }) // the gateway launch starts, whichever that is
	launch()
	e.restart = func() {
		e.stop()
		launch()
	}

	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	e.client = &http.Client{Transport: tr}
	return e
}

// readLedger is the one way tests read the usage ledger: every record, in
// order, through the reader FinOps tooling would use. A ledger not yet
// created is empty.
func readLedger(t *testing.T, path string) []usage.Record {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := usage.ReadLedger(f)
	if err != nil {
		t.Fatalf("ledger %s: %v", path, err)
	}
	return recs
}

// testProcess is a process with an empty environment and the given output.
func testProcess(stdout, stderr io.Writer) process {
	return process{getenv: func(string) string { return "" }, stdout: stdout, stderr: stderr}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sdk returns a real Bedrock Runtime client configured the way an
// unmodified app is: endpoint URL and AWS_BEARER_TOKEN_BEDROCK.
func (e *env) sdk(t *testing.T, user string) *bedrockruntime.Client {
	t.Helper()
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", e.keys[user])
	c := bedrockruntime.New(bedrockruntime.Options{
		Region:       testRegion,
		BaseEndpoint: aws.String(e.baseURL),
		HTTPClient:   e.client,
	})
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	return c
}

var (
	alice = devUser{"alice@acme.org", "data-science", "", "12345"}
	bob   = devUser{"bob@acme.org", "platform", "globex", ""}
	carol = devUser{"carol with spaces", "research", "", ""}
)

// conversePath is a Converse on a model every test may call.
const conversePath = "/model/amazon.nova-lite-v1:0/converse"

// converseBody is a Converse request any model accepts.
const converseBody = `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`

// send is the one way tests send a raw request through the gateway: a
// JSON body POSTed to path with header, by client (e.client if nil). It
// returns the response and its body (a stream read to its end).
func (e *env) send(t *testing.T, client *http.Client, path, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.baseURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if client == nil {
		client = e.client
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// post sends a Converse-shaped body to path; see send.
func (e *env) post(t *testing.T, path string, header map[string]string) (int, string, http.Header) {
	t.Helper()
	resp, body := e.send(t, nil, path, converseBody, header)
	return resp.StatusCode, body, resp.Header
}

// call posts a Converse through the gateway with header.
func (e *env) call(t *testing.T, header map[string]string) (int, string, http.Header) {
	t.Helper()
	return e.post(t, conversePath, header)
}

func sessionARN(name string) string {
	return "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/" + name
}

func TestEndToEndAttribution(t *testing.T) {
	e := startEnv(t, alice, bob)
	ctx := context.Background()

	const claude = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
	const profileARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123def456"
	anthropicBody := []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"one two three"}]}`)
	msgs := []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hello there gateway"}}}}

	for _, u := range []devUser{alice, bob} {
		c := e.sdk(t, u.user)

		conv, err := c.Converse(ctx, &bedrockruntime.ConverseInput{ModelId: aws.String(claude), Messages: msgs})
		if err != nil {
			t.Fatalf("%s: Converse: %v", u.user, err)
		}
		if conv.Usage == nil || aws.ToInt32(conv.Usage.InputTokens) == 0 {
			t.Errorf("%s: Converse usage = %+v, want input tokens", u.user, conv.Usage)
		}

		cs, err := c.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{ModelId: aws.String(claude), Messages: msgs})
		if err != nil {
			t.Fatalf("%s: ConverseStream: %v", u.user, err)
		}
		var sawMetadata bool
		for ev := range cs.GetStream().Events() {
			if md, ok := ev.(*brtypes.ConverseStreamOutputMemberMetadata); ok && md.Value.Usage != nil {
				sawMetadata = true
			}
		}
		if err := cs.GetStream().Close(); err != nil {
			t.Errorf("%s: ConverseStream close: %v", u.user, err)
		}
		if err := streamErr(cs.GetStream().Err()); err != nil {
			t.Errorf("%s: ConverseStream: %v", u.user, err)
		}
		if !sawMetadata {
			t.Errorf("%s: ConverseStream: no metadata event with usage", u.user)
		}

		for _, model := range []string{claude, profileARN} {
			inv, err := c.InvokeModel(ctx, &bedrockruntime.InvokeModelInput{ModelId: aws.String(model), Body: anthropicBody, ContentType: aws.String("application/json")})
			if err != nil {
				t.Fatalf("%s: InvokeModel(%s): %v", u.user, model, err)
			}
			if !json.Valid(inv.Body) {
				t.Errorf("%s: InvokeModel body is not JSON: %q", u.user, inv.Body)
			}
		}

		is, err := c.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{ModelId: aws.String(claude), Body: anthropicBody, ContentType: aws.String("application/json")})
		if err != nil {
			t.Fatalf("%s: InvokeModelWithResponseStream: %v", u.user, err)
		}
		chunks := 0
		for ev := range is.GetStream().Events() {
			if _, ok := ev.(*brtypes.ResponseStreamMemberChunk); ok {
				chunks++
			}
		}
		is.GetStream().Close()
		if err := streamErr(is.GetStream().Err()); err != nil || chunks == 0 {
			t.Errorf("%s: InvokeModelWithResponseStream: %d chunks, err %v", u.user, chunks, err)
		}

		ct, err := c.CountTokens(ctx, &bedrockruntime.CountTokensInput{
			ModelId: aws.String("anthropic.claude-3-5-haiku-20241022-v1:0"),
			Input:   &brtypes.CountTokensInputMemberConverse{Value: brtypes.ConverseTokensRequest{Messages: msgs}},
		})
		if err != nil {
			t.Fatalf("%s: CountTokens: %v", u.user, err)
		}
		if aws.ToInt32(ct.InputTokens) == 0 {
			t.Errorf("%s: CountTokens = 0, want > 0", u.user)
		}
	}

	// Every call reached Bedrock signed with its caller's own session.
	wantOps := []string{"Converse", "ConverseStream", "InvokeModel", "InvokeModel", "InvokeModelWithResponseStream", "CountTokens"}
	invs := e.fake.Invocations()
	if len(invs) != 2*len(wantOps) {
		t.Fatalf("Bedrock saw %d calls, want %d", len(invs), 2*len(wantOps))
	}
	for i, inv := range invs {
		u := alice
		if i >= len(wantOps) {
			u = bob
		}
		if inv.Operation != wantOps[i%len(wantOps)] {
			t.Errorf("call %d: operation %q, want %q", i, inv.Operation, wantOps[i%len(wantOps)])
		}
		if inv.PrincipalARN != sessionARN(u.user) {
			t.Errorf("call %d (%s): billed to %q, want %q", i, inv.Operation, inv.PrincipalARN, sessionARN(u.user))
		}
		if diff := cmp.Diff(wantTags(u), inv.Tags); diff != "" {
			t.Errorf("call %d (%s): session tags (-want +got):\n%s", i, inv.Operation, diff)
		}
		if inv.Status != http.StatusOK {
			t.Errorf("call %d (%s): status %d", i, inv.Operation, inv.Status)
		}
		for _, h := range []string{"X-Api-Key", "X-Amz-Security-Token-Client"} {
			if inv.Headers.Get(h) != "" {
				t.Errorf("call %d: inbound header %s was forwarded", i, h)
			}
		}
	}
	// The profile ARN arrived escaped as %2F and was forwarded as one ID.
	if got := invs[3].ModelID; got != profileARN {
		t.Errorf("InvokeModel model ID at Bedrock = %q, want %q", got, profileARN)
	}

	// Two users, two sessions, each with its own name and tags.
	calls := e.fake.AssumeRoleCalls()
	if len(calls) != 2 {
		t.Fatalf("AssumeRole calls = %d, want 2: %+v", len(calls), calls)
	}
	for i, u := range []devUser{alice, bob} {
		c := calls[i]
		if c.SessionName != u.user || c.RoleARN != testInvokeRole || c.CallerARN != testGatewayRole || c.Err != "" {
			t.Errorf("AssumeRole %d = {session %q role %q caller %q err %q}, want session %q", i, c.SessionName, c.RoleARN, c.CallerARN, c.Err, u.user)
		}
		if c.DurationSeconds != 3600 {
			t.Errorf("AssumeRole %d DurationSeconds = %d, want 3600", i, c.DurationSeconds)
		}
		if diff := cmp.Diff(wantTags(u), c.Tags); diff != "" {
			t.Errorf("AssumeRole %d tags (-want +got):\n%s", i, diff)
		}
	}

	// The emulated bill names each user, never the gateway.
	for _, row := range e.fake.BillingRows() {
		if row.IAMPrincipal == testGatewayRole {
			t.Errorf("billing row charged to the gateway itself: %+v", row)
		}
	}

	// The admin listener exposes the STS and cache metrics; no secret and
	// no user appears in them.
	metrics := e.scrape(t)
	for _, want := range []string{
		`bedrock_gateway_sts_assume_role_total{outcome="success"} 2`,
		`bedrock_gateway_session_cache_requests_total{result="miss"} 2`,
		`bedrock_gateway_sts_admission_rate 400`,
		`go_goroutines`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, leak := range []string{"alice", "bob", e.keys[alice.user]} {
		if strings.Contains(metrics, leak) {
			t.Errorf("/metrics contains %q", leak)
		}
	}
	// No secret in the logs, read once the gateway has stopped and
	// written every buffered line.
	e.stop()
	logs := e.logs.String()
	for name, secret := range map[string]string{"alice key": e.keys[alice.user], "bob key": e.keys[bob.user], "root secret": e.fake.RootCredentials(testGatewayRole).SecretAccessKey} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
	if strings.Contains(logs, "Signature=") || strings.Contains(strings.ToLower(logs), "bearer ") {
		t.Errorf("logs contain an authorization header:\n%s", logs)
	}
}

func (e *env) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(e.adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func wantTags(u devUser) map[string]string {
	m := map[string]string{}
	if u.team != "" {
		m["team"] = u.team
	}
	if u.tenant != "" {
		m["tenant"] = u.tenant
	}
	if u.costCenter != "" {
		m["cost-center"] = u.costCenter
	}
	return m
}

func TestEndToEndConcurrentFirstCalls(t *testing.T) {
	e := startEnv(t, carol)
	c := e.sdk(t, carol.user)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CountTokens(context.Background(), &bedrockruntime.CountTokensInput{
				ModelId: aws.String("anthropic.claude-3-5-haiku-20241022-v1:0"),
				Input:   &brtypes.CountTokensInputMemberInvokeModel{Value: brtypes.InvokeModelTokensRequest{Body: []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`)}},
			})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("CountTokens: %v", err)
		}
	}
	calls := e.fake.AssumeRoleCalls()
	if len(calls) != 1 {
		t.Fatalf("100 concurrent first calls caused %d AssumeRole calls, want 1", len(calls))
	}
	// carol's user ID has spaces: the session name is readable, valid for
	// STS, and marked as hashed.
	if name := calls[0].SessionName; !strings.HasPrefix(name, "carol_with_spaces=") {
		t.Errorf("session name for %q = %q, want the readable prefix plus a hash", carol.user, name)
	}
	if got := len(e.fake.Invocations()); got != n {
		t.Errorf("Bedrock saw %d calls, want %d", got, n)
	}
}

// TestEndToEndStreamsEventByEvent holds the fake's second event until the
// client has decoded the first: a gateway that buffered would deadlock.
func TestEndToEndStreamsEventByEvent(t *testing.T) {
	e := startEnv(t, alice)
	c := e.sdk(t, alice.user)
	for _, op := range []string{"ConverseStream", "InvokeModelWithResponseStream"} {
		t.Run(op, func(t *testing.T) {
			release := make(chan struct{})
			e.mu.Lock()
			e.holdFor, e.release = op, release
			e.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()

			var events <-chan any
			var closeStream func() error
			switch op {
			case "ConverseStream":
				out, err := c.ConverseStream(ctx, &bedrockruntime.ConverseStreamInput{
					ModelId:  aws.String("anthropic.claude-3-5-haiku-20241022-v1:0"),
					Messages: []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hi"}}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				events, closeStream = relay(out.GetStream().Events()), out.GetStream().Close
			default:
				out, err := c.InvokeModelWithResponseStream(ctx, &bedrockruntime.InvokeModelWithResponseStreamInput{
					ModelId: aws.String("anthropic.claude-3-5-haiku-20241022-v1:0"),
					Body:    []byte(`{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`),
				})
				if err != nil {
					t.Fatal(err)
				}
				events, closeStream = relay(out.GetStream().Events()), out.GetStream().Close
			}
			defer closeStream()

			select {
			case _, ok := <-events:
				if !ok {
					t.Fatal("stream ended before its first event")
				}
			case <-ctx.Done():
				t.Fatal("first event did not reach the client while Bedrock held the second: the gateway buffers streams")
			}
			close(release)
			rest := 0
			for range events {
				rest++
			}
			if rest == 0 {
				t.Error("no events after the first")
			}
			e.mu.Lock()
			held := e.heldTooLong
			e.mu.Unlock()
			if held {
				t.Error("Bedrock held event 1 for 10s without the client seeing event 0: the gateway buffers streams")
			}
		})
	}
}

func relay[T any](in <-chan T) <-chan any {
	out := make(chan any)
	go func() {
		defer close(out)
		for v := range in {
			out <- v
		}
	}()
	return out
}

// TestEndToEndRefusals: bad input gets a Bedrock-shaped error and reaches
// neither STS nor Bedrock.
func TestEndToEndRefusals(t *testing.T) {
	e := startEnv(t, alice)
	key := e.keys[alice.user]
	wrong := key[:len(key)-4] + "aaaa"
	if wrong == key {
		wrong = key[:len(key)-4] + "bbbb"
	}
	good := "/model/anthropic.claude-3-haiku-20240307-v1:0/converse"
	tests := []struct {
		name       string
		method     string
		path       string
		header     map[string]string
		wantStatus int
		wantType   string
	}{
		{"no key", "POST", good, nil, 401, "AccessDeniedException"},
		{"wrong key", "POST", good, map[string]string{"Authorization": "Bearer " + wrong}, 401, "AccessDeniedException"},
		{"garbage key", "POST", good, map[string]string{"x-api-key": "not-a-key"}, 401, "AccessDeniedException"},
		{"sigv4 instead of key", "POST", good, map[string]string{"Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=abc"}, 401, "AccessDeniedException"},
		{"unknown path", "POST", "/model/anthropic.claude-3-haiku-20240307-v1:0/summon", map[string]string{"Authorization": "Bearer " + key}, 404, "UnknownOperationException"},
		{"root path", "GET", "/", map[string]string{"Authorization": "Bearer " + key}, 404, "UnknownOperationException"},
		{"wrong method", "GET", good, map[string]string{"Authorization": "Bearer " + key}, 405, "ValidationException"},
		{"dot-dot model", "POST", "/model/%2E%2E/converse", map[string]string{"Authorization": "Bearer " + key}, 400, "ValidationException"},
		{"traversal model", "POST", "/model/a%2F..%2Fb/converse", map[string]string{"Authorization": "Bearer " + key}, 400, "ValidationException"},
		{"control char model", "POST", "/model/a%0Ab/converse", map[string]string{"Authorization": "Bearer " + key}, 400, "ValidationException"},
		{"space model", "POST", "/model/a%20b/invoke", map[string]string{"Authorization": "Bearer " + key}, 400, "ValidationException"},
		{"overlong model", "POST", "/model/" + strings.Repeat("m", 2049) + "/invoke", map[string]string{"Authorization": "Bearer " + key}, 400, "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, e.baseURL+tt.path, strings.NewReader(`{"messages":[]}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if got := resp.Header.Get("X-Amzn-ErrorType"); got != tt.wantType {
				t.Errorf("x-amzn-ErrorType = %q, want %q", got, tt.wantType)
			}
			var msg struct {
				Message string `json:"message"`
			}
			if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
				t.Errorf("body = %q, want {\"message\": ...}", body)
			}
			if strings.Contains(string(body), key) || strings.Contains(string(body), wrong) {
				t.Errorf("error body echoes the key: %s", body)
			}
		})
	}
	if n := len(e.fake.AssumeRoleCalls()); n != 0 {
		t.Errorf("refused requests caused %d AssumeRole calls, want 0", n)
	}
	if n := len(e.fake.Invocations()); n != 0 {
		t.Errorf("refused requests caused %d Bedrock calls, want 0", n)
	}
}

// TestEndToEndSDKErrorsAreTyped: the Go SDK turns the gateway's refusal
// into its typed exception.
func TestEndToEndSDKErrorsAreTyped(t *testing.T) {
	e := startEnv(t, alice)
	e.keys["mallory"] = e.keys[alice.user][:len(e.keys[alice.user])-2] + "zz"
	c := e.sdk(t, "mallory")
	_, err := c.Converse(context.Background(), &bedrockruntime.ConverseInput{ModelId: aws.String("anthropic.claude-3-haiku-20240307-v1:0"),
		Messages: []brtypes.Message{{Role: brtypes.ConversationRoleUser, Content: []brtypes.ContentBlock{&brtypes.ContentBlockMemberText{Value: "hi"}}}}})
	var ade *brtypes.AccessDeniedException
	if !errors.As(err, &ade) {
		t.Fatalf("Converse with a wrong key: err = %v, want *types.AccessDeniedException", err)
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfgFile, "listen: nope\nsession:\n  role_arn: not-an-arn\n  duration: 2h\nauth: {}\nbogus_key: 1\n")
	err := run(context.Background(), []string{"serve", "-config", cfgFile}, testProcess(io.Discard, io.Discard))
	if err == nil {
		t.Fatal("run with a bad config succeeded")
	}
	if !strings.Contains(err.Error(), "bogus_key") {
		t.Errorf("error %q does not name the unknown key", err)
	}
}

// streamErr is a finished SDK event stream's error, less one artifact: the
// SDK's reader can report "use of closed network connection" when its
// closer races its last read after every event has arrived (seen under
// -race, about 1 run in 100). Every other error counts.
func streamErr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
