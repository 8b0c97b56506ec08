package auth

import (
	"fmt"
	"net/http"
)

// Chain authenticates a request by whichever credential it carries: a
// gateway API key, or an identity-provider token (OIDC/JWT); then, for a
// platform key, the trusted headers naming the tenant (and user) it acts
// for. Exactly one credential per request.
//
// The user IDs of the three methods cannot collide: API-key users contain
// neither ':' nor '/' (the key store refuses them), OIDC users are
// "alias:subject", and trusted-header users "platform/tenant[/user]" with
// values that contain no ':'.
type Chain struct {
	// Keys verifies gateway API keys. Required.
	Keys *Authenticator
	// OIDC verifies identity-provider tokens. Optional: without it only
	// gateway keys are accepted.
	OIDC *OIDCVerifier
	// Headers says how platform keys assert tenants; its zero value uses
	// the default header names.
	Headers TrustedHeaders
}

// Authenticate implements the proxy's Authenticator.
func (c *Chain) Authenticate(r *http.Request) (Identity, error) {
	cred, err := PresentedCredential(r.Header)
	if err != nil {
		return Identity{}, err
	}
	var id Identity
	var grant *PlatformGrant
	switch {
	case IsAPIKey(cred):
		id, grant, err = c.Keys.VerifyKey(cred)
	case c.OIDC != nil && LooksLikeJWT(cred):
		id, err = c.OIDC.Verify(r.Context(), cred)
	default:
		return Identity{}, fmt.Errorf("credential is neither a gateway key nor an accepted token: %w", ErrInvalidCredentials)
	}
	if err != nil {
		return Identity{}, err
	}
	return c.Headers.Check(r, id, grant)
}
