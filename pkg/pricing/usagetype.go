package pricing

import "strings"

// regionCodes are the prefixes AWS puts on usage types, the same for
// every service (Price List offer files' usagetype attribute; CUR 2.0
// line_item_usage_type). eu-west-1 is the odd one: plain "EU", from before
// Europe had a second Region.
var regionCodes = map[string]string{
	"us-east-1":      "USE1",
	"us-east-2":      "USE2",
	"us-west-1":      "USW1",
	"us-west-2":      "USW2",
	"ca-central-1":   "CAN1",
	"sa-east-1":      "SAE1",
	"eu-west-1":      "EU",
	"eu-west-2":      "EUW2",
	"eu-west-3":      "EUW3",
	"eu-central-1":   "EUC1",
	"eu-central-2":   "EUC2",
	"eu-north-1":     "EUN1",
	"eu-south-1":     "EUS1",
	"eu-south-2":     "EUS2",
	"ap-northeast-1": "APN1",
	"ap-northeast-2": "APN2",
	"ap-northeast-3": "APN3",
	"ap-southeast-1": "APS1",
	"ap-southeast-2": "APS2",
	"ap-south-1":     "APS3",
	"us-gov-west-1":  "UGW1",
	"us-gov-east-1":  "UGE1",
}

// RegionCode returns the usage-type prefix of an AWS Region: "USE1" for
// us-east-1, "EU" for eu-west-1. Regions whose code the package does not
// know return false rather than a guess, since a wrong prefix would never
// match a bill line.
func RegionCode(region string) (string, bool) {
	c, ok := regionCodes[region]
	return c, ok
}

// directionSuffixes are the endings of Bedrock's token usage types, as
// the AmazonBedrock offer file and CUR spell them:
// USE1-NovaLite-input-tokens, USE1-Claude4.6Opus-output-tokens,
// USE1-NovaPro-cache-read-input-token-count,
// USE1-Nova2.0Lite-cache-write-input-token-count.
var directionSuffixes = [NumDirections]string{
	"-input-tokens",
	"-output-tokens",
	"-cache-read-input-token-count",
	"-cache-write-input-token-count",
}

// globalSuffix ends the usage type of a call through a global. profile,
// which AWS prices apart: USE1-Claude4.5Sonnet-input-tokens-cross-region-global.
// In-Region and geographic-profile calls carry no suffix: they share a
// price, and the bill shows them under the plain name.
const globalSuffix = "-cross-region-global"

// RegionCodeOrName is RegionCode, or for a Region without a known code
// its name upper-cased without dashes ("XXNEW1" for xx-new-1): a prefix
// for usage types of Regions the table does not list yet.
func RegionCodeOrName(region string) string {
	if c, ok := RegionCode(region); ok {
		return c
	}
	return strings.ToUpper(strings.ReplaceAll(region, "-", ""))
}

// UsageTypeParts is a Bedrock token usage type taken apart.
type UsageTypeParts struct {
	RegionCode string    // "USE1"
	UsageName  string    // "Claude4.5Sonnet"
	Direction  Direction // Input
	Global     bool      // the call went through a global. profile
}

// String writes the usage type back: "USE1-Claude4.5Sonnet-input-tokens".
func (p UsageTypeParts) String() string {
	s := p.RegionCode + "-" + p.UsageName + directionSuffixes[p.Direction]
	if p.Global {
		s += globalSuffix
	}
	return s
}

// SplitUsageType takes apart a Bedrock token usage type from a bill. It
// refuses what is not one: other services' usage types, batch, flex,
// priority, latency-optimized, long-context, 1-hour cache writes and
// provisioned throughput, which this package does not price, and the
// Marketplace form (USE1-MP:USE1_InputTokenCount-Units), which does not
// name the model.
func SplitUsageType(usageType string) (UsageTypeParts, bool) {
	var p UsageTypeParts
	code, rest, ok := strings.Cut(usageType, "-")
	if !ok || !validRegionCode(code) {
		return p, false
	}
	p.RegionCode = code
	if r, ok := strings.CutSuffix(rest, globalSuffix); ok {
		p.Global, rest = true, r
	}
	for d := NumDirections - 1; d >= 0; d-- { // cache suffixes before the plain ones they end like
		name, ok := strings.CutSuffix(rest, directionSuffixes[d])
		if !ok {
			continue
		}
		if !validUsageName(name) {
			return UsageTypeParts{}, false
		}
		p.UsageName, p.Direction = name, Direction(d)
		return p, true
	}
	return UsageTypeParts{}, false
}

// ParseUsageType is SplitUsageType without the scope: it reads a bill's
// line_item_usage_type into the Region code, the model's usage name and
// the token direction. A global-profile line gives the same name as an
// in-Region one.
func ParseUsageType(usageType string) (regionCode, usageName string, d Direction, ok bool) {
	p, ok := SplitUsageType(usageType)
	if !ok {
		return "", "", 0, false
	}
	return p.RegionCode, p.UsageName, p.Direction, true
}

// validRegionCode accepts the shape of the codes AWS uses: two to four
// capital letters and an optional digit.
func validRegionCode(c string) bool {
	if len(c) < 2 || len(c) > 5 {
		return false
	}
	for i := 0; i < len(c); i++ {
		switch ch := c[i]; {
		case ch >= 'A' && ch <= 'Z':
		case ch >= '0' && ch <= '9' && i == len(c)-1 && i >= 2:
		default:
			return false
		}
	}
	return true
}

// maxUsageNameLen bounds a usage name; AWS's are under 40 characters.
const maxUsageNameLen = 64

// validUsageName accepts the characters AWS's names are made of
// (Claude4.5Sonnet, Llama3-1-405B, zai.glm5) and refuses a name that
// itself ends like a direction or a scope, so every usage type splits one
// way only.
func validUsageName(n string) bool {
	if n == "" || len(n) > maxUsageNameLen || n[0] == '-' || n[len(n)-1] == '-' {
		return false
	}
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	for _, s := range directionSuffixes {
		if strings.HasSuffix(n, s) || strings.HasSuffix(n, strings.TrimSuffix(s, "s")) {
			return false
		}
	}
	return !strings.HasSuffix(n, globalSuffix) && !strings.Contains(n, "--")
}
