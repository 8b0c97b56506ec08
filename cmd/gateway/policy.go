package main

import (
	"github.com/bedrock-gateway/gateway/pkg/auth"
	"github.com/bedrock-gateway/gateway/pkg/limits"
	"github.com/bedrock-gateway/gateway/pkg/proxy"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// policy joins the tenancy rules (model allow-lists, limits per identity
// and per tenant) and the limiter into the proxy's Policy.
type policy struct {
	rules   *tenancy.Resolver
	limiter *limits.Limiter
}

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
// budgets.
func (p *policy) Admit(id auth.Identity, operation, model string) error {
	if model != "" && !p.rules.ModelAllowed(id, model) {
		return proxy.ErrModelNotAllowed
	}
	idRule, tenantRule := p.rules.Limits(id)
	idKey, tenantKey := limitKeys(id)
	checks := []limits.Check{{Key: idKey, Rule: idRule}}
	if tenantKey != "" {
		checks = append(checks, limits.Check{Key: tenantKey, Rule: tenantRule})
	}
	if ok, wait := p.limiter.AllowAll(checks...); !ok {
		return &proxy.ThrottledError{Scope: "identity or tenant", RetryAfter: wait}
	}
	if ok, wait := p.limiter.AllowTokens(idKey, idRule); !ok {
		return &proxy.ThrottledError{Scope: "identity", RetryAfter: wait}
	}
	if tenantKey != "" {
		if ok, wait := p.limiter.AllowTokens(tenantKey, tenantRule); !ok {
			return &proxy.ThrottledError{Scope: "tenant", RetryAfter: wait}
		}
	}
	return nil
}

// Spent charges a request's tokens to the caller's and the tenant's
// budgets.
func (p *policy) Spent(id auth.Identity, t usage.Tokens) {
	n := t.Input + t.Output + t.CacheRead + t.CacheWrite
	idRule, tenantRule := p.rules.Limits(id)
	idKey, tenantKey := limitKeys(id)
	p.limiter.Spend(idKey, idRule, n)
	if tenantKey != "" {
		p.limiter.Spend(tenantKey, tenantRule, n)
	}
}

// Describe says what applies to id, for /gateway/whoami.
func (p *policy) Describe(id auth.Identity) any {
	idRule, tenantRule := p.rules.Limits(id)
	type rule struct {
		RequestsPerSecond float64 `json:"requests_per_second,omitempty"`
		Burst             int     `json:"burst,omitempty"`
		TokensPerMinute   int64   `json:"tokens_per_minute,omitempty"`
	}
	return struct {
		Limits       rule `json:"limits"`
		TenantLimits rule `json:"tenant_limits"`
	}{rule(idRule), rule(tenantRule)}
}
