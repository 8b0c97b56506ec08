package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// MethodAPIKey is Identity.Method for callers authenticated by a gateway
// API key.
const MethodAPIKey = "api-key"

// Errors returned by Authenticator and KeyVerifier, for errors.Is. Both
// mean HTTP 401 (ambiguous credentials are ErrBadRequest, 400). The
// wrapping error's text is meant for logs: it never contains a presented key or any
// part of its secret, but it may say why a key was refused and, for a key
// whose id is in the store, that id. Clients should get a fixed message,
// not the error text.
var (
	// ErrNoCredentials means the request carried no gateway key at all.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials means a key (or something in its place) was
	// presented and refused: malformed, unknown, wrong, revoked or
	// expired.
	ErrInvalidCredentials = errors.New("invalid credentials")
)

// KeyVerifier verifies gateway API keys against a KeyStore: the key must
// be in the store, not revoked and not expired. It knows only API keys;
// Authenticator builds on it to accept every kind of credential. Safe for
// concurrent use.
type KeyVerifier struct {
	// Now is the clock expiry is judged by; nil means time.Now. Set it
	// before the first use.
	Now func() time.Time

	current func() *KeyStore
}

// NewKeyVerifier returns a KeyVerifier that accepts exactly the
// usable keys in ks. A nil ks accepts nothing.
func NewKeyVerifier(ks *KeyStore) *KeyVerifier {
	return &KeyVerifier{current: func() *KeyStore { return ks }}
}

// NewDynamicKeyVerifier returns a KeyVerifier that checks each
// request against the store current returns at that moment, typically
// KeyWatcher.Current, so that keys revoked, expired or changed in the
// store file take effect without a restart. current may return nil, which
// accepts nothing.
func NewDynamicKeyVerifier(current func() *KeyStore) *KeyVerifier {
	return &KeyVerifier{current: current}
}

// dummySum is compared against when a presented id is unknown, so that an
// unknown id costs the same hash and comparison as a known one.
var dummySum [sha256.Size]byte

// Authenticate establishes who sent r. It is AuthenticateKey without the
// platform grant, for callers that do not honour trusted tenant headers.
func (v *KeyVerifier) Authenticate(r *http.Request) (Identity, error) {
	id, _, err := v.AuthenticateKey(r)
	return id, err
}

// AuthenticateKey establishes who sent r and, for a platform key, returns
// a copy of the key's PlatformGrant (nil for an ordinary key); the caller
// applies trusted tenant headers with it.
//
// The key is taken from the request as PresentedCredential describes and
// checked by VerifyKey.
func (v *KeyVerifier) AuthenticateKey(r *http.Request) (Identity, *PlatformGrant, error) {
	key, err := PresentedCredential(r.Header)
	if err != nil {
		return Identity{}, nil, err
	}
	return v.VerifyKey(key)
}

// VerifyKey checks one presented gateway API key. The key must be well
// formed, in the store, with the right secret, not revoked and not expired
// (Now at or after its ExpiresAt). A refused key is an error wrapping
// ErrInvalidCredentials, whose text never contains the key; it names the
// key id only if the id is in the store.
func (v *KeyVerifier) VerifyKey(key string) (Identity, *PlatformGrant, error) {
	k, err := v.verify(key)
	if err != nil {
		return Identity{}, nil, err
	}
	return k.rec.Identity(), k.rec.Platform.clone(), nil
}

// verify is VerifyKey returning the stored key itself, with its compiled
// tenant pattern; the caller must not change it.
func (v *KeyVerifier) verify(key string) (storedKey, error) {
	// A malformed key is refused before hashing: the format is public, so
	// the timing of that refusal tells nothing about the store.
	id, _, err := parseKey(key)
	if err != nil {
		return storedKey{}, err
	}
	sum := hashKey(key)
	var k storedKey
	known := false
	if ks := v.current(); ks != nil {
		k, known = ks.byID[id]
	}
	want := &dummySum
	if known {
		want = &k.sum
	}
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	if !known {
		return storedKey{}, fmt.Errorf("api key: unknown key id: %w", ErrInvalidCredentials)
	}
	if !match {
		return storedKey{}, fmt.Errorf("api key %s: wrong secret: %w", k.rec.ID, ErrInvalidCredentials)
	}
	// Revocation and expiry are checked only after the secret: only the
	// key's holder learns why it no longer works.
	if k.rec.Revoked() {
		return storedKey{}, fmt.Errorf("api key %s: revoked: %w", k.rec.ID, ErrInvalidCredentials)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	if k.rec.Expired(now()) {
		return storedKey{}, fmt.Errorf("api key %s: expired: %w", k.rec.ID, ErrInvalidCredentials)
	}
	return k, nil
}

// IsAPIKey reports whether a presented credential has the shape of a
// gateway API key (its public prefix), as opposed to, say, a JWT; it
// checks nothing else. A caller that accepts several kinds of bearer
// token dispatches on it and hands an API key to VerifyKey.
func IsAPIKey(credential string) bool {
	return strings.HasPrefix(credential, keyPrefix)
}

// PresentedCredential extracts the one credential a request presents,
// from "Authorization: Bearer <credential>" (the scheme is
// case-insensitive; this is what SDKs send for AWS_BEARER_TOKEN_BEDROCK)
// or from "x-api-key: <credential>" (what Anthropic clients send). A header
// with an empty value counts as absent.
//
// A request must present at most one credential: two Authorization
// headers, two x-api-key headers (whatever their values), or both an
// Authorization and an x-api-key header with values (even equal ones) are
// an error wrapping ErrBadRequest, since the gateway must never guess whose
// request it is. No credential is ErrNoCredentials. An Authorization
// header that is not a Bearer token is refused with ErrInvalidCredentials,
// including an AWS SigV4 signature: the gateway signs for the caller and
// cannot use a signature made with the caller's own AWS credentials.
// Errors never quote header values.
func PresentedCredential(h http.Header) (string, error) {
	authz := h.Values("Authorization")
	apiKey := h.Values("X-Api-Key")
	if len(authz) > 1 {
		return "", fmt.Errorf("more than one authorization header: %w", ErrBadRequest)
	}
	if len(apiKey) > 1 {
		return "", fmt.Errorf("more than one x-api-key header: %w", ErrBadRequest)
	}
	hasAuthz := len(authz) == 1 && strings.TrimSpace(authz[0]) != ""
	hasKey := len(apiKey) == 1 && strings.TrimSpace(apiKey[0]) != ""
	switch {
	case hasAuthz && hasKey:
		return "", fmt.Errorf("both authorization and x-api-key present: %w", ErrBadRequest)
	case hasAuthz:
		return bearerToken(authz[0])
	case hasKey:
		return strings.TrimSpace(apiKey[0]), nil
	default:
		return "", ErrNoCredentials
	}
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// value (RFC 6750 section 2.1; the scheme is case-insensitive per RFC 9110
// section 11.1).
func bearerToken(v string) (string, error) {
	v = strings.TrimSpace(v)
	scheme, token, _ := strings.Cut(v, " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
	case len(scheme) >= 5 && strings.EqualFold(scheme[:5], "AWS4-"):
		// AWS4-HMAC-SHA256 (SigV4) or AWS4-ECDSA-P256-SHA256 (SigV4a).
		return "", fmt.Errorf("authorization is an AWS SigV4 signature, not a gateway key; "+
			"set AWS_BEARER_TOKEN_BEDROCK to your gateway key so the SDK sends it as a bearer token: %w",
			ErrInvalidCredentials)
	default:
		return "", fmt.Errorf("authorization scheme is not Bearer: %w", ErrInvalidCredentials)
	}
	token = strings.TrimLeft(token, " \t")
	if token == "" {
		return "", fmt.Errorf("authorization: bearer token is empty: %w", ErrInvalidCredentials)
	}
	return token, nil
}
