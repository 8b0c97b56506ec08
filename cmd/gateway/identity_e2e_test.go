package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeidp"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// eventually polls cond: the key store is re-read every keys_reload
// (10ms here), so a change shows within a few polls.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestIdentityThreeMethods: an API key, an OIDC token and a platform key
// asserting a tenant each reach Bedrock as their own session, with the
// right name and tags.
func TestIdentityThreeMethods(t *testing.T) {
	idp := fakeidp.New(t)
	var platformKey string
	e := startEnvWith(t, extraConfig{
		session: `  tenants:
    acme-corp:
      session_name: gw-tenant-acme
      platform: saas-backend`,
		auth: fmt.Sprintf(`  oidc:
    issuers:
      - issuer: %s
        audiences: [%s]
        alias: okta
        label_claim: email
        team_claim: team`, idp.Issuer(), idp.Audience()),
		setup: func(e *env) {
			k, _, err := auth.IssueKey(e.keysFile, auth.KeyRecord{User: "saas-backend", Team: "platform",
				Platform: &auth.PlatformGrant{Tenants: []string{"acme-corp", "globex"}, AllowUser: true}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			platformKey = k
		},
	}, alice)

	claims := idp.Claims("00u1abcd")
	claims["email"] = "dana@acme.org"
	claims["email_verified"] = true
	claims["team"] = "research"
	token := idp.Sign(claims)

	cases := []struct {
		name    string
		header  map[string]string
		session string // exact, or prefix ending in "=" for hashed names
		tags    map[string]string
	}{
		{"api key", map[string]string{"Authorization": "Bearer " + e.keys[alice.user]}, "alice@acme.org", map[string]string{"team": "data-science", "cost-center": "12345"}},
		{"oidc", map[string]string{"Authorization": "Bearer " + token}, "dana@acme.org=", map[string]string{"team": "research"}},
		{"tenant only", map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "acme-corp"}, "gw-tenant-acme", map[string]string{"team": "platform", "tenant": "acme-corp"}},
		{"tenant user", map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "globex", "X-Gateway-User": "u-42"}, "globex-u-42=", map[string]string{"team": "platform", "tenant": "globex"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.fake.Invocations())
			if code, body, _ := e.call(t, tc.header); code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			inv := e.fake.Invocations()[before]
			ok := inv.SessionName == tc.session || strings.HasSuffix(tc.session, "=") && strings.HasPrefix(inv.SessionName, tc.session)
			if !ok {
				t.Errorf("session name %q, want %q", inv.SessionName, tc.session)
			}
			for k, v := range tc.tags {
				if inv.Tags[k] != v {
					t.Errorf("tag %s = %q, want %q (all %v)", k, inv.Tags[k], v, inv.Tags)
				}
			}
		})
	}

	// Refusals: none reaches STS.
	stsBefore := len(e.fake.AssumeRoleCalls())
	expired := idp.Forge(fakeidp.Expired, idp.Claims("00u1abcd"))
	for _, tc := range []struct {
		name   string
		header map[string]string
		status int
	}{
		{"expired token", map[string]string{"Authorization": "Bearer " + expired}, 401},
		{"alg none", map[string]string{"Authorization": "Bearer " + idp.Forge(fakeidp.AlgNone, idp.Claims("x"))}, 401},
		{"hmac with public key", map[string]string{"Authorization": "Bearer " + idp.Forge(fakeidp.HMACWithPublicKey, idp.Claims("x"))}, 401},
		{"wrong audience", map[string]string{"Authorization": "Bearer " + idp.Forge(fakeidp.WrongAudience, idp.Claims("x"))}, 401},
		{"tenant outside grant", map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "initech"}, 403},
		{"ordinary key with tenant header", map[string]string{"Authorization": "Bearer " + e.keys[alice.user], "X-Gateway-Tenant": "acme-corp"}, 400},
		{"underscore header variant", map[string]string{"x-api-key": platformKey, "X_Gateway_Tenant": "acme-corp"}, 400},
		{"homoglyph tenant", map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "аcme-corp"}, 400},
		{"two credentials", map[string]string{"Authorization": "Bearer " + e.keys[alice.user], "x-api-key": e.keys[alice.user]}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, h := e.call(t, tc.header)
			if code != tc.status {
				t.Errorf("status %d, want %d: %s", code, tc.status, body)
			}
			if h.Get("X-Amzn-ErrorType") == "" {
				t.Error("not Bedrock-shaped")
			}
		})
	}
	if n := len(e.fake.AssumeRoleCalls()) - stsBefore; n != 0 {
		t.Errorf("refused requests caused %d AssumeRole calls", n)
	}
}

// TestIdentityKeyLifecycle: a revoked key is refused at once although its
// session is still cached, and a key whose team changes gets a new session
// with the new tag.
func TestIdentityKeyLifecycle(t *testing.T) {
	e := startEnv(t, alice, bob)
	aliceKey := map[string]string{"Authorization": "Bearer " + e.keys[alice.user]}
	bobKey := map[string]string{"Authorization": "Bearer " + e.keys[bob.user]}
	for _, h := range []map[string]string{aliceKey, bobKey} {
		if code, body, _ := e.call(t, h); code != 200 {
			t.Fatalf("%d %s", code, body)
		}
	}
	ks, err := auth.LoadKeyStore(e.keysFile)
	if err != nil {
		t.Fatal(err)
	}
	var aliceID, bobID string
	for _, r := range ks.Records() {
		switch r.User {
		case alice.user:
			aliceID = r.ID
		case bob.user:
			bobID = r.ID
		}
	}
	if err := auth.RevokeKey(e.keysFile, aliceID, time.Now()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "revoked key refused", func() bool { code, _, _ := e.call(t, aliceKey); return code == 401 })

	if err := auth.UpdateKey(e.keysFile, bobID, func(r *auth.KeyRecord) error { r.Team = "finance"; return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new team on the bill", func() bool {
		code, _, _ := e.call(t, bobKey)
		invs := e.fake.Invocations()
		return code == 200 && invs[len(invs)-1].Tags["team"] == "finance"
	})
	var teams []string
	for _, c := range e.fake.AssumeRoleCalls() {
		if c.SessionName == bob.user {
			teams = append(teams, c.Tags["team"])
		}
	}
	if len(teams) != 2 || teams[0] != "platform" || teams[1] != "finance" {
		t.Errorf("bob's sessions carry teams %v, want [platform finance]", teams)
	}
}

// TestIdentityLimits: request-rate limits per identity and per tenant
// answer 429 ThrottlingException with Retry-After, before any STS call.
func TestIdentityLimits(t *testing.T) {
	var platformKey string
	e := startEnvWith(t, extraConfig{
		policy: `  limits: {requests_per_second: 0.01, burst: 2}
  tenant_limits: {requests_per_second: 0.01, burst: 3}`,
		setup: func(e *env) {
			k, _, err := auth.IssueKey(e.keysFile, auth.KeyRecord{User: "saas-backend",
				Platform: &auth.PlatformGrant{Tenants: []string{"acme-corp"}, AllowUser: true}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			platformKey = k
		},
	}, alice)
	aliceKey := map[string]string{"Authorization": "Bearer " + e.keys[alice.user]}
	var codes []int
	var retryAfter string
	for range 3 {
		code, _, h := e.call(t, aliceKey)
		codes = append(codes, code)
		if code == 429 {
			retryAfter = h.Get("Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[200 200 429]" || retryAfter == "" {
		t.Errorf("identity limit: codes %v, Retry-After %q; want [200 200 429] with Retry-After", codes, retryAfter)
	}
	// Three different users of one tenant share its budget of 3.
	codes = nil
	for i := range 4 {
		code, _, _ := e.call(t, map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "acme-corp", "X-Gateway-User": fmt.Sprintf("u%d", i)})
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[200 200 200 429]" {
		t.Errorf("tenant limit: codes %v, want [200 200 200 429]", codes)
	}
}

// TestWhoAmIEndToEnd: one curl shows an operator what the gateway does for
// a caller.
func TestWhoAmIEndToEnd(t *testing.T) {
	e := startEnv(t, alice)
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, e.baseURL+"/gateway/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+e.keys[alice.user])
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Session struct {
			PrincipalARN string `json:"principal_arn"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Session.PrincipalARN != sessionARN(alice.user) {
		t.Errorf("whoami principal = %q, want %q", got.Session.PrincipalARN, sessionARN(alice.user))
	}
}

// TestIdentityTokenBudget: a tokens-per-minute budget, spent from the
// usage Bedrock reports, answers 429 once exhausted.
func TestIdentityTokenBudget(t *testing.T) {
	e := startEnvWith(t, extraConfig{policy: `  limits: {tokens_per_minute: 8}`}, alice)
	aliceKey := map[string]string{"Authorization": "Bearer " + e.keys[alice.user]}
	// Each call costs 5 tokens at the fake (1 in, 4 out): the first leaves
	// 3, the second runs the budget into debt, the third is refused.
	var codes []int
	for i := range 3 {
		code, _, h := e.call(t, aliceKey)
		codes = append(codes, code)
		if code == 429 && h.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		// Tokens are booked after the answer, just before its ledger line.
		eventually(t, "ledger line", func() bool { return len(readLedger(t, e.ledger)) == i+1 })
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Errorf("codes %v, want [200 200 429]", codes)
	}
}
