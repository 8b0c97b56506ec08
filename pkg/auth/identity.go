// Package auth establishes who is calling the gateway.
//
// Everything that ends up on the AWS bill (the STS session name and the
// session tags) is derived from the Identity this package returns, so an
// Identity is built only from verified credentials and from configuration,
// never from anything else the caller sends.
package auth

// Identity is a caller the gateway has authenticated.
type Identity struct {
	// User identifies the caller uniquely within the gateway, for example
	// "alice@acme.org". Two different callers never share a User.
	User string
	// Team, Tenant and CostCenter become STS session tags (may be empty).
	Team       string
	Tenant     string
	CostCenter string
	// Method says how the identity was established, for example "api-key".
	Method string
	// KeyID is the non-secret identifier of the credential that was
	// presented (an API key's ID). Safe to log.
	KeyID string
	// Label is the readable part of the session name (for example an OIDC
	// user's email); "" means User. It is never used alone to tell callers
	// apart: pkg/tenancy pairs it with a hash of User.
	Label string
	// Issuer and Subject identify an OIDC caller (the "iss" and "sub"
	// claims, or Entra's tid and oid); empty for other methods.
	Issuer  string
	Subject string
	// Platform is set when a platform key asserted this identity's tenant
	// (and maybe user) through trusted headers: it names that key's owner.
	Platform string
}

// Methods by which an Identity is established.
const (
	MethodOIDC          = "oidc"
	MethodTrustedHeader = "trusted-header"
)
