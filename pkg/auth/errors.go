package auth

import "errors"

// Sentinel errors beyond ErrNoCredentials and ErrInvalidCredentials
// (authenticator.go). Callers classify with errors.Is; the proxy maps each
// to an HTTP status. Wrapping messages never carry a secret.
var (
	// ErrBadRequest means the request is malformed as far as identity is
	// concerned and is answered 400: ambiguous credentials (two
	// Authorization headers, two x-api-key headers, or both at once), or
	// trusted tenant headers that are malformed or sent by a caller not
	// allowed to send them. It is never "sanitized" into an identity.
	ErrBadRequest = errors.New("bad request")
	// ErrForbidden means the caller authenticated but asserted something
	// its grant does not allow (a platform key naming a tenant outside its
	// list or pattern) and is answered 403, before any STS call.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable means the credential could not be checked because
	// something the check depends on (an identity provider's discovery
	// document or JWKS) did not answer. The request is refused (fail
	// closed) but the caller's credential is not called bad: it is
	// answered 503 with Retry-After.
	ErrUnavailable = errors.New("identity provider unavailable")
)
