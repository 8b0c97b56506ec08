package tenancy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/auth"
)

// TenantRule is configuration for the callers of one tenant
// (Identity.Tenant equal to the rule's key in Config.Tenants). Model
// allow-lists and limits per tenant are pkg/policy's.
type TenantRule struct {
	// RoleARN, if set, is the role this tenant's sessions assume instead
	// of a team rule's or Config.RoleARN. YAML: tenants.<tenant>.role_arn.
	RoleARN string `yaml:"role_arn"`
	// SessionName, if set, is the exact RoleSessionName (2-64 characters
	// of [\w+,.@-]; '=' is reserved for hashed names; no prefix is added)
	// of the tenant-only session: the identity a platform key asserts
	// through trusted headers for this tenant without naming an end user
	// (see IsTenantOnly), for example "gw-tenant-acme". Requires
	// Platform. Identities naming an end user, and every other caller,
	// get templated names as usual; a user whose plain name would equal a
	// reserved session name gets the hashed form instead.
	// YAML: tenants.<tenant>.session_name.
	SessionName string `yaml:"session_name"`
	// Platform names the platform (Identity.Platform, the platform key's
	// owner) whose tenant-only identity for this tenant gets SessionName.
	// Required with SessionName, so that two platforms asserting the same
	// tenant never share a session name. YAML: tenants.<tenant>.platform.
	Platform string `yaml:"platform"`
}

// TeamRule is configuration for the callers of one team (Identity.Team
// equal to the rule's key in Config.Teams). Model allow-lists and limits
// per team are pkg/policy's.
type TeamRule struct {
	// RoleARN, if set, is the role this team's sessions assume unless a
	// tenant rule names one. YAML: teams.<team>.role_arn.
	RoleARN string `yaml:"role_arn"`
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

// validateRoleARN checks an IAM role ARN.
func validateRoleARN(path, arn string) error {
	if len(arn) > maxRoleARN || !roleARN.MatchString(arn) {
		return fmt.Errorf("%s: %.80q is not an IAM role ARN (arn:<partition>:iam::<12-digit account>:role/<name>)", path, arn)
	}
	return nil
}

// CheckRuleKey reports whether key may name a tenant or team rule, here
// or in any other config keyed by Identity.Tenant or Identity.Team (such
// as pkg/policy's), so that the rule is written once: key must be a
// non-empty, valid session tag value. Tenants and teams are sent as
// session tag values, and Resolve refuses an identity whose tenant or team
// (when its tag is sent) is not a valid one, so a rule keyed by anything
// else is a mistake in the config. An empty key would be one too: an
// identity without a tenant or team matches no rule.
func CheckRuleKey(key string) error {
	if key == "" {
		return errors.New("must be a non-empty session tag value")
	}
	if err := validateTagValue(key); err != nil {
		return fmt.Errorf("must be a valid session tag value: %w", err)
	}
	return nil
}

// validateRules checks c.Tenants and c.Teams, in sorted key order.
func (c Config) validateRules() []error {
	var errs []error
	names := map[string]string{} // lowercased session name -> tenant
	for _, t := range slices.Sorted(maps.Keys(c.Tenants)) {
		rule := c.Tenants[t]
		path := "tenants." + t
		if err := CheckRuleKey(t); err != nil {
			errs = append(errs, fmt.Errorf("%s: tenant name %.64q: %w", path, t, err))
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
	}
	for _, t := range slices.Sorted(maps.Keys(c.Teams)) {
		rule := c.Teams[t]
		path := "teams." + t
		if err := CheckRuleKey(t); err != nil {
			errs = append(errs, fmt.Errorf("%s: team name %.64q: %w", path, t, err))
		}
		if rule.RoleARN != "" {
			if err := validateRoleARN(path+".role_arn", rule.RoleARN); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
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
