package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// Policy applies one validated Config, enforcing its limits with a
// Limiter that it shares with the Policies of earlier and later configs.
// It is the proxy's Policy (pkg/proxy): Admit, Spent and Describe. Safe
// for concurrent use as long as the Config given to New is not modified.
type Policy struct {
	cfg     Config
	limiter Limiter
}

// Limiter holds the request and token buckets that Admit and Spent use:
// a *limits.Limiter keeps them in this replica's memory, pkg/fleet's
// Limiter shares them between replicas through Redis. Both must be safe
// for concurrent use.
type Limiter interface {
	// Admit takes one request from every check's request bucket or from
	// none, then checks each check's token budget, in one step (see
	// limits.Limiter.Admit).
	Admit(checks ...limits.Check) limits.Verdict
	// Spend charges tokens to key's budget under rule, into debt if need
	// be (see limits.Limiter.Spend).
	Spend(key string, rule limits.LimitRule, tokens int64)
}

// New validates cfg and returns a Policy for it. The error joins every
// problem in cfg.
//
// limiter holds the request and token buckets (a *limits.Limiter, or
// pkg/fleet's Limiter to share them between replicas) and is required
// even when cfg limits nothing. It is passed in rather than made here
// because it must outlive config reloads: a reload builds a new Policy
// with the same limiter, so that reloading does not hand every caller a
// fresh budget (and a config that adds limits later starts from what was
// spent). With one limiter always given there is no "limits silently not
// enforced" case to get wrong.
func New(cfg Config, limiter Limiter) (*Policy, error) {
	if limiter == nil {
		return nil, errors.New("policy: nil limiter")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("policy config: %w", err)
	}
	return &Policy{cfg: cfg, limiter: limiter}, nil
}

// models returns id's model allow-list: the most specific non-empty one,
// the tenant rule's Models, else the team rule's, else Config.Models. Empty
// means every model is allowed.
func (p *Policy) models(id auth.Identity) []string {
	list := p.cfg.Models
	if rule, ok := p.cfg.Teams[id.Team]; ok && id.Team != "" && len(rule.Models) > 0 {
		list = rule.Models
	}
	if rule, ok := p.cfg.Tenants[id.Tenant]; ok && id.Tenant != "" && len(rule.Models) > 0 {
		list = rule.Models
	}
	return list
}

// ModelAllowed reports whether id may call modelID (the model ID or ARN
// exactly as the request names it, after URL decoding). The allow-list is
// the most specific non-empty one: the tenant rule's Models, else the
// team rule's, else Config.Models; with none, every model is allowed.
// modelID is allowed if it matches any pattern of the list; patterns are
// matched against the whole ID, so "anthropic.claude-*" does not match the
// cross-Region profile "us.anthropic.claude-..." (write
// "*anthropic.claude-*" for both).
func (p *Policy) ModelAllowed(id auth.Identity, modelID string) bool {
	list := p.models(id)
	if len(list) == 0 {
		return true
	}
	return slices.ContainsFunc(list, func(pat string) bool { return globMatch(pat, modelID) })
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

// Limits returns the limits for id: identity applies to id alone (Admit
// and Spent key it by id.User), tenant to all callers of id.Tenant
// together (zero when id has no tenant). identity is the team rule's
// Limits over Config.Limits; tenant is the tenant rule's Limits over
// Config.TenantLimits. "Over" is per dimension: a rule's non-zero
// RequestsPerSecond (with its Burst) replaces the default's, and a
// non-zero TokensPerMinute replaces the default's.
func (p *Policy) Limits(id auth.Identity) (identity, tenant limits.LimitRule) {
	identity = p.cfg.Limits
	if rule, ok := p.cfg.Teams[id.Team]; ok && id.Team != "" {
		identity = overlay(identity, rule.Limits)
	}
	if id.Tenant == "" {
		return identity, limits.LimitRule{}
	}
	tenant = p.cfg.TenantLimits
	if rule, ok := p.cfg.Tenants[id.Tenant]; ok {
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

// limitKeys returns the limiter keys of id's own limit and of its
// tenant's ("" when id has no tenant), in separate namespaces so that a
// user named like a tenant never shares its buckets.
func limitKeys(id auth.Identity) (identity, tenant string) {
	identity = "id:" + id.User
	if id.Tenant != "" {
		tenant = "tenant:" + id.Tenant
	}
	return identity, tenant
}

// Admit refuses a model outside the caller's allow-list, then takes one
// request from the caller's and the tenant's rate limits together (a
// refusal by one takes nothing from the other), then checks both token
// budgets. It returns nil, ErrModelNotAllowed, or a *ThrottledError.
// model "" (an operation that names no model) skips the allow-list.
func (p *Policy) Admit(id auth.Identity, operation, model string) error {
	if model != "" && !p.ModelAllowed(id, model) {
		return ErrModelNotAllowed
	}
	idRule, tenantRule := p.Limits(id)
	idKey, tenantKey := limitKeys(id)
	checks := []limits.Check{{Key: idKey, Rule: idRule}}
	if tenantKey != "" {
		checks = append(checks, limits.Check{Key: tenantKey, Rule: tenantRule})
	}
	v := p.limiter.Admit(checks...)
	switch {
	case v.OK:
		return nil
	case v.TokenKey == "":
		return &ThrottledError{Scope: "identity or tenant", RetryAfter: v.RetryAfter}
	case v.TokenKey == tenantKey:
		return &ThrottledError{Scope: "tenant", RetryAfter: v.RetryAfter}
	default:
		return &ThrottledError{Scope: "identity", RetryAfter: v.RetryAfter}
	}
}

// Spent charges a request's tokens (input, output and both cache counts)
// to the caller's and the tenant's budgets.
func (p *Policy) Spent(id auth.Identity, t usage.Tokens) {
	n := t.Input + t.Output + t.CacheRead + t.CacheWrite
	idRule, tenantRule := p.Limits(id)
	idKey, tenantKey := limitKeys(id)
	p.limiter.Spend(idKey, idRule, n)
	if tenantKey != "" {
		p.limiter.Spend(tenantKey, tenantRule, n)
	}
}

// description is what Describe reports: what applies to one caller, for
// /gateway/whoami, as JSON. It holds no secret.
type description struct {
	// Models is the caller's model allow-list (see ModelAllowed);
	// ["*"] when every model is allowed.
	Models []string `json:"models"`
	// Limits applies to the caller alone, TenantLimits to all callers of
	// its tenant together (zero without a tenant). A zero field is
	// unlimited.
	Limits       describedLimit `json:"limits"`
	TenantLimits describedLimit `json:"tenant_limits"`
}

// describedLimit is a limits.LimitRule as Describe reports it.
type describedLimit struct {
	RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
	Burst             int     `json:"burst,omitempty"`
	TokensPerMinute   int64   `json:"tokens_per_minute,omitempty"`
}

// Describe says what applies to id, for /gateway/whoami: its model
// allow-list and its limits, as a value to encode as JSON.
func (p *Policy) Describe(id auth.Identity) any {
	idRule, tenantRule := p.Limits(id)
	models := slices.Clone(p.models(id)) // so that no caller can change the policy through it
	if len(models) == 0 {
		models = []string{"*"}
	}
	return description{Models: models, Limits: describedLimit(idRule), TenantLimits: describedLimit(tenantRule)}
}
