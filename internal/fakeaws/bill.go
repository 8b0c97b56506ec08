package fakeaws

import (
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/cur"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// BillLine is one line of the emulated CUR 2.0 bill: what one IAM
// principal used of one usage type on one UTC day, with one set of tags,
// and what it cost. Unlike BillingRow (the fake's own compact view, named
// by model ID), its usage types are the bill's own names from the price
// catalogue ("USE1-Claude4.5Sonnet-input-tokens", with
// "-cross-region-global" for global profiles) and its cost is the
// catalogue's on-demand price: what AWS would bill for the same calls.
// A model the catalogue does not know is named by its ID
// (pricing.Catalogue.UsageTypeOrID: "USE1-<modelId>-input-tokens") and
// costs 0, Priced false.
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
	price, known := cat.Lookup(s.opts.Region, inv.ModelID)
	day := inv.Time.UTC().Truncate(24 * time.Hour)
	n := pricing.Tokens{inv.InputTokens, inv.OutputTokens, inv.CacheReadTokens, inv.CacheWriteTokens}
	for d := range pricing.Direction(pricing.NumDirections) {
		if n[d] == 0 {
			continue
		}
		usage := cat.UsageTypeOrID(s.opts.Region, inv.ModelID, d)
		k := dailyKey{day, inv.PrincipalARN, usage, inv.Operation, tagKey}
		line := s.daily[k]
		if line == nil {
			line = &BillLine{Day: day, Account: s.opts.AccountID, IAMPrincipal: inv.PrincipalARN, UsageType: usage,
				Operation: inv.Operation, Direction: d, Priced: known, Tags: maps.Clone(tags)}
			s.daily[k] = line
		}
		line.UsageAmount += n[d]
		if known {
			c, _ := price.Rates[d].Times(n[d])
			line.Cost, _ = line.Cost.Add(c)
		}
	}
}

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

// CURLines is the emulated bill as CUR 2.0 line items (pkg/cur), one per
// BillLine: daily Usage lines of product AmazonBedrock with the session
// tags in the tags column, as a Data Export with IAM principal data holds
// them once the tags are activated.
func (s *Server) CURLines() []cur.Line {
	lines := s.BillLines()
	out := make([]cur.Line, len(lines))
	for i, l := range lines {
		period := time.Date(l.Day.Year(), l.Day.Month(), 1, 0, 0, 0, 0, time.UTC)
		out[i] = cur.Line{
			BillingPeriod: period, UsageStart: l.Day, UsageEnd: l.Day.AddDate(0, 0, 1),
			Account: l.Account, ProductCode: "AmazonBedrock", ProductName: "Amazon Bedrock", BillingEntity: "AWS",
			LineItemType: "Usage", Principal: l.IAMPrincipal, UsageType: l.UsageType, Operation: l.Operation,
			UsageAmount: cur.QuantityOf(l.UsageAmount), UnblendedCost: l.Cost, Currency: "USD", Tags: l.Tags,
		}
	}
	return out
}

// CURHandler serves the emulated bill as a CUR 2.0 export file:
// ?format=parquet (the default, as AWS writes Data Exports) or csv.
// `gateway dev` serves it as /_dev/cur so that `gateway reconcile` can be
// tried on it.
func (s *Server) CURHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lines := s.CURLines()
		switch r.URL.Query().Get("format") {
		case "", "parquet":
			w.Header().Set("Content-Type", "application/vnd.apache.parquet")
			w.Header().Set("Content-Disposition", `attachment; filename="cur2-emulated.parquet"`)
			_ = cur.WriteParquet(w, lines)
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="cur2-emulated.csv"`)
			_ = cur.WriteCSV(w, lines)
		default:
			http.Error(w, "format must be parquet or csv", http.StatusBadRequest)
		}
	})
}
