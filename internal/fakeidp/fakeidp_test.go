package fakeidp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", url, err)
	}
}

// verify checks tok against the IdP's published JWKS, as a verifier would.
func verify(t *testing.T, p *IdP, tok string) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, p.Client(), p.JWKSURL(), &set)
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return nil, err
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errNoKey
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(payload, &c)
}

type strErr string

func (e strErr) Error() string { return string(e) }

const errNoKey = strErr("no key")

func TestDiscoveryAndSigning(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"generic", nil},
		{"entra", []Option{WithEntraTenant("72f988bf-86f1-41af-91ab-2d7cd011db47")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := New(t, tc.opts...)
			var doc struct {
				Issuer  string `json:"issuer"`
				JWKSURI string `json:"jwks_uri"`
			}
			getJSON(t, p.Client(), strings.TrimSuffix(p.Issuer(), "/")+"/.well-known/openid-configuration", &doc)
			if doc.Issuer != p.Issuer() || doc.JWKSURI != p.JWKSURL() {
				t.Errorf("discovery = %+v, want issuer %q jwks_uri %q", doc, p.Issuer(), p.JWKSURL())
			}
			for _, kid := range p.KIDs() {
				c, err := verify(t, p, p.Sign(p.Claims("alice"), WithKey(kid)))
				if err != nil {
					t.Fatalf("token signed with %s: %v", kid, err)
				}
				if c["iss"] != p.Issuer() {
					t.Errorf("iss = %v, want %q", c["iss"], p.Issuer())
				}
			}
			if got, want := p.JWKSFetches(), len(p.KIDs()); got != want {
				t.Errorf("JWKSFetches() = %d, want %d", got, want)
			}
		})
	}
}

func TestEntraClaims(t *testing.T) {
	p := New(t, WithEntraTenant("tid-1"))
	c := p.Claims("oid-1")
	if c["tid"] != "tid-1" || c["oid"] != "oid-1" || c["iss"] != "https://login.microsoftonline.com/tid-1/v2.0" {
		t.Errorf("Claims(%q) = %v, want tid tid-1, oid oid-1 and the Entra issuer", "oid-1", c)
	}
}

func TestRotate(t *testing.T) {
	p := New(t)
	old := p.SigningKID()
	oldTok := p.Sign(p.Claims("alice"))
	kid := p.Rotate()
	if kid == old || p.SigningKID() != kid {
		t.Fatalf("Rotate() = %q, SigningKID() = %q, old %q", kid, p.SigningKID(), old)
	}
	if _, err := verify(t, p, oldTok); err == nil {
		t.Errorf("token under withdrawn kid %s verified, want error", old)
	}
	if _, err := verify(t, p, p.Sign(p.Claims("alice"))); err != nil {
		t.Errorf("token under new kid: %v", err)
	}
}

func TestForgeriesDoNotVerify(t *testing.T) {
	p := New(t)
	good := p.Claims("alice")
	for _, f := range Forgeries {
		t.Run(f.Name, func(t *testing.T) {
			tok := p.Forge(f.Kind, good)
			c, err := verify(t, p, tok)
			switch f.Kind {
			case AlgNone, HMACWithPublicKey, UnknownKID, ForgedSignature, Tampered:
				if err == nil {
					t.Errorf("Forge(%s) verified by signature, want error", f.Name)
				}
			default: // validly signed; the claims are what is wrong
				if err != nil {
					t.Fatalf("Forge(%s): signature: %v", f.Name, err)
				}
				if c["sub"] != "alice" {
					t.Errorf("Forge(%s) sub = %v, want alice", f.Name, c["sub"])
				}
			}
		})
	}
	if good["iss"] != p.Issuer() {
		t.Errorf("Forge modified its input: iss = %v", good["iss"])
	}
}

func TestSetDown(t *testing.T) {
	p := New(t)
	p.SetDown(true)
	resp, err := p.Client().Get(p.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("JWKS while down: status %d, want 503", resp.StatusCode)
	}
	if got := p.JWKSFetches(); got != 1 {
		t.Errorf("JWKSFetches() = %d, want 1", got)
	}
}

func TestSetFailure(t *testing.T) {
	p := New(t)
	urls := map[Endpoint]string{
		Discovery: p.Issuer() + "/.well-known/openid-configuration",
		JWKS:      p.JWKSURL(),
	}
	for _, e := range []Endpoint{Discovery, JWKS} {
		for _, tc := range []struct {
			name       string
			f          Failure
			wantStatus int
			wantJSON   bool
		}{
			{"server error", ServerError, http.StatusInternalServerError, false},
			{"unavailable", Unavailable, http.StatusServiceUnavailable, false},
			{"malformed", Malformed, http.StatusOK, false},
			{"healthy again", Healthy, http.StatusOK, true},
		} {
			t.Run(e.String()+"/"+tc.name, func(t *testing.T) {
				p.SetFailure(e, tc.f)
				resp, err := p.Client().Get(urls[e])
				if err != nil {
					t.Fatalf("GET %s: %v", urls[e], err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("read body: %v", err)
				}
				if resp.StatusCode != tc.wantStatus {
					t.Errorf("GET %s: status %d, want %d", urls[e], resp.StatusCode, tc.wantStatus)
				}
				if got := json.Valid(body); got != tc.wantJSON {
					t.Errorf("GET %s: body is JSON = %v, want %v: %q", urls[e], got, tc.wantJSON, body)
				}
			})
		}
	}
	// One endpoint's failure leaves the other alone.
	p.SetFailure(JWKS, ServerError)
	var doc map[string]any
	getJSON(t, p.Client(), urls[Discovery], &doc)
	p.SetFailure(JWKS, Healthy)
}

func TestHangEndsWithClientTimeout(t *testing.T) {
	p := New(t)
	p.SetFailure(JWKS, Hang)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.JWKSURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.Client().Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET hanging JWKS: status %d, want an error", resp.StatusCode)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET hanging JWKS: %v, want context.DeadlineExceeded", err)
	}
}

// TestHangEndsWithTest: a request still hanging when its test ends fails
// then, so that the server can close.
func TestHangEndsWithTest(t *testing.T) {
	done := make(chan error, 1)
	t.Run("hang", func(t *testing.T) {
		p := New(t)
		p.SetFailure(Discovery, Hang)
		go func() {
			resp, err := p.Client().Get(p.Issuer() + "/.well-known/openid-configuration")
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		for p.DiscoveryFetches() == 0 { // the request is in the handler
			runtime.Gosched()
		}
	})
	if err := <-done; err == nil {
		t.Errorf("GET hanging discovery after its IdP closed: nil error, want the connection dropped")
	}
}
