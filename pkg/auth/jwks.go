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

// errRefreshLimited means the key set needed fetching but was fetched less
// than the refresh interval ago.
var errRefreshLimited = errors.New("jwks refetch rate limited")

// remoteKeys is an oidc.KeySet for one issuer: it discovers the issuer's
// jwks_uri, fetches the JWKS and verifies signatures with it. An unknown
// kid makes it fetch again, at most once per minInterval (success or not),
// so a flood of tokens with random kids costs the IdP a bounded number of
// requests. Concurrent refreshes share one fetch.
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
}

// VerifySignature implements oidc.KeySet.
func (ks *remoteKeys) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
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
		if err := ks.refresh(ctx); err != nil && len(keys) == 0 {
			return nil, err
		}
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
// an attempt was made less than minInterval ago. The caller waits for the
// shared fetch or its own ctx, whichever ends first.
func (ks *remoteKeys) refresh(ctx context.Context) error {
	ch := ks.flight.DoChan("refresh", func() (any, error) {
		ks.mu.Lock()
		now := ks.now()
		if !ks.attempted.IsZero() && now.Sub(ks.attempted) < ks.minInterval {
			ks.mu.Unlock()
			return nil, errRefreshLimited
		}
		ks.attempted = now
		jwksURL := ks.jwksURL
		ks.mu.Unlock()

		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		if jwksURL == "" {
			u, err := discoverJWKSURL(fctx, ks.client, ks.issuer)
			if err != nil {
				return nil, err
			}
			jwksURL = u
			ks.mu.Lock()
			ks.jwksURL = u
			ks.mu.Unlock()
		}
		var set jose.JSONWebKeySet
		if err := getJSON(fctx, ks.client, jwksURL, &set); err != nil {
			return nil, fmt.Errorf("fetch jwks: %w", err)
		}
		ks.mu.Lock()
		ks.keys = set.Keys
		ks.fetched = ks.now()
		ks.mu.Unlock()
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
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
