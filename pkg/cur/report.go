package cur

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// WriteJSON writes r as one indented JSON document. Amounts and dollars
// are exact JSON numbers, times RFC 3339.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// Through a pointer, so that pricing.Total's pointer-receiver
	// MarshalJSON applies to the fields.
	return enc.Encode(&r)
}

// WriteTable writes r for a person: a summary, then one table per kind
// of finding, failures first, then the principals.
func (r Report) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	s := &r.Summary
	c := r.Coverage

	ew.printf("Bill covers usage up to %s; ledger usage before %s (bill lag %s) compared, since %s.\n",
		timeOrNone(c.NewestUsage), timeOrNone(c.Cutoff), c.BillLag, dayOrNone(c.Since))
	ew.printf("Billed Bedrock usage $%s in %d lines: gateway sessions $%s, bypass $%s.\n",
		s.BilledCost.String(), s.BedrockLines, s.GatewayBilledCost.String(), s.BypassCost.String())
	unknown := ""
	if s.LedgerCostUnknown > 0 {
		unknown = fmt.Sprintf(" (%d group(s) without a price not included)", s.LedgerCostUnknown)
	}
	ew.printf("Ledger catalogue cost $%s%s.\n", s.LedgerCost.String(), unknown)
	ew.printf("Groups compared %d, matched %d; not billed yet %d.\n", s.GroupsCompared, s.GroupsMatched, len(r.NotBilledYet))
	if s.BeforeSince.Cmp(new(pricing.Total)) != 0 {
		ew.printf("Gateway usage before the ledger begins, not compared: $%s.\n", s.BeforeSince.String())
	}
	for _, ch := range s.OtherCharges {
		ew.printf("Other Bedrock charges, not compared: %s $%s in %d line(s).\n", ch.LineItemType, ch.Cost.String(), ch.Lines)
	}
	for _, warn := range r.Warnings {
		ew.printf("Warning: %s\n", warn)
	}

	if len(r.Bypasses) > 0 {
		ew.printf("\nBYPASS: Bedrock usage billed to principals that are not gateway sessions\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRINCIPAL\tKIND\tDAYS\tUSAGE TYPE\tAMOUNT\tCOST\tROWS")
		for _, b := range r.Bypasses {
			for i, u := range b.UsageTypes {
				p, k, d, rows := b.Principal, b.Kind, days(b.FirstDay, b.LastDay), strings.Join(b.Rows, " ")
				if i > 0 {
					p, k, d, rows = "", "", "", ""
				}
				if p == "" && i == 0 {
					p = "(none)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t$%s\t%s\n", p, k, d, u.UsageType, u.Amount, u.Cost.String(), rows)
			}
		}
		ew.check(tw.Flush())
	}

	if len(r.MissingTags) > 0 {
		ew.printf("\nMISSING TAGS: gateway sessions billed without the tags the gateway sent (activate them as cost allocation tags)\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRINCIPAL\tDAYS\tMISSING\tDIFFERING (sent→billed)\tLINES\tCOST\tROWS")
		for _, m := range r.MissingTags {
			var diffs []string
			for _, d := range m.Differing {
				diffs = append(diffs, fmt.Sprintf("%s=%q→%q", d.Key, d.Sent, d.Billed))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t$%s\t%s\n", m.Principal, days(m.FirstDay, m.LastDay),
				dash(strings.Join(m.Missing, ",")), dash(strings.Join(diffs, ",")), m.Lines, m.Cost.String(), strings.Join(m.Rows, " "))
		}
		ew.check(tw.Flush())
	}

	if len(r.Mismatches) > 0 {
		ew.printf("\nMISMATCH: billed tokens or cost differ from the ledger beyond tolerance\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tPRINCIPAL\tUSAGE TYPE\tKIND\tLEDGER\tBILLED\tDIFF\tLEDGER COST\tBILLED COST\tCOST DIFF\tROWS")
		for _, m := range r.Mismatches {
			kind := string(m.Kind)
			if m.UnknownSession {
				kind += " (session unknown to the ledger)"
			}
			ledgerCost, costDiff := "$"+m.LedgerCost.String(), "$"+m.CostDiff.String()
			if !m.CostKnown {
				ledgerCost, costDiff = "unknown", "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s%s\t%s\t$%s\t%s%s\t%s\n",
				m.Day.Format(time.DateOnly), m.Principal, m.UsageType, kind,
				m.LedgerAmount, m.BilledAmount, signed(m.AmountDiff.String()), mark(m.AmountOff),
				ledgerCost, m.BilledCost.String(), signedCost(costDiff), mark(m.CostOff), strings.Join(m.Rows, " "))
		}
		ew.check(tw.Flush())
	}

	if len(r.NotBilledYet) > 0 {
		ew.printf("\nNOT BILLED YET (informational): ledger usage newer than the bill's coverage\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DAY\tPRINCIPAL\tUSAGE TYPE\tLEDGER\tBILLED SO FAR\tLEDGER COST\tLAST SEEN")
		for _, n := range r.NotBilledYet {
			cost := "$" + n.LedgerCost.String()
			if !n.CostKnown {
				cost = "unknown"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", n.Day.Format(time.DateOnly), n.Principal, n.UsageType,
				n.LedgerAmount, n.BilledAmount, cost, n.LastSeen.UTC().Format(time.RFC3339))
		}
		ew.check(tw.Flush())
	}

	if len(s.Principals) > 0 {
		ew.printf("\nPRINCIPALS\n")
		tw := tabwriter.NewWriter(ew, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PRINCIPAL\tGATEWAY\tBILLED COST\tLEDGER COST\tFINDINGS\tNOT BILLED YET")
		for _, p := range s.Principals {
			name := p.Principal
			if name == "" {
				name = "(none)"
			}
			ledger := "$" + p.LedgerCost.String()
			if !p.LedgerCostKnown {
				ledger += " + unknown"
			}
			fmt.Fprintf(tw, "%s\t%s\t$%s\t%s\t%d\t%d\n", name, yesNo(p.Gateway), p.BilledCost.String(), ledger, p.Findings, p.NotBilledYet)
		}
		ew.check(tw.Flush())
	}

	if r.OK() {
		ew.printf("\nOK: the bill matches the ledger.\n")
	} else {
		ew.printf("\nFAIL: %d bypass(es), %d principal(s) with missing tags, %d mismatch(es).\n",
			len(r.Bypasses), len(r.MissingTags), len(r.Mismatches))
	}
	return ew.err
}

// errWriter keeps the first write error, so that WriteTable can print
// without checking every line.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

func (e *errWriter) check(err error) {
	if e.err == nil {
		e.err = err
	}
}

func timeOrNone(t time.Time) string {
	if t.IsZero() {
		return "(none)"
	}
	return t.UTC().Format(time.RFC3339)
}

func dayOrNone(t time.Time) string {
	if t.IsZero() {
		return "(the start)"
	}
	return t.UTC().Format(time.DateOnly)
}

func days(first, last time.Time) string {
	if first.Equal(last) {
		return first.Format(time.DateOnly)
	}
	return first.Format(time.DateOnly) + ".." + last.Format(time.DateOnly)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func signed(s string) string {
	if strings.HasPrefix(s, "-") || s == "0" {
		return s
	}
	return "+" + s
}

func signedCost(s string) string {
	if strings.HasPrefix(s, "$-") {
		return "-$" + s[2:]
	}
	if s == "$0" || !strings.HasPrefix(s, "$") {
		return s
	}
	return "+" + s
}

func mark(off bool) string {
	if off {
		return " !"
	}
	return ""
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
