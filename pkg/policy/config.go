// Package policy decides what an authenticated caller may do through the
// gateway: which Bedrock models it may call (allow-lists per tenant, per
// team and by default) and how fast (request-rate and token limits per
// caller and per tenant). How a caller becomes an STS session is
// pkg/tenancy's; the two are configured and reloaded separately.
package policy

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
)

// maxModelPattern bounds a model pattern: Bedrock's modelId is at most
// 2048 characters (Bedrock Runtime API reference, InvokeModel modelId).
const maxModelPattern = 2048

// Config is the YAML block "policy:", decoded directly by the config
// loader, so the yaml tags are the schema. The zero Config allows every
// model without limits.
type Config struct {
	// Models is the default model allow-list, for callers whose tenant and
	// team rules have none: model IDs or ARNs, '*' matching any run of
	// characters ("anthropic.claude-*", "*anthropic.claude-*"). Empty
	// allows every model. See Policy.ModelAllowed. YAML: models.
	Models []string `yaml:"models"`
	// Limits is the default limit of each caller (keyed by Identity.User)
	// when its team rule does not set one; zero is unlimited. See
	// Policy.Limits. YAML: limits.
	Limits limits.LimitRule `yaml:"limits"`
	// TenantLimits is the default aggregate limit of each tenant, shared
	// by all its callers, when its tenant rule does not set one; zero is
	// unlimited. YAML: tenant_limits.
	TenantLimits limits.LimitRule `yaml:"tenant_limits"`
	// Tenants holds per-tenant rules, keyed by Identity.Tenant exactly.
	// A tenant rule's Models take precedence over a team rule's; its
	// Limits are the tenant's aggregate limit. YAML: tenants.
	Tenants map[string]Rule `yaml:"tenants"`
	// Teams holds per-team rules, keyed by Identity.Team exactly; a team
	// rule's Limits apply to each member of the team, not to the team as a
	// whole. YAML: teams.
	Teams map[string]Rule `yaml:"teams"`
}

// Rule is the policy for the callers of one tenant or one team.
type Rule struct {
	// Models, if not empty, is the allow-list of the rule's callers (see
	// Policy.ModelAllowed): for a tenant rule it wins over the team's and
	// the default; for a team rule it is used when the caller's tenant
	// rule has none. Empty inherits. YAML: models.
	Models []string `yaml:"models"`
	// Limits of a tenant rule is the tenant's aggregate limit, shared by
	// all its callers (the "tenant" result of Policy.Limits); each
	// dimension left zero inherits Config.TenantLimits. Limits of a team
	// rule is the limit of each caller of the team (the "identity"
	// result), not of the team as a whole; each dimension left zero
	// inherits Config.Limits. YAML: limits.
	Limits limits.LimitRule `yaml:"limits"`
}

// Validate reports every problem with c, joined with errors.Join, each
// named by its YAML path relative to the policy block ("models[2]",
// "tenants.acme.limits.burst"), so that the config loader can prefix
// "policy.". Rule maps are checked in sorted key order. It has no side
// effects.
func (c Config) Validate() error {
	var errs []error
	errs = append(errs, validateModelPatterns("models", c.Models)...)
	errs = append(errs, validateLimits("limits", c.Limits)...)
	errs = append(errs, validateLimits("tenant_limits", c.TenantLimits)...)
	errs = append(errs, validateRules("tenants", "tenant", c.Tenants)...)
	errs = append(errs, validateRules("teams", "team", c.Teams)...)
	return errors.Join(errs...)
}

// validateRules checks the rules of one map (field "tenants" or "teams",
// whose keys are a tenant's or team's name), in sorted key order.
func validateRules(field, what string, rules map[string]Rule) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(rules)) {
		path := field + "." + k
		if err := tenancy.CheckRuleKey(k); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s name %.64q: %w", path, what, k, err))
		}
		errs = append(errs, validateModelPatterns(path+".models", rules[k].Models)...)
		errs = append(errs, validateLimits(path+".limits", rules[k].Limits)...)
	}
	return errs
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
