package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
	"github.com/bedrock-gateway/gateway/internal/fakeidp"
	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// recordSTS is an extraConfig setup step: it puts a recorder in front of
// the fake STS and points the config's sts_endpoint at it.
func recordSTS(t *testing.T, issued *func() []string) func(e *env) {
	return func(e *env) {
		h, secrets := fakeaws.RecordIssued(e.fake.STSHandler())
		*issued = secrets
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		cfg := filepath.Join(e.dir, "gateway.yaml")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`(?m)^(\s*sts_endpoint:).*$`)
		if !re.Match(b) {
			t.Fatalf("no sts_endpoint in the config:\n%s", b)
		}
		writeFile(t, cfg, re.ReplaceAllString(string(b), "${1} "+srv.URL))
	}
}

// TestLogsCarryNoSecrets drives every kind of refusal, upstream failure
// and success through a gateway logging at debug level, then scans
// everything it wrote (logs, usage ledger, answers) for any credential it
// saw or made.
func TestLogsCarryNoSecrets(t *testing.T) {
	idp := fakeidp.New(t)
	var issuedSecrets func() []string
	var platformKey string
	e := startEnvWith(t, extraConfig{
		session: `  tenants:
    acme-corp: {}`,
		auth: fmt.Sprintf(`  oidc:
    issuers:
      - issuer: %s
        audiences: [%s]
        label_claim: email`, idp.Issuer(), idp.Audience()),
		setup: func(e *env) {
			k, _, err := auth.IssueKey(e.keysFile, auth.KeyRecord{User: "saas-backend", Team: "platform",
				Platform: &auth.PlatformGrant{Tenants: []string{"acme-corp"}, AllowUser: true}}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			platformKey = k
			recordSTS(t, &issuedSecrets)(e)
			appendUsage(t, "proxy:\n  max_body_bytes: 65536\nlog:\n  level: debug\n")(e)
		},
	}, alice, bob, devUser{"denied@acme.org", "research", "", ""})
	// STS refuses one user's session.
	e.fake.FailAssumeRole(func(_ context.Context, c fakeaws.AssumeRoleCall) *fakeaws.Fault {
		if c.SessionName == "denied@acme.org" {
			return &fakeaws.Fault{Code: "AccessDenied", Status: http.StatusForbidden,
				Message: "User: arn:aws:sts::123456789012:assumed-role/BedrockGatewayRole/x is not authorized to perform: sts:AssumeRole"}
		}
		return nil
	})

	aliceKey := e.keys[alice.user]
	wrongKey := aliceKey[:len(aliceKey)-4] + "aaaa"
	if wrongKey == aliceKey {
		wrongKey = aliceKey[:len(aliceKey)-4] + "bbbb"
	}
	claims := idp.Claims("00u1abcd")
	claims["email"] = "dana@acme.org"
	goodJWT := idp.Sign(claims)
	jwts := map[string]string{
		"valid jwt":   goodJWT,
		"expired jwt": idp.Forge(fakeidp.Expired, idp.Claims("00u1abcd")),
		"alg none":    idp.Forge(fakeidp.AlgNone, idp.Claims("00u1abcd")),
		"hmac jwt":    idp.Forge(fakeidp.HMACWithPublicKey, idp.Claims("00u1abcd")),
		"wrong aud":   idp.Forge(fakeidp.WrongAudience, idp.Claims("00u1abcd")),
	}
	const presentedSig = "4f2c9d1e7a3b5c6d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d"
	sigv4 := "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + presentedSig
	bearer := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	const conv = "/model/amazon.nova-lite-v1:0/converse"
	body := `{"messages":[{"role":"user","content":[{"text":"hello"}]}]}`

	cases := []struct {
		name   string
		path   string
		header map[string]string
		body   string
		want   int
	}{
		{"success", conv, bearer(aliceKey), body, 200},
		{"success x-api-key", conv, map[string]string{"x-api-key": e.keys[bob.user]}, body, 200},
		{"success stream", "/model/amazon.nova-lite-v1:0/converse-stream", bearer(aliceKey), body, 200},
		{"success jwt", conv, bearer(goodJWT), body, 200},
		{"success platform", conv, map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "acme-corp", "X-Gateway-User": "u-1"}, body, 200},
		{"no key", conv, nil, body, 401},
		{"wrong key", conv, bearer(wrongKey), body, 401},
		{"wrong key x-api-key", conv, map[string]string{"x-api-key": wrongKey}, body, 401},
		{"malformed key", conv, bearer("bgw_not-a-key"), body, 401},
		{"sigv4", conv, map[string]string{"Authorization": sigv4, "X-Amz-Security-Token": "FwoGZXIvYXdzEXAMPLETOKEN", "X-Amz-Date": "20250101T000000Z"}, body, 401},
		{"expired jwt", conv, bearer(jwts["expired jwt"]), body, 401},
		{"alg none", conv, bearer(jwts["alg none"]), body, 401},
		{"hmac jwt", conv, bearer(jwts["hmac jwt"]), body, 401},
		{"wrong aud", conv, bearer(jwts["wrong aud"]), body, 401},
		{"two credentials", conv, map[string]string{"Authorization": "Bearer " + aliceKey, "x-api-key": e.keys[bob.user]}, body, 400},
		{"trusted headers from a non-platform key", conv, map[string]string{"Authorization": "Bearer " + aliceKey, "X-Gateway-Tenant": "acme-corp"}, body, 400},
		{"tenant outside grant", conv, map[string]string{"x-api-key": platformKey, "X-Gateway-Tenant": "initech"}, body, 403},
		{"unknown path", "/model/amazon.nova-lite-v1:0/summon", bearer(aliceKey), body, 404},
		{"bad model id", "/model/a%2F..%2Fb/converse", bearer(aliceKey), body, 400},
		{"over-size body", conv, bearer(aliceKey), `{"messages":[{"role":"user","content":[{"text":"` + strings.Repeat("word ", 20000) + `"}]}]}`, 413},
		{"upstream throttling", "/model/" + fakeaws.ModelThrottle + "/converse", bearer(aliceKey), body, 429},
		{"upstream internal error", "/model/" + fakeaws.ModelInternal + "/converse", bearer(aliceKey), body, 500},
		{"upstream access denied", "/model/" + fakeaws.ModelAccessDenied + "/converse", bearer(aliceKey), body, 403},
		{"sts access denied", conv, bearer(e.keys["denied@acme.org"]), body, 403},
		{"stream exception", "/model/" + fakeaws.ModelStreamException + "/converse-stream", bearer(aliceKey), body, 200},
		{"stream exception invoke", "/model/" + fakeaws.ModelStreamException + "/invoke-with-response-stream", bearer(aliceKey), `{"inputText":"hi"}`, 200},
	}
	var answers strings.Builder
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.send(t, nil, tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.want {
				t.Errorf("status = %d, want %d: %.300s", resp.StatusCode, tc.want, body)
			}
			fmt.Fprintf(&answers, "%s\n%v\n%s\n", tc.name, resp.Header, body)
		})
	}
	// Every error kind was really driven: STS refused, Bedrock failed and
	// streamed an exception.
	var sawDenied bool
	for _, c := range e.fake.AssumeRoleCalls() {
		sawDenied = sawDenied || c.Err == "AccessDenied"
	}
	if !sawDenied {
		t.Error("STS never refused a session: the STS error path was not exercised")
	}
	var sawStreamErr bool
	for _, inv := range e.fake.Invocations() {
		sawStreamErr = sawStreamErr || inv.StreamError != ""
	}
	if !sawStreamErr {
		t.Error("no stream ended in an exception: the stream error path was not exercised")
	}

	e.stop() // flushes the ledger and the last log lines
	logs := e.logs.String()
	if n := strings.Count(logs, `"request_id"`); n < len(cases) {
		t.Errorf("logs have %d lines with a request_id, want at least %d (one per request): the scan would miss access lines:\n%s", n, len(cases), logs)
	}
	ledger, err := os.ReadFile(e.ledger)
	if err != nil {
		t.Fatal(err)
	}

	secrets := map[string]string{
		"root secret":          e.fake.RootCredentials(testGatewayRole).SecretAccessKey,
		"sigv4 signature sent": presentedSig,
		"sigv4 token sent":     "FwoGZXIvYXdzEXAMPLETOKEN",
		"platform key":         platformKey,
		"platform key secret":  keySecret(platformKey),
		"wrong key":            wrongKey,
		"wrong key secret":     keySecret(wrongKey),
	}
	for user, k := range e.keys {
		secrets["key of "+user] = k
		secrets["key secret of "+user] = keySecret(k)
	}
	for name, tok := range jwts {
		secrets[name] = tok
		for i, seg := range strings.Split(tok, ".") {
			// alg none has an empty signature; the short ones cannot be told
			// from ordinary text.
			if len(seg) >= 16 {
				secrets[fmt.Sprintf("%s segment %d", name, i)] = seg
			}
		}
	}
	for i, c := range e.fake.AssumeRoleCalls() {
		if c.AccessKeyID != "" {
			secrets[fmt.Sprintf("ASIA key ID of AssumeRole #%d (%s)", i, c.SessionName)] = c.AccessKeyID
		}
	}
	issued := issuedSecrets()
	if len(issued) == 0 {
		t.Error("recorded no issued STS credentials: the scan for session secrets would be empty")
	}
	for i, v := range issued {
		secrets[fmt.Sprintf("issued secret or session token #%d", i)] = v
	}
	patterns := map[string]*regexp.Regexp{
		"Signature=":           regexp.MustCompile(`Signature=`),
		"SigV4 Authorization":  regexp.MustCompile(`AWS4-HMAC-SHA256 Credential=`),
		"X-Amz-Security-Token": regexp.MustCompile(`(?i)X-Amz-Security-Token`),
		// "bearer token" in prose is fine; "Bearer" and a credential is not.
		"Bearer credential": regexp.MustCompile(`(?i)bearer\s+[A-Za-z0-9._~+/=-]{16,}`),
		"ASIA key ID":       regexp.MustCompile(`\bASIA[A-Z0-9]{16}\b`),
		"base64 blob > 200": regexp.MustCompile(`[A-Za-z0-9+/=_-]{201,}`),
	}

	for _, out := range []struct {
		name, text string
		patterns   bool
	}{
		{"logs", logs, true},
		{"usage ledger", string(ledger), true},
		// Answers legitimately say "Bearer" in their error messages, so
		// only the values are looked for there.
		{"answers", answers.String(), false},
	} {
		if out.text == "" && out.name != "answers" {
			t.Errorf("%s are empty: nothing was scanned", out.name)
		}
		var leaks []string
		for what, v := range secrets {
			if v != "" && strings.Contains(out.text, v) {
				leaks = append(leaks, what)
			}
		}
		if out.patterns {
			for what, re := range patterns {
				if m := re.FindString(out.text); m != "" {
					leaks = append(leaks, fmt.Sprintf("%s (%.60q)", what, m))
				}
			}
		}
		slices.Sort(leaks)
		if len(leaks) > 0 {
			t.Errorf("%s leak %d secrets:\n  %s\n%s:\n%s", out.name, len(leaks), strings.Join(leaks, "\n  "), out.name, out.text)
		}
	}
}

// keySecret returns the secret part of a gateway API key ("bgw_" + id +
// "_" + secret): the id is not secret and is logged on purpose.
func keySecret(key string) string {
	i := strings.LastIndexByte(key, '_')
	if i < 0 || len(key)-i-1 < 16 {
		return ""
	}
	return key[i+1:]
}
