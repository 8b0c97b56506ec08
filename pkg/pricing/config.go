package pricing

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// Config is the pricing block of the gateway's configuration (YAML, under
// `pricing:`). Its zero value is the shipped table as it is.
type Config struct {
	// Prices override rows of the shipped table or add models and Regions
	// it lacks, applied in order (a later entry wins). Default none.
	Prices []PriceOverride `yaml:"prices"`
	// Discount is a percentage taken off every shipped price, for an
	// account with negotiated (private) pricing: "12.5" bills $3 as
	// $2.625. A decimal string, 0 <= discount < 100, at most 6 decimals;
	// it is read exactly, and a discounted price is rounded to the nearest
	// picodollar per token only where the percentage does not divide it
	// (at most $0.0000005 per million tokens). Prices set under Prices are
	// taken as given, not discounted. Default "" (none).
	Discount string `yaml:"discount"`
}

// PriceOverride sets the price of one model, in one Region or all.
type PriceOverride struct {
	// Model is a base model ID ("anthropic.claude-sonnet-4-5-20250929-v1:0"),
	// which prices every scope (in-Region, geo and global profiles), or a
	// profile ID ("us.anthropic...", "global.anthropic...") to price only
	// that scope. Required.
	Model string `yaml:"model"`
	// Region is the AWS Region the gateway calls. "" overrides every
	// Region the table prices the model in, or, for a model the table
	// lacks, prices it in every Region. To price a shipped model in a
	// Region the table lacks, name the Region. Default "".
	Region string `yaml:"region"`
	// Input, Output, CacheRead and CacheWrite are prices in US dollars per
	// million tokens, decimal strings with at most 6 decimals ("3",
	// "0.035"). When overriding, "" keeps the shipped price; when adding,
	// input and output are required and an empty cache price is $0.
	Input      string `yaml:"input"`
	Output     string `yaml:"output"`
	CacheRead  string `yaml:"cache_read"`
	CacheWrite string `yaml:"cache_write"`
	// UsageName is the model's part of the CUR usage type
	// ("Claude4.5Sonnet" in "USE1-Claude4.5Sonnet-input-tokens"). It
	// replaces the shipped name when set, and is required when adding a
	// model the table lacks.
	UsageName string `yaml:"usage_name"`
}

// Validate reports every problem in c at once, each starting with its
// YAML path relative to the pricing block ("prices[2].input: ..."), as a
// flat errors.Join list. It has no side effects. New reports the same
// problems, with the "pricing." prefix.
func (c Config) Validate() error {
	_, errs := build(c)
	return errors.Join(errs...)
}

// New returns the shipped table with cfg's discount and overrides. Its
// error lists every problem of cfg, each naming its path from the
// gateway config's root: "pricing.prices[2].input: ...".
func New(cfg Config) (*Catalogue, error) {
	c, errs := build(cfg)
	if len(errs) > 0 {
		for i, e := range errs {
			errs[i] = fmt.Errorf("pricing.%w", e)
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// build applies cfg to a copy of the shipped table, collecting every
// problem.
func build(cfg Config) (*Catalogue, []error) {
	def := Default()
	if len(cfg.Prices) == 0 && cfg.Discount == "" {
		return def, nil
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	rows := make([]*Price, len(def.order))
	for i, p := range def.order {
		q := *p
		rows[i] = &q
	}
	if cfg.Discount != "" {
		keep, err := parseDiscount(cfg.Discount)
		if err != nil {
			add("discount: %w", err)
		} else {
			for _, p := range rows {
				for d := range p.Rates {
					p.Rates[d] = discounted(p.Rates[d], keep)
				}
			}
		}
	}
	for i, o := range cfg.Prices {
		rows = applyOverride(rows, o, fmt.Sprintf("prices[%d]", i), add)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return newCatalogue(def.asOf, rows), nil
}

// applyOverride applies one override to rows, or reports why it cannot.
func applyOverride(rows []*Price, o PriceOverride, path string, add func(string, ...any)) []*Price {
	bad := false
	problem := func(format string, args ...any) {
		bad = true
		add(format, args...)
	}
	base, scope, ok := "", Regional, false
	switch {
	case o.Model == "":
		problem("%s.model: required", path)
	case strings.HasPrefix(o.Model, "arn:"):
		problem("%s.model: %q is an ARN; give the model or inference profile ID", path, o.Model)
	default:
		if base, scope, ok = splitModel(o.Model); !ok {
			problem("%s.model: %q is not a Bedrock model or inference profile ID", path, o.Model)
		}
	}
	if o.Region != "" {
		if _, known := RegionCode(o.Region); !known {
			problem("%s.region: %q is not a Region this gateway knows the usage-type code of", path, o.Region)
		}
	}
	var set [NumDirections]bool
	var r Rates
	for d, v := range [NumDirections]string{o.Input, o.Output, o.CacheRead, o.CacheWrite} {
		if v == "" {
			continue
		}
		rate, err := parsePerMillion(v)
		if err != nil {
			problem("%s.%s: %w", path, yamlDirection[d], err)
			continue
		}
		set[d], r[d] = true, rate
	}
	if o.UsageName != "" && !validUsageName(o.UsageName) {
		problem("%s.usage_name: %q is not a usage-type name (letters, digits, '.', '-', '_', not ending like a direction)", path, o.UsageName)
	}
	if bad {
		return rows
	}

	scopes := []Scope{Regional, Geo, Global}
	if o.Model != base { // a profile ID prices its own scope only
		scopes = []Scope{scope}
	}
	var targets []*Price
	knownName := ""
	for _, p := range rows {
		if p.Model != base {
			continue
		}
		knownName = p.UsageName
		s, _ := parseScope(p.Scope)
		if (o.Region == "" || p.Region == o.Region) && slices.Contains(scopes, s) {
			targets = append(targets, p)
		}
	}
	if len(targets) > 0 {
		if set == [NumDirections]bool{} && o.UsageName == "" {
			add("%s: sets no price and no usage_name", path)
			return rows
		}
		for _, p := range targets {
			for d := range set {
				if set[d] {
					p.Rates[d] = r[d]
				}
			}
			if o.UsageName != "" {
				p.UsageName = o.UsageName
			}
			p.Source = ConfigSource
		}
		return rows
	}

	// An addition: a model, Region or scope the table does not price.
	if !set[Input] {
		problem("%s.input: required to add %s (not in the shipped table for this Region and scope)", path, o.Model)
	}
	if !set[Output] {
		problem("%s.output: required to add %s (not in the shipped table for this Region and scope); \"0\" for an embedding model", path, o.Model)
	}
	name := cmp.Or(o.UsageName, knownName)
	if name == "" {
		problem("%s.usage_name: required to add %s, which the shipped table lacks", path, o.Model)
	}
	if bad {
		return rows
	}
	for _, s := range scopes {
		rows = append(rows, &Price{Model: base, Region: o.Region, Scope: s.String(), Rates: r,
			UsageName: name, Source: ConfigSource})
	}
	return rows
}

// discountScale is the denominator of a discount's kept fraction: a
// percentage with 6 decimals is a whole number of 1e-8ths.
const discountScale = 100_000_000

// parseDiscount reads a percentage off, "12.5", and returns the kept
// fraction of every price, in 1e-8ths (87_500_000 for 12.5%).
func parseDiscount(s string) (uint64, error) {
	m, err := parseMoney(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	if m%1_000_000 != 0 {
		return 0, fmt.Errorf("%q: more than 6 decimal places", s)
	}
	if m < 0 || m >= 100*Dollar {
		return 0, fmt.Errorf("%q: want a percentage from 0 to below 100", s)
	}
	return discountScale - uint64(m/1_000_000), nil
}

// discounted returns rate × keep / discountScale, rounded half to even.
func discounted(rate Money, keep uint64) Money {
	hi, lo := bits.Mul64(uint64(rate), keep) // rate >= 0 and < $9.3 per token: hi < discountScale
	q, rem := bits.Div64(hi, lo, discountScale)
	if 2*rem > discountScale || (2*rem == discountScale && q%2 == 1) {
		q++
	}
	return Money(q)
}
