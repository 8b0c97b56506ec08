package proxy

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/pkg/budget"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// TestCostAndBudget: each request's record carries its exact cost at the
// catalogue's price (CountTokens' estimate costs nothing); once a hard
// budget is spent the next request is refused with 429 before STS, in
// Bedrock's shape on the Bedrock routes and as OpenAI's insufficient_quota
// on the OpenAI routes.
func TestCostAndBudget(t *testing.T) {
	sink := &recordSink{}
	tracker, err := budget.New(budget.Config{{Name: "ds-daily", Scope: "team", Match: "ds", Period: "daily",
		LimitUSD: "0.000002", Mode: "hard"}}, budget.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, fakeaws.Options{}, func(c *Config) {
		c.Usage, c.Prices, c.Budgets = sink, pricing.Default(), tracker
	})
	const model = "amazon.nova-lite-v1:0" // $0.06 in, $0.24 out per million tokens
	send := func(path, body string) (*http.Response, string) {
		resp := h.post(t, path, body, authed())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	converse := `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`
	if resp, b := send("/model/"+model+"/count-tokens", `{"input":{"converse":`+converse+`}}`); resp.StatusCode != 200 {
		t.Fatalf("CountTokens: %d %s", resp.StatusCode, b)
	}
	if resp, b := send("/model/"+model+"/converse", converse); resp.StatusCode != 200 {
		t.Fatalf("Converse: %d %s", resp.StatusCode, b)
	}
	// A record is written (and its cost spent) after the client has read
	// the whole answer, so wait for it rather than race the handler.
	waitFor(t, func() bool { return len(sink.all()) >= 2 })
	recs := sink.all()
	if len(recs) != 2 || recs[0].Cost == nil || *recs[0].Cost != 0 {
		t.Fatalf("records = %+v, want CountTokens at cost 0", recs)
	}
	// An estimate is never priced, whatever tokens it reports.
	if c := h.proxy.cost(&usage.Record{Operation: "CountTokens", Model: model, Region: "us-east-1", Tokens: usage.Tokens{Input: 1000}}); c == nil || *c != 0 {
		t.Errorf("cost of CountTokens' 1000 tokens = %v, want 0", c)
	}
	// "hello" is 1 input token, the fake answers 4 output tokens:
	// 1×60,000 + 4×240,000 picodollars = $0.00000102.
	if c := recs[1].Cost; c == nil || *c != 1_020_000 || recs[1].Region != "us-east-1" {
		t.Fatalf("Converse record cost %v, region %q; want $0.00000102 in us-east-1", c, recs[1].Region)
	}
	if resp, b := send("/model/"+model+"/converse", converse); resp.StatusCode != 200 {
		t.Fatalf("second Converse ($0.00000102 of $0.000002 spent): %d %s", resp.StatusCode, b)
	}
	waitFor(t, func() bool { return len(sink.all()) >= 3 }) // its cost is spent before it is recorded

	calls := h.creds.calls.Load()
	resp, b := send("/model/"+model+"/converse", converse)
	if resp.StatusCode != 429 || resp.Header.Get("X-Amzn-Errortype") != "ThrottlingException" ||
		!strings.Contains(b, `budget \"ds-daily\" is spent`) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("Converse over budget: %d %q Retry-After %q %s", resp.StatusCode, resp.Header.Get("X-Amzn-Errortype"), resp.Header.Get("Retry-After"), b)
	}
	resp, b = send("/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
	if _, typ, code := openAIError(t, []byte(b)); resp.StatusCode != 429 || typ != "insufficient_quota" || code == nil || *code != "insufficient_quota" {
		t.Errorf("chat completion over budget: %d %s", resp.StatusCode, b)
	}
	if resp, b := send("/model/"+model+"/count-tokens", `{"input":{"converse":`+converse+`}}`); resp.StatusCode != 200 {
		t.Errorf("CountTokens, which is not billed, over budget: %d %s; want it served", resp.StatusCode, b)
	}
	if n := h.creds.calls.Load() - calls; n != 1 {
		t.Errorf("%d credential lookups after the budget was spent, want 1 (CountTokens only)", n)
	}
}
