package pricing

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/internal/configtest"
)

const sonnet45 = "anthropic.claude-sonnet-4-5-20250929-v1:0"

func mustMoney(t testing.TB, s string) Money {
	t.Helper()
	m, err := ParseMoney(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDefault guards Default's panic: the embedded file parses, is dated,
// and every row cites an AWS source and has a usage type that reads back.
func TestDefault(t *testing.T) {
	if _, err := parseTable(pricesYAML); err != nil {
		t.Fatalf("parseTable(prices.yaml) = %v", err)
	}
	c := Default()
	if got := c.AsOf(); !strings.HasPrefix(got, "2026-") {
		t.Errorf("AsOf() = %q, want a 2026 date", got)
	}
	prices := c.Prices()
	if len(prices) < 100 {
		t.Errorf("Prices() has %d rows, want the whole table", len(prices))
	}
	for _, p := range prices {
		if !strings.HasPrefix(p.Source, "https://aws.amazon.com/bedrock/pricing/") &&
			!strings.HasPrefix(p.Source, "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonBedrock/") {
			t.Errorf("%s %s %s: Source = %q, want an AWS pricing URL", p.Model, p.Region, p.Scope, p.Source)
		}
		if p.Rates[Input] <= 0 {
			t.Errorf("%s %s %s: input rate %v, want > 0", p.Model, p.Region, p.Scope, p.Rates[Input])
		}
		id := p.Model
		switch p.Scope {
		case "geo":
			id = "us." + id
		case "global":
			id = "global." + id
		}
		got, ok := c.Lookup(p.Region, id)
		if !ok || got != p {
			t.Errorf("Lookup(%q, %q) = %+v, %v, want %+v", p.Region, id, got, ok, p)
		}
		for d := range Direction(NumDirections) {
			ut, ok := c.UsageType(p.Region, id, d)
			if !ok {
				t.Errorf("UsageType(%q, %q, %v) = false", p.Region, id, d)
				continue
			}
			code, _ := RegionCode(p.Region)
			parts, ok := SplitUsageType(ut)
			want := UsageTypeParts{RegionCode: code, UsageName: p.UsageName, Direction: d, Global: p.Scope == "global"}
			if !ok || parts != want {
				t.Errorf("SplitUsageType(%q) = %+v, %v, want %+v", ut, parts, ok, want)
			}
			rc, name, dir, ok := ParseUsageType(ut)
			if !ok || rc != code || name != p.UsageName || dir != d {
				t.Errorf("ParseUsageType(%q) = %q, %q, %v, %v", ut, rc, name, dir, ok)
			}
		}
	}
}

func TestParseTableErrors(t *testing.T) {
	bad := `as_of: "soon"
models:
  - id: us.anthropic.x
    usage_name: "Bad-input-tokens"
    prices:
      - {scopes: [regional, sideways], regions: [us-east-1, mars-1], input: "1.0000001", source: "http://x"}
      - {scopes: [regional], regions: [us-east-1], input: "1", source: "https://x"}
`
	_, err := parseTable([]byte(bad))
	if err == nil {
		t.Fatal("parseTable(bad) = nil")
	}
	for _, want := range []string{"as_of", "models[0].id", "models[0].usage_name:", "usage_name_confirmed",
		"prices[0].input", "prices[0].source", "mars-1", "sideways", "also priced"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("parseTable(bad) = %v, want a problem naming %q", err, want)
		}
	}
	if _, err := parseTable([]byte("as_of: 2026-11-30\nunknown: 1\n")); err == nil {
		t.Error("parseTable(unknown key) = nil, want an error")
	}
}

func TestLookupForms(t *testing.T) {
	c := Default()
	tests := []struct {
		region, model string
		scope         string
		input         string // $/MTok, "" = not found
	}{
		{"us-east-1", sonnet45, "regional", "3.3"},
		{"us-east-1", "us." + sonnet45, "geo", "3.3"},
		{"eu-west-1", "eu." + sonnet45, "geo", "3.3"},
		{"ap-northeast-1", "jp." + sonnet45, "geo", "3.3"},
		{"ap-southeast-2", "au." + sonnet45, "geo", "3.3"},
		{"ap-northeast-1", "apac." + sonnet45, "geo", "3.3"},
		{"us-east-1", "global." + sonnet45, "global", "3"},
		{"eu-central-1", "global." + sonnet45, "global", "3"},
		{"us-east-1", "arn:aws:bedrock:us-east-1::foundation-model/" + sonnet45, "regional", "3.3"},
		{"us-west-2", "arn:aws:bedrock:us-west-2:123456789012:inference-profile/us." + sonnet45, "geo", "3.3"},
		{"us-west-2", "arn:aws:bedrock:us-west-2:123456789012:inference-profile/global." + sonnet45, "global", "3"},
		{"us-east-1", "amazon.nova-lite-v1:0", "regional", "0.06"},
		{"ap-northeast-1", "apac.amazon.nova-pro-v1:0", "geo", "0.96"},
		{"us-east-1", "amazon.titan-embed-text-v2:0", "regional", "0.02"},
		// Not priced: unknown model, Region or scope; application
		// profiles; provisioned models; malformed IDs.
		{"us-east-1", "anthropic.claude-nonesuch-v1:0", "", ""},
		{"sa-east-1", sonnet45, "", ""},
		{"us-east-1", "global.amazon.nova-lite-v1:0", "", ""},
		{"us-east-1", "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123", "", ""},
		{"us-east-1", "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123", "", ""},
		{"us-east-1", "arn:aws:bedrock:us-east-1::foundation-model/us." + sonnet45, "", ""},
		{"us-east-1", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/" + sonnet45, "", ""},
		{"us-east-1", "arn:aws:s3:us-east-1::foundation-model/" + sonnet45, "", ""},
		{"us-east-1", "arn:aws:bedrock:us-east-1", "", ""},
		{"us-east-1", "", "", ""},
		{"us-east-1", "us.", "", ""},
		{"us-east-1", "ANTHROPIC.CLAUDE", "", ""},
		{"us-east-1", "anthropic", "", ""},
	}
	for _, tt := range tests {
		p, ok := c.Lookup(tt.region, tt.model)
		if tt.input == "" {
			if ok {
				t.Errorf("Lookup(%q, %q) = %+v, want not found", tt.region, tt.model, p)
			}
			continue
		}
		want := mustMoney(t, tt.input) / 1_000_000
		if !ok || p.Scope != tt.scope || p.Rates[Input] != want || p.Region != tt.region {
			t.Errorf("Lookup(%q, %q) = %+v, %v, want scope %s input $%s/MTok", tt.region, tt.model, p, ok, tt.scope, tt.input)
		}
	}
}

func TestCost(t *testing.T) {
	c := Default()
	tests := []struct {
		name, region, model string
		tokens              Tokens
		want                string // dollars, "" = no price
	}{
		// 1,234 input tokens of Sonnet 4.5 through global. at $3/MTok = $0.003702.
		{"global input", "us-east-1", "global." + sonnet45, Tokens{1234, 0, 0, 0}, "0.003702"},
		// us. profile, geo rates: 1,234 × $3.30 = $0.0040722; 567 × $16.50 =
		// $0.0093555; 10,000 × $0.33 = $0.0033; 2,000 × $4.125 = $0.00825;
		// total $0.0249777.
		{"geo all directions", "us-east-1", "us." + sonnet45, Tokens{1234, 567, 10_000, 2_000}, "0.0249777"},
		// 1M × $0.06 + 500k × $0.24 = $0.06 + $0.12 = $0.18.
		{"nova lite", "us-east-1", "amazon.nova-lite-v1:0", Tokens{1_000_000, 500_000, 0, 0}, "0.18"},
		// 3 cache-read tokens of Nova Micro at $0.00875/MTok = $0.00000002625;
		// cache writes are free.
		{"nova micro cache", "us-west-2", "us.amazon.nova-micro-v1:0", Tokens{0, 0, 3, 1000}, "0.00000002625"},
		// 1,234 × $0.02 = $0.00002468.
		{"titan embeddings v2", "us-east-1", "amazon.titan-embed-text-v2:0", Tokens{1234, 0, 0, 0}, "0.00002468"},
		// Tokyo Nova Pro: 1,000 × $0.96 + 1,000 × $3.84 = $0.0048.
		{"nova pro tokyo", "ap-northeast-1", "amazon.nova-pro-v1:0", Tokens{1000, 1000, 0, 0}, "0.0048"},
		{"zero tokens unknown model", "us-east-1", "nobody.nothing", Tokens{}, "0"},
		{"unknown model", "us-east-1", "nobody.nothing", Tokens{1, 0, 0, 0}, ""},
		{"negative count", "us-east-1", sonnet45, Tokens{-1, 0, 0, 0}, ""},
		{"overflow", "us-east-1", "anthropic.claude-opus-4-1-20250805-v1:0", Tokens{0, 1 << 62, 0, 0}, ""},
	}
	for _, tt := range tests {
		got, ok := c.Cost(tt.region, tt.model, tt.tokens)
		if tt.want == "" {
			if ok {
				t.Errorf("%s: Cost = %v, true, want false", tt.name, got)
			}
			continue
		}
		if want := mustMoney(t, tt.want); !ok || got != want {
			t.Errorf("%s: Cost(%q, %q, %v) = %v, %v, want %v", tt.name, tt.region, tt.model, tt.tokens, got, ok, want)
		}
	}
}

func TestUsageType(t *testing.T) {
	c := Default()
	tests := []struct {
		region, model string
		d             Direction
		want          string
	}{
		{"us-east-1", "us." + sonnet45, Input, "USE1-Claude4.5Sonnet-input-tokens"},
		{"us-east-1", "global." + sonnet45, Output, "USE1-Claude4.5Sonnet-output-tokens-cross-region-global"},
		{"eu-west-1", "eu.anthropic.claude-sonnet-4-6", CacheRead, "EU-Claude4.6Sonnet-cache-read-input-token-count"},
		{"us-east-1", "anthropic.claude-opus-4-6-v1", Output, "USE1-Claude4.6Opus-output-tokens"},
		{"us-east-1", "amazon.nova-lite-v1:0", Input, "USE1-NovaLite-input-tokens"},
		{"ap-northeast-1", "amazon.nova-pro-v1:0", CacheWrite, "APN1-NovaPro-cache-write-input-token-count"},
		{"eu-central-1", "global.amazon.nova-2-lite-v1:0", Input, "EUC1-Nova2.0Lite-input-tokens-cross-region-global"},
	}
	for _, tt := range tests {
		if got, ok := c.UsageType(tt.region, tt.model, tt.d); !ok || got != tt.want {
			t.Errorf("UsageType(%q, %q, %v) = %q, %v, want %q", tt.region, tt.model, tt.d, got, ok, tt.want)
		}
	}
	if got, ok := c.UsageType("us-east-1", "nobody.nothing", Input); ok {
		t.Errorf("UsageType(unknown) = %q, true", got)
	}
	if got, ok := c.UsageType("us-east-1", sonnet45, Direction(7)); ok {
		t.Errorf("UsageType(direction 7) = %q, true", got)
	}
}

func TestRegionCode(t *testing.T) {
	for region, want := range map[string]string{"us-east-1": "USE1", "us-west-2": "USW2", "eu-west-1": "EU",
		"eu-central-1": "EUC1", "ap-northeast-1": "APN1", "ap-southeast-2": "APS2", "ap-south-1": "APS3"} {
		if got, ok := RegionCode(region); !ok || got != want {
			t.Errorf("RegionCode(%q) = %q, %v, want %q", region, got, ok, want)
		}
	}
	if got, ok := RegionCode("mars-north-1"); ok {
		t.Errorf("RegionCode(mars-north-1) = %q, true", got)
	}
}

func TestParseUsageType(t *testing.T) {
	tests := []struct {
		in   string
		want UsageTypeParts
		ok   bool
	}{
		{"USE1-Claude4.6Sonnet-input-tokens", UsageTypeParts{"USE1", "Claude4.6Sonnet", Input, false}, true},
		{"USE1-Claude4.6Opus-output-tokens", UsageTypeParts{"USE1", "Claude4.6Opus", Output, false}, true},
		{"EU-NovaLite-input-tokens", UsageTypeParts{"EU", "NovaLite", Input, false}, true},
		{"USE1-NovaPro-cache-read-input-token-count", UsageTypeParts{"USE1", "NovaPro", CacheRead, false}, true},
		{"USE1-Nova2.0Lite-cache-write-input-token-count", UsageTypeParts{"USE1", "Nova2.0Lite", CacheWrite, false}, true},
		{"USE1-Claude4Sonnet-input-tokens-cross-region-global", UsageTypeParts{"USE1", "Claude4Sonnet", Input, true}, true},
		{"USE1-Llama3-1-405B-output-tokens", UsageTypeParts{"USE1", "Llama3-1-405B", Output, false}, true},
		{"APN1-zai.glm5-input-tokens", UsageTypeParts{"APN1", "zai.glm5", Input, false}, true},
		// Not token usage this package prices.
		{"USE1-Llama3-1-405B-output-tokens-batch", UsageTypeParts{}, false},
		{"USE1-NovaPro-input-tokens-latency-optimized", UsageTypeParts{}, false},
		{"USE1-Claude4Sonnet-cache-write-input-token-count-1-hour", UsageTypeParts{}, false},
		{"USE1-MP:USE1_InputTokenCount-Units", UsageTypeParts{}, false},
		{"USE1-anthropic.claude-haiku-4-5-mantle-input-tokens-standard", UsageTypeParts{}, false},
		{"USE1-DataTransfer-Out-Bytes", UsageTypeParts{}, false},
		{"use1-NovaLite-input-tokens", UsageTypeParts{}, false},
		{"USE1--input-tokens", UsageTypeParts{}, false},
		{"USE1-input-tokens", UsageTypeParts{}, false},
		{"", UsageTypeParts{}, false},
	}
	for _, tt := range tests {
		got, ok := SplitUsageType(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("SplitUsageType(%q) = %+v, %v, want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if ok && got.String() != tt.in {
			t.Errorf("SplitUsageType(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestNewOverrides(t *testing.T) {
	cfg := Config{
		Discount: "12.5",
		Prices: []PriceOverride{
			// Every Region and scope of Sonnet 4.5: input only.
			{Model: sonnet45, Input: "2"},
			// Only the global profile of Sonnet 4.6 in eu-west-1.
			{Model: "global.anthropic.claude-sonnet-4-6", Region: "eu-west-1", Output: "10", UsageName: "Claude4.6SonnetX"},
			// A model the table lacks, everywhere.
			{Model: "acme.widget-v1:0", Input: "1", Output: "2", CacheRead: "0.1", UsageName: "AcmeWidget"},
			// A shipped model in a Region the table lacks: the usage name is known.
			{Model: "amazon.nova-lite-v1:0", Region: "eu-west-2", Input: "0.078", Output: "0.312"},
		},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	perToken := func(s string) Money { return mustMoney(t, s) / 1_000_000 }
	check := func(region, model string, want Price) {
		t.Helper()
		got, ok := c.Lookup(region, model)
		if !ok {
			t.Errorf("Lookup(%q, %q) = not found", region, model)
			return
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Lookup(%q, %q) mismatch (-want +got):\n%s", region, model, diff)
		}
	}
	// Overridden input, discounted (12.5% off) shipped output and cache:
	// $16.50 → $14.4375, $0.33 → $0.28875, $4.125 → $3.609375.
	check("us-east-1", "us."+sonnet45, Price{Model: sonnet45, Region: "us-east-1", Scope: "geo",
		Rates:     Rates{perToken("2"), perToken("14.4375"), perToken("0.28875"), perToken("3.609375")},
		UsageName: "Claude4.5Sonnet", Source: ConfigSource})
	check("eu-west-1", "global.anthropic.claude-sonnet-4-6", Price{Model: "anthropic.claude-sonnet-4-6", Region: "eu-west-1",
		Scope: "global", Rates: Rates{perToken("2.625"), perToken("10"), perToken("0.2625"), perToken("3.28125")},
		UsageName: "Claude4.6SonnetX", Source: ConfigSource})
	// The eu. profile in the same Region is untouched but discounted.
	if p, _ := c.Lookup("eu-west-1", "eu.anthropic.claude-sonnet-4-6"); p.Rates[Output] != perToken("14.4375") || p.UsageName != "Claude4.6Sonnet" {
		t.Errorf("eu. Sonnet 4.6 = %+v, want the discounted shipped row", p)
	}
	check("sa-east-1", "acme.widget-v1:0", Price{Model: "acme.widget-v1:0", Region: "sa-east-1", Scope: "regional",
		Rates: Rates{perToken("1"), perToken("2"), perToken("0.1"), 0}, UsageName: "AcmeWidget", Source: ConfigSource})
	if ut, ok := c.UsageType("eu-west-1", "global.acme.widget-v1:0", Input); !ok || ut != "EU-AcmeWidget-input-tokens-cross-region-global" {
		t.Errorf("UsageType(added model) = %q, %v", ut, ok)
	}
	check("eu-west-2", "amazon.nova-lite-v1:0", Price{Model: "amazon.nova-lite-v1:0", Region: "eu-west-2", Scope: "regional",
		Rates: Rates{perToken("0.078"), perToken("0.312"), 0, 0}, UsageName: "NovaLite", Source: ConfigSource})
	// The shipped table is untouched.
	if p, _ := Default().Lookup("us-east-1", "us."+sonnet45); p.Rates[Input] != perToken("3.3") {
		t.Errorf("Default() changed: %+v", p)
	}
	// The zero Config is the shipped table.
	if c0, err := New(Config{}); err != nil || c0 != Default() {
		t.Errorf("New(Config{}) = %p, %v, want Default()", c0, err)
	}
}

func TestDiscountRounding(t *testing.T) {
	// 12.5% off $0.00875/MTok (8,750 picodollars a token) is 7,656.25:
	// rounded to 7,656.
	if got := discounted(8_750, 87_500_000); got != 7_656 {
		t.Errorf("discounted(8750, 87.5%%) = %d, want 7656", got)
	}
	// Half to even: 10% off 5 picodollars is 4.5 → 4; off 15 it is 13.5 → 14.
	if got := discounted(5, 90_000_000); got != 4 {
		t.Errorf("discounted(5, 90%%) = %d, want 4", got)
	}
	if got := discounted(15, 90_000_000); got != 14 {
		t.Errorf("discounted(15, 90%%) = %d, want 14", got)
	}
}

func TestValidate(t *testing.T) {
	cfg := Config{
		Discount: "100",
		Prices: []PriceOverride{
			{Model: "", Input: "1"},
			{Model: "arn:aws:bedrock:us-east-1::foundation-model/" + sonnet45, Input: "1"},
			{Model: sonnet45, Region: "mars-1", Input: "1e3", CacheWrite: "0.0000001"},
			{Model: "acme.new-v1:0", Input: "1"},
			{Model: sonnet45},
			{Model: sonnet45, UsageName: "Bad Name"},
			{Model: sonnet45, Output: "-1"},
		},
	}
	err := cfg.Validate()
	configtest.Problems(t, err, []string{
		"discount:",
		"prices[0].model: required",
		"prices[1].model:",
		"prices[2].region:",
		"prices[2].input:",
		"prices[2].cache_write:",
		"prices[3].output: required",
		"prices[3].usage_name: required",
		"prices[4]: sets no price",
		"prices[5].usage_name:",
		"prices[6].output:",
	})
	_, newErr := New(cfg)
	if newErr == nil {
		t.Fatal("New(bad) = nil error")
	}
	joined, ok := newErr.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 11 {
		t.Fatalf("New(bad) = %v, want 11 joined problems", newErr)
	}
	for _, e := range joined.Unwrap() {
		if !strings.HasPrefix(e.Error(), "pricing.") {
			t.Errorf("New problem %q, want the pricing. prefix", e)
		}
	}
	if !errors.Is(newErr, errMoneySyntax) {
		t.Errorf("New(bad) does not wrap the syntax error: %v", newErr)
	}
	if err := (Config{Discount: "0"}).Validate(); err != nil {
		t.Errorf("Validate(discount 0) = %v", err)
	}
}

func TestLookupCostAllocs(t *testing.T) {
	c := Default()
	model := "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us." + sonnet45
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := c.Cost("us-east-1", model, Tokens{1234, 567, 10, 2}); !ok {
			t.Fatal("Cost = false")
		}
	})
	if allocs != 0 {
		t.Errorf("Lookup+Cost allocates %v times per call, want 0", allocs)
	}
}

func BenchmarkLookupCost(b *testing.B) {
	c := Default()
	models := []string{sonnet45, "global." + sonnet45,
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us." + sonnet45, "amazon.nova-lite-v1:0"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := c.Cost("us-east-1", models[i%len(models)], Tokens{1234, 567, 10, 2}); !ok {
			b.Fatal("Cost = false")
		}
		i++
	}
}

// FuzzLookup feeds Lookup and UsageType client-supplied model names: no
// panic, and whatever is found has a usage type that reads back.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{sonnet45, "us." + sonnet45, "global." + sonnet45,
		"arn:aws:bedrock:us-east-1::foundation-model/" + sonnet45,
		"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us." + sonnet45,
		"arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/x", "arn:", "us.", "."} {
		f.Add("us-east-1", s)
	}
	c := Default()
	f.Fuzz(func(t *testing.T, region, model string) {
		p, ok := c.Lookup(region, model)
		if !ok {
			return
		}
		if p.Region != region {
			t.Fatalf("Lookup(%q, %q).Region = %q", region, model, p.Region)
		}
		ut, ok := c.UsageType(region, model, Output)
		if !ok {
			return
		}
		if _, name, d, ok := ParseUsageType(ut); !ok || name != p.UsageName || d != Output {
			t.Fatalf("ParseUsageType(%q) = %q, %v, %v", ut, name, d, ok)
		}
	})
}

// FuzzSplitUsageType checks that whatever SplitUsageType accepts, String
// writes back unchanged: a bill line maps to one usage name only.
func FuzzSplitUsageType(f *testing.F) {
	for _, s := range []string{"USE1-Claude4.6Sonnet-input-tokens", "EU-NovaPro-cache-read-input-token-count",
		"USE1-Claude4Sonnet-input-tokens-cross-region-global", "USE1-MP:USE1_InputTokenCount-Units",
		"USE1-X-input-tokens-output-tokens", "A-B-input-tokens"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := SplitUsageType(s)
		if !ok {
			return
		}
		if got := p.String(); got != s {
			t.Fatalf("SplitUsageType(%q).String() = %q", s, got)
		}
	})
}
