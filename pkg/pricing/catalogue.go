package pricing

import (
	"cmp"
	_ "embed"
	"slices"
	"sync"
)

// Direction is what a token was for. Bedrock bills each direction at its
// own rate and under its own usage type.
type Direction int

// The directions, in the order Tokens and Rates index them.
const (
	Input Direction = iota
	Output
	CacheRead
	CacheWrite
)

// NumDirections is the number of directions, the length of Tokens and Rates.
const NumDirections = 4

var directionNames = [NumDirections]string{"input", "output", "cache-read", "cache-write"}

// String returns "input", "output", "cache-read" or "cache-write".
func (d Direction) String() string {
	if d >= 0 && d < NumDirections {
		return directionNames[d]
	}
	return "unknown"
}

// Tokens counts a request's tokens by direction. Input excludes the cached
// tokens, as Bedrock's usage reports it (inputTokens beside
// cacheReadInputTokens and cacheWriteInputTokens).
type Tokens [NumDirections]int64

// Rates are the prices of one token, by direction, in picodollars. A
// price per million tokens with up to six decimals is a whole number of
// picodollars per token, so the product with a token count is exact.
type Rates [NumDirections]Money

// Price is one row of the catalogue: what a model costs in a Region when
// reached with a scope, and how the bill names it.
type Price struct {
	Model     string // base model ID, e.g. "anthropic.claude-sonnet-4-5-20250929-v1:0"
	Region    string // AWS Region the call is made in (the source Region of a profile)
	Scope     string // "regional", "geo" or "global"
	Rates     Rates  // per token
	UsageName string // the model's part of the CUR usage type, e.g. "Claude4.5Sonnet"
	Source    string // where the price comes from (URL), or "config" for an override
}

// ConfigSource is the Source of a price that the gateway config set.
const ConfigSource = "config"

// rowKey finds a row. Region "" is a row the config added for every Region.
type rowKey struct {
	region, model string
	scope         Scope
}

// Catalogue is a price table: the shipped one (Default), or the shipped
// one with a config's overrides (New). It is immutable, so it is safe for
// concurrent use, and its lookups do not allocate: the proxy prices every
// request with it.
type Catalogue struct {
	asOf  string
	rows  map[rowKey]*Price
	order []*Price // sorted by model, Region, scope, for Prices
}

//go:embed prices.yaml
var pricesYAML []byte

// defaultCatalogue is the parsed shipped table, the package's one piece of
// global state; it never changes after the first call.
var defaultCatalogue = sync.OnceValue(func() *Catalogue {
	c, err := parseTable(pricesYAML)
	if err != nil {
		panic("pricing: the embedded prices.yaml is broken: " + err.Error())
	}
	return c
})

// Default returns the shipped price table. It panics only if the
// embedded data file does not parse, which TestDefault rules out before a
// release.
func Default() *Catalogue { return defaultCatalogue() }

// AsOf is the date the table's prices were checked, "2026-11-30": a price
// list ages, and whoever reads a cost should be able to tell how old its
// prices are.
func (c *Catalogue) AsOf() string { return c.asOf }

// Lookup returns the price of model called in region. model is what a
// client sends: a base model ID, a cross-Region inference profile ID
// ("us.anthropic...", "global.anthropic..."), or the ARN of a foundation
// model or of a system-defined inference profile. The ARN's own Region is
// ignored: AWS bills a profile at the rates of the Region the call is made
// in. Unknown models, application inference profiles, provisioned and
// custom models return false.
func (c *Catalogue) Lookup(region, model string) (Price, bool) {
	base, scope, ok := splitModel(model)
	if !ok {
		return Price{}, false
	}
	if p, ok := c.rows[rowKey{region, base, scope}]; ok {
		return *p, true
	}
	if p, ok := c.rows[rowKey{"", base, scope}]; ok && region != "" {
		q := *p
		q.Region = region
		return q, true
	}
	return Price{}, false
}

// Cost returns what t tokens of model cost in region, exactly. It returns
// false when the model has no price there, when a count is negative, or
// when the sum does not fit Money (over $9.2 million). No tokens cost $0
// whatever the model, so an empty or failed request needs no price.
func (c *Catalogue) Cost(region, model string, t Tokens) (Money, bool) {
	if t == (Tokens{}) {
		return 0, true
	}
	p, ok := c.Lookup(region, model)
	if !ok {
		return 0, false
	}
	return p.Rates.Cost(t)
}

// Cost returns what t tokens cost at r: the sum over directions of count
// times rate, and false on a negative count or an overflow.
func (r Rates) Cost(t Tokens) (Money, bool) {
	var sum Money
	for d, n := range t {
		if n < 0 {
			return 0, false
		}
		m, ok := r[d].Times(n)
		if !ok {
			return 0, false
		}
		if sum, ok = sum.Add(m); !ok {
			return 0, false
		}
	}
	return sum, true
}

// UsageType returns the CUR 2.0 line_item_usage_type under which a call
// of model in region bills tokens of direction d:
// ("us-east-1", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", Input) →
// "USE1-Claude4.5Sonnet-input-tokens". It returns false for a model
// Lookup does not know, or a Region without a usage-type code.
func (c *Catalogue) UsageType(region, model string, d Direction) (string, bool) {
	if d < 0 || d >= NumDirections {
		return "", false
	}
	p, ok := c.Lookup(region, model)
	if !ok {
		return "", false
	}
	code, ok := RegionCode(region)
	if !ok {
		return "", false
	}
	return UsageTypeParts{RegionCode: code, UsageName: p.UsageName, Direction: d, Global: p.Scope == "global"}.String(), true
}

// UsageTypeOrID is UsageType, or for a model the catalogue does not know,
// "REGIONCODE-<model>" with the direction's ending
// ("USE1-m-input-tokens"): the form `gateway dev`'s emulated bill gives
// such models, so that a reconciliation in dev mode covers them too. A
// real bill names an uncatalogued model otherwise, so its lines show as
// mismatches until pricing.prices gives the model its usage_name.
func (c *Catalogue) UsageTypeOrID(region, model string, d Direction) string {
	if u, ok := c.UsageType(region, model, d); ok {
		return u
	}
	code := RegionCodeOrName(region)
	if d < 0 || d >= NumDirections {
		return code + "-" + model
	}
	return code + "-" + model + directionSuffixes[d]
}

// Prices lists every row, sorted by model, Region and scope, for a
// listing (`gateway prices`) or a check against a bill. Rows the config
// added for every Region have Region "".
func (c *Catalogue) Prices() []Price {
	out := make([]Price, len(c.order))
	for i, p := range c.order {
		out[i] = *p
	}
	return out
}

// newCatalogue indexes rows, which must not repeat a key.
func newCatalogue(asOf string, rows []*Price) *Catalogue {
	c := &Catalogue{asOf: asOf, rows: make(map[rowKey]*Price, len(rows)), order: rows}
	for _, p := range rows {
		s, _ := parseScope(p.Scope)
		c.rows[rowKey{p.Region, p.Model, s}] = p
	}
	slices.SortFunc(c.order, func(a, b *Price) int {
		sa, _ := parseScope(a.Scope)
		sb, _ := parseScope(b.Scope)
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Region, b.Region), cmp.Compare(sa, sb))
	})
	return c
}
