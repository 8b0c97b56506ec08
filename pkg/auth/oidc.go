package auth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// OIDC defaults and limits.
const (
	// DefaultOIDCLeeway is the clock skew allowed on exp and nbf.
	DefaultOIDCLeeway = 60 * time.Second
	// maxOIDCLeeway bounds the configurable leeway; go-oidc itself allows
	// 5 minutes on nbf, the usual ceiling for IdP clock skew.
	maxOIDCLeeway = 5 * time.Minute
	// DefaultJWKSRefreshInterval is the least time between two JWKS
	// fetches of one issuer triggered by unknown kids.
	DefaultJWKSRefreshInterval = 30 * time.Second
	// maxJWTLen bounds a bearer token we will parse. Entra tokens with many
	// groups reach a few KiB; past 200 groups Entra sends an overage claim
	// instead of the list.
	maxJWTLen = 32 << 10
)

// defaultOIDCAlgorithms is the signature allow-list when an issuer sets
// none: what Okta, Entra ID, Auth0 and Cognito sign with.
var defaultOIDCAlgorithms = []string{"RS256", "ES256", "PS256"}

// asymmetricAlgs are the JWS algorithms an issuer may allow. Symmetric
// (HS*) algorithms and "none" are never allowed: the gateway holds no
// shared secret with an IdP, and an HMAC "verified" with a public key is
// the classic algorithm-confusion forgery.
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// OIDCIssuer configures one trusted token issuer (an Okta authorization
// server, an Entra ID tenant, an Auth0 tenant, a Cognito user pool).
type OIDCIssuer struct {
	// Issuer is the exact "iss" of its tokens. Discovery is read from
	// Issuer + "/.well-known/openid-configuration" and must name the same
	// issuer. https, or http to a loopback host for development.
	Issuer string `yaml:"issuer"`
	// Audiences is required: a token's "aud" must contain one of them
	// (the gateway's client ID or API identifier at this IdP).
	Audiences []string `yaml:"audiences"`
	// Algorithms is the signature allow-list; default RS256, ES256,
	// PS256. HS* and none are refused.
	Algorithms []string `yaml:"algorithms"`

	// UserClaim is the claim naming the caller uniquely at this issuer;
	// default "sub". It must be a stable identifier, not an email.
	UserClaim string `yaml:"user_claim"`
	// EntraIDs identifies callers by Entra ID's tid and oid claims instead
	// of UserClaim (Entra's sub is pairwise per application). The token's
	// tid must be a path segment of Issuer.
	EntraIDs bool `yaml:"entra_ids"`
	// LabelClaim is the claim shown as the readable part of the session
	// name, for example "email" or "preferred_username"; optional. It
	// never identifies the caller on its own. It is used only if the IdP
	// vouches for it (see verifiedLabel); otherwise the caller's User is
	// shown, as without LabelClaim.
	LabelClaim string `yaml:"label_claim"`
	// TeamClaim, TenantClaim and CostCenterClaim name string claims mapped
	// to the identity's team, tenant and cost center; each optional.
	TeamClaim       string `yaml:"team_claim"`
	TenantClaim     string `yaml:"tenant_claim"`
	CostCenterClaim string `yaml:"cost_center_claim"`
	// TeamGroupPattern, instead of TeamClaim, takes the team from the
	// first entry of the GroupsClaim array matching this RE2 pattern: its
	// capture group 1 if the pattern has one, else the whole entry.
	TeamGroupPattern string `yaml:"team_group_pattern"`
	// GroupsClaim is the claim holding the caller's groups; default
	// "groups".
	GroupsClaim string `yaml:"groups_claim"`
	// Alias is the issuer's short name in Identity.User, which is
	// Alias + ":" + subject (Entra: Alias + ":" + tid + ":" + oid). Letters,
	// digits, '.', '-' and '_'. Default: the issuer's host name. Two
	// issuers need different aliases unless both use EntraIDs.
	Alias string `yaml:"alias"`
}

// OIDCConfig configures an OIDCVerifier.
type OIDCConfig struct {
	// Issuers are the trusted issuers, each with a distinct Issuer.
	Issuers []OIDCIssuer `yaml:"issuers"`
	// Leeway is the clock skew allowed on exp and nbf; default 60s, at
	// most 5m.
	Leeway time.Duration `yaml:"leeway"`
	// JWKSRefreshInterval is the least time between two key fetches of one
	// issuer (discovery and JWKS), whether caused by an unknown kid, a
	// failed fetch, or start-up; default 30s.
	JWKSRefreshInterval time.Duration `yaml:"jwks_refresh_interval"`
	// HTTPClient fetches discovery documents and JWKS; default a client
	// with a 10s timeout.
	HTTPClient *http.Client `yaml:"-"`
	// Now is the clock; default time.Now.
	Now func() time.Time `yaml:"-"`
}

// Validate reports every problem in the configuration at once
// (errors.Join), each message starting with its key relative to the auth
// block, that is already under "oidc." (oidc.leeway,
// oidc.issuers[0].audiences, ...), since OIDCConfig is only ever the oidc
// block of a Config. It has no side effects; NewOIDCVerifier calls it.
func (c OIDCConfig) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if len(c.Issuers) == 0 {
		add("oidc.issuers: at least one issuer required")
	}
	if c.Leeway < 0 || c.Leeway > maxOIDCLeeway {
		add("oidc.leeway: must be 0..%s, got %s", maxOIDCLeeway, c.Leeway)
	}
	if c.JWKSRefreshInterval < 0 {
		add("oidc.jwks_refresh_interval: must not be negative, got %s", c.JWKSRefreshInterval)
	}
	issuers := map[string]int{}
	aliases := map[string]int{}
	for i, is := range c.Issuers {
		p := fmt.Sprintf("oidc.issuers[%d]", i)
		if is.Issuer == "" {
			add("%s.issuer: required", p)
		} else if err := checkFetchURL(is.Issuer); err != nil {
			add("%s.issuer: %w", p, err)
		} else if u, _ := url.Parse(is.Issuer); u.RawQuery != "" {
			add("%s.issuer: must not carry a query", p)
		}
		if j, dup := issuers[is.Issuer]; dup && is.Issuer != "" {
			add("%s.issuer: same as oidc.issuers[%d]", p, j)
		}
		issuers[is.Issuer] = i
		if len(is.Audiences) == 0 {
			add("%s.audiences: at least one required", p)
		}
		if slices.Contains(is.Audiences, "") {
			add("%s.audiences: must not contain an empty audience", p)
		}
		for _, a := range is.Algorithms {
			switch {
			case a == "none" || strings.HasPrefix(strings.ToUpper(a), "HS"):
				add("%s.algorithms: %q is never allowed (symmetric or unsigned)", p, a)
			case !slices.Contains(asymmetricAlgs, a):
				add("%s.algorithms: unknown algorithm %q, want one of %v", p, a, asymmetricAlgs)
			}
		}
		if is.EntraIDs && is.UserClaim != "" {
			add("%s: user_claim and entra_ids are exclusive", p)
		}
		if is.TeamClaim != "" && is.TeamGroupPattern != "" {
			add("%s: team_claim and team_group_pattern are exclusive", p)
		}
		if is.TeamGroupPattern != "" {
			if _, err := regexp.Compile(is.TeamGroupPattern); err != nil {
				add("%s.team_group_pattern: %w", p, err)
			}
		}
		alias := is.alias()
		if !validAlias(alias) {
			add("%s.alias: %q must be 1-64 letters, digits, '.', '-' or '_'", p, alias)
		}
		if j, dup := aliases[alias]; dup && !(is.EntraIDs && c.Issuers[j].EntraIDs) {
			add("%s.alias: %q is also the alias of oidc.issuers[%d]; set distinct aliases so their subjects cannot collide", p, alias, j)
		}
		aliases[alias] = i
	}
	return errors.Join(errs...)
}

func (is OIDCIssuer) alias() string {
	if is.Alias != "" {
		return is.Alias
	}
	u, err := url.Parse(is.Issuer)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Hostname())
}

func validAlias(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// OIDCVerifier turns OIDC / JWT bearer tokens from the configured issuers
// into Identities. It is safe for concurrent use.
//
// Discovery is lazy: nothing is fetched until the first token of an issuer
// arrives, so an IdP that is down when the gateway starts costs only its
// own callers (refused with ErrUnavailable) until it is back, and the
// gateway's other callers are unaffected. Discover fetches eagerly, for a
// start-up check.
type OIDCVerifier struct {
	issuers map[string]*oidcIssuer // by exact Issuer
	now     func() time.Time
	leeway  time.Duration
}

type oidcIssuer struct {
	cfg      OIDCIssuer
	alias    string
	teamRE   *regexp.Regexp
	keys     *remoteKeys
	verifier *oidc.IDTokenVerifier
}

// NewOIDCVerifier validates cfg and returns a verifier. It makes no
// network requests (see OIDCVerifier).
func NewOIDCVerifier(ctx context.Context, cfg OIDCConfig) (*OIDCVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidc config: %w", err)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultOIDCLeeway
	}
	if cfg.JWKSRefreshInterval == 0 {
		cfg.JWKSRefreshInterval = DefaultJWKSRefreshInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &OIDCVerifier{issuers: map[string]*oidcIssuer{}, now: cfg.Now, leeway: cfg.Leeway}
	for _, is := range cfg.Issuers {
		if len(is.Algorithms) == 0 {
			is.Algorithms = defaultOIDCAlgorithms
		}
		if is.UserClaim == "" && !is.EntraIDs {
			is.UserClaim = "sub"
		}
		if is.GroupsClaim == "" {
			is.GroupsClaim = "groups"
		}
		var algs []jose.SignatureAlgorithm
		for _, a := range is.Algorithms {
			algs = append(algs, jose.SignatureAlgorithm(a))
		}
		oi := &oidcIssuer{cfg: is, alias: is.alias()}
		if is.TeamGroupPattern != "" {
			oi.teamRE = regexp.MustCompile(is.TeamGroupPattern) // checked by Validate
		}
		oi.keys = &remoteKeys{
			issuer:      is.Issuer,
			algs:        algs,
			client:      cfg.HTTPClient,
			now:         cfg.Now,
			minInterval: cfg.JWKSRefreshInterval,
		}
		leeway, now := cfg.Leeway, cfg.Now
		oi.verifier = oidc.NewVerifier(is.Issuer, oi.keys, &oidc.Config{
			SupportedSigningAlgs: is.Algorithms,
			// go-oidc checks a single client ID; Verify checks that aud
			// contains one of Audiences.
			SkipClientIDCheck: true,
			// go-oidc refuses exp < Now(); shifting its clock back by the
			// leeway allows exp up to leeway in the past.
			Now: func() time.Time { return now().Add(-leeway) },
		})
		v.issuers[is.Issuer] = oi
	}
	return v, nil
}

// Discover fetches every issuer's discovery document and JWKS now and
// reports the ones that failed. The verifier works without it; call it at
// start-up to log misconfigured or unreachable issuers early. It counts
// against each issuer's refresh interval.
func (v *OIDCVerifier) Discover(ctx context.Context) error {
	var errs []error
	for iss, oi := range v.issuers {
		if err := oi.keys.refresh(ctx); err != nil && !errors.Is(err, errRefreshLimited) {
			errs = append(errs, fmt.Errorf("oidc issuer %s: %w", iss, err))
		}
	}
	return errors.Join(errs...)
}

// Verify checks rawToken (a compact JWS) and returns the caller's
// Identity. The token's unverified "iss" only chooses which configured
// issuer verifies it; then signature (allow-listed algorithms, keys from
// that issuer's JWKS), iss, aud, exp and nbf are checked.
//
// Every failure is a refusal and wraps exactly one of two errors:
// ErrUnavailable when the signature could not be checked because the keys
// it needs could not be fetched (the issuer's discovery document or JWKS
// failed: network error, timeout, non-200 answer, unparseable body; or
// did so on the last attempt, which the refetch rate limit does not
// repeat; or ctx ended while waiting for the fetch), and
// ErrInvalidCredentials for everything else: a malformed or untrusted
// token, an algorithm not allowed, a signature that does not verify with
// the keys the IdP published, an unknown kid when the JWKS was fetched
// successfully, bad iss, aud, exp, nbf or claims. Error text never
// contains the token.
func (v *OIDCVerifier) Verify(ctx context.Context, rawToken string) (Identity, error) {
	if len(rawToken) > maxJWTLen {
		return Identity{}, fmt.Errorf("oidc: token longer than %d bytes: %w", maxJWTLen, ErrInvalidCredentials)
	}
	if !LooksLikeJWT(rawToken) {
		return Identity{}, fmt.Errorf("oidc: not a compact jws: %w", ErrInvalidCredentials)
	}
	iss, err := unverifiedIssuer(rawToken)
	if err != nil {
		return Identity{}, fmt.Errorf("oidc: %w: %w", err, ErrInvalidCredentials)
	}
	oi, ok := v.issuers[iss]
	if !ok {
		return Identity{}, fmt.Errorf("oidc: issuer not trusted: %w", ErrInvalidCredentials)
	}
	var keyErr error // VerifySignature's error, which go-oidc flattens with %v
	tok, err := oi.verifier.Verify(context.WithValue(ctx, keySetErrKey{}, &keyErr), rawToken)
	if err != nil {
		if errors.Is(keyErr, ErrUnavailable) {
			// A token that has expired by its own word is refused as
			// bad, not unchecked: whatever its signature, it would be
			// refused once the keys are back, and 401 tells the client
			// to get a new one where 503 would have it retry this one.
			if v.unverifiedExpired(rawToken) {
				return Identity{}, fmt.Errorf("oidc %s: token expired (signature not checked: %v): %w", oi.alias, keyErr, ErrInvalidCredentials)
			}
			return Identity{}, fmt.Errorf("oidc %s: token not checked: %w", oi.alias, keyErr)
		}
		return Identity{}, fmt.Errorf("oidc %s: %v: %w", oi.alias, err, ErrInvalidCredentials)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(oi.cfg.Audiences, a) }) {
		return Identity{}, fmt.Errorf("oidc %s: audience %q not accepted: %w", oi.alias, tok.Audience, ErrInvalidCredentials)
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(mustClaims(tok)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return Identity{}, fmt.Errorf("oidc %s: claims: %w: %w", oi.alias, err, ErrInvalidCredentials)
	}
	if err := v.checkNotBefore(claims); err != nil {
		return Identity{}, fmt.Errorf("oidc %s: %w: %w", oi.alias, err, ErrInvalidCredentials)
	}
	id, err := oi.identity(claims)
	if err != nil {
		return Identity{}, fmt.Errorf("oidc %s: %w: %w", oi.alias, err, ErrInvalidCredentials)
	}
	return id, nil
}

func mustClaims(tok *oidc.IDToken) []byte {
	var raw json.RawMessage
	if err := tok.Claims(&raw); err != nil {
		return nil // decoding nil fails, which refuses the token
	}
	return raw
}

// checkNotBefore refuses a token whose nbf is more than the leeway ahead.
// go-oidc allows a fixed 5 minutes, which is more than we want.
func (v *OIDCVerifier) checkNotBefore(claims map[string]any) error {
	raw, ok := claims["nbf"]
	if !ok {
		return nil
	}
	n, ok := raw.(json.Number)
	if !ok {
		return errors.New("nbf is not a number")
	}
	f, err := n.Float64()
	if err != nil {
		return errors.New("nbf is not a number")
	}
	if f > 1<<40 { // tens of thousands of years ahead
		return errors.New("nbf out of range")
	}
	if nbf := time.Unix(int64(f), 0); nbf.After(v.now().Add(v.leeway)) {
		return fmt.Errorf("token not valid before %s", nbf.UTC().Format(time.RFC3339))
	}
	return nil
}

// identity maps verified claims to an Identity. Mapped claims that are
// present but not strings refuse the token rather than being ignored; a
// label the IdP does not vouch for is dropped (see verifiedLabel).
func (oi *oidcIssuer) identity(claims map[string]any) (Identity, error) {
	id := Identity{Method: MethodOIDC, Issuer: oi.cfg.Issuer}
	if oi.cfg.EntraIDs {
		tid, err := requiredString(claims, "tid")
		if err != nil {
			return Identity{}, err
		}
		oid, err := requiredString(claims, "oid")
		if err != nil {
			return Identity{}, err
		}
		// Path segments of the issuer after "https://host/".
		if segs := strings.Split(oi.cfg.Issuer, "/"); len(segs) < 4 || !slices.Contains(segs[3:], tid) {
			return Identity{}, errors.New("tid is not the issuer's tenant")
		}
		id.Subject = tid + ":" + oid
	} else {
		sub, err := requiredString(claims, oi.cfg.UserClaim)
		if err != nil {
			return Identity{}, err
		}
		id.Subject = sub
	}
	id.User = oi.alias + ":" + id.Subject
	if oi.cfg.LabelClaim != "" {
		label, err := verifiedLabel(claims, oi.cfg.LabelClaim)
		if err != nil {
			return Identity{}, err
		}
		id.Label = label
	}
	for _, m := range []struct {
		claim string
		dst   *string
	}{
		{oi.cfg.TeamClaim, &id.Team},
		{oi.cfg.TenantClaim, &id.Tenant},
		{oi.cfg.CostCenterClaim, &id.CostCenter},
	} {
		if m.claim == "" {
			continue
		}
		s, _, err := optionalString(claims, m.claim)
		if err != nil {
			return Identity{}, err
		}
		*m.dst = s
	}
	if oi.teamRE != nil {
		team, err := oi.teamFromGroups(claims)
		if err != nil {
			return Identity{}, err
		}
		id.Team = team
	}
	return id, nil
}

// verifiableClaims are the OpenID Connect Core 1.0 standard claims
// (section 5.1) that come with a "<claim>_verified" boolean: without it,
// the IdP has not said it checked the value, which the user may have
// typed in.
var verifiableClaims = []string{"email", "phone_number"}

// verifiedLabel returns the string claim name if the IdP vouches for it,
// else "" (the identity's User is shown instead). The label is what people
// read on the bill, so a caller must not choose it: with label_claim email,
// anyone could otherwise sign up at the IdP with someone else's address.
//
// The IdP vouches for a claim when "<claim>_verified" is true, or, for a
// claim with no verification defined (neither in verifiableClaims nor
// carrying a "<claim>_verified"), by issuing it at all. True is the JSON
// boolean or the exact string "true": Cognito sends user attributes and
// userinfo as strings, Centrify, JumpCloud and Apple have sent string
// email_verified in ID tokens, and the signed token says what the IdP
// meant either way. Anything else (false, "false", "True", 1, absent) is
// not verified.
func verifiedLabel(claims map[string]any, name string) (string, error) {
	label, _, err := optionalString(claims, name)
	if err != nil {
		return "", err
	}
	verified, present := claims[name+"_verified"]
	if !present && !slices.Contains(verifiableClaims, name) {
		return label, nil
	}
	if verified == true || verified == "true" {
		return label, nil
	}
	return "", nil
}

func (oi *oidcIssuer) teamFromGroups(claims map[string]any) (string, error) {
	name := oi.cfg.GroupsClaim
	raw, ok := claims[name]
	if !ok {
		// Entra ID replaces a long group list by an overage pointer in
		// _claim_names; guessing "no team" would misattribute the caller.
		if names, ok := claims["_claim_names"].(map[string]any); ok {
			if _, over := names[name]; over {
				return "", fmt.Errorf("claim %q is an overage reference, not a list", name)
			}
		}
		return "", nil
	}
	list, ok := raw.([]any)
	if !ok {
		return "", fmt.Errorf("claim %q is not a list", name)
	}
	groups := make([]string, 0, len(list))
	for _, g := range list {
		s, ok := g.(string)
		if !ok {
			return "", fmt.Errorf("claim %q has a non-string entry", name)
		}
		groups = append(groups, s)
	}
	for _, g := range groups {
		if m := oi.teamRE.FindStringSubmatch(g); m != nil {
			if len(m) > 1 {
				return m[1], nil
			}
			return g, nil
		}
	}
	return "", nil
}

func requiredString(claims map[string]any, name string) (string, error) {
	s, ok, err := optionalString(claims, name)
	if err != nil {
		return "", err
	}
	if !ok || s == "" {
		return "", fmt.Errorf("claim %q missing or empty", name)
	}
	return s, nil
}

func optionalString(claims map[string]any, name string) (s string, present bool, err error) {
	raw, ok := claims[name]
	if !ok {
		return "", false, nil
	}
	s, ok = raw.(string)
	if !ok {
		return "", true, fmt.Errorf("claim %q is not a string", name)
	}
	return s, true, nil
}

// unverifiedIssuer reads "iss" from the token's payload without verifying
// anything; it only selects which issuer's keys verify the token.
func unverifiedIssuer(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", errors.New("payload is not base64url")
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", errors.New("payload is not a json object with a string iss")
	}
	return c.Iss, nil
}

// unverifiedExpired reports whether raw's unverified exp claim is a number
// more than the leeway in the past. Only ever a reason to refuse: a token
// with no exp, or one it cannot read, is not called expired here.
func (v *OIDCVerifier) unverifiedExpired(raw string) bool {
	parts := strings.Split(raw, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return false
	}
	exp, err := c.Exp.Float64()
	if err != nil || math.IsNaN(exp) || exp > 1<<40 {
		return false
	}
	if exp < 0 {
		return true // before 1970, and not a value int64 conversion can be trusted with
	}
	return time.Unix(int64(exp), 0).Add(v.leeway).Before(v.now())
}

// LooksLikeJWT reports whether s has the shape of a compact JWS: three
// base64url segments (the signature may be empty) whose first decodes to a
// JSON object with a string "alg". It verifies nothing; callers use it to
// route a bearer token to the OIDC verifier rather than the API key store.
func LooksLikeJWT(s string) bool {
	if len(s) > maxJWTLen {
		return false
	}
	h, rest, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") || h == "" || p == "" {
		return false
	}
	for _, seg := range []string{h, p, sig} { // strictly: the decoder skips CR and LF
		if !isBase64URL(seg) {
			return false
		}
	}
	hdr, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return false
	}
	var head struct {
		Alg *string `json:"alg"`
	}
	if err := json.Unmarshal(hdr, &head); err != nil || head.Alg == nil {
		return false
	}
	return true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return len(s)%4 != 1 // no base64 encoding has this length
}
