package fakeaws

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// BillLine is one line of the emulated CUR 2.0 bill: what one IAM
// principal used of one usage type on one UTC day, with one set of tags,
// and what it cost. Unlike BillingRow (the fake's own compact view, named
// by model ID), its usage types are the bill's own names from the price
// catalogue ("USE1-Claude4.5Sonnet-input-tokens", with
// "-cross-region-global" for global profiles) and its cost is the
// catalogue's on-demand price: what AWS would bill for the same calls.
// A model the catalogue does not know keeps the fake's name
// ("USE1-<modelId>-input-tokens") and costs 0, Priced false.
type BillLine struct {
	Day          time.Time // UTC midnight
	Account      string
	IAMPrincipal string
	UsageType    string
	Operation    string // line_item_operation, e.g. "Converse"
	Direction    pricing.Direction
	UsageAmount  int64
	Cost         pricing.Money
	Priced       bool
	Tags         map[string]string // "iamPrincipal/" keys
}

type dailyKey struct {
	day                          time.Time
	principal, usage, op, tagKey string
}

// addBillLines adds inv's tokens to the daily bill lines. s.mu is held.
func (s *Server) addBillLines(inv Invocation, tags map[string]string, tagKey string) {
	if inv.ModelID == "" {
		return
	}
	cat := pricing.Default()
	day := inv.Time.UTC().Truncate(24 * time.Hour)
	n := pricing.Tokens{inv.InputTokens, inv.OutputTokens, inv.CacheReadTokens, inv.CacheWriteTokens}
	for d := range pricing.Direction(pricing.NumDirections) {
		if n[d] == 0 {
			continue
		}
		usage, known := cat.UsageType(s.opts.Region, inv.ModelID, d)
		if !known {
			usage = regionCode(s.opts.Region) + "-" + inv.ModelID + "-" + fakeDirection[d]
		}
		k := dailyKey{day, inv.PrincipalARN, usage, inv.Operation, tagKey}
		line := s.daily[k]
		if line == nil {
			line = &BillLine{Day: day, Account: s.opts.AccountID, IAMPrincipal: inv.PrincipalARN, UsageType: usage,
				Operation: inv.Operation, Direction: d, Priced: known, Tags: maps.Clone(tags)}
			s.daily[k] = line
		}
		line.UsageAmount += n[d]
		if known {
			var one pricing.Tokens
			one[d] = n[d]
			c, _ := cat.Cost(s.opts.Region, inv.ModelID, one)
			line.Cost, _ = line.Cost.Add(c)
		}
	}
}

// fakeDirection names directions in the fake's own usage types.
var fakeDirection = [pricing.NumDirections]string{"input-tokens", "output-tokens", "cache-read-input-tokens", "cache-write-input-tokens"}

// BillLines returns the emulated bill's token lines, sorted by day,
// principal, usage type, operation and tags. ApplyGuardrail's text units
// are not in it: the catalogue prices tokens only.
func (s *Server) BillLines() []BillLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := slices.SortedFunc(maps.Keys(s.daily), func(a, b dailyKey) int {
		if c := a.day.Compare(b.day); c != 0 {
			return c
		}
		for _, c := range []int{strings.Compare(a.principal, b.principal), strings.Compare(a.usage, b.usage),
			strings.Compare(a.op, b.op), strings.Compare(a.tagKey, b.tagKey)} {
			if c != 0 {
				return c
			}
		}
		return 0
	})
	out := make([]BillLine, len(keys))
	for i, k := range keys {
		out[i] = *s.daily[k]
		out[i].Tags = maps.Clone(out[i].Tags)
	}
	return out
}
