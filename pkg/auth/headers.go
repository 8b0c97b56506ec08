package auth

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Defaults for TrustedHeaders.
const (
	DefaultTenantHeader = "X-Gateway-Tenant"
	DefaultUserHeader   = "X-Gateway-User"
	// DefaultTrustedHeaderMaxLen is the default longest tenant or user value,
	// in bytes (every accepted character is one byte).
	DefaultTrustedHeaderMaxLen = 128
	// maxTrustedHeaderLen bounds MaxLen: the tenant becomes an STS session
	// tag value, which is at most 256 characters (STS API reference, Tag).
	maxTrustedHeaderLen = 256
)

// userSeparator joins the parts of a trusted-header User. It is outside
// the trusted value charset, so it can only appear where Check puts it.
const userSeparator = "/"

// TrustedHeaders lets a platform key (a SaaS backend; see PlatformGrant)
// assert which of its tenants, and optionally which end user, a request is
// made for. The asserted tenant and user end up in the STS session name
// and tags, that is on the bill, so the values are validated strictly and
// refused when anything is off, never cleaned up: a "sanitized" value may
// be someone else's tenant.
//
// The zero value uses the defaults. Safe for concurrent use.
type TrustedHeaders struct {
	// TenantHeader names the header carrying the tenant ID. Default
	// "X-Gateway-Tenant".
	TenantHeader string `yaml:"tenant_header"`
	// UserHeader names the header carrying the end user within the tenant.
	// Default "X-Gateway-User".
	UserHeader string `yaml:"user_header"`
	// MaxLen is the longest accepted value, in bytes. Default 128; at most
	// 256, the STS tag value limit.
	MaxLen int `yaml:"max_len"`
}

// names returns the canonical header names and the effective MaxLen of a
// valid t.
func (t TrustedHeaders) names() (tenant, user string, maxLen int) {
	tenant, user, maxLen = t.TenantHeader, t.UserHeader, t.MaxLen
	if tenant == "" {
		tenant = DefaultTenantHeader
	}
	if user == "" {
		user = DefaultUserHeader
	}
	if maxLen == 0 {
		maxLen = DefaultTrustedHeaderMaxLen
	}
	return http.CanonicalHeaderKey(tenant), http.CanonicalHeaderKey(user), maxLen
}

// Validate reports a configuration that Check cannot apply, every problem
// at once, each message starting with the key of the field (tenant_header,
// user_header or max_len): a header name that is not an HTTP token, the
// same header (in any spelling Check treats as equal) configured for both
// tenant and user, or a MaxLen outside 0..256. Zero fields take the
// defaults. It has no side effects.
func (t TrustedHeaders) Validate() error {
	tenant, user, _ := t.names()
	var errs []error
	for _, n := range []struct{ field, name string }{{"tenant_header", tenant}, {"user_header", user}} {
		if !isHeaderToken(n.name) {
			errs = append(errs, fmt.Errorf("%s: %q is not a valid header name", n.field, n.name))
		}
	}
	if sameFoldedHeaderName(tenant, user) {
		errs = append(errs, fmt.Errorf("user_header: %q names the same header as tenant_header %q", user, tenant))
	}
	if t.MaxLen < 0 || t.MaxLen > maxTrustedHeaderLen {
		errs = append(errs, fmt.Errorf("max_len: must be 1..%d (the STS tag value limit), or 0 for the default %d, got %d",
			maxTrustedHeaderLen, DefaultTrustedHeaderMaxLen, t.MaxLen))
	}
	return errors.Join(errs...)
}

// Check inspects the trusted headers of r, sent by a caller already
// authenticated as platform.
//
// A caller that is not a platform key (grant == nil) must not send either
// header, in any spelling: if it does, Check returns an error wrapping
// ErrBadRequest. Otherwise it returns platform unchanged.
//
// For a platform key, the tenant header is required and must name a
// tenant the grant allows (listed in Tenants, or matching TenantPattern
// over the whole value), else ErrForbidden. The user header is optional
// and accepted only if grant.AllowUser, else ErrBadRequest.
//
// Each header must appear exactly once, under its canonical name, with
// one value that is valid per validTrustedValue; anything else — a
// repeated header, a comma-separated list, an underscore or otherwise
// non-canonical spelling of the name, control characters, whitespace,
// non-ASCII, an empty or over-long value — wraps ErrBadRequest. Error
// texts never contain header values.
//
// The returned identity has Method MethodTrustedHeader, Platform and KeyID
// of the platform key, Team and CostCenter of the platform key, Tenant the
// asserted tenant, and User
//
//	<platform.User>/<tenant>          without a user header
//	<platform.User>/<tenant>/<user>   with one
//
// so a platform key acting for a tenant gets one session per tenant (or
// per tenant and user). The scheme is injective: '/' cannot occur in a
// tenant or user value, and Check refuses a platform key whose User
// contains '/', so splitting a User at '/' recovers exactly one triple.
// Label is the readable part of the session name: "tenant-<tenant>"
// (giving the article's "gw-tenant-acme" with a "gw-" prefix) or
// "<tenant>-<user>"; it is not unique and is never used alone.
func (t TrustedHeaders) Check(r *http.Request, platform Identity, grant *PlatformGrant) (Identity, error) {
	return t.check(r, platform, grant, nil)
}

// check is Check with grant's TenantPattern already compiled by
// compileTenantPattern (tenantRE; nil to compile it here), as the key
// store does once at load time.
func (t TrustedHeaders) check(r *http.Request, platform Identity, grant *PlatformGrant, tenantRE *regexp.Regexp) (Identity, error) {
	if err := t.Validate(); err != nil {
		// Configuration error: fail closed, not as the caller's fault.
		return Identity{}, fmt.Errorf("trusted headers: %w", err)
	}
	tenantName, userName, maxLen := t.names()
	tenant, hasTenant, err := trustedValue(r.Header, tenantName, maxLen)
	if err != nil {
		return Identity{}, err
	}
	user, hasUser, err := trustedValue(r.Header, userName, maxLen)
	if err != nil {
		return Identity{}, err
	}
	if grant == nil {
		if hasTenant || hasUser {
			return Identity{}, fmt.Errorf("trusted headers sent by a caller that is not a platform key: %w", ErrBadRequest)
		}
		return platform, nil
	}

	if platform.User == "" || strings.Contains(platform.User, userSeparator) {
		// Configuration error, not the caller's: fail closed without
		// a client-class sentinel.
		return Identity{}, fmt.Errorf("platform key %s: user must be non-empty and contain no %q", platform.KeyID, userSeparator)
	}
	if !hasTenant {
		return Identity{}, fmt.Errorf("platform key %s: missing %s header: %w", platform.KeyID, tenantName, ErrBadRequest)
	}
	if hasUser && !grant.AllowUser {
		return Identity{}, fmt.Errorf("platform key %s: may not send %s: %w", platform.KeyID, userName, ErrBadRequest)
	}
	ok, err := grant.allowsTenant(tenant, tenantRE)
	if err != nil {
		return Identity{}, fmt.Errorf("platform key %s: %w", platform.KeyID, err)
	}
	if !ok {
		// The value passed validation, so it is safe to quote.
		return Identity{}, fmt.Errorf("platform key %s: tenant %.64q not in its grant: %w", platform.KeyID, tenant, ErrForbidden)
	}

	id := Identity{
		User:       platform.User + userSeparator + tenant,
		Label:      "tenant-" + tenant,
		Team:       platform.Team,
		Tenant:     tenant,
		CostCenter: platform.CostCenter,
		Method:     MethodTrustedHeader,
		KeyID:      platform.KeyID,
		Platform:   platform.User,
	}
	if hasUser {
		id.User += userSeparator + user
		id.Label = tenant + "-" + user
	}
	return id, nil
}

// allowsTenant reports whether g lets its key assert tenant: an exact,
// case-sensitive member of Tenants, or a match of TenantPattern against
// the whole of tenant (so pattern "acme-corp" does not allow
// "acme-corp-evil"). re is TenantPattern as compileTenantPattern compiled
// it, or nil to compile it now. An invalid pattern is an error, never a
// match.
func (g *PlatformGrant) allowsTenant(tenant string, re *regexp.Regexp) (bool, error) {
	if slices.Contains(g.Tenants, tenant) {
		return true, nil
	}
	if g.TenantPattern == "" {
		return false, nil
	}
	if re == nil {
		var err error
		if re, err = compileTenantPattern(g.TenantPattern); err != nil {
			return false, fmt.Errorf("tenant_pattern: %w", err)
		}
	}
	return re.MatchString(tenant), nil
}

// trustedValue returns the single value of the header canonically named
// name, and whether any spelling of it is present. Any spelling that
// differs from name only by case or by '_' for '-' counts as the header:
// such a spelling (which Go's canonicalization keeps apart from the
// canonical key, as it does "X_Gateway_Tenant") is refused, because a
// proxy in front of the gateway may treat it as the same header.
func trustedValue(h http.Header, name string, maxLen int) (string, bool, error) {
	present := false
	for k := range h {
		if !sameFoldedHeaderName(k, name) {
			continue
		}
		present = true
		if k != name {
			return "", true, fmt.Errorf("non-canonical spelling of header %s: %w", name, ErrBadRequest)
		}
	}
	if !present {
		return "", false, nil
	}
	vs := h[name]
	if len(vs) != 1 {
		return "", true, fmt.Errorf("header %s: got %d values, want 1: %w", name, len(vs), ErrBadRequest)
	}
	if err := validTrustedValue(vs[0], maxLen); err != nil {
		return "", true, fmt.Errorf("header %s: %w: %w", name, err, ErrBadRequest)
	}
	return vs[0], true, nil
}

// validTrustedValue checks a tenant or user value: 1 to maxLen bytes of
// [A-Za-z0-9._@+-], starting with a letter or digit. Case is significant.
//
// The set is the intersection of the STS tag value charset
// [\p{L}\p{Z}\p{N}_.:/=+\-@] and the RoleSessionName charset [\w+=,.@-],
// restricted to ASCII (no homoglyphs, no Unicode normalization questions)
// and without '=', which session names use as a separator, ':' and '/'
// (not session name characters; '/' separates the parts of a
// trusted-header User). It leaves out every character with a meaning in
// HTTP header values: whitespace, controls, ',' and ';'. It fits tenant
// IDs ("acme-corp") and e-mail-like user names ("bob+x@acme.org"). A
// leading letter or digit rules out values such as "-", "." and "..".
func validTrustedValue(v string, maxLen int) error {
	if v == "" {
		return errors.New("empty value")
	}
	if len(v) > maxLen {
		return fmt.Errorf("value is %d bytes, longer than %d", len(v), maxLen)
	}
	if strings.Contains(v, ",") {
		return errors.New("value is a comma-separated list")
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isTrustedValueChar(c) {
			return fmt.Errorf("byte %d is not one of [A-Za-z0-9._@+-]", i)
		}
	}
	if !isAlnum(v[0]) {
		return errors.New("value does not start with a letter or digit")
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isTrustedValueChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("._@+-", c) >= 0
}

// foldHeaderName maps header names that a lenient hop (a proxy that
// ignores case or converts '_' to '-', as nginx and CGI-style servers may)
// could treat as the same header to one key.
func foldHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// sameFoldedHeaderName reports whether foldHeaderName(a) ==
// foldHeaderName(b) without allocating, as it runs for every header of
// every request. Names with a non-ASCII byte (which Go's server refuses,
// but a Header built otherwise may hold) take foldHeaderName itself,
// whose Unicode case mapping folds more than ASCII's.
func sameFoldedHeaderName(a, b string) bool {
	if len(a) == len(b) {
		for i := 0; i < len(a); i++ {
			ca, cb := a[i], b[i]
			if ca >= utf8.RuneSelf || cb >= utf8.RuneSelf {
				return foldHeaderName(a) == foldHeaderName(b)
			}
			if foldHeaderByte(ca) != foldHeaderByte(cb) {
				return false
			}
		}
		return true
	}
	if !isASCII(a) || !isASCII(b) {
		return foldHeaderName(a) == foldHeaderName(b)
	}
	return false
}

func foldHeaderByte(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isHeaderToken reports whether name is a non-empty RFC 9110 token.
func isHeaderToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isAlnum(c) && strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return true
}
