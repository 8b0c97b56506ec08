package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MethodAPIKey is Identity.Method for callers authenticated by a gateway
// API key.
const MethodAPIKey = "api-key"

// Errors returned by Authenticator.Authenticate, for errors.Is. Both mean
// HTTP 401. The wrapping error's text is meant for logs: it never contains
// a presented key or any part of its secret, but it may say why a key was
// refused and, for a key whose id is in the store, that id. Clients should
// get a fixed message, not the error text.
var (
	// ErrNoCredentials means the request carried no gateway key at all.
	ErrNoCredentials = errors.New("no credentials")
	// ErrInvalidCredentials means a key (or something in its place) was
	// presented and refused: malformed, unknown, wrong, or ambiguous.
	ErrInvalidCredentials = errors.New("invalid credentials")
)

// Authenticator verifies gateway API keys against a KeyStore. Safe for
// concurrent use.
type Authenticator struct {
	keys map[string]storedKey
}

// NewAuthenticator returns an Authenticator that accepts exactly the keys
// in ks. A nil ks accepts nothing.
func NewAuthenticator(ks *KeyStore) *Authenticator {
	a := &Authenticator{}
	if ks != nil {
		a.keys = ks.byID
	}
	return a
}

// dummySum is compared against when a presented id is unknown, so that an
// unknown id costs the same hash and comparison as a known one.
var dummySum [sha256.Size]byte

// Authenticate establishes who sent r.
//
// The key is taken from "Authorization: Bearer <key>" (the scheme is
// case-insensitive; this is what SDKs send for AWS_BEARER_TOKEN_BEDROCK) or
// from "x-api-key: <key>" (what Anthropic clients send). Each header may
// appear at most once; a header with an empty value counts as absent. If
// both are present they must carry the same key. Any Authorization header
// that is not a Bearer key is refused, including an AWS SigV4 signature:
// the gateway signs for the caller and cannot use a signature made with
// the caller's own AWS credentials.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	key, err := presentedKey(r.Header)
	if err != nil {
		return Identity{}, err
	}
	// A malformed key is refused before hashing: the format is public, so
	// the timing of that refusal tells nothing about the store.
	id, _, err := parseKey(key)
	if err != nil {
		return Identity{}, err
	}
	sum := hashKey(key)
	k, known := a.keys[id]
	want := &dummySum
	if known {
		want = &k.sum
	}
	match := subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	if !known {
		return Identity{}, fmt.Errorf("api key: unknown key id: %w", ErrInvalidCredentials)
	}
	if !match {
		return Identity{}, fmt.Errorf("api key %s: wrong secret: %w", k.rec.ID, ErrInvalidCredentials)
	}
	return Identity{
		User:       k.rec.User,
		Team:       k.rec.Team,
		Tenant:     k.rec.Tenant,
		CostCenter: k.rec.CostCenter,
		Method:     MethodAPIKey,
		KeyID:      k.rec.ID,
	}, nil
}

// presentedKey extracts the one key a request presents. Its errors never
// quote header values.
func presentedKey(h http.Header) (string, error) {
	authz := h.Values("Authorization")
	apiKey := h.Values("X-Api-Key")
	if len(authz) > 1 {
		return "", fmt.Errorf("more than one authorization header: %w", ErrInvalidCredentials)
	}
	if len(apiKey) > 1 {
		return "", fmt.Errorf("more than one x-api-key header: %w", ErrInvalidCredentials)
	}

	var bearer, xkey string
	if len(authz) == 1 && strings.TrimSpace(authz[0]) != "" {
		var err error
		if bearer, err = bearerToken(authz[0]); err != nil {
			return "", err
		}
	}
	if len(apiKey) == 1 {
		xkey = strings.TrimSpace(apiKey[0])
	}
	switch {
	case bearer == "" && xkey == "":
		return "", ErrNoCredentials
	case bearer == "":
		return xkey, nil
	case xkey == "" || xkey == bearer:
		return bearer, nil
	default:
		return "", fmt.Errorf("authorization and x-api-key carry different keys: %w", ErrInvalidCredentials)
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
