package auth

import (
	"fmt"
	"net/http"
)

// Authenticator establishes who sent a request, by whichever credential it
// carries: a gateway API key (checked by Keys), or an identity-provider
// token (OIDC/JWT); then, for a platform key, the trusted headers naming
// the tenant (and user) it acts for. Exactly one credential per request.
//
// The user IDs of the three methods cannot collide: API-key users contain
// neither ':' nor '/' (the key store refuses them), OIDC users are
// "alias:subject", and trusted-header users "platform/tenant[/user]" with
// values that contain no ':'.
type Authenticator struct {
	// Keys verifies gateway API keys. Required.
	Keys *KeyVerifier
	// OIDC verifies identity-provider tokens. Optional: without it only
	// gateway keys are accepted.
	OIDC *OIDCVerifier
	// Headers says how platform keys assert tenants; its zero value uses
	// the default header names.
	Headers TrustedHeaders
}

// Authenticate returns the caller's Identity. A refused caller gets an
// error wrapping ErrNoCredentials, ErrInvalidCredentials, ErrBadRequest or
// ErrForbidden, or ErrUnavailable when its token could not be checked
// because the identity provider did not answer; an invalid Headers
// configuration fails closed with an error wrapping none of them (the
// gateway's fault, not the caller's). It implements the proxy's
// Authenticator.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	cred, err := PresentedCredential(r.Header)
	if err != nil {
		return Identity{}, err
	}
	var id Identity
	var k storedKey
	switch {
	case IsAPIKey(cred):
		// The stored grant is read, not copied (check does not change
		// it), with the tenant pattern the store compiled.
		k, err = a.Keys.verify(cred)
		id = k.rec.Identity()
	case a.OIDC != nil && LooksLikeJWT(cred):
		id, err = a.OIDC.Verify(r.Context(), cred)
	default:
		return Identity{}, fmt.Errorf("credential is neither a gateway key nor an accepted token: %w", ErrInvalidCredentials)
	}
	if err != nil {
		return Identity{}, err
	}
	return a.Headers.check(r, id, k.rec.Platform, k.tenantRE)
}
