package cur

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

const (
	sonnetIn  = "USE1-Claude4.6Sonnet-input-tokens"
	sonnetOut = "USE1-Claude4.6Sonnet-output-tokens"
	otherRole = "arn:aws:sts::123456789012:assumed-role/AppRole/i-0abc"
	// strayGW is a session of the gateway's role that the gateway never
	// created: someone assumed the role directly.
	strayGW = "arn:aws:sts::123456789012:assumed-role/BedrockRole/laptop"
)

var teamDS = map[string]string{"iamPrincipal/team": "data-science"}

// usage is a Bedrock usage line for one day.
func usage(t testing.TB, principal, usageType string, day time.Time, amount int64, cost string, tags map[string]string) Line {
	t.Helper()
	return Line{
		Path: "bill.csv", Row: 1,
		BillingPeriod: april, UsageStart: day, UsageEnd: day.Add(24 * time.Hour),
		Account: "123456789012", ProductCode: "AmazonBedrock", LineItemType: "Usage",
		Principal: principal, UsageType: usageType,
		UsageAmount: QuantityOf(amount), UnblendedCost: mustMoney(t, cost), Currency: "USD", Tags: tags,
	}
}

// coverage is an S3 line that says the bill reaches until.
func coverage(until time.Time) Line {
	return Line{
		Path: "bill.csv", Row: 99, BillingPeriod: april, UsageStart: until.Add(-time.Hour), UsageEnd: until,
		ProductCode: "AmazonS3", LineItemType: "Usage", UsageType: "TimedStorage-ByteHrs",
	}
}

func expect(t testing.TB, principal, usageType string, day time.Time, amount int64, cost string, tags map[string]string) Expected {
	t.Helper()
	e := Expected{Principal: principal, UsageType: usageType, Day: day, Amount: amount, Tags: tags, LastSeen: day.Add(18 * time.Hour)}
	if cost != "" {
		e.Cost, e.CostKnown = mustMoney(t, cost), true
	}
	return e
}

func numbered(lines ...Line) []Line {
	for i := range lines {
		lines[i].Row = i + 1
	}
	return lines
}

// findings summarises a report's findings one line each, so that the
// table below can state them compactly.
func findings(r Report) []string {
	var out []string
	for _, b := range r.Bypasses {
		var types []string
		for _, u := range b.UsageTypes {
			types = append(types, fmt.Sprintf("%s=%s/$%s", u.UsageType, u.Amount, u.Cost.String()))
		}
		out = append(out, fmt.Sprintf("bypass %s %s %s $%s", b.Principal, b.Kind, strings.Join(types, ","), b.Cost.String()))
	}
	for _, m := range r.MissingTags {
		var diffs []string
		for _, d := range m.Differing {
			diffs = append(diffs, d.Key+":"+d.Sent+"->"+d.Billed)
		}
		out = append(out, fmt.Sprintf("tags %s missing=%s differing=%s lines=%d $%s",
			m.Principal, strings.Join(m.Missing, ","), strings.Join(diffs, ","), m.Lines, m.Cost.String()))
	}
	for _, m := range r.Mismatches {
		cost := "cost=?"
		if m.CostKnown {
			cost = fmt.Sprintf("cost=%s/%s off=%v", m.LedgerCost.String(), m.BilledCost.String(), m.CostOff)
		}
		s := fmt.Sprintf("mismatch %s %s %s %s amount=%d/%s off=%v %s",
			m.Principal, m.UsageType, m.Day.Format(time.DateOnly), m.Kind, m.LedgerAmount, m.BilledAmount, m.AmountOff, cost)
		if m.UnknownSession {
			s += " unknown-session"
		}
		out = append(out, s)
	}
	for _, n := range r.NotBilledYet {
		out = append(out, fmt.Sprintf("later %s %s %s amount=%d billed=%s", n.Principal, n.UsageType, n.Day.Format(time.DateOnly), n.LedgerAmount, n.BilledAmount))
	}
	return out
}

func TestReconcile(t *testing.T) {
	covered := coverage(day12.Add(12 * time.Hour)) // with the default 24h lag, day 10 is settled, day 11 is not
	tests := []struct {
		name     string
		bill     []Line
		expected []Expected
		opts     Options
		want     []string
		ok       bool
	}{
		{
			name: "all match",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day10, 27000, "0.081", teamDS),
				usage(t, gwPrincipal, sonnetOut, day10, 10000, "0.15", teamDS),
				covered,
			),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day10, 27000, "0.081", teamDS),
				expect(t, gwPrincipal, sonnetOut, day10, 10000, "0.15", teamDS),
			},
			ok: true,
		},
		{
			name: "ledger and bill split a group differently",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day10, 20000, "0.06", teamDS),
				usage(t, gwPrincipal, sonnetIn, day10.Add(5*time.Hour), 7000, "0.021", teamDS),
				covered,
			),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day10, 27000-1, "0.080997", teamDS),
				expect(t, gwPrincipal, sonnetIn, day10.Add(3*time.Hour), 1, "0.000003", teamDS),
			},
			ok: true,
		},
		{
			name: "bypass by an IAM user and another role; an unattributed line is not one",
			bill: numbered(
				usage(t, alice, sonnetIn, day10, 1000, "0.003", nil),
				usage(t, alice, sonnetIn, day11, 2000, "0.006", nil),
				usage(t, alice, sonnetOut, day11, 100, "0.0015", nil),
				usage(t, otherRole, sonnetIn, day10, 5, "0.000015", nil),
				usage(t, "", sonnetIn, day10, 7, "0.000021", nil),
				covered,
			),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day12, 1, "0.000003", teamDS)},
			want: []string{
				"bypass " + alice + " iam-user " + sonnetIn + "=3000/$0.009," + sonnetOut + "=100/$0.0015 $0.0105",
				"bypass " + otherRole + " assumed-role " + sonnetIn + "=5/$0.000015 $0.000015",
				"later " + gwPrincipal + " " + sonnetIn + " 2026-04-12 amount=1 billed=0",
			},
		},
		{
			name: "tags missing (not activated) and differing; extra keys ignored",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day10, 27000, "0.081", map[string]string{"iamPrincipal/team": "ds", "iamPrincipal/owner": "role-tag"}),
				usage(t, gwPrincipal2, sonnetIn, day10, 100, "0.0003", nil),
				usage(t, gwPrincipal2, sonnetOut, day10, 100, "0.0015", map[string]string{"user:env": "prod"}),
				covered,
			),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day10, 27000, "0.081", map[string]string{"iamPrincipal/team": "data-science", "iamPrincipal/tenant": "acme"}),
				expect(t, gwPrincipal2, sonnetIn, day10, 100, "0.0003", map[string]string{"iamPrincipal/tenant": "acme"}),
				expect(t, gwPrincipal2, sonnetOut, day10, 100, "0.0015", map[string]string{"iamPrincipal/tenant": "acme"}),
			},
			want: []string{
				"tags " + gwPrincipal2 + " missing=iamPrincipal/tenant differing= lines=2 $0.0018",
				"tags " + gwPrincipal + " missing=iamPrincipal/tenant differing=iamPrincipal/team:data-science->ds lines=1 $0.081",
			},
		},
		{
			name: "billed but not in the ledger, both for a known and an unknown session",
			bill: numbered(
				usage(t, gwPrincipal, sonnetOut, day10, 500, "0.0075", teamDS),
				usage(t, strayGW, sonnetIn, day10, 42, "0.000126", nil),
				covered,
			),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day9(), 1, "0.000003", teamDS)},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-09 not-billed amount=1/0 off=true cost=0.000003/0 off=true",
				"mismatch " + gwPrincipal + " " + sonnetOut + " 2026-04-10 not-in-ledger amount=0/500 off=true cost=0/0.0075 off=true",
				"mismatch " + strayGW + " " + sonnetIn + " 2026-04-10 not-in-ledger amount=0/42 off=true cost=0/0.000126 off=true unknown-session",
			},
		},
		{
			name: "billed less than the ledger",
			bill: numbered(usage(t, gwPrincipal, sonnetIn, day10, 26000, "0.078", teamDS), covered),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day10, 27000, "0.081", teamDS),
			},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-10 differs amount=27000/26000 off=true cost=0.081/0.078 off=true",
			},
		},
		{
			name:     "token tolerance edge is allowed",
			bill:     numbered(usage(t, gwPrincipal, sonnetIn, day10, 1010, "0.00303", teamDS), covered),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "", teamDS)},
			opts:     Options{TokenTolerance: 0.01},
			ok:       true,
		},
		{
			name:     "one token beyond the tolerance",
			bill:     numbered(usage(t, gwPrincipal, sonnetIn, day10, 1011, "0.003033", teamDS), covered),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "", teamDS)},
			opts:     Options{TokenTolerance: 0.01},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-10 differs amount=1000/1011 off=true cost=?",
			},
		},
		{
			name:     "cost tolerance edge is allowed",
			bill:     numbered(usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.0031", teamDS), covered),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS)},
			opts:     Options{CostTolerance: mustMoney(t, "0.0001")},
			ok:       true,
		},
		{
			name:     "one picodollar beyond the cost tolerance",
			bill:     numbered(usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003100000001", teamDS), covered),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS)},
			opts:     Options{CostTolerance: mustMoney(t, "0.0001")},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-10 differs amount=1000/1000 off=false cost=0.003/0.003100000001 off=true",
			},
		},
		{
			name:     "unknown catalogue cost compares tokens only",
			bill:     numbered(usage(t, gwPrincipal, sonnetIn, day10, 1000, "9.99", teamDS), covered),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "", teamDS)},
			ok:       true,
		},
		{
			name: "usage newer than the bill's coverage is not billed yet",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day11, 400, "0.0012", teamDS), // partly billed
				covered,
			),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day11, 1000, "0.003", teamDS),
				// LastSeen exactly at the cutoff is not yet settled.
				{Principal: gwPrincipal, UsageType: sonnetOut, Day: day11, Amount: 5, LastSeen: day11.Add(12 * time.Hour), Tags: teamDS},
			},
			ok: true,
			want: []string{
				"later " + gwPrincipal + " " + sonnetIn + " 2026-04-11 amount=1000 billed=400",
				"later " + gwPrincipal + " " + sonnetOut + " 2026-04-11 amount=5 billed=0",
			},
		},
		{
			name: "a shorter lag settles more",
			bill: numbered(usage(t, gwPrincipal, sonnetIn, day11, 400, "0.0012", teamDS), covered),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day11, 1000, "0.003", teamDS),
			},
			opts: Options{BillLag: time.Hour},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-11 differs amount=1000/400 off=true cost=0.003/0.0012 off=true",
			},
		},
		{
			name:     "a bill without usage covers nothing",
			bill:     nil,
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1, "0.000003", teamDS)},
			ok:       true,
			want:     []string{"later " + gwPrincipal + " " + sonnetIn + " 2026-04-10 amount=1 billed=0"},
		},
		{
			name: "configured gateway roles: by name, by ARN, other account",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day10, 1, "0.000003", teamDS),
				usage(t, "arn:aws:sts::999999999999:assumed-role/BedrockRole/gw-user-1", sonnetIn, day10, 1, "0.000003", nil),
				usage(t, "arn:aws:sts::123456789012:assumed-role/TenantRole/gw-t1", sonnetIn, day10, 1, "0.000003", nil),
				covered,
			),
			expected: []Expected{
				expect(t, gwPrincipal, sonnetIn, day10, 1, "0.000003", teamDS),
				expect(t, "arn:aws:sts::123456789012:assumed-role/TenantRole/gw-t1", sonnetIn, day10, 1, "0.000003", nil),
			},
			opts: Options{GatewayRoles: []string{"arn:aws:iam::123456789012:role/gateway/BedrockRole"}},
			want: []string{
				"bypass arn:aws:sts::999999999999:assumed-role/BedrockRole/gw-user-1 assumed-role " + sonnetIn + "=1/$0.000003 $0.000003",
			},
		},
		{
			name: "usage before the ledger begins is not compared",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day9(), 50, "0.00015", teamDS),
				usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
				covered,
			),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS)},
			ok:       true,
		},
		{
			name: "explicit Since before the ledger's first day",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day9(), 50, "0.00015", teamDS),
				usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
				covered,
			),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS)},
			opts:     Options{Since: april},
			want: []string{
				"mismatch " + gwPrincipal + " " + sonnetIn + " 2026-04-09 not-in-ledger amount=0/50 off=true cost=0/0.00015 off=true",
			},
		},
		{
			name: "taxes, credits and other services are not compared",
			bill: numbered(
				usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
				Line{BillingPeriod: april, UsageStart: april, UsageEnd: april.AddDate(0, 1, 0), ProductCode: "AmazonBedrock", LineItemType: "Tax", UnblendedCost: mustMoney(t, "0.0006")},
				Line{BillingPeriod: april, UsageStart: day10, UsageEnd: day11, ProductCode: "AmazonBedrock", LineItemType: "Credit", Principal: alice, UnblendedCost: mustMoney(t, "-0.003")},
				Line{BillingPeriod: april, UsageStart: day10, UsageEnd: day11, ProductCode: "AmazonEC2", LineItemType: "Usage", Principal: alice, UsageAmount: QuantityOf(24), UnblendedCost: mustMoney(t, "1")},
				covered,
			),
			expected: []Expected{expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS)},
			ok:       true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Reconcile(tt.bill, tt.expected, tt.opts)
			if diff := cmp.Diff(tt.want, findings(r)); diff != "" {
				t.Errorf("Reconcile findings differ (-want +got):\n%s", diff)
			}
			if got := r.OK(); got != tt.ok {
				t.Errorf("Report.OK() = %v, want %v", got, tt.ok)
			}
			wantCode := ExitFindings
			if tt.ok {
				wantCode = ExitOK
			}
			if got := ExitCode(r); got != wantCode {
				t.Errorf("ExitCode = %d, want %d", got, wantCode)
			}
			// Every report renders.
			var b bytes.Buffer
			if err := r.WriteTable(&b); err != nil {
				t.Errorf("WriteTable: %v", err)
			}
			b.Reset()
			if err := r.WriteJSON(&b); err != nil || !json.Valid(b.Bytes()) {
				t.Errorf("WriteJSON: %v\n%s", err, b.Bytes())
			}
		})
	}
}

func day9() time.Time { return day10.Add(-24 * time.Hour) }

func TestReconcileSummary(t *testing.T) {
	bill := numbered(
		usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
		usage(t, alice, sonnetIn, day10, 1000, "0.003", nil),
		usage(t, "", "USE1-ModelStorage", day10, 1, "1.95", nil),
		Line{BillingPeriod: april, UsageStart: april, UsageEnd: april.AddDate(0, 1, 0), ProductCode: "AmazonBedrock", LineItemType: "Tax", UnblendedCost: mustMoney(t, "0.0006")},
		coverage(day12),
	)
	expected := []Expected{
		expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
		expect(t, gwPrincipal, sonnetOut, day10, 10, "", teamDS),
	}
	now := day12.Add(time.Hour)
	r := Reconcile(bill, expected, Options{Now: now})
	total := func(s string) pricing.Total {
		var t0 pricing.Total
		t0.Add(mustMoney(t, s))
		return t0
	}
	want := Summary{
		BedrockLines:      3,
		BilledCost:        total("1.956"),
		UnattributedLines: 1,
		UnattributedCost:  total("1.95"),
		GatewayBilledCost: total("0.003"),
		BypassCost:        total("0.003"),
		LedgerCost:        total("0.003"),
		LedgerCostUnknown: 1,
		OtherCharges:      []Charge{{LineItemType: "Tax", Lines: 1, Cost: total("0.0006")}},
		GroupsCompared:    2,
		GroupsMatched:     1,
		Principals: []PrincipalSummary{
			{Principal: alice, BilledCost: total("0.003"), LedgerCostKnown: true, Findings: 1},
			{Principal: gwPrincipal, Gateway: true, BilledCost: total("0.003"), LedgerCost: total("0.003"), Findings: 1},
		},
	}
	totalCmp := cmp.Comparer(func(a, b pricing.Total) bool { return a.Cmp(&b) == 0 })
	if diff := cmp.Diff(want, r.Summary, totalCmp); diff != "" {
		t.Errorf("Summary differs (-want +got):\n%s", diff)
	}
	wantCov := Coverage{NewestUsage: day12, Cutoff: day11, BillLag: DefaultBillLag, Since: day10}
	if diff := cmp.Diff(wantCov, r.Coverage); diff != "" {
		t.Errorf("Coverage differs (-want +got):\n%s", diff)
	}
	if want := "1 Bedrock usage line(s) costing $1.95 have no IAM principal"; len(r.Warnings) != 1 || !strings.HasPrefix(r.Warnings[0], want) {
		t.Errorf("Warnings = %q, want one starting %q", r.Warnings, want)
	}
	if !r.GeneratedAt.Equal(now) {
		t.Errorf("GeneratedAt = %v, want %v", r.GeneratedAt, now)
	}
}

func TestReportOutput(t *testing.T) {
	bill := numbered(
		usage(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", nil),
		usage(t, alice, sonnetIn, day10, 1000, "0.003", nil),
		usage(t, gwPrincipal, sonnetOut, day10, 10, "0.00015", teamDS),
		coverage(day12),
	)
	expected := []Expected{
		expect(t, gwPrincipal, sonnetIn, day10, 1000, "0.003", teamDS),
		expect(t, gwPrincipal, sonnetIn, day11, 5, "0.000015", teamDS),
	}
	r := Reconcile(bill, expected, Options{})

	var table bytes.Buffer
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Bill covers usage up to 2026-04-12T00:00:00Z",
		"BYPASS",
		alice + "  iam-user",
		"MISSING TAGS",
		"iamPrincipal/team",
		"MISMATCH",
		"not-in-ledger",
		"NOT BILLED YET",
		"PRINCIPALS",
		"FAIL: 1 bypass(es), 1 principal(s) with missing tags, 1 mismatch(es).",
	} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("WriteTable output lacks %q:\n%s", want, table.String())
		}
	}

	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var decoded struct {
		Summary struct {
			BilledCost json.Number `json:"billed_cost_usd"`
		} `json:"summary"`
		Mismatches []struct {
			BilledAmount json.Number `json:"billed_amount"`
			BilledCost   json.Number `json:"billed_cost_usd"`
			Kind         string      `json:"kind"`
		} `json:"mismatches"`
	}
	dec := json.NewDecoder(&js)
	dec.UseNumber()
	if err := dec.Decode(&decoded); err != nil {
		t.Fatalf("decoding WriteJSON output: %v", err)
	}
	if decoded.Summary.BilledCost != "0.00615" {
		t.Errorf("JSON billed_cost_usd = %s, want the exact 0.00615", decoded.Summary.BilledCost)
	}
	if len(decoded.Mismatches) != 1 || decoded.Mismatches[0].BilledAmount != "10" || decoded.Mismatches[0].BilledCost != "0.00015" || decoded.Mismatches[0].Kind != "not-in-ledger" {
		t.Errorf("JSON mismatches = %+v", decoded.Mismatches)
	}

	var ok bytes.Buffer
	if err := Reconcile(nil, nil, Options{}).WriteTable(&ok); err != nil || !strings.Contains(ok.String(), "OK: the bill matches the ledger.") {
		t.Errorf("WriteTable of an empty report = %q, %v", ok.String(), err)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{TokenTolerance: 0.01, CostTolerance: 1, BillLag: time.Hour, GatewayRoles: []string{
		"BedrockRole", "arn:aws:iam::123456789012:role/path/BedrockRole", "arn:aws-cn:sts::123456789012:assumed-role/BedrockRole",
	}}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v, want nil", good, err)
	}
	bad := Options{TokenTolerance: -1, CostTolerance: -1, BillLag: -time.Second, GatewayRoles: []string{"", "arn:aws:iam::123:user/alice", "a/b"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("Validate of bad options = nil, want errors")
	}
	for _, want := range []string{"token tolerance", "cost tolerance", "bill lag", "gateway roles[0]", "gateway roles[1]", "gateway roles[2]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error = %q, want it to mention %q", err, want)
		}
	}
}
