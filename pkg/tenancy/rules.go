package tenancy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
)

// maxModelPattern bounds a model pattern: Bedrock's modelId is at most
// 2048 characters (Bedrock Runtime API reference, InvokeModel modelId).
const maxModelPattern = 2048

// TenantRule is configuration for the callers of one tenant
// (Identity.Tenant equal to the rule's key in Config.Tenants).
type TenantRule struct {
	// RoleARN, if set, is the role this tenant's sessions assume instead
	// of a team rule's or Config.RoleARN. YAML: tenants.<tenant>.role_arn.
	RoleARN string
	// SessionName, if set, is the exact RoleSessionName (2-64 characters
	// of [\w+,.@-]; '=' is reserved for hashed names; no prefix is added)
	// of the tenant-only session: the identity a platform key asserts
	// through trusted headers for this tenant without naming an end user
	// (see IsTenantOnly), for example "gw-tenant-acme". Requires
	// Platform. Identities naming an end user, and every other caller,
	// get templated names as usual; a user whose plain name would equal a
	// reserved session name gets the hashed form instead.
	// YAML: tenants.<tenant>.session_name.
	SessionName string
	// Platform names the platform (Identity.Platform, the platform key's
	// owner) whose tenant-only identity for this tenant gets SessionName.
	// Required with SessionName, so that two platforms asserting the same
	// tenant never share a session name. YAML: tenants.<tenant>.platform.
	Platform string
	// Models, if not empty, is this tenant's model allow-list (see
	// Resolver.ModelAllowed); empty inherits the team's or the default.
	// YAML: tenants.<tenant>.models.
	Models []string
	// Limits is the tenant's aggregate limit, shared by all its callers
	// (the "tenant" result of Resolver.Limits). Each dimension left zero
	// inherits Config.TenantLimits. YAML: tenants.<tenant>.limits.
	Limits limits.LimitRule
}

// TeamRule is configuration for the callers of one team (Identity.Team
// equal to the rule's key in Config.Teams).
type TeamRule struct {
	// RoleARN, if set, is the role this team's sessions assume unless a
	// tenant rule names one. YAML: teams.<team>.role_arn.
	RoleARN string
	// Models, if not empty, is the team's model allow-list, used when the
	// caller's tenant rule has none. YAML: teams.<team>.models.
	Models []string
	// Limits is the limit of each caller of the team (the "identity"
	// result of Resolver.Limits), not of the team as a whole. Each
	// dimension left zero inherits Config.Limits.
	// YAML: teams.<team>.limits.
	Limits limits.LimitRule
}

// TenantOnlyUser is the Identity.User of a tenant-only identity: the one a
// platform key asserts through trusted headers for tenant without naming
// an end user. pkg/auth builds it by the same convention,
// platform + "/" + tenant.
func TenantOnlyUser(platform, tenant string) string {
	return platform + "/" + tenant
}

// IsTenantOnly reports whether id is a tenant-only identity: established
// by trusted headers (auth.MethodTrustedHeader) with no end user asserted,
// which pkg/auth signals by User == TenantOnlyUser(Platform, Tenant).
func IsTenantOnly(id auth.Identity) bool {
	return id.Method == auth.MethodTrustedHeader && id.Platform != "" && id.Tenant != "" &&
		id.User == TenantOnlyUser(id.Platform, id.Tenant)
}

// globMatch reports whether s matches pattern, where '*' matches any run
// of characters (including '.', ':' and '/', which model IDs and ARNs
// contain) and every other character matches itself.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	first, last := parts[0], parts[len(parts)-1]
	if !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, last)
}

// validateModelPatterns checks an allow-list, naming path[i] for each bad
// pattern.
func validateModelPatterns(path string, patterns []string) []error {
	var errs []error
	for i, p := range patterns {
		switch {
		case p == "":
			errs = append(errs, fmt.Errorf("%s[%d]: empty model pattern", path, i))
		case len(p) > maxModelPattern:
			errs = append(errs, fmt.Errorf("%s[%d]: must be at most %d characters, got %d", path, i, maxModelPattern, len(p)))
		case strings.IndexFunc(p, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0:
			errs = append(errs, fmt.Errorf("%s[%d]: %.80q: must be printable ASCII without spaces", path, i, p))
		}
	}
	return errs
}

// validateRoleARN checks an IAM role ARN.
func validateRoleARN(path, arn string) error {
	if len(arn) > maxRoleARN || !roleARN.MatchString(arn) {
		return fmt.Errorf("%s: %.80q is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)", path, arn)
	}
	return nil
}

// validateLimits returns each problem of r prefixed with path.
func validateLimits(path string, r limits.LimitRule) []error {
	err := r.Validate()
	if err == nil {
		return nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s.%w", path, e)
	}
	return out
}

// validateRules checks c.Tenants and c.Teams, in sorted key order.
func (c Config) validateRules() []error {
	var errs []error
	names := map[string]string{} // lowercased session name -> tenant
	for _, t := range slices.Sorted(maps.Keys(c.Tenants)) {
		rule := c.Tenants[t]
		path := "tenants." + t
		if err := validateTagValue(t); t == "" || err != nil {
			errs = append(errs, fmt.Errorf("%s: tenant name must be a valid, non-empty tag value", path))
		}
		if rule.RoleARN != "" {
			if err := validateRoleARN(path+".role_arn", rule.RoleARN); err != nil {
				errs = append(errs, err)
			}
		}
		if n := rule.SessionName; n != "" {
			if len(n) < minSessionName || len(n) > maxSessionName ||
				strings.IndexFunc(n, func(c rune) bool { return c == '=' || !isSessionNameChar(c) }) >= 0 {
				errs = append(errs, fmt.Errorf("%s.session_name: %.80q: must be 2-64 letters, digits and _+,.@- (no '=')", path, n))
			} else if prev, dup := names[strings.ToLower(n)]; dup {
				errs = append(errs, fmt.Errorf("%s.session_name: %q already used by tenants.%s (session names are compared case-insensitively)", path, n, prev))
			} else {
				names[strings.ToLower(n)] = t
			}
			if rule.Platform == "" {
				errs = append(errs, fmt.Errorf("%s.platform: required with session_name", path))
			}
		}
		errs = append(errs, validateModelPatterns(path+".models", rule.Models)...)
		errs = append(errs, validateLimits(path+".limits", rule.Limits)...)
	}
	for _, t := range slices.Sorted(maps.Keys(c.Teams)) {
		rule := c.Teams[t]
		path := "teams." + t
		if err := validateTagValue(t); t == "" || err != nil {
			errs = append(errs, fmt.Errorf("%s: team name must be a valid, non-empty tag value", path))
		}
		if rule.RoleARN != "" {
			if err := validateRoleARN(path+".role_arn", rule.RoleARN); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, validateModelPatterns(path+".models", rule.Models)...)
		errs = append(errs, validateLimits(path+".limits", rule.Limits)...)
	}
	return errs
}

// ModelAllowed reports whether id may call modelID (the model ID or ARN
// exactly as the request names it, after URL decoding). The allow-list is
// the most specific non-empty one: the tenant rule's Models, else the
// team rule's, else Config.Models; with none, every model is allowed.
// modelID is allowed if it matches any pattern of the list; patterns are
// matched against the whole ID, so "anthropic.claude-*" does not match the
// cross-Region profile "us.anthropic.claude-..." (write
// "*anthropic.claude-*" for both).
func (r *Resolver) ModelAllowed(id auth.Identity, modelID string) bool {
	list := r.cfg.Models
	if rule, ok := r.cfg.Teams[id.Team]; ok && id.Team != "" && len(rule.Models) > 0 {
		list = rule.Models
	}
	if rule, ok := r.cfg.Tenants[id.Tenant]; ok && id.Tenant != "" && len(rule.Models) > 0 {
		list = rule.Models
	}
	if len(list) == 0 {
		return true
	}
	return slices.ContainsFunc(list, func(p string) bool { return globMatch(p, modelID) })
}

// Limits returns the limits for id: identity applies to id alone (the
// caller keys it by id.User), tenant to all callers of id.Tenant together
// (zero when id has no tenant). identity is the team rule's Limits over
// Config.Limits; tenant is the tenant rule's Limits over
// Config.TenantLimits. "Over" is per dimension: a rule's non-zero
// RequestsPerSecond (with its Burst) replaces the default's, and a
// non-zero TokensPerMinute replaces the default's.
func (r *Resolver) Limits(id auth.Identity) (identity, tenant limits.LimitRule) {
	identity = r.cfg.Limits
	if rule, ok := r.cfg.Teams[id.Team]; ok && id.Team != "" {
		identity = overlay(identity, rule.Limits)
	}
	if id.Tenant == "" {
		return identity, limits.LimitRule{}
	}
	tenant = r.cfg.TenantLimits
	if rule, ok := r.cfg.Tenants[id.Tenant]; ok {
		tenant = overlay(tenant, rule.Limits)
	}
	return identity, tenant
}

// overlay returns base with each non-zero dimension of over replacing it.
func overlay(base, over limits.LimitRule) limits.LimitRule {
	if over.RequestsPerSecond != 0 {
		base.RequestsPerSecond, base.Burst = over.RequestsPerSecond, over.Burst
	}
	if over.TokensPerMinute != 0 {
		base.TokensPerMinute = over.TokensPerMinute
	}
	return base
}

// roleFor returns the role id's session assumes: the tenant rule's, else
// the team rule's, else Config.RoleARN.
func (r *Resolver) roleFor(id auth.Identity) string {
	if rule, ok := r.cfg.Tenants[id.Tenant]; ok && id.Tenant != "" && rule.RoleARN != "" {
		return rule.RoleARN
	}
	if rule, ok := r.cfg.Teams[id.Team]; ok && id.Team != "" && rule.RoleARN != "" {
		return rule.RoleARN
	}
	return r.cfg.RoleARN
}
