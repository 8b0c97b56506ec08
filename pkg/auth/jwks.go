package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/bedrock-gateway/gateway/internal/endpoint"
)

const (
	// maxMetadataBytes bounds a discovery document or JWKS we will read.
	// Real ones are a few KiB (Entra's JWKS is about 10 KiB).
	maxMetadataBytes = 1 << 20
	// keysMaxAge is how long a fetched JWKS is used before it is fetched
	// again on the next token, so a key the IdP withdrew stops verifying
	// within about this long even when no unknown kid forces a refetch.
	keysMaxAge = time.Hour
	// fetchTimeout bounds one discovery-plus-JWKS refresh. It runs detached
	// from the request that triggered it, so a client hanging up cannot
	// abort a refresh (and so spend the issuer's refetch budget) halfway.
	fetchTimeout = 10 * time.Second
)

// errRefreshLimited means the key set needed fetching but was fetched,
// successfully, less than the refresh interval ago: the cached keys are
// the IdP's answer. (After a failed attempt refresh returns that failure
// instead, which wraps ErrUnavailable.)
var errRefreshLimited = errors.New("jwks refetch rate limited")

// remoteKeys is an oidc.KeySet for one issuer: it discovers the issuer's
// jwks_uri, fetches the JWKS and verifies signatures with it. An unknown
// kid makes it fetch again, at most once per minInterval (success or not),
// so a flood of tokens with random kids costs the IdP a bounded number of
// requests. Concurrent refreshes share one fetch.
//
// Its errors tell a token it could not check from a bad one: those that
// wrap ErrUnavailable mean the keys the token needs could not be fetched
// (discovery or JWKS failed, now or on the last attempt within
// minInterval, or the caller's context ended while waiting for a fetch);
// any other error means the token does not verify with the keys the IdP
// published.
type remoteKeys struct {
	issuer      string
	algs        []jose.SignatureAlgorithm
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration

	flight singleflight.Group

	mu        sync.Mutex
	jwksURL   string // "" until discovered
	keys      []jose.JSONWebKey
	fetched   time.Time // last successful JWKS fetch; zero if none
	attempted time.Time // last refresh attempt; zero if none
	lastErr   error     // the last attempt's failure; nil if it succeeded
}

// keySetErrKey is the context key under which Verify passes an *error for
// VerifySignature to fill in: go-oidc reports a KeySet's error with %v,
// which would lose ErrUnavailable.
type keySetErrKey struct{}

// VerifySignature implements oidc.KeySet.
func (ks *remoteKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := ks.verifySignature(ctx, jwt)
	if err != nil {
		if slot, ok := ctx.Value(keySetErrKey{}).(*error); ok {
			*slot = err
		}
	}
	return payload, err
}

func (ks *remoteKeys) verifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, ks.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed jws: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jws must carry exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	keys, fresh := ks.candidates(hdr.KeyID)
	if len(keys) == 0 || !fresh {
		err := ks.refresh(ctx)
		if err != nil && !errors.Is(err, errRefreshLimited) && len(keys) == 0 {
			// No key to check the token with, and the IdP did not say
			// there is none: the token is unchecked, not bad.
			return nil, err
		}
		// Otherwise the current keys (or, while the IdP fails, the stale
		// ones) decide.
		keys, _ = ks.candidates(hdr.KeyID)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the issuer's jwks matches the token's kid")
	}
	for _, k := range keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("signature does not verify with the issuer's keys")
}

// candidates returns the cached keys with this kid (all keys if kid is
// empty) and whether the cache is younger than keysMaxAge.
func (ks *remoteKeys) candidates(kid string) (keys []jose.JSONWebKey, fresh bool) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for _, k := range ks.keys {
		if kid == "" || k.KeyID == kid {
			keys = append(keys, k)
		}
	}
	return keys, !ks.fetched.IsZero() && ks.now().Sub(ks.fetched) < keysMaxAge
}

// refresh fetches the JWKS (discovering jwks_uri first if needed), unless
// an attempt was made less than minInterval ago: then it returns
// errRefreshLimited if that attempt succeeded, or its failure. Every other
// error wraps ErrUnavailable. The caller waits for the shared fetch or its
// own ctx, whichever ends first.
func (ks *remoteKeys) refresh(ctx context.Context) error {
	ch := ks.flight.DoChan("refresh", func() (any, error) {
		ks.mu.Lock()
		now := ks.now()
		if !ks.attempted.IsZero() && now.Sub(ks.attempted) < ks.minInterval {
			lastErr := ks.lastErr
			ks.mu.Unlock()
			if lastErr != nil {
				return nil, fmt.Errorf("not retried within %s: %w", ks.minInterval, lastErr)
			}
			return nil, errRefreshLimited
		}
		ks.attempted = now
		ks.mu.Unlock()

		err := ks.fetch(ctx)
		if err != nil {
			err = fmt.Errorf("%w: %w", err, ErrUnavailable)
		}
		ks.mu.Lock()
		ks.lastErr = err
		ks.mu.Unlock()
		return nil, err
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("waiting for the issuer's keys: %w: %w", ctx.Err(), ErrUnavailable)
	}
}

// fetch discovers jwks_uri if it is not known yet, then fetches the JWKS
// and caches its keys. It runs detached from ctx's cancellation (see
// fetchTimeout).
func (ks *remoteKeys) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	ks.mu.Lock()
	jwksURL := ks.jwksURL
	ks.mu.Unlock()
	if jwksURL == "" {
		u, err := discoverJWKSURL(ctx, ks.client, ks.issuer)
		if err != nil {
			return err
		}
		jwksURL = u
		ks.mu.Lock()
		ks.jwksURL = u
		ks.mu.Unlock()
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, ks.client, jwksURL, &set); err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	ks.mu.Lock()
	ks.keys = set.Keys
	ks.fetched = ks.now()
	ks.mu.Unlock()
	return nil
}

// discoverJWKSURL reads issuer's OpenID Connect discovery document and
// returns its jwks_uri. The document's issuer must equal issuer exactly
// (OpenID Connect Discovery 1.0, section 4.3).
func discoverJWKSURL(ctx context.Context, client *http.Client, issuer string) (string, error) {
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURL string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, client, discoveryURL(issuer), &doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery: document names issuer %q, want %q", doc.Issuer, issuer)
	}
	if err := checkFetchURL(doc.JWKSURL); err != nil {
		return "", fmt.Errorf("discovery: jwks_uri: %w", err)
	}
	return doc.JWKSURL, nil
}

// discoveryURL is where issuer publishes its discovery document.
func discoveryURL(issuer string) string {
	return trimSlash(issuer) + "/.well-known/openid-configuration"
}

func trimSlash(s string) string {
	for len(s) > 0 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// checkFetchURL accepts an https URL, or http to a loopback host (a local
// IdP in development and tests), by the same loopback rule as
// endpoint.Check. Unlike endpoint.Check it allows a query, which nothing
// forbids a discovered jwks_uri to carry; callers that must refuse one (an
// issuer) check that themselves.
func checkFetchURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a url: %w", err)
	}
	switch {
	case u.Host == "":
		return errors.New("no host")
	case u.Scheme == "https":
	case u.Scheme == "http" && endpoint.IsLoopback(u.Hostname()):
	default:
		return errors.New("must be https (plain http only to a loopback host)")
	}
	if u.User != nil || u.Fragment != "" {
		return errors.New("must not carry user info or a fragment")
	}
	return nil
}

func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	if len(body) > maxMetadataBytes {
		return fmt.Errorf("get %s: body exceeds %d bytes", u, maxMetadataBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("get %s: %w", u, err)
	}
	return nil
}
