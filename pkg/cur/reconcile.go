package cur

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// Expected is what the gateway's ledger says one principal used, for one
// usage type, on one UTC day.
type Expected struct {
	Principal string        // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
	UsageType string        // as the bill names it (the lead maps model+region+direction to it)
	Day       time.Time     // UTC midnight
	Amount    int64         // tokens
	Cost      pricing.Money // catalogue cost; may be unknown -> CostKnown false
	CostKnown bool
	// Tags are the session tags the gateway sent, keys already prefixed
	// "iamPrincipal/".
	Tags map[string]string
	// LastSeen is the time of the newest request in this group; zero
	// means the end of Day.
	LastSeen time.Time
}

// Options tune Reconcile. The zero value compares exactly, derives the
// gateway's roles from expected, and allows DefaultBillLag.
type Options struct {
	// TokenTolerance is how far, relative to the ledger's amount, the
	// billed amount of a group may differ before it is a mismatch:
	// 0.01 allows 1%. The edge is allowed. Default 0: exact.
	TokenTolerance float64
	// CostTolerance is how far, in dollars, the billed cost of a group
	// may differ from the ledger's catalogue cost. Default 0: exact.
	CostTolerance pricing.Money
	// GatewayRoles are the roles whose sessions are the gateway's, as
	// role names ("BedrockRole", any account) or role ARNs
	// ("arn:aws:iam::123456789012:role/path/BedrockRole"). Bedrock usage
	// billed to any other principal is a bypass. Empty means the roles
	// of the expected principals.
	GatewayRoles []string
	// BillLag is how far behind its newest usage line the bill may still
	// be incomplete: AWS delivers CUR data within about a day and revises
	// the latest hours as late usage is processed. Ledger usage newer
	// than the newest line minus BillLag is listed as not billed yet, not
	// compared. Zero means DefaultBillLag; use a tiny positive value
	// (time.Nanosecond) to compare everything the bill reaches.
	BillLag time.Duration
	// Since is where the ledger's record begins: gateway usage billed
	// before it is not compared (the ledger cannot know it), though it
	// is still checked for bypass. Zero means the earliest day of
	// expected.
	Since time.Time
	// Now stamps the report. Reconcile never reads the clock.
	Now time.Time
}

// DefaultBillLag is the BillLag used when Options leaves it zero: AWS
// updates CUR data up to three times a day and says data for a day can
// take 24 hours to arrive.
const DefaultBillLag = 24 * time.Hour

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if math.IsNaN(o.TokenTolerance) || math.IsInf(o.TokenTolerance, 0) || o.TokenTolerance < 0 {
		errs = append(errs, fmt.Errorf("token tolerance: must be a fraction ≥ 0, got %v", o.TokenTolerance))
	}
	if o.CostTolerance < 0 {
		errs = append(errs, fmt.Errorf("cost tolerance: must be ≥ 0, got %s", o.CostTolerance))
	}
	if o.BillLag < 0 {
		errs = append(errs, fmt.Errorf("bill lag: must be ≥ 0, got %s", o.BillLag))
	}
	for i, r := range o.GatewayRoles {
		if _, err := parseRole(r); err != nil {
			errs = append(errs, fmt.Errorf("gateway roles[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Report is the outcome of Reconcile. Findings are sorted by principal,
// day and usage type, so that two runs over the same inputs compare
// equal.
type Report struct {
	GeneratedAt time.Time `json:"generated_at,omitzero"`
	Coverage    Coverage  `json:"coverage"`
	Summary     Summary   `json:"summary"`
	// Bypasses, MissingTags and Mismatches are failures; NotBilledYet is
	// informational.
	Bypasses     []Bypass       `json:"bypasses"`
	MissingTags  []MissingTags  `json:"missing_tags"`
	Mismatches   []Mismatch     `json:"mismatches"`
	NotBilledYet []NotBilledYet `json:"not_billed_yet"`
	// Warnings are conditions that make the comparison less certain
	// without being findings, such as lines spanning several days.
	Warnings []string `json:"warnings,omitempty"`
}

// OK reports whether the bill and the ledger agree: nobody used Bedrock
// around the gateway, the bill carries the tags the gateway sent, and
// every settled group matches within tolerance.
func (r Report) OK() bool {
	return len(r.Bypasses) == 0 && len(r.MissingTags) == 0 && len(r.Mismatches) == 0
}

// Exit codes for a reconciliation command.
const (
	ExitOK       = 0 // the bill and the ledger agree
	ExitFindings = 1 // Report.OK is false
	ExitBadInput = 2 // a bill or the ledger could not be read, or bad options
)

// ExitCode is the exit status of a command that printed r: ExitOK or
// ExitFindings. A command that could not build a report exits
// ExitBadInput.
func ExitCode(r Report) int {
	if r.OK() {
		return ExitOK
	}
	return ExitFindings
}

// Coverage says how far the bill reaches and what was compared.
type Coverage struct {
	// NewestUsage is the latest end of a usage line in the bill (any
	// service): how far AWS has processed usage.
	NewestUsage time.Time `json:"newest_usage,omitzero"`
	// Cutoff is NewestUsage minus the bill lag: ledger groups whose
	// newest request is before it are compared, later ones are not
	// billed yet.
	Cutoff  time.Time     `json:"cutoff,omitzero"`
	BillLag time.Duration `json:"bill_lag_ns"`
	// Since is where the ledger begins.
	Since time.Time `json:"since,omitzero"`
}

// Summary totals the bill and the ledger.
type Summary struct {
	// BedrockLines counts the bill's Bedrock usage lines; BilledCost is
	// their cost, split into the gateway's sessions and bypasses.
	BedrockLines      int           `json:"bedrock_lines"`
	BilledCost        pricing.Total `json:"billed_cost_usd"`
	GatewayBilledCost pricing.Total `json:"gateway_billed_cost_usd"`
	BypassCost        pricing.Total `json:"bypass_cost_usd"`
	// Unattributed counts Bedrock usage lines with no IAM principal and
	// their cost: usage that is not an inference call (provisioned
	// throughput, custom model storage) or predates IAM principal data
	// (2026-04-08). They are not compared.
	UnattributedLines int           `json:"unattributed_lines"`
	UnattributedCost  pricing.Total `json:"unattributed_cost_usd"`
	// BeforeSince is the gateway sessions' billed cost before
	// Coverage.Since, which is not compared.
	BeforeSince pricing.Total `json:"before_since_cost_usd"`
	// LedgerCost is the ledger's catalogue cost where known;
	// LedgerCostUnknown counts groups whose cost is not.
	LedgerCost        pricing.Total `json:"ledger_cost_usd"`
	LedgerCostUnknown int           `json:"ledger_cost_unknown_groups"`
	// OtherCharges are Bedrock lines that are not usage (Tax, Credit,
	// Refund, discounts, ...), by line item type. They are not compared:
	// the ledger knows catalogue prices, not taxes or credits.
	OtherCharges []Charge `json:"other_charges"`
	// Groups counts (principal, usage type, day) groups: compared, and
	// of those matched within tolerance.
	GroupsCompared int `json:"groups_compared"`
	GroupsMatched  int `json:"groups_matched"`
	// Principals has one entry per principal in the bill or the ledger.
	Principals []PrincipalSummary `json:"principals"`
}

// Charge is the total of one line item type.
type Charge struct {
	LineItemType string        `json:"line_item_type"`
	Lines        int           `json:"lines"`
	Cost         pricing.Total `json:"cost_usd"`
}

// PrincipalSummary totals one principal.
type PrincipalSummary struct {
	Principal string `json:"principal"`
	// Gateway is true for the gateway's sessions.
	Gateway    bool          `json:"gateway"`
	BilledCost pricing.Total `json:"billed_cost_usd"`
	LedgerCost pricing.Total `json:"ledger_cost_usd"`
	// LedgerCostKnown is false when some of the principal's ledger
	// groups have no price.
	LedgerCostKnown bool `json:"ledger_cost_known"`
	Findings        int  `json:"findings"`
	NotBilledYet    int  `json:"not_billed_yet"`
}

// Bypass is Bedrock usage billed to a principal that is not one of the
// gateway's sessions: an IAM user or Bedrock API key, another role, or
// the gateway's own credentials used directly.
type Bypass struct {
	Principal string `json:"principal"`
	// Kind is what the principal is: "iam-user" (which includes Bedrock
	// API keys), "assumed-role", "federated-user", "root" or "other".
	Kind       string        `json:"kind"`
	Accounts   []string      `json:"accounts"`
	UsageTypes []UsageAmount `json:"usage_types"`
	Lines      int           `json:"lines"`
	Cost       pricing.Total `json:"cost_usd"`
	FirstDay   time.Time     `json:"first_day"`
	LastDay    time.Time     `json:"last_day"`
	// Rows are up to 10 of the bill lines, as "path:row".
	Rows []string `json:"rows"`
}

// UsageAmount is what was billed for one usage type.
type UsageAmount struct {
	UsageType string        `json:"usage_type"`
	Amount    Quantity      `json:"amount"`
	Cost      pricing.Total `json:"cost_usd"`
}

// MissingTags is a gateway session billed without the session tags the
// gateway sent, or with other values. The usual cause is that the keys
// were not activated as cost allocation tags (Billing console, Cost
// allocation tags, IAM category), or were activated after the usage.
type MissingTags struct {
	Principal string `json:"principal"`
	// Missing are keys the gateway sent that the bill does not carry.
	Missing []string `json:"missing"`
	// Differing are keys the bill carries with another value.
	Differing []TagDiff `json:"differing"`
	// Lines and Cost are the billed lines affected and their cost.
	Lines    int           `json:"lines"`
	Cost     pricing.Total `json:"cost_usd"`
	FirstDay time.Time     `json:"first_day"`
	LastDay  time.Time     `json:"last_day"`
	Rows     []string      `json:"rows"`
}

// TagDiff is one tag billed with another value than the gateway sent.
type TagDiff struct {
	Key    string `json:"key"`
	Sent   string `json:"sent"`
	Billed string `json:"billed"`
}

// MismatchKind says how a group's bill and ledger disagree.
type MismatchKind string

const (
	// NotInLedger: the bill has usage of a gateway session that the
	// ledger does not (usage that went around the gateway's metering, or
	// a ledger that lost records).
	NotInLedger MismatchKind = "not-in-ledger"
	// NotBilled: the ledger has settled usage the bill does not.
	NotBilled MismatchKind = "not-billed"
	// Differs: both have the group, with amounts or costs beyond
	// tolerance.
	Differs MismatchKind = "differs"
)

// Mismatch is a settled (principal, usage type, day) group whose billed
// tokens or cost differ from the ledger's beyond tolerance.
type Mismatch struct {
	Principal string       `json:"principal"`
	UsageType string       `json:"usage_type"`
	Day       time.Time    `json:"day"`
	Kind      MismatchKind `json:"kind"`

	LedgerAmount int64    `json:"ledger_amount"`
	BilledAmount Quantity `json:"billed_amount"`
	// AmountDiff is billed minus ledger; AmountOff says it is beyond the
	// token tolerance.
	AmountDiff Quantity `json:"amount_diff"`
	AmountOff  bool     `json:"amount_off"`

	LedgerCost pricing.Total `json:"ledger_cost_usd"`
	// CostKnown is false when the ledger has no price for the group, in
	// which case only tokens are compared.
	CostKnown  bool          `json:"cost_known"`
	BilledCost pricing.Total `json:"billed_cost_usd"`
	// CostDiff is billed minus ledger; CostOff says it is beyond the
	// cost tolerance.
	CostDiff pricing.Total `json:"cost_diff_usd"`
	CostOff  bool          `json:"cost_off"`

	// UnknownSession is true when the ledger has no usage of this
	// principal at all: a session of the gateway's role that the
	// gateway did not create.
	UnknownSession bool `json:"unknown_session"`
	// Rows are up to 10 of the bill lines, as "path:row".
	Rows []string `json:"rows"`
}

// NotBilledYet is ledger usage the bill cannot contain yet, because it is
// newer than the bill's coverage less its lag. It is not a failure.
type NotBilledYet struct {
	Principal    string        `json:"principal"`
	UsageType    string        `json:"usage_type"`
	Day          time.Time     `json:"day"`
	LedgerAmount int64         `json:"ledger_amount"`
	LedgerCost   pricing.Total `json:"ledger_cost_usd"`
	CostKnown    bool          `json:"cost_known"`
	// BilledAmount and BilledCost are what the bill has so far.
	BilledAmount Quantity      `json:"billed_amount"`
	BilledCost   pricing.Total `json:"billed_cost_usd"`
	LastSeen     time.Time     `json:"last_seen"`
}

// maxRows bounds the "path:row" references kept per finding.
const maxRows = 10

// groupKey identifies a (principal, usage type, day) group.
type groupKey struct {
	principal, usageType string
	day                  time.Time
}

func cmpKey(a, b groupKey) int {
	return cmp.Or(
		strings.Compare(a.principal, b.principal),
		a.day.Compare(b.day),
		strings.Compare(a.usageType, b.usageType),
	)
}

// tagSet is one distinct set of tags seen on billed lines of a group.
type tagSet struct {
	tags  map[string]string
	lines int
	cost  pricing.Total
	rows  []string
}

type billedGroup struct {
	amount Quantity
	cost   pricing.Total
	rows   []string
	sets   []*tagSet
}

func (g *billedGroup) add(l *Line) {
	g.amount = g.amount.Add(l.UsageAmount)
	g.cost.Add(l.UnblendedCost)
	ref := rowRef(l)
	g.rows = appendRow(g.rows, ref)
	for _, s := range g.sets {
		if mapsEqual(s.tags, l.Tags) {
			s.lines++
			s.cost.Add(l.UnblendedCost)
			s.rows = appendRow(s.rows, ref)
			return
		}
	}
	s := &tagSet{tags: l.Tags, lines: 1, rows: []string{ref}}
	s.cost.Add(l.UnblendedCost)
	g.sets = append(g.sets, s)
}

type expectedGroup struct {
	amount    int64
	overflow  bool
	cost      pricing.Total
	costKnown bool
	lastSeen  time.Time
	tags      []map[string]string
}

type bypassAcc struct {
	kind     string
	accounts []string
	types    map[string]*usageAcc
	lines    int
	cost     pricing.Total
	first    time.Time
	last     time.Time
	rows     []string
}

type usageAcc struct {
	amount Quantity
	cost   pricing.Total
}

type principalAcc struct {
	gateway         bool
	billed, ledger  pricing.Total
	ledgerUnknown   bool
	findings, later int
}

// Reconcile compares a bill with what the gateway's ledger expects, per
// principal, usage type and UTC day, and reports:
//
//   - Bypasses: Bedrock usage billed to principals that are not gateway
//     sessions;
//   - MissingTags: gateway sessions billed without the tags the gateway
//     sent, or with other values;
//   - Mismatches: settled groups whose tokens or cost differ beyond
//     tolerance, in either direction;
//   - NotBilledYet: ledger groups newer than the bill's coverage, for
//     information.
//
// Only Bedrock lines (IsBedrock) of line item type "Usage" are compared:
// the ledger prices tokens at catalogue rates, while taxes, credits,
// refunds and discounts are separate lines the gateway cannot predict;
// those are totalled in Summary.OtherCharges. Lines of other services
// are ignored except to find how far the bill reaches. Invalid options
// are used as Validate describes them: call Validate first.
func Reconcile(bill []Line, expected []Expected, o Options) Report {
	lag := o.BillLag
	if lag <= 0 {
		lag = DefaultBillLag
	}
	tokTol := o.TokenTolerance
	if math.IsNaN(tokTol) || math.IsInf(tokTol, 0) || tokTol < 0 {
		tokTol = 0
	}
	costTol := max(o.CostTolerance, 0)

	// The ledger's groups, and which principals and roles are the
	// gateway's.
	exp, ledgerPrincipals, since := groupExpected(expected)
	if !o.Since.IsZero() {
		since = o.Since
	}
	roles := newRoleMatcher(o.GatewayRoles, expected)
	isGateway := func(p string) bool { return ledgerPrincipals[p] || roles.match(p) }

	var r Report
	r.GeneratedAt = o.Now
	principals := make(map[string]*principalAcc)
	principal := func(p string) *principalAcc {
		a := principals[p]
		if a == nil {
			a = &principalAcc{gateway: isGateway(p), ledgerUnknown: false}
			principals[p] = a
		}
		return a
	}

	// The bill: coverage, bypasses and the gateway's groups.
	billed := make(map[groupKey]*billedGroup)
	bypass := make(map[string]*bypassAcc)
	other := make(map[string]*Charge)
	var newest time.Time
	multiDay := 0
	for i := range bill {
		l := &bill[i]
		if l.LineItemType == "Usage" {
			end := l.UsageEnd
			if end.IsZero() {
				end = l.UsageStart
			}
			if end.After(newest) {
				newest = end
			}
		}
		if !IsBedrock(*l) {
			continue
		}
		if l.LineItemType != "Usage" {
			c := other[l.LineItemType]
			if c == nil {
				c = &Charge{LineItemType: l.LineItemType}
				other[l.LineItemType] = c
			}
			c.Lines++
			c.Cost.Add(l.UnblendedCost)
			continue
		}
		r.Summary.BedrockLines++
		r.Summary.BilledCost.Add(l.UnblendedCost)
		if !l.UsageEnd.IsZero() && l.UsageEnd.Sub(l.UsageStart) > 24*time.Hour {
			multiDay++
		}
		day := utcDay(l.UsageStart)
		if l.Principal == "" {
			r.Summary.UnattributedLines++
			r.Summary.UnattributedCost.Add(l.UnblendedCost)
			continue
		}
		if !isGateway(l.Principal) {
			r.Summary.BypassCost.Add(l.UnblendedCost)
			b := bypass[l.Principal]
			if b == nil {
				b = &bypassAcc{kind: principalKind(l.Principal), types: make(map[string]*usageAcc), first: day, last: day}
				bypass[l.Principal] = b
			}
			if !slices.Contains(b.accounts, l.Account) {
				b.accounts = append(b.accounts, l.Account)
			}
			u := b.types[l.UsageType]
			if u == nil {
				u = &usageAcc{}
				b.types[l.UsageType] = u
			}
			u.amount = u.amount.Add(l.UsageAmount)
			u.cost.Add(l.UnblendedCost)
			b.lines++
			b.cost.Add(l.UnblendedCost)
			b.first = minTime(b.first, day)
			b.last = maxTime(b.last, day)
			b.rows = appendRow(b.rows, rowRef(l))
			principal(l.Principal).billed.Add(l.UnblendedCost)
			continue
		}
		r.Summary.GatewayBilledCost.Add(l.UnblendedCost)
		principal(l.Principal).billed.Add(l.UnblendedCost)
		if !since.IsZero() && day.Before(since) {
			r.Summary.BeforeSince.Add(l.UnblendedCost)
			continue
		}
		k := groupKey{l.Principal, l.UsageType, day}
		g := billed[k]
		if g == nil {
			g = &billedGroup{}
			billed[k] = g
		}
		g.add(l)
	}
	var cutoff time.Time
	if !newest.IsZero() {
		cutoff = newest.Add(-lag)
	}
	r.Coverage = Coverage{NewestUsage: newest, Cutoff: cutoff, BillLag: lag, Since: since}
	if multiDay > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"%d Bedrock usage line(s) span more than a day (a monthly export?); each was compared on the day it starts, so use a daily or hourly export", multiDay))
	}
	if n := r.Summary.UnattributedLines; n > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf(
			"%d Bedrock usage line(s) costing $%s have no IAM principal (not inference calls, or usage before IAM principal data); not compared",
			n, r.Summary.UnattributedCost.String()))
	}
	if newest.IsZero() {
		r.Warnings = append(r.Warnings, "the bill has no usage lines, so it covers no time: all ledger usage is listed as not billed yet")
	}

	// Compare the groups.
	keys := make([]groupKey, 0, len(exp)+len(billed))
	for k := range exp {
		keys = append(keys, k)
	}
	for k := range billed {
		if exp[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, cmpKey)
	tol := new(big.Rat).SetFloat64(tokTol)
	for _, k := range keys {
		if !since.IsZero() && k.day.Before(since) {
			continue // only an explicit Since can leave ledger groups before it
		}
		e, b := exp[k], billed[k]
		pa := principal(k.principal)
		if e != nil {
			if e.costKnown {
				r.Summary.LedgerCost.AddTotal(&e.cost)
				pa.ledger.AddTotal(&e.cost)
			} else {
				r.Summary.LedgerCostUnknown++
				pa.ledgerUnknown = true
			}
			if e.overflow {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s %s %s: ledger amount overflows int64; not compared", k.principal, k.usageType, k.day.Format(time.DateOnly)))
				continue
			}
		}
		var bAmount Quantity
		var bCost pricing.Total
		var rows []string
		if b != nil {
			bAmount, rows = b.amount, b.rows
			bCost.AddTotal(&b.cost)
		}
		if e != nil && (cutoff.IsZero() || !e.lastSeen.Before(cutoff)) {
			pa.later++
			r.NotBilledYet = append(r.NotBilledYet, NotBilledYet{
				Principal: k.principal, UsageType: k.usageType, Day: k.day,
				LedgerAmount: e.amount, LedgerCost: clone(&e.cost), CostKnown: e.costKnown,
				BilledAmount: bAmount, BilledCost: bCost, LastSeen: e.lastSeen,
			})
			continue
		}
		r.Summary.GroupsCompared++
		m := Mismatch{
			Principal: k.principal, UsageType: k.usageType, Day: k.day,
			BilledAmount: bAmount, BilledCost: bCost, CostKnown: true, Rows: rows,
		}
		var lAmount Quantity
		if e != nil {
			m.LedgerAmount = e.amount
			lAmount = QuantityOf(e.amount)
			m.LedgerCost = clone(&e.cost)
			m.CostKnown = e.costKnown
		}
		m.AmountDiff = bAmount.Sub(lAmount)
		m.AmountOff = !withinRelative(m.AmountDiff, lAmount, tol)
		if m.CostKnown {
			m.CostDiff = bCost.Sub(&m.LedgerCost)
			abs := m.CostDiff.Abs()
			var limit pricing.Total
			limit.Add(costTol)
			m.CostOff = abs.Cmp(&limit) > 0
		}
		if !m.AmountOff && !m.CostOff {
			r.Summary.GroupsMatched++
			continue
		}
		switch {
		case e == nil:
			m.Kind = NotInLedger
			m.UnknownSession = !ledgerPrincipals[k.principal]
		case b == nil:
			m.Kind = NotBilled
		default:
			m.Kind = Differs
		}
		pa.findings++
		r.Mismatches = append(r.Mismatches, m)
	}

	r.MissingTags = checkTags(billed, exp, principals)
	r.Bypasses = bypasses(bypass, principals)

	for _, c := range other {
		r.Summary.OtherCharges = append(r.Summary.OtherCharges, *c)
	}
	slices.SortFunc(r.Summary.OtherCharges, func(a, b Charge) int { return strings.Compare(a.LineItemType, b.LineItemType) })
	for p, a := range principals {
		r.Summary.Principals = append(r.Summary.Principals, PrincipalSummary{
			Principal: p, Gateway: a.gateway,
			BilledCost: a.billed, LedgerCost: a.ledger, LedgerCostKnown: !a.ledgerUnknown,
			Findings: a.findings, NotBilledYet: a.later,
		})
	}
	slices.SortFunc(r.Summary.Principals, func(a, b PrincipalSummary) int { return strings.Compare(a.Principal, b.Principal) })
	r.nonNil()
	return r
}

// nonNil makes empty lists empty rather than nil, so that WriteJSON
// writes [] where a reader expects a list.
func (r *Report) nonNil() {
	r.Bypasses = orEmpty(r.Bypasses)
	r.MissingTags = orEmpty(r.MissingTags)
	r.Mismatches = orEmpty(r.Mismatches)
	r.NotBilledYet = orEmpty(r.NotBilledYet)
	r.Summary.OtherCharges = orEmpty(r.Summary.OtherCharges)
	r.Summary.Principals = orEmpty(r.Summary.Principals)
	for i := range r.MissingTags {
		r.MissingTags[i].Missing = orEmpty(r.MissingTags[i].Missing)
		r.MissingTags[i].Differing = orEmpty(r.MissingTags[i].Differing)
	}
	for i := range r.Mismatches {
		r.Mismatches[i].Rows = orEmpty(r.Mismatches[i].Rows)
	}
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// groupExpected sums the ledger's entries per (principal, usage type,
// day) and returns the groups, the principals seen and the earliest day.
func groupExpected(expected []Expected) (map[groupKey]*expectedGroup, map[string]bool, time.Time) {
	exp := make(map[groupKey]*expectedGroup)
	ledgerPrincipals := make(map[string]bool)
	var since time.Time
	for _, e := range expected {
		k := groupKey{e.Principal, e.UsageType, utcDay(e.Day)}
		g := exp[k]
		if g == nil {
			g = &expectedGroup{costKnown: true}
			exp[k] = g
		}
		if sum := g.amount + e.Amount; (e.Amount > 0 && sum < g.amount) || (e.Amount < 0 && sum > g.amount) {
			g.overflow = true
		} else {
			g.amount = sum
		}
		if e.CostKnown {
			g.cost.Add(e.Cost)
		} else {
			g.costKnown = false
		}
		seen := e.LastSeen
		if seen.IsZero() {
			seen = k.day.Add(24*time.Hour - time.Nanosecond)
		}
		if seen.After(g.lastSeen) {
			g.lastSeen = seen
		}
		if len(e.Tags) > 0 && !slices.ContainsFunc(g.tags, func(m map[string]string) bool { return mapsEqual(m, e.Tags) }) {
			g.tags = append(g.tags, e.Tags)
		}
		ledgerPrincipals[e.Principal] = true
		if since.IsZero() || k.day.Before(since) {
			since = k.day
		}
	}
	return exp, ledgerPrincipals, since
}

// withinRelative reports whether |diff| ≤ tol × |base|, exactly.
func withinRelative(diff, base Quantity, tol *big.Rat) bool {
	limit := new(big.Rat).Mul(tol, base.Abs().Rat())
	return diff.Abs().Rat().Cmp(limit) <= 0
}

// checkTags compares the tags of every billed line of a gateway session
// with the tags the gateway sent for that group, or, when the ledger has
// no such group, for any group of the principal. Keys the gateway did
// not send (principal tags of the role, other allocation tags) are not
// its business and are ignored.
func checkTags(billed map[groupKey]*billedGroup, exp map[groupKey]*expectedGroup, principals map[string]*principalAcc) []MissingTags {
	byPrincipal := make(map[string][]map[string]string)
	for k, e := range exp {
		for _, t := range e.tags {
			if !slices.ContainsFunc(byPrincipal[k.principal], func(m map[string]string) bool { return mapsEqual(m, t) }) {
				byPrincipal[k.principal] = append(byPrincipal[k.principal], t)
			}
		}
	}
	type acc struct {
		missing   map[string]bool
		differing map[TagDiff]bool
		lines     int
		cost      pricing.Total
		first     time.Time
		last      time.Time
		rows      []string
	}
	accs := make(map[string]*acc)
	keys := make([]groupKey, 0, len(billed))
	for k := range billed {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpKey)
	for _, k := range keys {
		sent := byPrincipal[k.principal]
		if e := exp[k]; e != nil && len(e.tags) > 0 {
			sent = e.tags
		}
		if len(sent) == 0 {
			continue
		}
		for _, s := range billed[k].sets {
			missing, differing := tagProblems(sent, s.tags)
			if len(missing) == 0 && len(differing) == 0 {
				continue
			}
			a := accs[k.principal]
			if a == nil {
				a = &acc{missing: make(map[string]bool), differing: make(map[TagDiff]bool), first: k.day, last: k.day}
				accs[k.principal] = a
			}
			for _, m := range missing {
				a.missing[m] = true
			}
			for _, d := range differing {
				a.differing[d] = true
			}
			a.lines += s.lines
			a.cost.AddTotal(&s.cost)
			a.first = minTime(a.first, k.day)
			a.last = maxTime(a.last, k.day)
			for _, row := range s.rows {
				a.rows = appendRow(a.rows, row)
			}
		}
	}
	var out []MissingTags
	for p, a := range accs {
		mt := MissingTags{Principal: p, Lines: a.lines, Cost: a.cost, FirstDay: a.first, LastDay: a.last, Rows: a.rows}
		for m := range a.missing {
			mt.Missing = append(mt.Missing, m)
		}
		slices.Sort(mt.Missing)
		for d := range a.differing {
			mt.Differing = append(mt.Differing, d)
		}
		slices.SortFunc(mt.Differing, func(a, b TagDiff) int {
			return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(a.Sent, b.Sent), strings.Compare(a.Billed, b.Billed))
		})
		principals[p].findings++
		out = append(out, mt)
	}
	slices.SortFunc(out, func(a, b MissingTags) int { return strings.Compare(a.Principal, b.Principal) })
	return out
}

// tagProblems compares billed tags with the closest of the tag sets the
// gateway sent: the one with the fewest missing and differing keys.
func tagProblems(sent []map[string]string, got map[string]string) (missing []string, differing []TagDiff) {
	best := -1
	for _, want := range sent {
		var ms []string
		var ds []TagDiff
		for key, v := range want {
			bv, ok := got[key]
			switch {
			case !ok:
				ms = append(ms, key)
			case bv != v:
				ds = append(ds, TagDiff{Key: key, Sent: v, Billed: bv})
			}
		}
		if n := len(ms) + len(ds); best < 0 || n < best {
			best, missing, differing = n, ms, ds
		}
	}
	return missing, differing
}

func bypasses(acc map[string]*bypassAcc, principals map[string]*principalAcc) []Bypass {
	var out []Bypass
	for p, b := range acc {
		bp := Bypass{
			Principal: p, Kind: b.kind, Accounts: b.accounts,
			Lines: b.lines, Cost: b.cost, FirstDay: b.first, LastDay: b.last, Rows: b.rows,
		}
		slices.Sort(bp.Accounts)
		for t, u := range b.types {
			bp.UsageTypes = append(bp.UsageTypes, UsageAmount{UsageType: t, Amount: u.amount, Cost: u.cost})
		}
		slices.SortFunc(bp.UsageTypes, func(a, b UsageAmount) int { return strings.Compare(a.UsageType, b.UsageType) })
		principals[p].findings++
		out = append(out, bp)
	}
	slices.SortFunc(out, func(a, b Bypass) int { return strings.Compare(a.Principal, b.Principal) })
	return out
}

func utcDay(t time.Time) time.Time {
	y, mo, d := t.UTC().Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func rowRef(l *Line) string { return fmt.Sprintf("%s:%d", l.Path, l.Row) }

func appendRow(rows []string, ref string) []string {
	if len(rows) >= maxRows {
		return rows
	}
	return append(rows, ref)
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// clone copies a Total, so that adding to the original later cannot
// change the copy (a Total holds a big.Int, whose copies share storage).
func clone(t *pricing.Total) pricing.Total {
	var c pricing.Total
	c.AddTotal(t)
	return c
}
