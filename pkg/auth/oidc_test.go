package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeclock"
	"github.com/bedrock-gateway/gateway/internal/fakeidp"
	"github.com/google/go-cmp/cmp"
)

// newVerifier builds a verifier for one IdP, with extra settings applied
// to its OIDCIssuer.
func newVerifier(t *testing.T, idp *fakeidp.IdP, clk *fakeclock.Clock, edit func(*OIDCIssuer)) *OIDCVerifier {
	t.Helper()
	is := OIDCIssuer{Issuer: idp.Issuer(), Audiences: []string{"other-app", idp.Audience()}}
	if edit != nil {
		edit(&is)
	}
	v, err := NewOIDCVerifier(t.Context(), OIDCConfig{Issuers: []OIDCIssuer{is}, HTTPClient: idp.Client(), Now: clk.Now})
	if err != nil {
		t.Fatalf("NewOIDCVerifier: %v", err)
	}
	return v
}

func TestOIDCVerifyValid(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, func(is *OIDCIssuer) {
		is.Alias = "okta"
		is.LabelClaim = "email"
		is.TeamClaim = "team"
		is.TenantClaim = "org"
		is.CostCenterClaim = "cc"
	})
	claims := idp.Claims("00u1abcd")
	claims["email"] = "alice@acme.org"
	claims["email_verified"] = true
	claims["team"] = "ml"
	claims["org"] = "acme"
	claims["cc"] = "cc-1234"
	want := Identity{
		User: "okta:00u1abcd", Label: "alice@acme.org", Team: "ml", Tenant: "acme", CostCenter: "cc-1234",
		Method: MethodOIDC, Issuer: idp.Issuer(), Subject: "00u1abcd",
	}
	var ecKID string
	for _, kid := range idp.KIDs() {
		if strings.HasPrefix(kid, "ec-") {
			ecKID = kid
		}
	}
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"RS256", idp.Sign(claims)},
		{"ES256", idp.Sign(claims, fakeidp.WithKey(ecKID))},
		{"no kid", idp.Sign(claims, fakeidp.WithHeaderKID(""))},
		{"aud list", idp.Sign(with(claims, "aud", []string{"x", idp.Audience()}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(t.Context(), tc.tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Verify identity mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if got := idp.JWKSFetches(); got != 1 {
		t.Errorf("JWKSFetches() = %d, want 1 (keys cached)", got)
	}
}

// with returns a copy of claims with name set to value (deleted if nil).
func with(claims map[string]any, kv ...any) map[string]any {
	c := make(map[string]any, len(claims))
	for k, v := range claims {
		c[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestOIDCRefusesForgeries(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, nil)
	good := idp.Claims("alice")
	if _, err := v.Verify(t.Context(), idp.Sign(good)); err != nil {
		t.Fatalf("Verify(valid token): %v", err)
	}
	for _, f := range fakeidp.Forgeries {
		t.Run(f.Name, func(t *testing.T) {
			tok := idp.Forge(f.Kind, good)
			id, err := v.Verify(t.Context(), tok)
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("Verify(%s) = %+v, %v; want ErrInvalidCredentials", f.Name, id, err)
			}
			checkNoToken(t, err, tok)
		})
	}
}

// checkNoToken fails if err's text contains the token or its signature.
func checkNoToken(t *testing.T, err error, tok string) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if strings.Contains(err.Error(), tok) || (len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(err.Error(), parts[2])) {
		t.Errorf("error text contains the token: %v", err)
	}
}

func TestOIDCLeeway(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, nil)
	now := clk.Now()
	for _, tc := range []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"exp 30s ago", with(idp.Claims("a"), "exp", now.Add(-30*time.Second).Unix()), true},
		{"exp 90s ago", with(idp.Claims("a"), "exp", now.Add(-90*time.Second).Unix()), false},
		{"nbf 30s ahead", with(idp.Claims("a"), "nbf", now.Add(30*time.Second).Unix()), true},
		{"nbf 90s ahead", with(idp.Claims("a"), "nbf", now.Add(90*time.Second).Unix()), false},
		{"nbf absent", with(idp.Claims("a"), "nbf", nil), true},
		{"nbf string", with(idp.Claims("a"), "nbf", "0"), false},
		{"nbf huge", with(idp.Claims("a"), "nbf", 1e300), false},
		{"exp string", with(idp.Claims("a"), "exp", "2099-01-01"), false},
		{"aud missing", with(idp.Claims("a"), "aud", nil), false},
		{"aud empty list", with(idp.Claims("a"), "aud", []string{}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(t.Context(), idp.Sign(tc.claims))
			if tc.ok && err != nil {
				t.Errorf("Verify = %v, want success", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("Verify = %v, want ErrInvalidCredentials", err)
			}
		})
	}
}

func TestOIDCAlgorithmAllowList(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, func(is *OIDCIssuer) { is.Algorithms = []string{"ES256"} })
	if _, err := v.Verify(t.Context(), idp.Sign(idp.Claims("a"))); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("Verify(RS256 token, allow-list ES256) = %v, want ErrInvalidCredentials", err)
	}
}

func TestOIDCRandomKIDFloodIsBounded(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, nil)
	claims := idp.Claims("mallory")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		tok := idp.Sign(claims, fakeidp.WithHeaderKID(fmt.Sprintf("random-%d", i)))
		wg.Go(func() {
			if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrInvalidCredentials) {
				errs <- fmt.Errorf("Verify(random kid) = %v, want ErrInvalidCredentials", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := idp.JWKSFetches(); got > 2 || got < 1 {
		t.Errorf("JWKSFetches() after 200 random kids = %d, want 1..2", got)
	}
	if got := idp.DiscoveryFetches(); got != 1 {
		t.Errorf("DiscoveryFetches() = %d, want 1", got)
	}

	// A real rotation: the new kid is refused until the interval has
	// passed, then one refetch picks it up.
	before := idp.JWKSFetches()
	idp.Rotate()
	tok := idp.Sign(claims)
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("Verify(new kid within interval) = %v, want ErrInvalidCredentials", err)
	}
	clk.Advance(DefaultJWKSRefreshInterval)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify(new kid after interval) = %v, want success", err)
	}
	if got := idp.JWKSFetches(); got != before+1 {
		t.Errorf("JWKSFetches() = %d, want %d", got, before+1)
	}
}

func TestOIDCWithdrawnKeyStopsVerifyingAfterMaxAge(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, nil)
	oldTok := idp.Sign(with(idp.Claims("a"), "exp", clk.Now().Add(3*time.Hour).Unix()))
	if _, err := v.Verify(t.Context(), oldTok); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	idp.Rotate() // withdraws the key that signed oldTok
	if _, err := v.Verify(t.Context(), oldTok); err != nil {
		t.Fatalf("Verify(withdrawn key, keys cached) = %v, want success until the cache ages out", err)
	}
	clk.Advance(keysMaxAge)
	if _, err := v.Verify(t.Context(), oldTok); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("Verify(withdrawn key after %s) = %v, want ErrInvalidCredentials", keysMaxAge, err)
	}
	if got := idp.JWKSFetches(); got != 2 {
		t.Errorf("JWKSFetches() = %d, want 2 (stale keys refetched once)", got)
	}
}

func TestOIDCIdPDownAtStart(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	idp.SetDown(true)
	v := newVerifier(t, idp, clk, nil)
	if err := v.Discover(t.Context()); err == nil {
		t.Errorf("Discover with IdP down = nil, want error")
	}
	tok := idp.Sign(idp.Claims("a"))
	for range 5 {
		_, err := v.Verify(t.Context(), tok)
		checkUnavailable(t, err, tok)
	}
	if got := idp.DiscoveryFetches(); got != 1 {
		t.Errorf("DiscoveryFetches() while down = %d, want 1 (rate limited)", got)
	}
	idp.SetDown(false)
	clk.Advance(DefaultJWKSRefreshInterval)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify after IdP recovered = %v, want success", err)
	}
}

// TestOIDCExpiredWhileIdPDown: with the keys unreachable, a token whose own
// exp is past (beyond the leeway) is refused as bad, so the client gets a
// new token instead of retrying a dead one; any other token stays
// unchecked, and nothing is accepted.
func TestOIDCExpiredWhileIdPDown(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	idp.SetDown(true)
	v := newVerifier(t, idp, clk, nil)
	now := clk.Now()
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		expired bool
	}{
		{"exp 90s ago", with(idp.Claims("a"), "exp", now.Add(-90*time.Second).Unix()), true},
		{"exp a day ago", with(idp.Claims("a"), "exp", now.Add(-24*time.Hour).Unix()), true},
		{"exp hugely negative", with(idp.Claims("a"), "exp", -1e300), true},
		{"exp 30s ago, within the leeway", with(idp.Claims("a"), "exp", now.Add(-30*time.Second).Unix()), false},
		{"exp ahead", idp.Claims("a"), false},
		{"exp a string", with(idp.Claims("a"), "exp", "2020-01-01"), false},
		{"exp huge", with(idp.Claims("a"), "exp", 1e300), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := idp.Sign(tc.claims)
			_, err := v.Verify(t.Context(), tok)
			if !tc.expired {
				checkUnavailable(t, err, tok)
				return
			}
			if !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "expired") {
				t.Errorf("Verify = %v, want ErrInvalidCredentials (expired) and not ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), tok) {
				t.Error("error text holds the token")
			}
		})
	}
}

// checkUnavailable fails unless err refuses the token as unchecked
// (ErrUnavailable) rather than bad (ErrInvalidCredentials).
func checkUnavailable(t *testing.T, err error, tok string) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("Verify = %v, want ErrUnavailable and not ErrInvalidCredentials", err)
	}
	if err != nil {
		checkNoToken(t, err, tok)
	}
}

// TestOIDCIdPUnavailable: when discovery or the JWKS does not answer
// usefully, a token is refused as unchecked, not as bad, also on the
// requests that the refetch rate limit keeps from asking again; when the
// IdP is back, the token verifies.
func TestOIDCIdPUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		endpoint fakeidp.Endpoint
		failure  fakeidp.Failure
		// clientTimeout, if set, bounds each fetch by the HTTP client.
		clientTimeout time.Duration
		// deadline, if set, bounds Verify by its context; the fetch goes
		// on in the background until the IdP closes.
		deadline time.Duration
	}{
		{"discovery 503", fakeidp.Discovery, fakeidp.Unavailable, 0, 0},
		{"discovery 500", fakeidp.Discovery, fakeidp.ServerError, 0, 0},
		{"discovery not json", fakeidp.Discovery, fakeidp.Malformed, 0, 0},
		{"discovery hangs past client timeout", fakeidp.Discovery, fakeidp.Hang, 50 * time.Millisecond, 0},
		{"jwks 500", fakeidp.JWKS, fakeidp.ServerError, 0, 0},
		{"jwks 503", fakeidp.JWKS, fakeidp.Unavailable, 0, 0},
		{"jwks not json", fakeidp.JWKS, fakeidp.Malformed, 0, 0},
		{"jwks hangs past client timeout", fakeidp.JWKS, fakeidp.Hang, 50 * time.Millisecond, 0},
		{"jwks hangs past request deadline", fakeidp.JWKS, fakeidp.Hang, 0, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
			client := idp.Client()
			client.Timeout = tc.clientTimeout
			is := OIDCIssuer{Issuer: idp.Issuer(), Audiences: []string{idp.Audience()}}
			v, err := NewOIDCVerifier(t.Context(), OIDCConfig{Issuers: []OIDCIssuer{is}, HTTPClient: client, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			idp.SetFailure(tc.endpoint, tc.failure)
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			tok := idp.Sign(idp.Claims("alice"))
			id, err := v.Verify(ctx, tok)
			if err == nil {
				t.Fatalf("Verify with %s %v = %+v, want an error", tc.endpoint, tc.failure, id)
			}
			checkUnavailable(t, err, tok)
			if tc.deadline > 0 {
				return // the fetch still hangs; nothing more to learn
			}
			// Within the refresh interval the IdP is not asked again, and
			// the token is still not called bad.
			fetches := idp.DiscoveryFetches() + idp.JWKSFetches()
			_, err = v.Verify(t.Context(), tok)
			checkUnavailable(t, err, tok)
			if got := idp.DiscoveryFetches() + idp.JWKSFetches(); got != fetches {
				t.Errorf("fetches within the refresh interval = %d, want %d", got, fetches)
			}
			// A forged token is still refused while the IdP is down.
			if _, err := v.Verify(t.Context(), idp.Forge(fakeidp.AlgNone, idp.Claims("alice"))); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("Verify(alg none) with IdP down = %v, want ErrInvalidCredentials", err)
			}

			idp.SetFailure(tc.endpoint, fakeidp.Healthy)
			clk.Advance(DefaultJWKSRefreshInterval)
			if _, err := v.Verify(t.Context(), tok); err != nil {
				t.Errorf("Verify after IdP recovered = %v, want success", err)
			}
			forged := idp.Forge(fakeidp.ForgedSignature, idp.Claims("alice"))
			if _, err := v.Verify(t.Context(), forged); !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) {
				t.Errorf("Verify(forged signature) with IdP up = %v, want ErrInvalidCredentials only", err)
			}
		})
	}
}

// TestOIDCIdPUnreachable: a connection refused at discovery is
// ErrUnavailable.
func TestOIDCIdPUnreachable(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, dead)
		},
	}}
	t.Cleanup(client.CloseIdleConnections)
	v, err := NewOIDCVerifier(t.Context(), OIDCConfig{
		Issuers:    []OIDCIssuer{{Issuer: idp.Issuer(), Audiences: []string{idp.Audience()}}},
		HTTPClient: client, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := idp.Sign(idp.Claims("alice"))
	_, err = v.Verify(t.Context(), tok)
	checkUnavailable(t, err, tok)
	if err := v.Discover(t.Context()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Discover within the interval after a failure = %v, want ErrUnavailable", err)
	}
}

// TestOIDCUnknownKIDWhileJWKSDown: once keys were fetched, an unknown kid
// is a bad token while the last fetch succeeded (the refetch rate limit
// holds), but an unchecked one while the JWKS cannot be fetched: it may be
// a key the IdP rotated in meanwhile. Known kids keep verifying with the
// cached keys.
func TestOIDCUnknownKIDWhileJWKSDown(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	v := newVerifier(t, idp, clk, nil)
	claims := idp.Claims("alice")
	good := idp.Sign(claims)
	if _, err := v.Verify(t.Context(), good); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	invalid := func(what, tok string) {
		t.Helper()
		if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrInvalidCredentials) || errors.Is(err, ErrUnavailable) {
			t.Errorf("Verify(%s) = %v, want ErrInvalidCredentials only", what, err)
		}
	}
	valid := func(what, tok string) {
		t.Helper()
		if _, err := v.Verify(t.Context(), tok); err != nil {
			t.Errorf("Verify(%s) = %v, want success", what, err)
		}
	}

	invalid("unknown kid, keys just fetched", idp.Forge(fakeidp.UnknownKID, claims))
	idp.SetFailure(fakeidp.JWKS, fakeidp.ServerError)
	clk.Advance(DefaultJWKSRefreshInterval)
	valid("known kid, jwks down", good)
	invalid("forged signature under a known kid, jwks down", idp.Forge(fakeidp.ForgedSignature, claims))
	fetches := idp.JWKSFetches()
	unknown := idp.Forge(fakeidp.UnknownKID, claims)
	_, err := v.Verify(t.Context(), unknown)
	checkUnavailable(t, err, unknown)
	_, err = v.Verify(t.Context(), unknown) // rate limited, last fetch failed
	checkUnavailable(t, err, unknown)
	if got := idp.JWKSFetches(); got != fetches+1 {
		t.Errorf("JWKSFetches() = %d, want %d", got, fetches+1)
	}

	// A rotation during the outage: the new kid cannot be checked yet.
	idp.Rotate()
	rotated := idp.Sign(claims)
	_, err = v.Verify(t.Context(), rotated)
	checkUnavailable(t, err, rotated)
	idp.SetFailure(fakeidp.JWKS, fakeidp.Healthy)
	clk.Advance(DefaultJWKSRefreshInterval)
	valid("rotated kid after recovery", rotated)
	invalid("unknown kid after recovery", unknown)
}

func TestOIDCTwoIssuers(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	a := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	b := fakeidp.New(t, fakeidp.WithNow(clk.Now), fakeidp.WithAudience("gw-b"))
	// Both IdPs are on 127.0.0.1, so they need explicit aliases.
	_, err := NewOIDCVerifier(t.Context(), OIDCConfig{Issuers: []OIDCIssuer{
		{Issuer: a.Issuer(), Audiences: []string{a.Audience()}},
		{Issuer: b.Issuer(), Audiences: []string{b.Audience()}},
	}})
	if err == nil || !strings.Contains(err.Error(), "oidc.issuers[1].alias") {
		t.Errorf("NewOIDCVerifier(same default alias) = %v, want an oidc.issuers[1].alias error", err)
	}
	// a.Client() routes to a's server only; use a plain client.
	v, err := NewOIDCVerifier(t.Context(), OIDCConfig{Issuers: []OIDCIssuer{
		{Issuer: a.Issuer(), Audiences: []string{a.Audience()}, Alias: "a"},
		{Issuer: b.Issuer(), Audiences: []string{b.Audience()}, Alias: "b"},
	}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		tok      string
		wantUser string
	}{
		{"a", a.Sign(a.Claims("same-sub")), "a:same-sub"},
		{"b", b.Sign(b.Claims("same-sub")), "b:same-sub"},
		{"a signs as b", a.Sign(with(b.Claims("same-sub"))), ""},
		{"b's token, a's audience", b.Sign(with(b.Claims("x"), "aud", a.Audience())), ""},
		{"unknown issuer", a.Sign(with(a.Claims("x"), "iss", a.Issuer()+"/other")), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(t.Context(), tc.tok)
			if tc.wantUser == "" {
				if !errors.Is(err, ErrInvalidCredentials) {
					t.Errorf("Verify = %+v, %v; want ErrInvalidCredentials", id, err)
				}
				return
			}
			if err != nil || id.User != tc.wantUser {
				t.Errorf("Verify = %q, %v; want %q", id.User, err, tc.wantUser)
			}
		})
	}
}

func TestOIDCEntra(t *testing.T) {
	const tid = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now), fakeidp.WithEntraTenant(tid))
	v := newVerifier(t, idp, clk, func(is *OIDCIssuer) {
		is.EntraIDs = true
		is.Alias = "entra"
		is.LabelClaim = "preferred_username"
		is.TeamGroupPattern = `^team-(.+)$`
	})
	claims := idp.Claims("oid-alice")
	claims["preferred_username"] = "alice@acme.org"
	claims["groups"] = []string{"all-staff", "team-ml", "team-infra"}
	got, err := v.Verify(t.Context(), idp.Sign(claims))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := Identity{
		User: "entra:" + tid + ":oid-alice", Label: "alice@acme.org", Team: "ml",
		Method: MethodOIDC, Issuer: "https://login.microsoftonline.com/" + tid + "/v2.0", Subject: tid + ":oid-alice",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Verify identity mismatch (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
	}{
		{"other tenant", with(claims, "tid", "00000000-0000-0000-0000-000000000000")},
		{"no oid", with(claims, "oid", nil)},
		{"no tid", with(claims, "tid", nil)},
		{"oid number", with(claims, "oid", 7)},
		{"groups overage", with(claims, "groups", nil, "_claim_names", map[string]any{"groups": "src1"}, "_claim_sources", map[string]any{"src1": map[string]any{"endpoint": "https://graph.microsoft.com/x"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if id, err := v.Verify(t.Context(), idp.Sign(tc.claims)); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("Verify = %+v, %v; want ErrInvalidCredentials", id, err)
			}
		})
	}
}

func TestOIDCClaimMapping(t *testing.T) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(t, fakeidp.WithNow(clk.Now))
	base := idp.Claims("u1")
	for _, tc := range []struct {
		name    string
		edit    func(*OIDCIssuer)
		claims  map[string]any
		want    Identity // User, Label, Team, Tenant, CostCenter compared
		wantErr bool
	}{
		{"sub only", nil, base, Identity{User: "127.0.0.1:u1"}, false},
		{"custom user claim", func(is *OIDCIssuer) { is.UserClaim = "uid" }, with(base, "uid", "e-42"), Identity{User: "127.0.0.1:e-42"}, false},
		{"custom user claim missing", func(is *OIDCIssuer) { is.UserClaim = "uid" }, base, Identity{}, true},
		{"email is only a label", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", true), Identity{User: "127.0.0.1:u1", Label: "a@b.c"}, false},
		{"email verified as a string", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", "true"), Identity{User: "127.0.0.1:u1", Label: "a@b.c"}, false},
		{"email not verified", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", false), Identity{User: "127.0.0.1:u1"}, false},
		{"email verification absent", labelClaim("email"), with(base, "email", "a@b.c"), Identity{User: "127.0.0.1:u1"}, false},
		{"email verified string false", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", "false"), Identity{User: "127.0.0.1:u1"}, false},
		{"email verified other spelling", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", "True"), Identity{User: "127.0.0.1:u1"}, false},
		{"email verified number", labelClaim("email"), with(base, "email", "a@b.c", "email_verified", 1), Identity{User: "127.0.0.1:u1"}, false},
		{"someone else's unverified email", labelClaim("email"), with(base, "sub", "attacker-77", "email", "alice@acme.org", "email_verified", false), Identity{User: "127.0.0.1:attacker-77"}, false},
		{"phone verified", labelClaim("phone_number"), with(base, "phone_number", "+1 555 0100", "phone_number_verified", true), Identity{User: "127.0.0.1:u1", Label: "+1 555 0100"}, false},
		{"phone not verified", labelClaim("phone_number"), with(base, "phone_number", "+1 555 0100"), Identity{User: "127.0.0.1:u1"}, false},
		{"claim without verification", labelClaim("preferred_username"), with(base, "preferred_username", "alice"), Identity{User: "127.0.0.1:u1", Label: "alice"}, false},
		{"custom claim marked unverified", labelClaim("work_email"), with(base, "work_email", "a@b.c", "work_email_verified", false), Identity{User: "127.0.0.1:u1"}, false},
		{"custom claim marked verified", labelClaim("work_email"), with(base, "work_email", "a@b.c", "work_email_verified", true), Identity{User: "127.0.0.1:u1", Label: "a@b.c"}, false},
		{"label absent", labelClaim("email"), base, Identity{User: "127.0.0.1:u1"}, false},
		{"label not a string", labelClaim("email"), with(base, "email", []string{"a@b.c"}), Identity{}, true},
		{"verified label not a string", labelClaim("email"), with(base, "email", []string{"a@b.c"}, "email_verified", true), Identity{}, true},
		{"team claim", func(is *OIDCIssuer) { is.TeamClaim = "dept" }, with(base, "dept", "ml"), Identity{User: "127.0.0.1:u1", Team: "ml"}, false},
		{"team claim number", func(is *OIDCIssuer) { is.TeamClaim = "dept" }, with(base, "dept", 5), Identity{}, true},
		{"tenant claim object", func(is *OIDCIssuer) { is.TenantClaim = "org" }, with(base, "org", map[string]any{"id": "x"}), Identity{}, true},
		{"cost center", func(is *OIDCIssuer) { is.CostCenterClaim = "cc" }, with(base, "cc", "cc-9"), Identity{User: "127.0.0.1:u1", CostCenter: "cc-9"}, false},
		{"group capture", func(is *OIDCIssuer) { is.TeamGroupPattern = `^gw-team-([a-z]+)$` }, with(base, "groups", []string{"Everyone", "gw-team-ml", "gw-team-web"}), Identity{User: "127.0.0.1:u1", Team: "ml"}, false},
		{"group whole match", func(is *OIDCIssuer) { is.TeamGroupPattern = `^team-` }, with(base, "groups", []string{"x", "team-ml"}), Identity{User: "127.0.0.1:u1", Team: "team-ml"}, false},
		{"custom groups claim", func(is *OIDCIssuer) { is.TeamGroupPattern = `^t-(.*)`; is.GroupsClaim = "cognito:groups" }, with(base, "cognito:groups", []string{"t-ops"}), Identity{User: "127.0.0.1:u1", Team: "ops"}, false},
		{"no group matches", func(is *OIDCIssuer) { is.TeamGroupPattern = `^team-(.+)` }, with(base, "groups", []string{"x"}), Identity{User: "127.0.0.1:u1"}, false},
		{"groups absent", func(is *OIDCIssuer) { is.TeamGroupPattern = `^team-(.+)` }, base, Identity{User: "127.0.0.1:u1"}, false},
		{"groups a string", func(is *OIDCIssuer) { is.TeamGroupPattern = `^team-(.+)` }, with(base, "groups", "team-ml"), Identity{}, true},
		{"group entry not a string", func(is *OIDCIssuer) { is.TeamGroupPattern = `^team-(.+)` }, with(base, "groups", []any{"x", 3, "team-ml"}), Identity{}, true},
		{"sub missing", nil, with(base, "sub", nil), Identity{}, true},
		{"sub empty", nil, with(base, "sub", ""), Identity{}, true},
		{"sub number", nil, with(base, "sub", 12), Identity{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, idp, clk, tc.edit)
			id, err := v.Verify(t.Context(), idp.Sign(tc.claims))
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidCredentials) {
					t.Errorf("Verify = %+v, %v; want ErrInvalidCredentials", id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got := Identity{User: id.User, Label: id.Label, Team: id.Team, Tenant: id.Tenant, CostCenter: id.CostCenter}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Verify identity mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func labelClaim(name string) func(*OIDCIssuer) {
	return func(is *OIDCIssuer) { is.LabelClaim = name }
}

func TestOIDCConfigValidate(t *testing.T) {
	ok := OIDCIssuer{Issuer: "https://idp.example.com", Audiences: []string{"gw"}}
	for _, tc := range []struct {
		name string
		cfg  OIDCConfig
		want []string // substrings of the error; nil means valid
	}{
		{"valid", OIDCConfig{Issuers: []OIDCIssuer{ok}}, nil},
		{"localhost http", OIDCConfig{Issuers: []OIDCIssuer{{Issuer: "http://localhost:8080/realms/x", Audiences: []string{"gw"}}}}, nil},
		{"two entra tenants share an alias", OIDCConfig{Issuers: []OIDCIssuer{
			{Issuer: "https://login.microsoftonline.com/t1/v2.0", Audiences: []string{"gw"}, EntraIDs: true},
			{Issuer: "https://login.microsoftonline.com/t2/v2.0", Audiences: []string{"gw"}, EntraIDs: true},
		}}, nil},
		{"no issuers", OIDCConfig{}, []string{"oidc.issuers: at least one"}},
		{"every problem at once", OIDCConfig{
			Leeway: -time.Second, JWKSRefreshInterval: -time.Second,
			Issuers: []OIDCIssuer{{
				Issuer: "http://idp.example.com", Algorithms: []string{"HS256", "none", "XX1"},
				EntraIDs: true, UserClaim: "sub", TeamClaim: "t", TeamGroupPattern: "(", Alias: "bad:alias",
			}},
		}, []string{
			"oidc.leeway", "oidc.jwks_refresh_interval", "oidc.issuers[0].issuer: must be https",
			"oidc.issuers[0].audiences", `"HS256" is never allowed`, `"none" is never allowed`, `unknown algorithm "XX1"`,
			"user_claim and entra_ids", "team_claim and team_group_pattern", "oidc.issuers[0].team_group_pattern",
			"oidc.issuers[0].alias",
		}},
		{"duplicate issuer", OIDCConfig{Issuers: []OIDCIssuer{ok, ok}}, []string{"oidc.issuers[1].issuer: same as oidc.issuers[0]"}},
		{"leeway too large", OIDCConfig{Issuers: []OIDCIssuer{ok}, Leeway: time.Hour}, []string{"oidc.leeway"}},
		{"empty audience", OIDCConfig{Issuers: []OIDCIssuer{{Issuer: ok.Issuer, Audiences: []string{""}}}}, []string{"empty audience"}},
		{"issuer with query", OIDCConfig{Issuers: []OIDCIssuer{{Issuer: ok.Issuer + "?a=b", Audiences: []string{"gw"}}}}, []string{"query"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
			if _, nerr := NewOIDCVerifier(context.Background(), tc.cfg); nerr == nil {
				t.Errorf("NewOIDCVerifier accepted a config Validate refuses")
			}
		})
	}
}

var looksLikeJWTCases = []struct {
	in   string
	want bool
}{
	{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", true},
	{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", true}, // alg none still routes to the verifier, which refuses it
	{"", false},
	{"bgw_0123456789abcdef_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwxyz", false},
	{"a.b.c", false},
	{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0", false},
	{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln.c2ln", false},
	{"eyJhbGciOiJSUzI1NiJ9..c2ln", false},
	{"eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhIn0.c2ln", false},     // no alg
	{"eyJhbGciOjV9.eyJzdWIiOiJhIn0.c2ln", false},           // alg 5
	{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0=.c2ln", false},  // padding
	{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2+l", false},   // std alphabet
	{"bnVsbA.eyJzdWIiOiJhIn0.c2ln", false},                 // header null
	{"eyJhbGciOiJSUzI1NiJ9 .eyJzdWIiOiJhIn0.c2ln", false},  // space
	{"eyJhbGciOiJSUzI1\nNiJ9.eyJzdWIiOiJhIn0.c2ln", false}, // newline
}

func TestLooksLikeJWT(t *testing.T) {
	for _, tc := range looksLikeJWTCases {
		if got := LooksLikeJWT(tc.in); got != tc.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	long := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("A", maxJWTLen) + ".c2ln"
	if LooksLikeJWT(long) {
		t.Errorf("LooksLikeJWT(%d-byte token) = true, want false", len(long))
	}
}

func FuzzLooksLikeJWT(f *testing.F) {
	for _, tc := range looksLikeJWTCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !LooksLikeJWT(s) {
			return
		}
		parts := strings.Split(s, ".")
		if len(parts) != 3 {
			t.Fatalf("LooksLikeJWT(%q) = true with %d segments", s, len(parts))
		}
		for _, p := range parts {
			if _, err := base64.RawURLEncoding.DecodeString(p); err != nil {
				t.Fatalf("LooksLikeJWT(%q) = true but segment %q: %v", s, p, err)
			}
		}
	})
}

// FuzzOIDCClaims feeds validly signed tokens with arbitrary payloads to the
// claim mapping. A token is either refused with ErrInvalidCredentials or
// yields an identity whose User is the alias plus a non-empty subject.
func FuzzOIDCClaims(f *testing.F) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(f, fakeidp.WithNow(clk.Now))
	v, err := NewOIDCVerifier(context.Background(), OIDCConfig{
		Issuers: []OIDCIssuer{{
			Issuer: idp.Issuer(), Audiences: []string{idp.Audience()}, Alias: "fz",
			LabelClaim: "email", TenantClaim: "org", CostCenterClaim: "cc", TeamGroupPattern: `^team-(.*)$`,
		}},
		HTTPClient: idp.Client(), Now: clk.Now,
	})
	if err != nil {
		f.Fatal(err)
	}
	now := clk.Now().Unix()
	head := fmt.Sprintf(`{"iss":%q,"aud":%q,"exp":%d,`, idp.Issuer(), idp.Audience(), now+3600)
	for _, s := range []string{
		`"sub":"a"}`,
		`"sub":"a","email":"a@b","org":"acme","cc":"1","groups":["x","team-ml"]}`,
		`"sub":"a","groups":[1,"team-ml"]}`,
		`"sub":"a","groups":"team-ml"}`,
		`"sub":7}`,
		`"sub":"a","nbf":1e999}`,
		`"sub":"a","email":null}`,
		`"sub":"a","email":"a@b","email_verified":true}`,
		`"sub":"a","email":"a@b","email_verified":"true"}`,
		`"sub":"a","email":"a@b","email_verified":{"x":1}}`,
		`"sub":"a","_claim_names":{"groups":"s"}}`,
		`"sub":"a","sub":""}`,
		`"sub":"","SUB":"a"}`,
	} {
		f.Add(head + s)
	}
	f.Add(`[]`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, payload string) {
		tok, err := idp.TrySignRaw([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		id, err := v.Verify(context.Background(), tok)
		if err != nil {
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("Verify(%q) error %v does not wrap ErrInvalidCredentials", payload, err)
			}
			return
		}
		if id.Method != MethodOIDC || id.Issuer != idp.Issuer() || id.Subject == "" || id.User != "fz:"+id.Subject {
			t.Fatalf("Verify(%q) = %+v, want User fz:<non-empty subject>", payload, id)
		}
	})
}

// FuzzOIDCIdPDown feeds arbitrary payloads to a verifier whose IdP is
// down: nothing is accepted, and each refusal is either unchecked
// (ErrUnavailable) or bad (ErrInvalidCredentials: an expired exp, or a
// token refused before its keys were needed), never both.
func FuzzOIDCIdPDown(f *testing.F) {
	clk := fakeclock.At(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	idp := fakeidp.New(f, fakeidp.WithNow(clk.Now))
	idp.SetDown(true)
	v, err := NewOIDCVerifier(context.Background(), OIDCConfig{
		Issuers:    []OIDCIssuer{{Issuer: idp.Issuer(), Audiences: []string{idp.Audience()}, Alias: "fz"}},
		HTTPClient: idp.Client(), Now: clk.Now,
	})
	if err != nil {
		f.Fatal(err)
	}
	head := fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"a",`, idp.Issuer(), idp.Audience())
	for _, exp := range []string{`1`, `-1`, `-1e300`, `1e300`, `"1"`, `"x"`, `null`, `[]`, `1.5e9`, `NaN`, `1772366400`} {
		f.Add(head + `"exp":` + exp + `}`)
	}
	f.Add(`{"iss":` + fmt.Sprintf("%q", idp.Issuer()) + `}`)
	f.Fuzz(func(t *testing.T, payload string) {
		tok, err := idp.TrySignRaw([]byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		id, err := v.Verify(context.Background(), tok)
		unchecked, bad := errors.Is(err, ErrUnavailable), errors.Is(err, ErrInvalidCredentials)
		if err == nil || unchecked == bad {
			t.Fatalf("Verify(%q) with the IdP down = %+v, %v; want a refusal that is either unchecked or bad", payload, id, err)
		}
	})
}
