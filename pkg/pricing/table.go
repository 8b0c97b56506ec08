package pricing

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The shape of prices.yaml; the file's header comment documents it.
type tableFile struct {
	AsOf    string              `yaml:"as_of"`
	Regions map[string][]string `yaml:"regions"` // named lists, for YAML anchors
	Sources map[string]string   `yaml:"sources"` // named URLs, for YAML anchors
	Models  []tableModel        `yaml:"models"`
}

type tableModel struct {
	ID                 string       `yaml:"id"`
	UsageName          string       `yaml:"usage_name"`
	UsageNameConfirmed *bool        `yaml:"usage_name_confirmed"`
	Prices             []tablePrice `yaml:"prices"`
}

type tablePrice struct {
	Scopes     []string `yaml:"scopes"`
	Regions    []string `yaml:"regions"`
	Input      string   `yaml:"input"`
	Output     string   `yaml:"output"`
	CacheRead  string   `yaml:"cache_read"`
	CacheWrite string   `yaml:"cache_write"`
	Source     string   `yaml:"source"`
}

// parseTable reads a price table in the prices.yaml format, refusing
// unknown keys and reporting every problem it finds.
func parseTable(data []byte) (*Catalogue, error) {
	var f tableFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := time.Parse(time.DateOnly, f.AsOf); err != nil {
		add("as_of: want a date like 2026-11-30, got %q", f.AsOf)
	}
	if len(f.Models) == 0 {
		add("models: empty")
	}
	var rows []*Price
	seen := map[rowKey]string{}
	for i, m := range f.Models {
		path := fmt.Sprintf("models[%d]", i)
		if base, s, ok := splitModel(m.ID); !ok || s != Regional || base != m.ID {
			add("%s.id: %q is not a base model ID", path, m.ID)
		}
		if !validUsageName(m.UsageName) {
			add("%s.usage_name: %q is not a usage-type name", path, m.UsageName)
		}
		if m.UsageNameConfirmed == nil {
			add("%s.usage_name_confirmed: required (true only if AWS material shows the name)", path)
		}
		if len(m.Prices) == 0 {
			add("%s.prices: empty", path)
		}
		for j, tp := range m.Prices {
			ppath := fmt.Sprintf("%s.prices[%d]", path, j)
			var r Rates
			for d, v := range [NumDirections]string{tp.Input, tp.Output, tp.CacheRead, tp.CacheWrite} {
				if v == "" && Direction(d) != Input {
					continue // $0: no such tokens, or free
				}
				rate, err := parsePerMillion(v)
				if err != nil {
					add("%s.%s: %w", ppath, yamlDirection[d], err)
				}
				r[d] = rate
			}
			if !strings.HasPrefix(tp.Source, "https://") {
				add("%s.source: want an https URL, got %q", ppath, tp.Source)
			}
			if len(tp.Scopes) == 0 || len(tp.Regions) == 0 {
				add("%s: scopes and regions are required", ppath)
			}
			for _, region := range tp.Regions {
				if _, ok := RegionCode(region); !ok {
					add("%s.regions: %q has no usage-type code", ppath, region)
				}
			}
			for _, name := range tp.Scopes {
				s, ok := parseScope(name)
				if !ok {
					add("%s.scopes: %q is not regional, geo or global", ppath, name)
					continue
				}
				for _, region := range tp.Regions {
					k := rowKey{region, m.ID, s}
					if prev, dup := seen[k]; dup {
						add("%s: %s %s %s is also priced at %s", ppath, m.ID, region, name, prev)
						continue
					}
					seen[k] = ppath
					rows = append(rows, &Price{Model: m.ID, Region: region, Scope: s.String(),
						Rates: r, UsageName: m.UsageName, Source: tp.Source})
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return newCatalogue(f.AsOf, rows), nil
}

// yamlDirection names each direction's price field in prices.yaml and in
// the gateway config.
var yamlDirection = [NumDirections]string{"input", "output", "cache_read", "cache_write"}

var errPerMillionPrecise = errors.New("more than 6 decimal places (a price per million tokens must be a whole number of picodollars per token)")

// parsePerMillion reads a price in dollars per million tokens, "3" or
// "0.035", and returns the price of one token. Six decimals is the most
// that divides exactly into picodollars per token.
func parsePerMillion(s string) (Money, error) {
	m, err := parseMoney(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	if m < 0 {
		return 0, fmt.Errorf("%q: negative", s)
	}
	if m%1_000_000 != 0 {
		return 0, fmt.Errorf("%q: %w", s, errPerMillionPrecise)
	}
	// ParseMoney's bound ($9.2 million) keeps the per-token rate under
	// $9.3, and perMillionString's product within Money.
	return m / 1_000_000, nil
}

// perMillionString writes a per-token rate as dollars per million tokens,
// as the data file and the config spell prices.
func perMillionString(r Money) string { return (r * 1_000_000).String() }
