// Package report turns the gateway's usage ledger into spend and token
// totals grouped by user, team, tenant, cost center, model, day or
// operation: the answer to "who spent what" that the gateway can give
// today, a day or two before the CUR 2.0 bill can.
//
// It reads the ledger as a stream, one record at a time, so a month of
// ledger (gigabytes) costs memory in proportion to the number of groups,
// never to the number of requests. Money is summed exactly
// (pricing.Total), so a report's total is the ledger's total to the
// picodollar and can be reconciled against the bill.
package report

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

// The dimensions a report can be grouped by, named as their ledger fields
// are (day is the UTC date of the record's time).
const (
	User       = "user"
	Team       = "team"
	Tenant     = "tenant"
	CostCenter = "cost_center"
	Model      = "model"
	Day        = "day"
	Operation  = "operation"
)

// Dimensions lists every dimension in the order the CLI documents them.
var Dimensions = []string{User, Team, Tenant, CostCenter, Model, Day, Operation}

// key returns r's value for dimension d, which ParseGroupBy has checked.
func key(r *usage.Record, d string) string {
	switch d {
	case User:
		return r.User
	case Team:
		return r.Team
	case Tenant:
		return r.Tenant
	case CostCenter:
		return r.CostCenter
	case Model:
		return r.Model
	case Day:
		// UTC, so that a day means the same thing as on the AWS bill,
		// whose line items are in UTC.
		return r.Time.UTC().Format(time.DateOnly)
	case Operation:
		return r.Operation
	}
	panic("report: unknown dimension " + d)
}

// ParseGroupBy reads a comma-separated list of dimensions such as
// "team,model". Spaces around names are ignored; an unknown or repeated
// name is an error naming it. The empty string means no grouping: the
// report is its total alone.
func ParseGroupBy(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var dims []string
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "":
			return nil, fmt.Errorf("group-by %q: empty dimension name", s)
		case !slices.Contains(Dimensions, name):
			return nil, fmt.Errorf("group-by: unknown dimension %q (want some of %s)", name, strings.Join(Dimensions, ", "))
		case slices.Contains(dims, name):
			return nil, fmt.Errorf("group-by: dimension %q given twice", name)
		}
		dims = append(dims, name)
	}
	return dims, nil
}

// Options say what a report counts and how it groups it.
type Options struct {
	// GroupBy are the dimensions rows are keyed by, in column order (see
	// ParseGroupBy). None: the report has no rows, only its Total.
	GroupBy []string
	// Since, when not zero, drops records whose time is before it
	// (inclusive bound).
	Since time.Time
	// Until, when not zero, drops records whose time is at or after it
	// (exclusive bound), so that --since 2026-11-01 --until 2026-12-01
	// is November exactly and consecutive reports never count a request
	// twice.
	Until time.Time
}

// Validate reports every problem in o at once.
func (o Options) Validate() error {
	var errs []error
	seen := map[string]bool{}
	for _, d := range o.GroupBy {
		if !slices.Contains(Dimensions, d) {
			errs = append(errs, fmt.Errorf("group-by: unknown dimension %q", d))
		} else if seen[d] {
			errs = append(errs, fmt.Errorf("group-by: dimension %q given twice", d))
		}
		seen[d] = true
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until) {
		errs = append(errs, fmt.Errorf("since %s is not before until %s", o.Since.Format(time.RFC3339), o.Until.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

// Row is what the requests sharing one combination of keys consumed.
type Row struct {
	// Keys are the row's values for Options.GroupBy, in that order; ""
	// where the ledger has none (a request refused before its user or
	// model was known). Nil for a report's Total.
	Keys     []string
	Requests int64
	// Errors are requests answered with HTTP status 400 or above.
	Errors int64
	Tokens usage.Tokens
	// Cost is the exact sum of the priced requests' cost_usd.
	Cost pricing.Total
	// Unpriced counts requests that consumed tokens but have no cost
	// (cost_usd null: the model had no price in the catalogue). Their
	// cost is not in Cost, so Cost is then a lower bound; writers show
	// it as such, never as a complete figure or as $0.
	Unpriced int64
}

// CostKnown reports whether Cost is a dollar figure worth printing: false
// when the row has unpriced requests and no priced cost at all, so that it
// is shown as unknown rather than as $0.
func (r *Row) CostKnown() bool { return r.Unpriced == 0 || r.Cost.Cmp(&zero) != 0 }

var zero pricing.Total

func (r *Row) add(rec *usage.Record) {
	r.Requests++
	if rec.Status >= 400 {
		r.Errors++
	}
	r.Tokens = r.Tokens.Add(rec.Tokens)
	switch {
	case rec.Cost != nil:
		r.Cost.Add(*rec.Cost)
	case rec.Tokens != usage.Tokens{}:
		r.Unpriced++
	}
}

// PartialRecord is a ledger line that ends without its newline: a record
// whose write a crash cut short. It is skipped, and reported.
type PartialRecord struct {
	File string
	Line int
}

// Report is a grouped summary of ledger records.
type Report struct {
	Options
	// Rows are sorted by cost, highest first, then by keys.
	Rows []Row
	// Total sums every record the report counted, grouped or not.
	Total Row
	// Partial lists the partial records skipped while reading (FromFiles).
	Partial []PartialRecord
}

// Build sums recs into a report. It stops at the first error recs yields
// and returns it. Memory grows with the number of distinct rows, not with
// the number of records.
func Build(recs iter.Seq2[usage.Record, error], o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &Report{Options: o}
	rows := map[string]*Row{}
	var sb strings.Builder
	keys := make([]string, len(o.GroupBy))
	for rec, err := range recs {
		if err != nil {
			return nil, err
		}
		if !o.Since.IsZero() && rec.Time.Before(o.Since) {
			continue
		}
		if !o.Until.IsZero() && !rec.Time.Before(o.Until) {
			continue
		}
		r.Total.add(&rec)
		if len(o.GroupBy) == 0 {
			continue
		}
		sb.Reset()
		for i, d := range o.GroupBy {
			keys[i] = key(&rec, d)
			// Length-prefixed, so that no key's content (a user name
			// may hold any character) can make two rows collide.
			sb.WriteString(strconv.Itoa(len(keys[i])))
			sb.WriteByte(':')
			sb.WriteString(keys[i])
		}
		id := sb.String()
		row := rows[id]
		if row == nil {
			row = &Row{Keys: slices.Clone(keys)}
			rows[id] = row
		}
		row.add(&rec)
	}
	r.Rows = make([]Row, 0, len(rows))
	for _, row := range rows {
		r.Rows = append(r.Rows, *row)
	}
	slices.SortFunc(r.Rows, func(a, b Row) int {
		return cmp.Or(b.Cost.Cmp(&a.Cost), slices.Compare(a.Keys, b.Keys))
	})
	return r, nil
}
