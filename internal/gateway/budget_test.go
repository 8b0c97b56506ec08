package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/bedrock-gateway/gateway/pkg/budget"
)

// TestFleetBudget: a hard budget is enforced fleet-wide. A request on
// one replica spends the tenant's daily budget; on another replica, a user
// of the same tenant who has no session yet is refused with 429, the
// budget named, and Retry-After until midnight UTC, before any STS call;
// whoami there shows the budget spent.
func TestFleetBudget(t *testing.T) {
	f := startFleet(t, 2, func(_ int, c *Config) {
		// Nova Lite at $0.06 / $0.24 per million tokens: one Converse
		// ("hello": 1 token in, 4 out) costs $0.00000102.
		c.Budgets = budget.Config{{Name: "acme-daily", Scope: "tenant", Match: "acme", Period: "daily",
			LimitUSD: "0.000001", Mode: "hard"}}
	})
	if rec := f.converse(0, "u1"); rec.Code != http.StatusOK {
		t.Fatalf("first call: %d %s", rec.Code, rec.Body)
	}
	// Spends reach Redis in the background (a request never waits on
	// them); send them now.
	if err := f.replicas[0].budgets.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := len(f.fake.AssumeRoleCalls())
	rec := f.converse(1, "u2")
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("after the budget is spent: %d %s, want 429", rec.Code, rec.Body)
	}
	if et := rec.Header().Get("X-Amzn-Errortype"); et != "ThrottlingException" {
		t.Errorf("x-amzn-ErrorType = %q, want ThrottlingException", et)
	}
	var body struct{ Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !strings.Contains(body.Message, `"acme-daily"`) ||
		!strings.Contains(body.Message, "resets at") {
		t.Errorf("refusal body %s (%v), want a message naming the budget and its reset", rec.Body, err)
	}
	retry, err := strconv.Atoi(rec.Header().Get("Retry-After"))
	if err != nil || retry < 1 || retry > 86400 {
		t.Errorf("Retry-After = %q, want the seconds until midnight UTC", rec.Header().Get("Retry-After"))
	}
	if after := len(f.fake.AssumeRoleCalls()); after != before {
		t.Errorf("the refused request made %d AssumeRole calls, want none", after-before)
	}

	req := httptest.NewRequest(http.MethodGet, "/gateway/whoami", nil)
	req.Header.Set("x-api-key", f.platform)
	req.Header.Set("X-Gateway-Tenant", "acme")
	req.Header.Set("X-Gateway-User", "u2")
	w := httptest.NewRecorder()
	f.replicas[1].Handler().ServeHTTP(w, req)
	var who struct {
		Budgets []budget.Status `json:"budgets"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &who); err != nil || len(who.Budgets) != 1 || !who.Budgets[0].Exceeded {
		t.Errorf("whoami = %d %s (%v), want the budget shown spent", w.Code, w.Body, err)
	}
}
