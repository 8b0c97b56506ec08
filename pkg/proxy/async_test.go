package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/asyncjobs"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// Two callers of the async tests, each with its own key and session.
const (
	aliceKey = "Bearer alice-key"
	bobKey   = "Bearer bob-key"
	// madeUpARN is a well-formed invocation ARN nobody started.
	madeUpARN = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/zzzzzzzzzzzz"
	startBody = `{"modelId":"amazon.nova-reel-v1:0","modelInput":{"taskType":"TEXT_VIDEO","textToVideoParams":{"text":"a cat"}},` +
		`"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://bucket/out/"}}}`
)

// twoUsers authenticates alice and bob by their keys.
type twoUsers struct{}

func (twoUsers) Authenticate(r *http.Request) (auth.Identity, error) {
	switch r.Header.Get("Authorization") {
	case aliceKey:
		return auth.Identity{User: "alice@acme.org", Team: "ds", Method: "api-key"}, nil
	case bobKey:
		return auth.Identity{User: "bob@acme.org", Team: "ops", Method: "api-key"}, nil
	}
	return auth.Identity{}, auth.ErrInvalidCredentials
}

// openOwners opens an ownership store on path ("" for memory only),
// closed at the end of the test.
func openOwners(t *testing.T, path string) *asyncjobs.Store {
	t.Helper()
	s, err := asyncjobs.Open(asyncjobs.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// asyncHarness is a harness whose callers are alice and bob and whose
// proxy records async ownership in owners.
func asyncHarness(t *testing.T, owners AsyncOwners, mutate func(*Config)) *harness {
	return newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Authenticator = twoUsers{}
		c.AsyncOwners = owners
		if mutate != nil {
			mutate(c)
		}
	})
}

// reply is an answer read to its end.
type reply struct {
	status int
	header http.Header
	body   string
}

// asyncCall sends method path as the caller with key.
func asyncCall(t *testing.T, gateway, key, method, path, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, gateway+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// startJob starts an async invocation as key and returns its ARN.
func startJob(t *testing.T, gateway, key, body string) string {
	t.Helper()
	r := asyncCall(t, gateway, key, http.MethodPost, "/async-invoke", body)
	if r.status != http.StatusOK {
		t.Fatalf("StartAsyncInvoke = %d %s, want 200", r.status, r.body)
	}
	var out struct {
		InvocationARN string `json:"invocationArn"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.InvocationARN == "" {
		t.Fatalf("StartAsyncInvoke answer %q holds no invocationArn (%v)", r.body, err)
	}
	return out.InvocationARN
}

func getPath(arn string) string { return "/async-invoke/" + url.PathEscape(arn) }

// listARNs lists async invocations as key with query and returns the
// ARNs of the page and its nextToken.
func listARNs(t *testing.T, gateway, key, query string) (arns []string, next string) {
	t.Helper()
	r := asyncCall(t, gateway, key, http.MethodGet, "/async-invoke?"+query, "")
	if r.status != http.StatusOK {
		t.Fatalf("ListAsyncInvokes?%s = %d %s, want 200", query, r.status, r.body)
	}
	if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
		t.Errorf("ListAsyncInvokes Content-Length = %q, body has %d bytes", cl, len(r.body))
	}
	var page struct {
		Summaries []struct {
			InvocationARN string `json:"invocationArn"`
		} `json:"asyncInvokeSummaries"`
		NextToken string `json:"nextToken"`
	}
	if err := json.Unmarshal([]byte(r.body), &page); err != nil {
		t.Fatalf("ListAsyncInvokes answer %q: %v", r.body, err)
	}
	arns = []string{}
	for _, s := range page.Summaries {
		arns = append(arns, s.InvocationARN)
	}
	return arns, page.NextToken
}

// TestAsyncOwnership: a caller sees only the jobs it started. Bob's Get
// of alice's job is the same 404 as a Get of a job that does not exist,
// and costs no STS or Bedrock call; each caller's list holds its own jobs
// only, and a filtered page keeps nextToken.
func TestAsyncOwnership(t *testing.T) {
	h := asyncHarness(t, openOwners(t, filepath.Join(t.TempDir(), "owners.jsonl")), nil)
	gw := h.gateway.URL

	aliceJob := startJob(t, gw, aliceKey, startBody)
	// Found at once: the owner is recorded before the answer is relayed.
	if r := asyncCall(t, gw, aliceKey, http.MethodGet, getPath(aliceJob), ""); r.status != http.StatusOK || !strings.Contains(r.body, aliceJob) {
		t.Fatalf("alice's Get of her job = %d %s, want 200", r.status, r.body)
	}

	sts, calls := h.creds.calls.Load(), len(h.fake.Invocations())
	others := asyncCall(t, gw, bobKey, http.MethodGet, getPath(aliceJob), "")
	unknown := asyncCall(t, gw, bobKey, http.MethodGet, getPath(madeUpARN), "")
	if others.status != http.StatusNotFound || others.header.Get("X-Amzn-ErrorType") != "ResourceNotFoundException" {
		t.Errorf("bob's Get of alice's job = %d %q, want 404 ResourceNotFoundException", others.status, others.header.Get("X-Amzn-ErrorType"))
	}
	if others.status != unknown.status || others.body != unknown.body ||
		others.header.Get("X-Amzn-ErrorType") != unknown.header.Get("X-Amzn-ErrorType") {
		t.Errorf("bob's Get of alice's job = %d %s, of a made-up one = %d %s: they must not differ",
			others.status, others.body, unknown.status, unknown.body)
	}
	if n := h.creds.calls.Load() - sts; n != 0 {
		t.Errorf("refused Gets asked for credentials %d times, want 0", n)
	}
	if n := len(h.fake.Invocations()) - calls; n != 0 {
		t.Errorf("refused Gets reached Bedrock %d times, want 0", n)
	}

	bobJob := startJob(t, gw, bobKey, startBody)
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{aliceKey, []string{aliceJob}},
		{bobKey, []string{bobJob}},
	} {
		if got, _ := listARNs(t, gw, tc.key, "maxResults=10"); !cmp.Equal(got, tc.want) {
			t.Errorf("list as %s = %v, want %v", tc.key, got, tc.want)
		}
	}
	// Newest first, one per page: alice's first page is bob's job,
	// filtered away, and its nextToken leads to hers.
	page1, next := listARNs(t, gw, aliceKey, "maxResults=1&sortOrder=Descending")
	if len(page1) != 0 || next == "" {
		t.Fatalf("alice's first page = %v, nextToken %q; want empty with a nextToken", page1, next)
	}
	page2, _ := listARNs(t, gw, aliceKey, "maxResults=1&sortOrder=Descending&nextToken="+url.QueryEscape(next))
	if !cmp.Equal(page2, []string{aliceJob}) {
		t.Errorf("alice's second page = %v, want [%s]", page2, aliceJob)
	}
}

// TestAsyncOwnershipSurvivesRestart: a proxy and store rebuilt from the
// same file know who started what.
func TestAsyncOwnershipSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "owners.jsonl")
	first := openOwners(t, path)
	h := asyncHarness(t, first, nil)
	job := startJob(t, h.gateway.URL, aliceKey, startBody)
	h.gateway.Close()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	u, _ := url.Parse(h.upstream.URL)
	p, err := New(Config{Endpoint: u, Region: "us-east-1", Authenticator: twoUsers{}, Resolver: staticResolver{},
		Credentials: h.creds, AsyncOwners: openOwners(t, path), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	gw := httptest.NewServer(p)
	t.Cleanup(gw.Close)
	if r := asyncCall(t, gw.URL, aliceKey, http.MethodGet, getPath(job), ""); r.status != http.StatusOK {
		t.Errorf("alice's Get after the restart = %d %s, want 200", r.status, r.body)
	}
	if r := asyncCall(t, gw.URL, bobKey, http.MethodGet, getPath(job), ""); r.status != http.StatusNotFound {
		t.Errorf("bob's Get after the restart = %d %s, want 404", r.status, r.body)
	}
	if got, _ := listARNs(t, gw.URL, aliceKey, ""); !cmp.Equal(got, []string{job}) {
		t.Errorf("alice's list after the restart = %v, want [%s]", got, job)
	}
}

// TestAsyncSharedClientToken: bob reusing alice's client request token
// gets her invocation ARN back from Bedrock, but not her job: the first
// owner keeps it, and the failed record is counted.
func TestAsyncSharedClientToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := asyncHarness(t, openOwners(t, ""), func(c *Config) { c.Metrics = m })
	withToken := strings.Replace(startBody, "{", `{"clientRequestToken":"shared-token",`, 1)
	job := startJob(t, h.gateway.URL, aliceKey, withToken)
	if again := startJob(t, h.gateway.URL, bobKey, withToken); again != job {
		t.Fatalf("Bedrock gave bob %s for alice's token, want %s (the fake's idempotency changed?)", again, job)
	}
	if r := asyncCall(t, h.gateway.URL, bobKey, http.MethodGet, getPath(job), ""); r.status != http.StatusNotFound {
		t.Errorf("bob's Get of the shared-token job = %d %s, want 404", r.status, r.body)
	}
	if r := asyncCall(t, h.gateway.URL, aliceKey, http.MethodGet, getPath(job), ""); r.status != http.StatusOK {
		t.Errorf("alice's Get of her job = %d %s, want 200", r.status, r.body)
	}
	if got := testutil.ToFloat64(m.asyncOwners.WithLabelValues(opStartAsyncInvoke)); got != 1 {
		t.Errorf("async ownership errors for StartAsyncInvoke = %v, want 1", got)
	}
}

// brokenOwners is a store that cannot be reached.
type brokenOwners struct{}

var errStoreDown = errors.New("store down")

func (brokenOwners) Owner(context.Context, string) (string, bool, error) {
	return "", false, errStoreDown
}
func (brokenOwners) Record(context.Context, string, string) error { return errStoreDown }

// TestAsyncOwnersUnavailable: with the store down, Get and List fail
// closed (503, Get before any STS call), while a Start Bedrock accepted
// is relayed unchanged, logged and counted.
func TestAsyncOwnersUnavailable(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	h := asyncHarness(t, brokenOwners{}, func(c *Config) { c.Metrics = m })
	gw := h.gateway.URL

	start := asyncCall(t, gw, aliceKey, http.MethodPost, "/async-invoke", startBody)
	invs := h.fake.Invocations()
	if start.status != http.StatusOK || len(invs) != 1 || invs[0].InvocationARN == "" {
		t.Fatalf("StartAsyncInvoke = %d %s, want 200 (Bedrock saw %d calls)", start.status, start.body, len(invs))
	}
	if want := `{"invocationArn":"` + invs[0].InvocationARN + `"}`; strings.TrimSpace(start.body) != want {
		t.Errorf("StartAsyncInvoke answer = %q, want Bedrock's %q", start.body, want)
	}
	h.logMu.Lock()
	logs := h.logs.String()
	h.logMu.Unlock()
	if !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, "owner was not recorded") || !strings.Contains(logs, invs[0].InvocationARN) {
		t.Errorf("no error log naming the unrecorded job:\n%s", logs)
	}

	sts := h.creds.calls.Load()
	get := asyncCall(t, gw, aliceKey, http.MethodGet, getPath(invs[0].InvocationARN), "")
	if get.status != http.StatusServiceUnavailable || get.header.Get("X-Amzn-ErrorType") != "ServiceUnavailableException" {
		t.Errorf("Get with the store down = %d %q, want 503 ServiceUnavailableException", get.status, get.header.Get("X-Amzn-ErrorType"))
	}
	if n := h.creds.calls.Load() - sts; n != 0 {
		t.Errorf("Get with the store down asked for credentials %d times", n)
	}
	list := asyncCall(t, gw, aliceKey, http.MethodGet, "/async-invoke", "")
	if list.status != http.StatusServiceUnavailable || strings.Contains(list.body, "invocationArn") {
		t.Errorf("List with the store down = %d %s, want 503 without any job", list.status, list.body)
	}
	for op, want := range map[string]float64{opStartAsyncInvoke: 1, opGetAsyncInvoke: 1, opListAsyncInvokes: 1} {
		if got := testutil.ToFloat64(m.asyncOwners.WithLabelValues(op)); got != want {
			t.Errorf("async ownership errors for %s = %v, want %v", op, got, want)
		}
	}
	if strings.Contains(get.body+list.body, errStoreDown.Error()) {
		t.Errorf("the store's error reached the client: %s %s", get.body, list.body)
	}
}

// TestAsyncDisabled: without an ownership store the async operations are
// refused before any STS or Bedrock call.
func TestAsyncDisabled(t *testing.T) {
	h := asyncHarness(t, nil, nil)
	for _, tc := range []struct{ method, path, body string }{
		{http.MethodPost, "/async-invoke", startBody},
		{http.MethodGet, getPath(madeUpARN), ""},
		{http.MethodGet, "/async-invoke", ""},
	} {
		r := asyncCall(t, h.gateway.URL, aliceKey, tc.method, tc.path, tc.body)
		if r.status != http.StatusNotImplemented || r.header.Get("X-Amzn-ErrorType") != "ValidationException" {
			t.Errorf("%s %s = %d %q, want 501 ValidationException", tc.method, tc.path, r.status, r.header.Get("X-Amzn-ErrorType"))
		}
	}
	if n, calls := h.creds.calls.Load(), len(h.fake.Invocations()); n != 0 || calls != 0 {
		t.Errorf("refused async calls: %d credential lookups, %d Bedrock calls; want none", n, calls)
	}
}

// mapOwners is an in-memory AsyncOwners for unit tests.
type mapOwners map[string]string

func (m mapOwners) Owner(_ context.Context, arn string) (string, bool, error) {
	o, ok := m[arn]
	return o, ok, nil
}
func (m mapOwners) Record(context.Context, string, string) error { return nil }

const (
	arnAlice = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/aaaaaaaaaaaa"
	arnBob   = "arn:aws:bedrock:us-east-1:123456789012:async-invoke/bbbbbbbbbbbb"
)

var pageOwners = mapOwners{arnAlice: "alice", arnBob: "bob"}

func TestOwnAsyncPage(t *testing.T) {
	for _, tc := range []struct {
		name, page, want string
		status           int // of the error, 0 for none
	}{
		{"keeps own, drops others, keeps the rest",
			`{"asyncInvokeSummaries":[{"invocationArn":"` + arnBob + `","status":"Completed"},{"invocationArn":"` + arnAlice + `","status":"InProgress","x":"<&>"}],"nextToken":"abc","future":{"a":1}}`,
			`{"asyncInvokeSummaries":[{"invocationArn":"` + arnAlice + `","status":"InProgress","x":"<&>"}],"future":{"a":1},"nextToken":"abc"}`, 0},
		{"nothing own", `{"asyncInvokeSummaries":[{"invocationArn":"` + arnBob + `"}],"nextToken":"n"}`,
			`{"asyncInvokeSummaries":[],"nextToken":"n"}`, 0},
		{"unknown and unreadable summaries dropped",
			`{"asyncInvokeSummaries":[{"invocationArn":"arn:aws:bedrock:us-east-1:123456789012:async-invoke/cccccccccccc"},{},42,{"invocationArn":7}]}`,
			`{"asyncInvokeSummaries":[]}`, 0},
		{"no summaries", `{}`, `{"asyncInvokeSummaries":[]}`, 0},
		{"null summaries", `{"asyncInvokeSummaries":null}`, `{"asyncInvokeSummaries":[]}`, 0},
		{"not an object", `[]`, "", http.StatusBadGateway},
		{"null", `null`, "", http.StatusBadGateway},
		{"summaries not a list", `{"asyncInvokeSummaries":{"invocationArn":"` + arnAlice + `"}}`, "", http.StatusBadGateway},
		{"truncated", `{"asyncInvokeSummaries":[{"invocationArn":"` + arnAlice, "", http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ownAsyncPage(context.Background(), []byte(tc.page), pageOwners, "alice")
			var e *Error
			switch {
			case tc.status != 0 && (!errors.As(err, &e) || e.Status != tc.status):
				t.Errorf("ownAsyncPage(%s) = %s, %v; want a %d", tc.page, got, err, tc.status)
			case tc.status == 0 && err != nil:
				t.Errorf("ownAsyncPage(%s) error = %v", tc.page, err)
			case tc.status == 0 && string(got) != tc.want:
				t.Errorf("ownAsyncPage(%s) = %s, want %s", tc.page, got, tc.want)
			}
		})
	}
	_, err := ownAsyncPage(context.Background(), []byte(`{"asyncInvokeSummaries":[{"invocationArn":"`+arnAlice+`"}]}`), brokenOwners{}, "alice")
	if e := (*Error)(nil); !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable {
		t.Errorf("ownAsyncPage with the store down = %v, want a 503", err)
	}
}

// FuzzOwnAsyncPage: whatever Bedrock's page holds, the filter does not
// panic, and what it lets through is a JSON object whose summaries are
// all the caller's.
func FuzzOwnAsyncPage(f *testing.F) {
	for _, seed := range []string{
		`{"asyncInvokeSummaries":[{"invocationArn":"` + arnBob + `"},{"invocationArn":"` + arnAlice + `"}],"nextToken":"abc"}`,
		`{"asyncInvokeSummaries":[{"invocationArn":"` + arnAlice + `","invocationArn":"` + arnBob + `"}]}`,
		`{"asyncInvokeSummaries":[],"asyncInvokeSummaries":[{"invocationArn":"` + arnBob + `"}]}`,
		`{}`, `[]`, `null`, `{"asyncInvokeSummaries":null}`, `{"asyncInvokeSummaries":[1,{}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, page []byte) {
		out, err := ownAsyncPage(context.Background(), page, pageOwners, "alice")
		if err != nil {
			return
		}
		var got struct {
			Summaries []struct {
				InvocationARN string `json:"invocationArn"`
			} `json:"asyncInvokeSummaries"`
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("ownAsyncPage(%q) = %q, not a page: %v", page, out, err)
		}
		for _, s := range got.Summaries {
			if pageOwners[s.InvocationARN] != "alice" {
				t.Errorf("ownAsyncPage(%q) let through %q", page, s.InvocationARN)
			}
		}
	})
}
