// Package reconcile is `gateway reconcile`: it reads CUR 2.0 bills and the
// gateway's usage ledger, turns the ledger into what the bill should say
// (per session principal, usage type and UTC day, with the session tags
// the gateway sent), and has pkg/cur compare the two.
package reconcile

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/internal/gateway"
	"github.com/bedrock-gateway/gateway/pkg/cur"
	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/report"
	"github.com/bedrock-gateway/gateway/pkg/tenancy"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// Run is `gateway reconcile`. It returns cur.ExitOK when the bill and
// the ledger agree, cur.ExitFindings when they do not (bypass, missing
// tags, mismatches), and cur.ExitBadInput when an input cannot be read
// or a flag is wrong, with the reasons on stderr.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var curFiles, ledgers, roles multi
	fs.Var(&curFiles, "cur", "CUR 2.0 Data Export file: Parquet, CSV or gzipped CSV (repeatable)")
	fs.Var(&ledgers, "ledger", "usage ledger file; its rotated files (FILE.1 ...) are read too (repeatable)")
	fs.Var(&roles, "gateway-role", "role name or ARN whose sessions are the gateway's (repeatable; default: the roles in the ledger)")
	configFile := fs.String("config", "", "the gateway's config, for its pricing overrides and session tag keys (optional)")
	format := fs.String("format", "table", "output: table or json")
	tokenTol := fs.Float64("token-tolerance", 0, "relative token difference allowed per principal, usage type and day (0.01 = 1%)")
	costTol := fs.String("cost-tolerance", "0.01", "cost difference allowed per principal, usage type and day, in dollars")
	lag := fs.Duration("bill-lag", cur.DefaultBillLag, "ledger usage newer than the bill's newest line minus this is not billed yet")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cur.ExitOK
		}
		return cur.ExitBadInput
	}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if fs.NArg() > 0 {
		bad("unexpected arguments: %q", fs.Args())
	}
	if len(curFiles) == 0 {
		bad("--cur: at least one CUR 2.0 file is required")
	}
	if len(ledgers) == 0 {
		bad("--ledger: at least one ledger file is required")
	}
	if *format != "table" && *format != "json" {
		bad("--format: must be table or json, got %q", *format)
	}
	opts := cur.Options{TokenTolerance: *tokenTol, GatewayRoles: roles, BillLag: *lag, Now: time.Now().UTC()}
	if *lag == 0 {
		opts.BillLag = time.Nanosecond // compare everything the bill reaches
	}
	var err error
	if opts.CostTolerance, err = pricing.ParseMoney(*costTol); err != nil {
		bad("--cost-tolerance: %v", err)
	}
	if err := opts.Validate(); err != nil {
		bad("%v", err)
	}
	cat, tagKeys := pricing.Default(), tenancy.DefaultTagKeys()
	if *configFile != "" {
		if cat, tagKeys, err = fromConfig(*configFile); err != nil {
			bad("--config: %v", err)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(stderr, "gateway reconcile: "+strings.Join(problems, "\ngateway reconcile: "))
		return cur.ExitBadInput
	}

	var bill []cur.Line
	for _, f := range curFiles {
		lines, err := cur.ReadFile(f)
		if err != nil {
			fmt.Fprintf(stderr, "gateway reconcile: %v\n", err)
			return cur.ExitBadInput
		}
		bill = append(bill, lines...)
	}
	exp := newExpectation(cat, tagKeys)
	for _, l := range ledgers {
		files, err := usage.LedgerFiles(l)
		if err != nil {
			fmt.Fprintf(stderr, "gateway reconcile: --ledger %s: %v\n", l, err)
			return cur.ExitBadInput
		}
		partial := func(p report.PartialRecord) {
			fmt.Fprintf(stderr, "gateway reconcile: warning: %v\n", p)
		}
		for rec, err := range report.Records(files, partial) {
			if err != nil {
				fmt.Fprintf(stderr, "gateway reconcile: %v\n", err)
				return cur.ExitBadInput
			}
			exp.add(&rec)
		}
	}
	r := cur.Reconcile(bill, exp.groups(), opts)
	r.Warnings = append(r.Warnings, exp.warnings()...)
	write := r.WriteTable
	if *format == "json" {
		write = r.WriteJSON
	}
	if err := write(stdout); err != nil {
		fmt.Fprintf(stderr, "gateway reconcile: %v\n", err)
		return cur.ExitBadInput
	}
	return cur.ExitCode(r)
}

// fromConfig reads the catalogue and tag keys a gateway config sets.
func fromConfig(path string) (*pricing.Catalogue, tenancy.TagKeys, error) {
	cfg, err := gateway.Load(path, os.Getenv)
	if err != nil {
		return nil, tenancy.TagKeys{}, err
	}
	cat, err := pricing.New(cfg.Pricing)
	if err != nil {
		return nil, tenancy.TagKeys{}, err
	}
	keys := tenancy.DefaultTagKeys()
	if cfg.Session.TagKeys != nil {
		keys = *cfg.Session.TagKeys
	}
	return cat, keys, nil
}

// expectation adds ledger records up into cur.Expected groups.
type expectation struct {
	cat      *pricing.Catalogue
	tagKeys  tenancy.TagKeys
	byKey    map[groupKey]*cur.Expected
	order    []groupKey
	noRegion int64 // records with tokens and no region (written before the ledger had one)
	noRole   int64 // records with tokens and no session
}

type groupKey struct {
	principal, usageType string
	day                  time.Time
	tags                 string
}

func newExpectation(cat *pricing.Catalogue, tagKeys tenancy.TagKeys) *expectation {
	return &expectation{cat: cat, tagKeys: tagKeys, byKey: map[groupKey]*cur.Expected{}}
}

// add counts one record's tokens under its principal, usage type and day.
func (e *expectation) add(r *usage.Record) {
	if r.Tokens == (usage.Tokens{}) || !usage.Billed(r.Operation) {
		return
	}
	if r.Region == "" {
		e.noRegion++
		return
	}
	principal, ok := tenancy.PrincipalARN(r.RoleARN, r.SessionName)
	if !ok {
		e.noRole++
		return
	}
	tags := e.sessionTags(r)
	tagKey := fmt.Sprint(tags)
	day := r.Time.UTC().Truncate(24 * time.Hour)
	n := pricing.Tokens{r.Input, r.Output, r.CacheRead, r.CacheWrite}
	price, priced := e.cat.Lookup(r.Region, r.Model)
	for d := range pricing.Direction(pricing.NumDirections) {
		if n[d] == 0 {
			continue
		}
		k := groupKey{principal, e.cat.UsageTypeOrID(r.Region, r.Model, d), day, tagKey}
		g := e.byKey[k]
		if g == nil {
			g = &cur.Expected{Principal: principal, UsageType: k.usageType, Day: day, Tags: tags, CostKnown: true}
			e.byKey[k] = g
			e.order = append(e.order, k)
		}
		g.Amount += n[d]
		if c, ok := price.Rates[d].Times(n[d]); priced && ok && g.CostKnown {
			g.Cost, g.CostKnown = g.Cost.Add(c)
		} else {
			g.CostKnown = false
		}
		if r.Time.After(g.LastSeen) {
			g.LastSeen = r.Time.UTC()
		}
	}
}

// sessionTags are the tags the gateway sent for r's session, as the
// bill's tags column names them.
func (e *expectation) sessionTags(r *usage.Record) map[string]string {
	tags := map[string]string{}
	for _, t := range []struct{ key, value string }{
		{e.tagKeys.Team, r.Team}, {e.tagKeys.Tenant, r.Tenant}, {e.tagKeys.CostCenter, r.CostCenter},
	} {
		if t.key != "" && t.value != "" {
			tags["iamPrincipal/"+t.key] = t.value
		}
	}
	return tags
}

func (e *expectation) groups() []cur.Expected {
	out := make([]cur.Expected, len(e.order))
	for i, k := range e.order {
		out[i] = *e.byKey[k]
	}
	return out
}

func (e *expectation) warnings() []string {
	var w []string
	if e.noRegion > 0 {
		w = append(w, fmt.Sprintf("%d ledger records with tokens have no region (written by a gateway older than the cost fields): not compared", e.noRegion))
	}
	if e.noRole > 0 {
		w = append(w, fmt.Sprintf("%d ledger records with tokens have no session (role_arn, session_name): not compared", e.noRole))
	}
	return w
}
