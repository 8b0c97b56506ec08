// Package fakeidp is a test OpenID Connect identity provider.
//
// An IdP is an httptest server that publishes a discovery document and a
// JWKS (RSA and EC keys under several kids, rotatable), counts how often
// its JWKS is fetched, and signs real JWTs with go-jose. Forge crafts the
// tokens a verifier must refuse (alg "none", HS256 keyed with the RSA public
// key, unknown kid, forged signature, wrong issuer, expired, not yet valid,
// wrong audience, tampered payload, no expiry).
//
// SetFailure makes its discovery document or JWKS fail in one of the ways
// a real IdP does (5xx, a body that is not JSON, no answer at all), so that
// a verifier can be tested against an unreachable IdP.
//
// WithEntraTenant makes it look like Microsoft Entra ID: the issuer is
// https://login.microsoftonline.com/{tid}/v2.0 and tokens carry tid and
// oid. Since that host is not the test server, verifiers must use
// IdP.Client, whose transport sends every request to the test server.
package fakeidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// DefaultAudience is the "aud" of tokens from Claims unless WithAudience
// says otherwise.
const DefaultAudience = "bedrock-gateway"

// EntraHost is the host of Microsoft Entra ID's v2.0 issuer.
const EntraHost = "login.microsoftonline.com"

// KeyKind selects the type of a signing key.
type KeyKind int

// Key kinds. RSA keys sign RS256, EC keys (P-256) sign ES256.
const (
	RSA KeyKind = iota
	EC
)

type key struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// IdP is a running fake identity provider. Its methods are safe for
// concurrent use.
type IdP struct {
	t        testing.TB
	srv      *httptest.Server
	issuer   string
	audience string
	tenant   string // Entra tenant ID, "" if not in Entra mode
	now      func() time.Time

	jwksPath      string
	discoveryPath string

	jwksFetches      atomic.Int64
	discoveryFetches atomic.Int64

	// closing is closed when the test ends, before the server is closed,
	// so that Hang handlers return and httptest.Server.Close can finish.
	closing chan struct{}

	mu       sync.Mutex
	keys     []key // published, in order
	signer   string
	nextKid  int
	failures [numEndpoints]Failure
}

// Endpoint names one of the IdP's HTTP endpoints, for SetFailure.
type Endpoint int

// Endpoints.
const (
	// Discovery is the OpenID Connect discovery document.
	Discovery Endpoint = iota
	// JWKS is the key set named by the discovery document's jwks_uri.
	JWKS

	numEndpoints = iota
)

func (e Endpoint) String() string {
	switch e {
	case Discovery:
		return "discovery"
	case JWKS:
		return "jwks"
	}
	return fmt.Sprintf("Endpoint(%d)", int(e))
}

// Failure is how an endpoint misbehaves, for SetFailure.
type Failure int

// Failures.
const (
	// Healthy answers normally.
	Healthy Failure = iota
	// ServerError answers 500.
	ServerError
	// Unavailable answers 503, as SetDown does.
	Unavailable
	// Malformed answers 200 with a body that is not JSON.
	Malformed
	// Hang never answers: the request ends when its client gives up (a
	// client timeout or a cancelled context) or, at the latest, when the
	// test that created the IdP ends, with the connection aborted.
	Hang
)

// Option configures New.
type Option func(*IdP)

// WithAudience sets the audience Claims puts in tokens.
func WithAudience(aud string) Option { return func(p *IdP) { p.audience = aud } }

// WithNow sets the clock used for iat, nbf and exp in Claims and Forge.
func WithNow(now func() time.Time) Option { return func(p *IdP) { p.now = now } }

// WithEntraTenant switches to Entra ID mode with tenant ID tid: the issuer
// becomes https://login.microsoftonline.com/{tid}/v2.0 and Claims adds
// "tid" and "oid".
func WithEntraTenant(tid string) Option { return func(p *IdP) { p.tenant = tid } }

// New starts an IdP with one RSA key (the default signer) and one EC key
// published. It is closed when the test ends.
func New(t testing.TB, opts ...Option) *IdP {
	t.Helper()
	p := &IdP{t: t, audience: DefaultAudience, now: time.Now, closing: make(chan struct{})}
	for _, o := range opts {
		o(p)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serveHTTP))
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() { close(p.closing) }) // runs first: Close waits for handlers
	if p.tenant != "" {
		p.issuer = "https://" + EntraHost + "/" + p.tenant + "/v2.0"
		p.discoveryPath = "/" + p.tenant + "/v2.0/.well-known/openid-configuration"
		p.jwksPath = "/" + p.tenant + "/discovery/v2.0/keys"
	} else {
		p.issuer = p.srv.URL
		p.discoveryPath = "/.well-known/openid-configuration"
		p.jwksPath = "/keys"
	}
	p.signer = p.AddKey(RSA)
	p.AddKey(EC)
	return p
}

// Issuer is the exact "iss" of this IdP's tokens.
func (p *IdP) Issuer() string { return p.issuer }

// Audience is the "aud" Claims uses.
func (p *IdP) Audience() string { return p.audience }

// URL is the base URL of the test server.
func (p *IdP) URL() string { return p.srv.URL }

// JWKSURL is the jwks_uri the discovery document publishes.
func (p *IdP) JWKSURL() string {
	if p.tenant != "" {
		return "https://" + EntraHost + p.jwksPath
	}
	return p.srv.URL + p.jwksPath
}

// Client returns an HTTP client that sends every request, whatever its
// URL's host, to this IdP's server over plain HTTP. Use it for Entra mode;
// it works in both modes. Its idle connections close with the server.
func (p *IdP) Client() *http.Client {
	base := p.srv.Client().Transport
	target, _ := url.Parse(p.srv.URL)
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.URL.Scheme = target.Scheme
		r.URL.Host = target.Host
		r.Host = target.Host
		return base.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// JWKSFetches is how many times the JWKS has been requested.
func (p *IdP) JWKSFetches() int { return int(p.jwksFetches.Load()) }

// DiscoveryFetches is how many times the discovery document has been
// requested.
func (p *IdP) DiscoveryFetches() int { return int(p.discoveryFetches.Load()) }

// SetDown makes discovery and JWKS answer 503 (true) or work again (false).
// Requests are still counted.
func (p *IdP) SetDown(down bool) {
	f := Healthy
	if down {
		f = Unavailable
	}
	p.SetFailure(Discovery, f)
	p.SetFailure(JWKS, f)
}

// SetFailure makes endpoint e fail as f from its next request on (Healthy
// restores it). Requests are still counted. Requests already hanging keep
// hanging.
func (p *IdP) SetFailure(e Endpoint, f Failure) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures[e] = f
}

func (p *IdP) failure(e Endpoint) Failure {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures[e]
}

// AddKey generates a key of the given kind, publishes it in the JWKS and
// returns its kid. It does not change the default signer.
func (p *IdP) AddKey(kind KeyKind) string {
	p.t.Helper()
	k := p.newKey(kind)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nextKid++
	k.kid = fmt.Sprintf("%s-%d", map[KeyKind]string{RSA: "rsa", EC: "ec"}[kind], p.nextKid)
	p.keys = append(p.keys, k)
	return k.kid
}

// RemoveKey stops publishing kid. Tokens signed with it no longer verify
// once a verifier refetches the JWKS.
func (p *IdP) RemoveKey(kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, k := range p.keys {
		if k.kid == kid {
			p.keys = append(p.keys[:i:i], p.keys[i+1:]...)
			return
		}
	}
}

// Rotate publishes a new RSA key, makes it the default signer, stops
// publishing the previous default signer and returns the new kid.
func (p *IdP) Rotate() string {
	p.t.Helper()
	kid := p.AddKey(RSA)
	p.mu.Lock()
	old := p.signer
	p.signer = kid
	p.mu.Unlock()
	p.RemoveKey(old)
	return kid
}

// SigningKID is the kid Sign uses by default.
func (p *IdP) SigningKID() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signer
}

// KIDs lists the published kids in order.
func (p *IdP) KIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var kids []string
	for _, k := range p.keys {
		kids = append(kids, k.kid)
	}
	return kids
}

func (p *IdP) newKey(kind KeyKind) key {
	p.t.Helper()
	switch kind {
	case RSA:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			p.t.Fatalf("generate rsa key: %v", err)
		}
		return key{alg: jose.RS256, priv: priv}
	case EC:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			p.t.Fatalf("generate ec key: %v", err)
		}
		return key{alg: jose.ES256, priv: priv}
	}
	p.t.Fatalf("unknown key kind %d", kind)
	return key{}
}

func (p *IdP) key(kid string) (key, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.keys {
		if k.kid == kid {
			return k, true
		}
	}
	return key{}, false
}

func (p *IdP) serveHTTP(w http.ResponseWriter, r *http.Request) {
	var e Endpoint
	switch r.URL.Path {
	case p.discoveryPath:
		p.discoveryFetches.Add(1)
		e = Discovery
	case p.jwksPath:
		p.jwksFetches.Add(1)
		e = JWKS
	default:
		http.NotFound(w, r)
		return
	}
	switch p.failure(e) {
	case ServerError:
		http.Error(w, "internal server error", http.StatusInternalServerError)
		return
	case Unavailable:
		http.Error(w, "identity provider unavailable", http.StatusServiceUnavailable)
		return
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "<html>maintenance</html>")
		return
	case Hang:
		select {
		case <-r.Context().Done():
		case <-p.closing:
		}
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	var v any
	switch e {
	case Discovery:
		v = map[string]any{
			"issuer":                                p.issuer,
			"jwks_uri":                              p.JWKSURL(),
			"authorization_endpoint":                p.issuer + "/authorize",
			"token_endpoint":                        p.issuer + "/token",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		}
	case JWKS:
		p.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range p.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		p.mu.Unlock()
		v = set
	}
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		p.t.Errorf("fakeidp: encode %s: %v", r.URL.Path, err)
	}
}

// Claims returns the claims of a valid token for subject sub: iss, aud,
// sub, iat, nbf and exp (one hour ahead), by the IdP's clock. In Entra mode
// it adds tid and uses sub as the oid (Entra's own sub is pairwise per
// application, so it becomes "pairwise-" + sub). The map is the caller's
// to change.
func (p *IdP) Claims(sub string) map[string]any {
	now := p.now()
	c := map[string]any{
		"iss": p.issuer,
		"aud": p.audience,
		"sub": sub,
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	if p.tenant != "" {
		c["sub"] = "pairwise-" + sub
		c["tid"] = p.tenant
		c["oid"] = sub
		c["ver"] = "2.0"
	}
	return c
}

type signConfig struct {
	kid       string // signing key; "" means the default signer
	headerKID *string
}

// SignOption changes how Sign signs.
type SignOption func(*signConfig)

// WithKey signs with the published key kid (RSA kids sign RS256, EC kids
// ES256).
func WithKey(kid string) SignOption { return func(c *signConfig) { c.kid = kid } }

// WithHeaderKID puts kid in the JWS header whatever key signs; "" omits
// the kid header.
func WithHeaderKID(kid string) SignOption { return func(c *signConfig) { c.headerKID = &kid } }

// Sign returns a compact JWS of claims signed with a published key.
func (p *IdP) Sign(claims map[string]any, opts ...SignOption) string {
	p.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatalf("fakeidp: marshal claims: %v", err)
	}
	return p.SignRaw(payload, opts...)
}

// SignRaw is Sign for a payload that need not be a JSON object.
func (p *IdP) SignRaw(payload []byte, opts ...SignOption) string {
	p.t.Helper()
	tok, err := p.TrySignRaw(payload, opts...)
	if err != nil {
		p.t.Fatalf("fakeidp: %v", err)
	}
	return tok
}

// TrySignRaw is SignRaw returning its error instead of failing the test
// that created the IdP, for use inside fuzz targets (where the *testing.F
// must not be touched).
func (p *IdP) TrySignRaw(payload []byte, opts ...SignOption) (string, error) {
	var c signConfig
	for _, o := range opts {
		o(&c)
	}
	if c.kid == "" {
		c.kid = p.SigningKID()
	}
	k, ok := p.key(c.kid)
	if !ok {
		return "", fmt.Errorf("no published key %q", c.kid)
	}
	if c.headerKID != nil {
		k.kid = *c.headerKID
	}
	return signBytes(k, payload)
}

func (p *IdP) sign(k key, claims map[string]any) string {
	p.t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatalf("fakeidp: marshal claims: %v", err)
	}
	tok, err := signBytes(k, payload)
	if err != nil {
		p.t.Fatalf("fakeidp: %v", err)
	}
	return tok
}

func signBytes(k key, payload []byte) (string, error) {
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		return "", fmt.Errorf("new signer: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Forgery names a kind of token a verifier must refuse.
type Forgery int

// Forgeries. Each starts from the claims passed to Forge.
const (
	// AlgNone is an unsigned token with header alg "none".
	AlgNone Forgery = iota
	// HMACWithPublicKey is HS256 keyed with the PEM of the default RSA
	// public key, under that key's kid: the classic algorithm confusion.
	HMACWithPublicKey
	// UnknownKID is signed by an unpublished key under a random kid.
	UnknownKID
	// ForgedSignature is signed by an unpublished key under the kid of the
	// default signing key.
	ForgedSignature
	// WrongIssuer carries iss "https://attacker.example" and is signed by
	// the default key.
	WrongIssuer
	// Expired expired an hour ago.
	Expired
	// NotYetValid has nbf an hour ahead.
	NotYetValid
	// WrongAudience carries aud "someone-else".
	WrongAudience
	// Tampered is a validly signed token whose payload was then replaced
	// (sub "admin").
	Tampered
	// NoExpiry has no exp claim.
	NoExpiry
)

// Forgeries lists every Forgery with a name, for table tests.
var Forgeries = []struct {
	Name string
	Kind Forgery
}{
	{"alg none", AlgNone},
	{"hmac with public key", HMACWithPublicKey},
	{"unknown kid", UnknownKID},
	{"forged signature", ForgedSignature},
	{"wrong issuer", WrongIssuer},
	{"expired", Expired},
	{"not yet valid", NotYetValid},
	{"wrong audience", WrongAudience},
	{"tampered payload", Tampered},
	{"no expiry", NoExpiry},
}

// Forge returns a token of the given kind built from claims (not
// modified).
func (p *IdP) Forge(kind Forgery, claims map[string]any) string {
	p.t.Helper()
	c := maps.Clone(claims)
	now := p.now()
	switch kind {
	case AlgNone:
		return p.rawJWS(map[string]any{"alg": "none", "typ": "JWT"}, c, func([]byte) []byte { return nil })
	case HMACWithPublicKey:
		k, _ := p.key(p.SigningKID())
		der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
		if err != nil {
			p.t.Fatalf("fakeidp: marshal public key: %v", err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		return p.rawJWS(map[string]any{"alg": "HS256", "typ": "JWT", "kid": k.kid}, c, func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		})
	case UnknownKID:
		k := p.newKey(RSA)
		k.kid = "unknown-" + rand.Text()
		return p.sign(k, c)
	case ForgedSignature:
		k := p.newKey(RSA)
		k.kid = p.SigningKID()
		return p.sign(k, c)
	case WrongIssuer:
		c["iss"] = "https://attacker.example"
	case Expired:
		c["iat"] = now.Add(-2 * time.Hour).Unix()
		c["nbf"] = now.Add(-2 * time.Hour).Unix()
		c["exp"] = now.Add(-time.Hour).Unix()
	case NotYetValid:
		c["nbf"] = now.Add(time.Hour).Unix()
		c["exp"] = now.Add(2 * time.Hour).Unix()
	case WrongAudience:
		c["aud"] = "someone-else"
	case Tampered:
		tok := p.Sign(c)
		parts := strings.Split(tok, ".")
		c["sub"] = "admin"
		c["oid"] = "admin"
		payload, err := json.Marshal(c)
		if err != nil {
			p.t.Fatalf("fakeidp: marshal claims: %v", err)
		}
		parts[1] = base64.RawURLEncoding.EncodeToString(payload)
		return strings.Join(parts, ".")
	case NoExpiry:
		delete(c, "exp")
	default:
		p.t.Fatalf("fakeidp: unknown forgery %d", kind)
	}
	return p.Sign(c)
}

// rawJWS builds a compact JWS by hand, for algorithms go-jose refuses to
// sign with.
func (p *IdP) rawJWS(header, claims map[string]any, sig func(signingInput []byte) []byte) string {
	p.t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		p.t.Fatalf("fakeidp: marshal header: %v", err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		p.t.Fatalf("fakeidp: marshal claims: %v", err)
	}
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig([]byte(in)))
}
