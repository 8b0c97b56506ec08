package report

import (
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func money(s string) *pricing.Money {
	m, err := pricing.ParseMoney(s)
	if err != nil {
		panic(err)
	}
	return &m
}

func seq(recs ...usage.Record) iter.Seq2[usage.Record, error] {
	return func(yield func(usage.Record, error) bool) {
		for _, r := range recs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// view is a Row with its cost as a string, for cmp.Diff (pricing.Total
// has unexported fields).
type view struct {
	Keys     []string
	Requests int64
	Errors   int64
	Tokens   usage.Tokens
	Cost     string
	Unpriced int64
}

func viewOf(r *Row) view {
	return view{r.Keys, r.Requests, r.Errors, r.Tokens, r.Cost.String(), r.Unpriced}
}

func views(rows []Row) []view {
	out := make([]view, len(rows))
	for i := range rows {
		out[i] = viewOf(&rows[i])
	}
	return out
}

func rec(user, team, model string, at time.Time, status int, in, out int64, cost *pricing.Money) usage.Record {
	return usage.Record{
		Time: at, RequestID: "r", User: user, Team: team, Tenant: "acme", CostCenter: "cc-" + team,
		Operation: "Converse", Model: model, Status: status,
		Tokens: usage.Tokens{Input: in, Output: out}, Cost: cost,
	}
}

// ledgerFixture: alice and bob in ml, carol in web, over two days.
func ledgerFixture() []usage.Record {
	return []usage.Record{
		rec("alice", "ml", "haiku", t0, 200, 100, 10, money("0.0001")),
		rec("alice", "ml", "sonnet", t0.Add(time.Hour), 200, 1000, 100, money("0.0045")),
		rec("bob", "ml", "haiku", t0.Add(24*time.Hour), 200, 200, 20, money("0.0002")),
		rec("bob", "ml", "haiku", t0.Add(25*time.Hour), 429, 0, 0, money("0")),
		rec("carol", "web", "sonnet", t0.Add(26*time.Hour), 200, 2000, 200, money("0.009")),
		rec("", "", "", t0.Add(27*time.Hour), 401, 0, 0, money("0")), // refused before identity
	}
}

func TestParseGroupBy(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{"team", []string{"team"}, ""},
		{"team,model", []string{"team", "model"}, ""},
		{" user , day ,operation", []string{"user", "day", "operation"}, ""},
		{"user,team,tenant,cost_center,model,day,operation", Dimensions, ""},
		{"team,,model", nil, "empty dimension"},
		{"team,", nil, "empty dimension"},
		{"region", nil, `unknown dimension "region"`},
		{"Team", nil, `unknown dimension "Team"`},
		{"team,team", nil, `"team" given twice`},
	}
	for _, tt := range tests {
		got, err := ParseGroupBy(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseGroupBy(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseGroupBy(%q) error = %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseGroupBy(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestBuildGroups(t *testing.T) {
	tests := []struct {
		name    string
		groupBy []string
		want    []view
	}{
		{"none", nil, []view{}},
		{"team", []string{Team}, []view{
			{Keys: []string{"web"}, Requests: 1, Tokens: usage.Tokens{Input: 2000, Output: 200}, Cost: "0.009"},
			{Keys: []string{"ml"}, Requests: 4, Errors: 1, Tokens: usage.Tokens{Input: 1300, Output: 130}, Cost: "0.0048"},
			{Keys: []string{""}, Requests: 1, Errors: 1, Cost: "0"},
		}},
		{"team,model", []string{Team, Model}, []view{
			{Keys: []string{"web", "sonnet"}, Requests: 1, Tokens: usage.Tokens{Input: 2000, Output: 200}, Cost: "0.009"},
			{Keys: []string{"ml", "sonnet"}, Requests: 1, Tokens: usage.Tokens{Input: 1000, Output: 100}, Cost: "0.0045"},
			{Keys: []string{"ml", "haiku"}, Requests: 3, Errors: 1, Tokens: usage.Tokens{Input: 300, Output: 30}, Cost: "0.0003"},
			{Keys: []string{"", ""}, Requests: 1, Errors: 1, Cost: "0"},
		}},
		{"day,user", []string{Day, User}, []view{
			{Keys: []string{"2026-11-04", "carol"}, Requests: 1, Tokens: usage.Tokens{Input: 2000, Output: 200}, Cost: "0.009"},
			{Keys: []string{"2026-11-03", "alice"}, Requests: 2, Tokens: usage.Tokens{Input: 1100, Output: 110}, Cost: "0.0046"},
			{Keys: []string{"2026-11-04", "bob"}, Requests: 2, Errors: 1, Tokens: usage.Tokens{Input: 200, Output: 20}, Cost: "0.0002"},
			// Equal cost ties are broken by keys, so the order is stable.
			{Keys: []string{"2026-11-04", ""}, Requests: 1, Errors: 1, Cost: "0"},
		}},
		{"tenant,cost_center,operation", []string{Tenant, CostCenter, Operation}, []view{
			{Keys: []string{"acme", "cc-web", "Converse"}, Requests: 1, Tokens: usage.Tokens{Input: 2000, Output: 200}, Cost: "0.009"},
			{Keys: []string{"acme", "cc-ml", "Converse"}, Requests: 4, Errors: 1, Tokens: usage.Tokens{Input: 1300, Output: 130}, Cost: "0.0048"},
			{Keys: []string{"acme", "cc-", "Converse"}, Requests: 1, Errors: 1, Cost: "0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(seq(ledgerFixture()...), Options{GroupBy: tt.groupBy})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, views(r.Rows)); diff != "" {
				t.Errorf("rows mismatch (-want +got):\n%s", diff)
			}
			wantTotal := view{Requests: 6, Errors: 2, Tokens: usage.Tokens{Input: 3300, Output: 330}, Cost: "0.0138"}
			if diff := cmp.Diff(wantTotal, viewOf(&r.Total)); diff != "" {
				t.Errorf("total mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildDayIsUTC(t *testing.T) {
	// 23:30 in New York on Nov 3 is Nov 4 in UTC, the bill's day.
	ny := time.FixedZone("EST", -5*3600)
	r, err := Build(seq(rec("a", "t", "m", time.Date(2026, 11, 3, 23, 30, 0, 0, ny), 200, 1, 1, money("1"))), Options{GroupBy: []string{Day}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rows[0].Keys[0]; got != "2026-11-04" {
		t.Errorf("day = %q, want 2026-11-04", got)
	}
}

func TestBuildSinceUntil(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	recs := []usage.Record{
		rec("a", "t", "m", day(1).Add(-time.Nanosecond), 200, 1, 0, money("1")),           // Oct 31, last instant
		rec("a", "t", "m", day(1), 200, 1, 0, money("2")),                                 // Nov 1, first instant
		rec("a", "t", "m", day(15), 200, 1, 0, money("4")),                                // mid-month
		rec("a", "t", "m", day(30).Add(24*time.Hour-1), 200, 1, 0, money("8")),            // Nov 30, last instant
		rec("a", "t", "m", day(30).Add(24*time.Hour), 200, 1, 0, money("16")),             // Dec 1
		rec("a", "t", "m", day(15).In(time.FixedZone("X", 3600)), 200, 1, 0, money("32")), // same instant as mid-month
	}
	tests := []struct {
		name         string
		since, until time.Time
		want         string
	}{
		{"open", time.Time{}, time.Time{}, "63"},
		{"since inclusive", day(1), time.Time{}, "62"},
		{"until exclusive", time.Time{}, day(1), "1"},
		{"november", day(1), day(30).Add(24 * time.Hour), "46"},
		{"one instant", day(15), day(15).Add(1), "36"},
		{"empty window", day(2), day(3), "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Build(seq(recs...), Options{Since: tt.since, Until: tt.until})
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Total.Cost.String(); got != tt.want {
				t.Errorf("total cost = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestBuildRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{GroupBy: []string{"region"}},
		{GroupBy: []string{Team, Team}},
		{Since: t0, Until: t0},
		{Since: t0.Add(time.Hour), Until: t0},
	} {
		if _, err := Build(seq(), o); err == nil {
			t.Errorf("Build(%+v) succeeded, want an error", o)
		}
	}
}

func TestBuildUnpriced(t *testing.T) {
	recs := []usage.Record{
		rec("a", "t", "priced", t0, 200, 10, 10, money("0.5")),
		rec("a", "t", "unknown", t0, 200, 10, 10, nil),         // tokens, no price
		rec("a", "t", "unknown", t0, 200, 5, 0, nil),           // tokens, no price
		rec("a", "t", "unknown", t0, 500, 0, 0, nil),           // no tokens: nothing to price
		rec("a", "t", "mixed", t0, 200, 10, 10, money("0.25")), // priced
		rec("a", "t", "mixed", t0, 200, 10, 10, nil),           // unpriced
	}
	r, err := Build(seq(recs...), Options{GroupBy: []string{Model}})
	if err != nil {
		t.Fatal(err)
	}
	want := []view{
		{Keys: []string{"priced"}, Requests: 1, Tokens: usage.Tokens{Input: 10, Output: 10}, Cost: "0.5"},
		{Keys: []string{"mixed"}, Requests: 2, Tokens: usage.Tokens{Input: 20, Output: 20}, Cost: "0.25", Unpriced: 1},
		{Keys: []string{"unknown"}, Requests: 3, Errors: 1, Tokens: usage.Tokens{Input: 15, Output: 10}, Cost: "0", Unpriced: 2},
	}
	if diff := cmp.Diff(want, views(r.Rows)); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
	if r.Total.Unpriced != 3 {
		t.Errorf("total unpriced = %d, want 3", r.Total.Unpriced)
	}
	for i, want := range []bool{true, true, false} {
		if got := r.Rows[i].CostKnown(); got != want {
			t.Errorf("row %v CostKnown() = %v, want %v", r.Rows[i].Keys, got, want)
		}
	}
}

func TestBuildStopsAtError(t *testing.T) {
	boom := func(yield func(usage.Record, error) bool) {
		if !yield(rec("a", "t", "m", t0, 200, 1, 1, money("1")), nil) {
			return
		}
		if yield(usage.Record{}, errTest) {
			t.Error("Build asked for a record after an error")
		}
	}
	if _, err := Build(boom, Options{}); err != errTest {
		t.Errorf("Build error = %v, want %v", err, errTest)
	}
}

var errTest = errorString("test error")

type errorString string

func (e errorString) Error() string { return string(e) }

func TestBuildKeysDoNotCollide(t *testing.T) {
	// With a plain separator these two would share a row.
	a := rec("x\x00", "y", "m", t0, 200, 1, 0, money("1"))
	b := rec("x", "\x00y", "m", t0, 200, 1, 0, money("2"))
	r, err := Build(seq(a, b), Options{GroupBy: []string{User, Team}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 2 {
		t.Errorf("got %d rows, want 2: %v", len(r.Rows), views(r.Rows))
	}
}
